"""``kemo evaluate``: accuracy of a recogniser on labelled videos, or of a cross-validation."""

from __future__ import annotations

import io
import json
from pathlib import Path

from kemo._files import write_atomic
from kemo.cli.common import (
    check_weights,
    csv_text,
    face_options,
    read_labelled,
    recognizer_for,
    report_failures,
    show_bars,
)
from kemo.errors import InputError, one_line


def check_evaluate(args):
    """Read the labelled videos and check the options before any video is read."""
    args.labelled = read_labelled(args.videos, "evaluate")
    if args.model_config and not args.protocol:
        raise InputError("--model-config sets the recogniser that --protocol cross-validates; "
                         "add --protocol loso or --protocol kfold:K")
    if args.protocol:
        if args.model:
            raise InputError("--protocol fits a new recogniser in every fold: give its "
                             "settings with --model-config, not a trained --model")
        if args.scheduler:
            raise InputError("--protocol runs on this machine; drop --scheduler")
        if args.labelled[2] is None:
            raise InputError(f"--protocol keeps subjects apart, but {args.videos} names none: "
                             f"use a CK+ folder or a list of 'path,label,group' lines")
        args.config = _model_config(args.model_config)
    check_weights(args)


def _model_config(text):
    """The ``--model-config`` parameters: a dict from JSON text or a JSON file."""
    if not text:
        return {}
    source = text
    if Path(text).is_file():
        try:
            source = Path(text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--model-config {text}: cannot read it ({exc})") from None
    elif not text.lstrip().startswith(("{", "[")):
        raise InputError(f"--model-config {text}: no such file; give a JSON file or JSON text "
                         f"such as '{{\"calibration\": \"softmax\"}}'")
    try:
        config = json.loads(source)
    except ValueError as exc:
        raise InputError(f"--model-config {text}: not JSON ({exc})") from None
    if not isinstance(config, dict):
        raise InputError(f"--model-config {text}: expected a JSON object of recogniser "
                         f"parameters, got {type(config).__name__}")
    return config


def _evaluate_protocol(args):
    """``kemo evaluate --protocol``: subject-independent predictions of a configuration."""
    import numpy as np

    from kemo.evaluation import evaluate
    from kemo.protocols import cross_validate
    from kemo.recognizer import VideoEmotionRecognizer, _params_from_json

    paths, labels, groups = args.labelled
    config = dict(args.config)
    if args.weights:
        config["weights"] = args.weights
    try:
        rec = VideoEmotionRecognizer(**_params_from_json(config))
    except TypeError as exc:
        known = sorted(VideoEmotionRecognizer().get_params(deep=False))
        raise InputError(f"--model-config: {exc}; the parameters are {known}") from None
    rec._check_params()  # a bad value is reported before faces are searched
    rec.set_params(faces=face_options(rec.face_preprocessor(), args), verbose=show_bars(args))
    result = cross_validate(rec, paths, labels, groups, args.protocol)
    ok = result.fold >= 0
    predicted = result.classes[np.argmax(result.proba[ok], axis=1)]
    report = evaluate(labels[ok], predicted, labels=list(result.classes),
                      class_names=list(result.class_names))
    print(f"protocol {args.protocol}: {len(result.folds)} folds by subject; each video is "
          f"predicted by a recogniser fitted without its subject")
    print(report)
    failures = [one_line(f.error, f.source) for f in result.failures]
    if args.out:
        out = Path(args.out)
        folds = [{"fold": k, "test_subjects": sorted({str(g) for g in groups[test]}),
                  "train_subjects": sorted({str(g) for g in groups[train]}),
                  "test_videos": len(test), "train_videos": len(train)}
                 for k, (train, test) in enumerate(result.folds)]
        document = {"protocol": args.protocol, "model_config": config,
                    "videos": int(ok.sum()), "folds": folds, **report.to_dict(),
                    "failures": failures}
        write_atomic(out / "report.json", json.dumps(document, indent=1) + "\n")
        names = list(result.class_names)
        rows = [[p, str(g), k, names[list(result.classes).index(t)], names[int(np.argmax(pr))],
                 *(f"{v:.6f}" for v in pr)]
                for p, g, k, t, pr in zip(paths, groups, result.fold, labels, result.proba,
                                          strict=True) if k >= 0]
        write_atomic(out / "predictions.csv",
                     csv_text(["path", "group", "fold", "true", "predicted", *names], rows))
        buffer = io.BytesIO()
        report.plot_confusion_matrix().savefig(buffer, format="png", dpi=120)
        write_atomic(out / "confusion.png", buffer.getvalue())
        print(f"report.json, predictions.csv and confusion.png written to {out}")
    return report_failures(failures, len(paths))


def run_evaluate(args):
    """Run ``kemo evaluate``; return the exit status."""
    import warnings

    import numpy as np

    from kemo.evaluation import evaluate

    if args.protocol:
        return _evaluate_protocol(args)
    paths, labels, _ = args.labelled
    rec = recognizer_for(args, errors="skip")
    rec.set_params(verbose=show_bars(args))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # failures are listed below
        proba = rec.predict_proba(paths)
    ok = ~np.isnan(proba).any(axis=1)
    if not ok.any():
        raise InputError(f"no video of {args.videos} could be analysed: "
                         f"{rec.failures_[0].error}")
    classes = rec.classes_
    predicted = classes[np.argmax(proba[ok], axis=1)]
    report = evaluate(labels[ok], predicted, labels=list(classes),
                      class_names=list(rec.class_names_))
    print(report)
    if args.out:
        out = Path(args.out)
        document = {"model": args.model or args.weights or "pretrained",
                    "videos": int(ok.sum()),
                    **report.to_dict(),
                    "failures": [one_line(f.error, f.source) for f in rec.failures_]}
        write_atomic(out / "report.json", json.dumps(document, indent=1) + "\n")
        names = list(rec.class_names_)
        rows = [[p, names[list(classes).index(t)] if t in classes else str(t),
                 names[int(np.argmax(pr))], *(f"{v:.6f}" for v in pr)]
                for p, t, pr, good in zip(paths, labels, proba, ok, strict=True) if good]
        write_atomic(out / "predictions.csv",
                     csv_text(["path", "true", "predicted", *names], rows))
        buffer = io.BytesIO()
        report.plot_confusion_matrix().savefig(buffer, format="png", dpi=120)
        write_atomic(out / "confusion.png", buffer.getvalue())
        print(f"report.json, predictions.csv and confusion.png written to {out}")
    failures = [one_line(f.error, f.source) for f in rec.failures_]
    return report_failures(failures, len(paths))
