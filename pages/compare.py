"""Compare: finished runs side by side, per fold, per epoch, per class, with significance tests;
and a sweep view: settings against accuracy, with click-through to a run."""

import json
from collections import Counter

import streamlit as st

from leukdash.errors import LeukdashError
from leukdash.evaluation.answer_table import csv_text, external_csv, surest_mistakes
from leukdash.evaluation.compare import calibration_note, collapse_of, distinct_runs, ties_note
from leukdash.reporting.plots import (ERROR_BARS, EXTERNAL_METRICS, METRICS, available_metrics, confusion_heatmap,
                                      curve_runs, external_bars, external_frame, fold_frame, learning_curves,
                                      metric_bars, roc_curves, run_labels, runs_frame, seed_spread_frame,
                                      source_frame, summary_frame, sweep_axes, sweep_frame, sweep_heatmap,
                                      sweep_parallel)
from pages._session import VIEWER_NOTE, deployment, few_named, hidden, kept, literal, root, routed, said
from pages._shared import (comparison, dataset_options, external_results, finished_runs, keeping, no_runs_yet,
                           not_stored_warnings, out_of_fold_rows_of, results, run_thumbnails, unreadable_runs,
                           visible_dataset, visible_runs, why_unfinished)
from pages._tables import data_table, fitted, percent_columns, rows_of, table_key

routed(__file__)

FRACTIONS = ("val_acc", "balanced_acc", "macro_f1", "train_acc")
HEADERS = {"val_acc": "Val. accuracy", "balanced_acc": "Balanced acc.", "macro_f1": "Macro F1", "val_loss": "Val. loss",
           "train_acc": "Train accuracy", "train_loss": "Train loss", "seconds": "Time (s)"}
# With no row selected every finished run is shown, and a store of sweeps holds hundreds: past
# these, a confusion matrix per run and a McNemar test per pair (500 runs: 124,750 pairs, minutes)
# would stall the page and say nothing a reader could take in.
MAX_CONFUSIONS = 12
MAX_ROC_CURVES = 12  # beyond a dozen, curves on one chart cannot be told apart
MAX_PAIRED = 20
MAX_BARS = 40  # one bar per run: hundreds of runs made a chart many screens tall that a browser drew for seconds


def pairs(runs: int) -> int:
    return runs * (runs - 1) // 2


def compare_runs_of(run_ids: list[str]) -> None:
    """Show these runs in the Runs view (a button callback)."""
    st.session_state["_kept_compare_runs"] = run_ids
    st.session_state["compare_view"] = "Runs"


