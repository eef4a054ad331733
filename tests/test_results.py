"""The figures of docs/results.md and of the README's headline table agree with docs/results.json.

docs/results.json holds every figure with its protocol: the section ``reproduce``, written by
``benchmarks/reproduce.py``, and the section ``benchmarks``, the other scripts' figures with
the command and date that measured them. Every table of docs/results.md between
``<!-- results:NAME -->`` markers is generated from that file; these tests render each block
again and require the page to be exactly what the file gives, so a number edited by hand in the
page (or a results file changed without regenerating the page) fails. The README's headline
table is checked row by row where its first cell names a figure kept here (the face-model row
against the default model's card, its `kemo.weights` entry).

The slow test runs ``reproduce.py --quick`` twice with the same seed into two empty caches and
requires the same results (about 5 minutes on 2 loaded cores: ``pytest -m slow``).
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kemo import weights as registry

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCRIPT = ROOT / "benchmarks" / "reproduce.py"
NUMBER = re.compile(r"\d+(?:\.\d+)?(?:/\d+)?")


@pytest.fixture(scope="module")
def results():
    return json.loads((DOCS / "results.json").read_text())


def blocks(text):
    """``{name: body}`` of the generated blocks of a Markdown text."""
    found = re.findall(r"<!-- results:([\w.\-]+) -->\n(.*?)<!-- /results:\1 -->", text, re.S)
    return dict(found)


def disagreements(reproduce, text, results):
    """Names of the generated blocks of ``text`` that differ from their rendering."""
    want = blocks(reproduce.render_markdown(text, results))
    return [name for name, body in blocks(text).items() if body != want[name]]


def test_results_page_is_generated_from_the_results_file(reproduce, results):
    text = (DOCS / "results.md").read_text()
    names = set(blocks(text))
    for name in ("reproduce.run", "reproduce.table1", "reproduce.table2", "reproduce.table3",
                 "fitted_protocols.figures", "current_model.ckplus_labels", "bench_video.speed"):
        assert name in names, f"docs/results.md lacks the generated block {name}"
    bad = disagreements(reproduce, text, results)
    assert not bad, (f"docs/results.md disagrees with docs/results.json in {bad}; regenerate it "
                     f"with `python benchmarks/reproduce.py --render-docs` (or rerun the "
                     f"benchmark) instead of editing the figures by hand")


def test_model_card_speed_is_generated_from_the_results_file(reproduce, results):
    """The model card quotes the face model's speed from the same file."""
    text = (ROOT / reproduce.CARD).read_text()
    assert "face_model_speed.rates" in blocks(text), "the card lacks its speed table"
    bad = disagreements(reproduce, text, results)
    assert not bad, (f"{reproduce.CARD} disagrees with docs/results.json in {bad}; regenerate "
                     f"it with `python benchmarks/reproduce.py --render-docs`")


def test_a_changed_figure_is_caught(reproduce, results):
    """The check is real: one digit changed in any table of the page makes it fail."""
    text = (DOCS / "results.md").read_text()
    for name, body in blocks(text).items():
        match = re.search(r"\| (\d+)\.(\d\d)", body) or re.search(r"(\d+)/(\d+)", body)
        if match is None:
            continue
        digit = match.start(1)
        changed = body[:digit] + str((int(body[digit]) + 1) % 10) + body[digit + 1:]
        tampered = text.replace(body, changed, 1)
        assert name in disagreements(reproduce, tampered, results), (
            f"a changed figure in block {name} went unnoticed")


def test_every_figure_names_its_protocol(results):
    section = results.get("reproduce")
    if section is not None:
        assert section["seeds"] and section["spread"], "the seeds and the spread are stated"
        assert section["table1"]["protocol"]["dataset"] == "FER2013 PublicTest"
        for st in section["table2"]["protocol"]["sets"]:
            p = st["protocol"]
            assert p["videos"] and p["subjects"] and p["folds"] and p["split"], f"protocol {st}"
        for row in section["table2"]["rows"]:
            for key, s in row["cells"].items():
                if s is not None:
                    assert len(s["per_seed"]) == len(section["seeds"]), f"{row['key']} {key}"
    for name, entry in results["benchmarks"].items():
        assert entry.get("measured"), f"benchmark {name} says when it was measured"
        assert "rerun" in entry, f"benchmark {name} says whether it was rerun"


