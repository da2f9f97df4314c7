"""Predict: class probabilities for uploaded images from a finished run's fold models."""

import hashlib
from collections import Counter

import pandas as pd
import streamlit as st

from leukdash.data.dataset import SYNTHETIC_RUN_NOTE
from leukdash.data.decode import IMAGE_EXTENSIONS, MAX_PIXELS, decode_image, frames_note
from leukdash.data.preprocess import describe_mode
from leukdash.engine.ensemble import MIXED
from leukdash.evaluation.answer import (apart, conflicting_labels, headline, one_class_warning, shown_percentile,
                                       unavailable_checks)
from leukdash.evaluation.answer_table import answer_row, answers_csv
from leukdash.evaluation.labels import size_text
from leukdash.evaluation.predict import MIN_ADAPT_IMAGES, warm_up, warmed_up
from leukdash.evaluation.transfer import FULL_PROTOCOL_FOLDS, left_out_text
from leukdash.errors import ImageDecodeError, ImageFormatError, LeukdashError
from leukdash.paths import printable
from leukdash.reporting.plots import for_display, heatmap_overlay, probability_bars
from pages._session import hidden, kept, literal, root, routed, said, upload_mb
from pages._shared import (GRADCAM_UPLOADS, adapted_models, finished_runs, gradcam, no_runs_yet, not_stored_warnings,
                           predict, predict_adapted, run_option_labels, transfer_figures, uploads_lab, visible_runs,
                           why_unfinished)
from pages._tables import data_table, percent_columns

routed(__file__)

IMAGE_TYPES = [extension.lstrip(".") for extension in IMAGE_EXTENSIONS]  # what a dataset reads
# The page's texts name what the uploader takes, from the same list (".jpg, .png ... or .jp2").
FORMATS = ", ".join(IMAGE_EXTENSIONS[:-1]) + f" or {IMAGE_EXTENSIONS[-1]}"
MAX_FILE_MB = upload_mb(50)  # Streamlit's own cap, where smaller, is the limit that holds
# The answers' summary table: the columns of answer_table.answer_row it shows, and their headers.
SUMMARY_COLUMNS = {"file": "File", "predicted": "Predicted", "probability": "Probability",
                   "outside_training": "Unlike training data", "likely_wrong": "Likely wrong",
                   "unsupported": "Unsupported",
                   "cell_segmentation": "Cell segmentation", "known_image": "Known image", "error": "Cannot read"}

st.title("Predict")
entries = finished_runs()
if not entries:
    no_runs_yet("nothing to predict with")
    st.stop()

transfer = transfer_figures(root(), tuple(entry["run_id"] for entry in entries))


def option_label(entry: dict, label: str) -> str:
    score = transfer["scores"].get(entry["run_id"])
    shown = f" · transfers {score['balanced_accuracy']:.0%} ({score['source']})" if score else ""
    return label + shown


def preparation(mode: str) -> str:
    """How a run's uploads are prepared, in words; an ensemble of runs that differ in it says "mixed"."""
    if mode == MIXED:
        return "Each member prepares uploads as its own images were (their preprocessing differs)."
    placed = "padded square" if mode == "raw" else "the cell placed on a black square"
    return f"Uploads are prepared as its images were ({describe_mode(mode)}; {placed} and resized)."


names = run_option_labels(entries)
labels = {entry["run_id"]: option_label(entry, names[entry["run_id"]]) for entry in entries}
# The run this session chose and how it was labelled, read before kept() falls back to the default
# for a run that has left the store.
chosen = st.session_state.get("predict_run", st.session_state.get("_kept_predict_run"))
chosen_label = st.session_state.get("_predict_run_labels", {}).get(chosen, chosen)
st.session_state["_predict_run_labels"] = labels
run_id = kept(st.selectbox, "predict_run", transfer["default"] or entries[0]["run_id"], "Run", options=list(labels),
              format_func=labels.get,
              help="A finished run; its fold models vote (their probabilities are averaged).")
if transfer["best"]:
    st.caption("The page opens on the run trained on real images that transfers best to a lab it never saw, by "
               "its leave-one-dataset-out result or its stored external tests (`evaluate`).")
else:
    st.caption("No run on real images has a transfer figure: the page opens on the run with the best "
               f"cross-validated balanced accuracy, runs of the full {FULL_PROTOCOL_FOLDS} folds before quicker "
               "ones, not on the newest run.")
if chosen is not None and chosen not in labels:
    # Still in the store, it is not whole (an ensemble whose member was deleted, a fold lost): said why.
    why = (f"cannot answer now ({why_unfinished(chosen)})" if chosen in {entry["run_id"] for entry in visible_runs()}
           else "is no longer in the store (deleted or damaged)")
    st.warning(f"The run you chose, {literal(printable(str(chosen_label)))} ({literal(printable(str(chosen)))}), "
               f"{why}: the answers below come from {literal(labels[run_id])}.", icon=":material/warning:")
