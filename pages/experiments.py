"""Experiments: a sweep of cross-validated runs (every setting but Task and Folds can take several values), launched
as one background job and followed live. The settings live in the URL: a reload keeps them and a
copied link opens the same experiment."""

import itertools
import json
import time

import streamlit as st

from leukdash.atomic import explained_errors
from leukdash.service import jobs, sweep_jobs
from leukdash.config import PREPROCESS_MODES, AugmentConfig, RunConfig
from leukdash.errors import LeukdashError
from leukdash.engine.calibrate import calibrated, measuring, start_measuring, uncalibrated
from leukdash.engine.estimate import estimate
from leukdash.engine.timing import stored_start_up
from leukdash.paths import hide_roots
from leukdash.data.preprocess import describe_mode
from leukdash.reporting.plots import ERROR_BARS, metric_bars, setting_text, summary_frame, sweep_axes, validated_over
from leukdash.engine.progress import count, format_duration, format_span, past_loading
from leukdash.engine.sweep import MAX_SWEEP_RUNS
from pages._session import VIEWER_NOTE, deployment, kept, literal, root, routed, said
from pages._shared import (dataset_picker, load_dataset_info, resolve, results, runs, store_survey, synthetic_note,
                           visible_dataset)
from pages._tables import data_table, percent_columns

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
BATCH_SIZES = [8, 16, 32, 64, 128]
# The label of the field of each model setting, which names it where a choice is missing.
SETTING_LABELS = {"optimizer": "Optimizers", "learning_rate": "Learning rates", "epochs": "Epochs",
                  "batch_size": "Batch sizes", "feature_set": "Classic models see", "k": "k (neighbours)"}
# Augmentation choices: the transforms set on the Augmentation page, none, or one of the paper's alone.
TRANSFORMS = {"page": "as set on the Augmentation page", "off": "none (original images only)"} | {
    f"only {name}": f"{name.replace('_', ' ')} only" for name in AugmentConfig().enabled()}
POLL_SECONDS = 2.0
RECENT_SECONDS = 3600  # a job that ended this recently is announced to a new session


def numbers(label: str, text: str, low: int, high: int) -> list[int]:
    """The whole numbers of a comma-separated field, in order, without repeats."""
    values = []
    for part in (p.strip() for p in text.split(",")):
        try:  # isdigit() first: int() would also take a sign, '_' or spaces
            value = int(part) if part.isdigit() else None
        except ValueError:  # a digit int() does not read ('²'), or more digits than it converts
            value = None
        if value is None or not low <= value <= high:
            shown = repr(part) if len(part) <= 24 else f"{part[:12]!r}… ({len(part)} characters)"
            raise ValueError(f"{label}: {shown} is not a whole number from {low} to {high}")
        values.append(value)
    if not values:
        raise ValueError(f"{label}: give at least one value")
    return list(dict.fromkeys(values))


def several(widget, key: str, default, label: str, **kwargs):
    """A multiselect (or a comma-separated text field) kept across pages and in the URL."""
    return kept(widget, key, default, label, bind=True, **kwargs)


def augment_for(choice: str, page: AugmentConfig) -> AugmentConfig:
    if choice == "page":
        return page
    if choice == "off":
        return AugmentConfig.off()
    name, full = choice.removeprefix("only "), AugmentConfig()
    values = AugmentConfig.off().to_dict() | {"fill_mode": page.fill_mode}
    values[name] = getattr(page, name) or getattr(full, name)  # a transform switched off there gets the paper's
    return AugmentConfig.from_dict(values)


def grid(common: dict, models: list[str], cnn: dict, classic: dict, augment_axes: list[tuple]) -> list[RunConfig]:
    """Every combination of the chosen values, one config per distinct run (irrelevant settings aside)."""
    configs = {}
    for name in models:
        own = cnn if MODELS[name]["model"] == "cnn" else \
            {k: v for k, v in classic.items() if k != "k" or MODELS[name]["model"] == "knn"}
        axes = {**common, **own}
        for values in itertools.product(augment_axes, *axes.values()):
            (augment, factor, protocol), settings = values[0], dict(zip(axes, values[1:]))
            config = RunConfig(**MODELS[name], augment=augment, augment_factor=factor, protocol=protocol, **settings)
            configs.setdefault(json.dumps([config.dataset, config.canonical()], sort_keys=True), config)
    return list(configs.values())


