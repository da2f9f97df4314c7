"""External test of a finished run: its fold ensemble on every image of another dataset.

Cross-validation on one dataset says how a model fares on more images like its training
images. An external test says what happens on images from another lab, stain and camera: the
run's fold ensemble (the same one Predict uses) labels every image of the other dataset, and the
result says how accurate it was, whether it gave everything one class ("collapsed"), how each
group (subject) of the external set fared, how many images the run's out-of-distribution
check (:mod:`leukdash.evaluation.ood`) flags, and how many answers its support check
(:mod:`leukdash.evaluation.support`) and likely-wrong check doubt, each with the error rate among
the images it flags and among the others.

The figures and their intervals (a bootstrap over the external dataset's groups) are computed by
:mod:`leukdash.evaluation.external_metrics`, and said in words (the command line's lines, the
pages' sentence) by :mod:`leukdash.evaluation.evaluation_text`.
Results are stored beside the run, ``external/<dataset fingerprint>.json``, and read back.

One module, though long (about 470 lines): computing an external test, and reading the stored ones
back (the cache :func:`evaluate` answers from, and the test sets the transfer ranking compares runs
on: :func:`stored_evaluations` onwards), share the stored result's shape and its method version. The
reading half is the part to move to a module of its own should it grow further.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from leukdash.errors import DatasetError, RunError
from leukdash.engine.store import RunStore, read_json, write_json_atomic
from leukdash.evaluation.external_classes import run_classes_of
from leukdash.evaluation.external_metrics import (BOOTSTRAP_SAMPLES, BOOTSTRAP_SEED, TIE, external_metrics,
                                                  flag_errors, same_resamples_reason, ties_text, tied_answers)

# Changes to what this module computes invalidate the stored results.
METHOD_VERSION = "external-8"  # 5: the answer-support check (support.py); 6: no interval where the groups
# cannot support one (intervals' reason), each group's images per class; 7: ties counted apart
# (undecided: their count, a warning, each image's mark; the collapse check leaves them out); 8: the OOD
# threshold leaves the run's far-out own scores out (ood.flag_threshold), a set of one class answered that
# class is not collapsed, mirrored or rotated copies of training images are known images
# Adapted results: 1 standardised the classic models' inputs only (CNNs answered as they were);
# 2 also re-estimates the CNNs' batch-normalisation statistics.
ADAPT_VERSION = 2


def result_path(run_id: str, fingerprint: str, store: RunStore | None = None, model: str = "folds",
                adapt: bool = False):
    name = fingerprint + ("" if model == "folds" else f"-{model}") + ("-adapted" if adapt else "")
    return (store or RunStore()).run_dir(run_id) / "external" / f"{name}.json"


def evaluate(run_id: str, dataset_name: str, *, store: RunStore | None = None, recompute: bool = False,
             model: str = "folds", per_image: bool = False, adapt: bool = False) -> dict:
    """Score run ``run_id`` on dataset ``dataset_name`` (name or folder); stored and cached.

    ``model``: ``folds`` (the fold ensemble, as Predict uses it) or ``final`` (the model refitted
    on every image of the run, see :mod:`leukdash.engine.final`). The result's ``images`` holds
    each image's answer and flags (:func:`image_rows`); with ``per_image``, a result stored before
    results held them is computed again. With ``adapt``, the classic models (of the run, or the
    members of an ensemble) standardise their inputs with the dataset's own statistics
    (:func:`leukdash.models.classic.adapted`) and the CNNs re-estimate their batch-normalisation
    statistics on it (:func:`leukdash.models.cnn.adapted`). It is stored apart
    and said in the result (``adapted``): it suits a folder of one lab's images, not one upload."""
    from leukdash.data.discovery import open_dataset

    store = store or RunStore()
    meta = require_models(run_id, model, store)
    opened = open_dataset(dataset_name)
    dataset = run_classes_of(meta["dataset"]["classes"], opened)
    if dataset.fingerprint == meta["dataset"]["fingerprint"]:
        raise DatasetError(f"{dataset.name!r} is the dataset run {run_id} was trained on: its models saw these "
                           "images, so only its cross-validated figures are honest there")
    from leukdash.evaluation.predict import CHECK_UNAVAILABLE, unavailable_reason

    seen = trained_on(run_id, dataset, store)
    try:  # as in Predict, an optional check: without what it needs (a reference of the run's images), the rest stands
        copied, unchecked = known_copies(run_id, dataset, seen, store), None
    except CHECK_UNAVAILABLE as error:
        copied, unchecked = set(), unavailable_reason(error)
    if len(seen) + len(copied) == len(dataset.items):
        how = "the same bytes" + (", or the same picture re-encoded, resized, mirrored or rotated" if copied else "")
        raise DatasetError(f"every image of {dataset.name!r} is one run {run_id} was trained on ({how}): "
                           "its models saw them, so only its cross-validated figures are honest there")
    other_classes = {c: n for c, n in opened.counts().items() if c not in dataset.classes and n}
    path = result_path(run_id, dataset.fingerprint, store, model, adapt)
    key = {"method": METHOD_VERSION, "samples": BOOTSTRAP_SAMPLES, "seed": BOOTSTRAP_SEED, "model": model,
           **({"adapt": ADAPT_VERSION} if adapt else {})}  # results stored before adapting existed keep their key
    # Only where images were left out, so results stored before these were counted stay valid.
    left_out = {**({"trained_on": len(seen)} if seen else {}), **({"copies": len(copied)} if copied else {}),
                **({"other_classes": other_classes} if other_classes else {})}
    if left_out:
        key["left_out"] = left_out
    stored = None if recompute else _stored(path)
    if stored is not None and stored.get("key") == key and ("images" in stored or not per_image):
        return _answered_again(path, stored, dataset, opened.images_fingerprint)
    result = {"key": key, "model": model, **({"adapted": True} if adapt else {}),
              **_compute(run_id, meta, dataset, store, model == "final", seen, copied, unchecked, other_classes,
                         adapt)}
    # the folder's state, whatever the run's classes and their order (the fingerprint has both)
    result["dataset"]["state"] = opened.images_fingerprint
    if store.run_dir(run_id).is_dir():  # not a folder of its own for a run deleted meanwhile
        _keep(path, result)
    return result


