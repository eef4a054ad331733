"""Model builders: shapes, feature taps, parameter counts, arguments, weights, round trips.

Runs on whichever Keras backend KERAS_BACKEND selects (tensorflow, jax, torch).
"""

import warnings

import h5py
import keras
import numpy as np
import pytest

from kemo.errors import InputError, WeightsError
from kemo.models import (
    C3D,
    BiResidualLSTM,
    MaskedTimePooling,
    ResNet10,
    VGGFace,
    c3d_preprocess_input,
    clip_windows,
    vggface_preprocess_input,
)

BUILDERS = {"VGGFace": VGGFace, "ResNet10": ResNet10, "C3D": C3D, "BiResidualLSTM": BiResidualLSTM}
LSTM = {"units": 4, "num_layers": 2}

# builder, kwargs, input batch shape, expected output shape, feature tap, tap size
TABLE = [
    ("VGGFace", {"input_shape": (32, 32, 3), "classes": 5}, (2, 32, 32, 3), (2, 5), "fc6", 4096),
    ("VGGFace", {"include_top": False, "input_shape": (32, 32, 3)}, (2, 32, 32, 3),
     (2, 1, 1, 512), "pool5", 512),
    ("VGGFace", {"include_top": False, "pooling": "avg", "input_shape": (64, 48, 3)},
     (2, 64, 48, 3), (2, 512), "pool", 512),
    ("VGGFace", {"include_top": False, "pooling": "max", "input_shape": (None, None, 3)},
     (2, 40, 40, 3), (2, 512), "pool", 512),
    ("ResNet10", {"input_shape": (48, 48, 1)}, (2, 48, 48, 1), (2, 7), "fc1", 512),
    ("ResNet10", {"input_shape": (96, 96, 3), "classes": 3, "classifier_activation": None},
     (2, 96, 96, 3), (2, 3), "fc1", 512),
    ("ResNet10", {"include_top": False, "input_shape": (32, 32, 3)}, (2, 32, 32, 3),
     (2, 2, 2, 512), "stage4_out", 512),
    ("ResNet10", {"include_top": False, "pooling": "avg", "input_shape": (48, 48, 1)},
     (2, 48, 48, 1), (2, 512), "pool", 512),
    ("C3D", {"input_shape": (16, 16, 16, 3), "classes": 4}, (2, 16, 16, 16, 3), (2, 4),
     "fc6", 4096),
    ("C3D", {"include_top": False, "input_shape": (16, 32, 32, 3)}, (2, 16, 32, 32, 3),
     (2, 1, 2, 2, 512), "pool5", 512),
    ("C3D", {"include_top": False, "pooling": "avg", "input_shape": (32, 16, 16, 3)},
     (2, 32, 16, 16, 3), (2, 512), "pool", 512),
    ("C3D", {"include_top": False, "pooling": "max", "input_shape": (None, None, None, 3)},
     (2, 16, 24, 24, 3), (2, 512), "pool", 512),
    ("BiResidualLSTM", {"input_shape": (None, 6), "classes": 3, **LSTM}, (2, 5, 6), (2, 3),
     "features", 8),
    ("BiResidualLSTM", {"input_shape": (7, 8), "num_layers": 1, "units": 4}, (2, 7, 8), (2, 7),
     "features", 8),
    ("BiResidualLSTM", {"include_top": False, "input_shape": (None, 6), **LSTM}, (2, 5, 6),
     (2, 5, 8), "residual2", 8),
    ("BiResidualLSTM", {"include_top": False, "pooling": "avg", "input_shape": (5, 6), **LSTM},
     (2, 5, 6), (2, 8), "pool", 8),
    ("BiResidualLSTM", {"include_top": False, "pooling": "max", "input_shape": (5, 6), **LSTM},
     (2, 5, 6), (2, 8), "pool", 8),
]


@pytest.mark.parametrize(
    ("builder", "kwargs", "batch", "out_shape", "tap", "tap_size"), TABLE,
    ids=[f"{row[0]}-{'-'.join(f'{k}={v}' for k, v in row[1].items())}" for row in TABLE],
)
def test_builder_table(builder, kwargs, batch, out_shape, tap, tap_size):
    model = BUILDERS[builder](**kwargs)
    x = np.random.default_rng(0).uniform(0, 1, batch).astype("float32")
    y = np.asarray(model.predict(x, verbose=0))
    assert y.shape == out_shape, f"{builder}{kwargs}: output {y.shape}, expected {out_shape}"
    assert np.all(np.isfinite(y)), f"{builder}{kwargs}: non-finite outputs"
    assert model.get_layer(tap).output.shape[-1] == tap_size, (
        f"{builder}{kwargs}: tap {tap} has size {model.get_layer(tap).output.shape[-1]}, "
        f"expected {tap_size}")
    if kwargs.get("include_top", True) and kwargs.get("classifier_activation", "") is not None:
        assert np.allclose(y.sum(axis=-1), 1.0, atol=1e-4), f"{builder}: softmax rows must sum to 1"


