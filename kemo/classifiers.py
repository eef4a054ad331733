"""Old name of :mod:`kemo.svm`, kept so that existing imports work."""

from kemo.svm import LinearSVMClassifier

__all__ = ["LinearSVMClassifier"]
