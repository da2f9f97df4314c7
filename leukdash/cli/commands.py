"""The commands of ``python -m leukdash``, one small function each (``args`` from the parser)."""

from __future__ import annotations

import sys
from pathlib import Path

from leukdash.cli.output import (ProgressLine, SweepLog, final_text, print_answers, print_json, print_report, run_json,
                                 run_text, sweep_settings)
from leukdash.cli.run_options import (check_grid_size, check_nothing_typed, config_from_args, n_jobs_option,
                                      note_settings_without_effect, sweep_from_args, typed_settings)
from leukdash.errors import LeukdashError, RunsFailed
from leukdash.paths import printable


def datasets(args) -> int:
    from leukdash.data.discovery import data_root_notes, list_datasets

    listed = list_datasets()
    if args.json:
        print_json({"datasets": listed})
    else:
        for entry in listed:
            if "unusable" in entry:
                print(f"{printable(entry['name']):<20} unusable: {printable(entry['unusable'])}\n{'':<20} {printable(entry['path'])}")
                continue
            counts = ", ".join(f"{c} {n}" for c, n in entry["classes"].items())
            note = f"  [{'; '.join([entry['label'], *entry['notes']])}]" if entry["synthetic"] else ""
            print(f"{printable(entry['name']):<20} {entry['n_images']:>6} images  {counts}{note}\n"
                  f"{'':<20} {printable(entry['path'])}")
    for note in data_root_notes(printable):
        print(f"note: {note}", file=sys.stderr)
    for entry in listed:
        for warning in entry.get("warnings", []):
            print(f"note: {printable(warning)}", file=sys.stderr)
        for path in entry["hidden"]:  # a name means one dataset: the first folder of that name
            print(f"note: {path} is not used: {printable(entry['name'])!r} names {printable(entry['path'])} "
                  "(the first of equal names wins; give a path to use the other)", file=sys.stderr)
    return 0


def audit(args) -> int:
    from leukdash.data.audit import audit_dataset, format_audit
    from leukdash.data.discovery import open_dataset

    report = audit_dataset(open_dataset(args.dataset), preprocess=args.preprocess)
    print_report(args, report, format_audit)
    return 0


def run(args) -> int:
    from leukdash.evaluation.runs import run

    config, n_jobs = config_from_args(args), n_jobs_option(args.n_jobs)
    note_settings_without_effect([config], typed_settings(args))
    line = None if args.quiet else ProgressLine(sys.stderr)
    try:
        result = run(config, n_jobs=n_jobs, on_event=line.update if line else None, scheduler=args.scheduler)
    finally:
        if line:
            line.close()
    for warning in result["dataset"].get("warnings", []):
        print(f"warning: {printable(warning)}", file=sys.stderr)
    final = None
    if args.final_model:
        from leukdash.engine.final import refit

        final = refit(result["run_id"])
    if args.json:
        print_json({**run_json(result), **({"final_model": final} if final else {})})
    else:
        print(run_text(result) + ("\n" + final_text(final) if final else ""))
    return 0


def sweep(args) -> int:
    from leukdash.evaluation.runs import resume_sweep, run_sweep

    options = dict(n_jobs=n_jobs_option(args.n_jobs), scheduler=args.scheduler,
                   on_event=None if args.quiet else SweepLog(sys.stderr).update)
    failed = None
    try:
        if args.resume is not None:
            if not args.resume.strip():
                raise LeukdashError("--resume is empty (an unset shell variable?): give a sweep id (`sweeps` lists "
                                    "them)")
            check_nothing_typed(args, "--resume launches the stored sweep's grid",
                                "give either --resume or the options")
            outcome = resume_sweep(args.resume, **options)
        else:
            configs, axes = sweep_from_args(args)
            check_grid_size(len(configs), args.max_runs)
            note_settings_without_effect(configs, typed_settings(args))
            outcome = run_sweep(configs, name=args.name, axes=axes, **options)
    except RunsFailed as error:  # the other runs are computed: said as ever, before the failed runs' lines
        failed, outcome = error, error.outcome
    _print_sweep(args, outcome, failed.errors if failed else {})
    if failed:
        raise failed
    return 0


