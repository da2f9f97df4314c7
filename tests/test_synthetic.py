"""The built-in synthetic generator: deterministic, labelled as demo data, cached atomically, and
its classes differ in morphology but not in acquisition (background colour)."""

import errno
import os

import cv2
import numpy as np
import pytest

from leukdash.data import synthetic
from leukdash.data.audit import background_features, shortcut_scores
from leukdash.data.dataset import SYNTHETIC_LABEL, Dataset
from leukdash.data.synthetic import CLASSES, DEFAULT_COUNTS, generate_synthetic, render_smear
from leukdash.errors import ConfigError


def _render(label, seed, i, size=48):
    return render_smear(label, np.random.default_rng([seed, CLASSES.index(label), i]), size)


def _read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_defaults_are_the_papers_counts():
    assert DEFAULT_COUNTS == {"ALL": 179, "AML": 179, "CLL": 185, "CML": 185, "HEALTHY": 175}
    assert sum(DEFAULT_COUNTS.values()) == 903


@pytest.mark.parametrize("label", CLASSES)
def test_render_is_deterministic_rgb_uint8(label):
    a, b = _render(label, 0, 3), _render(label, 0, 3)
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _render(label, 1, 3))
    assert not np.array_equal(a, _render(label, 0, 4))
    assert a.std() > 10  # something is drawn, not a flat field


def test_render_size_is_configurable():
    assert _render("AML", 0, 0, size=32).shape == (32, 32, 3)
    assert _render("AML", 0, 0, size=80).shape == (80, 80, 3)


def test_unknown_class_and_bad_counts_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="MDS"):
        render_smear("MDS", np.random.default_rng(0))
    with pytest.raises(ConfigError, match="MDS"):
        generate_synthetic(tmp_path, counts={"MDS": 2})
    with pytest.raises(ConfigError, match="ALL"):
        generate_synthetic(tmp_path, counts={"ALL": -1})


def test_generate_writes_pngs_that_match_the_per_image_streams(tmp_path):
    out = generate_synthetic(tmp_path / "a", seed=5, counts={"ALL": 3, "CLL": 2}, size=32)
    assert sorted(p.name for p in (out / "ALL").iterdir()) == ["ALL_0001.png", "ALL_0002.png", "ALL_0003.png"]
    assert sorted(p.name for p in (out / "CLL").iterdir()) == ["CLL_0001.png", "CLL_0002.png"]
    assert not (out / "AML").exists()
    # Image i of a class is drawn from default_rng([seed, class, i]) whatever else is generated.
    np.testing.assert_array_equal(_read_rgb(out / "CLL" / "CLL_0002.png"), _render("CLL", 5, 1, size=32))
    source = (out / "SOURCE.md").read_text()
    assert SYNTHETIC_LABEL in source
    assert "seed: 5" in source and "32x32" in source and "| CLL | 2 |" in source

    # Same pixels with two worker processes; another seed gives other pixels.
    twin = generate_synthetic(tmp_path / "b", seed=5, counts={"ALL": 3, "CLL": 2}, size=32, n_jobs=2)
    other = generate_synthetic(tmp_path / "c", seed=6, counts={"ALL": 3, "CLL": 2}, size=32)
    for name in ("ALL/ALL_0001.png", "ALL/ALL_0003.png", "CLL/CLL_0002.png"):
        np.testing.assert_array_equal(_read_rgb(out / name), _read_rgb(twin / name))
        assert not np.array_equal(_read_rgb(out / name), _read_rgb(other / name))


def test_generated_folder_opens_as_a_synthetic_dataset(tmp_path):
    out = generate_synthetic(tmp_path / "syn", counts={"ALL": 2, "HEALTHY": 2}, size=32)
    ds = Dataset.from_folder(out)
    assert ds.synthetic and ds.kind == "synthetic"
    assert ds.counts() == {"ALL": 2, "HEALTHY": 2}
    loaded = ds.load()
    assert [image.shape for image in loaded.images] == [(32, 32, 3)] * 4


@pytest.fixture
def small_defaults(monkeypatch):
    """ensure_synthetic draws the default counts; shrink them so the cache test stays fast."""
    monkeypatch.setattr(synthetic, "DEFAULT_COUNTS", {"ALL": 2, "CLL": 2})


def test_ensure_synthetic_generates_once_into_the_artifacts_cache(small_defaults, isolated_artifacts,
                                                                  monkeypatch):
    assert synthetic.cached_synthetic_path(seed=3, size=32) is None
    path = synthetic.ensure_synthetic(seed=3, size=32)
    assert path == isolated_artifacts / "datasets" / "synthetic_s3_32"
    assert len(list(path.glob("*/*.png"))) == 4
    assert path.stat().st_mode & 0o777 == 0o755
    assert synthetic.cached_synthetic_path(seed=3, size=32) == path
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".") and "tmp" in p.name] == []

    def fail(*args, **kwargs):
        raise AssertionError("generated twice")

    monkeypatch.setattr(synthetic, "generate_synthetic", fail)
    assert synthetic.ensure_synthetic(seed=3, size=32) == path


