"""Sweeps on real Dask clusters started as the README's "Scaling out" says: a stock
``dask scheduler`` that cannot import leukdash (no ``PYTHONPATH``, a folder outside the
repository) and ``dask worker ADDRESS --nthreads 1`` that can, each in its own folder, without
the store. A worker killed mid-sweep, or a worker's child process killed mid-fold: every fold as
computed locally."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="dask distributed is not installed")

from distributed import Client  # noqa: E402

from leukdash.config import RunConfig  # noqa: E402
from leukdash.engine.scheduler import dask_cli_cluster  # noqa: E402
from leukdash.engine.sweep import expand_grid, run_sweep  # noqa: E402
from leukdash.paths import REPO_ROOT  # noqa: E402


def _scheduler_imports_leukdash(address: str) -> bool:
    def importable() -> bool:  # nested: pickled by value, so the scheduler can unpickle it
        import importlib.util

        return importlib.util.find_spec("leukdash") is not None

    with Client(address, timeout=30) as client:
        return client.run_on_scheduler(importable)


@pytest.fixture
def cluster(tmp_path):
    with dask_cli_cluster(tmp_path / "cluster", n_workers=2) as (address, workers):
        assert not _scheduler_imports_leukdash(address)
        yield address, workers, [tmp_path / "cluster" / f"worker{i}" for i in range(2)]


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    folder = tmp_path_factory.mktemp("one-worker")
    with dask_cli_cluster(folder, n_workers=1) as (address, workers):
        assert not _scheduler_imports_leukdash(address)
        yield address, workers[0]


def _configs(dataset: Path) -> list[RunConfig]:
    base = RunConfig(dataset=str(dataset), image_size=16, augment_factor=2, folds=3, epochs=1, batch_size=16)
    return expand_grid(base, [{"model": "cnn"}, {"model": "knn", "feature_set": "pixels"},
                              {"model": "nb", "feature_set": "features", "augment_factor": 1}])


def _kill_a_busy_worker(address: str, processes: list[subprocess.Popen], killed: list) -> None:
    """SIGKILL the first worker (with its nanny and its children) seen holding a fold task."""
    with Client(address, timeout=30) as client:
        pids = client.run(os.getpid)  # worker address -> pid of its process
        deadline = time.time() + 120
        while time.time() < deadline:
            busy = [worker for worker, keys in client.processing().items()
                    if any(str(key).startswith("fold-") for key in keys)]
            if busy:
                group = os.getpgid(pids[busy[0]])
                for process in processes:
                    if process.pid == group:
                        os.killpg(group, signal.SIGKILL)
                        killed.append(process)
                        return
            time.sleep(0.05)


def _comparable(result: dict) -> list[dict]:
    return [{key: value for key, value in fold.items() if key != "seconds"} for fold in result["folds"]]


def _same_folds(remote: list[dict], local: list[dict]) -> None:
    assert [r["run_id"] for r in remote] == [r["run_id"] for r in local]
    for a, b in zip(remote, local):
        assert a["computed_folds"] == b["computed_folds"] != []
        assert _comparable(a) == _comparable(b)


def test_sweep_on_a_dask_cluster_survives_a_killed_worker(cluster, tiny_dataset, tmp_path, monkeypatch):
    address, processes, worker_folders = cluster
    configs = _configs(tiny_dataset)
    killed: list = []
    killer = threading.Thread(target=_kill_a_busy_worker, args=(address, processes, killed))
    killer.start()
    remote = run_sweep(configs, scheduler=address)
    killer.join()
    assert len(killed) == 1 and killed[0].wait(timeout=30) == -signal.SIGKILL

    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tmp_path / "local"))
    local = run_sweep(configs, n_jobs=1)
    _same_folds(remote["results"], local["results"])
    assert all(r["computed_folds"] == [0, 1, 2] for r in remote["results"])
    # The workers never wrote a run: the process that owns the store did.
    assert not any((folder / "artifacts" / "runs").exists() for folder in worker_folders)


def test_a_fold_whose_child_process_dies_is_computed_again(one_worker, tiny_dataset, tmp_path, monkeypatch):
    """The worker lives on; Dask retries the task once, in a new child, with the same result."""
    import psutil

    address, worker = one_worker
    config = RunConfig(dataset=str(tiny_dataset), model="cnn", image_size=16, augment_factor=1, folds=2, epochs=4,
                       batch_size=16)
    starts, killed = [], []

    def kill_the_child_once(event: dict) -> None:
        if event["event"] != "fold_start":
            return
        starts.append(event["fold"])
        if not killed:  # the fold has just started: TensorFlow is still to train it
            children = [p for p in psutil.Process(worker.pid).children(recursive=True)
                        if "leukdash.engine.scheduler.child" in " ".join(p.cmdline())]
            assert len(children) == 1
            children[0].kill()
            children[0].wait(timeout=30)
            killed.append((children[0].pid, event["fold"]))

    remote = run_sweep([config], scheduler=address, on_event=kill_the_child_once)
    [(pid, fold)] = killed
    assert not psutil.pid_exists(pid) and worker.poll() is None
    assert sorted(starts) == sorted([0, 1, fold])  # the fold whose child was killed started twice
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tmp_path / "local"))
    _same_folds(remote["results"], run_sweep([config], n_jobs=1)["results"])


def test_the_readme_recipe_from_outside_the_repository(one_worker, tmp_path, seed_builtin):
    """Issue 15's check, as a user types it: the CLI from a folder outside the repository, with
    leukdash importable (``PYTHONPATH``), against the local sweep of the same grid. Each store
    starts with the built-in set already drawn, as a user's store has it after the first use."""
    address, _ = one_worker
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    # Small images and few copies: what is checked is where the folds ran, not how long they took.
    grid = ["sweep", "synthetic", "--model", "nb,knn", "--seed", "0,1", "--folds", "3", "--image-size", "32",
            "--augment-factor", "2", "--json"]

    def sweep(*extra: str, store: str) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "LEUKDASH_ARTIFACTS": str(seed_builtin(tmp_path / store))}
        env.pop("LEUKDASH_SCHEDULER", None)
        return subprocess.Popen([sys.executable, "-m", "leukdash", *grid, *extra], cwd=outside, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def result(process: subprocess.Popen) -> dict:
        out, _ = process.communicate(timeout=1800)
        assert process.returncode == 0
        return json.loads(out)

    # Both at once, each in its own store: the cluster's one worker leaves a core for the local sweep.
    on_cluster, here = sweep("--scheduler", address, store="cluster-store"), sweep(store="local-store")
    try:
        remote, local = result(on_cluster), result(here)
    finally:  # a failed or timed-out sweep leaves no process behind
        for process in (on_cluster, here):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert len(remote["runs"]) == 4
    _same_folds(remote["runs"], local["runs"])


def test_a_run_that_fails_on_its_own_on_the_cluster_leaves_the_sweeps_other_runs_computed(one_worker, three_a_class):
    from leukdash.config import AugmentConfig
    from leukdash.engine.sweep import list_sweeps
    from leukdash.errors import RunsFailed

    base = RunConfig(dataset=str(three_a_class), image_size=16, augment=AugmentConfig.off(), augment_factor=1, folds=2,
                     k=1)
    configs = expand_grid(base, {"model": ["nb", "svm", "knn"]})  # the SVM's folds are too small to calibrate
    with pytest.raises(RunsFailed) as failed:
        run_sweep(configs, scheduler=one_worker[0])
    [line] = failed.value.reasons
    assert line.startswith("run svm-") and "(model svm): a fold's training part holds 1 input of class" in line
    [sweep] = list_sweeps()
    assert [run["status"] for run in sweep["runs"]] == ["complete", "failed", "complete"]


def test_a_worker_that_cannot_import_leukdash_is_one_line_that_says_so(tiny_dataset, tmp_path, capsys):
    from leukdash.cli import main

    with dask_cli_cluster(tmp_path / "cluster", n_workers=1, env={"PYTHONPATH": ""}) as (address, _):
        assert main(["run", str(tiny_dataset), "--model", "nb", "--image-size", "16", "--no-augment", "--folds", "2",
                     "--scheduler", address, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: a Dask worker cannot import leukdash (ModuleNotFoundError: "
                                                   "No module named 'leukdash'): start every worker with it"), err


def test_a_scheduler_lost_mid_run_is_one_line_and_the_finished_folds_stay(tiny_dataset, tmp_path, capfd):
    from leukdash.engine.runner import run
    from leukdash.engine.store import RunStore
    from leukdash.errors import RunError

    config = RunConfig(dataset=str(tiny_dataset), model="cnn", image_size=16, augment_factor=1, folds=3, epochs=4,
                       batch_size=16)
    with dask_cli_cluster(tmp_path / "cluster", n_workers=1) as (address, _):
        with Client(address, timeout=30) as client:
            scheduler_pid = client.run_on_scheduler(os.getpid)

        def kill_the_scheduler(event: dict) -> None:
            if event["event"] == "fold_done":
                os.kill(scheduler_pid, signal.SIGKILL)

        started = time.monotonic()
        with pytest.raises(RunError, match=f"^lost the Dask scheduler at {address} .*: finished folds are kept; run "
                                           "the same command again when it is back"):
            run(config, scheduler=address, on_event=kill_the_scheduler)
        assert time.monotonic() - started < 120
    assert "Traceback" not in capfd.readouterr().err  # Dask's own reconnection logs are not shown
    run_id = next(p.name for p in RunStore().root.iterdir())
    assert RunStore().completed_folds(run_id, 3) != []  # kept: the rerun computes only the others
    assert run(config, n_jobs=1)["computed_folds"] != [0, 1, 2]


def test_a_fold_computed_by_other_leukdash_code_is_refused_not_stored(tiny_dataset, tmp_path):
    """A worker that imports another copy of leukdash (another engine version): its fold would be
    stored as this machine's, under this machine's versions. Refused, in one line naming both."""
    import shutil

    from leukdash import ENGINE_VERSION
    from leukdash.engine.runner import resolve, run
    from leukdash.engine.store import RunStore
    from leukdash.errors import RunError

    other = tmp_path / "other-leukdash"
    shutil.copytree(REPO_ROOT / "leukdash", other / "leukdash", ignore=shutil.ignore_patterns("__pycache__"))
    init = other / "leukdash" / "__init__.py"
    init.write_text(init.read_text().replace(f'ENGINE_VERSION = "{ENGINE_VERSION}"', 'ENGINE_VERSION = "99"'))
    config = RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, augment_factor=1, folds=2)
    with dask_cli_cluster(tmp_path / "cluster", n_workers=1, env={"PYTHONPATH": str(other)}) as (address, _):
        with pytest.raises(RunError, match=rf"^a Dask worker tcp://127\.0\.0\.1:\d+ runs leukdash engine 99 \(this "
                                           rf"machine {ENGINE_VERSION}\): install the same versions there; finished "
                                           "folds are kept$"):
            run(config, scheduler=address)
    assert RunStore().completed_folds(resolve(config).run_id, 2) == []


def test_versions_that_differ_are_named_and_the_platform_is_not_a_version():
    from leukdash.engine.scheduler.cluster import other_versions

    ours = {"engine": "3", "platform": "Linux-a", "cnn_dtype_policy": "mixed_bfloat16", "scikit-learn": "1.9.1",
            "tensorflow": "2.21.0"}
    same_code = {**ours, "platform": "Linux-b", "cnn_dtype_policy": "float32"}
    assert other_versions("tcp://w:1", same_code, ours, cnn=False) is None
    assert str(other_versions("tcp://w:1", same_code, ours, cnn=True)) == (
        "a Dask worker tcp://w:1 trains CNNs in float32 (this machine in mixed_bfloat16: their CPUs differ in "
        "native bfloat16), which gives other numbers: CNN runs need workers of this machine's CPU kind, or "
        "--scheduler local; finished folds are kept")
    older = {**ours, "scikit-learn": "1.5.0"}
    del older["tensorflow"]
    # TensorFlow (missing there) matters to CNN folds only.
    assert str(other_versions("tcp://w:1", older, ours, cnn=False)) == (
        "a Dask worker tcp://w:1 runs scikit-learn 1.5.0 (this machine 1.9.1): install the same versions there; "
        "finished folds are kept")
    assert "tensorflow none (this machine 2.21.0)" in str(other_versions("tcp://w:1", older, ours, cnn=True))


@pytest.mark.parametrize("error, said", [
    ("child died", "fold 2 of nb-x: the process computing it on a worker died (exit status -9), twice (Dask ran it "
                   "once more): often the worker's memory (a child is not held to Dask's --memory-limit); finished "
                   "folds are kept"),
    ("memory", "out of memory on a Dask worker (MemoryError: Unable to allocate 8 GiB): finished folds are kept; give "
               "the workers more memory (or no ulimit -v), or a smaller --image-size or --augment-factor"),
    ("other", "fold 2 of nb-x failed on a Dask worker (ValueError: odd); finished folds are kept"),
])
def test_a_fold_task_that_dask_cannot_bring_back_says_why_in_one_line(error, said):
    from leukdash.engine.scheduler.cluster import ChildDied, task_failure
    from leukdash.engine.scheduler.task import FoldTask

    raised = {"child died": ChildDied("the process computing it on a worker died (exit status -9)"),
              "memory": MemoryError("Unable to allocate 8 GiB"), "other": ValueError("odd")}[error]
    assert str(task_failure(raised, FoldTask("nb-x", 1, 3, {"model": "nb"}), "tcp://host:8786", "--scheduler")) == said


def test_a_closed_connection_to_a_scheduler_that_restarted_is_said_to_be_the_schedulers():
    from distributed.comm.core import CommClosedError

    from leukdash.engine.scheduler.cluster import task_failure
    from leukdash.engine.scheduler.task import FoldTask

    closed = CommClosedError("in <TCP (closed) ConnectionPool.gather local=tcp://127.0.0.1:1>: Stream is closed")
    lost = task_failure(closed, FoldTask("nb-x", 1, 3, {"model": "nb"}), "tcp://host:8786", "--scheduler")
    assert str(lost).startswith("lost the Dask scheduler at tcp://host:8786 (its connection closed): finished folds "
                                "are kept")


def test_a_stored_fold_is_not_computed_again_when_its_worker_is_lost(tiny_dataset, tmp_path):
    """Its result was held by the lost worker: Dask recomputes such a task while the client holds
    its future, which the run releases once the fold is stored."""
    from leukdash.engine.progress import read_events
    from leukdash.engine.runner import run
    from leukdash.engine.store import RunStore

    config = RunConfig(dataset=str(tiny_dataset), model="svm", image_size=24, augment_factor=4, folds=3)
    replacements: list[subprocess.Popen] = []
    with dask_cli_cluster(tmp_path / "cluster", n_workers=1) as (address, workers):
        def replace_the_worker(event: dict) -> None:
            if event["event"] == "fold_done" and not replacements:
                os.killpg(workers[0].pid, signal.SIGKILL)
                replacements.append(subprocess.Popen(
                    [str(Path(sys.executable).with_name("dask")), "worker", address, "--nthreads", "1",
                     "--no-dashboard"], env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, start_new_session=True,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        try:
            result = run(config, scheduler=address, on_event=replace_the_worker)
        finally:
            for process in replacements:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    events = read_events(RunStore().progress_path(result["run_id"]))
    first_done = next(e["fold"] for e in events if e["event"] == "fold_done")
    assert [e["fold"] for e in events if e["event"] == "fold_start"].count(first_done) == 1
    assert result["computed_folds"] == [0, 1, 2]


def test_a_notebook_cell_that_runs_an_event_loop_computes_on_the_cluster(one_worker, tiny_dataset, monkeypatch,
                                                                           tmp_path):
    """A Jupyter cell runs inside the kernel's event loop, where ``asyncio.run`` cannot start one:
    the scheduler's check must not (it refused every address there, a real scheduler too)."""
    import asyncio

    from leukdash.engine.runner import run

    address, _ = one_worker
    config = RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, augment_factor=1, folds=3)

    async def cell() -> dict:
        asyncio.get_running_loop()  # what the kernel gives a cell
        return run(config, scheduler=address)

    remote = asyncio.run(cell())
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tmp_path / "local"))
    _same_folds([remote], [run(config, n_jobs=1)])


@pytest.mark.parametrize("stops", ["as the run starts", "while a fold trains", "as a done fold's result is fetched"])
def test_a_scheduler_that_stops_answering_is_said_and_the_run_goes_on_when_it_is_back(one_worker, tiny_dataset,
                                                                                      monkeypatch, stops):
    """A stopped scheduler (SIGSTOP here; a suspended machine, a cut network) keeps its connections
    open and Dask waits on them without a word: the run says what it waits for, within the
    README's 15 s (at the watch's own intervals), then goes on. Also when it stops as soon as the
    tasks are submitted (a question without a deadline, due before the first probe, hung there),
    and between a fold's end and the fetch of its result (which goes through it)."""
    from leukdash.engine.runner import run
    from leukdash.engine.scheduler import cluster

    address, _ = one_worker
    with Client(address, timeout=30) as client:
        scheduler_pid = client.run_on_scheduler(os.getpid)
    config = RunConfig(dataset=str(tiny_dataset), model="cnn", image_size=16, augment_factor=1, folds=3, epochs=4,
                       batch_size=16)
    said, stopped = [], []

    def stop_scheduler() -> None:
        if not stopped:
            os.kill(scheduler_pid, signal.SIGSTOP)
            stopped.append(time.monotonic())

    if stops != "as the run starts":  # the README's intervals are kept where the hang was; the others need not wait
        monkeypatch.setattr(cluster, "SCHEDULER_PROBE_SECONDS", 0.5)
        monkeypatch.setattr(cluster, "SCHEDULER_ANSWER_SECONDS", 1.0)
    if stops == "as the run starts":
        watch = cluster._ClusterWatch.__init__
        monkeypatch.setattr(cluster._ClusterWatch, "__init__", lambda self, *args: (stop_scheduler(),
                                                                                    watch(self, *args))[1])
    if stops == "as a done fold's result is fetched":
        fetched = cluster._fetched
        monkeypatch.setattr(cluster, "_fetched", lambda future, watch: (stop_scheduler(), fetched(future, watch))[1])

    def stop_then_resume(event: dict) -> None:
        if event["event"] == "epoch" and stops == "while a fold trains":  # its result needs the scheduler
            stop_scheduler()
        if event["event"] == "message":
            said.append((event["message"], time.monotonic()))
            if "does not answer" in event["message"]:
                os.kill(scheduler_pid, signal.SIGCONT)

    resume_anyway = threading.Timer(60, os.kill, (scheduler_pid, signal.SIGCONT))  # a run that never says so ends
    resume_anyway.start()
    try:
        result = run(config, scheduler=address, on_event=stop_then_resume)
    finally:
        resume_anyway.cancel()
        os.kill(scheduler_pid, signal.SIGCONT)
    assert stopped and result["computed_folds"] == [0, 1, 2]
    assert [message for message, _ in said] == [
        f"waiting for the Dask scheduler at {address}: it does not answer (stopped, overloaded or cut off from this "
        "machine); finished folds are kept, Ctrl-C stops the run", f"the Dask scheduler at {address} answers again"]
    assert said[0][1] - stopped[0] <= 15 + 2  # a probe's own start-up aside
