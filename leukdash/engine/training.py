"""One fold of a run: split, augment as the protocol says, train, evaluate.

``run_fold`` is a pure function of (config, fold inputs, fold): everything random in it is
seeded from (seed, fold, ...), so a fold computed again, in another process, order or machine,
is the same. Its inputs (:class:`FoldInputs`: decoded images, labels, fold plan) are prepared
once per run by the process that owns the store, so a worker needs no access to the dataset.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leukdash.atomic import write_atomic
from leukdash.config import RunConfig
from leukdash.errors import ConfigError, DatasetError, RunRefused
from leukdash.data.arrays import decoded_cache, load_arrays, write_cache
from leukdash.data.dataset import Dataset, LoadedImages
from leukdash.paths import artifacts_root


def plan_folds(config: RunConfig, dataset: Dataset, arrays: LoadedImages) -> tuple[np.ndarray, list[int]]:
    """The fold of every loaded image and the folds this config runs."""
    from leukdash.data.folds import fold_plan, leave_one_source_out

    sources = dataset.sources_of(arrays.paths)
    if config.protocol == "lodo":
        fold_of, fold_ids = leave_one_source_out(sources, dataset.source_names)
        copies = duplicate_copies(dataset, arrays)
        for fold in fold_ids:
            if not training_part(fold_of, fold, copies).any():
                raise DatasetError(f"every image of the other datasets is a duplicate of an image of "
                                   f"{dataset.source_names[fold]}: leaving it out leaves nothing to train on")
        _check_neighbours(config, [int(training_part(fold_of, fold, copies).sum()) for fold in fold_ids])
    else:
        try:
            fold_of, fold_ids = fold_plan(arrays.labels, joined_groups(dataset, arrays), dataset.classes, config.folds,
                                          config.test_fraction, config.seed, sources, dataset.name, arrays.groups)
        except DatasetError as error:  # too few images: say if unreadable files are why
            raise dataset.with_left_out(error, arrays) from None
        _check_neighbours(config, [int(training_part(fold_of, fold).sum()) for fold in fold_ids])
    return fold_of, fold_ids


def joined_groups(dataset: Dataset, arrays: LoadedImages) -> np.ndarray:
    """The group of every loaded image, joined with the groups of its duplicates (:func:`duplicate_pairs`).

    The duplicates are those of the whole dataset, as the audit finds them: a re-encoded or resized
    copy in one source of a combined dataset of an image of another is the same cell, so it joins
    that image's group (under the same group-size cap as any link).
    """
    from leukdash.data.folds import merge_groups

    return merge_groups(arrays.groups, duplicate_pairs(dataset))


def duplicate_copies(dataset: Dataset, arrays: LoadedImages) -> np.ndarray:
    """The copy set of every loaded image: images joined by any confirmed duplicate pair of the
    audit, those refused for the group-size cap included, share one (the smallest index among them).

    The cap keeps folds drawn from groups balanced; when the folds are the sources (leave one
    source out) there is nothing to balance, and a copy left in training would leak.
    """
    from leukdash.data.folds import merge_groups

    links = _duplicate_links(dataset)
    return merge_groups(np.arange(len(arrays.labels)), links["pairs"] + links["refused"]).astype(np.int64)


def training_part(fold_of: np.ndarray, fold: int, copies: np.ndarray | None = None) -> np.ndarray:
    """Which images fold ``fold`` trains on: those of the other folds, less, with ``copies`` (the
    copy sets of a leave-one-source-out run, :func:`duplicate_copies`), the copies of the images it
    validates on: there the folds are the sources, so a copy across sources would leak. Only the
    copies are left out, not the rest of their patient's images."""
    train = fold_of != fold
    if copies is not None:
        train &= ~np.isin(copies, copies[fold_of == fold])
    return train


def _check_neighbours(config: RunConfig, n_train: list[int]) -> None:
    """k-NN needs at least k training images in every fold (``n_train``: their count per fold): say
    so before any fold is trained."""
    if config.model != "knn":
        return
    augmented = config.augment_factor > 1 and bool(config.augment.enabled())
    smallest = min(n_train) * (config.augment_factor if augmented else 1)
    if config.k > smallest:
        raise ConfigError(f"k must be at most {smallest}, the smallest training set of this run's folds, "
                          f"got {config.k}")


