"""What a new user meets from Python: a quiet start, annotated videos a person can read, a face
model of their own, class sizes checked before the work, and scikit-learn composition on small
data sets. The command line's side of the same is in test_cli.py."""

import json
import os
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline

from kemo import _drawing
from kemo.aggregation import Aggregator
from kemo.errors import InputError, WeightsError
from kemo.face_classifier import FaceEmotionClassifier
from kemo.faces import FacePreprocessor
from kemo.recognizer import MANIFEST, VideoEmotionRecognizer
from kemo.svm import LinearSVMClassifier
from kemo.video import Video, read_frames, write_video
from kemo.weights import sha256

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="mtcnn needs KERAS_BACKEND=tensorflow"
)

SHORT = "S052_001_surprise.avi"  # 15 frames
YELLOW = (230, 200, 40)  # a curtain on which the old yellow corner label could not be read


@pytest.fixture(scope="module")
def videos(shared_data):
    return shared_data / "ckplus_emopy" / "videos"


def _env():
    """The environment of a fresh user: no kemo or TensorFlow log settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KEMO_DEBUG")}
    return {**env, "PYTHONWARNINGS": "ignore"}


# ----------------------------------------------------------------------------- quiet start


def test_library_starts_quietly(shared_data):
    code = ("import cv2, numpy as np, kemo\n"
            f"image = cv2.imread({str(shared_data / 'faces' / 'mtcnn_no_faces.jpg')!r})\n"
            "print(kemo.FaceDetector().detect(np.ascontiguousarray(image[:, :, ::-1])))\n"
            "print(kemo.FaceEmotionClassifier().predict(np.zeros((1, 48, 48), np.uint8)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[0] == "[]", f"no face in the no-face photo: {done.stdout}"
    assert done.stderr == "", f"TensorFlow's start-up lines reach the user: {done.stderr[:800]}"


def test_tensorflow_errors_still_show(tmp_path):
    broken = tmp_path / "tensorflow"
    broken.mkdir()
    (broken / "__init__.py").write_text(
        "import os\nos.write(2, b'E tensorflow: cannot load libcudart.so.12\\n')\n"
        "raise ImportError('libcudart.so.12: cannot open shared object file')\n")
    code = "from kemo._tensorflow import import_quietly\nimport_quietly()\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**_env(), "PYTHONPATH": str(tmp_path)}, timeout=120)
    assert done.returncode != 0, "a TensorFlow that cannot start is an error"
    assert "E tensorflow: cannot load libcudart.so.12" in done.stderr, (
        f"what TensorFlow printed before failing is shown: {done.stderr}")
    assert "cannot open shared object file" in done.stderr, f"and the error: {done.stderr}"


# ----------------------------------------------------------------------------- annotated videos


def _stage(frames, width, height):
    """The clip's frames shrunk onto a yellow ``width`` x ``height`` stage."""
    out = []
    for frame in frames:
        stage = np.empty((height, width, 3), np.uint8)
        stage[:] = YELLOW
        side = int(height * 0.6)
        face = cv2.resize(frame, (int(side * frame.shape[1] / frame.shape[0]), side))
        top, left = (height - side) // 2, (width - face.shape[1]) // 2
        stage[top:top + side, left:left + face.shape[1]] = face
        out.append(stage)
    return out


def _headline_height(path):
    """Height of the dark label in the top-left corner of the first frame, in pixels."""
    with Video(path) as video:
        _, frame = next(iter(video.frames()))
    column = frame[:, 1].astype(int).sum(axis=1)
    dark = column < 3 * 80
    return int(np.argmin(dark)) if not dark.all() else len(dark)


def test_annotated_labels_scale_with_the_frame_height(videos, tmp_path):
    _, frames = read_frames(videos / SHORT, n=4)
    rec = VideoEmotionRecognizer()
    heights = {}
    for width, height in ((1920, 1080), (640, 360)):
        clip = write_video(tmp_path / f"{height}.avi", _stage(frames, width, height), fps=10)
        annotated = rec.analyze(clip).annotate(tmp_path / f"{height}.annotated.mp4")
        heights[height] = _headline_height(annotated)
        with Video(annotated) as video:  # kept to look at when a change needs checking
            _, first = next(iter(video.frames()))
        cv2.imwrite(str(tmp_path / f"{height}.png"), first[:, :, ::-1])
    assert heights[1080] >= 40, f"the label is readable at 1080p: {heights[1080]} px high"
    assert heights[360] >= 16, f"and at 360p: {heights[360]} px high"
    ratio = heights[1080] / heights[360]
    assert 2.3 <= ratio <= 3.3, f"the label grows with the frame (1080 / 360 = 3): {heights}"


