"""The demo runs committed in artifacts/runs are complete, match the demo configs, and predict."""

import shutil
from pathlib import Path

import numpy as np

from leukdash.config import RunConfig
from leukdash.reporting.demo import DEMO_CONFIGS
from leukdash.evaluation.predict import predict_images
from leukdash.engine.runner import load_result
from leukdash.engine.store import RunStore

SHIPPED_RUNS = Path(__file__).resolve().parent.parent / "artifacts" / "runs"
SHIPPED = RunStore(SHIPPED_RUNS)


def _demo_runs() -> dict[int, dict]:
    """The finished run in the repository's store for each demo config, by its index."""
    found = {}
    for entry in SHIPPED.list_runs():
        config = RunConfig.from_dict(entry["meta"]["config"])
        for index, demo in enumerate(DEMO_CONFIGS):
            if config.dataset == demo.dataset and config.canonical() == demo.canonical():
                result = load_result(entry["run_id"], SHIPPED)
                if result is not None:
                    found[index] = result
    return found


def test_every_demo_config_ships_as_a_finished_run():
    found = _demo_runs()
    assert sorted(found) == list(range(len(DEMO_CONFIGS)))
    for index, result in found.items():
        assert result["dataset"]["synthetic"] and len(result["folds"]) == DEMO_CONFIGS[index].folds
        assert 0.5 < result["summary"]["val_acc"]["mean"] <= 1.0  # five classes: chance is 0.2


def test_demo_models_predict(tmp_path, isolated_artifacts):
    # A prediction caches the run's out-of-distribution description beside it: predict from a copy,
    # so the repository's store stays as committed.
    copy = RunStore(shutil.copytree(SHIPPED_RUNS, tmp_path / "runs"))
    image = np.full((40, 40, 3), 220, np.uint8)
    for result in _demo_runs().values():
        (prediction,) = predict_images(result["run_id"], [image], copy)
        assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-4
        assert prediction["n_folds"] == 5
        # Both checks come from the references shipped beside the run: no dataset is drawn.
        assert "error" not in prediction["ood"] and prediction["known"] is None
    assert not (isolated_artifacts / "datasets").exists()
