"""Classic pipelines, cell features and the CNNs, on tiny synthetic images (no real data)."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from leukdash.errors import ConfigError
from leukdash.models import classic, cnn
from leukdash.models.features import extract_features, feature_names, pixel_features

BACKGROUND = (225, 205, 195)  # beige-pink smear background
NUCLEUS = (95, 45, 150)       # purple stain


def cells(radii, size=48, seed=0):
    """Smear-like crops: a purple disc of the given radius near the centre, on a noisy background."""
    rng = np.random.default_rng(seed)
    out = np.empty((len(radii), size, size, 3), dtype=np.uint8)
    for i, r in enumerate(radii):
        image = np.full((size, size, 3), BACKGROUND, dtype=np.uint8)
        centre = (size // 2 + int(rng.integers(-2, 3)), size // 2 + int(rng.integers(-2, 3)))
        cv2.circle(image, centre, int(r), NUCLEUS, thickness=-1)
        noise = rng.normal(0, 6, image.shape)
        out[i] = np.clip(image + noise, 0, 255).astype(np.uint8)
    return out


def bright_dark(n_per_class=20, size=16, seed=0):
    """A trivially separable problem: dark images (class 0) vs bright images (class 1)."""
    rng = np.random.default_rng(seed)
    dark = rng.integers(0, 100, (n_per_class, size, size, 3))
    bright = rng.integers(156, 256, (n_per_class, size, size, 3))
    images = np.concatenate([dark, bright]).astype(np.uint8)
    labels = np.repeat([0, 1], n_per_class)
    order = rng.permutation(len(labels))
    return images[order], labels[order]


# ---- features -------------------------------------------------------------------------------

def test_pixel_features_are_resized_flat_pixels_in_unit_range():
    images = np.zeros((2, 20, 20, 3), dtype=np.uint8)
    images[1] = 255
    f = pixel_features(images, 8)
    assert f.shape == (2, 8 * 8 * 3) and f.dtype == np.float32
    assert f[0].max() == 0.0 and f[1].min() == pytest.approx(1.0)


def test_extract_features_are_finite_even_without_a_cell():
    rng = np.random.default_rng(1)
    images = np.stack([
        np.zeros((40, 40, 3), np.uint8),            # black
        np.full((40, 40, 3), 255, np.uint8),        # white
        np.full((40, 40, 3), BACKGROUND, np.uint8), # background only
        rng.integers(0, 256, (40, 40, 3)).astype(np.uint8),  # noise
        cells([12], size=40)[0],
    ])
    f = extract_features(images)
    assert f.shape == (5, len(feature_names())) and f.dtype == np.float32
    assert np.isfinite(f).all()
    area = feature_names().index("nucleus_area")
    assert f[1, area] == 0.0 and f[4, area] > 0.1  # no nucleus in a white image, one in the cell


def test_extract_features_measure_the_nucleus_size_and_shape():
    small, large = cells([7] * 4, seed=2), cells([17] * 4, seed=3)
    f_small, f_large = extract_features(small), extract_features(large)
    area = feature_names().index("nucleus_area")
    expected = np.pi * np.array([7, 17]) ** 2 / 48**2
    assert f_small[:, area].mean() == pytest.approx(expected[0], rel=0.25)
    assert f_large[:, area].mean() == pytest.approx(expected[1], rel=0.25)
    circularity = feature_names().index("nucleus_circularity")
    assert f_large[:, circularity].min() > 0.8  # a disc is round


def test_extract_features_do_not_depend_much_on_the_load_size():
    image = cells([15], size=96, seed=4)
    big = extract_features(image)
    small = extract_features(np.stack([cv2.resize(image[0], (48, 48), interpolation=cv2.INTER_AREA)]))
    area = feature_names().index("nucleus_area")
    assert small[0, area] == pytest.approx(big[0, area], rel=0.1)


# ---- classic models -------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["nb", "svm", "knn", "dt"])
@pytest.mark.parametrize("feature_set", ["pixels", "features"])
def test_classic_models_learn_a_separable_problem_with_probabilities(model, feature_set):
    if feature_set == "pixels":
        images, labels = bright_dark(seed=5)
    else:
        radii = np.repeat([6, 16], 20)
        images, labels = cells(radii, seed=5), np.repeat([0, 1], 20)
    train = np.arange(len(labels)) % 4 != 0
    clf = classic.make_classifier(model, feature_set, k=3, seed=0)
    clf.fit(classic.featurize(images[train], feature_set), labels[train])
    proba = clf.predict_proba(classic.featurize(images[~train], feature_set))
    assert proba.shape == (int((~train).sum()), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert np.mean(proba.argmax(axis=1) == labels[~train]) >= 0.9


def test_classic_pipeline_scales_its_input():
    clf = classic.make_classifier("svm", "pixels")
    assert [name for name, _ in clf.steps] == ["scale", "classify"]


def test_a_pixel_knn_is_stored_as_uint8_pixels_and_predicts_the_same(tmp_path):
    import skops.io

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (120, 48, 48, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 120)
    queries = rng.integers(0, 256, (20, 48, 48, 3), dtype=np.uint8)
    for feature_set in ("pixels", "features"):
        model = classic.make_classifier("knn", feature_set).fit(classic.featurize(images, feature_set), labels)
        features = classic.featurize(queries, feature_set)
        classic.save(model, tmp_path / f"{feature_set}.skops")
        skops.io.dump(model, tmp_path / f"{feature_set}.plain.skops")
        loaded = classic.load(tmp_path / f"{feature_set}.skops", "r1")
        fitted = model.named_steps["classify"]._fit_X
        assert loaded.named_steps["classify"]._fit_X.dtype == fitted.dtype
        assert np.array_equal(loaded.named_steps["classify"]._fit_X, fitted)  # bit for bit
        assert np.array_equal(loaded.predict_proba(features), model.predict_proba(features))
        assert model.named_steps["classify"]._fit_X is fitted  # saving left the fitted model whole
    # The float32 training set (4 bytes a value) is stored as uint8 pixels, compressed.
    packed, plain = (tmp_path / "pixels.skops").stat().st_size, (tmp_path / "pixels.plain.skops").stat().st_size
    assert packed < plain / 3.5


def test_classic_rejects_unknown_names():
    with pytest.raises(ConfigError, match="model"):
        classic.make_classifier("forest", "pixels")
    with pytest.raises(ConfigError, match="feature_set"):
        classic.featurize(np.zeros((1, 8, 8, 3), np.uint8), "hog")


# ---- CNN ------------------------------------------------------------------------------------

def test_paper_cnn_has_the_papers_layers_and_parameter_count():
    model = cnn.build_model("paper", 32, 2, seed=0)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Rescaling", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten",
                     "Dense", "Dropout", "BatchNormalization", "Dense"]
    conv1, conv2, dense1, dense2 = (model.layers[i] for i in (1, 3, 6, 9))
    assert (conv1.filters, conv1.kernel_size, conv2.filters, conv2.kernel_size) == (32, (3, 3), 32, (3, 3))
    assert (dense1.units, model.layers[7].rate, dense2.units) == (128, 0.1, 2)
    # 32 -> conv 30 -> pool 15 -> conv 13 -> pool 6: 6*6*32 = 1152 inputs to Dense(128).
    expected = (3 * 9 * 32 + 32) + (32 * 9 * 32 + 32) + (1152 * 128 + 128) + 4 * 128 + (128 * 2 + 2)
    assert model.count_params() == expected == 158_498


def test_leukdash_cnn_predictions_ignore_flips_and_quarter_turns():
    model = cnn.build_model("leukdash", 16, 3, seed=0)
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype(np.uint8)
    proba = cnn.predict_proba(model, images)
    assert proba.shape == (4, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    turned = np.rot90(images, 1, axes=(1, 2))[:, ::-1]  # a transpose
    np.testing.assert_allclose(cnn.predict_proba(model, turned), proba, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_run():
    images, labels = bright_dark(n_per_class=16, size=16, seed=7)
    train, val = slice(0, 24), slice(24, 32)
    calls, epochs_asked = [], []

    def epoch_data(epoch):
        epochs_asked.append(epoch)
        return images[train][:, ::-1], labels[train]  # mirrored copies, same count every epoch

    def run():
        return cnn.train_cnn(images[train], labels[train], images[val], labels[val], n_classes=2,
                             architecture="paper", optimizer="adam", epochs=2, batch_size=8, seed=3,
                             epoch_data=epoch_data, on_epoch=lambda e, logs: calls.append((e, logs)))

    model, history = run()
    return {"model": model, "history": history, "calls": calls, "epochs_asked": epochs_asked,
            "run": run, "val_images": images[val]}


def test_train_cnn_records_every_epoch_and_reports_progress(tiny_run):
    history = tiny_run["history"]
    assert set(history) == {"acc", "loss", "val_acc", "val_loss"}
    assert all(len(values) == 2 for values in history.values())
    assert [epoch for epoch, _ in tiny_run["calls"]] == [0, 1]
    assert tiny_run["calls"][-1][1] == {name: values[-1] for name, values in history.items()}
    assert tiny_run["epochs_asked"] == [0, 1]  # each epoch's training set fetched once


def test_train_cnn_validation_matches_predict_proba(tiny_run):
    model = tiny_run["model"]
    images, labels = bright_dark(n_per_class=16, size=16, seed=7)
    proba = cnn.predict_proba(model, images[24:32])
    assert tiny_run["history"]["val_acc"][-1] == pytest.approx(np.mean(proba.argmax(1) == labels[24:32]))


def test_train_cnn_leaves_the_global_dtype_policy_alone(tiny_run):
    import keras

    assert keras.config.dtype_policy().name == "float32"
    assert tiny_run["model"].layers[1].dtype_policy.name == cnn.TRAINING_POLICY


def test_train_cnn_is_deterministic_for_a_seed(tiny_run):
    # TensorFlow on CPU gives bitwise-identical results here; a tolerance keeps the test honest
    # on machines whose oneDNN kernels reduce in a different order between runs.
    model, history = tiny_run["run"]()
    first = cnn.predict_proba(tiny_run["model"], tiny_run["val_images"])
    again = cnn.predict_proba(model, tiny_run["val_images"])
    np.testing.assert_allclose(again, first, atol=1e-6)
    np.testing.assert_allclose(history["loss"], tiny_run["history"]["loss"], rtol=1e-5)


def test_train_cnn_traces_its_train_step_once(monkeypatch):
    # Variables first made inside the traced step (optimizer slots, metric totals) make TensorFlow
    # trace the whole step a second time: seconds of a small fold on a slow CPU.
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    traced, train_step = [], TensorFlowTrainer.train_step
    monkeypatch.setattr(TensorFlowTrainer, "train_step", lambda self, data: traced.append(1) or train_step(self, data))
    images, labels = bright_dark(n_per_class=8, size=16, seed=2)
    for architecture in cnn.ARCHITECTURES:  # momentum SGD makes slots in the leukdash CNN
        traced.clear()
        cnn.train_cnn(images, labels, images, labels, n_classes=2, architecture=architecture, epochs=2,
                      batch_size=4)
        assert len(traced) == 1, f"{architecture}: train step traced {len(traced)} times"


def test_saved_model_predicts_the_same(tiny_run, tmp_path):
    path = cnn.save_model(tiny_run["model"], tmp_path / "fold0")
    assert path.suffix == ".keras" and path.is_file()
    loaded = cnn.load_model(path)
    np.testing.assert_array_equal(cnn.predict_proba(loaded, tiny_run["val_images"]),
                                  cnn.predict_proba(tiny_run["model"], tiny_run["val_images"]))


def test_train_cnn_rejects_epochs_of_different_sizes():
    images, labels = bright_dark(n_per_class=4, size=16)
    with pytest.raises(ValueError, match="same number"):
        cnn.train_cnn(images, labels, images, labels, n_classes=2, epochs=2, batch_size=4,
                      epoch_data=lambda e: (images[: 8 - e], labels[: 8 - e]))


def test_unknown_architecture_is_a_config_error():
    with pytest.raises(ConfigError, match="architecture"):
        cnn.build_model("resnet", 16, 2)



def test_importing_tensorflow_keeps_its_start_up_notes_off_stderr_and_passes_the_rest(tmp_path):
    """A stand-in ``tensorflow`` module writes what the real one does at import (absl's notes),
    plus a line of its own, straight to fd 2: only that line reaches stderr, unless
    TF_CPP_MIN_LOG_LEVEL=0 asks for the notes."""
    notes = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n"
             "I0000 00:00:1796407410.655767    5116 port.cc:153] oneDNN custom operations are on.\\n")
    (tmp_path / "tensorflow.py").write_text(f"import os\nos.write(2, b'{notes}a library warning\\n')\n")
    code = ("from leukdash.models.tensorflow_import import import_tensorflow; "
            "import sys; print(import_tensorflow() is sys.modules['tensorflow'])")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).parent.parent)])}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    quiet = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert (quiet.stdout, quiet.stderr) == ("True\n", "a library warning\n"), quiet
    asked = subprocess.run([sys.executable, "-c", code], env={**env, "TF_CPP_MIN_LOG_LEVEL": "0"},
                           capture_output=True, text=True, timeout=60)
    assert asked.stderr == notes.replace("\\n", "\n") + "a library warning\n", asked


def test_tensorflows_retracing_warning_is_dropped_and_its_other_warnings_pass(tmp_path):
    """TensorFlow counts retraces over every function at once: a 5-fold CNN's models, each traced
    once for a new batch size, made `predict` print "5 out of the last 5 calls ... triggered
    tf.function retracing". Its logger drops that one warning (unless TF_CPP_MIN_LOG_LEVEL=0)."""
    (tmp_path / "tensorflow.py").write_text("")
    code = ("import logging; from leukdash.models.tensorflow_import import import_tensorflow; import_tensorflow(); "
            "import_tensorflow(); log = logging.getLogger('tensorflow'); "
            "log.warning('5 out of the last 5 calls to <function f at 0x1> triggered tf.function retracing. "
            "Tracing is expensive'); log.warning('a real warning')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).parent.parent)])}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    quiet = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert quiet.stderr == "a real warning\n", quiet
    asked = subprocess.run([sys.executable, "-c", code], env={**env, "TF_CPP_MIN_LOG_LEVEL": "0"},
                           capture_output=True, text=True, timeout=60)
    assert asked.stderr.count("\n") == 2 and "triggered tf.function retracing" in asked.stderr, asked


def _with_stand_in_tensorflow(tmp_path, source: str, code: str) -> subprocess.CompletedProcess:
    """``code`` run in a fresh interpreter whose ``tensorflow`` is a module of ``source``."""
    (tmp_path / "tensorflow.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).parent.parent)])}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_threads_importing_tensorflow_at_once_each_get_the_whole_module(tmp_path):
    """The dashboard serves visitors in threads: one that found ``tensorflow`` in sys.modules while
    another was still importing it got the half-built module (no attribute 'config'), and a CNN's
    sound model read as one that cannot be loaded. Each waits for the import now."""
    code = ("import threading, time; from leukdash.models.tensorflow_import import import_tensorflow\n"
            "got = []\n"
            "def ask(): got.append(hasattr(import_tensorflow(), 'config'))\n"
            "first = threading.Thread(target=ask); first.start(); time.sleep(0.3)\n"
            "others = [threading.Thread(target=ask) for _ in range(5)]\n"
            "[t.start() for t in others]; [t.join() for t in [first] + others]; print(got)")
    done = _with_stand_in_tensorflow(tmp_path, "import time\ntime.sleep(1.5)\nconfig = 'ready'\n", code)
    assert done.stdout == f"{[True] * 6}\n", done


def test_after_an_interrupted_tensorflow_import_each_later_use_says_to_restart_the_process(tmp_path):
    """A Ctrl-C during TensorFlow's import leaves half-initialised modules that cannot be imported
    again (later calls failed inside keras, or blamed memory): the interrupt stops the call, and
    every later import is refused in one line that says to restart the process."""
    code = ("from leukdash.models.tensorflow_import import import_tensorflow; from leukdash.errors import RunError\n"
            "try:\n    import_tensorflow()\nexcept KeyboardInterrupt:\n    print('interrupted')\n"
            "for _ in range(2):\n    try:\n        import_tensorflow()\n"
            "    except RunError as error:\n        print(error)\n")
    done = _with_stand_in_tensorflow(tmp_path, "raise KeyboardInterrupt\n", code)
    refusal = ("TensorFlow's import was interrupted in this Python process, and it cannot be imported again there: "
               "restart it (the notebook kernel, the command or the dashboard) to use CNNs\n")
    assert done.stdout == "interrupted\n" + refusal * 2, done


def test_a_cnn_run_whose_tensorflow_cannot_be_imported_keeps_its_folds(tiny_dataset, tmp_path):
    """A fold recorded without its model's sha256 (an older record) was moved aside when its model
    failed to load, though TensorFlow's import was what failed: now that is said, and no fold moves."""
    import json

    from leukdash.config import RunConfig
    from leukdash.engine.runner import run
    from leukdash.engine.store import RunStore

    run_id = run(RunConfig(dataset=str(tiny_dataset), model="cnn", image_size=16, augment_factor=1, folds=2,
                           epochs=1), n_jobs=1)["run_id"]
    folds = RunStore().run_dir(run_id) / "folds"
    for record in folds.glob("fold_*.json"):
        record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "model"}))
    code = ("from leukdash.evaluation.predict import predict_files; from leukdash.errors import RunError\n"
            f"try:\n    predict_files({run_id!r}, [{str(next(tiny_dataset.glob('*/*.png')))!r}])\n"
            "except RunError as error:\n    print(error)\n")
    done = _with_stand_in_tensorflow(tmp_path, "raise MemoryError('std::bad_alloc')\n", code)
    assert done.stdout.startswith(f"run {run_id}: TensorFlow cannot be imported here (MemoryError"), done
    assert sorted(p.name for p in folds.iterdir()) == ["fold_0.json", "fold_1.json"]
