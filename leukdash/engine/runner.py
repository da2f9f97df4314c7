"""Run configs: find which folds are missing, compute them in one pool, collect the results.

A fold is a pure function of (config, fold inputs, fold index) -> fold result. This module
prepares each run's inputs, hands every missing fold of every run to one scheduler (see
:mod:`leukdash.engine.scheduler`: local processes or a Dask cluster) and, as the one writer of the
store, persists each fold result and model the moment it comes back. A finished run is
answered from the store alone: nothing heavy (scikit-learn, TensorFlow) is imported.

One module, though long (about 620 lines): resolving a run's id, computing its missing folds (a run
refused for its own settings ending alone, the others going on; a stopped run of the same command
that the new one cannot resume named), the checks an attempt at a stored
run must pass before it adds folds to it (the same versions, the same fold plan and training parts,
:func:`config_to_finish`'s settings) and the record each attempt writes are one run's life as the
store's one writer sees it; the checks read the fold inputs the compute loop has just built and are
called from it alone, and :func:`config_to_finish` needs :func:`resolve`, so apart they would import
each other.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass
from pathlib import Path

from leukdash import ENGINE_VERSION, arguments
from leukdash.atomic import warn_not_stored, write_bytes_atomic
from leukdash.config import RunConfig, dataset_parts, stable_hash
from leukdash.data.dataset import Dataset, check_class_counts
from leukdash.data.discovery import open_dataset
from leukdash.errors import ConfigError, DatasetError, LeukdashError, RunError, RunRefused, RunsFailed
from leukdash.engine.machine import describe_machine
from leukdash.engine.progress import append_event, count
from leukdash.engine.run_data import note_dataset_found, record_for
from leukdash.engine.store import RunStore
from leukdash.engine.versions import differing_versions, versions, versions_text
from leukdash.paths import printable, uploads_root

SCALAR_METRICS = ("val_acc", "val_loss", "train_acc", "train_loss", "balanced_acc", "macro_f1", "seconds")


@dataclass(frozen=True)
class ResolvedRun:
    """A validated config with its dataset (class subset applied) and its run id."""

    config: RunConfig
    dataset: Dataset
    run_id: str


def resolve(config: RunConfig) -> ResolvedRun:
    """Validate the config, open its dataset and compute the run id (no heavy imports)."""
    if not isinstance(config, RunConfig):
        hint = ": make one with RunConfig(**settings)" if isinstance(config, dict) else ""
        raise TypeError(f"config: expected a RunConfig, got a {type(config).__name__}{hint}")
    config.validate()
    dataset = open_dataset(config.dataset)
    if config.classes:
        dataset = dataset.subset(config.classes)
    if config.protocol != "lodo":  # counted from the file names: refused before any lock or folder exists
        try:
            check_class_counts(dataset.classes, dataset.labels, config.folds, dataset.name, config.test_fraction)
        except DatasetError as error:  # too few images: say if files left out are why
            raise dataset.with_left_out(error) from None
    key = {"config": config.canonical(), "dataset": dataset.fingerprint, "engine": ENGINE_VERSION}
    sessions = upload_sessions(config.dataset)
    if sessions:  # the same bytes uploaded in two sessions are two runs: neither learns of the other's
        key["upload_sessions"] = sessions
    return ResolvedRun(config, dataset, f"{config.model}-{stable_hash(key)}")


def settings_key(config: RunConfig) -> str:
    """What runs of one command share: the dataset as given and the settings, not the images it holds
    now nor the engine (so the run of a command before its folder changed and the run after it share it)."""
    return stable_hash({"dataset": config.dataset, "config": config.canonical()}, 32)


def superseded_partial_runs(new_runs: list[ResolvedRun], store: RunStore) -> dict[str, list[str]]:
    """For each of ``new_runs`` (runs with no fold stored yet), one line for each stopped, partial run of
    its command (:func:`settings_key`) that is another run: its images (or the engine) changed since, so
    its finished folds cannot be reused. One pass over the store's runs of their models, however many
    runs a sweep starts."""
    wanted = {settings_key(r.config) for r in new_runs}
    ids = {r.run_id for r in new_runs}
    partial: dict[str, list[tuple[str, int, int]]] = {}
    for model in sorted({r.config.model for r in new_runs}):
        for folder in sorted(store.root.glob(f"{model}-*")):
            if folder.name in ids or store.is_locked(folder.name):  # a locked one is being computed
                continue
            try:
                meta = store.read_meta(folder.name)
                key = None if meta is None else settings_key(RunConfig.from_dict(meta["config"]))
                if key not in wanted:
                    continue
                done = sum(store.read_fold(folder.name, fold) is not None for fold in meta["fold_ids"])
            except (LeukdashError, OSError, KeyError, TypeError):  # a record this version cannot read: not a command's
                continue
            if done < len(meta["fold_ids"]):
                partial.setdefault(key, []).append((folder.name, done, len(meta["fold_ids"])))
    return {r.run_id: [f"run {name} of these settings stopped after {done} of its {folds} folds, and the images of "
                       f"{r.config.dataset} (or the engine version) changed since: its folds cannot be reused, so "
                       f"this is a new run, {r.run_id}; the earlier one stays in the store, partial"
                       for name, done, folds in partial.get(settings_key(r.config), [])]
            for r in new_runs}


def config_to_finish(meta: dict, store: RunStore | None = None) -> RunConfig:
    """The config that computes the run ``meta`` (its ``meta.json``) records, to finish it: its
    dataset as given while that still gives the run, else the folder its images were read from (or
    one it was answered for since): a relative path given in another working folder names other
    images, or none. Refused, naming both ids, when the settings give another run now (its images
    changed, another engine version)."""
    from dataclasses import replace

    from leukdash.engine.run_data import dataset_sources, open_run_dataset

    config, failure, other = RunConfig.from_dict(meta["config"]), None, None
    for source in dataset_sources(meta, store or RunStore()):
        try:
            resolved = resolve(replace(config, dataset=source))
        except LeukdashError as error:  # that name or folder is gone: the next one may hold the images
            failure = failure or error
            continue
        if resolved.run_id == meta["run_id"]:
            return resolved.config
        other = other or (resolved.run_id, source)
    if other is None:  # no source gives a run: the images are gone, which this says with where they were read
        open_run_dataset(meta, store or RunStore())
        raise failure
    # What the record itself tells of why: another engine, or settings kept otherwise since; else the images.
    engine, rounded = (meta.get("versions") or {}).get("engine"), _rounded_settings(meta["config"], config)
    if engine is not None and str(engine) != ENGINE_VERSION:
        why = f"it was computed by leukdash engine {engine}, and this is engine {ENGINE_VERSION}"
    elif rounded:
        why = (f"it was stored with settings this leukdash keeps otherwise ({'; '.join(rounded)}: to 12 "
               "significant digits, -0.0 as 0)")
    else:
        raise RunError(f"cannot finish run {meta['run_id']}: its settings give run {other[0]} now, on the images of "
                       f"{printable(other[1])} (files added, removed or changed since): put the run's images back, "
                       "or run the settings on the images as they are (a new run)")
    raise RunError(f"cannot finish run {meta['run_id']}: {why}, so its settings give run {other[0]} now: run them "
                   "as a new run (the stored run stays readable)")


def _rounded_settings(stored: dict, config: RunConfig) -> list[str]:
    """The number settings a ``meta.json`` holds otherwise than ``config`` (made from it) keeps them:
    a computed value such as 0.7000000000000001, or -0.0, which earlier engines hashed as they were."""
    import json
    from dataclasses import asdict

    kept = asdict(config)
    pairs = [(name, value, kept.get(name)) for name, value in stored.items() if name != "augment"]
    if isinstance(stored.get("augment"), dict) and isinstance(kept.get("augment"), dict):
        pairs += [(f"augment.{name}", value, kept["augment"].get(name)) for name, value in stored["augment"].items()]
    return [f"{name} {value!r}" for name, value, now in pairs
            if isinstance(value, float) and json.dumps(value) != json.dumps(now)]  # -0.0 == 0.0, but not as text


def upload_sessions(dataset: str) -> list[str]:
    """The dashboard sessions whose uploads a config's dataset names (their folders under
    ``uploads/``); none for a dataset found by name or a folder of the user's own."""
    sessions = set()
    for part in dataset_parts(dataset):
        path = Path(part).expanduser()
        if not path.is_absolute():  # a dataset's name: the dashboard names an upload by its full path
            continue
        path, uploads = path.resolve(), uploads_root().resolve()
        if path != uploads and path.is_relative_to(uploads):
            sessions.add(path.relative_to(uploads).parts[0])
    return sorted(sessions)


