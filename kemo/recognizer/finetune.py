"""The paper's second fine-tuning step: the face model trained on the training videos' faces."""

import dataclasses

import numpy as np

from kemo.errors import InputError
from kemo.recognizer.persistence import _plain


def face_labels(y, names):
    """The face model's class index of each label, for fine-tuning.

    Args:
        y: the videos' labels: class ids ``0..len(names) - 1`` or class names (any case).
        names: the face model's class names.

    Returns:
        int64 array of class indices.

    Raises:
        InputError: a label is neither.
    """
    lower = [name.lower() for name in names]
    out = []
    for label in y:
        if isinstance(label, (int, np.integer)) and 0 <= label < len(names):
            out.append(int(label))
        elif isinstance(label, str) and label.lower() in lower:
            out.append(lower.index(label.lower()))
        else:
            raise InputError(f"finetune trains the face model on its own classes: label "
                             f"{_plain(label)!r} is neither one of their ids "
                             f"0..{len(names) - 1} nor one of their names {list(names)}; "
                             f"relabel the videos or drop finetune")
    return np.array(out, np.int64)


def expressive_rows(neutral, is_neutral):
    """The rows of a video's faces that show its label best, in their order.

    The half of the faces (rounded up) that the face model finds least neutral, or, for a
    video labelled Neutral, most neutral: a clip that starts neutral then shows its emotion
    is otherwise taught, for its first frames, that a neutral face is that emotion. It reads
    each face's own probability, not where the face sits in the clip.

    Args:
        neutral: ``(n,)`` each face's probability of Neutral.
        is_neutral: whether the video is labelled Neutral.

    Returns:
        int array of row indices, ascending.
    """
    order = np.argsort(-neutral if is_neutral else neutral, kind="stable")
    return np.sort(order[:(len(neutral) + 1) // 2])


def _neutral_column(clf):
    if "Neutral" not in clf.class_names_:
        raise InputError(f"finetune faces='expressive' reads the face model's Neutral "
                         f"probability; {clf.info_.name} has no Neutral class "
                         f"({list(clf.class_names_)})")
    return list(clf.class_names_).index("Neutral")


def finetuned_face_model(weights, found, labels, config, flip, flip_margin, batch_size,
                         random_state, verbose):
    """A copy of the face model trained on the faces of ``found``, each with its video's label.

    Only these videos' faces are read, so a fit on a fold's training side never sees its
    test subjects. The shared, cached face model stays as loaded.

    Args:
        weights: the face model (registered name or file).
        found: the training videos' :class:`kemo.faces.VideoFaces`.
        labels: the face model's class index of each video.
        config: the fine-tuning settings (see :func:`kemo.recognizer.checks.finetune_config`).
        flip: average a face's predictions with its mirror image's.
        flip_margin: which faces get the mirror pass (see FaceEmotionClassifier).
        batch_size: faces per forward pass.
        random_state: seed of the training.
        verbose: print the trainer's epochs.

    Returns:
        ``(FaceEmotionClassifier, number of faces it was trained on)``.
    """
    from kemo._seeds import integer_seed
    from kemo.face_classifier import FaceEmotionClassifier
    from kemo.features import fit_faces
    from kemo.training import RECIPES, _batchnorm_layers, fit_classifier

    clf = FaceEmotionClassifier(weights=weights, flip=flip, flip_margin=flip_margin,
                                batch_size=batch_size).fit()
    model, cap = clf.model_, config["faces_per_video"]
    neutral = _neutral_column(clf) if config["faces"] == "expressive" else None
    x, y = [], []
    for video, label in zip(found, labels, strict=True):
        rows = np.arange(len(video.faces))
        if neutral is not None:
            rows = expressive_rows(clf.predict_proba(video.faces)[:, neutral], label == neutral)
        if cap is not None and len(rows) > cap:  # spread over the video, not its start
            rows = rows[np.unique(np.linspace(0, len(rows) - 1, cap).round().astype(int))]
        x.append(clf.info_.preprocess(fit_faces(video.faces[rows], model.input_shape[1:])))
        y.append(np.full(len(rows), label))
    x, y = np.concatenate(x), np.concatenate(y)
    # "frozen": BatchNorm keeps its FER2013 statistics (Keras' advice for fine-tuning), since
    # batches of a few people's faces would replace them with those of these people; "adapt"
    # lets them follow the videos' faces, for test faces filmed like the training ones
    for layer in _batchnorm_layers(model):
        layer.trainable = config["batchnorm"] == "adapt"
    recipe = dataclasses.replace(RECIPES["finetune"], learning_rate=config["learning_rate"],
                                 batch_size=config["batch_size"])
    # the trainer reports a validation score each epoch; nothing is chosen by it, so a
    # slice of the training faces serves (no held-out face may be read here)
    fit_classifier(lambda: model, x, y, x[:256], y[:256], recipe=recipe,
                   epochs=config["epochs"], seed=integer_seed(random_state),
                   verbose=2 if verbose else 0)
    return clf, len(x)
