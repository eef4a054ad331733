"""Eye-based face alignment: a similarity transform that levels the eyes, then a crop.

The paper aligns every detected face "by an affine transform on the two eye centres", crops it to
128x128 and resizes it to each network's input (VGG-Face 224, ResNet-10 150, small models 48/64).
:func:`align_face` does exactly that with a similarity transform (rotation, uniform scale,
translation): both eye centres land on one horizontal line at fixed positions of the crop.

The default eye positions (eyes 0.36 of the crop width apart, at 0.38 of its height) are the
median geometry MTCNN measures on FER2013 faces, so video faces aligned with the defaults look like
the FER2013 images the frame models are trained on.

Coordinates are pixel indices as OpenCV uses them (the centre of the top-left pixel is (0, 0)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from kemo.errors import InputError
from kemo.faces.detection import as_uint8_image

DEFAULT_SIZE = 128
DEFAULT_EYE_Y = 0.38
DEFAULT_EYE_DIST = 0.36
# cv2 border modes by name (numbers, so that importing this module does not import cv2)
_BORDERS = {"replicate": 1, "black": 0}


def eye_targets(size=DEFAULT_SIZE, eye_y=DEFAULT_EYE_Y, eye_dist=DEFAULT_EYE_DIST):
    """Pixel positions of the left and right eye centres in an aligned ``size`` x ``size`` crop.

    Args:
        size: side of the crop in pixels.
        eye_y: height of the eyes as a fraction of the side (0 = top).
        eye_dist: distance between the eyes as a fraction of the side; the eyes are centred.

    Returns:
        np.ndarray: ``[[left_x, left_y], [right_x, right_y]]`` (float64).
    """
    _check_geometry(size, eye_y, eye_dist)
    # Fractions of the continuous extent [0, size]; pixel i covers [i, i + 1], hence -0.5.
    y = eye_y * size - 0.5
    half = eye_dist * size / 2
    centre = size / 2 - 0.5
    return np.array([[centre - half, y], [centre + half, y]], dtype=np.float64)


def eye_centres(keypoints):
    """Return ``[[left_x, left_y], [right_x, right_y]]`` from keypoints in any accepted form.

    Args:
        keypoints: a detection record (with ``"keypoints"``), a keypoint dict with ``left_eye``
            and ``right_eye``, or an array of shape (2, 2) or (5, 2) in the order left eye,
            right eye, nose, mouth left, mouth right.

    Returns:
        np.ndarray: (2, 2) float64.

    Raises:
        InputError: when the eyes are missing, not finite, or coincide.
    """
    if isinstance(keypoints, Mapping) and "keypoints" in keypoints:
        keypoints = keypoints["keypoints"]
    if isinstance(keypoints, Mapping):
        missing = [k for k in ("left_eye", "right_eye") if k not in keypoints]
        if missing:
            raise InputError(
                f"keypoints lack {missing}; pass a detection record or a dict with "
                "'left_eye' and 'right_eye'"
            )
        eyes = np.array([keypoints["left_eye"], keypoints["right_eye"]], dtype=np.float64)
    else:
        try:
            eyes = np.asarray(keypoints, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise InputError(f"keypoints cannot be read as coordinates: {keypoints!r}") from err
        if eyes.ndim != 2 or eyes.shape[1] != 2 or eyes.shape[0] not in (2, 5):
            raise InputError(f"keypoints array must have shape (2, 2) or (5, 2), got {eyes.shape}")
        eyes = eyes[:2]
    if eyes.shape != (2, 2) or not np.all(np.isfinite(eyes)):
        raise InputError(f"eye centres must be two finite (x, y) points, got {eyes.tolist()}")
    if np.hypot(*(eyes[1] - eyes[0])) < 1e-6:
        raise InputError(f"the two eye centres coincide ({eyes[0].tolist()}); cannot align")
    return eyes


def alignment_matrix(keypoints, size=DEFAULT_SIZE, eye_y=DEFAULT_EYE_Y, eye_dist=DEFAULT_EYE_DIST):
    """The 2x3 similarity transform from image pixels to the aligned ``size`` x ``size`` crop.

    Args:
        keypoints: see :func:`eye_centres`.
        size: side of the crop in pixels.
        eye_y: eye height as a fraction of the side.
        eye_dist: eye distance as a fraction of the side.

    Returns:
        np.ndarray: (2, 3) float64 matrix ``M``; ``M @ [x, y, 1]`` is the point in the crop.

    Raises:
        InputError: for bad keypoints or geometry.
    """
    src = eye_centres(keypoints)
    dst = eye_targets(size, eye_y, eye_dist)
    d_src = src[1] - src[0]
    d_dst = dst[1] - dst[0]
    scale = np.hypot(*d_dst) / np.hypot(*d_src)
    # Rotate the eye line onto the (horizontal) target line.
    angle = math.atan2(d_dst[1], d_dst[0]) - math.atan2(d_src[1], d_src[0])
    a, b = scale * math.cos(angle), scale * math.sin(angle)
    rot = np.array([[a, -b], [b, a]])
    mid_src = src.mean(axis=0)
    mid_dst = dst.mean(axis=0)
    shift = mid_dst - rot @ mid_src
    return np.hstack([rot, shift[:, None]])


def transform_points(points, matrix):
    """Apply a 2x3 affine ``matrix`` to an (N, 2) array of points; returns (N, 2) float64."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]


