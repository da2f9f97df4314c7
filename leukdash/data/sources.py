"""Finding the images of a dataset on disk and their labels and groups.

Two layouts are read:

- class folders: ``DATASET/CLASS/**/*.jpg`` (any image extension); images under one folder of a
  class folder share that first folder as their group, however deep they lie below it
  (``CLASS/patient/slide/x.jpg``: the patient); images beside the class folders, in none of them, are
  listed as left out;
- ALL-IDB names: a flat folder of ``ImNNN_L.ext`` or ``ImNNN_Y_L.ext`` (L=1 blast, L=0 healthy).

Wherever a file carries an ALL-IDB name, its group is the ALL-IDB image id ``ImNNN``, so the
augmented variants ``Y`` of one image can never fall on both sides of a split. A ``groups.csv``
beside the class folders (columns ``file,group``) overrides any of these groups: Excel's
encoding and line ends are read, the ``file`` column may use ``\\`` or ``./``, and rows that
name no image or images that no row names are reported in the dataset's notes, never dropped in
silence; a row that cannot be read is one error naming the file and the line.

Whatever is named like an image but cannot be one is listed with its reason instead of being
read: folders, FIFOs, devices, broken or looping symbolic links, symbolic links that lead out of
the dataset folder, names that are not valid UTF-8 (they could not be recorded or shown) and
names holding control characters (a newline in a name could forge a line of output).
Symbolic links to folders are not followed.

One module, though long (about 460 lines): the walk, what it skips and why, the two layouts and the
groups file are one answer to "which images, with which labels and groups, and what was left out"
(the left-out list is complete only if the walk, the layouts and the groups file all add to it);
decoding the images lives apart (:mod:`leukdash.data.decode`), and so does the dataset built on
the answer (:mod:`leukdash.data.dataset`).
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from leukdash.data.decode import IMAGE_EXTENSIONS
from leukdash.errors import DatasetError, FileRefused
from leukdash.data.files import read_regular_file, stat_problem
from leukdash.paths import has_control, one_form, printable

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
        path = relative_name(self.path, root) if root and self.path.is_relative_to(root) else str(self.path)
        return {"path": printable(path), "reason": self.reason}


@dataclass(frozen=True)
class Scan:
    """What a folder holds: the class names, the images, the files left out, and notes on its
    groups a user should read (``groups.csv`` rows that name no image, images it does not name)."""

    kind: str
    classes: tuple[str, ...]
    items: tuple[ImageItem, ...]
    ignored: tuple[SkippedFile, ...]
    notes: tuple[str, ...] = ()


def scan_folder(root: Path) -> Scan:
    """Read a dataset folder in whichever layout it uses."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {printable(str(root))}")
    try:
        top = list(root.iterdir())
    except PermissionError:
        raise DatasetError(f"{printable(str(root))}: {UNLISTED}") from None
    folders, bad_folders, unread = [], [], []
    for folder in sorted((d for d in top if d.is_dir() and not d.name.startswith(".")), key=_path_key):
        problem = _name_problem(folder.name)
        entries = sorted(_walk(root, folder), key=lambda entry: _path_key(entry[0]))
        unlisted = [SkippedFile(path, why) for path, why in entries if why and why.startswith(UNLISTED_FOLDER)]
        if unlisted and not any(_is_image_name(path) for path, _ in entries):
            bad_folders += unlisted  # a class this user cannot read is named, never taken for a missing one
            continue
        if not any(_is_image_name(path) for path, _ in entries):
            if entries:  # files of a type not read (HEIC, say): said, never dropped in silence
                unread.append((folder, [path for path, _ in entries]))
            continue
        if problem:
            bad_folders.append(SkippedFile(folder, f"class {problem}"))
        else:
            folders.append((folder, entries))
    if folders:
        not_classes = [SkippedFile(path, f"{_unsupported(path)}: no file of its folder is an image this tool reads, "
                                         f"so the folder is not a class ({READ_TYPES})")
                       for _, paths in unread for path in paths]
        scan = _scan_class_folders(root, folders, bad_folders + _dead_links(root) + not_classes + _loose_images(root))
    elif any(ALLIDB_NAME.match(p.name) for p in top):
        scan = _scan_allidb(root)
    else:
        found = "; ".join(f"{printable(folder.name)}/ holds {_files_by_type(paths)}" for folder, paths in unread[:3])
        raise DatasetError(f"no images found in {printable(str(root))}: expected one folder per class, "
                           "or ALL-IDB files ImNNN_L.ext" + (f" ({found}; {READ_TYPES})" if found else "")
                           + _refused_text(bad_folders + _dead_links(root)))
    return _apply_groups_csv(root, scan)


