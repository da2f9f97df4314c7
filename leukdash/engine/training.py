"""One fold of a run: split, augment as the protocol says, train, evaluate.

``run_fold`` is a pure function of (config, fold inputs, fold): everything random in it is
seeded from (seed, fold, ...), so a fold computed again, in another process, order or machine,
is the same. Its inputs (:class:`~leukdash.engine.fold_planning.FoldInputs`: decoded images,
labels, fold plan) are prepared once per run by the process that owns the store
(:mod:`leukdash.engine.fold_planning`), so a worker needs no access to the dataset.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import numpy as np

from leukdash.atomic import write_atomic
from leukdash.config import RunConfig
from leukdash.errors import RunRefused
from leukdash.data.arrays import write_cache
from leukdash.engine.fold_planning import FoldInputs, training_part
from leukdash.paths import artifacts_root


def model_suffix(config: RunConfig) -> str:
    """A model file's suffix: a Keras archive, or a classic pipeline in skops (see :func:`classic.save`)."""
    return "keras" if config.is_cnn else "skops"


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
    from leukdash.models.classic import reversed_calibration

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
    if not config.is_cnn and reversed_calibration(model):
        result["calibration_reversed"] = True  # said with the run's figures (compare.calibration_note)
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
    from leukdash.models import classic, cnn

    # Identical images tell no class apart: the CNN would answer alike for all, refused as a classic model's
    # fit is. Compared by their pixelwise extremes, image-sized, not by a copy of the set.
    if np.array_equal(train_images.min(axis=0), train_images.max(axis=0)):
        raise classic.identical_inputs(len(train_images))

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

    if feature_set != "features":
        from leukdash.models import classic

        return classic.featurize(images, feature_set)
    # the descriptors alone (OpenCV): the checks' description of a run's images, computed as a run
    # finishes in the process that runs no fold, does not wait on importing scikit-learn (about a second)
    from leukdash.models.features import extract_features

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
    features = extract_features(images)
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

