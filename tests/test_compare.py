"""Pairing runs for McNemar's test: why a pair cannot be paired is said right."""

from leukdash.evaluation.compare import paired_mcnemar


def result(fingerprint: str, name: str = "allidb2_ufpr", path: str = "/data/allidb2_ufpr") -> dict:
    oof = {"index": [0, 1, 2], "copy": [0, 0, 0], "true": [0, 1, 1], "proba": [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]}
    return {"dataset": {"fingerprint": fingerprint, "name": name, "path": path}, "folds": [{"oof": oof}]}


def test_two_tasks_of_one_dataset_are_not_called_different_datasets():
    assert paired_mcnemar(result("a"), result("b"))["note"] == "different tasks (class subsets) of one dataset"
    other = result("c", name="synthetic", path="/art/datasets/synthetic")
    assert paired_mcnemar(result("a"), other)["note"] == "different datasets"
    same = paired_mcnemar(result("a"), result("a"))
    assert same["p_value"] == 1.0 and same["n"] == 3 and same["note"] == ""
