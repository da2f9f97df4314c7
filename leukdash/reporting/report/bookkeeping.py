"""The report's header and closing sections: runs missing, run times on which machine, versions."""

from __future__ import annotations

import time

from leukdash.engine.machine import machine_text
from leukdash.reporting.matrix import Outcome
from leukdash.reporting.report.format import TASK_NAMES, label, markdown_table


def header(outcomes, settings, mode, command, wall_seconds) -> str:
    computed = sum(o.result is not None for o in outcomes)
    lines = [
        "# leukdash: reproducing Ahmed et al. (2019)",
        "",
        "N. Ahmed, A. Yigit, Z. Isik, A. Alpkocak, *Identification of Leukemia Subtypes from Microscopic "
        "Images Using Convolutional Neural Network*, Diagnostics 9(3):104, 2019. Every figure in a "
        "*Paper* column is the one the paper reports; every other figure was measured by leukdash.",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `{command}` "
        f"({mode} settings): {computed} of {len(outcomes)} runs available, "
        f"this call took {wall_seconds:.0f} s (runs already in the store are read back, not recomputed).",
    ]
    if mode != "full":
        lines += ["", f"**{mode.capitalize()} settings** ({settings.epochs} epochs, {settings.folds} folds, x{settings.augment_factor} "
                  "augmentation, small images): a smoke test of the pipeline. Its figures are not comparable "
                  "with the paper's; the full report is `docs/report/REPORT.md`."]
    return "\n".join(lines)


def missing(outcomes: list[Outcome]) -> str:
    absent = [o for o in outcomes if o.result is None]
    if not absent:
        return ""
    return "\n".join(["## Runs not computed", "",
                      "These runs of the matrix are not in the store (run `python -m leukdash reproduce` again "
                      "to compute them; finished runs are not recomputed):", "",
                      *(f"- Exp {o.experiment.exp}, {TASK_NAMES[o.experiment.task]}: {label(o)}" for o in absent)])


def fold_seconds(outcome: Outcome) -> float:
    return sum(float(fold["seconds"]) for fold in outcome.result["folds"])


def run_times(done: list[Outcome], wall_seconds: float, machine: dict) -> str:
    """Fold times per run, the machines that measured them, and this call's wall time against
    the packing bound (sum of fold times / cores): fold times differ up to 8x between CPU kinds."""
    rows = [[o.experiment.exp, TASK_NAMES[o.experiment.task], label(o), f"`{o.result['run_id']}`",
             f"{len(o.result['folds'])}", f"{fold_seconds(o):.0f}"] for o in done]
    if not rows:
        return ""
    total = sum(fold_seconds(o) for o in done)
    measured_on = sorted({machine_text(o.result.get("machine")) for o in done})
    bound = total / machine["cores"]
    return "\n".join(["## Run times", "",
                       f"Sum of the fold times of each run (training, evaluation, saving): {total / 60:.1f} minutes "
                       f"in all, measured on: {'; '.join(measured_on)}. This call took {wall_seconds / 60:.1f} "
                       f"minutes on {machine_text(machine)}; the packing bound of the fold times on its cores "
                       f"(sum / cores) is {bound / 60:.1f} minutes, which a call that computed every run from an "
                       f"empty store can approach (ratio {wall_seconds / bound:.2f}).", "",
                       markdown_table(["Exp", "Task", "Model", "Run id", "Folds", "Seconds"], rows)])


def versions(done: list[Outcome]) -> str:
    if not done:
        return ""
    sets = {tuple(sorted(o.result["versions"].items())) for o in done}
    newest = dict(max(sets, key=lambda s: dict(s).get("leukdash", "")))
    lines = ["## Package versions", "", markdown_table(["Package", "Version"], [[k, v] for k, v in newest.items()])]
    if len(sets) > 1:
        lines += ["", f"The runs were computed under {len(sets)} different sets of versions; shown is one of them."]
    return "\n".join(lines)
