"""The Predict page on a fresh deployment: the shipped demo runs alone (no dataset drawn, nothing
cached), the honest headline, and the uploader's limit."""

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest
from test_app import shown

APP = Path(__file__).resolve().parent.parent / "streamlit_app.py"
SHIPPED_RUNS = APP.parent / "artifacts" / "runs"
TIMEOUT = 120


@pytest.fixture
def fresh_deploy(isolated_artifacts, monkeypatch) -> Path:
    """A viewer deployment whose store holds a copy of the shipped naive-Bayes demo run."""
    shipped = next(p for p in SHIPPED_RUNS.iterdir() if p.name.startswith("nb-"))
    shutil.copytree(shipped, isolated_artifacts / "runs" / shipped.name)
    monkeypatch.setenv("LEUKDASH_MODE", "viewer")
    st.cache_data.clear()
    yield isolated_artifacts
    st.cache_data.clear()


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_fresh_deployment_predicts_with_both_checks_and_draws_no_dataset(fresh_deploy):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/predict.py").run()
    assert not at.exception, [e.value for e in at.exception]
    uploader = at.file_uploader(key="predict_upload")
    assert uploader.proto.max_upload_size_mb == 50 and any("up to 50 MB" in c.value for c in at.caption)
    image = np.random.default_rng(1).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    uploader.set_value([("cell.png", _png(image), "image/png")])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    headline = next(shown(m.value) for m in at.markdown if m.value.startswith("Predicted:"))
    assert headline.split("**")[1] in ("ALL", "AML", "CLL", "CML", "HEALTHY")
    assert " · mean probability " in headline and " over 5 fold models · votes: " in headline
    votes = headline.split("votes: ")[1].split(", ")
    assert sum(int(vote.rsplit(" ", 1)[1]) for vote in votes) == 5
    # Both checks were made from what ships beside the run: no dataset was drawn or read.
    # (Noise is far from every training image: the out-of-distribution warning says so.)
    said = " ".join(element.value for element in [*at.caption, *at.warning, *at.info])
    assert "unavailable" not in said and "Its distance to them scores" in said
    assert not (fresh_deploy / "datasets").exists() and not (fresh_deploy / "cache" / "arrays").exists()


def test_the_upload_caption_names_every_type_the_uploader_takes(fresh_deploy):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/predict.py").run()
    types = list(at.file_uploader(key="predict_upload").proto.type)
    [caption] = [c.value for c in at.caption if "megapixels" in c.value]
    assert ".webp" in types and [t for t in types if t not in caption] == [], caption


def test_a_known_image_is_headlined_by_its_out_of_fold_answer_on_a_fresh_deployment(fresh_deploy):
    from leukdash.evaluation.predict import known_image

    run_id = next((fresh_deploy / "runs").iterdir()).name
    with np.load(fresh_deploy / "runs" / run_id / "reference.npz") as reference:
        image, fold, file = reference["images"][7], int(reference["fold_of"][7]), str(reference["relative"][7])
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/predict.py").run()
    at.file_uploader(key="predict_upload").set_value([("thumb.png", _png(image), "image/png")])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    known = known_image(run_id, image)
    assert known["file"] == file and known["fold"] == fold + 1
    headline = next(m.value for m in at.markdown if m.value.startswith("Predicted:"))
    assert headline.startswith(f"Predicted: **{known['prediction']}** · ")
    assert f"from fold {fold + 1}'s model, the one that never trained on this image" in headline
    assert any(f" {file} " in shown(info.value) and "Known image" in info.value for info in at.info)
    assert not (fresh_deploy / "datasets").exists()


