"""One pool for every fold task of every run: local worker processes or a Dask cluster.

A task is one fold of one run (:class:`FoldTask`). It receives its config and its run's
decoded inputs (:class:`leukdash.engine.training.FoldInputs`) and returns the fold result and the
model file's bytes; the process that owns the run store writes both (see
:mod:`leukdash.engine.runner`). Workers therefore need no shared file system, and a worker that dies
mid-task loses nothing but the task, which is computed again with an identical result.

Locally (:class:`LocalPool`) the tasks of all runs share one budget of cores and memory:

- cores: a CNN task counts its TensorFlow threads (``CNN_THREADS``), a classic task one core
  (its BLAS/OpenMP threads are limited to one), so CNN and classic folds share the machine
  without oversubscribing it;
- memory: a worker process that has loaded TensorFlow counts ``TF_WORKER_MB``, a classic one
  ``CLASSIC_WORKER_MB``; the budget is ``LEUKDASH_MEMORY_MB`` (see :func:`memory_budget_mb`).

With an address (``tcp://HOST:8786``, or ``LEUKDASH_SCHEDULER``) the same tasks go to a Dask
distributed cluster (:class:`DaskPool`), which reschedules the task of a lost worker itself.
"""

from __future__ import annotations

import os
import queue as queue_module
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# A CNN fold always uses CNN_THREADS TensorFlow threads: the pool counts them as its cores.
from leukdash.engine import machine
from leukdash.engine.machine import machine_cores
from leukdash.engine.ordering import order
from leukdash.models.cnn import CNN_THREADS, set_tf_threads

# Resident memory of a worker process (benchmarks/measure_memory.py, allidb2_ufpr at 64 px: a
# worker that has imported TensorFlow and trained for five minutes peaked at 900-973 MB; a
# scikit-learn worker ~0.3 GB).
TF_WORKER_MB = 1000
CLASSIC_WORKER_MB = 300
# The budget on a small machine: Streamlit Community Cloud gives an app ~2.7 GB, of which the
# server takes up to ~0.8 GB once TensorFlow is loaded for a prediction; 1.6 GB of workers
# (one TensorFlow fold and two classic folds; two TensorFlow folds measured 2.96 GB in all)
# keeps the whole app under 2.5 GB.
SMALL_MACHINE_BUDGET_MB = 1600
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class FoldTask:
    """One fold of one run, as the scheduler sees it."""

    run_id: str
    fold: int
    n_folds: int
    config: dict  # RunConfig.to_dict()

    @property
    def is_cnn(self) -> bool:
        return self.config["model"] == "cnn"


def scheduler_address(address: str | None = None) -> str | None:
    """The Dask scheduler to use: ``address``, else ``$LEUKDASH_SCHEDULER``, else None (local)."""
    return address or os.environ.get("LEUKDASH_SCHEDULER") or None


def make_pool(address: str | None = None, n_jobs: int | None = None):
    """A Dask pool for an address (argument or ``LEUKDASH_SCHEDULER``), else a local one.

    ``n_jobs`` caps the cores a local pool uses (1 computes in this process); results do not
    depend on it.
    """
    address = scheduler_address(address)
    if address:
        return DaskPool(address)
    if n_jobs == 1:
        return InProcessPool()
    return LocalPool(cores=min(n_jobs, machine_cores()) if n_jobs else None)


