"""Temporal pooling and emotion segments: synthetic timelines with known answers, then the
recogniser, its JSON, `kemo predict --pooling/--segments` and the segment plot on real CK+
clips."""

import copy
import csv
import json

import keras
import numpy as np
import pytest
from sklearn.base import clone

from kemo import cli
from kemo.datasets import CLASS_NAMES
from kemo.errors import InputError
from kemo.face_classifier import AUTO_CLASS_BALANCE
from kemo.plotting import plot_segments
from kemo.recognizer import VideoEmotionRecognizer, _video_fps
from kemo.recognizer.videos import _file_fps
from kemo.timeline import (
    DEFAULT_POOLING,
    NEUTRAL,
    POOLINGS,
    SMOOTHING,
    TOP_FRACTION,
    Segment,
    find_segments,
    pool,
    smooth,
)
from kemo.video import write_video

HAPPY, SAD, SURPRISE = (CLASS_NAMES.index(n) for n in ("Happy", "Sad", "Surprise"))
FPS = 30.0
# Two clips that start neutral: 15 frames ending in surprise, 28 frames ending in anger.
CLIPS = ("S052_001_surprise.avi", "S055_004_anger.avi")

real = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                          reason="mtcnn needs KERAS_BACKEND=tensorflow")


def onehot(classes, weight=1.0):
    """Rows putting ``weight`` on each class of ``classes`` and the rest on Neutral."""
    rows = np.zeros((len(classes), len(CLASS_NAMES)))
    rows[np.arange(len(classes)), classes] = weight
    rows[:, NEUTRAL] += 1.0 - weight
    return rows


# ----------------------------------------------------------------------------- pooling


def test_mean_counts_every_frame_alike():
    p = onehot([NEUTRAL, NEUTRAL, HAPPY])
    np.testing.assert_allclose(pool(p, "mean")[[HAPPY, NEUTRAL]], [1 / 3, 2 / 3],
                               err_msg="mean: a third Happy, two thirds Neutral")


def test_expressive_weighs_frames_by_distance_from_neutral():
    p = np.vstack([onehot([NEUTRAL] * 3), onehot([HAPPY], 0.8), onehot([SAD], 0.4)])
    # weights 1 - p(Neutral): 0, 0, 0, 0.8, 0.4
    expected = (0.8 * p[3] + 0.4 * p[4]) / 1.2
    np.testing.assert_allclose(pool(p, "expressive"), expected,
                               err_msg="frames weighted by 1 - p(Neutral)")
    assert pool(p, "expressive").argmax() == HAPPY, "the neutral frames do not outvote Happy"
    assert pool(p, "mean").argmax() == NEUTRAL, "whereas their mean is Neutral"


def test_expressive_is_the_mean_when_frames_are_equally_expressive():
    # the emotion fills the clip: every frame has p(Neutral) = 0.3, the rest varies
    rng = np.random.default_rng(0)
    rest = rng.dirichlet(np.ones(6), size=12) * 0.7
    p = np.insert(rest, NEUTRAL, 0.3, axis=1)
    np.testing.assert_allclose(pool(p, "expressive"), pool(p, "mean"),
                               err_msg="equal weights: expressive pooling is the mean")


def test_a_neutral_video_stays_neutral():
    p = onehot([NEUTRAL] * 6)
    for method in POOLINGS:
        assert pool(p, method).argmax() == NEUTRAL, f"{method}: an all-neutral video is Neutral"
        np.testing.assert_allclose(pool(p, method).sum(), 1.0, err_msg=f"{method} sums to 1")


def test_confidence_weighs_frames_by_their_top_probability():
    p = np.array([[0.9, 0.1], [0.4, 0.6]])
    np.testing.assert_allclose(pool(p, "confidence", neutral=None),
                               (0.9 * p[0] + 0.6 * p[1]) / 1.5,
                               err_msg="weights 0.9 and 0.6")


