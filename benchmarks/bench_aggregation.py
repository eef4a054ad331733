"""Speed of kemo.Aggregator against a naive per-video loop, measured in the same run.

Two workloads:

* the issue's figure: 1,000 videos x 128 frames x 4,608 dims (VGG-Face fc6 4096 + ResNet-10
  fc1 512, aggregated as one block), float32;
* many short videos (CK+-like: 3 frames each), where per-video Python overhead dominates.

To keep memory at a few hundred MB, the long-video workload lists ``--distinct`` different
arrays over and over (1,000 list entries, each 2.4 MB, far beyond any cache, so the work per
video is the same as for 1,000 distinct arrays).

Usage:
    nice -n 10 python benchmarks/bench_aggregation.py [--videos 1000] [--frames 128]
        [--dims 4608] [--distinct 100] [--repeat 3]
"""

import argparse
import time

import numpy as np

from kemo.aggregation import Aggregator


def naive(videos):
    """The formula written per video, the way one would first write it."""
    rows = []
    for x in videos:
        y = np.sign(x) * np.abs(x) ** 0.5
        y = y / np.linalg.norm(y, axis=1, keepdims=True)
        rows.append(np.concatenate([y.mean(axis=0), y.var(axis=0)]))
    return np.stack(rows)


def best_time(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def compare(label, videos, repeat):
    n_frames = sum(len(v) for v in videos)
    agg = Aggregator().fit(videos[:1])
    t_kemo, out = best_time(lambda: agg.transform(videos), repeat)
    t_naive, ref = best_time(lambda: naive(videos), repeat)
    err = float(np.abs(out - ref).max())
    print(f"{label}: {len(videos)} videos, {n_frames} frames, dims {videos[0].shape[1]}")
    print(f"  kemo.Aggregator  {t_kemo:8.3f} s  ({n_frames / t_kemo:,.0f} frames/s)")
    print(f"  naive loop       {t_naive:8.3f} s  ({n_frames / t_naive:,.0f} frames/s)")
    print(f"  speed-up         {t_naive / t_kemo:8.2f} x   (max abs difference {err:.1e})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--dims", type=int, default=4608)
    parser.add_argument("--distinct", type=int, default=100)
    parser.add_argument("--short-videos", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    # ReLU-like features (fc6 after ReLU is non-negative and sparse), float32 like Keras outputs.
    pool = [np.maximum(rng.standard_normal((args.frames, args.dims), dtype=np.float32), 0)
            for _ in range(args.distinct)]
    videos = [pool[i % args.distinct] for i in range(args.videos)]
    compare("long videos", videos, args.repeat)

    lengths = rng.integers(1, 6, size=args.short_videos)
    short = [rng.standard_normal((n, 512), dtype=np.float32) for n in lengths]
    compare("short videos", short, args.repeat)


if __name__ == "__main__":
    main()
