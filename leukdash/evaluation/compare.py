"""Comparing finished runs: summaries side by side and paired McNemar tests."""

from __future__ import annotations

import numpy as np

from leukdash import arguments
from leukdash.engine.ensemble import fold_difference, validated_copies
from leukdash.engine.run_data import images_changed, same_folder
from leukdash.engine.runner import finished_result
from leukdash.engine.store import RunStore
from leukdash.evaluation.labels import MODEL_NAMES, ensemble_name, run_labels
from leukdash.metrics import holm, shown_summary, std_text


def run_label(config: dict) -> str:
    """A short human name for a run's model and its main settings, e.g. 'CNN paper (sgd, 25 ep)'
    or 'SVM on features' (the report's tables; pages name runs with :func:`run_labels`)."""
    model = config["model"]
    if model == "ensemble":
        return ensemble_name(config, run_label)
    if model == "cnn":
        return f"CNN {config['architecture']} ({config['optimizer']}, {config['epochs']} ep)"
    name = f"{config['k']}-NN" if model == "knn" else MODEL_NAMES[model]
    return f"{name} on {config['feature_set']}"


def load_results(run_ids, store: RunStore | None = None) -> list[dict]:
    """The finished runs named, in their order, each once (a run named twice is read once)."""
    store = store or RunStore()
    results = {}
    # not a set first: a run's result given for its id is named as such by finished_result
    for run_id in arguments.run_ids(run_ids):
        if isinstance(run_id, str) and run_id in results:
            continue
        result = finished_result(run_id, store)
        results[result["run_id"]] = result
    return list(results.values())


def distinct_runs(run_ids) -> list[str]:
    """The run ids in their order, each once: a run named twice is one run (compared with itself it
    would only agree, and count twice in every table)."""
    return list(dict.fromkeys(arguments.run_ids(run_ids)))


def compare_runs(run_ids, store: RunStore | None = None) -> dict:
    """Summaries of several runs (each once; one run id given bare is that one run) and a McNemar
    test for every pair evaluated on the same images."""
    results = load_results(run_ids, store)
    labels = run_labels(results)
    rocs = [out_of_fold_roc(r) for r in results]
    runs = [{"run_id": r["run_id"], "label": label, "config": r["config"],
             "dataset": r["dataset"]["name"], "summary": shown_summary(r["summary"], len(r["folds"])),
             "val_acc_per_fold": [f["val_acc"] for f in r["folds"]],
             "roc_auc": roc["auc"], "roc_auc_kind": roc["kind"], "collapse": collapse_of(r),
             "ties": ties_note(r), "calibration": calibration_note(r)}
            for r, label, roc in zip(results, labels, rocs)]
    label_of = dict(zip((r["run_id"] for r in results), labels))
    correct = {r["run_id"]: _correct_by_image(r) for r in results}  # once per run, not once per pair
    tests = []
    for i, first in enumerate(results):
        for second in results[i + 1:]:
            tests.append({"run_a": first["run_id"], "run_b": second["run_id"],
                          "label_a": label_of[first["run_id"]], "label_b": label_of[second["run_id"]],
                          **paired_mcnemar(first, second, correct)})
    # Several pairs are one family of tests: each p-value is also given Holm-adjusted over it.
    tested = [test for test in tests if test["p_value"] is not None]
    for test, adjusted in zip(tested, holm([test["p_value"] for test in tested])):
        test["p_holm"] = adjusted
    return {"runs": runs, "mcnemar": tests}


def paired_mcnemar(first: dict, second: dict, correct: dict | None = None) -> dict:
    """Exact McNemar test on the pooled out-of-fold predictions both runs made on the same images.

    One pair per image: its untouched original. A run validated under the paper's protocol also
    predicted augmented copies of each image; they are not independent of their original, so counting
    them as pairs of their own would shrink the p-value as if there were ``factor`` times more images.
    A copy can be answered otherwise than its original, though, so the test may judge other rows than
    the accuracy shown beside it: ``note`` says so (:func:`originals_note`), and says when the runs'
    folds differ (:func:`folds_note`). ``correct``: each run's right or wrong per image by run id, when
    the caller made them already (see :func:`compare_runs`)."""
    from leukdash.metrics import mcnemar

    if first["dataset"]["fingerprint"] != second["dataset"]["fingerprint"]:
        # A class subset has its own fingerprint: two tasks of one dataset are not two datasets.
        same = same_folder(first["dataset"], second["dataset"])
        note = "different tasks (class subsets) of one dataset" if same else "different datasets"
        order = [list(run["dataset"].get("classes") or []) for run in (first, second)]
        if same and order[0] != order[1] and sorted(order[0]) == sorted(order[1]):
            note = (f"the same classes in other orders ({', '.join(order[0])} vs {', '.join(order[1])}), so their "
                    "images are numbered apart: give one run's --classes in the other's order to compare them")
        elif same and order[0] == order[1]:  # one folder, one task: its images changed between the runs
            note = images_changed(first["dataset"], second["dataset"])
        return {"p_value": None, "n": 0, "note": note}
    if correct is None:
        correct_a, correct_b = _correct_by_image(first), _correct_by_image(second)
    else:
        correct_a, correct_b = correct[first["run_id"]], correct[second["run_id"]]
    shared = sorted(set(correct_a) & set(correct_b))
    if not shared:
        return {"p_value": None, "n": 0, "note": "no images validated by both runs"}
    test = mcnemar(np.array([correct_a[k] for k in shared]), np.array([correct_b[k] for k in shared]))
    notes = [originals_note(first, second, [correct_a[k] for k in shared], [correct_b[k] for k in shared]),
             folds_note(first, second, shared)]
    return {**test, "n": len(shared), "note": "; ".join(note for note in notes if note)}