def axis_values(configs: list[RunConfig], axes: list[str]) -> dict[str, list[str]]:
    """The distinct values (as text) each axis takes in the configs, in order of appearance."""
    return {axis: list(dict.fromkeys(setting_text(c.to_dict(), axis) for c in configs)) for axis in axes}


def launch(configs: list[RunConfig], name: str, axes: dict) -> None:
    """Store the sweep and start it as one job (a button callback: the page is drawn after the start)."""
    from leukdash.engine.sweep import create_sweep

    limits = deployment()
    try:
        with explained_errors():  # a read-only or full store: one line on the page
            sweep = create_sweep(configs, name=name, axes=axes)
            # Said even if the job cannot start: the record already holds the new runs, so no later launch would.
            st.session_state["_launch_warnings"] = [said(warning) for warning in sweep.pop("warnings")]
            job = sweep_jobs.start_sweep_job(sweep, max_jobs=limits.max_jobs, workers=limits.job_workers)
    except LeukdashError as error:
        st.session_state["_launch_error"] = f"Could not launch: {said(str(error))}"
        return
    st.session_state.setdefault("_watched_jobs", set()).add(job["run_id"])
    store_survey.clear()


def sweep_statuses(limit: int = 20) -> list[dict]:
    """The newest sweep jobs' statuses, but those on another session's upload (never shown, named or
    cancelled here: an upload is its session's)."""
    statuses = [sweep_jobs.sweep_job_status(job_id) for job_id in sweep_jobs.list_sweep_jobs()[:limit]]
    return [status for status in statuses if all(visible_dataset(dataset) for dataset in status["datasets"])]


def run_states(run_ids: list[str], sweeps: list[dict]) -> dict[str, str]:
    """Each run's state: its own job's, or that of the newest sweep job that holds it."""
    states = {}
    for run_id in run_ids:
        own = jobs.job_status(run_id)["state"]
        held = next((s["runs"][run_id] for s in sweeps if run_id in s["runs"]), None)
        states[run_id] = own if own in ("finished", "running", "queued") or held is None else held
    return states


def announce(sweeps: list[dict]) -> None:
    """A toast for each sweep job that ended since this session last looked (or within the last
    hour, for a new session: a job that finished after a reload is not lost). A job is known by its
    id and its start: a grid launched again after a cancel has the same id, and its end is news too."""
    announced = st.session_state.setdefault("_announced_jobs", set())
    watched = st.session_state.setdefault("_watched_jobs", set())
    for sweep in sweeps:
        if sweep["state"] in ("queued", "running"):
            watched.add(sweep["job_id"])
            continue
        recent = sweep["ended"] is not None and time.time() - sweep["ended"] < RECENT_SECONDS
        attempt = (sweep["job_id"], sweep["started"])
        if attempt in announced or not (recent or sweep["job_id"] in watched):
            continue
        announced.add(attempt)
        done = sum(state == "finished" for state in sweep["runs"].values())
        st.toast(f"Sweep “{literal(sweep['name'])}” {sweep['state']}: {done} of {len(sweep['runs'])} runs "
                 "finished.",
                 icon=":material/task_alt:" if sweep["state"] == "finished" else ":material/error:")


def fold_bars(run_id: str, progress: dict, label: str) -> None:
    """One bar per fold in flight (or the loading phase) of one run."""
    st.markdown(f"**{literal(label)}** · {literal(run_id)} · "
                f"{progress['folds_done']} of {progress['folds'] or '?'} folds done")
    if progress["phase"] == "loading":
        st.progress(0.0, text=f"loading: {progress['message'] or 'loading and resizing the images'}…")
        return
    if progress["fold"] is None:  # folds not started: what the run waits for (a Dask worker, another process)
        st.progress(0.0, text=progress["message"] or "waiting for a free worker…")
        return
    for fold, state in progress["in_flight"].items():
        text = f"fold {fold + 1}/{progress['folds']}"
        if state["epochs"]:
            text += f" · epoch {state['epoch']}/{state['epochs']}"
        st.progress(state["fraction"], text=text)


