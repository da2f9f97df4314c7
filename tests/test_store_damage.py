"""Damaged run folders: records of the wrong shape, damaged check caches, lost fold models.

Each case leaves the damaged run skipped or partial (or its check recomputed) and every other
run readable; nothing reaches a page as a traceback.
"""

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from leukdash.config import AugmentConfig, RunConfig
from leukdash.data.decode import decode_image
from leukdash.engine.runner import finished_result, load_result, run
from leukdash.engine.store import RunStore, checksum
from leukdash.errors import RunError
from leukdash.evaluation import predict
from leukdash.evaluation.ood import own_confidence
from tests.damage import flip_compressed_bytes
from tests.test_app import shown

APP = Path(__file__).resolve().parent.parent / "streamlit_app.py"
SHIPPED_NB = next((APP.parent / "artifacts" / "runs").glob("nb-*"))


@pytest.fixture(scope="module")
def template(tiny_dataset, tmp_path_factory) -> Path:
    """The folder of one finished tiny run (naive Bayes, 2 folds) with its checks' caches, computed once."""
    root = tmp_path_factory.mktemp("template")
    config = RunConfig(dataset=str(tiny_dataset), model="nb", feature_set="features", image_size=32,
                       augment_factor=1, augment=AugmentConfig.off(), folds=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEUKDASH_ARTIFACTS", str(root))
        run_id = run(config, n_jobs=1)["run_id"]
        predict.prepare_checks(run_id)
    folder = root / "runs" / run_id
    assert {"ood.npz", "ood.json", "reference.npz", "reference.json"} <= {p.name for p in folder.iterdir()}
    return folder


def stored(source: Path, name: str | None = None) -> str:
    """Copy a run folder into this test's store, as run ``name``; its run id."""
    name = name or source.name
    folder = shutil.copytree(source, RunStore().run_dir(name))
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "run_id": name}))
    return name


def a_dataset_image(tiny_dataset) -> np.ndarray:
    return decode_image(sorted(tiny_dataset.glob("ALL/*.png"))[0])


