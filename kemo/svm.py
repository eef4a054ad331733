"""The paper's classifier: a one-vs-rest linear SVM on aggregated features, with probabilities.

Reference:
    Xu et al., EmotiW 2017: "a linear SVM (one-vs-rest)" on the 9216-d aggregated VGG-Face +
    ResNet-10 features, and on the 4096-d C3D features; the SVM scores are fused as class
    probabilities. scikit-learn 1.9 deprecates ``SVC(probability=True)``, so probabilities come
    from cross-validated Platt scaling (``CalibratedClassifierCV``) or a softmax of the scores.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.svm import LinearSVC
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from kemo._folds import split

__all__ = ["LinearSVMClassifier"]

_CALIBRATIONS = ("auto", "sigmoid", "isotonic", "softmax")


def _uses_softmax(estimator):
    # after fit, the method "auto" chose; before, the one asked for
    return getattr(estimator, "calibration_", estimator.calibration) == "softmax"


class LinearSVMClassifier(ClassifierMixin, BaseEstimator):
    """One-vs-rest linear SVM (``LinearSVC``) with class probabilities.

    Args:
        C: SVM regularisation (larger: less regularised).
        calibration: how scores become probabilities. ``"sigmoid"`` (Platt scaling) or
            ``"isotonic"``: ``CalibratedClassifierCV`` with ``cv`` folds, each fold's SVM
            calibrated on its held-out part, and the folds' probabilities averaged (``cv`` SVM
            fits in all); every class needs ``cv`` samples, else ``fit`` raises.
            ``"softmax"``: one SVM on all data and a softmax of its one-vs-rest scores (fast,
            ranks like the SVM, but not calibrated: the probabilities are flat because
            hinge-loss margins are about +-1). ``"auto"`` (default): ``"sigmoid"``, or
            ``"softmax"`` when ``cv`` is an int larger than the smallest class (a splitter
            given as ``cv`` always gets ``"sigmoid"``); the method used is ``calibration_``.
            The default is ``"auto"`` so that the classifier fits inside a cross-validation or
            a grid search whose training folds are small: with 40 CK+ clips of 6 emotions,
            ``GroupKFold(5)`` leaves some class with 2 clips in a training fold, and a fixed
            sigmoid calibration failed every fit of ``GridSearchCV`` (all scores NaN). Ask for
            ``"sigmoid"`` to get an error instead.
        cv: folds for the calibration (int or a scikit-learn splitter). An int gives
            stratified folds, or ``GroupKFold`` folds when ``fit`` gets ``groups``: with
            several clips of one person, calibrating on folds that share people would make the
            probabilities overconfident.
        class_weight: as in ``LinearSVC`` (``None`` or ``"balanced"`` or a dict).
        dual: liblinear solver, as in ``LinearSVC``. The default primal Newton solver
            (``False``) converges in about 10 iterations on aggregated features even at large
            ``C``, where the dual coordinate descent (``True``; ``LinearSVC``'s choice when
            features outnumber samples) needs hundreds: 0.3 s against 1.7 s at ``C=10`` on
            CK+ (250 videos x 2048 features), same predictions. Use ``True`` or ``"auto"``
            for very wide sparse inputs.
        max_iter: iterations of the liblinear solver.
        tol: solver tolerance.
        random_state: seed of the dual solver's coordinate order.

    Attributes:
        classes_: the class labels.
        calibration_: the calibration used (``calibration``, with ``"auto"`` resolved).
        estimator_: the fitted ``LinearSVC`` (softmax) or ``CalibratedClassifierCV``.
        n_features_in_: number of input features.
        n_iter_: largest number of solver iterations over the SVMs fitted.

    Example:
        >>> from sklearn.pipeline import make_pipeline
        >>> model = make_pipeline(Aggregator(), LinearSVMClassifier(C=0.1))  # doctest: +SKIP
        >>> GridSearchCV(model, {"linearsvmclassifier__C": [0.01, 0.1, 1]})  # doctest: +SKIP
    """

    def __init__(self, C=1.0, calibration="auto", cv=3, class_weight=None, dual=False,
                 max_iter=1000, tol=1e-4, random_state=None):
        self.C = C
        self.calibration = calibration
        self.cv = cv
        self.class_weight = class_weight
        self.dual = dual
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None, groups=None):
        """Fit the SVM(s) and the calibration.

        Args:
            X: features ``(n_samples, n_features)`` (dense or sparse).
            y: class labels ``(n_samples,)``.
            sample_weight: optional per-sample weights.
            groups: group of each sample (e.g. subject ids), or None: the calibration folds
                then keep each group on one side (see ``cv``).

        Returns:
            self.

        Raises:
            ValueError: a bad parameter, (``"sigmoid"``, ``"isotonic"``) too few samples
                of a class for ``cv`` folds, or ``groups`` that do not fit ``y``.
        """
        if self.calibration not in _CALIBRATIONS:
            raise ValueError(f"calibration must be one of {_CALIBRATIONS}; got "
                             f"{self.calibration!r}")
        X, y = validate_data(self, X, y, accept_sparse="csr")
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if self.classes_.size < 2:
            raise ValueError(f"y has only one class ({self.classes_[0]!r}); a classifier needs "
                             f"at least 2")
        self.calibration_ = self.calibration
        if self.calibration == "auto":
            counts = np.unique(y, return_counts=True)[1]
            enough = not isinstance(self.cv, (int, np.integer)) or counts.min() >= self.cv
            self.calibration_ = "sigmoid" if enough else "softmax"
        svm = LinearSVC(C=self.C, class_weight=self.class_weight, dual=self.dual,
                        max_iter=self.max_iter, tol=self.tol, random_state=self.random_state)
        if self.calibration_ == "softmax":
            self.estimator_ = svm.fit(X, y, sample_weight=sample_weight)
            self.n_iter_ = int(svm.n_iter_)
        else:
            cv = self.cv if groups is None else split(self.cv, X, y, groups)
            self.estimator_ = CalibratedClassifierCV(svm, method=self.calibration_, cv=cv)
            self.estimator_.fit(X, y, sample_weight=sample_weight)
            self.n_iter_ = int(max(c.estimator.n_iter_
                                   for c in self.estimator_.calibrated_classifiers_))
        return self

    @available_if(_uses_softmax)
    def decision_function(self, X):
        """One-vs-rest SVM scores (only where the softmax calibration is used).

        Returns:
            ``(n_samples, n_classes)``, or ``(n_samples,)`` for two classes.
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", reset=False)
        return self.estimator_.decision_function(X)

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``.

        Returns:
            ``(n_samples, n_classes)``, rows summing to 1.
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", reset=False)
        if self.calibration_ != "softmax":
            return self.estimator_.predict_proba(X)
        scores = self.estimator_.decision_function(X)
        if scores.ndim == 1:
            scores = np.column_stack([-scores, scores])
        scores = scores - scores.max(axis=1, keepdims=True)
        proba = np.exp(scores)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X):
        """The most probable class of each sample (consistent with ``predict_proba``)."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
