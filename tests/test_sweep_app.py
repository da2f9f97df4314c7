"""The Experiments page as a sweep: a grid launched as one job, settings kept in the URL, the
task following the dataset, one line per problem; and the sweep view on Compare."""

import errno
import json
import re

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from leukdash.data.synthetic import CLASSES, generate_synthetic
from leukdash.engine.store import RunStore
from tests.test_app import APP, TIMEOUT, open_page, shown, wait_for_jobs


@pytest.fixture
def two_datasets(tmp_path, monkeypatch):
    """'tiny' (5 classes, 6 images each) and 'pair' (ALL and HEALTHY only), found through LEUKDASH_DATA."""
    generate_synthetic(tmp_path / "data" / "tiny", counts={c: 6 for c in CLASSES}, size=32)
    generate_synthetic(tmp_path / "data" / "pair", counts={"ALL": 6, "HEALTHY": 6}, size=32)
    monkeypatch.setenv("LEUKDASH_DATA", str(tmp_path / "data"))


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def experiments(query: dict | None = None) -> AppTest:
    """A new session (a browser reload, or a colleague opening a copied link) on Experiments."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(query or {})
    at.run()
    return open_page(at, "experiments")


# A grid of few, quick runs on the tiny dataset (16 px, 2 folds, no augmentation).
TINY_GRID = {"dataset": "tiny", "exp_sizes": "16", "exp_folds": "2", "exp_transforms": "none (original images only)"}


def launched_naive_bayes() -> tuple[AppTest, str]:
    """Experiments after launching the tiny grid's one Naive Bayes run, and that run's id."""
    at = experiments(TINY_GRID)
    at.multiselect(key="exp_models").set_value(["Naive Bayes"]).run(timeout=TIMEOUT)
    at.button(key="launch").click().run(timeout=TIMEOUT)
    (run_id,) = at.dataframe[0].value["Run id"]
    return at, run_id


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_two_values_of_two_settings_launch_four_runs_as_one_job(two_datasets):
    at = experiments(TINY_GRID)
    at.multiselect(key="exp_models").set_value(["Naive Bayes", "Decision tree"])
    at.multiselect(key="exp_features").set_value(["pixels", "features"]).run(timeout=TIMEOUT)
    assert not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Runs in the grid"] == "4" and metrics["To compute"] == "4 runs"
    assert metrics["Estimated time"] == "unknown"  # nothing finished yet to go by
    at.button(key="launch").click().run(timeout=TIMEOUT)
    assert not at.exception
    run_ids = list(at.dataframe[0].value["Run id"])
    assert len(set(run_ids)) == 4

    sweeps = wait_for_jobs()
    assert len(sweeps) == 1 and sweeps[0]["state"] == "finished", [s["log_tail"] for s in sweeps]
    assert sorted(sweeps[0]["runs"]) == sorted(run_ids)
    stored = [e["run_id"] for e in RunStore().list_runs() if e["status"] == "complete"]
    assert sorted(stored) == sorted(run_ids)

    at.run(timeout=TIMEOUT)
    assert list(at.dataframe[0].value["Status"]) == ["finished"] * 4
    assert "finished: 4 of 4 runs" in at.toast[0].value
    # A session opened after the job ended (a reload) hears of it too, once.
    reloaded = experiments({"dataset": "tiny"})
    assert ["finished: 4 of 4 runs" in t.value for t in reloaded.toast] == [True]
    assert not reloaded.run(timeout=TIMEOUT).toast
    assert at.button(key="launch").disabled
    # One more image size: the four new runs get an estimate from the four finished ones.
    at.multiselect(key="exp_sizes").set_value([16, 24]).run(timeout=TIMEOUT)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Runs in the grid"] == "8" and metrics["To compute"] == "4 runs"
    assert metrics["Estimated time"].endswith("s")

    # The sweep view on Compare: settings against accuracy, a heatmap, a run's detail.
    open_page(at, "compare")
    at.radio(key="compare_view").set_value("Sweeps").run(timeout=TIMEOUT)
    assert not at.exception
    parallel, heatmap = figures(at)[:2]
    assert parallel["data"][0]["type"] == "parcoords"
    assert [d["label"] for d in parallel["data"][0]["dimensions"]] == ["model", "feature set",
                                                                       "mean validation accuracy"]
    assert heatmap["data"][0]["type"] == "heatmap"
    assert sorted(heatmap["data"][0]["x"]) == ["Decision tree", "Naive Bayes"]
    table = at.dataframe[0].value
    assert sorted(table["Run id"]) == sorted(run_ids)
    # Through to the runs: the Runs view with exactly this sweep's runs.
    next(b for b in at.button if b.label == "Compare these runs in detail").click().run(timeout=TIMEOUT)
    assert at.radio(key="compare_view").value == "Runs"
    assert len([t for t in figures(at)[0]["data"] if t["type"] == "bar"]) == 4


def test_a_reload_with_the_same_address_shows_the_same_settings(two_datasets):
    query = {"dataset": "pair", "exp_models": ["Naive Bayes", "SVM"], "exp_sizes": ["16", "32"], "exp_folds": "3",
             "exp_seeds": "0, 1", "exp_features": "colour, texture, shape features"}
    for _ in range(2):  # the first session, then a reload (a new session) with the same address
        at = experiments(query)
        assert at.sidebar.selectbox(key="dataset").value == "pair"
        assert at.multiselect(key="exp_models").value == ["Naive Bayes", "SVM"]
        assert at.multiselect(key="exp_sizes").value == [16, 32]
        assert at.number_input(key="exp_folds").value == 3
        assert at.text_input(key="exp_seeds").value == "0, 1"
        assert at.multiselect(key="exp_features").value == ["features"]
        assert {m.label: m.value for m in at.metric}["Runs in the grid"] == "8"  # 2 models x 2 sizes x 2 seeds


def test_preprocessing_is_a_sweep_setting_kept_in_the_address(two_datasets):
    from leukdash.data.preprocess import describe_mode

    labels = [describe_mode("raw"), describe_mode("cell-keep-gray")]
    query = {"dataset": "pair", "exp_models": ["Naive Bayes"], "exp_sizes": ["16"], "exp_folds": "2",
             "exp_preprocess": labels}
    for _ in range(2):  # the first session, then a reload with the same address
        at = experiments(query)
        assert not at.error
        assert at.multiselect(key="exp_preprocess").value == ["raw", "cell-keep-gray"]
        assert {m.label: m.value for m in at.metric}["Runs in the grid"] == "2"
        table = at.dataframe[0].value
        assert sorted(table["Preprocess"]) == ["cell-keep-gray", "raw"]
        assert table["Run id"].nunique() == 2


def test_the_task_follows_the_dataset(two_datasets):
    at = experiments({"dataset": "tiny"})
    at.selectbox(key="exp_task").set_value("ALL vs HEALTHY").run(timeout=TIMEOUT)
    at.sidebar.selectbox(key="dataset").set_value("pair").run(timeout=TIMEOUT)
    assert at.selectbox(key="exp_task").value == "ALL vs HEALTHY"  # pair's only task
    at.sidebar.selectbox(key="dataset").set_value("tiny").run(timeout=TIMEOUT)
    assert at.selectbox(key="exp_task").value == "All 5 classes"  # not the pair chosen before
    assert not at.exception


def test_too_many_folds_is_one_error_and_nothing_else(two_datasets):
    at = experiments({"dataset": "tiny", "exp_sizes": ["16", "32"]})
    at.number_input(key="exp_folds").set_value(10).run(timeout=TIMEOUT)
    assert [shown(e.value) for e in at.error] == [
        "class 'ALL' of tiny has 6 image(s), fewer than the 10 folds: use 6 folds or fewer"]
    assert not any("Choose at least one model" in i.value for i in at.info)
    assert at.button(key="launch").disabled
    at.text_input(key="exp_seeds").set_value("1, x").run(timeout=TIMEOUT)
    assert [e.value for e in at.error] == ["Seeds: 'x' is not a whole number from 0 to 2147483647"]


@pytest.mark.parametrize("refusal, reason", [
    ("queue", "the job queue is full"),
    ("read-only store", "the run store is read-only"),  # an OSError of where the store lives, not a traceback
])
def test_a_launch_that_fails_says_why_in_one_line(two_datasets, monkeypatch, refusal, reason):
    from leukdash.paths import artifacts_root
    from leukdash.service import sweep_jobs
    from leukdash.errors import RunError

    def refuse(sweep, **options):
        if refusal == "queue":
            raise RunError(reason)
        raise OSError(errno.EROFS, "Read-only file system", str(artifacts_root() / "runs" / "queue"))

    monkeypatch.setattr(sweep_jobs, "start_sweep_job", refuse)
    at = experiments({**TINY_GRID, "exp_models": "Naive Bayes"})
    at.button(key="launch").click().run(timeout=TIMEOUT)
    assert not at.exception
    [message] = [e.value for e in at.error]
    assert message.startswith("Could not launch: ") and reason in message and "\n" not in message
    assert str(artifacts_root()) not in message  # no server path on the page
    assert list(at.dataframe[0].value["Status"]) == ["not run yet"]


def test_the_estimate_spreads_the_folds_over_the_workers_a_launch_gives_its_job(two_datasets, isolated_artifacts,
                                                                               monkeypatch):
    """The estimate spread the folds over this process's pool (as many as the cores and memory allow) while a
    launch caps its job at the deployment's LEUKDASH_JOB_WORKERS (`--n-jobs`): with 1, a small machine's default,
    the time shown was half the real one. It goes by the launch's count now."""
    from leukdash.engine.calibrate import calibration_path, machine
    from leukdash.engine.progress import format_duration
    from leukdash.engine.versions import versions

    # this machine's figures for naive Bayes, a fold long enough that the spread shows in whole minutes
    calibration_path().write_text(json.dumps({"machine": machine(), "versions": versions(),
                                              "kinds": {"nb/pixels": {"overhead": 600.0, "rate": 0.0}}}))
    likely = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("LEUKDASH_JOB_WORKERS", workers)
        at = experiments({"dataset": "tiny", "exp_sizes": "16", "exp_folds": "2", "exp_models": "Naive Bayes"})
        [metric] = [m for m in at.metric if m.label == "Estimated time"]
        likely[workers] = re.search(r"Most likely about ([^.]+)\.", metric.proto.help).group(1)
    # 2 folds of 10 minutes: one after the other, or side by side (nothing stored: no start-up to add)
    assert likely == {"1": format_duration(2 * 600), "2": format_duration(600)}, likely


