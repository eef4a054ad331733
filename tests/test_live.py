"""Live emotion (kemo.live, VideoEmotionRecognizer.stream, `kemo live`) on real CK+ clips.

Sources: a real clip played at real time, an iterable of its frames, and a real network stream
(MJPEG over HTTP, what IP cameras serve) that a small server started here sends from
127.0.0.1. Speed is measured in benchmarks/live_latency.py, not asserted here.
"""

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from kemo import cli
from kemo.errors import InputError, VideoReadError
from kemo.live import LiveStream, gui_problem, source_kind
from kemo.recognizer import VideoEmotionRecognizer
from kemo.timeline import pool
from kemo.video import Video

CLIP = "ckplus_emopy/videos/S055_005_happiness.avi"  # 45 frames, 640x490, 30 fps
SUMMARY = re.compile(
    r"kemo live: (\d+) frames read, (\d+) analysed, (\d+) dropped; (\d+) faces in (\d+) tracks?; "
    r"latency median (\d+) ms, p95 (\d+) ms")


@pytest.fixture(scope="module")
def clip(shared_data):
    path = shared_data / CLIP
    if not path.is_file():
        pytest.skip(f"CK+ clip {path} not found")
    return path


@pytest.fixture(scope="module")
def rec():
    return VideoEmotionRecognizer()


@pytest.fixture(scope="module")
def jpegs(clip):
    """The clip's frames as JPEG files' bytes, as an MJPEG camera sends them."""
    with Video(clip) as video:
        return [cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))[1].tobytes()
                for _, frame in video.frames()]


class MJPEGServer:
    """Serve JPEG frames as an MJPEG stream (multipart/x-mixed-replace) on 127.0.0.1.

    Args:
        jpegs: the frames.
        fps: frames sent per second.
        cut_after: close the connection after this many frames (the stream breaks off
            midway); None sends the frames over and over until :meth:`close`.
    """

    def __init__(self, jpegs, fps=30.0, cut_after=None):
        self.sent = 0
        stop = self._stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                n = 0
                while not stop.is_set() and (cut_after is None or n < cut_after):
                    jpeg = jpegs[n % len(jpegs)]
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                     b"Content-Length: %d\r\n\r\n" % len(jpeg) + jpeg + b"\r\n")
                    self.wfile.flush()
                    n += 1
                    server.sent = n
                    stop.wait(1 / fps)
                self.close_connection = True  # cut: no closing boundary, as a dropped link

            def log_message(self, *args):
                pass

        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_port}/stream.mjpg"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self._stop.set()
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()