def edited(path: Path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


# --------------------------------------------------------------------------- records of the wrong shape

META_SHAPES = {
    "a list": lambda meta: [1, 2],
    "empty": lambda meta: {},
    "config null": lambda meta: {**meta, "config": None},
    "no dataset": lambda meta: {k: v for k, v in meta.items() if k != "dataset"},
    "no versions": lambda meta: {k: v for k, v in meta.items() if k != "versions"},
    "fold ids a string": lambda meta: {**meta, "fold_ids": "0,1"},
    "no fold ids": lambda meta: {**meta, "fold_ids": []},
    "fold ids repeated": lambda meta: {**meta, "fold_ids": [0, 0]},
    "fold id negative": lambda meta: {**meta, "fold_ids": [0, -1]},
    "fold id a bool": lambda meta: {**meta, "fold_ids": [True, 1]},
    "fold id a list": lambda meta: {**meta, "fold_ids": [[0], 1]},
    "unknown model": lambda meta: {**meta, "config": {**meta["config"], "model": "xgboost"}},
    "classes not a list": lambda meta: {**meta, "dataset": {**meta["dataset"], "classes": "ALL"}},
    "fingerprint a number": lambda meta: {**meta, "dataset": {**meta["dataset"], "fingerprint": 7}},
    "ensemble without members": lambda meta: {**meta, "kind": "ensemble"},
}


@pytest.mark.parametrize("shape", list(META_SHAPES))
def test_a_meta_of_the_wrong_shape_is_damaged_and_the_other_runs_still_read(template, shape):
    good, damaged = stored(template), stored(template, "nb-damaged")
    folder = RunStore().run_dir(damaged)
    edited(folder / "meta.json", META_SHAPES[shape])
    assert [entry["run_id"] for entry in RunStore().list_runs()] == [good]
    assert load_result(damaged) is None and load_result(good)["run_id"] == good
    with pytest.raises(RunError, match=f"^run '{damaged}' is not a finished run in "):
        finished_result(damaged)
    assert not (folder / "meta.json").exists() and len(list(folder.glob("meta.json.damaged-*"))) == 1  # kept aside


SUMMARY_SHAPES = {
    "a list": lambda summary: [1, 2],
    "empty": lambda summary: {},
    "accuracy a number": lambda summary: {**summary, "val_acc": 0.9},
    "mean a text": lambda summary: {**summary, "val_acc": {**summary["val_acc"], "mean": "high"}},
    "mean a bool": lambda summary: {**summary, "balanced_acc": {**summary["balanced_acc"], "mean": True}},
    "interval of one": lambda summary: {**summary, "val_acc": {**summary["val_acc"], "ci95": [0.5]}},
    "std null": lambda summary: {**summary, "seconds": {**summary["seconds"], "std": None}},
    "per source a list": lambda summary: {**summary, "per_source": []},
}


@pytest.mark.parametrize("shape", list(SUMMARY_SHAPES))
def test_a_summary_of_the_wrong_shape_makes_the_run_partial(template, shape):
    good, damaged = stored(template), stored(template, "nb-damaged")
    edited(RunStore().run_dir(damaged) / "summary.json", SUMMARY_SHAPES[shape])
    status = {entry["run_id"]: (entry["status"], entry["summary"] is None) for entry in RunStore().list_runs()}
    assert status == {good: ("complete", False), damaged: ("partial", True)}
    assert load_result(damaged) is None


FORGED_SUMMARIES = {
    "a higher mean": lambda summary: {**summary, "val_acc": {**summary["val_acc"], "mean": 0.97}},
    "no spread": lambda summary: {**summary, "balanced_acc": {**summary["balanced_acc"], "std": 0.0}},
    "a better worst fold": lambda summary: {**summary, "macro_f1": {**summary["macro_f1"], "min": 0.99}},
    "a metric no fold has": lambda summary: {**summary, "auc": {"mean": 0.99}},
}


@pytest.mark.parametrize("forgery", list(FORGED_SUMMARIES))
def test_a_summary_its_folds_do_not_say_is_damaged_and_computed_again(template, tiny_dataset, forgery):
    """A summary is derived from the fold records (which carry checksums): a forged or stale one is never
    shown as the run's result; it is moved aside, and launching the run again computes it from the folds."""
    run_id = stored(template)
    folder = RunStore().run_dir(run_id)
    true = json.loads((folder / "summary.json").read_text())
    edited(folder / "summary.json", FORGED_SUMMARIES[forgery])
    [entry] = RunStore().list_runs()
    assert (entry["status"], entry["summary"], entry["n_folds_done"]) == ("partial", None, 2)
    assert load_result(run_id) is None and len(list(folder.glob("summary.json.damaged-*"))) == 1
    with pytest.raises(RunError) as unfinished:
        finished_result(run_id)
    assert str(unfinished.value).startswith(f"run '{run_id}' is not a finished run in {RunStore().root}: its "
                                            "summary.json missing or damaged (a damaged one is kept beside it as "
                                            "summary.json.damaged-*); `python -m leukdash run --config-file ")
    config = RunConfig.from_dict(json.loads((folder / "meta.json").read_text())["config"])
    assert run(config, n_jobs=1)["summary"] == true
    assert [entry["status"] for entry in RunStore().list_runs()] == ["complete"]


def test_a_summary_replaced_while_it_was_checked_is_read_again_not_moved_aside(template, monkeypatch):
    """A run computing a fold again writes the fold, then its summary, then lets its lock go: a reader that
    read the old summary before the new fold saw them disagree and moved the new, true summary aside."""
    run_id = stored(template)
    folder, store = RunStore().run_dir(run_id), RunStore()
    true = json.loads((folder / "summary.json").read_text())
    edited(folder / "summary.json", FORGED_SUMMARIES["a higher mean"])  # the summary before the fold's recompute
    read_fold = RunStore.read_fold

    def fold_then_summary_written(self, run, fold):  # the other process finishes between the two reads
        (folder / "summary.json").write_text(json.dumps(true))
        return read_fold(self, run, fold)

    monkeypatch.setattr(RunStore, "read_fold", fold_then_summary_written)
    assert store.read_summary(run_id)["val_acc"] == true["val_acc"]
    assert not list(folder.glob("summary.json.damaged-*"))


FOLD_SHAPES = {
    "a list": lambda record: [],
    "empty": lambda record: {},
    "result a list": lambda record: {**record, "result": [1], "checksum": checksum([1])},
    "model entry a text": lambda record: {**record, "model": "fold_1.skops"},
}


@pytest.mark.parametrize("shape", list(FOLD_SHAPES))
def test_a_fold_record_of_the_wrong_shape_makes_the_run_partial(template, shape):
    good, damaged = stored(template), stored(template, "nb-damaged")
    edited(RunStore().run_dir(damaged) / "folds" / "fold_1.json", FOLD_SHAPES[shape])
    status = {entry["run_id"]: (entry["status"], entry["n_folds_done"]) for entry in RunStore().list_runs()}
    assert status == {good: ("complete", 2), damaged: ("partial", 1)}
    assert load_result(damaged) is None


# --------------------------------------------------------------------------- damaged check caches


def _pickled(path: Path) -> None:
    with np.load(path) as stored_arrays:
        arrays = {name: stored_arrays[name].astype(object) for name in stored_arrays.files}
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _shrunk(path: Path) -> None:
    """A whole, readable npz whose arrays no longer agree (one row fewer in the first)."""
    with np.load(path) as stored_arrays:
        arrays = {name: stored_arrays[name] for name in stored_arrays.files}
    first = next(iter(arrays))
    with open(path, "wb") as handle:
        np.savez(handle, **{**arrays, first: arrays[first][1:]})


CACHE_DAMAGE = {
    "ood.json truncated": ("ood.json", lambda p: p.write_text('{"x')),
    "ood.json a list": ("ood.json", lambda p: p.write_text("[]")),
    "reference.json truncated": ("reference.json", lambda p: p.write_text('{"x')),
    "ood.npz truncated": ("ood.npz", lambda p: p.write_bytes(p.read_bytes()[:1000])),
    "reference.npz garbage": ("reference.npz", lambda p: p.write_bytes(b"garbage")),
    "ood.npz with damaged compressed data": ("ood.npz", flip_compressed_bytes),
    "ood.npz pickled": ("ood.npz", _pickled),
    "reference.npz pickled": ("reference.npz", _pickled),
    "ood.npz arrays disagree": ("ood.npz", _shrunk),
    "reference.npz arrays disagree": ("reference.npz", _shrunk),
}


@pytest.mark.parametrize("damage", list(CACHE_DAMAGE))
def test_a_damaged_check_cache_is_computed_again_and_replaced(template, tiny_dataset, damage):
    good, damaged = stored(template), stored(template, "nb-damaged")
    file_name, spoil = CACHE_DAMAGE[damage]
    path = RunStore().run_dir(damaged) / file_name
    spoil(path)
    spoiled = path.read_bytes()
    image = a_dataset_image(tiny_dataset)
    [expected] = predict.predict_images(good, [image])
    [answer] = predict.predict_images(damaged, [image])
    assert answer["ood"] == expected["ood"] and "error" not in answer["ood"]
    assert answer["known"] == expected["known"] and answer["known"]["match"] == "identical"
    assert path.read_bytes() != spoiled  # replaced by what was computed
    assert path.read_bytes() == (template / file_name).read_bytes()


def test_a_check_that_cannot_be_computed_or_stored_is_unavailable_and_the_prediction_stands(template, monkeypatch):
    """A damaged cache in a store that cannot hold what the check computes (read-only or full:
    drawing the built-in set there raised OSError): the prediction, and one line per check."""
    run_id = stored(template)
    folder = RunStore().run_dir(run_id)
    for name in ("ood.npz", "reference.npz"):
        (folder / name).write_bytes(b"garbage")

    def read_only_store(meta, store=None):
        raise OSError(errno.EROFS, "Read-only file system", str(RunStore().root.parent / "datasets"))

    monkeypatch.setattr("leukdash.engine.run_data.open_run_dataset", read_only_store)
    predict.prepare_checks(run_id)  # the warm-up thread: ends quietly (it raised OSError there)
    [answer] = predict.predict_images(run_id, [np.zeros((40, 40, 3), np.uint8)])
    assert answer["predicted"] in ("ALL", "AML", "CLL", "CML", "HEALTHY")
    reason = "what it needs could not be read or stored here (read-only file system)"
    for check in ("ood", "known"):
        assert answer[check] == {"error": f"{check} check unavailable: {reason}", "check": check, "reason": reason}


def test_another_runs_check_cache_copied_beside_a_run_is_not_read_as_its_own(template, tiny_dataset):
    """Two runs of one dataset and folds at other sizes: the first's ``ood`` files copied beside the
    second describe other arrays, so the second's description is computed again, not read."""
    from leukdash.evaluation.ood import training_distribution

    config = RunConfig(dataset=str(tiny_dataset), model="nb", feature_set="features", image_size=24,
                       augment_factor=1, augment=AugmentConfig.off(), folds=2)
    run_id = run(config, n_jobs=1)["run_id"]
    own = training_distribution(run_id).oof_scores
    for name in ("ood.npz", "ood.json"):
        shutil.copyfile(template / name, RunStore().run_dir(run_id) / name)
    assert not np.array_equal(training_distribution(stored(template)).oof_scores, own)  # they differ
    assert np.array_equal(training_distribution(run_id).oof_scores, own)


def test_a_damaged_cache_in_a_store_that_cannot_be_written_is_computed_in_memory(template, tiny_dataset, monkeypatch):
    run_id = stored(template)
    paths = [RunStore().run_dir(run_id) / name for name in ("ood.npz", "reference.npz")]
    for path in paths:
        path.write_bytes(path.read_bytes()[:1000])
    truncated = [path.read_bytes() for path in paths]
    monkeypatch.setattr("leukdash.data.arrays.write_cache", lambda target, write: False)  # as a read-only store does
    [answer] = predict.predict_images(run_id, [a_dataset_image(tiny_dataset)])
    assert answer["known"]["match"] == "identical" and "error" not in answer["ood"]
    assert [path.read_bytes() for path in paths] == truncated


# --------------------------------------------------------------------------- lost or damaged fold models


def _same_size_altered(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


MODEL_DAMAGE = {
    "deleted": Path.unlink,
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:100]),
    "altered, same size": _same_size_altered,
}


