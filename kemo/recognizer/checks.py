"""Checks of a recogniser's parameters and labels, made before any work starts."""

import numpy as np

from kemo.errors import InputError
from kemo.recognizer.networks import _TAPS, _is_face_classifier
from kemo.timeline import POOLINGS

#: What a batch does with a video that fails: raise at once, or skip it and report it.
ERROR_MODES = ("raise", "skip")
#: The paper's fusion weights of its three branches (normalised over the branches in use).
PAPER_WEIGHTS = {"agg": 0.5, "c3d": 0.25, "lstm": 0.25}
#: Default fusion weights: the paper's, and kemo's scores branch at the weight the paper gives
#: each of its secondary branches.
FUSION_WEIGHTS = {**PAPER_WEIGHTS, "scores": 0.25}
#: Scores branch settings (``scores=True`` uses these; a dict overrides some of them): ``C`` of
#: its logistic regression.
SCORES_DEFAULTS = {"C": 1.0}
#: C3D branch settings (``c3d=True`` uses these; a dict overrides some of them).
C3D_DEFAULTS = {"weights": None, "size": 112, "stride": 8}
#: LSTM branch settings (``lstm=True`` uses these; a dict overrides some of them).
LSTM_DEFAULTS = {"frames": 32, "units": 128, "layers": 2, "dropout": 0.2, "epochs": 30,
                 "batch_size": 32, "learning_rate": 1e-3}
#: Fine-tuning of the face model on the training videos' faces (``finetune=True`` uses these;
#: a dict overrides some of them). A gentle rate and few epochs: a few hundred faces of a few
#: dozen people would soon be memorised by a 5 M-parameter network.
FINETUNE_DEFAULTS = {"epochs": 3, "learning_rate": 1e-3, "batch_size": 64,
                     "faces_per_video": None, "faces": "all", "batchnorm": "frozen"}
#: Which of a training video's faces fine-tuning reads (``finetune={"faces": ...}``).
FINETUNE_FACES = ("all", "expressive")


def check_params(rec):
    """Validate a recogniser's parameters.

    Args:
        rec: a :class:`kemo.recognizer.VideoEmotionRecognizer`.

    Returns:
        ``(feature names, c3d config, lstm config, scores config)``.

    Raises:
        InputError: a parameter is bad (the message names it and the value received).
    """
    from kemo import weights as registry

    if rec.errors not in ERROR_MODES:
        raise InputError(f"errors must be one of {ERROR_MODES}, got {rec.errors!r}")
    if rec.pooling not in POOLINGS:
        raise InputError(f"pooling must be one of {POOLINGS}, got {rec.pooling!r}")
    from kemo.face_classifier import check_flip_margin

    check_flip_margin(rec.flip_margin)  # before the minutes face finding takes
    if registry.model_file(rec.weights) is None:  # a file is checked when it loads
        _check_weights_name("weights", rec.weights, registry)
        info = registry.get(rec.weights)
        if not _is_face_classifier(info):
            raise InputError(f"weights {rec.weights!r} are not a face classifier (a ResNet10 "
                             f"or FaceEnsemble with a classifier top); use e.g. "
                             f"'fer2013_resnet10'")
    names = (rec.weights,) if rec.features is None else rec.features
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
        raise InputError(f"features must be a non-empty list of registered weights names, "
                         f"got {rec.features!r}")
    for name in names:
        if name == rec.weights:
            continue  # the face classifier's fc1, checked above
        _check_weights_name("features", name, registry)
        if registry.get(name).architecture not in _TAPS:
            raise InputError(f"features: weights {name!r} are for "
                             f"{registry.get(name).architecture}; frame features come from "
                             f"{sorted(_TAPS)} weights")
    if len(set(names)) != len(names):
        raise InputError(f"features lists a network twice: {list(names)}")
    c3d = _branch_config("c3d", rec.c3d, C3D_DEFAULTS)
    lstm = _branch_config("lstm", rec.lstm, LSTM_DEFAULTS)
    if c3d is not None:
        if c3d["weights"] is not None:
            _check_weights_name("c3d weights", c3d["weights"], registry)
        _check_positive("c3d size", c3d["size"], 16)
        _check_positive("c3d stride", c3d["stride"], 1)
    if lstm is not None:
        for key in ("frames", "units", "layers", "epochs", "batch_size"):
            _check_positive(f"lstm {key}", lstm[key], 1)
    scores = _branch_config("scores", rec.scores, SCORES_DEFAULTS)
    if scores is not None:
        _check_number("scores C", scores["C"], 0, float("inf"), "1.0")
    if finetune_config(rec.finetune) is not None and rec.weights not in names:
        raise InputError(f"finetune trains the face model {rec.weights!r}, which is not "
                         f"among features {list(names)}: it would change no feature; add "
                         f"it to features or drop finetune")
    if rec.faces is not None:
        from kemo.faces import FacePreprocessor

        if not isinstance(rec.faces, FacePreprocessor):
            raise InputError(f"faces must be a kemo.faces.FacePreprocessor or None, got "
                             f"{type(rec.faces).__name__}")
    return tuple(names), c3d, lstm, scores


