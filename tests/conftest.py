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


@pytest.fixture(scope="session")
def allidb2_path() -> Path:
    """The real ALL-IDB2 copy, or a skip when LEUKDASH_DATA does not provide it."""
    for root in os.environ.get("LEUKDASH_DATA", "").split(os.pathsep):
        candidate = Path(root) / "allidb2_ufpr"
        if root and candidate.is_dir():
            return candidate
    pytest.skip("LEUKDASH_DATA does not hold allidb2_ufpr")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small generated 5-class set (8 images per class, 32 px) for fast end-to-end runs."""
    from leukdash.data.synthetic import CLASSES, generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("data") / "tiny", seed=1,
                              counts={name: 8 for name in CLASSES}, size=32)
