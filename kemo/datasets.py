"""Data sets: FER2013, AFEW 7.0 and CK+ loaders, the class names, and where data lives.

All loaders return a :class:`sklearn.utils.Bunch` and use the FER2013 label ids of
:data:`CLASS_NAMES` (0 = Angry ... 6 = Neutral), so a model trained on one data set can be scored
on another.

Data location: every loader takes an explicit ``path``; without one it looks under the folder named
by the ``KEMO_DATA`` environment variable (see :func:`data_home`). kemo never downloads data and
never looks anywhere else by itself. The layout under ``KEMO_DATA`` is::

    $KEMO_DATA/
        fer2013/fer2013.npz             or fer2013/fer2013.csv (Kaggle)
                                        or fer2013/train/<Class>/*.jpg + fer2013/test/<Class>/*.jpg
        AFEW/Train_AFEW/<Emotion>/*.avi and AFEW/Val_AFEW/<Emotion>/*.avi
        ckplus_emopy/videos/<Sxxx>_<yyy>_<emotion>.avi
        ckplus48/ckplus48.npz
"""

import csv
import os
import re
from pathlib import Path

import cv2
import numpy as np
from sklearn.utils import Bunch

from kemo.errors import DataNotFoundError, InputError

__all__ = ["CLASS_NAMES", "data_home", "load_afew", "load_ckplus", "load_fer2013"]

#: The 7 emotion classes in FER2013 label order; the single source of class names in kemo.
CLASS_NAMES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")

#: Images per class in FER2013 Training (the class order of :data:`CLASS_NAMES`).
FER2013_TRAINING_COUNTS = (3995, 436, 4097, 7215, 4830, 3171, 4965)

#: The usage (split) names a FER2013 row can carry. "Test" marks image-folder test images whose
#: file names do not say whether they are PublicTest or PrivateTest.
FER_USAGES = ("Training", "PublicTest", "PrivateTest", "Test")

ENV_VAR = "KEMO_DATA"

_LAYOUT = """expected layout under the data folder:
    fer2013/fer2013.npz | fer2013/fer2013.csv | fer2013/train/<Class>/*.jpg + fer2013/test/...
    AFEW/Train_AFEW/<Emotion>/*.avi, AFEW/Val_AFEW/<Emotion>/*.avi
    ckplus_emopy/videos/<Sxxx>_<yyy>_<emotion>.avi
    ckplus48/ckplus48.npz"""

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov")
_FER_SIDE = 48

# CK+ emotion names (both spellings in use) -> FER ids; contempt has no FER class.
_CK_TO_FER = {
    "anger": 0,
    "angry": 0,
    "disgust": 1,
    "fear": 2,
    "happiness": 3,
    "happy": 3,
    "sadness": 4,
    "sad": 4,
    "surprise": 5,
    "neutral": 6,
    "contempt": -1,
}
_CK_VIDEO_NAME = re.compile(r"^(S\d+)_(\d+)_([A-Za-z]+)$")


# --------------------------------------------------------------------------- data location


def data_home(path=None):
    """Return the folder that holds the data sets.

    Args:
        path: An explicit folder or file. When given it wins, and must exist.

    Returns:
        pathlib.Path: ``path`` if given, else the folder named by the ``KEMO_DATA`` environment
        variable.

    Raises:
        DataNotFoundError: ``path`` does not exist, ``KEMO_DATA`` names a missing folder, or neither
            is set. The message names both and the expected layout.

    Example:
        >>> import os
        >>> os.environ["KEMO_DATA"] = "/data"  # doctest: +SKIP
        >>> data_home()  # doctest: +SKIP
        PosixPath('/data')
    """
    if path is not None:
        found = Path(path).expanduser()
        if not found.exists():
            raise DataNotFoundError(f"data path {str(found)!r} does not exist; pass an existing "
                                    f"file or folder.\n{_LAYOUT}")
        return found
    env = os.environ.get(ENV_VAR)
    if env:
        found = Path(env).expanduser()
        if not found.is_dir():
            raise DataNotFoundError(f"{ENV_VAR}={env!r} is not a folder; point it at the folder "
                                    f"that holds the data sets.\n{_LAYOUT}")
        return found
    raise DataNotFoundError(f"no data location: pass path=... or set the {ENV_VAR} environment "
                            f"variable to the folder that holds the data sets.\n{_LAYOUT}")