def test_annotation_names_each_track_and_the_video(videos, tmp_path, monkeypatch):
    drawn = []
    real = _drawing.draw_frame

    def spy(image, faces, headline, style):
        drawn.append((list(faces), headline))
        return real(image, faces, headline, style)

    monkeypatch.setattr(_drawing, "draw_frame", spy)
    result = VideoEmotionRecognizer().analyze(videos / SHORT)
    result.annotate(tmp_path / "annotated.avi")
    p = float(np.max(result.probabilities))
    assert {h for _, h in drawn} == {f"video: {result.label} {p:.2f}"}, (
        f"the corner label says it is the whole video's: {drawn[0][1]}")
    texts = [text for faces, _ in drawn for _, _, text in faces]
    track = result.main.track_id
    assert len(texts) == result.faces_found, "every face found is labelled"
    assert all(t.startswith(f"#{track} ") and t.split()[1] in result.timeline_class_names
               for t in texts), f"track id then emotion on each box: {texts[:3]}"


def test_labels_of_crowded_faces_do_not_overlap():
    image = np.zeros((1080, 1920, 3), np.uint8)
    boxes = [(300, 400, 200, 250), (420, 410, 200, 250), (560, 395, 200, 250),
             (700, 0, 220, 260), (1800, 900, 120, 180)]  # overlapping, on the top and corner
    faces = [(i, box, f"#{i} Surprise 0.97") for i, box in enumerate(boxes)]
    rects = _drawing.draw_frame(image, faces, "video: Surprise 0.71", _drawing.style_for(1080))
    assert len(rects) == len(faces) + 1, "a label per face, and the video's"
    for i, a in enumerate(rects):
        assert 0 <= a[0] and 0 <= a[1] and a[2] <= 1920 and a[3] <= 1080, f"{a} in the frame"
        for b in rects[i + 1:]:
            apart = a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
            assert apart, f"labels {a} and {b} overlap"


def test_annotate_names_the_users_file(videos, tmp_path):
    result = VideoEmotionRecognizer().analyze(videos / SHORT)
    with pytest.raises(InputError, match=r"out\.xyz: cannot write a \.xyz video"):
        result.annotate(tmp_path / "out.xyz")
    made = result.annotate(tmp_path / "new" / "folder" / "out.mp4")
    assert made.is_file(), "the folder is made"
    assert sorted(p.name for p in made.parent.iterdir()) == ["out.mp4"], "no temporary left"


# ----------------------------------------------------------------------------- own face model


@pytest.fixture(scope="module")
def face_model(tmp_path_factory):
    """A face model file as `kemo train fer2013` exports it (an untrained ResNet-10 here; the
    command itself is run in test_cli.py)."""
    from kemo.models import ResNet10
    from kemo.training import export_weights

    keras.utils.set_random_seed(1)
    path = tmp_path_factory.mktemp("run") / "fer2013_resnet10.weights.h5"
    export_weights(ResNet10(input_shape=(48, 48, 1)), path)
    return path


@pytest.fixture(scope="module")
def found(videos):
    clips = [SHORT, "S052_004_happiness.avi", "S055_001_surprise.avi", "S055_005_happiness.avi"]
    prep = FacePreprocessor(n_frames=6, out_size=48, grayscale=True).fit()
    return prep.transform([str(videos / c) for c in clips]), np.array([5, 3, 5, 3])


def test_face_classifier_takes_a_model_file(face_model, found):
    faces = found[0][0].faces
    clf = FaceEmotionClassifier(weights=str(face_model))
    proba = clf.predict_proba(faces)
    assert proba.shape == (len(faces), 7), f"7 emotions per face: {proba.shape}"
    assert clf.info_.sha256 == sha256(face_model), "the file is identified by its sha256"
    shipped = FaceEmotionClassifier().predict_proba(faces)
    assert np.abs(proba - shipped).max() > 1e-3, "the file's model, not the shipped one"


def test_missing_model_file_is_named(tmp_path):
    missing = tmp_path / "run" / "fer2013_resnet10.weights.h5"
    with pytest.raises(WeightsError, match="model file .*run/fer2013_resnet10.weights.h5.* not"):
        FaceEmotionClassifier(weights=str(missing)).fit()
    with pytest.raises(WeightsError, match="not found"):
        VideoEmotionRecognizer(weights=str(missing)).predict_proba([np.zeros((1, 48, 48))])


