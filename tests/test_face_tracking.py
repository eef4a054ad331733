"""FaceTracker: detection every k frames with faces carried between, on real faces."""

import math
from concurrent.futures import ThreadPoolExecutor

import cv2
import keras
import numpy as np
import pytest

from kemo.errors import InputError
from kemo.faces import FaceDetector, FaceTracker, eye_shift, select_faces

# mtcnn runs on the tensorflow Keras backend only (FaceDetector raises BackendError elsewhere).
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="mtcnn needs KERAS_BACKEND=tensorflow"
)

FAST_CLIPS = ("S052_001_surprise.avi", "S106_002_sadness.avi", "S130_013_happiness.avi")


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


@pytest.fixture(scope="module")
def face_patch(shared_data):
    """Obama's face with some margin, 160 px wide, RGB."""
    bgr = cv2.imread(str(shared_data / "faces" / "fr_obama.jpg"))
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    x, y, w, h = 371, 83, 244, 342  # the detector's box on this image
    crop = rgb[max(0, y - 40) : y + h + 20, max(0, x - 30) : x + w + 30]
    scale = 160 / crop.shape[1]
    return cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _moving_clip(patch, n, step=(4, 2), size=(480, 360), visible=None, seed=0):
    """Frames with ``patch`` pasted at a moving position on a textured static background."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(90, 150, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    background = cv2.resize(noise, size, interpolation=cv2.INTER_LINEAR)
    frames = []
    for t in range(n):
        frame = background.copy()
        if visible is None or t < visible:
            x, y = 40 + step[0] * t, 20 + step[1] * t
            frame[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
        else:  # the face is gone: a flat grey frame
            frame[:] = 120
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def moving(face_patch, detector):
    """A 12-frame clip of a moving face and its per-frame detections."""
    frames = _moving_clip(face_patch, 12)
    return frames, detector.detect_batch(frames)


def _errors(results, reference):
    return [
        eye_shift(r[0], ref[0]) for (_, _, r), ref in zip(results, reference, strict=True) if r
    ]


def test_flow_follows_a_moving_face(detector, moving):
    frames, reference = moving
    assert all(len(r) == 1 for r in reference), "the detector finds the face in every frame"
    tracker = FaceTracker(detector, detect_every=6, carry="flow")
    calls = detector.calls
    results = list(tracker.track(frames))
    ran = detector.calls - calls
    assert ran == 2, f"2 full detections (frames 0, 6), ran {ran}"
    assert all(len(r) == 1 for _, _, r in results), "a face in every frame"
    assert [r[0]["detected"] for _, _, r in results] == [t % 6 == 0 for t in range(12)], (
        "detected on frames 0 and 6, carried on the others"
    )
    flow = _errors(results, reference)
    holder = FaceTracker(detector, detect_every=6, carry="hold")
    held = _errors(list(holder.track(frames)), reference)
    assert np.mean(flow) < 1.5, f"flow eye error {np.mean(flow):.2f} crop px (per-frame reference)"
    assert np.mean(held) > 2 * np.mean(flow), (
        f"holding the landmarks on a moving face must be worse: hold {np.mean(held):.2f}, "
        f"flow {np.mean(flow):.2f}"
    )


def test_update_frame_by_frame_equals_track(detector, moving):
    frames, _ = moving
    batched = [r for _, _, r in FaceTracker(detector, detect_every=4).track(frames)]
    tracker = FaceTracker(detector, detect_every=4)
    single = [tracker.update(frame) for frame in frames]
    assert tracker.detections == 3, f"frames 0, 4, 8 detected, got {tracker.detections}"
    for t, (a, b) in enumerate(zip(batched, single, strict=True)):
        assert a[0]["detected"] == b[0]["detected"], f"frame {t}: same schedule"
        shift = max(
            np.hypot(*np.subtract(a[0]["keypoints"][k], b[0]["keypoints"][k]))
            for k in a[0]["keypoints"]
        )
        assert shift < 0.5, f"frame {t}: batched and single landmarks differ by {shift:.2f} px"


def test_every_frame_batches_and_equals_per_frame_detection(detector, moving):
    frames, reference = moving
    results = list(FaceTracker(detector, detect_every=1).track(frames))
    assert [i for i, _, _ in results] == list(range(12)), "indices in order"
    for (_, _, records), ref in zip(results, reference, strict=True):
        assert records[0]["keypoints"] == ref[0]["keypoints"], "detect_every=1 is plain detection"
        assert records[0]["track_id"] == 0, "one face keeps track id 0"


def test_lost_face_triggers_detection(detector, face_patch):
    frames = _moving_clip(face_patch, 8, visible=4)
    tracker = FaceTracker(detector, detect_every=10, carry="flow")
    results = list(tracker.track(enumerate(frames)))
    counts = [len(r) for _, _, r in results]
    assert counts == [1, 1, 1, 1, 0, 0, 0, 0], f"faces per frame {counts}"
    assert tracker.detections == 2, (
        f"frame 0, then frame 4 where the face is lost; with no face found, the next detection "
        f"waits for frame 14: {tracker.detections} detections"
    )


@pytest.mark.parametrize("one_by_one", [False, True])
def test_stretch_without_face_detects_every_k_frames(detector, face_patch, shared_data,
                                                     one_by_one):
    """Regression: with no face tracked, every frame used to get its own MTCNN call."""
    bgr = cv2.imread(str(shared_data / "faces" / "mtcnn_no_faces.jpg"))
    empty = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (480, 360))
    assert detector.detect(empty) == [], "the no-face image must hold no face"
    frames = [empty] * 12 + _moving_clip(face_patch, 8)
    tracker = FaceTracker(detector, detect_every=5, carry="flow")
    calls = detector.calls
    if one_by_one:
        found = [len(tracker.update(frame)) for frame in frames]
    else:
        found = [len(r) for _, _, r in tracker.track(frames)]
    ran = detector.calls - calls
    assert found == [0] * 15 + [1] * 5, (
        f"no face in the 12 empty frames; the face that comes in at frame 12 is found by the "
        f"detection due at frame 15 and carried on: {found}"
    )
    assert ran == tracker.detections == 4, (
        f"detections on frames 0, 5, 10 and 15 only, not on every frame without a face: "
        f"{ran} MTCNN images, {tracker.detections} detections"
    )


def test_detector_shared_by_threads(shared_data):
    """One FaceDetector used by several threads at once (a live reader, a pool of workers)."""
    bgr = cv2.imread(str(shared_data / "faces" / "fr_obama.jpg"))
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    detector = FaceDetector()
    expected = detector.detect(image)
    assert len(expected) == 1, f"one face in the image, found {len(expected)}"
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(detector.detect, [image] * 12))
    for records in found:
        assert [r["box"] for r in records] == [expected[0]["box"]], (
            f"a thread found {[r['box'] for r in records]}, alone {expected[0]['box']}")
    assert detector.calls == 13, f"13 images detected, the counter says {detector.calls}"


def test_track_ids_with_all_faces(detector, shared_data):
    bgr = cv2.imread(str(shared_data / "faces" / "fr_two_people.jpg"))
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[:, :, :]
    frames = [np.roll(image, 3 * t, axis=1) for t in range(4)]
    tracker = FaceTracker(detector, detect_every=2, select="all", carry="flow")
    results = list(tracker.track(frames))
    for _, _, records in results:
        assert len(records) == 2, f"two faces in every frame, got {len(records)}"
        by_x = sorted(records, key=lambda r: r["box"][0])
        assert [r["track_id"] for r in by_x] == [
            r["track_id"] for r in sorted(results[0][2], key=lambda r: r["box"][0])
        ], "each face keeps its track id across frames"
    assert {r["track_id"] for r in results[0][2]} == {0, 1}, "ids 0 and 1"
    largest = list(FaceTracker(detector, select="largest").track(frames[:1]))[0][2]
    assert len(largest) == 1, "select='largest' keeps one face"


def test_ckplus_tracking_matches_per_frame_detection(detector, shared_data):
    """Fast version of the CK+ check (3 clips); the slow test and the benchmark use all 40."""
    from kemo.video import read_frames

    for name in FAST_CLIPS:
        _, frames = read_frames(shared_data / "ckplus_emopy" / "videos" / name)
        reference = detector.detect_batch(list(frames))
        assert all(len(r) == 1 for r in reference), f"{name}: per-frame detection misses a face"
        tracker = FaceTracker(detector, detect_every=5, carry="flow")
        results = list(tracker.track(frames))
        assert all(len(r) == 1 for _, _, r in results), f"{name}: a face in every frame"
        assert tracker.detections == math.ceil(len(frames) / 5), (
            f"{name}: {tracker.detections} detections for {len(frames)} frames at k=5"
        )
        errors = _errors(results, reference)
        assert np.mean(errors) < 2.0, f"{name}: mean eye error {np.mean(errors):.2f} crop px"


def test_select_faces():
    records = [
        {"box": [0, 0, 10, 10], "confidence": 0.99},
        {"box": [0, 0, 40, 40], "confidence": 0.90},
    ]
    assert select_faces(records, "largest") == [records[1]], "largest box"
    assert select_faces(records, "most_confident") == [records[0]], "highest confidence"
    assert select_faces(records, "all") == records, "all faces"
    assert select_faces([], "largest") == [], "no face, nothing selected"
    with pytest.raises(InputError, match="select"):
        select_faces(records, "biggest")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"detect_every": 0},
        {"detect_every": 2.0},
        {"select": "first"},
        {"carry": "refine"},
        {"iou_threshold": 2},
        {"detector": "mtcnn"},
    ],
)
def test_bad_tracker_arguments(kwargs):
    (name,) = kwargs
    with pytest.raises(InputError, match=name):
        FaceTracker(**kwargs)


def test_eye_shift_in_crop_pixels():
    ref = {"left_eye": (100.0, 100.0), "right_eye": (200.0, 100.0)}
    moved = {"left_eye": (110.0, 100.0), "right_eye": (210.0, 100.0)}
    # 10 px at an eye distance of 100 px is 0.1 of 0.36 * 128 = 4.608 crop px.
    assert math.isclose(eye_shift(moved, ref), 4.608), f"got {eye_shift(moved, ref)}"
    assert eye_shift(ref, ref) == 0.0, "no shift"
