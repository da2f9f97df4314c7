"""Cell-level preprocessing: segmentation, size and colour modes, failures, run ids, the cache."""

import cv2
import numpy as np
import pytest

from leukdash.config import RunConfig
from leukdash.data.audit import audit_dataset, format_audit
from leukdash.data.dataset import Dataset
from leukdash.data.squares import square_resize
from leukdash.errors import ConfigError
from leukdash.data.preprocess import (
    OVERLAY_SIDE,
    hematoxylin_density,
    overlay,
    parse_mode,
    prepare,
    prepare_images,
    prepare_one,
    prepare_view,
    preprocess_image,
    segment_cell,
)
from leukdash.engine.runner import resolve

RED_CELL = (225, 150, 160)      # pink, eosinophilic
GLASS = (232, 226, 228)


def _smear(centre=(100, 90), nucleus=28, rim=8, size=200, red_cells=((30, 30), (170, 40), (40, 170), (165, 165))):
    """A bright-field field: glass, red cells, and one white cell (purple nucleus in a pale blue
    rim of cytoplasm) at ``centre``; also returns the white cell's true mask."""
    image = np.full((size, size, 3), GLASS, np.uint8)
    for x, y in red_cells:
        cv2.circle(image, (x, y), 24, RED_CELL, -1)
    cv2.circle(image, centre, nucleus + rim, (170, 175, 215), -1)
    cv2.circle(image, centre, nucleus, (90, 45, 140), -1)
    noise = np.random.default_rng(0).normal(0, 4, image.shape)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    truth = np.zeros((size, size), np.uint8)
    cv2.circle(truth, centre, nucleus + rim, 1, -1)
    return image, truth > 0