def test_recognizer_saves_the_face_model_it_was_built_on(face_model, found, tmp_path):
    faces, labels = found
    rec = VideoEmotionRecognizer(weights=str(face_model), cv=2).fit(faces, labels)
    folder = rec.save(tmp_path / "model")
    manifest = json.loads((folder / MANIFEST).read_text())
    copied = folder / manifest["weights_file"]
    assert manifest["files"][copied.name] == sha256(face_model), (
        f"the face model travels with the model, its sha256 recorded: {manifest['files']}")
    loaded = VideoEmotionRecognizer.load(folder)
    assert np.allclose(loaded.predict_proba(faces), rec.predict_proba(faces)), "same model"
    copied.write_bytes(copied.read_bytes()[:-8] + bytes(8))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        VideoEmotionRecognizer.load(folder)


def test_skipped_videos_are_named_once(tmp_path):
    bad = tmp_path / "broken.avi"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    rec = VideoEmotionRecognizer(errors="skip")
    with pytest.warns(RuntimeWarning) as caught:
        rec.predict_proba([bad])
    message = str(caught[0].message)
    assert message.count(str(bad)) == 1, f"the path once per failure: {message}"
    assert "VideoReadError" in message, f"and what went wrong: {message}"


# ----------------------------------------------------------------------------- small data


def test_fit_checks_class_sizes_before_finding_faces(videos, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("faces were searched before the labels were checked")

    monkeypatch.setattr(VideoEmotionRecognizer, "_find_faces", never)
    paths = [str(videos / n) for n in (SHORT, "S055_001_surprise.avi", "S052_004_happiness.avi")]
    with pytest.raises(InputError, match="class Happy has 1 video") as error:
        VideoEmotionRecognizer().fit(paths, [5, 5, 3])
    assert "np.int64" not in str(error.value), f"the class by name: {error.value}"


@pytest.fixture(scope="module")
def ck_frames(shared_data):
    """The 40 CK+ clips as small grey frames flattened (per clip), their labels and subjects."""
    data = np.load(shared_data / "ckplus_emopy" / "ckplus_emopy_sequences_halfres.npz")
    offsets = data["seq_offsets"]
    clips = [np.stack([cv2.resize(f, (32, 24), interpolation=cv2.INTER_AREA).ravel()
                       for f in data["frames"][a:b]]).astype(np.float32)
             for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return clips, data["labels"].astype(int), data["subjects"]


def test_default_svm_fits_small_grid_search_folds(ck_frames):
    clips, labels, subjects = ck_frames
    model = make_pipeline(Aggregator(), LinearSVMClassifier())
    search = GridSearchCV(model, {"linearsvmclassifier__C": [0.01, 1.0]}, cv=GroupKFold(5))
    search.fit(clips, labels, groups=subjects)
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all(), f"every fold fits with the default calibration: {scores}"
    fitted = search.best_estimator_[-1]
    assert fitted.calibration_ in ("sigmoid", "softmax"), f"auto resolved: {fitted.calibration_}"


def test_sigmoid_asked_for_on_small_folds_raises(ck_frames):
    clips, labels, subjects = ck_frames
    model = make_pipeline(Aggregator(), LinearSVMClassifier(calibration="sigmoid"))
    search = GridSearchCV(model, {"linearsvmclassifier__C": [1.0]}, cv=GroupKFold(5),
                          error_score="raise")
    with pytest.raises(ValueError, match="(?i)fold|cross-validation|class"):
        search.fit(clips, labels, groups=subjects)


def test_auto_calibration_is_sigmoid_when_classes_are_large(ck_frames):
    clips, labels, _ = ck_frames
    features = Aggregator().fit_transform(clips)
    big = np.isin(labels, [1, 5])  # Disgust and Surprise: 9 clips each
    svm = LinearSVMClassifier().fit(features[big], labels[big])
    assert svm.calibration_ == "sigmoid", f"Platt scaling where it can be fitted: {svm}"
    assert not hasattr(svm, "decision_function"), "scores only where softmax is used"
    small = LinearSVMClassifier().fit(features[:6], labels[:6])
    assert small.calibration_ == "softmax", "softmax where a class is too small"
    assert small.decision_function(features[:2]).shape[0] == 2, "and its scores"


def test_an_array_of_paths_is_a_list_of_videos(videos):
    rec = VideoEmotionRecognizer(faces=FacePreprocessor(n_frames=4, out_size=48, grayscale=True))
    paths = [str(videos / SHORT), str(videos / "S052_004_happiness.avi")]
    from_array = rec.predict_proba(np.array(paths))
    assert np.allclose(from_array, rec.predict_proba(paths)), "np.array(paths) works as a list"