def duplicate_pairs(dataset: Dataset) -> list[tuple[int, int]]:
    """Index pairs of exact and confirmed near-duplicate images that join groups (the audit's
    definition, :func:`leukdash.data.duplicates.dataset_duplicates`), cached.

    Folds keep each pair together: the same cell on both sides of a split would leak.
    Indices refer to the loaded (decodable) images, the same at every image size.
    """
    return [tuple(pair) for pair in _duplicate_links(dataset)["pairs"]]


def duplicate_warnings(config: RunConfig, dataset: Dataset, inputs: FoldInputs) -> list[str]:
    """What a run's user must know of its dataset's duplicates, as the audit lists them (``inputs``:
    the run's :func:`fold_inputs`, whose fold plan and copy sets are read, not made again).

    Folds drawn from groups: a line when near-duplicate links were not merged (the merged group
    would have been too large), since those images may be validated in another fold than their
    twin. Leave one source out: a line counting, per held-out dataset, the copies its fold leaves
    out of training (:func:`training_part`).
    """
    if config.protocol != "lodo":
        links = _duplicate_links(dataset)
        return [f"{len(links['refused'])} near-duplicate link(s) of {dataset.name} were not merged (the merged "
                f"group would exceed {links['merge_limit']} images): those images may be validated in another fold "
                "than their twin; `python -m leukdash audit` lists them"] if links["refused"] else []
    fold_of, copies = inputs.fold_of, inputs.copies
    left_out = {inputs.source_names[fold]: int(((fold_of != fold) & ~training_part(fold_of, fold, copies)).sum())
                for fold in inputs.fold_ids}
    counts = [f"{count} image(s) of the other datasets left out when {name} is held out"
              for name, count in left_out.items() if count]
    return [f"a fold does not train on the copies of the images it validates on: {', '.join(counts)}; "
            "`python -m leukdash audit` lists them"] if counts else []


def _duplicate_links(dataset: Dataset) -> dict:
    """``pairs`` (:func:`duplicate_pairs`), ``refused`` (the confirmed near-duplicate pairs not
    merged, for the group-size cap) and ``merge_limit`` of a dataset, cached by its fingerprint."""
    from leukdash.config import stable_hash
    from leukdash.data import duplicates
    from leukdash.data.folds import MAX_MERGE_SHARE
    from leukdash.engine.store import write_json_atomic

    # The method's settings are part of the key: a cache of another definition is never reused
    # ("exact-uncapped": exact duplicates are merged whatever the size of their group).
    method = stable_hash([duplicates.HASH_SIZE, duplicates.NEAR_DUPLICATE_DISTANCE, duplicates.PIXEL_SIZE,
                          duplicates.PIXEL_MATCH, MAX_MERGE_SHARE, duplicates.MIN_DETAIL, "exact-uncapped"], 8)
    cache = decoded_cache(dataset, f"duplicates_{method}.json")
    cached = _read_links(cache, len(dataset.items))
    if cached is None:
        found = duplicates.dataset_duplicates(dataset)
        cached = {"pairs": found.pairs(), "refused": [pair for pair, _ in found.refused],
                  "merge_limit": found.merge_limit}
        write_json_atomic(cache, cached, optional=True)
    return cached


def _read_links(cache: Path, n_items: int) -> dict | None:
    """The cached duplicate links, or None when the file is missing or damaged (then rebuilt)."""
    from leukdash.engine.store import read_json

    try:
        links = read_json(cache)
    except (OSError, ValueError):
        return None
    if not isinstance(links, dict) or not _count(links.get("merge_limit")):
        return None
    valid = all(isinstance(pairs, list) and all(
        isinstance(pair, list) and len(pair) == 2 and all(_count(i) and i < n_items for i in pair) for pair in pairs)
        for pairs in (links.get("pairs"), links.get("refused")))
    return links if valid else None


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class FoldInputs:
    """Everything a fold needs besides its config: small enough to send to a remote worker."""

    images: np.ndarray    # (N, size, size, 3) uint8, the decodable images of the dataset
    labels: np.ndarray    # (N,) class indices
    fold_of: np.ndarray   # (N,) the fold of every image (see :func:`plan_folds`)
    fold_ids: tuple[int, ...]  # the folds the run computes
    classes: tuple[str, ...]
    # A run on several datasets: the source and group of every image, and the sources in fold order (lodo).
    sources: np.ndarray | None = None
    groups: np.ndarray | None = None
    source_names: tuple[str, ...] = ()
    # Leave one source out: the copy set of every image, across sources (see :func:`duplicate_copies`).
    copies: np.ndarray | None = None