meta = next(entry["meta"] for entry in entries if entry["run_id"] == run_id)
config, dataset = meta["config"], meta["dataset"]
is_cnn = config["model"] == "cnn"
st.caption(f"Trained on **{literal(dataset['name'])}** ({literal(', '.join(dataset['classes']))}) at "
           f"{size_text(config)}; "
           f"{len(meta['fold_ids'])} fold models. {preparation(config.get('preprocess', 'raw'))}")
score = transfer["scores"].get(run_id)
if score:
    st.caption(f"On images of a lab it never saw ({literal(', '.join(map(str, score['datasets'])))}): "
               "balanced accuracy "
               f"{score['balanced_accuracy']:.1%} ({'leave-one-dataset-out' if score['source'] == 'lodo' else 'external test'}).")
elif left_out := left_out_text(transfer["standings"].get(run_id) or {}, lambda name: literal(printable(name))):
    # its tests are elsewhere (or on a folder changed since): a figure beside the others' would be on other images
    if transfer["compared_on"]:
        st.caption(f"No transfer figure beside the other runs': {left_out}. To rank it, "
                   "evaluate it on the test sets the runs are compared on "
                   f"({literal(printable(', '.join(transfer['compared_on'])))}, as last tested): "
                   "`python -m leukdash evaluate RUN_ID DATASET`.")
    else:  # no run has a current external test (the others transfer by leave-one-dataset-out): none to name
        st.caption(f"No transfer figure beside the other runs': {left_out} "
                   "(`python -m leukdash evaluate RUN_ID DATASET`).")
else:
    st.caption("No transfer figure for this run: neither a leave-one-dataset-out run of its settings nor an "
               "external test (`python -m leukdash evaluate RUN_ID DATASET`) is stored. Its accuracy on another "
               "lab's images is unknown.")
if dataset.get("synthetic"):
    st.caption(f":material/science: {SYNTHETIC_RUN_NOTE[0].upper()}{SYNTHETIC_RUN_NOTE[1:]}.")

# Loading the fold models (TensorFlow, for a CNN) and the checks' references starts now, in the
# background, so that the first upload is answered at once.
warm_up(run_id)
ready = warmed_up(run_id)
loading = st.empty()  # cleared once an answer shows the models are loaded
if not ready:
    loading.caption(":material/hourglass_top: Loading this run's fold models and reference images in the "
                    f"background (first use of this run{'; TensorFlow starts' if is_cnn else ''}): the first answer "
                    "waits only for what is left of it.")

uploads = st.file_uploader("Images", type=IMAGE_TYPES, accept_multiple_files=True, key="predict_upload",
                           max_upload_size=MAX_FILE_MB)
# Said on the page, not in a help tooltip: a file over the limit is refused in the browser (only its name
# turns red), so the page never learns of it.
st.caption(f"{FORMATS} images, up to {MAX_FILE_MB} MB and {MAX_PIXELS // 1_000_000} megapixels each; "
           "a larger file is refused as it is dropped (its name turns red) and not classified.")
if not uploads:
    st.info("Upload one or more blood-cell images to classify them.", icon=":material/upload:")
    st.stop()
show_cam = is_cnn and kept(st.toggle, "predict_cam", True, "Grad-CAM heatmap",
                           help="Where the CNN looked: gradient-weighted activations of its last convolution, "
                                "averaged over the fold models.")
models = None  # the run's models as trained, or adapted to these uploads
lab = None  # the uploads' descriptors, where the support check compares them as one lab's
batch = None  # a name of the uploads taken together (a digest of them), where they are enough to stand for a lab
if len(uploads) >= MIN_ADAPT_IMAGES:
    batch = hashlib.sha1(b"".join(hashlib.sha1(upload.getvalue()).digest() for upload in uploads)).hexdigest()
if batch and kept(
        st.toggle, "predict_adapt", False, "Adapt to these uploads",
        help=f"Take the uploads for one lab's images (at least {MIN_ADAPT_IMAGES}, a class mix like the training "
             "set's) and answer them with the models adapted to them: classic models standardise their inputs, "
             "CNNs re-estimate their batch-normalisation statistics, on these images (no label is used). Another "
             "lab's stain and camera can make a model give every image one class; adapted, each answer depends "
             "on the other uploads."):
    try:
        with st.spinner("Adapting the models to these uploads…"):
            models = adapted_models(root(), run_id, batch, tuple(upload.getvalue() for upload in uploads))
        used = models.images_adapted_to  # an unreadable upload is answered with its reason, not adapted to
        st.caption(":material/tune: Answers below come from the models adapted to "
                   + (f"these {used} uploads" if used == len(uploads) else f"{used} of these {len(uploads)} uploads")
                   + (" (Grad-CAM too)." if show_cam else "."))
    except LeukdashError as error:
        st.warning(f"Not adapted: {said(str(error))}. The answers below come from the models as trained.",
                   icon=":material/warning:")
