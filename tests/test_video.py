"""kemo.video: frame counts, streaming, uniform sampling, seeking accuracy, errors, writing."""

import os
import re
import tracemalloc

import numpy as np
import pytest

from kemo.datasets import load_ckplus
from kemo.errors import InputError, KemoError, VideoReadError, VideoWriteError
from kemo.video import Video, read_frames, write_video

# Frames of the CK+ clips per class, from ckplus_emopy/README.md.
CK_FRAMES_PER_CLASS = {0: 81, 1: 110, 2: 84, 3: 207, 4: 82, 5: 120}
CODED_LENGTH = 300
BITS = 10  # enough for CODED_LENGTH


def coded_frames(n):
    """Frames whose index is written in 16x16 black/white blocks, readable after lossy coding."""
    frames = np.zeros((n, 64, 96, 3), np.uint8)
    for i in range(n):
        for bit in range(BITS):
            row, col = divmod(bit, 6)
            frames[i, row * 16:(row + 1) * 16, col * 16:(col + 1) * 16] = 255 * ((i >> bit) & 1)
        # texture in the lower half so the codec has real motion to predict
        frames[i, 32:, :, 1] = np.random.default_rng(i).integers(0, 256, (32, 96))
    return frames


def decode_index(frame):
    bits = []
    for bit in range(BITS):
        row, col = divmod(bit, 6)
        block = frame[row * 16 + 4:row * 16 + 12, col * 16 + 4:col * 16 + 12]
        bits.append(int(block.mean() > 127) << bit)
    return sum(bits)


@pytest.fixture(scope="module")
def coded_avi(tmp_path_factory):
    """An XVID clip of CODED_LENGTH frames with each frame's index written into it."""
    return write_video(tmp_path_factory.mktemp("video") / "coded.avi", coded_frames(CODED_LENGTH),
                       fps=25)


@pytest.fixture(scope="module")
def coded_sequential(coded_avi):
    """Every frame of the coded clip, read one after the other without seeking."""
    with Video(coded_avi, seek_threshold=None) as video:
        return dict(video.frames())


@pytest.fixture(scope="module")
def ck_clips(shared_data):
    return load_ckplus(shared_data / "ckplus_emopy")


# ------------------------------------------------------------------ real CK+ clips


def test_ckplus_clips_frame_counts_and_fps(shared_data, ck_clips):
    with np.load(shared_data / "ckplus_emopy" / "ckplus_emopy_sequences_halfres.npz") as npz:
        true = dict(zip(npz["seq_ids"].tolist(), np.diff(npz["seq_offsets"]).tolist(),
                        strict=True))
    per_class = dict.fromkeys(CK_FRAMES_PER_CLASS, 0)
    for path, label, seq in zip(ck_clips.paths, ck_clips.labels, ck_clips.seq_ids, strict=True):
        with Video(path) as video:
            assert video.frame_count == true[seq], f"{path}: {video.frame_count} != {true[seq]}"
            assert video.fps == 30.0, f"{path}: fps {video.fps}"
            assert video.size == (640, 490), f"{path}: size {video.size}"
            assert video.duration == pytest.approx(true[seq] / 30), f"{path}: duration"
        per_class[int(label)] += true[seq]
    assert per_class == CK_FRAMES_PER_CLASS, f"frames per class {per_class}"
    assert sum(per_class.values()) == 684, "684 frames over the 40 clips"


def test_ckplus_iteration_reads_every_frame(ck_clips):
    path = ck_clips.paths[0]
    with Video(path) as video:
        pairs = list(video.frames())
        count = video.frame_count
    indices = [i for i, _ in pairs]
    assert indices == list(range(count)), f"{path}: indices {indices}"
    frame = pairs[0][1]
    assert frame.dtype == np.uint8 and frame.shape == (490, 640, 3), f"frame {frame.shape}"
    # CK+ is grey in 3 channels; YUV 4:2:0 decoding leaves them within a grey level or two
    spread = np.abs(frame[..., 0].astype(int) - frame[..., 2]).max()
    assert spread <= 3, f"grey clip channels differ by {spread}"


def test_ckplus_sample_16_in_order_and_frame_accurate(ck_clips):
    def count(path):
        with Video(path) as video:
            return video.frame_count

    long_clips = [p for p in ck_clips.paths if count(p) >= 16]
    assert long_clips, "no CK+ clip has 16 frames"
    path = long_clips[-1]
    with Video(path, seek_threshold=0) as video:  # seek for every sampled frame
        sequential = dict(video.frames())
        indices, frames = video.sample(16)
    assert frames.shape == (16, 490, 640, 3), f"sample shape {frames.shape}"
    assert np.all(np.diff(indices) > 0), f"indices not increasing: {indices}"
    assert indices[0] == 0 and indices[-1] == len(sequential) - 1, f"ends {indices}"
    for i, frame in zip(indices, frames, strict=True):
        assert np.array_equal(frame, sequential[int(i)]), f"{path}: sampled frame {i} differs"


