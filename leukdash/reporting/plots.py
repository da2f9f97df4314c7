"""Figures and tables from run results, for the dashboard and for reports.

Every function takes plain results (the dicts of :func:`leukdash.engine.runner.load_result` or of
:meth:`leukdash.engine.store.RunStore.list_runs`) and returns a plotly ``Figure`` or a pandas
``DataFrame``, so they are tested without a browser and the pages only place them.
Accuracy-like metrics stay fractions in [0, 1]; the axes show them as percentages.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from leukdash.evaluation.compare import MODEL_NAMES, run_label
from leukdash.config import AugmentConfig
from leukdash.reporting.paper import (BINARY_TASK, FIVE_CLASS_TASK, PAPER_CLASSES, PAPER_CNN_FOLDS, PAPER_MODEL_NAMES,
                            PAPER_VAL_ACC)

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
TASK_COLOURS = {BINARY_TASK: "#7b2d8b", FIVE_CLASS_TASK: "#c9a3d4"}
PAPER_COLOUR = "#c0392b"
_LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=40, b=10), font=dict(size=13))


# --------------------------------------------------------------------------- naming


def task_name(classes) -> str:
    """'ALL vs HEALTHY', '5 classes' (the paper's two tasks), 'AML vs CML', '3 classes'..."""
    classes = list(classes)
    if len(classes) == 2:
        return " vs ".join(classes)
    if sorted(classes) == sorted(PAPER_CLASSES):
        return FIVE_CLASS_TASK
    return f"{len(classes)} classes"


def result_task(result: dict) -> str:
    """The dataset and task of a run, e.g. 'synthetic · 5 classes'."""
    return f"{result['dataset']['name']} · {task_name(result['dataset']['classes'])}"


def augmentation_text(config: dict) -> str:
    """'none' or 'x8, strict' from a run config."""
    augment = config.get("augment") or {}
    transforms = ("rotation", "width_shift", "height_shift", "zoom", "horizontal_flip", "vertical_flip", "shear")
    if config.get("augment_factor", 1) <= 1 or not any(augment.get(name) for name in transforms):
        return "none"
    return f"x{config['augment_factor']}, {config['protocol']}"


def run_labels(results: list[dict]) -> list[str]:
    """A distinct label per run: the model's name, plus whatever else tells the runs apart."""
    contexts = [{
        "dataset": r["dataset"]["name"], "task": task_name(r["dataset"]["classes"]),
        "size": f"{r['config']['image_size']} px", "augmentation": f"aug {augmentation_text(r['config'])}",
        "folds": f"{len(r['folds'])} folds", "seed": f"seed {r['config']['seed']}",
    } for r in results]
    varying = [key for key in (contexts[0] if contexts else {}) if len({c[key] for c in contexts}) > 1]
    labels = [" · ".join([run_label(r["config"])] + [c[key] for key in varying]) for r, c in zip(results, contexts)]
    if len(set(labels)) < len(labels):
        labels = [f"{label} [{r['run_id']}]" for label, r in zip(labels, results)]
    return labels


def paper_value(result: dict, metric: str = "val_acc") -> float | None:
    """The paper's reported figure for this run's model and task, if it reported one."""
    config = result["config"]
    task = task_name(result["dataset"]["classes"])
    if metric != "val_acc" or task not in PAPER_VAL_ACC:
        return None
    if config["model"] == "cnn" and config.get("architecture") != "paper":
        return None
    if config["model"] == "knn" and config.get("k") != 3:
        return None
    if config["model"] != "cnn" and config.get("feature_set", "pixels") != "pixels":
        return None  # the paper's classic models saw raw pixels: no figure beside engineered features
    return PAPER_VAL_ACC[task].get(config["model"])


# --------------------------------------------------------------------------- fold values


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


# --------------------------------------------------------------------------- figures


def metric_bars(results: list[dict], metric: str = "val_acc", error: str = "std", show_paper: bool = True) -> go.Figure:
    """One bar per run: the mean of ``metric`` over folds, error bars across folds, a dot per fold.

    Runs of different datasets or tasks are grouped under their task on a two-level x axis.
    With ``show_paper``, a diamond marks the paper's reported figure where it reported one.
    """
    groups = [result_task(r) for r in results]
    grouped = len(set(groups)) > 1
    labels = run_labels(results)
    if grouped:  # within a group, only what tells its own runs apart
        for group in set(groups):
            members = [i for i, g in enumerate(groups) if g == group]
            for i, label in zip(members, run_labels([results[i] for i in members])):
                labels[i] = label
    hover = _hover_format(metric)
    fig = go.Figure()
    paper = []
    for result, label, group in zip(results, labels, groups):
        values = fold_values(result, metric)
        below, above = error_bounds(values, error)

        def at(n: int, tick=_wrap(label), group=group):
            return [[group] * n, [tick] * n] if grouped else [tick] * n

        fig.add_bar(
            x=at(1), y=[float(np.mean(values))], name=label, showlegend=False, opacity=0.85,
            marker_color=MODEL_COLOURS.get(result["config"]["model"], "#555"),
            error_y=dict(type="data", symmetric=False, array=[above], arrayminus=[below], color="#333", thickness=1.5),
            hovertemplate=f"{label}<br>mean %{{y:{hover}}}<extra></extra>",
        )
        fig.add_scatter(
            x=at(len(values)), y=values, mode="markers", name="single folds", legendgroup="folds",
            showlegend=not any(t.name == "single folds" for t in fig.data),
            marker=dict(color="#222", size=7, opacity=0.75, line=dict(color="white", width=1)),
            customdata=[f["fold"] + 1 for f in result["folds"]],
            hovertemplate=f"fold %{{customdata}}: %{{y:{hover}}}<extra>{label}</extra>",
        )
        reported = paper_value(result, metric) if show_paper else None
        if reported is not None:
            paper.append((at(1), reported))
    for i, (x, reported) in enumerate(paper):
        fig.add_scatter(
            x=x, y=[reported], mode="markers", name="paper (reported)", legendgroup="paper", showlegend=i == 0,
            marker=dict(symbol="diamond-open", size=13, color=PAPER_COLOUR, line=dict(width=2.5)),
            hovertemplate="paper reported %{y:.1%}<extra></extra>",
        )
    fig.update_layout(**_LAYOUT, height=460, bargap=0.35, showlegend=True,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    fig.update_xaxes(tickangle=0, tickfont=dict(size=11), automargin=True)
    fig.update_yaxes(title=METRICS.get(metric, metric), **_metric_axis(metric))
    return fig


def _wrap(label: str, width: int = 22) -> str:
    """A tick label on several lines: one per ' · ' part, long parts broken at spaces."""
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
    return "<br>".join(lines)


def learning_curves(results: list[dict], metric: str = "acc", band: str = "std") -> go.Figure:
    """Per-epoch training (dashed) and validation (solid) curves: mean over folds and a band
    (±1 SD or min–max across folds). Runs without per-epoch history (classic models) are left out."""
    fig = go.Figure()
    with_history = [(r, label) for r, label in zip(results, run_labels(results)) if curve_runs([r])]
    for result, label in with_history:
        colour = MODEL_COLOURS.get(result["config"]["model"], "#555")
        for key, dash, part in ((metric, "dash", "training"), (f"val_{metric}", "solid", "validation")):
            curves = [fold["history"][key] for fold in result["folds"]]
            n = min(len(c) for c in curves)
            stacked = np.array([c[:n] for c in curves], dtype=float)
            epochs = np.arange(1, n + 1)
            mean = stacked.mean(axis=0)
            if band == "std":
                spread = stacked.std(axis=0, ddof=1) if len(stacked) > 1 else np.zeros(n)
                lower, upper = mean - spread, mean + spread
            else:
                lower, upper = stacked.min(axis=0), stacked.max(axis=0)
            name = f"{label}: {part}"
            fig.add_scatter(x=epochs, y=upper, mode="lines", line=dict(width=0), showlegend=False,
                            legendgroup=name, hoverinfo="skip")
            fig.add_scatter(x=epochs, y=lower, mode="lines", line=dict(width=0), fill="tonexty",
                            fillcolor=_rgba(colour, 0.15 if part == "validation" else 0.08), showlegend=False,
                            legendgroup=name, hoverinfo="skip")
            fig.add_scatter(x=epochs, y=mean, mode="lines+markers" if n < 30 else "lines", name=name,
                            legendgroup=name, line=dict(color=colour, dash=dash, width=2), marker=dict(size=5),
                            hovertemplate=f"epoch %{{x}}: %{{y:.3f}}<extra>{name}</extra>")
    title = "Accuracy" if metric == "acc" else "Loss (log loss)"
    fig.update_layout(**_LAYOUT, height=420, legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    fig.update_xaxes(title="Epoch", dtick=1 if len(fig.data) and max(len(t.x) for t in fig.data) <= 15 else None)
    axis = {"tickformat": ".0%", "range": [0, 1.02]} if metric == "acc" else {"rangemode": "tozero"}
    fig.update_yaxes(title=title, **axis)
    return fig


def curve_runs(results: list[dict]) -> list[dict]:
    """The runs whose folds all carry a per-epoch history (CNN runs)."""
    return [r for r in results if r["folds"] and all(isinstance(f.get("history"), dict) for f in r["folds"])]


def confusion_heatmap(result: dict, label: str | None = None, normalize: bool = True) -> go.Figure:
    """Confusion matrix summed over the validation folds; rows are true classes.

    With ``normalize`` the colour is the share of each true class (recall on the diagonal);
    the text shows the count and that share either way.
    """
    classes = list(result["dataset"]["classes"])
    counts = np.sum([np.asarray(fold["confusion"], dtype=int) for fold in result["folds"]], axis=0)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    text = [[f"{counts[i, j]}<br>{shares[i, j]:.0%}" for j in range(len(classes))] for i in range(len(classes))]
    fig = go.Figure(go.Heatmap(
        z=shares if normalize else counts, x=classes, y=classes, text=text, texttemplate="%{text}",
        colorscale="Purples", zmin=0, zmax=1 if normalize else None, showscale=False,
        hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>",
    ))
    title = _wrap(label or run_label(result["config"]), width=45)
    lines = title.count("<br>") + 1
    fig.update_layout(**{**_LAYOUT, "margin": dict(l=10, r=10, t=20 + 20 * lines, b=10)},
                      height=280 + 30 * len(classes) + 20 * lines, title=dict(text=title, font=dict(size=14)))
    fig.update_xaxes(title="Predicted class", side="bottom", type="category")
    fig.update_yaxes(title="True class", autorange="reversed", type="category")
    return fig


def class_counts_bar(counts: dict[str, int]) -> go.Figure:
    """Images per class."""
    fig = go.Figure(go.Bar(x=list(counts), y=list(counts.values()), text=list(counts.values()),
                           textposition="outside", marker_color=MODEL_COLOURS["cnn"], cliponaxis=False,
                           hovertemplate="%{x}: %{y} images<extra></extra>"))
    fig.update_layout(**_LAYOUT, height=320)
    fig.update_yaxes(title="Images", rangemode="tozero")
    fig.update_xaxes(type="category")
    return fig


def probability_bars(probabilities: dict[str, float], predicted: str | None = None) -> go.Figure:
    """Class probabilities of one image (mean over the fold models), the predicted class highlighted."""
    classes = list(probabilities)
    colours = [MODEL_COLOURS["cnn"] if c == predicted else "#c9c3cf" for c in classes]
    fig = go.Figure(go.Bar(x=list(probabilities.values()), y=classes, orientation="h", marker_color=colours,
                           text=[f"{p:.1%}" for p in probabilities.values()], textposition="outside",
                           cliponaxis=False, hovertemplate="%{y}: %{x:.1%}<extra></extra>"))
    fig.update_layout(**{**_LAYOUT, "margin": dict(l=10, r=40, t=10, b=10)}, height=60 + 36 * len(classes))
    fig.update_xaxes(title="Probability", range=[0, 1.0], tickformat=".0%")
    fig.update_yaxes(autorange="reversed", type="category")
    return fig


def paper_figures() -> go.Figure:
    """The paper's reported 5-fold mean validation accuracy of each classifier on both tasks;
    min–max whiskers over the CNN's reported folds."""
    fig = go.Figure()
    for task, values in PAPER_VAL_ACC.items():
        models = list(values)
        folds = PAPER_CNN_FOLDS[task]
        # Only the CNN's folds were reported: no whisker (None) for the others.
        above = [max(folds) - values["cnn"] if m == "cnn" else None for m in models]
        below = [values["cnn"] - min(folds) if m == "cnn" else None for m in models]
        fig.add_bar(x=[PAPER_MODEL_NAMES[m] for m in models], y=list(values.values()), name=task,
                    marker_color=TASK_COLOURS[task],
                    error_y=dict(type="data", symmetric=False, array=above, arrayminus=below, color="#333",
                                 thickness=1.2),
                    hovertemplate=f"{task}<br>%{{x}}: %{{y:.2%}}<extra></extra>")
    fig.update_layout(**_LAYOUT, height=380, barmode="group", bargap=0.25,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    # Names on two lines: in half a page, "Naive Bayes" and "Decision tree" overlap on one.
    names = list(PAPER_MODEL_NAMES.values())
    fig.update_xaxes(tickangle=0, tickvals=names, ticktext=[_wrap(name, width=8) for name in names])
    fig.update_yaxes(title="Validation accuracy (5-fold mean)", tickformat=".0%", range=[0, 1.05])
    return fig


# --------------------------------------------------------------------------- sweeps


def sweep_axes(configs: list[dict]) -> list[str]:
    """The settings that differ between run configs (their canonical forms), in config order;
    the architecture counts as part of the model."""
    from leukdash.config import RunConfig

    runs = [RunConfig.from_dict(config) for config in configs]
    # A canonical form leaves out raw preprocessing (so older run ids hold): put it back to compare.
    forms = [{"preprocess": run.preprocess, **run.canonical()} for run in runs]
    keys = dict.fromkeys(key for form in forms for key in form)
    # A setting some models lack (k of all but k-NN) is an axis only if it takes two values where it exists.
    axes = [key for key in keys if len({json.dumps(form[key], sort_keys=True) for form in forms if key in form}) > 1]
    return list(dict.fromkeys("model" if axis == "architecture" else axis for axis in axes))


def sweep_frame(results: list[dict], axes: list[str], metric: str = "val_acc") -> pd.DataFrame:
    """One row per run of a sweep: its value of each axis (as text), the mean and SD of
    ``metric`` over its folds, its fold values, label and run id."""
    rows = []
    for result, label in zip(results, run_labels(results)):
        values = fold_values(result, metric)
        rows.append({**{axis: setting_text(result["config"], axis) for axis in axes},
                     "Mean": float(np.mean(values)), "SD": error_bounds(values, "std")[0], "Folds": values,
                     "Run": label, "Run id": result["run_id"]})
    return pd.DataFrame(rows, columns=[*axes, "Mean", "SD", "Folds", "Run", "Run id"])


def setting_text(config: dict, axis: str) -> str:
    """A setting of a run as a short text: 'CNN paper' for the model, 'default' for no learning
    rate, '–' for a setting the model does not have (k of a CNN)."""
    if axis == "model":
        cnn = config["model"] == "cnn"
        return f"CNN {config.get('architecture', 'paper')}" if cnn else MODEL_NAMES[config["model"]]
    value = config.get(axis)
    if axis == "augment":
        on = [name.replace("_", " ") for name in AugmentConfig.TRANSFORMS if (value or {}).get(name)]
        paper = [name.replace("_", " ") for name in AugmentConfig().enabled()]
        return "none" if not on or config.get("augment_factor", 1) <= 1 else \
            "the paper's" if on == paper else ", ".join(on)
    irrelevant = (config["model"] == "cnn" and axis in ("feature_set", "k")) or (
        config["model"] != "cnn" and axis in ("architecture", "optimizer", "learning_rate", "epochs", "batch_size"))
    if irrelevant or (axis == "k" and config["model"] != "knn"):
        return "–"
    if value is None:
        return "default"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _ordered(values) -> list[str]:
    """Distinct setting texts, numbers in numeric order, '–' last."""
    def key(text):
        try:
            return (0, float(text), "")
        except ValueError:
            return (1 if text != "–" else 2, 0.0, text.lower())
    return sorted(set(values), key=key)


def sweep_parallel(frame: pd.DataFrame, axes: list[str], metric: str = "val_acc") -> go.Figure:
    """Parallel coordinates: one line per run through its settings, ending at its mean ``metric``
    (also its colour)."""
    dimensions = []
    for axis in axes:
        ticks = _ordered(frame[axis])
        codes = frame[axis].map({text: i for i, text in enumerate(ticks)})
        dimensions.append(dict(label=axis.replace("_", " "), values=codes, tickvals=list(range(len(ticks))),
                               ticktext=ticks, range=[-0.3, len(ticks) - 0.7] if len(ticks) > 1 else [-1, 1]))
    fraction = metric in FRACTION_METRICS
    dimensions.append(dict(label=f"mean {METRICS.get(metric, metric).lower()}", values=frame["Mean"],
                           range=[0, 1] if fraction else None, tickformat=".0%" if fraction else None))
    # Colours span the runs' own range, from a visible lilac: the differences are what matter.
    fig = go.Figure(go.Parcoords(
        dimensions=dimensions, labelangle=0, labelside="top",
        line=dict(color=frame["Mean"], colorscale=[[0, "#d4b8de"], [1, "#3d0a4f"]], showscale=True,
                  colorbar=dict(tickformat=".0%" if fraction else None, len=0.8)),
    ))
    fig.update_layout(**{**_LAYOUT, "margin": dict(l=110, r=60, t=60, b=20)}, height=420)
    return fig


def sweep_heatmap(frame: pd.DataFrame, x: str, y: str, metric: str = "val_acc") -> go.Figure:
    """Mean ``metric`` for each pair of values of two settings, over every fold of the runs that
    share them (other settings pooled), with the spread across those folds (SD) in each cell."""
    xs, ys = _ordered(frame[x]), _ordered(frame[y])
    mean = np.full((len(ys), len(xs)), np.nan)
    text = [["" for _ in xs] for _ in ys]
    for (xv, yv), cell in frame.groupby([x, y]):
        folds = [v for values in cell["Folds"] for v in values]
        i, j = ys.index(yv), xs.index(xv)
        mean[i, j] = float(np.mean(folds))
        spread = float(np.std(folds, ddof=1)) if len(folds) > 1 else 0.0
        fmt = (lambda v: f"{v:.1%}") if metric in FRACTION_METRICS else (lambda v: f"{v:.3f}")
        text[i][j] = f"{fmt(mean[i, j])}<br>± {fmt(spread)}<br>{len(cell)} run{'s' * (len(cell) != 1)}"
    fraction = metric in FRACTION_METRICS
    fig = go.Figure(go.Heatmap(
        z=mean, x=xs, y=ys, text=text, texttemplate="%{text}", colorscale="Purples",
        zmin=0 if fraction else None, zmax=1 if fraction else None, hoverongaps=False,
        colorbar=dict(tickformat=".0%" if fraction else None, title=dict(text="mean")),
        hovertemplate=f"{x} %{{x}}, {y} %{{y}}<br>%{{text}}<extra></extra>",
    ))
    fig.update_layout(**_LAYOUT, height=160 + 70 * len(ys))
    fig.update_xaxes(title=x.replace("_", " "), type="category")
    fig.update_yaxes(title=y.replace("_", " "), type="category")
    return fig


def seed_spread_frame(frame: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Runs that differ only in their seed, grouped: the spread of their means over seeds beside
    the mean spread over folds within a run."""
    others = [axis for axis in axes if axis != "seed"]
    rows = []
    for key, group in frame.groupby(others, sort=False) if others else [((), frame)]:
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(others, key)), "Seeds": len(group), "Mean": float(group["Mean"].mean()),
                     "SD over seeds": float(group["Mean"].std(ddof=1)) if len(group) > 1 else 0.0,
                     "SD over folds (mean)": float(group["SD"].mean())})
    return pd.DataFrame(rows)


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """An RGB uint8 image with a jet-coloured heatmap (H, W) in [0, 1] blended over it."""
    import cv2

    if heatmap.shape != image.shape[:2]:
        heatmap = cv2.resize(heatmap.astype(np.float32), (image.shape[1], image.shape[0]))
    coloured = cv2.applyColorMap(np.uint8(np.clip(heatmap, 0, 1) * 255), cv2.COLORMAP_JET)
    coloured = cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)
    return np.uint8(np.clip((1 - alpha) * image.astype(np.float32) + alpha * coloured, 0, 255))


# --------------------------------------------------------------------------- tables


def runs_frame(entries: list[dict]) -> pd.DataFrame:
    """One row per run of :meth:`RunStore.list_runs`, newest first, for a run table."""
    rows = []
    for entry in entries:
        meta, summary = entry.get("meta") or {}, entry.get("summary") or {}
        config, dataset = meta.get("config") or {}, meta.get("dataset") or {}
        acc = summary.get("val_acc") or {}
        try:
            model = run_label(config)
        except KeyError:
            model = config.get("model", "?")
        rows.append({
            "Model": model,
            "Dataset": dataset.get("name", "?"),
            "Task": task_name(dataset.get("classes") or []),
            "Size (px)": config.get("image_size"),
            "Augmentation": augmentation_text(config) if config else "?",
            "Folds": len(meta.get("fold_ids") or []),
            "Val. accuracy": acc.get("mean"),
            "SD": acc.get("std"),
            "Status": entry.get("status", "?"),
            "Created": _created_text(meta.get("created")),
            "Run id": entry["run_id"],
        })
    return pd.DataFrame(rows, columns=["Model", "Dataset", "Task", "Size (px)", "Augmentation", "Folds",
                                       "Val. accuracy", "SD", "Status", "Created", "Run id"])


def fold_frame(results: list[dict], labels: list[str] | None = None) -> pd.DataFrame:
    """One row per run and fold with every scalar metric."""
    labels = labels or run_labels(results)
    metrics = available_metrics(results)
    rows = []
    for result, label in zip(results, labels):
        for fold in result["folds"]:
            rows.append({"Run": label, "Fold": fold["fold"] + 1, "Train images": fold.get("n_train"),
                         "Validation images": fold.get("n_val"), **{m: fold[m] for m in metrics}})
    return pd.DataFrame(rows)


def summary_frame(results: list[dict], labels: list[str] | None = None, metric: str = "val_acc") -> pd.DataFrame:
    """Per run: mean, SD, min and max of ``metric`` over folds, and the paper's figure beside it."""
    labels = labels or run_labels(results)
    rows = []
    for result, label in zip(results, labels):
        values = fold_values(result, metric)
        rows.append({"Run": label, "Task": result_task(result), "Folds": len(values),
                     "Mean": float(np.mean(values)), "SD": error_bounds(values, "std")[0],
                     "Min": float(np.min(values)), "Max": float(np.max(values)),
                     "Paper (reported)": paper_value(result, metric)})
    return pd.DataFrame(rows)


def source_frame(results: list[dict], labels: list[str] | None = None) -> pd.DataFrame:
    """Per run on several datasets and per source: accuracy, balanced accuracy and each class's
    recall over the source's validation images, and the fold mean and range of its accuracy
    (empty when no run has several sources)."""
    labels = labels or run_labels(results)
    rows = []
    for result, label in zip(results, labels):
        for name, source in (result["summary"].get("per_source") or {}).items():
            pooled, acc = source["pooled"], source["val_acc"]
            rows.append({"Run": label, "Source": name, "Folds": source["folds"], "Images": source["n_val"],
                         "Val. accuracy": pooled["val_acc"], "Balanced acc.": pooled["balanced_acc"],
                         **{f"Recall {c}": r for c, r in pooled["per_class_recall"].items()},
                         "Fold mean": acc["mean"], "Fold min": acc["min"], "Fold max": acc["max"]})
    return pd.DataFrame(rows)


def paper_table() -> pd.DataFrame:
    """The paper's reported 5-fold mean validation accuracy: one row per classifier, one column per task."""
    return pd.DataFrame([{"Classifier": name, **{task: PAPER_VAL_ACC[task][model] for task in PAPER_VAL_ACC}}
                         for model, name in PAPER_MODEL_NAMES.items()])


def _created_text(created) -> str:
    if isinstance(created, (int, float)):
        return pd.Timestamp(created, unit="s").strftime("%Y-%m-%d %H:%M")
    if isinstance(created, str):
        return created[:16].replace("T", " ")
    return ""


def _metric_axis(metric: str) -> dict:
    if metric in FRACTION_METRICS:
        return {"tickformat": ".0%", "range": [0, 1.05]}
    return {"rangemode": "tozero"}


def _hover_format(metric: str) -> str:
    return ".1%" if metric in FRACTION_METRICS else ".3f"


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


# --------------------------------------------------------------------------- external tests

EXTERNAL_METRICS = {"balanced_accuracy": "Balanced accuracy", "accuracy": "Accuracy", "roc_auc": "ROC AUC"}
# The within-dataset (cross-validated) figure shown beside each external one.
_WITHIN = {"balanced_accuracy": "balanced_acc", "accuracy": "val_acc"}


def external_frame(results: list[dict], evaluations: list[dict], metric: str = "balanced_accuracy") -> pd.DataFrame:
    """One row per external test (``evaluations[i]`` of run ``results[i]``, see
    :func:`leukdash.evaluation.evaluate.evaluate`): the figure with its group-bootstrap interval, the run's
    own cross-validated figure, the share given each class, the collapse and OOD flags."""
    unique = list({r["run_id"]: r for r in results}.values())  # a run tested on several datasets
    label_of = dict(zip((r["run_id"] for r in unique), run_labels(unique)))
    rows = []
    for result, evaluation in zip(results, evaluations):
        label = label_of[result["run_id"]]
        within = result["summary"].get(_WITHIN.get(metric, ""), {}).get("mean")
        low, high = evaluation["intervals"].get(metric, [None, None])
        rows.append({
            "Run": label, "Trained on": result["dataset"]["name"], "Tested on": evaluation["dataset"]["name"],
            "Value": evaluation.get(metric), "Low": low, "High": high, "Within dataset": within,
            "Collapsed": evaluation["collapsed"], "OOD share": evaluation["ood_share"],
            "Predicted": ", ".join(f"{c} {s:.0%}" for c, s in evaluation["predicted_share"].items()),
            "Images": evaluation["n_images"], "Groups": evaluation["intervals"]["n_groups"],
            "Classes": len(evaluation["predicted_share"]),
            "Model": result["config"]["model"], "Run id": result["run_id"],
        })
    return pd.DataFrame(rows)


def external_bars(frame: pd.DataFrame, metric: str = "balanced_accuracy") -> go.Figure:
    """One bar per external test, grouped by the dataset tested on: the figure, whiskers for
    its 95% group-bootstrap interval, an open circle for the run's own cross-validated figure;
    a collapsed model (one class for >= 95% of the images) gets a hatched bar."""
    fig = go.Figure()
    for row in frame.to_dict("records"):
        x = [[row["Tested on"]], [_wrap(row["Run"])]]
        value = row["Value"] if row["Value"] is not None else float("nan")
        low, high = (value, value) if row["Low"] is None else (row["Low"], row["High"])
        fig.add_bar(
            x=x, y=[value], showlegend=False, opacity=0.85, marker_color=MODEL_COLOURS.get(row["Model"], "#555"),
            marker_pattern_shape="/" if row["Collapsed"] else "",
            error_y=dict(type="data", symmetric=False, array=[high - value], arrayminus=[value - low],
                         color="#333", thickness=1.5),
            text=["collapsed" if row["Collapsed"] else ""], textposition="inside",
            hovertemplate=f"{row['Run']} on {row['Tested on']}<br>%{{y:.1%}} (95% CI {low:.1%}-{high:.1%})"
                          f"<br>predicted: {row['Predicted']}<br>OOD flagged {row['OOD share']:.0%}<extra></extra>",
        )
        if row["Within dataset"] is not None and not pd.isna(row["Within dataset"]):
            name = "own cross-validation (mean)"
            fig.add_scatter(x=x, y=[row["Within dataset"]], mode="markers", name=name, legendgroup="within",
                            showlegend=not any(t.name == name for t in fig.data),
                            marker=dict(symbol="circle-open", size=12, color="#222", line=dict(width=2)),
                            hovertemplate="own cross-validation %{y:.1%}<extra></extra>")
    if metric != "accuracy" and len(frame):
        chance = 0.5 if metric == "roc_auc" else 1 / frame["Classes"].max()
        fig.add_hline(y=chance, line=dict(color="#999", dash="dot"), annotation_text="chance",
                      annotation_position="bottom right")
    fig.update_layout(**_LAYOUT, height=460, bargap=0.35, showlegend=True,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    fig.update_xaxes(tickangle=0, tickfont=dict(size=11), automargin=True)
    fig.update_yaxes(title=f"{EXTERNAL_METRICS.get(metric, metric)} on the external dataset", tickformat=".0%",
                     range=[0, 1.05])
    return fig
