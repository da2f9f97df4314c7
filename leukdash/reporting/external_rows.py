"""The figures of the External validity and across-datasets tables, read from the run store.

Each function turns one planned model (:mod:`leukdash.reporting.external_plan`) into a plain
dict, the same for the Markdown tables and for ``report.json``: a run not in the store has
``status: "not computed"``, and nothing here trains a model.

- :func:`tested_row`: a run (or ensemble) trained on one set, tested on the other by ``evaluate``
  (fold ensemble or final model): balanced accuracy with its group-bootstrap interval, collapse,
  and how the out-of-distribution and likely-wrong warnings fared (error rate among the images
  each flags and among the others).
- :func:`lodo_row`: leave one dataset out, each held-out set scored from the run's stored
  out-of-fold probabilities with the same metrics and group bootstrap as ``evaluate``.
- :func:`pooled_row`: strict folds over both sets, per source (pooled over its out-of-fold
  images), beside the same settings trained on that source alone.
"""

from __future__ import annotations

import numpy as np

# A per-group (subject) breakdown is shown for a source with at most this many groups.
MAX_GROUPS_SHOWN = 20
FLAG_FIELDS = ("share", "n_flagged", "error_flagged", "error_unflagged", "own_share")


def within(result: dict) -> dict:
    """A run's own cross-validated balanced accuracy: mean, 95% t interval, per fold."""
    summary = result["summary"]["balanced_acc"]
    return {"mean": summary["mean"], "ci95": list(summary["ci95"]),
            "folds": [fold["balanced_acc"] for fold in result["folds"]]}


def tested_row(run_id: str, test: str, *, model: str = "folds", compute: bool = True, log=print) -> dict:
    """``run_id`` tested on dataset ``test``; with ``compute``, an external test not stored yet is run."""
    from leukdash.engine.runner import load_result
    from leukdash.evaluation.evaluate import evaluate, stored_evaluations
    from leukdash.reporting.external_plan import dataset_name

    result = load_result(run_id)
    if result is None:
        return {"run_id": run_id, "status": "not computed"}
    row = {"run_id": run_id, "within": within(result)}
    try:
        external = evaluate(run_id, test, model=model) if compute else next(
            (r for r in stored_evaluations(run_id, model=model) if r["dataset"]["name"] == dataset_name(test)), None)
    except Exception as error:  # one failed row is reported in its table, not the end of the report
        log(f"external test of {run_id} ({model}) on {test} failed: {type(error).__name__}: {error}")
        external = None
    if external is None:
        return {**row, "status": "not evaluated"}
    flags = external.get("flags", {})  # absent from results stored by older versions
    return {**row, "status": "done", "external": {
        "n_images": external["n_images"], "balanced_accuracy": external["balanced_accuracy"],
        "ci95": _listed(external["intervals"]["balanced_accuracy"]), "roc_auc": external["roc_auc"],
        "predicted_share": external["predicted_share"], "collapsed": external["collapsed"],
        "ood_share": external["ood_share"], "ood_own_share": external["ood_own_share"],
        **{name: {key: flags[name][key] for key in FLAG_FIELDS} for name in ("ood", "likely_wrong", "unsupported")
           if name in flags}}}


def _listed(interval) -> list | None:
    """An interval as a list; None where the groups supported none."""
    return None if interval is None else list(interval)


def lodo_row(run_id: str) -> dict:
    """Each held-out set of a leave-one-dataset-out run (or ensemble), from its out-of-fold figures."""
    from leukdash.engine.runner import load_result
    from leukdash.evaluation.external_metrics import external_metrics

    result = load_result(run_id)
    if result is None:
        return {"run_id": run_id, "status": "not computed"}
    groups = _bootstrap_groups(run_id)
    held_out = {}
    for fold in result["folds"]:
        oof = fold["oof"]
        metrics = external_metrics(oof["true"], np.asarray(oof["proba"]), groups[np.asarray(oof["index"])],
                                   result["dataset"]["classes"], auc_interval=False)
        held_out[fold["held_out"]] = {
            "n_images": metrics["n_images"], "balanced_accuracy": metrics["balanced_accuracy"],
            "ci95": metrics["intervals"]["balanced_accuracy"], "per_class_recall": metrics["per_class_recall"],
            "predicted_share": metrics["predicted_share"], "collapsed": metrics["collapsed"]}
    return {"run_id": run_id, "status": "done", "held_out": held_out}


def _bootstrap_groups(run_id: str) -> np.ndarray:
    """The group of every image of a run on several sets, joined by its duplicates under the merge cap
    (:func:`~leukdash.engine.fold_planning.joined_groups`), as the folds of its pooled runs are drawn."""
    from leukdash.config import RunConfig
    from leukdash.data.arrays import load_arrays
    from leukdash.engine.record_shapes import member_ids
    from leukdash.engine.run_data import open_run_dataset
    from leukdash.engine.store import RunStore
    from leukdash.engine.fold_planning import joined_groups

    store = RunStore()
    meta = store.finished_meta(member_ids(store.finished_meta(run_id))[0][0])  # an ensemble: its first member
    config = RunConfig.from_dict(meta["config"])
    dataset = open_run_dataset(meta, store)
    arrays = load_arrays(dataset, config.image_size, config.preprocess)  # cached when the run was computed
    return joined_groups(dataset, arrays)


def pooled_row(run_id: str, alone: dict[str, str]) -> dict:
    """Per source of a run on both sets: accuracy pooled over its out-of-fold images and its fold
    range, balanced accuracy and recall per class, recall per group (few groups only), and the
    mean accuracy of the same settings trained on that source alone (``alone``: source -> run id)."""
    from leukdash.engine.runner import load_result

    result = load_result(run_id)
    if result is None:
        return {"run_id": run_id, "status": "not computed"}
    sources = {}
    for name, summary in result["summary"]["per_source"].items():
        values = [fold["per_source"][name]["val_acc"] for fold in result["folds"] if name in fold["per_source"]]
        single = load_result(alone[name]) if name in alone else None
        groups = summary["per_group_recall"]
        sources[name] = {
            "accuracy": summary["pooled"]["val_acc"], "fold_range": [min(values), max(values)],
            "balanced_accuracy": summary["pooled"]["balanced_acc"], "recall": summary["pooled"]["per_class_recall"],
            "groups": groups if len(groups) <= MAX_GROUPS_SHOWN else None,
            "alone": None if single is None else {"run_id": single["run_id"],
                                                  "accuracy": single["summary"]["val_acc"]["mean"]}}
    return {"run_id": run_id, "status": "done", "within": within(result), "sources": sources}