def run(config: RunConfig, *, n_jobs: int | None = None, store: RunStore | None = None,
        on_event=None, scheduler: str | None = None, finishing=None) -> dict:
    """Compute (or read back) every fold of a run and return its result: ``run_many`` of one.

    Returns
    -------
    dict with ``run_id``, ``cached``, ``computed_folds``, ``config``, ``dataset``, ``folds``,
    ``summary``, ``seconds``.
    """
    return run_many([config], n_jobs=n_jobs, store=store, on_event=on_event, scheduler=scheduler,
                    finishing=finishing)[0]


def run_many(configs: list[RunConfig], *, n_jobs: int | None = None, store: RunStore | None = None,
             on_event=None, scheduler: str | None = None, finishing=None) -> list[dict]:
    """Compute (or read back) several runs, every missing fold of every run one task in one pool.

    Parameters
    ----------
    n_jobs : cores the local pool may use (default: all; 1 computes in this process, so
        progress reaches ``on_event`` as it happens). Results do not depend on it.
    on_event : called with each progress event (each carries its ``run_id``).
    scheduler : a Dask scheduler address (``tcp://HOST:8786``), or ``"local"``; default ``$LEUKDASH_SCHEDULER``,
        else local worker processes.
    finishing : called as ``finishing(run_id, dataset, store)`` once a run's summary is stored, with
        the images it was trained on, to store what later commands need of them (the checks' files of
        :func:`leukdash.evaluation.reference.store_references`: this layer cannot name them; the run
        functions of :mod:`leukdash.evaluation.runs`, which the CLI and the README's notebook use, pass it). Its
        failure leaves the run finished, and is said as a :class:`~leukdash.errors.StoreWarning` (and in the run's
        progress file).

    Returns
    -------
    One result per config, in order (see :func:`run`); a run is cached and resumable on its own.
    Runs that another process is computing are waited for, then answered (or completed).

    Raises
    ------
    RunsFailed
        when runs of several were refused for their own settings (a fold's :class:`~leukdash.errors.RunRefused`),
        after the others are computed and stored; its ``errors`` maps each failed run's id to its error, its
        ``outcome`` holds the others' results (as returned, in order). One
        config's run raises its own error. Any other error of a fold (memory, a full disk) stops every run.
    """
    from leukdash.engine.scheduler import scheduler_address

    started = time.perf_counter()
    if n_jobs is not None and (not isinstance(n_jobs, numbers.Integral) or isinstance(n_jobs, bool) or n_jobs < 1):
        raise ConfigError(f"n_jobs must be a whole number of cores, at least 1 (None: every core), got {n_jobs!r}")
    store = store or RunStore()
    # every config checked before any work
    resolved = [resolve(config) for config in arguments.listed(configs, "configs", "RunConfigs")]
    scheduler_address(scheduler)  # and where they would be computed
    unique = list({r.run_id: r for r in resolved}.values())
    computed: dict[str, list[int]] = {r.run_id: [] for r in unique}
    todo = [r for r in unique if load_result(r.run_id, store) is None]
    held, mine, busy, failures = {}, [], [], {}
    try:
        for r in todo:
            lock = store.lock(r.run_id, timeout=0)
            try:
                lock.__enter__()
            except RunError:
                busy.append(r)
                continue
            held[r.run_id] = lock
            mine.append(r)
        if mine:
            # A run's lock goes as soon as its summary is written, before its "done" event: a
            # reader that sees the event finds the run complete, while the sweep goes on.
            computed.update(_compute(mine, store, n_jobs, scheduler, on_event, failures,
                                     release=lambda run_id: held.pop(run_id).__exit__(None, None, None),
                                     finishing=finishing))
    finally:
        for lock in held.values():
            lock.__exit__(None, None, None)
    for r in busy:
        if on_event:
            on_event({"event": "message", "run_id": r.run_id,
                      "message": "another process is computing this run: waiting for it"})
        with store.lock(r.run_id):
            if load_result(r.run_id, store) is None:  # the other process may have stopped early
                computed.update(_compute([r], store, n_jobs, scheduler, on_event, failures, finishing=finishing))
    seconds = time.perf_counter() - started
    results = []
    for r in [r for r in resolved if r.run_id not in failures]:
        result = load_result(r.run_id, store)
        if result is None:
            raise RunError(f"run {r.run_id} did not complete")
        note_dataset_found(r.run_id, r.dataset, store)  # answered, or resumed, for a folder it did not know
        if len(computed[r.run_id]) < len(result["folds"]):  # folds of the store: told for the folder given now
            result = {**result, "dataset": record_for(result["dataset"], r.dataset)}
        results.append({**result, "cached": not computed[r.run_id], "computed_folds": computed[r.run_id],
                        "seconds": seconds})
    if failures:
        raise _runs_failed(failures, unique, results)
    return results


