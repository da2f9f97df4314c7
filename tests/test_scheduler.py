"""The local pool's core and memory budget, the choice of pool, and one pool for several runs."""

import os
import re

import pytest

from leukdash.engine import machine
from leukdash.engine import scheduler
from leukdash.config import AugmentConfig, RunConfig
from leukdash.errors import ConfigError
from leukdash.engine.runner import run_many
from leukdash.engine.scheduler import (CLASSIC_WORKER_MB, CNN_THREADS, TF_WORKER_MB, DaskPool, FoldTask, InProcessPool,
                                LocalPool, make_pool, memory_budget_mb)


def _task(model: str, fold: int = 0) -> FoldTask:
    return FoldTask(f"{model}-run", fold, 5, {"model": model})


def _live(cnn: int = 0, classic: int = 0) -> dict[bool, int]:
    """Live worker processes of each kind, idle ones included."""
    return {True: cnn, False: classic}


def test_cnn_and_classic_folds_share_the_cores_without_oversubscription():
    pool = LocalPool(cores=CNN_THREADS + 1, memory_mb=10_000)
    cnn, svm = _task("cnn"), _task("svm")
    assert pool.fits(cnn, [], _live())
    assert pool.fits(svm, [cnn], _live(cnn=1))  # CNN_THREADS + 1 cores
    assert not pool.fits(cnn, [cnn, svm], _live(cnn=1, classic=1))  # one too many
    assert not pool.fits(svm, [cnn, svm], _live(cnn=1, classic=1))


def test_a_task_larger_than_the_machine_still_runs_alone():
    pool = LocalPool(cores=1, memory_mb=100)
    assert pool.fits(_task("cnn"), [], _live())
    assert not pool.fits(_task("nb"), [_task("cnn")], _live(cnn=1))


def test_memory_counts_live_worker_processes():
    pool = LocalPool(cores=16, memory_mb=TF_WORKER_MB + 2 * CLASSIC_WORKER_MB)
    running = [_task("cnn"), _task("knn")]
    assert pool.fits(_task("dt"), running, _live(cnn=1, classic=2))  # one classic worker idle: no new memory
    assert pool.fits(_task("dt"), running, _live(cnn=1, classic=1))  # a second classic worker still fits
    running.append(_task("dt"))
    assert not pool.fits(_task("nb"), running, _live(cnn=1, classic=2))  # a third would pass the budget
    assert not pool.fits(_task("cnn"), running, _live(cnn=1, classic=2))


def test_a_small_machine_trains_one_cnn_fold_at_a_time():
    # Community Cloud: two TensorFlow workers took the app to 2.96 GB (benchmarks/measure_memory.py).
    pool = LocalPool(cores=16, memory_mb=scheduler.SMALL_MACHINE_BUDGET_MB)
    running, live = [_task("cnn")], _live(cnn=1)
    assert not pool.fits(_task("cnn"), running, live)
    assert pool.fits(_task("svm"), running, live)


def _sized(model: str, n_images: int, **changes) -> FoldTask:
    """A fold of a run at the default settings (64 px, x8, 5 folds) on ``n_images`` images."""
    return FoldTask(f"{model}-run", 0, 5, RunConfig(model=model, **changes).to_dict(), n_images)


def test_a_folds_memory_grows_with_its_training_rows_and_the_svms_gram_matrix():
    # 903 images (the built-in five-class set): 5,779 training rows of 64 px after x8.
    svm, knn, tree = (_sized(model, 903).memory_mb for model in ("svm", "knn", "dt"))
    assert knn == tree and svm - knn == round(5779 ** 2 * 8 * 1.35 / 2**20)  # the Gram matrix, in blocks
    assert _sized("knn", 260).memory_mb < knn / 3  # ALL-IDB2's 260 images
    assert _sized("svm", 903, feature_set="features").memory_mb < svm  # 64 inputs, not 3,072
    assert _sized("knn", 903, augment=AugmentConfig.off()).memory_mb * 8 == pytest.approx(knn, rel=0.01)
    assert _task("svm").memory_mb == 0  # size unknown: the worker's own memory only


