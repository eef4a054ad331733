"""Training recipes: a QUICK run of the shipped model's command, checkpoints and resume."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from kemo.errors import InputError
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


def _tiny():
    """A small classifier that trains in a second: the resume logic does not depend on size."""
    return keras.Sequential([
        keras.Input((48, 48, 1)), keras.layers.Conv2D(4, 3, strides=4),
        keras.layers.BatchNormalization(), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dropout(0.2), keras.layers.Dense(7, activation="softmax"),
    ])


class _Interrupt(keras.callbacks.Callback):
    """Stops a run after its first epoch's checkpoint, as Ctrl-C would."""

    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


@pytest.fixture(scope="module")
def tiny_data():
    rng = np.random.default_rng(0)
    return rng.random((96, 48, 48, 1), dtype=np.float32), np.arange(96) % 7


def test_interrupted_run_resumes_on_its_schedule(tiny_data, tmp_path):
    x, y = tiny_data
    recipe = dataclasses.replace(RECIPES["finetune"], batch_size=32)
    _, whole = fit_classifier(_tiny, x, y, x, y, recipe=recipe, epochs=3,
                              checkpoint_dir=tmp_path / "whole", verbose=0)
    with pytest.raises(KeyboardInterrupt):
        fit_classifier(_tiny, x, y, x, y, recipe=recipe, epochs=3, checkpoint_dir=tmp_path / "cut",
                       callbacks=[_Interrupt()], verbose=0)
    before = keras.saving.load_model(tmp_path / "cut" / "last.keras")
    _, resumed = fit_classifier(lambda: pytest.fail("must resume, not build anew"), x, y, x, y,
                                recipe=recipe, epochs=3, checkpoint_dir=tmp_path / "cut", verbose=0)
    rates = [round(h["learning_rate"], 7) for h in resumed["history"]]
    expected = [round(h["learning_rate"], 7) for h in whole["history"]]
    assert rates == expected, f"resumed run's learning rates {rates}, uninterrupted {expected}"
    assert rates[-1] == 0.0 and rates[0] > rates[1] > 0, f"not the promised cosine: {rates}"
    after = keras.saving.load_model(tmp_path / "cut" / "last.keras")
    assert int(after.optimizer.iterations) == 3 * int(before.optimizer.iterations), (
        "the resumed run did not continue from the saved optimiser step")


def test_progress_counts_the_epochs_of_the_whole_run(tiny_data, capsys):
    """Each epoch is its own Keras fit; the progress lines still count the run's epochs."""
    x, y = tiny_data
    recipe = dataclasses.replace(RECIPES["finetune"], batch_size=32)
    fit_classifier(_tiny, x, y, x, y, recipe=recipe, epochs=2, checkpoint_dir=None, verbose=2)
    printed = capsys.readouterr().out
    assert "Epoch 1/2" in printed and "Epoch 2/2" in printed, printed
    assert "Epoch 2/2" not in printed.split("Epoch 1/2")[0], "epochs out of order"


def test_longer_cosine_run_is_refused_with_the_way_out(tiny_data, tmp_path):
    x, y = tiny_data
    recipe = dataclasses.replace(RECIPES["finetune"], batch_size=32)
    fit_classifier(_tiny, x, y, x, y, recipe=recipe, epochs=1, checkpoint_dir=tmp_path, verbose=0)
    with pytest.raises(InputError, match=r"planned for 1 epochs.*--epochs 1.*--init"):
        fit_classifier(_tiny, x, y, x, y, recipe=recipe, epochs=2, checkpoint_dir=tmp_path,
                       verbose=0)
    with pytest.raises(InputError, match="seed"):
        fit_classifier(_tiny, x, y, x, y, recipe=recipe, epochs=1, checkpoint_dir=tmp_path,
                       seed=5, verbose=0)


def test_shuffling_depends_on_seed_and_epoch_only():
    from kemo._batches import _Shuffled

    x, y = np.arange(10.0)[:, None], np.arange(10)
    fresh = _Shuffled(x, y, 4, seed=1)
    orders = []
    for epoch in range(3):
        fresh.start(epoch)
        orders.append(np.concatenate([fresh[i][1] for i in range(len(fresh))]))
    resumed = _Shuffled(x, y, 4, seed=1)
    resumed.start(2)
    third = np.concatenate([resumed[i][1] for i in range(len(resumed))])
    np.testing.assert_array_equal(third, orders[2], err_msg="resumed epoch 3 order differs")
    assert not np.array_equal(orders[0], orders[1]), "two epochs in the same order"
    # what fit_classifier trains on: each epoch's batches as two arrays, in the same order
    for epoch, order in enumerate(orders):
        images, labels = _Shuffled(x, y, 4, seed=1).epoch_arrays(epoch)
        np.testing.assert_array_equal(labels, order, err_msg=f"epoch {epoch + 1} as arrays")
        np.testing.assert_array_equal(images[:, 0], x[labels, 0])
    assert sorted(third.tolist()) == list(range(10)), "an epoch must see every image once"