@st.fragment(run_every=POLL_SECONDS)
def live_progress(labels: dict[str, str]) -> None:
    """The queued and running sweep jobs: a bar for each, a bar per fold in flight; redrawn every few seconds."""
    running = [s for s in sweep_statuses() if s["state"] in ("queued", "running")]
    for sweep in running:
        with st.container(border=True):
            head, button = st.columns([6, 1], vertical_alignment="center")
            done = sum(state == "finished" for state in sweep["runs"].values())
            # Jobs on the same dataset and task (two visitors' grids) share a name: their models and launch
            # tell them apart.
            models = ", ".join(dict.fromkeys(setting_text(config, "model") for config in sweep["configs"]))
            launched = time.strftime("%H:%M:%S", time.localtime(sweep["started"]))
            head.markdown(f"**{literal(sweep['name'])}** · {literal(models)} · launched {launched} · "
                          f"{done} of {len(sweep['runs'])} runs done")
            if sweep["state"] == "queued":
                st.progress(0.0, text=f"queued, position {sweep['position']}: starts when one of the "
                                      f"{deployment().max_jobs} job slots of this server frees")
            else:
                total = sweep["folds"] or 1
                eta = [p["eta_seconds"] for p in sweep["progress"].values() if p["eta_seconds"] is not None]
                st.progress(min(1.0, sweep["folds_done"] / total),
                            text=f"{sweep['folds_done']} of {sweep['folds'] or '?'} folds · running for "
                                 f"{format_duration(time.time() - sweep['started'])}"
                                 + (f" · this run about {format_duration(max(eta))} left" if eta else ""))
            for run_id, state in sweep["runs"].items():
                if state == "running":
                    fold_bars(run_id, sweep["progress"][run_id], labels.get(run_id, "run"))
            if button.button("Cancel", key=f"cancel_{sweep['job_id']}", icon=":material/stop_circle:"):
                with st.spinner("Stopping the job…"):
                    sweep_jobs.cancel_sweep_job(sweep["job_id"])
                store_survey.clear()
                st.rerun()
    # Redraw the page with the results (or the errors) of any job this view showed that has ended,
    # while other jobs (perhaps other sessions') still run.
    shown, before = {s["job_id"] for s in running}, st.session_state.get("_live_jobs", set())
    st.session_state["_live_jobs"] = shown
    if before - shown or not running:
        store_survey.clear()
        st.rerun()


st.title("Experiments")
if deployment().viewer:
    st.info(VIEWER_NOTE.format(what="training and dataset uploads"), icon=":material/visibility:")
    st.page_link("pages/compare.py", label="Compare the stored runs", icon=":material/arrow_forward:")
    st.stop()
st.caption("Every setting but Task and Folds (one value each) can take several values: every combination is one "
           "k-fold cross-validated run, and "
           "the whole grid is computed as one background job that keeps running across page switches and "
           "reloads. A run is identified by its settings and the dataset's content, so runs that already "
           "exist show their results at once. The settings are in the page's address: bookmark or share it.")

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
    if st.session_state.get("_task_dataset", dataset) != dataset:
        st.session_state["exp_task"] = next(iter(tasks))  # a task belongs to its dataset
    st.session_state["_task_dataset"] = dataset
    task = kept(st.selectbox, "exp_task", next(iter(tasks)), "Task", options=list(tasks), bind=True,
                help="All classes of the dataset, or one pair (the paper's binary task is ALL vs HEALTHY).")
    sizes = several(st.multiselect, "exp_sizes", [64], "Image sizes (px)", options=IMAGE_SIZES,
                    help="Images are padded square and resized to this side before training.")
    preprocessings = several(st.multiselect, "exp_preprocess", ["raw"], "Preprocessing", options=list(PREPROCESS_MODES),
                             format_func=describe_mode,
                             help="How images enter the models. The cell-level modes segment the white cell nearest "
                                  "the centre and mask the background (preview on the Data page); cell-keep-gray "
                                  "held up best on another lab's images (see the report's External validity).")
    folds = kept(st.number_input, "exp_folds", 5, "Folds", min_value=2, max_value=10, bind=True,
                 help="k-fold cross-validation; all images of one group (patient, source image) stay in one fold.")
    seeds_text = several(st.text_input, "exp_seeds", "0", "Seeds",
                         help="Comma-separated, e.g. 0, 1, 2: several seeds give the spread over seeds (new "
                              "folds and initialisations) beside the spread over folds.")

