"""The Streamlit pages, driven headless with AppTest on a tiny generated dataset."""

import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from leukdash.service import sweep_jobs
from leukdash.data.synthetic import CLASSES, generate_synthetic

APP = Path(__file__).resolve().parent.parent / "streamlit_app.py"
PAGES = ["overview", "data", "augmentation", "experiments", "compare", "predict"]
TIMEOUT = 60  # seconds per script run: the first run of a page imports and decodes


@pytest.fixture
def tiny(tmp_path, monkeypatch) -> Path:
    """A 5-class, 6-image-per-class dataset found as 'tiny' through LEUKDASH_DATA."""
    folder = generate_synthetic(tmp_path / "data" / "tiny", counts={c: 6 for c in CLASSES}, size=32)
    monkeypatch.setenv("LEUKDASH_DATA", str(tmp_path / "data"))
    return folder


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def shown(markdown: str) -> str:
    """A Markdown text as the browser shows it: the backslash escapes of the names in it (pages pass
    names through ``literal``) undone."""
    return re.sub(r"\\(.)", r"\1", markdown)


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"pages/{page}.py").run(timeout=TIMEOUT)
    assert not at.exception, f"{page}: {[e.value for e in at.exception]}"
    return at


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def bar_traces(figure: dict) -> list[dict]:
    return [trace for trace in figure["data"] if trace["type"] == "bar"]


def test_every_page_renders_without_runs(tiny):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.title[0].value == "leukdash"
    texts = " ".join(m.value for m in at.markdown)
    assert "Ahmed et al." in texts
    for page in PAGES[1:]:
        open_page(at, page)
        assert at.title[0].value == page.capitalize()
    open_page(at, "compare")
    assert "No finished runs yet" in at.info[0].value
    open_page(at, "predict")
    assert "No finished runs yet" in at.info[0].value


def test_report_page_shows_the_newest_report_with_its_figures(tiny):
    from leukdash.reporting.reproduce import quick_out

    out = quick_out()
    out.mkdir(parents=True)
    (out / "figure.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>')
    (out / "REPORT.md").write_text("# Reproduction\n\nTable 2: ours 0.8765 (`nb-0123456789ab`)\n\n![Figure 4](figure.svg)"
                                   "\n\nAfter the figure.\n")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    open_page(at, "report")
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "ours 0.8765" in text and "After the figure." in text
    assert len(at.get("image")) == 1
    # The caption says where the report's runs are, and shows no server folder.
    caption = at.caption[0].value
    assert "0 of the 1 run it names are in this deployment's store" in caption and str(out) not in caption


def test_overview_paints_without_tensorflow(tiny):
    # A fresh interpreter: an earlier test in this process may have imported TensorFlow already.
    code = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({str(APP)!r}, default_timeout=60).run()\n"
        "assert not at.exception, at.exception\n"
        "assert at.title[0].value == 'leukdash'\n"
        "print('tensorflow' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"



def test_no_page_is_parsed_into_python_ast_objects_as_it_runs(tiny, monkeypatch):
    """Python 3.11 counts the depth of its AST conversion per interpreter, not per thread (CPython
    gh-106905): a page parsed into AST objects (Streamlit's magic) while another thread read an
    array header (np.load's ast.literal_eval: the Predict page's warm-up, another visitor) failed
    with "SystemError: AST constructor recursion depth mismatch". With magic off
    (.streamlit/config.toml) the pages are compiled from their source and build no AST objects."""
    import ast

    parsed, parse = [], ast.parse

    def recorded(source, filename="<unknown>", *args, **kwargs):
        parsed.append(str(filename))
        return parse(source, filename, *args, **kwargs)

    monkeypatch.setattr(ast, "parse", recorded)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    for page in PAGES:
        open_page(at, page)
    scripts = {str(APP), *(str(path) for path in APP.parent.glob("pages/*.py"))}
    assert not at.exception and not scripts.intersection(parsed)

def test_data_page_counts_audits_and_takes_a_zip(tiny):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    open_page(at, "data")
    at.sidebar.selectbox(key="dataset").set_value("tiny").run(timeout=TIMEOUT)
    counts = bar_traces(figures(at)[0])[0]
    assert dict(zip(counts["x"], counts["y"])) == {c: 6 for c in CLASSES}
    assert any("synthetic demo data, not clinical" in i.value.lower() for i in at.info)
    next(b for b in at.button if b.label == "Run the audit").click().run(timeout=TIMEOUT)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images used"] == "30" and metrics["Exact duplicate groups"] == "0"
    assert metrics["Chance (majority class)"] == "20.0%"

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for cls in ("ALL", "HEALTHY"):
            for path in sorted((tiny / cls).iterdir())[:3]:
                zipped.write(path, f"mine/{cls}/{path.name}")
    at.sidebar.file_uploader(key="zip_upload").set_value(("mine.zip", archive.getvalue(), "application/zip"))
    at.run(timeout=TIMEOUT)
    assert not at.exception
    assert at.sidebar.selectbox(key="dataset").value == "mine (upload)"
    counts = bar_traces(figures(at)[0])[0]
    assert dict(zip(counts["x"], counts["y"])) == {"ALL": 3, "HEALTHY": 3}



def test_the_audit_names_images_that_carry_no_detail(tiny):
    """A blank capture among the images: no cell to learn from, and it skews the out-of-distribution
    check, so the audit shown on the Data page names it."""
    from PIL import Image

    Image.new("RGB", (32, 32), (240, 240, 240)).save(tiny / "ALL" / "blank.png")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    open_page(at, "data")
    at.sidebar.selectbox(key="dataset").set_value("tiny").run(timeout=TIMEOUT)
    next(b for b in at.button if b.label == "Run the audit").click().run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    assert any(shown(w.value).startswith("1 image(s) carry no detail (blank or one colour)") for w in at.warning)
    assert any(list(table.value.get("File", [])) == ["ALL/blank.png"] for table in at.dataframe)


def test_the_data_page_says_a_run_gets_fewer_folds_when_a_class_has_fewer_groups(tiny):
    # It said cross-validation needs as many groups per class as folds; the run takes fewer folds instead.
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "data")
    counts = next(shown(c.value) for c in at.caption if c.value.startswith("Number of image files in each class"))
    assert "a run gets at most as many folds as the class with the fewest groups has: asked for more, it runs " \
           "fewer and says so" in counts


