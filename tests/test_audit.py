"""The dataset audit: counts, sizes, skipped files, exact and near duplicates, shortcut checks."""

import json
import shutil

import cv2
import numpy as np
import pytest

from leukdash.data.audit import (
    NEAR_DUPLICATE_DISTANCE,
    audit_dataset,
    background_mask,
    chance_accuracy,
    exact_duplicates,
    near_duplicates,
    perceptual_hashes,
    shortcut_scores,
)
from leukdash.data.dataset import Dataset
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
    assert 0 <= near[0]["distance"] <= NEAR_DUPLICATE_DISTANCE
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
    assert near_duplicates(perceptual_hashes(images)) == []


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
    assert ("HEALTHY/Im138_0_0.jpg", "HEALTHY/Im146_0_0.jpg") in near
    assert ("ALL/Im028_0_1.jpg", "ALL/Im031_0_1.jpg") in near
    assert not any(entry["cross_class"] for entry in report["duplicates"]["near"])
    # ALL-IDB2's two classes were photographed differently: the background alone gives them away.
    shortcut = report["shortcut"]
    assert shortcut["chance"] == 0.5
    assert shortcut["background_acc"] > 0.7
