"""The data a stored run was trained and validated on, as it was then.

Evaluation, the out-of-distribution check and the known-image check all need a finished run's
own dataset and the fold that validated each of its images; they read both from here.
"""

from __future__ import annotations

import numpy as np

from leukdash.errors import LeukdashError, RunError
from leukdash.engine.record_shapes import is_ensemble, member_ids
from leukdash.engine.store import RunStore, read_json, write_json_atomic
from leukdash.paths import printable


# Beside a run: the other folders it was answered for from the store (the same images under
# another path: a copy, a move), newest last; its own record keeps the folder it was computed on.
FOUND_AT = "found-at.json"
MAX_FOUND_AT = 20


def note_dataset_found(run_id: str, dataset, store: RunStore) -> None:
    """Remember ``dataset``'s folder beside a run answered for it from the store, when the run does
    not know that folder yet, so its images are found there once the first folder is gone. A cache:
    skipped where the store cannot be written."""
    folder, meta = str(dataset.root), store.read_meta(run_id)
    known = found_at(run_id, store)
    if meta is None or not dataset.root.is_dir() or folder in (meta["dataset"].get("path"), *known):
        return
    write_json_atomic(store.run_dir(run_id) / FOUND_AT, (known + [folder])[-MAX_FOUND_AT:], optional=True)


def same_folder(first: dict, second: dict) -> bool:
    """Whether two runs' dataset records (their meta's ``dataset``) were read from one folder."""
    return first.get("path", first["name"]) == second.get("path", second["name"])


def images_changed(first: dict, second: dict) -> str:
    """Why two runs of one folder and classes have different fingerprints, from their dataset records
    (their meta's ``dataset``): the images changed between the runs (added, removed, relabelled)."""
    counts = " vs ".join(str(record.get("n_images", "?")) for record in (first, second))
    return f"the images of {first['name']} changed between these runs ({counts} images)"


def record_for(record: dict, dataset) -> dict:
    """A stored run's dataset record (its meta's ``dataset``) told for ``dataset``, the folder a
    command gives now, whose fingerprint is the run's.

    The fingerprint covers the images only, so the folder the run was computed on may have had
    another name and other files left out beside the images (a Thumbs.db, HEIC photos), or other
    notes on its groups: what is said is this folder's name, path and files left out, and its
    lines of warning; the images that did not decode and the other lines (segmentation failures,
    duplicate links left unmerged) are the run's own.
    """
    from leukdash.data.dataset import left_out_lines

    images = {dataset.relative(item.path) for item in dataset.items}
    undecoded = [entry for entry in record.get("skipped", []) if entry["path"] in images]
    skipped = [file.to_dict(dataset.root) for file in dataset.ignored] + undecoded
    n_used = record.get("n_used", len(dataset.items))
    folder_lines = dataset.warnings() + left_out_lines(dataset.name, skipped, n_used)
    then = {*record.get("notes", []), *dataset.warnings(),
            *left_out_lines(record["name"], record.get("skipped", []), n_used)}
    return {**record, "name": dataset.name, "path": str(dataset.root), "notes": list(dataset.notes),
            "skipped": skipped,
            "warnings": folder_lines + [line for line in record.get("warnings", []) if line not in then]}


def found_at(run_id: str, store: RunStore) -> list[str]:
    """The folders :func:`note_dataset_found` remembered for a run (none when the file is missing or damaged)."""
    try:
        known = read_json(store.run_dir(run_id) / FOUND_AT)
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    return [path for path in known if isinstance(path, str)] if isinstance(known, list) else []


def open_run_dataset(meta: dict, store: RunStore | None = None):
    """The dataset a run was trained on, as it was then (same classes, same fingerprint)."""
    from leukdash.data.discovery import open_dataset

    info = meta["dataset"]
    differing, failure = [], None  # folders found that hold other images now; why one was not found
    for source in dataset_sources(meta, store or RunStore()):
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
                   f"(a dataset known by name: set LEUKDASH_DATA to the folder that holds it), or {_found_again(meta)}")


def _found_again(meta: dict) -> str:
    """How a run learns its images' new folder: running it there is answered from the store, and noted."""
    if is_ensemble(meta):  # an ensemble is not run: its members are, and it looks where they were found
        return "run one of its members' commands on the images' new folder (answered from the store, the " \
               "ensemble then finds them there)"
    return "run the same command on the images' new folder (answered from the store, the run then finds them there)"


def dataset_sources(meta: dict, store: RunStore) -> list[str]:
    """Where a run's images may be, in the order to try them: as the run was given them (a name, a
    path), then the folder they were read from (a relative path read from another working folder, a
    notebook's %cd, may name another folder, or none), then the folders it was answered for since,
    newest first (an ensemble's, then its members')."""
    also = found_at(meta["run_id"], store)[::-1] + _members_found_at(meta, store)
    return list(dict.fromkeys(s for s in (meta["config"]["dataset"], meta["dataset"].get("path"), *also) if s))


def _members_found_at(meta: dict, store: RunStore) -> list[str]:
    """The folders an ensemble's members were answered for since, newest first: they hold the
    ensemble's images (its members share its dataset fingerprint), and a member run again on the
    images' new folder notes that folder beside the member, not beside the ensemble."""
    if not is_ensemble(meta):
        return []
    return [folder for member, _ in member_ids(meta) for folder in found_at(member, store)[::-1]]


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
