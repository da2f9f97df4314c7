"""The report's "External validity" section: the models on another lab's images.

The runs are :mod:`leukdash.reporting.external_plan`'s (full ``reproduce`` trains them; here they
are only read, a run not stored is listed as not computed): both directions (ALL-IDB2 -> C-NMC and
back) for the paper CNN, the leukdash CNN and the four classic models on engineered features,
raw and with the recommended cell-level preprocessing, each external figure beside the run's own
strict cross-validated one; then issue 16's ensembles, final models and robustness training
against today's best, in both directions and leaving one dataset out.

:func:`external_data` gathers the figures (``report.json`` keeps them under ``external``),
:func:`external_section` writes them as Markdown, and :func:`write_section` puts the section into
``REPORT.md`` between two markers (replacing an older one), so ``python -m leukdash reproduce``
and ``python -m leukdash external-report`` both keep it current.
"""

from __future__ import annotations

from pathlib import Path

from leukdash.atomic import write_bytes_atomic
from leukdash.engine.store import RunStore, read_json, write_json_atomic
from leukdash.errors import LeukdashError
from leukdash.intervals import share_interval
from leukdash.reporting.external_plan import (CNMC, FOLDS, MODEL_NAMES, PREPROCESSINGS, RECOMMENDED, ROBUST_NAME,
                                              Plan, candidates, external_matrix, lodo_rows, row_id)
from leukdash.reporting.external_rows import lodo_row, tested_row
from leukdash.reporting.matrix import REPORT_NAME

START, END = "<!-- external-validity -->", "<!-- /external-validity -->"


def missing_datasets(plan: Plan) -> list[str]:
    """The plan's datasets that are neither discovered (one scan of the data folders) nor a folder."""
    from leukdash.data.discovery import discover_datasets

    found = discover_datasets()
    return [name for name in (plan.first, plan.second) if name not in found and not Path(name).is_dir()]


def external_data(plan: Plan = Plan(), *, compute: bool = True, log=print) -> dict:
    """Every row of the section as plain data; with ``compute``, external tests not stored yet are
    run (the runs themselves are only read from the store)."""
    from leukdash.engine.runner import resolve

    missing = missing_datasets(plan)
    data = {"pair": [plan.first, plan.second], "missing": missing, "directions": [], "candidates": [], "lodo": []}
    if missing:
        return data
    for cell in external_matrix(plan):
        data["directions"].append({"train": cell.train, "test": cell.test, "preprocess": cell.preprocessing,
                                   "label": MODEL_NAMES[cell.model],
                                   **tested_row(resolve(cell.config).run_id, cell.test, compute=compute, log=log)})
    for train, test in plan.directions:
        data["candidates"] += [{"train": train, "test": test, "label": row.label, "model": row.model,
                                **tested_row(row_id(row), test, model=row.model, compute=compute, log=log)}
                               for row in candidates(plan, train, test)]
    data["lodo"] = [{"label": row.label, **lodo_row(row_id(row))} for row in lodo_rows(plan, raw=False)]
    return data


def external_section(data: dict) -> str:
    """The Markdown section of :func:`external_data`'s figures."""
    lines = [START, "## External validity: the models on another lab's images", "", _INTRO]
    if data["missing"]:
        lines += ["", f"Not computed: {', '.join(data['missing'])} not found (set LEUKDASH_DATA)."]
    else:
        first, second = data["pair"]
        for train, test in ((first, second), (second, first)):
            for preprocessing in PREPROCESSINGS:
                rows = [r for r in data["directions"]
                        if (r["train"], r["test"], r["preprocess"]) == (train, test, preprocessing)]
                lines += ["", f"### Trained on {train}, tested on {test} ({preprocessing})", "",
                          _label(test, preprocessing), "", *_direction_table(rows)]
        # The support check's column once its figures are in the data (rows computed before it have none).
        support = any("unsupported" in (r.get("external") or {}) for r in data["candidates"])
        lines += ["", "### Ensembles, final models and robustness training (issue 16)", "",
                  _CANDIDATES + (_UNSUPPORTED if support else _ONLY_LIKELY_WRONG) + _CANDIDATES_DEVELOPMENT]
        for train, test in ((first, second), (second, first)):
            rows = [r for r in data["candidates"] if (r["train"], r["test"]) == (train, test)]
            lines += ["", f"Trained on {train}, tested on {test}:", "", *_candidate_table(rows, support)]
        lines += ["", f"Leave one dataset out (`run {first},{second} --protocol lodo`: each set validated by "
                  "models trained on the other alone; 95% group bootstrap of the held-out set):", "",
                  *lodo_table(data["lodo"])]
    lines += ["", _DEVELOPMENT] + ([_sweep_text(data["sweep"])] if data.get("sweep") else []) + [END]
    return "\n".join(lines)


