"""The paper's experiments as data: the matrix of runs, its settings and the paper's figures.

:mod:`leukdash.reporting.reproduce` runs the matrix (as one sweep) and :mod:`leukdash.reporting.report` writes
the report on its outcomes; both import this module, neither imports the other.

The matrix (see :func:`experiments`): Exp 1 (ALL vs HEALTHY, no augmentation, one 80/20
split), Exp 2 (ALL vs HEALTHY, augmentation, 5-fold), Exp 3a-c (five classes: SGD 25 epochs,
SGD 100 epochs, Adam 25 epochs), each with the paper's CNN under both protocols; the stronger
``leukdash`` CNN in Exp 1, Exp 2 and the five-class experiments of ``Settings.leukdash_five``
(both protocols); Exp 4 (naive Bayes, SVM, 3-NN, decision
tree on raw pixels and on engineered features, both tasks, on the x8 set, both protocols).
"""

from __future__ import annotations

from dataclasses import dataclass

from leukdash.config import AugmentConfig, RunConfig

BINARY_CLASSES = ("ALL", "HEALTHY")
REAL_BINARY = "allidb2_ufpr"
FIVE_CLASS_DEFAULT = "synthetic"
CLASSIC_MODELS = ("nb", "svm", "knn", "dt")
REPORT_NAME = "REPORT.md"


@dataclass(frozen=True)
class PaperFigures:
    """What the paper reports for one experiment (fractions; ``None`` where it gives nothing)."""

    train_acc: float | None = None
    val_acc: float | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    folds: tuple[float, ...] = ()


def _paper_cnn_figures() -> dict[str, PaperFigures]:
    from leukdash.reporting.paper import BINARY_TASK, FIVE_CLASS_TASK, PAPER_CNN_FOLDS, PAPER_TABLE2

    folds = {"2": PAPER_CNN_FOLDS[BINARY_TASK], "3a": PAPER_CNN_FOLDS[FIVE_CLASS_TASK]}
    return {exp: PaperFigures(*figures, folds=folds.get(exp, ())) for exp, figures in PAPER_TABLE2.items()}


def _paper_classic_figures(task: str, model: str) -> PaperFigures:
    from leukdash.reporting.paper import BINARY_TASK, FIVE_CLASS_TASK, PAPER_VAL_ACC

    return PaperFigures(val_acc=PAPER_VAL_ACC[BINARY_TASK if task == "binary" else FIVE_CLASS_TASK][model])


@dataclass(frozen=True)
class Experiment:
    """One run of the matrix: the paper's experiment it stands for, its config, the paper's figures.

    ``exp`` is the paper's experiment ("1", "2", "3a", "3b", "3c", "4"); ``task`` is
    ``"binary"`` (ALL vs HEALTHY) or ``"five"`` (five classes). ``paper`` is ``None`` for runs
    the paper has no figure for (the leukdash CNN).
    """

    exp: str
    title: str
    task: str
    config: RunConfig
    paper: PaperFigures | None

    @property
    def id(self) -> str:
        """A stable, readable key, e.g. ``2-cnn-paper-strict`` or ``4-binary-svm-features``."""
        c = self.config
        if c.is_cnn:
            protocol = c.protocol if c.augment_factor > 1 else "none"
            return f"{self.exp}-cnn-{c.architecture}-{protocol}"
        return f"{self.exp}-{self.task}-{c.model}-{c.feature_set}-{self.protocol}"

    @property
    def protocol(self) -> str:
        """The protocol, or "n/a" when nothing is augmented (both protocols are then one split)."""
        return self.config.protocol if self.config.augment_factor > 1 else "n/a"


@dataclass(frozen=True)
class Settings:
    """Sizes and lengths of the matrix: the full report's, or cheaper ones (``QUICK``, tests).

    The paper does not state its input size. The binary task runs at 64 px; the five-class
    task at 32 px, so that its 903 images x 8 (x 100 epochs in Exp 3b) fit the compute budget.
    """

    binary_size: int = 64
    five_size: int = 32
    augment_factor: int = 8
    folds: int = 5
    epochs: int = 25
    long_epochs: int = 100   # Exp 3b
    # The five-class experiments the leukdash CNN runs in (both protocols): the compute budget.
    leukdash_five: tuple[str, ...] = ("3a", "3c")


