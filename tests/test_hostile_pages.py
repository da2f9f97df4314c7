"""Hostile input on the dashboard's pages: a damaged report, odd
digits in the number fields, names written as Markdown, a zip with a wrapper folder too many, an
unreadable image on Augmentation, server paths in dataset errors, and a chosen run that left the
store. Driven headless with AppTest on a few tiny images."""

from __future__ import annotations

import io
import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from leukdash.data.preprocess import describe_mode
from test_app import APP, TIMEOUT, open_page, shown

SHIPPED_RUNS = APP.parent / "artifacts" / "runs"


def png(seed: int, size: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def write_classes(folder: Path, classes=("ALL", "HEALTHY"), per_class: int = 3) -> Path:
    for index, cls in enumerate(classes):
        (folder / cls).mkdir(parents=True)
        for i in range(per_class):
            (folder / cls / f"{i}.png").write_bytes(png(10 * index + i))
    return folder


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    """An empty data root found through LEUKDASH_DATA (no real dataset is read)."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("LEUKDASH_DATA", str(root))
    return root


def shipped_runs(store: Path, *models: str) -> list[str]:
    """Copies of the shipped demo runs of these models in the store; their run ids."""
    copied = []
    for model in models:
        run = next(SHIPPED_RUNS.glob(f"{model}-*"))
        shutil.copytree(run, store / "runs" / run.name)
        copied.append(run.name)
    return copied


def app(page: str) -> AppTest:
    return open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(timeout=TIMEOUT), page)


# ---------------------------------------------------------------- Report


def quick_report(store: Path, text: str | bytes) -> Path:
    """A --quick report in the store (newer than docs/report, so the page shows it)."""
    folder = store / "report-quick"
    folder.mkdir()
    (folder / "REPORT.md").write_bytes(text.encode() if isinstance(text, str) else text)
    return folder


def test_a_report_that_is_not_utf8_is_shown_with_replacement_characters(data_root, isolated_artifacts):
    quick_report(isolated_artifacts, b"# R\n\nM\xe9thode\n")
    at = app("report")
    assert "M\ufffdthode" in " ".join(m.value for m in at.markdown)
    [warning] = at.warning
    assert warning.value == "REPORT.md is not UTF-8 text: the characters that cannot be decoded are shown as \ufffd."


def test_report_figures_outside_its_folder_or_damaged_get_a_caption_and_the_rest_is_shown(
        data_root, isolated_artifacts, tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(png(1))
    folder = quick_report(isolated_artifacts, f"# R\n\n![good](good.png)\n\n![bad](bad.png)\n\n![abs]({outside})\n\n"
                                              "![up](../../outside.png)\n\n![gone](gone.png)\n\nThe end.\n")
    (folder / "good.png").write_bytes(png(2))
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (isolated_artifacts.parent / "outside.png").write_bytes(png(3))  # what ../../ would reach
    at = app("report")
    assert len(at.get("image")) == 1  # the good figure alone: nothing from outside the folder
    captions = [c.value for c in at.caption][1:]  # the first says where the report is
    assert captions == ["Figure bad.png cannot be shown: the file is damaged or not an image.",
                        *["Figure outside.png is not shown: it is outside the report's folder."] * 2,
                        "Figure gone.png is missing from the report's folder."]
    assert "The end." in at.markdown[-1].value


# ---------------------------------------------------------------- Experiments


def test_odd_digits_in_the_number_fields_give_the_pages_own_line(data_root):
    write_classes(data_root / "tiny")
    at = app("experiments")
    at.multiselect(key="exp_models").set_value(["CNN (paper)", "k-NN"]).run(timeout=TIMEOUT)
    for key, good, bad, line in [
            ("exp_seeds", "0", "²", "Seeds: '²' is not a whole number from 0 to 2147483647"),
            ("exp_factors", "8", "9" * 5000,
             "Images per original: '999999999999'… (5000 characters) is not a whole number from 2 to 16"),
            ("exp_epochs", "25", "1, ²", "Epochs: '²' is not a whole number from 1 to 200"),
            ("exp_ks", "3", "7" * 4400, "k: '777777777777'… (4400 characters) is not a whole number from 1 to 25")]:
        at.text_input(key=key).set_value(bad).run(timeout=TIMEOUT)
        assert not at.exception, key
        assert [e.value for e in at.error] == [line]
        assert at.button(key="launch").disabled
        at.text_input(key=key).set_value(good)


# ---------------------------------------------------------------- names and zips on Data, Predict


def data_page(data_root: Path) -> AppTest:
    """The Data page on a small dataset (not the built-in one, which it would draw first: 10 s)."""
    import streamlit as st

    write_classes(data_root / "tiny")
    st.cache_data.clear()  # the dataset list an earlier page cached (for 60 s) does not hold it yet
    return app("data")


def upload_zip(at: AppTest, members: dict[str, bytes]) -> AppTest:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    at.sidebar.file_uploader(key="zip_upload").set_value(("cells.zip", archive.getvalue(), "application/zip"))
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_class_names_are_shown_as_written_on_the_data_page(data_root):
    classes = ("**ALL**", "![x](http:x) [l](#y)")
    at = upload_zip(data_page(data_root), {f"cells/{cls}/{i}.png": png(i + 5 * n) for n, cls in enumerate(classes)
                                  for i in range(2)})
    in_order = sorted(classes)  # neither is a known class name: alphabetical
    assert [t.value for t in at.text] == [f"{cls} · 2 images" for cls in in_order] + in_order
    assert not [m.value for m in at.markdown if "**ALL**" in m.value or "](" in m.value]
    assert not at.warning


def test_a_zip_with_a_wrapper_folder_too_many_is_warned_on_the_data_page(data_root):
    wrapped = {f"a/b/c/{cls}/{i}.png": png(i) for cls in ("ALL", "HEALTHY") for i in range(2)}
    at = upload_zip(data_page(data_root), wrapped)
    [warning] = at.warning
    assert re.sub(r"\\(.)", r"\1", warning.value) == (  # as shown: names in it are escaped Markdown
        "Only 1 class found (b): the classes are the folders at the dataset's top (in a zip, inside its one top "
        "folder), and training or an audit needs at least 2. b holds folders named like classes (c/ALL, "
        "c/HEALTHY): the zip probably has an extra wrapper folder; zip the folder that holds the class folders "
        "instead.")
    at = upload_zip(at, {f"one/ALL/{i}.png": png(i) for i in range(2)})
    [warning] = at.warning
    assert warning.value.startswith("Only 1 class found \\(ALL\\)\\: ") and "wrapper" not in warning.value


def test_an_upload_name_is_shown_as_written_on_the_predict_page(data_root, isolated_artifacts):
    shipped_runs(isolated_artifacts, "nb")
    at = app("predict")
    name = "**b** [l](http://x) ![](http://x).png"
    at.file_uploader(key="predict_upload").set_value([(name, png(0, 40), "image/png")]).run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    assert name in [t.value for t in at.text]
    assert any(m.value.startswith("Predicted:") for m in at.markdown)
    assert not [m.value for m in at.markdown if "http://x" in m.value]


def test_predict_says_when_an_upload_holds_several_pictures(data_root, isolated_artifacts):
    shipped_runs(isolated_artifacts, "nb")
    pages = [Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)) for i in range(3)]
    tiff = io.BytesIO()
    pages[0].save(tiff, "TIFF", save_all=True, append_images=pages[1:])
    at = app("predict")
    at.file_uploader(key="predict_upload").set_value([("pages.tif", tiff.getvalue(), "image/tiff"),
                                                     ("one.png", png(0, 40), "image/png")]).run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    assert len([m for m in at.markdown if m.value.startswith("Predicted:")]) == 2
    notes = [c.value for c in at.caption if c.value.startswith("Note:")]
    assert notes == ["Note: the file holds 3 pictures (pages or frames): only the first was read."], notes


def test_predict_gives_a_bombs_size_and_the_type_advice_only_for_a_wrong_type(data_root, isolated_artifacts):
    """A decompression bomb, refused by Pillow before our pixel limit, is refused with its size and the limit like
    any image too large; only a file whose type is wrong is told which types to upload instead."""
    from tests.test_hostile import _png_header_only

    shipped_runs(isolated_artifacts, "nb")
    at = app("predict")
    at.file_uploader(key="predict_upload").set_value([("bomb.png", _png_header_only(20000), "image/png"),
                                                     ("notes.png", b"not an image", "image/png")])
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    assert [shown(e.value) for e in at.error] == [
        "Cannot read bomb.png: image too large: 20000x20000 pixels exceeds the limit of 50,000,000.",
        "Cannot read notes.png: not an image: the file's content is not a known image format. Upload a .jpg, .jpeg, "
        ".png, .bmp, .tif, .tiff, .webp or .jp2 image."]


def test_names_inside_error_lines_are_escaped_markdown(data_root, isolated_artifacts):
    name = "[l](http://x) ![](http://x) **b**"
    shipped_runs(isolated_artifacts, "nb")
    at = app("predict")
    at.file_uploader(key="predict_upload").set_value([(f"{name}.png", b"not an image", "image/png")]).run(timeout=TIMEOUT)
    [error] = at.error
    assert error.value.startswith(
        "Cannot read \\[l\\]\\(http\\://x\\) \\!\\[\\]\\(http\\://x\\) \\*\\*b\\*\\*\\.png: "), error.value
    at = data_page(data_root)
    at.sidebar.file_uploader(key="zip_upload").set_value((f"{name}.zip", b"not a zip", "application/zip"))
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error if "not a zip archive" in e.value] == [
        "\\[l\\]\\(http\\://x\\) \\!\\[\\]\\(http\\://x\\) \\*\\*b\\*\\*\\.zip: the uploaded file is not a zip archive"]


# ---------------------------------------------------------------- Predict, Augmentation, paths


def test_predict_says_when_the_chosen_run_has_left_the_store(data_root, isolated_artifacts):
    import streamlit as st

    from leukdash.evaluation.predict import warmed_up
    from pages._session import literal

    nb, knn = shipped_runs(isolated_artifacts, "nb", "knn")
    at = app("predict")
    at.selectbox(key="predict_run").set_value(knn).run(timeout=TIMEOUT)
    label = at.selectbox(key="predict_run").format_func(knn)
    assert not at.warning
    deadline = time.monotonic() + 60
    while not warmed_up(knn) and time.monotonic() < deadline:  # nothing of the run read after it is gone
        time.sleep(0.2)
    shutil.rmtree(isolated_artifacts / "runs" / knn)
    st.cache_data.clear()  # the run list's 3 s cache, expired
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="predict_run").value == nb
    [warning] = at.warning
    assert warning.value.startswith(f"The run you chose, {literal(label)} ({knn}), is no longer in the store")
    shown_instead = literal(at.selectbox(key="predict_run").format_func(nb))
    assert warning.value.endswith(f"the answers below come from {shown_instead}.")


def test_an_unreadable_image_on_the_augmentation_page_is_one_line(data_root):
    folder = write_classes(data_root / "onebad")
    (folder / "ALL" / "0.png").write_bytes(b"")
    at = app("augmentation")
    assert [shown(e.value) for e in at.error] == [
        "Image 1 of ALL (ALL/0.png) cannot be read: empty file. Pick another image."]
    assert at.button[0].label == "Paper settings" and not at.get("image")
    at.number_input(key="aug_image").set_value(2).run(timeout=TIMEOUT)
    assert not at.exception and not at.error
    assert len(at.get("image")[0].proto.imgs) == 9  # the original and its 8 copies



def test_the_smallest_blur_the_augmentation_page_offers_is_one_a_run_takes(data_root):
    """The blur slider's first step is a blur that acts, not 0.1 px (every sigma skipped), which runs refuse."""
    from leukdash.config import AugmentConfig

    write_classes(data_root / "tiny")
    at = app("augmentation")
    at.toggle(key="aug_on_blur").set_value(True).run(timeout=TIMEOUT)
    at.slider(key="aug_blur").set_value(at.slider(key="aug_blur").min).run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    AugmentConfig.from_dict(at.session_state["augment"]).validate()
    assert at.session_state["augment"]["blur"] == pytest.approx(0.2)


def test_the_augmentation_pages_settings_are_the_command_lines_run(data_root):
    """Stain jitter 35% and blur 7/10 px on the page are the 0.35 and 0.7 of the command line, not
    0.35000000000000003 and 0.7000000000000001: the same run id, so the run is found, not run twice."""
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import resolve

    folder = write_classes(data_root / "tiny")
    at = app("augmentation")
    at.toggle(key="aug_on_blur").set_value(True)
    at.toggle(key="aug_on_stain_jitter").set_value(True).run(timeout=TIMEOUT)
    at.slider(key="aug_blur").set_value(7)
    at.slider(key="aug_stain_jitter").set_value(35).run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    page = at.session_state["augment"]
    assert (page["stain_jitter"], page["blur"]) == (0.35, 0.7)
    settings = dict(dataset=str(folder), model="nb", image_size=16, folds=2, augment_factor=2)
    typed = AugmentConfig(stain_jitter=0.35, blur=0.7)  # --stain-jitter 0.35 --blur 0.7
    run_id = resolve(RunConfig(**settings, augment=page)).run_id
    assert run_id == resolve(RunConfig(**settings, augment=typed)).run_id


def test_the_augmentation_page_says_the_jitter_colours_grey_cells_of_training_copies(data_root):
    """With a grey preprocessing mode kept on the Experiments page, the jitter's colour on grey cells
    (training copies only) is said under the preview; with colours as they are, nothing is said."""
    write_classes(data_root / "tiny")
    at = app("augmentation")
    at.session_state["_kept_exp_preprocess"] = ["raw", "cell-keep-gray", "cell-fit-asis"]
    at.toggle(key="aug_on_stain_jitter").set_value(True).run(timeout=TIMEOUT)
    said = ("With cell-keep-gray (chosen on the Experiments page) the jitter adds some colour to the grey cells of "
            "training copies only: validation and prediction images stay grey.")
    assert said in [c.value for c in at.caption]
    at.session_state["_kept_exp_preprocess"] = ["raw", "cell-fit-asis"]
    at.run(timeout=TIMEOUT)
    assert not [c.value for c in at.caption if "grey cells" in c.value]


def test_the_augmentation_preview_says_which_image_size_its_blur_stands_for(data_root):
    """The preview's blur is scaled from a run's image size: the Experiments page's when kept there,
    else the default, and the caption says which."""
    write_classes(data_root / "tiny")
    at = app("augmentation")
    at.toggle(key="aug_on_blur").set_value(True).run(timeout=TIMEOUT)
    assert [c.value for c in at.caption if "Blur is shown" in c.value][0].endswith(
        "Blur is shown as it acts on 64 px images (the default image size).")
    at.session_state["_kept_exp_sizes"] = [16, 64]
    at.run(timeout=TIMEOUT)
    assert [c.value for c in at.caption if "Blur is shown" in c.value][0].endswith(
        "Blur is shown as it acts on 16 px images (the first of the Experiments page's image sizes).")
    at.toggle(key="aug_on_blur").set_value(False).run(timeout=TIMEOUT)
    assert not [c.value for c in at.caption if "Blur is shown" in c.value]


def test_a_kept_image_number_beyond_the_next_datasets_images_is_brought_within_them(data_root):
    """The image number kept from a dataset of 6 images a class is beyond one of 2: the page shows
    the last image of the smaller class, not Streamlit's "value greater than max_value" error."""
    write_classes(data_root / "large", per_class=6)
    write_classes(data_root / "small", per_class=2)
    at = app("augmentation")
    at.sidebar.selectbox(key="dataset").set_value("large").run(timeout=TIMEOUT)
    at.number_input(key="aug_image").set_value(6).run(timeout=TIMEOUT)
    at.sidebar.selectbox(key="dataset").set_value("small").run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    assert at.number_input(key="aug_image").value == 2 and at.number_input(key="aug_image").max == 2
    assert len(at.get("image")[0].proto.imgs) == 9

def test_dataset_errors_show_no_server_folder_on_overview_and_compare(data_root, isolated_artifacts):
    folder = write_classes(data_root / "badgroups")
    (folder / "groups.csv").write_text("file;group\nALL/x.png\n")
    shipped_runs(isolated_artifacts, "nb")
    at = app("overview")
    note = next(row["Note"] for row in at.dataframe[1].value.to_dict("records") if row["Dataset"] == "badgroups")
    assert note.startswith("cannot be read: badgroups/groups.csv line 2") and str(data_root) not in note
    open_page(at, "compare")
    at.selectbox(key="compare_external_dataset").set_value("badgroups").run(timeout=TIMEOUT)
    at.button(key="compare_external_run").click().run(timeout=TIMEOUT)
    [error] = at.error
    assert ": badgroups/groups.csv line 2" in shown(error.value) and str(data_root) not in error.value


def test_the_data_page_says_when_a_dataset_hides_a_folder_of_its_name(data_root, tmp_path, monkeypatch):
    later = tmp_path / "later"
    write_classes(later / "tiny", classes=("AML", "CML"))
    monkeypatch.setenv("LEUKDASH_DATA", f"{data_root}{os.pathsep}{later}")
    at = data_page(data_root)
    assert not at.exception, [e.value for e in at.exception]
    assert "1 more folder(s) named tiny in later data folders are not used: a name opens the first folder of that " \
           "name." in [c.value for c in at.caption]
    assert not any(str(tmp_path) in c.value for c in at.caption)


def test_the_cell_preview_of_a_very_wide_image_is_drawn_small(data_root):
    """A 20:1 field of 14000 px (which runs take): the preview works on the bounded copy a run works
    on, instead of a 14000 px square that Pillow refuses to show as a decompression bomb."""
    write_classes(data_root / "wider", classes=("HEALTHY",))
    (data_root / "wider" / "ALL").mkdir()
    Image.new("RGB", (14000, 700), (230, 225, 228)).save(data_root / "wider" / "ALL" / "wide.png")
    at = data_page(data_root)
    at.sidebar.selectbox(key="dataset").set_value("wider").run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    previews = [i.proto.imgs for i in at.get("image") if any(shown(img.caption) == "wide.png" for img in i.proto.imgs)]
    assert [[shown(img.caption) for img in imgs] for imgs in previews] == [["wide.png", "none found"]]
    assert at.button(key="data_count_failures")  # the page is drawn on past the preview


def test_an_audit_whose_shortcut_check_cannot_split_the_data_says_so_and_shows_the_rest(data_root):
    (data_root / "lopsided" / "ALL").mkdir(parents=True)  # one ALL image: no grouped split holds it twice
    (data_root / "lopsided" / "ALL" / "0.png").write_bytes(png(0))
    write_classes(data_root / "lopsided", classes=("HEALTHY",), per_class=6)
    at = data_page(data_root)
    at.sidebar.selectbox(key="dataset").set_value("lopsided").run(timeout=TIMEOUT)
    next(b for b in at.button if b.label == "Run the audit").click().run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images used"] == "7"
    assert metrics["Colour histogram accuracy"] == metrics["Background-only accuracy"] == "n/a"
    assert any(i.value.startswith("No shortcut check here (n/a)") for i in at.info)
    at.button(key="data_count_failures").click().run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    assert [m.value for m in at.metric if m.label == "Colour histogram accuracy"] == ["n/a", "n/a"]


def test_uploads_of_one_name_are_told_apart_by_their_place(data_root, isolated_artifacts):
    shipped_runs(isolated_artifacts, "nb")
    at = app("predict")
    files = [("cell.png", png(1, 40), "image/png"), ("other.png", png(2, 40), "image/png"),
             ("cell.png", png(3, 40), "image/png"), ("cell.png", b"not an image", "image/png")]
    at.file_uploader(key="predict_upload").set_value(files).run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    shown = ["cell.png (upload 1)", "other.png", "cell.png (upload 3)", "cell.png (upload 4)"]
    assert [t.value for t in at.text if t.value in shown] == shown
    assert at.dataframe[0].value.iloc[:, 0].tolist() == shown
    assert any(e.value.startswith(r"Cannot read cell\.png \(upload 4\): not an image") for e in at.error)


def test_a_data_folder_that_is_a_dataset_itself_is_said_on_the_data_page_and_by_datasets(data_root, capsys):
    import streamlit as st

    from leukdash.cli import main

    for cls in ("ALL", "HEALTHY"):  # LEUKDASH_DATA set to the dataset, not to the folder holding it
        for patient in ("p0", "p1"):
            (data_root / cls / patient).mkdir(parents=True)
            (data_root / cls / patient / "0.png").write_bytes(png(len(cls) + len(patient)))
    st.cache_data.clear()
    at = app("data")
    at.sidebar.selectbox(key="dataset").set_value("ALL").run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    assert any(w.value.startswith("ALL looks like a class of a dataset, not a dataset") for w in at.warning)
    assert ("The data folder …/data holds class folders itself, so its classes are listed as datasets: set "
            "LEUKDASH_DATA to the folder that holds it.") in [w.value for w in at.warning]
    assert main(["datasets"]) == 0
    assert (f"note: the data folder {data_root} holds class folders itself, so its classes are listed as datasets"
            in capsys.readouterr().err)


def test_compare_names_a_run_folder_it_cannot_read_instead_of_leaving_it_out_silently(data_root, isolated_artifacts):
    kept_run, damaged = shipped_runs(isolated_artifacts, "nb", "dt")
    meta = isolated_artifacts / "runs" / damaged / "meta.json"
    meta.write_text(meta.read_text()[:50])
    at = app("compare")
    assert not at.exception, [e.value for e in at.exception]
    assert list(at.dataframe[0].value["Run id"]) == [kept_run]
    assert any(c.value.startswith(f"Not listed: 1 run folder(s) of the store ({damaged}): its meta.json is missing or "
                                  "damaged") for c in at.caption)


def test_compare_names_a_run_whose_meta_this_user_may_not_read_and_shows_the_others(data_root, isolated_artifacts,
                                                                                    monkeypatch):
    import errno

    from leukdash.engine import store

    kept_run, locked = shipped_runs(isolated_artifacts, "nb", "dt")
    read_json = store.read_json

    def as_another_user(path):  # root reads any file: chmod 000 stops every other user (and the app's)
        if locked in str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return read_json(path)

    monkeypatch.setattr(store, "read_json", as_another_user)
    at = app("compare")
    assert not at.exception, [e.value for e in at.exception]
    assert list(at.dataframe[0].value["Run id"]) == [kept_run]
    assert f"Not listed: 1 run folder(s) of the store ({locked}): its meta.json cannot be read (permission denied): " \
           "give this user read access to it and to its folder." in [c.value for c in at.caption]


# ---------------------------------------------------------------- Compare: selections


def numbered_runs(store: Path, count: int, first: int = 0) -> list[str]:
    """Copies of the shipped Naive Bayes run under run ids of their own, each newer than the one
    before (the Runs table lists the newest first); their run ids."""
    import json

    shipped = next(SHIPPED_RUNS.glob("nb-*"))
    run_ids = []
    for i in range(first, first + count):
        folder = shutil.copytree(shipped, store / "runs" / f"nb-{i:012x}")
        meta = json.loads((folder / "meta.json").read_text())
        config = {**meta["config"], "seed": i}  # runs that differ in a setting, as a sweep's do
        (folder / "meta.json").write_text(json.dumps({**meta, "run_id": folder.name, "created": meta["created"] + i,
                                                      "config": config}))
        run_ids.append(folder.name)
    return run_ids


def test_a_comparison_keeps_its_runs_when_a_new_run_finishes(data_root, isolated_artifacts):
    """The table lists the newest run first, so a run finishing elsewhere moves every row down one:
    the runs ticked stay the ones compared (and ticked), not the runs now at their row numbers."""
    import streamlit as st

    run_ids = numbered_runs(isolated_artifacts, 4)
    at = app("compare")
    table = at.dataframe[0]
    assert list(table.value["Run id"]) == run_ids[::-1]
    at.session_state[table.key] = {"selection": {"rows": [0, 1], "columns": []}}
    at.run(timeout=TIMEOUT)
    picked = {run_ids[3], run_ids[2]}
    assert set(at.query_params["runs"].split(",")) == picked
    numbered_runs(isolated_artifacts, 1, first=4)  # another session's run, finished since
    st.cache_data.clear()
    at.toggle(key="compare_paper").set_value(False).run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    assert set(at.query_params["runs"].split(",")) == picked
    assert "Comparing 2 of 5 finished runs." in [c.value for c in at.caption]
    table = at.dataframe[0]
    rows = at.session_state[table.key]["selection"]["rows"]
    assert {table.value["Run id"][i] for i in rows} == picked


def stored_sweep(store: Path, name: str, run_ids: list[str]) -> str:
    """A sweep record over these runs (their seeds differ: its one axis); its id."""
    import json

    configs = [json.loads((store / "runs" / run_id / "meta.json").read_text())["config"] for run_id in run_ids]
    sweep_id = f"sweep-{name}"
    (store / "sweeps" / sweep_id).mkdir(parents=True)
    (store / "sweeps" / sweep_id / "sweep.json").write_text(json.dumps(
        {"sweep_id": sweep_id, "name": name, "created": time.time(), "axes": None, "configs": configs,
         "run_ids": run_ids}))
    return sweep_id


def test_a_run_selected_in_a_sweep_is_not_carried_to_another_sweep(data_root, isolated_artifacts):
    """A row picked in one sweep's table was read in the next sweep's: past its end a traceback,
    else a run never picked shown as selected."""
    run_ids = numbered_runs(isolated_artifacts, 9)
    large, small = stored_sweep(isolated_artifacts, "large", run_ids[:6]), stored_sweep(isolated_artifacts, "small",
                                                                                      run_ids[6:])
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update({"compare_view": "Sweeps", "sweep": large})
    open_page(at.run(timeout=TIMEOUT), "compare")
    for row in (5, 1):  # past the small sweep's end, then within it
        at.selectbox(key="compare_sweep").set_value(large).run(timeout=TIMEOUT)
        table = next(d for d in at.dataframe if "Run id" in d.value.columns and len(d.value) == 6)
        at.session_state[table.key] = {"selection": {"rows": [row], "columns": []}}
        at.run(timeout=TIMEOUT)
        assert any(m.value.startswith("**") and "`nb-" in m.value for m in at.markdown)  # the picked run's detail
        at.selectbox(key="compare_sweep").set_value(small).run(timeout=TIMEOUT)
        assert not at.exception, [e.value for e in at.exception]
        assert not any(m.value.startswith("**") and "`nb-" in m.value for m in at.markdown)


# ---------------------------------------------------------------- Overview and Data: LEUKDASH_DATA


def test_a_data_setting_that_names_no_folder_is_said_on_overview_and_data(data_root, tmp_path, monkeypatch):
    """A file, or a folder not there, in LEUKDASH_DATA left the pages with the built-in set alone and
    no word why; they now say what `datasets` notes, naming no server folder."""
    (tmp_path / "notes.txt").write_text("not a folder")
    monkeypatch.setenv("LEUKDASH_DATA", os.pathsep.join([str(tmp_path / "notes.txt"), str(tmp_path / "gone")]))
    at = app("overview")
    for page in ("overview", "data"):
        open_page(at, page)
        said = [shown(w.value) for w in at.warning]
        assert said == [r"LEUKDASH_DATA names …/notes.txt, which is not a folder: nothing found there.",
                        r"LEUKDASH_DATA names …/gone, which is not a folder: nothing found there."], page


# ---------------------------------------------------------------- Predict: adapting


def test_models_adapted_to_uploads_count_only_the_readable_ones(data_root, isolated_artifacts):
    shipped_runs(isolated_artifacts, "nb")
    at = app("predict")
    files = [(f"{i}.png", png(i, 40), "image/png") for i in range(20)] + [("bad.png", b"not an image", "image/png")] * 2
    at.file_uploader(key="predict_upload").set_value(files).run(timeout=TIMEOUT)
    at.toggle(key="predict_adapt").set_value(True).run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.value.startswith(":material/tune: Answers below come from the models adapted to 20 of these 22 "
                                  "uploads") for c in at.caption), [c.value for c in at.caption]


