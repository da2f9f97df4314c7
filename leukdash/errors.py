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


class RunsFailed(RunError):
    """Runs of several that failed on their own (a fold refused by its settings), the others computed.

    ``lines``: one saying how many failed of how many (``of`` names what they belong to, say a
    sweep; ``again``, what computes the rest), then one per failed run (its id, what differs in its
    settings and why it failed).
    """

    def __init__(self, failed: list[str], total: int, of: str = "", again: str = "launching them again"):
        self.failed, self.total = failed, total
        self.lines = [f"{of}{len(failed)} of {total} runs failed (the others are complete and stored); {again} "
                      "computes only what is left:", *failed]
        super().__init__(" ".join(self.lines))


class StoreError(LeukdashError):
    """The run store or its caches cannot be written: read-only, full, or not a folder."""


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
