"""Per-fold metrics, summaries over folds with a Student-t interval, and McNemar's exact test.

Every function returns plain JSON-serialisable values (floats, lists, dicts), so fold results
go straight into the run store.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from leukdash.intervals import SHARE, clipped_interval, metric_range, share_interval

# Probabilities are clipped away from 0 and 1 before the log loss, so one confident mistake
# gives a large but finite loss (the same epsilon Keras uses).
PROBA_EPS = 1e-7

SCALAR_METRICS = ("val_acc", "val_loss", "balanced_acc", "macro_f1")


def fold_metrics(y_true, proba, classes) -> dict:
    """Metrics of one validation fold.

    Parameters
    ----------
    y_true : array of int, shape (N,)
        True class indices into ``classes``.
    proba : array, shape (N, len(classes))
        Predicted class probabilities; the prediction is the arg-max.
    classes : sequence of str
        Class names, in index order.

    Returns
    -------
    dict
        ``val_acc``, ``val_loss`` (log loss), ``balanced_acc``, ``macro_f1``,
        ``per_class_recall`` ({class: recall}) and ``confusion`` (rows = true, columns = predicted).
        A class without an image in ``y_true`` has no recall (None: a 0 would be made up), and
        balanced accuracy and macro F1 average the classes present.
    """
    y_true = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=np.float64)
    labels = list(range(len(classes)))
    if proba.ndim != 2 or proba.shape != (len(y_true), len(classes)):
        raise ValueError(f"proba must have shape ({len(y_true)}, {len(classes)}), got {proba.shape}")
    y_pred = proba.argmax(axis=1)
    clipped = np.clip(proba, PROBA_EPS, 1 - PROBA_EPS)
    clipped /= clipped.sum(axis=1, keepdims=True)
    present = sorted(set(y_true.tolist()))
    recall = dict(zip(present, skm.recall_score(y_true, y_pred, labels=present, average=None)))
    with warnings.catch_warnings():
        # A class absent from y_true (an external set of one class): scikit-learn averages the
        # recall of the classes present, as documented, and warns about it on stderr.
        warnings.simplefilter("ignore", UserWarning)
        balanced = float(skm.balanced_accuracy_score(y_true, y_pred))
    return {
        "val_acc": float(skm.accuracy_score(y_true, y_pred)),
        "val_loss": float(skm.log_loss(y_true, clipped, labels=labels)),
        "balanced_acc": balanced,
        "macro_f1": float(skm.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "per_class_recall": {str(c): float(recall[i]) if i in recall else None for i, c in enumerate(classes)},
        "confusion": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def source_metrics(y_true, proba, classes, sources, groups) -> dict:
    """Validation metrics of each source dataset of a fold of a run on several datasets.

    Per source: ``n_val``, ``val_acc``, ``balanced_acc`` and ``per_class_recall`` over the
    classes that source has in the fold (a recall of an absent class would be a made-up 0),
    and ``per_group_recall`` / ``per_group_n``: the share of each group's images (a subject,
    an ALL-IDB image) classified correctly, groups named without the source prefix.
    """
    y_true = np.asarray(y_true, dtype=int)
    correct = np.asarray(proba).argmax(axis=1) == y_true
    sources, groups = np.asarray(sources, dtype=str), np.asarray(groups, dtype=str)
    result = {}
    for name in sorted(set(sources)):
        mask = sources == name
        present = sorted(set(y_true[mask]))
        recall = {str(classes[c]): float(correct[mask & (y_true == c)].mean()) for c in present}
        group_names, group_images = group_members([g.removeprefix(f"{name}/") for g in groups[mask]])
        group_correct = correct[mask]
        result[name] = {
            "n_val": int(mask.sum()),
            "val_acc": float(correct[mask].mean()),
            "balanced_acc": float(np.mean(list(recall.values()))),
            "per_class_recall": recall,
            "per_class_n": {str(classes[c]): int(np.sum(mask & (y_true == c))) for c in present},
            "per_group_recall": {g: float(group_correct[i].mean()) for g, i in zip(group_names, group_images)},
            "per_group_n": {g: len(i) for g, i in zip(group_names, group_images)},
        }
    return result


def group_members(groups) -> tuple[list, list[np.ndarray]]:
    """The group names, sorted as text, and the indices of each group's images in rising order:
    one pass over the images, not one per group (a folder without subjects has a group per image)."""
    groups = np.asarray(groups).tolist()
    names = sorted(set(groups), key=str)
    position = {name: i for i, name in enumerate(names)}
    codes = np.fromiter((position[group] for group in groups), dtype=np.intp, count=len(groups))
    by_group = np.argsort(codes, kind="stable")
    return names, np.split(by_group, np.cumsum(np.bincount(codes, minlength=len(names)))[:-1])


def summarize_sources(fold_results) -> dict:
    """Per source over the folds that validated it: fold means of its metrics, and the same
    figures pooled over its images (``pooled``: folds of a source can differ much in size).

    Each group's recall pools its images over folds (a group lies in one fold, so this is that
    fold's figure); ``folds`` counts the folds the source appeared in.
    """
    per_source: dict[str, list[dict]] = {}
    for fold in fold_results:
        for name, metrics in fold["per_source"].items():
            per_source.setdefault(name, []).append(metrics)
    summary = {}
    for name, folds in sorted(per_source.items()):
        classes = list(dict.fromkeys(c for f in folds for c in f["per_class_recall"]))
        by_class = _pooled(folds, "per_class_recall", "per_class_n")
        by_group = dict(sorted(_pooled(folds, "per_group_recall", "per_group_n").items()))
        n_val = sum(f["n_val"] for f in folds)
        summary[name] = {
            "folds": len(folds),
            "n_val": int(n_val),
            "val_acc": summarize([f["val_acc"] for f in folds], bounds=SHARE),
            "balanced_acc": summarize([f["balanced_acc"] for f in folds], bounds=SHARE),
            "per_class_recall": {c: summarize([f["per_class_recall"][c] for f in folds if c in f["per_class_recall"]],
                                              bounds=SHARE) for c in classes},
            "per_group_recall": by_group,
            "pooled": {"val_acc": sum(f["val_acc"] * f["n_val"] for f in folds) / n_val,
                       "balanced_acc": float(np.mean(list(by_class.values()))), "per_class_recall": by_class},
        }
    return summary


def _pooled(folds, recall_key: str, count_key: str) -> dict:
    """Recall of each key (class or group) over the images of all folds."""
    correct, seen = {}, {}
    for f in folds:
        for key, recall in f[recall_key].items():
            n = f[count_key][key]
            correct[key] = correct.get(key, 0.0) + recall * n
            seen[key] = seen.get(key, 0) + n
    return {key: correct[key] / seen[key] for key in correct}


def has_std(n_folds: int) -> bool:
    """Whether a summary of ``n_folds`` fold values has a standard deviation worth showing: not one fold's, where
    :func:`summarize` stores 0 (there is no spread to estimate). The one rule of every interface's SD."""
    return n_folds >= 2


