"""The run settings as command-line options: the table of flags beside the config they fill.

``run`` takes one value per option; ``sweep`` takes a comma list (a sweep axis) of each but ``--no-augment``,
``--classes`` and ``--balance-sources``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from leukdash.config import AugmentConfig, RunConfig
from leukdash.errors import FileRefused, LeukdashError


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
    ("--test-fraction", "test_fraction", float,
     "one holdout split instead of k folds: 1/k of the images (0.5, 0.333, 0.25, 0.2 ...)"),
    ("--seed", "seed", int, None),
    ("--preprocess", "preprocess", str, "raw (default, the paper's) or cell-{keep|fit}-{asis|reinhard|gray|hematoxylin}"),
)


def add_run_options(parser: argparse.ArgumentParser, lists: bool = False) -> None:
    """The run settings as options; with ``lists``, each takes a comma list of values (a sweep axis).

    An option not given is None: the config's default applies, and ``--config-file`` can tell
    which options were typed beside it."""
    robustness = "robustness augmentation, not in the paper (see the Augmentation page); 0 = off"
    for flag, name, kind, text in RUN_OPTIONS + tuple((_flag(name), name, float, robustness)
                                                      for name in AugmentConfig.OPTIONAL):
        if lists:
            parser.add_argument(flag, type=_comma_list(kind), help=f"{text + ': ' if text else ''}comma list")
        else:
            parser.add_argument(flag, type=kind, help=text)
    # One value each, also in a sweep.
    parser.add_argument("--no-augment", action="store_true", help="switch the paper's seven transforms off")
    parser.add_argument("--classes", help="comma-separated class subset, e.g. ALL,HEALTHY")
    parser.add_argument("--balance-sources", action="store_true",
                        help="several datasets: resample each training part so that every dataset weighs the same")


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _comma_list(kind):
    def parse(text: str) -> list:
        return [kind(value.strip()) for value in text.split(",")]

    parse.__name__ = f"comma list of {kind.__name__}"  # argparse names it in its error message
    return parse


def add_pool_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-jobs", type=int, help="cores used at once (1: in this process)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="a Dask scheduler, e.g. tcp://HOST:8786, or local: this machine (default: "
                             "$LEUKDASH_SCHEDULER, else this machine)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _base_config(args, augment: dict, **values) -> RunConfig:
    """The config of the options: ``values`` of the run options, ``augment`` of the robustness augmentations."""
    option = getattr(args, "dataset_option", None)
    if any(value is not None and not value.strip() for value in (option, args.dataset)):
        raise LeukdashError("the dataset name is empty (an unset shell variable?): give a dataset name or folder")
    if args.classes is not None and not args.classes.strip():
        raise LeukdashError("--classes is empty (an unset shell variable?): give class names, e.g. ALL,HEALTHY, "
                            "or leave the option out for every class")
    if option and args.dataset and option != args.dataset:
        raise LeukdashError(f"two datasets given ({args.dataset!r} and --dataset {option!r}): give one")
    return RunConfig(
        dataset=option or args.dataset or "synthetic",
        classes=tuple(c.strip() for c in args.classes.split(",")) if args.classes else None,
        augment=replace(AugmentConfig.off() if args.no_augment else AugmentConfig(),
                        **augment),
        balance_sources=args.balance_sources, **values)


# A run config is a few hundred bytes; anything far bigger is not one.
MAX_CONFIG_BYTES = 1 << 20


def config_from_args(args) -> RunConfig:
    if args.config_file:
        check_nothing_typed(args, "--config-file holds the whole run config", "give either the file or the options "
                            "(or edit the file)")
        return _config_file(args.config_file)
    robustness = {name: getattr(args, name) for name in AugmentConfig.OPTIONAL if getattr(args, name) is not None}
    return _base_config(args, robustness, **{name: getattr(args, name) for _, name, _, _ in RUN_OPTIONS
                                             if getattr(args, name) is not None})


def check_nothing_typed(args, why: str, advice: str) -> None:
    """Refuse run options typed beside one that replaces them all (``--config-file``, a sweep's
    ``--resume``): ``why; OPTIONS would be ignored: advice``."""
    typed = [flag for flag, name, _, _ in RUN_OPTIONS if getattr(args, name) is not None]
    typed += [_flag(name) for name in AugmentConfig.OPTIONAL if getattr(args, name) is not None]
    typed += [label for label, value in (("DATASET", args.dataset), ("--dataset", getattr(args, "dataset_option", None)),
                                         ("--classes", args.classes), ("--no-augment", args.no_augment),
                                         ("--balance-sources", args.balance_sources))
              if value is not None and value is not False]
    if typed:
        raise LeukdashError(f"{why}; {', '.join(typed)} would be ignored: {advice}")


def sweep_from_args(args) -> tuple[list[RunConfig], dict]:
    """The configs of ``sweep`` and its axes (the options given several values); a robustness augmentation's
    axis is ``augment.<name>``, as :func:`~leukdash.engine.sweep.expand_grid` takes it."""
    from leukdash.engine.sweep import expand_grid

    settings = [name for _, name, _, _ in RUN_OPTIONS] + [f"augment.{name}" for name in AugmentConfig.OPTIONAL]
    given = {name: getattr(args, name.removeprefix("augment.")) for name in settings}
    given = {name: values for name, values in given.items() if values is not None}
    axes = {name: values for name, values in given.items() if len(values) > 1}
    # One grid of every option given, a single value an axis of one: no config is checked but the grid's
    # (the default model, the paper CNN, may refuse a setting that only the models swept take).
    return expand_grid(_base_config(args, {}), given), axes


def typed_settings(args) -> list[str]:
    """The config fields of the run options typed on the command line, in the options' order."""
    return [name for _, name, _, _ in RUN_OPTIONS if getattr(args, name) is not None]


