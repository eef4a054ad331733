"""The `kemo` command line: help, exit codes, one-line errors, batches past bad files, resume,
and every subcommand on real CK+ clips."""

import csv
import json
import os
import re
import select
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from kemo import cli
from kemo.recognizer import VideoEmotionRecognizer
from kemo.video import Video
from kemo.weights import DEFAULT_WEIGHTS

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
        assert data[f"frame_{DEFAULT_WEIGHTS}"].shape == (offsets[-1], 512), "frames stacked"
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
    loaded = VideoEmotionRecognizer.load(model)
    assert loaded.is_trained, "a loadable model folder"
    assert [name for name, _, _ in loaded.members_] == ["agg", "scores"], "scores by default"

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


def test_train_videos_without_scores_branch(videos, cache, tmp_path):
    listing = tmp_path / "clips.csv"
    lines = ["path,label,group", *(f"{videos / n},{label},{n[:4]}" for n, label in
                                   TRAIN.items())]
    listing.write_text("\n".join(lines) + "\n")
    model = tmp_path / "model"
    assert cli.main(["train", "videos", str(listing), "--out", str(model), "--cv", "2", "-q",
                     "--cache", cache, "--no-scores"]) == 0
    rec = VideoEmotionRecognizer.load(model)
    assert rec.scores is False, "the option reaches the recogniser and its folder"
    assert [name for name, _, _ in rec.members_] == ["agg"], rec.members_


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
    assert len(labelled) == 80, ("kemo predict printed a label for each of the 40 clips, "
                                 "once with --pooling mean and once with the default")
    pretrained = [line for line in done.stdout.splitlines() if line.startswith("pretrained")]
    fitted = [line for line in done.stdout.splitlines() if line.startswith("fitted")]
    assert pretrained and fitted, done.stdout
    accuracy = float(re.search(r": ([\d.]+) % \(\d+/40\)", fitted[0]).group(1))
    assert 100 / 6 < accuracy <= 100, f"fitted LOSO accuracy above chance: {fitted[0]}"


# ----------------------------------------------------------------------------- first use


def _never(*args, **kwargs):
    raise AssertionError("no video may be analysed before the command line is checked")


def _lines(captured):
    return captured.strip().splitlines()


@pytest.fixture
def same_names(videos, tmp_path):
    """Two different clips that share one file name, in two folders."""
    links = []
    for folder, clip in (("a", SHORT), ("b", "S052_004_happiness.avi")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "clip.avi").symlink_to(videos / clip)
        links.append(tmp_path / folder / "clip.avi")
    return links


def test_annotate_folder_keeps_every_video(same_names, cache, tmp_path, capsys):
    out, folder = tmp_path / "out.json", tmp_path / "new" / "annotated"
    code = cli.main(["predict", *map(str, same_names), "--annotate", str(folder), "--json",
                     str(out), "-q", "--cache", cache])
    assert code == 0, capsys.readouterr().err
    written = sorted(p.name for p in folder.iterdir())
    assert written == ["clip.annotated.mp4", "clip_2.annotated.mp4"], (
        f"one annotated video per input, none overwritten: {written}")
    document = json.loads(out.read_text())
    assert [v["annotated"] for v in document["videos"]] == [
        str(folder / "clip.annotated.mp4"), str(folder / "clip_2.annotated.mp4")], (
        f"the JSON names each video's own file: {document['videos']}")
    frames = []
    for name in written:
        with Video(folder / name) as video:
            frames.append(video.frame_count)
    assert frames == [r["frames_read"] for r in document["videos"]], (
        f"each file holds its own video's frames: {frames}")


@pytest.mark.parametrize("target", ["new.mp4", "out.xyz", "taken"])
def test_annotate_target_is_checked_before_any_work(target, same_names, tmp_path, monkeypatch,
                                                    capsys):
    monkeypatch.setattr(VideoEmotionRecognizer, "analyze", _never)
    (tmp_path / "taken").write_text("a file, not a folder")
    given = tmp_path / target
    code = cli.main(["predict", *map(str, same_names), "--annotate", str(given), "-q"])
    err = _lines(capsys.readouterr().err)
    assert code == 1 and len(err) == 1, f"exit 1 with one line: {code} {err}"
    assert f"--annotate {given}" in err[0], f"the message names the user's target: {err}"
    assert not any(p.name.startswith(("new", "out")) for p in tmp_path.iterdir()), (
        f"nothing was created: {sorted(p.name for p in tmp_path.iterdir())}")