@pytest.mark.parametrize("damage", list(MODEL_DAMAGE))
def test_a_lost_fold_model_makes_the_run_partial_in_the_listing_as_in_the_loading(template, damage):
    run_id = stored(template)
    store = RunStore()
    assert [entry["status"] for entry in store.list_runs()] == ["complete"]  # its models' hashes now known
    MODEL_DAMAGE[damage](store.run_dir(run_id) / "models" / "fold_1.skops")
    [entry] = store.list_runs()
    assert (entry["status"], entry["n_folds_done"]) == ("partial", 1)
    assert load_result(run_id) is None


def test_a_damaged_fold_record_is_named_as_the_record_not_as_its_model(template):
    run_id = stored(template)
    image = np.zeros((40, 40, 3), np.uint8)
    predict.predict_images(run_id, [image])  # this process now holds the run's models
    record = RunStore().run_dir(run_id) / "folds" / "fold_1.json"
    record.write_text(record.read_text()[:40])
    with pytest.raises(RunError) as lost:
        own_confidence(run_id)
    assert f"run {run_id}: the saved fold record folds/fold_1.json is damaged or missing" in str(lost.value)
    record.unlink(missing_ok=True)
    with pytest.raises(RunError) as fresh:
        predict.FoldEnsemble(run_id)
    assert str(fresh.value) == str(lost.value)


