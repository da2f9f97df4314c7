"""The figures of an external test: labelled images, a model's class probabilities for them,
and how sure those figures are.

Accuracy, balanced accuracy, ROC AUC, the share of images given each class (a model that gives
one class to nearly all of them has "collapsed"; an answer whose top classes tie counts as the
first of them in the run's order, and is counted apart as undecided), each group's recall, and how a warning fared
(the error rate among the images it flags and among the rest). Pure functions of arrays: the
external test (:mod:`leukdash.evaluation.evaluate`) and the leave-one-dataset-out rows of the
report compute them alike.

Intervals come from a bootstrap over the external dataset's groups, not its images: images of
one subject are strongly correlated, so resampling images would give intervals far too narrow.
Groups are resampled within each class (a group's class is its majority class), so every
bootstrap sample has every class and balanced accuracy stays defined. Where the groups cannot
support an interval (one group holds every image, a class is in fewer than two groups) there is
none: each interval is None and ``reason`` says why (a resampling that cannot vary would give one
of zero width, read as a certainty). So is a metric whose resamples can vary but do not (every answer right,
every group of a class with the same share right): its interval is None, and ``reason`` names it.
"""

from __future__ import annotations

import numpy as np

# A model that gives one class to at least this share of the images has collapsed.
COLLAPSE_SHARE = 0.95
# The fewest answers whose share can be COLLAPSE_SHARE without being all of them (19 of 20): the collapse note judges
# no fewer.
JUDGED_ANSWERS = round(1 / (1 - COLLAPSE_SHARE))
# Probabilities this close are equal (an even split of fold models, an even k-NN vote): no
# class is the answer; the argmax would only pick the first in the run's class order.
TIE = 1e-9
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0


def external_metrics(y_true, proba, groups, classes, *, samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = BOOTSTRAP_SEED, auc_interval: bool = True) -> dict:
    """Metrics of ensemble probabilities ``proba`` on labelled external images, with group
    bootstrap intervals, the share of images given each class and per-group recall
    (``auc_interval=False``: no interval for the ROC AUC, the costly one)."""
    from sklearn.metrics import roc_auc_score

    from leukdash.metrics import fold_metrics

    y_true, proba, groups = np.asarray(y_true, dtype=int), np.asarray(proba, dtype=np.float64), np.asarray(groups)
    base = fold_metrics(y_true, proba, classes)
    predicted = proba.argmax(axis=1)  # a tie goes to the first tied class: the figures count it so
    share = np.bincount(predicted, minlength=len(classes)) / len(predicted)
    tied = tied_answers(proba)
    two_class = len(classes) == 2 and len(set(y_true.tolist())) == 2
    metrics = {
        "n_images": int(len(y_true)),
        "accuracy": base["val_acc"], "balanced_accuracy": base["balanced_acc"], "macro_f1": base["macro_f1"],
        "log_loss": base["val_loss"], "per_class_recall": base["per_class_recall"], "confusion": base["confusion"],
        "roc_auc": float(roc_auc_score(y_true, proba[:, 1])) if two_class else None,
        "predicted_share": {str(c): float(s) for c, s in zip(classes, share)},
        "collapsed": collapsed(predicted, tied, len(classes), y_true),
        # Ties (undecided answers) and the classes the figures counted them as.
        "undecided": {"n": int(tied.sum()), "counted_as": {str(c): int(n) for c, n in zip(
            classes, np.bincount(predicted[tied], minlength=len(classes))) if n}},
        "per_group": per_group(y_true, predicted, groups, classes),
    }
    metrics["intervals"] = group_bootstrap(y_true, proba, groups, len(classes), samples=samples, seed=seed,
                                           auc=auc_interval, classes=classes)
    return metrics


def tied_answers(proba) -> np.ndarray:
    """Whether the top classes of each answer (a row of ``proba``) tie, as Predict tells them
    (:data:`TIE`): an undecided answer, that argmax gives the first of them in the run's class
    order."""
    proba = np.asarray(proba, dtype=np.float64)
    return (proba >= proba.max(axis=1, keepdims=True) - TIE).sum(axis=1) > 1


