"""What the README's generated blocks say (:mod:`.readme` puts them between their markers): one
function per block, from the data of its source alone."""

from __future__ import annotations

import textwrap
from statistics import mean

from leukdash.engine.machine import machine_text
from leukdash.engine.timing import WORKER_COUNTS, predict_walls
from leukdash.metrics import no_ci_reason
from leukdash.reporting.report.format import TASK_NAMES


def results_block(data: dict) -> str:
    """The README's result table, and how, when and where the reproduction computed it: its wall
    time from the store beside the fold-time sum and the packing bound (``report.json``)."""
    lines = ["| model | per-fold validation accuracy | mean | 95% CI (t) | paper |", "|---|---|---|---|---|"]
    for row in data["headline"]:
        paper = "-" if row.get("paper") is None else \
            f"{row['paper']:.4f} ({'its own protocol' if row['is_cnn'] else 'its protocol, raw pixels'})"
        folds, (low, high) = row["val_acc"], row["ci95"]
        # n/a where the run's line says so (below 3 folds, or every fold the same)
        ci = "n/a" if no_ci_reason({"min": min(folds), "max": max(folds)}, len(folds)) else f"{low:.3f}-{high:.3f}"
        lines.append(f"| {row['label']} | {' '.join(f'{v:.3f}' for v in folds)} | **{row['mean']:.3f}** "
                     f"| {ci} | {paper} |")
    span = data["reproduction"]
    if not span:
        raise ValueError("no reproduction wall time: the store held no progress log of the matrix's runs")
    wall, total, bound = span["wall_seconds"], data["fold_seconds"], data["packing_bound_seconds"]
    notes = (f" ({span['runs_resumed']} run(s) resumed: the span includes the pause)"
             if span["runs_resumed"] else "")
    if span["runs_timed"] < data["runs_done"]:
        notes += f" ({data['runs_done'] - span['runs_timed']} run(s) without a progress log, not in the span)"
    machines = "" if data["machines"] <= 1 else f" (fold times from {data['machines']} machines)"
    lines += ["", f"Engine version {data['engine']}, `{data['command']}` ({data['mode']} settings, {data['runs_done']} of "
              f"{data['runs_total']} runs) on {machine_text(data['machine'])}{machines}: the runs were computed from "
              f"{span['first']} to {span['last']}{notes}, {wall / 60:.1f} min of wall time (first to last event of "
              f"their progress logs) for {total / 60:.1f} min of fold time, whose packing bound on these cores "
              f"(sum / cores) is {bound / 60:.1f} min: {wall / bound:.2f}x the bound."]
    return "\n".join(lines)


def audit_block(data: dict) -> str:
    """How far the acquisition alone predicts the binary task's class (the audit's background-only
    shortcut accuracy, ``report.json``): the caveat that goes with the result table."""
    shortcut = data["shortcuts"].get("binary") or {}
    if shortcut.get("background_acc") is None:
        raise ValueError("no background-only shortcut accuracy for the ALL vs HEALTHY dataset in the report data")
    return textwrap.fill(
        f"Read these with the audit in mind: on {shortcut['dataset']} the background colour alone predicts the "
        f"class with {shortcut['background_acc']:.2f} accuracy (chance {shortcut['chance']:.2f}; colour histograms "
        f"{shortcut['histogram_acc']:.2f}; `python -m leukdash audit {shortcut['dataset']}`), so part of any "
        "model's score may come from how the two classes were photographed rather than from the cells.", 100)