def test_one_file_for_one_video_and_unwritable_types(videos, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(VideoEmotionRecognizer, "analyze", _never)
    code = cli.main(["predict", str(videos / SHORT), "--annotate", str(tmp_path / "x.webm")])
    err = capsys.readouterr().err
    assert code == 1 and "cannot write .webm videos" in err, f"told before any work: {err}"


def test_failed_annotation_keeps_the_prediction(videos, cache, tmp_path, monkeypatch, capsys):
    from kemo.errors import VideoWriteError
    from kemo.recognizer import VideoAnalysis

    def disk_full(self, path, fps=None):
        raise VideoWriteError(f"{path}: no space left on device")

    monkeypatch.setattr(VideoAnalysis, "annotate", disk_full)
    out = tmp_path / "out.json"
    code = cli.main(["predict", str(videos / SHORT), "--annotate", str(tmp_path / "a.mp4"),
                     "--json", str(out), "-q", "--cache", cache])
    err = capsys.readouterr().err
    assert code == 1, "a video that could not be drawn counts as a failure"
    assert "annotated video not written" in err and "a.mp4: no space left" in err, err
    videos_done = json.loads(out.read_text())["videos"]
    assert [v["path"] for v in videos_done] == [str(videos / SHORT)], (
        f"the prediction is kept: {videos_done}")


def test_sigterm_cleans_up_like_ctrl_c(videos, cache, tmp_path, monkeypatch, capsys):
    import kemo.video

    real = kemo.video.write_video

    def terminated_midway(path, frames, **kwargs):
        def frames_then_sigterm():
            for i, frame in enumerate(frames):
                if i == 3:  # as `kill PID` or a job scheduler would
                    os.kill(os.getpid(), signal.SIGTERM)
                yield frame
        return real(path, frames_then_sigterm(), **kwargs)

    monkeypatch.setattr(kemo.video, "write_video", terminated_midway)
    before = signal.getsignal(signal.SIGTERM)
    out, folder = tmp_path / "out.json", tmp_path / "annotated"
    code = cli.main(["predict", str(videos / SHORT), "--annotate", str(folder), "--json",
                     str(out), "-q", "--cache", cache])
    assert code == 143, f"128 + SIGTERM, got {code}"
    assert "kemo: terminated" in capsys.readouterr().err, "said on standard error"
    assert list(folder.iterdir()) == [], f"no partly written video: {list(folder.iterdir())}"
    assert not out.exists(), "no half-written results"
    assert signal.getsignal(signal.SIGTERM) == before, "the caller's SIGTERM handler is back"


def _run_on_terminal(args, timeout=300):
    """Run `kemo ARGS` with standard output and error on a pseudo-terminal; return the text."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    # a new terminal is 0 columns wide, where tqdm draws nothing: give it 40 rows of 150
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "kemo.cli", *map(str, args)],
                            stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while select.select([master], [], [], timeout)[0]:
        try:
            data = os.read(master, 1 << 16)
        except OSError:  # the process closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    proc.wait(timeout=60)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


def test_predict_shows_frames_and_prints_results_above_the_bars(videos, tmp_path):
    clips = [videos / SHORT, videos / "S052_004_happiness.avi"]
    code, text = _run_on_terminal(["predict", *clips, "--frames", "8"])
    assert code == 0, text[-2000:]
    # the terminal sends a newline as "\r\n"; tqdm moves between bars with escape sequences
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).replace("\r\n", "\n")
    assert re.search(r"S052_004_happiness\.avi: +\d+%\|.*\| *\d/8 ", plain), (
        f"a bar over each video's frames (8 sampled): {plain[-1500:]!r}")
    # a line as a person reads it: what follows the last carriage return
    shown = [line.split("\r")[-1] for line in plain.split("\n")]
    for clip in clips:
        assert any(line.startswith(f"{clip}: ") for line in shown), (
            f"{clip.name}'s result starts its own line, not the end of a bar: {shown}")


def test_no_progress_bars_in_logs(videos, cache, tmp_path):
    listing = tmp_path / "clips.csv"
    listing.write_text("".join(f"{videos / n},{label}\n" for n, label in list(TRAIN.items())[:4]))
    for args in (["evaluate", listing], ["train", "videos", listing, "--out", tmp_path / "m",
                                         "--cv", "2"]):
        done = run_kemo(*args, "--cache", cache)  # standard error is a pipe, as in a log
        assert done.returncode == 0, done.stderr
        assert "\r" not in done.stderr and "%|" not in done.stderr, (
            f"kemo {args[0]} drew progress bars into a log: {done.stderr[-500:]!r}")


def test_predict_takes_a_folder(videos, cache, tmp_path, capsys):
    folder = tmp_path / "clips"
    (folder / "more").mkdir(parents=True)
    (folder / SHORT).symlink_to(videos / SHORT)
    (folder / "more" / "S052_004_happiness.avi").symlink_to(videos / "S052_004_happiness.avi")
    (folder / "notes.txt").write_text("not a video")
    code = cli.main(["predict", str(folder), "-q", "--cache", cache])
    heads = [line.split(": ")[0] for line in _lines(capsys.readouterr().out)]
    assert code == 0, "a folder of videos is accepted"
    assert heads == [str(folder / SHORT), str(folder / "more" / "S052_004_happiness.avi")], (
        f"its videos, sub-folders included, in name order: {heads}")


def test_folder_without_videos_is_one_line(tmp_path, capsys):
    assert cli.main(["predict", str(tmp_path)]) == 1, "exit 1"
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and f"{tmp_path} is a folder with no video" in err[0], err


def test_missing_video_is_reported_before_tensorflow_loads(tmp_path):
    missing = tmp_path / "missing.avi"
    code = ("import sys\nfrom kemo.cli import main\n"
            f"status = main(['predict', {str(missing)!r}])\n"
            "print(status, 'tensorflow' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert _lines(done.stderr) == [f"kemo: error: {missing}: no such file", "1 False"], (
        f"the error, and TensorFlow never loaded: {done.stderr}")


@pytest.mark.parametrize("command", [["evaluate"], ["train", "videos"]])
def test_a_video_is_not_a_list(command, videos, tmp_path, capsys):
    clip = videos / SHORT
    extra = ["--out", str(tmp_path / "m")] if command[0] == "train" else []
    assert cli.main([*command, str(clip), *extra]) == 1, "exit 1"
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1, f"one line: {err}"
    assert f"{clip} is a video, not a list: {' '.join(command)} needs labelled videos" in err[0], (
        err)
    assert "path,label" in err[0] and "folder" in err[0], f"the three forms are given: {err}"


def test_a_binary_file_is_not_a_list(shared_data, capsys):
    npz = shared_data / "ckplus_emopy" / "ckplus_emopy_sequences_halfres.npz"
    assert cli.main(["evaluate", str(npz)]) == 1, "exit 1"
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and f"{npz} is not a text file" in err[0], err
    assert "codec" not in err[0], f"no decoding error: {err}"


def test_a_folder_of_photos_is_not_labelled_videos(shared_data, capsys):
    assert cli.main(["evaluate", str(shared_data / "faces")]) == 1, "exit 1"
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "holds no emotion folder and no CK+ clip" in err[0], err
    assert "fer2013" not in err[0], f"the three forms, not the KEMO_DATA layout: {err}"


def test_train_checks_class_sizes_before_finding_faces(videos, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(VideoEmotionRecognizer, "_find_faces", _never)
    listing = tmp_path / "clips.csv"
    listing.write_text(f"{videos / SHORT},surprise\n{videos / 'S055_001_surprise.avi'},5\n"
                       f"{videos / 'S052_004_happiness.avi'},happy\n")
    code = cli.main(["train", "videos", str(listing), "--out", str(tmp_path / "m"), "-q"])
    err = _lines(capsys.readouterr().err)
    assert code == 1 and len(err) == 1, f"exit 1, one line: {err}"
    assert "class Happy has 1 video(s)" in err[0], f"the class by name: {err}"
    assert "--cv 3" in err[0] and "--calibration softmax" in err[0], f"CLI options: {err}"
    assert "cv=" not in err[0] and "np." not in err[0], f"no Python spellings: {err}"
    assert not (tmp_path / "m").exists(), "no model folder"


def test_no_face_hint_names_an_existing_option(shared_data, capsys):
    photo = shared_data / "faces" / "mtcnn_no_faces.jpg"  # a still image opens as one frame
    assert cli.main(["predict", str(photo)]) == 1, "exit 1"
    err = capsys.readouterr().err
    assert "--min-face-size" in err, f"the hint names the CLI option: {err}"
    assert "--min-face-size" in run_kemo("predict", "--help").stdout, "and the option exists"


def test_small_face_size_option(shared_data, tmp_path, capsys):
    """`kemo faces --tracks all` on a 1280x720 still of six faces 15-24 pixels wide."""
    photo = cv2.imread(str(shared_data / "faces" / "facenet_multiface.jpg"))
    small = cv2.resize(photo, None, fx=0.22, fy=0.22, interpolation=cv2.INTER_AREA)
    frame = np.full((720, 1280, 3), 90, np.uint8)
    frame[200:200 + small.shape[0], 400:400 + small.shape[1]] = small
    still = tmp_path / "crowd.png"
    cv2.imwrite(str(still), frame)
    counts = {}
    for option in ([], ["--small-face-size", "off"]):
        out = tmp_path / f"faces{len(option)}"
        assert cli.main(["faces", str(still), "--out", str(out), "--tracks", "all", "-q",
                         *option]) == 0
        with open(out / "faces.csv") as index:
            counts[" ".join(option)] = len(list(csv.DictReader(index)))
    assert counts == {"": 6, "--small-face-size off": counts["--small-face-size off"]}
    assert 0 < counts["--small-face-size off"] < 6, f"without the second look, fewer: {counts}"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["faces", str(still), "--out", str(tmp_path / "x"), "--small-face-size", "tiny"])
    assert exit_.value.code == 2
    assert "--small-face-size" in capsys.readouterr().err


# ----------------------------------------------------------------------------- trained face model


@pytest.mark.parametrize("option", [["--width", "0"], ["--width", "5"], ["--stem", "tiny"],
                                    ["--shift", "-0.1"]])
def test_train_fer2013_refuses_bad_shapes_and_crops(option, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "fer2013", "--data", str(tmp_path), *option])
    assert exit_.value.code == 2
    assert option[0] in capsys.readouterr().err, "the message names the option"


@pytest.fixture(scope="module")
def fer_run(shared_data, tmp_path_factory):
    """A (tiny) `kemo train fer2013` run: its folder and the command's last output line."""
    import io
    from contextlib import redirect_stdout

    run = tmp_path_factory.mktemp("fer") / "run"
    printed = io.StringIO()
    with redirect_stdout(printed):
        # a narrow full-stem net without random crops: the shape travels with the export
        code = cli.main(["train", "fer2013", "--data", str(shared_data / "fer2013"),
                         "--epochs", "1", "--limit", "64", "--out", str(run), "-q",
                         "--width", "0.5", "--stem", "full", "--shift", "0", "--zoom", "0"])
    assert code == 0, printed.getvalue()
    return run, _lines(printed.getvalue())[-1]


def test_train_fer2013_says_how_to_use_the_model(fer_run):
    run, last = fer_run
    recipe = json.loads((run / "state.json").read_text())["recipe"]
    assert (recipe["shift"], recipe["zoom"], recipe["rotation"]) == (0.0, 0.0, 10.0), recipe
    weights = run / "fer2013_resnet10.weights.h5"
    assert f"kemo predict VIDEO --weights {weights}" in last, f"the last line says how: {last}"
    assert f"VideoEmotionRecognizer(weights='{weights}')" in last, f"and from Python: {last}"


@pytest.mark.parametrize("name", ["fer2013_resnet10.weights.h5", "best.keras"])
def test_predict_with_a_trained_face_model(name, fer_run, videos, cache, capsys):
    model = fer_run[0] / name
    code = cli.main(["predict", str(videos / SHORT), "--weights", str(model), "--json", "-",
                     "-q", "--cache", cache])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["model"] == str(model), f"the JSON names the model: {document['model']}"
    mine = list(document["videos"][0]["probabilities"].values())
    api = VideoEmotionRecognizer(weights=str(model)).predict_proba([videos / SHORT])[0]
    assert np.allclose(mine, api, atol=1e-5), f"CLI {mine} and Python {api} agree"
    shipped = VideoEmotionRecognizer().predict_proba([videos / SHORT])[0]
    assert np.abs(api - shipped).max() > 1e-3, "the run's model, not the shipped one, was used"


def test_a_training_run_is_not_a_model_folder(fer_run, videos, capsys):
    run = fer_run[0]
    assert cli.main(["predict", str(videos / SHORT), "--model", str(run)]) == 1, "exit 1"
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and f"--weights {run / 'fer2013_resnet10.weights.h5'}" in err[0], (
        f"the error says what to pass instead: {err}")