def sweep_view() -> None:
    """Settings against accuracy for the finished runs of one sweep; a selected run's detail."""
    from leukdash.engine.sweep import list_sweeps
    from leukdash.reporting.plots.sweeps import finished_axes, sweep_title

    visible = {entry["run_id"] for entry in finished_runs()}  # not runs on another session's upload
    sweeps = [s for s in list_sweeps() if any(r["status"] == "complete" and r["run_id"] in visible for r in s["runs"])
              and all(visible_dataset(r["config"].get("dataset")) for r in s["runs"])]
    if not sweeps:
        st.info("No sweep with finished runs yet: on the Experiments page, give a setting several values.",
                icon=":material/hourglass_empty:")
        return
    titles = {s["sweep_id"]: sweep_title(s) for s in sweeps}
    linked = st.query_params.get("sweep")
    opening = linked if linked in titles else next((s["sweep_id"] for s in sweeps if finished_axes(s)),
                                                   sweeps[0]["sweep_id"])
    left, right = st.columns([3, 1])
    sweep_id = kept(left.selectbox, "compare_sweep", opening, "Sweep", options=list(titles), format_func=titles.get)
    st.query_params["sweep"] = sweep_id  # the id, so a copied address opens this sweep
    run_ids = [r["run_id"] for r in next(s for s in sweeps if s["sweep_id"] == sweep_id)["runs"]
               if r["status"] == "complete" and r["run_id"] in visible]
    chosen = results(run_ids)
    if not chosen:  # its finished runs lost a fold or a model since they were listed (results says which)
        st.info("No finished run of this sweep can be read now.", icon=":material/hourglass_empty:")
        return
    metric = kept(right.selectbox, "sweep_metric", "val_acc", "Metric", options=available_metrics(chosen),
                  format_func=METRICS.get)
    axes = sweep_axes([r["config"] for r in chosen])
    if not axes:
        st.info("The finished runs of this sweep differ in no setting yet.")
        return
    frame = sweep_frame(chosen, axes, metric)
    st.plotly_chart(sweep_parallel(frame, axes, metric), width="stretch", key="sweep_parallel")
    st.caption(f"One line per finished run, through its settings to its mean {METRICS[metric].lower()} over "
               "folds (also its colour). Drag along an axis to pick out the runs with those values.")
    if len(axes) >= 2:
        left, right = st.columns(2)
        x = kept(left.selectbox, "sweep_x", axes[0], "Across", options=axes)
        y = kept(right.selectbox, "sweep_y", axes[1], "Down", options=[a for a in axes if a != x])
        st.plotly_chart(sweep_heatmap(frame, x, y, metric), width="stretch", key="sweep_heatmap")
        st.caption(f"Each cell: the mean {METRICS[metric].lower()} over every fold of the runs with those two "
                   "values (other settings pooled), ± the SD across those folds, and how many runs it pools.")
    if "seed" in axes:
        spread = seed_spread_frame(frame, axes)
        numbers = ["Mean", "SD over seeds", "SD over folds (mean)"]
        spread, formats = percent_columns(spread, numbers) if metric in FRACTIONS else (spread, {})
        st.markdown("**Spread over seeds beside the spread over folds**")
        data_table(spread, column_config=fitted(spread, formats))
        st.caption("Runs that differ only in their seed: the SD of their means (new folds, new initialisation) "
                   "beside the mean SD across the folds of one run; a dash where there is no spread to measure "
                   "(one seed, or runs of one fold).")
    st.markdown("**Runs** (select one for its detail)")
    table, formats = percent_columns(frame.drop(columns=["Folds"]), ["Mean", "SD"]) if metric in FRACTIONS \
        else (frame.drop(columns=["Folds"]), {})
    picked = data_table(table, on_select="rerun", selection_mode="single-row",
                        key=table_key("sweep_table", list(frame["Run id"])),
                        column_config=fitted(table, formats)).selection.rows
    st.button("Compare these runs in detail", icon=":material/arrow_forward:", on_click=compare_runs_of,
              args=(list(frame["Run id"]),))
    if picked:
        result, label = chosen[picked[0]], frame["Run"].iloc[picked[0]]
        with st.container(border=True):
            st.markdown(f"**{literal(label)}** · `{result['run_id']}`")  # a stored id: letters, digits, '-'
            left, right = st.columns(2)
            left.plotly_chart(metric_bars([result], metric, "std"), width="stretch", key="sweep_run_bars")
            right.plotly_chart(confusion_heatmap(result, label), width="stretch", key="sweep_run_confusion",
                               config={"displayModeBar": False})
            with st.expander("Config"):
                st.json(result["config"])


st.title("Compare")
entries = finished_runs()
if not entries:
    no_runs_yet("nothing to compare")
    st.stop()
if kept(st.radio, "compare_view", "Runs", "View", options=["Runs", "Sweeps"], horizontal=True, bind=True,
        label_visibility="collapsed") == "Sweeps":
    sweep_view()
    st.stop()

st.query_params.pop("sweep", None)
st.caption("Select rows to compare (the boxes at the left); with none selected, every finished run is shown.")
table, percent = percent_columns(runs_frame(entries).drop(columns=["Status", "Created (UTC)"]), ["Val. accuracy", "SD"])
linked = [r for r in st.query_params.get("runs", "").split(",") if r]
# An address naming other runs than this page last wrote in it wins: a shared link, or the browser's Back or Forward
# to an earlier pick (each pick is an entry of its history). The table then starts afresh from it (a new key): its
# own selection would undo the link. An address without runs (another page's link here) keeps the kept runs.
if linked and linked != st.session_state.get("_compare_runs_written"):
    st.session_state["_kept_compare_runs"] = linked
    st.session_state["_compare_links"] = st.session_state.get("_compare_links", 0) + 1
