"""Sweeps: a grid (or list) of run configs computed as one job, stored with its own progress.

A sweep is a named list of runs; the runs stay ordinary runs (cached by config, data and
engine version), so a sweep that is launched again computes only the folds still missing,
and two sweeps that share a run share its folds. Layout::

    artifacts/sweeps/<sweep_id>/sweep.json       sweep_id, name, created, axes, configs, run_ids, earlier_run_ids
    artifacts/sweeps/<sweep_id>/progress.jsonl   start, fold_done (with run_id), run_done, done | failed

The id is a hash of the configs (their canonical forms and datasets), so the same grid is the
same sweep whoever launches it; its name is a label.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import fields
from pathlib import Path

from filelock import FileLock, Timeout

from leukdash.config import AugmentConfig, RunConfig, stable_hash
from leukdash.errors import ConfigError, RunError, RunsFailed
from leukdash.paths import artifacts_root, printable
from leukdash.engine.progress import append_event, latest_state, read_events
from leukdash.engine.runner import settings_key
from leukdash.engine.store import RunStore, read_json, write_json_atomic

SWEEP_FILE = "sweep.json"
PROGRESS_FILE = "progress.jsonl"
LOCK_FILE = ".lock"  # held while a process computes the sweep
# Runs in one sweep, unless asked for more: a bigger grid is more often a slip (one axis too many)
# than a plan; the dashboard's cap, and the command line's default one (``--max-runs``).
MAX_SWEEP_RUNS = 200
_SWEEP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_RUN_FIELDS = tuple(f.name for f in fields(RunConfig))
_AUGMENT_FIELDS = tuple(f.name for f in fields(AugmentConfig))


def expand_grid(base: RunConfig, axes: dict[str, list] | list[dict]) -> list[RunConfig]:
    """Every combination of the values of ``axes`` applied to ``base``, in grid order.

    Keys are :class:`RunConfig` field names (``model``, ``epochs``, ``seed``...) or
    ``augment.<transform>`` (e.g. ``augment.rotation``); a list of dicts instead of a dict
    gives an explicit list of changes, one config each. Every config is validated.
    """
    if isinstance(axes, dict):
        for name, values in axes.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(f"sweep axis {name!r} needs a non-empty list of values, got {values!r}")
        names = list(axes)
        changes = [dict(zip(names, combination)) for combination in itertools.product(*axes.values())]
    else:
        changes = [dict(entry) for entry in axes]
    configs = [_apply(base, change) for change in changes]
    for config in configs:
        config.validate()
    return configs


def _apply(base: RunConfig, change: dict) -> RunConfig:
    run_changes, augment_changes = {}, {}
    for name, value in change.items():
        if name.startswith("augment.") and name[len("augment."):] in _AUGMENT_FIELDS:
            augment_changes[name[len("augment."):]] = value
        elif name in _RUN_FIELDS and name != "augment":
            run_changes[name] = value
        else:
            raise ConfigError(f"unknown sweep setting {name!r}")
    if augment_changes:
        run_changes["augment"] = AugmentConfig.from_dict({**base.augment.to_dict(), **augment_changes})
    return base.with_changes(**run_changes)


def sweep_id_of(configs: list[RunConfig]) -> str:
    """The id of a sweep: a hash of its configs' canonical forms and datasets, order aside."""
    return f"sweep-{stable_hash(sorted({settings_key(config) for config in configs}))}"


def sweeps_root() -> Path:
    return artifacts_root() / "sweeps"


def sweep_dir(sweep_id: str) -> Path:
    """The folder of a sweep (not created); the id must be a plain folder name."""
    if not isinstance(sweep_id, str) or not _SWEEP_ID.fullmatch(sweep_id):
        raise RunError(f"invalid sweep id {sweep_id!r}: a sweep id starts with a letter or digit, then letters, "
                       "digits, '.', '_' or '-'")
    return sweeps_root() / sweep_id


def create_sweep(configs: list[RunConfig], *, name: str | None = None, axes: dict | None = None) -> dict:
    """Store a sweep (or refresh a stored one) without computing anything; return its record.

    A dashboard can create the sweep, then start ``python -m leukdash sweep --resume ID`` as a
    background job. The record's ``earlier_run_ids`` keep the runs it held before its grid
    resolved to other runs; the returned record's ``warnings`` (not stored) say when that happened.
    """
    from leukdash.engine.runner import resolve

    if not configs:
        raise ConfigError("a sweep needs at least one run config")
    run_ids = [resolve(config).run_id for config in configs]  # validates every config first
    sweep_id = sweep_id_of(configs)
    previous = load_sweep(sweep_id) or {}
    # The id hashes the settings only: other images or another engine give other runs under it.
    earlier = [run_id for run_id in [*earlier_run_ids(previous), *previous.get("run_ids", [])]
               if run_id not in run_ids]
    record = {"sweep_id": sweep_id, "name": printable(name or previous.get("name") or sweep_id),
              "created": previous.get("created", time.time()),
              "axes": axes if axes is not None else previous.get("axes"),
              "configs": [config.to_dict() for config in configs], "run_ids": run_ids,
              "earlier_run_ids": list(dict.fromkeys(earlier))[-MAX_SWEEP_RUNS:]}
    write_json_atomic(sweep_dir(sweep_id) / SWEEP_FILE, record)
    return {**record, "warnings": _new_runs_warnings(previous, configs, run_ids)}


