"""The External test view (Compare) and the Predict checks, driven headless with AppTest."""

import json
import shutil
from pathlib import Path

import cv2
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from leukdash.config import AugmentConfig, RunConfig
from leukdash.data.synthetic import CLASSES, generate_synthetic
from leukdash.engine.runner import run
from test_app import shown

APP = Path(__file__).resolve().parent.parent / "streamlit_app.py"
TIMEOUT = 120


@pytest.fixture
def finished(tmp_path, monkeypatch) -> dict:
    """A finished naive Bayes run on 'tiny', and 'tinyother': the same cells with inverted colours
    (another "lab"), two subjects per class."""
    data = tmp_path / "data"
    tiny = generate_synthetic(data / "tiny", counts={c: 6 for c in CLASSES}, size=32)
    rows = ["file,group"]
    for name in CLASSES:
        (data / "tinyother" / name).mkdir(parents=True)
        for i, path in enumerate(sorted((tiny / name).glob("*.png"))):
            cv2.imwrite(str(data / "tinyother" / name / path.name), 255 - cv2.imread(str(path)))
            rows.append(f"{name}/{path.name},{name}-{i % 2}")
    (data / "tinyother" / "groups.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setenv("LEUKDASH_DATA", str(data))
    result = run(RunConfig(dataset="tiny", model="nb", feature_set="features", image_size=32, augment_factor=1,
                           augment=AugmentConfig.off(), folds=2), n_jobs=1)
    st.cache_data.clear()
    yield {"run_id": result["run_id"], "data": data}
    st.cache_data.clear()


def test_external_test_view_runs_and_shows_the_test(finished):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    assert any("No external test stored" in i.value for i in at.info)
    at.selectbox(key="compare_external_dataset").set_value("tinyother")
    at.button(key="compare_external_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    figure = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                  if "external dataset" in json.dumps(json.loads(c.proto.spec)["layout"].get("yaxis", {})))
    bars = [t for t in figure["data"] if t["type"] == "bar"]
    assert len(bars) == 1 and bars[0]["x"][0] == ["tinyother"]
    low, high = bars[0]["error_y"]["arrayminus"][0], bars[0]["error_y"]["array"][0]
    assert low >= 0 and high >= 0
    sentence = next(shown(m.value) for m in at.markdown if "trained on tiny" in m.value)
    assert "On tinyother (30 images, 10 groups)" in sentence and "flagged as unlike its training data" in sentence
    # Two subjects per class: the whiskers are the spread between those two, and the page says so
    # (in literal text: markdown's characters escaped).
    few = ("The intervals rest on few groups (2 of ALL, 2 of AML, 2 of CLL, 2 of CML, 2 of HEALTHY): the bootstrap "
           "can only redraw these")
    assert any(c.value.replace("\\", "").startswith(few) for c in at.caption)
    table = next(d.value for d in at.dataframe if "Tested on" in d.value.columns)
    assert list(table["Tested on"]) == ["tinyother"] and table["OOD share"].iloc[0] >= 90
    [download] = at.get("download_button")[-1:]
    assert download.proto.label == "Per-image answers (CSV)" and download.proto.url.endswith(".csv")


def test_an_external_test_not_stored_is_said_on_the_page(finished):
    """Under `ulimit -f` the test's result was shown as stored while it was not (its StoreWarning went to the
    server's log only): the page says each file it could not keep, once."""
    from tests.damage import file_size_limit

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/compare.py").run()
    at.selectbox(key="compare_external_dataset").set_value("tinyother")
    with file_size_limit(2000):
        at.button(key="compare_external_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    unkept = [shown(w.value) for w in at.warning if shown(w.value).startswith("not stored: ")]
    assert len(unkept) == len(set(unkept)) and any(
        f"runs/{finished['run_id']}/external/" in line and "ulimit -f" in line for line in unkept), unkept


def test_the_external_view_tests_the_models_adapted_to_the_test_set_apart(finished):
    """The switch runs and shows the adapted external test (`evaluate --adapt`'s figures), listed
    apart from the tests of the models as trained."""
    from leukdash.evaluation.evaluate import evaluate

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/compare.py").run()
    at.toggle(key="compare_external_adapt").set_value(True).run()
    assert any("No external test of the adapted models stored" in i.value for i in at.info)
    at.selectbox(key="compare_external_dataset").set_value("tinyother")
    at.button(key="compare_external_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    adapted = evaluate(finished["run_id"], str(finished["data"] / "tinyother"), adapt=True)  # stored: read back
    table = next(d.value for d in at.dataframe if "Tested on" in d.value.columns)
    assert list(table["Value"]) == pytest.approx([100 * adapted["balanced_accuracy"]])
    assert any(c.value.replace("\\", "").startswith("adapted: the classic models standardised") for c in at.caption)
    at.toggle(key="compare_external_adapt").set_value(False).run()
    assert any("No external test stored for these runs yet" in i.value for i in at.info)


def test_the_external_test_view_says_which_images_it_left_out(finished):
    data = finished["data"]
    for path in sorted((data / "tinyother").glob("*/*.png")):  # another lab's images, and two training images
        (data / "tinymixed" / path.parent.name).mkdir(parents=True, exist_ok=True)
        (data / "tinymixed" / path.parent.name / path.name).write_bytes(path.read_bytes())
    for i, path in enumerate(sorted((data / "tiny").glob("ALL/*.png"))[:2]):
        (data / "tinymixed" / "ALL" / f"copy{i}.png").write_bytes(path.read_bytes())
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/compare.py").run()
    at.selectbox(key="compare_external_dataset").set_value("tinymixed")
    at.button(key="compare_external_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    from pages._session import literal

    said = [c.value for c in at.caption if "of tinymixed left out" in c.value]
    assert said == [literal(f"2 of 32 image(s) of tinymixed left out: run {finished['run_id']} was trained on them "
                            "(the same bytes), so they would score what it remembers")], said


def test_predict_warns_on_an_unfamiliar_image_and_recognises_a_known_one(finished):
    data = finished["data"]
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/predict.py").run()
    at.selectbox(key="predict_run").set_value(finished["run_id"])
    own, other = (data / "tiny" / "CLL" / "CLL_0003.png").read_bytes(), \
        (data / "tinyother" / "CLL" / "CLL_0003.png").read_bytes()
    at.file_uploader(key="predict_upload").set_value([("own.png", own, "image/png"), ("other.png", other, "image/png")])
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    # Other warnings (likely wrong, a split vote) may accompany an answer; one image is unfamiliar.
    warnings = [w.value for w in at.warning if "does not look like" in w.value]
    assert len(warnings) == 1 and "does not look like the images this run was trained on" in warnings[0]
    assert "99th percentile" in warnings[0]
    known = [shown(i.value) for i in at.info if "Known image" in i.value]
    assert len(known) == 1 and " CLL/CLL_0003.png " in known[0] and "never trained on it" in known[0]
    assert any("Looks like the training data" in c.value for c in at.caption)


def test_predict_says_when_a_known_image_is_filed_under_two_classes(finished):
    """One picture held under two labels (here turned a quarter): the Known image note named one copy
    only; it names both, and a warning says the labels conflict."""
    from PIL import Image

    data = finished["data"]
    shutil.copytree(data / "tiny", data / "clash")
    Image.open(data / "clash" / "CLL" / "CLL_0003.png").rotate(90).save(data / "clash" / "AML" / "turned.png")
    run_id = run(RunConfig(dataset="clash", model="nb", feature_set="features", image_size=32, augment_factor=1,
                           augment=AugmentConfig.off(), folds=2), n_jobs=1)["run_id"]
    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/predict.py").run()
    at.selectbox(key="predict_run").set_value(run_id)
    own = (data / "clash" / "CLL" / "CLL_0003.png").read_bytes()
    at.file_uploader(key="predict_upload").set_value([("own.png", own, "image/png")])
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    [known] = [shown(i.value) for i in at.info if "Known image" in i.value]
    assert "to CLL/CLL_0003.png (labelled CLL), also to AML/turned.png (labelled AML) in the run's" in known
    assert any(shown(w.value).startswith("**Labels conflict**: the run's dataset holds this picture under AML and "
                                         "CLL; one of the labels is wrong.") for w in at.warning)


def test_the_external_view_shows_no_interval_where_one_group_holds_every_image(finished):
    """A test set of one group (groups.csv): no whiskers, the sentence says n/a and why, and no
    note on few groups (there is no interval for it to qualify)."""
    data, rows = finished["data"], ["file,group"]
    for path in sorted((data / "tinyother").glob("*/*.png")):
        (data / "onegroup" / path.parent.name).mkdir(parents=True, exist_ok=True)
        (data / "onegroup" / path.parent.name / path.name).write_bytes(path.read_bytes())
        rows.append(f"{path.parent.name}/{path.name},P1")
    (data / "onegroup" / "groups.csv").write_text("\n".join(rows) + "\n")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/compare.py").run()
    at.selectbox(key="compare_external_dataset").set_value("onegroup")
    at.button(key="compare_external_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    sentence = next(shown(m.value) for m in at.markdown if "trained on tiny" in m.value)
    assert "(95% group bootstrap n/a: one group holds every image)" in sentence
    assert not any("rest on few groups" in c.value for c in at.caption)
    figure = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                  if "external dataset" in json.dumps(json.loads(c.proto.spec)["layout"].get("yaxis", {})))
    [bar] = [t for t in figure["data"] if t["type"] == "bar"]
    assert bar["error_y"]["array"] == [0] and "95% CI n/a" in bar["hovertemplate"]
