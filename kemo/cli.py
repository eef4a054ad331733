"""The ``kemo`` command: emotions of videos from the shell.

Subcommands::

    kemo predict VIDEO... [--json FILE] [--csv FILE] [--timeline FILE] [--annotate OUT]
    kemo faces VIDEO... --out DIR
    kemo features VIDEO... --out FILE.npz
    kemo train fer2013 --data DIR [--out RUN_DIR]
    kemo train videos LIST_OR_DIR --out MODEL_DIR
    kemo evaluate LIST_OR_DIR [--model MODEL_DIR] [--out DIR]

Exit status: 0 when everything succeeded; 1 when an input was bad or some videos of a batch
failed (the others are still processed and written, and the failures are listed at the end);
2 for a bad command line. Errors are printed on one line, without a traceback (set
``KEMO_DEBUG=1`` to see it). Result files are written atomically (a temporary file, then a
rename). Heavy libraries (TensorFlow, Keras, OpenCV, MTCNN) are imported only when a command
runs, so ``kemo --help`` answers at once.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

from kemo._files import write_atomic
from kemo.errors import InputError, KemoError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
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
        "--csv / --timeline files resumes: the videos already done (same file content, same "
        "settings) are not computed again.")
    predict.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    _add_model(predict)
    _add_faces(predict)
    predict.add_argument("--tracks", choices=("main", "all"), default="main",
                         help="'main': the main face only (default); 'all': every face found")
    predict.add_argument("--json", metavar="FILE", help="write the results as JSON")
    predict.add_argument("--csv", metavar="FILE", help="write one CSV row per video (and face)")
    predict.add_argument("--timeline", metavar="FILE",
                         help="write per-frame probabilities and boxes as CSV")
    predict.add_argument("--annotate", metavar="OUT",
                         help="write each video with boxes and emotions drawn: a file (one "
                         "video, e.g. out.mp4) or a folder (<video>.annotated.mp4 inside)")
    _add_quiet(predict)
    predict.set_defaults(run=_predict)

    faces = commands.add_parser(
        "faces", help="save the aligned faces of videos as PNG files",
        description="Find, align and save the faces of each video as PNG files, with an index "
        "(faces.csv: file, video, frame, track, box, confidence).")
    faces.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    faces.add_argument("--out", required=True, metavar="DIR", help="output folder")
    faces.add_argument("--size", type=_positive, default=128, metavar="S",
                       help="side of the saved faces in pixels (default 128)")
    faces.add_argument("--gray", action="store_true", help="save grayscale faces")
    faces.add_argument("--tracks", choices=("main", "all"), default="main",
                       help="'main': one face per frame (the largest); 'all': every face")
    _add_faces(faces)
    _add_quiet(faces)
    faces.set_defaults(run=_faces)

    features = commands.add_parser(
        "features", help="per-frame and aggregated features of videos, to an .npz file",
        description="Compute the frame features of each video (the networks of the model) and "
        "their aggregation (signed square root, L2, mean and variance), and save them in an "
        ".npz file: paths, aggregated (n_videos, D), offsets (n_videos + 1), and "
        "frame_<network> (all frames, in video order; video i is rows offsets[i]:offsets[i+1]).")
    features.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    features.add_argument("--out", required=True, metavar="FILE.npz", help="output file")
    _add_model(features)
    _add_faces(features)
    _add_quiet(features)
    features.set_defaults(run=_features)

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
        "fer2013_resnet10.weights.h5 (float16).")
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
    fer.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32",
                     help="Keras dtype policy (default float32)")
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
    videos.add_argument("--calibration", choices=("sigmoid", "isotonic", "softmax"),
                        default="sigmoid", help="SVM probabilities (default sigmoid)")
    videos.add_argument("--cv", type=_positive, default=3,
                        help="calibration folds (default 3; each class needs that many videos)")
    videos.add_argument("--c3d", action="store_true", help="add the C3D branch")
    videos.add_argument("--lstm", action="store_true", help="add the LSTM branch")
    videos.add_argument("--lstm-epochs", type=_positive, metavar="N",
                        help="LSTM training epochs (default 30)")
    videos.add_argument("--fusion-weights", metavar="W",
                        help="'search', or comma-separated weights of the branches (default: "
                        "the paper's 0.5,0.25,0.25)")
    videos.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_quiet(videos)
    videos.set_defaults(run=_train_videos)

    evaluate = commands.add_parser(
        "evaluate", help="accuracy, per-class table and confusion matrix on labelled videos",
        description="Predict labelled videos with a model (default: the pretrained one), print "
        "the accuracy and the per-class table, and with --out write report.json, "
        "predictions.csv and confusion.png. " + _LIST_HELP)
    evaluate.add_argument("videos", metavar="LIST_OR_DIR", help="labelled videos (see above)")
    _add_model(evaluate)
    evaluate.add_argument("--out", metavar="DIR", help="folder for the report files")
    _add_faces(evaluate)
    _add_quiet(evaluate)
    evaluate.set_defaults(run=_evaluate)
    return parser


_LIST_HELP = ("LIST_OR_DIR is a folder of CK+ clips named <Sxxx>_<yyy>_<emotion>.avi (subjects "
              "become groups), a folder with one sub-folder per emotion (Angry, Happy...), or a "
              "text file with one 'path,label[,group]' line per video (label: an emotion name "
              "or its FER id 0-6; relative paths start at the file's folder; # comments).")


def _add_model(parser):
    parser.add_argument("--model", metavar="MODEL_DIR",
                        help="a model folder saved by `kemo train videos` (default: the "
                        "pretrained recogniser)")


def _add_faces(parser):
    parser.add_argument("--every", type=_positive, metavar="K",
                        help="run the face detector every K frames and track faces between "
                        "(default 5; 1 detects on every frame)")
    parser.add_argument("--frames", type=_positive, metavar="N",
                        help="use N frames sampled uniformly from each video (default: all)")
    parser.add_argument("--cache", metavar="DIR",
                        help="cache the faces found in DIR: a rerun skips face detection")


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


# ----------------------------------------------------------------------------- entry point


def main(argv=None):
    """Run the ``kemo`` command; return its exit status.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        int: 0 on success, 1 on bad input or failed videos, 2 on a bad command line.
    """
    args = build_parser().parse_args(argv)
    # Bad videos are reported by kemo in one line; OpenCV's and FFmpeg's own notices about
    # them (before cv2 is imported) would only repeat it.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        if not os.environ.get("KEMO_DEBUG"):
            _import_tensorflow_quietly()
        return args.run(args)
    except KeyboardInterrupt:
        print("kemo: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        if os.environ.get("KEMO_DEBUG"):
            raise
        known = isinstance(exc, _BATCH_ERRORS)
        text = " ".join(str(exc).split()) or type(exc).__name__
        hint = "" if known else f" ({type(exc).__name__}; set KEMO_DEBUG=1 for the traceback)"
        print(f"kemo: error: {text}{hint}", file=sys.stderr)
        return EXIT_FAILED


# ----------------------------------------------------------------------------- helpers


def _import_tensorflow_quietly():
    """Import TensorFlow with its C++ start-up log lines kept off the terminal.

    TensorFlow writes oneDNN / CUDA notices to file descriptor 2 before its logging is set up,
    whatever ``TF_CPP_MIN_LOG_LEVEL`` says; they would bury kemo's one-line messages. They are
    captured while TensorFlow starts and shown only if starting fails.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _progress(items, quiet, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(items, disable=quiet or None, file=sys.stderr, **kwargs)


def _recognizer(args, errors="raise"):
    """The recogniser of ``--model`` (or the pretrained one) with the face options applied."""
    from kemo.recognizer import VideoEmotionRecognizer

    if getattr(args, "model", None):
        rec = VideoEmotionRecognizer.load(args.model)
    else:
        rec = VideoEmotionRecognizer()
    rec.set_params(faces=_face_options(rec.face_preprocessor(), args), errors=errors)
    return rec


def _face_options(prep, args):
    if args.every is not None:
        prep.set_params(detect_every=args.every)
    if args.frames is not None:
        prep.set_params(n_frames=args.frames)
    if args.cache is not None:
        prep.set_params(cache_dir=args.cache)
    return prep


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


def _failure_line(path, error):
    """``path: message`` on one line (the path once, even when the message names it)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if str(path) in text else f"{path}: {text}"


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

    model = _sha256(Path(args.model) / "kemo_model.json") if args.model else "pretrained"
    settings = {"model": model, "params": _params_to_json(rec), "tracks": args.tracks,
                "timeline": bool(args.timeline)}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _annotate_target(args, video, count):
    out = Path(args.annotate)
    if count == 1 and out.suffix.lower() in VIDEO_SUFFIXES:
        return out
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{Path(video).stem}.annotated.mp4"


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
    outputs = [f for f in (args.json, args.csv, args.timeline) if f]
    files = [f for f in outputs if f != "-"]
    if len(outputs) != len(set(outputs)) or outputs.count("-") > 1:
        raise InputError("--json, --csv and --timeline must name different files")
    echo = sys.stderr if "-" in outputs else sys.stdout
    rec = _recognizer(args)
    journal = _Journal(files[0] if files else None, _settings_key(rec, args))
    results, failures = [], []
    resumed = 0
    for video in _progress(args.videos, args.quiet, desc="videos", unit="video"):
        try:
            _check_file(video)
            path, sha = str(Path(video).resolve()), _sha256(video)
            result = journal.get(path, sha)
            if result is not None:
                resumed += 1
            else:
                analysis = rec.analyze(video, tracks=args.tracks)
                result = {**analysis.to_dict(timeline=bool(args.timeline)), "path": video,
                          "sha256": sha}
                if args.annotate:
                    target = _annotate_target(args, video, len(args.videos))
                    result["annotated"] = str(analysis.annotate(target))
                journal.add(path, sha, result)
        except _BATCH_ERRORS as exc:
            failures.append(_failure_line(video, exc))
            continue
        results.append(result)
        print(_summary(video, result), file=echo, flush=True)
    if resumed:
        print(f"kemo: {resumed} of {len(args.videos)} videos taken from the unfinished run "
              f"in {journal.path}", file=sys.stderr)
    names = list(rec.class_names_)
    if args.json:
        document = {"model": args.model or "pretrained", "class_names": names,
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
        rows = [[r["path"], track["track"], step["frame"], *step["box"],
                 *(f"{step['probabilities'][n]:.6f}" for n in timeline_names)]
                for r in results for track in r["tracks"] for step in track["timeline"]]
        header = ["path", "track", "frame", "x", "y", "w", "h", *timeline_names]
        _output(args.timeline, _csv_text(header, rows))
    journal.close()
    return _report_failures(failures, len(args.videos))


# ----------------------------------------------------------------------------- faces


def _faces(args):
    import cv2

    from kemo.errors import NoFaceError
    from kemo.faces import FacePreprocessor

    prep = FacePreprocessor(detect_every=5, out_size=args.size, grayscale=args.gray,
                            select="all" if args.tracks == "all" else "largest")
    prep = _face_options(prep, args).fit()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, failures, stems = [], [], {}
    for video in _progress(args.videos, args.quiet, desc="videos", unit="video"):
        try:
            _check_file(video)
            found = prep.transform([video])[0]
            if not found.has_faces:
                raise NoFaceError(f"no face found in any of the {found.frames_read} frames")
        except _BATCH_ERRORS as exc:
            failures.append(_failure_line(video, exc))
            continue
        stem = Path(video).stem
        stems[stem] = stems.get(stem, 0) + 1
        if stems[stem] > 1:  # two videos of one name in different folders
            stem = f"{stem}_{stems[stem]}"
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
        print(f"{video}: {len(found)} faces from {found.frames_read} frames", flush=True)
    header = ["file", "video", "frame", "track", "x", "y", "w", "h", "confidence"]
    write_atomic(out / "faces.csv", _csv_text(header, rows))
    print(f"{len(rows)} faces written to {out} (index: {out / 'faces.csv'})")
    return _report_failures(failures, len(args.videos))


# ----------------------------------------------------------------------------- features


def _features(args):
    import numpy as np

    from kemo.aggregation import Aggregator

    if not args.out.endswith(".npz"):
        raise InputError(f"--out must name an .npz file, got {args.out!r}")
    rec = _recognizer(args)
    names = list(rec.features or (rec.weights,))
    done, failures = [], []
    for video in _progress(args.videos, args.quiet, desc="videos", unit="video"):
        try:
            _check_file(video)
            done.append((video, rec.frame_features([video])[0]))
        except _BATCH_ERRORS as exc:
            failures.append(_failure_line(video, exc))
    if done:
        per_net = [[feats[n] for _, feats in done] for n in names]
        arrays = {"paths": np.array([v for v, _ in done]), "networks": np.array(names),
                  "aggregated": Aggregator().fit_transform(per_net).astype(np.float32),
                  "offsets": np.concatenate([[0], np.cumsum([len(f[names[0]])
                                                             for _, f in done])])}
        for name, videos in zip(names, per_net, strict=True):
            arrays[f"frame_{name}"] = np.concatenate(videos).astype(np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomic(args.out, buffer.getvalue())
        print(f"{len(done)} videos: aggregated features {arrays['aggregated'].shape} written "
              f"to {args.out}")
    return _report_failures(failures, len(args.videos))


# ----------------------------------------------------------------------------- train


def _train_fer2013(args):
    from kemo.training import export_weights, train_fer2013

    out = Path(args.out)
    model, state = train_fer2013(args.data, recipe=args.recipe, epochs=args.epochs,
                                 checkpoint_dir=out, seed=args.seed, precision=args.precision,
                                 limit=args.limit, init=args.init,
                                 verbose=0 if args.quiet else 2)
    weights = out / "fer2013_resnet10.weights.h5"
    digest = export_weights(model, weights)
    scores = state["publictest"]
    print(f"PublicTest accuracy {100 * scores['accuracy']:.2f} % "
          f"({100 * scores['accuracy_flip']:.2f} % with flip averaging) after "
          f"{state['epoch']} epochs; weights {weights} (sha256 {digest})")
    return EXIT_OK


def _read_labelled(source):
    """``(paths, labels, groups or None)`` of a CK+ folder, emotion folders or a list file."""
    import numpy as np

    from kemo.datasets import CLASS_NAMES, load_ckplus

    lookup = {name.lower(): i for i, name in enumerate(CLASS_NAMES)}
    source = Path(source)
    if source.is_dir():
        folders = [d for d in sorted(source.iterdir())
                   if d.is_dir() and d.name.lower() in lookup]
        if folders:
            pairs = [(str(f), lookup[d.name.lower()]) for d in folders
                     for f in sorted(d.iterdir()) if f.suffix.lower() in VIDEO_SUFFIXES]
            if not pairs:
                raise InputError(f"{source}: the emotion folders hold no videos")
            return [p for p, _ in pairs], np.array([y for _, y in pairs]), None
        ck = load_ckplus(source)
        return list(ck.paths), ck.labels, ck.subjects
    if not source.is_file():
        raise InputError(f"{source}: no such file or folder (expected a video list or a folder)")
    paths, labels, groups = [], [], []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
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


def _train_videos(args):
    from kemo.recognizer import VideoEmotionRecognizer

    paths, labels, groups = _read_labelled(args.videos)
    lstm = None
    if args.lstm:
        lstm = True if args.lstm_epochs is None else {"epochs": args.lstm_epochs}
    fusion = args.fusion_weights
    if fusion is not None and fusion != "search":
        try:
            fusion = [float(w) for w in fusion.split(",")]
        except ValueError:
            raise InputError(f"--fusion-weights must be 'search' or numbers separated by "
                             f"commas, got {args.fusion_weights!r}") from None
    rec = VideoEmotionRecognizer(C=args.C, calibration=args.calibration, cv=args.cv,
                                 c3d=True if args.c3d else None,
                                 lstm=lstm,
                                 fusion_weights=fusion, random_state=args.seed,
                                 errors="skip", verbose=not args.quiet)
    rec.set_params(faces=_face_options(rec.face_preprocessor(), args))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # failures are listed below
        rec.fit(paths, labels, groups=groups)
    rec.save(args.out)
    branches = ", ".join(f"{name} {weight:.2f}" for name, _, weight in rec.members_)
    print(f"trained on {len(paths) - len(rec.failures_)} videos of {len(rec.classes_)} classes "
          f"({', '.join(rec.class_names_)}); branches: {branches}; saved to {args.out}")
    failures = [_failure_line(f.source, f.error) for f in rec.failures_]
    return _report_failures(failures, len(paths))


# ----------------------------------------------------------------------------- evaluate


def _evaluate(args):
    import warnings

    import numpy as np

    from kemo.evaluation import evaluate

    paths, labels, _ = _read_labelled(args.videos)
    rec = _recognizer(args, errors="skip")
    rec.set_params(verbose=not args.quiet)
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
        document = {"model": args.model or "pretrained", "videos": int(ok.sum()),
                    **report.to_dict(),
                    "failures": [_failure_line(f.source, f.error) for f in rec.failures_]}
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
    failures = [_failure_line(f.source, f.error) for f in rec.failures_]
    return _report_failures(failures, len(paths))


if __name__ == "__main__":
    sys.exit(main())
