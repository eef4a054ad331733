"""FaceEmotionClassifier: kemo's pretrained per-face emotion model, scikit-learn style."""

import dataclasses

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin

from kemo.datasets import CLASS_NAMES
from kemo.errors import InputError, WeightsError

DEFAULT_WEIGHTS = "fer2013_resnet10"
# Faces turned into model input at a time: the float32 copies of a whole long video's faces
# would grow memory with its length (about 31 KB per 48x48 face).
_CHUNK = 1024


class FaceEmotionClassifier(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Classify face crops into the 7 FER2013 emotions with a shipped, pretrained model.

    Works offline out of the box: the default weights ship inside the package
    (see ``weights/`` and :mod:`kemo.weights`). The model is pretrained, so
    ``fit`` only loads it (it is there so the classifier composes in
    pipelines); ``predict_proba`` may be called straight away.

    Args:
        weights: Registered weights name (default: the shipped FER2013
            ResNet-10; any registered entry with a classifier top works) or
            the path of a ``.keras`` model file, loaded in Keras safe mode and
            fed like the default (gray or RGB pixels scaled to 0..1).
        flip: Average the predictions of each face and its mirror image
            (test-time augmentation; +2.0 points on FER2013 PublicTest with the shipped model:
            66.90 % against 64.86 %).
        batch_size: Faces per forward pass.

    Attributes:
        classes_: Class ids ``0..6`` in FER2013 order.
        class_names_: Names of those classes.

    Example:
        >>> clf = FaceEmotionClassifier()
        >>> proba = clf.predict_proba(faces)        # (N, 7)
        >>> [clf.class_names_[i] for i in clf.predict(faces)]
    """

    def __init__(self, weights=DEFAULT_WEIGHTS, flip=True, batch_size=256):
        self.weights = weights
        self.flip = flip
        self.batch_size = batch_size

    def fit(self, X=None, y=None):
        """Load the pretrained model; ``X`` and ``y`` are ignored.

        Returns:
            self
        """
        self.model_, self.info_ = _load(self.weights)
        self.classes_ = np.arange(self.model_.output_shape[-1])
        self.class_names_ = tuple(self.info_.class_names or CLASS_NAMES)
        self.n_features_in_ = int(np.prod(self.model_.input_shape[1:]))
        return self

    def __sklearn_is_fitted__(self):
        # Pretrained: usable without fit; the model loads on first use.
        return True

    def _model(self):
        if not hasattr(self, "model_"):
            self.fit()
        return self.model_

    def _checked(self, faces):
        """Validate uint8 faces of any size; return them as an array."""
        faces = np.asarray(faces)
        if faces.ndim not in (3, 4) or (faces.ndim == 4 and faces.shape[-1] not in (1, 3, 4)):
            raise InputError(
                "faces must be an array (N, H, W) or (N, H, W, 1|3|4) of face crops; "
                f"got shape {faces.shape}"
            )
        if faces.dtype != np.uint8:
            if not np.issubdtype(faces.dtype, np.number) or not np.isfinite(faces).all():
                raise InputError(
                    f"faces must be uint8 pixels (finite values); got dtype {faces.dtype}"
                )
            if faces.min() < 0 or faces.max() > 255:
                raise InputError(
                    f"faces of dtype {faces.dtype} must hold pixel values in 0..255; "
                    f"got range [{faces.min()}, {faces.max()}]"
                )
        return faces

    def _run(self, faces, model):
        """``model`` on checked faces (and their mirror images), a chunk of faces at a time."""
        from kemo.features import fit_faces

        outs = []
        for start in range(0, len(faces), _CHUNK):
            x = self.info_.preprocess(fit_faces(faces[start:start + _CHUNK],
                                                self._model().input_shape[1:]))
            out = model.predict(x, batch_size=self.batch_size, verbose=0)
            if self.flip:
                out = (out + model.predict(x[:, :, ::-1], batch_size=self.batch_size,
                                           verbose=0)) / 2
            outs.append(out.astype("float32"))
        return np.concatenate(outs)

    def predict_proba(self, faces):
        """Emotion probabilities of face crops.

        Args:
            faces: uint8 array ``(N, H, W)`` (grayscale) or ``(N, H, W, 3)``
                (RGB) of face crops, any size; resized to the model's input.

        Returns:
            float32 array ``(N, 7)`` in FER2013 class order (:data:`CLASS_NAMES`).

        Raises:
            kemo.errors.InputError: On a wrong shape, dtype or non-finite values.
        """
        faces = self._checked(faces)
        model = self._model()
        if len(faces) == 0:
            return np.zeros((0, len(self.classes_)), "float32")
        return self._run(faces, model)

    def predict(self, faces):
        """Most probable class id of each face (see ``class_names_``)."""
        proba = self.predict_proba(faces)  # loads the model, and with it classes_
        return self.classes_[np.argmax(proba, axis=1)]

    def transform(self, faces):
        """Penultimate-layer (``fc1``, 512-d) features of each face, for aggregation."""
        import keras

        model = self._model()
        faces = self._checked(faces)
        if not hasattr(self, "embedder_"):
            self.embedder_ = keras.Model(model.inputs, model.get_layer("fc1").output)
        if len(faces) == 0:
            return np.zeros((0, self.embedder_.output_shape[-1]), "float32")
        return self._run(faces, self.embedder_)


def _load(weights):
    """Return ``(model, weights entry)`` for a registered name or a ``.keras`` file."""
    import os

    from kemo import models
    from kemo import weights as registry

    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        if not str(weights).endswith(".keras"):
            raise WeightsError(f"{weights}: FaceEmotionClassifier loads registered weights "
                               "names or whole .keras model files")
        from kemo.features import load_keras_file

        model = load_keras_file(weights)
        default = registry.get(DEFAULT_WEIGHTS)
        info = dataclasses.replace(default, name=str(weights), input_shape=model.input_shape[1:],
                                   color="gray" if model.input_shape[-1] == 1 else "rgb",
                                   classes=model.output_shape[-1], class_names=None,
                                   shipped=False, sha256=None, card=None, metrics={})
        return model, info
    info = registry.get(weights)
    if not info.include_top or not info.classes:
        raise WeightsError(f"weights {weights!r} have no classifier top; pick an entry with "
                           f"classes, e.g. {DEFAULT_WEIGHTS!r}")
    builder = getattr(models, info.architecture)
    model = builder(weights=weights, input_shape=info.input_shape, classes=info.classes)
    return model, info
