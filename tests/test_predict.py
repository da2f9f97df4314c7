"""Prediction from the engine and the command line: Grad-CAM, checks it cannot make, arrays held
to what a file is, files answered a chunk at a time."""

import numpy as np
import pytest

from leukdash.evaluation.gradcam import gradcam_map, gradcam_probe


def test_gradcam_highlights_the_region_the_class_depends_on():
    import keras

    # A model whose class-1 score grows with the amount of red: its only feature map is the
    # red channel, so Grad-CAM for class 1 must light up where the image is red.
    inputs = keras.Input((32, 32, 3))
    red = keras.layers.Conv2D(1, 1, activation="relu", kernel_initializer=keras.initializers.Constant([[[[1.0], [0.0], [0.0]]]]),
                              bias_initializer="zeros")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(red)
    outputs = keras.layers.Dense(2, activation="softmax", kernel_initializer=keras.initializers.Constant([[-1.0, 1.0]]),
                                 bias_initializer="zeros")(pooled)
    model = keras.Model(inputs, outputs)
    image = np.zeros((1, 32, 32, 3), np.float32)
    image[0, 8:16, 18:28, 0] = 1.0
    heatmap = gradcam_map(gradcam_probe(model), image, class_index=1)
    assert heatmap.shape == (32, 32)
    inside = heatmap[8:16, 18:28]
    assert inside.min() > 0 and np.count_nonzero(heatmap) == inside.size
    assert np.unravel_index(heatmap.argmax(), heatmap.shape)[0] in range(8, 16)


def test_predict_says_once_which_checks_it_could_not_make_and_answers_all_the_same(tiny_dataset, tmp_path, capsys):
    """The run's dataset is gone: the out-of-distribution and known-image checks cannot be made.
    The command says so once, naming both, before answering every image."""
    import shutil

    from leukdash.cli import main
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run

    copy = shutil.copytree(tiny_dataset, tmp_path / "moved")
    config = RunConfig(dataset=str(copy), model="nb", feature_set="pixels", image_size=16, augment_factor=1,
                       augment=AugmentConfig.off(), folds=2)
    run_id = run(config, n_jobs=1)["run_id"]
    images = sorted(str(path) for path in tiny_dataset.glob("ALL/*.png"))[:2]
    shutil.rmtree(copy)
    assert main(["predict", run_id, *images]) == 0
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: ood, known and support checks unavailable: run ")
    assert "which are gone" in warnings[0] and warnings[0].endswith("(the answers below are given without them)")
    assert sum(line.startswith(tuple(images)) for line in out.splitlines()) == 2



def test_a_runs_dataset_whose_images_changed_is_named_with_the_folder_that_holds_others(tiny_dataset, tmp_path,
                                                                                      capsys):
    """The run's folder is still there but holds other images: the warning names that folder and
    what to do, rather than saying the images are gone."""
    import shutil

    from leukdash.cli import main
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run

    copy = shutil.copytree(tiny_dataset, tmp_path / "changed")
    config = RunConfig(dataset=str(copy), model="nb", feature_set="pixels", image_size=16, augment_factor=1,
                       augment=AugmentConfig.off(), folds=2)
    run_id = run(config, n_jobs=1)["run_id"]
    sorted(copy.glob("HEALTHY/*.png"))[0].unlink()
    image = str(sorted(tiny_dataset.glob("ALL/*.png"))[0])
    assert main(["predict", run_id, image]) == 0
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and f"run {run_id} needs the images it was trained on" in warnings[0]
    assert f"{copy.resolve()} holds other images now" in warnings[0] and "which are gone" not in warnings[0]
    assert "put the run's images back, or run it again" in warnings[0]
    assert sum(line.startswith(image) for line in out.splitlines()) == 1