shown_ids = list(table["Run id"])
kept_ids = distinct_runs(st.session_state.get("_kept_compare_runs", []))  # a link or a sweep may repeat one
selection = data_table(table, on_select="rerun", selection_mode="multi-row",
                       key=table_key("compare_table", shown_ids) + f"_{st.session_state.get('_compare_links', 0)}",
                       selection_default=rows_of(kept_ids, shown_ids), column_config=fitted(table, percent))
selected = [shown_ids[i] for i in selection.selection.rows]
if set(selected) != set(kept_ids) & set(shown_ids):  # the user changed the selection in the table
    st.session_state["_kept_compare_runs"] = kept_ids = selected
chosen_ids = [r for r in kept_ids if r in set(shown_ids)] or shown_ids
if len(chosen_ids) < len(table):
    st.query_params["runs"] = ",".join(chosen_ids)  # ids, so a copied address compares the same runs
else:
    st.query_params.pop("runs", None)
st.session_state["_compare_runs_written"] = chosen_ids if len(chosen_ids) < len(table) else []
unfinished = {entry["run_id"] for entry in visible_runs()} - set(shown_ids)  # stored: said why
missing = len([r for r in kept_ids if r not in set(shown_ids) | unfinished])
if missing:
    st.caption(f"{missing} run{'s' * (missing != 1)} of the link {'are' if missing != 1 else 'is'} not among "
               "the finished runs here.")
for run_id in (r for r in kept_ids if r in unfinished):
    st.caption(f"Not compared: {why_unfinished(run_id)}")
unlisted: dict[str, list[str]] = {}  # why -> the run folders it keeps out of the table
for name, why in unreadable_runs(root()).items():
    unlisted.setdefault(why, []).append(name)
for why, names in unlisted.items():
    st.caption(f"Not listed: {len(names)} run folder(s) of the store ({literal(', '.join(names[:3]))}"
               f"{', ...' if len(names) > 3 else ''}): {why}.")
chosen = results(chosen_ids)
labels = run_labels(chosen)
if len(chosen) < len(table):
    st.caption(f"Comparing {len(chosen)} of {len(table)} finished runs.")

metrics = available_metrics(chosen)
left, middle, right = st.columns([2, 2, 1], vertical_alignment="bottom")
metric = kept(left.selectbox, "compare_metric", "val_acc", "Metric", options=metrics, format_func=METRICS.get)
error = kept(middle.radio, "compare_error", "std", "Error bars", options=list(ERROR_BARS), format_func=ERROR_BARS.get,
             horizontal=True)
show_paper = kept(right.toggle, "compare_paper", True, "Paper's figures", help="Mark the paper's reported accuracy")

st.plotly_chart(metric_bars(chosen[:MAX_BARS], metric, error, show_paper, labels[:MAX_BARS]), width="stretch",
                key="compare_bars")
st.caption(f"Bars: mean {METRICS[metric].lower()} over the validation folds; whiskers: {ERROR_BARS[error]}; "
           "dots: single folds (hover for the fold number)"
           + ("; open diamonds: the paper's reported 5-fold mean for the same model, task and training (a CNN's "
              "optimizer, epochs, batches, x8 augmentation, default learning rate and raw images)."
              if show_paper else ".")
           + (f" The first {MAX_BARS} of {len(chosen)} runs (newest first): select runs in the table to see others."
              if len(chosen) > MAX_BARS else ""))


