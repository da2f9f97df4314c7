"""Which classes of an external dataset answer a run's: the set an external test
(:mod:`leukdash.evaluation.evaluate`) scores, in the run's class order, its extra classes left out,
a class it lacks kept as one without images; refused where it holds none of them, names one in
another case, or holds one in folders this user cannot list."""

from __future__ import annotations

from leukdash.errors import DatasetError
from leukdash.paths import printable


def run_classes_of(run_classes, dataset):
    """:func:`match_classes` of ``dataset`` after :func:`refuse_unreadable_classes`: what an external
    test of a run of ``run_classes`` scores."""
    refuse_unreadable_classes(run_classes, dataset)
    return match_classes(run_classes, dataset)


def match_classes(run_classes, dataset):
    """The external dataset restricted to the run's classes, in the run's order (a class the models
    never saw cannot be scored, so extra classes of the external set are left out).

    A run class without a folder (a set of one lab's leukaemia images) is a class without images:
    the set is scored, that class's recall n/a (see :func:`leukdash.evaluation.evaluate.evaluate`'s
    warnings). Refused when it holds none of the run's classes, or names one in another case (a
    slip, not an absent class).
    """
    from leukdash.data.dataset import case_matches
    from leukdash.paths import one_form

    missing = [c for c in map(one_form, run_classes) if c not in dataset.classes]
    alike = case_matches(dataset.classes, missing)
    if alike or len(missing) == len(run_classes):
        hint = ("; class names are case-sensitive: name its folders " +
                ", ".join(f"{run_class!r} (not {name!r})" for name, run_class in alike)) if alike else ""
        raise DatasetError(f"dataset {dataset.name!r} has no class {', '.join(map(repr, missing))} of the run "
                           f"(run classes: {', '.join(map(repr, run_classes))}; dataset classes: "
                           f"{', '.join(map(repr, dataset.classes))})"
                           f"{hint}")
    return _with_empty_classes(dataset, missing).subset(run_classes)


def _with_empty_classes(dataset, names):
    """``dataset`` with classes ``names`` added, holding no image (as if their folders were empty)."""
    from dataclasses import replace

    from leukdash.data.combined import CombinedDataset

    if not names:
        return dataset
    if isinstance(dataset, CombinedDataset):  # its sources have its classes, which it takes from them
        return CombinedDataset.of([_with_empty_classes(source, names) for source in dataset.parts])
    return replace(dataset, classes=(*dataset.classes, *names))


def refuse_unreadable_classes(run_classes, dataset) -> None:
    """Refuse an external dataset where a run's class has no image this user can read and a folder of
    that class this user cannot list (the class folder itself, or the subject folders holding all its
    images), saying so: the class is there, it is not one the dataset lacks (what :func:`match_classes`
    would say, and score the rest as a set without it)."""
    from leukdash.data.sources import UNLISTED_FOLDER
    from leukdash.paths import one_form

    wanted, read = set(map(one_form, run_classes)), {one_form(c) for c, n in dataset.counts().items() if n}
    for skipped in dataset.ignored:
        root = next((s.root for s in dataset.sources if skipped.path.is_relative_to(s.root)), None)
        parts = skipped.path.relative_to(root).parts if root is not None else ()
        if (skipped.reason.startswith(UNLISTED_FOLDER) and parts and one_form(parts[0]) in wanted - read):
            what = "class folder" if len(parts) == 1 else f"folder of class {parts[0]!r}"
            raise DatasetError(f"dataset {dataset.name!r}: {what} {printable(str(skipped.path))}: {skipped.reason}")
