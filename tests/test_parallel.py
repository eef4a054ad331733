"""Batches on a Dask cluster (kemo.parallel, --scheduler): a real LocalCluster of 2 worker
processes gives the serial run's results and failures, survives a worker killed mid-batch, and
a bad scheduler address is one clear line."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from kemo import cli, parallel
from kemo.cli.common import recognizer_for
from kemo.cli.predict import Journal, settings_key
from kemo.recognizer import VideoEmotionRecognizer

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="mtcnn needs KERAS_BACKEND=tensorflow"
)
distributed = pytest.importorskip(
    "distributed", reason='Dask is an optional extra: pip install -e ".[dev,dask]"')

# the shortest CK+ clips (8 and 9 frames): with the non-video, five tasks for two workers
CLIPS = ["S055_006_fear.avi", "S106_004_disgust.avi", "S055_003_disgust.avi",
         "S125_007_surprise.avi"]
# the workers' TensorFlow thread count (kemo.parallel.connect threads=1), for the serial run:
# MTCNN's landmarks move by 1e-4 px with the thread count, enough to flip a pixel of an aligned
# face, so runs with different thread counts differ by up to 1e-4 in probability
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
              "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def batch(shared_data, tmp_path_factory):
    """Two clips, a file that is not a video, a missing one, and two clips, in that order."""
    folder = shared_data / "ckplus_emopy" / "videos"
    bad = tmp_path_factory.mktemp("bad") / "random.mp4"
    bad.write_bytes(np.random.default_rng(1).bytes(2048))
    clips = [str(folder / name) for name in CLIPS]
    return clips[:2] + [str(bad), str(bad.with_name("gone.avi"))] + clips[2:]


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes (1 thread each), as `--scheduler local:2` starts."""
    client = parallel.connect("local:2")
    yield client
    parallel.close(client)


