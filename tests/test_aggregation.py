"""Aggregator: the paper's formula, layouts, the empty-video policy and bad input."""

import numpy as np
import pytest
from sklearn.base import clone

import kemo.aggregation as aggregation
from kemo.aggregation import Aggregator
from kemo.errors import InputError


def reference(video, power=0.5, normalize="l2", stats=("mean", "var")):
    """The formula written directly, one video at a time, in float64."""
    x = np.asarray(video, dtype=np.float64)
    y = np.sign(x) * np.abs(x) ** power
    if normalize == "l2":
        norm = np.linalg.norm(y, axis=1, keepdims=True)
        y = np.divide(y, norm, out=np.zeros_like(y), where=norm > 0)
    values = {"mean": y.mean(0), "var": y.var(0), "std": y.std(0), "max": y.max(0),
              "min": y.min(0)}
    return np.concatenate([values[s] for s in stats])


@pytest.fixture(scope="module")
def videos():
    rng = np.random.default_rng(0)
    return [rng.normal(size=(n, 24)) for n in (1, 5, 2, 17, 3)]


@pytest.mark.parametrize("stats", [("mean", "var"), ("max", "std", "min", "mean"), ("var",)])
@pytest.mark.parametrize("power,normalize", [(0.5, "l2"), (1.0, "l2"), (0.3, None), (2.0, "l2")])
def test_matches_direct_formula(videos, stats, power, normalize):
    got = Aggregator(power=power, normalize=normalize, stats=stats).fit_transform(videos)
    want = np.stack([reference(v, power, normalize, stats) for v in videos])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12,
                               err_msg=f"Aggregator differs from the formula for {stats}, "
                                       f"power={power}, normalize={normalize}")


def test_float32_in_float32_out_and_close_to_float64(videos):
    v32 = [v.astype(np.float32) for v in videos]
    got = Aggregator().fit_transform(v32)
    assert got.dtype == np.float32, f"float32 features must stay float32, got {got.dtype}"
    want = np.stack([reference(v) for v in v32])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6,
                               err_msg="float32 aggregation is far from the float64 formula")


def test_paper_dimensions_9216():
    rng = np.random.default_rng(1)
    lengths = (4, 1, 7)
    vgg = [np.maximum(rng.normal(size=(n, 4096)), 0).astype(np.float32) for n in lengths]
    resnet = [np.maximum(rng.normal(size=(n + 1, 512)), 0).astype(np.float32) for n in lengths]
    agg = Aggregator().fit([vgg, resnet])
    out = agg.transform([vgg, resnet])
    assert out.shape == (3, 9216), f"2 x (4096 + 512) = 9216 expected, got {out.shape}"
    assert agg.n_dims_ == (4096, 512), f"layout not recorded: {agg.n_dims_}"
    assert len(agg.get_feature_names_out()) == 9216, "one name per output column expected"
    # Network-major output equals each network aggregated alone, side by side.
    alone = np.hstack([Aggregator().fit_transform(vgg), Aggregator().fit_transform(resnet)])
    np.testing.assert_allclose(out, alone, rtol=1e-6, err_msg="networks must be independent")


def test_blocks_split_long_videos_exactly(videos, monkeypatch):
    # Blocks of 50 values = 2 frames of 24 dims: every long video spans many blocks, and blocks
    # start mid-video, which exercises the pairwise (Chan) merge of piece statistics.
    monkeypatch.setattr(aggregation, "_BLOCK_VALUES", 50)
    stats = ("mean", "var", "max", "min")
    got = Aggregator(stats=stats).fit_transform(videos)
    want = np.stack([reference(v, stats=stats) for v in videos])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12,
                               err_msg="merging pieces across blocks changed the result")


def test_variance_of_near_duplicate_frames_is_accurate():
    # Consecutive video frames are almost identical; a one-pass E[z^2]-E[z]^2 in float32 would
    # lose this variance to cancellation.
    rng = np.random.default_rng(2)
    base = rng.random(256)
    frames = (base + 1e-4 * rng.normal(size=(64, 256))).astype(np.float32)
    got = Aggregator(stats=("var",)).fit_transform([frames])[0]
    want = reference(frames.astype(np.float64), stats=("var",))
    rel = np.abs(got - want).max() / want.max()
    assert rel < 1e-2, f"variance of near-duplicate frames off by {rel:.1%} of its size"


def test_two_d_array_rows_are_one_frame_videos():
    X = np.random.default_rng(3).normal(size=(6, 5))
    out = Aggregator().fit_transform(X)
    want = np.stack([reference(row[None]) for row in X])
    np.testing.assert_allclose(out, want, rtol=1e-12, err_msg="row = video of one frame")
    assert np.all(out[:, 5:] == 0), "a one-frame video has zero variance"