def test_large_folds_run_fewer_at_once_within_the_budget():
    pool = LocalPool(cores=8, memory_mb=3500)
    big, small = _sized("svm", 903), _sized("svm", 40)
    running = [big] * 3
    assert pool.fits(big, running[:2], _live(classic=2))  # a third: 3 x (300 + 683) MB <= 3500
    assert not pool.fits(big, running, _live(classic=3))  # a fourth would pass the budget
    assert pool.fits(small, running, _live(classic=3))  # a tiny fold beside them still fits
    # Before, every classic worker counted 300 MB: eight such folds (about 7.8 GB measured) were let in.
    assert CLASSIC_WORKER_MB * 8 <= 3500


def _mapped_files(pid: int, until: str, timeout: float = 60) -> str:
    """The files a process has mapped, once one of them contains ``until`` (or at the timeout)."""
    import time

    import psutil

    deadline = time.monotonic() + timeout
    while True:
        mapped = "\n".join(region.path for region in psutil.Process(pid).memory_maps())
        if until in mapped or time.monotonic() > deadline:
            return mapped
        time.sleep(0.1)


def test_workers_started_ahead_load_their_libraries_and_are_cut_to_what_the_first_folds_take():
    pool = LocalPool(cores=8, memory_mb=3500)
    pool.start_workers(cnn=False, tasks=4)  # before the folds (and their memory) are known
    started = list(pool._idle)
    try:
        assert len(started) == 4
        # Before any task: scikit-learn loaded (what a first fold waited for), TensorFlow never.
        mapped = _mapped_files(started[0].pid, until="sklearn")
        assert "sklearn" in mapped and "tensorflow" not in mapped
        pool._end_unneeded([_sized("svm", 903)] * 4)  # 3 x (300 + 683) MB fit in 3,500 MB, a fourth not
        assert len(pool._idle) == 3 and [child.alive() for child in started].count(True) == 3
    finally:
        pool.close()
    assert not any(child.alive() for child in started)


def test_a_worker_that_cannot_be_started_ahead_fails_the_run_as_its_fold_would(tiny_dataset, monkeypatch):
    """fork() without memory (or over a process limit) before the images are loaded: the same one
    error, and the same "failed" event, as when a fold's worker cannot start."""
    from leukdash.engine.progress import read_events
    from leukdash.engine.runner import resolve
    from leukdash.engine.scheduler import local
    from leukdash.engine.store import RunStore
    from leukdash.errors import RunError

    def no_process(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(local, "ChildProcess", no_process)
    config = RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, augment_factor=1, folds=2)
    with pytest.raises(RunError, match=r"^out of memory \(OSError: \[Errno 12\] Cannot allocate memory\): "
                                       r"finished folds are kept") as raised:
        run_many([config], n_jobs=2)
    progress = RunStore().run_dir(resolve(config).run_id) / "progress.jsonl"
    assert [e["message"] for e in read_events(progress) if e["event"] == "failed"] == [str(raised.value)]


def test_memory_budget_from_the_environment(monkeypatch):
    monkeypatch.setenv("LEUKDASH_MEMORY_MB", "2400")
    assert memory_budget_mb() == 2400
    for value in ("lots", "1e30", "4096.5", "-1", "0"):
        monkeypatch.setenv("LEUKDASH_MEMORY_MB", value)
        with pytest.raises(ConfigError, match=r"LEUKDASH_MEMORY_MB must be a positive whole number of megabytes "
                                              rf"\(e\.g\. 4096\), got '{re.escape(value)}'"):
            memory_budget_mb()
    monkeypatch.delenv("LEUKDASH_MEMORY_MB")
    monkeypatch.setattr(machine, "machine_memory_mb", lambda: 2700)  # Streamlit Community Cloud
    assert memory_budget_mb() == scheduler.SMALL_MACHINE_BUDGET_MB == 1600
    monkeypatch.setattr(machine, "machine_memory_mb", lambda: 32_000)
    assert memory_budget_mb() == 16_000


