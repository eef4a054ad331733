"""VideoEmotionRecognizer on real CK+ clips: pretrained mode, training, branches, analysis,
saving and loading, and bad inputs."""

import json
import shutil
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import cv2
import keras
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.model_selection import GroupKFold

from kemo.aggregation import Aggregator
from kemo.datasets import CLASS_NAMES
from kemo.errors import InputError, NoFaceError, VideoReadError, WeightsError
from kemo.face_classifier import FaceEmotionClassifier
from kemo.faces import FacePreprocessor, VideoFaces
from kemo.features import FrameFeatureExtractor
from kemo.fusion import FusionClassifier, Views
from kemo.models import VGGFace
from kemo.recognizer import (
    _TAPS,
    LSTM_DEFAULTS,
    MANIFEST,
    VideoAnalysis,
    VideoEmotionRecognizer,
    _aligned,
    _face_classifier,
    _LinearModel,
    _video_fps,
)
from kemo.svm import LinearSVMClassifier
from kemo.timeline import DEFAULT_POOLING, pool
from kemo.video import Video, read_frames
from kemo.weights import DEFAULT_WEIGHTS

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="mtcnn needs KERAS_BACKEND=tensorflow"
)

# Three subjects, each with one surprise (5) and one happiness (3) clip.
CLIPS = {
    "S052_001_surprise.avi": 5, "S052_004_happiness.avi": 3,
    "S055_001_surprise.avi": 5, "S055_005_happiness.avi": 3,
    "S074_002_surprise.avi": 5, "S074_005_happiness.avi": 3,
}
SHORT = "S052_001_surprise.avi"  # 15 frames
TINY_LSTM = {"frames": 8, "units": 8, "layers": 1, "epochs": 2, "batch_size": 4}


@pytest.fixture(scope="module")
def videos(shared_data):
    return shared_data / "ckplus_emopy" / "videos"


@pytest.fixture(scope="module")
def clips(videos):
    paths = [str(videos / name) for name in CLIPS]
    return paths, np.array(list(CLIPS.values())), np.array([n[:4] for n in CLIPS])


@pytest.fixture(scope="module")
def prep():
    """8 sampled frames per clip, faces at the shipped model's 48x48 grey input."""
    return FacePreprocessor(n_frames=8, out_size=48, grayscale=True)


@pytest.fixture(scope="module")
def faces(clips, prep):
    return clone(prep).fit().transform(clips[0])


@pytest.fixture(scope="module")
def trained(faces, clips, prep):
    return VideoEmotionRecognizer(faces=prep, cv=2).fit(faces, clips[1])