def _segmented(centre=(225, 225), radius=70, size=450):
    """A cell segmented by its publisher, as C-NMC ships them: on black."""
    image = np.zeros((size, size, 3), np.uint8)
    cv2.circle(image, centre, radius, (120, 70, 150), -1)
    cv2.circle(image, (centre[0] + 10, centre[1]), radius // 2, (80, 40, 120), -1)
    truth = np.zeros((size, size), np.uint8)
    cv2.circle(truth, centre, radius, 1, -1)
    return image, truth > 0


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_segmentation_finds_the_white_cell_nearest_the_centre():
    image, truth = _smear()
    cell = segment_cell(image)
    assert cell.failure is None
    assert _iou(cell.mask, truth) > 0.85
    # A second white cell farther from the centre is left out.
    cv2.circle(image, (175, 100), 20, (90, 45, 140), -1)
    assert _iou(segment_cell(image).mask, truth) > 0.85

    segmented, truth = _segmented()
    cell = segment_cell(segmented)
    assert cell.failure is None and _iou(cell.mask, truth) > 0.95


def test_failures_are_named():
    assert segment_cell(np.full((100, 100, 3), GLASS, np.uint8)).failure == "none found"
    cut, _ = _segmented(centre=(40, 225))   # the cell runs off the left edge
    assert segment_cell(cut).failure == "touches the border"
    huge, _ = _segmented(radius=260)
    assert segment_cell(huge).failure in {"implausible area", "touches the border"}
    speck, _ = _segmented(radius=12)
    assert segment_cell(speck).failure in {"implausible area", "none found"}


def test_a_cell_smaller_than_a_pixel_of_a_small_image_still_has_a_mask():
    # Random 24 px noise, found by drawing 1,000 such images: each has a tiny "cell" at the working
    # size that nearest sampling lost at 24 px, and placing an empty mask raised a ValueError.
    for seed in (195, 245, 500, 580, 601):
        noise = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
        cell = segment_cell(noise)
        assert cell.mask.any() and cell.failure == "implausible area"
        for mode in ("cell-keep-asis", "cell-fit-gray"):
            image, _ = preprocess_image(noise, mode)
            assert image.shape[0] == image.shape[1] >= 1 and image.dtype == np.uint8


def test_keep_preserves_relative_size_and_fit_fills_the_frame():
    small, _ = _segmented(radius=50)
    large, _ = _segmented(radius=100)

    def share(image):
        return (image.max(axis=2) > 0).mean()

    kept = prepare([small, large], 64, "cell-keep-asis")
    assert share(kept[1]) / share(kept[0]) == pytest.approx(4, rel=0.15)   # area ratio kept
    fitted = prepare([small, large], 64, "cell-fit-asis")
    assert share(fitted[0]) == pytest.approx(share(fitted[1]), abs=0.03)
    assert share(fitted[0]) > 0.7   # a disc fills pi/4 of its box
    # Keep centres the cell: an off-centre cell ends up in the middle.
    moved, _ = _segmented(centre=(160, 250), radius=50)
    ys, xs = np.nonzero(prepare([moved], 64, "cell-keep-asis")[0].max(axis=2))
    assert abs(ys.mean() - 31.5) < 2 and abs(xs.mean() - 31.5) < 2


def test_colour_modes_keep_their_invariants():
    image, truth = _smear()
    for mode in ("cell-fit-gray", "cell-fit-hematoxylin"):
        out, _ = preprocess_image(image, mode)
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    out, cell = preprocess_image(image, "cell-keep-asis")
    assert out.shape == (200, 200, 3) and (out.max(axis=2) > 0).sum() == cell.mask.sum()
    # Outside the cell everything is black; inside, the cell's own pixels.
    blacked = preprocess_image(image, "cell-fit-asis")[0]
    assert (blacked.max(axis=2) == 0).mean() > 0.15 and blacked.max() > 100
    # Haematoxylin: the nucleus is denser than the cytoplasm and far denser than a red cell.
    density = hematoxylin_density(image)
    assert density[90, 100] > density[90, 100 + 33] > density[30, 30]
    # Reinhard: two casts of one cell come out nearly the same.
    cast = np.clip(image.astype(int) * [1.1, 0.9, 1.0] + [10, -5, 0], 0, 255).astype(np.uint8)
    a = preprocess_image(image, "cell-keep-reinhard")[0].astype(int)
    b = preprocess_image(cast, "cell-keep-reinhard")[0].astype(int)
    inside = (a.max(axis=2) > 0) & (b.max(axis=2) > 0)
    assert np.abs(a - b)[inside].mean() < 6
    assert np.abs(image.astype(int) - cast.astype(int)).mean() > 9


def test_raw_is_todays_behaviour_and_bad_modes_fail():
    image, _ = _smear()
    config = RunConfig()
    assert config.preprocess == "raw" and parse_mode("raw") is None
    assert np.array_equal(prepare_images(config, [image]), square_resize(image, 64)[None])
    with pytest.raises(ConfigError, match="preprocess must be one of"):
        RunConfig(preprocess="cell-huge-gray").validate()
    with pytest.raises(ConfigError):
        parse_mode("cell")


def test_run_id_changes_only_for_a_non_default_mode(tiny_dataset):
    base = RunConfig(dataset=str(tiny_dataset), model="knn", feature_set="features")
    assert "preprocess" not in base.canonical()
    # The ids of runs from before preprocessing existed: their canonical form is unchanged.
    assert resolve(base).run_id == resolve(base.with_changes(preprocess="raw")).run_id
    other = base.with_changes(preprocess="cell-keep-gray")
    assert other.canonical()["preprocess"] == "cell-keep-gray"
    assert resolve(other).run_id != resolve(base).run_id


def test_preprocessed_arrays_are_cached_apart_and_used_by_runs(tmp_path, isolated_artifacts):
    from leukdash.engine.runner import run
    from leukdash.data.arrays import load_arrays

    root = tmp_path / "cells"
    for cls, radius in (("ALL", 90), ("HEALTHY", 55)):
        for i in range(6):
            image, _ = _segmented(centre=(225 + 7 * i, 220), radius=radius + 3 * i)
            (root / cls).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / cls / f"{i}.png"), image[..., ::-1])
    dataset = Dataset.from_folder(root)
    raw = load_arrays(dataset, 32)
    cells = load_arrays(dataset, 32, "cell-fit-gray")
    assert not np.array_equal(raw.images, cells.images)
    assert np.array_equal(cells.images, prepare(dataset.load().images, 32, "cell-fit-gray"))
    names = sorted(p.name for p in (isolated_artifacts / "cache" / "arrays").iterdir())
    assert any(name.endswith("_32.npz") for name in names)
    assert any(name.endswith("_32_cell-fit-gray.npz") for name in names)
    result = run(RunConfig(dataset=str(root), model="knn", k=1, feature_set="pixels", image_size=32,
                           augment_factor=1, folds=3, preprocess="cell-keep-gray"), n_jobs=1)
    assert result["config"]["preprocess"] == "cell-keep-gray"
    # Keep mode preserves the size difference between the classes: 1-NN finds it on every fold.
    assert result["summary"]["val_acc"]["mean"] == 1.0


