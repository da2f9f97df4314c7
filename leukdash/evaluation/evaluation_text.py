"""An external test's result (:func:`leukdash.evaluation.evaluate.evaluate`) in words: the command
line's lines, the pages' one sentence, the groups, intervals and notes they are made of.
"""

from __future__ import annotations

from collections import Counter

# A terminal line lists every group up to this many (a run's per-source lines too); beyond it,
# the few with the lowest recall, the ones a reader looks for.
MAX_GROUPS_LISTED = 30
LOWEST_GROUPS_LISTED = 5


def format_evaluation(result: dict) -> str:
    """A few lines for a terminal."""
    intervals = result["intervals"]
    which = ("final model refitted on all its images" if result.get("model") == "final" else "fold ensemble") + (
        ", adapted to these images" if result.get("adapted") else "")
    lines = [f"run {result['run_id']} ({result['run']['config']['model']}, {which}, trained on {result['run']['dataset']}) "
             f"on {result['dataset']['name']}: {result['n_images']} images, {intervals['n_groups']} groups"]
    for name, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("roc_auc", "ROC AUC")):
        if result.get(name) is not None:
            lines.append(f"  {label:<18} {result[name]:.4f}  (95% group bootstrap "
                         f"{interval_text(intervals, name, '.4f')})")
    few = few_groups(result)
    if few:
        lines.append(f"  NOTE: {few}")
    absent = result["dataset"].get("absent_classes", [])
    lines.append("  recall per class   " + "  ".join(f"{c} {'n/a' if c in absent else f'{r:.3f}'}"
                                                   for c, r in result["per_class_recall"].items()))
    shares = "  ".join(f"{c} {s:.1%}" for c, s in result["predicted_share"].items())
    ties = result.get("undecided", {}).get("n", 0)  # absent from results stored before ties were counted
    lines.append(f"  predicted share    {shares}" + (f"  ({ties} ties among them, undecided)" if ties else "")
                 + (f"  COLLAPSED (one class for >= 95% of {'the answers that are not ties' if ties else 'images'})"
                    if result["collapsed"] else ""))
    lines.append(f"  out-of-distribution: {result['ood_share']:.1%} of the images flagged "
                 f"({result['ood_own_share']:.1%} of the run's own out-of-fold images)")
    names = {"ood_prepared": "unlike the prepared cells", "ood_acquisition": "unlike the acquisition",
             "ood": "out-of-distribution", "likely_wrong": "likely wrong (low confidence)",
             "unsupported": "unsupported by nearest images", "either": "OOD or likely wrong"}
    for name, flag in result.get("flags", {}).items():
        errors = "  ".join(f"{label} {flag[key]:.1%}" if flag[key] is not None else f"{label} -"
                           for label, key in (("error flagged", "error_flagged"), ("unflagged", "error_unflagged")))
        own = f"  (own out-of-fold {flag['own_share']:.1%})" if flag["own_share"] is not None else ""
        lab = "  (compared as one lab's images)" if flag.get("one_lab") else ""
        lines.append(f"  {names[name]:<30} flags {flag['share']:6.1%}  {errors}{own}{lab}")
    lines.append("  per group          " + groups_text(result["per_group"]))
    return "\n".join(lines)


def groups_text(groups: list[dict]) -> str:
    """The per-group recalls (``per_group`` of a result) on one terminal line: every group up to
    ``MAX_GROUPS_LISTED``, else the count and the few with the lowest recall; when every group is
    one image they repeat the per-image answers, and the line says so instead."""
    def listed(chosen):
        return "  ".join(f"{g['group']} ({held(g)}) {g['recall']:.2f}" for g in chosen)

    def held(group):  # a group of several classes by its images of each, not by its majority alone
        classes = group.get("classes") or {group["class"]: group["n"]}  # stored before groups held classes
        if len(classes) == 1:
            return f"{group['class']}, {group['n']}"
        return " + ".join(f"{name} {n}" for name, n in classes.items())

    if all(g["n"] == 1 for g in groups):
        return ("each image is its own group (no subject folders or groups.csv), so the recall per class says "
                "it all")
    if len(groups) <= MAX_GROUPS_LISTED:
        return listed(groups)
    lowest = sorted(groups, key=lambda g: g["recall"])[:LOWEST_GROUPS_LISTED]
    return f"{len(groups)} groups (--json lists each); the lowest recall: {listed(lowest)}"


