"""Face detection (MTCNN adapter) and its input handling, on real images."""

import cv2
import keras
import numpy as np
import pytest

from kemo.errors import BackendError, InputError
from kemo.faces import KEYPOINT_NAMES, FaceDetector, align_face, eye_targets
from kemo.faces import detection as detection_module

# mtcnn runs on the tensorflow Keras backend only (FaceDetector raises BackendError elsewhere).
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="mtcnn needs KERAS_BACKEND=tensorflow"
)

FACE_COUNTS = {
    "mtcnn_ivan.jpg": 1,
    "fr_obama.jpg": 1,
    "fr_biden.jpg": 1,
    "fr_two_people.jpg": 2,
    "mtcnn_no_faces.jpg": 0,
}


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


@pytest.fixture(scope="module")
def images(shared_data):
    """The test images of ../shared/data/faces as RGB arrays, read once."""
    out = {}
    for name in FACE_COUNTS:
        bgr = cv2.imread(str(shared_data / "faces" / name))
        assert bgr is not None, f"cannot read {name}"
        out[name] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return out


@pytest.fixture(scope="module")
def detections(detector, images):
    """Default-detector records of every test image, computed once."""
    return {name: detector.detect(image) for name, image in images.items()}


@pytest.fixture(scope="module")
def ck_frame(shared_data):
    from kemo.video import Video

    with Video(shared_data / "ckplus_emopy" / "videos" / "S052_001_surprise.avi") as video:
        return next(video.frames())[1]


@pytest.mark.parametrize("name", sorted(FACE_COUNTS))
def test_face_count(detections, name):
    found = detections[name]
    assert len(found) == FACE_COUNTS[name], (
        f"{name}: expected {FACE_COUNTS[name]} faces, found {len(found)}: "
        f"{[(r['box'], round(r['confidence'], 3)) for r in found]}"
    )


def test_records_have_the_mtcnn_format_in_image_coordinates(detections, images):
    for name, records in detections.items():
        height, width = images[name].shape[:2]
        for record in records:
            assert set(record) == {"box", "confidence", "keypoints"}, f"{name}: keys {set(record)}"
            x, y, w, h = record["box"]
            assert all(isinstance(v, int) for v in record["box"]), f"{name}: box {record['box']}"
            assert 0 <= x and 0 <= y and x + w <= width and y + h <= height, (
                f"{name}: box {record['box']} outside the {width}x{height} image"
            )
            assert set(record["keypoints"]) == set(KEYPOINT_NAMES), f"{name}: keypoint names"
            for key, (px, py) in record["keypoints"].items():
                assert x - 0.1 * w <= px <= x + 1.1 * w and y <= py <= y + h, (
                    f"{name}: {key} at {(px, py)} not inside box {record['box']}"
                )
            left, right = record["keypoints"]["left_eye"], record["keypoints"]["right_eye"]
            assert left[0] < right[0], f"{name}: left_eye {left} is not left of {right}"
            assert 0.8 <= record["confidence"] <= 1.0, f"{name}: confidence {record['confidence']}"
    two = detections["fr_two_people.jpg"]
    assert two[0]["confidence"] >= two[1]["confidence"], "records must be most confident first"


@pytest.mark.parametrize(
    ("name", "index"),
    [("mtcnn_ivan.jpg", 0), ("fr_obama.jpg", 0), ("fr_biden.jpg", 0), ("fr_two_people.jpg", 0),
     ("fr_two_people.jpg", 1)],
)
def test_aligned_eyes_redetected_level_and_on_target(detector, images, detections, name, index):
    """Re-detect the eyes on the aligned crop: level within 2 degrees, within 3 px of target."""
    record = detections[name][index]
    face = align_face(images[name], record, size=128)
    assert face.shape == (128, 128, 3) and face.dtype == np.uint8, f"{name}: {face.shape}"
    pad = 64  # MTCNN needs context around a tight crop
    padded = cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    found = detector.detect(padded)
    assert len(found) == 1, f"{name}: {len(found)} faces on the padded aligned crop"
    eyes = np.array(
        [found[0]["keypoints"]["left_eye"], found[0]["keypoints"]["right_eye"]]
    ) - pad
    angle = np.degrees(np.arctan2(eyes[1, 1] - eyes[0, 1], eyes[1, 0] - eyes[0, 0]))
    assert abs(angle) < 2.0, f"{name}: eye line at {angle:.2f} degrees after alignment"
    error = np.linalg.norm(eyes - eye_targets(128), axis=1)
    assert error.max() < 3.0, (
        f"{name}: eyes re-detected at {eyes.round(1).tolist()}, targets "
        f"{eye_targets(128).round(1).tolist()} (errors {error.round(2).tolist()} px)"
    )


