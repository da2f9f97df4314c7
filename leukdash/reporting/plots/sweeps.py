"""Compare's sweep view and Experiments' grid: settings against a metric."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from leukdash.evaluation.labels import run_labels, setting_text
from leukdash.metrics import fold_std
from leukdash.reporting.plots.common import FRACTION_METRICS, LAYOUT, METRICS, fold_values, shown_in_chart


def sweep_axes(configs: list[dict]) -> list[str]:
    """The settings that differ between run configs (see :func:`leukdash.config.differing_settings`)."""
    from leukdash.config import RunConfig, differing_settings

    return differing_settings([RunConfig.from_dict(config) for config in configs])


def finished_axes(sweep: dict) -> list[str]:
    """The settings that differ among the finished runs of a sweep (a :func:`sweep_status` entry)."""
    return sweep_axes([run["config"] for run in sweep["runs"] if run["status"] == "complete"])


def varied_settings(sweep: dict) -> str:
    """What a sweep (a :func:`sweep_status` entry) varies: 'model × seed'; an augmentation that differs
    only in robustness transforms by their names ('blur', as the sweep's rows name it), not 'augment'."""
    configs = [run["config"] for run in sweep["runs"]]
    axes = [name for axis in sweep_axes(configs) for name in _named_augment(axis, configs)]
    return " × ".join(axis.replace("_", " ") for axis in axes) or "one setting each"


def _named_augment(axis: str, configs: list[dict]) -> list[str]:
    from leukdash.config import AugmentConfig

    if axis != "augment":
        return [axis]
    differing = [name for name in AugmentConfig.TRANSFORMS
                 if len({repr(config["augment"].get(name)) for config in configs}) > 1]
    return differing if differing and set(differing) <= set(AugmentConfig.OPTIONAL) else [axis]


def run_counts(sweep: dict) -> tuple[int, int]:
    """How many of a sweep's distinct runs are finished, of how many (a :func:`sweep_status`
    entry; a setting the run's model ignores repeats a run, counted once)."""
    statuses = {run["run_id"]: run["status"] for run in sweep["runs"]}
    return sum(status == "complete" for status in statuses.values()), len(statuses)


def sweep_title(sweep: dict) -> str:
    """A sweep named by the settings it varies: 'model × seed · tiny · 3 of 4 runs finished'."""
    done, total = run_counts(sweep)
    return f"{varied_settings(sweep)} · {sweep['name']} · {done} of {total} run{'s' * (total != 1)} finished"


def sweep_frame(results: list[dict], axes: list[str], metric: str = "val_acc") -> pd.DataFrame:
    """One row per run of a sweep: its value of each axis (as text), the mean and SD of
    ``metric`` over its folds (None for one fold), its fold values, label and run id."""
    rows = []
    for result, label in zip(results, run_labels(results)):
        values = fold_values(result, metric)
        rows.append({**{axis: setting_text(result["config"], axis) for axis in axes},
                     "Mean": float(np.mean(values)), "SD": fold_std(values), "Folds": values,
                     "Run": label, "Run id": result["run_id"]})
    return pd.DataFrame(rows, columns=[*axes, "Mean", "SD", "Folds", "Run", "Run id"])


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
        # Not escaped (shown_in_chart): a parallel-coordinates axis draws its tick texts as plain text.
        dimensions.append(dict(label=axis.replace("_", " "), values=codes, tickvals=list(range(len(ticks))),
                               ticktext=ticks, range=[-0.3, len(ticks) - 0.7] if len(ticks) > 1 else [-1, 1]))
    fraction = metric in FRACTION_METRICS
    # Ticks of a fraction set by hand: plotly's own repeat '0%' and '100%' on a short axis.
    shares = [0, 0.25, 0.5, 0.75, 1]
    dimensions.append(dict(label=f"mean {METRICS.get(metric, metric).lower()}", values=frame["Mean"],
                           **(dict(range=[0, 1], tickvals=shares, ticktext=[f"{v:.0%}" for v in shares])
                              if fraction else {})))
    # Colours span the runs' own range, from a visible lilac: the differences are what matter.
    fig = go.Figure(go.Parcoords(
        dimensions=dimensions, labelangle=0, labelside="top",
        line=dict(color=frame["Mean"], colorscale=[[0, "#d4b8de"], [1, "#3d0a4f"]], showscale=True,
                  colorbar=dict(tickformat=".0%" if fraction else None, len=0.8)),
    ))
    fig.update_layout(**{**LAYOUT, "margin": dict(l=110, r=60, t=60, b=20)}, height=420)
    return fig


def sweep_heatmap(frame: pd.DataFrame, x: str, y: str, metric: str = "val_acc") -> go.Figure:
    """Mean ``metric`` for each pair of values of two settings, over every fold of the runs that
    share them (other settings pooled), with the spread across those folds (SD, n/a for one fold) in each cell."""
    xs, ys = _ordered(frame[x]), _ordered(frame[y])
    mean = np.full((len(ys), len(xs)), np.nan)
    text = [["" for _ in xs] for _ in ys]
    for (xv, yv), cell in frame.groupby([x, y]):
        folds = [v for values in cell["Folds"] for v in values]
        i, j = ys.index(yv), xs.index(xv)
        mean[i, j] = float(np.mean(folds))
        spread = fold_std(folds)
        fmt = (lambda v: f"{v:.1%}") if metric in FRACTION_METRICS else (lambda v: f"{v:.3f}")
        text[i][j] = (f"{fmt(mean[i, j])}<br>± {'n/a' if spread is None else fmt(spread)}<br>"
                      f"{len(cell)} run{'s' * (len(cell) != 1)}")
    fraction = metric in FRACTION_METRICS
    fig = go.Figure(go.Heatmap(
        z=mean, x=[shown_in_chart(v) for v in xs], y=[shown_in_chart(v) for v in ys], text=text,
        texttemplate="%{text}", colorscale="Purples",
        zmin=0 if fraction else None, zmax=1 if fraction else None, hoverongaps=False,
        colorbar=dict(tickformat=".0%" if fraction else None, title=dict(text="mean")),
        hovertemplate=f"{x} %{{x}}, {y} %{{y}}<br>%{{text}}<extra></extra>",
    ))
    fig.update_layout(**LAYOUT, height=160 + 70 * len(ys))
    fig.update_xaxes(title=x.replace("_", " "), type="category")
    fig.update_yaxes(title=y.replace("_", " "), type="category")
    return fig


def seed_spread_frame(frame: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Runs that differ only in their seed, grouped: the spread of their means over seeds beside
    the mean spread over folds within a run. One seed has no spread over seeds, a run of one fold
    none over folds: None (n/a), not a 0 that would read as a measured one."""
    others = [axis for axis in axes if axis != "seed"]
    rows = []
    for key, group in frame.groupby(others, sort=False) if others else [((), frame)]:
        key = key if isinstance(key, tuple) else (key,)
        within = group["SD"].dropna()  # runs of one fold have none
        rows.append({**dict(zip(others, key)), "Seeds": len(group), "Mean": float(group["Mean"].mean()),
                     "SD over seeds": float(group["Mean"].std(ddof=1)) if len(group) > 1 else None,
                     "SD over folds (mean)": float(within.mean()) if len(within) else None})
    return pd.DataFrame(rows)
