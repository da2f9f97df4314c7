"""How well a finished run transfers to images of a lab it never saw, from what the store holds.

Cross-validation within one lab says little about another lab (raw models reach 0.99 on
ALL-IDB2 and collapse on C-NMC), so settings are better chosen by a transfer figure:

- ``lodo``: the balanced accuracy of the same settings under leave-one-dataset-out (each
  dataset validated by models trained on the others), mean over the held-out datasets. A run
  with ``--protocol lodo`` is its own; a run on several datasets has one when its lodo sibling
  (the same config, protocol ``lodo``) is finished in the store.
- ``external``: otherwise, the balanced accuracy of the run's stored external tests
  (``evaluate RUN_ID DATASET``), their mean weighted by the images each scored. Runs compared are
  compared on the same test sets: a test on an earlier state of a folder than another run's later
  test (images added or removed between them; not another class order, which tests the same images)
  is left out of the figure, and named in the ranking (``earlier``), to be evaluated again; and only
  the folders the runs tested share count (:func:`shared_folders`; those the runs on real images share,
  where any was tested), the others named (``elsewhere``), so that no run ranks higher for a small test
  the others never had.

Neither is computed here: a run without either has no transfer figure (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from leukdash import arguments
from leukdash.config import RunConfig
from leukdash.engine.store import RunStore
from leukdash.errors import LeukdashError

RANKINGS = ("lodo", "cv")
# The folds of the protocol's default (the paper's 5): a run with fewer is a quick try.
FULL_PROTOCOL_FOLDS = next(f.default for f in fields(RunConfig) if f.name == "folds")


def _figure(run_id: str, lodo: dict | None, tests: dict[str, dict], shared: set[str]) -> dict | None:
    """A run's transfer figure from its leave-one-dataset-out result, else from its current tests by folder
    on the folders ``shared`` (none where it lacks one of them): the mean of their balanced accuracies
    weighted by the images each scored (a test of 3 images weighs less than one of 300)."""
    if lodo is not None:
        return {"balanced_accuracy": float(np.mean([fold["balanced_acc"] for fold in lodo["folds"]])),
                "source": "lodo", "run_id": lodo["run_id"], "datasets": [f.get("held_out") for f in lodo["folds"]]}
    if not shared <= set(tests):
        return None
    tests = {folder: test for folder, test in tests.items() if folder in shared}
    if not tests or not sum(test["n_images"] for test in tests.values()):
        return None
    ordered = sorted(tests.values(), key=lambda test: test["dataset"]["name"])
    return {"balanced_accuracy": float(np.average([t["balanced_accuracy"] for t in ordered],
                                                  weights=[t["n_images"] for t in ordered])),
            "source": "external", "run_id": run_id, "datasets": [t["dataset"]["name"] for t in ordered]}


def _lodo_result(run_id: str, result: dict | None, store: RunStore) -> dict | None:
    """The leave-one-dataset-out result that is the run's transfer figure (``result``: the run's): its own
    (``--protocol lodo``), or, for a run on several datasets, its finished lodo sibling's; None otherwise."""
    from leukdash.engine.record_shapes import is_ensemble
    from leukdash.engine.runner import load_result

    if result is None or result["config"].get("protocol") == "lodo":
        return result
    if "," in str(result["config"].get("dataset")) and not is_ensemble(store.read_meta(run_id)):
        sibling = _lodo_sibling(result["config"])
        return load_result(sibling, store) if sibling else None
    return None


def _earlier(test: dict, current: dict[str, dict] | None) -> bool:
    """Whether a stored external test is on an earlier state of its folder than ``current`` holds."""
    from leukdash.evaluation.evaluate import same_state, tested_folder

    return current is not None and not same_state(test["dataset"],
                                                  current.get(tested_folder(test, current), test["dataset"]))