def test_a_model_without_finished_runs_is_estimated_from_this_machine_once_measured(two_datasets, isolated_artifacts):
    import time

    at = experiments({"dataset": "tiny", "exp_sizes": "16", "exp_folds": "2", "exp_models": "Naive Bayes"})
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["To compute"] == "1 run" and metrics["Estimated time"] == "unknown"
    at.button(key="calibrate").click().run(timeout=TIMEOUT)
    measured = isolated_artifacts / "calibration.json"
    for _ in range(240):  # the measurement runs in its own process
        if measured.is_file() and not (isolated_artifacts / "calibration.running").exists():
            break
        time.sleep(0.5)
    assert "nb/pixels" in json.loads(measured.read_text())["kinds"]
    at = experiments({"dataset": "tiny", "exp_sizes": "16", "exp_folds": "2", "exp_models": "Naive Bayes"})
    estimate = {m.label: m.value for m in at.metric}["Estimated time"]  # a range, or one figure when both ends agree
    assert re.fullmatch(r"(<1s|[0-9hms]+)(–[0-9hms]+)?", estimate), estimate
    assert not [b for b in at.button if b.key == "calibrate"]


def test_a_sweep_job_killed_from_outside_says_so_and_how_to_go_on(two_datasets):
    at, run_id = launched_naive_bayes()
    (sweep,) = wait_for_jobs()
    # What a job killed before its run's summary leaves (SIGKILL, a server restart): no summary, and
    # a log that stops short; first the log it wrote, then an empty one (killed before a word).
    store = RunStore()
    (store.run_dir(run_id) / "summary.json").unlink()
    log = store.run_dir(sweep["job_id"]) / "job.log"
    expected = [line for line in log.read_text().splitlines()[-20:] if line.strip()]
    at.run(timeout=TIMEOUT)
    (expander,) = [e for e in at.expander if e.label.startswith("The last sweep job with these runs failed")]
    assert expected and [expander.code[0].value] == ["\n".join(expected)]
    assert "launching the same grid again computes only the rest" in expander.caption[0].value
    log.write_text("")
    at.run(timeout=TIMEOUT)
    (expander,) = [e for e in at.expander if e.label.startswith("The last sweep job with these runs failed")]
    assert not expander.code and "stopped from outside" in expander.markdown[0].value
    assert list(at.dataframe[0].value["Status"]) == ["failed"] and not at.button(key="launch").disabled