def _sweep_text(sweep: dict) -> str:
    """What the section's runs cost: ``reproduce``'s second sweep, as ``reproduce`` records it."""
    span = sweep["span"]
    timed = f", computed from {span['first']} to {span['last']} ({span['wall_seconds'] / 60:.1f} min)" if span else ""
    return (f"\nThe section's {sweep['runs_done']} of {sweep['runs']} runs are `reproduce`'s second sweep; "
            f"{sweep['runs_in_matrix']} of them are the matrix's own. The other {sweep['fold_tasks']} fold tasks took "
            f"{sweep['fold_seconds'] / 60:.1f} min of fold time{timed}; ensembles, final models and external tests "
            "come after them.")


_INTRO = (
    "Each run's fold ensemble (the models Predict uses) labels every image of the other dataset. "
    "**Within** is the run's own strict cross-validated balanced accuracy (mean over folds, 95% t interval; "
    "with two folds, the two fold values); "
    "**External** is the balanced accuracy on the other dataset with a 95% percentile interval from 2000 "
    "bootstrap resamplings of its groups (C-NMC: subjects; ALL-IDB2: images, duplicates joined), resampled within "
    "class. **Collapsed**: one class for at least 95% of the images. **OOD**: share of the external images the "
    "run's out-of-distribution check flags (k-NN distance on engineered descriptors above the 99th percentile "
    "of the run's own out-of-fold images; for preprocessed runs, of the prepared cell or of the raw "
    "acquisition), and the share of the run's own out-of-fold images it flags; **OOD flagged: errors** gives how "
    "many external images it flags and the error rate among them against that among the others. "
    "Reproduce one cell with `python -m leukdash evaluate RUN_ID DATASET`.")

_CANDIDATES = (
    f"Today's best transferable models are 3-NN and SVM on engineered features with `{RECOMMENDED}` (the first two "
    "rows); against them: their soft-voting ensemble (`python -m leukdash ensemble RUN_ID RUN_ID`), their final "
    "models (`refit`: one model trained on every image of the run, tested with `evaluate --model final`; its "
    f"within figure is the run's folds), and both trained with robustness augmentation (`--stain-jitter 0.2 "
    f"--blur 1`, {ROBUST_NAME}). **Likely wrong**: the answer's top probability is below that of 95% of the run's "
    "own out-of-fold answers")
_ONLY_LIKELY_WRONG = "; shown as for OOD. "
_UNSUPPORTED = (
    "; **unsupported**: a training image of another class lies nearer, relative to the nearest of the answered "
    "class, than for 95% of the run's own out-of-fold answers (trust score on the OOD descriptors; another lab's "
    "images standardised with their own statistics); both shown as for OOD. ")
_CANDIDATES_DEVELOPMENT = (
    "**All of these are development figures**: the preprocessing and "
    "the members were chosen by looking at cnmc_dev results; the robustness setting was fixed on principle "
    "before any result, but is tested on the same two sets.")

