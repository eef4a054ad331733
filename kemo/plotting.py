"""Figures for looking at the pipeline: faces, detections, class balance, training, timelines.

Every function draws on a bare :class:`matplotlib.figure.Figure` (no pyplot state, so it works
headless and in tests) and returns it; Jupyter shows a returned figure. Functions that draw a
single panel take ``ax=`` to draw into an existing Axes instead. The confusion matrix is
:meth:`kemo.evaluation.EvaluationReport.plot_confusion_matrix`.

Example:
    >>> import numpy as np
    >>> fig = show_faces(np.zeros((4, 48, 48), np.uint8), titles=["a", "b", "c", "d"])
    >>> len(fig.axes)
    4
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from kemo.datasets import CLASS_NAMES
from kemo.errors import InputError

__all__ = [
    "plot_class_balance",
    "plot_detections",
    "plot_history",
    "plot_per_class",
    "plot_segments",
    "plot_timeline",
    "show_faces",
]

#: One colour per emotion (FER2013 order), reused by every figure so classes look the same.
CLASS_COLORS = ("#d62728", "#8c564b", "#9467bd", "#2ca02c", "#1f77b4", "#ff7f0e", "#7f7f7f")


def _figure(width, height):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _axes(ax, width, height):
    """Return ``(figure, ax)``: the given Axes and its figure, or a new one-panel figure."""
    if ax is not None:
        return ax.figure, ax
    fig = _figure(width, height)
    return fig, fig.subplots()


def _color(index):
    return CLASS_COLORS[index % len(CLASS_COLORS)]


def _image_stack(images, name="images"):
    """Validate a stack of images; return a list of (H, W) or (H, W, 3) arrays."""
    if isinstance(images, np.ndarray):
        if images.ndim == 2 or (images.ndim == 3 and images.shape[-1] in (3, 4)
                                and images.shape[0] > 4):
            raise InputError(f"{name}: got one image of shape {images.shape}; pass a stack "
                             f"(N, H, W[, C]) or a list of images")
        stack = list(images)
    elif isinstance(images, Sequence) and not isinstance(images, str | bytes):
        stack = [np.asarray(image) for image in images]
    else:
        raise InputError(f"{name} must be an array (N, H, W[, C]) or a list of images; got "
                         f"{type(images).__name__}")
    out = []
    for i, image in enumerate(stack):
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.ndim == 3 and image.shape[-1] == 4:
            image = image[..., :3]
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
            raise InputError(f"{name}[{i}] has shape {image.shape}; expected (H, W), "
                             f"(H, W, 1) or (H, W, 3)")
        if not np.issubdtype(image.dtype, np.number) and image.dtype != bool:
            raise InputError(f"{name}[{i}] has dtype {image.dtype}; expected pixel values")
        out.append(image)
    return out


def _show(ax, image):
    """Draw one image: uint8 (or 0..255 values) as they are, floats in [0, 1] as they are."""
    if image.dtype != np.uint8:
        image = np.asarray(image, dtype=np.float64)
        if np.nanmax(image, initial=0.0) > 1.0:
            image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        vmax = 255 if image.dtype == np.uint8 else 1.0
        ax.imshow(image, cmap="gray", vmin=0, vmax=vmax)
    else:
        ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])


def show_faces(images, titles=None, ncols=8, size=1.4, title=None):
    """Show a grid of face crops (gray or RGB), e.g. the faces of one video over time.

    Args:
        images: array ``(N, H, W)``, ``(N, H, W, 1|3|4)`` or a list of images of any sizes;
            uint8 pixels, or floats in [0, 1].
        titles: one caption per image (class names, frame numbers...), or None.
        ncols: images per row at most.
        size: side of one image in inches.
        title: caption of the whole figure.

    Returns:
        matplotlib.figure.Figure: one Axes per image.

    Raises:
        InputError: no image, a malformed image, or a number of titles that differs.
    """
    faces = _image_stack(images)
    if not faces:
        raise InputError("images is empty: nothing to show")
    if titles is not None and len(titles) != len(faces):
        raise InputError(f"{len(titles)} titles for {len(faces)} images")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise InputError(f"ncols must be a positive int; got {ncols!r}")
    cols = min(ncols, len(faces))
    rows = math.ceil(len(faces) / cols)
    fig = _figure(cols * size, rows * size + (0.3 if title else 0) + (0.25 * rows if titles
                                                                       else 0))
    grid = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(grid.ravel()):
        if i >= len(faces):
            fig.delaxes(ax)
            continue
        _show(ax, faces[i])
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_class_balance(labels, class_names=CLASS_NAMES, normalize=False, ax=None, title=None):
    """Bar chart of how many samples each class has, one group of bars per data set.

    Args:
        labels: ``{data set name: integer labels}`` (or one label array), labels being indices
            into ``class_names``.
        class_names: names of the classes, in label order.
        normalize: show fractions of each data set instead of counts (data sets of very
            different sizes side by side).
        ax: Axes to draw in; default: a new figure.
        title: title of the plot.

    Returns:
        matplotlib.figure.Figure: bars in data-set order, then class order; each bar is
        labelled with its count.

    Raises:
        InputError: labels outside ``0..len(class_names) - 1``, or no data set.
    """
    sets = dict(labels) if isinstance(labels, Mapping) else {"samples": labels}
    if not sets:
        raise InputError("labels is empty: pass {data set name: labels}")
    k = len(class_names)
    counts = {}
    for name, values in sets.items():
        values = np.asarray(values)
        if values.ndim != 1 or (values.size and not np.issubdtype(values.dtype, np.integer)):
            raise InputError(f"labels of {name!r} must be a 1-D array of integer class ids; "
                             f"got {values.dtype} {values.shape}")
        if values.size and (values.min() < 0 or values.max() >= k):
            raise InputError(f"labels of {name!r} hold values outside 0..{k - 1} "
                             f"({len(class_names)} class names)")
        counts[name] = np.bincount(values, minlength=k)
    fig, ax = _axes(ax, 1.2 + 0.9 * k, 3.6)
    width = 0.8 / len(counts)
    for j, (name, count) in enumerate(counts.items()):
        total = count.sum()
        heights = count / total if normalize and total else count
        x = np.arange(k) + (j - (len(counts) - 1) / 2) * width
        bars = ax.bar(x, heights, width, label=f"{name} ({total})")
        ax.bar_label(bars, labels=[str(c) for c in count], fontsize=7)
    ax.set_xticks(range(k), class_names, rotation=30, ha="right")
    ax.set_ylabel("fraction of the data set" if normalize else "samples")
    if len(counts) > 1 or isinstance(labels, Mapping):
        ax.legend(fontsize=8)
    ax.set_title(title if title is not None else "class balance")
    fig.tight_layout()
    return fig


def plot_detections(image, records, ax=None, title=None):
    """Draw face boxes, confidences and the five landmarks on an image.

    Args:
        image: RGB (H, W, 3) or gray (H, W) image.
        records: detection records ``{"box": [x, y, w, h], "confidence": c, "keypoints":
            {name: (x, y)}}`` as :meth:`kemo.faces.FaceDetector.detect` returns them.
        ax: Axes to draw in; default: a new figure.
        title: title; default: the number of faces.

    Returns:
        matplotlib.figure.Figure: one rectangle patch per face, one marker set per face.

    Raises:
        InputError: a malformed image or record.
    """
    from matplotlib.patches import Rectangle

    (picture,) = _image_stack([image], "image")
    height, width = picture.shape[:2]
    fig, ax = _axes(ax, 6.0, 6.0 * height / width)
    _show(ax, picture)
    for i, record in enumerate(records):
        try:
            x, y, w, h = (float(v) for v in record["box"])
            points = np.array([record["keypoints"][k] for k in record["keypoints"]], float)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"records[{i}] is not a detection record with 'box' [x, y, w, h] "
                             f"and 'keypoints' ({exc})") from None
        ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="#00e000", linewidth=2))
        confidence = record.get("confidence")
        if confidence is not None:
            ax.text(x, y - 4, f"{float(confidence):.3f}", color="#00e000", fontsize=8,
                    va="bottom")
        ax.plot(points[:, 0], points[:, 1], "o", color="#ff3030", markersize=3)
    ax.set_title(title if title is not None else f"{len(records)} face(s)")
    fig.tight_layout()
    return fig


def _history_table(history):
    """``{metric: [value per epoch]}`` from a Keras History, a dict of lists or epoch rows."""
    if hasattr(history, "history") and isinstance(history.history, Mapping):
        history = history.history
    if isinstance(history, Mapping):
        table = {k: list(v) for k, v in history.items()}
    elif isinstance(history, Sequence) and all(isinstance(r, Mapping) for r in history):
        keys = [k for k in (history[0] if history else {}) if k != "epoch"]
        table = {k: [row.get(k, np.nan) for row in history] for k in keys}
    else:
        raise InputError("history must be a keras History, {metric: [values]} or a list of "
                         f"per-epoch dicts; got {type(history).__name__}")
    if not table or not any(len(v) for v in table.values()):
        raise InputError("history holds no epoch")
    return table


def plot_history(history, metrics=("loss", "accuracy"), title=None):
    """Training curves: one panel per metric, training and validation (``val_``) together.

    Args:
        history: a ``keras.callbacks.History`` (what ``model.fit`` returns), a dict
            ``{metric: [value per epoch]}``, or a list of per-epoch dicts (the ``"history"``
            of the state :func:`kemo.training.fit_classifier` returns).
        metrics: names of the metrics to plot; those absent from ``history`` are skipped.
        title: title of the figure.

    Returns:
        matplotlib.figure.Figure: one Axes per metric found, with a line per series.

    Raises:
        InputError: ``history`` is not one of the forms above or has none of ``metrics``.
    """
    from matplotlib.ticker import MaxNLocator

    table = _history_table(history)
    found = [m for m in metrics if m in table or f"val_{m}" in table]
    if not found:
        raise InputError(f"history has none of the metrics {list(metrics)}; it has "
                         f"{sorted(table)}")
    fig = _figure(4.2 * len(found), 3.2)
    axes = np.atleast_1d(fig.subplots(1, len(found)))
    for ax, metric in zip(axes, found, strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if key in table:
                values = np.asarray(table[key], float)
                ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3,
                        label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _analysis_track(result, track):
    """``(face, class names, times in seconds)`` of one face of a VideoAnalysis, or raise."""
    tracks = getattr(result, "tracks", None)
    if tracks is None or not hasattr(result, "fps"):
        raise InputError(f"result must be a VideoAnalysis (VideoEmotionRecognizer.analyze); "
                         f"got {type(result).__name__}")
    if isinstance(track, bool) or not isinstance(track, int) or not 0 <= track < len(tracks):
        raise InputError(f"track must be an index into the {len(tracks)} track(s) of the "
                         f"analysis; got {track!r}")
    face = tracks[track]
    times = np.asarray(face.frame_indices, dtype=np.float64) / float(result.fps)
    return face, tuple(result.timeline_class_names), times


def _runs(x, step):
    """Slices of the rows with no gap inside: a gap is a step over 1.5 sampling steps."""
    breaks = np.flatnonzero(np.diff(x) > 1.5 * step) + 1
    edges = [0, *breaks.tolist(), len(x)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def plot_timeline(probabilities, times=None, class_names=CLASS_NAMES, ax=None, stacked=True,
                  title=None, xlabel=None, track=0):
    """Emotion probabilities along a video: what the model sees, frame by frame.

    Each row stands for the time to the next one read (one sampling step: the median step
    between rows), so a stretch without a face (a step longer than 1.5 sampling steps) is
    left blank, not bridged by a straight line.

    Args:
        probabilities: ``(T, K)`` class probabilities, one row per analysed frame; or a
            :class:`kemo.VideoAnalysis`, whose face ``track`` is drawn in seconds.
        times: ``(T,)`` position of each row (seconds or frame indices), increasing; default:
            ``0..T-1``. Not with an analysis (it has its own).
        class_names: ``K`` names, in column order (an analysis has its own).
        ax: Axes to draw in; default: a new figure.
        stacked: stacked areas (rows summing to 1 fill the plot) instead of one line per class.
        title: title; default: the emotion with the highest mean probability (and the face's
            track id, for an analysis).
        xlabel: label of the time axis; default: ``"analysed frame"`` without ``times``, else
            ``"time (s)"``.
        track: with an analysis, which of its faces: an index into ``result.tracks`` (0: the
            main face).

    Returns:
        matplotlib.figure.Figure

    Raises:
        InputError: a shape mismatch, non-finite values, times that go backwards, or a bad
            ``track``.

    Example:
        >>> result = rec.analyze("clip.mp4")  # doctest: +SKIP
        >>> plot_timeline(result)  # doctest: +SKIP
    """
    name = ""
    if hasattr(probabilities, "tracks"):  # a VideoAnalysis
        if times is not None:
            raise InputError("times: an analysis has its own (frame indices over fps); "
                             "pass times only with a probability array")
        face, class_names, times = _analysis_track(probabilities, track)
        probabilities, name = face.frame_probabilities, f"face {face.track_id}: "
    proba = np.asarray(probabilities, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] == 0:
        raise InputError(f"probabilities must be (T, K) with T >= 1; got shape {proba.shape}")
    if proba.shape[1] != len(class_names):
        raise InputError(f"probabilities have {proba.shape[1]} columns for "
                         f"{len(class_names)} class names")
    if not np.isfinite(proba).all():
        raise InputError("probabilities contain NaN or inf")
    if times is None:
        x = np.arange(len(proba), dtype=np.float64)
        xlabel = xlabel or "analysed frame"
    else:
        x = np.asarray(times, dtype=np.float64)
        if x.shape != (len(proba),):
            raise InputError(f"times has shape {x.shape}; expected ({len(proba)},), one per row")
        if not np.isfinite(x).all() or np.any(np.diff(x) < 0):
            raise InputError("times must be finite and increasing")
        xlabel = xlabel or "time (s)"
    steps = np.diff(x)
    step = float(np.median(steps)) if len(steps) and np.median(steps) > 0 else 1.0
    fig, ax = _axes(ax, 8.0, 3.2)
    colors = [_color(i) for i in range(len(class_names))]
    for i, run in enumerate(_runs(x, step)):
        # the run's last row holds until one step later, so a lone row is drawn too
        xs = np.append(x[run], x[run][-1] + step)
        ps = np.vstack([proba[run], proba[run][-1:]])
        labels = class_names if i == 0 else [None] * len(class_names)
        if stacked:
            ax.stackplot(xs, ps.T, labels=labels, colors=colors, alpha=0.85)
        else:
            for j, label in enumerate(labels):
                ax.plot(xs, ps[:, j], label=label, color=colors[j])
    ax.set_ylim(0, max(1.0, float(proba.sum(axis=1).max())) if stacked else 1)
    ax.set_xlim(x[0], x[-1] + step)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("probability")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    top = class_names[int(np.argmax(proba.mean(axis=0)))]
    ax.set_title(title if title is not None else f"{name}mostly {top}")
    fig.tight_layout()
    return fig


def plot_segments(result, track=0, smoothed=True, ax=None, title=None):
    """A face's emotion timeline in seconds, with its emotion segments shaded.

    Each segment of the face (:func:`kemo.timeline.find_segments`, as
    :meth:`kemo.VideoEmotionRecognizer.analyze` gives them) is shaded in its emotion's colour
    and named at the top; one line per class shows the probabilities the segments come from,
    with gaps where the face was not found (as :func:`plot_timeline`).

    Args:
        result: a :class:`kemo.VideoAnalysis`.
        track: which of its faces: an index into ``result.tracks`` (0: the main face).
        smoothed: draw the smoothed timeline the segments are cut from
            (:func:`kemo.timeline.smooth`) instead of the raw frame probabilities.
        ax: Axes to draw in; default: a new figure.
        title: title; default: the face's track id and its segments' labels in order.

    Returns:
        matplotlib.figure.Figure: one line per class (per stretch with the face), one shaded
        span per segment.

    Raises:
        InputError: ``result`` is not an analysis, or ``track`` is not one of its faces.
    """
    from kemo.timeline import smooth

    face, names, times = _analysis_track(result, track)
    proba = smooth(face.frame_probabilities, times) if smoothed else face.frame_probabilities
    labels = [segment.label for segment in face.segments]
    shown = " -> ".join(labels[:8]) + (" ..." if len(labels) > 8 else "")
    fig = plot_timeline(proba, times, class_names=names, ax=ax, stacked=False,
                        title=title if title is not None else f"face {face.track_id}: {shown}")
    ax = fig.axes[0] if ax is None else ax
    for segment in face.segments:
        color = _color(names.index(segment.label))
        ax.axvspan(segment.start, segment.end, color=color, alpha=0.18, linewidth=0)
        ax.text((segment.start + segment.end) / 2, 0.98, segment.label, ha="center",
                va="top", fontsize=7, color=color, clip_on=True)
    if face.segments:  # the last segment ends one frame after the last timeline point
        ax.set_xlim(face.segments[0].start, face.segments[-1].end)
    return fig


def plot_per_class(reports, ax=None, title=None):
    """Per-class accuracy of several methods side by side (the paper's Table III as bars).

    Args:
        reports: ``{method name: kemo.evaluation.EvaluationReport}``, all on the same classes.
        ax: Axes to draw in; default: a new figure.
        title: title of the plot.

    Returns:
        matplotlib.figure.Figure: one group of bars per class (classes without samples are
        left empty), one bar per method; the legend gives each method's overall accuracy.

    Raises:
        InputError: no report, or reports on different classes.
    """
    from kemo.evaluation import check_reports

    first = check_reports(reports)
    k = len(first.class_names)
    fig, ax = _axes(ax, 3.5 + 1.0 * k, 3.6)
    width = 0.8 / len(reports)
    for j, (name, report) in enumerate(reports.items()):
        heights = np.array([100 * report.per_class[c] for c in first.class_names])
        x = np.arange(k) + (j - (len(reports) - 1) / 2) * width
        ax.bar(x, np.nan_to_num(heights), width, label=f"{name} ({100 * report.accuracy:.1f} %)")
    ax.set_xticks(range(k), first.class_names, rotation=30, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, title="method (overall)", title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title if title is not None else "per-class accuracy")
    fig.tight_layout()
    return fig
