"""Training recipes for kemo's frame models on face images.

Two recipes are recorded side by side:

* ``"paper"``: the paper's settings (SGD, momentum 0.9, learning rate 1e-4,
  batch 32, constant rate; flip + rotation augmentation).
* ``"finetune"``: a warm restart for a trained model: a second cosine cycle
  from 0.01, otherwise as ``"kemo"``.
* ``"kemo"``: what trains a from-scratch network far faster on FER2013: SGD with
  Nesterov momentum, a 2-epoch linear warm-up to 0.05 then cosine decay to 0,
  batch 128, decoupled weight decay 5e-4, label smoothing 0.1, and flip,
  rotation, shift and zoom augmentation.

Two regularisers can be added to any recipe (``dataclasses.replace`` or the command
line's ``--erasing`` / ``--ema``): random erasing (``erasing``: the probability that a
rectangle of 2-25 % of the image is replaced by noise) and an exponential moving average of the
weights (``ema``: its momentum per step; validation, ``best.keras`` and the returned model use
the averaged weights).

The recipe's ``warp`` says how rotation, shift and zoom are applied: ``"chained"`` (Keras's
three layers, as the shipped model was trained) or ``"single"`` (one resampling; see
:func:`augmentation`).

Training writes checkpoints atomically after every epoch (``last.keras``,
``best.keras`` and ``state.json`` in ``checkpoint_dir``) and resumes from them
when run again with the same directory, so an interrupted run loses at most
one epoch.
"""

import contextlib
import dataclasses
import hashlib
import json
import tempfile
import time
from pathlib import Path

# ruff: noqa: E402 - TensorFlow is started quietly before Keras is imported
from kemo._tensorflow import import_quietly

import_quietly()

import keras
import numpy as np

from kemo._batches import _Shuffled
from kemo._files import atomic_path, remove_stale, write_atomic
from kemo._seeds import keras_seed
from kemo.errors import InputError, WeightsError

#: How rotation, shift and zoom are applied (see :func:`augmentation`).
WARPS = ("chained", "single")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Optimiser, schedule and regularisation settings for one training run."""

    learning_rate: float
    batch_size: int
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "constant"
    warmup_epochs: int = 0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    rotation: float = 10.0
    shift: float = 0.0
    zoom: float = 0.0
    erasing: float = 0.0
    ema: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    warp: str = "chained"

    def __post_init__(self):
        if self.warp not in WARPS:
            raise InputError(f"warp must be one of {WARPS}; got {self.warp!r}")


RECIPES = {
    "paper": Recipe(learning_rate=1e-4, batch_size=32),
    # a second, shorter cosine cycle from a trained model (a warm restart)
    "finetune": Recipe(
        learning_rate=0.01, batch_size=128, nesterov=True, schedule="cosine",
        weight_decay=5e-4, label_smoothing=0.1, shift=0.1, zoom=0.1,
    ),
    "kemo": Recipe(
        learning_rate=0.05, batch_size=128, nesterov=True, schedule="cosine",
        warmup_epochs=2, weight_decay=5e-4, label_smoothing=0.1, shift=0.1, zoom=0.1,
    ),
}


def augmentation(recipe, seed=None):
    """Return the recipe's image augmentation as a Keras ``Sequential``.

    Horizontal flips, rotations of up to ``recipe.rotation`` degrees and, where
    the recipe asks, shifts and zooms (fractions of the image size). ``recipe.warp``:
    ``"chained"`` applies rotation, shift and zoom one after another (Keras's three
    layers, three resamplings: how the shipped model was trained); ``"single"`` draws
    the same three and applies them in one resampling
    (:class:`kemo.models.augment.RandomAffine`), which keeps more of a face's detail.
    """
    from kemo.models.augment import RandomAffine

    # float32 whatever the global policy: bfloat16 interpolation would blur the faces.
    kw = {"seed": seed, "dtype": "float32"}
    steps = [keras.layers.RandomFlip("horizontal", **kw)]
    if recipe.warp == "single":
        steps.append(RandomAffine(recipe.rotation, recipe.shift, recipe.zoom, **kw))
    else:
        steps.append(keras.layers.RandomRotation(recipe.rotation / 360.0, fill_mode="reflect",
                                                 **kw))
        if recipe.shift:
            steps.append(keras.layers.RandomTranslation(
                recipe.shift, recipe.shift, fill_mode="reflect", **kw))
        if recipe.zoom:
            steps.append(keras.layers.RandomZoom(recipe.zoom, fill_mode="reflect", **kw))
    if recipe.erasing:
        # inputs are pixels / 255 by the time they reach the trainer
        steps.append(keras.layers.RandomErasing(
            factor=(recipe.erasing, recipe.erasing), scale=(0.02, 0.25),
            value_range=(0.0, 1.0), **kw))
    return keras.Sequential(steps, name="augmentation")


def as_model_input(images):
    """Turn uint8 face images ``(N, H, W)`` or ``(N, H, W, C)`` into float32 ``(N, H, W, C)``.

    Pixel values stay in 0..255; the weights entry's preprocessing (see
    :mod:`kemo.weights`) scales them.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise InputError(f"face images must be (N, H, W) or (N, H, W, C); got shape {images.shape}")
    return images.astype("float32")


