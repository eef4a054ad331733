"""Atomic writes and the removal of what killed writers leave behind (kemo._files)."""

import os
import subprocess
import sys
import time

import keras
import pytest

from kemo import _files
from kemo._files import atomic_path, remove_stale, write_atomic


@pytest.fixture(scope="module")
def dead_pid():
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def leftover(folder, target, pid, age):
    """A temporary file as atomic_path names it, last written ``age`` seconds ago."""
    path = folder / f".{target}.{pid}-0123abcd.tmp"
    path.write_bytes(b"half a file")
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "result.json"
    write_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old", "a failed write leaves the target as it was"
    with atomic_path(target, ".keras") as tmp:
        assert tmp.name.endswith(".keras") and tmp.parent == target.parent, tmp
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"], (
        "no temporary file is left, after a failure or a success")


def test_remove_stale_spares_live_fresh_and_foreign_files(tmp_path, dead_pid):
    stale = leftover(tmp_path, "a.npz", dead_pid, age=2 * _files.STALE_AFTER)
    fresh = leftover(tmp_path, "b.npz", dead_pid, age=1)
    live = leftover(tmp_path, "c.npz", os.getpid(), age=2 * _files.STALE_AFTER)
    foreign = tmp_path / ".user.tmp"
    foreign.write_text("not ours")
    assert remove_stale(tmp_path) == 1
    assert not stale.exists(), "a dead writer's old file goes"
    assert fresh.exists(), "a recent file may belong to a writer on another machine"
    assert live.exists(), "a running writer's file stays"
    assert foreign.exists(), "files atomic_path did not name are never touched"


def test_face_cache_removes_a_killed_writers_file(shared_data, tmp_path, dead_pid):
    from kemo.faces import FacePreprocessor

    if keras.backend.backend() != "tensorflow":
        pytest.skip("mtcnn needs KERAS_BACKEND=tensorflow")
    clip = shared_data / "ckplus_emopy" / "videos" / "S055_006_fear.avi"
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = leftover(cache, "faces-0000.npz", dead_pid, age=2 * _files.STALE_AFTER)
    prep = FacePreprocessor(cache_dir=cache, out_size=48, grayscale=True, n_frames=2).fit()
    prep.transform([str(clip)])
    names = sorted(p.name for p in cache.iterdir())
    assert len(names) == 1 and names[0].startswith("faces-") and names[0].endswith(".npz"), (
        f"the cache holds the new result and nothing else: {names}")
    assert not stale.exists()


def test_training_run_folder_is_swept(tmp_path, dead_pid):
    import numpy as np

    from kemo.training import Recipe, fit_classifier

    stale = leftover(tmp_path, "last.keras", dead_pid, age=2 * _files.STALE_AFTER)
    x = np.random.default_rng(0).random((8, 8, 8, 1), dtype=np.float32)
    y = np.arange(8) % 2

    def build():
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                 keras.layers.Dense(2, activation="softmax")])

    fit_classifier(build, x, y, x, y, recipe=Recipe(learning_rate=0.1, batch_size=4),
                   epochs=1, checkpoint_dir=tmp_path, verbose=0)
    assert not stale.exists(), "a resumed or new run clears its folder's leftovers"
    assert {"last.keras", "best.keras", "state.json"} <= {p.name for p in tmp_path.iterdir()}
