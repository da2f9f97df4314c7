"""Uploaded zips of class folders: unpacked within limits, kept per session, evicted by a quota.

An upload lives in ``<artifacts>/uploads/<session>/<name>-<hash>/``; ``session`` is a random token
of one dashboard session, so one visitor's uploads are never offered to another. A zip is checked
twice: its directory (member count, names, declared sizes and compression ratios) before anything
is written, and every member again while it is streamed to disk, counting the bytes actually
produced (a forged header cannot make it write more than the limits). Whatever a rejected upload
wrote is deleted. The uploads folder as a whole is capped: the least recently used uploads are
evicted first, never one that a run or a sweep in the store names as a dataset (stored, running or
queued: a run's ``meta.json`` or ``job_config.json``, a sweep job's ``job_config.json`` or a stored
sweep's ``sweep.json`` points into the upload) while its session lives. A session's folder is
touched each time its pages run (:func:`mark_session_seen`); a reload starts a new session, and
the old one's uploads and finished runs are then seen by no one, so once it has been idle for
``SESSION_IDLE_SECONDS`` its uploads that only finished runs and sweeps name may be evicted too
(those runs stay in the store), never one that a queued or running run names.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from leukdash.atomic import explained_errors
from leukdash.config import dataset_parts
from leukdash.data.sources import holds_images
from leukdash.errors import DatasetError
from leukdash.paths import artifacts_root, uploads_root
from leukdash.engine.store import read_json

MB = 1024 * 1024
CHUNK = MB
# A member's ratio is only judged past this many bytes: tiny files (a blank mask, a CSV)
# compress far beyond any image, and cannot fill a disk.
RATIO_FLOOR = MB
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
# A session not seen for this long has ended (a reload, a closed tab): its finished runs no longer pin its uploads.
SESSION_IDLE_SECONDS = 24 * 3600
STAGING_PREFIX = ".partial-"


@dataclass(frozen=True)
class UploadLimits:
    """What one upload, and all of them together, may take."""

    max_zip_bytes: int = 200 * MB
    max_unpacked_bytes: int = 1024 * MB
    max_members: int = 50_000
    max_ratio: float = 100.0
    quota_bytes: int = 2048 * MB


def extract_zip(data: bytes, name: str | None = None, session: str = "local",
                limits: UploadLimits = UploadLimits()) -> Path:
    """Unpack an uploaded zip of class folders for ``session`` and return its dataset folder.

    The folder is named by the zip's content hash, so uploading the same zip twice reuses it.
    A single top-level folder inside the zip is taken as the dataset folder. Raises
    :class:`DatasetError` (one line) for anything refused; nothing of it is left on disk.
    """
    if not TOKEN.match(session) or (name is not None and not TOKEN.match(name)):
        raise DatasetError("invalid upload name or session token")
    if len(data) > limits.max_zip_bytes:
        raise DatasetError(f"the zip is {_mb(len(data))}, more than the {_mb(limits.max_zip_bytes)} allowed")
    digest = hashlib.sha256(data).hexdigest()[:12]
    target = uploads_root() / session / f"{name or 'upload'}-{digest}"
    with explained_errors(), _uploads_lock():  # a read-only or full store: one line
        if target.is_dir():
            os.utime(target)  # recently used: evicted last
        else:
            _unpack(data, target, limits)
            try:
                _enforce_quota(limits.quota_bytes, keep=target)
            except DatasetError:
                shutil.rmtree(target)
                _remove_if_empty(target.parent)
                raise
    entries = [p for p in target.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    # One top folder with no image of its own wraps the dataset (class folders, maybe patients below).
    if len(entries) == 1 and entries[0].is_dir() and not holds_images(entries[0], deep=False):
        return entries[0]
    return target


def remove_upload(folder: Path) -> None:
    """Delete one upload (the folder :func:`extract_zip` returned, or the one above it)."""
    root = uploads_root().resolve()
    folder = Path(folder).resolve()
    if not folder.is_relative_to(root) or len(folder.relative_to(root).parts) < 2:
        raise DatasetError("not an upload folder")
    session, upload = folder.relative_to(root).parts[:2]
    with explained_errors(), _uploads_lock():
        shutil.rmtree(root / session / upload, ignore_errors=True)
        _remove_if_empty(root / session)


def _unpack(data: bytes, target: Path, limits: UploadLimits) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        raise DatasetError("the uploaded file is not a zip archive") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    # Only the holder of the uploads lock unpacks: any staging folder found now is a killed unpack's.
    for orphan in uploads_root().glob(f"*/{STAGING_PREFIX}*"):
        shutil.rmtree(orphan, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target.parent))
    try:
        with archive:
            members = _checked_members(archive, limits)
            _write_members(archive, members, staging, limits)
        staging.replace(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_if_empty(target.parent)
        raise


def _checked_members(archive: zipfile.ZipFile, limits: UploadLimits) -> list[zipfile.ZipInfo]:
    """The zip's directory, refused before anything is written if it breaks a limit."""
    members = archive.infolist()
    if len(members) > limits.max_members:
        raise DatasetError(f"the zip holds {len(members):,} entries, more than the {limits.max_members:,} allowed")
    declared = 0
    for info in members:
        _safe_parts(info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DatasetError(f"symbolic link in zip: {_shown(info.filename)}")
        declared += info.file_size
        if declared > limits.max_unpacked_bytes:
            raise DatasetError(f"the zip unpacks to more than {_mb(limits.max_unpacked_bytes)} (the limit)")
        _check_ratio(info.filename, info.file_size, info.compress_size, limits.max_ratio)
    return members


def _write_members(archive: zipfile.ZipFile, members, staging: Path, limits: UploadLimits) -> None:
    """Stream each member to disk, counting the bytes really produced against the limits."""
    total = 0
    for info in members:
        path = staging.joinpath(*_safe_parts(info.filename))
        try:
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                total = _write_member(archive, info, path, total, limits)
        except FileExistsError:
            raise DatasetError(f"duplicate entry in zip: {_shown(info.filename)}") from None
        except OSError as error:
            if error.errno is None:  # not the file system: bz2's damaged stream ("Invalid data stream")
                raise DatasetError(_damaged(info, error)) from None
            # A name too long for the file system, a full disk.
            raise DatasetError(f"cannot unpack zip entry {_shown(info.filename)}: {error.strerror}") from None
        except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, zlib.error, lzma.LZMAError) as error:
            # A bad CRC, cut data, an unknown method or encryption, damaged deflate or LZMA data.
            raise DatasetError(_damaged(info, error)) from None


