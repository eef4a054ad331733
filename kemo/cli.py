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
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import os
import signal
import sys
from pathlib import Path

from kemo._files import write_atomic
from kemo.errors import InputError, KemoError, one_line

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".wmv")
# Failures a batch goes on after: kemo's own errors, bad files, bad values.
_BATCH_ERRORS = (KemoError, OSError, ValueError)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors take one line."""

    def error(self, message):
        """Print ``kemo ...: error: message`` on one line and exit with status 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------- parser


def build_parser():
    """Return the ``kemo`` argument parser (all subcommands)."""
    parser = _Parser(prog="kemo", description="Recognise emotions in videos of faces "
                     "(EmotiW 2017 method, Keras 3 + scikit-learn).")
    from kemo import __version__

    parser.add_argument("--version", action="version", version=f"kemo {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND",
                                     parser_class=_Parser)
    commands.required = True

    predict = commands.add_parser(
        "predict", help="emotion of each video (top emotion and the class probabilities)",
        description="Print the top emotion and the class probabilities of each video, and "
        "write them to the files named. A FILE of '-' is standard output (the summary lines "
        "then go to standard error). A run killed midway and rerun with the same --json / "
        "--csv / --timeline / --segments files resumes: the videos already done (same file "
        "content, same settings) are not computed again.")
    predict.add_argument("videos", nargs="+", metavar="VIDEO", help=_VIDEOS_HELP)
    _add_model(predict)
    _add_faces(predict)
    predict.add_argument("--tracks", choices=("main", "all"), default="main",
                         help="'main': the main face only, the one seen longest (default); "
                         "'all': every face found, the main one first")
    predict.add_argument("--json", metavar="FILE",
                         help="write the results as JSON (fps, each face's track id, "
                         "\"main\": true on the main face, start and end seconds, segments; "
                         "with --timeline also each face's frames)")
    predict.add_argument("--csv", metavar="FILE", help="write one CSV row per video (and face)")
    predict.add_argument("--timeline", metavar="FILE",
                         help="write per-frame probabilities and boxes as CSV (frame and "
                         "time in seconds); also adds them to the --json output, as each "
                         "face's \"timeline\"")
    predict.add_argument("--segments", metavar="FILE",
                         help="write each face's emotion segments as CSV (start and end "
                         "seconds, label, mean probability)")
    # the names of kemo.timeline.POOLINGS, spelled out so that --help imports no numpy
    predict.add_argument("--pooling", choices=("mean", "expressive", "confidence", "topk",
                                               "peak"),
                         help="how a face's frame probabilities make the video's (pretrained "
                         "model): 'mean', 'expressive' (default: frames weighted by how far "
                         "they are from neutral), 'confidence' (frames weighted by their top "
                         "probability), 'topk' (the most confident quarter of the frames) or "
                         "'peak' (the least neutral half second)")
    predict.add_argument("--annotate", metavar="OUT",
                         help="write each video with boxes and emotions drawn: a file (one "
                         "video, e.g. out.mp4 or out.avi) or a folder, created if needed "
                         "(<video>.annotated.mp4 inside; videos of one name get _2, _3...)")
    _add_scheduler(predict)
    _add_quiet(predict)
    predict.set_defaults(run=_predict, check=_check_predict)

    faces = commands.add_parser(
        "faces", help="save the aligned faces of videos as PNG files",
        description="Find, align and save the faces of each video as PNG files, with an index "
        "(faces.csv: file, video, frame, track, box, confidence).")
    faces.add_argument("videos", nargs="+", metavar="VIDEO", help=_VIDEOS_HELP)
    faces.add_argument("--out", required=True, metavar="DIR", help="output folder")
    faces.add_argument("--size", type=_positive, default=128, metavar="S",
                       help="side of the saved faces in pixels (default 128)")
    faces.add_argument("--gray", action="store_true", help="save grayscale faces")
    faces.add_argument("--tracks", choices=("main", "all"), default="main",
                       help="'main': the main face only, the one seen longest (default; the "
                       "track ids of kemo predict); 'all': every face")
    _add_faces(faces)
    _add_scheduler(faces)
    _add_quiet(faces)
    faces.set_defaults(run=_faces, check=_check_videos)

    features = commands.add_parser(
        "features", help="per-frame and aggregated features of videos, to an .npz file",
        description="Compute the frame features of each video (the networks of the model) and "
        "their aggregation (signed square root, L2, mean and variance), and save them in an "
        ".npz file: paths, aggregated (n_videos, D), offsets (n_videos + 1), and "
        "frame_<network> (all frames, in video order; video i is rows offsets[i]:offsets[i+1]).")
    features.add_argument("videos", nargs="+", metavar="VIDEO", help=_VIDEOS_HELP)
    features.add_argument("--out", required=True, metavar="FILE.npz", help="output file")
    _add_model(features)
    _add_faces(features)
    _add_scheduler(features)
    _add_quiet(features)
    features.set_defaults(run=_features, check=_check_features)

    train = commands.add_parser("train", help="train a frame model or a video recogniser",
                                description="Train kemo's models.")
    what = train.add_subparsers(title="what to train", dest="what", metavar="WHAT",
                                parser_class=_Parser)
    what.required = True
    fer = what.add_parser(
        "fer2013", help="train the ResNet-10 face model on FER2013",
        description="Train kemo's ResNet-10 (48x48 gray) on FER2013 Training, scored on "
        "PublicTest, with checkpoints in RUN_DIR after every epoch: rerunning with the same "
        "RUN_DIR resumes. The trained weights are exported to RUN_DIR/"
        "fer2013_resnet10.weights.h5 (float16); use them with `kemo predict VIDEO --weights "
        "RUN_DIR/fer2013_resnet10.weights.h5`, or from Python with "
        "VideoEmotionRecognizer(weights=...) or FaceEmotionClassifier(weights=...).")
    fer.add_argument("--data", required=True, metavar="DIR",
                     help="FER2013 (fer2013.npz / fer2013.csv / image folders, or a folder "
                     "holding fer2013/)")
    fer.add_argument("--out", default="runs/fer2013_resnet10", metavar="RUN_DIR",
                     help="checkpoint folder (default runs/fer2013_resnet10)")
    fer.add_argument("--epochs", type=_positive, default=26, metavar="N",
                     help="total epochs (default 26)")
    fer.add_argument("--recipe", choices=("kemo", "paper", "finetune"), default="kemo",
                     help="training recipe (default kemo; paper: SGD lr 1e-4, batch 32; "
                     "finetune: a second cosine cycle from 0.01, with --init)")
    fer.add_argument("--init", metavar="MODEL.keras",
                     help="start from this model (e.g. another run's best.keras) instead of "
                     "a fresh ResNet-10")
    fer.add_argument("--erasing", type=_probability, default=0.0, metavar="P",
                     help="random erasing: the probability of blanking a patch of each "
                     "training image (default 0: off)")
    fer.add_argument("--ema", type=_probability, default=0.0, metavar="MOMENTUM",
                     help="keep an exponential moving average of the weights with this momentum "
                     "per step, e.g. 0.999, and ship the average (default 0: off)")
    fer.add_argument("--aligned", metavar="CACHE.npz",
                     help="also train on FER2013 as kemo's detector and aligner cut it (each "
                     "image raw or aligned with equal chance), cached in CACHE.npz (made on "
                     "first use, about 10 minutes)")
    fer.add_argument("--distribute", action="store_true",
                     help="train data-parallel over every local device (GPUs, else CPUs; "
                     "tensorflow or jax backend), each batch split between them")
    fer.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32",
                     help="Keras dtype policy (default float32; mixed_bfloat16 is faster only "
                     "on CPUs with bfloat16 units, e.g. Intel AMX; much slower on others)")
    fer.add_argument("--limit", type=_positive, metavar="N",
                     help="use only the first N images of each split (quick runs)")
    fer.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_quiet(fer)
    fer.set_defaults(run=_train_fer2013)

    videos = what.add_parser(
        "videos", help="train a video recogniser on labelled videos",
        description="Fit a VideoEmotionRecognizer (aggregated frame features + linear SVM, and "
        "optionally the C3D and LSTM branches with fusion) on labelled videos and save it to "
        "MODEL_DIR. " + _LIST_HELP)
    videos.add_argument("videos", metavar="LIST_OR_DIR", help="labelled videos (see above)")
    videos.add_argument("--out", required=True, metavar="MODEL_DIR", help="model folder")
    _add_faces(videos)
    videos.add_argument("--C", type=float, default=1.0, help="SVM regularisation (default 1)")
    videos.add_argument("--calibration", choices=("sigmoid", "isotonic", "softmax", "auto"),
                        default="sigmoid", help="SVM probabilities (default sigmoid)")
    videos.add_argument("--cv", type=_positive, default=3,
                        help="calibration folds (default 3; each class needs that many videos; "
                        "--calibration auto uses softmax when a class has fewer)")
    videos.add_argument("--c3d", action="store_true", help="add the C3D branch")
    videos.add_argument("--lstm", action="store_true", help="add the LSTM branch")
    videos.add_argument("--lstm-epochs", type=_positive, metavar="N",
                        help="LSTM training epochs (default 30)")
    videos.add_argument("--fusion-weights", metavar="W",
                        help="'search', or comma-separated weights of the branches (default: "
                        "the paper's 0.5,0.25,0.25)")
    videos.add_argument("--finetune", action="store_true",
                        help="first fine-tune the face model on the training videos' faces, "
                        "each labelled with its video's label (the paper's second step; "
                        "labels must be FER's 7 emotions; default: off)")
    videos.add_argument("--finetune-epochs", type=_positive, metavar="N",
                        help="fine-tuning epochs, with --finetune (default 3)")
    videos.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_scheduler(videos)
    _add_quiet(videos)
    videos.set_defaults(run=_train_videos, check=_check_train_videos)

    evaluate = commands.add_parser(
        "evaluate", help="accuracy, per-class table and confusion matrix on labelled videos",
        description="Predict labelled videos with a model (default: the pretrained one), print "
        "the accuracy and the per-class table, and with --out write report.json, "
        "predictions.csv and confusion.png. " + _LIST_HELP)
    evaluate.add_argument("videos", metavar="LIST_OR_DIR", help="labelled videos (see above)")
    _add_model(evaluate)
    evaluate.add_argument("--out", metavar="DIR", help="folder for the report files")
    evaluate.add_argument("--protocol", type=_protocol, metavar="loso|kfold:K",
                          help="cross-validate a recogniser configuration with subjects kept "
                          "apart instead of scoring a model: 'loso' leaves one subject out "
                          "per fold, 'kfold:K' makes K folds of whole subjects; every video is "
                          "predicted by a recogniser fitted without its subject. Needs "
                          "subjects: a CK+ folder, or 'path,label,group' lines")
    evaluate.add_argument("--model-config", metavar="JSON",
                          help="with --protocol: the recogniser's settings, a JSON file or text "
                          "of VideoEmotionRecognizer parameters, e.g. '{\"calibration\": "
                          "\"softmax\", \"lstm\": true}' (default: its defaults; --weights "
                          "sets the face model)")
    _add_faces(evaluate)
    _add_scheduler(evaluate)
    _add_quiet(evaluate)
    evaluate.set_defaults(run=_evaluate, check=_check_evaluate)

    live = commands.add_parser(
        "live", help="emotions of a camera or a network stream, live",
        description="Label the faces of a camera, a network stream or a video file as its "
        "frames arrive: faces tracked, each face's emotion pooled over the last --window "
        "seconds. Frames that arrive while the analysis is busy are dropped and counted. The "
        "end of the stream, --duration or Ctrl-C (exit status 130) ends it: every output is "
        "closed whole and a summary is printed (frames read, analysed and dropped, faces, "
        "median and 95th-percentile latency).")
    live.add_argument("source", metavar="SOURCE",
                      help="a camera number (0), a video file, or a stream URL that OpenCV's "
                      "FFmpeg reads (rtsp://..., http://... MJPEG)")
    live.add_argument("--jsonl", metavar="FILE",
                      help="write one JSON line per analysed frame, as it happens ('-': "
                      "standard output): t, frame, latency_ms, dropped, faces")
    live.add_argument("--out", metavar="VIDEO", help="write the annotated video (.mp4, .avi...)")
    live.add_argument("--show", action="store_true",
                      help="show the annotated frames in a window (needs OpenCV with a GUI; "
                      "q or Esc stops)")
    live.add_argument("--duration", type=_seconds, metavar="S", help="stop after S seconds")
    live.add_argument("--realtime", action="store_true",
                      help="play a video file at its own frame rate, as a camera would deliver "
                      "it (default: analyse every frame of a file)")
    live.add_argument("--window", type=_seconds, default=2.0, metavar="S",
                      help="seconds of each face's past pooled into its label (default 2)")
    live.add_argument("--tracks", choices=("main", "all"), default="all",
                      help="'all': every face (default); 'main': the largest face only")
    live.add_argument("--weights", metavar="FILE",
                      help="score faces with this face model instead of the shipped one")
    live.add_argument("--every", type=_positive, metavar="K",
                      help="run the face detector every K analysed frames and track faces "
                      "between (default 5)")
    live.add_argument("--min-face-size", type=_positive, metavar="PX",
                      help="smallest face looked for, in pixels (default 40)")
    live.add_argument("--pooling", choices=("mean", "expressive", "confidence", "topk", "peak"),
                      help="how a face's frame probabilities in the window make its label "
                      "(as for kemo predict; default expressive)")
    live.set_defaults(run=_live, check=_check_live)
    return parser


