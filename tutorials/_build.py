"""Write the tutorial notebooks (tutorials/NN_*.ipynb) from the cell sources in tutorials/_cells.

The cell files are the source of truth; the notebooks are generated from them, and committed
with the outputs of one run on the real data (figures, tables, printed numbers) so that a
reader sees them without running anything. Edit the cell files, then::

    python tutorials/_build.py                 # rewrite the notebooks' cells (keeps outputs)
    python tutorials/_build.py --execute       # run every notebook, store its outputs
    python tutorials/_build.py --execute 05_c3d 08   # only some (names or number prefixes)
    python tutorials/_build.py --check         # exit 1 when a notebook's cells differ

A plain run rewrites the cell sources and keeps the stored outputs of every cell whose source
did not change (a changed cell loses its outputs, and later cells may then show outputs of the
older code): ``--execute`` is the way to refresh outputs. ``--check`` compares cell sources,
types, ids and tags only, never outputs. ``--execute`` runs each notebook with nbclient in this
folder, in full mode (``KEMO_QUICK=0``) except the notebooks in :data:`QUICK_ONLY`, whose full
run needs hours of training; it needs the data (``KEMO_DATA`` or ``<repo>/../shared/data``).
Execution timings and other volatile metadata are not stored, so a rebuild diffs cleanly;
large figures are stored with a 256-colour palette to keep each notebook under 2 MB.
``pytest --nbmake`` (CI) runs the notebooks again in QUICK mode and never writes them back.

Cell files: ``tutorials/_cells/NN_name.txt``, in the "percent" layout editors know: a line
``# %% [markdown]`` starts a markdown cell (its lines start with ``# ``, removed on output),
``# %%`` a code cell, and ``# %% tags=["parameters"]`` a code cell with tags. ``{{COLAB}}``,
``{{INSTALL}}`` and ``{{SETUP}}`` expand to the shared Colab badge, install cell and setup cell
below. The notebooks themselves are linted: ``ruff check tutorials``.
"""

import argparse
import copy
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CELLS = HERE / "_cells"

#: Largest committed notebook, outputs included (tests/test_tutorials.py checks it).
MAX_BYTES = 2_000_000
#: Notebooks executed in QUICK mode by ``--execute`` (their full run trains for hours; the
#: notebook's text says where the full-run figures come from).
QUICK_ONLY = {"03_frame_models"}
#: Seconds a single cell may run under ``--execute``.
CELL_TIMEOUT = 1800
#: PNG figures larger than this (bytes) are stored with a 256-colour palette by ``--execute``.
SHRINK_ABOVE = 100_000


def repository(root=ROOT):
    """The GitHub ``owner/name`` of the project, from ``[project.urls]`` of pyproject.toml.

    The one place the address is written: the Colab badges and the Colab install cell use it.

    Raises:
        SystemExit: pyproject.toml names no ``Repository`` URL on github.com.
    """
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # Python 3.10: the one line we need
        found = re.search(r'^Repository\s*=\s*"([^"]+)"', text, re.MULTILINE)
        url = found.group(1) if found else None
    else:
        url = tomllib.loads(text).get("project", {}).get("urls", {}).get("Repository")
    match = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?/?", url or "")
    if match is None:
        raise SystemExit(f"pyproject.toml: [project.urls] Repository must be a github.com URL "
                         f"(e.g. \"https://github.com/kemo-ml/kemo\"); got {url!r}")
    return match.group(1)


#: Where the repository lives on GitHub; the Colab badges open the notebooks from there.
REPOSITORY = repository()
COLAB = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
         "(https://colab.research.google.com/github/{repo}/blob/main/tutorials/{name})")

INSTALL = f'''# On Colab, install kemo from GitHub (Colab already has TensorFlow, with GPU support).
# Elsewhere, install it once from a clone of the repository: pip install -e ".[dev]"
import sys

if "google.colab" in sys.modules:
    %pip install -q "kemo @ git+https://github.com/{REPOSITORY}"'''

#: Shared setup: inline figures, a clock, the data folder, and the device the networks run on.
#: kemo itself never looks for data: the notebook finds it and passes the path.
SETUP = '''import time
from pathlib import Path

%matplotlib inline
START = time.time()

if DATA is None:  # a checkout next to the shared data folder: <repo>/../shared/data
    here = Path.cwd().resolve()
    repo = here.parent if here.name == "tutorials" else here
    if (repo.parent / "shared" / "data").is_dir():
        DATA = repo.parent / "shared" / "data"

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import kemo  # noqa: E402

DATA = kemo.data_home(DATA)  # raises DataNotFoundError with the expected layout if missing
print("data:", DATA, "| QUICK:", QUICK)
GPUS = tf.config.list_physical_devices("GPU")  # Colab: Runtime > Change runtime type > GPU
print(f"Keras {keras.__version__}, {keras.backend.backend()} backend, runs on",
      ", ".join(gpu.name for gpu in GPUS) if GPUS else "the CPU (no GPU found)")'''

