"""Files written whole or not at all, what a failed write means to a user, and the temporary files
of writers that were killed.

Every file of the run store and its caches is written to a temporary file in its own folder,
``.<name>.<pid>-<random>.partial<suffix>`` (the writer's process id in the name), then renamed
over the target, so a reader sees the old or the new file, never half of one. A writer killed
outright (SIGKILL, the OOM killer) leaves its temporary file behind, as large as the file it was
writing: :func:`clean_orphans` removes those whose writer no longer runs, once per process and
store (the store calls it when it is first used).

A write that fails because of where it writes (a full disk, a read-only store, a file where a
folder should be, a file size limit) leaves nothing behind and raises :class:`StoreError`, one
line that says so. Only the standard library is imported here.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import stat
import re
import tempfile
import warnings
from pathlib import Path
from typing import Callable

from leukdash.errors import LeukdashError, StoreError, StoreWarning
from leukdash.paths import artifacts_root, printable

_TEMPORARY = re.compile(r"\A\..+\.(\d+)-[0-9a-f]{8}\.partial(\.[A-Za-z0-9]+)?\Z")
# Folders of the store that hold no file written here: never walked.
_NOT_WRITTEN_HERE = {"uploads", "datasets"}

# A limit of this process, said the same wherever the file is written.
_LIMITS = {errno.EFBIG: "file too large for this process's limit (ulimit -f): raise the limit, then run again"}
_REASONS = {
    **_LIMITS,
    errno.ENOSPC: "no space left on the device: free some space, then run again (finished folds are kept)",
    errno.EDQUOT: "disk quota exceeded: free some space, then run again (finished folds are kept)",
    errno.EROFS: "the run store is read-only: stored runs can be read, not computed "
                 "(set LEUKDASH_ARTIFACTS to a writable folder)",
    errno.EACCES: "permission denied: the run store is read-only for this user "
                  "(set LEUKDASH_ARTIFACTS to a writable folder)",
    errno.EPERM: "operation not permitted: the run store is read-only for this user "
                 "(set LEUKDASH_ARTIFACTS to a writable folder)",
    errno.ENOTDIR: "a file stands where a folder is needed (LEUKDASH_ARTIFACTS must name a folder)",
    errno.EEXIST: "a file stands where a folder is needed (LEUKDASH_ARTIFACTS must name a folder)",
}
# Where an optional write is skipped without a word: a store this user may only read (documented). Any
# other reason (full, a quota, a size limit) is said, as the file is then missing where it was promised.
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
# Errors of a path as typed (an over-long run id or folder name, a symbolic link loop).
_PATH_REASONS = {
    errno.ENAMETOOLONG: "a name in this path is longer than the file system allows (usually 255 characters)",
    errno.ELOOP: "too many levels of symbolic links (a link that points back to itself)",
}


def explain(error: OSError, path: str | Path | None = None) -> LeukdashError | None:
    """One line for an error that comes from where a file lives (full, read-only, not a folder):
    a :class:`StoreError` in the run store, a plain error naming the path elsewhere (a dataset
    folder this user cannot read); None for any other error."""
    where = path if path is not None else error.filename
    if error.errno in _PATH_REASONS and where is not None:  # the name itself: wherever it points
        return LeukdashError(f"cannot use {printable(str(where))}: {_path_reason(error.errno, where)}")
    reason = _REASONS.get(error.errno)
    if reason is None and error.errno == errno.ENOENT and where is not None and _refused_in_store(where):
        return StoreError(f"cannot create {printable(str(where))}: its file system does not allow it "
                          "(set LEUKDASH_ARTIFACTS to a writable folder)")
    if reason is None:
        return None
    if where is None:
        return StoreError(f"cannot write: {reason}")
    if not Path(os.path.abspath(where)).is_relative_to(os.path.abspath(artifacts_root())):
        if error.errno in (errno.ENOSPC, errno.EDQUOT) and _in_temporary_folder(where):
            # A fold's model is saved in the temporary folder first (on whichever machine computes the
            # fold), then handed to the store: this folder, not the store, is full. No path: on the
            # dashboard it would be the server's.
            return LeukdashError("the temporary folder (TMPDIR) is full: free some space there or set TMPDIR to a "
                                 "folder with room, then run again (finished folds are kept)")
        return LeukdashError(f"cannot use {printable(str(where))}: "
                             f"{_LIMITS.get(error.errno) or error.strerror or reason}")
    locked = _own_folder_without_write(where) if error.errno == errno.EACCES else None
    if locked is not None:  # the store is writable: this user's own folder in it is not
        reason = (f"permission denied: {printable(str(locked))} is this user's but not writable "
                  f"({stat.filemode(locked.stat().st_mode)}; a umask such as 277 takes the owner's write "
                  f"away): `chmod u+w` it, then run again")
    return StoreError(f"cannot write {printable(str(where))}: {reason}")


def _path_reason(number: int, path: str | Path) -> str:
    """What is wrong with ``path`` as typed: for a name too long, the whole path when none of its
    names is over the 255 bytes a file system allows one."""
    if number == errno.ENAMETOOLONG and all(len(os.fsencode(name)) <= 255 for name in Path(path).parts):
        return ("the whole path is longer than the system allows (4,096 bytes, PATH_MAX): "
                "set a shorter LEUKDASH_ARTIFACTS, or use a folder with a shorter path")
    return _PATH_REASONS[number]


def _in_temporary_folder(path: str | Path) -> bool:
    """Whether ``path`` is in this process's temporary folder (``$TMPDIR``, by default /tmp)."""
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(tempfile.gettempdir()))