def test_detect_batch_equals_detect(detector, images, detections):
    names = ["mtcnn_ivan.jpg", "mtcnn_no_faces.jpg", "fr_two_people.jpg"]
    batch = detector.detect_batch([images[n] for n in names])
    assert len(batch) == 3, f"one result list per frame, got {len(batch)}"
    for name, records in zip(names, batch, strict=True):
        single = detections[name]
        assert len(records) == len(single), f"{name}: batch {len(records)} vs single {len(single)}"
        for a, b in zip(records, single, strict=True):
            assert np.allclose(a["keypoints"]["left_eye"], b["keypoints"]["left_eye"], atol=1.0), (
                f"{name}: batched eye {a['keypoints']['left_eye']} vs {b['keypoints']['left_eye']}"
            )
    stacked = detector.detect_batch(np.stack([images["mtcnn_ivan.jpg"]] * 2))
    assert [len(r) for r in stacked] == [1, 1], "a (T, H, W, 3) array is a batch of frames"
    assert detector.detect_batch([]) == [], "an empty batch gives an empty list"


def test_max_side_downscales_and_maps_coordinates_back(images, detections):
    small = FaceDetector(max_side=400)
    found = small.detect(images["fr_biden.jpg"])  # 970x2204 shrunk to 176x400
    assert len(found) == 1, f"max_side=400: {len(found)} faces"
    full = detections["fr_biden.jpg"][0]
    iod = np.hypot(*np.subtract(full["keypoints"]["right_eye"], full["keypoints"]["left_eye"]))
    for key in ("left_eye", "right_eye", "nose"):
        shift = np.hypot(*np.subtract(found[0]["keypoints"][key], full["keypoints"][key]))
        assert shift < 0.1 * iod, f"{key} moved {shift:.1f} px (eye distance {iod:.0f}) at max_side"
    assert detection_module.box_iou(found[0]["box"], full["box"]) > 0.7, (
        f"box {found[0]['box']} vs full-size {full['box']}"
    )


def test_pyramid_fix_large_min_face_size(ck_frame):
    """mtcnn 1.0.0 alone finds nothing here (its pyramid breaks for min_face_size > ~24)."""
    mtcnn = detection_module.shared_mtcnn()
    rows = mtcnn.detect_faces(ck_frame, min_face_size=40, output_type="numpy")
    assert len(rows) == 1, f"min_face_size=40 on a CK+ frame: {len(rows)} faces"


def test_pyramid_fix_face_filling_the_frame(images, detections):
    """mtcnn 1.0.0 alone misses a face filling the image when min_face_size < 20."""
    x, y, w, h = detections["fr_obama.jpg"][0]["box"]
    crop = np.ascontiguousarray(images["fr_obama.jpg"][y : y + h, x : x + w])
    found = FaceDetector(min_face_size=12).detect(crop)
    assert len(found) == 1, f"tight {w}x{h} face crop, min_face_size=12: {len(found)} faces"


def test_input_conversions(detector, images):
    rgb = images["mtcnn_ivan.jpg"]
    reference = detector.detect(rgb)[0]["box"]
    variants = {
        "grayscale": cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY),
        "gray HxWx1": cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None],
        "rgba": np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),
        "uint16": rgb.astype(np.uint16) * 257,
    }
    for what, image in variants.items():
        found = detector.detect(image)
        assert len(found) == 1, f"{what}: {len(found)} faces"
        iou = detection_module.box_iou(found[0]["box"], reference)
        assert iou > 0.8, f"{what}: box {found[0]['box']} vs RGB {reference} (IoU {iou:.2f})"


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((32, 32, 3), np.float32), "dtype"),
        (np.zeros((32, 32, 2), np.uint8), "shape"),
        (np.zeros((2, 32, 32, 3, 1), np.uint8), "shape"),
        (np.zeros((0, 32, 3), np.uint8), "empty"),
        ([[0, 1], [2, 3]], "numpy array"),
    ],
)
def test_bad_images_raise_input_error(image, message):
    with pytest.raises(InputError, match=message):
        FaceDetector().detect(image)