def test_the_audit_of_a_dataset_whose_images_changed_is_made_again(tiny):
    """Images added and removed since the audit: once the page reads the dataset again, the audit
    shown is of the images there now, not the one cached under the dataset's name."""
    import shutil

    from pages._shared import dataset_info

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    open_page(at, "data")
    at.sidebar.selectbox(key="dataset").set_value("tiny").run(timeout=TIMEOUT)
    next(b for b in at.button if b.label == "Run the audit").click().run(timeout=TIMEOUT)
    assert {m.label: m.value for m in at.metric}["Images used"] == "30"
    for path in sorted((tiny / "CML").iterdir()):
        shutil.copy(path, tiny / "ALL" / f"copy_{path.name}")
        path.unlink()
    dataset_info.clear()  # its 60 s cache, expired
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images used"] == "30" and metrics["Chance (majority class)"] == "40.0%"

def test_a_click_on_a_button_drawn_for_the_previous_dataset_acts_on_the_one_now_chosen(tiny):
    """A click that lands while the page is redrawn after another dataset was picked (the button
    still the previous page's) audits, or counts the failures of, the dataset the picker shows."""
    generate_synthetic(tiny.parent / "other", counts={"ALL": 4, "HEALTHY": 4}, size=32)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    open_page(at, "data")
    at.sidebar.selectbox(key="dataset").set_value("tiny").run(timeout=TIMEOUT)
    at.sidebar.selectbox(key="dataset").set_value("other")
    next(b for b in at.button if b.label == "Run the audit").click()
    at.button(key="data_count_failures").click().run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images used"] == "8" and metrics["Segmentation failures"].endswith(" of 8")


