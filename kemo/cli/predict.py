"""``kemo predict``: the emotion of each video, written as JSON, CSV, timelines and videos."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from kemo.cli.common import (
    BATCH_ERRORS,
    VIDEO_SUFFIXES,
    check_file,
    check_videos,
    check_weights,
    cluster_map,
    csv_text,
    file_sha256,
    progress_bar,
    recognizer_for,
    report_failures,
    show_bars,
    unique_stems,
    write_line,
    write_output,
)
from kemo.errors import InputError, one_line


class Journal:
    """Results of finished videos, appended one JSON line each, so a killed run resumes.

    The journal sits beside the first output file (``<file>.partial``); each line holds a
    video's absolute path, sha256, the settings and its result. A rerun reuses the lines whose
    path, content and settings match. The journal is removed once the outputs are written.
    """

    def __init__(self, path, settings):
        self.path = None if path is None else Path(f"{path}.partial")
        self.settings = settings
        self.done = {}
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    item = json.loads(line)
                    key = (item["path"], item["sha256"], item["settings"])
                    self.done[key] = item["result"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by the kill

    def get(self, path, sha):
        """The stored result of a video, or None."""
        return self.done.get((path, sha, self.settings))

    def add(self, path, sha, result):
        """Append a finished video's result, flushed to disk."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"path": path, "sha256": sha, "settings": self.settings,
                           "result": result})
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(line + "\n")
            file.flush()
            os.fsync(file.fileno())

    def close(self):
        """Remove the journal (all outputs are written)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def settings_key(rec, args):
    """A digest of everything that changes a video's result."""
    from kemo.recognizer import _params_to_json

    model = "pretrained"
    if args.model:
        model = file_sha256(Path(args.model) / "kemo_model.json")
    elif args.weights and Path(args.weights).is_file():
        model = file_sha256(args.weights)
    settings = {"model": model, "params": _params_to_json(rec), "tracks": args.tracks,
                "timeline": bool(args.timeline)}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _annotate_targets(args):
    """The annotated video of each of ``args.videos``, checked before any work.

    One video and a video file name: that file. Otherwise a folder, created if needed,
    holding ``<video name>.annotated.mp4`` for each video (``_2``, ``_3``... for videos of
    one name).

    Raises:
        InputError: one file name for several videos, a file type that cannot be written, a
            name that is neither a video file nor a folder, or a folder that cannot be made.
    """
    from kemo.video import WRITE_SUFFIXES

    if not args.annotate:
        return None
    out = Path(args.annotate)
    suffix = out.suffix.lower()
    if suffix in VIDEO_SUFFIXES and not out.is_dir():
        if len(args.videos) > 1:
            raise InputError(f"--annotate {out} names one file, but {len(args.videos)} videos "
                             f"are given: name a folder to hold their annotated videos")
        if suffix not in WRITE_SUFFIXES:
            raise InputError(f"--annotate {out}: kemo cannot write {suffix} videos; name a "
                             f"{' '.join(WRITE_SUFFIXES)} file")
        _make_folder(out.parent, out)
        return [out]
    if suffix and not out.is_dir():
        raise InputError(f"--annotate {out}: neither a video file name "
                         f"({' '.join(WRITE_SUFFIXES)}) nor an existing folder")
    _make_folder(out, out)
    return [out / f"{stem}.annotated.mp4" for stem in unique_stems(args.videos)]


def _make_folder(folder, given):
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--annotate {given}: cannot make the folder {folder} "
                         f"({exc.strerror or exc})") from None


def check_predict(args):
    """Check output files, videos, model and ``--annotate`` before any work."""
    outputs = [f for f in (args.json, args.csv, args.timeline, args.segments) if f]
    if len(outputs) != len(set(outputs)) or outputs.count("-") > 1:
        raise InputError("--json, --csv, --timeline and --segments must name different files")
    check_videos(args)
    check_weights(args)
    args.annotated = _annotate_targets(args)


def _analysis_job(rec, args):
    """What the workers of ``--scheduler`` run for ``kemo predict``: (function, state)."""
    from kemo import parallel

    return parallel.analyze, (parallel.portable_recognizer(rec), args.tracks)


