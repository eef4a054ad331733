"""align_face: a pure similarity transform on the eye centres (synthetic images, no detector)."""

import cv2
import numpy as np
import pytest

from kemo.errors import InputError
from kemo.faces import align_face, alignment_matrix, eye_centres, eye_targets, transform_points


def _dots(shape, points, radius=3):
    """Black image with a white disc at each point (drawn with sub-pixel precision)."""
    image = np.zeros(shape, np.uint8)
    shift = 4
    for x, y in points:
        centre = (round(x * (1 << shift)), round(y * (1 << shift)))
        cv2.circle(image, centre, radius << shift, 255, -1, cv2.LINE_AA, shift)
    return image


def _blob_centres(image):
    """Intensity-weighted centres of the blobs of a (grey) image, sorted left to right."""
    grey = image if image.ndim == 2 else image[:, :, 0]
    count, labels = cv2.connectedComponents((grey > 20).astype(np.uint8))
    centres = []
    for label in range(1, count):
        ys, xs = np.nonzero(labels == label)
        weights = grey[ys, xs].astype(float)
        centres.append([np.average(xs, weights=weights), np.average(ys, weights=weights)])
    return np.array(sorted(centres))


@pytest.mark.parametrize("angle", [-30.0, -7.5, 0.0, 12.0, 40.0])
@pytest.mark.parametrize("eye_dist_px", [30.0, 160.0])  # 160 px takes the area-shrink path
def test_eyes_land_on_targets(angle, eye_dist_px):
    centre = np.array([300.0, 260.0])
    direction = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
    eyes = np.array([centre - direction * eye_dist_px / 2, centre + direction * eye_dist_px / 2])
    radius = max(2, round(eye_dist_px / 12))
    image = _dots((600, 640), eyes, radius)
    face = align_face(image, {"left_eye": eyes[0], "right_eye": eyes[1]}, size=128)
    found = _blob_centres(face)
    assert found.shape == (2, 2), f"angle {angle}: {len(found)} blobs in the aligned crop"
    error = np.linalg.norm(found - eye_targets(128), axis=1)
    assert error.max() < 0.6, (
        f"angle {angle}, eye distance {eye_dist_px}: dots at {found.round(2).tolist()}, "
        f"targets {eye_targets(128).tolist()}"
    )


def test_matrix_maps_eyes_exactly_and_is_a_similarity():
    keypoints = {"left_eye": (210.3, 140.8), "right_eye": (262.9, 151.2), "nose": (240, 180)}
    matrix = alignment_matrix(keypoints, size=96, eye_y=0.4, eye_dist=0.3)
    mapped = transform_points([keypoints["left_eye"], keypoints["right_eye"]], matrix)
    assert np.allclose(mapped, eye_targets(96, 0.4, 0.3), atol=1e-9), f"eyes map to {mapped}"
    a, b = matrix[0, 0], matrix[1, 0]
    assert np.isclose(matrix[0, 1], -b) and np.isclose(matrix[1, 1], a), (
        f"not a rotation + uniform scale: {matrix[:, :2]}"
    )


def test_targets_are_symmetric_and_follow_the_fractions():
    targets = eye_targets(128, eye_y=0.38, eye_dist=0.36)
    assert np.isclose(targets[0, 1], targets[1, 1]), "both eyes on one horizontal line"
    assert np.isclose(targets[1, 0] - targets[0, 0], 0.36 * 128), "eye distance 0.36 x 128"
    assert np.isclose(targets.mean(axis=0)[0], 63.5), "eyes centred on the crop's middle column"


@pytest.mark.parametrize("out_size", [224, 150, 64, 48])
def test_out_size_resizes_the_128_crop(out_size):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 320, 3), dtype=np.uint8)
    keypoints = {"left_eye": (130.0, 120.0), "right_eye": (190.0, 118.0)}
    face = align_face(image, keypoints, size=128, out_size=out_size)
    assert face.shape == (out_size, out_size, 3), f"got {face.shape}"
    assert face.dtype == np.uint8, f"got {face.dtype}"
    crop = align_face(image, keypoints, size=128)
    interpolation = cv2.INTER_AREA if out_size < 128 else cv2.INTER_CUBIC
    expected = cv2.resize(crop, (out_size, out_size), interpolation=interpolation)
    assert np.array_equal(face, expected), "out_size must be the 128 crop resized"