def test_a_newer_quick_run_does_not_become_every_visitors_default(fresh_deploy, tiny_dataset):
    """Where no run transfers, Predict opened on the newest finished run: on a shared deployment any
    visitor's throwaway run became everyone's default. It opens on the best cross-validated run, runs of
    the full 5 folds first, and says so."""
    from leukdash.config import RunConfig
    from leukdash.engine.runner import run
    from leukdash.engine.store import RunStore

    knn = next(p for p in SHIPPED_RUNS.iterdir() if p.name.startswith("knn-"))
    shutil.copytree(knn, fresh_deploy / "runs" / knn.name)
    store = RunStore()
    shipped = {p.name: store.read_summary(p.name)["balanced_acc"]["mean"] for p in (fresh_deploy / "runs").iterdir()}
    quick = run(RunConfig(dataset=str(tiny_dataset), image_size=16, folds=2, augment_factor=1, model="nb"), n_jobs=1)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/predict.py").run()
    assert not at.exception, [e.value for e in at.exception]
    run_select = at.selectbox(key="predict_run")
    assert any(quick["run_id"][3:9] in option for option in run_select.options)  # still one click away
    assert run_select.value == max(shipped, key=shipped.get)
    assert any("best cross-validated balanced accuracy, runs of the full 5 folds before quicker ones" in c.value
               for c in at.caption)


def test_what_a_prediction_could_not_store_is_said_on_the_page_once(fresh_deploy, tiny_dataset):
    """Under `ulimit -f` the checks' files a prediction builds were not stored, and only the server's log said so
    (a StoreWarning): the page says each once, above the answers of every upload."""
    from leukdash.config import RunConfig
    from leukdash.engine.runner import run
    from tests.damage import file_size_limit

    # the engine's run stores none of the checks' files: the first prediction builds and stores them
    quick = run(RunConfig(dataset=str(tiny_dataset), image_size=16, folds=2, augment_factor=1, model="nb"), n_jobs=1)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/predict.py").run()
    at.selectbox(key="predict_run").set_value(quick["run_id"]).run()
    rng = np.random.default_rng(2)
    at.file_uploader(key="predict_upload").set_value(
        [(f"cell{i}.png", _png(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)), "image/png") for i in range(2)])
    with file_size_limit(2000):
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    unkept = [shown(w.value) for w in at.warning if shown(w.value).startswith("not stored: ")]
    assert len(unkept) == len(set(unkept)) and any(
        f"runs/{quick['run_id']}/" in line and "ulimit -f" in line for line in unkept), unkept


def test_the_run_caption_says_how_uploads_are_prepared_for_a_cell_mode_run(fresh_deploy, tiny_dataset):
    """The caption said "padded square and resized the same way" for every run: a cell-mode run's
    uploads are cut to their cell first, which the caption now names as the run's mode does."""
    from leukdash.config import RunConfig
    from leukdash.engine.runner import run

    cells = run(RunConfig(dataset=str(tiny_dataset), image_size=16, folds=2, augment_factor=1, model="nb",
                          preprocess="cell-fit-gray"), n_jobs=1)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/predict.py").run()
    at.selectbox(key="predict_run").set_value(cells["run_id"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("prepared as its images were (cell-fit-gray: the cell alone" in c.value for c in at.caption), \
        [c.value for c in at.caption]
    at.selectbox(key="predict_run").set_value(next(p.name for p in (fresh_deploy / "runs").iterdir()
                                                   if p.name.startswith("nb-") and p.name != cells["run_id"])).run()
    assert any("prepared as its images were (raw: the whole image" in c.value for c in at.caption)
    # An ensemble of runs that prepare images differently has no one mode (its config says "mixed").
    from leukdash.engine.ensemble import create_ensemble

    raw = run(RunConfig(dataset=str(tiny_dataset), image_size=16, folds=2, augment_factor=1, model="nb"), n_jobs=1)
    joined = create_ensemble([raw["run_id"], cells["run_id"]])["run_id"]
    st.cache_data.clear()  # the page's list of finished runs, made before the ensemble was
    at.run()
    at.selectbox(key="predict_run").set_value(joined).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Each member prepares uploads as its own images were (their preprocessing differs)" in c.value
               for c in at.caption), [c.value for c in at.caption]


def test_the_loading_note_goes_once_an_answer_shows_the_models_loaded(fresh_deploy, monkeypatch):
    """A page run that starts before the warm-up ends says it is loading; once an image is answered
    in that same run the models are loaded, and the note is no longer shown above the answer."""
    monkeypatch.setattr("leukdash.evaluation.predict.warmed_up", lambda run_id: False)  # every run starts cold
    loading = "Loading this run's fold models"
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/predict.py").run()
    assert any(loading in caption.value for caption in at.caption)
    image = np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    at.file_uploader(key="predict_upload").set_value([("cell.png", _png(image), "image/png")])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.value.startswith("Predicted:") for m in at.markdown)
    assert not any(loading in caption.value for caption in at.caption)