def runs_noted(notes: list[tuple[str, str]], say, title: str, many: str) -> None:
    """Notes of runs (``(label, note)``; notes name class folders, such as ``B_ALL``, kept literal): one run's said
    by ``say``; several (a sweep's hundreds), one ``say`` naming at most 10 of them (``many``: what they share), each
    run's note in the expander ``title`` below it."""
    if len(notes) == 1:
        say(f"**{literal(notes[0][0])}**: {literal(notes[0][1])}.")
    elif notes:
        say(f"{len(notes)} runs {many}: {few_named([label for label, _ in notes])}.")
        with st.expander(title):
            st.markdown("\n".join(f"- **{literal(label)}**: {literal(note)}." for label, note in notes))


# collapse (one class for nearly every image: the figures are its share), then ties: the order of run and compare
runs_noted([(label, note) for result, label in zip(chosen, labels) if (note := collapse_of(result))],
           lambda text: st.caption(f":material/warning: {text}"), "Collapse of each run",
           "give one class (or ties) to nearly every image they validate on, no better than chance: their accuracy "
           "reflects the class shares")
runs_noted([(label, note) for result, label in zip(chosen, labels) if (note := ties_note(result))],
           lambda text: st.warning(text, icon=":material/warning:"), "Ties of each run",
           "count out-of-fold answers that tie between the top classes as one of them, so their figures depend on "
           "the class order")
runs_noted([(label, note) for result, label in zip(chosen, labels) if (note := calibration_note(result))],
           lambda text: st.warning(text, icon=":material/warning:"), "Reversed calibration of each run",
           "have an SVM whose probability calibration reverses its decisions in some fold: it learnt nothing that "
           "holds on images it did not train on")

# Short names: the strip fits a phone's width.
def confident_mistakes_view(chosen: list[dict], labels: list[str]) -> None:
    """One run's surest wrong out-of-fold answers, with their images."""
    picked = kept(st.selectbox, "compare_mistakes_run", labels[0], "Run", options=labels,
                  help="Its out-of-fold answers that are wrong, the surest first: a label error, an artefact or a "
                       "class boundary shows here first.")
    result = dict(zip(labels, chosen))[picked]
    try:
        rows = out_of_fold_rows_of(root(), result["run_id"])
    except LeukdashError as error:  # removed or damaged since the page listed it (another session, a shell)
        st.warning(said(str(error)), icon=":material/warning:")
        return
    st.download_button("Every image's out-of-fold answer (CSV)", csv_text(hidden(rows)), mime="text/csv",
                       file_name=f"{result['run_id']}_oof.csv", icon=":material/download:",
                       help="One row per validated image: its file, its copy number (0 the image itself, 1.. "
                            "its augmented copies, which the paper protocol validates too), true class, the fold "
                            "that validated it, that fold model's answer and each class's probability (as "
                            "`python -m leukdash oof RUN_ID` prints it).")
    mistakes = surest_mistakes(rows)
    if not mistakes:
        st.caption("No out-of-fold answer of this run is wrong.")
        return
    pictures = run_thumbnails(root(), result["run_id"], result["dataset"].get("path", ""),
                              [row["file"] for row in mistakes])
    shown = [(picture, row) for picture, row in zip(pictures, mistakes) if picture is not None]
    if shown:
        st.image([picture for picture, _ in shown], width=110,
                 caption=[f"{literal(row['true'])} → {literal(row['predicted'])} "  # a caption is Markdown
                          f"({row['p_' + row['predicted']]:.0%})" + (f", copy {row['copy']}" if row["copy"] else "")
                          for _, row in shown])
    st.caption(f"The {len(mistakes)} surest wrong answers of the fold models, each image's from the model that "
               "validated it: true class → answer (its probability). `python -m leukdash oof RUN_ID` lists every "
               "answer."
               + (" \"copy N\": the answer was on an augmented copy of the image shown (the paper protocol "
                  "validates those too; the copies are not kept)." if any(row["copy"] for row in mistakes) else "")
               + (f" {len(mistakes) - len(shown)} could not be shown as the run read them: its images are "
                  "gone from their folder or changed since, and no copy is kept beside the run."
                  if len(shown) < len(mistakes) else ""))