def realign_faces(images, *, upscale=192, batch_size=64, progress=None):
    """FER2013-style face images as kemo's own detect-and-align path cuts them.

    Each image is upscaled (bicubic) to ``upscale`` pixels, so that MTCNN finds the face,
    detected by :class:`kemo.faces.FaceDetector` and aligned by
    :func:`kemo.faces.align_face` back to the image's size. Training on these as well as on
    the raw images teaches a model the faces it meets at inference
    (``benchmarks/aligned_faces.py`` measures the difference).

    Args:
        images: uint8 array ``(N, H, W)`` of gray faces.
        upscale: Side of the upscaled images.
        batch_size: Images per detector call.
        progress: Optional callable ``progress(done, total)``.

    Returns:
        ``(faces, found)``: uint8 ``(N, H, W)`` aligned faces (the raw image where no face
        was found) and a bool ``(N,)`` mask of the images where one was.
    """
    import cv2

    from kemo.faces import FaceDetector, align_face

    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise InputError(f"images must be uint8 (N, H, W); got {images.dtype} {images.shape}")
    # One pass: the upscaled faces are large, and the cached realigned sets stay as they were.
    detector = FaceDetector(batch_size=16, small_face_size=None)
    faces, found = images.copy(), np.zeros(len(images), bool)
    for start in range(0, len(images), batch_size):
        big = [cv2.resize(im, (upscale, upscale), interpolation=cv2.INTER_CUBIC)
               for im in images[start:start + batch_size]]
        for i, (image, records) in enumerate(zip(big, detector.detect_batch(big), strict=True)):
            if records:
                faces[start + i] = align_face(image, records[0], out_size=images.shape[1],
                                              grayscale=True)
                found[start + i] = True
        if progress is not None:
            progress(min(start + batch_size, len(images)), len(images))
    return faces, found


def realigned_fer2013(data, cache, subset, limit=None):
    """FER2013 ``subset`` through kemo's detect-and-align path (:func:`realign_faces`), cached.

    Args:
        data: Where FER2013 is (see :func:`kemo.datasets.load_fer2013`).
        cache: An ``.npz`` file holding ``<subset>`` and ``<subset>_found`` arrays; a subset it
            lacks is computed (about 9 minutes for Training on 2 CPU cores) and added.
        subset: ``"Training"`` or ``"PublicTest"``.
        limit: Only the first ``limit`` images (quick runs).

    Returns:
        ``(faces, found)`` as :func:`realign_faces` gives them, for the subset's images.
    """
    from kemo.datasets import load_fer2013

    cache = Path(cache)
    stored = dict(np.load(cache, allow_pickle=False)) if cache.is_file() else {}
    images = load_fer2013(data, subset=subset).images[:limit]
    if subset not in stored or len(stored[subset]) < len(images):
        stored[subset], stored[f"{subset}_found"] = realign_faces(images)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache, ".npz") as tmp:
            np.savez_compressed(tmp, **stored)
    return stored[subset][:len(images)], stored[f"{subset}_found"][:len(images)]


