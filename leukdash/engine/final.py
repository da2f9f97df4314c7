"""A run's final model: refitted on every image of the run, beside its fold models.

The fold models each trained on (k-1)/k of the data (with cnmc_dev's two healthy subjects, each
saw one of them); a final model trains on all of it, the same way a fold trains. It has no
validation of its own: the run's cross-validated figures estimate how a model trained this
way fares, and ``evaluate --model final`` tests it on another dataset. It is recorded in the
run folder as ``final.json`` (the model file's sha256, training figures, versions) and
``models/final.<suffix>``; the run id, its folds and its summary are unchanged.
An ensemble run's final model is its members' final models, voting with the same weights.
"""

from __future__ import annotations

from leukdash.config import RunConfig
from leukdash.engine.record_shapes import is_ensemble, member_ids
from leukdash.engine.runner import finished_result
from leukdash.engine.versions import versions
from leukdash.engine.store import RunStore, file_sha256, read_json, write_json_atomic
from leukdash.errors import RunError

# What final.json holds and how the model is trained; a model of another version is refitted.
FINAL_VERSION = "final-1"
MODELS = ("folds", "final")


def final_record(run_id: str, store: RunStore | None = None) -> dict | None:
    """The run's ``final.json`` when its model file is intact and of this version, else None."""
    store = store or RunStore()
    try:
        record = read_json(store.run_dir(run_id) / "final.json")
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("version") != FINAL_VERSION:
        return None
    path = store.run_dir(run_id) / "models" / str(record.get("file"))
    return record if path.is_file() and file_sha256(path) == record.get("sha256") else None


def require_final(run_id: str, store: RunStore) -> dict:
    """:func:`final_record` of the run; one RunError with the command that trains it when it has none."""
    record = final_record(run_id, store)
    if record is None:
        raise RunError(f"run {run_id} has no final model (or it is damaged): "
                       f"{_how_to_train([run_id], run_id, store)} trains it on every image of the run")
    return record


def require_final_models(run_id: str, store: RunStore) -> None:
    """Each final model run ``run_id`` predicts with (an ensemble's: its members'), else one RunError
    with the command that trains them: for an ensemble, its own refit, which trains every member's
    (a member's refit would leave the next member missing)."""
    meta = store.finished_meta(run_id)
    if not is_ensemble(meta):
        require_final(run_id, store)
        return
    missing = [member for member, _ in member_ids(meta) if final_record(member, store) is None]
    if missing:
        raise RunError(f"ensemble {run_id}: member(s) {', '.join(missing)} have no final model (or it is damaged): "
                       f"{_how_to_train([run_id, *missing], run_id, store)} trains every member's on every image "
                       "of the run")


def _how_to_train(held: list[str], refit_id: str, store: RunStore) -> str:
    """The command that trains missing final models; while another process holds one of the runs
    ``held`` (a `refit` training them now), to wait for it instead of starting the same training."""
    if any(store.is_locked(run_id) for run_id in held):
        return "another process holds the run now (a `refit` training it, or its folds): wait for it to end; " \
               f"if it does not leave a final model, `python -m leukdash refit {refit_id}`"
    return f"`python -m leukdash refit {refit_id}`"


def final_model_path(run_id: str, config: RunConfig, store: RunStore):
    from leukdash.engine.training import model_suffix

    return store.run_dir(run_id) / "models" / f"final.{model_suffix(config)}"


def refit(run_id: str, store: RunStore | None = None, on_wait=None) -> dict:
    """Train (or read back) the final model of a finished run; returns its record (for an
    ensemble run: ``{"members": [member records]}``).

    While another process holds the run (refitting it, or computing its folds) this waits for
    it, after ``on_wait(message)``, and then reads back the model it trained."""
    store = store or RunStore()
    finished_result(run_id, store)
    meta = store.read_meta(run_id)
    if is_ensemble(meta):
        return {"run_id": run_id, "members": [refit(member, store, on_wait) for member, _ in member_ids(meta)]}
    found = final_record(run_id, store)
    if found is not None:
        return {**found, "cached": True}
    from leukdash.data.arrays import load_arrays
    from leukdash.engine.run_data import open_run_dataset
    from leukdash.engine.fold_planning import fold_inputs
    from leukdash.engine.training import train_final

    config = RunConfig.from_dict(meta["config"])
    if on_wait and store.is_locked(run_id):
        on_wait(f"another process holds run {run_id}: waiting for it")
    with store.lock(run_id):
        found = final_record(run_id, store)  # trained by the process waited for
        if found is not None:
            return {**found, "cached": True}
        dataset = open_run_dataset(meta, store)
        inputs = fold_inputs(config, dataset, load_arrays(dataset, config.image_size, config.preprocess))
        path = final_model_path(run_id, config, store)
        path.parent.mkdir(parents=True, exist_ok=True)
        trained = train_final(config, inputs, model_path=path)
        record = {"run_id": run_id, "version": FINAL_VERSION, "file": path.name, "sha256": file_sha256(path),
                  **trained, "versions": versions()}
        write_json_atomic(store.run_dir(run_id) / "final.json", record)
    return {**record, "cached": False}
