"""Experiments: set up cross-validated runs, launch them as background jobs, follow them live."""

import itertools
import json

import streamlit as st

from leukdash import jobs
from leukdash.config import AugmentConfig, RunConfig
from leukdash.errors import LeukdashError
from leukdash.paths import hide_roots
from leukdash.plots import ERROR_BARS, metric_bars, runs_frame, summary_frame
from leukdash.progress import format_duration
from pages._shared import (VIEWER_NOTE, dataset_picker, deployment, kept, load_dataset_info, percent_columns, resolve,
                           results, root, routed, runs, synthetic_note, visible_runs)

routed(__file__)

MODELS = {
    "CNN (paper)": {"model": "cnn", "architecture": "paper"},
    "CNN (leukdash)": {"model": "cnn", "architecture": "leukdash"},
    "Naive Bayes": {"model": "nb"},
    "SVM": {"model": "svm"},
    "k-NN": {"model": "knn"},
    "Decision tree": {"model": "dt"},
}
IMAGE_SIZES = [16, 24, 32, 48, 64, 96, 128, 160, 224]
LEARNING_RATES = ["default", 0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1]
POLL_SECONDS = 2.0


def progress_text(progress: dict) -> str:
    """'fold 2/5 · epoch 13/25 · val_acc 0.83 · about 1m20s left' from latest_state()."""
    if progress["status"] == "none" or progress["fold"] is None:
        return progress["message"] or "starting: loading and resizing the images…"
    parts = [f"fold {progress['fold'] + 1}/{progress['folds']}"]
    if progress["epochs"]:
        parts.append(f"epoch {progress['epoch'] or 0}/{progress['epochs']}")
    for name in ("val_acc", "acc"):
        if isinstance(progress["metrics"].get(name), (int, float)):
            parts.append(f"{name} {progress['metrics'][name]:.3f}")
            break
    if progress["eta_seconds"] is not None:
        parts.append(f"about {format_duration(progress['eta_seconds'])} left")
    return " · ".join(parts)


def launch_jobs(planned: list[tuple[RunConfig, str]]) -> None:
    """Start a background job per run (a button callback, so the page is drawn after the start)."""
    limits = deployment()
    for config, run_id in planned:
        jobs.start_job(config, run_id, max_jobs=limits.max_jobs, workers=limits.job_workers)
    runs.clear()


@st.fragment(run_every=POLL_SECONDS)
def live_progress(active: dict[str, str]) -> None:
    """Progress of running and queued jobs, read from their files every few seconds."""
    running = False
    for run_id, label in active.items():
        status = jobs.job_status(run_id)
        progress = status["progress"]
        with st.container(border=True):
            head, button = st.columns([6, 1], vertical_alignment="center")
            head.markdown(f"**{label}** · `{run_id}`")
            if status["state"] in ("running", "queued"):
                running = True
                if status["state"] == "queued":
                    st.progress(0.0, text=f"queued, position {status['position']}: starts when one of the "
                                          f"{deployment().max_jobs} job slots of this server frees")
                else:
                    st.progress(progress["fraction"], text=progress_text(progress))
                if status["state"] == "running" and progress["folds"]:
                    st.caption(f"{progress['folds_done']} of {progress['folds']} folds done · "
                               f"running for {format_duration(progress['elapsed'])}")
                if button.button("Cancel", key=f"cancel_{run_id}", icon=":material/stop_circle:"):
                    with st.spinner("Stopping the job…"):
                        jobs.cancel_job(run_id)
                    runs.clear()
                    st.rerun()
            else:
                st.markdown(f"Job {status['state']}.")
    if not running:
        runs.clear()
        st.rerun()  # redraw the page with the results (or the error) of the jobs that ended


st.title("Experiments")
if deployment().viewer:
    st.info(VIEWER_NOTE.format(what="training and dataset uploads"), icon=":material/visibility:")
    st.page_link("pages/compare.py", label="Compare the stored runs", icon=":material/arrow_forward:")
    st.stop()
