"""What the pages share: the dataset picker, and the engine calls cached at this edge (plain
dicts, arrays and strings only, so a module reload never leaves a cached object of a stale class).

Every cached function takes ``root`` (the artifacts folder) so that two stores, as in tests,
never share entries.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import streamlit as st

from leukdash.data.dataset import SYNTHETIC_LABEL
from leukdash.errors import LeukdashError, RunError
from pages._session import VIEWER_NOTE, deployment, kept, literal, mark_session_seen, root, said, session_token

BUILTIN = "synthetic"
UPLOADS = "uploaded_datasets"  # session: {display name: folder} of zips unpacked on the Data page
GONE_UPLOADS = "_gone_uploads"  # session: uploads found removed (by the quota), not yet said


# --------------------------------------------------------------------------- datasets


@st.cache_data(ttl=30, show_spinner=False)
def discovered(root: str, data_env: str) -> dict[str, str | None]:
    """Dataset names and folders found under the data roots (None: built-in, not drawn yet)."""
    from leukdash.data.discovery import discover_datasets

    return {name: (str(path) if path else None) for name, path in discover_datasets().items()}


UPLOAD_SUFFIX = " (upload)"  # how the picker names an upload of this session


def dataset_options() -> dict[str, str]:
    """Display name -> the ``dataset`` value of a run config (a name, or the folder of an upload)."""
    found = discovered(root(), os.environ.get("LEUKDASH_DATA", ""))
    options = {name: name for name in found}
    uploads = st.session_state.setdefault(UPLOADS, {})
    for name in [name for name, folder in uploads.items() if not os.path.isdir(folder)]:
        # Removed to make room for newer uploads (the server's quota): said once, then not offered.
        del uploads[name]
        st.session_state.setdefault(GONE_UPLOADS, []).append(name)
    options.update(uploads)
    return options


def dataset_picker() -> str:
    """The sidebar's dataset choice, shared by every page that uses one; returns the config value."""
    mark_session_seen()
    options = dataset_options()
    for name in st.session_state.pop(GONE_UPLOADS, []):
        st.sidebar.warning(f"Your upload {literal(name)} was removed to make room for newer uploads on this server "
                           "(runs trained on it are kept): upload it again on the Data page to use it.",
                           icon=":material/warning:")
    names = list(options)
    default = next((n for n in names if n != BUILTIN), names[0]) if len(names) > 1 else names[0]
    label = lambda n: f"{n} (built-in demo)" if n == BUILTIN else n  # noqa: E731 (the widget's format_func)
    linked = st.query_params.get("dataset")
    if linked in names and label(linked) != linked:
        # Streamlit writes the option's label to the URL and takes only that (from the address the page
        # was opened with): a link naming the dataset itself is chosen through the session state.
        st.session_state["dataset"] = linked
        st.query_params["dataset"] = linked = label(linked)
    if linked is not None and linked not in map(label, names):  # a link from another server, or an upload gone
        st.query_params.pop("dataset")
        where = ("uploads belong to the browser session that made them, and a reload starts a new one: upload it "
                 "again on the Data page" if linked.endswith(UPLOAD_SUFFIX) else "this server does not have it")
        st.sidebar.warning(f"The link names the dataset {literal(linked)}: {where}; pick one below.",
                           icon=":material/warning:")
    name = kept(st.sidebar.selectbox, "dataset", default, "Dataset", options=names, bind=True,
                format_func=label,
                help="Built-in synthetic demo data, folders found under $LEUKDASH_DATA or ./data, "
                     "or a zip of class folders uploaded on the Data page.")
    return options[name]


def data_root_warnings() -> None:
    """What `datasets` notes of $LEUKDASH_DATA (an entry that is not a folder, a data folder that is
    a dataset itself), one warning each, so that a wrong setting is not read as no data. A folder
    is named by its last part: the rest of its path is the server's."""
    from leukdash.data.discovery import data_root_notes

    for note in data_root_notes(lambda folder: f"…/{literal(Path(folder).name)}"):
        st.warning(f"{note[0].upper()}{note[1:]}.", icon=":material/warning:")


