"""A run's fold inputs: the fold of every image and the images each fold trains on.

The folds are drawn from groups (a patient's images, duplicates joined across them) so that no
image's copy is validated in a fold that trained on its twin; under leave one source out the folds
are the datasets, and a fold leaves out of its training the copies of the images it validates on.
:class:`FoldInputs` carries the result to the workers, which train on it
(:mod:`leukdash.engine.training`) without access to the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leukdash.config import RunConfig
from leukdash.errors import ConfigError, DatasetError
from leukdash.data.arrays import decoded_cache, load_arrays
from leukdash.data.dataset import Dataset, LoadedImages


def plan_folds(config: RunConfig, dataset: Dataset, arrays: LoadedImages) -> tuple[np.ndarray, list[int]]:
    """The fold of every loaded image and the folds this config runs."""
    from leukdash.data.folds import fold_plan, leave_one_source_out

    sources = dataset.sources_of(arrays.paths)
    if config.protocol == "lodo":
        fold_of, fold_ids = leave_one_source_out(sources, dataset.source_names)
        copies = duplicate_copies(dataset, arrays)
        for fold in fold_ids:
            if not training_part(fold_of, fold, copies).any():
                raise DatasetError(f"every image of the other datasets is a duplicate of an image of "
                                   f"{dataset.source_names[fold]}: leaving it out leaves nothing to train on")
        _check_neighbours(config, [int(training_part(fold_of, fold, copies).sum()) for fold in fold_ids])
    else:
        try:
            fold_of, fold_ids = fold_plan(arrays.labels, joined_groups(dataset, arrays), dataset.classes, config.folds,
                                          config.test_fraction, config.seed, sources, dataset.name, arrays.groups)
        except DatasetError as error:  # too few images: say if unreadable files are why
            raise dataset.with_left_out(error, arrays) from None
        _check_neighbours(config, [int(training_part(fold_of, fold).sum()) for fold in fold_ids])
    return fold_of, fold_ids


def joined_groups(dataset: Dataset, arrays: LoadedImages) -> np.ndarray:
    """The group of every loaded image, joined with the groups of its duplicates (:func:`duplicate_pairs`).

    The duplicates are those of the whole dataset, as the audit finds them: a re-encoded, resized,
    mirrored or rotated copy in one source of a combined dataset of an image of another is the same
    cell, so it joins that image's group (under the same group-size cap as any link).
    """
    from leukdash.data.folds import merge_groups

    return merge_groups(arrays.groups, duplicate_pairs(dataset))


def duplicate_copies(dataset: Dataset, arrays: LoadedImages) -> np.ndarray:
    """The copy set of every loaded image: images joined by any confirmed duplicate pair of the
    audit, those refused for the group-size cap included, share one (the smallest index among them).

    The cap keeps folds drawn from groups balanced; when the folds are the sources (leave one
    source out) there is nothing to balance, and a copy left in training would leak.
    """
    from leukdash.data.folds import merge_groups

    links = _duplicate_links(dataset)
    return merge_groups(np.arange(len(arrays.labels)), links["pairs"] + links["refused"]).astype(np.int64)


def training_part(fold_of: np.ndarray, fold: int, copies: np.ndarray | None = None) -> np.ndarray:
    """Which images fold ``fold`` trains on: those of the other folds, less, with ``copies`` (the
    copy sets of a leave-one-source-out run, :func:`duplicate_copies`), the copies of the images it
    validates on: there the folds are the sources, so a copy across sources would leak. Only the
    copies are left out, not the rest of their patient's images."""
    train = fold_of != fold
    if copies is not None:
        train &= ~np.isin(copies, copies[fold_of == fold])
    return train


def _check_neighbours(config: RunConfig, n_train: list[int]) -> None:
    """k-NN needs at least k training images in every fold (``n_train``: their count per fold): say
    so before any fold is trained."""
    if config.model != "knn":
        return
    augmented = config.augment_factor > 1 and bool(config.augment.enabled())
    smallest = min(n_train) * (config.augment_factor if augmented else 1)
    if config.k > smallest:
        raise ConfigError(f"k must be at most {smallest}, the smallest training set of this run's folds, "
                          f"got {config.k}")


def duplicate_pairs(dataset: Dataset) -> list[tuple[int, int]]:
    """Index pairs of exact and confirmed near-duplicate images that join groups (the audit's
    definition, :func:`leukdash.data.duplicates.dataset_duplicates`), cached.

    Folds keep each pair together: the same cell on both sides of a split would leak.
    Indices refer to the loaded (decodable) images, the same at every image size.
    """
    return [tuple(pair) for pair in _duplicate_links(dataset)["pairs"]]