@pytest.mark.parametrize(("builder", "kwargs", "count"), [
    ("VGGFace", {"classes": 2622}, 145_002_878),
    ("VGGFace", {"include_top": False}, 14_714_688),
    ("C3D", {"classes": 487}, 79_991_015),
])
def test_parameter_counts(builder, kwargs, count):
    model = BUILDERS[builder](**kwargs)
    assert model.count_params() == count, (
        f"{builder}{kwargs}: {model.count_params():,} parameters, expected {count:,}")


def test_c3d_pool5_is_1x4x4_at_16x112x112():
    model = C3D(include_top=False)
    assert tuple(model.output.shape[1:]) == (1, 4, 4, 512), (
        f"pool5 should be 1x4x4x512 as in the original; got {model.output.shape}")


BAD_ARGS = [
    ({"include_top": "yes"}, "include_top"),
    ({"pooling": "mean", "include_top": False}, "pooling"),
    ({"classes": 0}, "classes"),
    ({"classes": 2.5}, "classes"),
    ({"classifier_activation": "no_such_activation"}, "classifier_activation"),
    ({"name": ""}, "name"),
    ({"weights": 3}, "weights"),
    ({"input_shape": (1, 2, 3, 4, 5, 6)}, "input_shape"),
]


@pytest.mark.parametrize("builder", list(BUILDERS))
@pytest.mark.parametrize(("kwargs", "word"), BAD_ARGS, ids=[w for _, w in BAD_ARGS])
def test_invalid_arguments_are_named_and_repeated(builder, kwargs, word):
    with pytest.raises(ValueError) as info:
        BUILDERS[builder](**kwargs)
    message = str(info.value)
    value = next(iter(kwargs.values()))
    assert word in message and repr(value) in message, (
        f"{builder}: message should name {word} and repeat {value!r}: {message}")


@pytest.mark.parametrize(("builder", "kwargs", "word"), [
    ("VGGFace", {"input_shape": (16, 16, 3)}, "at least 32"),
    ("VGGFace", {"input_shape": (None, None, 3)}, "fully known"),
    ("VGGFace", {"dropout": 1.0}, "dropout"),
    ("C3D", {"input_shape": (8, 112, 112, 3)}, "16 frames"),
    ("C3D", {"input_shape": (16, 8, 8, 3), "include_top": False}, "at least 16"),
    ("BiResidualLSTM", {"units": 0}, "units"),
    ("BiResidualLSTM", {"num_layers": True}, "num_layers"),
    ("BiResidualLSTM", {"input_shape": (10, None)}, "feature size"),
])
def test_builder_specific_arguments(builder, kwargs, word):
    with pytest.raises(ValueError, match=word):
        BUILDERS[builder](**kwargs)


def test_unknown_weights_fail_before_building():
    with pytest.raises(WeightsError, match="registered: .*vggface"):
        VGGFace(weights="no_such_weights")
    with pytest.raises(WeightsError, match="not found"):
        ResNet10(weights="/nowhere/resnet.weights.h5")
    with pytest.raises(WeightsError, match="for VGGFace, not C3D"):
        C3D(weights="vggface")


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_input_tensor_is_used(builder):
    shape = {"VGGFace": (32, 32, 3), "ResNet10": (32, 32, 3), "C3D": (16, 16, 16, 3),
             "BiResidualLSTM": (5, 8)}[builder]
    tensor = keras.Input(shape=shape)
    extra = {"units": 4} if builder == "BiResidualLSTM" else {}
    model = BUILDERS[builder](include_top=False, pooling="avg", input_tensor=tensor, **extra)
    assert model.inputs[0] is tensor, f"{builder}: the given input_tensor must be the model input"


# ---------------------------------------------------------------- small models shared below

SMALL = {  # builder: (kwargs, input batch shape)
    "VGGFace": ({"input_shape": (32, 32, 3), "classes": 5}, (2, 32, 32, 3)),
    "ResNet10": ({"input_shape": (48, 48, 1)}, (2, 48, 48, 1)),
    "C3D": ({"input_shape": (16, 16, 16, 3), "classes": 4}, (2, 16, 16, 16, 3)),
    "BiResidualLSTM": ({"input_shape": (None, 6), "classes": 3, **LSTM}, (2, 5, 6)),
}


