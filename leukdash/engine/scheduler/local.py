"""Fold tasks on this machine: in this process, or in worker processes within a budget.

The tasks of all runs share one budget of cores and memory:

- cores: a CNN task counts its TensorFlow threads (``CNN_THREADS``), a classic task one core
  (its BLAS/OpenMP threads are limited to one), so CNN and classic folds share the machine
  without oversubscribing it;
- memory: a worker process that has loaded TensorFlow counts ``TF_WORKER_MB``, a classic one
  ``CLASSIC_WORKER_MB``, and a fold adds what it holds while it runs (:attr:`FoldTask.memory_mb`);
  the budget is ``LEUKDASH_MEMORY_MB`` (see :func:`memory_budget_mb`).
"""

from __future__ import annotations

import pickle
import queue

from leukdash import interrupts
from leukdash.engine.scheduler.child import ChildProcess
from leukdash.engine.scheduler.pool import Pool
from leukdash.engine.ordering import order
from leukdash.engine import machine
from leukdash.engine.machine import machine_cores
from leukdash.engine.scheduler.capacity import folds_at_once, memory_budget_mb, worker_mb
from leukdash.engine.scheduler.task import FoldTask, compute_fold, task_cores

POLL_SECONDS = 0.2


class InProcessPool(Pool):
    """Tasks one after another in this process (``n_jobs=1``): progress reaches ``on_event`` live."""

    def run(self, tasks: list[FoldTask], inputs: dict, on_done, on_event, on_failed) -> None:
        failed = set()
        for task in order(tasks, inputs):
            interrupts.check()  # a stop swallowed where it landed (a weakref callback) ends the tasks here
            if task.run_id in failed:  # its run failed: its other folds are dropped
                continue
            try:
                outcome = compute_fold(task, inputs[task.run_id], lambda e, t=task: on_event(t.run_id, e))
            except Exception as error:  # a KeyboardInterrupt is no task's: it stops all, as ever
                on_failed(task, error)
                failed.add(task.run_id)
            else:
                on_done(task, outcome)


class LocalPool(Pool):
    """Worker processes on this machine (:class:`ChildProcess`), within a budget of cores and memory.

    CNN tasks run in processes that hold TensorFlow (``CNN_THREADS`` threads each), classic
    tasks in processes that never import it; the TensorFlow processes are ended as soon as no
    CNN task is left, so their memory goes back to the classic ones.
    """

    def __init__(self, cores: int | None = None, memory_mb: int | None = None):
        self.cores = cores or machine_cores()
        self.memory_mb = memory_mb or memory_budget_mb()
        self._inbox: queue.Queue = queue.Queue()
        self._idle: list[ChildProcess] = []

    def start_workers(self, cnn: bool, tasks: int) -> None:
        """Start the workers that up to ``tasks`` tasks of a kind would run in side by side (within
        the cores and the workers' memory), so that they import TensorFlow or scikit-learn (seconds)
        while this process still loads the images. :meth:`run` gives them tasks of their kind and
        ends those it has none for; :meth:`close` ends them if ``run`` is never reached."""
        for _ in range(min(tasks, folds_at_once(cnn, self.cores, self.memory_mb))):
            try:
                self._idle.append(ChildProcess(self._inbox, cnn=cnn))
            except OSError:  # no process to spare now (memory, a process limit): run() starts
                break  # its workers as before, and says why when it cannot

    def close(self) -> None:
        for child in self._idle:
            child.kill()
        self._idle.clear()

    def run(self, tasks: list[FoldTask], inputs: dict, on_done, on_event, on_failed) -> None:
        inbox, idle = self._inbox, self._idle
        pending, running = order(tasks, inputs), {}  # running: child -> its task
        self._end_unneeded(pending)
        try:
            while pending or running:
                interrupts.check()  # a stop swallowed where it landed (queue.get's lock, a __del__) ends the wait here
                for task in list(pending):
                    if self.fits(task, list(running.values()), _live(running, idle)):
                        child = _take(idle, task.is_cnn) or ChildProcess(inbox, cnn=task.is_cnn)
                        child.send(pickle.dumps(task), pickle.dumps(inputs[task.run_id], pickle.HIGHEST_PROTOCOL))
                        running[child] = task
                        pending.remove(task)
                try:
                    child, kind, value = inbox.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if child not in running:  # an idle child ended: nothing of ours was in it
                    if child in idle:
                        idle.remove(child)
                    continue
                if kind == "event":
                    on_event(running[child].run_id, value)
                    continue
                task = running.pop(child)
                if kind not in ("done", "error"):
                    raise worker_died(task)
                idle.append(child)
                if kind == "error":  # the fold's own error, its worker whole
                    on_failed(task, value)
                    pending = [t for t in pending if t.run_id != task.run_id]  # its run failed: its other folds go
                else:
                    on_done(task, value)
                if not any(t.is_cnn for t in [*pending, *running.values()]):
                    for child in [c for c in idle if c.cnn]:  # TensorFlow's memory goes back
                        idle.remove(child)
                        child.kill()
        finally:
            for child in running:
                child.kill()
            self.close()

    def _end_unneeded(self, pending: list[FoldTask]) -> None:
        """End the workers started ahead beyond those the first tasks to start take: started
        before the tasks were known, they did not count the memory of the folds."""
        first: list[FoldTask] = []
        for task in pending:
            if self.fits(task, first, {cnn: sum(t.is_cnn == cnn for t in first) for cnn in (True, False)}):
                first.append(task)
        for cnn in (True, False):
            for child in [c for c in self._idle if c.cnn == cnn][sum(t.is_cnn == cnn for t in first):]:
                self._idle.remove(child)
                child.kill()

    def fits(self, task: FoldTask, running: list[FoldTask], live: dict[bool, int]) -> bool:
        """Whether ``task`` may start beside ``running``, with ``live`` worker processes of each
        kind (``{is_cnn: count}``), idle ones included."""
        if not running:
            return True  # a task larger than the whole budget still runs, alone
        busy = sum(task_cores(t) for t in running)
        if busy + task_cores(task) > self.cores:
            return False
        idle = live.get(task.is_cnn, 0) - sum(t.is_cnn == task.is_cnn for t in running)
        extra = 0 if idle > 0 else worker_mb(task.is_cnn)
        folds = sum(t.memory_mb for t in [*running, task])
        return worker_memory_mb(live) + extra + folds <= self.memory_mb


def worker_memory_mb(live: dict[bool, int]) -> int:
    return sum(count * worker_mb(cnn) for cnn, count in live.items())


def worker_died(task: FoldTask):
    from leukdash.errors import RunError

    message = (f"the worker computing fold {task.fold + 1} of {task.run_id} died (out of memory, or killed): "
               "finished folds are kept; run the same command again to resume")
    if machine.address_space_limit_mb() is not None:  # then running again would die the same way
        message += f"; if memory ran out, {machine.memory_limit_hint()}"
    return RunError(message)


def _live(running: dict, idle: list) -> dict[bool, int]:
    children = [*running, *idle]
    return {cnn: sum(child.cnn == cnn for child in children) for cnn in (True, False)}


def _take(idle: list, cnn: bool):
    """An idle child of the kind wanted, taken out of ``idle``; None if there is none."""
    for child in idle:
        if child.cnn == cnn:
            idle.remove(child)
            return child
    return None