@pytest.fixture(scope="module")
def two_faces(videos):
    """Six frames holding two real faces side by side: a large one and a smaller one."""
    _, left = read_frames(videos / SHORT, n=6)
    _, right = read_frames(videos / "S055_001_surprise.avi", n=6)
    frames = []
    for a, b in zip(left, right, strict=True):
        a = cv2.resize(a, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        b = cv2.resize(b, None, fx=0.35, fy=0.35, interpolation=cv2.INTER_AREA)
        b = np.pad(b, ((0, a.shape[0] - b.shape[0]), (0, 0), (0, 0)))
        frames.append(np.hstack([a, b]))
    return np.stack(frames)


@pytest.fixture
def bad_files(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.avi"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    return empty, noise


# ----------------------------------------------------------------------------- pretrained


def test_pretrained_is_mean_of_frame_probabilities(faces):
    rec = VideoEmotionRecognizer(pooling="mean")  # every pooling: tests/test_timeline.py
    assert not rec.is_trained, "a new recogniser is the pretrained one"
    assert rec.classes_.tolist() == list(range(7)), f"classes {rec.classes_}"
    assert rec.class_names_ == CLASS_NAMES, f"names {rec.class_names_}"
    proba = rec.predict_proba(faces[:2])
    assert proba.shape == (2, 7), f"shape {proba.shape}"
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-5), f"rows sum to {proba.sum(axis=1)}"
    # the recogniser balances the shipped model's classes by default (class_balance="auto")
    frames = FaceEmotionClassifier(class_balance="auto").predict_proba(faces[1].faces)
    assert np.allclose(proba[1], frames.mean(axis=0), atol=1e-5), (
        f"video probabilities {proba[1]} are not the mean of its frames' {frames.mean(0)}")


def test_pretrained_from_path_and_frame_array(videos, prep):
    rec = VideoEmotionRecognizer(faces=prep)
    path = videos / SHORT
    from_path = rec.predict_proba([path])
    _, frames = read_frames(path)
    from_array = rec.predict_proba([frames])
    assert np.allclose(from_path, from_array, atol=1e-5), (
        f"a path and its decoded frames disagree: {from_path} vs {from_array}")
    assert rec.predict([path])[0] == int(np.argmax(from_path)), "predict is argmax"


def test_pretrained_scores_each_video_apart(videos, prep):
    """A list's rows match each video alone, past a failed video whose frames were scored."""
    rec = VideoEmotionRecognizer(faces=prep, errors="skip")
    paths = [videos / SHORT, videos / "S055_005_happiness.avi"]
    alone = [rec.predict_proba([path])[0] for path in paths]
    blank = np.full((4, 120, 160, 3), 128, np.uint8)  # read and scored, then no face: fails
    with pytest.warns(RuntimeWarning, match="1 of 3 videos failed"):
        together = rec.predict_proba([paths[0], blank, paths[1]])
    assert np.isnan(together[1]).all(), f"the blank video's row {together[1]}"
    np.testing.assert_allclose(together[[0, 2]], alone, atol=1e-5,
                               err_msg="a video's row depends on its neighbours")
    assert not np.allclose(alone[0], alone[1], atol=1e-3), "two clips scored alike"
    analysed = rec.analyze(paths[1]).probabilities
    np.testing.assert_allclose(together[2], analysed, atol=1e-5, err_msg="analyze disagrees")


def test_pretrained_finds_happiness(faces, clips):
    happy = [f for f, y in zip(faces, clips[1], strict=True) if y == 3]
    labels = VideoEmotionRecognizer().predict(happy)
    assert (labels == 3).sum() >= 2, (
        f"the pretrained model should call most smiling clips Happy, got {labels}")


def test_default_faces_follow_the_models():
    prep = VideoEmotionRecognizer().face_preprocessor()
    assert (prep.out_size, prep.grayscale, prep.detect_every) == (48, True, 5), (
        f"default faces for the 48x48 grey model: {prep}")
    prep = VideoEmotionRecognizer(c3d={"size": 64}).face_preprocessor()
    assert (prep.out_size, prep.grayscale) == (64, False), f"C3D needs RGB 64: {prep}"


# ----------------------------------------------------------------------------- training


def test_fit_predict_on_real_clips(trained, faces, clips):
    assert trained.is_trained, "fit trains"
    assert trained.classes_.tolist() == [3, 5], f"classes {trained.classes_}"
    assert trained.class_names_ == ("Happy", "Surprise"), f"names {trained.class_names_}"
    proba = trained.predict_proba(faces)
    assert proba.shape == (6, 2) and np.allclose(proba.sum(axis=1), 1), f"proba {proba}"
    accuracy = np.mean(trained.predict(faces) == clips[1])
    assert accuracy >= 5 / 6, f"training accuracy {accuracy} on 6 separable clips"
    assert [name for name, _, _ in trained.members_] == ["agg", "scores"], (
        "the SVM and the scores branch by default")


def test_fit_accepts_paths(clips, prep):
    rec = VideoEmotionRecognizer(faces=prep, calibration="softmax").fit(clips[0][:4],
                                                                          clips[1][:4])
    assert rec.predict(clips[0][:1]).shape == (1,), "paths in, one label out"


@pytest.mark.parametrize("calibration", ["sigmoid", "isotonic", "softmax"])
def test_linear_export_matches_the_estimator(trained, faces, clips, calibration):
    names = (DEFAULT_WEIGHTS,)
    feats = trained._frame_features(faces)
    X = Aggregator().fit_transform([[f[n] for f in feats] for n in names])
    svm = LinearSVMClassifier(calibration=calibration, cv=2, random_state=0).fit(X, clips[1])
    exported = _LinearModel.from_estimator(svm)
    assert np.allclose(exported.predict_proba(X), svm.predict_proba(X), atol=1e-12), (
        f"{calibration}: exported arrays give other probabilities")
    X4, y4 = make_classification(60, 20, n_informative=8, n_classes=4, random_state=0)
    svm = LinearSVMClassifier(calibration=calibration, cv=3, random_state=0).fit(X4, y4)
    restored = _LinearModel.from_arrays(_LinearModel.from_estimator(svm).to_arrays(),
                                        svm.classes_)
    assert np.allclose(restored.predict_proba(X4), svm.predict_proba(X4), atol=1e-12), (
        f"{calibration}: 4 classes, arrays round trip")


def test_lstm_branch_and_fusion(faces, clips, prep, tmp_path):
    rec = VideoEmotionRecognizer(faces=prep, cv=2, lstm=TINY_LSTM, scores=False)
    rec.fit(faces, clips[1])
    names = [name for name, _, _ in rec.members_]
    weights = [w for _, _, w in rec.members_]
    assert names == ["agg", "lstm"], f"branches {names}"
    assert np.allclose(np.array(weights) / sum(weights), [2 / 3, 1 / 3]), (
        f"the paper's 0.5 / 0.25 weights, normalised: {weights}")
    proba = rec.predict_proba(faces)
    assert np.allclose(proba.sum(axis=1), 1), f"fused rows sum to {proba.sum(axis=1)}"
    loaded = VideoEmotionRecognizer.load(rec.save(tmp_path / "model"))
    assert np.array_equal(loaded.predict_proba(faces), proba), "LSTM model round trip"


def test_scores_branch(faces, clips, prep, tmp_path, monkeypatch):
    """The scores branch: a logistic regression on the log of each video's pooled face-model
    probabilities, fused with the SVM at the paper's 0.5 / 0.25, saved and loaded."""
    from sklearn.linear_model import LogisticRegression

    rec = VideoEmotionRecognizer(faces=prep, cv=2).fit(faces, clips[1])  # scores: default
    names = [name for name, _, _ in rec.members_]
    weights = np.array([w for _, _, w in rec.members_])
    assert names == ["agg", "scores"], f"branches {names}"
    assert np.allclose(weights / weights.sum(), [2 / 3, 1 / 3]), f"weights {weights}"
    # its input, computed here from the face model and the pooling
    clf = FaceEmotionClassifier(class_balance="auto")
    pooled = np.array([pool(clf.predict_proba(f.faces).astype(np.float64), DEFAULT_POOLING,
                            f.frame_indices / _video_fps(f.source)) for f in faces])
    view = rec._views(faces)["scores"]
    np.testing.assert_allclose(view, np.log(pooled + 1e-4), atol=1e-5,
                               err_msg="the scores view is the log of the pooled probabilities")
    here = LogisticRegression(max_iter=5000).fit(view, clips[1])
    member = rec.members_[1][1]
    np.testing.assert_allclose(member.predict_proba(view), here.predict_proba(view), atol=1e-9,
                               err_msg="the branch is that logistic regression, exported")
    seen = []  # faces through the face network, counted on the real forward passes
    run = FaceEmotionClassifier._run
    monkeypatch.setattr(FaceEmotionClassifier, "_run",
                        lambda self, x, *a: seen.append(len(x)) or run(self, x, *a))
    proba = rec.predict_proba(faces)
    monkeypatch.undo()
    assert sum(seen) == sum(len(f) for f in faces), (
        f"one pass gives the fc1 features and the scores' probabilities: {seen} faces")
    agg = _aligned(rec.members_[0][1], rec._views(faces)["agg"], rec.classes_)
    np.testing.assert_allclose(proba, (2 * agg + here.predict_proba(view)) / 3, atol=1e-6,
                               err_msg="fused 2:1")
    assert np.mean(rec.predict(faces) == clips[1]) == 1, "the training clips are learnt"
    loaded = VideoEmotionRecognizer.load(rec.save(tmp_path / "model"))
    assert loaded.scores is True, "the setting is saved"
    paper = VideoEmotionRecognizer(faces=prep, cv=2, scores=False).fit(faces, clips[1])
    assert [name for name, _, _ in paper.members_] == ["agg"], "scores=False: the paper's SVM"
    np.testing.assert_allclose(loaded.predict_proba(faces), proba, atol=1e-12,
                               err_msg="round trip")


@pytest.mark.slow
def test_fusion_weight_search_with_groups(faces, clips, prep):
    rec = VideoEmotionRecognizer(faces=prep, calibration="softmax", lstm=TINY_LSTM,
                                 fusion_weights="search", fusion_cv=2, scores=False)
    rec.fit(faces, clips[1], groups=clips[2])
    scores = rec.fusion_scores_
    assert set(scores["member_scores"]) == {"agg", "lstm"}, f"scores {scores}"
    # The same search, run here on the recogniser's views with subject folds made here: the
    # scores and weights must be those of subject-independent folds.
    members = [("agg", LinearSVMClassifier(calibration="softmax", random_state=0), "agg"),
               ("lstm", rec._lstm_classifier({**LSTM_DEFAULTS, **TINY_LSTM}), "lstm")]
    here = FusionClassifier(members, weights="search", cv=GroupKFold(2), random_state=0)
    here.fit(Views(rec._views(faces)), clips[1], groups=clips[2])
    assert scores == here.search_results_, (
        f"recogniser {scores}, the same search on GroupKFold(2) {here.search_results_}")
    weights = np.array([w for _, _, w in rec.members_])
    np.testing.assert_allclose(weights / weights.sum(), here.weights_, atol=1e-12,
                               err_msg="the weights of the grouped search")


@pytest.mark.slow
def test_c3d_branch_tiny(faces, clips, prep, tmp_path):
    rec = VideoEmotionRecognizer(faces=prep, cv=2, c3d={"size": 16}, lstm=TINY_LSTM,
                                 fusion_weights=[0.4, 0.3, 0.2, 0.1])
    rec.fit(faces, clips[1])
    assert [n for n, _, _ in rec.members_] == ["agg", "c3d", "lstm", "scores"], "four branches"
    proba = rec.predict_proba(faces)
    loaded = VideoEmotionRecognizer.load(rec.save(tmp_path / "model"))
    assert not (tmp_path / "model" / "c3d.weights.h5").exists(), (
        "random C3D weights are rebuilt from their seed, not saved")
    assert np.array_equal(loaded.predict_proba(faces), proba), "C3D model round trip"


def test_svm_calibration_folds_are_grouped(faces, clips, prep):
    """Regression: groups reached only the fusion search, the SVM calibrated on mixed folds.

    Each subject here has two clips; calibrating on folds that hold a clip of the same person
    as the training part makes the probabilities overconfident.
    """
    y, groups = clips[1], clips[2]
    rec = VideoEmotionRecognizer(faces=prep, calibration="sigmoid", cv=2, scores=False)
    got = rec.fit(faces, y, groups=groups).predict_proba(faces)
    feats = rec.frame_features(faces)
    X = Aggregator().fit_transform([[f[DEFAULT_WEIGHTS] for f in feats]])
    folds = list(GroupKFold(2).split(X, y, groups))
    want = LinearSVMClassifier(calibration="sigmoid", cv=folds, random_state=0).fit(X, y)
    np.testing.assert_allclose(got, want.predict_proba(X), atol=1e-9,
                               err_msg="the SVM must be calibrated on subject folds")
    mixed = LinearSVMClassifier(calibration="sigmoid", cv=2, random_state=0).fit(X, y)
    assert not np.allclose(mixed.predict_proba(X), got), (
        "stratified folds give other probabilities here, so the check above tells them apart")


def test_parameters_set_after_fit_wait_for_the_next_fit(faces, clips, prep, tmp_path):
    """Regression: prediction re-read features, c3d and lstm, so set_params after fit broke it."""
    rec = VideoEmotionRecognizer(faces=prep, cv=2, lstm=TINY_LSTM).fit(faces, clips[1])
    proba = rec.predict_proba(faces)
    main = rec.analyze(faces[0]).probabilities
    rec.set_params(lstm=None, c3d={"size": 16}, scores=False)
    np.testing.assert_allclose(rec.predict_proba(faces), proba, atol=1e-9,
                               err_msg="the trained model predicts with its fitted branches")
    np.testing.assert_allclose(rec.analyze(faces[0]).probabilities, main, atol=1e-9,
                               err_msg="analyze predicts with the fitted branches too")
    with pytest.raises(InputError, match="changed after fit"):
        rec.save(tmp_path / "model")
    rec.fit(faces, clips[1])
    assert [n for n, _, _ in rec.members_] == ["agg", "c3d"], (
        f"the next fit uses the new settings: {[n for n, _, _ in rec.members_]}")


def test_analyze_trained_one_pass_matches_predict(trained, faces):
    """analyze takes the timeline and the SVM's features from one pass of the face model."""
    result = trained.analyze(faces[2])
    np.testing.assert_allclose(result.probabilities, trained.predict_proba([faces[2]])[0],
                               atol=1e-6, err_msg="analyze and predict_proba disagree")
    timeline = FaceEmotionClassifier(class_balance="auto").predict_proba(faces[2].faces)
    np.testing.assert_allclose(result.frame_probabilities, timeline, atol=1e-6,
                               err_msg="the timeline is the face model's probabilities")


def test_shared_face_classifier_built_once_across_threads(faces):
    """Regression: the cached face classifier was built without a lock on first use."""
    _face_classifier.cache_clear()
    start = threading.Barrier(3)

    def first_use(_):
        rec = VideoEmotionRecognizer()
        start.wait()
        return rec._classifier(), rec.predict_proba(faces[:2])

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(first_use, range(3)))
    # the network: with class_balance, each recogniser holds a shallow copy of the classifier
    built = {id(classifier.model_) for classifier, _ in results}
    assert len(built) == 1, f"{len(built)} face classifiers built by 3 threads at first use"
    for _, proba in results[1:]:
        np.testing.assert_allclose(proba, results[0][1], atol=1e-6,
                                   err_msg="threads got other probabilities")