def test_a_setting_left_empty_is_named_by_its_fields_label(two_datasets):
    at = experiments({"dataset": "tiny", "exp_models": ["CNN (paper)", "Naive Bayes"]})
    at.multiselect(key="exp_features").set_value([])
    at.multiselect(key="exp_optimizers").set_value([])
    at.multiselect(key="exp_batches").set_value([]).run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    said = [e.value for e in at.error]
    for label in ("Classic models see", "Optimizers", "Batch sizes"):
        assert f"{label}: choose at least one." in said, said


def test_a_sweep_launched_again_after_a_cancel_is_announced_when_it_ends(two_datasets, monkeypatch):
    """The grid launched again reuses its sweep id: its end was taken for the cancelled job's, said already."""
    import time

    from leukdash.service import sweep_jobs

    now = time.time()
    status = {"job_id": "sweep-7b0a5790d172", "name": "grid", "state": "cancelled", "position": None,
              "started": now - 60, "ended": now - 50, "runs": {"nb-0123456789ab": "cancelled"}, "progress": {},
              "folds_done": 0, "folds": 2, "log_tail": "", "datasets": []}
    monkeypatch.setattr(sweep_jobs, "list_sweep_jobs", lambda store=None: [status["job_id"]])
    monkeypatch.setattr(sweep_jobs, "sweep_job_status", lambda job_id, store=None, log_lines=20: status)
    at = experiments({"dataset": "tiny"})
    assert [t.value for t in at.toast] == ["Sweep “grid” cancelled: 0 of 1 runs finished."]
    status.update(state="finished", started=now - 10, ended=now, runs={"nb-0123456789ab": "finished"})
    at.run(timeout=TIMEOUT)
    assert [t.value for t in at.toast] == ["Sweep “grid” finished: 1 of 1 runs finished."]


