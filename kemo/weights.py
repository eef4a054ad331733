"""Registry of weight files: name -> file, sha256, input size, preprocessing, metrics.

Weights are data, apart from the architecture. Each registered entry
(:class:`WeightsInfo`) says which builder it fits, where its file comes from,
how to check the file, and how images must be prepared for it, so
preprocessing and weights cannot disagree::

    info = kemo.weights.get("vggface")
    model = kemo.models.VGGFace(weights="vggface")
    scores = model.predict(info.preprocess(faces))

Where a file is looked for (:func:`fetch`), in order:

1. shipped entries: inside the installed package ``kemo.shipped`` (the
   repository's top-level ``weights/`` folder);
2. every folder in ``$KEMO_WEIGHTS`` (one folder, or several joined by
   ``os.pathsep``);
3. the Keras cache, ``$KERAS_HOME/<cache_subdir>`` (default
   ``~/.keras/models``);
4. the entry's ``url``, downloaded into the Keras cache with
   ``keras.utils.get_file``. Offline this fails with a :class:`WeightsError`
   naming the file, the URL and the folders to put the file in.

Integrity: every file is checked against its sha256 before use, and a
mismatch raises :class:`WeightsError` naming the file, the expected and the
actual hash. Some public files (keras-vggface's VGG-Face, the Keras port of
the Sports-1M C3D) were never published with a sha256, and kemo could not
download them to compute one. Their entries have ``sha256=None`` and use
*trust on first use*: the first time such a file loads into a model without
error, its sha256 is written to ``<file>.sha256.json`` beside it, and every
later use verifies the file against that record. Where the publisher gives an
md5 (``md5``), the file is checked against it before it is trusted.

Registering shipped weights: put the file and its model card in ``weights/``
and either call :func:`register` or add a ``<name>.entry.json`` file there
holding :meth:`WeightsInfo.to_dict` fields; every ``*.entry.json`` shipped in
``kemo.shipped`` is registered when this module is imported. Shipped entries
must have a sha256.
"""

import dataclasses
import hashlib
import importlib.resources
import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from kemo.errors import InputError, WeightsError

#: Environment variable naming the folder(s) searched for weight files.
ENV_DIR = "KEMO_WEIGHTS"

COLORS = ("rgb", "bgr", "gray")
#: The face model everything uses unless told otherwise (classifier, recogniser, CLI).
DEFAULT_WEIGHTS = "fer2013_resnet10_v4"

#: ITU-R BT.601 luma weights, used to turn RGB into gray.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

_REGISTRY = {}