def _own_folder_without_write(path: str | Path) -> Path | None:
    """The nearest existing folder above ``path``, when this user owns it and may not write in it."""
    folder = Path(os.path.abspath(path)).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        own = folder.stat().st_uid == os.geteuid()
    except (OSError, AttributeError):  # gone meanwhile, or no user ids on this platform
        return None
    return folder if own and not os.access(folder, os.W_OK) else None


def _refused_in_store(path: str | Path) -> bool:
    """Whether a "no such file" for ``path`` in the run store came from its file system, not
    from a missing folder: the folder meant to hold it exists (a store under /proc, say). A
    folder deleted under a writer is not this case: its parent is gone."""
    path = Path(os.path.abspath(path))
    return path.is_relative_to(os.path.abspath(artifacts_root())) and path.parent.is_dir()


@contextlib.contextmanager
def explained_errors():
    """Inside, an OSError that comes from where a file lives (:func:`explain`) is raised as its
    one-line :class:`LeukdashError`; any other error passes unchanged (a real bug shows whole)."""
    try:
        yield
    except OSError as error:
        explained = explain(error)
        if explained is None:
            raise
        raise explained from error


def temporary_path(path: Path) -> Path:
    """Where ``path`` is written before it is renamed: same folder, same suffix (some writers,
    Keras and numpy, choose the format from it), this process's id in the name."""
    return path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.partial{path.suffix}")


# Folders whose optional files must be kept (see must_keep): a context variable, so that the dashboard's
# sessions, each in its own thread, do not share them.
_MUST_KEEP: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("must_keep", default=())


@contextlib.contextmanager
def must_keep(folder: str | Path):
    """Within it, an optional write (:func:`write_atomic`) into ``folder`` that fails for a reason other than a
    read-only store raises its :class:`StoreWarning` instead of warning: files a step exists to store (a run's
    checks), whose absence is that step's failure, not a cache skipped."""
    token = _MUST_KEEP.set((*_MUST_KEEP.get(), Path(folder)))
    try:
        yield
    finally:
        _MUST_KEEP.reset(token)


# The lines of optional writes not stored (see unkept_lines): a context variable, as _MUST_KEEP.
_UNKEPT: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("unkept", default=None)


@contextlib.contextmanager
def unkept_lines():
    """Within it, the line of each file kept for later that could not be stored (:func:`warn_not_stored`'s) is
    also in the list it yields, each once: for a caller that shows them itself, where ``warnings.catch_warnings``
    cannot serve (it is not thread-safe, and the dashboard's sessions are threads)."""
    lines: list[str] = []
    token = _UNKEPT.set(lines)
    try:
        yield lines
    finally:
        _UNKEPT.reset(token)


