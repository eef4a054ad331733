"""FrameFeatureExtractor on real CK+ faces and tiny Keras models built here."""

import functools

import cv2
import keras
import numpy as np
import pytest
from sklearn.base import clone

from kemo import weights as registry
from kemo.errors import InputError
from kemo.features import FrameFeatureExtractor, fit_faces
from kemo.models.resnet10 import ResNet10


@pytest.fixture(scope="module")
def faces(shared_data):
    """Real 48x48 grey faces of CK+: three videos of 3, 0 and 5 frames."""
    pixels = np.load(shared_data / "ckplus48" / "ckplus48.npz")["pixels"][:8]
    return [pixels[:3], pixels[:0], pixels[3:8]]


@pytest.fixture(scope="module")
def rgb_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs, name="tiny_rgb")


@pytest.fixture(scope="module")
def gray_model():
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Conv2D(3, 3, name="conv"),
                             keras.layers.Flatten(name="flat"), keras.layers.Dense(2, name="out")],
                            name="tiny_gray")


def direct(model, layer, frames):
    """Features computed by hand: cv2 area resize (shrinking), gray -> RGB, 0..255, forward."""
    size = model.input_shape[1:3]
    x = np.stack([cv2.resize(f.astype(np.float32), size[::-1], interpolation=cv2.INTER_AREA)
                  for f in frames])
    x = np.repeat(x[..., None].astype(np.float32), 3, axis=-1)
    sub = keras.Model(model.inputs[0], model.get_layer(layer).output)
    return keras.ops.convert_to_numpy(sub(x)).reshape(len(x), -1)


def test_features_equal_the_model_output(faces, rgb_model):
    extractor = FrameFeatureExtractor(rgb_model, layer="gap", batch_size=64).fit()
    feats = extractor.transform(faces)
    assert [f.shape for f in feats] == [(3, 6), (0, 6), (5, 6)], (
        f"one (n_i, D) array per video expected, got {[f.shape for f in feats]}")
    assert all(f.dtype == np.float32 for f in feats), "features must be float32"
    want = direct(rgb_model, "gap", np.concatenate(faces))
    np.testing.assert_allclose(np.concatenate(feats), want, rtol=1e-5, atol=1e-6,
                               err_msg="features differ from the model's own output")


def test_batches_cross_video_boundaries(faces, rgb_model):
    small = FrameFeatureExtractor(rgb_model, layer="gap", batch_size=2).fit().transform(faces)
    large = FrameFeatureExtractor(rgb_model, layer="gap", batch_size=64).fit().transform(faces)
    for i, (a, b) in enumerate(zip(small, large, strict=True)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6,
                                   err_msg=f"video {i}: batch size changed the features")


def test_layer_none_is_model_output(faces, rgb_model):
    feats = FrameFeatureExtractor(rgb_model).fit().transform(faces)
    frames = np.concatenate(faces)
    x = fit_faces(frames, (32, 32, 3))
    np.testing.assert_allclose(np.concatenate(feats), rgb_model.predict_on_batch(x), rtol=1e-5,
                               atol=1e-6, err_msg="layer=None must give the model output")


def test_rgb_faces_into_gray_model_and_flattened_tap(faces, gray_model):
    rgb = [np.repeat(v[..., None], 3, axis=-1) for v in faces]
    feats = FrameFeatureExtractor(gray_model, layer="conv").fit().transform(rgb)
    assert feats[2].shape == (5, 46 * 46 * 3), f"4-D taps are flattened, got {feats[2].shape}"
    # Equal R, G and B give back the grey image (luma weights sum to 1).
    sub = keras.Model(gray_model.inputs[0], gray_model.get_layer("conv").output)
    want = keras.ops.convert_to_numpy(sub(faces[2][..., None].astype(np.float32)))
    np.testing.assert_allclose(feats[2], want.reshape(5, -1), rtol=1e-4, atol=1e-4,
                               err_msg="RGB faces must be turned grey for a grey model")


def test_preprocess_callable(faces, rgb_model):
    scaled = FrameFeatureExtractor(rgb_model, layer="gap",
                                   preprocess=lambda b: b / 255.0).fit().transform(faces)
    sub = keras.Model(rgb_model.inputs[0], rgb_model.get_layer("gap").output)
    x = fit_faces(np.concatenate(faces), (32, 32, 3)) / 255.0
    np.testing.assert_allclose(np.concatenate(scaled), keras.ops.convert_to_numpy(sub(x)),
                               rtol=1e-5, atol=1e-6, err_msg="preprocess was not applied")


