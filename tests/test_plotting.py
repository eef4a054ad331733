"""kemo.plotting: every figure is drawn from real data and its content checked."""

import cv2
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from kemo.datasets import CLASS_NAMES, load_ckplus
from kemo.errors import InputError
from kemo.evaluation import evaluate
from kemo.plotting import (
    plot_class_balance,
    plot_detections,
    plot_history,
    plot_per_class,
    plot_timeline,
    show_faces,
)


@pytest.fixture(scope="module")
def ck48(shared_data):
    return load_ckplus(shared_data, kind="ckplus48")


def test_show_faces_grid(ck48):
    faces = ck48.images[:10]
    names = [CLASS_NAMES[i] for i in ck48.labels[:10]]
    fig = show_faces(faces, titles=names, ncols=4, title="CK+48")
    assert isinstance(fig, Figure), f"a Figure expected, got {type(fig)}"
    assert len(fig.axes) == 10, f"one panel per face (spare grid cells removed): {len(fig.axes)}"
    shown = fig.axes[3].images[0].get_array()
    np.testing.assert_array_equal(shown, faces[3], err_msg="the 4th panel shows the 4th face")
    assert [ax.get_title() for ax in fig.axes] == names, "captions in order"
    assert fig.texts or fig._suptitle.get_text() == "CK+48", "figure title set"


def test_show_faces_rgb_list_of_sizes(shared_data):
    image = cv2.cvtColor(cv2.imread(str(shared_data / "faces" / "mtcnn_ivan.jpg")),
                         cv2.COLOR_BGR2RGB)
    fig = show_faces([image, image[:100, :80], image[..., 0]])
    assert len(fig.axes) == 3, "one panel per image"
    assert fig.axes[1].images[0].get_array().shape == (100, 80, 3), "RGB drawn as given"


@pytest.mark.parametrize("bad, match", [
    (np.zeros((48, 48, 3), np.uint8), "one image"),
    ([np.zeros((4, 4, 2))], "expected"),
    ([], "empty"),
    ("faces", "array"),
])
def test_show_faces_rejects(bad, match):
    with pytest.raises(InputError, match=match):
        show_faces(bad)


def test_show_faces_title_count():
    with pytest.raises(InputError, match="2 titles for 3 images"):
        show_faces(np.zeros((3, 8, 8), np.uint8), titles=["a", "b"])


def test_class_balance_counts(ck48):
    labels = ck48.labels
    half = labels[: len(labels) // 2]
    fig = plot_class_balance({"all": labels, "half": half}, title="CK+48")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    want = np.concatenate([np.bincount(labels, minlength=7), np.bincount(half, minlength=7)])
    np.testing.assert_array_equal(heights, want, err_msg="bar heights are the class counts")
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"all ({len(labels)})", f"half ({len(half)})"], legend
    fractions = plot_class_balance({"all": labels}, normalize=True).axes[0]
    total = sum(p.get_height() for p in fractions.patches)
    assert total == pytest.approx(1.0), f"normalised bars sum to 1, got {total}"


def test_class_balance_rejects_bad_labels():
    with pytest.raises(InputError, match="outside 0..6"):
        plot_class_balance({"x": np.array([0, 7])})
    with pytest.raises(InputError, match="integer class ids"):
        plot_class_balance(np.array([0.5, 1.0]))


def test_detections_drawn(shared_data):
    image = cv2.cvtColor(cv2.imread(str(shared_data / "faces" / "fr_two_people.jpg")),
                         cv2.COLOR_BGR2RGB)
    # Two records as FaceDetector returns them (values measured on this image).
    records = [
        {"box": [253, 127, 140, 180], "confidence": 0.999,
         "keypoints": {"left_eye": (293, 198), "right_eye": (352, 196), "nose": (323, 232),
                       "mouth_left": (300, 266), "mouth_right": (348, 264)}},
        {"box": [740, 120, 130, 170], "confidence": 0.998,
         "keypoints": {"left_eye": (775, 185), "right_eye": (830, 186), "nose": (800, 215),
                       "mouth_left": (780, 250), "mouth_right": (826, 250)}},
    ]
    fig = plot_detections(image, records)
    ax = fig.axes[0]
    boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(boxes) == 2, f"one box per face, got {len(boxes)}"
    assert boxes[1].get_xy() == (740.0, 120.0) and boxes[1].get_width() == 130.0, (
        "box position and size as recorded")
    marks = np.vstack([line.get_xydata() for line in ax.lines])
    assert marks.shape == (10, 2) and (352, 196) in [tuple(m) for m in marks], (
        f"five landmarks per face drawn: {marks.tolist()}")
    assert ax.get_title() == "2 face(s)", ax.get_title()


