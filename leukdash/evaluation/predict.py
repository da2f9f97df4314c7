"""Prediction for new images from a finished run: the average of its fold models.

Each fold model saw a different 80% of the data, so their average is a small ensemble, and
how many of them agree with it says how settled the answer is. An ensemble run
(:mod:`leukdash.engine.ensemble`) votes fold by fold: its fold ``f`` is the weighted mean of
its members' fold-``f`` models, each fed the images prepared its own way.

One module, though long (about 740 lines): the loaded models (:func:`ensemble`), their copies
adapted to one lab's images (:func:`adapted_models`, which waits for the warm-up and reads the
loaded models), the checks beside each answer (out of distribution, known image, likely wrong,
unsupported, segmentation), the background warm-up, the samples of a lab's images
(:func:`folder_lab`, :func:`adapted_models`) and the answers for files all share this process's
caches of loaded runs, their references and support checks (``_loaded``, ``_references``,
``_supports``, ``_warming``); split apart, each would reach into another's cache. What needs no
cache lives beside it: Grad-CAM (:mod:`leukdash.evaluation.gradcam`), the known-image reference
and its comparison (:mod:`leukdash.evaluation.reference`), the support check
(:mod:`leukdash.evaluation.support`), the headline (:mod:`leukdash.evaluation.answer`).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from leukdash.config import RunConfig
from leukdash.data.decode import decode_image, frames_note
from leukdash.errors import (DatasetError, ImageDecodeError, LeukdashError, RunError, UntrustedModel,
                             raise_interrupt_behind)
from leukdash.paths import error_line, printable
from leukdash.data.preprocess import prepare_images
from leukdash.data.squares import square_resize
from leukdash.engine.machine import address_space_refusal
from leukdash.engine.runner import damaged_fold_message, unfinished_error
from leukdash.engine.store import RunStore, UnreadableRecord, is_unreadable
from leukdash.engine.training import model_suffix
from leukdash.evaluation.external_metrics import tied_answers
from leukdash.evaluation.support import AnswerSupport, answer_support

# Loaded fold models of the last few runs used (a dashboard switches between a handful), each with
# the identity of the files it was loaded from (see _kept).
_loaded: OrderedDict[tuple[str, ...], tuple["_Voting", tuple]] = OrderedDict()
MAX_LOADED_RUNS = 4
# predict_files decodes and answers this many images at a time, or fewer whose decoded pixels reach
# PREDICT_CHUNK_BYTES: a folder of thousands of smear fields must not be held in memory at once.
PREDICT_CHUNK = 64
PREDICT_CHUNK_BYTES = 256 * 2**20
# Adapting models to a lab (evaluate/predict --adapt): the fewest images whose means and spreads
# stand for the lab rather than for those images, and the most that predict reads to estimate them.
MIN_ADAPT_IMAGES = 20
ADAPT_SAMPLE = 1024
# Background warm-ups (see warm_up), by store and run.
_warming: dict[tuple[str, str], threading.Thread] = {}
# Those runs' images at the comparison size, for recognising known images, and their support checks,
# kept the same way.
_references: dict[tuple[str, str], tuple[dict, tuple]] = {}
_supports: dict[tuple[str, str], tuple[AnswerSupport, tuple]] = {}
# What makes a check unavailable (the prediction stands without it): a run's dataset gone, a
# fold lost, or what the check computes that the store cannot hold (read-only or full: OSError).
CHECK_UNAVAILABLE = (LeukdashError, OSError)


class _Voting:
    """What every loaded run answers with: ``fold_probabilities`` averaged over the folds,
    ``parts()``, the plain runs that vote with their weights (a plain run: itself, weight 1), and
    ``adapted(batches)``, a copy adapted to one lab's images (one prepared batch per part)."""

    run_id: str
    meta: dict
    classes: tuple[str, ...]
    # An adapted copy's lab: the descriptors of the images it was adapted to, one array per part,
    # with which the support check compares the images it answers as that lab's.
    lab: list[np.ndarray] | None = None
    images_adapted_to: int = 0  # an adapted copy: how many images it was adapted to (the readable ones of a sample)

    def predict(self, images: list[np.ndarray]) -> list[dict]:
        per_fold = self.fold_probabilities(images)
        mean = per_fold.mean(axis=0)
        votes = per_fold.argmax(axis=2)
        # A fold model whose top classes tie votes for none of them (None): argmax would give it
        # to the first class of the run's order, and count every tied fold as agreeing.
        tied = np.stack([tied_answers(fold) for fold in per_fold])
        results = []
        for i, probabilities in enumerate(mean):
            predicted = int(probabilities.argmax())
            results.append({
                "predicted": self.classes[predicted],
                "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, probabilities)},
                "agreement": int(((votes[:, i] == predicted) & ~tied[:, i]).sum()),
                "n_folds": len(per_fold),
                "fold_predictions": [None if tie else self.classes[v] for v, tie in zip(votes[:, i], tied[:, i])],
            })
        return results