def fold_inputs(config: RunConfig, dataset: Dataset, arrays: LoadedImages | None = None) -> FoldInputs:
    """The inputs of every fold of a run (``arrays`` when already loaded at the config's size)."""
    arrays = arrays if arrays is not None else load_arrays(dataset, config.image_size, config.preprocess)
    fold_of, fold_ids = plan_folds(config, dataset, arrays)
    if len(dataset.sources) == 1:
        return FoldInputs(arrays.images, arrays.labels, fold_of, tuple(fold_ids), tuple(dataset.classes))
    copies = duplicate_copies(dataset, arrays) if config.protocol == "lodo" else None
    return FoldInputs(arrays.images, arrays.labels, fold_of, tuple(fold_ids), tuple(dataset.classes),
                      dataset.sources_of(arrays.paths).astype(str), arrays.groups.astype(str), dataset.source_names,
                      copies)


def model_suffix(config: RunConfig) -> str:
    return "keras" if config.is_cnn else "joblib"


def derived_seed(*parts: int) -> int:
    """One 32-bit seed from several integers (run seed, fold, epoch...), stable across runs."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def run_fold(config: RunConfig, inputs: FoldInputs, fold: int, *, model_path: Path, report=None) -> dict:
    """Train on every fold but ``fold``, validate on ``fold``; save the model; return the result.

    Under the ``strict`` protocol only the training part is augmented (a fresh set of K-1
    transformed copies per CNN epoch) and validation uses the untouched originals. Under the
    ``paper`` protocol both parts are expanded xK once, before training, as the paper did.
    """
    from leukdash.engine.augment import expand
    from leukdash.metrics import fold_metrics, source_metrics

    started = time.perf_counter()
    report = report or (lambda event: None)
    fold_of = inputs.fold_of
    train, val = training_part(fold_of, fold, inputs.copies), fold_of == fold
    train_rows = training_rows(config, inputs, np.flatnonzero(train), fold)
    train_labels, val_labels = inputs.labels[train_rows], inputs.labels[val]
    val_index, val_copy = np.flatnonzero(val), np.zeros(int(val.sum()), dtype=np.int64)
    # The images of each part: the run's images by row (a classic model featurizes them block by
    # block), copied only where a part is expanded or fed to the CNN.
    train_images, val_images = Rows(inputs.images, train_rows), Rows(inputs.images, val_index)

    augmented = config.augment_factor > 1 and bool(config.augment.enabled())
    factor, augment = config.augment_factor, config.augment
    if augmented and config.protocol == "paper":
        n_val = len(val_labels)
        val_images, val_labels, source = expand(val_images.copy(), val_labels, factor, augment,
                                                derived_seed(config.seed, fold, 1))
        val_index, val_copy = val_index[source], np.arange(len(source)) // n_val  # copies come in blocks
        train_images, train_labels, _ = expand(train_images.copy(), train_labels, factor, augment,
                                               derived_seed(config.seed, fold, 0))
        augmented = False  # the training set is already expanded, once
    report({"event": "fold_start", "n_train": int(len(train_labels)), "n_val": int(len(val_labels))})

    classes = inputs.classes
    if config.is_cnn:
        fitted = _train_cnn(config, fold, len(classes), Rows.copy_of(train_images), train_labels,
                            Rows.copy_of(val_images), val_labels, augmented, report)
    else:
        if augmented:
            train_images, train_labels, _ = expand(Rows.copy_of(train_images), train_labels, factor, augment,
                                                   derived_seed(config.seed, fold, 0))
        fitted = _train_classic(config, fold, classes, train_images, train_labels, val_images)
    model, proba, train_acc, train_loss, history = fitted
    _save_model(config, model, model_path)

    result = {"fold": fold, "n_train": int(train.sum()), "n_val": int(len(val_labels)),
              **fold_metrics(val_labels, proba, classes),
              "train_acc": float(train_acc), "train_loss": float(train_loss),
              "seconds": time.perf_counter() - started,
              "oof": {"index": val_index.tolist(), "copy": val_copy.tolist(), "true": val_labels.tolist(),
                      "proba": np.round(proba, 6).tolist()}}
    if history:
        result["history"] = history
    if config.balance_sources:
        result["n_train_balanced"] = int(len(train_rows))  # the training images after resampling, copies counted
    if inputs.sources is not None:
        result["per_source"] = source_metrics(val_labels, proba, classes, inputs.sources[val_index],
                                              inputs.groups[val_index])
    if config.protocol == "lodo":
        result["held_out"] = inputs.source_names[fold]
    return result


# The seed index of a final model (every fold index is below 50, see RunConfig.validate).
FINAL_SEED_INDEX = 1000


def train_final(config: RunConfig, inputs: FoldInputs, *, model_path: Path, report=None) -> dict:
    """Train one model on every image of the run, as a fold trains on its training part
    (the same augmentation under the same protocol), and save it; nothing is validated.

    A CNN's per-epoch history is then measured on the training images themselves.
    """
    from leukdash.engine.augment import expand

    started = time.perf_counter()
    rows = training_rows(config, inputs, np.arange(len(inputs.labels)), FINAL_SEED_INDEX)
    images, labels = (inputs.images, inputs.labels) if len(rows) == len(inputs.labels) else \
        (inputs.images[rows], inputs.labels[rows])
    augmented = config.augment_factor > 1 and bool(config.augment.enabled())
    if augmented and (config.protocol == "paper" or not config.is_cnn):  # expanded once, as run_fold does
        images, labels, _ = expand(images, labels, config.augment_factor, config.augment,
                                   derived_seed(config.seed, FINAL_SEED_INDEX, 0))
        augmented = False
    if config.is_cnn:
        fitted = _train_cnn(config, FINAL_SEED_INDEX, len(inputs.classes), images, labels, inputs.images,
                            inputs.labels, augmented, report or (lambda event: None))
    else:
        fitted = _train_classic(config, FINAL_SEED_INDEX, inputs.classes, images, labels, inputs.images)
    model, _, train_acc, train_loss, _ = fitted
    _save_model(config, model, model_path)
    balanced = {"n_train_balanced": int(len(rows))} if config.balance_sources else {}
    return {"n_train": int(len(inputs.labels)), **balanced, "train_acc": float(train_acc),
            "train_loss": float(train_loss), "seconds": time.perf_counter() - started}


def training_rows(config: RunConfig, inputs: FoldInputs, rows: np.ndarray, fold: int) -> np.ndarray:
    """The rows a fold (or the final model, ``fold`` :data:`FINAL_SEED_INDEX`) trains on: ``rows``,
    resampled so that every source weighs the same when the config balances sources."""
    if not config.balance_sources or inputs.sources is None:
        return rows
    from leukdash.engine.sampling import balanced_rows

    return balanced_rows(rows, inputs.sources[rows], derived_seed(config.seed, fold, 3))


def _train_cnn(config, fold, n_classes, train_images, train_labels, val_images, val_labels, augmented, report):
    from leukdash.engine.augment import expand
    from leukdash.models import cnn

    def epoch_data(epoch: int):
        images, labels, _ = expand(train_images, train_labels, config.augment_factor, config.augment,
                                   derived_seed(config.seed, fold, 2, epoch))
        return images, labels

    def on_epoch(epoch: int, logs: dict) -> None:
        metrics = {name: round(float(value), 5) for name, value in logs.items()}
        report({"event": "epoch", "epoch": epoch + 1, "epochs": config.epochs, "metrics": metrics})

    model, history = cnn.train_cnn(
        train_images, train_labels, val_images, val_labels,
        n_classes=n_classes,
        architecture=config.architecture, optimizer=config.optimizer, learning_rate=config.learning_rate,
        epochs=config.epochs, batch_size=config.batch_size, seed=derived_seed(config.seed, fold),
        epoch_data=epoch_data if augmented else None, on_epoch=on_epoch,
    )
    proba = cnn.predict_proba(model, val_images)
    first, last = history["loss"][0], history["loss"][-1]
    # A uniform answer's loss is ln(classes); ten times it is a geometric-mean true-class probability of
    # classes^-10, which ordinary training never ends at: a model that answers one class with certainty, whether
    # its loss ran away over the epochs or was huge from the first (the only one with --epochs 1).
    exploded = last > 10 * math.log(n_classes)
    if exploded or not (np.isfinite(last) and np.isfinite(proba).all()):
        # A diverged model's answers are NaN or saturated, no measurement: said here, before it is saved.
        rate = config.learning_rate or cnn.default_learning_rate(config.architecture, config.optimizer)
        which = "the final model" if fold == FINAL_SEED_INDEX else f"fold {fold + 1}"
        what = ("loss not finite" if not np.isfinite(last) else "probabilities not finite" if not exploded
                else f"loss rose from {first:.3g} to {last:.3g}" if last > first else f"loss {last:.3g}")
        kept = "" if fold == FINAL_SEED_INDEX else "; finished folds are kept"
        raise RunRefused(f"{which}: the CNN's training diverged ({what}) at learning rate {rate:g}: give a "
                         f"lower --learning-rate{kept}")
    return model, proba, history["acc"][-1], history["loss"][-1], history


def _train_classic(config, fold, classes, train_images, train_labels, val_images):
    from leukdash.metrics import fold_metrics
    from leukdash.models import classic

    model = classic.make_classifier(config.model, config.feature_set, k=config.k,
                                    seed=derived_seed(config.seed, fold))
    # Fewer folds give each fold a larger training part, except at the fewest (2) or with one holdout split.
    fewer_folds_help = fold != FINAL_SEED_INDEX and config.test_fraction is None and config.protocol != "lodo" \
        and config.folds > 2
    scaled = classic.fit(model, featurize_blocks(train_images, config.feature_set), train_labels, classes,
                         fewer_folds_help)
    # Training accuracy and loss are scored exactly as validation is, on the training set.
    on_train = fold_metrics(train_labels, classic.predict_all_classes(model.named_steps["classify"], scaled,
                                                                      len(classes)), classes)
    del scaled
    proba = classic.predict_all_classes(model, featurize_blocks(val_images, config.feature_set), len(classes))
    return model, proba, on_train["val_acc"], on_train["val_loss"], None


class Rows:
    """Some rows of an image array, not copied: ``len``, ``[a:b]`` (a copy of those rows only)
    and :meth:`copy` (all of them)."""

    def __init__(self, images: np.ndarray, index: np.ndarray):
        self.images, self.index = images, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, block: slice) -> np.ndarray:
        return self.images[self.index[block]]

    def copy(self) -> np.ndarray:
        return self.images[self.index]

    @staticmethod
    def copy_of(images) -> np.ndarray:
        return images.copy() if isinstance(images, Rows) else images


def featurize_blocks(images, feature_set: str) -> np.ndarray:
    """:func:`featurize_cached` of ``images`` (an array or :class:`Rows`), ``BLOCK_ROWS`` at a
    time into one matrix: neither a copy of all the images nor a list of blocks is held."""
    from leukdash.models.classic import BLOCK_ROWS

    features = None
    for start in range(0, len(images), BLOCK_ROWS):
        block = featurize_cached(images[start:start + BLOCK_ROWS], feature_set)
        if features is None:
            features = np.empty((len(images), block.shape[1]), block.dtype)
        features[start:start + len(block)] = block
    return features


def featurize_cached(images: np.ndarray, feature_set: str) -> np.ndarray:
    """:func:`leukdash.models.classic.featurize`, with engineered features cached on disk.

    The four classic models of a comparison featurize the same images of each fold (the same
    augmented copies too: they are seeded by run seed and fold, not by model), and engineered
    features cost ~13 ms an image. The key is the images' content and the engine version, so a
    cached matrix is only ever reused for identical input. Raw pixels are cheaper to recompute
    than to read back and are not cached.
    """
    from leukdash import ENGINE_VERSION
    from leukdash.models import classic

    if feature_set != "features":
        return classic.featurize(images, feature_set)
    images = np.ascontiguousarray(images)
    digest = hashlib.sha1(f"{images.shape}{images.dtype}{ENGINE_VERSION}".encode())
    digest.update(images.data)
    cache = artifacts_root() / "cache" / "features" / f"{digest.hexdigest()}.npy"
    if cache.is_file():
        try:
            features = np.load(cache, allow_pickle=False)
            if features.ndim == 2 and len(features) == len(images):
                return features
        except (OSError, ValueError, EOFError):
            pass  # damaged or unreadable: computed again and rewritten below
    features = classic.featurize(images, feature_set)
    write_cache(cache, lambda tmp: np.save(tmp, features))
    return features


def _save_model(config: RunConfig, model, path: Path) -> None:
    """Save a model whole or not at all (a final model is saved straight into the store)."""
    def save(tmp: Path) -> None:
        if config.is_cnn:
            from leukdash.models import cnn

            cnn.save_model(model, tmp)
        else:
            from leukdash.models import classic

            classic.save(model, tmp)
    write_atomic(path, save)