def test_the_likely_wrong_check_of_loaded_models_names_the_lost_model_as_a_fresh_load_does(template):
    run_id = stored(template)
    image = np.zeros((40, 40, 3), np.uint8)
    predict.predict_images(run_id, [image])  # this process now holds the run's models
    (RunStore().run_dir(run_id) / "models" / "fold_1.skops").unlink()
    with pytest.raises(RunError) as lost:
        own_confidence(run_id)
    with pytest.raises(RunError) as fresh:
        predict.FoldEnsemble(run_id)
    assert str(lost.value) == str(fresh.value) and "\n" not in str(lost.value)
    assert f"run {run_id}: the saved model models/fold_1.skops is damaged or missing" in str(lost.value)
    with pytest.raises(RunError) as answer:  # the loaded models are not used once their files changed
        predict.predict_images(run_id, [image])
    assert str(answer.value) == str(fresh.value)


def test_an_intact_model_that_this_process_cannot_load_is_said_and_its_fold_is_kept(template, monkeypatch):
    """A process short of memory (``ulimit -v``: MemoryError, or TensorFlow's libraries failing to
    map) cannot load a sound model: the fold's record and model stay, and the line says why."""
    from leukdash.models import classic

    run_id = stored(template)
    folds = sorted((RunStore().run_dir(run_id) / "folds").iterdir())

    def short_of_memory(path, run_id):
        raise MemoryError()

    loads = classic.load
    monkeypatch.setattr(classic, "load", short_of_memory)
    with pytest.raises(RunError) as failed:
        predict.FoldEnsemble(run_id)
    assert str(failed.value) == (f"run {run_id}: the model fold_0.skops is intact but cannot be loaded here "
                                 "(MemoryError): often too little memory (ulimit -v, a container's limit); nothing "
                                 "was changed, try again with more")
    assert sorted((RunStore().run_dir(run_id) / "folds").iterdir()) == folds
    monkeypatch.setattr(classic, "load", loads)  # memory again: the same run loads whole
    assert len(predict.FoldEnsemble(run_id).models) == len(folds)


