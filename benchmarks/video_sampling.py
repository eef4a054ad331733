"""Time of ``Video.sample(n)`` with seeking (the default) against decoding straight through.

Writes one XVID and one mp4v clip (640x480, moving texture), then times ``sample(n)`` with
``seek_threshold=64`` (kemo's default) and with ``seek_threshold=None`` (baseline: decode every
frame up to the last one wanted), checks both return identical frames, and prints the ratio.

Usage:
    python benchmarks/video_sampling.py [--length 1500] [--n 16 128]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from kemo.video import Video, write_video


def make_clip(path, length, size=(640, 480)):
    width, height = size
    base = np.random.default_rng(0).integers(0, 256, (height, width * 2, 3), dtype=np.uint8)
    frames = (base[:, (i * 5) % width:(i * 5) % width + width] for i in range(length))
    return write_video(path, frames, fps=25)


def timed_sample(path, n, seek_threshold, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        with Video(path, seek_threshold=seek_threshold) as video:
            indices, frames = video.sample(n)
        best = min(best, time.perf_counter() - start)
    return best, indices, frames


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, default=1500)
    parser.add_argument("--n", type=int, nargs="+", default=[16, 128])
    args = parser.parse_args()
    print(f"{'clip':>10} {'n':>5} {'seek s':>8} {'decode-through s':>17} {'speed-up':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("clip.avi", "clip.mp4"):
            path = make_clip(Path(tmp) / name, args.length)
            for n in args.n:
                seek_s, idx_a, frames_a = timed_sample(path, n, 64)
                base_s, idx_b, frames_b = timed_sample(path, n, None)
                assert np.array_equal(idx_a, idx_b) and np.array_equal(frames_a, frames_b), (
                    f"{name}: seeking returned other frames than decoding through")
                print(f"{name:>10} {n:>5} {seek_s:>8.3f} {base_s:>17.3f} {base_s / seek_s:>9.1f}")
    print(f"({args.length} frames of 640x480; best of 3; identical frames both ways)")


if __name__ == "__main__":
    main()
