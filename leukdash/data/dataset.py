"""The dataset object: images with labels and groups, a fingerprint, and decoding into arrays."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from leukdash.data.decode import decode_image
from leukdash.data.preprocess import prepare_with_failure
from leukdash.data.sources import ImageItem, SkippedFile, relative_name, scan_folder
from leukdash.errors import DatasetError, ImageDecodeError
from leukdash.paths import absolute, one_form, printable

SYNTHETIC_LABEL = "synthetic demo data, not clinical"
# Said wherever a run of such data answers an image (Predict, `leukdash predict`): it can read as a diagnosis.
SYNTHETIC_RUN_NOTE = f"this run was trained on {SYNTHETIC_LABEL}: its answers say nothing about real blood cells"
# Images named in a warning line before "and N more".
FLAT_NAMED = 5


@dataclass
class LoadedImages:
    """Decoded images of a dataset, in the order of its items, without the unreadable ones."""

    images: np.ndarray | list
    labels: np.ndarray
    groups: np.ndarray
    paths: list[Path]
    skipped: list[SkippedFile] = field(default_factory=list)
    # Loaded in a cell-level mode: the images whose cell was not segmented plausibly (the reason:
    # a failure of leukdash.data.preprocess.FAILURE_MEANING); they are in ``images`` as found.
    segmentation_failures: list[SkippedFile] = field(default_factory=list)


@dataclass(frozen=True)
class Dataset:
    """A list of images, each with a class label and a group key, and the ordered class names.

    Images of one group (a patient, a smear field, the variants of one image) always land in
    the same fold. The fingerprint changes when any file's name, label, group or bytes change.
    """

    name: str
    root: Path
    classes: tuple[str, ...]
    items: tuple[ImageItem, ...]
    kind: str = "folders"
    synthetic: bool = False
    ignored: tuple[SkippedFile, ...] = ()
    notes: tuple[str, ...] = ()  # about its groups: see :func:`leukdash.data.sources.scan_folder`
    # Each file's sha1 by path, shared with the datasets made from this one (subset, replace): an external
    # test fingerprints a folder and the run's classes of it, and should read its files once.
    hashes: dict[Path, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_folder(cls, root: Path, name: str | None = None) -> Dataset:
        root = absolute(root).resolve()
        scan = scan_folder(root)
        source = root / "SOURCE.md"
        synthetic = source.is_file() and SYNTHETIC_LABEL in source.read_text(errors="replace")
        return cls(printable(name or root.name), root, scan.classes, scan.items,
                   "synthetic" if synthetic else scan.kind, synthetic, scan.ignored, scan.notes)

    @property
    def labels(self) -> np.ndarray:
        return np.array([item.label for item in self.items], dtype=np.int64)

    @property
    def groups(self) -> np.ndarray:
        return np.array([item.group for item in self.items], dtype=object)

    @property
    def sources(self) -> tuple[Dataset, ...]:
        """The datasets this one is made of: itself, for a dataset read from one folder."""
        return (self,)

    @property
    def source_names(self) -> tuple[str, ...]:
        return tuple(source.name for source in self.sources)

    def sources_of(self, paths) -> np.ndarray:
        """The name of the source dataset of each image path (its own name here)."""
        return np.array([self.name] * len(paths), dtype=object)

    def counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts)}

    @cached_property
    def contents(self) -> tuple[str, ...]:
        """The sha1 of each item's bytes, in the order of the items."""
        for item in self.items:
            if item.path not in self.hashes:
                with open(item.path, "rb") as handle:  # in blocks: a huge file is not held in memory
                    self.hashes[item.path] = hashlib.file_digest(handle, "sha1").hexdigest()
        return tuple(self.hashes[item.path] for item in self.items)

    @cached_property
    def fingerprint(self) -> str:
        digest = hashlib.sha256("\n".join(self.classes).encode())
        for item, content in zip(self.items, self.contents):
            digest.update(f"\n{self.relative(item.path)}\t{item.label}\t{item.group}\t{content}".encode())
        return digest.hexdigest()

    @cached_property
    def images_fingerprint(self) -> str:
        """The identity of the folder's images alone: each file's name, class name, group and bytes, in no
        order. Unlike :attr:`fingerprint` (which names runs, so it stays as it is), it does not change with
        the class order a run gives: runs of other class orders tested on one folder tested one state of it."""
        lines = sorted(f"{self.relative(item.path)}\t{self.classes[item.label]}\t{item.group}\t{content}"
                       for item, content in zip(self.items, self.contents))
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def warnings(self) -> list[str]:
        """What a user must know before trusting a run on this dataset, one line each: the notes
        on its groups, class folders whose names differ only in case (two
        classes a reader takes for one), and files with the same bytes filed under two classes
        (one of the two labels is wrong, and the image is trained on with both)."""
        first_of: dict[str, ImageItem] = {}
        conflicts = []
        for item, content in zip(self.items, self.contents):
            seen = first_of.setdefault(content, item)
            if seen.label != item.label:
                conflicts.append((seen, item))
        found = list(self.notes) + self.alike_classes()
        if conflicts:
            seen, item = conflicts[0]
            found.append(f"{len(conflicts)} file(s) have the same bytes as a file of another class (first: "
                         f"{self.relative(seen.path)!r} and {self.relative(item.path)!r}): check their labels")
        return found

    def image_warnings(self, loaded: LoadedImages, pairs) -> list[str]:
        """What a user must know of the decoded images of this dataset (``loaded``) before trusting a
        run on them, one line each: the pictures filed under two classes though their bytes differ
        (``pairs``: the duplicate links, indices into ``loaded``, that folds are planned with;
        re-encoded, resized or turned copies whose two labels cannot both be right), and the images
        that carry no detail (a blank capture teaches nothing, and skews the out-of-distribution
        check's calibration)."""
        from leukdash.data.blank import flat_images

        content = dict(zip((item.path for item in self.items), self.contents))
        conflicts = [(i, j) for i, j in pairs if loaded.labels[i] != loaded.labels[j]
                     and content.get(Path(loaded.paths[i])) != content.get(Path(loaded.paths[j]))]
        found = []
        if conflicts:
            first, second = (self.relative(loaded.paths[k]) for k in conflicts[0])
            found.append(f"{len(conflicts)} pair(s) of files show one picture under two classes (re-encoded, resized "
                         f"or turned; first: {first!r} and {second!r}): check their labels; "
                         "`python -m leukdash audit` lists them")
        flat = flat_images(loaded.images) if len(loaded.labels) else []
        if flat:
            names = ", ".join(repr(self.relative(loaded.paths[i])) for i in flat[:FLAT_NAMED])
            more = f" and {len(flat) - FLAT_NAMED} more" if len(flat) > FLAT_NAMED else ""
            found.append(f"{len(flat)} image(s) carry no detail (all one colour): {names}{more}: a blank picture "
                         "shows no cell and skews the out-of-distribution check; remove or replace them")
        return found

    def alike_classes(self) -> list[str]:
        """One line per set of class names that differ only in case (names in two Unicode forms are
        one name, see :func:`leukdash.paths.one_form`)."""
        alike: dict[str, list[str]] = {}
        for name in self.classes:
            alike.setdefault(name.casefold(), []).append(name)
        return [f"the classes {', '.join(map(repr, names))} differ only in case: they are separate classes; put "
                "their images in one folder if they are one" for names in alike.values() if len(names) > 1]

    def left_out(self, loaded: LoadedImages | None = None) -> list[str]:
        """One warning line when files of this dataset were left out of ``loaded`` (unreadable,
        refused; without ``loaded``: those its scan left out, before any is decoded), else none."""
        skipped = self.ignored if loaded is None else loaded.skipped
        n_images = len(self.items) if loaded is None else len(loaded.labels)
        return left_out_lines(self.name, [file.to_dict(self.root) for file in skipped], n_images)

    def failed_segmentation(self, loaded: LoadedImages, mode: str) -> list[str]:
        """One warning line when ``loaded`` (in cell-level ``mode``) holds images whose cell was not
        segmented plausibly, else none: a run trains on them as found (the whole image where no
        cell was), which the user should know before trusting it."""
        failed = loaded.segmentation_failures
        if not failed:
            return []
        kinds = ", ".join(f"{failure} {n}" for failure, n in Counter(f.reason for f in failed).most_common())
        return [f"the cell was not segmented plausibly in {len(failed)} of {len(loaded.labels)} image(s) of "
                f"{self.name} as {mode} ({kinds}; first: {self.relative(failed[0].path)!r}): the models see them "
                f"as found, the whole image where no cell was; `python -m leukdash audit DATASET --preprocess {mode}` "
                "lists them"]

    def with_left_out(self, error: DatasetError, loaded: LoadedImages | None = None) -> DatasetError:
        """``error`` (too few images, say) followed by :meth:`left_out`'s line, when files were left out."""
        return DatasetError("; ".join([str(error), *self.left_out(loaded)]))

    def relative(self, path: Path) -> str:
        """A path as it is recorded and shown: relative to the dataset folder (in one Unicode form,
        :func:`leukdash.paths.one_form`), printable."""
        return printable(relative_name(path, self.root) if path.is_relative_to(self.root) else str(path))

    def subset(self, classes) -> Dataset:
        """The images of some classes only, relabelled in the given order."""
        classes = tuple(map(one_form, classes))  # 'é' typed is the folder 'é' macOS wrote, in another form
        missing = [c for c in classes if c not in self.classes]
        if missing:
            raise DatasetError(f"class {missing[0]!r} is not in dataset {self.name!r} (classes: "
                               f"{', '.join(map(repr, self.classes))}){missing_class_hint(missing[0], self.classes)}")
        old_to_new = {self.classes.index(c): i for i, c in enumerate(classes)}
        items = tuple(
            ImageItem(item.path, old_to_new[item.label], item.group)
            for item in self.items if item.label in old_to_new
        )
        return replace(self, classes=classes, items=items)

    def load(self, size: int | None = None, preprocess: str = "raw", decoded=None) -> LoadedImages:
        """Decode every image; files that cannot be decoded or prepared are skipped with their reason.

        With ``size``, each image is prepared as a run's models take it
        (:func:`leukdash.data.preprocess.prepare_one`: for ``raw``, padded to a square with its edge
        pixels repeated, so a cell is not squashed, and resized to ``size`` x ``size``) as soon as
        it is decoded, into one preallocated uint8 array: memory holds one decoded image at a time
        besides the result. ``decoded``, if given, is called with each image kept, as decoded (before
        it is prepared): what else is wanted of the full images is taken in the same pass.
        """
        images = np.empty((len(self.items), size, size, 3), np.uint8) if size else []
        kept, skipped, failures = [], list(self.ignored), []
        for item, image, reason, failure in self.each_image(size, preprocess, decoded):
            if reason is not None:
                skipped.append(SkippedFile(item.path, reason))
                continue
            if size:
                images[len(kept)] = image
            else:
                images.append(image)
            kept.append(item)
            if failure is not None:
                failures.append(SkippedFile(item.path, failure))
        return LoadedImages(
            images=images[:len(kept)] if size else images,
            labels=np.array([item.label for item in kept], dtype=np.int64),
            groups=np.array([item.group for item in kept], dtype=object),
            paths=[item.path for item in kept],
            skipped=skipped,
            segmentation_failures=failures,
        )

    def each_image(self, size: int | None = None, preprocess: str = "raw", decoded=None):
        """``(item, image, None, failure)`` for each image that decodes (prepared as :meth:`load`
        does with ``size``; ``failure``: how a cell-level mode's segmentation failed on it, else
        None), ``(item, None, reason, None)`` for each that does not: one image at a time.
        ``decoded``: as :meth:`load` has it."""
        for item in self.items:
            try:
                image = whole = decode_image(item.path)
                failure = None
                if size:
                    image, failure = prepare_with_failure(image, size, preprocess)
            except ImageDecodeError as error:
                yield item, None, str(error), None
                continue
            if decoded:
                decoded(whole)
            yield item, image, None, failure

    def describe(self) -> dict:
        """A JSON-ready summary, as the CLI and the pages show it."""
        return {
            "name": self.name,
            "path": str(self.root),
            "kind": self.kind,
            "synthetic": self.synthetic,
            "label": SYNTHETIC_LABEL if self.synthetic else None,
            "classes": self.counts(),
            "n_images": len(self.items),
            "notes": list(self.notes),
        }


