"""VideoEmotionRecognizer(finetune=...): the face model fine-tuned on the training videos' faces.

Tiny runs on real CK+ clips (1 epoch, a few faces per clip): the weights change, the model
predicts, saves and loads back, a fold never fine-tunes on its test subjects, bad settings are
refused, and ``kemo train videos --finetune`` works.
"""

import copy
import json

import keras
import numpy as np
import pytest
from sklearn.base import clone

from kemo import cli
from kemo.errors import InputError, WeightsError
from kemo.face_classifier import FLIP_MARGIN
from kemo.faces import FacePreprocessor
from kemo.protocols import cross_validate
from kemo.recognizer import FINETUNED_FILE, MANIFEST, VideoEmotionRecognizer, _face_classifier
from kemo.training import _batchnorm_layers
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
PER_VIDEO = 3
TINY = {"epochs": 1, "faces_per_video": PER_VIDEO, "batch_size": 8}


@pytest.fixture(scope="module")
def clips(shared_data):
    folder = shared_data / "ckplus_emopy" / "videos"
    paths = [str(folder / name) for name in CLIPS]
    return paths, np.array(list(CLIPS.values())), np.array([n[:4] for n in CLIPS])


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    """6 sampled frames per clip at the shipped model's 48x48 grey input, cached."""
    return FacePreprocessor(n_frames=6, out_size=48, grayscale=True,
                            cache_dir=tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def faces(clips, prep):
    return clone(prep).fit().transform(clips[0])


@pytest.fixture(scope="module")
def tuned(faces, clips, prep):
    return VideoEmotionRecognizer(faces=prep, cv=2, finetune=TINY).fit(faces, clips[1])


@pytest.fixture(scope="module")
def shipped():
    """The shared face model as loaded (fine-tuning must leave it so)."""
    return _face_classifier(DEFAULT_WEIGHTS, True, FLIP_MARGIN, 256, None)


def _weights(model):
    return [np.asarray(w) for w in model.get_weights()]


def test_finetune_changes_a_copy_of_the_face_model(tuned, shipped):
    assert tuned.finetune_faces_ == PER_VIDEO * len(CLIPS), (
        f"{PER_VIDEO} faces of each of the {len(CLIPS)} clips: {tuned.finetune_faces_}")
    assert tuned.face_model_ is not shipped, "fit trains its own copy, not the shared model"
    after, before = tuned.face_model_.model_, shipped._model()
    changed = [not np.array_equal(a, b) for a, b in
               zip(_weights(after), _weights(before), strict=True)]
    assert any(changed), "fine-tuning changed no weight of the face model"
    reloaded = _face_classifier.__wrapped__(DEFAULT_WEIGHTS, True, FLIP_MARGIN, 256)._model()
    assert all(np.array_equal(a, b) for a, b in
               zip(_weights(before), _weights(reloaded), strict=True)), (
        "the shared, cached face model must stay as shipped")
    for tuned_bn, shipped_bn in zip(_batchnorm_layers(after), _batchnorm_layers(before),
                                    strict=True):
        np.testing.assert_array_equal(
            np.asarray(tuned_bn.moving_mean), np.asarray(shipped_bn.moving_mean),
            err_msg=f"{tuned_bn.name}: BatchNorm statistics are kept as trained on FER2013")


def test_batchnorm_adapt_follows_the_videos_faces(faces, clips, prep, shipped):
    rec = VideoEmotionRecognizer(faces=prep, cv=2, finetune={**TINY, "batchnorm": "adapt"})
    after = rec.fit(faces, clips[1]).face_model_.model_
    moved = [not np.allclose(np.asarray(a.moving_mean), np.asarray(b.moving_mean))
             for a, b in zip(_batchnorm_layers(after), _batchnorm_layers(shipped._model()),
                             strict=True)]
    assert all(moved), f"every BatchNorm layer's statistics follow the clips' faces: {moved}"
    assert rec.predict(faces).shape == (len(CLIPS),), "and the recogniser predicts"


def test_finetuned_features_and_predictions(tuned, faces, clips, prep):
    plain = VideoEmotionRecognizer(faces=prep, cv=2)
    ours, theirs = tuned.frame_features(faces[:1])[0], plain.frame_features(faces[:1])[0]
    name = DEFAULT_WEIGHTS
    assert ours[name].shape == theirs[name].shape, "same feature width"
    assert not np.allclose(ours[name], theirs[name]), (
        "the SVM reads the fine-tuned model's features, not the shipped model's")
    proba = tuned.predict_proba(faces)
    assert proba.shape == (len(CLIPS), 2), f"one row per clip, 2 classes: {proba.shape}"
    np.testing.assert_allclose(proba.sum(axis=1), 1, err_msg="probability rows sum to 1")
    timeline = tuned.analyze(faces[0]).frame_probabilities
    assert np.allclose(timeline, tuned.face_model_.predict_proba(faces[0].faces)), (
        "the timeline comes from the fine-tuned face model")


def test_save_load_identical_and_tamper_refused(tuned, faces, tmp_path):
    folder = tuned.save(tmp_path / "model")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert FINETUNED_FILE in manifest["files"], f"sha256 recorded: {sorted(manifest['files'])}"
    assert manifest["params"]["finetune"] == TINY, "the setting is saved with the model"
    loaded = VideoEmotionRecognizer.load(folder)
    np.testing.assert_array_equal(loaded.predict_proba(faces), tuned.predict_proba(faces),
                                  err_msg="a loaded fine-tuned model predicts the same")
    with open(folder / FINETUNED_FILE, "r+b") as file:  # one byte in the middle
        file.seek(file.seek(0, 2) // 2)
        byte = file.read(1)
        file.seek(-1, 1)
        file.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(WeightsError, match=f"{FINETUNED_FILE}: sha256 mismatch"):
        VideoEmotionRecognizer.load(folder)


def test_folds_never_finetune_on_test_subjects(faces, clips, prep, monkeypatch):
    seen = []
    original = VideoEmotionRecognizer._finetuned_face_model

    def spy(self, found, labels, config):
        seen.append(sorted({str(f.source).rsplit("/", 1)[-1][:4] for f in found}))
        return original(self, found, labels, config)

    monkeypatch.setattr(VideoEmotionRecognizer, "_finetuned_face_model", spy)
    _, labels, subjects = clips
    rec = VideoEmotionRecognizer(faces=prep, cv=2, finetune=TINY)
    result = cross_validate(rec, faces, labels, subjects, "loso")
    assert len(seen) == len(result.folds) == 3, f"one fine-tuning per fold: {seen}"
    for trained_on, (train, test) in zip(seen, result.folds, strict=True):
        held_out = set(subjects[test])
        assert not held_out & set(trained_on), (
            f"fold of {held_out} fine-tuned on faces of {trained_on}")
        assert trained_on == sorted(set(subjects[train])), (
            f"every training subject's faces are used: {trained_on}")
    assert not np.isnan(result.proba).any(), "every clip predicted"


@pytest.mark.parametrize(("finetune", "message"), [
    ("yes", "finetune must be None, True or a dict"),
    ({"lr": 1e-3}, r"finetune: unknown setting\(s\) \['lr'\]"),
    ({"epochs": 0}, "finetune epochs must be an integer >= 1, got 0"),
    ({"batch_size": 2.5}, "finetune batch_size must be an integer >= 1, got 2.5"),
    ({"faces_per_video": -1}, "finetune faces_per_video must be an integer >= 1, got -1"),
    ({"learning_rate": 5}, r"finetune learning_rate must be a number in \(0, 1\).*got 5"),
    ({"learning_rate": "fast"}, "finetune learning_rate must be a number"),
    ({"batchnorm": "train"}, "finetune batchnorm must be 'frozen' or 'adapt', got 'train'"),
    ({"faces": "apex"}, r"finetune faces must be one of \('all', 'expressive'\), got 'apex'"),
])
def test_bad_settings_refused(finetune, message, faces, clips):
    with pytest.raises(InputError, match=message):
        VideoEmotionRecognizer(finetune=finetune).fit(faces, clips[1])


def test_expressive_rows_keep_the_half_that_shows_the_label():
    from kemo.recognizer.finetune import expressive_rows

    neutral = np.array([0.9, 0.8, 0.1, 0.3, 0.2])  # neutral start, then the expression
    assert expressive_rows(neutral, is_neutral=False).tolist() == [2, 3, 4]
    assert expressive_rows(neutral, is_neutral=True).tolist() == [0, 1, 3]
    assert expressive_rows(neutral[:1], is_neutral=False).tolist() == [0], "one face stays"


def test_finetune_on_the_expressive_half(faces, clips, prep):
    """``faces="expressive"``: each clip gives the half of its faces the face model finds
    least neutral."""
    rec = VideoEmotionRecognizer(faces=prep, cv=2, finetune={
        "epochs": 1, "batch_size": 8, "faces": "expressive"}).fit(faces, clips[1])
    assert rec.finetune_faces_ == sum((len(f.faces) + 1) // 2 for f in faces), (
        f"{rec.finetune_faces_} faces of {[len(f.faces) for f in faces]}")
    assert not np.isnan(rec.predict_proba(faces[:2])).any()


def test_labels_and_features_must_fit_the_face_model(faces, clips):
    with pytest.raises(InputError, match="label 'a' is neither one of their ids 0..6"):
        VideoEmotionRecognizer(finetune=True).fit(faces, ["a", "b"] * 3)
    with pytest.raises(InputError, match="not among features"):
        VideoEmotionRecognizer(finetune=True, features=("vggface",)).fit(faces, clips[1])


def test_names_as_labels(faces, clips, prep):
    names = np.where(clips[1] == 5, "surprise", "Happy")
    rec = VideoEmotionRecognizer(faces=prep, cv=2, finetune=TINY).fit(faces, names)
    assert list(rec.class_names_) == ["Happy", "surprise"], rec.class_names_
    assert rec.finetune_faces_ == PER_VIDEO * len(CLIPS), "names map to the face classes"


def test_cli_train_videos_finetune(clips, prep, tmp_path, capsys):
    paths, labels, subjects = clips
    listing = tmp_path / "clips.csv"
    listing.write_text("path,label,group\n" + "".join(
        f"{p},{label},{s}\n" for p, label, s in zip(paths, labels, subjects, strict=True)))
    model = tmp_path / "model"
    code = cli.main(["train", "videos", str(listing), "--out", str(model), "--cv", "2",
                     "--frames", "6", "--cache", str(prep.cache_dir), "--finetune",
                     "--finetune-epochs", "1", "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "face model fine-tuned on" in out, f"the summary says it: {out}"
    loaded = VideoEmotionRecognizer.load(model)
    assert loaded.finetune == {"epochs": 1} and hasattr(loaded, "face_model_"), (
        "the folder holds the fine-tuned face model and its setting")
    assert cli.main(["train", "videos", str(listing), "--out", str(tmp_path / "m2"),
                     "--finetune-epochs", "2", "-q"]) == 1, "--finetune-epochs alone"
    assert "add --finetune" in capsys.readouterr().err, "the message says what to do"
    assert cli.main(["train", "videos", str(listing), "--out", str(tmp_path / "m3"),
                     "--cv", "2", "--frames", "6", "--cache", str(prep.cache_dir), "--finetune",
                     "--finetune-epochs", "1", "--finetune-faces", "expressive", "-q"]) == 0
    tuned = VideoEmotionRecognizer.load(tmp_path / "m3")
    assert tuned.finetune == {"epochs": 1, "faces": "expressive"}, tuned.finetune
    # the protocol command takes the setting in --model-config, checked before any face search
    assert cli.main(["evaluate", str(listing), "--protocol", "loso", "--model-config",
                     '{"finetune": {"epochs": 0}}', "-q"]) == 1, "a bad fine-tuning setting"
    err = capsys.readouterr().err
    assert "finetune epochs must be an integer >= 1, got 0" in err, err


def test_fine_tuned_face_model_refuses_class_balance(tuned, faces):
    balanced = copy.copy(tuned).set_params(class_balance=0.5)
    with pytest.raises(InputError, match="fine-tuned .* set class_balance=0"):
        balanced.analyze(faces[0])
    # refused before the face finding: a missing file would be named otherwise
    for call in (balanced.analyze, lambda video: balanced.predict_proba([video])):
        with pytest.raises(InputError, match="fine-tuned .* set class_balance=0"):
            call("missing.mp4")
