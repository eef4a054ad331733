"""Evaluation protocols of the video data sets: which clips train, which clips score.

* AFEW (EmotiW): train on ``Train``, score on ``Val`` (the test labels are not public); the
  paper reports its figures on ``Val``.
* CK+: no official split; people appear in several clips, so folds are by subject
  (``GroupKFold`` over ``subjects``), and every clip is scored by a model that never saw its
  person.

:func:`splits_for` gives those splits for a loader's result, and :func:`held_out_proba` the
class probabilities of every scored clip from models fitted on the other side of each split,
for any estimator with ``predict_proba`` (a pipeline, a ``GridSearchCV``, a
:class:`kemo.FusionClassifier`...). :func:`subject_splits` makes leave-one-subject-out or
K-fold splits from any subject ids, and :func:`cross_validate` runs a whole
:class:`kemo.VideoEmotionRecognizer` configuration through them (``kemo evaluate
--protocol``).

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
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

from kemo.errors import InputError

__all__ = ["cross_validate", "held_out_proba", "splits_for", "subject_splits"]


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


def subject_splits(groups, protocol="loso"):
    """Folds that keep each subject's videos on one side, as ``[(train, test)]``.

    Args:
        groups: the subject (or any group) of each video.
        protocol: ``"loso"``: leave one subject out, a fold per subject; ``"kfold:K"``: ``K``
            folds of whole subjects (:class:`sklearn.model_selection.GroupKFold`).

    Returns:
        list of ``(train, test)`` int64 index arrays; every video is on the test side of one
        fold.

    Raises:
        InputError: an unknown protocol, ``K`` below 2 or above the number of subjects, or
            fewer than 2 subjects.

    Example:
        >>> [test.tolist() for _, test in subject_splits(["a", "a", "b", "c"])]
        [[0, 1], [2], [3]]
    """
    groups = np.asarray(groups)
    subjects = np.unique(groups)
    if len(subjects) < 2:
        raise InputError(f"subject-independent folds need at least 2 subjects; got "
                         f"{len(subjects)}")
    name, _, count = str(protocol).partition(":")
    if name == "loso" and not count:
        splitter = LeaveOneGroupOut()  # folds in subject order
    elif name == "kfold" and count.isdigit() and int(count) >= 2:
        if int(count) > len(subjects):
            raise InputError(f"protocol {protocol!r}: {len(subjects)} subjects cannot make "
                             f"{count} folds; lower K or use 'loso'")
        splitter = GroupKFold(int(count))
    else:
        raise InputError(f"protocol must be 'loso' or 'kfold:K' with K >= 2; got {protocol!r}")
    folds = splitter.split(np.zeros(len(groups)), groups=groups)
    return [(train.astype(np.int64), test.astype(np.int64)) for train, test in folds]


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


def cross_validate(recognizer, videos, labels, groups, protocol="loso"):
    """Subject-independent predictions of a recogniser configuration on labelled videos.

    Faces are found once for all folds (finding faces learns nothing, so sharing it leaks
    nothing). Each fold of :func:`subject_splits` fits a copy of ``recognizer`` on the other
    subjects' videos, with their subjects as ``groups`` so that its own calibration and fusion
    folds keep subjects apart too, and predicts the fold's videos. Videos without a face or
    that cannot be read are left out and listed.

    Args:
        recognizer: an unfitted :class:`kemo.VideoEmotionRecognizer` (its settings are the
            configuration; it is cloned, never changed).
        videos: video paths (or frame arrays, or :class:`kemo.faces.VideoFaces`).
        labels: one label per video.
        groups: the subject of each video.
        protocol: ``"loso"`` or ``"kfold:K"`` (see :func:`subject_splits`).

    Returns:
        sklearn.utils.Bunch with ``proba`` (n, K) float, NaN rows for left-out videos;
        ``classes`` and ``class_names`` (the columns); ``fold`` (n,) int, the fold that
        predicted each video (-1: left out); ``folds``, the ``(train, test)`` indices into
        ``videos`` of each fold; and ``failures``, the :class:`kemo.VideoFailure` of the
        left-out videos.

    Raises:
        InputError: lengths that differ, a bad protocol, or a fold whose training side has a
            class too small for the SVM calibration (checked before any face is searched).
    """
    import warnings

    from sklearn.utils import Bunch

    from kemo.recognizer import _names_of

    labels, groups = np.asarray(labels), np.asarray(groups)
    if not len(videos) == len(labels) == len(groups):
        raise InputError(f"{len(videos)} videos, {len(labels)} labels and {len(groups)} groups: "
                         f"give one label and one group per video")
    rec = clone(recognizer).set_params(errors="skip")
    rec._check_params()
    _check_folds(subject_splits(groups, protocol), labels, groups, rec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the failures are returned
        found, failures = rec._find_faces(list(videos))
    ok = np.array([f is not None for f in found], bool)
    if ok.sum() == 0:
        raise InputError(f"no video could be analysed: {failures[0].error}")
    kept = np.flatnonzero(ok)
    # folds again on the videos kept: a failure may empty a subject
    splits = subject_splits(groups[kept], protocol)
    _check_folds(splits, labels[kept], groups[kept], rec)
    classes = np.unique(labels[kept])
    proba = np.full((len(labels), len(classes)), np.nan)
    held, _ = held_out_proba(rec, [found[i] for i in kept], labels[kept], splits,
                             groups=groups[kept], labels=classes)
    proba[kept] = held
    fold = np.full(len(labels), -1)
    folds = []
    for k, (train, test) in enumerate(splits):
        fold[kept[test]] = k
        folds.append((kept[train], kept[test]))
    return Bunch(proba=proba, classes=classes, class_names=_names_of(classes), fold=fold,
                 folds=folds, failures=failures)


def _check_folds(splits, labels, groups, rec):
    """Raise when a fold's training side cannot fit ``rec``, naming the fold's test subjects.

    It cannot with a single class, or a class too small for the SVM calibration's folds.
    """
    from kemo.recognizer import calibration_shortfall

    for k, (train, test) in enumerate(splits):
        held_out = sorted(set(groups[test].tolist()))
        if len(np.unique(labels[train])) < 2:
            raise InputError(f"fold {k} (test subjects {held_out}): its training videos hold "
                             f"one class; a recogniser needs 2")
        short = calibration_shortfall(labels[train], rec.calibration, rec.cv)
        if short is not None:
            name, count = short
            raise InputError(f"fold {k} (test subjects {held_out}): class {name} has {count} "
                             f"training video(s), but calibration {rec.calibration!r} fits "
                             f"cv={rec.cv} folds; set calibration to 'softmax' or 'auto' (on "
                             f"the command line: --model-config "
                             f"'{{\"calibration\": \"softmax\"}}'), or a lower cv")
