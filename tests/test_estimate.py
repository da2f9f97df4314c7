"""Time estimates of planned runs from the fold times of finished runs."""

import pytest

from leukdash.config import AugmentConfig, RunConfig
from leukdash.engine.estimate import estimate, fold_work


def entry(config: RunConfig, n_used: int, seconds: float) -> dict:
    return {"run_id": "x", "meta": {"config": config.to_dict(), "dataset": {"n_used": n_used}},
            "summary": {"seconds": {"mean": seconds}}, "status": "complete"}


def planned(config: RunConfig, n_images: int, missing: int) -> dict:
    return {"config": config.to_dict(), "n_images": n_images, "missing_folds": missing}


CNN = RunConfig(model="cnn", epochs=10, image_size=32, augment_factor=8)


def test_fold_work_grows_with_epochs_pixels_images_and_augmentation():
    base = fold_work(CNN.to_dict(), 100)
    assert fold_work(CNN.with_changes(epochs=20).to_dict(), 100) == pytest.approx(2 * base)
    assert fold_work(CNN.with_changes(image_size=64).to_dict(), 100) == pytest.approx(4 * base)
    assert fold_work(CNN.to_dict(), 200) == pytest.approx(2 * base)
    off = CNN.with_changes(augment=AugmentConfig.off()).to_dict()
    assert fold_work(off, 100) == pytest.approx(base / 8)
    # A classic model has no epochs: its work ignores them.
    svm = RunConfig(model="svm", epochs=10, image_size=32, augment_factor=8).to_dict()
    assert fold_work(svm, 100) == pytest.approx(base / 10)


def test_estimate_scales_the_stored_fold_times_of_similar_runs():
    entries = [entry(CNN, 100, 10.0), entry(CNN, 100, 30.0), entry(CNN, 100, 20.0),
               entry(RunConfig(model="nb", image_size=32), 100, 1.0)]
    plan = [planned(CNN.with_changes(epochs=20), 100, 5),      # median 20 s x 2 per fold, 5 folds
            planned(CNN, 100, 0),                              # already stored: no time
            planned(RunConfig(model="nb", image_size=32), 100, 2),
            planned(RunConfig(model="svm"), 100, 5)]           # no finished SVM run yet
    result = estimate(plan, entries, workers=2)
    assert result["fold_seconds"] == pytest.approx(200 + 2)
    assert result["seconds"] == pytest.approx(101)
    assert result["estimated"] == 2 and result["unknown"] == 1


def test_estimate_without_finished_runs_knows_nothing():
    result = estimate([planned(CNN, 100, 5)], [], workers=1)
    assert result == {"fold_seconds": 0.0, "start_up_seconds": 0.0, "seconds": 0.0, "low": 0.0, "high": 0.0,
                      "estimated": 0, "calibrated": 0, "unknown": 1}


def test_the_range_spans_the_similar_runs_and_calibration_fills_in_a_kind_without_runs():
    entries = [entry(CNN, 100, 10.0), entry(CNN, 100, 30.0)]
    svm = RunConfig(model="svm", image_size=32)
    figures = {"svm/pixels": {"overhead": 2.0, "rate": 1e-5}}
    result = estimate([planned(CNN, 100, 1), planned(svm, 100, 1)], entries, workers=1, calibrated=figures)
    svm_fold = 2.0 + 1e-5 * fold_work(svm.to_dict(), 100)
    assert result["seconds"] == pytest.approx(20 + svm_fold)
    assert result["low"] == pytest.approx(10 / 1.25 + svm_fold / 3)
    assert result["high"] == pytest.approx(30 * 1.25 + svm_fold * 3)
    assert result["estimated"] == 2 and result["calibrated"] == 1 and result["unknown"] == 0


def test_calibration_measures_a_kind_on_this_machine_once(isolated_artifacts):
    from leukdash.engine.calibrate import calibrated, calibration_path, measure

    assert calibrated() == {}
    figures = measure(["nb/pixels"])["nb/pixels"]
    assert figures["rate"] > 0 and figures["overhead"] >= 0
    assert calibrated() == {"nb/pixels": figures} and calibration_path().parent == isolated_artifacts
    assert not (isolated_artifacts / "runs").exists()  # its small runs went to a throwaway store
    result = estimate([planned(RunConfig(model="nb", image_size=64), 260, 5)], [], workers=1,
                      calibrated=calibrated())
    assert result["estimated"] == result["calibrated"] == 1 and 0 < result["low"] < result["seconds"] < result["high"]


