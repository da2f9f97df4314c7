"""Sweep jobs: a stored sweep computed as ONE background job (one ``python -m leukdash sweep``
process, queued like any job, see :mod:`leukdash.service.job_queue`); its folder is the store's
folder of the sweep id, and each of its runs reports its progress in its own run folder.
"""

from __future__ import annotations

import sys

from leukdash.errors import RunError
from leukdash.engine.progress import append_event, latest_state, read_events
from leukdash.engine.store import RunStore, read_json
from leukdash.service.job_queue import CONFIG_FILE, read_job, submit
from leukdash.service.jobs import cancel_job, job_status


def sweep_command(sweep_id: str) -> list[str]:
    """The command line of a sweep job: the CLI computing a stored sweep's missing folds."""
    return [sys.executable, "-m", "leukdash", "sweep", "--resume", sweep_id, "--quiet"]


def start_sweep_job(sweep: dict, store: RunStore | None = None, max_jobs: int | None = None,
                    workers: int | None = None) -> dict:
    """Compute a stored sweep as ONE job (one ``leukdash sweep`` process, queued like any job),
    or return the job already running or queued for it.

    ``sweep`` is the record of :func:`leukdash.engine.sweep.create_sweep` (``sweep_id``, ``name``,
    ``run_ids``, ``configs``); it is kept as the job's input in the store's folder of the sweep
    id, and each run reports its own progress in its run folder as usual.
    """
    store = store or RunStore()
    command = sweep_command(sweep["sweep_id"]) + (["--n-jobs", str(workers)] if workers else [])
    return submit(sweep["sweep_id"], command, store, max_jobs,
                  inputs={store.run_dir(sweep["sweep_id"]) / CONFIG_FILE: sweep})


def sweep_job_status(sweep_id: str, store: RunStore | None = None, log_lines: int = 20) -> dict:
    """Where a sweep job stands: its own state and each of its runs'.

    Returns ``{"job_id", "name", "state", "position", "started", "ended", "runs": {run_id: state},
    "refused": {run_id: reason}, "progress": {run_id: latest_state()}, "folds_done", "folds", "log_tail",
    "datasets", "configs"}``
    (``datasets``: its configs' dataset values, for a dashboard to tell whose upload it ran on; ``configs``: its
    runs' configs as dicts, for a dashboard to say what it computes). A run's state is
    ``"finished"``, ``"running"`` (its folds are being computed), ``"failed"`` (its last attempt was refused
    for its own settings, ``refused`` says why), ``"queued"`` (waiting in a live or queued job), or, once the job
    ended without it, the job's own state. The job's state is
    ``"queued"`` or ``"running"`` while it waits or its process lives, then ``"finished"`` if
    every run is, else ``"cancelled"`` or ``"failed"``.
    """
    store = store or RunStore()
    sweep = _sweep_input(store, sweep_id)
    if sweep is None:
        raise RunError(f"no sweep job {sweep_id!r}")
    job = job_status(sweep_id, store, log_lines)
    record = read_job(store.run_dir(sweep_id)) or {}
    run_ids = sweep["run_ids"]
    progress = {run_id: latest_state(read_events(store.progress_path(run_id))) for run_id in run_ids}
    finished = {run_id for run_id in run_ids if store.read_summary(run_id) is not None}
    if job["state"] in ("queued", "running"):
        state = job["state"]
    elif len(finished) == len(run_ids):
        state = "finished"
    else:
        state = "cancelled" if job["state"] == "cancelled" else "failed"
    # A run refused for its settings fails while its job goes on with the others: its lock went with it.
    locked = {run_id for run_id in run_ids if run_id not in finished and store.is_locked(run_id)}
    refused = {run_id: reason for run_id in run_ids if run_id not in finished and run_id not in locked
               and (reason := store.failure(run_id)) is not None}
    runs = {run_id: "finished" if run_id in finished else "running" if run_id in locked
            else "failed" if run_id in refused
            else "queued" if state in ("queued", "running") else state for run_id in run_ids}
    updated = [p["updated"] for p in progress.values() if p["updated"] is not None]
    # Before a run reports its folds, its config tells how many it will have.
    planned = {run_id: 1 if config.get("test_fraction") is not None else config.get("folds", 5)
               for run_id, config in zip(run_ids, sweep.get("configs") or [])}
    return {
        "job_id": sweep_id, "name": sweep.get("name", sweep_id), "state": state, "position": job["position"],
        "started": record.get("started", record.get("queued")),
        "ended": None if state in ("queued", "running") else record.get("ended", max(updated, default=None)),
        "runs": runs, "refused": refused, "progress": progress,
        "folds_done": sum(p["folds_done"] for p in progress.values()),
        "folds": sum(p["folds"] or planned.get(run_id, 0) for run_id, p in progress.items()),
        "log_tail": job["log_tail"],
        "datasets": sorted({config.get("dataset") for config in sweep.get("configs") or []} - {None}),
        "configs": sweep.get("configs") or [],
    }


def list_sweep_jobs(store: RunStore | None = None) -> list[str]:
    """The ids of every sweep job in the store, newest first."""
    store = store or RunStore()
    found = []
    for folder in store.root.glob("sweep-*") if store.root.is_dir() else []:
        job = read_job(folder)
        if job is not None and _sweep_input(store, folder.name) is not None:
            found.append((job.get("started", job.get("queued", 0)), folder.name))
    return [sweep_id for _, sweep_id in sorted(found, reverse=True)]


def cancel_sweep_job(sweep_id: str, store: RunStore | None = None, grace: float = 5.0) -> dict:
    """Stop a sweep job (or take it off the queue); finished runs and folds stay stored, so
    launching again resumes."""
    store = store or RunStore()
    cancel_job(sweep_id, store, grace)
    status = sweep_job_status(sweep_id, store)
    for run_id, state in status["runs"].items():
        if state == "cancelled":
            append_event(store.progress_path(run_id), {"event": "cancelled", "message": "cancelled by user"})
    return sweep_job_status(sweep_id, store)


def _sweep_input(store: RunStore, sweep_id: str) -> dict | None:
    """The sweep record a sweep job was given, or None if it cannot be read."""
    try:
        sweep = read_json(store.run_dir(sweep_id) / CONFIG_FILE)
    except (OSError, ValueError, RunError):
        return None
    return sweep if isinstance(sweep, dict) and isinstance(sweep.get("run_ids"), list) else None