def paired_tests_view(chosen_ids: list[str], labels: list[str]) -> None:
    """McNemar on every pair of the chosen runs' out-of-fold answers, read from the store."""
    try:
        with st.spinner("Pairing out-of-fold predictions…"):
            tests = comparison(root(), tuple(chosen_ids))["mcnemar"]
    except LeukdashError as error:  # a run removed or damaged since the page listed it
        st.warning(said(str(error)), icon=":material/warning:")
        return
    label_of = dict(zip(chosen_ids, labels))
    paired = [{"Run A": label_of[t["run_a"]], "Run B": label_of[t["run_b"]], "Only A right": t["b"], "Only B right": t["c"],
               "Images": t["n"], "p-value": t["p_value"], "p (Holm)": t["p_holm"], "Note": t["note"]}
              for t in tests if t["p_value"] is not None]
    if paired:
        data_table(paired, column_config=fitted(
            paired, {"p-value": st.column_config.NumberColumn(format="%.4g"),
                     "p (Holm)": st.column_config.NumberColumn(format="%.4g")}))
    reasons = Counter(t["note"] for t in tests if t["p_value"] is None)
    st.caption("Exact McNemar test on the images both runs validated (pooled over folds; one pair per image, "
               "its original, also for runs validated on augmented copies, whose accuracy counts the copies too: "
               "the note gives each run's right answers on the originals, and says when the runs' folds differ): "
               "a small p-value (below 0.05) means "
               "the two models' error rates differ more than chance would explain. With several pairs, read "
               "p (Holm), adjusted for the number of pairs tested (Holm's method)."
               + "".join(f" {n} pair(s) left out: {reason}, so no image was validated by both."
                         for reason, n in reasons.items()))


tabs = st.tabs(["Summary", "Folds", "Curves", "Confusion", "Tests", "External"])
with tabs[0]:
    numbers = ["Mean", "SD", "Min", "Max", "Paper (reported)"]
    summary = summary_frame(chosen, labels, metric)
    if metric in FRACTIONS:
        summary, formats = percent_columns(summary, numbers)
    else:
        formats = {c: st.column_config.NumberColumn(format="%.4f") for c in numbers}
    data_table(summary, column_config=fitted(summary, formats))
    st.caption("Mean, standard deviation (a dash for one fold: no spread to measure) and range over folds; the "
               "paper's column repeats its reported 5-fold mean validation accuracy (only for the paper's CNN "
               "trained as one of its experiments was, NB, SVM, 3-NN and decision tree on ALL vs HEALTHY and 5 "
               "classes). The paper split images, not patients, which makes its figures optimistic; our folds keep "
               "a patient's images together under both protocols.")
    warned: dict[str, list[str]] = {}  # what `run` warned of (files left out, failed segmentation...), once each
    for result, label in zip(chosen, labels):
        for warning in result["dataset"].get("warnings", []):
            warned.setdefault(warning, []).append(label)
    for warning, runs in warned.items():  # a sweep's runs on one dataset share its warnings
        who = runs[0] if len(runs) == 1 else f"{len(runs)} runs"
        st.caption(f":material/warning: **{literal(who)}**: {said(warning)}",
                   help="What these runs' data held that their figures depend on, as `run` warned of it: "
                        + few_named(runs))
    by_source = source_frame(chosen, labels)
    if not by_source.empty:
        shares = [c for c in by_source.columns if c not in ("Run", "Source", "Folds", "Images")]
        by_source, formats = percent_columns(by_source, shares)
        st.markdown("**Per source dataset** (runs trained on several datasets)")
        data_table(by_source, column_config=formats)
        st.caption("Each source's validation images scored on their own, pooled over the folds that validated "
                   "that source (under leave-one-dataset-out, the one fold that held it out); the last columns give "
                   "the mean and range of its accuracy over those folds, which can differ much in size.")
    export = [{k: v for k, v in r.items() if k != "folds"}
              | {"folds": [{k: v for k, v in f.items() if k != "oof"} for f in r["folds"]]} for r in chosen]
    left, right = st.columns(2)
    left.download_button("Per-fold table (CSV)", fold_frame(chosen, labels).to_csv(index=False).encode(),
                         file_name="leukdash_folds.csv", mime="text/csv", icon=":material/download:", width="stretch")
    right.download_button("Results (JSON)", json.dumps(hidden(export), indent=1).encode(),
                          file_name="leukdash_runs.json", mime="application/json", icon=":material/download:",
                          width="stretch")
    st.caption("The JSON holds each run's config, dataset fingerprint, versions, summary and per-fold metrics "
               "(out-of-fold predictions are left out; they stay in the run store).")