def left_out_lines(name: str, skipped: list[dict], n_images: int) -> list[str]:
    """:meth:`Dataset.left_out`'s line for dataset ``name``, from the files left out as a run's
    record keeps them (:meth:`SkippedFile.to_dict`) and the number of images used."""
    if not skipped:
        return []
    first = skipped[0]
    return [f"{len(skipped)} of {n_images + len(skipped)} file(s) of {name} were left out, unreadable or refused "
            f"(first: {first['path']!r}: {first['reason']}); `python -m leukdash audit` lists them all"]


def missing_class_hint(name: str, classes) -> str:
    """What to give instead of a class ``name`` that is not one of ``classes``, or why the class
    meant cannot be named on the command line (``--classes`` splits at commas and strips spaces)."""
    alike = case_matches([name], classes)
    if alike:
        meant = alike[0][1]
        if meant != meant.strip():
            return (f"; did you mean {meant!r}? (its folder name has spaces around it, which --classes drops: "
                    "rename the folder)")
        return f"; did you mean {meant!r}? (class names are case-sensitive)"
    with_comma = [c for c in classes if "," in c and name.strip() in (part.strip() for part in c.split(","))]
    if with_comma:
        return (f"; the class {with_comma[0]!r} has a comma in its folder name, which --classes reads as two "
                "classes: rename the folder")
    return ""


