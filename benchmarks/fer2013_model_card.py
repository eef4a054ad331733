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
#: The card's speed section: a block of docs/results.json (``face_model_speed.py --record``).
SPEED = """
## Speed

`FaceEmotionClassifier.predict_proba` with its default settings (batch 256; flip averaging
for the uncertain faces, those whose two highest plain probabilities are less than
`flip_margin` = 0.4 apart), against every face mirrored, no flip, and the bare network, on the
PublicTest faces (`benchmarks/face_model_speed.py`):

<!-- results:face_model_speed.rates -->
<!-- /results:face_model_speed.rates -->
"""
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="checkpoint folder of the training run")
    parser.add_argument("--data", required=True, help="FER2013 location (file or folder)")
    parser.add_argument("--aligned", type=Path, metavar="CACHE.npz",
                        help="cache of FER2013 as kemo aligns it (kemo.training."
                        "realigned_fer2013): the card then gives PublicTest accuracy on "
                        "kemo's aligned crops beside the raw ones")
    parser.add_argument("--name", default=NAME,
                        help=f"registry name of the weights (default {NAME}; a model of "
                        "another shape or training gets a new name, so that recognisers saved "
                        "with the old one keep their features)")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR,
                        help="folder for the weights, entry and card (default: weights/; "
                        "another folder for a dry run)")
    args = parser.parse_args(argv)
    out, name = args.out, args.name
    out.mkdir(parents=True, exist_ok=True)

    from kemo import weights as registry
    from kemo.classifier import FaceEmotionClassifier
    from kemo.datasets import CLASS_NAMES, load_fer2013
    from kemo.evaluation import evaluate
    from kemo.models import ResNet10
    from kemo.models.resnet10 import WIDTHS, shape_options
    from kemo.training import (
        as_model_input,
        evaluate_images,
        export_weights,
        final_model,
        last_model,
        realigned_fer2013,
    )

    state = json.loads((args.run / "state.json").read_text())
    # A fine-tuned run names the run it started from (state["init"]): describe every stage
    # whose run folder is still here; earlier ones come from PREVIOUS.
    stages, folders = [state], [args.run]
    while "init" in stages[0] and (Path(stages[0]["init"]).parent / "state.json").is_file():
        folders.insert(0, Path(stages[0]["init"]).parent)
        stages.insert(0, json.loads((folders[0] / "state.json").read_text()))
    previous = PREVIOUS if "init" in stages[0] else []
    last = last_model(args.run)
    train = load_fer2013(args.data, subset="Training")
    model = final_model(last, as_model_input(train.images) / 255.0)
    options = shape_options(model)
    path = out / f"{name}.weights.h5"
    digest = export_weights(model, path, options=options)

    info = registry.WeightsInfo(
        name=name, architecture="ResNet10", filename=path.name, sha256=digest, shipped=True,
        input_shape=(48, 48, 1), color="gray", scale=1 / 255, classes=7,
        class_names=CLASS_NAMES, include_top=True, card=f"{name}.md", options=options,
    )
    registry.register(info, replace=True)
    # a dry run (--out elsewhere) scores its own file; the real one, the registered entry
    shipped_as = name if out == WEIGHTS_DIR else str(path)

    val = load_fer2013(args.data, subset="PublicTest")
    started = time.time()
    scores = {}
    for flip in (False, True):
        clf = FaceEmotionClassifier(weights=shipped_as, flip=flip)
        proba = clf.predict_proba(val.images)
        scores[flip] = evaluate(val.labels, proba)
    seconds = time.time() - started
    report = scores[True]
    # The same weights before BatchNorm recalibration, and the best stored epoch, for scale.
    x_val = as_model_input(val.images) / 255.0
    ablation = {}
    best = keras.saving.load_model(args.run / "best.keras", compile=False, safe_mode=True)
    for label, trained in (("last epoch, training BatchNorm statistics", last),
                           (f"best PublicTest epoch ({state['best']['epoch']}), training "
                            "BatchNorm statistics", best)):
        plain = ResNet10(input_shape=(48, 48, 1), **options)
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
        "epochs": sum(p["epochs"] for p in previous)
        + sum(s["epoch"] for s in stages),
    }
    entry = {**info.to_dict(), "metrics": metrics}
    (out / f"{name}.entry.json").write_text(json.dumps(entry, indent=2) + "\n")

    fig = report.plot_confusion_matrix(title="kemo ResNet-10, FER2013 PublicTest (flip TTA)")
    fig.savefig(out / f"{name}_confusion.png", dpi=110, bbox_inches="tight")

    confusion = "\n".join(
        f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |"
        for name, row in zip(CLASS_NAMES, report.confusion, strict=True)
    )
    commands = "\n\n".join([f"    {p['command']}" for p in previous] + [
        f"    {_command(s, f, options if i == 0 else {})}"
        for i, (s, f) in enumerate(zip(stages, folders, strict=True))])
    recipes = "; ".join([f"`{p['recipe']}` ({p['epochs']} epochs)" for p in previous] + [
        f"`{_recipe_name(s)}` ({s['epoch']} epochs{_extras(s)})" for s in stages])
    wall = sum(p["wall_seconds"] for p in previous) + sum(s["wall_seconds"] for s in stages)
    all_epochs = [p["epochs"] for p in previous] + [s["epoch"] for s in stages]
    seeds = [p["seed"] for p in previous] + [s["seed"] for s in stages]
    from face_model_study import section  # the study beside this script joins the card

    study_file = Path(__file__).resolve().parents[1] / "weights" / "fer2013_study.json"
    study = section(json.loads(study_file.read_text()) if study_file.is_file() else {})
    speed = SPEED
    if name != registry.DEFAULT_WEIGHTS:  # the recorded speed and study are the default's
        speed = (f"\n## Speed\n\n`python benchmarks/face_model_speed.py --data DATA --weights "
                 f"{name}` measures it; the recorded figures and the study are in the card of "
                 f"the default model, [{registry.DEFAULT_WEIGHTS}.md]"
                 f"({registry.DEFAULT_WEIGHTS}.md).\n")
        study = ""
    aligned_rows = ""
    card_command = (f"python benchmarks/fer2013_model_card.py runs/{Path(folders[-1]).name} "
                    f"--data DATA --name {name}"
                    + (f" --aligned runs/{args.aligned.name}" if args.aligned else ""))
    if args.aligned is not None:
        faces, found = realigned_fer2013(args.data, args.aligned, "PublicTest")
        shipped = FaceEmotionClassifier(weights=shipped_as)
        raw = np.mean(shipped.predict(val.images[found]) == val.labels[found])
        cut = np.mean(shipped.predict(faces[found]) == val.labels[found])
        aligned_rows = (
            "\n## The faces inference gives it\n\n"
            "kemo's faces come from its own detector and eye alignment, not from FER2013's "
            "cropper.\nEach PublicTest image upscaled to 192 px, re-detected and aligned by "
            f"kemo (a face in {found.sum()} of {len(found)}; `kemo.training.realign_faces`), "
            "scored with flip averaging:\n\n| faces | accuracy |\n|---|---|\n"
            f"| FER2013's own crops | {100 * raw:.2f} % |\n"
            f"| kemo's aligned crops of the same images | {100 * cut:.2f} % |\n")
        metrics["fer2013_publictest_aligned_accuracy"] = round(float(cut), 4)
        metrics["fer2013_publictest_aligned_raw_accuracy"] = round(float(raw), 4)
        (out / f"{name}.entry.json").write_text(
            json.dumps({**info.to_dict(), "metrics": metrics}, indent=2) + "\n")
    notes = "".join(
        f"\nNote on stage {i + 1}: {s['note']}. From then on it followed exactly the\n"
        f"{s['epochs']}-epoch schedule that the command above follows from the start; before,\n"
        "its learning rate was up to 4 % higher (the longer cosine decays more slowly).\n"
        for i, s in enumerate(stages) if s.get("note")
    )
    teachers = sorted({t for s in stages for t in s.get("soft_targets", {}).get("teachers", [])})
    if teachers:  # distillation: the teachers are part of what rebuilds the model
        notes += ("\n`--teacher` names earlier kemo models, shipped in `weights/` and each "
                  "rebuilt from its own card\n(" + ", ".join(f"`{t}`" for t in teachers)
                  + "): the targets are the label and the teachers' mean probabilities,\n"
                  "mixed by `--teacher-weight`. No model trained elsewhere is used.\n")
    history = "\n".join(
        f"| {stage + 1} | {h['epoch']} | {100 * h.get('accuracy', float('nan')):.2f} | "
        f"{100 * h.get('val_accuracy', float('nan')):.2f} |"
        for stage, s in enumerate(stages) for h in s["history"]
    )
    widths = [max(8, int(round(w * options.get("width", 1.0)))) for w in WIDTHS]
    stem = "3x3/1 stem" if options.get("stem") == "full" else "3x3/2 stem"
    crops = (f"shift {state['recipe']['shift']}, zoom {state['recipe']['zoom']}"
             if state["recipe"]["shift"] or state["recipe"]["zoom"] else "no random crops")
    staging = ("each later stage starts from the model its command names (`--init`: an "
               "earlier stage's best PublicTest epoch, `best.keras`, chosen on PublicTest's "
               "3,589 images, or its exported weights); " if len(all_epochs) > 1 else "")
    card = f"""# Model card: `{name}`

A per-face emotion model of kemo (`kemo.FaceEmotionClassifier(weights="{name}")`). A
ResNet-10 (Simon et al. 2016: {stem} + four one-block residual stages, widths
{widths[0]}-{widths[-1]}) with the paper's 512-d `fc1` before the classifier, on 48x48
grayscale faces.

| | |
|---|---|
| file | `{path.name}` ({path.stat().st_size / 1e6:.1f} MB, float16 weights) |
| sha256 | `{digest}` |
| parameters | {model.count_params():,} |
| input | 48x48x1 gray, pixels / 255 |
| classes | {", ".join(CLASS_NAMES)} (FER2013 order) |
| training data | FER2013 Training (28,709 images; with `--aligned`, each image drawn raw \
or as kemo's detector and aligner cut it, with equal chance); {staging}the shipped weights are \
the last epoch of the last stage, with BatchNorm statistics recomputed on the Training images \
without augmentation (`kemo.training.recalibrate_batchnorm`) |
| PrivateTest | never read: it is measured independently |
| recipe | {recipes}; see `kemo.training.RECIPES`: SGD with Nesterov momentum 0.9, cosine \
learning rate (warm-up to 0.05 for `kemo`, restart at 0.01 for `finetune`), batch 128, weight \
decay 5e-4, label smoothing 0.1; flip, rotation {state['recipe']['rotation']:g} deg, {crops} |
| precision | {state['precision']} training, float32 inference |
| epochs | {" + ".join(str(e) for e in all_epochs)} (shipped: the last) |
| training wall time | {wall / 60:.0f} min on 2 CPU cores (shared with other work) |
| seeds | {", ".join(str(s) for s in seeds)} |

## Commands

Retrain from scratch (each stage resumes from its folder if interrupted):

{commands}

then write this card and the weights entry:

    {card_command}

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
{speed}{aligned_rows}
{study}
## Per-class accuracy (with flip averaging)

```
{report}
```

## Confusion matrix (counts; rows true, columns predicted)

| true \\ predicted | {" | ".join(CLASS_NAMES)} |
|---|{"---|" * len(CLASS_NAMES)}
{confusion}

![confusion matrix]({name}_confusion.png)

## Training history

| stage | epoch | train accuracy (augmented) | PublicTest accuracy |
|---|---|---|---|
{history}
"""
    from reproduce import render_markdown  # the speed table, from docs/results.json

    results = Path(__file__).resolve().parents[1] / "docs" / "results.json"
    (out / f"{name}.md").write_text(render_markdown(card, json.loads(results.read_text())))
    print(card)
    print(json.dumps(metrics, indent=2))


