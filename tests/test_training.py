"""Training recipes: a QUICK run of the shipped model's command, checkpoints and resume."""

import json

import keras
import numpy as np
import pytest

from kemo.training import RECIPES, as_model_input, augmentation, fit_classifier, train_fer2013


@pytest.fixture(scope="module")
def quick_run(shared_data, tmp_path_factory):
    """The model card's command in QUICK form: 256 images a split, one epoch."""
    folder = tmp_path_factory.mktemp("fer_run")
    model, state = train_fer2013(shared_data / "fer2013", epochs=1, limit=256,
                                 checkpoint_dir=folder, verbose=0)
    return folder, model, state


def test_quick_run_writes_checkpoints(quick_run):
    folder, model, state = quick_run
    assert (folder / "last.keras").is_file(), "last.keras not written"
    assert (folder / "best.keras").is_file(), "best.keras not written"
    saved = json.loads((folder / "state.json").read_text())
    assert saved["epoch"] == 1 and len(saved["history"]) == 1, f"state after one epoch: {saved}"
    assert 0.0 <= state["publictest"]["accuracy_flip"] <= 1.0, state["publictest"]
    assert model.output_shape == (None, 7), model.output_shape


def test_rerun_resumes_from_checkpoint(quick_run):
    folder, _, _ = quick_run
    # Resuming to epoch 2 continues from the saved optimiser step, not from scratch.
    import keras

    before = keras.saving.load_model(folder / "last.keras")
    steps_before = int(before.optimizer.iterations)
    x = np.random.default_rng(0).random((64, 48, 48, 1), dtype=np.float32)
    y = np.arange(64) % 7
    model, state = fit_classifier(lambda: pytest.fail("must resume, not build anew"),
                                  x, y, x, y, epochs=2, checkpoint_dir=folder, verbose=0)
    assert state["epoch"] == 2, f"resumed run ended at epoch {state['epoch']}"
    assert len(state["history"]) == 2, f"history lost on resume: {state['history']}"
    after = keras.saving.load_model(folder / "last.keras")
    assert int(after.optimizer.iterations) > steps_before, "optimiser step did not carry over"
    assert model.output_shape == (None, 7), f"resume returned {model.name}, not the classifier"


def test_finished_run_is_not_retrained(quick_run):
    folder, _, _ = quick_run
    x = np.zeros((8, 48, 48, 1), np.float32)
    state_before = json.loads((folder / "state.json").read_text())
    _, state = fit_classifier(lambda: pytest.fail("must not rebuild"), x, np.zeros(8, int),
                              x, np.zeros(8, int), epochs=state_before["epoch"],
                              checkpoint_dir=folder, verbose=0)
    assert state["epoch"] == state_before["epoch"], "a finished run trained again"


def test_recipes_record_paper_settings():
    paper = RECIPES["paper"]
    assert (paper.learning_rate, paper.batch_size, paper.schedule) == (1e-4, 32, "constant"), paper


def test_augmentation_flips_and_keeps_shape():
    x = np.random.default_rng(1).random((4, 48, 48, 1)).astype("float32")
    out = np.asarray(augmentation(RECIPES["kemo"], seed=3)(x, training=True))
    assert out.shape == x.shape, f"augmentation changed the shape to {out.shape}"
    assert not np.allclose(out, x), "augmentation left every image unchanged"


def test_mismatched_lengths_raise():
    from kemo.errors import InputError

    x = np.zeros((4, 48, 48, 1), np.float32)
    with pytest.raises(InputError, match="differ in length"):
        fit_classifier(lambda: None, x, np.zeros(3, int), x, np.zeros(4, int), epochs=1)


def test_as_model_input_adds_channel_axis():
    out = as_model_input(np.zeros((2, 48, 48), np.uint8))
    assert out.shape == (2, 48, 48, 1) and out.dtype == np.float32, (out.shape, out.dtype)


def test_finetune_starts_from_init(quick_run, shared_data, tmp_path):
    folder, _, _ = quick_run
    import keras

    from kemo.models import ResNet10

    start = keras.saving.load_model(folder / "best.keras", compile=False)
    model, state = train_fer2013(shared_data / "fer2013", recipe="finetune", epochs=1, limit=128,
                                 checkpoint_dir=tmp_path / "ft", init=folder / "best.keras",
                                 verbose=0)
    assert state["init"] == str(folder / "best.keras"), state.get("init")
    saved = json.loads((tmp_path / "ft" / "state.json").read_text())
    assert saved["init"] == state["init"], "state.json does not name the model it started from"
    kernel = [w for w in model.weights if "kernel" in w.path][0].path
    def pick(m):
        return np.asarray([w for w in m.weights if w.path == kernel][0])
    moved = np.abs(pick(model) - pick(start)).mean()
    fresh = np.abs(pick(ResNet10(input_shape=(48, 48, 1))) - pick(start)).mean()
    assert moved < 0.2 * fresh, f"fine-tuning did not start from init ({moved} vs {fresh})"


def test_missing_init_model_is_named(tmp_path):
    from kemo.errors import WeightsError

    with pytest.raises(WeightsError, match="nowhere.keras"):
        train_fer2013(tmp_path, init=tmp_path / "nowhere.keras", epochs=1)


def test_recalibrate_batchnorm_averages_batch_statistics(shared_data):
    from kemo.datasets import load_fer2013
    from kemo.training import recalibrate_batchnorm

    faces = load_fer2013(shared_data / "fer2013", subset="PublicTest").images[:96]
    x = as_model_input(faces) / 255.0
    keras.utils.set_random_seed(0)
    inputs = keras.Input((48, 48, 1))
    conv = keras.layers.Conv2D(4, 3)
    inner = keras.Sequential([keras.Input((46, 46, 4)), keras.layers.BatchNormalization()])
    model = keras.Model(inputs, inner(conv(inputs)))  # a nested BN layer is found too
    bn = inner.layers[0]
    recalibrate_batchnorm(model, x, batch_size=32)
    h = keras.ops.convert_to_numpy(conv(x)).reshape(3, -1, 4)  # three batches of 32
    mean = h.mean(axis=1).mean(axis=0)
    var = h.var(axis=1).mean(axis=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), mean, rtol=1e-4,
                               err_msg="moving mean = average of the batch means")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance), var, rtol=1e-3,
                               err_msg="moving variance = average of the batch variances")
    assert bn.momentum == 0.99, "the layer's momentum is restored"
