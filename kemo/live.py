"""Live emotion: a camera, a network stream or a file, labelled as its frames arrive.

The live path is the file path turned around: instead of reading a whole video and then
scoring it, each frame is scored as soon as it arrives::

    reader thread -> bounded queue -> face tracker -> aligned faces -> face model
        (drops the oldest frame         (full detection       -> per-face probabilities
         when analysis is behind)        every k frames)          pooled over the last
                                                                  `window` seconds -> label

A reader thread reads the source and feeds a small queue. When the analysis falls behind a
live source (a camera, a network stream, or a file paced with ``realtime=True``), the oldest
waiting frame is dropped and counted, so the backlog never grows and the latency stays that of
one frame's analysis. A file read as fast as it decodes (``realtime=False``) drops nothing: the
reader waits for the analysis instead.

Each face keeps its tracker id; its probabilities are pooled over the last ``window`` seconds
the way the file path pools a whole video (the recogniser's ``pooling``, see
:func:`kemo.timeline.pool`), so a live label is steady where a frame-by-frame label flickers.

The ``kemo live`` command (:func:`run`) writes one JSON line per analysed frame, an annotated
video and a summary; see ``kemo live --help``.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from kemo.errors import InputError, VideoReadError

__all__ = ["LiveFace", "LiveResult", "LiveStream", "open_source"]

#: Frames waiting for the analysis; when the queue is full a live source drops the oldest.
#: One: the frame analysed next is always the newest, so it waits at most one analysis.
QUEUE_SIZE = 1
#: Seconds OpenCV's FFmpeg waits to open a network stream, and then for each frame of it.
NETWORK_TIMEOUT = 10.0
_END = object()  # the reader's last item: the source ended (or failed, see _Reader.error)


# ----------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class LiveFace:
    """One face in one analysed frame.

    Attributes:
        track_id: the tracker's id of the face (kept while the face is followed).
        box: ``(x, y, w, h)`` of the face in the frame.
        frame_probabilities: float32 (K,): the face model's probabilities for this frame.
        probabilities: float (K,): those pooled over the last ``window`` seconds of the track.
        label: the most probable class of ``probabilities``.
    """

    track_id: int
    box: tuple
    frame_probabilities: np.ndarray
    probabilities: np.ndarray
    label: str


@dataclasses.dataclass(frozen=True)
class LiveResult:
    """What :class:`LiveStream` found in one analysed frame.

    Attributes:
        t: seconds since the start of the stream: the frame's time in a file (index / fps),
            the wall-clock time since the first frame for a camera or a network stream.
        frame: the frame's index among the frames read (dropped ones included).
        faces: one :class:`LiveFace` per face found.
        latency: seconds from the frame's arrival to this result.
        dropped: frames dropped so far because the analysis was behind.
        class_names: names of the probabilities' columns.
        image: the RGB frame itself (for drawing; not part of :meth:`to_dict`).
    """

    t: float
    frame: int
    faces: tuple
    latency: float
    dropped: int
    class_names: tuple
    image: np.ndarray = dataclasses.field(repr=False, compare=False)

    def to_dict(self):
        """Plain values, as ``kemo live --jsonl`` writes them.

        Returns:
            dict with ``t`` (seconds), ``frame``, ``latency_ms``, ``dropped`` and ``faces``: a
            list of ``{"track", "box", "label", "probabilities"}`` (the pooled probabilities,
            ``{class: p}``).
        """
        return {
            "t": round(self.t, 3), "frame": self.frame,
            "latency_ms": round(self.latency * 1000, 1), "dropped": self.dropped,
            "faces": [{"track": face.track_id, "box": [round(float(v), 1) for v in face.box],
                       "label": face.label,
                       "probabilities": {name: round(float(p), 4) for name, p in
                                         zip(self.class_names, face.probabilities, strict=True)}}
                      for face in self.faces],
        }


# ----------------------------------------------------------------------------- sources


class _Capture:
    """A camera, a network stream or a video file read through OpenCV (RGB frames out)."""

    def __init__(self, source, kind, timeout):
        import cv2

        self.kind = kind
        self.name = f"camera {source}" if kind == "camera" else str(source)
        if kind == "camera":
            self._cap = cv2.VideoCapture(int(source))
        else:
            # Without timeouts FFmpeg may wait for ever on a stream that stalls.
            ms = int(timeout * 1000)
            self._cap = cv2.VideoCapture(str(source), cv2.CAP_FFMPEG,
                                         [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms,
                                          cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        if not self._cap.isOpened():
            self._cap.release()
            raise VideoReadError(_open_failure(self.name, kind))
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and math.isfinite(fps) and 0 < fps < 1000 else 0.0
        size = (self._cap.get(cv2.CAP_PROP_FRAME_WIDTH), self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.size = tuple(int(v) for v in size) if min(size) > 0 else None

    def read(self):
        import cv2

        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        if frame.ndim == 2:
            return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def close(self):
        self._cap.release()


class _Frames:
    """An iterable of frames (arrays) as a source."""

    kind = "frames"
    name = "frames"
    size = None

    def __init__(self, frames, fps):
        self._frames = iter(frames)
        self.fps = fps

    def read(self):
        from kemo.faces.detection import to_rgb_uint8

        frame = next(self._frames, None)
        return None if frame is None else to_rgb_uint8(np.asarray(frame), "frame")

    def close(self):
        close = getattr(self._frames, "close", None)
        if close is not None:  # a generator: let it run its own cleanup
            close()


def _open_failure(name, kind):
    if kind == "camera":
        return (f"{name} cannot be opened: no such camera, or another program holds it "
                f"(cameras are numbered from 0; on Linux they are /dev/video*)")
    if kind == "url":
        return (f"{name}: cannot open the stream (unreachable, refused, or not a video "
                f"stream OpenCV's FFmpeg reads)")
    return f"{name}: OpenCV cannot open it as a video"


def source_kind(source):
    """How :func:`open_source` reads ``source``: ``"camera"``, ``"url"``, ``"file"``, ``"frames"``.

    Args:
        source: a camera index (an int, or a string of digits), a URL (``scheme://...``), a
            video file, or an iterable of frames.

    Raises:
        InputError: for anything else.
    """
    if isinstance(source, bool):
        raise InputError(f"source must be a camera index, a URL, a video file or frames, got "
                         f"{source!r}")
    if isinstance(source, (int, np.integer)) or (isinstance(source, str)
                                                 and source.strip().isdigit()):
        return "camera"
    if isinstance(source, str) and "://" in source:
        return "url"
    if isinstance(source, (str, os.PathLike)):
        return "file"
    if isinstance(source, np.ndarray) and source.ndim in (3, 4):
        return "frames"
    if hasattr(source, "__iter__") and not isinstance(source, (bytes, dict)):
        return "frames"
    raise InputError(f"source must be a camera index, a URL, a video file or an iterable of "
                     f"frames, got {type(source).__name__}")


def open_source(source, fps=None, timeout=NETWORK_TIMEOUT):
    """Open a live source; it is checked here, so a bad one fails at once with one line.

    Args:
        source: see :func:`source_kind`.
        fps: frame rate of an iterable of frames (default 30), or the rate assumed for a
            source that reports none.
        timeout: seconds to wait for a network stream to open, then for each of its frames.

    Returns:
        an object with ``read()`` (the next RGB uint8 frame, or None at the end), ``close()``,
        ``fps``, ``kind`` and ``name``.

    Raises:
        InputError: ``source`` is of no known kind.
        kemo.errors.VideoReadError: the camera, stream or file cannot be opened.
    """
    kind = source_kind(source)
    if kind == "frames":
        return _Frames(source, float(fps or 30.0))
    if kind == "file":
        path = Path(source)
        if not path.is_file():
            raise VideoReadError(f"{path}: no such video file")
    capture = _Capture(source, kind, timeout)
    capture.fps = capture.fps or float(fps or 30.0)
    return capture


# ----------------------------------------------------------------------------- the stream


class LiveStream:
    """Emotions of the faces of a live source, frame by frame, as the frames arrive.

    Iterate over it for :class:`LiveResult` objects; :meth:`stop` (or :meth:`close`) ends it,
    and it ends by itself when the source does or ``duration`` is reached. Use it as a context
    manager so that the reader thread and the source are always released. Made by
    :meth:`kemo.VideoEmotionRecognizer.stream`, which documents the arguments.

    Attributes:
        frames_read: frames read from the source so far.
        analysed: frames analysed so far.
        dropped: frames dropped so far because the analysis was behind.
        faces: faces found so far (over all analysed frames).
        track_ids: ids of the tracks seen so far.
        latencies: seconds of latency of each analysed frame.
        fps: the source's frame rate (30 when it reports none).
        kind: ``"camera"``, ``"url"``, ``"file"`` or ``"frames"``.
    """

    def __init__(self, recognizer, source, window=2.0, tracks="all", realtime=False,
                 duration=None, fps=None, timeout=NETWORK_TIMEOUT, queue_size=QUEUE_SIZE):
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not (
                0 <= window < math.inf):
            raise InputError(f"window must be a number of seconds >= 0, got {window!r}")
        if tracks not in ("main", "all"):
            raise InputError(f"tracks must be 'main' or 'all', got {tracks!r}")
        if duration is not None and (isinstance(duration, bool)
                                     or not isinstance(duration, (int, float))
                                     or not duration > 0):
            raise InputError(f"duration must be None or a number of seconds > 0, got "
                             f"{duration!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise InputError(f"queue_size must be an integer >= 1, got {queue_size!r}")
        self.window = float(window)
        self.duration = None if duration is None else float(duration)
        self.frames_read = self.analysed = self.dropped = self.faces = 0
        self.track_ids = set()
        self.latencies = []
        self._stop = threading.Event()
        self._queue = queue.Queue(maxsize=queue_size)
        self._thread = None
        self._error = None
        self._started = None  # perf_counter() when the first frame was read
        self._ended = None  # perf_counter() when the stream ended
        self._source = open_source(source, fps=fps, timeout=timeout)
        try:
            self.kind, self.fps = self._source.kind, self._source.fps
            # A camera or a network stream runs at its own pace; a file only when asked.
            self._live = self.kind in ("camera", "url")
            self._pace = bool(realtime) and not self._live
            self._drop = self._live or self._pace
            self._setup(recognizer, tracks)
        except BaseException:
            self._source.close()
            raise
        self._results = self._analyse()

    # ------------------------------------------------------------------ life cycle

    def _setup(self, recognizer, tracks):
        """Build the tracker, load the models and run them once on the source's first frame.

        Loading TensorFlow, MTCNN and the face model takes seconds, and each network's first
        call costs far more than the next ones (MTCNN's last two run only on a frame with a
        face candidate: a blank frame does not warm them). Done here, before the reader starts,
        the first frames are neither kept waiting nor dropped meanwhile. A file's first frame
        is then analysed as usual; a live source's, stale by now, is discarded.
        """
        from kemo.faces import FaceTracker, align_face

        prep = recognizer._preprocessor()
        self._classifier = recognizer._classifier()
        # the file path's pooling (VideoEmotionRecognizer(pooling=...)), over times in seconds
        self._pool = lambda proba, times: recognizer._pool(proba, times, 1.0)
        self.class_names = tuple(recognizer.timeline_class_names)
        self._align = {"size": int(prep.size), "grayscale": bool(prep.grayscale),
                       "out_size": int(prep.size if prep.out_size is None else prep.out_size)}
        self._tracker = FaceTracker(prep.detector_, detect_every=int(prep.detect_every),
                                    select="all" if tracks == "all" else prep.select,
                                    carry=prep.carry)
        first = self._source.read()
        width, height = self._source.size or (640, 480)
        frame = np.zeros((height, width, 3), np.uint8) if first is None else first
        records = prep.detector_.detect(frame)
        side = self._align["out_size"]
        faces = [align_face(frame, r, **self._align) for r in records[:1]] or [
            np.zeros((side, side) if self._align["grayscale"] else (side, side, 3), np.uint8)]
        self._classifier.predict_proba(np.stack(faces))
        self._pending = None if self._live else first  # the reader hands it out first

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._results)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def stop(self):
        """End the stream after the frame being analysed, as if the source had ended.

        Safe to call from another thread or a signal handler.
        """
        self._stop.set()

    def close(self):
        """Stop, and release the reader thread and the source."""
        self._stop.set()
        self._results.close()
        self._join()

    def _join(self):
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._source is not None:
            self._source.close()
            self._source = None

    def summary(self):
        """Figures of the stream so far (what ``kemo live`` prints at the end).

        Returns:
            dict: ``frames_read``, ``analysed``, ``dropped``, ``faces``, ``tracks``,
            ``latency_median_ms`` and ``latency_p95_ms`` (None before the first frame) and
            ``seconds`` (wall clock from the first frame read to the end of the stream).
        """
        ms = np.asarray(self.latencies) * 1000
        return {"frames_read": self.frames_read, "analysed": self.analysed,
                "dropped": self.dropped, "faces": self.faces, "tracks": len(self.track_ids),
                "latency_median_ms": float(np.median(ms)) if len(ms) else None,
                "latency_p95_ms": float(np.percentile(ms, 95)) if len(ms) else None,
                "seconds": 0.0 if self._started is None else
                (self._ended or time.perf_counter()) - self._started}

    # ------------------------------------------------------------------ reader thread

    def _read(self):
        """Read frames into the queue until the source ends or the stream stops."""
        index = 0
        try:
            while not self._stop.is_set():
                frame, self._pending = self._pending, None
                if frame is None:
                    frame = self._source.read()
                if frame is None:
                    break
                now = time.perf_counter()
                if self._started is None:
                    self._started = now
                if self._pace:  # deliver the frame when a camera would have
                    due = self._started + index / self.fps
                    if self._stop.wait(max(0.0, due - now)):
                        break
                    now = max(now, due)
                t = now - self._started if self._live else index / self.fps
                self.frames_read += 1
                item = (index, t, now, frame)
                if self._drop:
                    self._put_latest(item)
                else:
                    self._put(item)
                index += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._error = exc
        finally:
            self._put(_END)

    def _put(self, item):
        """Wait for room in the queue (a file read as fast as it decodes loses no frame)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                pass

    def _put_latest(self, item):
        """Queue ``item``, dropping the oldest waiting frame when the queue is full."""
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:  # only this thread puts, so once one is taken there is room
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:  # the analysis took it first
                    pass

    # ------------------------------------------------------------------ analysis

    def _analyse(self):
        """Yield a LiveResult per frame taken from the queue (the generator behind next())."""
        self._thread = threading.Thread(target=self._read, name="kemo-live-reader", daemon=True)
        self._thread.start()
        history = {}  # track id -> deque of (t, frame probabilities) within the window
        try:
            while not self._stop.is_set():
                try:
                    item = self._queue.get(timeout=0.05)
                except queue.Empty:
                    if self._past_duration(None):
                        break
                    continue
                if item is _END:
                    if self._error is not None:
                        raise _reader_failure(self._error, self._source)
                    break
                index, t, arrived, frame = item
                if self._past_duration(t):
                    break
                faces = self._faces(frame, t, history)
                latency = time.perf_counter() - arrived
                self.analysed += 1
                self.faces += len(faces)
                self.latencies.append(latency)
                yield LiveResult(t=t, frame=index, faces=faces, latency=latency,
                                 dropped=self.dropped, class_names=self.class_names,
                                 image=frame)
        finally:
            self._ended = time.perf_counter()
            self._stop.set()
            self._join()

    def _past_duration(self, t):
        """Whether ``duration`` is over (by the frame's time, or the clock while none comes)."""
        if self.duration is None:
            return False
        if t is not None:
            return t >= self.duration
        return self._started is not None and (self._live or self._pace) and (
            time.perf_counter() - self._started >= self.duration)

    def _faces(self, frame, t, history):
        """Track, align and score the faces of one frame; pool each over its window."""
        from kemo.faces import align_face

        records = self._tracker.update(frame)
        if not records:
            proba = []
        else:
            crops = np.stack([align_face(frame, r, **self._align) for r in records])
            proba = self._classifier.predict_proba(crops)
        faces = []
        for record, p in zip(records, proba, strict=True):
            track = int(record["track_id"])
            self.track_ids.add(track)
            past = history.setdefault(track, collections.deque())
            past.append((t, p))
            while past[0][0] <= t - self.window and len(past) > 1:
                past.popleft()
            pooled = self._pool(np.stack([q for _, q in past]), np.array([s for s, _ in past]))
            faces.append(LiveFace(track, tuple(float(v) for v in record["box"]), p, pooled,
                                  self.class_names[int(np.argmax(pooled))]))
        for track in [k for k, past in history.items() if past[-1][0] <= t - self.window]:
            del history[track]  # a face gone for a whole window starts afresh if it returns
        return tuple(faces)


def _reader_failure(error, source):
    from kemo.errors import KemoError, one_line

    if isinstance(error, KemoError):
        return error
    name = getattr(source, "name", "source")
    return VideoReadError(one_line(f"reading failed: {error}", name))


# ----------------------------------------------------------------------------- kemo live


def gui_problem():
    """Why ``--show`` cannot open a window here, or None when it can.

    Returns:
        str or None: e.g. that this OpenCV is the headless build.
    """
    import cv2

    gui = [line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
           if line.strip().startswith("GUI:")]
    if gui and gui[0].upper() == "NONE":
        return ("--show needs OpenCV with a GUI, but this OpenCV is the headless build "
                "(opencv-python-headless): install opencv-python to see a window, or write the "
                "annotated video with --out")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        return "--show needs a display, and DISPLAY is not set: use --out to write the video"
    return None


def check(args):
    """Check the ``kemo live`` command line before TensorFlow loads; raise InputError."""
    from kemo.video import WRITE_SUFFIXES

    kind = source_kind(args.source)
    if kind == "camera":  # a quick look (no TensorFlow yet): a missing camera fails at once
        open_source(int(args.source)).close()
    if kind == "file" and not Path(args.source).is_file():
        raise VideoReadError(f"{args.source}: no such video file (a camera is a number, e.g. "
                             f"0; a stream a URL, e.g. rtsp://host/path)")
    suffix = Path(args.out).suffix.lower() if args.out else None
    if args.out and suffix not in WRITE_SUFFIXES:
        raise InputError(f"--out {args.out}: kemo cannot write {suffix or 'suffix-less'} "
                         f"videos; name a {', '.join(WRITE_SUFFIXES)} file")
    if args.jsonl and args.out and Path(args.jsonl) == Path(args.out):
        raise InputError("--jsonl and --out must name different files")
    if args.weights and not Path(args.weights).is_file():
        raise InputError(f"--weights {args.weights}: no such file")
    if args.show:
        problem = gui_problem()
        if problem:
            raise InputError(problem)


def annotate(result, style):
    """The frame of ``result`` with each face's box and pooled label drawn (a new array)."""
    from kemo._drawing import draw_frame

    image = np.array(result.image)
    marks = [(face.track_id, face.box, f"#{face.track_id} {face.label} "
              f"{float(face.probabilities.max()):.2f}") for face in result.faces]
    draw_frame(image, marks, f"{result.t:.1f} s  {result.latency * 1000:.0f} ms", style)
    return image


def summary_line(figures):
    """The summary ``kemo live`` prints, from :meth:`LiveStream.summary`."""
    if figures["latency_median_ms"] is None:
        latency = "latency -"
    else:
        latency = (f"latency median {figures['latency_median_ms']:.0f} ms, "
                   f"p95 {figures['latency_p95_ms']:.0f} ms")
    rate = figures["analysed"] / figures["seconds"] if figures["seconds"] > 0 else 0.0
    return (f"kemo live: {figures['frames_read']} frames read, {figures['analysed']} "
            f"analysed, {figures['dropped']} dropped; {figures['faces']} faces in "
            f"{figures['tracks']} track{'' if figures['tracks'] == 1 else 's'}; {latency}; "
            f"{figures['seconds']:.1f} s, "
            f"{rate:.1f} analysed frames/s")


def run(args):
    """Run ``kemo live`` (see :func:`kemo.cli.build_parser`); return the exit status.

    Every output is closed whole whatever ends the run: the end of the stream, ``--duration``,
    Ctrl-C or SIGTERM (each of which only stops the stream: the frame being analysed is
    finished and written). JSON lines are written and flushed one at a time, as they come;
    the annotated video is written under a temporary name and renamed at the end.
    """
    from kemo.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED
    from kemo.cli.common import recognizer_for

    rec = recognizer_for(args)
    source = int(args.source) if source_kind(args.source) == "camera" else args.source
    stream = rec.stream(source, window=args.window, tracks=args.tracks,
                        realtime=args.realtime, duration=args.duration)
    stopped_by = []

    def on_signal(signum, frame):
        stopped_by.append(signum)
        stream.stop()

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C and SIGTERM stop the stream instead of raising wherever the main thread
        # is (in the video encoder, say), which would leave outputs cut in the middle.
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, on_signal)
    echo = sys.stderr if args.jsonl == "-" else sys.stdout
    try:
        with stream, _JsonLines(args.jsonl) as lines:
            frames = _frames(stream, lines, args.show)
            if args.out:
                _write_video(args.out, frames, stream.fps)
            else:
                for _ in frames:
                    pass
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    print(summary_line(stream.summary()), file=echo, flush=True)
    if not stopped_by:
        return EXIT_OK
    return EXIT_TERMINATED if stopped_by[0] == signal.SIGTERM else EXIT_INTERRUPTED