def shared_folders(tests: dict[str, dict[str, dict]]) -> set[str]:
    """The folders runs' external figures are compared on, from each run's current tests by folder
    (runs with a leave-one-dataset-out figure not among them): the folders tested by every run that
    was tested on the folder most of them were tested on (on a tie, the one of more images, then by
    name). A figure over other folders, or over a run's every test, would rank runs on unequal sets:
    a run tested only elsewhere has no figure among these runs, and its tests are named instead."""
    runs_of, images_of = {}, {}
    for by_folder in tests.values():
        for folder, test in by_folder.items():
            runs_of[folder] = runs_of.get(folder, 0) + 1
            images_of[folder] = max(images_of.get(folder, 0), test["n_images"])
    if not runs_of:
        return set()
    anchor = min(runs_of, key=lambda folder: (-runs_of[folder], -images_of[folder], folder))
    return set.intersection(*(set(by_folder) for by_folder in tests.values() if anchor in by_folder))


def _on_real_images(result: dict | None, run_id: str, store: RunStore) -> bool:
    """Whether the run was trained on real images, not the synthetic demo data: from its ``result``, or its
    record where it has none (not finished)."""
    return not (result or store.read_meta(run_id) or {}).get("dataset", {}).get("synthetic")


def _choosing(tests: dict[str, dict[str, dict]], real: set[str]) -> dict[str, dict[str, dict]]:
    """The runs' current tests by folder that choose the folders they are compared on (:func:`shared_folders`):
    those of the runs on real images (``real``), where any of them was tested; else every run's. Synthetic
    demo runs tested on a demo folder would otherwise make it the folder every run is compared on, leaving the
    real runs, the only ones Predict opens on, without a figure."""
    chosen = {run_id: by_folder for run_id, by_folder in tests.items() if by_folder and run_id in real}
    return chosen or tests


@dataclass(frozen=True)
class Comparison:
    """What runs' transfer figures are and are compared on, each run's records read once."""

    results: dict[str, dict | None]  # each run's result (None: not finished)
    real: set[str]  # the runs trained on real images, not the synthetic demo data
    standings: dict[str, dict]  # each run's figure and what is left out of it: see rank_runs
    compared_on: list[str]  # the names of the test sets the external figures are compared on (shared_folders)


def comparison(run_ids: list[str], store: RunStore | None = None) -> Comparison:
    """The runs' transfer figures, their external tests all on the state of each folder the last of them
    tested and on the folders they share, chosen by the runs on real images (:func:`_choosing`), so that every
    figure compared is on the same images, and what each run's figure leaves out (:func:`rank_runs`)."""
    from leukdash.engine.runner import load_result
    from leukdash.evaluation.evaluate import current_states, latest_by_folder, tested_folder, tested_runs

    # a run a grid names twice (a value given twice) is compared once
    store, run_ids = store or RunStore(), list(dict.fromkeys(arguments.run_ids(run_ids)))
    found = tested_runs(run_ids, store)
    current = current_states(found)
    results = {run_id: load_result(run_id, store) for run_id in run_ids}
    real = {run_id for run_id in run_ids if _on_real_images(results[run_id], run_id, store)}
    lodo = {run_id: _lodo_result(run_id, results[run_id], store) for run_id in run_ids}
    listed = {run_id: latest_by_folder(found[run_id], current) for run_id in run_ids}
    tests = {run_id: {tested_folder(test, current): test for test in listed[run_id] if not _earlier(test, current)}
             for run_id in run_ids if lodo[run_id] is None}
    shared = shared_folders(_choosing(tests, real))
    standings = {}
    for run_id in run_ids:
        mine = tests.get(run_id, {})
        earlier = [test for test in listed[run_id] if _earlier(test, current)]
        # a run tested only on earlier states lacks the other shared folders too (one named earlier is told apart)
        untested = shared - set(mine) - {tested_folder(test, current) for test in earlier} if run_id in tests else set()
        standings[run_id] = {
            "transfer": _figure(run_id, lodo[run_id], mine, shared),
            "earlier": [test["dataset"]["name"] for test in earlier],
            "elsewhere": sorted(test["dataset"]["name"] for folder, test in mine.items() if folder not in shared),
            "untested": sorted(current[folder]["name"] for folder in untested) if listed[run_id] else []}
    return Comparison(results, real, standings, sorted(current[folder]["name"] for folder in shared))


