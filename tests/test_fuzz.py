"""Fuzzing the video reader: random and damaged files never crash the process.

About 400 inputs, made here from a fixed seed: random byte strings of many lengths under video
suffixes, real container and image headers followed by junk, and real clips (XVID AVI, mp4v MP4,
MJPG AVI) with bytes flipped, ranges zeroed, chunks cut out or repeated, and tails cut off.
Each goes through :class:`kemo.video.Video` (open, count, iterate, sample) and
:func:`kemo.video.read_frames`. Every input must either read (RGB uint8 frames of the announced
size) or raise :class:`kemo.errors.VideoReadError` / :class:`kemo.errors.InputError`.

The reader runs in a child process, one input after another, writing each outcome as a line;
if FFmpeg inside OpenCV ever crashed (a segfault or an abort), the child would die and the test
would name the input that killed it, instead of taking pytest down with it.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from kemo.video import write_video

SEED = 20170913
SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")

CHILD = r"""
import json, sys
from pathlib import Path
import numpy as np
from kemo.errors import InputError, VideoReadError
from kemo.video import Video, read_frames

def read(path):
    with Video(path) as video:
        width, height = video.size
        count = video.frame_count
        seen = 0
        for index, frame in video.frames():
            assert frame.dtype == np.uint8 and frame.shape == (height, width, 3), frame.shape
            seen += 1
            if seen == 40:
                break
        if count:
            indices, frames = video.sample(3)
            assert frames.shape == (3, height, width, 3), frames.shape
    if count and count <= 40:
        indices, frames = read_frames(path)
        assert len(frames) == count, (len(frames), count)
    return count

for line in sys.stdin:
    path = line.strip()
    print(json.dumps({"path": path, "started": True}), flush=True)
    try:
        outcome = f"read {read(path)} frames"
    except (VideoReadError, InputError) as err:
        outcome = type(err).__name__
    except Exception as err:  # an exception kemo should have turned into a clear one
        outcome = f"UNEXPECTED {type(err).__name__}: {err}"
    print(json.dumps({"path": path, "outcome": outcome}), flush=True)
"""


def mutate(data, rng):
    """One random damage of ``data``: flips, zeroed range, cut, repeat, or truncation."""
    data = bytearray(data)
    kind = rng.integers(5)
    if kind == 0:  # flip a few bytes, mostly in the header where the parser looks
        for _ in range(rng.integers(1, 40)):
            limit = len(data) if rng.random() < 0.3 else min(len(data), 4096)
            data[rng.integers(limit)] = rng.integers(256)
    elif kind == 1:  # zero a range
        start = rng.integers(len(data))
        data[start : start + rng.integers(1, 2048)] = bytes(min(2048, len(data) - start))
    elif kind == 2:  # cut a chunk out
        start = rng.integers(len(data))
        del data[start : start + rng.integers(1, 4096)]
    elif kind == 3:  # repeat a chunk
        start = rng.integers(len(data))
        data[start:start] = data[start : start + rng.integers(1, 4096)]
    else:  # truncate
        del data[rng.integers(1, len(data)) :]
    return bytes(data)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """About 400 damaged or random files, built deterministically from SEED."""
    folder = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(SEED)
    frames = rng.integers(0, 256, (48, 96, 3), dtype=np.uint8)
    clip = [np.roll(frames, 3 * i, axis=1)[:, :64] for i in range(12)]
    seeds = [
        write_video(folder / "seed.avi", clip, codec="XVID").read_bytes(),
        write_video(folder / "seed.mp4", clip, codec="mp4v").read_bytes(),
        write_video(folder / "seed_mjpg.avi", clip, codec="MJPG").read_bytes(),
    ]
    headers = [
        b"RIFF\x00\x10\x00\x00AVI LIST",
        b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41",
        b"\x1aE\xdf\xa3\x9fB\x86\x81\x01",  # Matroska / WebM EBML
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
        b"GIF89a",
    ]
    files = []

    def add(data, suffix):
        path = folder / f"in{len(files):03d}{suffix}"
        path.write_bytes(data)
        files.append(path)

    for _ in range(150):  # random bytes, lengths from 0 to 64 KiB (log-uniform)
        add(rng.bytes(int(2 ** rng.uniform(0, 16))), SUFFIXES[rng.integers(len(SUFFIXES))])
    for _ in range(60):  # real headers, then junk
        header = headers[rng.integers(len(headers))]
        add(header + rng.bytes(int(rng.integers(0, 8192))), SUFFIXES[rng.integers(2)])
    for _ in range(190):  # damaged real clips, one to three damages each
        index = rng.integers(len(seeds))
        data = seeds[index]
        for _ in range(rng.integers(1, 4)):
            data = mutate(data, rng)
        add(data, ".mp4" if index == 1 else ".avi")
    return files


def test_fuzzed_files_never_crash_the_reader(inputs):
    assert len(inputs) >= 300, f"a few hundred inputs expected, got {len(inputs)}"
    child = subprocess.run(
        [sys.executable, "-c", CHILD], input="\n".join(map(str, inputs)) + "\n",
        capture_output=True, text=True, timeout=600,
    )
    events = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    outcomes = {e["path"]: e["outcome"] for e in events if "outcome" in e}
    started = [e["path"] for e in events if e.get("started")]
    crashed = started[-1] if started and started[-1] not in outcomes else None
    assert child.returncode == 0, (
        f"the reader process died (exit {child.returncode}) on {crashed}:\n"
        f"{child.stderr[-2000:]}"
    )
    assert len(outcomes) == len(inputs), f"{len(outcomes)} outcomes for {len(inputs)} inputs"
    unexpected = {p: o for p, o in outcomes.items() if o.startswith("UNEXPECTED")}
    assert not unexpected, f"unclear errors on {len(unexpected)} inputs: {unexpected}"
    read = sum(o.startswith("read") for o in outcomes.values())
    refused = sum(o == "VideoReadError" for o in outcomes.values())
    # Both outcomes must occur: damaged clips often still decode, random bytes never do.
    assert read > 20 and refused > 150, f"{read} read, {refused} refused of {len(inputs)}"
