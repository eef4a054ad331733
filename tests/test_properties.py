"""Property-based tests (hypothesis): invariants of Aggregator, eye alignment and fusion.

* Aggregator: output width ``len(stats) * D``; every frame is unit-length after the signed
  square root and L2 step, so the mean has norm <= 1 and ``||mean||^2 + sum(var)`` equals the
  share of non-zero frames; the result does not depend on the order of the frames, on a positive
  scale of a video, on repeating all its frames, or on which other videos share the batch.
* Alignment: for eyes placed by any similarity transform (rotation, scale, shift), the
  alignment matrix sends them exactly onto the targets, and in the warped image the eye and nose
  blobs land where they should.
* FusionClassifier: probabilities are in [0, 1] and sum to 1, lie between the members' ones,
  do not change when all weights are scaled or when members and weights are permuted; a
  one-hot weight gives that member; searched weights are on the simplex, the scores the search
  reports are those computed here, and they score at least as well as the best member and as
  equal weights on the data searched.
"""

import math

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB

from kemo.aggregation import Aggregator
from kemo.faces import align_face, alignment_matrix, eye_targets, transform_points
from kemo.fusion import FusionClassifier

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# ------------------------------------------------------------------ Aggregator

# Feature values: zeros, or magnitudes from 1e-3 to 1e3 (no subnormals, whose squares vanish).
values = st.one_of(st.just(0.0), st.floats(1e-3, 1e3), st.floats(-1e3, -1e-3))


@st.composite
def video(draw, dim=None, min_frames=1):
    dim = dim or draw(st.integers(1, 12))
    frames = draw(st.integers(min_frames, 12))
    return draw(hnp.arrays(np.float64, (frames, dim), elements=values))


@st.composite
def videos(draw):
    dim = draw(st.integers(1, 12))
    return [draw(video(dim=dim)) for _ in range(draw(st.integers(1, 4)))]


@SETTINGS
@given(videos(), st.lists(st.sampled_from(["mean", "var", "std", "max", "min"]), min_size=1,
                          max_size=5, unique=True))
def test_aggregator_output_width(vids, stats):
    out = Aggregator(stats=tuple(stats)).fit_transform(vids)
    assert out.shape == (len(vids), len(stats) * vids[0].shape[1]), f"shape {out.shape}"
    assert np.isfinite(out).all(), "finite inputs give finite outputs"


@SETTINGS
@given(videos())
def test_aggregator_norms(vids):
    out = Aggregator().fit_transform(vids)
    dim = vids[0].shape[1]
    mean, var = out[:, :dim], out[:, dim:]
    norms = np.linalg.norm(mean, axis=1)
    assert (norms <= 1 + 1e-9).all(), f"the mean of unit frames has norm <= 1: {norms}"
    assert (var >= -1e-12).all(), f"variances are non-negative: {var.min()}"
    nonzero = np.array([np.mean(np.any(v != 0, axis=1)) for v in vids])
    np.testing.assert_allclose(norms**2 + var.sum(axis=1), nonzero, atol=1e-9,
                               err_msg="||mean||^2 + sum(var) must be the share of non-zero "
                                       "frames (each normalised frame has norm 1 or 0)")


@SETTINGS
@given(video(), st.randoms(use_true_random=False))
def test_aggregator_ignores_frame_order(vid, random):
    order = list(range(len(vid)))
    random.shuffle(order)
    agg = Aggregator(stats=("mean", "var", "max", "min"))
    np.testing.assert_allclose(agg.fit_transform([vid[order]]), agg.fit_transform([vid]),
                               atol=1e-12, err_msg="frame order must not matter")


@SETTINGS
@given(video(), st.floats(1e-3, 1e3), st.integers(2, 4))
def test_aggregator_scale_and_repetition_invariance(vid, scale, times):
    agg = Aggregator()
    reference = agg.fit_transform([vid])
    np.testing.assert_allclose(agg.fit_transform([vid * scale]), reference, atol=1e-9,
                               err_msg="a positive scale of a video must not matter")
    np.testing.assert_allclose(agg.fit_transform([np.tile(vid, (times, 1))]), reference,
                               atol=1e-9, err_msg="repeating every frame must not matter")


