"""Ensembles of finished runs: soft voting over the members' stored out-of-fold probabilities.

Runs of one dataset, class set and fold plan (same dataset, classes, seed, fold count and
protocol: every model of a comparison gets the same folds) validated every image in the same
fold. Their weighted mean probability is then an honest cross-validated ensemble: the image
was validated by models that never trained on it, fold by fold, so no member is refitted and
nothing is trained here. The ensemble is stored as a run (``ensemble-<hash>``): ``meta.json``
with ``kind: ensemble`` and the members and weights in its config, one fold file per fold
(no model file: predicting loads the members' fold models) and a summary, so the store,
``compare``, ``predict``, ``evaluate`` and the pages read it as any other run.

Members with different folds, datasets or class sets, or (under the paper protocol, which
validates augmented copies) different augmentation, are refused: their out-of-fold
probabilities are not of the same images under the same training splits.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np

from leukdash import arguments
from leukdash.config import RunConfig, stable_hash
from leukdash.engine.record_shapes import is_ensemble
from leukdash.engine.run_data import images_changed, same_folder
from leukdash.engine.runner import finished_result, load_result, unfinished_error
from leukdash.engine.versions import versions
from leukdash.engine.store import RunStore
from leukdash.errors import RunError

# What an ensemble run stores; part of its id (ENGINE_VERSION is its members' business).
ENSEMBLE_VERSION = "ensemble-1"
PREFIX = "ensemble-"
# The setting of an ensemble whose members differ in it (their preprocessing): no one value.
MIXED = "mixed"


def create_ensemble(run_ids: list[str], weights: list[float] | None = None, store: RunStore | None = None,
                    on_wait=None) -> dict:
    """Store (or read back) the soft-voting ensemble of finished runs; returns its result
    (as :func:`leukdash.engine.runner.load_result`, with ``cached``). While another process stores
    the same ensemble this waits for it, after ``on_wait(message)``, as ``refit`` does."""
    store = store or RunStore()
    members = _members(arguments.run_ids(run_ids), store)
    run_id = ensemble_id([m["run_id"] for m in members], weights)
    weights = _weights(weights, len(members))
    found = load_result(run_id, store)
    if found is not None:
        return {**found, "cached": True}
    folds = ensemble_folds(members, weights, store)
    first = members[0]
    config = {
        "model": "ensemble", "members": [m["run_id"] for m in members], "weights": weights,
        "member_configs": [m["config"] for m in members],
        # What the members share (checked), so that pages and reports read it as any run's.
        **{name: first["config"].get(name) for name in ("dataset", "classes", "protocol", "folds", "seed",
                                                        "test_fraction")},
        "image_size": max(m["config"]["image_size"] for m in members),
        "preprocess": _common([m["config"].get("preprocess", "raw") for m in members]),
    }
    from leukdash.metrics import summarize_folds

    if on_wait and store.is_locked(run_id):
        on_wait(f"another process holds run {run_id}: waiting for it")
    with store.lock(run_id):  # another process storing the same ensemble: wait, then read back what it stored
        found = load_result(run_id, store)
        if found is not None:
            return {**found, "cached": True}
        for fold in folds:
            store.write_fold(run_id, fold["fold"], fold)
        store.write_meta(run_id, {"run_id": run_id, "kind": "ensemble", "result_version": ENSEMBLE_VERSION,
                                  "config": config, "dataset": first["dataset"],
                                  "fold_ids": [fold["fold"] for fold in folds], "versions": versions()})
        store.write_summary(run_id, summarize_folds(folds))
    stored = load_result(run_id, store)
    if stored is None:  # a member lost a file (deleted, recomputed) while the votes were stored: named
        raise unfinished_error(run_id, store)
    return {**stored, "cached": False}


def ensemble_id(run_ids: list[str], weights: list[float] | None = None) -> str:
    """The id of the ensemble of these runs with these weights, stored or not."""
    # The same members with the same weights are the same ensemble, in any order.
    run_ids = arguments.run_ids(run_ids)
    pairs = sorted(zip(run_ids, _weights(weights, len(run_ids))))
    return PREFIX + stable_hash({"members": [[r, round(w, 9)] for r, w in pairs], "version": ENSEMBLE_VERSION})


def _members(run_ids: list[str], store: RunStore) -> list[dict]:
    if len(run_ids) < 2 or len(set(run_ids)) != len(run_ids):
        raise RunError(f"an ensemble needs at least two different runs, got {' '.join(run_ids) or 'none'}")
    members = []
    for run_id in run_ids:
        result = finished_result(run_id, store)
        if is_ensemble(store.read_meta(run_id)):
            raise RunError(f"run {run_id} is itself an ensemble: name its members instead")
        members.append(result)
    first = members[0]
    for other in members[1:]:
        pair = f"runs {first['run_id']} and {other['run_id']}"
        if other["dataset"]["fingerprint"] != first["dataset"]["fingerprint"]:
            classes = [list(run["dataset"]["classes"]) for run in (first, other)]
            if sorted(classes[0]) == sorted(classes[1]) and classes[0] != classes[1]:
                raise RunError(f"{pair} list their classes in different orders ({', '.join(classes[0])} vs "
                               f"{', '.join(classes[1])}): their probabilities cannot be added column by column; "
                               "use runs given the same --classes order")
            if classes[0] != classes[1]:
                raise RunError(f"{pair} have different class sets ({', '.join(classes[0])} vs "
                               f"{', '.join(classes[1])}): they cannot vote together")
            if same_folder(first["dataset"], other["dataset"]):
                raise RunError(f"{pair}: {images_changed(first['dataset'], other['dataset'])}: an ensemble needs "
                               "runs on the same images; run the settings of the earlier one again on the images "
                               "as they are")
            raise RunError(f"{pair} were trained on different datasets ({first['dataset']['name']} vs "
                           f"{other['dataset']['name']}): an ensemble needs the same images")
        copies = _validation_difference(first["config"], other["config"])
        if copies:
            raise RunError(f"{pair} validated different augmented copies under the paper protocol ({copies}): their "
                           "out-of-fold probabilities are of different pictures; use runs with the same augmentation")
        if _fold_plan(other, copies=False) != _fold_plan(first, copies=False):
            raise RunError(f"{pair} validated different folds ({fold_difference(first['config'], other['config'])}): "
                           "their out-of-fold probabilities are not comparable; use runs with the same folds")
        if _fold_plan(other) != _fold_plan(first):  # the same originals: one run validated copies too (paper)
            copied, plain = (first, other) if validated_copies(first) else (other, first)
            raise RunError(f"{pair} validated the same folds, but {copied['run_id']} also validated augmented copies "
                           f"under the paper protocol and {plain['run_id']} only the originals: their out-of-fold "
                           "probabilities are not all of the same pictures; use runs of the same protocol")
    return members


# The settings that draw a run's folds, as the user names them.
FOLD_SETTINGS = {"folds": "fold count", "seed": "seed", "protocol": "protocol", "test_fraction": "test fraction"}


def fold_difference(first: dict, other: dict) -> str:
    """The fold-drawing settings by which two runs' configs differ ('seed 0 vs 1, fold count 2 vs 3').
    Either may be an ensemble's config, which holds its members' fold settings beside its own."""
    defaults = asdict(RunConfig())
    configs = [{name: config.get(name, defaults[name]) for name in FOLD_SETTINGS} for config in (first, other)]
    # A holdout split or lodo does not read the fold count: naming it would blame a setting without effect.
    folds_unused = any(c["test_fraction"] is not None or c["protocol"] == "lodo" for c in configs)
    # Strict and paper draw the same folds (paper validates copies too): only lodo's folds are the protocol's.
    protocol_unused = all(c["protocol"] != "lodo" for c in configs)
    names = [name for name in FOLD_SETTINGS
             if not (name == "folds" and folds_unused) and not (name == "protocol" and protocol_unused)]
    differ = [f"{FOLD_SETTINGS[name]} {_fold_setting_text(configs[0], name)} vs {_fold_setting_text(configs[1], name)}"
              for name in names if configs[0][name] != configs[1][name]]
    return ", ".join(differ) or "fold count, seed, protocol and test fraction alike, yet other folds drawn"


def _fold_setting_text(config: dict, name: str) -> str:
    """A fold-drawing setting as the user reads it: no test fraction means the run's k folds."""
    if name == "test_fraction" and config[name] is None:
        return f"none ({config['folds']} folds)"
    return _setting_text(config[name])