def finished_result(run_id: str, store: RunStore | None = None) -> dict:
    """:func:`load_result` of a finished run; else one RunError that says what is missing and
    the command that computes it."""
    store = store or RunStore()
    result = load_result(run_id, store)
    if result is None:
        raise unfinished_error(run_id, store)
    return result


def unfinished_error(run_id: str, store: RunStore) -> RunError:
    """The one line for a run that :func:`load_result` does not answer: what is missing, and the
    command that computes it."""
    return RunError(f"run {run_id!r} is not a finished run in {store.root}{_why_unfinished(run_id, store)}")


def lost_fold_error(run_id: str, store: RunStore) -> RunError:
    """The one line for a run that is no longer whole in the store (a fold's record or model file
    lost or damaged since this process loaded its models): for a trained run, the model that is
    gone, as loading its models says; else what :func:`unfinished_error` says is missing."""
    from leukdash.engine.training import model_suffix

    meta = store.read_meta(run_id)
    if meta is not None and meta["config"]["model"] != "ensemble":
        suffix = model_suffix(RunConfig.from_dict(meta["config"]))
        for fold in meta["fold_ids"]:
            at_fault = store.fold_fault(run_id, fold, store.model_path(run_id, fold, suffix))
            if store.read_fold(run_id, fold) is None:
                return RunError(damaged_fold_message(run_id, at_fault, store))
    return unfinished_error(run_id, store)


