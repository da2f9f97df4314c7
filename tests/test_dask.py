"""A sweep on a real Dask cluster (scheduler + two workers started with the ``dask`` command line,
each in its own folder, without the store), one worker killed mid-sweep: every fold as computed locally."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="dask distributed is not installed")

from distributed import Client  # noqa: E402

from leukdash.config import RunConfig  # noqa: E402
from leukdash.engine.scheduler import dask_cli_cluster  # noqa: E402
from leukdash.engine.sweep import expand_grid, run_sweep  # noqa: E402


@pytest.fixture
def cluster(tmp_path):
    with dask_cli_cluster(tmp_path / "cluster", n_workers=2) as (address, workers):
        yield address, workers, [tmp_path / "cluster" / f"worker{i}" for i in range(2)]


def _configs(dataset: Path) -> list[RunConfig]:
    base = RunConfig(dataset=str(dataset), image_size=16, augment_factor=2, folds=3, epochs=1, batch_size=16)
    return expand_grid(base, [{"model": "cnn"}, {"model": "knn", "feature_set": "pixels"},
                              {"model": "nb", "feature_set": "features", "augment_factor": 1}])


def _kill_a_busy_worker(address: str, processes: list[subprocess.Popen], killed: list) -> None:
    """SIGKILL the first worker (with its nanny) seen holding a fold task."""
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
    assert [r["run_id"] for r in remote["results"]] == [r["run_id"] for r in local["results"]]
    for a, b in zip(remote["results"], local["results"]):
        assert a["computed_folds"] == [0, 1, 2]
        assert _comparable(a) == _comparable(b)
    # The workers never wrote a run: the process that owns the store did.
    assert not any((folder / "artifacts" / "runs").exists() for folder in worker_folders)
