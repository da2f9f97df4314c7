"""Model files are loaded only as the types leukdash writes: a forged file, or a pickle of an earlier version
(until `trust-models` converts it), is refused with one line and runs nothing; nothing is moved aside. A received
store's forged files, through `predict`: the hostile case in test_hostile_cli."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from leukdash.cli import main
from leukdash.config import RunConfig
from leukdash.engine.runner import run
from leukdash.engine.store import RunStore
from leukdash.errors import UntrustedModel
from leukdash.evaluation.predict import predict_files
from leukdash.models import classic

MARKER = Path("/tmp/leukdash-untrusted-model-ran")


class Forged:
    """An object whose loading runs code: skops builds it with ``__setstate__``, a pickle with ``__reduce__``."""

    def __setstate__(self, state):
        MARKER.write_text("ran")

    def __reduce__(self):
        return (MARKER.write_text, ("ran",))


@pytest.fixture
def marker():
    MARKER.unlink(missing_ok=True)
    yield MARKER
    MARKER.unlink(missing_ok=True)


@pytest.mark.parametrize("model", ["nb", "svm", "knn", "dt"])
@pytest.mark.parametrize("feature_set", ["pixels", "features"])
def test_every_classic_model_predicts_the_same_through_save_and_load(model, feature_set, tmp_path):
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8), np.arange(24) % 2
    features = classic.featurize(images, feature_set)
    fitted = classic.make_classifier(model, feature_set).fit(features, labels)
    classic.save(fitted, tmp_path / "fold_0.skops")
    loaded = classic.load(tmp_path / "fold_0.skops", "r1")
    assert np.array_equal(loaded.predict_proba(features), fitted.predict_proba(features))


def test_a_model_file_holding_another_type_is_refused_and_runs_nothing(tmp_path, marker):
    import skops.io

    skops.io.dump({"model": Forged()}, tmp_path / "fold_0.skops")
    with pytest.raises(UntrustedModel) as refused:
        classic.load(tmp_path / "fold_0.skops", "r1")
    assert str(refused.value).startswith("run r1: models/fold_0.skops holds ") and "Forged" in str(refused.value)
    assert not marker.exists()


def _rehashed(run_id: str, fold: int, file: Path) -> None:
    """Point the fold's record at ``file`` with its sha256, as a forger (or an earlier version) would."""
    record_path = RunStore().fold_path(run_id, fold)
    record = json.loads(record_path.read_text())
    record["model"] = {"file": file.name, "sha256": hashlib.sha256(file.read_bytes()).hexdigest()}
    record_path.write_text(json.dumps(record))


def test_a_pickle_of_an_earlier_version_is_refused_until_trust_models_converts_it(tiny_dataset, capsys):
    import joblib

    knn_run = run(RunConfig(dataset=str(tiny_dataset), model="knn", image_size=16, augment_factor=1, folds=2),
                  n_jobs=1)["run_id"]
    store, image = RunStore(), next(tiny_dataset.glob("*/*.png"))
    before = predict_files(knn_run, [image])[0]["probabilities"]
    for fold in (0, 1):  # the store an earlier version wrote: its models pickled, as fold_<i>.joblib
        skops_path = store.model_path(knn_run, fold, "skops")
        pickle = skops_path.with_suffix(".joblib")
        joblib.dump(classic.load(skops_path, knn_run), pickle)
        skops_path.unlink()
        _rehashed(knn_run, fold, pickle)
    assert main(["predict", knn_run, str(image)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: run {knn_run}: models/fold_0.joblib is a pickle written by an earlier leukdash version, and "
        "loading a pickle runs any code it holds; if you trust this store, "
        f"`python -m leukdash trust-models {knn_run}` converts it")
    assert store.read_fold(knn_run, 0) is not None  # kept: the user decides
    assert main(["trust-models", knn_run]) == 0
    assert f"run {knn_run}: models/fold_1.joblib -> models/fold_1.skops" in capsys.readouterr().out
    assert not list((store.run_dir(knn_run) / "models").glob("*.joblib"))
    assert predict_files(knn_run, [image])[0]["probabilities"] == before



def test_trust_models_converts_an_earlier_versions_pickled_final_model(tiny_dataset):
    import joblib

    from leukdash.engine.final import refit
    from leukdash.engine.trust_models import trust_models
    from leukdash.evaluation.predict import ensemble

    run_id = run(RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, augment_factor=1, folds=2),
                 n_jobs=1)["run_id"]
    refit(run_id)
    folder = RunStore().run_dir(run_id)
    record = json.loads((folder / "final.json").read_text())
    pickle = folder / "models" / "final.joblib"
    joblib.dump(classic.load(folder / "models" / record["file"], run_id), pickle)
    (folder / "models" / record["file"]).unlink()
    (folder / "final.json").write_text(json.dumps(
        {**record, "file": pickle.name, "sha256": hashlib.sha256(pickle.read_bytes()).hexdigest()}))
    with pytest.raises(UntrustedModel, match=f"run {run_id}: models/final.joblib is a pickle written by an earlier"):
        ensemble(run_id, final=True)
    assert trust_models([]) == ([f"run {run_id}: models/final.joblib -> models/final.skops"], [])
    assert len(ensemble(run_id, final=True).models) == 1 and not pickle.exists()