def _keep(path: Path, result: dict) -> None:
    """Store a result with the time it was tested (only the stored copy holds it: the same test
    answered twice is the same result)."""
    write_json_atomic(path, {**result, "tested_at": time.time()}, optional=True)  # read-only: not kept


def _answered_again(path: Path, stored: dict, dataset, state: str) -> dict:
    """A stored result answered again, made the latest of its folder (:func:`stored_evaluations`
    lists by the time each was tested: a folder whose images went back to an earlier content is
    that result again), under the name, folder and state (images of classes the run does not know
    included) the images have now (the fingerprint is of the images alone, so a renamed folder
    finds its result)."""
    stored.pop("tested_at", None)
    stored["dataset"].update({"name": dataset.name, "path": str(dataset.root), "state": state})
    for source, now in zip(stored["dataset"].get("sources") or [], dataset.sources if len(dataset.sources) > 1 else []):
        source["path"] = str(now.root)  # a combined test's folders (tested_folder), both lists sorted by name
    _keep(path, stored)
    return stored


def require_models(run_id: str, model: str = "folds", store: RunStore | None = None) -> dict:
    """The meta of run ``run_id`` when the models ``model`` names are all in the store (its fold
    models, an ensemble's members', or their final models); else one RunError that says which
    is missing. Checked before a stored result is answered, which must not outlive its models."""
    from leukdash.engine.final import require_final_models
    from leukdash.engine.runner import finished_result

    store = store or RunStore()
    finished_result(run_id, store)
    if model == "final":
        require_final_models(run_id, store)
    return store.finished_meta(run_id)


