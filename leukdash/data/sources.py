"""Finding the images of a dataset on disk and their labels and groups.

Two layouts are read:

- class folders: ``DATASET/CLASS/**/*.jpg`` (any image extension); images in a subfolder of a
  class folder share that subfolder as their group (e.g. one folder per patient);
- ALL-IDB names: a flat folder of ``ImNNN_L.ext`` or ``ImNNN_Y_L.ext`` (L=1 blast, L=0 healthy).

Wherever a file carries an ALL-IDB name, its group is the ALL-IDB image id ``ImNNN``, so the
augmented variants ``Y`` of one image can never fall on both sides of a split. A ``groups.csv``
beside the class folders (columns ``file,group``) overrides any of these groups.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from leukdash.data.decode import IMAGE_EXTENSIONS
from leukdash.errors import DatasetError

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
        return {"path": str(path), "reason": self.reason}


@dataclass(frozen=True)
class Scan:
    """What a folder holds: the class names, the images, and the files left out."""

    kind: str
    classes: tuple[str, ...]
    items: tuple[ImageItem, ...]
    ignored: tuple[SkippedFile, ...]


def scan_folder(root: Path) -> Scan:
    """Read a dataset folder in whichever layout it uses."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    class_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")
                  and any(_is_image_name(p) for p in d.rglob("*"))]
    if class_dirs:
        scan = _scan_class_folders(root, class_dirs)
    elif any(ALLIDB_NAME.match(p.name) for p in root.iterdir()):
        scan = _scan_allidb(root)
    else:
        raise DatasetError(f"no images found in {root}: expected one folder per class, or ALL-IDB files ImNNN_L.ext")
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


def _scan_class_folders(root: Path, class_dirs: list[Path]) -> Scan:
    classes = order_classes([d.name for d in class_dirs])
    items, ignored = [], []
    for class_dir in class_dirs:
        label = classes.index(class_dir.name)
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file()):
            if path.name.startswith("."):
                continue
            if not _is_image_name(path):
                ignored.append(SkippedFile(path, f"unsupported file type '{path.suffix or path.name}'"))
                continue
            items.append(ImageItem(path, label, _default_group(root, class_dir, path)))
    return Scan("folders", classes, tuple(items), tuple(ignored))


def _scan_allidb(root: Path) -> Scan:
    items = []
    for path in sorted(p for p in root.iterdir() if p.is_file()):
        match = ALLIDB_NAME.match(path.name)
        if match:
            label = ALLIDB_CLASSES.index("ALL" if match.group(3) == "1" else "HEALTHY")
            items.append(ImageItem(path, label, f"Im{int(match.group(1)):03d}"))
    return Scan("allidb", ALLIDB_CLASSES, tuple(items), ())


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
