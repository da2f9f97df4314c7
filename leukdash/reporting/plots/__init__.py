"""Figures and tables from run results, for the dashboard and for reports, one module per page
family (runs: Compare and Experiments; sweeps; external tests; overview: the paper and Data;
predict). They are gathered here so that a page imports from one place.

Every function takes plain results (the dicts of :func:`leukdash.engine.runner.load_result` or of
:meth:`leukdash.engine.store.RunStore.list_runs`) and returns a plotly ``Figure`` or a pandas
``DataFrame``, so they are tested without a browser and the pages only place them.
Accuracy-like metrics stay fractions in [0, 1]; the axes show them as percentages.
"""

from leukdash.evaluation.labels import run_labels, setting_text, task_name
from leukdash.reporting.plots.common import (ERROR_BARS, FRACTION_METRICS, METRICS, MODEL_COLOURS, available_metrics,
                                             error_bounds, fold_values, paper_value, result_task,
                                             validated_over)
from leukdash.reporting.plots.external import EXTERNAL_METRICS, external_bars, external_frame
from leukdash.reporting.plots.overview import class_counts_bar, paper_figures, paper_table
from leukdash.reporting.plots.predict import for_display, heatmap_overlay, probability_bars
from leukdash.reporting.plots.runs import (confusion_heatmap, curve_runs, fold_frame, learning_curves, metric_bars,
                                           roc_curves, runs_frame, source_frame, summary_frame)
from leukdash.reporting.plots.sweeps import (seed_spread_frame, sweep_axes, sweep_frame, sweep_heatmap,
                                             sweep_parallel)

__all__ = ["ERROR_BARS", "EXTERNAL_METRICS", "FRACTION_METRICS", "METRICS", "MODEL_COLOURS", "available_metrics",
           "class_counts_bar", "confusion_heatmap", "curve_runs", "error_bounds", "external_bars", "external_frame",
           "fold_frame", "fold_values", "for_display", "heatmap_overlay", "learning_curves", "metric_bars",
           "paper_figures", "paper_table", "paper_value", "probability_bars", "result_task", "roc_curves", "run_labels",
           "runs_frame",
           "seed_spread_frame", "setting_text", "source_frame", "summary_frame", "sweep_axes", "sweep_frame",
           "sweep_heatmap", "sweep_parallel", "task_name", "validated_over"]
