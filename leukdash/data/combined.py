"""Several datasets with the same classes used as one: one run trained across labs.

The images of every source keep their own groups, prefixed by the source's name (a run's folds
join the groups of duplicates, across sources too: see :func:`leukdash.engine.fold_planning.joined_groups`);
the fingerprint is made from the sources' fingerprints, independent of the order in which they
were named.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from leukdash.data.dataset import Dataset
from leukdash.data.sources import ImageItem
from leukdash.errors import DatasetError

SEPARATOR = ","


@dataclass(frozen=True)
class CombinedDataset(Dataset):
    """The union of source datasets that have the same classes, in the order of their names."""

    parts: tuple[Dataset, ...] = ()
    copies: tuple[str, ...] = ()  # what :func:`_without_copies` left out, one line per source

    @classmethod
    def of(cls, sources) -> CombinedDataset:
        """Combine datasets; refused with one line when names repeat or the classes differ."""
        sources = sorted(sources, key=lambda source: source.name)
        names = [source.name for source in sources]
        if len(sources) < 2:
            raise DatasetError("a combined dataset needs at least two datasets")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise DatasetError(f"dataset {repeated[0]!r} is named twice in a combined dataset")
        classes = sources[0].classes
        for source in sources[1:]:
            if set(source.classes) != set(classes):
                raise DatasetError(
                    f"datasets {sources[0].name!r} ({', '.join(classes)}) and {source.name!r} "
                    f"({', '.join(source.classes)}) have different classes: they cannot be combined"
                )
        # Same class names in another order are relabelled to the first source's order.
        sources = tuple(source if source.classes == classes else source.subset(classes) for source in sources)
        sources, copies = _without_copies(sources)
        items = tuple(ImageItem(item.path, item.label, f"{source.name}/{item.group}")
                      for source in sources for item in source.items)
        root = Path(os.path.commonpath([source.root for source in sources]))
        return cls(SEPARATOR.join(names), root, classes, items, "combined",
                   any(source.synthetic for source in sources),
                   tuple(skipped for source in sources for skipped in source.ignored),
                   tuple(f"{source.name}: {note}" for source in sources for note in source.notes) + copies,
                   parts=sources, copies=copies)

    @property
    def sources(self) -> tuple[Dataset, ...]:
        return self.parts

    @cached_property
    def _source_of_path(self) -> dict[Path, str]:
        return {item.path: source.name for source in self.parts for item in source.items}

    def sources_of(self, paths) -> np.ndarray:
        return np.array([self._source_of_path[Path(path)] for path in paths], dtype=object)

    @cached_property
    def contents(self) -> tuple[str, ...]:
        """The sha1 of each item's bytes, in the order of the items: the sources', whose files they are."""
        return tuple(content for source in self.parts for content in source.contents)

    def warnings(self) -> list[str]:
        return [f"{source.name}: {line}" for source in self.parts for line in source.warnings()] + list(self.copies)

    @cached_property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(b"combined")
        for source in self.parts:  # sorted by name, so the order given does not matter
            digest.update(f"\n{source.name}\t{source.fingerprint}".encode())
        return digest.hexdigest()

    @cached_property
    def images_fingerprint(self) -> str:
        """The identity of the sources' images alone: each source's own (:attr:`Dataset.images_fingerprint`,
        its paths relative to its folder), in no order. Not made from paths relative to the sources' common
        parent, which moving one of the folders changes: the same images would be another test set."""
        digest = hashlib.sha256(b"combined images")
        for part in sorted(source.images_fingerprint for source in self.parts):
            digest.update(f"\n{part}".encode())
        return digest.hexdigest()

    def subset(self, classes) -> CombinedDataset:
        """The images of some classes only; refused when a class is missing from any source."""
        return CombinedDataset.of([source.subset(classes) for source in self.parts])

    def describe(self) -> dict:
        return {**super().describe(), "sources": [source.describe() for source in self.parts]}


def _without_copies(sources) -> tuple[tuple[Dataset, ...], tuple[str, ...]]:
    """The sources, each less the files with the same bytes as a file of a source before it; and
    one line per source that lost files. A source that lost files has another fingerprint, so the
    combined one changes only then.

    Copies within one source share a fold (see :mod:`leukdash.data.duplicates`); a copy in two
    sources cannot (each source is its own fold when one dataset is left out), so a run would
    validate on images it trained on. Images re-encoded, resized, mirrored or rotated are not caught
    here: folds join them with their originals (see :func:`leukdash.engine.fold_planning.joined_groups`)."""
    first_source: dict[str, Dataset] = {}
    kept_sources, lines = [], []
    for source in sources:
        kept, copied = [], []
        for item, content in zip(source.items, source.contents):
            first = first_source.setdefault(content, source)
            if first is source:
                kept.append(item)
            else:
                copied.append((item, first))
        if copied and not kept:
            raise DatasetError(f"every image of {source.name!r} has the same bytes as an image of "
                               f"{copied[0][1].name!r}: combined, it adds nothing (the same dataset twice?)")
        if copied:
            item, first = copied[0]
            lines.append(f"{len(copied)} image(s) of {source.name} have the same bytes as images of {first.name} and are "
                         f"left out, so that no run validates on an image it trained on (first: "
                         f"{source.relative(item.path)!r})")
            source = replace(source, items=tuple(kept))
        kept_sources.append(source)
    return tuple(kept_sources), tuple(lines)
