"""Accuracy of kemo's video recogniser on the 40 CK+ clips (neutral to peak, 10 subjects).

1. The pretrained default, through the command line: ``kemo predict`` on every clip (each
   printed line is one clip's label), scored against the clip labels. The clips hold 6 of
   FER's 7 classes (no Neutral, no contempt), so the score is also given with the Neutral
   column ignored.
2. Every pooling of the pretrained recogniser (``VideoEmotionRecognizer(pooling=...)``), on
   the whole clips, on the clips cut to their second half (the emotion then fills the clip),
   and on their first 3 frames, which are neutral in CK+ (a pooling must not invent an
   emotion there). Faces come from the cache ``kemo predict`` wrote and the face model scores
   each clip once; only the pooling changes between rows.
3. A recogniser fitted on the clips (aggregated ResNet-10 fc1 features + linear SVM), scored
   with leave-one-subject-out folds (:func:`kemo.protocols.cross_validate`, as ``kemo evaluate
   --protocol loso``): every clip is predicted by a model that never saw its subject. Faces
   are found once (face finding learns nothing, so sharing it leaks nothing). It is run twice:
   with the face model as shipped (the paper's pipeline, ``scores=False``), with kemo's scores
   branch added (the default: a logistic regression on each clip's pooled face-model
   probabilities, fused with the SVM), and with the face model fine-tuned in each fold on that
   fold's training faces first (``finetune``, the paper's second step; ``--finetune-epochs``,
   ``--batchnorm``).
4. ``--ckplus48``: the same fitted recognisers on CK+48 instead (each labelled sequence's
   last 3 frames, already cropped to 48x48, as a 3-frame video: ``VideoFaces.from_faces``),
   with 10 folds of whole subjects (``kemo evaluate --protocol kfold:10``).

``--record`` stores the tables of the run in ``docs/results.json`` and regenerates
``docs/results.md``: the clips' tables (``ckplus_videos``, and the ``kemo predict`` labels as
``current_model``, which the README quotes), or with ``--ckplus48`` the CK+48 table.

Usage (from the repository root)::

    nice -n 10 python benchmarks/ckplus_videos.py [--data DIR] [--every K]
        [--finetune-epochs N [N ...]] [--batchnorm frozen|adapt]
        [--finetune-faces all|expressive [...]]
        [--fitted-only | --ckplus48] [--record]

``--data`` defaults to ``$KEMO_DATA``, else ``../shared/data`` next to the checkout.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # reproduce.py's results file helpers


def data_root(path):
    if path:
        return Path(path)
    if os.environ.get("KEMO_DATA"):
        return Path(os.environ["KEMO_DATA"])
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def pretrained(paths, labels, every, cache, pooling=None):
    """Run `kemo predict` on the clips (``pooling``: its ``--pooling``, None for the default);
    return (7-way accuracy, 6-class accuracy, seconds)."""
    from kemo.datasets import CLASS_NAMES

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "predictions.json"
        option = [] if pooling is None else ["--pooling", pooling]
        command = [sys.executable, "-m", "kemo.cli", "predict", *paths, "--every", str(every),
                   *option, "--json", str(out), "--cache", cache, "--quiet"]
        print("$ kemo predict <40 CK+ clips> --every", every, *option, "--json predictions.json")
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


def poolings(paths, labels, every, cache):
    """Accuracy of every pooling on the whole clips, their second halves and their onsets.

    Returns the table's header and rows, and whether the default pooling applied here gave
    the same labels as ``kemo predict``.
    """
    from kemo.recognizer import VideoEmotionRecognizer
    from kemo.timeline import DEFAULT_POOLING, NEUTRAL, POOLINGS, pool

    rec = VideoEmotionRecognizer()
    prep = rec.face_preprocessor().set_params(detect_every=every, cache_dir=cache).fit()
    faces = prep.transform(list(paths))  # from the cache written by `kemo predict`
    analyses = [rec.analyze(found) for found in faces]  # the face model runs once per clip
    cuts = {  # rows kept of each clip, and the true label of the cut clips
        "whole clips": (lambda a: np.ones(len(a.frame_indices), bool), labels),
        "second halves": (lambda a: a.frame_indices >= a.frames_read // 2, labels),
        "onsets (first 3 frames, Neutral)": (lambda a: a.frame_indices < 3,
                                            np.full(len(labels), NEUTRAL)),
    }
    methods = [(name, lambda p, t, name=name: pool(p, name, t)) for name in POOLINGS]
    methods.append(("last 3 frames (reads the CK+ order; not offered)",
                    lambda p, t: p[-3:].mean(axis=0)))
    header = ["pooling"] + [f"{cut} (7 classes / no Neutral)" for cut in list(cuts)[:2]] + [
        list(cuts)[2]]
    table = []
    for name, method in methods:
        cells = [f"`{name}`" + (" (default)" if name == DEFAULT_POOLING else "")]
        for cut, (keep, truth) in cuts.items():
            proba = []
            for a in analyses:
                rows_kept = keep(a)
                proba.append(method(a.frame_probabilities[rows_kept].astype(np.float64),
                                    a.frame_indices[rows_kept] / a.fps))
            proba = np.array(proba)
            seven = 100 * np.mean(proba.argmax(axis=1) == truth)
            if cut.startswith("onsets"):
                cells.append(f"{seven:.1f}")
            else:
                six = 100 * np.mean(proba[:, :NEUTRAL].argmax(axis=1) == truth)
                cells.append(f"{seven:.1f} / {six:.1f}")
        table.append(cells)
    default = np.array([a.probabilities.argmax() for a in analyses])
    applied = np.array([pool(a.frame_probabilities, DEFAULT_POOLING,
                             a.frame_indices / a.fps).argmax() for a in analyses])
    return header, table, bool(np.array_equal(default, applied))


def fitted(paths, labels, subjects, every, cache, params):
    """Leave-one-subject-out predictions of a fitted recogniser (``params``: its settings)."""
    from kemo.evaluation import evaluate
    from kemo.protocols import cross_validate
    from kemo.recognizer import VideoEmotionRecognizer

    rec = VideoEmotionRecognizer(**params)
    prep = rec.face_preprocessor().set_params(detect_every=every, cache_dir=cache).fit()
    start = time.perf_counter()
    faces = prep.transform(list(paths))  # from the cache written by `kemo predict`
    rec.set_params(faces=prep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = cross_validate(rec, faces, labels, subjects, "loso")
    seconds = time.perf_counter() - start
    predicted = result.classes[result.proba.argmax(axis=1)]
    report = evaluate(labels, predicted)  # the 6 classes present, FER names
    return report, seconds


def settings(epochs, batchnorm, faces=("all",)):
    """``{row name: recogniser parameters}`` of the fitted rows: as shipped, with the scores
    branch, and fine-tuned, a row per number of ``epochs`` and choice of ``faces`` (the name
    tells ``batchnorm`` and ``faces`` when they are not the default)."""
    rows = {"ResNet-10 fc1 as shipped, mean + variance aggregation, linear SVM": {"scores": False},
            "the same, fused 2:1 with kemo's scores branch (the face model's pooled "
            "probabilities, logistic regression; default)": {},
            }
    name = "the same with scores, face model fine-tuned in each fold"
    suffix = "" if batchnorm == "frozen" else f", BatchNorm {batchnorm}ed"
    rows.update({f"{name} ({n} epochs{suffix}"
                 + ("" if which == "all" else f", {which} half of the faces") + ")":
                 {"finetune": {"epochs": n, "batchnorm": batchnorm, "faces": which}}
                 for which in faces for n in epochs})
    return rows


def unmeasured(old, new):
    """The recorded rows ``old`` of settings (first cell) that the run's rows ``new`` lack:
    one run per setting is enough, so a run that measures some settings keeps the others."""
    measured = {row[0] for row in new}
    return [row for row in old if row[0] not in measured]


def ckplus48(data, finetune_epochs, batchnorm, record):
    """The fitted recogniser, as shipped and fine-tuned in each fold (``finetune_epochs``: a
    row per value; ``batchnorm``: their setting), on CK+48 (10 subject folds); print the
    table and, with ``record``, store it in docs/results.json, keeping the rows of other
    settings recorded before."""
    from reproduce import ROOT, Settings, load_ck48, recorded_entry, update_results

    from kemo.evaluation import evaluate
    from kemo.faces import VideoFaces
    from kemo.protocols import cross_validate
    from kemo.recognizer import VideoEmotionRecognizer

    ck = load_ck48(data, Settings())  # the CK+48 set of reproduce.py's Table II
    videos = [VideoFaces.from_faces(faces) for faces in ck.faces]
    labels, subjects = ck.labels, ck.subjects
    protocol = (f"10 folds of whole subjects (`kemo evaluate --protocol kfold:10`), each of "
                f"the {len(videos)} sequences scored once")
    print(f"CK+48: {len(videos)} sequences (last 3 frames each), {len(set(subjects))} subjects")
    rows, today = [], time.strftime("%Y-%m-%d", time.gmtime())
    for name, params in settings(finetune_epochs, batchnorm).items():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = cross_validate(VideoEmotionRecognizer(**params), videos, labels,
                                    subjects, "kfold:10")
        report = evaluate(labels, result.classes[result.proba.argmax(axis=1)])
        seconds = time.perf_counter() - start
        right = round(report.accuracy * len(videos))
        rows.append([name, protocol, f"{100 * report.accuracy:.2f} % ({right}/{len(videos)})",
                     f"{100 * report.mean_class_accuracy:.2f} %", f"{seconds / 60:.0f} min",
                     today])
        print(f"{name}: {rows[-1][2]}, mean class accuracy {rows[-1][3]}; {seconds:.0f} s")
        print(report, "\n")
    if record:
        entry = recorded_entry(
            "The fitted recogniser on CK+48",
            "python benchmarks/ckplus_videos.py --ckplus48 --finetune-epochs N "
            "[--batchnorm adapt] --record",
            {"fitted": {"header": ["recogniser", "protocol", "accuracy", "mean class accuracy",
                                   "time", "measured"], "rows": rows}},
            machine=f"{os.cpu_count()} CPU cores shared with other jobs (a training run), "
                    f"no GPU; times are wall times under that load",
            measured="on the day of each row, one run per setting (the shipped row is rerun "
                     "by each)")

        def store(results):
            # rows of other --finetune-epochs runs are kept: one run per setting is enough
            old = results.setdefault("benchmarks", {}).get("ckplus48_fitted", {})
            kept = [r for r in unmeasured(old.get("tables", {}).get("fitted", {}).get("rows", []),
                                          rows) if r[1] == protocol]
            # rows from before the date column: the day their run recorded
            kept = [r + [old["measured"][:10]] if len(r) < len(rows[0]) else r for r in kept]
            # the shipped row first, then by epochs
            entry["tables"]["fitted"]["rows"] = sorted(
                kept + rows, key=lambda r: ([int(n) for n in re.findall(r"\((\d+) epochs", r[0])],
                                           "BatchNorm adapted" in r[0]))
            results["benchmarks"]["ckplus48_fitted"] = entry

        update_results(ROOT / "docs", store)
        print("recorded in docs/results.json (benchmarks.ckplus48_fitted) and docs/results.md")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data root or the ckplus_emopy folder")
    parser.add_argument("--every", type=int, default=5, help="face detection every K frames")
    parser.add_argument("--finetune-epochs", type=int, nargs="+", default=[3], metavar="N",
                        help="epochs of the fine-tuned rows, one row per value (default 3, "
                        "kemo's default)")
    parser.add_argument("--batchnorm", choices=["frozen", "adapt"], default="frozen",
                        help="BatchNorm in the fine-tuned rows: kept at its FER2013 statistics "
                        "(frozen, kemo's default) or trained on the videos' faces (adapt)")
    parser.add_argument("--finetune-faces", choices=["all", "expressive"], nargs="+",
                        default=["all"], help="faces the fine-tuned rows train on, a row per "
                        "value: all (kemo's default) or the expressive half of each clip's")
    parser.add_argument("--fitted-only", action="store_true",
                        help="only the fitted recogniser, with and without fine-tuning")
    parser.add_argument("--ckplus48", action="store_true",
                        help="only the fitted recogniser on CK+48, 10 subject folds")
    parser.add_argument("--record", action="store_true",
                        help="store the tables in docs/results.json and docs/results.md")
    args = parser.parse_args()
    if args.ckplus48:
        root = data_root(args.data)
        return ckplus48(root.parent if root.name == "ckplus_emopy" else root,
                        args.finetune_epochs, args.batchnorm, args.record)

    clips(data_root(args.data), args)


def clips(data, args):
    """The 40 CK+ clips: ``kemo predict``, the poolings, the fitted recognisers (see the module
    docstring); with ``args.record``, store the tables in docs/results.json."""
    from kemo.datasets import load_ckplus
    from kemo.timeline import DEFAULT_POOLING

    ck = load_ckplus(data)
    paths, labels = [str(p) for p in ck.paths], ck.labels
    n, n_subjects = len(paths), len(set(ck.subjects))
    print(f"CK+ clips: {n} videos, {n_subjects} subjects, classes "
          f"{sorted(set(labels.tolist()))} (FER ids; no Neutral, no contempt)\n")
    tables = {}
    with tempfile.TemporaryDirectory() as cache:
        if not args.fitted_only:
            predicted = []
            for pooling in ("mean", None):
                seven, six, seconds = pretrained(paths, labels, args.every, cache, pooling)
                name = f"{pooling or DEFAULT_POOLING} pooling" + (" (default)" if not pooling
                                                                  else "")
                print(f"\npretrained, {name}, kemo predict: {100 * seven:.2f} % "
                      f"({round(seven * n)}/{n}) over FER's 7 classes; {100 * six:.2f} % with "
                      f"the Neutral column ignored; {seconds:.1f} s\n")
                predicted.append([
                    "`kemo predict VIDEOS" + (f" --pooling {pooling}`" if pooling else "`"),
                    "MTCNN every 5th frame, tracked between (default)",
                    f"{pooling} (default class balance)" if pooling else
                    f"{DEFAULT_POOLING} (default, with the default class balance)",
                    f"{round(seven * n)}/{n}", f"{100 * seven:.2f} %"])
            tables["ckplus_labels"] = {"header": ["command", "faces", "pooling",
                                                  "CK+ clips right", "accuracy (7 classes)"],
                                       "rows": predicted}
            start = time.perf_counter()
            header, rows, same = poolings(paths, labels, args.every, cache)
            print(f"pooling of the pretrained recogniser, accuracy (%) on the {n} clips "
                  f"({time.perf_counter() - start:.1f} s; the default here gives kemo "
                  f"predict's labels: {same}):")
            for cells in [header, ["---"] * len(header), *rows]:
                print("| " + " | ".join(cells) + " |")
            tables["pooling"] = {"header": header, "rows": rows}
        configs = settings(args.finetune_epochs, args.batchnorm, args.finetune_faces)
        protocol = f"leave one subject out ({n_subjects} folds), kemo.protocols.cross_validate"
        fitted_rows = []
        for name, params in configs.items():
            report, seconds = fitted(paths, labels, ck.subjects, args.every, cache, params)
            fitted_rows.append([name, protocol, f"{100 * report.accuracy:.2f} % "
                                f"({round(report.accuracy * n)}/{n})",
                                f"{100 * report.mean_class_accuracy:.2f} %"])
            print(f"fitted recogniser: {name}, {protocol}: {fitted_rows[-1][2]}, mean class "
                  f"accuracy {fitted_rows[-1][3]}; {seconds:.1f} s")
            print(report, "\n")
        tables["fitted"] = {"header": ["recogniser", "protocol", "accuracy",
                                       "mean class accuracy"], "rows": fitted_rows}
    print(f"\nchance: {100 / len(set(labels.tolist())):.2f} % (6 classes); majority class "
          f"{100 * np.bincount(labels).max() / len(labels):.2f} %")
    if args.record:
        record_clips(tables)


def record_clips(tables):
    """Store the clips' tables in docs/results.json (``ckplus_videos``; the ``kemo predict``
    labels as ``current_model``); tables this run did not make (``--fitted-only``) are kept,
    and so are the fitted rows of settings this run did not measure (one run per setting is
    enough; they follow the rows of this run, so that its as-shipped rows stay first)."""
    from reproduce import ROOT, recorded_entry, update_results

    command = ("python benchmarks/ckplus_videos.py --data ../shared/data [--fitted-only "
               "--finetune-faces expressive] --record")

    def store(results):
        bench = results.setdefault("benchmarks", {})
        own = {k: v for k, v in tables.items() if k != "ckplus_labels"}
        old = bench.get("ckplus_videos", {}).get("tables", {})
        if "fitted" in own and "fitted" in old:
            rows = own["fitted"]["rows"]
            kept = unmeasured(old["fitted"]["rows"], rows)
            own["fitted"] = {**own["fitted"], "rows": rows + kept}
        bench["ckplus_videos"] = recorded_entry(
            "CK+ clips, end to end", command, {**old, **own})
        if "ckplus_labels" in tables:
            bench["current_model"] = recorded_entry(
                "CK+ clips, labels of `kemo predict` with the current shipped model", command,
                {"ckplus_labels": tables["ckplus_labels"]})

    update_results(ROOT / "docs", store)
    print("recorded in docs/results.json (benchmarks.ckplus_videos, benchmarks.current_model) "
          "and docs/results.md")


if __name__ == "__main__":
    main()