def transfer_overview(run_ids: list[str], store: RunStore | None = None) -> dict:
    """What a page shows of the runs' transfer, from one :func:`comparison`: each run's figure (``scores``:
    ``{"balanced_accuracy", "source": "lodo" | "external", "run_id", "datasets"}`` or None), what is left out
    of it (``standings``), the best run on real images by it (``best``, :func:`_best_of`: Predict's default)
    and the test sets the external figures are compared on (``compared_on``)."""
    compared = comparison(run_ids, store)
    return {"scores": {run_id: standing["transfer"] for run_id, standing in compared.standings.items()},
            "standings": compared.standings, "best": _best_of(compared),
            "compared_on": compared.compared_on}


def _lodo_sibling(config: dict) -> str | None:
    """The run id the same settings get under leave-one-dataset-out (None if they cannot)."""
    from leukdash.config import RunConfig
    from leukdash.engine.runner import resolve

    try:
        return resolve(RunConfig.from_dict(config).with_changes(protocol="lodo", test_fraction=None)).run_id
    except LeukdashError:  # a dataset no longer found, say: no sibling to look up
        return None


# Why external tests are left out of a run's figure, said alike by the ranking (sweeps) and Predict: each
# standing's field (rank_runs), the words before its folders, those after. Other runs may have been tested on
# a folder named "elsewhere": only, not every run compared was.
LEFT_OUT = (("earlier", "on an earlier state of", ": evaluate again"),
            ("elsewhere", "not compared (not every run compared was tested there):", ""),
            ("untested", "not tested on", ", which the others are compared on"))


def left_out_text(standing: dict, quote=str) -> str:
    """What :data:`LEFT_OUT` says of a run's ``standing`` (a :func:`rank_runs` row), each folder's name
    through ``quote`` (a page's escaping); empty when none of its tests is left out."""
    return "; ".join(f"{what} {', '.join(map(quote, standing[field]))}{then}"
                     for field, what, then in LEFT_OUT if standing.get(field))


def rank_runs(run_ids: list[str], by: str, store: RunStore | None = None) -> list[dict]:
    """Finished runs, best first by ``lodo`` (transfer; runs without a figure last, by cv) or
    ``cv`` (mean cross-validated balanced accuracy). Each row: ``run_id``, ``cv``, ``transfer``,
    ``earlier`` (the folders its external tests found in an earlier state than another run's
    later test: left out of its figure, to be evaluated again), ``elsewhere`` (the folders of its
    current tests outside those the runs are compared on: left out of its figure) and ``untested``
    (of a run with any external test and no leave-one-dataset-out figure, those it was never tested on,
    not even in an earlier state: no figure until it is)."""
    if by not in RANKINGS:
        raise LeukdashError(f"rank by one of {', '.join(RANKINGS)}, got {by!r}")
    return sorted(_rows(comparison(run_ids, store)), key=_order(by))


def _rows(compared: Comparison) -> list[dict]:
    """:func:`rank_runs`'s rows of the finished runs ``compared``, in the order given."""
    return [{"run_id": run_id, "config": result["config"], "cv": float(result["summary"]["balanced_acc"]["mean"]),
             **compared.standings[run_id]} for run_id, result in compared.results.items() if result is not None]


def _order(by: str):
    """The sort key of :func:`rank_runs`'s rows by ``by``, best first: one order for the ranking and
    Predict's default (:func:`_best_of`), so that a tie in transfer goes to the better cv in both;
    a tie in both to the first run id, whatever order the runs were given in (a page lists them otherwise)."""
    def key(row):
        if by == "cv":
            return (-row["cv"], row["run_id"])
        transfer = row["transfer"]["balanced_accuracy"] if row["transfer"] else None
        return (transfer is None, -(transfer or 0.0), -row["cv"], row["run_id"])

    return key


def _best_of(compared: Comparison) -> str | None:
    """The run with the highest transfer figure among the runs ``compared`` trained on real (not synthetic)
    images, None when no such run has one: the first of them that :func:`rank_runs` ranks by ``lodo``
    (a tie in transfer to the better cv, as the ranking has it)."""
    scored = [row for row in _rows(compared) if row["transfer"] is not None and row["run_id"] in compared.real]
    return min(scored, key=_order("lodo"))["run_id"] if scored else None


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
