"""Predictions as a table: one flat row per image, and that table as CSV text.

Whoever classifies a folder of images wants the answers in a spreadsheet beside their own notes:
the Predict page's "Answers (CSV)" and ``python -m leukdash predict --csv`` write the same rows;
``python -m leukdash oof RUN_ID`` writes a run's own out-of-fold answers, for error analysis, and
``evaluate --csv`` an external test's.
A row holds the answer the product headlines (:func:`leukdash.evaluation.answer.headline`) and
every warning the page would show beside it, so that the table alone never reads as more
certain than the page.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from leukdash import arguments
from leukdash.errors import LeukdashError
from leukdash.evaluation.answer import floored_percentile, headline

# A check that could not be made (the run's dataset gone, say) reads so; one that does not apply
# to this run or image (no segmentation for a run on whole images) is left empty.
UNAVAILABLE = "unavailable"

# A spreadsheet runs a cell that starts with one of these as a formula ("CSV injection"): an image
# named "=HYPERLINK(...).png" must stay text, so such a cell gets a leading apostrophe.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def answer_row(entry: dict) -> dict:
    """One prediction as a flat row.

    Parameters
    ----------
    entry : an entry of :func:`leukdash.evaluation.predict.predict_files`, or
        ``{"file": name, **result}`` for a result of ``predict_images``; an entry with ``error``
        (an unreadable file) gives a row with the file and the error only.

    Returns
    -------
    dict with ``file``, ``predicted`` and ``probability`` (the headline), ``answer_from``
    ("mean" of the fold models, or the "out-of-fold" model of a known image), ``votes``,
    ``p_<class>`` for each class, ``outside_training`` and ``outside_view`` (the view that flagged
    it: "prepared" or "acquisition"), ``likely_wrong`` and ``unsupported``
    ("yes", "no", "unavailable", or empty for a known image's support), ``distance_percentile``,
    ``cell_segmentation`` ("ok" or the failure),
    ``known_image`` (the run's file it matches), ``note`` (the file's, then the headline's doubt:
    a tie, a vote against the mean) and ``error``.
    """
    if "error" in entry:
        return {"file": entry["file"], "error": entry["error"]}
    answer = headline(entry)
    ood = entry.get("ood")
    probabilities = exported_probabilities(answer["probabilities"])
    return {
        "file": entry["file"],
        "predicted": answer["predicted"],
        "probability": probabilities[answer["predicted"]],
        "answer_from": answer["source"],
        "votes": "; ".join(answer["votes"]),
        **{f"p_{label}": p for label, p in probabilities.items()},
        "outside_training": _check(ood, lambda c: "yes" if c["outside"] else "no"),
        "outside_view": _check(ood, lambda c: c.get("view", "prepared") if c["outside"] else ""),
        "distance_percentile": "" if not ood or "error" in ood else floored_percentile(ood["percentile"], 1),
        "likely_wrong": _check(entry.get("likely_wrong"), lambda c: "yes" if c["flag"] else "no"),
        "unsupported": _check(entry.get("unsupported"), lambda c: "yes" if c["flag"] else "no"),
        "cell_segmentation": _check(entry.get("cell"), lambda c: c["failure"] or "ok"),
        "known_image": _check(entry.get("known"), lambda c: c["file"]),
        "note": " ".join(filter(None, [entry.get("note"), answer["disagreement"]])),
    }


def answers_csv(entries: list[dict]) -> str:
    """:func:`answer_row` of each entry as CSV text (a header line, then a row per entry, in order).

    The columns are the same for every row: a class column for each class any answer gives, in the
    order first met; an unreadable file's row leaves the answer's columns empty.
    """
    entries = arguments.listed(entries, "entries", "answers (the entries of predict_files or predict_images)")
    return csv_text([answer_row(entry) for entry in entries], last=("error",))


def external_csv(results: list[dict]) -> str:
    """The ``images`` of external tests (:func:`leukdash.evaluation.evaluate.image_rows`) as CSV
    text, one row per image, a probability column per class, whether the answer is right and
    whether it is a tie between the top classes (``undecided``); of
    several tests (``evaluate --model both``), a first column names the model of each row."""
    return csv_text([{**({"model": result["model"]} if len(results) > 1 else {}),
                      "file": row["file"], "group": row["group"], "true": row["true"], "predicted": row["predicted"],
                      "correct": "yes" if row["true"] == row["predicted"] else "no",
                      # a tie, counted as the first tied class; absent from results stored before ties were marked
                      "undecided": {True: "yes", False: "no"}.get(row.get("undecided"), ""),
                      **{f"p_{c}": v for c, v in exported_probabilities(row["probabilities"]).items()},
                      "outside_training": "yes" if row["outside_training"] else "no",
                      "likely_wrong": "yes" if row["likely_wrong"] else "no",
                      # absent from results stored before the support check
                      "unsupported": {True: "yes", False: "no"}.get(row.get("unsupported"), "")}
                     for result in results for row in result["images"]])


def out_of_fold_rows(run_id: str, store=None) -> list[dict]:
    """Each row a finished run validated, in the dataset's order: its file, ``copy`` (0 the image
    itself; 1.. its augmented copies, which the paper's protocol validates and counts in the run's
    figures), true class, the fold that validated it (1-based, as tables number folds), that fold
    model's answer, whether it is right, ``undecided`` ("yes" where its top classes tie, and the answer
    is only the first of them in the run's order, as evaluate's CSV marks it) and each class's
    probability. Where the run's images cannot
    be named (its dataset gone and no reference stored beside it), ``file`` is the image's index,
    ``#12``."""
    from leukdash.engine.runner import finished_result
    from leukdash.evaluation.compare import out_of_fold
    from leukdash.evaluation.external_metrics import tied_answers

    result = finished_result(run_id, store)
    classes = list(result["dataset"]["classes"])
    index, copy, true, proba = out_of_fold(result)
    order = np.lexsort((copy, index))  # the dataset's order, each image's copies after it, not the folds' order
    index, copy, true, proba = index[order], copy[order], true[order], proba[order]
    fold_of = {int(i): fold["fold"] + 1 for fold in result["folds"] for i in fold["oof"]["index"]}
    names = _image_names(run_id, store, index, true)
    tied = tied_answers(proba) if len(proba) else np.zeros(0, bool)
    return [{"file": names[n], "copy": int(k), "true": classes[t], "fold": fold_of[int(i)],
             "predicted": classes[int(p.argmax())], "correct": "yes" if p.argmax() == t else "no",
             "undecided": "yes" if tie else "no",
             **{f"p_{c}": v for c, v in exported_probabilities(dict(zip(classes, p))).items()}}
            for n, (i, k, t, p, tie) in enumerate(zip(index, copy, true, proba, tied))]


