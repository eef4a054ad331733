"""Throughput of `kemo predict` on a Dask LocalCluster: 1 worker process against 2.

Each worker runs 1 thread (Dask task thread and TensorFlow's thread pools), as
``kemo predict --scheduler local:N`` starts them. The workers set up the recogniser (MTCNN and
the face model) before the clock starts, so the figures are the steady rate of a long batch,
not the start-up. Each clip is one task doing what `kemo predict` does for it
(``VideoEmotionRecognizer.analyze``: faces found, aligned and scored, pooled); the labels of
both runs are checked to be the same. Prints videos/s and frames/s of each, and the speed-up.

Usage (from the repository root, after ``pip install -e ".[dev,dask]"``)::

    nice -n 10 python benchmarks/cluster_throughput.py [--data DIR] [--clips N] [--repeat R]

``--data`` defaults to ``$KEMO_DATA``, else ``../shared/data`` next to the checkout.
"""

import argparse
import os
import time

from ckplus_videos import data_root  # noqa: E402  (benchmarks run as scripts from here)


def measure(workers, clips, repeat):
    """(seconds of the batch, labels) on a LocalCluster of ``workers`` processes."""
    import pickle

    from kemo import parallel
    from kemo.recognizer import VideoEmotionRecognizer

    job = (parallel.portable_recognizer(VideoEmotionRecognizer()), "main")
    client = parallel.connect(f"local:{workers}")
    try:
        # set up the recogniser in every worker (models loaded) before timing
        import hashlib

        blob = pickle.dumps(job)
        token = hashlib.sha256(blob).hexdigest()
        client.run(parallel._run, parallel.analyze, None, token, blob, str(clips[0]))
        best, labels = float("inf"), None
        for _ in range(repeat):
            start = time.perf_counter()
            jobs = parallel.VideoMap(client, parallel.analyze, job,
                                     {i: str(c) for i, c in enumerate(clips)})
            results = jobs.outcomes()
            best = min(best, time.perf_counter() - start)
            labels = [results[i].label for i in range(len(clips))]
        return best, labels
    finally:
        parallel.close(client)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="folder holding ckplus_emopy/")
    parser.add_argument("--clips", type=int, default=40, help="clips to use (default all 40)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, best kept")
    args = parser.parse_args()
    import cv2

    clips = sorted((data_root(args.data) / "ckplus_emopy" / "videos").glob("*.avi"))
    clips = clips[:args.clips]
    frames = sum(int(cv2.VideoCapture(str(c)).get(cv2.CAP_PROP_FRAME_COUNT)) for c in clips)
    print(f"{len(clips)} CK+ clips, {frames} frames; {os.cpu_count()} CPU cores; load average "
          f"{os.getloadavg()[0]:.1f} at the start")
    rates, labels = {}, {}
    for workers in (1, 2):
        seconds, labels[workers] = measure(workers, clips, args.repeat)
        rates[workers] = len(clips) / seconds
        print(f"{workers} worker process(es), 1 thread each: {seconds:6.1f} s, "
              f"{rates[workers]:.2f} videos/s, {frames / seconds:.1f} frames/s")
    same = labels[1] == labels[2]
    print(f"speed-up of 2 workers over 1: {rates[2] / rates[1]:.2f}x; labels identical: {same}; "
          f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
