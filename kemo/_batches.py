"""Training batches in a seeded order, handed to Keras one epoch at a time.

What :func:`kemo.training.fit_classifier` and the LSTM (:mod:`kemo.temporal`) train on: each
epoch's batches come from ``(seed, epoch)`` alone, so a resumed run sees the same ones as an
uninterrupted run, and reach Keras as two arrays, one ``fit`` an epoch
(``benchmarks/training_feed.py`` measures why: a ``keras.utils.PyDataset`` took 2.2x as long
a step on 2 CPU cores).
"""

# ruff: noqa: E402 - TensorFlow is started quietly before Keras is imported
from kemo._tensorflow import import_quietly

import_quietly()

import keras
import numpy as np


class _Shuffled:
    """Training batches in an order fixed by ``(seed, epoch)``.

    An interrupted run resumed at epoch ``e`` sees the same orders from ``e`` on as the
    uninterrupted run, without seeding any global generator. With ``x_alt`` (a second
    version of every image, e.g. as kemo's aligner cuts it), each image of a batch is drawn
    from either version with equal chance. With ``mixup`` or ``cutmix`` (Beta parameters;
    a batch takes one of them with equal chance when both are set), each image is mixed with
    another of its batch, blended (mixup, Zhang et al. 2018) or with a pasted rectangle
    (cutmix, Yun et al. 2019), and so are the targets, in the proportion of the mix.
    """

    def __init__(self, x, y, batch_size, seed, x_alt=None, mixup=0.0, cutmix=0.0):
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.x_alt = x_alt
        self.mixup, self.cutmix = mixup, cutmix
        self.start(0)

    def order(self, epoch):
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.x))

    def __len__(self):
        return int(np.ceil(len(self.x) / self.batch_size))

    def start(self, epoch):
        """Make ``self[i]`` give the batches of ``epoch`` (0-based)."""
        self._order, self._epoch = self.order(epoch), epoch

    def epoch_arrays(self, epoch):
        """The batches of ``epoch`` (0-based), in order, joined into two arrays."""
        self.start(epoch)
        xs, ys = zip(*(self[i] for i in range(len(self))), strict=True)
        return np.concatenate(xs), np.concatenate(ys)

    def fit(self, model, epochs, initial_epoch=0, **options):
        """Train ``model`` (compiled) on these batches, from ``initial_epoch`` to ``epochs``.

        One ``model.fit`` per epoch, on that epoch's batches as arrays (:meth:`epoch_arrays`),
        in their order (the module docstring says why not a PyDataset). ``options`` go to
        every ``model.fit`` call (so callbacks see ``on_train_begin`` and ``on_train_end``
        every epoch).

        Returns:
            dict: the Keras history of all the epochs, one list per metric.
        """
        history = {}
        callbacks = [*options.pop("callbacks", ()), _Progress(epochs)]
        for epoch in range(initial_epoch, epochs):
            x, y = self.epoch_arrays(epoch)
            done = model.fit(x, y, batch_size=self.batch_size, shuffle=False, epochs=epoch + 1,
                             initial_epoch=epoch, callbacks=callbacks, **options)
            for name, values in done.history.items():
                history.setdefault(name, []).extend(values)
        return history

    def __getitem__(self, index):
        rows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        x = self.x[rows]
        if self.x_alt is not None:
            pick = np.random.default_rng([self.seed, self._epoch, index]).random(len(rows)) < 0.5
            x[pick] = self.x_alt[rows[pick]]
        y = self.y[rows]
        if self.mixup or self.cutmix:
            x, y = self._mix(x, y, np.random.default_rng([self.seed, self._epoch, index, 1]))
        return x, y

    def _mix(self, x, y, rng):
        cut = bool(self.cutmix) and (not self.mixup or rng.random() < 0.5)
        lam = rng.beta(*(2 * [self.cutmix if cut else self.mixup]))
        other = rng.permutation(len(x))
        if cut:
            height, width = x.shape[1:3]
            side = np.sqrt(1.0 - lam)  # the pasted box covers 1 - lam of the image
            h, w = int(round(height * side)), int(round(width * side))
            top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
            x[:, top:top + h, left:left + w] = x[other, top:top + h, left:left + w]
            lam = 1.0 - h * w / (height * width)
        else:
            x = lam * x + (1.0 - lam) * x[other]
        return x, (lam * y + (1.0 - lam) * y[other]).astype(y.dtype)


class _Progress(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, counting the epochs of a whole run fed one epoch per ``fit``."""

    def __init__(self, epochs):
        super().__init__()
        self.total = epochs

    def set_params(self, params):
        super().set_params({**params, "epochs": self.total})