def _damaged(info: zipfile.ZipInfo, error: Exception) -> str:
    return f"damaged or unsupported zip entry {_shown(info.filename)}: {_shown(str(error))}"


def _write_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, total: int,
                  limits: UploadLimits) -> int:
    """Write one member in chunks; returns the bytes unpacked so far, this member included."""
    written = 0
    with archive.open(info) as source, open(path, "xb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            total += len(chunk)
            if total > limits.max_unpacked_bytes:
                raise DatasetError(f"the zip unpacks to more than {_mb(limits.max_unpacked_bytes)} (the limit)")
            _check_ratio(info.filename, written, info.compress_size, limits.max_ratio)
            out.write(chunk)
    return total


def _safe_parts(name: str) -> tuple[str, ...]:
    """The path parts of a member, refused when it would land outside the upload folder."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or re.match(r"[A-Za-z]:", name) or ".." in path.parts or "\0" in name:
        raise DatasetError(f"unsafe path in zip: {_shown(name)}")
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if not parts:
        raise DatasetError(f"unsafe path in zip: {_shown(name)!r}")
    return parts


def _check_ratio(name: str, unpacked: int, compressed: int, max_ratio: float) -> None:
    if unpacked > RATIO_FLOOR and unpacked > max_ratio * max(compressed, 1):
        raise DatasetError(f"zip entry {_shown(name)} is compressed more than {max_ratio:g}:1 (a zip bomb?)")


def mark_session_seen(session: str) -> None:
    """Note that ``session`` is alive (its pages run): its folder's time is when it was last seen."""
    folder = uploads_root() / session
    if TOKEN.match(session) and folder.is_dir():
        try:
            os.utime(folder)
        except OSError:  # a read-only store: nothing is evicted there either
            pass


def _enforce_quota(quota: int, keep: Path) -> None:
    """Evict the least recently used uploads (not ``keep``, not any a run uses) until all fit."""
    root = uploads_root()
    uploads = [p for session in _dirs(root) for p in _dirs(session) if not p.name.startswith(".")]
    sizes = {p: _size(p) for p in uploads}
    total = sum(sizes.values())
    if total <= quota:
        return
    computing, stored = _used_by_runs()
    for upload in sorted(uploads, key=lambda p: p.stat().st_mtime):
        if total <= quota:
            break
        ended = time.time() - upload.parent.stat().st_mtime > SESSION_IDLE_SECONDS
        if upload == keep or _names(computing, upload) or (not ended and _names(stored, upload)):
            continue
        shutil.rmtree(upload, ignore_errors=True)
        _remove_if_empty(upload.parent)
        total -= sizes[upload]
    if total > quota:
        raise DatasetError(f"the uploads folder is full ({_mb(quota)}, taken by uploads that stored runs or jobs "
                           "use, which are kept): try a smaller zip; room comes back only when such runs are "
                           "deleted or the server's LEUKDASH_UPLOADS_MB is raised")


def _names(used: set[Path], upload: Path) -> bool:
    return any(u == upload.resolve() or u.is_relative_to(upload.resolve()) for u in used)


def _used_by_runs() -> tuple[set[Path], set[Path]]:
    """Dataset folders named by the store's runs and sweeps: ``(computing, stored)``, those of runs
    not finished (running or queued: no ``summary.json`` yet), and those of finished runs and sweeps."""
    root = artifacts_root()
    computing, stored = set(), set()
    records = [(folder / name, not (folder / "summary.json").is_file())
               for folder in _dirs(root / "runs") for name in ("meta.json", "job_config.json")]
    records += [(folder / "sweep.json", False) for folder in _dirs(root / "sweeps")]
    for path, unfinished in records:
        try:
            record = read_json(path)
        except (OSError, ValueError):
            continue
        for spec in _dataset_specs(record):
            (computing if unfinished else stored).update(Path(part).resolve() for part in dataset_parts(spec))
    return computing, stored


def _dataset_specs(record) -> list[str]:
    """The dataset strings a stored record names: a run's config or meta (``dataset``,
    ``config.dataset``, ``dataset.path``), or a sweep's ``configs``, each naming its own."""
    if not isinstance(record, dict):
        return []
    dataset, configs = record.get("dataset"), record.get("configs")
    found = [dataset.get("path")] if isinstance(dataset, dict) else [dataset]
    found += _dataset_specs(record.get("config"))
    for config in configs if isinstance(configs, list) else []:
        found += _dataset_specs(config)
    return [spec for spec in found if isinstance(spec, str) and spec]


def _dirs(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def _size(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


@contextmanager
def _uploads_lock():
    """One upload at a time is unpacked and accounted, across sessions and processes."""
    from filelock import FileLock

    root = uploads_root()
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / ".lock"):
        yield


def _shown(name: str) -> str:
    """A member name for a one-line message: a hostile one can be kilobytes long, or hold newlines."""
    name = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
    return name if len(name) <= 80 else f"{name[:50]}…{name[-20:]}"


def _mb(size: int) -> str:
    if size < MB:
        return f"{size:,} bytes"
    return f"{size // MB:,} MB" if size % MB == 0 else f"{size / MB:,.1f} MB"