with aug_col:
    st.subheader("Augmentation")
    page_augment = AugmentConfig.from_dict(st.session_state.get("augment", AugmentConfig().to_dict()))
    transforms = several(st.multiselect, "exp_transforms", ["page"], "Transforms", options=list(TRANSFORMS),
                         format_func=TRANSFORMS.get, help="Each choice is one setting of the sweep.")
    augmenting = any(choice != "off" for choice in transforms)
    factors_text = several(st.text_input, "exp_factors", "8", "Images per original (K)", disabled=not augmenting,
                           help="Comma-separated; the original plus K−1 random copies; the paper used K = 8.")
    protocols = several(st.multiselect, "exp_protocols", ["strict"], "Protocols", options=["strict", "paper"],
                        disabled=not augmenting, format_func={
                            "strict": "strict: validate on original images only",
                            "paper": "paper: split, then augment both parts (validation scores copies too)"}.get)
    if "page" in transforms:
        st.caption(f"Transforms on the Augmentation page: "
                   f"{', '.join(page_augment.enabled()).replace('_', ' ') or 'none'}.")
    st.page_link("pages/augmentation.py", label="Edit the transforms", icon=":material/tune:")

with model_col:
    st.subheader("Models")
    chosen = several(st.multiselect, "exp_models", ["CNN (paper)", "Naive Bayes"], "Models", options=list(MODELS),
                     help="All runs use the same folds (per seed) so they can be compared pairwise.")
    has_cnn = any(MODELS[m]["model"] == "cnn" for m in chosen)
    has_classic = any(MODELS[m]["model"] != "cnn" for m in chosen)
    cnn_choices, classic_choices = {}, {}
    if has_cnn:
        cnn_choices["optimizer"] = several(st.multiselect, "exp_optimizers", ["sgd"], SETTING_LABELS["optimizer"],
                                           options=["sgd", "adam"], format_func={"sgd": "SGD", "adam": "Adam"}.get)
        cnn_choices["learning_rate"] = several(
            st.multiselect, "exp_rates", ["default"], SETTING_LABELS["learning_rate"], options=LEARNING_RATES,
            format_func=lambda v: "optimizer default" if v == "default" else f"{v:g}")
        epochs_text = several(st.text_input, "exp_epochs", "25", SETTING_LABELS["epochs"],
                              help="Comma-separated, e.g. 10, 25")
        cnn_choices["batch_size"] = several(st.multiselect, "exp_batches", [32], SETTING_LABELS["batch_size"],
                                           options=BATCH_SIZES)
    if has_classic:
        classic_choices["feature_set"] = several(
            st.multiselect, "exp_features", ["pixels"], SETTING_LABELS["feature_set"], options=["pixels", "features"],
            format_func={"pixels": "raw pixels (paper)", "features": "colour, texture, shape features"}.get)
        if "k-NN" in chosen:
            ks_text = several(st.text_input, "exp_ks", "3", SETTING_LABELS["k"], help="Comma-separated, e.g. 1, 3, 5")

# ---------------------------------------------------------------- the grid
problems = []
try:
    seeds = numbers("Seeds", seeds_text, 0, 2**31 - 1)
    factors = numbers("Images per original", factors_text, 2, 16) if augmenting else [1]
    if has_cnn:
        cnn_choices["epochs"] = numbers("Epochs", epochs_text, 1, 200)
        cnn_choices["learning_rate"] = [None if r == "default" else r for r in cnn_choices["learning_rate"]]
    if has_classic and "k-NN" in chosen:
        classic_choices["k"] = numbers("k", ks_text, 1, 25)
except ValueError as error:
    problems.append(str(error))
required = {"Image sizes": sizes, "Preprocessing": preprocessings, "Transforms": transforms, "Protocols": protocols or not augmenting,
            **{SETTING_LABELS[k]: v for k, v in (cnn_choices | classic_choices).items()}}
empty = [label for label, values in required.items() if not values]
problems += [f"{label}: choose at least one." for label in empty]

configs = []
if not problems:
    augment_axes = [(augment_for(choice, page_augment), factor, protocol) for choice in transforms for factor, protocol
                    in (itertools.product(factors, protocols) if choice != "off" else [(1, "strict")])]
    configs = grid({"dataset": [dataset], "classes": [tasks[task]], "image_size": sizes, "preprocess": preprocessings,
                    "folds": [int(folds)],
                    "seed": seeds}, chosen, cnn_choices, classic_choices, augment_axes)
if len(configs) > MAX_SWEEP_RUNS:
    problems.append(f"{len(configs)} runs: at most {MAX_SWEEP_RUNS} per sweep; choose fewer values.")
    configs = []

