"""Write the tutorial notebooks (tutorials/NN_*.ipynb) from the cell sources in tutorials/_cells.

The notebooks are generated, without outputs, so that they stay reviewable as text and CI runs
them from a clean state. Edit the cell files, then run::

    python tutorials/_build.py            # rewrite every notebook
    python tutorials/_build.py --check    # exit 1 when a notebook differs from its cell file

Cell files: ``tutorials/_cells/NN_name.txt``, in the "percent" layout editors know: a line
``# %% [markdown]`` starts a markdown cell (its lines start with ``# ``, removed on output),
``# %%`` a code cell, and ``# %% tags=["parameters"]`` a code cell with tags. ``{{COLAB}}``,
``{{INSTALL}}`` and ``{{SETUP}}`` expand to the shared Colab badge, install cell and setup cell
below. The notebooks themselves are linted: ``ruff check tutorials``.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
CELLS = HERE / "_cells"

#: Where the repository lives on GitHub; the Colab badges open the notebooks from there.
REPOSITORY = "kemo-ml/kemo"
COLAB = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
         "(https://colab.research.google.com/github/{repo}/blob/main/tutorials/{name})")

INSTALL = f'''# On Colab, install kemo from GitHub (Colab already has TensorFlow).
# Elsewhere, install it once from a clone of the repository: pip install -e ".[dev]"
import sys

if "google.colab" in sys.modules:
    %pip install -q "kemo @ git+https://github.com/{REPOSITORY}"'''

#: Shared setup: inline figures, a clock, and the data folder. kemo itself never
#: looks for data: the notebook finds it and passes the path.
SETUP = '''import time
from pathlib import Path

%matplotlib inline
START = time.time()

if DATA is None:  # a checkout next to the shared data folder: <repo>/../shared/data
    here = Path.cwd().resolve()
    repo = here.parent if here.name == "tutorials" else here
    if (repo.parent / "shared" / "data").is_dir():
        DATA = repo.parent / "shared" / "data"

import kemo  # noqa: E402

DATA = kemo.data_home(DATA)  # raises DataNotFoundError with the expected layout if missing
print("data:", DATA, "| QUICK:", QUICK)'''

_MARK = re.compile(r"^# %%(?: \[(markdown)\])?(?: tags=(\[.*\]))?\s*$")


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


def build(source):
    """Return the notebook (an ``nbformat`` node) for one cell file."""
    name = source.stem + ".ipynb"
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    for i, (kind, body, tags) in enumerate(parse(source.read_text(encoding="utf-8"), name)):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cell = make(body)
        cell.id = f"{source.stem[:2]}-{i:02d}"  # stable ids: regenerating changes nothing
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    nbformat.validate(nb)
    return name, nbformat.writes(nb) + "\n"


def main(argv=None):
    """Write (or with ``--check``, compare) every notebook."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale notebooks")
    args = parser.parse_args(argv)
    stale = []
    for source in sorted(CELLS.glob("[0-9][0-9]_*.txt")):
        name, text = build(source)
        target = HERE / name
        if args.check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            target.write_text(text, encoding="utf-8")
            print("wrote", target.relative_to(HERE.parent))
    if stale:
        print("out of date (run python tutorials/_build.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
