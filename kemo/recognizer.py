"""The end-to-end video emotion recogniser: videos in, emotions out.

:class:`VideoEmotionRecognizer` chains the whole pipeline of the paper behind one scikit-learn
classifier::

    video -> faces (FacePreprocessor) -> frame features -> Aggregator -> linear SVM
                                      -> C3D clip features -> linear SVM  (optional)
                                      -> feature sequences -> BiResidualLSTM  (optional)
                                                               -> weighted fusion of probabilities

Two modes:

* pretrained (never fitted): kemo's shipped FER2013 face model scores every face, and a video's
  probabilities pool its frame probabilities (``pooling``; see :mod:`kemo.timeline`). It works
  offline with no training.
* trained (after :meth:`VideoEmotionRecognizer.fit`): the paper's aggregated-feature SVM, plus
  the C3D and LSTM branches and their fusion when configured.

A trained recogniser is saved as a folder of plain files (JSON, ``.npz`` arrays, Keras
``.weights.h5``), each checked by sha256 when loaded; nothing is unpickled, so loading a model
folder cannot run code. See :meth:`VideoEmotionRecognizer.save`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.multiclass import check_classification_targets

from kemo.errors import InputError, KemoError, NoFaceError, WeightsError, one_line
from kemo.timeline import DEFAULT_POOLING, POOLINGS

__all__ = ["TrackResult", "VideoAnalysis", "VideoEmotionRecognizer", "VideoFailure"]

#: What a batch does with a video that fails: raise at once, or skip it and report it.
ERROR_MODES = ("raise", "skip")
#: The paper's fusion weights of its three branches (normalised over the branches in use).
PAPER_WEIGHTS = {"agg": 0.5, "c3d": 0.25, "lstm": 0.25}
#: C3D branch settings (``c3d=True`` uses these; a dict overrides some of them).
C3D_DEFAULTS = {"weights": None, "size": 112, "stride": 8}
#: LSTM branch settings (``lstm=True`` uses these; a dict overrides some of them).
LSTM_DEFAULTS = {"frames": 32, "units": 128, "layers": 2, "dropout": 0.2, "epochs": 30,
                 "batch_size": 32, "learning_rate": 1e-3}
#: Fine-tuning of the face model on the training videos' faces (``finetune=True`` uses these;
#: a dict overrides some of them). A gentle rate and few epochs: a few hundred faces of a few
#: dozen people would soon be memorised by a 5 M-parameter network.
FINETUNE_DEFAULTS = {"epochs": 3, "learning_rate": 1e-3, "batch_size": 64,
                     "faces_per_video": None}
#: Name of the description file in a saved model folder.
MANIFEST = "kemo_model.json"
#: The fine-tuned face model's weights in a saved model folder.
FINETUNED_FILE = "face_model_finetuned.weights.h5"
#: Random C3D weights, as model folders saved before the seed was stored hold them.
C3D_FILE = "c3d.weights.h5"
FORMAT = "kemo.VideoEmotionRecognizer"
FORMAT_VERSION = 1

# Frame-feature tap of each architecture (the paper: VGG-Face fc6, ResNet-10 fc1). The
# paper's fc6 is Caffe's blob, which its in-place ReLU overwrites: fc6_relu here.
_TAPS = {"VGGFace": "fc6_relu", "ResNet10": "fc1"}
# Failures a batch may skip: kemo's own errors and what OpenCV / the OS raise on bad files.
_SKIPPABLE = (KemoError, OSError, ValueError)


# ----------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class VideoFailure:
    """A video a batch could not process (with ``errors="skip"``).

    Attributes:
        index: position of the video in the batch.
        source: its path, or ``None`` for an array.
        error: the error message, on one line.
        kind: the exception's class name (e.g. ``"VideoReadError"``).
    """

    index: int
    source: str | None
    error: str
    kind: str


@dataclasses.dataclass(frozen=True)
class TrackResult:
    """The emotion of one tracked face of a video.

    Attributes:
        track_id: the tracker's id of the face.
        frame_indices: int64 (n,): the frames where the face was found.
        boxes: float32 (n, 4): ``[x, y, w, h]`` of the face in each of those frames.
        frame_probabilities: float32 (n, 7): the pretrained face model's probabilities of each
            frame (classes :attr:`VideoAnalysis.timeline_class_names`).
        probabilities: float (K,): the recogniser's probabilities for this face over the video.
        label: the most probable class name.
        segments: the :class:`kemo.timeline.Segment` s of the face's smoothed timeline (start
            and end in seconds, emotion, mean probability), in time order.
    """

    track_id: int
    frame_indices: np.ndarray
    boxes: np.ndarray
    frame_probabilities: np.ndarray
    probabilities: np.ndarray
    label: str
    segments: tuple = ()


@dataclasses.dataclass(frozen=True)
class VideoAnalysis:
    """What :meth:`VideoEmotionRecognizer.analyze` found in one video.

    The video-level result is the main face's (the face tracked in the most frames); ``tracks``
    holds every face analysed (only the main one unless all were asked for).

    Attributes:
        source: the video's path (``None`` for a frame array).
        class_names: names of the columns of ``probabilities``.
        probabilities: float (K,): the video's class probabilities.
        label: the most probable class name.
        frames_read: frames examined.
        faces_found: faces found in all frames (all tracks analysed).
        tracks: one :class:`TrackResult` per face analysed, the main face first.
        timeline_class_names: names of the columns of the frame probabilities (the pretrained
            face model's classes).
        fps: the video's frame rate, which turns frame indices into seconds (30 when the
            video reports none, e.g. a frame array).
    """

    source: str | None
    class_names: tuple
    probabilities: np.ndarray
    label: str
    frames_read: int
    faces_found: int
    tracks: tuple
    timeline_class_names: tuple
    fps: float = 30.0

    @property
    def main(self):
        """TrackResult: the main face."""
        return self.tracks[0]

    @property
    def frame_indices(self):
        """int64 (n,): frames of the main face (the timeline's x axis)."""
        return self.main.frame_indices

    @property
    def frame_probabilities(self):
        """float32 (n, 7): per-frame probabilities of the main face (the timeline)."""
        return self.main.frame_probabilities

    @property
    def boxes(self):
        """float32 (n, 4): the main face's box in each of its frames."""
        return self.main.boxes

    def to_dict(self, timeline=False):
        """Plain Python values (JSON-friendly).

        Args:
            timeline: add each track's ``timeline``: one entry per frame with the face, its
                ``frame`` index, ``time`` in seconds, ``box`` and ``probabilities`` (what
                ``kemo predict --timeline`` adds to the JSON).

        Returns:
            dict with ``path``, ``label``, ``probabilities`` ({class: p}), ``frames_read``,
            ``faces_found``, ``fps`` (frame indices over ``fps`` are seconds) and ``tracks``:
            a list of the same per face, the main face first and marked ``"main": true``,
            with its ``track`` id, ``frames``, ``start`` and ``end`` (seconds from the first
            frame with the face to one frame after the last) and ``segments`` (``start`` and
            ``end`` seconds, ``label``, mean ``probability``, ``first_frame`` and
            ``last_frame``).
        """

        def probs(values, names):
            return {name: round(float(p), 6) for name, p in zip(names, values, strict=True)}

        fps = float(self.fps)
        tracks = []
        for i, track in enumerate(self.tracks):
            frames = np.asarray(track.frame_indices)
            item = {"track": track.track_id, "main": i == 0, "label": track.label,
                    "frames": len(track.boxes),
                    "start": round(float(frames.min()) / fps, 6) if len(frames) else None,
                    "end": round((float(frames.max()) + 1) / fps, 6) if len(frames) else None,
                    "probabilities": probs(track.probabilities, self.class_names),
                    "segments": [segment.to_dict() for segment in track.segments]}
            if timeline:
                item["timeline"] = [
                    {"frame": int(f), "time": round(int(f) / fps, 6),
                     "box": [round(float(v), 2) for v in box],
                     "probabilities": probs(p, self.timeline_class_names)}
                    for f, box, p in zip(track.frame_indices, track.boxes,
                                         track.frame_probabilities, strict=True)
                ]
            tracks.append(item)
        return {"path": self.source, "label": self.label,
                "probabilities": probs(self.probabilities, self.class_names),
                "frames_read": self.frames_read, "faces_found": self.faces_found,
                "fps": round(fps, 6), "tracks": tracks}

    def annotate(self, path, fps=None):
        """Write a copy of the video with each face's box and emotion drawn on it.

        Every frame of the source is written. Each face gets a box in its track's colour and a
        label ``#<track> <emotion> <probability>`` of that frame, on a filled background; the
        top-left corner holds the whole video's label, ``video: <emotion> <probability>``.
        Text and lines scale with the frame height (text 1/32 of it, 12 pixels at least), and
        labels that would cover each other are moved apart. The file is written under a
        temporary name and renamed, so a half-written file never has the final name; its
        folder is created.

        Args:
            path: output file (``.mp4``, ``.avi``, ``.mov`` or ``.mkv``; see
                :func:`kemo.video.write_video`).
            fps: frame rate; default: the source's (30 when it reports none).

        Returns:
            pathlib.Path: the written file.

        Raises:
            InputError: the analysis came from a frame array, or ``path`` has another ending.
            kemo.errors.VideoReadError, kemo.errors.VideoWriteError: reading or writing failed.
        """
        from kemo._drawing import draw_frame, style_for
        from kemo._files import atomic_path
        from kemo.errors import VideoWriteError
        from kemo.video import WRITE_SUFFIXES, Video, write_video

        if self.source is None:
            raise InputError("annotate needs the video file; this analysis came from an array")
        path = Path(path)
        if path.suffix.lower() not in WRITE_SUFFIXES:
            raise InputError(f"{path}: cannot write a {path.suffix or 'suffix-less'} video; "
                             f"name a {', '.join(WRITE_SUFFIXES)} file")
        marks = {}
        for track in self.tracks:
            for frame, box, p in zip(track.frame_indices, track.boxes,
                                     track.frame_probabilities, strict=True):
                name = self.timeline_class_names[int(np.argmax(p))]
                text = f"#{track.track_id} {name} {p.max():.2f}"
                marks.setdefault(int(frame), []).append((track.track_id, box, text))
        headline = f"video: {self.label} {float(np.max(self.probabilities)):.2f}"

        def frames(video, style):
            for index, frame in video.frames():
                image = np.ascontiguousarray(frame)
                draw_frame(image, marks.get(index, ()), headline, style)
                yield image

        with Video(self.source) as video, atomic_path(path, path.suffix) as tmp:
            try:
                write_video(tmp, frames(video, style_for(video.size[1])),
                            fps=fps or video.fps or 30.0)
            except VideoWriteError as exc:  # name the user's file, not the temporary one
                raise VideoWriteError(str(exc).replace(str(tmp), str(path))) from exc
        return path


# ----------------------------------------------------------------------------- members


class _LinearModel:
    """A fitted :class:`kemo.classifiers.LinearSVMClassifier` as plain arrays.

    Gives the same probabilities as the estimator (the one-vs-rest scores of each calibration
    fold's SVM, its sigmoid or isotonic calibration, normalised and averaged over the folds, as
    ``CalibratedClassifierCV`` computes them; or a softmax of one SVM's scores), and saves to
    an ``.npz`` file without pickling.
    """

    def __init__(self, classes, method, folds):
        self.classes_ = np.asarray(classes)
        self.method = method
        self.folds = folds

    @classmethod
    def from_estimator(cls, svm):
        """Export a fitted LinearSVMClassifier."""
        classes = svm.classes_
        method = svm.calibration_  # "auto" resolved to the method the fit used
        if method == "softmax":
            est = svm.estimator_
            fold = {"coef": est.coef_, "intercept": est.intercept_,
                    "columns": np.arange(len(classes))}
            return cls(classes, "softmax", [fold])
        folds = []
        for calibrated in svm.estimator_.calibrated_classifiers_:
            est = calibrated.estimator
            fold = {"coef": est.coef_, "intercept": est.intercept_,
                    "columns": np.searchsorted(classes, est.classes_)}
            if method == "sigmoid":
                fold["a"] = np.array([c.a_ for c in calibrated.calibrators], np.float64)
                fold["b"] = np.array([c.b_ for c in calibrated.calibrators], np.float64)
            else:
                for k, c in enumerate(calibrated.calibrators):
                    fold[f"x{k}"] = np.asarray(c.X_thresholds_, np.float64)
                    fold[f"y{k}"] = np.asarray(c.y_thresholds_, np.float64)
            folds.append(fold)
        return cls(classes, method, folds)

    def predict_proba(self, X):
        """Class probabilities ``(n, K)``, columns in the order of ``classes_``."""
        X = np.asarray(X)
        k = len(self.classes_)
        out = np.zeros((len(X), k))
        for fold in self.folds:
            scores = X @ fold["coef"].T + fold["intercept"]  # (n, 1) for two classes
            if self.method == "softmax":
                if scores.shape[1] == 1:
                    scores = np.hstack([-scores, scores])
                scores = scores - scores.max(axis=1, keepdims=True)
                proba = np.exp(scores)
                out += proba / proba.sum(axis=1, keepdims=True)
                continue
            proba = np.zeros((len(X), k))
            for i, (column, score) in enumerate(zip(fold["columns"], scores.T, strict=False)):
                if k == 2:
                    column = column + 1  # the binary score is the second class's
                if self.method == "sigmoid":
                    proba[:, column] = 1 / (1 + np.exp(fold["a"][i] * score + fold["b"][i]))
                else:
                    x, y = fold[f"x{i}"], fold[f"y{i}"]
                    proba[:, column] = np.interp(np.clip(score, x[0], x[-1]), x, y)
            if k == 2:
                proba[:, 0] = 1 - proba[:, 1]
            else:
                total = proba.sum(axis=1, keepdims=True)
                proba = np.divide(proba, total, out=np.full_like(proba, 1 / k),
                                  where=total != 0)
            out += proba
        return out / len(self.folds)

    def to_arrays(self):
        """``{name: array}`` for ``np.savez``."""
        arrays = {"method": np.str_(self.method), "n_folds": np.int64(len(self.folds))}
        for i, fold in enumerate(self.folds):
            arrays.update({f"fold{i}_{key}": value for key, value in fold.items()})
        return arrays

    @classmethod
    def from_arrays(cls, arrays, classes):
        """Rebuild from :meth:`to_arrays` output."""
        folds = [{} for _ in range(int(arrays["n_folds"]))]
        for key, value in arrays.items():
            if key.startswith("fold"):
                index, name = key[4:].split("_", 1)
                folds[int(index)][name] = value
        return cls(classes, str(arrays["method"]), folds)


def _shared(maxsize):
    """``functools.lru_cache`` that builds each value once when threads ask at the same time.

    ``lru_cache`` does not lock: threads that miss together would each load the model (a live
    reader and a pool of workers share these), and be given different copies.
    """
    lock = threading.Lock()

    def wrap(function):
        cached = functools.lru_cache(maxsize=maxsize)(function)

        @functools.wraps(function)
        def shared(*args):
            with lock:
                return cached(*args)

        shared.cache_clear = cached.cache_clear
        return shared

    return wrap


@_shared(maxsize=8)
def _face_classifier(weights, flip, batch_size, stamp=None):
    """A loaded FaceEmotionClassifier, shared by recognisers (inference never changes it).

    ``stamp`` (see :func:`_file_stamp`) is only part of the cache key: a model file rewritten
    since, e.g. by a new training run, is loaded again.
    """
    from kemo.classifier import FaceEmotionClassifier

    return FaceEmotionClassifier(weights=weights, flip=flip, batch_size=batch_size).fit()


@_shared(maxsize=4)
def _frame_extractor(name, batch_size):
    """A FrameFeatureExtractor for registered weights that are not a face classifier."""
    from kemo import models
    from kemo import weights as registry
    from kemo.features import FrameFeatureExtractor

    info = registry.get(name)
    builder = getattr(models, info.architecture)
    if info.include_top:
        build = functools.partial(builder, weights=name, classes=info.classes)
        layer = _TAPS[info.architecture]
    else:
        build = functools.partial(builder, weights=name, include_top=False, pooling="avg")
        layer = None
    return FrameFeatureExtractor(build, layer=layer, preprocess=name,
                                 batch_size=batch_size).fit()


# ----------------------------------------------------------------------------- recogniser


class VideoEmotionRecognizer(ClassifierMixin, BaseEstimator):
    """Recognise the emotion of the faces in videos, end to end (scikit-learn classifier).

    Unfitted, it is a **pretrained** recogniser: kemo's shipped FER2013 model (``weights``)
    gives the 7 emotion probabilities of every face found, and a video's probabilities
    **pool its frame probabilities** (``pooling``): by default each frame is weighted by how
    far it is from neutral, so that a neutral start does not pull a clip toward Neutral, while
    a video whose frames are all equally expressive (or all neutral) gets their plain mean.

    :meth:`fit` trains the paper's pipeline on labelled videos: per-frame features of every
    network in ``features`` (e.g. ResNet-10 ``fc1`` 512-d, VGG-Face ``fc6`` after its ReLU,
    ``fc6_relu``, 4096-d: the paper's Caffe ``fc6`` blob), aggregated
    per video (signed square root, L2, mean and variance: :class:`kemo.Aggregator`), then a
    one-vs-rest linear SVM with calibrated probabilities. With ``c3d`` and/or ``lstm``, those
    branches are trained too and the class probabilities are fused (weights 0.5 / 0.25 / 0.25
    as in the paper, given weights, or searched on cross-validated predictions). As in
    scikit-learn, ``features``, ``c3d`` and ``lstm`` set after :meth:`fit` take effect at the
    next fit: the trained model predicts with those it was fitted with.

    Inputs: every method taking videos accepts a list whose items are video paths, frame
    arrays ``(T, H, W[, C])``, or :class:`kemo.faces.VideoFaces` (faces already found, e.g.
    to run face detection once for many cross-validation folds).

    Args:
        weights: the face classifier that scores frames in pretrained mode and for the
            timeline: registered weights (default: the shipped FER2013 ResNet-10), or the path
            of a face model file, e.g. the ``fer2013_resnet10.weights.h5`` a ``kemo train
            fer2013`` run exports (or its ``best.keras``). :meth:`save` copies such a file into
            the model folder.
        features: registered weights names whose frame features are aggregated for the SVM
            (ResNet-10 entries give ``fc1``, VGG-Face entries ``fc6_relu``); None:
            ``(weights,)``.
        faces: a :class:`kemo.faces.FacePreprocessor`; None builds one that tracks faces with
            a full detection every 5 frames (``detect_every=5``: the same faces as per-frame
            detection on the CK+ clips at a third of the cost) and aligns them at the largest
            input size the models need (grayscale when all of them are gray).
        C: SVM regularisation.
        calibration: SVM probabilities: ``"sigmoid"``, ``"isotonic"`` (cross-validated with
            ``cv`` folds; every class needs ``cv`` videos) or ``"softmax"``.
        cv: calibration folds (grouped when :meth:`fit` gets ``groups``).
        c3d: None/False for no C3D branch; True or a dict overriding :data:`C3D_DEFAULTS`
            (``weights``: None for seeded random weights, saved with the model as their seed
            and rebuilt on loading (not the 245 MB of weights at size 112); or
            ``"c3d_sports1m"``; ``size``: face side; ``stride``: frames between 16-frame
            windows).
        lstm: None/False for no LSTM branch; True or a dict overriding :data:`LSTM_DEFAULTS`
            (``frames``: sequence length, frames sampled uniformly, zero-padded; ``units``,
            ``layers``, ``dropout``, ``epochs``, ``batch_size``, ``learning_rate``). It reads
            the L2-normalised frame features of the first network in ``features``.
        fusion_weights: with several branches: None (the paper's 0.5 / 0.25 / 0.25,
            normalised), a list (one per branch, in the order aggregated SVM, C3D, LSTM), or
            ``"search"`` (see :class:`kemo.FusionClassifier`; groups passed to :meth:`fit`
            make the folds subject-independent).
        fusion_cv: folds of the weight search.
        flip: average each face's predictions with its mirror image's.
        pooling: how the pretrained recogniser turns a face's frame probabilities into the
            video's: ``"expressive"`` (default: frames weighted by ``1 - p(Neutral)``),
            ``"mean"``, ``"confidence"``, ``"topk"`` or ``"peak"`` (see
            :func:`kemo.timeline.pool`; measured in ``benchmarks/ckplus_videos.py``). A
            trained recogniser aggregates frame features instead and ignores it.
        batch_size: faces per forward pass.
        errors: ``"raise"``: a video that cannot be read or has no face raises; ``"skip"``:
            it is left out of training, gets NaN probabilities in prediction, and is listed in
            ``failures_`` (a warning says how many failed).
        random_state: seed of the SVM, the LSTM, the random C3D weights and the fine-tuning.
        verbose: progress bars over videos.
        finetune: the paper's second fine-tuning step: None/False (default) extracts the
            features with the face model as it is; True or a dict overriding
            :data:`FINETUNE_DEFAULTS` first trains a copy of the face model (``weights``) on
            the faces of the training videos, each labelled with its video's label, then
            extracts the features with it (``epochs``; ``learning_rate``: the start of a
            cosine decay, recipe ``"finetune"`` of :mod:`kemo.training` otherwise, with its
            BatchNorm statistics kept as trained; ``batch_size``; ``faces_per_video``: None
            for all, or at most that many, spread over each video). It happens in
            :meth:`fit`, so each cross-validation fold fine-tunes on its own training videos
            only. Labels must be the face model's classes (FER ids 0..6, or their names),
            and ``weights`` must be among ``features``. Off by default: on the 40 CK+ clips,
            leave-one-subject-out, it did not beat the face model as it is (README Results),
            and it costs a training run per fit. The SVM's calibration folds and the fusion
            weight search then read features of faces the model was tuned on, so their
            inner scores are optimistic; held-out videos are not affected.

    Attributes:
        classes_: the labels (pretrained: ``0..6``, the FER2013 ids).
        class_names_: their names.
        is_trained: whether :meth:`fit` (or :meth:`load` of a trained model) ran.
        faces_: the fitted FacePreprocessor.
        members_: trained: ``[(name, model, weight)]``, the branches and their fusion weights.
        fusion_scores_: with ``fusion_weights="search"``: the out-of-fold scores.
        face_model_: with ``finetune``: the fine-tuned :class:`kemo.FaceEmotionClassifier`
            (it scores the timeline and gives the features of ``weights``).
        finetune_faces_: with ``finetune``: the number of faces it was trained on.
        failures_: :class:`VideoFailure` of the videos skipped by the last call.

    Example:
        >>> rec = VideoEmotionRecognizer()                     # pretrained, offline
        >>> mine = VideoEmotionRecognizer(weights="run/fer2013_resnet10.weights.h5")
        >>> rec.predict_proba(["clip.avi"]).round(2)  # doctest: +SKIP
        >>> result = rec.analyze("party.mp4", tracks="all")  # doctest: +SKIP
        >>> rec = VideoEmotionRecognizer(lstm=True).fit(paths, labels)  # doctest: +SKIP
        >>> rec.save("my_model")  # doctest: +SKIP
        >>> VideoEmotionRecognizer.load("my_model").predict(paths)  # doctest: +SKIP
    """

    def __init__(self, weights="fer2013_resnet10", features=None, faces=None, C=1.0,
                 calibration="sigmoid", cv=3, c3d=None, lstm=None, fusion_weights=None,
                 fusion_cv=5, flip=True, batch_size=256, errors="raise", random_state=0,
                 verbose=False, pooling=DEFAULT_POOLING, finetune=None):
        self.weights = weights
        self.features = features
        self.faces = faces
        self.C = C
        self.calibration = calibration
        self.cv = cv
        self.c3d = c3d
        self.lstm = lstm
        self.fusion_weights = fusion_weights
        self.fusion_cv = fusion_cv
        self.flip = flip
        self.batch_size = batch_size
        self.errors = errors
        self.random_state = random_state
        self.verbose = verbose
        self.pooling = pooling
        self.finetune = finetune

    # ------------------------------------------------------------------ state

    def __sklearn_is_fitted__(self):
        # Pretrained: usable without fit.
        return True

    @property
    def is_trained(self):
        """bool: whether the recogniser was trained (else it is the pretrained one)."""
        return hasattr(self, "members_")

    @property
    def classes_(self):
        """The labels the probabilities' columns stand for."""
        if self.is_trained:
            return self._classes
        return np.arange(len(self.timeline_class_names))

    @property
    def class_names_(self):
        """tuple: display names of ``classes_``."""
        if self.is_trained:
            return self._class_names
        return self.timeline_class_names

    @property
    def timeline_class_names(self):
        """tuple: class names of the per-frame probabilities (the face model's classes)."""
        from kemo.datasets import CLASS_NAMES

        return tuple(self._info(self.weights).class_names or CLASS_NAMES)

    # ------------------------------------------------------------------ parameters

    def _check_params(self):
        """Validate the parameters; return ``(feature names, c3d config, lstm config)``."""
        from kemo import weights as registry

        if self.errors not in ERROR_MODES:
            raise InputError(f"errors must be one of {ERROR_MODES}, got {self.errors!r}")
        if self.pooling not in POOLINGS:
            raise InputError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if registry.model_file(self.weights) is None:  # a file is checked when it loads
            _check_weights_name("weights", self.weights, registry)
            info = registry.get(self.weights)
            if info.architecture != "ResNet10" or not info.classes:
                raise InputError(f"weights {self.weights!r} are not a face classifier (ResNet10 "
                                 f"with a classifier top); use e.g. 'fer2013_resnet10'")
        names = (self.weights,) if self.features is None else self.features
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
            raise InputError(f"features must be a non-empty list of registered weights names, "
                             f"got {self.features!r}")
        for name in names:
            if name == self.weights:
                continue  # the face classifier's fc1, checked above
            _check_weights_name("features", name, registry)
            if registry.get(name).architecture not in _TAPS:
                raise InputError(f"features: weights {name!r} are for "
                                 f"{registry.get(name).architecture}; frame features come from "
                                 f"{sorted(_TAPS)} weights")
        if len(set(names)) != len(names):
            raise InputError(f"features lists a network twice: {list(names)}")
        c3d = _branch_config("c3d", self.c3d, C3D_DEFAULTS)
        lstm = _branch_config("lstm", self.lstm, LSTM_DEFAULTS)
        if c3d is not None:
            if c3d["weights"] is not None:
                _check_weights_name("c3d weights", c3d["weights"], registry)
            _check_positive("c3d size", c3d["size"], 16)
            _check_positive("c3d stride", c3d["stride"], 1)
        if lstm is not None:
            for key in ("frames", "units", "layers", "epochs", "batch_size"):
                _check_positive(f"lstm {key}", lstm[key], 1)
        if self._finetune_config() is not None and self.weights not in names:
            raise InputError(f"finetune trains the face model {self.weights!r}, which is not "
                             f"among features {list(names)}: it would change no feature; add "
                             f"it to features or drop finetune")
        if self.faces is not None:
            from kemo.faces import FacePreprocessor

            if not isinstance(self.faces, FacePreprocessor):
                raise InputError(f"faces must be a kemo.faces.FacePreprocessor or None, got "
                                 f"{type(self.faces).__name__}")
        return tuple(names), c3d, lstm

    def _finetune_config(self):
        """The fine-tuning settings (:data:`FINETUNE_DEFAULTS` updated), or None; validated."""
        config = _branch_config("finetune", self.finetune, FINETUNE_DEFAULTS)
        if config is None:
            return None
        _check_positive("finetune epochs", config["epochs"], 1)
        _check_positive("finetune batch_size", config["batch_size"], 1)
        if config["faces_per_video"] is not None:
            _check_positive("finetune faces_per_video", config["faces_per_video"], 1)
        rate = config["learning_rate"]
        if (isinstance(rate, bool) or not isinstance(rate, (int, float, np.number))
                or not 0 < rate < 1):
            raise InputError(f"finetune learning_rate must be a number in (0, 1), e.g. 1e-3, "
                             f"got {rate!r}")
        return config

    def _face_labels(self, y):
        """The face model's class index of each label (for fine-tuning), or raise."""
        names = self.timeline_class_names
        lower = [name.lower() for name in names]
        out = []
        for label in y:
            if isinstance(label, (int, np.integer)) and 0 <= label < len(names):
                out.append(int(label))
            elif isinstance(label, str) and label.lower() in lower:
                out.append(lower.index(label.lower()))
            else:
                raise InputError(f"finetune trains the face model on its own classes: label "
                                 f"{_plain(label)!r} is neither one of their ids "
                                 f"0..{len(names) - 1} nor one of their names {list(names)}; "
                                 f"relabel the videos or drop finetune")
        return np.array(out, np.int64)

    def _input_sizes(self):
        """(largest side, all gray) over the models that will read the faces."""
        names, c3d, _ = self._config()
        infos = [self._info(n) for n in {self.weights, *names}]
        side = max(int(max(i.input_shape[:2])) for i in infos)
        gray = all(i.color == "gray" for i in infos)
        if c3d is not None:
            side, gray = max(side, int(c3d["size"])), False
        return side, gray

    def face_preprocessor(self):
        """The face stage this recogniser uses, unfitted (a copy: changing it changes nothing).

        ``faces`` when given, else the default: a full detection every 5 frames, faces aligned
        at the largest input side of the models in use (grayscale when they all are gray).
        Change settings with ``rec.set_params(faces=rec.face_preprocessor().set_params(...))``.

        Returns:
            kemo.faces.FacePreprocessor
        """
        from kemo.faces import FacePreprocessor

        if self.faces is not None:
            self._check_params()
            return clone(self.faces)
        side, gray = self._input_sizes()
        return FacePreprocessor(detect_every=5, out_size=side, grayscale=gray)

    def _preprocessor(self):
        """The fitted FacePreprocessor (rebuilt when the settings changed)."""
        prep = self.face_preprocessor()
        current = getattr(self, "faces_", None)
        if current is None or current.get_params() != prep.get_params():
            self.faces_ = prep.fit()
        return self.faces_

    def _classifier(self):
        if "face_model_" in self.__dict__:  # fine-tuned by fit: this recogniser's own
            return self.face_model_
        return _face_classifier(self.weights, bool(self.flip), int(self.batch_size),
                                _file_stamp(self.weights))

    def _info(self, name):
        """The WeightsInfo of a registered name, or of the face model file ``weights``."""
        from kemo import weights as registry

        if name == self.weights and registry.model_file(name) is not None:
            return self._classifier().info_  # a file tells its input size once loaded
        return registry.get(name)

    # ------------------------------------------------------------------ faces and features

    def _find_faces(self, X, select=None, errors=None):
        """Faces of every video: ``(list of VideoFaces or None for failures, failures)``."""
        from tqdm.auto import tqdm

        from kemo import parallel
        from kemo.faces import NoFaceWarning, VideoFaces

        videos = _check_video_list(X)
        prep = None
        if not all(isinstance(v, VideoFaces) for v in videos):
            prep = self._preprocessor()
            if select is not None and select != prep.select:
                prep = clone(prep).set_params(select=select).fit()
        # on a Dask cluster (kemo.parallel.using) the workers find the faces; the loop below
        # then reports and raises as in a serial run
        remote = None if prep is None else parallel.find_faces(
            prep, {i: v for i, v in enumerate(videos) if not isinstance(v, VideoFaces)})
        results, failures = [], []
        for i, video in enumerate(tqdm(videos, desc="videos", unit="video",
                                       disable=not self.verbose)):
            name = _name_of(video, i)
            try:
                if isinstance(video, VideoFaces):
                    found = video
                elif remote is not None:
                    found = remote.pop(i)
                    if isinstance(found, BaseException):
                        raise found
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
            except _SKIPPABLE as exc:
                if (errors or self.errors) == "raise":
                    raise
                source = None if isinstance(video, np.ndarray) else str(
                    getattr(video, "source", video))
                failures.append(VideoFailure(i, source, one_line(exc), type(exc).__name__))
                found = None
            results.append(found)
        return results, failures

    def _record_failures(self, failures, total):
        self.failures_ = failures
        if failures:
            listed = "; ".join(f"{one_line(f.error, f.source or f'video {f.index}')} ({f.kind})"
                               for f in failures[:5])
            more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
            warnings.warn(f"{len(failures)} of {total} videos failed and were skipped: "
                          f"{listed}{more}", RuntimeWarning, stacklevel=3)

    def _frame_features(self, found_list, known=None):
        """Per video, ``{network name: (n, D) features}`` of its faces.

        The faces of all videos go through each network together (full batches, one forward
        pass per network instead of one per video), then are split back per video. ``known``
        (``{network name: per-video features}``) gives features computed already.
        """
        from kemo import weights as registry

        names, _, _ = self._config()
        out = [{} for _ in found_list]
        for name in names:
            if known is not None and name in known:
                per_video = known[name]
            elif name == self.weights and "face_model_" in self.__dict__:  # fine-tuned
                per_video = _batched(self.face_model_.transform, [f.faces for f in found_list])
            elif registry.model_file(name) is not None or _is_face_classifier(registry.get(name)):
                # the same cached classifier as _classifier() when name is the face model
                model = _face_classifier(name, bool(self.flip), int(self.batch_size),
                                         _file_stamp(name))
                per_video = _batched(model.transform, [f.faces for f in found_list])
            else:
                extractor = _frame_extractor(name, int(self.batch_size))
                per_video = extractor.transform([f.faces for f in found_list])
            for features, result in zip(per_video, out, strict=True):
                result[name] = features
        return out

    def frame_features(self, X):
        """Per-frame features of each video, from every network in ``features``.

        Args:
            X: list of videos (paths, frame arrays or VideoFaces).

        Returns:
            list: per video, ``{network name: float32 (n_faces, D)}``; ``None`` for a video
            that failed (``errors="skip"``; see ``failures_``).

        Raises:
            InputError, kemo.errors.VideoReadError, NoFaceError: with ``errors="raise"``.
        """
        found, failures = self._find_faces(X)
        self._record_failures(failures, len(found))
        ok = [f for f in found if f is not None]
        features = iter(self._frame_features(ok) if ok else [])
        return [None if f is None else next(features) for f in found]

    def _views(self, found_list, known=None):
        """Each branch's input for a list of VideoFaces: ``{branch: array}``.

        ``known``: frame features computed already (see :meth:`_frame_features`).
        """
        from kemo.aggregation import Aggregator
        from kemo.temporal import to_sequences

        names, c3d, lstm = self._config()
        feats = self._frame_features(found_list, known)
        views = {"agg": Aggregator().fit_transform([[f[n] for f in feats] for n in names])}
        if c3d is not None:
            clips = self._c3d_extractor(c3d).transform([found.faces for found in found_list])
            views["c3d"] = np.stack([windows.mean(axis=0) for windows in clips])
        if lstm is not None:
            # padded to a fixed length for Views; the classifier L2-normalises the frames
            views["lstm"] = to_sequences([f[names[0]] for f in feats], lstm["frames"],
                                         normalize=None)
        return views

    def _c3d_extractor(self, c3d, weights_file=None, seed=None):
        """The C3D branch's ``fc6`` extractor, built once.

        Random weights (no pretrained C3D can be downloaded offline) are built from an integer
        seed: ``seed`` when loading, else one drawn from ``random_state``. It is kept in
        ``c3d_seed_``, so that :meth:`save` stores the seed, not the weights. Folders saved
        before hold the weights themselves: ``weights_file`` (``c3d_seed_`` is then None).
        """
        from kemo._seeds import integer_seed
        from kemo.models import C3D
        from kemo.models.c3d import CLIP_LENGTH
        from kemo.temporal import ClipFeatureExtractor

        if getattr(self, "c3d_features_", None) is None:
            size, name = int(c3d["size"]), c3d["weights"]
            seed = integer_seed(self.random_state) if seed is None else int(seed)
            model = None if name is None else functools.partial(
                C3D, weights=name, input_shape=(CLIP_LENGTH, size, size, 3))
            extractor = ClipFeatureExtractor(
                model, size=size, stride=int(c3d["stride"]),
                preprocess=_unit_range if name is None else name,
                random_state=seed).fit()
            if weights_file is not None:
                extractor.feature_model_.load_weights(weights_file)
            self.c3d_features_ = extractor
            self.c3d_seed_ = None if weights_file is not None else seed
        return self.c3d_features_

    def _lstm_classifier(self, lstm):
        """The LSTM branch's (unfitted) classifier for the ``lstm`` settings."""
        from kemo.temporal import SequenceClassifier

        return SequenceClassifier(
            frames=lstm["frames"], units=lstm["units"], num_layers=lstm["layers"],
            dropout=lstm["dropout"], epochs=lstm["epochs"], batch_size=lstm["batch_size"],
            learning_rate=lstm["learning_rate"], random_state=self.random_state)

    # ------------------------------------------------------------------ training

    def fit(self, X, y, groups=None):
        """Train the recogniser on labelled videos.

        Args:
            X: list of videos (paths, frame arrays or VideoFaces).
            y: one label per video (e.g. FER ids 0..6, or names).
            groups: group of each video (e.g. subject ids): the folds of the SVMs'
                calibration and of ``fusion_weights="search"`` then keep each group on one
                side (subject-independent).

        Returns:
            VideoEmotionRecognizer: self, trained.

        Raises:
            InputError: bad parameters or labels, too few videos per class for the
                calibration folds, or (``errors="raise"``) a bad video.
            NoFaceError, kemo.errors.VideoReadError: a video without face or unreadable, with
                ``errors="raise"``.
        """
        from kemo.classifiers import LinearSVMClassifier
        from kemo.fusion import FusionClassifier, Views

        names, c3d, lstm = self._check_params()
        videos = _check_video_list(X)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(videos):
            raise InputError(f"y must hold one label per video: {len(videos)} videos, y of "
                             f"shape {y.shape}")
        check_classification_targets(y)
        groups = None if groups is None else np.asarray(groups)
        if groups is not None and groups.shape != y.shape:
            raise InputError(f"groups must hold one group per video, got shape {groups.shape}")
        for name in ("members_", "c3d_features_", "c3d_seed_", "fusion_scores_",
                     "_fitted_config", "face_model_", "finetune_faces_"):
            self.__dict__.pop(name, None)
        self._check_class_counts(y)  # before the minutes face finding takes
        finetune = self._finetune_config()
        face_labels = None if finetune is None else self._face_labels(y)
        found, failures = self._find_faces(videos)
        self._record_failures(failures, len(found))
        keep = np.array([f is not None for f in found], bool)
        found = [f for f in found if f is not None]
        y = y[keep]
        groups = None if groups is None else groups[keep]
        self._check_class_counts(y)  # again: failed videos are left out
        classes = np.unique(y)
        if finetune is not None:  # before the features: they come from the tuned model
            self.face_model_ = self._finetuned_face_model(found, face_labels[keep], finetune)
        views = self._views(found)
        svm = LinearSVMClassifier(C=self.C, calibration=self.calibration, cv=self.cv,
                                  random_state=self.random_state)
        members = [("agg", svm, "agg")]
        if c3d is not None:
            members.append(("c3d", clone(svm), "c3d"))
        if lstm is not None:
            members.append(("lstm", self._lstm_classifier(lstm), "lstm"))
        if len(members) == 1:
            fitted, weights = [svm.fit(views["agg"], y, groups=groups)], np.ones(1)
        else:
            # with groups, the fusion's folds and the SVMs' calibration folds are grouped
            fusion = FusionClassifier(members, weights=self._fusion_weights(members),
                                      cv=self.fusion_cv, random_state=self.random_state)
            fusion.fit(Views(views), y, groups=groups)
            fitted, weights = fusion.estimators_, fusion.weights_
            if hasattr(fusion, "search_results_"):
                self.fusion_scores_ = fusion.search_results_
        self.members_ = [
            (name, _LinearModel.from_estimator(est) if name != "lstm" else est, float(w))
            for (name, _, _), est, w in zip(members, fitted, weights, strict=True)
        ]
        self._fitted_config = (names, c3d, lstm)
        self._classes = classes
        self._class_names = _names_of(classes)
        return self

    def _finetuned_face_model(self, found, labels, config):
        """A copy of the face model trained on the faces of ``found``, each with its video's label.

        Only these videos' faces are read, so a fit on a fold's training side never sees its
        test subjects. The shared, cached face model stays as loaded.
        """
        from kemo._seeds import integer_seed
        from kemo.classifier import FaceEmotionClassifier
        from kemo.features import fit_faces
        from kemo.training import RECIPES, _batchnorm_layers, fit_classifier

        clf = FaceEmotionClassifier(weights=self.weights, flip=bool(self.flip),
                                    batch_size=int(self.batch_size)).fit()
        model, cap = clf.model_, config["faces_per_video"]
        x, y = [], []
        for video, label in zip(found, labels, strict=True):
            rows = np.arange(len(video.faces))
            if cap is not None and len(rows) > cap:  # spread over the video, not its start
                rows = np.unique(np.linspace(0, len(rows) - 1, cap).round().astype(int))
            x.append(clf.info_.preprocess(fit_faces(video.faces[rows], model.input_shape[1:])))
            y.append(np.full(len(rows), label))
        x, y = np.concatenate(x), np.concatenate(y)
        # BatchNorm keeps its FER2013 statistics: batches of a few people's faces would
        # replace them with those of these people (Keras' advice for fine-tuning)
        for layer in _batchnorm_layers(model):
            layer.trainable = False
        recipe = dataclasses.replace(RECIPES["finetune"], learning_rate=config["learning_rate"],
                                     batch_size=config["batch_size"])
        # the trainer reports a validation score each epoch; nothing is chosen by it, so a
        # slice of the training faces serves (no held-out face may be read here)
        fit_classifier(lambda: model, x, y, x[:256], y[:256], recipe=recipe,
                       epochs=config["epochs"], seed=integer_seed(self.random_state),
                       verbose=2 if self.verbose else 0)
        self.finetune_faces_ = len(x)
        return clf

    def _config(self):
        """``(feature names, c3d settings, lstm settings)`` that the branches read.

        Once trained, those of the fit: parameters set after :meth:`fit` take effect at the
        next fit, as in scikit-learn (the trained branches would get features of another width,
        or miss their input).
        """
        checked = self._check_params()
        return self._fitted_config if self.is_trained else checked

    def _check_class_counts(self, y):
        """Raise when ``y`` has a single class, or a class too small for the calibration."""
        classes = np.unique(y)
        if len(classes) < 2:
            raise InputError(f"fit needs videos of at least 2 classes; got "
                             f"{list(_names_of(classes))}")
        short = calibration_shortfall(y, self.calibration, self.cv)
        if short is not None:
            name, count = short
            raise InputError(f"class {name} has {count} video(s), but calibration "
                             f"{self.calibration!r} fits cv={self.cv} folds: give each class "
                             f"at least {self.cv} videos, lower cv (2 at least), or use "
                             f"calibration='softmax' or 'auto'")

    def _fusion_weights(self, members):
        names = [name for name, _, _ in members]
        if self.fusion_weights is None:
            return [PAPER_WEIGHTS[name] for name in names]
        if isinstance(self.fusion_weights, str):
            if self.fusion_weights != "search":
                raise InputError(f"fusion_weights must be None, a list or 'search', got "
                                 f"{self.fusion_weights!r}")
            return "search"
        weights = list(self.fusion_weights)
        if len(weights) != len(names):
            raise InputError(f"fusion_weights has {len(weights)} values for the branches "
                             f"{names}; give one per branch")
        return weights

    # ------------------------------------------------------------------ prediction

    def _trained_proba(self, found_list, known=None):
        views = self._views(found_list, known)
        total = sum(w for _, _, w in self.members_)
        proba = sum(w * _aligned(model, views[name], self._classes)
                    for name, model, w in self.members_)
        return proba / total

    def predict_proba(self, X):
        """Class probabilities of each video.

        Args:
            X: list of videos (paths, frame arrays or VideoFaces).

        Returns:
            float array ``(n_videos, n_classes)``, columns in the order of ``classes_``; rows
            of videos that failed (``errors="skip"``) are NaN.

        Raises:
            InputError, kemo.errors.VideoReadError, NoFaceError: with ``errors="raise"``.
        """
        found, failures = self._find_faces(X)
        self._record_failures(failures, len(found))
        out = np.full((len(found), len(self.classes_)), np.nan)
        ok = [i for i, f in enumerate(found) if f is not None]
        if ok and self.is_trained:
            out[ok] = self._trained_proba([found[i] for i in ok])
        elif ok:  # pretrained: the frame probabilities pooled
            frames = _batched(self._classifier().predict_proba, [found[i].faces for i in ok])
            out[ok] = [self._pool(p, found[i].frame_indices, _video_fps(found[i].source))
                       for i, p in zip(ok, frames, strict=True)]
        return out

    def _pool(self, frame_proba, frame_indices, fps):
        """A face's video probabilities from its frame probabilities (``pooling``)."""
        from kemo.timeline import pool

        names = self.timeline_class_names
        neutral = names.index("Neutral") if "Neutral" in names else None
        return pool(frame_proba, self.pooling, np.asarray(frame_indices) / fps, neutral)

    def predict(self, X):
        """The most probable class of each video.

        Returns:
            array of labels (from ``classes_``); a failed video (``errors="skip"``) gets -1
            (integer labels) or ``""`` (other labels).
        """
        proba = self.predict_proba(X)
        failed = np.isnan(proba).any(axis=1)
        labels = self.classes_[np.argmax(np.nan_to_num(proba, nan=-1.0), axis=1)]
        if failed.any():
            labels = labels.copy()
            labels[failed] = -1 if np.issubdtype(labels.dtype, np.integer) else ""
        return labels

    def analyze(self, video, tracks="main"):
        """Analyse one video: its emotion, a per-frame timeline, the faces' boxes and segments.

        Each face's segments are the stretches of its smoothed timeline with one emotion
        (:func:`kemo.timeline.find_segments`: start and end in seconds at the video's frame
        rate, emotion, mean probability).

        Args:
            video: a video path, a frame array ``(T, H, W[, C])`` or a VideoFaces.
            tracks: ``"main"``: the main face only: the one face tracked in the most
                frames (:meth:`kemo.faces.VideoFaces.track_rows`), not the largest face of
                each frame; ``"all"``: every face found, the main one first. Either way every
                face is detected (``select="all"``), so a face keeps one track id in both.

        Returns:
            VideoAnalysis.

        Raises:
            InputError: a bad argument.
            kemo.errors.VideoReadError: the video cannot be read.
            NoFaceError: no face in the video.
        """
        from kemo.timeline import find_segments

        if tracks not in ("main", "all"):
            raise InputError(f"tracks must be 'main' or 'all', got {tracks!r}")
        found = self._find_faces([video], select="all", errors="raise")[0][0]
        groups = found.track_rows()
        if tracks == "main":  # only the main face goes through the networks
            found, groups = found.subset(groups[0]), [np.arange(len(groups[0]))]
        classifier = self._classifier()
        if self.is_trained and self.weights in self._config()[0]:
            # one forward pass gives the timeline and the features of the trained branches
            frame_proba, own = classifier.predict_proba_and_transform(found.faces)
        else:
            frame_proba, own = classifier.predict_proba(found.faces), None
        if self.is_trained:  # every track at once: full batches through the other networks
            known = None if own is None else {self.weights: [own[rows] for rows in groups]}
            probas = self._trained_proba([found.subset(rows) for rows in groups], known)
        fps = _video_fps(found.source)
        if not self.is_trained:
            probas = [self._pool(frame_proba[rows], found.frame_indices[rows], fps)
                      for rows in groups]
        results = []
        for rows, proba in zip(groups, probas, strict=True):
            track_id = int(found.track_ids[rows[0]])
            segments = find_segments(frame_proba[rows], found.frame_indices[rows], fps,
                                     self.timeline_class_names)
            results.append(TrackResult(track_id, found.frame_indices[rows], found.boxes[rows],
                                       frame_proba[rows], proba,
                                       self.class_names_[int(np.argmax(proba))],
                                       tuple(segments)))
        main = results[0]
        return VideoAnalysis(source=found.source, class_names=tuple(self.class_names_),
                             probabilities=main.probabilities, label=main.label,
                             frames_read=found.frames_read, faces_found=len(found),
                             tracks=tuple(results),
                             timeline_class_names=self.timeline_class_names, fps=fps)

    def stream(self, source, window=2.0, tracks="all", realtime=False, duration=None,
               fps=None, timeout=10.0):
        """Emotions of the faces of a camera, a network stream or a file, as frames arrive.

        A reader thread feeds a small queue; when the analysis falls behind a live source,
        the oldest waiting frame is dropped and counted, so latency stays that of one frame's
        analysis (see :mod:`kemo.live`). Faces are tracked as in :meth:`analyze` (a full
        detection every ``detect_every`` frames of the face stage), scored by the face model
        (``weights``) and each track's probabilities are pooled over the last ``window``
        seconds as a whole video is (``pooling``). A trained recogniser's branches need whole
        videos, so the live labels are always the face model's (``timeline_class_names``).

        Args:
            source: a camera index (``0``), a video file, a URL OpenCV's FFmpeg reads
                (``rtsp://``, ``http://`` MJPEG...), or an iterable of frames (RGB uint8).
            window: seconds of each face's past pooled into its label (0: the frame alone).
            tracks: ``"all"`` faces, or ``"main"``: the face stage's one face per frame.
            realtime: pace a file or an iterable at its frame rate, as a camera delivers
                frames (and drop frames when behind); else every frame is analysed, as fast as
                it can be. Cameras and network streams are always live.
            duration: stop after this many seconds of the stream (None: at its end).
            fps: frame rate of an iterable of frames (default 30).
            timeout: seconds to wait for a network stream to open, then for each frame.

        Returns:
            kemo.live.LiveStream: an iterator of :class:`kemo.live.LiveResult` (use it in a
            ``with`` block, or call its ``close``); its ``summary()`` gives frames read,
            analysed and dropped and the latency.

        Raises:
            InputError: a bad argument.
            kemo.errors.VideoReadError: the camera, stream or file cannot be opened (a
                one-line message naming it).

        Example:
            >>> rec = VideoEmotionRecognizer()
            >>> with rec.stream(0, window=2.0) as live:  # doctest: +SKIP
            ...     for result in live:
            ...         print(result.t, [(f.track_id, f.label) for f in result.faces])
        """
        from kemo.live import LiveStream

        return LiveStream(self, source, window=window, tracks=tracks, realtime=realtime,
                          duration=duration, fps=fps, timeout=timeout)

    # ------------------------------------------------------------------ saving

    def save(self, path):
        """Save the recogniser to a folder of plain files, atomically.

        The folder holds ``kemo_model.json`` (format version, parameters, classes, fusion
        weights, the sha256 of every other file, and a checksum of itself), one ``.npz`` of
        arrays per SVM branch (coefficients, intercepts, calibration), and Keras
        ``.weights.h5`` files for the trained LSTM and a face model fine-tuned by :meth:`fit`
        (``face_model_finetuned.weights.h5``). A randomly initialised C3D is not trained, so
        only its seed and the sha256 of its weights are stored (``"c3d_random"``): loading
        rebuilds the weights (245 MB at size 112) and checks them. Folders saved with its
        weights (``c3d.weights.h5``, older kemo) still load. Pretrained
        networks are referred to by their registered weights name; a face model given as a
        file (``weights=PATH``) is copied into the folder (``face_model.weights.h5`` or
        ``face_model.keras``), so the folder is complete and its sha256 is recorded with the
        others. Nothing is pickled. The
        folder is written under a temporary name and renamed; an existing kemo model folder of
        the same name is replaced.

        Args:
            path: the model folder.

        Returns:
            pathlib.Path: the folder.

        Raises:
            InputError: ``path`` exists and is not a kemo model folder, or ``features``,
                ``c3d`` or ``lstm`` changed since :meth:`fit`.
        """
        from kemo import weights as registry

        _, c3d, lstm = self._config()
        if self.is_trained and self._check_params() != self._fitted_config:
            # the folder's parameters would describe another model than the trained one
            raise InputError("features, c3d or lstm were changed after fit: set them back to "
                             "the values of the fit, or fit again, before saving")
        path = check_save_folder(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp"))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a model folder is not
        try:
            manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                        "params": _params_to_json(self), "trained": self.is_trained,
                        "files": {}}
            face_model = registry.model_file(self.weights)
            if face_model is not None:
                local = "face_model" + next(e for e in registry.MODEL_FILE_SUFFIXES
                                            if face_model.name.endswith(e))
                shutil.copyfile(face_model, tmp / local)
                manifest["params"] = _renamed_weights(manifest["params"], self.weights, local)
                manifest["weights_file"] = local
            if self.is_trained:
                manifest["classes"] = [_plain(c) for c in self._classes]
                manifest["class_names"] = list(self._class_names)
                manifest["members"] = []
                for name, model, weight in self.members_:
                    item = {"name": name, "weight": weight}
                    if isinstance(model, _LinearModel):
                        item["file"] = f"{name}.npz"
                        with open(tmp / item["file"], "wb") as file:
                            np.savez(file, **model.to_arrays())
                    else:
                        item["file"] = f"{name}.weights.h5"
                        item["input_shape"] = list(model.model_.input_shape[1:])
                        model.model_.save_weights(tmp / item["file"])
                    manifest["members"].append(item)
                if "face_model_" in self.__dict__:  # float32, so loading predicts the same
                    self.face_model_.model_.save_weights(tmp / FINETUNED_FILE)
                    manifest["finetuned_face_model"] = FINETUNED_FILE
                if c3d is not None and c3d["weights"] is None:
                    extractor = self._c3d_extractor(c3d)
                    if self.c3d_seed_ is None:  # loaded from an old folder: no seed known
                        extractor.feature_model_.save_weights(tmp / C3D_FILE)
                    else:
                        manifest["c3d_random"] = _c3d_random(self.c3d_seed_, extractor)
            for file in sorted(tmp.iterdir()):
                manifest["files"][file.name] = _sha256(file)
            manifest["checksum"] = _checksum(manifest)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
            if path.exists():
                old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old"))
                os.replace(path, old / path.name)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path):
        """Load a recogniser saved by :meth:`save`, checking every file.

        Only JSON, ``.npz`` (read with ``allow_pickle=False``) and Keras ``.weights.h5`` files
        are read, so a model folder from elsewhere cannot run code; still, its predictions are
        only as good as its source.

        Args:
            path: the model folder.

        Returns:
            VideoEmotionRecognizer.

        Raises:
            kemo.errors.WeightsError: no model folder there, a file missing, modified or
                corrupt (sha256 or checksum mismatch), or another format version.
        """
        path = Path(path)
        manifest_file = check_model_folder(path)
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
            checksum = manifest.pop("checksum")
        except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
            raise WeightsError(f"{manifest_file}: corrupt model description ({exc})") from exc
        if checksum != _checksum(manifest):
            raise WeightsError(f"{manifest_file}: checksum mismatch; the file was modified "
                               f"or damaged after saving. Save the model again.")
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise WeightsError(f"{path}: model format {manifest.get('format')!r} version "
                               f"{manifest.get('format_version')!r}; this kemo reads {FORMAT!r} "
                               f"version {FORMAT_VERSION}")
        for name, expected in manifest["files"].items():
            file = path / name
            if Path(name).name != name or not file.is_file():
                raise WeightsError(f"{path}: file {name!r} listed in {MANIFEST} is missing")
            actual = _sha256(file)
            if actual != expected:
                raise WeightsError(f"{file}: sha256 mismatch: expected {expected}, got "
                                   f"{actual}. The file was modified or damaged; save the "
                                   f"model again.")
        params = manifest["params"]
        local = manifest.get("weights_file")
        if local is not None:  # the face model file saved in the folder (checked above)
            if local not in manifest["files"]:
                raise WeightsError(f"{path}: {MANIFEST} names a face model file {local!r} it "
                                   f"does not list")
            params = _renamed_weights(params, local, str(path / local))
        try:
            rec = cls(**_params_from_json(params))
            _, c3d, lstm = rec._check_params()
            if manifest["trained"]:
                rec._load_members(path, manifest, c3d, lstm)
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"{path}: the model folder does not describe a valid "
                               f"recogniser ({type(exc).__name__}: {exc})") from exc
        return rec

    def _load_members(self, path, manifest, c3d, lstm):
        classes = np.asarray(manifest["classes"])
        members = []
        for item in manifest["members"]:
            file = path / item["file"]
            if item["name"] == "lstm":
                model = self._lstm_classifier(lstm)._restore(
                    classes, int(item["input_shape"][-1]), file)
            else:
                with np.load(file, allow_pickle=False) as data:
                    model = _LinearModel.from_arrays(dict(data), classes)
            members.append((item["name"], model, float(item["weight"])))
        stored = manifest.get("c3d_random")
        if c3d is not None and c3d["weights"] is None and stored is not None:
            built = _c3d_random(stored["seed"], self._c3d_extractor(c3d, seed=stored["seed"]))
            if built["sha256"] != stored["sha256"]:
                raise WeightsError(
                    f"{path}: the C3D weights rebuilt from seed {stored['seed']} differ from "
                    f"the ones the model was trained with (built by Keras "
                    f"{stored.get('keras')} on {stored.get('backend')}; this is Keras "
                    f"{built['keras']} on {built['backend']}): load it with those")
        elif c3d is not None:  # pretrained weights, or random ones saved in the folder
            self._c3d_extractor(c3d, path / C3D_FILE if c3d["weights"] is None else None)
        tuned = manifest.get("finetuned_face_model")
        if tuned is not None:  # the face model as fit left it (its sha256 checked by load)
            if tuned not in manifest["files"]:
                raise WeightsError(f"{path}: {MANIFEST} names a fine-tuned face model "
                                   f"{tuned!r} it does not list")
            from kemo.classifier import FaceEmotionClassifier

            clf = FaceEmotionClassifier(weights=self.weights, flip=bool(self.flip),
                                        batch_size=int(self.batch_size)).fit()
            clf.model_.load_weights(path / tuned)
            self.face_model_ = clf
        self._fitted_config = self._check_params()
        self.members_ = members
        self._classes = classes
        self._class_names = tuple(manifest["class_names"])


