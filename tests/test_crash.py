"""Crash safety: ``leukdash run`` killed with SIGTERM or SIGKILL at seeded random moments leaves no
worker behind, and the rerun ends with exactly the folds of an uninterrupted run."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
POINTS = 5  # kills per signal


def _command(dataset: Path) -> list[str]:
    return [sys.executable, "-m", "leukdash", "run", str(dataset), "--model", "knn", "--feature-set", "features",
            "--image-size", "16", "--augment-factor", "2", "--folds", "4", "--n-jobs", "2", "--json", "--quiet"]


def _start(dataset: Path, store: Path) -> subprocess.Popen:
    return subprocess.Popen(_command(dataset), cwd=ROOT, env={**os.environ, "LEUKDASH_ARTIFACTS": str(store)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _folds(output: str) -> list[dict]:
    return [{k: v for k, v in fold.items() if k != "seconds"} for fold in json.loads(output)["folds"]]


def _kill_after(job: subprocess.Popen, delay: float, signum: int) -> tuple[list[psutil.Process], str]:
    """Signal the run (its process only, not its group) after ``delay`` s; its descendants seen by then."""
    parent, seen = psutil.Process(job.pid), {}
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and job.poll() is None:
        try:
            seen.update({child.pid: child for child in parent.children(recursive=True)})
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    if job.poll() is None:
        job.send_signal(signum)
    _, stderr = job.communicate(timeout=60)
    return list(seen.values()), stderr


def _survivors(processes: list[psutil.Process], wait: float = 10) -> list[int]:
    _, alive = psutil.wait_procs(processes, timeout=wait)
    return [p.pid for p in alive]


@pytest.fixture(scope="module")
def uninterrupted(tiny_dataset, tmp_path_factory) -> tuple[float, list[dict]]:
    """The run's wall time and folds, computed once without interruption."""
    started = time.monotonic()
    whole = _start(tiny_dataset, tmp_path_factory.mktemp("whole"))
    out, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err
    return time.monotonic() - started, _folds(out)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_killed_runs_leave_no_worker_and_resume_to_the_same_folds(tiny_dataset, tmp_path, signum, uninterrupted):
    duration, reference = uninterrupted

    rng = random.Random(int(signum))  # seeded: the same moments at every test run
    outcomes = []
    for point in range(POINTS):
        store = tmp_path / f"{signum.name}-{point}"
        job = _start(tiny_dataset, store)
        workers, stderr = _kill_after(job, rng.uniform(0.2, duration), signum)
        outcomes.append(job.returncode)
        assert _survivors(workers) == [], f"workers left running after {signum.name} at point {point}"
        if job.returncode == -signum:
            pass  # SIGKILL, or SIGTERM before the handler was installed (interpreter start-up)
        elif job.returncode != 0:
            assert signum == signal.SIGTERM and job.returncode == 128 + signum, \
                f"exit {job.returncode} after {signum.name} at point {point}; its stderr ends: {stderr[-2000:]}"
            assert stderr.strip().splitlines()[-1].startswith("stopped by SIGTERM: finished folds are kept")
        rerun = _start(tiny_dataset, store)
        out, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err
        assert _folds(out) == reference
    assert any(code != 0 for code in outcomes), "no kill landed before the run ended"