def test_datasets_lists_the_builtin_set_as_drawn_without_drawing_it(small_defaults, isolated_artifacts, tmp_path,
                                                                    monkeypatch, capsys):
    import json

    from leukdash.cli import main
    from leukdash.data.discovery import open_dataset

    monkeypatch.setenv("LEUKDASH_DATA", str(tmp_path / "no_data"))
    monkeypatch.chdir(tmp_path)  # no ./data either: the built-in set alone

    def listed() -> dict:
        assert main(["datasets", "--json"]) == 0
        [entry] = json.loads(capsys.readouterr().out)["datasets"]
        return entry

    before = listed()
    assert not (isolated_artifacts / "datasets").exists()  # nothing drawn, nothing written
    assert before["notes"] == ["not drawn yet: drawn into this folder on first use (about 10 s)"]
    assert main(["datasets"]) == 0
    assert "not drawn yet" in capsys.readouterr().out
    open_dataset("synthetic")  # a run or an audit draws it
    # Drawn, it is listed as it was announced, less the note.
    assert listed() == {**before, "notes": []}


def test_ensure_synthetic_never_uses_a_half_written_folder(small_defaults, isolated_artifacts):
    target = isolated_artifacts / "datasets" / "synthetic_s0_32"
    (target / "ALL").mkdir(parents=True)  # a crash left images but no SOURCE.md
    (target / "ALL" / "ALL_0001.png").write_bytes(b"partial")
    stale = target.parent / ".synthetic_s0_32.tmp12345"  # and a staging folder of a dead run
    stale.mkdir()
    assert synthetic.cached_synthetic_path(seed=0, size=32) is None
    path = synthetic.ensure_synthetic(seed=0, size=32)
    assert path == target and not stale.exists()
    assert cv2.imread(str(path / "ALL" / "ALL_0001.png")) is not None
    assert SYNTHETIC_LABEL in (path / "SOURCE.md").read_text()


@pytest.mark.parametrize("fault", ["file in the way", errno.EACCES, errno.ENOSPC, errno.EIO],
                         ids=["file", "read-only", "full", "io"])
def test_a_builtin_set_that_cannot_be_written_is_one_store_error(small_defaults, isolated_artifacts, monkeypatch,
                                                                  fault):
    """A store where the set cannot be drawn (read-only, full, a file where its folder goes) let the
    OSError through to every caller but the CLI: the pages showed a traceback."""
    from leukdash.errors import StoreError

    if fault == "file in the way":
        (isolated_artifacts / "datasets").write_text("not a folder")
        said = "a file stands where a folder is needed"
    else:
        def fail(*args, **kwargs):
            raise OSError(fault, os.strerror(fault), str(isolated_artifacts / "datasets" / "x.png"))

        monkeypatch.setattr(synthetic, "generate_synthetic", fail)
        said = {errno.EACCES: "permission denied", errno.ENOSPC: "no space left on the device"}.get(
            fault, "Input/output error")
    with pytest.raises(StoreError) as raised:
        synthetic.ensure_synthetic(seed=0, size=32)
    assert "\n" not in str(raised.value) and said in str(raised.value)


def _nuclei(image):
    """Connected blobs of nuclear stain (strong red absorption against the brightest glass)."""
    pixels = image.astype(np.float32) + 1
    density = -np.log(pixels / np.percentile(pixels.reshape(-1, 3), 99, axis=0))
    mask = (density[..., 0] > 0.45).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    return int((stats[1:, cv2.CC_STAT_AREA] >= 6).sum()), float(mask.mean())


def test_classes_differ_in_morphology():
    stats = {label: np.array([_nuclei(_render(label, 11, i, size=64)) for i in range(8)])
             for label in ("HEALTHY", "CLL", "ALL")}
    # HEALTHY: one white cell per field; CLL: several small lymphocytes (and smudge cells).
    assert stats["HEALTHY"][:, 0].max() == 1
    assert stats["CLL"][:, 0].min() >= 3
    # Blasts are large nuclei: far more nuclear area than one normal white cell.
    assert stats["ALL"][:, 1].mean() > 3 * stats["HEALTHY"][:, 1].mean()


def test_background_colour_does_not_predict_the_class():
    labels = np.repeat(np.arange(len(CLASSES)), 30)
    index = np.tile(np.arange(30), len(CLASSES))
    images = np.stack([_render(CLASSES[c], 0, i, size=64) for c, i in zip(labels, index)])
    features = background_features(images)
    assert features.shape == (150, 25)
    scores = shortcut_scores(images, labels, np.arange(150).astype(str), folds=5, seed=0)
    # Chance is 0.2; with 150 images the out-of-fold accuracy of a label-blind classifier has a
    # standard deviation of about 0.033, so 0.35 is beyond four of them.
    assert scores["chance"] == 0.2
    assert scores["background_acc"] <= 0.35