def _cells_and_a_cut_one(root, per_class: int):
    """A dataset of segmented cells in two classes, plus one cell cut by its image's edge (ALL/cut.png)."""
    for cls in ("ALL", "HEALTHY"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            image, _ = _segmented(radius=60 + 5 * i)
            cv2.imwrite(str(root / cls / f"{i}.png"), image[..., ::-1])
    cut, _ = _segmented(centre=(30, 225))
    cv2.imwrite(str(root / "ALL" / "cut.png"), cut[..., ::-1])
    return root


def test_audit_counts_segmentation_failures_and_rechecks_shortcuts(tmp_path):
    root = _cells_and_a_cut_one(tmp_path / "mixed", per_class=5)
    report = audit_dataset(Dataset.from_folder(root), folds=2, preprocess="cell-keep-gray")
    pre = report["preprocessed"]
    assert pre["mode"] == "cell-keep-gray" and pre["n_images"] == 11
    assert pre["failed"] == [{"path": "ALL/cut.png", "failure": "touches the border"}]
    assert pre["failures"] == {"touches the border": 1}
    assert set(pre["shortcut"]) == {"histogram_acc", "background_acc", "chance"}
    assert "segmentation failures 1 of 11" in format_audit(report)
    with pytest.raises(ConfigError):
        audit_dataset(Dataset.from_folder(root), preprocess="cell-keep-purple")


def test_a_run_says_where_segmentation_failed_as_the_audit_finds_it(tmp_path, capsys):
    """A run on segmented cells trains on an image without a cell as found (the whole image): it
    says how many, of which kind, as the audit counts them, also when its arrays come from the cache."""
    from leukdash.cli import main
    from leukdash.data.arrays import load_arrays

    root = _cells_and_a_cut_one(tmp_path / "mixed", per_class=4)
    cv2.imwrite(str(root / "HEALTHY" / "blank.png"), np.full((80, 80, 3), 255, np.uint8))
    audit = audit_dataset(Dataset.from_folder(root), folds=2, preprocess="cell-keep-gray")["preprocessed"]
    assert audit["failures"] == {"touches the border": 1, "none found": 1}
    options = ["--model", "nb", "--image-size", "16", "--no-augment", "--augment-factor", "1", "--folds", "2",
               "--n-jobs", "1", "--quiet"]
    assert main(["run", str(root), *options, "--preprocess", "cell-keep-gray"]) == 0
    [warning] = [line for line in capsys.readouterr().err.splitlines() if "segmented" in line]
    assert warning.startswith("warning: the cell was not segmented plausibly in 2 of 10 image(s) of mixed as "
                              "cell-keep-gray (")
    assert "none found 1" in warning and "touches the border 1" in warning
    assert "`python -m leukdash audit DATASET --preprocess cell-keep-gray` lists them" in warning
    cached = load_arrays(Dataset.from_folder(root), 16, "cell-keep-gray")  # read back from the cache
    assert sorted((f.path.name, f.reason) for f in cached.segmentation_failures) == [
        ("blank.png", "none found"), ("cut.png", "touches the border")]
    assert main(["run", str(root), *options]) == 0  # whole images: nothing segmented, nothing to say
    assert "segmented" not in capsys.readouterr().err


def test_overlay_outlines_the_cell():
    image, truth = _smear()
    outlined, prepared, failure = overlay(image, "cell-fit-gray")
    assert failure is None and outlined.shape == image.shape
    green = (outlined[..., 1] == 255) & (outlined[..., 0] == 0)
    ring = cv2.dilate(truth.astype(np.uint8), np.ones((9, 9))) > 0
    assert green.sum() > 100 and (green & ring).sum() / green.sum() > 0.9
    assert (prepared[..., 0] == prepared[..., 2]).all()


def test_the_preview_of_a_large_elongated_image_is_small_and_shows_what_a_run_sees():
    """A 20:1 field (which runs take): the preview segments the bounded copy a run works on, so keep
    mode's square is never the longer side squared, and both pictures it returns are small."""
    import tracemalloc

    wide = cv2.resize(_smear()[0], (6000, 300), interpolation=cv2.INTER_AREA)
    tracemalloc.start()
    outlined, prepared, _ = overlay(wide, "cell-keep-asis")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert outlined.shape == (13, OVERLAY_SIDE, 3) and prepared.shape == (OVERLAY_SIDE, OVERLAY_SIDE, 3)
    assert np.array_equal(prepared, prepare_one(wide, OVERLAY_SIDE, "cell-keep-asis"))
    assert peak < 10 * wide.nbytes  # the longer side squared would be 20 times the image


def test_cli_takes_a_preprocess_mode_and_refuses_a_bad_one(capsys):
    from leukdash.cli import build_parser, main
    from leukdash.cli.run_options import config_from_args

    args = build_parser().parse_args(["run", "synthetic", "--preprocess", "cell-keep-gray"])
    assert config_from_args(args).preprocess == "cell-keep-gray"
    assert main(["run", "synthetic", "--preprocess", "cell-keep-purple", "--quiet"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "preprocess must be one of" in error[0]


@pytest.mark.parametrize("mode", ["raw", "cell-keep-asis", "cell-fit-asis"])
def test_view_carries_a_map_of_the_prepared_square_back_onto_the_picture(mode):
    # A cell off the centre of a field taller than wide: a map over the square the models see (here
    # where the square shows a nucleus) must land on the nucleus in the picture, not stretched over it.
    image, truth = _smear(centre=(70, 60))
    image = np.concatenate([image, np.full((100, 200, 3), GLASS, np.uint8)])
    square, _, view = prepare_view(image, 48, mode)
    nucleus = np.clip(square[..., 2].astype(np.float32) - square[..., 1] - 60, 0, None)
    mapped = view.to_picture(nucleus, image.shape)
    assert mapped.shape == image.shape[:2]
    ys, xs = np.mgrid[:300, :200]
    centre = (mapped * xs).sum() / mapped.sum(), (mapped * ys).sum() / mapped.sum()
    assert np.hypot(centre[0] - 70, centre[1] - 60) < 3, centre
    # Nothing is shown where the models saw nothing of the picture: outside the cell's box.
    seen = view.to_picture(np.ones((6, 6), np.float32), image.shape) > 0
    if mode == "raw":
        assert seen.all()
    else:
        rows, cols = np.nonzero(seen)
        box = np.nonzero(truth)
        assert abs(rows.min() - box[0].min()) <= 4 and abs(rows.max() - box[0].max()) <= 4
        assert abs(cols.min() - box[1].min()) <= 4 and abs(cols.max() - box[1].max()) <= 4