def ties_text(n_tied: int, answers: str, counted: dict, each: str = "") -> str:
    """The words for answers whose top classes tie: ``'3 of 40 answers are ties between the top classes, counted as
    the first tied class in the run's order (AML 2, CLL 1)'`` (``answers``: ``'40 answers'``; ``counted``: how many
    ties were counted as each class; ``each``: a word on their probabilities, after ``classes``). Argmax counts a
    tie as the first tied class, not the first class: with 3 classes, AML and CLL tie as AML."""
    named = ", ".join(counted) if len(counted) == 1 else ", ".join(f"{c} {n}" for c, n in counted.items())
    return (f"{n_tied} of {answers} are ties between the top classes{each}, counted as the first tied class in the "
            f"run's order ({named})")


def collapsed(predicted, tied, n_classes: int, y_true=None) -> bool:
    """Whether one class has at least ``COLLAPSE_SHARE`` of the answers (``predicted``), the
    ``tied`` ones left out: a tie is no answer of the class it is counted as, so it must not pass
    for a spread of answers. Answers that are all ties tell no image apart: collapsed too.

    With labels ``y_true`` of one class (an external set of one class's images), that class for
    nearly every image is the right answer, not a collapse; another class for them still is."""
    decided = np.asarray(predicted)[~np.asarray(tied, dtype=bool)]
    if not len(decided):
        return True
    counts = np.bincount(decided, minlength=n_classes)
    if counts.max() / len(decided) < COLLAPSE_SHARE:
        return False
    present = np.unique(y_true) if y_true is not None else ()
    return not (len(present) == 1 and counts.argmax() == present[0])


def collapse_note(y_true, proba, classes, folds=None) -> str | None:
    """What to know of labelled answers (``proba`` for images labelled ``y_true``: a run's out-of-fold ones) that
    have collapsed (:func:`collapsed`) and tell the classes apart no better than nearly by chance, else None: their
    accuracy reflects the class shares (a model answering the larger class everywhere scores that class's share),
    not a skill. ``folds``: each answer's fold, to judge each fold's model too: fold models that each collapsed to
    another class pool to a spread of answers. Judged only where the images hold at least two classes and at least
    ``JUDGED_ANSWERS`` answers (ties included) are given."""
    y_true, proba = np.asarray(y_true, dtype=int), np.asarray(proba, dtype=np.float64)
    pooled = _collapsed_to(y_true, proba, classes)
    if pooled:
        answers, ties, balanced = pooled
        if answers is None:
            return f"the model's answers all tie: they tell no image apart (balanced accuracy {balanced:.2f})"
        return (f"{_share_of('the model', answers, ties, 'it validates')}: its accuracy reflects the class "
                f"shares (balanced accuracy {balanced:.2f})")
    if folds is None:
        return None
    folds, found = np.asarray(folds), []
    for fold in np.unique(folds):
        judged = _collapsed_to(y_true[folds == fold], proba[folds == fold], classes)
        if judged:
            found.append((f"fold {fold + 1}", judged[0] or "ties for 100%", judged[1], f"{judged[2]:.2f}"))
    if not found:
        return None
    one = len(found) == 1
    if all(ties is None for _, _, ties, _ in found):
        answered = listed([f"{who} answers {answers}" for who, answers, _, _ in found])
        said = f"{answered} of the images {'it validates' if one else 'they validate'} on"
    else:  # each its own: a share of the answers that do not tie is no share of the images
        said = listed([_share_of(who, answers, ties, "it validates") for who, answers, ties, _ in found])
    return (f"{said}: {'its' if one else 'their'} accuracy reflects the class shares (balanced accuracy "
            f"{listed([balanced for _, _, _, balanced in found])})")


