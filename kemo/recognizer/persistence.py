"""Saving and loading a trained recogniser: a folder of plain files, each checked by sha256.

The folder holds JSON, ``.npz`` arrays (read with ``allow_pickle=False``) and Keras
``.weights.h5`` files; nothing is unpickled, so loading a model folder cannot run code. See
:meth:`kemo.recognizer.VideoEmotionRecognizer.save`.
"""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from kemo.errors import InputError, WeightsError

#: Name of the description file in a saved model folder.
MANIFEST = "kemo_model.json"
#: The fine-tuned face model's weights in a saved model folder.
FINETUNED_FILE = "face_model_finetuned.weights.h5"
#: Random C3D weights, as model folders saved before the seed was stored hold them.
C3D_FILE = "c3d.weights.h5"
FORMAT = "kemo.VideoEmotionRecognizer"
FORMAT_VERSION = 1


class _LinearModel:
    """A fitted :class:`kemo.svm.LinearSVMClassifier` or logistic regression as plain arrays.

    Gives the same probabilities as the estimator (the one-vs-rest scores of each calibration
    fold's SVM, its sigmoid or isotonic calibration, normalised and averaged over the folds, as
    ``CalibratedClassifierCV`` computes them; or a softmax of one model's scores), and saves to
    an ``.npz`` file without pickling.
    """

    def __init__(self, classes, method, folds):
        self.classes_ = np.asarray(classes)
        self.method = method
        self.folds = folds

    @classmethod
    def from_estimator(cls, estimator):
        """Export a fitted LinearSVMClassifier, or a LogisticRegression (the scores branch)."""
        from sklearn.linear_model import LogisticRegression

        classes = estimator.classes_
        if isinstance(estimator, LogisticRegression):
            coef, intercept = estimator.coef_, estimator.intercept_
            if len(classes) == 2:  # its one score is the second class's: softmax of (0, score)
                coef = np.vstack([np.zeros_like(coef), coef])
                intercept = np.concatenate([[0.0], intercept])
            fold = {"coef": coef, "intercept": intercept, "columns": np.arange(len(classes))}
            return cls(classes, "softmax", [fold])
        method = estimator.calibration_  # "auto" resolved to the method the fit used
        if method == "softmax":
            est = estimator.estimator_
            fold = {"coef": est.coef_, "intercept": est.intercept_,
                    "columns": np.arange(len(classes))}
            return cls(classes, "softmax", [fold])
        folds = []
        for calibrated in estimator.estimator_.calibrated_classifiers_:
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


def save(rec, path):
    """Write ``rec`` to the model folder ``path``, atomically.

    See :meth:`kemo.recognizer.VideoEmotionRecognizer.save`, which calls it.
    """
    from kemo import weights as registry

    _, c3d, lstm, _ = rec._config()
    if rec.is_trained and rec._check_params() != rec._fitted_config:
        # the folder's parameters would describe another model than the trained one
        raise InputError("features, c3d, lstm or scores were changed after fit: set them back to "
                         "the values of the fit, or fit again, before saving")
    path = check_save_folder(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a model folder is not
    try:
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "params": _params_to_json(rec), "trained": rec.is_trained,
                    "files": {}}
        face_model = registry.model_file(rec.weights)
        if face_model is not None:
            local = "face_model" + next(e for e in registry.MODEL_FILE_SUFFIXES
                                        if face_model.name.endswith(e))
            shutil.copyfile(face_model, tmp / local)
            manifest["params"] = _renamed_weights(manifest["params"], rec.weights, local)
            manifest["weights_file"] = local
        if rec.is_trained:
            manifest["classes"] = [_plain(c) for c in rec._classes]
            manifest["class_names"] = list(rec._class_names)
            manifest["members"] = []
            for name, model, weight in rec.members_:
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
            if "face_model_" in rec.__dict__:  # float32, so loading predicts the same
                rec.face_model_.model_.save_weights(tmp / FINETUNED_FILE)
                manifest["finetuned_face_model"] = FINETUNED_FILE
            if c3d is not None and c3d["weights"] is None:
                extractor = rec._c3d_extractor(c3d)
                if rec.c3d_seed_ is None:  # loaded from an old folder: no seed known
                    extractor.feature_model_.save_weights(tmp / C3D_FILE)
                else:
                    manifest["c3d_random"] = _c3d_random(rec.c3d_seed_, extractor)
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


def load(cls, path):
    """A recogniser of class ``cls`` read from the model folder ``path``, every file checked.

    See :meth:`kemo.recognizer.VideoEmotionRecognizer.load`, which calls it.
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
    # folders saved before flip_margin (scores) existed mirrored every face (had no scores
    # branch): they still do (have none)
    params = {"flip_margin": None, "scores": None, **params}
    try:
        rec = cls(**_params_from_json(params))
        _, c3d, lstm, _ = rec._check_params()
        if manifest["trained"]:
            load_members(rec, path, manifest, c3d, lstm)
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: the model folder does not describe a valid "
                           f"recogniser ({type(exc).__name__}: {exc})") from exc
    return rec


def load_members(rec, path, manifest, c3d, lstm):
    """Give ``rec`` the trained branches (and fine-tuned face model) of a checked folder."""
    classes = np.asarray(manifest["classes"])
    members = []
    for item in manifest["members"]:
        file = path / item["file"]
        if item["name"] == "lstm":
            model = rec._lstm_classifier(lstm)._restore(
                classes, int(item["input_shape"][-1]), file)
        else:
            with np.load(file, allow_pickle=False) as data:
                model = _LinearModel.from_arrays(dict(data), classes)
        members.append((item["name"], model, float(item["weight"])))
    stored = manifest.get("c3d_random")
    if c3d is not None and c3d["weights"] is None and stored is not None:
        built = _c3d_random(stored["seed"], rec._c3d_extractor(c3d, seed=stored["seed"]))
        if built["sha256"] != stored["sha256"]:
            raise WeightsError(
                f"{path}: the C3D weights rebuilt from seed {stored['seed']} differ from "
                f"the ones the model was trained with (built by Keras "
                f"{stored.get('keras')} on {stored.get('backend')}; this is Keras "
                f"{built['keras']} on {built['backend']}): load it with those")
    elif c3d is not None:  # pretrained weights, or random ones saved in the folder
        rec._c3d_extractor(c3d, path / C3D_FILE if c3d["weights"] is None else None)
    tuned = manifest.get("finetuned_face_model")
    if tuned is not None:  # the face model as fit left it (its sha256 checked by load)
        if tuned not in manifest["files"]:
            raise WeightsError(f"{path}: {MANIFEST} names a fine-tuned face model "
                               f"{tuned!r} it does not list")
        from kemo.face_classifier import FaceEmotionClassifier

        clf = FaceEmotionClassifier(weights=rec.weights, flip=bool(rec.flip),
                                    flip_margin=rec.flip_margin,
                                    batch_size=int(rec.batch_size)).fit()
        clf.model_.load_weights(path / tuned)
        rec.face_model_ = clf
    rec._fitted_config = rec._check_params()
    rec.members_ = members
    rec._classes = classes
    rec._class_names = tuple(manifest["class_names"])


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
