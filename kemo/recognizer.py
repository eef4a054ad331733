"""The end-to-end video emotion recogniser: videos in, emotions out.

:class:`VideoEmotionRecognizer` chains the whole pipeline of the paper behind one scikit-learn
classifier::

    video -> faces (FacePreprocessor) -> frame features -> Aggregator -> linear SVM
                                      -> C3D clip features -> linear SVM  (optional)
                                      -> feature sequences -> BiResidualLSTM  (optional)
                                                               -> weighted fusion of probabilities

Two modes:

* pretrained (never fitted): kemo's shipped FER2013 face model scores every face, and a video's
  probabilities are the mean of its frame probabilities. It works offline with no training.
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
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.multiclass import check_classification_targets

from kemo.errors import InputError, KemoError, NoFaceError, WeightsError

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
#: Name of the description file in a saved model folder.
MANIFEST = "kemo_model.json"
FORMAT = "kemo.VideoEmotionRecognizer"
FORMAT_VERSION = 1

# Frame-feature tap of each architecture (the paper: VGG-Face fc6, ResNet-10 fc1).
_TAPS = {"VGGFace": "fc6", "ResNet10": "fc1"}
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
    """

    track_id: int
    frame_indices: np.ndarray
    boxes: np.ndarray
    frame_probabilities: np.ndarray
    probabilities: np.ndarray
    label: str


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
    """

    source: str | None
    class_names: tuple
    probabilities: np.ndarray
    label: str
    frames_read: int
    faces_found: int
    tracks: tuple
    timeline_class_names: tuple

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
            timeline: include the frame indices, boxes and per-frame probabilities of each track.

        Returns:
            dict with ``path``, ``label``, ``probabilities`` ({class: p}), ``frames_read``,
            ``faces_found`` and ``tracks`` (a list of the same per face).
        """

        def probs(values, names):
            return {name: round(float(p), 6) for name, p in zip(names, values, strict=True)}

        tracks = []
        for track in self.tracks:
            item = {"track": track.track_id, "label": track.label, "frames": len(track.boxes),
                    "probabilities": probs(track.probabilities, self.class_names)}
            if timeline:
                item["timeline"] = [
                    {"frame": int(f), "box": [round(float(v), 2) for v in box],
                     "probabilities": probs(p, self.timeline_class_names)}
                    for f, box, p in zip(track.frame_indices, track.boxes,
                                         track.frame_probabilities, strict=True)
                ]
            tracks.append(item)
        return {"path": self.source, "label": self.label,
                "probabilities": probs(self.probabilities, self.class_names),
                "frames_read": self.frames_read, "faces_found": self.faces_found,
                "tracks": tracks}

    def annotate(self, path, fps=None):
        """Write a copy of the video with each face's box and emotion drawn on it.

        Every frame of the source is written; a face gets its box and the top emotion of that
        frame, and the video's label is written in the top-left corner. The file is written
        under a temporary name and renamed, so a half-written file never has the final name.

        Args:
            path: output file (``.mp4``, ``.avi``...; see :func:`kemo.video.write_video`).
            fps: frame rate; default: the source's (30 when it reports none).

        Returns:
            pathlib.Path: the written file.

        Raises:
            InputError: the analysis came from a frame array, not a file.
            kemo.errors.VideoReadError, kemo.errors.VideoWriteError: reading or writing failed.
        """
        import cv2

        from kemo.video import Video, write_video

        if self.source is None:
            raise InputError("annotate needs the video file; this analysis came from an array")
        path = Path(path)
        marks = {}
        for track in self.tracks:
            for frame, box, p in zip(track.frame_indices, track.boxes,
                                     track.frame_probabilities, strict=True):
                name = self.timeline_class_names[int(np.argmax(p))]
                marks.setdefault(int(frame), []).append((box, f"{name} {p.max():.2f}"))

        def frames(video):
            for index, frame in video.frames():
                image = np.ascontiguousarray(frame)
                for (x, y, w, h), text in marks.get(index, ()):
                    top_left, bottom_right = (int(x), int(y)), (int(x + w), int(y + h))
                    cv2.rectangle(image, top_left, bottom_right, (0, 255, 0), 2)
                    cv2.putText(image, text, (int(x), max(12, int(y) - 6)),
                                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1, cv2.LINE_AA)
                cv2.putText(image, self.label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                            (255, 255, 0), 2, cv2.LINE_AA)
                yield image

        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        try:
            with Video(self.source) as video:
                write_video(tmp, frames(video), fps=fps or video.fps or 30.0)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
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
        if svm.calibration == "softmax":
            est = svm.estimator_
            fold = {"coef": est.coef_, "intercept": est.intercept_,
                    "columns": np.arange(len(classes))}
            return cls(classes, "softmax", [fold])
        folds = []
        for calibrated in svm.estimator_.calibrated_classifiers_:
            est = calibrated.estimator
            fold = {"coef": est.coef_, "intercept": est.intercept_,
                    "columns": np.searchsorted(classes, est.classes_)}
            if svm.calibration == "sigmoid":
                fold["a"] = np.array([c.a_ for c in calibrated.calibrators], np.float64)
                fold["b"] = np.array([c.b_ for c in calibrated.calibrators], np.float64)
            else:
                for k, c in enumerate(calibrated.calibrators):
                    fold[f"x{k}"] = np.asarray(c.X_thresholds_, np.float64)
                    fold[f"y{k}"] = np.asarray(c.y_thresholds_, np.float64)
            folds.append(fold)
        return cls(classes, svm.calibration, folds)

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