def trained_on(run_id: str, dataset, store: RunStore) -> set[Path]:
    """The images of ``dataset`` with the same bytes as an image run ``run_id`` was trained on
    (a run on ``a,b`` tested on ``b``, a folder that copies some of its images), by the run's
    stored image hashes (:func:`~leukdash.evaluation.reference.training_hashes`)."""
    from leukdash.evaluation.reference import training_hashes

    known = training_hashes(run_id, store)
    return {item.path for item, content in zip(dataset.items, dataset.contents) if content in known}


def known_copies(run_id: str, dataset, seen: set, store: RunStore) -> set[Path]:
    """The images of ``dataset``, besides those in ``seen``, that Predict's known-image check
    (:func:`leukdash.evaluation.reference.known_matches`) finds to be one of the images run
    ``run_id`` was trained on, re-encoded, resized, mirrored or rotated (a folder of JPEG copies of its
    images, or of its augmented ones)."""
    from leukdash.data.arrays import load_arrays
    from leukdash.evaluation.reference import KNOWN_SIZE, known_matches, known_reference

    small = load_arrays(dataset, KNOWN_SIZE)
    match, _ = known_matches(small.images, known_reference(run_id, store))
    return {path for path, found in zip(small.paths, match) if found >= 0 and path not in seen}


