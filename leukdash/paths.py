"""Where leukdash keeps its artifacts and looks for datasets."""

import errno
import os
import re
import unicodedata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def artifacts_root() -> Path:
    """The run store and caches: ``$LEUKDASH_ARTIFACTS``, else ``artifacts/`` in the repository
    (where the demo runs ship); for a package installed with ``pip install .`` (no repository
    around it), ``$XDG_DATA_HOME/leukdash``, by default ``~/.local/share/leukdash``: a user's runs
    do not belong in site-packages, which is often read-only and goes with the environment."""
    configured = os.environ.get("LEUKDASH_ARTIFACTS")
    if configured:  # absolute: background jobs start in other folders and must find the same store
        # A quoted '~/store' reaches us unexpanded: the home folder is meant, not a folder named '~' here.
        return _resolved_once(absolute(os.path.expanduser(configured)))
    if source_checkout():
        return REPO_ROOT / "artifacts"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "leukdash"


# Each store path this process was given, with its symbolic links resolved when first asked.
_RESOLVED: dict[Path, Path] = {}


def _resolved_once(path: Path) -> Path:
    """``path`` with its symbolic links resolved the first time this process asks: a store reached
    through a link repointed during a run (a blue/green deploy) stays the one the run started in,
    never split between two; background jobs are given this resolved path."""
    if path not in _RESOLVED:
        try:
            _RESOLVED[path] = path.resolve()
        except (OSError, RuntimeError) as error:  # RuntimeError: a link loop (Python 3.11 and 3.12)
            if isinstance(error, RuntimeError) or error.errno == errno.ELOOP:
                from leukdash.errors import LeukdashError

                raise LeukdashError(f"LEUKDASH_ARTIFACTS {printable(str(path))} is a symbolic link loop: point it at "
                                    "a folder") from None
            _RESOLVED[path] = path  # other errors are said where the store is first used
    return _RESOLVED[path]


def absolute(path: str | Path) -> Path:
    """``path`` made absolute against the current folder; one line, not a traceback, when it is
    relative and the current folder was deleted (by another terminal, say)."""
    try:
        return Path(path).absolute()
    except FileNotFoundError:
        from leukdash.errors import LeukdashError

        raise LeukdashError(f"the current folder was deleted, so {printable(str(path))} (relative to it) "
                            "cannot be found: cd to an existing folder, or give an absolute path") from None


def source_checkout() -> bool:
    """Whether leukdash runs from its repository (not from a package installed in site-packages)."""
    return (REPO_ROOT / "streamlit_app.py").is_file()


def check_artifacts_root() -> None:
    """Refuse a ``LEUKDASH_ARTIFACTS`` that names a file, before the CLI or the dashboard reads
    through it (each would fail later, on whichever subfolder it opens first)."""
    root = artifacts_root()
    if root.exists() and not root.is_dir():
        from leukdash.errors import StoreError

        raise StoreError(f"LEUKDASH_ARTIFACTS names {printable(str(root))}, which is not a folder: "
                         "point it at a folder (it is created if missing)")


def uploads_root() -> Path:
    """Where zips uploaded on the dashboard are unpacked: one folder per browser session."""
    return artifacts_root() / "uploads"


def named_data_roots() -> list[str]:
    """The entries of ``$LEUKDASH_DATA``, as the user wrote them (the implicit ``./data`` is none)."""
    return [root for root in os.environ.get("LEUKDASH_DATA", "").split(os.pathsep) if root]


def data_roots() -> list[Path]:
    """Folders whose subfolders are datasets: each entry of ``$LEUKDASH_DATA``, then ``./data``;
    a folder named twice (``./data`` in ``$LEUKDASH_DATA`` too) once, where first named."""
    roots = [Path(root) for root in named_data_roots()]
    try:
        roots.append(Path.cwd() / "data")
    except FileNotFoundError:  # the current folder was deleted: it holds no data folder either
        pass
    unique: dict[Path, Path] = {}
    for root in roots:
        try:
            unique.setdefault(root.resolve(), root)
        except (OSError, RuntimeError):  # unreadable or a link loop: no dataset is found there anyway
            unique.setdefault(root, root)
    return list(unique.values())


def printable(text: str) -> str:
    """``text`` with the bytes of a name that is not valid UTF-8 written as escapes (``\\xff``),
    and control characters too (``\\n``, ``\\x1b``, line separators, bidirectional overrides),
    so that it can be printed, logged and stored as JSON, and a name can never forge a line of
    output or rewrite the terminal."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text if not _CONTROL.search(text) else _CONTROL.sub(lambda found: repr(found.group())[1:-1], text)


def one_form(name: str) -> str:
    """A name in one Unicode form (NFC): macOS writes 'é' in a folder name as 'e' and a combining
    accent (NFD), a keyboard and most systems as one character; the two read alike and are one name,
    so a copy through a Mac orders, fingerprints and groups its images as the original, and a class
    typed either way is one class."""
    return unicodedata.normalize("NFC", name)


def error_line(error: BaseException, limit: int = 200) -> str:
    """An error as ``'MemoryError'`` or ``'TypeError: TLS expects ...'``: its kind and its text,
    :func:`printable`, on one line and at most ``limit`` characters of it (a library's reason can
    run to a page)."""
    text = " ".join(printable(str(error)).split())
    return type(error).__name__ + (f": {text[:limit]}" if text else "")


def has_control(text: str) -> bool:
    """Whether ``text`` holds a character that :func:`printable` escapes (a control character)."""
    return bool(_CONTROL.search(text))


# C0 and C1 controls, DEL, line and paragraph separators, and the bidirectional controls that
# can reorder what a terminal or a page shows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def hide_roots(text: str) -> str:
    """``text`` (an error message, a path) as a dashboard visitor may see it: paths under the
    data roots, the artifacts folder or the repository relative to it, never the server's
    absolute folders; printable."""
    # A session's upload folder is named by its secret token: hidden like a root, whether the folder
    # is still there or not (an upload evicted to make room is still named by the session's dataset).
    for uploads in {uploads_root(), uploads_root().resolve(), Path("uploads")}:
        text = re.sub(rf"(?<![\w.-]){re.escape(str(uploads))}/{_SESSION_FOLDER}/", "", text)
    roots = {str(folder) for root in (*data_roots(), artifacts_root(), REPO_ROOT) for folder in (root, root.resolve())}
    for root in sorted(roots, key=len, reverse=True):
        if len(root) > 1:
            text = text.replace(root.rstrip(os.sep) + os.sep, "")
    return printable(text)


# The name of a session's folder under uploads/ (uploads.TOKEN), as it appears in a path.
_SESSION_FOLDER = r"[A-Za-z0-9_-]{1,64}"