def test_vggface_features_are_fc6_after_its_relu(faces):
    """Regression: VGG-Face was tapped at fc6 before its ReLU; the paper's (Caffe) fc6 is after.

    Random weights (none can be downloaded here) at the smallest input, on real CK+ faces.
    """
    keras.utils.set_random_seed(0)
    model = VGGFace(input_shape=(32, 32, 3))
    tap = FrameFeatureExtractor(model, layer=_TAPS["VGGFace"], preprocess="vggface").fit()
    before_relu = FrameFeatureExtractor(model, layer="fc6", preprocess="vggface").fit()
    stack = [faces[0].faces[:4]]
    features, raw = tap.transform(stack)[0], before_relu.transform(stack)[0]
    assert features.shape == (4, 4096), f"fc6 is 4096-d, got {features.shape}"
    assert raw.min() < 0, "fc6 before its ReLU has negative values on these faces"
    np.testing.assert_array_equal(features, np.maximum(raw, 0),
                                  err_msg="the VGG-Face features must be fc6 after its ReLU")


# ----------------------------------------------------------------------------- analysis


def test_analyze_timeline_and_boxes(videos):
    rec = VideoEmotionRecognizer()
    result = rec.analyze(videos / SHORT)
    assert isinstance(result, VideoAnalysis), f"got {type(result).__name__}"
    with Video(videos / SHORT) as video:
        count = video.frame_count
    assert result.frames_read == count == result.faces_found, (
        f"one face per frame of a one-person clip: {result.frames_read}, {result.faces_found}")
    assert result.frame_indices.tolist() == list(range(count)), "a timeline over every frame"
    assert result.boxes.shape == (count, 4), f"boxes {result.boxes.shape}"
    assert np.allclose(result.frame_probabilities.sum(axis=1), 1, atol=1e-5), "frame rows"
    pooled = pool(result.frame_probabilities, DEFAULT_POOLING, result.frame_indices / result.fps)
    assert np.allclose(result.probabilities, pooled), (
        "pretrained: the video's probabilities pool the timeline (default pooling)")
    assert result.label == CLASS_NAMES[int(np.argmax(result.probabilities))], result.label
    data = json.loads(json.dumps(result.to_dict(timeline=True)))
    assert len(data["tracks"][0]["timeline"]) == count, "JSON timeline, one step per frame"