def test_alternative_images_are_drawn_half_the_time():
    from kemo._batches import _Shuffled

    x, alt, y = np.zeros((4000, 1)), np.ones((4000, 1)), np.zeros(4000)
    data = _Shuffled(x, y, 4000, seed=0, x_alt=alt)
    share = float(data[0][0].mean())
    assert 0.45 < share < 0.55, f"aligned versions drawn for {share:.2%} of the images"


def test_fit_leaves_global_generators_alone(tiny_data):
    import random

    x, y = tiny_data
    np.random.seed(7)
    random.seed(7)
    expected = (np.random.rand(), random.random())
    np.random.seed(7)
    random.seed(7)
    fit_classifier(_tiny, x[:32], y[:32], x[:32], y[:32], epochs=1, verbose=0)
    assert (np.random.rand(), random.random()) == expected, "fit reseeded the global generators"


def test_ema_recipe_returns_the_averaged_weights(tiny_data, tmp_path):
    x, y = tiny_data
    recipe = dataclasses.replace(RECIPES["finetune"], batch_size=32, ema=0.9, erasing=0.5)
    model, _ = fit_classifier(_tiny, x, y, x, y, recipe=recipe, epochs=1, checkpoint_dir=tmp_path,
                              verbose=0)
    trainer = keras.saving.load_model(tmp_path / "last.keras")
    raw = [np.asarray(v) for v in trainer.layers[-1].trainable_variables]
    trainer.optimizer.finalize_variable_values(trainer.trainable_variables)
    averaged = [np.asarray(v) for v in trainer.layers[-1].trainable_variables]
    got = [np.asarray(v) for v in model.trainable_variables]
    for a, g in zip(averaged, got, strict=True):
        np.testing.assert_allclose(g, a, atol=1e-6, err_msg="returned model is not the average")
    assert any(not np.allclose(r, a) for r, a in zip(raw, averaged, strict=True)), (
        "the average equals the raw weights: no EMA was kept")
    best = keras.saving.load_model(tmp_path / "best.keras")
    for a, b in zip(averaged, best.trainable_variables, strict=True):
        np.testing.assert_allclose(np.asarray(b), a, atol=1e-6,
                                   err_msg="best.keras must hold the averaged weights")


def test_quick_run_with_aligned_faces_erasing_and_ema(shared_data, tmp_path):
    """The new training options in QUICK form: 96 images, one epoch."""
    recipe = dataclasses.replace(RECIPES["finetune"], erasing=0.5, ema=0.99)
    cache = tmp_path / "aligned.npz"
    _, state = train_fer2013(shared_data / "fer2013", recipe=recipe, epochs=1, limit=96,
                             checkpoint_dir=tmp_path / "run", aligned=cache, verbose=0)
    stored = np.load(cache)
    assert stored["Training"].shape == (96, 48, 48), "the aligned Training faces are cached"
    assert stored["PublicTest_found"].sum() > 48, "PublicTest faces realigned for scoring"
    scores = state["publictest"]
    assert 0 <= scores["aligned_flip"] <= 1 and 0 <= scores["raw_flip_same_faces"] <= 1, scores
    saved = json.loads((tmp_path / "run" / "state.json").read_text())
    assert saved["aligned"] is True and saved["recipe"]["ema"] == 0.99, saved


@pytest.fixture(scope="module")
def realigned(shared_data):
    """The first 400 PublicTest images, raw and as kemo's detect-and-align path cuts them."""
    from kemo.datasets import load_fer2013
    from kemo.training import realign_faces

    split = load_fer2013(shared_data / "fer2013", subset="PublicTest")
    images, labels = split.images[:400], split.labels[:400]
    faces, found = realign_faces(images)
    return images, labels, faces, found