class _JsonLines:
    """``--jsonl``: one line per result, written whole and flushed (``-``: standard output)."""

    def __init__(self, target):
        self._file = None
        if target == "-":
            self._file, self._own = sys.stdout, False
        elif target:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            self._file, self._own = open(target, "w", encoding="utf-8"), True  # noqa: SIM115

    def write(self, result):
        if self._file is not None:
            import json

            self._file.write(json.dumps(result.to_dict()) + "\n")  # one write: a whole line
            self._file.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._file is not None and self._own:
            self._file.close()


def _frames(stream, lines, show):
    """Annotated frames of the stream, each repeated for the frames read since the last.

    The repeats (the dropped frames) keep the annotated video as long as the stream.
    """
    from kemo._drawing import style_for

    style, last = None, -1
    for result in stream:
        lines.write(result)
        if style is None:
            style = style_for(result.image.shape[0])
        image = annotate(result, style)
        if show and not _show(image):
            stream.stop()
        for _ in range(max(1, result.frame - last)):
            yield image
        last = result.frame


def _show(image):
    """Show a frame; False once the user pressed q or Esc."""
    import cv2

    cv2.imshow("kemo live", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)


def _write_video(path, frames, fps):
    """Write the annotated frames to ``path`` atomically (kept whole when the stream stops)."""
    from kemo._files import atomic_path
    from kemo.errors import VideoWriteError
    from kemo.video import write_video

    path = Path(path)
    with atomic_path(path, path.suffix) as tmp:
        try:
            write_video(tmp, frames, fps=fps)
        except VideoWriteError as exc:  # name the user's file, not the temporary one
            raise VideoWriteError(str(exc).replace(str(tmp), str(path))) from exc
        except InputError as exc:
            if "no frames" in str(exc):
                raise InputError(f"--out {path}: no frame was analysed, so no video was "
                                 f"written") from None
            raise