@dataclasses.dataclass(frozen=True, kw_only=True)
class WeightsInfo:
    """One registered weights file and everything needed to use it.

    Args:
        name: Registry key, e.g. ``"vggface"``.
        architecture: Builder the weights fit: ``"VGGFace"``, ``"ResNet10"``,
            ``"C3D"`` or ``"BiResidualLSTM"``.
        filename: File name (no folders): ``.weights.h5``, ``.keras`` or a
            Keras 2 / keras-vggface ``.h5``.
        sha256: Hex sha256 of the file, or ``None`` for trust on first use
            (see the module docstring). Required when ``shipped``.
        url: Public download address, or ``None``.
        shipped: The file lies inside the package ``kemo.shipped``.
        input_shape: Model input shape, without the batch axis.
        color: Channel order the model expects: ``"rgb"``, ``"bgr"`` or
            ``"gray"``; ``None`` for inputs that are not images (feature
            sequences), which get only ``mean`` and ``scale``.
        mean: Per-channel value subtracted, in the model's channel order, or ``None``.
        scale: Factor applied after subtracting ``mean``.
        classes: Number of outputs of the top, or ``None`` without a top.
        class_names: Names of the outputs, when known.
        include_top: The file holds the classifier layers.
        metrics: Measured figures, e.g. ``{"fer2013_publictest_accuracy": 0.71}``.
        card: File name of the model card in ``kemo.shipped``, or ``None``.
        md5: Published md5 of a file without a published sha256.
        cache_subdir: Folder under the Keras home where the file is cached.
        options: Builder arguments that the weights need, beyond the defaults, e.g.
            ``{"width": 0.5, "stem": "full"}`` for a narrower ResNet-10 (see
            :func:`builder_options`).
    """

    name: str
    architecture: str
    filename: str
    sha256: str | None
    input_shape: tuple
    url: str | None = None
    shipped: bool = False
    color: str = "rgb"
    mean: tuple | None = None
    scale: float = 1.0
    classes: int | None = None
    class_names: tuple | None = None
    include_top: bool = True
    metrics: dict = dataclasses.field(default_factory=dict)
    card: str | None = None
    md5: str | None = None
    cache_subdir: str = "models"
    options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for key in ("name", "architecture", "filename"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise ValueError(f"WeightsInfo.{key} must be a non-empty str; received {value!r}")
        if os.path.basename(self.filename) != self.filename:
            raise ValueError(f"WeightsInfo.filename must be a bare file name; "
                             f"received {self.filename!r}")
        _check_hex("sha256", self.sha256, 64)
        _check_hex("md5", self.md5, 32)
        if self.shipped and self.sha256 is None:
            raise ValueError(f"weights {self.name!r}: a shipped file needs its sha256")
        if self.color not in (*COLORS, None):
            raise ValueError(f"WeightsInfo.color must be one of {COLORS} or None; "
                             f"received {self.color!r}")
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        channels = {"gray": 1, None: self.input_shape[-1]}.get(self.color, 3)
        if self.input_shape[-1] != channels:
            raise ValueError(f"weights {self.name!r}: color {self.color!r} needs {channels} "
                             f"channel(s); received input_shape={self.input_shape!r}")
        if self.mean is not None:
            object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
            if len(self.mean) != channels:
                raise ValueError(f"weights {self.name!r}: mean needs {channels} value(s) for "
                                 f"color {self.color!r} and input_shape={self.input_shape!r}; "
                                 f"received {self.mean!r}")
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(self.class_names))
            if self.classes is not None and len(self.class_names) != self.classes:
                raise ValueError(f"weights {self.name!r}: {len(self.class_names)} class_names "
                                 f"for classes={self.classes}")
        object.__setattr__(self, "metrics", dict(self.metrics))

    def preprocess(self, images):
        """Prepare images for this model: colour, channel order, mean and scale.

        Args:
            images: Pixel values 0..255 in RGB (or gray) order, shaped
                ``(..., H, W, 3)``, ``(..., H, W, 1)`` or, for gray images,
                ``(N, H, W)`` (any last axis other than 1 or 3 is taken as
                image width and a channel axis is added).

                For ``color=None`` (not images), any array whose last axis
                matches ``mean``.

        Returns:
            A new float32 array ``(..., H, W, C)`` with the channels the model
            expects: gray is repeated to RGB or RGB turned to gray (BT.601
            luma), RGB is reversed to BGR when ``color == "bgr"``, then ``mean``
            is subtracted and the result multiplied by ``scale``.

        Raises:
            kemo.errors.InputError: When ``images`` is not numeric or has fewer
                than two axes.

        Example:
            >>> x = get("vggface").preprocess(np.zeros((1, 224, 224, 3)))
            >>> x[0, 0, 0].tolist()  # doctest: +SKIP
            [-93.594, -104.7624, -129.1863]
        """
        try:
            x = np.array(images, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InputError(f"weights {self.name!r}: images must be a numeric array; "
                             f"received {type(images).__name__}") from exc
        if x.ndim < 2:
            raise InputError(f"weights {self.name!r}: images must be (..., H, W[, C]); "
                             f"received shape {x.shape}")
        if self.color is not None and x.shape[-1] not in (1, 3):
            x = x[..., None]
        if self.color == "gray" and x.shape[-1] == 3:
            x = (x @ _LUMA)[..., None]
        elif self.color in ("rgb", "bgr") and x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)
        if self.color == "bgr":
            x = x[..., ::-1]
        if self.mean is not None:
            x = x - np.asarray(self.mean, dtype=np.float32)
        if self.scale != 1.0:
            x = x * np.float32(self.scale)
        return np.ascontiguousarray(x, dtype=np.float32)

    def to_dict(self):
        """Return the fields as JSON-friendly values (the ``*.entry.json`` format)."""
        out = dataclasses.asdict(self)
        for key in ("input_shape", "mean", "class_names"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data):
        """Build an entry from :meth:`to_dict` output (unknown keys are an error)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown WeightsInfo field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


def _check_hex(key, value, length):
    if value is None:
        return
    if (not isinstance(value, str) or len(value) != length
            or any(c not in "0123456789abcdef" for c in value)):
        raise ValueError(f"WeightsInfo.{key} must be {length} lowercase hex digits or None; "
                         f"received {value!r}")


def register(info, *, replace=False):
    """Add ``info`` to the registry and return it.

    Args:
        info: A :class:`WeightsInfo`.
        replace: Allow replacing an entry of the same name.

    Raises:
        ValueError: When ``info`` is not a ``WeightsInfo``, or the name is
            taken and ``replace`` is false.
    """
    if not isinstance(info, WeightsInfo):
        raise ValueError(f"register() needs a WeightsInfo; received {type(info).__name__}")
    if info.name in _REGISTRY and not replace:
        raise ValueError(f"weights {info.name!r} are already registered; pass replace=True")
    _REGISTRY[info.name] = info
    return info


def register_file(path):
    """Register (or replace) the entry described by a ``*.entry.json`` file and return it.

    Raises:
        kemo.errors.WeightsError: When the file cannot be read or does not
            describe a valid entry.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return register(WeightsInfo.from_dict(data), replace=True)
    except (OSError, TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: not a valid weights entry: {exc}") from exc


def get(name):
    """Return the :class:`WeightsInfo` registered as ``name``.

    Raises:
        kemo.errors.WeightsError: For an unknown name; the message lists the
            registered names.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise WeightsError(f"unknown weights {name!r}; registered: {', '.join(names())} "
                           "(or pass the path of a weights file)") from None


def names():
    """Return the registered names, sorted."""
    return tuple(sorted(_REGISTRY))


#: File name under which ``kemo train fer2013`` exports the trained face model (in RUN_DIR).
RUN_EXPORT = "fer2013_resnet10.weights.h5"

#: Endings of a model file that can stand for a registered name: Keras 3 weights (what
#: ``kemo train fer2013`` exports) and whole ``.keras`` models (its ``best.keras``).
MODEL_FILE_SUFFIXES = (".weights.h5", ".keras")


def model_file(weights):
    """Tell a model file from a registered name: the file's path, or None for a name.

    A string counts as a file when it exists on disk, holds a folder separator or ends in one
    of :data:`MODEL_FILE_SUFFIXES`; an existing file wins over a registered name (as in
    :func:`lookup`). Anything else is left to :func:`get`.

    Args:
        weights: A registered name or the path of a ``.weights.h5`` / ``.keras`` file.

    Returns:
        pathlib.Path or None.

    Raises:
        kemo.errors.WeightsError: A file that does not exist or has another ending.
    """
    if isinstance(weights, str):
        registered = weights in _REGISTRY
        looks_like_file = os.sep in weights or weights.endswith(MODEL_FILE_SUFFIXES)
        if not os.path.exists(weights) and (registered or not looks_like_file):
            return None
    elif not isinstance(weights, os.PathLike):
        return None
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"model file {str(path)!r} not found (a face model trained by "
                           f"`kemo train fer2013` is RUN_DIR/{RUN_EXPORT})")
    if not path.name.endswith(MODEL_FILE_SUFFIXES):
        raise WeightsError(f"{path}: not a model file; give a {' or '.join(MODEL_FILE_SUFFIXES)}"
                           f" file or a registered name ({', '.join(names())})")
    return path


def sha256(path):
    """Return the hex sha256 of the file at ``path``."""
    return _digest(path, "sha256")


def _digest(path, algorithm):
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _keras_home():
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def keras_cache_dir(info):
    """Return the Keras cache folder where ``info``'s file is downloaded to."""
    return _keras_home() / info.cache_subdir


def search_dirs(info):
    """Return the folders :func:`fetch` looks in for a non-shipped file, in order."""
    dirs = [Path(d) for d in os.environ.get(ENV_DIR, "").split(os.pathsep) if d]
    return [*dirs, keras_cache_dir(info)]


def _shipped_dir():
    return Path(str(importlib.resources.files("kemo.shipped")))


def _record_path(path):
    return Path(path).with_name(Path(path).name + ".sha256.json")


def fetch(name):
    """Return the local path of the registered weights ``name``, verified.

    Args:
        name: A registered name (see :func:`names`).

    Returns:
        A ``pathlib.Path`` of a file that passed its sha256 check (or, for a
        trust-on-first-use entry, its recorded sha256 or published md5).

    Raises:
        kemo.errors.WeightsError: Unknown name; file missing and not
            downloadable (the message names the file, the URL and the folders
            to put it in); hash mismatch (the message names the file and both
            hashes).

    Example:
        >>> fetch("vggface")  # doctest: +SKIP
        PosixPath('/root/.keras/models/vggface/rcmalli_vggface_tf_vgg16.h5')
    """
    return _resolve(get(name))[0]


def _resolve(info):
    """Find and verify ``info``'s file; return ``(path, sha256_to_record_or_None)``."""
    if info.shipped:
        try:
            path = _shipped_dir() / info.filename
        except ModuleNotFoundError as exc:
            raise WeightsError(f"weights {info.name!r}: the package kemo.shipped holding "
                               f"{info.filename} is not installed; reinstall kemo") from exc
        if not path.is_file():
            raise WeightsError(f"weights {info.name!r}: shipped file {info.filename} is missing "
                               f"from {path.parent}; reinstall kemo")
        return path, _verify(info, path)
    for folder in search_dirs(info):
        path = folder / info.filename
        if path.is_file():
            return path, _verify(info, path)
    folders = ", ".join(str(d) for d in search_dirs(info))
    if info.url is None:
        raise WeightsError(f"weights {info.name!r}: file {info.filename} not found and it has no "
                           f"download address. Put it in one of: {folders} "
                           f"(or set {ENV_DIR} to the folder holding it).")
    from kemo._tensorflow import import_quietly

    import_quietly()
    import keras

    try:
        # get_file falls back to /tmp/.keras when the home does not exist yet.
        os.makedirs(keras_cache_dir(info), exist_ok=True)
        path = keras.utils.get_file(
            info.filename, origin=info.url, cache_dir=str(_keras_home()),
            cache_subdir=info.cache_subdir, file_hash=info.sha256 or info.md5,
        )
    except Exception as exc:  # noqa: BLE001 - any download failure gets the same advice
        raise WeightsError(
            f"weights {info.name!r}: file {info.filename} not found and downloading it from "
            f"{info.url} failed ({type(exc).__name__}: {exc}). Download it on a machine with "
            f"network access and put it in one of: {folders} "
            f"(or set {ENV_DIR} to the folder holding it)."
        ) from exc
    path = Path(path)
    return path, _verify(info, path)


def _verify(info, path):
    """Check ``path`` against ``info``; return the sha256 still to record, if any."""
    actual = sha256(path)
    if info.sha256 is not None:
        if actual != info.sha256:
            raise WeightsError(_mismatch(path, "sha256", info.sha256, actual))
        return None
    record = _record_path(path)
    if record.is_file():
        try:
            expected = json.loads(record.read_text(encoding="utf-8"))["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WeightsError(f"{record}: unreadable sha256 record ({exc}); delete it to trust "
                               f"{path} again") from exc
        if actual != expected:
            raise WeightsError(_mismatch(path, "sha256 (recorded on first use in "
                                               f"{record.name})", expected, actual))
        return None
    if info.md5 is not None:
        md5 = _digest(path, "md5")
        if md5 != info.md5:
            raise WeightsError(_mismatch(path, "published md5", info.md5, md5))
    return actual


def _mismatch(path, what, expected, actual):
    return (f"{path}: {what} mismatch: expected {expected}, got {actual}. The file is corrupt or "
            "not the published one; delete it and put the right file there.")


def _write_record(path, digest):
    record = _record_path(path)
    data = {"file": Path(path).name, "sha256": digest, "size": os.path.getsize(path),
            "policy": "trust on first use: recorded by kemo after the first successful load"}
    try:
        record.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        warnings.warn(f"could not record the sha256 of {path} in {record} ({exc}); the file "
                      "will not be checked on later loads", stacklevel=3)


# --------------------------------------------------------------------------- loading


#: HDF5 attribute of an exported ``.weights.h5`` file holding its builder options (JSON).
OPTIONS_ATTR = "kemo_builder_options"


def builder_options(weights, architecture):
    """The builder arguments that ``weights`` need, e.g. ``{"width": 0.5, "stem": "full"}``.

    A registered entry gives its :attr:`WeightsInfo.options`; a ``.weights.h5`` file the
    options that :func:`kemo.training.export_weights` wrote into it. Files without them
    (the shipped ``fer2013_resnet10``, Keras 2 files, whole ``.keras`` models) give ``{}``:
    the builder's defaults.

    Args:
        weights: A registered name or a file path.
        architecture: Builder name the weights must fit.

    Returns:
        dict.
    """
    info = lookup(weights, architecture)
    if info is not None:
        return dict(info.options)
    if zipfile.is_zipfile(weights):
        return {}
    import h5py

    try:
        with h5py.File(weights, "r") as f:
            stored = f.attrs.get(OPTIONS_ATTR)
    except OSError as exc:
        raise WeightsError(f"{weights}: not an HDF5 or .keras weights file ({exc})") from exc
    if stored is None:
        return {}
    try:
        options = json.loads(stored)
    except (TypeError, ValueError):
        options = None
    if not isinstance(options, dict):
        raise WeightsError(f"{weights}: its {OPTIONS_ATTR} attribute is not a JSON object "
                           f"({stored!r}); export the model again with "
                           "kemo.training.export_weights")
    return options


def load_into(model, weights, architecture, *, head=(), aliases=None):
    """Load ``weights`` into ``model``, checking that they fit.

    Args:
        model: A Keras model built by the matching kemo builder.
        weights: A registered name, or the path of a ``.weights.h5`` /
            ``.keras`` file (Keras 3) or of a Keras 2 ``.h5`` weights file
            such as keras-vggface's (matched by layer name; ``/`` in a layer
            name becomes ``_``).
        architecture: Builder name of ``model``; a registered entry for another
            architecture is refused.
        head: Names of classifier layers that may be left as initialised when
            the file lacks them or their shapes differ (a different number of
            classes); a warning says so.
        aliases: ``{file layer name: model layer name}`` for Keras 2 files
            whose names differ from the builder's.

    Raises:
        kemo.errors.WeightsError: Missing file, hash mismatch, wrong
            architecture, or a file that does not fit (the message names the
            file and the first layer that does not fit; the model is then left
            unchanged).
    """
    info = lookup(weights, architecture)
    if info is None:
        path, record = Path(weights), None
    else:
        path, record = _resolve(info)
    if zipfile.is_zipfile(path):
        _load_keras3(model, path, head)
    else:
        _load_h5(model, path, head, aliases or {})
    if record is not None:
        _write_record(path, record)


def lookup(weights, architecture):
    """Tell a weights argument apart: an existing file (``None``) or a registered entry.

    Args:
        weights: A file path or a registered name. An existing file wins over
            a registered name.
        architecture: Builder name the weights must fit.

    Returns:
        The :class:`WeightsInfo`, or ``None`` when ``weights`` is an existing file.

    Raises:
        kemo.errors.WeightsError: A path that does not exist, an unknown name
            (the registered names are listed), or an entry for another
            architecture.
        ValueError: When ``weights`` is neither a str nor a path.
    """
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"{architecture}: weights must be a registered name or a file path; "
                         f"received {weights!r}")
    if os.path.exists(weights):
        return None
    if isinstance(weights, os.PathLike) or (
        weights not in _REGISTRY and (os.sep in weights or weights.endswith((".h5", ".keras")))
    ):
        raise WeightsError(f"{architecture}: weights file {weights} not found")
    info = get(weights)
    if info.architecture != architecture:
        fits = [n for n, i in sorted(_REGISTRY.items()) if i.architecture == architecture]
        raise WeightsError(f"{architecture}: weights {weights!r} are for {info.architecture}, "
                           f"not {architecture}; registered for {architecture}: "
                           f"{', '.join(fits) or '(none)'}")
    return info


