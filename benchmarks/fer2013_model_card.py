"""Export a FER2013 training run as kemo's shipped model and write its model card.

Reads a checkpoint folder written by ``kemo train fer2013`` (``best.keras``:
the epoch with the best PublicTest accuracy, ``state.json``: the run's
history), rounds the weights to float16, writes into ``weights/``:

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
    parser.add_argument("--command", default=None, help="training command to quote in the card")
    args = parser.parse_args(argv)

    from kemo import weights as registry
    from kemo.classifier import FaceEmotionClassifier
    from kemo.datasets import CLASS_NAMES, load_fer2013
    from kemo.evaluation import evaluate
    from kemo.models import ResNet10
    from kemo.training import export_weights

    state = json.loads((args.run / "state.json").read_text())
    trained = keras.saving.load_model(args.run / "best.keras")
    model = ResNet10(input_shape=(48, 48, 1))  # float32 copy for export
    model.set_weights(trained.get_weights())
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
    metrics = {
        "fer2013_publictest_accuracy": round(report.accuracy, 4),
        "fer2013_publictest_accuracy_noflip": round(scores[False].accuracy, 4),
        "fer2013_publictest_mean_class_accuracy": round(report.mean_class_accuracy, 4),
        "best_epoch": state["best"]["epoch"],
        "epochs": state["epoch"],
    }
    entry = {**info.to_dict(), "metrics": metrics}
    (WEIGHTS_DIR / f"{NAME}.entry.json").write_text(json.dumps(entry, indent=2) + "\n")

    fig = report.plot_confusion_matrix(title="kemo ResNet-10, FER2013 PublicTest (flip TTA)")
    fig.savefig(WEIGHTS_DIR / f"{NAME}_confusion.png", dpi=110, bbox_inches="tight")

    history = "\n".join(
        f"| {h['epoch']} | {100 * h.get('accuracy', float('nan')):.2f} | "
        f"{100 * h.get('val_accuracy', float('nan')):.2f} |" for h in state["history"]
    )
    confusion = "\n".join(
        f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |"
        for name, row in zip(CLASS_NAMES, report.confusion, strict=True)
    )
    command = args.command or (
        f"kemo train fer2013 --data DATA --epochs {state['epochs']} "
        f"--precision {state['precision']} --checkpoint-dir RUN_DIR"
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
| training data | FER2013 Training (28,709 images); model chosen on PublicTest (3,589) |
| PrivateTest | never read: it is measured independently |
| recipe | `kemo` (kemo.training.RECIPES): SGD Nesterov momentum 0.9, 2-epoch warm-up to lr 0.05 \
then cosine to 0, batch 128, weight decay 5e-4, label smoothing 0.1; \
flip, rotation 10 deg, shift 0.1, zoom 0.1 |
| precision | {state['precision']} training, float32 inference |
| epochs | {state['epoch']} (best PublicTest epoch: {state['best']['epoch']}) |
| training wall time | {state['wall_seconds'] / 60:.0f} min on 2 CPU cores |
| seed | {state['seed']} |

## Command

    {command}

then

    python benchmarks/fer2013_model_card.py RUN_DIR --data DATA

A QUICK variant of the command (256 images, one epoch) runs in CI:
`tests/test_training.py`.
{state.get('note') and f'''
Note on this run: {state['note']}; the cosine schedule was re-planned at that step
(learning rate 0.0467 at the switch), so this exact run is reproduced by running 6 epochs
with `--epochs 36`, then continuing with `--epochs {state['epochs']}`.''' or ''}

## PublicTest accuracy (measured on the shipped float16 file)

| | accuracy |
|---|---|
| with flip averaging (default) | {100 * report.accuracy:.2f} % |
| without | {100 * scores[False].accuracy:.2f} % |
| mean per-class (with flip) | {100 * report.mean_class_accuracy:.2f} % |

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

| epoch | train accuracy (augmented) | PublicTest accuracy |
|---|---|---|
{history}
"""
    (WEIGHTS_DIR / f"{NAME}.md").write_text(card)
    print(card)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
