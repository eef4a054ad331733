"""What the ``kemo`` commands share: exit statuses, video lists, the recogniser, output files."""

from __future__ import annotations

import csv
import hashlib
import io
import sys
from pathlib import Path

from kemo._files import write_atomic
from kemo.errors import InputError, KemoError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".wmv")
# Failures a batch goes on after: kemo's own errors, bad files, bad values.
BATCH_ERRORS = (KemoError, OSError, ValueError)
LIST_FORMS = ("a folder of CK+ clips (<Sxxx>_<yyy>_<emotion>.avi), a folder with one "
              "sub-folder per emotion, or a text file of 'path,label[,group]' lines")


def cluster_map(function, state, videos, setup=None):
    """``function(state, video)`` of ``videos`` (``{index: path}``) on the ``--scheduler``.

    Returns:
        kemo.parallel.VideoMap, or None when the command runs here.
    """
    from kemo import parallel

    client = parallel.active()
    return None if client is None else parallel.VideoMap(client, function, state, videos, setup)


def progress_bar(items, quiet, **kwargs):
    """A progress bar over ``items`` on standard error (none when ``quiet``)."""
    from tqdm.auto import tqdm

    return tqdm(items, disable=quiet or None, file=sys.stderr, **kwargs)


def show_bars(args):
    """Whether to draw progress bars: not with -q, and only on a terminal (never into a log).

    Commands without ``-q`` (``kemo live``, which prints a line per frame) draw none.
    """
    return not getattr(args, "quiet", True) and sys.stderr.isatty()


def write_line(text, file=None):
    """Print a result line above the progress bars (tqdm.write), not onto the end of one."""
    from tqdm.auto import tqdm

    tqdm.write(text, file=file or sys.stdout)
    (file or sys.stdout).flush()


def recognizer_for(args, errors="raise"):
    """The recogniser of ``--model`` / ``--weights`` (or the pretrained one), face options set.

    Options a command does not define (``kemo live`` has no ``--model``, ``--frames`` or
    ``--cache``) are left at the recogniser's defaults.
    """
    from kemo.recognizer import VideoEmotionRecognizer

    if getattr(args, "model", None):
        rec = VideoEmotionRecognizer.load(args.model)
    else:
        weights = getattr(args, "weights", None)
        rec = VideoEmotionRecognizer(weights=weights) if weights else VideoEmotionRecognizer()
    rec.set_params(faces=face_options(rec.face_preprocessor(), args), errors=errors)
    if getattr(args, "pooling", None):
        rec.set_params(pooling=args.pooling)
    if getattr(args, "class_balance", None) is not None:
        rec.set_params(class_balance=args.class_balance)
    return rec


def face_options(prep, args):
    """``prep`` with the face options of the command line set (``--every``...)."""
    for option, param in (("every", "detect_every"), ("frames", "n_frames"),
                          ("cache", "cache_dir"), ("min_face_size", "min_face_size")):
        if getattr(args, option, None) is not None:
            prep.set_params(**{param: getattr(args, option)})
    if getattr(args, "small_face_size", None) is not None:
        # --small-face-size off is 0: no second look for small faces
        prep.set_params(small_face_size=args.small_face_size or None)
    return prep.set_params(verbose=show_bars(args))


def write_output(target, text):
    """Write ``text`` to a file, or to standard output for ``-``."""
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomic(target, text)


def csv_text(header, rows):
    """CSV text of a header row and rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def file_sha256(path):
    """The sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def report_failures(failures, total, noun="videos"):
    """List the failures on standard error; return the exit status."""
    if not failures:
        return EXIT_OK
    if total == 1:
        print(f"kemo: error: {failures[0]}", file=sys.stderr)
        return EXIT_FAILED
    print(f"kemo: {len(failures)} of {total} {noun} failed:", file=sys.stderr)
    for line in failures:
        print(f"  {line}", file=sys.stderr)
    return EXIT_FAILED


def check_file(path):
    """Raise a one-line error for a path that is not a readable file."""
    from kemo.errors import VideoReadError

    if not Path(path).is_file():
        raise VideoReadError(f"{path}: no such file")