_DEVELOPMENT = (
    "**Which figures are development figures.** The raw figures are tests: the models, the OOD method and its "
    "99th-percentile threshold were fixed before any of them was seen (the threshold makes about 1% of a run's "
    "own images flagged by construction). Cell-level preprocessing was chosen by looking at how models trained "
    "on allidb2_ufpr fared on cnmc_dev: every preprocessed allidb2_ufpr -> cnmc_dev figure is therefore a "
    "**development figure, not a test**, and the preprocessed cnmc_dev -> allidb2_ufpr figures share that "
    "choice. Only images from other subjects and labs can test the recommended preprocessing. The C-NMC runs use "
    f"{FOLDS[CNMC]} subject-grouped folds (two healthy subjects), so their within figures are each on one "
    "healthy subject. With cell-level preprocessing the prepared view of the OOD check describes the images as "
    "the models see them (segmented, grey), so it only warns of the differences the preprocessing leaves in; "
    "the acquisition view looks at the image as the camera gave it.")


def _label(test: str, preprocessing: str) -> str:
    if preprocessing == "raw":
        return "Raw input (today's default, the paper's): **test figures**."
    return ("Preprocessing chosen on these results: **development figures**." if test == CNMC
            else "Preprocessing chosen on the other direction's cnmc_dev results: **development figures**.")


def bounds_text(ci) -> str:
    """An interval as the report shows it; ``ci`` None: the groups supported none (n/a), and so n/a for an interval
    of zero width (every resample the same, stored before that was None): it would read as a certainty."""
    return "n/a" if ci is None or ci[0] == ci[1] else f"{ci[0]:.3f}-{ci[1]:.3f}"


def interval(value: float, ci) -> str:
    """A figure and its interval (:func:`bounds_text`): '0.550 [0.492-0.607]', '1.000 [n/a]'."""
    return f"{value:.3f} [{bounds_text(ci)}]"


def within_text(row: dict) -> str:
    within = row["within"]
    if len(within["folds"]) > 2:  # a t interval, which can leave 0-1: shown clipped, as everywhere
        return interval(within["mean"], share_interval(within["ci95"]))
    # A t interval on two values says nothing: the folds themselves.
    return f"{within['mean']:.3f} (folds " + ", ".join(f"{value:.3f}" for value in within["folds"]) + ")"


def flag_text(flag: dict | None) -> str:
    """How a warning fared: images flagged, error rate among them and among the others."""
    if flag is None:
        return "-"
    rates = ["-" if flag[key] is None else f"{flag[key]:.0%}" for key in ("error_flagged", "error_unflagged")]
    return f"{flag['n_flagged']} ({flag['share']:.0%}): {rates[0]} / {rates[1]}"


def _status_row(row: dict, columns: int) -> str | None:
    if row["status"] == "done":
        return None
    within = "not computed" if row["status"] == "not computed" else within_text(row)
    rest = [row["status"] if row["status"] != "not computed" else "-"] + ["-"] * (columns - 4)
    return f"| {row['label']} | `{row['run_id']}` | {within} | " + " | ".join(rest) + " |"


