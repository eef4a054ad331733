"""What moves FER2013 accuracy on this CPU: short training runs that differ in one setting each.

Every row trains from scratch for the same short budget (``--epochs``, a cosine schedule over
them) on FER2013 Training and is scored on PublicTest, which only chooses: with flip averaging
(kemo's default inference), with five shifted copies on top of it (multi-crop test-time
averaging), per class, and the seconds an epoch takes. Rows differ from ``base`` in one setting:

- ``base``: ResNet-10 at half width (32-256; 4x cheaper than the shipped width, so that many
  rows fit the CPU), 3x3/2 stem, recipe ``kemo`` (flip, rotation, shift and zoom: random crops),
  label smoothing 0.1;
- architecture: ``stem_full`` (first stage at the 48 px input resolution: 4x the computation),
  ``width_1`` (the shipped width);
- augmentation: ``no_crops`` (no shift or zoom), ``warp_single`` (rotation, shift and zoom
  in one resampling instead of Keras's three chained layers: sharper faces), ``erasing``,
  ``mixup``, ``cutmix``;
- optimisation: ``ema`` (weight average), ``long`` (twice the epochs);
- targets: ``ferplus`` (FER+ votes, half the target), ``distil`` (half the target from the mean
  probabilities of kemo models trained before: the shipped model and the best PublicTest epochs
  of the study's ``width_1`` and ``stem_full`` rows at the same budget, when done; those
  ``best.keras`` files keep their training BatchNorm statistics).

Each row checkpoints in ``--runs/ROW`` every epoch and resumes when rerun; results go to
``--out`` (JSON, written atomically after every row) and the table into the study section of
the model card (``--card``). Rerun the same command to go on after an interruption.

Usage (from the repository root)::

    python benchmarks/face_model_study.py --data ../shared/data/fer2013 [--rows base ema]
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ROWS = {  # cheap rows first: stem_full and width_1 cost 4x base each
    "base": {},
    "no_crops": {"recipe": {"shift": 0.0, "zoom": 0.0}},
    "warp_single": {"recipe": {"warp": "single"}},
    "erasing": {"recipe": {"erasing": 0.5}},
    "mixup": {"recipe": {"mixup": 0.2}},
    "cutmix": {"recipe": {"cutmix": 1.0}},
    "ema": {"recipe": {"ema": 0.999}},
    "ferplus": {"ferplus": 0.5},
    "stem_full": {"stem": "full"},
    "width_1": {"width": 1.0},
    "long": {"epochs": 2},  # a multiple of --epochs
    "distil": {"teachers": ["width_1", "stem_full"], "teacher_weight": 0.5},
}
WHAT = {
    "base": "base: width 0.5, 3x3/2 stem, flip + rotation + shift + zoom",
    "stem_full": "stem 3x3/1 (first stage at 48 px)",
    "width_1": "width 1 (the shipped 64-512)",
    "no_crops": "no shift or zoom (no random crops)",
    "warp_single": "rotation, shift and zoom in one resampling, not three",
    "erasing": "random erasing 0.5",
    "mixup": "mixup, alpha 0.2",
    "cutmix": "cutmix, alpha 1.0",
    "ema": "weight EMA 0.999",
    "long": "schedule twice as long",
    "ferplus": "FER+ votes as half the target",
    "distil": "distilled from shipped + width_1 + stem_full (half the target)",
}
SHIFTS = ((-2, 0), (2, 0), (0, -2), (0, 2))


def multi_crop_proba(model, x, proba):
    """Flip-averaged probabilities over the image and four copies shifted by 2 px.

    Args:
        model: The face model.
        x: Images scaled to [0, 1], shape (N, H, W, 1).
        proba: The model's flip-averaged probabilities on ``x`` itself, already
            computed by the caller, so only the shifted views are scored here.
    """
    from kemo.training import evaluate_images

    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
    side = x.shape[1]
    views = [padded[:, 2 + dy:2 + dy + side, 2 + dx:2 + dx + side] for dx, dy in SHIFTS]
    shifted = [evaluate_images(model, v, np.zeros(len(v)))[1] for v in views]
    return np.mean([proba, *shifted], axis=0)


def run_row(name, args, done):
    """Train one row (resuming its folder) and return its results."""
    from kemo.datasets import CLASS_NAMES, load_fer2013
    from kemo.training import RECIPES, as_model_input, evaluate_images, train_fer2013

    spec = dict(ROWS[name])
    recipe = dataclasses.replace(RECIPES["kemo"], warmup_epochs=1, **spec.pop("recipe", {}))
    epochs = args.epochs * spec.pop("epochs", 1)
    teachers = []
    for teacher in spec.pop("teachers", []):
        row = done.get(teacher, {})
        if (row.get("epochs") != args.epochs * ROWS[teacher].get("epochs", 1)
                or row.get("limit") != args.limit):
            print(f"{name}: skipped until row {teacher} is done (it is one of the teachers)")
            return None
        teachers.append(str(Path(args.runs) / done[teacher]["folder"] / "best.keras"))
    if teachers:
        teachers.insert(0, "fer2013_resnet10")
    options = {"width": 0.5, **spec}
    folder = f"{name}-{epochs}ep" + (f"-{args.limit}" if args.limit else "")
    started = time.time()
    model, state = train_fer2013(args.data, recipe=recipe, epochs=epochs,
                                 checkpoint_dir=Path(args.runs) / folder, seed=args.seed,
                                 limit=args.limit, teachers=teachers,
                                 verbose=0 if args.limit else 2, **options)
    val = load_fer2013(args.data, subset="PublicTest")
    x, y = as_model_input(val.images[:args.limit]) / 255.0, val.labels[:args.limit]
    accuracy, proba = evaluate_images(model, x, y)
    crops = multi_crop_proba(model, x, proba)
    predicted = proba.argmax(axis=1)
    per_class = {c: float(np.mean(predicted[y == i] == i)) if np.any(y == i) else float("nan")
                 for i, c in enumerate(CLASS_NAMES)}
    seconds = [h["seconds"] for h in state["history"]]
    return {
        "what": WHAT[name], "epochs": epochs, "folder": folder, "limit": args.limit,
        "images": len(y), "recipe": dataclasses.asdict(recipe),
        "options": {**options, "teachers": teachers}, "seed": args.seed,
        "accuracy": accuracy, "multi_crop": float(np.mean(crops.argmax(axis=1) == y)),
        "per_class": per_class, "mean_class": float(np.nanmean(list(per_class.values()))),
        # the median epoch: resumed runs log the first epoch after a restart with start-up costs
        "seconds_per_epoch": float(np.median(seconds)) if seconds else None,
        "parameters": int(model.count_params()), "wall_seconds": round(time.time() - started),
        "feed": "arrays",  # how batches reach Keras; see SLOW_FEED
        "machine": machine(),
    }


def machine():
    """Where a row was trained: the Keras backend, its first device, the CPU cores."""
    import os

    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0].device_kind
    elif backend == "torch":
        import torch

        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    else:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        device = tf.config.experimental.get_device_details(gpus[0]).get(
            "device_name", "GPU") if gpus else "cpu"
    device = "CPU" if device.lower() == "cpu" else device
    return f"{backend}, {device}, {os.cpu_count()} CPU cores"


def table(results):
    """The study as a Markdown table (percentages), base first, in the order of ``ROWS``."""
    from kemo.datasets import CLASS_NAMES

    head = ["row", "what changes", "epochs", "PublicTest", "multi-crop", "mean class",
            *CLASS_NAMES, "s/epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = results.get("base", {}).get("accuracy")
    for name in ROWS:
        r = results.get(name)
        if r is None:
            continue
        delta = "" if base is None or name == "base" else f" ({100 * (r['accuracy'] - base):+.2f})"
        cells = [f"`{name}`", r["what"], str(r["epochs"]), f"{100 * r['accuracy']:.2f}{delta}",
                 f"{100 * r['multi_crop']:.2f}", f"{100 * r['mean_class']:.2f}",
                 *(f"{100 * r['per_class'][c]:.1f}" for c in CLASS_NAMES),
                 f"{r['seconds_per_epoch']:.0f}" + _elsewhere(r) + ("" if "feed" in r else " *")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _elsewhere(row):
    """A note for the s/epoch of a row trained off this CPU (rows before 2026-12-02 were)."""
    where = row.get("machine", "tensorflow, CPU, 2 CPU cores")
    return "" if where.split(", ")[1:] == ["CPU", "2 CPU cores"] else f" ({where})"


BEGIN, END = "<!-- study -->", "<!-- /study -->"
#: The note under the table for rows timed (wholly or in part) before commit d487728.
SLOW_FEED = ("\n\\* s/epoch measured, wholly or in part, before 2026-12-02 10:20, when the "
             "batches reached Keras as a PyDataset (tf.data from a Python generator): a step "
             "took 2.2x as long then as it does now (fed as arrays, commit d487728), so compare "
             "those rows' s/epoch with each other, not with the others.\n")


def section(results):
    """The model card's study section (between markers, so that a rerun replaces it)."""
    body = table(results) if results else "No row has finished yet.\n"
    if any("feed" not in row for row in results.values()):
        body += SLOW_FEED
    return f"""{BEGIN}
## What moves accuracy on this CPU

Each row trains a ResNet-10 from scratch for the same short budget on FER2013 Training, the
`base` row's settings with one change, scored on PublicTest (the number in brackets: the change
against `base`). Short budgets favour what learns fast: a regulariser that loses here may still
win in a long run. Per-class columns and multi-crop (five 2-px shifts, each with its mirror
image) are with flip averaging. s/epoch is wall time on this machine's 2 shared cores: it
swings by up to 2x with the machine and with the jobs beside a run. `stem_full` mostly trained
beside memory benchmarks; quiet, one of its epochs took 417 s, against 100-102 s for the epochs
of `long` (the `base` network) fed the same way; `width_1` (the same computation as
`stem_full`) trained beside full CI runs, its quietest epochs 830-860 s. Rebuild with
`python benchmarks/face_model_study.py --data DATA/fer2013` (resumable; the rows of `--rows`
in their order, by default all in the order of this table).

{body}{END}
"""