# ------------------------------------------------------------------ generated clips


def test_generated_clip_reads_back_in_order(coded_avi, coded_sequential):
    with Video(coded_avi) as video:
        assert video.frame_count == CODED_LENGTH, f"frame_count {video.frame_count}"
        assert video.reported_frame_count == CODED_LENGTH, "container count"
        assert video.size == (96, 64), f"size {video.size}"
        assert video.fps == 25.0, f"fps {video.fps}"
    codes = [decode_index(coded_sequential[i]) for i in range(CODED_LENGTH)]
    assert codes == list(range(CODED_LENGTH)), "decoded frame codes are not 0..n-1"


@pytest.mark.parametrize("n", [1, 2, 7, 16, 128])
@pytest.mark.parametrize("seek_threshold", [0, 64, None])
def test_sample_returns_uniform_indices(coded_avi, coded_sequential, n, seek_threshold):
    with Video(coded_avi, seek_threshold=seek_threshold) as video:
        indices, frames = video.sample(n)
    expected = np.linspace(0, CODED_LENGTH - 1, n).round().astype(int)
    assert np.array_equal(indices, expected), f"n={n}: indices {indices}"
    assert frames.shape == (n, 64, 96, 3) and frames.dtype == np.uint8, f"{frames.shape}"
    for i, frame in zip(indices, frames, strict=True):
        assert decode_index(frame) == i, f"n={n}, seek {seek_threshold}: frame {i} is wrong"
        assert np.array_equal(frame, coded_sequential[int(i)]), f"frame {i} != sequential read"


def test_sample_more_frames_than_video_repeats_indices(tmp_path):
    path = write_video(tmp_path / "short.avi", coded_frames(5), fps=10)
    indices, frames = read_frames(path, n=12)
    assert len(frames) == 12, f"{len(frames)} frames"
    assert np.array_equal(indices, np.linspace(0, 4, 12).round()), f"indices {indices}"
    assert [decode_index(f) for f in frames] == indices.tolist(), "frames follow indices"


@pytest.mark.parametrize(("every", "start", "stop"), [(1, 0, None), (7, 0, None), (5, 12, 100),
                                                      (100, 250, None), (3, 290, 1000)])
def test_frames_every_start_stop(coded_avi, every, start, stop):
    with Video(coded_avi) as video:
        got = [(i, decode_index(f)) for i, f in video.frames(every=every, start=start, stop=stop)]
    expected = list(range(start, min(stop or CODED_LENGTH, CODED_LENGTH), every))
    assert [i for i, _ in got] == expected, f"indices for every={every} start={start}"
    assert [c for _, c in got] == expected, "frame contents do not match their indices"


@pytest.mark.parametrize("seek_threshold", [0, None])
def test_frames_past_the_end_yield_nothing(coded_avi, seek_threshold):
    with Video(coded_avi, seek_threshold=seek_threshold) as video:
        assert list(video.frames(start=CODED_LENGTH + 50)) == [], "frames past the end"
        assert video.frame_count == CODED_LENGTH, f"frame_count {video.frame_count} after that"
        last = [i for i, _ in video.frames(start=CODED_LENGTH - 2)]
    assert last == [CODED_LENGTH - 2, CODED_LENGTH - 1], f"last frames {last}"


def test_frames_is_lazy_and_memory_flat(coded_avi):
    frame_bytes = 64 * 96 * 3
    with Video(coded_avi) as video:
        tracemalloc.start()
        try:
            count = sum(1 for _ in video.frames())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert count == CODED_LENGTH, f"{count} frames"
    # a list of all frames would take CODED_LENGTH * frame_bytes
    assert peak < 10 * frame_bytes, f"peak {peak} B while streaming {count} frames"


def test_interleaved_iterators_stay_correct(coded_avi):
    with Video(coded_avi) as video:
        first, second = video.frames(every=2), video.frames(start=100)
        pairs = [(next(first)[0], next(second)[0]) for _ in range(3)]
        idx, frame = next(first)
    assert pairs == [(0, 100), (2, 101), (4, 102)], f"interleaved {pairs}"
    assert idx == 6 and decode_index(frame) == 6, "first iterator resumed at the wrong frame"