# The stages of the first shipped file (sha256 bb56116c..., 66.90 % PublicTest), whose run
# folders are gone; the later stages start from that file, exported by the third one.
PREVIOUS = [
    {"recipe": "kemo", "epochs": 26, "seed": 0, "wall_seconds": 80 * 60, "command":
     "kemo train fer2013 --data DATA --epochs 26 --precision mixed_bfloat16 --seed 0 "
     "--out runs/fer2013_resnet10"},
    {"recipe": "finetune", "epochs": 6, "seed": 1, "wall_seconds": 33 * 60, "command":
     "kemo train fer2013 --data DATA --epochs 6 --precision mixed_bfloat16 --seed 1 "
     "--recipe finetune --init runs/fer2013_resnet10/best.keras --out runs/fer2013_resnet10_ft"},
    {"recipe": "finetune", "epochs": 32, "seed": 2, "wall_seconds": 67 * 60, "command":
     "kemo train fer2013 --data DATA --epochs 32 --precision mixed_bfloat16 --seed 2 "
     "--recipe finetune --init runs/fer2013_resnet10_ft/best.keras "
     "--out runs/fer2013_resnet10_ft2"},
]


def _recipe_name(state):
    return "finetune" if "init" in state else "kemo"


def _extras(state):
    recipe = state["recipe"]
    parts = [f"random erasing {recipe['erasing']}" if recipe.get("erasing") else "",
             f"weight EMA {recipe['ema']}" if recipe.get("ema") else "",
             f"mixup {recipe['mixup']}" if recipe.get("mixup") else "",
             f"cutmix {recipe['cutmix']}" if recipe.get("cutmix") else "",
             "rotation, shift and zoom in one resampling (`--warp single`)"
             if recipe.get("warp") == "single" else "",
             "aligned faces mixed in" if state.get("aligned") else ""]
    return "".join(f", {p}" for p in parts if p)


