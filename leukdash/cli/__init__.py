"""``python -m leukdash``: the engine from a terminal, thin over the modules it calls.

Every command prints a human summary, or one JSON object with ``--json``. Bad input exits
with status 2 and one line on stderr that says what is wrong. The parser and the signal
handling live here; each command is one small function in :mod:`leukdash.cli.commands`, the
run options' table in :mod:`leukdash.cli.run_options`, and what the commands print in
:mod:`leukdash.cli.output`.
"""

from __future__ import annotations

import argparse
import os
import signal
import re
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from leukdash.cli import commands as cmd
from leukdash.cli.output import GuardedOutput
from leukdash.cli.run_options import add_pool_options, add_run_options
from leukdash.atomic import explained_errors
from leukdash.errors import LeukdashError, StoreWarning, interrupt_behind
from leukdash.fd2 import open_closed_standard_streams
from leukdash import interrupts
from leukdash.interrupts import Stopped  # noqa: F401 (where callers and tests have always found it)
from leukdash.paths import check_artifacts_root, printable


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line instead of usage + message
        option = re.fullmatch(r"argument (--[\w-]+)(?:/-\w)?: expected one argument", message)
        if option and self._dash_value_after(option[1]):  # argparse reads -1,2 or -x as the next option
            message += f" (for a value that starts with '-', write {option[1]}=VALUE)"
        # argparse says what is missing before what it does not know: a mistyped option is the likelier slip
        if message.startswith("the following arguments are required") and (unknown := self._unknown_options()):
            raise _unrecognized(self.prog, unknown)
        raise LeukdashError(f"{self.prog}: {message}")

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)  # for error(), which argparse gives no arguments
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # argparse names the top parser ("leukdash: ..."); the subcommand owns the options to read
            command = getattr(parsed, "command", None)
            raise _unrecognized(f"{self.prog} {command}" if command else self.prog, extras)
        return parsed

    def _dash_value_after(self, option: str) -> bool:
        """Whether ``option`` (as given: itself, a prefix of it or its short form) is followed by a word that
        starts with '-'; not when it is the last word (no value given at all)."""
        names = self._option_string_actions[option].option_strings
        given = getattr(self, "_given", [])
        return any((arg in names or (len(arg) > 2 and option.startswith(arg))) and after.startswith("-")
                   for arg, after in zip(given, given[1:]))

    def _unknown_options(self) -> list[str]:
        """The options given to this parser that it does not know (``--bogus``, ``--bogus=1``, ``-z``)."""
        given = getattr(self, "_given", [])
        given = given[:given.index("--")] if "--" in given else given  # after it, all are values
        return [arg for arg in given if arg.startswith("-") and not self._known_option(arg)]

    def _known_option(self, arg: str) -> bool:
        """Whether argparse takes ``arg`` as one of this parser's options, as it reads them: ``--json``, ``--jso``
        (a prefix: one that fits several argparse refuses itself, before this), ``-q``, ``-qVALUE``; ``-1`` and
        ``-`` are values."""
        known = self._option_string_actions
        if not arg.startswith("--"):
            return len(arg) < 2 or not arg[1].isalpha() or arg[:2] in known
        name = arg.split("=", 1)[0]
        return any(option.startswith(name) for option in known if option.startswith("--"))


def _unrecognized(prog: str, extras: list[str]) -> LeukdashError:
    return LeukdashError(f"{prog}: unrecognized arguments: {' '.join(extras)} (see {prog} --help)")


def _add_dataset(parser: argparse.ArgumentParser, help: str) -> None:
    """The dataset of a run or a sweep, as DATASET or as --dataset DATASET."""
    parser.add_argument("dataset", nargs="?", help=help)
    parser.add_argument("--dataset", dest="dataset_option", metavar="DATASET", help="the same as DATASET")


def _path(what: str):
    """An argparse type: a path, refused when empty (``Path("")`` is ".", the current folder:
    never what was meant)."""
    def parse(text: str) -> Path:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{what} is empty (an unset shell variable?)")
        return Path(text)
    return parse


# The commands that compute folds, which an interrupted launch keeps and the next one resumes.
FOLD_COMMANDS = ("run", "sweep", "reproduce", "demo")


