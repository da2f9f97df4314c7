"""How the report writes numbers, tables and run names (shared by its sections)."""

from __future__ import annotations

from leukdash.evaluation.compare import run_label
from leukdash.intervals import metric_range, share_interval
from leukdash.metrics import has_std, no_ci_reason, summarize
from leukdash.reporting.matrix import Outcome

LEUKDASH_TARGET, CLASSIC_TARGET = 0.95, 0.90
TASK_NAMES = {"binary": "ALL vs HEALTHY", "five": "Five classes"}
SPREAD = "fold range (max - min)"
DASH = "–"


def pct(value: float | None) -> str:
    """A fraction as a percentage with two decimals, the paper's format ('88.25%')."""
    return DASH if value is None else f"{100 * value:.2f}%"


def loss_text(value: float | None) -> str:
    return DASH if value is None else f"{value:.4f}"


def interval(summary: dict, n_folds: int) -> str:
    """The t-interval of ``n_folds`` fold values, clipped to the possible range of an accuracy (0-100%); "n/a" where
    the command line says n/a too (:func:`~leukdash.metrics.no_ci_reason`: below 3 folds, or every fold the same)."""
    if no_ci_reason(summary, n_folds):
        return "n/a"
    low, high = share_interval(summary["ci95"])
    return f"{pct(low)} – {pct(high)}"


def deviation(summary: dict, n_folds: int) -> str:
    """The sample SD of ``n_folds`` fold values as a percentage; "n/a" where the command line says n/a too
    (:func:`~leukdash.metrics.has_std`: one fold, whose stored 0 is no spread measured)."""
    return pct(summary["std"]) if has_std(n_folds) else "n/a"


def fold_range(summary: dict) -> str:
    return f"{pct(summary['min'])} – {pct(summary['max'])}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fold_values(result: dict, metric: str = "val_acc") -> list[float]:
    return [float(fold[metric]) for fold in result["folds"]]


def fold_stats(result: dict, metric: str = "val_acc") -> dict:
    return summarize(fold_values(result, metric), bounds=metric_range(metric))


def label(outcome: Outcome) -> str:
    """'CNN paper (sgd, 25 ep) · strict', 'SVM on features'..."""
    name = run_label(outcome.result["config"] if outcome.result else outcome.experiment.config.to_dict())
    protocol = outcome.experiment.protocol
    return name if protocol == "n/a" else f"{name} · {protocol}"


def is_kfold(outcome: Outcome) -> bool:
    return outcome.experiment.config.test_fraction is None



def dataset_note(dataset: dict) -> str:
    return f"**{dataset['label']}**" if dataset.get("synthetic") else "real images"



def paper_val(outcome: Outcome) -> float | None:
    return outcome.experiment.paper.val_acc if outcome.experiment.paper else None