def test_settings_carry_over_between_pages(tiny):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    open_page(at, "augmentation")
    at.toggle(key="aug_on_rotation").set_value(False).run(timeout=TIMEOUT)
    at.slider(key="aug_zoom").set_value(50).run(timeout=TIMEOUT)
    assert at.session_state["augment"]["rotation"] == 0 and at.session_state["augment"]["zoom"] == 0.5
    open_page(at, "experiments")
    at.multiselect(key="exp_sizes").set_value([16, 32]).run(timeout=TIMEOUT)
    captions = " ".join(c.value for c in at.caption)
    page_transforms = captions.split("Transforms on the Augmentation page:")[1]
    assert page_transforms.startswith(" width shift") and "rotation" not in page_transforms
    open_page(at, "compare")
    open_page(at, "augmentation")
    assert at.toggle(key="aug_on_rotation").value is False and at.slider(key="aug_zoom").value == 50
    open_page(at, "experiments")
    assert at.multiselect(key="exp_sizes").value == [16, 32]


def test_experiments_and_the_readme_name_the_settings_that_take_one_value(tiny):
    # "Any setting can take several values" was not true of Task and Folds, one widget value each.
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "experiments")
    assert {widget.label for widget in [*at.main.selectbox, *at.main.number_input]} == {"Task", "Folds"}
    one_value = "Every setting but Task and Folds (one value each) can take several values: "
    assert any(shown(caption.value).startswith(one_value) for caption in at.caption)
    readme = (APP.parent / "README.md").read_text().replace("\n", " ")
    assert "Experiments (sweeps: every setting but Task and Folds takes several values, " in readme


def wait_for_jobs(seconds=300) -> list[dict]:
    """The sweep jobs' statuses once none is running (or the time is up)."""
    deadline = time.monotonic() + seconds
    while True:
        states = [sweep_jobs.sweep_job_status(job_id) for job_id in sweep_jobs.list_sweep_jobs()]
        if all(s["state"] not in ("queued", "running") for s in states) or time.monotonic() > deadline:
            return states
        time.sleep(1)


def choose_tiny_runs(at: AppTest, models=("CNN (paper)", "Naive Bayes")) -> None:
    """On Experiments: the tiny dataset, 16 px, 2 folds, no augmentation, 1 epoch, CNN and NB (by default)."""
    open_page(at, "experiments")
    at.sidebar.selectbox(key="dataset").set_value("tiny")
    at.multiselect(key="exp_sizes").set_value([16])
    at.number_input(key="exp_folds").set_value(2)
    at.multiselect(key="exp_transforms").set_value(["off"])
    at.multiselect(key="exp_models").set_value(list(models)).run(timeout=TIMEOUT)
    if any(model.startswith("CNN") for model in models):
        at.text_input(key="exp_epochs").set_value("1").run(timeout=TIMEOUT)


def test_launched_runs_complete_compare_and_predict(tiny):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    choose_tiny_runs(at)
    launch = at.button(key="launch")
    assert launch.label == "Launch 2 runs" and not launch.disabled
    launch.click().run(timeout=TIMEOUT)
    assert not at.exception
    run_ids = list(at.dataframe[0].value["Run id"])
    assert [r.split("-")[0] for r in run_ids] == ["cnn", "nb"]

    states = wait_for_jobs()
    assert [s["state"] for s in states] == ["finished"], [s["log_tail"][-5:] for s in states]

    # A new session with the same settings finds the results at once.
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    choose_tiny_runs(at)
    assert at.button(key="launch").disabled
    assert list(at.dataframe[0].value["Status"]) == ["finished", "finished"]
    assert len(bar_traces(figures(at)[0])) == 2

    open_page(at, "compare")
    bars = bar_traces(figures(at)[0])
    assert len(bars) == 2
    assert {b["name"].split(" ")[0] for b in bars} == {"CNN", "Naive"}
    assert all(len(b["error_x"]["array"]) == 1 for b in bars)
    mcnemar = next(d.value for d in at.dataframe if "p-value" in d.value.columns)
    assert len(mcnemar) == 1 and 0 <= mcnemar["p-value"].iloc[0] <= 1
    # The paper reported nothing on this dataset: its column is missing values, shown as a dash.
    summary = next(d for d in at.dataframe if "Paper (reported)" in d.value.columns)
    assert summary.value["Paper (reported)"].isna().all()
    assert {d.proto.placeholder for d in at.dataframe} == {"–"}

    open_page(at, "predict")
    at.selectbox(key="predict_run").set_value(run_ids[0])
    png = (tiny / "ALL" / "ALL_0001.png").read_bytes()
    at.file_uploader(key="predict_upload").set_value([("cell.png", png, "image/png"),
                                                      ("notes.png", b"not an image at all", "image/png")])
    at.run(timeout=120)
    assert not at.exception
    predicted = next(m.value for m in at.markdown if m.value.startswith("Predicted:"))
    # The upload is one of the run's own images: the headline is the answer of the fold model that
    # never trained on it, not the ensemble's.
    from leukdash.data.decode import decode_image
    from leukdash.evaluation.predict import known_image

    known = known_image(run_ids[0], decode_image(png))
    assert predicted.startswith(f"Predicted: **{known['prediction']}** · ")
    assert f"from fold {known['fold']}'s model, the one that never trained on this image" in predicted
    probabilities = next(f for f in figures(at) if f["data"][0].get("orientation") == "h")["data"][0]
    assert list(probabilities["y"]) == list(CLASSES) and sum(probabilities["x"]) == pytest.approx(1, abs=1e-3)
    assert any("Grad-CAM" in caption for caption in image_captions(at)), [w.value for w in at.warning]
    assert any("Cannot read notes.png" in shown(e.value) for e in at.error)


