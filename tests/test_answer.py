"""The Predict headline: the mean probability with its vote split, in words when they disagree,
and the out-of-fold answer for an image the run trained on."""

from leukdash.evaluation.answer import headline, one_class_warning, vote_split


def _result(votes, probabilities, known=None):
    predicted = max(probabilities, key=probabilities.get)
    return {"predicted": predicted, "probabilities": probabilities, "n_folds": len(votes),
            "agreement": votes.count(predicted), "fold_predictions": votes, "known": known}


def test_the_headline_is_the_mean_probability_and_shows_the_vote_split():
    answer = headline(_result(["ALL", "ALL", "ALL", "ALL", "AML"], {"ALL": 0.8, "AML": 0.2}))
    assert answer["predicted"] == "ALL" and answer["source"] == "mean"
    assert answer["detail"] == "mean probability 80% over 5 fold models · votes: ALL 4, AML 1"
    assert answer["disagreement"] is None


def test_a_vote_against_the_mean_is_said_in_words():
    # 3 of 5 vote ALL, but the two AML votes are sure enough to win the mean.
    answer = headline(_result(["ALL", "AML", "ALL", "AML", "ALL"], {"ALL": 0.46, "AML": 0.54}))
    assert answer["predicted"] == "AML" and "votes: ALL 3, AML 2" in answer["detail"]
    assert answer["disagreement"].startswith("The vote and the mean probability disagree: 3 of 5 fold models vote ALL")
    assert "54% against 46% for ALL" in answer["disagreement"]


def test_a_tied_vote_names_every_leader():
    answer = headline(_result(["ALL", "CML", "ALL", "CML", "AML"], {"ALL": 0.3, "AML": 0.4, "CML": 0.3}))
    assert vote_split(["ALL", "CML", "ALL", "CML", "AML"]) == [("ALL", 2), ("CML", 2), ("AML", 1)]
    assert "2 of 5 fold models vote each of ALL and CML, 1 AML" in answer["disagreement"]


def test_a_known_image_is_headlined_by_its_out_of_fold_answer():
    known = {"file": "ALL/a.png", "class": "ALL", "match": "identical", "fold": 3, "prediction": "HEALTHY",
             "probabilities": {"ALL": 0.33, "HEALTHY": 0.67}}
    answer = headline(_result(["ALL"] * 5, {"ALL": 0.93, "HEALTHY": 0.07}, known))
    assert answer["predicted"] == "HEALTHY" and answer["source"] == "out-of-fold"
    assert answer["probabilities"] == known["probabilities"]
    assert answer["detail"].startswith("67% from fold 3's model, the one that never trained on this image")
    assert "The whole ensemble says ALL (93%)" in answer["disagreement"]
    # A holdout run's training image has no out-of-fold model: the mean stays the headline.
    answer = headline(_result(["ALL"] * 5, {"ALL": 0.93, "HEALTHY": 0.07}, {**known, "fold": None, "prediction": None}))
    assert answer["source"] == "mean" and answer["predicted"] == "ALL"


def test_a_batch_answered_nearly_all_one_class_is_said_to_may_have_collapsed():
    answers = [{"predicted": "ALL"}] * 19 + [{"predicted": "HEALTHY"}]
    said = one_class_warning(answers + [{"file": "x.png", "error": "not an image"}], least=20)
    assert said.startswith("19 of 20 images are answered ALL: if they hold other classes too")  # the unread one not counted
    assert one_class_warning(answers[1:] + [{"predicted": "HEALTHY"}], least=20) is None  # 18 of 20: under 95%
    assert one_class_warning(answers[:19], least=20) is None  # too few to say anything of a lab
    assert one_class_warning(answers[:19], least=19).startswith("19 of 19 images are answered ALL")



def test_a_tie_is_undecided_whatever_the_class_order(capsys):
    """Two fold models sure of opposite classes average to 0.5 each: the argmax would answer the
    first class of the run's order, so the answer says it is a tie (page, CLI text and CSV)."""
    from leukdash.cli.output import print_answers
    from leukdash.evaluation.answer_table import answer_row

    for probabilities in ({"ALL": 0.5, "HEALTHY": 0.5}, {"HEALTHY": 0.5, "ALL": 0.5}):
        entry = {**_result(["ALL", "HEALTHY"], probabilities), "file": "x.png"}
        doubt = headline(entry)["disagreement"]
        assert doubt.startswith(f"A tie: {' and '.join(probabilities)} have the same mean probability (50%); ")
        assert doubt.endswith("Treat this image as undecided.")
        print_answers([entry])
        assert f"  uncertain: {doubt}" in capsys.readouterr().out.splitlines()
        assert answer_row(entry)["note"] == doubt
    assert headline(_result(["ALL", "HEALTHY"], {"ALL": 0.5000001, "HEALTHY": 0.4999999}))["disagreement"] is None