def chosen_dataset() -> str | None:
    """The config value of the dataset the picker names now, for a button's callback. A callback
    runs before the page is drawn again, so a click on a button still drawn for the previous choice
    (the page was being redrawn after another dataset was picked or uploaded) acts on the dataset
    the picker shows, not on the one the button was drawn for."""
    return dataset_options().get(st.session_state.get("dataset"))


@st.cache_data(ttl=60, show_spinner=False)
def dataset_info(dataset: str, root: str) -> dict:
    """describe() of a dataset, plus its files per class (relative paths), ignored files,
    warnings (groups.csv rows that match nothing, the same bytes under two classes) and the
    folders of the same name it hides."""
    from leukdash.data.discovery import hidden_datasets, open_dataset, roots_that_are_datasets

    ds = open_dataset(dataset)
    files: dict[str, list[str]] = {c: [] for c in ds.classes}
    for item in ds.items:
        files[ds.classes[item.label]].append(ds.relative(item.path))
    return {**ds.describe(), "fingerprint": ds.fingerprint, "class_names": list(ds.classes), "files": files,
            "ignored": [s.to_dict(ds.root) for s in ds.ignored], "warnings": ds.warnings(),
            "hidden": [str(path) for path in hidden_datasets().get(dataset, [])],
            "class_of_a_root": ds.root.parent in roots_that_are_datasets()}


def load_dataset_info(dataset: str) -> dict | None:
    """dataset_info with a spinner (the built-in set is drawn on first use); None after an error shown."""
    first_builtin = dataset == BUILTIN and not discovered(root(), os.environ.get("LEUKDASH_DATA", ""))[BUILTIN]
    message = ("Drawing the built-in synthetic dataset (once; up to a minute)…"
               if first_builtin else "Reading the dataset…")
    try:
        with st.spinner(message):
            info = dataset_info(dataset, root())
    except LeukdashError as error:
        st.error(f"Cannot open dataset {literal(repr(dataset))}: {said(str(error))}")
        return None
    if first_builtin:
        discovered.clear()
    return info


def image(folder: str, relative: str, size: int | None = None):
    """One image of a dataset as RGB uint8, padded square and resized when ``size`` is given."""
    return _decoded(folder, relative, size, _version(_file(folder, relative)))


def _file(folder: str, relative: str) -> str:
    """A dataset file by its recorded name (one Unicode form), as it is named on disk."""
    from leukdash.data.sources import on_disk

    return str(on_disk(Path(folder), relative))


def _version(path: str) -> tuple | None:
    """What tells a file replaced under its name: its modification time and size (None: not there,
    decoding says why)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size


@st.cache_data(max_entries=256, show_spinner=False)
def _decoded(folder: str, relative: str, size: int | None, version: tuple | None):
    """``image``'s cache, keyed by the file's version too, so a file replaced is read again."""
    from leukdash.data.squares import square_resize
    from leukdash.data.decode import decode_image

    decoded = decode_image(_file(folder, relative))
    return square_resize(decoded, size) if size else decoded


def cell_preview(folder: str, relative: str, mode: str):
    """One image of a dataset segmented in a cell-level mode (``overlay``): its outlined original,
    the preprocessed image (both small) and the segmentation failure."""
    return _cell_preview(folder, relative, mode, _version(_file(folder, relative)))


@st.cache_data(max_entries=256, show_spinner=False)
def _cell_preview(folder: str, relative: str, mode: str, version: tuple | None):
    """``cell_preview``'s cache: only the small pictures are kept, not the decoded image."""
    from leukdash.data.decode import decode_image
    from leukdash.data.preprocess import overlay

    return overlay(decode_image(_file(folder, relative)), mode)


@st.cache_data(max_entries=256, show_spinner=False)
def _pixel_digest(folder: str, relative: str, version: tuple | None) -> str:
    """The digest of a dataset file's decoded pixels (``reference.pixel_digest``), keyed like ``_decoded``."""
    from leukdash.data.decode import decode_image
    from leukdash.evaluation.reference import pixel_digest

    return pixel_digest(decode_image(_file(folder, relative)))


