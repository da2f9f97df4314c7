"""The dataset audit: counts, sizes, skipped files, exact and near duplicates, shortcut checks."""

import json
import shutil

import cv2
import imagehash
import numpy as np
import pytest
from PIL import Image

from leukdash.data.audit import audit_dataset, background_mask, chance_accuracy, format_audit, shortcut_scores
from leukdash.data.duplicates import (
    HASH_SIZE,
    NEAR_DUPLICATE_DISTANCE,
    PIXEL_MATCH,
    confirmed_near_duplicates,
    exact_duplicates,
    find_duplicates,
    near_duplicates,
    perceptual_hashes,
    pixel_details,
    pixel_similarity,
)
from leukdash.data.dataset import Dataset, LoadedImages
from leukdash.data.folds import capped_merges, max_folds, merge_limit
from leukdash.data.synthetic import CLASSES, generate_synthetic, render_smear


def _render(label, i, size=64, seed=0):
    return render_smear(label, np.random.default_rng([seed, CLASSES.index(label), i]), size)


@pytest.fixture
def messy_folder(tmp_path):
    """Two classes of 6 drawn fields, plus: a byte copy across classes, a JPEG re-encode of
    another image, an unreadable file and a stray text file."""
    root = generate_synthetic(tmp_path / "messy", counts={"ALL": 6, "HEALTHY": 6}, size=48)
    (root / "SOURCE.md").unlink()  # audit it as a plain folder dataset
    shutil.copy(root / "ALL" / "ALL_0001.png", root / "HEALTHY" / "copy_of_all_1.png")
    image = cv2.imread(str(root / "HEALTHY" / "HEALTHY_0002.png"))
    cv2.imwrite(str(root / "HEALTHY" / "reencoded.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    (root / "ALL" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "ALL" / "notes.txt").write_text("not an image")
    return root


def test_audit_reports_counts_sizes_skipped_and_duplicates(messy_folder):
    ds = Dataset.from_folder(messy_folder)
    report = audit_dataset(ds, folds=3, seed=0)
    json.dumps(report)  # JSON-ready as it is
    assert report["name"] == "messy" and report["kind"] == "folders" and not report["synthetic"]
    assert report["fingerprint"] == ds.fingerprint
    assert report["n_images"] == 14
    assert report["classes"] == {"ALL": 6, "HEALTHY": 8}
    assert report["sizes"] == {"48x48": 14}
    skipped = {entry["path"]: entry["reason"] for entry in report["skipped"]}
    assert set(skipped) == {"ALL/broken.png", "ALL/notes.txt"}
    assert all(skipped.values())

    exact = report["duplicates"]["exact"]
    assert exact == [{"files": ["ALL/ALL_0001.png", "HEALTHY/copy_of_all_1.png"],
                      "classes": ["ALL", "HEALTHY"], "cross_class": True}]
    near = report["duplicates"]["near"]
    assert [(entry["files"], entry["cross_class"]) for entry in near] == [
        (["HEALTHY/HEALTHY_0002.png", "HEALTHY/reencoded.jpg"], False)
    ]
    assert 0 <= near[0]["distance"] <= NEAR_DUPLICATE_DISTANCE and near[0]["pixel_score"] >= PIXEL_MATCH
    assert report["duplicates"]["refused"] == [] and report["max_folds"] == 6
    assert set(report["shortcut"]) == {"histogram_acc", "background_acc", "chance"}
    assert report["shortcut"]["chance"] == round(8 / 14, 4)


def test_exact_and_near_duplicates_on_arrays(tmp_path):
    paths = []
    for name, content in [("a", b"one"), ("b", b"two"), ("c", b"one"), ("d", b"one")]:
        paths.append(tmp_path / name)
        paths[-1].write_bytes(content)
    assert exact_duplicates(paths) == [[0, 2, 3]]

    images = [_render("CML", i) for i in range(3)]
    brighter = np.clip(images[1].astype(int) + 6, 0, 255).astype(np.uint8)
    hashes = perceptual_hashes(images + [images[0], brighter])
    pairs = near_duplicates(hashes)
    assert {(i, j) for i, j, _ in pairs} == {(0, 3), (1, 4)}
    assert near_duplicates(hashes, exclude=[[0, 3]]) == [p for p in pairs if p[:2] == (1, 4)]


def test_distinct_fields_are_not_near_duplicates():
    images = [_render(label, i) for label in CLASSES for i in range(6)]
    confirmed, _ = confirmed_near_duplicates(images)
    assert confirmed == []


def _cell_on_black(seed, shift=(0, 0), gain=1.0):
    """A segmented cell as C-NMC ships them: a textured purple disc with a soft edge on black."""
    texture = cv2.GaussianBlur(np.random.default_rng(seed).normal(0, 60, (128, 128)), (0, 0), 1.5)
    colour = np.array([120, 60, 140]) + texture[..., None] * np.array([0.6, 0.4, 0.8])
    disc = np.zeros((128, 128), np.float32)
    cv2.circle(disc, (64, 64), 30, 1, -1)
    image = np.clip(colour * gain * cv2.GaussianBlur(disc, (0, 0), 4)[..., None], 0, 255).astype(np.uint8)
    return np.roll(image, shift, axis=(0, 1))


def test_near_duplicates_are_confirmed_on_the_pixels():
    cell, other = _cell_on_black(1), _cell_on_black(2)
    # The same cell, re-cropped a few pixels off and photographed 15% darker, then JPEG-compressed.
    _, jpeg = cv2.imencode(".jpg", _cell_on_black(1, shift=(3, 2), gain=0.85), [cv2.IMWRITE_JPEG_QUALITY, 80])
    copy = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    hashes = perceptual_hashes([cell, other, copy])
    # The hash cannot tell the two cells apart: same silhouette on the same black.
    assert {(i, j) for i, j, _ in near_duplicates(hashes)} == {(0, 1), (0, 2), (1, 2)}
    details = pixel_details([cell, other, copy])
    assert pixel_similarity(details[0], details[2]) >= PIXEL_MATCH
    assert pixel_similarity(details[0], details[1]) < 0.75
    confirmed, rejected = confirmed_near_duplicates([cell, other, copy])
    assert [(i, j) for i, j, *_ in confirmed] == [(0, 2)]
    assert {(i, j) for i, j, *_ in rejected} == {(0, 1), (1, 2)}
    # Any image size is compared at the same scale: a half-size copy is still the same cell.
    assert pixel_similarity(*pixel_details([cell, cv2.resize(cell, (64, 64))])) >= PIXEL_MATCH


def test_mirrored_rotated_and_transposed_copies_are_near_duplicates():
    """A pre-augmented dataset holds each cell also mirrored, turned and transposed: the same cell,
    which must join its original's group (cross-validated 1-NN scored 0.96 on random labels so)."""
    cell, other = _cell_on_black(1), _cell_on_black(2)
    turns = [np.fliplr, np.flipud, np.rot90, lambda a: np.rot90(a, 2), lambda a: np.rot90(a, 3),
             lambda a: a.transpose(1, 0, 2), lambda a: np.rot90(a, 2).transpose(1, 0, 2)]
    copies = [np.ascontiguousarray(turn(cell)) for turn in turns]
    # One copy also re-cropped, darker and saved as JPEG: turned and re-encoded.
    _, jpeg = cv2.imencode(".jpg", np.rot90(_cell_on_black(1, shift=(3, 2), gain=0.85)), [cv2.IMWRITE_JPEG_QUALITY, 80])
    images = [cell, other, *copies, cv2.imdecode(jpeg, cv2.IMREAD_COLOR)]
    confirmed, rejected = confirmed_near_duplicates(images)
    same_cell = [i for i in range(len(images)) if i != 1]
    assert {(i, j) for i, j, *_ in confirmed} == {(i, j) for i in same_cell for j in same_cell if i < j}
    assert all(1 in pair[:2] for pair in rejected)
    # As the images are, the hash is imagehash's pHash: the groups of datasets without such copies stay as they were.
    assert (perceptual_hashes([cell])[0, 0] == np.packbits(
        imagehash.phash(Image.fromarray(cell), hash_size=HASH_SIZE).hash.ravel())).all()


def test_a_giant_merged_group_is_refused_and_reported(tmp_path):
    groups = np.array([f"g{i}" for i in range(40)], dtype=object)
    assert merge_limit(groups) == 1 + 2  # largest group, plus 5% of 40 images
    chain = [(i, i + 1) for i in range(6)]
    merged, refused = capped_merges(groups, chain, merge_limit(groups))
    assert merged == [(0, 1), (1, 2), (3, 4), (4, 5)]
    assert refused == [((2, 3), (3, 1)), ((5, 6), (3, 1))]
    # Patients are groups already: one may take in a duplicate, two may not be joined.
    patients = np.array(["a"] * 20 + ["b"] * 20 + [f"s{i}" for i in range(4)], dtype=object)
    _, refused = capped_merges(patients, [(0, 40), (1, 21)], merge_limit(patients))
    assert refused == [((1, 21), (21, 20))]

    # find_duplicates reports them; the links it merges leave the chain in pieces.
    paths = []
    for i in range(8):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(bytes([i]))
    images = np.stack([_cell_on_black(1, shift=(i, 0)) for i in range(4)] + [_cell_on_black(10 + i) for i in range(4)])
    loaded = LoadedImages(images, np.array([0, 0, 0, 0, 1, 1, 1, 1]), np.arange(8).astype(str).astype(object), paths)
    found = find_duplicates(loaded)
    assert found.merge_limit == 2 and len(found.near) == 6   # four shifted copies: every pair confirmed
    assert len(found.pairs()) == 2 and len(found.refused) == 4
    assert max_folds(loaded.labels, loaded.groups) == 4


def test_audit_reports_the_folds_a_run_gets_when_subjects_span_classes(tmp_path):
    from leukdash.data.folds import fold_plan

    # Nine subjects with one image of each of two of three classes: each class lies in six of them,
    # but a fold needs two subjects to hold every class, so a run gets four folds, not six.
    rng = np.random.default_rng(0)
    rows = ["file,group"]
    for subject, pair in enumerate([("A", "B"), ("A", "C"), ("B", "C")] * 3):
        for cls in pair:
            (tmp_path / cls).mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(tmp_path / cls / f"s{subject}.png")
            rows.append(f"{cls}/s{subject}.png,s{subject}")
    (tmp_path / "groups.csv").write_text("\n".join(rows) + "\n")
    dataset = Dataset.from_folder(tmp_path)
    report = audit_dataset(dataset)
    loaded = dataset.load(size=16)
    assert report["duplicates"]["near"] == [] and max_folds(loaded.labels, loaded.groups) == 6
    assert report["max_folds"] == len(fold_plan(loaded.labels, loaded.groups, dataset.classes, 6, None, 0)[1]) == 4
    assert "grouped folds the data allows: 4" in format_audit(report)


def test_background_mask_finds_the_glass_between_cells():
    image = np.full((64, 64, 3), (225, 222, 226), np.uint8)
    cv2.circle(image, (16, 16), 7, (215, 150, 165), -1)   # a red cell
    cv2.circle(image, (44, 40), 9, (95, 60, 140), -1)     # a nucleus
    mask = background_mask(image)
    yy, xx = np.mgrid[:64, :64]
    in_cells = (np.hypot(xx - 16, yy - 16) <= 8) | (np.hypot(xx - 44, yy - 40) <= 10)
    far = (np.hypot(xx - 16, yy - 16) > 12) & (np.hypot(xx - 44, yy - 40) > 14)
    assert not mask[in_cells].any()
    assert mask[far].all()


def test_shortcut_checks_catch_a_planted_background_difference():
    # Same morphology in both classes; class 1 was "photographed" under a bluer lamp.
    images = np.stack([_render("HEALTHY", i) for i in range(40)])
    labels = np.repeat([0, 1], 20)
    tinted = images.astype(int)
    tinted[labels == 1, :, :, 2] += 16
    tinted[labels == 1, :, :, 0] -= 10
    tinted = np.clip(tinted, 0, 255).astype(np.uint8)
    groups = np.arange(40).astype(str)
    planted = shortcut_scores(tinted, labels, groups, folds=5, seed=0)
    assert planted["chance"] == 0.5
    # The shift is small beside the spread of stain and lamp between images: the background
    # check, which is blind to the cells, sees it more clearly than the whole-image histogram.
    assert planted["background_acc"] >= 0.9 and planted["histogram_acc"] >= 0.65
    clean = shortcut_scores(images, labels, groups, folds=5, seed=0)
    assert clean["background_acc"] <= 0.75


def test_shortcut_scores_are_none_when_the_data_cannot_be_split():
    images = np.stack([_render("ALL", i, size=32) for i in range(4)])
    one_group_each = shortcut_scores(images, np.array([0, 0, 1, 1]), np.array(["a", "a", "b", "b"]))
    assert one_group_each == {"histogram_acc": None, "background_acc": None, "chance": 0.5}
    one_class = shortcut_scores(images, np.zeros(4, int), np.arange(4).astype(str))
    assert one_class["background_acc"] is None and one_class["chance"] == 1.0


def test_chance_is_the_majority_class_fraction():
    assert chance_accuracy(np.array([0] * 179 + [1] * 179 + [2] * 185 + [3] * 185 + [4] * 175)) == 185 / 903
    assert chance_accuracy(np.array([0, 1])) == 0.5


def test_the_audit_of_a_folder_named_in_bytes_that_are_not_utf8_escapes_its_name(messy_folder):
    """Else ``root`` holds a lone surrogate: JSON that a UTF-8 reader refuses."""
    import os

    root = messy_folder.rename(messy_folder.with_name(os.fsdecode(b"bad\xffname")))
    report = audit_dataset(Dataset.from_folder(root), folds=2, seed=0)
    assert report["root"] == f"{root.parent}/bad\\xffname"
    json.dumps(report, ensure_ascii=False).encode("utf-8")


def test_audit_of_allidb2(allidb2_path):
    report = audit_dataset(Dataset.from_folder(allidb2_path))
    assert report["n_images"] == 260
    assert report["classes"] == {"ALL": 130, "HEALTHY": 130}
    assert report["sizes"]["257x257"] == 250 and sum(report["sizes"].values()) == 260
    assert report["skipped"] == []
    assert {"files": ["HEALTHY/Im223_0_0.jpg", "HEALTHY/Im257_0_0.jpg"],
            "classes": ["HEALTHY", "HEALTHY"], "cross_class": False} in report["duplicates"]["exact"]
    assert len(report["duplicates"]["exact"]) == 1
    # Re-cropped or re-photographed copies of one cell (checked by eye), none across classes.
    near = {tuple(entry["files"]) for entry in report["duplicates"]["near"]}
    assert len(near) == 12
    assert ("HEALTHY/Im138_0_0.jpg", "HEALTHY/Im146_0_0.jpg") in near
    assert ("ALL/Im028_0_1.jpg", "ALL/Im031_0_1.jpg") in near
    assert ("HEALTHY/Im170_0_0.jpg", "HEALTHY/Im209_0_0.jpg") in near   # 40 hash bits apart
    assert not any(entry["cross_class"] for entry in report["duplicates"]["near"])
    assert report["duplicates"]["rejected"]["best_pixel_score"] < 0.75
    # ALL-IDB2's two classes were photographed differently: the background alone gives them away.
    shortcut = report["shortcut"]
    assert shortcut["chance"] == 0.5
    assert shortcut["background_acc"] > 0.7


def test_audit_of_cnmc_lists_only_pixel_duplicates(cnmc_path):
    report = audit_dataset(Dataset.from_folder(cnmc_path))
    duplicates = report["duplicates"]
    # Four pairs are the same cell under two names (checked by eye), each within one subject;
    # the >1,500 hash candidates between distinct cells on black are rejected on the pixels.
    near = [entry["files"] for entry in duplicates["near"]]
    assert sorted(near) == [["HEALTHY/UID_H10_132_5_hem.png", "HEALTHY/UID_H10_165_6_hem.png"],
                            ["HEALTHY/UID_H10_139_1_hem.png", "HEALTHY/UID_H10_172_1_hem.png"],
                            ["HEALTHY/UID_H10_139_3_hem.png", "HEALTHY/UID_H10_172_3_hem.png"],
                            ["HEALTHY/UID_H14_1_1_hem.png", "HEALTHY/UID_H14_2_1_hem.png"]]
    assert duplicates["rejected"]["n"] > 1000 and duplicates["rejected"]["best_pixel_score"] < 0.8
    assert duplicates["exact"] == [] and duplicates["refused"] == []
    assert report["max_folds"] == 2  # two healthy subjects


def test_colour_histograms_are_each_images_own_over_blocks_of_images():
    """The histogram shortcut's features, computed a block of images at a time, are each image's
    own normalised per-channel histogram, whichever block it falls in."""
    from leukdash.data.audit import HISTOGRAM_BINS, HISTOGRAM_BLOCK, histogram_features

    images = np.random.default_rng(3).integers(0, 256, (HISTOGRAM_BLOCK + 5, 12, 10, 3), dtype=np.uint8)
    images[HISTOGRAM_BLOCK] = 255  # an image past the first block, all in the top bin
    expected = np.array([np.concatenate([np.histogram(image[..., c], bins=HISTOGRAM_BINS, range=(0, 256))[0]
                                         for c in range(3)]) / (12 * 10) for image in images])
    features = histogram_features(images)
    assert features.dtype == np.float32 and features.shape == (len(images), 3 * HISTOGRAM_BINS)
    assert np.allclose(features, expected, atol=1e-7)
    assert features[HISTOGRAM_BLOCK].tolist() == ([0.0] * (HISTOGRAM_BINS - 1) + [1.0]) * 3


def test_blank_pictures_are_never_the_same_cell():
    """A black and a white image (or a 1x1 dot, scaled up) have flat detail, whose correlation with
    any other flat detail is 1: they were confirmed as duplicates of each other and joined."""
    blanks = [np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8), np.full((1, 1, 3), 90, np.uint8),
              np.full((40, 60, 3), (120, 60, 140), np.uint8)]
    cell = _cell_on_black(4)
    details = pixel_details([*blanks, cell])
    assert all(pixel_similarity(details[i], details[j]) == 0.0 for i in range(5) for j in range(5) if i != j)
    assert pixel_similarity(details[4], details[4]) == pytest.approx(1.0)  # a cell still matches itself
    confirmed, rejected = confirmed_near_duplicates([*blanks, cell])
    assert confirmed == [] and len(rejected) >= 6  # the blanks' hashes are near, their pixels are not the same cell


def test_identical_bytes_always_share_a_group_however_many_copies(tmp_path):
    # Five byte copies of one file: past the merge limit (2 images here), yet one image.
    paths = []
    for i in range(8):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(b"same" if i < 5 else bytes([i]))
    images = np.stack([_cell_on_black(10 + i) for i in range(8)])
    loaded = LoadedImages(images, np.array([0, 0, 0, 0, 0, 1, 1, 1]), np.arange(8).astype(str).astype(object), paths)
    found = find_duplicates(loaded)
    assert found.merge_limit == 2 and found.refused == []
    assert found.pairs() == [(0, 1), (0, 2), (0, 3), (0, 4)]


def _write_cells(folder, cells):
    folder.mkdir(parents=True)
    for i, cell in enumerate(cells):
        cv2.imwrite(str(folder / f"{i}.png"), cell)


def test_a_run_and_the_audit_name_label_conflicts_and_blank_images(tmp_path):
    """One cell filed under two classes in other bytes (turned), and a blank capture: a run said
    nothing of either (only byte-identical conflicts were warned of), the audit nothing of the blank."""
    from leukdash.config import RunConfig
    from leukdash.engine.runner import run

    cells = [_cell_on_black(40 + i) for i in range(6)]
    _write_cells(tmp_path / "mixed" / "ALL", cells)
    _write_cells(tmp_path / "mixed" / "HEALTHY", [_cell_on_black(50 + i) for i in range(5)] + [np.rot90(cells[0])])
    cv2.imwrite(str(tmp_path / "mixed" / "HEALTHY" / "blank.png"), np.full((64, 64, 3), 200, np.uint8))
    result = run(RunConfig(dataset=str(tmp_path / "mixed"), model="nb", folds=2, image_size=16), n_jobs=1)
    assert ("1 pair(s) of files show one picture under two classes (re-encoded, resized or turned; first: "
            "'ALL/0.png' and 'HEALTHY/5.png'): check their labels; `python -m leukdash audit` lists them"
            in result["dataset"]["warnings"])
    assert ("1 image(s) carry no detail (all one colour): 'HEALTHY/blank.png': a blank picture shows no cell and "
            "skews the out-of-distribution check; remove or replace them" in result["dataset"]["warnings"])
    report = audit_dataset(Dataset.from_folder(tmp_path / "mixed"), folds=2)
    assert report["no_detail"] == ["HEALTHY/blank.png"]
    assert "    HEALTHY/blank.png" in format_audit(report).splitlines()


def test_images_read_small_are_not_called_blank(cnmc_path):
    """The blank check does not depend on the size a run reads images at: at 8 px the fine detail of
    real cells fades, and every one of them was said to carry no detail."""
    from leukdash.data.blank import flat_images

    loaded = Dataset.from_folder(cnmc_path).load(size=8)
    assert flat_images(loaded.images) == []
    assert flat_images([np.full((8, 8, 3), 200, np.uint8), loaded.images[0]]) == [0]


def test_a_run_warns_of_near_duplicate_links_left_unmerged(tmp_path):
    from leukdash.config import RunConfig
    from leukdash.engine.runner import run

    # Four re-cropped copies of one cell chain six near links; the cap (2 images) merges two.
    _write_cells(tmp_path / "chain" / "ALL", [_cell_on_black(1, shift=(i, 0)) for i in range(4)]
                 + [_cell_on_black(20 + i) for i in range(4)])
    _write_cells(tmp_path / "chain" / "HEALTHY", [_cell_on_black(30 + i) for i in range(8)])
    result = run(RunConfig(dataset=str(tmp_path / "chain"), model="nb", folds=2, image_size=16), n_jobs=1)
    assert ("4 near-duplicate link(s) of chain were not merged (the merged group would exceed 2 images): those "
            "images may be validated in another fold than their twin; `python -m leukdash audit` lists them"
            in result["dataset"]["warnings"])
