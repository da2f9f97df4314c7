"""The support check: an answer is doubted when a training image of another class lies nearer
than the nearest of the class answered (trust score), calibrated on the run's own out-of-fold
answers; another lab's images are compared with their own statistics."""

import numpy as np
import pytest

from leukdash.config import AugmentConfig, RunConfig
from leukdash.data.decode import decode_image
from leukdash.engine.runner import load_result, run
from leukdash.evaluation.evaluate import evaluate
from leukdash.evaluation.predict import predict_images
from leukdash.evaluation.support import (MAX_SCORE, UNSUPPORTED_PERCENTILE, answer_support, takes_for_one_lab,
                                         trust_scores)


def _two_clusters(rng, n=40):
    reference = np.concatenate([rng.normal(0, 1, (n, 3)), rng.normal(6, 1, (n, 3))])
    return reference, np.repeat([0, 1], n)


def test_the_trust_score_is_the_other_class_distance_over_the_answered_class_distance():
    rng = np.random.default_rng(0)
    reference, labels = _two_clusters(rng)
    query = np.array([[0.0, 0.0, 0.0], [6.0, 6.0, 6.0]])
    right = trust_scores(reference, labels, query, np.array([0, 1]), 2)
    wrong = trust_scores(reference, labels, query, np.array([1, 0]), 2)
    assert np.all(right > 1) and np.all(wrong < 1)
    assert right == pytest.approx(1 / wrong)  # the same two distances, the other way round
    # By hand, for the first query: nearest of class 1 over nearest of class 0, standardised.
    mean, spread = reference.mean(0), reference.std(0)
    distances = np.linalg.norm((reference - mean) / spread - (query[0] - mean) / spread, axis=1)
    assert right[0] == pytest.approx(distances[labels == 1].min() / distances[labels == 0].min())
    # A class without training images is infinitely far: an answer of the other class is fully
    # supported (the largest score), an answer of that class not at all.
    alone = reference[labels == 0], labels[labels == 0]
    assert trust_scores(*alone, query[:1], np.array([0]), 2)[0] == MAX_SCORE
    assert trust_scores(*alone, query[:1], np.array([1]), 2)[0] == 0.0


def test_another_labs_shift_is_removed_when_its_images_are_compared_with_their_own_statistics():
    rng = np.random.default_rng(1)
    reference, labels = _two_clusters(rng)
    query, true = _two_clusters(rng, n=15)
    shifted = query * np.array([1.5, 1.0, 0.5]) + 6.0  # another stain, scale, camera: class 0 lands on class 1
    as_lab = trust_scores(reference, labels, shifted, true, 2, lab=shifted)
    # Standardising with its own statistics undoes any shift and scale of each descriptor ...
    assert as_lab == pytest.approx(trust_scores(reference, labels, query, true, 2, lab=query))
    assert np.mean(as_lab > 1) > 0.9  # ... so the right answers are supported again
    # ... which the training images' statistics do not: the shift decides the nearest class.
    assert np.mean(trust_scores(reference, labels, shifted, true, 2)[true == 0] > 1) < 0.1


@pytest.mark.parametrize("n, outside, expected", [(19, 19, False), (20, 10, True), (20, 9, False), (200, 200, True)])
def test_images_are_taken_for_one_labs_when_enough_and_mostly_outside(n, outside, expected):
    flags = np.arange(n) < outside
    assert takes_for_one_lab(flags) is expected


def _config(dataset, **changes) -> RunConfig:
    values = dict(dataset=str(dataset), model="knn", k=3, feature_set="features", image_size=32, augment_factor=1,
                  augment=AugmentConfig.off(), folds=2)
    return RunConfig(**{**values, **changes})


