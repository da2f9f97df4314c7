"""Progress events: appending, tolerant reading, and the state and line shown to a user."""

import pytest

from leukdash.engine.progress import (append_event, format_duration, format_progress_line, format_span, latest_state,
                                      past_loading, read_events)


def _cnn_events(t0=1000.0):
    """Two folds of 4 epochs; loading takes 10 s, each epoch then 10 s."""
    return [
        {"event": "start", "folds": 2, "epochs": 4, "done_folds": [], "time": t0},
        {"event": "fold_start", "fold": 0, "time": t0 + 10},
        {"event": "epoch", "fold": 0, "epoch": 1, "epochs": 4, "metrics": {"val_acc": 0.5}, "time": t0 + 20},
        {"event": "epoch", "fold": 0, "epoch": 2, "epochs": 4, "metrics": {"val_acc": 0.75}, "time": t0 + 30},
    ]


def test_append_and_read_keep_order_and_stamp_time(tmp_path):
    path = tmp_path / "run" / "progress.jsonl"
    append_event(path, {"event": "start", "folds": 5})
    append_event(path, {"event": "fold_start", "fold": 0})
    events = read_events(path)
    assert [e["event"] for e in events] == ["start", "fold_start"]
    assert events[0]["time"] <= events[1]["time"]
    assert path.read_text().count("\n") == 2


def test_numbers_that_are_not_finite_are_written_as_null(tmp_path):
    import json

    path = tmp_path / "progress.jsonl"
    append_event(path, {"event": "epoch", "metrics": {"loss": float("nan"), "val_loss": float("inf"), "acc": 0.5},
                        "history": [float("-inf"), 1.0]})
    strict = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert strict["metrics"] == {"loss": None, "val_loss": None, "acc": 0.5} and strict["history"] == [None, 1.0]


def test_read_events_tolerates_torn_last_line_and_missing_file(tmp_path):
    path = tmp_path / "progress.jsonl"
    assert read_events(path) == []
    append_event(path, {"event": "start", "folds": 2})
    append_event(path, {"event": "fold_start", "fold": 0})
    with open(path, "a") as handle:
        handle.write('{"event": "epoch", "fo')
    assert [e["event"] for e in read_events(path)] == ["start", "fold_start"]


def test_latest_state_extrapolates_epoch_pace():
    state = latest_state(_cnn_events(), now=1030.0)
    assert state["status"] == "running"
    assert (state["fold"], state["epoch"], state["epochs"], state["folds"]) == (0, 2, 4, 2)
    assert state["metrics"] == {"val_acc": 0.75}
    assert state["fraction"] == pytest.approx(2 / 8)
    # 2 epochs in 20 s after loading -> 10 s each, 6 left.
    assert state["eta_seconds"] == pytest.approx(60.0)
    assert state["elapsed"] == pytest.approx(30.0)
    # Between events the estimate counts down.
    assert latest_state(_cnn_events(), now=1035.0)["eta_seconds"] == pytest.approx(55.0)


def test_a_clock_set_back_since_the_last_event_does_not_add_to_the_time_left():
    """With the wall clock stepped back an hour after the last event, the time since it was negative
    and the estimate grew by the step (3660 s left instead of 60)."""
    assert latest_state(_cnn_events(), now=1030.0 - 3600)["eta_seconds"] == pytest.approx(60.0)


def test_latest_state_counts_only_the_folds_left_after_a_resume():
    events = [
        {"event": "start", "folds": 2, "epochs": 4, "time": 0.0},
        {"event": "fold_start", "fold": 0, "time": 1.0},
        {"event": "fold_done", "fold": 0, "time": 2.0},
        {"event": "start", "folds": 3, "epochs": 4, "done_folds": [0], "time": 500.0},
        {"event": "fold_start", "fold": 1, "time": 500.0},
        {"event": "epoch", "fold": 1, "epoch": 4, "epochs": 4, "time": 540.0},
        {"event": "fold_done", "fold": 1, "metrics": {"val_acc": 0.9}, "time": 540.0},
    ]
    state = latest_state(events, now=540.0)
    assert state["folds_done"] == 2 and state["folds"] == 3
    assert state["fraction"] == pytest.approx(8 / 12)
    assert state["eta_seconds"] == pytest.approx(40.0)  # one fold of 4 epochs at 10 s each


def test_latest_state_without_epochs_uses_fold_pace():
    events = [
        {"event": "start", "folds": 5, "epochs": None, "time": 0.0},
        {"event": "fold_start", "fold": 0, "time": 0.0},
        {"event": "fold_done", "fold": 0, "time": 3.0},
        {"event": "fold_start", "fold": 1, "time": 3.0},
        {"event": "fold_done", "fold": 1, "time": 6.0},
    ]
    state = latest_state(events, now=6.0)
    assert state["folds_done"] == 2 and state["epoch"] is None
    assert state["eta_seconds"] == pytest.approx(9.0)
    assert format_progress_line(state).startswith("fold 2/5 [")


@pytest.mark.parametrize("ending", ["done", "failed", "cancelled"])
def test_latest_state_terminal_events(ending):
    events = _cnn_events() + [{"event": ending, "message": "boom" if ending == "failed" else "", "time": 1040.0}]
    state = latest_state(events, now=5000.0)
    assert state["status"] == ending
    assert state["elapsed"] == pytest.approx(40.0)  # stops at the last event, not now
    if ending == "done":
        assert state["eta_seconds"] == 0.0 and state["fraction"] == 1.0
    else:
        assert state["eta_seconds"] is None
    if ending == "failed":
        assert state["message"] == "boom"
        assert format_progress_line(state).endswith("failed: boom")


