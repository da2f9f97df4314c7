"""Does an image look like a run's training data? A distance, calibrated on the run's own folds.

The description of a run's training distribution is model-agnostic: the engineered cell
descriptors (:mod:`leukdash.models.features`: shape, colour of nucleus, cytoplasm and
background, chromatin texture) of every image the run used, prepared exactly as the run's
models see them. An image's score is its mean distance to its ``K`` nearest training images in
that space, each descriptor standardised by the training images' spread.

Calibration is out-of-fold, like the run's own validation: the images of fold ``f`` are scored
against the images the fold-``f`` model trained on, so those ``oof_scores`` say how far a new
image from the same source typically lies. A new image is scored against each fold's training
part in the same way, and the mean over folds is compared with the out-of-fold scores: its
percentile among them is reported, and it is flagged "outside" above ``FLAG_PERCENTILE``
of the scores, those far beyond the rest left out (:func:`flag_threshold`: a blank or foreign image
among a run's own must not lift the threshold beyond any image's reach). By construction about 1% of
the run's own ordinary images are flagged, and those far out.

The description is computed lazily for a finished run (from its dataset and stored folds, no
model needed) and cached beside it (``ood.npz``), so the runner is unchanged; the demo runs
ship with theirs, so a fresh deployment predicts without drawing the built-in dataset.

Two views. A preprocessed run's models see the segmented cell, and a foreign lab's cells can
look like its own once segmented (issue 16: 0-23% of another lab's images flagged while a
quarter to a third of them were wrong). So such a run is also described by the
**acquisition**: the whole image as the camera gave it (``raw``), cached as
``ood-acquisition.npz``; an image is outside when either view puts it outside.

A third signal does not look at the image at all: a prediction is **likely wrong** when its
top probability is lower than that of ``LIKELY_WRONG_PERCENTILE``% of the run's own
out-of-fold predictions (so about that share of its own images get the flag).
"""

from __future__ import annotations

import numpy as np

from leukdash.engine.store import RunStore
from leukdash.evaluation.answer import floored_percentile
from leukdash.evaluation.run_cache import read_run_cache, write_run_cache

# Neighbours averaged in the distance: a few, so that one near-duplicate in the training set
# does not make an image look typical on its own.
K = 5
# Flag an image whose score is above this percentile of the run's own out-of-fold scores.
FLAG_PERCENTILE = 99.0
# Tukey's far-out fence, in interquartile ranges of the log scores above their upper quartile: scores beyond it
# are left out of the threshold. No score of the stored ALL-IDB2 and C-NMC runs checked lies beyond it but an
# image unlike the rest (their thresholds are unchanged); a black image's score does, by far.
FAR_OUT = 3.0
# Floor on a descriptor's spread, so that a descriptor constant in training (e.g. a black
# background) does not divide by zero; it still separates any image that differs on it.
MIN_SPREAD = 1e-3
# Changes to what this module computes invalidate the cached descriptions.
METHOD_VERSION = "ood-2"
# The views of an image that are described: the prepared cell, and the raw acquisition.
VIEWS = ("prepared", "acquisition")
# A prediction less confident than this share of the run's own out-of-fold predictions is flagged.
LIKELY_WRONG_PERCENTILE = 5.0


class TrainingDistribution:
    """Descriptors of a run's images, their folds and the out-of-fold calibration scores."""

    def __init__(self, features: np.ndarray, fold_of: np.ndarray, fold_ids: list[int], oof_scores: np.ndarray):
        self.features = np.asarray(features, dtype=np.float64)
        self.fold_of = np.asarray(fold_of)
        self.fold_ids = list(fold_ids)
        self.oof_scores = np.asarray(oof_scores, dtype=np.float64)
        self.threshold = flag_threshold(self.oof_scores)

    @classmethod
    def fit(cls, features: np.ndarray, fold_of: np.ndarray, fold_ids: list[int]) -> TrainingDistribution:
        """Score every validated image against its fold's training part."""
        features, fold_of = np.asarray(features, dtype=np.float64), np.asarray(fold_of)
        scored = np.isin(fold_of, fold_ids)
        oof = np.full(len(features), np.nan)
        for fold in fold_ids:
            held = fold_of == fold
            oof[held] = knn_scores(features[~held], features[held])
        return cls(features, fold_of, fold_ids, oof[scored])

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Mean over folds of the k-NN score against each fold's training part."""
        features = np.asarray(features, dtype=np.float64)
        return np.mean([knn_scores(self.features[self.fold_of != fold], features) for fold in self.fold_ids], axis=0)

    def percentiles(self, scores: np.ndarray) -> np.ndarray:
        """Share (0-100) of the run's own out-of-fold scores below each score."""
        ordered = np.sort(self.oof_scores)
        return 100.0 * np.searchsorted(ordered, np.asarray(scores), side="left") / len(ordered)

    def assess(self, features: np.ndarray) -> list[dict]:
        """Score, percentile and flag of each image."""
        scores = self.scores(features)
        return [{"score": round(float(s), 4), "percentile": floored_percentile(float(p), 2),
                 "threshold": round(self.threshold, 4), "outside": bool(s > self.threshold)}
                for s, p in zip(scores, self.percentiles(scores))]