def _layers_with_weights(model):
    return [layer for layer in model.layers if layer.weights]


def _shapes(arrays):
    return [tuple(int(d) for d in a.shape) for a in arrays]


def _fit_error(path, layer, detail):
    return WeightsError(f"{path}: does not fit this model: layer {layer!r} {detail}. Check the "
                        "builder arguments (include_top, input_shape, classes) match the file.")


def _load_h5(model, path, head, aliases):
    """Load a Keras 2 style HDF5 weights file (attrs layer_names / weight_names) by layer name."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{path}: not an HDF5 or .keras weights file ({exc})") from exc
    with f:
        group = f
        if "layer_names" not in f.attrs and "model_weights" in f:
            group = f["model_weights"]  # a whole model saved with model.save(".h5")
        if "layer_names" not in group.attrs:
            _load_keras3(model, path, head)  # a Keras 3 .weights.h5
            return
        table = {}
        for file_name in _read_names(group, "layer_names"):
            layer_group = group[file_name]
            weight_names = _read_names(layer_group, "weight_names")
            if weight_names:
                name = aliases.get(file_name, file_name.replace("/", "_"))
                table[name] = [np.asarray(layer_group[w]) for w in weight_names]
    assignments = []
    for layer in _layers_with_weights(model):
        expected = _shapes(layer.weights)
        arrays = table.get(layer.name)
        if arrays is None:
            problem = "has no weights in the file"
        elif _shapes(arrays) != expected:
            problem = f"has shapes {_shapes(arrays)} in the file, the model needs {expected}"
        else:
            assignments.append((layer, arrays))
            continue
        if layer.name not in head:
            raise _fit_error(path, layer.name, problem)
        warnings.warn(f"{path}: layer {layer.name!r} {problem}; it keeps its initial weights",
                      stacklevel=3)
    for layer, arrays in assignments:
        layer.set_weights(arrays)


def _read_names(group, key):
    """Read a list-of-names attribute, also when Keras split it into key0, key1, ..."""
    if key in group.attrs:
        values = list(group.attrs[key])
    else:
        values, i = [], 0
        while f"{key}{i}" in group.attrs:
            values.extend(group.attrs[f"{key}{i}"])
            i += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _snake(name):
    import re

    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras3_problems(model, path):
    """Compare a Keras 3 weights file with ``model``; return ``[(layer name, problem)]``.

    Keras 3 stores layers by position (``layers/<snake_case class>[_n]``), so
    this walks the model's layers the same way and compares weight shapes.
    """
    import io

    import h5py

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "model.weights.h5" not in archive.namelist():
                raise WeightsError(f"{path}: a zip file without model.weights.h5 is not a "
                                   ".keras model file")
            source = io.BytesIO(archive.read("model.weights.h5"))
    else:
        source = path
    problems = []
    with h5py.File(source, "r") as f:
        stored = f["layers"] if "layers" in f else {}
        used = {}
        for layer in model.layers:
            key = _snake(type(layer).__name__)
            if key in used:
                used[key] += 1
                key = f"{key}_{used[key]}"
            else:
                used[key] = 0
            expected = sorted(_shapes(layer.weights))
            found = sorted(_dataset_shapes(stored[key])) if key in stored else []
            if key not in stored and expected:
                problems.append((layer.name, "has no weights in the file"))
            elif found != expected:
                problems.append((layer.name, f"has shapes {found} in the file, the model needs "
                                             f"{expected}"))
    return problems


def _dataset_shapes(group):
    import h5py

    shapes = []
    group.visititems(lambda _, obj: shapes.append(tuple(obj.shape))
                     if isinstance(obj, h5py.Dataset) else None)
    return shapes


def _load_keras3(model, path, head):
    try:
        problems = _keras3_problems(model, path)
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable file
        raise WeightsError(f"{path}: not a readable Keras weights file ({exc})") from exc
    for name, problem in problems:
        if name not in head:
            raise _fit_error(path, name, problem)
    for name, problem in problems:
        warnings.warn(f"{path}: layer {name!r} {problem}; it keeps its initial weights",
                      stacklevel=3)
    try:
        with warnings.catch_warnings():
            if problems:  # Keras repeats them at length; the warnings above say it clearly
                warnings.simplefilter("ignore", UserWarning)
            model.load_weights(str(path), skip_mismatch=bool(problems))
    except Exception as exc:  # noqa: BLE001 - report any Keras failure as a WeightsError
        raise WeightsError(f"{path}: could not be loaded into model {model.name!r} "
                           f"({exc})") from exc


# --------------------------------------------------------------------------- entries

#: keras-vggface (R. C. Malli), v2.0 release; the VGG-Face weights of Parkhi
#: et al. 2015 converted from Caffe. No hash was ever published: trust on first use.
_VGGFACE_RELEASE = "https://github.com/rcmalli/keras-vggface/releases/download/v2.0/"
#: VGG-Face training-set channel means, BGR order (keras-vggface utils.preprocess_input).
VGGFACE_MEAN_BGR = (93.5940, 104.7624, 129.1863)

register(WeightsInfo(
    name="vggface", architecture="VGGFace", filename="rcmalli_vggface_tf_vgg16.h5",
    sha256=None, url=_VGGFACE_RELEASE + "rcmalli_vggface_tf_vgg16.h5",
    input_shape=(224, 224, 3), color="bgr", mean=VGGFACE_MEAN_BGR, classes=2622,
    include_top=True, cache_subdir="models/vggface",
))
register(WeightsInfo(
    name="vggface_notop", architecture="VGGFace", filename="rcmalli_vggface_tf_notop_vgg16.h5",
    sha256=None, url=_VGGFACE_RELEASE + "rcmalli_vggface_tf_notop_vgg16.h5",
    input_shape=(224, 224, 3), color="bgr", mean=VGGFACE_MEAN_BGR, include_top=False,
    cache_subdir="models/vggface",
))
#: C3D trained on Sports-1M (Tran et al. 2015), converted to Keras by A. Casson
#: (github.com/adamcasson/c3d, release v0.1), which publishes only an md5.
#: Its layer names conv1 / conv2 are the paper's conv1a / conv2a. The original
#: subtracts a per-pixel mean clip; its per-channel Sports-1M means, in the BGR
#: order in which Caffe read the frames, are used here, as in common ports.
register(WeightsInfo(
    name="c3d_sports1m", architecture="C3D", filename="sports1M_weights_tf.h5",
    sha256=None, md5="b7a93b2f9156ccbebe3ca24b41fc5402",
    url="https://github.com/adamcasson/c3d/releases/download/v0.1/sports1M_weights_tf.h5",
    input_shape=(16, 112, 112, 3), color="bgr", mean=(90.25, 97.66, 101.41), classes=487,
    include_top=True,
))


def _register_shipped():
    try:
        folder = _shipped_dir()
    except (ModuleNotFoundError, TypeError):  # kemo.shipped not installed
        return
    for entry in sorted(folder.glob("*.entry.json")):
        try:
            register_file(entry)
        except WeightsError as exc:  # one broken entry must not break importing kemo
            warnings.warn(str(exc), stacklevel=2)


_register_shipped()
