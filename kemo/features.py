"""Per-frame features: face stacks of videos -> one feature vector per frame, from any Keras model.

Reference:
    Xu et al., EmotiW 2017, section "Frame features": VGG-Face fc6 (4096-d) and ResNet-10 fc1
    (512-d) of every aligned face of a video, later aggregated by :class:`kemo.Aggregator`.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from kemo._tensorflow import import_quietly
from kemo.errors import InputError, WeightsError

__all__ = ["FrameFeatureExtractor", "fit_faces"]

import_quietly()  # before this module's functions first import Keras

#: BT.601 luma weights (RGB -> gray), as cv2.COLOR_RGB2GRAY.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def fit_faces(faces, input_shape):
    """Resize face crops and match their channels to a model input.

    Args:
        faces: array ``(N, H, W)`` (gray), ``(N, H, W, 1)``, ``(N, H, W, 3)`` (RGB) or
            ``(N, H, W, 4)`` (RGBA; alpha dropped), pixel values 0..255 of any numeric dtype.
        input_shape: the model input ``(H, W, C)`` without the batch axis; ``None`` sides keep
            the faces' size, ``C`` of 1 gives gray (BT.601 luma), 3 gives RGB (gray repeated).

    Returns:
        float32 array ``(N, H', W', C)``, values still 0..255 (normalisation is the job of the
        weights' ``preprocess``). Shrinking uses area interpolation, enlarging bilinear.

    Raises:
        InputError: ``faces`` is not a stack of images.

    Example:
        >>> fit_faces(np.zeros((2, 48, 48), np.uint8), (64, 64, 3)).shape
        (2, 64, 64, 3)
    """
    faces = np.asarray(faces)
    if faces.ndim == 3:
        faces = faces[..., None]
    if faces.ndim != 4 or faces.shape[-1] not in (1, 3, 4):
        raise InputError(f"faces must be (N, H, W) or (N, H, W, 1|3|4); got shape {faces.shape}")
    if not (np.issubdtype(faces.dtype, np.number) or faces.dtype == bool):
        raise InputError(f"faces must hold numbers (pixel values 0..255); got dtype {faces.dtype}")
    x = faces.astype(np.float32, copy=False)
    if x.shape[-1] == 4:
        x = x[..., :3]
    height, width, channels = (tuple(input_shape) + (None,) * 3)[:3]
    if channels == 1 and x.shape[-1] == 3:
        x = (x @ _LUMA)[..., None]
    elif channels == 3 and x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    elif channels not in (None, 1, 3):
        raise InputError(f"input_shape {tuple(input_shape)} asks for {channels} channels; "
                         f"kemo feeds gray (1) or RGB (3) faces")
    size = (height or x.shape[1], width or x.shape[2])
    if size != x.shape[1:3] and len(x):
        shrink = size[0] * size[1] < x.shape[1] * x.shape[2]
        mode = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        out = np.empty((len(x), *size, x.shape[-1]), dtype=np.float32)
        for i, face in enumerate(x):
            # cv2 drops a single channel axis; reshape puts it back.
            out[i] = cv2.resize(face, size[::-1], interpolation=mode).reshape(out.shape[1:])
        x = out
    elif size != x.shape[1:3]:
        x = np.empty((0, *size, x.shape[-1]), dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def load_keras_file(path):
    """Load a whole ``.keras`` model in Keras safe mode, or raise a WeightsError naming it."""
    import keras

    if not os.path.isfile(path):
        raise WeightsError(f"model file {os.fspath(path)!r} does not exist")
    try:
        # safe_mode (the default, stated here on purpose) refuses to run code from the file.
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - any Keras failure means a bad or unsafe file
        raise WeightsError(f"{os.fspath(path)!r}: not a loadable .keras model ({exc})") from exc


def resolve_preprocess(preprocess):
    """The pixel preprocessing a feature extractor applies before its model.

    Args:
        preprocess: ``None`` (pixels as they are), a callable on float32 batches, or a
            registered weights name whose preprocessing is used (see :mod:`kemo.weights`).

    Raises:
        ValueError: ``preprocess`` is none of these.
        kemo.errors.WeightsError: the weights name is not registered.
    """
    if preprocess is None or callable(preprocess):
        return preprocess
    if isinstance(preprocess, str):
        from kemo import weights

        return weights.get(preprocess).preprocess
    raise ValueError(f"preprocess must be None, a callable or a registered weights name; "
                     f"got {preprocess!r}")


class ModelTransformerMixin:
    """Shared by the transformers that run a Keras model over lists of face stacks."""

    def __sklearn_clone__(self):
        # Share the Keras model, do not deep-copy it: transform never changes its weights, and
        # copying a 145 M-parameter network for every cross-validation fit costs GBs and minutes.
        params = {name: value if name == "model" else clone(value, safe=False)
                  for name, value in self.get_params(deep=False).items()}
        return type(self)(**params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # lists of face stacks, not tables
        return tags

    def _keras_model(self, default=None):
        """The Keras model that ``self.model`` stands for.

        ``self.model`` is a ``keras.Model``, a callable returning one, the path of a
        ``.keras`` file (loaded in safe mode), or None when ``default`` (a callable) builds it.
        """
        import keras

        model = self.model
        if model is None and default is not None:
            model = default()
        elif isinstance(model, (str, os.PathLike)):
            model = load_keras_file(model)
        elif not isinstance(model, keras.Model) and callable(model):
            model = model()
        if not isinstance(model, keras.Model):
            choices = "None, " if default is not None else ""
            raise ValueError(f"model must be {choices}a keras.Model, a callable returning one or "
                             f"a .keras file; got {type(model).__name__}")
        return model

    def _layer_output(self, model):
        """The output of ``self.layer`` in ``model``; with ``layer=None``, its only output."""
        if self.layer is None:
            if len(model.outputs) != 1:
                raise ValueError(f"model {model.name!r} has {len(model.outputs)} outputs: name "
                                 f"the feature layer with layer=...")
            return model.outputs[0]
        try:
            return model.get_layer(self.layer).output
        except ValueError as exc:
            names = [lay.name for lay in model.layers]
            raise ValueError(f"model {model.name!r} has no layer {self.layer!r}; its layers "
                             f"are {names}") from exc


class FrameFeatureExtractor(ModelTransformerMixin, TransformerMixin, BaseEstimator):
    """Per-frame features of face stacks from a Keras model (any kemo builder, or your own).

    ``transform`` takes a list of videos, each a stack of aligned faces ``(n_i, H, W)`` or
    ``(n_i, H, W, C)`` (RGB or gray, pixel values 0..255, as :class:`kemo.faces.FacePreprocessor`
    gives), and returns a list of ``(n_i, D)`` float32 arrays: the output of ``layer`` for each
    frame, flattened. Frames of all videos are batched together across video boundaries (full
    batches even for short videos) and split back; faces are resized to the model input
    (OpenCV) and turned gray or RGB to match its channels.

    Nothing is learned: ``fit`` only builds the feature model (the network up to ``layer``).
    Cloning shares the Keras model instead of deep-copying it (``transform`` never changes its
    weights), so the extractor is cheap inside ``GridSearchCV``; still, when only later steps
    are searched, computing features once outside the search is much faster.

    Args:
        model: a ``keras.Model``; or a callable returning one (a builder such as
            ``functools.partial(kemo.models.ResNet10, weights=...)``), called in ``fit`` so
            that building is lazy and clone-safe; or the path of a saved ``.keras`` model.
        layer: name of the layer whose output is the feature (e.g. ``"fc6"`` for VGG-Face,
            ``"fc1"`` for ResNet-10); ``None`` for the model output.
        batch_size: frames per forward pass.
        preprocess: what happens to the resized faces (float32 pixel values 0..255, channels
            already matched to the model) before the forward pass: ``None`` leaves them as
            they are (the model receives 0..255 values); a callable ``f(batch) -> batch``; or
            the name of a registered weights entry, resolved with
            ``kemo.weights.get(name).preprocess`` (colour order, mean, scale) in ``fit``.
        resize: resize faces to the model input size; when ``False`` a face of another size is
            an error.
        verbose: show a tqdm progress bar over frames.

    Attributes:
        model_: the Keras model (built, loaded or as given).
        feature_model_: the model from the input to ``layer``.
        input_shape_: model input ``(H, W, C)``; ``None`` for a free side.
        n_features_out_: D, the size of a frame feature (``None`` if the model leaves it open).

    Example:
        kemo's FER2013 ResNet-10, its 512-d ``fc1`` tap and the preprocessing of its weights:

        >>> import functools
        >>> from kemo.models import ResNet10
        >>> builder = functools.partial(ResNet10, weights="fer2013_resnet10")
        >>> extractor = FrameFeatureExtractor(builder, layer="fc1", preprocess="fer2013_resnet10")
        >>> videos = [np.zeros((30, 48, 48), np.uint8), np.zeros((12, 64, 64, 3), np.uint8)]
        >>> [f.shape for f in extractor.fit_transform(videos)]
        [(30, 512), (12, 512)]
    """

    def __init__(self, model, layer=None, batch_size=64, preprocess=None, resize=True,
                 verbose=False):
        self.model = model
        self.layer = layer
        self.batch_size = batch_size
        self.preprocess = preprocess
        self.resize = resize
        self.verbose = verbose

    def fit(self, X=None, y=None):
        """Build the feature model (``X`` and ``y`` are ignored; nothing is learned).

        Returns:
            self.

        Raises:
            ValueError: a bad argument (unknown layer, model without a defined input...).
            kemo.errors.WeightsError: ``preprocess`` names weights that are not registered, or
                ``model`` is a file that is not a loadable ``.keras`` model (loading uses Keras
                safe mode, which refuses to deserialise Python code such as ``Lambda`` layers).
        """
        import keras

        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or (
                self.batch_size < 1):
            raise ValueError(f"batch_size must be a positive int; got {self.batch_size!r}")
        model = self._keras_model()
        try:
            inputs = model.inputs
        except (AttributeError, ValueError) as exc:
            raise ValueError(f"model {model.name!r} has no defined input: build it on a "
                             f"keras.Input(shape=(H, W, C)) first") from exc
        if inputs is None or len(inputs) != 1:
            raise ValueError(f"model {model.name!r} must have exactly one image input")
        output = self._layer_output(model)
        shape = tuple(inputs[0].shape[1:])
        if len(shape) != 3 or shape[-1] not in (1, 3):
            raise ValueError(f"model {model.name!r} takes inputs shaped {shape}; expected "
                             f"(H, W, 1) or (H, W, 3) images")
        self.model_ = model
        self.feature_model_ = keras.Model(inputs[0], output, name=f"{model.name}_features")
        self.input_shape_ = shape
        dims = tuple(output.shape[1:])
        self.n_features_out_ = int(np.prod(dims)) if None not in dims else None
        self.preprocess_ = resolve_preprocess(self.preprocess)
        return self

    def transform(self, X):
        """Features of every frame of every video.

        Args:
            X: list of videos, each an array ``(n_i, H, W)`` or ``(n_i, H, W, C)`` of faces
                (C = 1, 3, or 4 with alpha dropped); a video may have no frame.

        Returns:
            List of float32 arrays ``(n_i, D)``, one per video, in order.

        Raises:
            InputError: ``X`` is not a list of face stacks, or a face has the wrong size with
                ``resize=False``.
        """
        from tqdm.auto import tqdm

        check_is_fitted(self, "feature_model_")
        videos = _check_videos(X)
        lengths = np.array([len(v) for v in videos], dtype=np.intp)
        ends = np.cumsum(lengths)
        total = int(ends[-1]) if len(ends) else 0
        out = None
        if self.n_features_out_ is not None:
            out = np.empty((total, self.n_features_out_), dtype=np.float32)
        with tqdm(total=total, disable=not self.verbose, unit="frame",
                  desc=self.feature_model_.name) as bar:
            for lo in range(0, total, self.batch_size):
                hi = min(lo + self.batch_size, total)
                batch = self._prepare(_frames(videos, lengths, ends, lo, hi))
                feats = np.asarray(self.feature_model_.predict_on_batch(batch))
                feats = feats.reshape(hi - lo, -1).astype(np.float32, copy=False)
                if out is None:
                    out = np.empty((total, feats.shape[1]), dtype=np.float32)
                out[lo:hi] = feats
                bar.update(hi - lo)
        if out is None:  # no frame at all and a model whose feature size is open
            out = np.empty((0, 0), dtype=np.float32)
        return np.split(out, ends[:-1])

    def _prepare(self, pieces):
        """Resize and convert the pieces of one batch; apply ``preprocess``."""
        shape = self.input_shape_
        if not self.resize:
            for video, piece in pieces:
                size = piece.shape[1:3]
                if any(s is not None and s != p for s, p in zip(shape[:2], size, strict=True)):
                    raise InputError(f"faces of video {video} are {size[0]}x{size[1]} but the "
                                     f"model takes {shape[0]}x{shape[1]}; use resize=True")
            shape = (None, None, shape[2])
        batch = np.concatenate([fit_faces(piece, shape) for _, piece in pieces], axis=0)
        if self.preprocess_ is not None:
            batch = np.asarray(self.preprocess_(batch), dtype=np.float32)
            if batch.shape[0] != sum(len(p) for _, p in pieces):
                raise ValueError(f"preprocess returned {batch.shape[0]} images for "
                                 f"{sum(len(p) for _, p in pieces)}; it must keep the batch axis")
        return batch


def _check_videos(X):
    """Validate a list of face stacks; return it as a list of arrays (n_i, H, W[, C])."""
    if isinstance(X, np.ndarray):
        if X.ndim != 5 and not (X.ndim == 4 and X.shape[-1] not in (1, 3, 4)):
            raise InputError(f"X is one array of shape {X.shape}; pass a list of videos, each "
                             f"(n_frames, H, W[, C]) (e.g. [faces] for a single video)")
        X = list(X)
    if not isinstance(X, (list, tuple)):
        raise InputError(f"X must be a list of face stacks (n_frames, H, W[, C]); got "
                         f"{type(X).__name__}")
    videos = []
    for i, video in enumerate(X):
        video = np.asarray(video)
        if video.ndim not in (3, 4) or (video.ndim == 4 and video.shape[-1] not in (1, 3, 4)):
            raise InputError(f"video {i} has shape {video.shape}; expected (n_frames, H, W) or "
                             f"(n_frames, H, W, 1|3|4)")
        if not (np.issubdtype(video.dtype, np.number) or video.dtype == bool):
            raise InputError(f"video {i} has dtype {video.dtype}; expected pixel values")
        if video.dtype.kind == "f" and not np.isfinite(video).all():
            raise InputError(f"video {i} contains NaN or inf pixel values")
        videos.append(video)
    return videos


def _frames(videos, lengths, ends, lo, hi):
    """The frames lo..hi of all videos laid end to end, as (video index, frame slice) pieces."""
    first = int(np.searchsorted(ends, lo, side="right"))
    pieces = []
    for i in range(first, len(videos)):
        start = ends[i] - lengths[i]
        if start >= hi:
            break
        a, b = max(lo, start) - start, min(hi, ends[i]) - start
        if b > a:
            pieces.append((i, videos[i][a:b]))
    return pieces