def _optimizer(recipe, steps_per_epoch, epochs):
    if recipe.schedule == "cosine":
        warmup = recipe.warmup_epochs * steps_per_epoch
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=recipe.learning_rate / 100 if warmup else recipe.learning_rate,
            decay_steps=max(1, epochs * steps_per_epoch - warmup),
            warmup_target=recipe.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    elif recipe.schedule == "constant":
        rate = recipe.learning_rate
    else:
        raise ValueError(f"unknown schedule {recipe.schedule!r}; use 'cosine' or 'constant'")
    return keras.optimizers.SGD(
        learning_rate=rate, momentum=recipe.momentum, nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay or None,
        use_ema=bool(recipe.ema), ema_momentum=recipe.ema or 0.99,
    )


def _trainer(model, recipe, seed):
    """``model`` behind the recipe's augmentation, as one model to compile and fit.

    The random layers act only when training, so validation and prediction see
    clean images; and augmenting inside the model runs it on the accelerator of
    whichever Keras backend is active (TensorFlow, JAX or PyTorch).
    """
    return keras.Sequential(
        [keras.Input(model.input_shape[1:]), augmentation(recipe, seed=seed), model],
        name="trainer",
    )


def _save_atomic(model, path):
    with atomic_path(path, ".keras") as tmp:
        model.save(tmp)


def _write_json_atomic(obj, path):
    write_atomic(path, json.dumps(obj, indent=2))


class _Checkpoint(keras.callbacks.Callback):
    """Save last/best models and the run state after every epoch, atomically."""

    def __init__(self, directory, state):
        super().__init__()
        self.directory = Path(directory)
        self.state = state
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        # the rate the schedule reached at the end of this epoch: a resumed run must go on
        # from the same value as an uninterrupted one
        rate = self.model.optimizer.learning_rate
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))
        seconds = time.time() - self.started
        self.state["history"].append({"epoch": epoch + 1, **logs, "seconds": round(seconds, 1)})
        self.state["epoch"] = epoch + 1
        self.state["wall_seconds"] += seconds
        self.started = time.time()
        score = logs.get("val_accuracy", -1.0)
        if score > self.state["best"]["val_accuracy"]:
            self.state["best"] = {"epoch": epoch + 1, "val_accuracy": score}
            # best.keras is the bare classifier (with its averaged weights when the recipe
            # keeps an EMA: those are what validation scored), ready for inference and export
            with _averaged_weights(self.model):
                _save_atomic(self.model.layers[-1], self.directory / "best.keras")
        _save_atomic(self.model, self.directory / "last.keras")
        _write_json_atomic(self.state, self.directory / "state.json")


@contextlib.contextmanager
def _averaged_weights(trainer):
    """Put the optimiser's moving averages into ``trainer``'s weights inside the block."""
    if not trainer.optimizer.use_ema:
        yield
        return
    swap = keras.callbacks.SwapEMAWeights()
    swap.set_model(trainer)
    swap.on_test_begin()  # the public way in: swaps the averages in, and back on test end
    try:
        yield
    finally:
        swap.on_test_end()


@contextlib.contextmanager
def _distribution(distribute):
    """Build, compile and fit inside this block to train data-parallel over the local devices.

    Yields the number of devices (replicas). Every batch of the recipe is split between
    them, so the recipe means the same on one device or several. TensorFlow uses
    ``tf.distribute.MirroredStrategy`` over its GPUs, else its (logical) CPUs; JAX uses
    Keras's ``DataParallel`` distribution.
    """
    if not distribute:
        yield 1
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
        with strategy.scope():
            yield strategy.num_replicas_in_sync
    elif backend == "jax":
        devices = keras.distribution.list_devices()
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield len(devices)
        finally:
            keras.distribution.set_distribution(previous)
    else:
        raise InputError(f"distributed training needs the tensorflow or jax backend; "
                         f"KERAS_BACKEND is {backend!r}")