def _summary(path, result):
    probs = result["probabilities"]
    cells = "  ".join(f"{name} {p:.3f}" for name, p in probs.items())
    lines = [f"{path}: {result['label']} ({probs[result['label']]:.3f})  {cells}"]
    for track in result["tracks"][1:]:
        p = track["probabilities"]
        lines.append(f"  face {track['track']}: {track['label']} ({p[track['label']]:.3f})  "
                     + "  ".join(f"{name} {v:.3f}" for name, v in p.items()))
    return "\n".join(lines)


def run_predict(args):
    """Run ``kemo predict``; return the exit status."""
    outputs = [f for f in (args.json, args.csv, args.timeline, args.segments) if f]
    files = [f for f in outputs if f != "-"]
    echo = sys.stderr if "-" in outputs else sys.stdout
    rec = recognizer_for(args)
    journal = Journal(files[0] if files else None, settings_key(rec, args))
    results, failures = [], []
    resumed = 0
    remote = cluster_map(*_analysis_job(rec, args), {
        i: v for i, v in enumerate(args.videos)
        if Path(v).is_file() and journal.get(str(Path(v).resolve()), file_sha256(v)) is None})
    # one bar over the videos, and the face stage's own bar over each video's frames
    videos = progress_bar(args.videos, not show_bars(args) or len(args.videos) == 1,
                          desc="videos", unit="video")
    for i, video in enumerate(videos):
        target = args.annotated[i] if args.annotated else None
        try:
            check_file(video)
            path, sha = str(Path(video).resolve()), file_sha256(video)
            result = journal.get(path, sha)
            if result is not None and target and (result.get("annotated") != str(target)
                                                  or not target.is_file()):
                result = None  # the annotated video is wanted elsewhere now: draw it again
            if result is not None:
                resumed += 1
            else:
                if remote is not None and i in remote:  # computed on the cluster
                    analysis = remote.result(i)
                else:
                    analysis = rec.analyze(video, tracks=args.tracks)
                result = {**analysis.to_dict(timeline=bool(args.timeline)), "path": video,
                          "sha256": sha}
                drawn = True
                if target:
                    try:
                        result["annotated"] = str(analysis.annotate(target))
                    except BATCH_ERRORS as exc:  # keep the prediction; report the video
                        failures.append(f"{video}: annotated video not written "
                                        f"({one_line(exc, target)})")
                        drawn = False
                if drawn:  # a rerun draws a failed annotation again
                    journal.add(path, sha, result)
        except BATCH_ERRORS as exc:
            failures.append(one_line(exc, video))
            continue
        results.append(result)
        write_line(_summary(video, result), file=echo)
    if resumed:
        print(f"kemo: {resumed} of {len(args.videos)} videos taken from the unfinished run "
              f"in {journal.path}", file=sys.stderr)
    names = list(rec.class_names_)
    if args.json:
        document = {"model": args.model or args.weights or "pretrained", "class_names": names,
                    # a trained model aggregates features: no pooling made its labels
                    "pooling": None if rec.is_trained else rec.pooling,
                    "class_balance": rec.class_balance_,
                    "videos": results, "failures": failures}
        write_output(args.json, json.dumps(document, indent=1) + "\n")
    if args.csv:
        rows = []
        for r in results:
            for i, track in enumerate(r["tracks"]):
                rows.append([r["path"], track["track"], int(i == 0), track["label"],
                             *(f"{track['probabilities'][n]:.6f}" for n in names),
                             r["frames_read"], r["faces_found"], r["sha256"]])
        header = ["path", "track", "main", "label", *names, "frames_read", "faces_found",
                  "sha256"]
        write_output(args.csv, csv_text(header, rows))
    if args.timeline:
        timeline_names = list(rec.timeline_class_names)
        rows = [[r["path"], track["track"], step["frame"], step["time"], *step["box"],
                 *(f"{step['probabilities'][n]:.6f}" for n in timeline_names)]
                for r in results for track in r["tracks"] for step in track["timeline"]]
        header = ["path", "track", "frame", "time", "x", "y", "w", "h", *timeline_names]
        write_output(args.timeline, csv_text(header, rows))
    if args.segments:
        keys = ["start", "end", "label", "probability", "first_frame", "last_frame"]
        rows = [[r["path"], track["track"], *(segment[k] for k in keys)]
                for r in results for track in r["tracks"] for segment in track["segments"]]
        write_output(args.segments, csv_text(["path", "track", *keys], rows))
    journal.close()
    return report_failures(failures, len(args.videos))
