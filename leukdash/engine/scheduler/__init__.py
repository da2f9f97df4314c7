"""One pool for every fold task of every run: local worker processes or a Dask cluster.

A task is one fold of one run (:mod:`.task`). It receives its config and its run's decoded
inputs (:class:`leukdash.engine.fold_planning.FoldInputs`) and returns the fold result and the model
file's bytes; the process that owns the run store writes both (see :mod:`leukdash.engine.runner`).
Workers therefore need no shared file system, and a worker that dies mid-task loses nothing but
the task, which is computed again with an identical result.

- :mod:`.local`: in this process (``n_jobs=1``), or worker processes on this machine within one
  budget of cores and memory;
- :mod:`.cluster`: with an address (``tcp://HOST:8786``, or ``LEUKDASH_SCHEDULER``; ``local``: this
  machine) the same tasks on a Dask distributed cluster, whose scheduler needs nothing of leukdash;
- :mod:`.child`: the worker process both use, and :mod:`.lifetime`: how it ends with its parent;
- :mod:`.pool`: what the runner asks of either pool besides its tasks (workers started ahead).
"""

from __future__ import annotations

import os

from leukdash.engine.scheduler.cluster import DaskPool, dask_cli_cluster
from leukdash.engine.machine import machine_cores
from leukdash.engine.scheduler.capacity import (CLASSIC_WORKER_MB, SMALL_MACHINE_BUDGET_MB, TF_WORKER_MB,
                                                memory_budget_mb)
from leukdash.engine.scheduler.local import InProcessPool, LocalPool
from leukdash.engine.scheduler.task import CNN_THREADS, FoldTask

__all__ = ["CLASSIC_WORKER_MB", "CNN_THREADS", "SMALL_MACHINE_BUDGET_MB", "TF_WORKER_MB", "DaskPool", "FoldTask",
           "InProcessPool", "LOCAL", "LocalPool", "address_source", "dask_cli_cluster", "machine_cores", "make_pool",
           "memory_budget_mb", "scheduler_address"]


# The address forms of Dask's comms that a cluster of this project can listen on (not inproc://,
# which lives inside one process).
DASK_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


# The address that means this machine, whatever LEUKDASH_SCHEDULER says (``--scheduler local``).
LOCAL = "local"


def address_source(address: str | None) -> str:
    """Where the address in use is given: the option (``address``, from it or a caller), else the variable."""
    return "--scheduler" if address is not None else "LEUKDASH_SCHEDULER"


def scheduler_address(address: str | None = None) -> str | None:
    """The Dask scheduler to use: ``address``, else ``$LEUKDASH_SCHEDULER``, else None (local);
    None too where either is ``local``.

    Checked here, before any run is started: ``SCHEME://HOST:PORT`` (or ``HOST:PORT``, which
    Dask reads as tcp), exactly: no space around it, no path after it, the scheme in lower case
    (Dask refuses them, or reads them otherwise); else a :class:`~leukdash.errors.ConfigError`
    that says which setting is wrong.
    """
    from urllib.parse import urlsplit

    from leukdash.errors import ConfigError

    source = address_source(address)
    given = address if address is not None else os.environ.get("LEUKDASH_SCHEDULER")
    if address is not None and not address.strip():  # not read as "use the variable": that is leaving it out
        raise ConfigError(f"--scheduler is empty (an unset shell variable?): give SCHEME://HOST:PORT, or {LOCAL} to "
                          "compute on this machine")
    if not given or given == LOCAL:
        return None
    full = given if "://" in given else f"tcp://{given}"
    try:  # a bracket left open ('tcp://[::1') is refused by urlsplit itself
        parts = urlsplit(full)
        port = parts.port
    except ValueError:
        parts, port = urlsplit(""), None
    # urlsplit strips spaces, lower-cases the scheme and sets a path aside: what it read must be all
    exact = full == f"{parts.scheme}://{parts.netloc}" and "@" not in parts.netloc
    if not exact or parts.scheme not in DASK_SCHEMES or not parts.hostname or port is None:
        raise ConfigError(f"{source} {given!r} is not a Dask scheduler address: give SCHEME://HOST:PORT and nothing "
                          f"more, with SCHEME one of {', '.join(DASK_SCHEMES)}, e.g. tcp://127.0.0.1:8786 (or {LOCAL} "
                          "to compute on this machine)")
    return given


def make_pool(address: str | None = None, n_jobs: int | None = None):
    """A Dask pool for an address (argument or ``LEUKDASH_SCHEDULER``), else (none, or ``local``) a local one.

    ``n_jobs`` caps the cores a local pool uses (1 computes in this process); results do not
    depend on it.
    """
    given = scheduler_address(address)
    if given:
        return DaskPool(given, address_source(address))
    if n_jobs == 1:
        return InProcessPool()
    return LocalPool(cores=min(n_jobs, machine_cores()) if n_jobs else None)
