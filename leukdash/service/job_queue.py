"""The queue of background jobs: detached processes, at most ``max_jobs`` computing at once per store.

A job lives outside whatever started it (a Streamlit script run, a browser session), so it
survives reruns and reloads; everything about it is in its folder of the store: its input
(``job_config.json``), ``job.json`` (pid, start time) and ``job.log`` (its output). Any process
can therefore follow or cancel a job that another one started, and two sessions launching the
same job share it.

Jobs beyond ``max_jobs`` wait in a queue of files beside the store (``<artifacts>/jobs/queue``)
and a job's supervisor process (:mod:`leukdash.service.supervisor`) starts the next when its job
ends. What a job computes is its command's business: a run (:mod:`leukdash.service.jobs`) or a
sweep (:mod:`leukdash.service.sweep_jobs`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from leukdash import paths
from leukdash.errors import RunError
from leukdash.engine.store import (CONFIG_FILE, JOB_FILE, JOB_LOCK, LOG_FILE, RunStore, read_json,
                                   write_json_atomic)

# Supervisors started by this process and not yet ended (each reaped by a thread of its own: :func:`_reap`).
children: dict[int, subprocess.Popen] = {}


def submit(run_id: str, command: list[str], store: RunStore | None = None, max_jobs: int | None = None,
           inputs: dict[Path, dict] | None = None) -> dict:
    """Queue ``command`` as the job of ``run_id`` (any command: a run, a sweep), unless a job of
    that id is already running or queued, and start what the free slots allow.

    ``inputs`` are JSON files the command reads, written (atomically) only when it is queued.
    Returns the job record as :func:`leukdash.service.jobs.start_job` does.
    """
    store = store or RunStore()
    folder = store.run_dir(run_id)
    if store.root.name != "runs":
        # The job finds its store through LEUKDASH_ARTIFACTS, whose runs live in <root>/runs.
        raise RunError(f"a job needs a store folder named 'runs', got {store.root}")
    max_jobs = max_jobs or default_max_jobs()
    with job_lock(store, run_id):
        job = read_job(folder)
        if job is None or not (("pid" in job and job_alive(job)) or _is_queued(store, job)):
            for path, content in (inputs or {}).items():
                write_json_atomic(path, content)
            queued = time.time_ns()
            write_json_atomic(folder / JOB_FILE, {
                "run_id": run_id, "state": "queued", "queued": queued / 1e9, "max_jobs": max_jobs,
                "log": str(folder / LOG_FILE), "config_file": str(folder / CONFIG_FILE), "command": command,
                **_whereabouts()})
            _queue_dir(store).mkdir(parents=True, exist_ok=True)
            (_queue_dir(store) / f"{queued:020d}-{run_id}").touch()
    dispatch(store, max_jobs)
    return read_job(folder)


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
            job = read_job(store.run_dir(marker.name))
            if marker.name != ended and job is not None and "pid" in job and job_alive(job):
                running += 1
            else:
                marker.unlink(missing_ok=True)
        for entry in queue_entries(store):
            if running >= max_jobs:
                break
            run_id = entry.name.split("-", 1)[1]
            with job_lock(store, run_id):
                entry.unlink(missing_ok=True)
                job = read_job(store.run_dir(run_id))
                if job is None or job.get("state") != "queued":
                    continue  # cancelled while it waited
                _spawn(store, job, max_jobs)
                (running_dir / run_id).touch()
                running += 1


def _whereabouts() -> dict:
    """The folder of the process queuing a job and its ``LEUKDASH_DATA`` entries, made absolute: a
    job may be started later by another process (a supervisor, whose folder is the first job's),
    and must find the dataset a name or a relative path names, as its launcher did. The implicit
    ``./data`` is no entry: the job, run in its launcher's folder, finds it itself, and an entry
    for it would have a missing ``./data`` blamed on the user's ``LEUKDASH_DATA``."""
    try:
        folder = Path.cwd()
    except FileNotFoundError:  # the launcher's folder was deleted: no relative name can resolve
        return {}
    return {"cwd": str(folder), "data_roots": os.pathsep.join(str(folder / root) for root in paths.named_data_roots())}


def _spawn(store: RunStore, job: dict, max_jobs: int) -> None:
    """Start a queued job under its supervisor (which moves the queue on when the job ends), in
    its launcher's folder, with the store and the dataset folders its launcher had."""
    folder = job.get("cwd")
    if not (isinstance(folder, str) and Path(folder).is_dir()):
        folder = paths.REPO_ROOT  # a job queued by an older leukdash, or its folder is gone
    environment = {**os.environ, "LEUKDASH_ARTIFACTS": str(store.root.parent.absolute()),
                   # ``-m leukdash`` in another folder than the repository: the same leukdash
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(paths.REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    if isinstance(job.get("data_roots"), str):
        environment["LEUKDASH_DATA"] = job["data_roots"]
    with open(job["log"], "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "leukdash.service.supervisor", str(store.root.absolute()), str(max_jobs),
             job["run_id"], *job["command"]],
            cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=environment,
        )
    children[process.pid] = process
    write_json_atomic(store.run_dir(job["run_id"]) / JOB_FILE, {
        "pid": process.pid, "run_id": job["run_id"], "started": time.time(), "log": job["log"],
        "config_file": job["config_file"], "proc_start": _proc_start(process.pid), "max_jobs": max_jobs})
    threading.Thread(target=_reap, args=(store, job["run_id"], process), name="leukdash-job-reaper",
                     daemon=True).start()


def _reap(store: RunStore, run_id: str, process: subprocess.Popen) -> None:
    """Wait for a supervisor to end and keep its exit status in its job file, then forget it: a long-lived
    process (the dashboard's server) would otherwise keep it as a zombie until a session asks after that
    very job, which none may ever do (its tab closed, the job out of the pages' lists)."""
    try:
        keep_returncode(store, run_id, process.pid, process.wait())
    finally:  # reaped whatever the job file allows: a store gone read-only keeps no status, nor the Popen
        children.pop(process.pid, None)


def keep_returncode(store: RunStore, run_id: str, pid: int, returncode: int) -> None:
    """Write the exit status of the job process ``pid`` into its job file (only its parent learns it), for
    every other reader; unless the file has it already, or a new job of the run replaced that one meanwhile."""
    folder = store.run_dir(run_id)
    with job_lock(store, run_id):
        job = read_job(folder)
        if job is not None and job.get("pid") == pid and "returncode" not in job:
            write_json_atomic(folder / JOB_FILE, {**job, "returncode": returncode})


def default_max_jobs() -> int:
    from leukdash.service.deployment import read_deployment

    return read_deployment().max_jobs


def _queue_dir(store: RunStore) -> Path:
    """Queued runs, one empty file ``<queued ns>-<run_id>`` each, beside the run store."""
    return store.root.parent / "jobs" / "queue"


def _running_dir(store: RunStore) -> Path:
    """Runs started by :func:`dispatch`, one marker each, until seen ended."""
    return store.root.parent / "jobs" / "running"


def queue_entries(store: RunStore) -> list[Path]:
    folder = _queue_dir(store)
    return sorted(folder.iterdir()) if folder.is_dir() else []


def queue_position(store: RunStore, run_id: str) -> int | None:
    names = [entry.name.split("-", 1)[1] for entry in queue_entries(store)]
    return names.index(run_id) + 1 if run_id in names else None


def _is_queued(store: RunStore, job: dict) -> bool:
    return job.get("state") == "queued" and queue_position(store, job["run_id"]) is not None


@contextmanager
def job_lock(store: RunStore, run_id: str):
    """Serialise starting and cancelling one run's job (not the run's compute lock, which the
    job itself takes)."""
    from filelock import FileLock

    folder = store.run_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / JOB_LOCK):
        yield


def read_job(folder: Path) -> dict | None:
    try:
        job = read_json(folder / JOB_FILE)
    except ValueError:
        return None  # written atomically, so only a hand-edited file gets here: start afresh
    if not isinstance(job, dict) or not isinstance(job.get("run_id", ""), str):
        return None
    return job if isinstance(job.get("pid"), int) or job.get("state") in ("queued", "cancelled") else None


def job_alive(job: dict) -> bool:
    """Whether the job still runs: its process (not exited, not a zombie, pid not reused) or, that
    process gone (killed from outside), a process of the group it led, such as the command it ran,
    which then still computes and still answers a cancel."""
    pid = job["pid"]
    process = children.get(pid)  # one read: the reaper thread may forget the job between two
    if process is not None:
        return process.poll() is None or _group_lives(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return _group_lives(pid)
    except PermissionError:
        pass  # exists, owned by someone else
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc (not Linux): os.kill is all we know
    if stat[0] == "Z":
        return _group_lives(pid)
    recorded = job.get("proc_start")
    return recorded is None or recorded == stat[19]


def _group_lives(leader: int) -> bool:
    """Whether a process other than a zombie is left in the process group ``leader`` led. (Linux
    does not hand out a pid still in use as a group's id, so the group is the job's.)"""
    try:
        os.killpg(leader, 0)
    except ProcessLookupError:
        return False  # the usual answer for a job that ended, given without reading /proc
    except PermissionError:
        pass  # members exist, owned by someone else
    try:  # members exist: are any of them more than zombies?
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        stat = _proc_stat(int(entry)) if entry.isdigit() and int(entry) != leader else None
        if stat is not None and stat[2] == str(leader) and stat[0] != "Z":
            return True
    return False


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