_MARK = re.compile(r"^# %%(?: \[(markdown)\])?(?: tags=(\[.*\]))?\s*$")
_METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
    "colab": {"provenance": []},
}


def parse(text, name):
    """Split a cell file into ``[(kind, source, tags)]``."""
    cells, kind, tags, lines = [], None, [], []

    def flush():
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#")
                             for line in body.splitlines())
        body = (body.replace("{{COLAB}}", COLAB.format(repo=REPOSITORY, name=name))
                .replace("{{INSTALL}}", INSTALL).replace("{{SETUP}}", SETUP))
        cells.append((kind, body, tags))

    for line in text.splitlines():
        match = _MARK.match(line)
        if match:
            flush()
            kind = match.group(1) or "code"
            tags = json.loads(match.group(2)) if match.group(2) else []
            lines = []
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def sources():
    """The cell files, in order: ``[Path]``."""
    return sorted(CELLS.glob("[0-9][0-9]_*.txt"))


def generate(source):
    """The notebook of one cell file, without outputs: ``(file name, nbformat node)``."""
    name = source.stem + ".ipynb"
    nb = nbformat.v4.new_notebook()
    nb.metadata = copy.deepcopy(_METADATA)
    for i, (kind, body, tags) in enumerate(parse(source.read_text(encoding="utf-8"), name)):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cell = make(body)
        cell.id = f"{source.stem[:2]}-{i:02d}"  # stable ids: regenerating changes nothing
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    nbformat.validate(nb)
    return name, nb


def build(source):
    """The notebook of one cell file as text, without outputs: ``(file name, text)``."""
    name, nb = generate(source)
    return name, dumps(nb)


def dumps(nb):
    """A notebook as the text written to disk."""
    return nbformat.writes(nb) + "\n"


def skeleton(nb):
    """What ``--check`` compares: each cell's id, type, source and tags; no outputs."""
    return [(cell.get("id"), cell.cell_type, cell.source, list(cell.metadata.get("tags", [])))
            for cell in nb.cells]


def differences(source, target=None):
    """Why the notebook of ``source`` is out of date: a list of lines, empty when it is not.

    Args:
        source: a cell file, ``tutorials/_cells/NN_name.txt``.
        target: the notebook to compare (default: ``tutorials/NN_name.ipynb``).
    """
    name, expected = generate(source)
    target = Path(target) if target is not None else HERE / name
    if not target.is_file():
        return [f"{name}: missing"]
    actual = nbformat.read(target, as_version=4)
    want, have = skeleton(expected), skeleton(actual)
    problems = [f"{name}: {len(have)} cells, the cell file makes {len(want)}"] \
        if len(want) != len(have) else []
    for i, (a, b) in enumerate(zip(want, have, strict=False)):
        if a != b:
            problems.append(f"{name}: cell {i} ({a[0]}) differs from {source.name}")
    return problems


#: stderr lines about the machine that ran the notebook, not about the tutorial; not stored:
#: TensorFlow's C++ log (e.g. its CUDA probing on a machine without a GPU), which comes before
#: ``TF_CPP_MIN_LOG_LEVEL`` applies, and tqdm's notice that ipywidgets is missing (Jupyter,
#: the ``tutorials`` extra, and Colab have it).
_TF_LOG = re.compile(r"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] .*"
                     r"|WARNING: All log messages before absl::InitializeLog\(\) .*"
                     r"|.*TqdmWarning: IProgress not found.*"
                     r"|\s+from \.autonotebook import tqdm as notebook_tqdm)\n?",
                     re.MULTILINE)


def clean(nb):
    """Drop volatile metadata (timings, kernel versions) and TensorFlow's C++ log lines."""
    nb.metadata = copy.deepcopy(_METADATA)
    for cell in nb.cells:
        tags = cell.metadata.get("tags")
        cell.metadata = nbformat.NotebookNode({"tags": tags} if tags else {})
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            output.get("metadata", {}).pop("execution", None)
            if output.output_type == "stream" and output.name == "stderr":
                output.text = _TF_LOG.sub("", output.text)
                if not output.text:
                    continue
            kept.append(output)
        cell.outputs = kept
    return nb