def test_topk_is_the_mean_of_the_most_confident_quarter():
    confident = onehot([SAD, SURPRISE])  # probability 1: the most confident frames
    vague = onehot([HAPPY] * 6, 0.5)
    p = np.vstack([vague[:3], confident[:1], vague[3:], confident[1:]])
    k = int(np.ceil(TOP_FRACTION * len(p)))
    assert k == 2, f"a quarter of 8 frames is 2, got {k}"
    np.testing.assert_allclose(pool(p, "topk"), confident.mean(axis=0),
                               err_msg="topk: the mean of the 2 most confident frames")


def test_peak_is_the_least_neutral_smoothed_stretch():
    # 2 s of Neutral with a 0.5 s Happy burst from 1 s on, and a lone Sad frame before it
    classes = [NEUTRAL] * 60
    classes[30:45] = [HAPPY] * 15
    classes[10] = SAD
    p = onehot(classes)
    times = np.arange(60) / FPS
    pooled = pool(p, "peak", times)
    assert pooled.argmax() == HAPPY, f"peak: the Happy burst, got {pooled.round(2)}"
    np.testing.assert_allclose(pooled[HAPPY], 1.0, err_msg="the window centred on the burst "
                               "holds only Happy frames")
    assert pool(p, "mean").argmax() == NEUTRAL, "the mean of the whole video is Neutral"


def test_peak_window_is_in_seconds():
    # frames read 1 s apart: each smoothing window holds one frame, so peak is that frame
    p = onehot([NEUTRAL, HAPPY, NEUTRAL], 1.0)
    np.testing.assert_allclose(pool(p, "peak", times=[0.0, 1.0, 2.0]), p[1],
                               err_msg="a 0.5 s window does not reach frames 1 s away")


@pytest.mark.parametrize("args, match", [
    ((np.ones((2, 7)) / 7, "median"), "pooling must be one of"),
    ((np.ones((0, 7)), "mean"), "at least one frame"),
    ((np.full((2, 7), np.nan), "mean"), "NaN"),
    ((np.ones((3, 7)) / 7, "peak", [0, 2, 1]), "increasing"),
    ((np.ones((3, 7)) / 7, "peak", [0, 1]), "one per frame"),
    ((np.ones((3, 2)) / 2, "expressive", None, None), "no Neutral column"),
    ((np.ones((3, 2)) / 2, "peak", None, 6), "no Neutral column"),
])
def test_pool_rejects(args, match):
    with pytest.raises(InputError, match=match):
        pool(*args)


# ----------------------------------------------------------------------------- smoothing


def test_smooth_is_a_moving_average_in_seconds():
    p = onehot([NEUTRAL] * 10 + [HAPPY] * 10)
    times = np.arange(20) / FPS
    np.testing.assert_allclose(smooth(p, times, 0), p, err_msg="window 0: unchanged")
    s = smooth(p, times, 0.1)  # +-0.05 s: the frame and one neighbour each side
    np.testing.assert_allclose(s[9, [HAPPY, NEUTRAL]], [1 / 3, 2 / 3],
                               err_msg="frame 9 averages frames 8, 9 and 10")
    np.testing.assert_allclose(s[0, NEUTRAL], 1.0, err_msg="the edge averages what it has")
    far = smooth(p, np.arange(20.0), 0.5)  # frames 1 s apart: nothing to average
    np.testing.assert_allclose(far, p, err_msg="frames further apart than the window")
    with pytest.raises(InputError, match="window"):
        smooth(p, times, -1)


# ----------------------------------------------------------------------------- segments