def warn_not_stored(line: str, stacklevel: int = 2) -> None:
    """Say ``line`` (what was not stored, and why) as a :class:`StoreWarning` from the caller's caller
    (``stacklevel`` as :func:`warnings.warn`'s, counted from the caller), and to :func:`unkept_lines`' list."""
    lines = _UNKEPT.get()
    if lines is not None and line not in lines:
        lines.append(line)
    warnings.warn(StoreWarning(line), stacklevel=stacklevel + 1)


def write_atomic(path: str | Path, write: Callable[[Path], None], *, optional: bool = False) -> bool:
    """Create or replace ``path`` through ``write(temporary_path)``, whole or not at all.

    Returns True when written. A failure leaves nothing behind; one that comes from where the
    file is written raises :class:`StoreError` (one line), or, with ``optional`` (a cache that
    can be computed again), returns False: a read-only store is still read. An optional write
    that fails for another reason (a full disk, a quota, a file size limit) also warns
    (:class:`StoreWarning`, its one line), so that the file's absence is said.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
        return True
    except OSError as error:
        error = _with_short_write_cause(error, tmp)
        explained = explain(error, path)
        if explained is None:
            raise
        if not optional:
            raise explained from None
        if error.errno not in _READ_ONLY:
            line = f"not stored: {explained}"
            if any(path.is_relative_to(folder) for folder in _MUST_KEEP.get()):
                raise StoreWarning(line) from None
            warn_not_stored(line)
        return False
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only folder: nothing could have been created there either


def _with_short_write_cause(error: OSError, tmp: Path) -> OSError:
    """``error`` with the cause a short write lost: numpy's ``tofile`` says only "N requested and M
    written", without an errno. EFBIG when the file reached this process's size limit (ulimit -f),
    ENOSPC when its file system has no room left; ``error`` itself otherwise."""
    if error.errno is not None:
        return error
    import resource

    try:
        limit, size = resource.getrlimit(resource.RLIMIT_FSIZE)[0], tmp.stat().st_size
        full = os.statvfs(tmp.parent).f_bavail == 0
    except OSError:  # nothing was written: no short write
        return error
    number = errno.EFBIG if limit != resource.RLIM_INFINITY and size >= limit else errno.ENOSPC if full else None
    return error if number is None else OSError(number, os.strerror(number), str(tmp))


def write_bytes_atomic(path: str | Path, data: bytes, *, optional: bool = False) -> bool:
    """:func:`write_atomic` of ``data``, flushed to the disk before the rename."""
    def write(tmp: Path) -> None:
        with open(tmp, "xb") as handle:  # "x": never another writer's temporary file
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return write_atomic(path, write, optional=optional)


def is_temporary(name: str) -> bool:
    """Whether a file name is that of a temporary file of :func:`write_atomic` (a writer's, live or killed)."""
    return _TEMPORARY.match(name) is not None


def clean_orphans(root: str | Path) -> list[Path]:
    """Remove the temporary files under ``root`` whose writer no longer runs; the paths removed.

    A temporary file of a live process (this one included) is left alone. Errors (a read-only
    store) are ignored: what cannot be removed is tried again next time.
    """
    removed = []
    for current, dirs, files in os.walk(root):
        if Path(current) == Path(root):
            dirs[:] = [name for name in dirs if name not in _NOT_WRITTEN_HERE]
        for name in files:
            match = _TEMPORARY.match(name)
            if match and not _alive(int(match.group(1))):
                path = Path(current) / name
                try:
                    path.unlink()
                except OSError:
                    continue
                removed.append(path)
    return removed


_CLEANED: set[str] = set()


def clean_orphans_once(root: str | Path) -> None:
    """:func:`clean_orphans` the first time this process uses the store at ``root``."""
    key = os.path.abspath(root)
    if key not in _CLEANED:
        _CLEANED.add(key)
        clean_orphans(root)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: alive
    return True