def damaged_fold_message(run_id: str, path: Path, store: RunStore) -> str:
    """One line: which file of a fold is damaged (its model, or its record ``folds/fold_<i>.json``),
    and the command that recomputes the fold."""
    meta_file = store.run_dir(run_id) / "meta.json"
    kind = "fold record" if path.suffix == ".json" else "model"
    return (f"run {run_id}: the saved {kind} {path.parent.name}/{path.name} is damaged or missing; its fold is "
            f"recomputed by `python -m leukdash run --config-file {meta_file}` (or by launching the run again)")


def _why_unfinished(run_id: str, store: RunStore) -> str:
    """What is missing of a run that has a ``meta.json``, and the command that completes it; for a run refused
    for its own settings, why: computing its missing folds would fail alike."""
    if store.is_locked(run_id):
        return ": another process is computing it now (it holds the run's lock); wait for it to finish " \
               "(`python -m leukdash runs` lists it as running)"
    refused = store.failure(run_id)
    if refused is not None:
        return (f": it was refused for its settings: {refused}; launching it again fails alike: "
                "change its settings or images as the reason says")
    meta = store.read_meta(run_id)
    if meta is None:
        return ""
    if meta["config"]["model"] == "ensemble":
        members = store.missing_members(run_id, meta)
        return (f": member run(s) {', '.join(members)} gone or not whole; running their settings again "
                f"(`member_configs` in {store.run_dir(run_id) / 'meta.json'}) gives the same run ids"
                if members else "")
    missing = [fold + 1 for fold in _lost_folds(run_id, meta, store)]
    # every fold there: its summary is not (killed before writing it, or moved aside as damaged)
    what = (f"fold(s) {', '.join(map(str, missing))} missing or damaged" if missing else
            "its summary.json missing or damaged (a damaged one is kept beside it as summary.json.damaged-*)")
    return (f": {what}; `python -m leukdash run --config-file {store.run_dir(run_id) / 'meta.json'}` "
            "computes what is missing")


