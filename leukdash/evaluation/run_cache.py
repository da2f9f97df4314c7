"""Arrays a check computes from a finished run, stored beside it: ``<name>.npz`` with
``<name>.json``, the key of what they were computed from (method, dataset fingerprint, folds).

The two files are a cache, never a record: one that is missing, stale or damaged (truncated,
not a zip, pickled objects, a member missing or of the wrong shape) reads as absent, so the
check computes the arrays again and replaces both files atomically. Where the store cannot be
written (read-only, full) the arrays computed are used from memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from leukdash.data.arrays import NPZ_DAMAGE
from leukdash.engine.store import read_json, write_json_atomic


def read_run_cache(folder: Path, name: str, key: dict, members: tuple[str, ...],
                   valid: Callable[[dict], bool]) -> dict | None:
    """The arrays ``members`` of ``<name>.npz`` in ``folder`` when ``<name>.json`` holds ``key``
    and ``valid(arrays)``; ``None`` when either file is missing, stale or damaged."""
    try:
        if read_json(folder / f"{name}.json") != key:
            return None
        with np.load(folder / f"{name}.npz", allow_pickle=False) as stored:
            arrays = {member: stored[member] for member in members}
    except NPZ_DAMAGE:
        return None
    return arrays if valid(arrays) else None


def write_run_cache(folder: Path, name: str, key: dict, arrays: dict) -> None:
    """Store ``arrays`` as ``<name>.npz`` and then ``key`` as ``<name>.json`` beside them, each
    whole or not at all; skipped where the store cannot be written."""
    from leukdash.data.arrays import save_npz, write_cache

    if not folder.is_dir():  # the run was deleted meanwhile: a cache must not bring back its folder
        return
    if write_cache(folder / f"{name}.npz", lambda tmp: save_npz(tmp, **arrays)):
        write_json_atomic(folder / f"{name}.json", key, optional=True)  # only beside the arrays it describes