def earlier_run_ids(record: dict) -> list[str]:
    """A sweep record's ``earlier_run_ids``, the newest last (at most :data:`MAX_SWEEP_RUNS`, a whole
    grid: a folder that keeps changing would grow them without end); only the ids (text) of what the
    record holds, which, written by hand, must not stop a launch or lose the ids beside a wrong entry."""
    earlier = record.get("earlier_run_ids")
    return [run_id for run_id in earlier if isinstance(run_id, str)] if isinstance(earlier, list) else []


def _new_runs_warnings(previous: dict, configs: list[RunConfig], run_ids: list[str]) -> list[str]:
    """The line saying which of a stored sweep's runs its grid now resolves to other runs, if any."""
    try:  # paired by settings, as the id is: a record of another engine may list them otherwise
        stored = {settings_key(RunConfig.from_dict(config)): run_id
                  for config, run_id in zip(previous.get("configs", []), previous.get("run_ids", []))}
    except ConfigError:  # settings this engine no longer reads: no pairs to name
        stored = {}
    pairs = [(stored.get(settings_key(config), new), new, config) for config, new in zip(configs, run_ids)]
    changed = [(old, new, config) for old, new, config in pairs if old != new]
    if not changed:
        return []
    return [f"{len(changed)} of the sweep's {len(configs)} runs are new runs (first: {changed[0][0]} is now "
            f"{changed[0][1]}): the images of {changed[0][2].dataset} (or the engine version) changed since the sweep "
            "was stored; the old runs stay in the store, listed as the sweep's earlier runs by `sweeps`"]


def run_sweep(configs: list[RunConfig], *, name: str | None = None, scheduler: str | None = None,
              n_jobs: int | None = None, on_event=None, axes: dict | None = None,
              store: RunStore | None = None, finishing=None) -> dict:
    """Store the sweep and compute its missing folds, every fold of every run in one pool.

    ``scheduler`` is a Dask address or ``"local"`` (default ``$LEUKDASH_SCHEDULER``, else local processes);
    ``on_event`` gets every run's progress events (each with its ``run_id``); ``finishing`` is
    :func:`leukdash.engine.runner.run_many`'s.

    Returns the sweep's record with ``warnings`` (see :func:`create_sweep`), ``results`` (one per
    config, see :func:`leukdash.engine.runner.run`) and ``seconds``.

    Raises
    ------
    RunsFailed
        when runs of its several were refused for their own settings (see
        :func:`leukdash.engine.runner.run_many`), once its other runs are computed and stored; its ``outcome``
        is what this returns, for those; a sweep of one run raises that run's error.
    """
    from leukdash.engine.runner import run_many
    from leukdash.engine.scheduler import scheduler_address

    started = time.perf_counter()
    scheduler_address(scheduler)  # a wrong address is said before the sweep is stored
    record = create_sweep(configs, name=name, axes=axes)
    progress = sweep_dir(record["sweep_id"]) / PROGRESS_FILE
    status = sweep_status(record["sweep_id"], store)
    append_event(progress, {"event": "start", "sweep_id": record["sweep_id"], "runs": len(record["run_ids"]),
                            "folds": status["total_folds"], "done_folds": status["done_folds"]})

    def relay(event: dict) -> None:
        if event.get("event") in ("fold_done", "done"):
            kind = "fold_done" if event["event"] == "fold_done" else "run_done"
            append_event(progress, {"event": kind, "run_id": event.get("run_id"), "fold": event.get("fold")})
        if on_event:
            on_event(event)

    with FileLock(sweep_dir(record["sweep_id"]) / LOCK_FILE):
        try:
            results = run_many(configs, n_jobs=n_jobs, store=store, on_event=relay, scheduler=scheduler,
                               finishing=finishing)
        except RunsFailed as error:  # the others computed: said as the sweep's, with the sweep's outcome
            outcome = {**record, "results": error.outcome, "seconds": time.perf_counter() - started}
            failed = RunsFailed(error.errors, error.reasons, error.total, of=f"sweep {record['sweep_id']}: ",
                                outcome=outcome)
            append_event(progress, {"event": "failed", "message": str(failed)})
            raise failed from None
        except Exception as error:
            append_event(progress, {"event": "failed", "message": f"{type(error).__name__}: {error}"})
            raise
        append_event(progress, {"event": "done"})
    return {**record, "results": results, "seconds": time.perf_counter() - started}


