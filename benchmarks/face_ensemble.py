"""An ensemble of kemo's trained face models: export it as one file, score it, write its card.

Builds :func:`kemo.models.ensemble.from_members` from ``--members`` (registered names or
``.weights.h5`` files of ResNet-10 face models), exports it as one ``.weights.h5``
(float16, the members' shapes stored with it) and scores each member and the ensemble on
FER2013 PublicTest through :class:`kemo.FaceEmotionClassifier` with its default settings
(flip averaging of the uncertain faces): accuracy, mean per-class accuracy, per-class
accuracy, and faces per second (best of ``--repeats`` passes over the PublicTest faces).

Unless ``--dry-run``, writes into ``weights/`` the file, its registry entry
(``NAME.entry.json``, picked up by :mod:`kemo.weights`, so that
``FaceEmotionClassifier(weights=NAME)`` and ``kemo predict --weights NAME`` use it) and its
card (``NAME.md``). PublicTest is used to choose, never to train: each member was trained on
FER2013 Training.

Usage (from the repository root)::

    python benchmarks/face_ensemble.py --data ../shared/data/fer2013 \
        --members fer2013_resnet10 fer2013_resnet10_v2 [--name fer2013_ensemble] [--dry-run]
"""

import argparse
import json
import os
import time
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def score(weights, faces, labels, repeats):
    """PublicTest figures of one face model with the default settings."""
    from kemo.classifier import FaceEmotionClassifier
    from kemo.evaluation import evaluate

    clf = FaceEmotionClassifier(weights=weights)
    report = evaluate(labels, clf.predict_proba(faces))
    clf.predict_proba(faces[:32])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        clf.predict_proba(faces)
        best = min(best, time.perf_counter() - started)
    return report, len(faces) / best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="FER2013 location (file or folder)")
    parser.add_argument("--members", nargs="+", required=True, metavar="WEIGHTS",
                        help="two or more face models: registered names or .weights.h5 files")
    parser.add_argument("--name", default="fer2013_ensemble", help="registry name")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes (best counts)")
    parser.add_argument("--dry-run", action="store_true",
                        help="score only; write nothing into weights/")
    args = parser.parse_args(argv)
    if len(args.members) < 2:
        parser.error("--members needs at least 2 face models")

    import tempfile

    from kemo import weights as registry
    from kemo.datasets import CLASS_NAMES, load_fer2013
    from kemo.models.ensemble import from_members, shape_options
    from kemo.training import export_weights

    test = load_fer2013(args.data, subset="PublicTest")
    faces, labels = test.images, test.labels
    model = from_members(args.members)
    folder = Path(tempfile.mkdtemp()) if args.dry_run else WEIGHTS_DIR
    path = folder / f"{args.name}.weights.h5"
    digest = export_weights(model, path)
    info = registry.WeightsInfo(
        name=args.name, architecture="FaceEnsemble", filename=path.name, sha256=digest,
        shipped=True, input_shape=(48, 48, 1), color="gray", scale=1 / 255, classes=7,
        class_names=CLASS_NAMES, include_top=True, card=f"{args.name}.md",
        options=shape_options(model))

    rows = {}
    for weights in args.members:
        rows[weights] = score(weights, faces, labels, args.repeats)
    rows[f"ensemble `{args.name}`"] = score(str(path), faces, labels, args.repeats)
    header = ["model", "PublicTest", "mean class", *CLASS_NAMES, "faces/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, (report, rate) in rows.items():
        lines.append("| " + " | ".join([
            name if name.startswith("ensemble") else f"`{name}`",
            f"{100 * report.accuracy:.2f} %", f"{100 * report.mean_class_accuracy:.2f} %",
            *(f"{100 * report.per_class[c]:.1f}" for c in CLASS_NAMES), f"{rate:.0f}"]) + " |")
    table = "\n".join(lines)
    print(table)
    ensemble, rate = rows[f"ensemble `{args.name}`"]
    best = max(r.accuracy for name, (r, _) in rows.items() if not name.startswith("ensemble"))
    print(f"ensemble {100 * ensemble.accuracy:.2f} % against the best member "
          f"{100 * best:.2f} % ({100 * (ensemble.accuracy - best):+.2f} points)")
    if args.dry_run:
        return
    metrics = {"fer2013_publictest_accuracy": round(ensemble.accuracy, 4),
               "fer2013_publictest_mean_class_accuracy": round(ensemble.mean_class_accuracy, 4),
               "faces_per_second": round(rate)}
    entry = {**info.to_dict(), "metrics": metrics}
    (folder / f"{args.name}.entry.json").write_text(json.dumps(entry, indent=2) + "\n")
    members = ", ".join(f"`{m}`" for m in args.members)
    command = (f"python benchmarks/face_ensemble.py --data DATA/fer2013 --members "
               f"{' '.join(args.members)} --name {args.name}")
    card = f"""# Model card: `{args.name}`

An ensemble preset of kemo's face models: {members}, each trained on FER2013 Training
alone (see their cards), in one Keras model (`kemo.models.FaceEnsemble`) whose prediction is
the members' mean and whose `fc1` is the members' `fc1` side by side
({model.get_layer("fc1").output.shape[-1]}-d). Use it with
`FaceEmotionClassifier(weights="{args.name}")` or `kemo predict VIDEO --weights {args.name}`.
The default face model stays a single network: it is faster.

| | |
|---|---|
| file | `{path.name}` ({path.stat().st_size / 1e6:.1f} MB, float16 weights) |
| sha256 | `{digest}` |
| parameters | {model.count_params():,} |
| members | {members} (`{json.dumps(info.options["members"])}`) |

## PublicTest accuracy and speed

Each model through `FaceEmotionClassifier` with its default settings (flip averaging of
the uncertain faces; batch 256), on the 3,589 PublicTest faces; faces/s is the best of
{args.repeats} passes on this machine ({os.cpu_count()} CPU cores, no GPU, shared with other
work, so compare the rows with each other):

{table}

Measured {time.strftime("%Y-%m-%d", time.gmtime())} with `{command}`, which also writes this
card, the weights and the registry entry.
"""
    (folder / f"{args.name}.md").write_text(card)
    print(f"wrote {path}, its entry and {args.name}.md")


if __name__ == "__main__":
    main()