def originals_note(first: dict, second: dict, right_a, right_b) -> str:
    """What a McNemar test beside a run validated on augmented copies judges: the originals only, each run's right
    answers on them given, since a copy's answer can differ from its original's and the accuracy shown beside the
    test counts the copies too. Empty when neither run validated copies."""
    if not (validated_copies(first) or validated_copies(second)):
        return ""
    n = len(right_a)
    return (f"on the originals only (their accuracy shown counts the augmented validation copies too): "
            f"{first['run_id']} right on {sum(right_a)}/{n}, {second['run_id']} on {sum(right_b)}/{n}")


def folds_note(first: dict, second: dict, shared) -> str:
    """Says when two runs validated the shared images in other fold splits (another seed, number of folds or
    holdout): pairing by image still holds, but the difference mixes the split's variance with the models'.
    Empty when every shared image was in the same fold of both (or both splits group the images alike)."""
    def fold_of(result):
        return {int(i): number for number, fold in enumerate(result["folds"]) for i in fold["oof"]["index"]}

    folds_a, folds_b = fold_of(first), fold_of(second)
    pairs = {(folds_a[k], folds_b[k]) for k in shared}
    if len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}):  # one split, numbered alike or not
        return ""
    return (f"different folds ({fold_difference(first['config'], second['config'])}): the difference mixes the "
            f"fold split's variance with the models'")


def out_of_fold(result: dict, copies: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every row a run validated, pooled over its folds: its image's index in the run's dataset, its
    copy number (0 the original; 1.. augmented copies, validated beside it under the paper's
    protocol), true class and out-of-fold class probabilities, ``(index (N,), copy (N,), true (N,),
    proba (N, C))``. ``copies``: keep the augmented copies, the rows a run's accuracy and confusion
    matrix count (``False``: the originals only)."""
    index, copy, true, proba = [], [], [], []
    for fold in result["folds"]:
        oof = fold["oof"]
        kept = np.ones(len(oof["copy"]), bool) if copies else np.asarray(oof["copy"]) == 0
        index.append(np.asarray(oof["index"], dtype=np.int64)[kept])
        copy.append(np.asarray(oof["copy"], dtype=np.int64)[kept])
        true.append(np.asarray(oof["true"], dtype=np.int64)[kept])
        proba.append(np.asarray(oof["proba"], dtype=np.float64)[kept])
    if not index:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0))
    return np.concatenate(index), np.concatenate(copy), np.concatenate(true), np.concatenate(proba)


def ties_note(result: dict) -> str | None:
    """How many of a run's out-of-fold answers are ties between the top classes (:func:`tied_answers`)
    and what its figures counted them as (argmax: the first tied class in the run's order, which no
    model chose), else None (and for a run without stored answers, :func:`stored_answers`). Counted from
    the stored out-of-fold probabilities, so runs stored before this note was made have it too."""
    from collections import Counter

    from leukdash.evaluation.external_metrics import ties_text, tied_answers

    answers = stored_answers(result)
    if answers is None:
        return None
    proba = answers[3]
    tied = tied_answers(proba)
    if not tied.any():
        return None
    classes = list(result["dataset"]["classes"])
    counted = Counter(classes[i] for i in sorted(proba[tied].argmax(axis=1)))
    odd_k = "; an odd k avoids ties between two classes" if result["config"]["model"] == "knn" and len(classes) == 2 \
        else ""
    return (f"{ties_text(int(tied.sum()), f'{len(proba)} out-of-fold answers', counted)}: the figures depend on the "
            f"class order{odd_k}")


def calibration_note(result: dict) -> str | None:
    """Which folds' SVM has a probability calibration that reverses its decisions (stored with the fold:
    :func:`leukdash.models.classic.reversed_calibration`) and what that means, else None."""
    from leukdash.evaluation.external_metrics import listed

    folds = [f"fold {fold['fold'] + 1}" for fold in result["folds"] if fold.get("calibration_reversed") is True]
    if not folds:
        return None
    one = len(folds) == 1
    return (f"{listed(folds)}: the SVM's probability calibration reverses {'its' if one else 'their'} decisions "
            "(the decision values ran against the labels on held-out parts of the training images), so its answers "
            f"turn the SVM's own decisions around: {'it' if one else 'they'} learnt nothing that holds on images "
            f"{'it' if one else 'they'} did not train on (noise or conflicting labels?)")


def collapse_of(result: dict) -> str | None:
    """:func:`~leukdash.evaluation.external_metrics.collapse_note` of a run's out-of-fold answers, pooled and fold
    by fold, on the rows its accuracy counts: what to know of a run whose answers give one class to nearly every
    image, else None (and for a run without stored answers, :func:`stored_answers`)."""
    from leukdash.evaluation.external_metrics import collapse_note

    answers = stored_answers(result)
    if answers is None:
        return None
    folds = np.concatenate([np.full(len(fold["oof"]["true"]), fold["fold"]) for fold in result["folds"]])
    return collapse_note(answers[2], answers[3], result["dataset"]["classes"], folds)


def stored_answers(result: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`out_of_fold` of a run, or None where it has none to tell of: a fold without stored answers
    (a result summarised by hand), or no answer at all."""
    if not all("oof" in fold for fold in result["folds"]):
        return None
    answers = out_of_fold(result)
    return answers if len(answers[0]) else None