class FoldEnsemble(_Voting):
    """The fold models of one finished run, loaded once; with ``final``, its final model alone
    (see :mod:`leukdash.engine.final`)."""

    # A CNN's Grad-CAM probes, with the fold models they were built of (leukdash.evaluation.gradcam.probes).
    gradcam_probes: tuple[list, list] | None = None

    def __init__(self, run_id: str, store: RunStore | None = None, final: bool = False):
        store = store or RunStore()
        meta = store.finished_meta(run_id)
        self.run_id, self.meta = run_id, meta
        self.config = RunConfig.from_dict(meta["config"])
        self.classes = tuple(meta["dataset"]["classes"])
        refusal = address_space_refusal(f"run {run_id}'s CNN") if self.config.is_cnn else None
        if refusal:
            raise RunError(refusal)
        if self.config.is_cnn:
            _import_keras(run_id)
        if final:
            self.models = [_final_model(run_id, self.config, store)]
            return
        self.models = []
        for fold in meta["fold_ids"]:
            path = store.model_path(run_id, fold, model_suffix(self.config))
            at_fault = store.fold_fault(run_id, fold, path)
            # read_fold checks the model file against the sha256 recorded with the fold.
            model, failure = None, None
            if store.read_fold(run_id, fold) is not None:
                try:
                    model = _load_model(path, run_id, self.config.is_cnn)
                except UntrustedModel:
                    raise  # not damage: the user decides, nothing is moved aside
                except Exception as error:  # noqa: BLE001 - unpickling and Keras raise many kinds
                    raise_interrupt_behind(error)  # a Ctrl-C, not a damaged fold: nothing is discarded
                    failure = error
            if is_unreadable(failure):  # there, and this user may not read it: not damaged, nothing is moved
                raise UnreadableRecord(path, failure)
            if failure is not None and store.model_hashed(run_id, fold):
                # The file holds the bytes its fold saved: it is sound, and this process could not
                # load it (memory, a library). Moving the fold aside would lose it for nothing. Memory is
                # named for a MemoryError, and for a CNN: TensorFlow's libraries failing to map fail in many ways.
                short = isinstance(failure, MemoryError) or self.config.is_cnn
                raise RunError(f"run {run_id}: the model {path.name} is intact but cannot be loaded here "
                               f"({error_line(failure)}): {_SHORT_OF_MEMORY if short else _NOTHING_CHANGED}")
            if model is None:
                store.discard_fold(run_id, fold)
                raise RunError(damaged_fold_message(run_id, at_fault, store))
            self.models.append(model)

    def prepare(self, images: list[np.ndarray]) -> np.ndarray:
        return prepare_images(self.config, images)

    def fold_probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        """(folds, images, classes) probabilities."""
        return self.batch_probabilities(self.prepare(images))

    def batch_probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(folds, images, classes) probabilities of images already prepared by :meth:`prepare`."""
        if self.config.is_cnn:
            from leukdash.models import cnn

            return np.stack([cnn.predict_proba(model, batch) for model in self.models])
        from leukdash.models import classic

        features = classic.featurize(batch, self.config.feature_set)
        return np.stack([classic.predict_all_classes(model, features, len(self.classes)) for model in self.models])

    def adapted(self, batches: list[np.ndarray]) -> "FoldEnsemble":
        """A copy whose fold models are adapted to one lab's images, ``[batch]`` prepared by
        :meth:`prepare`: a classic model's scaler refitted on the batch's features
        (:func:`classic.adapted`), a CNN's batch-normalisation statistics re-estimated on the batch
        (:func:`cnn.adapted`). The loaded models stay as they are."""
        import copy

        (batch,) = batches
        if self.config.is_cnn:
            from leukdash.models import cnn

            models = [cnn.adapted(model, batch) for model in self.models]
        else:
            from leukdash.models import classic

            features = classic.featurize(batch, self.config.feature_set)
            models = [classic.adapted(model, features) for model in self.models]
        adapted = copy.copy(self)
        adapted.models = models
        return adapted

    def parts(self) -> list[tuple["FoldEnsemble", float]]:
        return [(self, 1.0)]


_NOTHING_CHANGED = "nothing was changed"
_SHORT_OF_MEMORY = "often too little memory (ulimit -v, a container's limit); nothing was changed, try again with more"


def _import_keras(run_id: str) -> None:
    """TensorFlow and Keras imported before a CNN run's models are loaded, so that a failure to import
    them is said as such and never taken for a damaged model (its fold moved aside)."""
    from leukdash.models import cnn

    try:
        cnn._keras()
    except LeukdashError:  # the import was interrupted earlier in this process: said in one line
        raise
    except Exception as error:  # noqa: BLE001 - an import short of memory raises many kinds
        raise_interrupt_behind(error)
        raise RunError(f"run {run_id}: TensorFlow cannot be imported here ({error_line(error)}): "
                       f"{_SHORT_OF_MEMORY}") from None


def _final_model(run_id: str, config: RunConfig, store: RunStore):
    from leukdash.engine.final import final_model_path, require_final

    require_final(run_id, store)
    try:
        return _load_model(final_model_path(run_id, config, store), run_id, config.is_cnn)
    except UntrustedModel:
        raise
    except Exception as error:  # noqa: BLE001 - unpickling and Keras raise many kinds
        raise_interrupt_behind(error)
        raise RunError(f"run {run_id}: its final model cannot be loaded ({error_line(error)}); if memory is not "
                       f"short, `python -m leukdash refit {run_id}` again") from None


class RunEnsemble(_Voting):
    """An ensemble run: its members' fold models, fold by fold, their probabilities weighted
    (with ``final``, their final models)."""

    def __init__(self, run_id: str, meta: dict, store: RunStore, final: bool = False):
        from leukdash.engine.record_shapes import member_ids

        self.run_id, self.meta = run_id, meta
        self.classes = tuple(meta["dataset"]["classes"])
        self.members = [(FoldEnsemble(member, store, final), weight) for member, weight in member_ids(meta)]

    def parts(self) -> list[tuple[FoldEnsemble, float]]:
        return list(self.members)

    def fold_probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        return sum(weight * member.fold_probabilities(images) for member, weight in self.members)

    def adapted(self, batches: list[np.ndarray]) -> "RunEnsemble":
        """A copy whose members are adapted (:meth:`FoldEnsemble.adapted`), each to its batch of
        ``batches``, the lab's images as that member prepares them (in the order of :meth:`parts`)."""
        import copy

        adapted = copy.copy(self)
        adapted.members = [(member.adapted([batch]), weight) for (member, weight), batch in zip(self.members, batches)]
        return adapted


