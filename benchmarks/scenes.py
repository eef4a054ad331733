"""Test scenes for the benchmarks: a real face moving over a background, at any frame size.

Used by ``bench_faces.py`` (face stage) and ``bench_video.py`` (end to end). The face is a real
CK+ face region cut from a clip (its expression changes frame by frame, playing forward and
back), scaled to ``face_width`` pixels and pasted at a position moving about 4 px per frame along
an ellipse over a textured background. Frames are produced one at a time
(:func:`moving_face`), so long scenes can be written to a file without holding them in memory.
"""

import cv2
import numpy as np

from kemo.faces import FaceDetector


def face_crops(clip, face_width=200):
    """Cut the face region (box + 25 % margin) of every frame of ``clip``, scaled to a width.

    Args:
        clip: RGB frames of one video (a still head: the box of frame 0 is used for all).
        face_width: width of the scaled crops in pixels.

    Returns:
        list of RGB uint8 crops, one per frame of ``clip``.
    """
    first = FaceDetector().detect(clip[0])[0]
    x, y, w, h = first["box"]
    m = int(0.25 * w)
    crops = [f[max(0, y - m) : y + h + m, max(0, x - m) : x + w + m] for f in clip]
    scale = face_width / crops[0].shape[1]
    return [cv2.resize(c, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for c in crops]


def moving_face(crops, size, n, seed=0):
    """Yield ``n`` RGB frames of ``size`` (width, height) with the face ``crops`` moving.

    Args:
        crops: face crops from :func:`face_crops`, all of one size, smaller than ``size``.
        size: (width, height) of the frames.
        n: number of frames.
        seed: seed of the background texture.

    Yields:
        RGB uint8 frames (height, width, 3).
    """
    ch, cw = crops[0].shape[:2]
    width, height = size
    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 200, (height // 16, width // 16, 3), dtype=np.uint8)
    background = cv2.resize(coarse, size, interpolation=cv2.INTER_CUBIC)
    background = np.clip(
        background + rng.normal(0, 6, background.shape), 0, 255
    ).astype(np.uint8)
    for t in range(n):
        # An ellipse, about 4 px per frame; the expression plays forward and back.
        px = int((width - cw) / 2 + (width - cw) / 3 * np.sin(2 * np.pi * t / 90))
        py = int((height - ch) / 2 + (height - ch) / 4 * np.cos(2 * np.pi * t / 70))
        period = max(1, 2 * len(crops) - 2)
        crop = crops[int(abs((t % period) - len(crops) + 1))]
        frame = background.copy()
        frame[py : py + ch, px : px + cw] = crop
        yield frame


def composed_scene(clip, size, n, face_width=200, seed=0):
    """``n`` frames of ``size`` with the face of ``clip`` moving, as one video: ``[frames]``."""
    return [list(moving_face(face_crops(clip, face_width), size, n, seed))]