@pytest.fixture(scope="module")
def serial(batch, tmp_path_factory):
    """`kemo predict --json` of the batch without a cluster, in a fresh one-thread process."""
    out = tmp_path_factory.mktemp("serial") / "serial.json"
    env = {**os.environ, **ONE_THREAD, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "kemo.cli", "predict", *batch, "--json",
                           str(out), "-q"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 1, f"two bad videos: status 1 expected: {done.stderr}"
    return json.loads(out.read_text()), done.stderr


def same_as_serial(document, serial):
    """Assert a `kemo predict --json` document matches the serial run's."""
    expected, _ = serial
    paths = [v["path"] for v in document["videos"]]
    assert paths == [v["path"] for v in expected["videos"]], (
        f"videos and their order differ from the serial run: {paths}")
    for got, want in zip(document["videos"], expected["videos"], strict=True):
        assert got["label"] == want["label"], f"{got['path']}: {got['label']} != {want['label']}"
        p = np.array(list(got["probabilities"].values()))
        q = np.array(list(want["probabilities"].values()))
        assert np.abs(p - q).max() <= 1e-5, f"{got['path']}: probabilities {p} != serial {q}"
    assert document["failures"] == expected["failures"], (
        f"failures differ from the serial run: {document['failures']} != {expected['failures']}")


def worker_counts(client):
    """``{worker: (objects set up, videos run)}`` of each worker process."""
    return client.run(lambda: (parallel.loads, parallel.runs))


def test_predict_on_two_workers_matches_serial(batch, client, serial, tmp_path, capsys):
    out = tmp_path / "cluster.json"
    before = worker_counts(client)
    status = cli.main(["predict", *batch, "--json", str(out), "-q",
                       "--scheduler", client.scheduler.address])
    err = capsys.readouterr().err
    assert status == 1, f"two bad videos: status 1 expected, got {status}: {err}"
    same_as_serial(json.loads(out.read_text()), serial)
    assert err.strip() == serial[1].strip(), f"failure report differs: {err!r} != {serial[1]!r}"
    assert not Path(f"{out}.partial").exists(), "journal left after a finished run"
    # each worker set up the recogniser (and loaded its models) once for all its videos
    after = worker_counts(client)
    assert len(after) == 2, f"expected 2 workers, got {after}"
    loads = {w: after[w][0] - before.get(w, (0, 0))[0] for w in after}
    runs = {w: after[w][1] - before.get(w, (0, 0))[1] for w in after}
    assert all(n <= 1 for n in loads.values()), f"models loaded more than once: {loads}"
    assert sum(runs.values()) == len(batch) - 1, (
        f"expected one task per existing file ({len(batch) - 1}), got {runs}")


def test_journal_resumes_on_the_cluster(batch, client, serial, tmp_path, capsys):
    # a killed run left clip 0 in the journal: the rerun takes it from there, runs clip 1
    out = tmp_path / "resumed.json"
    argv = ["predict", *batch[:2], "--json", str(out), "-q",
            "--scheduler", client.scheduler.address]
    args = cli.build_parser().parse_args(argv)
    journal = Journal(str(out), settings_key(recognizer_for(args), args))
    first = {**serial[0]["videos"][0], "resumed": True}  # marks the journal's copy
    journal.add(str(Path(batch[0]).resolve()), first["sha256"], first)
    before = worker_counts(client)
    status = cli.main(argv)
    err = capsys.readouterr().err
    after = worker_counts(client)
    assert status == 0, f"status 0 expected, got {status}: {err}"
    videos = json.loads(out.read_text())["videos"]
    assert [v.get("resumed", False) for v in videos] == [True, False], (
        f"clip 0 not taken from the journal, or clip 1 taken too: {videos}")
    assert videos[1]["label"] == serial[0]["videos"][1]["label"], f"clip 1: {videos[1]}"
    assert "1 of 2 videos taken from the unfinished run" in err, f"no resume notice: {err!r}"
    ran = sum(after[w][1] - before.get(w, (0, 0))[1] for w in after)
    assert ran == 1, f"only clip 1 should run on the cluster, {ran} videos ran"


def test_faces_and_features_on_the_cluster(batch, client, tmp_path, capsys):
    address = client.scheduler.address
    status = cli.main(["faces", batch[0], batch[2], "--out", str(tmp_path / "faces"), "-q",
                       "--scheduler", address])
    err = capsys.readouterr().err
    assert status == 1 and "random.mp4" in err, f"the non-video must be reported: {err!r}"
    index = (tmp_path / "faces" / "faces.csv").read_text().splitlines()[1:]
    pngs = list((tmp_path / "faces").glob("*.png"))
    assert index and len(pngs) == len(index), f"{len(pngs)} PNG files for {len(index)} rows"
    status = cli.main(["features", batch[0], batch[1], "--out", str(tmp_path / "f.npz"), "-q",
                       "--scheduler", address])
    assert status == 0, f"features failed: {capsys.readouterr().err}"
    with np.load(tmp_path / "f.npz") as data:
        assert list(data["paths"]) == batch[:2], f"paths out of order: {data['paths']}"
        assert data["aggregated"].shape[0] == 2, f"aggregated: {data['aggregated'].shape}"


def test_python_api_failures_match_serial(batch, client):
    videos = batch[:5]  # two clips, the non-video, the missing file, a clip
    rec = VideoEmotionRecognizer(errors="skip")
    with pytest.warns(RuntimeWarning, match="2 of 5 videos failed"):
        with parallel.using(client) as used:
            assert parallel.active() is used, "using() did not make the client active"
            remote = rec.predict(videos)
            remote_failures = rec.failures_
    assert parallel.active() is None, "the client stayed active after the block"
    with pytest.warns(RuntimeWarning, match="2 of 5 videos failed"):
        local = rec.predict(videos)
    assert list(remote) == list(local), f"labels {remote} != serial {local}"
    assert remote_failures == rec.failures_, (
        f"failures {remote_failures} != serial {rec.failures_}")


def test_worker_killed_mid_batch(batch, client, serial, tmp_path, capsys):
    out, cache = tmp_path / "killed.json", tmp_path / "cache"
    outcome = {}

    def kill_a_busy_worker():
        pids = client.run(os.getpid)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and "status" not in outcome:
            busy = [w for w, keys in client.processing().items() if keys]
            if busy and list(cache.glob("faces-*.npz")):  # a video done, others running
                outcome["pending"] = sum(len(k) for k in client.processing().values())
                os.kill(pids[busy[0]], signal.SIGKILL)
                outcome["killed"] = busy[0]
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    outcome["status"] = cli.main(["predict", *batch, "--json", str(out), "--cache", str(cache),
                                  "-q", "--scheduler", client.scheduler.address])
    killer.join()
    capsys.readouterr()
    assert "killed" in outcome, "the batch ended before a worker could be killed mid-batch"
    assert outcome["pending"] >= 1, f"nothing was running when the worker was killed: {outcome}"
    assert outcome["status"] == 1, f"two bad videos: status 1 expected: {outcome}"
    document = json.loads(out.read_text())
    paths = [v["path"] for v in document["videos"]]
    assert len(paths) == len(set(paths)) == len(batch) - 2, f"each video once expected: {paths}"
    same_as_serial(document, serial)


def test_shared_cache_two_writers_at_once(batch, client, tmp_path):
    from kemo.faces import VideoFaces

    cache = tmp_path / "shared"
    rec = VideoEmotionRecognizer()
    prep = rec.face_preprocessor().set_params(cache_dir=str(cache))
    # the same video on both workers at once: both write its cache file
    jobs = parallel.VideoMap(client, parallel.transform_faces, parallel.portable_faces(prep),
                             {0: batch[0], 1: batch[0]}, setup=parallel.fit)
    found = jobs.outcomes()
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 1 and files[0].endswith(".npz"), f"one cache file expected: {files}"
    cached = VideoFaces.load(cache / files[0])
    for i in (0, 1):
        assert np.array_equal(found[i].faces, cached.faces), f"writer {i}: cache differs"


@pytest.mark.parametrize("address", ["nowhere", "local:0", "local:two", "http://host:8786"])
def test_malformed_scheduler_is_a_usage_error(address, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["predict", "clip.avi", "--scheduler", address])
    err = capsys.readouterr().err
    assert exit_.value.code == 2, f"--scheduler {address}: status 2 expected, got {exit_.value}"
    assert err.count("\n") == 1 and "local:N" in err, f"not one line naming the forms: {err!r}"


def test_unreachable_scheduler_is_one_line(batch, capsys):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        status = cli.main(["predict", batch[0], "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert status == 1, f"status 1 expected, got {status}: {err}"
    assert err.count("\n") == 1, f"the error takes more than one line: {err!r}"
    assert err.startswith("kemo: error: cannot reach the Dask scheduler at tcp://127.0.0.1:9"), (
        f"unclear error: {err!r}")


def test_without_dask_the_error_says_how_to_install(batch, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    status = cli.main(["evaluate", str(Path(batch[0]).parent), "--scheduler", "local:1"])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1, f"one-line error expected: {status} {err!r}"
    assert 'pip install "kemo[dask]"' in err, f"no install hint: {err!r}"
