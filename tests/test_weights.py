"""Weights registry: entries, preprocessing, finding and verifying files, loading."""

import hashlib
import json

import keras
import numpy as np
import pytest

from kemo import weights
from kemo.errors import InputError, WeightsError
from kemo.models import BiResidualLSTM

TINY = {"input_shape": (None, 6), "units": 4, "num_layers": 1, "classes": 3}


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Private registry copy, empty KEMO_WEIGHTS and Keras home for every test."""
    monkeypatch.setattr(weights, "_REGISTRY", dict(weights._REGISTRY))
    home = tmp_path / "keras_home"
    folder = tmp_path / "kemo_weights"
    folder.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setenv(weights.ENV_DIR, str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    """A small BiResidualLSTM, its weights file, sha256 and a test batch."""
    keras.utils.set_random_seed(11)
    model = BiResidualLSTM(**TINY)
    path = tmp_path_factory.mktemp("tiny") / "tiny_lstm.weights.h5"
    model.save_weights(path)
    x = np.random.default_rng(0).normal(size=(2, 5, 6)).astype("float32")
    return model, path, hashlib.sha256(path.read_bytes()).hexdigest(), x


def entry(name="tiny", sha256=None, **kwargs):
    fields = {"name": name, "architecture": "BiResidualLSTM", "filename": "tiny_lstm.weights.h5",
              "sha256": sha256, "input_shape": (None, 6), "color": None, "classes": 3}
    return weights.WeightsInfo(**{**fields, **kwargs})


def gray_entry(**kwargs):
    base = {"name": "g", "architecture": "ResNet10", "filename": "g.weights.h5",
            "sha256": None, "input_shape": (48, 48, 1), "color": "gray"}
    return weights.WeightsInfo(**{**base, **kwargs})


# ---------------------------------------------------------------- registry

def test_builtin_entries():
    for name in ("vggface", "vggface_notop", "c3d_sports1m"):
        assert name in weights.names(), f"{name} must be registered"
    vgg = weights.get("vggface")
    assert (vgg.architecture, vgg.classes, vgg.color, vgg.input_shape) == (
        "VGGFace", 2622, "bgr", (224, 224, 3)), f"vggface entry: {vgg}"
    assert vgg.url.endswith("rcmalli_vggface_tf_vgg16.h5"), vgg.url
    assert weights.get("c3d_sports1m").classes == 487, "Sports-1M has 487 classes"


def test_unknown_name_lists_registered_names():
    with pytest.raises(WeightsError) as info:
        weights.get("nope")
    assert "'nope'" in str(info.value) and "vggface" in str(info.value), str(info.value)


def test_register_refuses_duplicates_unless_replace():
    info = gray_entry()
    weights.register(info)
    with pytest.raises(ValueError, match="already registered"):
        weights.register(info)
    assert weights.register(info, replace=True) is info, "replace=True must register"
    with pytest.raises(ValueError, match="WeightsInfo"):
        weights.register({"name": "x"})


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"color": "hsv"}, "color"),
    ({"mean": (1.0, 2.0)}, "mean"),
    ({"sha256": "abc"}, "sha256"),
    ({"shipped": True}, "shipped file needs its sha256"),
    ({"filename": "a/b.h5"}, "bare file name"),
    ({"input_shape": (48, 48, 3)}, "channel"),
    ({"classes": 2, "class_names": ("a", "b", "c")}, "class_names"),
])
def test_entry_validation(kwargs, word):
    with pytest.raises(ValueError, match=word):
        gray_entry(**kwargs)


def test_entry_json_round_trip(tmp_path):
    info = gray_entry(name="json_entry", mean=(0.5,), scale=2.0, classes=2,
                      class_names=("a", "b"), metrics={"acc": 0.5})
    path = tmp_path / "json_entry.entry.json"
    path.write_text(json.dumps(info.to_dict()))
    assert weights.register_file(path) == info, "entry must survive to_dict -> json -> register"
    assert weights.get("json_entry") == info, "register_file must register"
    path.write_text(json.dumps({**info.to_dict(), "colour": "gray"}))
    with pytest.raises(WeightsError, match="colour"):
        weights.register_file(path)


# ---------------------------------------------------------------- preprocessing

def test_preprocess_bgr_mean():
    info = weights.get("vggface")
    rgb = np.array([[[[10.0, 20.0, 30.0]]]])
    out = info.preprocess(rgb)
    expected = np.array([30.0, 20.0, 10.0]) - np.array(weights.VGGFACE_MEAN_BGR)
    np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-6, err_msg="BGR then mean")
    assert out.dtype == np.float32 and rgb[0, 0, 0, 0] == 10.0, "float32 copy, input unchanged"


def test_preprocess_gray_to_rgb_and_back():
    gray = np.full((2, 4, 4), 100, np.uint8)  # (N, H, W): channel axis added
    out = weights.get("vggface").preprocess(gray)
    assert out.shape == (2, 4, 4, 3), f"gray must repeat to 3 channels: {out.shape}"
    np.testing.assert_allclose(out[0, 0, 0], 100 - np.array(weights.VGGFACE_MEAN_BGR), rtol=1e-6)
    info = gray_entry(mean=(128.0,), scale=1 / 128)
    rgb = np.zeros((1, 2, 2, 3))
    rgb[..., 1] = 255.0
    out = info.preprocess(rgb)
    assert out.shape == (1, 2, 2, 1), f"RGB must turn gray: {out.shape}"
    np.testing.assert_allclose(out[0, 0, 0, 0], (0.587 * 255 - 128) / 128, rtol=1e-5,
                               err_msg="BT.601 luma, then mean and scale")


def test_preprocess_feature_sequences():
    info = entry(mean=(1.0,) * 6, scale=0.5)
    out = info.preprocess(np.full((2, 5, 6), 3.0))
    assert out.shape == (2, 5, 6), f"color=None keeps the shape: {out.shape}"
    np.testing.assert_allclose(out, 1.0, err_msg="(3 - 1) * 0.5")


def test_preprocess_rejects_bad_input():
    with pytest.raises(InputError, match="numeric"):
        weights.get("vggface").preprocess([["a", "b"]])
    with pytest.raises(InputError, match="shape"):
        weights.get("vggface").preprocess(np.zeros(3))


# ---------------------------------------------------------------- finding and verifying

def test_fetch_finds_file_in_kemo_weights_and_checks_sha256(isolated, tiny_file):
    _, path, digest, _ = tiny_file
    (isolated / path.name).write_bytes(path.read_bytes())
    weights.register(entry(sha256=digest))
    assert weights.fetch("tiny") == isolated / path.name, "file in $KEMO_WEIGHTS must be found"
    assert weights.sha256(path) == digest, "sha256() must match hashlib"


def test_hash_mismatch_names_file_and_both_hashes(isolated, tiny_file):
    _, path, digest, _ = tiny_file
    target = isolated / path.name
    target.write_bytes(path.read_bytes() + b"tampered")
    weights.register(entry(sha256=digest))
    with pytest.raises(WeightsError) as info:
        weights.fetch("tiny")
    message = str(info.value)
    actual = hashlib.sha256(target.read_bytes()).hexdigest()
    assert str(target) in message and digest in message and actual in message, message


def test_missing_file_without_url_names_file_and_folders(isolated, tmp_path):
    weights.register(entry(sha256="0" * 64))
    with pytest.raises(WeightsError) as info:
        weights.fetch("tiny")
    message = str(info.value)
    cache = tmp_path / "keras_home" / "models"
    assert "tiny_lstm.weights.h5" in message and str(isolated) in message, message
    assert str(cache) in message and "KEMO_WEIGHTS" in message, message


def test_failed_download_names_file_url_and_folders(isolated, tmp_path):
    url = (tmp_path / "offline" / "tiny_lstm.weights.h5").as_uri()  # nothing there: fails
    weights.register(entry(sha256="0" * 64, url=url))
    with pytest.raises(WeightsError) as info:
        weights.fetch("tiny")
    message = str(info.value)
    for part in ("tiny_lstm.weights.h5", url, str(isolated), str(tmp_path / "keras_home")):
        assert part in message, f"message should name {part}: {message}"


def test_download_goes_to_keras_cache_and_is_verified(tmp_path, tiny_file):
    _, path, digest, _ = tiny_file
    weights.register(entry(sha256=digest, url=path.as_uri(), cache_subdir="models/kemo"))
    got = weights.fetch("tiny")
    assert got == tmp_path / "keras_home" / "models" / "kemo" / path.name, f"cached at {got}"
    assert weights.sha256(got) == digest, "downloaded file must be the published one"


def test_shipped_entry_found_in_package(monkeypatch, tmp_path, tiny_file):
    _, path, digest, _ = tiny_file
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(weights, "_shipped_dir", lambda: shipped)
    weights.register(entry(sha256=digest, shipped=True))
    with pytest.raises(WeightsError, match="reinstall kemo"):
        weights.fetch("tiny")
    (shipped / path.name).write_bytes(path.read_bytes())
    assert weights.fetch("tiny") == shipped / path.name, "shipped file must come from the package"


def test_shipped_entry_files_are_registered(monkeypatch, tmp_path, tiny_file):
    _, path, digest, _ = tiny_file
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / path.name).write_bytes(path.read_bytes())
    info = entry(name="shipped_tiny", sha256=digest, shipped=True, card="tiny.md")
    (shipped / "shipped_tiny.entry.json").write_text(json.dumps(info.to_dict()))
    (shipped / "broken.entry.json").write_text("{not json")
    monkeypatch.setattr(weights, "_shipped_dir", lambda: shipped)
    with pytest.warns(UserWarning, match="broken.entry.json"):
        weights._register_shipped()
    assert weights.get("shipped_tiny") == info, "a shipped *.entry.json must register"
    assert weights.fetch("shipped_tiny") == shipped / path.name, "and its file must be found"


def test_shipped_folder_is_the_weights_package():
    folder = weights._shipped_dir()
    assert (folder / "__init__.py").is_file(), f"kemo.shipped should resolve to weights/: {folder}"


# ---------------------------------------------------------------- trust on first use

def test_trust_on_first_use_records_then_verifies(isolated, tiny_file):
    model, path, digest, x = tiny_file
    target = isolated / path.name
    target.write_bytes(path.read_bytes())
    weights.register(entry())
    record = target.with_name(target.name + ".sha256.json")
    assert not record.exists(), "no record before the first load"
    loaded = BiResidualLSTM(weights="tiny", **TINY)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, err_msg="registered weights must load")
    assert json.loads(record.read_text())["sha256"] == digest, "first load records the sha256"
    BiResidualLSTM(weights="tiny", **TINY)  # verified against the record
    target.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(WeightsError, match="recorded on first use"):
        BiResidualLSTM(weights="tiny", **TINY)


def test_failed_load_records_nothing(isolated, tiny_file):
    _, path, _, _ = tiny_file
    target = isolated / path.name
    target.write_bytes(path.read_bytes())
    weights.register(entry())
    with pytest.raises(WeightsError, match="does not fit"):
        BiResidualLSTM(weights="tiny", input_shape=(None, 6), units=5, num_layers=1)
    assert not target.with_name(target.name + ".sha256.json").exists(), (
        "a file that did not load must not be trusted")


def test_published_md5_is_checked_before_trust(isolated, tiny_file):
    _, path, _, _ = tiny_file
    (isolated / path.name).write_bytes(path.read_bytes())
    weights.register(entry(md5="0" * 32))
    with pytest.raises(WeightsError, match="published md5"):
        weights.fetch("tiny")
    good = hashlib.md5(path.read_bytes()).hexdigest()
    weights.register(entry(md5=good), replace=True)
    assert weights.fetch("tiny").name == path.name, "matching md5 must pass"


# ---------------------------------------------------------------- loading

def test_wrong_architecture_is_refused(isolated, tiny_file):
    model, path, digest, _ = tiny_file
    (isolated / path.name).write_bytes(path.read_bytes())
    weights.register(entry(sha256=digest))
    with pytest.raises(WeightsError, match="for BiResidualLSTM, not ResNet10"):
        weights.load_into(model, "tiny", architecture="ResNet10")


def test_registered_input_shape_is_the_default(isolated, tiny_file):
    model, path, digest, x = tiny_file
    (isolated / path.name).write_bytes(path.read_bytes())
    weights.register(entry(sha256=digest, input_shape=(5, 6)))
    built = BiResidualLSTM(weights="tiny", units=4, num_layers=1, classes=3)
    assert tuple(built.inputs[0].shape[1:]) == (5, 6), "input_shape must come from the entry"
    np.testing.assert_allclose(built.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, err_msg="weights must load")


def test_load_into_unknown_path_or_name(tiny_file):
    model = tiny_file[0]
    with pytest.raises(WeightsError, match="not found"):
        weights.load_into(model, "/no/such/file.weights.h5", architecture="BiResidualLSTM")
    with pytest.raises(WeightsError, match="registered:"):
        weights.load_into(model, "no_such_entry", architecture="BiResidualLSTM")


def test_keras_file_loads_and_a_zip_without_weights_is_refused(tmp_path, tiny_file):
    model, _, _, x = tiny_file
    path = tmp_path / "m.keras"
    model.save(path)
    fresh = BiResidualLSTM(**TINY)
    weights.load_into(fresh, str(path), architecture="BiResidualLSTM")
    np.testing.assert_allclose(fresh.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, err_msg=".keras weights must load")
    import zipfile

    junk = tmp_path / "junk.keras"
    with zipfile.ZipFile(junk, "w") as z:
        z.writestr("readme.txt", "no weights")
    with pytest.raises(WeightsError, match="model.weights.h5"):
        weights.load_into(fresh, str(junk), architecture="BiResidualLSTM")