def test_a_grid_launched_again_on_changed_images_says_its_runs_are_new_ones(two_datasets):
    import os
    from pathlib import Path

    at, old = launched_naive_bayes()
    wait_for_jobs()
    next((Path(os.environ["LEUKDASH_DATA"]) / "tiny").glob("ALL/*.png")).unlink()
    st.cache_data.clear()
    at.run(timeout=TIMEOUT)
    at.button(key="launch").click().run(timeout=TIMEOUT)
    (new,) = at.dataframe[0].value["Run id"]
    assert [shown(w.value) for w in at.warning if "new runs" in w.value] == [
        f"1 of the sweep's 1 runs are new runs (first: {old} is now {new}): the images of tiny (or the engine "
        "version) changed since the sweep was stored; the old runs stay in the store, listed as the sweep's earlier "
        "runs by `sweeps`"]
    wait_for_jobs()


def test_a_run_given_fewer_folds_than_asked_is_shown_with_its_own_folds(tmp_path, monkeypatch):
    """Groups that allow 2 of the 5 folds asked: the caption said "over 5 folds" and the paper's 5-fold
    figure stood beside the 2-fold mean; both now go by the folds the run validated."""
    data = tmp_path / "data"
    generate_synthetic(data / "grouped", counts={"ALL": 6, "HEALTHY": 6}, size=32)
    rows = [f"{path.parent.name}/{path.name},{path.parent.name}-{i % 2}"
            for folder in ("ALL", "HEALTHY") for i, path in enumerate(sorted((data / "grouped" / folder).glob("*")))]
    (data / "grouped" / "groups.csv").write_text("\n".join(["file,group", *rows]) + "\n")
    monkeypatch.setenv("LEUKDASH_DATA", str(data))
    at = experiments({**TINY_GRID, "dataset": "grouped", "exp_folds": "5"})
    at.multiselect(key="exp_models").set_value(["Naive Bayes"]).run(timeout=TIMEOUT)
    at.button(key="launch").click().run(timeout=TIMEOUT)
    assert [s["state"] for s in wait_for_jobs()] == ["finished"]
    at.run(timeout=TIMEOUT)
    assert not at.exception
    assert any(c.value.startswith("Bars: validation accuracy, the mean over 2 folds;") for c in at.caption)
    summary = next(d for d in at.dataframe if "Paper (reported)" in d.value.columns).value
    assert list(summary["Folds"]) == [2] and summary["Paper (reported)"].isna().all()


def test_a_run_that_fails_on_its_own_shows_why_beside_it_and_that_other_settings_are_the_remedy(two_datasets,
                                                                                                three_a_class):
    import os
    import shutil

    shutil.copytree(three_a_class, os.path.join(os.environ["LEUKDASH_DATA"], "few"))
    at = experiments({**TINY_GRID, "dataset": "few"})
    at.multiselect(key="exp_models").set_value(["Naive Bayes", "SVM"]).run(timeout=TIMEOUT)
    at.button(key="launch").click().run(timeout=TIMEOUT)
    wait_for_jobs()
    at.run(timeout=TIMEOUT)
    table = at.dataframe[0].value
    assert list(table["Status"]) == ["finished", "failed"]
    assert table["Why it failed"][1].startswith("a fold's training part holds 1 input of class")
    (expander,) = [e for e in at.expander if e.label.startswith("The last sweep job with these runs failed")]
    assert "fails again alike: change its settings" in expander.caption[0].value