def test_the_pool_follows_the_address_and_n_jobs(monkeypatch):
    monkeypatch.delenv("LEUKDASH_SCHEDULER", raising=False)
    assert isinstance(make_pool(), LocalPool) and isinstance(make_pool(n_jobs=1), InProcessPool)
    assert make_pool(n_jobs=1000).cores == scheduler.machine_cores()  # capped to the machine
    monkeypatch.setenv("LEUKDASH_SCHEDULER", "tcp://10.0.0.1:8786")
    assert isinstance(make_pool(), DaskPool) and make_pool().address == "tcp://10.0.0.1:8786"
    assert make_pool("tcp://h:1").address == "tcp://h:1"
    assert isinstance(make_pool("local"), LocalPool)  # this machine, whatever the variable says
    with pytest.raises(ConfigError, match=r"^--scheduler is empty \(an unset shell variable\?\): give "
                                          "SCHEME://HOST:PORT, or local to compute on this machine$"):
        make_pool("")  # not the variable's address, as if the option were left out
    monkeypatch.setenv("LEUKDASH_SCHEDULER", "local")
    assert isinstance(make_pool(), LocalPool)


@pytest.mark.parametrize("option, advice", [
    ("tcp://10.0.0.1:8786", "--scheduler local"), (None, "LEUKDASH_SCHEDULER unset, or --scheduler local")])
def test_a_lost_scheduler_says_how_to_compute_here_for_where_its_address_came_from(monkeypatch, option, advice):
    from distributed.comm.core import CommClosedError

    from leukdash.engine.scheduler.cluster import task_failure

    monkeypatch.setenv("LEUKDASH_SCHEDULER", "tcp://10.0.0.1:8786")
    pool = make_pool(option)
    lost = task_failure(CommClosedError("Stream is closed"), _task("nb"), pool.address, pool.source)
    assert str(lost) == ("lost the Dask scheduler at tcp://10.0.0.1:8786 (its connection closed): finished folds are "
                         f"kept; run the same command again when it is back (or with {advice}, to compute on this "
                         "machine)")


@pytest.mark.parametrize("option", ["tcp://127.0.0.1:1", None])
def test_an_unreachable_scheduler_says_how_to_compute_here_when_its_address_came_from_the_environment(monkeypatch,
                                                                                                     option):
    # Most often met at start-up: an address from a shell profile, which the user did not type.
    from leukdash.errors import RunError

    monkeypatch.setenv("LEUKDASH_SCHEDULER", "tcp://127.0.0.1:1")  # nothing listens on port 1
    pool = make_pool(option)
    pool.connect_timeout = 1
    with pytest.raises(RunError) as raised:
        pool.run([], {}, None, None, None)
    hint = ("(the address is LEUKDASH_SCHEDULER's: run with LEUKDASH_SCHEDULER unset, or --scheduler local, to "
            "compute on this machine)")
    assert " at tcp://127.0.0.1:1" in str(raised.value)  # Dask's own timeout or ours, whichever comes first
    assert str(raised.value).endswith(hint) == (option is None)


def test_the_scheduler_options_help_says_how_to_compute_here(capsys):
    from leukdash.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "or local: this machine" in " ".join(capsys.readouterr().out.split())


def test_runs_of_several_configs_share_one_pool_with_in_process_results(tiny_dataset, tmp_path, monkeypatch):
    base = RunConfig(dataset=str(tiny_dataset), image_size=16, augment=AugmentConfig.off(), augment_factor=1,
                     folds=3, feature_set="features")
    configs = [base.with_changes(model="nb"), base.with_changes(model="dt")]
    events = []
    pooled = run_many(configs, n_jobs=2, on_event=events.append)
    done = sorted((e["run_id"], e["fold"]) for e in events if e["event"] == "fold_done")
    assert done == sorted((r["run_id"], fold) for r in pooled for fold in range(3))
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tmp_path / "in-process"))
    alone = run_many(configs, n_jobs=1)
    for a, b in zip(pooled, alone):
        assert a["computed_folds"] == b["computed_folds"] == [0, 1, 2]
        assert [f["oof"] for f in a["folds"]] == [f["oof"] for f in b["folds"]]