def _compute(run_id: str, meta: dict, dataset, store: RunStore, final: bool = False, seen: set = frozenset(),
             copied: set = frozenset(), unchecked: str | None = None, other_classes: dict | None = None,
             adapt: bool = False) -> dict:
    from leukdash.data.folds import merge_groups
    from leukdash.evaluation.ood import (confidence_floor, describe_images, own_confidence, training_distribution,
                                         view_config, views)
    from leukdash.evaluation.predict import (CHECK_UNAVAILABLE, MIN_ADAPT_IMAGES, adapt_note, adapt_shortfall,
                                             ensemble, unavailable_reason)
    from leukdash.evaluation.support import answer_support
    from leukdash.engine.versions import versions
    from leukdash.data.arrays import load_arrays
    from leukdash.engine.fold_planning import duplicate_pairs

    proba, loaded = 0.0, None
    trained = seen | copied
    outside, own_outside, cells = {}, {}, []  # cells: each voting run's prepared-view descriptors
    # Each voting run (a plain run is its own one) sees the images prepared its own way
    # (preprocess.prepare_images, cached); an image is flagged when any of their checks flags it,
    # in the prepared view or (preprocessed runs) in the acquisition view.
    for member, weight in ensemble(run_id, store, final).parts():
        for view in views(member.config):
            config = view_config(member.config, view)
            whole = load_arrays(dataset, config.image_size, config.preprocess)
            prepared = _unseen(whole, trained)
            if loaded is None:
                loaded, notes, every_path = prepared, dataset.left_out(whole), whole.paths
            elif not np.array_equal(prepared.paths, loaded.paths):
                raise RunError(f"the checks of run {run_id} read different images of {dataset.name!r}")
            notes += [line for line in dataset.failed_segmentation(prepared, config.preprocess)
                      if line not in notes]  # once per mode (an ensemble's members may share one)
            if not len(loaded.labels):
                raise DatasetError(f"dataset {dataset.name!r} has no readable image of classes "
                                   f"{', '.join(dataset.classes)}")
            shortfall = adapt_shortfall(prepared.images) if adapt else None
            if shortfall:
                raise DatasetError(f"dataset {dataset.name!r} has {shortfall}: adapting needs at least "
                                   f"{MIN_ADAPT_IMAGES} different images of one lab to estimate its statistics; "
                                   "evaluate it without --adapt")
            if view == "prepared":
                voting = member.adapted([prepared.images]) if adapt else member
                proba = proba + weight * voting.batch_probabilities(prepared.images).mean(axis=0)
            described = training_distribution(member.run_id, store, view)
            descriptors = describe_images(prepared.images)
            if view == "prepared":
                cells.append(descriptors)
            assessed = described.assess(descriptors)
            outside[view] = outside.get(view, False) | np.array([entry["outside"] for entry in assessed])
            own_outside[view] = own_outside.get(view, False) | (described.oof_scores > described.threshold)
    # Duplicates join groups here as they do in folds: one picture twice is one draw of the bootstrap.
    groups = merge_groups(loaded.groups, _pairs_among_unseen(duplicate_pairs(dataset), every_path, trained))
    metrics = external_metrics(loaded.labels, proba, groups, dataset.classes, samples=BOOTSTRAP_SAMPLES,
                               seed=BOOTSTRAP_SEED)  # as the stored result's key says, read now
    tied = tied_answers(proba)
    checked = [view for view in ("prepared", "acquisition") if view in own_outside]
    flagged = np.logical_or.reduce([outside[view] for view in checked])
    absent = [name for index, name in enumerate(dataset.classes) if not np.any(loaded.labels == index)]
    warnings = notes + (
        [f"no readable image of class(es) {', '.join(absent)} in {dataset.name}: their recall is undefined "
         "(n/a), and balanced accuracy averages the other classes only"] if absent else []) + (
        [f"{len(seen)} of {len(dataset.items)} image(s) of {dataset.name} left out: run {run_id} was trained on "
         "them (the same bytes), so they would score what it remembers"] if seen else []) + (
        [f"{len(copied)} of {len(dataset.items)} image(s) of {dataset.name} left out: copies of images run {run_id} "
         "was trained on (re-encoded, resized, mirrored or rotated, as Predict's known-image check finds them), so "
         "they would score what it remembers"] if copied else []) + (
        [f"known-image check unavailable (copies of the run's training images re-encoded, resized, mirrored or "
         f"rotated are not left out): {unchecked}"] if unchecked else []) + (
        [f"{sum(other_classes.values())} image(s) of {dataset.name} left out, of class(es) the run does not know: "
         + ", ".join(f"{c} ({n})" for c, n in other_classes.items())] if other_classes else []) + (
        [ties_warning(metrics["undecided"], proba[tied], metrics["n_images"])] if tied.any() else []) + (
        [adapt_note(meta, f"the {dataset.name} images")] if adapt else [])
    own_top = own_confidence(run_id, store)
    floor = confidence_floor(own_top)
    unsure = proba.max(axis=1) < floor
    wrong = proba.argmax(axis=1) != loaded.labels
    try:  # an optional check: without what it needs (a reference of the run's images), the rest stands
        support = answer_support(run_id, store)
        supported = support.assess(cells, proba.argmax(axis=1), flagged, one_lab=adapt)
        doubted = supported["unsupported"]
        unsupported = {"unsupported": {**flag_errors(doubted, wrong, support.own_scores < support.floor),
                                       "floor": support.floor, "one_lab": supported["one_lab"]}}
    except CHECK_UNAVAILABLE as error:
        doubted, unsupported = [None] * len(wrong), {}
        warnings.append(f"support check unavailable: {unavailable_reason(error)}")
    return {
        "run_id": run_id,
        "run": {"config": meta["config"], "dataset": meta["dataset"]["name"],
                "fingerprint": meta["dataset"]["fingerprint"], "classes": meta["dataset"]["classes"]},
        "dataset": {**dataset.describe(), "fingerprint": dataset.fingerprint, "n_used": int(len(loaded.labels)),
                    "skipped": [s.to_dict(dataset.root) for s in loaded.skipped],
                    "absent_classes": absent, "warnings": warnings},
        **metrics,
        "ood_share": float(np.mean(flagged)),
        # The same check on the run's own images, each scored against the folds it was not in.
        "ood_own_share": float(np.mean(np.logical_or.reduce([own_outside[view] for view in checked]))),
        # Is each warning right about the errors? The error rate among the images it flags and
        # among the others, and the share of the run's own out-of-fold images it flags.
        "flags": {
            **{f"ood_{view}": flag_errors(outside[view], wrong, own_outside[view]) for view in checked},
            "ood": flag_errors(flagged, wrong, np.logical_or.reduce([own_outside[view] for view in checked])),
            "likely_wrong": {**flag_errors(unsure, wrong, own_top < floor), "floor": floor},
            **unsupported,
            "either": flag_errors(flagged | unsure, wrong, None),
        },
        "images": image_rows(dataset, loaded, proba, flagged, unsure, doubted, tied),
        "versions": versions(),
    }