@functools.lru_cache(maxsize=8)
def _face_classifier(weights, flip, batch_size):
    """A loaded FaceEmotionClassifier, shared by recognisers (inference never changes it)."""
    from kemo.classifier import FaceEmotionClassifier

    return FaceEmotionClassifier(weights=weights, flip=flip, batch_size=batch_size).fit()


@functools.lru_cache(maxsize=4)
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
    gives the 7 emotion probabilities of every face found, and a video's probabilities are the
    **mean of its frame probabilities** (mean pooling: every frame counts the same, which is
    robust to single misclassified frames; a neutral start of a clip pulls it toward Neutral).

    :meth:`fit` trains the paper's pipeline on labelled videos: per-frame features of every
    network in ``features`` (e.g. ResNet-10 ``fc1`` 512-d, VGG-Face ``fc6`` 4096-d), aggregated
    per video (signed square root, L2, mean and variance: :class:`kemo.Aggregator`), then a
    one-vs-rest linear SVM with calibrated probabilities. With ``c3d`` and/or ``lstm``, those
    branches are trained too and the class probabilities are fused (weights 0.5 / 0.25 / 0.25
    as in the paper, given weights, or searched on cross-validated predictions).

    Inputs: every method taking videos accepts a list whose items are video paths, frame
    arrays ``(T, H, W[, C])``, or :class:`kemo.faces.VideoFaces` (faces already found, e.g.
    to run face detection once for many cross-validation folds).

    Args:
        weights: registered weights of the pretrained face classifier (default: the shipped
            FER2013 ResNet-10); it scores frames in pretrained mode and for the timeline.
        features: registered weights names whose frame features are aggregated for the SVM
            (ResNet-10 entries give ``fc1``, VGG-Face entries ``fc6``); None: ``(weights,)``.
        faces: a :class:`kemo.faces.FacePreprocessor`; None builds one that tracks faces with
            a full detection every 5 frames (``detect_every=5``: the same faces as per-frame
            detection on the CK+ clips at a third of the cost) and aligns them at the largest
            input size the models need (grayscale when all of them are gray).
        C: SVM regularisation.
        calibration: SVM probabilities: ``"sigmoid"``, ``"isotonic"`` (cross-validated with
            ``cv`` folds; every class needs ``cv`` videos) or ``"softmax"``.
        cv: calibration folds.
        c3d: None/False for no C3D branch; True or a dict overriding :data:`C3D_DEFAULTS`
            (``weights``: None for seeded random weights, saved with the model, about 240 MB
            at size 112; or ``"c3d_sports1m"``; ``size``: face side; ``stride``: frames
            between 16-frame windows).
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
        batch_size: faces per forward pass.
        errors: ``"raise"``: a video that cannot be read or has no face raises; ``"skip"``:
            it is left out of training, gets NaN probabilities in prediction, and is listed in
            ``failures_`` (a warning says how many failed).
        random_state: seed of the SVM, the LSTM and the random C3D weights.
        verbose: progress bars over videos.

    Attributes:
        classes_: the labels (pretrained: ``0..6``, the FER2013 ids).
        class_names_: their names.
        is_trained: whether :meth:`fit` (or :meth:`load` of a trained model) ran.
        faces_: the fitted FacePreprocessor.
        members_: trained: ``[(name, model, weight)]``, the branches and their fusion weights.
        fusion_scores_: with ``fusion_weights="search"``: the out-of-fold scores.
        failures_: :class:`VideoFailure` of the videos skipped by the last call.

    Example:
        >>> rec = VideoEmotionRecognizer()                     # pretrained, offline
        >>> rec.predict_proba(["clip.avi"]).round(2)  # doctest: +SKIP
        >>> result = rec.analyze("party.mp4", tracks="all")  # doctest: +SKIP
        >>> rec = VideoEmotionRecognizer(lstm=True).fit(paths, labels)  # doctest: +SKIP
        >>> rec.save("my_model")  # doctest: +SKIP
        >>> VideoEmotionRecognizer.load("my_model").predict(paths)  # doctest: +SKIP
    """

    def __init__(self, weights="fer2013_resnet10", features=None, faces=None, C=1.0,
                 calibration="sigmoid", cv=3, c3d=None, lstm=None, fusion_weights=None,
                 fusion_cv=5, flip=True, batch_size=256, errors="raise", random_state=0,
                 verbose=False):
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
        from kemo import weights as registry
        from kemo.datasets import CLASS_NAMES

        return tuple(registry.get(self.weights).class_names or CLASS_NAMES)

    # ------------------------------------------------------------------ parameters

    def _check_params(self):
        """Validate the parameters; return ``(feature names, c3d config, lstm config)``."""
        from kemo import weights as registry

        if self.errors not in ERROR_MODES:
            raise InputError(f"errors must be one of {ERROR_MODES}, got {self.errors!r}")
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
        if self.faces is not None:
            from kemo.faces import FacePreprocessor

            if not isinstance(self.faces, FacePreprocessor):
                raise InputError(f"faces must be a kemo.faces.FacePreprocessor or None, got "
                                 f"{type(self.faces).__name__}")
        return tuple(names), c3d, lstm

    def _input_sizes(self):
        """(largest side, all gray) over the models that will read the faces."""
        from kemo import weights as registry

        names, c3d, _ = self._check_params()
        infos = [registry.get(n) for n in {self.weights, *names}]
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
        return _face_classifier(self.weights, bool(self.flip), int(self.batch_size))

    # ------------------------------------------------------------------ faces and features

    def _find_faces(self, X, select=None, errors=None):
        """Faces of every video: ``(list of VideoFaces or None for failures, failures)``."""
        from tqdm.auto import tqdm

        from kemo.faces import NoFaceWarning, VideoFaces

        videos = _check_video_list(X)
        prep = None
        if not all(isinstance(v, VideoFaces) for v in videos):
            prep = self._preprocessor()
            if select is not None and select != prep.select:
                prep = clone(prep).set_params(select=select).fit()
        results, failures = [], []
        for i, video in enumerate(tqdm(videos, desc="videos", unit="video",
                                       disable=not self.verbose)):
            name = _name_of(video, i)
            try:
                if isinstance(video, VideoFaces):
                    found = video
                else:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", NoFaceWarning)
                        found = prep.transform([video])[0]
                if not found.has_faces:
                    raise NoFaceError(f"{name}: no face found in any of the {found.frames_read} "
                                      f"frames read (faces too small? lower the FacePreprocessor"
                                      f"'s min_face_size)")
            except _SKIPPABLE as exc:
                if (errors or self.errors) == "raise":
                    raise
                source = None if isinstance(video, np.ndarray) else str(
                    getattr(video, "source", video))
                failures.append(VideoFailure(i, source, _one_line(exc), type(exc).__name__))
                found = None
            results.append(found)
        return results, failures

    def _record_failures(self, failures, total):
        self.failures_ = failures
        if failures:
            listed = "; ".join(f"{f.source or f'video {f.index}'}: {f.kind}: {f.error}"
                               for f in failures[:5])
            more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
            warnings.warn(f"{len(failures)} of {total} videos failed and were skipped: "
                          f"{listed}{more}", RuntimeWarning, stacklevel=3)

    def _frame_features(self, found_list):
        """Per video, ``{network name: (n, D) features}`` of its faces.

        The faces of all videos go through each network together (full batches, one forward
        pass per network instead of one per video), then are split back per video.
        """
        from kemo import weights as registry

        names, _, _ = self._check_params()
        out = [{} for _ in found_list]
        for name in names:
            info = registry.get(name)
            if info.architecture == "ResNet10" and info.classes:
                model = _face_classifier(name, bool(self.flip), int(self.batch_size))
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

    def _views(self, found_list, c3d, lstm):
        """Each branch's input for a list of VideoFaces: ``{branch: array}``."""
        from kemo.aggregation import Aggregator
        from kemo.temporal import to_sequences

        names, _, _ = self._check_params()
        feats = self._frame_features(found_list)
        views = {"agg": Aggregator().fit_transform([[f[n] for f in feats] for n in names])}
        if c3d is not None:
            clips = self._c3d_extractor(c3d).transform([found.faces for found in found_list])
            views["c3d"] = np.stack([windows.mean(axis=0) for windows in clips])
        if lstm is not None:
            # padded to a fixed length for Views; the classifier L2-normalises the frames
            views["lstm"] = to_sequences([f[names[0]] for f in feats], lstm["frames"],
                                         normalize=None)
        return views

    def _c3d_extractor(self, c3d, weights_file=None):
        """The C3D branch's ``fc6`` extractor, built once.

        Random weights come from ``weights_file`` when loading, else from ``random_state``
        (no pretrained C3D can be downloaded offline).
        """
        from kemo.models import C3D
        from kemo.models.c3d import CLIP_LENGTH
        from kemo.temporal import ClipFeatureExtractor

        if getattr(self, "c3d_features_", None) is None:
            size, name = int(c3d["size"]), c3d["weights"]
            model = None if name is None else functools.partial(
                C3D, weights=name, input_shape=(CLIP_LENGTH, size, size, 3))
            extractor = ClipFeatureExtractor(
                model, size=size, stride=int(c3d["stride"]),
                preprocess=_unit_range if name is None else name,
                random_state=self.random_state).fit()
            if weights_file is not None:
                extractor.feature_model_.load_weights(weights_file)
            self.c3d_features_ = extractor
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
            groups: group of each video (e.g. subject ids), for the subject-independent
                folds of ``fusion_weights="search"``.

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

        _, c3d, lstm = self._check_params()
        videos = _check_video_list(X)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(videos):
            raise InputError(f"y must hold one label per video: {len(videos)} videos, y of "
                             f"shape {y.shape}")
        check_classification_targets(y)
        groups = None if groups is None else np.asarray(groups)
        if groups is not None and groups.shape != y.shape:
            raise InputError(f"groups must hold one group per video, got shape {groups.shape}")
        for name in ("members_", "c3d_features_", "fusion_scores_"):
            self.__dict__.pop(name, None)
        found, failures = self._find_faces(videos)
        self._record_failures(failures, len(found))
        keep = np.array([f is not None for f in found], bool)
        found = [f for f in found if f is not None]
        y = y[keep]
        groups = None if groups is None else groups[keep]
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) < 2:
            raise InputError(f"fit needs videos of at least 2 classes; got {classes.tolist()}")
        if self.calibration != "softmax" and counts.min() < self.cv:
            rare = classes[np.argmin(counts)]
            raise InputError(f"class {rare!r} has {counts.min()} video(s) but calibration "
                             f"{self.calibration!r} uses cv={self.cv} folds: give each class "
                             f"at least {self.cv} videos, lower cv, or use "
                             f"calibration='softmax'")
        views = self._views(found, c3d, lstm)
        svm = LinearSVMClassifier(C=self.C, calibration=self.calibration, cv=self.cv,
                                  random_state=self.random_state)
        members = [("agg", svm, "agg")]
        if c3d is not None:
            members.append(("c3d", clone(svm), "c3d"))
        if lstm is not None:
            members.append(("lstm", self._lstm_classifier(lstm), "lstm"))
        if len(members) == 1:
            fitted, weights = [svm.fit(views["agg"], y)], np.ones(1)
        else:
            fusion = FusionClassifier(members, weights=self._fusion_weights(members),
                                      cv=self._fusion_cv(groups), random_state=self.random_state)
            fusion.fit(Views(views), y, groups=groups)
            fitted, weights = fusion.estimators_, fusion.weights_
            if hasattr(fusion, "search_results_"):
                self.fusion_scores_ = fusion.search_results_
        self.members_ = [
            (name, _LinearModel.from_estimator(est) if name != "lstm" else est, float(w))
            for (name, _, _), est, w in zip(members, fitted, weights, strict=True)
        ]
        self._classes = classes
        self._class_names = _names_of(classes)
        return self

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

    def _fusion_cv(self, groups):
        if groups is None or self.fusion_weights != "search":
            return self.fusion_cv
        from sklearn.model_selection import GroupKFold

        return GroupKFold(min(self.fusion_cv, len(np.unique(groups))))

    # ------------------------------------------------------------------ prediction

    def _trained_proba(self, found_list):
        _, c3d, lstm = self._check_params()
        views = self._views(found_list, c3d, lstm)
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
        elif ok:  # pretrained: the mean of the frame probabilities
            frames = _batched(self._classifier().predict_proba, [found[i].faces for i in ok])
            out[ok] = [p.mean(axis=0) for p in frames]
        return out

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
        """Analyse one video: its emotion, a per-frame timeline and the faces' boxes.

        Args:
            video: a video path, a frame array ``(T, H, W[, C])`` or a VideoFaces.
            tracks: ``"main"``: the main face only (the face tracked in the most frames);
                ``"all"``: every face found (faces are detected with ``select="all"``), the
                main one first.

        Returns:
            VideoAnalysis.

        Raises:
            InputError: a bad argument.
            kemo.errors.VideoReadError: the video cannot be read.
            NoFaceError: no face in the video.
        """
        if tracks not in ("main", "all"):
            raise InputError(f"tracks must be 'main' or 'all', got {tracks!r}")
        select = "all" if tracks == "all" else None
        found = self._find_faces([video], select=select, errors="raise")[0][0]
        frame_proba = self._classifier().predict_proba(found.faces)
        if tracks == "all":
            groups = [np.flatnonzero(found.track_ids == t) for t in np.unique(found.track_ids)]
        else:  # the preprocessor's own choice of one face per frame is the main face
            groups = [np.arange(len(found))]
        areas = found.boxes[:, 2] * found.boxes[:, 3]
        groups.sort(key=lambda rows: (-len(rows), -float(np.median(areas[rows]))))
        results = []
        for rows in groups:
            if self.is_trained:
                proba = self._trained_proba([_subset(found, rows)])[0]
            else:
                proba = frame_proba[rows].mean(axis=0).astype(np.float64)
            track_id = int(np.bincount(found.track_ids[rows]).argmax())
            results.append(TrackResult(track_id, found.frame_indices[rows], found.boxes[rows],
                                       frame_proba[rows], proba,
                                       self.class_names_[int(np.argmax(proba))]))
        main = results[0]
        return VideoAnalysis(source=found.source, class_names=tuple(self.class_names_),
                             probabilities=main.probabilities, label=main.label,
                             frames_read=found.frames_read, faces_found=len(found),
                             tracks=tuple(results),
                             timeline_class_names=self.timeline_class_names)

    # ------------------------------------------------------------------ saving

    def save(self, path):
        """Save the recogniser to a folder of plain files, atomically.

        The folder holds ``kemo_model.json`` (format version, parameters, classes, fusion
        weights, the sha256 of every other file, and a checksum of itself), one ``.npz`` of
        arrays per SVM branch (coefficients, intercepts, calibration), and Keras
        ``.weights.h5`` files for the trained LSTM and a randomly initialised C3D. Pretrained
        networks are referred to by their registered weights name. Nothing is pickled. The
        folder is written under a temporary name and renamed; an existing kemo model folder of
        the same name is replaced.

        Args:
            path: the model folder.

        Returns:
            pathlib.Path: the folder.

        Raises:
            InputError: ``path`` exists and is not a kemo model folder.
        """
        _, c3d, lstm = self._check_params()
        path = Path(path)
        if path.exists() and not (path.is_dir() and ((path / MANIFEST).is_file()
                                                     or not any(path.iterdir()))):
            raise InputError(f"{path} exists and is not a kemo model folder; choose another "
                             f"path or remove it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp"))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a model folder is not
        try:
            manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                        "params": _params_to_json(self), "trained": self.is_trained,
                        "files": {}}
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
                if c3d is not None and c3d["weights"] is None:
                    self._c3d_extractor(c3d).feature_model_.save_weights(
                        tmp / "c3d.weights.h5")
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
        manifest_file = path / MANIFEST
        if not manifest_file.is_file():
            raise WeightsError(f"{path}: not a kemo model folder (no {MANIFEST}); save one "
                               f"with VideoEmotionRecognizer.save or `kemo train videos`")
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
        try:
            rec = cls(**_params_from_json(manifest["params"]))
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
        if c3d is not None:
            weights_file = path / "c3d.weights.h5" if c3d["weights"] is None else None
            self._c3d_extractor(c3d, weights_file)
        self.members_ = members
        self._classes = classes
        self._class_names = tuple(manifest["class_names"])


