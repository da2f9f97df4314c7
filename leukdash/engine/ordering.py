"""The order in which a pool starts fold tasks: the longest first.

A sweep's wall time is bounded below by (sum of fold times / cores), and reaches it only if
no long fold starts late and runs on alone while the other cores idle. Starting the longest
tasks first (the classic longest-processing-time rule) keeps the last round short: what is
left at the end are the short classic folds, which fill the cores evenly.

A task's length is estimated from its config and its run's inputs alone (no store, no clock),
so the order, like every result, is the same on every machine; it only decides which fold
starts when, never what a fold computes.
"""

from __future__ import annotations

from leukdash.engine.estimate import fold_work

# Seconds per unit of work, measured on allidb2_ufpr folds (64 px, x8 augmentation) on a 2-core
# AVX-512/BF16 EPYC; only their ratios matter here. A CNN unit is training pixels x epochs (paper
# CNN ~40 s a fold); the SVM's Gram matrix grows as training images squared x inputs (~5 s an
# ALL-IDB2 fold on pixels, ~60 s a five-class one); the other classic models are about linear.
CNN_RATE = {"paper": 2.5e-10, "leukdash": 4.2e-10}
SVM_RATE = 6e-10
CLASSIC_RATE = 2e-9
PIXEL_INPUTS = 32 * 32 * 3  # leukdash.models.classic.PIXEL_SIZE, RGB
FEATURE_INPUTS = 64


def expected_seconds(config: dict, n_images: int) -> float:
    """A rough length of one fold of ``config`` on a task of ``n_images`` images."""
    if config["model"] == "cnn":
        return fold_work(config, n_images) * CNN_RATE.get(config.get("architecture"), max(CNN_RATE.values()))
    n_train = fold_work({**config, "image_size": 1}, n_images)
    inputs = PIXEL_INPUTS if config.get("feature_set", "pixels") == "pixels" else FEATURE_INPUTS
    if config["model"] == "svm":
        return n_train ** 2 * inputs * SVM_RATE
    return n_train * inputs * CLASSIC_RATE


def order(tasks: list, inputs: dict) -> list:
    """``tasks`` (:class:`leukdash.engine.scheduler.FoldTask`) longest first; ``inputs`` maps a
    run id to its :class:`leukdash.engine.fold_planning.FoldInputs`. Ties keep their given order."""
    return sorted(tasks, key=lambda task: -expected_seconds(task.config, len(inputs[task.run_id].labels)))
