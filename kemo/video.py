"""Reading videos frame by frame (streamed, RGB uint8) and writing small clips.

The first step of the pipeline: frames -> faces -> features -> aggregation -> classifiers. A
:class:`Video` decodes one frame at a time, so memory stays flat whatever the video's length;
:meth:`Video.sample` picks N frames spread uniformly over the clip, as the paper's C3D and LSTM
inputs need fixed-length clips.

Frame counts: the count a container reports can be wrong (a truncated or re-muxed file keeps its
header's count; some containers report 0). :attr:`Video.frame_count` is the number of frames that
really decode: it checks the reported count with one seek to the reported last frame, and counts
by decoding when that check fails. Iteration always stops at the real end.

Seeking: OpenCV's FFmpeg backend seeks to the nearest key frame and decodes forward to the frame
asked for. On XVID (AVI), mp4v (MP4) and MJPG clips this gives exactly the frame that sequential
reading gives (checked in the tests). A seek whose position does not come back as asked falls back
to decoding through from the start, and ``seek_threshold=None`` never seeks at all.
"""

import itertools
import math
from pathlib import Path

import cv2
import numpy as np

from kemo.errors import InputError, VideoReadError, VideoWriteError

__all__ = ["Video", "read_frames", "write_video"]

#: Writer codecs (FourCC) that work with OpenCV's bundled FFmpeg; ``avc1`` (H.264) does not.
CODECS = ("XVID", "mp4v", "MJPG")
_DEFAULT_CODEC = {".avi": "XVID", ".mp4": "mp4v", ".mov": "mp4v", ".mkv": "XVID"}
#: File endings :func:`write_video` picks a codec for.
WRITE_SUFFIXES = tuple(_DEFAULT_CODEC)


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_video_file(path):
    """Raise :class:`VideoReadError` unless ``path`` is a file with some bytes in it.

    Raises:
        VideoReadError: the file is missing, not a file, or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"video file {str(path)!r} does not exist or is not a file.")
    if path.stat().st_size == 0:
        raise VideoReadError(f"video file {str(path)!r} is empty (0 bytes).")


class Video:
    """A video file opened for streamed reading with OpenCV (FFmpeg backend).

    Use it as a context manager so the file is closed. Frames come out as RGB uint8 arrays of
    shape (height, width, 3), grey videos included. A still image FFmpeg can read opens as a
    one-frame video. Each :meth:`frames` or :meth:`sample` call starts afresh; iterators of one
    Video may be interleaved (correct, but each switch back costs a reopen).

    Args:
        path: The video file (AVI, MP4, MKV... anything FFmpeg reads).
        seek_threshold: When the next frame wanted is more than this many frames ahead,
            :meth:`sample` and :meth:`frames` seek instead of decoding the frames between.
            None never seeks (slower on long videos; frame-accurate on any file).

    Attributes:
        path (pathlib.Path): The file.
        fps (float): Frames per second the container reports (0.0 when it reports none).
        size (tuple): (width, height) of the decoded frames.
        reported_frame_count (int): The frame count in the container header (may be wrong).

    Raises:
        VideoReadError: The file is missing, empty, not a video, or has no decodable frame.
        InputError: ``seek_threshold`` is not None or an integer >= 0.

    Example:
        >>> with Video("clip.avi") as video:  # doctest: +SKIP
        ...     print(video.frame_count, video.fps, video.size)
        ...     for index, frame in video.frames(every=5):
        ...         pass
    """

    def __init__(self, path, seek_threshold=64):
        self._cap = None
        self.path = Path(path)
        if seek_threshold is not None:
            seek_threshold = _check_int(seek_threshold, "seek_threshold", 0)
        self.seek_threshold = seek_threshold
        check_video_file(self.path)
        self._open()
        ok, frame = self._cap.read()
        if not ok or frame is None:
            self.close()
            raise VideoReadError(f"{str(self.path)!r}: no frame could be decoded; the file is "
                                 "not a video, or is damaged or truncated.")
        self._pos = 1  # index of the frame the next read() returns
        self.size = (int(frame.shape[1]), int(frame.shape[0]))
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else 0.0
        reported = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.reported_frame_count = int(reported) if math.isfinite(reported) and reported > 0 else 0
        self._count = None

    # ------------------------------------------------------------------ life cycle

    def _open(self):
        """(Re)open the capture at frame 0."""
        if self._cap is not None:
            self._cap.release()
        self._cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        self._pos = 0
        if not self._cap.isOpened():
            self.close()
            raise VideoReadError(f"{str(self.path)!r}: OpenCV cannot open it as a video (not a "
                                 "video file, or a codec FFmpeg lacks).")

    def close(self):
        """Release the file. Reading again after this raises VideoReadError."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_cap", None) is not None:
            self._cap.release()

    def __repr__(self):
        w, h = self.size
        return (f"Video({str(self.path)!r}, {w}x{h}, {self.fps:g} fps, "
                f"{self.reported_frame_count} frames reported)")

    # ------------------------------------------------------------------ properties

    @property
    def frame_count(self):
        """int: The number of frames that really decode (see the module notes)."""
        if self._count is None:
            self._count = self._verified_count()
        return self._count

    @property
    def duration(self):
        """float: Length in seconds, ``frame_count / fps``; NaN when the fps is unknown."""
        return self.frame_count / self.fps if self.fps > 0 else float("nan")

    def __len__(self):
        return self.frame_count

    def __iter__(self):
        return self.frames()

    def _verified_count(self):
        self._require_open()
        n = self.reported_frame_count
        if n > 0 and self.seek_threshold is not None:
            # One seek: the reported last frame must decode and nothing may follow it.
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, n - 1)
            exact = (int(self._cap.get(cv2.CAP_PROP_POS_FRAMES)) == n - 1
                     and self._cap.grab() and not self._cap.grab())
            self._pos = None  # position unknown now: the next read reopens
            if exact:
                return n
        self._open()
        while self._cap.grab():
            self._pos += 1
        count = self._pos
        self._pos = None
        return count

    # ------------------------------------------------------------------ reading

    def _require_open(self):
        if self._cap is None:
            raise VideoReadError(f"{str(self.path)!r}: the video was closed; open it again.")

    def _read_at(self, wanted):
        """Yield (index, RGB frame) for the increasing indices ``wanted``; stop at the real end."""
        for target in wanted:
            self._require_open()
            if self._pos is None or target < self._pos:
                self._open()
            if self.seek_threshold is not None and target - self._pos > self.seek_threshold:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, target)
                if int(self._cap.get(cv2.CAP_PROP_POS_FRAMES)) == target:
                    self._pos = target
                else:  # the seek did not land where asked: decode through instead
                    self._open()
            while self._pos < target:
                if not self._cap.grab():
                    return
                self._pos += 1
            ok, frame = self._cap.read()
            if not ok or frame is None:
                self._pos = None
                return
            self._pos += 1
            yield target, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def frames(self, every=1, start=0, stop=None):
        """Iterate over frames lazily, one decoded frame in memory at a time.

        Args:
            every: Keep every ``every``-th frame (1 = all).
            start: Index of the first frame.
            stop: Index to stop before (None = the real end of the video).

        Returns:
            Iterator of (index, frame) with ``frame`` RGB uint8 (height, width, 3). It ends at
            the video's real end even when the container reports more frames.

        Raises:
            InputError: ``every`` < 1, ``start`` < 0, or ``stop`` < ``start``.
            VideoReadError: The video was closed.
        """
        every = _check_int(every, "every", 1)
        start = _check_int(start, "start", 0)
        if stop is None:
            wanted = itertools.count(start, every)
        else:
            wanted = range(start, _check_int(stop, "stop", start), every)
        self._require_open()
        return self._read_at(wanted)

    def sample(self, n):
        """Read ``n`` frames spread uniformly over the video, first and last frame included.

        The indices are ``round(linspace(0, frame_count - 1, n))``. When the video has fewer
        than ``n`` frames, indices repeat (each frame is decoded once), so the result always has
        ``n`` frames: what fixed-length clip models need.

        Args:
            n: Number of frames, >= 1.

        Returns:
            tuple: ``(indices, frames)``: int64 (n,) increasing frame indices, and uint8
            (n, height, width, 3) RGB frames.

        Raises:
            InputError: ``n`` is not an integer >= 1.
            VideoReadError: A frame inside the video's counted length fails to decode.

        Example:
            >>> with Video("clip.avi") as video:  # doctest: +SKIP
            ...     indices, frames = video.sample(16)
        """
        n = _check_int(n, "n", 1)
        indices = np.linspace(0, self.frame_count - 1, n).round().astype(np.int64)
        unique = np.unique(indices)
        decoded = dict(self._read_at(unique.tolist()))
        if len(decoded) != len(unique):
            missing = sorted(set(unique.tolist()) - set(decoded))
            raise VideoReadError(f"{str(self.path)!r}: frames {missing[:5]} of "
                                 f"{self.frame_count} could not be decoded.")
        return indices, np.stack([decoded[i] for i in indices.tolist()])


