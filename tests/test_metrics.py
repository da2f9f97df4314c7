"""Fold metrics, summaries and McNemar's test against values computed by hand."""

import math

import numpy as np
import pytest

from leukdash.intervals import SHARE, clipped_summary
from leukdash.metrics import fold_metrics, mcnemar, summarize, summarize_folds

CLASSES = ("A", "B", "C")


def test_fold_metrics_match_hand_computed_values():
    y_true = [0, 0, 1, 1, 2]
    proba = np.array([
        [0.8, 0.1, 0.1],  # A -> A
        [0.2, 0.7, 0.1],  # A -> B
        [0.1, 0.6, 0.3],  # B -> B
        [0.1, 0.8, 0.1],  # B -> B
        [0.0, 0.0, 1.0],  # C -> C
    ])
    m = fold_metrics(y_true, proba, CLASSES)
    assert m["val_acc"] == pytest.approx(4 / 5)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert m["per_class_recall"] == pytest.approx({"A": 0.5, "B": 1.0, "C": 1.0})
    assert m["balanced_acc"] == pytest.approx((0.5 + 1 + 1) / 3)
    # F1: A = 2*1*0.5/1.5 = 2/3, B = 2*(2/3)*1/(5/3) = 0.8, C = 1.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 1.0) / 3)
    true_p = [0.8, 0.2, 0.6, 0.8, 1.0 - 1e-7]  # the certain row is clipped, not log(1) exactly
    assert m["val_loss"] == pytest.approx(-np.mean(np.log(true_p)), rel=1e-5)