def interrupted_load(path, run_id=None):
    """A Ctrl-C that lands inside numpy or joblib code and comes out as another error."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise ValueError("'\\x00' is not a valid PEP 3118 buffer format string") from None


def test_an_interrupted_load_of_an_unhashed_fold_is_an_interrupt_and_keeps_the_fold(template, tiny_dataset,
                                                                                    monkeypatch, capsys):
    """Folds stored before model hashes are discarded when their model fails to load; a Ctrl-C
    during the load is no such failure: it exits 130 with the interrupt's line, the folds all kept."""
    from leukdash.cli import main
    from leukdash.models import classic

    run_id = stored(template)
    for record in (RunStore().run_dir(run_id) / "folds").iterdir():
        edited(record, lambda fold: {key: value for key, value in fold.items() if key != "model"})
    folds = sorted((RunStore().run_dir(run_id) / "folds").iterdir())
    monkeypatch.setattr(classic, "load", interrupted_load)
    with pytest.raises(KeyboardInterrupt):
        predict.FoldEnsemble(run_id)
    capsys.readouterr()
    assert main(["predict", run_id, str(sorted(tiny_dataset.glob("ALL/*.png"))[0])]) == 130
    assert capsys.readouterr().err == ("interrupted: what it stores is written whole or not at all; "
                                       "run the same command again\n")
    assert sorted((RunStore().run_dir(run_id) / "folds").iterdir()) == folds


def test_an_unhashed_fold_whose_model_this_user_may_not_read_is_said_as_such_and_kept(template, monkeypatch):
    """Folds stored before model hashes are discarded when their model fails to load; a model there that
    this user may not read is not damaged: the line says so, and every fold stays."""
    from leukdash.engine.store import UnreadableRecord
    from leukdash.models import classic

    run_id = stored(template)
    for record in (RunStore().run_dir(run_id) / "folds").iterdir():
        edited(record, lambda fold: {key: value for key, value in fold.items() if key != "model"})
    folds = sorted((RunStore().run_dir(run_id) / "folds").iterdir())

    def as_another_user(path, *_):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(classic, "load", as_another_user)
    with pytest.raises(UnreadableRecord) as said:
        predict.FoldEnsemble(run_id)
    assert str(said.value) == (f"run {run_id}: its models/fold_0.skops cannot be read (permission denied): give "
                               "this user read access to it and to its folder")
    assert sorted((RunStore().run_dir(run_id) / "folds").iterdir()) == folds