def exported_probabilities(probabilities: dict) -> dict:
    """An image's class probabilities as the tables and ``--json`` give them: divided by their sum,
    with 6 decimals and the rounding's remainder on the largest, so that they sum to 1 within 1e-6,
    as tools that take probabilities check (scikit-learn's ``roc_auc_score``): GaussianNB's rows
    sum to 1 +- 2e-4 (float32 features), and rounding each class on its own drifts. The stored
    records and the figures keep what the models gave."""
    values = np.asarray(list(probabilities.values()), dtype=float)
    rounded = np.round(values / values.sum(), 6)
    top = int(rounded.argmax())
    rounded[top] = round(1.0 - (rounded.sum() - rounded[top]), 6)
    return dict(zip(probabilities, rounded.tolist()))


def exported_prediction(prediction: dict) -> dict:
    """A prediction (:func:`leukdash.evaluation.predict.predict_images`) as ``predict --json`` gives
    it: its probabilities, and those of a known image's out-of-fold model, as
    :func:`exported_probabilities`."""
    known = prediction.get("known") or {}
    return {**prediction, "probabilities": exported_probabilities(prediction["probabilities"]),
            **({"known": {**known, "probabilities": exported_probabilities(known["probabilities"])}}
               if known.get("probabilities") else {})}


def confident_mistakes(run_id: str, store=None, limit: int = 24) -> list[dict]:
    """The run's out-of-fold mistakes (rows of :func:`out_of_fold_rows`), the most confident first:
    the images a model is surest about and wrong on are the first worth looking at (a label
    error, an artefact, a class boundary), up to ``limit``."""
    return surest_mistakes(out_of_fold_rows(run_id, store), limit)


def surest_mistakes(rows: list[dict], limit: int = 24) -> list[dict]:
    """:func:`confident_mistakes` of rows already read."""
    wrong = [row for row in rows if row["correct"] == "no"]
    return sorted(wrong, key=lambda row: -row[f"p_{row['predicted']}"])[:limit]


def _image_names(run_id: str, store, index, true) -> list[str]:
    """The relative file of each image index, from the run's stored reference (the images in the
    order the run loaded them); ``#index`` where it cannot be read or does not line up (see
    :func:`names_unavailable`)."""
    from leukdash.evaluation.reference import known_reference

    try:
        reference = known_reference(run_id, store)
    except (LeukdashError, OSError):
        reference = None
    if reference is not None and len(index) and index.max() < len(reference["labels"]) \
            and (reference["labels"][index] == true).all():
        return [str(reference["relative"][i]) for i in index]
    return [f"#{i}" for i in index]


def names_unavailable(rows: list[dict], run_id: str, store=None) -> str | None:
    """Why rows of :func:`out_of_fold_rows` name their images ``#index`` (in the order the run
    loaded them) rather than by file, or None when they name files."""
    if not any(str(row["file"]).startswith("#") for row in rows):
        return None
    from leukdash.evaluation.reference import known_reference

    try:
        known_reference(run_id, store)
        reason = "the run's stored copies do not line up with its answers"
    except (LeukdashError, OSError) as error:
        reason = str(error)
    return (f"file names unavailable ({reason}): each image is named by its place in the order the run loaded "
            "them (#0, #1, ...)")


def csv_text(rows: list[dict], last: tuple[str, ...] = ()) -> str:
    """Rows as CSV text: a header of every column any row has, in the order first met (``last``
    at the end), an empty cell where a row lacks one; a cell a spreadsheet would run as a formula
    is written as text."""
    columns = list(dict.fromkeys(name for row in rows for name in row if name not in last)) + list(last)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({name: _as_text(value) for name, value in row.items()} for row in rows)
    return text.getvalue()


def _check(value: dict | None, say) -> str:
    if not value:
        return ""
    return UNAVAILABLE if "error" in value else say(value)


def _as_text(value):
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value