def run_thumbnails(root: str, run_id: str, folder: str, files: list[str], size: int = 96) -> list:
    """Images of a run's dataset as small squares, as the run read them: from the dataset's folder
    where a file's pixels are those the run read (the digest kept beside the run for the
    known-image check), else the copy kept there (32 px: a built-in set not drawn yet, a dataset
    moved or changed since); None for one that cannot be shown as it was."""
    kept_copies = _reference_images(root, run_id)
    pictures = []
    for relative in files:
        copy, digest = kept_copies.get(relative, (None, None))
        try:
            same = digest is not None and _pixel_digest(folder, relative, _version(_file(folder, relative))) \
                == digest
        except LeukdashError:
            same = False
        pictures.append(image(folder, relative, size) if same else copy)
    return pictures


@st.cache_data(max_entries=4, show_spinner=False)
def _reference_images(root: str, run_id: str) -> dict:
    """Each image of the run as the run read it: its relative path -> (copy at 32 px, pixel digest)."""
    from leukdash.evaluation.reference import known_reference

    try:
        reference = known_reference(run_id)
    except (LeukdashError, OSError):
        return {}
    return {str(name): (picture, str(digest)) for name, picture, digest
            in zip(reference["relative"], reference["images"], reference["digests"])}


def synthetic_note(info: dict) -> None:
    """The label every view of synthetic data carries."""
    if info.get("synthetic"):
        st.info(f"**{SYNTHETIC_LABEL.capitalize()}.** Drawn blood-smear fields that mimic each class's "
                "morphology; use them to try the tool, never to judge a method on patients.",
                icon=":material/science:")


# The audits are keyed by the dataset's fingerprint (dataset_info's): images added, removed or
# changed since make a new audit, not the old one shown beside the new counts.
@st.cache_data(max_entries=16, show_spinner=False)
def audit(dataset: str, root: str, folds: int, fingerprint: str) -> dict:
    from leukdash.data.audit import audit_dataset
    from leukdash.data.discovery import open_dataset

    return audit_dataset(open_dataset(dataset), folds=folds)


@st.cache_data(max_entries=8, show_spinner=False)
def preprocessed_audit(dataset: str, root: str, mode: str, fingerprint: str) -> dict:
    from leukdash.data.audit import audit_preprocessed
    from leukdash.data.discovery import open_dataset

    return audit_preprocessed(open_dataset(dataset), mode)


# --------------------------------------------------------------------------- runs


@st.cache_data(ttl=3, show_spinner=False)
def store_survey(root: str) -> tuple[list[dict], dict[str, str]]:
    """The store's runs and the run folders its listing skips, from one pass (see RunStore.survey):
    a page that shows both reads every record once."""
    from leukdash.engine.store import RunStore

    return RunStore().survey()


def runs(root: str) -> list[dict]:
    """Every run in the store, newest first (see RunStore.list_runs)."""
    return store_survey(root)[0]


def unreadable_runs(root: str) -> dict[str, str]:
    """Run folders the listing skips, each with why (see RunStore.unreadable_runs)."""
    return store_survey(root)[1]


def why_unfinished(run_id: str) -> str:
    """One line for a run of the store that is not finished, for Markdown: what is missing (a fold, an
    ensemble's member) and what computes it, as the CLI says it (see runner.unfinished_error)."""
    from leukdash.engine.runner import unfinished_error
    from leukdash.engine.store import RunStore

    return said(str(unfinished_error(run_id, RunStore())))


def visible_runs() -> list[dict]:
    """The runs this session may see: all but those trained on another session's upload."""
    return [entry for entry in runs(root()) if visible_dataset(entry["meta"].get("dataset", {}).get("path"))]


def visible_dataset(dataset: str | None) -> bool:
    """Whether this session may see what was computed on ``dataset`` (a run's folder, or a config's
    dataset value, perhaps a comma list): anything but another session's upload."""
    from leukdash.engine.runner import upload_sessions

    return set(upload_sessions(dataset or "")) <= {session_token()}


def finished_runs() -> list[dict]:
    return [entry for entry in visible_runs() if entry["status"] == "complete"]


