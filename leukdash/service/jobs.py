"""Background runs: a detached ``python -m leukdash run`` process per run id, queued with the
others (:mod:`leukdash.service.job_queue`); what a job's status is, and cancelling it.

Everything about a run's job is in the run folder: ``job_config.json`` (its input),
``job.json`` (pid, start time), ``job.log`` (its output) and the progress file.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from leukdash.errors import RunError
from leukdash.engine.progress import append_event, latest_state, read_events
from leukdash.engine.store import RunStore, write_json_atomic
from leukdash.service.job_queue import (CONFIG_FILE, JOB_FILE, LOG_FILE, children, default_max_jobs, dispatch,
                                        job_alive, job_lock, keep_returncode, queue_entries, queue_position,
                                        read_job, submit)

if TYPE_CHECKING:
    from leukdash.config import RunConfig


def job_command(config_file: Path) -> list[str]:
    """The command line of a job (tests replace it with a stand-in process)."""
    return [sys.executable, "-m", "leukdash", "run", "--config-file", str(config_file), "--quiet"]


def start_job(config: RunConfig, run_id: str, store: RunStore | None = None, max_jobs: int | None = None,
              workers: int | None = None) -> dict:
    """Start computing ``run_id`` in a detached process, or return the job already doing so.

    At most ``max_jobs`` jobs (default: the deployment's, see :mod:`leukdash.service.deployment`)
    compute at once, whoever started them; a job beyond that waits in the queue and starts
    when one ends. ``workers`` caps the folds the job computes at once (``--n-jobs``; results do
    not depend on it). Returns the job record: ``{"run_id", "state": "queued", "queued", ...}``
    while it waits, then ``{"pid", "run_id", "started", "log", "config_file", "proc_start"}``
    (``proc_start`` tells a live job from an unrelated process that reused its pid).
    """
    store = store or RunStore()
    config_file = store.run_dir(run_id) / CONFIG_FILE
    command = job_command(config_file) + (["--n-jobs", str(workers)] if workers else [])
    return submit(run_id, command, store, max_jobs, inputs={config_file: config.to_dict()})


def job_status(run_id: str, store: RunStore | None = None, log_lines: int = 20) -> dict:
    """Where a run's job stands.

    Returns ``{"state", "position", "pid", "returncode", "progress", "log_tail"}``. ``state`` is
    ``"finished"`` when the run's summary is stored, ``"queued"`` while it waits for a free slot
    (``position`` 1 is next), ``"running"`` while the job process lives (or another process holds
    the run's lock), ``"cancelled"`` or ``"failed"`` when it ended without a summary, and
    ``"none"`` when no job was ever started for the run.
    """
    store = store or RunStore()
    folder = store.run_dir(run_id)
    job = read_job(folder)
    if job is not None and job.get("state") == "queued":
        dispatch(store, job.get("max_jobs") or default_max_jobs())  # in case no job end is left to do it
        job = read_job(folder)
    position = queue_position(store, run_id) if job is not None and job.get("state") == "queued" else None
    progress = latest_state(read_events(store.progress_path(run_id)))
    pid = job.get("pid") if job else None
    returncode = job.get("returncode") if job else None
    alive = pid is not None and job_alive(job)
    if pid is not None and returncode is None and not alive:
        returncode = _exit_status(folder, pid)
    if store.read_summary(run_id) is not None:
        state = "finished"
    elif position is not None:
        state = "queued"
    elif alive or store.is_locked(run_id):
        state = "running"
    elif job is None:
        state = "none"
    elif job.get("state") == "cancelled" or progress["status"] == "cancelled":
        state = "cancelled"
    else:
        state = "failed"
    if pid is not None and not alive and returncode is not None and "returncode" not in job:
        keep_returncode(store, run_id, pid, returncode)
    return {
        "state": state, "position": position, "pid": pid, "returncode": returncode, "progress": progress,
        "log_tail": _tail(folder / LOG_FILE, log_lines),
    }


def cancel_job(run_id: str, store: RunStore | None = None, grace: float = 5.0) -> dict:
    """Stop a run's job: take it off the queue, or SIGTERM its process group and SIGKILL after
    ``grace`` seconds.

    Folds finished before the cancel stay in the store, so launching again resumes. Returns
    :func:`job_status` afterwards; a run without a live or queued job is left as it is.
    """
    store = store or RunStore()
    folder = store.run_dir(run_id)
    with job_lock(store, run_id):
        job = read_job(folder)
        if job is not None and job.get("state") == "queued":
            for entry in queue_entries(store):
                if entry.name.split("-", 1)[1] == run_id:
                    entry.unlink(missing_ok=True)
        elif job is not None and "pid" in job and job_alive(job):
            # start_new_session made the job the leader of its own group: this reaches its workers too.
            _signal_group(job["pid"], signal.SIGTERM)
            if not _wait_for_exit(job, grace):
                _signal_group(job["pid"], signal.SIGKILL)
                _wait_for_exit(job, grace)
        else:
            job = None
        if job is not None:
            append_event(store.progress_path(run_id), {"event": "cancelled", "message": "cancelled by user"})
            write_json_atomic(folder / JOB_FILE, {**job, "state": "cancelled", "ended": time.time()})
    if job is not None:
        dispatch(store, job.get("max_jobs") or default_max_jobs())  # a killed supervisor cannot
    return job_status(run_id, store)


def _exit_status(folder: Path, pid: int) -> int | None:
    """The exit status of the ended job process ``pid``, if known: as its parent (this process) learned it,
    or from its job file, where this process's reaper thread may have put it since the file was read."""
    process = children.get(pid)
    if process is not None and process.returncode is not None:
        return process.returncode
    job = read_job(folder)
    return job.get("returncode") if job is not None and job.get("pid") == pid else None


def _wait_for_exit(job: dict, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while job_alive(job):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise RunError(f"cannot stop job process {pid}: {exc.strerror}") from None


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            data = handle.read()
    except FileNotFoundError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]