def test_detections_reject_bad_record():
    with pytest.raises(InputError, match="records\\[0\\]"):
        plot_detections(np.zeros((20, 20), np.uint8), [{"box": [1, 2]}])


def test_history_forms():
    epochs = [{"epoch": 1, "loss": 2.0, "accuracy": 0.2, "val_loss": 2.1, "val_accuracy": 0.1},
              {"epoch": 2, "loss": 1.5, "accuracy": 0.4, "val_loss": 1.9, "val_accuracy": 0.3}]
    fig = plot_history(epochs)
    assert len(fig.axes) == 2, "loss and accuracy panels"
    val = fig.axes[1].lines[1].get_ydata()
    np.testing.assert_allclose(val, [0.1, 0.3], err_msg="validation accuracy per epoch")
    as_dict = plot_history({"loss": [3.0, 2.0, 1.0]})
    assert len(as_dict.axes) == 1, "metrics absent from the history are skipped"
    np.testing.assert_allclose(as_dict.axes[0].lines[0].get_xdata(), [1, 2, 3],
                               err_msg="epochs numbered from 1")


def test_history_from_keras_fit():
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    history = model.fit(x, (x[:, 0] > 0).astype(int), epochs=3, verbose=0,
                        validation_split=0.25)
    fig = plot_history(history)
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[0].lines[0].get_ydata()) == 3, (
        "train and validation loss over 3 epochs")


def test_history_rejects():
    with pytest.raises(InputError, match="none of the metrics"):
        plot_history({"lr": [0.1]})
    with pytest.raises(InputError, match="History"):
        plot_history(3)


def test_timeline():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(7), size=20)
    proba[:, 3] += 2
    proba /= proba.sum(axis=1, keepdims=True)
    times = np.arange(20) / 30.0
    fig = plot_timeline(proba, times)
    ax = fig.axes[0]
    assert len(ax.collections) == 7, "one stacked area per class"
    assert ax.get_title() == "mostly Happy", ax.get_title()
    assert ax.get_xlabel() == "time (s)" and ax.get_xlim() == pytest.approx((0, 20 / 30)), (
        "time axis in seconds spanning the clip, the last frame lasting one frame")
    lines = plot_timeline(proba, stacked=False).axes[0]
    np.testing.assert_allclose(lines.lines[3].get_ydata()[:-1], proba[:, 3],
                               err_msg="one line per class with its probabilities")
    assert lines.get_xlabel() == "analysed frame", "rows without times are not frame numbers"


@pytest.mark.parametrize("stacked", [True, False])
def test_timeline_leaves_gaps_where_no_face_was_found(stacked):
    frames = np.array([0, 1, 2, 3, 10, 11, 12])  # no face in frames 4..9
    proba = np.random.default_rng(0).dirichlet(np.ones(7), size=len(frames))
    ax = plot_timeline(proba, frames, stacked=stacked, xlabel="frame").axes[0]
    # each area or line lies on one side of the gap: none bridges frames 4..9
    drawn = [p.vertices[:, 0] for c in ax.collections for p in c.get_paths()]
    drawn += [np.asarray(line.get_xdata(), float) for line in ax.lines]
    spans = sorted({(float(x.min()), float(x.max())) for x in drawn})
    assert spans == [(0, 4), (10, 13)], f"one piece each side of the gap, in frames: {spans}"


@pytest.mark.parametrize("proba, times, match", [
    (np.ones((3, 6)) / 6, None, "6 columns"),
    (np.full((3, 7), np.nan), None, "NaN"),
    (np.ones((3, 7)) / 7, [0, 2, 1], "increasing"),
    (np.ones((3, 7)) / 7, [0, 1], "one per row"),
    (np.ones((0, 7)), None, "T >= 1"),
])
def test_timeline_rejects(proba, times, match):
    with pytest.raises(InputError, match=match):
        plot_timeline(proba, times)


def test_per_class_bars():
    y = np.array([0, 0, 3, 3, 5, 6])
    reports = {"svm": evaluate(y, [0, 3, 3, 3, 5, 6], class_names=CLASS_NAMES),
               "lstm": evaluate(y, [0, 0, 3, 0, 0, 6], class_names=CLASS_NAMES)}
    fig = plot_per_class(reports)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights[:7] == pytest.approx([50, 0, 0, 100, 0, 100, 100]), heights[:7]
    assert heights[7:] == pytest.approx([100, 0, 0, 50, 0, 0, 100]), heights[7:]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["svm (83.3 %)", "lstm (66.7 %)"], legend


def test_per_class_rejects_mixed_classes():
    a = evaluate([0, 1], [0, 1])
    b = evaluate([0, 3], [0, 3])
    with pytest.raises(InputError, match="classes"):
        plot_per_class({"a": a, "b": b})
    with pytest.raises(InputError, match="non-empty"):
        plot_per_class({})
