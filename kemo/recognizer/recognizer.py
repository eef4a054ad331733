"""The recogniser itself: :class:`VideoEmotionRecognizer`, the paper's pipeline as one classifier.

Its parts live beside it: parameter checks (:mod:`kemo.recognizer.checks`), the shared networks
(:mod:`kemo.recognizer.networks`), the batch of input videos (:mod:`kemo.recognizer.videos`), the
fine-tuning step (:mod:`kemo.recognizer.finetune`), the model folder
(:mod:`kemo.recognizer.persistence`) and the results (:mod:`kemo.recognizer.results`).
"""

from __future__ import annotations

import copy
import functools

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.multiclass import check_classification_targets

from kemo.errors import InputError
from kemo.recognizer import persistence
from kemo.recognizer.checks import (
    _names_of,
    check_class_counts,
    check_params,
    finetune_config,
    fusion_weights,
)
from kemo.recognizer.finetune import face_labels as finetune_labels
from kemo.recognizer.finetune import finetuned_face_model
from kemo.recognizer.networks import (
    _batched,
    _face_classifier,
    _file_stamp,
    _frame_extractor,
    _is_face_classifier,
    _unit_range,
)
from kemo.recognizer.persistence import _LinearModel
from kemo.recognizer.results import TrackResult, VideoAnalysis
from kemo.recognizer.videos import _check_video_list, _video_fps, find_faces, report_failures
from kemo.timeline import DEFAULT_POOLING
from kemo.weights import DEFAULT_WEIGHTS

__all__ = ["VideoEmotionRecognizer"]

