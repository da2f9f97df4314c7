"""The errors leukdash raises for bad input: each message is one line naming what is wrong."""


class LeukdashError(Exception):
    """Base class of every error leukdash reports to a user."""


class ConfigError(LeukdashError):
    """A run or augmentation setting is invalid; the message names the field."""


class DatasetError(LeukdashError):
    """A dataset cannot be used as asked (missing, one class, too few images for the folds)."""


class ImageDecodeError(LeukdashError):
    """A file is not a readable image; the message says why."""


class RunError(LeukdashError):
    """A run cannot be found, resumed or used for prediction."""


class StoreError(LeukdashError):
    """The run store or its caches cannot be written: read-only, full, or not a folder."""


class FileRefused(LeukdashError):
    """A path names something that is not read: not a regular file, too large, or unreadable."""
