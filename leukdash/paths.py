"""Where leukdash keeps its artifacts and looks for datasets."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def artifacts_root() -> Path:
    """The run store and caches: ``$LEUKDASH_ARTIFACTS`` or ``artifacts/`` in the repository."""
    return Path(os.environ.get("LEUKDASH_ARTIFACTS") or REPO_ROOT / "artifacts")


def data_roots() -> list[Path]:
    """Folders whose subfolders are datasets: each entry of ``$LEUKDASH_DATA``, then ``./data``."""
    roots = [Path(p) for p in os.environ.get("LEUKDASH_DATA", "").split(os.pathsep) if p]
    roots.append(Path.cwd() / "data")
    return roots
