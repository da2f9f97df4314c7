"""Is an answer supported by the run's nearest training images? A per-answer warning.

The out-of-distribution check (:mod:`leukdash.evaluation.ood`) says whether an image looks like
the run's training data; on another lab's images its acquisition view flags them all, rightly,
and so cannot say which of them the answers are wrong on. This check looks at the answer:
its **trust score** (Jiang, Kim, Guan and Gupta, "To trust or not to trust a classifier",
NeurIPS 2018) is the distance from the image to the nearest training image of another class
divided by its distance to the nearest training image of the class answered, in the space of
the out-of-distribution check's descriptors (each voting run's prepared view, standardised).
Below 1, a training image of another class lies nearer than any of the answered class; an
ensemble's answer gets the lowest score of its voting runs' views.

Calibration is out-of-fold, as for the other checks: each image a fold validated is scored
against that fold's training part with the run's out-of-fold answer, and an answer is
**unsupported** below the ``UNSUPPORTED_PERCENTILE``-th percentile of those scores (so about that
share of the run's own images get the flag; fewer where scores tie), and never at 1 or above.

Another lab's descriptors shift as a whole (stain, scale, optics), which would leave the nearest
neighbours saying more about the shift than about the cell. So where at least
``MIN_BATCH_IMAGES`` images are checked together and the out-of-distribution check puts at least
half of them outside, they are taken for one lab's images and standardised with their own mean
and spread instead of the training images' (the idea of ``--adapt`` for the classic models'
inputs; no label is used), in ``evaluate`` and ``predict`` alike; so are the images ``--adapt``
is told are one lab's, with the sample its models were adapted to. The trust score and its 5%
floor were chosen on principle; comparing a foreign lab with its own statistics was chosen after
seeing, on ALL-IDB2 and C-NMC, that with the training images' statistics the score did not tell
errors apart in one direction (``docs/report/PREPROCESS_NOTES.md`` has both and says which data
each choice looked at).
"""

from __future__ import annotations

import numpy as np

from leukdash.engine.store import RunStore
from leukdash.errors import RunError
from leukdash.evaluation.ood import euclidean, standardised

# An answer whose trust score is below this percentile of the run's own out-of-fold scores is flagged.
UNSUPPORTED_PERCENTILE = 5.0
# Images checked together are taken for one lab's when at least this many are checked and at
# least BATCH_OUTSIDE_SHARE of them are outside the training distribution.
MIN_BATCH_IMAGES = 20
BATCH_OUTSIDE_SHARE = 0.5
# Rows of a distance matrix computed at once, so that a large dataset stays within memory.
CHUNK_ROWS = 512
# The score of an image identical to a training image of the class answered and to none of
# another: as supported as an answer can be, kept a number (JSON has no infinity).
MAX_SCORE = 1e6


def trust_scores(reference: np.ndarray, labels: np.ndarray, query: np.ndarray, answers: np.ndarray,
                 n_classes: int, lab: np.ndarray | None = None) -> np.ndarray:
    """Each query row's distance to the nearest ``reference`` row of another class over its
    distance to the nearest one of the class it was answered (``answers``).

    Every descriptor is standardised by the reference's mean and spread; the query's by those of
    ``lab`` when given, the rows of its lab's images (the query itself, or a sample of the lab).
    A class without reference rows is infinitely far. An image at distance 0 from both classes
    (the same picture filed under two) scores 1, a tie; scores are at most ``MAX_SCORE``.
    """
    reference, query = np.asarray(reference, dtype=np.float64), np.asarray(query, dtype=np.float64)
    labels, answers = np.asarray(labels), np.asarray(answers, dtype=np.int64)
    query = standardised(query, reference if lab is None else np.asarray(lab, dtype=np.float64))
    reference = standardised(reference, reference)
    nearest = np.full((len(query), n_classes), np.inf)
    for start in range(0, len(query), CHUNK_ROWS):
        rows = query[start:start + CHUNK_ROWS]
        distances = euclidean(reference, rows)
        for label in range(n_classes):
            if np.any(labels == label):
                nearest[start:start + len(rows), label] = distances[:, labels == label].min(axis=1)
    answered = nearest[np.arange(len(query)), answers]
    others = np.where(np.arange(n_classes)[None, :] == answers[:, None], np.inf, nearest).min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = others / answered
    return np.minimum(np.where(others == answered, 1.0, ratio), MAX_SCORE)