def _lost_folds(run_id: str, meta: dict | None, store: RunStore) -> list[int]:
    """The folds of a trained run (``meta``, its meta) whose record or model file is missing or
    damaged; none for a run without a readable meta, or an ensemble (its folds live in its members)."""
    if meta is None or meta["config"]["model"] == "ensemble":
        return []
    return [fold for fold in meta["fold_ids"] if store.read_fold(run_id, fold) is None]


def load_result(run_id: str, store: RunStore | None = None) -> dict | None:
    """A finished run from the store, or None when it is not complete (a record or a fold's model
    missing or damaged: see :class:`RunStore`, whose listing calls a run complete exactly then)."""
    store = store or RunStore()
    meta = store.read_meta(run_id)
    if meta is None:
        return None
    folds = [store.read_fold(run_id, fold) for fold in meta["fold_ids"]]
    summary = store.read_summary(run_id, folds)  # checked against the folds
    if summary is None or any(fold is None for fold in folds) or store.missing_members(run_id, meta):
        return None
    return {"run_id": run_id, "config": meta["config"], "dataset": meta["dataset"],
            "versions": meta["versions"], "machine": meta.get("machine"), "folds": folds,
            "summary": summary}


def _runs_failed(failures: dict[str, LeukdashError], runs: list[ResolvedRun], results: list[dict]) -> LeukdashError:
    """The error of runs that failed on their own: a run's own error where it is the only one
    asked for, else one line for each, naming its id, what sets it apart from the others, and why
    (with ``results``, the others', as its outcome)."""
    from leukdash.config import differing_settings, setting_form

    if len(runs) == 1:
        return next(iter(failures.values()))
    varied, by_id = differing_settings([r.config for r in runs]), {r.run_id: r.config for r in runs}
    reasons = []
    for run_id, error in failures.items():
        form = setting_form(by_id[run_id])
        settings = ", ".join(f"{name} {form[name]}" for name in varied if name in form)
        reasons.append(f"run {run_id}{f' ({settings})' if settings else ''}: {error}")
    return RunsFailed(failures, reasons, len(runs), outcome=results)


def _compute(runs: list[ResolvedRun], store: RunStore, n_jobs, scheduler, on_event, failures: dict[str, LeukdashError],
             release=lambda run_id: None, finishing=None) -> dict[str, list[int]]:
    """Compute the missing folds of runs this process holds the locks of; the folds computed.

    ``release(run_id)`` is called once a run is complete or has failed (its lock can go); a run whose
    fold was refused for its settings (:class:`~leukdash.errors.RunRefused`) is added to ``failures``
    with its error, and its other folds are dropped, while the other runs go on.
    """
    from leukdash.engine.scheduler import make_pool

    pool = make_pool(scheduler, n_jobs)
    # The workers of the first folds (the longest: CNN folds, if any) start now and import
    # TensorFlow or scikit-learn while this process loads the images.
    cnn = any(r.config.is_cnn for r in runs)
    pool.start_workers(cnn, tasks=sum(r.config.folds for r in runs if r.config.is_cnn == cnn))
    try:
        return _compute_in(pool, runs, store, on_event, release, failures, finishing)
    finally:
        pool.close()


