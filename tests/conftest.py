"""Shared fixtures: every test gets its own run store, and real data is found via LEUKDASH_DATA."""

import os
import threading
from pathlib import Path

import pytest

# Files whose tests start clusters, servers, browsers or killed processes (a minute or more each on
# two cores). They run first, so that under pytest-xdist's ``--dist loadfile`` the many short files
# fill in behind them and the workers finish together.
LONG_FILES = ("test_dask.py", "test_crash.py", "test_browser.py", "test_reproduce.py", "test_runner.py",
              "test_app.py", "test_evaluate.py", "test_ood_views.py", "test_sweep_app.py", "test_hostile_env.py")


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pyproject.toml): one worker per core this process may use, at most four.

    A third worker on two cores measured slower (386 s against 348 s): the long tests are busy
    on the CPU, not waiting. Four caps the memory (each worker imports TensorFlow once).
    """
    return max(1, min(len(os.sched_getaffinity(0)), 4))


def pytest_collection_modifyitems(items):
    """The long files first, the rest in their usual order (the sort is stable)."""
    rank = {name: index for index, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def isolated_artifacts(tmp_path_factory, monkeypatch):
    """Keep each test's runs and caches out of the repository's artifacts/ folder.

    A Predict page warms its run up in a background thread (``leukdash.evaluation.predict.warm_up``)
    that finds its caches through ``LEUKDASH_ARTIFACTS``: it is waited for before the variable is
    restored, or it would write them into the repository's store.
    """
    root = tmp_path_factory.mktemp("artifacts")
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(root))
    yield root
    for thread in threading.enumerate():
        if thread.name.startswith("warm-up "):
            thread.join(timeout=120)


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


@pytest.fixture(scope="session")
def three_a_class(tiny_dataset, tmp_path_factory) -> Path:
    """Two classes of the tiny set, 3 images each: with 2 folds a fold trains on 1 or 2 of a class,
    too few for the SVM's calibration (a run's own failure), enough for the other models."""
    import shutil

    out = tmp_path_factory.mktemp("few") / "three_a_class"
    for name in sorted(folder.name for folder in tiny_dataset.iterdir() if folder.is_dir())[:2]:
        (out / name).mkdir(parents=True)
        for image in sorted((tiny_dataset / name).iterdir())[:3]:
            shutil.copy(image, out / name / image.name)
    return out


@pytest.fixture(scope="session")
def builtin_store(tmp_path_factory, worker_id) -> Path:
    """A run store that already holds the built-in dataset, drawn once per test run (~12 s).

    Tests that need the built-in set in several fresh stores copy this store's ``datasets``
    folder (``seed_builtin``) instead of drawing the same pixels again. The pytest-xdist workers
    share the store (their temporary folders' parent): ``ensure_synthetic``'s lock makes a later
    worker wait for the first one's drawing and then read it.
    """
    from leukdash.data.synthetic import ensure_synthetic

    base = tmp_path_factory.getbasetemp()
    root = (base if worker_id == "master" else base.parent) / "builtin-store"
    root.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEUKDASH_ARTIFACTS", str(root))
        ensure_synthetic()
    return root


@pytest.fixture
def seed_builtin(builtin_store):
    """Copy the drawn built-in dataset into a store folder, as a user's store holds it after its first use."""
    import shutil

    def seed(store: Path) -> Path:
        shutil.copytree(builtin_store / "datasets", Path(store) / "datasets", dirs_exist_ok=True)
        return Path(store)

    return seed