def run_kemo(*args):
    return subprocess.run([sys.executable, "-m", "kemo.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_pooling(results, window, method):
    """Each face's probabilities pool (as the file path does) its track's last ``window`` s."""
    for result in results:
        neutral = result.class_names.index("Neutral")
        for face in result.faces:
            past = [(r.t, f.frame_probabilities) for r in results for f in r.faces
                    if f.track_id == face.track_id and result.t - window < r.t <= result.t]
            expected = pool(np.array([p for _, p in past]), method,
                            np.array([t for t, _ in past]), neutral)
            np.testing.assert_allclose(face.probabilities, expected, atol=1e-6,
                                       err_msg=f"frame {result.frame}: track {face.track_id} "
                                       f"is not pooled ({method}) over the last {window} s")
            assert face.label == result.class_names[int(np.argmax(face.probabilities))], (
                f"frame {result.frame}: label {face.label} is not the pooled argmax")


def check_summary(text, lines):
    """The summary line's figures agree with the JSON lines written."""
    match = SUMMARY.search(text)
    assert match, f"no summary line in: {text!r}"
    read, analysed, dropped, faces, _, median, _ = map(int, match.groups())
    assert analysed == len(lines), f"summary says {analysed} analysed, {len(lines)} JSON lines"
    # frames may still be dropped after the last analysed one, while it was analysed
    assert dropped >= lines[-1]["dropped"], (
        f"summary says {dropped} dropped, the last line already {lines[-1]['dropped']}")
    assert read >= analysed + dropped, f"{read} read < {analysed} analysed + {dropped} dropped"
    assert faces == sum(len(line["faces"]) for line in lines), "summary face count differs"
    latency = np.median([line["latency_ms"] for line in lines])
    assert abs(median - latency) <= 1, f"summary median {median} ms, lines give {latency:.1f}"
    return read, analysed, dropped


def check_line_keys(lines, names):
    for line in lines:
        assert set(line) == {"t", "frame", "latency_ms", "dropped", "faces"}, (
            f"keys of a JSON line: {sorted(line)}")
        for face in line["faces"]:
            assert set(face) == {"track", "box", "label", "probabilities"}, (
                f"keys of a face: {sorted(face)}")
            assert list(face["probabilities"]) == names, f"classes {list(face['probabilities'])}"
            assert len(face["box"]) == 4, f"box {face['box']}"


# ----------------------------------------------------------------------------- API


def test_real_clip_at_real_time(rec, clip):
    with Video(clip) as video:
        count, fps = video.frame_count, video.fps
    with rec.stream(clip, window=1.0, realtime=True) as live:
        results = list(live)
        figures = live.summary()
    assert results, "no frame analysed"
    assert figures["frames_read"] == count, f"read {figures['frames_read']} of {count} frames"
    assert figures["analysed"] + figures["dropped"] == count, (
        f"{figures['analysed']} analysed + {figures['dropped']} dropped != {count} read: a "
        f"frame was lost without being counted")
    frames = [r.frame for r in results]
    assert frames == sorted(set(frames)), f"frames out of order or repeated: {frames}"
    for r in results:
        assert r.t == pytest.approx(r.frame / fps), f"frame {r.frame} at {r.t} s"
        assert len(r.faces) == 1, f"frame {r.frame}: {len(r.faces)} faces in a one-face clip"
        assert r.latency > 0, f"frame {r.frame}: latency {r.latency}"
    assert results[-1].dropped == figures["dropped"], "the last result's dropped count is stale"
    check_pooling(results, 1.0, rec.pooling)


def test_file_without_realtime_analyses_every_frame(clip):
    with Video(clip) as video:
        frames = [frame for _, frame in video.frames(stop=12)]
    rec = VideoEmotionRecognizer(pooling="mean")  # another pooling: the stream follows it
    with rec.stream(iter(frames), window=0.2, fps=10.0, tracks="main") as live:
        results = list(live)
    assert [r.frame for r in results] == list(range(12)), "a frame was skipped"
    assert live.dropped == 0, f"{live.dropped} frames dropped from a source without a clock"
    assert [r.t for r in results] == pytest.approx([i / 10.0 for i in range(12)]), "times"
    check_pooling(results, 0.2, "mean")


def test_network_stream_cut_midway(rec, jpegs):
    server = MJPEGServer(jpegs, cut_after=len(jpegs) // 2)
    try:
        with rec.stream(server.url, window=1.0) as live:
            assert live.kind == "url", f"{server.url} read as {live.kind}"
            results = list(live)  # ends, without an error, where the stream breaks off
    finally:
        server.close()
    assert results, "no frame analysed from the stream"
    assert 0 < live.frames_read <= server.sent, (
        f"read {live.frames_read} frames of the {server.sent} sent")
    assert live.analysed + live.dropped == live.frames_read, "frames lost uncounted"
    times = [r.t for r in results]
    assert times == sorted(times), f"stream times go back: {times}"
    assert all(r.faces for r in results), "a frame of the stream without its face"
    check_pooling(results, 1.0, rec.pooling)


def test_stop_ends_the_stream(rec, jpegs):
    server = MJPEGServer(jpegs)  # never ends by itself
    try:
        with rec.stream(server.url) as live:
            results = []
            for result in live:
                results.append(result)
                if len(results) == 3:
                    live.stop()
    finally:
        server.close()
    assert len(results) == 3, f"{len(results)} results after stop() at the third"


def test_missing_camera(rec):
    with pytest.raises(VideoReadError, match="camera 97 cannot be opened"):
        rec.stream(97)


def test_unreachable_url_and_missing_file(rec, tmp_path):
    with pytest.raises(VideoReadError, match="cannot open the stream"):
        rec.stream("http://127.0.0.1:9/none.mjpg", timeout=2.0)
    with pytest.raises(VideoReadError, match="no such video file"):
        rec.stream(tmp_path / "none.avi")


@pytest.mark.parametrize("source, kind", [(0, "camera"), ("2", "camera"),
                                          ("rtsp://host/live", "url"), ("clip.mp4", "file"),
                                          (np.zeros((2, 8, 8, 3), np.uint8), "frames")])
def test_source_kind(source, kind):
    assert source_kind(source) == kind, f"{source!r} read as {source_kind(source)}"


@pytest.mark.parametrize("option", [{"window": -1}, {"tracks": "some"}, {"duration": 0},
                                    {"queue_size": 0}])
def test_bad_arguments(rec, clip, option):
    with pytest.raises(InputError, match=next(iter(option))):
        LiveStream(rec, clip, **option)


# ----------------------------------------------------------------------------- kemo live


def test_cli_file_realtime_duration(clip, tmp_path):
    jsonl, out = tmp_path / "live.jsonl", tmp_path / "live.mp4"
    done = run_kemo("live", clip, "--realtime", "--duration", "1", "--window", "0.5",
                    "--pooling", "mean", "--jsonl", jsonl, "--out", out)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    lines = read_lines(jsonl)
    check_line_keys(lines, list(VideoEmotionRecognizer().timeline_class_names))
    assert all(line["t"] < 1.0 for line in lines), "a frame past --duration 1 was analysed"
    check_summary(done.stdout, lines)
    with Video(out) as video:  # whole: every frame up to the last analysed one
        assert video.frame_count == lines[-1]["frame"] + 1, (
            f"annotated video has {video.frame_count} frames, expected "
            f"{lines[-1]['frame'] + 1}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.jsonl", "live.mp4"], (
        f"files left: {sorted(p.name for p in tmp_path.iterdir())}")


@pytest.mark.skipif(os.name == "nt", reason="SIGINT to a child process is POSIX")
def test_cli_ctrl_c_closes_outputs_whole(jpegs, tmp_path):
    jsonl, out = tmp_path / "live.jsonl", tmp_path / "live.avi"
    server = MJPEGServer(jpegs)  # never ends: only Ctrl-C stops the command
    try:
        proc = subprocess.Popen([sys.executable, "-m", "kemo.cli", "live", server.url,
                                 "--jsonl", jsonl, "--out", out],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            while proc.poll() is None and not (
                    jsonl.is_file() and len(jsonl.read_text().splitlines()) >= 5):
                time.sleep(0.1)
            assert proc.poll() is None, f"kemo live ended early: {proc.communicate()}"
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        server.close()
    assert proc.returncode == cli.EXIT_INTERRUPTED, f"exit {proc.returncode}: {stderr[-2000:]}"
    text = jsonl.read_text()
    assert text.endswith("\n"), "the last JSON line was cut"
    lines = [json.loads(line) for line in text.splitlines()]
    check_line_keys(lines, list(VideoEmotionRecognizer().timeline_class_names))
    check_summary(stdout, lines)
    with Video(out) as video:
        assert video.frame_count == lines[-1]["frame"] + 1, (
            f"annotated video has {video.frame_count} frames, expected "
            f"{lines[-1]['frame'] + 1}")


def test_cli_missing_camera():
    done = run_kemo("live", "97")
    assert done.returncode == cli.EXIT_FAILED, f"exit {done.returncode}"
    errors = done.stderr.strip().splitlines()
    assert errors[-1].startswith("kemo: error: camera 97 cannot be opened"), (
        f"stderr: {done.stderr[-1000:]}")
    assert "Traceback" not in done.stderr, "a traceback instead of a one-line error"


def test_cli_show_without_gui(clip, monkeypatch, capsys):
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  GUI:    NONE\n")
    assert gui_problem() is not None, "a headless OpenCV was taken for one with a GUI"
    assert cli.main(["live", str(clip), "--show"]) == cli.EXIT_FAILED, "--show went ahead"
    assert "headless" in capsys.readouterr().err, "the error does not say OpenCV is headless"


def test_cli_missing_file(tmp_path, capsys):
    assert cli.main(["live", str(tmp_path / "none.avi")]) == cli.EXIT_FAILED, "exit status"
    assert "no such video file" in capsys.readouterr().err, "error does not name the problem"


def test_summary_regex_matches_the_printed_line():
    from kemo.live import summary_line

    line = summary_line({"frames_read": 10, "analysed": 8, "dropped": 2, "faces": 8,
                         "tracks": 1, "latency_median_ms": 50.2, "latency_p95_ms": 90.0,
                         "seconds": 1.0})
    assert SUMMARY.search(line), f"the summary format changed: {line}"