def image_rows(dataset, loaded, proba: np.ndarray, outside: np.ndarray, unsure: np.ndarray,
               unsupported: np.ndarray, tied: np.ndarray) -> list[dict]:
    """Each external image's answer: its file and group, true and predicted class (for a tie, the
    first tied class, as the figures count it), whether it is a tie (``undecided``), each class's
    probability, and whether the out-of-distribution, likely-wrong and support checks flag it."""
    classes = list(dataset.classes)
    return [{"file": dataset.relative(path), "group": str(group), "true": classes[int(true)],
             "predicted": classes[int(p.argmax())], "undecided": bool(tie),
             "probabilities": {c: round(float(v), 6) for c, v in zip(classes, p)},
             "outside_training": bool(out), "likely_wrong": bool(low),
             "unsupported": None if alone is None else bool(alone)}  # None: the check could not be made
            for path, group, true, p, tie, out, low, alone in zip(loaded.paths, loaded.groups, loaded.labels, proba,
                                                                  tied, outside, unsure, unsupported)]


def ties_warning(undecided: dict, tied_proba: np.ndarray, n_images: int) -> str:
    """How many answers are ties (``undecided`` of :func:`external_metrics`; ``tied_proba``, their
    probabilities) and how the figures counted them: as the first tied class in the run's order,
    which no model chose."""
    tops = np.round(tied_proba.max(axis=1), 2)
    each = f" (p {tops[0]:.2f} each)" if np.all(tops == tops[0]) else ""
    return (f"{ties_text(undecided['n'], f'{n_images} answers', undecided['counted_as'], each)}: undecided answers "
            "(marked in the per-image CSV)")


def _pairs_among_unseen(pairs: list[tuple[int, int]], paths: list, seen: set) -> list[tuple[int, int]]:
    """Duplicate pairs, indices into all of a dataset's loaded ``paths``, as indices into the images
    :func:`_unseen` keeps; a pair with a seen image goes with it."""
    kept = {index: position for position, index in
            enumerate(index for index, path in enumerate(paths) if path not in seen)}
    return [(kept[a], kept[b]) for a, b in pairs if a in kept and b in kept]


def _unseen(loaded, seen: set):
    """``loaded`` without the images at the paths in ``seen``."""
    from leukdash.data.dataset import LoadedImages

    if not seen:
        return loaded
    keep = np.array([path not in seen for path in loaded.paths], dtype=bool)
    return LoadedImages(loaded.images[keep], loaded.labels[keep], loaded.groups[keep],
                        [path for path, kept in zip(loaded.paths, keep) if kept], loaded.skipped,
                        [failed for failed in loaded.segmentation_failures if failed.path not in seen])


def stored_evaluations(run_id: str, store: RunStore | None = None, model: str = "folds",
                       adapted: bool = False) -> list[dict]:
    """The external results of the run's ``model`` (fold ensemble or final model) stored beside
    it (any method version), by dataset name; adapted results only with ``adapted`` (what a
    single upload is answered with is the unadapted model). A result that scored images the run
    was trained on (:func:`scored_training_images`) is not external, and is not listed.

    One per dataset folder: the one stored last. A folder whose images changed since it was
    tested has a result per content (they are keyed by fingerprint); the older ones describe
    images no longer there, and are kept on disk but not listed (or averaged into a ranking).
    """
    return latest_by_folder(_by_time(run_id, store or RunStore(), model, adapted))


