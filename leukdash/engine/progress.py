"""Progress of a run as JSON lines appended to ``progress.jsonl`` in its folder.

A running process appends events; the CLI and the dashboard read the file and reduce the
events to one state with :func:`latest_state`. Events (``fold`` is the 0-based fold index as
in the store, ``epoch`` the number of epochs the fold has completed)::

    {"event": "loading", "message": "..."}   (decoding and resizing, before "start")
    {"event": "start", "folds": F, "epochs": E or None, "done_folds": [folds already stored]}
    {"event": "fold_start", "fold": i}
    {"event": "epoch", "fold": i, "epoch": e, "epochs": E, "metrics": {...}}
    {"event": "fold_done", "fold": i, "metrics": {...}}
    {"event": "message", "message": "..."}
    {"event": "done"} | {"event": "failed", "message": "..."} | {"event": "cancelled"}
    (a run refused for its own settings: {"event": "failed", "refused": true, "message": "..."})

Each event gets a ``time`` (epoch seconds). A resumed run appends a new ``start``; only the
events after the last ``start`` describe the current attempt.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from pathlib import Path

from leukdash.atomic import explain
from leukdash.engine.store import parse_json, read_json_lines

TERMINAL = ("done", "failed", "cancelled")


def append_event(path: Path, event: dict) -> None:
    """Append one event as a JSON line, stamped with ``time`` unless it carries one."""
    line = json.dumps(_finite({"time": time.time(), **event}), default=str) + "\n"
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One write() on an O_APPEND descriptor: concurrent writers never interleave within a line.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError as error:  # a full disk or a read-only store: one line that names the file
        raise explain(error, path) or error from None


def _finite(value):
    """``value`` with each number that is not finite (a diverged CNN's loss) as None: JSON has no
    NaN or Infinity, and a line that holds them is not JSON to other readers (a browser, jq)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def read_events(path: Path) -> list[dict]:
    """All events in the file, in order (:func:`~leukdash.engine.store.read_json_lines`: a missing
    file gives ``[]``, a line torn while a writer is appending is skipped)."""
    return read_json_lines(path)


@contextlib.contextmanager
def forward_events(path: Path, on_event, interval: float = 0.2):
    """While the block runs, pass every event appended to ``path`` (by any process) to ``on_event``.

    Folds computed in worker processes report only to the progress file; this relays their
    events to an in-process listener such as the CLI's progress bar. Only events appended after
    entry are relayed, each once, in file order, from a background thread; the last ones are
    relayed before the block exits.
    """
    if on_event is None:
        yield
        return
    path = Path(path)
    offset = path.stat().st_size if path.exists() else 0
    stop = threading.Event()

    def relay() -> None:
        nonlocal offset
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            return
        complete = data.rfind(b"\n") + 1  # a line still being written waits for the next pass
        offset += complete
        for line in data[:complete].splitlines():
            try:
                event = parse_json(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                on_event(event)

    def loop() -> None:
        while not stop.wait(interval):
            relay()

    thread = threading.Thread(target=loop, name="leukdash-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        relay()


def past_loading(state: dict) -> bool:
    """Whether a run's current attempt (its :func:`latest_state`) has loaded its images and started
    its workers: its ``start`` event, written once they are, begins it. A job just started, still
    decoding, or after an attempt that ended has not, so it has a start-up still to pay."""
    return state["status"] == "running" and state["phase"] == "folds"


def latest_state(events: list[dict], now: float | None = None) -> dict:
    """Reduce events to the current state of the run.

    Returns ``{"status": "running"|"done"|"failed"|"cancelled"|"none", "phase", "fold", "folds",
    "folds_done", "epoch", "epochs", "metrics", "fraction", "elapsed", "eta_seconds",
    "message", "updated", "in_flight"}``. ``phase`` is ``"loading"`` while a new attempt
    decodes its images (a ``loading`` event is the last one), else ``"folds"``. ``in_flight``
    maps each fold of a running attempt that started and is not done to ``{"epoch", "epochs",
    "fraction"}``, so folds computed at once can each have their own bar. ``eta_seconds``
    extrapolates the pace of the epochs (or folds, for models without epochs) computed so far
    in this attempt; it is ``None`` until one has finished.
    """
    now = time.time() if now is None else now
    starts = [i for i, event in enumerate(events) if event.get("event") == "start"]
    current = events[starts[-1]:] if starts else events
    state = {
        "status": "none", "fold": None, "folds": None, "folds_done": 0, "epoch": None,
        "epochs": None, "metrics": {}, "fraction": 0.0, "elapsed": 0.0, "eta_seconds": None,
        "message": "", "updated": None, "phase": "folds", "in_flight": {},
    }
    if events and events[-1].get("event") == "loading":
        state.update(status="running", phase="loading", message=str(events[-1].get("message") or ""),
                     updated=_time(events[-1], now))
        return state
    if not current:
        return state

    # The time taken counts the decoding just before the attempt's start (a minute, for thousands of images).
    begin = starts[-1] if starts else 0
    if begin and events[begin - 1].get("event") == "loading":
        begin -= 1
    started = _time(events[begin], now)
    work_started = None  # first fold_start: data loading is not part of the pace
    done_before: set[int] = set()
    done_now: set[int] = set()
    epochs_in_fold: dict[int, int] = {}
    state["status"] = "running"
    for event in current:
        kind = event.get("event")
        if kind == "start":
            state["folds"] = event.get("folds")
            state["epochs"] = event.get("epochs")
            done = event.get("done_folds")  # a run's: the folds found done; a sweep's: how many
            done_before = {f for f in done if isinstance(f, int)} if isinstance(done, list) else set()
        elif kind == "fold_start":
            state["fold"], state["epoch"] = event.get("fold"), 0 if state["epochs"] else None
            if work_started is None:
                work_started = _time(event, now)
        elif kind == "epoch":
            state["fold"], state["epoch"] = event.get("fold"), event.get("epoch")
            state["epochs"] = event.get("epochs", state["epochs"])
            epochs_in_fold[event.get("fold")] = event.get("epoch") or 0
        elif kind == "fold_done":
            state["fold"] = event.get("fold")
            done_now.add(event.get("fold"))
        elif kind in TERMINAL:
            state["status"] = kind
        if isinstance(event.get("metrics"), dict) and event["metrics"]:
            state["metrics"] = event["metrics"]
        if event.get("message"):
            state["message"] = str(event["message"])
        state["updated"] = _time(event, now)

    folds, epochs = state["folds"], state["epochs"]
    started_folds = {e.get("fold") for e in current if e.get("event") in ("fold_start", "epoch")}
    in_flight = started_folds - done_now - done_before if state["status"] == "running" else set()
    for fold in sorted(f for f in in_flight if isinstance(f, int)):
        epoch = epochs_in_fold.get(fold, 0)
        state["in_flight"][fold] = {"epoch": epoch, "epochs": epochs,
                                    "fraction": min(1.0, epoch / epochs) if epochs else 0.0}
    done_now -= done_before
    state["folds_done"] = len(done_before | done_now)
    running = state["status"] == "running"
    state["elapsed"] = max(0.0, (now if running else state["updated"]) - started)

    # Work is counted in epochs (one unit per fold for models without epochs).
    unit = epochs if isinstance(epochs, int) and epochs > 0 else 1
    done_units = sum(
        unit if fold in done_now else min(epochs_in_fold[fold], unit)
        for fold in (set(epochs_in_fold) | done_now) - done_before
    )
    if isinstance(folds, int) and folds > 0:
        state["fraction"] = min(1.0, (len(done_before) * unit + done_units) / (folds * unit))
        remaining = max(0, (folds - len(done_before)) * unit - done_units)
        if state["status"] == "done":
            state["fraction"], state["eta_seconds"] = 1.0, 0.0
        elif running and done_units:
            pace = (state["updated"] - (work_started if work_started is not None else started)) / done_units
            # Count down between events instead of freezing until the next one; a clock set back since the
            # last event (an NTP step, a restored VM) counts as no time, not as time to add.
            state["eta_seconds"] = max(0.0, pace * remaining - max(0.0, now - state["updated"]))
    return state


def format_progress_line(state: dict, width: int = 20) -> str:
    """One line for a terminal, e.g. ``fold 2/5 epoch 13/25 [#####.....] val_acc 0.83  ~1m20s left``; a run
    done gives its mean: ``done 5/5 folds [##########] mean val_acc 0.79  in 2m10s``."""
    if state.get("phase") == "loading":  # before the folds: no bar yet, what the run does
        return f"{state.get('message') or 'loading the images'}…"
    parts = []
    folds, fold = state.get("folds"), state.get("fold")
    if state.get("status") == "done":
        parts.append(f"done {state.get('folds_done', 0)}/{folds or '?'} folds")
    elif fold is not None:
        parts.append(f"fold {fold + 1}/{folds or '?'}")
        if state.get("epochs"):
            parts.append(f"epoch {state.get('epoch') or 0}/{state['epochs']}")
    filled = round(max(0.0, min(1.0, state.get("fraction") or 0.0)) * width)
    parts.append("[" + "#" * filled + "." * (width - filled) + "]")
    metrics = state.get("metrics") or {}
    for name, label in (("mean_val_acc", "mean val_acc"), ("val_acc", "val_acc"), ("acc", "acc")):
        if isinstance(metrics.get(name), (int, float)):
            parts.append(f"{label} {metrics[name]:.2f}")
            break
    line = " ".join(parts)
    status = state.get("status")
    if status == "running" and state.get("eta_seconds") is not None:
        line += f"  ~{format_duration(state['eta_seconds'])} left"
    elif status == "done":
        line += f"  in {format_duration(state.get('elapsed') or 0.0)}"
    elif status in ("failed", "cancelled"):
        line += f"  {status}" + (f": {state['message']}" if state.get("message") else "")
    return line


def count(n: int, noun: str) -> str:
    """``1 run``, ``2 runs``, ``0 runs``."""
    return f"{n} {noun}{'s' * (n != 1)}"


def format_duration(seconds: float) -> str:
    """``45s``, ``1m20s``, ``2h05m``; ``<1s`` for a positive time that rounds to none.

    A negative time (a difference of wall-clock times across a clock set back) reads ``0s``.
    """
    seconds = max(0.0, seconds)
    if seconds > 0 and int(round(seconds)) == 0:
        return "<1s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_span(low: float, high: float) -> str:
    """A range of durations, ``1m20s–3m00s``; one figure when both ends read alike."""
    low_text, high_text = format_duration(low), format_duration(high)
    return low_text if low_text == high_text else f"{low_text}–{high_text}"


def _time(event: dict, default: float) -> float:
    value = event.get("time")
    return float(value) if isinstance(value, (int, float)) else default
