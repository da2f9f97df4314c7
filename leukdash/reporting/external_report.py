"""The report's "External validity" section: every model tested on the other lab's images.

Both directions (ALL-IDB2 -> C-NMC and back), the paper CNN, the leukdash CNN and the four
classic models on engineered features, raw and with the recommended cell-level preprocessing,
each external figure beside the run's own strict cross-validated one. The runs are the report's
own configs (the strict ALL vs HEALTHY runs of Exp 2 and Exp 4), trained on either dataset;
:func:`external_section` never trains a run: a run not in the store is listed as missing.

:func:`write_section` puts the section into ``REPORT.md`` between two markers (replacing an
older one), so ``python -m leukdash reproduce`` and ``python -m leukdash external-report``
both keep it current.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from leukdash.config import RunConfig

ALLIDB2, CNMC = "allidb2_ufpr", "cnmc_dev"
DIRECTIONS = ((ALLIDB2, CNMC), (CNMC, ALLIDB2))
# C-NMC has two healthy subjects: subject-grouped, stratified folds allow two at most.
FOLDS = {ALLIDB2: 5, CNMC: 2}
# The preprocessing compared with today's raw input: the one recommended for transfer (the cell
# segmented, its size relative to the field kept, grey levels; see docs/report/PREPROCESS_NOTES.md).
RECOMMENDED = "cell-keep-gray"
PREPROCESSINGS = ("raw", RECOMMENDED)
START, END = "<!-- external-validity -->", "<!-- /external-validity -->"
MODEL_NAMES = {"cnn-paper": "paper CNN", "cnn-leukdash": "leukdash CNN", "nb": "naive Bayes (features)",
               "svm": "SVM (features)", "knn": "3-NN (features)", "dt": "decision tree (features)"}


@dataclass(frozen=True)
class ExternalCell:
    """One cell of the section: a run config (trained on ``train``) tested on ``test``."""

    train: str
    test: str
    preprocessing: str
    model: str
    config: RunConfig


def external_matrix() -> list[ExternalCell]:
    """The six models x two directions x preprocessings, as the report's strict runs."""
    from leukdash.reporting.matrix import FULL, experiments

    cells = []
    for train, test in DIRECTIONS:
        strict = [e for e in experiments(train, "synthetic", replace(FULL, folds=FOLDS[train]))
                  if e.task == "binary" and e.exp in ("2", "4") and e.protocol == "strict"
                  and (e.config.is_cnn or e.config.feature_set == "features")]
        for name in PREPROCESSINGS:
            for experiment in strict:
                config = experiment.config.with_changes(preprocess=name)
                model = f"cnn-{config.architecture}" if config.is_cnn else config.model
                cells.append(ExternalCell(train, test, name, model, config))
    return cells


def external_section(cells: list[ExternalCell] | None = None, *, compute: bool = True, log=print) -> str:
    """The Markdown section; with ``compute``, external tests not stored yet are run (the runs
    themselves are only read from the store)."""
    from leukdash.data.discovery import discover_datasets

    cells = external_matrix() if cells is None else cells
    found = discover_datasets()
    lines = [START, "## External validity: the models on another lab's images", "", _INTRO]
    for train, test in DIRECTIONS:
        if train not in found or test not in found:
            lines += ["", f"### {train} -> {test}", "",
                      f"Not computed: {', '.join(d for d in (train, test) if d not in found)} not found "
                      "(set LEUKDASH_DATA)."]
            continue
        for preprocessing in PREPROCESSINGS:
            chosen = [c for c in cells if (c.train, c.test, c.preprocessing) == (train, test, preprocessing)]
            lines += ["", f"### Trained on {train}, tested on {test} ({preprocessing})", "",
                      _label(train, test, preprocessing), "", *_table(chosen, compute, log)]
    lines += ["", _DEVELOPMENT, END]
    return "\n".join(lines)


_INTRO = (
    "Each run's fold ensemble (the models Predict uses) labels every image of the other dataset. "
    "**Within** is the run's own strict cross-validated balanced accuracy (mean over folds, 95% t interval; "
    "with two folds, the two fold values); "
    "**External** is the balanced accuracy on the other dataset with a 95% percentile interval from 2000 "
    "bootstrap resamplings of its groups (C-NMC: subjects; ALL-IDB2: images, duplicates joined), resampled within "
    "class. **Collapsed**: one class for at least 95% of the images. **OOD**: share of the external images the "
    "run's out-of-distribution check flags (k-NN distance on engineered descriptors above the 99th percentile "
    "of the run's own out-of-fold images), and the share of the run's own out-of-fold images it flags. Reproduce one cell with `python -m leukdash evaluate RUN_ID DATASET`.")