def test_three_d_array_equals_list(videos):
    equal = np.stack([v[:1] for v in videos] * 1)  # 5 videos of 1 frame
    cube = np.random.default_rng(4).normal(size=(4, 6, 24))
    np.testing.assert_allclose(Aggregator().fit_transform(cube),
                               Aggregator().fit_transform(list(cube)), rtol=1e-12,
                               err_msg="a 3-D array must equal the list of its videos")
    both = Aggregator().fit_transform([cube, list(cube[:, :2])])
    assert both.shape == (4, 4 * 24), f"list of 3-D/lists per network, got {both.shape}"
    assert equal.shape == (5, 1, 24), "fixture sanity"


def test_zero_frame_stays_zero():
    video = np.zeros((3, 8))
    video[1] = 1.0
    out = Aggregator().fit_transform([video])
    assert np.isfinite(out).all(), "an all-zero frame must not give NaN"
    np.testing.assert_allclose(out[0], reference(video), err_msg="zero frames count as zeros")


def test_usable_without_fit(videos):
    out = Aggregator().transform(videos)
    assert out.shape == (5, 48), f"stateless transform without fit, got {out.shape}"


def test_empty_video_error_names_it(videos):
    bad = videos[:2] + [np.empty((0, 24))] + videos[2:]
    with pytest.raises(InputError, match=r"video 2 has no frames"):
        Aggregator().fit_transform(bad)


def test_empty_video_zeros_policy(videos):
    bad = videos[:2] + [np.empty((0, 24))] + videos[2:]
    out = Aggregator(empty="zeros").fit_transform(bad)
    assert np.all(out[2] == 0), "policy 'zeros' must give a zero row to the empty video"
    np.testing.assert_allclose(np.delete(out, 2, axis=0), Aggregator().fit_transform(videos),
                               err_msg="an empty video must not change the others")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_names_the_video(videos, value):
    bad = [v.copy() for v in videos]
    bad[3][7, 2] = value
    with pytest.raises(InputError, match=r"video 3 contains NaN or inf"):
        Aggregator().transform(bad)
    with pytest.raises(InputError, match=r"network 1, video 3 contains NaN or inf"):
        Aggregator().transform([videos, bad])
    with pytest.raises(InputError, match=r"video 3 contains NaN or inf"):
        Aggregator().fit(bad)


def test_bad_layouts_are_named(videos):
    with pytest.raises(InputError, match=r"video 1 of X has 3 features"):
        Aggregator().transform([videos[0], videos[1][:, :3]])
    with pytest.raises(InputError, match=r"video 0 of X has shape \(24,\)"):
        Aggregator().transform([videos[0][0], videos[1]])
    with pytest.raises(InputError, match=r"video 1 of X has dtype <U1; expected real"):
        Aggregator().transform([videos[0], np.full((2, 24), "a")])
    with pytest.raises(InputError, match=r"different numbers of videos"):
        Aggregator().transform([videos, videos[:2]])
    with pytest.raises(InputError, match=r"X is empty"):
        Aggregator().transform([])
    with pytest.raises(InputError, match=r"fitted on widths \(24,\)"):
        Aggregator().fit(videos).transform([v[:, :10] for v in videos])
    with pytest.raises(ValueError, match=r"features"):
        Aggregator().fit(np.ones((3, 4))).transform(np.ones((3, 5)))


@pytest.mark.parametrize("params", [dict(power=0), dict(power="half"), dict(normalize="l1"),
                                    dict(stats=()), dict(stats=("mean", "median")),
                                    dict(stats=("mean", "mean")), dict(empty="skip")])
def test_bad_parameters(videos, params):
    with pytest.raises(ValueError, match=next(iter(params))):
        Aggregator(**params).fit(videos)


def test_feature_names(videos):
    agg = Aggregator(stats=("mean", "var")).fit(videos)
    names = agg.get_feature_names_out()
    assert names[0] == "net0_mean_0" and names[24] == "net0_var_0", f"names: {names[:2]}"
    named = agg.get_feature_names_out([f"f{j}" for j in range(24)])
    assert named[0] == "mean_f0" and named[-1] == "var_f23", f"named: {named[[0, -1]]}"
    with pytest.raises(ValueError, match="input_features has 3 names"):
        agg.get_feature_names_out(["a", "b", "c"])


def test_clone_keeps_parameters():
    agg = Aggregator(power=1.0, stats=("max",), empty="zeros")
    assert clone(agg).get_params() == agg.get_params(), "clone must keep the parameters"