def _command(state, folder, options):
    """The ``kemo train`` command line that reproduces one run (written to ``runs/<folder>``).

    ``options``: the shape of a new model (``--width``, ``--stem``); a stage that starts from
    another (``--init``) takes that one's shape.
    """
    from kemo.training import RECIPES

    words = ["kemo train fer2013 --data DATA", f"--epochs {state['epochs']}",
             f"--precision {state['precision']}", f"--seed {state['seed']}"]
    if "init" in state:
        init = Path(state["init"])
        words += ["--recipe finetune", f"--init runs/{init.parent.name}/{init.name}"]
    else:
        words += [f"--{key} {value}" for key, value in options.items()]
    recipe = state["recipe"]
    named = RECIPES[_recipe_name(state)]
    words += [f"--{key} {recipe[key]:g}" for key in ("shift", "zoom")
              if recipe[key] != getattr(named, key)]
    words += [f"--{key} {recipe[key]}" for key in ("erasing", "ema", "mixup", "cutmix")
              if recipe.get(key)]
    if recipe.get("warp", "chained") != "chained":
        words.append(f"--warp {recipe['warp']}")
    if state.get("aligned"):
        words.append("--aligned runs/fer2013_aligned.npz")
    soft = state.get("soft_targets", {})
    if soft.get("ferplus"):
        words.append(f"--ferplus {soft['ferplus']:g}")
    if soft.get("teachers"):
        words += ["--teacher", *soft["teachers"], f"--teacher-weight {soft['teacher_weight']:g}"]
    words.append(f"--out runs/{Path(folder).name}")
    if state.get("targets") and not soft:  # runs from before "soft_targets": a digest only
        words.append(f"  # with the --ferplus / --teacher options that made its soft targets "
                     f"(sha256 {state['targets'][:12]}...)")
    return " ".join(words)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
