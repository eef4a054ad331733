"""The ``kemo`` command: emotions of videos from the shell.

Subcommands::

    kemo predict VIDEO_OR_DIR... [--json FILE] [--csv FILE] [--timeline FILE] [--annotate OUT]
    kemo faces VIDEO_OR_DIR... --out DIR
    kemo features VIDEO_OR_DIR... --out FILE.npz
    kemo train fer2013 --data DIR [--out RUN_DIR]
    kemo train videos LIST_OR_DIR --out MODEL_DIR
    kemo evaluate LIST_OR_DIR [--model MODEL_DIR] [--out DIR]
    kemo live SOURCE [--jsonl FILE|-] [--out VIDEO] [--show] [--duration S] [--realtime]

Exit status: 0 when everything succeeded; 1 when an input was bad or some videos of a batch
failed (the others are still processed and written, and the failures are listed at the end);
2 for a bad command line. Errors are printed on one line, without a traceback (set
``KEMO_DEBUG=1`` to see it). Result files are written atomically (a temporary file, then a
rename). Heavy libraries (TensorFlow, Keras, OpenCV, MTCNN) are imported only when a command
runs, and only after its input paths were checked, so ``kemo --help`` and a mistyped path answer
at once. SIGTERM stops a command as Ctrl-C does: temporary files are removed and finished
results kept for the rerun (exit status 143, 130 for Ctrl-C). The batch commands (predict,
faces, features, evaluate, train videos) take ``--scheduler ADDRESS`` to process the videos on
a Dask cluster (:mod:`kemo.parallel`).

The package's modules: :mod:`~kemo.cli.parser` the parser and its subcommands,
:mod:`~kemo.cli.predict`, :mod:`~kemo.cli.extract` (``faces``, ``features``),
:mod:`~kemo.cli.train`, :mod:`~kemo.cli.evaluate` and :mod:`~kemo.cli.live` the commands, and
:mod:`~kemo.cli.common` what they share.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from kemo.cli.common import (
    BATCH_ERRORS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    VIDEO_SUFFIXES,
)
from kemo.cli.parser import build_parser

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_TERMINATED", "EXIT_USAGE",
           "VIDEO_SUFFIXES", "build_parser", "main"]


def main(argv=None):
    """Run the ``kemo`` command; return its exit status.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        int: 0 on success, 1 on bad input or failed videos, 2 on a bad command line, 130 when
        interrupted (Ctrl-C), 143 when terminated (SIGTERM).
    """
    args = build_parser().parse_args(argv)
    # Bad videos are reported by kemo in one line; OpenCV's and FFmpeg's own notices about
    # them (before cv2 is imported) would only repeat it.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    previous = _catch_sigterm()
    try:
        if getattr(args, "check", None) is not None:
            args.check(args)  # paths and options, before the seconds TensorFlow takes to load
        with _cluster(args):  # --scheduler: every batch of the command runs on it
            from kemo._tensorflow import import_quietly

            import_quietly()
            return args.run(args)
    except (KeyboardInterrupt, _Terminated) as exc:
        terminated = isinstance(exc, _Terminated)
        print(f"kemo: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        if os.environ.get("KEMO_DEBUG"):
            raise
        known = isinstance(exc, BATCH_ERRORS)
        text = " ".join(str(exc).split()) or type(exc).__name__
        hint = "" if known else f" ({type(exc).__name__}; set KEMO_DEBUG=1 for the traceback)"
        print(f"kemo: error: {text}{hint}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    """SIGTERM, raised where the command is, so that cleanup runs as for Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated


def _catch_sigterm():
    """Turn SIGTERM into :class:`_Terminated`; return the handler to restore (None: none set).

    By default SIGTERM ends the process at once, leaving half-written temporary files; raised
    as an exception, it unwinds through the ``finally`` blocks that remove them.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None  # only the main thread may set handlers (kemo called from a worker thread)
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _on_sigterm)
    return signal.SIG_DFL if previous is None else previous


def _cluster(args):
    """The Dask cluster of ``--scheduler``, open for the ``with`` block (or nothing)."""
    if not getattr(args, "scheduler", None):
        return contextlib.nullcontext()
    from kemo import parallel

    return parallel.using(args.scheduler)