def test_a_measurement_stopped_by_sigterm_removes_its_scratch_store_and_its_marker(isolated_artifacts, tmp_path):
    """The dashboard's measurement runs in the background: a stop (SIGTERM) must not leave its throwaway store
    (a generated set, its cache: about 12 MB) in the temporary folder."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from leukdash.paths import REPO_ROOT

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    (isolated_artifacts / "calibration.running").write_text("cnn/paper")
    env = {**os.environ, "TMPDIR": str(temporary), "LEUKDASH_ARTIFACTS": str(isolated_artifacts),
           "PYTHONPATH": str(REPO_ROOT)}
    measuring = subprocess.Popen([sys.executable, "-m", "leukdash.engine.calibrate", "cnn/paper"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(temporary.glob("leukdash-calibrate-*/data")) and time.time() < deadline:
        time.sleep(0.05)
    measuring.send_signal(signal.SIGTERM)
    said = measuring.communicate(timeout=60)[1]
    assert measuring.returncode != 0 and said.strip() == "calibration stopped by SIGTERM: nothing measured is kept"
    assert sorted(os.listdir(temporary)) == [] and not (isolated_artifacts / "calibration.running").exists()


# A measurement whose SIGTERM lands in a finaliser (as in TensorFlow's weakref callbacks), where Python swallows it:
# the stop is raised again at the next safe point (interrupts.check), as the engine's computing does.
SWALLOWED_STOP = """
import signal, sys
from leukdash import interrupts
from leukdash.engine import calibrate

class Finaliser:
    def __del__(self):
        signal.raise_signal(signal.SIGTERM)

def measure(kinds):
    Finaliser()
    interrupts.check()

calibrate.measure = measure
sys.exit(calibrate.main(["nb/pixels"]))
"""


def test_a_measurement_stop_swallowed_in_a_finaliser_says_only_its_one_line(isolated_artifacts):
    """The stop that lands in a finaliser is raised again, not printed as an "Exception ignored" traceback."""
    import os
    import subprocess
    import sys

    from leukdash.paths import REPO_ROOT

    env = {**os.environ, "LEUKDASH_ARTIFACTS": str(isolated_artifacts), "PYTHONPATH": str(REPO_ROOT)}
    stopped = subprocess.run([sys.executable, "-c", SWALLOWED_STOP], env=env, capture_output=True, text=True,
                             timeout=120)
    assert stopped.returncode == 1 and stopped.stderr == "calibration stopped by SIGTERM: nothing measured is kept\n"


def test_a_measurement_marker_counts_for_ten_minutes_either_way_of_now(isolated_artifacts):
    """A marker dated ahead of the clock (the clock set back since) must not hold measuring off until that date."""
    import os
    import time

    from leukdash.engine.calibrate import measuring

    marker = isolated_artifacts / "calibration.running"
    marker.write_text("nb/pixels")
    for age, at_work in ((0, True), (300, True), (-300, True), (900, False), (-3600, False)):
        os.utime(marker, (time.time() - age, time.time() - age))
        assert measuring() is at_work, age


def test_an_estimate_adds_the_start_up_that_earlier_runs_recorded(tiny_dataset):
    """A small run's time is mostly its fixed cost (loading images, starting worker processes): a real run
    records both, and the estimate of the next adds them to the folds' time."""
    from leukdash.engine.progress import read_events
    from leukdash.engine.runner import run
    from leukdash.engine.store import RunStore
    from leukdash.engine.timing import stored_start_up

    config = RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, folds=2, augment_factor=1)
    result = run(config, n_jobs=2)  # folds in worker processes
    events = read_events(RunStore().progress_path(result["run_id"]))
    start = next(e for e in events if e["event"] == "start")
    workers = [e["worker_seconds"] for e in events if "worker_seconds" in e]
    assert start["images"] == 40 and start["load_seconds"] > 0
    assert len(workers) == 2 and all(seconds > 0 for seconds in workers)  # each worker's first event tells it
    assert not any(e.get("worker_cnn") for e in events)

    entries = RunStore().list_runs()
    figures = stored_start_up(entries)
    assert figures["load_per_image"] == pytest.approx(start["load_seconds"] / 40)
    assert figures["worker"] == {"classic": pytest.approx(sum(workers) / 2)}
    plan = [planned(config.with_changes(seed=8), 40, 2), planned(config.with_changes(seed=9), 40, 2)]
    without, with_start_up = estimate(plan, entries, workers=2), estimate(plan, entries, workers=2, start_up=figures)
    # Both runs load their images, one after the other, while the workers start side by side.
    fixed = max(2 * start["load_seconds"], sum(workers) / 2)
    assert with_start_up["start_up_seconds"] == pytest.approx(fixed)
    for key in ("seconds", "low", "high"):
        assert with_start_up[key] == pytest.approx(without[key] + fixed)