def _validation_difference(first: dict, other: dict) -> str | None:
    """The first setting by which two paper-protocol runs' validation copies differ ('blur 1 vs 0'),
    else None. The paper protocol augments the validated images too, so the augment factor and
    every augmentation setting decide which pictures the out-of-fold probabilities are of; the
    fold plan holds only image indices and copy numbers, which such runs share."""
    configs = [RunConfig.from_dict(config) for config in (first, other)]
    if any(config.protocol != "paper" for config in configs):
        return None  # the originals are validated; a protocol difference shows in the fold plan
    settings = [_validation_settings(config) for config in configs]
    for name in settings[0]:  # the factor first: equal factors mean the same settings named
        values = [_setting_text(s[name]) for s in settings]
        if values[0] != values[1]:
            return f"{name.replace('_', ' ')} {values[0]} vs {values[1]}"
    return None


def _validation_settings(config: RunConfig) -> dict:
    """What makes a paper-protocol run's validation copies: its factor and transforms (no copies: factor 1)."""
    if config.augment_factor == 1 or not config.augment.enabled():
        return {"augment_factor": 1}
    return {"augment_factor": config.augment_factor, **asdict(config.augment)}


def _setting_text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def validated_copies(result: dict) -> bool:
    """Whether a run validated augmented copies beside its images (``--protocol paper``): rows its accuracy counts
    and McNemar does not."""
    return any(np.any(np.asarray(fold["oof"]["copy"]) > 0) for fold in result["folds"])


