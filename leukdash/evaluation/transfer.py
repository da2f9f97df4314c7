"""How well a finished run transfers to images of a lab it never saw, from what the store holds.

Cross-validation within one lab says little about another lab (raw models reach 0.99 on
ALL-IDB2 and collapse on C-NMC), so settings are better chosen by a transfer figure:

- ``lodo``: the balanced accuracy of the same settings under leave-one-dataset-out (each
  dataset validated by models trained on the others), mean over the held-out datasets. A run
  with ``--protocol lodo`` is its own; a run on several datasets has one when its lodo sibling
  (the same config, protocol ``lodo``) is finished in the store.
- ``external``: otherwise, the mean balanced accuracy of the run's stored external tests
  (``evaluate RUN_ID DATASET``). Runs compared are compared on one test set: a test on an earlier
  state of a folder than another run's later test (images added or removed between them) is left
  out of the figure, and named in the ranking (``earlier``), to be evaluated again.

Neither is computed here: a run without either has no transfer figure (``None``).
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from leukdash import arguments
from leukdash.config import RunConfig
from leukdash.engine.store import RunStore
from leukdash.errors import LeukdashError

RANKINGS = ("lodo", "cv")
# The folds of the protocol's default (the paper's 5): a run with fewer is a quick try.
FULL_PROTOCOL_FOLDS = next(f.default for f in fields(RunConfig) if f.name == "folds")


def transfer_score(run_id: str, store: RunStore | None = None, current: dict[str, str] | None = None) -> dict | None:
    """``{"balanced_accuracy", "source": "lodo" | "external", "run_id", "datasets"}`` or None.

    ``current``: the fingerprint of each tested folder's images now, as the runs compared last
    tested them (:func:`~leukdash.evaluation.evaluate.current_states`); the external tests of
    another state are left out. Default: the run's own latest tests."""
    from leukdash.engine.record_shapes import is_ensemble
    from leukdash.engine.runner import load_result

    store = store or RunStore()
    result = load_result(run_id, store)
    if result is None:
        return None
    config = result["config"]
    lodo = result if config.get("protocol") == "lodo" else None
    if lodo is None and "," in str(config.get("dataset")) and not is_ensemble(store.read_meta(run_id)):
        sibling = _lodo_sibling(config)
        lodo = load_result(sibling, store) if sibling else None
    if lodo is not None:
        return {"balanced_accuracy": float(np.mean([fold["balanced_acc"] for fold in lodo["folds"]])),
                "source": "lodo", "run_id": lodo["run_id"], "datasets": [f.get("held_out") for f in lodo["folds"]]}
    from leukdash.evaluation.evaluate import stored_evaluations

    tests = [test for test in stored_evaluations(run_id, store) if not _earlier(test, current)]
    if not tests:
        return None
    return {"balanced_accuracy": float(np.mean([t["balanced_accuracy"] for t in tests])), "source": "external",
            "run_id": run_id, "datasets": [t["dataset"]["name"] for t in tests]}


def _earlier(test: dict, current: dict[str, str] | None) -> bool:
    """Whether a stored external test is on an earlier state of its folder than ``current`` holds."""
    from leukdash.evaluation.evaluate import tested_folder

    return current is not None and current.get(tested_folder(test), test["dataset"].get("fingerprint")) != \
        test["dataset"].get("fingerprint")


def transfer_scores(run_ids: list[str], store: RunStore | None = None) -> dict[str, dict | None]:
    """Each run's :func:`transfer_score`, their external tests all on the state of each folder the
    last of them tested (so that every figure compared is on the same images)."""
    from leukdash.evaluation.evaluate import current_states

    store, run_ids = store or RunStore(), list(dict.fromkeys(arguments.run_ids(run_ids)))
    current = current_states(run_ids, store)
    return {run_id: transfer_score(run_id, store, current) for run_id in run_ids}


def _lodo_sibling(config: dict) -> str | None:
    """The run id the same settings get under leave-one-dataset-out (None if they cannot)."""
    from leukdash.config import RunConfig
    from leukdash.engine.runner import resolve

    try:
        return resolve(RunConfig.from_dict(config).with_changes(protocol="lodo", test_fraction=None)).run_id
    except LeukdashError:  # a dataset no longer found, say: no sibling to look up
        return None


def rank_runs(run_ids: list[str], by: str, store: RunStore | None = None) -> list[dict]:
    """Finished runs, best first by ``lodo`` (transfer; runs without a figure last, by cv) or
    ``cv`` (mean cross-validated balanced accuracy). Each row: ``run_id``, ``cv``, ``transfer``,
    ``earlier`` (the folders its external tests found in an earlier state than another run's
    later test: left out of its figure, to be evaluated again)."""
    from leukdash.engine.runner import load_result
    from leukdash.evaluation.evaluate import current_states, stored_evaluations

    if by not in RANKINGS:
        raise LeukdashError(f"rank by one of {', '.join(RANKINGS)}, got {by!r}")
    store = store or RunStore()
    rows = []
    # a run a grid names twice (a value given twice) is ranked once
    run_ids = list(dict.fromkeys(arguments.run_ids(run_ids)))
    current = current_states(run_ids, store)
    for run_id in run_ids:
        result = load_result(run_id, store)
        if result is None:
            continue
        rows.append({"run_id": run_id, "config": result["config"],
                     "cv": float(result["summary"]["balanced_acc"]["mean"]),
                     "transfer": transfer_score(run_id, store, current),
                     "earlier": [test["dataset"]["name"] for test in stored_evaluations(run_id, store)
                                 if _earlier(test, current)]})

    def key(row):
        transfer = row["transfer"]["balanced_accuracy"] if row["transfer"] else None
        if by == "cv":
            return (-row["cv"],)
        return (transfer is None, -(transfer or 0.0), -row["cv"])

    return sorted(rows, key=key)


def best_transferable(run_ids: list[str], store: RunStore | None = None) -> str | None:
    """The run with the highest transfer figure among runs trained on real (not synthetic)
    images; None when no such run has one (Predict's default for a real upload)."""
    store = store or RunStore()
    scored = [(score["balanced_accuracy"], run_id) for run_id, score in transfer_scores(run_ids, store).items()
              if not (store.read_meta(run_id) or {}).get("dataset", {}).get("synthetic") and score is not None]
    return max(scored)[1] if scored else None


def best_validated(run_ids: list[str], store: RunStore | None = None) -> str | None:
    """Predict's default where no run transfers: the run with the highest cross-validated balanced
    accuracy, runs of the full protocol (at least the default number of folds) before quicker ones,
    so that a newer run does not take over by being newer (on a shared deployment, any visitor's
    throwaway run was every visitor's default); None when no run has a summary."""
    store = store or RunStore()
    ranked = [(len(meta["fold_ids"]) >= FULL_PROTOCOL_FOLDS, summary["balanced_acc"]["mean"], run_id)
              for run_id in arguments.run_ids(run_ids)
              if (meta := store.read_meta(run_id)) and (summary := store.read_summary(run_id))]
    return max(ranked)[2] if ranked else None
