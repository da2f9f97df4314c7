"""Background runs: a detached ``python -m leukdash run`` process per run id.

A job lives outside whatever started it (a Streamlit script run, a browser session), so it
survives reruns and reloads; everything about it is in the run folder: ``job_config.json``
(its input), ``job.json`` (pid, start time), ``job.log`` (its output) and the progress file.
Any process can therefore follow or cancel a job that another one started, and two sessions
launching the same config share one job. A sweep job computes several runs in one
``python -m leukdash sweep`` process; its folder is the store's folder of the sweep id.

At most ``max_jobs`` jobs compute at once for one store, whoever launched them: the others wait
in a queue of files beside the store (``<artifacts>/jobs/queue``) and a job's supervisor
process (:mod:`leukdash.service.supervisor`) starts the next when its job ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from leukdash import paths
from leukdash.errors import RunError
from leukdash.engine.progress import append_event, latest_state, read_events
from leukdash.engine.store import RunStore, read_json, write_json_atomic

if TYPE_CHECKING:
    from leukdash.config import RunConfig

JOB_FILE = "job.json"
LOG_FILE = "job.log"
CONFIG_FILE = "job_config.json"

# Children started by this process, so their exit status can be collected (and they are reaped).
_children: dict[int, subprocess.Popen] = {}


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


def submit(run_id: str, command: list[str], store: RunStore | None = None, max_jobs: int | None = None,
           inputs: dict[Path, dict] | None = None) -> dict:
    """Queue ``command`` as the job of ``run_id`` (any command: a run, a sweep), unless a job of
    that id is already running or queued, and start what the free slots allow.

    ``inputs`` are JSON files the command reads, written (atomically) only when it is queued.
    Returns the job record as :func:`start_job` does.
    """
    store = store or RunStore()
    folder = store.run_dir(run_id)
    if store.root.name != "runs":
        # The job finds its store through LEUKDASH_ARTIFACTS, whose runs live in <root>/runs.
        raise RunError(f"a job needs a store folder named 'runs', got {store.root}")
    max_jobs = max_jobs or _default_max_jobs()
    with _job_lock(store, run_id):
        job = _read_job(folder)
        if job is None or not (("pid" in job and _job_alive(job)) or _is_queued(store, job)):
            for path, content in (inputs or {}).items():
                write_json_atomic(path, content)
            queued = time.time_ns()
            write_json_atomic(folder / JOB_FILE, {
                "run_id": run_id, "state": "queued", "queued": queued / 1e9, "max_jobs": max_jobs,
                "log": str(folder / LOG_FILE), "config_file": str(folder / CONFIG_FILE), "command": command})
            _queue_dir(store).mkdir(parents=True, exist_ok=True)
            (_queue_dir(store) / f"{queued:020d}-{run_id}").touch()
    dispatch(store, max_jobs)
    return _read_job(folder)


def dispatch(store: RunStore, max_jobs: int, ended: str | None = None) -> None:
    """Start queued jobs, oldest first, while fewer than ``max_jobs`` are computing.

    Called after every start and end of a job (by the job's supervisor, which names its run as
    ``ended`` since it still lives), so the queue moves without anyone watching; one lock across
    processes keeps the count exact.
    """
    from filelock import FileLock

    running_dir = _running_dir(store)
    running_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(running_dir.parent / ".dispatch.lock"):
        running = 0
        for marker in running_dir.iterdir():
            job = _read_job(store.run_dir(marker.name))
            if marker.name != ended and job is not None and "pid" in job and _job_alive(job):
                running += 1
            else:
                marker.unlink(missing_ok=True)
        for entry in _queue_entries(store):
            if running >= max_jobs:
                break
            run_id = entry.name.split("-", 1)[1]
            with _job_lock(store, run_id):
                entry.unlink(missing_ok=True)
                job = _read_job(store.run_dir(run_id))
                if job is None or job.get("state") != "queued":
                    continue  # cancelled while it waited
                _spawn(store, job, max_jobs)
                (running_dir / run_id).touch()
                running += 1


def _spawn(store: RunStore, job: dict, max_jobs: int) -> None:
    """Start a queued job under its supervisor (which moves the queue on when the job ends)."""
    with open(job["log"], "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "leukdash.service.supervisor", str(store.root), str(max_jobs), job["run_id"],
             *job["command"]],
            cwd=paths.REPO_ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "LEUKDASH_ARTIFACTS": str(store.root.parent)},
        )
    _children[process.pid] = process
    write_json_atomic(store.run_dir(job["run_id"]) / JOB_FILE, {
        "pid": process.pid, "run_id": job["run_id"], "started": time.time(), "log": job["log"],
        "config_file": job["config_file"], "proc_start": _proc_start(process.pid), "max_jobs": max_jobs})


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
    job = _read_job(folder)
    if job is not None and job.get("state") == "queued":
        dispatch(store, job.get("max_jobs") or _default_max_jobs())  # in case no job end is left to do it
        job = _read_job(folder)
    position = _queue_position(store, run_id) if job is not None and job.get("state") == "queued" else None
    progress = latest_state(read_events(store.progress_path(run_id)))
    pid = job.get("pid") if job else None
    returncode = job.get("returncode") if job else None
    alive = pid is not None and _job_alive(job)
    if pid in _children and _children[pid].returncode is not None:
        returncode = _children[pid].returncode
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
        # Only the parent learns the exit status; keep it for every other reader, unless a
        # new job replaced this one meanwhile.
        with _job_lock(store, run_id):
            latest = _read_job(folder)
            if latest is not None and latest.get("pid") == pid and "returncode" not in latest:
                write_json_atomic(folder / JOB_FILE, {**latest, "returncode": returncode})
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
    with _job_lock(store, run_id):
        job = _read_job(folder)
        if job is not None and job.get("state") == "queued":
            for entry in _queue_entries(store):
                if entry.name.split("-", 1)[1] == run_id:
                    entry.unlink(missing_ok=True)
        elif job is not None and "pid" in job and _job_alive(job):
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
        dispatch(store, job.get("max_jobs") or _default_max_jobs())  # a killed supervisor cannot
    return job_status(run_id, store)


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
    "progress": {run_id: latest_state()}, "folds_done", "folds", "log_tail"}``. A run's state is
    ``"finished"``, ``"running"`` (its folds are being computed), ``"queued"`` (waiting in a live
    or queued job), or, once the job ended without it, the job's own state. The job's state is
    ``"queued"`` or ``"running"`` while it waits or its process lives, then ``"finished"`` if
    every run is, else ``"cancelled"`` or ``"failed"``.
    """
    store = store or RunStore()
    sweep = _sweep_input(store, sweep_id)
    if sweep is None:
        raise RunError(f"no sweep job {sweep_id!r}")
    job = job_status(sweep_id, store, log_lines)
    record = _read_job(store.run_dir(sweep_id)) or {}
    run_ids = sweep["run_ids"]
    progress = {run_id: latest_state(read_events(store.progress_path(run_id))) for run_id in run_ids}
    finished = {run_id for run_id in run_ids if store.read_summary(run_id) is not None}
    if job["state"] in ("queued", "running"):
        state = job["state"]
    elif len(finished) == len(run_ids):
        state = "finished"
    else:
        state = "cancelled" if job["state"] == "cancelled" else "failed"
    runs = {run_id: "finished" if run_id in finished else "running" if store.is_locked(run_id)
            else "queued" if state in ("queued", "running") else state for run_id in run_ids}
    updated = [p["updated"] for p in progress.values() if p["updated"] is not None]
    # Before a run reports its folds, its config tells how many it will have.
    planned = {run_id: 1 if config.get("test_fraction") is not None else config.get("folds", 5)
               for run_id, config in zip(run_ids, sweep.get("configs") or [])}
    return {
        "job_id": sweep_id, "name": sweep.get("name", sweep_id), "state": state, "position": job["position"],
        "started": record.get("started", record.get("queued")),
        "ended": None if state in ("queued", "running") else record.get("ended", max(updated, default=None)),
        "runs": runs, "progress": progress, "folds_done": sum(p["folds_done"] for p in progress.values()),
        "folds": sum(p["folds"] or planned.get(run_id, 0) for run_id, p in progress.items()),
        "log_tail": job["log_tail"],
    }