def _video_paths(items):
    """The videos named on the command line: files as given, folders replaced by their videos.

    Raises:
        InputError: a folder holds no video.
    """
    paths = []
    for item in items:
        folder = Path(item)
        if not folder.is_dir():
            paths.append(item)
            continue
        found = sorted(f for f in folder.rglob("*") if f.suffix.lower() in VIDEO_SUFFIXES
                       and not f.name.startswith(".") and f.is_file())
        if not found:
            raise InputError(f"{item} is a folder with no video in it (looked for "
                             f"{' '.join(VIDEO_SUFFIXES)}, sub-folders included); give video "
                             f"files or a folder of them")
        paths += [str(f) for f in found]
    return paths


def check_videos(args):
    """Expand folders in ``args.videos``; fail at once when no video exists at all."""
    args.videos = _video_paths(args.videos)
    missing = [v for v in args.videos if not Path(v).is_file()]
    if len(missing) == len(args.videos):  # nothing to do: say so before TensorFlow loads
        if len(missing) == 1:
            check_file(missing[0])
        raise InputError(f"none of the {len(missing)} videos exists: {', '.join(missing)}")
    # several videos, some missing: the batch goes on and lists them at the end


def check_weights(args):
    """Check ``--model`` / ``--weights`` before the work starts."""
    if getattr(args, "model", None):
        from kemo.recognizer import check_model_folder

        check_model_folder(args.model)
    if getattr(args, "weights", None):
        from kemo.weights import model_file

        if model_file(args.weights) is None:  # a registered name: fine as it is
            from kemo.weights import get

            get(args.weights)


def unique_stems(videos):
    """A file-name stem per video, ``<stem>_2``, ``<stem>_3``... for repeated names."""
    seen, stems = {}, []
    for video in videos:
        stem = Path(video).stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def read_labelled(source, command):
    """``(paths, labels, groups or None)`` of a CK+ folder, emotion folders or a list file.

    Args:
        source: the LIST_OR_DIR argument.
        command: the command reading it, for the messages (``"evaluate"``...).

    Raises:
        InputError: ``source`` is none of the three forms (the message lists them), or a line
            of the list is malformed.
    """
    import numpy as np

    from kemo.datasets import CLASS_NAMES, load_ckplus
    from kemo.errors import DataNotFoundError

    lookup = {name.lower(): i for i, name in enumerate(CLASS_NAMES)}
    source = Path(source)
    wanted = f"{command} needs labelled videos: {LIST_FORMS}"
    if source.is_dir():
        folders = [d for d in sorted(source.iterdir())
                   if d.is_dir() and d.name.lower() in lookup]
        if folders:
            pairs = [(str(f), lookup[d.name.lower()]) for d in folders
                     for f in sorted(d.iterdir()) if f.suffix.lower() in VIDEO_SUFFIXES]
            if not pairs:
                raise InputError(f"{source}: the emotion folders hold no videos")
            return [p for p, _ in pairs], np.array([y for _, y in pairs]), None
        try:
            ck = load_ckplus(source)
        except DataNotFoundError:
            raise InputError(f"{source} holds no emotion folder and no CK+ clip; "
                             f"{wanted}") from None
        return list(ck.paths), ck.labels, ck.subjects
    if not source.is_file():
        raise InputError(f"{source}: no such file or folder; {wanted}")
    if source.suffix.lower() in VIDEO_SUFFIXES:
        raise InputError(f"{source} is a video, not a list: {wanted}")
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{source} is not a text file of 'path,label' lines: {wanted}") from None
    paths, labels, groups = [], [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        cells = [c.strip() for c in next(csv.reader([line]))]
        if number == 1 and cells[0].lower() == "path":
            continue  # a header
        if len(cells) not in (2, 3):
            raise InputError(f"{source} line {number}: expected 'path,label[,group]', got "
                             f"{line!r}")
        label = cells[1]
        if label.isdigit() and int(label) < len(CLASS_NAMES):
            label = int(label)
        elif label.lower() in lookup:
            label = lookup[label.lower()]
        else:
            raise InputError(f"{source} line {number}: unknown label {cells[1]!r}; use one of "
                             f"{list(CLASS_NAMES)} or 0-{len(CLASS_NAMES) - 1}")
        path = Path(cells[0])
        paths.append(str(path if path.is_absolute() else source.parent / path))
        labels.append(label)
        groups.append(cells[2] if len(cells) == 3 else None)
    if not paths:
        raise InputError(f"{source}: the list holds no video")
    has_groups = all(g is not None for g in groups)
    return paths, np.array(labels), np.array(groups) if has_groups else None