def test_segments_of_a_neutral_then_happy_timeline():
    p = onehot([NEUTRAL] * 30 + [HAPPY] * 30)
    p[30:, [HAPPY, SURPRISE]] = 0.9, 0.1
    found = find_segments(p, np.arange(60), FPS)
    assert [s.label for s in found] == ["Neutral", "Happy"], f"two segments: {found}"
    first, second = found
    assert (first.first_frame, first.last_frame, second.first_frame, second.last_frame) == (
        0, 29, 30, 59), f"the change at frame 30: {found}"
    assert first.start == 0 and first.end == pytest.approx(1.0) and second.start == (
        pytest.approx(1.0)), f"segments meet at 1 s: {found}"
    assert second.end == pytest.approx(2.0) and second.duration == pytest.approx(1.0), (
        f"the last frame lasts 1/30 s: {second}")
    assert first.probability == pytest.approx(1.0) and second.probability == (
        pytest.approx(0.9)), f"mean probability of each label: {found}"
    assert second.to_dict() == {"start": 1.0, "end": 2.0, "label": "Happy",
                                "probability": 0.9, "first_frame": 30, "last_frame": 59}, (
        f"plain values: {second.to_dict()}")


def test_smoothing_removes_a_one_frame_blip():
    classes = [HAPPY] * 30
    classes[15] = SAD
    smoothed = find_segments(onehot(classes), np.arange(30), FPS)
    assert [s.label for s in smoothed] == ["Happy"], f"blip smoothed away: {smoothed}"
    raw = find_segments(onehot(classes), np.arange(30), FPS, window=0)
    assert [s.label for s in raw] == ["Happy", "Sad", "Happy"], f"unsmoothed: {raw}"


def test_a_face_unseen_for_a_while_ends_the_segment():
    frames = np.r_[0:30, 60:90]  # the face is missing for 1 s
    found = find_segments(onehot([HAPPY] * 60), frames, FPS)
    assert [(s.first_frame, s.last_frame) for s in found] == [(0, 29), (60, 89)], (
        f"two Happy segments around the gap: {found}")
    assert found[0].end == pytest.approx(1.0) and found[1].start == pytest.approx(2.0), (
        f"the gap is in no segment: {found}")
    joined = find_segments(onehot([HAPPY] * 60), frames, FPS, max_gap=2.0)
    assert len(joined) == 1, f"max_gap 2 s bridges it: {joined}"


def test_sparse_frames_are_not_gaps():
    # --frames N on a long video: rows 2 s apart; each stands for 2 s
    found = find_segments(onehot([HAPPY] * 5), np.arange(5) * 60, FPS)
    assert len(found) == 1, f"regular sampling is not a missing face: {found}"
    assert found[0].end == pytest.approx(10.0), f"the last row lasts one step: {found[0]}"


@pytest.mark.parametrize("kwargs, match", [
    ({"fps": 0}, "fps"),
    ({"fps": True}, "fps"),
    ({"max_gap": -1}, "max_gap"),
    ({"class_names": ("a", "b")}, "2 class names"),
])
def test_find_segments_rejects(kwargs, match):
    with pytest.raises(InputError, match=match):
        find_segments(onehot([HAPPY] * 3), range(3), **kwargs)


def test_video_fps_comes_from_the_file(tmp_path):
    path = write_video(tmp_path / "slow.avi", np.zeros((3, 32, 32, 3), np.uint8), fps=12)
    assert _video_fps(path) == pytest.approx(12), "the container's frame rate"
    assert _video_fps(None) == FPS, "an array: the default 30"
    assert _video_fps(tmp_path / "gone.avi") == FPS, "a file that is gone: the default"
    # one frame more: another size, whatever the file system's clock resolution
    write_video(path, np.zeros((4, 32, 32, 3), np.uint8), fps=24)
    assert _video_fps(path) == pytest.approx(24), "a file rewritten since is read again"
    opened = _file_fps.cache_info().misses
    assert _video_fps(path) == pytest.approx(24) and _file_fps.cache_info().misses == opened, \
        "an unchanged file is opened once"


# ----------------------------------------------------------------------------- real clips


