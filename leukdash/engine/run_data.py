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
    try:
        dataset = open_dataset(meta["config"]["dataset"])
    except LeukdashError:  # found by name no more: the folder it was read from
        try:
            dataset = open_dataset(info["path"])
        except LeukdashError as error:
            raise RunError(f"run {meta['run_id']} needs the images it was trained on ({info['name']!r}, read from "
                           f"{printable(str(info['path']))}), which are gone: {error}; put that folder back "
                           "(a dataset known by name: set LEUKDASH_DATA to the folder that holds it)") from None
    dataset = dataset.subset(info["classes"])
    if dataset.fingerprint != info["fingerprint"]:
        raise RunError(f"dataset {info['name']!r} changed since run {meta['run_id']} was computed")
    return dataset


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
