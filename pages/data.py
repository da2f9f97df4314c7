"""Data: pick or upload a dataset, see its classes and samples, and audit it."""

import re
from pathlib import Path

import numpy as np
import streamlit as st

from leukdash.config import PREPROCESS_MODES
from leukdash.errors import LeukdashError
from leukdash.reporting.plots import class_counts_bar
from leukdash.data.sources import KNOWN_CLASSES
from pages._session import VIEWER_NOTE, deployment, literal, root, routed, said, session_token, upload_mb
from pages._shared import (UPLOAD_SUFFIX, UPLOADS, audit, cell_preview, chosen_dataset, data_root_warnings,
                           dataset_picker, image, load_dataset_info, preprocessed_audit, synthetic_note)
from pages._tables import data_table

routed(__file__)

SAMPLES_PER_CLASS = 8
PREVIEW_PER_CLASS = 2
NO_SHORTCUT_CHECK = ("No shortcut check here (n/a): it needs at least two classes, each with readable images from "
                     "at least two groups, to score a classifier on images it did not fit.")


def _accuracy(score: float | None) -> str:
    """A shortcut check's accuracy, or n/a where the dataset could not be split for it."""
    return "n/a" if score is None else f"{score:.1%}"


def unpack_upload() -> None:
    """Unpack an uploaded zip, register it as a dataset of this session and select it."""
    from leukdash.data.dataset import Dataset
    from leukdash.service.uploads import extract_zip, remove_upload

    upload = st.session_state.get("zip_upload")
    if upload is None:
        return
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(upload.name).stem)[:40] or "upload"
    folder = None
    try:
        folder = extract_zip(upload.getvalue(), name=stem, session=session_token(),
                             limits=deployment().upload_limits())
        Dataset.from_folder(folder)  # fails here, with its reason, when there are no class folders
    except LeukdashError as error:
        if folder is not None:
            remove_upload(folder)  # unpacked but unusable: nothing of it is kept
        st.session_state["zip_error"] = f"{literal(upload.name)}: {said(str(error))}"
        return
    name = f"{stem}{UPLOAD_SUFFIX}"
    st.session_state[UPLOADS] = {**st.session_state.get(UPLOADS, {}), name: str(folder)}
    st.session_state["dataset"] = st.session_state["_kept_dataset"] = name
    st.session_state.pop("zip_error", None)


def class_like_folders(files: list[str]) -> list[str]:
    """The folders inside a class folder that are named like classes (``c/d/ALL``), from its files'
    paths (``b/c/d/ALL/1.png``, relative to the dataset): a sign of a wrapper folder too many."""
    found = set()
    for relative in files:
        inside = relative.split("/")[1:-1]  # the folders between the class folder and the file
        found.update("/".join(inside[:depth + 1]) for depth, part in enumerate(inside)
                     if part.upper() in KNOWN_CLASSES)
    return sorted(found)


def too_few_classes(info: dict) -> str | None:
    """A warning for a dataset with fewer than 2 classes of images: nothing can be trained on it."""
    present = [cls for cls, files in info["files"].items() if files]
    if len(present) >= 2:
        return None
    message = (f"Only {len(present)} class found ({', '.join(map(literal, present)) or 'none'}): the classes are "
               "the folders at the dataset's top (in a zip, inside its one top folder), and training or an audit "
               "needs at least 2.")
    nested = class_like_folders(info["files"][present[0]]) if present else []
    if nested:
        message += (f" {literal(present[0])} holds folders named like classes "
                    f"({', '.join(map(literal, nested[:5]))}): the zip probably has an extra wrapper folder; "
                    "zip the folder that holds the class folders instead.")
    return message


st.title("Data")
dataset = dataset_picker()
data_root_warnings()

limits = deployment()
if limits.viewer:
    st.sidebar.caption(VIEWER_NOTE.format(what="dataset uploads"))
else:
    zip_mb = upload_mb(limits.max_upload_mb)
    if zip_mb < limits.max_upload_mb:  # the setting promises more than Streamlit lets through: say what to raise
        st.sidebar.warning(f"max_upload_mb (LEUKDASH_MAX_UPLOAD_MB) is {limits.max_upload_mb} MB, above Streamlit's "
                           f"upload cap server.maxUploadSize ({zip_mb} MB): zips are limited to {zip_mb} MB; raise "
                           "maxUploadSize in .streamlit/config.toml to allow larger ones.", icon=":material/warning:")
    with st.sidebar.expander("Upload a dataset"):
        st.file_uploader("Zip of class folders", type=["zip"], key="zip_upload", on_change=unpack_upload,
                         max_upload_size=zip_mb,
                         help="One folder per class (ALL, AML, CLL, CML, HEALTHY or any names), images inside; "
                              "subfolders of a class folder are groups (e.g. patients) kept within one fold. "
                              f"Up to {zip_mb} MB, unpacking to at most {limits.max_unpacked_mb} MB; "
                              "only this browser session sees it.")
        if "zip_error" in st.session_state:
            st.error(st.session_state["zip_error"])

info = load_dataset_info(dataset)
if info is None:
    st.stop()
synthetic_note(info)

