"""Ensembles of finished runs: out-of-fold figures from the members' stored probabilities, the
same folds required, and the ensemble read as a run by compare, predict, evaluate and runs."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from leukdash.cli import main
from leukdash.config import AugmentConfig, RunConfig
from leukdash.engine.ensemble import create_ensemble, fold_difference
from leukdash.data.arrays import load_arrays
from leukdash.data.decode import decode_image
from leukdash.data.discovery import open_dataset
from leukdash.engine.run_data import open_run_dataset
from leukdash.engine.runner import load_result, run
from leukdash.engine.store import RunStore
from leukdash.errors import RunError
from leukdash.evaluation.compare import compare_runs
from leukdash.evaluation.evaluate import evaluate
from leukdash.evaluation.predict import ensemble, predict_images


def tiny_config(dataset: Path, **changes) -> RunConfig:
    values = dict(dataset=str(dataset), model="nb", feature_set="features", image_size=32, augment_factor=1,
                  augment=AugmentConfig.off(), folds=2)
    return RunConfig(**{**values, **changes})


@pytest.fixture
def members(tiny_dataset) -> list[dict]:
    configs = [tiny_config(tiny_dataset), tiny_config(tiny_dataset, model="knn", k=3),
               tiny_config(tiny_dataset, model="svm", image_size=24, feature_set="pixels")]
    return [run(config, n_jobs=1) for config in configs]


def _oof_by_image(result: dict) -> dict:
    """(image, copy) -> (true label, probabilities), read from the stored fold files."""
    found = {}
    for fold in result["folds"]:
        oof = fold["oof"]
        for index, copy, true, proba in zip(oof["index"], oof["copy"], oof["true"], oof["proba"]):
            found[(index, copy)] = (true, np.asarray(proba))
    return found


def test_the_ensembles_out_of_fold_figures_are_the_weighted_vote_of_its_members(members):
    weights = [1.0, 2.0, 1.0]
    made = create_ensemble([m["run_id"] for m in members], weights)
    assert made["run_id"].startswith("ensemble-") and not made["cached"]
    # Recomputed here from the members' stored out-of-fold probabilities, image by image.
    stored = [_oof_by_image(load_result(m["run_id"])) for m in members]
    keys = sorted(stored[0])
    assert all(sorted(s) == keys for s in stored)  # identical folds: the same images validated
    true = np.array([stored[0][k][0] for k in keys])
    vote = sum(w * np.stack([s[k][1] for k in keys]) for w, s in zip(weights, stored)) / sum(weights)
    ensemble_oof = _oof_by_image(made)
    assert sorted(ensemble_oof) == keys
    np.testing.assert_allclose(np.stack([ensemble_oof[k][1] for k in keys]), vote, atol=1e-5)
    for fold in made["folds"]:
        index = [keys.index((i, c)) for i, c in zip(fold["oof"]["index"], fold["oof"]["copy"])]
        assert fold["val_acc"] == pytest.approx(float(np.mean(vote[index].argmax(1) == true[index])))
        assert fold["balanced_acc"] == pytest.approx(balanced_accuracy_score(true[index], vote[index].argmax(1)))
    assert made["summary"]["val_acc"]["mean"] == pytest.approx(np.mean([f["val_acc"] for f in made["folds"]]))
    # The same members and weights in another order are the same stored ensemble.
    again = create_ensemble([m["run_id"] for m in reversed(members)], list(reversed(weights)))
    assert again["run_id"] == made["run_id"] and again["cached"]


def test_members_with_other_folds_datasets_or_classes_are_refused(members, tiny_dataset, capsys):
    other_folds = run(tiny_config(tiny_dataset, folds=3), n_jobs=1)
    other_seed = run(tiny_config(tiny_dataset, seed=1), n_jobs=1)
    holdout = run(tiny_config(tiny_dataset, test_fraction=0.5, folds=5), n_jobs=1)
    fewer_classes = run(tiny_config(tiny_dataset, classes=("ALL", "HEALTHY")), n_jobs=1)
    first = members[0]["run_id"]
    # The refusal names each setting that differs, with both values.
    for other, differ in ((other_folds, "fold count 2 vs 3"), (other_seed, "seed 0 vs 1")):
        with pytest.raises(RunError, match=rf"different folds \({differ}\)"):
            create_ensemble([first, other["run_id"]])
    # A holdout split does not read the fold count: the refusal names only the test fraction.
    with pytest.raises(RunError, match=r"different folds \(test fraction 0.5 vs none \(3 folds\)\): "):
        create_ensemble([holdout["run_id"], other_folds["run_id"]])
    alike = tiny_config(tiny_dataset).to_dict()
    assert fold_difference(alike, alike) == "fold count, seed, protocol and test fraction alike, yet other folds drawn"
    # Strict and paper draw the same folds: the protocol is named only where it is lodo's.
    paper_three = tiny_config(tiny_dataset, protocol="paper", folds=3).to_dict()
    assert fold_difference(alike, paper_three) == "fold count 2 vs 3"
    lodo = {**alike, "protocol": "lodo"}
    assert fold_difference(alike, lodo) == "protocol strict vs lodo"
    with pytest.raises(RunError, match="different class sets"):
        create_ensemble([first, fewer_classes["run_id"]])
    reordered = run(tiny_config(tiny_dataset, classes=("HEALTHY", "ALL")), n_jobs=1)
    with pytest.raises(RunError, match=r"list their classes in different orders \(ALL, HEALTHY vs HEALTHY, ALL\)"):
        create_ensemble([fewer_classes["run_id"], reordered["run_id"]])
    for bad in ([first], [first, first], [first, "knn-000000000000"]):
        with pytest.raises(RunError):
            create_ensemble(bad)
    with pytest.raises(RunError, match="weight"):
        create_ensemble([first, members[1]["run_id"]], [1.0])
    nested = create_ensemble([first, members[1]["run_id"]])["run_id"]
    with pytest.raises(RunError, match="itself an ensemble"):
        create_ensemble([nested, members[2]["run_id"]])
    # The command line: one line on stderr, exit 2, nothing stored.
    stored = sorted(run["run_id"] for run in RunStore().list_runs())
    assert main(["ensemble", first, other_folds["run_id"]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different folds (fold count 2 vs 3)" in err[0]
    assert sorted(run["run_id"] for run in RunStore().list_runs()) == stored


def test_paper_protocol_members_validating_other_copies_are_refused_naming_the_setting(tiny_dataset, capsys):
    # The paper protocol validates augmented copies: same folds and copy numbers, other pictures.
    paper = dict(protocol="paper", augment=AugmentConfig(), augment_factor=2)
    first = run(tiny_config(tiny_dataset, **paper), n_jobs=1)["run_id"]
    same_copies = run(tiny_config(tiny_dataset, model="knn", **paper), n_jobs=1)["run_id"]
    blurred = run(tiny_config(tiny_dataset, **{**paper, "augment": AugmentConfig(blur=1.0)}), n_jobs=1)["run_id"]
    more_copies = run(tiny_config(tiny_dataset, **{**paper, "augment_factor": 3}), n_jobs=1)["run_id"]
    assert create_ensemble([first, same_copies])["run_id"].startswith("ensemble-")
    with pytest.raises(RunError, match=r"validated different augmented copies under the paper protocol "
                                       r"\(blur 0 vs 1\): .* of different pictures"):
        create_ensemble([first, blurred])
    stored = sorted(run["run_id"] for run in RunStore().list_runs())
    assert main(["ensemble", first, more_copies]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(augment factor 2 vs 3)" in err[0], err
    assert sorted(run["run_id"] for run in RunStore().list_runs()) == stored


def test_a_strict_and_a_paper_run_are_refused_as_validating_copies_not_as_other_folds(tiny_dataset):
    # Their folds are the same images: the paper run also validated augmented copies, which the strict one did not.
    strict = run(tiny_config(tiny_dataset), n_jobs=1)["run_id"]
    paper = run(tiny_config(tiny_dataset, protocol="paper", augment=AugmentConfig(), augment_factor=2),
                n_jobs=1)["run_id"]
    with pytest.raises(RunError) as refused:
        create_ensemble([strict, paper])
    assert str(refused.value) == (
        f"runs {strict} and {paper} validated the same folds, but {paper} also validated augmented copies under the "
        f"paper protocol and {strict} only the originals: their out-of-fold probabilities are not all of the same "
        "pictures; use runs of the same protocol")
    paper_folds = run(tiny_config(tiny_dataset, protocol="paper", augment=AugmentConfig(), augment_factor=2,
                                  folds=3), n_jobs=1)["run_id"]
    with pytest.raises(RunError, match=r"validated different folds \(fold count 2 vs 3"):
        create_ensemble([strict, paper_folds])  # other folds as well: said as before


def test_compare_predict_evaluate_and_runs_treat_an_ensemble_as_a_run(members, tiny_dataset, capsys):
    made = create_ensemble([m["run_id"] for m in members])
    comparison = compare_runs([members[0]["run_id"], made["run_id"]])
    assert comparison["runs"][1]["label"].startswith("Ensemble (Naive Bayes on features + 3-NN on features")
    assert comparison["mcnemar"][0]["n"] == 40 and comparison["mcnemar"][0]["p_value"] is not None

    # Predict: each fold is the weighted mean of the members' fold models, each fed its own size.
    images = [decode_image(path) for path in sorted(tiny_dataset.glob("ALL/*.png"))[:3]]
    loaded = ensemble(made["run_id"])
    per_member = [member.fold_probabilities(images) for member, _ in loaded.parts()]
    expected = np.mean(per_member, axis=0).mean(axis=0)
    predicted = predict_images(made["run_id"], images)
    for entry, row in zip(predicted, expected):
        assert entry["n_folds"] == 2 and entry["predicted"] == loaded.classes[int(row.argmax())]
        assert list(entry["probabilities"].values()) == pytest.approx(row.tolist(), abs=1e-5)
        assert "outside" in entry["ood"] and entry["known"]["file"].startswith("ALL/")

    assert main(["runs"]) == 0
    assert made["run_id"] in capsys.readouterr().out
    assert main(["compare", made["run_id"], members[1]["run_id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["config"]["model"] == "ensemble"


def test_evaluate_scores_the_ensembles_vote_on_another_dataset(members, inverted_lab):
    other = inverted_lab
    made = create_ensemble([m["run_id"] for m in members])
    result = evaluate(made["run_id"], str(other))
    single = [evaluate(m["run_id"], str(other)) for m in members]
    assert result["n_images"] == 40 and result["run"]["config"]["model"] == "ensemble"
    # Its figures are those of the members' fold ensembles averaged, each on the images at its own size.
    dataset = open_dataset(str(other))
    vote = np.mean([member.batch_probabilities(load_arrays(dataset, member.config.image_size).images).mean(axis=0)
                    for member, _ in ensemble(made["run_id"]).parts()], axis=0)
    labels = load_arrays(dataset, 32).labels
    assert result["accuracy"] == pytest.approx(float(np.mean(vote.argmax(1) == labels)))
    # An image the ensemble flags is one some member flags: never fewer than the most cautious member.
    assert result["ood_share"] >= max(s["ood_share"] for s in single)
    assert result["ood_own_share"] >= max(s["ood_own_share"] for s in single)


def test_an_ensemble_whose_member_is_gone_is_not_whole_and_gives_no_stored_answer(members, inverted_lab, capsys):
    import shutil

    made = create_ensemble([m["run_id"] for m in members[:2]])["run_id"]
    assert evaluate(made, str(inverted_lab))["n_images"] == 40  # stored beside the ensemble
    store = RunStore()
    shutil.rmtree(store.run_dir(members[1]["run_id"]))
    assert {r["run_id"]: r["status"] for r in store.list_runs()}[made] == "partial"
    assert load_result(made) is None
    with pytest.raises(RunError, match=f"member run\\(s\\) {members[1]['run_id']} gone or not whole"):
        evaluate(made, str(inverted_lab))
    assert main(["evaluate", made, str(inverted_lab)]) == 2
    assert members[1]["run_id"] in capsys.readouterr().err
    # Running the member's settings again makes the ensemble whole again, with the same id.
    run(tiny_config(members[1]["config"]["dataset"], model="knn", k=3), n_jobs=1)
    assert load_result(made) is not None


def test_an_ensemble_finds_its_images_where_its_members_were_answered_for_them(tiny_dataset, inverted_lab, tmp_path):
    import shutil

    trained = shutil.copytree(tiny_dataset, tmp_path / "R")
    configs = [tiny_config(trained), tiny_config(trained, model="knn", k=3)]
    made = create_ensemble([run(config, n_jobs=1)["run_id"] for config in configs])["run_id"]
    moved = trained.rename(tmp_path / "R2")
    with pytest.raises(RunError, match=r"which are gone: .* or run one of its members' commands on the images' new "
                                       r"folder \(answered from the store, the ensemble then finds them there\)$"):
        evaluate(made, str(inverted_lab))
    for config in configs:  # answered from the store: each member notes the new folder beside it
        assert run(config.with_changes(dataset=str(moved)), n_jobs=1)["cached"]
    assert evaluate(made, str(inverted_lab))["n_images"] == 40
    assert open_run_dataset(RunStore().read_meta(made)).root == moved


def test_the_compare_and_predict_pages_show_an_ensemble_as_a_run(members, tiny_dataset):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    made = create_ensemble([m["run_id"] for m in members[:2]])
    st.cache_data.clear()
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "streamlit_app.py"), default_timeout=60).run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = at.dataframe[0].value
    row = shown[shown["Run id"] == made["run_id"]].iloc[0]
    assert row["Model"] == "Ensemble (Naive Bayes on features + 3-NN on features)"
    assert row["Val. accuracy"] == pytest.approx(100 * made["summary"]["val_acc"]["mean"])  # shown in %

    at.switch_page("pages/predict.py").run()
    at.selectbox(key="predict_run").set_value(made["run_id"])
    png = sorted(tiny_dataset.glob("AML/*.png"))[0].read_bytes()
    at.file_uploader(key="predict_upload").set_value([("cell.png", png, "image/png")])
    at.run(timeout=120)
    assert not at.exception, [e.value for e in at.exception]
    predicted = next(m.value for m in at.markdown if m.value.startswith("Predicted:"))
    expected = predict_images(made["run_id"], [decode_image(sorted(tiny_dataset.glob("AML/*.png"))[0])])[0]
    # One of the run's own images: headlined by the ensemble's vote of the fold that validated it.
    known = expected["known"]
    assert f"**{known['prediction']}**" in predicted and f"from fold {known['fold']}'s model" in predicted
    st.cache_data.clear()


@pytest.mark.parametrize("weights, said", [
    ([1.0], r"1 weight\(s\) for 2 runs: give one weight per run"),
    ([0.0, 0.0], r"a member of weight 0 would not vote: leave it out \(weights \[0.0, 0.0\]\)"),
    ([1.0, 0.0], r"a member of weight 0 would not vote: leave it out \(weights \[1.0, 0.0\]\)"),
    ([1.0, -0.0], r"a member of weight 0 would not vote"),
    ([-1.0, 2.0], r"weights must be finite, positive numbers, got \[-1.0, 2.0\]"),
    ([float("nan"), 1.0], r"weights must be finite, .* got \[nan, 1.0\]"),
    ([float("inf"), 1.0], r"weights must be finite, .* got \[inf, 1.0\]"),
])
def test_weights_that_make_no_vote_are_refused_before_anything_is_stored(members, weights, said, capsys):
    before = sorted(p.name for p in RunStore().root.iterdir())
    ids = [m["run_id"] for m in members[:2]]
    with pytest.raises(RunError, match=said):
        create_ensemble(ids, weights)
    assert main(["ensemble", *ids, "--weights=" + ",".join(map(str, weights))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(said, err[0]), err
    assert sorted(p.name for p in RunStore().root.iterdir()) == before


def test_weights_whose_sum_overflows_are_the_same_vote_as_equal_weights(members):
    ids = [m["run_id"] for m in members[:2]]
    assert create_ensemble(ids, [1e308, 1e308])["run_id"] == create_ensemble(ids)["run_id"]


def test_ensembles_of_one_set_of_runs_with_other_weights_are_named_apart(members, capsys):
    from leukdash.evaluation.compare import run_label
    from leukdash.evaluation.labels import model_name

    ids = [m["run_id"] for m in members[:2]]
    equal, weighted = create_ensemble(ids), create_ensemble(ids, weights=[1, 3])
    assert model_name(equal["config"]) == "Ensemble (Naive Bayes on features + 3-NN on features)"
    assert model_name(weighted["config"]) == "Ensemble (Naive Bayes on features 0.25 + 3-NN on features 0.75)"
    assert run_label(weighted["config"]) == "Ensemble (Naive Bayes on features 0.25 + 3-NN on features 0.75)"
    assert main(["runs"]) == 0
    assert "Naive Bayes on features 0.25 + 3-NN on features 0.75" in capsys.readouterr().out
    # Its meta.json is no run config: the line gives the command that stores it again, under the same id.
    meta = RunStore().run_dir(weighted["run_id"]) / "meta.json"
    assert main(["run", "--config-file", str(meta), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    command = f"python -m leukdash ensemble {' '.join(ids)} --weights 0.25,0.75"
    assert len(err) == 1 and f"is the record of ensemble {weighted['run_id']}, not of a run: `{command}`" in err[0], err
    assert main(command.split()[3:] + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == weighted["run_id"]


def test_runs_on_two_states_of_one_folder_are_refused_as_images_changed(tiny_dataset, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_dataset, tmp_path / "myset")
    old = run(tiny_config(folder), n_jobs=1)["run_id"]
    for i, path in enumerate(sorted(folder.glob("ALL/*.png"))[:4]):
        shutil.copy(path, folder / "ALL" / f"added{i}.png")
    new = run(tiny_config(folder), n_jobs=1)["run_id"]
    with pytest.raises(RunError, match=rf"runs {old} and {new}: the images of myset changed between these runs "
                                       r"\(40 vs 44 images\): an ensemble needs runs on the same images"):
        create_ensemble([old, new])