#: Added to the pooled probabilities of the scores branch before their log, so that a class the
#: face model rules out (p near 0) gives a finite feature.
SCORES_FLOOR = 1e-4


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
    one-vs-rest linear SVM with calibrated probabilities, fused with kemo's ``scores`` branch (a
    logistic regression on the face model's pooled probabilities). With ``c3d`` and/or
    ``lstm``, those branches are trained too (fusion weights 0.5 / 0.25 / 0.25 as in the paper,
    0.25 for scores, given weights, or searched on cross-validated predictions). As in
    scikit-learn, ``features``, ``c3d``, ``lstm`` and ``scores`` set after :meth:`fit` take
    effect at the next fit: the trained model predicts with those it was fitted with.

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
        scores: kemo's addition to the paper's branches: True (default) or a dict overriding
            :data:`SCORES_DEFAULTS` (``C``) adds a branch that reads each video's pooled
            face-model probabilities (as the pretrained label pools them; their log) with a
            multinomial logistic regression: 7 numbers per video that carry what the face model
            learned from FER2013, where the SVM must learn its thousand from the videos.
            None/False: the paper's pipeline. Leave-one-subject-out on the 40 CK+ clips (36
            training clips a fold) it lifts the recogniser from 67.5 to 77.5 %; on CK+48's 309
            sequences (10 subject folds, ~280 training sequences) it costs 2 (89.64 to 89.00
            %), so its gain is with few training videos (``benchmarks/ckplus_videos.py``).
        fusion_weights: with several branches: None (the paper's 0.5 / 0.25 / 0.25, and 0.25
            for scores, normalised), a list (one per branch, in the order aggregated SVM, C3D,
            LSTM, scores), or
            ``"search"`` (see :class:`kemo.FusionClassifier`; groups passed to :meth:`fit`
            make the folds subject-independent).
        fusion_cv: folds of the weight search.
        flip: average a face's predictions with its mirror image's (test-time augmentation).
        flip_margin: which faces get the mirror pass: those whose two highest plain
            probabilities are less than this apart (default 0.4: 38 % of FER2013
            PublicTest, for the accuracy of mirroring all); None mirrors every face (see
            :class:`kemo.FaceEmotionClassifier`). A model folder saved before this
            parameter existed loads with None, as it was trained.
        pooling: how the pretrained recogniser turns a face's frame probabilities into the
            video's: ``"expressive"`` (default: frames weighted by ``1 - p(Neutral)``),
            ``"mean"``, ``"confidence"``, ``"topk"`` or ``"peak"`` (see
            :func:`kemo.timeline.pool`; measured in ``benchmarks/ckplus_videos.py``). A
            trained recogniser aggregates frame features instead and ignores it.
        class_balance: favour the classes the face model rarely says (Disgust above all) in
            its frame probabilities, the timeline and the pretrained labels: see
            :class:`kemo.FaceEmotionClassifier`: a power (0 leaves them as trained) or
            ``"auto"`` (default: 0.5 for a model of the 7 FER2013 classes, chosen on FER2013
            PublicTest; on the 40 CK+ clips it lifts the pretrained labels from 57.5 to
            60.0 %, on CK+48's faces from 68.7 to 73.4 %). A trained recogniser's labels
            come from its own classifiers and do not change; one with a fine-tuned face model
            (``finetune``) leaves that model's probabilities as trained under ``"auto"`` and
            refuses a power.
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
            cosine decay, recipe ``"finetune"`` of :mod:`kemo.training` otherwise;
            ``batch_size``; ``faces``: ``"all"``, or ``"expressive"``, the half of each
            video's faces that the face model before tuning finds least neutral (most neutral
            for a Neutral video), so that a clip's neutral frames are not taught as its
            emotion; ``faces_per_video``: None for all, or at most that many, spread
            over each video; ``batchnorm``: ``"frozen"`` keeps the BatchNorm statistics as
            trained on FER2013, ``"adapt"`` lets them follow the videos' faces). It happens in
            :meth:`fit`, so each cross-validation fold fine-tunes on its own training videos
            only. Labels must be the face model's classes (FER ids 0..6, or their names),
            and ``weights`` must be among ``features``. Off by default: on the 40 CK+ clips,
            leave-one-subject-out, its gain over the face model as it is stays within the
            spread between runs (docs/results.md), and it costs a training run per fit. The
            SVM's calibration folds and the fusion weight search then read features of faces
            the model was tuned on, so their inner scores are optimistic; held-out videos are
            not affected.

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

    def __init__(self, weights=DEFAULT_WEIGHTS, features=None, faces=None, C=1.0,
                 calibration="sigmoid", cv=3, c3d=None, lstm=None, fusion_weights=None,
                 fusion_cv=5, flip=True, flip_margin=0.4, batch_size=256,
                 errors="raise", random_state=0,
                 verbose=False, pooling=DEFAULT_POOLING, finetune=None, class_balance="auto",
                 scores=True):
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
        self.flip_margin = flip_margin
        self.batch_size = batch_size
        self.errors = errors
        self.random_state = random_state
        self.verbose = verbose
        self.pooling = pooling
        self.finetune = finetune
        self.class_balance = class_balance
        self.scores = scores

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
        return check_params(self)

    def _input_sizes(self):
        """(largest side, all gray) over the models that will read the faces."""
        names, c3d, _, _ = self._config()
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
            # "auto" leaves it as trained: the FER2013 prior is not its training videos'
            if not isinstance(self.class_balance, str) and self.class_balance:
                raise InputError("class_balance balances the FER2013 face model's classes; this "
                                 "recogniser's face model was fine-tuned on its training videos "
                                 "(finetune=...): set class_balance=0 or 'auto'")
            return self.face_model_
        shared = _face_classifier(self.weights, bool(self.flip), self.flip_margin,
                                  int(self.batch_size),
                                  _file_stamp(self.weights))
        if not isinstance(self.class_balance, str) and not self.class_balance:
            return shared
        # a shallow copy shares the loaded network: only the probabilities differ
        return copy.copy(shared).set_params(class_balance=self.class_balance)

    @property
    def class_balance_(self):
        """float: the power of ``class_balance`` in effect on the frame probabilities."""
        return self._classifier().class_balance_

    def _info(self, name):
        """The WeightsInfo of a registered name, or of the face model file ``weights``."""
        from kemo import weights as registry

        if name == self.weights and registry.model_file(name) is not None:
            return self._classifier().info_  # a file tells its input size once loaded
        return registry.get(name)

    # ------------------------------------------------------------------ faces and features

    def _find_faces(self, X, select=None, errors=None, reduce=None):
        """Faces of every video: ``(list of VideoFaces or None for failures, failures)``.

        ``reduce``: what to keep of each video's faces (see :func:`find_faces`).
        """
        from kemo.faces import VideoFaces

        videos = _check_video_list(X)
        prep = None
        if not all(isinstance(v, VideoFaces) for v in videos):
            prep = self._preprocessor()
            if select is not None and select != prep.select:
                prep = clone(prep).set_params(select=select).fit()
        return find_faces(videos, prep, errors or self.errors, self.verbose, reduce)

    def _frame_features(self, found_list, known=None):
        """Per video, ``{network name: (n, D) features}`` of its faces.

        The faces of all videos go through each network together (full batches, one forward
        pass per network instead of one per video), then are split back per video. ``known``
        (``{network name: per-video features}``) gives features computed already.
        """
        from kemo import weights as registry

        names = self._config()[0]
        out = [{} for _ in found_list]
        for name in names:
            if known is not None and name in known:
                per_video = known[name]
            elif name == self.weights and "face_model_" in self.__dict__:  # fine-tuned
                per_video = _batched(self.face_model_.transform, [f.faces for f in found_list])
            elif registry.model_file(name) is not None or _is_face_classifier(registry.get(name)):
                # the same cached classifier as _classifier() when name is the face model
                model = _face_classifier(name, bool(self.flip), self.flip_margin,
                                         int(self.batch_size),
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
        self.failures_ = report_failures(failures, len(found))
        ok = [f for f in found if f is not None]
        features = iter(self._frame_features(ok) if ok else [])
        return [None if f is None else next(features) for f in found]

    def _views(self, found_list, known=None, frame_proba=None):
        """Each branch's input for a list of VideoFaces: ``{branch: array}``.

        ``known``: frame features computed already (see :meth:`_frame_features`);
        ``frame_proba``: the face model's frame probabilities of each video, computed already.
        """
        from kemo.aggregation import Aggregator
        from kemo.temporal import to_sequences

        names, c3d, lstm, scores = self._config()
        if scores is not None and frame_proba is None:
            frame_proba, known = self._face_model_outputs(found_list, names, known)
        feats = self._frame_features(found_list, known)
        views = {"agg": Aggregator().fit_transform([[f[n] for f in feats] for n in names])}
        if c3d is not None:
            clips = self._c3d_extractor(c3d).transform([found.faces for found in found_list])
            views["c3d"] = np.stack([windows.mean(axis=0) for windows in clips])
        if lstm is not None:
            # padded to a fixed length for Views; the classifier L2-normalises the frames
            views["lstm"] = to_sequences([f[names[0]] for f in feats], lstm["frames"],
                                         normalize=None)
        if scores is not None:  # log of each video's pooled timeline probabilities
            pooled = [self._pool(p, f.frame_indices, _video_fps(f.source))
                      for p, f in zip(frame_proba, found_list, strict=True)]
            views["scores"] = np.log(np.asarray(pooled) + SCORES_FLOOR)
        return views

    def _face_model_outputs(self, found_list, names, known):
        """``(frame probabilities, known)`` of each video: its timeline, the scores' input.

        A face model among the feature networks gives both in one pass (features: to ``known``).
        """
        stacks = [found.faces for found in found_list]
        if self.weights not in names or (known is not None and self.weights in known):
            return _batched(self._classifier().predict_proba, stacks), known
        both = _batched(self._classifier().predict_proba_and_transform, stacks)
        known = {**(known or {}), self.weights: [features for _, features in both]}
        return [proba for proba, _ in both], known

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
        from sklearn.linear_model import LogisticRegression

        from kemo.fusion import FusionClassifier, Views
        from kemo.svm import LinearSVMClassifier

        names, c3d, lstm, scores = self._check_params()
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
        check_class_counts(y, self.calibration, self.cv)  # before the minutes face finding takes
        finetune = finetune_config(self.finetune)
        face_labels = None if finetune is None else finetune_labels(y, self.timeline_class_names)
        found, failures = self._find_faces(videos)
        self.failures_ = report_failures(failures, len(found))
        keep = np.array([f is not None for f in found], bool)
        found = [f for f in found if f is not None]
        y = y[keep]
        groups = None if groups is None else groups[keep]
        check_class_counts(y, self.calibration, self.cv)  # again: failed videos are left out
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
        if scores is not None:
            members.append(("scores", LogisticRegression(C=scores["C"], max_iter=5000),
                            "scores"))
        if len(members) == 1:
            fitted, weights = [svm.fit(views["agg"], y, groups=groups)], np.ones(1)
        else:
            # with groups, the fusion's folds and the SVMs' calibration folds are grouped
            weights = fusion_weights(self.fusion_weights, [name for name, _, _ in members])
            fusion = FusionClassifier(members, weights=weights,
                                      cv=self.fusion_cv, random_state=self.random_state)
            fusion.fit(Views(views), y, groups=groups)
            fitted, weights = fusion.estimators_, fusion.weights_
            if hasattr(fusion, "search_results_"):
                self.fusion_scores_ = fusion.search_results_
        self.members_ = [
            (name, _LinearModel.from_estimator(est) if name != "lstm" else est, float(w))
            for (name, _, _), est, w in zip(members, fitted, weights, strict=True)
        ]
        self._fitted_config = (names, c3d, lstm, scores)
        self._classes = classes
        self._class_names = _names_of(classes)
        return self

    def _finetuned_face_model(self, found, labels, config):
        """A copy of the face model trained on the faces of ``found``, each with its video's label.

        Only these videos' faces are read, so a fit on a fold's training side never sees its
        test subjects. The shared, cached face model stays as loaded.
        """
        clf, self.finetune_faces_ = finetuned_face_model(
            self.weights, found, labels, config, flip=bool(self.flip),
            flip_margin=self.flip_margin,
            batch_size=int(self.batch_size), random_state=self.random_state,
            verbose=self.verbose)
        return clf

    def _config(self):
        """``(feature names, c3d settings, lstm settings)`` that the branches read.

        Once trained, those of the fit: parameters set after :meth:`fit` take effect at the
        next fit, as in scikit-learn (the trained branches would get features of another width,
        or miss their input).
        """
        checked = self._check_params()
        return self._fitted_config if self.is_trained else checked

    # ------------------------------------------------------------------ prediction

    def _trained_proba(self, found_list, known=None, frame_proba=None):
        views = self._views(found_list, known, frame_proba)
        total = sum(w for _, _, w in self.members_)
        proba = sum(w * _aligned(model, views[name], self._classes)
                    for name, model, w in self.members_)
        return proba / total

    def predict_proba(self, X):
        """Class probabilities of each video.

        A pretrained recogniser scores each video's faces 512 frames at a time and keeps their
        probabilities, not their crops, so memory does not grow with the videos' length.

        Args:
            X: list of videos (paths, frame arrays or VideoFaces).

        Returns:
            float array ``(n_videos, n_classes)``, columns in the order of ``classes_``; rows
            of videos that failed (``errors="skip"``) are NaN.

        Raises:
            InputError, kemo.errors.VideoReadError, NoFaceError: with ``errors="raise"``.
        """
        score, scored = self._scorer()
        found, failures = self._find_faces(X, reduce=score)
        self.failures_ = report_failures(failures, len(found))
        out = np.full((len(found), len(self.classes_)), np.nan)
        ok = [i for i, f in enumerate(found) if f is not None]
        if ok and self.is_trained:
            out[ok] = self._trained_proba([found[i] for i in ok])
        elif ok:  # pretrained: each video's frame probabilities, pooled
            for i in ok:
                out[i] = self._pool(np.concatenate(scored[i]), found[i].frame_indices,
                                    _video_fps(found[i].source))
        return out

    def _scorer(self):
        """A ``reduce`` for :meth:`_find_faces` that scores faces as they are found (pretrained).

        Returns:
            ``(score, scored)``: ``score(part, index)`` appends the face model's probabilities
            of a piece of video ``index`` to ``scored[index]`` (a list, in frame order) and
            returns the piece without its crops, so memory does not grow with the video.
            ``(None, None)`` when trained: its branches read the crops. The face model is
            loaded either way, so that a bad setting fails before the face finding.
        """
        classifier = self._classifier()
        if self.is_trained:
            return None, None
        scored = {}

        def score(part, index):
            scored.setdefault(index, []).append(classifier.predict_proba(part.faces))
            return part.without_faces()

        return score, scored

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
        score, scored = self._scorer()
        found = self._find_faces([video], select="all", errors="raise", reduce=score)[0][0]
        groups = found.track_rows()[:1] if tracks == "main" else found.track_rows()
        faces = [found.subset(rows) for rows in groups]
        fps = _video_fps(found.source)
        if self.is_trained:  # every track at once: one face-model pass, full batches
            frame_proba, known = self._face_model_outputs(faces, self._config()[0], None)
            probas = self._trained_proba(faces, known, frame_proba)
        else:
            every = np.concatenate(scored[0])  # of every face
            frame_proba = [every[rows] for rows in groups]
            probas = [self._pool(p, track.frame_indices, fps)
                      for p, track in zip(frame_proba, faces, strict=True)]
        results = []
        for track, track_proba, proba in zip(faces, frame_proba, probas, strict=True):
            segments = find_segments(track_proba, track.frame_indices, fps,
                                     self.timeline_class_names)
            results.append(TrackResult(int(track.track_ids[0]), track.frame_indices,
                                       track.boxes, track_proba, proba,
                                       self.class_names_[int(np.argmax(proba))],
                                       tuple(segments)))
        main = results[0]
        return VideoAnalysis(source=found.source, class_names=tuple(self.class_names_),
                             probabilities=main.probabilities, label=main.label,
                             frames_read=found.frames_read,
                             faces_found=sum(len(track) for track in faces), tracks=tuple(results),
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
        return persistence.save(self, path)

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
        return persistence.load(cls, path)


def _aligned(model, X, classes):
    """``model.predict_proba(X)`` with columns reordered to ``classes``."""
    proba = model.predict_proba(X)
    out = np.zeros((len(proba), len(classes)))
    out[:, np.searchsorted(classes, model.classes_)] = proba
    return out
