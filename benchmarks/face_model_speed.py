"""Faces per second of the face model, as ``FaceEmotionClassifier.predict_proba`` gives them.

Scores ``--n`` real FER2013 PublicTest faces with the default settings (``batch_size=256``
images a pass: 128 faces and their mirror images, since flip averaging, the test-time
augmentation, is on and counted) and without flip, best of
``--repeats`` passes after a warm-up call, and, as the baseline measured in the same run, the
bare network through ``model.predict`` (no flip) on the same faces.

With ``--variants``, also the ResNet-10 shapes of the face-model study
(``benchmarks/face_model_study.py``: width 0.5 or 1, 3x3/2 or 3x3/1 stem) with random weights
(speed does not depend on the weights), through the same ``predict_proba`` with flip.

Usage (from the repository root)::

    python benchmarks/face_model_speed.py --data ../shared/data/fer2013 [--weights NAME] \
        [--variants]
"""

import argparse
import time


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
                clf = FaceEmotionClassifier(weights=str(path))
                rates[f"width {width}, stem {stem} (flip)"] = best_rate(clf.predict_proba, faces,
                                                                       repeats)
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="FER2013 location (file or folder)")
    parser.add_argument("--weights", default="fer2013_resnet10", help="face model")
    parser.add_argument("--n", type=int, default=2048, help="faces per pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", action="store_true",
                        help="also the study's ResNet-10 widths and stems (random weights)")
    args = parser.parse_args(argv)

    from kemo.classifier import FaceEmotionClassifier
    from kemo.datasets import load_fer2013

    faces = load_fer2013(args.data, subset="PublicTest").images[:args.n]
    default = FaceEmotionClassifier(weights=args.weights)
    plain = FaceEmotionClassifier(weights=args.weights, flip=False)
    model = default._model()
    x = default.info_.preprocess(faces[..., None].astype("float32"))
    rates = {
        "predict_proba, default (flip)": best_rate(default.predict_proba, faces,
                                                              args.repeats),
        "predict_proba, flip=False": best_rate(plain.predict_proba, faces, args.repeats),
        "baseline: model.predict(batch_size=256)": best_rate(
            lambda f: model.predict(x[:len(f)], batch_size=256, verbose=0), faces, args.repeats),
    }
    if args.variants:
        rates.update(variant_rates(faces, args.repeats))
    base = rates["baseline: model.predict(batch_size=256)"]
    print(f"{args.weights}, {len(faces)} FER2013 PublicTest faces, best of {args.repeats}")
    for name, rate in rates.items():
        print(f"{name:45s} {rate:7.0f} faces/s  ({rate / base:.2f}x baseline)")


if __name__ == "__main__":
    main()