def test_start_up_is_the_median_of_the_logs_that_record_it_and_a_cnn_worker_starts_first(tmp_path):
    from leukdash.engine.progress import append_event
    from leukdash.engine.timing import start_up

    logs = [tmp_path / f"{name}.jsonl" for name in "abc"]
    append_event(logs[0], {"event": "start", "folds": 2, "load_seconds": 4.0, "images": 100})
    append_event(logs[0], {"event": "fold_start", "fold": 0, "worker_seconds": 8.0, "worker_cnn": True})
    append_event(logs[1], {"event": "start", "folds": 2, "load_seconds": 1.0, "images": 100})
    append_event(logs[1], {"event": "fold_start", "fold": 0, "worker_seconds": 2.0, "worker_cnn": False})
    append_event(logs[2], {"event": "start", "folds": 2})  # written before these were recorded: no figure
    append_event(logs[2], {"event": "fold_start", "fold": 0})
    figures = start_up(logs)
    assert figures == {"load_per_image": pytest.approx(0.025), "worker": {"cnn": 8.0, "classic": 2.0}}
    assert start_up(logs[2:]) == {"worker": {}}
    append_event(logs[2], {"event": "fold_start", "fold": 1, "worker_seconds": -3590.0, "worker_cnn": False})
    assert start_up(logs)["worker"]["classic"] == 2.0  # the clock set back an hour as a worker started: no time

    cnn, nb = planned(CNN, 100, 5), planned(RunConfig(model="nb"), 100, 5)
    assert estimate([nb], [], start_up=figures)["start_up_seconds"] == pytest.approx(2.5)  # loading outlasts
    assert estimate([cnn, nb], [], start_up=figures)["start_up_seconds"] == pytest.approx(8.0)  # TensorFlow's
    assert estimate([planned(CNN, 100, 0)], [], start_up=figures)["start_up_seconds"] == 0.0  # nothing to compute
    assert estimate([cnn], [], start_up=start_up(logs[2:]))["start_up_seconds"] == 0.0


def test_a_run_already_computing_adds_its_folds_but_not_its_start_up_again():
    """A running run has loaded its images and started its workers: only runs not yet started add start-up."""
    figures = {"load_per_image": 0.025, "worker": {"cnn": 13.0, "classic": 2.0}}
    entries = [entry(CNN, 100, 10.0)]
    running = {**planned(CNN, 100, 1), "started": True}
    alone = estimate([running], entries, workers=1, start_up=figures)
    assert alone["start_up_seconds"] == 0.0
    assert alone["seconds"] == pytest.approx(10.0)  # its last fold still counts
    # A run still to launch beside it pays its own loading and the workers' start (a classic one's).
    nb = planned(RunConfig(model="nb"), 100, 5)
    assert estimate([running, nb], entries, start_up=figures)["start_up_seconds"] == pytest.approx(2.5)


def test_a_tiny_stored_run_does_not_scale_its_fixed_cost_up_to_a_much_larger_run(tiny_dataset):
    """A tiny run's fold is mostly a fixed cost: its rate, scaled to thousands of times its work, multiplied that
    cost (an hour for a run of 20 s). A run that far from the stored ones goes by this machine's calibration."""
    from leukdash.engine.calibrate import measure
    from leukdash.engine.runner import run
    from leukdash.engine.store import RunStore

    tiny = RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, folds=2, augment_factor=1)
    run(tiny, n_jobs=1)
    entries, figures = RunStore().list_runs(), measure(["nb/pixels"])
    large = [planned(tiny.with_changes(image_size=64, augment_factor=8), 260, 2)]
    assert fold_work(large[0]["config"], 260) > 500 * fold_work(tiny.to_dict(), 40)
    by_calibration = estimate(large, [], workers=1, calibrated=figures)
    with_tiny = estimate(large, entries, workers=1, calibrated=figures)
    assert by_calibration["seconds"] / 3 <= with_tiny["seconds"] <= 3 * by_calibration["seconds"]
    assert with_tiny["calibrated"] == 1
    # A run of about its size still goes by the stored run's rate.
    alike = estimate([planned(tiny.with_changes(seed=8, image_size=24), 40, 2)], entries, workers=1, calibrated=figures)
    assert alike["estimated"] == 1 and alike["calibrated"] == 0


def test_the_folds_are_spread_over_the_workers_the_pool_runs(monkeypatch):
    """The Experiments page gave no worker count, and the folds were spread over os.cpu_count(): with the
    process confined to one CPU (taskset) or a memory budget for one worker, the pool computes one fold at
    a time, and the time shown was half the real one or less. The default is the pool's own count."""
    import os

    from leukdash.engine.scheduler.capacity import CLASSIC_WORKER_MB, folds_at_once

    plan = [planned(RunConfig(model="nb", image_size=64), 260, 4), planned(CNN, 100, 2)]
    entries = [entry(RunConfig(model="nb", image_size=64), 260, 3.0), entry(CNN, 100, 20.0)]
    one_at_a_time = estimate(plan, entries, workers=1)["seconds"]
    monkeypatch.setenv("LEUKDASH_MEMORY_MB", str(CLASSIC_WORKER_MB))
    assert folds_at_once(cnn=False) == 1 and estimate(plan, entries)["seconds"] == pytest.approx(one_at_a_time)
    monkeypatch.delenv("LEUKDASH_MEMORY_MB")
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        confined = estimate(plan, entries)["seconds"]
    finally:
        os.sched_setaffinity(0, cpus)
    assert confined == pytest.approx(one_at_a_time)