def _load_model(path: Path, run_id: str, is_cnn: bool):
    """The model saved at ``path`` in run ``run_id``; raises :class:`UntrustedModel` for a file
    leukdash does not load, else whatever loading it raised (a damaged file, or a process short
    of memory: the caller tells which)."""
    if is_cnn:
        from leukdash.models import cnn

        return cnn.load_model(path)
    from leukdash.models import classic

    return classic.load(path, run_id)


def ensemble(run_id: str, store: RunStore | None = None, final: bool = False) -> FoldEnsemble | RunEnsemble:
    """The loaded fold models of a run (of every member of an ensemble run), or with ``final``
    its final model(s), kept for the life of the process."""
    from leukdash.engine.record_shapes import is_ensemble

    def load() -> _Voting:
        meta = store.finished_meta(run_id)
        if store.missing_members(run_id, meta):  # said of the ensemble, not as a member that is not a run
            raise unfinished_error(run_id, store)
        return RunEnsemble(run_id, meta, store, final) if is_ensemble(meta) else FoldEnsemble(run_id, store, final)

    store = store or RunStore()
    return _kept(_loaded, (str(store.root), run_id) + (("final",) if final else ()), run_id, store, load)


def _kept(kept: dict, key: tuple, run_id: str, store: RunStore, compute):
    """``compute()``, kept in ``kept`` (one of this process's caches of the last ``MAX_LOADED_RUNS``
    runs used) with the identity of the run's files (:func:`_files_identity`). Another process may
    have deleted or recomputed the run or a fold since: a fresh process would answer from the files
    as they are now, so this one computes again when their identity changed. The identity is taken
    before computing and compared after: files rewritten meanwhile may have been read half old, half
    new, so that value is used once and not kept."""
    before = _files_identity(store, run_id)
    found = kept.pop(key, None)
    if found is not None and found[1] == before:
        kept[key] = found  # put back last: the most recently used
        return found[0]
    value = compute()
    if _files_identity(store, run_id) == before:
        kept[key] = (value, before)
        while len(kept) > MAX_LOADED_RUNS:
            kept.pop(next(iter(kept)))  # the least recently used
    return value


