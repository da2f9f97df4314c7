"""``python -m leukdash``: the engine from a terminal, thin over the modules it calls.

Every command prints a human summary, or one JSON object with ``--json``. Bad input exits
with status 2 and one line on stderr that says what is wrong.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from leukdash.config import AugmentConfig, RunConfig
from leukdash.errors import FileRefused, LeukdashError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line instead of usage + message
        raise LeukdashError(f"{self.prog}: {message}")


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so the worker pools are stopped on the way out."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def _stop_on_signals():
    """Turn SIGTERM and SIGHUP into :class:`Stopped` while a command runs (main thread only)."""
    def stop(signum, frame):
        raise Stopped(signum)

    names = [name for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    try:
        previous = {name: signal.signal(getattr(signal, name), stop) for name in names}
    except ValueError:  # not the main thread: leave signals alone
        previous = {}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        with _stop_on_signals():
            args = parser.parse_args(argv)
            if not getattr(args, "command", None):
                parser.print_help()
                return 2
            return args.handler(args) or 0
    except LeukdashError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        signum = error.signum if isinstance(error, Stopped) else signal.SIGINT
        print(f"{'stopped by ' + error.args[0] if isinstance(error, Stopped) else 'interrupted'}: finished folds "
              "are kept; run the same command again to resume", file=sys.stderr)
        return 128 + int(signum)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="leukdash", description="Leukemia subtype identification: datasets, runs, comparisons.")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    datasets = commands.add_parser("datasets", help="list the datasets found")
    datasets.add_argument("--json", action="store_true")
    datasets.set_defaults(handler=_datasets)

    audit = commands.add_parser("audit", help="audit a dataset: counts, sizes, duplicates, shortcuts")
    audit.add_argument("dataset", help="dataset name or folder")
    audit.add_argument("--preprocess", help="also segment every cell in this mode, count the failures and "
                                            "re-run the shortcut checks on the preprocessed images")
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(handler=_audit)

    run = commands.add_parser("run", help="run (or read back) a cross-validated experiment")
    run.add_argument("dataset", nargs="?", help="dataset name or folder (default: synthetic); "
                     "several with the same classes: a comma list, e.g. allidb2_ufpr,cnmc_dev")
    run.add_argument("--dataset", dest="dataset_option", metavar="DATASET", help="the same as DATASET")
    _add_run_options(run)
    run.add_argument("--config-file", type=Path, help="a JSON run config (as written by the dashboard)")
    _add_pool_options(run)
    run.set_defaults(handler=_run)

    sweep = commands.add_parser("sweep", help="run a grid of configs as one job: every run option takes a comma list")
    sweep.add_argument("dataset", nargs="?", help="dataset name or folder (default: synthetic)")
    _add_run_options(sweep, lists=True)
    sweep.add_argument("--name", help="a label for the sweep")
    sweep.add_argument("--resume", metavar="SWEEP_ID", help="launch a stored sweep again (its missing folds)")
    _add_pool_options(sweep)
    sweep.set_defaults(handler=_sweep)

    sweeps = commands.add_parser("sweeps", help="list the stored sweeps and their progress")
    sweeps.add_argument("--json", action="store_true")
    sweeps.set_defaults(handler=_sweeps)

    runs = commands.add_parser("runs", help="list the runs in the store")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=_runs)

    compare = commands.add_parser("compare", help="compare runs side by side, with McNemar tests")
    compare.add_argument("run_ids", nargs="+")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(handler=_compare)

    demo = commands.add_parser("demo", help="compute the small demo runs that ship with the app")
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(handler=_demo)

    predict = commands.add_parser("predict", help="predict images with the fold models of a finished run")
    predict.add_argument("run_id")
    predict.add_argument("images", nargs="+", type=Path)
    predict.add_argument("--json", action="store_true")
    predict.set_defaults(handler=_predict)

    evaluate = commands.add_parser("evaluate", help="external test: a finished run's fold models on another dataset")
    evaluate.add_argument("run_id")
    evaluate.add_argument("dataset", help="dataset name or folder with the run's classes")
    evaluate.add_argument("--recompute", action="store_true", help="ignore the stored result")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=_evaluate)

    external = commands.add_parser("external-report",
                                   help="write the report's External validity section (runs are read, not trained)")
    external.add_argument("--out", type=Path, help="report folder (default: docs/report)")
    external.add_argument("--no-compute", action="store_true", help="use stored external tests only")
    external.set_defaults(handler=_external_report)

    reproduce = commands.add_parser("reproduce", help="run the paper's experiments and write the report")
    reproduce.add_argument("--quick", action="store_true", help="fewer epochs, folds and pixels: a smoke test")
    reproduce.add_argument("--binary", help="ALL vs HEALTHY dataset (default: allidb2_ufpr if found, else synthetic)")
    reproduce.add_argument("--five-class", default="synthetic", help="five-class dataset (default: synthetic)")
    reproduce.add_argument("--out", type=Path, help="report folder (default: docs/report, or artifacts/report-quick)")
    reproduce.add_argument("--report-only", action="store_true", help="write the report from the runs in the store")
    reproduce.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler for the runs (see sweep)")
    reproduce.set_defaults(handler=_reproduce)
    return parser


# The run options: flag, RunConfig field, value type, help.
RUN_OPTIONS = (
    ("--model", "model", str, "cnn, nb, svm, knn or dt"),
    ("--architecture", "architecture", str, "cnn: paper or leukdash"),
    ("--optimizer", "optimizer", str, "cnn: sgd or adam"),
    ("--learning-rate", "learning_rate", float, None),
    ("--epochs", "epochs", int, None),
    ("--batch-size", "batch_size", int, None),
    ("--image-size", "image_size", int, None),
    ("--feature-set", "feature_set", str, "classic: pixels or features"),
    ("--k", "k", int, "k-NN neighbours"),
    ("--protocol", "protocol", str, "strict, paper or lodo (several datasets: leave one dataset out)"),
    ("--augment-factor", "augment_factor", int, "K: 1 = none"),
    ("--folds", "folds", int, None),
    ("--test-fraction", "test_fraction", float, "one holdout split instead of k folds"),
    ("--seed", "seed", int, None),
    ("--preprocess", "preprocess", str, "raw (default, the paper's) or cell-{keep|fit}-{asis|reinhard|gray|hematoxylin}"),
)


def _add_run_options(parser: argparse.ArgumentParser, lists: bool = False) -> None:
    """The run settings as options; with ``lists``, each takes a comma list of values (a sweep axis)."""
    defaults = RunConfig()
    for flag, name, kind, text in RUN_OPTIONS:
        if lists:
            parser.add_argument(flag, type=_comma_list(kind), help=f"{text + ': ' if text else ''}comma list")
        else:
            parser.add_argument(flag, type=kind, default=getattr(defaults, name), help=text)
    parser.add_argument("--no-augment", action="store_true", help="switch every transform off")
    parser.add_argument("--classes", help="comma-separated class subset, e.g. ALL,HEALTHY")


def _comma_list(kind):
    def parse(text: str) -> list:
        return [kind(value.strip()) for value in text.split(",")]

    parse.__name__ = f"comma list of {kind.__name__}"  # argparse names it in its error message
    return parse


def _add_pool_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-jobs", type=int, help="cores used at once (1: in this process)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="a Dask scheduler, e.g. tcp://HOST:8786 (default: $LEUKDASH_SCHEDULER, else this machine)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _base_config(args, **values) -> RunConfig:
    option = getattr(args, "dataset_option", None)
    if option and args.dataset and option != args.dataset:
        raise LeukdashError(f"two datasets given ({args.dataset!r} and --dataset {option!r}): give one")
    return RunConfig(
        dataset=option or args.dataset or "synthetic",
        classes=tuple(c.strip() for c in args.classes.split(",")) if args.classes else None,
        augment=AugmentConfig.off() if args.no_augment else AugmentConfig(), **values)


# A run config is a few hundred bytes; anything far bigger is not one.
MAX_CONFIG_BYTES = 1 << 20


def config_from_args(args) -> RunConfig:
    if args.config_file:
        return _config_file(args.config_file)
    return _base_config(args, **{name: getattr(args, name) for _, name, _, _ in RUN_OPTIONS})


def sweep_from_args(args) -> tuple[list[RunConfig], dict]:
    """The configs of ``sweep`` and its axes (the options given several values)."""
    from leukdash.engine.sweep import expand_grid

    given = {name: getattr(args, name) for _, name, _, _ in RUN_OPTIONS if getattr(args, name) is not None}
    axes = {name: values for name, values in given.items() if len(values) > 1}
    base = _base_config(args, **{name: values[0] for name, values in given.items() if len(values) == 1})
    return expand_grid(base, axes), axes


def _config_file(path: Path) -> RunConfig:
    """The config in a JSON file: a config object, or a run's ``meta.json`` (its ``config``)."""
    from leukdash.data.files import read_regular_file

    try:
        values = json.loads(read_regular_file(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except FileRefused as error:
        raise LeukdashError(f"cannot read config file {path}: {error}") from None
    except ValueError:  # not UTF-8, or not JSON
        raise LeukdashError(f"config file {path} is not a JSON text file") from None
    if isinstance(values, dict) and isinstance(values.get("config"), dict) and "run_id" in values:
        values = values["config"]
    if not isinstance(values, dict):
        raise LeukdashError(f"config file {path} must hold a JSON object of run settings, "
                            f"not {type(values).__name__}")
    return RunConfig.from_dict(values)


def _n_jobs(requested: int | None) -> int | None:
    """``--n-jobs``, at most one worker per core: more would only compete for the same cores."""
    import os

    if requested is None:
        return None
    if requested < 1:
        raise LeukdashError(f"--n-jobs must be at least 1, got {requested}")
    cores = os.cpu_count() or 1
    if requested > cores:
        print(f"note: --n-jobs {requested} capped to {cores}, the number of cores of this machine", file=sys.stderr)
    return min(requested, cores)


def _datasets(args) -> int:
    from leukdash.data.discovery import discover_datasets, open_dataset

    listed = [open_dataset(name).describe() for name in discover_datasets()]
    if args.json:
        _print_json({"datasets": listed})
    else:
        for entry in listed:
            counts = ", ".join(f"{c} {n}" for c, n in entry["classes"].items())
            note = f"  [{entry['label']}]" if entry["synthetic"] else ""
            print(f"{entry['name']:<20} {entry['n_images']:>6} images  {counts}{note}\n{'':<20} {entry['path']}")
    return 0


def _audit(args) -> int:
    from leukdash.data.audit import audit_dataset, format_audit
    from leukdash.data.discovery import open_dataset

    report = audit_dataset(open_dataset(args.dataset), preprocess=args.preprocess)
    _print_report(args, report, format_audit)
    return 0


def _run(args) -> int:
    from leukdash.engine.runner import run

    config, n_jobs = config_from_args(args), _n_jobs(args.n_jobs)
    line = None if args.quiet else ProgressLine(sys.stderr)
    try:
        result = run(config, n_jobs=n_jobs, on_event=line.update if line else None, scheduler=args.scheduler)
    finally:
        if line:
            line.close()
    if args.json:
        _print_json(_run_json(result))
    else:
        print(_run_text(result))
    return 0


def _run_json(result: dict) -> dict:
    keep = ("fold", "val_acc", "val_loss", "train_acc", "train_loss", "balanced_acc", "macro_f1", "seconds",
            "per_class_recall", "confusion", "n_train", "n_val", "held_out", "per_source")
    dataset = result["dataset"]
    return {
        "run_id": result["run_id"], "cached": result["cached"], "computed_folds": result["computed_folds"],
        "config": result["config"],
        "dataset": {"name": dataset["name"], "fingerprint": dataset["fingerprint"],
                    "n_images": dataset["n_used"], "classes": dataset["classes"], "synthetic": dataset["synthetic"]},
        "folds": [{k: fold[k] for k in keep if k in fold} for fold in result["folds"]],
        "summary": result["summary"], "versions": result["versions"], "seconds": round(result["seconds"], 3),
    }


def _run_text(result: dict) -> str:
    config, summary = result["config"], result["summary"]
    head = f"run {result['run_id']} ({'cached' if result['cached'] else 'computed'}) " \
           f"{config['model']} on {result['dataset']['name']}, {len(result['folds'])} fold(s), {config['protocol']}"
    lines = [head]
    if config.get("test_fraction") is None and config["protocol"] != "lodo" and len(result["folds"]) < config["folds"]:
        lines.append(f"({len(result['folds'])} of the {config['folds']} folds asked: a class has only "
                     f"{len(result['folds'])} image groups, and a group never straddles folds)")
    lines += [f"{'fold':>4} {'val_acc':>8} {'val_loss':>9} {'train_acc':>9} {'bal_acc':>8} {'macro_f1':>8} {'sec':>6}"]
    for fold in result["folds"]:
        if "held_out" in fold:
            lines.append(f"fold {fold['fold'] + 1} validates on {fold['held_out']} (trained on the other datasets):")
        lines.append(f"{fold['fold'] + 1:>4} {fold['val_acc']:>8.4f} {fold['val_loss']:>9.4f} {fold['train_acc']:>9.4f} "
                     f"{fold['balanced_acc']:>8.4f} {fold['macro_f1']:>8.4f} {fold['seconds']:>6.1f}")
    acc = summary["val_acc"]
    low, high = acc.get("ci95") or [acc["mean"], acc["mean"]]
    # Clipped to the possible range of an accuracy, as the report shows it.
    lines.append(f"mean val_acc {acc['mean']:.4f} (std {acc['std']:.4f}, min {acc['min']:.4f}, max {acc['max']:.4f}, "
                 f"95% CI {max(low, 0.0):.4f}-{min(high, 1.0):.4f})")
    return "\n".join(lines + _sources_text(summary.get("per_source") or {}))


# Per-group recall is listed for sources with few groups (subjects); an ALL-IDB image is a group.
MAX_GROUPS_LISTED = 30


def _sources_text(per_source: dict) -> list[str]:
    # Pooled figures lead: a source's folds can differ much in size and in the classes they hold.
    lines = []
    for name, source in per_source.items():
        pooled, acc = source["pooled"], source["val_acc"]
        recall = "  ".join(f"{c} {r:.4f}" for c, r in pooled["per_class_recall"].items())
        lines.append(f"{name} ({source['n_val']} images): val_acc {pooled['val_acc']:.4f}  "
                     f"bal_acc {pooled['balanced_acc']:.4f}  recall {recall}  "
                     f"(over {source['folds']} fold(s): mean {acc['mean']:.4f}, min {acc['min']:.4f}, max {acc['max']:.4f})")
        groups = source["per_group_recall"]
        if len(groups) <= MAX_GROUPS_LISTED:
            lines.append(f"  per-group recall: {'  '.join(f'{g} {r:.2f}' for g, r in groups.items())}")
    return lines


def _sweep(args) -> int:
    from leukdash.engine.sweep import resume_sweep, run_sweep

    options = dict(n_jobs=_n_jobs(args.n_jobs), scheduler=args.scheduler,
                   on_event=None if args.quiet else SweepLog(sys.stderr).update)
    if args.resume:
        outcome = resume_sweep(args.resume, **options)
    else:
        configs, axes = sweep_from_args(args)
        outcome = run_sweep(configs, name=args.name, axes=axes, **options)
    if args.json:
        _print_json({"sweep_id": outcome["sweep_id"], "name": outcome["name"], "axes": outcome["axes"],
                     "seconds": round(outcome["seconds"], 3),
                     "runs": [_run_json(result) for result in outcome["results"]]})
        return 0
    print(f"sweep {outcome['sweep_id']} ({outcome['name']}): {len(outcome['results'])} run(s) "
          f"in {outcome['seconds']:.1f} s")
    for result in outcome["results"]:
        acc, config = result["summary"]["val_acc"], result["config"]
        print(f"{result['run_id']:<18} {'cached' if result['cached'] else 'computed':<8} {_settings(config, outcome['axes'])}"
              f"  val_acc {acc['mean']:.4f} (std {acc['std']:.4f})")
    return 0


def _settings(config: dict, axes: dict | None) -> str:
    """The settings a sweep varies, e.g. ``model=cnn optimizer=adam``."""
    return " ".join(f"{name}={config[name]}" for name in axes or {}) or config["model"]


def _sweeps(args) -> int:
    from leukdash.engine.sweep import list_sweeps

    found = list_sweeps()
    if args.json:
        _print_json({"sweeps": found})
        return 0
    for entry in found:
        complete = sum(run["status"] == "complete" for run in entry["runs"])
        print(f"{entry['sweep_id']:<18} {entry['state']:<8} {complete}/{len(entry['runs'])} runs  "
              f"{entry['done_folds']}/{entry['total_folds']} folds  {entry['name']}")
    return 0


def _runs(args) -> int:
    from leukdash.engine.store import RunStore

    runs = RunStore().list_runs()
    if args.json:
        _print_json({"runs": runs})
        return 0
    for entry in runs:
        config = entry["meta"]["config"] if entry.get("meta") else {}
        acc = (entry.get("summary") or {}).get("val_acc", {}).get("mean")
        shown = f"{acc:.4f}" if acc is not None else "-"
        print(f"{entry['run_id']:<18} {entry['status']:<9} {config.get('model', '?'):<4} "
              f"{(entry.get('meta') or {}).get('dataset', {}).get('name', '?'):<16} val_acc {shown}")
    return 0


def _compare(args) -> int:
    from leukdash.evaluation.compare import compare_runs, format_comparison

    comparison = compare_runs(args.run_ids)
    _print_report(args, comparison, format_comparison)
    return 0


def _demo(args) -> int:
    from leukdash.reporting.demo import run_demo

    results = run_demo(on_event=None if args.json else ProgressLine(sys.stderr).update)
    if args.json:
        _print_json({"runs": [_run_json(result) for result in results]})
    else:
        for result in results:
            print(_run_text(result))
    return 0


def _predict(args) -> int:
    from leukdash.evaluation.predict import predict_files

    predictions = predict_files(args.run_id, args.images)
    if args.json:
        _print_json({"run_id": args.run_id, "predictions": predictions})
    else:
        for entry in predictions:
            if "error" in entry:
                print(f"{entry['file']}: cannot read: {entry['error']}")
            else:
                probs = "  ".join(f"{c} {p:.3f}" for c, p in entry["probabilities"].items())
                print(f"{entry['file']}: {entry['predicted']} (folds agreeing {entry['agreement']}/{entry['n_folds']})  {probs}")
                _print_checks(entry)
    if all("error" in entry for entry in predictions):
        print(f"error: none of the {len(predictions)} image(s) could be read", file=sys.stderr)
        return 2
    return 0


def _print_checks(entry: dict) -> None:
    """The out-of-distribution warning and the known-image answer of one prediction."""
    ood, known = entry.get("ood") or {}, entry.get("known")
    if ood.get("outside"):
        print(f"  WARNING: unlike the run's training images (distance score {ood['score']:.2f}, above "
              f"{ood['percentile']:.0f}% of its own validation images): the prediction is not reliable")
    if known and "error" not in known:
        print(f"  known image: {known['match']} to {known['file']} ({known['class']}); "
              + (f"fold {known['fold']}'s model, which did not train on it, predicts {known['prediction']}"
                 if known["fold"] else "every model trained on it"))


def _evaluate(args) -> int:
    from leukdash.evaluation.evaluate import evaluate, format_evaluation

    result = evaluate(args.run_id, args.dataset, recompute=args.recompute)
    _print_report(args, result, format_evaluation)
    return 0


def _external_report(args) -> int:
    from leukdash.reporting.external_report import external_section, write_section
    from leukdash.reporting.reproduce import FULL_OUT, REPORT_NAME

    path = write_section((args.out or FULL_OUT) / REPORT_NAME, external_section(compute=not args.no_compute))
    print(f"report: {path}")
    return 0


def _reproduce(args) -> int:
    from leukdash.reporting.reproduce import reproduce

    reproduce(quick=args.quick, binary=args.binary, five_class=args.five_class, out=args.out,
              compute=not args.report_only, scheduler=args.scheduler)
    return 0


class ProgressLine:
    """A one-line progress bar on a terminal; one line per finished fold elsewhere (logs)."""

    def __init__(self, stream):
        self.stream, self.events, self.live = stream, [], stream.isatty()

    def update(self, event: dict) -> None:
        from leukdash.engine.progress import format_progress_line, latest_state

        self.events.append(event)
        if self.live:
            self.stream.write("\r\033[K" + format_progress_line(latest_state(self.events)))
        elif event.get("event") == "fold_done":
            self.stream.write(f"fold {event['fold'] + 1}/{event['n_folds']} done: val_acc {event['metrics']['val_acc']:.4f}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.live and self.events:
            self.stream.write("\n")
            self.stream.flush()


class SweepLog:
    """One line per finished fold and run of a sweep (several runs progress at once)."""

    def __init__(self, stream):
        self.stream = stream

    def update(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "fold_done":
            self.stream.write(f"{event['run_id']}: fold {event['fold'] + 1}/{event['n_folds']} done, "
                              f"val_acc {event['metrics']['val_acc']:.4f} ({event['seconds']:.0f} s)\n")
        elif kind == "done":
            self.stream.write(f"{event['run_id']}: done\n")
        elif kind in ("message", "failed"):
            self.stream.write(f"{event.get('run_id', '')}: {event.get('message', kind)}\n")
        else:
            return
        self.stream.flush()


def _print_json(value) -> None:
    print(json.dumps(value, indent=2, default=str))


def _print_report(args, report: dict, format_text) -> None:
    """A command's result: as JSON with ``--json``, else as ``format_text`` writes it."""
    if args.json:
        _print_json(report)
    else:
        print(format_text(report))