def test_a_link_naming_a_dataset_this_server_lacks_says_so(data_root):
    """``?dataset=nosuch`` (a link from another server, an upload since removed) opened the default
    dataset without a word, its Launch button one click away."""
    write_classes(data_root / "lab")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params["dataset"] = "nosuch"
    at.switch_page("pages/experiments.py").run(timeout=TIMEOUT)
    assert not at.exception
    assert [w.value for w in at.sidebar.warning] == [
        "The link names the dataset nosuch: this server does not have it; pick one below."]
    assert at.sidebar.selectbox(key="dataset").value == "lab" and "dataset" not in at.query_params
    # The built-in set beside real data: Streamlit writes it to the URL by its label, "synthetic (built-in
    # demo)", which the picker called a dataset this server lacks; a link by its name opened another one.
    for linked in ("synthetic (built-in demo)", "synthetic"):
        again = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
        again.query_params["dataset"] = linked
        again.switch_page("pages/experiments.py").run(timeout=TIMEOUT)
        assert not again.exception and not again.sidebar.warning, [w.value for w in again.sidebar.warning]
        assert again.sidebar.selectbox(key="dataset").value == "synthetic"


def test_compare_draws_at_most_forty_bars_when_every_run_is_compared(data_root, isolated_artifacts):
    """Hundreds of runs, none ticked: one bar each made a chart many screens tall (seconds to draw);
    the newest 40 are drawn and the caption says how to see the others."""
    import json

    numbered_runs(isolated_artifacts, 41)
    at = app("compare")
    bars = [trace for trace in json.loads(at.get("plotly_chart")[0].proto.spec)["data"] if trace["type"] == "bar"]
    assert sum(len(trace["x"]) for trace in bars) == 40
    assert any("The first 40 of 41 runs (newest first): select runs in the table to see others." in c.value
               for c in at.caption)