def _files_identity(store: RunStore, run_id: str) -> tuple:
    """``(path, size, mtime_ns)`` of the meta.json, fold records and models of the run and, for an
    ensemble run, of its members (a missing file: ``(path,)``): one stat per file, so that checking
    it before each use costs next to nothing, where hashing the models would read them whole."""
    from leukdash.engine.record_shapes import member_ids

    meta = store.read_meta(run_id)
    identity = []
    for run in dict.fromkeys([run_id] + ([member for member, _ in member_ids(meta)] if meta else [])):
        folder = store.run_dir(run)
        for path in [folder / "meta.json", *sorted((folder / "folds").glob("*")),
                     *sorted((folder / "models").glob("*"))]:
            try:
                status = path.stat()
            except OSError:
                identity.append((str(path),))
                continue
            identity.append((str(path), status.st_size, status.st_mtime_ns))
    return tuple(identity)


def predict_images(run_id: str, images: list[np.ndarray], store: RunStore | None = None,
                   checks: bool = True, models: _Voting | None = None,
                   lab: list[np.ndarray] | None = None) -> list[dict]:
    """Fold-ensemble predictions of RGB uint8 images (H, W, 3), as
    :func:`leukdash.data.decode.decode_image` reads them; with ``checks``, each also says whether the image looks like
    the run's training data (``ood``) and whether it is one of them (``known``).

    A check that cannot be made (say, the run's dataset is not on this machine) gives
    ``{"error": "<check> check unavailable: <reason>", "check", "reason"}`` in its place: the
    prediction stands without it. ``models``: the run's models adapted to a lab
    (:func:`adapted_models`) in place of the loaded ones; ``lab``: the descriptors of the lab the
    images come from, with which the support check compares them (:func:`folder_lab`; models
    adapted to a lab carry theirs).
    """
    _check_store(store)
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ImageDecodeError(f"images must be a list of images or an (N, height, width, 3) array, got an array "
                                   f"of shape {images.shape}: for one image, give [image]")
    elif isinstance(images, Iterable) and not isinstance(images, (str, bytes)):
        images = list(images)  # a generator or a pandas Series is read once, in order
    else:
        raise TypeError(f"images must be a list of images (RGB uint8 arrays, as decode_image reads them) or an "
                        f"(N, height, width, 3) array, got {type(images).__name__}")
    if len(images) == 0:
        return []
    _wait_for_warm_up(run_id, store)
    results = (models if models is not None else ensemble(run_id, store)).predict(images)
    if checks:
        for result, entry in zip(results, _checked(run_id, images, store, "ood", out_of_distribution)):
            result["ood"] = entry
        for result, entry in zip(results, _checked(run_id, images, store, "known",
                                                   lambda r, i, s: known_images(r, i, s, models))):
            result["known"] = entry
        for result, entry in zip(results, _checked(run_id, results, store, "likely-wrong", likely_wrong)):
            result["likely_wrong"] = entry
        for result, entry in zip(results, _checked(run_id, results, store, "support",
                                                   lambda r, answered, s: unsupported_answers(
                                                       r, images, answered, s, models.lab if models else lab))):
            result["unsupported"] = entry
        for result, entry in zip(results, cell_segmentation(run_id, images, store)):
            result["cell"] = entry
    return results


def _check_store(store) -> None:
    """A TypeError that names ``store`` when it is not a RunStore (a path given for it failed deep inside)."""
    if store is not None and not isinstance(store, RunStore):
        raise TypeError(f"store must be a RunStore (RunStore(root) for a store folder) or None for the default "
                        f"store, got {type(store).__name__}")


def _checked(run_id, images, store, what, check) -> list:
    try:
        return check(run_id, images, store)
    except CHECK_UNAVAILABLE as error:
        reason = unavailable_reason(error)
        return [{"error": f"{what} check unavailable: {reason}", "check": what, "reason": reason}] * len(images)


def unavailable_reason(error: Exception) -> str:
    """Why a check cannot be made, in one line: a LeukdashError says it; an OSError is what the
    check needs that the store or the dataset cannot give (read-only or full store), said without
    the server's paths."""
    if not isinstance(error, OSError):
        return str(error)
    cause = f" ({error.strerror.lower()})" if error.strerror else ""
    return f"what it needs could not be read or stored here{cause}"