def scaling_block(data: dict) -> str:
    """What a cluster buys: the predicted wall time of the matrix's fold tasks on 1 to 32 workers,
    from the per-fold seconds in ``report.json`` (:func:`leukdash.engine.timing.predict_walls`)."""
    tasks = [(seconds, f"{TASK_NAMES[run['task']]}, {run['label']}")
             for run in data["runs"] for seconds in run["fold_seconds"]]
    seconds = [s for s, _ in tasks]
    longest, longest_label = max(tasks)
    rows = [predict_walls(seconds, workers) for workers in WORKER_COUNTS]
    return "\n".join([
        f"What a cluster buys, from the fold times of the `reproduce` matrix ({data['mode']} settings, "
        f"{len(seconds)} fold tasks, {sum(seconds) / 60:.1f} minutes of fold time on {machine_text(data['machine'])}, engine version "
        f"{data['engine']}; longest task {longest / 60:.1f} minutes: {longest_label}), predicted from "
        "`docs/report/report.json` by `python -m leukdash report` (longest task first onto the least loaded "
        "worker; one worker = one fold at a time):",
        "",
        "| workers | " + " | ".join(str(row["workers"]) for row in rows) + " |",
        "|---|" + "---|" * len(rows),
        "| predicted wall (min) | " + " | ".join(f"{row['wall'] / 60:.1f}" for row in rows) + " |",
        "| speed-up | " + " | ".join(f"{rows[0]['wall'] / row['wall']:.1f}x" for row in rows) + " |",
        "",
        f"The critical path (the longest fold) limits the wall time only beyond about {sum(seconds) / longest:.0f} "
        "workers."])


SPEED_TARGET = 1.3  # issue 19: a single CNN run at least this much faster than the paper-literal pipeline


def speed_block(data: dict) -> str:
    """The engine's speed against the paper-literal pipeline and a plain ``model.fit``, on the
    machine named, from ``docs/benchmarks/engine.json`` (``benchmarks/bench_engine.py --out``)."""
    s, seeds = data["settings"], data["seeds"]
    if not data["full"]:
        raise ValueError(f"measured with other settings than the README's ({s['dataset']}, {s['epochs']} epochs, "
                         f"{s['folds']} folds)")
    runs, ratio = [seed["leukdash_seconds"] for seed in seeds], data["speedup"]
    spread = f"{min(runs):.0f}-{max(runs):.0f} s over {len(seeds)} seeds" if len(seeds) > 1 else f"{runs[0]:.0f} s"
    versus = f"{ratio:.2f}x faster than" if ratio >= 1 else f"{1 / ratio:.2f}x slower than"
    significant = sum(seed["mcnemar"]["p_value"] < 0.05 for seed in seeds)
    # Benchmarks before 2026-12-05 ran the baseline pinned to one TensorFlow thread (their file has
    # no "baseline_tf_threads"): the target, against TensorFlow's default threads, was not measured.
    default_threads = data.get("baseline_tf_threads") == "default"
    threads = "TensorFlow's default threads" if default_threads else "one TensorFlow thread"
    verdict = ("met here" if ratio >= SPEED_TARGET else "not met here") if default_threads else \
        "not checked by this measurement (it counts against TensorFlow's default threads)"
    text = (
        f"Speed on {machine_text(data['machine'])} (`{data['command']}`, engine version {data['engine']}, "
        f"{data['generated']}): a strict {s['folds']}-fold {s['architecture']}-CNN run on {s['dataset']} "
        f"({s['image_size']} px, x{s['augment_factor']}, {s['epochs']} epochs) takes {spread}, {versus} a "
        f"paper-literal pipeline (offline ImageDataGenerator x{s['augment_factor']}, float32 `model.fit` with "
        f"{threads}, fold after fold): {data['literal_seconds']:.0f} s against "
        f"{data['leukdash_seconds']:.0f} s in all; the target, at least {SPEED_TARGET}x faster on every CPU kind, is "
        f"{verdict}. The run of seed {seeds[0]['seed']} takes "
        f"{data['run_over_plain_fit']:.2f}x a plain `model.fit` on pre-augmented arrays of the same size. Mean "
        f"validation accuracy: {mean(seed['leukdash_val_acc'] for seed in seeds):.3f} against the baseline's "
        f"{mean(seed['literal_val_acc'] for seed in seeds):.3f}; paired image by image (McNemar), the two differ "
        f"significantly (p < 0.05) on {significant} of {len(seeds)} seed(s). A finished run is answered in "
        f"{data['cached_cli_seconds']:.2f} s from the CLI, process start included; one image is predicted by the "
        f"{s['folds']} fold models in {data['predict_ms']:.1f} ms.")
    return textwrap.fill(text, width=100, break_long_words=False, break_on_hyphens=False)