def linked_compare(run_ids: list[str]) -> AppTest:
    """Compare opened from a shared address naming these runs."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update({"runs": ",".join(run_ids)})
    return open_page(at.run(timeout=TIMEOUT), "compare")


def test_a_link_that_names_a_run_twice_compares_it_once(data_root, isolated_artifacts):
    nb, knn, dt = shipped_runs(isolated_artifacts, "nb", "knn", "dt")
    at = linked_compare([nb, nb, knn])
    assert not at.exception, [e.value for e in at.exception]
    assert list(at.dataframe[1].value["Run"]) == list(dict.fromkeys(at.dataframe[1].value["Run"]))  # Summary: once each
    assert len(at.dataframe[1].value) == 2
    assert at.query_params["runs"] == f"{nb},{knn}"
    assert "Comparing 2 of 3 finished runs." in [c.value for c in at.caption]


def test_an_ensemble_whose_member_was_deleted_says_so_on_compare_and_predict(data_root, isolated_artifacts, capsys):
    import streamlit as st

    from leukdash.cli import main

    from leukdash.engine.ensemble import create_ensemble
    from leukdash.evaluation import predict

    nb, knn = shipped_runs(isolated_artifacts, "nb", "knn")
    joined = create_ensemble([nb, knn])["run_id"]
    at = app("predict")
    at.selectbox(key="predict_run").set_value(joined).run(timeout=TIMEOUT)
    shutil.rmtree(isolated_artifacts / "runs" / knn)
    st.cache_data.clear()
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    why = f"member run(s) {knn} gone or not whole; running their settings again"
    [warning] = at.warning
    assert why in shown(warning.value) and "no longer in the store" not in warning.value, warning.value
    at = linked_compare([joined, nb])
    assert not at.exception, [e.value for e in at.exception]
    captions = [shown(c.value) for c in at.caption]
    assert any(c.startswith(f"Not compared: run '{joined}' is not a finished run") and why in c for c in captions), \
        captions
    assert not any("not among the finished runs" in c.value for c in at.caption)
    (data_root / "cell.png").write_bytes(png(1))
    predict._loaded.clear()  # a command is a fresh process: the pages' warm-up may have loaded the models here
    assert main(["predict", joined, str(data_root / "cell.png")]) == 2
    said = capsys.readouterr().err.splitlines()[-1]  # after the log lines of Streamlit's caches
    assert said.startswith(f"error: run '{joined}' is not a finished run") and why in said, said


def test_a_store_where_the_builtin_set_cannot_be_drawn_is_one_line_on_each_page(data_root, isolated_artifacts):
    """A store that cannot take the built-in set (read-only, full, a file where its folder goes)
    crashed Data, Experiments and Augmentation with the OSError's traceback."""
    (isolated_artifacts / "datasets").write_text("not a folder")  # data_root is empty: the built-in set is picked
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(timeout=TIMEOUT)
    for page in ("data", "experiments", "augmentation"):
        open_page(at, page)
        assert [shown(e.value) for e in at.error] == [
            "Cannot open dataset 'synthetic': cannot write datasets: a file stands where a folder is needed "
            "(LEUKDASH_ARTIFACTS must name a folder)"], page


