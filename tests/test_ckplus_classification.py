"""The classification half on real data: CK+48 sequences as 3-frame videos, folds by subject.

Frame features come from a small Keras CNN built here (random weights: no pretrained network
is downloadable here) and, as a second, different view, from histograms of oriented gradients
computed with NumPy. Both are aggregated per video by kemo.Aggregator. Accuracies are printed
(``pytest -s``) and the measured figures are in the docstrings of the tests.
"""

import keras
import numpy as np
import pytest
import sklearn
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from kemo import weights as registry
from kemo.aggregation import Aggregator
from kemo.evaluation import compare, evaluate
from kemo.features import FrameFeatureExtractor
from kemo.fusion import FusionClassifier, Views
from kemo.models import ResNet10
from kemo.svm import LinearSVMClassifier

CLASS_NAMES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise")


def hog(frames, cell=8, bins=9):
    """Unsigned gradient-orientation histograms of 8x8 cells, weighted by magnitude."""
    x = frames.astype(np.float32)
    gy, gx = np.gradient(x, axis=(1, 2))
    magnitude = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), np.pi)
    index = np.minimum((angle / np.pi * bins).astype(int), bins - 1)
    n, h, w = x.shape
    votes = np.zeros((n, h, w, bins), np.float32)
    np.put_along_axis(votes, index[..., None], magnitude[..., None], axis=3)
    cells = votes.reshape(n, h // cell, cell, w // cell, cell, bins).sum(axis=(2, 4))
    return cells.reshape(n, -1)


@pytest.fixture(scope="module")
def ck(shared_data):
    """309 labelled CK+ sequences (contempt dropped) as videos of their last 3 frames."""
    data = np.load(shared_data / "ckplus48" / "ckplus48.npz")
    keep = data["labels"] >= 0
    pixels, labels = data["pixels"][keep], data["labels"][keep].astype(int)
    seq, subjects = data["seq_ids"][keep], data["subjects"][keep]
    starts = np.sort(np.unique(seq, return_index=True)[1])
    videos = np.split(pixels, starts[1:])
    assert len(videos) == 309 and all(len(v) == 3 for v in videos), "CK+48: 309 x 3 frames"
    return videos, labels[starts], subjects[starts]


@pytest.fixture(scope="module")
def cnn():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((48, 48, 1)),
        keras.layers.Conv2D(32, 5, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(name="features"), keras.layers.Dense(6, activation="softmax"),
    ], name="small_cnn")


def scale(batch):
    return batch / 255.0


@pytest.fixture(scope="module")
def views(ck, cnn):
    """Aggregated CNN (2 x 1024) and HOG (2 x 324) features of every video.

    Extraction and aggregation learn nothing from the labels, so computing them once for all
    folds leaks nothing.
    """
    videos = ck[0]
    frames = FrameFeatureExtractor(cnn, layer="features", preprocess=scale).fit()
    cnn_agg = Aggregator().fit_transform(frames.transform(videos))
    hog_agg = Aggregator().fit_transform([hog(v) for v in videos])
    return Views(cnn=cnn_agg, hog=hog_agg)


def outer_split(ck):
    videos, y, groups = ck
    return next(GroupKFold(5).split(np.zeros(len(y)), y, groups))


def test_pipeline_in_gridsearch(ck, cnn):
    """Faces -> FrameFeatureExtractor -> Aggregator -> linear SVM, C chosen by a grouped search.

    Measured: best C=100, held-out accuracy 0.903 on the first subject fold (62 videos).
    """
    videos, y, groups = ck
    train, test = outer_split(ck)
    assert not set(groups[train]) & set(groups[test]), "subjects must not cross the split"
    pipe = Pipeline([
        ("frames", FrameFeatureExtractor(cnn, layer="features", preprocess=scale)),
        ("aggregate", Aggregator()),
        ("svm", LinearSVMClassifier(calibration="softmax")),
    ])
    search = GridSearchCV(pipe, {"svm__C": [10.0, 100.0]}, cv=GroupKFold(3))
    search.fit([videos[i] for i in train], y[train], groups=groups[train])
    pred = search.predict([videos[i] for i in test])
    report = evaluate(y[test], pred, class_names=CLASS_NAMES)
    print(f"\npipeline, best {search.best_params_}, held-out subjects:\n{report}")
    assert report.accuracy > 0.6, f"held-out accuracy {report.accuracy:.3f} (chance ~0.27)"