def std_text(acc: dict, n_folds: int) -> str:
    """A fold summary's standard deviation as the command line shows it: ``n/a`` where it has none (:func:`has_std`)."""
    return f"{acc['std']:.4f}" if has_std(n_folds) else "n/a"


def fold_std(values) -> float | None:
    """The sample standard deviation (ddof=1) of fold values, None for one value: there is no spread to estimate,
    and a 0 would read as a measured one (:func:`has_std`; what :func:`std_text` shows as n/a)."""
    values = np.asarray(list(values), dtype=np.float64)
    return float(values.std(ddof=1)) if has_std(values.size) else None


def no_ci_reason(acc: dict, n_folds: int) -> str | None:
    """Why a fold summary has no 95% t interval worth showing; None where it has one. The one rule of every
    interface (:func:`ci_text`, :func:`shown_summary`, the report's CI cells).

    Below 3 folds there is no interval worth the name: one fold has no spread, and a t interval on the one degree
    of freedom of two spans about the whole range (t = 12.7). Where every fold scored the same, :func:`summarize`
    stores an interval of zero width, which would read as a certainty that a few folds cannot give.
    """
    if n_folds < 3:
        return f"{n_folds} fold{'s are' if n_folds > 1 else ' is'} too few for one"
    if acc["max"] == acc["min"]:
        return f"every fold scored {acc['min']:.4f}, and a zero-width interval would read as a certainty"
    return None


