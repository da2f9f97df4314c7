"""``trust-models``: convert the classic models earlier versions pickled (``models/*.joblib``) to skops files.

Loading a pickle runs whatever code it holds, so leukdash loads none (:func:`leukdash.models.classic.load`
refuses them); a user who trusts a store converts its pickles once, with this. Each converted model's
record (its fold's ``folds/fold_<i>.json``, or ``final.json``) is rewritten with the new file's name and
sha256, so every check of the store passes as before. The pickle is then removed: nothing reads it any
more, and anything that did would run its code.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from pathlib import Path

from leukdash.atomic import write_atomic
from leukdash.engine.final import final_record
from leukdash.engine.record_shapes import is_ensemble, member_ids
from leukdash.engine.store import RunStore, file_sha256, read_json, write_json_atomic
from leukdash.errors import RunError
from leukdash.models import classic

_FOLD_PICKLE = re.compile(r"\Afold_(\d+)\.joblib\Z")


def trust_models(run_ids: list[str], store: RunStore | None = None) -> tuple[list[str], list[str]]:
    """Convert the pickled models of the runs ``run_ids`` (of every run in the store when empty) whose
    records name them, intact; one line per converted file, and one per run or file left as it was, and why."""
    store = store or RunStore()
    if not run_ids:
        run_ids = sorted({path.parent.parent.name for path in store.root.glob("*/models/*.joblib")})
    for run_id in run_ids:
        if not store.exists(run_id):
            raise RunError(f"run {run_id} is not in the store {store.root}: `python -m leukdash runs` lists its runs")
    converted, left = [], []
    for run_id in _with_members(run_ids, store):
        with ExitStack() as held:
            try:  # a run being computed holds its lock for as long as that takes: not waited for
                held.enter_context(store.lock(run_id, timeout=0))
            except RunError:
                left.append(f"run {run_id} is being computed by another process: its models were not converted; "
                            f"run `python -m leukdash trust-models {run_id}` again when it has finished")
                continue
            for pickle in sorted((store.run_dir(run_id) / "models").glob("*.joblib")):
                line, settled = _convert(run_id, pickle, store)
                (converted if settled else left).append(line)
    return converted, left


def _with_members(run_ids: list[str], store: RunStore) -> list[str]:
    """``run_ids`` and the members of those that are ensembles (theirs too), each once: an ensemble loads
    its members' models, so converting it alone would leave it refusing them."""
    ordered, pending = [], list(run_ids)
    while pending:
        run_id = pending.pop(0)
        if run_id in ordered or not store.exists(run_id):  # a member gone: the ensemble says so when used
            continue
        ordered.append(run_id)
        meta = store.read_meta(run_id)
        if is_ensemble(meta):
            pending.extend(member for member, _ in member_ids(meta))
    return ordered


def _convert(run_id: str, pickle: Path, store: RunStore) -> tuple[str, bool]:
    """Convert one pickle when its fold's record (or ``final.json``) names it and it is intact; the line that
    says what became of it, and whether it was settled (converted, or removed as no model of the run)."""
    matched = _FOLD_PICKLE.match(pickle.name)
    fold = int(matched.group(1)) if matched else None
    if fold is not None:
        result = store.read_fold(run_id, fold)  # checks the model's sha256 against the record
        if result is None:  # the record, now moved aside as damaged, or gone: the pickle is kept for the user
            meta_file = store.run_dir(run_id) / "meta.json"
            return (f"run {run_id}: models/{pickle.name} does not match its fold's record, or that record is damaged "
                    f"or missing: not converted; its fold is recomputed by `python -m leukdash run --config-file "
                    f"{meta_file}` (or by launching the run again)"), False
        # A fold stored before model hashes were recorded names no file: its pickle is its model.
        named = (read_json(store.fold_path(run_id, fold)).get("model") or {"file": pickle.name})["file"]
    else:
        record = final_record(run_id, store)
        named = None if record is None else record["file"]
    if named != pickle.name:
        if named == pickle.with_suffix(".skops").name:  # a conversion stopped after its record was rewritten
            pickle.unlink()
            return (f"run {run_id}: models/{pickle.name} removed: left over from an earlier conversion, its record "
                    f"names models/{named}"), True
        return f"run {run_id}: models/{pickle.name} is no model of the run (no record names it): left as it is", False
    skops_path = pickle.with_suffix(".skops")
    model = classic.load_pickle(pickle)
    write_atomic(skops_path, lambda tmp: classic.save(model, tmp))
    if fold is not None:
        store.write_fold(run_id, fold, result, model=skops_path)
    else:
        write_json_atomic(store.run_dir(run_id) / "final.json",
                          {**record, "file": skops_path.name, "sha256": file_sha256(skops_path)})
    pickle.unlink()
    return f"run {run_id}: models/{pickle.name} -> models/{skops_path.name}", True
