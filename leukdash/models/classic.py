"""The paper's classic classifiers as scikit-learn pipelines on pixels or engineered features.

Every pipeline standardises its input first. The paper's SVM sat at chance level, which is what
an RBF kernel does on unscaled raw pixels (all distances huge, every kernel value ~0); scaling
is part of a sensible SVM, not a change of method. Naive Bayes, k-NN and the tree see the same
scaled input (the tree and Naive Bayes are unaffected by it, k-NN needs it).
"""

from __future__ import annotations

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from leukdash.config import CLASSIC_MODELS, FEATURE_SETS
from leukdash.errors import ConfigError, RunRefused, UntrustedModel, raise_interrupt_behind
from leukdash.models.features import extract_features, pixel_features
from leukdash.models.kernel_svm import KernelSVC
from leukdash.paths import error_line

# Folds of the SVM's probability calibration (Platt scaling on cross-validated decision values).
CALIBRATION_FOLDS = 3

# Raw-pixel input is resized to this side: 32x32x3 = 3,072 values keeps the SVM quick.
PIXEL_SIZE = 32
# Rows featurized or scored at once: temporaries of 2,048 rows (tens of MB), whatever the dataset's
# size. Every step works row by row, so the result does not depend on it.
BLOCK_ROWS = 2048


def make_classifier(model: str, feature_set: str, k: int = 3, seed: int = 0) -> Pipeline:
    """A fresh, unfitted pipeline ``scale -> classifier`` with ``predict_proba``.

    Parameters
    ----------
    model : "nb" | "svm" | "knn" | "dt"
    feature_set : "pixels" | "features"
        Only checked here; the pipeline is the same for both (see :func:`featurize`).
    k : int
        Neighbours of k-NN.
    seed : int
        Random state of the tree (the other models are deterministic).
    """
    if model not in CLASSIC_MODELS:
        raise ConfigError(f"model must be one of {', '.join(CLASSIC_MODELS)}, got {model!r}")
    if feature_set not in FEATURE_SETS:
        raise ConfigError(f"feature_set must be one of {', '.join(FEATURE_SETS)}, got {feature_set!r}")
    classifiers = {
        "nb": lambda: GaussianNB(),
        # SVC(kernel="rbf", C=10, gamma="scale") computed from its Gram matrix (same model, same
        # predictions, ~9x faster on an ALL-IDB2 pixel fold: see kernel_svm); gamma="scale" adapts the kernel
        # width to the number of inputs (pixels or features).
        # Platt-scaled probabilities from cross-validated decision values: what
        # SVC(probability=True) did before scikit-learn 1.9 deprecated it. Three folds
        # keep it usable with few images per class (two where a class has only two: see fit).
        "svm": lambda: CalibratedClassifierCV(KernelSVC(C=10.0), method="sigmoid", cv=CALIBRATION_FOLDS,
                                              ensemble=False),
        "knn": lambda: KNeighborsClassifier(n_neighbors=k),
        "dt": lambda: DecisionTreeClassifier(random_state=seed),
    }
    return Pipeline([("scale", StandardScaler()), ("classify", classifiers[model]())])


def featurize(images: np.ndarray, feature_set: str) -> np.ndarray:
    """The input matrix of a classic model: raw pixels or engineered cell descriptors."""
    if feature_set == "pixels":
        return pixel_features(images, PIXEL_SIZE)
    if feature_set == "features":
        return extract_features(images)
    raise ConfigError(f"feature_set must be one of {', '.join(FEATURE_SETS)}, got {feature_set!r}")


# The types skops does not trust by default that the pipelines above are made of (checked with
# skops.io.get_untrusted_types on every model on pixels and on features). A model file is loaded
# only as these: any other type in it (a forged or foreign file) is refused before it is built.
TRUSTED_TYPES = ("leukdash.models.classic._PackedNeighbours", "leukdash.models.kernel_svm.KernelSVC",
                 "sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration",
                 "sklearn.tree._tree.Tree")
# The suffix of the pickles earlier versions wrote (loaded only by `trust-models`, which converts them).
LEGACY_SUFFIX = ".joblib"


def save(model: Pipeline, path) -> None:
    """Write a fitted pipeline with skops (compressed), which loads back only the types it is told to trust.

    A k-NN on raw pixels keeps its whole scaled training set as float32 (about 20 MB per fold at
    x8 augmentation). Those values are the training pixels, uint8 at ``PIXEL_SIZE``, divided
    by 255 and scaled: they are stored as those uint8 pixels and rebuilt on :func:`load` by the
    same arithmetic, bit for bit (checked before anything is dropped), so predictions are
    unchanged.
    """
    import zipfile

    import skops.io

    skops.io.dump(_packed(model), path, compression=zipfile.ZIP_DEFLATED)


