"""Faces per second of the face model, as ``FaceEmotionClassifier.predict_proba`` gives them.

Scores ``--n`` real FER2013 PublicTest faces with the default settings (``batch_size=256``
faces a pass; flip averaging, the test-time augmentation, is on and counted: the mirror images
of the uncertain faces, ``flip_margin=0.4``, go through a second pass), with every face
mirrored (``flip_margin=None``, the default before 2026-12-02) and without flip, best of
``--repeats`` passes after a warm-up call, and, as the baseline measured in the same run, the
bare network through ``model.predict`` (no flip) on the same faces.

With ``--variants``, also the ResNet-10 shapes of the face-model study
(``benchmarks/face_model_study.py``: width 0.5 or 1, 3x3/2 or 3x3/1 stem) with random weights
(speed does not depend on the weights), through the same ``predict_proba`` with every face
mirrored (random weights make every face uncertain).

Usage (from the repository root)::

    python benchmarks/face_model_speed.py --data ../shared/data/fer2013 [--weights NAME] \
        [--variants]
"""

import argparse
import os
import time

import numpy as np

from kemo.weights import DEFAULT_WEIGHTS


def best_rate(function, faces, repeats):
    function(faces[:32])  # warm-up: model loaded, functions traced
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function(faces)
        best = min(best, time.perf_counter() - started)
    return len(faces) / best


def variant_rates(faces, repeats):
    """``predict_proba`` (flip) faces/s of ResNet-10 widths and stems, from saved files."""
    import tempfile
    from pathlib import Path

    from kemo.classifier import FaceEmotionClassifier
    from kemo.models import ResNet10

    rates = {}
    with tempfile.TemporaryDirectory() as folder:
        for width in (0.5, 1.0):
            for stem in ("small", "full"):
                path = Path(folder) / f"w{width}-{stem}.keras"
                ResNet10(input_shape=(48, 48, 1), width=width, stem=stem).save(path)
                clf = FaceEmotionClassifier(weights=str(path), flip_margin=None)
                rates[f"width {width}, stem {stem} (flip)"] = best_rate(clf.predict_proba, faces,
                                                                       repeats)
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="FER2013 location (file or folder)")
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, help="face model")
    parser.add_argument("--n", type=int, default=None,
                        help="faces per pass (default: all 3,589 PublicTest faces)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", action="store_true",
                        help="also the study's ResNet-10 widths and stems (random weights)")
    parser.add_argument("--record", action="store_true",
                        help="store the table in docs/results.json (benchmarks.face_model_speed)"
                             "; docs/results.md and the model card quote it")
    args = parser.parse_args(argv)

    from kemo.classifier import FaceEmotionClassifier
    from kemo.datasets import load_fer2013
    from kemo.face_classifier import check_flip_margin, uncertain

    test = load_fer2013(args.data, subset="PublicTest")
    faces, labels = test.images[:args.n], test.labels[:args.n]
    default = FaceEmotionClassifier(weights=args.weights)
    settings = {
        f"default (flip, flip_margin={default.flip_margin})": default,
        "flip_margin=None (every face mirrored)": FaceEmotionClassifier(weights=args.weights,
                                                                        flip_margin=None),
        "flip=False": FaceEmotionClassifier(weights=args.weights, flip=False),
    }
    model = default._model()
    x = default.info_.preprocess(faces[..., None].astype("float32"))
    base_name = "baseline: model.predict(batch_size=256), no flip"
    base = best_rate(lambda f: model.predict(x[:len(f)], batch_size=256, verbose=0), faces,
                     args.repeats)
    plain = settings["flip=False"].predict_proba(faces)
    mirrored = {name: np.mean(uncertain(plain, check_flip_margin(clf.flip_margin)))
                if clf.flip else 0.0 for name, clf in settings.items()}
    rows = []
    for name, clf in settings.items():
        rate = best_rate(clf.predict_proba, faces, args.repeats)
        accuracy = np.mean(clf.predict(faces) == labels)
        rows.append([f"`predict_proba`, {name}", f"{rate:.0f}", f"{rate / base:.2f}x",
                     f"{100 * mirrored[name]:.0f} %", f"{100 * accuracy:.2f} %"])
    rows.append([base_name, f"{base:.0f}", "1.00x", "0 %", "-"])
    if args.variants:
        rows += [[name, f"{rate:.0f}", f"{rate / base:.2f}x", "100 %", "- (random weights)"]
                 for name, rate in variant_rates(faces, args.repeats).items()]
    header = ["inference", "faces/s", "against the baseline", "faces mirrored",
              "PublicTest accuracy"]
    print(f"{args.weights}, {len(faces)} FER2013 PublicTest faces, best of {args.repeats}")
    for line in (header, ["---"] * len(header), *rows):
        print("| " + " | ".join(line) + " |")
    if args.record:
        record(header, rows, args, len(faces))


def record(header, rows, args, n):
    """Store the table in docs/results.json (``benchmarks.face_model_speed``), regenerate the
    pages that quote it."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from reproduce import ROOT, recorded_entry, update_results

    entry = recorded_entry(
        f"Speed of the face model ({args.weights}, {n} FER2013 PublicTest faces, batch 256)",
        "python benchmarks/face_model_speed.py --data ../shared/data/fer2013"
        + (f" --n {args.n}" if args.n else "") + f" --repeats {args.repeats}"
        + (" --variants" if args.variants else "") + " --record",
        {"rates": {"header": header, "rows": rows}},
        machine=f"{os.cpu_count()} CPU cores, no GPU, tensorflow backend")

    def store(results):
        results.setdefault("benchmarks", {})["face_model_speed"] = entry

    update_results(ROOT / "docs", store)
    print("recorded in docs/results.json (benchmarks.face_model_speed), docs/results.md and "
          "the model card")


if __name__ == "__main__":
    main()
