"""FacePreprocessor: videos in, stacks of aligned faces out (a scikit-learn transformer).

The face stage of the pipeline: for each video (a file or an array of frames) it reads the frames
(all, or N sampled uniformly), finds the face in each (MTCNN, optionally tracked between full
detections), aligns it on the eyes and returns the stack of aligned faces with their frame indices.
Frames without a face are skipped and counted. Results can be cached on disk, keyed by the video's
content and the settings, so a rerun over the same videos skips the detector.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from kemo._files import atomic_path, remove_stale
from kemo.errors import InputError
from kemo.faces.alignment import DEFAULT_SIZE, align_face
from kemo.faces.detection import KEYPOINT_NAMES, FaceDetector, as_uint8_image, to_rgb_uint8
from kemo.faces.tracking import CARRY_MODES, SELECT_MODES, FaceTracker

# Bump when the cached arrays or their meaning change, so old cache files are not reused.
CACHE_VERSION = 2  # 2: aligned crops repeat the image edge instead of black
#: Frames read per piece of :meth:`FacePreprocessor.iter_chunks` (and, joined, of ``transform``):
#: the detection records of a piece, Python dicts of several KB a face, become arrays at its end.
CHUNK_FRAMES = 512


class NoFaceWarning(UserWarning):
    """A video had no face in any of its frames (its face stack is empty)."""


class VideoFaces:
    """The aligned faces of one video and where they came from.

    ``np.asarray(video_faces)`` is the face stack, so a list of results can feed a model or
    :class:`kemo.features.FrameFeatureExtractor` directly.

    Attributes:
        faces: ``uint8`` (n, out, out, 3) RGB, or (n, out, out) with ``grayscale=True``.
        frame_indices: int64 (n,): the frame each face comes from (repeated with
            ``select="all"`` when a frame holds several faces).
        track_ids: int64 (n,): which tracked face each row is (always 0.. for one face).
        boxes: float32 (n, 4): ``[x, y, w, h]`` in the original frame.
        keypoints: float32 (n, 5, 2): the five landmarks in the original frame, in the order of
            :data:`kemo.faces.KEYPOINT_NAMES`.
        confidences: float32 (n,): MTCNN confidence (of the last full detection when carried).
        detected: bool (n,): True where a full detection ran on the frame, False where the face
            was carried by the tracker.
        frames_read: int: frames examined.
        missing_frames: int64: indices of the examined frames where no face was found.
        source: the video's path, or None for an array.
    """

    _ARRAYS = (
        "faces",
        "frame_indices",
        "track_ids",
        "boxes",
        "keypoints",
        "confidences",
        "detected",
        "missing_frames",
    )

    def __init__(
        self,
        faces,
        frame_indices,
        track_ids,
        boxes,
        keypoints,
        confidences,
        detected,
        frames_read,
        missing_frames,
        source=None,
    ):
        self.faces = faces
        self.frame_indices = frame_indices
        self.track_ids = track_ids
        self.boxes = boxes
        self.keypoints = keypoints
        self.confidences = confidences
        self.detected = detected
        self.frames_read = int(frames_read)
        self.missing_frames = missing_frames
        self.source = source

    @classmethod
    def from_faces(cls, faces, source=None):
        """Wrap face crops that were cut out elsewhere as the faces of one video.

        For sequences that come already cropped, as in face data sets (CK+48's 48x48
        sequences, the aligned faces that EmotiW ships with AFEW): one face per frame, one
        tracked face, the box the whole crop, no landmarks (NaN). The recogniser then uses
        them as they are, without detection or alignment.

        Args:
            faces: ``uint8`` (n, h, w) grey or (n, h, w, 3) RGB crops, in frame order.
            source: what they come from (a name or path), for messages.

        Returns:
            VideoFaces: face ``i`` comes from frame ``i``.

        Raises:
            InputError: not a non-empty ``uint8`` stack of grey or RGB crops.
        """
        faces = np.asarray(faces)
        if faces.dtype != np.uint8 or faces.ndim not in (3, 4) or len(faces) == 0 or (
                faces.ndim == 4 and faces.shape[-1] != 3):
            raise InputError(f"faces must be a non-empty uint8 stack (n, h, w) of grey or "
                             f"(n, h, w, 3) of RGB crops; got {faces.dtype} of shape "
                             f"{faces.shape}")
        n, h, w = faces.shape[:3]
        return cls(faces=faces, frame_indices=np.arange(n, dtype=np.int64),
                   track_ids=np.zeros(n, np.int64),
                   boxes=np.tile(np.array([0, 0, w, h], np.float32), (n, 1)),
                   keypoints=np.full((n, 5, 2), np.nan, np.float32),
                   confidences=np.ones(n, np.float32), detected=np.ones(n, bool),
                   frames_read=n, missing_frames=np.zeros(0, np.int64), source=source)

    @property
    def n_missing(self):
        """int: number of examined frames without a face."""
        return len(self.missing_frames)

    @property
    def has_faces(self):
        """bool: whether any face was found."""
        return len(self.faces) > 0

    def __len__(self):
        return len(self.faces)

    def track_rows(self):
        """The rows of each tracked face, the main face first.

        The main face is the one tracked in the most frames (ties: the larger median box, then
        the lower id), so a face that is the largest for a moment (a passer-by close to the
        camera) does not take over from the one seen all along.

        Returns:
            list of int64 arrays, one per track, longest first: indices into the rows.
        """
        groups = [np.flatnonzero(self.track_ids == t) for t in np.unique(self.track_ids)]
        areas = self.boxes[:, 2] * self.boxes[:, 3]
        return sorted(groups, key=lambda rows: (-len(rows), -float(np.median(areas[rows]))))

    def subset(self, rows):
        """The given rows (e.g. one track of :meth:`track_rows`), as a new VideoFaces."""
        arrays = {name: getattr(self, name)[rows] for name in self._ARRAYS
                  if name != "missing_frames"}
        return VideoFaces(**arrays, missing_frames=self.missing_frames,
                          frames_read=self.frames_read, source=self.source)

    def without_faces(self):
        """Everything but the crops: boxes, landmarks and frames kept, ``faces`` of side 0.

        For results that outlive their crops (a long video's, once its faces are scored):
        ``faces`` becomes an empty-pixel array ``(n, 0, 0[, 3])``, so ``len`` and
        :meth:`track_rows` still count the faces.
        """
        faces = np.zeros((len(self), 0, 0, *self.faces.shape[3:]), np.uint8)
        arrays = {name: getattr(self, name) for name in self._ARRAYS if name != "faces"}
        return VideoFaces(faces=faces, **arrays, frames_read=self.frames_read,
                          source=self.source)

    @classmethod
    def concatenate(cls, parts):
        """Join the pieces of one video (:meth:`FacePreprocessor.iter_chunks`) in order.

        Args:
            parts: non-empty list of VideoFaces of one source, in frame order.

        Returns:
            VideoFaces: their rows one after the other; ``frames_read`` and ``missing_frames``
            of all pieces.
        """
        if not parts:
            raise InputError("concatenate needs at least one VideoFaces")
        if len(parts) == 1:
            return parts[0]
        arrays = {name: np.concatenate([getattr(p, name) for p in parts])
                  for name in cls._ARRAYS}
        return cls(**arrays, frames_read=sum(p.frames_read for p in parts),
                   source=parts[0].source)

    def __array__(self, dtype=None, copy=None):
        """Return the face stack: ``np.asarray(result)`` is ``result.faces``."""
        faces = self.faces if dtype is None else self.faces.astype(dtype, copy=False)
        return faces.copy() if copy else faces

    def __repr__(self):
        name = Path(self.source).name if self.source else "array"
        return (
            f"VideoFaces({name}: {len(self)} faces {tuple(self.faces.shape[1:])}, "
            f"{self.frames_read} frames read, {self.n_missing} without a face)"
        )

    def save(self, path):
        """Write to an ``.npz`` file atomically (a temporary file, then a rename)."""
        path = Path(path)
        arrays = {name: getattr(self, name) for name in self._ARRAYS}
        arrays["frames_read"] = np.int64(self.frames_read)
        arrays["source"] = np.str_("" if self.source is None else str(self.source))
        with atomic_path(path) as tmp, open(tmp, "wb") as file:
            np.savez(file, **arrays)
        return path

    @classmethod
    def load(cls, path):
        """Read a file written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            kwargs = {name: data[name] for name in cls._ARRAYS}
            source = str(data["source"])
            return cls(
                **kwargs, frames_read=int(data["frames_read"]), source=source or None
            )


class FacePreprocessor(TransformerMixin, BaseEstimator):
    """Turn videos into stacks of aligned faces (detect, track, align, crop).

    Stateless: :meth:`fit` only checks the settings and builds the detector, so it can stand
    first in a scikit-learn :class:`~sklearn.pipeline.Pipeline`.

    Args:
        min_face_size, thresholds, scale_factor, max_side, min_confidence, small_face_size:
            the :class:`~kemo.faces.FaceDetector` settings (``max_side=1920``: larger frames
            are shrunk for detection; None detects at full size; ``small_face_size``: a second
            look for faces down to 20 pixels in frames where people are at a distance).
        size: side of the aligned crop (the paper: 128).
        out_size: side of the returned faces (the model's input: 224, 150, 48, 64); None keeps
            ``size``.
        grayscale: return single-channel faces.
        detect_every: run the full detector every k-th frame and track the faces between
            (1 = detect on every frame, the paper). Named so as not to be confused with
            ``Video.frames(every=...)``, which skips frames: here every frame read gets a face.
            With ``n_frames``, the tracker steps over the sampled frames.
        carry: how faces are carried between detections (see :class:`~kemo.faces.FaceTracker`).
        n_frames: sample this many frames uniformly per video (indices as
            :meth:`kemo.video.Video.sample`); None reads every frame.
        select: ``"largest"``, ``"most_confident"`` (one face per frame) or ``"all"`` (every
            face, with track ids).
        cache_dir: folder for cached results (created if needed); None disables caching.
        batch_size: frames per MTCNN call when ``detect_every`` is 1.
        verbose: show a progress bar of the frames read from each video (tqdm; on standard
            error in a terminal). It changes nothing in the results.

    Attributes:
        detector_: the :class:`~kemo.faces.FaceDetector` built by :meth:`fit`.

    Example:
        >>> prep = FacePreprocessor(out_size=48, grayscale=True, detect_every=5)
        >>> results = prep.fit_transform(["clip1.avi", "clip2.avi"])  # doctest: +SKIP
        >>> results[0].faces.shape, results[0].frame_indices[:3]  # doctest: +SKIP
        ((30, 48, 48), array([0, 1, 2]))
    """

    def __init__(
        self,
        min_face_size=40,
        thresholds=(0.6, 0.7, 0.8),
        scale_factor=0.709,
        max_side=1920,
        min_confidence=0.8,
        size=DEFAULT_SIZE,
        out_size=None,
        grayscale=False,
        detect_every=1,
        carry="flow",
        n_frames=None,
        select="largest",
        cache_dir=None,
        batch_size=8,
        verbose=False,
        small_face_size=20,
    ):
        self.min_face_size = min_face_size
        self.thresholds = thresholds
        self.scale_factor = scale_factor
        self.max_side = max_side
        self.min_confidence = min_confidence
        self.size = size
        self.out_size = out_size
        self.grayscale = grayscale
        self.detect_every = detect_every
        self.carry = carry
        self.n_frames = n_frames
        self.select = select
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.verbose = verbose
        self.small_face_size = small_face_size

    def fit(self, X=None, y=None):
        """Check the settings and build the detector; nothing is learned from ``X``.

        Args:
            X: ignored (videos, as for :meth:`transform`).
            y: ignored.

        Returns:
            FacePreprocessor: self.

        Raises:
            InputError: for a bad setting, naming it and the value received.
        """
        for name, value, minimum in (
            ("size", self.size, 8),
            ("detect_every", self.detect_every, 1),
        ):
            _check_int(name, value, minimum)
        if self.out_size is not None:
            _check_int("out_size", self.out_size, 8)
        if self.n_frames is not None:
            _check_int("n_frames", self.n_frames, 1)
        if not isinstance(self.grayscale, bool | np.bool_):
            raise InputError(f"grayscale must be True or False, got {self.grayscale!r}")
        if self.select not in SELECT_MODES:
            raise InputError(f"select must be one of {SELECT_MODES}, got {self.select!r}")
        if self.carry not in CARRY_MODES:
            raise InputError(f"carry must be one of {CARRY_MODES}, got {self.carry!r}")
        if self.cache_dir is not None and not isinstance(self.cache_dir, str | os.PathLike):
            raise InputError(f"cache_dir must be None or a folder path, got {self.cache_dir!r}")
        self.detector_ = FaceDetector(
            min_face_size=self.min_face_size,
            thresholds=self.thresholds,
            scale_factor=self.scale_factor,
            max_side=self.max_side,
            min_confidence=self.min_confidence,
            batch_size=self.batch_size,
            small_face_size=self.small_face_size,
        )
        return self

    def transform(self, X):
        """Find, align and stack the faces of each video.

        Args:
            X: list of videos, each a path (str or PathLike) or a frame array (T, H, W) or
                (T, H, W, C) (``uint8``/``uint16``; grey, RGB or RGBA).

        Returns:
            list[VideoFaces]: one per video, in order. A video with no face at all gives an
            empty stack (0, out, out[, 3]) and a :class:`NoFaceWarning`; the batch goes on.

        Raises:
            InputError: when ``X`` is not a list of videos (the element at fault is named).
            kemo.errors.VideoReadError: when a video file cannot be read.
        """
        check_is_fitted(self)
        videos = _check_videos(X)
        cache = None
        if self.cache_dir is not None:
            cache = Path(self.cache_dir)
            cache.mkdir(parents=True, exist_ok=True)
            remove_stale(cache)
        results = []
        for i, video in enumerate(videos):
            result = None
            if cache is not None:
                cache_file = cache / f"faces-{self._cache_key(video)}.npz"
                if cache_file.is_file():
                    try:
                        result = VideoFaces.load(cache_file)
                        # the key is the content: the file may have filled it under another name
                        result.source = None if isinstance(video, np.ndarray) else str(video)
                    except (OSError, ValueError, KeyError) as err:
                        warnings.warn(
                            f"ignoring unreadable cache file {cache_file} ({err}); recomputing",
                            RuntimeWarning,
                            stacklevel=2,
                        )
            if result is None:
                result = self._process(video, f"X[{i}]")
                if cache is not None:
                    result.save(cache_file)
            if not result.has_faces:
                what = result.source or f"X[{i}]"
                warnings.warn(
                    f"no face found in any of the {result.frames_read} frames read from {what}; "
                    "its face stack is empty (lower min_face_size or the thresholds?)",
                    NoFaceWarning,
                    stacklevel=2,
                )
            results.append(result)
        return results

    def _settings(self):
        """Everything that changes the output, for the cache key."""
        from kemo._tensorflow import import_quietly

        import_quietly()  # mtcnn imports TensorFlow
        import mtcnn

        return {
            "version": CACHE_VERSION,
            "mtcnn": getattr(mtcnn, "__version__", "?"),
            "detector": self.detector_.get_config(),
            "size": int(self.size),
            "out_size": None if self.out_size is None else int(self.out_size),
            "grayscale": bool(self.grayscale),
            "detect_every": int(self.detect_every),
            "carry": self.carry,
            "n_frames": None if self.n_frames is None else int(self.n_frames),
            "select": self.select,
        }

    def _cache_key(self, video):
        digest = hashlib.sha256()
        if isinstance(video, np.ndarray):
            digest.update(f"array {video.shape} {video.dtype}".encode())
            digest.update(np.ascontiguousarray(video).data)
        else:
            from kemo.video import check_video_file

            check_video_file(video)  # the reader's error for a missing file, not open()'s
            with open(video, "rb") as file:
                for chunk in iter(lambda: file.read(1 << 20), b""):
                    digest.update(chunk)
        digest.update(json.dumps(self._settings(), sort_keys=True).encode())
        return digest.hexdigest()

    def _frames(self, video, name):
        """(indices, iterable of (index, frame)) for a path or an array."""
        if isinstance(video, np.ndarray):
            if self.n_frames is None:
                indices = np.arange(len(video))
            else:  # the same indices kemo.video.Video.sample picks
                indices = np.linspace(0, len(video) - 1, self.n_frames).round().astype(np.int64)
            return ((int(i), video[i]) for i in indices), None
        from kemo.video import Video

        def stream():
            with Video(video) as clip:
                if self.n_frames is None:
                    yield from clip.frames()
                else:
                    indices, frames = clip.sample(self.n_frames)
                    yield from zip(indices.tolist(), frames, strict=True)

        return stream(), video

    def iter_chunks(self, video, chunk_frames=None):
        """Find, align and crop the faces of one video, a run of frames at a time.

        What :meth:`transform` does for one video, yielded in pieces so that a caller that
        needs less than the crops (the pretrained recogniser keeps each face's probabilities
        and box) can drop them as it goes, and memory does not grow with the video's length.
        The cache (``cache_dir``) is neither read nor written.

        Args:
            video: a path or a frame array, as an element of :meth:`transform`'s ``X``.
            chunk_frames: frames read per piece; None: :data:`CHUNK_FRAMES`.

        Yields:
            VideoFaces: the faces of ``chunk_frames`` consecutive frames read (the last piece
            fewer; at least one piece, empty for a video without frames), each with its own
            ``frames_read`` and ``missing_frames``; :meth:`VideoFaces.concatenate` of all of
            them is what :meth:`transform` returns.

        Raises:
            InputError: a bad ``video`` or ``chunk_frames``.
            kemo.errors.VideoReadError: the video file cannot be read.
        """
        check_is_fitted(self)
        chunk_frames = CHUNK_FRAMES if chunk_frames is None else chunk_frames
        _check_int("chunk_frames", chunk_frames, 1)
        yield from self._chunks(_check_videos([video])[0], "video", chunk_frames)

    def _process(self, video, name):
        return VideoFaces.concatenate(list(self._chunks(video, name, CHUNK_FRAMES)))

    def _chunks(self, video, name, chunk_frames):
        tracker = FaceTracker(
            self.detector_,
            detect_every=int(self.detect_every),
            select=self.select,
            carry=self.carry,
        )
        out = int(self.size if self.out_size is None else self.out_size)
        shape = (out, out) if self.grayscale else (out, out, 3)
        frames, source = self._frames(video, name)
        source = None if source is None else str(source)
        if self.verbose:
            frames = _frame_bar(frames, video, self.n_frames, name)
        faces, rows, missing = [], [], []
        frames_read = yielded = 0
        rgb_frames = ((i, to_rgb_uint8(f, f"{name} frame {i}")) for i, f in frames)
        for index, frame, records in tracker.track(rgb_frames):
            frames_read += 1
            if not records:
                missing.append(index)
            for record in records:
                faces.append(
                    align_face(
                        frame, record, size=int(self.size), out_size=out, grayscale=self.grayscale
                    )
                )
                rows.append((index, record))
            if frames_read == chunk_frames:
                yield _piece(faces, rows, missing, frames_read, shape, source)
                faces, rows, missing = [], [], []
                frames_read, yielded = 0, yielded + 1
        if frames_read or not yielded:
            yield _piece(faces, rows, missing, frames_read, shape, source)


def _piece(faces, rows, missing, frames_read, shape, source):
    """The VideoFaces of a run of frames, from the crops and detection records found in it."""
    return VideoFaces(
        faces=np.stack(faces) if faces else np.zeros((0, *shape), np.uint8),
        frame_indices=np.array([i for i, _ in rows], np.int64),
        track_ids=np.array([r["track_id"] for _, r in rows], np.int64),
        boxes=np.array([r["box"] for _, r in rows], np.float32).reshape(-1, 4),
        keypoints=np.array(
            [[r["keypoints"][k] for k in KEYPOINT_NAMES] for _, r in rows], np.float32
        ).reshape(-1, 5, 2),
        confidences=np.array([r["confidence"] for _, r in rows], np.float32),
        detected=np.array([r["detected"] for _, r in rows], bool),
        frames_read=frames_read,
        missing_frames=np.array(missing, np.int64),
        source=source,
    )


def _frame_bar(frames, video, n_frames, name):
    """``frames`` behind a progress bar of the frames read, named after the video."""
    import sys

    from tqdm.auto import tqdm

    total = n_frames
    if total is None and isinstance(video, np.ndarray):
        total = len(video)
    elif total is None:
        from kemo.errors import VideoReadError
        from kemo.video import Video

        try:
            with Video(video) as clip:
                total = clip.reported_frame_count or None  # the header: cheap, nearly exact
        except VideoReadError:
            total = None  # reading the frames reports it
    label = name if isinstance(video, np.ndarray) else Path(video).name
    return tqdm(frames, total=total, desc=label, unit="frame", leave=False, file=sys.stderr)


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_videos(X):
    """Return ``X`` as a list of paths and frame arrays, or raise naming the element at fault."""
    if isinstance(X, str | os.PathLike):
        raise InputError(
            f"X must be a list of videos, got the single path {str(X)!r}; pass [path]"
        )
    if isinstance(X, np.ndarray):
        if X.ndim == 5:  # (N, T, H, W, C): N videos of one shape
            return list(X)
        raise InputError(
            f"X must be a list of videos; got one array of shape {X.shape}: wrap a single "
            "video's (T, H, W[, C]) frames in a list"
        )
    if not isinstance(X, Sequence):
        raise InputError(f"X must be a list of video paths or frame arrays, got {type(X).__name__}")
    videos = []
    for i, video in enumerate(X):
        if isinstance(video, str | os.PathLike):
            videos.append(os.fspath(video))
        elif isinstance(video, np.ndarray):
            if video.ndim not in (3, 4) or len(video) == 0:
                raise InputError(
                    f"X[{i}] must be a frame array (T, H, W) or (T, H, W, C) with T >= 1, got "
                    f"shape {video.shape}"
                )
            as_uint8_image(video[0], f"X[{i}][0]")  # dtype and channels, checked up front
            videos.append(video)
        else:
            raise InputError(
                f"X[{i}] must be a video path or a frame array, got {type(video).__name__}"
            )
    return videos
