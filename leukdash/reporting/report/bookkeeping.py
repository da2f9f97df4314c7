"""The report's header and closing sections: runs missing, run times on which machine, versions."""

from __future__ import annotations

import time

from leukdash import ENGINE_VERSION
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
        "*Paper* column is the one the paper reports, but for an SD or CI marked \"from its folds\" (leukdash "
        "computed it from the paper's fold values); every other figure was measured by leukdash.",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with engine version {ENGINE_VERSION} by `{command}` "
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


def measured_on(done: list[Outcome]) -> list[str]:
    """The machines the runs' folds were computed on, one line each."""
    return sorted({machine_text(o.result.get("machine")) for o in done})


def fold_machine(done: list[Outcome]) -> dict:
    """The machine that computed the folds when every run names the same one, else this one."""
    from leukdash.engine.machine import describe_machine

    machines = [o.result.get("machine") for o in done]
    if machines and None not in machines and len(measured_on(done)) == 1:
        return machines[0]
    return describe_machine()


def run_times(done: list[Outcome], span: dict | None, machine: dict) -> str:
    """Fold times per run, the machines that measured them, the packing bound (sum of fold times
    / cores) and the reproduction's wall time from the runs' progress logs: fold times differ up
    to 8x between CPU kinds."""
    rows = [[o.experiment.exp, TASK_NAMES[o.experiment.task], label(o), f"`{o.result['run_id']}`",
             f"{len(o.result['folds'])}", f"{fold_seconds(o):.0f}"] for o in done]
    if not rows:
        return ""
    total = sum(fold_seconds(o) for o in done)
    bound = total / machine["cores"]
    text = (f"Sum of the fold times of each run (training, evaluation, saving): {total / 60:.1f} minutes in all, "
            f"measured on: {'; '.join(measured_on(done))}. Their packing bound (sum / cores) on "
            f"{machine_text(machine)} is {bound / 60:.1f} minutes. ")
    if span is None:
        text += "The store holds no progress log of these runs: their wall time is unknown."
    else:
        text += (f"The runs were computed from {utc_text(span['first'])} to {utc_text(span['last'])}: "
                 f"{span['wall_seconds'] / 60:.1f} minutes of wall time (the first to the last event of their "
                 f"progress logs), {span['wall_seconds'] / bound:.2f}x the packing bound.")
        if span["runs_resumed"]:
            text += f" {span['runs_resumed']} run(s) were resumed: the wall time includes the pause."
    return "\n".join(["## Run times", "", text, "",
                      markdown_table(["Exp", "Task", "Model", "Run id", "Folds", "Seconds"], rows)])


def utc_text(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def versions(done: list[Outcome]) -> str:
    if not done:
        return ""
    sets = {tuple(sorted(o.result["versions"].items())) for o in done}
    newest = dict(max(sets, key=lambda s: dict(s).get("leukdash", "")))
    lines = ["## Package versions", "", markdown_table(["Package", "Version"], [[k, v] for k, v in newest.items()])]
    if len(sets) > 1:
        lines += ["", f"The runs were computed under {len(sets)} different sets of versions; shown is one of them."]
    return "\n".join(lines)
