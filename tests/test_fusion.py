"""FusionClassifier and Views on small data made here (real data: test_ckplus_classification.py)."""

import warnings

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_predict
from sklearn.naive_bayes import GaussianNB
from sklearn.svm import LinearSVC
from sklearn.utils import _safe_indexing

from kemo.errors import InputError
from kemo.fusion import FusionClassifier, Views, select_view
from kemo.svm import LinearSVMClassifier


@pytest.fixture(scope="module")
def data():
    """Two noisy views of the same 3-class problem, plus subject-like groups."""
    X, y = make_classification(n_samples=240, n_features=12, n_informative=8, n_classes=3,
                               random_state=0)
    rng = np.random.default_rng(0)
    a = X[:, :6] + rng.normal(scale=1.5, size=(240, 6))
    b = X[:, 6:] + rng.normal(scale=1.5, size=(240, 6))
    groups = np.repeat(np.arange(40), 6)
    return a, b, y, groups


def members():
    return [("a", LogisticRegression(), "a"), ("b", GaussianNB(), "b")]


def test_views_slice_by_sample(data):
    a, b, _, _ = data
    seq = [np.zeros((i % 3, 2)) for i in range(240)]
    views = Views(a=a, b=b, seq=seq)
    rows = np.array([5, 0, 7])
    part = views[rows]
    assert isinstance(part, Views) and len(part) == 3, f"rows of a Views: {part!r}"
    np.testing.assert_array_equal(part["a"], a[rows], err_msg="array view not sliced by rows")
    assert [len(s) for s in part["seq"]] == [2, 0, 1], "list view not sliced by rows"
    via_sklearn = _safe_indexing(views, rows)
    np.testing.assert_array_equal(via_sklearn["b"], b[rows],
                                  err_msg="scikit-learn's row indexing must work on Views")
    mask = np.zeros(240, bool)
    mask[:4] = True
    assert len(views[mask]) == 4 and len(views[10:20]) == 10, "masks and slices select rows"
    with pytest.raises(InputError, match="same number of samples"):
        Views(a=a, b=b[:10])
    with pytest.raises(KeyError, match="no view named 'c'"):
        views["c"]


def test_select_view_forms(data):
    a, b, _, _ = data
    table = np.hstack([a, b])
    np.testing.assert_array_equal(select_view(table, slice(6, None)), b, err_msg="slice")
    np.testing.assert_array_equal(select_view(table, [0, 1]), a[:, :2], err_msg="list")
    assert select_view(table, None) is table, "None must pass X through"
    np.testing.assert_array_equal(select_view(table, lambda X: X[:, :3]), a[:, :3],
                                  err_msg="callable")
    with pytest.raises(InputError, match="has no named columns"):
        select_view(table, "a")
    with pytest.raises(InputError, match="must be one of those names"):
        select_view(Views(a=a), 0)


def test_fixed_weights_are_the_weighted_sum(data):
    a, b, y, _ = data
    X = Views(a=a, b=b, both=np.hstack([a, b]))
    est = [("a", LogisticRegression(), "a"), ("b", GaussianNB(), "b"),
           ("both", LinearSVMClassifier(calibration="softmax"), "both")]
    fusion = FusionClassifier(est, weights=[0.5, 0.25, 0.25]).fit(X, y)
    want = sum(w * clone(e).fit(X[v], y).predict_proba(X[v])
               for w, (_, e, v) in zip([0.5, 0.25, 0.25], est, strict=True))
    np.testing.assert_allclose(fusion.predict_proba(X), want, rtol=1e-10,
                               err_msg="fused probabilities must be 0.5 P1 + 0.25 P2 + 0.25 P3")
    np.testing.assert_array_equal(fusion.predict(X), fusion.classes_[want.argmax(1)],
                                  err_msg="predict must be the argmax of predict_proba")
    unnormalised = FusionClassifier(est, weights=[2, 1, 1]).fit(X, y)
    np.testing.assert_allclose(unnormalised.weights_, [0.5, 0.25, 0.25],
                               err_msg="weights are normalised to sum 1")


def test_default_weights_are_equal_and_columns_view(data):
    a, b, y, _ = data
    table = np.hstack([a, b])
    fusion = FusionClassifier([("a", LogisticRegression(), slice(0, 6)),
                               ("b", GaussianNB(), slice(6, 12))]).fit(table, y)
    want = (LogisticRegression().fit(a, y).predict_proba(a)
            + GaussianNB().fit(b, y).predict_proba(b)) / 2
    np.testing.assert_allclose(fusion.predict_proba(table), want, rtol=1e-10,
                               err_msg="weights=None must average the members")
    assert fusion.n_features_in_ == 12, "n_features_in_ is set for a 2-D X"