def resume_sweep(sweep_id: str, **options) -> dict:
    """Launch a stored sweep again (only its missing folds are computed); options as run_sweep,
    whose ``warnings`` say when runs of the sweep are new runs now."""
    record = load_sweep(sweep_id)
    if record is None:
        raise RunError(_no_sweep(sweep_id))
    configs = [RunConfig.from_dict(config) for config in record["configs"]]
    return run_sweep(configs, name=record.get("name"), axes=record.get("axes"), **options)


def _no_sweep(sweep_id: str) -> str:
    if (sweep_dir(sweep_id) / SWEEP_FILE).exists():
        return (f"sweep {sweep_id}'s record ({SWEEP_FILE}) is damaged: launch the same grid again to store it "
                "anew (its runs are ordinary runs, kept in the store)")
    return f"no sweep {sweep_id!r} in {sweeps_root()}"


def load_sweep(sweep_id: str) -> dict | None:
    """A stored sweep's record, or None when there is none (or it is unreadable)."""
    try:
        record = read_json(sweep_dir(sweep_id) / SWEEP_FILE)
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and "run_ids" in record else None


def sweep_status(sweep_id: str, store: RunStore | None = None) -> dict:
    """Where a sweep stands: per run, folds done of total, and the sweep's own state.

    Returns ``{"sweep_id", "name", "runs": [{"run_id", "config", "done", "total", "status", "message"}],
    "earlier_run_ids", "done_folds", "total_folds", "complete", "state"}`` (folds of distinct runs; the
    runs the sweep held before its grid resolved to other runs) where a run's status is ``complete``,
    ``running``, ``failed`` (its last attempt failed: ``message`` says why), ``partial`` or ``pending``, and
    ``state`` that of the sweep's last launch:
    ``running``, ``done``, ``failed``, ``stopped`` (its process ended early) or ``none``;
    ``incomplete`` when it was done but some of its runs are not whole any more (deleted by hand,
    a fold lost): launching it again computes what is missing.
    """
    store = store or RunStore()
    record = load_sweep(sweep_id)
    if record is None:
        raise RunError(_no_sweep(sweep_id))
    runs = [_run_status(run_id, config, store) for run_id, config in zip(record["run_ids"], record["configs"])]
    distinct = {r["run_id"]: r for r in runs}.values()  # a setting the model ignores repeats a run
    done, total = sum(r["done"] for r in distinct), sum(r["total"] for r in distinct)
    complete = all(r["status"] == "complete" for r in runs)
    state = latest_state(read_events(sweep_dir(sweep_id) / PROGRESS_FILE))["status"]
    if state == "running" and not _locked(sweep_dir(sweep_id) / LOCK_FILE):
        state = "stopped"
    elif state == "done" and not complete:  # its runs lost folds, or were deleted, since it finished
        state = "incomplete"
    return {"sweep_id": sweep_id, "name": record.get("name"), "created": record.get("created"),
            "axes": record.get("axes"), "runs": runs, "earlier_run_ids": earlier_run_ids(record),
            "done_folds": done, "total_folds": total, "complete": complete, "state": state}


def _locked(path: Path) -> bool:
    try:
        with FileLock(path, timeout=0):
            return False
    except Timeout:
        return True
    except OSError:  # a read-only store: no lock can be taken, so none is held
        return False


def _run_status(run_id: str, config: dict, store: RunStore) -> dict:
    meta = store.read_meta(run_id)
    if meta:
        total = len(meta["fold_ids"])
    else:
        total = 1 if config.get("test_fraction") is not None else int(config.get("folds") or 0)
    done = len(store.completed_folds(run_id, total)) if meta else 0
    failure = None
    if store.read_summary(run_id) is not None and done == total:
        status = "complete"
    elif store.is_locked(run_id):
        status = "running"
    else:  # its last attempt's word: failed, and why
        failure = store.failure(run_id)
        status = "failed" if failure is not None else "partial" if done else "pending"
    return {"run_id": run_id, "config": config, "done": done, "total": total, "status": status,
            "message": failure or ""}


def list_sweeps(store: RunStore | None = None) -> list[dict]:
    """Every stored sweep's status (see :func:`sweep_status`), newest first."""
    root = sweeps_root()
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if not (folder.is_dir() and _SWEEP_ID.fullmatch(folder.name) and (folder / SWEEP_FILE).exists()):
            continue
        if load_sweep(folder.name) is not None:
            found.append(sweep_status(folder.name, store))
        else:  # listed, so that a damaged record is seen and said, not silently dropped
            found.append({"sweep_id": folder.name, "name": folder.name, "created": _mtime(folder / SWEEP_FILE),
                          "axes": None, "runs": [], "earlier_run_ids": [], "done_folds": 0, "total_folds": 0,
                          "complete": False, "state": "damaged", "message": _no_sweep(folder.name)})
    return sorted(found, key=lambda s: s.get("created") or 0, reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