def test_predict_says_a_run_was_trained_on_synthetic_data_as_the_predict_page_does(tiny_dataset, tmp_path, capsys):
    """Its answers look clinical; a run of real images (no synthetic SOURCE.md) gets no such note."""
    import json
    import shutil

    from leukdash.cli import main
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.data.dataset import SYNTHETIC_RUN_NOTE
    from leukdash.engine.runner import run

    real = shutil.copytree(tiny_dataset, tmp_path / "real")
    (real / "SOURCE.md").unlink()
    sorted(real.glob("HEALTHY/*.png"))[0].unlink()  # other images, so another run (a run is named by its images)
    synthetic_id, real_id = (run(RunConfig(dataset=str(folder), model="nb", image_size=16, augment_factor=1,
                                           augment=AugmentConfig.off(), folds=2), n_jobs=1)["run_id"]
                             for folder in (tiny_dataset, real))
    image = str(sorted(tiny_dataset.glob("ALL/*.png"))[0])
    note = ("note: this run was trained on synthetic demo data, not clinical: its answers say nothing about real "
            "blood cells")
    for args in ([], ["--csv"]):
        assert main(["predict", synthetic_id, image, *args]) == 0
        assert note in capsys.readouterr().err.splitlines()
    assert main(["predict", synthetic_id, image, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["note"] == SYNTHETIC_RUN_NOTE
    assert main(["predict", real_id, image]) == 0
    assert "synthetic" not in capsys.readouterr().err
    assert main(["predict", real_id, image, "--json"]) == 0
    assert "note" not in json.loads(capsys.readouterr().out)


def test_arrays_given_to_predict_are_held_to_what_a_file_is(tiny_dataset):
    """From a notebook: no images is no answers; a strip 200 times longer than wide is refused
    as decode_image refuses such a file, not answered."""
    import pytest

    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run
    from leukdash.errors import ImageDecodeError
    from leukdash.evaluation.predict import predict_images

    config = RunConfig(dataset=str(tiny_dataset), model="nb", feature_set="features", image_size=16,
                       augment_factor=1, augment=AugmentConfig.off(), folds=2)
    run_id = run(config, n_jobs=1)["run_id"]
    assert predict_images(run_id, []) == []
    with pytest.raises(ImageDecodeError, match=r"extreme aspect ratio: 400x2 pixels, more than 20:1"):
        predict_images(run_id, [np.zeros((2, 400, 3), np.uint8)])


@pytest.mark.parametrize("chunk, chunk_bytes, calls", [(2, 2**30, 3), (64, 1, 5)])
def test_files_are_answered_a_chunk_at_a_time_as_in_one_batch(tiny_dataset, monkeypatch, tmp_path, chunk,
                                                               chunk_bytes, calls):
    """A folder of thousands of fields is decoded and answered a few images (or bytes) at a time:
    the same answers as in one batch, in the files' order, an unreadable file kept in its place."""
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run
    from leukdash.evaluation import predict

    config = RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, augment_factor=1,
                       augment=AugmentConfig.off(), folds=2)
    run_id = run(config, n_jobs=1)["run_id"]
    (tmp_path / "broken.png").write_bytes(b"not an image")
    files = [*sorted(tiny_dataset.glob("CML/*.png"))[:2], tmp_path / "broken.png",
             *sorted(tiny_dataset.glob("ALL/*.png"))[:3]]
    whole = predict.predict_files(run_id, files)
    seen = []
    answer = predict.predict_images
    monkeypatch.setattr(predict, "predict_images", lambda run_id, images, store=None, **given: seen.append(len(images))
                        or answer(run_id, images, store, **given))
    monkeypatch.setattr(predict, "PREDICT_CHUNK", chunk)
    monkeypatch.setattr(predict, "PREDICT_CHUNK_BYTES", chunk_bytes)
    assert predict.predict_files(run_id, files) == whole
    assert len(seen) == calls and sum(seen) == 5 and "error" in whole[2]


def test_a_folder_given_by_a_relative_path_or_through_a_link_is_answered_image_by_image(tiny_dataset, tmp_path,
                                                                                        monkeypatch):
    """`predict RUN data/ALL` from the folder above: each image is answered, not refused as leading
    outside its folder (the check compared the file's real path with the folder as typed)."""
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run
    from leukdash.evaluation.predict import predict_files

    config = RunConfig(dataset=str(tiny_dataset), model="nb", feature_set="pixels", image_size=16,
                       augment_factor=1, augment=AugmentConfig.off(), folds=2)
    run_id = run(config, n_jobs=1)["run_id"]
    (tmp_path / "linked").symlink_to(tiny_dataset / "ALL", target_is_directory=True)
    monkeypatch.chdir(tiny_dataset)
    n_images = len(list((tiny_dataset / "ALL").glob("*.png")))
    for folder in ("ALL", tmp_path / "linked"):
        entries = predict_files(run_id, [folder])
        assert len(entries) == n_images and not [entry.get("error") for entry in entries if "error" in entry]
        assert all(entry["predicted"] for entry in entries)


def test_a_known_image_among_uploads_taken_for_one_lab_is_answered_by_its_adapted_out_of_fold_model(
        tiny_dataset, inverted_lab):
    """With the models adapted to a lab's uploads, one of the run's own images among them is
    headlined by its validation fold's model adapted too, as every other answer is."""
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.data.decode import decode_image
    from leukdash.engine.runner import run
    from leukdash.evaluation.predict import adapted_models, predict_images

    config = RunConfig(dataset=str(tiny_dataset), model="svm", feature_set="features", image_size=16,
                       augment_factor=1, augment=AugmentConfig.off(), folds=2)
    run_id = run(config, n_jobs=1)["run_id"]
    adapted = adapted_models(run_id, sorted(inverted_lab.glob("*/*.png")))
    image = decode_image(sorted(tiny_dataset.glob("CLL/*.png"))[0])
    plain, answered = predict_images(run_id, [image])[0]["known"], predict_images(run_id, [image], models=adapted)[0]
    known = answered["known"]
    expected = adapted.fold_probabilities([image])[adapted.meta["fold_ids"].index(known["fold"] - 1), 0]
    assert list(known["probabilities"].values()) == pytest.approx(expected, abs=1e-6)
    assert list(known["probabilities"].values()) != pytest.approx(list(plain["probabilities"].values()), abs=1e-3)


def test_files_of_a_predicted_folder_that_are_not_images_are_said_not_dropped(tiny_dataset, tmp_path, capsys):
    """A folder given to predict: its images are answered, and the files it holds of a type not read
    (an animated .gif, notes) are named by type in one warning, as the dataset scan says them."""
    import shutil

    from leukdash.cli import main
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run

    config = RunConfig(dataset=str(tiny_dataset), model="nb", feature_set="pixels", image_size=16, augment_factor=1,
                       augment=AugmentConfig.off(), folds=2)
    run_id = run(config, n_jobs=1)["run_id"]
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in sorted(tiny_dataset.glob("ALL/*.png"))[:2]:
        shutil.copy(path, folder / path.name)
    (folder / "notes.txt").write_text("slide 4")
    (folder / "more notes.txt").write_text("slide 5")
    (folder / "cell.gif").write_bytes(b"GIF89a")
    assert main(["predict", run_id, str(folder)]) == 0
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) >= 2 and ".gif" not in out
    [line] = [line for line in err.splitlines() if "not read" in line]
    # Counted by type, the most common first.
    assert line == f"warning: {folder}: 2 .txt and 1 .gif file(s) not read (the image types read are " \
                   ".jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp, .jp2)"


