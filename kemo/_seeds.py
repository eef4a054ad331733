"""Seeding Keras models from a ``random_state`` without touching the global generators.

Keras draws the seed of every initializer, dropout and random layer created without an
explicit one from Python's ``random`` module (``keras.random.SeedGenerator``). Seeding that
module only while the layers are built, and restoring its state afterwards, makes a model
reproducible from its ``random_state`` and leaves the caller's Python, NumPy and backend
generators as they were (scikit-learn's contract; ``keras.utils.set_random_seed`` resets all
of them).
"""

import contextlib
import random

from sklearn.utils import check_random_state


def integer_seed(random_state):
    """An integer seed from ``random_state`` (``None``, an int or a ``numpy.random.RandomState``).

    An int gives itself, so a given ``random_state=0`` always builds the same model; ``None``
    draws from NumPy's global generator and a ``RandomState`` from itself, as scikit-learn does.
    """
    if isinstance(random_state, int) and not isinstance(random_state, bool):
        return random_state
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


@contextlib.contextmanager
def keras_seed(seed):
    """Build Keras layers inside this block to seed them with ``seed``; global state is restored."""
    saved = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved)
