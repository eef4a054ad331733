"""Accuracy of kemo's video recogniser on the 40 CK+ clips (neutral to peak, 10 subjects).

1. The pretrained default, through the command line: ``kemo predict`` on every clip (each
   printed line is one clip's label), scored against the clip labels. The clips hold 6 of
   FER's 7 classes (no Neutral, no contempt), so the score is also given with the Neutral
   column ignored.
2. A recogniser fitted on the clips (aggregated ResNet-10 fc1 features + linear SVM), scored
   with leave-one-subject-out folds: every clip is predicted by a model that never saw its
   subject. Faces are found once (face finding learns nothing, so sharing it leaks nothing).

Usage (from the repository root)::

    nice -n 10 python benchmarks/ckplus_videos.py [--data DIR] [--every K]

``--data`` defaults to ``$KEMO_DATA``, else ``../shared/data`` next to the checkout.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def data_root(path):
    if path:
        return Path(path)
    if os.environ.get("KEMO_DATA"):
        return Path(os.environ["KEMO_DATA"])
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def pretrained(paths, labels, every, cache):
    """Run `kemo predict` on the clips; return (7-way accuracy, 6-class accuracy, seconds)."""
    from kemo.datasets import CLASS_NAMES

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "predictions.json"
        command = [sys.executable, "-m", "kemo.cli", "predict", *paths, "--every", str(every),
                   "--json", str(out), "--cache", cache, "--quiet"]
        print("$ kemo predict <40 CK+ clips> --every", every, "--json predictions.json")
        start = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - start
        for line in done.stdout.splitlines():
            print("   ", line.split("  ")[0])  # "path: Label (p)"
        if done.returncode != 0:
            sys.exit(f"kemo predict failed with status {done.returncode}")
        videos = json.loads(out.read_text())["videos"]
    by_path = {v["path"]: v for v in videos}
    proba = np.array([[by_path[p]["probabilities"][n] for n in CLASS_NAMES] for p in paths])
    seven = np.mean(proba.argmax(axis=1) == labels)
    six = np.mean(proba[:, :6].argmax(axis=1) == labels)  # Neutral is the last column
    return seven, six, seconds


def fitted(paths, labels, subjects, every, cache):
    """Leave-one-subject-out predictions of a fitted recogniser."""
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict

    from kemo.evaluation import evaluate
    from kemo.recognizer import VideoEmotionRecognizer

    rec = VideoEmotionRecognizer()
    prep = rec.face_preprocessor().set_params(detect_every=every, cache_dir=cache).fit()
    start = time.perf_counter()
    faces = prep.transform(list(paths))  # from the cache written by `kemo predict`
    rec.set_params(faces=prep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        predicted = cross_val_predict(rec, faces, labels, groups=subjects,
                                      cv=LeaveOneGroupOut())
    seconds = time.perf_counter() - start
    report = evaluate(labels, predicted)  # the 6 classes present, FER names
    return report, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data root or the ckplus_emopy folder")
    parser.add_argument("--every", type=int, default=5, help="face detection every K frames")
    args = parser.parse_args()

    from kemo.datasets import load_ckplus

    ck = load_ckplus(data_root(args.data))
    paths, labels = [str(p) for p in ck.paths], ck.labels
    n_subjects = len(set(ck.subjects))
    print(f"CK+ clips: {len(paths)} videos, {n_subjects} subjects, classes "
          f"{sorted(set(labels.tolist()))} (FER ids; no Neutral, no contempt)\n")
    with tempfile.TemporaryDirectory() as cache:
        seven, six, seconds = pretrained(paths, labels, args.every, cache)
        print(f"\npretrained default (mean of frame probabilities), kemo predict: "
              f"{100 * seven:.2f} % ({round(seven * len(paths))}/{len(paths)}) over FER's 7 "
              f"classes; {100 * six:.2f} % with the Neutral column ignored; {seconds:.1f} s\n")
        report, seconds = fitted(paths, labels, ck.subjects, args.every, cache)
    print(f"fitted recogniser (ResNet-10 fc1, mean + variance aggregation, linear SVM), "
          f"leave-one-subject-out ({n_subjects} folds): {100 * report.accuracy:.2f} % "
          f"({round(report.accuracy * len(paths))}/{len(paths)}), mean class accuracy "
          f"{100 * report.mean_class_accuracy:.2f} %; {seconds:.1f} s")
    print(report)
    print(f"\nchance: {100 / len(set(labels.tolist())):.2f} % (6 classes); majority class "
          f"{100 * np.bincount(labels).max() / len(labels):.2f} %")


if __name__ == "__main__":
    main()