def latest_by_folder(found: list[tuple[Path, dict]], current: dict[str, dict] | None = None) -> list[dict]:
    """:func:`stored_evaluations` of a run's results as :func:`tested_runs` lists them; with ``current``
    (:func:`current_states`), one per test set (:func:`tested_folder`), a folder moved or copied one with it."""
    by_path = {}
    for _, result in found:  # the last of a folder's results, the folders in the order of their last
        by_path.pop(tested_folder(result), None)
        by_path[tested_folder(result)] = result
    # a folder's earlier result is not the run's result of the set another path holds now, its last is
    latest = {tested_folder(result, current): result for result in by_path.values()}
    return sorted(({k: v for k, v in r.items() if k != "tested_at"} for r in latest.values()),
                  key=lambda r: r["dataset"]["name"])


def tested_runs(run_ids: list[str], store: RunStore) -> dict[str, list[tuple[Path, dict]]]:
    """Each run's stored external results of its fold ensemble (unadapted), with their files, the last
    tested last: what :func:`current_states` and :func:`latest_by_folder` are made of, read once."""
    return {run_id: _by_time(run_id, store, "folds", False) for run_id in run_ids}


def tested_folder(result: dict, current: dict[str, dict] | None = None) -> str:
    """The folder a stored external result tested (its name, for a result stored without one); for a test of
    combined folders, their paths, sorted, one a line: its ``path`` is their common parent, which other
    combinations under that parent share, and another combination is another test set.

    With ``current`` (:func:`current_states`), the test set: a result on its folder's current state is one of
    the folder last tested among those whose current state holds the same images (``state``), so that a
    folder moved, renamed or copied after some runs were tested on it is one test set, whatever the path. A
    result on an earlier state of its folder stays that folder's (an earlier state, to be evaluated again)."""
    tested = result["dataset"]
    sources = [source.get("path") for source in tested.get("sources") or [] if isinstance(source, dict)]
    folder = "\n".join(sorted(map(str, sources))) if len(sources) > 1 and all(sources) else (
        tested.get("path") or tested["name"])
    if not current or folder not in current or not same_state(tested, current[folder]):
        return folder
    # current_states lists the folders in the order last tested: the last holding a state names its set
    last_holding = {dataset.get("state"): other for other, dataset in current.items()}
    return last_holding[tested["state"]] if tested.get("state") else folder


def current_states(tested: dict[str, list[tuple[Path, dict]]]) -> dict[str, dict]:
    """The tested set (a result's ``dataset``) of each folder the runs' fold ensembles were tested
    on (``tested``: their results, :func:`tested_runs`), as the last of their tests found it: a folder
    whose images changed between two runs' tests holds the later images (as far as the store can tell),
    and the earlier result describes images no longer there, scored on another test set (:func:`same_state`).
    The folders come in the order last tested (:func:`tested_folder` names a set by the last of them)."""
    latest = {}
    for found_of_run in tested.values():
        for found in found_of_run:
            folder = tested_folder(found[1])
            if folder not in latest or _tested_time(found) > latest[folder][0]:
                latest[folder] = (_tested_time(found), found[1]["dataset"])
    return {folder: dataset for folder, (_, dataset) in sorted(latest.items(), key=lambda item: item[1][0])}


def same_state(tested: dict, other: dict) -> bool:
    """Whether two results' tested sets (their ``dataset``) are one state of a folder: the same images
    (``state``, whatever the runs' classes and their order); for a result stored before results held
    it, the same fingerprint (images and class order: another order cannot be told from another state)."""
    if tested.get("state") and other.get("state"):
        return tested["state"] == other["state"]
    return tested.get("fingerprint") == other.get("fingerprint")


def _by_time(run_id: str, store: RunStore, model: str, adapted: bool) -> list[tuple[Path, dict]]:
    """The external results of the run's ``model`` stored beside it, unadapted or ``adapted``,
    with their files, the last tested last; not those that scored the run's training images."""
    folder = store.run_dir(run_id) / "external"
    found = [(path, _stored(path)) for path in (sorted(folder.glob("*.json")) if folder.is_dir() else [])]
    meta = store.read_meta(run_id) or {}
    return sorted(((p, r) for p, r in found if r is not None and not scored_training_images(r, meta)
                   and r.get("model", "folds") == model and bool(r.get("adapted")) == adapted), key=_tested_time)