def test_the_floor_is_drawn_from_the_runs_own_out_of_fold_answers_and_evaluate_and_predict_use_it(
        tiny_dataset, inverted_lab):
    result = run(_config(tiny_dataset), n_jobs=1)
    run_id = result["run_id"]
    support = answer_support(run_id)
    n_validated = sum(copy == 0 for fold in load_result(run_id)["folds"] for copy in fold["oof"]["copy"])
    assert len(support.own_scores) == n_validated
    assert support.floor == pytest.approx(np.percentile(support.own_scores, UNSUPPORTED_PERCENTILE))

    flags = evaluate(run_id, str(inverted_lab))["flags"]["unsupported"]
    assert flags["floor"] == pytest.approx(support.floor)
    assert flags["own_share"] == pytest.approx(np.mean(support.own_scores < support.floor))
    assert flags["own_share"] <= UNSUPPORTED_PERCENTILE / 100 + 1 / n_validated

    images = [decode_image(path) for path in sorted(inverted_lab.glob("*/*.png"))[:3]]
    for answer in predict_images(run_id, images):
        judged = answer["unsupported"]
        assert judged["floor"] == pytest.approx(support.floor, abs=1e-4)
        assert judged["flag"] == (judged["score"] < support.floor)


def test_the_command_line_says_which_answer_is_unsupported(capsys):
    from leukdash.cli.output import print_checks

    answer = {"predicted": "ALL", "probabilities": {"ALL": 0.9, "AML": 0.1}, "fold_predictions": ["ALL", "ALL"],
              "n_folds": 2, "known": None, "unsupported": {"score": 0.31, "floor": 0.62, "flag": True}}
    print_checks(answer)
    assert "unsupported: a training image of another class lies near it (trust score 0.31, below 0.62" \
        in capsys.readouterr().out
    print_checks({**answer, "unsupported": {"score": 0.9, "floor": 0.62, "flag": False}})
    assert "unsupported" not in capsys.readouterr().out


def test_predict_adapt_compares_the_folder_as_one_lab_as_evaluate_adapt_does(tiny_dataset, inverted_lab):
    """Told that a folder is one lab's images, predict compares them with that lab's statistics (the
    sample its models were adapted to: here every image), so its doubts are evaluate --adapt's."""
    from pathlib import Path

    from leukdash.evaluation.predict import predict_files

    run_id = run(_config(tiny_dataset), n_jobs=1)["run_id"]
    tested = {row["file"]: row["unsupported"] for row in evaluate(run_id, str(inverted_lab), adapt=True)["images"]}
    adapted = predict_files(run_id, [inverted_lab], adapt=True)
    assert len(adapted) == len(tested) == 40
    assert [entry["unsupported"]["flag"] for entry in adapted] == \
        [tested[Path(entry["file"]).relative_to(inverted_lab).as_posix()] for entry in adapted]
    as_they_are = predict_files(run_id, [inverted_lab])
    scores = [[entry["unsupported"]["score"] for entry in answers] for answers in (as_they_are, adapted)]
    assert scores[0] != pytest.approx(scores[1])


def test_evaluate_stands_without_the_support_check_when_what_it_needs_is_gone(tiny_dataset, inverted_lab, tmp_path,
                                                                              capsys):
    """The run's dataset moved away and its reference of labels not stored: the external test is
    made all the same and says which checks it could not make (as predict does): the support
    check and the known-image check."""
    import shutil

    from leukdash.cli import main
    from leukdash.engine.store import RunStore

    copy = shutil.copytree(tiny_dataset, tmp_path / "moved")
    run_id = run(_config(copy), n_jobs=1)["run_id"]
    first = evaluate(run_id, str(inverted_lab))
    (RunStore().run_dir(run_id) / "reference.npz").unlink()
    shutil.rmtree(copy)
    again = evaluate(run_id, str(inverted_lab), recompute=True)
    assert again["balanced_accuracy"] == first["balanced_accuracy"] and "unsupported" in first["flags"]
    assert "unsupported" not in again["flags"] and all(row["unsupported"] is None for row in again["images"])
    [said] = [w for w in again["dataset"]["warnings"] if w.startswith("support check unavailable: ")]
    assert "which are gone" in said
    [said] = [w for w in again["dataset"]["warnings"] if w.startswith("known-image check unavailable (")]
    assert "which are gone" in said  # nor could copies of its images be found: the rest stands
    assert main(["evaluate", run_id, str(inverted_lab), "--csv"]) == 0
    assert {line.rsplit(",", 1)[1] for line in capsys.readouterr().out.splitlines()[1:]} == {""}