_DEVELOPMENT = (
    "**Which figures are development figures.** The raw figures are tests: the models, the OOD method and its "
    "99th-percentile threshold were fixed before any of them was seen (the threshold makes about 1% of a run's "
    "own images flagged by construction). Cell-level preprocessing was chosen by looking at how models trained "
    "on allidb2_ufpr fared on cnmc_dev: every preprocessed allidb2_ufpr -> cnmc_dev figure is therefore a "
    "**development figure, not a test**, and the preprocessed cnmc_dev -> allidb2_ufpr figures share that "
    "choice. Only images from other subjects and labs can test the recommended preprocessing. The C-NMC runs use "
    f"{FOLDS[CNMC]} subject-grouped folds (two healthy subjects), so their within figures are each on one "
    "healthy subject. With cell-level preprocessing the OOD check describes the images as the models see them "
    "(segmented, grey), so it only warns of the differences the preprocessing leaves in.")


def _label(train: str, test: str, preprocessing: str) -> str:
    if preprocessing == "raw":
        return "Raw input (today's default, the paper's): **test figures**."
    return ("Preprocessing chosen on these results: **development figures**." if test == CNMC
            else "Preprocessing chosen on the other direction's cnmc_dev results: **development figures**.")


def _table(cells: list[ExternalCell], compute: bool, log) -> list[str]:
    from leukdash.evaluation.evaluate import evaluate
    from leukdash.engine.runner import load_result, resolve

    rows = ["| model | run | within (CV) | external balanced acc. [95% CI] | ROC AUC | predicted share | collapsed "
            "| OOD external / own |", "|---|---|---|---|---|---|---|---|"]
    tested = []
    for cell in cells:
        run_id = resolve(cell.config).run_id
        result = load_result(run_id)
        if result is None:
            rows.append(f"| {MODEL_NAMES[cell.model]} | `{run_id}` | not computed | - | - | - | - | - |")
            continue
        within = result["summary"]["balanced_acc"]
        try:
            external = evaluate(run_id, cell.test) if compute else _stored(run_id, cell.test)
        except Exception as error:  # one failed cell is reported in the table, not the end of the report
            log(f"external test of {run_id} on {cell.test} failed: {type(error).__name__}: {error}")
            external = None
        if len(result["folds"]) > 2:
            cv = f"{within['mean']:.3f} [{within['ci95'][0]:.3f}-{within['ci95'][1]:.3f}]"
        else:  # a t interval on two values says nothing: the folds themselves
            cv = f"{within['mean']:.3f} (folds " + ", ".join(f"{f['balanced_acc']:.3f}" for f in result["folds"]) + ")"
        if external is None:
            rows.append(f"| {MODEL_NAMES[cell.model]} | `{run_id}` | {cv} | not evaluated | - | - | - | - |")
            continue
        tested.append((cell, external))
        low, high = external["intervals"]["balanced_accuracy"]
        auc = external["roc_auc"]
        shares = ", ".join(f"{c} {s:.0%}" for c, s in external["predicted_share"].items())
        rows.append(f"| {MODEL_NAMES[cell.model]} | `{run_id}` | {cv} | {external['balanced_accuracy']:.3f} "
                    f"[{low:.3f}-{high:.3f}] | {'-' if auc is None else f'{auc:.3f}'} | {shares} | "
                    f"{'**yes**' if external['collapsed'] else 'no'} | {external['ood_share']:.0%} / "
                    f"{external['ood_own_share']:.1%} |")
    return rows + (["", _summary(tested, len(cells))] if tested else [])


def _summary(tested: list[tuple[ExternalCell, dict]], n_cells: int) -> str:
    """One sentence on a table: collapses, models predicting both classes, the best of those."""
    collapsed = [MODEL_NAMES[c.model] for c, e in tested if e["collapsed"]]
    # Both classes given to at least 30% of the images: the bar for "predicts both".
    both = [(e["balanced_accuracy"], c, e) for c, e in tested if min(e["predicted_share"].values()) >= 0.30]
    text = f"{len(tested)} of {n_cells} models tested; {len(collapsed)} collapsed" + \
        (f" ({', '.join(collapsed)})" if collapsed else "") + "; "
    if not both:
        return text + "none gives each class to at least 30% of the images."
    value, cell, external = max(both, key=lambda item: item[0])
    low, high = external["intervals"]["balanced_accuracy"]
    return text + (f"{len(both)} {'gives' if len(both) == 1 else 'give'} each class to at least 30% of the "
                   "images, the best of them "
                   f"{MODEL_NAMES[cell.model]} at balanced accuracy {value:.3f} (95% group bootstrap "
                   f"{low:.3f}-{high:.3f}).")


def _stored(run_id: str, dataset: str) -> dict | None:
    from leukdash.evaluation.evaluate import stored_evaluations

    return next((r for r in stored_evaluations(run_id) if r["dataset"]["name"] == dataset), None)


def write_section(report: Path, section: str) -> Path:
    """Put ``section`` into ``report`` between the markers, replacing an older one, else at the end."""
    report = Path(report)
    text = report.read_text(encoding="utf-8") if report.is_file() else ""
    if START in text and END in text:
        text = text[:text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + ("\n\n" if text else "") + section + "\n"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text, encoding="utf-8")
    return report