def _print_sweep(args, outcome: dict, failed: dict) -> None:
    """What ``sweep`` prints of its ``outcome`` (:func:`leukdash.engine.sweep.run_sweep`'s) on stdout, its notes on
    stderr; ``failed`` maps each run refused for its settings to its error (the JSON names them, with why)."""
    from leukdash.metrics import std_text

    for warning in outcome["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    settings = outcome["run_ids"]  # one per setting of the grid, those refused too
    distinct = len(set(settings))
    if distinct < len(settings):
        print(f"note: the grid's {len(settings)} settings are {distinct} distinct run(s): some repeat a run "
              "of it (a value given twice, or a setting the model does not use, such as --k for nb)", file=sys.stderr)
    if args.json:
        print_json({"sweep_id": outcome["sweep_id"], "name": outcome["name"], "axes": outcome["axes"],
                     "seconds": round(outcome["seconds"], 3), "warnings": outcome["warnings"],
                     "runs": [run_json(result) for result in outcome["results"]],
                     "failed": {run_id: str(error) for run_id, error in failed.items()}})
        return
    refused = sum(run_id in failed for run_id in settings)  # said below, on stderr
    counted = f"{len(outcome['results'])} of {len(settings)} run(s) ({refused} refused, below)" if refused \
        else f"{len(settings)} run(s)"
    print(f"sweep {outcome['sweep_id']} ({outcome['name']}): {counted} in {outcome['seconds']:.1f} s")
    for result in outcome["results"]:
        acc, config = result["summary"]["val_acc"], result["config"]
        print(f"{result['run_id']:<18} {'cached' if result['cached'] else 'computed':<8} {sweep_settings(config, outcome['axes'])}"
              f"  val_acc {acc['mean']:.4f} (std {std_text(acc, len(result['folds']))})")


def sweeps(args) -> int:
    from leukdash.engine.sweep import list_sweeps
    from leukdash.evaluation.transfer import left_out_text, rank_runs
    from leukdash.reporting.plots.sweeps import run_counts, varied_settings

    found = list_sweeps()
    if args.rank_by:
        for entry in found:
            entry["ranked"] = rank_runs([run["run_id"] for run in entry["runs"]], args.rank_by)
    if args.json:
        print_json({"sweeps": found})
        return 0
    for entry in found:
        if entry["state"] == "damaged":
            print(f"{entry['sweep_id']:<18} damaged  {entry['message']}")
            continue
        complete, total = run_counts(entry)
        print(f"{entry['sweep_id']:<18} {entry['state']:<8} {complete}/{total} runs  "
              f"{entry['done_folds']}/{entry['total_folds']} folds  {varied_settings(entry)} · {entry['name']}")
        earlier = entry["earlier_run_ids"]
        if earlier:
            more = f" … ({len(earlier)} in all; `sweeps --json` lists them)" if len(earlier) > 5 else ""
            print(f"  earlier runs (other images or engine): {' '.join(map(printable, earlier[:5]))}{more}")
        for run in entry["runs"]:
            if run["status"] == "failed":  # the others go on without it: the reason its launch gave
                print(f"  failed: {run['run_id']} {sweep_settings(run['config'], entry['axes'])}: "
                      f"{printable(run['message'])}")
        for rank, row in enumerate(entry.get("ranked", []), 1):
            transfer = row["transfer"]
            # a test on an earlier state of a folder is not ranked against the others' on its later images
            earlier = left_out_text(row, printable)
            shown = (f"{transfer['source']} {transfer['balanced_accuracy']:.4f} ({', '.join(map(str, transfer['datasets']))})"
                     + (f"; {earlier}" if earlier else "") if transfer else earlier or "no lodo run or external test")
            print(f"  {rank:>2}. {row['run_id']:<18} {sweep_settings(row['config'], entry['axes'])}  "
                  f"cv bal_acc {row['cv']:.4f}  transfer: {shown}")
    return 0


def runs(args) -> int:
    from leukdash.engine.store import RunStore
    from leukdash.evaluation.labels import run_labels

    store = RunStore()
    runs, unreadable = store.survey()
    if args.json:
        # "unreadable": the ids, as before; "unreadable_why": each with why (damaged, or not readable here)
        print_json({"runs": runs, "unreadable": sorted(unreadable), "unreadable_why": unreadable})
        return 0
    width = max((len(entry["run_id"]) for entry in runs), default=0)  # an ensemble's id is longer than a model's
    # how far a running run has got; "10/10 folds" is longer than "5/5 folds": the column is its longest entry
    folds = [f"{entry['n_folds_done']}/{len(entry['meta']['fold_ids'])} folds" for entry in runs]
    folds_width = max(map(len, folds), default=0)
    for entry, done, label in zip(runs, folds, run_labels(runs)):
        # A partial run's stored summary is that of folds no longer all there: not shown as its figure.
        acc = (entry.get("summary") or {}).get("val_acc", {}).get("mean") if entry["status"] == "complete" else None
        shown = f"{acc:.4f}" if acc is not None else "-"
        print(f"{entry['run_id']:<{width}} {entry['status']:<9} {done:<{folds_width}} val_acc {shown:<6}  {label}")
    for name, why in unreadable.items():
        print(f"note: {name} is not listed: {why}", file=sys.stderr)
    return 0


def compare(args) -> int:
    from leukdash.evaluation.compare import compare_runs, format_comparison

    comparison = compare_runs(args.run_ids)
    print_report(args, comparison, format_comparison)
    return 0


def ensemble(args) -> int:
    from leukdash.engine.ensemble import create_ensemble

    if args.weights is not None and not args.weights.strip():
        raise LeukdashError("--weights is empty (an unset shell variable?): give one weight per run, or leave the "
                            "option out for equal weights")
    try:
        weights = [float(w) for w in args.weights.split(",")] if args.weights else None
    except ValueError:
        raise LeukdashError(f"--weights must be numbers separated by commas, got {args.weights!r}") from None
    said = create_ensemble(args.run_ids, weights, on_wait=lambda message: print(message, file=sys.stderr, flush=True))
    result = {**said, "computed_folds": [], "seconds": 0.0}
    if args.json:
        print_json(run_json(result))
    else:
        print(run_text(result))
    return 0


def demo(args) -> int:
    from leukdash.reporting.demo import run_demo

    results = run_demo(on_event=None if args.json else ProgressLine(sys.stderr).update)
    if args.json:
        print_json({"runs": [run_json(result) for result in results]})
    else:
        for result in results:
            print(run_text(result))
    return 0


def predict(args) -> int:
    from leukdash.engine.store import RunStore
    from leukdash.data.dataset import SYNTHETIC_RUN_NOTE
    from leukdash.data.sources import READ_TYPES, unread_files
    from leukdash.evaluation.answer import one_class_warning, unavailable_checks
    from leukdash.evaluation.predict import MIN_ADAPT_IMAGES, adapt_note, predict_files

    meta = RunStore().finished_meta(args.run_id)  # a run that is not there is said first, not as files none could read
    note = SYNTHETIC_RUN_NOTE if meta["dataset"].get("synthetic") else None  # as Predict says it
    predictions = predict_files(args.run_id, args.images, adapt=args.adapt)
    refused = {entry["file"] for entry in predictions if "error" in entry}  # a folder without images says it there
    unread = [f"{printable(str(folder))}: {left} not read ({READ_TYPES})" for folder in map(Path, args.images)
              if folder.is_dir() and printable(str(folder)) not in refused and (left := unread_files(folder))]
    one_class = one_class_warning(predictions, MIN_ADAPT_IMAGES)
    one_lab = not args.adapt and any((entry.get("unsupported") or {}).get("one_lab") for entry in predictions)
    warnings = ([adapt_note(meta, "these images")] if args.adapt else []) + (
        [one_class + ("" if args.adapt else ", or answer them with --adapt")] if one_class else []) + (
        ["the support check compared these images as one lab's (at least 20, most of them unlike the run's training "
         "data, as evaluate does): whether an answer is unsupported depends on the other images"] if one_lab else []
    ) + unread
    if args.json:
        from leukdash.evaluation.answer_table import answer_row, exported_prediction

        headlined = ("predicted", "probability", "answer_from")  # beside the ensemble's: --csv's and Predict's
        answered = [entry if "error" in entry else
                    {**exported_prediction(entry), "answer": {key: answer_row(entry)[key] for key in headlined}}
                    for entry in predictions]
        print_json({"run_id": args.run_id, **({"adapted": True} if args.adapt else {}),
                    **({"note": note} if note else {}), **({"warnings": warnings} if warnings else {}),
                    "predictions": answered})
    else:
        if note:
            print(f"note: {note}", file=sys.stderr)
        for line in warnings + unavailable_checks(predictions):  # once, not under every answer
            print(f"warning: {line}", file=sys.stderr)
        if args.csv:  # the same answers and verdicts, one row each (warnings stay on stderr)
            from leukdash.evaluation.answer_table import answers_csv

            sys.stdout.write(answers_csv(predictions))
        else:
            print_answers(predictions)
    if all("error" in entry for entry in predictions):
        print(f"error: none of the {len(predictions)} image(s) could be read", file=sys.stderr)
        return 2
    return 0


def oof(args) -> int:
    from leukdash.evaluation.answer_table import csv_text, names_unavailable, out_of_fold_rows

    rows = out_of_fold_rows(args.run_id)
    unnamed = names_unavailable(rows, args.run_id)
    if args.json:
        print_json({"run_id": args.run_id, **({"warnings": [unnamed]} if unnamed else {}), "images": rows})
    else:
        if unnamed:
            print(f"warning: {unnamed}", file=sys.stderr)
        sys.stdout.write(csv_text(rows))
    return 0


def evaluate(args) -> int:
    from leukdash.evaluation.answer_table import external_csv
    from leukdash.evaluation.evaluate import evaluate, require_models
    from leukdash.evaluation.evaluation_text import format_evaluation

    models = ("folds", "final") if args.model == "both" else (args.model,)
    for model in models:  # before either is computed: `both` answers both or neither
        require_models(args.run_id, model)
    results = [evaluate(args.run_id, args.dataset, recompute=args.recompute, model=model, per_image=args.csv,
                        adapt=args.adapt) for model in models]
    for warning in results[0]["dataset"].get("warnings", []):
        print(f"warning: {printable(warning)}", file=sys.stderr)
    if args.csv:
        sys.stdout.write(external_csv(results))
    elif args.json and len(results) > 1:
        print_json({"evaluations": results})
    else:
        for result in results:
            print_report(args, result, format_evaluation)
    return 0


def refit(args) -> int:
    from leukdash.engine.final import refit

    record = refit(args.run_id, on_wait=lambda message: print(message, file=sys.stderr, flush=True))
    if args.json:
        print_json(record)
    else:
        print(final_text(record))
    return 0


def trust_models(args) -> int:
    from leukdash.engine.trust_models import trust_models

    converted, left = trust_models(args.run_ids)
    print("\n".join(converted + left) if converted or left else "no pickled model to convert")
    return 1 if left else 0  # what was left waits on the user (a run's end, a fold computed again)


def external_report(args) -> int:
    from leukdash.reporting.external_report import update_report
    from leukdash.reporting.reproduce import full_out

    print(f"report: {update_report(args.out or full_out(), compute=not args.no_compute)}")
    return 0


def report(args) -> int:
    from leukdash import ENGINE_VERSION
    from leukdash.atomic import write_bytes_atomic
    from leukdash.paths import REPO_ROOT, source_checkout
    from leukdash.reporting.report import DATA_NAME
    from leukdash.reporting.report.readme import load_sources, readme_problems, render_blocks, write_blocks

    if not source_checkout():
        raise LeukdashError("report renders the README's generated blocks, which only a clone of the repository has: "
                            "run it there (reproduce writes the report itself anywhere)")
    if args.out is not None and not (args.out / DATA_NAME).is_file():  # said once, not once per block
        print(f"error: no report data at {args.out / DATA_NAME}: `python -m leukdash reproduce --out {args.out}` "
              "writes it", file=sys.stderr)
        return 1 if args.check else 2  # --check: the check fails, as for any block without its data
    sources = load_sources({"report": args.out and args.out / DATA_NAME})
    readme_path = REPO_ROOT / "README.md"
    readme = readme_path.read_text(encoding="utf-8")
    if args.readme:
        written, problems = write_blocks(readme, sources)
        # Checked before writing: a README this command could not read back again is never written.
        problems = problems or readme_problems(written, sources)
        if problems:  # a README drawn partly from this data and partly from other data: worse than the old one
            print(f"{readme_path}: left unchanged, since not every block can be made from this data", file=sys.stderr)
        else:
            if written != readme:  # whole or not at all: a failed write leaves the README as it was
                write_bytes_atomic(readme_path, written.encode("utf-8"))
            print(f"{readme_path}: every block is written from its data")
    elif args.check:
        problems = readme_problems(readme, sources)
    else:
        texts, problems = render_blocks(sources)
        print("\n\n".join(texts.values()))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if args.check and not problems:
        print("README.md's generated blocks are their data's, from engine version " + ENGINE_VERSION)
    return 1 if problems else 0


def reproduce(args) -> int:
    from leukdash.reporting.reproduce import reproduce

    reproduce(quick=args.quick, binary=args.binary, five_class=args.five_class, out=args.out,
              compute=not args.report_only, scheduler=args.scheduler)
    return 0