def test_truncated_file_stops_at_real_end(tmp_path, coded_avi):
    data = coded_avi.read_bytes()
    path = tmp_path / "truncated.avi"
    path.write_bytes(data[: len(data) // 2])
    with Video(path, seek_threshold=None) as video:
        sequential = dict(video.frames())
    with Video(path) as video:
        assert video.reported_frame_count == CODED_LENGTH, "header keeps the original count"
        assert 0 < video.frame_count < CODED_LENGTH, f"real count {video.frame_count}"
        assert video.frame_count == len(sequential), "frame_count != frames that decode"
        indices, frames = video.sample(5)
    assert indices[-1] == len(sequential) - 1, f"sample ends at {indices[-1]}"
    for i, frame in zip(indices, frames, strict=True):
        assert np.array_equal(frame, sequential[int(i)]), f"frame {i} differs"


def test_read_frames_every(coded_avi):
    indices, frames = read_frames(coded_avi, every=50)
    assert indices.tolist() == list(range(0, CODED_LENGTH, 50)), f"indices {indices}"
    assert frames.shape == (6, 64, 96, 3), f"shape {frames.shape}"


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("content", [None, b"", os.urandom(4096), b"not a video\n" * 50])
def test_unreadable_files_raise_video_read_error(tmp_path, content):
    path = tmp_path / "bad.avi"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoReadError, match=re.escape(str(path))):
        Video(path)
    with pytest.raises(VideoReadError, match=re.escape(str(path))):
        read_frames(path)


def test_video_read_error_is_oserror_and_kemo_error(tmp_path):
    with pytest.raises(OSError):
        Video(tmp_path / "missing.mp4")
    with pytest.raises(KemoError):
        Video(tmp_path / "missing.mp4")


def test_closed_video_raises(coded_avi):
    video = Video(coded_avi)
    video.close()
    with pytest.raises(VideoReadError, match="closed"):
        video.frames()
    with pytest.raises(VideoReadError, match="closed"):
        video.sample(3)


@pytest.mark.parametrize(("kwargs", "word"), [({"every": 0}, "every"), ({"start": -1}, "start"),
                                              ({"stop": 3, "start": 5}, "stop"),
                                              ({"every": 1.5}, "every")])
def test_frames_bad_arguments(coded_avi, kwargs, word):
    with Video(coded_avi) as video, pytest.raises(InputError, match=word):
        video.frames(**kwargs)


@pytest.mark.parametrize("n", [0, -3, 2.0, True])
def test_sample_bad_n(coded_avi, n):
    with Video(coded_avi) as video, pytest.raises(InputError, match="n must be"):
        video.sample(n)


# ------------------------------------------------------------------ writing


@pytest.mark.parametrize(("name", "codec"), [("a.avi", None), ("a.mp4", None), ("a.avi", "MJPG")])
def test_write_video_round_trip(tmp_path, name, codec):
    frames = coded_frames(20)
    path = write_video(tmp_path / name, frames, fps=12, codec=codec)
    indices, back = read_frames(path)
    assert back.shape == frames.shape, f"{name} {codec}: {back.shape}"
    assert [decode_index(f) for f in back] == list(range(20)), f"{name} {codec}: frame order"
    with Video(path) as video:
        assert video.fps == 12.0, f"fps {video.fps}"


def test_write_and_read_keep_rgb_order(tmp_path):
    red = np.zeros((10, 32, 32, 3), np.uint8)
    red[..., 0] = 200
    _, back = read_frames(write_video(tmp_path / "red.avi", red, fps=10))
    means = back.mean(axis=(0, 1, 2))
    assert means[0] > 150 and means[2] < 50, f"channel means {means}: RGB/BGR swapped"


def test_write_video_grey_and_odd_size(tmp_path):
    frames = [np.full((31, 45), 40 * i, np.uint8) for i in range(5)]  # a generator works too
    path = write_video(tmp_path / "grey.avi", iter(frames), fps=5)
    _, back = read_frames(path)
    assert back.shape == (5, 32, 46, 3), f"odd size not padded to even: {back.shape}"
    means = back[:, :31, :45].mean(axis=(1, 2, 3))
    assert np.allclose(means, [40 * i for i in range(5)], atol=3), f"grey levels {means}"


@pytest.mark.parametrize(("frames", "kwargs", "error", "word"), [
    ([], {}, InputError, "no frames"),
    ([np.zeros((8, 8, 3), np.float32)], {}, InputError, "uint8"),
    ([np.zeros((8, 8, 4), np.uint8)], {}, InputError, "frame 0"),
    ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)], {}, InputError, "frame 1"),
    ([np.zeros((8, 8, 3), np.uint8)], {"fps": 0}, InputError, "fps"),
    ([np.zeros((8, 8, 3), np.uint8)], {"codec": "avc1"}, InputError, "avc1"),
])
def test_write_video_bad_input(tmp_path, frames, kwargs, error, word):
    with pytest.raises(error, match=word):
        write_video(tmp_path / "x.avi", frames, **kwargs)


def test_write_video_bad_path(tmp_path):
    frame = [np.zeros((8, 8, 3), np.uint8)]
    with pytest.raises(InputError, match=r"\.gif"):
        write_video(tmp_path / "x.gif", frame)
    with pytest.raises(VideoWriteError, match="does not exist"):
        write_video(tmp_path / "missing" / "x.avi", frame)
