"""Peak memory of streaming a video with kemo.video against reading it all into a list.

Writes XVID clips of growing length (320x240, moving texture) into a temporary folder, then, each
in a fresh Python process so peaks do not mix, measures the peak resident memory (VmHWM) of

- streaming: ``for i, frame in Video(path).frames(): ...`` (kemo), and
- baseline: collecting every frame in a list (what a naive reader does),

and prints both against the video length, with the growth from the shortest clip. Streaming
should stay flat; the baseline grows by about width x height x 3 bytes per frame.

Usage:
    python benchmarks/video_memory.py [--lengths 150 600 2400] [--size 320 240]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kemo.video import write_video

CHILD = """
import json, resource, sys, time
from kemo.video import Video
path, mode = sys.argv[1], sys.argv[2]
start = time.perf_counter()
with Video(path) as video:
    if mode == "stream":
        n = 0
        checksum = 0
        for _, frame in video.frames():
            n += 1
            checksum += int(frame[0, 0, 0])
    else:
        frames = [frame for _, frame in video.frames()]
        n = len(frames)
try:  # VmHWM is this process image's own peak; ru_maxrss may hold the parent's from the fork
    with open("/proc/self/status") as status:
        peak_mb = next(int(l.split()[1]) for l in status if l.startswith("VmHWM")) / 1024
except (OSError, StopIteration):
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"frames": n, "peak_mb": peak_mb, "seconds": time.perf_counter() - start}))
"""


def make_clip(path, length, size):
    """Write a clip whose frames differ (a texture sliding sideways) without holding them all."""
    width, height = size
    base = np.random.default_rng(0).integers(0, 256, (height, width * 2, 3), dtype=np.uint8)
    frames = (base[:, (i * 3) % width:(i * 3) % width + width] for i in range(length))
    return write_video(path, frames, fps=25)


def measure(path, mode):
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[150, 600, 2400])
    parser.add_argument("--size", type=int, nargs=2, default=[320, 240], metavar=("W", "H"))
    args = parser.parse_args()
    frame_mb = args.size[0] * args.size[1] * 3 / 2**20
    print(f"frame {args.size[0]}x{args.size[1]} RGB = {frame_mb:.3f} MB; XVID clips")
    print(f"{'frames':>7} {'stream MB':>10} {'list MB':>9} {'list/stream':>12} "
          f"{'stream +MB':>11} {'list +MB':>9} {'stream fps':>11}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for length in args.lengths:
            path = make_clip(Path(tmp) / f"clip{length}.avi", length, args.size)
            stream, listed = measure(path, "stream"), measure(path, "list")
            assert stream["frames"] == listed["frames"] == length, (stream, listed, length)
            rows.append((length, stream, listed))
            first_stream, first_list = rows[0][1]["peak_mb"], rows[0][2]["peak_mb"]
            print(f"{length:>7} {stream['peak_mb']:>10.1f} {listed['peak_mb']:>9.1f} "
                  f"{listed['peak_mb'] / stream['peak_mb']:>12.2f} "
                  f"{stream['peak_mb'] - first_stream:>11.1f} "
                  f"{listed['peak_mb'] - first_list:>9.1f} "
                  f"{length / stream['seconds']:>11.0f}")
    growth = rows[-1][1]["peak_mb"] - rows[0][1]["peak_mb"]
    frames_added = rows[-1][0] - rows[0][0]
    print(f"streaming grew {growth:.1f} MB over {frames_added} more frames "
          f"({growth / frame_mb:.1f} frames' worth); the list grew "
          f"{rows[-1][2]['peak_mb'] - rows[0][2]['peak_mb']:.1f} MB")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.1f} s")
