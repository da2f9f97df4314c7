"""The errors leukdash raises for bad input: each message is one line naming what is wrong."""


class LeukdashError(Exception):
    """Base class of every error leukdash reports to a user."""


class ConfigError(LeukdashError):
    """A run or augmentation setting is invalid; the message names the field."""


class DatasetError(LeukdashError):
    """A dataset cannot be used as asked (missing, one class, too few images for the folds)."""


class ImageDecodeError(LeukdashError):
    """A file is not a readable image; the message says why."""


class ImageFormatError(ImageDecodeError):
    """A file is no image at all, or of a format this tool does not read: its type, not its content, is
    what is wrong (another file type is the remedy)."""


class RunError(LeukdashError):
    """A run cannot be found, resumed or used for prediction."""


class RunRefused(RunError):
    """A fold refused for its run's own settings (a CNN's training that diverges at its learning rate, a
    classic model's training part too small or all alike for it): computing it again, on any machine, fails
    alike, so a sweep goes on with its other runs; other settings are the remedy. Any other error of a fold
    (a full disk, an interrupted import, memory run out) stops every run."""


class UntrustedModel(RunError):
    """A model file leukdash will not load, as loading it could run code: a pickle of an earlier version
    (until `trust-models` converts it) or a file holding a type leukdash never writes. Not damage: it
    is left in place, for the user to decide."""


class RunsFailed(RunError):
    """Runs of several that were refused (:class:`RunRefused`), the others computed and stored.

    Attributes
    ----------
    errors : dict[str, LeukdashError]
        Each failed run's id and its error.
    reasons : list[str]
        One line per failed run: its id, what sets its settings apart and why it failed.
    total : int
        How many runs were asked for.
    lines : list[str]
        What to say: how many failed of how many (``of`` names what they belong to, say a sweep) and what to
        do, then ``reasons``.
    outcome : object
        What the call that raised it returns, for the runs computed (``run_many``'s list of results, ``run_sweep``'s
        record), so that they are said too; None where not given.
    """

    def __init__(self, errors: dict, reasons: list[str], total: int, of: str = "", outcome=None):
        self.errors, self.reasons, self.total, self.of = dict(errors), list(reasons), total, of
        self.outcome = outcome
        others = " (the others are complete and stored)" if len(errors) < total else ""
        # Their refusals are deterministic: launching them again fails alike, so no --resume advice.
        self.lines = [f"{of}{len(errors)} of {total} runs failed{others}; the same settings fail again: "
                      "change those of each run below as its reason says:", *reasons]
        super().__init__(" ".join(self.lines))

    def __reduce__(self):  # its one argument is not its message: pickled (to cross processes) by its parts
        return type(self), (self.errors, self.reasons, self.total, self.of, self.outcome)


class StoreError(LeukdashError):
    """The run store or its caches cannot be written: read-only, full, or not a folder."""


class StoreWarning(UserWarning):
    """A file the store keeps for later (a cache, a stored result) was not written, for a reason other than
    a read-only store (a full disk, a quota, a file size limit): what was computed is used, the user is told
    why it was not kept."""


class FileRefused(LeukdashError):
    """A path names something that is not read: not a regular file, too large, or unreadable."""


def interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C (or SIGTERM unwinding like it) that ``error`` was raised while handling, if any:
    an interrupt that lands inside numpy or joblib code can come out as another error (a ValueError)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def raise_interrupt_behind(error: BaseException) -> None:
    """Raise the interrupt behind ``error``, if any: a read or load that the user stopped must not be
    taken for a damaged file (moved aside, its fold discarded) nor said as a load failure."""
    interrupt = interrupt_behind(error)
    if interrupt is not None:
        raise interrupt
