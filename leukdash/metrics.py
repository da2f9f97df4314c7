"""Per-fold metrics, summaries over folds with a Student-t interval, and McNemar's exact test.

Every function returns plain JSON-serialisable values (floats, lists, dicts), so fold results
go straight into the run store.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from sklearn import metrics as skm

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
    """
    y_true = np.asarray(y_true, dtype=int)
    proba = np.asarray(proba, dtype=np.float64)
    labels = list(range(len(classes)))
    if proba.ndim != 2 or proba.shape != (len(y_true), len(classes)):
        raise ValueError(f"proba must have shape ({len(y_true)}, {len(classes)}), got {proba.shape}")
    y_pred = proba.argmax(axis=1)
    clipped = np.clip(proba, PROBA_EPS, 1 - PROBA_EPS)
    clipped /= clipped.sum(axis=1, keepdims=True)
    recall = skm.recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "val_acc": float(skm.accuracy_score(y_true, y_pred)),
        "val_loss": float(skm.log_loss(y_true, clipped, labels=labels)),
        "balanced_acc": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class_recall": {str(c): float(r) for c, r in zip(classes, recall)},
        "confusion": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def summarize(values) -> dict:
    """Mean, sample standard deviation, range and 95% Student-t interval of fold values.

    With one value the standard deviation is 0 and the interval collapses to the value itself
    (there is no spread to estimate an interval from).
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
        "ci95": [mean - half, mean + half],
    }


def summarize_folds(fold_results) -> dict:
    """:func:`summarize` of every scalar metric the fold results share.

    Besides :data:`SCALAR_METRICS`, any other float-valued key present in every fold (say
    ``train_acc`` or ``seconds``) is summarised too; integers (fold index, counts), dicts and
    lists (recall, confusion) are not.
    """
    fold_results = list(fold_results)
    if not fold_results:
        raise ValueError("summarize_folds needs at least one fold result")
    keys = [k for k, v in fold_results[0].items() if _is_scalar(v)]
    shared = [k for k in keys if all(_is_scalar(r.get(k)) for r in fold_results)]
    return {k: summarize([r[k] for r in fold_results]) for k in shared}


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