class AnswerSupport:
    """The training descriptors of a run's voting views, its labels and its own out-of-fold trust scores."""

    def __init__(self, views: list[np.ndarray], labels: np.ndarray, n_classes: int, own_scores: np.ndarray):
        self.views, self.labels, self.n_classes = views, np.asarray(labels), n_classes
        self.own_scores = np.asarray(own_scores, dtype=np.float64)
        # At most 1: a score of 1 or more means the nearest training image is of the class answered,
        # which a floor drawn from few out-of-fold answers must not call unsupported.
        self.floor = min(float(np.percentile(self.own_scores, UNSUPPORTED_PERCENTILE)), 1.0)

    def scores(self, descriptors: list[np.ndarray], answers: np.ndarray,
               lab: list[np.ndarray] | None = None) -> np.ndarray:
        """The lowest trust score over the views of each answer; ``descriptors`` holds the images'
        descriptors in each view, in the order of :attr:`views`, and ``lab`` (when they are
        compared as one lab's images) that lab's images' descriptors in each view."""
        labs = lab if lab is not None else [None] * len(self.views)
        return np.min([trust_scores(view, self.labels, described, answers, self.n_classes, one)
                       for view, described, one in zip(self.views, descriptors, labs)], axis=0)

    def assess(self, descriptors: list[np.ndarray], answers: np.ndarray, outside: np.ndarray,
               one_lab: bool = False) -> dict:
        """Scores and flags of answers given together; ``outside``: the out-of-distribution flag of
        each image, which decides whether they are compared as one lab's images (:func:`takes_for_one_lab`),
        as they are with ``one_lab`` (the user said so)."""
        one_lab = one_lab or takes_for_one_lab(outside)
        scores = self.scores(descriptors, answers, descriptors if one_lab else None)
        return {"scores": scores, "unsupported": scores < self.floor, "one_lab": one_lab}


def takes_for_one_lab(outside: np.ndarray) -> bool:
    """Whether images checked together are standardised with their own statistics: enough of
    them, and mostly outside the training distribution."""
    outside = np.asarray(outside, dtype=bool)
    return len(outside) >= MIN_BATCH_IMAGES and float(outside.mean()) >= BATCH_OUTSIDE_SHARE


def answer_support(run_id: str, store: RunStore | None = None) -> AnswerSupport:
    """The run's support check: the prepared-view descriptors of each run voting in it (the
    out-of-distribution check's, :func:`leukdash.evaluation.ood.training_distribution`), the
    labels of its images (its known-image reference) and its own out-of-fold trust scores,
    computed from its stored out-of-fold answers. Needs no dataset where those are stored."""
    from leukdash.engine.record_shapes import member_ids
    from leukdash.engine.runner import load_result, lost_fold_error
    from leukdash.evaluation.ood import training_distribution
    from leukdash.evaluation.reference import known_reference

    store = store or RunStore()
    meta = store.finished_meta(run_id)
    described = [training_distribution(voter, store, "prepared") for voter, _ in member_ids(meta)]
    labels = known_reference(run_id, store)["labels"]
    if any(len(view.features) != len(labels) for view in described):
        raise RunError(f"run {run_id}: its descriptors and its images' labels differ in number; "
                       "its stored checks are from other data")
    result = load_result(run_id, store)
    if result is None:
        raise lost_fold_error(run_id, store)
    n_classes = len(meta["dataset"]["classes"])
    own = []
    for fold in result["folds"]:
        # Originals only: the calibration is for images as they come to Predict, untransformed, and
        # the descriptors described are the originals' (a copy would be scored by its original's).
        kept = [(index, proba) for index, proba, copy in
                zip(fold["oof"]["index"], fold["oof"]["proba"], fold["oof"]["copy"]) if copy == 0]
        index = np.array([i for i, _ in kept], dtype=np.int64)
        answers = np.argmax([p for _, p in kept], axis=1)
        training = described[0].fold_of != fold["fold"]
        own.append(np.min([trust_scores(view.features[training], labels[training], view.features[index], answers,
                                        n_classes) for view in described], axis=0))
    return AnswerSupport([view.features for view in described], labels, n_classes, np.concatenate(own))