@pytest.fixture(scope="module")
def small():
    """One randomly initialised small model per builder, with an input batch."""
    out = {}
    rng = np.random.default_rng(1)
    for name, (kwargs, shape) in SMALL.items():
        keras.utils.set_random_seed(7)
        out[name] = (BUILDERS[name](**kwargs), rng.uniform(0, 255, shape).astype("float32"))
    return out


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_keras_file_round_trip(builder, small, tmp_path):
    model, x = small[builder]
    path = tmp_path / f"{builder}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    before = np.asarray(model.predict(x, verbose=0))
    after = np.asarray(loaded.predict(x, verbose=0))
    np.testing.assert_array_equal(after, before, err_msg=f"{builder}: .keras round trip changed "
                                                         "the outputs")
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers], (
        f"{builder}: layer names must survive the round trip")


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_weights_file_loads_through_builder(builder, small, tmp_path):
    model, x = small[builder]
    path = tmp_path / f"{builder}.weights.h5"
    model.save_weights(path)
    keras.utils.set_random_seed(99)
    fresh = BUILDERS[builder](weights=str(path), **SMALL[builder][0])
    np.testing.assert_allclose(fresh.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6,
                               err_msg=f"{builder}: weights file did not restore the outputs")


def test_head_with_other_classes_keeps_initial_weights(small, tmp_path):
    model, x = small["ResNet10"]
    path = tmp_path / "r.weights.h5"
    model.save_weights(path)
    with pytest.warns(UserWarning, match="'predictions'.*keeps its initial weights"):
        other = ResNet10(input_shape=(48, 48, 1), classes=3, weights=str(path))
    fc1 = keras.Model(other.inputs, other.get_layer("fc1").output)
    ref = keras.Model(model.inputs, model.get_layer("fc1").output)
    np.testing.assert_allclose(fc1.predict(x, verbose=0), ref.predict(x, verbose=0), rtol=1e-5,
                               err_msg="layers below the head must load")


def test_weights_that_do_not_fit_name_the_layer(small, tmp_path):
    model, _ = small["ResNet10"]
    path = tmp_path / "r.weights.h5"
    model.save_weights(path)
    with pytest.raises(WeightsError) as info:
        ResNet10(input_shape=(48, 48, 3), weights=str(path))
    assert str(path) in str(info.value) and "'conv1'" in str(info.value), (
        f"message should name the file and layer conv1: {info.value}")
    with pytest.raises(WeightsError, match="does not fit"):
        VGGFace(input_shape=(32, 32, 3), weights=str(path))


# ---------------------------------------------------------------- keras-vggface / Keras 2 files

def write_keras2_h5(model, path, rename, skip=()):
    """Write ``model``'s weights as Keras 2's ``save_weights`` did (keras-vggface's format).

    Root attrs ``layer_names`` / ``backend`` / ``keras_version``; one group per
    layer (original names, so ``fc6/relu`` nests inside ``fc6``) with attr
    ``weight_names`` (``<layer>/kernel:0``...) and one dataset per weight.
    """
    with h5py.File(path, "w") as f:
        names = []
        for layer in model.layers:
            if layer.name in skip:
                continue
            name = rename.get(layer.name, layer.name)
            names.append(name)
            group = f.require_group(name)
            weight_names = [f"{name}/{w.name}:0".encode() for w in layer.weights]
            group.attrs["weight_names"] = np.array(weight_names, dtype="S")
            for wname, value in zip(weight_names, layer.get_weights(), strict=True):
                group.create_dataset(wname.decode(), data=value)
        f.attrs["layer_names"] = np.array([n.encode() for n in names], dtype="S")
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.5"


VGGFACE_H5_NAMES = {"input": "input_1", "fc6_relu": "fc6/relu", "fc7_relu": "fc7/relu",
                    "predictions": "fc8/softmax"}


@pytest.fixture(scope="module")
def vggface_h5(small, tmp_path_factory):
    """A keras-vggface-format file written from the small VGGFace (with top, 5 classes)."""
    model, _ = small["VGGFace"]
    path = tmp_path_factory.mktemp("vggface") / "rcmalli_style_vgg16.h5"
    write_keras2_h5(model, path, VGGFACE_H5_NAMES, skip=("fc6_dropout", "fc7_dropout"))
    with h5py.File(path) as f:
        assert "relu" in f["fc6"], "the writer must nest fc6/relu inside fc6 like Keras 2 did"
    return path