def read_frames(path, n=None, every=1):
    """Read a video's frames into one array (convenience around :class:`Video`).

    Args:
        path: The video file.
        n: Sample this many frames uniformly (see :meth:`Video.sample`); None reads every
            ``every``-th frame of the whole video.
        every: Step between frames when ``n`` is None.

    Returns:
        tuple: ``(indices, frames)``, int64 (k,) and uint8 RGB (k, height, width, 3).

    Raises:
        VideoReadError: The file cannot be read as a video.
        InputError: Bad ``n`` or ``every``.

    Example:
        >>> indices, frames = read_frames("clip.avi", n=16)  # doctest: +SKIP
    """
    with Video(path) as video:
        if n is not None:
            return video.sample(n)
        pairs = list(video.frames(every=every))
    return (np.array([i for i, _ in pairs], dtype=np.int64), np.stack([f for _, f in pairs]))


def write_video(path, frames, fps=30.0, codec=None):
    """Write RGB (or grey) uint8 frames to a video file, streamed.

    Args:
        path: Output file; its folder must exist. The suffix picks the codec unless ``codec``
            is given: ``.avi``/``.mkv`` XVID, ``.mp4``/``.mov`` mp4v.
        frames: Iterable of uint8 frames (height, width, 3) RGB or (height, width) grey, all
            of one size, or one array (n, height, width[, 3]). The encoders need an even width
            and height: an odd one is padded with a copy of the last row or column.
        fps: Frames per second, > 0.
        codec: FourCC, one of :data:`CODECS` ("XVID", "mp4v", "MJPG"); H.264 ("avc1") is not
            available in OpenCV's bundled FFmpeg.

    Returns:
        pathlib.Path: The written file.

    Raises:
        InputError: No frames, a frame of another size, shape or dtype, bad ``fps`` or codec.
        VideoWriteError: OpenCV cannot write the file (folder missing or codec unavailable).

    Example:
        >>> frames = np.zeros((10, 48, 64, 3), np.uint8)
        >>> write_video("blank.avi", frames, fps=25)  # doctest: +SKIP
    """
    path = Path(path)
    if codec is None:
        codec = _DEFAULT_CODEC.get(path.suffix.lower())
        if codec is None:
            raise InputError(f"{str(path)!r}: unknown video suffix {path.suffix!r}; use one of "
                             f"{sorted(_DEFAULT_CODEC)} or pass codec= one of {CODECS}.")
    elif codec not in CODECS:
        raise InputError(f"codec {codec!r} is not supported; use one of {CODECS}.")
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps < math.inf:
        raise InputError(f"fps must be a positive number, got {fps!r}.")
    if not path.parent.is_dir():
        raise VideoWriteError(f"{str(path)!r}: folder {str(path.parent)!r} does not exist.")
    writer, size, even, count = None, None, None, 0
    try:
        for i, frame in enumerate(frames):
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (
                    frame.ndim == 3 and frame.shape[2] != 3):
                raise InputError(f"frame {i}: got {frame.dtype} {frame.shape}, expected uint8 "
                                 "(height, width, 3) RGB or (height, width) grey.")
            if writer is None:
                size = (frame.shape[1], frame.shape[0])
                even = (size[0] + size[0] % 2, size[1] + size[1] % 2)
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), float(fps),
                                         even)
                if not writer.isOpened():
                    raise VideoWriteError(f"{str(path)!r}: OpenCV cannot write {codec} video of "
                                          f"size {even}; try another codec of {CODECS}.")
            elif (frame.shape[1], frame.shape[0]) != size:
                raise InputError(f"frame {i} is {frame.shape[1]}x{frame.shape[0]}, frame 0 "
                                 f"was {size[0]}x{size[1]}: all frames need one size.")
            code = cv2.COLOR_GRAY2BGR if frame.ndim == 2 else cv2.COLOR_RGB2BGR
            bgr = cv2.cvtColor(frame, code)
            if even != size:  # the encoders would silently crop an odd size; pad instead
                bgr = cv2.copyMakeBorder(bgr, 0, even[1] - size[1], 0, even[0] - size[0],
                                         cv2.BORDER_REPLICATE)
            writer.write(bgr)
            count += 1
    finally:
        if writer is not None:
            writer.release()
    if count == 0:
        raise InputError(f"{str(path)!r}: no frames to write.")
    return path