def test_analyze_several_faces(two_faces):
    rec = VideoEmotionRecognizer(faces=FacePreprocessor(out_size=48, grayscale=True))
    both = rec.analyze(two_faces, tracks="all")
    assert len(both.tracks) == 2, f"two people, got {len(both.tracks)} tracks"
    areas = [np.median(t.boxes[:, 2] * t.boxes[:, 3]) for t in both.tracks]
    assert areas[0] > areas[1], f"the main (larger) face comes first: areas {areas}"
    assert both.faces_found == 12 and both.frames_read == 6, f"{both.faces_found} faces"
    assert {t.track_id for t in both.tracks} == {0, 1}, "track ids"
    main = rec.analyze(two_faces)
    assert len(main.tracks) == 1 and len(main.boxes) == 6, "main face only by default"
    assert np.allclose(main.boxes, both.boxes, atol=1), "the default follows the main face"


def test_analyze_scores_long_videos_piece_by_piece(two_faces, videos, monkeypatch):
    """The pretrained analysis keeps probabilities and boxes, not crops: a video is scored a
    piece at a time, and the pieces give what the whole video gives."""
    import kemo.faces.preprocessor as preprocessor

    rec = VideoEmotionRecognizer(faces=FacePreprocessor(out_size=48, grayscale=True))
    whole = {tracks: rec.analyze(two_faces, tracks=tracks) for tracks in ("main", "all")}
    found = rec.face_preprocessor().set_params(select="all").fit().transform([two_faces])[0]
    monkeypatch.setattr(preprocessor, "CHUNK_FRAMES", 4)  # 6 frames: pieces of 4 and 2
    for tracks, expected in whole.items():
        pieces = rec.analyze(two_faces, tracks=tracks)
        assert [t.track_id for t in pieces.tracks] == [t.track_id for t in expected.tracks]
        for got, want in zip(pieces.tracks, expected.tracks, strict=True):
            np.testing.assert_allclose(got.frame_probabilities, want.frame_probabilities,
                                       atol=1e-5, err_msg=f"tracks={tracks}: frame rows")
            np.testing.assert_array_equal(got.boxes, want.boxes)
            assert got.label == want.label and got.segments == want.segments, tracks
    given = rec.analyze(found, tracks="all")  # faces found beforehand: scored whole
    np.testing.assert_allclose(given.frame_probabilities, whole["all"].frame_probabilities,
                               atol=1e-5)


