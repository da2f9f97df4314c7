"""Decoding, dataset folders, ALL-IDB names, groups, fingerprints and discovery."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from leukdash.cli import main
from leukdash.config import RunConfig
from leukdash.data.dataset import Dataset
from leukdash.engine.runner import resolve
from leukdash.data.squares import square_resize
from leukdash.data.decode import decode_image
from leukdash.data.discovery import discover_datasets, open_dataset
from leukdash.service.uploads import extract_zip
from leukdash.errors import DatasetError, ImageDecodeError
from leukdash.data.folds import assign_folds, holdout_split


def _disc_image(size=40, colour=(200, 40, 160)) -> np.ndarray:
    """An RGB image with a coloured disc, so orientation and channel order can be checked."""
    image = np.full((size, size, 3), 230, np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 4, colour, -1)
    return image


def _write_rgb(path: Path, rgb: np.ndarray, params=()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), list(params))
    return path


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    """A class folder of good and bad files, as the issue lists them."""
    folder = tmp_path / "mixed" / "ALL"
    good = _write_rgb(folder / "good.jpg", _disc_image())
    (folder / "corrupt.jpg").write_bytes(good.read_bytes()[:200] + b"\x00garbage" * 50)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.tif").write_text("this is a text file, not a TIFF\n")
    deep = (np.arange(32 * 32 * 3, dtype=np.uint16).reshape(32, 32, 3) * 60) % 65535
    assert cv2.imwrite(str(folder / "deep16.tif"), deep)
    rgba = np.dstack([cv2.cvtColor(_disc_image(), cv2.COLOR_RGB2BGR), np.full((40, 40), 255, np.uint8)])
    rgba[:5, :5, 3] = 0  # a transparent corner
    assert cv2.imwrite(str(folder / "alpha.png"), rgba)
    assert cv2.imwrite(str(folder / "gray.bmp"), np.tile(np.arange(40, dtype=np.uint8) * 6, (40, 1)))
    _write_rgb(tmp_path / "mixed" / "HEALTHY" / "h.png", _disc_image(colour=(90, 20, 120)))
    return tmp_path / "mixed"


def test_bad_files_are_listed_and_good_ones_load_as_rgb_uint8(mixed_folder):
    loaded = Dataset.from_folder(mixed_folder).load()
    names = [p.name for p in loaded.paths]
    assert sorted(names) == ["alpha.png", "deep16.tif", "good.jpg", "gray.bmp", "h.png"]
    for image in loaded.images:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    reasons = {s.path.name: s.reason for s in loaded.skipped}
    assert set(reasons) == {"corrupt.jpg", "empty.png", "notes.tif"}
    assert "empty" in reasons["empty.png"]
    assert "not an image" in reasons["notes.tif"]
    assert "truncated" in reasons["corrupt.jpg"] or "corrupt" in reasons["corrupt.jpg"]


def test_decoding_keeps_colours_and_converts_modes(mixed_folder):
    folder = mixed_folder / "ALL"
    good = decode_image(folder / "good.jpg")
    centre = good[20, 20].astype(int)
    assert centre[0] > 150 and centre[1] < 90 and centre[2] > 110  # red-magenta, so RGB order is right
    alpha = decode_image(folder / "alpha.png")
    assert (alpha[0, 0] == 255).all()  # transparent pixels become white
    gray = decode_image(folder / "gray.bmp")
    assert (gray[..., 0] == gray[..., 1]).all() and gray[0, 10, 0] == 60
    deep = decode_image(folder / "deep16.tif")
    raw = cv2.imread(str(folder / "deep16.tif"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    assert np.array_equal(deep, cv2.cvtColor((raw // 257).astype(np.uint8), cv2.COLOR_BGR2RGB))


def test_decode_refuses_oversized_images_before_decoding(tmp_path):
    path = _write_rgb(tmp_path / "big.png", np.zeros((300, 300, 3), np.uint8))
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(path, max_pixels=50_000)
    assert decode_image(path.read_bytes()).shape == (300, 300, 3)


def test_truncated_jpeg_is_refused(tmp_path):
    data = _write_rgb(tmp_path / "full.jpg", _disc_image(64)).read_bytes()
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(data[: len(data) * 2 // 3])


def test_a_pixel_layout_not_read_says_what_to_save_it_as():
    import io

    from PIL import Image

    tiff = io.BytesIO()
    Image.fromarray(np.arange(100, dtype=np.int32).reshape(10, 10)).save(tiff, "TIFF")  # 32-bit integer grey
    with pytest.raises(ImageDecodeError, match=r"^unsupported pixel type int32: save it as an 8- or 16-bit TIFF or PNG$"):
        decode_image(tiff.getvalue())


def _allidb_folder(root: Path, n_per_class=6, variants=2) -> Path:
    for number in range(1, 2 * n_per_class + 1):
        label = 1 if number <= n_per_class else 0
        for variant in range(variants):
            _write_rgb(root / f"Im{number:03d}_{variant}_{label}.jpg", _disc_image(colour=(150, 30 * label, 90 + variant)))
    return root


def test_allidb_names_give_labels_and_group_variants_together(tmp_path):
    dataset = Dataset.from_folder(_allidb_folder(tmp_path / "allidb"))
    assert dataset.kind == "allidb" and dataset.classes == ("ALL", "HEALTHY")
    assert dataset.counts() == {"ALL": 12, "HEALTHY": 12}
    groups = dataset.groups
    assert len(set(groups)) == 12 and "Im001" in groups
    folds = assign_folds(dataset.labels, groups, 3, seed=0)
    for group in set(groups):
        assert len(set(folds[groups == group])) == 1  # both variants of an image share a fold


def test_groups_csv_and_patient_subfolders(tmp_path):
    root = tmp_path / "byclass"
    for cls in ("CLL", "HEALTHY"):
        for patient in ("p1", "p2"):
            for i in range(2):
                _write_rgb(root / cls / patient / f"{i}.png", _disc_image())
    _write_rgb(root / "CLL" / "loose.png", _disc_image())
    (root / "groups.csv").write_text("file,group\nCLL/loose.png,patient-x\n")
    dataset = Dataset.from_folder(root)
    by_name = {dataset.relative(item.path): item.group for item in dataset.items}
    assert by_name["CLL/p1/0.png"] == by_name["CLL/p1/1.png"] == "CLL/p1"
    assert by_name["CLL/loose.png"] == "patient-x"


def test_images_beside_the_class_folders_are_reported_left_out_not_used(tmp_path, capsys, monkeypatch):
    root = tmp_path / "stray"
    for cls in ("ALL", "HEALTHY"):
        for i in range(2):
            _write_rgb(root / cls / f"{i}.png", _disc_image())
    for name in ("UID_16_8_1_all.png", "Im001_0_1.jpg"):  # whose class only a name would hint at
        _write_rgb(root / name, _disc_image())
    (root / "groups.csv").write_text("file,group\nALL/0.png,p1\n")
    for name in ("README.txt", "SOURCE.md", ".DS_Store"):  # not images: not reported
        (root / name).write_text("notes")
    assert main(["audit", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_images"] == 4 and report["classes"] == {"ALL": 2, "HEALTHY": 2}
    reason = "not in a class folder (the dataset's classes are its subfolders)"
    assert report["skipped"] == [{"path": "Im001_0_1.jpg", "reason": reason},
                                 {"path": "UID_16_8_1_all.png", "reason": reason}]
    assert reason in Dataset.from_folder(root).left_out()[0]  # the warning `run` prints
    monkeypatch.setenv("LEUKDASH_DATA", str(tmp_path))
    assert main(["datasets"]) == 0  # the listing says so too, as a note beside its counts
    listed = capsys.readouterr()
    assert "stray" in listed.out and "2 of 6 file(s) of stray were left out" in listed.err and reason in listed.err


def test_fingerprint_changes_with_any_file(tmp_path):
    root = _allidb_folder(tmp_path / "fp", n_per_class=3, variants=1)
    before = Dataset.from_folder(root).fingerprint
    assert Dataset.from_folder(root).fingerprint == before
    target = root / "Im002_0_1.jpg"
    target.write_bytes(target.read_bytes() + b"\x00")
    assert Dataset.from_folder(root).fingerprint != before


def test_one_class_and_too_few_images_are_clear_errors(tmp_path):
    single = tmp_path / "single"
    for i in range(3):
        _write_rgb(single / "ALL" / f"{i}.png", _disc_image())
    with pytest.raises(DatasetError, match="at least 2"):
        resolve(RunConfig(dataset=str(single), model="nb", folds=2))
    for i in range(2):
        _write_rgb(single / "AML" / f"{i}.png", _disc_image())
    with pytest.raises(DatasetError, match="class 'AML' .* 2 image"):
        resolve(RunConfig(dataset=str(single), model="nb", folds=3))
    empty = tmp_path / "empty"
    (empty / "ALL").mkdir(parents=True)
    (empty / "ALL" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="no images"):
        Dataset.from_folder(empty)


def test_subset_relabels_in_requested_order(mixed_folder):
    dataset = Dataset.from_folder(mixed_folder)
    flipped = dataset.subset(["HEALTHY", "ALL"])
    assert flipped.classes == ("HEALTHY", "ALL")
    assert flipped.counts() == {"HEALTHY": 1, "ALL": 7}
    with pytest.raises(DatasetError, match="'CML' is not in"):
        dataset.subset(["CML", "ALL"])


def test_square_resize_pads_instead_of_squashing():
    tall = np.zeros((60, 30, 3), np.uint8)
    tall[:, :, 1] = 255
    tall[24:36, 9:21] = 255  # a white square in the middle
    out = square_resize(tall, 30)
    assert out.shape == (30, 30, 3)
    white = (out == 255).all(axis=2)
    ys, xs = np.nonzero(white)
    assert abs((ys.max() - ys.min()) - (xs.max() - xs.min())) <= 1  # still a square


def test_folds_are_stratified_deterministic_and_holdout_has_a_test_part():
    labels = np.repeat([0, 1, 2], 20)
    groups = np.arange(60).astype(str)
    folds = assign_folds(labels, groups, 5, seed=3)
    assert np.array_equal(folds, assign_folds(labels, groups, 5, seed=3))
    assert not np.array_equal(folds, assign_folds(labels, groups, 5, seed=4))
    for fold in range(5):
        assert np.bincount(labels[folds == fold], minlength=3).tolist() == [4, 4, 4]
    split = holdout_split(labels, groups, 0.2, seed=0)
    assert (split == 0).sum() == 12


def test_discovery_lists_data_roots_and_opens_paths(tmp_path, monkeypatch, mixed_folder):
    monkeypatch.setenv("LEUKDASH_DATA", os.pathsep.join([str(tmp_path), str(tmp_path / "missing")]))
    found = discover_datasets()
    assert list(found)[0] == "synthetic" and found["mixed"] == mixed_folder
    assert open_dataset("mixed").name == "mixed"
    assert open_dataset(str(mixed_folder / "..") + "/mixed").root == mixed_folder.resolve()
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        open_dataset("nope")


def test_uploaded_zip_becomes_a_dataset(tmp_path, mixed_folder):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in mixed_folder.rglob("*.png"):
            archive.write(path, f"mine/{path.relative_to(mixed_folder)}")
    folder = extract_zip(buffer.getvalue(), "mine")
    assert Dataset.from_folder(folder).classes == ("ALL", "HEALTHY")
    assert extract_zip(buffer.getvalue(), "mine") == folder
    with pytest.raises(DatasetError, match="not a zip"):
        extract_zip(b"plain text", "bad")


def test_a_dataset_filed_by_patient_is_discovered_and_a_zip_of_it_unwrapped(tmp_path, monkeypatch):
    import io
    import zipfile

    root = tmp_path / "data" / "patients"
    for cls, patients in (("ALL", ("p1", "p2")), ("HEALTHY", ("p3", "p4"))):
        for patient in patients:
            for i in range(2):
                _write_rgb(root / cls / patient / f"{i}.png", _disc_image())
    (tmp_path / "data" / "notes").mkdir()
    (tmp_path / "data" / "notes" / "deep").mkdir()
    (tmp_path / "data" / "notes" / "deep" / "readme.txt").write_text("no image here")
    monkeypatch.setenv("LEUKDASH_DATA", str(tmp_path / "data"))
    for cls in ("ALL", "HEALTHY"):  # thousands of patients' folders: the first hold images, the others none yet
        for i in range(5, 5_006):
            (root / cls / f"p{i}").mkdir()
    found = discover_datasets()
    assert found.get("patients") == root and "notes" not in found
    assert open_dataset("patients").counts() == {"ALL": 4, "HEALTHY": 4}

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in root.rglob("*.png"):
            archive.write(path, f"wrapper/{path.relative_to(root)}")
    folder = extract_zip(buffer.getvalue(), "wrapped")
    assert folder.name == "wrapper" and Dataset.from_folder(folder).counts() == {"ALL": 4, "HEALTHY": 4}


def test_real_allidb2_copy(allidb2_path):
    dataset = Dataset.from_folder(allidb2_path)
    assert dataset.counts() == {"ALL": 130, "HEALTHY": 130}
    assert len(set(dataset.groups)) == 260
    loaded = dataset.load(32)
    assert loaded.images.shape == (260, 32, 32, 3) and not loaded.skipped


def test_merge_groups_is_transitive_and_order_free():
    from leukdash.data.folds import merge_groups

    groups = np.array(["a", "b", "c", "d", "e"], dtype=object)
    merged = merge_groups(groups, [(3, 1), (1, 4)])
    assert merged.tolist() == ["a", "b", "c", "b", "b"]
    assert merge_groups(groups, [(1, 4), (3, 1)]).tolist() == merged.tolist()


def test_duplicate_images_never_straddle_folds(tmp_path):
    from leukdash.config import RunConfig
    from leukdash.data.arrays import load_arrays
    from leukdash.engine.fold_planning import duplicate_pairs, plan_folds

    root = tmp_path / "dups"
    rng = np.random.default_rng(0)
    for cls in ("ALL", "HEALTHY"):
        for i in range(6):
            image = cv2.GaussianBlur(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8), (9, 9), 3)
            _write_rgb(root / cls / f"{i}.png", image)
    (root / "HEALTHY" / "copy.png").write_bytes((root / "HEALTHY" / "2.png").read_bytes())
    dataset = Dataset.from_folder(root)
    names = [dataset.relative(item.path) for item in dataset.items]
    pairs = duplicate_pairs(dataset)
    assert [(names[i], names[j]) for i, j in pairs] == [("HEALTHY/2.png", "HEALTHY/copy.png")]
    for seed in range(5):
        folds, _ = plan_folds(RunConfig(dataset=str(root), folds=3, seed=seed), dataset, load_arrays(dataset, 16))
        assert folds[names.index("HEALTHY/2.png")] == folds[names.index("HEALTHY/copy.png")]


def test_folds_are_as_many_as_the_fewest_groups_of_a_class_allow():
    from leukdash.data.folds import fold_plan

    # Like cnmc_dev: seven patients with leukemia, two healthy subjects.
    labels = np.repeat([0, 1], [21, 20])
    groups = np.array([f"p{i % 7}" for i in range(21)] + [f"h{i % 2}" for i in range(20)], dtype=object)
    folds, fold_ids = fold_plan(labels, groups, ("ALL", "HEALTHY"), 5, None, seed=0)
    assert fold_ids == [0, 1]
    for fold in fold_ids:
        assert set(labels[folds == fold]) == {0, 1}  # every fold validates on both classes
    for group in set(groups):
        assert len(set(folds[groups == group])) == 1
    one_subject = np.where(labels == 1, "h0", groups).astype(object)
    with pytest.raises(DatasetError) as error:
        fold_plan(labels, one_subject, ("ALL", "HEALTHY"), 5, None, seed=0, name="d")
    assert str(error.value) == ("class 'HEALTHY' of d has all its images in one group ('h0'): grouped folds cannot "
                                "validate on it")


def test_every_validation_fold_holds_every_class_when_subjects_span_classes():
    from leukdash.data.folds import fold_plan

    # Like a groups file whose middle subject has images of both classes: the stratified draw puts
    # the two one-class subjects apart, and a fold of one class reported a made-up recall of 0.
    labels = np.repeat([0, 1], [8, 8])
    groups = np.array(["s1"] * 6 + ["s2"] * 4 + ["s3"] * 6, dtype=object)
    for seed in range(5):
        folds, fold_ids = fold_plan(labels, groups, ("ALL", "HEALTHY"), 5, None, seed=seed)
        assert fold_ids == [0, 1]
        assert all(set(labels[folds == fold]) == {0, 1} for fold in fold_ids)
        assert all(len(set(folds[groups == group])) == 1 for group in set(groups))
        test = fold_plan(labels, groups, ("ALL", "HEALTHY"), 5, 0.5, seed=seed)[0] == 0
        assert set(labels[test]) == set(labels[~test]) == {0, 1}


def test_folds_are_fewer_when_no_grouping_gives_more_folds_every_class():
    from leukdash.data.folds import fold_plan

    # Three classes, each in three groups, yet three folds cannot each hold all three: a fold with
    # one two-class group lacks a class, and three of them cannot make two whole folds.
    groups = np.array(["ab"] * 4 + ["ac"] * 4 + ["bc"] * 4 + ["abc"] * 6, dtype=object)
    labels = np.array([0, 1] * 2 + [0, 2] * 2 + [1, 2] * 2 + [0, 1, 2] * 2)
    folds, fold_ids = fold_plan(labels, groups, ("A", "B", "C"), 3, None, seed=0)
    assert fold_ids == [0, 1]
    assert all(set(labels[folds == fold]) == {0, 1, 2} for fold in fold_ids)
    two_class_groups = groups[:12]
    with pytest.raises(DatasetError) as error:
        fold_plan(labels[:12], two_class_groups, ("A", "B", "C"), 2, None, seed=0, name="d")
    assert str(error.value) == ("no split of the image groups of d into 2 folds gives each fold every class (its "
                                "groups hold images of several classes): grouped folds cannot validate on every "
                                "class; check its groups file (a group is one subject)")


def _triangle_groups(k: int):
    """``3 * k`` groups (subjects) of one image of each of two of three classes: (A, B), (A, C), (B, C),
    k times. A fold needs two of them, so ``3 * k // 2`` folds is the most that each hold every class,
    though each class lies in ``2 * k`` groups."""
    pairs = [(0, 1), (0, 2), (1, 2)] * k
    labels = np.array([c for pair in pairs for c in pair])
    groups = np.repeat([f"g{g:03d}" for g in range(len(pairs))], 2).astype(object)
    return labels, groups


def test_fewer_folds_are_found_in_a_few_complete_searches(monkeypatch):
    from leukdash.data import folds as folds_module

    # Counting down from the 40 folds asked, every count from 40 to 31 spent the whole search
    # budget: 43 s with nothing on screen. Bisection needs a few searches, each complete.
    searches = []
    search = folds_module._search_covering

    def counted(*args):
        found = search(*args)
        searches.append(found[1])
        return found

    monkeypatch.setattr(folds_module, "_search_covering", counted)
    labels, groups = _triangle_groups(20)
    folds, fold_ids = folds_module.fold_plan(labels, groups, ("A", "B", "C"), 40, None, seed=0)
    assert fold_ids == list(range(30))
    assert all(set(labels[folds == fold]) == {0, 1, 2} for fold in fold_ids)
    assert all(len(set(folds[groups == group])) == 1 for group in set(groups))
    assert len(searches) <= 7 and all(searches)  # complete: none gave up at MAX_SEARCH_STEPS
    assert np.array_equal(folds, folds_module.fold_plan(labels, groups, ("A", "B", "C"), 40, None, seed=0)[0])


def test_holdout_searches_a_test_part_and_says_why_when_there_is_none():
    from leukdash.data.folds import fold_plan

    # Three one-class subjects per class: a 20% test part is one of five folds, which cannot each hold
    # every class; one test part that does (and leaves every class to train on) is enough.
    labels = np.repeat([0, 1, 2], 12)
    groups = np.repeat([f"s{i}" for i in range(9)], 4).astype(object)
    for seed in range(5):
        test = fold_plan(labels, groups, ("A", "B", "C"), 5, 0.2, seed=seed)[0] == 0
        assert set(labels[test]) == set(labels[~test]) == {0, 1, 2}
        assert all(len(set(test[groups == group])) == 1 for group in set(groups))
    one_subject = np.where(labels == 2, "s8", groups).astype(object)
    with pytest.raises(DatasetError, match="class 'C' of d has all its images in one group"):
        fold_plan(labels, one_subject, ("A", "B", "C"), 5, 0.2, seed=0, name="d")
    labels, groups = _triangle_groups(1)  # no split into two parts gives both every class
    with pytest.raises(DatasetError) as error:
        fold_plan(labels, groups, ("A", "B", "C"), 5, 0.5, seed=0, name="d")
    assert str(error.value) == ("no split of the image groups of d into a test part and the rest gives both every "
                                "class (its groups hold images of several classes): a holdout cannot test on every "
                                "class; check its groups file (a group is one subject)")


def test_a_search_that_gives_up_claims_no_impossibility(monkeypatch):
    from leukdash.data import folds as folds_module

    monkeypatch.setattr(folds_module, "MAX_SEARCH_STEPS", 1)  # any search needing two placements gives up
    labels, groups = _triangle_groups(1)
    with pytest.raises(DatasetError) as error:
        folds_module.fold_plan(labels, groups, ("A", "B", "C"), 2, None, seed=0, name="d")
    assert str(error.value) == ("the search for 2 grouped folds of d that each hold every class gave up after 1 "
                                "placements (its groups hold images of several classes): check its groups file (a "
                                "group is one subject)")
    with pytest.raises(DatasetError) as error:
        folds_module.fold_plan(labels, groups, ("A", "B", "C"), 2, 0.5, seed=0, name="d")
    assert str(error.value) == ("the search for a grouped 50% test part of d that, like the rest, holds every class "
                                "gave up after 1 placements (its groups hold images of several classes): use "
                                "cross-validation (--folds) instead")


def test_byte_copies_join_their_group_whatever_its_size_and_the_error_says_so(tmp_path):
    from leukdash.data.arrays import load_arrays
    from leukdash.engine.fold_planning import plan_folds

    # A backup folder (one group) of every ALL image: identical bytes always share a fold, even
    # when that joins all of ALL into one group (the cap on merged groups is for near duplicates).
    root = tmp_path / "bk"
    rng = np.random.default_rng(0)
    for cls in ("ALL", "HEALTHY"):
        for i in range(3):
            noise = rng.integers(0, 255, (48, 48, 3), np.uint8)
            _write_rgb(root / cls / f"{i}.png", cv2.GaussianBlur(noise, (9, 9), 3))
    (root / "ALL" / "backup").mkdir()
    for i in range(3):
        (root / "ALL" / "backup" / f"{i}.png").write_bytes((root / "ALL" / f"{i}.png").read_bytes())
    dataset = Dataset.from_folder(root)
    with pytest.raises(DatasetError) as error:
        plan_folds(RunConfig(dataset=str(root), folds=2), dataset, load_arrays(dataset, 16))
    assert str(error.value) == (
        "class 'ALL' of bk has all its images in one group ('ALL/0.png') (identical or near-duplicate images joined "
        "4 groups into 1: `python -m leukdash audit` lists them): grouped folds cannot validate on it")


@pytest.mark.parametrize("counts, said", [
    ([5, 3, 4], "class 'B' of d has 3 image(s), fewer than the 5 folds: use 3 folds or fewer"),
    ([5, 4, 1], "class 'C' of d has 1 image(s), fewer than the 5 folds: add images to it, or leave it out of the "
                "run's classes"),
    ([5, 0, 2], "class 'B' of d has 0 image(s), fewer than the 5 folds: add images to it, or leave it out of the "
                "run's classes"),
])
def test_too_few_images_for_the_folds_names_the_smallest_class_and_what_would_work(counts, said):
    from leukdash.data.dataset import check_class_counts
    from leukdash.errors import DatasetError

    labels = np.repeat(np.arange(3), counts)
    with pytest.raises(DatasetError) as refused:
        check_class_counts(["A", "B", "C"], labels, 5, "d")
    assert str(refused.value) == said
    if min(counts) >= 2:  # the advice works: that many folds pass the check
        check_class_counts(["A", "B", "C"], labels, min(counts), "d")


def test_a_class_name_in_the_wrong_case_is_refused_with_the_name_that_would_work(tiny_dataset, tmp_path):
    """Class names are folder names, case-sensitive: 'all' for 'ALL' is refused (never guessed),
    and the refusal names 'ALL'; an external set whose folders are lower-case, likewise."""
    import shutil

    from leukdash.errors import DatasetError
    from leukdash.evaluation.external_classes import match_classes

    dataset = Dataset.from_folder(tiny_dataset)
    with pytest.raises(DatasetError, match=r"class 'all' is not in dataset 'tiny' .*; did you mean 'ALL'\? "
                                           r"\(class names are case-sensitive\)$"):
        dataset.subset(["all", "HEALTHY"])
    with pytest.raises(DatasetError, match=r"class 'NOPE' is not in dataset 'tiny' \(classes: 'ALL', [A-Z', ]+\)$"):
        dataset.subset(["NOPE", "HEALTHY"])
    for name in ("ALL", "HEALTHY"):
        shutil.copytree(tiny_dataset / name, tmp_path / "other" / name.lower())
    with pytest.raises(DatasetError, match=r"class names are case-sensitive: name its folders 'ALL' \(not 'all'\), "
                                           r"'HEALTHY' \(not 'healthy'\)$"):
        match_classes(["ALL", "HEALTHY"], Dataset.from_folder(tmp_path / "other"))


def test_a_class_folder_named_with_a_comma_or_outer_spaces_is_explained_when_it_cannot_be_named(tiny_dataset, tmp_path,
                                                                                                 capsys):
    import shutil

    root = tmp_path / "sp"
    for source, name in (("ALL", "ALL"), ("AML", "AML,CML"), ("HEALTHY", "HEALTHY ")):
        shutil.copytree(tiny_dataset / source, root / name)
    classes = "(classes: 'ALL', 'AML,CML', 'HEALTHY ')"
    assert main(["run", str(root), "--classes", "ALL,HEALTHY", "--model", "nb", "--quiet"]) == 2
    assert capsys.readouterr().err == (f"error: class 'HEALTHY' is not in dataset 'sp' {classes}; did you mean "
                                       "'HEALTHY '? (its folder name has spaces around it, which --classes drops: "
                                       "rename the folder)\n")
    assert main(["run", str(root), "--classes", "ALL,AML,CML", "--model", "nb", "--quiet"]) == 2
    assert capsys.readouterr().err == (f"error: class 'AML' is not in dataset 'sp' {classes}; the class 'AML,CML' "
                                       "has a comma in its folder name, which --classes reads as two classes: rename "
                                       "the folder\n")


def test_a_copy_through_a_mac_with_names_in_the_other_unicode_form_is_the_same_run(tiny_dataset, tmp_path, capsys):
    """macOS writes 'é' in a name as 'e' and a combining accent (NFD), other systems as one
    character (NFC): a copy with its names in the other form has the same classes in the same
    order, the same groups and fingerprint, and is the same run; its files are still read."""
    import shutil
    import unicodedata

    from leukdash.data.arrays import load_arrays

    answers = []
    for form in ("NFC", "NFD"):
        root = tmp_path / form
        shutil.copytree(tiny_dataset / "ALL", root / "lymphoblaste")
        shutil.copytree(tiny_dataset / "HEALTHY", root / unicodedata.normalize(form, "éosinophile"))
        patient = root / "lymphoblaste" / unicodedata.normalize(form, "patiënt")
        patient.mkdir()
        for path in sorted((root / "lymphoblaste").glob("*.png"))[:3]:
            path.rename(patient / unicodedata.normalize(form, f"é{path.name}"))
        assert main(["run", str(root), "--model", "knn", "--k", "2", "--image-size", "16", "--folds", "3",
                     "--augment-factor", "1", "--json", "--quiet"]) == 0
        answer = json.loads(capsys.readouterr().out)
        dataset = Dataset.from_folder(root)
        answers.append((answer["run_id"], answer["dataset"]["fingerprint"], list(dataset.classes),
                        sorted(set(dataset.groups)), [dataset.relative(item.path) for item in dataset.items]))
        assert all(path.is_file() for path in load_arrays(dataset, 16).paths)  # the cache the NFC copy wrote
    assert answers[0] == answers[1]
    assert answers[1][2] == ["lymphoblaste", "éosinophile"] and "lymphoblaste/patiënt" in answers[1][3]


def test_groups_csv_names_files_in_either_unicode_form(tiny_dataset, tmp_path):
    import shutil
    import unicodedata

    root = tmp_path / "mac"
    shutil.copytree(tiny_dataset / "ALL", root / unicodedata.normalize("NFD", "blasté"))
    shutil.copytree(tiny_dataset / "HEALTHY", root / "HEALTHY")
    first = sorted((root / unicodedata.normalize("NFD", "blasté")).glob("*.png"))[0].name
    (root / "groups.csv").write_text(f"file,group\nblasté/{first},patient7\n", encoding="utf-8")
    dataset = Dataset.from_folder(root)
    assert [item.group for item in dataset.items if item.path.name == first] == ["patient7"]
    assert not any("name no image" in note for note in dataset.notes)


def test_two_class_folders_named_alike_but_for_unicode_form_are_refused(tiny_dataset, tmp_path, capsys):
    import shutil
    import unicodedata

    root = tmp_path / "forms"
    for source, form in (("ALL", "NFC"), ("HEALTHY", "NFD")):
        shutil.copytree(tiny_dataset / source, root / unicodedata.normalize(form, "café"))
    shutil.copytree(tiny_dataset / "AML", root / "AML")
    message = (f"{root} holds class folders named 'café' in two Unicode forms (one written by macOS, one "
               "elsewhere), which read as one name: move the images of one into the other")
    with pytest.raises(DatasetError) as error:
        Dataset.from_folder(root)
    assert str(error.value) == message
    assert main(["run", str(root), "--model", "nb", "--quiet"]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_classes_typed_in_either_unicode_form_are_one_run(tiny_dataset, tmp_path):
    import shutil
    import unicodedata

    root = tmp_path / "mac"
    shutil.copytree(tiny_dataset / "ALL", root / unicodedata.normalize("NFD", "blasté"))
    shutil.copytree(tiny_dataset / "HEALTHY", root / "HEALTHY")
    typed = [resolve(RunConfig(dataset=str(root), model="nb", classes=(unicodedata.normalize(form, "blasté"),
                                                                        "HEALTHY")))
             for form in ("NFC", "NFD")]
    assert typed[0].run_id == typed[1].run_id
    assert typed[0].config.classes == typed[1].config.classes == (unicodedata.normalize("NFC", "blasté"), "HEALTHY")


def test_class_folders_named_alike_but_for_case_are_warned_about(tiny_dataset, tmp_path, capsys):
    import shutil
    import unicodedata

    root = tmp_path / "alike"
    for source, name in (("ALL", "ALL"), ("AML", "all"), ("CLL", unicodedata.normalize("NFD", "Célula")),
                         ("CML", unicodedata.normalize("NFC", "célula")), ("HEALTHY", "HEALTHY")):
        shutil.copytree(tiny_dataset / source, root / name)
    warnings = [w for w in Dataset.from_folder(root).warnings() if "differ only in case" in w]
    assert len(warnings) == 2 and "'ALL', 'all'" in warnings[0]
    assert main(["run", str(root), "--model", "nb", "--image-size", "16", "--folds", "2", "--augment-factor", "1",
                 "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"]["warnings"] == Dataset.from_folder(root).warnings()
    assert main(["audit", str(root)]) == 0
    assert f"  note: {warnings[0]}" in capsys.readouterr().out.splitlines()
