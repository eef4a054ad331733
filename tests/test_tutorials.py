"""The committed tutorial notebooks: generated from tutorials/_cells, executed, clean, small.

The notebooks are committed with the outputs of one run on the real data
(``python tutorials/_build.py --execute``). These tests read the committed files only (they run
nothing), so they pass on a fresh clone without the data; running the notebooks is nbmake's
job (``pytest tutorials``), which tutorials/conftest.py skips when the data is missing.
"""

import copy
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
sys.path.insert(0, str(TUTORIALS))
import _build  # noqa: E402

SOURCES = _build.sources()
#: Tutorials that must show at least one figure (01 is about data and may not).
WITH_FIGURES = {f"{n:02d}" for n in range(2, 9)}


def error_outputs(nb):
    """Outputs of ``nb`` that report an error: ``[(cell index, what)]``."""
    found = []
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                found.append((i, f"{output.ename}: {output.evalue}"))
            elif output.output_type == "stream" and output.name == "stderr":
                text = output.text
                if "Traceback" in text or "Error" in text:
                    found.append((i, f"stderr: {text.strip()[:300]}"))
    return found


def figures(nb):
    """Number of PNG images among the outputs of ``nb``."""
    return sum("image/png" in output.get("data", {})
               for cell in nb.cells for output in cell.get("outputs", []))


def unexecuted(nb):
    """Indices of code cells without an execution count (not run, or outputs dropped)."""
    return [i for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and cell.execution_count is None]


def check_notebook(path, source):
    """Everything wrong with one committed notebook: a list of sentences (empty: fine)."""
    path = Path(path)
    problems = list(_build.differences(source, path))
    size = path.stat().st_size
    if size > _build.MAX_BYTES:
        problems.append(f"{path.name} is {size / 1e6:.2f} MB, over {_build.MAX_BYTES / 1e6:g} MB")
    nb = nbformat.read(path, as_version=4)
    problems += [f"{path.name}: cell {i}: {what}" for i, what in error_outputs(nb)]
    cells = unexecuted(nb)
    if cells:
        problems.append(f"{path.name}: code cells {cells} hold no outputs of a run (run "
                        f"python tutorials/_build.py --execute {source.stem})")
    if source.stem[:2] in WITH_FIGURES and not figures(nb):
        problems.append(f"{path.name}: no figure (image/png output)")
    return problems


def test_every_cell_file_has_a_notebook():
    assert len(SOURCES) == 8, f"expected 8 cell files in tutorials/_cells, found {SOURCES}"
    names = sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]_*.ipynb"))
    assert names == [s.stem + ".ipynb" for s in SOURCES], \
        f"notebooks {names} do not match the cell files {[s.name for s in SOURCES]}"


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_committed_notebook(source):
    problems = check_notebook(TUTORIALS / (source.stem + ".ipynb"), source)
    assert not problems, "\n".join(problems)


# The checks above must catch a bad notebook: spoil a good one in each way and see.

@pytest.fixture(scope="module")
def good():
    source = next(s for s in SOURCES if s.stem.startswith("02"))
    return source, nbformat.read(TUTORIALS / (source.stem + ".ipynb"), as_version=4)


def _write(tmp_path, nb):
    path = tmp_path / "spoiled.ipynb"
    nbformat.write(nb, path)
    return path


def test_check_passes_the_committed_notebook(good, tmp_path):
    source, nb = good
    assert check_notebook(_write(tmp_path, copy.deepcopy(nb)), source) == [], \
        "a faithful copy of a committed notebook must pass"


@pytest.mark.parametrize("spoil, word", [
    ("error", "ZeroDivisionError"),
    ("stderr", "Traceback"),
    ("source", "differs"),
    ("extra cell", "cells"),
    ("no figure", "no figure"),
    ("not run", "no outputs"),
    ("too big", "MB"),
])
def test_check_fails_on_a_spoiled_notebook(good, tmp_path, spoil, word):
    source, nb = good
    nb = copy.deepcopy(nb)
    code = next(c for c in nb.cells if c.cell_type == "code" and c.outputs)
    if spoil == "error":
        code.outputs.append(nbformat.v4.new_output(
            "error", ename="ZeroDivisionError", evalue="division by zero", traceback=[]))
    elif spoil == "stderr":
        code.outputs.append(nbformat.v4.new_output(
            "stream", name="stderr", text="Traceback (most recent call last):\n"))
    elif spoil == "source":
        code.source += "\nx = 1"
    elif spoil == "extra cell":
        nb.cells.append(nbformat.v4.new_markdown_cell("extra"))
    elif spoil == "no figure":
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = [o for o in cell.outputs if "image/png" not in o.get("data", {})]
    elif spoil == "not run":
        code.outputs, code.execution_count = [], None
    elif spoil == "too big":
        code.outputs.append(nbformat.v4.new_output(
            "stream", name="stdout", text="x" * (_build.MAX_BYTES + 1)))
    problems = check_notebook(_write(tmp_path, nb), source)
    assert any(word in p for p in problems), f"{spoil}: not caught; problems: {problems}"


def test_build_keeps_outputs_of_unchanged_cells(good):
    source, stored = good
    _, fresh = _build.generate(source)
    assert _build.merge(fresh, stored) == 0, "no cell changed, so none may lose its outputs"
    assert _build.dumps(fresh) == _build.dumps(stored), \
        "rebuilding an up-to-date notebook must give back the committed file, outputs and all"


def test_repository_comes_from_pyproject():
    import tomllib

    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    assert url == f"https://github.com/{_build.REPOSITORY}", \
        f"_build.REPOSITORY {_build.REPOSITORY!r} disagrees with pyproject's {url!r}"
    text = (TUTORIALS / (SOURCES[0].stem + ".ipynb")).read_text()
    assert f"colab.research.google.com/github/{_build.REPOSITORY}/" in text, \
        "the Colab badge must open the notebook from the repository of pyproject.toml"
    assert f"git+{url}" in text, "the Colab install cell must install from that repository"


def test_notebooks_are_skipped_with_a_reason_without_data(tmp_path):
    env = {**os.environ, "KEMO_DATA": str(tmp_path)}  # an empty folder: no data sets
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "tutorials/01_data.ipynb", "-rs", "-q",
         "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 0 and "1 skipped" in out, f"not skipped without data:\n{out}"
    assert "tutorial data incomplete" in out and str(tmp_path) in out, \
        f"the skip reason must name the data folder:\n{out}"