def out_of_distribution(run_id: str, images: list[np.ndarray], store: RunStore | None = None) -> list[dict]:
    """Per image: its distance score to the run's training images, the percentile of that score
    among the run's own out-of-fold images, and whether it is outside (see :mod:`leukdash.evaluation.ood`).

    A preprocessed run checks the prepared cell and the acquisition (the raw image), an ensemble
    run each member's views: the image is outside when any check says so, and the score shown
    is the check's with the highest percentile (``view`` names it).
    """
    from leukdash.evaluation.ood import describe_images, training_distribution, view_config, views

    assessed = []
    for member, _ in ensemble(run_id, store).parts():
        for view in views(member.config):
            described = training_distribution(member.run_id, store, view)
            # An image being predicted is described in memory (stored=False): it is classified, never stored.
            descriptors = describe_images(prepare_images(view_config(member.config, view), images), stored=False)
            assessed.append([{**entry, "view": view} for entry in described.assess(descriptors)])
    return [{**max(entries, key=lambda entry: entry["percentile"]), "outside": any(e["outside"] for e in entries)}
            for entries in zip(*assessed)]


def cell_segmentation(run_id: str, images: list[np.ndarray], store: RunStore | None = None) -> list[dict]:
    """Per image, for a run whose models see segmented cells (any member's, for an ensemble):
    ``{"failure": None}`` when the cell was found, else the failure and what it means for the
    answer; nothing for a run on whole images."""
    from leukdash.data.preprocess import FAILURE_MEANING, RAW, cell_failure

    if all(member.config.preprocess == RAW for member, _ in ensemble(run_id, store).parts()):
        return []
    failures = [cell_failure(image) for image in images]
    return [{"failure": failure, "meaning": FAILURE_MEANING.get(failure)} for failure in failures]


def likely_wrong(run_id: str, results: list[dict], store: RunStore | None = None) -> list[dict]:
    """Per prediction: the top probability of its answer against the run's confidence floor (see
    :func:`leukdash.evaluation.ood.confidence_floor`), and whether it falls below.

    The answer judged is the one the product headlines (:func:`leukdash.evaluation.answer.headline`):
    for one of the run's own images (``known``) its out-of-fold model's, the kind of answer the
    floor is drawn from; else the ensemble mean's.
    """
    from leukdash.evaluation.answer import headline
    from leukdash.evaluation.ood import confidence_floor, own_confidence

    floor = confidence_floor(own_confidence(run_id, store))
    tops = [headline(result)["probability"] for result in results]
    return [{"confidence": top, "floor": round(floor, 6), "flag": top < floor} for top in tops]


def unsupported_answers(run_id: str, images: list[np.ndarray], results: list[dict],
                        store: RunStore | None = None, lab: list[np.ndarray] | None = None) -> list[dict | None]:
    """Per prediction (``results``, of ``images``): the trust score of the answer the
    product headlines against the run's support floor, and whether it falls below (see
    :mod:`leukdash.evaluation.support`); ``None`` for one of the run's own images, whose
    out-of-fold answer the known-image check shows (among the training images it is itself).

    Each image is compared as it is, with the training images' statistics, unless ``lab`` gives
    the descriptors of its lab's images (each voting run's view): those of a folder of another lab
    (:func:`folder_lab`), or of the images models were adapted to (:func:`adapted_models`).
    """
    from leukdash.evaluation.answer import headline
    from leukdash.evaluation.ood import describe_images

    support = _per_run(_supports, run_id, store, answer_support)
    voting = ensemble(run_id, store)
    answers = np.array([voting.classes.index(headline(result)["predicted"]) for result in results])
    scores = support.scores([describe_images(prepare_images(member.config, images), stored=False)
                             for member, _ in voting.parts()],
                            answers, lab)
    return [None if (result.get("known") or {}).get("match") else
            {"score": round(float(score), 6), "floor": round(support.floor, 6), "flag": bool(score < support.floor),
             "one_lab": lab is not None}
            for result, score in zip(results, scores)]