def flag_threshold(oof_scores: np.ndarray) -> float:
    """The score above which an image is outside: the ``FLAG_PERCENTILE``-th percentile of the run's own
    out-of-fold scores that are not far out (:func:`far_out_fence`). With a few dozen images that percentile is
    nearly the largest score, so one blank, corrupt or foreign training image would lift it above any image's
    reach; a run without such images keeps its percentile. Computed when a run's description is read, so a
    stored run's threshold follows too (its cached scores are unchanged)."""
    scores = np.asarray(oof_scores, dtype=np.float64)
    return float(np.percentile(scores[scores <= far_out_fence(scores)], FLAG_PERCENTILE))


def far_out_fence(scores: np.ndarray) -> float:
    """Tukey's far-out fence of positive ``scores`` on the log scale: ``FAR_OUT`` interquartile ranges above the
    upper quartile (infinite where no score is positive, or where the quartiles tie: half the scores equal would
    make any score above them far out). Distances are positive with a long upper tail, roughly symmetric in
    logs, so an ordinary image's score lies within it."""
    logs = np.log(scores[scores > 0])  # a zero score (an image with copies in training) has no log
    if not len(logs):
        return np.inf
    lower, upper = np.percentile(logs, [25, 75])
    return float(np.exp(upper + FAR_OUT * (upper - lower))) if upper > lower else np.inf


def knn_scores(reference: np.ndarray, query: np.ndarray, k: int = K) -> np.ndarray:
    """Mean Euclidean distance of each query row to its ``k`` nearest reference rows, every
    descriptor standardised by the reference's mean and spread."""
    distances = euclidean(standardised(reference, reference), standardised(query, reference))
    k = min(k, len(reference))
    return np.sort(distances, axis=1)[:, :k].mean(axis=1)


def standardised(rows: np.ndarray, statistics: np.ndarray) -> np.ndarray:
    """``rows`` standardised by the mean and spread (at least ``MIN_SPREAD``) of the rows ``statistics``."""
    return (rows - statistics.mean(axis=0)) / np.maximum(statistics.std(axis=0), MIN_SPREAD)


