"""The `kemo` command line: help, exit codes, one-line errors, batches past bad files, resume,
and every subcommand on real CK+ clips."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from kemo import cli
from kemo.recognizer import VideoEmotionRecognizer

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="mtcnn needs KERAS_BACKEND=tensorflow"
)

SHORT = "S052_001_surprise.avi"  # 15 frames
TRAIN = {
    "S052_001_surprise.avi": "Surprise", "S052_004_happiness.avi": "Happy",
    "S055_001_surprise.avi": "Surprise", "S055_005_happiness.avi": "Happy",
    "S074_002_surprise.avi": "Surprise", "S074_005_happiness.avi": "Happy",
}
HELP = [[], ["predict"], ["faces"], ["features"], ["train"], ["train", "fer2013"],
        ["train", "videos"], ["evaluate"]]


def run_kemo(*args):
    """Run the command in a fresh process, as a user would."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "kemo.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def videos(shared_data):
    return shared_data / "ckplus_emopy" / "videos"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A face cache shared by the tests: each clip goes through MTCNN once."""
    return str(tmp_path_factory.mktemp("faces"))


@pytest.fixture
def bad(tmp_path):
    path = tmp_path / "random.mp4"
    path.write_bytes(np.random.default_rng(1).bytes(2048))
    return path


# ----------------------------------------------------------------------------- parser


@pytest.mark.parametrize("words", HELP, ids=lambda w: " ".join(w) or "kemo")
def test_help_everywhere(words):
    done = run_kemo(*words, "--help")
    assert done.returncode == 0, f"kemo {' '.join(words)} --help: {done.stderr}"
    assert done.stdout.startswith("usage: kemo"), f"usage first: {done.stdout[:80]}"


def test_help_imports_nothing_heavy():
    code = ("import sys\nfrom kemo.cli import main\ntry:\n    main(['predict', '--help'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'cv2', 'sklearn', 'numpy') "
            "if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stderr.strip() == "[]", f"--help imported {done.stderr.strip()}"


def test_usage_error_is_one_line():
    done = run_kemo("predict", "clip.avi", "--every", "0")
    assert done.returncode == 2, f"usage errors exit 2, got {done.returncode}"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--every" in lines[0], f"one line naming the option: {lines}"


# ----------------------------------------------------------------------------- predict


def test_bad_video_is_one_line_error(bad):
    done = run_kemo("predict", bad)
    assert done.returncode == 1, f"exit 1 on a bad video, got {done.returncode}"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, f"one line, no traceback or library chatter: {lines}"
    assert lines[0].startswith("kemo: error:") and bad.name in lines[0], lines[0]
    assert done.stdout == "", f"nothing on stdout: {done.stdout!r}"


def test_predict_batch_goes_on_past_bad_files(videos, bad, tmp_path, cache):
    missing = tmp_path / "missing.avi"
    out = tmp_path / "out.json"
    done = run_kemo("predict", videos / SHORT, bad, missing, "--json", out, "--csv", "-",
                    "--timeline", tmp_path / "timeline.csv", "--annotate", tmp_path / "ann",
                    "--cache", cache)
    assert done.returncode == 1, f"failures give exit 1: {done.stderr}"
    rows = list(csv.DictReader(done.stdout.splitlines()))
    assert len(rows) == 1 and rows[0]["path"].endswith(SHORT), f"CSV on stdout: {rows}"
    probs = [float(rows[0][name]) for name in VideoEmotionRecognizer().class_names_]
    assert abs(sum(probs) - 1) < 1e-4 and rows[0]["label"], f"7 probabilities: {rows[0]}"
    stderr = done.stderr.strip().splitlines()
    assert any(line.startswith(str(videos / SHORT)) and "(" in line for line in stderr), (
        f"the summary line goes to stderr when stdout holds the CSV: {stderr}")
    assert stderr[-3] == "kemo: 2 of 3 videos failed:", f"failures listed last: {stderr}"
    assert bad.name in stderr[-2] and missing.name in stderr[-1], stderr[-2:]
    document = json.loads(out.read_text())
    assert [v["path"] for v in document["videos"]] == [str(videos / SHORT)], "JSON videos"
    assert len(document["failures"]) == 2, f"JSON failures {document['failures']}"
    timeline = list(csv.DictReader((tmp_path / "timeline.csv").open()))
    assert len(timeline) == document["videos"][0]["faces_found"] == 15, "a row per face"
    assert (tmp_path / "ann" / "S052_001_surprise.annotated.mp4").stat().st_size > 0, "annotated"
    assert not list(tmp_path.glob("*.partial")), "the resume journal is removed at the end"


def test_predict_prints_a_label_per_video(videos, cache, capsys):
    clips = [videos / SHORT, videos / "S052_004_happiness.avi"]
    code = cli.main(["predict", *map(str, clips), "--quiet", "--cache", cache])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0, f"exit 0 on success, got {code}"
    assert len(out) == 2, f"one line per video: {out}"
    for line, clip in zip(out, clips, strict=True):
        head = line.split("  ")[0]
        assert head.startswith(f"{clip}: "), f"the line names the video: {line}"
        assert head.split(": ")[1].split(" (")[0] in VideoEmotionRecognizer().class_names_, line


def test_predict_resumes_after_a_kill(videos, cache, tmp_path, monkeypatch, capsys):
    clips = [str(videos / SHORT), str(videos / "S052_004_happiness.avi")]
    out = tmp_path / "out.json"
    real = VideoEmotionRecognizer.analyze
    calls = []

    def killed_on_second(self, video, tracks="main"):
        calls.append(str(video))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, video, tracks)

    monkeypatch.setattr(VideoEmotionRecognizer, "analyze", killed_on_second)
    assert cli.main(["predict", *clips, "--json", str(out), "-q", "--cache", cache]) == 130
    assert not out.exists(), "no half-written results file"
    journal = Path(f"{out}.partial")
    assert len(journal.read_text().splitlines()) == 1, "the finished video is journaled"

    calls.clear()
    monkeypatch.setattr(VideoEmotionRecognizer, "analyze",
                        lambda self, video, tracks="main": calls.append(str(video))
                        or real(self, video, tracks))
    assert cli.main(["predict", *clips, "--json", str(out), "-q", "--cache", cache]) == 0
    assert calls == [clips[1]], f"only the unfinished video is computed again: {calls}"
    assert "1 of 2 videos taken from the unfinished run" in capsys.readouterr().err
    document = json.loads(out.read_text())
    assert [v["path"] for v in document["videos"]] == clips, "both videos, in order"
    assert not journal.exists(), "the journal is removed once the results are written"


def test_predict_all_tracks(two_face_video, capsys):
    code = cli.main(["predict", str(two_face_video), "--tracks", "all", "--json", "-", "-q",
                     "--every", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    video = json.loads(captured.out)["videos"][0]
    assert len(video["tracks"]) == 2, f"two faces: {video['tracks']}"
    assert "  face " in captured.err, f"the second face is summarised: {captured.err}"


@pytest.fixture(scope="module")
def two_face_video(videos, tmp_path_factory):
    """A short AVI with two real faces side by side."""
    from kemo.video import read_frames, write_video

    _, left = read_frames(videos / SHORT, n=4)
    _, right = read_frames(videos / "S055_001_surprise.avi", n=4)
    frames = [np.hstack([cv2.resize(a, (320, 245)), cv2.resize(b, (320, 245))])
              for a, b in zip(left, right, strict=True)]
    return write_video(tmp_path_factory.mktemp("two") / "two.avi", frames, fps=10)


# ----------------------------------------------------------------------------- faces, features


def test_faces_command(videos, bad, tmp_path, capsys):
    out = tmp_path / "faces"
    code = cli.main(["faces", str(videos / SHORT), str(bad), "--out", str(out), "--size", "64",
                     "--gray", "--frames", "5", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "1 of 2 videos failed" in err, f"goes on past the bad file: {err}"
    rows = list(csv.DictReader((out / "faces.csv").open()))
    assert len(rows) == 5, f"5 sampled frames, one face each: {len(rows)}"
    image = cv2.imread(str(out / rows[0]["file"]), cv2.IMREAD_UNCHANGED)
    assert image.shape == (64, 64), f"aligned grey 64x64 PNG, got {image.shape}"
    assert float(rows[0]["w"]) > 100, f"box of the face in the frame: {rows[0]}"


def test_features_command(videos, cache, tmp_path):
    out = tmp_path / "feats.npz"
    clips = [videos / SHORT, videos / "S052_004_happiness.avi"]
    code = cli.main(["features", *map(str, clips), "--out", str(out), "-q", "--cache", cache])
    assert code == 0, "features of two clips"
    with np.load(out) as data:
        assert data["aggregated"].shape == (2, 1024), "mean + variance of 512-d fc1"
        offsets = data["offsets"]
        assert data["frame_fer2013_resnet10"].shape == (offsets[-1], 512), "frames stacked"
        assert offsets[1] == 15, f"15 frames in {SHORT}: {offsets}"
        assert data["paths"].tolist() == [str(c) for c in clips], "paths kept"


def test_features_needs_npz(videos, capsys):
    assert cli.main(["features", str(videos / SHORT), "--out", "x.csv"]) == 1
    assert "must name an .npz file" in capsys.readouterr().err, "one-line reason"


# ----------------------------------------------------------------------------- train, evaluate


def test_train_videos_then_evaluate_and_predict(videos, bad, cache, tmp_path, capsys):
    listing = tmp_path / "clips.csv"
    lines = ["path,label,group", *(f"{videos / n},{label},{n[:4]}" for n, label in
                                   TRAIN.items()), f"{bad},happy,S999"]
    listing.write_text("\n".join(lines) + "\n")
    model = tmp_path / "model"
    code = cli.main(["train", "videos", str(listing), "--out", str(model), "--cv", "2", "-q",
                     "--cache", cache])
    captured = capsys.readouterr()
    assert code == 1 and "1 of 7 videos failed" in captured.err, captured.err
    assert "trained on 6 videos of 2 classes (Happy, Surprise)" in captured.out, captured.out
    assert VideoEmotionRecognizer.load(model).is_trained, "a loadable model folder"

    report = tmp_path / "report"
    code = cli.main(["evaluate", str(listing), "--model", str(model), "--out", str(report),
                     "-q", "--cache", cache])
    captured = capsys.readouterr()
    assert code == 1, "the bad clip is listed as a failure"
    document = json.loads((report / "report.json").read_text())
    assert document["videos"] == 6 and 0.5 <= document["accuracy"] <= 1, document["accuracy"]
    assert "overall" in captured.out, f"the per-class table is printed: {captured.out}"
    assert cv2.imread(str(report / "confusion.png")) is not None, "confusion-matrix PNG"
    assert len(list(csv.DictReader((report / "predictions.csv").open()))) == 6, "predictions"

    code = cli.main(["predict", str(videos / SHORT), "--model", str(model), "-q",
                     "--cache", cache])
    line = capsys.readouterr().out
    assert code == 0 and ("Surprise (" in line or "Happy (" in line), line
    assert "Angry" not in line, f"the trained model has only its 2 classes: {line}"


def test_evaluate_pretrained_on_ckplus_folder(shared_data, cache, tmp_path, capsys):
    folder = tmp_path / "ck"
    folder.mkdir()
    for name in list(TRAIN)[:2]:  # a CK+-style folder: labels from the names
        (folder / name).symlink_to(shared_data / "ckplus_emopy" / "videos" / name)
    code = cli.main(["evaluate", str(folder), "-q", "--cache", cache])
    out = capsys.readouterr().out
    assert code == 0, "pretrained evaluation"
    assert "Neutral" in out and "overall" in out, f"the 7 FER classes: {out}"


def test_bad_list_is_one_line(tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text("a.avi,joy\n")
    assert cli.main(["evaluate", str(listing)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown label 'joy'" in err[0], err


def test_missing_model_is_one_line(videos, tmp_path, capsys):
    assert cli.main(["predict", str(videos / SHORT), "--model", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a kemo model folder" in err[0], err


@pytest.mark.slow
def test_train_fer2013_command(shared_data, tmp_path):
    run = tmp_path / "run"
    args = ["train", "fer2013", "--data", shared_data / "fer2013", "--epochs", "1",
            "--limit", "64", "--out", run, "-q"]
    done = run_kemo(*args)
    assert done.returncode == 0, done.stderr
    assert "PublicTest accuracy" in done.stdout, done.stdout
    assert (run / "fer2013_resnet10.weights.h5").is_file(), "exported weights"
    again = run_kemo(*args)
    assert again.returncode == 0 and "after 1 epochs" in again.stdout, "resumes, done"


@pytest.mark.slow
def test_ckplus_benchmark_script():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ckplus_videos.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    labelled = [line for line in done.stdout.splitlines() if line.startswith("    /")]
    assert len(labelled) == 40, "kemo predict printed a label for each of the 40 clips"
    pretrained = [line for line in done.stdout.splitlines() if line.startswith("pretrained")]
    fitted = [line for line in done.stdout.splitlines() if line.startswith("fitted")]
    assert pretrained and fitted, done.stdout
    accuracy = float(fitted[0].split("): ")[1].split(" %")[0])
    assert 100 / 6 < accuracy <= 100, f"fitted LOSO accuracy above chance: {fitted[0]}"
