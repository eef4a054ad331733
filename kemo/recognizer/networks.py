"""The networks a recogniser reads faces with, loaded once and shared between recognisers."""

import functools
import threading

import numpy as np

# Frame-feature tap of each architecture (the paper: VGG-Face fc6, ResNet-10 fc1). The
# paper's fc6 is Caffe's blob, which its in-place ReLU overwrites: fc6_relu here.
_TAPS = {"VGGFace": "fc6_relu", "ResNet10": "fc1", "FaceEnsemble": "fc1"}
#: Architectures of face classifiers: one ResNet-10, or an ensemble of them.
FACE_ARCHITECTURES = ("ResNet10", "FaceEnsemble")


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
def _face_classifier(weights, flip, flip_margin, batch_size, stamp=None):
    """A loaded FaceEmotionClassifier, shared by recognisers (inference never changes it).

    ``stamp`` (see :func:`_file_stamp`) is only part of the cache key: a model file rewritten
    since, e.g. by a new training run, is loaded again.
    """
    from kemo.face_classifier import FaceEmotionClassifier

    return FaceEmotionClassifier(weights=weights, flip=flip, flip_margin=flip_margin,
                                 batch_size=batch_size).fit()


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


def _file_stamp(weights):
    """Identity of a model file (:func:`kemo._files.file_stamp`), or None for a name."""
    from kemo import weights as registry
    from kemo._files import file_stamp

    path = registry.model_file(weights)
    return None if path is None else file_stamp(path)


def _is_face_classifier(info):
    """Whether registered weights are a face classifier: features from its ``fc1``."""
    return info.architecture in FACE_ARCHITECTURES and bool(info.classes)


def _batched(function, stacks):
    """``function`` of the face stacks laid end to end, split back per stack.

    One call for all stacks when they share a face shape (full batches); else one per stack.
    A ``function`` that returns a tuple of arrays gives, per stack, the tuple of their parts.
    """
    if len({stack.shape[1:] for stack in stacks}) > 1:
        return [function(stack) for stack in stacks]
    out = function(np.concatenate(stacks))
    cuts = np.cumsum([len(stack) for stack in stacks])[:-1]
    if isinstance(out, tuple):
        return list(zip(*(np.split(part, cuts) for part in out), strict=True))
    return np.split(out, cuts)


def _unit_range(x):
    """Pixel values 0..255 to 0..1: the input of a C3D with random weights."""
    return x / 255.0
