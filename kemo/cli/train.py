"""``kemo train fer2013`` (the face model) and ``kemo train videos`` (a video recogniser)."""

from __future__ import annotations

from pathlib import Path

from kemo.cli.common import (
    EXIT_OK,
    face_options,
    read_labelled,
    report_failures,
    show_bars,
)
from kemo.errors import InputError, one_line


def run_train_fer2013(args):
    """Run ``kemo train fer2013``: train the face model, export its weights."""
    from kemo.training import export_weights, train_fer2013
    from kemo.weights import RUN_EXPORT

    out = Path(args.out)
    recipe = recipe_from_args(args)
    model, state = train_fer2013(args.data, recipe=recipe, epochs=args.epochs,
                                 checkpoint_dir=out, seed=args.seed, precision=args.precision,
                                 limit=args.limit, init=args.init, aligned=args.aligned,
                                 ferplus=args.ferplus, teachers=args.teacher or (),
                                 teacher_weight=args.teacher_weight, width=args.width,
                                 stem=args.stem, distribute=args.distribute,
                                 verbose=0 if args.quiet else 2)
    weights = out / RUN_EXPORT
    digest = export_weights(model, weights)
    scores = state["publictest"]
    print(f"PublicTest accuracy {100 * scores['accuracy']:.2f} % "
          f"({100 * scores['accuracy_flip']:.2f} % with flip averaging) after "
          f"{state['epoch']} epochs; weights {weights} (sha256 {digest})")
    print(f"use it: kemo predict VIDEO --weights {weights}  (Python: "
          f"VideoEmotionRecognizer(weights={str(weights)!r}))")
    return EXIT_OK


def recipe_from_args(args):
    """The :class:`kemo.training.Recipe` that ``kemo train fer2013`` options ask for."""
    import dataclasses

    from kemo.training import RECIPES

    crops = {name: value for name, value in (("shift", args.shift), ("zoom", args.zoom))
             if value is not None}  # unset: the recipe's own
    return dataclasses.replace(RECIPES[args.recipe], erasing=args.erasing, ema=args.ema,
                               mixup=args.mixup, cutmix=args.cutmix, warp=args.warp, **crops)


def check_train_videos(args):
    """Labels, fusion weights and output folder, checked before any video is read."""
    import numpy as np

    from kemo.datasets import CLASS_NAMES
    from kemo.recognizer import calibration_shortfall, check_save_folder

    args.labelled = read_labelled(args.videos, "train videos")
    labels = args.labelled[1]
    if len(np.unique(labels)) < 2:
        raise InputError(f"{args.videos}: all videos are {CLASS_NAMES[int(labels[0])]}; "
                         f"training needs videos of at least 2 emotions")
    short = calibration_shortfall(labels, args.calibration, args.cv)
    if short is not None:
        name, count = short
        raise InputError(f"class {name} has {count} video(s) in {args.videos}, but "
                         f"--calibration {args.calibration} fits --cv {args.cv} folds: give "
                         f"each class at least {args.cv} videos, lower --cv (2 at least), or "
                         f"use --calibration softmax (or auto)")
    fusion = args.fusion_weights
    if fusion is not None and fusion != "search":
        try:
            args.fusion_weights = [float(w) for w in fusion.split(",")]
        except ValueError:
            raise InputError(f"--fusion-weights must be 'search' or numbers separated by "
                             f"commas, got {fusion!r}") from None
    for option in ("finetune_epochs", "finetune_faces"):
        if getattr(args, option) is not None and not args.finetune:
            raise InputError(f"--{option.replace('_', '-')} sets the fine-tuning: add "
                             f"--finetune")
    check_save_folder(args.out)


def run_train_videos(args):
    """Run ``kemo train videos``: fit a recogniser and save its folder."""
    from kemo.recognizer import VideoEmotionRecognizer

    paths, labels, groups = args.labelled
    lstm = None
    if args.lstm:
        lstm = True if args.lstm_epochs is None else {"epochs": args.lstm_epochs}
    finetune = None
    if args.finetune:
        settings = {"epochs": args.finetune_epochs, "faces": args.finetune_faces}
        finetune = {k: v for k, v in settings.items() if v is not None} or True
    rec = VideoEmotionRecognizer(C=args.C, calibration=args.calibration, cv=args.cv,
                                 c3d=True if args.c3d else None,
                                 lstm=lstm, finetune=finetune,
                                 scores=args.scores,
                                 fusion_weights=args.fusion_weights, random_state=args.seed,
                                 errors="skip", verbose=show_bars(args))
    rec.set_params(faces=face_options(rec.face_preprocessor(), args))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # failures are listed below
        rec.fit(paths, labels, groups=groups)
    rec.save(args.out)
    branches = ", ".join(f"{name} {weight:.2f}" for name, _, weight in rec.members_)
    tuned = "" if finetune is None else f"; face model fine-tuned on {rec.finetune_faces_} faces"
    print(f"trained on {len(paths) - len(rec.failures_)} videos of {len(rec.classes_)} classes "
          f"({', '.join(rec.class_names_)}); branches: {branches}{tuned}; saved to {args.out}")
    failures = [one_line(f.error, f.source) for f in rec.failures_]
    return report_failures(failures, len(paths))