def test_search_uses_out_of_fold_probabilities(data):
    a, b, y, groups = data
    X = Views(a=a, b=b)
    fusion = FusionClassifier(members(), weights="search", cv=GroupKFold(4), n_iter=200,
                              random_state=0).fit(X, y, groups=groups)
    w = fusion.weights_
    assert w.shape == (2,) and np.isclose(w.sum(), 1) and (w >= 0).all(), f"simplex: {w}"
    # Recompute the members' out-of-fold probabilities independently: the reported scores must
    # be those of the fold predictions, not of members fitted on everything.
    splits = list(GroupKFold(4).split(a, y, groups))
    oof = [cross_val_predict(e, X[v], y, cv=splits, method="predict_proba")
           for _, e, v in members()]
    for (name, _, _), p in zip(members(), oof, strict=True):
        acc = np.mean(p.argmax(1) == y)
        assert np.isclose(fusion.search_results_["member_scores"][name], acc), (
            f"{name}: reported OOF accuracy {fusion.search_results_['member_scores'][name]} "
            f"differs from {acc}")
    fused = np.mean((w[0] * oof[0] + w[1] * oof[1]).argmax(1) == y)
    assert np.isclose(fusion.search_results_["fused_score"], fused), "fused OOF score mismatch"
    best = max(fusion.search_results_["member_scores"].values())
    assert fused >= best, f"OOF fused accuracy {fused} below the best member {best}"
    # Members are refitted on all the data after the search.
    full = LogisticRegression().fit(a, y)
    np.testing.assert_allclose(fusion.named_estimators_["a"].coef_, full.coef_, rtol=1e-6,
                               err_msg="members must be refitted on all the data")


def neg_log_loss(proba, y):
    """Mean log-probability of the true class (clipped at 1e-15), computed here."""
    return float(np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-15, None))))


def test_search_is_reproducible_and_log_loss_scoring(data):
    a, b, y, groups = data
    X = Views(a=a, b=b)
    kwargs = dict(weights="search", cv=3, n_iter=50, random_state=3)
    w1 = FusionClassifier(members(), **kwargs).fit(X, y).weights_
    w2 = FusionClassifier(members(), **kwargs).fit(X, y).weights_
    np.testing.assert_array_equal(w1, w2, err_msg="same random_state, same weights")
    ll = FusionClassifier(members(), scoring="neg_log_loss", **kwargs).fit(X, y)
    # The scores recomputed here from out-of-fold probabilities (3 stratified folds): the
    # reported ones must match, and the weights found must do at least as well as equal
    # weights, which the search tries; a wrong score or a wrong pick fails this.
    oof = [cross_val_predict(e, X[v], y, cv=3, method="predict_proba") for _, e, v in members()]
    for (name, _, _), proba in zip(members(), oof, strict=True):
        reported = ll.search_results_["member_scores"][name]
        assert np.isclose(reported, neg_log_loss(proba, y)), (
            f"{name}: reported score {reported}, recomputed {neg_log_loss(proba, y)}")
    fused = neg_log_loss(ll.weights_[0] * oof[0] + ll.weights_[1] * oof[1], y)
    assert np.isclose(ll.search_results_["fused_score"], fused), (
        f"reported fused score {ll.search_results_['fused_score']}, recomputed {fused}")
    equal = neg_log_loss((oof[0] + oof[1]) / 2, y)
    assert fused >= equal - 1e-12, f"weights {ll.weights_} score {fused}, equal weights {equal}"


