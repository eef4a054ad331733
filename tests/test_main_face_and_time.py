"""The main face is one track (the one seen longest), results carry seconds, and the timeline
plot shows where no face was found: through the CLI and the API, on real CK+ faces."""

import csv
import json
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from kemo import cli
from kemo.plotting import plot_timeline
from kemo.recognizer import VideoEmotionRecognizer

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="mtcnn needs KERAS_BACKEND=tensorflow"
)

SHORT = "S052_001_surprise.avi"  # 15 frames
FPS = 10.0
N_FRAMES, PASSER_FROM = 9, 6  # the passer-by is in the last 3 frames only
GAP = range(5, 10)  # frames blanked in the clip with a gap


@pytest.fixture(scope="module")
def videos(shared_data):
    return shared_data / "ckplus_emopy" / "videos"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def passer_by(videos, tmp_path_factory):
    """A face seen in every frame (left), and a larger one in the last frames only (right)."""
    from kemo.video import read_frames, write_video

    _, main = read_frames(videos / SHORT, n=N_FRAMES)
    _, other = read_frames(videos / "S055_001_surprise.avi", n=N_FRAMES)
    frames = []
    for i, (a, b) in enumerate(zip(main, other, strict=True)):
        frame = np.full((320, 640, 3), 128, np.uint8)
        frame[:184, :240] = cv2.resize(a, (240, 184))
        if i >= PASSER_FROM:
            frame[:306, 240:] = cv2.resize(b, (400, 306))
        frames.append(frame)
    return write_video(tmp_path_factory.mktemp("passer") / "passer.avi", frames, fps=FPS)


def _predict(capsys, *args):
    code = cli.main(["predict", *map(str, args), "--json", "-", "-q", "--every", "1"])
    captured = capsys.readouterr()
    assert code == 0, f"predict succeeds: {captured.err}"
    return json.loads(captured.out)["videos"][0]


def test_main_face_is_the_track_seen_longest(passer_by, cache, tmp_path, capsys):
    timeline = tmp_path / "timeline.csv"
    main = _predict(capsys, passer_by, "--cache", cache, "--timeline", timeline)
    assert len(main["tracks"]) == 1, f"--tracks main gives one face: {main['tracks']}"
    face = main["tracks"][0]
    assert face["main"] is True, f"the main face is marked: {face}"
    assert face["frames"] == N_FRAMES, (
        f"the face seen in all {N_FRAMES} frames, not the larger one that comes late: {face}")
    assert all(step["box"][0] < 240 for step in face["timeline"]), (
        f"every box is the left face's: {[s['box'] for s in face['timeline']]}")

    every = _predict(capsys, passer_by, "--cache", cache, "--tracks", "all")
    marks = [(t["track"], t["main"], t["frames"]) for t in every["tracks"]]
    assert marks == [(face["track"], True, N_FRAMES),
                     (marks[-1][0], False, N_FRAMES - PASSER_FROM)], (
        f"--tracks all: the same main face first, with the same id, then the passer-by: {marks}")

    out = tmp_path / "faces"
    code = cli.main(["faces", str(passer_by), "--out", str(out), "--every", "1", "-q",
                     "--cache", cache])
    assert code == 0, f"faces succeeds: {capsys.readouterr().err}"
    rows = list(csv.DictReader((out / "faces.csv").open()))
    assert {int(r["track"]) for r in rows} == {face["track"]} and len(rows) == N_FRAMES, (
        f"kemo faces keeps the same face under the same track id: {rows}")


def test_json_and_timeline_csv_hold_seconds(passer_by, cache, tmp_path, capsys):
    timeline = tmp_path / "timeline.csv"
    video = _predict(capsys, passer_by, "--cache", cache, "--tracks", "all",
                     "--timeline", timeline)
    assert video["fps"] == FPS, f"the JSON holds the frame rate: {video['fps']}"
    for track in video["tracks"]:
        frames = [step["frame"] for step in track["timeline"]]
        times = [step["time"] for step in track["timeline"]]
        assert times == pytest.approx([f / FPS for f in frames]), (
            f"each frame's time in seconds: {list(zip(frames, times, strict=True))}")
        assert (track["start"], track["end"]) == pytest.approx(
            (frames[0] / FPS, (frames[-1] + 1) / FPS)), f"the face's first, last second: {track}"
        for segment in track["segments"]:
            assert segment["start"] == pytest.approx(segment["first_frame"] / FPS), (
                f"segments in seconds beside their frames: {segment}")
    rows = list(csv.DictReader(timeline.open()))
    assert [float(r["time"]) for r in rows] == pytest.approx(
        [int(r["frame"]) / FPS for r in rows]), "the timeline CSV has a time column"
    assert len(rows) == sum(len(t["timeline"]) for t in video["tracks"]), (
        "--timeline puts the same frames in the CSV and the JSON")


@pytest.fixture(scope="module")
def gap_analysis(videos, cache):
    """The analysis (all tracks) of a real clip whose frames 5..9 show no face."""
    from kemo.video import read_frames

    _, frames = read_frames(videos / SHORT)
    frames = frames.copy()
    frames[list(GAP)] = 128
    rec = VideoEmotionRecognizer()
    rec.set_params(faces=rec.face_preprocessor().set_params(cache_dir=cache, detect_every=1))
    return rec.analyze(frames, tracks="all")


def _spans(ax, fps):
    """(first, last) frame of each area and line drawn, the x axis being in seconds."""
    drawn = [p.vertices[:, 0] for c in ax.collections for p in c.get_paths()]
    drawn += [np.asarray(line.get_xdata(), float) for line in ax.lines]
    return sorted({(round(float(x.min()) * fps), round(float(x.max()) * fps)) for x in drawn})


