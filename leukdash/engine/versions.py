"""The versions every result records: of leukdash, its engine, and the packages that compute.

Apart from the runner, so that what computes a fold elsewhere (a Dask worker) can say its own
versions without importing the runner.
"""

from __future__ import annotations

import platform
import sys

from leukdash import ENGINE_VERSION, __version__


def versions() -> dict:
    """Versions of leukdash and of the packages that compute results."""
    from importlib.metadata import PackageNotFoundError, version

    from leukdash.models.cnn import TRAINING_POLICY

    # bfloat16 and float32 training give slightly different numbers: the policy is recorded.
    found = {"leukdash": __version__, "engine": ENGINE_VERSION, "python": sys.version.split()[0],
             "platform": platform.platform(), "cnn_dtype_policy": TRAINING_POLICY}
    for package in ("numpy", "opencv-python-headless", "scikit-learn", "tensorflow-cpu", "tensorflow", "keras"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


# How the one-line refusals name the keys of :func:`versions` that are not package names.
_NAMES = {"engine": "leukdash engine", "cnn_dtype_policy": "CNN dtype policy"}


# What only a CNN's folds depend on: a classic model's folds are the same with or without them.
_CNN_ONLY = ("cnn_dtype_policy", "tensorflow-cpu", "tensorflow", "keras")


def differing_versions(theirs: dict, ours: dict, cnn: bool) -> list[str]:
    """The keys of two :func:`versions` that differ where results can: the platform is the
    machine's, not a version; the CNN dtype policy (from the CPU), TensorFlow and Keras matter to
    CNN folds only."""
    ignored = {"platform"} if cnn else {"platform", *_CNN_ONLY}
    return [key for key in {**ours, **theirs} if key not in ignored and theirs.get(key) != ours.get(key)]


def versions_text(keys: list[str], theirs: dict, ours: dict, ours_label: str) -> str:
    """The ``keys`` that differ, one after another: ``scikit-learn 1.4.2 (this machine 1.5.0)``."""
    return ", ".join(f"{_NAMES.get(key, key)} {theirs.get(key, 'none')} ({ours_label} {ours.get(key, 'none')})"
                     for key in keys)
