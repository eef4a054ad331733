"""Old name of :mod:`kemo.face_classifier`, kept so that existing imports work."""

from kemo.face_classifier import DEFAULT_WEIGHTS, FaceEmotionClassifier

__all__ = ["DEFAULT_WEIGHTS", "FaceEmotionClassifier"]
