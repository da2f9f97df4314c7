"""Fold tasks on a Dask distributed cluster (``dask scheduler`` + ``dask worker ADDRESS``).

Only bytes and Python's own types reach the scheduler (which unpickles the task graph): each
run's inputs and each task are pickled here, the task's function is pickled by value
(:func:`_fold_function`), and what comes back (result, progress) is pickled on the worker. So a
stock ``dask scheduler`` that cannot import leukdash serves; only the workers need it.

On a worker the fold is computed in a :class:`~leukdash.engine.scheduler.child.ChildProcess`,
not in the worker itself: its event loop and other threads draw from Python's global random
generator, from which Keras draws its default seeds too, and the same CNN fold trained
differently at every attempt there (measured); a child computes exactly what a local worker
does. A worker keeps its children between tasks. The scheduler reruns the task of a lost worker
itself, and a task whose child died once more (``retries=1``).

One module, though long (about 470 lines): the parent's side (the pool, its watch over the cluster,
the failures it explains) and the worker's side (:func:`compute_on_worker` and its child) are one
protocol of pickled bytes, each side reading what the other writes; :func:`dask_cli_cluster` starts
a cluster as the README tells a user to, for the tests and benchmarks that use this protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import queue
import sys
import threading
import time
from concurrent.futures import CancelledError, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from leukdash import interrupts
from leukdash.engine.scheduler.child import ChildProcess
from leukdash.engine.ordering import order
from leukdash.engine.scheduler.pool import Pool
from leukdash.engine.scheduler.task import FoldTask

POLL_SECONDS = 0.2
# How long tasks may wait on a cluster without a worker before the run says so: a worker joining
# takes a few seconds, and a run with none would otherwise wait in silence.
NO_WORKER_NOTICE_SECONDS = 10.0
# How often a run waiting on the cluster asks the scheduler who it is and which workers it has,
# and how long it waits for the answer: a scheduler that is stopped (SIGSTOP, a suspended VM) or
# cut off keeps its connections open, and Dask's client waits on them without a word (its
# ``scheduler_info()`` too, a round trip without a deadline: never called while a run waits).
SCHEDULER_PROBE_SECONDS = 5.0
SCHEDULER_ANSWER_SECONDS = 10.0


def check_scheduler(address: str, timeout: float) -> None:
    """One RunError unless a Dask scheduler answers at ``address`` within ``timeout`` seconds.

    ``Client`` itself waits forever on a port that accepts and stays silent (an HTTP server, a
    wrong service) and reads a banner's bytes as a frame length (then asks for exabytes of
    memory): a scheduler's ``identity`` is asked first, under a deadline."""
    from leukdash.errors import RunError

    try:
        info = _identity(address, timeout)
    except TimeoutError:
        raise RunError(f"no Dask scheduler answered at {address} within {timeout:.0f} s: nothing listens there, or "
                       "something else does (give the tcp://HOST:PORT that `dask scheduler` prints)") from None
    except OSError as error:
        raise RunError(f"cannot reach the Dask scheduler at {address}: {error}") from None
    except Exception as error:  # noqa: BLE001 - Dask refused the address (tls:// without TLS settings), or
        # whatever the other end sent is not Dask's protocol: Dask's own reason, on one line
        from leukdash.paths import error_line

        raise RunError(f"{address} does not answer as a Dask scheduler ({error_line(error)}): give "
                       "the tcp://HOST:PORT that `dask scheduler` prints") from None
    if not isinstance(info, dict) or info.get("type") != "Scheduler":
        kind = info.get("type") if isinstance(info, dict) else None
        raise RunError(f"{address} is {'a Dask ' + str(kind) if kind else 'not a Dask scheduler'}: give the "
                       "scheduler's tcp://HOST:PORT (the one `dask scheduler` prints, which workers connect to)")


