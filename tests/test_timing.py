"""Run times from the store (progress logs) and predicted walls on more workers
(leukdash.engine.timing), which the README's generated blocks are made from."""

import json

import pytest

from leukdash.engine.timing import predict_walls, progress_span


def test_predicted_wall_lies_between_the_lower_bound_and_four_thirds_of_it():
    tasks = [7.0, 5.0, 4.0, 4.0, 3.0, 3.0, 2.0, 1.5, 1.0]
    for workers in (1, 2, 3, 4, 16):
        row = predict_walls(tasks, workers)
        assert row["lower_bound"] <= row["wall"] <= 4 / 3 * row["lower_bound"] + 1e-9
    assert predict_walls(tasks, 1)["wall"] == pytest.approx(sum(tasks))
    assert predict_walls(tasks, 16)["wall"] == max(tasks)  # the critical path


def _log(path, *events):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + '{"time": 1e12, "event": "to')  # a torn last line


def test_the_span_runs_from_the_first_to_the_last_event_of_every_log(tmp_path):
    a, b, empty = tmp_path / "a" / "progress.jsonl", tmp_path / "b" / "progress.jsonl", tmp_path / "c.jsonl"
    _log(a, {"time": 100.0, "event": "loading"}, {"time": 101.0, "event": "start"}, {"time": 400.0, "event": "done"})
    _log(b, {"time": 150.0, "event": "loading"}, {"time": 151.0, "event": "start"}, {"time": 900.5, "event": "done"})
    empty.write_text("")
    span = progress_span([a, b, empty, tmp_path / "missing.jsonl"])
    assert span == {"first": 100.0, "last": 900.5, "wall_seconds": 800.5, "runs_timed": 2, "runs_resumed": 0}
    assert progress_span([empty, tmp_path / "missing.jsonl"]) is None


def test_a_resumed_run_is_counted(tmp_path):
    log = tmp_path / "progress.jsonl"
    _log(log, {"time": 1.0, "event": "start"}, {"time": 2.0, "event": "failed"}, {"time": 50.0, "event": "start"},
         {"time": 60.0, "event": "done"})
    assert progress_span([log])["runs_resumed"] == 1
