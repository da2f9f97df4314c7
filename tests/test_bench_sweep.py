"""The benchmark's wall-time predictions (benchmarks/bench_sweep.py), which the closing note's
predicted ratios come from."""

import sys

from leukdash.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_sweep  # noqa: E402


def test_a_sweep_fills_the_cores_a_run_leaves_idle_at_its_end():
    # Five equal folds on two cores: a run alone takes three rounds, its last one on one core.
    folds = {run: [{"seconds": 10.0}] * 5 for run in ("cnn-a", "cnn-b")}
    two = bench_sweep.predict_modes(folds, 2)
    assert (two["serial"], two["sweep"]) == (60.0, 50.0)
    assert bench_sweep.predict_modes(folds, 5)["ratio"] == 1.0  # nothing left idle: no gain
    assert bench_sweep.predict_modes(folds, 10)["ratio"] == 0.5  # both runs at once


def test_durations_are_left_out_of_the_identity_check():
    a = {"run": [{"fold": 0, "val_acc": 0.9, "seconds": 3.0}]}
    b = {"run": [{"fold": 0, "val_acc": 0.9, "seconds": 5.0}]}
    assert bench_sweep.without_times(a) == bench_sweep.without_times(b)
    assert bench_sweep.without_times(a) != bench_sweep.without_times({"run": [{"fold": 0, "val_acc": 0.8}]})
