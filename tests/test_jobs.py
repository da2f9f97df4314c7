"""Background jobs with a stand-in process instead of the CLI: sharing, status, cancel."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from leukdash.service import job_queue, jobs
from leukdash.config import RunConfig
from leukdash.engine.progress import append_event
from leukdash.engine.store import RunStore, write_json_atomic

CONFIG = RunConfig(model="nb", folds=2)

# The stand-in job starts a worker (a grandchild, like joblib's), records its pid, then sleeps.
SLEEPER = (
    "import subprocess, sys, time\n"
    "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "open(sys.argv[1] + '.tmp', 'w').write(str(worker.pid))\n"
    "import os; os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "print('job running', flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def fake_job(monkeypatch):
    """Make jobs run ``code`` (default: the sleeper) with the config file as argv[1]."""

    def use(code=SLEEPER):
        monkeypatch.setattr(jobs, "job_command", lambda config_file: [sys.executable, "-c", code, f"{config_file}.worker"])

    use()
    return use


@pytest.fixture(autouse=True)
def reap_leftovers():
    """Kill whatever job a test left running, worker included."""
    yield
    for pid, process in list(job_queue.children.items()):  # its reaper thread may drop it meanwhile
        if process.poll() is None:
            _kill_group(pid)
        process.wait()
        job_queue.children.pop(pid, None)
    # Jobs a supervisor started from the queue are not our children.
    root = RunStore().root
    for job_file in root.glob("*/job.json") if root.is_dir() else []:
        job = json.loads(job_file.read_text())
        if "pid" in job and job_queue.job_alive(job):
            _kill_group(job["pid"])


def _kill_group(pid):
    try:
        os.killpg(pid, 9)
    except ProcessLookupError:
        pass


def _gone(pid) -> bool:
    """Exited or a zombie (a reparented worker may wait for a reaper that never comes)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def _wait_for(predicate, seconds=15.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_start_job_records_the_job_and_is_shared(fake_job):
    store = RunStore()
    first = jobs.start_job(CONFIG, "r1")
    second = jobs.start_job(CONFIG, "r1", store)
    assert second["pid"] == first["pid"]
    folder = store.run_dir("r1")
    assert json.loads((folder / "job.json").read_text())["pid"] == first["pid"]
    assert RunConfig.from_dict(json.loads((folder / "job_config.json").read_text())) == CONFIG
    status = jobs.job_status("r1")
    assert status["state"] == "running" and status["pid"] == first["pid"]
    _wait_for(lambda: "job running" in "\n".join(jobs.job_status("r1")["log_tail"]))


def test_concurrent_launches_share_one_job(fake_job):
    pids = []
    threads = [threading.Thread(target=lambda: pids.append(jobs.start_job(CONFIG, "r1")["pid"])) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(pids) == 4 and len(set(pids)) == 1


def test_cancel_kills_the_process_group(fake_job):
    store = RunStore()
    job = jobs.start_job(CONFIG, "r1")
    worker_file = Path(job["config_file"] + ".worker")
    _wait_for(worker_file.exists)
    worker = int(worker_file.read_text())
    assert not _gone(worker)
    status = jobs.cancel_job("r1", grace=5.0)
    assert status["state"] == "cancelled"
    assert status["progress"]["status"] == "cancelled"
    assert status["returncode"] == -15
    assert _gone(job["pid"])
    _wait_for(lambda: _gone(worker))
    assert json.loads((store.run_dir("r1") / "job.json").read_text())["state"] == "cancelled"



def test_a_job_whose_supervisor_was_killed_still_runs_and_can_be_cancelled(fake_job):
    """The job's supervisor killed from outside (kill -9): the command it ran still computes in the
    process group it led, so the job reads as running (it holds its slot) and a cancel reaches it."""
    import signal

    job = jobs.start_job(CONFIG, "r1")
    worker_file = Path(job["config_file"] + ".worker")
    _wait_for(worker_file.exists)
    worker = int(worker_file.read_text())
    os.kill(job["pid"], signal.SIGKILL)
    _wait_for(lambda: _gone(job["pid"]))
    assert jobs.job_status("r1")["state"] == "running" and not _gone(worker)
    status = jobs.cancel_job("r1", grace=5.0)
    _wait_for(lambda: _gone(worker))
    assert status["state"] == "cancelled" and not job_queue.job_alive(job)

def test_cancel_escalates_when_sigterm_is_ignored(fake_job):
    fake_job("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)")
    job = jobs.start_job(CONFIG, "r1")
    _wait_for(lambda: "ready" in "\n".join(jobs.job_status("r1")["log_tail"]))
    status = jobs.cancel_job("r1", grace=0.3)
    assert status["state"] == "cancelled" and status["returncode"] == -9
    assert _gone(job["pid"])


def test_failed_job_reports_its_exit_status_to_other_processes(fake_job):
    store = RunStore()
    fake_job("import sys; print('boom'); sys.exit(3)")
    jobs.start_job(CONFIG, "r1")
    _wait_for(lambda: jobs.job_status("r1")["state"] != "running")
    status = jobs.job_status("r1")
    assert status["state"] == "failed" and status["returncode"] == 3 and status["log_tail"] == ["boom"]
    # Another process knows nothing of our child; it reads the exit status from job.json.
    job_queue.children.clear()
    assert jobs.job_status("r1")["returncode"] == 3
    assert json.loads((store.run_dir("r1") / "job.json").read_text())["returncode"] == 3



def test_a_finished_jobs_supervisor_is_reaped_though_nobody_asks_after_its_job(fake_job):
    """A long-lived process (the dashboard's server) whose sessions never look at a job again must not keep its
    supervisor as a zombie; its exit status still reaches every reader."""
    store = RunStore()
    fake_job("import sys; sys.exit(3)")
    pid = jobs.start_job(CONFIG, "r1")["pid"]
    _wait_for(lambda: not Path(f"/proc/{pid}").exists())  # not even a zombie, and no job_status called
    _wait_for(lambda: pid not in job_queue.children)
    assert json.loads((store.run_dir("r1") / "job.json").read_text())["returncode"] == 3
    assert jobs.job_status("r1")["returncode"] == 3


class _ReapedWhileRead(dict):
    """The children of this process as the reaper thread can leave them to a reader: each job popped
    right after its first read, as the thread's pop can land between two reads of the same job."""

    def __contains__(self, pid):
        found = dict.__contains__(self, pid)
        self.pop(pid, None)
        return found

    def get(self, pid, default=None):
        process = dict.get(self, pid, default)
        self.pop(pid, None)
        return process


def test_a_job_reaped_while_its_state_is_read_is_ended_not_a_keyerror(monkeypatch):
    """The reaper thread forgets an ended job at any moment: job_alive reading it meanwhile answers from
    the process it read (ended), not with a KeyError out of job_status or dispatch."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    monkeypatch.setattr(job_queue, "children", _ReapedWhileRead({process.pid: process}))
    assert job_queue.job_alive({"pid": process.pid}) is False


def test_a_job_killed_by_sigkill_says_so_in_one_line_and_ends_as_killed(fake_job):
    """The job's command killed outright (kill -9, or the system when memory runs out): its log ends
    with one line saying so, not a traceback, and the job's exit is that signal."""
    fake_job("import os, signal\nprint('computing', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)")
    jobs.start_job(CONFIG, "r1")
    _wait_for(lambda: jobs.job_status("r1")["state"] != "running")
    status = jobs.job_status("r1")
    assert status["state"] == "failed" and status["returncode"] == -9
    assert status["log_tail"][0] == "computing" and len(status["log_tail"]) == 2
    assert status["log_tail"][1].startswith("the job was killed (SIGKILL: from outside, or by the system when memory")

def test_stale_job_with_dead_pid_is_not_running(fake_job):
    store = RunStore()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_json_atomic(store.run_dir("r1") / "job.json", {"pid": dead.pid, "run_id": "r1", "started": 0.0})
    append_event(store.progress_path("r1"), {"event": "start", "folds": 2})
    assert jobs.job_status("r1")["state"] == "failed"
    job = jobs.start_job(CONFIG, "r1")
    assert job["pid"] != dead.pid and jobs.job_status("r1")["state"] == "running"


def test_reused_pid_is_not_mistaken_for_the_job():
    store = RunStore()
    # Our own pid is alive, but it started at another time than the recorded job.
    write_json_atomic(store.run_dir("r1") / "job.json", {"pid": os.getpid(), "run_id": "r1", "proc_start": "1"})
    assert jobs.job_status("r1")["state"] == "failed"


def test_status_finished_none_and_followed():
    store = RunStore()
    assert jobs.job_status("r1")["state"] == "none"
    with store.lock("r1"):  # a run computed by the CLI, not a job: the page can still follow it
        assert jobs.job_status("r1")["state"] == "running"
    store.write_summary("r1", {"val_acc": {"mean": 0.9}})
    assert jobs.job_status("r1")["state"] == "finished"


def test_job_command_runs_the_cli(tmp_path):
    command = jobs.job_command(tmp_path / "job_config.json")
    assert command[:4] == [sys.executable, "-m", "leukdash", "run"]
    assert command[command.index("--config-file") + 1] == str(tmp_path / "job_config.json")


# The stand-in job waits until the test lets it finish (by creating "<config>.worker.go").
WAITER = "import os, sys, time\nwhile not os.path.exists(sys.argv[1] + '.go'):\n    time.sleep(0.02)\nprint('done')"


def _live_jobs(store, run_ids) -> list[str]:
    live = []
    for run_id in run_ids:
        job = json.loads((store.run_dir(run_id) / "job.json").read_text())
        if "pid" in job and job_queue.job_alive(job):
            live.append(run_id)
    return live


def _release(store, run_id):
    Path(f"{store.run_dir(run_id) / 'job_config.json'}.worker.go").touch()


def test_jobs_beyond_the_limit_queue_and_start_when_a_slot_frees(fake_job):
    fake_job(WAITER)
    store = RunStore()
    ids = ["r1", "r2", "r3", "r4"]
    started = [jobs.start_job(CONFIG, run_id, max_jobs=2) for run_id in ids]
    assert [("pid" in job) for job in started] == [True, True, False, False]
    assert [jobs.job_status(r)["state"] for r in ids] == ["running", "running", "queued", "queued"]
    assert [jobs.job_status(r)["position"] for r in ids] == [None, None, 1, 2]
    assert jobs.start_job(CONFIG, "r4", max_jobs=2)["state"] == "queued"  # launching again keeps its place
    assert jobs.job_status("r4")["position"] == 2
    jobs.cancel_job("r3")
    assert jobs.job_status("r3")["state"] == "cancelled" and jobs.job_status("r4")["position"] == 1
    # r1 ends: its supervisor starts r4 at once, with nobody polling job_status.
    _release(store, "r1")
    _wait_for(lambda: _live_jobs(store, ids) == ["r2", "r4"])
    assert len(_live_jobs(store, ids)) <= 2
    assert jobs.job_status("r1")["state"] == "failed" and jobs.job_status("r1")["returncode"] == 0
    assert jobs.job_status("r1")["log_tail"] == ["done"]
    assert not list((store.root.parent / "jobs" / "queue").iterdir())


def test_queue_is_shared_by_processes(fake_job):
    """Another process (another Streamlit server) launching a run joins the same queue."""
    fake_job(WAITER)
    store = RunStore()
    jobs.start_job(CONFIG, "r1", max_jobs=1)
    code = ("import sys; from leukdash.service import jobs; from leukdash.config import RunConfig\n"
            f"jobs.job_command = lambda f: [sys.executable, '-c', {WAITER!r}, f'{{f}}.worker']\n"
            "print(jobs.start_job(RunConfig(model='nb', folds=2), 'r2', max_jobs=1)['state'])")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                           cwd=Path(jobs.__file__).parents[2])
    assert other.stdout.strip() == "queued", other.stderr
    assert jobs.job_status("r2")["position"] == 1
    _release(store, "r1")
    _wait_for(lambda: _live_jobs(store, ["r1", "r2"]) == ["r2"])
    _release(store, "r2")
    _wait_for(lambda: _live_jobs(store, ["r1", "r2"]) == [])


def test_workers_reach_the_job_command_line(fake_job):
    fake_job("import sys; print(sys.argv[2:])")
    jobs.start_job(CONFIG, "r1", workers=1)
    _wait_for(lambda: jobs.job_status("r1")["state"] != "running")
    assert jobs.job_status("r1")["log_tail"] == ["['--n-jobs', '1']"]
    jobs.start_job(CONFIG, "r2")
    _wait_for(lambda: jobs.job_status("r2")["state"] != "running")
    assert jobs.job_status("r2")["log_tail"] == ["[]"]


def test_a_job_that_cannot_start_fails_and_the_queue_moves_on(monkeypatch):
    monkeypatch.setattr(jobs, "job_command", lambda config_file: ["/nonexistent/leukdash-job"])
    store = RunStore()
    jobs.start_job(CONFIG, "r1", max_jobs=1)
    monkeypatch.setattr(jobs, "job_command", lambda config_file: [sys.executable, "-c", "print('second')"])
    assert jobs.start_job(CONFIG, "r2", max_jobs=1).get("state") in ("queued", None)
    # Nobody polls r2: the first job's supervisor starts it.
    _wait_for(lambda: "pid" in json.loads((store.run_dir("r2") / "job.json").read_text()))
    _wait_for(lambda: jobs.job_status("r2")["log_tail"] == ["second"])
    # r1's supervisor starts r2 before it exits: r1 runs until that process has gone (on a loaded
    # machine, after r2 has printed).
    _wait_for(lambda: jobs.job_status("r1")["state"] != "running")
    status = jobs.job_status("r1")
    assert status["state"] == "failed" and status["returncode"] == 127
    assert status["log_tail"][-1].startswith("cannot start the job: [Errno 2]")


def test_a_job_finds_its_launchers_datasets_and_store_by_relative_names(tiny_dataset, tmp_path, monkeypatch):
    """A dashboard or notebook started outside the repository, with ``./data``, a relative
    ``LEUKDASH_DATA`` or ``LEUKDASH_ARTIFACTS`` or a relative dataset path: its jobs compute the
    runs it launched, on the images it listed, in its store (they started in the repository)."""
    import shutil

    from leukdash.engine.runner import resolve

    here = tmp_path / "notebooks"
    shutil.copytree(tiny_dataset, here / "data" / "mine")
    shutil.copytree(tiny_dataset, here / "shared" / "theirs")
    monkeypatch.chdir(here)
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", "store")
    monkeypatch.setenv("LEUKDASH_DATA", "shared")
    run_ids = []
    for name in ("mine", "theirs", "data/mine"):
        config = RunConfig(dataset=name, model="nb", image_size=16, augment_factor=1, folds=2)
        run_ids.append(resolve(config).run_id)
        jobs.start_job(config, run_ids[-1], max_jobs=1)  # one at a time: the supervisors start the others
    for run_id in run_ids:
        _wait_for(lambda: jobs.job_status(run_id)["state"] not in ("queued", "running"), seconds=180)
        status = jobs.job_status(run_id)
        assert status["state"] == "finished", status["log_tail"]
        assert (here / "store" / "runs" / run_id / "summary.json").is_file()


@pytest.mark.parametrize("data", [None, "gone"])
def test_a_job_blames_only_the_data_folders_its_launcher_named(fake_job, tmp_path, monkeypatch, data):
    """The job is told its launcher's ``LEUKDASH_DATA`` entries, made absolute, not the implicit ``./data``
    (which it finds itself, in its launcher's folder): a missing ``./data`` is no entry of the user's to blame."""
    monkeypatch.chdir(tmp_path)  # no ./data here
    if data is None:
        monkeypatch.delenv("LEUKDASH_DATA", raising=False)
    else:
        monkeypatch.setenv("LEUKDASH_DATA", data)
    fake_job("from leukdash.data.discovery import missing_data_roots; print(missing_data_roots())")
    jobs.start_job(CONFIG, "r1")
    _wait_for(lambda: jobs.job_status("r1")["state"] != "running")
    assert jobs.job_status("r1")["log_tail"] == [str([] if data is None else [str(tmp_path / data)])]