def test_keras_vggface_h5_loads_with_same_outputs(small, vggface_h5):
    model, x = small["VGGFace"]
    keras.utils.set_random_seed(3)
    fresh = VGGFace(input_shape=(32, 32, 3), classes=5, weights=str(vggface_h5))
    np.testing.assert_allclose(fresh.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-7, err_msg="keras-vggface .h5 load changed "
                                                             "the outputs")


def test_keras_vggface_h5_with_top_loads_into_notop(small, vggface_h5):
    model, x = small["VGGFace"]
    notop = VGGFace(include_top=False, input_shape=(32, 32, 3), weights=str(vggface_h5))
    ref = keras.Model(model.inputs, model.get_layer("pool5").output)
    np.testing.assert_allclose(notop.predict(x, verbose=0), ref.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6, err_msg="conv weights must load into notop")


def test_keras_vggface_h5_wrong_input_size_names_fc6(vggface_h5):
    with pytest.raises(WeightsError) as info:
        VGGFace(input_shape=(64, 64, 3), classes=5, weights=str(vggface_h5))
    assert "'fc6'" in str(info.value) and str(vggface_h5) in str(info.value), (
        f"message should name the file and fc6: {info.value}")


def test_keras_vggface_h5_other_classes_warn_and_keep_fc7(small, vggface_h5):
    model, x = small["VGGFace"]
    with pytest.warns(UserWarning, match="'fc8'"):
        emo = VGGFace(input_shape=(32, 32, 3), classes=7, weights=str(vggface_h5))
    tap = keras.Model(emo.inputs, emo.get_layer("fc7").output)
    ref = keras.Model(model.inputs, model.get_layer("fc7").output)
    np.testing.assert_allclose(tap.predict(x, verbose=0), ref.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-5, err_msg="fc7 must load when only fc8 differs")


def test_notop_h5_into_top_model_names_missing_fc6(small, tmp_path):
    model, _ = small["VGGFace"]
    path = tmp_path / "notop.h5"
    write_keras2_h5(model, path, {}, skip=("fc6", "fc7", "fc8"))
    with pytest.raises(WeightsError, match="'fc6' has no weights in the file"):
        VGGFace(input_shape=(32, 32, 3), classes=5, weights=str(path))


def test_c3d_keras2_file_with_sports1m_names(small, tmp_path):
    model, x = small["C3D"]
    path = tmp_path / "sports1m_style.h5"
    write_keras2_h5(model, path, {"conv1a": "conv1", "conv2a": "conv2",
                                  "pool5_pad": "zero_padding3d_1"})
    fresh = C3D(input_shape=(16, 16, 16, 3), classes=4, weights=str(path))
    np.testing.assert_allclose(fresh.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6, err_msg="conv1/conv2 must map to conv1a/2a")


def test_keras3_legacy_full_model_h5(small, tmp_path):
    """A whole model saved as .h5 keeps its weights under model_weights/."""
    model, x = small["ResNet10"]
    path = tmp_path / "whole.h5"
    model.save(path)
    fresh = ResNet10(input_shape=(48, 48, 1), weights=str(path))
    np.testing.assert_allclose(fresh.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6, err_msg="model_weights group must load")