def known_image(run_id: str, image: np.ndarray, store: RunStore | None = None,
                models: _Voting | None = None) -> dict | None:
    """Whether ``image`` is (nearly) identical to an image of the run's dataset, and if so the
    prediction of the fold model that did not train on it (the one it validated; of ``models``,
    the run's models adapted to a lab, when given); ``None`` when it is not.

    The test: :func:`leukdash.evaluation.reference.reference_copies` (identical decoded pixels, equal
    digests, are reported as such); the closest copy is the match, and ``also`` lists the run's
    other copies of the picture (``file``, ``class``): a dataset may hold one picture under two
    labels (:func:`leukdash.evaluation.answer.conflicting_labels`).
    """
    return known_images(run_id, [image], store, models)[0]


def known_images(run_id: str, images: list[np.ndarray], store: RunStore | None = None,
                 models: _Voting | None = None) -> list[dict | None]:
    """:func:`known_image` of each of ``images`` (not empty), in one pass: their copies are looked for
    together, and the known ones are answered in one batch by the fold models, so that an image the
    run trained on costs about what a new one does."""
    from leukdash.evaluation.reference import KNOWN_SIZE, closest_copy, pixel_digest, reference_copies

    models = models if models is not None else ensemble(run_id, store)
    reference = _reference(run_id, store)
    found: list[dict | None] = [None] * len(images)
    validated = []  # (index, model) of each known image a fold model validated on
    for index, copies in enumerate(reference_copies(np.stack([square_resize(image, KNOWN_SIZE) for image in images]),
                                                    reference)):
        if not copies:
            continue
        match = closest_copy(copies)
        fold = int(reference["fold_of"][match])
        found[index] = {
            "file": str(reference["relative"][match]), "class": models.classes[int(reference["labels"][match])],
            "match": "identical" if pixel_digest(images[index]) == reference["digests"][match] else "near-identical",
            "difference": round(float(copies[match]), 3), "fold": fold + 1,
            "also": [{"file": str(reference["relative"][other]),
                      "class": models.classes[int(reference["labels"][other])]} for other in copies if other != match]}
        if fold in models.meta["fold_ids"]:
            validated.append((index, models.meta["fold_ids"].index(fold)))
        else:  # a holdout run's training image: every model saw it
            found[index].update(fold=None, prediction=None)
    if validated:
        per_fold = models.fold_probabilities([images[index] for index, _ in validated])
        for row, (index, model) in enumerate(validated):
            proba = per_fold[model, row]
            found[index].update(prediction=models.classes[int(proba.argmax())],
                                probabilities={c: round(float(p), 6) for c, p in zip(models.classes, proba)})
    return found


def _reference(run_id: str, store: RunStore | None) -> dict:
    """The run's stored reference (see :mod:`leukdash.evaluation.reference`), kept per run."""
    from leukdash.evaluation.reference import known_reference

    return _per_run(_references, run_id, store, known_reference)


def _per_run(kept: dict, run_id: str, store: RunStore | None, compute):
    """``compute(run_id, store)``, kept in ``kept`` as long as the run's files stay the same (:func:`_kept`)."""
    store = store or RunStore()
    return _kept(kept, (str(store.root), run_id), run_id, store, lambda: compute(run_id, store))


def prepare_checks(run_id: str, store: RunStore | None = None) -> None:
    """Load the run's models and read (or compute and store) what both checks need, so that the
    next prediction answers at once. What cannot be prepared is left for the prediction to report."""
    from leukdash.evaluation.ood import training_distribution, views

    try:
        voters = [(member.run_id, view) for member, _ in ensemble(run_id, store).parts() for view in views(member.config)]
    except CHECK_UNAVAILABLE:
        return
    for prepare in [lambda: _reference(run_id, store)] + [
            lambda voter=voter, view=view: training_distribution(voter, store, view) for voter, view in voters] + [
            lambda: _per_run(_supports, run_id, store, answer_support)]:  # after what it reads
        try:
            prepare()
        except CHECK_UNAVAILABLE:
            continue


def warm_up(run_id: str, store: RunStore | None = None) -> None:
    """Start :func:`prepare_checks` in a background thread (once per run and store), so that the
    first prediction a page asks for finds the models loaded and the references read; a
    prediction asked for meanwhile waits for it rather than doing the same work twice."""
    store = store or RunStore()
    key = (str(store.root), run_id)
    if key not in _warming:
        _warming[key] = threading.Thread(target=prepare_checks, args=(run_id, store), daemon=True,
                                         name=f"warm-up {run_id}")
        _warming[key].start()


def warmed_up(run_id: str, store: RunStore | None = None) -> bool:
    """Whether a prediction with this run will answer at once: its warm-up ended, or its
    models are loaded and its references stored."""
    from leukdash.evaluation.reference import references_stored

    store = store or RunStore()
    key = (str(store.root), run_id)
    if key in _warming:
        return not _warming[key].is_alive()
    return key in _loaded and references_stored(run_id, store)