def test_latest_state_of_no_events():
    state = latest_state([])
    assert state["status"] == "none" and state["eta_seconds"] is None and state["fraction"] == 0.0


def test_format_progress_line():
    line = format_progress_line(latest_state(_cnn_events(), now=1030.0), width=8)
    assert line == "fold 1/2 epoch 2/4 [##......] val_acc 0.75  ~1m00s left"


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (0.2, "<1s"), (0.5, "<1s"), (44.6, "45s"), (80, "1m20s"),
                                           (7500, "2h05m"), (-0.4, "0s"), (-100, "0s")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("low, high, text", [(0.1, 0.3, "<1s"), (0.2, 2, "<1s–2s"), (80, 180, "1m20s–3m00s"),
                                             (44.6, 45.2, "45s")])
def test_format_span_says_one_figure_when_both_ends_read_alike(low, high, text):
    assert format_span(low, high) == text


def test_forward_events_relays_each_new_event_once_in_order(tmp_path):
    import subprocess
    import sys

    from leukdash.engine.progress import forward_events

    path = tmp_path / "progress.jsonl"
    append_event(path, {"event": "start", "folds": 2})  # before entry: not relayed
    seen = []
    # Another process appends, as a fold worker does; the relay must pick its lines up.
    writer = ("import sys; from leukdash.engine.progress import append_event\n"
              "for fold in range(3): append_event(sys.argv[1], {'event': 'fold_done', 'fold': fold})")
    with forward_events(path, seen.append, interval=0.05):
        subprocess.run([sys.executable, "-c", writer, str(path)], check=True, timeout=60)
        with open(path, "a") as handle:
            handle.write('{"event": "epoch", "fo')  # torn: a writer is mid-line at exit
    assert [(e["event"], e["fold"]) for e in seen] == [("fold_done", 0), ("fold_done", 1), ("fold_done", 2)]


def test_forward_events_without_a_listener_is_a_no_op(tmp_path):
    from leukdash.engine.progress import forward_events

    with forward_events(tmp_path / "missing.jsonl", None):
        pass
    assert not (tmp_path / "missing.jsonl").exists()


def test_two_folds_in_flight_each_have_their_own_state_and_loading_is_a_phase():
    from leukdash.engine.progress import latest_state

    assert latest_state([{"event": "loading", "message": "loading and resizing the images", "time": 1.0}],
                        now=2.0)["phase"] == "loading"
    events = [{"event": "loading", "time": 1.0},
              {"event": "start", "folds": 5, "epochs": 4, "done_folds": [], "time": 2.0},
              {"event": "fold_start", "fold": 0, "time": 3.0}, {"event": "fold_start", "fold": 1, "time": 3.0},
              {"event": "epoch", "fold": 1, "epoch": 3, "epochs": 4, "time": 4.0},
              {"event": "epoch", "fold": 0, "epoch": 1, "epochs": 4, "time": 5.0}]
    state = latest_state(events, now=6.0)
    assert state["phase"] == "folds"
    assert state["in_flight"] == {0: {"epoch": 1, "epochs": 4, "fraction": 0.25},
                                  1: {"epoch": 3, "epochs": 4, "fraction": 0.75}}
    events += [{"event": "fold_done", "fold": 1, "time": 6.0}, {"event": "fold_start", "fold": 2, "time": 6.0}]
    assert sorted(latest_state(events, now=7.0)["in_flight"]) == [0, 2]
    assert latest_state(events + [{"event": "cancelled", "time": 8.0}], now=9.0)["in_flight"] == {}


def test_a_run_reports_its_loading_phase_before_it_starts(tiny_dataset):
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run

    events = []
    run(RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, folds=2, augment=AugmentConfig.off(),
                  augment_factor=1), n_jobs=1, on_event=events.append)
    kinds = [event["event"] for event in events]
    assert kinds[0] == "loading" and kinds.index("loading") < kinds.index("start")


def test_the_run_line_says_the_images_loading_and_counts_it_in_the_time_taken(tiny_dataset):
    """The progress line was blank while thousands of images loaded, then said "in 0s": the loading was no
    phase of it, and its events had no time. It says what loads, and the time taken starts with the loading."""
    import io

    from leukdash.cli.output import ProgressLine
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run

    stream = io.StringIO()
    stream.isatty = lambda: False
    line = ProgressLine(stream)
    run(RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, folds=2, augment=AugmentConfig.off(),
                  augment_factor=1), n_jobs=1, on_event=line.update)
    n_images = 40  # tiny_dataset: 8 of each of 5 classes
    assert stream.getvalue().splitlines()[0] == f"loading and resizing {n_images} images"
    loading, *_, done = line.events
    assert format_progress_line(latest_state([loading])) == f"loading and resizing {n_images} images…"
    assert loading["time"] < done["time"] and latest_state(line.events)["elapsed"] == done["time"] - loading["time"]


def test_a_run_is_past_its_loading_only_once_its_attempt_has_started():
    """The Experiments page's time left adds the start-up (decoding, workers) of runs that have not
    paid it: a running job still decoding, or just started after an attempt that ended, has not."""
    loading = {"event": "loading", "t": 5.0}
    started = {"event": "start", "folds": 2, "missing": [0, 1], "t": 9.0}
    ended = {"event": "cancelled", "t": 12.0}
    assert not past_loading(latest_state([]))
    assert not past_loading(latest_state([loading]))
    assert past_loading(latest_state([loading, started]))
    assert past_loading(latest_state([loading, started, {"event": "fold_start", "fold": 0, "t": 9.5}]))
    assert not past_loading(latest_state([loading, started, ended]))  # a new job, not yet decoding
    assert not past_loading(latest_state([loading, started, ended, loading]))
