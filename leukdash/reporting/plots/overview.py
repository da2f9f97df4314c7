"""Overview and Data: the paper's reported figures, and a dataset's images per class."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from leukdash.reporting.paper import BINARY_TASK, FIVE_CLASS_TASK, PAPER_CNN_FOLDS, PAPER_MODEL_NAMES, PAPER_VAL_ACC
from leukdash.reporting.plots.common import LAYOUT, MODEL_COLOURS, shown_in_chart, wrap

TASK_COLOURS = {BINARY_TASK: "#7b2d8b", FIVE_CLASS_TASK: "#c9a3d4"}


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
    fig.update_layout(**LAYOUT, height=380, barmode="group", bargap=0.25,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))
    # Names on two lines: in half a page, "Naive Bayes" and "Decision tree" overlap on one.
    names = list(PAPER_MODEL_NAMES.values())
    fig.update_xaxes(tickangle=0, tickvals=names, ticktext=[wrap(name, width=8) for name in names])
    fig.update_yaxes(title="Validation accuracy (5-fold mean)", tickformat=".0%", range=[0, 1.05])
    return fig


def paper_table() -> pd.DataFrame:
    """The paper's reported 5-fold mean validation accuracy: one row per classifier, one column per task."""
    return pd.DataFrame([{"Classifier": name, **{task: PAPER_VAL_ACC[task][model] for task in PAPER_VAL_ACC}}
                         for model, name in PAPER_MODEL_NAMES.items()])


def class_counts_bar(counts: dict[str, int]) -> go.Figure:
    """Images per class."""
    fig = go.Figure(go.Bar(x=[shown_in_chart(name) for name in counts], y=list(counts.values()),
                           text=list(counts.values()), textposition="outside", marker_color=MODEL_COLOURS["cnn"],
                           cliponaxis=False,
                           hovertemplate="%{x}: %{y} images<extra></extra>"))
    fig.update_layout(**LAYOUT, height=320)
    fig.update_yaxes(title="Images", rangemode="tozero")
    fig.update_xaxes(type="category")
    return fig
