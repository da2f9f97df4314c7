"""Run the paper's experiments through the engine's run store, and write the report on them.

The matrix (:mod:`leukdash.reporting.matrix`) is run as one sweep (:func:`leukdash.evaluation.runs.run_sweep`):
every fold of every run is one task in one pool, results are cached, so a repeated
``reproduce`` is answered from the store and an interrupted one resumes with the folds it had
not finished. :mod:`leukdash.reporting.report` turns the outcomes into ``REPORT.md`` and its figures.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from leukdash.config import RunConfig
from leukdash.reporting.external_plan import Plan, complete, plan_configs
from leukdash.reporting.matrix import (  # noqa: F401  (FULL, QUICK, Settings, experiments: this module's API too)
    FIVE_CLASS_DEFAULT, FULL, QUICK, REAL_BINARY, REPORT_NAME, Experiment, Outcome, Settings, experiments,
)
from leukdash.paths import REPO_ROOT, artifacts_root, source_checkout

REPOSITORY_REPORT = REPO_ROOT / "docs" / "report"  # the committed report of a source checkout


def default_binary() -> str:
    """``allidb2_ufpr`` when it is found, else the built-in set (its ALL/HEALTHY subset)."""
    from leukdash.data.discovery import discover_datasets

    return REAL_BINARY if REAL_BINARY in discover_datasets() else FIVE_CLASS_DEFAULT


def _print(line: str) -> None:
    print(line, flush=True, file=sys.stdout)  # flushed: progress reaches a log file as it happens


def run_experiments(matrix: list[Experiment], *, compute: bool = True, log=_print, name: str = "reproduce",
                    scheduler: str | None = None, n_jobs: int | None = None) -> list[Outcome]:
    """Run (or, with ``compute=False``, only look up) every experiment, the missing ones as one
    sweep named ``name``; one line per experiment, then one per fold computed."""
    results = run_labelled([(f"Exp {e.exp} {e.id}", e.config) for e in matrix], compute=compute, log=log,
                           name=name, scheduler=scheduler, n_jobs=n_jobs)
    return [Outcome(experiment, result) for experiment, result in zip(matrix, results)]


def run_labelled(labelled: list[tuple[str, RunConfig]], *, compute: bool = True, log=_print, name: str,
                 scheduler: str | None = None, n_jobs: int | None = None) -> list[dict | None]:
    """Run (or only look up) labelled configs, the missing ones as one sweep; their results."""
    from leukdash.engine.runner import load_result, resolve
    from leukdash.engine.store import RunStore
    from leukdash.evaluation.runs import run_sweep  # each run stores what its checks need as it finishes

    store = RunStore()
    labels = {}
    for number, (label, config) in enumerate(labelled, 1):
        run_id = resolve(config).run_id
        labels[run_id] = label
        known = store.read_summary(run_id) is not None
        state = "cached" if known else "computing" if compute else "not computed"
        log(f"[{number}/{len(labelled)}] {label} ({run_id}): {state}")
    if compute and labelled:
        outcome = run_sweep([config for _, config in labelled], name=name, on_event=_fold_logger(log, labels),
                            scheduler=scheduler, n_jobs=n_jobs, store=store)
        for warning in outcome["warnings"]:  # the matrix's sweep now names other runs (other images, engine)
            log(f"warning: {warning}")
        results = outcome["results"]
    else:
        results = [load_result(resolve(config).run_id, store) for _, config in labelled]
    for result in results:
        if result is not None:
            acc = result["summary"]["val_acc"]
            log(f"{labels[result['run_id']]}: val_acc {acc['mean']:.4f} (min {acc['min']:.4f}, "
                f"max {acc['max']:.4f}), {sum(f['seconds'] for f in result['folds']):.0f} s of training")
    return results


def _fold_logger(log, labels: dict[str, str]):
    def on_event(event: dict) -> None:
        if event.get("event") == "fold_done":
            log(f"    {labels.get(event.get('run_id'), event.get('run_id'))}: fold {event['fold'] + 1}/"
                f"{event['n_folds']}: val_acc {event['metrics']['val_acc']:.4f} ({event['seconds']:.0f} s)")
    return on_event


def reproduce(*, quick: bool = False, binary: str | None = None, five_class: str = FIVE_CLASS_DEFAULT,
              out: Path | None = None, settings: Settings | None = None, compute: bool = True,
              select=None, log=_print, scheduler: str | None = None, n_jobs: int | None = None,
              external: Plan | None = None) -> Path:
    """Run the matrix and write the report; return the path of ``REPORT.md``.

    ``settings`` overrides the full or quick settings (tests use tiny ones); ``compute=False``
    writes the report from the runs already in the store, listing the others as not computed (refused,
    nothing written, when the report in ``out`` has figures of runs, or external rows, the store lacks);
    ``select(experiment) -> bool`` keeps part of the matrix only; ``scheduler`` a Dask address
    for the sweep (default ``$LEUKDASH_SCHEDULER``, else this machine); ``n_jobs`` caps its local
    cores (1: in this process; results do not depend on it). ``external``: the runs of the External
    validity section and of ``ACROSS_DATASETS.md`` (full settings: :class:`Plan`'s defaults).
    """
    from leukdash.reporting.report import build_report

    started = time.perf_counter()
    settings = settings or (QUICK if quick else FULL)
    binary = binary or default_binary()
    out = Path(out) if out else (quick_out() if quick else full_out())
    check_folder(out)
    mode = "quick" if settings == QUICK else "full" if settings == FULL else "custom"
    matrix = [e for e in experiments(binary, five_class, settings) if select is None or select(e)]
    if not compute:  # a store with fewer runs in all than the report: refused before a dataset is drawn
        from leukdash.engine.store import RunStore

        check_runs_kept(out, len(RunStore().list_runs()), "runs in all")
    log(f"reproduce: {len(matrix)} runs, binary task on {binary!r}, five classes on {five_class!r}, {mode} settings")
    outcomes = run_experiments(matrix, compute=compute, log=log, name=f"reproduce ({mode})", scheduler=scheduler,
                               n_jobs=n_jobs)
    if external is None and mode == "full":
        external = Plan()
    figures = None  # the External validity section's, gathered before anything is written when only read
    if not compute:  # from the store alone: refused when the report in ``out`` has figures it lacks
        check_runs_kept(out, sum(o.result is not None for o in outcomes), f"of its {len(outcomes)}")
        if external is not None:
            figures = kept_external_figures(external, out, log)
    shortcuts = {task: shortcut_scores(next(e for e in matrix if e.task == task).config)
                 for task in ("binary", "five") if any(e.task == task for e in matrix)}
    command = "python -m leukdash reproduce" + (" --quick" if quick else "") + ("" if compute else " --report-only")
    path = build_report(outcomes, out, settings=settings, mode=mode, command=command,
                        wall_seconds=time.perf_counter() - started, shortcuts=shortcuts)
    if external is not None:
        reproduce_external(external, path.parent, compute=compute, log=log, scheduler=scheduler, n_jobs=n_jobs,
                           matrix_ids={o.result["run_id"] for o in outcomes if o.result is not None}, figures=figures)
    log(f"report: {path}")
    return path


def check_folder(out: Path) -> None:
    """Refuse, before any run is computed, a report folder that is a file (or lies under one)."""
    from leukdash.errors import LeukdashError

    nearest = next(path for path in (out, *out.parents) if path.exists() or path == path.parent)
    if not nearest.is_dir():
        raise LeukdashError(f"--out must be a folder: {nearest} is a file")


# REPORT.md's header: "... (full settings): 48 of 48 runs available, ..."
_RUNS_AVAILABLE = re.compile(r"\): (\d+) of \d+ runs available")


def runs_in_report(out: Path) -> int:
    """How many runs of its matrix the report in folder ``out`` has figures of, as its REPORT.md
    header or its report.json says, whichever says more (0 where there is no report)."""
    from leukdash.reporting.external_report import read_report_data

    report = Path(out) / REPORT_NAME
    said = _RUNS_AVAILABLE.search(report.read_text(encoding="utf-8", errors="replace")) if report.is_file() else None
    done = read_report_data(out).get("runs_done")
    return max(int(said.group(1)) if said else 0, done if isinstance(done, int) else 0)


def check_runs_kept(out: Path, has: int, counted: str) -> None:
    """Refuse, with one line, to write a report in ``out`` from fewer runs than the report there has
    figures of (LEUKDASH_ARTIFACTS naming an empty or another store). ``has``: the runs the store
    holds, of the matrix or in all, as ``counted`` says ("of its 48", "runs in all")."""
    from leukdash.engine.store import RunStore
    from leukdash.errors import LeukdashError

    had = runs_in_report(out)
    if has < had:
        raise LeukdashError(f"the report in {out} has figures of {had} runs and this store ({RunStore().root}) holds "
                            f"{has} {counted}: {REPORT_NAME} left unchanged; point LEUKDASH_ARTIFACTS at "
                            "the store that holds the runs (or run without --report-only to compute them)")


def kept_external_figures(plan: Plan, out: Path, log=_print) -> dict:
    """The External validity figures the store holds, refused (one line) when the report in ``out``
    has figures they lack (:func:`leukdash.reporting.external_report.check_nothing_lost`)."""
    from leukdash.reporting.external_report import check_nothing_lost, external_data, read_report_data

    figures = external_data(plan, compute=False, log=log)
    check_nothing_lost(Path(out), read_report_data(out), figures)
    return figures


def reproduce_external(plan: Plan, out: Path, *, compute: bool = True, log=_print, scheduler: str | None = None,
                       n_jobs: int | None = None, matrix_ids: set[str] = frozenset(),
                       figures: dict | None = None) -> None:
    """The second sweep (the runs the External validity section and ``ACROSS_DATASETS.md`` read),
    their ensembles and final models; then both texts, and their figures in ``report.json`` under
    ``external`` (with ``sweep``: the runs not in the matrix, ``matrix_ids``, their fold time and
    wall time from the store) and ``across``. ``figures``: the external figures already gathered."""
    from leukdash.engine.store import read_json, write_json_atomic
    from leukdash.reporting.across_report import across_data, write_across
    from leukdash.reporting.external_report import external_data, external_section, missing_datasets, write_section
    from leukdash.reporting.report import DATA_NAME

    sweep = None
    if not missing_datasets(plan):
        labelled = plan_configs(plan)
        log(f"reproduce (external): {len(labelled)} runs on {plan.first} and {plan.second}")
        results = run_labelled(labelled, compute=compute, log=log, name="reproduce (external)",
                               scheduler=scheduler, n_jobs=n_jobs)
        if compute:
            complete(plan, log)
        sweep = _sweep_record(results, matrix_ids)
    external = {**(figures if figures is not None else external_data(plan, compute=compute, log=log)), "sweep": sweep}
    write_section(Path(out) / REPORT_NAME, external_section(external))
    data = read_json(Path(out) / DATA_NAME) or {}
    across = across_data(plan)
    if "command" in data:  # the call that wrote the report (reproduce, --quick, --report-only) wrote this page
        across["command"] = data["command"]
    write_across(out, across)
    write_json_atomic(Path(out) / DATA_NAME, {**data, "external": external, "across": across})


def _sweep_record(results: list[dict | None], matrix_ids: set[str]) -> dict:
    """The second sweep's runs, and the fold time and wall time (from the store) of those the
    matrix did not compute already."""
    from leukdash.engine.store import RunStore
    from leukdash.engine.timing import progress_span
    from leukdash.reporting.report.bookkeeping import utc_text

    own = [r for r in results if r is not None and r["run_id"] not in matrix_ids]
    span = progress_span([RunStore().progress_path(r["run_id"]) for r in own])
    return {"runs": len(results), "runs_done": sum(r is not None for r in results),
            "runs_in_matrix": sum(r is not None and r["run_id"] in matrix_ids for r in results),
            "fold_tasks": sum(len(r["folds"]) for r in own),
            "fold_seconds": round(sum(f["seconds"] for r in own for f in r["folds"]), 1),
            "span": span and {**span, "first": utc_text(span["first"]), "last": utc_text(span["last"]),
                              "wall_seconds": round(span["wall_seconds"], 1)}}


def shortcut_scores(config: RunConfig) -> dict:
    """The audit's shortcut accuracies (colour histogram, background only) on a run's dataset."""
    from leukdash.data.audit import SHORTCUT_SIZE, shortcut_scores as scores
    from leukdash.engine.runner import resolve
    from leukdash.data.arrays import load_arrays

    dataset = resolve(config).dataset
    arrays = load_arrays(dataset, SHORTCUT_SIZE)
    return scores(arrays.images, arrays.labels, arrays.groups, folds=config.folds, seed=config.seed)


def full_out() -> Path:
    """Where a full reproduce writes its report by default: the repository's ``docs/report``, or,
    for an installed package, ``report`` in the run store (site-packages is no place for it)."""
    return REPOSITORY_REPORT if source_checkout() else artifacts_root() / "report"


def quick_out() -> Path:
    """Where ``--quick`` writes its report by default: ``artifacts/report-quick``."""
    return artifacts_root() / "report-quick"


def report_path(out: Path | None = None) -> Path | None:
    """The newest generated report: in ``out`` if given, else the full one or the quick one."""
    candidates = [Path(out) / REPORT_NAME] if out else [full_out() / REPORT_NAME, quick_out() / REPORT_NAME]
    found = [path for path in candidates if path.is_file()]
    return max(found, key=os.path.getmtime) if found else None


# A run id as the report writes it: the model, a dash and 12 hex digits of the config hash, in backticks.
_REPORT_RUN_ID = re.compile(r"`((?:cnn|nb|svm|knn|dt)-[0-9a-f]{12})`")


def report_runs_in_store(text: str) -> tuple[int, int]:
    """How many of the run ids a report names are finished runs in this store, of how many it names."""
    from leukdash.engine.store import RunStore

    store = RunStore()
    named = set(_REPORT_RUN_ID.findall(text))
    return sum(store.read_summary(run_id) is not None for run_id in named), len(named)
