"""Time per CK+ clip of `kemo predict` (`VideoEmotionRecognizer.analyze`) and of its face model.

First the command itself: ``kemo predict`` on the 40 CK+ clips in one run, its wall time
divided by 40 (start-up and model loading included, so a little more than the figures below).
Then three figures per clip, each the mean over the 40 clips, best of ``--repeats`` passes, in
one process after a warm-up (models loaded, first calls made):

* ``analyze(path)``: what ``kemo predict`` does for each clip (read, find and track the face
  every 5 frames, score every face, average), pretrained;
* ``analyze(faces)``: the same on faces found beforehand, so only the face model runs: the part
  that the per-call overhead of the network weighs on;
* ``analyze(faces)`` of a trained recogniser (fitted on the clips' faces), whose network gives
  both the timeline's probabilities and the ``fc1`` features of the SVM.

``--save FILE`` writes the probabilities of every figure to an ``.npz`` (per video:
``*_video``, per frame: ``*_frames``); ``--compare FILE`` prints the largest absolute
difference of this run's from them, to show that a faster version gives the same results.

Usage (from the repository root)::

    nice -n 10 python benchmarks/predict_speed.py --data ../shared/data [--repeats 2]
"""

import argparse
import subprocess
import sys
import time
import warnings

import numpy as np
from ckplus_videos import data_root  # noqa: E402  (benchmarks run as scripts from here)


def per_clip(function, items, repeats):
    """(best mean seconds per item over ``repeats`` passes, results of the last pass)."""
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        results = [function(item) for item in items]
        best = min(best, (time.perf_counter() - started) / len(items))
    return best, results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data root or the ckplus_emopy folder")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the clips")
    parser.add_argument("--save", help="write the probabilities to this .npz")
    parser.add_argument("--compare", help="compare the probabilities with this .npz")
    args = parser.parse_args(argv)

    from kemo.datasets import load_ckplus
    from kemo.recognizer import VideoEmotionRecognizer

    ck = load_ckplus(data_root(args.data))
    paths = [str(p) for p in ck.paths]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kemo.cli", "predict", *paths, "--quiet"],
                   stdout=subprocess.DEVNULL, check=True)
    command = (time.perf_counter() - started) / len(paths)
    pretrained = VideoEmotionRecognizer()
    faces = pretrained.face_preprocessor().fit().transform(paths)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        trained = VideoEmotionRecognizer().fit(faces, ck.labels)
    for rec in (pretrained, trained):  # warm-up: load the models, trace the first calls
        rec.analyze(faces[0])

    figures, outputs = {}, {}
    runs = {
        "analyze(path), pretrained": (pretrained, paths),
        "analyze(faces), pretrained": (pretrained, faces),
        "analyze(faces), trained": (trained, faces),
    }
    for name, (rec, items) in runs.items():
        figures[name], results = per_clip(rec.analyze, items, args.repeats)
        outputs[name] = results
    arrays = {}
    for key, results in zip(("path", "faces", "trained"), outputs.values(), strict=True):
        arrays[f"{key}_video"] = np.stack([r.probabilities for r in results])
        arrays[f"{key}_frames"] = np.concatenate([r.frame_probabilities for r in results])

    n_faces = sum(len(f) for f in faces)
    print(f"{len(paths)} CK+ clips, {n_faces} faces ({n_faces / len(paths):.1f} per clip)")
    print(f"{'kemo predict (one command)':<28} {1000 * command:8.1f} ms per clip")
    print(f"best of {args.repeats} passes in one process:")
    for name, seconds in figures.items():
        print(f"{name:<28} {1000 * seconds:8.1f} ms per clip")
    if args.save:
        np.savez(args.save, **arrays)
        print(f"probabilities written to {args.save}")
    if args.compare:
        print(f"largest differences from {args.compare}:")
        with np.load(args.compare) as reference:
            for key, values in arrays.items():
                print(f"  {key:<16} {float(np.abs(reference[key] - values).max()):.2e}")


if __name__ == "__main__":
    main()
