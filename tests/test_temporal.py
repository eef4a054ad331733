"""kemo.temporal: C3D clip features, the LSTM sequence classifier, padding of sequences."""

import random

import keras
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import (
    check_estimators_unfitted,
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)

from kemo.aggregation import Aggregator
from kemo.datasets import load_ckplus
from kemo.errors import InputError
from kemo.fusion import FusionClassifier, Views
from kemo.models import clip_windows
from kemo.svm import LinearSVMClassifier
from kemo.temporal import ClipFeatureExtractor, SequenceClassifier, to_sequences

# --------------------------------------------------------------------------- to_sequences


def test_sequences_pad_and_normalise():
    a = np.arange(1, 13, dtype=np.float32).reshape(4, 3)
    b = np.ones((2, 3), np.float32) * 2
    x = to_sequences([a, b])
    assert x.shape == (2, 4, 3) and x.dtype == np.float32, f"(clips, longest, D): {x.shape}"
    np.testing.assert_allclose(np.linalg.norm(x[0], axis=1), 1, rtol=1e-6,
                               err_msg="every frame scaled to unit length")
    np.testing.assert_allclose(x[0, 1], a[1] / np.linalg.norm(a[1]), rtol=1e-6,
                               err_msg="frames keep their direction and order")
    assert not x[1, 2:].any(), "short clips are padded with zero rows (masked by the LSTM)"
    raw = to_sequences([a, b], normalize=None)
    np.testing.assert_array_equal(raw[1, :2], b, err_msg="normalize=None keeps the values")


def test_sequences_sample_long_clips():
    clip = np.arange(10, dtype=np.float32)[:, None] + 1
    x = to_sequences([clip], frames=4, normalize=None)
    np.testing.assert_array_equal(x[0, :, 0], [1, 4, 7, 10],
                                  err_msg="uniform sampling keeps the first and last frame")


def test_sequences_array_forms():
    cube = np.random.default_rng(0).normal(size=(3, 5, 2)).astype(np.float32)
    np.testing.assert_allclose(to_sequences(cube, normalize=None), cube,
                               err_msg="a (n, T, D) array is taken as n clips of T frames")
    flat = to_sequences(cube[:, 0], normalize=None)
    assert flat.shape == (3, 1, 2), f"a (n, D) array is n one-frame clips: {flat.shape}"


@pytest.mark.parametrize("bad, match", [
    ([np.ones((3, 2)), np.ones((3, 4))], "same feature width"),
    ([np.ones((3, 2)), np.zeros((0, 2))], "clip 1 has no frame"),
    ([np.full((2, 2), np.nan)], "NaN"),
    ([np.ones((2, 2, 2))], "expected \\(n_frames, D\\)"),
    ("features", "list"),
    ([], "no clip"),
])
def test_sequences_reject(bad, match):
    with pytest.raises(InputError, match=match):
        to_sequences(bad)


def test_sequences_bad_arguments():
    with pytest.raises(ValueError, match="frames"):
        to_sequences([np.ones((2, 2))], frames=0)
    with pytest.raises(ValueError, match="normalize"):
        to_sequences([np.ones((2, 2))], normalize="l1")


# --------------------------------------------------------------------------- LSTM classifier


@pytest.fixture(scope="module")
def ck_sequences(shared_data):
    """CK+48 sequences (3 peak frames each) as 12x12 pixel features, split by subject."""
    ck = load_ckplus(shared_data, kind="ckplus48")
    small = ck.images.reshape(-1, 12, 4, 12, 4).mean(axis=(2, 4)).reshape(len(ck.images), -1)
    starts = np.sort(np.unique(ck.seq_ids, return_index=True)[1])
    clips = np.split(small.astype(np.float32) / 255, starts[1:])
    labels, subjects = ck.labels[starts], ck.subjects[starts]
    test = np.isin(subjects, np.unique(subjects)[::4])  # a quarter of the people held out
    return clips, labels, test


@pytest.fixture(scope="module")
def fitted(ck_sequences):
    clips, labels, test = ck_sequences
    train = [c for c, t in zip(clips, test, strict=True) if not t]
    clf = SequenceClassifier(units=32, num_layers=1, epochs=40, learning_rate=3e-3)
    return clf.fit(train, labels[~test])


def test_lstm_learns_held_out_people(ck_sequences, fitted):
    clips, labels, test = ck_sequences
    held = [c for c, t in zip(clips, test, strict=True) if t]
    proba = fitted.predict_proba(held)
    assert proba.shape == (len(held), 6), f"6 CK+ classes (no Neutral): {proba.shape}"
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6, err_msg="rows sum to 1")
    acc = np.mean(fitted.predict(held) == labels[test])
    chance = np.bincount(labels[~test]).max() / (~test).sum()
    assert acc > chance + 0.1, f"held-out accuracy {acc:.3f} vs majority class {chance:.3f}"
    assert list(fitted.history_) == ["accuracy", "loss"], f"history: {list(fitted.history_)}"
    assert len(fitted.history_["loss"]) == 40, "one loss per epoch"
    assert fitted.history_["loss"][-1] < fitted.history_["loss"][0], "training lowers the loss"
    np.testing.assert_array_equal(fitted.predict(held),
                                  fitted.classes_[proba.argmax(axis=1)],
                                  err_msg="predict is the argmax of predict_proba")


