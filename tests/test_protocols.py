"""kemo.protocols: the splits of each video data set and held-out probabilities."""

import csv
import json

import keras
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.utils import Bunch

from kemo import cli
from kemo.datasets import load_ckplus
from kemo.errors import InputError
from kemo.fusion import FusionClassifier, Views
from kemo.protocols import held_out_proba, splits_for, subject_splits
from kemo.svm import LinearSVMClassifier


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


# ----------------------------------------------------------------------------- subject folds


def test_subject_splits_loso_and_kfold():
    groups = np.array(["b", "a", "c", "a", "d", "b"])
    loso = subject_splits(groups, "loso")
    assert [sorted(set(groups[test])) for _, test in loso] == [["a"], ["b"], ["c"], ["d"]], (
        "a fold per subject, in subject order")
    for protocol, count in (("loso", 4), ("kfold:2", 2), ("kfold:4", 4)):
        splits = subject_splits(groups, protocol)
        assert len(splits) == count, f"{protocol}: {len(splits)} folds"
        tested = np.concatenate([test for _, test in splits])
        assert sorted(tested) == list(range(6)), f"{protocol}: every video scored once"
        for train, test in splits:
            shared = set(groups[train]) & set(groups[test])
            assert not shared, f"{protocol}: subjects {shared} on both sides"
            assert len(train) + len(test) == 6, f"{protocol}: all other videos train"


@pytest.mark.parametrize("groups, protocol, match", [
    (["a", "b", "c"], "kfold:4", "3 subjects cannot make 4 folds"),
    (["a", "b", "c"], "kfold:1", "'loso' or 'kfold:K'"),
    (["a", "b", "c"], "loo", "'loso' or 'kfold:K'"),
    (["a", "b", "c"], "loso:2", "'loso' or 'kfold:K'"),
    (["a", "a"], "loso", "at least 2 subjects"),
])
def test_subject_splits_reject(groups, protocol, match):
    with pytest.raises(InputError, match=match):
        subject_splits(groups, protocol)


# ----------------------------------------------------------------------------- kemo evaluate


# Three subjects, each with one surprise and one happiness clip.
SIX = {"S052_001_surprise.avi": "Surprise", "S052_004_happiness.avi": "Happy",
       "S055_001_surprise.avi": "Surprise", "S055_005_happiness.avi": "Happy",
       "S074_002_surprise.avi": "Surprise", "S074_005_happiness.avi": "Happy"}
SOFTMAX = '{"calibration": "softmax"}'  # 2 clips per class train each fold: no calibration folds
tensorflow = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="mtcnn needs KERAS_BACKEND=tensorflow")


@pytest.fixture(scope="module")
def six(shared_data, tmp_path_factory):
    """A 'path,label,group' list of the six clips, and a face cache shared by the tests."""
    folder = tmp_path_factory.mktemp("six")
    videos = shared_data / "ckplus_emopy" / "videos"
    lines = [f"{videos / name},{label},{name[:4]}" for name, label in SIX.items()]
    listing = folder / "six.csv"
    listing.write_text("path,label,group\n" + "\n".join(lines) + "\n")
    return listing, str(folder / "faces")


@tensorflow
@pytest.mark.parametrize("protocol, n_folds", [("loso", 3), ("kfold:2", 2)])
def test_protocol_command_keeps_subjects_apart(six, protocol, n_folds, tmp_path, capsys):
    listing, cache = six
    out = tmp_path / "report"
    config = SOFTMAX  # JSON text, or a JSON file
    if protocol != "loso":
        config = tmp_path / "config.json"
        config.write_text(SOFTMAX)
    code = cli.main(["evaluate", str(listing), "--protocol", protocol, "--model-config",
                     str(config), "--out", str(out), "--cache", cache, "-q"])
    printed = capsys.readouterr().out
    assert code == 0, f"exit status {code}: {printed}"
    assert f"protocol {protocol}: {n_folds} folds by subject" in printed, printed
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == protocol and report["model_config"] == json.loads(SOFTMAX), (
        f"the report names what it evaluated: {report['protocol']}, {report['model_config']}")
    assert len(report["folds"]) == n_folds, f"{len(report['folds'])} folds"
    for fold in report["folds"]:
        shared = set(fold["test_subjects"]) & set(fold["train_subjects"])
        assert not shared, f"fold {fold['fold']}: subjects {shared} on both sides"
        assert fold["train_videos"] + fold["test_videos"] == 6, f"fold {fold}"
    with open(out / "predictions.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert sorted(r["path"].rsplit("/", 1)[1] for r in rows) == sorted(SIX), "each video once"
    for row in rows:
        fold = report["folds"][int(row["fold"])]
        assert row["group"] in fold["test_subjects"], f"{row['path']} scored by its own fold"
        assert row["true"] == SIX[row["path"].rsplit("/", 1)[1]], f"true label of {row}"
    assert report["videos"] == 6 and 0 <= report["accuracy"] <= 1, f"report {report}"
    assert (out / "confusion.png").stat().st_size > 0, "confusion matrix written"


@tensorflow
def test_protocol_command_rejects(six, shared_data, tmp_path, capsys):
    listing, cache = six
    folders = tmp_path / "emotions"
    (folders / "Happy").mkdir(parents=True)
    (folders / "Happy" / "a.avi").symlink_to(shared_data / "ckplus_emopy" / "videos" /
                                             "S052_004_happiness.avi")
    cases = [
        (["evaluate", str(folders), "--protocol", "loso"], "names none"),
        (["evaluate", str(listing), "--protocol", "loso", "--model", str(tmp_path)],
         "not a trained --model"),
        (["evaluate", str(listing), "--model-config", SOFTMAX], "add --protocol"),
        (["evaluate", str(listing), "--protocol", "loso", "--model-config", "{nope"], "not JSON"),
        (["evaluate", str(listing), "--protocol", "loso", "--model-config", "[1]"],
         "JSON object"),
        (["evaluate", str(listing), "--protocol", "loso", "--model-config", "gone.json"],
         "no such file"),
        (["evaluate", str(listing), "--protocol", "loso", "--model-config", '{"colour": 1}'],
         "colour"),
        # the default sigmoid calibration needs 3 clips per class: said before any face search
        (["evaluate", str(listing), "--protocol", "loso", "--cache", cache],
         "class Happy has 2 training video"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 1, f"{argv[2:]} refused"
        err = capsys.readouterr().err
        assert message in err, f"{argv[2:]}: {err}"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", str(listing), "--protocol", "kfold:1"])
    assert exit_info.value.code == 2, "a malformed protocol is a usage error"