def test_analyze_trained_gives_its_classes(trained, videos):
    result = trained.analyze(videos / SHORT)
    assert result.class_names == ("Happy", "Surprise"), f"names {result.class_names}"
    assert result.probabilities.shape == (2,), f"{result.probabilities}"
    assert result.frame_probabilities.shape[1] == 7, "the timeline stays the face model's"


def test_annotate_draws_boxes(videos, tmp_path):
    result = VideoEmotionRecognizer().analyze(videos / SHORT)
    out = result.annotate(tmp_path / "annotated.mp4")
    with Video(out) as video:
        assert video.frame_count == result.frames_read, "every frame is written"
        _, frame = next(iter(video.frames()))
    x, y, w, _ = result.boxes[0].astype(int)
    edge = frame[y, x + 5: x + w - 5].astype(int)
    assert (edge[:, 1] - edge[:, 0]).mean() > 100, "a green box on the face's top edge"
    assert not list(tmp_path.glob(".*tmp*")), "no temporary file left behind"


# ----------------------------------------------------------------------------- saving


def test_save_load_roundtrip(trained, faces, tmp_path):
    path = trained.save(tmp_path / "model")
    loaded = VideoEmotionRecognizer.load(path)
    assert loaded.is_trained, "a trained model loads trained"
    assert np.array_equal(loaded.predict_proba(faces), trained.predict_proba(faces)), (
        "identical probabilities after load")
    assert loaded.classes_.tolist() == trained.classes_.tolist(), "classes"
    assert loaded.class_names_ == trained.class_names_, "class names"
    assert loaded.face_preprocessor().get_params() == trained.face_preprocessor().get_params()
    trained.save(path)  # saving over a model folder replaces it
    assert VideoEmotionRecognizer.load(path).is_trained, "replaced model loads"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "no temporary folder left"