def test_a_run_deleted_under_its_warm_up_ends_it_quietly(fresh_deploy):
    """The background warm-up may outlive what it reads: a run removed meanwhile (evicted, deleted
    by hand) ends it without an exception, and the prediction says why in one line, as a fresh
    process would (the loaded models are not used once their files changed)."""
    from leukdash.engine.store import RunStore
    from leukdash.errors import RunError
    from leukdash.evaluation import predict

    store = RunStore()
    run_id = next(p.name for p in (fresh_deploy / "runs").iterdir() if p.name.startswith("nb-"))
    predict.ensemble(run_id, store)  # the models are loaded first, as the warm-up does
    (store.run_dir(run_id) / "meta.json").unlink()
    predict.prepare_checks(run_id, store)  # raised TypeError in the warm-up thread before
    with pytest.raises(RunError) as refused:
        predict.predict_images(run_id, [np.zeros((40, 40, 3), np.uint8)], store)
    assert str(refused.value) == f"run {run_id!r} is not a finished run in {store.root}"


def test_the_answers_download_as_one_table_row_per_upload(fresh_deploy):
    """Every upload, read or not, is a row of the "Answers (CSV)" download, above the answers."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/predict.py").run()
    assert not at.get("download_button")  # nothing answered yet
    image = np.random.default_rng(2).integers(0, 256, (60, 60, 3), dtype=np.uint8)
    at.file_uploader(key="predict_upload").set_value([("cell.png", _png(image), "image/png"),
                                                      ("broken.png", b"not an image", "image/png")])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    [button] = at.get("download_button")
    assert button.proto.label == "Answers (CSV)" and "One row per image" in button.proto.help
    assert button.proto.url.endswith(".csv")
    # Several uploads: every answer at a glance above the cards, the unreadable one with its reason.
    [summary] = [d.value for d in at.dataframe if "File" in d.value.columns]
    assert list(summary["File"]) == ["cell.png", "broken.png"]
    headline = next(m.value for m in at.markdown if m.value.startswith("Predicted:"))
    assert summary["Predicted"][0] == headline.split("**")[1] and summary["Cannot read"][1].startswith("not an image")


def test_many_uploads_of_one_lab_can_be_answered_by_the_models_adapted_to_them(fresh_deploy, tmp_path):
    """From 20 uploads on, a toggle adapts the run's models to them: the page's answers are then the
    engine's `predict --adapt` answers for the same files, and it says so."""
    from leukdash.data.synthetic import CLASSES, generate_synthetic
    from leukdash.evaluation.predict import predict_files

    folder = generate_synthetic(tmp_path / "lab", seed=5, counts={name: 5 for name in CLASSES}, size=48)
    files = sorted(folder.glob("*/*.png"))
    uploads = [(f"{path.parent.name}_{path.name}", path.read_bytes(), "image/png") for path in files]
    run_id = next(p.name for p in (fresh_deploy / "runs").iterdir())
    expected = predict_files(run_id, files, adapt=True)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/predict.py").run()
    at.file_uploader(key="predict_upload").set_value(uploads[:19])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [t for t in at.toggle if t.key == "predict_adapt"]  # too few to stand for a lab
    at.file_uploader(key="predict_upload").set_value(uploads)
    at.run()
    [summary] = [d.value for d in at.dataframe if "File" in d.value.columns]
    plain = list(summary["Probability"])
    at.toggle(key="predict_adapt").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"models adapted to these {len(files)} uploads" in c.value for c in at.caption)
    [summary] = [d.value for d in at.dataframe if "File" in d.value.columns]
    assert list(summary["Predicted"]) == [entry["predicted"] for entry in expected]
    assert list(summary["Probability"]) == pytest.approx([100 * entry["probabilities"][entry["predicted"]]
                                                          for entry in expected], abs=0.01)
    assert list(summary["Probability"]) != pytest.approx(plain, abs=0.01)
    # The support check compares the uploads as that lab's images too, from what ships beside the run.
    assert list(summary["Unsupported"]) == ["yes" if entry["unsupported"]["flag"] else "no" for entry in expected]