def image_captions(at: AppTest) -> list[str]:
    return [caption for element in at.image for caption in element.captions]


def test_a_running_job_shows_progress_and_can_be_cancelled(tiny):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    choose_tiny_runs(at, models=["CNN (paper)"])
    at.text_input(key="exp_epochs").set_value("200").run(timeout=TIMEOUT)
    at.button(key="launch").click().run(timeout=TIMEOUT)
    run_id = at.dataframe[0].value["Run id"].iloc[0]
    job_id = sweep_jobs.list_sweep_jobs()[0]
    assert "Running" in [s.value for s in at.subheader]
    assert at.get("progress"), "a progress bar for the running job"
    # The header says what runs and what is left, not "0 runs to compute".
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Running now"] == "1 run" and "To compute" not in metrics and "Time left" in metrics
    at.button(key=f"cancel_{job_id}").click().run(timeout=TIMEOUT)
    assert not at.exception
    assert sweep_jobs.sweep_job_status(job_id)["runs"] == {run_id: "cancelled"}
    assert at.dataframe[0].value["Status"].iloc[0] == "cancelled"
    assert at.button(key="launch").label == "Launch 1 run"


def test_data_header_counts_an_unreadable_file_only_as_a_file(tiny):
    (tiny / "ALL" / "broken.png").write_bytes(b"not an image at all")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    open_page(at, "data")
    at.sidebar.selectbox(key="dataset").set_value("tiny").run(timeout=TIMEOUT)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Image files"] == "31" and "Images" not in metrics
    next(b for b in at.button if b.label == "Run the audit").click().run(timeout=TIMEOUT)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Readable images"] == "30" and metrics["Files left out"] == "1"
    assert metrics["Images used"] == "30" and metrics["Skipped files"] == "1"


def test_data_page_previews_cell_preprocessing_and_jitter_is_offered(tiny):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    open_page(at, "data")
    at.sidebar.selectbox(key="dataset").set_value("tiny").run(timeout=TIMEOUT)
    at.selectbox(key="data_preprocess").set_value("cell-fit-gray").run(timeout=TIMEOUT)
    assert not at.exception
    shown = at.get("image")
    # Samples (5 classes) plus one original-and-preprocessed strip per class.
    assert len(shown) == 10
    captions = " ".join(str(block.proto) for block in shown[5:])
    assert "cell-fit-gray" in captions or "touches the border" in captions or "none found" in captions

    open_page(at, "augmentation")
    assert at.toggle(key="aug_on_colour_jitter").value is False   # off in the paper's settings
    # The paper's transforms have a bare label; the others say on their toggle that it did not use them.
    extras = [at.toggle(key=f"aug_on_{name}") for name in ("colour_jitter", "stain_jitter", "blur")]
    assert all(toggle.help.startswith("Not in the paper: ") for toggle in extras)
    assert [toggle.label for toggle in extras] == ["Colour jitter", "Stain jitter", "Blur"]
    assert not at.toggle(key="aug_on_rotation").help
    at.toggle(key="aug_on_colour_jitter").set_value(True).run(timeout=TIMEOUT)
    assert at.session_state["augment"]["colour_jitter"] == 0.1
    assert "colour jitter" in " ".join(c.value for c in at.caption)