READ_TYPES = f"the image types read are {', '.join(IMAGE_EXTENSIONS)}"
UNLISTED_FOLDER = "folder cannot be read"
UNLISTED = f"{UNLISTED_FOLDER} (permission denied): give this user read access to it"


def _refused_text(bad_folders: list[SkippedFile]) -> str:
    """Why class folders holding images were refused for their names (a locale that cannot read
    them), each reason once: where every class folder is, that is why no images were found."""
    names: dict[str, list[str]] = {}
    for bad in bad_folders:
        names.setdefault(bad.reason, []).append(f"{printable(bad.path.name)}/")
    return "".join(f"; {', '.join(folders[:3])}{' ...' if len(folders) > 3 else ''} refused: {reason}"
                   for reason, folders in names.items())


def _loose_images(root: Path) -> list[SkippedFile]:
    """The files named like images beside a dataset's class folders: which class they would be of
    cannot be told, so they are listed as left out, never dropped in silence. Other files there
    (notes, ``groups.csv``) are not images and are not listed."""
    return [SkippedFile(path, "not in a class folder (the dataset's classes are its subfolders)")
            for path in sorted(root.iterdir()) if not path.is_dir() and _is_image_name(path)]


def _dead_links(root: Path) -> list[SkippedFile]:
    """The symbolic links beside the class folders that lead nowhere (broken, or a loop): a class
    folder on a drive no longer mounted is listed with its reason, never dropped in silence. Those
    named like an image are :func:`_loose_images`'."""
    return [SkippedFile(path, f"{_entry_problem(root, path)}: not read as a class folder")
            for path in sorted(root.iterdir())
            if path.is_symlink() and not path.exists() and not path.name.startswith(".") and not _is_image_name(path)]


def _suffix(path: Path) -> str:
    return printable(path.suffix or path.name)


def _files_by_type(paths) -> str:
    """How many of these files are of each type, most first: "2 .txt and 1 .heic file(s)"."""
    ranked = sorted(Counter(_suffix(path) for path in paths).items(), key=lambda item: (-item[1], item[0]))
    # Five types at most: a folder of many kinds of file stays one readable line.
    parts = [f"{count} {suffix}" for suffix, count in ranked[:5]]
    if len(ranked) > 5:
        parts.append(f"{sum(count for _, count in ranked[5:])} other")
    return (", ".join(parts[:-1]) + " and " if len(parts) > 1 else "") + f"{parts[-1]} file(s)"


def _unsupported(path: Path) -> str:
    return f"unsupported file type '{_suffix(path)}'"


# How far discovery looks for an image under a class folder: ALL/patient/slide/session/x.png.
DISCOVERY_DEPTH = 3
DISCOVERY_ENTRIES = 5_000


def is_dataset_folder(root: Path) -> bool:
    """Cheap check used by discovery: does :func:`scan_folder` find a dataset here? ALL-IDB files,
    or a visible folder with an image in it or a few levels down (``ALL/x.png`` as
    ``ALL/patient7/x.png``: see :func:`holds_images`)."""
    try:
        return any(ALLIDB_NAME.match(p.name) or (p.is_dir() and holds_images(p, deep=True))
                   for p in root.iterdir() if not p.name.startswith("."))
    except OSError:
        return False


def holds_images(folder: Path, *, deep: bool) -> bool:
    """Is a file named like an image in ``folder`` (``deep``: or in a visible folder under it, at
    most ``DISCOVERY_DEPTH`` levels down)? Stops at the first one found, and a deep look after
    ``DISCOVERY_ENTRIES`` entries: a data folder also holding, say, a home folder's worth of files
    must not make every listing of the datasets walk all of them."""
    if not deep:
        return any(_is_image_name(path) for path in folder.iterdir() if not path.name.startswith("."))
    looked = 0
    for current, dirs, files in os.walk(folder):
        if any(_is_image_name(Path(name)) for name in files):
            return True
        looked += 1 + len(files)  # folders entered and files read: thousands of patients' folders are no cost
        if looked > DISCOVERY_ENTRIES:
            return False
        depth = len(Path(current).relative_to(folder).parts)
        dirs[:] = [] if depth >= DISCOVERY_DEPTH else sorted(d for d in dirs if not d.startswith("."))
    return False


def _path_key(path: Path) -> list[str]:
    """A sort key for paths: their parts (as paths sort) in one Unicode form."""
    return [one_form(part) for part in path.parts]


def relative_name(path: Path, root: Path) -> str:
    """A file's path relative to its dataset folder ``root`` as it is recorded: ``/``, one Unicode form."""
    return one_form(path.relative_to(root).as_posix())