def _locate(path, subdir, is_match, what):
    """Find a data set: ``path`` (or ``KEMO_DATA``) itself, or its ``subdir`` child, that matches.

    Args:
        path: Explicit path or None for ``KEMO_DATA``.
        subdir: Name of the data set's folder under a data root (e.g. "fer2013").
        is_match: Callable(Path) -> Path or None, returning what to read when the path holds the
            data set.
        what: Description of the data set for the error message.

    Returns:
        pathlib.Path: what ``is_match`` returned.

    Raises:
        DataNotFoundError: Neither place holds the data set.
    """
    base = data_home(path)
    for candidate in (base, base / subdir):
        if candidate.exists():
            found = is_match(candidate)
            if found is not None:
                return found
    raise DataNotFoundError(f"{what} not found in {str(base)!r} nor in {str(base / subdir)!r}.\n"
                            f"{_LAYOUT}")


def _check_subset(subset, allowed, name):
    """Normalise ``subset`` (None, a name, or a list of names) to a tuple of valid names."""
    if subset is None:
        return tuple(allowed)
    try:
        names = (subset,) if isinstance(subset, str) else tuple(subset)
    except TypeError:
        names = ()
    if not names or any(s not in allowed for s in names):
        raise InputError(f"{name}: unknown subset {subset!r}; use None, one of {list(allowed)} "
                         "or a list of them.")
    return names


def _select_usage(data, usage_key, names, source):
    """Keep the rows of a Bunch whose ``usage_key`` is in ``names``; every name must be present."""
    present = set(np.unique(data[usage_key]).tolist())
    missing = [s for s in names if s not in present]
    if missing:
        raise InputError(f"subset {missing} is not in {source} (it holds {sorted(present)}).")
    return _keep_rows(data, np.isin(data[usage_key], names))


def _keep_rows(data, keep):
    """Index every per-sample array of ``data`` with the boolean mask ``keep``, in place."""
    for key, value in data.items():
        if isinstance(value, np.ndarray) and len(value) == len(keep):
            data[key] = value[keep]
    return data


# --------------------------------------------------------------------------- FER2013


def _fer_source(folder_or_file):
    """The FER2013 file or image-folder root at this path, or None."""
    p = folder_or_file
    if p.is_file():
        return p if p.suffix.lower() in (".npz", ".csv") else None
    for name in ("fer2013.npz", "fer2013.csv"):
        if (p / name).is_file():
            return p / name
    if (p / "train").is_dir() or (p / "test").is_dir():
        return p
    return None


