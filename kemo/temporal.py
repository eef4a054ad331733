"""The paper's two spatio-temporal branches as scikit-learn estimators: C3D and the LSTM.

Reference:
    Xu et al., EmotiW 2017, sections "C3D" and "LSTM": C3D ``fc`` activations of face clips
    classified by a linear SVM; a bidirectional residual LSTM over the sequence of VGG-Face
    ``fc6`` frame features, softmax at the last time step (Adam, learning rate 1e-3, batch 32).

* :class:`ClipFeatureExtractor` turns face stacks into C3D features: each clip is cut into
  16-frame windows (:func:`kemo.models.clip_windows`) and every window gives one feature, so a
  clip becomes a ``(n_windows, D)`` matrix, the counterpart of
  :class:`kemo.features.FrameFeatureExtractor`'s per-frame matrix. :class:`kemo.Aggregator`
  (or a mean) makes it one vector per clip.
* :class:`SequenceClassifier` trains :func:`kemo.models.BiResidualLSTM` on per-frame feature
  sequences of any length and gives class probabilities, so it can be a member of
  :class:`kemo.FusionClassifier` and be cross-validated like any scikit-learn classifier.
* :func:`to_sequences` pads (or samples) per-frame features into the ``(n, T, D)`` array the
  LSTM reads; all-zero rows are padding, which the network masks.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from kemo._seeds import integer_seed, keras_seed
from kemo.errors import InputError
from kemo.features import ModelTransformerMixin, resolve_preprocess

__all__ = ["ClipFeatureExtractor", "SequenceClassifier", "to_sequences"]

_NORMALIZE = ("l2", None)


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- sequences


def _as_clips(X, name="X"):
    """A list of 2-D float arrays, one per clip, from any accepted form of ``X``."""
    if isinstance(X, np.ndarray):
        if X.ndim == 2:  # n clips of one frame each (plain scikit-learn data)
            return [row[None, :] for row in np.asarray(X, np.float32)]
        if X.ndim == 3:
            return list(np.asarray(X, np.float32))
        raise InputError(f"{name} has shape {X.shape}; pass a list of (n_frames, D) arrays, "
                         f"a (n, T, D) array, or a (n, D) array of one-frame clips")
    if not isinstance(X, (list, tuple)):
        raise InputError(f"{name} must be a list of (n_frames, D) feature arrays; got "
                         f"{type(X).__name__}")
    clips = []
    for i, clip in enumerate(X):
        try:
            clip = np.asarray(clip, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{name}[{i}] is not an array of numbers ({exc})") from None
        if clip.ndim == 1:  # one row of a 2-D list of lists: a one-frame clip
            clip = clip[None, :]
        if clip.ndim != 2:
            raise InputError(f"{name}[{i}] has shape {clip.shape}; expected (n_frames, D)")
        clips.append(clip)
    return clips


def to_sequences(features, frames=None, normalize="l2"):
    """Pad per-frame features of clips into one ``(n, T, D)`` array for the LSTM.

    A clip with more than ``frames`` rows is sampled uniformly (first and last frame kept, as
    :meth:`kemo.video.Video.sample` does); a shorter one is padded with zero rows at the end,
    which :func:`kemo.models.BiResidualLSTM` masks. With ``normalize="l2"`` every frame is
    scaled to unit length first, so that all frames weigh the same (padding stays zero).

    Args:
        features: a list of ``(n_frames_i, D)`` arrays (e.g. from
            :class:`kemo.FrameFeatureExtractor`), a ``(n, T, D)`` array, or a ``(n, D)`` array
            (clips of one frame).
        frames: length ``T`` of the output; None: the longest clip's length.
        normalize: ``"l2"`` or None.

    Returns:
        float32 array ``(n, T, D)``.

    Raises:
        InputError: a malformed clip, widths that differ, NaN or inf, or a clip without any
            frame (the message names it).
        ValueError: a bad ``frames`` or ``normalize``.

    Example:
        >>> x = to_sequences([np.ones((5, 4)), np.ones((2, 4))])
        >>> x.shape, float(x[1, 2:].sum())
        ((2, 5, 4), 0.0)
    """
    if normalize not in _NORMALIZE:
        raise ValueError(f"normalize must be 'l2' or None; got {normalize!r}")
    if frames is not None:
        frames = _positive_int("frames", frames)
    clips = _as_clips(features, "features")
    if not clips:
        raise InputError("features holds no clip")
    widths = {clip.shape[1] for clip in clips}
    if len(widths) != 1:
        raise InputError(f"all clips need the same feature width; got widths {sorted(widths)}")
    for i, clip in enumerate(clips):
        if len(clip) == 0:
            raise InputError(f"clip {i} has no frame (no face found?): drop it or give it "
                             f"frames")
        if not np.isfinite(clip).all():
            raise InputError(f"clip {i} contains NaN or inf values")
    length = frames or max(len(clip) for clip in clips)
    out = np.zeros((len(clips), length, widths.pop()), np.float32)
    for i, clip in enumerate(clips):
        if len(clip) > length:
            clip = clip[np.linspace(0, len(clip) - 1, length).round().astype(np.int64)]
        if normalize == "l2":
            norms = np.linalg.norm(clip, axis=1, keepdims=True)
            clip = np.divide(clip, norms, out=np.zeros_like(clip), where=norms > 0)
        out[i, :len(clip)] = clip
    return out


class SequenceClassifier(ClassifierMixin, BaseEstimator):
    """The paper's LSTM branch: a bidirectional residual LSTM on per-frame feature sequences.

    ``fit`` builds :func:`kemo.models.BiResidualLSTM` for the feature width it is given and
    trains it with Adam on the sequences (:func:`to_sequences`: padded with masked zero rows,
    frames L2-normalised); the class probabilities are the softmax at the last valid frame.
    Clips may have any number of frames.

    Args:
        frames: sequence length: longer clips are sampled uniformly, shorter ones padded; None
            pads to the longest clip of each call (the network accepts any length).
        units: LSTM units per direction (each layer outputs ``2 * units``).
        num_layers: stacked bidirectional layers.
        dropout: dropout before each residual sum.
        normalize: ``"l2"`` (unit-length frames) or None.
        epochs: training epochs (the paper does not give its count).
        batch_size: sequences per step (the paper: 32).
        learning_rate: Adam's learning rate (the paper: 1e-3).
        class_weight: None or ``"balanced"`` (weights inversely proportional to class counts).
        random_state: seed of the initial weights, dropout and shuffling: an int (the same
            model every fit), a ``numpy.random.RandomState`` or None (drawn from NumPy's
            global generator, as scikit-learn does). The global Python, NumPy and backend
            generators are left alone.
        verbose: Keras progress output during ``fit`` (0, 1 or 2).

    Attributes:
        classes_: the class labels.
        model_: the trained Keras model.
        history_: ``{metric: [value per epoch]}`` of the training (loss, accuracy).
        n_features_in_: the feature width D.

    Example:
        >>> clf = SequenceClassifier(units=32, epochs=20)  # doctest: +SKIP
        >>> clf.fit(frame_features, labels).predict_proba(new_clips)  # doctest: +SKIP
    """

    def __init__(self, frames=None, units=128, num_layers=2, dropout=0.2, normalize="l2",
                 epochs=30, batch_size=32, learning_rate=1e-3, class_weight=None,
                 random_state=0, verbose=0):
        self.frames = frames
        self.units = units
        self.num_layers = num_layers
        self.dropout = dropout
        self.normalize = normalize
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.class_weight = class_weight
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self):
        for name in ("units", "num_layers", "epochs", "batch_size"):
            _positive_int(name, getattr(self, name))
        if self.frames is not None:
            _positive_int("frames", self.frames)
        if not isinstance(self.dropout, Real) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}")
        if not isinstance(self.learning_rate, Real) or not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate!r}")
        if self.normalize not in _NORMALIZE:
            raise ValueError(f"normalize must be 'l2' or None; got {self.normalize!r}")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced'; got "
                             f"{self.class_weight!r}")

    def fit(self, X, y):
        """Train the network.

        Args:
            X: per-frame features: a list of ``(n_frames_i, D)`` arrays, a ``(n, T, D)``
                array, or a ``(n, D)`` array (one-frame clips).
            y: one label per clip.

        Returns:
            self.

        Raises:
            InputError: malformed features, or as many labels as clips missing.
            ValueError: a bad parameter, or fewer than 2 classes.
        """
        import keras

        from kemo._batches import _Shuffled

        self._check_params()
        x = to_sequences(X, self.frames, self.normalize)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x):
            raise InputError(f"y must hold one label per clip: {len(x)} clips, y of shape "
                             f"{y.shape}")
        check_classification_targets(y)
        self.classes_, target = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y has only one class ({self.classes_[0]!r}); a classifier needs "
                             f"at least 2")
        self.n_features_in_ = int(x.shape[2])
        weights = None
        if self.class_weight == "balanced":
            counts = np.bincount(target)
            weights = {k: len(target) / (len(counts) * c) for k, c in enumerate(counts)}
        seed = integer_seed(self.random_state)
        with keras_seed(seed):  # initial weights and dropout, without global seeding
            self.model_ = self._build()
        self.model_.compile(optimizer=keras.optimizers.Adam(float(self.learning_rate)),
                            loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        # each epoch's order comes from the seed: Keras' own shuffling draws from global state
        batches = _Shuffled(x, target, int(self.batch_size), seed)
        history = batches.fit(self.model_, int(self.epochs), class_weight=weights,
                              verbose=self.verbose)
        self.history_ = {k: [float(v) for v in values] for k, values in history.items()}
        return self

    def _build(self):
        from kemo.models import BiResidualLSTM

        return BiResidualLSTM(input_shape=(None, self.n_features_in_),
                              classes=len(self.classes_), units=int(self.units),
                              num_layers=int(self.num_layers), dropout=float(self.dropout))

    def _restore(self, classes, n_features, weights_file):
        """Become the fitted classifier saved as ``model_.save_weights(weights_file)``.

        Used to load models: ``classes`` and the feature width ``n_features`` rebuild the
        network, the file gives its weights.
        """
        self._check_params()
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = int(n_features)
        self.model_ = self._build()
        self.model_.load_weights(weights_file)
        return self

    def predict_proba(self, X):
        """Class probabilities ``(n_clips, n_classes)``, columns in the order of ``classes_``."""
        check_is_fitted(self)
        x = to_sequences(X, self.frames, self.normalize)
        if x.shape[2] != self.n_features_in_:
            raise InputError(f"X has features of width {x.shape[2]}, but the model was fitted "
                             f"on width {self.n_features_in_}")
        proba = np.asarray(self.model_.predict(x, batch_size=256, verbose=0), np.float64)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X):
        """The most probable class of each clip."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True  # Keras training is reproducible only on one machine
        return tags