st.caption("Each model is one k-fold cross-validated run, computed as a background job: it keeps running "
           "across page switches and browser reloads. A run is identified by its settings and the "
           "dataset's content, so settings that already ran show their results at once.")

dataset = dataset_picker()
info = load_dataset_info(dataset)
if info is None:
    st.stop()
synthetic_note(info)

data_col, aug_col, model_col = st.columns(3, gap="large")
with data_col:
    st.subheader("Data")
    classes = info["class_names"]
    tasks = {f"{' vs '.join(classes)}" if len(classes) == 2 else f"All {len(classes)} classes": None}
    tasks |= {f"{a} vs {b}": (a, b) for a, b in itertools.combinations(classes, 2) if len(classes) > 2}
    task = kept(st.selectbox, "exp_task", next(iter(tasks)), "Task", options=list(tasks),
                help="All classes of the dataset, or one pair (the paper's binary task is ALL vs HEALTHY).")
    size = kept(st.select_slider, "exp_size", 64, "Image size (px)", options=IMAGE_SIZES,
                help="Images are padded square and resized to this side before training.")
    folds = kept(st.number_input, "exp_folds", 5, "Folds", min_value=2, max_value=10,
                 help="k-fold cross-validation; all images of one group (patient, source image) stay in one fold.")
    seed = kept(st.number_input, "exp_seed", 0, "Seed", min_value=0, max_value=2**31 - 1)

with aug_col:
    st.subheader("Augmentation")
    augment_on = kept(st.toggle, "exp_augment", True, "Augment the training images")
    factor = kept(st.slider, "exp_factor", 8, "Images per original (K)", min_value=2, max_value=16,
                  disabled=not augment_on, help="The original plus K−1 random copies; the paper used K = 8.")
    protocol = kept(st.radio, "exp_protocol", "strict", "Protocol", options=["strict", "paper"],
                    disabled=not augment_on, format_func={
                        "strict": "strict: validate on original images only",
                        "paper": "paper: augment validation folds too (optimistic, as published)"}.get)
    augment = AugmentConfig.from_dict(st.session_state.get("augment", AugmentConfig().to_dict()))
    if augment_on:
        st.caption(f"Transforms on: {', '.join(augment.enabled()).replace('_', ' ') or 'none'}.")
    st.page_link("pages/augmentation.py", label="Edit the transforms", icon=":material/tune:")

with model_col:
    st.subheader("Models")
    chosen = kept(st.multiselect, "exp_models", ["CNN (paper)", "Naive Bayes"], "Models", options=list(MODELS),
                  help="One run per model, all on the same folds so they can be compared pairwise.")
    cnn = any(MODELS[m]["model"] == "cnn" for m in chosen)
    classic = any(MODELS[m]["model"] != "cnn" for m in chosen)
    cnn_settings, classic_settings = {}, {}
    if cnn:
        left, right = st.columns(2)
        cnn_settings["optimizer"] = kept(left.radio, "exp_optimizer", "sgd", "Optimizer", options=["sgd", "adam"],
                                         format_func={"sgd": "SGD", "adam": "Adam"}.get, horizontal=True)
        rate = kept(right.selectbox, "exp_lr", "default", "Learning rate", options=LEARNING_RATES,
                    format_func=lambda v: "optimizer default" if v == "default" else f"{v:g}")
        cnn_settings["learning_rate"] = None if rate == "default" else rate
        cnn_settings["epochs"] = kept(left.number_input, "exp_epochs", 25, "Epochs", min_value=1, max_value=200)
        cnn_settings["batch_size"] = kept(right.selectbox, "exp_batch", 32, "Batch size", options=[8, 16, 32, 64, 128])
    if classic:
        classic_settings["feature_set"] = kept(st.radio, "exp_features", "pixels", "Classic models see",
                                               options=["pixels", "features"], format_func={
                                                   "pixels": "raw pixels (paper)",
                                                   "features": "colour, texture, shape features"}.get,
                                               horizontal=True)
        if "k-NN" in chosen:
            classic_settings["k"] = kept(st.number_input, "exp_k", 3, "k (neighbours)", min_value=1, max_value=25)

