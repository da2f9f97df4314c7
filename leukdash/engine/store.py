"""The run store: one folder per run under ``artifacts/runs/<run_id>/``.

Layout of a run folder::

    meta.json           config, dataset info, versions, "created" time
    folds/fold_<i>.json {"checksum": sha256 of the result's canonical JSON, "result": {...},
                         "model": {"file": "fold_<i>.<suffix>", "sha256": of the model file}}
    models/fold_<i>.<suffix>
    summary.json        written once every fold is done
    progress.jsonl      progress events (see :mod:`leukdash.engine.progress`)
    job.json, job.log, job_config.json   a background job (see :mod:`leukdash.service.job_queue`)
    .lock               held by the process computing the run

Every JSON file is written atomically (see :mod:`leukdash.atomic`: temporary file in the same
folder, fsync, ``os.replace``), so a reader sees the old or the new content, never half of it, and
a run killed at any moment resumes from the folds it finished; the temporary files of writers
that were killed are removed when a process first uses the store. A store that cannot be written
(read-only) is still read: runs are listed (none counts as running) and caches are skipped. A fold file that fails its checksum, or whose model file is
missing or no longer has the recorded sha256, is moved aside and counts as missing, so it is
recomputed. (Folds stored before model hashes were recorded have no ``model`` entry: their
model is checked when it is loaded.)

Only the standard library is imported here (``filelock`` when a lock is taken): answering a
finished run from the store must not pay for numpy, pandas or TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

from leukdash import paths
from leukdash.atomic import clean_orphans_once, write_bytes_atomic
from leukdash.errors import RunError

_RUN_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def write_json_atomic(path: Path, obj, *, optional: bool = False) -> bool:
    """Write ``obj`` as JSON to ``path`` so that the file is replaced whole or not at all
    (:func:`leukdash.atomic.write_atomic`: ``optional`` for a cache a read-only store skips).

    The text is serialised first, so an object that is not JSON-serialisable leaves nothing
    behind; objects with ``tolist()`` (numpy arrays and scalars) are written as plain lists
    and numbers without importing numpy.
    """
    return write_bytes_atomic(path, json.dumps(obj, indent=1, default=_plain).encode(), optional=optional)


def read_json(path: Path):
    """The JSON content of ``path``; ``None`` if the file is missing.

    Raises ``ValueError`` (``json.JSONDecodeError``) when the content is not valid JSON.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return parse_json(text)


