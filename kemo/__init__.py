"""kemo: video emotion recognition with Keras 3 and scikit-learn.

The flow is frames -> faces -> features -> aggregation -> classifiers -> fusion::

    import kemo
    clf = kemo.FaceEmotionClassifier()          # shipped FER2013 model, offline
    faces = kemo.FacePreprocessor().fit_transform(["clip.avi"])

Names are imported lazily (on first use), so ``import kemo`` and the ``kemo``
command start fast without loading Keras or TensorFlow until needed.
"""

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    # datasets and video
    "CLASS_NAMES": "kemo.datasets",
    "data_home": "kemo.datasets",
    "load_fer2013": "kemo.datasets",
    "load_afew": "kemo.datasets",
    "load_ckplus": "kemo.datasets",
    "Video": "kemo.video",
    "read_frames": "kemo.video",
    "write_video": "kemo.video",
    # faces
    "FaceDetector": "kemo.faces",
    "FaceTracker": "kemo.faces",
    "FacePreprocessor": "kemo.faces",
    "VideoFaces": "kemo.faces",
    "NoFaceWarning": "kemo.faces",
    "KEYPOINT_NAMES": "kemo.faces",
    "align_face": "kemo.faces",
    "alignment_matrix": "kemo.faces",
    "eye_targets": "kemo.faces",
    # models and weights
    "VGGFace": "kemo.models",
    "ResNet10": "kemo.models",
    "C3D": "kemo.models",
    "BiResidualLSTM": "kemo.models",
    "clip_windows": "kemo.models",
    "WeightsInfo": "kemo.weights",
    # estimators
    "FaceEmotionClassifier": "kemo.face_classifier",
    "FrameFeatureExtractor": "kemo.features",
    "fit_faces": "kemo.features",
    "Aggregator": "kemo.aggregation",
    "LinearSVMClassifier": "kemo.svm",
    "FusionClassifier": "kemo.fusion",
    "Views": "kemo.fusion",
    "select_view": "kemo.fusion",
    "VideoEmotionRecognizer": "kemo.recognizer",
    "VideoAnalysis": "kemo.recognizer",
    "TrackResult": "kemo.recognizer",
    "VideoFailure": "kemo.recognizer",
    "LiveStream": "kemo.live",
    "LiveResult": "kemo.live",
    "LiveFace": "kemo.live",
    "ClipFeatureExtractor": "kemo.temporal",
    "SequenceClassifier": "kemo.temporal",
    "to_sequences": "kemo.temporal",
    "splits_for": "kemo.protocols",
    "held_out_proba": "kemo.protocols",
    # evaluation
    "evaluate": "kemo.evaluation",
    "EvaluationReport": "kemo.evaluation",
    "compare": "kemo.evaluation",
    # errors
    "KemoError": "kemo.errors",
    "DataNotFoundError": "kemo.errors",
    "VideoReadError": "kemo.errors",
    "VideoWriteError": "kemo.errors",
    "NoFaceError": "kemo.errors",
    "WeightsError": "kemo.errors",
    "InputError": "kemo.errors",
    "BackendError": "kemo.errors",
}

# "classifier" and "classifiers" are the old names of face_classifier and svm, kept so that
# existing code works
_SUBMODULES = (
    "aggregation", "classifier", "classifiers", "datasets", "errors", "evaluation",
    "face_classifier", "faces", "features", "fusion", "live", "models", "plotting", "protocols",
    "recognizer", "svm", "temporal", "timeline", "training", "video", "weights",
)

__all__ = sorted(_EXPORTS) + list(_SUBMODULES)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"kemo.{name}")
    else:
        raise AttributeError(f"module 'kemo' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
