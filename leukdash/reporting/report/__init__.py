"""The reproduction report: ``REPORT.md`` with tables, Figure 4 as SVG, an honest discussion, and
``report.json``, the figures that the README's result block is made from (:mod:`.readme`).

Built from the outcomes of :func:`leukdash.reporting.reproduce.run_experiments` alone (the run store's
results), so it can be rebuilt at any time without training. Accuracies are shown in percent
with two decimals, as the paper gives them; every table puts the paper's figure in the column
right after ours. One module per part: :mod:`.format` (numbers and tables), :mod:`.headline`,
:mod:`.tables` (datasets, settings, the paper's tables), :mod:`.discussion`, :mod:`.bookkeeping`
(header, missing runs, run times and machine, versions), :mod:`.figure` (the SVG figures).
"""

from __future__ import annotations

import time
from pathlib import Path

from leukdash import ENGINE_VERSION
from leukdash.atomic import write_bytes_atomic
from leukdash.engine.timing import progress_span
from leukdash.intervals import share_interval
from leukdash.reporting.matrix import REPORT_NAME, Outcome, Settings
from leukdash.reporting.report.bookkeeping import (fold_machine, fold_seconds, header, measured_on, missing, run_times,
                                                   utc_text, versions)
from leukdash.reporting.report.discussion import discussion
from leukdash.reporting.report.figure import write_figure
from leukdash.reporting.report.format import TASK_NAMES, fold_stats, fold_values, label
from leukdash.reporting.report.headline import best, headline, headline_candidates
from leukdash.reporting.report.tables import (comparison_rows, comparison_table, datasets, figure_section, fold_table,
                                              settings_section, table2)

DATA_NAME = "report.json"


def build_report(outcomes: list[Outcome], out: Path, *, settings: Settings, mode: str, command: str,
                 wall_seconds: float, shortcuts: dict | None = None, store=None) -> Path:
    """Write ``out/REPORT.md``, its figures and ``out/report.json``; return the Markdown file's path.

    ``wall_seconds`` is this call's; the reproduction's own wall time is read from the progress
    logs of the runs in ``store`` (default: this process's). ``shortcuts`` maps a task ("binary",
    "five") to the audit's shortcut scores of its dataset.
    """
    from leukdash.engine.store import RunStore, write_json_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shortcuts = shortcuts or {}
    done = [o for o in outcomes if o.result is not None]
    store = store or RunStore()
    span = progress_span([store.progress_path(o.result["run_id"]) for o in done])
    machine = fold_machine(done)
    figures = {task: write_figure(out / f"figure4_{task}.svg", comparison_rows(done, task), TASK_NAMES[task])
               for task in TASK_NAMES if comparison_rows(done, task)}
    sections = [
        header(outcomes, settings, mode, command, wall_seconds),
        headline(done),
        datasets(done, shortcuts),
        settings_section(settings),
        table2(done),
        fold_table(done, "2", "Table 3 analogue: Exp 2 (ALL vs HEALTHY, augmentation) per fold"),
        fold_table(done, "3a", "Table 4 analogue: Exp 3a (five classes, SGD, 25 epochs) per fold"),
        comparison_table(done, "binary", "Table 5 analogue: CNN against the classic models, ALL vs HEALTHY"),
        comparison_table(done, "five", "Table 6 analogue: CNN against the classic models, five classes"),
        figure_section(figures),
        discussion(done, shortcuts),
        missing(outcomes),
        run_times(done, span, machine),
        versions(done),
    ]
    path = out / REPORT_NAME
    write_bytes_atomic(path, ("\n\n".join(s for s in sections if s).rstrip() + "\n").encode("utf-8"))
    write_json_atomic(out / DATA_NAME, report_data(outcomes, mode=mode, command=command, wall_seconds=wall_seconds,
                                                   machine=machine, span=span, shortcuts=shortcuts))
    return path


def report_data(outcomes: list[Outcome], *, mode: str, command: str, wall_seconds: float, machine: dict,
                span: dict | None, shortcuts: dict | None = None) -> dict:
    """What the README's generated blocks are made from: the engine, the machine that computed the
    folds, the reproduction's wall time from the store (``span``, see
    :func:`leukdash.engine.timing.progress_span`; None without progress logs) beside the fold-time
    sum and its packing bound, the headline rows, the audit's shortcut accuracies of each task's
    dataset, and every run's per-fold accuracies and seconds (plain JSON, committed with the report)."""
    done = [o for o in outcomes if o.result is not None]
    total = sum(fold_seconds(o) for o in done)
    rows = []
    for title, candidates, _target in headline_candidates(done):
        if candidates:
            chosen = best(candidates)
            rows.append({"title": title, "label": label(chosen), "run_id": chosen.result["run_id"],
                         "dataset": chosen.result["dataset"]["name"], "is_cnn": chosen.experiment.config.is_cnn,
                         "paper": chosen.experiment.paper.val_acc if chosen.experiment.paper else None,
                         "val_acc": fold_values(chosen.result), **_summary(chosen)})
    return {
        "engine": ENGINE_VERSION, "mode": mode, "command": command,
        "generated": utc_text(time.time()),
        "machine": machine, "machines": len(measured_on(done)), "call_seconds": round(wall_seconds, 1),
        "reproduction": span and {**span, "first": utc_text(span["first"]), "last": utc_text(span["last"]),
                                  "wall_seconds": round(span["wall_seconds"], 1)},
        "fold_seconds": round(total, 1), "packing_bound_seconds": round(total / machine["cores"], 1),
        "runs_total": len(outcomes), "runs_done": len(done),
        "headline": rows,
        "shortcuts": {task: {"dataset": next(o.result["dataset"]["name"] for o in done if o.experiment.task == task),
                             **scores} for task, scores in (shortcuts or {}).items()
                      if any(o.experiment.task == task for o in done)},
        "runs": [{"exp": o.experiment.exp, "task": o.experiment.task, "label": label(o), "run_id": o.result["run_id"],
                  "engine": o.result["versions"].get("engine"), "seconds": round(fold_seconds(o), 1),
                  "fold_seconds": [round(float(f["seconds"]), 1) for f in o.result["folds"]],
                  "val_acc": fold_values(o.result)} for o in done],
    }


def _summary(outcome: Outcome) -> dict:
    stats = fold_stats(outcome.result)
    return {"mean": stats["mean"], "ci95": list(share_interval(stats["ci95"]))}