def test_fusion_in_gridsearch(ck, views):
    """FusionClassifier (searched weights, grouped inner folds) tuned by GridSearchCV.

    Groups reach the fusion's own weight search through metadata routing. Measured: best
    cnn C=100, weights (0.44, 0.56), held-out accuracy 0.919 on the first subject fold.
    """
    _, y, groups = ck
    train, test = outer_split(ck)
    fusion = FusionClassifier(
        [("cnn", LinearSVMClassifier(C=100.0, calibration="softmax"), "cnn"),
         ("hog", LinearSVMClassifier(C=10.0, calibration="softmax"), "hog")],
        weights="search", cv=GroupKFold(3), n_iter=200, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(fusion.set_fit_request(groups=True), {"cnn__C": [10.0, 100.0]},
                              cv=GroupKFold(3))
        search.fit(views[train], y[train], groups=groups[train])
    best = search.best_estimator_
    acc = best.score(views[test], y[test])
    print(f"\nfusion, best {search.best_params_}, weights {np.round(best.weights_, 3)}, "
          f"held-out accuracy {acc:.3f}")
    assert acc > 0.7, f"held-out fusion accuracy {acc:.3f} (chance ~0.27)"


def test_fusion_of_pipelines_on_raw_faces(ck, cnn):
    """Members that are whole pipelines from face stacks, both reading the view "faces".

    Measured: held-out accuracy 0.919 on the first subject fold.
    """
    videos, y, groups = ck
    train, test = outer_split(ck)
    X = Views(faces=videos)

    def member(frames, C):
        return Pipeline([("frames", frames), ("aggregate", Aggregator()),
                         ("svm", LinearSVMClassifier(C=C, calibration="softmax"))])

    hog_frames = FunctionTransformer(lambda stacks: [hog(v) for v in stacks])
    cnn_frames = FrameFeatureExtractor(cnn, layer="features", preprocess=scale)
    fusion = FusionClassifier([("cnn", member(cnn_frames, 100.0), "faces"),
                               ("hog", member(hog_frames, 10.0), "faces")],
                              weights="search", cv=GroupKFold(3), n_iter=100, random_state=0)
    fusion.fit(X[train], y[train], groups=groups[train])
    acc = fusion.score(X[test], y[test])
    print(f"\nfusion of raw-face pipelines: weights {np.round(fusion.weights_, 3)}, "
          f"held-out accuracy {acc:.3f}")
    assert fusion.named_estimators_["cnn"][0].model is cnn, "the CNN is shared, not copied"
    assert acc > 0.7, f"held-out accuracy {acc:.3f} (chance ~0.27)"


def test_pretrained_resnet10_aggregated_features(ck):
    """kemo's shipped FER2013 ResNet-10 (fc1, 512-d) through the weights registry, on CK+.

    Cross-data set (trained on FER2013 only). Measured with the weights of 2026-11-25 (FER2013
    PublicTest 0.48): 0.767 subject 5-fold accuracy at C=1.
    """
    import functools

    from sklearn.model_selection import cross_val_score

    assert "fer2013_resnet10" in registry.names(), (
        f"the shipped weights must be registered; registered: {registry.names()}")
    videos, y, groups = ck
    builder = functools.partial(ResNet10, weights="fer2013_resnet10")
    frames = FrameFeatureExtractor(builder, layer="fc1", preprocess="fer2013_resnet10",
                                   batch_size=256).fit()
    agg = Aggregator().fit_transform(frames.transform(videos))
    assert agg.shape == (309, 1024), f"2 x 512 per video expected, got {agg.shape}"
    acc = cross_val_score(LinearSVMClassifier(C=1.0, calibration="softmax"), agg, y,
                          groups=groups, cv=GroupKFold(5)).mean()
    print(f"\npretrained ResNet-10 fc1 -> Aggregator -> SVM, subject 5-fold accuracy {acc:.3f}")
    assert acc > 0.6, f"pretrained features give {acc:.3f} on CK+ (chance ~0.27)"


def test_svm_calibration_folds_keep_subjects_apart(ck, views):
    """With ``groups``, an int ``cv`` calibrates on subject folds (``GroupKFold``).

    Measured (HOG, C=1, 5 outer subject folds): held-out log-loss 0.432 with subject
    calibration folds against 0.443 with stratified ones, which put a subject's other sequences
    on both sides.
    """
    _, y, groups = ck
    X = views["hog"]
    grouped = LinearSVMClassifier(calibration="sigmoid", cv=3).fit(X, y, groups=groups)
    folds = list(GroupKFold(3).split(X, y, groups))
    want = LinearSVMClassifier(calibration="sigmoid", cv=folds).fit(X, y)
    np.testing.assert_allclose(grouped.predict_proba(X), want.predict_proba(X), atol=1e-12,
                               err_msg="cv=3 with groups must calibrate on GroupKFold(3) folds")
    mixed = LinearSVMClassifier(calibration="sigmoid", cv=3).fit(X, y)
    assert not np.allclose(mixed.predict_proba(X), want.predict_proba(X)), (
        "stratified folds give other probabilities, so the check above tells them apart")
    with pytest.raises(ValueError, match="one label per sample"):
        LinearSVMClassifier(cv=3).fit(X, y, groups=groups[:-1])


def test_searched_fusion_not_worse_than_best_member(ck, views):
    """Five subject folds: members alone vs their fusion with cross-validated weights.

    The weight search keeps the best single member among its candidates, so on the inner
    out-of-fold data the fusion is never worse than its best member. On held-out subjects a
    few videos can go either way, so this single 5-fold run allows 2 points (6 of 309 videos);
    the next test repeats it on 4 shuffled fold sets and asserts no loss at all.
    Measured here: CNN 0.893, HOG 0.909, fusion 0.906 (one video less than HOG).
    """
    means, report = held_out_scores(ck, views, [GroupKFold(5)])
    print(f"\nheld-out accuracy over 5 subject folds: {means}\n{compare({'fusion': report})}")
    best = max(means["cnn"], means["hog"])
    assert means["fusion"] >= best - 0.02, (
        f"fusion {means['fusion']:.3f} clearly below its best member {best:.3f}")


def test_searched_fusion_beats_best_member_on_repeated_folds(ck, views):
    """Four shuffled subject 5-fold runs (20 held-out folds): fusion >= its best member.

    Measured: CNN 0.878, HOG 0.907, searched fusion 0.920, equal weights 0.924 (with two
    members of similar strength, equal weights are already near the best; the search pays off
    when members differ in strength or calibration).
    """
    splitters = [GroupKFold(5, shuffle=True, random_state=seed) for seed in range(4)]
    means, _ = held_out_scores(ck, views, splitters)
    print(f"\nheld-out accuracy over 4 x 5 subject folds: {means}")
    best = max(means["cnn"], means["hog"])
    assert means["fusion"] >= best, f"fusion {means['fusion']:.3f} below best member {best:.3f}"


def held_out_scores(ck, views, splitters):
    """Mean held-out accuracy of each member and of the searched fusion, and a fusion report."""
    _, y, groups = ck
    scores = {"cnn": [], "hog": [], "fusion": []}
    y_true, y_pred = [], []
    for splitter in splitters:
        for train, test in splitter.split(np.zeros(len(y)), y, groups):
            fusion = FusionClassifier(
                [("cnn", LinearSVMClassifier(C=100.0, calibration="softmax"), "cnn"),
                 ("hog", LinearSVMClassifier(C=10.0, calibration="softmax"), "hog")],
                weights="search", cv=GroupKFold(3), n_iter=200, random_state=0)
            fusion.fit(views[train], y[train], groups=groups[train])
            held = views[test]
            for name, member in fusion.named_estimators_.items():
                scores[name].append(member.score(held[name], y[test]))
            scores["fusion"].append(fusion.score(held, y[test]))
            y_true.append(y[test])
            y_pred.append(fusion.predict(held))
    means = {k: round(float(np.mean(v)), 4) for k, v in scores.items()}
    report = evaluate(np.concatenate(y_true), np.concatenate(y_pred), class_names=CLASS_NAMES)
    return means, report