@st.cache_data(max_entries=128, show_spinner=False)
def run_result(root: str, run_id: str) -> dict:
    """A finished run's result (immutable once its summary is written, so cached for good);
    RunError, never cached, for a run that is not whole."""
    from leukdash.engine.runner import finished_result

    return finished_result(run_id)


def results(run_ids) -> list[dict]:
    """The results of finished runs. One that is no longer whole (a fold or its model lost or
    damaged since the run list was read, up to its few seconds ago) is left out, with a caption."""
    found = []
    for run_id in run_ids:
        try:
            found.append(run_result(root(), run_id))
        except RunError as error:
            st.caption(f"Left out: {said(str(error))}")
    return found


@st.cache_data(ttl=120, show_spinner=False)
def resolve(config_json: str, root: str) -> str:
    """The run id of a config (validates it, opens its dataset, checks the folds are possible)."""
    from leukdash.config import RunConfig
    from leukdash.engine.runner import resolve as resolve_run

    return resolve_run(RunConfig.from_dict(json.loads(config_json))).run_id


@st.cache_data(max_entries=32, show_spinner=False)
def comparison(root: str, run_ids: tuple[str, ...]) -> dict:
    from leukdash.evaluation.compare import compare_runs

    return compare_runs(list(run_ids))


def run_option_labels(entries: list[dict]) -> dict[str, str]:
    """Run id -> 'k-NN on pixels · cell-keep-gray · 0be321 · 81.7%' for list_runs entries: named
    by what differs among them (see leukdash.evaluation.labels), with the validation accuracy."""
    from leukdash.evaluation.labels import run_labels

    labels = {}
    for entry, label in zip(entries, run_labels(entries)):
        acc = ((entry.get("summary") or {}).get("val_acc") or {}).get("mean")
        labels[entry["run_id"]] = label + (f" · {acc:.1%}" if acc is not None else "")
    return labels


def no_runs_yet(what: str) -> None:
    if deployment().viewer:
        st.info(f"No finished runs yet: {what}. {VIEWER_NOTE.format(what='training and uploads')}",
                icon=":material/hourglass_empty:")
        return
    st.info(f"No finished runs yet: {what}. Launch one on the Experiments page; a tiny run "
            "(image size 32, 2 folds, Naive Bayes) takes seconds.", icon=":material/hourglass_empty:")
    st.page_link("pages/experiments.py", label="Go to Experiments", icon=":material/arrow_forward:")


@st.cache_data(ttl=3, show_spinner=False)
def external_results(root: str, run_id: str, adapted: bool = False) -> list[dict]:
    """The external tests stored beside a run (see leukdash.evaluation.evaluate): of its models as
    trained, or with ``adapted``, of its models adapted to each test set."""
    from leukdash.evaluation.evaluate import stored_evaluations

    return stored_evaluations(run_id, adapted=adapted)


@st.cache_data(max_entries=16, show_spinner="Reading the run's out-of-fold answers…")
def out_of_fold_rows_of(root: str, run_id: str) -> list[dict]:
    """A finished run's out-of-fold answer for each image (leukdash.evaluation.answer_table);
    immutable once the run is finished, so cached by run."""
    from leukdash.evaluation.answer_table import out_of_fold_rows

    return out_of_fold_rows(run_id)


@st.cache_data(ttl=60, show_spinner=False)
def transfer_figures(root: str, run_ids: tuple[str, ...]) -> dict:
    """The runs' transfer (leukdash.evaluation.transfer.transfer_overview: each run's figure, from a
    leave-one-dataset-out run or stored external tests, what it leaves out, the best run on real images by it,
    the test sets the external figures are compared on) and Predict's default: that best run, else the best
    validated one."""
    from leukdash.evaluation.transfer import best_validated, transfer_overview

    overview = transfer_overview(list(run_ids))
    return {**overview, "default": overview["best"] or best_validated(list(run_ids))}


# --------------------------------------------------------------------------- prediction