def test_many_uploads_unlike_the_training_images_are_compared_as_one_labs_as_predict_does(fresh_deploy, tmp_path):
    """20 uploads of another 'lab' (colours inverted): without adapting, the page's support check
    compares them as one lab's images, as `predict` does for the same files, and says so."""
    import cv2

    from leukdash.data.synthetic import CLASSES, generate_synthetic
    from leukdash.evaluation.predict import predict_files

    folder = generate_synthetic(tmp_path / "lab", seed=6, counts={name: 4 for name in CLASSES}, size=48)
    files = sorted(folder.glob("*/*.png"))
    for path in files:
        cv2.imwrite(str(path), 255 - cv2.imread(str(path)))
    run_id = next(p.name for p in (fresh_deploy / "runs").iterdir())
    expected = predict_files(run_id, files)
    assert all(entry["unsupported"]["one_lab"] for entry in expected)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/predict.py").run()
    at.file_uploader(key="predict_upload").set_value(
        [(f"{path.parent.name}_{path.name}", path.read_bytes(), "image/png") for path in files])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("the support check compares them as one lab's images" in c.value for c in at.caption)
    [summary] = [d.value for d in at.dataframe if "File" in d.value.columns]
    assert list(summary["Unsupported"]) == ["yes" if entry["unsupported"]["flag"] else "no" for entry in expected]
    assert not (fresh_deploy / "datasets").exists()  # what ships beside the run is enough


def test_answers_whose_checks_cannot_be_made_say_so_above_them_without_the_servers_folders(isolated_artifacts,
                                                                                           tiny_dataset, tmp_path,
                                                                                           monkeypatch):
    """The run's dataset folder is gone and its checks were never stored: the page answers, and one
    warning above the answers says which checks were not made and why, naming no server folder."""
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run

    data = tmp_path / "data"
    copy = shutil.copytree(tiny_dataset, data / "moved")
    monkeypatch.setenv("LEUKDASH_DATA", str(data))
    config = RunConfig(dataset=str(copy), model="nb", feature_set="pixels", image_size=16, augment_factor=1,
                       augment=AugmentConfig.off(), folds=2)
    run(config, n_jobs=1)
    shutil.rmtree(copy)
    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/predict.py").run()
    image = np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    at.file_uploader(key="predict_upload").set_value([("a.png", _png(image), "image/png"),
                                                       ("b.png", _png(image[::-1]), "image/png")])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert sum(m.value.startswith("Predicted:") for m in at.markdown) == 2
    [warning] = [w.value for w in at.warning if w.value.startswith("**Not checked**")]
    assert "ood, known and support checks unavailable" in warning and "which are gone" in warning
    assert str(data) not in warning and "moved" in warning
    assert not [c.value for c in at.caption if "unavailable" in c.value]