with tabs[1]:
    folds, formats = percent_columns(fold_frame(chosen, labels), [m for m in metrics if m in FRACTIONS], HEADERS)
    formats |= {m: st.column_config.NumberColumn(HEADERS[m], format="%.1f" if m == "seconds" else "%.4f")
                for m in metrics if m not in FRACTIONS}
    data_table(folds, column_config=fitted(folds, formats))

with tabs[2]:
    with_history = curve_runs(chosen)
    if not with_history:
        st.info("Learning curves exist for CNN runs only (classic models are fitted in one step).")
    else:
        left, right = st.columns([1, 3])
        curve = kept(left.radio, "compare_curve", "acc", "Curve", options=["acc", "loss"],
                     format_func={"acc": "accuracy", "loss": "loss"}.get)
        band = kept(left.radio, "compare_band", "std", "Band", options=list(ERROR_BARS), format_func=ERROR_BARS.get)
        right.plotly_chart(learning_curves(with_history, curve, band), width="stretch", key="compare_curves")
        right.caption(f"Mean over folds per epoch, training dashed and validation solid; band: {ERROR_BARS[band]}.")
    st.markdown("**ROC curves** (out-of-fold)")
    st.plotly_chart(roc_curves(chosen[:MAX_ROC_CURVES], labels[:MAX_ROC_CURVES]), width="stretch", key="compare_roc")
    st.caption("Each run's validation probabilities pooled over its folds, from the fold model that did not train "
               "on the image, on the rows its accuracy counts (every image once; under the paper protocol its "
               "augmented validation copies too): for two classes, the first class against the other; for more, "
               "one-vs-rest decisions pooled over the classes (micro-average). The area under each curve (AUC) is "
               "in its name; dotted: chance."
               + (f" The first {MAX_ROC_CURVES} of {len(chosen)} runs: select runs in the table to see theirs."
                  if len(chosen) > MAX_ROC_CURVES else ""))

with tabs[3]:
    columns = st.columns(min(3, len(chosen)))
    for i, (result, label) in enumerate(zip(chosen[:MAX_CONFUSIONS], labels)):
        columns[i % len(columns)].plotly_chart(confusion_heatmap(result, label), width="stretch",
                                               config={"displayModeBar": False}, key=f"confusion_{i}")
    st.caption("Validation predictions summed over folds; rows are the true class, each cell shows the "
               "count and the share of its row (the diagonal is per-class recall)."
               + (f" The first {MAX_CONFUSIONS} of {len(chosen)} runs: select runs in the table to see theirs."
                  if len(chosen) > MAX_CONFUSIONS else ""))
    # Asked for, not drawn with the page: naming a run's images may read its whole dataset once.
    if st.toggle("Show a run's most confident mistakes", key="compare_mistakes"):
        confident_mistakes_view(chosen, labels)

with tabs[4]:
    if len(chosen) < 2:
        st.info("Select at least two runs for a paired test.")
    elif len(chosen) > MAX_PAIRED:
        st.info(f"Paired tests are made for at most {MAX_PAIRED} runs at once ({pairs(MAX_PAIRED)} pairs, one "
                f"family); {len(chosen)} runs would be {pairs(len(chosen)):,} pairs. Select the runs to test in "
                "the table (the boxes at the left), or use `python -m leukdash compare RUN_ID ...`.")
    else:
        paired_tests_view(chosen_ids, labels)