def _identity(address: str, timeout: float):
    """What the process at ``address`` says it is (a dict, for a Dask server), asked under a
    deadline on a connection of its own, in a thread of its own: the caller may be running an
    event loop already (a Jupyter notebook's cell does), where ``asyncio.run`` cannot start one."""
    from distributed.core import rpc

    async def identity():
        remote = rpc(address, timeout=timeout)
        try:
            return await remote.identity()
        finally:
            await remote.close_rpc()

    def ask():
        return asyncio.run(asyncio.wait_for(identity(), timeout))

    with ThreadPoolExecutor(1, thread_name_prefix="leukdash-scheduler-check") as pool:
        return pool.submit(ask).result()


class DaskPool(Pool):
    """The tasks on an existing Dask cluster.

    Each run's inputs go to the scheduler once and to each worker that needs them once; a task
    returns its result and model bytes to this process. Progress events come back through the
    scheduler's event log.
    """

    def __init__(self, address: str, source: str, connect_timeout: float = 20):
        """``source``: where the address was given (``--scheduler`` or ``LEUKDASH_SCHEDULER``),
        named by the advice on a scheduler lost."""
        self.address, self.source, self.connect_timeout = address, source, connect_timeout

    def run(self, tasks: list[FoldTask], inputs: dict, on_done, on_event, on_failed) -> None:
        from leukdash.errors import RunError

        try:
            check_scheduler(self.address, self.connect_timeout)
        except RunError as error:
            if self.source == "--scheduler":  # typed: the user knows where it came from
                raise
            # From the environment (a shell profile, say), not typed: said with the way back, as for a scheduler lost
            raise RunError(f"{error} (the address is LEUKDASH_SCHEDULER's: run with {_compute_here(self.source)}, "
                           "to compute on this machine)") from None
        with _quiet_dask_client():
            self._run(tasks, inputs, on_done, on_event, on_failed)

    def _run(self, tasks: list[FoldTask], inputs: dict, on_done, on_event, on_failed) -> None:
        import uuid

        from distributed import Client

        from leukdash.engine.versions import versions
        from leukdash.errors import RunError

        ours = versions()  # what the store records for the run

        try:
            client = Client(self.address, timeout=self.connect_timeout)
        except (OSError, TimeoutError) as error:
            raise RunError(f"cannot reach the Dask scheduler at {self.address}: {error}") from None
        topic = f"leukdash-{uuid.uuid4().hex}"
        events: queue.Queue = queue.Queue()
        futures, shipped = {}, {}
        try:
            client.subscribe_topic(topic, lambda message: events.put(pickle.loads(message[1])))
            needed = {task.run_id for task in tasks}
            # A task that returns the inputs (``bytes`` copies them), not scattered data: the
            # scheduler keeps the task, so inputs lost with a worker are made again (scattered
            # data is lost for good; measured).
            shipped = {run_id: client.submit(bytes, pickle.dumps(inputs[run_id], pickle.HIGHEST_PROTOCOL),
                                             key=f"inputs-{run_id}-{uuid.uuid4().hex[:8]}")
                       for run_id in needed}
            fold = _fold_function()
            for task in order(tasks, inputs):
                futures[client.submit(fold, pickle.dumps(task), shipped[task.run_id], topic, pure=False, retries=1,
                                      key=f"fold-{task.run_id}-{task.fold}-{uuid.uuid4().hex[:8]}")] = task
            pending = dict(futures)
            waiting = _ClusterWatch(self.address, sorted(needed), on_event)
            while pending:
                waiting.check()
                for future in [f for f in pending if f.done()]:
                    if future not in pending:  # dropped meanwhile: a fold of its run failed
                        continue
                    _drain(events, on_event)
                    try:
                        outcome, worker, theirs = _fetched(future, waiting)
                    except (Exception, asyncio.CancelledError) as error:  # raised by Dask or on a worker
                        raise task_failure(error, pending[future], self.address, self.source) from None
                    waiting.heard_from_scheduler()  # the outcome came through it
                    refused = other_versions(worker, theirs, ours, pending[future].is_cnn)
                    if refused:
                        raise refused
                    kind, value = pickle.loads(outcome)
                    task = pending.pop(future)
                    if kind == "error":  # the fold's own error
                        on_failed(task, value)
                        dropped = [f for f, t in pending.items() if t.run_id == task.run_id]  # its run's other folds
                        client.cancel(dropped)
                        for other in dropped:
                            del pending[other], futures[other]
                    else:
                        on_done(task, value)
                    # Its result is stored: the cluster may forget it (a task whose result is held
                    # is computed again when the worker holding it is lost; measured).
                    del futures[future]
                    future.release()
                _drain(events, on_event)
                time.sleep(POLL_SECONDS)
            _drain(events, on_event)
        finally:
            with contextlib.suppress(Exception, asyncio.CancelledError):  # the scheduler may be gone
                if futures or shipped:
                    client.cancel([*futures, *shipped.values()])
                client.unsubscribe_topic(topic)
            client.close()


