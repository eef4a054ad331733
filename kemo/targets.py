"""Training targets beyond the labels: votes of other annotators and teachers' probabilities.

:func:`kemo.training.train_fer2013` blends them into the FER2013 labels (its ``ferplus``,
``teachers`` and ``teacher_weight``), and :func:`kemo.training.fit_classifier` takes the
resulting probability rows in place of integer labels.
"""

import hashlib
from pathlib import Path

import numpy as np

from kemo._files import atomic_path
from kemo.errors import InputError


def soft_targets(labels, *sources, classes=7):
    """Training targets that blend the labels with other distributions over the classes.

    Args:
        labels: Integer labels ``(N,)``.
        *sources: ``(weight, rows)`` pairs: ``rows`` ``(N, classes)`` non-negative scores (votes
            or probabilities, normalised here per row) that take ``weight`` of each target.
            A row of zeros (no votes for that image) gives its weight back to the label.
        classes: Number of classes.

    Returns:
        float32 ``(N, classes)`` probability rows: ``(1 - sum of weights) * one-hot(label) +
        sum of weight * rows``.

    Raises:
        InputError: On weights outside [0, 1] or summing over 1, or rows of another shape.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or (
            labels.size and (labels.min() < 0 or labels.max() >= classes)):
        raise InputError(f"labels must be integers in 0..{classes - 1}; got dtype "
                         f"{labels.dtype}, shape {labels.shape}")
    targets = np.eye(classes, dtype=np.float64)[labels]
    total = sum(weight for weight, _ in sources)
    if any(not 0 <= weight <= 1 for weight, _ in sources) or total > 1:
        raise InputError(f"soft-target weights must be in [0, 1] and sum to at most 1; got "
                         f"{[weight for weight, _ in sources]}")
    mixed = targets.copy()
    for weight, rows in sources:
        rows = np.asarray(rows, dtype=np.float64)
        if rows.shape != targets.shape:
            raise InputError(f"soft-target rows have shape {rows.shape}; expected "
                             f"{targets.shape} (one row per label)")
        if not np.isfinite(rows).all() or rows.min(initial=0) < 0:
            raise InputError("soft-target rows must be finite and non-negative (votes or "
                             "probabilities)")
        sums = rows.sum(axis=1, keepdims=True)
        rows = np.where(sums > 0, rows / np.where(sums > 0, sums, 1), targets)
        mixed += weight * (rows - targets)
    return mixed.astype(np.float32)


def teacher_probabilities(teachers, images, *, batch_size=256, cache=None):
    """The mean class probabilities of ``teachers`` on uint8 face ``images`` (with flip).

    Args:
        teachers: Face models, as :class:`kemo.FaceEmotionClassifier` takes them: registered
            names, ``.weights.h5`` files or ``.keras`` files (e.g. runs' ``best.keras``).
        images: uint8 faces ``(N, H, W)``.
        batch_size: Images per forward pass.
        cache: Optional ``.npz`` file that keeps the result, reused while the teachers'
            files (by sha256) and the images are the same: a resumed run skips the pass.

    Returns:
        float32 ``(N, classes)``: the average of the teachers' flip-averaged probabilities,
        to distil them into one model (:func:`soft_targets`).
    """
    from kemo import weights as registry
    from kemo.face_classifier import FaceEmotionClassifier

    if not teachers:
        raise InputError("give at least one teacher model")
    # every face mirrored: targets are made once, so they get the full test-time average
    models = [FaceEmotionClassifier(weights=str(t), flip_margin=None, batch_size=batch_size)
              for t in teachers]
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    for teacher in teachers:
        path = registry.model_file(str(teacher))  # a missing file raises WeightsError
        digest.update(f"{teacher}:{registry.sha256(path) if path else ''};".encode())
    key = digest.hexdigest()
    if cache is not None and Path(cache).is_file():
        try:
            with np.load(cache, allow_pickle=False) as stored:
                if str(stored["key"]) == key:
                    return stored["proba"]
        except (OSError, ValueError, KeyError):  # a damaged cache is computed again
            pass
    proba = np.mean([m.predict_proba(images) for m in models], axis=0).astype(np.float32)
    if cache is not None:
        with atomic_path(cache, ".npz") as tmp:
            np.savez(tmp, key=key, proba=proba)
    return proba