def test_bad_frame_in_batch_is_named():
    with pytest.raises(InputError, match=r"frames\[1\]"):
        FaceDetector().detect_batch([np.zeros((32, 32, 3), np.uint8), np.zeros((4, 4), float)])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_face_size": 5},
        {"min_face_size": "40"},
        {"thresholds": (0.6, 0.7)},
        {"thresholds": (0.6, 0.7, 1.5)},
        {"scale_factor": 1.0},
        {"max_side": 10},
        {"max_side": 640.0},
        {"min_confidence": -0.1},
        {"batch_size": 0},
        {"small_face_size": 8},
        {"small_face_size": "small"},
    ],
)
def test_bad_detector_arguments(kwargs):
    (name,) = kwargs
    with pytest.raises(InputError, match=name):
        FaceDetector(**kwargs)


def test_tiny_image_has_no_face(detector):
    assert detector.detect(np.full((8, 8, 3), 128, np.uint8)) == [], "8x8 image: no face"


def test_backend_check_names_the_fix(monkeypatch):
    import keras

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(detection_module, "_SHARED", {})
    with pytest.raises(BackendError, match="KERAS_BACKEND=tensorflow"):
        FaceDetector().detect(np.zeros((64, 64, 3), np.uint8))


def test_mtcnn_is_created_once(detector, images):
    first = detection_module.shared_mtcnn()
    FaceDetector(min_face_size=60).detect(images["mtcnn_no_faces.jpg"])
    assert detection_module.shared_mtcnn() is first, "all detectors share one MTCNN object"


@pytest.fixture(scope="module")
def crowd(shared_data):
    """A 1280x720 frame holding the six faces of a real group photo at 15-24 pixels wide."""
    photo = cv2.imread(str(shared_data / "faces" / "facenet_multiface.jpg"))[:, :, ::-1]
    truth = [r["box"] for r in FaceDetector().detect(np.ascontiguousarray(photo))]
    small = cv2.resize(photo, None, fx=0.22, fy=0.22, interpolation=cv2.INTER_AREA)
    frame = np.full((720, 1280, 3), 90, np.uint8)
    frame[200:200 + small.shape[0], 400:400 + small.shape[1]] = small
    boxes = [[400 + x * 0.22, 200 + y * 0.22, w * 0.22, h * 0.22] for x, y, w, h in truth]
    return frame, boxes


def _matched(records, boxes):
    return sum(any(detection_module.box_iou(r["box"], b) >= 0.3 for r in records) for b in boxes)


def test_small_faces_get_a_second_look(crowd):
    frame, boxes = crowd
    assert len(boxes) == 6
    assert max(b[2] for b in boxes) < 25, "the faces are below the first pass's 40 pixels"
    once = FaceDetector(small_face_size=None)
    found_once = once.detect(frame)
    twice = FaceDetector()
    found = twice.detect(frame)
    # The first pass finds some of them (MTCNN's boxes are wider than its minimum), which tells
    # the detector to look again, down to 20 pixels: then all six are found.
    assert 0 < _matched(found_once, boxes) < 6
    assert _matched(found, boxes) == 6
    assert len(found) == 6, "and no false face"
    assert once.calls == 1 and twice.calls == 2
    assert [r["confidence"] for r in found] == sorted((r["confidence"] for r in found),
                                                      reverse=True)


def test_close_ups_take_one_pass(detector, images, ck_frame):
    counter = FaceDetector()
    for name in ("fr_obama.jpg", "fr_two_people.jpg"):
        assert counter.detect(images[name]) == detector.detect(images[name])
    counter.detect(ck_frame)
    assert counter.calls == 3, "large faces need no second look"
    level = FaceDetector(min_face_size=20, small_face_size=20)
    level.detect(images["mtcnn_ivan.jpg"])
    assert level.calls == 1, "a first pass down to 20 pixels leaves nothing to look for again"