def _own_tmpdir(tmp_path, monkeypatch):
    """An empty temporary folder for this process and the workers it starts (``TMPDIR``)."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))  # gettempdir() read TMPDIR once, before
    return folder


def test_cnn_workers_leave_nothing_in_the_temporary_folder(tiny_dataset, tmp_path, monkeypatch):
    """TensorFlow's autograph files are removed at its exit, which a worker ended by SIGKILL never reaches."""
    temporary = _own_tmpdir(tmp_path, monkeypatch)
    config = RunConfig(dataset=str(tiny_dataset), model="cnn", image_size=16, augment_factor=1, folds=2, epochs=1)
    assert run_many([config], n_jobs=2)[0]["computed_folds"] == [0, 1]
    assert sorted(os.listdir(temporary)) == []


def test_a_dead_worker_is_one_clear_error(tiny_dataset, tmp_path, monkeypatch):
    """A worker process killed mid-task (e.g. by the OOM killer) ends the pool with one clear line,
    and its fold's scratch folder does not outlive it."""
    import os
    import signal

    from leukdash.data.arrays import load_arrays
    from leukdash.engine.runner import resolve
    from leukdash.engine.scheduler.child import ChildProcess
    from leukdash.engine.fold_planning import fold_inputs
    from leukdash.errors import RunError

    temporary = _own_tmpdir(tmp_path, monkeypatch)
    config = RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, augment=AugmentConfig.off(),
                       augment_factor=1, folds=3, feature_set="features")
    dataset = resolve(config).dataset
    inputs = {"nb-run": fold_inputs(config, dataset, load_arrays(dataset, 16, config.preprocess))}
    started, killed = [], []
    start = ChildProcess.__init__

    def recorded(self, *args, **options):
        start(self, *args, **options)
        started.append(self)

    monkeypatch.setattr(ChildProcess, "__init__", recorded)

    def kill_the_worker(run_id, event):  # its first progress event: the worker is mid-task
        if not killed:
            os.kill(started[0].pid, signal.SIGKILL)
            killed.append(started[0])

    with pytest.raises(RunError, match="the worker computing fold 3 of nb-run died"):
        LocalPool(cores=1).run([FoldTask("nb-run", 2, 3, config.to_dict())], inputs,
                               on_done=lambda *a: None, on_event=kill_the_worker, on_failed=lambda *a: None)
    assert len(started) == 1 and killed[0].process.wait() == -signal.SIGKILL
    assert sorted(os.listdir(temporary)) == []


def test_a_childs_stderr_reaches_ours_without_tensorflows_start_up_notes(capfd, monkeypatch):
    from leukdash.engine.scheduler.child import _relay

    # Lines as TensorFlow 2.21 prints them when a worker imports it, then what must pass.
    notes = [b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
             b"I0000 00:00:1796407410.655767    5116 port.cc:153] oneDNN custom operations are on.\n",
             b"I0000 00:00:1796407410.799612    5116 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n",
             b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow\n",
             b"I0000 00:00:1796407417.990691    5116 generator_dataset_op.cc:213] Memory patch applied\n"]
    others = [b"W0000 00:00:1796407417.990691    5116 op_kernel.cc:1] a TensorFlow warning\n",
              b"/x/keras/src/trainer.py:12: UserWarning: Your input ran out of data\n", b"Fatal Python error\n",
              b"I0000 is not a log line\n"]

    def relayed() -> str:
        read, write = os.pipe()
        os.write(write, b"".join(notes[:2] + others[:2] + notes[2:] + others[2:]))
        os.close(write)
        with os.fdopen(read, "rb") as stderr:
            _relay(stderr)
        return capfd.readouterr().err

    assert relayed() == b"".join(others).decode()
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # TensorFlow's own switch for its notes
    assert relayed() == b"".join(notes[:2] + others[:2] + notes[2:] + others[2:]).decode()