if models is None and batch:
    with st.spinner("Looking at the uploads together…"):
        lab = uploads_lab(root(), run_id, batch, tuple(upload.getvalue() for upload in uploads))
    if lab is not None:
        st.caption(f":material/tune: Most of these {len(uploads)} uploads are unlike the run's training images: the "
                   "support check compares them as one lab's images (as `predict` and `evaluate` do), so whether "
                   "an answer is unsupported depends on the other uploads.")

if show_cam and len(uploads) > GRADCAM_UPLOADS:
    st.caption(f"Grad-CAM heatmaps for the first {GRADCAM_UPLOADS} of these {len(uploads)} uploads only (the maps "
               "are kept in memory): upload the others apart to see theirs. Every upload is answered below.")
export = st.empty()  # above the answers, filled once every upload is answered
answered = []  # what the table download holds: each upload's answer, or why it could not be read
unkept = set()  # the lines of what was not stored, said once for all the uploads (one cache is every upload's)
repeated = Counter(upload.name for upload in uploads)
for number, upload in enumerate(uploads, start=1):
    data = upload.getvalue()
    # Files of one name from different folders: the upload's place in the list tells their rows apart.
    name = printable(upload.name) + (f" (upload {number})" if repeated[upload.name] > 1 else "")
    with st.container(border=True):
        st.text(name)  # literally: a file name is no Markdown
        try:
            if len(data) > MAX_FILE_MB * 1024 * 1024:
                raise ImageDecodeError(f"file too large: {len(data) / 1024 / 1024:.0f} MB (limit {MAX_FILE_MB} MB)")
            picture = decode_image(data)
            note = frames_note(data)
        except ImageDecodeError as error:
            # Another file helps only where the file's type is what is wrong, not a PNG too large or damaged.
            advice = f" Upload a {FORMATS} image." if isinstance(error, ImageFormatError) else ""
            st.error(f"Cannot read {literal(name)}: {error}.{advice}", icon=":material/broken_image:")
            answered.append({"file": name, "error": str(error)})
            continue
        try:
            with st.spinner("Predicting…" if ready else "Finishing loading this run's fold models and reference "
                            "images (once per run), then predicting…"):
                result = (predict(root(), run_id, data, picture, batch if lab is not None else None, lab)
                          if models is None else predict_adapted(root(), run_id, batch, data, picture, models))
            ready = True
            loading.empty()
        except LeukdashError as error:
            st.error(f"Cannot predict with run {literal(run_id)}: {said(str(error))}")
            st.stop()
        not_stored_warnings(result.pop("not_stored", []), unkept)  # cache_data's copy: the cached answer keeps it
        answered.append({"file": name, **({"note": note} if note else {}), **result})
        ood, known = result.get("ood") or {}, result.get("known")
        if note:
            st.caption(f"Note: {note}.")  # frames_note: our own words, no name
        if ood.get("outside"):
            seen = "as the camera gave it (its acquisition)" if ood.get("view") == "acquisition" else "as the models see it"
            st.warning("**This image does not look like the images this run was trained on** "
                       f"({literal(dataset['name'])}), {seen}. Its distance to them scores {ood['score']:.2f}, "
                       f"higher than {shown_percentile(ood['percentile'])} of the "
                       "run's own validation images (the flag is above the 99th percentile of those not far beyond "
                       f"the rest, {ood['threshold']:.2f}). "
                       "The prediction below says nothing reliable about it: the models never saw images like it.",
                       icon=":material/warning:")
        cell = result.get("cell") or {}
        if cell.get("failure"):
            st.warning(f"**Cell segmentation: {cell['failure']}**: {cell['meaning']}. This run's models were trained "
                       "on segmented cells.", icon=":material/center_focus_weak:")
        unsure = result.get("likely_wrong") or {}
        if unsure.get("flag"):
            top, floor = apart(unsure["confidence"], unsure["floor"], percent=True)
            st.warning(f"**Likely wrong**: its top probability ({top}) is lower than that of 95% "
                       f"of the run's own out-of-fold answers (below {floor}).", icon=":material/help:")
        alone = result.get("unsupported") or {}
        if alone.get("flag"):
            score, floor = apart(alone["score"], alone["floor"])
            st.warning(f"**Unsupported**: a training image of another class lies near it, relative to the nearest "
                       f"of {literal(headline(result)['predicted'])} (trust score {score}, lower than that of 95% "
                       f"of the run's own out-of-fold answers, below {floor}).", icon=":material/help:")
        answer = headline(result)
        if known and "error" not in known:
            honest = (f"the headline is the answer of its validation fold {known['fold']}'s model, which never "
                      "trained on it; the other models' votes are below" if known["fold"]
                      else "every model of this holdout run trained on it, so no honest answer exists")
            also = "".join(f", also to {literal(copy['file'])} (labelled {literal(copy['class'])})"
                           for copy in known.get("also", []))
            conflict = conflicting_labels(known)
            st.info(f"**Known image**: {known['match']} to {literal(known['file'])} "
                    f"(labelled {literal(known['class'])}){also} "
                    f"in the run's dataset: {honest}.", icon=":material/fingerprint:")
            if conflict:
                st.warning(f"**Labels conflict**: the run's dataset holds this picture under "
                           f"{' and '.join(map(literal, conflict))}; one of the labels is wrong.",
                           icon=":material/warning:")
        image_col, chart_col = st.columns([5, 6], gap="large")
        with chart_col:
            st.markdown(f"Predicted: **{literal(answer['predicted'])}** · {literal(answer['detail'])}")
            if answer["disagreement"]:
                st.warning(literal(answer["disagreement"]), icon=":material/call_split:")
            st.plotly_chart(probability_bars(answer["probabilities"], answer["predicted"]), width="stretch",
                            config={"displayModeBar": False}, key=f"proba_{upload.file_id}")
            votes = literal(", ".join(f"{i + 1}: {c or 'tie'}" for i, c in enumerate(result["fold_predictions"])))
            if answer["source"] == "out-of-fold":
                ensemble_mean = result["probabilities"][result["predicted"]]
                st.caption(f"Probabilities of the fold model that never saw this image. All {result['n_folds']} "
                           f"fold models, most of which trained on it: mean {ensemble_mean:.0%} for "
                           f"{literal(result['predicted'])}; votes per fold: {votes}.")
            else:
                st.caption(f"Mean class probability over the fold models (the headline). Votes per fold: {votes}.")
            if "error" not in ood and not ood.get("outside"):
                st.caption(f"Looks like the training data: its distance score ({ood['score']:.2f}) is higher than that "
                           f"of {shown_percentile(ood['percentile'])} of the run's own validation images.")
        with image_col:
            heatmap = None
            if show_cam and number <= GRADCAM_UPLOADS:
                try:
                    with st.spinner("Computing Grad-CAM…"):
                        heatmap = gradcam(root(), run_id, data, picture, batch if models is not None else None,
                                          models)
                except Exception as error:  # an optional view: the prediction stands without it
                    st.warning(f"Grad-CAM failed: {type(error).__name__}: {error}", icon=":material/warning:")
            size = f"{picture.shape[1]}×{picture.shape[0]} px"
            # Shown shrunk, and the full-size picture let go before the next upload is decoded: Streamlit
            # would keep a 48-megapixel array whole (hundreds of MB) only for the browser to scale it down.
            picture = for_display(picture)
            if heatmap is not None:
                # The heatmap is in the picture's own pixels (gradcam maps it back), shrunk as the picture is.
                seen = ("; blue too outside the cell's box, which the models did not see"
                        if config.get("preprocess", "raw") != "raw" else "")
                st.image([picture, heatmap_overlay(picture, heatmap)], width=180,
                         caption=[size, f"Grad-CAM for {result['predicted']}, the fold models' mean class, on the "
                                        f"pixels where the models saw them (red: most influential, blue: least{seen})"])
            else:
                st.image(picture, width="stretch", caption=size)