def _fold_plan(result: dict, copies: bool = True) -> list:
    """Which images (and, with ``copies``, augmented copies) each fold validated, with their labels."""
    plan = []
    for fold in result["folds"]:
        oof = fold["oof"]
        kept = [n for n, copy in enumerate(oof["copy"]) if copies or copy == 0]
        plan.append((fold["fold"], *([oof[key][n] for n in kept] for key in ("index", "copy", "true"))))
    return plan


def _weights(weights, n: int) -> list[float]:
    if weights is None:
        return [1.0 / n] * n
    if len(weights) != n:
        raise RunError(f"{len(weights)} weight(s) for {n} runs: give one weight per run")
    if any(not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0 for w in weights):
        raise RunError(f"weights must be finite, positive numbers, got {weights}")
    if 0 in weights:  # it would still sway the ensemble's out-of-distribution and support checks
        raise RunError(f"a member of weight 0 would not vote: leave it out (weights {weights})")
    weights = [float(w) for w in weights]
    if not math.isfinite(sum(weights)):  # each is finite but their sum overflows: scale them down first
        weights = [w / max(weights) for w in weights]
    return [w / sum(weights) for w in weights]


def _common(values: list[str]) -> str:
    return values[0] if len(set(values)) == 1 else MIXED


def ensemble_folds(members: list[dict], weights: list[float], store: RunStore) -> list[dict]:
    """One fold result per fold: the weighted mean of the members' out-of-fold probabilities
    and the metrics of that mean (per source too, for a run on several datasets)."""
    from leukdash.metrics import fold_metrics, source_metrics

    first = members[0]
    classes = first["dataset"]["classes"]
    sources = _sources_and_groups(first, store) if "per_source" in first["folds"][0] else None
    folds = []
    for position, fold in enumerate(first["folds"]):
        proba = sum(w * np.asarray(m["folds"][position]["oof"]["proba"], dtype=np.float64)
                    for m, w in zip(members, weights))
        true = np.asarray(fold["oof"]["true"], dtype=np.int64)
        result = {"fold": fold["fold"], "n_train": fold["n_train"], "n_val": fold["n_val"],
                  **fold_metrics(true, proba, classes),
                  "members_val_acc": {m["run_id"]: m["folds"][position]["val_acc"] for m in members},
                  "oof": {**{k: fold["oof"][k] for k in ("index", "copy", "true")},
                          "proba": np.round(proba, 6).tolist()}}
        if sources is not None:
            index = np.asarray(fold["oof"]["index"], dtype=np.int64)
            result["per_source"] = source_metrics(true, proba, classes, sources[0][index], sources[1][index])
        if "held_out" in fold:
            result["held_out"] = fold["held_out"]
        folds.append(result)
    return folds


def _sources_and_groups(result: dict, store: RunStore):
    """Source and group of every image of a run on several datasets, in the run's image order."""
    from leukdash.data.arrays import load_arrays
    from leukdash.engine.run_data import open_run_dataset

    meta = store.read_meta(result["run_id"])
    config = RunConfig.from_dict(meta["config"])
    dataset = open_run_dataset(meta, store)
    arrays = load_arrays(dataset, config.image_size, config.preprocess)  # cached when the run was computed
    return dataset.sources_of(arrays.paths).astype(str), arrays.groups.astype(str)


def ensemble_command(meta: dict) -> str:
    """The command that stores an ensemble run again (the same members and weights: the same id)."""
    config = meta["config"]
    weights = config["weights"]
    given = "" if len(set(weights)) == 1 else f" --weights {','.join(map(repr, weights))}"  # repr: the exact weights
    return f"python -m leukdash ensemble {' '.join(config['members'])}{given}"