def test_a_cluster_without_workers_is_said_once_on_each_runs_progress(monkeypatch):
    from leukdash.engine.scheduler import cluster

    said, workers, clock = [], [{"tcp://10.0.0.2:3": {}}], [0.0]
    monkeypatch.setattr(cluster.time, "monotonic", lambda: clock[0])
    # What the scheduler's identity holds: the workers connected, by address.
    monkeypatch.setattr(cluster, "_identity", lambda address, timeout: {"type": "Scheduler", "workers": workers[0]})
    watch = cluster._ClusterWatch("tcp://10.0.0.1:8786", ["a", "b"], lambda run_id, e: said.append((run_id, e)))
    clock[0] = cluster.NO_WORKER_NOTICE_SECONDS + 1
    watch.check()
    assert said == []  # a worker is there
    workers[0] = {}
    clock[0] += cluster.NO_WORKER_NOTICE_SECONDS - 1
    watch.check()
    assert said == []  # not long enough without one
    clock[0] += cluster.SCHEDULER_PROBE_SECONDS
    monkeypatch.setattr(cluster, "_identity", lambda address, timeout: (_ for _ in ()).throw(TimeoutError()))
    watch.check()
    assert said == [(run_id, {"event": "message", "message": "waiting for the Dask scheduler at tcp://10.0.0.1:8786: "
                              "it does not answer (stopped, overloaded or cut off from this machine); finished folds "
                              "are kept, Ctrl-C stops the run"}) for run_id in ("a", "b")]  # not "no worker": unknown
    said.clear()
    monkeypatch.setattr(cluster, "_identity", lambda address, timeout: {"type": "Scheduler", "workers": {}})
    for _ in range(2):
        clock[0] += cluster.SCHEDULER_PROBE_SECONDS
        watch.check()
    assert [(run_id, e["message"].split(":")[0]) for run_id, e in said] == [
        ("a", "the Dask scheduler at tcp"), ("b", "the Dask scheduler at tcp"),  # ... answers again
        ("a", "waiting for a worker"), ("b", "waiting for a worker")]  # once
    assert said[2][1] == {"event": "message", "message": "waiting for a worker: the Dask scheduler at "
                          "tcp://10.0.0.1:8786 has none connected (start one with `dask worker tcp://10.0.0.1:8786`)"}


@pytest.mark.parametrize("terminal", [True, False])
def test_the_run_progress_prints_what_the_run_waits_for(terminal):
    import io

    from leukdash.cli.output import ProgressLine

    stream = io.StringIO()
    stream.isatty = lambda: terminal
    line = ProgressLine(stream)
    line.update({"event": "start", "folds": 2, "epochs": None, "done_folds": []})
    line.update({"event": "message", "message": "another process is computing this run: waiting for it"})
    lines = stream.getvalue().replace("\r\033[K", "\n").splitlines()
    assert "another process is computing this run: waiting for it" in lines, stream.getvalue()


def test_the_run_progress_on_a_dumb_terminal_writes_no_escape_codes(monkeypatch):
    import io

    from leukdash.cli.output import ProgressLine

    monkeypatch.setenv("TERM", "dumb")
    stream = io.StringIO()
    stream.isatty = lambda: True
    line = ProgressLine(stream)
    line.update({"event": "start", "folds": 2, "epochs": None, "done_folds": []})
    line.update({"event": "fold_done", "fold": 0, "n_folds": 2, "metrics": {"val_acc": 0.5}})
    line.close()
    assert stream.getvalue() == "fold 1/2 done: val_acc 0.5000\n"


