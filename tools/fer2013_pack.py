"""FER2013 packed small enough to travel to a lent GPU machine, and unpacked there.

The device tool (see docs/training.md, "On a lent GPU") carries at most 64 MiB per call,
the repository included. FER2013's ``fer2013.npz`` is 67 MiB, and its 32,298 faces are 74 MB
raw. Tiled into grey mosaics and stored as lossless WebP (which OpenCV reads on that machine
too) they take about 70 % of that, in parts that can travel in separate calls. Nothing is
lost: the unpacked pixels are checked against the sha256 of the original ones.

Usage (from the repository root)::

    python tools/fer2013_pack.py pack ../shared/data/fer2013 --out .devdata --parts 2
    python tools/fer2013_pack.py unpack .devdata/part0 .devdata/part1 --out /tmp/fer2013

``pack`` writes ``part0/``, ``part1/``... under ``--out``: each holds its mosaic
(``fer2013.K.webp``) and a copy of ``fer2013.meta.npz`` (labels, usage, FER+ row of every
face, and the checksum); the first also holds ``fer2013new.csv`` (the FER+ votes) when the
source has it. ``unpack`` takes the part folders in any order and writes ``fer2013.npz``
(and the votes) into ``--out``, a folder that :func:`kemo.load_fer2013` reads.
"""

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np

SIDE = 48  # FER2013 faces are 48x48
COLUMNS = 128  # faces per mosaic row: 6,144 px wide, within WebP's 16,383 px
META = "fer2013.meta.npz"
VOTES = "fer2013new.csv"


def pack(source, out, parts=2):
    """Write FER2013 (a folder with fer2013.npz, or the file) as ``parts`` mosaic folders.

    Returns:
        list of the part folders written.
    """
    import cv2

    source = Path(source)
    npz = source / "fer2013.npz" if source.is_dir() else source
    with np.load(npz, allow_pickle=False) as data:
        pixels, labels, usage = data["pixels"], data["labels"], data["usage"]
        fer_row = data["fer_row"] if "fer_row" in data.files else np.arange(len(labels))
    if pixels.dtype != np.uint8 or pixels.shape[1:] != (SIDE, SIDE):
        sys.exit(f"{npz}: pixels must be uint8 (N, {SIDE}, {SIDE}), got {pixels.dtype} "
                 f"{pixels.shape}")
    meta = {"labels": labels, "usage": usage, "fer_row": fer_row, "parts": np.int64(parts),
            "sha256": np.str_(hashlib.sha256(pixels.tobytes()).hexdigest())}
    folders = []
    for k, chunk in enumerate(np.array_split(pixels, parts)):
        folder = Path(out) / f"part{k}"
        folder.mkdir(parents=True, exist_ok=True)
        mosaic = _tile(chunk)
        if not cv2.imwrite(str(folder / f"fer2013.{k}.webp"), mosaic,
                           [cv2.IMWRITE_WEBP_QUALITY, 101]):  # above 100: lossless
            sys.exit(f"OpenCV could not write {folder / f'fer2013.{k}.webp'}")
        np.savez_compressed(folder / META, count=np.int64(len(chunk)), **meta)
        folders.append(folder)
    votes = npz.parent / VOTES
    if votes.is_file():
        shutil.copyfile(votes, folders[0] / VOTES)
    return folders


def unpack(folders, out):
    """Rebuild ``fer2013.npz`` (and the FER+ votes) in ``out`` from every part folder.

    Raises:
        SystemExit: a part is missing, or the pixels differ from the packed ones.
    """
    import cv2

    chunks, meta = {}, None
    for folder in map(Path, folders):
        for image in folder.glob("fer2013.*.webp"):
            k = int(image.name.split(".")[1])
            mosaic = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
            if mosaic is None:
                sys.exit(f"OpenCV could not read {image}")
            with np.load(folder / META, allow_pickle=False) as data:
                meta = {name: data[name] for name in data.files}
            chunks[k] = _untile(mosaic, int(meta["count"]))
    if meta is None or sorted(chunks) != list(range(int(meta["parts"]))):
        expected = int(meta["parts"]) if meta is not None else "all"
        sys.exit(f"parts found: {sorted(chunks)} of {expected}; pass every part folder")
    pixels = np.concatenate([chunks[k] for k in sorted(chunks)])
    if hashlib.sha256(pixels.tobytes()).hexdigest() != str(meta["sha256"]):
        sys.exit("unpacked pixels differ from the packed ones (sha256 mismatch)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "fer2013.npz", pixels=pixels, labels=meta["labels"], usage=meta["usage"],
             fer_row=meta["fer_row"])
    for folder in map(Path, folders):
        if (folder / VOTES).is_file():
            shutil.copyfile(folder / VOTES, out / VOTES)
    return out / "fer2013.npz"


def _tile(faces):
    rows = -(-len(faces) // COLUMNS)
    padded = np.zeros((rows * COLUMNS, SIDE, SIDE), np.uint8)
    padded[:len(faces)] = faces
    return padded.reshape(rows, COLUMNS, SIDE, SIDE).transpose(0, 2, 1, 3).reshape(
        rows * SIDE, COLUMNS * SIDE)


def _untile(mosaic, count):
    rows = mosaic.shape[0] // SIDE
    faces = mosaic.reshape(rows, SIDE, COLUMNS, SIDE).transpose(0, 2, 1, 3)
    return faces.reshape(rows * COLUMNS, SIDE, SIDE)[:count]


def main(argv=None):
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="FER2013 -> mosaic part folders")
    packing.add_argument("source", help="folder with fer2013.npz, or the file")
    packing.add_argument("--out", required=True, help="folder for part0/, part1/...")
    packing.add_argument("--parts", type=int, default=2)
    unpacking = commands.add_parser("unpack", help="part folders -> fer2013.npz")
    unpacking.add_argument("folders", nargs="+", help="every part folder")
    unpacking.add_argument("--out", required=True, help="folder for fer2013.npz")
    args = parser.parse_args(argv)
    if args.command == "pack":
        for folder in pack(args.source, args.out, args.parts):
            size = sum(f.stat().st_size for f in folder.iterdir())
            print(f"{folder}: {size / 2**20:.1f} MiB")
    else:
        print(f"{unpack(args.folders, args.out)}: checksum verified")


if __name__ == "__main__":
    main()