@contextmanager
def _quiet_dask_client():
    """Dask's client logs a scheduler it lost (tracebacks of its reconnection) before the run can
    say so: the run's own line (:func:`task_failure`) replaces them."""
    import logging

    loggers = [logging.getLogger(name) for name in ("distributed.client", "distributed.comm")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def task_failure(error: BaseException, task: FoldTask, address: str, source: str):
    """The one line (a RunError) for a fold task that Dask could not bring back: the scheduler
    lost, a worker that cannot import leukdash, memory, a child that died twice, anything else.
    ``source``: where ``address`` was given, which the way to compute here instead depends on."""
    from leukdash.engine.machine import out_of_memory
    from leukdash.errors import RunError

    kept = "finished folds are kept"
    what = f"{type(error).__name__}: {error}"
    if out_of_memory(error) is not None:  # before OSError below: memory can run out as one (ENOMEM)
        return RunError(f"out of memory on a Dask worker ({what}): {kept}; give the workers more memory (or no "
                        "ulimit -v), or a smaller --image-size or --augment-factor")
    # Dask's FutureCancelledError, or a closed connection (CommClosedError is an OSError; a fold's own
    # errors come back as its result, not as these): the scheduler went away, or restarted.
    if isinstance(error, (CancelledError, asyncio.CancelledError, OSError)):
        return RunError(f"lost the Dask scheduler at {address} (its connection closed): {kept}; run the same command "
                        f"again when it is back (or with {_compute_here(source)}, to compute on this machine)")
    if isinstance(error, ImportError) and "leukdash" in str(error):
        return RunError(f"a Dask worker cannot import leukdash ({what}): start every worker with it importable "
                        f"(PYTHONPATH=<the leukdash folder> dask worker {address}); {kept}")
    if isinstance(error, ChildDied):
        return RunError(f"fold {task.fold + 1} of {task.run_id}: {error}, twice (Dask ran it once more): often the "
                        f"worker's memory (a child is not held to Dask's --memory-limit); {kept}")
    return RunError(f"fold {task.fold + 1} of {task.run_id} failed on a Dask worker ({what}); {kept}")


def _compute_here(source: str) -> str:
    """How to compute on this machine instead of at an address given by ``source`` (``--scheduler`` or
    ``LEUKDASH_SCHEDULER``)."""
    return "--scheduler local" if source == "--scheduler" else "LEUKDASH_SCHEDULER unset, or --scheduler local"


def other_versions(worker: str, theirs: dict, ours: dict, cnn: bool):
    """The one line (a RunError) for a fold that ``worker`` computed under versions (``theirs``,
    :func:`~leukdash.engine.versions.versions` there) other than this machine's (``ours``, which
    the store records); None when they agree (see :func:`~leukdash.engine.versions.differing_versions`)."""
    from leukdash.engine.versions import differing_versions, versions_text
    from leukdash.errors import RunError

    differing = differing_versions(theirs, ours, cnn)
    if not differing:
        return None
    if differing == ["cnn_dtype_policy"]:  # the same code on another CPU kind: nothing to install
        return RunError(f"a Dask worker {worker} trains CNNs in {theirs.get('cnn_dtype_policy', 'none')} (this "
                        f"machine in {ours.get('cnn_dtype_policy')}: their CPUs differ in native bfloat16), which "
                        "gives other numbers: CNN runs need workers of this machine's CPU kind, or --scheduler local; "
                        "finished folds are kept")
    return RunError(f"a Dask worker {worker} runs {versions_text(differing, theirs, ours, 'this machine')}: install "
                    "the same versions there; finished folds are kept")


class ChildDied(RuntimeError):
    """The child process computing a fold on a worker died (Dask retries the task once)."""


class _ClusterWatch:
    """Says on each run's progress what a run waiting on the cluster is waiting for: no worker
    connected for ``NO_WORKER_NOTICE_SECONDS``, or a scheduler that has stopped answering
    (stopped, overloaded, cut off), and when it answers again. Both are learnt from one question
    to the scheduler every ``SCHEDULER_PROBE_SECONDS``, answered within ``SCHEDULER_ANSWER_SECONDS``
    or not at all: nothing here waits on the scheduler without a deadline."""

    def __init__(self, address: str, run_ids: list[str], on_event):
        self.address, self.run_ids, self.on_event = address, run_ids, on_event
        self.since = self.probed = time.monotonic()  # since: when a worker was last known
        self.told_no_worker = self.silent = False

    def check(self) -> None:
        if time.monotonic() - self.probed >= SCHEDULER_PROBE_SECONDS:
            self._probe_scheduler()

    def heard_from_scheduler(self) -> None:
        """A task's outcome came through the scheduler: it answers (a stale "does not answer"
        would otherwise stay on the progress line until the next probe), and a worker computed it."""
        self.since = time.monotonic()
        self._scheduler_answers(True)

    def _probe_scheduler(self) -> None:
        try:
            info = _identity(self.address, SCHEDULER_ANSWER_SECONDS)
        except Exception:  # noqa: BLE001 - no answer in time, a refused or reset connection: all silence
            info = None
        self._scheduler_answers(isinstance(info, dict))
        if isinstance(info, dict):
            self._count_workers(len(info.get("workers") or {}))

    def _scheduler_answers(self, answers: bool) -> None:
        self.probed = time.monotonic()
        if answers == self.silent:
            self.silent = not answers
            self._tell(f"the Dask scheduler at {self.address} answers again" if answers else
                       f"waiting for the Dask scheduler at {self.address}: it does not answer (stopped, "
                       "overloaded or cut off from this machine); finished folds are kept, Ctrl-C stops the run")

    def _count_workers(self, workers: int) -> None:
        if workers:
            self.since = time.monotonic()
        elif not self.told_no_worker and time.monotonic() - self.since >= NO_WORKER_NOTICE_SECONDS:
            self.told_no_worker = True
            self._tell(f"waiting for a worker: the Dask scheduler at {self.address} has none connected "
                       f"(start one with `dask worker {self.address}`)")

    def _tell(self, message: str) -> None:
        for run_id in self.run_ids:
            self.on_event(run_id, {"event": "message", "message": message})


def _fetched(future, watch: _ClusterWatch) -> tuple[bytes, str, dict]:
    """A done task's ``(pickled outcome, worker, versions)``, or its error raised. The bytes come through the scheduler,
    which may stop answering meanwhile, and Dask's fetch then waits on it in silence: it runs in a
    thread of its own while ``watch`` goes on saying what the run waits for. (Not fetched in
    slices with a timeout: a cut-short fetch starts over, and a model's bytes may take longer.)"""
    outcome: queue.Queue = queue.Queue()

    def fetch() -> None:
        try:
            outcome.put((True, future.result()))
        except BaseException as error:  # noqa: BLE001 - Dask's CancelledError is not an Exception
            outcome.put((False, error))

    # A daemon: a run stopped (Ctrl-C) while the scheduler is silent must not wait on it to exit.
    threading.Thread(target=fetch, name="leukdash-fetch-result", daemon=True).start()
    while True:
        try:
            fetched, value = outcome.get(timeout=POLL_SECONDS)
        except queue.Empty:
            interrupts.check()  # a stop swallowed where it landed ends the wait here
            watch.check()
            continue
        if fetched:
            return value
        raise value


def _drain(events: queue.Queue, on_event) -> None:
    """Pass every queued ``(run_id, event)`` to ``on_event``."""
    while True:
        try:
            run_id, event = events.get_nowait()
        except queue.Empty:
            return
        on_event(run_id, event)


def _fold_function():
    """The function of a fold task. Made here, inside a function, because cloudpickle pickles a
    function that cannot be imported by name by value: the scheduler unpickles it without
    leukdash, which the function imports only when a worker calls it.

    It returns the pickled outcome with the worker's address and the versions of the code that
    computed it (:func:`~leukdash.engine.versions.versions`, as the store records them): being
    this process's code, it asks them of a worker whose leukdash is older or newer too."""

    def fold(task: bytes, inputs: bytes, topic: str) -> tuple[bytes, str, dict]:
        from distributed import get_worker

        from leukdash.engine.versions import versions
        from leukdash.engine.scheduler.cluster import compute_on_worker

        return compute_on_worker(task, inputs, topic), get_worker().address, versions()

    return fold


# -- on a Dask worker ---------------------------------------------------------------------------

_idle_children: list[ChildProcess] = []  # this worker's children waiting for a task
_children_lock = threading.Lock()


def compute_on_worker(task: bytes, inputs: bytes, topic: str) -> bytes:
    """Compute a pickled task in a child of this worker, relaying its progress to ``topic``;
    return the pickled ``("done", outcome)`` or ``("error", exception)``.

    A child that dies is a :class:`ChildDied` here: Dask retries the task (in a new child).
    """
    from distributed import get_worker

    worker = get_worker()
    inbox: queue.Queue = queue.Queue()
    child = _idle_child(inbox)
    child.send(task, inputs)
    run_id = pickle.loads(task).run_id
    while True:
        _, kind, value = inbox.get()
        if kind == "event":
            worker.log_event(topic, pickle.dumps((run_id, value)))
            continue
        if kind == "died":
            raise ChildDied(f"the process computing it on a worker died (exit status {value})")
        with _children_lock:
            _idle_children.append(child)
        return pickle.dumps((kind, value), pickle.HIGHEST_PROTOCOL)


def _idle_child(inbox: queue.Queue) -> ChildProcess:
    """A live idle child of this worker, now reporting to ``inbox``, or a new one."""
    with _children_lock:
        while _idle_children:
            child = _idle_children.pop()
            if child.alive():
                child.inbox = inbox
                return child
    return ChildProcess(inbox)


# -- a cluster on this machine, for tests and benchmarks ------------------------------------------

@contextmanager
def dask_cli_cluster(folder: Path, n_workers: int = 2, env: dict | None = None):
    """A Dask cluster on this machine started with the ``dask`` command line, as the README says:
    a stock ``dask scheduler`` on a free port, where leukdash cannot be imported (no
    ``PYTHONPATH``, its folder outside the repository), and ``n_workers``
    ``dask worker ADDRESS --nthreads 1`` that can import it, each in its own folder under
    ``folder``, its store an empty folder of its own (no shared store).

    Yields ``(address, workers)``, the workers' ``Popen`` objects (each the leader of its own
    process group: nanny, worker and the worker's children); everything is killed on exit.
    """
    import signal
    import socket
    import subprocess

    from leukdash.paths import REPO_ROOT

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).with_name("dask"))  # the command line the README uses

    def start(args: list[str], where: Path, extra: dict) -> subprocess.Popen:
        where.mkdir(parents=True, exist_ok=True)
        clean = {key: value for key, value in os.environ.items()
                 if not key.startswith("LEUKDASH_") and key != "PYTHONPATH"}
        with open(where / "log.txt", "wb") as log:
            return subprocess.Popen([dask, *args], cwd=where, env={**clean, **extra}, start_new_session=True,
                                    stdout=subprocess.DEVNULL, stderr=log)

    processes = [start(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                       Path(folder) / "scheduler", {})]
    try:
        for index in range(n_workers):
            where = Path(folder) / f"worker{index}"
            processes.append(start(["worker", address, "--nthreads", "1", "--no-dashboard",
                                    "--local-directory", str(where / "dask")], where,
                                   {"PYTHONPATH": str(REPO_ROOT), "LEUKDASH_ARTIFACTS": str(where / "artifacts"),
                                    **(env or {})}))
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(n_workers, timeout=180)
        yield address, processes[1:]
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
