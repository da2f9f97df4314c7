"""What a prediction says first: the answer a page headlines, stated so that it cannot mislead.

A fold ensemble gives two answers that can differ: the class of highest mean probability and
the class most fold models vote for (3 of 5 models may vote ALL while the mean favours AML,
because the other two are very sure). The headline is the mean probability, and it always
carries the vote split; when the two disagree it says so in words.

For an image the run trained on (a known image, see :func:`leukdash.evaluation.predict.known_image`)
every model but one has seen it, so the ensemble's answer is inflated: the honest answer is that
of the fold model that validated it, and that becomes the headline.
"""

from __future__ import annotations

import math
from collections import Counter

from leukdash.evaluation.external_metrics import COLLAPSE_SHARE, TIE, listed


def apart(value: float, bound: float, percent: bool = False) -> tuple[str, str]:
    """``value`` and the ``bound`` it fell below, written with the fewest decimals that tell them
    apart (2 to 6; as percentages 0 to 4), so that a warning never reads "0.86 is below 0.86"."""
    for decimals in range(5) if percent else range(2, 7):
        written = tuple(f"{number:.{decimals}{'%' if percent else 'f'}}" for number in (value, bound))
        if written[0] != written[1]:
            break
    return written


def floored_percentile(percentile: float, decimals: int) -> float:
    """A percentile (0-100) of the run's own images rounded down to ``decimals``: 100 only for an image above
    every one of them (99.996 rounded would read 100). 1e-9: a share such as 57.3 is 57.29999... as a float."""
    return math.floor(percentile * 10 ** decimals + 1e-9) / 10 ** decimals


def shown_percentile(percentile: float) -> str:
    """A percentile (0-100) of the run's own images as text, rounded down (one decimal above 99) so that
    it reads "100%" only for an image above every one of them: 99.6 is "99.6%", not "100%"."""
    decimals = 1 if 99 < percentile < 100 else 0
    return f"{floored_percentile(percentile, decimals):.{decimals}f}%"


def vote_split(fold_predictions: list[str | None]) -> list[tuple[str, int]]:
    """(class, votes) pairs, most votes first; ties keep the order the classes were first voted.
    A fold model whose top classes tie (None) votes for no class."""
    return Counter(vote for vote in fold_predictions if vote is not None).most_common()


def vote_words(fold_predictions: list[str | None]) -> list[str]:
    """The vote split in words: "ALL 4", "AML 1", then the fold models that tied, "2 tied"."""
    tied = fold_predictions.count(None)
    return [f"{label} {count}" for label, count in vote_split(fold_predictions)] + ([f"{tied} tied"] if tied else [])


def headline(result: dict) -> dict:
    """The headline of one prediction of :func:`leukdash.evaluation.predict.predict_images`.

    Returns
    -------
    dict with ``predicted`` (the class headlined), ``probability`` (its probability),
    ``probabilities`` (the distribution to chart: the out-of-fold model's for a known image,
    else the ensemble mean), ``source`` ("out-of-fold" or "mean"), ``detail`` (what follows
    "Predicted: X" on the page, plain text), ``votes`` (the vote split in words, :func:`vote_words`)
    and ``disagreement`` (a sentence when the vote and the headline differ, else None).
    """
    votes = vote_split(result["fold_predictions"])
    n = result["n_folds"]
    words = vote_words(result["fold_predictions"])
    split = ", ".join(words)
    known = result.get("known") or {}
    if known.get("prediction"):
        predicted, probabilities = known["prediction"], known["probabilities"]
        detail = (f"{probabilities[predicted]:.0%} from fold {known['fold']}'s model, the one that never trained on "
                  f"this image (it is one of the run's own images)")
        source = "out-of-fold"
        disagreement = None
        if predicted != result["predicted"]:
            disagreement = (f"The whole ensemble says {result['predicted']} "
                            f"({result['probabilities'][result['predicted']]:.0%}), but its other models trained "
                            f"on this image: the out-of-fold answer is the honest one.")
    else:
        predicted, probabilities = result["predicted"], result["probabilities"]
        detail = f"mean probability {probabilities[predicted]:.0%} over {n} fold models · votes: {split}"
        source = "mean"
        disagreement = None
        most = votes[0][1] if votes else 0  # every fold model tied: no class has a vote
        leaders = [label for label, count in votes if count == most]
        mine = dict(votes).get(predicted, 0)
        if mine < most:
            leader = leaders[0] if len(leaders) == 1 else "each of " + " and ".join(leaders)
            rival = leaders[0]
            disagreement = (f"The vote and the mean probability disagree: {most} of {n} fold models vote {leader}, "
                            f"{mine} {predicted}, yet the mean probability favours {predicted} "
                            f"({probabilities[predicted]:.0%} against {probabilities[rival]:.0%} for {rival}). "
                            "Treat this answer as uncertain.")
    tied = [label for label, p in probabilities.items() if p >= probabilities[predicted] - TIE]
    if len(tied) > 1:  # which of them comes first is the run's class order, not the models' answer
        which = "probability" if source == "out-of-fold" else "mean probability"
        disagreement = (f"A tie: {' and '.join(tied)} have the same {which} ({probabilities[predicted]:.0%}); "
                        f"{predicted} is shown only as the first of them in the run's class order. Treat this "
                        "image as undecided.")
    return {"predicted": predicted, "probability": probabilities[predicted], "probabilities": probabilities,
            "source": source, "detail": detail, "votes": words, "disagreement": disagreement}


def conflicting_labels(known: dict) -> list[str]:
    """The classes a known image (``result["known"]``, see
    :func:`leukdash.evaluation.predict.known_image`) is filed under in the run's dataset when they
    are more than one (one picture, two labels: one of them is wrong), else none."""
    labels = sorted({known["class"], *(copy["class"] for copy in known.get("also", []))})
    return labels if len(labels) > 1 else []


def one_class_warning(entries: list[dict], least: int) -> str | None:
    """A warning when a batch of at least ``least`` answers (unlabelled images, as ``predict``
    gives them) puts nearly all of them in one class (``COLLAPSE_SHARE``), else None.

    On a new lab's images a model can give every image one class (it has "collapsed"); without
    labels nothing else would show it. A folder truly of one class gives the same picture, so
    the warning says what it may mean and what to do, not that the answers are wrong.
    """
    answered = [entry["predicted"] for entry in entries if "predicted" in entry]
    if len(answered) < least:
        return None
    label, count = Counter(answered).most_common(1)[0]
    if count < COLLAPSE_SHARE * len(answered):
        return None
    return (f"{count} of {len(answered)} images are answered {label}: if they hold other classes too, the models "
            "may have collapsed on images unlike their training set (another lab's stain or camera): test them on "
            "a labelled folder of that lab (evaluate)")


def unavailable_checks(entries: list[dict]) -> list[str]:
    """Why checks could not be made (the run's dataset gone, say): one line per reason, naming
    the checks it stopped (an unavailable check's entry names itself, ``check``, and its ``reason``)."""
    stopped: dict[str, list[str]] = {}
    for entry in entries:
        for check in ("ood", "known", "likely_wrong", "unsupported"):
            if isinstance(entry.get(check), dict) and "error" in entry[check]:
                name, reason = entry[check]["check"], entry[check]["reason"]
                names = stopped.setdefault(reason, [])
                if name not in names:
                    names.append(name)
    return [f"{listed(names)} check{'s' * (len(names) > 1)} unavailable: {reason} (the answers below are "
            f"given without {'them' if len(names) > 1 else 'it'})" for reason, names in stopped.items()]


