"""Export a FER2013 training run as kemo's shipped model and write its model card.

Reads a checkpoint folder written by ``kemo train fer2013`` (``last.keras``:
the last epoch, ``state.json``: the run's history), makes the model to ship as
``kemo train`` does (:func:`kemo.training.final_model`: float32, BatchNorm
statistics recomputed on FER2013 Training), rounds the weights to float16 and
writes into ``weights/``:

* ``fer2013_resnet10.weights.h5``: the weights (about 10 MB);
* ``fer2013_resnet10.entry.json``: the registry entry (sha256, input,
  preprocessing, measured metrics), picked up by :mod:`kemo.weights`;
* ``fer2013_resnet10.md``: the model card (data, command, epochs, wall time,
  PublicTest accuracy, per-class accuracy, confusion matrix);
* ``fer2013_resnet10_confusion.png``: the confusion-matrix figure.

The figures are measured here, on the exported float16 file, by the same
code path users get (:class:`kemo.FaceEmotionClassifier`).

Usage:
    python benchmarks/fer2013_model_card.py RUN_DIR --data ../shared/data/fer2013
"""

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

NAME = "fer2013_resnet10"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="checkpoint folder of the training run")
    parser.add_argument("--data", required=True, help="FER2013 location (file or folder)")
    args = parser.parse_args(argv)

    from kemo import weights as registry
    from kemo.classifier import FaceEmotionClassifier
    from kemo.datasets import CLASS_NAMES, load_fer2013
    from kemo.evaluation import evaluate
    from kemo.models import ResNet10
    from kemo.training import as_model_input, evaluate_images, export_weights, final_model

    state = json.loads((args.run / "state.json").read_text())
    # A fine-tuned run names the run it started from (state["init"]): describe both stages.
    stages, folders = [state], [args.run]
    while "init" in stages[0]:
        folders.insert(0, Path(stages[0]["init"]).parent)
        stages.insert(0, json.loads((folders[0] / "state.json").read_text()))
    trainer = keras.saving.load_model(args.run / "last.keras", compile=False, safe_mode=True)
    train = load_fer2013(args.data, subset="Training")
    model = final_model(trainer.layers[-1], as_model_input(train.images) / 255.0)
    path = WEIGHTS_DIR / f"{NAME}.weights.h5"
    digest = export_weights(model, path)

    info = registry.WeightsInfo(
        name=NAME, architecture="ResNet10", filename=path.name, sha256=digest, shipped=True,
        input_shape=(48, 48, 1), color="gray", scale=1 / 255, classes=7,
        class_names=CLASS_NAMES, include_top=True, card=f"{NAME}.md",
    )
    registry.register(info, replace=True)

    val = load_fer2013(args.data, subset="PublicTest")
    started = time.time()
    scores = {}
    for flip in (False, True):
        clf = FaceEmotionClassifier(weights=NAME, flip=flip)
        proba = clf.predict_proba(val.images)
        scores[flip] = evaluate(val.labels, proba)
    seconds = time.time() - started
    report = scores[True]
    # The same weights before BatchNorm recalibration, and the best stored epoch, for scale.
    x_val = as_model_input(val.images) / 255.0
    ablation = {}
    best = keras.saving.load_model(args.run / "best.keras", compile=False, safe_mode=True)
    for label, trained in (("last epoch, training BatchNorm statistics", trainer.layers[-1]),
                           (f"best PublicTest epoch ({state['best']['epoch']}), training "
                            "BatchNorm statistics", best)):
        plain = ResNet10(input_shape=(48, 48, 1))
        plain.set_weights(trained.get_weights())
        ablation[label] = [evaluate_images(plain, x_val, val.labels, flip=f)[0]
                           for f in (True, False)]
    ablation_rows = "\n".join(f"| {label} | {100 * a:.2f} % | {100 * b:.2f} % |"
                               for label, (a, b) in ablation.items())
    metrics = {
        "fer2013_publictest_accuracy": round(report.accuracy, 4),
        "fer2013_publictest_accuracy_noflip": round(scores[False].accuracy, 4),
        "fer2013_publictest_mean_class_accuracy": round(report.mean_class_accuracy, 4),
        "shipped_epoch": state["epoch"],
        "epochs": sum(s["epoch"] for s in stages),
    }
    entry = {**info.to_dict(), "metrics": metrics}
    (WEIGHTS_DIR / f"{NAME}.entry.json").write_text(json.dumps(entry, indent=2) + "\n")

    fig = report.plot_confusion_matrix(title="kemo ResNet-10, FER2013 PublicTest (flip TTA)")
    fig.savefig(WEIGHTS_DIR / f"{NAME}_confusion.png", dpi=110, bbox_inches="tight")

    confusion = "\n".join(
        f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |"
        for name, row in zip(CLASS_NAMES, report.confusion, strict=True)
    )
    commands = "\n\n".join(f"    {_command(s, f)}" for s, f in zip(stages, folders, strict=True))
    recipes = "; ".join(f"`{_recipe_name(s)}` ({s['epoch']} epochs)" for s in stages)
    wall = sum(s["wall_seconds"] for s in stages)
    notes = "".join(
        f"\nNote on stage {i + 1}: {s['note']}. From then on it followed exactly the\n"
        f"{s['epochs']}-epoch schedule that the command above follows from the start; before,\n"
        "its learning rate was up to 4 % higher (the longer cosine decays more slowly).\n"
        for i, s in enumerate(stages) if s.get("note")
    )
    history = "\n".join(
        f"| {stage + 1} | {h['epoch']} | {100 * h.get('accuracy', float('nan')):.2f} | "
        f"{100 * h.get('val_accuracy', float('nan')):.2f} |"
        for stage, s in enumerate(stages) for h in s["history"]
    )
    card = f"""# Model card: `{NAME}`

kemo's default per-face emotion model, used by `kemo.FaceEmotionClassifier()` and
`kemo predict`. A ResNet-10 (Simon et al. 2016: stem + four one-block residual stages,
widths 64-512) with the paper's 512-d `fc1` before the classifier, on 48x48 grayscale faces.

| | |
|---|---|
| file | `{path.name}` ({path.stat().st_size / 1e6:.1f} MB, float16 weights) |
| sha256 | `{digest}` |
| parameters | {model.count_params():,} |
| input | 48x48x1 gray, pixels / 255 |
| classes | {", ".join(CLASS_NAMES)} (FER2013 order) |
| training data | FER2013 Training (28,709 images); each later stage starts from the previous \
stage's best PublicTest epoch (`best.keras`; 3,589 images); the shipped weights are the last \
epoch of the last stage, with BatchNorm statistics recomputed on the Training images \
without augmentation (`kemo.training.recalibrate_batchnorm`) |
| PrivateTest | never read: it is measured independently |
| recipe | {recipes}; see `kemo.training.RECIPES`: SGD with Nesterov momentum 0.9, cosine \
learning rate (warm-up to 0.05 for `kemo`, restart at 0.01 for `finetune`), batch 128, weight \
decay 5e-4, label smoothing 0.1; flip, rotation 10 deg, shift 0.1, zoom 0.1 |
| precision | {state['precision']} training, float32 inference |
| epochs | {" + ".join(str(s["epoch"]) for s in stages)} (shipped: the last) |
| training wall time | {wall / 60:.0f} min on 2 CPU cores (shared with other work) |
| seeds | {", ".join(str(s["seed"]) for s in stages)} |

## Commands

Retrain from scratch (each stage resumes from its folder if interrupted):

{commands}

then write this card and the weights entry:

    python benchmarks/fer2013_model_card.py runs/{Path(folders[-1]).name} --data DATA

A QUICK variant of these commands (256 images, one epoch) runs in CI: `tests/test_training.py`.
{notes}
## PublicTest accuracy (measured on the shipped float16 file)

| | accuracy |
|---|---|
| with flip averaging (default) | {100 * report.accuracy:.2f} % |
| without | {100 * scores[False].accuracy:.2f} % |
| mean per-class (with flip) | {100 * report.mean_class_accuracy:.2f} % |

What the BatchNorm recalibration adds (the shipped float16 file, then float32 weights of the
same run without it):

| weights | with flip | without |
|---|---|---|
| shipped: last epoch, BatchNorm statistics recomputed on Training | \
{100 * report.accuracy:.2f} % | {100 * scores[False].accuracy:.2f} % |
{ablation_rows}

Paper (VGG-Face fine-tuned, Table I): 71.01 %; the `fer` package's bundled mini-Xception:
65.4 % on PrivateTest (a different split of the same test set).
Inference on 3,589 faces, both passes: {seconds:.1f} s on this machine.

## Per-class accuracy (with flip averaging)

```
{report}
```

## Confusion matrix (counts; rows true, columns predicted)

| true \\ predicted | {" | ".join(CLASS_NAMES)} |
|---|{"---|" * len(CLASS_NAMES)}
{confusion}

![confusion matrix]({NAME}_confusion.png)

## Training history

| stage | epoch | train accuracy (augmented) | PublicTest accuracy |
|---|---|---|---|
{history}
"""
    (WEIGHTS_DIR / f"{NAME}.md").write_text(card)
    print(card)
    print(json.dumps(metrics, indent=2))


def _recipe_name(state):
    return "finetune" if "init" in state else "kemo"


def _command(state, folder):
    """The ``kemo train`` command line that reproduces one run (written to ``runs/<folder>``)."""
    words = ["kemo train fer2013 --data DATA", f"--epochs {state['epochs']}",
             f"--precision {state['precision']}", f"--seed {state['seed']}"]
    if "init" in state:
        words += ["--recipe finetune",
                  f"--init runs/{Path(state['init']).parent.name}/best.keras"]
    words.append(f"--out runs/{Path(folder).name}")
    return " ".join(words)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