@SETTINGS
@given(videos())
def test_aggregator_videos_are_independent(vids):
    agg = Aggregator()
    together = agg.fit_transform(vids)
    alone = np.vstack([agg.fit_transform([v]) for v in vids])
    np.testing.assert_allclose(together, alone, atol=1e-12,
                               err_msg="a video's row must not depend on the other videos")


# ------------------------------------------------------------------ alignment

# Canonical face geometry in a 400x400 image: eyes 80 px apart, nose below their middle.
CANONICAL = np.array([[160.0, 170.0], [240.0, 170.0], [200.0, 230.0]])


def similarity(angle, scale, shift):
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def blobs(points, sigma, shape):
    """A float image with a Gaussian blob at each point."""
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape)
    for x, y in points:
        image += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return image


def centroids(image):
    """Intensity-weighted centres of the bright blobs of a uint8 image, largest first."""
    mask = (image > 0.35 * image.max()).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    found = []
    for k in range(1, count):
        weight = image * (labels == k)
        found.append((stats[k, cv2.CC_STAT_AREA], (xs * weight).sum() / weight.sum(),
                      (ys * weight).sum() / weight.sum()))
    return [(x, y) for _, x, y in sorted(found, reverse=True)]


similarities = st.tuples(
    st.floats(-math.pi / 3, math.pi / 3),  # rotation
    st.floats(0.3, 3.0),  # scale
    st.tuples(st.floats(-100, 100), st.floats(-100, 100)),  # shift
)


@SETTINGS
@given(similarities, st.sampled_from([48, 64, 128, 224]))
def test_alignment_matrix_sends_eyes_onto_targets(params, size):
    moved = transform_points(CANONICAL, similarity(*params))
    matrix = alignment_matrix(moved[:2], size=size)
    np.testing.assert_allclose(transform_points(moved[:2], matrix), eye_targets(size),
                               atol=1e-9, err_msg="eyes must land exactly on the targets")
    a, b = matrix[0, 0], matrix[1, 0]
    np.testing.assert_allclose(matrix[:, :2], [[a, -b], [b, a]], atol=1e-12,
                               err_msg="the alignment must be a similarity (no shear, no flip)")


@settings(max_examples=30, deadline=None)
@given(similarities)
def test_aligned_image_puts_eye_and_nose_blobs_in_place(params):
    angle, scale, shift = params
    moved = transform_points(CANONICAL, similarity(angle, scale, shift))
    # Keep the whole face in the image (blobs cut by the border would move their centres); the
    # shift keeps its sub-pixel part.
    margin = 30 * scale + 10
    moved = moved - np.floor(moved.min(axis=0)) + margin
    shape = (int(moved[:, 1].max() + margin), int(moved[:, 0].max() + margin))
    image = blobs(moved, sigma=6 * scale, shape=shape)
    image = np.clip(image * 255, 0, 255).astype(np.uint8)
    size = 128
    crop = align_face(image, moved[:2], size=size).astype(float)
    found = centroids(crop)
    assert len(found) == 3, f"three blobs expected in the crop, found {len(found)}"
    eyes = sorted(found, key=lambda p: p[1])[:2]
    eyes = np.array(sorted(eyes))  # left to right
    np.testing.assert_allclose(eyes, eye_targets(size), atol=1.0,
                               err_msg="eye blobs must land on the targets (1 px)")
    nose = np.array(max(found, key=lambda p: p[1]))
    expected = transform_points(moved[2:], alignment_matrix(moved[:2], size=size))[0]
    np.testing.assert_allclose(nose, expected, atol=1.0, err_msg="the nose must follow")
    assert nose[1] > eyes[:, 1].max(), "the nose stays below the eyes (no flip)"


# ------------------------------------------------------------------ FusionClassifier