def _wait_for_warm_up(run_id: str, store: RunStore | None) -> None:
    thread = _warming.get((str((store or RunStore()).root), run_id))
    if thread is not None and thread is not threading.current_thread():
        thread.join()


def predict_files(run_id: str, paths: list[Path], store: RunStore | None = None, adapt: bool = False) -> list[dict]:
    """Predictions for image files, in their order; a folder stands for the images under it
    (:func:`leukdash.data.sources.image_files`, sorted). An unreadable file (not a regular file,
    too large, not an image) gets an ``error`` entry, not an exception; so does a folder without
    an image. With ``adapt``, the files are taken for one lab's images and answered by the run's
    models adapted to them (:func:`adapted_models`); without, the support check still compares
    them as one lab's where :func:`folder_lab` finds them to be another lab's, as ``evaluate`` does."""
    _check_store(store)
    (store or RunStore()).run_dir(run_id)  # an invalid run id is refused before any file is read
    if isinstance(paths, (str, os.PathLike)):  # one file given bare, not its characters one by one
        paths = [paths]
    elif not isinstance(paths, Iterable) or isinstance(paths, bytes):
        raise TypeError(f"paths must be a list of image files or folders (or one path), got {type(paths).__name__}")
    files = _files_of(paths)
    readable = [path for path, problem in files if not problem]
    models = adapted_models(run_id, readable, store) if adapt else None
    lab = None if adapt else folder_lab(run_id, readable, store)
    entries, decoded = [], []
    for path, problem in files:
        entry = {"file": printable(str(path))}
        entries.append(entry)
        if problem:
            entry["error"] = problem
            continue
        try:
            decoded.append((entry, decode_image(path)))
        except ImageDecodeError as error:
            entry["error"] = str(error)
            continue
        if note := frames_note(path):
            entry["note"] = note
        if len(decoded) == PREDICT_CHUNK or sum(image.nbytes for _, image in decoded) >= PREDICT_CHUNK_BYTES:
            _answer(run_id, decoded, store, models, lab)
            decoded = []
    _answer(run_id, decoded, store, models, lab)
    return entries


def adapted_models(run_id: str, sources: list, store: RunStore | None = None) -> _Voting:
    """Run ``run_id``'s models adapted to the images in ``sources`` (files or their bytes), taken
    for one lab's images (:meth:`FoldEnsemble.adapted`): at most ``ADAPT_SAMPLE`` of them, spread
    evenly over the list, are read to estimate the lab's statistics; unreadable ones are skipped
    (their answers say why). Fewer than ``MIN_ADAPT_IMAGES`` usable images: a DatasetError."""
    from leukdash.evaluation.ood import describe_images

    _wait_for_warm_up(run_id, store)
    models = ensemble(run_id, store)
    batches = [[] for _ in models.parts()]
    for _, prepared in _lab_sample(models, sources):
        for batch, part in zip(batches, prepared):
            batch.append(part)
    usable = sum(len(part) for part in batches[0])
    shortfall = adapt_shortfall(np.concatenate(batches[0]) if usable else np.empty((0,)))
    if shortfall:
        raise DatasetError(f"{shortfall} (of {len(sources)} given): adapting needs at least {MIN_ADAPT_IMAGES} "
                           "different images of one lab to estimate its statistics, so none was answered; without "
                           "adapting (no --adapt, or the Predict page's switch off) each is answered on its own (an "
                           "unreadable one with its reason)")
    adapted = models.adapted([np.concatenate(batch) for batch in batches])
    adapted.lab = [describe_images(np.concatenate(batch), stored=False) for batch in batches]
    adapted.images_adapted_to = usable
    return adapted


def adapt_shortfall(prepared: np.ndarray) -> str | None:
    """Why images, ``prepared`` for a model (one row per image), are too few to adapt the model to
    them: fewer than ``MIN_ADAPT_IMAGES``, or fewer different ones (copies of one image have no spread:
    every input would become the training mean, answered with one class); None when they will do."""
    if len(prepared) < MIN_ADAPT_IMAGES:
        return f"{len(prepared)} usable image(s)"
    distinct = len(np.unique(prepared.reshape(len(prepared), -1), axis=0))
    if distinct < MIN_ADAPT_IMAGES:
        return f"{len(prepared)} usable images, {distinct} of them different"
    return None