@contextmanager
def _stop_on_signals():
    """While a command runs (main thread only), SIGINT raises KeyboardInterrupt and SIGTERM and SIGHUP
    :class:`Stopped`; each is also remembered (:mod:`leukdash.interrupts`), so that computing in this
    process raises it again at its next safe point where Python swallowed it (in a weakref callback)."""
    names = [name for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]
    interrupts.forget()
    # One ignored from the start (nohup, a shell's background job) stays ignored; one set from outside Python
    # (getsignal says None) is left alone too: it could not be put back.
    try:
        previous = {name: signal.signal(getattr(signal, name), interrupts.stop) for name in names
                    if signal.getsignal(getattr(signal, name)) not in (signal.SIG_IGN, None)}
    except ValueError:  # not the main thread: leave signals alone
        previous = {}
    hook = sys.unraisablehook
    if previous:
        sys.unraisablehook = interrupts.quiet_unraisable(hook)
    try:
        yield
    finally:
        _put_back(previous, hook)


def _put_back(previous: dict, hook) -> None:
    """Put back the handlers and the unraisable hook that :func:`_stop_on_signals` replaced, and forget its stop,
    whole: a second Ctrl-C landing meanwhile would cut it short and leave them to the caller's next computing
    (a notebook's run_many would stop before its first fold). The signals wait, blocked, until it is done,
    then meet the handlers put back."""
    signums = [getattr(signal, name) for name in previous]
    held = None
    try:  # either call raises a stop that landed just before it: the first before blocking, the second after
        if signums and hasattr(signal, "pthread_sigmask"):
            held = signal.pthread_sigmask(signal.SIG_BLOCK, [])
            signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
        sys.unraisablehook = hook
        interrupts.forget()
        if held is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


