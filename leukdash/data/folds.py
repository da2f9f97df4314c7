"""Fold assignment: stratified, grouped, drawn once per (labels, groups, folds, seed).

A run gets the folds it asks for, or as many as the data allows when a class has fewer groups
than that (cnmc_dev: two healthy subjects, so two folds); the run's ``fold_ids`` say which.
Every validation fold holds every class: when subjects span classes and the stratified draw
leaves a fold without one, another grouping is searched for, and fewer folds used if none exists.

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


def holdout_split(labels, groups, test_fraction: float, seed: int, strata=None,
                  name: str = "dataset") -> np.ndarray:
    """One stratified grouped train/test split, encoded like folds: 0 = test, 1 = train.

    The test part is one of :func:`holdout_folds` grouped folds drawn on ``strata`` (the labels by
    default, see :func:`stratify`): the first whose images, and the images of the others, hold every
    class. When none does (few groups of a class, or groups holding several classes), the groups are
    placed by :func:`_search_covering` into a test part of about ``test_fraction`` and the rest, both
    holding every class; only the two parts must, not each of the folds. An error naming the dataset
    ``name`` when there is no such split, or when the search gave up.
    """
    labels = np.asarray(labels)
    n_folds = holdout_folds(test_fraction)
    fold_of = assign_folds(labels if strata is None else strata, groups, n_folds, seed)
    splits = [fold_of == fold for fold in range(n_folds)]
    test = next((part for part in splits if _holds_every_class(labels, part) and _holds_every_class(labels, ~part)),
                None)
    if test is None:
        fold_of, complete = _grouped_search(labels, groups, (test_fraction, 1 - test_fraction), seed)
        if fold_of is None and complete:
            raise DatasetError(f"no split of the image groups of {name} into a test part and the rest gives both "
                               "every class (its groups hold images of several classes): a holdout cannot test on "
                               "every class; check its groups file (a group is one subject)")
        if fold_of is None:
            raise DatasetError(f"the search for a grouped {test_fraction:.0%} test part of {name} that, like the "
                               f"rest, holds every class gave up after {MAX_SEARCH_STEPS} placements (its groups "
                               "hold images of several classes): use cross-validation (--folds) instead")
        test = fold_of == 0
    return np.where(test, 0, 1)


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
    if max_folds(labels, groups) < 2:
        raise _one_group_error(labels, groups, classes, name, own_groups)
    if test_fraction is not None:
        try:
            return holdout_split(labels, groups, test_fraction, seed, strata, name), [0]
        except DatasetError as error:
            raise DatasetError(f"{error}{_joined_by_duplicates(groups, own_groups)}") from None
    plan = most_covering_folds(labels, groups, strata, min(n_folds, max_folds(labels, groups)), seed)
    if plan is None and not _grouped_search(labels, groups, (0.5, 0.5), seed)[1]:  # gave up: no proof of none
        raise DatasetError(f"the search for 2 grouped folds of {name} that each hold every class gave up after "
                           f"{MAX_SEARCH_STEPS} placements (its groups hold images of several classes): check its "
                           "groups file (a group is one subject)")
    if plan is None:
        raise DatasetError(f"no split of the image groups of {name} into 2 folds gives each fold every class (its "
                           "groups hold images of several classes): grouped folds cannot validate on every class; "
                           "check its groups file (a group is one subject)")
    fold_of, n_folds = plan
    return fold_of, list(range(n_folds))


def most_covering_folds(labels, groups, strata, n_folds: int, seed: int) -> tuple[np.ndarray, int] | None:
    """The fold of every image in the most grouped folds, at most ``n_folds``, that each hold every
    class (:func:`covering_folds`), and how many folds that is; None when not even 2 do.

    ``n_folds`` itself is tried first: the stratified draw of an ordinary dataset keeps it. Whether
    n folds can each hold every class only falls as n grows (merging two such folds gives one), so
    fewer folds are found by bisection, a handful of searches rather than one for every count; the
    stratified draw, slow for many folds, is drawn again only for the count found.
    """
    found = covering_folds(labels, groups, strata, n_folds, seed) if n_folds >= 2 else None
    if found is not None:
        return found, n_folds
    best = _most_searched_folds(labels, groups, n_folds - 1, seed)
    return None if best is None else (covering_folds(labels, groups, strata, best, seed), best)


def _most_searched_folds(labels, groups, n_folds: int, seed: int) -> int | None:
    """The most folds, from 2 to ``n_folds``, that :func:`_grouped_search` gives every class, found by
    bisection (see :func:`most_covering_folds`); None when not even 2."""
    best, low, high = None, 2, n_folds
    while low <= high:
        middle = (low + high) // 2
        if _grouped_search(labels, groups, (1 / middle,) * middle, seed)[0] is None:
            high = middle - 1
        else:
            best, low = middle, middle + 1
    return best


def allowed_folds(labels, groups, seed: int = 0) -> int:
    """The folds a run asking for as many as it can have gets (:func:`fold_plan`): at most the fewest
    groups of a class, fewer where no grouping gives that many folds every class; 1 where not even 2
    folds can (a run is refused).

    Only the count is computed, no split drawn: the stratified draw of that many folds (one per image
    when each image is its own group) costs about groups x folds x classes.
    """
    labels, groups = np.asarray(labels), np.asarray(groups, dtype=object)
    upper = max_folds(labels, groups)
    # No more groups of several classes than folds (none: groups of one class each): each such group goes to a fold
    # of its own, and each class then has a group of its own for every fold still lacking it, since ``upper`` is
    # the fewest groups holding a class.
    if upper < 2 or _mixed_groups(labels, groups) <= upper:
        return upper
    found, complete = _grouped_search(labels, groups, (1 / upper,) * upper, seed)
    if found is not None:
        return upper
    if not complete:  # the search gave up (many groups): the stratified draw, as a run asking for them makes
        plan = most_covering_folds(labels, groups, labels, upper, seed)
        return 1 if plan is None else plan[1]
    return _most_searched_folds(labels, groups, upper - 1, seed) or 1


def _mixed_groups(labels, groups) -> int:
    """How many groups hold images of several classes."""
    classes_of = {}
    for group, label in zip(groups, labels):
        classes_of.setdefault(group, set()).add(label)
    return sum(len(classes) > 1 for classes in classes_of.values())


# The most groups placed (with undoing) in one search for folds that each hold every class: enough
# for any dataset whose groups the search can order well (a few times its groups), and a bound, a
# fraction of a second, on a hopeless one, which then gets fewer folds.
MAX_SEARCH_STEPS = 20_000


def covering_folds(labels, groups, strata, n_folds: int, seed: int) -> np.ndarray | None:
    """The fold of every image, in ``n_folds`` grouped folds that each hold every class, or None
    when there is no such grouping (or the search gave up, see :data:`MAX_SEARCH_STEPS`).

    The stratified draw (:func:`assign_folds` on ``strata``) is kept when its folds hold every class;
    it can leave a fold without one when groups (subjects) hold images of several classes, and then
    the groups are placed by :func:`_search_covering`.
    """
    labels = np.asarray(labels)
    fold_of = assign_folds(strata, groups, n_folds, seed)
    if all(_holds_every_class(labels, fold_of == fold) for fold in range(n_folds)):
        return fold_of
    return _grouped_search(labels, groups, (1 / n_folds,) * n_folds, seed)[0]


def _grouped_search(labels, groups, shares, seed: int) -> tuple[np.ndarray | None, bool]:
    """:func:`_search_covering` over the groups of the images: the fold of every image (or None),
    and whether the search was complete (False: it gave up)."""
    labels, groups = np.asarray(labels), np.asarray(groups, dtype=object)
    names, group_index = np.unique(groups.astype(str), return_inverse=True)
    classes_of = [frozenset(labels[group_index == g]) for g in range(len(names))]
    sizes = np.bincount(group_index, minlength=len(names))
    group_fold, complete = _search_covering(classes_of, sizes, frozenset(np.unique(labels)), shares, seed)
    return (None if group_fold is None else np.asarray(group_fold, dtype=np.int64)[group_index]), complete


def _holds_every_class(labels, mask) -> bool:
    return set(labels[mask]) == set(labels)


def _search_covering(classes_of, sizes, present: frozenset, shares,
                     seed: int) -> tuple[list[int] | None, bool]:
    """The fold of each group (``classes_of``: the classes of its images, ``sizes``: its image count)
    such that every fold holds every class in ``present``, or None; and whether the search was
    complete (False: it gave up after :data:`MAX_SEARCH_STEPS`). ``shares``: each fold's share of
    the images, one per fold.

    A depth-first search over the groups, largest first (ties in an order drawn from ``seed``): each
    group tries first the folds that lack most of its classes, then the folds least filled for their
    share, so the first answer found is about balanced. A branch is dropped as soon as the groups left
    cannot give every fold the classes it lacks: too few hold a class, or too few to go round the
    folds, one group giving a fold at most as many classes as the most any group left holds.
    """
    n_folds = len(shares)
    order = sorted(np.random.default_rng(seed).permutation(len(sizes)).tolist(), key=lambda g: -sizes[g])
    # From position i on: how many groups hold each class, and the most classes one group holds.
    left = [Counter() for _ in range(len(order) + 1)]
    most_left = [0] * (len(order) + 1)
    for i in range(len(order) - 1, -1, -1):
        left[i] = left[i + 1] + Counter(classes_of[order[i]])
        most_left[i] = max(most_left[i + 1], len(classes_of[order[i]]))
    fold_classes = [Counter() for _ in range(n_folds)]
    fold_sizes = [0] * n_folds
    group_fold = [-1] * len(sizes)
    tried = []  # per placed position: its folds in the order tried, and how many were tried
    position = steps = 0
    while position < len(order):
        group = order[position]
        if len(tried) == position:
            tried.append((sorted(range(n_folds), key=lambda f: (
                -sum(not fold_classes[f][c] for c in classes_of[group]), fold_sizes[f] / shares[f], f)), 0))
        choices, n_tried = tried[position]
        if n_tried:  # undo the fold tried last
            fold_classes[choices[n_tried - 1]].subtract(classes_of[group])
            fold_sizes[choices[n_tried - 1]] -= sizes[group]
        if steps == MAX_SEARCH_STEPS:
            return None, False
        if n_tried == len(choices):  # no fold left for this group: back to the previous one
            tried.pop()
            position -= 1
            if position < 0:
                return None, True
            continue
        steps += 1
        fold = choices[n_tried]
        tried[position] = (choices, n_tried + 1)
        fold_classes[fold].update(classes_of[group])
        fold_sizes[fold] += sizes[group]
        group_fold[group] = fold
        if _can_complete(fold_classes, present, left[position + 1], len(order) - position - 1,
                         most_left[position + 1]):
            position += 1
    return group_fold, True


def _can_complete(fold_classes, present, left: Counter, n_left: int, most_left: int) -> bool:
    """Whether ``n_left`` groups, ``left`` of which hold each class and each at most ``most_left``
    classes, may still give every fold the classes of ``present`` it lacks (a necessary condition)."""
    lacking = [[c for c in present if not held[c]] for held in fold_classes]
    if any(left[c] < n for c, n in Counter(c for fold in lacking for c in fold).items()):
        return False
    return sum(math.ceil(len(fold) / most_left) for fold in lacking if fold) <= n_left


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