def folder_lab(run_id: str, sources: list, store: RunStore | None = None) -> list[np.ndarray] | None:
    """The descriptors of the images in ``sources`` (files or their bytes; at most ``ADAPT_SAMPLE``,
    spread evenly), one array per voting part, when they look like another lab's: enough of them,
    mostly unlike the run's training data (:func:`leukdash.evaluation.support.takes_for_one_lab`,
    the rule of ``evaluate``). ``None`` otherwise, or where the out-of-distribution check cannot be
    made: the support check then compares each image as it is."""
    from leukdash.evaluation.ood import describe_images
    from leukdash.evaluation.support import MIN_BATCH_IMAGES, takes_for_one_lab

    if len(sources) < MIN_BATCH_IMAGES:
        return None
    _wait_for_warm_up(run_id, store)
    models = ensemble(run_id, store)
    outside, descriptors = [], [[] for _ in models.parts()]
    try:
        for images, prepared in _lab_sample(models, sources):
            outside += [entry["outside"] for entry in out_of_distribution(run_id, images, store)]
            for described, part in zip(descriptors, prepared):
                described.append(describe_images(part, stored=False))
    except CHECK_UNAVAILABLE:
        return None
    return [np.concatenate(described) for described in descriptors] if takes_for_one_lab(outside) else None


def _lab_sample(models: _Voting, sources: list):
    """At most ``ADAPT_SAMPLE`` images of ``sources``, spread evenly over the list, decoded and
    prepared by each voting part, ``PREDICT_CHUNK`` at a time: ``(images, [prepared, per part])``.
    An image that cannot be read or prepared is passed over."""
    parts = [member for member, _ in models.parts()]
    spread = np.unique(np.linspace(0, len(sources) - 1, min(len(sources), ADAPT_SAMPLE)).astype(int)) if sources else []
    images, prepared = [], [[] for _ in parts]
    for position, index in enumerate(spread):
        try:
            image = decode_image(sources[index])
            ready = [member.prepare([image]) for member in parts]
        except ImageDecodeError:
            ready = None
        if ready is not None:
            images.append(image)
            for batch, one in zip(prepared, ready):
                batch.append(one)
        if images and (len(images) == PREDICT_CHUNK or position == len(spread) - 1):
            yield images, [np.concatenate(batch) for batch in prepared]
            images, prepared = [], [[] for _ in parts]


def adapt_note(meta: dict, images: str) -> str:
    """What answers of run ``meta``'s models adapted to ``images`` ("the cnmc_dev images") did,
    model kind by model kind, and what they assume."""
    models = [config["model"] for config in meta["config"].get("member_configs", [meta["config"]])]
    done = ([f"the classic models standardised their inputs with {images}' own statistics"]
            if any(model != "cnn" for model in models) else []) + (
        [f"the CNNs re-estimated their batch-normalisation statistics on {images}"] if "cnn" in models else [])
    return (f"adapted: {' and '.join(done)}, and the support check (where it can be made) compared them as one "
            "lab's images, which assumes they are one lab's images with a class mix like the training set's; each "
            "answer depends on the other images")


def _answer(run_id: str, decoded: list[tuple[dict, np.ndarray]], store: RunStore | None,
            models: _Voting | None = None, lab: list[np.ndarray] | None = None) -> None:
    """Predict the images of ``(entry, image)`` pairs, each answer written into its entry."""
    if not decoded:
        return
    try:
        predictions = predict_images(run_id, [image for _, image in decoded], store, models=models, lab=lab)
    except ImageDecodeError:  # one image could not be prepared (resized): each on its own, to name it
        predictions = []
        for entry, image in decoded:
            try:
                predictions += predict_images(run_id, [image], store, models=models, lab=lab)
            except ImageDecodeError as error:
                entry["error"], predictions = str(error), predictions + [{}]
    for (entry, _), prediction in zip(decoded, predictions):
        entry.update(prediction)


def _files_of(paths) -> list[tuple[Path, str | None]]:
    """Each path given, a folder replaced by its images: ``(path, why it is not read, or None)``."""
    from leukdash.data.sources import READ_TYPES, image_files, unread_files

    found = []
    for path in map(Path, paths):
        if not path.is_dir():
            found.append((path, None))  # decode_image says what is wrong with it, if anything
        elif images := image_files(path):
            found += images
        else:
            left = unread_files(path)
            found.append((path, f"a folder without image files ({f'{left}; ' if left else ''}{READ_TYPES})"))
    return found
