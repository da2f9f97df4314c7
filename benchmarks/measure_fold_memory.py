"""Peak memory of one worker process per kind of fold, against the pool's estimate.

For each model, ``python -m leukdash run DATASET --model MODEL --n-jobs 2`` runs in a fresh
temporary store (the built-in set is drawn there first when it is the dataset); the resident
memory (RSS, psutil) of the run's worker processes is sampled every 0.1 s. Printed per model: the
peak of each worker, and what the local pool counts for such a worker while it computes one fold
(``TF_WORKER_MB`` or ``CLASSIC_WORKER_MB`` plus :attr:`leukdash.engine.scheduler.FoldTask.memory_mb`).

    python benchmarks/measure_fold_memory.py [--dataset synthetic] [--models svm,knn,dt,cnn]
        [--epochs 2]

CNN runs use ``--epochs`` (memory does not grow with epochs; time does).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MB = 2**20


def worker_peaks(command: list[str], env: dict) -> list[int]:
    """Run ``command``; the peak RSS (MB) of each of its descendant processes."""
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    parent, peaks = psutil.Process(process.pid), {}
    while process.poll() is None:
        try:
            children = parent.children(recursive=True)
        except psutil.Error:
            break
        for child in children:
            try:
                peaks[child.pid] = max(peaks.get(child.pid, 0), child.memory_info().rss)
            except psutil.Error:
                pass
        time.sleep(0.1)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with status {process.returncode}")
    return sorted(round(peak / MB) for peak in peaks.values())


def estimate_mb(model: str, dataset: str, epochs: int) -> int:
    """What the local pool counts for a worker computing one fold of this run."""
    from leukdash.config import RunConfig
    from leukdash.data.discovery import open_dataset
    from leukdash.engine.scheduler.capacity import CLASSIC_WORKER_MB, TF_WORKER_MB
    from leukdash.engine.scheduler.task import FoldTask

    config = RunConfig(dataset=dataset, model=model, epochs=epochs)
    task = FoldTask("estimate", 0, config.folds, config.to_dict(), len(open_dataset(dataset).items))
    return (TF_WORKER_MB if task.is_cnn else CLASSIC_WORKER_MB) + task.memory_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--models", default="svm,knn,dt,cnn")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    from leukdash.engine.machine import describe_machine, machine_text

    print(f"{args.dataset}, default settings (64 px, x8, 5 folds), on {machine_text(describe_machine())}")
    print(f"{'model':<6} {'workers peak (MB)':<22} {'pool counts (MB)':>16}")
    for model in args.models.split(","):
        store = Path(tempfile.mkdtemp(prefix="fold-memory-"))
        try:
            env = {**os.environ, "LEUKDASH_ARTIFACTS": str(store)}
            os.environ["LEUKDASH_ARTIFACTS"] = str(store)  # the estimate opens the dataset in the same store
            estimate = estimate_mb(model, args.dataset, args.epochs)
            peaks = worker_peaks([sys.executable, "-m", "leukdash", "run", args.dataset, "--model", model,
                                  "--epochs", str(args.epochs), "--n-jobs", "2", "--quiet"], env)
            print(f"{model:<6} {', '.join(map(str, peaks)):<22} {estimate:>16}")
        finally:
            shutil.rmtree(store, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