FULL = Settings()
QUICK = Settings(binary_size=32, five_size=32, augment_factor=2, folds=2, epochs=3, long_epochs=6)


def experiments(binary: str = REAL_BINARY, five_class: str = FIVE_CLASS_DEFAULT,
                settings: Settings = FULL) -> list[Experiment]:
    """The matrix, in the order it is run: the headline runs first (ALL vs HEALTHY, strict),
    then the rest, cheap before expensive, so an interrupted full run leaves the most useful
    report. The report groups the runs by experiment, whatever this order."""
    s = settings
    paper = _paper_cnn_figures()
    binary_base = RunConfig(dataset=binary, classes=BINARY_CLASSES, image_size=s.binary_size,
                            augment_factor=s.augment_factor, folds=s.folds, epochs=s.epochs)
    five_base = RunConfig(dataset=five_class, image_size=s.five_size, augment_factor=s.augment_factor,
                          folds=s.folds, epochs=s.epochs)

    def cnn(exp, title, task, base, architectures, protocols=("paper", "strict"), **changes):
        return [Experiment(exp, title, task, base.with_changes(architecture=arch, protocol=protocol, **changes),
                           paper[exp] if arch == "paper" else None)
                for arch in architectures for protocol in protocols]

    def classic(task, base, protocols=("paper", "strict")):
        # On the same x8 set as the CNN of Exp 2 / 3a, under both protocols. Engineered features
        # are cached by image content, so the four models share one extraction per fold.
        return [Experiment("4", f"{'ALL vs HEALTHY' if task == 'binary' else 'Five classes'}, classic models",
                           task, base.with_changes(model=model, feature_set=features, protocol=protocol),
                           _paper_classic_figures(task, model))
                for protocol in protocols for features in ("pixels", "features") for model in CLASSIC_MODELS]

    def last(experiments, heavy):
        # The SVM on the five classes' x8 raw pixels costs more than all other classic runs
        # together (kernel SVMs scale with the square of the training set): it runs at the end.
        return ([e for e in experiments if not heavy(e)], [e for e in experiments if heavy(e)])

    five_classic, five_svm_pixels = last(classic("five", five_base),
                                         lambda e: e.config.model == "svm" and e.config.feature_set == "pixels")

    exp1 = dict(augment_factor=1, augment=AugmentConfig.off(), test_fraction=0.2)
    titles = {"1": "ALL vs HEALTHY, no augmentation, one 80/20 split",
              "2": f"ALL vs HEALTHY, augmentation, {s.folds}-fold",
              "3a": "Five classes, SGD, 25 epochs", "3b": "Five classes, SGD, 100 epochs",
              "3c": "Five classes, Adam, 25 epochs"}
    five = {"3a": {}, "3b": {"epochs": s.long_epochs}, "3c": {"optimizer": "adam"}}

    def leukdash_five(protocol):
        return [e for exp in s.leukdash_five
                for e in cnn(exp, titles[exp], "five", five_base, ("leukdash",), (protocol,), **five[exp])]

    return [
        *cnn("1", titles["1"], "binary", binary_base, ("paper",), ("strict",), **exp1),
        *cnn("2", titles["2"], "binary", binary_base, ("paper",)),
        *classic("binary", binary_base),
        *cnn("1", titles["1"], "binary", binary_base, ("leukdash",), ("strict",), **exp1),
        *cnn("2", titles["2"], "binary", binary_base, ("leukdash",), ("strict",)),
        *cnn("3a", titles["3a"], "five", five_base, ("paper",)),
        *cnn("3c", titles["3c"], "five", five_base, ("paper",), **five["3c"]),
        *five_classic,
        *cnn("3b", titles["3b"], "five", five_base, ("paper",), ("strict",), **five["3b"]),
        *cnn("2", titles["2"], "binary", binary_base, ("leukdash",), ("paper",)),
        *leukdash_five("strict"),
        *cnn("3b", titles["3b"], "five", five_base, ("paper",), ("paper",), **five["3b"]),
        *leukdash_five("paper"),
        *five_svm_pixels,
    ]


@dataclass
class Outcome:
    """An experiment and its finished run (``None`` when it has not been computed)."""

    experiment: Experiment
    result: dict | None
