"""Keras 3 model builders (keras.applications style), one per file.

Every builder has the signature ``(include_top=True, weights=None,
input_tensor=None, input_shape=None, pooling=None, classes=7,
classifier_activation="softmax", name=...)``, validates its arguments before
building, and loads weights through the registry in :mod:`kemo.weights`.

=================  ===============  =========================================
builder            default input    feature taps (layer name: size)
=================  ===============  =========================================
``VGGFace``        224x224x3        ``fc6``: 4096 (``fc6_relu`` after ReLU)
``ResNet10``       150x150x3        ``fc1``: 512
``FaceEnsemble``   48x48x1          ``fc1``: 512 x members
``C3D``            16x112x112x3     ``fc6``, ``fc7``: 4096
``BiResidualLSTM`` 128x4096         ``features``: 2 x units
=================  ===============  =========================================
"""

# ruff: noqa: E402 - TensorFlow is started quietly before the builders import Keras
from kemo._tensorflow import import_quietly

import_quietly()

from kemo.models import augment, c3d, ensemble, lstm, resnet10, vggface
from kemo.models.augment import RandomAffine
from kemo.models.c3d import C3D, clip_windows
from kemo.models.c3d import preprocess_input as c3d_preprocess_input
from kemo.models.ensemble import FaceEnsemble
from kemo.models.lstm import BiResidualLSTM, MaskedTimePooling
from kemo.models.resnet10 import ResNet10
from kemo.models.vggface import VGGFace
from kemo.models.vggface import preprocess_input as vggface_preprocess_input

__all__ = [
    "VGGFace",
    "ResNet10",
    "FaceEnsemble",
    "C3D",
    "BiResidualLSTM",
    "MaskedTimePooling",
    "RandomAffine",
    "clip_windows",
    "vggface_preprocess_input",
    "c3d_preprocess_input",
    "augment",
    "c3d",
    "ensemble",
    "lstm",
    "resnet10",
    "vggface",
]