def _share_of(who: str, answers: str, ties: tuple[int, int] | None, validates: str) -> str:
    """What ``who`` (``'the model'``, ``'fold 2'``) answers (``'ALL for 98%'``) and what its share is of: the images
    (``validates``: ``'it validates'``) where no answer ties, else the answers that do not, with ``ties`` (how many
    of how many answers tie) said: first where they are most of them, the others too few to judge alone."""
    if ties is None:
        return f"{who} answers {answers} of the images {validates} on"
    tied, total = ties
    untied = total - tied
    if untied >= JUDGED_ANSWERS:
        return f"{who} answers {answers} of the {untied} answers that do not tie ({tied} of its {total} tie)"
    others = f"the {untied} other{'s answer' if untied != 1 else ' answers'}"
    return f"{tied} of {who}'s {total} answers tie; {others} {answers}"


def _collapsed_to(y_true: np.ndarray, proba: np.ndarray,
                  classes) -> tuple[str | None, tuple[int, int] | None, float] | None:
    """``(answers, ties, balanced accuracy)`` of answers that collapsed and score near chance, ``answers`` such as
    ``'ALL for 98%'`` (None where every answer is a tie), its share of the answers that do not tie where some do,
    ``ties`` then ``(tied, all answers)`` (else None), else None (also where the images are of one class or fewer
    than ``JUDGED_ANSWERS`` answers, ties included, are given)."""
    from leukdash.metrics import fold_metrics

    if not len(proba):
        return None
    predicted, tied = proba.argmax(axis=1), tied_answers(proba)
    decided = predicted[~tied]
    # Against chance only where there is one to beat: images of one class have a chance of 1, which any answer is
    # within 0.1 of. And only on enough answers for the share to be one: below JUDGED_ANSWERS a share of
    # COLLAPSE_SHARE is a share of 100%, which a few answers give without any collapse. Ties count among them: a
    # model that ties on most images and answers one class on the rest has collapsed all the more.
    if len(np.unique(y_true)) < 2 or len(proba) < JUDGED_ANSWERS:
        return None
    if not collapsed(predicted, tied, len(classes)):
        return None
    # One class answered nearly everywhere may still be right: a good model of skewed data (97 ALL, 3 HEALTHY,
    # each answered right). A constant answer's balanced accuracy (mean recall) is 1/C of the C classes the images
    # hold; only answers within 0.1 of that tell the classes apart no better than it, and their accuracy is the
    # class shares.
    balanced = fold_metrics(y_true, proba, classes)["balanced_acc"]
    if balanced > 1 / len(np.unique(y_true)) + 0.1:
        return None
    if not len(decided):
        return None, None, balanced
    counts = np.bincount(decided, minlength=len(classes))
    ties = (int(tied.sum()), len(proba)) if tied.any() else None  # the share is of the answers that do not tie
    return f"{classes[counts.argmax()]} for {counts.max() / len(decided):.0%}", ties, balanced


def listed(items: list[str]) -> str:
    """Items for a sentence: ``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def flag_errors(flags, wrong, own_flags) -> dict:
    """How a warning fared: the share of images it flags, the error rate among them and among
    the rest, and the share of the run's own out-of-fold images it flags (when known)."""
    flags, wrong = np.broadcast_to(np.asarray(flags, dtype=bool), np.shape(wrong)), np.asarray(wrong, dtype=bool)
    own_share = None if own_flags is None else float(np.mean(own_flags))
    return {"share": float(flags.mean()), "n_flagged": int(flags.sum()),
            "error_flagged": float(wrong[flags].mean()) if flags.any() else None,
            "error_unflagged": float(wrong[~flags].mean()) if (~flags).any() else None,
            "own_share": own_share}


def per_group(y_true, predicted, groups, classes) -> list[dict]:
    """For each group: its class (majority), its images per class (``classes``: a group may hold
    several), image count, share correct (the recall of its class within the group, when it
    holds one) and the share of its images given each class."""
    from leukdash.metrics import group_members

    rows = []
    for group, inside in zip(*group_members(groups)):
        counts = np.bincount(y_true[inside], minlength=len(classes))
        label = int(counts.argmax())
        share = np.bincount(predicted[inside], minlength=len(classes)) / len(inside)
        rows.append({"group": str(group), "class": str(classes[label]), "n": len(inside),
                     "classes": {str(c): int(n) for c, n in zip(classes, counts) if n},
                     "recall": float(np.mean(predicted[inside] == y_true[inside])),
                     "predicted_share": {str(c): float(s) for c, s in zip(classes, share)}})
    return rows


