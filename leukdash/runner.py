"""Run a config: find which folds are missing, compute them (in parallel), collect the result.

A fold is a pure function of (config, fold index) -> fold result; this module only schedules
folds through joblib and persists what they return, the moment each one finishes. A finished
run is answered from the store alone: nothing heavy (scikit-learn, TensorFlow) is imported.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from leukdash import ENGINE_VERSION, __version__
from leukdash.config import RunConfig, stable_hash
from leukdash.data.dataset import Dataset
from leukdash.data.discovery import open_dataset
from leukdash.progress import append_event, forward_events
from leukdash.store import RunStore

# CNN folds computed at once by default. TensorFlow keeps two cores only ~70% busy on one small
# fold (measured: a strict allidb2_ufpr run took 108 s with two folds at a time against 128 s one
# at a time, with identical results); more processes, each with a thread pool the size of the
# machine, would oversubscribe its cores.
CNN_PARALLEL_FOLDS = 2

SCALAR_METRICS = ("val_acc", "val_loss", "train_acc", "train_loss", "balanced_acc", "macro_f1", "seconds")


@dataclass(frozen=True)
class ResolvedRun:
    """A validated config with its dataset (class subset applied) and its run id."""

    config: RunConfig
    dataset: Dataset
    run_id: str


def resolve(config: RunConfig) -> ResolvedRun:
    """Validate the config, open its dataset and compute the run id (no heavy imports)."""
    config.validate()
    dataset = open_dataset(config.dataset)
    if config.classes:
        dataset = dataset.subset(config.classes)
    key = {"config": config.canonical(), "dataset": dataset.fingerprint, "engine": ENGINE_VERSION}
    return ResolvedRun(config, dataset, f"{config.model}-{stable_hash(key)}")


def run(config: RunConfig, *, n_jobs: int | None = None, store: RunStore | None = None,
        on_event=None) -> dict:
    """Compute (or read back) every fold of a run and return its result.

    Parameters
    ----------
    n_jobs : folds computed at once, each in its own worker process; default one per core for
        classic models and ``CNN_PARALLEL_FOLDS`` (at most one per core) for the CNN. Results do
        not depend on it.
    on_event : called with each progress event, e.g. to draw a progress bar.

    Returns
    -------
    dict with ``run_id``, ``cached``, ``computed_folds``, ``config``, ``dataset``, ``folds``,
    ``summary``, ``seconds``.
    """
    started = time.perf_counter()
    store = store or RunStore()
    resolved = resolve(config)
    run_id = resolved.run_id
    cached = store.read_summary(run_id)
    if cached is not None:
        result = load_result(run_id, store)
        if result is not None:
            return {**result, "cached": True, "computed_folds": [], "seconds": time.perf_counter() - started}
    if store.is_locked(run_id) and on_event:
        on_event({"event": "message", "message": "another process is computing this run: waiting for it"})
    with store.lock(run_id):
        try:
            computed = _compute_missing(resolved, store, n_jobs, on_event)
        except Exception as error:
            _emit(store.progress_path(run_id), {"event": "failed", "message": f"{type(error).__name__}: {error}"},
                  on_event)
            raise
    result = load_result(run_id, store)
    return {**result, "cached": not computed, "computed_folds": computed,
            "seconds": time.perf_counter() - started}


def run_many(configs: list[RunConfig], *, n_jobs: int | None = None, store: RunStore | None = None,
             on_event=None) -> list[dict]:
    """Compute (or read back) several runs; the results in the order of ``configs``.

    Each run is cached and resumable on its own, exactly as with ``run``.
    """
    return [run(config, n_jobs=n_jobs, store=store, on_event=on_event) for config in configs]


def load_result(run_id: str, store: RunStore | None = None) -> dict | None:
    """A finished run from the store, or None when it is not complete."""
    store = store or RunStore()
    meta, summary = store.read_meta(run_id), store.read_summary(run_id)
    if meta is None or summary is None:
        return None
    folds = [store.read_fold(run_id, fold) for fold in meta["fold_ids"]]
    if any(fold is None for fold in folds):
        return None
    return {"run_id": run_id, "config": meta["config"], "dataset": meta["dataset"],
            "versions": meta["versions"], "folds": folds, "summary": summary}


def _compute_missing(resolved: ResolvedRun, store: RunStore, n_jobs, on_event) -> list[int]:
    from joblib import Parallel, delayed

    from leukdash.metrics import summarize_folds
    from leukdash.training import load_arrays, plan_folds

    config, run_id = resolved.config, resolved.run_id
    arrays = load_arrays(resolved.dataset, config.image_size, config.preprocess)
    _, fold_ids = plan_folds(config, resolved.dataset, arrays)
    store.write_meta(run_id, _meta(resolved, arrays, fold_ids))
    done = store.completed_folds(run_id, len(fold_ids))
    missing = [f for f in fold_ids if f not in done]
    progress_path = store.progress_path(run_id)
    event = {"event": "start", "run_id": run_id, "folds": len(fold_ids), "missing": missing,
             "done_folds": [f for f in fold_ids if f not in missing],
             "epochs": config.epochs if config.is_cnn else None}
    _emit(progress_path, event, on_event)
    if missing:
        cores = os.cpu_count() or 1
        jobs = n_jobs or min(len(missing), cores, CNN_PARALLEL_FOLDS if config.is_cnn else cores)
        args = (config.to_dict(), str(resolved.dataset.root), run_id, str(store.root))
        if jobs == 1:
            # In-process, so progress reaches on_event as it happens.
            for fold in missing:
                _fold_task(*args, fold, len(fold_ids), on_event)
        else:
            with forward_events(progress_path, on_event):
                Parallel(n_jobs=jobs)(delayed(_fold_task)(*args, fold, len(fold_ids)) for fold in missing)
    folds = [store.read_fold(run_id, fold) for fold in fold_ids]
    store.write_summary(run_id, summarize_folds(folds))
    _emit(progress_path, {"event": "done", "run_id": run_id}, on_event)
    return missing


def _fold_task(config_dict: dict, dataset_root: str, run_id: str, store_root: str, fold: int,
               n_folds: int, on_event=None) -> None:
    """Compute one fold and write it to the store; runs in a joblib worker or in-process."""
    from leukdash.training import model_suffix, run_fold

    config = RunConfig.from_dict(config_dict)
    store = RunStore(Path(store_root))
    dataset = Dataset.from_folder(Path(dataset_root))
    if config.classes:
        dataset = dataset.subset(config.classes)
    progress_path = store.progress_path(run_id)

    def report(event: dict) -> None:
        _emit(progress_path, {**event, "fold": fold, "n_folds": n_folds}, on_event)

    model_path = store.model_path(run_id, fold, model_suffix(config))
    result = run_fold(config, dataset, fold, model_path=model_path, report=report)
    store.write_fold(run_id, fold, result, model=model_path)
    report({"event": "fold_done", "metrics": {"val_acc": result["val_acc"], "val_loss": result["val_loss"]},
            "seconds": result["seconds"]})


def _emit(path: Path, event: dict, on_event) -> None:
    append_event(path, event)
    if on_event:
        on_event(event)


def _meta(resolved: ResolvedRun, arrays, fold_ids: list[int]) -> dict:
    dataset = resolved.dataset
    return {
        "run_id": resolved.run_id,
        "config": resolved.config.to_dict(),
        "canonical": resolved.config.canonical(),
        "dataset": {**dataset.describe(), "fingerprint": dataset.fingerprint,
                    "classes": list(dataset.classes), "counts": dataset.counts(),
                    "n_used": int(len(arrays.labels)),
                    "skipped": [s.to_dict(dataset.root) for s in arrays.skipped]},
        "fold_ids": fold_ids,
        "versions": versions(),
    }


def versions() -> dict:
    """Versions of leukdash and of the packages that compute results."""
    from importlib.metadata import PackageNotFoundError, version

    from leukdash.models.cnn import TRAINING_POLICY

    # bfloat16 and float32 training give slightly different numbers: the policy is recorded.
    found = {"leukdash": __version__, "engine": ENGINE_VERSION, "python": sys.version.split()[0],
             "platform": platform.platform(), "cnn_dtype_policy": TRAINING_POLICY}
    for package in ("numpy", "opencv-python-headless", "scikit-learn", "tensorflow-cpu", "tensorflow", "keras"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found