def test_realign_faces_cuts_real_fer_faces(realigned):
    images, _, faces, found = realigned
    assert faces.shape == images.shape and faces.dtype == np.uint8, (faces.shape, faces.dtype)
    assert found.mean() > 0.75, f"a face found in only {found.sum()} of 400 FER2013 images"
    assert not np.array_equal(faces[found], images[found]), "aligned faces equal the raw ones"
    np.testing.assert_array_equal(faces[~found], images[~found],
                                  err_msg="images without a face must stay raw")


def test_shipped_model_keeps_its_accuracy_on_kemo_aligned_faces(realigned):
    """Regression pin for the aligned-vs-raw gap (model card, "The faces inference gives it").

    With black margins outside the image, kemo's aligned crops of the first 1,200 PublicTest
    images scored 4.8 points under the raw crops (61.7 % against 66.5 %); repeating the image
    edge brought the gap on all of PublicTest to 1.8 points (``fer2013_resnet10``).
    ``fer2013_resnet10_v2``, trained on FER2013's crops only, failed this test (4.9 points on
    these faces); ``fer2013_resnet10_v3``, fine-tuned on raw and aligned faces (``kemo train
    fer2013 --aligned``), 0.6 points on all of PublicTest; the default since the same day,
    ``fer2013_resnet10_v4``, trained on both from the start, scores 0.5 points *better* on
    the aligned faces than on the raw ones (69.09 against 68.62 %).
    """
    from kemo.face_classifier import FaceEmotionClassifier

    images, labels, faces, found = realigned
    clf = FaceEmotionClassifier()
    raw = np.mean(clf.predict(images[found]) == labels[found])
    cut = np.mean(clf.predict(faces[found]) == labels[found])
    assert cut > raw - 0.03, (
        f"aligned crops {cut:.2%} against raw {raw:.2%} on {found.sum()} faces: the gap "
        "between kemo's faces and FER2013's grew past 3 points")


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


def _blob_centres(images):
    """Centroid (row, column) of each image's bright blob, relative to the image centre."""
    images = np.asarray(images)[..., 0]
    rows, cols = np.mgrid[:images.shape[1], :images.shape[2]]
    mass = images.sum(axis=(1, 2))
    centre = (images.shape[1] - 1) / 2
    return np.stack([(images * rows).sum(axis=(1, 2)) / mass - centre,
                     (images * cols).sum(axis=(1, 2)) / mass - centre], axis=1)


@pytest.fixture(scope="module")
def blobs():
    """400 copies of a 48x48 image with a small Gaussian blob 12 px right of the centre."""
    rows, cols = np.mgrid[:48, :48]
    blob = np.exp(-((rows - 23.5) ** 2 + (cols - 35.5) ** 2) / 4.0).astype("float32")
    return np.repeat(blob[None, :, :, None], 400, axis=0)


def test_random_affine_draws_each_transform_in_its_range(blobs):
    """Rotation keeps the blob's distance to the centre and turns it by at most the angle;
    a shift moves it by at most the fraction of the side; a zoom scales its distance."""
    from kemo.models.augment import RandomAffine

    start = _blob_centres(blobs[:1])[0]  # (0, 12)
    turned = _blob_centres(RandomAffine(rotation=10, seed=0)(blobs, training=True))
    radius = np.hypot(*turned.T)
    angle = np.degrees(np.arctan2(turned[:, 0], turned[:, 1]))
    np.testing.assert_allclose(radius, np.hypot(*start), atol=0.05)
    assert np.abs(angle).max() <= 10.05 and np.abs(angle).max() > 8, "up to 10 degrees"
    moved = _blob_centres(RandomAffine(shift=0.1, seed=0)(blobs, training=True)) - start
    assert np.abs(moved).max() <= 4.8 + 0.05 and np.abs(moved).max(axis=0).min() > 4, (
        "shifts of up to 4.8 px on both axes")
    scaled = np.hypot(*_blob_centres(RandomAffine(zoom=0.1, seed=0)(blobs, training=True)).T)
    ratio = scaled / np.hypot(*start)
    assert ratio.min() >= 1 / 1.1 - 0.01 and ratio.max() <= 1 / 0.9 + 0.01, "zoom 0.9-1.1"
    assert ratio.max() - ratio.min() > 0.15, "zooms spread over the range"
    plain = RandomAffine(rotation=10, shift=0.1, zoom=0.1)(blobs[:2], training=False)
    np.testing.assert_array_equal(np.asarray(plain), blobs[:2], "inference leaves images alone")
    with pytest.raises(ValueError, match="shift must be"):
        RandomAffine(shift=1.5)