def _compute_in(pool, runs: list[ResolvedRun], store: RunStore, on_event, release,
                failures: dict[str, LeukdashError], finishing=None) -> dict[str, list[int]]:
    """:func:`_compute` with its pool."""
    from leukdash.engine.scheduler import FoldTask
    from leukdash.data.arrays import load_arrays
    from leukdash.engine.fold_planning import fold_inputs

    def emit(run_id: str, event: dict) -> None:
        _emit(store.progress_path(run_id), event, on_event and (lambda e: on_event({**e, "run_id": run_id})))

    inputs, tasks, left, by_id, arrays, loaded = {}, [], {}, {r.run_id: r for r in runs}, {}, {}
    try:  # every run's folds planned before any run is stored: one refused (k above a fold's
        # training set, folds of other versions) stops them all, and leaves no folder behind, rather than half a sweep
        here = versions()
        for r in runs:  # before any image is decoded
            _check_resumable(r, store, here)
        for r in runs:
            # Decoding can take a while before the first fold starts: the dashboard shows it as a phase.
            emit(r.run_id, {"event": "loading", "run_id": r.run_id,
                            "message": f"loading and resizing {count(len(r.dataset.items), 'image')}"})
            began = time.perf_counter()
            arrays[r.run_id] = load_arrays(r.dataset, r.config.image_size, r.config.preprocess)
            inputs[r.run_id] = fold_inputs(r.config, r.dataset, arrays[r.run_id])
            loaded[r.run_id] = time.perf_counter() - began
            _check_same_folds(r, store, inputs[r.run_id])
    except BaseException:
        for r in runs:
            store.discard_unstarted(r.run_id)
        raise
    done_of = {r.run_id: store.completed_folds(r.run_id, len(inputs[r.run_id].fold_ids)) for r in runs}
    # a new run: "run the same command again to resume" would silently have started afresh
    superseded = superseded_partial_runs([r for r in runs if not done_of[r.run_id]], store)
    for r in runs:
        fold_ids = list(inputs[r.run_id].fold_ids)
        done = done_of[r.run_id]
        missing = [f for f in fold_ids if f not in done]
        for line in superseded.get(r.run_id, []):
            emit(r.run_id, {"event": "message", "message": line})
        fresh = _meta(r, arrays.pop(r.run_id), inputs[r.run_id])
        store.write_meta(r.run_id, _attempt_meta(store.read_meta(r.run_id), fresh, done, missing))
        emit(r.run_id, {"event": "start", "run_id": r.run_id, "folds": len(fold_ids), "missing": missing,
                        "done_folds": [f for f in fold_ids if f not in missing],
                        "epochs": r.config.epochs if r.config.is_cnn else None,
                        # a fixed cost of the run, which estimates of later runs add (leukdash.engine.timing.start_up)
                        "load_seconds": round(loaded[r.run_id], 3), "images": len(inputs[r.run_id].labels)})
        tasks += [FoldTask(r.run_id, fold, len(fold_ids), r.config.to_dict(), len(inputs[r.run_id].labels))
                  for fold in missing]
        left[r.run_id] = set(missing)

    def finish(run_id: str) -> None:
        from leukdash.metrics import summarize_folds

        folds = [store.read_fold(run_id, fold) for fold in inputs[run_id].fold_ids]
        if None in folds:  # lost or damaged since it was written (deleted by hand, a store moved under the run)
            raise lost_fold_error(run_id, store)
        summary = summarize_folds(folds)
        store.write_summary(run_id, summary)
        if finishing:
            try:
                finishing(run_id, by_id[run_id].dataset, store)
            except Exception as error:  # the folds and summary are stored: the run stands, its checks wait
                _say_checks_not_stored(run_id, error, store)
        release(run_id)
        # the run's mean, which its progress line ends with (not the last fold's val_acc)
        emit(run_id, {"event": "done", "run_id": run_id, "metrics": {"mean_val_acc": summary["val_acc"]["mean"]}})

    def on_done(task: FoldTask, outcome: dict) -> None:
        from leukdash.engine.training import model_suffix

        if task.run_id in failures:  # computed meanwhile; its run's lock went with its failure: not this process's
            return
        result = outcome["result"]
        model_path = store.model_path(task.run_id, task.fold, model_suffix(by_id[task.run_id].config))
        _write_model(model_path, outcome["model"])
        store.write_fold(task.run_id, task.fold, result, model=model_path)
        emit(task.run_id, {"event": "fold_done", "fold": task.fold, "n_folds": task.n_folds,
                           "metrics": {"val_acc": result["val_acc"], "val_loss": result["val_loss"]},
                           "seconds": result["seconds"]})
        left[task.run_id].discard(task.fold)
        if not left[task.run_id]:
            finish(task.run_id)

    def on_failed(task: FoldTask, error: BaseException) -> None:
        """A fold's error: a refusal of its run's settings ends that run, the pool dropping its other folds;
        any other error (a full disk, an interrupted import, memory) is the machine's and stops all."""
        if not isinstance(error, RunRefused):
            raise error
        if task.run_id not in failures:  # a fold of it computed meanwhile may fail too: the first says why
            failures[task.run_id] = error
            # marked refused: the failed events of runs a machine error stopped (below) are no verdict on their settings
            emit(task.run_id, {"event": "failed", "refused": True, "message": str(error)})
            release(task.run_id)  # after its event: a reader that finds it unlocked reads it failed

    for run_id in [run_id for run_id, missing in left.items() if not missing]:
        finish(run_id)
    try:
        if tasks:
            pool.run(tasks, inputs, on_done, emit, on_failed)
    except Exception as error:
        from leukdash.engine.machine import out_of_memory

        explained = out_of_memory(error)  # in this process, a worker or a Dask worker alike
        message = str(explained) if explained else f"{type(error).__name__}: {error}"
        for run_id in [run_id for run_id, missing in left.items() if missing and run_id not in failures]:
            emit(run_id, {"event": "failed", "message": message})
        if explained:
            raise explained from error
        raise
    return {r.run_id: sorted({t.fold for t in tasks if t.run_id == r.run_id}) for r in runs}


