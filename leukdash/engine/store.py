"""The run store: one folder per run under ``artifacts/runs/<run_id>/``.

Layout of a run folder::

    meta.json           config, dataset info, versions, "created" time (the first attempt's: see
                        the runner's ``_attempt_meta``), "resumed" attempts
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
(read-only) is still read: runs are listed (none counts as running) and caches are skipped. A fold
file that fails its checksum, or whose model file is missing or no longer has the recorded sha256, is
moved aside and counts as missing, so it is recomputed; a record or model file there that this user
may not read is said as such and moves nothing. (Folds stored before model hashes were recorded have
no ``model`` entry: their model is checked when it is loaded.) A ``meta.json`` or ``summary.json``
that is valid JSON but lacks what its readers use (a hand edit, another version's schema, ``{}``;
the shapes are :mod:`leukdash.engine.record_shapes`), or a summary that does not say what the fold
records say, is damaged in the same way: moved aside, so the run is skipped or partial and every
other run still reads.

Only the standard library is imported here (``filelock`` when a lock is taken): answering a
finished run from the store must not pay for numpy, pandas or TensorFlow.

One module, though long (about 600 lines): reading, writing, locking, listing and moving aside
damaged records are one contract over one folder layout (a listing is complete exactly when the
reads accept every record; a damaged read moves aside what a write made atomically). What stands
apart already lives beside it: the records' shapes (:mod:`leukdash.engine.record_shapes`) and the
atomic writes (:mod:`leukdash.atomic`). A run's progress file is read here too (a run's last word
says whether it was refused), through the one reader of its lines that :mod:`leukdash.engine.progress` uses.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

from leukdash import paths
from leukdash.engine.record_shapes import is_meta, is_summary, summary_agrees
from leukdash.intervals import clipped_summary
from leukdash.atomic import clean_orphans_once, is_temporary, write_bytes_atomic
from leukdash.errors import RunError, raise_interrupt_behind

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


def read_json_lines(path: Path) -> list[dict]:
    """The JSON objects of a file of one per line (a progress file), in order; a missing file gives
    ``[]``. A line that is not a complete JSON object (the last one torn while a writer is
    appending) is skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    found = []
    for line in text.splitlines():
        try:
            value = parse_json(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


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
        if isinstance(run_id, dict) and "run_id" in run_id:  # from Python: a run's result, not its id
            raise RunError(f"invalid run id: a run's result was given where its id is expected; give its "
                           f"['run_id'] ({paths.printable(str(run_id['run_id']))[:80]})")
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise RunError(f"invalid run id {paths.printable(repr(run_id))[:200]}: a run id starts with a letter or "
                           "digit, then letters, digits, '.', '_' or '-'")
        return self.root / run_id

    def exists(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / "meta.json").is_file()

    # -- meta and summary ------------------------------------------------------------------

    def write_meta(self, run_id: str, meta: dict) -> None:
        """Write ``meta.json``; a ``created`` time (epoch seconds) is added when absent."""
        write_json_atomic(self.run_dir(run_id) / "meta.json", {"created": time.time(), **meta})

    def read_meta(self, run_id: str) -> dict | None:
        """The run's meta; ``None`` if it is missing or damaged (see
        :func:`~leukdash.engine.record_shapes.is_meta`; moved aside)."""
        return self._read_or_quarantine(self.run_dir(run_id) / "meta.json", is_meta)

    def finished_meta(self, run_id: str) -> dict:
        """The meta of a finished run (its summary stored), never None: a run that is not there
        (never finished, or deleted while a background warm-up still reads it) is one RunError."""
        meta = self.read_meta(run_id)
        if meta is None or self.read_summary(run_id) is None:
            raise RunError(f"run {run_id!r} is not a finished run in {self.root}")
        return meta

    def write_summary(self, run_id: str, summary: dict) -> None:
        write_json_atomic(self.run_dir(run_id) / "summary.json", summary)

    def read_summary(self, run_id: str, folds: list | None = None) -> dict | None:
        """The run's summary, its 95% intervals clipped to their metrics' ranges as summaries stored
        before the clipping were not (:func:`~leukdash.intervals.clipped_summary`: every reader, `run --json`,
        `runs --json` and `compare` alike, gives one figure); ``None`` if it is missing or damaged (see
        :func:`~leukdash.engine.record_shapes.is_summary`; moved aside).

        A summary is derived from the fold records, which carry checksums: one that does not say what they
        say (forged, or stale beside folds computed again) is damaged too, moved aside so that launching the
        run again computes it anew. ``folds``: the run's fold results where the caller has read them already
        (in the order of its ``fold_ids``), else they are read here. While a fold is missing nothing is checked.
        """
        path = self.run_dir(run_id) / "summary.json"
        summary = self._read_or_quarantine(path, is_summary)
        if summary is None:
            return None
        if folds is None:
            meta = self.read_meta(run_id)
            folds = [] if meta is None else [self.read_fold(run_id, fold) for fold in meta["fold_ids"]]
        if folds and None not in folds and not summary_agrees(summary, folds):
            # Read before the folds a run computed again, it may have been replaced since: the new one stands.
            again = self._read_or_quarantine(path, is_summary)
            if again is not None and again != summary and summary_agrees(again, folds):
                return clipped_summary(again)
            if not self.is_locked(run_id):  # a run computing a fold again replaces its stale summary itself
                _quarantine(path)
            return None
        return clipped_summary(summary)

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

    def read_fold(self, run_id: str, fold: int) -> dict | None:
        """A fold's result; ``None`` if it is missing or damaged (a damaged file is moved aside).

        A fold whose model file is missing or altered counts as damaged.
        """
        stored = self._read_or_quarantine(
            self.fold_path(run_id, fold),
            lambda record: _is_fold_record(record) and self._model_intact(run_id, record.get("model")))
        return None if stored is None else stored["result"]

    def missing_members(self, run_id: str, meta: dict, _seen: frozenset = frozenset()) -> list[str]:
        """The members of an ensemble run (``meta``, the meta of ``run_id``) that are not whole in the store
        (deleted, unfinished, a fold or model lost): its models vote with theirs, so it is not
        whole either. None for a plain run."""
        if meta["config"]["model"] != "ensemble":
            return []
        seen = _seen | {run_id}  # a hand-edited ensemble could name itself
        return [member for member in meta["config"]["members"]
                if member in seen or not self._whole(member, seen)]

    def _whole(self, run_id: str, seen: frozenset) -> bool:
        meta = self.read_meta(run_id)
        return (meta is not None and self.read_summary(run_id) is not None
                and all(self.read_fold(run_id, fold) is not None for fold in meta["fold_ids"])
                and not self.missing_members(run_id, meta, seen))

    def model_hashed(self, run_id: str, fold: int) -> bool:
        """Whether a fold's record names its model file with a sha256: where it does and
        :meth:`read_fold` accepts the fold, the file holds the bytes the fold saved."""
        try:
            model = read_json(self.fold_path(run_id, fold)).get("model")
        except (OSError, ValueError, UnicodeDecodeError, AttributeError) as error:
            raise_interrupt_behind(error)  # a fold said unhashed is discarded when its model fails to load
            return False
        return isinstance(model, dict) and isinstance(model.get("sha256"), str)

    def discard_fold(self, run_id: str, fold: int) -> None:
        """Move a fold's record aside (e.g. its model cannot be loaded), so it is recomputed."""
        _quarantine(self.fold_path(run_id, fold))

    def _model_intact(self, run_id: str, model) -> bool:
        if model is None:
            return True  # stored before model hashes were recorded
        if not (isinstance(model, dict) and isinstance(model.get("file"), str) and _MODEL_FILE.match(model["file"])):
            return False
        path = self.run_dir(run_id) / "models" / model["file"]
        try:
            found = path.stat()
            return _version_sha256(str(path), found.st_size, found.st_mtime_ns, found.st_ino) == model.get("sha256")
        except OSError as error:
            if is_unreadable(error):  # there, and this user may not read it: its fold is not damaged
                raise UnreadableRecord(path, error) from None
            return False

    def fold_fault(self, run_id: str, fold: int, model_path: Path) -> Path:
        """Which file to blame when :meth:`read_fold` refuses a fold: its record when it is not JSON
        or not a fold record, or missing beside a model file; else its model. ``read_fold`` moves a
        refused record aside whichever file was at fault, so a record missing beside a missing model,
        or moved aside whole beside a model that is not the one it names, was moved for its model."""
        record_path = self.fold_path(run_id, fold)
        try:
            record = _read_record(record_path)
        except (ValueError, UnicodeDecodeError) as error:
            raise_interrupt_behind(error)
            return record_path
        if record is None:  # moved aside by an earlier read: for its model, if that copy is whole
            aside = _latest_moved_aside(record_path)
            for_its_model = _is_fold_record(aside) and not self._model_intact(run_id, aside.get("model"))
            return model_path if not model_path.is_file() or for_its_model else record_path
        return model_path if _is_fold_record(record) else record_path

    def completed_folds(self, run_id: str, n_folds: int) -> list[int]:
        """The folds among ``0 .. n_folds-1`` whose result is stored and intact."""
        return [fold for fold in range(n_folds) if self.read_fold(run_id, fold) is not None]

    def model_path(self, run_id: str, fold: int, suffix: str) -> Path:
        """Where fold ``fold``'s model lives (``models/fold_<i>.<suffix>``). Its folder is made by
        the writer: a reader (a page's warm-up, say) must never make a run folder appear."""
        self.fold_path(run_id, fold)  # validates the id and the fold
        return self.run_dir(run_id) / "models" / f"fold_{fold}.{suffix.lstrip('.')}"

    def progress_path(self, run_id: str) -> Path:
        """The run's progress file (JSON lines, see :mod:`leukdash.engine.progress`)."""
        return self.run_dir(run_id) / "progress.jsonl"

    def failure(self, run_id: str) -> str | None:
        """Why the run's last attempt was refused for its own settings (its progress file's last word, a ``failed``
        event marked ``refused``), else None: a run its machine stopped (a full disk, memory) is partial, not
        failed, as launching it again may complete it. Whether it is computed again meanwhile is the lock's to say."""
        try:
            events = read_json_lines(self.progress_path(run_id))
        except OSError:
            return None
        for event in reversed(events):
            # A worker's fold of it, dropped after its failure, may still have reported its start or epochs; a
            # relaunch stopped while loading its images (a loading event with no start after) computed nothing
            if event.get("event") in ("start", "done", "failed", "cancelled"):
                return str(event.get("message") or "") if event["event"] == "failed" and event.get("refused") else None
        return None

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

        In a store this process cannot write (read-only), no lock can be taken and none is held; in a run
        folder this user may not read (another user's, umask 077) no lock can be seen, and none is this user's.
        """
        from filelock import FileLock, Timeout

        path = self.run_dir(run_id) / ".lock"
        # A holder keeps the file; without it no one holds the lock (and no folder is made). os.path, not
        # Path.is_file: that raises where this user may not enter the run's folder.
        if not os.path.isfile(path):
            return False
        try:
            with FileLock(path, timeout=0):
                return False
        except Timeout:
            return True
        except OSError:
            return False

    # -- listing and deleting --------------------------------------------------------------

    def list_runs(self) -> list[dict]:
        """Every readable run, newest first.

        Each entry: ``{"run_id", "meta", "summary" (or None), "n_folds_done",
        "status": "running" | "complete" | "failed" | "partial", "message"}`` (``message``: why a failed run
        failed, else empty); folders without a readable
        ``meta.json`` are skipped (:meth:`unreadable_runs` names them). A run is complete exactly when
        :func:`load_result <leukdash.engine.runner.load_result>` answers it: summary and every fold readable, each
        fold's model file intact (a model's hash is computed once per version of its file).
        """
        return self.survey()[0]

    def unreadable_runs(self) -> dict[str, str]:
        """The run folders :meth:`list_runs` skips, each with why (its ``meta.json`` missing or damaged, a
        damaged one moved aside beside it; or a record this user may not read): named, so that a run
        does not vanish without a word."""
        return self.survey()[1]

    def survey(self) -> tuple[list[dict], dict[str, str]]:
        """:meth:`list_runs` and :meth:`unreadable_runs` from one pass over the store."""
        runs, unreadable = [], {}
        root = self.root
        problem = runs_folder_problem(root)
        if problem:  # said, not listed as an empty store (a file) or as one this user may not write
            raise RunError(problem)
        for folder in sorted(root.iterdir()) if root.is_dir() else []:
            if not (folder.is_dir() and _RUN_ID.match(folder.name)):
                continue
            try:
                entry = self._entry(folder.name)
            except UnreadableRecord as error:
                unreadable[folder.name] = error.reason
                continue
            except (OSError, RunError):
                continue
            if entry is not None:
                runs.append(entry)
            elif self._holds_records(folder) and not self.is_locked(folder.name):
                # Still there: damaged, and this user could not move it aside (an immutable file, a folder
                # this user may not write), so it is not said to be kept beside it.
                unreadable[folder.name] = _STUCK_META if os.path.lexists(folder / "meta.json") else _MISSING_META
        runs.sort(key=lambda run: _created(run["meta"]), reverse=True)
        return runs, unreadable

    def _entry(self, run_id: str) -> dict | None:
        """A run's entry of :meth:`list_runs`; None when its ``meta.json`` is missing or damaged."""
        meta = self.read_meta(run_id)
        if meta is None:
            return None
        folds = [self.read_fold(run_id, fold) for fold in meta["fold_ids"]]
        summary = self.read_summary(run_id, folds)
        n_done = sum(fold is not None for fold in folds)
        whole = summary is not None and n_done == len(meta["fold_ids"]) and not self.missing_members(run_id, meta)
        # Whole is complete even under a lock: `refit` holds it while it trains a final model,
        # and a finished run's folds never change. A fold or model lost or damaged after the run
        # finished makes it partial again, or running while it is resumed.
        locked = not whole and self.is_locked(run_id)
        failure = None if whole or locked else self.failure(run_id)
        status = "complete" if whole else "running" if locked else "partial" if failure is None else "failed"
        return {"run_id": run_id, "meta": meta, "summary": summary, "n_folds_done": n_done, "status": status,
                "message": failure or ""}

    @staticmethod
    def _holds_records(folder: Path) -> bool:
        """Whether a folder holds anything of a run beyond what precedes its records: a job's files (a
        sweep job's folder holds nothing else, a run's job is queued or ended before its run began) and
        a run's lock and progress lines while it loads its images. A folder gone meanwhile (a refused
        run's removed, a run deleted from another session) holds nothing."""
        try:
            return any(entry.name not in _BEFORE_RECORDS and not is_temporary(entry.name)
                       for entry in folder.iterdir())
        except OSError:
            return False

    def delete_run(self, run_id: str) -> None:
        """Remove a run folder; refused while a process holds its lock."""
        import shutil

        folder = self.run_dir(run_id)
        if not folder.is_dir():
            return
        with self.lock(run_id, timeout=0):
            shutil.rmtree(folder)

    def discard_unstarted(self, run_id: str) -> None:
        """Remove the folder of a run refused before it was stored (its lock held by this process):
        only a folder that holds nothing but the run's progress lines and lock file."""
        import shutil

        folder = self.run_dir(run_id)
        if folder.is_dir() and {entry.name for entry in folder.iterdir()} <= _UNSTARTED:
            shutil.rmtree(folder, ignore_errors=True)

    # -- damaged files ---------------------------------------------------------------------

    def _read_or_quarantine(self, path: Path, valid):
        """The JSON content of ``path`` if ``valid(content)``; ``None`` if the file is missing,
        and (the file moved aside) if it is not JSON or not of the shape ``valid`` asks for."""
        try:
            content = _read_record(path)
        except (ValueError, UnicodeDecodeError) as error:
            raise_interrupt_behind(error)  # stopped while reading: the file is not damaged, keep it
            content = _DAMAGED
        if content is None or (content is not _DAMAGED and valid(content)):
            return content
        _quarantine(path)
        return None


# .joblib: a pickle of an earlier version, kept (not damaged) until `trust-models` converts it.
_MODEL_FILE = re.compile(r"\Afold_\d+\.(keras|skops|joblib)\Z")
_DAMAGED = object()  # what a file that is not JSON reads as
_MISSING_META = ("its meta.json is missing or damaged (a damaged one is kept beside it as meta.json.damaged-*); "
                 "launching its settings again computes the run anew")
_STUCK_META = ("its meta.json is damaged and could not be moved aside (the file or its folder cannot be changed by "
               "this user: immutable, or not writable): move it away, then launching its settings again computes the "
               "run anew")
# A background job's files in its run's (or sweep's) folder, written by leukdash.service.job_queue:
# its record, its output, what it computes, and the lock its record is updated under.
JOB_FILE, LOG_FILE, CONFIG_FILE, JOB_LOCK = "job.json", "job.log", "job_config.json", ".job.lock"
# What a run's folder holds before the run stores a record: its lock and progress lines (a run that
# loads its images), and a job's files (a sweep job's folder never holds more).
_UNSTARTED = frozenset({"progress.jsonl", ".lock"})
_BEFORE_RECORDS = _UNSTARTED | {JOB_FILE, LOG_FILE, CONFIG_FILE, JOB_LOCK}


def _read_record(path: Path):
    """:func:`read_json` of a run's record; one that is there and cannot be read raises :class:`UnreadableRecord`
    (not damaged: nothing is moved)."""
    try:
        return read_json(path)
    except OSError as error:
        # The store's runs folder itself, not this run's record, where that is what cannot be read (a run
        # that was never computed has no record to blame).
        problem = runs_folder_problem(path.parent.parent.parent if path.parent.name in _SUBFOLDERS
                                      else path.parent.parent)
        raise (RunError(problem) if problem else UnreadableRecord(path, error)) from None


def runs_folder_problem(root: Path) -> str | None:
    """Why a store's runs folder ``root`` cannot be read (a file stands there, this user may not list it),
    or None (it is a folder this user may read, or not there yet: a first run makes it)."""
    shown = paths.printable(str(root))
    if os.path.lexists(root) and not os.path.isdir(root):
        return (f"a file stands where the run store's runs folder should be ({shown}): move it away, or set "
                "LEUKDASH_ARTIFACTS to another folder")
    if os.path.isdir(root) and not os.access(root, os.R_OK | os.X_OK):
        return (f"the run store's runs folder {shown} cannot be read (permission denied): give this user read "
                "access to it, or set LEUKDASH_ARTIFACTS to another folder")
    return None


def is_unreadable(error: BaseException) -> bool:
    """Whether an error reading a file says that it is there and cannot be read (permission, I/O), not
    that it is gone: a file gone is damage a run recomputes, one this user may not read must stay."""
    return isinstance(error, OSError) and error.errno is not None and error.errno not in (errno.ENOENT, errno.ENOTDIR)


class UnreadableRecord(RunError):
    """A record or model file of a run that is there and cannot be read (this user may not read it or its
    folder): not damaged, so it is left in place, and said as a read failure, not as a read-only store."""

    def __init__(self, path: Path, error: OSError):
        denied = error.errno in (errno.EACCES, errno.EPERM)
        self.reason = (f"its {path.parent.name + '/' if path.parent.name in _SUBFOLDERS else ''}{path.name} cannot be "
                       f"read ({(error.strerror or str(error)).lower()})"
                       + (": give this user read access to it and to its folder" if denied else ""))
        super().__init__(f"run {_run_of(path)}: {self.reason}")


_SUBFOLDERS = ("folds", "models")


def _run_of(path: Path) -> str:
    """The run id of a record's path (``<run>/meta.json``, ``<run>/folds/fold_<i>.json`` or a model's)."""
    return (path.parent.parent if path.parent.name in _SUBFOLDERS else path.parent).name


# -- a fold record's shape (the meta's and the summary's: leukdash.engine.record_shapes) ------


def _is_fold_record(record) -> bool:
    """A fold file: its result (a mapping) and the checksum of exactly that result."""
    return (isinstance(record, dict) and isinstance(record.get("result"), dict)
            and record.get("checksum") == checksum(record["result"]))


@functools.lru_cache(maxsize=4096)
def _version_sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """sha256 of one version of a file (its size, time and inode): every listing checks each fold's
    model, and hashing is done once per version, not once per listing."""
    return file_sha256(Path(path))


def _created(meta: dict) -> float:
    created = meta.get("created")
    return float(created) if isinstance(created, (int, float)) else 0.0


def _latest_moved_aside(path: Path):
    """The content of the last copy of ``path`` that :func:`_quarantine` moved aside, or None."""
    for aside in sorted(path.parent.glob(f"{path.name}.damaged-*"), reverse=True):
        try:
            return read_json(aside)
        except (ValueError, UnicodeDecodeError, OSError):
            return None
    return None


def _quarantine(path: Path) -> None:
    """Move a damaged file aside (``<name>.damaged-<timestamp>``) so it is recomputed, not lost."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        os.replace(path, path.with_name(f"{path.name}.damaged-{stamp}-{os.urandom(2).hex()}"))
    except OSError:
        pass  # another reader moved it first, or the store is read-only: it counts as missing all the same
