"""benchmarks/reproduce.py in QUICK mode on the real data: the three tables, printed and sane.

QUICK mode shrinks every set and budget (300 PublicTest images, a VGG-style net trained 1 epoch
on 512 images, 12 CK+ clips of 6 frames, 62 CK+48 sequences, 2 subject folds, 1 C3D epoch), so
its figures are not results; the checks are that every branch runs end to end on real inputs,
gives held-out predictions of every video, and that the tables and figures are written.
"""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce.py"
METHODS = ("majority", "resnet", "vgg", "aggregation", "lstm", "fusion_paper", "fusion_search")


@pytest.fixture(scope="module")
def quick_run(reproduce, shared_data, tmp_path_factory):
    """One QUICK run: (printed text, returned summary, out folder, cache folder)."""
    out = tmp_path_factory.mktemp("out")
    cache = tmp_path_factory.mktemp("cache")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        summary = reproduce.main(["--quick", "--data", str(shared_data), "--out", str(out),
                                  "--cache", str(cache)])
    return printed.getvalue(), summary, out, cache


def test_tables_are_printed_beside_the_paper(quick_run):
    text, summary, _, _ = quick_run
    for title in ("Table I.", "Table II.", "Table III."):
        assert title in text, f"{title} missing from the printed output"
    for figure in ("70.27", "71.01", "37.14", "38.86", "40.15", "41.53", "39.84", "48.01"):
        assert figure in text, f"paper figure {figure} missing from the printed tables"
    assert "wall time" in text, "the run must print its wall time"
    assert summary["mode"] == "quick", f"mode {summary['mode']}"


def test_table1_scores_the_shipped_model_live(quick_run):
    _, summary, _, _ = quick_run
    t1 = summary["table1"]
    resnet = t1["resnet10"]
    assert resnet["n"] == 300, f"QUICK scores 300 PublicTest images, got {resnet['n']}"
    # Shipped model: 63 % on all of PublicTest; chance 14 %, majority class 25 %.
    assert 0.45 < resnet["accuracy"] <= 1.0, f"ResNet-10 PublicTest {resnet['accuracy']:.3f}"
    vgg = t1["vgg_style"]
    assert vgg["epochs"] == 1 and vgg["train_images"] == 512, f"VGG-style budget {vgg}"
    assert 0.0 <= vgg["accuracy"] <= 1.0, f"VGG-style accuracy {vgg['accuracy']}"
    face = t1["vggface"]
    if face["present"]:
        assert 0.0 <= face["accuracy"] <= 1.0, f"VGG-Face probe accuracy {face['accuracy']}"
    else:
        assert "rcmalli_vggface_tf_vgg16.h5" in face["where"], f"where to put it: {face}"


def test_table2_every_branch_predicts_every_video(quick_run):
    _, summary, _, _ = quick_run
    t2 = summary["table2"]
    assert set(t2) == {"ckplus_clips", "ckplus48"}, f"video sets {set(t2)}"
    for name, res in t2.items():
        expected = set(METHODS) | ({"c3d"} if name == "ckplus_clips" else set())
        assert set(res["accuracy"]) == expected, f"{name}: methods {set(res['accuracy'])}"
        for method, acc in res["accuracy"].items():
            assert 0.0 <= acc <= 1.0, f"{name} {method}: accuracy {acc}"
        for method, report in summary["table3"][name].items():
            total = int(np.sum(report["confusion"]))
            assert total == res["n"], f"{name} {method}: {total} predictions for {res['n']} videos"
        weights = np.array(list(res["info"]["searched_weights"].values()))
        assert (weights >= 0).all() and abs(weights.sum() - 1) < 1e-2, (
            f"{name}: searched weights {weights}")
    ck48 = t2["ckplus48"]["accuracy"]
    # Pretrained FER2013 features separate CK+ expressions well (84 % measured; chance 17 %).
    assert ck48["resnet"] > ck48["majority"] + 0.2, f"CK+48 ResNet-10 SVM {ck48['resnet']:.3f}"


def test_table3_figures_and_files_are_written(quick_run):
    text, summary, out, cache = quick_run
    assert len(summary["figures"]) == 8 + 7, f"figures {summary['figures']}"
    for name in summary["figures"] + ["fer2013_resnet10_confusion.png"]:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, f"{name} is not a figure"
        assert name in text or name.startswith("fer2013"), f"{name} not listed in the output"
    saved = json.loads((out / "results.json").read_text())
    assert saved["table2"]["ckplus48"]["n"] == 62, "results.json holds the run's figures"
    assert "Table II." in (out / "tables.md").read_text(), "tables.md holds the tables"
    cached = {p.name.split("-")[0] for p in cache.iterdir()}
    assert {"faces", "features", "lstm", "c3d", "vgg_style"} <= cached, f"cache holds {cached}"


def test_cached_arrays_compute_once(reproduce, tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"a": np.arange(3)}

    first = reproduce.cached_arrays(tmp_path / "x.npz", compute)
    second = reproduce.cached_arrays(tmp_path / "x.npz", compute)
    assert calls == [1], f"computed {len(calls)} times"
    assert np.array_equal(first["a"], second["a"]), "cached values differ"


def test_recorded_runs_are_read(reproduce, tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"model": "VGG-style", "publictest":
                                                 {"accuracy": 0.6, "accuracy_flip": 0.62}}))
    (tmp_path / "b.json").write_text(json.dumps({"best": {"epoch": 3, "val_accuracy": 0.5}}))
    (tmp_path / "c.json").write_text(json.dumps({"no": "figure"}))
    runs = [(f, m, a) for f, m, a, _ in reproduce.read_recorded_runs(tmp_path)]
    assert runs == [("a.json", "VGG-style", 0.62), ("b.json", "b", 0.5)], f"read {runs}"


def test_linear_probe_on_real_faces(reproduce, shared_data):
    """The VGG-Face probe path, run with a small network (VGG-Face weights are not here)."""
    from kemo.datasets import load_fer2013
    from kemo.features import FrameFeatureExtractor

    fer = load_fer2013(shared_data / "fer2013", subset="PublicTest")
    model = reproduce.vgg_style(widths=(4, 4, 4, 4))
    extractor = FrameFeatureExtractor(model, layer="fc6", preprocess=reproduce.scale01).fit()
    acc, report = reproduce.linear_probe(extractor, (fer.images[:60], fer.labels[:60]),
                                         (fer.images[60:90], fer.labels[60:90]), Cs=(1.0,))
    assert 0.0 <= acc <= 1.0 and report.support and sum(report.support) == 30, (
        f"probe accuracy {acc}, support {report.support}")
