"""FaceEnsemble: several trained face models as one model and one weights file."""

import numpy as np
import pytest

from kemo import FaceEmotionClassifier
from kemo.datasets import load_fer2013
from kemo.models import FaceEnsemble, ResNet10
from kemo.models.ensemble import from_members, shape_options
from kemo.training import export_weights


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """The shipped model and a narrow full-stem one (random weights, exported as kemo does)."""
    narrow = ResNet10(input_shape=(48, 48, 1), width=0.25, stem="full")
    path = tmp_path_factory.mktemp("members") / "narrow.weights.h5"
    export_weights(narrow, path)
    return ["fer2013_resnet10", str(path)]


@pytest.fixture(scope="module")
def faces(shared_data):
    return load_fer2013(shared_data / "fer2013", subset="PublicTest").images[:48]


def test_ensemble_averages_its_members(members, faces):
    model = from_members(members)
    assert shape_options(model) == {"members": [{}, {"width": 0.25, "stem": "full"}]}
    x = faces[..., None].astype("float32") / 255.0
    each = [ResNet10(weights=m, input_shape=(48, 48, 1)).predict(x, verbose=0) for m in members]
    np.testing.assert_allclose(model.predict(x, verbose=0), np.mean(each, axis=0), atol=1e-5)
    assert not np.allclose(each[0], each[1], atol=1e-2), "two different members"
    assert model.get_layer("fc1").output.shape == (None, 1024), "both members' fc1"


def test_exported_ensemble_is_one_face_model_file(members, faces, tmp_path):
    model = from_members(members)
    path = tmp_path / "ensemble.weights.h5"
    export_weights(model, path)
    clf = FaceEmotionClassifier(weights=str(path), flip=False)
    expected = model.predict(faces[..., None].astype("float32") / 255.0, verbose=0)
    np.testing.assert_allclose(clf.predict_proba(faces), expected, atol=1e-3)
    again = FaceEnsemble(weights=str(path), input_shape=(48, 48, 1))
    assert shape_options(again) == shape_options(model), "the members travel with the file"
    with pytest.raises(ValueError, match="hold members"):
        FaceEnsemble(weights=str(path), members=[{}, {}], input_shape=(48, 48, 1))


def test_ensemble_arguments_are_checked(members):
    with pytest.raises(ValueError, match="at least 2"):
        FaceEnsemble(members=[{}], input_shape=(48, 48, 1))
    with pytest.raises(ValueError, match="give members"):
        FaceEnsemble(input_shape=(48, 48, 1))
    with pytest.raises(ValueError, match="needs pooling"):
        FaceEnsemble(members=[{}, {}], include_top=False, input_shape=(48, 48, 1))
    with pytest.raises(ValueError, match="do not say their members"):
        FaceEnsemble(weights=members[1], input_shape=(48, 48, 1))
    pooled = FaceEnsemble(members=[{}, {"width": 0.5}], include_top=False, pooling="avg",
                          input_shape=(48, 48, 1))
    assert pooled.output.shape == (None, 512 + 256), "the members' pooled features"


def test_recogniser_reads_faces_with_an_ensemble(members, shared_data, tmp_path):
    """An exported ensemble serves a recogniser as the shipped model does: labels and fc1."""
    from kemo.datasets import CLASS_NAMES, load_ckplus
    from kemo.faces import VideoFaces
    from kemo.recognizer import VideoEmotionRecognizer

    path = tmp_path / "ensemble.weights.h5"
    export_weights(from_members(members), path)
    ck = load_ckplus(shared_data, kind="ckplus48")
    starts = np.sort(np.unique(ck.seq_ids, return_index=True)[1])
    picked = [s for name in ("Happy", "Surprise")
              for s in starts[ck.labels[starts] == CLASS_NAMES.index(name)][:4]]
    videos = [VideoFaces.from_faces(ck.images[s:s + 3], source=ck.seq_ids[s]) for s in picked]
    labels = ck.labels[picked]
    rec = VideoEmotionRecognizer(weights=str(path), cv=2).fit(videos, labels)
    proba = rec.predict_proba(videos)
    assert proba.shape == (8, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.mean(rec.predict(videos) == labels) >= 0.75, "fitted on these very sequences"
    pretrained = VideoEmotionRecognizer(weights=str(path)).predict(videos)
    assert np.mean(pretrained == labels) >= 0.75, "the shipped member reads Happy and Surprise"