# --------------------------------------------------------------------------- C3D clips


class ClipFeatureExtractor(ModelTransformerMixin, TransformerMixin, BaseEstimator):
    """C3D features of face clips: one feature per 16-frame window of each clip.

    ``transform`` takes a list of face stacks ``(n_i, H, W[, C])`` (as
    :class:`kemo.FacePreprocessor` gives them; pixel values 0..255) and returns a list of
    ``(n_windows_i, D)`` float32 arrays. Each clip is resized to the model's input, cut into
    windows of the model's length (:func:`kemo.models.clip_windows`: windows every ``stride``
    frames, the last one ending on the last frame, short clips padded by repeating their last
    frame), preprocessed, and the output of ``layer`` is read for every window. Windows of all
    clips are batched together; memory holds one clip and one batch at a time.

    Average a clip's windows (``Aggregator(stats=("mean",), power=1, normalize=None)``, or
    ``Aggregator(stats=("mean",))`` with the paper's normalisation) for one vector per clip,
    as Tran et al. and the paper do.

    Args:
        model: a Keras model taking clips ``(T, H, W, C)``; a callable returning one (e.g.
            ``functools.partial(kemo.C3D, weights="c3d_sports1m")``), called in ``fit``; the
            path of a ``.keras`` file; or None for :func:`kemo.models.C3D` with random weights
            (seeded by ``random_state``) at ``size`` x ``size``.
        layer: the feature layer (C3D: ``"fc6"``, 4096-d); None for the model output.
        size: face side of the default model (``model=None``): 112 as the paper; smaller is
            faster (at least 16).
        stride: frames between window starts (8: half overlap, as Tran et al.).
        preprocess: None (the model receives 0..255 RGB values), a callable ``f(windows)``,
            or a registered weights name (e.g. ``"c3d_sports1m"``: BGR, mean subtracted).
        batch_size: windows per forward pass.
        random_state: seed of the default model's random weights (int, ``RandomState`` or
            None); the global generators are left alone.

    Attributes:
        model_: the Keras model; feature_model_: the model up to ``layer``;
        input_shape_: the clip shape ``(T, H, W, C)`` the model takes;
        n_features_out_: D.

    Example:
        >>> clips = ClipFeatureExtractor(size=56).fit_transform(face_stacks)  # doctest: +SKIP
        >>> [c.shape for c in clips]  # doctest: +SKIP
        [(3, 4096), (2, 4096)]
    """

    def __init__(self, model=None, layer="fc6", size=112, stride=8, preprocess=None,
                 batch_size=8, random_state=0):
        self.model = model
        self.layer = layer
        self.size = size
        self.stride = stride
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.random_state = random_state

    def fit(self, X=None, y=None):
        """Build the feature model (nothing is learned; ``X`` and ``y`` are ignored).

        Returns:
            self.

        Raises:
            ValueError: a bad argument (unknown layer, a model that does not take clips...).
            kemo.errors.WeightsError: ``preprocess`` names unregistered weights, or ``model``
                is not a loadable ``.keras`` file.
        """
        import keras

        from kemo.models import C3D

        _positive_int("stride", self.stride)
        _positive_int("batch_size", self.batch_size)

        def default():
            side = _positive_int("size", self.size, 16)
            with keras_seed(integer_seed(self.random_state)):
                return C3D(input_shape=(16, side, side, 3))

        model = self._keras_model(default)
        shape = tuple(model.inputs[0].shape[1:])
        if len(shape) != 4 or shape[-1] not in (1, 3) or None in shape[:3]:
            raise ValueError(f"model {model.name!r} takes inputs shaped {shape}; expected "
                             f"clips (T, H, W, 1|3) with T, H and W fixed")
        output = self._layer_output(model)
        self.model_ = model
        self.feature_model_ = keras.Model(model.inputs[0], output, name=f"{model.name}_clips")
        self.input_shape_ = shape
        self.n_features_out_ = int(np.prod(output.shape[1:]))
        self.preprocess_ = resolve_preprocess(self.preprocess)
        return self

    def _windows(self, videos):
        """Yield ``(clip index, window)`` for every window of every clip, in order."""
        from kemo.features import fit_faces
        from kemo.models import clip_windows

        length, height, width, channels = self.input_shape_
        for i, faces in enumerate(videos):
            frames = fit_faces(faces, (height, width, channels))
            for window in clip_windows(frames, length=length, stride=int(self.stride)):
                yield i, window

    def transform(self, X):
        """C3D features of every window of every clip.

        Args:
            X: list of face stacks ``(n_i, H, W)`` or ``(n_i, H, W, C)``, pixel values 0..255
                (e.g. :class:`kemo.faces.VideoFaces`).

        Returns:
            list of float32 arrays ``(n_windows_i, D)``, one per clip, in order.

        Raises:
            InputError: ``X`` is not a list of face stacks, or a clip has no frame.
        """
        check_is_fitted(self, "feature_model_")
        videos = _face_stacks(X)
        out = [[] for _ in videos]
        batch, owners = [], []

        def run():
            x = np.stack(batch)
            if self.preprocess_ is not None:
                x = np.asarray(self.preprocess_(x), np.float32)
            feats = np.asarray(self.feature_model_.predict_on_batch(x), np.float32)
            for owner, row in zip(owners, feats.reshape(len(batch), -1), strict=True):
                out[owner].append(row)
            batch.clear()
            owners.clear()

        for owner, window in self._windows(videos):
            batch.append(window)
            owners.append(owner)
            if len(batch) == self.batch_size:
                run()
        if batch:
            run()
        return [np.stack(rows) for rows in out]


def _face_stacks(X):
    """Validate a list of face stacks; return it as a list of arrays (n_i, H, W[, C])."""
    if isinstance(X, np.ndarray) and X.ndim == 5:
        X = list(X)
    if not isinstance(X, (list, tuple)):
        raise InputError(f"X must be a list of face stacks (n_frames, H, W[, C]); got "
                         f"{type(X).__name__}")
    videos = []
    for i, video in enumerate(X):
        video = np.asarray(video)
        if video.ndim not in (3, 4) or (video.ndim == 4 and video.shape[-1] not in (1, 3, 4)):
            raise InputError(f"clip {i} has shape {video.shape}; expected (n_frames, H, W) or "
                             f"(n_frames, H, W, 1|3|4)")
        if len(video) == 0:
            raise InputError(f"clip {i} has no frame (no face found?): drop it first")
        if not np.issubdtype(video.dtype, np.number):
            raise InputError(f"clip {i} has dtype {video.dtype}; expected pixel values")
        if video.dtype.kind == "f" and not np.isfinite(video).all():
            raise InputError(f"clip {i} contains NaN or inf pixel values")
        videos.append(video)
    return videos
