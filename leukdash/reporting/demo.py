"""The small finished demo runs shipped in ``artifacts/runs`` (``python -m leukdash demo``).

They let a fresh deploy show comparisons and predictions before anyone trains. They are
ordinary runs of the built-in synthetic set, kept small (32 px images, 5 folds): their fold
models add up to a few MB.
"""

from __future__ import annotations

from leukdash.config import AugmentConfig, RunConfig

_SMALL = dict(dataset="synthetic", image_size=32, folds=5, seed=0)

DEMO_CONFIGS = (
    RunConfig(model="cnn", architecture="paper", epochs=15, augment_factor=4, **_SMALL),
    *(RunConfig(model=model, feature_set="features", augment=AugmentConfig.off(), augment_factor=1, **_SMALL)
      for model in ("nb", "svm", "knn", "dt")),
)


def run_demo(on_event=None) -> list[dict]:
    """Compute (or read back) every demo run, with what Predict's checks need stored beside each
    (so a fresh deployment predicts without drawing the built-in dataset)."""
    from leukdash.engine.runner import run
    from leukdash.evaluation.predict import prepare_checks

    results = [run(config, on_event=on_event) for config in DEMO_CONFIGS]
    for result in results:
        prepare_checks(result["run_id"])
    return results