def main(argv: list[str] | None = None) -> int:
    open_closed_standard_streams()  # again for callers other than __main__ (which does it first)
    for stream in (sys.stdout, sys.stderr):  # a terminal that cannot show a file's name gets it escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args, stdout = None, sys.stdout
    sys.stdout = GuardedOutput(stdout)
    try:
        # explained_errors: where the store lives (full, read-only, not a folder) in one line
        with _stop_on_signals(), explained_errors(), _store_warnings_said():
            parser = build_parser()  # in the try: a Ctrl-C this early is said in one line too
            args = parser.parse_args(argv)
            if not getattr(args, "command", None):
                parser.print_help()
                return 2
            check_artifacts_root()
            status = args.handler(args) or 0
            interrupts.check()  # a stop swallowed where no fold checked it (loading, after the last fold) is said too
            sys.stdout.flush()  # here, where a failed write is said in one line, not at the interpreter's exit
            return status
    except LeukdashError as error:
        for line in getattr(error, "lines", [str(error)]):  # RunsFailed: a line for each run that failed
            print(f"error: {printable(line)}", file=sys.stderr)  # one line, whatever names it quotes
        return 2
    except MemoryError as error:  # outside the folds (which say so themselves): loading, reading a store
        from leukdash.engine.machine import out_of_memory

        print(f"error: {out_of_memory(error)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (``| head``): what it read was whole, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
        return 1
    except KeyboardInterrupt as error:
        return _interrupted(error, args)
    except Exception as error:
        # Cleaning up after an interrupt (ending workers, closing files) can fail in turn; the user
        # still stopped the command, and is told so rather than shown the clean-up's traceback.
        interrupt = interrupt_behind(error)
        if interrupt is not None:
            return _interrupted(interrupt, args)
        from leukdash.engine.machine import out_of_memory, out_of_processes

        # ulimit -n, -u or -v (a library that cannot be mapped): said in one line, a bug shown whole
        limited = out_of_processes(error) or out_of_memory(error)
        if limited is None:
            raise
        print(f"error: {limited}", file=sys.stderr)
        return 2
    finally:
        sys.stdout = stdout


@contextmanager
def _store_warnings_said():
    """Inside, a :class:`StoreWarning` (a file kept for later not written: a full disk, a size limit)
    is one line on stderr, each once (a cache tried twice is one line); other warnings are shown as
    Python shows them."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", StoreWarning)
        show, lines = warnings.showwarning, set()

        def said(message, category, filename, lineno, file=None, line=None):
            if not issubclass(category, StoreWarning):
                return show(message, category, filename, lineno, file, line)
            if str(message) not in lines:
                lines.add(str(message))
                print(f"warning: {printable(str(message))}", file=sys.stderr)

        warnings.showwarning = said
        yield


def _interrupted(error: KeyboardInterrupt, args) -> int:
    """Say what an interrupted command kept; the exit status of its signal (128 + its number)."""
    signum = error.signum if isinstance(error, Stopped) else signal.SIGINT
    kept = ("finished folds are kept; run the same command again to resume"
            if getattr(args, "command", None) in FOLD_COMMANDS
            else "what it stores is written whole or not at all; run the same command again")
    print(f"{'stopped by ' + error.args[0] if isinstance(error, Stopped) else 'interrupted'}: {kept}",
          file=sys.stderr)
    return 128 + int(signum)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="leukdash", description="Leukemia subtype identification: datasets, runs, comparisons.")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    datasets = commands.add_parser("datasets", help="list the datasets found")
    datasets.add_argument("--json", action="store_true")
    datasets.set_defaults(handler=cmd.datasets)

    audit = commands.add_parser("audit", help="audit a dataset: counts, sizes, duplicates, shortcuts")
    audit.add_argument("dataset", help="dataset name or folder")
    audit.add_argument("--preprocess", help="also segment every cell in this mode, count the failures and "
                                            "re-run the shortcut checks on the preprocessed images")
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(handler=cmd.audit)

    run = commands.add_parser("run", help="run (or read back) a cross-validated experiment")
    _add_dataset(run, "dataset name or folder (default: synthetic); several with the same classes: a comma list, "
                      "e.g. allidb2_ufpr,cnmc_dev")
    add_run_options(run)
    run.add_argument("--config-file", type=_path("the config file"),
                     help="a JSON run config (as written by the dashboard), or a run's meta.json: finishes that run")
    run.add_argument("--final-model", action="store_true",
                     help="then also train the final model on all images of the run (see refit)")
    add_pool_options(run)
    run.set_defaults(handler=cmd.run)

    sweep = commands.add_parser("sweep", help="run a grid of configs as one job: each run option takes a comma list "
                                "but --no-augment, --classes and --balance-sources")
    _add_dataset(sweep, "dataset name or folder (default: synthetic)")
    add_run_options(sweep, lists=True)
    sweep.add_argument("--name", help="a label for the sweep")
    sweep.add_argument("--resume", metavar="SWEEP_ID", help="launch a stored sweep again (its missing folds)")
    sweep.add_argument("--max-runs", type=int, help="launch a grid of more runs than the default cap "
                       "(200: a bigger grid is more often one axis too many than a plan)")
    add_pool_options(sweep)
    sweep.set_defaults(handler=cmd.sweep)

    sweeps = commands.add_parser("sweeps", help="list the stored sweeps and their progress")
    sweeps.add_argument("--rank-by", choices=("lodo", "cv"), help="list each sweep's finished runs best first: by "
                        "their leave-one-dataset-out (else stored external) balanced accuracy, or cross-validated")
    sweeps.add_argument("--json", action="store_true")
    sweeps.set_defaults(handler=cmd.sweeps)

    runs = commands.add_parser("runs", help="list the runs in the store")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=cmd.runs)

    compare = commands.add_parser("compare", help="compare runs side by side, with McNemar tests")
    compare.add_argument("run_ids", nargs="+")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(handler=cmd.compare)

    ensemble = commands.add_parser("ensemble", help="a stored soft-voting ensemble of finished runs on the same folds")
    ensemble.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    ensemble.add_argument("--weights", help="one weight per run, comma separated (default: equal)")
    ensemble.add_argument("--json", action="store_true")
    ensemble.set_defaults(handler=cmd.ensemble)

    demo = commands.add_parser("demo", help="compute the small demo runs that ship with the app")
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(handler=cmd.demo)

    predict = commands.add_parser("predict", help="predict images with the fold models of a finished run")
    predict.add_argument("run_id")
    predict.add_argument("images", nargs="+", type=_path("an image path"),
                         help="image files, or folders: every image under a folder, sorted")
    predict.add_argument("--adapt", action="store_true",
                         help="take the images for one lab's (at least 20) and answer them with the models adapted "
                              "to them, as evaluate --adapt does")
    answers_as = predict.add_mutually_exclusive_group()
    answers_as.add_argument("--json", action="store_true")
    answers_as.add_argument("--csv", action="store_true",
                            help="one row per image: the answer, each class's probability and the checks' verdicts")
    predict.set_defaults(handler=cmd.predict)

    oof = commands.add_parser("oof", help="a finished run's out-of-fold answers, one row per validated image or "
                                          "augmented copy (CSV)")
    oof.add_argument("run_id")
    oof.add_argument("--json", action="store_true", help="the rows as JSON instead of CSV")
    oof.set_defaults(handler=cmd.oof)

    evaluate = commands.add_parser("evaluate", help="external test: a finished run's fold models on another dataset")
    evaluate.add_argument("run_id")
    evaluate.add_argument("dataset", help="dataset name or folder with the run's classes")
    evaluate.add_argument("--recompute", action="store_true", help="ignore the stored result")
    evaluate.add_argument("--model", choices=("folds", "final", "both"), default="folds",
                          help="the fold ensemble (default), the final model refitted on all images (see refit), or both")
    evaluate.add_argument("--adapt", action="store_true",
                          help="standardise the classic models' inputs, and re-estimate the CNNs' batch-normalisation "
                               "statistics, with this dataset's own (a folder of one lab's images, a class mix like "
                               "the training set's); stored apart")
    evaluate_as = evaluate.add_mutually_exclusive_group()
    evaluate_as.add_argument("--json", action="store_true")
    evaluate_as.add_argument("--csv", action="store_true",
                             help="one row per image: true and predicted class, each class's probability, the flags")
    evaluate.set_defaults(handler=cmd.evaluate)

    refit = commands.add_parser("refit", help="train a finished run's final model on all its images (kept in the run)")
    refit.add_argument("run_id")
    refit.add_argument("--json", action="store_true")
    refit.set_defaults(handler=cmd.refit)

    trust = commands.add_parser("trust-models", help="convert the pickled models of earlier versions to skops files "
                                "(loading a pickle runs code: only for a store you trust)")
    trust.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="the runs to convert (default: every run)")
    trust.set_defaults(handler=cmd.trust_models)

    external = commands.add_parser("external-report",
                                   help="write the report's External validity section (runs are read, not trained)")
    external.add_argument("--out", type=_path("the report folder"),
                          help="report folder (default: docs/report; installed: the store's report/)")
    external.add_argument("--no-compute", action="store_true", help="use stored external tests only")
    external.set_defaults(handler=cmd.external_report)

    reproduce = commands.add_parser("reproduce", help="run the paper's experiments and write the report")
    reproduce.add_argument("--quick", action="store_true", help="fewer epochs, folds and pixels: a smoke test")
    reproduce.add_argument("--binary", help="ALL vs HEALTHY dataset (default: allidb2_ufpr if found, else synthetic)")
    reproduce.add_argument("--five-class", default="synthetic", help="five-class dataset (default: synthetic)")
    reproduce.add_argument("--out", type=_path("the report folder"),
                           help="report folder (default: docs/report, or artifacts/report-quick; "
                                "installed: the store's report/)")
    reproduce.add_argument("--report-only", action="store_true", help="write the report from the runs in the store")
    reproduce.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler for the runs (see sweep)")
    reproduce.set_defaults(handler=cmd.reproduce)

    report = commands.add_parser("report", help="the README's generated blocks, made from committed data (report.json...)")
    report.add_argument("--readme", action="store_true", help="write every block into README.md between its markers")
    report.add_argument("--check", action="store_true",
                        help="exit 1 if a README block differs from its data or the data is from another engine version")
    report.add_argument("--out", type=_path("the report folder"),
                        help="report folder holding report.json (default: docs/report)")
    report.set_defaults(handler=cmd.report)
    return parser
