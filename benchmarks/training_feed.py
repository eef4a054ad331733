"""How fast kemo trains a face model, by the way its batches reach Keras.

``kemo.training.fit_classifier`` hands Keras each epoch's batches as two arrays, one ``fit`` a
epoch (since 2026-12-02). Before, it handed them over as a ``keras.utils.PyDataset``, which the
TensorFlow backend reads through ``tf.data.Dataset.from_generator``. This script trains the same
ResNet-10 on the same real FER2013 Training faces, in the same batch order (kemo's seeded
shuffling), both ways, alternately, and prints the milliseconds a training step takes and the
ratio to the PyDataset baseline. Each measurement is one epoch of ``--steps`` batches after one
epoch of warm-up (tracing), on a fresh model, in a fresh process: once a PyDataset has been
read, tf.data's threads slow every later step of the process, whatever feeds it.

Usage (from the repository root)::

    python benchmarks/training_feed.py --data ../shared/data/fer2013 [--width 0.5] [--steps 24]
"""

import argparse
import dataclasses
import os
import subprocess
import sys
import time

FEEDS = {"PyDataset (baseline: before 2026-12-02)": "pydataset",
         "arrays, one fit an epoch (kemo)": "arrays"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="FER2013 location (file or folder)")
    parser.add_argument("--width", type=float, default=0.5,
                        help="ResNet-10 width (0.5: the study's rows; 1: the shipped model)")
    parser.add_argument("--steps", type=int, default=24, help="batches of 128 per epoch")
    parser.add_argument("--repeats", type=int, default=2, help="measurements per feed")
    parser.add_argument("--one", choices=list(FEEDS.values()),
                        help="measure this feed once, in this process, and print ms/step")
    args = parser.parse_args(argv)
    if args.one:
        print(f"ms/step {step_ms(args)}")
        return None
    times = {name: [] for name in FEEDS}
    for _ in range(args.repeats):
        for name, feed in FEEDS.items():
            done = subprocess.run([sys.executable, __file__, "--data", args.data, "--width",
                                   str(args.width), "--steps", str(args.steps), "--one", feed],
                                  capture_output=True, text=True, check=True)
            times[name].append(float(done.stdout.split("ms/step ")[-1]))
    base = min(times[next(iter(FEEDS))])
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    print(f"ResNet-10 width {args.width}, batch 128, {args.steps} steps of real FER2013 "
          f"Training faces, {os.cpu_count()} CPU cores, {backend} backend, each run in its own "
          f"process; best of {args.repeats} (all: ms/step)")
    print("| feed | ms/step | all runs | speed against the baseline |")
    print("|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {min(values):.0f} | {', '.join(f'{v:.0f}' for v in values)} | "
              f"{base / min(values):.2f}x |")
    return times


def step_ms(args):
    """Milliseconds a training step takes, fed the ``args.one`` way (warm-up epoch excluded)."""
    import keras

    from kemo._batches import _Shuffled
    from kemo.datasets import load_fer2013
    from kemo.models import ResNet10
    from kemo.training import RECIPES, _optimizer, _trainer, as_model_input

    recipe = dataclasses.replace(RECIPES["kemo"], warmup_epochs=1)
    n = args.steps * recipe.batch_size
    train = load_fer2013(args.data, subset="Training")
    x = as_model_input(train.images[:n]) / 255.0
    y = keras.utils.to_categorical(train.labels[:n], 7).astype("float32")

    class Fed(keras.utils.PyDataset):
        """The same seeded batches as a PyDataset: how fit_classifier fed Keras before."""

        def __init__(self, batches):
            super().__init__()
            self.batches, self.epoch = batches, 0

        def __len__(self):
            return len(self.batches)

        def on_epoch_begin(self):
            self.batches.start(self.epoch)
            self.epoch += 1

        def __getitem__(self, index):
            return self.batches[index]

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.started

    trainer = _trainer(ResNet10(input_shape=x.shape[1:], width=args.width), recipe, seed=0)
    trainer.compile(optimizer=_optimizer(recipe, args.steps, 2),
                    loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    batches = _Shuffled(x, y, recipe.batch_size, seed=0)
    if args.one == "arrays":  # the whole second fit call: its own set-up counts against it
        batches.fit(trainer, 1, 0, verbose=0)
        start = time.perf_counter()
        batches.fit(trainer, 2, 1, verbose=0)
        seconds = time.perf_counter() - start
    else:  # one fit for both epochs, as before; the second epoch is timed
        clock = Clock()
        trainer.fit(Fed(batches), epochs=2, shuffle=False, callbacks=[clock], verbose=0)
        seconds = clock.seconds
    return 1000 * seconds / args.steps


if __name__ == "__main__":
    main()