def _check_resume(state, recipe, epochs, seed, precision, directory, aligned=None,
                  targets=None):
    """Refuse to resume a run under settings that would not continue what it started."""
    planned = {"recipe": dataclasses.asdict(recipe), "seed": seed, "precision": precision,
               "aligned": aligned, "targets": targets}
    state.setdefault("aligned", False)  # runs from before x_alt existed
    state.setdefault("targets", None)  # runs from before soft targets existed
    # runs from before a recipe field existed ran with its default
    state["recipe"] = {**dataclasses.asdict(Recipe(learning_rate=0, batch_size=0)),
                       **state["recipe"]}
    changed = [k for k, v in planned.items() if state.get(k) != v]
    if changed:
        raise InputError(
            f"{directory} holds a run with other settings ({', '.join(changed)}: "
            f"{', '.join(f'{state.get(k)!r}' for k in changed)}); resume it with the same "
            f"settings, or start a new run in another folder (--out), from its weights with "
            f"--init {directory / 'best.keras'}")
    if recipe.schedule != "constant" and state["epochs"] != epochs:
        raise InputError(
            f"{directory} holds a run planned for {state['epochs']} epochs, and its "
            f"{recipe.schedule} learning-rate schedule ends there: continuing it to {epochs} "
            f"epochs would not follow the schedule. Resume with --epochs {state['epochs']}, or "
            f"train longer as a new stage: --recipe finetune --init {directory / 'best.keras'} "
            "--out NEW_RUN_DIR")


