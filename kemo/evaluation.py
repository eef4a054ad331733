"""Evaluation in one call: accuracy, per-class accuracy table, confusion matrix and its figure.

Reference:
    Xu et al., EmotiW 2017: overall accuracy, the per-class accuracy of every method (Table III)
    and confusion matrices (Figs. 2 and 3, rows = true class, normalised per row).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
from sklearn.metrics import confusion_matrix

from kemo.errors import InputError

__all__ = ["EvaluationReport", "compare", "evaluate"]

_NORMALIZE = ("true", "pred", "all", None)


def _default_names(labels):
    """Names for labels: kemo's class names for integers 0..6, else the labels as text."""
    try:
        from kemo.datasets import CLASS_NAMES
    except ImportError:  # pragma: no cover - datasets is part of kemo
        CLASS_NAMES = ()
    ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels)
    if CLASS_NAMES and ints and all(0 <= v < len(CLASS_NAMES) for v in labels):
        return tuple(CLASS_NAMES[v] for v in labels)
    return tuple(str(v) for v in labels)


@dataclasses.dataclass(frozen=True)
class EvaluationReport:
    """Scores of one classifier on one data set (see :func:`evaluate`).

    Attributes:
        accuracy: fraction of samples classified correctly.
        mean_class_accuracy: mean of the per-class accuracies over classes present in
            ``y_true`` (balanced accuracy).
        per_class: ``{class name: accuracy}``, the recall of each class (NaN when the class has
            no sample), as in the paper's Table III.
        confusion: counts ``(n_classes, n_classes)``, rows = true class, columns = predicted.
        labels: label values, in table order.
        class_names: display names, in table order.
        support: samples of each class in ``y_true``.
        normalize: default normalisation of :meth:`confusion_matrix` and the figure.
    """

    accuracy: float
    mean_class_accuracy: float
    per_class: dict
    confusion: np.ndarray
    labels: tuple
    class_names: tuple
    support: tuple
    normalize: str | None = "true"

    def confusion_matrix(self, normalize="default"):
        """The confusion matrix, normalised.

        Args:
            normalize: ``"true"`` (rows sum to 1), ``"pred"`` (columns), ``"all"``, ``None``
                (counts); default: the report's ``normalize``.

        Returns:
            float array ``(n_classes, n_classes)`` (rows with no sample stay 0).
        """
        normalize = self.normalize if normalize == "default" else normalize
        _check_normalize(normalize)
        counts = self.confusion.astype(float)
        if normalize is None:
            return counts
        if normalize == "all":
            total = counts.sum()
            return counts / total if total else counts
        axis = 1 if normalize == "true" else 0
        sums = counts.sum(axis=axis, keepdims=True)
        return np.divide(counts, sums, out=np.zeros_like(counts), where=sums > 0)

    def plot_confusion_matrix(self, ax=None, normalize="default", cmap="Blues", title=None):
        """Draw the confusion matrix as in the paper's Figs. 2 and 3.

        Uses a bare ``matplotlib.figure.Figure`` (Agg canvas, no pyplot state), so it works
        headless; Jupyter displays the returned figure.

        Args:
            ax: a matplotlib Axes to draw in; default: a new figure.
            normalize: as in :meth:`confusion_matrix`.
            cmap: colour map name.
            title: figure title; default: the accuracy.

        Returns:
            The ``matplotlib.figure.Figure``.
        """
        from matplotlib.figure import Figure

        matrix = self.confusion_matrix(normalize)
        normalize = self.normalize if normalize == "default" else normalize
        k = len(self.labels)
        if ax is None:
            side = 1.2 + 0.75 * k
            fig = Figure(figsize=(side + 1.2, side))
            ax = fig.subplots()
        fig = ax.figure
        image = ax.imshow(matrix, cmap=cmap, vmin=0, vmax=1 if normalize else None)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        threshold = (matrix.max() + matrix.min()) / 2
        for i in range(k):
            for j in range(k):
                text = f"{matrix[i, j]:.2f}" if normalize else f"{int(matrix[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > threshold else "black")
        ax.set_xticks(range(k), self.class_names, rotation=45, ha="right")
        ax.set_yticks(range(k), self.class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title if title is not None else f"accuracy {100 * self.accuracy:.2f} %")
        fig.tight_layout()
        return fig

    def to_dict(self):
        """Plain Python values (JSON-friendly)."""
        return {
            "accuracy": self.accuracy,
            "mean_class_accuracy": self.mean_class_accuracy,
            "per_class": {k: (None if np.isnan(v) else v) for k, v in self.per_class.items()},
            "confusion": self.confusion.tolist(),
            "labels": [v.item() if isinstance(v, np.generic) else v for v in self.labels],
            "class_names": list(self.class_names),
            "support": list(self.support),
        }

    def __str__(self):
        width = max(12, *(len(n) for n in self.class_names))
        lines = [f"{'class':<{width}} {'accuracy':>9} {'support':>8}"]
        for name, n in zip(self.class_names, self.support, strict=True):
            acc = self.per_class[name]
            cell = "-" if np.isnan(acc) else f"{100 * acc:.2f}"
            lines.append(f"{name:<{width}} {cell:>9} {n:>8}")
        lines.append(f"{'mean class':<{width}} {100 * self.mean_class_accuracy:>9.2f}")
        lines.append(f"{'overall':<{width}} {100 * self.accuracy:>9.2f} {sum(self.support):>8}")
        return "\n".join(lines)