def test_compare_with_many_runs_shows_a_few_confusions_and_asks_which_runs_to_pair(isolated_artifacts):
    """A store of sweeps holds hundreds of runs, all shown when none is selected: the page stays
    quick by drawing the first confusion matrices only and leaving the pairwise tests (a family of
    n(n-1)/2) until at most MAX_PAIRED runs are selected, and says so."""
    import shutil

    shipped = next((APP.parent / "artifacts" / "runs").glob("nb-*"))
    for i in range(25):
        folder = shutil.copytree(shipped, isolated_artifacts / "runs" / f"nb-{i:012x}")
        meta = json.loads((folder / "meta.json").read_text())
        (folder / "meta.json").write_text(json.dumps({**meta, "run_id": folder.name}))
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "compare")
    assert len(at.dataframe[0].value) == 25
    charts = figures(at)
    roc = [c for c in charts if c["layout"].get("xaxis", {}).get("title", {}).get("text") == "False positive rate"]
    assert len(roc) == 1 and len(roc[0]["data"]) == 1 + 12  # the chance line and 12 runs' curves
    titles = [c["layout"].get("title", {}).get("text", "") for c in charts if c not in roc]
    assert len(titles) == 1 + 12 and all(title.startswith("Naive Bayes") for title in titles[1:])  # bars, 12 matrices
    said = " ".join(e.value for kind in ("info", "caption") for e in at.get(kind))
    assert "The first 12 of 25 runs: select runs in the table to see theirs." in said
    assert "Paired tests are made for at most 20 runs at once (190 pairs, one family); 25 runs would be 300 pairs." \
        in said
    assert not [d for d in at.dataframe if "p-value" in d.value.columns]


def test_compare_shows_what_each_run_warned_of_about_its_data(tiny):
    """Files a run left out (and a segmentation that failed, or labels in conflict) were said by
    `run` alone: Compare now shows each compared run's warnings beside its figures."""
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run
    from pages._session import literal

    (tiny / "ALL" / "notes.png").write_text("not an image")
    config = RunConfig(dataset="tiny", model="nb", image_size=16, augment_factor=1, augment=AugmentConfig.off(), folds=2)
    result = run(config, n_jobs=1)
    [warning] = result["dataset"]["warnings"]
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "compare")
    said = [c.value for c in at.caption if "were left out, unreadable or refused" in c.value]
    assert len(said) == 1 and "ALL/notes.png" in shown(said[0]) and "Naive Bayes" in said[0], said
    assert said[0].endswith(literal(warning))
    run(RunConfig(**{**config.to_dict(), "seed": 1}), n_jobs=1)  # a second run on the same data: said once
    st.cache_data.clear()  # the run list, as a new session reads it
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "compare")
    said = [c for c in at.caption if "were left out, unreadable or refused" in c.value]
    assert len(said) == 1 and "**2 runs**" in said[0].value and said[0].help.count("Naive Bayes") == 2


def test_compare_tests_tab_notes_other_folds_beside_the_pair(tiny):
    """Two seeds of one model validated the images in other folds: the Tests tab's pair says so in its Note, as
    `compare` does."""
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run
    from leukdash.evaluation.compare import compare_runs

    config = RunConfig(dataset="tiny", model="nb", image_size=16, augment_factor=1, augment=AugmentConfig.off(),
                       folds=2)
    ids = [run(RunConfig(**{**config.to_dict(), "seed": seed}), n_jobs=1)["run_id"] for seed in (0, 1)]
    [test] = compare_runs(ids)["mcnemar"]
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "compare")
    paired = next(d.value for d in at.dataframe if "p-value" in d.value.columns)
    swapped = test["note"].replace("seed 0 vs 1", "seed 1 vs 0")  # the page may pair them the other way round
    assert test["note"].startswith("different folds (seed 0 vs 1)") and list(paired["Note"]) in ([test["note"]],
                                                                                                 [swapped])


