"""Run and augmentation settings: frozen dataclasses, validation, and the canonical form.

The canonical form of a :class:`RunConfig` keeps only the fields that change what a run
computes, so two configs that differ only in an irrelevant field (say ``k`` for a CNN) share
one run id and one set of cached results.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace

from leukdash.errors import ConfigError
from leukdash.paths import one_form

MODELS = ("cnn", "nb", "svm", "knn", "dt")
CLASSIC_MODELS = ("nb", "svm", "knn", "dt")
ARCHITECTURES = ("paper", "leukdash")
OPTIMIZERS = ("sgd", "adam")
# lodo: leave one dataset out, for a run on several datasets (one fold per source held out).
PROTOCOLS = ("strict", "paper", "lodo")
# The paper CNN: (size - 2) // 2, then (that - 2) // 2, must leave at least one pixel.
PAPER_CNN_MIN_SIZE = 10
# The smallest normal float32: Keras holds the learning rate as float32, where a smaller one is 0
# (it never trains) or a subnormal of few significant bits.
FLOAT32_TINY = 2.0 ** -126
FEATURE_SETS = ("pixels", "features")
FILL_MODES = ("nearest", "reflect", "constant")
# Below this sigma (pixels) a blur changes nothing visible: augmentation skips it, so a blur range
# that reaches no further draws numbers and blurs nothing.
MIN_BLUR_SIGMA = 0.1
# Cell-level preprocessing (leukdash/data/preprocess.py): "raw" or "cell-<size>-<colour>".
PREPROCESS_SIZES = ("keep", "fit")
PREPROCESS_COLOURS = ("asis", "reinhard", "gray", "hematoxylin")
PREPROCESS_MODES = ("raw",) + tuple(f"cell-{size}-{colour}" for size in PREPROCESS_SIZES
                                    for colour in PREPROCESS_COLOURS)


@dataclass(frozen=True)
class AugmentConfig:
    """The paper's seven random transforms, and an eighth that is not in the paper (colour
    jitter, off by default); a magnitude of 0 (or False) switches one off.

    Defaults are the paper's: rotation 40 degrees, width and height shift 40%, zoom 30%,
    horizontal and vertical flips, shear 20 degrees, border filled from the nearest pixels.
    """

    rotation: float = 40.0
    width_shift: float = 0.4
    height_shift: float = 0.4
    zoom: float = 0.3
    horizontal_flip: bool = True
    vertical_flip: bool = True
    shear: float = 20.0
    fill_mode: str = "nearest"
    # Not in the paper: per-image brightness, red and blue gain and gamma, each drawn uniformly
    # within +- this share (stain and lamp variation between labs). Off by default.
    colour_jitter: float = 0.0
    # Not in the paper, off by default (robustness to another lab's stain and optics): each
    # stain's optical density (haematoxylin, eosin, DAB) scaled by a factor within +- this share,
    # and a Gaussian blur of sigma uniform in [0, blur] pixels.
    stain_jitter: float = 0.0
    blur: float = 0.0

    TRANSFORMS = (
        "rotation", "width_shift", "height_shift", "zoom", "horizontal_flip", "vertical_flip", "shear",
        "colour_jitter", "stain_jitter", "blur",
    )
    # Off unless asked for: left out of the canonical form when off, so older run ids stand.
    OPTIONAL = ("colour_jitter", "stain_jitter", "blur")

    @classmethod
    def off(cls) -> AugmentConfig:
        """A config with every transform switched off."""
        return cls(0.0, 0.0, 0.0, 0.0, False, False, 0.0)

    def __post_init__(self):
        _plain_numbers(self)
        _floats(self, ("rotation", "width_shift", "height_shift", "zoom", "shear", "colour_jitter", "stain_jitter",
                       "blur"))

    def enabled(self) -> tuple[str, ...]:
        """Names of the transforms that are switched on, in the paper's order."""
        return tuple(name for name in self.TRANSFORMS if getattr(self, name))

    def validate(self) -> None:
        limits = {"rotation": 180.0, "width_shift": 1.0, "height_shift": 1.0, "zoom": 0.9, "shear": 60.0,
                  "colour_jitter": 0.5, "stain_jitter": 0.5, "blur": 3.0}
        for name, upper in limits.items():
            value = getattr(self, name)
            if not is_number(value) or not 0 <= value <= upper:
                raise ConfigError(f"augment.{name} must be a number between 0 and {upper:g}, got {value!r}")
        for name in ("horizontal_flip", "vertical_flip"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"augment.{name} must be true or false, got {getattr(self, name)!r}")
        if 0 < self.blur <= MIN_BLUR_SIGMA:
            raise ConfigError(f"augment.blur {self.blur:g} blurs nothing (a sigma below {MIN_BLUR_SIGMA:g} px is "
                              f"skipped): give 0 (off) or more than {MIN_BLUR_SIGMA:g}")
        if self.fill_mode not in FILL_MODES:
            raise ConfigError(f"augment.fill_mode must be one of {', '.join(FILL_MODES)}, got {self.fill_mode!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> AugmentConfig:
        return _from_dict(cls, values, "augmentation")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one cross-validated run of one model on one dataset."""

    dataset: str = "synthetic"
    classes: tuple[str, ...] | None = None
    image_size: int = 64
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    augment_factor: int = 8
    protocol: str = "strict"
    model: str = "cnn"
    architecture: str = "paper"
    optimizer: str = "sgd"
    learning_rate: float | None = None
    epochs: int = 25
    batch_size: int = 32
    feature_set: str = "pixels"
    k: int = 3
    folds: int = 5
    test_fraction: float | None = None
    seed: int = 0
    # How images enter the models (leukdash/data/preprocess.py): "raw", the paper's, or a cell-level mode.
    preprocess: str = "raw"
    # A run on several datasets: resample each training part so every dataset weighs the same
    # (leukdash/engine/sampling.py). Off: the datasets are pooled as they are.
    balance_sources: bool = False

    def __post_init__(self):
        _plain_numbers(self)
        _floats(self, ("learning_rate", "test_fraction"))
        # Lists from JSON or a UI become tuples, so configs stay hashable and compare equal.
        if isinstance(self.classes, list):
            object.__setattr__(self, "classes", tuple(self.classes))
        if isinstance(self.classes, tuple):  # a class typed in either Unicode form is one class, and one run
            object.__setattr__(self, "classes", tuple(one_form(c) if isinstance(c, str) else c for c in self.classes))
        if isinstance(self.augment, dict):
            object.__setattr__(self, "augment", AugmentConfig.from_dict(self.augment))
        if isinstance(self.dataset, os.PathLike):  # a folder given as a Path (from Python): its path
            object.__setattr__(self, "dataset", os.fspath(self.dataset))
        # Several datasets are one comma-separated string, in name order: the same run either way.
        if isinstance(self.dataset, str) and len(dataset_parts(self.dataset)) > 1:
            object.__setattr__(self, "dataset", ",".join(sorted(dataset_parts(self.dataset))))

    @property
    def is_cnn(self) -> bool:
        return self.model == "cnn"

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        _choice("model", self.model, MODELS)
        _choice("protocol", self.protocol, PROTOCOLS)
        _choice("architecture", self.architecture, ARCHITECTURES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("feature_set", self.feature_set, FEATURE_SETS)
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError("dataset must be a dataset name or a folder path")
        if self.classes is not None:
            if isinstance(self.classes, tuple) and any(isinstance(c, str) and not c.strip() for c in self.classes):
                raise ConfigError(f"classes holds an empty name (a comma too many?): {list(self.classes)}")
            if not isinstance(self.classes, tuple) or not all(isinstance(c, str) and c for c in self.classes):
                raise ConfigError(f"classes must be a list of class names, got {self.classes!r}")
            twice = sorted({c for c in self.classes if self.classes.count(c) > 1})
            if twice:
                raise ConfigError(f"classes names {', '.join(twice)} more than once: {list(self.classes)}")
            if len(self.classes) < 2:
                raise ConfigError(f"classes must name at least 2 distinct classes, got {list(self.classes)}")
        _int_range("image_size", self.image_size, 8, 512)
        if self.is_cnn and self.architecture == "paper" and self.image_size < PAPER_CNN_MIN_SIZE:
            raise ConfigError(f"image_size must be at least {PAPER_CNN_MIN_SIZE} for the paper CNN (its two 3x3 "
                              f"convolutions and 2x2 poolings leave nothing of a smaller image), got {self.image_size}")
        _int_range("augment_factor", self.augment_factor, 1, 64)
        _int_range("epochs", self.epochs, 1, 1000)
        _int_range("batch_size", self.batch_size, 1, 4096)
        _int_range("k", self.k, 1, 100)
        _int_range("folds", self.folds, 2, 50)
        _int_range("seed", self.seed, 0, 2**31 - 1)
        if self.learning_rate is not None and not (
            is_number(self.learning_rate) and 0 < self.learning_rate <= 10
            and math.isfinite(self.learning_rate)
        ):
            raise ConfigError(f"learning_rate must be a positive number (at most 10), got {self.learning_rate!r}")
        if self.learning_rate is not None and self.learning_rate < FLOAT32_TINY:
            raise ConfigError(f"learning_rate {self.learning_rate:g} is below {FLOAT32_TINY:.3g}, the smallest normal "
                              "float32 the CNN computes in (a smaller one is 0 there and trains nothing): "
                              "give a larger one")
        if self.test_fraction is not None and not (
            is_number(self.test_fraction) and 0.05 <= self.test_fraction <= 0.5
        ):
            raise ConfigError(f"test_fraction must be between 0.05 and 0.5, got {self.test_fraction!r}")
        if self.test_fraction is not None and abs(1 / round(1 / self.test_fraction) - self.test_fraction) > 0.005:
            k = 1 / self.test_fraction  # the holdout is one of k grouped folds: only 1/k can be drawn
            raise ConfigError(f"test_fraction must be 1/k, the holdout being one of k grouped folds (0.5, 0.333, "
                              f"0.25, 0.2, ... 0.05), got {self.test_fraction!r}: the nearest are "
                              f"{1 / math.ceil(k):.3g} and {1 / math.floor(k):.3g}")
        if self.protocol == "lodo" and len(dataset_parts(self.dataset)) < 2:
            raise ConfigError("protocol lodo (leave one dataset out) needs several datasets, e.g. allidb2_ufpr,cnmc_dev")
        if self.protocol == "lodo" and self.test_fraction is not None:
            raise ConfigError("protocol lodo holds out each dataset in turn: test_fraction does not apply")
        if not isinstance(self.augment, AugmentConfig):
            raise ConfigError("augment must be an augmentation config")
        self.augment.validate()
        _choice("preprocess", self.preprocess, PREPROCESS_MODES)
        if not isinstance(self.balance_sources, bool):
            raise ConfigError(f"balance_sources must be true or false, got {self.balance_sources!r}")
        if self.balance_sources and len(dataset_parts(self.dataset)) < 2:
            raise ConfigError("balance_sources evens out the datasets of a run on several datasets, e.g. "
                              "allidb2_ufpr,cnmc_dev: this run has one")

    def canonical(self) -> dict:
        """The fields that change the result, normalised; the dataset enters by fingerprint.

        Fields irrelevant to the model are dropped; without augmentation (factor 1 or no
        transform on) the augmentation settings and the protocol make no difference either.
        """
        values = asdict(self)
        del values["dataset"]
        values["classes"] = list(self.classes) if self.classes else None
        augmented = self.augment_factor > 1 and bool(self.augment.enabled())
        if not augmented:
            values["augment"] = None
            values["augment_factor"] = 1
            if self.protocol == "paper":  # without copies the paper protocol is the strict one
                values["protocol"] = "strict"
        else:
            for name in AugmentConfig.OPTIONAL:  # off: runs from before it existed keep their ids
                if not getattr(self.augment, name):
                    del values["augment"][name]
        if self.protocol == "lodo":
            values.pop("folds", None)  # one fold per dataset
        if self.is_cnn:
            for name in ("feature_set", "k"):
                del values[name]
        else:
            for name in ("architecture", "optimizer", "learning_rate", "epochs", "batch_size"):
                del values[name]
            if self.model != "knn":
                del values["k"]
        if self.test_fraction is not None:
            del values["folds"]
        if self.preprocess == "raw":
            del values["preprocess"]  # so that runs from before preprocessing keep their ids
        if not self.balance_sources:
            del values["balance_sources"]  # likewise for runs from before source balancing
        return values

    def to_dict(self) -> dict:
        values = asdict(self)
        values["classes"] = list(self.classes) if self.classes else None
        return values

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        return _from_dict(cls, values, "run")

    def with_changes(self, **changes) -> RunConfig:
        return replace(self, **changes)


def setting_form(config: RunConfig) -> dict:
    """A config's settings as runs are compared by them: its canonical form, with the raw preprocessing and
    pooled sources it leaves out (so that older run ids hold) put back."""
    return {"preprocess": config.preprocess, "balance_sources": config.balance_sources, **config.canonical()}


def differing_settings(configs: list[RunConfig]) -> list[str]:
    """The settings that differ between configs (see :func:`setting_form`), in config order; the
    architecture counts as part of the model."""
    forms = [setting_form(config) for config in configs]
    keys = dict.fromkeys(key for form in forms for key in form)
    # A setting some models lack (k of all but k-NN) differs only if it takes two values where it exists.
    axes = [key for key in keys if len({json.dumps(form[key], sort_keys=True) for form in forms if key in form}) > 1]
    return list(dict.fromkeys("model" if axis == "architecture" else axis for axis in axes))


def dataset_parts(spec: str) -> list[str]:
    """The datasets a dataset string names: a path that exists as a folder is one dataset, commas
    in it or not; anything else is a comma-separated list of names or folders."""
    if os.path.isdir(os.path.expanduser(spec)):
        return [spec]
    return [part.strip() for part in spec.split(",") if part.strip()]


def stable_hash(value, length: int = 12) -> str:
    """A short sha256 of a JSON-serialisable value, independent of key order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _from_dict(cls, values: dict, what: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{what} settings must be a JSON object, got {type(values).__name__}")
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise ConfigError(f"unknown {what} setting(s): {', '.join(sorted(unknown))}")
    return cls(**values)


def _plain_numbers(config) -> None:
    """Make numpy numbers (a notebook's ``np.arange``, a DataFrame cell) the Python numbers they
    hold, so that ``np.int64(32)`` is the setting ``32`` and the run it names."""
    for item in fields(config):
        value = getattr(config, item.name)
        # A numpy scalar told by its module, not isinstance: the store imports this module, and only
        # the standard library.
        if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
            plain = value.item()
            if isinstance(plain, float) and value.itemsize < 8:
                # A numpy float32 (a cell of a float32 column) holds 0.1 as 0.10000000149...: the number
                # given is its shortest text, which numpy writes.
                plain = float(str(value))
            if isinstance(plain, (bool, int, float)):
                object.__setattr__(config, item.name, plain)


def _floats(config, names: tuple[str, ...]) -> None:
    """Make the values of number fields clean floats: the same settings must be the same run.

    JSON's ``40`` is the ``40.0`` the command line and the dashboard give, and a value computed
    (``7 * 0.1`` is 0.7000000000000001) is the one typed: kept to 12 significant digits, which
    every value typed with fewer keeps exactly, and far more than any setting means. The stored
    config, the transform applied and the run id then all see the clean value. Other types are
    left for :meth:`validate` to refuse."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2 ** 53:  # exactly a float
            value = float(value)
        if isinstance(value, float):
            value = float(f"{value:.12g}")
            object.__setattr__(config, name, 0.0 if value == 0 else value)  # -0.0 is 0: off, as 0 is


def is_number(value) -> bool:
    """An int or a float, not a bool (which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _choice(name: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _int_range(name: str, value, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer from {low} to {high}, got {value!r}")