def ci_text(acc: dict, n_folds: int) -> str:
    """A fold summary's 95% t interval as the command line shows it, clipped to 0-1 (it is of an accuracy); n/a and
    why where :func:`no_ci_reason` gives a reason."""
    reason = no_ci_reason(acc, n_folds)
    if reason is not None:
        return f"95% CI n/a: {reason}"
    low, high = share_interval(acc["ci95"])
    return f"95% CI {low:.4f}-{high:.4f}"


def shown_summary(summary: dict, n_folds: int) -> dict:
    """A run's stored fold summary as ``--json`` gives it: each metric's ``std`` None where :func:`std_text` says
    n/a (one fold), its ``ci95`` None where :func:`ci_text` does (below 3 folds, or every fold the same), so the
    JSON and the text say one thing. The stored summary is left as it is; ``per_source`` too (its own folds)."""
    def shown(figures: dict) -> dict:
        if not isinstance(figures, dict) or "ci95" not in figures:
            return figures
        return {**figures, "std": figures["std"] if has_std(n_folds) else None,
                "ci95": None if no_ci_reason(figures, n_folds) else figures["ci95"]}

    return {name: figures if name == "per_source" else shown(figures) for name, figures in summary.items()}


def summarize(values, *, bounds: tuple[float, float]) -> dict:
    """Mean, sample standard deviation, range and 95% Student-t interval of fold values, the
    interval clipped to ``bounds``, the values the metric can take (see :func:`~leukdash.intervals.metric_range`).
    ``bounds`` has no default: one forgotten would leave the interval unclipped (beyond 1 for a share) unseen.

    With one value the standard deviation is 0 and the interval collapses to the value itself
    (there is no spread to estimate an interval from); so does the interval of values all equal. What is shown of
    them says n/a (:func:`std_text`, :func:`ci_text`).
    """
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        raise ValueError("summarize needs at least one value")
    mean = float(x.mean())
    if x.size == 1:
        return {"mean": mean, "std": 0.0, "min": mean, "max": mean, "ci95": [mean, mean]}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, df=x.size - 1)) * std / math.sqrt(x.size)
    return {
        "mean": mean,
        "std": std,
        "min": float(x.min()),
        "max": float(x.max()),
        "ci95": clipped_interval([mean - half, mean + half], bounds),
    }


def summarize_folds(fold_results) -> dict:
    """:func:`summarize` of every scalar metric the fold results share (and, for a run on
    several datasets, :func:`summarize_sources` under ``per_source``).

    Besides :data:`SCALAR_METRICS`, any other float-valued key present in every fold (say
    ``train_acc`` or ``seconds``) is summarised too; integers (fold index, counts), dicts and
    lists (recall, confusion) are not.
    """
    fold_results = list(fold_results)
    if not fold_results:
        raise ValueError("summarize_folds needs at least one fold result")
    keys = [k for k, v in fold_results[0].items() if _is_scalar(v)]
    shared = [k for k in keys if all(_is_scalar(r.get(k)) for r in fold_results)]
    summary = {k: summarize([r[k] for r in fold_results], bounds=metric_range(k)) for k in shared}
    if all("per_source" in r for r in fold_results):
        summary["per_source"] = summarize_sources(fold_results)
    return summary


def _is_scalar(value) -> bool:
    return isinstance(value, (float, np.floating))


def mcnemar(correct_a, correct_b) -> dict:
    """McNemar's exact test of two classifiers on the same images.

    ``b`` counts images only A got right, ``c`` those only B got right; under the null both are
    equally likely, so the two-sided p-value is the binomial test of ``b`` in ``b + c`` trials
    at 0.5 (1.0 when the classifiers never disagree).
    """
    a = np.asarray(correct_a, dtype=bool)
    b_arr = np.asarray(correct_b, dtype=bool)
    if a.shape != b_arr.shape:
        raise ValueError(f"correct_a and correct_b must have the same shape, got {a.shape} and {b_arr.shape}")
    b = int(np.sum(a & ~b_arr))
    c = int(np.sum(~a & b_arr))
    p = 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return {"b": b, "c": c, "p_value": p}


def holm(p_values) -> list[float]:
    """Holm's step-down adjustment of several p-values (one family of tests): each adjusted
    p-value can be read against 0.05 with the family's chance of any false "differs" kept at
    0.05. The i-th smallest p is multiplied by ``m - i`` (i from 0), made non-decreasing, capped at 1."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, p[order] * (len(p) - np.arange(len(p))))
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()
