"""The SVM from a precomputed kernel matrix is the RBF SVC it replaces: same folds, same figures."""

import numpy as np
import pytest
from sklearn.svm import SVC

from leukdash.config import RunConfig
from leukdash.engine.runner import resolve
from leukdash.engine.fold_planning import fold_inputs
from leukdash.engine.training import run_fold
from leukdash.models import classic
from leukdash.models.kernel_svm import KernelSVC


def _rbf_svc(C: float) -> SVC:
    return SVC(kernel="rbf", C=C, gamma="scale")


def _folds(config: RunConfig, tmp_path, monkeypatch, svm_class) -> list[dict]:
    monkeypatch.setattr(classic, "KernelSVC", svm_class)
    inputs = fold_inputs(config, resolve(config).dataset)
    results = []
    for fold in inputs.fold_ids:
        result = run_fold(config, inputs, fold, model_path=tmp_path / f"{svm_class.__name__}{fold}.skops")
        results.append({key: value for key, value in result.items() if key != "seconds"})
    return results


@pytest.mark.parametrize("feature_set", ["pixels", "features"])
def test_a_five_class_svm_run_has_the_same_folds_with_either_svm(tiny_dataset, tmp_path, monkeypatch, feature_set):
    config = RunConfig(dataset=str(tiny_dataset), model="svm", feature_set=feature_set, image_size=32,
                       augment_factor=2, folds=3)
    kernel = _folds(config, tmp_path, monkeypatch, KernelSVC)
    libsvm = _folds(config, tmp_path, monkeypatch, _rbf_svc)
    approximate = ("val_loss", "train_loss", "oof")
    for ours, theirs in zip(kernel, libsvm):
        # Every prediction, accuracy, recall and confusion matrix is the same...
        assert {k: v for k, v in ours.items() if k not in approximate} == \
            {k: v for k, v in theirs.items() if k not in approximate}
        assert {k: v for k, v in ours["oof"].items() if k != "proba"} == \
            {k: v for k, v in theirs["oof"].items() if k != "proba"}
        # ...and probabilities agree far below the report's precision (libsvm stops at a tolerance,
        # and kernel values that differ in the 16th digit can move its path within it).
        np.testing.assert_allclose(ours["oof"]["proba"], theirs["oof"]["proba"], rtol=0, atol=1e-4)
        assert ours["val_loss"] == pytest.approx(theirs["val_loss"], abs=1e-5)
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-5)
    assert min(fold["val_acc"] for fold in kernel) < 1  # a problem on which the SVM makes mistakes


def test_kernel_svc_predicts_as_svc_on_real_images(allidb2_path):
    from leukdash.data.arrays import load_arrays

    arrays = load_arrays(resolve(RunConfig(dataset=str(allidb2_path))).dataset, 32)
    order = np.random.default_rng(0).permutation(len(arrays.labels))
    train, test = order[:180], order[180:]
    features = classic.featurize(arrays.images, "pixels")
    features = (features - features[train].mean(0)) / (features[train].std(0) + 1e-9)
    kernel = KernelSVC(C=10.0).fit(features[train], arrays.labels[train])
    libsvm = _rbf_svc(10.0).fit(features[train], arrays.labels[train])
    np.testing.assert_array_equal(kernel.predict(features[test]), libsvm.predict(features[test]))
    np.testing.assert_allclose(kernel.decision_function(features[test]), libsvm.decision_function(features[test]),
                               rtol=0, atol=1e-9)
    np.testing.assert_array_equal(kernel.svc_.support_, libsvm.support_)