def _direction_table(rows: list[dict]) -> list[str]:
    lines = ["| model | run | within (CV) | external balanced acc. [95% CI] | ROC AUC | predicted share | collapsed "
             "| OOD external / own | OOD flagged: errors flagged / not |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(_status_row(row, 9) or _direction_line(row))
    return lines + (["", _summary(rows)] if any(r["status"] == "done" for r in rows) else [])


def _direction_line(row: dict) -> str:
    external = row["external"]
    auc = "-" if external["roc_auc"] is None else f"{external['roc_auc']:.3f}"
    shares = ", ".join(f"{c} {s:.0%}" for c, s in external["predicted_share"].items())
    return (f"| {row['label']} | `{row['run_id']}` | {within_text(row)} | "
            f"{interval(external['balanced_accuracy'], external['ci95'])} | {auc} | {shares} | "
            f"{'**yes**' if external['collapsed'] else 'no'} | {external['ood_share']:.0%} / "
            f"{external['ood_own_share']:.1%} | {flag_text(external.get('ood'))} |")


def _candidate_table(rows: list[dict], support: bool) -> list[str]:
    """The candidates' rows; with ``support``, the support check's column."""
    columns = 8 + support
    lines = ["| model | run | within (CV) | external balanced acc. [95% CI] | predicted share | collapsed "
             "| OOD flagged: errors flagged / not | likely wrong: errors flagged / not |"
             + (" unsupported: errors flagged / not |" if support else ""), "|---" * columns + "|"]
    for row in rows:
        lines.append(_status_row(row, columns) or _candidate_line(row, support))
    return lines


def _candidate_line(row: dict, support: bool) -> str:
    external = row["external"]
    shares = ", ".join(f"{c} {s:.0%}" for c, s in external["predicted_share"].items())
    return (f"| {row['label']} | `{row['run_id']}` | {within_text(row)} | "
            f"{interval(external['balanced_accuracy'], external['ci95'])} | {shares} | "
            f"{'**yes**' if external['collapsed'] else 'no'} | {flag_text(external.get('ood'))} | "
            f"{flag_text(external.get('likely_wrong'))} |" + (f" {flag_text(external.get('unsupported'))} |"
                                                              if support else ""))


def lodo_table(rows: list[dict]) -> list[str]:
    """One column per held-out set: balanced accuracy [group bootstrap], recall per class, collapse."""
    held = sorted({name for row in rows if row["status"] == "done" for name in row["held_out"]})
    lines = ["| model | run | " + " | ".join(f"held out: {name}" for name in held) + " |",
             "|---|---|" + "---|" * len(held)]
    for row in rows:
        if row["status"] != "done":
            lines.append(f"| {row['label']} | `{row['run_id']}` | " + " | ".join(["not computed"] * max(len(held), 1)) + " |")
            continue
        cells = []
        for name in held:
            figures = row["held_out"][name]
            # None: a class the held-out set has no image of (no recall to give).
            recall = ", ".join(f"{c} {'n/a' if r is None else f'{r:.2f}'}"
                               for c, r in figures["per_class_recall"].items())
            cells.append(f"{interval(figures['balanced_accuracy'], figures['ci95'])} (recall {recall})"
                         + (", **collapsed**" if figures["collapsed"] else ""))
        lines.append(f"| {row['label']} | `{row['run_id']}` | " + " | ".join(cells) + " |")
    return lines


def _summary(rows: list[dict]) -> str:
    """One sentence on a table: collapses, models predicting both classes, the best of those."""
    tested = [r for r in rows if r["status"] == "done"]
    collapsed = [r["label"] for r in tested if r["external"]["collapsed"]]
    # Both classes given to at least 30% of the images: the bar for "predicts both".
    both = [r for r in tested if min(r["external"]["predicted_share"].values()) >= 0.30]
    text = f"{len(tested)} of {len(rows)} models tested; {len(collapsed)} collapsed" + \
        (f" ({', '.join(collapsed)})" if collapsed else "") + "; "
    if not both:
        return text + "none gives each class to at least 30% of the images."
    best = max(both, key=lambda r: r["external"]["balanced_accuracy"])
    return text + (f"{len(both)} {'gives' if len(both) == 1 else 'give'} each class to at least 30% of the "
                   "images, the best of them "
                   f"{best['label']} at balanced accuracy {best['external']['balanced_accuracy']:.3f} (95% group "
                   f"bootstrap {bounds_text(best['external']['ci95'])}).")


def update_report(out: Path, plan: Plan = Plan(), *, compute: bool = True, log=print) -> Path:
    """Rewrite the External validity section of the report in folder ``out`` from the store, and
    its figures in ``report.json`` beside it (the second sweep's timing, which only ``reproduce``
    measures, is kept). Refused, both files left as they are, when a row the report has figures
    for would have none (:func:`check_nothing_lost`): figures are never replaced by "not computed"."""
    from leukdash.reporting.report import DATA_NAME

    out = Path(out)
    report_data = read_report_data(out)
    data = external_data(plan, compute=compute, log=log)
    check_nothing_lost(out, report_data, data)
    data["sweep"] = (report_data.get("external") or {}).get("sweep")
    path = write_section(out / REPORT_NAME, external_section(data))
    if report_data:
        write_json_atomic(out / DATA_NAME, {**report_data, "external": data})
    return path


def read_report_data(out: Path) -> dict:
    """The report data (``report.json``) of the report in folder ``out``; {} when it has none."""
    from leukdash.reporting.report import DATA_NAME

    try:
        report_data = read_json(Path(out) / DATA_NAME) or {}
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise LeukdashError(f"cannot read {Path(out) / DATA_NAME} ({error}): the report's figures would be lost; "
                            "`python -m leukdash reproduce` writes it") from None
    if not isinstance(report_data, dict):
        raise LeukdashError(f"{Path(out) / DATA_NAME} is not report data written by leukdash: "
                            "`python -m leukdash reproduce`")
    return report_data


def check_nothing_lost(out: Path, report_data: dict, data: dict) -> None:
    """Refuse, with one line, to replace the External validity section of the report in ``out``
    by the one of ``data`` when a row with figures, in ``report_data`` (its ``report.json``) or in
    ``REPORT.md``'s section itself, would have none (a store without its runs, the datasets not
    found); or when ``REPORT.md`` has the section and ``report_data`` no figures of it (damaged)."""
    from leukdash.reporting.report import DATA_NAME

    section = _section(out / REPORT_NAME)
    before = report_data.get("external")
    if section and not _is_external_data(before):
        raise LeukdashError(f"{out / DATA_NAME} has no External validity figures (missing, or its \"external\" "
                            f"damaged) while {out / REPORT_NAME} has the section: both left unchanged; "
                            "`python -m leukdash reproduce` writes them")
    lost, where = sorted(_done_rows(before or {}) - _done_rows(data)), out / DATA_NAME
    if not lost:
        lost, where = sorted(_figure_rows(section) - _figure_rows(external_section(data))), out / REPORT_NAME
    if lost:
        raise LeukdashError(
            f"{len(lost)} row(s) of the External validity section have figures in {where} and none in "
            f"this store ({RunStore().root}; first: {' / '.join(map(str, lost[0][1:]))})"
            + (f", and {', '.join(data['missing'])} not found (LEUKDASH_DATA)" if data["missing"] else "")
            + f": {REPORT_NAME} left unchanged; point LEUKDASH_ARTIFACTS at the store that holds the runs "
            "(or run `python -m leukdash reproduce`)")


def _is_external_data(external) -> bool:
    return isinstance(external, dict) and all(isinstance(external.get(part), list)
                                              for part in ("directions", "candidates", "lodo"))


def _done_rows(data: dict) -> set[tuple]:
    """The rows of external data that have figures, each by what it is (not by run id, which an
    engine version changes)."""
    fields = {"directions": ("train", "test", "preprocess", "label"), "candidates": ("train", "test", "label", "model"),
              "lodo": ("label",)}
    return {(part, *(str(row.get(name)) for name in names)) for part, names in fields.items()
            for row in (data.get(part) or []) if isinstance(row, dict) and row.get("status") == "done"}


def _section(report: Path) -> str:
    """The External validity section of the Markdown file ``report``, markers included ("" if none)."""
    text = report.read_text(encoding="utf-8", errors="replace") if report.is_file() else ""
    start, end = text.find(START), text.find(END)
    return text[start:end + len(END)] if 0 <= start < end else ""


def _figure_rows(section: str) -> set[tuple[str, str, str]]:
    """The table rows of a section's Markdown that show figures, each as ("section", its table's
    title, its model): what REPORT.md itself holds, whatever report.json says. A table's title is
    the heading or the line ending in ":" above it; a row without figures says "not computed" or
    "not evaluated"."""
    rows, title = set(), ""
    for line in section.splitlines():
        if line.startswith("### ") or line.endswith(":"):
            title = line.removeprefix("### ").split(" (`")[0].rstrip(":")  # a command in brackets left out
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("| ") else []
        if len(cells) > 1 and cells[1].startswith("`") and not {"not computed", "not evaluated"} & set(cells):
            rows.add(("section", title, cells[0]))
    return rows


def write_section(report: Path, section: str) -> Path:
    """Put ``section`` into ``report`` between the markers, replacing an older one, else at the end."""
    report = Path(report)
    text = report.read_text(encoding="utf-8") if report.is_file() else ""
    if START in text and END in text:
        text = text[:text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + ("\n\n" if text else "") + section + "\n"
    write_bytes_atomic(report, text.encode("utf-8"))  # a failed write leaves the report as it was
    return report
