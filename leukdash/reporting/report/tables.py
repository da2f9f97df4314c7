"""The report's result sections: datasets, settings, the paper's tables and Figure 4's section."""

from __future__ import annotations

import numpy as np

from leukdash.intervals import SHARE
from leukdash.metrics import summarize
from leukdash.reporting.matrix import Outcome, Settings
from leukdash.reporting.report.format import (DASH, TASK_NAMES, dataset_note, deviation, fold_range, fold_stats,
                                              fold_values, interval, label, loss_text, markdown_table, paper_val, pct)


def datasets(done: list[Outcome], shortcuts: dict) -> str:
    seen, rows = {}, []
    for outcome in done:
        dataset = outcome.result["dataset"]
        key = (outcome.experiment.task, dataset["fingerprint"])
        if key in seen:
            continue
        seen[key] = True
        counts = ", ".join(f"{c} {n}" for c, n in dataset["counts"].items())
        shortcut = shortcuts.get(outcome.experiment.task) or {}
        background = shortcut.get("background_acc")
        rows.append([TASK_NAMES[outcome.experiment.task], f"`{dataset['name']}`", f"`{dataset['fingerprint'][:16]}`",
                     f"{dataset['n_used']} ({counts})", dataset_note(dataset),
                     DASH if background is None else f"{pct(background)} (chance {pct(shortcut['chance'])})"])
    if not rows:
        return ""
    return "\n".join([
        "## Datasets",
        "",
        markdown_table(["Task", "Dataset", "Fingerprint (sha256, first 16)", "Images used", "Kind",
                "Background-only shortcut accuracy"], rows),
        "",
        "The fingerprint covers every file's path, label, group and bytes: the same fingerprint means the "
        "same images. The shortcut column is the audit's out-of-fold accuracy of a random forest that sees "
        "only the background colour around the cell (`python -m leukdash audit`); far above chance, it "
        "shows the acquisition alone gives the class away, a shortcut any model can learn.",
    ])


def settings_section(settings: Settings) -> str:
    return "\n".join([
        "## Settings and deviations from the paper",
        "",
        f"- CNNs: the paper's layers (`paper`) and leukdash's stronger network (`leukdash`), batch 32, "
        f"{settings.epochs} epochs ({settings.long_epochs} in Exp 3b), SGD (learning rate 0.01) or Adam (0.001) "
        "for the paper CNN; the leukdash CNN uses its own recipe (warm-up + cosine schedule, weight decay, "
        "flip/rotation test-time averaging).",
        f"- Input size (the paper does not state it): {settings.binary_size} px for ALL vs HEALTHY, "
        f"{settings.five_size} px for the five classes (chosen to fit the compute budget: 903 images x "
        f"{settings.augment_factor} copies x {settings.long_epochs} epochs in Exp 3b).",
        f"- Augmentation: the paper's seven transforms, x{settings.augment_factor} (each original plus "
        f"{settings.augment_factor - 1} copies). `paper` protocol, as the paper describes it: the "
        "originals are split first (no copy of a validation image reaches training), then the training and the "
        "validation part are each expanded once, and validation scores the augmented copies too; which way that "
        "moves a figure against `strict` is measured (Discussion), not assumed; the paper split on images, not "
        "patients, which makes its own figures optimistic. `strict` protocol: "
        "fresh copies of the training part every epoch, validation on the untouched originals only.",
        f"- Cross-validation: {settings.folds} stratified folds, grouped (images of one source id and "
        "near-duplicates share a fold), seed 0, the same folds for every model. Exp 1: one stratified 80/20 "
        "split (`test_fraction=0.2`).",
        f"- Exp 4 (classic models): the same x{settings.augment_factor} set and folds as the CNN, under both "
        "protocols (`strict`: the training part's copies are drawn once, as a classic model trains once). "
        "Inputs are standardised (the paper's SVM at chance level suggests it was not); raw pixels are "
        "resized to 32x32.",
        f"- The leukdash CNN on the five classes runs in Exp {', '.join(settings.leukdash_five) or 'none'} "
        "(compute budget: not in Exp 3b, whose 100 epochs cost 4x).",
        "- Accuracy spread: the fold range (max - min) and the sample SD; the 95% CI is a Student-t interval "
        "over the folds, clipped to 0-100%. Train accuracy and loss are the last epoch's, on that epoch's training set.",
    ])