def draws_after(fit):
    """Python's and NumPy's next draws after ``fit()``, both generators seeded with 7 first."""
    random.seed(7)
    np.random.seed(7)
    fit()
    return random.random(), np.random.rand()


@pytest.mark.parametrize("random_state", [0, None, np.random.RandomState(1)],
                         ids=["int", "None", "RandomState"])
def test_lstm_leaves_global_generators_alone(ck_sequences, random_state):
    """Regression: fit called keras.utils.set_random_seed(int(random_state)).

    That raised TypeError for None and a RandomState, and reset the caller's generators: after
    a fit, np.random.rand() returned the seed-0 value.
    """
    clips, labels, _ = ck_sequences
    clf = SequenceClassifier(units=4, num_layers=1, epochs=2, random_state=random_state)
    untouched = draws_after(lambda: None)
    python, numpy = draws_after(lambda: clf.fit(clips[:40], labels[:40]))
    assert python == untouched[0], "fit changed Python's global generator"
    if random_state is not None:  # None draws a seed from NumPy's generator, as sklearn does
        assert numpy == untouched[1], "fit changed NumPy's global generator"
    assert clf.predict_proba(clips[:3]).shape == (3, len(clf.classes_)), "fitted"


def test_lstm_same_random_state_same_model(ck_sequences):
    clips, labels, _ = ck_sequences
    fits = [SequenceClassifier(units=4, num_layers=1, epochs=3, batch_size=8, dropout=0.3,
                               random_state=5).fit(clips[:40], labels[:40]) for _ in range(2)]
    np.testing.assert_array_equal(
        fits[0].predict_proba(clips[40:50]), fits[1].predict_proba(clips[40:50]),
        err_msg="weights, dropout and the order of the batches come from random_state")
    other = SequenceClassifier(units=4, num_layers=1, epochs=3, batch_size=8, dropout=0.3,
                               random_state=6).fit(clips[:40], labels[:40])
    assert not np.array_equal(other.predict_proba(clips[40:50]),
                              fits[0].predict_proba(clips[40:50])), "another seed, another model"


def test_lstm_string_labels_and_any_length():
    rng = np.random.default_rng(0)
    clips = [rng.normal(size=(n, 4)).astype(np.float32) + (i % 2) for i, n in
             enumerate([3, 5, 2, 7, 4, 6])]
    labels = np.array(["calm", "angry"] * 3)
    clf = SequenceClassifier(units=4, num_layers=1, epochs=2).fit(clips, labels)
    assert list(clf.classes_) == ["angry", "calm"], f"classes sorted: {clf.classes_}"
    assert clf.predict([rng.normal(size=(9, 4))]).dtype.kind == "U", "labels come back as str"
    with pytest.raises(InputError, match="width 3"):
        clf.predict_proba([np.ones((2, 3))])


def test_lstm_in_fusion(ck_sequences):
    """The LSTM is a FusionClassifier member next to an SVM on aggregated features."""
    clips, labels, test = ck_sequences
    X = Views(seq=np.stack(clips), agg=Aggregator().fit_transform(clips))
    fusion = FusionClassifier([("lstm", SequenceClassifier(units=8, num_layers=1, epochs=5),
                                "seq"),
                               ("svm", LinearSVMClassifier(calibration="softmax"), "agg")],
                              weights=[0.5, 0.5])
    fusion.fit(X[~test], labels[~test])
    proba = fusion.predict_proba(X[test])
    assert proba.shape == (test.sum(), 6), f"fused probabilities: {proba.shape}"
    assert fusion.named_estimators_["lstm"].model_ is not None, "member trained"


def test_lstm_estimator_contract():
    clf = SequenceClassifier()
    name = type(clf).__name__
    check_no_attributes_set_in_init(name, clf)
    check_parameters_default_constructible(name, clf)
    check_get_params_invariance(name, clf)
    check_set_params(name, clf)
    check_estimators_unfitted(name, clf)
    assert clone(clf.set_params(units=8)).units == 8, "clone keeps parameters"
    with pytest.raises(NotFittedError):
        clf.predict([np.ones((2, 3))])


@pytest.mark.parametrize("params, match", [
    ({"units": 0}, "units"), ({"dropout": 1.0}, "dropout"), ({"learning_rate": 0}, "learning"),
    ({"class_weight": "x"}, "class_weight"), ({"frames": 0}, "frames"),
])
def test_lstm_bad_params(params, match):
    with pytest.raises(ValueError, match=match):
        SequenceClassifier(**params).fit([np.ones((2, 2)), np.zeros((2, 2)) + 1], [0, 1])


