"""Fold assignment: stratified, grouped, drawn once per (labels, groups, folds, seed).

Every model of a comparison gets the same assignment, so comparisons between models are
paired fold by fold and image by image.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from leukdash.data.dataset import check_class_counts
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


def merge_groups(groups, pairs) -> np.ndarray:
    """Join the groups of every pair of image indices (duplicates), transitively.

    Each merged group takes the smallest of its members' keys, so the result does not depend
    on the order of the pairs.
    """
    parent = {g: g for g in groups}

    def root(key):
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for i, j in pairs:
        a, b = root(groups[i]), root(groups[j])
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([root(g) for g in groups], dtype=object)


def holdout_split(labels, groups, test_fraction: float, seed: int) -> np.ndarray:
    """One stratified grouped train/test split, encoded like folds: 0 = test, 1 = train."""
    n_splits = max(2, round(1 / test_fraction))
    return np.where(assign_folds(labels, groups, n_splits, seed) == 0, 0, 1)


def fold_plan(labels, groups, classes, n_folds: int, test_fraction: float | None, seed: int):
    """The fold of each image and the list of folds to run (a holdout runs fold 0 only)."""
    if test_fraction is not None:
        check_class_counts(classes, labels, max(2, round(1 / test_fraction)))
        return holdout_split(labels, groups, test_fraction, seed), [0]
    check_class_counts(classes, labels, n_folds)
    return assign_folds(labels, groups, n_folds, seed), list(range(n_folds))