def table2(done: list[Outcome]) -> str:
    order = ("1", "2", "3a", "3b", "3c")
    cnns = sorted((o for o in done if o.experiment.config.is_cnn), key=lambda o: (order.index(o.experiment.exp),))
    if not cnns:
        return ""
    rows = []
    for o in cnns:
        paper = o.experiment.paper
        mean = {m: float(np.mean(fold_values(o.result, m))) for m in ("train_acc", "val_acc", "train_loss", "val_loss")}
        rows.append([o.experiment.exp, o.experiment.title, label(o), f"{len(o.result['folds'])}",
                     pct(mean["train_acc"]), pct(paper and paper.train_acc),
                     pct(mean["val_acc"]), pct(paper and paper.val_acc),
                     loss_text(mean["train_loss"]), loss_text(paper and paper.train_loss),
                     loss_text(mean["val_loss"]), loss_text(paper and paper.val_loss)])
    return "\n".join([
        "## Table 2 analogue: training and validation accuracy and loss per experiment",
        "",
        "Means over folds (Exp 1: its one split). The paper's figures are for its own CNN under its own "
        "protocol, so they sit beside the `paper` architecture rows only.",
        "",
        markdown_table(["Exp", "Setting", "Model", "Folds", "Train acc.", "Paper", "Val. acc.", "Paper",
                "Train loss", "Paper", "Val. loss", "Paper"], rows),
    ])


def fold_table(done: list[Outcome], exp: str, title: str) -> str:
    runs = [o for o in done if o.experiment.exp == exp and o.experiment.config.is_cnn]
    if not runs:
        return ""
    # The like-for-like run (paper CNN, paper protocol) first, the paper's folds right after it.
    runs.sort(key=lambda o: (o.experiment.config.architecture != "paper", o.experiment.protocol != "paper"))
    paper = next((o.experiment.paper for o in runs if o.experiment.paper), None)
    paper_folds = paper.folds if paper else ()
    header = ["Fold", label(runs[0]), "Paper", *(label(o) for o in runs[1:])]
    n = max(len(o.result["folds"]) for o in runs)

    def cells(getter):
        values = [getter(o.result) for o in runs]
        return [values[0], "", *values[1:]]

    rows = []
    for fold in range(n):
        row = cells(lambda r: pct(r["folds"][fold]["val_acc"]) if fold < len(r["folds"]) else DASH)
        row[1] = pct(paper_folds[fold]) if fold < len(paper_folds) else DASH
        rows.append([f"{fold + 1}", *row])
    paper_cells = paper_summary_cells(paper) if paper_folds else {}
    for name, fmt in (("Mean", lambda s, n: pct(s["mean"])), ("SD", deviation),
                      ("Min – max", lambda s, n: fold_range(s)), ("95% CI", interval)):
        row = cells(lambda r: fmt(fold_stats(r), len(r["folds"])))
        row[1] = paper_cells.get(name, DASH)
        rows.append([f"**{name}**", *row])
    return "\n".join([
        f"## {title}",
        "",
        "Validation accuracy of every fold. Our folds are not the paper's folds (its split is not "
        "published): compare the spread, not fold against fold.",
        "",
        markdown_table(header, rows),
    ])


def paper_summary_cells(paper) -> dict[str, str]:
    """The Paper column's summary rows of a per-fold table, by row name. The mean is the one the paper
    reports, of its unrounded folds (Exp 3a: 81.74%, where the mean of its folds as printed is 81.73%),
    and the range is its folds'; it reports no SD or CI: those leukdash computes from its folds, and says so."""
    stats = summarize(paper.folds, bounds=SHARE)
    return {"Mean": pct(paper.val_acc), "SD": f"{pct(stats['std'])} (from its folds)",
            "Min – max": fold_range(stats), "95% CI": f"{interval(stats, len(paper.folds))} (from its folds)"}


def comparison_rows(done: list[Outcome], task: str) -> list[Outcome]:
    """The runs of a task's CNN-vs-classic comparison: the CNNs of Exp 2 / 3a and Exp 4."""
    cnn_exp = "2" if task == "binary" else "3a"
    rows = [o for o in done if o.experiment.task == task
            and (o.experiment.exp == "4" or (o.experiment.exp == cnn_exp and o.experiment.config.is_cnn))]
    return sorted(rows, key=lambda o: (not o.experiment.config.is_cnn, o.experiment.config.feature_set != "pixels"))


def comparison_table(done: list[Outcome], task: str, title: str) -> str:
    rows = []
    for o in comparison_rows(done, task):
        s = fold_stats(o.result)
        rows.append([label(o), pct(s["mean"]), pct(paper_val(o)), deviation(s, len(o.result["folds"])), fold_range(s),
                     interval(s, len(o.result["folds"])),
                     ", ".join(pct(v) for v in fold_values(o.result))])
    if not rows:
        return ""
    return "\n".join([
        f"## {title}",
        "",
        "Mean validation accuracy over the folds. The paper's classic figures are on raw pixels; they are "
        "shown beside both of our input kinds.",
        "",
        markdown_table(["Model", "Mean val. acc.", "Paper", "SD", "Min – max", "95% CI", "Per fold"], rows),
    ])


def figure_section(figures: dict[str, str]) -> str:
    if not figures:
        return ""
    lines = ["## Figure 4 analogue: mean validation accuracy with min–max error bars across folds", "",
             "Bars: our mean over folds; whiskers: the lowest and highest fold; dots: the folds; red diamonds: "
             "the paper's reported figure."]
    for task, name in figures.items():
        lines += ["", f"![Figure 4, {TASK_NAMES[task]}]({name})"]
    return "\n".join(lines)
