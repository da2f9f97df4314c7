"""What the local pool can hold at once: the memory a worker of each kind takes, the cores a fold
takes, the budget (``LEUKDASH_MEMORY_MB``) and the folds of a kind that fit side by side. Apart from
the pool, so that the time estimate counts folds as the pool runs them (an import of the pool
would circle back through its ordering to the estimate)."""

from __future__ import annotations

from leukdash.engine import machine
from leukdash.models.cnn import CNN_THREADS

# Resident memory of a worker process, without the fold it computes (benchmarks/measure_memory.py
# and benchmarks/measure_fold_memory.py: a worker that has imported TensorFlow and trained an
# allidb2_ufpr fold at 64 px peaked at 900-973 MB, of which ~115 MB are the fold's images; a
# scikit-learn worker on a tiny set 230-255 MB).
TF_WORKER_MB = 850
CLASSIC_WORKER_MB = 300
# The budget on a small machine: Streamlit Community Cloud gives an app ~2.7 GB, of which the
# server takes up to ~0.8 GB once TensorFlow is loaded for a prediction; 1.6 GB of workers
# (one TensorFlow fold and two classic folds; two TensorFlow folds measured 2.96 GB in all)
# keeps the whole app under 2.5 GB.
SMALL_MACHINE_BUDGET_MB = 1600


def memory_budget_mb() -> int:
    """Memory the local pool's workers may take: ``$LEUKDASH_MEMORY_MB``, else half of the
    machine's (or container's) memory, at least ``SMALL_MACHINE_BUDGET_MB``."""
    configured = machine.configured_memory_mb()
    if configured:
        return configured
    total = machine.machine_memory_mb()
    return max(SMALL_MACHINE_BUDGET_MB, total // 2) if total else SMALL_MACHINE_BUDGET_MB


def folds_at_once(cnn: bool, cores: int | None = None, memory_mb: int | None = None) -> int:
    """Folds of a kind the local pool computes side by side: as many as its ``cores`` (default: those
    this process may use, its CPU affinity) and its workers' ``memory_mb`` (default:
    :func:`memory_budget_mb`) allow, at least one."""
    cores, memory_mb = cores or machine.machine_cores(), memory_mb or memory_budget_mb()
    return max(1, min(cores // fold_cores(cnn), memory_mb // worker_mb(cnn)))


def worker_mb(cnn: bool) -> int:
    """Resident memory of a worker process of the kind, without its fold."""
    return TF_WORKER_MB if cnn else CLASSIC_WORKER_MB


def fold_cores(cnn: bool) -> int:
    """Cores a fold of the kind takes: a CNN's TensorFlow threads, else one."""
    return CNN_THREADS if cnn else 1
