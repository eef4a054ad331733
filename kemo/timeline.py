"""What a face's emotion timeline says as a whole: pooling and emotion segments.

The pretrained face model gives every frame where a face was found one probability per class:
the face's timeline. This module reads it two ways.

* :func:`pool`: one probability vector for the whole video, the pretrained recogniser's
  label (``VideoEmotionRecognizer(pooling=...)``). The methods are in :data:`POOLINGS`.
* :func:`find_segments`: the stretches of the smoothed timeline (:func:`smooth`) that hold
  one emotion, with their start and end in seconds.

Why pooling matters: a clip that starts neutral and ends in an expression (CK+, and most
acted clips) has many neutral frames; their plain mean pulls the clip toward Neutral. The
default, ``"expressive"``, weights each frame by how far it is from neutral, so it follows
the expressive part of a video but stays the plain mean where every frame is equally
expressive (e.g. an emotion that fills the whole clip) or equally neutral.
``benchmarks/ckplus_videos.py`` measures every method on the CK+ clips, whole and cut to
their second half (docs/results.md).

Example:
    >>> p = np.array([[0, 0, 0, 0, 0, 0, 1.0], [0, 0, 0, 1.0, 0, 0, 0]])  # Neutral, Happy
    >>> pool(p, "mean").round(2).tolist()
    [0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.5]
    >>> int(pool(p, "expressive").argmax())  # Happy: the neutral frame weighs nothing
    3
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from kemo.datasets import CLASS_NAMES
from kemo.errors import InputError

__all__ = ["DEFAULT_POOLING", "POOLINGS", "Segment", "find_segments", "pool", "smooth"]

#: Pooling methods of :func:`pool`, from a frame-by-frame timeline to one video label.
POOLINGS = ("mean", "expressive", "confidence", "topk", "peak")
#: The pooling a recogniser uses unless told otherwise (chosen in benchmarks/ckplus_videos.py).
DEFAULT_POOLING = "expressive"
#: Width (seconds) of the moving average that smooths a timeline: segments and ``"peak"``.
SMOOTHING = 0.5
#: ``"topk"`` pools this fraction of the frames (at least one): the most confident ones.
TOP_FRACTION = 0.25
#: A face unseen for longer than this (seconds) ends a segment.
MAX_GAP = 0.5
#: Frame rate assumed when a video reports none (frame arrays, some containers).
DEFAULT_FPS = 30.0
#: Column of Neutral in the FER2013 class order.
NEUTRAL = CLASS_NAMES.index("Neutral")


@dataclasses.dataclass(frozen=True)
class Segment:
    """A stretch of a face's timeline with one emotion.

    Attributes:
        start: its start in seconds (the time of its first frame).
        end: its end in seconds: the time of its last frame plus one sampling step, so
            that neighbouring segments meet.
        label: the emotion (the top class of the smoothed timeline in all its frames).
        probability: the mean probability of ``label`` over its frames (unsmoothed).
        first_frame: index of its first frame in the video.
        last_frame: index of its last frame.
    """

    start: float
    end: float
    label: str
    probability: float
    first_frame: int
    last_frame: int

    @property
    def duration(self):
        """float: ``end - start`` in seconds."""
        return self.end - self.start

    def to_dict(self):
        """Plain Python values: times and probability rounded to microseconds / 6 digits."""
        return {"start": round(self.start, 6), "end": round(self.end, 6), "label": self.label,
                "probability": round(self.probability, 6), "first_frame": self.first_frame,
                "last_frame": self.last_frame}


def _check_timeline(probabilities, times):
    """Validated ``(probabilities (n, K), times (n,))`` as float64 arrays.

    Times default to rows :data:`DEFAULT_FPS` apart.
    """
    proba = np.asarray(probabilities, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] == 0 or proba.shape[1] == 0:
        raise InputError(f"probabilities must be (n_frames, n_classes) with at least one "
                         f"frame; got shape {proba.shape}")
    if not np.isfinite(proba).all():
        raise InputError("probabilities contain NaN or inf")
    if times is None:
        return proba, np.arange(len(proba)) / DEFAULT_FPS
    times = np.asarray(times, dtype=np.float64)
    if times.shape != (len(proba),):
        raise InputError(f"times has shape {times.shape}; expected ({len(proba)},), one per "
                         f"frame")
    if not np.isfinite(times).all() or np.any(np.diff(times) < 0):
        raise InputError("times must be finite and increasing")
    return proba, times


def _weighted_mean(proba, weights):
    total = weights.sum()
    if total <= 0:  # no frame has any weight: every frame counts the same
        return proba.mean(axis=0)
    return weights @ proba / total


def smooth(probabilities, times=None, window=SMOOTHING):
    """Moving average of a timeline over a window of ``window`` seconds.

    Each row becomes the mean of the rows within ``window / 2`` seconds of it. The window is
    in time, not rows, so frames read sparsely (``--frames N``) or faces missing for a while
    are averaged only with frames close in time.

    Args:
        probabilities: ``(n, K)`` per-frame probabilities.
        times: ``(n,)`` time of each row in seconds, increasing; default: rows
            :data:`DEFAULT_FPS` apart.
        window: width in seconds (0: no smoothing).

    Returns:
        float64 array ``(n, K)``.

    Raises:
        InputError: a malformed timeline or a negative window.
    """
    proba, times = _check_timeline(probabilities, times)
    if not isinstance(window, (int, float, np.number)) or not 0 <= window < math.inf:
        raise InputError(f"window must be a number of seconds >= 0; got {window!r}")
    first = np.searchsorted(times, times - window / 2, side="left")
    last = np.searchsorted(times, times + window / 2, side="right")
    sums = np.vstack([np.zeros((1, proba.shape[1])), np.cumsum(proba, axis=0)])
    return (sums[last] - sums[first]) / (last - first)[:, None]


def pool(probabilities, method=DEFAULT_POOLING, times=None, neutral=NEUTRAL):
    """One probability vector for a whole timeline.

    Methods (:data:`POOLINGS`):

    * ``"mean"``: every frame counts the same.
    * ``"expressive"`` (default): each frame weighted by how far it is from neutral,
      ``1 - p(Neutral)``. Where all frames are equally expressive, it is the mean.
    * ``"confidence"``: each frame weighted by its top probability.
    * ``"topk"``: the mean of the :data:`TOP_FRACTION` most confident frames.
    * ``"peak"``: the least neutral :data:`SMOOTHING`-second stretch of the timeline (the
      smoothed timeline at its apex).

    Args:
        probabilities: ``(n, K)`` per-frame probabilities (rows sum to 1).
        method: one of :data:`POOLINGS`.
        times: ``(n,)`` time of each row in seconds (only ``"peak"`` reads it); default:
            rows :data:`DEFAULT_FPS` apart.
        neutral: the column of Neutral (``"expressive"`` and ``"peak"`` need one); None
            when the classes have no Neutral.

    Returns:
        float64 array ``(K,)``, summing to 1 when the rows do.

    Raises:
        InputError: an unknown method, a malformed timeline, or a method that needs a
            Neutral column without one.

    Example:
        >>> p = np.array([[0.1, 0.9], [0.8, 0.2], [0.7, 0.3]])
        >>> pool(p, "topk", neutral=None).tolist()  # the one most confident frame of 3
        [0.1, 0.9]
    """
    if method not in POOLINGS:
        raise InputError(f"pooling must be one of {POOLINGS}; got {method!r}")
    proba, times = _check_timeline(probabilities, times)
    if method in ("expressive", "peak"):
        if neutral is None or not 0 <= neutral < proba.shape[1]:
            raise InputError(f"pooling {method!r} weighs frames by their Neutral probability, "
                             f"but these classes have no Neutral column (neutral={neutral!r}); "
                             f"use 'mean', 'confidence' or 'topk'")
    if method == "mean":
        return proba.mean(axis=0)
    if method == "expressive":
        return _weighted_mean(proba, 1.0 - proba[:, neutral])
    if method == "confidence":
        return _weighted_mean(proba, proba.max(axis=1))
    if method == "topk":
        k = max(1, math.ceil(TOP_FRACTION * len(proba)))
        # stable: among equally confident frames, the earliest ones
        best = np.argsort(-proba.max(axis=1), kind="stable")[:k]
        return proba[best].mean(axis=0)
    smoothed = smooth(proba, times, SMOOTHING)
    return smoothed[int(np.argmin(smoothed[:, neutral]))]


def find_segments(probabilities, frame_indices, fps=DEFAULT_FPS, class_names=CLASS_NAMES,
                  window=SMOOTHING, max_gap=MAX_GAP):
    """The stretches of a face's smoothed timeline that hold one emotion.

    The timeline is smoothed over ``window`` seconds (:func:`smooth`) and each frame labelled
    with its top class; a segment is a run of frames with one label. A face unseen for longer
    than ``max_gap`` seconds (or 1.5 sampling steps, when frames are read further apart) also
    ends a segment, so segments never span a stretch without the face.

    Args:
        probabilities: ``(n, K)`` per-frame probabilities of one face.
        frame_indices: ``(n,)`` the frame of each row, increasing.
        fps: frames per second of the video.
        class_names: ``K`` names, in column order.
        window: smoothing window in seconds (0: none).
        max_gap: longest time without the face inside a segment, in seconds.

    Returns:
        list of :class:`Segment`, in time order.

    Raises:
        InputError: a malformed timeline, a bad ``fps``, ``window`` or ``max_gap``, or class
            names that do not match the columns.

    Example:
        >>> p = np.eye(7)[[6, 6, 6, 3, 3, 3]]  # 3 neutral frames, then 3 happy ones
        >>> [(s.label, s.first_frame, s.last_frame) for s in find_segments(p, range(6),
        ...                                                                 window=0)]
        [('Neutral', 0, 2), ('Happy', 3, 5)]
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.number)) or not (
            0 < fps < math.inf):
        raise InputError(f"fps must be a positive number; got {fps!r}")
    if not isinstance(max_gap, (int, float, np.number)) or not 0 <= max_gap < math.inf:
        raise InputError(f"max_gap must be a number of seconds >= 0; got {max_gap!r}")
    frames = np.asarray(frame_indices, dtype=np.int64)
    proba, times = _check_timeline(probabilities, frames / float(fps))
    if proba.shape[1] != len(class_names):
        raise InputError(f"probabilities have {proba.shape[1]} columns for "
                         f"{len(class_names)} class names")
    top = smooth(proba, times, window).argmax(axis=1)
    steps = np.diff(times)
    # one row stands for the time to the next one read: a frame, or more when sampled
    step = float(np.median(steps)) if len(steps) else 1.0 / fps
    step = step if step > 0 else 1.0 / fps
    ends = (top[1:] != top[:-1]) | (steps > max(max_gap, 1.5 * step))
    starts = np.concatenate([[0], np.flatnonzero(ends) + 1])
    stops = np.concatenate([starts[1:], [len(top)]])
    segments = []
    for a, b in zip(starts, stops, strict=True):
        label = int(top[a])
        segments.append(Segment(start=float(times[a]), end=float(times[b - 1] + step),
                                label=str(class_names[label]),
                                probability=float(proba[a:b, label].mean()),
                                first_frame=int(frames[a]), last_frame=int(frames[b - 1])))
    return segments