def test_pretrained_settings_roundtrip(tmp_path):
    rec = VideoEmotionRecognizer(faces=FacePreprocessor(detect_every=3, cache_dir=tmp_path))
    loaded = VideoEmotionRecognizer.load(rec.save(tmp_path / "model"))
    assert not loaded.is_trained, "an unfitted recogniser stays pretrained"
    assert loaded.faces.detect_every == 3, "face settings are kept"
    assert loaded.faces.cache_dir is None, "a cache folder is not part of the model"


def test_flip_margin_is_kept_and_old_folders_mirror_every_face(tmp_path):
    """A saved recogniser keeps its flip_margin; a folder saved before the parameter existed
    loads with None (every face mirrored), as its SVM was trained."""
    from kemo.face_classifier import FLIP_MARGIN
    from kemo.recognizer.persistence import _checksum

    assert VideoEmotionRecognizer().flip_margin == FLIP_MARGIN, "one default for both classes"
    path = VideoEmotionRecognizer(flip_margin=0.25).save(tmp_path / "new")
    loaded = VideoEmotionRecognizer.load(path)
    assert loaded.flip_margin == 0.25 and loaded._classifier().flip_margin == 0.25
    manifest = json.loads((path / MANIFEST).read_text())
    del manifest["params"]["flip_margin"], manifest["checksum"]
    manifest["checksum"] = _checksum(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))
    assert VideoEmotionRecognizer.load(path).flip_margin is None, "an old folder"


