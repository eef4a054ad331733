"""Aggregation of per-frame features into one fixed-length vector per video.

Reference:
    Xu, Ma, Dong, Bai. "Video-based Emotion Recognition using Aggregated Features and
    Spatio-temporal Information", EmotiW 2017, section "Feature aggregation": every frame
    feature gets a signed square root and an L2 normalisation; the mean and the variance of the
    normalised features over the frames of a video are concatenated; the vectors of VGG-Face
    fc6 (4096) and ResNet-10 fc1 (512) give 2 x (4096 + 512) = 9216 dimensions.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from kemo.errors import InputError

__all__ = ["Aggregator"]

_STATS = ("mean", "var", "std", "max", "min")
_EMPTY = ("error", "zeros")
# Frames are processed in chunks of whole videos holding about this many values, so that the
# temporaries stay small whatever the number of videos (16 MiB of float32).
_BLOCK_VALUES = 1 << 17


class Aggregator(TransformerMixin, BaseEstimator):
    """Turn per-frame features of videos into one vector per video (the paper's aggregation).

    For each frame ``x`` (a row of D values): ``y = sign(x) * |x| ** power`` (the signed square
    root for ``power=0.5``), then ``z = y / ||y||_2`` (a zero frame stays zero). Over the frames of
    a video, each statistic in ``stats`` is taken per dimension (``var`` is the population
    variance, ``ddof=0``). The output row of a video is ``[stat_1 (D), stat_2 (D), ...]`` for the
    first network, then the same for the next networks: ``len(stats) * (D_1 + D_2 + ...)``
    values, 2 x (4096 + 512) = 9216 for the paper's two networks.

    The transformer learns nothing from the data: it may be used without ``fit``. A fitted
    aggregator remembers the layout it saw (networks and their widths) and rejects another one.

    Accepted inputs ``X``:

    * a list of videos of one network, each an array ``(n_frames_i, D)`` (the output of
      :class:`kemo.FrameFeatureExtractor`); lengths may differ;
    * a list of such lists, one per network (network-major), all with the same number of videos;
      a video may have a different number of frames in each network;
    * a 3-D array ``(n_videos, n_frames, D)`` (videos of equal length), or a list of those, one
      per network;
    * a 2-D array ``(n_videos, D)`` (or a list of lists of numbers): each row is a video of ONE
      frame, so the mean is the normalised row and the variance is 0. This keeps the estimator
      usable on plain scikit-learn data; it is rarely what you want on videos.

    Aggregation is stateless, so it can run once outside cross-validation without any leakage;
    inside a ``GridSearchCV`` over raw face stacks, give each network its own
    ``Pipeline(FrameFeatureExtractor, Aggregator)`` inside a ``FeatureUnion`` (the union's
    ``hstack`` equals the multi-network output here), because scikit-learn slices ``X`` by
    samples and a network-major list is not sliceable by video.

    Args:
        power: exponent of the signed power normalisation (0.5: signed square root; 1: none).
        normalize: ``"l2"`` to L2-normalise each frame after the power step, or ``None``.
        stats: statistics over frames, in output order, from ``"mean"``, ``"var"``, ``"std"``,
            ``"max"``, ``"min"``.
        empty: what a video with no frame gives: ``"error"`` raises :class:`kemo.errors.InputError`
            naming the video; ``"zeros"`` gives a row of zeros for that video.

    Attributes:
        n_dims_: tuple with the frame-feature width D of each network seen in ``fit``.
        n_features_in_: total input width, ``sum(n_dims_)``.
        feature_names_in_: column names, when ``fit`` received a DataFrame with string columns.

    Raises:
        InputError: (from ``fit``/``transform``) a video that is not 2-D, widths that disagree,
            NaN or inf values, an empty video with ``empty="error"``, networks with different
            numbers of videos.

    Example:
        >>> import numpy as np
        >>> videos = [np.random.rand(5, 8), np.random.rand(3, 8)]
        >>> Aggregator().fit_transform(videos).shape
        (2, 16)
        >>> Aggregator().fit_transform([videos, [np.random.rand(2, 4)] * 2]).shape
        (2, 24)
    """

    def __init__(self, power=0.5, normalize="l2", stats=("mean", "var"), empty="error"):
        self.power = power
        self.normalize = normalize
        self.stats = stats
        self.empty = empty

    def _check_params(self):
        if not isinstance(self.power, Real) or isinstance(self.power, bool) or self.power <= 0:
            raise ValueError(f"power must be a number > 0 (0.5 = signed square root), got "
                             f"{self.power!r}")
        if self.normalize not in ("l2", None):
            raise ValueError(f"normalize must be 'l2' or None, got {self.normalize!r}")
        stats = (self.stats,) if isinstance(self.stats, str) else tuple(self.stats)
        if not stats or any(s not in _STATS for s in stats) or len(set(stats)) != len(stats):
            raise ValueError(f"stats must be a non-empty sequence of distinct names from "
                             f"{_STATS}, got {self.stats!r}")
        if self.empty not in _EMPTY:
            raise ValueError(f"empty must be one of {_EMPTY}, got {self.empty!r}")
        return stats

    def fit(self, X, y=None):
        """Check the parameters and record the input layout (nothing is learned).

        Args:
            X: per-frame features, in one of the layouts described in the class docstring.
            y: ignored.

        Returns:
            self.
        """
        networks = self._fit(X)
        for k, (videos, _) in enumerate(networks):
            for i, video in enumerate(videos):
                if not np.isfinite(video).all():
                    where = f"network {k}, " if len(self.n_dims_) > 1 else ""
                    raise InputError(f"{where}video {i} contains NaN or inf values; remove or "
                                     f"impute those frames first")
        return self

    def fit_transform(self, X, y=None):
        """Fit (record the layout) and aggregate; same as ``fit(X).transform(X)``.

        Args:
            X: per-frame features, in one of the layouts described in the class docstring.
            y: ignored.

        Returns:
            Array ``(n_videos, len(stats) * sum(D))``.
        """
        self._fit(X)
        return self.transform(X)

    def _fit(self, X):
        """Check the parameters, record the layout; return the networks of X."""
        self._check_params()
        networks = self._networks(X, reset=True)
        self.n_dims_ = tuple(dim for _, dim in networks)
        self.n_features_in_ = int(sum(self.n_dims_))
        return networks

    def transform(self, X):
        """Aggregate the frames of every video.

        Args:
            X: per-frame features, in one of the layouts described in the class docstring.

        Returns:
            Array ``(n_videos, len(stats) * sum(D))``, float32 when every input is float32,
            float64 otherwise.

        Raises:
            InputError: see the class docstring.
        """
        check_is_fitted(self)
        stats = self._check_params()
        networks = self._networks(X, reset=False)
        dims = tuple(dim for _, dim in networks)
        if hasattr(self, "n_dims_") and dims != self.n_dims_:
            raise InputError(f"X has networks of widths {dims}, but this Aggregator was fitted "
                             f"on widths {self.n_dims_}; pass the same networks in the same order")
        dtype = np.float32 if all(_is_float32(v) for v, _ in networks) else np.float64
        several = len(networks) > 1
        blocks = [
            _aggregate(videos, dim, self.power, self.normalize, stats, self.empty, dtype,
                       where=f"network {k}, " if several else "")
            for k, (videos, dim) in enumerate(networks)
        ]
        return np.concatenate(blocks, axis=1) if several else blocks[0]

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns.

        Args:
            input_features: names of the D input columns (one network only); default: the
                names seen in ``fit``, else ``net{k}_{stat}_{j}``.

        Returns:
            Array of str: ``{stat}_{name}`` with input names, else ``net{k}_{stat}_{j}``.
        """
        check_is_fitted(self, "n_dims_")
        stats = self._check_params()
        names_in = getattr(self, "feature_names_in_", None)
        if input_features is not None:
            input_features = np.asarray(input_features, dtype=object)
            if len(self.n_dims_) != 1 or len(input_features) != self.n_dims_[0]:
                raise ValueError(f"input_features has {len(input_features)} names, but this "
                                 f"Aggregator was fitted on widths {self.n_dims_}")
            if names_in is not None and not np.array_equal(input_features, names_in):
                raise ValueError("input_features differ from feature_names_in_ seen in fit")
            names_in = input_features
        if names_in is not None:
            return np.asarray([f"{s}_{n}" for s in stats for n in names_in], dtype=object)
        return np.asarray([f"net{k}_{s}_{j}" for k, dim in enumerate(self.n_dims_)
                           for s in stats for j in range(dim)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _networks(self, X, reset):
        """Split X into networks: a list of (videos, D), videos a list or a 3-D array."""
        if isinstance(X, (list, tuple)):
            if len(X) == 0:
                raise InputError("X is empty: pass at least one video")
            first = X[0]
            if isinstance(first, (list, tuple)) and len(first) and np.ndim(first[0]) == 0:
                _check_rows(X)
                return [self._rows(X, reset)]  # a 2-D array-like (list of lists of numbers)
            if isinstance(first, (list, tuple)) or np.ndim(first) == 3:
                nets = [_videos(net, f"X[{k}]") for k, net in enumerate(X)]
                counts = {len(videos) for videos, _ in nets}
                if len(counts) != 1:
                    raise InputError(f"the networks in X have different numbers of videos "
                                     f"{[len(v) for v, _ in nets]}; each network needs one "
                                     f"feature array per video")
                return nets
            if np.ndim(first) == 0:
                return [self._rows(X, reset)]  # let validation reject a 1-D input
            return [_videos(X, "X")]
        if isinstance(X, np.ndarray) and X.ndim == 3:
            return [_videos(X, "X")]
        return [self._rows(X, reset)]

    def _rows(self, X, reset):
        """A 2-D input: each row is a video of one frame."""
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32],
                          ensure_all_finite=False)
        return X[:, None, :], X.shape[1]


def _check_rows(X):
    """Reject a ragged list of rows, naming the first row whose length differs."""
    width = np.size(X[0])
    for i, row in enumerate(X):
        if np.ndim(row) != 1 or np.size(row) != width:
            raise InputError(f"X is ragged: row {i} has {np.size(row)} values but row 0 has "
                             f"{width}; each row (a one-frame video) needs the same features")


def _is_float32(videos):
    if isinstance(videos, np.ndarray):
        return videos.dtype == np.float32
    return all(getattr(v, "dtype", None) == np.float32 for v in videos)


def _videos(videos, name):
    """Validate the videos of one network; return (videos, D)."""
    if isinstance(videos, (list, tuple)):
        videos = [np.asarray(v) for v in videos]
    else:
        videos = check_array(videos, allow_nd=True, ensure_all_finite=False,
                             dtype=[np.float64, np.float32], input_name=name)
        if videos.ndim != 3:
            raise InputError(f"{name} has shape {videos.shape}; expected one (n_frames, D) "
                             f"array per video, or a 3-D array (n_videos, n_frames, D)")
    if len(videos) == 0:
        raise InputError(f"{name} holds no video: pass at least one")
    dim = None
    for i, v in enumerate(videos):
        if v.ndim != 2:
            raise InputError(f"video {i} of {name} has shape {v.shape}; expected (n_frames, D)"
                             f" (use x[None, :] for a single frame)")
        if v.dtype.kind not in "fiub":
            raise InputError(f"video {i} of {name} has dtype {v.dtype}; expected real numbers")
        if dim is None:
            dim = v.shape[1]
        elif v.shape[1] != dim:
            raise InputError(f"video {i} of {name} has {v.shape[1]} features per frame but "
                             f"video 0 has {dim}; all videos of a network need the same width")
    if dim == 0:
        raise InputError(f"{name} has 0 features per frame; expected D >= 1")
    return videos, dim


def _aggregate(videos, dim, power, normalize, stats, empty, dtype, where):
    """Aggregate the videos of one network.

    Frames are processed in blocks of about ``_BLOCK_VALUES`` values that stay in the CPU cache;
    a block may hold the pieces of many short videos or a piece of a long one. Each piece gives
    its count, mean and sum of squared deviations, merged into per-video totals with Chan's
    parallel update, which is as exact as a two-pass variance.
    """
    n = len(videos)
    lengths = np.fromiter((v.shape[0] for v in videos), dtype=np.intp, count=n)
    empties = np.flatnonzero(lengths == 0)
    if empties.size and empty == "error":
        raise InputError(f"{where}video {empties[0]} has no frames ({empties.size} empty videos "
                         f"in all); drop empty videos or use Aggregator(empty='zeros')")
    acc = _Totals(n, dim, dtype, stats)
    ends = np.cumsum(lengths)
    total = int(ends[-1])
    block = max(1, _BLOCK_VALUES // dim)  # frames per block
    buf = np.empty((min(block, total), dim), dtype=dtype)
    work = np.empty_like(buf)
    for lo in range(0, total, block):
        hi = min(lo + block, total)
        # Videos overlapping global frames [lo, hi), and the piece of each inside the block.
        first = int(np.searchsorted(ends, lo, side="right"))
        last = int(np.searchsorted(ends, hi, side="left"))
        ids = np.arange(first, last + 1)
        ids = ids[lengths[ids] > 0]
        starts = np.maximum(ends[ids] - lengths[ids], lo) - (ends[ids] - lengths[ids])
        stops = np.minimum(ends[ids], hi) - (ends[ids] - lengths[ids])
        x, mag = buf[: hi - lo], work[: hi - lo]
        pieces = [videos[i][a:b] for i, a, b in zip(ids, starts, stops, strict=True)]
        np.concatenate(pieces, axis=0, out=x, casting="unsafe")
        bad = _kernel(x, mag, stops - starts, ids, power, normalize, acc)
        if bad is not None:
            raise InputError(f"{where}video {bad} contains NaN or inf values; remove or impute "
                             f"those frames first")
    return acc.result(stats)


class _Totals:
    """Per-video running count, mean, sum of squared deviations, max and min."""

    def __init__(self, n, dim, dtype, stats):
        self.count = np.zeros(n, dtype=dtype)
        self.mean = np.zeros((n, dim), dtype=dtype)
        self.m2 = np.zeros((n, dim), dtype=dtype) if {"var", "std"} & set(stats) else None
        self.max = np.full((n, dim), -np.inf, dtype=dtype) if "max" in stats else None
        self.min = np.full((n, dim), np.inf, dtype=dtype) if "min" in stats else None

    def merge(self, ids, count, mean, m2, top, bottom):
        """Merge piece statistics into videos ``ids`` (Chan et al. pairwise update)."""
        seen = self.count[ids] > 0  # only a video continued from the previous block
        if seen.any():
            i = np.flatnonzero(seen)
            n_a = self.count[ids[i]][:, None]
            n_b = count[i][:, None]
            n_ab = n_a + n_b
            delta = mean[i] - self.mean[ids[i]]
            mean[i] = self.mean[ids[i]] + delta * (n_b / n_ab)
            if m2 is not None:
                m2[i] += self.m2[ids[i]] + delta**2 * (n_a * n_b / n_ab)
            if top is not None:
                top[i] = np.maximum(top[i], self.max[ids[i]])
            if bottom is not None:
                bottom[i] = np.minimum(bottom[i], self.min[ids[i]])
            count = count + self.count[ids] * seen
        self.mean[ids] = mean
        if m2 is not None:
            self.m2[ids] = m2
        if top is not None:
            self.max[ids] = top
        if bottom is not None:
            self.min[ids] = bottom
        self.count[ids] = count

    def result(self, stats):
        n = np.maximum(self.count, 1)[:, None]  # empty videos (policy "zeros") stay 0
        var = self.m2 / n if self.m2 is not None else None
        empty = self.count == 0
        columns = {"mean": self.mean, "var": var, "std": None if var is None else np.sqrt(var),
                   "max": self.max, "min": self.min}
        out = np.stack([columns[s] for s in stats], axis=1)
        out[empty] = 0
        return out.reshape(out.shape[0], -1)


def _kernel(x, mag, counts, ids, power, normalize, acc):
    """Normalise the frames of a block in place and merge their statistics into ``acc``.

    Args:
        x: (frames, D) block, pieces of videos ``ids`` one after the other (overwritten).
        mag: scratch array shaped like ``x``.
        counts: frames of each piece.
        ids: video index of each piece.
        power: exponent of the signed power step.
        normalize: ``"l2"`` or None.
        acc: the running totals.

    Returns:
        None, or the index of a video holding NaN or inf.
    """
    np.abs(x, out=mag)
    # Sum of |x| per frame: non-finite exactly when the frame holds NaN/inf, and for the signed
    # square root it is also the squared L2 norm of the result (sign(x)|x|^0.5 squared = |x|).
    total = mag.sum(axis=1)
    finite = np.isfinite(total)
    if not finite.all():
        frame = int(np.flatnonzero(~finite)[0])
        return int(ids[np.searchsorted(np.cumsum(counts), frame, side="right")])
    if power != 1:
        if power == 0.5:
            np.sqrt(mag, out=mag)
        else:
            np.power(mag, power, out=mag)
        np.copysign(mag, x, out=x)
    if normalize == "l2":
        sq = total if power == 0.5 else np.einsum("ij,ij->i", x, x)
        norm = np.sqrt(sq)
        inv = np.divide(1, norm, out=np.zeros_like(norm), where=norm > 0)
        x *= inv[:, None]
    need_m2 = acc.m2 is not None
    if counts.size == 1:
        # One piece (long videos): plain reductions, no segment bookkeeping.
        mean = x.mean(axis=0, keepdims=True)
        m2 = None
        if need_m2:
            np.subtract(x, mean, out=mag)
            np.square(mag, out=mag)
            m2 = mag.sum(axis=0, keepdims=True)
        top = x.max(axis=0, keepdims=True) if acc.max is not None else None
        bottom = x.min(axis=0, keepdims=True) if acc.min is not None else None
    else:
        # Per-piece averages as one sparse product (row p holds 1/n_p on the frames of piece p);
        # np.add.reduceat along axis 0 is several times slower.
        indptr = np.concatenate(([0], np.cumsum(counts)))
        weights = np.repeat((1 / counts).astype(x.dtype), counts)
        avg = sparse.csr_array((weights, np.arange(x.shape[0]), indptr),
                               shape=(counts.size, x.shape[0]))
        mean = avg @ x
        m2 = None
        if need_m2:
            np.take(mean, np.repeat(np.arange(counts.size), counts), axis=0, out=mag)
            np.subtract(x, mag, out=mag)
            np.square(mag, out=mag)
            m2 = (avg @ mag) * counts[:, None].astype(x.dtype)
        top = np.maximum.reduceat(x, indptr[:-1], axis=0) if acc.max is not None else None
        bottom = np.minimum.reduceat(x, indptr[:-1], axis=0) if acc.min is not None else None
    acc.merge(ids, counts.astype(x.dtype), mean, m2, top, bottom)
    return None
