"""The videos a recogniser is given: the list checked, their faces found, failures collected."""

import functools
import os
import warnings

import numpy as np

from kemo._files import file_stamp
from kemo.errors import InputError, KemoError, NoFaceError, one_line
from kemo.recognizer.results import VideoFailure

# Failures a batch may skip: kemo's own errors and what OpenCV / the OS raise on bad files.
_SKIPPABLE = (KemoError, OSError, ValueError)


def find_faces(videos, prep, errors, verbose, reduce=None):
    """The faces of every video, on the Dask cluster of :func:`kemo.parallel.using` if any.

    Args:
        videos: checked list of videos (see :func:`_check_video_list`).
        prep: the fitted FacePreprocessor (None when every video is a VideoFaces).
        errors: ``"raise"``, or ``"skip"`` to collect a failed video and go on.
        verbose: a progress bar over the videos.
        reduce: None, or a function ``reduce(faces, index)`` that takes a VideoFaces of the
            video ``videos[index]`` and returns what to keep of it (e.g. its faces scored,
            then :meth:`~kemo.faces.VideoFaces.without_faces`). A video found here, without a
            cache, goes to it a piece at a time
            (:meth:`~kemo.faces.FacePreprocessor.iter_chunks`), so that its crops are never
            all in memory at once; any other video goes to it whole. The index tells the
            pieces of a video that failed half-way from those of the next.

    Returns:
        ``(list of VideoFaces, None for a failure; list of VideoFailure)``.
    """
    from tqdm.auto import tqdm

    from kemo import parallel
    from kemo.faces import NoFaceWarning, VideoFaces

    # on a Dask cluster (kemo.parallel.using) the workers find the faces; the loop below
    # then reports and raises as in a serial run
    remote = None if prep is None else parallel.find_faces(
        prep, {i: v for i, v in enumerate(videos) if not isinstance(v, VideoFaces)})
    results, failures = [], []
    for i, video in enumerate(tqdm(videos, desc="videos", unit="video",
                                   disable=not verbose)):
        name = _name_of(video, i)
        whole = reduce
        try:
            if isinstance(video, VideoFaces):
                found = video
            elif remote is not None:
                found = remote.pop(i)
                if isinstance(found, BaseException):
                    raise found
            elif reduce is not None and prep.cache_dir is None:
                found = VideoFaces.concatenate([reduce(part, i) for part in
                                                prep.iter_chunks(video)])
                whole = None
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", NoFaceWarning)
                    found = prep.transform([video])[0]
            if not found.has_faces:
                smallest = getattr(prep, "min_face_size", None)
                hint = "" if smallest is None else (
                    f" (faces under {smallest} px are not looked for: lower the face "
                    f"stage's min_face_size, or --min-face-size on the command line)")
                raise NoFaceError(f"{name}: no face found in any of the {found.frames_read} "
                                  f"frames read{hint}")
            if whole is not None:
                found = whole(found, i)
        except _SKIPPABLE as exc:
            if errors == "raise":
                raise
            source = None if isinstance(video, np.ndarray) else str(
                getattr(video, "source", video))
            failures.append(VideoFailure(i, source, one_line(exc), type(exc).__name__))
            found = None
        results.append(found)
    return results, failures


def report_failures(failures, total):
    """Warn (RuntimeWarning) of the videos a batch skipped; return ``failures``.

    The warning points at the code that called the recogniser's method.
    """
    if failures:
        listed = "; ".join(f"{one_line(f.error, f.source or f'video {f.index}')} ({f.kind})"
                           for f in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        warnings.warn(f"{len(failures)} of {total} videos failed and were skipped: "
                      f"{listed}{more}", RuntimeWarning, stacklevel=3)
    return failures


def _check_video_list(X):
    from kemo.faces import VideoFaces

    if isinstance(X, (str, os.PathLike, VideoFaces)):
        raise InputError(f"X must be a list of videos, got a single {type(X).__name__}; "
                         f"pass [video]")
    if isinstance(X, np.ndarray) and X.ndim == 1 and X.dtype.kind in "UO":
        X = [str(v) if isinstance(v, str) else v for v in X]  # paths, e.g. np.array(paths)
    elif isinstance(X, np.ndarray) and X.ndim != 5:
        raise InputError(f"X must be a list of videos; got one array of shape {X.shape}: wrap a "
                         f"single video's (T, H, W[, C]) frames in a list")
    try:
        videos = list(X)
    except TypeError as exc:
        raise InputError(f"X must be a list of videos, got {type(X).__name__}") from exc
    if not videos:
        raise InputError("X holds no video: pass at least one")
    for i, video in enumerate(videos):
        if not isinstance(video, (str, os.PathLike, np.ndarray, VideoFaces)):
            raise InputError(f"X[{i}] must be a video path, a frame array or a VideoFaces, got "
                             f"{type(video).__name__}")
    return videos


def _name_of(video, index):
    if isinstance(video, (str, os.PathLike)):
        return str(video)
    return getattr(video, "source", None) or f"video {index}"


def _video_fps(source):
    """Frame rate of a video file; 30 for an array, or a file that reports none or is gone.

    Opening the file decodes its first frame only, once per file: a recogniser asks for the
    rate of a video per track and per branch. A cached VideoFaces may outlive its file, so a
    file that cannot be opened gives the default too.
    """
    from kemo.timeline import DEFAULT_FPS

    if source is None:
        return DEFAULT_FPS
    try:
        stamp = file_stamp(source)
    except OSError:
        return DEFAULT_FPS
    return _file_fps(*stamp)


@functools.lru_cache(maxsize=256)
def _file_fps(path, mtime_ns, size):
    """:func:`_video_fps` of a file, opened once per stamp (a file rewritten since, again)."""
    from kemo.timeline import DEFAULT_FPS
    from kemo.video import Video

    try:
        with Video(path) as video:
            return video.fps or DEFAULT_FPS
    except (KemoError, OSError):
        return DEFAULT_FPS