_VIDEOS_HELP = ("video files, or folders of them (their videos are taken in name order, "
                "sub-folders included)")
_LIST_FORMS = ("a folder of CK+ clips (<Sxxx>_<yyy>_<emotion>.avi), a folder with one "
               "sub-folder per emotion, or a text file of 'path,label[,group]' lines")
_LIST_HELP = ("LIST_OR_DIR is a folder of CK+ clips named <Sxxx>_<yyy>_<emotion>.avi (subjects "
              "become groups), a folder with one sub-folder per emotion (Angry, Happy...), or a "
              "text file with one 'path,label[,group]' line per video (label: an emotion name "
              "or its FER id 0-6; relative paths start at the file's folder; # comments).")


def _add_model(parser):
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", metavar="MODEL_DIR",
                       help="a model folder saved by `kemo train videos` (default: the "
                       "pretrained recogniser)")
    which.add_argument("--weights", metavar="FILE",
                       help="score faces with this face model instead of the shipped one: the "
                       "fer2013_resnet10.weights.h5 (or best.keras) of a `kemo train fer2013` "
                       "run")


def _add_faces(parser):
    parser.add_argument("--every", type=_positive, metavar="K",
                        help="run the face detector every K frames and track faces between "
                        "(default 5; 1 detects on every frame)")
    parser.add_argument("--frames", type=_positive, metavar="N",
                        help="use N frames sampled uniformly from each video (default: all)")
    parser.add_argument("--cache", metavar="DIR",
                        help="cache the faces found in DIR: a rerun skips face detection")
    parser.add_argument("--min-face-size", type=_positive, metavar="PX",
                        help="smallest face looked for, in pixels (default: the face stage's "
                        "min_face_size); lower it to find small faces, at some cost in speed")