def scored_training_images(result: dict, meta: dict) -> bool:
    """Whether a stored external result scored images :func:`evaluate` now refuses as the run's own
    (``meta``, the run's), told from the records alone (the ranking reads every run's results): the
    run's dataset itself; or, for a result stored before evaluate left out the images a run trained
    on (method external-4 and earlier), a folder at one of the run's sources' paths. A later result
    scored only images the run never trained on (a folder made only of them is refused), so it
    stands wherever its folder lies. (The last external-4 results already left them out; with none
    left out, the records cannot tell them from the earlier ones, so they are hidden too.)"""
    tested, run_data = result["dataset"], meta.get("dataset") or {}
    own_dataset = tested.get("fingerprint") is not None and tested.get("fingerprint") == run_data.get("fingerprint")
    own_folders = {source.get("path") for source in run_data.get("sources") or [run_data]} - {None}
    unchecked = _method_number(result) <= 4 and not (result.get("key") or {}).get("left_out")
    return own_dataset or (unchecked and str(tested.get("path")) in own_folders)


def _method_number(result: dict) -> int:
    """The method version a stored result was computed by (``external-N``); 0 where unreadable."""
    method = str((result.get("key") or {}).get("method", ""))
    number = method.removeprefix("external-")
    return int(number) if number.isdigit() else 0


def _tested_time(found: tuple[Path, dict]) -> tuple[float, str]:
    """When a stored result was last tested: recorded in it (a file's time can be set in the
    future, or reset by a copy), else, for a result stored before that, its file's time."""
    path, result = found
    tested = result.get("tested_at")
    if isinstance(tested, (int, float)) and not isinstance(tested, bool) and math.isfinite(tested):
        return float(tested), path.name
    try:
        return path.stat().st_mtime, path.name
    except OSError:  # removed meanwhile
        return 0.0, path.name


def _stored(path: Path) -> dict | None:
    """A stored external result; None when it is missing or damaged (not JSON, not a result):
    a cache, computed again by the next ``evaluate`` and replaced whole."""
    try:
        stored = read_json(path)
    except (ValueError, UnicodeDecodeError):
        return None
    valid = (isinstance(stored, dict) and "accuracy" in stored and isinstance(stored.get("dataset"), dict)
             and isinstance(stored["dataset"].get("name"), str) and isinstance(stored.get("key", {}), dict))
    return _without_zero_width(stored) if valid else None


def _without_zero_width(stored: dict) -> dict:
    """``stored`` with each interval of zero width None and ``reason`` saying why, as
    :func:`~leukdash.evaluation.external_metrics.group_bootstrap` gives them now. Results stored before it did hold
    the interval every resample gave ("[0.5, 0.5]", reason None): read so, every interface says n/a, with its
    reason, without computing again every result of the same method (the other figures are the same)."""
    intervals = stored.get("intervals")
    if not isinstance(intervals, dict):
        return stored
    metrics = [name for name in ("accuracy", "balanced_accuracy", "roc_auc") if name in intervals]
    same = [name for name in metrics if isinstance(intervals[name], list) and len(intervals[name]) == 2
            and intervals[name][1] - intervals[name][0] <= TIE]
    if not same:
        return stored
    # Each image right or wrong, from the confusion matrix: right on its diagonal.
    confusion = np.asarray(stored.get("confusion") or [[0]])
    correct = np.repeat([True, False], [np.trace(confusion), confusion.sum() - np.trace(confusion)])
    reason = intervals.get("reason") or same_resamples_reason(same, dict.fromkeys(metrics), correct)
    return {**stored, "intervals": {**intervals, **dict.fromkeys(same), "reason": reason}}
