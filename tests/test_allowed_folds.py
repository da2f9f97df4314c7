"""allowed_folds: the audit's "grouped folds the data allows", cheap at any size."""

import numpy as np
import pytest

from leukdash.data.folds import allowed_folds, max_folds, most_covering_folds


def _drawn_answer(labels, groups, seed):
    """The computation allowed_folds made before: a stratified draw of as many folds as the fewest groups of a
    class, fewer by the grouped search where that draw leaves a fold without a class."""
    upper = max_folds(labels, groups)
    plan = most_covering_folds(labels, groups, labels, upper, seed)
    return min(upper, 1) if plan is None else plan[1]


@pytest.mark.parametrize("case", range(60))
def test_allowed_folds_gives_what_the_stratified_draw_gave(case):
    rng = np.random.default_rng(case)
    n_classes = int(rng.integers(2, 6))
    labels = np.concatenate([np.full(int(rng.integers(1, 25)), c) for c in range(n_classes)])  # imbalanced
    if case % 2:  # mixed: a few subjects, each may hold images of several classes (some cases then get fewer folds)
        n_groups = int(rng.integers(2, 12))
        groups = np.array([f"s{g}" for g in rng.integers(0, n_groups, len(labels))], dtype=object)
    else:  # pure: each group holds images of one class
        n_groups = int(rng.integers(1, len(labels) + 1))
        groups = np.array([f"c{label}-{g}" for label, g in zip(labels, rng.integers(0, n_groups, len(labels)))],
                          dtype=object)
    assert allowed_folds(labels, groups, case) == _drawn_answer(labels, groups, case)


def test_allowed_folds_answers_many_single_image_groups():
    labels = np.repeat(np.arange(4), 5_000)
    groups = np.array([f"g{i}" for i in range(len(labels))], dtype=object)
    assert allowed_folds(labels, groups) == 5_000


def test_allowed_folds_draws_the_folds_where_the_grouped_search_gives_up():
    # Past MAX_SEARCH_STEPS groups the search gives up; one subject holding a cell of the other class makes the
    # groups mixed, and the count is then the stratified draw's, the one a run asking for it gets (3), not 1.
    many = 20_100
    labels = np.concatenate([np.zeros(30, int), np.ones(many + 1, int)])
    groups = np.array([f"p{i // 10}" for i in range(30)] + ["p0"] + [f"g{i}" for i in range(many)], dtype=object)
    assert allowed_folds(labels, groups) == 3 == _drawn_answer(labels, groups, 0)


def test_allowed_folds_answers_many_groups_with_a_few_of_several_classes():
    # A duplicate pair across classes merges two groups into one of two classes: 20,000 groups with one such group
    # drew a stratified split of 5,000 folds (over 500 s); with no more such groups than folds, each in a fold of its
    # own, the fewest groups holding a class is the count.
    labels = np.repeat(np.arange(4), 5_000)
    groups = np.array([f"g{i}" for i in range(len(labels))], dtype=object)
    groups[5_000] = "g0"  # a class-1 image in class 0's first group
    assert allowed_folds(labels, groups) == 5_000 == max_folds(labels, groups)
    # Three groups of two classes and four folds: a, b, c a fold each, d and e the fourth's.
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    groups = np.array(["a", "a", "b", "b", "c", "c", "d", "e"], dtype=object)
    assert allowed_folds(labels, groups) == 4 == _drawn_answer(labels, groups, 0)
