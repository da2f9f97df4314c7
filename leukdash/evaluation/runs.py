"""Runs as the CLI makes them, for a notebook: the engine's :func:`~leukdash.engine.runner.run`,
:func:`~leukdash.engine.runner.run_many`, :func:`~leukdash.engine.sweep.run_sweep` and
:func:`~leukdash.engine.sweep.resume_sweep`, each run storing beside it, as it finishes, what its checks
need of its images (:func:`~leukdash.evaluation.reference.store_references`).

The engine cannot name that step (it belongs to this layer), so a run made by the engine's own
functions builds those files on first use, from its folder: once the folder has changed, it has lost
its checks (Predict's known-image and out-of-distribution checks, ``evaluate``, ``oof``'s file names).
Options are the engine functions' own.
"""

from __future__ import annotations

from leukdash.engine import runner, sweep
from leukdash.evaluation.reference import store_references


def run(config, **options) -> dict:
    """:func:`leukdash.engine.runner.run`, storing the run's checks' files as it finishes."""
    return runner.run(config, finishing=store_references, **options)


def run_many(configs, **options) -> list[dict]:
    """:func:`leukdash.engine.runner.run_many`, storing each run's checks' files as it finishes."""
    return runner.run_many(configs, finishing=store_references, **options)


def run_sweep(configs, **options) -> dict:
    """:func:`leukdash.engine.sweep.run_sweep`, storing each run's checks' files as it finishes."""
    return sweep.run_sweep(configs, finishing=store_references, **options)


def resume_sweep(sweep_id: str, **options) -> dict:
    """:func:`leukdash.engine.sweep.resume_sweep`, storing each run's checks' files as it finishes."""
    return sweep.resume_sweep(sweep_id, finishing=store_references, **options)