# ----------------------------------------------------------------------------- helpers


def _c3d_random(seed, extractor):
    """What rebuilds a random C3D and checks it.

    Its seed, the sha256 of its weights, and the Keras version and backend that built them (a
    rebuild elsewhere may draw other numbers).
    """
    import keras

    digest = hashlib.sha256()
    for array in extractor.feature_model_.get_weights():
        digest.update(np.ascontiguousarray(array, np.float32).tobytes())
    return {"seed": int(seed), "sha256": digest.hexdigest(), "keras": keras.__version__,
            "backend": keras.backend.backend()}


def _check_weights_name(what, name, registry):
    if not isinstance(name, str) or name not in registry.names():
        raise InputError(f"{what}: {name!r} is not a registered weights name; registered: "
                         f"{list(registry.names())} (register a file with "
                         f"kemo.weights.register_file; weights= also takes the path of a face "
                         f"model file, e.g. the {registry.RUN_EXPORT} of `kemo train fer2013`)")


def _file_stamp(weights):
    """Identity of a model file (path, modification time, size), or None for a name."""
    from kemo import weights as registry

    path = registry.model_file(weights)
    if path is None:
        return None
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


def calibration_shortfall(y, calibration, cv):
    """The class too small for a cross-validated calibration, and its number of videos.

    ``"sigmoid"`` and ``"isotonic"`` calibrations fit ``cv`` folds, so every class needs ``cv``
    videos (``"softmax"`` and ``"auto"`` need none; see
    :class:`kemo.classifiers.LinearSVMClassifier`).

    Args:
        y: the labels.
        calibration: the SVM calibration.
        cv: its number of folds.

    Returns:
        ``(class name, count)`` of the smallest class when it has fewer than ``cv`` videos,
        else None.
    """
    if calibration not in ("sigmoid", "isotonic") or not isinstance(cv, (int, np.integer)):
        return None
    classes, counts = np.unique(np.asarray(y), return_counts=True)
    if len(counts) == 0 or counts.min() >= cv:
        return None
    return _names_of(classes)[int(np.argmin(counts))], int(counts.min())