def parse_json(text: str | bytes):
    """``json.loads``, except that nesting too deep for Python's parser (a damaged or hostile
    file, ``[[[[...``) raises ``ValueError`` like any other text that is not JSON we can use,
    instead of ``RecursionError``: every reader that handles bad JSON then handles it too."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None


def checksum(value) -> str:
    """sha256 hex of the canonical JSON (sorted keys, no spaces) of a JSON value."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 hex of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class RunStore:
    """Run folders under ``root`` (default ``artifacts_root()/"runs"``, looked up at each use
    so that ``LEUKDASH_ARTIFACTS`` set after construction still applies)."""

    def __init__(self, root: Path | None = None):
        self._root = Path(root) if root is not None else None

    @property
    def root(self) -> Path:
        if self._root is not None:
            return self._root
        clean_orphans_once(paths.artifacts_root())  # once per process and store: a set lookup after
        return paths.artifacts_root() / "runs"

    def run_dir(self, run_id: str) -> Path:
        """The folder of a run (not created); the id must be a plain folder name."""
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise RunError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' or '-'")
        return self.root / run_id

    def exists(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / "meta.json").is_file()

    # -- meta and summary ------------------------------------------------------------------

    def write_meta(self, run_id: str, meta: dict) -> None:
        """Write ``meta.json``; a ``created`` time (epoch seconds) is added when absent."""
        write_json_atomic(self.run_dir(run_id) / "meta.json", {"created": time.time(), **meta})

    def read_meta(self, run_id: str) -> dict | None:
        return self._read_or_quarantine(self.run_dir(run_id) / "meta.json")

    def finished_meta(self, run_id: str) -> dict:
        """The meta of a finished run (its summary stored), never None: a run that is not there
        (never finished, or deleted while a background warm-up still reads it) is one RunError."""
        meta = self.read_meta(run_id)
        if meta is None or self.read_summary(run_id) is None:
            raise RunError(f"run {run_id!r} is not a finished run in {self.root}")
        return meta

    def write_summary(self, run_id: str, summary: dict) -> None:
        write_json_atomic(self.run_dir(run_id) / "summary.json", summary)

    def read_summary(self, run_id: str) -> dict | None:
        return self._read_or_quarantine(self.run_dir(run_id) / "summary.json")

    # -- folds and models ------------------------------------------------------------------

    def fold_path(self, run_id: str, fold: int) -> Path:
        if not isinstance(fold, int) or isinstance(fold, bool) or fold < 0:
            raise RunError(f"fold must be a non-negative integer, got {fold!r}")
        return self.run_dir(run_id) / "folds" / f"fold_{fold}.json"

    def write_fold(self, run_id: str, fold: int, result: dict, model: Path | None = None) -> None:
        """Store one fold's result atomically, with a checksum of its content and the sha256
        of its saved ``model`` file (in the run's ``models/`` folder)."""
        # Round-trip through JSON first so the checksum is of exactly what a reader will load
        # (tuples become lists, int keys become strings, numpy values plain numbers).
        plain = json.loads(json.dumps(result, default=_plain))
        record = {"checksum": checksum(plain), "result": plain}
        if model is not None:
            record["model"] = {"file": Path(model).name, "sha256": file_sha256(model)}
        write_json_atomic(self.fold_path(run_id, fold), record)

    def read_fold(self, run_id: str, fold: int, verify_model: bool = True) -> dict | None:
        """A fold's result; ``None`` if it is missing or damaged (a damaged file is moved aside).

        With ``verify_model``, a fold whose model file is missing or altered counts as damaged.
        """
        path = self.fold_path(run_id, fold)
        stored = self._read_or_quarantine(path)
        if stored is None:
            return None
        if (
            isinstance(stored, dict)
            and isinstance(stored.get("result"), dict)
            and stored.get("checksum") == checksum(stored["result"])
            and (not verify_model or self._model_intact(run_id, stored.get("model")))
        ):
            return stored["result"]
        _quarantine(path)
        return None

    def discard_fold(self, run_id: str, fold: int) -> None:
        """Move a fold's record aside (e.g. its model cannot be loaded), so it is recomputed."""
        _quarantine(self.fold_path(run_id, fold))

    def _model_intact(self, run_id: str, model) -> bool:
        if model is None:
            return True  # stored before model hashes were recorded
        if not (isinstance(model, dict) and isinstance(model.get("file"), str) and _MODEL_FILE.match(model["file"])):
            return False
        try:
            return file_sha256(self.run_dir(run_id) / "models" / model["file"]) == model.get("sha256")
        except OSError:
            return False

    def completed_folds(self, run_id: str, n_folds: int) -> list[int]:
        """The folds among ``0 .. n_folds-1`` whose result is stored and intact."""
        return [fold for fold in range(n_folds) if self.read_fold(run_id, fold) is not None]

    def model_path(self, run_id: str, fold: int, suffix: str) -> Path:
        """Where fold ``fold``'s model lives (``models/fold_<i>.<suffix>``); makes the folder."""
        self.fold_path(run_id, fold)  # validates the id and the fold
        folder = self.run_dir(run_id) / "models"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"fold_{fold}.{suffix.lstrip('.')}"

    def progress_path(self, run_id: str) -> Path:
        """The run's progress file (JSON lines, see :mod:`leukdash.engine.progress`)."""
        return self.run_dir(run_id) / "progress.jsonl"

    # -- locking ---------------------------------------------------------------------------

    def _lock_file(self, run_id: str) -> Path:
        folder = self.run_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / ".lock"

    @contextmanager
    def lock(self, run_id: str, timeout: float | None = None):
        """Hold the run's lock for the ``with`` block, so no other process computes the run.

        Blocks until the other holder is done; with ``timeout`` (seconds, 0 = do not wait)
        raises :class:`RunError` when the lock is still held then.
        """
        from filelock import FileLock, Timeout

        path = self._lock_file(run_id)
        held = FileLock(path)
        try:
            held.acquire(timeout=-1 if timeout is None else timeout)
        except Timeout:
            raise RunError(f"run {run_id} is being computed by another process (lock {path})") from None
        try:
            yield
        finally:
            held.release()

    def is_locked(self, run_id: str) -> bool:
        """Whether some process (this one included) holds the run's lock right now.

        In a store this process cannot write (read-only), no lock can be taken and none is held.
        """
        if not self.run_dir(run_id).is_dir():
            return False
        try:
            with self.lock(run_id, timeout=0):
                return False
        except RunError:
            return True
        except OSError:
            return False

    # -- listing and deleting --------------------------------------------------------------

    def list_runs(self) -> list[dict]:
        """Every readable run, newest first.

        Each entry: ``{"run_id", "meta", "summary" (or None), "n_folds_done",
        "status": "running" | "complete" | "partial"}``; folders without a readable
        ``meta.json`` are skipped.
        """
        runs = []
        root = self.root
        if not root.is_dir():
            return runs
        for folder in root.iterdir():
            try:
                meta = self.read_meta(folder.name) if folder.is_dir() else None
                if not isinstance(meta, dict):
                    continue
                summary = self.read_summary(folder.name)
                n_done = sum(
                    self.read_fold(folder.name, int(match.group(1)), verify_model=False) is not None
                    for match in map(_FOLD_FILE.match, _names(folder / "folds"))
                    if match
                )
                if self.is_locked(folder.name):
                    status = "running"
                else:  # a fold file lost or damaged after the run finished: the run is partial again
                    whole = summary is not None and n_done >= len(meta.get("fold_ids") or ())
                    status = "complete" if whole else "partial"
            except (OSError, RunError):
                continue
            runs.append({
                "run_id": folder.name, "meta": meta, "summary": summary,
                "n_folds_done": n_done, "status": status,
            })
        runs.sort(key=lambda run: _created(run["meta"]), reverse=True)
        return runs

    def delete_run(self, run_id: str) -> None:
        """Remove a run folder; refused while a process holds its lock."""
        import shutil

        folder = self.run_dir(run_id)
        if not folder.is_dir():
            return
        with self.lock(run_id, timeout=0):
            shutil.rmtree(folder)

    # -- damaged files ---------------------------------------------------------------------

    def _read_or_quarantine(self, path: Path):
        try:
            return read_json(path)
        except (ValueError, UnicodeDecodeError):
            _quarantine(path)
            return None


_FOLD_FILE = re.compile(r"\Afold_(\d+)\.json\Z")
_MODEL_FILE = re.compile(r"\Afold_\d+\.(keras|joblib)\Z")


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def _created(meta: dict) -> float:
    created = meta.get("created")
    return float(created) if isinstance(created, (int, float)) else 0.0


def _quarantine(path: Path) -> None:
    """Move a damaged file aside (``<name>.damaged-<timestamp>``) so it is recomputed, not lost."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        os.replace(path, path.with_name(f"{path.name}.damaged-{stamp}-{os.urandom(2).hex()}"))
    except OSError:
        pass  # another reader moved it first, or the store is read-only: it counts as missing all the same