@pytest.mark.parametrize("forged", ["list", "logistic"])
def test_a_model_file_of_types_skops_trusts_that_is_no_leukdash_model_is_refused_in_one_line(
        forged, tiny_dataset, tmp_path, capsys):
    """skops trusts lists and scikit-learn estimators by default: such a file, its record rehashed, is refused
    as an untrusted type is, not used until it fails with a traceback."""
    import skops.io
    from sklearn.linear_model import LogisticRegression

    run_id = run(RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, augment_factor=1, folds=2),
                 n_jobs=1)["run_id"]
    store, image = RunStore(), next(tiny_dataset.glob("*/*.png"))
    path = store.model_path(run_id, 0, "skops")
    content = [1, 2] if forged == "list" else LogisticRegression().fit(np.eye(4), [0, 1, 0, 1])
    result = store.read_fold(run_id, 0)
    skops.io.dump(content, path)
    store.write_fold(run_id, 0, result, model=path)
    assert main(["predict", run_id, str(image)]) == 2
    kind = "list" if forged == "list" else "LogisticRegression"
    assert capsys.readouterr().err.strip() == (
        f"error: run {run_id}: models/fold_0.skops holds a {kind} that is not a model leukdash writes, so it is "
        "not used: remove the run unless you know where the file came from")
    assert path.exists()