def note_settings_without_effect(configs: list[RunConfig], typed: list[str] = ()) -> None:
    """Say in ``note:`` lines which settings change nothing, and why: without augmented copies a run is
    the plain one (its run id too), so its jitters and the paper protocol do nothing; of the ``typed``
    fields (:func:`typed_settings`), those the model or the split does not read do nothing either.
    Each config is validated first: a setting the run refuses is refused here, in its one line, not noted."""
    for config in configs:
        config.validate()
    settings, reasons = {}, {}
    for config in configs:
        if config.augment_factor > 1 and config.augment.enabled():
            continue
        ignored = [f"{_flag(name)} {getattr(config.augment, name):g}" for name in AugmentConfig.OPTIONAL
                   if getattr(config.augment, name)]
        ignored += ["--protocol paper"] if config.protocol == "paper" else []
        if ignored:
            settings.update(dict.fromkeys(ignored))
            reasons["--augment-factor 1" if config.augment_factor == 1 else "--no-augment"] = None
    _note(settings, reasons, len(configs), " (no augmented copies)")
    if not typed:  # a config file's settings: none typed
        return
    flags = {name: flag for flag, name, _, _ in RUN_OPTIONS}
    settings, reasons = {}, {}
    for config in configs:
        # The run id leaves out what the model and the split do not read; "raw" preprocessing it leaves out only
        # so that older runs keep their ids.
        kept = config.canonical()
        for name in (name for name in typed if name not in kept and name != "preprocess"):
            settings[f"{flags[name]} {_shown(getattr(config, name))}"] = None
            holdout = config.test_fraction is not None
            split = f"--test-fraction {config.test_fraction:g}" if holdout else "--protocol lodo"
            reasons[split if name == "folds" else f"--model {config.model}"] = None
    _note(settings, reasons, len(configs))


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _note(settings: dict, reasons: dict, n_configs: int, why: str = "") -> None:
    if settings:
        where = "with" if n_configs == 1 else "in the grid's runs with"
        print(f"note: {', '.join(settings)} {'has' if len(settings) == 1 else 'have'} no effect {where} "
              f"{' or '.join(reasons)}{why}: same run and run id as without "
              f"{'it' if len(settings) == 1 else 'them'}", file=sys.stderr)


def check_grid_size(n_runs: int, max_runs: int | None) -> None:
    """Refuse a sweep of more runs than ``--max-runs`` (default ``MAX_SWEEP_RUNS``), saying how to go on."""
    from leukdash.engine.sweep import MAX_SWEEP_RUNS

    if max_runs is not None and max_runs < 1:
        raise LeukdashError(f"--max-runs must be at least 1, got {max_runs}")
    cap = MAX_SWEEP_RUNS if max_runs is None else max_runs
    if n_runs > cap:
        raise LeukdashError(f"this grid is {n_runs} runs, more than {cap}: check its axes (give fewer values), "
                            f"or pass --max-runs {n_runs} to launch it")


def _config_file(path: Path) -> RunConfig:
    """The config in a JSON file: a config object, or a run's ``meta.json``: the config that
    finishes that run (:func:`~leukdash.engine.runner.config_to_finish`)."""
    from leukdash.data.files import read_regular_file
    from leukdash.engine.ensemble import ensemble_command
    from leukdash.engine.record_shapes import is_ensemble, is_meta
    from leukdash.engine.runner import config_to_finish
    from leukdash.engine.store import parse_json

    try:
        values = parse_json(read_regular_file(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except FileRefused as error:
        raise LeukdashError(f"cannot read config file {path}: {error}") from None
    except ValueError:  # not UTF-8, or not JSON
        raise LeukdashError(f"config file {path} is not a JSON text file") from None
    if is_meta(values) and is_ensemble(values):
        raise LeukdashError(f"config file {path} is the record of ensemble {values['run_id']}, not of a run: "
                            f"`{ensemble_command(values)}` recreates it (each member runs with its own meta.json)")
    if is_meta(values):
        return config_to_finish(values)
    if isinstance(values, dict) and isinstance(values.get("config"), dict) and "run_id" in values:
        values = values["config"]
    if not isinstance(values, dict):
        raise LeukdashError(f"config file {path} must hold a JSON object of run settings, "
                            f"not {type(values).__name__}")
    return RunConfig.from_dict(values)


def n_jobs_option(requested: int | None) -> int | None:
    """``--n-jobs``, at most one worker per core this process may use (``taskset``, a container's
    CPU set): more would only compete for the same cores."""
    from leukdash.engine.machine import machine_cores

    if requested is None:
        return None
    if requested < 1:
        raise LeukdashError(f"--n-jobs must be at least 1, got {requested}")
    cores = machine_cores()
    if requested > cores:
        print(f"note: --n-jobs {requested} capped to {cores}, the number of cores this process may use",
              file=sys.stderr)
    return min(requested, cores)