def _is_face_classifier(info):
    """Whether registered weights are a face classifier: features from its ``fc1``."""
    return info.architecture == "ResNet10" and bool(info.classes)


def _check_positive(what, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{what} must be an integer >= {minimum}, got {value!r}")


def _branch_config(name, value, defaults):
    """None/False -> None; True -> defaults; a dict -> defaults updated (unknown keys raise)."""
    if value is None or value is False:
        return None
    if value is True:
        return dict(defaults)
    if not isinstance(value, dict):
        raise InputError(f"{name} must be None, True or a dict of settings, got {value!r}")
    unknown = sorted(set(value) - set(defaults))
    if unknown:
        raise InputError(f"{name}: unknown setting(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **value}


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


def _names_of(classes):
    from kemo.datasets import CLASS_NAMES

    ints = all(isinstance(c, (int, np.integer)) for c in classes)
    if ints and all(0 <= c < len(CLASS_NAMES) for c in classes):
        return tuple(CLASS_NAMES[int(c)] for c in classes)
    return tuple(str(c) for c in classes)


def _batched(function, stacks):
    """``function`` of the face stacks laid end to end, split back per stack.

    One call for all stacks when they share a face shape (full batches); else one per stack.
    """
    if len({stack.shape[1:] for stack in stacks}) > 1:
        return [function(stack) for stack in stacks]
    rows = function(np.concatenate(stacks))
    return np.split(rows, np.cumsum([len(stack) for stack in stacks])[:-1])


def _video_fps(source):
    """Frame rate of a video file; 30 for an array, or a file that reports none or is gone.

    Opening the file decodes its first frame only. A cached VideoFaces may outlive its file,
    so a file that cannot be opened gives the default too.
    """
    from kemo.timeline import DEFAULT_FPS
    from kemo.video import Video

    if source is None:
        return DEFAULT_FPS
    try:
        with Video(source) as video:
            return video.fps or DEFAULT_FPS
    except (KemoError, OSError):
        return DEFAULT_FPS


def _unit_range(x):
    """Pixel values 0..255 to 0..1: the input of a C3D with random weights."""
    return x / 255.0


def _aligned(model, X, classes):
    """``model.predict_proba(X)`` with columns reordered to ``classes``."""
    proba = model.predict_proba(X)
    out = np.zeros((len(proba), len(classes)))
    out[:, np.searchsorted(classes, model.classes_)] = proba
    return out


def _plain(value):
    """JSON-friendly Python value of a numpy scalar / tuple."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _params_to_json(rec):
    # errors and verbose are how a run behaves, not part of the model.
    params = {k: _plain(v) for k, v in rec.get_params(deep=False).items()
              if k not in ("faces", "errors", "verbose")}
    if rec.faces is not None:
        faces = {k: _plain(v) for k, v in rec.faces.get_params(deep=False).items()}
        faces["cache_dir"] = None  # a folder of this machine, not part of the model
        faces.pop("verbose", None)  # progress bars: how a run looks
        params["faces"] = faces
    else:
        params["faces"] = None
    try:
        json.dumps(params)
    except TypeError as exc:
        raise InputError(f"save: a parameter cannot be written as JSON ({exc}); use plain "
                         f"values (names, numbers, lists, dicts)") from exc
    return params


def _renamed_weights(params, old, new):
    """``params`` (JSON form) with the face model ``old`` called ``new`` (also in features)."""
    params = {**params, "weights": new}
    if params.get("features") is not None:
        params["features"] = [new if name == old else name for name in params["features"]]
    return params


def check_save_folder(path):
    """Return ``path`` as a Path if a model may be saved there (absent, empty or a model).

    Raises:
        InputError: ``path`` exists and is something else, which saving would replace.
    """
    path = Path(path)
    if path.exists() and not (path.is_dir() and ((path / MANIFEST).is_file()
                                                 or not any(path.iterdir()))):
        raise InputError(f"{path} exists and is not a kemo model folder; choose another "
                         f"path or remove it")
    return path


def check_model_folder(path):
    """Return the description file of a saved model folder, or raise saying what ``path`` is.

    Raises:
        kemo.errors.WeightsError: no model folder at ``path``; the message says how to use a
            face model training run (``kemo train fer2013``) found there instead.
    """
    from kemo import weights as registry

    path = Path(path)
    manifest_file = path / MANIFEST
    if manifest_file.is_file():
        return manifest_file
    if not path.is_dir():
        raise WeightsError(f"{path}: no such model folder (save one with "
                           f"VideoEmotionRecognizer.save or `kemo train videos`)")
    trained = path / registry.RUN_EXPORT
    if trained.is_file():
        raise WeightsError(f"{path}: a face model training run (`kemo train fer2013`), not a "
                           f"kemo model folder; use its model with --weights {trained} (from "
                           f"Python: VideoEmotionRecognizer(weights={str(trained)!r}))")
    raise WeightsError(f"{path}: not a kemo model folder (no {MANIFEST}); save one "
                       f"with VideoEmotionRecognizer.save or `kemo train videos`")


def _params_from_json(params):
    params = dict(params)
    if params.get("faces") is not None:
        from kemo.faces import FacePreprocessor

        faces = dict(params["faces"])
        if faces.get("thresholds") is not None:
            faces["thresholds"] = tuple(faces["thresholds"])
        params["faces"] = FacePreprocessor(**faces)
    if isinstance(params.get("features"), list):
        params["features"] = tuple(params["features"])
    return params


def _checksum(manifest):
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _sha256(path):
    from kemo.weights import sha256

    return sha256(path)