def test_analysis_has_seconds_and_marks_the_main_face(gap_analysis):
    result = gap_analysis.to_dict(timeline=True)
    assert result["fps"] == 30.0, f"a frame array counts as 30 frames/s: {result['fps']}"
    frames = [step["frame"] for track in result["tracks"] for step in track["timeline"]]
    assert sorted(frames) == [f for f in range(15) if f not in GAP], (
        f"a face in every frame but the blank ones: {frames}")
    assert [t["main"] for t in result["tracks"]] == [True, False], (
        f"the face found again after the gap is another track; the first is the main one: "
        f"{result['tracks']}")


@pytest.mark.parametrize("stacked", [True, False])
def test_plot_timeline_takes_an_analysis(gap_analysis, stacked):
    main = gap_analysis.main
    ax = plot_timeline(gap_analysis, stacked=stacked).axes[0]
    assert ax.get_xlabel() == "time (s)", f"seconds on the x axis: {ax.get_xlabel()}"
    first, last = int(main.frame_indices[0]), int(main.frame_indices[-1])
    assert _spans(ax, 30) == [(first, last + 1)], (
        f"the main face at its real frames {first}..{last}: {_spans(ax, 30)}")
    assert ax.get_title().startswith(f"face {main.track_id}: "), ax.get_title()


@pytest.mark.parametrize("stacked", [True, False])
def test_plot_timeline_leaves_a_gap_where_no_face_was_found(gap_analysis, stacked):
    # the face's whole timeline: both pieces of it, before and after the blank frames
    tracks = sorted(gap_analysis.tracks, key=lambda t: t.frame_indices[0])
    proba = np.concatenate([t.frame_probabilities for t in tracks])
    times = np.concatenate([t.frame_indices for t in tracks]) / gap_analysis.fps
    ax = plot_timeline(proba, times, stacked=stacked).axes[0]
    assert _spans(ax, 30) == [(0, GAP[0]), (GAP[-1] + 1, 15)], (
        f"drawn in two pieces (in frames), blank where no face was found: {_spans(ax, 30)}")


# ----------------------------------------------------------------------------- random C3D

TRAIN = {"S052_001_surprise.avi": 5, "S052_004_happiness.avi": 3, "S055_001_surprise.avi": 5,
         "S055_005_happiness.avi": 3, "S074_002_surprise.avi": 5, "S074_005_happiness.avi": 3}


@pytest.fixture(scope="module")
def c3d_saved(videos, cache, tmp_path_factory):
    """A recogniser with a random C3D branch (seed drawn: random_state=None), and its folder."""
    paths = [videos / name for name in TRAIN]
    rec = VideoEmotionRecognizer(c3d={"size": 16}, cv=2, random_state=None)
    rec.set_params(faces=rec.face_preprocessor().set_params(cache_dir=cache))
    rec.fit(paths, list(TRAIN.values()))
    return rec, paths, rec.predict_proba(paths), rec.save(tmp_path_factory.mktemp("c3d") / "m")


def _rewrite(folder, change):
    """Edit a model folder's description as an older kemo (or a tamperer) would have left it."""
    from kemo.recognizer import MANIFEST, _checksum

    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.pop("checksum")
    change(manifest)
    manifest["checksum"] = _checksum(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_random_c3d_is_saved_as_its_seed(c3d_saved):
    rec, paths, proba, folder = c3d_saved
    files = sorted(f.name for f in folder.iterdir())
    assert "c3d.weights.h5" not in files, f"the random weights are not stored: {files}"
    size = sum(f.stat().st_size for f in folder.iterdir())
    weights = sum(w.size * 4 for w in rec.c3d_features_.feature_model_.get_weights())
    assert size < weights / 10, f"folder of {size} B, far smaller than the {weights} B weights"
    manifest = json.loads((folder / "kemo_model.json").read_text())
    assert manifest["c3d_random"]["seed"] == rec.c3d_seed_, f"the seed drawn is stored: {manifest}"
    loaded = VideoEmotionRecognizer.load(folder)
    np.testing.assert_array_equal(loaded.predict_proba(paths), proba,
                                  err_msg="the rebuilt C3D predicts as the trained model")


def test_folder_with_c3d_weights_still_loads(c3d_saved, tmp_path):
    import shutil

    from kemo.recognizer import _sha256

    rec, paths, proba, folder = c3d_saved
    old = Path(shutil.copytree(folder, tmp_path / "old"))
    rec.c3d_features_.feature_model_.save_weights(old / "c3d.weights.h5")

    def as_before(manifest):
        del manifest["c3d_random"]
        manifest["files"]["c3d.weights.h5"] = _sha256(old / "c3d.weights.h5")

    _rewrite(old, as_before)
    loaded = VideoEmotionRecognizer.load(old)
    np.testing.assert_array_equal(loaded.predict_proba(paths), proba,
                                  err_msg="a folder holding the C3D weights loads as before")
    again = loaded.save(tmp_path / "again")
    assert (again / "c3d.weights.h5").is_file(), (
        "weights of unknown seed are saved again, not replaced by a wrong seed")


def test_c3d_rebuilt_from_another_seed_is_refused(c3d_saved, tmp_path):
    import shutil

    from kemo.errors import WeightsError

    folder = Path(shutil.copytree(c3d_saved[3], tmp_path / "m"))
    _rewrite(folder, lambda m: m["c3d_random"].update(seed=m["c3d_random"]["seed"] + 1))
    with pytest.raises(WeightsError, match="differ from the ones the model was trained with"):
        VideoEmotionRecognizer.load(folder)