def on_disk(root: Path, name: str) -> Path:
    """The file a recorded name (:func:`relative_name`'s form) stands for under ``root``: the name
    itself where it exists, else each part matched to the entry of its folder that reads the same in
    one Unicode form (a folder copied through a Mac holds its names in NFD, records hold them in NFC)."""
    path = root / name
    if path.exists():
        return path
    found = root
    for part in name.split("/"):
        try:
            found = found / next(entry for entry in os.listdir(found) if one_form(entry) == part)
        except (OSError, StopIteration):
            return path  # not there in any form: opening it says so
    return found


def order_classes(names) -> tuple[str, ...]:
    known = [c for c in KNOWN_CLASSES if c in names]
    return tuple(known + sorted(set(names) - set(known)))


def _scan_class_folders(root: Path, folders: list[tuple[Path, list]], ignored: list[SkippedFile]) -> Scan:
    names = Counter(one_form(folder.name) for folder, _ in folders)
    twice = [name for name, count in names.items() if count > 1]
    if twice:
        raise DatasetError(f"{printable(str(root))} holds class folders named {twice[0]!r} in two Unicode forms "
                           "(one written by macOS, one elsewhere), which read as one name: move the images of one "
                           "into the other")
    classes = order_classes(list(names))
    items = []
    for class_dir, entries in folders:
        label = classes.index(one_form(class_dir.name))
        for path, problem in entries:
            if problem:
                ignored.append(SkippedFile(path, problem))
            elif not _is_image_name(path):
                ignored.append(SkippedFile(path, _unsupported(path)))
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


def image_files(folder: Path) -> list[tuple[Path, str | None]]:
    """The images under a folder as a dataset scan finds them, sorted: ``(path, None)`` for each
    readable file named like an image, ``(path, reason)`` for each that is not read (a broken or
    outside link, a folder named like an image...). Other files (notes, spreadsheets) and hidden
    ones are not images and are not listed."""
    folder = Path(folder)
    return [(path, problem) for path, problem in _walk(folder, folder) if problem or _is_image_name(path)]


def unread_files(folder: Path) -> str | None:
    """What :func:`image_files` leaves out of a folder as not images, in one phrase ("2 .txt and 1
    .gif file(s)"), or None: a file of a type not read is said, never dropped in silence."""
    left = [path for path, problem in _walk(Path(folder), Path(folder)) if problem is None and not _is_image_name(path)]
    if not left:
        return None
    return _files_by_type(left)


def _walk(root: Path, folder: Path):
    """Every visible entry under ``folder``, sorted, as ``(path, problem or None)``.

    Files with an image name come with the reason they cannot be read, if any; folders named
    like an image and symbolic links to folders are listed (with their reason) and not entered;
    so are folders this user cannot list (``folder`` itself included): their images are not
    dropped in silence.
    """
    unlisted = []
    for current, dirs, files in os.walk(folder, followlinks=False, onerror=unlisted.append):
        yield from _unlisted_folders(unlisted)
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
    yield from _unlisted_folders(unlisted)


def _unlisted_folders(errors: list[OSError]):
    """The folders :func:`os.walk` could not list (its ``onerror`` fills ``errors``), as ``_walk``
    entries, emptying ``errors``. A folder gone while it was walked is no longer there to read."""
    while errors:
        error = errors.pop(0)
        if not isinstance(error, FileNotFoundError):
            yield Path(error.filename), UNLISTED if isinstance(error, PermissionError) else \
                f"{UNLISTED_FOLDER} ({error.strerror or error})"


def _entry_problem(root: Path, path: Path) -> str | None:
    """Why an entry named like an image is not read, or None when it is a usable file."""
    problem = _name_problem(path.relative_to(root).as_posix()) or stat_problem(path)
    if problem:
        return "broken symbolic link" if problem == "file not found" and path.is_symlink() else problem
    if not os.access(path, os.R_OK):  # listed among the skipped files, not a stop of the whole scan when hashed
        return "cannot read file: Permission denied"
    if not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root)):  # root given relative, or a link
        return "leads outside the dataset folder (symbolic link): refused"
    return None


def _name_problem(name: str) -> str | None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        if _utf8_bytes(name) and sys.getfilesystemencoding().lower() not in ("utf-8", "utf8"):
            return (f"name cannot be read in this locale (file names read as {sys.getfilesystemencoding()}): run "
                    "with a UTF-8 locale, e.g. LC_ALL=C.UTF-8 or PYTHONUTF8=1")
        return "name is not valid UTF-8: rename it"
    if has_control(name):
        return "name holds a control character (a newline, an escape): rename it"
    return None