def test_folders_saved_before_the_scores_branch_load_without_it(faces, clips, prep, tmp_path):
    """A trained folder saved before ``scores`` existed has no scores branch: it loads with
    scores=None and predicts as saved."""
    from kemo.recognizer.persistence import _checksum

    rec = VideoEmotionRecognizer(faces=prep, cv=2, scores=None).fit(faces, clips[1])
    path = rec.save(tmp_path / "old")
    manifest = json.loads((path / MANIFEST).read_text())
    del manifest["params"]["scores"], manifest["checksum"]
    manifest["checksum"] = _checksum(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))
    loaded = VideoEmotionRecognizer.load(path)
    assert loaded.scores is None and [n for n, _, _ in loaded.members_] == ["agg"], "old folder"
    np.testing.assert_allclose(loaded.predict_proba(faces), rec.predict_proba(faces),
                               atol=1e-12, err_msg="an old folder predicts as saved")
    loaded.save(tmp_path / "again")  # its parameters describe the trained model


def test_tampered_or_missing_files_raise(trained, tmp_path):
    good = trained.save(tmp_path / "good")

    def copy(name):
        return shutil.copytree(good, tmp_path / name)

    arrays = copy("arrays")
    data = bytearray((arrays / "agg.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (arrays / "agg.npz").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        VideoEmotionRecognizer.load(arrays)

    edited = copy("edited")
    manifest = json.loads((edited / MANIFEST).read_text())
    manifest["params"]["C"] = 100.0
    (edited / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="checksum mismatch"):
        VideoEmotionRecognizer.load(edited)

    cut = copy("cut")
    (cut / MANIFEST).write_text((cut / MANIFEST).read_text()[:100])
    with pytest.raises(WeightsError, match="corrupt"):
        VideoEmotionRecognizer.load(cut)

    missing = copy("missing")
    (missing / "agg.npz").unlink()
    with pytest.raises(WeightsError, match="missing"):
        VideoEmotionRecognizer.load(missing)

    with pytest.raises(WeightsError, match="not a kemo model folder"):
        VideoEmotionRecognizer.load(tmp_path)


def test_save_refuses_to_overwrite_other_folders(trained, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a kemo model folder"):
        trained.save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine", "nothing was touched"


# ----------------------------------------------------------------------------- bad inputs


def test_skip_goes_on_past_bad_videos(faces, bad_files):
    rec = VideoEmotionRecognizer(errors="skip")
    with pytest.warns(RuntimeWarning, match="2 of 3 videos failed"):
        proba = rec.predict_proba([bad_files[0], faces[0], bad_files[1]])
    assert np.isnan(proba[[0, 2]]).all() and np.isfinite(proba[1]).all(), f"rows {proba}"
    failures = rec.failures_
    assert [f.index for f in failures] == [0, 2], f"failures {failures}"
    assert all(f.kind == "VideoReadError" for f in failures), f"kinds {failures}"
    assert failures[0].source == str(bad_files[0]), "the failure names the file"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        labels = rec.predict([bad_files[0], faces[0]])
    assert labels[0] == -1 and 0 <= labels[1] < 7, f"labels {labels}"


def test_raise_stops_at_a_bad_video(faces, bad_files):
    rec = VideoEmotionRecognizer()
    for bad in bad_files:
        with pytest.raises(VideoReadError, match=bad.name):
            rec.predict_proba([faces[0], bad])


def test_video_without_face():
    blank = np.full((3, 120, 160, 3), 128, np.uint8)
    rec = VideoEmotionRecognizer(faces=FacePreprocessor(out_size=48, grayscale=True))
    with pytest.raises(NoFaceError, match="no face found in any of the 3 frames"):
        rec.predict_proba([blank])
    with pytest.raises(NoFaceError):
        rec.analyze(blank)


def test_fit_skips_bad_videos(faces, clips, bad_files, prep):
    rec = VideoEmotionRecognizer(faces=prep, cv=2, errors="skip")
    with pytest.warns(RuntimeWarning, match="1 of 7"):
        rec.fit([*faces, bad_files[1]], [*clips[1], 3])
    assert rec.is_trained and len(rec.failures_) == 1, "trained on the 6 good clips"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"errors": "ignore"}, "errors must be one of"),
        ({"weights": "nope"}, "not a registered weights name"),
        ({"features": ("fer2013_resnet10", "missing")}, "not a registered weights name"),
        ({"features": "fer2013_resnet10"}, "non-empty list"),
        ({"c3d": {"frames": 8}}, "unknown setting"),
        ({"lstm": {"units": 0}}, "lstm units must be an integer >= 1"),
        ({"faces": "mtcnn"}, "FacePreprocessor"),
        ({"flip_margin": 2}, "flip_margin must be a number in"),
        ({"scores": {"C": 0}}, "scores C must be a number > 0"),
        ({"scores": {"C": float("nan")}}, "scores C must be a number > 0.*got nan"),
        ({"scores": {"power": 2}}, "scores: unknown setting"),
        ({"scores": "yes"}, "scores must be None, True or a dict"),
    ],
)
def test_bad_parameters(params, message, faces):
    with pytest.raises(InputError, match=message):
        VideoEmotionRecognizer(**params).fit(faces, [3, 5] * 3)


