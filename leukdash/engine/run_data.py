"""The data a stored run was trained and validated on, as it was then.

Evaluation, the out-of-distribution check and the known-image check all need a finished run's
own dataset and the fold that validated each of its images; they read both from here.
"""

from __future__ import annotations

import numpy as np

from leukdash.errors import LeukdashError, RunError
from leukdash.engine.store import RunStore
from leukdash.paths import printable


def open_run_dataset(meta: dict):
    """The dataset a run was trained on, as it was then (same classes, same fingerprint)."""
    from leukdash.data.discovery import open_dataset

    info = meta["dataset"]
    differing, failure = [], None  # folders found that hold other images now; why one was not found
    # As the run was given it (a name, a path), then the folder it was read from: a relative path
    # read from another working folder (a notebook's %cd) may name another folder, or none.
    for source in dict.fromkeys(s for s in (meta["config"]["dataset"], info.get("path")) if s):
        try:
            dataset = open_dataset(source)
        except LeukdashError as error:  # found by name no more, or that folder is gone
            failure = error
            continue
        try:
            subset = dataset.subset(info["classes"])
        except LeukdashError:
            subset = None
        if subset is not None and subset.fingerprint == info["fingerprint"]:
            return subset
        differing.append(printable(str(dataset.root)))
    if differing:
        raise RunError(f"run {meta['run_id']} needs the images it was trained on ({info['name']!r}), and "
                       f"{' and '.join(dict.fromkeys(differing))} holds other images now (files added, removed, "
                       "renamed or changed since the run was computed): put the run's images back, or run it "
                       "again on the images as they are (a new run)")
    raise RunError(f"run {meta['run_id']} needs the images it was trained on ({info['name']!r}, read from "
                   f"{printable(str(info.get('path')))}), which are gone: {failure}; put that folder back "
                   "(a dataset known by name: set LEUKDASH_DATA to the folder that holds it)")


def validation_folds(run_id: str, n_images: int, store: RunStore | None = None):
    """The fold each image of a run's dataset was validated in, as the run stored it (-1 for an
    image no fold validated: the training part of a holdout run).

    Read from the fold results, not planned again: the folds a run used stay its folds even if
    the way folds are drawn changes later.
    """
    store = store or RunStore()
    fold_of = np.full(n_images, -1, dtype=np.int64)
    for fold in store.finished_meta(run_id)["fold_ids"]:
        result = store.read_fold(run_id, fold)
        if result is None:
            raise RunError(f"run {run_id!r} has no readable result for fold {fold + 1}")
        fold_of[np.asarray(result["oof"]["index"], dtype=np.int64)] = fold
    return fold_of