def external_block(data: dict) -> str:
    """The models on the other lab's images (``report.json``'s ``external`` and ``across``): how raw
    input fares and how often the out-of-distribution check fires, today's best transferable models
    against their ensemble, final models and robustness training, leave one dataset out, and
    training on both sets."""
    from leukdash.reporting.external_plan import ROBUST_NAME
    from leukdash.reporting.external_report import flag_text, interval, within_text

    external, across = data["external"], data["across"]
    raw = [row for row in external["directions"] if row["preprocess"] == "raw" and row["status"] == "done"]
    if not raw:
        raise ValueError("no external test of a raw run in the report data "
                         f"({', '.join(external['missing']) or 'none computed'})")
    first, second = external["pair"]
    ood, own = [r["external"]["ood_share"] for r in raw], [r["external"]["ood_own_share"] for r in raw]
    spread = sum(min(r["external"]["predicted_share"].values()) >= 0.30 for r in raw)
    lines = [textwrap.fill(
        f"Raw input, both directions ({first} -> {second} and back): {sum(r['external']['collapsed'] for r in raw)} "
        f"of {len(raw)} models collapse on the other lab's images (one class for at least 95% of them) and {spread} "
        f"give each class to at least 30% of them; each run's out-of-distribution check flags {min(ood):.0%}-"
        f"{max(ood):.0%} of those images and {min(own):.1%}-{max(own):.1%} of its own out-of-fold images. With "
        "`--preprocess cell-keep-gray` (**development figures**), today's best against an ensemble, final models "
        "and robustness training:", 100, break_long_words=False, break_on_hyphens=False), "",
        "| trained on | model | within (CV) | other lab: balanced [95% CI] | collapsed "
        "| OOD flagged: errors flagged / not |", "|---|---|---|---|---|---|"]
    shown = ("3-NN", "SVM", "ensemble 3-NN + SVM", "ensemble 3-NN + SVM, final model",
             f"ensemble 3-NN + SVM, {ROBUST_NAME}")
    for row in external["candidates"]:
        if row["label"] in shown and row["status"] == "done":
            figures = row["external"]
            lines.append(f"| {row['train']} | {row['label']} | {within_text(row)} | "
                         f"{interval(figures['balanced_accuracy'], figures['ci95'])} | "
                         f"{'**yes**' if figures['collapsed'] else 'no'} | {flag_text(figures.get('ood'))} |")
    sentences = []
    lodo = next((row for row in external["lodo"] if row["label"] == "ensemble 3-NN + SVM" and row["status"] == "done"),
                None)
    if lodo:
        sentences.append("Leaving one dataset out, the same ensemble scores " + " and ".join(
            f"{interval(f['balanced_accuracy'], f['ci95'])} on {name}" for name, f in lodo["held_out"].items()) + ".")
    pooled = [row for row in across["pooled"] if row["status"] == "done"]
    if pooled:
        sentences.append("Trained on both sets at once (strict folds; accuracy on each set's out-of-fold images, "
                         "trained on that set alone in brackets): " + "; ".join(
                             f"{row['label']}: " + ", ".join(
                                 f"{name} {f['accuracy']:.3f}" + (f" ({f['alone']['accuracy']:.3f})" if f["alone"] else "")
                                 for name, f in row["sources"].items()) for row in pooled) + ".")
    sentences.append(f"Engine version {data['engine']}, `{data['command']}`, report of {data['generated']}.")
    return "\n".join(lines + ["", textwrap.fill(" ".join(sentences), 100, break_long_words=False,
                                                break_on_hyphens=False)])