def test_compare_says_which_run_answers_one_class_for_every_image(allidb2_path, tmp_path):
    """20 ALL and 3 HEALTHY: naive Bayes answers ALL throughout, its accuracy the share of ALL: said beside it."""
    import shutil

    from leukdash.config import RunConfig
    from leukdash.engine.runner import run

    for name, n in (("ALL", 20), ("HEALTHY", 3)):
        (tmp_path / "imb" / name).mkdir(parents=True)
        for path in sorted((allidb2_path / name).iterdir())[:n]:
            shutil.copy(path, tmp_path / "imb" / name / path.name)
    config = RunConfig(dataset=str(tmp_path / "imb"), model="nb", image_size=16, augment_factor=1, folds=3)
    run(config, n_jobs=1)
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "compare")
    said = [c.value for c in at.caption if "the model answers ALL for 100% of the images it validates on" in c.value]
    assert len(said) == 1 and "Naive Bayes" in said[0] and "balanced accuracy 0.50" in shown(said[0]), said
    # Several (a sweep's): one caption naming them, each run's note in an expander, not one caption a run.
    run(RunConfig(**{**config.to_dict(), "seed": 1}), n_jobs=1)
    st.cache_data.clear()  # the page keeps the list of runs a while
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "compare")
    said = [c.value for c in at.caption if "class shares" in c.value]
    assert len(said) == 1 and said[0].count("Naive Bayes") == 2, said
    [collapse] = [e for e in at.expander if e.label == "Collapse of each run"]
    assert collapse.markdown[0].value.count("the model answers ALL for 100% of the images it validates on") == 2


def test_compare_warns_of_a_run_whose_svm_calibration_reverses_its_decisions(tmp_path):
    """The same noise in both classes: the SVM's calibration fits a sigmoid of positive slope in each fold, every
    answer the opposite of the SVM's own; Compare says so beside the run, naming the folds."""
    import cv2
    import numpy as np

    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run

    rng = np.random.default_rng(0)
    for name in ("ALL", "HEALTHY"):
        (tmp_path / "noise" / name).mkdir(parents=True)
        for i in range(10):
            cv2.imwrite(str(tmp_path / "noise" / name / f"{i}.png"), rng.integers(60, 120, (32, 32, 3), np.uint8))
    run(RunConfig(dataset=str(tmp_path / "noise"), model="svm", feature_set="pixels", image_size=32,
                  augment_factor=1, augment=AugmentConfig.off(), folds=2), n_jobs=1)
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "compare")
    said = [shown(w.value) for w in at.warning if "calibration reverses" in w.value]
    assert len(said) == 1 and "fold 1 and fold 2" in said[0] and "SVM" in said[0], said


def test_compare_draws_each_runs_roc_curve_with_its_auc(tiny):
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run
    from leukdash.evaluation.compare import out_of_fold_roc

    base = dict(dataset="tiny", image_size=16, augment_factor=1, augment=AugmentConfig.off(), folds=2)
    results = [run(RunConfig(model=model, **base), n_jobs=1) for model in ("nb", "knn")]
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "compare")
    [roc] = [f for f in figures(at) if f["layout"].get("xaxis", {}).get("title", {}).get("text") == "False positive rate"]
    names = [trace["name"] for trace in roc["data"]]
    assert names[0] == "chance" and len(names) == 3
    aucs = sorted(round(out_of_fold_roc(result)["auc"], 3) for result in results)
    assert sorted(float(name.rsplit("AUC ", 1)[1]) for name in names[1:]) == aucs
    # The Summary says what is known of the paper's figures, not that its protocol leaked copies (it splits first).
    [summary] = [c.value for c in at.caption if c.value.startswith("Mean, standard deviation (a dash for one fold")]
    assert "split images, not patients" in summary and "leaked" not in summary