def test_single_warp_keeps_more_detail_than_chained(shared_data):
    """On real faces, one resampling keeps more detail (mean absolute difference between
    neighbouring pixels) than Keras's three chained layers with the same ranges."""
    from kemo.datasets import load_fer2013

    faces = as_model_input(load_fer2013(shared_data / "fer2013",
                                        subset="PublicTest").images[:256]) / 255.0

    def detail(x):
        x = np.asarray(x)
        return np.abs(np.diff(x, axis=1)).mean() + np.abs(np.diff(x, axis=2)).mean()

    kept = {warp: detail(augmentation(dataclasses.replace(RECIPES["kemo"], warp=warp),
                                      seed=0)(faces, training=True)) / detail(faces)
            for warp in ("chained", "single")}
    assert kept["single"] > kept["chained"] + 0.1, f"detail kept: {kept}"
    with pytest.raises(InputError, match="warp must be one of"):
        dataclasses.replace(RECIPES["kemo"], warp="twice")  # refused when the recipe is made


def test_single_warp_run_saves_and_resumes(tiny_data, tmp_path):
    """A run with ``warp="single"`` checkpoints a trainer that loads again (the layer is
    registered), and resumes on it."""
    from kemo.models.augment import RandomAffine

    x, y = tiny_data
    recipe = dataclasses.replace(RECIPES["finetune"], batch_size=32, warp="single")
    with pytest.raises(KeyboardInterrupt):
        fit_classifier(_tiny, x, y, x, y, recipe=recipe, epochs=2, checkpoint_dir=tmp_path,
                       callbacks=[_Interrupt()], verbose=0)
    trainer = keras.saving.load_model(tmp_path / "last.keras", safe_mode=True)
    assert any(isinstance(layer, RandomAffine) for layer in trainer.layers[0].layers)
    _, state = fit_classifier(_tiny, x, y, x, y, recipe=recipe, epochs=2,
                              checkpoint_dir=tmp_path, verbose=0)
    assert state["epoch"] == 2 and state["recipe"]["warp"] == "single", state["recipe"]


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


# Run in a child process: TensorFlow's logical CPU devices must be set before it starts.
DISTRIBUTED_RUN = """# One device against two, the same small model on real FER2013 faces.
import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import dataclasses  # noqa: E402

import keras  # noqa: E402

from kemo.datasets import load_fer2013  # noqa: E402
from kemo.training import RECIPES, as_model_input, fit_classifier  # noqa: E402

data = sys.argv[1]
train = load_fer2013(data, subset="Training")
val = load_fer2013(data, subset="PublicTest")
x, y = as_model_input(train.images[:2048]) / 255.0, train.labels[:2048]
xv, yv = as_model_input(val.images[:512]) / 255.0, val.labels[:512]


def build():
    return keras.Sequential([
        keras.Input((48, 48, 1)), keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(7, activation="softmax"),
    ])


recipe = dataclasses.replace(RECIPES["kemo"], batch_size=64, warmup_epochs=0,
                             learning_rate=0.05)
out = {}
for distribute in (False, True):
    _, state = fit_classifier(build, x, y, xv, yv, recipe=recipe, epochs=4,
                              checkpoint_dir=f"{sys.argv[2]}/{distribute}",
                              distribute=distribute, verbose=0)
    out[str(distribute)] = state
print(json.dumps({k: {"devices": s["devices"], "history": s["history"]}
                  for k, s in out.items()}))
"""


def test_distributed_training_matches_one_device(shared_data, tmp_path):
    """Two logical CPU devices, each batch split between them, against one device."""
    import subprocess
    import sys

    script = tmp_path / "distributed.py"
    script.write_text(DISTRIBUTED_RUN)
    done = subprocess.run([sys.executable, str(script), str(shared_data / "fer2013"),
                           str(tmp_path / "runs")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    one, two = runs["False"], runs["True"]
    assert (one["devices"], two["devices"]) == (1, 2), f"devices used: {one['devices']}, " \
        f"{two['devices']}"
    for run in (one, two):
        losses = [h["loss"] for h in run["history"]]
        assert losses[-1] < losses[0], f"training did not lower the loss: {losses}"
    last1, last2 = one["history"][-1], two["history"][-1]
    assert abs(last1["loss"] - last2["loss"]) < 0.03, f"losses differ: {last1} vs {last2}"
    assert abs(last1["val_accuracy"] - last2["val_accuracy"]) <= 0.05, (
        f"PublicTest accuracy after the same steps differs: {last1} vs {last2}")