def test_a_link_with_settings_the_page_cannot_take_says_which_and_what_it_used(data_root):
    """``?exp_folds=11&exp_sizes=32&exp_sizes=999&exp_models=Nope`` opened with the defaults (and 32 px
    alone) without a word: Streamlit drops a bound widget's value it does not take."""
    write_classes(data_root / "lab")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(exp_folds="11", exp_sizes=["32", "999"], exp_models="Nope", exp_preprocess="raw")
    open_page(at, "experiments")
    assert [w.value for w in at.sidebar.warning] == [
        "Some settings of the link cannot be used here (not offered or out of range), so they were replaced: "
        "Image sizes (px) 32, 999 → 32; Folds 11 → 5; Models Nope → CNN \\(paper\\), Naive Bayes."]
    assert at.number_input(key="exp_folds").value == 5 and at.multiselect(key="exp_sizes").value == [32]
    again = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    again.query_params.update(exp_folds="5.0", exp_sizes="32")  # values it takes, as typed or not: nothing said
    open_page(again, "experiments")
    assert not again.sidebar.warning, again.sidebar.warning[0].value
    assert again.number_input(key="exp_folds").value == 5 and again.multiselect(key="exp_sizes").value == [32]
    # Streamlit writes an option of a widget with a format_func to the URL as its label: a link it wrote
    # itself is taken, and said nothing of (the note said it replaced those labels by themselves).
    labelled = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    labelled.query_params.update(exp_preprocess=describe_mode("cell-keep-gray"), exp_protocols=[
        "strict: validate on original images only",
        "paper: split, then augment both parts (validation scores copies too)"])
    open_page(labelled, "experiments")
    assert not labelled.sidebar.warning, labelled.sidebar.warning[0].value
    assert labelled.multiselect(key="exp_preprocess").value == ["cell-keep-gray"]
    assert labelled.multiselect(key="exp_protocols").value == ["strict", "paper"]