def test_a_scheduler_that_stops_answering_is_said_once_and_again_when_it_answers(monkeypatch):
    from leukdash.engine.scheduler import cluster

    said, clock, asked = [], [0.0], []
    answers = iter([{"type": "Scheduler"}, TimeoutError(), ConnectionRefusedError(), TimeoutError(),
                    {"type": "Scheduler"}, {"type": "Scheduler"}, TimeoutError()])

    def identity(address, timeout):  # the only question the watch asks, always under a deadline
        asked.append((address, timeout))
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return {**answer, "workers": {"tcp://10.0.0.2:3": {}}}

    monkeypatch.setattr(cluster.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(cluster, "_identity", identity)
    watch = cluster._ClusterWatch("tcp://10.0.0.1:8786", ["a"], lambda run_id, e: said.append(e["message"]))
    clock[0] = cluster.SCHEDULER_PROBE_SECONDS - 1
    watch.check()
    assert asked == [] and said == []  # not yet time to ask
    for _ in range(7):
        clock[0] += cluster.SCHEDULER_PROBE_SECONDS
        watch.check()
        watch.check()  # asked once per interval, not at every poll
    assert asked == [("tcp://10.0.0.1:8786", cluster.SCHEDULER_ANSWER_SECONDS)] * 7
    silent = ("waiting for the Dask scheduler at tcp://10.0.0.1:8786: it does not answer (stopped, overloaded or cut "
              "off from this machine); finished folds are kept, Ctrl-C stops the run")
    again = "the Dask scheduler at tcp://10.0.0.1:8786 answers again"
    assert said == [silent, again, silent]
    watch.heard_from_scheduler()  # a fold's result came through it before the next probe
    watch.heard_from_scheduler()
    assert said == [silent, again, silent, again] and len(asked) == 7
    clock[0] += cluster.SCHEDULER_PROBE_SECONDS - 1
    watch.check()
    assert len(asked) == 7  # hearing from it counts as an answer: the next probe is an interval later


def test_a_stopped_scheduler_is_said_within_the_time_the_readme_gives_before_any_other_notice():
    """The README promises 15 s; the first question comes before the no-worker notice is due, so
    no other question to the scheduler can come first (one without a deadline hung the run)."""
    from leukdash.engine.scheduler import cluster

    assert cluster.SCHEDULER_PROBE_SECONDS + cluster.SCHEDULER_ANSWER_SECONDS <= 15
    assert cluster.SCHEDULER_PROBE_SECONDS < cluster.NO_WORKER_NOTICE_SECONDS


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8790/", " tcp://127.0.0.1:8790", "tcp://127.0.0.1:8790 ",
                                     "TCP://127.0.0.1:8790", "tcp://127.0.0.1:8790?x", "tcp://me@127.0.0.1:8790",
                                     "inproc://x"])
def test_an_address_dask_would_refuse_or_read_otherwise_is_refused_up_front(address):
    with pytest.raises(ConfigError, match=rf"^--scheduler {re.escape(repr(address))} is not a Dask scheduler address: "
                                          "give SCHEME://HOST:PORT and nothing more, with SCHEME one of tcp, tls, ws, "
                                          r"wss, ucx, e\.g\. tcp://127\.0\.0\.1:8786 \(or local to compute on "
                                          r"this machine\)$"):
        scheduler.scheduler_address(address)


def test_an_address_dask_itself_refuses_is_one_line_with_dasks_reason():
    from leukdash.engine.scheduler.cluster import check_scheduler
    from leukdash.errors import RunError

    with pytest.raises(RunError) as raised:  # Dask's TLS settings are not given: it refuses before connecting
        check_scheduler("tls://127.0.0.1:8790", 5)
    assert str(raised.value) == ("tls://127.0.0.1:8790 does not answer as a Dask scheduler (TypeError: TLS expects a "
                                 "`ssl_context` argument of type ssl.SSLContext (perhaps check your TLS "
                                 "configuration?) Instead got None): give the tcp://HOST:PORT that `dask scheduler` "
                                 "prints")
