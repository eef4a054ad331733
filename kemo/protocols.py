"""Evaluation protocols of the video data sets: which clips train, which clips score.

* AFEW (EmotiW): train on ``Train``, score on ``Val`` (the test labels are not public); the
  paper reports its figures on ``Val``.
* CK+: no official split; people appear in several clips, so folds are by subject
  (``GroupKFold`` over ``subjects``), and every clip is scored by a model that never saw its
  person.

:func:`splits_for` gives those splits for a loader's result, and :func:`held_out_proba` the
class probabilities of every scored clip from models fitted on the other side of each split,
for any estimator with ``predict_proba`` (a pipeline, a ``GridSearchCV``, a
:class:`kemo.FusionClassifier`...).

Example:
    >>> videos = kemo.load_ckplus(data)  # doctest: +SKIP
    >>> splits = splits_for(videos)  # doctest: +SKIP
    >>> proba, scored = held_out_proba(LinearSVMClassifier(), X, videos.labels, splits)
    ...  # doctest: +SKIP
    >>> kemo.evaluate(videos.labels[scored], proba[scored])  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GroupKFold

from kemo.errors import InputError

__all__ = ["held_out_proba", "splits_for"]


def splits_for(videos, n_splits=5):
    """The evaluation splits of a video data set, as ``[(train indices, test indices)]``.

    Args:
        videos: the result of :func:`kemo.datasets.load_afew` (it has ``subset``: one split,
            Train -> Val) or of :func:`kemo.datasets.load_ckplus` (it has ``subjects``:
            ``n_splits`` folds by subject), or any Bunch with ``labels`` and one of those.
        n_splits: folds by subject (at most the number of subjects).

    Returns:
        list of ``(train, test)`` int64 index arrays.

    Raises:
        InputError: ``videos`` has neither ``subset`` nor ``subjects``, a split side would be
            empty, or there are fewer subjects than ``n_splits``.
    """
    if isinstance(n_splits, bool) or not isinstance(n_splits, int | np.integer) or n_splits < 2:
        raise InputError(f"n_splits must be an int >= 2; got {n_splits!r}")
    labels = np.asarray(videos["labels"])
    if "subset" in videos:
        subset = np.asarray(videos["subset"])
        train, test = np.flatnonzero(subset == "Train"), np.flatnonzero(subset == "Val")
        if not len(train) or not len(test):
            raise InputError(f"AFEW protocol needs Train and Val clips; got {len(train)} Train "
                             f"and {len(test)} Val (load both subsets: subset=None)")
        return [(train, test)]
    if "subjects" in videos:
        subjects = np.asarray(videos["subjects"])
        if len(np.unique(subjects)) < n_splits:
            raise InputError(f"{len(np.unique(subjects))} subjects cannot make {n_splits} "
                             f"subject folds; lower n_splits")
        folds = GroupKFold(n_splits).split(np.zeros(len(labels)), labels, subjects)
        return [(train.astype(np.int64), test.astype(np.int64)) for train, test in folds]
    raise InputError("videos has neither 'subset' (AFEW) nor 'subjects' (CK+): pass the result "
                     "of kemo.load_afew or kemo.load_ckplus")


def _take(X, rows):
    """Rows of X: an array, a sparse matrix, a kemo Views, or a list (e.g. face stacks)."""
    if isinstance(X, (list, tuple)):
        return [X[i] for i in rows]
    return X[rows]


def held_out_proba(estimator, X, y, splits, groups=None, labels=None, return_estimators=False):
    """Class probabilities of every test clip, from a copy of ``estimator`` fitted on its split.

    Args:
        estimator: any scikit-learn classifier with ``predict_proba``; it is cloned for every
            split.
        X: the inputs, indexable by rows: an array, a :class:`kemo.Views`, or a list (one item
            per clip).
        y: one label per clip.
        splits: ``[(train, test)]`` index arrays, e.g. from :func:`splits_for`.
        groups: optional group of each clip (e.g. subjects), passed as ``groups=`` to
            ``fit`` (for a ``GridSearchCV`` or a :class:`kemo.FusionClassifier` whose own folds
            are grouped).
        labels: the probability columns, in order; default: the sorted labels of ``y``. A
            class missing from one split's training side gets probability 0 there.
        return_estimators: also return the fitted copy of each split (to inspect them).

    Returns:
        ``(proba, scored)``: float array ``(n_clips, n_labels)`` (NaN rows for clips no split
        scores) and the sorted indices of the scored clips.

    Raises:
        InputError: lengths that differ, an empty split, or a fitted model whose classes are
            not among ``labels``.

    With ``return_estimators=True`` a third value follows: the fitted copy of each split.
    """
    y = np.asarray(y)
    n = len(y)
    if len(X) != n or (groups is not None and len(groups) != n):
        raise InputError(f"X has {len(X)} rows, y {n}"
                         + ("" if groups is None else f", groups {len(groups)}")
                         + ": they must match")
    labels = np.unique(y) if labels is None else np.asarray(labels)
    position = {label: i for i, label in enumerate(labels.tolist())}
    proba = np.full((n, len(labels)), np.nan)
    scored, fitted = [], []
    for k, (train, test) in enumerate(splits):
        train, test = np.asarray(train), np.asarray(test)
        if not len(train) or not len(test):
            raise InputError(f"split {k} has {len(train)} training and {len(test)} test clips")
        kwargs = {} if groups is None else {"groups": np.asarray(groups)[train]}
        model = clone(estimator).fit(_take(X, train), y[train], **kwargs)
        columns = [position.get(c) for c in np.asarray(model.classes_).tolist()]
        if None in columns:
            raise InputError(f"split {k}: the model's classes {model.classes_} are not among "
                             f"labels {labels}")
        proba[test] = 0.0
        proba[np.ix_(test, columns)] = model.predict_proba(_take(X, test))
        scored.append(test)
        fitted.append(model)
    scored = np.unique(np.concatenate(scored)) if scored else np.array([], np.int64)
    return (proba, scored, fitted) if return_estimators else (proba, scored)
