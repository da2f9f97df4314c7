"""What the README's generated blocks say (:mod:`.readme` puts them between their markers): one
function per block, from the data of its source alone."""

from __future__ import annotations

from leukdash.engine.machine import machine_text
from leukdash.engine.timing import WORKER_COUNTS, predict_walls
from leukdash.reporting.report.format import TASK_NAMES


def results_block(data: dict) -> str:
    """The README's result table, and how, when and where the reproduction computed it: its wall
    time from the store beside the fold-time sum and the packing bound (``report.json``)."""
    lines = ["| model | per-fold validation accuracy | mean | 95% CI (t) | paper |", "|---|---|---|---|---|"]
    for row in data["headline"]:
        paper = "-" if row.get("paper") is None else \
            f"{row['paper']:.4f} ({'its own protocol' if row['is_cnn'] else 'its protocol, raw pixels'})"
        low, high = row["ci95"]
        lines.append(f"| {row['label']} | {' '.join(f'{v:.3f}' for v in row['val_acc'])} | **{row['mean']:.3f}** "
                     f"| {low:.3f}-{high:.3f} | {paper} |")
    span = data["reproduction"]
    if not span:
        raise ValueError("no reproduction wall time: the store held no progress log of the matrix's runs")
    wall, total, bound = span["wall_seconds"], data["fold_seconds"], data["packing_bound_seconds"]
    resumed = (f" ({span['runs_resumed']} run(s) resumed: the span includes the pause)"
               if span["runs_resumed"] else "")
    machines = "" if data["machines"] <= 1 else f" (fold times from {data['machines']} machines)"
    lines += ["", f"Engine version {data['engine']}, `{data['command']}` ({data['mode']} settings, {data['runs_done']} of "
              f"{data['runs_total']} runs) on {machine_text(data['machine'])}{machines}: the runs were computed from "
              f"{span['first']} to {span['last']}{resumed}, {wall / 60:.1f} min of wall time (first to last event of "
              f"their progress logs) for {total / 60:.1f} min of fold time, whose packing bound on these cores "
              f"(sum / cores) is {bound / 60:.1f} min: {wall / bound:.2f}x the bound."]
    return "\n".join(lines)


def scaling_block(data: dict) -> str:
    """What a cluster buys: the predicted wall time of the matrix's fold tasks on 1 to 32 workers,
    from the per-fold seconds in ``report.json`` (:func:`leukdash.engine.timing.predict_walls`)."""
    tasks = [(seconds, f"{TASK_NAMES[run['task']]}, {run['label']}")
             for run in data["runs"] for seconds in run["fold_seconds"]]
    seconds = [s for s, _ in tasks]
    longest, longest_label = max(tasks)
    rows = [predict_walls(seconds, workers) for workers in WORKER_COUNTS]
    return "\n".join([
        f"What a cluster buys, from the fold times of the full `reproduce` matrix ({len(seconds)} fold tasks, "
        f"{sum(seconds) / 60:.1f} minutes of fold time on {machine_text(data['machine'])}, engine version "
        f"{data['engine']}; longest task {longest / 60:.1f} minutes: {longest_label}), predicted from "
        "`docs/report/report.json` by `python -m leukdash report` (longest task first onto the least loaded "
        "worker; one worker = one fold at a time):",
        "",
        "| workers | " + " | ".join(str(row["workers"]) for row in rows) + " |",
        "|---|" + "---|" * len(rows),
        "| predicted wall (min) | " + " | ".join(f"{row['wall'] / 60:.1f}" for row in rows) + " |",
        "| speed-up | " + " | ".join(f"{rows[0]['wall'] / row['wall']:.1f}x" for row in rows) + " |",
        "",
        f"The critical path (the longest fold) limits the wall time only beyond about {sum(seconds) / longest:.0f} "
        "workers."])