README_ROWS = {
    # first cell of a README headline row: (column, expected cell) pairs from results.json
    # the shipped default's card (Table I of reproduce.py may date from an earlier default)
    "face emotion": lambda r, rp: [(2, _default_card())],
    "video emotion, pretrained": lambda r, rp: [
        (2, " ".join(_row(r, "current_model", "ckplus_labels", 1)[3:5]))],
    "video emotion, mean of frames": lambda r, rp: [
        (2, _row(r, "current_model", "ckplus_labels", 0)[3]),
        (3, " ".join(row[1] for row in r["benchmarks"]["bench_video"]["tables"]["fer_ckplus"]
                     ["rows"]))],
    # the default recogniser (scores branch), then the paper's SVM alone
    "video emotion, trained": lambda r, rp: [
        (2, _row(r, "ckplus_videos", "fitted", 1)[2] + " " + _row(r, "ckplus_videos", "fitted",
                                                                  0)[2])],
    "video emotion, trained, cropped sequences": lambda r, rp: [
        (2, _named(r, "ckplus48_fitted", "fitted",
                   "the same with scores, face model fine-tuned in each fold (3 epochs)")[2])],
    "fusion, paper's weights": lambda r, rp: [
        (2, rp.reference(r, "table2:fusion_paper:ckplus_clips"))],
    "speed": lambda r, rp: [
        (2, _row(r, "bench_video", "speed", 1)[4]),
        (3, _row(r, "bench_video", "speed", 3)[4] + " " + _row(r, "bench_video", "speed", 4)[4])],
    "speed, large frames": lambda r, rp: [
        (2, _row(r, "bench_video", "speed", 11)[4]),
        (3, _row(r, "bench_video", "speed", 13)[4] + " " + _row(r, "bench_video", "speed", 14)[4])],
}


def _default_card():
    """The default face model's PublicTest accuracy, raw and on kemo's aligned crops."""
    metrics = registry.get(registry.DEFAULT_WEIGHTS).metrics
    return " ".join(f"{100 * metrics[key]:.2f}" for key in (
        "fer2013_publictest_accuracy", "fer2013_publictest_aligned_accuracy"))


def _row(results, name, table, i):
    return results["benchmarks"][name]["tables"][table]["rows"][i]


def _named(results, name, table, first_cell):
    """The row of a table whose first cell is ``first_cell``."""
    rows = results["benchmarks"][name]["tables"][table]["rows"]
    found = [row for row in rows if row[0] == first_cell]
    assert found, (f"{name}.{table} has no row {first_cell!r}; its rows: "
                   f"{[row[0] for row in rows]}")
    return found[0]


def readme_rows(text):
    """``{first cell: cells}`` of the Markdown table rows in the README's Results section."""
    section = text.split("\n## Results", 1)[-1].split("\n## ", 1)[0] if "\n## Results" in text \
        else ""
    rows = {}
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


def test_readme_headline_agrees_with_the_results_file(reproduce, results):
    text = (ROOT / "README.md").read_text()
    bad = disagreements(reproduce, text, results)
    assert not bad, f"README.md's generated blocks {bad} disagree with docs/results.json"
    rows = readme_rows(text)
    checked = []
    for key, expected in README_ROWS.items():
        if key not in rows:
            continue
        for column, want in expected(results, reproduce):
            have = rows[key][column]
            if want.startswith("("):  # a figure not generated yet
                continue
            assert sorted(NUMBER.findall(have)) == sorted(NUMBER.findall(want)), (
                f"README headline row {key!r}, column {column + 1}: {have!r}, but "
                f"docs/results.json gives {want!r}")
            checked.append(key)
    if rows:
        assert checked, f"no README headline row matched a figure of docs/results.json: {rows}"


def test_readme_check_catches_a_changed_figure(reproduce, results):
    rows = {"video emotion, trained": ["video emotion, trained", "loso", "71.00 %"]}
    have = rows["video emotion, trained"][2]
    want = README_ROWS["video emotion, trained"](results, reproduce)[0][1]
    assert sorted(NUMBER.findall(have)) != sorted(NUMBER.findall(want)), (
        "a changed README figure must differ")


def test_spread_cells(reproduce):
    s = reproduce.stat([0.6, 0.65, 0.7])
    assert s["mean"] == pytest.approx(0.65) and s["std"] == pytest.approx(0.05)
    assert reproduce.cell(s) == "65.00 ± 5.00 (60.00–70.00)"
    assert reproduce.cell(reproduce.stat([0.5, 0.5]), seed_dependent=False) == "50.00"
    assert reproduce.cell(reproduce.stat([0.5, 0.5])) == "50.00 ± 0.00 (50.00–50.00)"
    assert reproduce.cell(reproduce.stat([0.5])) == "50.00 (1 seed)"


@pytest.mark.slow
def test_same_seed_gives_the_same_tables(reproduce, shared_data, tmp_path):
    """Two --quick runs with seed 0, each with an empty cache, give identical results."""
    sections = []
    for run in ("a", "b"):
        out = tmp_path / run
        subprocess.run([sys.executable, str(SCRIPT), "--quick", "--seeds", "1", "--data",
                        str(shared_data), "--out", str(out / "out"), "--cache",
                        str(out / "cache")], check=True, capture_output=True, cwd=ROOT)
        saved = json.loads((out / "out" / "results.json").read_text())["reproduce"]
        sections.append(reproduce.comparable(saved))
    assert sections[0] == sections[1], "the same seed gave different tables"
