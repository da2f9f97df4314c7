"""A fold task: one fold of one run, what it costs, and how it is computed wherever it runs."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

# A CNN fold always uses CNN_THREADS TensorFlow threads: the pools count them as its cores.
from leukdash.models.cnn import CNN_THREADS, set_tf_threads
from leukdash.engine.scheduler.capacity import fold_cores

# What a fold holds per training row (after augmentation), in bytes per uint8 image byte and per
# input value, and, for the SVM, per entry of its Gram matrix (measured peaks: see
# :attr:`FoldTask.memory_mb`).
CNN_BYTES_PER_IMAGE_BYTE = 6
CLASSIC_BYTES_PER_IMAGE_BYTE = 1
CLASSIC_BYTES_PER_INPUT = 16
SVM_BYTES_PER_GRAM_ENTRY = 8 * 1.35


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

    @cached_property
    def memory_mb(self) -> int:
        """Memory the fold adds to its worker process while it runs, from its training rows
        (computed once: the pool asks for it at every look at its budget).

        Its images (uint8, augmented) and, for a classic model, its input matrix (float32, scaled,
        and the float64 copy the SVM takes), plus the SVM's Gram matrix (float64, finished in blocks).
        Measured peaks of one worker (``python benchmarks/measure_fold_memory.py``, built-in
        five-class set, 903 images at 64 px, x8: 5,779 training rows; AMD EPYC, 2 cores): SVM on
        pixels 952-966 MB (counted with its worker: 983), 3-NN 599-604 (639), decision tree 429-441
        (639), CNN 1,123-1,200 (1,256); allidb2_ufpr (1,664 rows, ``--dataset allidb2_ufpr``):
        SVM 389-403 (426), 3-NN 336-345 (398), CNN 892-929 (967). A task whose run size is unknown
        (``n_images`` 0) adds nothing.
        """
        if not self.n_images:
            return 0
        from leukdash.engine.estimate import fold_work
        from leukdash.engine.ordering import FEATURE_INPUTS, PIXEL_INPUTS

        config = self.config
        rows = fold_work({**config, "image_size": 1, "epochs": 1}, self.n_images)
        image_bytes = rows * config["image_size"] ** 2 * 3
        if self.is_cnn:
            return round(image_bytes * CNN_BYTES_PER_IMAGE_BYTE / 2**20)
        inputs = PIXEL_INPUTS if config.get("feature_set", "pixels") == "pixels" else FEATURE_INPUTS
        held = image_bytes * CLASSIC_BYTES_PER_IMAGE_BYTE + rows * inputs * CLASSIC_BYTES_PER_INPUT
        if config["model"] == "svm":
            held += rows ** 2 * SVM_BYTES_PER_GRAM_ENTRY
        return round(held / 2**20)


def task_cores(task: FoldTask) -> int:
    return fold_cores(task.is_cnn)


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