def test_int_cv_with_groups_makes_grouped_folds(data):
    """Regression: an int cv gave StratifiedKFold, which ignored the groups (with a warning)."""
    a, b, y, groups = data
    X = Views(a=a, b=b)
    kwargs = dict(weights="search", n_iter=50, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        by_int = FusionClassifier(members(), cv=4, **kwargs).fit(X, y, groups=groups)
    ignored = [str(w.message) for w in caught if "groups" in str(w.message)]
    assert not ignored, f"groups must not be ignored: {ignored}"
    grouped = FusionClassifier(members(), cv=GroupKFold(4), **kwargs).fit(X, y, groups=groups)
    assert by_int.search_results_ == grouped.search_results_, (
        f"cv=4 with groups must score on GroupKFold(4) folds: {by_int.search_results_} vs "
        f"{grouped.search_results_}")
    np.testing.assert_array_equal(by_int.weights_, grouped.weights_,
                                  err_msg="cv=4 with groups must pick GroupKFold(4)'s weights")


def test_groups_reach_the_calibration_of_svm_members(data):
    """Members whose fit takes groups (the SVM's calibration folds) get them in every fit."""
    a, b, y, groups = data
    X = Views(a=a, b=b)
    svm = LinearSVMClassifier(calibration="sigmoid", cv=3)
    fusion = FusionClassifier([("a", svm, "a"), ("b", GaussianNB(), "b")], weights=[1, 1],
                              ).fit(X, y, groups=groups)
    expected = clone(svm).fit(a, y, groups=groups).predict_proba(a)
    np.testing.assert_allclose(fusion.named_estimators_["a"].predict_proba(a), expected,
                               atol=1e-12, err_msg="the refitted SVM member must get the groups")
    ungrouped = clone(svm).fit(a, y).predict_proba(a)
    assert not np.allclose(expected, ungrouped), (
        "grouped and stratified calibration folds should give other probabilities here")


def test_grouped_cv_needs_groups(data):
    a, b, y, _ = data
    with pytest.raises(ValueError, match="groups"):
        FusionClassifier(members(), weights="search", cv=GroupKFold(3)).fit(Views(a=a, b=b), y)


def test_prefit_members_are_used_as_they_are(data):
    a, b, y, _ = data
    train, val = np.arange(160), np.arange(160, 240)
    X = Views(a=a, b=b)
    fitted = [("a", LogisticRegression().fit(a[train], y[train]), "a"),
              ("b", GaussianNB().fit(b[train], y[train]), "b")]
    coef = fitted[0][1].coef_.copy()
    fusion = FusionClassifier(fitted, weights="search", prefit=True, n_iter=100,
                              random_state=0)
    twin = clone(fusion)
    assert twin.estimators[0][1] is fitted[0][1], "clone must share prefit members"
    twin.fit(X[val], y[val])
    assert twin.estimators_[0] is fitted[0][1], "prefit members are not copied"
    np.testing.assert_array_equal(fitted[0][1].coef_, coef, err_msg="prefit member refitted")
    want = sum(w * e.predict_proba(X[val][v])
               for w, (_, e, v) in zip(twin.weights_, fitted, strict=True))
    np.testing.assert_allclose(twin.predict_proba(X[val]), want, rtol=1e-10,
                               err_msg="prefit fusion must sum the given members")
    with pytest.raises(Exception, match="not fitted"):
        FusionClassifier(members(), prefit=True).fit(X, y)


def test_nested_params_clone_and_gridsearch(data):
    a, b, y, groups = data
    X = Views(a=a, b=b)
    fusion = FusionClassifier(members(), weights="search", cv=GroupKFold(3), n_iter=50,
                              random_state=0)
    assert fusion.get_params()["a__C"] == 1.0, "nested member parameters are exposed"
    fusion.set_params(a__C=0.5)
    assert fusion.estimators[0][1].C == 0.5, "set_params must reach the member"
    fusion.set_params(b=LogisticRegression(C=2.0))
    assert isinstance(fusion.estimators[1][1], LogisticRegression), "member replaced by name"
    assert fusion.estimators[1][2] == "b", "replacing a member keeps its view"
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(clone(fusion).set_fit_request(groups=True),
                              {"a__C": [0.01, 1.0]}, cv=GroupKFold(3))
        search.fit(X, y, groups=groups)
    assert search.best_params_["a__C"] in (0.01, 1.0), "grid search over member parameters"
    assert search.best_score_ > 0.5, f"3-class accuracy {search.best_score_} near chance"


def test_transform_and_feature_names(data):
    a, b, y, _ = data
    fusion = FusionClassifier(members()).fit(Views(a=a, b=b), y)
    out = fusion.transform(Views(a=a, b=b))
    assert out.shape == (240, 6), f"2 members x 3 classes side by side, got {out.shape}"
    names = list(fusion.get_feature_names_out())
    assert names == ["a_0", "a_1", "a_2", "b_0", "b_1", "b_2"], f"names: {names}"


def test_string_labels(data):
    a, b, y, _ = data
    labels = np.array(["Angry", "Happy", "Sad"])[y]
    fusion = FusionClassifier(members(), weights="search", cv=3, n_iter=20,
                              random_state=0).fit(Views(a=a, b=b), labels)
    assert set(fusion.predict(Views(a=a, b=b))) <= set(labels), "predictions are labels"
    assert list(fusion.classes_) == ["Angry", "Happy", "Sad"], f"classes: {fusion.classes_}"


@pytest.mark.parametrize("estimators,weights,match", [
    ([("a", LogisticRegression(), "a"), ("a", GaussianNB(), "b")], None, "unique"),
    ([("a__x", LogisticRegression(), "a")], None, "without '__'"),
    ([("a", LinearSVC(), "a")], None, "no predict_proba"),
    ([("a", LogisticRegression(), "a")], [1, 2], "one per estimator"),
    ([("a", LogisticRegression(), "a")], [-1], "non-negative"),
    ([("a", LogisticRegression(), "a")], "best", "weights must be None"),
    ([("weights", LogisticRegression(), "a")], None, "clashes"),
    ([], None, "non-empty"),
])
def test_bad_parameters(data, estimators, weights, match):
    a, b, y, _ = data
    with pytest.raises(ValueError, match=match):
        FusionClassifier(estimators, weights=weights).fit(Views(a=a, b=b), y)


def test_bad_view_is_named(data):
    a, b, y, _ = data
    with pytest.raises(InputError, match="no view named 'c3d' in X: its views are"):
        FusionClassifier([("a", LogisticRegression(), "c3d")]).fit(Views(a=a, b=b), y)