def fit_classifier(
    build,
    x_train,
    y_train,
    x_val,
    y_val,
    *,
    recipe="kemo",
    epochs=30,
    checkpoint_dir=None,
    seed=0,
    precision="float32",
    x_alt=None,
    distribute=False,
    callbacks=(),
    verbose=1,
):
    """Train an image classifier with a recipe, checkpointing and resuming.

    Args:
        build: Zero-argument callable returning an uncompiled Keras model whose
            input takes ``x_train``'s shape and whose output is a softmax over
            the classes (e.g. ``lambda: ResNet10(input_shape=(48, 48, 1))``).
        x_train: Training images (float32, ``as_model_input`` and the weights'
            preprocessing already applied).
        y_train: Integer training labels, or soft targets: one probability row per image
            (``(N, classes)``, e.g. from :func:`kemo.targets.soft_targets`).
        x_val: Validation images, scored after each epoch.
        y_val: Integer validation labels.
        recipe: A name in :data:`RECIPES` or a :class:`Recipe`.
        epochs: Total number of epochs (a resumed run continues up to it).
        checkpoint_dir: Folder for ``last.keras``, ``best.keras`` and
            ``state.json``; a run finds its own checkpoints there and resumes.
            ``None`` trains without checkpoints.
        seed: Seed for weights, shuffling and augmentation (an int; the global
            Python, NumPy and backend generators are left alone).
        precision: Keras dtype policy for training, ``"float32"`` or
            ``"mixed_bfloat16"`` (about 1.4x faster on CPUs with AMX).
        x_alt: Optional second version of each training image (same shape as
            ``x_train``), drawn instead of the first with probability 0.5 each time an
            image is used, e.g. the faces of :func:`realign_faces`.
        distribute: Train data-parallel over every local device (GPUs, else the
            logical CPUs TensorFlow was given; ``tensorflow`` and ``jax`` backends), each
            batch split between them; the number used is recorded in the state.
        callbacks: More Keras callbacks, run after the checkpoint of each epoch (each epoch is
            one ``fit`` call, so ``on_train_begin`` and ``on_train_end`` come every epoch).
        verbose: Keras progress-bar verbosity.

    Returns:
        ``(model, state)``: the model after the last epoch and the run state
        (history per epoch, best epoch, wall time). ``last.keras`` holds the
        model behind its augmentation layers with the optimiser state (for
        resuming); ``best.keras`` the bare model of the best epoch.

    Raises:
        InputError: On images and labels of different lengths, soft targets that are not
            probability rows over the model's classes, or when ``checkpoint_dir``
            holds a run that these settings would not continue: another recipe, seed or
            precision, or another number of epochs under a cosine schedule (its learning
            rate reaches 0 at the planned end; train longer as a new stage with ``init``).
    """
    recipe = RECIPES[recipe] if isinstance(recipe, str) else recipe
    if len(x_train) != len(y_train) or len(x_val) != len(y_val):
        raise InputError(
            f"images and labels differ in length: {len(x_train)} vs {len(y_train)} (train), "
            f"{len(x_val)} vs {len(y_val)} (validation)"
        )
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    scope = contextlib.ExitStack()
    try:
        devices = scope.enter_context(_distribution(distribute))
        aligned = x_alt is not None
        y_train = np.asarray(y_train)
        # soft targets are named by their digest: a resumed run must learn the same ones
        # (rounded: a teacher's probabilities, computed again, may differ in the last bits)
        targets = (hashlib.sha256(np.round(y_train, 4).astype(np.float32).tobytes())
                   .hexdigest()[:16] if y_train.ndim == 2 else None)
        state = {"epoch": 0, "history": [], "best": {"epoch": 0, "val_accuracy": -1.0},
                 "wall_seconds": 0.0, "recipe": dataclasses.asdict(recipe), "seed": seed,
                 "precision": precision, "epochs": epochs, "aligned": aligned,
                 "targets": targets, "devices": devices}
        trainer = None
        if checkpoint_dir is not None:
            checkpoint_dir = Path(checkpoint_dir)
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            remove_stale(checkpoint_dir)
            last = checkpoint_dir / "last.keras"
            if (checkpoint_dir / "state.json").exists() and last.exists():
                state = json.loads((checkpoint_dir / "state.json").read_text())
                _check_resume(state, recipe, epochs, seed, precision, checkpoint_dir, aligned,
                              targets)
                trainer = keras.saving.load_model(last, safe_mode=True)
        if trainer is None:
            with keras_seed(seed):
                trainer = _trainer(build(), recipe, seed)
            steps = int(np.ceil(len(x_train) / recipe.batch_size))
            trainer.compile(
                optimizer=_optimizer(recipe, steps, epochs),
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            )
        model = trainer.layers[-1]
        if state["epoch"] < epochs:
            classes = model.output_shape[-1]
            if targets is None:
                y_train = keras.utils.to_categorical(y_train, classes)
            elif (y_train.shape[1] != classes or y_train.min() < 0
                  or not np.allclose(y_train.sum(axis=1), 1, atol=1e-3)):
                raise InputError(f"soft targets must be probability rows over the model's "
                                 f"{classes} classes; got shape {y_train.shape} with row sums "
                                 f"{y_train.sum(axis=1).min():.3f}..{y_train.sum(axis=1).max():.3f}")
            batches = _Shuffled(x_train, y_train.astype(np.float32), recipe.batch_size, seed,
                                x_alt=x_alt, mixup=recipe.mixup, cutmix=recipe.cutmix)
            steps = [keras.callbacks.SwapEMAWeights()] if trainer.optimizer.use_ema else []
            if checkpoint_dir is not None:
                steps.append(_Checkpoint(checkpoint_dir, state))
            batches.fit(trainer, epochs, state["epoch"],
                        validation_data=(x_val, keras.utils.to_categorical(y_val, classes)),
                        validation_batch_size=256, callbacks=steps + list(callbacks),
                        verbose=verbose)
        # fit leaves the averaged weights in the model at its end; a run found finished
        # (or saved between epochs) holds them in the optimiser only
        if trainer.optimizer.use_ema:
            trainer.optimizer.finalize_variable_values(trainer.trainable_variables)
        state["devices"] = devices  # a resumed run may have more or fewer
        return model, state
    finally:
        scope.close()
        keras.mixed_precision.set_global_policy(previous_policy)