def group_bootstrap(y_true, proba, groups, n_classes: int, *, samples: int = BOOTSTRAP_SAMPLES,
                    seed: int = BOOTSTRAP_SEED, auc: bool = True, classes=None) -> dict:
    """95% percentile intervals of accuracy, balanced accuracy (and, with ``auc``, ROC AUC for
    two classes) over ``samples`` resamplings of whole groups, within each group's class.

    Where the groups cannot support one (:func:`no_interval_reason`), each interval is None and
    ``reason`` says why; a metric every resample gives the same value has None too, and ``reason`` says so
    (:func:`same_resamples_reason`); else ``reason`` is None. ``classes``: the class names, for that reason."""
    from leukdash.metrics import group_members

    y_true, proba, groups = np.asarray(y_true, dtype=int), np.asarray(proba), np.asarray(groups)
    names, members = group_members(groups)
    group_class = np.array([np.bincount(y_true[m]).argmax() for m in members])
    correct = proba.argmax(axis=1) == y_true
    # Per group and true class: images, and correctly labelled images.
    totals = np.zeros((len(names), n_classes))
    hits = np.zeros((len(names), n_classes))
    for g, m in enumerate(members):
        np.add.at(totals[g], y_true[m], 1)
        np.add.at(hits[g], y_true[m], correct[m])
    with_auc = auc and n_classes == 2 and len(np.unique(y_true)) == 2
    about = {"method": "percentile bootstrap over groups, resampled within class", "samples": samples,
             "seed": seed, "n_groups": len(names)}
    reason = no_interval_reason(totals, group_class, classes)
    if reason is not None:
        return {"accuracy": None, "balanced_accuracy": None, **({"roc_auc": None} if with_auc else {}),
                "reason": reason, **about}
    n, right = np.zeros((samples, n_classes)), np.zeros((samples, n_classes))
    auc_of = _resampled_auc(members, y_true, proba[:, 1]) if with_auc else None
    aucs = []
    for rows, weights in group_draw_counts(group_class, samples, seed):
        n[rows], right[rows] = weights @ totals, weights @ hits
        if with_auc:
            aucs.append(auc_of(weights))
    with np.errstate(invalid="ignore", divide="ignore"):
        balanced = np.nanmean(np.where(n > 0, right / n, np.nan), axis=1)
    resampled = {"accuracy": right.sum(1) / n.sum(1), "balanced_accuracy": balanced,
                 **({"roc_auc": np.concatenate(aucs)} if with_auc else {})}
    intervals = {name: _interval(values) for name, values in resampled.items()}
    same = [name for name, values in resampled.items() if np.ptp(values) <= TIE]
    for name in same:
        intervals[name] = None
    intervals.update({"reason": same_resamples_reason(same, resampled, correct), **about})
    return intervals


def same_resamples_reason(same: list[str], resampled: dict, correct: np.ndarray) -> str | None:
    """Why the metrics named in ``same`` have no interval: every resample gave them the same value (every answer
    right, say), so a percentile interval would have zero width and read as a certainty that a few groups cannot
    give. None when ``same`` is empty. ``resampled``: every metric's resampled values; ``correct``: each image's
    answer right or wrong."""
    if not same:
        return None
    why = ("all answers right" if correct.all() else "all answers wrong" if not correct.any() else
           "each class's groups have the same share right" if "accuracy" in same or "balanced_accuracy" in same else
           "the scores separate the classes alike in each")
    which = "" if len(same) == len(resampled) else " for " + ", ".join(name.replace("_", " ") for name in same)
    return f"every resample is the same{which}: {why}"


def no_interval_reason(totals: np.ndarray, group_class: np.ndarray, classes=None) -> str | None:
    """Why the groups cannot support a bootstrap interval, or None when they can: ``totals``
    holds each group's images per class (a row per group), ``group_class`` each group's majority
    class (the stratum it is redrawn in).

    One group in all, or a class whose images are all in one group, would be redrawn the same in
    every resample: an interval of (or for that class, near) zero width that says nothing of
    another subject. So would groups that each stand alone in their class's stratum."""
    if len(totals) < 2:
        return "one group holds every image"
    in_groups = (totals > 0).sum(axis=0)
    few = [index for index, count in enumerate(in_groups) if 0 < count < 2]
    if few:
        named = ", ".join(f"{classes[i] if classes is not None else i}: 1" for i in few)
        return f"a class has fewer than 2 groups ({named})"
    if np.bincount(group_class).max() < 2:
        return "no class has 2 groups of its own to redraw: every resample would be the same"
    return None