def case_matches(names, classes) -> list[tuple[str, str]]:
    """``(name, class)`` for each name that differs from one of ``classes`` in case or outer
    spaces only: class names are folder names, case-sensitive, and 'all' for 'ALL' is the
    likeliest slip."""
    folded = {c.strip().casefold(): c for c in classes}
    return [(name, folded[name.strip().casefold()]) for name in names
            if name not in classes and name.strip().casefold() in folded]


def holdout_folds(test_fraction: float) -> int:
    """The holdout is one of this many grouped folds (``test_fraction`` is 1/k, see
    :meth:`leukdash.config.RunConfig.validate`)."""
    return max(2, round(1 / test_fraction))


def check_class_counts(classes, labels, n_folds: int, name: str = "dataset", test_fraction: float | None = None) -> None:
    """Raise a clear error for fewer than 2 classes or a class with fewer images than folds
    (``test_fraction``: a holdout run's test part, one of :func:`holdout_folds` folds)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    present = [c for c, n in zip(classes, counts) if n > 0]
    if len(present) < 2:
        raise DatasetError(
            f"{name} has {len(present)} class(es) with images ({', '.join(present) or 'none'}); at least 2 are needed"
        )
    needed = n_folds if test_fraction is None else holdout_folds(test_fraction)
    smallest = int(np.argmin(counts))  # named first: what it allows is what the run can have
    cls, n = classes[smallest], int(counts[smallest])
    if n < needed and test_fraction is not None:
        raise DatasetError(f"class {cls!r} of {name} has {n} image(s): a {test_fraction:.0%} holdout needs at "
                           f"least {needed} per class, one for the test part")
    if n < needed:
        advice = f"use {n} folds or fewer" if n >= 2 else "add images to it, or leave it out of the run's classes"
        raise DatasetError(f"class {cls!r} of {name} has {n} image(s), fewer than the {n_folds} folds: {advice}")