def test_a_large_upload_is_shown_shrunk_not_handed_whole_to_the_browser(fresh_deploy, monkeypatch):
    """A 48-megapixel upload took the server from 268 MB to over 1 GB: the page handed the whole array to
    st.image. The picture shown is bounded (its longer side), its aspect kept; the caption gives its true size."""
    from leukdash.reporting.plots.predict import DISPLAY_SIDE

    shown = []
    draw = st.image

    def recorded(image, **kwargs):
        shown.append((image, kwargs["caption"]))
        return draw(image, **kwargs)

    monkeypatch.setattr(st, "image", recorded)
    tile = np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("pages/predict.py").run()
    at.file_uploader(key="predict_upload").set_value([("big.png", _png(np.tile(tile, (100, 100, 1))), "image/png")])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    [(picture, caption)] = shown
    assert picture.shape == (DISPLAY_SIDE * 3 // 4, DISPLAY_SIDE, 3) and caption == "4000×3000 px"



def _tiny_cnn_run(tiny_dataset) -> str:
    from leukdash.config import RunConfig
    from leukdash.engine.runner import run

    config = RunConfig(dataset=str(tiny_dataset), model="cnn", image_size=16, augment_factor=2, folds=3, epochs=1)
    return run(config, n_jobs=1)["run_id"]


def test_the_heatmaps_the_page_draws_are_not_computed_again_on_a_rerun(tiny_dataset, isolated_artifacts,
                                                                       monkeypatch):
    # The page draws the Grad-CAMs of its first GRADCAM_UPLOADS uploads in order: with fewer maps kept than
    # drawn, each rerun evicted each map just before it was drawn, and computed all of them again.
    from leukdash.evaluation import gradcam as engine
    from pages import _shared

    run_id = _tiny_cnn_run(tiny_dataset)
    computed, real = [], engine.gradcam
    monkeypatch.setattr(engine, "gradcam", lambda *args, **options: computed.append(1) or real(*args, **options))
    pictures = [np.random.default_rng(seed).integers(0, 256, (24, 24, 3), np.uint8)
                for seed in range(_shared.GRADCAM_UPLOADS)]
    st.cache_data.clear()
    try:
        for _ in range(2):  # the page drawn, then drawn again on a rerun
            maps = [_shared.gradcam(str(isolated_artifacts), run_id, _png(picture), picture) for picture in pictures]
    finally:
        st.cache_data.clear()
    assert len(computed) == len(pictures)
    assert all(m.shape == (24, 24) for m in maps)


def test_grad_cams_are_drawn_for_as_many_uploads_as_kept_and_the_page_says_so(tiny_dataset, isolated_artifacts,
                                                                               monkeypatch):
    """Beyond the maps kept (GRADCAM_UPLOADS, 2 here), a Grad-CAM for every upload would evict each map
    before its next drawing, and keep none: the rest are answered without one, and the page says so."""
    from pages import _shared

    run_id = _tiny_cnn_run(tiny_dataset)
    monkeypatch.setattr(_shared, "GRADCAM_UPLOADS", 2)
    pictures = [np.random.default_rng(seed).integers(0, 256, (24, 24, 3), np.uint8) for seed in range(3)]
    st.cache_data.clear()
    try:
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
        at.switch_page("pages/predict.py").run()
        at.selectbox(key="predict_run").set_value(run_id)
        at.file_uploader(key="predict_upload").set_value(
            [(f"cell{number}.png", _png(picture), "image/png") for number, picture in enumerate(pictures)])
        at.run()
    finally:
        st.cache_data.clear()
    assert not at.exception, [e.value for e in at.exception]
    captions = [caption for element in at.image for caption in element.captions]
    assert sum(caption.startswith("Grad-CAM for ") for caption in captions) == 2
    assert sum(m.value.startswith("Predicted:") for m in at.markdown) == 3
    assert any("Grad-CAM heatmaps for the first 2 of these 3 uploads only" in shown(c.value) for c in at.caption)