def _write_model(path: Path, data: bytes) -> None:
    """Write a fold's model file whole or not at all (the fold record, written next, refers to it)."""
    path.parent.mkdir(exist_ok=True)  # models/, in the run's folder (which its lock made)
    write_bytes_atomic(path, data)


def _say_checks_not_stored(run_id: str, error: Exception, store: RunStore) -> None:
    """Say that ``run_id`` finished without what its checks need of its images (``error``: why).

    A warning, not progress: a :class:`~leukdash.errors.StoreWarning`, which reaches every caller once (the CLI's
    ``warning:`` line whatever ``--quiet`` says, the Python API's warnings), and a message in the run's progress
    file, which the dashboard's job view reads; not an ``on_event`` event, which the CLI would print a second time.
    """
    line = (f"run {run_id} is finished, but what its checks need of its images was not stored "
            f"({type(error).__name__}: {error}); the first predict or evaluate with it reads and stores them, "
            "if its images are unchanged then")
    _emit(store.progress_path(run_id), {"event": "message", "message": line}, None)
    warn_not_stored(line)


def _emit(path: Path, event: dict, on_event) -> None:
    # Stamped here, so that the caller's events carry the file's times: the command line's time taken and time
    # left are read from them.
    event = {"time": time.time(), **event}
    append_event(path, event)
    if on_event:
        on_event(event)


def _check_resumable(resolved: ResolvedRun, store: RunStore, here: dict) -> None:
    """Refuse to resume a run whose stored folds were computed under other versions than ``here``
    (:func:`versions` now: a package upgraded since, a CPU that trains CNNs in another precision):
    its record would hold folds of two setups under one set of versions."""
    stored = store.read_meta(resolved.run_id)
    if stored is None or all(store.read_fold(resolved.run_id, fold) is None for fold in stored["fold_ids"]):
        return
    differing = differing_versions(stored["versions"], here, resolved.config.is_cnn)
    if differing:
        raise RunError(f"run {resolved.run_id} has folds computed under other versions: "
                       f"{versions_text(differing, stored['versions'], here, 'here')}; resuming it here would mix "
                       f"two setups in one run: install the versions it records, or start it afresh by deleting "
                       f"its folder {store.run_dir(resolved.run_id)}")