def test_the_predict_page_says_its_upload_size_limit_beside_the_uploader(data_root, isolated_artifacts):
    """A file over the limit is refused in the browser (only its name turns red): the limit was said
    only in a tooltip, and the page went on asking for images."""
    shipped_runs(isolated_artifacts, "nb")
    at = app("predict")
    assert any(" images, up to 50 MB and " in c.value and "a larger file is refused" in c.value
               for c in at.caption), [c.value for c in at.caption]


def test_compares_downloads_name_no_server_folder_in_viewer_mode(data_root, isolated_artifacts, monkeypatch):
    """The Results (JSON) of Compare held the run's config.dataset and dataset.path as the server's absolute
    paths, which every page text hides from a visitor."""
    import json

    from streamlit.delta_generator import DeltaGenerator

    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run

    write_classes(data_root / "tiny")
    run(RunConfig(dataset=str(data_root / "tiny"), model="nb", image_size=16, augment_factor=1,
                  augment=AugmentConfig.off(), folds=2), n_jobs=1)
    monkeypatch.setenv("LEUKDASH_MODE", "viewer")
    downloads, download_button = {}, DeltaGenerator.download_button

    def kept_download(self, label, data, *args, **kwargs):  # the page's columns' buttons too
        downloads[label] = data
        return download_button(self, label, data, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", kept_download)
    at = app("compare")
    assert not at.exception, [e.value for e in at.exception]
    [result] = json.loads(downloads["Results (JSON)"])
    assert (result["config"]["dataset"], result["dataset"]["path"]) == ("tiny", "tiny")
    assert str(data_root) not in downloads["Results (JSON)"].decode()


HOSTILE_CLASSES = (":red[ALL] **bold** $x^2$", "[click](javascript:alert(1))")
HOSTILE_FILE = "![i](http:\\\\127.0.0.1:8999\\x.png).jpg"
# Markdown (and Streamlit's colours and math) each name would act on, were it not escaped.
UNESCAPED = re.compile(r"(?<!\\)(\*\*bold|:red\[|\$x|!\[i|\[click)")


def markdown_bodies(at: AppTest) -> list[str]:
    """Every text of the page that Streamlit reads as Markdown: its body, and its expanders' and tabs' labels."""
    kinds = ("markdown", "caption", "info", "warning", "error", "success", "toast", "subheader", "header", "title")
    return ([element.value for kind in kinds for element in at.get(kind)]
            + [element.label for kind in ("expander", "tab") for element in at.get(kind)])


def test_names_a_dataset_controls_are_shown_as_written_on_every_page(data_root, isolated_artifacts):
    """Class folders and files named like Markdown (colours, bold, math, a link, a remote image) show as written."""
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run

    folder = write_classes(data_root / "odd", HOSTILE_CLASSES)
    buffer = io.BytesIO()
    Image.fromarray(np.full((24, 24, 3), 90, np.uint8)).save(buffer, "JPEG")
    (folder / HOSTILE_CLASSES[0] / HOSTILE_FILE).write_bytes(buffer.getvalue())
    run(RunConfig(dataset=str(folder), model="nb", image_size=16, augment_factor=1, augment=AugmentConfig.off(),
                  folds=2), n_jobs=1)
    for page in ("overview", "data", "augmentation", "experiments", "compare", "report", "predict"):
        at = app(page)
        if page == "predict":
            at.file_uploader(key="predict_upload").set_value([(HOSTILE_FILE, buffer.getvalue(), "image/jpeg")])
            at.run(timeout=TIMEOUT)
        assert not at.exception, (page, [e.value for e in at.exception])
        bodies = markdown_bodies(at)
        assert not [body for body in bodies if UNESCAPED.search(body)], page
    assert any(body.startswith("Predicted: ") for body in bodies)  # the upload was answered


def test_a_folder_copied_through_a_mac_shows_its_images_on_the_pages(data_root, tiny_dataset):
    """Datasets record names in one Unicode form (NFC); a folder copied through a Mac names its files in
    another (NFD): the pages opened the recorded name, found no file, and showed no sample."""
    import unicodedata

    from pages._shared import cell_preview, dataset_info, image

    accented = data_root / "mac"
    for source in sorted(tiny_dataset.glob("*/*.png"))[:12]:
        folder = accented / unicodedata.normalize("NFD", f"{source.parent.name}é")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / unicodedata.normalize("NFD", f"cé-{source.name}"))
    info = dataset_info("mac", str(data_root))
    [name, *_] = next(files for files in info["files"].values() if files)
    assert name == unicodedata.normalize("NFC", name) and "é" in name  # recorded in one form
    assert image(info["path"], name, 16).shape == (16, 16, 3)
    outlined, prepared, _ = cell_preview(info["path"], name, "cell-keep-asis")
    assert outlined.ndim == 3 and prepared.ndim == 3


def test_names_markdown_would_link_or_decode_by_themselves_are_escaped():
    """Markdown (GFM) makes ``www.x.com`` and ``a@b.c`` links by themselves and shows ``&amp;`` as ``&``: a
    class or dataset name holding them was shown as a link to another site, or otherwise than written."""
    from pages._session import literal

    assert literal("see www.evil.com & a@b.c &amp;") == r"see www\.evil\.com \& a@b\.c \&amp;"
    assert shown(literal("see www.evil.com & a@b.c &amp;")) == "see www.evil.com & a@b.c &amp;"
