"""Compare's External test tab: each run's fold ensemble on another dataset."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from leukdash.evaluation.labels import run_labels
from leukdash.reporting.plots.common import LAYOUT, MODEL_COLOURS, shown_in_chart, wrap

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
        low, high = evaluation["intervals"].get(metric) or [None, None]  # None: the groups support none
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
        run, tested, predicted = (shown_in_chart(row[key]) for key in ("Run", "Tested on", "Predicted"))
        x = [[tested], [wrap(row["Run"])]]
        value = row["Value"] if row["Value"] is not None else float("nan")
        # No interval, or one of zero width (every resample the same, stored before that was None): no whisker.
        undefined = row["Low"] is None or pd.isna(row["Low"]) or row["Low"] == row["High"]
        low, high = (value, value) if undefined else (row["Low"], row["High"])
        ci = "95% CI n/a" if undefined else f"95% CI {low:.1%}-{high:.1%}"
        fig.add_bar(
            x=x, y=[value], showlegend=False, opacity=0.85, marker_color=MODEL_COLOURS.get(row["Model"], "#555"),
            marker_pattern_shape="/" if row["Collapsed"] else "",
            error_y=dict(type="data", symmetric=False, array=[high - value], arrayminus=[value - low],
                         color="#333", thickness=1.5),
            text=["collapsed" if row["Collapsed"] else ""], textposition="inside",
            hovertemplate=f"{run} on {tested}<br>%{{y:.1%}} ({ci})"
                          f"<br>predicted: {predicted}<br>OOD flagged {row['OOD share']:.0%}<extra></extra>",
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
    fig.update_layout(**LAYOUT, height=460, bargap=0.35, showlegend=True,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    fig.update_xaxes(tickangle=0, tickfont=dict(size=11), automargin=True)
    fig.update_yaxes(title=f"{EXTERNAL_METRICS.get(metric, metric)} on the external dataset", tickformat=".0%",
                     range=[0, 1.05])
    return fig