def _check_same_folds(resolved: ResolvedRun, store: RunStore, planned) -> None:
    """Refuse to resume a run whose stored folds validated other images than its folds are drawn
    with now (:class:`~leukdash.engine.fold_planning.FoldInputs` ``planned``; the way folds are drawn
    changed since, duplicates merged otherwise, say): under one id it would validate some images
    twice and others never; or trained on another number of images than its fold would now (a
    leave-one-source-out fold leaves out other copies since): one id would mix two training rules."""
    import numpy as np

    from leukdash.engine.fold_planning import training_part

    for fold in planned.fold_ids:
        record = store.read_fold(resolved.run_id, fold)  # each stored fold read once
        if record is None:
            continue
        validated, n_train = record.get("oof", {}).get("index"), record.get("n_train")
        if validated is not None and set(validated) != set(np.flatnonzero(planned.fold_of == fold).tolist()):
            raise RunError(f"run {resolved.run_id}: its stored fold {fold + 1} validated other images than that "
                           "fold is drawn with now (folds are drawn otherwise since it was stored); resuming it "
                           "would validate some images twice and others never: start it afresh by deleting its "
                           f"folder {store.run_dir(resolved.run_id)}")
        now = int(training_part(planned.fold_of, fold, planned.copies).sum())
        if n_train is not None and n_train != now:
            raise RunError(f"run {resolved.run_id}: its stored fold {fold + 1} trained on {n_train} images, that "
                           f"fold trains on {now} now (duplicates are left out of training otherwise since it was "
                           "stored); resuming it would mix two training rules in one run: start it afresh by "
                           f"deleting its folder {store.run_dir(resolved.run_id)}")


def _attempt_meta(stored: dict | None, fresh: dict, done: list[int], missing: list[int]) -> dict:
    """The meta to store for this attempt at a run: ``fresh`` (:func:`_meta`), except that the first
    attempt's ``created`` is kept, and, while folds of earlier attempts are kept, its config (the
    dataset as given), dataset record, and the versions and machine that computed them
    (:func:`_check_resumable` refused other versions): this attempt, its time, machine, the folder
    its images were read from and the folds it sets out to compute, is added to ``resumed``."""
    if stored is None:
        return fresh
    if not done:  # nothing of the earlier attempts is kept: this one computes every fold
        return {**fresh, **{key: stored[key] for key in ("created",) if key in stored}}
    first = {key: stored[key] for key in ("created", "config", "dataset", "versions", "machine") if key in stored}
    resumed = stored.get("resumed") if isinstance(stored.get("resumed"), list) else []
    attempt = [{"time": time.time(), "machine": fresh["machine"], "dataset_path": fresh["dataset"]["path"],
                "folds": missing}] if missing else []
    return {**fresh, **first, "resumed": resumed + attempt}


def _meta(resolved: ResolvedRun, arrays, inputs) -> dict:
    from leukdash.engine.fold_planning import duplicate_pairs, duplicate_warnings

    dataset = resolved.dataset
    return {
        "run_id": resolved.run_id,
        "config": resolved.config.to_dict(),
        "canonical": resolved.config.canonical(),
        "dataset": {**dataset.describe(), "fingerprint": dataset.fingerprint,
                    "classes": list(dataset.classes), "counts": dataset.counts(),
                    "n_used": int(len(arrays.labels)),
                    "skipped": [s.to_dict(dataset.root) for s in arrays.skipped],
                    "warnings": dataset.warnings() + dataset.image_warnings(arrays, duplicate_pairs(dataset))
                    + dataset.left_out(arrays)
                    + dataset.failed_segmentation(arrays, resolved.config.preprocess)
                    + duplicate_warnings(resolved.config, dataset, inputs)},
        "fold_ids": list(inputs.fold_ids),
        "versions": versions(),
        "machine": describe_machine(),  # fold times mean little without the CPU that made them
    }