@pytest.fixture(scope="module")
def videos(shared_data):
    return shared_data / "ckplus_emopy" / "videos"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Face cache shared with the command-line test: each clip goes through MTCNN once."""
    return str(tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def rec(cache):
    rec = VideoEmotionRecognizer()
    return rec.set_params(faces=rec.face_preprocessor().set_params(cache_dir=cache))


@pytest.fixture(scope="module")
def faces(rec, videos):
    return rec.face_preprocessor().fit().transform([str(videos / c) for c in CLIPS])


@pytest.fixture(scope="module")
def analyses(rec, faces):
    return [rec.analyze(found) for found in faces]


@real
def test_default_pooling_is_expressive():
    assert VideoEmotionRecognizer().pooling == DEFAULT_POOLING == "expressive", (
        "the default chosen in benchmarks/ckplus_videos.py")


@real
@pytest.mark.parametrize("method", POOLINGS)
def test_every_pooling_on_real_clips(method, rec, faces, analyses):
    pooled = VideoEmotionRecognizer(pooling=method).predict_proba(faces)
    for row, analysis in zip(pooled, analyses, strict=True):
        expected = pool(analysis.frame_probabilities, method,
                        analysis.frame_indices / analysis.fps)
        np.testing.assert_allclose(row, expected, rtol=1e-5, err_msg=f"{method}: "
                                   f"predict_proba pools the frame probabilities")
    assert pooled[0].argmax() == SURPRISE, f"{method}: the surprise clip is Surprise, got " \
                                           f"{CLASS_NAMES[pooled[0].argmax()]}"
    again = clone(rec).set_params(pooling=method).analyze(faces[1])
    np.testing.assert_allclose(again.probabilities, pooled[1], rtol=1e-5,
                               err_msg=f"{method}: analyze pools as predict_proba does")


@real
def test_expressive_discounts_the_neutral_onset(analyses):
    # both clips start neutral: expressive pooling must give Neutral less than the mean does
    for analysis in analyses:
        p = analysis.frame_probabilities
        assert p[0].argmax() == NEUTRAL, f"{analysis.source}: starts neutral (data check)"
        assert pool(p, "expressive")[NEUTRAL] < pool(p, "mean")[NEUTRAL] - 0.05, (
            f"{analysis.source}: Neutral {pool(p, 'expressive')[NEUTRAL]:.3f} vs mean "
            f"{pool(p, 'mean')[NEUTRAL]:.3f}")


@real
def test_bad_pooling_is_refused(faces):
    with pytest.raises(InputError, match="pooling must be one of .*'median'"):
        VideoEmotionRecognizer(pooling="median").predict_proba(faces[:1])


def _balanced(proba, power):
    from kemo.datasets import FER2013_TRAINING_COUNTS

    share = np.asarray(FER2013_TRAINING_COUNTS) / sum(FER2013_TRAINING_COUNTS)
    adjusted = np.asarray(proba) / share ** power
    return adjusted / adjusted.sum(axis=-1, keepdims=True)


@real
def test_class_balance_on_real_clips(rec, faces, analyses, videos, cache, tmp_path):
    plain = clone(rec).set_params(class_balance=0)
    assert rec.class_balance == "auto" and rec.class_balance_ == AUTO_CLASS_BALANCE == 0.5, (
        "by default the shipped FER2013 model's probabilities are balanced with power 0.5")
    assert plain.class_balance_ == 0, "0 leaves them as trained"
    raw = [plain.analyze(found).frame_probabilities for found in faces]
    for probabilities, analysis in zip(raw, analyses, strict=True):
        np.testing.assert_allclose(analysis.frame_probabilities, _balanced(probabilities, 0.5),
                                   atol=1e-5, err_msg="auto divides by the prior to the 0.5")
        assert analysis.frame_probabilities[:, 1].mean() > probabilities[:, 1].mean(), (
            "Disgust comes out more often")
    # the balanced recogniser shares the loaded network: the plain one's output is unchanged
    np.testing.assert_allclose(plain.analyze(faces[0]).frame_probabilities, raw[0], atol=1e-6)
    clone(rec).set_params(class_balance=0.75).save(tmp_path / "model")
    assert VideoEmotionRecognizer.load(tmp_path / "model").class_balance == 0.75
    document = tmp_path / "out.json"
    code = cli.main(["predict", str(videos / CLIPS[0]), "--class-balance", "0", "--json",
                     str(document), "-q", "--cache", cache])
    written = json.loads(document.read_text())
    assert code == 0 and written["class_balance"] == 0, written
    got = [written["videos"][0]["probabilities"][n] for n in CLASS_NAMES]
    expected = pool(raw[0], DEFAULT_POOLING, analyses[0].frame_indices / analyses[0].fps)
    np.testing.assert_allclose(got, expected, atol=1e-5, err_msg="--class-balance 0")
    with pytest.raises(SystemExit):  # argparse: usage error, exit status 2
        cli.main(["predict", str(videos / CLIPS[0]), "--class-balance", "much"])


@real
def test_pooling_is_saved_with_the_model(tmp_path):
    VideoEmotionRecognizer(pooling="peak").save(tmp_path / "model")
    loaded = VideoEmotionRecognizer.load(tmp_path / "model")
    assert loaded.pooling == "peak", f"pooling round-trips, got {loaded.pooling!r}"


@real
def test_segments_of_real_clips(analyses):
    for analysis in analyses:
        track = analysis.main
        segments = track.segments
        assert segments and all(isinstance(s, Segment) for s in segments), (
            f"{analysis.source}: segments found")
        assert analysis.fps == pytest.approx(FPS), f"CK+ clips are 30 fps: {analysis.fps}"
        assert segments[0].first_frame == track.frame_indices[0] and (
            segments[-1].last_frame == track.frame_indices[-1]), "segments cover the track"
        for before, after in zip(segments, segments[1:], strict=False):
            assert before.end == pytest.approx(after.start) and (
                after.first_frame == before.last_frame + 1), f"contiguous: {segments}"
            assert before.label != after.label, f"neighbours differ in label: {segments}"
        assert segments[0].label == "Neutral", f"the clips start neutral: {segments}"
        assert segments[-1].label != "Neutral", f"and end expressive: {segments}"
        assert all(s.label in analysis.timeline_class_names and 0 < s.probability <= 1
                   for s in segments), f"labels and probabilities: {segments}"
        assert segments[0].start == pytest.approx(track.frame_indices[0] / FPS), (
            "times in seconds")
    surprise = analyses[0].main.segments[-1]
    assert surprise.label == "Surprise", f"the surprise clip ends in Surprise: {surprise}"


@real
def test_segments_in_the_json(analyses):
    document = json.loads(json.dumps(analyses[0].to_dict()))
    track = document["tracks"][0]
    assert track["segments"] == [s.to_dict() for s in analyses[0].main.segments], (
        "the JSON lists each segment")
    assert document["fps"] == pytest.approx(FPS), f"and the frame rate: {document['fps']}"


@real
def test_segment_times_follow_the_frame_rate(rec, faces, tmp_path):
    slow = copy.copy(faces[0])  # the same faces, from a 12 fps file
    slow.source = str(write_video(tmp_path / "slow.avi", np.zeros((2, 32, 32, 3), np.uint8),
                                  fps=12))
    segments = rec.analyze(slow).main.segments
    assert segments[0].start == pytest.approx(slow.frame_indices[0] / 12) and (
        segments[-1].end == pytest.approx((slow.frame_indices[-1] + 1) / 12)), (
        f"seconds at 12 fps: {segments}")
    array = copy.copy(faces[0])
    array.source = None  # faces of a frame array: no frame rate known
    analysis = rec.analyze(array)
    assert analysis.fps == FPS and analysis.main.segments[-1].end == pytest.approx(
        (array.frame_indices[-1] + 1) / FPS), f"an array: 30 fps, {analysis.main.segments}"


@real
def test_plot_segments(analyses):
    analysis = analyses[1]
    segments = analysis.main.segments
    fig = plot_segments(analysis)
    ax = fig.axes[0]
    assert len(ax.lines) == len(CLASS_NAMES), f"one line per class, got {len(ax.lines)}"
    assert len(ax.patches) == len(segments), (
        f"one shaded span per segment: {len(ax.patches)} for {len(segments)}")
    assert [t.get_text() for t in ax.texts] == [s.label for s in segments], "spans named"
    assert ax.get_xlim() == pytest.approx((segments[0].start, segments[-1].end)), (
        "the axis spans the segments, in seconds")
    times = analysis.frame_indices / analysis.fps
    expected = smooth(analysis.frame_probabilities, times, SMOOTHING)[:, NEUTRAL]
    # each run of rows is drawn one sampling step longer (plotting._runs), so its last value
    # appears twice at the end
    np.testing.assert_allclose(ax.lines[NEUTRAL].get_ydata()[:len(expected)], expected,
                               err_msg="the smoothed timeline the segments come from")
    raw = plot_segments(analysis, smoothed=False, title="raw").axes[0]
    np.testing.assert_allclose(raw.lines[NEUTRAL].get_ydata()[:len(expected)],
                               analysis.frame_probabilities[:, NEUTRAL],
                               err_msg="smoothed=False draws the frame probabilities")
    assert raw.get_title() == "raw", "title given"
    with pytest.raises(InputError, match="track must be an index"):
        plot_segments(analysis, track=1)
    with pytest.raises(InputError, match="VideoAnalysis"):
        plot_segments(analysis.frame_probabilities)


# ----------------------------------------------------------------------------- command line


def test_cli_pooling_names_are_the_poolings():
    parser = cli.build_parser()
    for method in POOLINGS:
        args = parser.parse_args(["predict", "clip.avi", "--pooling", method])
        assert args.pooling == method, f"--pooling {method} accepted"
    assert parser.parse_args(["predict", "clip.avi"]).pooling is None, (
        "no --pooling: the model's own (the recogniser's default)")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", "clip.avi", "--pooling", "median"])
    assert exit_info.value.code == 2, "an unknown name is a usage error"


def test_cli_segments_file_must_differ(tmp_path, capsys):
    out = str(tmp_path / "out.csv")
    assert cli.main(["predict", "clip.avi", "--csv", out, "--segments", out]) == 1, "refused"
    assert "--segments must name different files" in capsys.readouterr().err, "says why"


@real
def test_cli_pooling_and_segments(videos, cache, analyses, tmp_path):
    paths = [str(videos / c) for c in CLIPS]
    segments, document = tmp_path / "segments.csv", tmp_path / "out.json"
    code = cli.main(["predict", *paths, "--pooling", "peak", "--segments", str(segments),
                     "--json", str(document), "-q", "--cache", cache])
    assert code == 0, f"exit status {code}"
    written = json.loads(document.read_text())
    assert written["pooling"] == "peak", f"the JSON names the pooling: {written['pooling']}"
    assert written["class_balance"] == 0.5, "the JSON names the class balance in effect (auto)"
    results = written["videos"]
    for result, analysis in zip(results, analyses, strict=True):
        expected = pool(analysis.frame_probabilities, "peak",
                        analysis.frame_indices / analysis.fps)
        got = [result["probabilities"][n] for n in CLASS_NAMES]
        np.testing.assert_allclose(got, expected, atol=1e-5,
                                   err_msg="--pooling peak gives the peak pooling")
    with open(segments, newline="") as file:
        rows = list(csv.DictReader(file))
    expected = [(p, s.label, f"{s.start:.6f}", f"{s.end:.6f}")
                for p, a in zip(paths, analyses, strict=True) for s in a.main.segments]
    got = [(r["path"], r["label"], f"{float(r['start']):.6f}", f"{float(r['end']):.6f}")
           for r in rows]
    assert got == expected, f"one CSV row per segment of each clip: {got}"
    assert set(rows[0]) == {"path", "track", "start", "end", "label", "probability",
                            "first_frame", "last_frame"}, f"columns {list(rows[0])}"