st.caption(f"{said(info['path'])} · layout: {info['kind']}")
if info["class_of_a_root"]:  # the folder is the server's: not shown
    st.warning(f"{literal(info['name'])} looks like a class of a dataset, not a dataset: the data folder that holds "
               "it holds class folders itself (ALL, HEALTHY...). Set LEUKDASH_DATA to the folder above that data "
               "folder, and the dataset is listed whole.", icon=":material/warning:")
if info["hidden"]:  # the folders themselves are the server's: not shown
    st.caption(f"{len(info['hidden'])} more folder(s) named {literal(info['name'])} in later data folders are not "
               "used: a name opens the first folder of that name.")
for warning in [too_few_classes(info), *info["warnings"]]:
    if warning:
        st.warning(said(warning), icon=":material/warning:")
counts = info["classes"]
audited = st.session_state.setdefault("audited", [])
# Only decoding tells an unreadable image file: until the audit has run, the header counts files.
try:
    unreadable = len(audit(dataset, root(), 5, info["fingerprint"])["skipped"]) if dataset in audited else None
except LeukdashError:
    unreadable = None  # the audit section below says why
cols = st.columns(4)
if unreadable is None:
    cols[0].metric("Image files", f"{info['n_images']:,}", help="Files with an image extension; the audit "
                   "below decodes them and tells how many are readable (runs skip the others).")
else:
    cols[0].metric("Readable images", f"{info['n_images'] - unreadable:,}",
                   help=f"{info['n_images']:,} image files, {unreadable} of them unreadable (skipped by runs).")
cols[1].metric("Classes", len(counts))
cols[2].metric("Smallest class", f"{min(counts.values())} images", help=literal(min(counts, key=counts.get)))
cols[3].metric("Files left out", len(info["ignored"]) + (unreadable or 0),
               help="Files in the folders that are not images"
                    + ("" if unreadable is None else ", and unreadable images"))

left, right = st.columns([2, 3], gap="large")
with left:
    st.subheader("Images per class")
    st.plotly_chart(class_counts_bar(counts), width="stretch", config={"displayModeBar": False})
    st.caption("Number of image files in each class folder. Each fold validates on every class and a group (a "
               "patient, a source image) stays in one fold, so a run gets at most as many folds as the class with "
               "the fewest groups has: asked for more, it runs fewer and says so (fewer than two: it is refused).")

with right:
    header, button = st.columns([3, 1], vertical_alignment="bottom")
    header.subheader("Samples")
    if button.button("Shuffle", icon=":material/shuffle:", width="stretch"):
        st.session_state["sample_seed"] = st.session_state.get("sample_seed", 0) + 1
    rng = np.random.default_rng(st.session_state.get("sample_seed", 0))
    for cls, files in info["files"].items():
        if not files:
            continue
        chosen = sorted(rng.choice(len(files), size=min(SAMPLES_PER_CLASS, len(files)), replace=False))
        thumbs = []
        for i in chosen:
            try:
                thumbs.append(image(info["path"], files[i], 96))
            except LeukdashError:
                continue  # an unreadable file is listed by the audit below
        st.text(f"{cls} · {counts[cls]} images")  # literally: a folder name is no Markdown
        st.image(thumbs, width=80)
    st.caption("Random images of each class, padded square and shown at 96 px.")

st.divider()
st.subheader("Cell preprocessing")
st.markdown("What a run with cell-level preprocessing sees: the white cell nearest the centre, segmented "
            "(outline in green), everything else blacked out, in the chosen size and colour mode. Not in the "
            "paper, which used the whole image (`raw`).")
mode = st.selectbox("Preprocessing", [m for m in PREPROCESS_MODES if m != "raw"], key="data_preprocess")
preview_rng = np.random.default_rng(st.session_state.get("sample_seed", 0))
for cls, files in info["files"].items():
    if not files:
        continue
    pictures, captions = [], []
    for i in sorted(preview_rng.choice(len(files), size=min(PREVIEW_PER_CLASS, len(files)), replace=False)):
        try:
            outlined, prepared, failure = cell_preview(info["path"], files[i], mode)
        except LeukdashError:
            continue
        pictures += [outlined, prepared]
        captions += [literal(files[i].rsplit("/", 1)[-1]), failure or mode]  # a caption is Markdown
    st.text(cls)
    st.image(pictures, width=120, caption=captions)
st.caption("Each pair: the original with the segmented cell outlined, then the preprocessed image. A caption "
           "names a segmentation failure (none found, touches the border, implausible area).")
counted = st.session_state.setdefault("segmentation_counted", [])
if (dataset, mode) not in counted:
    st.button("Count the failures over the whole dataset", icon=":material/content_cut:", key="data_count_failures",
              on_click=lambda: counted.append((chosen_dataset(), st.session_state["data_preprocess"])),
              help="Segments every image as a run in this mode would (`python -m leukdash audit DATASET "
                   "--preprocess MODE` on the command line), and runs the shortcut checks again on the result.")