def test_fold_metrics_stays_finite_for_a_certain_mistake_and_an_unpredicted_class():
    m = fold_metrics([0, 1], np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]), CLASSES)
    assert math.isfinite(m["val_loss"]) and m["val_loss"] > 5  # -log(1e-7) / 2 ~ 8
    assert m["confusion"] == [[0, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert m["per_class_recall"] == {"A": 0.0, "B": 1.0, "C": None}  # no image of C: no recall of C


def test_fold_metrics_of_a_fold_without_a_class_average_the_classes_it_holds():
    """A validation fold of one class (HEALTHY absent) gave HEALTHY a recall of 0 and halved macro F1."""
    m = fold_metrics([0, 0, 0], np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]), ("ALL", "HEALTHY"))
    assert m["per_class_recall"] == {"ALL": pytest.approx(2 / 3), "HEALTHY": None}
    assert m["balanced_acc"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx(0.8)  # ALL alone: precision 1, recall 2/3


def test_fold_metrics_rejects_a_wrong_probability_shape():
    with pytest.raises(ValueError, match="proba must have shape"):
        fold_metrics([0, 1], np.ones((2, 2)) / 2, CLASSES)


def test_summarize_gives_the_student_t_interval():
    s = summarize([0.6, 0.7, 0.8], bounds=SHARE)
    assert s["mean"] == pytest.approx(0.7)
    assert s["std"] == pytest.approx(0.1)  # ddof=1
    assert (s["min"], s["max"]) == pytest.approx((0.6, 0.8))
    half = 4.302652729749464 * 0.1 / math.sqrt(3)  # t(0.975, df=2)
    assert s["ci95"] == pytest.approx([0.7 - half, 0.7 + half])


def test_summarize_clips_to_the_bounds_it_must_be_given():
    """A share's interval ends at 1; a caller that forgot the bounds would leave it unclipped, so none may."""
    assert summarize([0.9, 1.0, 1.0], bounds=SHARE)["ci95"][1] == 1.0
    with pytest.raises(TypeError):
        summarize([0.9, 1.0, 1.0])
    with pytest.raises(TypeError):  # by name only: each call says which bounds it clips to
        summarize([0.9, 1.0, 1.0], SHARE)


def test_summarize_of_one_value_has_no_spread():
    assert summarize([0.75], bounds=SHARE) == {"mean": 0.75, "std": 0.0, "min": 0.75, "max": 0.75, "ci95": [0.75, 0.75]}


def test_summarize_folds_covers_the_float_metrics_only():
    folds = [
        {"fold": 0, "val_acc": 0.5, "val_loss": 1.0, "seconds": 2.0, "per_class_recall": {"A": 1.0}, "confusion": [[1]]},
        {"fold": 1, "val_acc": 1.0, "val_loss": 0.5, "seconds": 4.0, "per_class_recall": {"A": 1.0}, "confusion": [[1]]},
    ]
    s = summarize_folds(folds)
    assert set(s) == {"val_acc", "val_loss", "seconds"}
    assert s["val_acc"]["mean"] == pytest.approx(0.75)
    assert s["seconds"]["std"] == pytest.approx(math.sqrt(2))


def test_summaries_keep_intervals_within_the_range_of_their_metric():
    # t intervals of values near 1 (accuracies) or 0 (losses, seconds) leave the possible range.
    folds = [{"val_acc": a, "val_loss": loss, "seconds": t} for a, loss, t in [(0.6, 0.01, 0.1), (1.0, 0.9, 5.0)]]
    s = summarize_folds(folds)
    assert s["val_acc"]["ci95"][1] == 1.0 and s["val_acc"]["ci95"][0] < 0.6
    assert s["val_loss"]["ci95"][0] == 0.0 and s["val_loss"]["ci95"][1] > 0.9
    assert s["seconds"]["ci95"][0] == 0.0
    # A summary stored before the clipping is read with the same figures.
    old = {"val_acc": {"mean": 0.8, "ci95": [0.558, 1.275]}, "val_loss": {"mean": 0.3, "ci95": [-0.2, 0.8]},
           "per_source": {"a": {"folds": 2, "val_acc": {"mean": 0.9, "ci95": [0.5, 1.3]},
                                "per_class_recall": {"ALL": {"mean": 0.9, "ci95": [0.6, 1.2]}},
                                "pooled": {"val_acc": 0.9, "per_class_recall": {"ALL": 0.9}}}}}
    read = clipped_summary(old)
    assert read["val_acc"]["ci95"] == [0.558, 1.0] and read["val_loss"]["ci95"] == [0.0, 0.8]
    source = read["per_source"]["a"]
    assert source["val_acc"]["ci95"] == [0.5, 1.0] and source["per_class_recall"]["ALL"]["ci95"] == [0.6, 1.0]
    assert source["pooled"] == old["per_source"]["a"]["pooled"] and source["folds"] == 2


def test_mcnemar_exact_p_value_on_a_known_table():
    # A alone right on 1 image, B alone right on 9: p = 2 * P(X <= 1 | n=10, 1/2) = 2 * 11/1024.
    a = np.array([True] * 5 + [True] + [False] * 9 + [False] * 3)
    b = np.array([True] * 5 + [False] + [True] * 9 + [False] * 3)
    result = mcnemar(a, b)
    assert (result["b"], result["c"]) == (1, 9)
    assert result["p_value"] == pytest.approx(22 / 1024)


def test_mcnemar_without_disagreement_gives_p_one():
    same = np.array([True, False, True])
    assert mcnemar(same, same) == {"b": 0, "c": 0, "p_value": 1.0}


def test_group_members_are_each_groups_images_in_order_and_the_names_sorted_as_text():
    from leukdash.metrics import group_members

    groups = np.array(["p10", "p2", "p10", 7, "p2", "p10", 7], dtype=object)
    names, members = group_members(groups)
    assert names == [7, "p10", "p2"]  # sorted by their text: "7" < "p10" < "p2"
    for name, images in zip(names, members):
        assert images.tolist() == [i for i, g in enumerate(groups.tolist()) if g == name]
    names, members = group_members([])
    assert names == [] and sum(len(images) for images in members) == 0


def test_a_metric_not_known_as_a_share_keeps_its_interval():
    # Only the listed shares are clipped to 0-1: a new float metric of another range (a margin, a count
    # per image) is summarised and read back as it is.
    folds = [{"val_acc": 0.6, "margin": 2.0}, {"val_acc": 1.0, "margin": 3.0}]
    s = summarize_folds(folds)
    assert s["margin"]["ci95"][0] < 2.0 and s["margin"]["ci95"][1] > 3.0
    assert s["val_acc"]["ci95"][1] == 1.0
    assert clipped_summary(s) == s
