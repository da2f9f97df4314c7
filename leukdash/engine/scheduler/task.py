"""A fold task: one fold of one run, what it costs, and how it is computed wherever it runs."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

# A CNN fold always uses CNN_THREADS TensorFlow threads: the pools count them as its cores.
from leukdash.models.cnn import CNN_THREADS, set_tf_threads


@dataclass(frozen=True)
class FoldTask:
    """One fold of one run, as the scheduler sees it."""

    run_id: str
    fold: int
    n_folds: int
    config: dict  # RunConfig.to_dict()
    n_images: int = 0  # of its run (0: not known), for the estimate of its memory

    @property
    def is_cnn(self) -> bool:
        return self.config["model"] == "cnn"


def task_cores(task: FoldTask) -> int:
    return CNN_THREADS if task.is_cnn else 1


def compute_fold(task: FoldTask, inputs, report=None) -> dict:
    """Compute one fold; return ``{"result": fold result, "model": model file bytes}``.

    Thread counts are set here, not by the caller, so a fold computes the same in a local
    worker, in this process or on a cluster worker.
    """
    from threadpoolctl import threadpool_limits

    from leukdash.config import RunConfig
    from leukdash.engine.training import model_suffix, run_fold

    config = RunConfig.from_dict(task.config)
    if config.is_cnn:
        set_tf_threads(CNN_THREADS)

    def relay(event: dict) -> None:
        if report is not None:
            report({**event, "fold": task.fold, "n_folds": task.n_folds})

    with tempfile.TemporaryDirectory(prefix="leukdash-fold-") as folder, threadpool_limits(1):
        path = Path(folder) / f"model.{model_suffix(config)}"
        result = run_fold(config, inputs, task.fold, model_path=path, report=relay)
        return {"result": result, "model": path.read_bytes()}