def _check_normalize(normalize):
    if normalize not in _NORMALIZE:
        raise ValueError(f"normalize must be one of {_NORMALIZE}; got {normalize!r}")


def evaluate(y_true, y_pred, *, labels=None, class_names=None, normalize="true"):
    """Score predictions: accuracy, per-class accuracy and confusion matrix, in one report.

    Args:
        y_true: true labels ``(n,)``.
        y_pred: predicted labels ``(n,)``, or class probabilities / scores ``(n, K)`` whose
            columns are ``labels`` (default ``0..K-1``); their argmax is the prediction.
        labels: label values in table order; default: ``range(len(class_names))`` when names
            are given and the labels are integers, else the sorted labels found in ``y_true``
            and the predictions (``0..K-1`` with probabilities).
        class_names: display names, one per label; default: :data:`kemo.datasets.CLASS_NAMES`
            for integer labels 0..6, else the labels as text.
        normalize: default normalisation of the confusion matrix and its figure (``"true"``:
            rows sum to 1, as in the paper's figures).

    Returns:
        :class:`EvaluationReport`.

    Raises:
        InputError: lengths differ, empty input, labels outside ``labels``, or names that do
            not match the labels.

    Example:
        >>> report = evaluate([0, 3, 3, 6], [0, 3, 6, 6])
        >>> round(report.accuracy, 2), report.per_class["Happy"]
        (0.75, 0.5)
    """
    _check_normalize(normalize)
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.size == 0:
        raise InputError(f"y_true must be a non-empty 1-D array of labels; got shape "
                         f"{y_true.shape}")
    if y_pred.ndim not in (1, 2) or len(y_pred) != len(y_true):
        raise InputError(f"y_pred must be labels (n,) or probabilities (n, K) with n = "
                         f"{len(y_true)} (as y_true); got shape {y_pred.shape}")
    if y_pred.ndim == 2:
        if labels is None:
            if class_names is not None and len(class_names) != y_pred.shape[1]:
                raise InputError(f"{len(class_names)} class_names for {y_pred.shape[1]} "
                                 f"probability columns")
            labels = np.arange(y_pred.shape[1])
        labels = np.asarray(labels)
        if len(labels) != y_pred.shape[1]:
            raise InputError(f"y_pred has {y_pred.shape[1]} columns but labels has "
                             f"{len(labels)} values")
        y_pred = labels[np.argmax(y_pred, axis=1)]
    if labels is None:
        ints = np.issubdtype(y_true.dtype, np.integer) and np.issubdtype(y_pred.dtype,
                                                                         np.integer)
        if class_names is not None and ints:
            labels = np.arange(len(class_names))
        else:
            labels = np.unique(np.concatenate([y_true, y_pred]))
    labels = np.asarray(labels)
    unknown = np.setdiff1d(np.concatenate([y_true, y_pred]), labels)
    if unknown.size:
        raise InputError(f"labels {unknown.tolist()} are not among labels {labels.tolist()}; "
                         f"pass labels= (and class_names=) covering them")
    labels = tuple(v.item() if isinstance(v, np.generic) else v for v in labels)
    names = _default_names(labels) if class_names is None else tuple(map(str, class_names))
    if len(names) != len(labels):
        raise InputError(f"{len(names)} class_names for {len(labels)} labels {labels}")
    counts = confusion_matrix(y_true, y_pred, labels=list(labels))
    support = counts.sum(axis=1)
    recall = np.divide(np.diag(counts), support, out=np.full(len(labels), np.nan),
                       where=support > 0)
    return EvaluationReport(
        accuracy=float(np.mean(y_true == y_pred)),
        mean_class_accuracy=float(np.nanmean(recall)),
        per_class={name: float(r) for name, r in zip(names, recall, strict=True)},
        confusion=counts,
        labels=labels,
        class_names=names,
        support=tuple(int(s) for s in support),
        normalize=normalize,
    )


def check_reports(reports):
    """Check ``{method name: EvaluationReport}`` for a side-by-side comparison.

    Returns:
        The first report (its ``class_names`` are those of every report).

    Raises:
        InputError: no report, or reports on different classes.
    """
    if not isinstance(reports, Mapping) or not reports:
        raise InputError("reports must be a non-empty mapping {method name: EvaluationReport}")
    first = next(iter(reports.values()))
    for name, report in reports.items():
        if tuple(report.class_names) != tuple(first.class_names):
            raise InputError(f"report {name!r} has classes {report.class_names}, the first "
                             f"has {first.class_names}")
    return first


def compare(reports):
    """A table of several methods side by side, like the paper's Table III.

    Args:
        reports: ``{method name: EvaluationReport}``, all on the same classes.

    Returns:
        Text: one row per method, per-class accuracies (%) then the overall accuracy.

    Raises:
        InputError: no report, or reports on different classes.
    """
    first = check_reports(reports)
    width = max(6, *(len(n) for n in reports))
    cols = [max(7, len(n)) for n in first.class_names]
    head = " ".join(f"{n:>{w}}" for n, w in zip(first.class_names, cols, strict=True))
    lines = [f"{'method':<{width}} {head} {'overall':>8}"]
    for name, rep in reports.items():
        cells = " ".join(f"{'-' if np.isnan(a) else f'{100 * a:.2f}':>{w}}"
                         for a, w in zip(rep.per_class.values(), cols, strict=True))
        lines.append(f"{name:<{width}} {cells} {100 * rep.accuracy:>8.2f}")
    return "\n".join(lines)