def memory_budget_mb() -> int:
    """Memory the local pool's workers may take: ``$LEUKDASH_MEMORY_MB``, else half of the
    machine's (or container's) memory, at least ``SMALL_MACHINE_BUDGET_MB``."""
    from leukdash.errors import ConfigError

    configured = os.environ.get("LEUKDASH_MEMORY_MB")
    if configured:
        try:
            value = int(configured)
        except ValueError:
            value = 0
        if value <= 0:
            raise ConfigError(f"LEUKDASH_MEMORY_MB must be a positive number of megabytes, got {configured!r}")
        return value
    total = machine.machine_memory_mb()
    return max(SMALL_MACHINE_BUDGET_MB, total // 2) if total else SMALL_MACHINE_BUDGET_MB


def task_cores(task: FoldTask) -> int:
    return CNN_THREADS if task.is_cnn else 1


# -- the task itself (runs in a worker) ------------------------------------------------------

def compute_fold(task: FoldTask, inputs, report=None) -> dict:
    """Compute one fold; return ``{"result": fold result, "model": model file bytes}``.

    Thread counts are set here, not by the caller, so a fold computes the same in a local
    worker, in this process or on a cluster worker.
    """
    from threadpoolctl import threadpool_limits

    from leukdash.config import RunConfig
    from leukdash.engine.training import model_suffix, run_fold

    config = RunConfig.from_dict(task.config)
    if config.is_cnn:
        set_tf_threads(CNN_THREADS)

    def relay(event: dict) -> None:
        if report is not None:
            report({**event, "fold": task.fold, "n_folds": task.n_folds})

    with tempfile.TemporaryDirectory(prefix="leukdash-fold-") as folder, threadpool_limits(1):
        path = Path(folder) / f"model.{model_suffix(config)}"
        result = run_fold(config, inputs, task.fold, model_path=path, report=relay)
        return {"result": result, "model": path.read_bytes()}


# -- in this process ---------------------------------------------------------------------------

class InProcessPool:
    """Tasks one after another in this process (``n_jobs=1``): progress reaches ``on_event`` live."""

    def run(self, tasks: list[FoldTask], inputs: dict, on_done, on_event) -> None:
        for task in order(tasks, inputs):
            on_done(task, compute_fold(task, inputs[task.run_id], lambda e, t=task: on_event(t.run_id, e)))


# -- local worker processes --------------------------------------------------------------------

_worker_events = None  # the event queue of this worker process (set by _init_worker)


def _init_worker(events, tf_threads: int | None, parent: int) -> None:
    global _worker_events
    _worker_events = events
    _die_with_parent(parent)
    if tf_threads:
        set_tf_threads(tf_threads)


def _die_with_parent(parent: int) -> None:
    """End this worker when the process that started it is gone (even killed with SIGKILL)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:  # the kernel sends SIGKILL when the parent dies (PR_SET_PDEATHSIG = 1)
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)

    def watch() -> None:  # other platforms (and belt and braces)
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="leukdash-parent-watch", daemon=True).start()


def _worker_task(task: FoldTask, inputs) -> dict:
    return compute_fold(task, inputs, lambda event: _worker_events.put((task.run_id, event)))


class LocalPool:
    """Worker processes on this machine, within a budget of cores and memory.

    CNN tasks run in processes that hold TensorFlow (``CNN_THREADS`` threads each), classic
    tasks in processes that never import it; the TensorFlow processes are ended as soon as no
    CNN task is left, so their memory goes back to the classic ones.
    """

    def __init__(self, cores: int | None = None, memory_mb: int | None = None):
        self.cores = cores or machine_cores()
        self.memory_mb = memory_mb or memory_budget_mb()

    def run(self, tasks: list[FoldTask], inputs: dict, on_done, on_event) -> None:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, wait

        context = multiprocessing.get_context("spawn")  # no fork of a process holding threads
        events = context.Queue()
        pending, running = order(tasks, inputs), {}
        pools: dict[bool, object] = {}  # is_cnn -> executor
        try:
            while pending or running:
                for task in list(pending):
                    if self._fits(task, running, pools):
                        executor = pools.get(task.is_cnn) or self._start(task.is_cnn, context, events, pools)
                        running[executor.submit(_worker_task, task, inputs[task.run_id])] = task
                        pending.remove(task)
                finished, _ = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                _drain(events, on_event)
                for future in finished:
                    task = running.pop(future)
                    on_done(task, _outcome(future, task))
                if True in pools and not any(t.is_cnn for t in [*pending, *running.values()]):
                    pools.pop(True).shutdown(wait=False)  # its workers exit: TensorFlow's memory back
            _drain(events, on_event)
        finally:
            for executor in pools.values():
                _kill(executor)
            events.close()

    def _fits(self, task: FoldTask, running: dict, pools: dict) -> bool:
        if not running:
            return True  # a task larger than the whole budget still runs, alone
        busy = sum(task_cores(t) for t in running.values())
        if busy + task_cores(task) > self.cores:
            return False
        idle = _live_workers(pools.get(task.is_cnn)) - sum(t.is_cnn == task.is_cnn for t in running.values())
        extra = 0 if idle > 0 else (TF_WORKER_MB if task.is_cnn else CLASSIC_WORKER_MB)
        return self._memory(pools) + extra <= self.memory_mb

    def _memory(self, pools: dict) -> int:
        return (_live_workers(pools.get(True)) * TF_WORKER_MB
                + _live_workers(pools.get(False)) * CLASSIC_WORKER_MB)

    def _start(self, cnn: bool, context, events, pools: dict):
        from concurrent.futures import ProcessPoolExecutor

        per_worker, cores = (TF_WORKER_MB, CNN_THREADS) if cnn else (CLASSIC_WORKER_MB, 1)
        workers = max(1, min(self.cores // cores, self.memory_mb // per_worker))
        pools[cnn] = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                         initargs=(events, CNN_THREADS if cnn else None, os.getpid()))
        return pools[cnn]


def _outcome(future, task: FoldTask) -> dict:
    from concurrent.futures.process import BrokenProcessPool

    from leukdash.errors import RunError

    try:
        return future.result()
    except BrokenProcessPool:
        raise RunError(f"the worker computing fold {task.fold + 1} of {task.run_id} died (out of memory, or "
                       "killed): finished folds are kept; run the same command again to resume") from None


def _live_workers(executor) -> int:
    return len(getattr(executor, "_processes", None) or {}) if executor is not None else 0


def _drain(events, on_event) -> None:
    """Pass every queued ``(run_id, event)`` to ``on_event`` (a closed queue counts as empty)."""
    while True:
        try:
            run_id, event = events.get_nowait()
        except (queue_module.Empty, OSError, ValueError):
            return
        on_event(run_id, event)


def _kill(executor) -> None:
    """Stop an executor's workers now, busy or not (an interrupted or failed pool)."""
    processes = list((getattr(executor, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)


# -- a Dask distributed cluster ----------------------------------------------------------------

def _same(value):
    return value


def _dask_task(task: FoldTask, inputs, topic: str) -> dict:
    """Compute a fold in a quiet child process of the Dask worker, relaying its progress.

    Not in the worker itself: its event loop and other threads draw from Python's global
    random generator, from which Keras draws its default seeds too, and the same CNN fold
    trained differently at every attempt there (measured); a child process computes exactly
    what a local worker does. The child lives as long as the worker and dies with it.
    """
    from concurrent.futures import TimeoutError as Pending

    from distributed import get_worker

    worker = get_worker()
    pool, events = _child_pool()
    future = _submit_from_daemon(pool, task, inputs)
    while True:
        try:
            outcome = future.result(timeout=POLL_SECONDS)
        except Pending:
            continue
        finally:
            _drain(events, lambda run_id, event: worker.log_event(topic, [run_id, event]))
        return outcome


_child = None  # (executor, event queue) of this Dask worker process


def _submit_from_daemon(pool, task: FoldTask, inputs):
    """``pool.submit`` from a daemonic process (a Dask worker under its nanny), which
    multiprocessing forbids to start children: the flag is lifted while the child starts; the
    child is tied to this process's life by :func:`_die_with_parent` instead."""
    import multiprocessing

    config = multiprocessing.current_process()._config
    daemon = config.pop("daemon", None)
    try:
        return pool.submit(_worker_task, task, inputs)
    finally:
        if daemon is not None:
            config["daemon"] = daemon


def _child_pool():
    global _child
    if _child is None or _child[0]._broken:  # none yet, or the last one died
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        events = context.Queue()
        _child = (ProcessPoolExecutor(1, mp_context=context, initializer=_init_worker,
                                      initargs=(events, None, os.getpid())), events)
    return _child


class DaskPool:
    """The tasks on an existing Dask cluster (``dask scheduler`` + ``dask worker ADDRESS``).

    Each run's inputs go to the scheduler once and to each worker that needs them once; a task
    returns its result and model bytes to this process. Progress events come back through the
    scheduler's event log.
    """

    def __init__(self, address: str, connect_timeout: float = 20):
        self.address, self.connect_timeout = address, connect_timeout

    def run(self, tasks: list[FoldTask], inputs: dict, on_done, on_event) -> None:
        import uuid

        from distributed import Client

        from leukdash.errors import RunError

        try:
            client = Client(self.address, timeout=self.connect_timeout)
        except (OSError, TimeoutError) as error:
            raise RunError(f"cannot reach the Dask scheduler at {self.address}: {error}") from None
        topic = f"leukdash-{uuid.uuid4().hex}"
        events: queue_module.Queue = queue_module.Queue()
        futures, shipped = {}, {}
        try:
            client.subscribe_topic(topic, lambda message: events.put(message[1]))
            needed = {task.run_id for task in tasks}
            # A task that returns the inputs, not scattered data: the scheduler keeps the task, so
            # inputs lost with a worker are made again (scattered data is lost for good; measured).
            shipped = {run_id: client.submit(_same, inputs[run_id], key=f"inputs-{run_id}-{uuid.uuid4().hex[:8]}")
                       for run_id in needed}
            for task in order(tasks, inputs):
                futures[client.submit(_dask_task, task, shipped[task.run_id], topic, pure=False,
                                      key=f"fold-{task.run_id}-{task.fold}-{uuid.uuid4().hex[:8]}")] = task
            pending = dict(futures)
            while pending:
                for future in [f for f in pending if f.done()]:
                    _drain(events, on_event)
                    on_done(pending.pop(future), future.result())
                _drain(events, on_event)
                time.sleep(POLL_SECONDS)
            _drain(events, on_event)
        finally:
            if futures or shipped:
                client.cancel([*futures, *shipped.values()])
            client.unsubscribe_topic(topic)
            client.close()


@contextmanager
def dask_cli_cluster(folder: Path, n_workers: int = 2, env: dict | None = None):
    """A Dask cluster on this machine started with the ``dask`` command line, as on real machines:
    ``dask scheduler`` on a free port and ``n_workers`` ``dask worker ADDRESS --nthreads 1``, each
    in its own folder under ``folder``, its store an empty folder of its own (no shared store).

    Yields ``(address, workers)``, the workers' ``Popen`` objects (each the leader of its own
    process group, nanny and worker); everything is killed on exit. For tests and benchmarks.
    """
    import signal
    import socket
    import subprocess

    from leukdash.paths import REPO_ROOT

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"

    def start(args: list[str], where: Path) -> subprocess.Popen:
        where.mkdir(parents=True, exist_ok=True)
        clean = {key: value for key, value in os.environ.items() if not key.startswith("LEUKDASH_")}
        clean.update(PYTHONPATH=str(REPO_ROOT), LEUKDASH_ARTIFACTS=str(where / "artifacts"), **(env or {}))
        with open(where / "log.txt", "wb") as log:
            return subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=where, env=clean,
                                    start_new_session=True, stdout=subprocess.DEVNULL, stderr=log)

    processes = [start(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                       Path(folder) / "scheduler")]
    try:
        for index in range(n_workers):
            where = Path(folder) / f"worker{index}"
            processes.append(start(["worker", address, "--nthreads", "1", "--no-dashboard",
                                    "--local-directory", str(where / "dask")], where))
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(n_workers, timeout=180)
        yield address, processes[1:]
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