def duplicate_warnings(config: RunConfig, dataset: Dataset, inputs: FoldInputs) -> list[str]:
    """What a run's user must know of its dataset's duplicates, as the audit lists them (``inputs``:
    the run's :func:`fold_inputs`, whose fold plan and copy sets are read, not made again).

    Folds drawn from groups: a line when near-duplicate links were not merged (the merged group
    would have been too large), since those images may be validated in another fold than their
    twin. Leave one source out: a line counting, per held-out dataset, the copies its fold leaves
    out of training (:func:`training_part`).
    """
    if config.protocol != "lodo":
        links = _duplicate_links(dataset)
        return [f"{len(links['refused'])} near-duplicate link(s) of {dataset.name} were not merged (the merged "
                f"group would exceed {links['merge_limit']} images): those images may be validated in another fold "
                "than their twin; `python -m leukdash audit` lists them"] if links["refused"] else []
    fold_of, copies = inputs.fold_of, inputs.copies
    left_out = {inputs.source_names[fold]: int(((fold_of != fold) & ~training_part(fold_of, fold, copies)).sum())
                for fold in inputs.fold_ids}
    counts = [f"{count} image(s) of the other datasets left out when {name} is held out"
              for name, count in left_out.items() if count]
    return [f"a fold does not train on the copies of the images it validates on: {', '.join(counts)}; "
            "`python -m leukdash audit` lists them"] if counts else []


def _duplicate_links(dataset: Dataset) -> dict:
    """``pairs`` (:func:`duplicate_pairs`), ``refused`` (the confirmed near-duplicate pairs not
    merged, for the group-size cap) and ``merge_limit`` of a dataset, cached by its fingerprint."""
    from leukdash.config import stable_hash
    from leukdash.data import duplicates
    from leukdash.data.folds import MAX_MERGE_SHARE
    from leukdash.engine.store import write_json_atomic

    # The method's settings are part of the key: a cache of another definition is never reused
    # ("exact-uncapped": exact duplicates are merged whatever the size of their group).
    method = stable_hash([duplicates.HASH_SIZE, duplicates.NEAR_DUPLICATE_DISTANCE, duplicates.PIXEL_SIZE,
                          duplicates.PIXEL_MATCH, MAX_MERGE_SHARE, duplicates.MIN_DETAIL, "exact-uncapped",
                          duplicates.SYMMETRY_DISTANCE], 8)
    cache = decoded_cache(dataset, f"duplicates_{method}.json")
    cached = _read_links(cache, len(dataset.items))
    if cached is None:
        found = duplicates.dataset_duplicates(dataset)
        cached = {"pairs": found.pairs(), "refused": [pair for pair, _ in found.refused],
                  "merge_limit": found.merge_limit}
        write_json_atomic(cache, cached, optional=True)
    return cached


def _read_links(cache: Path, n_items: int) -> dict | None:
    """The cached duplicate links, or None when the file is missing or damaged (then rebuilt)."""
    from leukdash.engine.store import read_json

    try:
        links = read_json(cache)
    except (OSError, ValueError):
        return None
    if not isinstance(links, dict) or not _count(links.get("merge_limit")):
        return None
    valid = all(isinstance(pairs, list) and all(
        isinstance(pair, list) and len(pair) == 2 and all(_count(i) and i < n_items for i in pair) for pair in pairs)
        for pairs in (links.get("pairs"), links.get("refused")))
    return links if valid else None


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class FoldInputs:
    """Everything a fold needs besides its config: small enough to send to a remote worker."""

    images: np.ndarray    # (N, size, size, 3) uint8, the decodable images of the dataset
    labels: np.ndarray    # (N,) class indices
    fold_of: np.ndarray   # (N,) the fold of every image (see :func:`plan_folds`)
    fold_ids: tuple[int, ...]  # the folds the run computes
    classes: tuple[str, ...]
    # A run on several datasets: the source and group of every image, and the sources in fold order (lodo).
    sources: np.ndarray | None = None
    groups: np.ndarray | None = None
    source_names: tuple[str, ...] = ()
    # Leave one source out: the copy set of every image, across sources (see :func:`duplicate_copies`).
    copies: np.ndarray | None = None


def fold_inputs(config: RunConfig, dataset: Dataset, arrays: LoadedImages | None = None) -> FoldInputs:
    """The inputs of every fold of a run (``arrays`` when already loaded at the config's size)."""
    arrays = arrays if arrays is not None else load_arrays(dataset, config.image_size, config.preprocess)
    fold_of, fold_ids = plan_folds(config, dataset, arrays)
    if len(dataset.sources) == 1:
        return FoldInputs(arrays.images, arrays.labels, fold_of, tuple(fold_ids), tuple(dataset.classes))
    copies = duplicate_copies(dataset, arrays) if config.protocol == "lodo" else None
    return FoldInputs(arrays.images, arrays.labels, fold_of, tuple(fold_ids), tuple(dataset.classes),
                      dataset.sources_of(arrays.paths).astype(str), arrays.groups.astype(str), dataset.source_names,
                      copies)