planned: dict[str, RunConfig] = {}
if configs:
    with st.spinner("Checking the settings and fingerprinting the dataset…"):
        for config in configs:
            try:
                planned.setdefault(resolve(json.dumps(config.to_dict(), sort_keys=True), root()), config)
            except LeukdashError as error:
                if said(str(error)) not in problems:  # one line per distinct problem, not one per run
                    problems.append(said(str(error)))
for problem in problems:
    st.error(problem, icon=":material/error:")
if problems:
    planned = {}

st.divider()
sweeps = sweep_statuses()
announce(sweeps)
states = run_states(list(planned), sweeps)
to_compute = [run_id for run_id, state in states.items() if state not in ("finished", "running", "queued")]
in_flight = [run_id for run_id, state in states.items() if state in ("running", "queued")]
entries = {entry["run_id"]: entry for entry in runs(root())}
n_images = sum(info["classes"][c] for c in (tasks[task] or classes))
# A run past its loading has paid its start-up (its images decoded, its workers up): the estimate adds none.
remaining = [{"config": planned[r].to_dict(), "n_images": n_images,
              "started": states[r] == "running" and past_loading(jobs.job_status(r)["progress"]),
              # A stored run's own folds: a grouped dataset can allow fewer than the Folds asked.
              "missing_folds": (len(entries[r]["meta"]["fold_ids"]) - entries[r]["n_folds_done"] if r in entries
                                else int(folds))}
             for r in to_compute + in_flight]
stored = list(entries.values())
# The folds at once a launch gives its job (`--n-jobs`), not this process's pool: one source, the deployment.
timing = estimate(remaining, stored, workers=deployment().job_workers, calibrated=calibrated(),
                  start_up=stored_start_up(stored))
# Kinds of model with neither a finished run nor this machine's figures: measured on demand.
unmeasured = uncalibrated([run["config"] for run in remaining]) if timing["unknown"] else []

header, launch_col = st.columns([4, 1], vertical_alignment="bottom")
header.subheader("Runs for these settings")
axes = sweep_axes([config.to_dict() for config in planned.values()])
shown = list(dict.fromkeys(["model", *axes]))  # the settings that tell these runs apart
name = f"{info['name']} · {task}" + (f" · {' × '.join(axes)}" if axes else "")
launch_col.button(f"Launch {count(len(to_compute), 'run')}", key="launch", type="primary",
                  icon=":material/play_arrow:", disabled=not to_compute, width="stretch", on_click=launch,
                  args=(list(planned.values()), name, axis_values(list(planned.values()), axes)))
if "_launch_error" in st.session_state:
    st.error(st.session_state.pop("_launch_error"), icon=":material/error:")
for warning in st.session_state.pop("_launch_warnings", []):
    st.warning(warning, icon=":material/warning:")
if planned:
    cols = st.columns(3)
    cols[0].metric("Runs in the grid", len(planned), help="Settings that make no difference to a model "
                   "(say k for a CNN) do not multiply its runs.")
    if in_flight:
        folds_left = sum(run["missing_folds"] for run in remaining)
        cols[1].metric("Running now", f"{count(len(in_flight), 'run')}",
                       help=f"{count(len(to_compute), 'more run')} to launch; {count(folds_left, 'fold')} left to "
                            "compute in all.")
    else:
        cols[1].metric("To compute", count(len(to_compute), "run"))
    if not remaining:
        span = "0s"
    elif timing["estimated"]:
        span = format_span(timing["low"], timing["high"])
        span += " + ?" if timing["unknown"] else ""
    else:
        span = "measuring…" if unmeasured and measuring() else "unknown"
    # A queued job waits for the jobs ahead of it, whose time the estimate (of these runs alone) leaves out.
    ahead = min((s["position"] for s in sweeps if s["state"] == "queued" and set(planned) & set(s["runs"])),
                default=None)
    waits = (f"These runs are queued (position {ahead}) and start when one of the {deployment().max_jobs} job "
             "slots of this server frees: the time of the jobs ahead is not counted. ") if ahead else ""
    cols[2].metric("Time left after the queue" if ahead else "Time left" if in_flight else "Estimated time", span,
                   help=waits + "A range: from the stored fold times of finished runs of the same model and of up to 4 "
                        "times more or less work (their lowest to highest rate), scaled by images, pixels and epochs, "
                        "or, without such a run, from this machine's cost per fold measured on small runs (a third to "
                        "three times it); "
                        "folds share the machine's cores. Added: what earlier runs took to load their images and "
                        "start their worker processes."
                        + (f" Most likely about {format_duration(timing['seconds'])}." if timing["estimated"] else "")
                        + (f" {count(timing['unknown'], 'run')} with neither yet." if timing["unknown"] else ""))
    if unmeasured and not measuring():
        cols[2].button("Measure this machine", key="calibrate", icon=":material/speed:", on_click=start_measuring,
                       args=(unmeasured,), help=f"Small real runs of {', '.join(unmeasured)} in the background "
                       "(under a minute; a CNN imports TensorFlow once), so that estimates have figures to go by.")
    elif unmeasured:
        cols[2].caption(f"Measuring {', '.join(unmeasured)} on this machine in the background; reload in a minute.")
