"""Sweep jobs: several runs computed by one background process, followed and cancelled by run."""

import json
import sys
import time

import pytest

from leukdash.service import sweep_jobs
from leukdash.config import AugmentConfig, RunConfig
from leukdash.engine.runner import resolve
from leukdash.engine.store import RunStore
from tests.test_jobs import reap_leftovers  # noqa: F401  (autouse: kills what a test left running)

# Stand-in for the CLI's `sweep --resume ID`: the sweep's runs through the engine's run_many.
RUN_MANY = ("import json, sys\n"
            "from leukdash.config import RunConfig\n"
            "from leukdash.engine.runner import run_many\n"
            "run_many([RunConfig.from_dict(d) for d in json.load(open(sys.argv[1]))['configs']], n_jobs=1)\n")
SLEEPER = "import time; time.sleep(60)"


@pytest.fixture
def stand_in(monkeypatch):
    def use(code):
        monkeypatch.setattr(sweep_jobs, "sweep_command", lambda sweep_id: [
            sys.executable, "-c", code, str(RunStore().run_dir(sweep_id) / sweep_jobs.CONFIG_FILE)])
    return use


def tiny_sweep(dataset, name="two classic models") -> dict:
    """A sweep record as leukdash.engine.sweep.create_sweep returns it."""
    base = RunConfig(dataset=str(dataset), image_size=16, folds=2, augment=AugmentConfig.off(), augment_factor=1)
    configs = [base.with_changes(model="nb"), base.with_changes(model="dt")]
    return {"sweep_id": "sweep-test", "name": name, "configs": [c.to_dict() for c in configs],
            "run_ids": [resolve(c).run_id for c in configs]}


def wait_until_done(job_id, seconds=120) -> dict:
    deadline = time.monotonic() + seconds
    while (status := sweep_jobs.sweep_job_status(job_id))["state"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
    return status


def test_a_sweep_job_computes_every_run_and_reports_each(tiny_dataset, stand_in):
    stand_in(RUN_MANY)
    sweep = tiny_sweep(tiny_dataset)
    run_ids = sweep["run_ids"]
    job = sweep_jobs.start_sweep_job(sweep)
    assert json.loads(open(job["config_file"]).read()) == sweep
    status = wait_until_done(job["run_id"])
    assert status["state"] == "finished", status["log_tail"]
    assert status["runs"] == {run_id: "finished" for run_id in run_ids}
    assert status["folds_done"] == status["folds"] == 4
    assert status["name"] == "two classic models" and status["ended"] >= status["started"]
    assert all(RunStore().read_summary(run_id) is not None for run_id in run_ids)
    assert sweep_jobs.list_sweep_jobs() == [job["run_id"]]


def test_the_same_runs_share_a_live_job_and_a_cancel_marks_them(tiny_dataset, stand_in):
    stand_in(SLEEPER)
    first = sweep_jobs.start_sweep_job(tiny_sweep(tiny_dataset, "a"))
    again = sweep_jobs.start_sweep_job(tiny_sweep(tiny_dataset, "b"))
    assert again["pid"] == first["pid"]
    status = sweep_jobs.sweep_job_status(first["run_id"])
    assert status["state"] == "running" and set(status["runs"].values()) == {"queued"}
    assert (status["folds_done"], status["folds"]) == (0, 4)  # 2 runs of 2 folds, from their configs
    status = sweep_jobs.cancel_sweep_job(first["run_id"], grace=2)
    assert status["state"] == "cancelled"
    assert set(status["runs"].values()) == {"cancelled"}
    assert all(p["status"] == "cancelled" for p in status["progress"].values())


def test_an_unknown_sweep_job_is_one_clear_error():
    from leukdash.errors import RunError

    with pytest.raises(RunError, match="no sweep job 'sweep-nothing'"):
        sweep_jobs.sweep_job_status("sweep-nothing")