def merge(fresh, stored):
    """Copy the outputs of ``stored``'s cells into ``fresh`` where a cell did not change.

    Returns:
        the number of code cells of ``fresh`` that lost stored outputs (changed or new).
    """
    old = {cell.get("id"): cell for cell in stored.cells}
    lost = 0
    for cell in fresh.cells:
        if cell.cell_type != "code":
            continue
        before = old.get(cell.get("id"))
        if (before is not None and before.cell_type == "code" and before.source == cell.source
                and before.metadata.get("tags", []) == cell.metadata.get("tags", [])):
            cell.outputs = before.outputs
            cell.execution_count = before.execution_count
        elif before is not None and before.get("outputs"):
            lost += 1
    return lost


def execute(source, timeout=CELL_TIMEOUT):
    """Run the notebook of ``source`` in this folder and write it with its outputs.

    Full mode (``KEMO_QUICK=0``) unless the notebook is in :data:`QUICK_ONLY`.

    Returns:
        ``(path, seconds, quick)``.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed (nothing is written).
    """
    from nbclient import NotebookClient

    name, nb = generate(source)
    quick = source.stem in QUICK_ONLY
    # The kernel inherits the environment: the mode, and TensorFlow's C++ log (CUDA probing
    # on a machine without a GPU) kept out of the stored outputs.
    env = {"KEMO_QUICK": "1" if quick else "0",
           "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    t0 = time.time()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                       resources={"metadata": {"path": str(HERE)}}).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    seconds = time.time() - t0
    target = HERE / name
    target.write_text(dumps(shrink(clean(nb))), encoding="utf-8")
    return target, seconds, quick


def shrink(nb, above=SHRINK_ABOVE):
    """Store large PNG figures smaller: grey ones as grey (lossless), others with 256 colours.

    Only images over ``above`` bytes, and only where the result is smaller.
    """
    import base64
    import io

    import numpy as np
    from PIL import Image

    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" not in data:
                continue
            raw = base64.b64decode(data["image/png"])
            if len(raw) <= above:
                continue
            rgba = np.asarray(Image.open(io.BytesIO(raw)).convert("RGBA"))
            grey = (rgba[..., 3] == 255).all() and (rgba[..., :3] == rgba[..., :1]).all()
            image = (Image.fromarray(rgba[..., 0]) if grey
                     else Image.fromarray(rgba[..., :3]).quantize(colors=256))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", optimize=True)
            if buffer.tell() < len(raw):
                data["image/png"] = base64.b64encode(buffer.getvalue()).decode("ascii")
    return nb


def _select(names):
    """The cell files named by ``names`` (stems or number prefixes); all when empty."""
    files = sources()
    if not names:
        return files
    chosen = []
    for name in names:
        stem = Path(name).stem
        found = [f for f in files if f.stem == stem or f.stem.startswith(stem)]
        if len(found) != 1:
            raise SystemExit(f"{name!r} names {len(found)} notebooks; use one of "
                             f"{[f.stem for f in files]}")
        chosen += found
    return chosen


def main(argv=None):
    """Write, check or execute the notebooks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="only report notebooks whose cells differ from the cell files")
    mode.add_argument("--execute", action="store_true",
                      help="run the notebooks (full mode except 03) and store their outputs")
    parser.add_argument("names", nargs="*", help="notebooks (e.g. 05_c3d or 05); default: all")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT,
                        help=f"seconds per cell for --execute (default {CELL_TIMEOUT})")
    args = parser.parse_args(argv)
    files = _select(args.names)
    if args.check:
        problems = [line for source in files for line in differences(source)]
        for line in problems:
            print(line)
        if problems:
            print("out of date: run python tutorials/_build.py (then --execute to refresh "
                  "their outputs)")
            return 1
        return 0
    if args.execute:
        from nbclient.exceptions import CellExecutionError

        failed = []
        for source in files:
            try:
                target, seconds, quick = execute(source, args.timeout)
            except CellExecutionError as error:  # the notebook is left as it was
                print(f"FAILED {source.stem}: {error}", flush=True)
                failed.append(source.stem)
                continue
            print(f"executed {target.relative_to(ROOT)} ({'QUICK' if quick else 'full'}) in "
                  f"{seconds:.0f} s: {target.stat().st_size / 1e6:.2f} MB", flush=True)
        if failed:
            print("failed (not written):", ", ".join(failed))
        return 1 if failed else 0
    for source in files:
        name, nb = generate(source)
        target = HERE / name
        lost = merge(nb, nbformat.read(target, as_version=4)) if target.is_file() else 0
        target.write_text(dumps(clean(nb)), encoding="utf-8")
        note = (f" ({lost} changed cells lost their outputs: run python tutorials/_build.py "
                f"--execute {source.stem})" if lost else "")
        print("wrote", target.relative_to(ROOT), note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
