"""Bad inputs: one table of everything users' disks may hold, and what kemo does with each.

Every case builds its own input in ``tmp_path`` (real faces come from the shared data, and the
cases that need them skip without it) and feeds it to the public API. The expected outcome is
either a kemo exception (``kemo.errors``; scikit-learn's ``ValueError`` where the estimator
contract asks for it), a warning, or ``OK``: the documented behaviour, checked by the case.
"""

import os
import zipfile

import cv2
import numpy as np
import pytest

from kemo import weights
from kemo.aggregation import Aggregator
from kemo.errors import InputError, KemoError, VideoReadError, WeightsError
from kemo.evaluation import evaluate
from kemo.fusion import FusionClassifier, Views
from kemo.svm import LinearSVMClassifier
from kemo.video import Video, read_frames, write_video

OK = "documented behaviour"
CASES = []


def case(name, expect, match=None):
    """Register a table row: ``make(tmp_path, fx)`` returns the action to run."""

    def register(make):
        CASES.append(pytest.param(make, expect, match, id=name))
        return make

    return register


class Fixtures:
    """Lazy access to the module fixtures, so a case only builds (or skips on) what it uses."""

    def __init__(self, request):
        self.request = request

    def __getattr__(self, name):
        return self.request.getfixturevalue(name)


