"""A batch killed midway (SIGKILL, no chance to clean up) resumes and loses nothing.

Two batches over real CK+ clips, each started in a child process and killed as soon as its
first result is on disk:

* :class:`kemo.FacePreprocessor` with ``cache_dir``: the rerun loads the finished videos from
  the cache (their files are not rewritten, and MTCNN runs only on the frames of the unfinished
  videos), and every cache file is complete;
* ``kemo predict ... --json FILE``: the rerun takes the finished videos from the journal
  ``FILE.partial`` and writes the complete results; no half-written ``FILE`` ever exists.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from kemo.faces import FacePreprocessor, VideoFaces

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="mtcnn needs KERAS_BACKEND=tensorflow"
)

# The eight shortest CK+ clips (8 to 11 frames each).
CLIPS = ("S055_006_fear", "S106_004_disgust", "S055_003_disgust", "S125_007_surprise",
         "S111_006_anger", "S125_008_disgust", "S132_008_surprise", "S106_006_happiness")
# Four sampled frames per video, MTCNN on each: the detector runs exactly 4 times per video.
SETTINGS = {"out_size": 48, "grayscale": True, "detect_every": 1, "n_frames": 4}

FACES_CHILD = """
import sys
from kemo.faces import FacePreprocessor
FacePreprocessor(cache_dir=sys.argv[1], **{settings}).fit().transform(sys.argv[2:])
"""


@pytest.fixture(scope="module")
def clips(shared_data):
    folder = shared_data / "ckplus_emopy" / "videos"
    return [str(folder / f"{name}.avi") for name in CLIPS]


def start(args):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def kill_when(process, ready, timeout=240):
    """SIGKILL ``process`` as soon as ``ready()`` is true; fail if it ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"the batch ended (exit {process.returncode}) before it could be "
                        f"killed:\n{process.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, "no result appeared in time"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, f"killed by SIGKILL: {process.returncode}"


def test_face_cache_batch_resumes_after_kill(clips, tmp_path):
    cache = tmp_path / "cache"
    child = start(["-c", FACES_CHILD.format(settings=SETTINGS), str(cache), *clips])
    kill_when(child, lambda: any(cache.glob("faces-*.npz")))

    finished = sorted(cache.glob("faces-*.npz"))
    assert 0 < len(finished) < len(clips), f"killed midway: {len(finished)} of {len(clips)}"
    for path in finished:  # complete files only: each loads and holds a face per frame
        faces = VideoFaces.load(path)
        assert len(faces) == faces.frames_read > 0, f"{path.name} is incomplete: {faces}"
    stamps = {path: path.stat().st_mtime_ns for path in finished}

    prep = FacePreprocessor(cache_dir=cache, **SETTINGS).fit()
    results = prep.transform(clips)
    # Videos are processed in order, so the finished ones are the first len(finished).
    todo = clips[len(finished):]
    assert prep.detector_.calls == 4 * len(todo), (
        f"MTCNN ran on {prep.detector_.calls} frames; only the 4 sampled frames of each of "
        f"the {len(todo)} unfinished videos needed it")
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items()), "finished files rewritten"
    assert len(list(cache.glob("faces-*.npz"))) == len(clips), "one cache file per video"
    assert [r.source for r in results] == clips, "results for every video, in order"
    assert all(len(r) == 4 for r in results), f"a face per frame: {[len(r) for r in results]}"
    fresh = FacePreprocessor(**SETTINGS).fit().transform(clips[:1])[0]
    np.testing.assert_array_equal(results[0].faces, fresh.faces,
                                  err_msg="a resumed (cached) video equals a fresh computation")


@pytest.mark.slow  # two command starts (TensorFlow, MTCNN, the model): 25 to 60 s here
def test_kemo_predict_batch_resumes_after_kill(clips, tmp_path):
    out = tmp_path / "results.json"
    journal = Path(f"{out}.partial")
    command = ["-m", "kemo.cli", "predict", *clips, "--json", str(out), "-q", "--frames", "6"]

    def journaled():
        return journal.is_file() and journal.read_text().endswith("\n")

    kill_when(start(command), journaled)
    assert not out.exists(), "no results file may exist before the batch is complete"
    lines = journal.read_text().splitlines()
    done = [json.loads(line) for line in lines]  # every flushed line is complete JSON
    assert 0 < len(done) < len(clips), f"killed midway: {len(done)} of {len(clips)} journaled"

    rerun = start(command)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, f"the rerun succeeds: {stderr[-2000:]}"
    assert f"{len(done)} of {len(clips)} videos taken from the unfinished run" in stderr, stderr
    document = json.loads(out.read_text())
    assert [v["path"] for v in document["videos"]] == clips, "every video, in order"
    assert not document["failures"], f"no failures: {document['failures']}"
    for item, video in zip(done, document["videos"][: len(done)], strict=True):
        assert item["result"]["probabilities"] == video["probabilities"], (
            f"{video['path']}: the journaled result is the one reported")
    assert not journal.exists(), "the journal is removed once the results are written"
