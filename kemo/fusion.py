"""Score fusion: a weighted sum of the class probabilities of classifiers on different views.

Reference:
    Xu et al., EmotiW 2017, section "Fusion": the probabilities of the aggregated-feature SVM,
    the C3D SVM and the residual LSTM are summed with weights 0.5 / 0.25 / 0.25, found by random
    search on the validation set. The paper names that choice as the cause of its drop from
    validation to test; :class:`FusionClassifier` can search the weights on out-of-fold
    predictions of a cross-validation instead, and refits the members on all the data.

How each member reads its own view of ``X``. Every member is a ``(name, estimator, view)``
triple and receives ``select_view(X, view)``:

* ``view=None``: the whole ``X`` (e.g. a member that is a ``Pipeline`` doing its own selection);
* ``X`` a 2-D array, sparse matrix or DataFrame: ``view`` selects columns like in
  ``ColumnTransformer`` (an int, a slice, a list of ints, a boolean mask, or DataFrame column
  names). This covers views that can share one table, e.g. ``np.hstack([aggregated, c3d])``;
* ``X`` a :class:`Views` (named inputs of any shape: 2-D features, 3-D sequences for an LSTM,
  lists of face stacks...): ``view`` is the name of one input;
* ``view`` a callable: ``view(X)``.

Every form keeps ``X`` one object indexed by sample, so ``clone``, ``cross_val_predict`` and
``GridSearchCV`` slice it by rows like any scikit-learn input (a plain dict of views could not
be sliced).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.utils import (
    Bunch,
    _safe_indexing,
    assert_all_finite,
    check_random_state,
    get_tags,
    indexable,
)
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_array,
    check_is_fitted,
    column_or_1d,
    has_fit_parameter,
    validate_data,
)

from kemo._folds import split
from kemo.errors import InputError

__all__ = ["FusionClassifier", "Views", "select_view"]


class Views:
    """Several named inputs for the same samples, sliceable by sample like one array.

    Each input may be anything scikit-learn can index by rows: an array of any number of
    dimensions (2-D features, ``(n, T, D)`` sequences), a sparse matrix, a DataFrame, or a list
    (e.g. one face stack per video). ``views["c3d"]`` returns one input; ``views[rows]`` (an
    integer array, list, slice or boolean mask) returns a new :class:`Views` with those samples
    of every input, which is what ``GridSearchCV`` and ``cross_val_predict`` do.

    Args:
        data: a mapping ``{name: input}``, or the inputs as keyword arguments.

    Raises:
        InputError: no input, or inputs with different numbers of samples.

    Example:
        >>> X = Views(agg=np.zeros((4, 9216)), c3d=np.zeros((4, 4096)))
        >>> X[[0, 2]]["c3d"].shape
        (2, 4096)
    """

    def __init__(self, data=None, /, **views):
        merged = dict(data or {}, **views)
        if not merged:
            raise InputError("Views needs at least one named input")
        lengths = {name: _num_rows(value) for name, value in merged.items()}
        if len(set(lengths.values())) != 1:
            raise InputError(f"all views need the same number of samples; got {lengths}")
        self._data = merged
        self._n = next(iter(lengths.values()))

    @property
    def shape(self):
        """``(n_samples,)``, so that scikit-learn indexes and counts samples."""
        return (self._n,)

    def __len__(self):
        return self._n

    def keys(self):
        """Names of the views."""
        return self._data.keys()

    def __contains__(self, name):
        return name in self._data

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self._data:
                raise KeyError(f"no view named {key!r}; the views are {list(self._data)}")
            return self._data[key]
        if isinstance(key, tuple) and len(key) == 2 and key[1] is Ellipsis:
            key = key[0]  # how scikit-learn indexes rows of array-likes: X[rows, ...]
        if isinstance(key, Integral):
            key = [key]
        return Views({name: _safe_indexing(value, key) for name, value in self._data.items()})

    def __repr__(self):
        parts = ", ".join(f"{name}={_describe(value)}" for name, value in self._data.items())
        return f"Views({parts})"


def _fit(est, X, y, groups):
    """``est.fit(X, y)``, with ``groups`` when given and ``est.fit`` takes them."""
    if groups is not None and has_fit_parameter(est, "groups"):
        return est.fit(X, y, groups=groups)
    return est.fit(X, y)


def _num_rows(value):
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape):
        return int(shape[0])
    return len(value)


def _describe(value):
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__}{tuple(shape)}" if shape is not None else (
        f"{type(value).__name__}[{len(value)}]")


def select_view(X, view):
    """The part of ``X`` that one member reads (see the module docstring).

    Args:
        X: a :class:`Views`, a 2-D array / sparse matrix / DataFrame, or anything when ``view``
            is None or a callable.
        view: None, a column selection, a view name, or a callable.

    Returns:
        The member's input.

    Raises:
        InputError: the view does not fit ``X``.
    """
    if view is None:
        return X
    if callable(view):
        return view(X)
    if isinstance(X, Views):
        if not isinstance(view, str):
            raise InputError(f"X is a Views of {list(X.keys())}: a member's view must be one "
                             f"of those names, got {view!r}")
        if view not in X:
            raise InputError(f"no view named {view!r} in X: its views are {list(X.keys())}; "
                             f"give X that view or the member another one")
        return X[view]
    if isinstance(view, str) and not hasattr(X, "columns"):
        raise InputError(f"view {view!r} is a name, but X has no named columns: pass X as a "
                         f"Views or a DataFrame, or select columns by position")
    try:
        return _safe_indexing(X, view, axis=1)
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        shape = getattr(X, "shape", "?")
        raise InputError(f"view {view!r} does not select columns of X ({type(X).__name__} of "
                         f"shape {shape}): {exc}") from exc


_SCORINGS = ("accuracy", "neg_log_loss")


class FusionClassifier(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Weighted sum of the class probabilities of classifiers that each read their own view.

    Shaped like ``VotingClassifier(voting="soft")``: ``predict_proba`` is
    ``sum_m w_m * P_m(x) / sum_m w_m``; ``transform`` returns the members' probabilities side by
    side; nested parameters are ``<name>__<param>``.

    Weights:

    * ``None``: equal weights;
    * a list, one weight per member (e.g. the paper's ``[0.5, 0.25, 0.25]``);
    * ``"search"``: the members are cross-validated on the training data (``cv`` folds,
      grouped whenever ``fit`` gets ``groups``), and the weights maximising ``scoring`` of the fused
      out-of-fold probabilities are kept among the one-member corners, equal weights and
      ``n_iter`` random points of the simplex (Dirichlet(1)). The members are then refitted on
      all data. The corners are candidates, so on the out-of-fold data the fusion is never worse
      than its best member. With ``prefit=True`` the members cannot be refitted: the weights are
      then searched on the ``(X, y)`` given to ``fit``, which must be data the members did not
      see (a validation set, as in the paper).

    Args:
        estimators: list of ``(name, estimator, view)`` (or ``(name, estimator)`` for the whole
            ``X``); every estimator needs ``predict_proba``. See the module docstring for views.
        weights: None, a list of non-negative numbers, or ``"search"``.
        cv: folds for ``weights="search"``: an int (stratified k-fold without groups,
            ``GroupKFold(min(cv, n_groups))`` when ``fit`` gets ``groups``), or a splitter such
            as ``GroupKFold`` (then pass ``groups`` to ``fit``).
        n_iter: random simplex points tried by the search.
        scoring: ``"accuracy"`` (ties broken by log-loss) or ``"neg_log_loss"``.
        random_state: seed of the random search (int, RandomState or None).
        prefit: the estimators are fitted already: use them as they are (never refitted; ``clone``
            shares them instead of copying them unfitted). ``sklearn.frozen.FrozenEstimator``
            does the same for one member.

    Attributes:
        estimators_: the fitted members, in order.
        named_estimators_: the same, by name.
        weights_: the normalised weights used (sum 1).
        classes_: class labels.
        search_results_: with ``weights="search"``: ``{"member_scores": {name: score},
            "fused_score": score}`` on the out-of-fold (or validation) probabilities.
        n_features_in_, feature_names_in_: when ``X`` is a 2-D array or DataFrame.

    Example:
        >>> X = Views(agg=agg_features, c3d=c3d_features)  # doctest: +SKIP
        >>> fusion = FusionClassifier([("agg", LinearSVMClassifier(), "agg"),
        ...                            ("c3d", LinearSVMClassifier(), "c3d")],
        ...                           weights="search", cv=GroupKFold(5))  # doctest: +SKIP
        >>> fusion.fit(X, y, groups=subjects).weights_  # doctest: +SKIP
    """

    def __init__(self, estimators, weights=None, cv=5, n_iter=1000, scoring="accuracy",
                 random_state=None, prefit=False):
        self.estimators = estimators
        self.weights = weights
        self.cv = cv
        self.n_iter = n_iter
        self.scoring = scoring
        self.random_state = random_state
        self.prefit = prefit

    # ------------------------------------------------------------------ parameters

    def _members(self):
        """Validated ``[(name, estimator, view)]``."""
        if not isinstance(self.estimators, (list, tuple)) or not self.estimators:
            raise ValueError("estimators must be a non-empty list of (name, estimator, view)")
        members = []
        for item in self.estimators:
            if not isinstance(item, tuple) or len(item) not in (2, 3):
                raise ValueError(f"each estimator must be (name, estimator, view) or "
                                 f"(name, estimator); got {item!r}")
            name, est, view = item if len(item) == 3 else (*item, None)
            if not isinstance(name, str) or not name or "__" in name:
                raise ValueError(f"estimator names must be non-empty str without '__'; got "
                                 f"{name!r}")
            if name in self.get_params(deep=False):
                raise ValueError(f"estimator name {name!r} clashes with a FusionClassifier "
                                 f"parameter")
            if not hasattr(est, "predict_proba"):
                raise ValueError(f"estimator {name!r} ({type(est).__name__}) has no "
                                 f"predict_proba: fusion sums class probabilities")
            members.append((name, est, view))
        names = [m[0] for m in members]
        if len(set(names)) != len(names):
            raise ValueError(f"estimator names must be unique; got {names}")
        return members

    def get_params(self, deep=True):
        """Parameters, with ``<name>`` and ``<name>__<param>`` of every member when ``deep``."""
        out = super().get_params(deep=False)
        if not deep:
            return out
        for item in self.estimators if isinstance(self.estimators, (list, tuple)) else ():
            if not (isinstance(item, tuple) and len(item) >= 2 and isinstance(item[0], str)):
                continue  # invalid: fit says why
            name, est = item[0], item[1]
            out[name] = est
            if hasattr(est, "get_params"):
                for key, value in est.get_params(deep=True).items():
                    out[f"{name}__{key}"] = value
        return out

    def set_params(self, **params):
        """Set parameters; ``<name>=estimator`` replaces a member, ``<name>__<param>`` sets one."""
        if "estimators" in params:
            self.estimators = params.pop("estimators")
        members = {}
        if isinstance(self.estimators, (list, tuple)):
            members = {item[0]: i for i, item in enumerate(self.estimators)
                       if isinstance(item, tuple) and item and isinstance(item[0], str)}
        nested = {}
        for key in list(params):
            head, _, rest = key.partition("__")
            if head in members and not rest:
                i = members[head]
                self.estimators = list(self.estimators)
                self.estimators[i] = (head, params.pop(key), *self.estimators[i][2:])
            elif head in members:
                nested.setdefault(head, {})[rest] = params.pop(key)
        for head, values in nested.items():
            self.estimators[members[head]][1].set_params(**values)
        return super().set_params(**params)

    def __sklearn_clone__(self):
        if not self.prefit:
            return super().__sklearn_clone__()
        # Prefit members are frozen: share them, never copy them unfitted.
        params = {name: value if name == "estimators" else clone(value, safe=False)
                  for name, value in self.get_params(deep=False).items()}
        params["estimators"] = list(self.estimators)
        return type(self)(**params)

    # ------------------------------------------------------------------ fitting

    def fit(self, X, y, groups=None):
        """Fit the members (unless ``prefit``) and set the weights.

        Args:
            X: the input every member's view reads (see the module docstring).
            y: class labels, one per sample.
            groups: group labels (e.g. subject ids): the folds of ``weights="search"`` keep
                each group on one side, and members whose ``fit`` takes ``groups`` (e.g.
                :class:`kemo.LinearSVMClassifier`, for its calibration folds) get them in every
                fit. Inside ``GridSearchCV`` enable metadata routing and call
                ``fusion.set_fit_request(groups=True)`` to receive them.

        Returns:
            self.

        Raises:
            ValueError: bad parameters or labels; InputError: a view that does not fit ``X``.
        """
        members = self._members()
        self._check_weights(members)
        X = self._check_X(X, members, reset=True)
        y = column_or_1d(y, warn=True)
        if y.dtype.kind == "f":
            assert_all_finite(y, input_name="y")
        check_classification_targets(y)
        if _num_rows(X) != len(y):
            raise InputError(f"X has {_num_rows(X)} samples but y has {len(y)}")
        if groups is not None:
            groups = column_or_1d(groups)
            if len(groups) != len(y):
                raise InputError(f"groups has {len(groups)} labels but y has {len(y)}")
        self.classes_ = np.unique(y)
        if self.classes_.size < 2 and not self.prefit:
            raise ValueError(f"y has only one class ({self.classes_[0]!r}); a classifier "
                             f"needs at least 2")
        views = [select_view(X, view) for _, _, view in members]
        if self.prefit:
            fitted = [est for _, est, _ in members]
            for (name, est, _) in members:
                check_is_fitted(est, msg=f"prefit=True but estimator {name!r} is not fitted")
            self.classes_ = np.unique(np.concatenate([est.classes_ for est in fitted]))
            self.estimators_ = fitted
            if np.setdiff1d(y, self.classes_).size:
                raise InputError(f"y holds labels {np.setdiff1d(y, self.classes_)} that no "
                                 f"prefit member knows")
        if self.weights == "search":
            if self.prefit:
                probas = [self._aligned(est, v)
                          for est, v in zip(self.estimators_, views, strict=True)]
            else:
                splits = split(self.cv, np.zeros((len(y), 1)), y, groups)
                probas = [self._out_of_fold(est, v, y, splits, groups)
                          for (_, est, _), v in zip(members, views, strict=True)]
            self.weights_, self.search_results_ = self._search(members, np.stack(probas), y)
        elif self.weights is None:
            self.weights_ = np.full(len(members), 1 / len(members))
        else:
            w = np.asarray(self.weights, dtype=float)
            self.weights_ = w / w.sum()
        if not self.prefit:
            self.estimators_ = [_fit(clone(est), v, y, groups)
                                for (_, est, _), v in zip(members, views, strict=True)]
        self.named_estimators_ = Bunch(**{name: est for (name, _, _), est
                                          in zip(members, self.estimators_, strict=True)})
        return self

    def _out_of_fold(self, est, X_view, y, splits, groups):
        """Probabilities of each sample from a copy of ``est`` fitted on the other folds.

        As ``cross_val_predict``, but the members that take ``groups`` get them in every fit.
        """
        X_view = indexable(X_view)[0]  # e.g. sparse matrices in a format without row slicing
        tested = np.zeros(len(y), int)
        proba = np.zeros((len(y), self.classes_.size))
        for train, test in splits:
            fold = _fit(clone(est), _safe_indexing(X_view, train), y[train],
                        None if groups is None else groups[train])
            proba[test] = self._aligned(fold, _safe_indexing(X_view, test))
            tested[test] += 1
        if (tested != 1).any():
            raise ValueError("cv must put every sample in exactly one test fold (a partition) "
                             "for the weight search")
        return proba

    def _check_weights(self, members):
        if isinstance(self.weights, str):
            if self.weights != "search":
                raise ValueError(f"weights must be None, a list or 'search'; got "
                                 f"{self.weights!r}")
            if self.scoring not in _SCORINGS:
                raise ValueError(f"scoring must be one of {_SCORINGS}; got {self.scoring!r}")
            if not isinstance(self.n_iter, Integral) or self.n_iter < 0:
                raise ValueError(f"n_iter must be an int >= 0; got {self.n_iter!r}")
            return
        if self.weights is None:
            return
        w = np.asarray(self.weights, dtype=float)
        if w.shape != (len(members),) or not np.isfinite(w).all() or (w < 0).any() or (
                w.sum() <= 0):
            raise ValueError(f"weights must be {len(members)} non-negative numbers, not all 0, "
                             f"one per estimator; got {self.weights!r}")

    def _check_X(self, X, members, reset):
        """Validate ``X`` only as far as the views need; set or check n_features_in_."""
        if isinstance(X, Views):
            return X
        columns = any(view is not None and not callable(view) for _, _, view in members)
        tabular = hasattr(X, "columns") or sparse.issparse(X)
        if not tabular and (columns or hasattr(X, "__array__")):
            X = check_array(X, accept_sparse=True, ensure_all_finite=False, dtype=None,
                            allow_nd=True, input_name="X")
            tabular = X.ndim == 2
        if columns and sparse.issparse(X):
            X = X.tocsr()  # COO and other formats cannot be sliced by column
        if tabular:
            validate_data(self, X, reset=reset, skip_check_array=True)
        return X

    def _search(self, members, probas, y):
        """Best simplex weights for the fused probabilities ``probas`` (members, n, classes)."""
        rng = check_random_state(self.random_state)
        m = len(members)
        target = np.searchsorted(self.classes_, y)
        candidates = np.vstack([np.eye(m), np.full((1, m), 1 / m),
                                rng.dirichlet(np.ones(m), size=self.n_iter)])
        acc, loss = [], []
        for chunk in np.array_split(candidates, max(1, len(candidates) // 64)):
            fused = np.einsum("cm,mnk->cnk", chunk, probas)
            acc.append((fused.argmax(axis=2) == target).mean(axis=1))
            picked = fused[:, np.arange(len(y)), target]
            loss.append(-np.log(np.clip(picked, 1e-15, None)).mean(axis=1))
        acc, loss = np.concatenate(acc), np.concatenate(loss)
        if self.scoring == "accuracy":
            best = np.lexsort((loss, -acc))[0]  # highest accuracy, then lowest log-loss
            member_scores, fused_score = acc[:m], acc[best]
        else:
            best = int(np.argmin(loss))
            member_scores, fused_score = -loss[:m], -loss[best]
        results = {"member_scores": {name: float(s) for (name, _, _), s
                                     in zip(members, member_scores, strict=True)},
                   "fused_score": float(fused_score), "scoring": self.scoring}
        return candidates[best], results

    # ------------------------------------------------------------------ prediction

    def _aligned(self, est, X_view):
        """``est.predict_proba`` with columns reordered to ``self.classes_``."""
        proba = np.asarray(est.predict_proba(X_view))
        cols = np.searchsorted(self.classes_, est.classes_)
        if (cols >= self.classes_.size).any() or not np.array_equal(
                self.classes_[np.minimum(cols, self.classes_.size - 1)], est.classes_):
            raise InputError(f"a member's classes {est.classes_} are not among the fusion's "
                             f"classes {self.classes_}")
        out = np.zeros((proba.shape[0], self.classes_.size))
        out[:, cols] = proba
        return out

    def _member_probas(self, X):
        check_is_fitted(self)
        members = self._members()
        X = self._check_X(X, members, reset=False)
        return [self._aligned(est, select_view(X, view))
                for est, (_, _, view) in zip(self.estimators_, members, strict=True)]

    def predict_proba(self, X):
        """Fused class probabilities ``(n_samples, n_classes)``, columns as ``classes_``."""
        probas = self._member_probas(X)
        return np.einsum("m,mnk->nk", self.weights_, np.stack(probas))

    def predict(self, X):
        """The class with the highest fused probability."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def transform(self, X):
        """The members' probabilities side by side ``(n_samples, n_members * n_classes)``."""
        return np.hstack(self._member_probas(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            member_tags = [get_tags(est) for _, est, _ in self._members()]
        except (ValueError, TypeError):  # invalid estimators: fit will say why
            return tags
        # The fusion accepts what every member accepts.
        tags.input_tags.sparse = all(t.input_tags.sparse for t in member_tags)
        tags.input_tags.allow_nan = all(t.input_tags.allow_nan for t in member_tags)
        return tags

    def get_feature_names_out(self, input_features=None):
        """Names of the ``transform`` columns: ``<member>_<class>``."""
        check_is_fitted(self)
        return np.asarray([f"{name}_{cls}" for name, _, _ in self._members()
                           for cls in self.classes_], dtype=object)