def test_grayscale_input_and_option():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    keypoints = np.array([[80.0, 90.0], [120.0, 92.0], [100, 110], [85, 130], [115, 131]])
    grey_out = align_face(rgb, keypoints, out_size=48, grayscale=True)
    assert grey_out.shape == (48, 48), f"grayscale=True gives (48, 48), got {grey_out.shape}"
    grey_in = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    assert align_face(grey_in, keypoints, out_size=48).shape == (48, 48), "grey in, grey out"
    assert np.array_equal(align_face(grey_in, keypoints, out_size=48), grey_out), (
        "aligning a grey image equals aligning RGB with grayscale=True"
    )
    rgba = np.dstack([rgb, np.zeros((200, 200), np.uint8)])
    assert np.array_equal(align_face(rgba, keypoints), align_face(rgb, keypoints)), "alpha dropped"


def test_keypoint_forms_agree_and_input_is_untouched():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)
    before = image.copy()
    keypoints = {"left_eye": (60.0, 70.0), "right_eye": (100.0, 66.0)}
    record = {"box": [40, 40, 80, 100], "confidence": 0.99, "keypoints": keypoints}
    outputs = [
        align_face(image, keypoints),
        align_face(image, record),
        align_face(image, [[60.0, 70.0], [100.0, 66.0]]),
    ]
    assert all(np.array_equal(outputs[0], o) for o in outputs[1:]), "same face for each form"
    assert np.array_equal(image, before), "align_face must not modify its input"


def test_face_partly_outside_the_image_is_padded_black_on_request():
    image = np.full((100, 100, 3), 200, np.uint8)
    face = align_face(image, {"left_eye": (5.0, 10.0), "right_eye": (30.0, 10.0)}, size=64,
                      border="black")
    assert face.shape == (64, 64, 3), f"got {face.shape}"
    assert face[0, 0].max() == 0 and face[-1, -1].max() == 200, (
        "outside the image is black, inside keeps the image"
    )


def test_face_partly_outside_the_image_repeats_its_edge_by_default():
    image = np.zeros((100, 100), np.uint8)
    image[:, 0] = 90  # the left column, which the crop's left margin must repeat
    image[:, 1:] = 200
    face = align_face(image, {"left_eye": (5.0, 40.0), "right_eye": (30.0, 40.0)}, size=64)
    assert face.min() > 0, "no black margin by default"
    assert face[32, 0] == 90, f"left of the image repeats its left column, got {face[32, 0]}"
    assert face[32, -1] == 200, f"inside keeps the image, got {face[32, -1]}"


def test_unknown_border_is_refused():
    with pytest.raises(InputError, match="border"):
        align_face(np.zeros((50, 50), np.uint8), [[10.0, 20.0], [30.0, 20.0]], border="wrap")


@pytest.mark.parametrize(
    ("keypoints", "message"),
    [
        ({"left_eye": (10, 10), "right_eye": (10, 10)}, "coincide"),
        ({"left_eye": (np.nan, 10), "right_eye": (20, 10)}, "finite"),
        ({"nose": (10, 10)}, "left_eye"),
        (np.zeros((3, 2)), "shape"),
        ("eyes", "coordinates"),
    ],
)
def test_bad_keypoints(keypoints, message):
    with pytest.raises(InputError, match=message):
        align_face(np.zeros((50, 50, 3), np.uint8), keypoints)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 4}, "size"),
        ({"out_size": 0}, "out_size"),
        ({"eye_y": 1.2}, "eye_y"),
        ({"eye_dist": 0.0}, "eye_dist"),
    ],
)
def test_bad_geometry(kwargs, message):
    keypoints = {"left_eye": (10, 20), "right_eye": (30, 20)}
    with pytest.raises(InputError, match=message):
        align_face(np.zeros((50, 50, 3), np.uint8), keypoints, **kwargs)


def test_bad_image():
    keypoints = {"left_eye": (10, 20), "right_eye": (30, 20)}
    with pytest.raises(InputError, match="dtype"):
        align_face(np.zeros((50, 50, 3)), keypoints)
    with pytest.raises(InputError, match="shape"):
        align_face(np.zeros((50, 50, 5), np.uint8), keypoints)


def test_eye_centres_of_five_points():
    points = np.arange(10, dtype=float).reshape(5, 2)
    assert np.array_equal(eye_centres(points), points[:2]), "the first two rows are the eyes"
