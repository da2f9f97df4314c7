"""How long stored runs took together, and how long independent fold tasks take on more workers.

:func:`progress_span` reads the wall time of a set of runs from the store (the first and last
event of their progress logs), so it does not depend on which call later reads the runs back;
:func:`predict_walls` packs measured fold times onto ``workers`` equal workers; :func:`start_up` reads
what a run pays before its first fold (loading its images, starting worker processes).
"""

from __future__ import annotations

from pathlib import Path
from statistics import median

from leukdash.config import is_number
from leukdash.engine.progress import read_events

WORKER_COUNTS = (1, 2, 4, 8, 16, 32)  # the cluster sizes the README's scaling table predicts
# The newest runs whose fixed costs an estimate reads: the machine as it is now, and a page's rerun reads few files.
START_UP_RUNS = 20


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


def start_up(paths: list[Path]) -> dict:
    """A run's fixed costs measured in these progress logs: ``load_per_image`` (seconds to load and
    resize an image, the ``start`` events' ``load_seconds`` over their ``images``) and ``worker``
    (``{"cnn": s, "classic": s}``: from a worker process's launch to its being ready for a fold, the
    ``worker_seconds`` of its first event), each the median of what the logs hold; a figure no log
    holds (logs written before they were recorded, folds on a Dask cluster's running workers) is left out,
    as is a worker's negative time (the clock set back while it started).
    """
    loads, workers = [], {"cnn": [], "classic": []}
    for path in paths:
        for event in read_events(path):
            seconds, images = event.get("load_seconds"), event.get("images")
            if event.get("event") == "start" and is_number(seconds) and is_number(images) and images > 0:
                loads.append(seconds / images)
            # from a launch to a fold in another process: wall-clock times, which a clock set back makes negative
            if is_number(event.get("worker_seconds")) and event["worker_seconds"] >= 0:
                workers["cnn" if event.get("worker_cnn") else "classic"].append(event["worker_seconds"])
    found = {"worker": {kind: median(values) for kind, values in workers.items() if values}}
    return {**found, "load_per_image": median(loads)} if loads else found


def stored_start_up(entries: list[dict]) -> dict:
    """:func:`start_up` of the newest ``START_UP_RUNS`` of ``entries`` (``RunStore.list_runs()``, newest first)."""
    from leukdash.engine.store import RunStore

    store = RunStore()
    return start_up([store.progress_path(entry["run_id"]) for entry in entries[:START_UP_RUNS]])