@pytest.mark.parametrize("content", ["not a zip", "schema without keys"])
def test_a_model_file_skops_cannot_read_is_not_blamed_on_memory(content, tiny_dataset, capsys):
    """A malformed file whose record was rehashed to match is no model leukdash wrote; memory is said for a
    MemoryError alone (test_store_damage)."""
    import zipfile

    run_id = run(RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, augment_factor=1, folds=2),
                 n_jobs=1)["run_id"]
    store, image = RunStore(), next(tiny_dataset.glob("*/*.png"))
    path = store.model_path(run_id, 0, "skops")
    result = store.read_fold(run_id, 0)
    if content == "not a zip":
        path.write_bytes(b"not a zip")
    else:
        with zipfile.ZipFile(path, "w") as forged:
            forged.writestr("schema.json", "{}")
    store.write_fold(run_id, 0, result, model=path)
    assert main(["predict", run_id, str(image)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: run {run_id}: models/fold_0.skops is not a model file leukdash wrote (forged or "
                          "damaged by hand: ") and "\n" not in err and "memory" not in err
    assert err.endswith("), so it is not used: remove the run unless you know where the file came from")
    assert path.exists() and store.read_fold(run_id, 0) is not None


def _legacy_runs(tiny_dataset) -> list[str]:
    """An nb and a k-NN run whose fold 0 model is a pickle, as earlier versions stored it."""
    import joblib

    store, run_ids = RunStore(), []
    for model in ("nb", "knn"):
        run_id = run(RunConfig(dataset=str(tiny_dataset), model=model, image_size=16, augment_factor=1, folds=2),
                     n_jobs=1)["run_id"]
        skops_path = store.model_path(run_id, 0, "skops")
        pickle = skops_path.with_suffix(".joblib")
        joblib.dump(classic.load(skops_path, run_id), pickle)
        skops_path.unlink()
        _rehashed(run_id, 0, pickle)
        run_ids.append(run_id)
    return run_ids


def test_trust_models_does_not_wait_for_a_run_being_computed_and_converts_the_others(tiny_dataset, capsys):
    """A run being computed can hold its lock for hours: trust-models says so in one line and goes on."""
    store, (busy, free) = RunStore(), _legacy_runs(tiny_dataset)
    busy_line = (f"run {busy} is being computed by another process: its models were not converted; "
                 f"run `python -m leukdash trust-models {busy}` again when it has finished")
    with store.lock(busy):
        assert main(["trust-models", busy]) == 1
        assert capsys.readouterr().out.strip() == busy_line
        assert main(["trust-models"]) == 1
        assert capsys.readouterr().out.strip().splitlines() == [
            f"run {free}: models/fold_0.joblib -> models/fold_0.skops", busy_line]
    assert main(["trust-models"]) == 0
    assert capsys.readouterr().out.strip() == f"run {busy}: models/fold_0.joblib -> models/fold_0.skops"


def test_trust_models_of_an_ensemble_converts_its_members_pickles(tiny_dataset, capsys):
    """An ensemble loads its members' models: naming it converts theirs, each member once."""
    from leukdash.engine.ensemble import create_ensemble
    from leukdash.evaluation.predict import ensemble

    members = _legacy_runs(tiny_dataset)
    outer = create_ensemble(members)["run_id"]
    with pytest.raises(UntrustedModel):
        ensemble(outer)
    assert main(["trust-models", outer]) == 0
    assert sorted(capsys.readouterr().out.strip().splitlines()) == sorted(
        f"run {member}: models/fold_0.joblib -> models/fold_0.skops" for member in members)
    assert len(ensemble(outer).parts()) == 2


def test_trust_models_says_which_pickle_it_did_not_convert_and_removes_a_leftover_one(tiny_dataset, capsys):
    """A pickle that no longer matches its fold's record is kept and said, on every call; a pickle left by a
    conversion stopped after its record was rewritten is no model of the run: removed, and said."""
    import joblib

    run_id = run(RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, augment_factor=1, folds=2),
                 n_jobs=1)["run_id"]
    store = RunStore()
    models = store.run_dir(run_id) / "models"
    for fold in (0, 1):
        skops_path = store.model_path(run_id, fold, "skops")
        joblib.dump(classic.load(skops_path, run_id), skops_path.with_suffix(".joblib"))
    skops_path.unlink()
    _rehashed(run_id, 1, models / "fold_1.joblib")
    (models / "fold_1.joblib").write_bytes((models / "fold_1.joblib").read_bytes()[:-10])  # truncated
    damaged = (f"run {run_id}: models/fold_1.joblib does not match its fold's record, or that record is damaged or "
               "missing: not converted; its fold is recomputed by `python -m leukdash run --config-file "
               f"{store.run_dir(run_id) / 'meta.json'}` (or by launching the run again)")
    assert main(["trust-models", run_id]) == 1
    assert capsys.readouterr().out.strip().splitlines() == [
        f"run {run_id}: models/fold_0.joblib removed: left over from an earlier conversion, its record names "
        "models/fold_0.skops", damaged]
    assert main(["trust-models"]) == 1
    assert capsys.readouterr().out.strip() == damaged
    assert (models / "fold_1.joblib").exists() and not (models / "fold_0.joblib").exists()