@pytest.fixture(scope="module")
def face(shared_data):
    """A real RGB face photo (Obama, public test image), shrunk to 364x455 for speed."""
    image = cv2.imread(str(shared_data / "faces" / "fr_obama.jpg"))
    image = cv2.resize(image, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def prep():
    from kemo.faces import FacePreprocessor

    return FacePreprocessor(out_size=48, grayscale=True).fit()


@pytest.fixture(scope="module")
def face_box(face, prep):
    """The box FacePreprocessor finds on the RGB uint8 photo: the reference for the variants."""
    return prep.transform([face[None]])[0].boxes[0]


@pytest.fixture(scope="module")
def classifier():
    from kemo.face_classifier import FaceEmotionClassifier

    return FaceEmotionClassifier().fit()


@pytest.fixture(scope="module")
def tiny_lstm(tmp_path_factory):
    """A tiny BiResidualLSTM and its weights file: a file for another architecture."""
    from kemo.models import BiResidualLSTM

    model = BiResidualLSTM(input_shape=(None, 6), units=4, num_layers=1, classes=3)
    path = tmp_path_factory.mktemp("lstm") / "tiny_lstm.weights.h5"
    model.save_weights(path)
    return model, path


@pytest.fixture
def registry(monkeypatch, tmp_path):
    """A private copy of the weights registry and an empty $KEMO_WEIGHTS folder."""
    monkeypatch.setattr(weights, "_REGISTRY", dict(weights._REGISTRY))
    folder = tmp_path / "kemo_weights"
    folder.mkdir()
    monkeypatch.setenv(weights.ENV_DIR, str(folder))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return folder


def clip(tmp_path, name="clip.avi", n=12):
    """A small real-codec (XVID) clip of moving texture."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (48, 128, 3), dtype=np.uint8)
    return write_video(tmp_path / name, (base[:, i : i + 64] for i in range(n)), fps=25)


def iou(a, b):
    from kemo.faces import box_iou

    return box_iou(list(a), list(b))


def one_face_near(result, box, name):
    assert len(result) == 1, f"{name}: expected one face, got {len(result)}"
    overlap = iou(result.boxes[0], box)
    assert overlap > 0.8, f"{name}: face box {result.boxes[0]} far from {box} (IoU {overlap:.2f})"


# ------------------------------------------------------------------ video files


@case("zero-byte video", VideoReadError, r"empty \(0 bytes\)")
def _zero_byte(tmp_path, fx):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    return lambda: Video(path)


@case("truncated video, header only", VideoReadError, "cannot open it as a video")
def _truncated_header(tmp_path, fx):
    path = tmp_path / "cut.avi"
    path.write_bytes(clip(tmp_path).read_bytes()[:1024])
    return lambda: read_frames(path)


@case("truncated video, cut midway", OK)
def _truncated_midway(tmp_path, fx):
    data = clip(tmp_path, n=20).read_bytes()
    path = tmp_path / "half.avi"
    path.write_bytes(data[: len(data) // 2])

    def act():
        with Video(path) as video:
            count, reported = video.frame_count, video.reported_frame_count
            frames = list(video.frames())
        assert 0 < count < reported == 20, f"real count {count} of {reported} reported"
        assert len(frames) == count, "iteration must stop at the real end, without error"

    return act


@case("random bytes named .mp4", VideoReadError, "not a video")
def _random_mp4(tmp_path, fx):
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(1).bytes(20_000))
    return lambda: Video(path)


@case("missing video file", VideoReadError, "does not exist")
def _missing(tmp_path, fx):
    return lambda: fx.prep.transform([tmp_path / "nowhere.avi"])


@case("image passed as a video", OK)
def _image_as_video(tmp_path, fx):
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), cv2.cvtColor(fx.face, cv2.COLOR_RGB2BGR))

    def act():
        indices, frames = read_frames(path)
        assert indices.tolist() == [0], f"a still image is a one-frame video, got {indices}"
        assert np.array_equal(frames[0], fx.face), "PNG is lossless: the frame is the image"
        one_face_near(fx.prep.transform([path])[0], fx.face_box, "image as video")

    return act


@case("video with no face", "NoFaceWarning", "no face found")
def _no_face(tmp_path, fx):
    path = clip(tmp_path, n=6)

    def act():
        result = fx.prep.transform([path])[0]
        assert len(result) == 0 and result.faces.shape == (0, 48, 48), "empty face stack"
        assert result.frames_read == 6 and result.n_missing == 6, "every frame counted"

    return act


@case("one-frame video", OK)
def _one_frame(tmp_path, fx):
    path = write_video(tmp_path / "one.avi", [fx.face])

    def act():
        with Video(path) as video:
            indices, frames = video.sample(4)
        assert indices.tolist() == [0, 0, 0, 0] and len(frames) == 4, "sampling repeats frame 0"
        result = fx.prep.transform([path])[0]
        assert result.frames_read == 1, f"one frame read, got {result.frames_read}"
        one_face_near(result, fx.face_box, "one-frame video")

    return act


@case("very large video frames (4096x2160)", OK)
def _large_video(tmp_path, fx):
    big = np.zeros((2160, 4096, 3), np.uint8)
    big[1000:1455, 2000:2364] = fx.face
    path = write_video(tmp_path / "4k.avi", [big, big])

    def act():
        with Video(path) as video:
            assert video.size == (4096, 2160), f"full size expected, got {video.size}"
        from kemo.faces import FacePreprocessor

        result = FacePreprocessor(max_side=1024, out_size=48).fit().transform([path])[0]
        assert len(result) == 2, f"a face in both frames, got {len(result)}"
        shifted = np.asarray(fx.face_box) + [2000, 1000, 0, 0]
        assert iou(result.boxes[0], shifted) > 0.7, f"box {result.boxes[0]} not at {shifted}"

    return act


@case("very large frame array (7680x4320)", OK)
def _large_array(tmp_path, fx):
    big = np.full((1, 4320, 7680, 3), 90, np.uint8)
    big[0, 3000:3455, 6000:6364] = fx.face

    def act():
        from kemo.faces import FacePreprocessor

        result = FacePreprocessor(out_size=48).fit().transform([big])[0]  # max_side=1920
        shifted = np.asarray(fx.face_box) + [6000, 3000, 0, 0]
        one_face_near(result, shifted, "8K frame (boxes in original pixels)")

    return act


@case("non-ASCII paths (video, cache folder)", OK)
def _non_ascii(tmp_path, fx):
    folder = tmp_path / "vidéos 表情 ☺"
    folder.mkdir()
    path = write_video(folder / "clip ü.avi", [fx.face] * 3)

    def act():
        from kemo.faces import FacePreprocessor

        assert read_frames(path)[1].shape[0] == 3, "non-ASCII path must read"
        prep = FacePreprocessor(out_size=48, cache_dir=folder / "caché").fit()
        result = prep.transform([path])[0]
        assert len(result) == 3, f"three faces expected, got {len(result)}"
        assert len(list((folder / "caché").glob("faces-*.npz"))) == 1, "cache file written"

    return act


# ------------------------------------------------------------------ images and face crops


@case("grayscale frames", OK)
def _gray(tmp_path, fx):
    gray = cv2.cvtColor(fx.face, cv2.COLOR_RGB2GRAY)
    return lambda: one_face_near(fx.prep.transform([gray[None]])[0], fx.face_box, "gray")


@case("RGBA frames", OK)
def _rgba(tmp_path, fx):
    rgba = np.dstack([fx.face, np.full(fx.face.shape[:2], 200, np.uint8)])

    def act():
        result = fx.prep.transform([rgba[None]])[0]
        reference = fx.prep.transform([fx.face[None]])[0]
        assert np.array_equal(result.faces, reference.faces), "alpha must be dropped, no more"

    return act


@case("16-bit frames", OK)
def _uint16(tmp_path, fx):
    deep = fx.face.astype(np.uint16) * 257  # the same picture on the 0..65535 scale

    def act():
        result = fx.prep.transform([deep[None]])[0]
        reference = fx.prep.transform([fx.face[None]])[0]
        assert np.array_equal(result.faces, reference.faces), "uint16 scales to the same faces"

    return act


@case("float frames", InputError, "dtype uint8 or uint16")
def _float_frames(tmp_path, fx):
    return lambda: fx.prep.transform([np.zeros((2, 64, 64, 3), np.float64)])


@case("two-channel frames", InputError, r"shape \(H, W\)")
def _two_channels(tmp_path, fx):
    return lambda: fx.prep.transform([np.zeros((2, 64, 64, 2), np.uint8)])


@case("grayscale and RGBA face crops to the classifier", OK)
def _crops_gray_rgba(tmp_path, fx):
    faces = fx.prep.transform([fx.face[None]])[0].faces  # (1, 48, 48) gray

    def act():
        gray = fx.classifier.predict_proba(faces)
        rgba = np.repeat(faces[..., None], 4, axis=3)
        rgba[..., 3] = 0
        assert np.allclose(fx.classifier.predict_proba(rgba), gray, atol=1e-5), "alpha ignored"
        assert np.isclose(gray.sum(), 1.0, atol=1e-5), f"probabilities sum to 1: {gray}"

    return act


@case("16-bit face crops beyond 0..255 to the classifier", InputError, r"0\.\.255")
def _crops_uint16(tmp_path, fx):
    return lambda: fx.classifier.predict_proba(np.full((2, 48, 48), 1000, np.uint16))


@case("NaN face pixels to the classifier", InputError, "finite")
def _crops_nan(tmp_path, fx):
    faces = np.zeros((2, 48, 48), np.float32)
    faces[1, 3, 3] = np.nan
    return lambda: fx.classifier.predict_proba(faces)


# ------------------------------------------------------------------ features and labels


def _features(n=30, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), np.arange(n) % 3


@case("NaN frame features", InputError, "video 1 contains NaN or inf")
def _nan_features(tmp_path, fx):
    video = np.ones((4, 5))
    video[2, 1] = np.nan
    return lambda: Aggregator().fit_transform([np.ones((3, 5)), video])


@case("inf frame features", InputError, "video 0 contains NaN or inf")
def _inf_features(tmp_path, fx):
    video = np.ones((4, 5))
    video[0, 0] = np.inf
    return lambda: Aggregator().fit_transform([video])


@case("NaN video features to FusionClassifier (sklearn contract)", ValueError, "NaN")
def _nan_fusion(tmp_path, fx):
    X, y = _features()
    X[4, 2] = np.nan
    return lambda: FusionClassifier([("svm", LinearSVMClassifier())]).fit(X, y)


@case("ragged frame features (widths differ)", InputError, "video 1 of X has 3 features")
def _ragged_widths(tmp_path, fx):
    return lambda: Aggregator().fit_transform([np.ones((3, 5)), np.ones((3, 3))])


@case("ragged rows (list of lists)", InputError, "X is ragged: row 1 has 1 values")
def _ragged_rows(tmp_path, fx):
    return lambda: Aggregator().fit_transform([[1.0, 2.0], [1.0]])


@case("mismatched feature sets (networks, video counts)", InputError, "different numbers")
def _mismatched_networks(tmp_path, fx):
    return lambda: Aggregator().fit_transform([[np.ones((3, 5))] * 2, [np.ones((3, 4))]])


@case("mismatched feature sets (other widths than fit)", InputError, "fitted on widths")
def _mismatched_fit(tmp_path, fx):
    fitted = Aggregator().fit([np.ones((3, 5))])
    return lambda: fitted.transform([np.ones((3, 4))])


@case("mismatched feature sets (views of different lengths)", InputError, "same number")
def _mismatched_views(tmp_path, fx):
    return lambda: Views(agg=np.ones((10, 4)), c3d=np.ones((9, 4)))


@case("mismatched feature sets (X and y lengths)", InputError, "30 samples but y has 20")
def _mismatched_y(tmp_path, fx):
    X, y = _features()
    return lambda: FusionClassifier([("svm", LinearSVMClassifier())]).fit(X, y[:20])


@case("unknown labels in evaluation", InputError, r"labels \['Sadd'\] are not among")
def _unknown_eval(tmp_path, fx):
    return lambda: evaluate(["Happy", "Sad"], ["Happy", "Sadd"], labels=["Happy", "Sad"])


@case("unknown labels for prefit fusion members", InputError, "no prefit member knows")
def _unknown_prefit(tmp_path, fx):
    X, y = _features()
    member = LinearSVMClassifier(calibration="softmax").fit(X, y)
    return lambda: FusionClassifier([("svm", member)], prefit=True).fit(X, np.where(y, y, 9))


# ------------------------------------------------------------------ weights files


@case("weights file with a wrong hash", WeightsError, "sha256 mismatch")
def _wrong_hash(tmp_path, fx):
    folder = fx.registry
    _, source = fx.tiny_lstm
    (folder / source.name).write_bytes(source.read_bytes() + b"tampered")
    weights.register(weights.WeightsInfo(
        name="tiny", architecture="BiResidualLSTM", filename=source.name,
        sha256=weights.sha256(source), input_shape=(None, 6), color=None, classes=3))
    return lambda: weights.fetch("tiny")


@case("weights file for another architecture (path)", WeightsError, "does not fit")
def _other_architecture_file(tmp_path, fx):
    from kemo.models import ResNet10

    _, source = fx.tiny_lstm
    return lambda: ResNet10(weights=str(source), input_shape=(48, 48, 1))


@case("weights entry for another architecture (name)", WeightsError, "not ResNet10")
def _other_architecture_name(tmp_path, fx):
    from kemo.models import ResNet10

    folder = fx.registry
    _, source = fx.tiny_lstm
    (folder / source.name).write_bytes(source.read_bytes())
    weights.register(weights.WeightsInfo(
        name="tiny", architecture="BiResidualLSTM", filename=source.name,
        sha256=weights.sha256(source), input_shape=(None, 6), color=None, classes=3))
    return lambda: ResNet10(weights="tiny", input_shape=(48, 48, 1))


@case("random bytes named .keras to the classifier", WeightsError, "not a loadable .keras")
def _junk_keras(tmp_path, fx):
    from kemo.face_classifier import FaceEmotionClassifier

    path = tmp_path / "junk.keras"
    path.write_bytes(np.random.default_rng(2).bytes(4096))
    return lambda: FaceEmotionClassifier(weights=str(path)).fit()


@case("another model's weights file to the classifier", WeightsError, "does not fit this model")
def _h5_to_classifier(tmp_path, fx):
    from kemo.face_classifier import FaceEmotionClassifier

    return lambda: FaceEmotionClassifier(weights=str(fx.tiny_lstm[1])).fit()


@case("zip named .keras without weights", WeightsError, "model.weights.h5")
def _zip_without_weights(tmp_path, fx):
    model, _ = fx.tiny_lstm
    path = tmp_path / "empty.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    return lambda: weights.load_into(model, str(path), architecture="BiResidualLSTM")


@case("missing .keras model file to FrameFeatureExtractor", WeightsError, "does not exist")
def _missing_keras(tmp_path, fx):
    from kemo.features import FrameFeatureExtractor

    return lambda: FrameFeatureExtractor(str(tmp_path / "none.keras")).fit()


@pytest.mark.parametrize(("make", "expect", "match"), CASES)
def test_bad_input(make, expect, match, tmp_path, request):
    action = make(tmp_path, Fixtures(request))
    if expect == OK:
        action()
    elif expect == "NoFaceWarning":
        from kemo.faces import NoFaceWarning

        with pytest.warns(NoFaceWarning, match=match):
            action()
    else:
        with pytest.raises(expect, match=match) as info:
            action()
        if expect is not ValueError:
            assert isinstance(info.value, KemoError), f"{info.value!r} is not a KemoError"


ISSUE_ITEMS = (
    "zero-byte", "truncated", "random bytes", "image passed as a video", "no face",
    "one-frame", "grayscale", "RGBA", "16-bit", "very large", "non-ASCII", "NaN", "inf",
    "ragged", "mismatched", "unknown labels", "wrong hash", "another architecture",
)


def test_table_covers_every_bad_input_of_the_issue():
    ids = " | ".join(p.id for p in CASES)
    missing = [item for item in ISSUE_ITEMS if item not in ids]
    assert not missing, f"bad inputs of issue 9 without a row in the table: {missing}"


# ------------------------------------------------------------------ safe loading


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory):
    """A .keras file holding a Lambda layer: Python code that safe mode must not run."""
    import keras

    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    path = tmp_path_factory.mktemp("unsafe") / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    return path


def test_classifier_refuses_code_in_keras_files(lambda_model):
    from kemo.face_classifier import FaceEmotionClassifier

    with pytest.raises(WeightsError, match="unsafe|safe_mode") as info:
        FaceEmotionClassifier(weights=str(lambda_model)).fit()
    assert str(lambda_model) in str(info.value), f"the file must be named: {info.value}"


def test_feature_extractor_refuses_code_in_keras_files(lambda_model):
    from kemo.features import FrameFeatureExtractor

    with pytest.raises(WeightsError, match="unsafe|safe_mode"):
        FrameFeatureExtractor(str(lambda_model)).fit()


def test_face_cache_files_are_never_unpickled(tmp_path):
    """A cache .npz holding a pickled object array is refused, not executed."""
    from kemo.faces import VideoFaces

    path = tmp_path / "faces-evil.npz"
    np.savez(path, faces=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        VideoFaces.load(path)


def test_library_never_unpickles():
    """No kemo module calls pickle, joblib or np.load without allow_pickle=False.

    One deliberate exception: ``kemo/parallel.py`` unpickles, in a Dask worker, only the
    set-up object its own client sent over the cluster's channel (Dask pickles every task
    anyway); it never reads a pickle from a file.
    """
    import kemo

    root = os.path.dirname(kemo.__file__)
    offenders = []
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".py") or (folder == root and name == "parallel.py"):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as file:
                for number, line in enumerate(file, 1):
                    code = line.split("#")[0]
                    if "import pickle" in code or "joblib" in code or "torch.load" in code or (
                            "np.load(" in code and "allow_pickle=False" not in code):
                        offenders.append(f"{path}:{number}: {line.strip()}")
                    if "load_model(" in code and "safe_mode=False" in code:
                        offenders.append(f"{path}:{number}: {line.strip()}")
    assert not offenders, "unsafe loading in kemo:\n" + "\n".join(offenders)


# ------------------------------------------------------------------ the command line


def test_kemo_predict_batch_goes_on_past_every_bad_video(shared_data, face, tmp_path, capsys):
    """One batch holding the bad video files of the table: one line per failure, exit 1."""
    from kemo import cli

    good = shared_data / "ckplus_emopy" / "videos" / "S055_006_fear.avi"
    odd = tmp_path / "vidéo 表情"
    odd.mkdir()
    renamed = odd / "peur ü.avi"
    renamed.write_bytes(good.read_bytes())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(1).bytes(20_000))
    cut = tmp_path / "cut.avi"
    cut.write_bytes(good.read_bytes()[:1024])
    blank = clip(tmp_path, "blank.avi", n=6)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    missing = tmp_path / "missing.avi"
    bad = [empty, noise, cut, blank, missing]
    videos = [good, *bad, renamed, photo]
    code = cli.main(["predict", *map(str, videos), "-q", "--frames", "4"])
    out, err = capsys.readouterr()
    assert code == 1, f"a batch with failures exits 1, got {code}"
    assert f"kemo: {len(bad)} of {len(videos)} videos failed:" in err, err
    failures = [line.strip() for line in err.splitlines() if line.startswith("  ")]
    for path in bad:
        lines = [line for line in failures if str(path) in line]
        assert len(lines) == 1, f"one line naming {path} expected in:\n{err}"
    assert len(failures) == len(bad), f"only the bad videos fail:\n{err}"
    for path in (good, renamed, photo):
        assert any(line.startswith(f"{path}: ") for line in out.splitlines()), (
            f"{path} must still get its emotion:\n{out}")