def _add_scheduler(parser):
    parser.add_argument("--scheduler", type=_scheduler_address, metavar="ADDRESS",
                        help="process the videos on a Dask cluster (pip install "
                        "'kemo[dask]'): 'local:N' starts N worker processes here, "
                        "'tcp://HOST:PORT' joins a running scheduler (paths and --cache must "
                        "then name the same files on every machine)")


def _scheduler_address(text):
    from kemo.parallel import check_address

    try:
        return check_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_quiet(parser):
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (a number), got {text!r}") from None
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def _protocol(text):
    """``loso`` or ``kfold:K`` (K >= 2), checked without importing anything heavy."""
    name, _, count = text.partition(":")
    if (name, count) == ("loso", "") or (name == "kfold" and count.isdigit()
                                          and int(count) >= 2):
        return text
    raise argparse.ArgumentTypeError(f"expected 'loso' or 'kfold:K' with K >= 2, got {text!r}")


def _probability(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


# ----------------------------------------------------------------------------- entry point


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
        known = isinstance(exc, _BATCH_ERRORS)
        text = " ".join(str(exc).split()) or type(exc).__name__
        hint = "" if known else f" ({type(exc).__name__}; set KEMO_DEBUG=1 for the traceback)"
        print(f"kemo: error: {text}{hint}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------------------- helpers


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


def _remote(function, state, videos, setup=None):
    """``function(state, video)`` of ``videos`` (``{index: path}``) on the ``--scheduler``.

    Returns:
        kemo.parallel.VideoMap, or None when the command runs here.
    """
    from kemo import parallel

    client = parallel.active()
    return None if client is None else parallel.VideoMap(client, function, state, videos, setup)


def _progress(items, quiet, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(items, disable=quiet or None, file=sys.stderr, **kwargs)


def _bars(args):
    """Whether to draw progress bars: not with -q, and only on a terminal (never into a log)."""
    return not args.quiet and sys.stderr.isatty()


def _echo(text, file=None):
    """Print a result line above the progress bars (tqdm.write), not onto the end of one."""
    from tqdm.auto import tqdm

    tqdm.write(text, file=file or sys.stdout)
    (file or sys.stdout).flush()


def _recognizer(args, errors="raise"):
    """The recogniser of ``--model`` / ``--weights`` (or the pretrained one), face options set."""
    from kemo.recognizer import VideoEmotionRecognizer

    if getattr(args, "model", None):
        rec = VideoEmotionRecognizer.load(args.model)
    else:
        rec = VideoEmotionRecognizer(weights=getattr(args, "weights", None) or
                                     "fer2013_resnet10")
    rec.set_params(faces=_face_options(rec.face_preprocessor(), args), errors=errors)
    if getattr(args, "pooling", None):
        rec.set_params(pooling=args.pooling)
    return rec


def _face_options(prep, args):
    if args.every is not None:
        prep.set_params(detect_every=args.every)
    if args.frames is not None:
        prep.set_params(n_frames=args.frames)
    if args.cache is not None:
        prep.set_params(cache_dir=args.cache)
    if args.min_face_size is not None:
        prep.set_params(min_face_size=args.min_face_size)
    return prep.set_params(verbose=_bars(args))


def _output(target, text):
    """Write ``text`` to a file, or to standard output for ``-``."""
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomic(target, text)


def _csv_text(header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _report_failures(failures, total, noun="videos"):
    """List the failures on standard error; return the exit status."""
    if not failures:
        return EXIT_OK
    if total == 1:
        print(f"kemo: error: {failures[0]}", file=sys.stderr)
        return EXIT_FAILED
    print(f"kemo: {len(failures)} of {total} {noun} failed:", file=sys.stderr)
    for line in failures:
        print(f"  {line}", file=sys.stderr)
    return EXIT_FAILED


def _check_file(path):
    """Raise a one-line error for a path that is not a readable file."""
    from kemo.errors import VideoReadError

    if not Path(path).is_file():
        raise VideoReadError(f"{path}: no such file")


def _video_paths(items):
    """The videos named on the command line: files as given, folders replaced by their videos.

    Raises:
        InputError: a folder holds no video.
    """
    paths = []
    for item in items:
        folder = Path(item)
        if not folder.is_dir():
            paths.append(item)
            continue
        found = sorted(f for f in folder.rglob("*") if f.suffix.lower() in VIDEO_SUFFIXES
                       and not f.name.startswith(".") and f.is_file())
        if not found:
            raise InputError(f"{item} is a folder with no video in it (looked for "
                             f"{' '.join(VIDEO_SUFFIXES)}, sub-folders included); give video "
                             f"files or a folder of them")
        paths += [str(f) for f in found]
    return paths


def _check_videos(args):
    """Expand folders in ``args.videos``; fail at once when no video exists at all."""
    args.videos = _video_paths(args.videos)
    missing = [v for v in args.videos if not Path(v).is_file()]
    if len(missing) == len(args.videos):  # nothing to do: say so before TensorFlow loads
        if len(missing) == 1:
            _check_file(missing[0])
        raise InputError(f"none of the {len(missing)} videos exists: {', '.join(missing)}")
    # several videos, some missing: the batch goes on and lists them at the end


def _check_weights(args):
    """Check ``--model`` / ``--weights`` before the work starts."""
    if getattr(args, "model", None):
        from kemo.recognizer import check_model_folder

        check_model_folder(args.model)
    if getattr(args, "weights", None):
        from kemo.weights import model_file

        if model_file(args.weights) is None:  # a registered name: fine as it is
            from kemo.weights import get

            get(args.weights)


def _unique_stems(videos):
    """A file-name stem per video, ``<stem>_2``, ``<stem>_3``... for repeated names."""
    seen, stems = {}, []
    for video in videos:
        stem = Path(video).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


# ----------------------------------------------------------------------------- predict


class _Journal:
    """Results of finished videos, appended one JSON line each, so a killed run resumes.

    The journal sits beside the first output file (``<file>.partial``); each line holds a
    video's absolute path, sha256, the settings and its result. A rerun reuses the lines whose
    path, content and settings match. The journal is removed once the outputs are written.
    """

    def __init__(self, path, settings):
        self.path = None if path is None else Path(f"{path}.partial")
        self.settings = settings
        self.done = {}
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    item = json.loads(line)
                    key = (item["path"], item["sha256"], item["settings"])
                    self.done[key] = item["result"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by the kill

    def get(self, path, sha):
        """The stored result of a video, or None."""
        return self.done.get((path, sha, self.settings))

    def add(self, path, sha, result):
        """Append a finished video's result, flushed to disk."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"path": path, "sha256": sha, "settings": self.settings,
                           "result": result})
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(line + "\n")
            file.flush()
            os.fsync(file.fileno())

    def close(self):
        """Remove the journal (all outputs are written)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _settings_key(rec, args):
    """A digest of everything that changes a video's result."""
    from kemo.recognizer import _params_to_json

    model = "pretrained"
    if args.model:
        model = _sha256(Path(args.model) / "kemo_model.json")
    elif args.weights and Path(args.weights).is_file():
        model = _sha256(args.weights)
    settings = {"model": model, "params": _params_to_json(rec), "tracks": args.tracks,
                "timeline": bool(args.timeline)}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _annotate_targets(args):
    """The annotated video of each of ``args.videos``, checked before any work.

    One video and a video file name: that file. Otherwise a folder, created if needed,
    holding ``<video name>.annotated.mp4`` for each video (``_2``, ``_3``... for videos of
    one name).

    Raises:
        InputError: one file name for several videos, a file type that cannot be written, a
            name that is neither a video file nor a folder, or a folder that cannot be made.
    """
    from kemo.video import WRITE_SUFFIXES

    if not args.annotate:
        return None
    out = Path(args.annotate)
    suffix = out.suffix.lower()
    if suffix in VIDEO_SUFFIXES and not out.is_dir():
        if len(args.videos) > 1:
            raise InputError(f"--annotate {out} names one file, but {len(args.videos)} videos "
                             f"are given: name a folder to hold their annotated videos")
        if suffix not in WRITE_SUFFIXES:
            raise InputError(f"--annotate {out}: kemo cannot write {suffix} videos; name a "
                             f"{' '.join(WRITE_SUFFIXES)} file")
        _make_folder(out.parent, out)
        return [out]
    if suffix and not out.is_dir():
        raise InputError(f"--annotate {out}: neither a video file name "
                         f"({' '.join(WRITE_SUFFIXES)}) nor an existing folder")
    _make_folder(out, out)
    return [out / f"{stem}.annotated.mp4" for stem in _unique_stems(args.videos)]


def _make_folder(folder, given):
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--annotate {given}: cannot make the folder {folder} "
                         f"({exc.strerror or exc})") from None


def _check_predict(args):
    outputs = [f for f in (args.json, args.csv, args.timeline, args.segments) if f]
    if len(outputs) != len(set(outputs)) or outputs.count("-") > 1:
        raise InputError("--json, --csv, --timeline and --segments must name different files")
    _check_videos(args)
    _check_weights(args)
    args.annotated = _annotate_targets(args)


def _analysis_job(rec, args):
    """What the workers of ``--scheduler`` run for ``kemo predict``: (function, state)."""
    from kemo import parallel

    return parallel.analyze, (parallel.portable_recognizer(rec), args.tracks)


def _summary(path, result):
    probs = result["probabilities"]
    cells = "  ".join(f"{name} {p:.3f}" for name, p in probs.items())
    lines = [f"{path}: {result['label']} ({probs[result['label']]:.3f})  {cells}"]
    for track in result["tracks"][1:]:
        p = track["probabilities"]
        lines.append(f"  face {track['track']}: {track['label']} ({p[track['label']]:.3f})  "
                     + "  ".join(f"{name} {v:.3f}" for name, v in p.items()))
    return "\n".join(lines)


def _predict(args):
    outputs = [f for f in (args.json, args.csv, args.timeline, args.segments) if f]
    files = [f for f in outputs if f != "-"]
    echo = sys.stderr if "-" in outputs else sys.stdout
    rec = _recognizer(args)
    journal = _Journal(files[0] if files else None, _settings_key(rec, args))
    results, failures = [], []
    resumed = 0
    remote = _remote(*_analysis_job(rec, args), {
        i: v for i, v in enumerate(args.videos)
        if Path(v).is_file() and journal.get(str(Path(v).resolve()), _sha256(v)) is None})
    # one bar over the videos, and the face stage's own bar over each video's frames
    videos = _progress(args.videos, not _bars(args) or len(args.videos) == 1, desc="videos",
                       unit="video")
    for i, video in enumerate(videos):
        target = args.annotated[i] if args.annotated else None
        try:
            _check_file(video)
            path, sha = str(Path(video).resolve()), _sha256(video)
            result = journal.get(path, sha)
            if result is not None and target and (result.get("annotated") != str(target)
                                                  or not target.is_file()):
                result = None  # the annotated video is wanted elsewhere now: draw it again
            if result is not None:
                resumed += 1
            else:
                if remote is not None and i in remote:  # computed on the cluster
                    analysis = remote.result(i)
                else:
                    analysis = rec.analyze(video, tracks=args.tracks)
                result = {**analysis.to_dict(timeline=bool(args.timeline)), "path": video,
                          "sha256": sha}
                drawn = True
                if target:
                    try:
                        result["annotated"] = str(analysis.annotate(target))
                    except _BATCH_ERRORS as exc:  # keep the prediction; report the video
                        failures.append(f"{video}: annotated video not written "
                                        f"({one_line(exc, target)})")
                        drawn = False
                if drawn:  # a rerun draws a failed annotation again
                    journal.add(path, sha, result)
        except _BATCH_ERRORS as exc:
            failures.append(one_line(exc, video))
            continue
        results.append(result)
        _echo(_summary(video, result), file=echo)
    if resumed:
        print(f"kemo: {resumed} of {len(args.videos)} videos taken from the unfinished run "
              f"in {journal.path}", file=sys.stderr)
    names = list(rec.class_names_)
    if args.json:
        document = {"model": args.model or args.weights or "pretrained", "class_names": names,
                    # a trained model aggregates features: no pooling made its labels
                    "pooling": None if rec.is_trained else rec.pooling,
                    "videos": results, "failures": failures}
        _output(args.json, json.dumps(document, indent=1) + "\n")
    if args.csv:
        rows = []
        for r in results:
            for i, track in enumerate(r["tracks"]):
                rows.append([r["path"], track["track"], int(i == 0), track["label"],
                             *(f"{track['probabilities'][n]:.6f}" for n in names),
                             r["frames_read"], r["faces_found"], r["sha256"]])
        header = ["path", "track", "main", "label", *names, "frames_read", "faces_found",
                  "sha256"]
        _output(args.csv, _csv_text(header, rows))
    if args.timeline:
        timeline_names = list(rec.timeline_class_names)
        rows = [[r["path"], track["track"], step["frame"], step["time"], *step["box"],
                 *(f"{step['probabilities'][n]:.6f}" for n in timeline_names)]
                for r in results for track in r["tracks"] for step in track["timeline"]]
        header = ["path", "track", "frame", "time", "x", "y", "w", "h", *timeline_names]
        _output(args.timeline, _csv_text(header, rows))
    if args.segments:
        keys = ["start", "end", "label", "probability", "first_frame", "last_frame"]
        rows = [[r["path"], track["track"], *(segment[k] for k in keys)]
                for r in results for track in r["tracks"] for segment in track["segments"]]
        _output(args.segments, _csv_text(["path", "track", *keys], rows))
    journal.close()
    return _report_failures(failures, len(args.videos))


# ----------------------------------------------------------------------------- faces


def _faces(args):
    import cv2

    from kemo import parallel
    from kemo.errors import NoFaceError
    from kemo.faces import FacePreprocessor

    # every face is tracked, also for 'main', so that the main face is the one seen longest
    # and keeps the track id kemo predict gives it
    prep = FacePreprocessor(detect_every=5, out_size=args.size, grayscale=args.gray,
                            select="all")
    prep = _face_options(prep, args).fit()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, failures = [], []
    stems = _unique_stems(args.videos)  # two videos of one name in different folders
    remote = _remote(parallel.transform_faces, parallel.portable_faces(prep),
                     {i: v for i, v in enumerate(args.videos) if Path(v).is_file()},
                     setup=parallel.fit)
    videos = _progress(args.videos, not _bars(args) or len(args.videos) == 1, desc="videos",
                       unit="video")
    for i, (video, stem) in enumerate(zip(videos, stems, strict=True)):
        try:
            _check_file(video)
            found = remote.result(i) if remote is not None else prep.transform([video])[0]
            if not found.has_faces:
                raise NoFaceError(f"no face found in any of the {found.frames_read} frames")
            if args.tracks == "main":
                found = found.subset(found.track_rows()[0])
        except _BATCH_ERRORS as exc:
            failures.append(one_line(exc, video))
            continue
        for face, frame, track, box, conf in zip(found.faces, found.frame_indices,
                                                 found.track_ids, found.boxes,
                                                 found.confidences, strict=True):
            name = f"{stem}_f{int(frame):06d}_t{int(track)}.png"
            image = face if face.ndim == 2 else cv2.cvtColor(face, cv2.COLOR_RGB2BGR)
            ok, data = cv2.imencode(".png", image)
            if not ok:
                raise OSError(f"{out / name}: PNG encoding failed")
            write_atomic(out / name, data.tobytes())
            rows.append([name, video, int(frame), int(track),
                         *(f"{v:.1f}" for v in box), f"{conf:.4f}"])
        _echo(f"{video}: {len(found)} faces from {found.frames_read} frames")
    header = ["file", "video", "frame", "track", "x", "y", "w", "h", "confidence"]
    write_atomic(out / "faces.csv", _csv_text(header, rows))
    print(f"{len(rows)} faces written to {out} (index: {out / 'faces.csv'})")
    return _report_failures(failures, len(args.videos))


# ----------------------------------------------------------------------------- features


def _check_features(args):
    if not args.out.endswith(".npz"):
        raise InputError(f"--out must name an .npz file, got {args.out!r}")
    _check_videos(args)
    _check_weights(args)


def _features(args):
    import numpy as np

    from kemo import parallel
    from kemo.aggregation import Aggregator

    rec = _recognizer(args)
    names = list(rec.features or (rec.weights,))
    done, failures = [], []
    remote = _remote(parallel.frame_features, parallel.portable_recognizer(rec),
                     {i: v for i, v in enumerate(args.videos) if Path(v).is_file()})
    videos = _progress(args.videos, not _bars(args) or len(args.videos) == 1, desc="videos",
                       unit="video")
    for i, video in enumerate(videos):
        try:
            _check_file(video)
            done.append((video, remote.result(i) if remote is not None
                         else rec.frame_features([video])[0]))
        except _BATCH_ERRORS as exc:
            failures.append(one_line(exc, video))
    if done:
        per_net = [[feats[n] for _, feats in done] for n in names]
        arrays = {"paths": np.array([v for v, _ in done]),
                  "networks": np.array([str(n) for n in names]),
                  "aggregated": Aggregator().fit_transform(per_net).astype(np.float32),
                  "offsets": np.concatenate([[0], np.cumsum([len(f[names[0]])
                                                             for _, f in done])])}
        for name, videos in zip(names, per_net, strict=True):
            # a face model file (--weights) is named by its file name, without its folders
            arrays[f"frame_{Path(name).name}"] = np.concatenate(videos).astype(np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomic(args.out, buffer.getvalue())
        print(f"{len(done)} videos: aggregated features {arrays['aggregated'].shape} written "
              f"to {args.out}")
    return _report_failures(failures, len(args.videos))


# ----------------------------------------------------------------------------- train


def _train_fer2013(args):
    import dataclasses

    from kemo.training import RECIPES, export_weights, train_fer2013
    from kemo.weights import RUN_EXPORT

    out = Path(args.out)
    recipe = dataclasses.replace(RECIPES[args.recipe], erasing=args.erasing, ema=args.ema)
    model, state = train_fer2013(args.data, recipe=recipe, epochs=args.epochs,
                                 checkpoint_dir=out, seed=args.seed, precision=args.precision,
                                 limit=args.limit, init=args.init, aligned=args.aligned,
                                 distribute=args.distribute,
                                 verbose=0 if args.quiet else 2)
    weights = out / RUN_EXPORT
    digest = export_weights(model, weights)
    scores = state["publictest"]
    print(f"PublicTest accuracy {100 * scores['accuracy']:.2f} % "
          f"({100 * scores['accuracy_flip']:.2f} % with flip averaging) after "
          f"{state['epoch']} epochs; weights {weights} (sha256 {digest})")
    print(f"use it: kemo predict VIDEO --weights {weights}  (Python: "
          f"VideoEmotionRecognizer(weights={str(weights)!r}))")
    return EXIT_OK


def _read_labelled(source, command):
    """``(paths, labels, groups or None)`` of a CK+ folder, emotion folders or a list file.

    Args:
        source: the LIST_OR_DIR argument.
        command: the command reading it, for the messages (``"evaluate"``...).

    Raises:
        InputError: ``source`` is none of the three forms (the message lists them), or a line
            of the list is malformed.
    """
    import numpy as np

    from kemo.datasets import CLASS_NAMES, load_ckplus
    from kemo.errors import DataNotFoundError

    lookup = {name.lower(): i for i, name in enumerate(CLASS_NAMES)}
    source = Path(source)
    wanted = f"{command} needs labelled videos: {_LIST_FORMS}"
    if source.is_dir():
        folders = [d for d in sorted(source.iterdir())
                   if d.is_dir() and d.name.lower() in lookup]
        if folders:
            pairs = [(str(f), lookup[d.name.lower()]) for d in folders
                     for f in sorted(d.iterdir()) if f.suffix.lower() in VIDEO_SUFFIXES]
            if not pairs:
                raise InputError(f"{source}: the emotion folders hold no videos")
            return [p for p, _ in pairs], np.array([y for _, y in pairs]), None
        try:
            ck = load_ckplus(source)
        except DataNotFoundError:
            raise InputError(f"{source} holds no emotion folder and no CK+ clip; "
                             f"{wanted}") from None
        return list(ck.paths), ck.labels, ck.subjects
    if not source.is_file():
        raise InputError(f"{source}: no such file or folder; {wanted}")
    if source.suffix.lower() in VIDEO_SUFFIXES:
        raise InputError(f"{source} is a video, not a list: {wanted}")
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{source} is not a text file of 'path,label' lines: {wanted}") from None
    paths, labels, groups = [], [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        cells = [c.strip() for c in next(csv.reader([line]))]
        if number == 1 and cells[0].lower() == "path":
            continue  # a header
        if len(cells) not in (2, 3):
            raise InputError(f"{source} line {number}: expected 'path,label[,group]', got "
                             f"{line!r}")
        label = cells[1]
        if label.isdigit() and int(label) < len(CLASS_NAMES):
            label = int(label)
        elif label.lower() in lookup:
            label = lookup[label.lower()]
        else:
            raise InputError(f"{source} line {number}: unknown label {cells[1]!r}; use one of "
                             f"{list(CLASS_NAMES)} or 0-{len(CLASS_NAMES) - 1}")
        path = Path(cells[0])
        paths.append(str(path if path.is_absolute() else source.parent / path))
        labels.append(label)
        groups.append(cells[2] if len(cells) == 3 else None)
    if not paths:
        raise InputError(f"{source}: the list holds no video")
    has_groups = all(g is not None for g in groups)
    return paths, np.array(labels), np.array(groups) if has_groups else None


def _check_train_videos(args):
    """Labels, fusion weights and output folder, checked before any video is read."""
    import numpy as np

    from kemo.datasets import CLASS_NAMES
    from kemo.recognizer import calibration_shortfall, check_save_folder

    args.labelled = _read_labelled(args.videos, "train videos")
    labels = args.labelled[1]
    if len(np.unique(labels)) < 2:
        raise InputError(f"{args.videos}: all videos are {CLASS_NAMES[int(labels[0])]}; "
                         f"training needs videos of at least 2 emotions")
    short = calibration_shortfall(labels, args.calibration, args.cv)
    if short is not None:
        name, count = short
        raise InputError(f"class {name} has {count} video(s) in {args.videos}, but "
                         f"--calibration {args.calibration} fits --cv {args.cv} folds: give "
                         f"each class at least {args.cv} videos, lower --cv (2 at least), or "
                         f"use --calibration softmax (or auto)")
    fusion = args.fusion_weights
    if fusion is not None and fusion != "search":
        try:
            args.fusion_weights = [float(w) for w in fusion.split(",")]
        except ValueError:
            raise InputError(f"--fusion-weights must be 'search' or numbers separated by "
                             f"commas, got {fusion!r}") from None
    if args.finetune_epochs is not None and not args.finetune:
        raise InputError("--finetune-epochs sets the fine-tuning: add --finetune")
    check_save_folder(args.out)


def _train_videos(args):
    from kemo.recognizer import VideoEmotionRecognizer

    paths, labels, groups = args.labelled
    lstm = None
    if args.lstm:
        lstm = True if args.lstm_epochs is None else {"epochs": args.lstm_epochs}
    finetune = None
    if args.finetune:
        finetune = True if args.finetune_epochs is None else {"epochs": args.finetune_epochs}
    rec = VideoEmotionRecognizer(C=args.C, calibration=args.calibration, cv=args.cv,
                                 c3d=True if args.c3d else None,
                                 lstm=lstm, finetune=finetune,
                                 fusion_weights=args.fusion_weights, random_state=args.seed,
                                 errors="skip", verbose=_bars(args))
    rec.set_params(faces=_face_options(rec.face_preprocessor(), args))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # failures are listed below
        rec.fit(paths, labels, groups=groups)
    rec.save(args.out)
    branches = ", ".join(f"{name} {weight:.2f}" for name, _, weight in rec.members_)
    tuned = "" if finetune is None else f"; face model fine-tuned on {rec.finetune_faces_} faces"
    print(f"trained on {len(paths) - len(rec.failures_)} videos of {len(rec.classes_)} classes "
          f"({', '.join(rec.class_names_)}); branches: {branches}{tuned}; saved to {args.out}")
    failures = [one_line(f.error, f.source) for f in rec.failures_]
    return _report_failures(failures, len(paths))


# ----------------------------------------------------------------------------- evaluate


def _check_evaluate(args):
    args.labelled = _read_labelled(args.videos, "evaluate")
    if args.model_config and not args.protocol:
        raise InputError("--model-config sets the recogniser that --protocol cross-validates; "
                         "add --protocol loso or --protocol kfold:K")
    if args.protocol:
        if args.model:
            raise InputError("--protocol fits a new recogniser in every fold: give its "
                             "settings with --model-config, not a trained --model")
        if args.scheduler:
            raise InputError("--protocol runs on this machine; drop --scheduler")
        if args.labelled[2] is None:
            raise InputError(f"--protocol keeps subjects apart, but {args.videos} names none: "
                             f"use a CK+ folder or a list of 'path,label,group' lines")
        args.config = _model_config(args.model_config)
    _check_weights(args)


def _model_config(text):
    """The ``--model-config`` parameters: a dict from JSON text or a JSON file."""
    if not text:
        return {}
    source = text
    if Path(text).is_file():
        try:
            source = Path(text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--model-config {text}: cannot read it ({exc})") from None
    elif not text.lstrip().startswith(("{", "[")):
        raise InputError(f"--model-config {text}: no such file; give a JSON file or JSON text "
                         f"such as '{{\"calibration\": \"softmax\"}}'")
    try:
        config = json.loads(source)
    except ValueError as exc:
        raise InputError(f"--model-config {text}: not JSON ({exc})") from None
    if not isinstance(config, dict):
        raise InputError(f"--model-config {text}: expected a JSON object of recogniser "
                         f"parameters, got {type(config).__name__}")
    return config


def _evaluate_protocol(args):
    """``kemo evaluate --protocol``: subject-independent predictions of a configuration."""
    import numpy as np

    from kemo.evaluation import evaluate
    from kemo.protocols import cross_validate
    from kemo.recognizer import VideoEmotionRecognizer, _params_from_json

    paths, labels, groups = args.labelled
    config = dict(args.config)
    if args.weights:
        config["weights"] = args.weights
    try:
        rec = VideoEmotionRecognizer(**_params_from_json(config))
    except TypeError as exc:
        known = sorted(VideoEmotionRecognizer().get_params(deep=False))
        raise InputError(f"--model-config: {exc}; the parameters are {known}") from None
    rec._check_params()  # a bad value is reported before faces are searched
    rec.set_params(faces=_face_options(rec.face_preprocessor(), args), verbose=_bars(args))
    result = cross_validate(rec, paths, labels, groups, args.protocol)
    ok = result.fold >= 0
    predicted = result.classes[np.argmax(result.proba[ok], axis=1)]
    report = evaluate(labels[ok], predicted, labels=list(result.classes),
                      class_names=list(result.class_names))
    print(f"protocol {args.protocol}: {len(result.folds)} folds by subject; each video is "
          f"predicted by a recogniser fitted without its subject")
    print(report)
    failures = [one_line(f.error, f.source) for f in result.failures]
    if args.out:
        out = Path(args.out)
        folds = [{"fold": k, "test_subjects": sorted({str(g) for g in groups[test]}),
                  "train_subjects": sorted({str(g) for g in groups[train]}),
                  "test_videos": len(test), "train_videos": len(train)}
                 for k, (train, test) in enumerate(result.folds)]
        document = {"protocol": args.protocol, "model_config": config,
                    "videos": int(ok.sum()), "folds": folds, **report.to_dict(),
                    "failures": failures}
        write_atomic(out / "report.json", json.dumps(document, indent=1) + "\n")
        names = list(result.class_names)
        rows = [[p, str(g), k, names[list(result.classes).index(t)], names[int(np.argmax(pr))],
                 *(f"{v:.6f}" for v in pr)]
                for p, g, k, t, pr in zip(paths, groups, result.fold, labels, result.proba,
                                          strict=True) if k >= 0]
        write_atomic(out / "predictions.csv",
                     _csv_text(["path", "group", "fold", "true", "predicted", *names], rows))
        buffer = io.BytesIO()
        report.plot_confusion_matrix().savefig(buffer, format="png", dpi=120)
        write_atomic(out / "confusion.png", buffer.getvalue())
        print(f"report.json, predictions.csv and confusion.png written to {out}")
    return _report_failures(failures, len(paths))


def _evaluate(args):
    import warnings

    import numpy as np

    from kemo.evaluation import evaluate

    if args.protocol:
        return _evaluate_protocol(args)
    paths, labels, _ = args.labelled
    rec = _recognizer(args, errors="skip")
    rec.set_params(verbose=_bars(args))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # failures are listed below
        proba = rec.predict_proba(paths)
    ok = ~np.isnan(proba).any(axis=1)
    if not ok.any():
        raise InputError(f"no video of {args.videos} could be analysed: "
                         f"{rec.failures_[0].error}")
    classes = rec.classes_
    predicted = classes[np.argmax(proba[ok], axis=1)]
    report = evaluate(labels[ok], predicted, labels=list(classes),
                      class_names=list(rec.class_names_))
    print(report)
    if args.out:
        out = Path(args.out)
        document = {"model": args.model or args.weights or "pretrained",
                    "videos": int(ok.sum()),
                    **report.to_dict(),
                    "failures": [one_line(f.error, f.source) for f in rec.failures_]}
        write_atomic(out / "report.json", json.dumps(document, indent=1) + "\n")
        names = list(rec.class_names_)
        rows = [[p, names[list(classes).index(t)] if t in classes else str(t),
                 names[int(np.argmax(pr))], *(f"{v:.6f}" for v in pr)]
                for p, t, pr, good in zip(paths, labels, proba, ok, strict=True) if good]
        write_atomic(out / "predictions.csv",
                      _csv_text(["path", "true", "predicted", *names], rows))
        buffer = io.BytesIO()
        report.plot_confusion_matrix().savefig(buffer, format="png", dpi=120)
        write_atomic(out / "confusion.png", buffer.getvalue())
        print(f"report.json, predictions.csv and confusion.png written to {out}")
    failures = [one_line(f.error, f.source) for f in rec.failures_]
    return _report_failures(failures, len(paths))


# ----------------------------------------------------------------------------- live


def _check_live(args):
    from kemo.live import check

    check(args)


def _live(args):
    from kemo.live import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())

