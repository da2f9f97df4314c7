"""What every figure shares: metric names, colours, the layout, fold values and error bars."""

from __future__ import annotations

import html
from functools import cache

import numpy as np
import pandas as pd

from leukdash.config import RunConfig, setting_form
from leukdash.errors import ConfigError
from leukdash.evaluation.labels import task_name
from leukdash.reporting.matrix import experiments
from leukdash.reporting.paper import PAPER_CNN_EXPERIMENTS, PAPER_TABLE2, PAPER_VAL_ACC

METRICS = {
    "val_acc": "Validation accuracy",
    "balanced_acc": "Balanced accuracy",
    "macro_f1": "Macro F1",
    "val_loss": "Validation loss (log loss)",
    "train_acc": "Training accuracy",
    "train_loss": "Training loss (log loss)",
    "seconds": "Time per fold (s)",
}


FRACTION_METRICS = ("val_acc", "balanced_acc", "macro_f1", "train_acc")


ERROR_BARS = {"std": "±1 SD across folds", "minmax": "min–max across folds"}


MODEL_COLOURS = {"cnn": "#7b2d8b", "nb": "#2f6db5", "svm": "#3a9a5b", "knn": "#e07b1f", "dt": "#8c5a3c"}


PAPER_COLOUR = "#c0392b"


LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=40, b=10), font=dict(size=13))


def result_task(result: dict) -> str:
    """The dataset and task of a run, e.g. 'synthetic · 5 classes'."""
    return f"{result['dataset']['name']} · {task_name(result['dataset']['classes'])}"


def paper_value(result: dict, metric: str = "val_acc") -> float | None:
    """The paper's reported figure for this run's model and task, if it reported one: only beside
    a run measured as the paper measured, the mean of 5-fold cross-validation (not beside a
    holdout split, a leave-one-dataset-out run or another number of folds). The folds counted are
    those validated: a grouped dataset can allow fewer folds than the run asked for. Beside a CNN,
    the figure of the paper's experiment trained as the run was (:func:`paper_cnn_experiment`)."""
    config = result["config"]
    task = task_name(result["dataset"]["classes"])
    if metric != "val_acc" or task not in PAPER_VAL_ACC:
        return None
    if config.get("test_fraction") is not None or config.get("protocol") == "lodo" or len(result["folds"]) != 5:
        return None
    if config["model"] == "cnn":
        experiment = paper_cnn_experiment(task, config)
        return None if experiment is None else PAPER_TABLE2[experiment][1]
    if config["model"] == "knn" and config.get("k") != 3:
        return None
    if config["model"] != "cnn" and config.get("feature_set", "pixels") != "pixels":
        return None  # the paper's classic models saw raw pixels: no figure beside engineered features
    return PAPER_VAL_ACC[task].get(config["model"])


# What the paper fixed in training its CNN besides the optimizer and epochs that tell its experiments apart
# (PAPER.md): batches of 32, x8 copies by its seven transforms at its magnitudes (Exp 1 against Exp 2: 81% against
# 88%), Keras' default learning rate, the raw images. Not the input size, which the paper does not state.
PAPER_CNN_TRAINING = ("batch_size", "augment", "augment_factor", "learning_rate", "preprocess")


def paper_cnn_experiment(task: str, config: dict) -> str | None:
    """The experiment of the paper's Table 2 ('2', '3a', '3b', '3c') whose CNN was trained as this
    run's was: the paper's architecture, optimizer and epochs, and its training otherwise
    (:data:`PAPER_CNN_TRAINING`, as the report's matrix runs that experiment). None where the paper
    reported no such run (e.g. 15 epochs, Adam on ALL vs HEALTHY, no augmentation, another learning
    rate or cell-level preprocessing): its figures belong to its own settings, 100 epochs or Adam
    cost it 15-18 points and augmentation gained it 7, so another setting's figure would mislead."""
    if config.get("architecture") != "paper":
        return None
    experiment = PAPER_CNN_EXPERIMENTS.get((task, config.get("optimizer"), config.get("epochs")))
    if experiment is None:
        return None
    try:
        trained = setting_form(RunConfig.from_dict(config))
    except ConfigError:  # a stored run's settings this version cannot read (another version's): trained otherwise
        return None
    paper = _paper_cnn_training(experiment)
    return experiment if all(trained.get(key) == paper[key] for key in PAPER_CNN_TRAINING) else None


