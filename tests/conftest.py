"""Shared fixtures: every test gets its own run store, and real data is found via LEUKDASH_DATA."""

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_artifacts(tmp_path_factory, monkeypatch):
    """Keep each test's runs and caches out of the repository's artifacts/ folder."""
    root = tmp_path_factory.mktemp("artifacts")
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(root))
    return root


def _shared_dataset(name: str) -> Path:
    """A real dataset folder under LEUKDASH_DATA, or a skip that says it is missing."""
    for root in os.environ.get("LEUKDASH_DATA", "").split(os.pathsep):
        candidate = Path(root) / name
        if root and candidate.is_dir():
            return candidate
    pytest.skip(f"LEUKDASH_DATA does not hold {name}")


@pytest.fixture(scope="session")
def allidb2_path() -> Path:
    """The real ALL-IDB2 copy, or a skip when LEUKDASH_DATA does not provide it."""
    return _shared_dataset("allidb2_ufpr")


@pytest.fixture(scope="session")
def cnmc_path() -> Path:
    """The real C-NMC 2019 sample (segmented cells on black), or a skip."""
    return _shared_dataset("cnmc_dev")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small generated 5-class set (8 images per class, 32 px) for fast end-to-end runs."""
    from leukdash.data.synthetic import CLASSES, generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("data") / "tiny", seed=1,
                              counts={name: 8 for name in CLASSES}, size=32)


@pytest.fixture(scope="session")
def inverted_lab(tiny_dataset, tmp_path_factory) -> Path:
    """The tiny set as another 'lab' would photograph it: colours inverted (dark background)."""
    import cv2

    out = tmp_path_factory.mktemp("inverted") / "inverted_lab"
    for path in sorted(tiny_dataset.glob("*/*.png")):
        (out / path.parent.name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / path.parent.name / path.name), 255 - cv2.imread(str(path)))
    return out