def load_fer2013(path=None, subset=None, ferplus=False):
    """Load FER2013 from any of its three common forms.

    Forms read (the first one found wins, in this order):

    1. an ``.npz`` with ``pixels`` (N, 48, 48) uint8, ``labels`` and ``usage`` arrays (the
       layout of the project's data folder);
    2. the original Kaggle ``fer2013.csv`` with columns ``emotion``, ``pixels`` (2304
       space-separated grey levels) and ``Usage`` (header names are matched after stripping
       spaces, so the ``icml_face_data.csv`` variant reads too);
    3. the Kaggle image-folder layout ``train/<Class>/*.jpg`` (usage "Training") and
       ``test/<Class>/*.jpg``, where a ``PublicTest_``/``PrivateTest_`` file-name prefix gives the
       usage and other test images get "Test". Class folders are matched to
       :data:`CLASS_NAMES` ignoring case. Rows are sorted by usage folder, class id, file name.

    Args:
        path: The ``.npz`` or ``.csv`` file, a folder holding one of the forms, or a data root
            with a ``fer2013/`` child. None uses ``KEMO_DATA``.
        subset: None for every row, or one usage name ("Training", "PublicTest", "PrivateTest",
            "Test") or a list of them.
        ferplus: Also read the FER+ relabelling (``fer2013new.csv`` beside the FER2013 file:
            ten annotators' votes per image, Barsoum et al. 2016) into ``ferplus``. Needs the
            ``.npz`` form (rows joined on its ``fer_row``) or the Kaggle CSV (rows in order).

    Returns:
        sklearn.utils.Bunch: ``images`` uint8 (N, 48, 48), ``labels`` int64 (N,), ``usage`` str
        (N,), ``class_names`` (list of 7 names), ``DESCR`` (source and counts); with
        ``ferplus``, also ``ferplus`` float32 (N, 7): the FER+ votes for the 7 classes in
        FER2013 order (contempt, unknown and not-a-face dropped), all 0 where FER+ has no row.

    Raises:
        DataNotFoundError: No FER2013 data at the path (the message names the layout).
        InputError: Unknown subset, a subset absent from the data, or a malformed file (the
            message names the file and, for the CSV, the line); with ``ferplus``, also FER2013
            as image folders (no row order to join on), a missing or malformed
            ``fer2013new.csv``, or an ``.npz`` without a ``fer_row`` per image.

    Example:
        >>> fer = load_fer2013("/data/fer2013", subset="Training")  # doctest: +SKIP
        >>> fer.images.shape  # doctest: +SKIP
        (28709, 48, 48)
    """
    names = _check_subset(subset, FER_USAGES, "load_fer2013")
    source = _locate(path, "fer2013", _fer_source, "FER2013 (fer2013.npz, fer2013.csv or "
                                                   "train/ + test/ image folders)")
    if source.is_dir():
        images, labels, usage = _read_fer_folder(source)
    elif source.suffix.lower() == ".npz":
        images, labels, usage = _read_fer_npz(source)
    else:
        images, labels, usage = _read_fer_csv(source)
    data = Bunch(images=images, labels=labels, usage=usage, class_names=list(CLASS_NAMES))
    if ferplus:
        data.ferplus = _ferplus_votes(source, len(labels))
    if subset is not None:
        data = _select_usage(data, "usage", names, str(source))
    values, sizes = np.unique(data.usage, return_counts=True)
    counts = ", ".join(f"{u}: {n}" for u, n in zip(values, sizes, strict=True))
    data.DESCR = (f"FER2013 facial expressions, 48x48 grey faces, 7 classes {CLASS_NAMES}.\n"
                  f"Read from {source} ({len(data.labels)} images; {counts or 'none'}).")
    return data


# FER+ column of each FER2013 class, in FER2013 order
_FERPLUS_COLUMNS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")


