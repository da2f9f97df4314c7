"""The ranges fold metrics can take and 95% intervals clipped to them. Apart from
:mod:`leukdash.metrics` (which imports scipy and scikit-learn) so that the store reads its
summaries through :func:`clipped_summary` without those imports: `runs` stays quick."""

from __future__ import annotations

import math

SHARE = (0.0, 1.0)
UNBOUNDED = (-math.inf, math.inf)
# The summarised metrics that are shares, 0-1; a recall's classes (or groups) keep its range.
SHARE_METRICS = frozenset({"val_acc", "balanced_acc", "macro_f1", "train_acc", "auc", "per_class_recall",
                           "per_group_recall"})


def metric_range(name: str) -> tuple[float, float]:
    """The values a summarised fold metric can take: a share (:data:`SHARE_METRICS`) 0-1, losses and
    seconds at least 0; any other metric is not clipped, its range being unknown."""
    if name in SHARE_METRICS:
        return SHARE
    return (0.0, math.inf) if name.endswith("loss") or name == "seconds" else UNBOUNDED


def share_interval(ci) -> tuple[float, float]:
    """A 95% interval of a share (an accuracy, a recall) clipped to 0-1 (see :func:`clipped_interval`)."""
    low, high = clipped_interval(ci, SHARE)
    return low, high


def clipped_interval(ci, bounds: tuple[float, float]) -> list[float]:
    """A t interval clipped to the range its metric can take (``bounds``), which a t interval on
    values near a bound can leave: the interval is stored, shown and exported as clipped."""
    return [min(max(float(ci[0]), bounds[0]), bounds[1]), min(max(float(ci[1]), bounds[0]), bounds[1])]


def clipped_summary(summary: dict, metric: str = "") -> dict:
    """A stored run summary (:func:`~leukdash.metrics.summarize_folds`) with every interval clipped to its metric's
    range: summaries stored before :func:`~leukdash.metrics.summarize` clipped are read through this."""
    if "ci95" in summary:
        return {**summary, "ci95": clipped_interval(summary["ci95"], metric_range(metric))}
    # The keys under a recall are class names, not metrics: they keep the recall's range.
    return {key: clipped_summary(value, metric if metric.endswith("recall") else key) if isinstance(value, dict)
            else value for key, value in summary.items()}