def test_predict_names_the_argument_of_a_wrong_type_and_takes_a_generator_of_images(tiny_dataset):
    """``predict_images(run, None)`` said "has no len()", ``predict_files(run, None)`` "'NoneType' object
    is not iterable" and a path for ``store`` "'str' object has no attribute 'root'": each is now a
    TypeError that names the parameter; a generator of images is read as the images it yields."""
    from leukdash.config import RunConfig
    from leukdash.data.decode import decode_image
    from leukdash.engine.runner import run
    from leukdash.engine.store import RunStore
    from leukdash.evaluation.predict import predict_files, predict_images

    run_id = run(RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, augment_factor=1, folds=2),
                 n_jobs=1)["run_id"]
    image = decode_image(next(tiny_dataset.glob("*/*.png")))
    with pytest.raises(TypeError, match=r"^images must be a list of images .* got NoneType$"):
        predict_images(run_id, None)
    with pytest.raises(TypeError, match=r"^paths must be a list of image files or folders .* got NoneType$"):
        predict_files(run_id, None)
    for call in (lambda: predict_images(run_id, [image], store=str(RunStore().root)),
                 lambda: predict_files(run_id, [], store=str(RunStore().root))):
        with pytest.raises(TypeError, match=r"^store must be a RunStore .* got str$"):
            call()
    [answer] = predict_images(run_id, (one for one in [image]), checks=False)
    assert answer == predict_images(run_id, [image], checks=False)[0]


def test_a_long_lived_process_predicts_as_a_fresh_one_after_a_fold_is_deleted_elsewhere(tiny_dataset):
    """The loaded models were kept by run id: after another process deleted a fold (or the run), this
    one still answered from all of them, while a fresh process refused. The cache is now used only
    while the files it was loaded from are unchanged."""
    import shutil

    from leukdash.config import RunConfig
    from leukdash.engine.runner import run
    from leukdash.engine.store import RunStore
    from leukdash.errors import RunError
    from leukdash.evaluation.predict import predict_files

    run_id = run(RunConfig(dataset=str(tiny_dataset), model="knn", image_size=16, augment_factor=1, folds=2),
                 n_jobs=1)["run_id"]
    image = next(tiny_dataset.glob("*/*.png"))
    assert predict_files(run_id, [image])[0]["n_folds"] == 2
    folder = RunStore().run_dir(run_id)
    (folder / "models" / "fold_1.skops").unlink()
    (folder / "folds" / "fold_1.json").unlink()
    with pytest.raises(RunError, match="fold_1.skops is damaged or missing"):
        predict_files(run_id, [image])
    shutil.rmtree(folder)
    with pytest.raises(RunError, match="is not a finished run"):
        predict_files(run_id, [image])


