"""The ``kemo`` command line: its parser, subcommands and argument types."""

from __future__ import annotations

import argparse

from kemo.cli.common import EXIT_USAGE, check_videos
from kemo.cli.evaluate import check_evaluate, run_evaluate
from kemo.cli.extract import check_features, run_faces, run_features
from kemo.cli.live import check_live, run_live
from kemo.cli.predict import check_predict, run_predict
from kemo.cli.train import check_train_videos, run_train_fer2013, run_train_videos


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors take one line."""

    def error(self, message):
        """Print ``kemo ...: error: message`` on one line and exit with status 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    predict.add_argument("--class-balance", type=_class_balance, metavar="POWER",
                         help=CLASS_BALANCE_HELP)
    predict.add_argument("--annotate", metavar="OUT",
                         help="write each video with boxes and emotions drawn: a file (one "
                         "video, e.g. out.mp4 or out.avi) or a folder, created if needed "
                         "(<video>.annotated.mp4 inside; videos of one name get _2, _3...)")
    _add_scheduler(predict)
    _add_quiet(predict)
    predict.set_defaults(run=run_predict, check=check_predict)

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
    faces.set_defaults(run=run_faces, check=check_videos)

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
    features.set_defaults(run=run_features, check=check_features)

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
    fer.add_argument("--mixup", type=_nonnegative, default=0.0, metavar="ALPHA",
                     help="mixup: blend each training image and its target with another's, "
                     "in a Beta(ALPHA, ALPHA) proportion, e.g. 0.2 (default 0: off)")
    fer.add_argument("--cutmix", type=_nonnegative, default=0.0, metavar="ALPHA",
                     help="cutmix: paste a rectangle of another training image, targets mixed "
                     "by area, Beta(ALPHA, ALPHA), e.g. 1.0; with --mixup each batch takes one "
                     "(default 0: off)")
    fer.add_argument("--shift", type=_probability, metavar="F",
                     help="random shifts of up to this fraction of the face (default: the "
                     "recipe's, 0.1 for kemo and finetune; 0: no random crops)")
    fer.add_argument("--zoom", type=_probability, metavar="F",
                     help="random zooms of up to this fraction (default: the recipe's, 0.1 for "
                     "kemo and finetune; 0: no random crops)")
    fer.add_argument("--width", type=_width, default=1.0, metavar="W",
                     help="multiplier of the ResNet-10's widths 64-512 for a new model "
                     "(default 1, the shipped width)")
    fer.add_argument("--stem", choices=("small", "full"), default="small",
                     help="stem of a new model: small (3x3/2, the shipped one; default) or full "
                     "(3x3/1: the first stage at 48 px, 4x the computation)")
    fer.add_argument("--warp", choices=("chained", "single"), default="chained",
                     help="how rotation, shift and zoom are applied: chained (Keras's three "
                     "layers, three resamplings; default, as the shipped model was trained) or "
                     "single (one affine transform, one resampling: sharper faces)")
    fer.add_argument("--ferplus", type=_probability, default=0.0, metavar="W",
                     help="weight of the FER+ votes (fer2013new.csv beside the data) in the "
                     "training targets, e.g. 0.5 (default 0: FER2013 labels only)")
    fer.add_argument("--teacher", nargs="+", metavar="MODEL",
                     help="distil these face models (runs' best.keras, exported .weights.h5): "
                     "their mean probabilities on the Training images join the targets")
    fer.add_argument("--teacher-weight", type=_probability, default=0.5, metavar="W",
                     help="weight of the teachers' probabilities in the targets (default 0.5)")
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
    fer.set_defaults(run=run_train_fer2013)

    videos = what.add_parser(
        "videos", help="train a video recogniser on labelled videos",
        description="Fit a VideoEmotionRecognizer (aggregated frame features + linear SVM, fused "
        "with the scores branch, and optionally the C3D and LSTM branches) on labelled videos "
        "and save it to "
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
    videos.add_argument("--no-scores", dest="scores", action="store_false",
                        help="leave out kemo's scores branch (a logistic regression on each "
                        "video's pooled face-model probabilities, fused with the SVM): the "
                        "paper's pipeline")
    videos.add_argument("--fusion-weights", metavar="W",
                        help="'search', or comma-separated weights of the branches in the "
                        "order SVM, C3D, LSTM, scores (default: the paper's 0.5,0.25,0.25, "
                        "and 0.25 for scores)")
    videos.add_argument("--finetune", action="store_true",
                        help="first fine-tune the face model on the training videos' faces, "
                        "each labelled with its video's label (the paper's second step; "
                        "labels must be FER's 7 emotions; default: off)")
    videos.add_argument("--finetune-epochs", type=_positive, metavar="N",
                        help="fine-tuning epochs, with --finetune (default 3)")
    videos.add_argument("--finetune-faces", choices=("all", "expressive"),
                        help="faces fine-tuning trains on, with --finetune: all (default), or "
                        "the half of each video's faces the face model finds least neutral")
    videos.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_scheduler(videos)
    _add_quiet(videos)
    videos.set_defaults(run=run_train_videos, check=check_train_videos)

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
    evaluate.set_defaults(run=run_evaluate, check=check_evaluate)

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
    live.add_argument("--small-face-size", type=_small_face_size, metavar="PX|off",
                      help=SMALL_FACE_HELP)
    live.add_argument("--pooling", choices=("mean", "expressive", "confidence", "topk", "peak"),
                      help="how a face's frame probabilities in the window make its label "
                      "(as for kemo predict; default expressive)")
    live.add_argument("--class-balance", type=_class_balance, metavar="POWER",
                      help=CLASS_BALANCE_HELP)
    live.set_defaults(run=run_live, check=check_live)
    return parser


_VIDEOS_HELP = ("video files, or folders of them (their videos are taken in name order, "
                "sub-folders included)")
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
    parser.add_argument("--small-face-size", type=_small_face_size, metavar="PX|off",
                        help=SMALL_FACE_HELP)


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


CLASS_BALANCE_HELP = ("divide the face model's probabilities by each class's share of FER2013 "
                      "Training to this power, e.g. 0.5, so that rare classes (Disgust) are "
                      "said more often; 0 leaves them as trained (default: 'auto', 0.5 for "
                      "a model of FER2013's 7 classes; a saved --model's own value)")

SMALL_FACE_HELP = ("where the first pass finds faces at a distance (under twice --min-face-size), "
                   "look again for faces down to PX pixels (default 20); 'off' never looks "
                   "again")


def _small_face_size(text):
    """``PX`` (a positive integer) or ``off`` (returned as 0: no second look)."""
    return 0 if text.strip().lower() == "off" else _positive(text)


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
    return _number(text, 0.0, 1.0, "a number in [0, 1)")


def _width(text):
    value = _number(text, 0.0, 4.0, "a width multiplier in (0, 4)")
    if value == 0.0:
        raise argparse.ArgumentTypeError(f"expected a width multiplier in (0, 4), got {text!r}")
    return value


def _nonnegative(text):
    return _number(text, 0.0, float("inf"), "a number >= 0")


def _class_balance(text):
    return text if text == "auto" else _number(text, 0.0, float("inf"), "'auto' or a number >= 0")


def _number(text, low, high, what):
    """``text`` as a float in ``[low, high)``, else an argparse error naming ``what``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not low <= value < high:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value