def test_an_interrupted_read_of_a_record_keeps_it_in_place(template, monkeypatch):
    from leukdash.engine import store

    run_id = stored(template)
    folds = sorted((RunStore().run_dir(run_id) / "folds").iterdir())
    monkeypatch.setattr(store, "read_json", interrupted_load)
    for read in (lambda: RunStore().read_fold(run_id, 0), lambda: RunStore().read_meta(run_id),
                 lambda: RunStore().model_hashed(run_id, 0)):
        with pytest.raises(KeyboardInterrupt):
            read()
    assert sorted((RunStore().run_dir(run_id) / "folds").iterdir()) == folds
    assert (RunStore().run_dir(run_id) / "meta.json").is_file()


# --------------------------------------------------------------------------- the pages


@pytest.fixture
def fresh_caches():
    st.cache_data.clear()
    yield
    st.cache_data.clear()
    # A page's warm-up thread reads the store named by the environment when it runs: one still
    # running after its test would write into the next test's store.
    for thread in list(predict._warming.values()):
        thread.join(timeout=120)


def test_the_pages_show_the_whole_runs_beside_damaged_ones(isolated_artifacts, tiny_dataset, monkeypatch, fresh_caches):
    """A run with a meta of the wrong shape, one with a summary of the wrong shape and one whose
    fold model is gone, beside a whole run: every page draws, and Compare compares the whole one."""
    monkeypatch.setenv("LEUKDASH_DATA", str(tiny_dataset.parent))
    good = stored(SHIPPED_NB)
    runs = RunStore().root
    edited(runs / stored(SHIPPED_NB, "nb-empty-meta") / "meta.json", lambda meta: {})
    edited(runs / stored(SHIPPED_NB, "nb-list-summary") / "summary.json", lambda summary: [1, 2])
    (runs / stored(SHIPPED_NB, "nb-lost-model") / "models" / "fold_2.skops").unlink()
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    for page in ("overview", "experiments", "compare", "predict"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        if page == "compare":
            assert list(at.dataframe[0].value["Run id"]) == [good]


def _compare_results(run_ids):
    import streamlit as st

    from pages._shared import results

    st.write(f"loaded: {[result['run_id'] for result in results(run_ids)]}")


def test_a_run_that_stopped_being_whole_after_the_listing_is_left_out_with_a_caption(isolated_artifacts, fresh_caches):
    """The run list is cached for seconds: a run listed complete may have lost a model since."""
    good, lost = stored(SHIPPED_NB), stored(SHIPPED_NB, "nb-lost-model")
    (RunStore().run_dir(lost) / "models" / "fold_2.skops").unlink()
    at = AppTest.from_function(_compare_results, args=([good, lost],), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [m.value for m in at.markdown] == [f"loaded: {[good]}"]
    [caption] = [shown(c.value) for c in at.caption]
    assert caption.startswith(f"Left out: run '{lost}' is not a finished run in runs: fold(s) 3 missing or damaged")
    assert str(isolated_artifacts) not in caption


@pytest.mark.parametrize("blocked", ["a file", "unreadable"])
def test_a_runs_folder_that_cannot_be_listed_is_one_line_on_the_pages(isolated_artifacts, fresh_caches, blocked,
                                                                       monkeypatch):
    """The store's runs folder a file, or a folder this user may not list: every page says so in one line (as
    `runs` does), not as a traceback where it first reads a run."""
    runs = RunStore().root
    if blocked == "a file":
        runs.parent.mkdir(parents=True, exist_ok=True)
        runs.write_text("not a folder")
    else:
        runs.mkdir(parents=True, exist_ok=True)
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == runs
                            else real_access(path, mode, **kw))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    for page in ("overview", "experiments", "compare", "predict"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        [error] = [shown(e.value) for e in at.error]
        said = ("a file stands where the run store's runs folder should be" if blocked == "a file"
                else "the run store's runs folder ")
        assert error.startswith(f"Run store: {said}"), (page, error)
        assert str(isolated_artifacts) not in error
