"""Pools start the longest fold tasks first, from configs and inputs alone."""

from types import SimpleNamespace

import numpy as np
import pytest

from leukdash.config import RunConfig
from leukdash.engine.ordering import expected_seconds, order
from leukdash.engine.scheduler import FoldTask


def _task(run_id: str, fold: int = 0, **changes) -> FoldTask:
    return FoldTask(run_id, fold, 5, RunConfig(**{"image_size": 64, "augment_factor": 8, **changes}).to_dict())


def test_longest_tasks_first_and_ties_keep_their_order():
    inputs = {"small": SimpleNamespace(labels=np.zeros(260)), "five": SimpleNamespace(labels=np.zeros(903))}
    knn, cnn = [_task("small", f, model="knn") for f in range(2)], _task("small", model="cnn", architecture="paper")
    leukdash_cnn = _task("small", model="cnn", architecture="leukdash")
    svm_five, nb_five = _task("five", model="svm", feature_set="pixels"), _task("five", model="nb")
    ordered = order([*knn, nb_five, cnn, svm_five, leukdash_cnn], inputs)
    assert ordered[:3] == [svm_five, leukdash_cnn, cnn]
    assert ordered[-2:] == knn  # equal estimates: in the order given
    assert ordered.index(nb_five) < ordered.index(knn[0])  # more images, same model kind


def test_expected_seconds_grow_with_epochs_and_with_images_squared_for_the_svm():
    cnn = RunConfig(model="cnn", image_size=64).to_dict()
    assert expected_seconds({**cnn, "epochs": 50}, 260) == pytest.approx(2 * expected_seconds({**cnn, "epochs": 25}, 260))
    svm = RunConfig(model="svm", feature_set="pixels").to_dict()
    assert expected_seconds(svm, 520) == pytest.approx(4 * expected_seconds(svm, 260))
