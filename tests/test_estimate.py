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
    assert result == {"fold_seconds": 0.0, "seconds": 0.0, "low": 0.0, "high": 0.0, "estimated": 0,
                      "calibrated": 0, "unknown": 1}


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