def test_compare_shows_a_runs_most_confident_mistakes_when_asked(tiny, monkeypatch):
    """Error analysis on the page: the run's wrong out-of-fold answers, the surest first, with their
    images, only once asked (naming a run's images may read its dataset); and every image's answer
    as the download `python -m leukdash oof RUN_ID` prints."""
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run
    from leukdash.evaluation.answer_table import confident_mistakes, csv_text, out_of_fold_rows

    result = run(RunConfig(dataset="tiny", model="nb", image_size=16, augment_factor=1, augment=AugmentConfig.off(),
                           folds=2), n_jobs=1)
    downloads, download_button = {}, st.download_button

    def kept_download(label, data, *args, **kwargs):
        downloads[label] = data
        return download_button(label, data, *args, **kwargs)

    monkeypatch.setattr(st, "download_button", kept_download)
    shown, image_call = [], st.image
    monkeypatch.setattr(st, "image", lambda pictures, *args, **kwargs: (shown.append(pictures),
                                                                         image_call(pictures, *args, **kwargs))[1])
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "compare")
    assert not at.get("image") and "Every image's out-of-fold answer (CSV)" not in downloads
    at.toggle(key="compare_mistakes").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    every = downloads["Every image's out-of-fold answer (CSV)"]
    assert every == csv_text(out_of_fold_rows(result["run_id"]))  # what the oof command writes
    assert len(every.splitlines()) == 1 + sum(fold["n_val"] for fold in result["folds"])
    mistakes = confident_mistakes(result["run_id"])
    wrong = [row for row in out_of_fold_rows(result["run_id"]) if row["correct"] == "no"]
    assert len(mistakes) == min(24, len(wrong)) > 0
    [images] = at.get("image")
    captions = [picture.caption for picture in images.proto.imgs]
    assert captions == [f"{m['true']} → {m['predicted']} ({m['p_' + m['predicted']]:.0%})" for m in mistakes]
    sureness = [m["p_" + m["predicted"]] for m in mistakes]
    assert sureness == sorted(sureness, reverse=True)
    assert [picture.shape for picture in shown[-1]] == [(96, 96, 3)] * len(mistakes)  # read from the folder
    # The files replaced under their names (white squares): the pictures are those the run read,
    # the copies kept beside it (32 px), not what the folder holds now.
    import numpy as np
    from PIL import Image

    from leukdash.evaluation.reference import known_reference

    for mistake in mistakes:
        Image.new("RGB", (32, 32), "white").save(tiny / mistake["file"])
    at.run()
    reference = known_reference(result["run_id"])
    index = {str(name): i for i, name in enumerate(reference["relative"])}
    assert all(np.array_equal(picture, reference["images"][index[m["file"]]]) for picture, m in zip(shown[-1], mistakes))
    assert [picture.caption for picture in at.get("image")[0].proto.imgs] == captions
    # The dataset moved away: the pictures come from the copies kept beside the run (32 px).
    tiny.rename(tiny.with_name("moved"))
    st.cache_data.clear()
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "compare")
    at.toggle(key="compare_mistakes").set_value(True).run()
    [images] = at.get("image")
    assert [picture.caption for picture in images.proto.imgs] == captions



def test_compare_says_when_a_listed_runs_answers_are_gone(tiny, monkeypatch):
    """Runs removed or damaged after the page listed them (another session, a shell): the paired
    tests and the mistakes view, which read the store again, say what is missing instead of
    failing the page. The listing is held as it was (the page caches it for 3 s, which a slow
    machine can outlast between two runs of the page)."""
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run
    from leukdash.engine.store import RunStore
    from pages._shared import comparison

    base = RunConfig(dataset="tiny", image_size=16, augment_factor=1, augment=AugmentConfig.off(), folds=2)
    ids = [run(base.with_changes(model=model), n_jobs=1)["run_id"] for model in ("nb", "dt")]
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "compare")
    assert any(d.value.columns[0] == "Run A" for d in at.dataframe)  # the pair was tested
    surveyed = RunStore().survey()  # what the pages list runs from
    monkeypatch.setattr(RunStore, "survey", lambda self: surveyed)
    for run_id in ids:
        for record in (RunStore().run_dir(run_id) / "folds").glob("*.json"):
            record.write_text("{")  # torn: the listing the page holds still names the runs
    comparison.clear()
    at.toggle(key="compare_mistakes").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    warnings = [w.value for w in at.warning if "is not a finished run" in w.value]
    assert len(warnings) == 2 and all("missing or damaged" in w and any(i in w for i in ids) for w in warnings), \
        warnings