@cache
def _paper_cnn_training(experiment: str) -> dict:
    """The :data:`PAPER_CNN_TRAINING` settings of the paper's CNN in ``experiment``, from the report's
    matrix (its full settings), the one place that encodes how the paper trained."""
    config = next(e.config for e in experiments() if e.exp == experiment and e.config.architecture == "paper")
    form = setting_form(config)
    return {key: form.get(key) for key in PAPER_CNN_TRAINING}


def validated_over(results: list[dict]) -> str:
    """What each run's bar is the mean of, counted from the runs' own folds: 'the mean over 5 folds',
    'the mean over 2 or 5 folds', or 'the one fold of a holdout split' where every run is a holdout."""
    counts = sorted({len(result["folds"]) for result in results})
    if counts == [1]:
        return "the one fold of a holdout split"
    return f"the mean over {' or '.join(map(str, counts))} folds"


def fold_values(result: dict, metric: str) -> list[float]:
    """The metric of every fold, in fold order."""
    return [float(fold[metric]) for fold in result["folds"]]


def available_metrics(results: list[dict]) -> list[str]:
    """The scalar metrics every fold of every run has, in :data:`METRICS` order."""
    folds = [fold for result in results for fold in result["folds"]]
    return [m for m in METRICS if folds and all(isinstance(fold.get(m), (int, float)) for fold in folds)]


def error_bounds(values, kind: str = "std") -> tuple[float, float]:
    """Distances (below, above) from the mean: the sample SD (ddof=1, 0 for one value) or the range."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if kind == "std":
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        return std, std
    if kind == "minmax":
        return mean - float(values.min()), float(values.max()) - mean
    raise ValueError(f"error bars must be one of {', '.join(ERROR_BARS)}, got {kind!r}")


def shown_in_chart(name) -> str:
    """``name`` (of a class, dataset, run, file or test set: text a user or dataset controls) as a chart shows it
    exactly as written. Plotly renders a subset of HTML in chart texts (links, bold, line breaks) and decodes
    entities, so an unescaped name could put a link or markup in a chart; an escaped one shows as it is."""
    return html.escape(str(name), quote=False)


def wrap(label: str, width: int = 22) -> str:
    """A tick label on several lines: one per ' · ' part, long parts broken at spaces. Each line is escaped
    (:func:`shown_in_chart`) after the breaks are counted and before they are joined, so the ``<br>``
    still breaks the line and the label shows as written."""
    lines = []
    for part in label.split(" · "):
        line = ""
        for word in part.split(" "):
            if line and len(line) + 1 + len(word) > width:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}".strip()
        lines.append(line)
    return "<br>".join(map(shown_in_chart, lines))


def metric_axis(metric: str) -> dict:
    if metric in FRACTION_METRICS:
        return {"tickformat": ".0%", "range": [0, 1.05]}
    return {"rangemode": "tozero"}


def hover_format(metric: str) -> str:
    return ".1%" if metric in FRACTION_METRICS else ".3f"


def rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def created_text(created) -> str:
    """When a run was created, in UTC (the table's column says so): seconds since the epoch, or an ISO
    text whose offset, if any, is turned into UTC; '' where the store has no date."""
    if isinstance(created, (int, float)):
        return pd.Timestamp(created, unit="s").strftime("%Y-%m-%d %H:%M")
    if isinstance(created, str):
        try:
            stamp = pd.Timestamp(created)
        except ValueError:  # not a date: shown as stored
            return created[:16].replace("T", " ")
        return (stamp if stamp.tz is None else stamp.tz_convert("UTC")).strftime("%Y-%m-%d %H:%M")
    return ""