def align_face(
    image,
    keypoints,
    size=DEFAULT_SIZE,
    out_size=None,
    eye_y=DEFAULT_EYE_Y,
    eye_dist=DEFAULT_EYE_DIST,
    grayscale=False,
    border="replicate",
):
    """Align a face on its eye centres, crop it and resize it to a model's input.

    A similarity transform (rotation, uniform scale, translation) puts the two eye centres on one
    horizontal line at :func:`eye_targets` in a ``size`` x ``size`` crop (the paper: 128), which
    is then resized to ``out_size``. Large faces are first shrunk with area averaging so the
    crop does not alias. Pixels outside the image repeat its edge by default: the frame models
    never saw black margins in training, and on FER2013 faces re-detected and aligned by kemo
    (``benchmarks/aligned_faces.py``) black margins cost 2.9 points (61.71 % against 64.63 %).

    Args:
        image: ``uint8`` (or ``uint16``) image, RGB (H, W, 3), RGBA (alpha dropped) or
            grayscale (H, W) / (H, W, 1).
        keypoints: a detection record, its ``"keypoints"`` dict, or a (2, 2) / (5, 2) array
            (see :func:`eye_centres`).
        size: side of the aligned crop (the paper's 128).
        out_size: side of the returned image (224 VGG-Face, 150 ResNet-10, 48/64 small models);
            None keeps ``size``.
        eye_y: eye height as a fraction of the side.
        eye_dist: eye distance as a fraction of the side.
        grayscale: return a single-channel face from a colour image.
        border: how to fill the parts of the crop outside the image: ``"replicate"`` (the
            nearest edge pixel) or ``"black"``.

    Returns:
        np.ndarray: ``uint8`` (out_size, out_size, 3) for colour, (out_size, out_size) for
        grayscale input or ``grayscale=True``.

    Raises:
        InputError: for a bad image, keypoints, size or geometry.

    Example:
        >>> record = FaceDetector().detect(rgb)[0]  # doctest: +SKIP
        >>> face = align_face(rgb, record, out_size=48, grayscale=True)  # doctest: +SKIP
        >>> face.shape  # doctest: +SKIP
        (48, 48)
    """
    import cv2

    image = as_uint8_image(image, "image")
    out_size = size if out_size is None else out_size
    _check_size(out_size, "out_size")
    if border not in _BORDERS:
        raise InputError(f"border must be one of {sorted(_BORDERS)}, got {border!r}")
    matrix = alignment_matrix(keypoints, size, eye_y, eye_dist)
    if grayscale and image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)

    # Only the part of the image that lands in the crop is needed.
    inverse = cv2.invertAffineTransform(matrix)
    corners = transform_points([[-1, -1], [size, -1], [-1, size], [size, size]], inverse)
    height, width = image.shape[:2]
    x1 = int(np.clip(np.floor(corners[:, 0].min()) - 1, 0, width))
    y1 = int(np.clip(np.floor(corners[:, 1].min()) - 1, 0, height))
    x2 = int(np.clip(np.ceil(corners[:, 0].max()) + 2, 0, width))
    y2 = int(np.clip(np.ceil(corners[:, 1].max()) + 2, 0, height))
    shape = (size, size) + image.shape[2:]
    if x2 - x1 < 1 or y2 - y1 < 1:  # the face lies wholly outside the image
        warped = np.zeros(shape, np.uint8)
    else:
        # where the crop leaves the image, the region's edge is the image's: "replicate"
        # repeats the image's own border pixels
        region = image[y1:y2, x1:x2]
        matrix = matrix.copy()
        matrix[:, 2] += matrix[:, :2] @ [x1, y1]
        scale = math.hypot(matrix[0, 0], matrix[1, 0])
        if scale < 0.7:
            # Shrink by area first: a bilinear warp that shrinks more than ~1.5x aliases.
            new_w = max(1, round(region.shape[1] * scale))
            new_h = max(1, round(region.shape[0] * scale))
            fx, fy = new_w / region.shape[1], new_h / region.shape[0]
            region = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
            # cv2.resize maps pixel centres: src = (dst + 0.5) / f - 0.5.
            to_src = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5]])
            matrix = matrix[:, :2] @ to_src + np.hstack([np.zeros((2, 2)), matrix[:, 2:]])
        warped = cv2.warpAffine(
            np.ascontiguousarray(region),
            matrix,
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=_BORDERS[border],
            borderValue=0,
        )
        warped = warped.reshape(shape)
    if out_size != size:
        interpolation = cv2.INTER_AREA if out_size < size else cv2.INTER_CUBIC
        warped = cv2.resize(warped, (out_size, out_size), interpolation=interpolation)
        warped = warped.reshape((out_size, out_size) + shape[2:])
    return warped


def _check_size(value, name):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 8:
        raise InputError(f"{name} must be an integer >= 8, got {value!r}")


def _check_geometry(size, eye_y, eye_dist):
    _check_size(size, "size")
    if not isinstance(eye_y, int | float) or not 0.0 < eye_y < 1.0:
        raise InputError(f"eye_y must be a fraction in (0, 1), got {eye_y!r}")
    if not isinstance(eye_dist, int | float) or not 0.0 < eye_dist < 1.0:
        raise InputError(f"eye_dist must be a fraction in (0, 1), got {eye_dist!r}")