def test_scores_stay_numbers_and_a_floor_from_few_answers_never_doubts_a_supported_one():
    """An image identical to a training image of its class only is as supported as can be (a
    number, not infinity); one filed under both classes is a tie; the floor is at most 1."""
    from leukdash.evaluation.support import AnswerSupport

    reference, labels = np.array([[0.0, 0.0], [5.0, 5.0], [0.0, 0.0]]), np.array([0, 1, 0])
    assert trust_scores(reference, labels, np.array([[0.0, 0.0]]), np.array([0]), 2)[0] == MAX_SCORE
    filed_twice = trust_scores(np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0]]), np.array([0, 1, 1]),
                               np.array([[0.0, 0.0]]), np.array([0]), 2)
    assert filed_twice[0] == 1.0
    few = AnswerSupport([reference], labels, 2, own_scores=np.array([1.2, 1.5, 3.0, 9.0]))
    assert few.floor == 1.0
    assert not few.assess([np.array([[0.0, 0.0]])], np.array([0]), np.array([False]))["unsupported"][0]


def test_a_score_and_the_floor_it_fell_below_are_never_written_alike():
    from leukdash.evaluation.answer import apart

    assert apart(0.8568, 0.8595) == ("0.857", "0.860")
    assert apart(0.31, 0.62) == ("0.31", "0.62")
    assert apart(0.33349, 0.33351, percent=True) == ("33.3%", "33.4%")


def test_compare_says_how_many_answers_the_support_check_doubts_and_how_they_were_compared(tiny_dataset,
                                                                                           inverted_lab):
    from leukdash.evaluation.evaluation_text import outcome_sentence

    result = evaluate(run(_config(tiny_dataset), n_jobs=1)["run_id"], str(inverted_lab))
    flag = result["flags"]["unsupported"]
    sentence = outcome_sentence(result)
    assert f"; {flag['n_flagged']} of its {result['n_images']} answers ({flag['share']:.0%}) unsupported" in sentence
    assert ("(compared as one lab's images)" in sentence) == flag["one_lab"]


def test_predict_compares_a_folder_of_another_lab_as_evaluate_does_and_its_own_labs_images_as_they_are(
        tiny_dataset, inverted_lab, tmp_path, capsys):
    from pathlib import Path

    from leukdash.cli import main
    from leukdash.data.synthetic import CLASSES, generate_synthetic
    from leukdash.evaluation.predict import predict_files

    run_id = run(_config(tiny_dataset), n_jobs=1)["run_id"]
    tested = {row["file"]: row["unsupported"] for row in evaluate(run_id, str(inverted_lab))["images"]}
    answers = predict_files(run_id, [inverted_lab])
    assert all(entry["unsupported"]["one_lab"] for entry in answers)
    assert [entry["unsupported"]["flag"] for entry in answers] == \
        [tested[Path(entry["file"]).relative_to(inverted_lab).as_posix()] for entry in answers]
    assert main(["predict", run_id, str(inverted_lab), "--csv"]) == 0
    assert "warning: the support check compared these images as one lab's" in capsys.readouterr().err
    # More images drawn as the training set was: its own lab, each compared as it is.
    same_lab = generate_synthetic(tmp_path / "same", seed=9, counts={name: 5 for name in CLASSES}, size=32)
    assert not any(entry["unsupported"]["one_lab"] for entry in predict_files(run_id, [same_lab]))
    assert main(["predict", run_id, str(same_lab), "--csv"]) == 0
    assert "one lab's" not in capsys.readouterr().err
