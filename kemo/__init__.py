"""kemo: video emotion recognition with Keras 3 and scikit-learn."""

__version__ = "0.1.0"
