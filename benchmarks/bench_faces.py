"""Face detection on every frame against tracked detection every k frames: speed and loss.

For each scene, runs :class:`kemo.faces.FaceTracker` with ``detect_every=1`` (MTCNN on every
frame, batched: the paper's way and the baseline) and with ``detect_every=k`` (k = 5, 10; faces
carried between detections by optical flow, and for comparison by holding the last landmarks),
and prints frames/s (wall clock, and per CPU second of this process, which a shared machine
disturbs less), the share of frames with a face, the ratios over every-frame detection, and the
eye-position error of the tracked faces against per-frame detection, in pixels of the
128x128 aligned crop (the eye distance there is 46 px).

Scenes (frames are decoded or built before timing; the figures are face work only):

* ``640x480`` and ``1280x720``: real CK+ faces (a clip's face region, expression changing
  frame by frame) pasted at a position moving about 4 px per frame on a textured background;
* ``CK+``: the 40 CK+ clips as they are (684 frames, 640x490, still heads).

It also prints, for the CK+ clips, the frame-to-frame eye jitter of per-frame detection. Timings
are the best of ``--repeats`` interleaved runs (the machine may be shared).

Usage:
    nice -n 10 python benchmarks/bench_faces.py [--data ../shared/data] [--frames 60]
        [--repeats 3] [--quick]
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
from scenes import composed_scene

from kemo.faces import FaceDetector, FaceTracker, eye_shift
from kemo.video import read_frames

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def run(detector, videos, every, carry):
    """Track every video; returns (wall s, CPU s, per-video list of per-frame records)."""
    out = []
    wall, cpu = time.perf_counter(), time.process_time()
    for frames in videos:
        tracker = FaceTracker(detector, detect_every=every, carry=carry)
        out.append([records for _, _, records in tracker.track(frames)])
    return time.perf_counter() - wall, time.process_time() - cpu, out


def eye_errors(tracked, reference):
    return [
        eye_shift(t[0], r[0])
        for tv, rv in zip(tracked, reference, strict=True)
        for t, r in zip(tv, rv, strict=True)
        if t and r
    ]


def bench_scene(name, videos, configs, repeats):
    detector = FaceDetector()
    detector.detect(videos[0][0])  # build MTCNN and warm TensorFlow up before timing
    n_frames = sum(len(v) for v in videos)
    wall = {c: float("inf") for c in configs}
    cpu = dict(wall)
    results = {}
    for _ in range(repeats):  # interleaved, so a load spike hits every config alike
        for config in configs:
            wall_s, cpu_s, out = run(detector, videos, *config)
            wall[config] = min(wall[config], wall_s)
            cpu[config] = min(cpu[config], cpu_s)
            results[config] = out
    reference = results[configs[0]]
    rows = []
    for config in configs:
        every, carry = config
        out = results[config]
        found = sum(bool(r) for video in out for r in video) / n_frames
        errors = eye_errors(out, reference) if every > 1 else [0.0]
        rows.append(
            (
                name,
                "every frame" if every == 1 else f"k={every} {carry}",
                n_frames / wall[config],
                wall[configs[0]] / wall[config],
                n_frames / cpu[config],
                cpu[configs[0]] / cpu[config],
                found,
                float(np.mean(errors)),
                float(np.percentile(errors, 95)),
            )
        )
    return rows, reference


def jitter(reference):
    return [
        eye_shift(video[i + 1][0], video[i][0])
        for video in reference
        for i in range(len(video) - 1)
        if video[i] and video[i + 1]
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    data = Path(os.environ.get("KEMO_DATA", DEFAULT_DATA))
    parser.add_argument("--data", type=Path, default=data, help="the shared data folder")
    parser.add_argument("--frames", type=int, default=60, help="frames per composed scene")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="5 CK+ clips, 30-frame scenes")
    args = parser.parse_args()
    paths = sorted((args.data / "ckplus_emopy" / "videos").glob("*.avi"))
    if not paths:
        raise SystemExit(f"no CK+ clips under {args.data}/ckplus_emopy/videos (use --data)")
    if args.quick:
        paths, args.frames, args.repeats = paths[::8], 30, 1
    clips = [read_frames(p)[1] for p in paths]
    source = max(clips, key=len)  # the longest clip gives the pasted face
    configs = [(1, "flow"), (5, "flow"), (10, "flow"), (5, "hold"), (10, "hold")]
    scenes = [
        ("640x480", composed_scene(source, (640, 480), args.frames)),
        ("1280x720", composed_scene(source, (1280, 720), args.frames)),
        (f"CK+ {len(clips)} clips", [list(c) for c in clips]),
    ]
    header = (
        f"{'scene':<16}{'method':<14}{'frames/s':>9}{'ratio':>7}{'frames/cpu-s':>13}{'ratio':>7}"
        f"{'face rate':>10}{'eye err':>9}{'p95':>7}"
    )
    print(header)
    print("-" * len(header))
    ck_reference = None
    for name, videos in scenes:
        rows, reference = bench_scene(name, videos, configs, args.repeats)
        for scene, method, fps, ratio, cpu_fps, cpu_ratio, found, err, p95 in rows:
            print(
                f"{scene:<16}{method:<14}{fps:>9.1f}{ratio:>7.2f}{cpu_fps:>13.1f}{cpu_ratio:>7.2f}"
                f"{found:>10.1%}{err:>9.2f}{p95:>7.2f}",
                flush=True,
            )
        ck_reference = reference
    shifts = jitter(ck_reference)
    print(
        f"\nframes/s: wall clock; frames/cpu-s: per CPU second of this process (steadier on a "
        f"shared machine); ratio: over every-frame detection in the same scene; face rate: "
        f"frames with a face; eye err: mean and 95th percentile distance of the tracked eyes "
        f"from per-frame detection, in pixels of the 128x128 aligned crop (eye distance 46 px); "
        f"best of {args.repeats} runs; MTCNN min_face_size=40."
    )
    print(
        f"CK+ eye jitter of per-frame detection (consecutive frames, 128 crop px): mean "
        f"{np.mean(shifts):.2f}, median {np.median(shifts):.2f}, p95 "
        f"{np.percentile(shifts, 95):.2f} over {len(shifts)} frame pairs"
    )


if __name__ == "__main__":
    main()