def load(path, run_id: str) -> Pipeline:
    """A pipeline written by :func:`save`, in run ``run_id``'s store.

    Raises
    ------
    UntrustedModel
        When the file holds a type :func:`save` never writes, or only a pickle of an earlier
        version lies there (loading either could run code). Nothing is moved: it is not damage.
    """
    import skops.io
    from pathlib import Path

    path = Path(path)
    legacy = path.with_suffix(LEGACY_SUFFIX)
    if not path.exists() and legacy.is_file():
        raise UntrustedModel(f"run {run_id}: models/{legacy.name} is a pickle written by an earlier leukdash "
                             "version, and loading a pickle runs any code it holds; if you trust this store, "
                             f"`python -m leukdash trust-models {run_id}` converts it")
    try:
        untrusted = sorted(set(skops.io.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
        if not untrusted:
            model = skops.io.load(path, trusted=list(TRUSTED_TYPES))
    except (MemoryError, OSError):
        raise  # the file may be sound: said by the caller (short of memory, unreadable)
    except Exception as error:  # noqa: BLE001 - skops reading a malformed file raises many kinds
        raise_interrupt_behind(error)
        raise UntrustedModel(f"run {run_id}: models/{path.name} is not a model file leukdash wrote (forged or "
                             f"damaged by hand: {error_line(error)}), so it is not used: remove the run unless "
                             "you know where the file came from") from None
    if untrusted:
        raise UntrustedModel(f"run {run_id}: models/{path.name} holds {', '.join(untrusted)}, a type leukdash "
                             "never writes, so it is not loaded (it may run code): remove the run unless you "
                             "know where the file came from")
    return _unpacked(_checked(model, run_id, path.name))


# The classifiers make_classifier builds: a pipeline is loaded only as ("scale", StandardScaler) then one of these.
_CLASSIFIERS = (GaussianNB, CalibratedClassifierCV, KNeighborsClassifier, DecisionTreeClassifier)


def _checked(model, run_id: str, name: str):
    """``model`` when it is what :func:`save` writes. skops trusts many types by default (lists, any
    scikit-learn estimator): a file of them runs no code, but is no leukdash model either and would
    fail on its first use with a traceback."""
    packed = type(model) is _PackedNeighbours
    pipeline = getattr(model, "pipeline", None) if packed else model
    steps = getattr(pipeline, "steps", None) if type(pipeline) is Pipeline else None
    steps = steps if isinstance(steps, list) else []
    kinds = [(step[0], type(step[1])) for step in steps if isinstance(step, tuple) and len(step) == 2]
    classifiers = (KNeighborsClassifier,) if packed else _CLASSIFIERS
    pixels = not packed or isinstance(getattr(model, "pixels", None), np.ndarray)
    if not (len(kinds) == len(steps) == 2 and kinds[0] == ("scale", StandardScaler) and kinds[1][0] == "classify"
            and kinds[1][1] in classifiers and pixels):
        raise UntrustedModel(f"run {run_id}: models/{name} holds a {type(model).__name__} that is not a model "
                             "leukdash writes, so it is not used: remove the run unless you know where the file "
                             "came from")
    return model


def load_pickle(path) -> Pipeline:
    """A pipeline an earlier version pickled with joblib. Runs any code the file holds: only for
    `trust-models`, on the user's word that the store is trusted."""
    import joblib

    return _unpacked(joblib.load(path))


def _unpacked(model) -> Pipeline:
    return model.unpack() if isinstance(model, _PackedNeighbours) else model


class _PackedNeighbours:
    """A fitted scale -> k-NN pipeline without its float training set, plus that set as uint8 pixels."""

    def __init__(self, pipeline: Pipeline, pixels: np.ndarray):
        self.pipeline, self.pixels = pipeline, pixels

    def unpack(self) -> Pipeline:
        self.pipeline.named_steps["classify"]._fit_X = self._rebuilt(self.pipeline, self.pixels)
        return self.pipeline

    @staticmethod
    def _rebuilt(pipeline: Pipeline, pixels: np.ndarray) -> np.ndarray:
        return pipeline.named_steps["scale"].transform(pixels.astype(np.float32) / np.float32(255.0))


def _packed(model: Pipeline):
    """``model``, or a :class:`_PackedNeighbours` when its training set is exactly uint8 pixels."""
    import copy

    classify = model.named_steps.get("classify")
    fitted = getattr(classify, "_fit_X", None)
    if not isinstance(classify, KNeighborsClassifier) or getattr(classify, "_fit_method", None) != "brute" \
            or not isinstance(fitted, np.ndarray) or fitted.dtype != np.float32:
        return model
    unscaled = model.named_steps["scale"].inverse_transform(fitted) * 255.0
    pixels = np.clip(np.rint(unscaled), 0, 255).astype(np.uint8)
    if not np.array_equal(_PackedNeighbours._rebuilt(model, pixels), fitted):
        return model  # not pixels divided by 255 (say, engineered features): stored as is
    light = copy.copy(model)
    light.steps = [(name, copy.copy(step)) for name, step in model.steps]
    light.named_steps["classify"]._fit_X = None
    return _PackedNeighbours(light, pixels)


def adapted(model: Pipeline, features: np.ndarray) -> Pipeline:
    """Fitted pipeline ``model`` with its scaler refitted on ``features``, one lab's images: their
    own means and spreads in place of the training set's; the classifier is the same object.

    Another lab's stain, lamp and camera shift every colour and texture descriptor; a classifier
    fed them through the training set's scaler sees all of them off-centre and can give every
    image one class. Standardising them on the new images themselves (no label is used) puts
    them back where the classifier learnt its boundaries, as batch-normalisation statistics are
    re-estimated on a new domain (AdaBN; Li et al., 2016). It assumes the images hold a class
    mix like the training set's: on a set of one class it would remove part of the signal.
    """
    return Pipeline([("scale", StandardScaler().fit(features)), ("classify", model.named_steps["classify"])])


def predict_all_classes(model, features: np.ndarray, n_classes: int) -> np.ndarray:
    """``model.predict_proba`` with one column per class of the dataset, in class order; a
    class the model never saw in training gets probability 0. Scored ``BLOCK_ROWS`` rows at a
    time, so the scaled copy and the models' temporaries are of one block, not of the matrix."""
    full = np.zeros((len(features), n_classes), dtype=np.float64)
    for start in range(0, len(features), BLOCK_ROWS):
        block = features[start:start + BLOCK_ROWS]
        full[start:start + len(block), model.classes_] = model.predict_proba(block)
    return full


def fit(model: Pipeline, features: np.ndarray, labels: np.ndarray, classes=None,
        fewer_folds_help: bool = False) -> np.ndarray:
    """``model.fit(features, labels)`` for a pipeline of :func:`make_classifier`, with
    ``features`` scaled in place rather than copied; returns them, scaled, to score the training
    set with the fitted classifier alone (``model.named_steps["classify"]``).

    The scaler learns its means and variances ``BLOCK_ROWS`` rows at a time (its float64
    temporaries are one block's, not a copy of the matrix at twice its size): exactly ``fit``
    up to that many rows, the same up to float64 rounding beyond. ``classes`` names the labels in
    what is refused; ``fewer_folds_help`` says whether fewer folds would give a fold more training
    inputs (not at the fewest folds, nor for a final model), so that the refusal advises them.
    """
    scaler = model.named_steps["scale"]
    scaler.fit(features[:BLOCK_ROWS])
    for start in range(BLOCK_ROWS, len(features), BLOCK_ROWS):
        scaler.partial_fit(features[start:start + BLOCK_ROWS])
    if not np.any(scaler.var_ > 0):
        # Nothing tells the images apart; naive Bayes would divide by a zero variance (NaN answers)
        # and the others would answer one class for all: a fit of nothing, refused in words.
        raise identical_inputs(len(features))
    scaled = scaler.transform(features, copy=False)
    classify = model.named_steps["classify"]
    if isinstance(classify, CalibratedClassifierCV):
        classify.set_params(cv=_calibration_folds(labels, classes, fewer_folds_help))
    classify.fit(scaled, labels)
    return scaled


def reversed_calibration(model: Pipeline) -> bool:
    """Whether a fitted pipeline's SVM has a probability calibration that reverses its decisions: a sigmoid of
    positive slope, fitted where the SVM's cross-validated decision values ran against the labels, gives the
    higher probability where the SVM's own decision is lower. It learnt nothing that holds on images it did not
    train on (noise, conflicting labels, a tiny training part). False for the other models."""
    classify = model.named_steps["classify"]
    if not isinstance(classify, CalibratedClassifierCV):
        return False
    return any(calibrator.a_ > 0 for fitted in classify.calibrated_classifiers_ for calibrator in fitted.calibrators)


def identical_inputs(n_inputs: int) -> RunRefused:
    """The refusal of a fold whose ``n_inputs`` training inputs are all the same (for any model: a classic
    pipeline's scaled features, a CNN's images), so that whatever it learnt would be a fit of nothing."""
    return RunRefused(f"the {n_inputs} training inputs of a fold (its images and their augmented copies) "
                      "are all the same for this model (copies of one picture, or pictures made alike by the "
                      "image size or preprocessing): nothing tells the classes apart; check the images")


def _calibration_folds(labels: np.ndarray, classes=None, fewer_folds_help: bool = False) -> int:
    """The SVM's calibration folds: ``CALIBRATION_FOLDS``, fewer where a class has fewer training
    inputs (each fold needs one of each class); a class with one cannot be calibrated."""
    present, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
        fewest = present[counts.argmin()]
        name = classes[fewest] if classes is not None else f"index {fewest}"
        raise RunRefused(f"a fold's training part holds 1 input of class {name}: "
                         "the SVM calibrates its probabilities on folds of the training part and needs at least 2 "
                         f"of each class; add images{', ' if fewer_folds_help else ' or '}augmentation copies "
                         f"(--augment-factor){' or use fewer folds' if fewer_folds_help else ''}")
    return int(min(CALIBRATION_FOLDS, counts.min()))
