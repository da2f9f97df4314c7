"""The runs behind the report's External validity section and ``docs/report/ACROSS_DATASETS.md``.

For two labs' ALL vs HEALTHY sets (``allidb2_ufpr`` and ``cnmc_dev`` unless a :class:`Plan` says
otherwise), with the report's strict settings:

- the per-direction matrix (:func:`external_matrix`): the paper CNN, the leukdash CNN and the four
  classic models on engineered features, raw and with the recommended cell-level preprocessing,
  trained on either set (the raw ones on ``allidb2_ufpr`` are the matrix's Exp 2 and Exp 4 runs);
- issue 16's candidates against today's best transferable models, 3-NN and SVM on features with
  ``cell-keep-gray`` (:func:`candidates`): their soft-voting ensemble (and with the leukdash CNN),
  their final models, and both trained with stain and blur augmentation;
- both sets at once (:func:`pooled_rows`, :func:`lodo_rows`): strict folds over the pooled sets,
  and leave one dataset out.

Full ``reproduce`` trains :func:`plan_configs` after the matrix as one sweep, then
:func:`complete` stores the ensembles and final models; the sections only read the store.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from leukdash.config import RunConfig
from leukdash.reporting.matrix import FULL, Settings, experiments

ALLIDB2, CNMC = "allidb2_ufpr", "cnmc_dev"
# C-NMC has two healthy subjects: subject-grouped, stratified folds allow two at most.
FOLDS = {ALLIDB2: 5, CNMC: 2}
# The preprocessing compared with today's raw input: the one recommended for transfer (the cell
# segmented, its size relative to the field kept, grey levels; see docs/report/PREPROCESS_NOTES.md).
RECOMMENDED = "cell-keep-gray"
PREPROCESSINGS = ("raw", RECOMMENDED)
MODEL_NAMES = {"cnn-paper": "paper CNN", "cnn-leukdash": "leukdash CNN", "nb": "naive Bayes (features)",
               "svm": "SVM (features)", "knn": "3-NN (features)", "dt": "decision tree (features)"}
MODELS = tuple(MODEL_NAMES)
# Robustness training: the one setting tried, chosen on principle as moderate values before any result.
ROBUST = {"stain_jitter": 0.2, "blur": 1.0}
ROBUST_NAME = "stain jitter 0.2 + blur 1"


@dataclass(frozen=True)
class Plan:
    """The two datasets, the settings of their runs, and the models of the per-direction matrix
    (the candidates always use 3-NN and SVM; the leukdash CNN joins their ensemble when listed)."""

    first: str = ALLIDB2
    second: str = CNMC
    settings: Settings = FULL
    models: tuple[str, ...] = MODELS

    @property
    def directions(self) -> tuple[tuple[str, str], tuple[str, str]]:
        return (self.first, self.second), (self.second, self.first)

    @property
    def both(self) -> str:
        return f"{self.first},{self.second}"


@dataclass(frozen=True)
class ExternalCell:
    """One cell of the per-direction matrix: a run config (trained on ``train``) tested on ``test``."""

    train: str
    test: str
    preprocessing: str
    model: str
    config: RunConfig


@dataclass(frozen=True)
class Row:
    """A model of the issue-16 and across-datasets tables: one run, or the soft-voting ensemble
    of several (``configs``), its fold models or its final model(s) (``model``), trained on
    ``train`` and tested on ``test`` (``None``: a run on both sets, judged by its own folds)."""

    label: str
    configs: tuple[RunConfig, ...]
    train: str
    test: str | None = None
    model: str = "folds"


def dataset_name(dataset: str) -> str:
    """The name a dataset goes by in results: its own, or its folder's for a path."""
    return Path(dataset).name if Path(dataset).is_dir() else dataset


def _strict(plan: Plan, train: str) -> dict[str, RunConfig]:
    """The report's strict ALL vs HEALTHY configs on ``train`` by model (raw input)."""
    settings = replace(plan.settings, folds=FOLDS.get(train, plan.settings.folds))
    found = {}
    for e in experiments(train, "synthetic", settings):
        if e.task == "binary" and e.exp in ("2", "4") and e.config.protocol == "strict" and \
                (e.config.is_cnn or e.config.feature_set == "features"):
            found[f"cnn-{e.config.architecture}" if e.config.is_cnn else e.config.model] = e.config
    return found


def external_matrix(plan: Plan = Plan()) -> list[ExternalCell]:
    """The plan's models x two directions x preprocessings, as the report's strict runs."""
    return [ExternalCell(train, test, name, model, config.with_changes(preprocess=name))
            for train, test in plan.directions for name in PREPROCESSINGS
            for model, config in _strict(plan, train).items() if model in plan.models]


def _recommended(plan: Plan, train: str, model: str, **augment) -> RunConfig:
    config = _strict(plan, train)[model].with_changes(preprocess=RECOMMENDED)
    return config.with_changes(augment=replace(config.augment, **augment)) if augment else config


def _pair(label: str, knn: RunConfig, svm: RunConfig, train: str, test: str | None, model: str = "folds") -> list[Row]:
    """3-NN, SVM and their ensemble."""
    return [Row(f"3-NN{label}", (knn,), train, test, model), Row(f"SVM{label}", (svm,), train, test, model),
            Row(f"ensemble 3-NN + SVM{label}", (knn, svm), train, test, model)]