def test_preprocess_registered_weights_name(faces, rgb_model):
    info = registry.get("vggface")  # BGR + mean subtraction, independent of the input size
    feats = FrameFeatureExtractor(rgb_model, layer="gap", preprocess="vggface").fit()
    got = np.concatenate(feats.transform(faces))
    sub = keras.Model(rgb_model.inputs[0], rgb_model.get_layer("gap").output)
    x = info.preprocess(fit_faces(np.concatenate(faces), (32, 32, 3)))
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(sub(x)), rtol=1e-5, atol=1e-5,
                               err_msg="preprocess='vggface' must use the registry's recipe")


def test_builder_is_called_lazily_and_clone_is_cheap(faces):
    calls = []

    def builder():
        calls.append(1)
        keras.utils.set_random_seed(2)
        return keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(name="flat")])

    extractor = FrameFeatureExtractor(builder, layer="flat")
    twin = clone(extractor)
    assert calls == [], "the builder must not run in __init__ or clone"
    feats = twin.fit().transform(faces)
    assert calls == [1] and feats[0].shape == (3, 256), f"built once in fit: {feats[0].shape}"
    assert twin.model is builder, "clone must keep the builder"


def test_model_from_keras_file(faces, rgb_model, tmp_path):
    path = tmp_path / "tiny.keras"
    rgb_model.save(path)
    from_file = FrameFeatureExtractor(str(path), layer="gap").fit().transform(faces)
    in_memory = FrameFeatureExtractor(rgb_model, layer="gap").fit().transform(faces)
    np.testing.assert_allclose(np.concatenate(from_file), np.concatenate(in_memory), rtol=1e-6,
                               err_msg="a saved .keras model must give the same features")


def test_clone_shares_keras_model(rgb_model):
    extractor = FrameFeatureExtractor(rgb_model, layer="gap", batch_size=7)
    twin = clone(extractor)
    assert twin.model is rgb_model, "clone must share the (read-only) Keras model, not copy it"
    assert twin.get_params() == extractor.get_params(), "clone must keep the parameters"
    assert not hasattr(twin, "feature_model_"), "a clone must be unfitted"


def test_resnet10_builder_gives_512_features(faces):
    builder = functools.partial(ResNet10, input_shape=(48, 48, 1))
    feats = FrameFeatureExtractor(builder, layer="fc1").fit().transform(faces)
    assert [f.shape for f in feats] == [(3, 512), (0, 512), (5, 512)], (
        f"ResNet-10 fc1 is 512-d, got {[f.shape for f in feats]}")


def test_progress_bar(faces, rgb_model, capsys):
    FrameFeatureExtractor(rgb_model, layer="gap", verbose=True).fit().transform(faces)
    err = capsys.readouterr().err
    assert "8/8" in err, f"tqdm bar over the 8 frames expected on stderr, got {err!r}"


def test_bad_inputs_are_named(faces, rgb_model):
    extractor = FrameFeatureExtractor(rgb_model, layer="gap").fit()
    with pytest.raises(InputError, match="pass a list of videos"):
        extractor.transform(faces[0][..., None])
    with pytest.raises(InputError, match=r"video 1 has shape \(48, 48\)"):
        extractor.transform([faces[0], faces[0][0]])
    bad = faces[0].astype(float)
    bad[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="video 0 contains NaN"):
        extractor.transform([bad])
    with pytest.raises(InputError, match="use resize=True"):
        FrameFeatureExtractor(rgb_model, resize=False).fit().transform(faces)


def test_bad_parameters(rgb_model):
    with pytest.raises(ValueError, match="no layer 'fc6'"):
        FrameFeatureExtractor(rgb_model, layer="fc6").fit()
    with pytest.raises(ValueError, match="batch_size"):
        FrameFeatureExtractor(rgb_model, batch_size=0).fit()
    with pytest.raises(ValueError, match="model must be a keras.Model"):
        FrameFeatureExtractor(42).fit()
    with pytest.raises(ValueError, match="preprocess must be"):
        FrameFeatureExtractor(rgb_model, preprocess=3).fit()


def test_unfitted_transform_raises(faces, rgb_model):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        FrameFeatureExtractor(rgb_model).transform(faces)


@pytest.mark.parametrize("shape,target,want", [
    ((2, 48, 48), (64, 64, 3), (2, 64, 64, 3)),
    ((2, 48, 48, 3), (24, 24, 1), (2, 24, 24, 1)),
    ((2, 30, 40, 4), (None, None, 3), (2, 30, 40, 3)),
    ((0, 48, 48), (32, 32, 1), (0, 32, 32, 1)),
])
def test_fit_faces_shapes(shape, target, want):
    out = fit_faces(np.full(shape, 200, np.uint8), target)
    assert out.shape == want and out.dtype == np.float32, f"{shape} -> {out.shape} {out.dtype}"
    assert out.size == 0 or np.allclose(out, 200, atol=0.5), "a flat image must stay flat"
