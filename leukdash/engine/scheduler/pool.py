"""What the runner asks of a pool besides ``run``, whichever pool it is (:mod:`.local`, :mod:`.cluster`)."""

from __future__ import annotations


class Pool:
    """A pool computes fold tasks with ``run(tasks, inputs, on_done, on_event, on_failed)``: each
    task's outcome goes to ``on_done(task, outcome)``, the error its fold raised to
    ``on_failed(task, error)``, which raises what stops every task; where it returns, the pool drops
    the other tasks of that task's run. Before the tasks are known it may start workers
    (:meth:`start_workers`), and it ends those it started but did not use (:meth:`close`); by
    default there is nothing to start."""

    def start_workers(self, cnn: bool, tasks: int) -> None:
        """Start workers ahead of at most ``tasks`` tasks of a kind (CNN or classic folds)."""

    def close(self) -> None:
        """End the workers started ahead that no task used."""