with tabs[5]:
    st.markdown("How the models fare **outside their own data**: each run's fold ensemble labels every image of "
                "another dataset with the same classes (another lab, stain or camera).")
    own = {r["dataset"]["name"] for r in chosen}
    candidates = [name for name in dataset_options() if name not in own]
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    if deployment().viewer:  # an external test computes over a whole dataset in the server and stores it
        candidates = []
        st.caption(VIEWER_NOTE.format(what="new external tests"))
    target = left.selectbox("Test on", options=candidates, key="compare_external_dataset",
                            help="A dataset with the runs' classes, or some of them (class names must match; "
                                 "a class it has no image of gets no recall).") if candidates else None
    adapt = kept(st.toggle, "compare_external_adapt", False, "Models adapted to the test set",
                 help="Each run's models adapted to the external dataset before they answer (no label used): "
                      "classic models standardise their inputs, CNNs re-estimate their batch-normalisation "
                      "statistics, on its images. Ends a model's collapse on another lab, not its errors; assumes "
                      "one lab's images (at least 20) with a class mix like the training set's. Stored apart from "
                      "the tests of the models as trained.")
    if target and right.button("Run external test", icon=":material/science:", width="stretch",
                               key="compare_external_run"):
        from leukdash.evaluation.evaluate import evaluate

        unkept = set()  # a cache not stored is every run's: said once
        for result, label in zip(chosen, labels):
            try:
                with st.spinner(f"{label} on {target}…"):
                    _, lines = keeping(evaluate, result["run_id"], dataset_options()[target], adapt=adapt)
                not_stored_warnings(lines, unkept)
            except LeukdashError as error:
                st.error(f"{literal(label)}: {said(str(error))}")
        external_results.clear()
    tested = [(result, evaluation) for result in chosen
              for evaluation in external_results(root(), result["run_id"], adapt)]
    if not tested:
        st.info(f"No external test {'of the adapted models ' if adapt else ''}stored for these runs yet" + (
            "." if deployment().viewer else ": pick a dataset and run one (or `python -m leukdash evaluate RUN_ID "
            f"DATASET{' --adapt' if adapt else ''}`)."), icon=":material/science:")
    else:
        from leukdash.evaluation.evaluation_text import few_groups, outcome_sentence

        external_metric = kept(st.radio, "compare_external_metric", "balanced_accuracy", "External figure",
                               options=list(EXTERNAL_METRICS), format_func=EXTERNAL_METRICS.get, horizontal=True)
        frame = external_frame([r for r, _ in tested], [e for _, e in tested], external_metric)
        st.plotly_chart(external_bars(frame, external_metric), width="stretch", key="external_bars")
        st.caption(f"Bars: the fold ensemble{' adapted to it' if adapt else ''} on every image of the external "
                   "dataset; whiskers: 95% interval from a "
                   "bootstrap over its groups (subjects), resampled within class; open circles: the run's own "
                   "cross-validated mean; hatched bars: collapsed (one class for at least 95% of the images).")
        shown, formats = percent_columns(frame.drop(columns=["Model", "Classes"]),
                                         ["Value", "Low", "High", "Within dataset", "OOD share"])
        data_table(shown, column_config=fitted(shown, formats, auto=12))
        for i, ((result, evaluation), label) in enumerate(zip(tested, frame["Run"])):
            st.markdown(f"**{literal(label)}** (trained on {literal(result['dataset']['name'])}). "
                        f"{literal(outcome_sentence(evaluation))}")
            if evaluation.get("images"):  # stored by tests since results held each image's answer
                st.download_button("Per-image answers (CSV)", external_csv(hidden([evaluation])), mime="text/csv",
                                   file_name=f"{result['run_id']}_external_{evaluation['dataset']['fingerprint'][:8]}.csv",
                                   icon=":material/download:", key=f"external_images_{i}",
                                   help="Each image of the external dataset: true and predicted class, each class's "
                                        "probability, and whether each of its checks flags it.")
            for warning in evaluation["dataset"].get("warnings", []):  # images left out, unreadable...
                st.caption(said(warning), help="what the external test left out, and why")
            if few := few_groups(evaluation):
                st.caption(literal(few[0].upper() + few[1:]) + ".", help="a whisker's width with so few subjects")