def last_model(checkpoint_dir):
    """The bare classifier of a run's last epoch, as :func:`fit_classifier` returns it.

    Read from the run's ``last.keras``, with the averaged weights when its recipe keeps an
    EMA (the file holds them in the optimiser).

    Raises:
        WeightsError: When the folder holds no ``last.keras``.
    """
    path = Path(checkpoint_dir) / "last.keras"
    if not path.is_file():
        raise WeightsError(f"{checkpoint_dir}: no last.keras here; is it a training run folder?")
    trainer = keras.saving.load_model(path, safe_mode=True)
    if trainer.optimizer.use_ema:
        trainer.optimizer.finalize_variable_values(trainer.trainable_variables)
    return trainer.layers[-1]


def evaluate_images(model, x, y, *, flip=True, batch_size=256):
    """Accuracy of ``model`` on preprocessed images, averaging mirror images when ``flip``.

    Returns:
        ``(accuracy, probabilities)``.
    """
    proba = model.predict(x, batch_size=batch_size, verbose=0)
    if flip:
        proba = (proba + model.predict(x[:, :, ::-1], batch_size=batch_size, verbose=0)) / 2
    return float(np.mean(np.argmax(proba, axis=1) == np.asarray(y))), proba


def recalibrate_batchnorm(model, images, *, batch_size=128):
    """Recompute the moving mean and variance of every BatchNormalization layer on ``images``.

    During training these statistics are running averages over augmented batches (rotated,
    shifted, zoomed faces) of a network that was still changing; inference sees plain
    faces. Recomputed as the average of the batch statistics over ``images`` (without
    augmentation), they match what the network sees at inference: on FER2013 this adds about
    1.5 points of PublicTest accuracy to kemo's ResNet-10 (see ``weights/fer2013_resnet10.md``).
    Nothing else changes.

    Args:
        model: A Keras model; nested models are searched too.
        images: Preprocessed model input, e.g. the training images.
        batch_size: Images per batch (as in training: batch statistics depend on it).

    Returns:
        ``model``, updated in place.
    """
    layers = _batchnorm_layers(model)
    saved = [layer.momentum for layer in layers]
    try:
        for step, start in enumerate(range(0, len(images), batch_size)):
            # moving = momentum * moving + (1 - momentum) * batch, with momentum k / (k + 1)
            # at step k, is the plain average of the batch statistics.
            for layer in layers:
                layer.momentum = step / (step + 1)
            model(images[start:start + batch_size], training=True)
    finally:
        for layer, momentum in zip(layers, saved, strict=True):
            layer.momentum = momentum
    return model


def _batchnorm_layers(model):
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found += _batchnorm_layers(layer)
    return found


def final_model(trained, x_train):
    """The model to ship from a trained FER2013 ResNet-10.

    A float32 copy of ``trained`` (which may have trained in mixed precision) whose
    BatchNorm statistics are recomputed on the training images
    (:func:`recalibrate_batchnorm`). PublicTest plays no part in it.

    Args:
        trained: A trained :func:`kemo.models.ResNet10` (e.g. the model inside a run's
            ``last.keras``).
        x_train: The training images, preprocessed as for training.
    """
    config = trained.get_config()
    for layer in config["layers"]:  # the same architecture (any width or stem), in float32
        if "dtype" in layer["config"]:
            layer["config"]["dtype"] = "float32"
    model = keras.Model.from_config(config)
    model.set_weights(trained.get_weights())
    return recalibrate_batchnorm(model, x_train)