base = dict(dataset=dataset, classes=tasks[task], image_size=size, folds=int(folds), seed=int(seed),
            augment=augment if augment_on else AugmentConfig.off(), augment_factor=factor if augment_on else 1,
            protocol=protocol, **cnn_settings, **classic_settings)
planned: dict[str, tuple[RunConfig, str]] = {}
with st.spinner("Checking the settings and fingerprinting the dataset…"):
    for name in chosen:
        config = RunConfig(**base, **MODELS[name])
        try:
            planned[name] = (config, resolve(json.dumps(config.to_dict(), sort_keys=True), root()))
        except LeukdashError as error:
            st.error(hide_roots(f"{name}: {error}"), icon=":material/error:")

st.divider()
statuses = {name: jobs.job_status(run_id) for name, (_, run_id) in planned.items()}
to_launch = [planned[name] for name, status in statuses.items()
             if status["state"] not in ("finished", "running", "queued")]
header, launch = st.columns([4, 1], vertical_alignment="bottom")
header.subheader("Runs for these settings")
launch.button(f"Launch {len(to_launch)} run{'s' * (len(to_launch) != 1)}", key="launch", type="primary",
              icon=":material/play_arrow:", disabled=not to_launch, width="stretch", on_click=launch_jobs,
              args=(to_launch,))

if not planned:
    st.info("Choose at least one model.", icon=":material/info:")
else:
    rows = []
    for name, (config, run_id) in planned.items():
        state = statuses[name]["state"]
        accuracy = results([run_id])[0]["summary"]["val_acc"]["mean"] if state == "finished" else None
        rows.append({"Model": name, "Status": "not run yet" if state == "none" else state,
                     "Val. accuracy": "" if accuracy is None else f"{accuracy:.1%}", "Run id": run_id})
    st.dataframe(rows, hide_index=True, width="stretch")
    for name, status in statuses.items():
        if status["state"] == "failed":
            reason = status["progress"]["message"] or "see the log"
            with st.expander(f"{name} failed: {reason}", icon=":material/error:"):
                st.code("\n".join(status["log_tail"]) or "(no log)")

# Every running job, also those launched from another tab or before a reload.
active = {run_id: name for name, (_, run_id) in planned.items() if statuses[name]["state"] in ("running", "queued")}
for entry in visible_runs():
    if entry["status"] != "complete" and entry["run_id"] not in active \
            and jobs.job_status(entry["run_id"])["state"] == "running":
        row = runs_frame([entry]).iloc[0]
        active[entry["run_id"]] = f"{row['Model']} · {row['Dataset']} · {row['Task']}"
if active:
    st.subheader("Running")
    live_progress(active)

finished = [run_id for name, (_, run_id) in planned.items() if statuses[name]["state"] == "finished"]
if finished:
    st.subheader("Results")
    finished_results = results(finished)
    error = kept(st.radio, "exp_error", "std", "Error bars", options=list(ERROR_BARS), format_func=ERROR_BARS.get,
                 horizontal=True)
    st.plotly_chart(metric_bars(finished_results, "val_acc", error), width="stretch", key="exp_bars")
    st.caption(f"Bars: mean validation accuracy over {folds} folds; whiskers: {ERROR_BARS[error]}; dots: "
               "single folds; diamonds: the paper's reported figure where it reported one.")
    table, percent = percent_columns(summary_frame(finished_results), ["Mean", "SD", "Min", "Max", "Paper (reported)"])
    st.dataframe(table, hide_index=True, width="stretch", column_config=percent)
    st.page_link("pages/compare.py", label="Compare in detail", icon=":material/arrow_forward:")
