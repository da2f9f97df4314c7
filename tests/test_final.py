"""Final models: refitted on every image of a run, recorded beside it, tested by evaluate."""

import json

import numpy as np
import pytest

from leukdash.cli import main
from leukdash.config import AugmentConfig, RunConfig
from leukdash.data.arrays import load_arrays
from leukdash.data.discovery import open_dataset
from leukdash.engine.ensemble import create_ensemble
from leukdash.engine.final import final_record, refit
from leukdash.engine.runner import run
from leukdash.engine.store import RunStore
from leukdash.errors import RunError
from leukdash.evaluation.evaluate import evaluate, stored_evaluations
from leukdash.evaluation.predict import ensemble


def _config(dataset, **changes) -> RunConfig:
    values = dict(dataset=str(dataset), model="knn", k=1, feature_set="pixels", image_size=16, augment_factor=1,
                  augment=AugmentConfig.off(), folds=2)
    return RunConfig(**{**values, **changes})


def test_a_final_model_is_trained_on_every_image_and_recorded_in_the_run(tiny_dataset, inverted_lab, capsys):
    result = run(_config(tiny_dataset), n_jobs=1)
    run_id = result["run_id"]
    with pytest.raises(RunError, match="no final model"):
        evaluate(run_id, str(inverted_lab), model="final")
    record = refit(run_id)
    assert not record["cached"] and record["n_train"] == result["dataset"]["n_used"] == 40
    assert final_record(run_id) == {k: v for k, v in record.items() if k != "cached"}
    # 1-NN on every image: each image is its own nearest neighbour, unlike under cross-validation.
    images = load_arrays(open_dataset(str(tiny_dataset)), 16)
    final = ensemble(run_id, final=True)
    assert len(final.models) == 1
    predicted = final.batch_probabilities(images.images)[0].argmax(axis=1)
    assert np.array_equal(predicted, images.labels) and record["train_acc"] == 1.0
    assert result["summary"]["val_acc"]["mean"] < 1.0
    assert refit(run_id)["cached"]

    both = [evaluate(run_id, str(inverted_lab), model=model) for model in ("folds", "final")]
    assert [r["model"] for r in both] == ["folds", "final"] and both[0]["n_images"] == both[1]["n_images"] == 40
    assert [r["model"] for r in stored_evaluations(run_id)] == ["folds"]
    assert stored_evaluations(run_id, model="final")[0]["accuracy"] == both[1]["accuracy"]
    assert main(["evaluate", run_id, str(inverted_lab), "--model", "both", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["evaluations"]
    assert [r["accuracy"] for r in shown] == [r["accuracy"] for r in both]

    # A damaged final model is refused, then trained again.
    model_file = RunStore().run_dir(run_id) / "models" / record["file"]
    model_file.write_bytes(b"damaged")
    assert final_record(run_id) is None
    assert not refit(run_id)["cached"]


def test_run_final_model_and_an_ensembles_final_model(tiny_dataset, inverted_lab, capsys):
    assert main(["run", str(tiny_dataset), "--model", "nb", "--feature-set", "features", "--image-size", "16",
                 "--no-augment", "--folds", "2", "--final-model", "--quiet", "--n-jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "final model of nb-" in out and "40 images" in out
    nb = run(_config(tiny_dataset, model="nb", feature_set="features"), n_jobs=1)["run_id"]
    knn = run(_config(tiny_dataset), n_jobs=1)["run_id"]
    made = create_ensemble([nb, knn])["run_id"]
    # Only the knn member lacks its final model: the line names it, and the command that trains every member's.
    assert main(["evaluate", made, str(inverted_lab), "--model", "both"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"member(s) {knn} have no final model" in err and f"`python -m leukdash refit {made}`" in err, err
    record = refit(made)
    assert [m["run_id"] for m in record["members"]] == [nb, knn] and record["members"][0]["cached"]
    final = evaluate(made, str(inverted_lab), model="final")
    members = [evaluate(member, str(inverted_lab), model="final") for member in (nb, knn)]
    assert final["model"] == "final" and final["n_images"] == members[0]["n_images"]
    assert main(["refit", made]) == 0 and "cached" in capsys.readouterr().out


def test_a_stored_answer_of_a_final_model_is_not_given_once_the_model_is_gone(tiny_dataset, inverted_lab, capsys):
    run_id = run(_config(tiny_dataset, k=3), n_jobs=1)["run_id"]
    refit(run_id)
    evaluate(run_id, str(inverted_lab), model="final")  # stored
    record = final_record(run_id)
    (RunStore().run_dir(run_id) / "models" / record["file"]).unlink()
    with pytest.raises(RunError, match=f"run {run_id} has no final model"):
        evaluate(run_id, str(inverted_lab), model="final")
    # `both` without a final model answers neither, and computes nothing first.
    assert main(["evaluate", run_id, str(inverted_lab), "--model", "both"]) == 2
    assert "no final model" in capsys.readouterr().err
    assert stored_evaluations(run_id) == []
