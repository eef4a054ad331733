"""MTCNN face detection: an adapter over the ``mtcnn`` package.

The paper finds faces and five landmarks with MTCNN (Zhang et al. 2016). This module wraps the
``mtcnn`` package (its weights ship in its wheel, so nothing is downloaded) behind a small, checked
interface: named thresholds, batching over frames, optional downscaling of large frames with the
coordinates mapped back, and sub-pixel landmarks.

Records follow the ``mtcnn`` package's own format::

    {"box": [x, y, w, h], "confidence": c,
     "keypoints": {"left_eye": (x, y), "right_eye": (x, y), "nose": (x, y),
                   "mouth_left": (x, y), "mouth_right": (x, y)}}

``box`` holds integers (like ``mtcnn``); the keypoints keep MTCNN's sub-pixel precision (floats),
which the eye alignment needs. ``left_eye`` is the eye on the left of the image.

Reference:
    Zhang, Zhang, Li, Qiao. "Joint Face Detection and Alignment Using Multitask Cascaded
    Convolutional Networks". IEEE SPL 2016. Package: https://github.com/ipazc/mtcnn
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from kemo.errors import BackendError, InputError

KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

# mtcnn 1.0.0 sizes its image pyramid as if min_face_size were always 20 (see _pyramid_stage).
_MTCNN_PYRAMID_FACE = 20.0
# PNet's window: a face smaller than this in the image given to MTCNN cannot be found.
_PNET_WINDOW = 12.0
# Least confidence of a face that only the second look for small faces found. That look sees
# many more, smaller windows: on the test scenes here its real faces score 0.996 and more, its
# false ones 0.83-0.86 (one of them on mtcnn's own test image ivan.jpg).
_SMALL_FACE_CONFIDENCE = 0.95

_SHARED = {}
_SHARED_LOCK = threading.Lock()
_CALLS_LOCK = threading.Lock()


def as_uint8_image(image, name="image"):
    """Check an image array and return it as ``uint8`` grayscale (H, W) or RGB (H, W, 3).

    Args:
        image: array of shape (H, W) or (H, W, 1) (grayscale), (H, W, 3) (RGB) or (H, W, 4)
            (RGBA, the alpha channel is dropped); dtype ``uint8`` or ``uint16`` (scaled to
            0..255).
        name: how the input is named in error messages.

    Returns:
        np.ndarray: ``uint8`` (H, W) or (H, W, 3); the input itself when it already is one.

    Raises:
        InputError: for anything else (other types, dtypes, shapes, empty images), naming what
            to do.
    """
    if not isinstance(image, np.ndarray):
        raise InputError(
            f"{name} must be a numpy array (H, W[, C]), got {type(image).__name__}; "
            "load images with cv2.imread and convert BGR to RGB"
        )
    if image.dtype == np.uint16:
        # 65535 // 257 = 255 exactly, so the full range maps onto the full range.
        image = (image.astype(np.uint32) // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(
            f"{name} must have dtype uint8 or uint16, got {image.dtype}; convert floats in "
            "[0, 1] with (image * 255).round().astype(np.uint8)"
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise InputError(
            f"{name} must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"{name} is empty: shape {image.shape}")
    return image


def to_rgb_uint8(image, name="image"):
    """Return ``image`` as a contiguous RGB ``uint8`` array (H, W, 3).

    Args:
        image: see :func:`as_uint8_image`; grayscale is repeated over three channels.
        name: how the input is named in error messages.

    Returns:
        np.ndarray: (H, W, 3) ``uint8``.

    Raises:
        InputError: see :func:`as_uint8_image`.
    """
    image = as_uint8_image(image, name)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image)


def check_tensorflow_backend():
    """Raise :class:`~kemo.errors.BackendError` unless Keras runs on TensorFlow.

    The ``mtcnn`` package builds its networks with ``tf.keras`` and calls TensorFlow ops directly;
    under the jax or torch Keras backends it fails in obscure ways.

    Raises:
        BackendError: naming the active backend and the fix.
    """
    from kemo._tensorflow import import_quietly

    import_quietly()
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise BackendError(
            f"face detection (mtcnn) needs the tensorflow Keras backend, but Keras runs on "
            f"{backend!r}; set the environment variable KERAS_BACKEND=tensorflow before Python "
            "imports keras (or run the face stage in a separate process)"
        )


def _pyramid_stage():
    """Return mtcnn's PNet stage class with its image-pyramid size fixed.

    mtcnn 1.0.0 counts its pyramid levels from the image size alone (``build_scale_pyramid``),
    while the first level is ``12 / min_face_size``: for ``min_face_size`` above about 24 the
    last levels are smaller than PNet's 12-pixel window, TensorFlow raises, and mtcnn silently
    reports "no face" for every image. Counting the levels for an image scaled by
    ``20 / min_face_size`` gives exactly the levels that fit, for any ``min_face_size``.
    """
    from mtcnn.stages import StagePNet

    class _PNet(StagePNet):
        def __call__(self, images_normalized, images_oshapes, min_face_size=20, **kwargs):
            shapes = np.asarray(images_oshapes, dtype=np.float64).copy()
            shapes[:, :2] *= _MTCNN_PYRAMID_FACE / float(min_face_size)
            return super().__call__(
                images_normalized=images_normalized,
                images_oshapes=shapes,
                min_face_size=min_face_size,
                **kwargs,
            )

    return _PNet


def shared_mtcnn():
    """Return the process-wide ``mtcnn.MTCNN`` object, creating it on first use.

    Building it loads three networks (a few seconds); it holds no per-call state, so every
    :class:`FaceDetector` shares one.

    Raises:
        BackendError: when Keras does not run on TensorFlow.
    """
    with _SHARED_LOCK:
        if "mtcnn" not in _SHARED:
            check_tensorflow_backend()
            from mtcnn import MTCNN
            from mtcnn.stages import StageONet, StageRNet

            _SHARED["mtcnn"] = MTCNN(stages=[_pyramid_stage(), StageRNet, StageONet])
        return _SHARED["mtcnn"]


def box_iou(a, b):
    """Intersection over union of two ``[x, y, w, h]`` boxes (0 when they do not overlap)."""
    ax2, ay2 = a[0] + a[2], a[1] + a[3]
    bx2, by2 = b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


class FaceDetector:
    """Find faces and their five landmarks with MTCNN.

    The ``mtcnn`` network object is created on the first detection and shared by all detectors
    of the process; creating a ``FaceDetector`` is free.

    Args:
        min_face_size: smallest face to find, in pixels of the original image. The default 40
            (mtcnn's is 20) takes about 3x less CPU time on CK+ frames (0.034 against 0.108 s
            per 640x490 frame, batches of 8), finds the face in every CK+ frame, and avoids a
            false positive mtcnn 1.0 reports on its own test image ``ivan.jpg``; faces smaller
            than 40 pixels hold little expression detail for 48-224 pixel models.
        thresholds: confidence thresholds of the three MTCNN stages (PNet, RNet, ONet).
        scale_factor: ratio between the image-pyramid levels, in [0.1, 1); closer to 1 is
            slower and finds more faces.
        small_face_size: in a frame where the first pass finds a face smaller than twice
            ``min_face_size`` (people at a distance: a crowd, a street, a classroom), look
            again for faces down to this size, and add the faces only that look finds with a
            confidence of at least 0.95 (it sees many more windows, so it needs surer
            answers). A second look costs about 3-4x the first, so close-ups (the usual case:
            one large face) never pay for it. On a 1920x1080 frame holding 36 faces of 15-35
            pixels it finds all 36 against 30 (``benchmarks/small_faces.py``). None, or a
            size not below ``min_face_size`` (the first pass finds those already), never
            looks again.
        max_side: frames whose longer side exceeds it are shrunk to it before detection
            (faster on large frames); boxes and keypoints are mapped back to the original image.
            The default 1920 leaves Full HD and smaller frames untouched; an 8K frame takes
            1.0 s instead of 2.5 s here (``benchmarks/large_frames.py``), but its faces under
            160 pixels are missed. None detects at full size.
        min_confidence: records below this final confidence are dropped. The default equals
            the ONet threshold; real CK+ faces at peak expression score as low as 0.85.
        batch_size: frames per MTCNN call in :meth:`detect_batch`.

    Raises:
        InputError: for a bad argument, naming it and the value received.

    Example:
        >>> detector = FaceDetector(min_face_size=40)
        >>> records = detector.detect(rgb_frame)  # doctest: +SKIP
        >>> records[0]["keypoints"]["left_eye"]  # doctest: +SKIP
        (281.3, 118.9)
    """

    def __init__(
        self,
        min_face_size=40,
        thresholds=(0.6, 0.7, 0.8),
        scale_factor=0.709,
        max_side=1920,
        min_confidence=0.8,
        batch_size=8,
        small_face_size=20,
    ):
        if not _is_number(min_face_size) or min_face_size < _PNET_WINDOW:
            raise InputError(
                f"min_face_size must be a number >= {_PNET_WINDOW:g} pixels, got {min_face_size!r}"
            )
        if small_face_size is not None and (
            not _is_number(small_face_size) or small_face_size < _PNET_WINDOW
        ):
            raise InputError(
                f"small_face_size must be None or a number >= {_PNET_WINDOW:g} pixels, got "
                f"{small_face_size!r}"
            )
        thresholds = tuple(thresholds) if isinstance(thresholds, Sequence) else thresholds
        if (
            not isinstance(thresholds, tuple)
            or len(thresholds) != 3
            or not all(_is_number(t) and 0.0 <= t <= 1.0 for t in thresholds)
        ):
            raise InputError(
                f"thresholds must be three numbers in [0, 1] (PNet, RNet, ONet), got {thresholds!r}"
            )
        if not _is_number(scale_factor) or not 0.1 <= scale_factor < 1.0:
            raise InputError(f"scale_factor must be in [0.1, 1), got {scale_factor!r}")
        if max_side is not None and (
            isinstance(max_side, bool)
            or not isinstance(max_side, int | np.integer)
            or max_side < 24
        ):
            raise InputError(f"max_side must be None or an integer >= 24, got {max_side!r}")
        if not _is_number(min_confidence) or not 0.0 <= min_confidence <= 1.0:
            raise InputError(f"min_confidence must be in [0, 1], got {min_confidence!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = float(scale_factor)
        self.max_side = None if max_side is None else int(max_side)
        self.min_confidence = float(min_confidence)
        self.batch_size = batch_size
        self.small_face_size = None if small_face_size is None else float(small_face_size)
        # Images run through MTCNN so far (tests and benchmarks count the work done).
        self.calls = 0

    def __repr__(self):
        return (
            f"FaceDetector(min_face_size={self.min_face_size:g}, thresholds={self.thresholds}, "
            f"scale_factor={self.scale_factor:g}, max_side={self.max_side}, "
            f"min_confidence={self.min_confidence:g}, batch_size={self.batch_size}, "
            f"small_face_size={self.small_face_size})"
        )

    def get_config(self):
        """Return the constructor arguments as a dict (for caching keys and repr)."""
        return {
            "min_face_size": self.min_face_size,
            "thresholds": list(self.thresholds),
            "scale_factor": self.scale_factor,
            "max_side": self.max_side,
            "min_confidence": self.min_confidence,
            "small_face_size": self.small_face_size,
        }

    def _scale_for(self, shape, min_face):
        """Factor applied to an image of ``shape`` before MTCNN looks for ``min_face`` (<= 1)."""
        scale = 1.0
        if self.max_side is not None and max(shape[:2]) > self.max_side:
            scale = self.max_side / max(shape[:2])
        # PNet's first pyramid level shrinks the frame by 12 / min_face_size anyway and ONet sees
        # every face as a 48x48 patch, so shrinking the frame until mtcnn looks for faces of 20
        # pixels costs little: on CK+ frames at min_face_size=40 it halves the CPU time (mtcnn
        # resizes the whole frame for every pyramid level) and moves the eyes by 0.48 px of the
        # 128 aligned crop on average, less than detection's own frame-to-frame jitter (0.63).
        face = min_face * scale
        if face > _MTCNN_PYRAMID_FACE:
            scale *= _MTCNN_PYRAMID_FACE / face
        return scale

    def _prepare(self, rgb, min_face):
        scale = self._scale_for(rgb.shape, min_face)
        if scale < 1.0:
            import cv2

            size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            # Exact per-axis factors, since sizes are rounded to whole pixels.
            factors = (size[0] / rgb.shape[1], size[1] / rgb.shape[0])
            return small, factors
        return rgb, (1.0, 1.0)

    def _mtcnn_kwargs(self, factors, min_face):
        return {
            "min_face_size": max(min_face * min(factors), _PNET_WINDOW),
            "scale_factor": self.scale_factor,
            "threshold_pnet": self.thresholds[0],
            "threshold_rnet": self.thresholds[1],
            "threshold_onet": self.thresholds[2],
        }

    def detect(self, image):
        """Find the faces in one image.

        Args:
            image: RGB ``uint8`` array (H, W, 3); grayscale (H, W), RGBA and ``uint16`` images
                are converted.

        Returns:
            list[dict]: one record per face (see the module docstring), in the coordinates of
            ``image``, most confident first; empty when there is no face.

        Raises:
            InputError: when ``image`` is not an image array.
            BackendError: when Keras does not run on TensorFlow.
        """
        return self.detect_batch([image])[0]

    def detect_batch(self, frames):
        """Find the faces in each of several images, batching them through MTCNN.

        Args:
            frames: sequence of images (see :meth:`detect`); sizes may differ.

        Returns:
            list[list[dict]]: the records of each frame, in order.

        Raises:
            InputError: when an element is not an image array (its index is named).
            BackendError: when Keras does not run on TensorFlow.
        """
        if isinstance(frames, np.ndarray) and frames.ndim == 4:
            frames = list(frames)
        if not isinstance(frames, Sequence):
            raise InputError(
                f"frames must be a list of images or a (T, H, W, C) array, got "
                f"{type(frames).__name__}"
            )
        images = [to_rgb_uint8(f, f"frames[{i}]") for i, f in enumerate(frames)]
        results = self._pass(images, self.min_face_size)
        if self.small_face_size is not None and self.small_face_size < self.min_face_size:
            # Faces near the first pass's limit mean people at a distance: others may be smaller.
            near = 2 * self.min_face_size
            sure = max(self.min_confidence, _SMALL_FACE_CONFIDENCE)
            again = [i for i, found in enumerate(results)
                     if any(min(r["box"][2:]) < near for r in found)]
            for i, found in zip(again, self._pass([images[i] for i in again],
                                                  self.small_face_size), strict=True):
                results[i] = _merge(results[i], [r for r in found if r["confidence"] >= sure])
        return results

    def _pass(self, images, min_face):
        """Detect faces of at least ``min_face`` pixels in each of ``images`` (RGB uint8)."""
        prepared = [self._prepare(image, min_face) for image in images]
        results = [[] for _ in prepared]
        mtcnn = shared_mtcnn() if prepared else None
        # Group frames that share a downscale factor so one mtcnn call gets one min_face_size.
        order = sorted(range(len(prepared)), key=lambda i: prepared[i][1])
        start = 0
        while start < len(order):
            stop = start
            factors = prepared[order[start]][1]
            while (
                stop < len(order)
                and stop - start < self.batch_size
                and prepared[order[stop]][1] == factors
            ):
                stop += 1
            chunk = order[start:stop]
            rows = self._run(mtcnn, [prepared[i][0] for i in chunk], factors, min_face)
            for j, i in enumerate(chunk):
                results[i] = _records(rows[rows[:, 0] == j], factors, self.min_confidence)
            start = stop
        return results

    def _run(self, mtcnn, images, factors, min_face):
        """One mtcnn call over ``images``: rows [id, x1, y1, x2, y2, conf, 5 x, 5 y]."""
        keep = [i for i, im in enumerate(images) if min(im.shape[:2]) >= _PNET_WINDOW]
        if not keep:
            return np.empty((0, 16))
        with _CALLS_LOCK:  # += is not atomic: detectors are shared by threads
            self.calls += len(keep)
        rows = mtcnn.detect_faces(
            [images[i] for i in keep],
            box_format="xyxy",
            output_type="numpy",
            **self._mtcnn_kwargs(factors, min_face),
        )
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, 16)
        rows[:, 0] = np.asarray(keep)[rows[:, 0].astype(int)] if len(rows) else rows[:, 0]
        return rows


def _is_number(value):
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return False
    return bool(np.isfinite(value))


def _merge(first, second, overlap=0.3):
    """The records of ``first`` and those of ``second`` that overlap none of them.

    Both passes find most faces; the same face found twice has boxes that overlap by far more
    than ``overlap`` (intersection over union), and two real faces almost never do. The first
    pass's record of a face is kept, so faces it found are as they were without a second look.
    """
    kept = list(first)
    kept += [r for r in second if all(box_iou(r["box"], k["box"]) < overlap for k in first)]
    return sorted(kept, key=lambda r: -r["confidence"])


def _records(rows, factors, min_confidence):
    """Turn mtcnn numpy rows of one image into records in original-image coordinates."""
    fx, fy = factors

    # cv2.resize maps pixel centres: small = (original + 0.5) * f - 0.5.
    def back_x(x):
        return float((x + 0.5) / fx - 0.5)

    def back_y(y):
        return float((y + 0.5) / fy - 0.5)

    records = []
    for row in rows[np.argsort(-rows[:, 5], kind="stable")]:
        confidence = float(row[5])
        if confidence < min_confidence:
            continue
        x1, y1, x2, y2 = back_x(row[1]), back_y(row[2]), back_x(row[3]), back_y(row[4])
        keypoints = {
            name: (back_x(row[6 + i]), back_y(row[11 + i])) for i, name in enumerate(KEYPOINT_NAMES)
        }
        records.append(
            {
                "box": [round(x1), round(y1), round(x2 - x1), round(y2 - y1)],
                "confidence": confidence,
                "keypoints": keypoints,
            }
        )
    return records