def _utf8_bytes(name: str) -> bool:
    """Whether a file name's bytes on disk are valid UTF-8 (a locale that is not may not read them)."""
    try:
        os.fsencode(name).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _default_group(root: Path, class_dir: Path, path: Path) -> str:
    """ALL-IDB image id, else the first folder under the class folder (a patient, whatever
    folders lie below it), else the image itself."""
    match = ALLIDB_NAME.match(path.name)
    if match:
        return f"Im{int(match.group(1)):03d}"
    if path.parent != class_dir:
        return relative_name(class_dir / path.relative_to(class_dir).parts[0], root)
    return relative_name(path, root)


def _apply_groups_csv(root: Path, scan: Scan) -> Scan:
    table = root / "groups.csv"
    if not os.path.lexists(table):
        return scan
    rows = read_groups_csv(table, root)
    groups, lines = {}, {}
    conflicts = []
    for file, group, line in rows:
        if groups.get(file, group) != group:
            conflicts.append((file, lines[file], line))
        groups[file], lines[file] = group, line
    named = {relative_name(item.path, root) for item in scan.items}
    known = named | {relative_name(s.path, root) for s in scan.ignored if s.path.is_relative_to(root)}
    items = tuple(ImageItem(item.path, item.label, groups.get(relative_name(item.path, root), item.group))
                  for item in scan.items)
    notes = []
    unmatched = [(file, line) for file, _, line in rows if file not in known]
    if unmatched:
        notes.append(f"groups.csv: {len(unmatched)} row(s) name no image of the dataset "
                     f"(first: line {unmatched[0][1]}, {printable(unmatched[0][0])!r})")
    if conflicts:
        file, first, last = conflicts[0]
        notes.append(f"groups.csv gives {len(conflicts)} file(s) a second, different group (first: "
                     f"{printable(file)!r}, lines {first} and {last}): the last row counts")
    ungrouped = sorted(named - set(groups))
    if ungrouped:
        notes.append(f"groups.csv names no group for {len(ungrouped)} image(s) (first: {printable(ungrouped[0])!r}): "
                     "each keeps its folder's group, or its own")
    return Scan(scan.kind, scan.classes, items, scan.ignored, scan.notes + tuple(notes))


MAX_GROUPS_CSV_BYTES = 64 * 2**20


def read_groups_csv(table: Path, root: Path) -> list[tuple[str, str, int]]:
    """The rows of a ``groups.csv`` as ``(file, group, line)``, the file relative to the dataset
    folder ``root`` with ``/`` separators (``\\``, ``./`` and absolute paths inside ``root`` are
    read); what Excel writes is read too: a UTF-8 byte-order mark, CRLF line ends, ``;`` or tabs
    between the columns. Groups are stored printable (a control character would forge output).

    Raises :class:`DatasetError` naming the file (and the line) for a file that is not a regular
    file or too large, content that is not UTF-8 text or not CSV, a missing column, or a row
    without a file or a group.
    """
    shown = printable(str(table))
    try:
        data = read_regular_file(table, MAX_GROUPS_CSV_BYTES)
    except FileRefused as refused:
        raise DatasetError(f"{shown}: {refused}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise DatasetError(f"{shown} line {line}: not UTF-8 text (save it as CSV UTF-8)") from None
    first_line = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""),
                        delimiter=next((d for d in (",", ";", "\t") if d in first_line), ","))
    rows = []
    try:
        header = [name.strip().lower() for name in next(reader, [])]
        if "file" not in header or "group" not in header:
            raise DatasetError(f"{shown} needs the columns 'file' and 'group' on its first line")
        file_at, group_at = header.index("file"), header.index("group")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(file_at, group_at) or not row[file_at].strip() or not row[group_at].strip():
                raise DatasetError(f"{shown} line {reader.line_num}: expected a file and a group, "
                                   f"found {printable(','.join(row))!r}")
            rows.append((_row_file(row[file_at], root), printable(row[group_at].strip()), reader.line_num))
    except csv.Error as error:
        raise DatasetError(f"{shown} line {reader.line_num}: not CSV ({error})") from None
    return rows


def _row_file(name: str, root: Path) -> str:
    """A ``groups.csv`` file name as the dataset's files are named: relative, ``/``, normalised, in
    one Unicode form (:func:`one_form`)."""
    name = name.strip().replace("\\", "/")
    if posixpath.isabs(name) and Path(name).is_relative_to(root):
        name = Path(name).relative_to(root).as_posix()
    return one_form(posixpath.normpath(name))


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