def candidates(plan: Plan, train: str, test: str) -> list[Row]:
    """Issue 16's rows for one direction, today's best (3-NN, SVM, ``cell-keep-gray``) first."""
    knn, svm = _recommended(plan, train, "knn"), _recommended(plan, train, "svm")
    rows = _pair("", knn, svm, train, test)
    if "cnn-leukdash" in plan.models:
        rows.append(Row("ensemble leukdash CNN + 3-NN + SVM", (_recommended(plan, train, "cnn-leukdash"), knn, svm),
                        train, test))
    return rows + _pair(", final model", knn, svm, train, test, "final") + \
        _pair(f", {ROBUST_NAME}", _recommended(plan, train, "knn", **ROBUST),
              _recommended(plan, train, "svm", **ROBUST), train, test)


def _on_both(config: RunConfig, plan: Plan, **changes) -> RunConfig:
    return config.with_changes(dataset=plan.both, folds=plan.settings.folds, **changes)


def lodo_rows(plan: Plan, *, raw: bool = True) -> list[Row]:
    """Leave one dataset out: the candidates (plain and robust), and (``raw``) raw-input baselines."""
    def lodo(config):
        return _on_both(config, plan, protocol="lodo")

    rows = []
    if raw:
        rows += [Row("SVM (features), raw", (lodo(_strict(plan, plan.first)["svm"]),), plan.both)]
        if "cnn-leukdash" in plan.models:
            rows += [Row("leukdash CNN, raw", (lodo(_strict(plan, plan.first)["cnn-leukdash"]),), plan.both)]
    for label, augment in (("", {}), (f", {ROBUST_NAME}", ROBUST)):
        rows += _pair(label, lodo(_recommended(plan, plan.first, "knn", **augment)),
                      lodo(_recommended(plan, plan.first, "svm", **augment)), plan.both, None)
    return rows


def pooled_rows(plan: Plan) -> list[Row]:
    """Strict folds over both sets pooled: the raw SVM, then the candidates (no CNN: five CNN folds on
    both sets would be the plan's costliest run by far)."""
    rows = [Row("SVM (features), raw", (_on_both(_strict(plan, plan.first)["svm"], plan),), plan.both)]
    return rows + _pair(f", {RECOMMENDED}", _on_both(_recommended(plan, plan.first, "knn"), plan),
                        _on_both(_recommended(plan, plan.first, "svm"), plan), plan.both, None)


def alone(row: Row, source: str, plan: Plan) -> Row:
    """A row of runs on both sets, with the same settings trained on one of them (its own folds)."""
    folds = FOLDS.get(source, plan.settings.folds)
    return Row(row.label, tuple(c.with_changes(dataset=source, folds=folds) for c in row.configs), source)


def all_rows(plan: Plan) -> list[Row]:
    return [row for train, test in plan.directions for row in candidates(plan, train, test)] + \
        lodo_rows(plan) + pooled_rows(plan)


def plan_configs(plan: Plan) -> list[tuple[str, RunConfig]]:
    """Every run the sections read, labelled, each once (ensembles and final models aside)."""
    labelled = [(f"external {c.train} {c.preprocessing} {MODEL_NAMES[c.model]}", c.config)
                for c in external_matrix(plan)]
    for row in all_rows(plan):
        if len(row.configs) == 1 and row.model == "folds":
            labelled.append((f"{'lodo' if row.configs[0].protocol == 'lodo' else row.train} {row.label}",
                             row.configs[0]))
    found = {}
    for label, config in labelled:
        found.setdefault(config, (label, config))
    return list(found.values())


def row_id(row: Row) -> str:
    """The run id of a row: its run's, or its ensemble's (stored or not)."""
    from leukdash.engine.ensemble import ensemble_id
    from leukdash.engine.runner import resolve

    ids = [resolve(config).run_id for config in row.configs]
    return ids[0] if len(ids) == 1 else ensemble_id(ids)


def complete(plan: Plan, log=print) -> None:
    """Store the plan's ensembles and train its final models (of finished runs; the others are
    left to the sections, which list them as not computed)."""
    from leukdash.engine.ensemble import create_ensemble
    from leukdash.engine.final import refit
    from leukdash.engine.runner import load_result, resolve
    from leukdash.errors import LeukdashError

    for row in all_rows(plan):
        ids = [resolve(config).run_id for config in row.configs]
        if any(load_result(run_id) is None for run_id in ids):
            continue
        try:
            if len(ids) > 1:
                made = create_ensemble(ids)
                if not made["cached"]:
                    log(f"ensemble {made['run_id']} ({row.label}, trained on {row.train}): stored")
            if row.model == "final":
                for run_id in ids:
                    record = refit(run_id)
                    if not record["cached"]:
                        log(f"final model of {run_id} ({row.label}, trained on {row.train}): trained")
        except LeukdashError as error:  # one row fails in its table, not the whole report
            log(f"{row.label} (trained on {row.train}) failed: {type(error).__name__}: {error}")