def _ferplus_votes(source, n):
    """FER+ votes (n, 7) for the rows of the FER2013 file ``source``."""
    if source.suffix.lower() == ".npz":
        rows = _load_npz(source, ("fer_row",))["fer_row"].astype(np.int64)
        if rows.shape != (n,):
            raise InputError(f"{source}: fer_row has shape {rows.shape}, expected ({n},): one "
                             "row index per image")
    elif source.suffix.lower() == ".csv":
        rows = np.arange(n)
    else:
        raise InputError(f"{source}: FER+ votes join on the rows of fer2013.csv, which the image "
                         "folders do not keep; use fer2013.npz (with fer_row) or fer2013.csv")
    file = source.parent / "fer2013new.csv"
    if not file.is_file():
        raise InputError(f"{file}: not found; FER+ votes come from microsoft/FERPlus's "
                         "fer2013new.csv, placed beside the FER2013 file")
    with open(file, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [h.strip().lower() for h in next(reader, [])]
        try:
            cols = [header.index(name) for name in _FERPLUS_COLUMNS]
        except ValueError:
            raise InputError(f"{file}: header {header} lacks the FER+ vote columns "
                             f"{list(_FERPLUS_COLUMNS)}") from None
        try:
            table = np.array([[float(row[c]) for c in cols] for row in reader if row],
                             dtype=np.float32)
        except (IndexError, ValueError) as err:
            raise InputError(f"{file}: malformed vote row ({err})") from None
    votes = np.zeros((n, len(CLASS_NAMES)), np.float32)
    known = (rows >= 0) & (rows < len(table))
    votes[known] = table[rows[known]]
    return votes


def _check_fer_arrays(images, labels, usage, source):
    """Validate the arrays of one FER2013 source and return them in the Bunch dtypes."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (_FER_SIDE, _FER_SIDE):
        raise InputError(f"{source}: images have shape {images.shape}, expected (N, 48, 48).")
    if images.dtype != np.uint8:
        if images.size and (images.min() < 0 or images.max() > 255):
            raise InputError(f"{source}: pixel values outside 0..255.")
        images = images.astype(np.uint8)
    labels = np.asarray(labels).astype(np.int64)
    bad = (labels < 0) | (labels >= len(CLASS_NAMES))
    if bad.any():
        raise InputError(f"{source}: label {labels[bad][0]} outside 0..6 (FER2013 ids).")
    usage = np.asarray(usage).astype(str)
    if not len(images) == len(labels) == len(usage):
        raise InputError(f"{source}: {len(images)} images, {len(labels)} labels and "
                         f"{len(usage)} usage entries do not match.")
    return images, labels, usage


def _load_npz(file, keys):
    """Read the arrays ``keys`` of an npz file (no pickles), with clear errors."""
    try:
        npz = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{file}: not a readable .npz file ({err}).") from None
    if not hasattr(npz, "files"):
        raise InputError(f"{file}: holds a single array, not an .npz archive of named arrays.")
    with npz:
        missing = [k for k in keys if k not in npz.files]
        if missing:
            raise InputError(f"{file}: npz lacks the arrays {missing} (it has {npz.files}).")
        try:
            return {k: npz[k] for k in keys}
        except (OSError, ValueError) as err:
            raise InputError(f"{file}: damaged .npz file ({err}).") from None


def _read_fer_npz(file):
    arrays = _load_npz(file, ("pixels", "labels", "usage"))
    return _check_fer_arrays(arrays["pixels"], arrays["labels"], arrays["usage"], source=file)


def _read_fer_csv(file):
    images, labels, usage = [], [], []
    try:
        with open(file, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = [h.strip().lower() for h in next(reader, [])]
            try:
                col = {k: header.index(k) for k in ("emotion", "pixels", "usage")}
            except ValueError:
                raise InputError(f"{file}: header {header} must have the columns emotion, pixels "
                                 "and Usage (the Kaggle fer2013.csv).") from None
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                try:
                    pixels = np.array(row[col["pixels"]].split(), dtype=np.int64)
                    label = int(row[col["emotion"]])
                    use = row[col["usage"]].strip()
                except (IndexError, ValueError) as err:
                    raise InputError(f"{file}, line {line}: malformed row ({err}).") from None
                if pixels.size != _FER_SIDE * _FER_SIDE:
                    raise InputError(f"{file}, line {line}: {pixels.size} pixel values, "
                                     "expected 2304 (48x48).")
                if pixels.min() < 0 or pixels.max() > 255:
                    raise InputError(f"{file}, line {line}: pixel values outside 0..255.")
                images.append(pixels.astype(np.uint8).reshape(_FER_SIDE, _FER_SIDE))
                labels.append(label)
                usage.append(use)
    except UnicodeDecodeError as err:
        raise InputError(f"{file}: not a text CSV file ({err}).") from None
    unknown = sorted(set(usage) - set(FER_USAGES))
    if unknown:
        raise InputError(f"{file}: unknown Usage values {unknown}; expected {FER_USAGES[:3]}.")
    images = np.stack(images) if images else np.zeros((0, _FER_SIDE, _FER_SIDE), np.uint8)
    return _check_fer_arrays(images, labels, usage, source=file)


def _class_folders(root):
    """Map the class sub-folders of ``root`` to FER ids (case-insensitive names)."""
    lookup = {name.lower(): i for i, name in enumerate(CLASS_NAMES)}
    found = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if sub.name.lower() not in lookup:
            raise InputError(f"{sub}: folder name {sub.name!r} is not a FER2013 class; "
                             f"expected one of {CLASS_NAMES} (any case).")
        found.append((lookup[sub.name.lower()], sub))
    return sorted(found)


def _read_fer_folder(root):
    images, labels, usage = [], [], []
    for split in ("train", "test"):
        if not (root / split).is_dir():
            continue
        for label, folder in _class_folders(root / split):
            for file in sorted(folder.iterdir()):
                if file.suffix.lower() not in _IMAGE_SUFFIXES:
                    continue
                image = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
                if image is None:
                    raise InputError(f"{file}: not a readable image; remove or replace it.")
                if image.shape != (_FER_SIDE, _FER_SIDE):
                    raise InputError(f"{file}: image is {image.shape[1]}x{image.shape[0]}, "
                                     "FER2013 images are 48x48.")
                images.append(image)
                labels.append(label)
                if split == "train":
                    usage.append("Training")
                elif file.name.startswith(("PublicTest_", "PrivateTest_")):
                    usage.append(file.name.split("_", 1)[0])
                else:
                    usage.append("Test")
    if not images:
        raise DataNotFoundError(f"{root}: no images in train/<Class>/ or test/<Class>/.\n{_LAYOUT}")
    return _check_fer_arrays(np.stack(images), labels, usage, source=root)


# --------------------------------------------------------------------------- AFEW


_AFEW_SUBSETS = {"Train": "Train_AFEW", "Val": "Val_AFEW"}


def _afew_root(p):
    if p.is_dir() and any((p / d).is_dir() for d in _AFEW_SUBSETS.values()):
        return p
    return None


def load_afew(path=None, subset=None):
    """List the clips of AFEW 7.0 (EmotiW 2017) with their labels.

    AFEW is not public; this reads the layout its licence holders receive::

        <path>/Train_AFEW/<Emotion>/*.avi
        <path>/Val_AFEW/<Emotion>/*.avi

    with the emotion folders Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise (any case). Other
    entries (archives, landmark folders) are ignored. The unlabelled test set is not listed.

    Args:
        path: The folder holding ``Train_AFEW``/``Val_AFEW``, or a data root with an ``AFEW/``
            child. None uses ``KEMO_DATA``.
        subset: None for both, "Train", "Val", or a list of them.

    Returns:
        sklearn.utils.Bunch: ``paths`` str (N,) video files, ``labels`` int64 (N,) FER ids,
        ``subset`` str (N,) "Train"/"Val", ``class_names``, ``DESCR``. Sorted by subset, class
        id, file name.

    Raises:
        DataNotFoundError: No AFEW layout at the path, or no clips in it.
        InputError: Unknown subset, or a requested subset folder is missing.

    Example:
        >>> afew = load_afew("/data/AFEW", subset="Val")  # doctest: +SKIP
        >>> afew.paths[0], afew.class_names[afew.labels[0]]  # doctest: +SKIP
    """
    names = _check_subset(subset, tuple(_AFEW_SUBSETS), "load_afew")
    root = _locate(path, "AFEW", _afew_root, "AFEW 7.0 (Train_AFEW/ and Val_AFEW/ folders)")
    lookup = {name.lower(): i for i, name in enumerate(CLASS_NAMES)}
    paths, labels, subsets = [], [], []
    for name in names:
        folder = root / _AFEW_SUBSETS[name]
        if not folder.is_dir():
            if subset is None:
                continue
            raise InputError(f"subset {name!r}: folder {folder} does not exist.")
        emotion_dirs = [d for d in folder.iterdir() if d.is_dir() and d.name.lower() in lookup]
        for emotion in sorted(emotion_dirs, key=lambda d: lookup[d.name.lower()]):
            for file in sorted(emotion.iterdir()):
                if file.is_file() and file.suffix.lower() in _VIDEO_SUFFIXES:
                    paths.append(str(file))
                    labels.append(lookup[emotion.name.lower()])
                    subsets.append(name)
    if not paths:
        raise DataNotFoundError(f"{root}: no clips in Train_AFEW/<Emotion>/ or "
                                f"Val_AFEW/<Emotion>/ (emotion folders {CLASS_NAMES}).")
    return Bunch(
        paths=np.array(paths),
        labels=np.array(labels, dtype=np.int64),
        subset=np.array(subsets),
        class_names=list(CLASS_NAMES),
        DESCR=f"AFEW 7.0 clips read from {root}: {len(paths)} videos.",
    )


# --------------------------------------------------------------------------- CK+


def _ck_videos(p):
    for folder in (p / "videos", p):
        if folder.is_dir() and any(f.suffix.lower() == ".avi" for f in folder.iterdir()):
            return folder
    return None


def _ck48_file(p):
    if p.is_file():
        return p if p.suffix.lower() == ".npz" else None
    return p / "ckplus48.npz" if (p / "ckplus48.npz").is_file() else None


def load_ckplus(path=None, kind="videos", include_contempt=False):
    """Load CK+ (Extended Cohn-Kanade): the clip folder or the CK+48 face crops.

    ``kind="videos"`` lists clips named ``<Sxxx>_<yyy>_<emotion>.avi`` (e.g.
    ``S055_004_anger.avi``, the 40 sequences of the ``ckplus_emopy`` folder), taking the label
    from the emotion in the name. ``kind="ckplus48"`` reads the CK+48 npz (``pixels``,
    ``labels``, ``subjects``, ``seq_ids``, ``frame_numbers``). Split either by ``subjects`` for
    person-independent folds, e.g. with :class:`sklearn.model_selection.GroupKFold`.

    Args:
        path: For videos: the folder of clips, its parent, or a data root with
            ``ckplus_emopy/``. For ckplus48: the npz, its folder, or a data root with
            ``ckplus48/``. None uses ``KEMO_DATA``.
        kind: "videos" or "ckplus48".
        include_contempt: Keep contempt samples (CK+ has that class, FER2013 has not) with
            label -1. By default they are dropped.

    Returns:
        sklearn.utils.Bunch: for videos ``paths``, ``labels`` int64, ``subjects``, ``seq_ids``,
        ``class_names``, ``DESCR``; for ckplus48 ``images`` uint8 (N, 48, 48), ``labels`` int64,
        ``subjects``, ``seq_ids``, ``frame_numbers``, ``class_names``, ``DESCR``.

    Raises:
        DataNotFoundError: The data is not at the path.
        InputError: Unknown ``kind``, a clip name that does not follow the pattern, or a
            malformed npz.

    Example:
        >>> from sklearn.model_selection import GroupKFold
        >>> ck = load_ckplus("/data/ckplus48", kind="ckplus48")  # doctest: +SKIP
        >>> folds = GroupKFold(5).split(ck.images, ck.labels, groups=ck.subjects)  # doctest: +SKIP
    """
    if kind == "videos":
        data = _read_ck_videos(_locate(path, "ckplus_emopy", _ck_videos, "CK+ clips (*.avi)"))
    elif kind == "ckplus48":
        data = _read_ck48(_locate(path, "ckplus48", _ck48_file, "CK+48 (ckplus48.npz)"))
    else:
        raise InputError(f"load_ckplus: unknown kind {kind!r}; use 'videos' or 'ckplus48'.")
    if not include_contempt:
        _keep_rows(data, data.labels >= 0)
    data.class_names = list(CLASS_NAMES)
    data.DESCR += (f" {len(data.labels)} samples, {len(np.unique(data.subjects))} subjects"
                   f"{'' if include_contempt else ', contempt (no FER class) dropped'}.")
    return data


def _read_ck_videos(folder):
    paths, labels, subjects, seq_ids = [], [], [], []
    for file in sorted(folder.iterdir()):
        if file.suffix.lower() != ".avi":
            continue
        match = _CK_VIDEO_NAME.match(file.stem)
        if not match or match.group(3).lower() not in _CK_TO_FER:
            raise InputError(f"{file}: name must be <Sxxx>_<yyy>_<emotion>.avi with emotion in "
                             f"{sorted(_CK_TO_FER)}; rename or move the file.")
        subject, seq, emotion = match.groups()
        paths.append(str(file))
        labels.append(_CK_TO_FER[emotion.lower()])
        subjects.append(subject)
        seq_ids.append(f"{subject}_{seq}")
    return Bunch(paths=np.array(paths), labels=np.array(labels, dtype=np.int64),
                 subjects=np.array(subjects), seq_ids=np.array(seq_ids),
                 DESCR=f"CK+ clips (neutral to peak expression) read from {folder}:")


def _read_ck48(file):
    arrays = _load_npz(file, ("pixels", "labels", "subjects", "seq_ids", "frame_numbers"))
    images = arrays["pixels"]
    if images.dtype != np.uint8 or images.shape[1:] != (_FER_SIDE, _FER_SIDE):
        raise InputError(f"{file}: pixels are {images.dtype} {images.shape}, "
                         "expected uint8 (N, 48, 48).")
    return Bunch(images=images, labels=arrays["labels"].astype(np.int64),
                 subjects=arrays["subjects"].astype(str), seq_ids=arrays["seq_ids"].astype(str),
                 frame_numbers=arrays["frame_numbers"].astype(np.int64),
                 DESCR=f"CK+48 face crops (last 3 frames of each sequence) read from {file}:")