def group_draw_counts(group_class: np.ndarray, samples: int, seed: int, chunk: int = 64):
    """How often each of ``samples`` resamples draws each group, ``chunk`` resamples at a time:
    yields ``(rows, counts)``, ``counts`` of shape (rows, groups).

    The draws are exactly those of one ``rng.choice(groups of the class, (samples, their
    number))`` per class in turn, from ``default_rng(seed)``; only ``chunk`` rows of them are
    held at once (all of them took samples x groups floats: 320 MB for 20,000 single-image
    groups). Each class draws from its own copy of the generator, set to where that class's
    draws begin, found by drawing the classes before it once more.
    """
    classes = [np.flatnonzero(group_class == c) for c in np.unique(group_class)]
    rng, starts = np.random.default_rng(seed), []
    for number, of_class in enumerate(classes):
        starts.append(rng.bit_generator.state)
        if number < len(classes) - 1:  # the next class draws after this one's draws
            for begin in range(0, samples, chunk):
                rng.choice(of_class, size=(min(chunk, samples - begin), len(of_class)), replace=True)
    generators = [np.random.Generator(type(rng.bit_generator)()) for _ in classes]
    for generator, state in zip(generators, starts):
        generator.bit_generator.state = state
    for begin in range(0, samples, chunk):
        rows = slice(begin, min(begin + chunk, samples))
        counts = np.zeros((rows.stop - begin) * len(group_class))
        for generator, of_class in zip(generators, classes):
            drawn = generator.choice(of_class, size=(rows.stop - begin, len(of_class)), replace=True)
            counts += np.bincount((np.arange(len(drawn))[:, None] * len(group_class) + drawn).ravel(),
                                  minlength=counts.size)
        yield rows, counts.reshape(-1, len(group_class))


def _resampled_auc(members: list[np.ndarray], y_true: np.ndarray, score: np.ndarray, chunk: int = 64):
    """A function of ``weights`` (one row per resample: how often each group is drawn) giving
    each resample's two-class ROC AUC; the images' order by score, made once here, serves every
    block of resamples the bootstrap hands it.

    The Mann-Whitney form of the AUC, P(score of a positive > score of a negative) with ties
    counted half, on weighted counts per distinct score: the value ``roc_auc_score`` gives on
    the resampled images (to rounding: sums of whole counts are exact here, one division
    rounds), without building each resample (2000 ``roc_curve`` calls were most of an
    evaluation's time). Resamples without both classes are left out. Memory: ``chunk`` rows of
    one weight per image.
    """
    group_of = np.empty(len(score), dtype=np.intp)
    for g, m in enumerate(members):
        group_of[m] = g
    order = np.argsort(score, kind="stable")
    ranked = score[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # first image of each distinct score
    positive_image = y_true[order] == 1
    group_by_rank = group_of[order]

    def aucs(weights: np.ndarray) -> np.ndarray:
        found = []
        for begin in range(0, len(weights), chunk):
            drawn = weights[begin:begin + chunk][:, group_by_rank]  # each image's weight, by rising score
            positive = np.add.reduceat(np.where(positive_image, drawn, 0.0), starts, axis=1)
            negative = np.add.reduceat(np.where(positive_image, 0.0, drawn), starts, axis=1)
            below = np.cumsum(negative, axis=1) - negative  # negatives scored lower than each score
            pairs = positive.sum(axis=1) * negative.sum(axis=1)
            wins = (positive * (below + 0.5 * negative)).sum(axis=1)
            found.append(wins[pairs > 0] / pairs[pairs > 0])
        return np.concatenate(found)

    return aucs


def _interval(values: np.ndarray) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
