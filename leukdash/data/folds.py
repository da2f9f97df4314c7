"""Fold assignment: stratified, grouped, drawn once per (labels, groups, folds, seed).

A run gets the folds it asks for, or as many as the data allows when a class has fewer groups
than that (cnmc_dev: two healthy subjects, so two folds); the run's ``fold_ids`` say which.

Every model of a comparison gets the same assignment, so comparisons between models are
paired fold by fold and image by image.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from leukdash.data.dataset import check_class_counts, holdout_folds
from leukdash.errors import DatasetError


def assign_folds(labels, groups, n_folds: int, seed: int) -> np.ndarray:
    """The validation fold of every image: an int array with values in ``range(n_folds)``.

    Images of one group share a fold; class proportions are kept as far as groups allow.
    """
    labels = np.asarray(labels)
    n_groups = len(set(groups))
    if n_groups < n_folds:
        raise DatasetError(f"only {n_groups} image group(s) for {n_folds} folds: use fewer folds")
    fold_of = np.full(len(labels), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fold, (_, val_index) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        fold_of[val_index] = fold
    return fold_of


# A duplicate link may grow a group by at most this share of the images beyond the largest group
# the dataset itself defines (a patient): one wrong link in a chain must not join everything.
MAX_MERGE_SHARE = 0.05


class _Components:
    """Union-find over group keys; a component keeps its smallest key and counts its images."""

    def __init__(self, groups):
        self.parent = {g: g for g in groups}
        self.size = Counter(groups)

    def root(self, key):
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def join(self, a, b, max_size: float = math.inf) -> bool:
        """Join the components of keys ``a`` and ``b`` unless the result would exceed ``max_size``."""
        a, b = self.root(a), self.root(b)
        if a == b:
            return True
        if self.size[a] + self.size[b] > max_size:
            return False
        keep, drop = min(a, b), max(a, b)
        self.parent[drop] = keep
        self.size[keep] += self.size[drop]
        return True


def merge_groups(groups, pairs) -> np.ndarray:
    """Join the groups of every pair of image indices (duplicates), transitively.

    Each merged group takes the smallest of its members' keys, so the result does not depend
    on the order of the pairs.
    """
    components = _Components(groups)
    for i, j in pairs:
        components.join(groups[i], groups[j])
    return np.array([components.root(g) for g in groups], dtype=object)


def merge_limit(groups) -> int:
    """The most images a group may hold after duplicate links are merged (see MAX_MERGE_SHARE)."""
    if len(groups) == 0:
        return 0
    return max(Counter(groups).values()) + math.ceil(MAX_MERGE_SHARE * len(groups))


def capped_merges(groups, pairs, max_size: int):
    """Which links :func:`merge_groups` may follow: those taken in order that keep every group at
    most ``max_size`` images. Returns ``(merged pairs, refused)``, ``refused`` holding each
    refused pair with the image counts of the two groups it would have joined."""
    components = _Components(groups)
    merged, refused = [], []
    for i, j in pairs:
        sizes = (components.size[components.root(groups[i])], components.size[components.root(groups[j])])
        if components.join(groups[i], groups[j], max_size):
            merged.append((i, j))
        else:
            refused.append(((i, j), sizes))
    return merged, refused


def max_folds(labels, groups) -> int:
    """The most grouped folds in which every fold validates on every class: the fewest groups
    that hold images of one class."""
    labels, groups = np.asarray(labels), np.asarray(groups, dtype=object)
    return min((len(set(groups[labels == label])) for label in np.unique(labels)), default=0)


def holdout_split(labels, groups, test_fraction: float, seed: int) -> np.ndarray:
    """One stratified grouped train/test split, encoded like folds: 0 = test, 1 = train."""
    return np.where(assign_folds(labels, groups, holdout_folds(test_fraction), seed) == 0, 0, 1)


def fold_plan(labels, groups, classes, n_folds: int, test_fraction: float | None, seed: int, sources=None,
              name: str = "dataset", own_groups=None):
    """The fold of each image and the list of folds to run (a holdout runs fold 0 only).

    With ``sources`` (the source dataset of each image), folds are stratified by class and
    source together, so every fold holds each source in about its share. ``name`` names the
    dataset in errors; ``own_groups``, the groups before duplicates joined them into ``groups``,
    lets an error say when duplicates are why there are too few groups.
    """
    strata = stratify(labels, sources)
    check_class_counts(classes, labels, n_folds, name, test_fraction)
    if test_fraction is not None:
        try:
            return holdout_split(strata, groups, test_fraction, seed), [0]
        except DatasetError as error:
            raise DatasetError(f"{error}{_joined_by_duplicates(groups, own_groups)}") from None
    n_folds = min(n_folds, max_folds(labels, groups))
    if n_folds < 2:
        raise _one_group_error(labels, groups, classes, name, own_groups)
    return assign_folds(strata, groups, n_folds, seed), list(range(n_folds))


def _one_group_error(labels, groups, classes, name: str, own_groups) -> DatasetError:
    """The error for a class whose images all lie in one group, naming the class and the group."""
    labels, groups = np.asarray(labels), np.asarray(groups, dtype=object)
    label = next(label for label in np.unique(labels) if len(set(groups[labels == label])) == 1)
    group = groups[labels == label][0]
    joined = "" if own_groups is None else _joined_by_duplicates(groups[labels == label],
                                                                 np.asarray(own_groups, dtype=object)[labels == label])
    return DatasetError(f"class {classes[label]!r} of {name} has all its images in one group ({group!r}){joined}: "
                        "grouped folds cannot validate on it")


def _joined_by_duplicates(groups, own_groups) -> str:
    """`` (duplicates joined N groups into M)`` when duplicate links merged ``own_groups`` into fewer
    ``groups``, else nothing."""
    if own_groups is None or len(set(own_groups)) == len(set(groups)):
        return ""
    return (f" (identical or near-duplicate images joined {len(set(own_groups))} groups into {len(set(groups))}: "
            "`python -m leukdash audit` lists them)")


def stratify(labels, sources=None) -> np.ndarray:
    """One stratum per (class, source); the labels themselves for images of one source."""
    labels = np.asarray(labels)
    if sources is None or len(set(sources)) < 2:
        return labels
    names, source_index = np.unique(np.asarray(sources, dtype=str), return_inverse=True)
    return labels * len(names) + source_index


def leave_one_source_out(sources, names) -> tuple[np.ndarray, list[int]]:
    """Fold ``i`` validates on every image of source ``names[i]`` and trains on the others."""
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[source] for source in sources], dtype=np.int64), list(range(len(names)))
