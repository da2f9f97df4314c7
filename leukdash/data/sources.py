"""Finding the images of a dataset on disk and their labels and groups.

Two layouts are read:

- class folders: ``DATASET/CLASS/**/*.jpg`` (any image extension); images in a subfolder of a
  class folder share that subfolder as their group (e.g. one folder per patient);
- ALL-IDB names: a flat folder of ``ImNNN_L.ext`` or ``ImNNN_Y_L.ext`` (L=1 blast, L=0 healthy).

Wherever a file carries an ALL-IDB name, its group is the ALL-IDB image id ``ImNNN``, so the
augmented variants ``Y`` of one image can never fall on both sides of a split. A ``groups.csv``
beside the class folders (columns ``file,group``) overrides any of these groups.

Whatever is named like an image but cannot be one is listed with its reason instead of being
read: folders, FIFOs, devices, broken or looping symbolic links, symbolic links that lead out of
the dataset folder, and names that are not valid UTF-8 (they could not be recorded or shown).
Symbolic links to folders are not followed.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from leukdash.data.decode import IMAGE_EXTENSIONS
from leukdash.errors import DatasetError
from leukdash.data.files import stat_problem
from leukdash.paths import printable

# The paper's class order; other class names follow alphabetically.
KNOWN_CLASSES = ("ALL", "AML", "CLL", "CML", "HEALTHY")
ALLIDB_NAME = re.compile(r"^Im(\d+)_(?:(\d+)_)?([01])\.(jpe?g|png|bmp|tiff?)$", re.IGNORECASE)
ALLIDB_CLASSES = ("ALL", "HEALTHY")


@dataclass(frozen=True)
class ImageItem:
    """One image of a dataset: where it is, its class index and its group key."""

    path: Path
    label: int
    group: str


@dataclass(frozen=True)
class SkippedFile:
    """A file that is not used, and why."""

    path: Path
    reason: str

    def to_dict(self, root: Path | None = None) -> dict:
        path = self.path.relative_to(root) if root and self.path.is_relative_to(root) else self.path
        return {"path": printable(str(path)), "reason": self.reason}


@dataclass(frozen=True)
class Scan:
    """What a folder holds: the class names, the images, and the files left out."""

    kind: str
    classes: tuple[str, ...]
    items: tuple[ImageItem, ...]
    ignored: tuple[SkippedFile, ...]


def scan_folder(root: Path) -> Scan:
    """Read a dataset folder in whichever layout it uses."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {printable(str(root))}")
    folders, bad_folders = [], []
    for folder in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        problem = _name_problem(folder.name)
        entries = sorted(_walk(root, folder), key=lambda entry: entry[0])
        if not any(_is_image_name(path) for path, _ in entries):
            continue
        if problem:
            bad_folders.append(SkippedFile(folder, f"class {problem}"))
        else:
            folders.append((folder, entries))
    if folders:
        scan = _scan_class_folders(root, folders, bad_folders)
    elif any(ALLIDB_NAME.match(p.name) for p in root.iterdir()):
        scan = _scan_allidb(root)
    else:
        raise DatasetError(f"no images found in {printable(str(root))}: expected one folder per class, "
                           "or ALL-IDB files ImNNN_L.ext")
    return _apply_groups_csv(root, scan)


def is_dataset_folder(root: Path) -> bool:
    """Cheap check used by discovery: does this folder look like a dataset?"""
    try:
        return any(
            (p.is_dir() and any(_is_image_name(f) for f in p.iterdir())) or ALLIDB_NAME.match(p.name)
            for p in root.iterdir() if not p.name.startswith(".")
        )
    except OSError:
        return False


def order_classes(names) -> tuple[str, ...]:
    known = [c for c in KNOWN_CLASSES if c in names]
    return tuple(known + sorted(set(names) - set(known)))


def _scan_class_folders(root: Path, folders: list[tuple[Path, list]], ignored: list[SkippedFile]) -> Scan:
    classes = order_classes([folder.name for folder, _ in folders])
    items = []
    for class_dir, entries in folders:
        label = classes.index(class_dir.name)
        for path, problem in entries:
            if problem:
                ignored.append(SkippedFile(path, problem))
            elif not _is_image_name(path):
                ignored.append(SkippedFile(path, f"unsupported file type '{printable(path.suffix or path.name)}'"))
            else:
                items.append(ImageItem(path, label, _default_group(root, class_dir, path)))
    return Scan("folders", classes, tuple(items), tuple(ignored))


def _scan_allidb(root: Path) -> Scan:
    items, ignored = [], []
    for path in sorted(p for p in root.iterdir() if ALLIDB_NAME.match(p.name)):
        problem = _entry_problem(root, path)
        if problem:
            ignored.append(SkippedFile(path, problem))
            continue
        match = ALLIDB_NAME.match(path.name)
        label = ALLIDB_CLASSES.index("ALL" if match.group(3) == "1" else "HEALTHY")
        items.append(ImageItem(path, label, f"Im{int(match.group(1)):03d}"))
    return Scan("allidb", ALLIDB_CLASSES, tuple(items), tuple(ignored))


def _walk(root: Path, folder: Path):
    """Every visible entry under ``folder``, sorted, as ``(path, problem or None)``.

    Files with an image name come with the reason they cannot be read, if any; folders named
    like an image and symbolic links to folders are listed (with their reason) and not entered.
    """
    for current, dirs, files in os.walk(folder, followlinks=False):
        current = Path(current)
        dirs.sort()
        for name in list(dirs):
            path = current / name
            if path.is_symlink() and not name.startswith("."):
                yield path, "symbolic link to a folder: not followed"
            elif _is_image_name(path):
                yield path, "is a folder named like an image: not read"
            elif not name.startswith("."):
                continue
            dirs.remove(name)
        for name in sorted(files):
            if not name.startswith("."):
                path = current / name
                yield path, _entry_problem(root, path) if _is_image_name(path) else None


def _entry_problem(root: Path, path: Path) -> str | None:
    """Why an entry named like an image is not read, or None when it is a usable file."""
    problem = _name_problem(path.relative_to(root).as_posix()) or stat_problem(path)
    if problem:
        return "broken symbolic link" if problem == "file not found" and path.is_symlink() else problem
    if not Path(os.path.realpath(path)).is_relative_to(root):
        return "leads outside the dataset folder (symbolic link): refused"
    return None


def _name_problem(name: str) -> str | None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8: rename it"
    return None


def _default_group(root: Path, class_dir: Path, path: Path) -> str:
    match = ALLIDB_NAME.match(path.name)
    if match:
        return f"Im{int(match.group(1)):03d}"
    if path.parent != class_dir:
        return path.parent.relative_to(root).as_posix()
    return path.relative_to(root).as_posix()


def _apply_groups_csv(root: Path, scan: Scan) -> Scan:
    table = root / "groups.csv"
    if not table.is_file():
        return scan
    with table.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"file", "group"} <= set(reader.fieldnames):
            raise DatasetError(f"{table} needs the columns 'file' and 'group'")
        groups = {row["file"].strip(): row["group"].strip() for row in reader}
    items = tuple(
        ImageItem(item.path, item.label, groups.get(item.path.relative_to(root).as_posix(), item.group))
        for item in scan.items
    )
    return Scan(scan.kind, scan.classes, items, scan.ignored)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
