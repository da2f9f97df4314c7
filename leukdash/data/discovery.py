"""Finding datasets by name: the built-in one, folders under the data roots, or any path."""

from __future__ import annotations

import os
from pathlib import Path

from leukdash.atomic import explain
from leukdash.config import dataset_parts
from leukdash.data.combined import CombinedDataset
from leukdash.data.dataset import Dataset
from leukdash.data.sources import KNOWN_CLASSES, is_dataset_folder
from leukdash.errors import DatasetError, LeukdashError
from leukdash.paths import data_roots, named_data_roots, printable

BUILTIN = "synthetic"


def discover_datasets() -> dict[str, Path | None]:
    """Dataset names and their folders: ``synthetic`` first, then every dataset folder found
    under ``$LEUKDASH_DATA`` and ``./data`` (the first of two equal names wins).

    The built-in set maps to ``None`` until it has been generated.
    """
    return _discover()[0]


def hidden_datasets() -> dict[str, list[Path]]:
    """Dataset folders that :func:`discover_datasets` does not use, by name: an earlier data root
    (or the built-in set) has a dataset of the same name."""
    return _discover()[1]


def _discover() -> tuple[dict[str, Path | None], dict[str, list[Path]]]:
    """One pass over the data roots: the folder each name opens, and the folders it hides."""
    from leukdash.data.synthetic import cached_synthetic_path

    found: dict[str, Path | None] = {BUILTIN: cached_synthetic_path()}
    hidden: dict[str, list[Path]] = {}
    for root in data_roots():
        for folder in _subfolders(root):
            if not folder.name.startswith(".") and is_dataset_folder(folder):
                if folder.name in found:
                    hidden.setdefault(folder.name, []).append(folder)
                else:
                    found[folder.name] = folder
    return found, hidden


def _subfolders(root: Path) -> list[Path]:
    """The folders in a data root; none in one that is missing or cannot be read (``./data`` in a
    current folder this user may not enter: :func:`unreadable_data_roots` notes it), so that it
    blocks no other root, and no dataset given by its path."""
    try:
        return [folder for folder in sorted(root.iterdir()) if folder.is_dir()] if root.is_dir() else []
    except OSError:
        return []


def unreadable_data_roots() -> list[tuple[Path, str]]:
    """The data roots that cannot be read, each with the reason (``permission denied``)."""
    unreadable = []
    for root in data_roots():
        try:
            if root.is_dir():
                os.scandir(root).close()
        except OSError as error:
            unreadable.append((root, (error.strerror or type(error).__name__).lower()))
    return unreadable


def missing_data_roots() -> list[str]:
    """The entries of ``$LEUKDASH_DATA`` that are not folders (a typo, an unmounted disk)."""
    return [root for root in named_data_roots() if not Path(root).is_dir()]


def roots_that_are_datasets() -> list[Path]:
    """The data roots that hold class folders themselves (at least two named ALL, AML, CLL, CML or
    HEALTHY): discovery lists each of their classes as a dataset, when the folder holding the root
    was meant."""
    found = []
    for root in data_roots():
        try:
            names = {child.name.upper() for child in root.iterdir() if child.is_dir()} if root.is_dir() else set()
        except OSError:
            continue
        if len(names & set(KNOWN_CLASSES)) >= 2:
            found.append(root.resolve())
    return found


def data_root_notes(folder_name=str) -> list[str]:
    """What is wrong with the data roots, one sentence each: an entry of ``$LEUKDASH_DATA`` that is
    not a folder (:func:`missing_data_roots`), a root that cannot be read, a root that is a dataset itself
    (:func:`roots_that_are_datasets`). ``folder_name`` writes a root's folder in them (a page
    hides the server's path)."""
    return ([f"LEUKDASH_DATA names {folder_name(root)}, which is not a folder: nothing found there"
             for root in missing_data_roots()]
            + [f"the data folder {folder_name(str(root))} cannot be read ({reason}): nothing found there"
               for root, reason in unreadable_data_roots()]
            + [f"the data folder {folder_name(str(root))} holds class folders itself, so its classes are listed as "
               "datasets: set LEUKDASH_DATA to the folder that holds it" for root in roots_that_are_datasets()])


def list_datasets() -> list[dict]:
    """Every discovered dataset as :meth:`Dataset.describe` gives it (the built-in set, when not
    drawn yet, as it will be, with a note saying so); one that cannot be opened
    (an unreadable ``groups.csv``, say) is listed as ``{"name", "path", "unusable": reason}``
    and does not stop the others. ``hidden``: folders of the same name it hides; ``warnings``: the
    files its scan left out and class names that differ only in case, as ``run`` warns of them."""
    listed, (discovered, hidden) = [], _discover()
    for name, folder in discovered.items():
        try:
            if name == BUILTIN and folder is None:
                entry = {**_undrawn_builtin(), "warnings": []}
            else:
                dataset = open_dataset(name)
                entry = {**dataset.describe(), "warnings": dataset.left_out() + dataset.alike_classes()}
        except (LeukdashError, OSError) as error:  # OSError: a folder that cannot be read
            reason = explain(error) if isinstance(error, OSError) else error
            if reason is None:
                raise
            entry = {"name": printable(name), "path": printable(str(folder)), "unusable": str(reason)}
        listed.append({**entry, "hidden": [printable(str(path)) for path in hidden.get(name, [])]})
    return listed


def _undrawn_builtin() -> dict:
    """The built-in set as :meth:`Dataset.describe` will give it once drawn: a listing does not
    draw 903 images (about 10 s) and write them into the store; a run or audit of it does."""
    from leukdash.data.dataset import SYNTHETIC_LABEL
    from leukdash.data.synthetic import DEFAULT_COUNTS, synthetic_folder

    return {"name": BUILTIN, "path": str(synthetic_folder()), "kind": "synthetic", "synthetic": True,
            "label": SYNTHETIC_LABEL, "classes": dict(DEFAULT_COUNTS), "n_images": sum(DEFAULT_COUNTS.values()),
            "notes": ["not drawn yet: drawn into this folder on first use (about 10 s)"]}


def open_dataset(name_or_path: str | Path) -> Dataset:
    """Open a dataset by name (built-in or discovered) or by the path of its folder.

    A comma-separated list opens each dataset and combines them (same classes required); a
    folder whose path holds a comma is one dataset.
    """
    name = str(name_or_path)
    if len(dataset_parts(name)) > 1:
        return CombinedDataset.of([open_dataset(part) for part in dataset_parts(name)])
    if name == BUILTIN:
        from leukdash.data.synthetic import ensure_synthetic

        return Dataset.from_folder(ensure_synthetic(), name=BUILTIN)
    discovered = discover_datasets()
    if name in discovered:
        return Dataset.from_folder(discovered[name], name=name)
    path = Path(name).expanduser()
    if path.is_dir():
        return Dataset.from_folder(path)
    known = ", ".join(discovered)
    not_folders = missing_data_roots()
    raise DatasetError(f"unknown dataset {name!r}: not one of ({known}) and not a folder" + (
        f"; LEUKDASH_DATA names {', '.join(map(repr, not_folders))}, which is not a folder" if not_folders else ""))