def keeping(call, *args, **kwargs) -> tuple:
    """``call(*args, **kwargs)``'s result and the lines of what it computed but could not store (a full disk, a
    quota, ``ulimit -f``: :func:`leukdash.atomic.unkept_lines`), for :func:`not_stored_warnings`."""
    from leukdash.atomic import unkept_lines

    with unkept_lines() as lines:
        return call(*args, **kwargs), lines


def not_stored_warnings(lines: list[str], shown: set[str] | None = None) -> None:
    """One warning for each line of :func:`keeping` not yet in ``shown`` (several answers, one cache not stored)."""
    shown = set() if shown is None else shown
    for line in dict.fromkeys(lines):
        if line not in shown:
            shown.add(line)
            st.warning(said(line), icon=":material/save:")


@st.cache_data(max_entries=64, show_spinner=False)
def predict(root: str, run_id: str, data: bytes, _picture, batch: str | None = None, _lab=None) -> dict:
    """Fold-ensemble prediction of one uploaded file, ``data``, decoded as ``_picture`` (the page
    decodes it once: a second copy of a 48-megapixel upload is 144 MB); with ``batch`` (a name of the
    uploads it came with), its support check compares it as one of their lab's images, ``_lab``
    (:func:`uploads_lab`). ``not_stored``: :func:`keeping`'s lines, where there are."""
    return _one_answer(run_id, [_picture], lab=_lab if batch else None)


def _one_answer(run_id: str, pictures: list, **options) -> dict:
    """:func:`leukdash.evaluation.predict.predict_images`' answer for one picture, with ``not_stored``
    (:func:`keeping`'s lines) where there are."""
    from leukdash.evaluation.predict import predict_images

    answers, lines = keeping(predict_images, run_id, pictures, **options)
    return {**answers[0], **({"not_stored": lines} if lines else {})}


@st.cache_resource(max_entries=2, show_spinner=False)
def uploads_lab(root: str, run_id: str, batch: str, _uploads: tuple[bytes, ...]):
    """The uploads' descriptors where they look like another lab's (:func:`leukdash.evaluation.predict.folder_lab`),
    else None; ``batch`` names the uploads (a digest of them)."""
    from leukdash.evaluation.predict import folder_lab

    return folder_lab(run_id, list(_uploads))


@st.cache_resource(max_entries=2, show_spinner=False)
def adapted_models(root: str, run_id: str, batch: str, _uploads: tuple[bytes, ...]):
    """The run's models adapted to a batch of uploads taken for one lab's images; ``batch`` names
    the uploads (a digest of them: the uploads themselves are not hashed on every rerun)."""
    from leukdash.evaluation.predict import adapted_models as engine_adapted_models

    return engine_adapted_models(run_id, list(_uploads))


@st.cache_data(max_entries=256, show_spinner=False)
def predict_adapted(root: str, run_id: str, batch: str, data: bytes, _picture, _models) -> dict:
    """:func:`predict` of one upload with the models adapted to its batch (:func:`adapted_models`)."""
    return _one_answer(run_id, [_picture], models=_models)


# The uploads the Predict page draws a Grad-CAM for, in order: as many as :func:`gradcam` keeps. The page draws
# the maps in order, so with more drawn than kept each rerun evicted every map just before it was drawn again;
# and a map of a large upload is up to 1280 px (about 5 MB), so keeping one per upload would not bound memory.
GRADCAM_UPLOADS = 32


@st.cache_data(max_entries=GRADCAM_UPLOADS, show_spinner=False)
def gradcam(root: str, run_id: str, data: bytes, _picture, batch: str | None = None, _models=None):
    """Grad-CAM of one upload, ``data`` decoded as ``_picture``, at the size the page shows it
    (:func:`~leukdash.reporting.plots.for_display`: a full-size map of a large upload is kept for nothing);
    with ``batch`` (:func:`adapted_models`' name of the uploads), of the models adapted to them, ``_models``.
    The maps of the :data:`GRADCAM_UPLOADS` uploads the page draws them for are kept."""
    from leukdash.evaluation.gradcam import gradcam as engine_gradcam
    from leukdash.reporting.plots import for_display

    return for_display(engine_gradcam(run_id, _picture, models=_models if batch else None))
