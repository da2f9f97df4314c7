"""The shapes of the run store's records: what ``meta.json`` and ``summary.json`` must hold for
their readers (the runner, the checks, the labels, the pages, the reports) to use them without
checking. :class:`leukdash.engine.store.RunStore` moves a record that fails its shape aside, as
damaged, so a hand edit or another version's schema makes one run skipped or partial, never a
traceback in every reader. Standard library only, like the store.
"""

from __future__ import annotations

import math

from leukdash.config import MODELS, is_number


def is_meta(meta) -> bool:
    """Whether a ``meta.json`` holds what the runner, the checks, the labels and the pages read:
    the run id, config (a model this version knows, dataset), dataset (name, fingerprint, path,
    classes), the fold ids and versions; an ensemble run also its members, weights and configs."""
    if not isinstance(meta, dict):
        return False
    config, dataset, fold_ids = meta.get("config"), meta.get("dataset"), meta.get("fold_ids")
    return (isinstance(meta.get("run_id"), str) and isinstance(meta.get("versions"), dict)
            and isinstance(config, dict) and config.get("model") in MODELS + ("ensemble",)
            and _are_text(config, "dataset")
            and isinstance(dataset, dict) and _are_text(dataset, "name", "fingerprint")
            and isinstance(dataset.get("path", ""), str) and _is_text_list(dataset.get("classes"))
            and _is_fold_ids(fold_ids) and (meta.get("kind") != "ensemble" or _is_members(config)))


def _is_fold_ids(fold_ids) -> bool:
    """At least one fold, each a distinct non-negative integer (a fold file's index)."""
    return (isinstance(fold_ids, list) and len(fold_ids) > 0
            and all(isinstance(fold, int) and not isinstance(fold, bool) and fold >= 0 for fold in fold_ids)
            and len(set(fold_ids)) == len(fold_ids))


def _is_members(config: dict) -> bool:
    members, weights, configs = config.get("members"), config.get("weights"), config.get("member_configs")
    return (_is_text_list(members) and isinstance(weights, list) and all(map(_is_weight, weights))
            and sum(weights) > 0 and isinstance(configs, list)
            and all(isinstance(c, dict) and c.get("model") in MODELS for c in configs)
            and len(members) == len(weights) == len(configs))


def is_summary(summary) -> bool:
    """Whether a ``summary.json`` holds what the pages, the reports and the CLI read: metrics
    (``val_acc`` among them) each with a numeric mean, numeric spread figures where present, and
    per-source figures as a mapping."""
    if not isinstance(summary, dict) or "val_acc" not in summary:
        return False
    per_source = summary.get("per_source", {})
    return (all(_is_metric(value) for name, value in summary.items() if name != "per_source")
            and isinstance(per_source, dict) and all(isinstance(value, dict) for value in per_source.values()))


def summary_agrees(summary: dict, folds: list[dict]) -> bool:
    """Whether a summary (of :func:`is_summary`'s shape) says what its run's fold results say: each metric's
    mean, spread and range those of its fold values, and each source's the same over the folds that validated it
    (a forged or stale ``summary.json`` would else be shown as the run's result). The 95% intervals are not
    recomputed (that needs scipy, which listing runs does not import); they come with the figures checked."""
    if not all(_metric_agrees(value, [fold.get(name) for fold in folds])
               for name, value in summary.items() if name != "per_source"):
        return False
    return "per_source" not in summary or _sources_agree(summary["per_source"], _by_source(folds))


def _by_source(folds: list[dict]) -> dict[str, list[dict]]:
    """The figures of each source: the metrics of each fold that validated it."""
    found: dict[str, list[dict]] = {}
    for fold in folds:
        sources = fold.get("per_source")
        for name, metrics in (sources if isinstance(sources, dict) else {}).items():
            found.setdefault(name, []).append(metrics if isinstance(metrics, dict) else {})
    return found


def _sources_agree(summarised: dict, folds_of: dict) -> bool:
    return set(summarised) == set(folds_of) and all(
        summarised[name].get("folds") == len(folds) and all(
            _metric_agrees(summarised[name].get(metric), [fold.get(metric) for fold in folds])
            for metric in ("val_acc", "balanced_acc"))
        for name, folds in folds_of.items())


def _metric_agrees(value, fold_values: list) -> bool:
    """Whether a summarised metric's mean, std, min and max are those of its fold values (std the sample one,
    0 for one fold, as :func:`leukdash.metrics.summarize` gives)."""
    if not (isinstance(value, dict) and fold_values and all(map(is_number, fold_values))):
        return False
    if not all(map(math.isfinite, fold_values)):
        return True  # a NaN loss, say: numpy's figures of it are not this module's to redo
    n, mean = len(fold_values), math.fsum(fold_values) / len(fold_values)
    spread = math.sqrt(math.fsum((x - mean) ** 2 for x in fold_values) / (n - 1)) if n > 1 else 0.0
    figures = {"mean": mean, "std": spread, "min": min(fold_values), "max": max(fold_values)}
    return all(math.isclose(value[name], figure, rel_tol=1e-9, abs_tol=1e-12)
               for name, figure in figures.items() if name in value)


def _is_metric(value) -> bool:
    if not isinstance(value, dict) or not is_number(value.get("mean")):
        return False
    interval = value.get("ci95", [0, 0])
    return (all(is_number(value[name]) for name in ("std", "min", "max") if name in value)
            and isinstance(interval, list) and len(interval) == 2 and all(map(is_number, interval)))


def _are_text(record: dict, *names: str) -> bool:
    return all(isinstance(record.get(name), str) for name in names)


def _is_text_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_weight(value) -> bool:
    """A member's voting weight as ``ensemble`` stores it: finite and not negative (a NaN made
    every probability of the vote NaN)."""
    return is_number(value) and math.isfinite(value) and value >= 0


def is_ensemble(meta: dict | None) -> bool:
    """Whether a meta is an ensemble's (``ensemble``), whose members are runs."""
    return isinstance(meta, dict) and meta.get("kind") == "ensemble"


def member_ids(meta: dict) -> list[tuple[str, float]]:
    """(run id, weight) of each member of an ensemble run; a plain run is its own one member."""
    if is_ensemble(meta):
        return list(zip(meta["config"]["members"], meta["config"]["weights"]))
    return [(meta["run_id"], 1.0)]
