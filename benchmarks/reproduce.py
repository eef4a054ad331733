"""Reproduce the paper's Tables I, II and III on the data here, beside the paper's figures.

Xu, Ma, Dong, Bai, "Video-based Emotion Recognition using Aggregated Features and
Spatio-temporal Information", EmotiW 2017. What runs, and where it differs from the paper:

* Table I (frame models on FER2013): PublicTest accuracy (flip averaging) of kemo's shipped
  ResNet-10, evaluated live on every run (the shipped file may be replaced); of a VGG-style
  network trained here from scratch within a stated budget (the paper fine-tunes VGG-Face, a
  145 M-parameter VGG16 at 224x224: not trainable on a 2-core CPU); of VGG-Face, when its
  weights file is present (then a linear probe on its fc6, since fine-tuning is out of reach);
  and of any recorded training run found in ``benchmarks/results/*.json``.
* Table II (video branches and fusion): AFEW is not public. The stand-ins are the 40 real CK+
  clips (10 subjects, faces found by MTCNN and aligned by kemo) and CK+48 (309 sequences x their
  last 3 frames, 106 subjects), both in subject-independent folds (GroupKFold by subject). Every
  video gets one held-out prediction from each branch: frame-CNN features -> aggregation ->
  linear SVM for each network and for both; C3D trained from scratch at reduced size (the
  Sports-1M weights cannot be downloaded here) -> fc6 -> linear SVM; the bidirectional residual
  LSTM over frame-feature sequences; and the fusion of the three with the paper's weights and
  with weights searched by ``kemo.FusionClassifier`` on the other folds' held-out probabilities.
* Table III: per-class accuracy of every method, and confusion-matrix figures (PNG in ``--out``).

Seeds: everything trained here (the VGG-style network, C3D, the LSTM, the fusion weight search)
is trained once per seed (``--seeds N``, default 3; seeds ``--seed`` .. ``--seed + N - 1``), and
each of those rows reports the mean, the sample standard deviation and the range over the seeds.
The shipped model's rows and the majority class depend on no seed. A seed fixes everything: the
global generators are seeded at the start of each seed (``keras.utils.set_random_seed``), each
stage reseeds itself from the seed (and the fold), TensorFlow runs with op determinism and a fixed
thread count (``--threads``), and the cache keys hold the seed and those runtime settings; the
same command and seed on the same machine and versions give the same tables (checked by
``tests/test_results.py``).

Results file: a full run writes every figure with its protocol to ``docs/results.json``
(section ``reproduce``; the file's ``benchmarks`` section holds the other scripts' figures) at
the end of each seed, and regenerates the tables of ``docs/results.md`` between
``<!-- results:NAME -->`` markers; ``--render-docs`` only regenerates them from the file.

Expensive intermediate results (faces, features, trained networks, C3D and LSTM predictions) are
cached in ``--cache``, so a rerun only redoes what changed (an interrupted VGG-style training
resumes from its last epoch). ``--quick`` runs everything on tiny subsets with tiny budgets (CI;
one seed unless ``--seeds``); its figures are not results and go to ``--out`` only.

Usage:
    nice -n 10 python benchmarks/reproduce.py --data ../shared/data --seeds 3
    python benchmarks/reproduce.py --data ../shared/data --quick --out /tmp/o --cache /tmp/c
    python benchmarks/reproduce.py --render-docs
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # MTCNN runs on TensorFlow only
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.model_selection import GridSearchCV, GroupKFold  # noqa: E402
from sklearn.utils.validation import check_is_fitted  # noqa: E402

from kemo.weights import DEFAULT_WEIGHTS  # noqa: E402  (numpy only: --render-docs stays light)

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"

#: The paper's figures (percent). Table I: FER2013 test; Table II: AFEW 7.0 validation.
PAPER_TABLE1 = {"vggface": 71.01, "resnet10": 70.27}
PAPER_TABLE2 = {"majority": None, "resnet": 37.14, "vgg": 38.86, "aggregation": 40.15,
                "c3d": 41.53, "lstm": 39.84, "fusion_paper": 48.01, "fusion_search": None}
PAPER_BASELINE = "LBP-TOP baseline 38.81"
#: The paper's fusion weights: aggregated-feature SVM, C3D, LSTM.
PAPER_WEIGHTS = {"aggregation": 0.5, "c3d": 0.25, "lstm": 0.25}
VIDEO_CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes and budgets of one run (full or quick)."""

    quick: bool = False
    fer_eval_limit: int | None = None      # PublicTest images scored (None: all 3,589)
    vgg_widths: tuple = (16, 32, 64, 128)  # VGG-style blocks, 2 convolutions each
    vgg_epochs: int = 4
    vgg_train_limit: int | None = None     # FER2013 Training images (None: all 28,709)
    probe_train: int = 2000                # VGG-Face linear probe: Training images...
    probe_val: int = 1000                  # ... and PublicTest images
    clips_per_class: int | None = None     # CK+ clips kept per class (None: all 40)
    clip_frames: int | None = None         # frames sampled per clip (None: every frame)
    ck48_every: int = 1                    # keep every k-th CK+48 sequence
    clip_folds: int = 5
    ck48_folds: int = 10
    svm_Cs: tuple = (0.1, 1.0, 10.0)
    c3d_side: int = 24
    c3d_epochs: int = 16
    c3d_batch: int = 4
    lstm_units: int = 64
    lstm_steps: int = 100                  # Adam steps (batch 32) per fold
    fusion_iter: int = 1000
    seed: int = 0


FULL = Settings()
QUICK = Settings(quick=True, fer_eval_limit=300, vgg_widths=(8, 16, 32, 64), vgg_epochs=1,
                 vgg_train_limit=512, probe_train=64, probe_val=64, clips_per_class=2,
                 clip_frames=6, ck48_every=5, clip_folds=2, ck48_folds=2, svm_Cs=(1.0,),
                 c3d_side=16, c3d_epochs=1, lstm_units=16, lstm_steps=4, fusion_iter=50)


# --------------------------------------------------------------------------- small helpers


class Log:
    """Progress lines on stderr with the time since the start; tables go to stdout."""

    def __init__(self):
        self.start = time.time()

    def __call__(self, message):
        print(f"[{time.time() - self.start:7.1f} s] {message}", file=sys.stderr, flush=True)


def key_of(*parts):
    """A short stable hash of JSON-able parts, for cache file names."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_arrays(path, compute):
    """Load a dict of arrays from ``path`` (npz), or compute and save it atomically."""
    path = Path(path)
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    arrays = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(handle, "wb") as file:
        np.savez(file, **arrays)
    os.replace(tmp, path)
    return arrays


def cached_videos(path, compute):
    """Per-video arrays ``(n_i, D)``, cached as one stacked array and the lengths."""
    def stacked():
        videos = compute()
        return {"rows": np.concatenate(videos), "lengths": np.array([len(v) for v in videos])}

    data = cached_arrays(path, stacked)
    return np.split(data["rows"], np.cumsum(data["lengths"])[:-1])


def bf16_cpu():
    """Whether this CPU computes bfloat16 natively (then mixed precision trains faster)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def scale01(batch):
    """Pixels 0..255 -> 0..1 (the VGG-style network's preprocessing)."""
    return batch / 255.0


def pct(value):
    return "-" if value is None else f"{100 * value:.2f}"