def out_of_fold_roc(result: dict) -> dict:
    """The ROC curve of a run from its pooled out-of-fold probabilities (:func:`out_of_fold`), on
    the rows its accuracy counts (under the paper's protocol the augmented copies too): for two
    classes, the first (ALL in ALL vs HEALTHY) against the other; for more, one-vs-rest
    micro-averaged (every image and class one decision). Returns ``fpr``, ``tpr``, ``auc`` and
    ``kind`` (what the curve is of); ``auc`` is None where the images hold one class only."""
    from sklearn.metrics import roc_auc_score, roc_curve

    arguments.result(result)
    classes = list(result["dataset"]["classes"])
    two = len(classes) == 2
    kind = f"{classes[0]} vs {classes[1]}" if two else f"micro-average of {len(classes)} classes, one vs rest"
    _, _, true, proba = out_of_fold(result)
    if len(np.unique(true)) < 2:
        return {"fpr": [], "tpr": [], "auc": None, "kind": kind}
    if two:
        positive, score = true == 0, proba[:, 0]
    else:
        positive, score = (true[:, None] == np.arange(len(classes))).ravel(), proba.ravel()
    fpr, tpr, _ = roc_curve(positive, score)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "auc": float(roc_auc_score(positive, score)), "kind": kind}


def _correct_by_image(result: dict) -> dict[int, bool]:
    """Right or wrong on each original image: McNemar pairs images, not copies (:func:`paired_mcnemar`)."""
    index, _, true, proba = out_of_fold(result, copies=False)
    guesses = proba.argmax(axis=1) if len(index) else []
    return {int(i): bool(t == guess) for i, t, guess in zip(index, true, guesses)}


def format_comparison(comparison: dict) -> str:
    width = max([len("run")] + [len(run["label"]) for run in comparison["runs"]])
    lines = [f"{'run':<18} {'label':<{width}} {'val_acc':>8} {'std':>7} {'min':>7} {'max':>7} {'roc_auc':>8}"]
    for run in comparison["runs"]:
        acc = run["summary"]["val_acc"]
        std = std_text(acc, len(run["val_acc_per_fold"]))
        auc = "n/a" if run.get("roc_auc") is None else f"{run['roc_auc']:.4f}"
        lines.append(f"{run['run_id']:<18} {run['label']:<{width}} {acc['mean']:>8.4f} {std:>7} "
                     f"{acc['min']:>7.4f} {acc['max']:>7.4f} {auc:>8}")
    kinds = dict.fromkeys(run["roc_auc_kind"] for run in comparison["runs"] if run.get("roc_auc") is not None)
    if kinds:  # what the figures are, where there are figures
        lines.append(f"roc_auc: pooled out-of-fold on the rows val_acc counts (under the paper protocol its augmented "
                     f"validation copies too), {'; '.join(kinds)} (of two classes the first is the positive one; of "
                     "more, every image and class is one decision)")
    lines += [f"note: {run['run_id']}: {run['collapse']}" for run in comparison["runs"] if run.get("collapse")]
    lines += [f"warning: {run['run_id']}: {run['ties']}" for run in comparison["runs"] if run.get("ties")]
    lines += [f"warning: {run['run_id']}: {run['calibration']}" for run in comparison["runs"] if run.get("calibration")]
    family = sum(test["p_value"] is not None for test in comparison["mcnemar"])
    for test in comparison["mcnemar"]:
        p = "n/a" if test["p_value"] is None else f"{test['p_value']:.4g}"
        holm_p = f", Holm-adjusted p = {test['p_holm']:.4g}" if family > 1 and "p_holm" in test else ""
        lines.append(f"McNemar {test['run_a']} vs {test['run_b']}: p = {p}{holm_p} (n = {test['n']} images) "
                     f"{test['note']}".rstrip())
    return "\n".join(lines)
