"""Cross-validation folds that keep each group (e.g. a person's clips) on one side.

scikit-learn's default folds for a classifier and an int ``cv``, ``StratifiedKFold``, ignore
``groups`` (they only warn), so a subject's other clips would sit in the training part of the
folds that score it. Every kemo estimator that takes ``groups`` makes its folds here.
"""

from numbers import Integral

import numpy as np
from sklearn.model_selection import GroupKFold, check_cv


def split(cv, X, y, groups=None):
    """The ``(train, test)`` index pairs of ``cv`` on ``(X, y)``, grouped when ``groups`` are given.

    Args:
        cv: an int (number of folds), a scikit-learn splitter, or an iterable of index pairs.
        X: the samples (only their number is read by the built-in splitters).
        y: class labels.
        groups: one group label per sample, or None.

    Returns:
        list of ``(train, test)`` integer index arrays. An int ``cv`` gives stratified folds
        without groups and ``GroupKFold(min(cv, n_groups))`` with them (as many folds as there
        are groups when they are fewer); a splitter or iterable is used as it is, with
        ``groups``.

    Raises:
        ValueError: ``groups`` of another length than ``y``, or fewer than 2 groups for an int
            ``cv``.
    """
    if groups is not None and isinstance(cv, Integral) and not isinstance(cv, bool):
        groups = np.asarray(groups)
        if len(groups) != len(y):
            raise ValueError(f"groups must hold one label per sample: {len(y)} samples, "
                             f"{len(groups)} groups")
        n_groups = len(np.unique(groups))
        if n_groups < 2:
            raise ValueError(f"folds grouped by groups need at least 2 groups; got {n_groups}")
        cv = GroupKFold(min(int(cv), n_groups))
    return list(check_cv(cv, y, classifier=True).split(X, y, groups))