def list_sweep_jobs(store: RunStore | None = None) -> list[str]:
    """The ids of every sweep job in the store, newest first."""
    store = store or RunStore()
    found = []
    for folder in store.root.glob("sweep-*") if store.root.is_dir() else []:
        job = _read_job(folder)
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


def _default_max_jobs() -> int:
    from leukdash.service.deployment import read_deployment

    return read_deployment().max_jobs


def _queue_dir(store: RunStore) -> Path:
    """Queued runs, one empty file ``<queued ns>-<run_id>`` each, beside the run store."""
    return store.root.parent / "jobs" / "queue"


def _running_dir(store: RunStore) -> Path:
    """Runs started by :func:`dispatch`, one marker each, until seen ended."""
    return store.root.parent / "jobs" / "running"


def _queue_entries(store: RunStore) -> list[Path]:
    folder = _queue_dir(store)
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _queue_position(store: RunStore, run_id: str) -> int | None:
    names = [entry.name.split("-", 1)[1] for entry in _queue_entries(store)]
    return names.index(run_id) + 1 if run_id in names else None


def _is_queued(store: RunStore, job: dict) -> bool:
    return job.get("state") == "queued" and _queue_position(store, job["run_id"]) is not None


@contextmanager
def _job_lock(store: RunStore, run_id: str):
    """Serialise starting and cancelling one run's job (not the run's compute lock, which the
    job itself takes)."""
    from filelock import FileLock

    folder = store.run_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / ".job.lock"):
        yield


def _wait_for_exit(job: dict, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _job_alive(job):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _read_job(folder: Path) -> dict | None:
    try:
        job = read_json(folder / JOB_FILE)
    except ValueError:
        return None  # written atomically, so only a hand-edited file gets here: start afresh
    if not isinstance(job, dict) or not isinstance(job.get("run_id", ""), str):
        return None
    return job if isinstance(job.get("pid"), int) or job.get("state") in ("queued", "cancelled") else None


def _job_alive(job: dict) -> bool:
    """Whether the job's process still runs (not exited, not a zombie, pid not reused)."""
    pid = job["pid"]
    if pid in _children:
        return _children[pid].poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc (not Linux): os.kill is all we know
    if stat[0] == "Z":
        return False
    recorded = job.get("proc_start")
    return recorded is None or recorded == stat[19]


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, ...]; ``None`` if absent."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _proc_start(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[19] if stat else None  # field 22 of stat: start time in clock ticks since boot


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