def train_fer2013(
    data=None,
    *,
    recipe="kemo",
    epochs=26,
    checkpoint_dir="runs/fer2013_resnet10",
    seed=0,
    precision="float32",
    limit=None,
    init=None,
    aligned=None,
    ferplus=0.0,
    teachers=(),
    teacher_weight=0.5,
    width=1.0,
    stem=None,
    distribute=False,
    verbose=1,
):
    """Train kemo's ResNet-10 (48x48 grayscale) on FER2013 Training, scored on PublicTest.

    PrivateTest is never read: models are chosen on PublicTest and measured on
    PrivateTest independently.

    Args:
        data: Where FER2013 is (see :func:`kemo.datasets.load_fer2013`).
        recipe: ``"kemo"`` or ``"paper"`` (see :data:`RECIPES`).
        epochs: Total epochs.
        checkpoint_dir: Checkpoint folder; rerunning resumes from it.
        seed: Random seed.
        precision: ``"float32"`` or ``"mixed_bfloat16"``.
        limit: Use only the first ``limit`` images of each split (quick runs).
        init: A model to start from instead of a fresh ResNet-10, with
            ``recipe="finetune"``: a ``.keras`` model (e.g. another run's ``best.keras``) or
            a ResNet-10 ``.weights.h5`` file (e.g. the one ``kemo train fer2013`` exports, or
            the shipped ``fer2013_resnet10.weights.h5``).
        aligned: An ``.npz`` cache of FER2013 as kemo's detector and aligner cut it
            (:func:`realigned_fer2013`; made on first use). Each Training image is then
            drawn raw or aligned with equal chance, so the model learns the faces that
            inference gives it; PublicTest is also scored on its aligned faces.
        ferplus: Weight of the FER+ votes in the training targets (0: the FER2013 labels
            alone; see :func:`kemo.targets.soft_targets` and ``load_fer2013(ferplus=True)``).
        teachers: Face models trained before (run folders' ``best.keras``, exported
            ``.weights.h5`` files, registered names) to distil: their mean probabilities on
            the Training images take ``teacher_weight`` of the targets.
        teacher_weight: Weight of the teachers' probabilities in the targets.
        width: Multiplier of the ResNet-10's stage widths (64-512) for a new model.
        stem: ResNet-10 stem for a new model (see :func:`kemo.models.ResNet10`; ``"full"``
            keeps the input resolution in the first stage, 4x the computation). A model of
            another width or stem is used through a whole-model ``.keras`` file (e.g. the
            run's ``best.keras``): ``.weights.h5`` files load as the shipped shape.
        distribute: Train data-parallel over every local device (see
            :func:`fit_classifier`).
        verbose: Keras verbosity.

    Returns:
        ``(model, state)``: the model to ship, the last epoch's weights in float32 with
        BatchNorm statistics recomputed on the training images (:func:`final_model`), and
        the run state, whose ``"publictest"`` holds that model's PublicTest accuracy with
        and without flip averaging.
    """
    from kemo.datasets import load_fer2013
    from kemo.models.resnet10 import ResNet10

    if init is not None and not Path(init).is_file():
        raise WeightsError(f"{init}: no such model file to start from (give a .keras file, "
                           "e.g. the best.keras of an earlier run, or a ResNet-10 .weights.h5)")

    from kemo.targets import soft_targets, teacher_probabilities

    # checked before the data and the teachers load
    if ferplus + (teacher_weight if teachers else 0.0) > 1.0:
        raise InputError(f"the FER+ weight ({ferplus}) and the teachers' weight "
                         f"({teacher_weight}) take more than the whole target; their sum must "
                         "be at most 1")
    train = load_fer2013(data, subset="Training", ferplus=bool(ferplus))
    val = load_fer2013(data, subset="PublicTest")
    x_train, y_train = as_model_input(train.images[:limit]) / 255.0, train.labels[:limit]
    sources = []
    if ferplus:
        sources.append((ferplus, train.ferplus[:limit]))
    if teachers:
        cache = None if checkpoint_dir is None else Path(checkpoint_dir) / "teachers.npz"
        sources.append((teacher_weight, teacher_probabilities(teachers, train.images[:limit],
                                                              cache=cache)))
    targets = soft_targets(y_train, *sources) if sources else y_train
    x_val, y_val = as_model_input(val.images[:limit]) / 255.0, val.labels[:limit]
    x_alt = None
    if aligned is not None:
        faces, _ = realigned_fer2013(data, aligned, "Training", limit)
        x_alt = as_model_input(faces) / 255.0
    if init is None:
        def build():
            return ResNet10(input_shape=x_train.shape[1:], width=width, stem=stem)
    elif str(init).endswith(".weights.h5"):
        def build():
            return ResNet10(input_shape=x_train.shape[1:], weights=str(init))
    else:
        def build():
            return keras.saving.load_model(init, compile=False, safe_mode=True)
    model, state = fit_classifier(
        build, x_train, targets, x_val, y_val,
        recipe=recipe, epochs=epochs, checkpoint_dir=checkpoint_dir, seed=seed,
        precision=precision, x_alt=x_alt, distribute=distribute, verbose=verbose,
    )
    if init is not None:  # the model card follows this to the first stage
        state["init"] = str(init)
    if sources:  # the state's "targets" is a digest: the model card spells these
        state["soft_targets"] = {"ferplus": ferplus, "teachers": [str(t) for t in teachers],
                                 "teacher_weight": teacher_weight if teachers else 0.0}
    if checkpoint_dir is not None and (init is not None or sources):
        _write_json_atomic(state, Path(checkpoint_dir) / "state.json")
    model = final_model(model, x_train)
    state["publictest"] = {
        "accuracy": evaluate_images(model, x_val, y_val, flip=False)[0],
        "accuracy_flip": evaluate_images(model, x_val, y_val, flip=True)[0],
    }
    if aligned is not None:
        faces, found = realigned_fer2013(data, aligned, "PublicTest", limit)
        x_aligned = as_model_input(faces[found]) / 255.0
        state["publictest"]["aligned_flip"] = evaluate_images(model, x_aligned, y_val[found])[0]
        state["publictest"]["raw_flip_same_faces"] = evaluate_images(
            model, x_val[found], y_val[found])[0]
    return model, state