@pytest.fixture(scope="module")
def members():
    """Three fitted classifiers on a 3-class problem and held-out data."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=2.0, size=(3, 4))
    y = np.repeat([0, 1, 2], 40)
    X = centres[y] + rng.normal(size=(120, 4))
    fitted = [("nb", GaussianNB().fit(X[::2], y[::2])),
              ("lr", LogisticRegression(C=0.1).fit(X[::2], y[::2])),
              ("lr_first2", LogisticRegression().fit(X[::2, :2], y[::2]))]
    views = [None, None, [0, 1]]
    return [(n, e, v) for (n, e), v in zip(fitted, views, strict=True)], X[1::2], y[1::2]


weight_lists = st.lists(st.floats(0.0, 10.0), min_size=3, max_size=3).filter(
    lambda w: sum(w) > 1e-3)


def fused(members_list, weights, X, y):
    return FusionClassifier(members_list, weights=weights, prefit=True).fit(X, y)


@SETTINGS
@given(weight_lists, st.floats(1e-3, 1e3))
def test_fusion_probabilities_and_weight_scaling(members, weights, scale):
    est, X, y = members
    proba = fused(est, weights, X, y).predict_proba(X)
    assert ((proba >= 0) & (proba <= 1)).all(), "probabilities must lie in [0, 1]"
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9, err_msg="rows sum to 1")
    scaled = fused(est, [w * scale for w in weights], X, y).predict_proba(X)
    np.testing.assert_allclose(scaled, proba, atol=1e-12,
                               err_msg="scaling all weights must not change the fusion")
    each = np.stack([e.predict_proba(X if v is None else X[:, v]) for _, e, v in est])
    assert (proba >= each.min(axis=0) - 1e-12).all() and (
        proba <= each.max(axis=0) + 1e-12).all(), "fused values lie between the members'"


@SETTINGS
@given(weight_lists, st.permutations([0, 1, 2]))
def test_fusion_member_order_does_not_matter(members, weights, order):
    est, X, y = members
    proba = fused(est, weights, X, y).predict_proba(X)
    permuted = fused([est[i] for i in order], [weights[i] for i in order], X, y)
    np.testing.assert_allclose(permuted.predict_proba(X), proba, atol=1e-12,
                               err_msg="permuting members with their weights changes nothing")


@pytest.mark.parametrize("k", [0, 1, 2])
def test_fusion_one_hot_weight_is_that_member(members, k):
    est, X, y = members
    weights = [0.0, 0.0, 0.0]
    weights[k] = 1.0
    name, member, view = est[k]
    expected = member.predict_proba(X if view is None else X[:, view])
    np.testing.assert_allclose(fused(est, weights, X, y).predict_proba(X), expected, atol=1e-12,
                               err_msg=f"weight 1 on {name} must give {name}'s probabilities")


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2**31 - 1), st.sampled_from(["accuracy", "neg_log_loss"]),
       st.integers(0, 200))
def test_searched_weights_on_simplex_and_not_worse_than_best_member(members, seed, scoring,
                                                                    n_iter):
    est, X, y = members
    fusion = FusionClassifier(est, weights="search", prefit=True, n_iter=n_iter,
                              scoring=scoring, random_state=seed).fit(X, y)
    w = fusion.weights_
    assert (w >= 0).all() and np.isclose(w.sum(), 1.0), f"weights off the simplex: {w}"
    # Scores computed here from the members' own probabilities, not the ones the search
    # reports (those beat the members by construction: each member is a candidate).
    probas = [e.predict_proba(X if v is None else X[:, v]) for _, e, v in est]

    def score(proba):
        if scoring == "accuracy":
            return float(np.mean(proba.argmax(axis=1) == y))
        return float(np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-15, None))))

    results = fusion.search_results_
    for (name, _, _), proba in zip(est, probas, strict=True):
        assert np.isclose(results["member_scores"][name], score(proba)), (
            f"{name}: reported {results['member_scores'][name]}, computed {score(proba)}")
    found = score(sum(wk * proba for wk, proba in zip(w, probas, strict=True)))
    assert np.isclose(results["fused_score"], found), (
        f"reported fused score {results['fused_score']}, computed for weights {w}: {found}")
    best = max(score(proba) for proba in probas)
    equal = score(sum(probas) / len(probas))
    assert found >= max(best, equal) - 1e-12, (
        f"weights {w} score {found}: below the best member ({best}) or equal weights ({equal})")
