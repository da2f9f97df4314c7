"""Compare and Experiments: finished runs side by side (bars per run, learning curves, confusion
matrices) and their tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from leukdash import arguments
from leukdash.evaluation.compare import out_of_fold_roc
from leukdash.evaluation.labels import FACETS, facet_texts, model_name, run_labels, varying_facets
from leukdash.metrics import fold_std, shown_summary
from leukdash.reporting.plots.common import (ERROR_BARS, LAYOUT, METRICS, MODEL_COLOURS, PAPER_COLOUR,
                                             available_metrics, created_text, error_bounds, fold_values, hover_format,
                                             metric_axis, paper_value, rgba, shown_in_chart, wrap)


def run_labels_of(results: list[dict], labels: list[str] | None) -> list[str]:
    """``labels`` if there is one per run, :func:`run_labels` if none are given; a label short or
    over would leave runs out of a chart or table without a word."""
    labels = [] if labels is None else arguments.listed(labels, "labels", "labels")  # an array has no truth value
    if not labels:
        return run_labels(results)
    if len(labels) != len(results):
        raise ValueError(f"labels: {len(results)} result{'s' * (len(results) != 1)}, {len(labels)} "
                         f"label{'s' * (len(labels) != 1)}: give one label per result, or none")
    return labels


# Line charts of several runs: the height of their plot area in pixels, the room under it for the x axis' ticks and
# title, and the height of a line of the legend (one entry a line, under the axis).
CURVES_PLOT, AXIS_ROOM, LEGEND_ROW = 340, 60, 22
# One colour per run where runs share a model (dark enough for lines on white).
RUN_COLOURS = qualitative.Dark24


def _run_colours(results: list[dict]) -> list[str]:
    """Each run's line colour: its model's colour of the other charts while no two runs share a model, else one
    colour per run (a dozen CNN runs in the CNN's colour could not be told apart)."""
    models = [result["config"]["model"] for result in results]
    if len(set(models)) == len(models):
        return [MODEL_COLOURS.get(model, "#555") for model in models]
    return [RUN_COLOURS[i % len(RUN_COLOURS)] for i in range(len(results))]


def _legend_below(fig: go.Figure) -> go.Figure:
    """Put the legend of ``fig`` under its x axis, one entry a line, and grow the figure by the room it takes: a
    legend over or under a chart of fixed height took its room from the plot area (132 px left of 420 for a few
    runs), and covered the axis."""
    rows = sum(trace.showlegend is not False and bool(trace.name) for trace in fig.data)
    bottom = AXIS_ROOM + LEGEND_ROW * (rows + 1)  # a line more for the legend's padding
    return fig.update_layout(height=LAYOUT["margin"]["t"] + CURVES_PLOT + bottom, margin=dict(b=bottom),
                             legend=dict(orientation="v", yanchor="top", y=-AXIS_ROOM / CURVES_PLOT, x=0,
                                         tracegroupgap=0))  # each line of the learning curves is a group


def metric_bars(results: list[dict], metric: str = "val_acc", error: str = "std", show_paper: bool = True,
                labels: list[str] | None = None) -> go.Figure:
    """One horizontal bar per run: the mean of ``metric`` over folds, error bars across folds, a
    dot per fold; each run named on its own line by :func:`run_labels` (a phone-wide chart keeps
    its names apart). With ``show_paper``, a diamond marks the paper's reported figure where it
    reported one.
    """
    results = arguments.results(results)
    arguments.known(metric, available_metrics(results) or list(METRICS), "metric")
    labels = run_labels_of(results, labels)
    ticks = [wrap(label, width=24) for label in labels]
    hover = hover_format(metric)
    fig = go.Figure()
    paper = []
    for result, label, tick in zip(results, labels, ticks):
        label = shown_in_chart(label)
        values = fold_values(result, metric)
        below, above = error_bounds(values, error)
        fig.add_bar(
            y=[tick], x=[float(np.mean(values))], orientation="h", name=label, showlegend=False, opacity=0.85,
            marker_color=MODEL_COLOURS.get(result["config"]["model"], "#555"),
            error_x=dict(type="data", symmetric=False, array=[above], arrayminus=[below], color="#333", thickness=1.5),
            hovertemplate=f"{label}<br>mean %{{x:{hover}}}<extra></extra>",
        )
        fig.add_scatter(
            y=[tick] * len(values), x=values, mode="markers", name="single folds", legendgroup="folds",
            showlegend=not any(t.name == "single folds" for t in fig.data),
            marker=dict(color="#222", size=7, opacity=0.75, line=dict(color="white", width=1)),
            customdata=[f["fold"] + 1 for f in result["folds"]],
            hovertemplate=f"fold %{{customdata}}: %{{x:{hover}}}<extra>{label}</extra>",
        )
        reported = paper_value(result, metric) if show_paper else None
        if reported is not None:
            paper.append((tick, reported))
    for i, (tick, reported) in enumerate(paper):
        fig.add_scatter(
            y=[tick], x=[reported], mode="markers", name="paper (reported)", legendgroup="paper", showlegend=i == 0,
            marker=dict(symbol="diamond-open", size=13, color=PAPER_COLOUR, line=dict(width=2.5)),
            hovertemplate="paper reported %{x:.1%}<extra></extra>",
        )
    # Each run gets a band tall enough for its wrapped name, so names never run into each other.
    band = max(44, 16 * max((tick.count("<br>") + 1 for tick in ticks), default=1) + 14)
    fig.update_layout(**LAYOUT, height=120 + band * len(results), bargap=0.3, showlegend=True,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    fig.update_yaxes(type="category", autorange="reversed", tickfont=dict(size=11), automargin=True)
    fig.update_xaxes(title=METRICS.get(metric, metric), **metric_axis(metric))
    return fig


def learning_curves(results: list[dict], metric: str = "acc", band: str = "std") -> go.Figure:
    """Per-epoch training (dashed) and validation (solid) curves: mean over folds and a band
    (±1 SD or min–max across folds), each run in its colour (:func:`_run_colours`). Runs without per-epoch history
    (classic models) are left out."""
    results = arguments.results(results)
    arguments.known(metric, ("acc", "loss"), "metric")
    arguments.known(band, tuple(ERROR_BARS), "band")
    fig = go.Figure()
    with_history = [(r, label) for r, label in zip(results, run_labels(results)) if curve_runs([r])]
    for (result, label), colour in zip(with_history, _run_colours([result for result, _ in with_history])):
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
            name = f"{shown_in_chart(label)}: {part}"
            fig.add_scatter(x=epochs, y=upper, mode="lines", line=dict(width=0), showlegend=False,
                            legendgroup=name, hoverinfo="skip")
            fig.add_scatter(x=epochs, y=lower, mode="lines", line=dict(width=0), fill="tonexty",
                            fillcolor=rgba(colour, 0.15 if part == "validation" else 0.08), showlegend=False,
                            legendgroup=name, hoverinfo="skip")
            fig.add_scatter(x=epochs, y=mean, mode="lines+markers" if n < 30 else "lines", name=name,
                            legendgroup=name, line=dict(color=colour, dash=dash, width=2), marker=dict(size=5),
                            hovertemplate=f"epoch %{{x}}: %{{y:.3f}}<extra>{name}</extra>")
    title = "Accuracy" if metric == "acc" else "Loss (log loss)"
    _legend_below(fig.update_layout(**LAYOUT))
    fig.update_xaxes(title="Epoch", dtick=1 if len(fig.data) and max(len(t.x) for t in fig.data) <= 15 else None)
    axis = {"tickformat": ".0%", "range": [0, 1.02]} if metric == "acc" else {"rangemode": "tozero"}
    fig.update_yaxes(title=title, **axis)
    return fig


def roc_curves(results: list[dict], labels: list[str] | None = None) -> go.Figure:
    """One ROC curve per run (:func:`leukdash.evaluation.compare.out_of_fold_roc`), its AUC in the
    legend, the chance diagonal dotted; each run in its colour (:func:`_run_colours`), dashed past the colours."""
    results = arguments.results(results)
    labels = run_labels_of(results, labels)
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#999", dash="dot", width=1), name="chance",
                    hoverinfo="skip")
    for i, (result, label, colour) in enumerate(zip(results, labels, _run_colours(results))):
        points = out_of_fold_roc(result)
        if points["auc"] is None:
            continue
        name = f"{shown_in_chart(label)} · AUC {points['auc']:.3f}"
        fig.add_scatter(x=points["fpr"], y=points["tpr"], mode="lines", name=name,
                        line=dict(width=2, color=colour, dash=("solid", "dash")[i // len(RUN_COLOURS) % 2]),
                        hovertemplate=f"false positives %{{x:.1%}}, true positives %{{y:.1%}}"
                                      f"<extra>{shown_in_chart(points['kind'])}</extra>")
    _legend_below(fig.update_layout(**LAYOUT))
    fig.update_xaxes(title="False positive rate", tickformat=".0%", range=[0, 1], constrain="domain")
    fig.update_yaxes(title="True positive rate", tickformat=".0%", range=[0, 1.01])
    return fig


def curve_runs(results: list[dict]) -> list[dict]:
    """The runs whose folds all carry a per-epoch history (CNN runs)."""
    return [r for r in arguments.results(results)
            if r["folds"] and all(isinstance(f.get("history"), dict) for f in r["folds"])]


def confusion_heatmap(result: dict, label: str | None = None, normalize: bool = True) -> go.Figure:
    """Confusion matrix summed over the validation folds; rows are true classes.

    With ``normalize`` the colour is the share of each true class (recall on the diagonal);
    the text shows the count and that share either way.
    """
    arguments.result(result)
    classes = list(result["dataset"]["classes"])
    shown = [shown_in_chart(c) for c in classes]
    counts = np.sum([np.asarray(fold["confusion"], dtype=int) for fold in result["folds"]], axis=0)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    text = [[f"{counts[i, j]}<br>{shares[i, j]:.0%}" for j in range(len(classes))] for i in range(len(classes))]
    fig = go.Figure(go.Heatmap(
        z=shares if normalize else counts, x=shown, y=shown, text=text, texttemplate="%{text}",
        colorscale="Purples", zmin=0, zmax=1 if normalize else None, showscale=False,
        hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>",
    ))
    title = wrap(label or model_name(result["config"]), width=45)
    lines = title.count("<br>") + 1
    fig.update_layout(**{**LAYOUT, "margin": dict(l=10, r=10, t=20 + 20 * lines, b=10)},
                      height=280 + 30 * len(classes) + 20 * lines, title=dict(text=title, font=dict(size=14)))
    fig.update_xaxes(title="Predicted class", side="bottom", type="category")
    fig.update_yaxes(title="True class", autorange="reversed", type="category")
    return fig


def runs_frame(entries: list[dict]) -> pd.DataFrame:
    """One row per run, in the order given, for a run table: its model, a column for each setting
    that differs among ``entries`` (see :func:`varying_facets`), its accuracy, status, date and id.

    ``entries`` are :meth:`RunStore.list_runs` entries or run results (of ``run()`` or
    ``finished_result()``: a result is a complete run, and carries no date)."""
    entries = arguments.results(entries, "entries", entries=True)
    varying = varying_facets(entries)
    rows = []
    for entry, facets in zip(entries, facet_rows(entries, varying)):
        # a result holds at its top what an entry holds in its meta
        meta, summary = entry.get("meta") or entry, entry.get("summary") or {}
        config = meta.get("config") or {}
        # A result counts its folds, an entry those done; its std of one fold is None, as the run's line says n/a.
        n_folds = len(entry["folds"]) if "folds" in entry else entry.get("n_folds_done", 0)
        acc = shown_summary(summary, n_folds).get("val_acc") or {}
        try:
            model = model_name(config)
        except KeyError:
            model = config.get("model", "?")
        rows.append({"Model": model, **facets, "Val. accuracy": acc.get("mean"), "SD": acc.get("std"),
                     "Status": entry.get("status", "complete"), "Created (UTC)": created_text(meta.get("created")),
                     "Run id": entry["run_id"]})
    return pd.DataFrame(rows, columns=["Model", *(FACETS[name][0] for name in varying), "Val. accuracy", "SD",
                                       "Status", "Created (UTC)", "Run id"])


def facet_rows(runs: list[dict], names: list[str]) -> list[dict[str, str]]:
    """Per run, the facets ``names`` under their table headers ('–' where the model has none)."""
    return [{FACETS[name][0]: texts[name] or "–" for name in names} for texts in map(facet_texts, runs)]


def fold_frame(results: list[dict], labels: list[str] | None = None) -> pd.DataFrame:
    """One row per run and fold with every scalar metric, and the images it trained and validated on; where a run
    validated augmented copies beside its images (``--protocol paper``), ``Validation rows`` too: the rows its
    metrics count, not images (14 images of 2 rows each would read as 28 validation images beside 26 trained on)."""
    results = arguments.results(results)
    labels = run_labels_of(results, labels)
    metrics = available_metrics(results)
    rows = []
    for result, label in zip(results, labels):
        for fold in result["folds"]:
            rows.append({"Run": label, "Fold": fold["fold"] + 1, "Train images": fold.get("n_train"),
                         "Validation images": validation_images(fold), "Validation rows": fold.get("n_val"),
                         **{m: fold[m] for m in metrics}})
    frame = pd.DataFrame(rows)
    if frame.empty or frame["Validation rows"].equals(frame["Validation images"]):
        return frame.drop(columns=["Validation rows"], errors="ignore")
    return frame


def validation_images(fold: dict) -> int | None:
    """The images a fold validated: its stored answers' originals (copy 0), else its ``n_val`` (stored before
    answers were, when copies were counted alike)."""
    oof = fold.get("oof")
    return int(np.sum(np.asarray(oof["copy"]) == 0)) if oof else fold.get("n_val")


def summary_frame(results: list[dict], labels: list[str] | None = None, metric: str = "val_acc") -> pd.DataFrame:
    """Per run: mean, SD (None for one fold), min and max of ``metric`` over folds, and the paper's figure beside it."""
    results = arguments.results(results)
    arguments.known(metric, available_metrics(results) or list(METRICS), "metric")
    labels = run_labels_of(results, labels)
    rows = []
    for result, label in zip(results, labels):
        values = fold_values(result, metric)
        rows.append({"Run": label, "Folds": len(values), "Mean": float(np.mean(values)), "SD": fold_std(values),
                     "Min": float(np.min(values)), "Max": float(np.max(values)),
                     "Paper (reported)": paper_value(result, metric)})
    return pd.DataFrame(rows)


def source_frame(results: list[dict], labels: list[str] | None = None) -> pd.DataFrame:
    """Per run on several datasets and per source: accuracy, balanced accuracy and each class's
    recall over the source's validation images, and the fold mean and range of its accuracy
    (empty when no run has several sources)."""
    results = arguments.results(results)
    labels = run_labels_of(results, labels)
    rows = []
    for result, label in zip(results, labels):
        for name, source in (result["summary"].get("per_source") or {}).items():
            pooled, acc = source["pooled"], source["val_acc"]
            rows.append({"Run": label, "Source": name, "Folds": source["folds"], "Images": source["n_val"],
                         "Val. accuracy": pooled["val_acc"], "Balanced acc.": pooled["balanced_acc"],
                         **{f"Recall {c}": r for c, r in pooled["per_class_recall"].items()},
                         "Fold mean": acc["mean"], "Fold min": acc["min"], "Fold max": acc["max"]})
    return pd.DataFrame(rows)