def export_weights(model, path, *, dtype="float16", options=None):
    """Write ``model``'s weights as a small ``.weights.h5`` file for shipping.

    Weights are rounded to ``dtype`` (float16 halves the file; Keras casts them
    back to float32 on loading). The file is written atomically.

    Args:
        model: The model.
        path: Where to write, ending in ``.weights.h5``.
        dtype: Precision of the stored floating-point weights.
        options: Builder arguments the weights need (e.g. ``{"width": 0.5, "stem": "full"}``),
            stored in the file so that the builder rebuilds that shape
            (:func:`kemo.weights.builder_options`); by default the model's own
            (:func:`kemo.models.ensemble.shape_options`).

    Returns:
        The sha256 of the written file.
    """
    import h5py

    from kemo.models.ensemble import shape_options
    from kemo.weights import OPTIONS_ATTR, sha256

    if options is None:
        options = shape_options(model)
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"path must end in .weights.h5; received {str(path)!r}")
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch, \
            atomic_path(path, ".weights.h5") as tmp:
        full = Path(scratch) / "full.weights.h5"
        model.save_weights(full)
        # Copy into a fresh file: HDF5 never gives back the space of deleted datasets,
        # so rewriting datasets in place would leave the file at float32 size.
        with h5py.File(full, "r") as src, h5py.File(tmp, "w") as dst:
            def copy(key, obj):
                if isinstance(obj, h5py.Group):
                    dst.require_group(key).attrs.update(obj.attrs)
                else:
                    value = obj[()]
                    if value.dtype == np.float32:
                        value = value.astype(dtype)
                    dst.create_dataset(key, data=value).attrs.update(obj.attrs)

            dst.attrs.update(src.attrs)
            if options:
                dst.attrs[OPTIONS_ATTR] = json.dumps(options)
            src.visititems(copy)
    return sha256(path)
