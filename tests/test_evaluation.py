"""evaluate(): accuracy, per-class table, confusion matrix and its figure."""

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from kemo.datasets import CLASS_NAMES
from kemo.errors import InputError
from kemo.evaluation import compare, evaluate

Y_TRUE = np.array([0, 0, 0, 3, 3, 6, 6, 6, 6, 5])
Y_PRED = np.array([0, 0, 3, 3, 3, 6, 6, 0, 6, 3])


def test_scores_by_hand():
    report = evaluate(Y_TRUE, Y_PRED)
    assert report.accuracy == pytest.approx(0.7), f"7 of 10 right, got {report.accuracy}"
    assert report.labels == (0, 3, 5, 6), f"labels found in the data: {report.labels}"
    assert report.class_names == ("Angry", "Happy", "Surprise", "Neutral"), (
        f"kemo's names by default: {report.class_names}")
    assert report.per_class == pytest.approx(
        {"Angry": 2 / 3, "Happy": 1.0, "Surprise": 0.0, "Neutral": 0.75}), report.per_class
    assert report.mean_class_accuracy == pytest.approx((2 / 3 + 1 + 0 + 0.75) / 4), (
        "mean class accuracy is the mean of the per-class accuracies")
    want = np.array([[2, 1, 0, 0], [0, 2, 0, 0], [0, 1, 0, 0], [1, 0, 0, 3]])
    np.testing.assert_array_equal(report.confusion, want, err_msg="rows true, columns predicted")
    rows = report.confusion_matrix()
    np.testing.assert_allclose(rows.sum(1), 1, err_msg="normalize='true': rows sum to 1")
    np.testing.assert_allclose(report.confusion_matrix(None), want, err_msg="counts")
    cols = report.confusion_matrix("pred")
    np.testing.assert_allclose(cols.sum(0), [1, 1, 0, 1], err_msg="columns sum to 1 (or 0)")


def test_all_classes_with_names_and_probabilities():
    proba = np.eye(7)[Y_PRED] * 0.6 + 0.4 / 7
    report = evaluate(Y_TRUE, proba)
    assert report.class_names == CLASS_NAMES, "K probability columns -> all K classes"
    assert report.accuracy == pytest.approx(0.7), "argmax of probabilities is the prediction"
    assert np.isnan(report.per_class["Disgust"]) and report.support[1] == 0, (
        "a class without samples has no accuracy")
    named = evaluate(Y_TRUE, Y_PRED, class_names=CLASS_NAMES)
    assert named.labels == tuple(range(7)), "names given: labels are 0..K-1"


def test_string_labels_and_explicit_labels():
    report = evaluate(["cat", "dog", "dog"], ["cat", "cat", "dog"], labels=["dog", "cat"])
    assert report.class_names == ("dog", "cat"), f"table order is labels: {report.class_names}"
    assert report.per_class == {"dog": 0.5, "cat": 1.0}, report.per_class


def test_text_table_and_dict():
    report = evaluate(Y_TRUE, Y_PRED)
    text = str(report)
    assert "Angry" in text and "66.67" in text and "70.00" in text, f"table:\n{text}"
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data, "to_dict must be JSON-friendly"
    assert data["confusion"][3] == [1, 0, 0, 3], "confusion counts in the dict"


def test_figure(tmp_path):
    report = evaluate(Y_TRUE, Y_PRED)
    fig = report.plot_confusion_matrix()
    assert isinstance(fig, Figure), f"a matplotlib Figure expected, got {type(fig)}"
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(report.class_names), (
        "rows labelled with the class names")
    texts = [t.get_text() for t in ax.texts]
    assert "0.67" in texts and "0.75" in texts, f"cells show row-normalised values: {texts}"
    fig.savefig(tmp_path / "cm.png")
    assert (tmp_path / "cm.png").stat().st_size > 1000, "the figure must render to PNG"
    counts = report.plot_confusion_matrix(normalize=None)
    assert "3" in [t.get_text() for t in counts.axes[0].texts], "counts when normalize=None"


def test_compare_table():
    a = evaluate(Y_TRUE, Y_PRED, class_names=CLASS_NAMES)
    b = evaluate(Y_TRUE, Y_TRUE, class_names=CLASS_NAMES)
    table = compare({"aggregation": a, "fusion": b})
    lines = table.splitlines()
    assert len(lines) == 3 and "Neutral" in lines[0], f"header + one row per method:\n{table}"
    assert lines[2].split()[-1] == "100.00", f"overall accuracy last: {lines[2]}"
    with pytest.raises(InputError, match="has classes"):
        compare({"a": a, "b": evaluate(Y_TRUE, Y_PRED)})


@pytest.mark.parametrize("y_pred,kwargs,match", [
    (Y_PRED[:5], {}, "y_pred must be labels"),
    (Y_PRED, {"labels": [0, 3]}, r"labels \[5, 6\] are not among"),
    (Y_PRED, {"class_names": ["a", "b"], "labels": [0, 3, 5, 6]}, "2 class_names for 4"),
    (np.ones((10, 3)), {"labels": [0, 1]}, "3 columns but labels has 2"),
    (Y_PRED, {"normalize": "rows"}, "normalize must be"),
])
def test_bad_input(y_pred, kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluate(Y_TRUE, y_pred, **kwargs)