def test_bad_arguments(faces, trained, videos):
    rec = VideoEmotionRecognizer(cv=3)
    with pytest.raises(InputError, match="single"):
        rec.predict_proba(str(videos / SHORT))
    with pytest.raises(InputError, match="one label per video"):
        rec.fit(faces, [3, 5])
    with pytest.raises(InputError, match="at least 3 videos"):
        rec.fit(faces[:4], [3, 5, 3, 5])
    with pytest.raises(InputError, match="at least 2 classes"):
        rec.fit(faces[:3], [3, 3, 3])
    with pytest.raises(InputError, match=r"X\[1\] must be a video"):
        rec.predict_proba([faces[0], 42])
    with pytest.raises(InputError, match="tracks must be"):
        trained.analyze(faces[0], tracks="some")


def test_sklearn_contract(trained):
    copy = clone(trained)
    assert not copy.is_trained, "clone gives an unfitted (pretrained) copy"
    assert copy.get_params()["cv"] == 2, "parameters survive clone"
    copy.set_params(C=0.5, faces__detect_every=2)
    assert copy.C == 0.5 and copy.faces.detect_every == 2, "set_params, nested too"


def test_frame_features(faces, bad_files):
    rec = VideoEmotionRecognizer(errors="skip")
    with pytest.warns(RuntimeWarning):
        feats = rec.frame_features([faces[0], bad_files[0]])
    assert feats[1] is None, "the failed video has no features"
    assert feats[0][DEFAULT_WEIGHTS].shape == (len(faces[0]), 512), "fc1 per frame"
    assert isinstance(faces[0], VideoFaces), "fixture sanity"