def check_class_counts(y, calibration, cv):
    """Raise when ``y`` has a single class, or a class too small for the calibration."""
    classes = np.unique(y)
    if len(classes) < 2:
        raise InputError(f"fit needs videos of at least 2 classes; got "
                         f"{list(_names_of(classes))}")
    short = calibration_shortfall(y, calibration, cv)
    if short is not None:
        name, count = short
        raise InputError(f"class {name} has {count} video(s), but calibration "
                         f"{calibration!r} fits cv={cv} folds: give each class "
                         f"at least {cv} videos, lower cv (2 at least), or use "
                         f"calibration='softmax' or 'auto'")


def fusion_weights(value, names):
    """The fusion weights to use for the branches ``names``, from ``fusion_weights=value``.

    Returns:
        a list (one weight per branch) or ``"search"``.
    """
    if value is None:
        return [FUSION_WEIGHTS[name] for name in names]
    if isinstance(value, str):
        if value != "search":
            raise InputError(f"fusion_weights must be None, a list or 'search', got {value!r}")
        return "search"
    weights = list(value)
    if len(weights) != len(names):
        raise InputError(f"fusion_weights has {len(weights)} values for the branches "
                         f"{names}; give one per branch")
    return weights


def finetune_config(value):
    """The fine-tuning settings of ``finetune=value`` (:data:`FINETUNE_DEFAULTS` updated), or None.

    Raises:
        InputError: an unknown setting, or a bad value.
    """
    config = _branch_config("finetune", value, FINETUNE_DEFAULTS)
    if config is None:
        return None
    _check_positive("finetune epochs", config["epochs"], 1)
    _check_positive("finetune batch_size", config["batch_size"], 1)
    if config["faces_per_video"] is not None:
        _check_positive("finetune faces_per_video", config["faces_per_video"], 1)
    _check_number("finetune learning_rate", config["learning_rate"], 0, 1, "1e-3")
    if config["faces"] not in FINETUNE_FACES:
        raise InputError(f"finetune faces must be one of {FINETUNE_FACES}, got "
                         f"{config['faces']!r}")
    if config["batchnorm"] not in ("frozen", "adapt"):
        raise InputError(f"finetune batchnorm must be 'frozen' or 'adapt', got "
                         f"{config['batchnorm']!r}")
    return config


def _check_weights_name(what, name, registry):
    if not isinstance(name, str) or name not in registry.names():
        raise InputError(f"{what}: {name!r} is not a registered weights name; registered: "
                         f"{list(registry.names())} (register a file with "
                         f"kemo.weights.register_file; weights= also takes the path of a face "
                         f"model file, e.g. the {registry.RUN_EXPORT} of `kemo train fer2013`)")


def calibration_shortfall(y, calibration, cv):
    """The class too small for a cross-validated calibration, and its number of videos.

    ``"sigmoid"`` and ``"isotonic"`` calibrations fit ``cv`` folds, so every class needs ``cv``
    videos (``"softmax"`` and ``"auto"`` need none; see
    :class:`kemo.svm.LinearSVMClassifier`).

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


def _check_positive(what, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{what} must be an integer >= {minimum}, got {value!r}")


def _check_number(what, value, low, high, example):
    """``value`` must be a real number strictly between ``low`` and ``high``."""
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
            or not low < value < high):
        bounds = f"> {low}" if high == float("inf") else f"in ({low}, {high})"
        raise InputError(f"{what} must be a number {bounds}, e.g. {example}, got {value!r}")


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


def _names_of(classes):
    from kemo.datasets import CLASS_NAMES

    ints = all(isinstance(c, (int, np.integer)) for c in classes)
    if ints and all(0 <= c < len(CLASS_NAMES) for c in classes):
        return tuple(CLASS_NAMES[int(c)] for c in classes)
    return tuple(str(c) for c in classes)