elif not chosen:
    st.info("Choose at least one model.", icon=":material/info:")

if planned:
    # Why each run refused for its settings was, as the newest sweep job holding it says (a machine's error, which
    # stopped the others too, is the failed job's log's to say)
    reasons = {run_id: hide_roots(next((s["refused"].get(run_id, "") for s in sweeps if run_id in s["runs"]), ""))
               for run_id in planned if states[run_id] == "failed"}
    rows = []
    for run_id, config in planned.items():
        state = states[run_id]
        found = results([run_id]) if state == "finished" else []  # none when a fold was lost (its caption says so)
        accuracy = found[0]["summary"]["val_acc"]["mean"] if found else None
        settings = {axis: setting_text(config.to_dict(), axis) for axis in shown}
        rows.append({**{axis.replace("_", " ").capitalize(): text for axis, text in settings.items()},
                     "Status": "not run yet" if state == "none" else state,
                     "Val. accuracy": "" if accuracy is None else f"{accuracy:.1%}", "Run id": run_id,
                     **({"Why it failed": reasons.get(run_id, "")} if any(reasons.values()) else {})})
    data_table(rows)
    failed = next((s for s in sweeps if s["state"] == "failed" and set(planned) & set(s["runs"])), None)
    if failed is not None:
        with st.expander(f"The last sweep job with these runs failed: {literal(failed['name'])}",
                         icon=":material/error:"):
            # The log as the job wrote it, but the server's folders (and an upload's session token).
            log = "\n".join(hide_roots(line) for line in failed["log_tail"])
            if log.strip():
                st.code(log)
            else:  # what SIGKILL leaves: the out-of-memory killer, a server restart, a kill from a terminal
                st.markdown("The job left no message: it was stopped from outside (a restart of the server, "
                            "the out-of-memory killer, a kill from a terminal).")
            st.caption("Its finished folds are kept: launching the same grid again computes only the rest. A run "
                       "refused for its own settings (a CNN that diverges, too few images for the SVM's calibration; "
                       "the table says why each failed) fails again alike: change its settings.")

labels = {run_id: " · ".join(setting_text(config.to_dict(), axis) for axis in shown)
          for run_id, config in planned.items()}
if any(s["state"] in ("queued", "running") for s in sweeps):
    st.subheader("Running")
    live_progress(labels)

recent = [s for s in sweeps if s["state"] not in ("queued", "running")][:5]
if recent:
    with st.expander("Recent sweep jobs"):
        data_table([{"Sweep": s["name"], "State": s["state"],
                     "Runs finished": f"{sum(v == 'finished' for v in s['runs'].values())} of {len(s['runs'])}",
                     "Ended": time.strftime("%Y-%m-%d %H:%M", time.localtime(s["ended"])) if s["ended"] else ""}
                    for s in recent])

finished = [run_id for run_id in planned if states[run_id] == "finished"]
if finished:
    st.subheader("Results")
    finished_results = results(finished)
    error = kept(st.radio, "exp_error", "std", "Error bars", options=list(ERROR_BARS), format_func=ERROR_BARS.get,
                 horizontal=True)
    st.plotly_chart(metric_bars(finished_results, "val_acc", error), width="stretch", key="exp_bars")
    st.caption(f"Bars: validation accuracy, {validated_over(finished_results)}; whiskers: {ERROR_BARS[error]}; dots: "
               "single folds; diamonds: the paper's reported figure where it reported one.")
    table, percent = percent_columns(summary_frame(finished_results), ["Mean", "SD", "Min", "Max", "Paper (reported)"])
    data_table(table, column_config=percent)
    st.page_link("pages/compare.py", label="Compare in detail (the sweep view shows settings against accuracy)",
                 icon=":material/arrow_forward:")