else:
    try:
        with st.spinner(f"Segmenting every image as {mode}…"):
            prepared = preprocessed_audit(dataset, root(), mode, info["fingerprint"])
    except LeukdashError as error:
        st.error(f"Cannot segment this dataset: {said(str(error))}")
    else:
        kinds = ", ".join(f"{kind} {n}" for kind, n in prepared["failures"].items())
        cols = st.columns(3)
        cols[0].metric("Segmentation failures", f"{len(prepared['failed'])} of {prepared['n_images']}",
                       help=kinds or "every cell was found")
        cols[1].metric("Colour histogram accuracy", _accuracy(prepared['shortcut']['histogram_acc']),
                       help="The shortcut check on the preprocessed images: what the cells' colours alone tell")
        cols[2].metric("Background-only accuracy", _accuracy(prepared['shortcut']['background_acc']),
                       help=f"Chance: {prepared['shortcut']['chance']:.1%}")
        if prepared["failed"]:
            data_table([{"File": entry["path"], "Failure": entry["failure"]} for entry in prepared["failed"]])
        st.caption("A run in this mode trains on a failed image as found (the whole image where no cell was) and "
                   "warns of them; the shortcut checks here are those of the audit below, on the preprocessed images.")

st.divider()
st.subheader("Audit")
st.markdown(
    "Unreadable files, exact and near duplicates (which leak between folds), and a **shortcut check**: "
    "how well a random forest names the class from the colour histogram of the whole image, and from "
    "the background colour alone. A background score well above chance means the classes were "
    "photographed differently, and any model can learn that instead of the cells."
)
if dataset not in audited:
    st.button("Run the audit", icon=":material/fact_check:", type="primary",
              on_click=lambda: audited.append(chosen_dataset()))
else:
    try:
        with st.spinner("Auditing: decoding every image, hashing, two cross-validated shortcut checks…"):
            report = audit(dataset, root(), 5, info["fingerprint"])
    except LeukdashError as error:
        st.error(f"The audit failed: {said(str(error))}")
        st.stop()
    duplicates = report["duplicates"]
    cols = st.columns(5)
    cols[0].metric("Images used", f"{report['n_images']:,}")
    cols[1].metric("Skipped files", len(report["skipped"]))
    common = next(iter(report["sizes"]), "–")
    cols[2].metric("Most common size", common.replace("x", "×"), help="Width×height in pixels: " + ", ".join(
        f"{size}: {n} images" for size, n in report["sizes"].items()))
    cols[3].metric("Exact duplicate groups", len(duplicates["exact"]))
    cols[4].metric("Near-duplicate pairs", len(duplicates["near"]))

    shortcut = report["shortcut"]
    cols = st.columns(3)
    cols[0].metric("Colour histogram accuracy", _accuracy(shortcut['histogram_acc']))
    cols[1].metric("Background-only accuracy", _accuracy(shortcut['background_acc']))
    cols[2].metric("Chance (majority class)", f"{shortcut['chance']:.1%}")
    margin = None if shortcut["background_acc"] is None else shortcut["background_acc"] - shortcut["chance"]
    if margin is None:
        st.info(NO_SHORTCUT_CHECK, icon=":material/info:")
    elif margin > 0.15:
        st.warning(f"The background alone names the class {margin:.0%} above chance: the classes differ in "
                   "how they were stained or photographed, and a model can score on that.", icon=":material/warning:")
    else:
        st.success("The background colour carries little of the class: no acquisition shortcut found.",
                   icon=":material/check_circle:")

    if report["skipped"]:
        st.markdown("**Skipped files**")
        data_table(report["skipped"])
    if report.get("no_detail"):  # an audit cached before the list existed has none
        st.warning(f"{len(report['no_detail'])} image(s) carry no detail (blank or one colour): no cell to learn "
                   "from, and they skew the out-of-distribution check.", icon=":material/warning:")
        data_table([{"File": path} for path in report["no_detail"]])
    if duplicates["exact"] or duplicates["near"]:
        st.markdown("**Duplicates** (pairs across classes are label conflicts)")
        rows = [{"Kind": "exact", "Files": ", ".join(d["files"]), "Classes": ", ".join(d["classes"]),
                 "Hash distance (bits)": 0, "Pixel score": 1.0} for d in duplicates["exact"]]
        rows += [{"Kind": "near", "Files": ", ".join(d["files"]), "Classes": ", ".join(d["classes"]),
                  "Hash distance (bits)": d["distance"], "Pixel score": d["pixel_score"]} for d in duplicates["near"]]
        data_table(rows)
    if duplicates["refused"]:
        st.warning(f"{len(duplicates['refused'])} duplicate link(s) were not merged: each would have made one "
                   f"group of more than {duplicates['merge_limit']} images.", icon=":material/warning:")
    st.caption("Near duplicates: perceptual-hash candidates confirmed on the pixels (fine-detail correlation "
               f"of at least {duplicates['pixel_match']}; {duplicates['rejected']['n']} candidates rejected, the best scoring "
               f"{duplicates['rejected']['best_pixel_score']:.2f}). Grouped folds this dataset allows: "
               f"{report['max_folds']}. Shortcut accuracies are out-of-fold over a grouped 5-fold split, "
               "on 64 px copies.")