def md_table(header, rows):
    """A Markdown table (reads fine in a terminal too)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- models built here


def vgg_style(widths=(16, 32, 64, 128), fc=512, input_shape=(48, 48, 1), classes=7, dropout=0.5):
    """A VGG-style network for 48x48 faces, named like kemo's VGGFace.

    Blocks of two 3x3 convolutions (``conv{b}_1``, ``conv{b}_2``) and a 2x2 max pool
    (``pool{b}``), then ``fc6`` (the feature tap, before its ReLU, as VGGFace's), dropout and
    ``predictions``. Unlike VGG16, each convolution is followed by batch normalisation, so that
    the network trains from scratch in a few epochs.
    """
    import keras
    from keras import layers

    inputs = keras.Input(input_shape, name="faces")
    x = inputs
    for block, width in enumerate(widths, start=1):
        for i in (1, 2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False,
                              name=f"conv{block}_{i}")(x)
            x = layers.BatchNormalization(name=f"conv{block}_{i}_bn")(x)
            x = layers.ReLU(name=f"conv{block}_{i}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"pool{block}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(fc, name="fc6")(x)
    x = layers.ReLU(name="fc6_relu")(x)
    x = layers.Dropout(dropout, name="fc6_dropout")(x)
    x = layers.Dense(classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, x, name="vgg_style")


def he_init(model, skip=(), seed=0):
    """Re-draw the kernels of ``model`` from He-normal (ReLU networks without normalisation).

    With the builders' Glorot initialisation, C3D (eight plain ReLU convolutions) sat at chance
    for about 15 epochs on the 32 training clips; He initialisation keeps the signal's scale.
    """
    import keras

    init = keras.initializers.HeNormal(seed=seed)
    for layer in model.layers:
        if getattr(layer, "kernel", None) is not None and layer.name not in skip:
            layer.kernel.assign(init(layer.kernel.shape))


class OutOfFold(ClassifierMixin, BaseEstimator):
    """A prefit fusion member whose probabilities were computed elsewhere (held-out folds).

    ``predict_proba(X)`` returns ``X``: its view holds the member's probabilities, one column
    per class of ``classes``.
    """

    def __init__(self, classes):
        self.classes = classes

    def fit(self, X=None, y=None):
        self.classes_ = np.asarray(self.classes)
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        return np.asarray(X, dtype=float)

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


# --------------------------------------------------------------------------- Table I


def vggface_file():
    """``(path or None, where to put it)`` for the VGG-Face weights, without downloading."""
    from kemo import weights as registry

    info = registry.get("vggface")
    folders = registry.search_dirs(info)
    for folder in folders:
        if (folder / info.filename).is_file():
            return folder / info.filename, None
    where = (f"{info.filename} not found; put it in {', '.join(map(str, folders))} "
             f"(or set {registry.ENV_DIR}); download: {info.url}")
    return None, where


def linear_probe(extractor, train, val, Cs=(0.1, 1.0)):
    """PublicTest accuracy of a linear SVM on a network's frame features (no fine-tuning).

    Args:
        extractor: a fitted :class:`kemo.FrameFeatureExtractor`.
        train: ``(images, labels)`` to fit the SVM on.
        val: ``(images, labels)`` to score.
        Cs: SVM regularisation values tried by 3-fold cross-validation on ``train``.

    Returns:
        ``(accuracy, EvaluationReport)``.
    """
    from kemo.classifiers import LinearSVMClassifier
    from kemo.evaluation import evaluate

    def features(images):
        return np.concatenate(extractor.transform([images]))

    svm = LinearSVMClassifier(C=Cs[0], calibration="softmax")
    if len(Cs) > 1:
        svm = GridSearchCV(svm, {"C": list(Cs)}, cv=3)
    svm.fit(features(train[0]), train[1])
    report = evaluate(val[1], svm.predict(features(val[0])), labels=range(7))
    return report.accuracy, report


def read_recorded_runs(folder=RESULTS_DIR):
    """Recorded training runs (``benchmarks/results/*.json``): ``[(file, model, accuracy)]``.

    Accepted fields: a PublicTest accuracy as ``publictest_accuracy`` / ``accuracy`` (top level
    or under ``publictest``, ``accuracy_flip`` preferred), or a ``kemo.training`` run state
    (``best.val_accuracy``); the model name from ``model``, ``name`` or ``architecture``.
    """
    runs = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        sub = data.get("publictest") if isinstance(data.get("publictest"), dict) else {}
        accuracy = next((v for v in (sub.get("accuracy_flip"), sub.get("accuracy"),
                                     data.get("publictest_accuracy"), data.get("accuracy"),
                                     (data.get("best") or {}).get("val_accuracy")
                                     if isinstance(data.get("best"), dict) else None)
                         if isinstance(v, (int, float))), None)
        if accuracy is None:
            continue
        model = data.get("model") or data.get("name") or data.get("architecture") or path.stem
        runs.append((path.name, str(model), float(accuracy), data))
    return runs


def table1(data_root, cfg, cache, out, log, shipped=None):
    """FER2013 PublicTest accuracy of every frame model.

    Args:
        shipped: the ``(results, report)`` of the shipped ResNet-10 from an earlier seed: its
            score depends on no seed, so it is computed once per run.

    Returns:
        ``(table text, per-class text, results dict, the VGG-style Keras model, shipped)``.
    """
    import keras

    from kemo import weights as registry
    from kemo.classifier import FaceEmotionClassifier
    from kemo.datasets import load_fer2013
    from kemo.evaluation import compare, evaluate
    from kemo.training import as_model_input, evaluate_images, fit_classifier

    val = load_fer2013(data_root, subset="PublicTest")
    x_val, y_val = val.images[:cfg.fer_eval_limit], val.labels[:cfg.fer_eval_limit]
    rows, results, reports = [], {}, {}

    # ResNet-10: the shipped weights, scored now (the file may have been replaced).
    t = time.time()
    info = registry.get(registry.DEFAULT_WEIGHTS)
    if shipped is None:
        proba = FaceEmotionClassifier().predict_proba(x_val)
        shipped = ({"accuracy": evaluate(y_val, proba, labels=range(7)).accuracy,
                    "n": len(y_val), "sha256": info.sha256, "name": info.name,
                    "seconds": time.time() - t},
                   evaluate(y_val, proba, labels=range(7)))
    results["resnet10"], reports["ResNet-10 (shipped)"] = shipped
    acc = results["resnet10"]["accuracy"]
    rows.append([f"ResNet-10, kemo's shipped `{info.name}`", pct(acc), len(y_val),
                 PAPER_TABLE1["resnet10"],
                 f"48x48 gray, trained on FER2013 Training (see weights/{info.card}); weights "
                 f"sha256 {info.sha256[:12]}..., scored live with flip averaging"])
    log(f"Table I: ResNet-10 PublicTest {pct(acc)} % on {len(y_val)} images")

    # VGG-style network, trained from scratch here within a budget (cached in --cache).
    train = load_fer2013(data_root, subset="Training")
    x_train = as_model_input(train.images[:cfg.vgg_train_limit]) / 255.0
    y_train = train.labels[:cfg.vgg_train_limit]
    x_v = as_model_input(x_val) / 255.0
    precision = "mixed_bfloat16" if bf16_cpu() else "float32"
    run_key = key_of(cfg.vgg_widths, cfg.vgg_epochs, len(x_train), cfg.seed, runtime_key())
    run_dir = Path(cache) / f"vgg_style-{run_key}"
    t = time.time()
    model, state = fit_classifier(
        functools.partial(vgg_style, widths=cfg.vgg_widths), x_train, y_train, x_v, y_val,
        recipe="kemo", epochs=cfg.vgg_epochs, checkpoint_dir=run_dir, seed=cfg.seed,
        precision=precision, verbose=0)
    vgg = vgg_style(widths=cfg.vgg_widths)  # float32 copy for inference
    vgg.set_weights(model.get_weights())
    acc, proba = evaluate_images(vgg, x_v, y_val, flip=True)
    reports["VGG-style (here)"] = evaluate(y_val, proba, labels=range(7))
    train_minutes = state["wall_seconds"] / 60
    results["vgg_style"] = {"accuracy": acc, "n": len(y_val), "epochs": state["epoch"],
                            "train_images": len(x_train), "train_minutes": train_minutes,
                            "parameters": vgg.count_params(), "precision": precision,
                            "run_dir": str(run_dir)}
    rows.append(["VGG-style, trained here from scratch", pct(acc), len(y_val), "-",
                 f"{2 * len(cfg.vgg_widths)} conv (widths {'-'.join(map(str, cfg.vgg_widths))}, "
                 f"batch norm) + fc6 512, {vgg.count_params() / 1e6:.2f} M parameters; budget "
                 f"{state['epoch']} epochs on {len(x_train)} Training images, kemo recipe, "
                 f"{precision}, {train_minutes:.1f} min training (cached in --cache); last epoch, "
                 f"no model selection on PublicTest"])
    log(f"Table I: VGG-style PublicTest {pct(acc)} % ({time.time() - t:.0f} s incl. training)")

    # VGG-Face: only when its weights file is on this machine.
    path, where = vggface_file()
    if path is None:
        results["vggface"] = {"present": False, "where": where}
        rows.append(["VGG-Face (VGG16, the paper's best)", "absent", "-", PAPER_TABLE1["vggface"],
                     f"weights not on this machine: {where}. Fine-tuning it (145 M parameters "
                     f"at 224x224) is out of reach on 2 CPU cores anyway"])
    else:
        from kemo.features import FrameFeatureExtractor
        from kemo.models import VGGFace

        t = time.time()
        extractor = FrameFeatureExtractor(functools.partial(VGGFace, weights="vggface"),
                                          layer="fc6_relu", preprocess="vggface",
                                          batch_size=32).fit()  # Caffe's fc6: after the ReLU
        acc, report = linear_probe(
            extractor, (train.images[:cfg.probe_train], train.labels[:cfg.probe_train]),
            (val.images[:cfg.probe_val], val.labels[:cfg.probe_val]))
        reports["VGG-Face fc6 probe"] = report
        results["vggface"] = {"present": True, "path": str(path), "accuracy": acc,
                              "n": cfg.probe_val, "probe_train": cfg.probe_train}
        rows.append(["VGG-Face fc6 + linear SVM (probe)", pct(acc), cfg.probe_val,
                     PAPER_TABLE1["vggface"],
                     f"identity weights from {path.name}, not fine-tuned (out of reach on 2 CPU "
                     f"cores): linear SVM on fc6 of {cfg.probe_train} Training images, scored on "
                     f"the first {cfg.probe_val} PublicTest images"])
        log(f"Table I: VGG-Face probe {pct(acc)} % ({time.time() - t:.0f} s)")

    results["recorded"] = []
    for name, model_name, acc, _ in read_recorded_runs():
        results["recorded"].append({"file": name, "model": model_name, "accuracy": acc})
        rows.append([f"{model_name} (recorded run)", pct(acc), "-", "-",
                     f"read from benchmarks/results/{name}, not measured by this run"])

    for label, report in reports.items():
        slug = label.split(" ")[0].lower().replace("-", "")
        report.plot_confusion_matrix(title=f"FER2013 PublicTest, {label}: "
                                     f"{pct(report.accuracy)} %").savefig(
            out / f"fer2013_{slug}_confusion.png", dpi=100)
    keras.backend.clear_session()
    text = ("Table I. FER2013 PublicTest accuracy (%) of the frame models "
            "(paper: FER2013 test accuracy)\n\n"
            + md_table(["model", "kemo here", "images", "paper", "how it ran here"], rows))
    per_class = "\n".join(f"    {line}" for line in compare(reports).splitlines())
    results["per_class"] = {k: r.to_dict() for k, r in reports.items()}
    return text, per_class, results, vgg, shipped


# --------------------------------------------------------------------------- video data


@dataclasses.dataclass
class VideoSet:
    """One video stand-in: face stacks, labels, subjects, folds."""

    name: str
    title: str
    faces: list          # per video: uint8 (n_i, H, W[, 3])
    labels: np.ndarray
    subjects: np.ndarray
    folds: list          # [(train indices, test indices)]
    description: str


def load_clips(data_root, cfg, cache, log):
    """The 40 CK+ clips: MTCNN faces of every frame, aligned on the eyes (cached)."""
    from kemo.datasets import load_ckplus
    from kemo.faces import FacePreprocessor

    ck = load_ckplus(data_root, kind="videos")
    keep = np.arange(len(ck.labels))
    if cfg.clips_per_class is not None:  # a few clips of each class, from different subjects
        keep = []
        for label in np.unique(ck.labels):
            seen = set()
            for i in np.flatnonzero(ck.labels == label):
                if ck.subjects[i] not in seen and len(seen) < cfg.clips_per_class:
                    seen.add(ck.subjects[i])
                    keep.append(i)
        keep = np.array(sorted(keep))
    t = time.time()
    prep = FacePreprocessor(cache_dir=Path(cache) / "faces", n_frames=cfg.clip_frames)
    faces = [np.asarray(v) for v in prep.fit_transform([str(p) for p in ck.paths[keep]])]
    labels, subjects = ck.labels[keep], ck.subjects[keep]
    missing = sum(len(v) == 0 for v in faces)
    log(f"CK+ clips: {len(faces)} clips, {sum(map(len, faces))} faces "
        f"({time.time() - t:.0f} s; cached in {prep.cache_dir})")
    if missing:
        raise RuntimeError(f"{missing} CK+ clips gave no face; check the MTCNN settings")
    folds = list(GroupKFold(cfg.clip_folds).split(labels, labels, subjects))
    frames = "every frame" if cfg.clip_frames is None else f"{cfg.clip_frames} frames each"
    return VideoSet(
        "ckplus_clips", f"CK+ clips ({len(labels)}, {cfg.clip_folds} subject folds)",
        faces, labels, subjects, folds,
        f"{len(labels)} CK+ clips, {len(np.unique(subjects))} subjects, {frames} "
        f"({sum(map(len, faces))} faces): MTCNN + eye alignment, 128x128")


def load_ck48(data_root, cfg):
    """CK+48: each labelled sequence's last 3 frames (48x48 crops) as a 3-frame video."""
    from kemo.datasets import load_ckplus

    ck = load_ckplus(data_root, kind="ckplus48")
    starts = np.sort(np.unique(ck.seq_ids, return_index=True)[1])
    videos = np.split(ck.images, starts[1:])
    keep = np.arange(0, len(starts), cfg.ck48_every)
    faces = [videos[i] for i in keep]
    labels, subjects = ck.labels[starts][keep], ck.subjects[starts][keep]
    folds = list(GroupKFold(cfg.ck48_folds).split(labels, labels, subjects))
    return VideoSet(
        "ckplus48", f"CK+48 ({len(labels)}, {cfg.ck48_folds} subject folds)",
        faces, labels, subjects, folds,
        f"{len(labels)} CK+48 sequences x last 3 frames, {len(np.unique(subjects))} subjects "
        f"(48x48 crops from the data set, not MTCNN)")


# --------------------------------------------------------------------------- Table II branches


def frame_features(videos, extractor_spec, tag, cache):
    """Per-frame features of every video for one network (cached)."""
    from kemo.features import FrameFeatureExtractor

    name, build, layer, preprocess, model_key = extractor_spec
    digest = hashlib.sha256()
    for v in videos:
        digest.update(np.ascontiguousarray(v).data)
    path = Path(cache) / f"features-{tag}-{name}-{key_of(model_key, digest.hexdigest())}.npz"

    def compute():
        extractor = FrameFeatureExtractor(build, layer=layer, preprocess=preprocess,
                                          batch_size=128).fit()
        return extractor.transform(videos)

    return cached_videos(path, compute)


def full_proba(proba, fitted_classes, classes):
    """Probabilities over ``classes`` (zeros for classes the model never saw)."""
    out = np.zeros((len(proba), len(classes)))
    out[:, np.searchsorted(classes, fitted_classes)] = proba
    return out


def svm_proba(X, vs, train, test, cfg):
    """Held-out probabilities of a linear SVM (C by grouped inner CV) on one fold."""
    from kemo.classifiers import LinearSVMClassifier

    svm = LinearSVMClassifier(C=cfg.svm_Cs[0], calibration="softmax", random_state=0)
    groups = vs.subjects[train]
    inner = min(3, len(np.unique(groups)))
    if len(cfg.svm_Cs) > 1 and inner >= 2:
        svm = GridSearchCV(svm, {"C": list(cfg.svm_Cs)}, cv=GroupKFold(inner))
        svm.fit(X[train], vs.labels[train], groups=groups)
    else:
        svm.fit(X[train], vs.labels[train])
    return svm.predict_proba(X[test]), svm.classes_


def oof_svm(X, vs, classes, cfg):
    """Out-of-fold probabilities ``(n, K)`` of a linear SVM on ``X``."""
    proba = np.zeros((len(vs.labels), len(classes)))
    for train, test in vs.folds:
        p, fitted = svm_proba(X, vs, train, test, cfg)
        proba[test] = full_proba(p, fitted, classes)
    return proba


def oof_majority(vs, classes):
    """Out-of-fold 'probabilities' of the majority class of each training fold."""
    proba = np.zeros((len(vs.labels), len(classes)))
    for train, test in vs.folds:
        values, counts = np.unique(vs.labels[train], return_counts=True)
        proba[test, np.searchsorted(classes, values[np.argmax(counts)])] = 1.0
    return proba


class Restart:
    """One compiled Keras model, restarted from the same initial state on every fold.

    Building, compiling and tracing a network once per data set instead of once per fold saves
    about 10 s a fold here; the weights and the optimizer's state (step count, moments) go back
    to their initial values before each fold.
    """

    def __init__(self, model):
        model.optimizer.build(model.trainable_variables)
        self.model = model
        self.weights = model.get_weights()
        self.optimizer_state = [v.numpy() for v in model.optimizer.variables]

    def restart(self, seed):
        """Initial weights and optimizer state, and the seed of this fold's randomness."""
        import keras

        keras.utils.set_random_seed(seed)
        self.model.set_weights(self.weights)
        for variable, value in zip(self.model.optimizer.variables, self.optimizer_state,
                                   strict=True):
            variable.assign(value)
        return self.model


def oof_lstm(sequences, vs, classes, cfg, cache, log):
    """Out-of-fold probabilities of the bidirectional residual LSTM (cached)."""
    import keras

    from kemo.aggregation import Aggregator
    from kemo.models import BiResidualLSTM

    # Per frame, the paper's normalisation (signed square root, then L2): Aggregator on 2-D
    # input treats each row as a one-frame video, so its "mean" is the normalised frame.
    rows = Aggregator(stats=("mean",)).fit_transform(np.concatenate(sequences))
    frames = np.split(rows, np.cumsum([len(s) for s in sequences])[:-1])
    longest = max(len(f) for f in frames)
    X = np.zeros((len(frames), longest, rows.shape[1]), np.float32)  # zero frames are masked
    for i, f in enumerate(frames):
        X[i, :len(f)] = f
    y = np.searchsorted(classes, vs.labels)
    key = key_of("lstm", cfg.lstm_units, cfg.lstm_steps, cfg.seed, runtime_key(),
                 [t.tolist() for _, t in vs.folds], hashlib.sha256(X.tobytes()).hexdigest())

    def compute():
        keras.utils.set_random_seed(cfg.seed)
        model = BiResidualLSTM(input_shape=(None, X.shape[2]), units=cfg.lstm_units,
                               num_layers=2, classes=len(classes))
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss="sparse_categorical_crossentropy")
        runs = Restart(model)
        proba = np.zeros((len(vs.labels), len(classes)))
        for k, (train, test) in enumerate(vs.folds):
            model = runs.restart(cfg.seed + k)
            epochs = max(1, int(np.ceil(cfg.lstm_steps / np.ceil(len(train) / 32))))
            model.fit(X[train], y[train], batch_size=32, epochs=epochs, verbose=0)
            proba[test] = model.predict(X[test], batch_size=64, verbose=0)
        keras.backend.clear_session()
        return {"proba": proba}

    t = time.time()
    proba = cached_arrays(Path(cache) / f"lstm-{vs.name}-{key}.npz", compute)["proba"]
    log(f"{vs.name}: LSTM done ({time.time() - t:.0f} s)")
    return proba


def c3d_windows(faces, side, rng=None):
    """One 16-frame window per clip: uniform over the clip, or random sorted frames (training)."""
    from kemo.features import fit_faces

    out = []
    for clip in faces:
        n = len(clip)
        if rng is None:
            idx = np.linspace(0, n - 1, 16).round().astype(int)
        else:
            idx = np.sort(rng.choice(n, 16, replace=n < 16))
        window = fit_faces(clip[idx], (side, side, 3)) / 255.0
        if rng is not None and rng.random() < 0.5:
            window = window[:, :, ::-1]
        out.append(window)
    return np.stack(out).astype(np.float32)


def c3d_trainer(classes, cfg):
    """C3D at reduced size, He-initialised, compiled; built in mixed precision where it pays."""
    import keras

    from kemo.models import C3D

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if bf16_cpu() else "float32")
    try:  # layers keep the policy they were built with
        keras.utils.set_random_seed(cfg.seed)
        model = C3D(input_shape=(16, cfg.c3d_side, cfg.c3d_side, 3), classes=len(classes),
                    dropout=0.0)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    he_init(model, skip=("fc8",), seed=cfg.seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    return Restart(model), keras.Model(model.inputs, model.get_layer("fc6").output)


def oof_c3d(vs, classes, cfg, cache, log):
    """Out-of-fold probabilities of C3D trained from scratch on each fold -> fc6 -> SVM."""
    import keras

    proba = np.zeros((len(vs.labels), len(classes)))
    digest = hashlib.sha256()
    for v in vs.faces:
        digest.update(np.ascontiguousarray(v).data)
    y = np.searchsorted(classes, vs.labels)
    trainer = []  # built on the first fold that is not cached
    for k, (train, test) in enumerate(vs.folds):
        key = key_of("c3d", cfg.c3d_side, cfg.c3d_epochs, cfg.c3d_batch, cfg.seed,
                     runtime_key(), bf16_cpu(), len(classes), train.tolist(),
                     digest.hexdigest())

        def compute(train=train, k=k):
            t = time.time()
            if not trainer:
                trainer.extend(c3d_trainer(classes, cfg))
            runs, fc6 = trainer
            model = runs.restart(cfg.seed + k)
            rng = np.random.default_rng(cfg.seed + k)
            clips = [vs.faces[i] for i in train]
            for _ in range(cfg.c3d_epochs):  # a new random window of every clip each epoch
                model.fit(c3d_windows(clips, cfg.c3d_side, rng), y[train],
                          batch_size=cfg.c3d_batch, epochs=1, shuffle=True, verbose=0)
            feats = fc6.predict(c3d_windows(vs.faces, cfg.c3d_side), batch_size=8, verbose=0)
            log(f"{vs.name}: C3D fold {k + 1}/{len(vs.folds)} trained ({time.time() - t:.0f} s)")
            return {"fc6": np.asarray(feats, np.float32)}

        fc6 = cached_arrays(Path(cache) / f"c3d-{vs.name}-{key}.npz", compute)["fc6"]
        p, fitted = svm_proba(fc6, vs, train, test, cfg)
        proba[test] = full_proba(p, fitted, classes)
    keras.backend.clear_session()
    return proba


def fuse(probas, vs, classes, weights, cfg):
    """Held-out fused probabilities: fixed ``weights`` or ``"search"`` on the other folds.

    Every member is an :class:`OutOfFold` reading its held-out probabilities; with
    ``"search"``, :class:`kemo.FusionClassifier` picks the weights on the folds other than the
    one predicted, so no video's label chooses the weights used on it.
    """
    from kemo.fusion import FusionClassifier, Views

    X = Views(probas)
    members = [(name, OutOfFold(classes).fit(), name) for name in probas]
    out = np.zeros((len(vs.labels), len(classes)))
    chosen = []
    for train, test in vs.folds:
        fusion = FusionClassifier(members, weights=weights, prefit=True, n_iter=cfg.fusion_iter,
                                  random_state=cfg.seed)
        fusion.fit(X[train], vs.labels[train])
        out[test] = fusion.predict_proba(X[test])
        chosen.append(fusion.weights_)
    return out, np.mean(chosen, axis=0)


def run_video_set(vs, networks, cfg, cache, log):
    """Every Table II branch on one video set: held-out probabilities and notes per method."""
    from kemo.aggregation import Aggregator

    classes = np.unique(vs.labels)
    t = time.time()
    feats = {name: frame_features(vs.faces, spec, vs.name, cache)
             for name, spec in networks.items()}
    log(f"{vs.name}: frame features of {', '.join(networks)} ({time.time() - t:.0f} s)")
    # Aggregation learns nothing from labels: computed once for all folds, no leakage.
    agg = {name: Aggregator().fit_transform(f) for name, f in feats.items()}
    probas = {"majority": oof_majority(vs, classes)}
    for name in networks:
        probas[name] = oof_svm(agg[name], vs, classes, cfg)
    probas["aggregation"] = oof_svm(np.hstack(list(agg.values())), vs, classes, cfg)
    log(f"{vs.name}: SVM branches done ({time.time() - t:.0f} s)")
    lstm_net = "vggface" if "vggface" in networks else "vgg"
    probas["lstm"] = oof_lstm(feats[lstm_net], vs, classes, cfg, cache, log)
    has_c3d = min(len(v) for v in vs.faces) > 3  # CK+48 holds 3 frames per sequence
    if has_c3d:
        probas["c3d"] = oof_c3d(vs, classes, cfg, cache, log)
    members = [m for m in ("aggregation", "c3d", "lstm") if m in probas]
    weights = [PAPER_WEIGHTS[m] for m in members]
    probas["fusion_paper"], _ = fuse({m: probas[m] for m in members}, vs, classes, weights, cfg)
    probas["fusion_search"], searched = fuse({m: probas[m] for m in members}, vs, classes,
                                             "search", cfg)
    info = {"members": members, "paper_weights": weights, "has_c3d": has_c3d,
            "lstm_features": lstm_net,
            "searched_weights": dict(zip(members, np.round(searched, 3).tolist(), strict=True)),
            "dims": {name: int(a.shape[1]) for name, a in agg.items()}}
    log(f"{vs.name}: all branches done ({time.time() - t:.0f} s)")
    return classes, probas, info


def table2(results, networks, cfg):
    """Table II text from the held-out probabilities of every set."""
    from kemo.evaluation import evaluate

    labels = {
        "majority": "majority class of the training folds",
        "resnet": "ResNet-10 fc1 -> aggregation -> SVM",
        "vgg": "VGG-style fc6 -> aggregation -> SVM (VGG-Face stand-in)",
        "vggface": "VGG-Face fc6 -> aggregation -> SVM",
        "aggregation": "aggregation of all networks -> SVM",
        "c3d": "C3D (from scratch) fc6 -> SVM",
        "lstm": "bidirectional residual LSTM",
        "fusion_paper": "fusion, paper's weights",
        "fusion_search": "fusion, searched weights",
    }
    first = next(iter(results.values()))
    dims = first["info"]["dims"]
    c3d_note = (f"C3D's 8 conv, 5 pool, 2 fc trained from scratch on each training fold (the "
                f"Sports-1M weights cannot be downloaded here): He init, Adam 1e-4, batch "
                f"{cfg.c3d_batch}, {cfg.c3d_epochs} epochs, flips + random frame sampling, at "
                f"16x{cfg.c3d_side}x{cfg.c3d_side} (paper: pretrained, 16x112x112 windows of "
                f"128-frame clips); one 16-frame window spread over each clip; fc6 (4096) -> "
                f"SVM as in the paper. Not run on CK+48 (3 frames per sequence)")
    lstm_name = "VGG-Face" if "vggface" in networks else "VGG-style"
    notes = {
        "majority": f"for scale; paper: {PAPER_BASELINE}",
        "resnet": "kemo's shipped FER2013 ResNet-10 (48x48 gray), 512-d fc1 per frame, "
                  "mean + variance after signed sqrt + L2; paper: 150x150, also fine-tuned "
                  "on AFEW",
        "vgg": f"the VGG-style net of Table I (FER2013 only), fc6 {dims.get('vgg', 0) // 2}-d "
               f"per frame; paper: VGG-Face fc6 4096-d fine-tuned on FER2013 + AFEW",
        "vggface": "VGG-Face identity weights, fc6 4096-d, not fine-tuned",
        "aggregation": f"{' + '.join(str(d) for d in dims.values())} = {sum(dims.values())}-d "
                       f"(paper: 2 x (4096 + 512) = 9216-d)",
        "c3d": c3d_note,
        "lstm": f"2 bidirectional layers, {cfg.lstm_units} units each way, residual, over every "
                f"frame's {lstm_name} fc6 (signed sqrt + L2); Adam 1e-3, batch 32, "
                f"{cfg.lstm_steps} steps per fold (paper: 128 VGG-Face fc6 vectors)",
        "fusion_paper": "probabilities: 0.5 aggregation SVM + 0.25 C3D + 0.25 LSTM (CK+48: "
                        "0.5 / 0.25 without C3D, renormalised); SVM probabilities are a softmax "
                        "of its scores (flat)",
        "fusion_search": "kemo.FusionClassifier random simplex search on the other folds' held-out"
                         " probabilities (mean weights below)",
    }
    methods = ["majority", *networks, "aggregation", "c3d", "lstm", "fusion_paper",
               "fusion_search"]
    rows, reports = [], {name: {} for name in results}
    for method in methods:
        cells = []
        for set_name, res in results.items():
            if method not in res["probas"]:
                cells.append("n/a")
                continue
            rep = evaluate(res["labels"], res["probas"][method], labels=res["classes"],
                           class_names=[VIDEO_CLASSES[c] for c in res["classes"]])
            reports[set_name][method] = rep
            cells.append(pct(rep.accuracy))
        paper = PAPER_TABLE2.get(method)
        rows.append([labels[method], *cells, "-" if paper is None else paper, notes[method]])
    header = ["method", *(res["title"] for res in results.values()), "paper (AFEW val)",
              "how it ran here"]
    lines = ["Table II. Held-out accuracy (%) on the video stand-ins (each video predicted once, "
             "by models that never saw its subject)", ""]
    lines += [f"- {res['description']}" for res in results.values()]
    lines += ["", md_table(header, rows), ""]
    for res in results.values():
        info = res["info"]
        lines.append(f"Searched fusion weights, mean over the folds of {res['title']}: "
                     + ", ".join(f"{k} {v:.3f}" for k, v in info["searched_weights"].items()))
    return "\n".join(lines), reports, labels, notes


def table3(fer_per_class, reports, labels, out):
    """Table III text (per-class accuracy) and the confusion-matrix PNGs."""
    from kemo.evaluation import compare

    lines = ["Table III. Per-class accuracy (%)", "",
             "FER2013 PublicTest, frame models:", "", fer_per_class, ""]
    figures = []
    for set_name, reps in reports.items():
        named = {labels[m]: r for m, r in reps.items()}
        lines += [f"{set_name}, held-out videos:", ""]
        lines += [f"    {line}" for line in compare(named).splitlines()] + [""]
        for method, rep in reps.items():
            path = out / f"{set_name}_{method}_confusion.png"
            title = f"{set_name}: {labels[method]}\naccuracy {pct(rep.accuracy)} %"
            rep.plot_confusion_matrix(title=title).savefig(path, dpi=100)
            figures.append(path.name)
    lines.append(f"Confusion matrices (rows: true class, normalised per row), in {out}:")
    lines += [f"    {name}" for name in sorted(figures)]
    return "\n".join(lines), figures


# --------------------------------------------------------------------------- runtime


#: How the TensorFlow runtime was set up (threads, op determinism); part of the cache keys of
#: everything trained here, since both change the order of floating-point sums.
RUNTIME = {"threads": None, "op_determinism": False}


def runtime_key():
    """The runtime settings that change what training computes (for cache keys)."""
    return [RUNTIME["threads"], RUNTIME["op_determinism"]]


def set_up_runtime(threads, deterministic, log):
    """Fix TensorFlow's thread pools and ask for deterministic kernels, before TF runs anything.

    A kernel that splits a sum over threads adds in an order that can follow the thread
    count; ``enable_op_determinism`` also makes ``tf.data`` keep its order and raises on the
    few ops without a deterministic kernel. Where TensorFlow has already started (inside a
    test session), the thread pools cannot change any more: the values in use are recorded.
    """
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            log(f"TensorFlow already started: thread pools left at "
                f"{tf.config.threading.get_intra_op_parallelism_threads()} (0: one per core)")
    previous = _determinism()
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    RUNTIME.update(threads=tf.config.threading.get_intra_op_parallelism_threads(),
                   op_determinism=bool(deterministic))
    return previous


def _determinism(enable=None):
    """Whether TensorFlow's op determinism is on; with ``enable``, set it (to restore it).

    TensorFlow's public API can only switch it on; the switch back, for a caller that runs
    :func:`main` inside a longer process (a test session), uses the function behind it.
    """
    try:
        from tensorflow.python.framework import config
    except ImportError:
        return None
    if enable is not None:
        (config.enable_op_determinism if enable else config.disable_op_determinism)()
    return config.is_op_determinism_enabled()


# --------------------------------------------------------------------------- over seeds

#: Rows that no seed reaches: the shipped model's, the majority class. Each is still computed
#: on every seed, and reported as seed-dependent if it ever moves.
SEED_FREE = {"table1": {"resnet10", "vggface"}, "table2": {"majority", "resnet", "vggface"}}
SPREAD = ("mean ± sample standard deviation (ddof 1) over the seeds, then the lowest and highest "
          "seed in brackets")
BLOCK = None  # compiled on first use (see render_markdown)


def stat(values):
    """Mean, sample std, min and max of per-seed fractions."""
    v = np.asarray(values, float)
    return {"per_seed": [float(x) for x in v], "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max())}


def cell(s, seed_dependent=True):
    """A table cell (percent) for a :func:`stat` or a fixed figure.

    A row trained here shows its spread over the seeds even where it is zero; a row that no
    seed reaches shows its one value.
    """
    if s is None:
        return "n/a"
    if isinstance(s, str):
        return s
    if isinstance(s, (int, float)):
        return pct(s)
    if len(s["per_seed"]) == 1:
        return pct(s["mean"]) + (" (1 seed)" if seed_dependent else "")
    if not seed_dependent:
        return pct(s["mean"])
    return (f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f} "
            f"({100 * s['min']:.2f}–{100 * s['max']:.2f})")


def per_class_mean(dicts):
    """Per-class accuracy averaged over seeds: ``{class: mean}`` from ``to_dict()`` outputs."""
    out = {}
    for name in dicts[0]["per_class"]:
        values = [d["per_class"][name] for d in dicts if d["per_class"][name] is not None]
        out[name] = float(np.mean(values)) if values else None
    out["overall"] = float(np.mean([d["accuracy"] for d in dicts]))
    return out


def summarise(seed_runs, cfg, seeds_planned, command, runtime, wall):
    """The ``reproduce`` section of the results file from the runs of every finished seed."""
    from datetime import datetime, timezone

    seeds = [run["seed"] for run in seed_runs]
    first = seed_runs[0]
    moved = []

    def over_seeds(table, key, values):
        fixed = key in SEED_FREE[table]
        if fixed and len(set(values)) > 1:
            moved.append(f"{table}/{key}")
        return stat(values), not fixed or len(set(values)) > 1

    # Table I
    t1rows = []
    res = [run["table1"] for run in seed_runs]
    s, dep = over_seeds("table1", "resnet10", [r["resnet10"]["accuracy"] for r in res])
    name = res[0]["resnet10"].get("name", "fer2013_resnet10")  # runs before "name": the first
    t1rows.append({"key": "resnet10", "label": f"ResNet-10, kemo's shipped `{name}`",
                   "accuracy": s, "seed_dependent": dep, "images": res[0]["resnet10"]["n"],
                   "paper": PAPER_TABLE1["resnet10"],
                   "note": f"48x48 gray, trained on FER2013 Training (weights/{name}.md);"
                           f" sha256 {res[0]['resnet10']['sha256'][:12]}..., flip averaging"})
    v = res[0]["vgg_style"]
    s, dep = over_seeds("table1", "vgg_style", [r["vgg_style"]["accuracy"] for r in res])
    t1rows.append({"key": "vgg_style", "label": "VGG-style, trained here from scratch",
                   "accuracy": s, "seed_dependent": dep, "images": v["n"], "paper": None,
                   "note": f"{2 * len(cfg.vgg_widths)} conv (widths "
                           f"{'-'.join(map(str, cfg.vgg_widths))}, batch norm) + fc6 512, "
                           f"{v['parameters'] / 1e6:.2f} M parameters; {v['epochs']} epochs on "
                           f"{v['train_images']} Training images, kemo recipe, {v['precision']}; "
                           f"{np.mean([r['vgg_style']['train_minutes'] for r in res]):.1f} min "
                           f"training per seed; last epoch, no model selection on PublicTest"})
    face = res[0]["vggface"]
    if face["present"]:
        s, dep = over_seeds("table1", "vggface", [r["vggface"]["accuracy"] for r in res])
        t1rows.append({"key": "vggface", "label": "VGG-Face fc6 + linear SVM (probe)",
                       "accuracy": s, "seed_dependent": dep, "images": face["n"],
                       "paper": PAPER_TABLE1["vggface"],
                       "note": f"identity weights, not fine-tuned; linear SVM on fc6 of "
                               f"{face['probe_train']} Training images"})
    else:
        t1rows.append({"key": "vggface", "label": "VGG-Face (VGG16, the paper's best)",
                       "accuracy": "absent", "seed_dependent": False, "images": None,
                       "paper": PAPER_TABLE1["vggface"],
                       "note": "weights file not on this machine (rcmalli_vggface_tf_vgg16.h5); "
                               "fine-tuning it is out of reach on 2 CPU cores anyway"})
    for rec in res[0]["recorded"]:
        t1rows.append({"key": f"recorded:{rec['file']}", "label": f"{rec['model']} (recorded)",
                       "accuracy": rec["accuracy"], "seed_dependent": False, "images": None,
                       "paper": None, "note": f"read from benchmarks/results/{rec['file']}"})
    table1 = {"protocol": {"dataset": "FER2013 PublicTest", "images": res[0]["resnet10"]["n"],
                           "scoring": "accuracy, each image averaged with its mirror image",
                           "seeds": seeds},
              "rows": t1rows}

    # Table II
    sets = []
    for name, info in first["sets"].items():
        sets.append({"key": name, **info})
    t2rows = []
    for method, label in first["labels"].items():
        if not any(method in run["accuracy"][st["key"]] for run in seed_runs for st in sets):
            continue
        cells, deps = {}, []
        for st in sets:
            values = [run["accuracy"][st["key"]].get(method) for run in seed_runs]
            if values[0] is None:
                cells[st["key"]] = None
                continue
            cells[st["key"]], d = over_seeds("table2", method, values)
            deps.append(d)
        t2rows.append({"key": method, "label": label, "cells": cells,
                       "seed_dependent": any(deps), "paper": PAPER_TABLE2.get(method),
                       "note": first["notes"][method]})
    weights = {st["key"]: {str(run["seed"]): run["searched_weights"][st["key"]]
                           for run in seed_runs} for st in sets}
    table2 = {"protocol": {"sets": sets, "seeds": seeds}, "rows": t2rows,
              "searched_weights": weights}

    # Table III: per-class accuracy, mean over the seeds
    table3 = {"FER2013 PublicTest": {
        label: per_class_mean([run["table1"]["per_class"][label] for run in seed_runs])
        for label in first["table1"]["per_class"]}}
    for st in sets:
        table3[st["key"]] = {
            first["labels"][m]: per_class_mean([run["reports"][st["key"]][m]
                                                for run in seed_runs])
            for m in first["reports"][st["key"]]}
    return {
        "generated_by": "benchmarks/reproduce.py",
        "command": command,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if cfg.quick else "full",
        "seeds": seeds, "seeds_planned": seeds_planned,
        "complete": seeds == seeds_planned,
        "spread": SPREAD,
        "seed_free_rows_that_moved": moved,
        "runtime": runtime, "wall_minutes": round(wall / 60, 1),
        "settings": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "seed"},
        "table1": table1, "table2": table2, "table3": table3,
    }


def comparable(section):
    """A ``reproduce`` section without what changes from run to run by design (time, date)."""
    out = json.loads(json.dumps(section))
    for key in ("date", "wall_minutes", "command"):
        out.pop(key, None)
    out["runtime"] = {k: v for k, v in out["runtime"].items() if k != "cpus"}
    for row in out["table1"]["rows"]:
        row["note"] = row["note"].split("; last epoch")[0].rsplit(";", 1)[0]  # minutes
    return out


# --------------------------------------------------------------------------- rendering


def _paper(value):
    return "-" if value is None else f"{value:.2f}"


def render_table1(r):
    rows = [[row["label"], cell(row["accuracy"], row["seed_dependent"]), row["images"] or "-",
             _paper(row["paper"]),
             row["note"]] for row in r["table1"]["rows"]]
    return ("Table I. FER2013 PublicTest accuracy (%) of the frame models (paper: FER2013 test)\n\n"
            + md_table(["model", "kemo here", "images", "paper", "how it ran here"], rows))


def render_table2(r):
    t2 = r["table2"]
    sets = t2["protocol"]["sets"]
    rows = [[row["label"], *(cell(row["cells"][st["key"]], row["seed_dependent"]) for st in sets),
             _paper(row["paper"]), row["note"]] for row in t2["rows"]]
    lines = ["Table II. Held-out accuracy (%) on the video stand-ins (each video predicted once, "
             "by models that never saw its subject)", ""]
    for st in sets:
        p = st["protocol"]
        lines.append(f"- {st['title']}: {st['description']}; protocol: {p['folds']} folds of whole "
                     f"subjects (GroupKFold), {p['videos']} videos, {p['subjects']} subjects")
    lines += ["", md_table(["method", *(st["title"] for st in sets), "paper (AFEW val)",
                            "how it ran here"], rows), ""]
    for st in sets:
        w = t2["searched_weights"][st["key"]]
        names = list(next(iter(w.values())))
        mean = {n: np.mean([w[seed][n] for seed in w]) for n in names}
        lines.append(f"Searched fusion weights on {st['title']}, mean over folds and seeds: "
                     + ", ".join(f"{n} {v:.3f}" for n, v in mean.items()))
    return "\n".join(lines)


def render_table3(r):
    lines = [f"Table III. Per-class accuracy (%), mean over seeds {r['seeds']}"]
    for set_name, methods in r["table3"].items():
        classes = list(next(iter(methods.values())))
        rows = [[label, *(pct(v[c]) for c in classes)] for label, v in methods.items()]
        lines += ["", f"{set_name}:", "", md_table(["method", *classes], rows)]
    return "\n".join(lines)


def render_run(r):
    rt = r["runtime"]
    status = ("all planned seeds finished" if r["complete"] else
              f"INCOMPLETE: seeds {r['seeds']} of {r['seeds_planned']} finished")
    moved = (f" Rows of the shipped model that moved between seeds (should not): "
             f"{', '.join(r['seed_free_rows_that_moved'])}." if r["seed_free_rows_that_moved"]
             else "")
    return (f"Generated by `{r['command']}` on {r['date']} ({r['mode']} mode, {status}; "
            f"{r['wall_minutes']} min wall time on {rt['cpus']} shared CPU cores, keras "
            f"{rt['keras']} on {rt['backend']}, {rt['threads']} TensorFlow threads, op "
            f"determinism {'on' if rt['op_determinism'] else 'off'}). Rows trained here (marked "
            f"by a spread) were trained once per seed, seeds {r['seeds']}: each cell is the "
            f"{SPREAD}. Rows without a spread (the shipped model, the majority class) depend on "
            f"no seed and are the same on every seed.{moved}")


def reference(results, ref):
    """The cell of a figure of the ``reproduce`` section: ``table1:ROW`` or ``table2:ROW:SET``.

    Other tables cite Tables I and II this way (``{table2:resnet:ckplus_clips}`` in a cell),
    so that a figure is stored once.
    """
    table, row, *where = ref.split(":")
    section = results.get("reproduce")
    if section is None:
        return "(not yet run)"
    found = next(r for r in section[table]["rows"] if r["key"] == row)
    value = found["cells"][where[0]] if where else found["accuracy"]
    return cell(value, found["seed_dependent"])


#: What a benchmark's recorded entry says of the machine, unless it says more.
SHARED_CPU = f"{os.cpu_count()} CPU cores shared with other jobs, no GPU"


def recorded_entry(title, command, tables, machine=SHARED_CPU, measured=None):
    """A ``results["benchmarks"]`` entry in the shape :func:`render_recorded` reads.

    Args:
        title: what the tables show.
        command: the command that measures them.
        tables: ``{table name: {"header": [...], "rows": [[...], ...]}}``.
        machine: where and under what load.
        measured: when (default: today, UTC).
    """
    return {"title": title, "command": command,
            "measured": measured or time.strftime("%Y-%m-%d", time.gmtime()), "rerun": True,
            "machine": machine, "tables": tables}


def render_recorded(results, name, table):
    """A table of ``results["benchmarks"][name]``, and the command and date that measured it."""
    import re

    entry = results.get("benchmarks", {}).get(name)
    if entry is None or table not in entry["tables"]:
        return f"(not measured yet: no table {name}.{table} in docs/results.json)"
    t = entry["tables"][table]
    def cite(m):  # "{table2:ROW:SET} %": the figure and its unit, once it is generated
        return (reference(results, m[1]) + (m[2] or "") if "reproduce" in results
                else "(not generated yet)")

    rows = [[re.sub(r"\{(table[12]:[\w:]+)\}( %)?", cite, str(c)) for c in row]
            for row in t["rows"]]
    when = (f"Measured {entry['measured']}"
            + (f" with `{entry['command']}`" if entry.get("command") else "")
            + (f" ({entry['machine']})" if entry.get("machine") else "")
            + ("" if entry.get("rerun", True) else "; recorded from that run, not rerun")
            + ".")
    return md_table(t["header"], rows) + "\n\n" + when


def render_block(name, results):
    """The text of one generated block, ``reproduce.<part>`` or ``<benchmark>.<table>``."""
    group, _, part = name.partition(".")
    if group == "reproduce":
        if "reproduce" not in results:
            return "(not generated yet: run `benchmarks/reproduce.py`)"
        return {"table1": render_table1, "table2": render_table2, "table3": render_table3,
                "run": render_run}[part](results["reproduce"])
    return render_recorded(results, group, part)


def render_markdown(text, results):
    """``text`` with every ``<!-- results:NAME -->`` block rewritten from ``results``."""
    import re

    global BLOCK
    if BLOCK is None:
        BLOCK = re.compile(r"(<!-- results:(?P<name>[\w.\-]+) -->\n)(?P<body>.*?)"
                           r"(<!-- /results:(?P=name) -->)", re.S)
    return BLOCK.sub(lambda m: m.group(1) + render_block(m["name"], results) + "\n" + m.group(4),
                     text)


#: The default model's card, relative to the checkout: it has generated blocks too (its speed).
CARD = Path("weights") / f"{DEFAULT_WEIGHTS}.md"


def write_docs(docs, section):
    """Store ``section`` as ``reproduce`` in ``docs/results.json``; regenerate results.md."""
    return update_results(docs, lambda results: results.update(reproduce=section)
                          if section is not None else None)


def update_results(docs, change):
    """Apply ``change`` (a function that edits the results dict in place) to the stored
    results, write both files atomically, and return the results.

    One read and one write, so that benchmarks storing their tables here
    (``ckplus_videos.py --record``) keep what other runs stored. The pages regenerated are
    ``results.md`` in ``docs`` and the model card (:data:`CARD`) of the checkout ``docs``
    belongs to, where they exist."""
    from kemo._files import write_atomic

    path = Path(docs) / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    change(results)
    write_atomic(path, json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    for md in (Path(docs) / "results.md", Path(docs).parent / CARD):
        if md.is_file():
            write_atomic(md, render_markdown(md.read_text(), results))
    return results


# --------------------------------------------------------------------------- main


def run_seed(args, cfg, sets, shipped, log):
    """Tables I-III for one seed: ``(per-seed record, old-style summary, texts, shipped)``."""
    import keras

    from kemo import weights as registry
    from kemo.models import ResNet10

    keras.utils.set_random_seed(cfg.seed)  # Python, NumPy and TensorFlow's global generators
    log(f"seed {cfg.seed}")
    text1, fer_per_class, res1, vgg, shipped = table1(args.data, cfg, args.cache, args.out, log,
                                                      shipped)
    resnet_info = registry.get(registry.DEFAULT_WEIGHTS)
    networks = {
        "resnet": ("resnet", functools.partial(ResNet10, weights=registry.DEFAULT_WEIGHTS), "fc1",
                   registry.DEFAULT_WEIGHTS, resnet_info.sha256),
        "vgg": ("vgg", vgg, "fc6", scale01, res1["vgg_style"]["run_dir"]),
    }
    if res1["vggface"]["present"]:
        from kemo.models import VGGFace

        networks["vggface"] = ("vggface", functools.partial(VGGFace, weights="vggface"), "fc6",
                               "vggface", str(res1["vggface"]["path"]))
    results = {}
    for vs in sets:
        classes, probas, info = run_video_set(vs, networks, cfg, args.cache, log)
        results[vs.name] = {"title": vs.title, "description": vs.description,
                            "labels": vs.labels, "classes": classes, "probas": probas,
                            "info": info}
    text2, reports, labels, notes = table2(results, networks, cfg)
    summary = {
        "mode": "quick" if cfg.quick else "full", "settings": dataclasses.asdict(cfg),
        "table1": res1,
        "table2": {name: {"accuracy": {m: rep.accuracy for m, rep in reps.items()},
                          "mean_class_accuracy": {m: rep.mean_class_accuracy
                                                  for m, rep in reps.items()},
                          "info": results[name]["info"], "n": int(len(results[name]["labels"]))}
                   for name, reps in reports.items()},
        "table3": {name: {m: rep.to_dict() for m, rep in reps.items()}
                   for name, reps in reports.items()},
    }
    record = {
        "seed": cfg.seed, "table1": json.loads(json.dumps(res1, default=str)),
        "labels": labels, "notes": notes,
        "sets": {vs.name: {"title": vs.title, "description": vs.description,
                           "protocol": {"dataset": vs.name, "videos": int(len(vs.labels)),
                                        "subjects": int(len(np.unique(vs.subjects))),
                                        "folds": len(vs.folds),
                                        "split": "GroupKFold by subject"}}
                 for vs in sets},
        "accuracy": {n: {m: rep.accuracy for m, rep in reps.items()}
                     for n, reps in reports.items()},
        "reports": summary["table3"],
        "searched_weights": {n: results[n]["info"]["searched_weights"] for n in results},
    }
    return record, summary, (text1, fer_per_class, text2, reports, labels), shipped


def main(argv=None):
    """Run the tables over the seeds; print them; return the first seed's results as a dict.

    The returned dict holds the first seed's figures as before (``table1``, ``table2``,
    ``table3``), and under ``reproduce`` the section written to the results file: every
    figure over all seeds with its protocol.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("KEMO_DATA"),
                        help="data root holding fer2013/, ckplus_emopy/, ckplus48/ "
                             "(default: $KEMO_DATA)")
    parser.add_argument("--quick", action="store_true", help="tiny subsets and budgets (CI)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "reproduce" / "out",
                        help="folder for figures, tables.md and results.json")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "reproduce" / "cache",
                        help="folder for cached faces, features, trained networks")
    parser.add_argument("--seeds", type=int, default=None,
                        help="how many seeds train the networks trained here (default: 3; "
                             "--quick: 1); the shipped model's rows depend on no seed")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--threads", type=int, default=2,
                        help="TensorFlow threads (intra- and inter-op; default 2); part of the "
                             "cache keys, since the thread count can change float sums")
    parser.add_argument("--no-determinism", action="store_true",
                        help="leave TensorFlow's op determinism off")
    parser.add_argument("--docs", type=Path, default=None,
                        help="write the results file (DOCS/results.json, section 'reproduce') "
                             "and regenerate DOCS/results.md (default: docs/ in full mode, "
                             "nothing in --quick mode)")
    parser.add_argument("--render-docs", action="store_true",
                        help="only regenerate docs/results.md and the model card's blocks "
                             "from docs/results.json")
    args = parser.parse_args(argv)
    if args.render_docs:
        write_docs(args.docs or ROOT / "docs", None)
        return None
    if not args.data:
        parser.error("give --data (the folder holding fer2013/, ckplus_emopy/, ckplus48/) or "
                     "set KEMO_DATA")
    base = QUICK if args.quick else FULL
    n_seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    if n_seeds < 1:
        parser.error(f"--seeds must be 1 or more; got {n_seeds}")
    seeds = [args.seed + i for i in range(n_seeds)]
    docs = args.docs if args.docs is not None else (None if args.quick else ROOT / "docs")
    log = Log()
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes, one per fold
    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    previous = set_up_runtime(args.threads, not args.no_determinism, log)
    try:
        return _run(args, base, seeds, docs, log)
    finally:
        if previous is not None:
            _determinism(previous)


def _run(args, base, seeds, docs, log):
    """The body of :func:`main`, once the runtime is set up."""
    n_seeds = len(seeds)
    import keras

    log(f"mode {'QUICK' if base.quick else 'full'}, seeds {seeds}, keras {keras.__version__} "
        f"({keras.backend.backend()}), {os.cpu_count()} CPUs, {RUNTIME['threads']} threads, "
        f"op determinism {RUNTIME['op_determinism']}, out {args.out}, cache {args.cache}")
    import tensorflow as tf

    runtime = {"keras": keras.__version__, "backend": keras.backend.backend(),
               "tensorflow": tf.__version__, "cpus": os.cpu_count(), **RUNTIME,
               "precision": "mixed_bfloat16" if bf16_cpu() else "float32"}
    command = ("python benchmarks/reproduce.py " + ("--quick " if base.quick else "")
               + f"--data DATA --seeds {n_seeds}" + (f" --seed {args.seed}" if args.seed else "")
               + (f" --threads {args.threads}" if args.threads != 2 else "")
               + (" --no-determinism" if args.no_determinism else ""))

    sets, records, shipped, first = None, [], None, None
    for seed in seeds:
        cfg = dataclasses.replace(base, seed=seed)
        if sets is None:  # faces and CK+48 depend on no seed; the folds on none either
            sets = [load_clips(args.data, cfg, args.cache, log), load_ck48(args.data, cfg)]
        record, summary, texts, shipped = run_seed(args, cfg, sets, shipped, log)
        records.append(record)
        text1, fer_per_class, text2, reports, labels = texts
        print(f"Seed {seed}\n\n{text1}\n\n{text2}\n", flush=True)
        if first is None:  # figures and the per-class text of the first seed
            text3, figures = table3(fer_per_class, reports, labels, args.out)
            print(text3 + "\n", flush=True)
            first = dict(summary, figures=sorted(figures))
            (args.out / "tables.md").write_text("\n\n".join([text1, text2, text3]) + "\n")
        section = summarise(records, base, seeds, command, runtime, time.time() - log.start)
        first["reproduce"] = section
        first["seconds"] = time.time() - log.start
        (args.out / "results.json").write_text(json.dumps(first, indent=1, default=str))
        (args.out / "seed_records.json").write_text(json.dumps(records, default=str))
        if docs is not None:
            write_docs(docs, section)
            log(f"seed {seed} done: {docs / 'results.json'} and results.md updated")

    print("\n\n".join([render_run(section), render_table1(section), render_table2(section),
                       render_table3(section)]) + "\n", flush=True)
    seconds = time.time() - log.start
    print(f"Command: {command}; wall time {seconds / 60:.1f} min on {os.cpu_count()} CPU cores "
          f"(cached stages are skipped on a rerun).", flush=True)
    return first


if __name__ == "__main__":
    main()