def interval_text(intervals: dict, name: str, spec: str = ".4f") -> str:
    """A group-bootstrap interval of ``intervals`` as ``low-high``, or ``n/a`` with the reason
    where the groups could not support one, or every resample gave the same value (a zero-width interval, as
    evaluations stored before that was n/a hold it)."""
    found = intervals.get(name)
    if found is None:
        return f"n/a: {intervals.get('reason') or 'not computed'}"
    low, high = found
    if not has_interval(intervals, name):
        return f"n/a: every resample is the same ({low:{spec}})"
    return f"{low:{spec}}-{high:{spec}}"


def has_interval(intervals: dict, name: str) -> bool:
    """Whether ``intervals`` holds an interval of ``name`` worth showing: one, and not of zero width (every
    resample the same, as evaluations stored before that was None hold it)."""
    found = intervals.get(name)
    return found is not None and found[0] != found[1]


def few_groups(result: dict, fewest: int = 3) -> str | None:
    """What the intervals cannot say when a class has fewer than ``fewest`` groups (subjects) in
    the external set: the bootstrap redraws only those, so its interval is about their spread,
    not about another subject's images. None otherwise, and where there are no intervals (their
    n/a says why). A group counts for each class it holds images of."""
    intervals = result.get("intervals")
    if intervals and not any(has_interval(intervals, name) for name in ("accuracy", "balanced_accuracy", "roc_auc")):
        return None
    counts = Counter(name for group in result.get("per_group", [])
                     for name in (group.get("classes") or [group["class"]]))  # stored before groups held classes
    few = {name: n for name, n in counts.items() if n < fewest}
    if not few:
        return None
    listed = ", ".join(f"{n} of {name}" for name, n in few.items())
    return (f"the intervals rest on few groups ({listed}): the bootstrap can only redraw these, so they show "
            "the spread between them, not how the images of another subject would fare")


def outcome_sentence(result: dict) -> str:
    """How a run fared on one external dataset, in one sentence (pages and report)."""
    return (f"On {result['dataset']['name']} ({result['n_images']} images, {result['intervals']['n_groups']} groups): "
            f"balanced accuracy {result['balanced_accuracy']:.1%} (95% group bootstrap "
            f"{interval_text(result['intervals'], 'balanced_accuracy', '.1%')}); "
            f"{_answers_text(result)}; {result['ood_share']:.0%} of the images flagged as unlike its training data"
            + _doubted_text(result.get("flags", {}).get("unsupported"), result["n_images"]) + ".")


def _answers_text(result: dict) -> str:
    """How the answers spread over the classes, or the class a collapsed model gives; a tie is
    no answer of the class the figures count it as, so a collapse is told by the other answers."""
    ties = result.get("undecided") or {"n": 0, "counted_as": {}}  # absent from results stored before
    answered = {c: round(s * result["n_images"]) - ties["counted_as"].get(c, 0)
                for c, s in result["predicted_share"].items()}
    if not result["collapsed"]:
        return "answers spread over " + ", ".join(f"{c} {s:.0%}" for c, s in result["predicted_share"].items()) + (
            f" ({ties['n']} ties among them, counted as the first tied class)" if ties["n"] else "")
    if not sum(answered.values()):
        return "collapsed: every answer is a tie between the top classes"
    top = max(answered, key=answered.get)
    return (f"collapsed: it gives {top} to {answered[top] / sum(answered.values()):.0%} of the images"
            + (f" whose answer is not a tie ({ties['n']} are)" if ties["n"] else ""))


def _doubted_text(flag: dict | None, n_images: int) -> str:
    """The support check's count and how often the answers it doubts are wrong (results stored
    before it existed have none)."""
    if not flag:
        return ""
    said = (f"; {flag['n_flagged']} of its {n_images} answers ({flag['share']:.0%}) unsupported by its nearest "
            "training images" + (" (compared as one lab's images)" if flag.get("one_lab") else ""))
    if flag["error_flagged"] is None or flag["error_unflagged"] is None:
        return said
    return f"{said}, wrong on {flag['error_flagged']:.0%} of them against {flag['error_unflagged']:.0%} of the others"