def test_data_page_counts_segmentation_failures_over_the_dataset_when_asked(tiny):
    """Before a run in a cell-level mode: how many images its segmentation fails on, as the audit
    (and the run's warning) counts them, with the files."""
    import cv2
    import numpy as np

    from leukdash.data.audit import audit_preprocessed
    from leukdash.data.discovery import open_dataset

    cv2.imwrite(str(tiny / "ALL" / "blank.png"), np.full((40, 40, 3), 255, np.uint8))  # no cell in it
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    open_page(at, "data")
    at.sidebar.selectbox(key="dataset").set_value("tiny").run(timeout=TIMEOUT)
    at.selectbox(key="data_preprocess").set_value("cell-keep-gray").run(timeout=TIMEOUT)
    assert not [m for m in at.metric if m.label == "Segmentation failures"]  # asked for, not drawn with the page
    at.button(key="data_count_failures").click().run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    expected = audit_preprocessed(open_dataset("tiny"), "cell-keep-gray")
    [metric] = [m for m in at.metric if m.label == "Segmentation failures"]
    assert metric.value == f"{len(expected['failed'])} of {expected['n_images']}" and expected["n_images"] == 31
    [table] = [d.value for d in at.dataframe if "Failure" in d.value.columns]
    assert ("ALL/blank.png", "none found") in set(zip(table["File"], table["Failure"]))


def test_compare_says_how_many_out_of_fold_answers_are_ties(tiny):
    """A 2-NN of two classes ties where its neighbours disagree; the figures count those as the first
    class: Compare says so beside them."""
    from dataclasses import replace

    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run
    from leukdash.evaluation.compare import ties_note
    from pages._session import few_named, literal

    config = RunConfig(dataset="tiny", model="knn", k=2, image_size=16, augment_factor=1, augment=AugmentConfig.off(),
                       folds=2, classes=("ALL", "HEALTHY"))
    result = run(config, n_jobs=1)
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "compare")
    said = [w.value for w in at.warning if "out-of-fold answers are ties between the top classes" in w.value]
    assert len(said) == 1 and said[0].startswith("**2-NN"), said
    assert f"{literal(ties_note(result))}." in said[0], said  # Markdown: a class folder B_ALL is no italics
    # Several tied runs (a sweep's): one box naming them, each run's count in an expander.
    run(replace(config, seed=1), n_jobs=1)
    st.cache_data.clear()  # the page keeps the list of runs a while
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "compare")
    said = [w.value for w in at.warning if "tie between the top classes" in w.value]
    assert len(said) == 1 and said[0].startswith("2 runs count") and said[0].count("2-NN") == 2, said
    [ties] = [e for e in at.expander if e.label == "Ties of each run"]
    assert ties.markdown[0].value.count(literal("counted as the first tied class in the run's order (ALL)")) == 2
    assert few_named([f"run {i}" for i in range(12)]).endswith("run 9 and 2 more")
    assert few_named(["**b** [l](http://x)"]) == literal("**b** [l](http://x)")


def test_compare_follows_the_browsers_back_to_an_earlier_pick_of_runs(isolated_artifacts):
    """Each pick in the runs table is an address in the browser's history (?runs=a,b,c); Back to ?runs=a,b left the
    page on a,b,c, since the kept pick rewrote the address. An address that differs from the page's last one wins."""
    import shutil

    shipped = next((APP.parent / "artifacts" / "runs").glob("nb-*"))
    ids = [f"nb-{i:012x}" for i in range(4)]
    for run_id in ids:
        folder = shutil.copytree(shipped, isolated_artifacts / "runs" / run_id)
        meta = json.loads((folder / "meta.json").read_text())
        (folder / "meta.json").write_text(json.dumps({**meta, "run_id": run_id}))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.query_params["runs"] = ",".join(ids[:3])  # three runs picked
    open_page(at, "compare")
    for picked in (ids[:3], ids[:2], ids[:1], ids[:2]):  # then Back twice and Forward once
        at.query_params["runs"] = ",".join(picked)
        at.run(timeout=TIMEOUT)
        assert not at.exception
        assert at.query_params.get("runs") == ",".join(picked)
        assert f"Comparing {len(picked)} of 4 finished runs." in [c.value for c in at.caption]