def test_lstm_needs_two_classes_and_matching_labels():
    with pytest.raises(ValueError, match="only one class"):
        SequenceClassifier(epochs=1).fit([np.ones((2, 2))] * 2, [1, 1])
    with pytest.raises(InputError, match="one label per clip"):
        SequenceClassifier(epochs=1).fit([np.ones((2, 2))] * 2, [1, 0, 1])


# --------------------------------------------------------------------------- C3D clips


@pytest.fixture(scope="module")
def tiny_c3d():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 24, 24, 3))
    x = keras.layers.Conv3D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling3D(name="pool")(x)
    out = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, out, name="tiny_c3d")


@pytest.fixture(scope="module")
def ck_clips(shared_data):
    ck = load_ckplus(shared_data, kind="ckplus48")
    starts = np.sort(np.unique(ck.seq_ids, return_index=True)[1])
    return np.split(ck.images, starts[1:])[:5]  # real faces, 3 frames per clip


def test_clip_features_match_direct_model(tiny_c3d, ck_clips):
    from kemo.features import fit_faces

    long_clip = np.concatenate(ck_clips * 3)[:40]  # 40 frames: windows at 0, 8, 16, 24
    clips = [*ck_clips, long_clip]
    extractor = ClipFeatureExtractor(tiny_c3d, layer="pool", batch_size=3).fit()
    feats = extractor.transform(clips)
    assert [f.shape for f in feats] == [(1, 4)] * 5 + [(4, 4)], (
        f"one 4-d feature per 16-frame window: {[f.shape for f in feats]}")
    windows = clip_windows(fit_faces(long_clip, (24, 24, 3)))
    direct = keras.Model(tiny_c3d.input, tiny_c3d.get_layer("pool").output).predict(
        windows, verbose=0)
    np.testing.assert_allclose(feats[-1], direct, rtol=1e-5, atol=1e-6,
                               err_msg="same as running the model on clip_windows")
    again = ClipFeatureExtractor(tiny_c3d, layer="pool", batch_size=64).fit().transform(clips)
    np.testing.assert_allclose(np.concatenate(again), np.concatenate(feats), rtol=1e-5,
                               atol=1e-6, err_msg="batching across clips changes nothing")
    assert extractor.n_features_out_ == 4 and extractor.input_shape_ == (16, 24, 24, 3), (
        "fitted attributes")


def test_clip_features_default_c3d(ck_clips):
    extractor = ClipFeatureExtractor(size=16, stride=16).fit()
    assert extractor.model_.name == "c3d" and extractor.input_shape_ == (16, 16, 16, 3), (
        f"random C3D at the requested size: {extractor.input_shape_}")
    feats = extractor.transform(ck_clips[:2])
    assert [f.shape for f in feats] == [(1, 4096)] * 2, "fc6: 4096 values per window"
    assert all(np.isfinite(f).all() for f in feats), "finite features"
    same = ClipFeatureExtractor(size=16, stride=16).fit().transform(ck_clips[:2])
    np.testing.assert_allclose(same[0], feats[0], rtol=1e-5,
                               err_msg="random_state makes the random weights reproducible")
    c3d_mean = ClipFeatureExtractor(size=16, preprocess="c3d_sports1m").fit().preprocess_
    assert callable(c3d_mean), "a registered weights name gives its preprocessing"


@pytest.mark.parametrize("random_state", [3, None, np.random.RandomState(1)],
                         ids=["int", "None", "RandomState"])
def test_default_c3d_leaves_global_generators_alone(random_state):
    """Regression: the default C3D was seeded with keras.utils.set_random_seed."""
    extractor = ClipFeatureExtractor(size=16, random_state=random_state)
    untouched = draws_after(lambda: None)
    python, numpy = draws_after(extractor.fit)
    assert python == untouched[0], "fit changed Python's global generator"
    if random_state is not None:
        assert numpy == untouched[1], "fit changed NumPy's global generator"
    if random_state == 3:
        again = ClipFeatureExtractor(size=16, random_state=3).fit()
        for a, b in zip(extractor.model_.get_weights(), again.model_.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b, err_msg="an int random_state fixes the weights")


def test_clip_features_reject(tiny_c3d, ck_clips):
    extractor = ClipFeatureExtractor(tiny_c3d, layer="pool").fit()
    with pytest.raises(InputError, match="clip 1 has no frame"):
        extractor.transform([ck_clips[0], ck_clips[0][:0]])
    with pytest.raises(InputError, match="list of face stacks"):
        extractor.transform(ck_clips[0])
    with pytest.raises(ValueError, match="no layer 'fc6'"):
        ClipFeatureExtractor(tiny_c3d).fit()
    flat = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten()])
    with pytest.raises(ValueError, match="expected clips"):
        ClipFeatureExtractor(flat, layer=None).fit()
    with pytest.raises(NotFittedError):
        ClipFeatureExtractor(tiny_c3d).transform(ck_clips)


def test_clip_extractor_clone_shares_model(tiny_c3d):
    extractor = ClipFeatureExtractor(tiny_c3d, layer="pool")
    assert clone(extractor).model is tiny_c3d, "cloning shares the Keras model"
