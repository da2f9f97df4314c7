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
