"""kemo.protocols: the splits of each video data set and held-out probabilities."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.utils import Bunch

from kemo.classifiers import LinearSVMClassifier
from kemo.datasets import load_ckplus
from kemo.errors import InputError
from kemo.fusion import FusionClassifier, Views
from kemo.protocols import held_out_proba, splits_for


def test_ckplus_folds_by_subject(shared_data):
    videos = load_ckplus(shared_data)
    splits = splits_for(videos)
    assert len(splits) == 5, f"5 subject folds, got {len(splits)}"
    tested = np.concatenate([test for _, test in splits])
    assert sorted(tested) == list(range(40)), "every clip is scored exactly once"
    for train, test in splits:
        shared = set(videos.subjects[train]) & set(videos.subjects[test])
        assert not shared, f"subjects on both sides of a split: {shared}"


def test_afew_train_to_val():
    afew = Bunch(labels=np.array([0, 1, 2, 0]), subset=np.array(["Train", "Val", "Train", "Val"]))
    (train, test), = splits_for(afew)
    assert train.tolist() == [0, 2] and test.tolist() == [1, 3], "train on Train, score on Val"


@pytest.mark.parametrize("videos, match", [
    (Bunch(labels=np.array([0, 1]), subset=np.array(["Train", "Train"])), "Val clips"),
    (Bunch(labels=np.array([0, 1])), "neither"),
    (Bunch(labels=np.array([0, 1]), subjects=np.array(["a", "b"])), "2 subjects"),
])
def test_splits_reject(videos, match):
    with pytest.raises(InputError, match=match):
        splits_for(videos)


def test_held_out_proba_matches_manual_loop(shared_data):
    ck = load_ckplus(shared_data, kind="ckplus48")
    X = ck.images.reshape(len(ck.images), -1)[:, ::16].astype(float) / 255
    y, subjects = ck.labels, ck.subjects
    splits = list(GroupKFold(4).split(X, y, subjects))
    proba, scored, models = held_out_proba(LogisticRegression(max_iter=300), X, y, splits,
                                           return_estimators=True)
    assert scored.tolist() == list(range(len(y))), "folds cover every image"
    train, test = splits[2]
    manual = LogisticRegression(max_iter=300).fit(X[train], y[train]).predict_proba(X[test])
    np.testing.assert_allclose(proba[test], manual, err_msg="fold 2 as a manual fit")
    assert len(models) == 4, "one fitted copy per split"
    np.testing.assert_allclose(models[2].predict_proba(X[test]), manual,
                               err_msg="the returned copies are the fitted ones")
    assert np.mean(proba.argmax(1) == y) > 0.4, "held-out accuracy well above chance (0.27)"


def test_held_out_proba_groups_lists_and_missing_classes():
    rng = np.random.default_rng(0)
    faces = [rng.normal(size=(3, 2)) + k for k in range(12)]  # a list input
    y = np.array([0, 1, 2] * 4)
    groups = np.repeat(np.arange(6), 2)
    X = Views(flat=np.stack([f.mean(axis=0) for f in faces]))
    # The fusion's own folds are grouped: fitting fails unless groups reach fit.
    fusion = FusionClassifier([("a", LinearSVMClassifier(calibration="softmax"), "flat"),
                               ("b", LinearSVMClassifier(C=0.1, calibration="softmax"), "flat")],
                              weights="search", cv=GroupKFold(2), n_iter=5, random_state=0)
    splits = [(np.arange(6), np.arange(6, 12))]
    proba, scored = held_out_proba(fusion, X, y, splits, groups=groups, labels=[0, 1, 2, 3])
    assert scored.tolist() == list(range(6, 12)), "only the test side is scored"
    assert np.isnan(proba[:6]).all(), "unscored clips stay NaN"
    assert (proba[6:, 3] == 0).all(), "a label never trained on gets probability 0"
    np.testing.assert_allclose(proba[6:].sum(axis=1), 1, err_msg="rows sum to 1")
    listed, _ = held_out_proba(_MeanSVM(calibration="softmax"), faces, y, splits)
    assert listed.shape == (12, 3), "a list of clips is indexed clip by clip"


class _MeanSVM(LinearSVMClassifier):
    def fit(self, X, y):
        return super().fit(np.stack([x.mean(axis=0) for x in X]), y)

    def predict_proba(self, X):
        return super().predict_proba(np.stack([x.mean(axis=0) for x in X]))


def test_held_out_proba_rejects():
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(InputError, match="must match"):
        held_out_proba(LogisticRegression(), X, y[:3], [(np.arange(2), np.arange(2, 4))])
    with pytest.raises(InputError, match="split 0"):
        held_out_proba(LogisticRegression(), X, y, [(np.arange(4), np.array([], int))])
    with pytest.raises(InputError, match="not among labels"):
        held_out_proba(LogisticRegression(), X, y, [(np.arange(4), np.arange(4))], labels=[0])