with export.container():
    for line in unavailable_checks(answered):  # once, above every answer: none of them was checked
        st.warning(f"**Not checked**: {said(line)}.", icon=":material/warning:")
    st.download_button(
        "Answers (CSV)", answers_csv(hidden(answered)), file_name=f"{run_id}_answers.csv", mime="text/csv",
        icon=":material/download:",
        help="One row per image: the answer shown, each class's probability and every warning beside it "
             "(outside the training data, likely wrong, segmentation, known image); an unreadable file with its reason.")
    if warning := one_class_warning(answered, MIN_ADAPT_IMAGES):
        st.warning(warning + ("." if models is not None else ", or switch on Adapt to these uploads."),
                   icon=":material/warning:")
    if len(answered) > 1:  # many uploads: every answer at a glance, the cards below say why
        summary = pd.DataFrame([answer_row(entry) for entry in answered])
        said = [c for c in SUMMARY_COLUMNS  # a check that says nothing here (no cell segmented): no column
                if c in summary.columns and (summary[c].notna() & (summary[c] != "")).any()]
        summary = summary[said].rename(columns=SUMMARY_COLUMNS)
        formats = {}
        if "Probability" in summary.columns:  # absent when no upload could be read
            summary, formats = percent_columns(summary, ["Probability"])
        data_table(summary, column_config=formats)