# ----------------------------------------------------------------------------- helpers


def _check_weights_name(what, name, registry):
    if not isinstance(name, str) or name not in registry.names():
        raise InputError(f"{what}: {name!r} is not a registered weights name; registered: "
                         f"{list(registry.names())} (register a file with "
                         f"kemo.weights.register_file)")


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
    if isinstance(X, np.ndarray) and X.ndim != 5:
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


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


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


def _unit_range(x):
    """Pixel values 0..255 to 0..1: the input of a C3D with random weights."""
    return x / 255.0


def _aligned(model, X, classes):
    """``model.predict_proba(X)`` with columns reordered to ``classes``."""
    proba = model.predict_proba(X)
    out = np.zeros((len(proba), len(classes)))
    out[:, np.searchsorted(classes, model.classes_)] = proba
    return out


def _subset(found, rows):
    """The rows ``rows`` of a VideoFaces, as a new VideoFaces."""
    from kemo.faces import VideoFaces

    arrays = {name: getattr(found, name)[rows] for name in VideoFaces._ARRAYS
              if name != "missing_frames"}
    return VideoFaces(**arrays, missing_frames=found.missing_frames,
                      frames_read=found.frames_read, source=found.source)


def _plain(value):
    """JSON-friendly Python value of a numpy scalar / tuple."""
    if isinstance(value, np.generic):
        return value.item()
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
        params["faces"] = faces
    else:
        params["faces"] = None
    try:
        json.dumps(params)
    except TypeError as exc:
        raise InputError(f"save: a parameter cannot be written as JSON ({exc}); use plain "
                         f"values (names, numbers, lists, dicts)") from exc
    return params


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
