"""How long stored runs took together, and how long independent fold tasks take on more workers.

:func:`progress_span` reads the wall time of a set of runs from the store (the first and last
event of their progress logs), so it does not depend on which call later reads the runs back;
:func:`predict_walls` packs measured fold times onto ``workers`` equal workers.
"""

from __future__ import annotations

from pathlib import Path

from leukdash.engine.progress import read_events

WORKER_COUNTS = (1, 2, 4, 8, 16, 32)  # the cluster sizes the README's scaling table predicts


def progress_span(paths: list[Path]) -> dict | None:
    """From the first to the last event of these progress logs (epoch seconds), or None when none
    holds a timed event.

    A log's first event is its run's ``loading`` (decoding the images), its last the ``done``
    that follows the summary; a run answered from the store later adds no event. A run with more
    than one ``start`` was resumed: the span then includes the pause (``runs_resumed``).
    """
    first = last = None
    timed = resumed = 0
    for path in paths:
        events = read_events(path)
        times = [e["time"] for e in events if isinstance(e.get("time"), (int, float))]
        if not times:
            continue
        timed += 1
        resumed += sum(e.get("event") == "start" for e in events) > 1
        first = min(times) if first is None else min(first, min(times))
        last = max(times) if last is None else max(last, max(times))
    if first is None:
        return None
    return {"first": first, "last": last, "wall_seconds": last - first, "runs_timed": timed,
            "runs_resumed": resumed}


def predict_walls(task_seconds: list[float], workers: int, *, per_worker_speed: float = 1.0) -> dict:
    """Predicted wall time of independent tasks (fold times, seconds) on ``workers`` equal workers.

    Longest task first onto the least loaded worker (the scheduler's CNN-first order is close
    to it): an upper bound within 4/3 of the optimum. The wall time is at least the longest
    task (the critical path: a fold cannot be split) and at least the total over the workers.
    Start-up and sending the inputs are left out.
    """
    loads = [0.0] * workers
    for seconds in sorted(task_seconds, reverse=True):
        loads[loads.index(min(loads))] += seconds / per_worker_speed
    total = sum(task_seconds) / per_worker_speed
    return {"workers": workers, "wall": max(loads), "critical_path": max(task_seconds) / per_worker_speed,
            "lower_bound": max(max(task_seconds) / per_worker_speed, total / workers), "total": total}