def test_non_weights_file_is_refused(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(WeightsError, match="junk.h5"):
        ResNet10(input_shape=(48, 48, 1), weights=str(path))


# ---------------------------------------------------------------- LSTM masking, pooling

def test_lstm_padding_does_not_change_predictions(small):
    model, _ = small["BiResidualLSTM"]
    rng = np.random.default_rng(5)
    short = rng.normal(size=(1, 3, 6)).astype("float32")
    padded = np.concatenate([short, np.zeros((1, 4, 6), "float32")], axis=1)
    np.testing.assert_allclose(model.predict(padded, verbose=0), model.predict(short, verbose=0),
                               rtol=1e-5, atol=1e-6,
                               err_msg="zero padding at the end must be masked")
    features = keras.Model(model.inputs, model.get_layer("features").output)
    assert not np.allclose(features.predict(short, verbose=0),
                           features.predict(short[:, :2], verbose=0), atol=1e-4), (
        "dropping a real frame must change the last-step features")


def test_lstm_backward_half_sees_whole_clip(small):
    """Changing the first frame changes the backward half of the last-step summary."""
    model, _ = small["BiResidualLSTM"]
    bilstm = keras.Model(model.inputs, model.get_layer("bilstm2").output)
    x = np.random.default_rng(6).normal(size=(1, 5, 6)).astype("float32")
    y = x.copy()
    y[0, 0] += 1.0
    a, b = bilstm.predict(x, verbose=0), bilstm.predict(y, verbose=0)
    assert not np.allclose(a[:, 4:], b[:, 4:], atol=1e-5), (
        "the backward state at the top must depend on the first frame")


@pytest.mark.parametrize("mode", ["last", "avg", "max"])
def test_masked_time_pooling_matches_numpy(mode):
    x = np.random.default_rng(2).normal(size=(3, 5, 4)).astype("float32")
    valid = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 1, 1, 0]], bool)
    out = np.asarray(keras.ops.convert_to_numpy(
        MaskedTimePooling(mode)(keras.ops.convert_to_tensor(x),
                                mask=keras.ops.convert_to_tensor(valid))))
    for i in range(3):
        rows = x[i][valid[i]]
        want = {"last": x[i][np.flatnonzero(valid[i])[-1]], "avg": rows.mean(0),
                "max": rows.max(0)}[mode]
        np.testing.assert_allclose(out[i], want, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{mode} pooling of row {i}")


def test_masked_time_pooling_rejects_unknown_mode():
    with pytest.raises(ValueError, match="'median'"):
        MaskedTimePooling("median")


# ---------------------------------------------------------------- helpers

def test_clip_windows_cover_the_clip():
    frames = np.arange(40)[:, None]
    windows = clip_windows(frames, length=16, stride=8)
    starts = windows[:, 0, 0].tolist()
    assert starts == [0, 8, 16, 24], f"window starts {starts}"
    assert windows.shape == (4, 16, 1) and windows[-1, -1, 0] == 39, "last frame must be covered"
    assert clip_windows(np.arange(128)[:, None]).shape[0] == 15, "128 frames -> 15 windows"


def test_clip_windows_pads_short_clips_and_checks_args():
    windows = clip_windows(np.arange(5)[:, None], length=8)
    assert windows.shape == (1, 8, 1) and windows[0, 5:, 0].tolist() == [4, 4, 4], (
        f"short clip should repeat its last frame: {windows[0, :, 0].tolist()}")
    with pytest.raises(InputError, match="non-empty"):
        clip_windows(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="stride"):
        clip_windows(np.zeros((20, 4)), stride=0)


def test_preprocess_input_helpers_follow_the_registry():
    rgb = np.zeros((1, 2, 2, 3), "float32")
    rgb[..., 0] = 10.0  # red
    out = vggface_preprocess_input(rgb)
    np.testing.assert_allclose(out[0, 0, 0], [-93.5940, -104.7624, 10.0 - 129.1863], rtol=1e-6,
                               err_msg="VGG-Face: BGR order, then the VGG-Face means")
    out = c3d_preprocess_input(rgb)
    np.testing.assert_allclose(out[0, 0, 0], [-90.25, -97.66, 10.0 - 101.41], rtol=1e-6,
                               err_msg="C3D: BGR order, then the Sports-1M means")


def test_no_warnings_when_weights_fit(small, tmp_path):
    model, _ = small["ResNet10"]
    path = tmp_path / "r.weights.h5"
    model.save_weights(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        ResNet10(input_shape=(48, 48, 1), weights=str(path))


def test_registered_vggface_notop_entry_with_full_size_file(tmp_path, monkeypatch):
    """A full-size keras-vggface notop file, under its real name in $KEMO_WEIGHTS.

    Goes through the registered entry: found, trusted on first use (sha256
    recorded beside it), loaded by name, same outputs as the source model.
    """
    keras.utils.set_random_seed(4)
    source = VGGFace(include_top=False, pooling="avg")
    path = tmp_path / "rcmalli_vggface_tf_notop_vgg16.h5"
    write_keras2_h5(source, path, {"input": "input_1"}, skip=("pool",))
    monkeypatch.setenv("KEMO_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    model = VGGFace(include_top=False, pooling="avg", weights="vggface_notop")
    assert tuple(model.inputs[0].shape[1:]) == (224, 224, 3), "input shape from the entry"
    x = vggface_preprocess_input(np.random.default_rng(3).uniform(0, 255, (1, 224, 224, 3)))
    np.testing.assert_allclose(model.predict(x, verbose=0), source.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5, err_msg="registered notop weights must load")
    assert (tmp_path / (path.name + ".sha256.json")).is_file(), "first load records the sha256"