def test_a_long_lived_process_checks_answers_with_a_fold_record_another_process_rewrote(tiny_dataset):
    """The support check (and the known-image reference) were kept by run id: after another process
    rewrote a fold's record, this one still judged answers by the old out-of-fold answers. They are now
    kept, like the models, only while the run's files are unchanged: the answer is a fresh process's."""
    import numpy as np

    import leukdash.evaluation.predict as predict
    from leukdash.config import RunConfig
    from leukdash.data.decode import decode_image
    from leukdash.engine.runner import run
    from leukdash.engine.store import RunStore
    from leukdash.engine.training import model_suffix

    config = RunConfig(dataset=str(tiny_dataset), model="knn", image_size=16, augment_factor=1, folds=2)
    run_id = run(config, n_jobs=1)["run_id"]
    image = 255 - decode_image(next(tiny_dataset.glob("*/*.png")))  # not one of the run's images
    before = predict.predict_images(run_id, [image])[0]["unsupported"]
    store = RunStore()
    for fold in (0, 1):  # what another process's recompute could store: other out-of-fold answers
        result = store.read_fold(run_id, fold)
        result["oof"]["proba"] = np.roll(result["oof"]["proba"], 1, axis=1).tolist()
        store.write_fold(run_id, fold, result, store.model_path(run_id, fold, model_suffix(config)))
    after = predict.predict_images(run_id, [image])[0]["unsupported"]
    for cache in (predict._loaded, predict._references, predict._supports):
        cache.clear()  # as a fresh process
    fresh = predict.predict_images(run_id, [image])[0]["unsupported"]
    assert fresh["floor"] != before["floor"]
    assert after == fresh


def test_models_loaded_while_another_process_rewrites_a_fold_are_not_kept_as_the_new_ones(tiny_dataset,
                                                                                          monkeypatch):
    """The files' identity was taken after loading: a fold rewritten while the models loaded was
    taken as loaded, and its old model answered for good. It is now taken before and compared after."""
    import shutil

    import leukdash.evaluation.predict as predict
    from leukdash.config import RunConfig
    from leukdash.engine.runner import run
    from leukdash.engine.store import RunStore
    from leukdash.engine.training import model_suffix
    from leukdash.metrics import summarize_folds

    config = RunConfig(dataset=str(tiny_dataset), model="knn", image_size=16, augment_factor=1, folds=2)
    run_id, other = (run(config.with_changes(seed=seed), n_jobs=1)["run_id"] for seed in (1, 2))
    predict._loaded.clear()
    store, suffix = RunStore(), model_suffix(config)
    load = predict._load_model

    def load_while_rewritten(path, owner, is_cnn):
        if path == store.model_path(run_id, 1, suffix):  # fold 0 loaded, fold 1 loading: fold 0 replaced
            shutil.copyfile(store.model_path(other, 0, suffix), store.model_path(run_id, 0, suffix))
            store.write_fold(run_id, 0, store.read_fold(other, 0), store.model_path(run_id, 0, suffix))
            # as the process that recomputes a fold does: else the summary, stale, makes the run unfinished
            store.write_summary(run_id, summarize_folds([store.read_fold(run_id, fold) for fold in (0, 1)]))
        return load(path, owner, is_cnn)

    monkeypatch.setattr(predict, "_load_model", load_while_rewritten)
    image = next(tiny_dataset.glob("*/*.png"))
    predict.predict_files(run_id, [image])
    monkeypatch.setattr(predict, "_load_model", load)
    again = predict.predict_files(run_id, [image])[0]
    predict._loaded.clear()  # as a fresh process
    fresh = predict.predict_files(run_id, [image])[0]
    assert again["probabilities"] == fresh["probabilities"]


def test_predicting_stores_nothing_derived_from_the_images_predicted(tiny_dataset, isolated_artifacts, tmp_path):
    """Images being predicted (files, uploads, a lab's batch) are described in memory: each used to
    leave its descriptors in the store's features cache, for good, named by a digest of its pixels."""
    from PIL import Image

    from leukdash.config import RunConfig
    from leukdash.engine.runner import run
    from leukdash.evaluation.ood import describe_images
    from leukdash.evaluation.predict import predict_files

    run_id = run(RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, augment_factor=2, folds=3),
                 n_jobs=1)["run_id"]
    rng = np.random.default_rng(3)
    files = []
    for number in range(24):  # enough for the support check to take them as one lab's, and to adapt to them
        files.append(tmp_path / f"new{number}.png")
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), np.uint8)).save(files[-1])
    predict_files(run_id, files[:1])  # the run's own description and references, stored once for every answer
    stored = sorted(path for path in isolated_artifacts.rglob("*") if path.is_file())
    answers = predict_files(run_id, files) + predict_files(run_id, files, adapt=True)
    assert all("score" in answer["ood"] and answer["unsupported"]["one_lab"] for answer in answers)
    assert sorted(path for path in isolated_artifacts.rglob("*") if path.is_file()) == stored
    # The descriptors computed in memory are those the cache held: the checks answer as they did.
    images = rng.integers(0, 256, (4, 16, 16, 3), np.uint8)
    assert np.array_equal(describe_images(images, stored=False), describe_images(images))