def euclidean(reference: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(query rows, reference rows) Euclidean distances."""
    # |q - r|^2 = |q|^2 + |r|^2 - 2 q.r, clipped at 0 against rounding.
    squared = (query ** 2).sum(1)[:, None] + (reference ** 2).sum(1)[None, :] - 2.0 * query @ reference.T
    return np.sqrt(np.clip(squared, 0.0, None))


def describe_images(images: np.ndarray, stored: bool = True) -> np.ndarray:
    """The descriptors the distance is measured on (engineered features): with ``stored``, cached
    on disk by content (:func:`~leukdash.engine.training.featurize_cached`), for a run's own images
    and an evaluation set, described again by every check; without, computed in memory, for images
    being predicted: an upload is classified, never stored, and a file per image would only pile up."""
    if stored:
        from leukdash.engine.training import featurize_cached

        return featurize_cached(np.asarray(images), "features")
    from leukdash.models.features import extract_features

    return extract_features(np.ascontiguousarray(images))


def views(config) -> tuple[str, ...]:
    """The views a run's images are checked in: a raw run's two views are one."""
    return VIEWS[:1] if config.preprocess == "raw" else VIEWS


def view_config(config, view: str):
    """The run config whose preparation gives ``view`` of an image."""
    return config if view == "prepared" else config.with_changes(preprocess="raw")


def training_distribution(run_id: str, store: RunStore | None = None, view: str = "prepared",
                          dataset=None) -> TrainingDistribution:
    """The run's description in one view, read from ``ood.npz`` (``ood-acquisition.npz``)
    beside it or computed from its dataset (``dataset``, else opened as the run had it) and stored
    there (see :mod:`leukdash.evaluation.run_cache`)."""
    from leukdash.config import RunConfig
    from leukdash.engine.run_data import open_run_dataset, validation_folds
    from leukdash.data.arrays import load_arrays

    store = store or RunStore()
    folder = store.run_dir(run_id)
    name = "ood" if view == "prepared" else f"ood-{view}"
    meta = store.finished_meta(run_id)
    config = view_config(RunConfig.from_dict(meta["config"]), view)
    # The images' size and preparation belong to the key: another run's files of the same data and
    # folds (copied beside this one) describe other arrays.
    key = {"method": METHOD_VERSION, "k": K, "dataset": meta["dataset"]["fingerprint"], "fold_ids": meta["fold_ids"],
           "image_size": config.image_size, "preprocess": config.preprocess}
    stored = read_run_cache(folder, name, key, ("features", "fold_of", "oof_scores"),
                            lambda arrays: _describes(arrays, meta["fold_ids"]))
    if stored is not None:
        return TrainingDistribution(stored["features"], stored["fold_of"], meta["fold_ids"], stored["oof_scores"])
    dataset = dataset or open_run_dataset(meta, store)
    arrays = load_arrays(dataset, config.image_size, config.preprocess)  # as the run's models saw them (or the camera)
    fold_of = validation_folds(run_id, len(arrays.labels), store)
    features = _describe_by_fold(arrays.images, fold_of, meta["fold_ids"])
    described = TrainingDistribution.fit(features, fold_of, meta["fold_ids"])
    write_run_cache(folder, name, key, {"features": described.features, "fold_of": described.fold_of,
                                        "oof_scores": described.oof_scores})
    return described


def _describe_by_fold(images: np.ndarray, fold_of: np.ndarray, fold_ids: list[int]) -> np.ndarray:
    """:func:`describe_images` of a run's images, one fold's validation part at a time (then the
    images no fold validated): the very arrays a run on engineered features featurized (in one block,
    up to ``leukdash.models.classic.BLOCK_ROWS`` rows), so their descriptors are read back from its
    features cache rather than computed again. Each image's descriptors are its own: the parts give
    the matrix the whole would."""
    parts = [np.flatnonzero(fold_of == fold) for fold in fold_ids] + [np.flatnonzero(~np.isin(fold_of, fold_ids))]
    features = None
    for rows in (rows for rows in parts if len(rows)):
        described = describe_images(images[rows])
        if features is None:
            features = np.empty((len(images), described.shape[1]), described.dtype)
        features[rows] = described
    return features


def _describes(arrays: dict, fold_ids: list[int]) -> bool:
    """Whether stored arrays can be a description: numeric descriptors, one row and one fold per
    image, one out-of-fold score per image its folds validated."""
    features, fold_of, oof = arrays["features"], arrays["fold_of"], arrays["oof_scores"]
    numeric = all(np.issubdtype(a.dtype, np.number) for a in (features, fold_of, oof))
    return (numeric and features.ndim == 2 and fold_of.ndim == 1 and oof.ndim == 1 and len(features) == len(fold_of)
            and 0 < len(oof) == int(np.isin(fold_of, fold_ids).sum()))


def own_confidence(run_id: str, store: RunStore | None = None) -> np.ndarray:
    """The top probability of each of the run's own out-of-fold predictions (originals only,
    not augmented copies: the floor is for images as they come to Predict, untransformed)."""
    from leukdash.engine.runner import load_result, lost_fold_error

    store = store or RunStore()
    result = load_result(run_id, store)
    if result is None:  # gone, or a fold or its model lost since this process loaded the run's models
        raise lost_fold_error(run_id, store)
    return np.array([max(proba) for fold in result["folds"]
                     for proba, copy in zip(fold["oof"]["proba"], fold["oof"]["copy"]) if copy == 0])


def confidence_floor(own_top: np.ndarray) -> float:
    """The top probability below which a prediction is likely wrong: the
    ``LIKELY_WRONG_PERCENTILE``-th percentile of the run's own out-of-fold top probabilities."""
    return float(np.percentile(own_top, LIKELY_WRONG_PERCENTILE))