def update_card(card, results):
    """Replace the study section of the model card ``card`` (a file with the markers)."""
    from kemo._files import write_atomic

    text = card.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        write_atomic(card, head + section(results).rstrip("\n") + rest.split(END, 1)[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="FER2013 location (file or folder)")
    parser.add_argument("--epochs", type=int, default=6, help="budget of every row (default 6)")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS),
                        help="rows to run (default: all, in order)")
    parser.add_argument("--runs", default="runs/study", help="checkpoint folders, one per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="first N images of each split (QUICK runs)")
    parser.add_argument("--out", type=Path, default=ROOT / "weights" / "fer2013_study.json")
    parser.add_argument("--card", type=Path, default=ROOT / "weights" / "fer2013_resnet10.md",
                        help="model card whose study section is rewritten after every row")
    args = parser.parse_args(argv)

    from kemo._files import write_atomic

    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for name in args.rows:
        known = results.get(name, {})
        if (known.get("epochs") == args.epochs * ROWS[name].get("epochs", 1)
                and known.get("limit") == args.limit):
            continue
        row = run_row(name, args, done=results)
        if row is None:
            continue
        results[name] = row
        write_atomic(args.out, json.dumps(results, indent=2) + "\n")
        update_card(args.card, results)
        print(f"{name}: PublicTest {100 * row['accuracy']:.2f} % (multi-crop "
              f"{100 * row['multi_crop']:.2f} %), {row['seconds_per_epoch']:.0f} s/epoch",
              flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
