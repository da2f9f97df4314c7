"""Runs across several datasets: combined datasets, folds within sources, per-source results, LODO."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from leukdash.cli import main
from leukdash.config import RunConfig
from leukdash.data.discovery import open_dataset
from leukdash.errors import ConfigError, DatasetError
from leukdash.data.folds import fold_plan
from leukdash.engine.runner import resolve, run
from leukdash.data.arrays import load_arrays
from leukdash.engine.fold_planning import joined_groups, plan_folds


def _lab(root: Path, classes=("ALL", "HEALTHY"), subjects=4, per_subject=3, tint=0) -> Path:
    """A class-folder dataset: one subfolder (group) per subject, 16 px images whose brightness
    depends on the class, with a lab-specific tint and noise."""
    rng = np.random.default_rng(abs(hash(root.name)) % 2**32)
    for label, name in enumerate(classes):
        for subject in range(subjects):
            folder = root / name / f"{name[0]}{subject}"
            folder.mkdir(parents=True)
            for image in range(per_subject):
                pixels = np.full((16, 16, 3), 70 + 110 * label, np.float64)
                pixels[..., 0] += tint
                pixels += rng.normal(0, 12, pixels.shape)
                cv2.imwrite(str(folder / f"{image}.png"), np.clip(pixels, 0, 255).astype(np.uint8))
    return root


@pytest.fixture(scope="module")
def labs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("labs")
    found = {"lab_a": _lab(base / "lab_a", subjects=5), "lab_b": _lab(base / "lab_b", subjects=4, tint=40),
             "lab_c": _lab(base / "lab_c", classes=("ALL", "AML")),
             "lab_small": _lab(base / "lab_small", subjects=2, tint=-30)}
    # The same file in two labs: combined, the later lab's copy is left out (it could not share a
    # fold with its original, so a run would validate on an image it trained on).
    shared = next((found["lab_a"] / "ALL" / "A0").iterdir())
    (found["lab_b"] / "ALL" / "A0" / "copy.png").write_bytes(shared.read_bytes())
    # A duplicate within lab_b is still found.
    (found["lab_b"] / "ALL" / "A1" / "copy.png").write_bytes((found["lab_b"] / "ALL" / "A1" / "0.png").read_bytes())
    return found


def _both(labs, first="lab_a", second="lab_b") -> str:
    return f"{labs[first]},{labs[second]}"


def _config(dataset: str, **changes) -> RunConfig:
    base = dict(dataset=dataset, image_size=16, augment_factor=2, folds=3, model="knn", feature_set="pixels")
    return RunConfig(**{**base, **changes})


def test_combined_fingerprint_is_stable_and_independent_of_order(labs):
    forward, backward = open_dataset(_both(labs)), open_dataset(_both(labs, "lab_b", "lab_a"))
    assert forward.fingerprint == backward.fingerprint == open_dataset(_both(labs)).fingerprint
    assert forward.source_names == ("lab_a", "lab_b") and forward.name == "lab_a,lab_b"
    singles = {open_dataset(labs["lab_a"]).fingerprint, open_dataset(labs["lab_b"]).fingerprint}
    assert forward.fingerprint not in singles
    assert len(forward.items) == sum(len(open_dataset(labs[n]).items) for n in ("lab_a", "lab_b")) - 1
    assert forward.counts() == {"ALL": 15 + 13, "HEALTHY": 15 + 12}
    assert forward.warnings() == ["1 image(s) of lab_b have the same bytes as images of lab_a and are left out, so "
                                  "that no run validates on an image it trained on (first: 'ALL/A0/copy.png')"]
    # One config for either order: the same run.
    assert RunConfig(dataset=f" {labs['lab_b']} , {labs['lab_a']}").dataset == _config(_both(labs)).dataset
    assert resolve(_config(_both(labs))).run_id == resolve(_config(_both(labs, "lab_b", "lab_a"))).run_id


def test_groups_keep_their_source_and_join_duplicates(labs):
    dataset = open_dataset(_both(labs))
    arrays = load_arrays(dataset, 16)
    sources = dataset.sources_of(arrays.paths)
    assert all(group.startswith(f"{source}/") for group, source in zip(arrays.groups, sources))
    merged = joined_groups(dataset, arrays)
    names = [dataset.relative(path) for path in arrays.paths]
    i, j = (names.index(name) for name in ("lab_b/ALL/A1/0.png", "lab_b/ALL/A1/copy.png"))
    assert merged[i] == merged[j] == "lab_b/ALL/A1"
    assert len(set(merged)) == len(set(arrays.groups))  # no other duplicates: no other group joined


@pytest.fixture(scope="module")
def twins(tiny_dataset, tmp_path_factory) -> str:
    """Two datasets sharing 15 cells: the tiny set, and another holding its images inverted (no
    duplicates of them) and JPEG copies (quality 70) of the first 3 images of each class."""
    out = tmp_path_factory.mktemp("twins") / "twin"
    for path in sorted(tiny_dataset.glob("*/*.png")):
        (out / path.parent.name).mkdir(parents=True, exist_ok=True)
        image = cv2.imread(str(path))
        cv2.imwrite(str(out / path.parent.name / f"inverted_{path.name}"), 255 - image)
        if len(list((out / path.parent.name).glob("*.jpg"))) < 3:
            cv2.imwrite(str(out / path.parent.name / f"{path.stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 70])
    return f"{tiny_dataset},{out}"


def test_a_copy_in_another_dataset_shares_the_fold_of_its_original(twins):
    from leukdash.data.duplicates import dataset_duplicates

    dataset = open_dataset(twins)
    arrays = load_arrays(dataset, 16)
    sources = dataset.sources_of(arrays.paths)
    copies = [(i, j) for i, j, *_ in dataset_duplicates(dataset).near]  # as the audit lists them
    assert len(copies) == 15 and all(sources[i] != sources[j] for i, j in copies)
    for seed in (0, 1):
        fold_of, _ = plan_folds(_config(twins, augment_factor=1, seed=seed), dataset, arrays)
        assert all(fold_of[i] == fold_of[j] for i, j in copies)


def test_leave_one_dataset_out_trains_on_no_copy_of_the_held_out_images(twins, tiny_dataset, tmp_path, capsys):
    result = run(_config(twins, protocol="lodo", augment_factor=1, k=1), n_jobs=1)
    assert {fold["held_out"]: (fold["n_train"], fold["n_val"]) for fold in result["folds"]} == {
        "tiny": (55 - 15, 40), "twin": (40 - 15, 55)}
    assert "a fold does not train on the copies of the images it validates on: 15 image(s) of the other datasets " \
           "left out when tiny is held out, 15 image(s) of the other datasets left out when twin is held out; " \
           "`python -m leukdash audit` lists them" in result["dataset"]["warnings"]
    # A dataset made only of copies (a little brighter) leaves the other nothing to train on: one line.
    for path in sorted(tiny_dataset.glob("*/*.png")):
        (tmp_path / "recoded" / path.parent.name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "recoded" / path.parent.name / path.name),
                    cv2.convertScaleAbs(cv2.imread(str(path)), alpha=0.9, beta=20))
    assert main(["run", f"{tiny_dataset},{tmp_path / 'recoded'}", "--protocol", "lodo", "--model", "nb",
                 "--image-size", "16", "--augment-factor", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a duplicate of an image of recoded: leaving it out leaves nothing" in err


@pytest.fixture(scope="module")
def subjects(tiny_dataset, tmp_path_factory) -> str:
    """The tiny set, and another of subjects of 4 images (the tiny set inverted, no duplicates of it)
    whose ALL/S0 and CLL/S0 each also hold a JPEG copy of tiny's first ALL image: linking both
    subjects to it would pass the audit's group-size cap, so one link is refused."""
    out = tmp_path_factory.mktemp("subjects") / "subjects"
    for name in sorted(folder.name for folder in tiny_dataset.iterdir() if folder.is_dir()):
        for k, path in enumerate(sorted((tiny_dataset / name).glob("*.png"))):
            (out / name / f"S{k // 4}").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / name / f"S{k // 4}" / f"inverted_{path.name}"), 255 - cv2.imread(str(path)))
    first = cv2.imread(str(sorted((tiny_dataset / "ALL").glob("*.png"))[0]))
    for name, quality in (("ALL", 70), ("CLL", 90)):  # not the same bytes: both near duplicates
        cv2.imwrite(str(out / name / "S0" / "copy.jpg"), first, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return f"{tiny_dataset},{out}"


def test_leave_one_dataset_out_leaves_out_every_copy_and_only_the_copies(subjects):
    """The copy whose link the cap refused is left out too (the folds are the datasets: nothing to
    balance), and the other images of the copies' subjects are kept."""
    from leukdash.engine.fold_planning import _duplicate_links

    assert _duplicate_links(open_dataset(subjects))["refused"]  # the case this test is about
    result = run(_config(subjects, protocol="lodo", model="nb", augment_factor=1), n_jobs=1)
    assert {fold["held_out"]: (fold["n_train"], fold["n_val"]) for fold in result["folds"]} == {
        "tiny": (42 - 2, 40), "subjects": (40 - 1, 42)}
    assert "a fold does not train on the copies of the images it validates on: 1 image(s) of the other datasets " \
           "left out when subjects is held out, 2 image(s) of the other datasets left out when tiny is held out; " \
           "`python -m leukdash audit` lists them" in result["dataset"]["warnings"]


def test_strict_folds_hold_both_sources_and_a_single_source_keeps_its_folds(labs):
    dataset = open_dataset(_both(labs))
    arrays = load_arrays(dataset, 16)
    fold_of, fold_ids = plan_folds(_config(_both(labs)), dataset, arrays)
    sources = dataset.sources_of(arrays.paths)
    assert fold_ids == [0, 1, 2]
    for fold in fold_ids:
        assert set(sources[fold_of == fold]) == {"lab_a", "lab_b"}
    single = open_dataset(labs["lab_a"])
    loaded = load_arrays(single, 16)
    plain = fold_plan(loaded.labels, loaded.groups, single.classes, 3, None, 0)
    with_sources = fold_plan(loaded.labels, loaded.groups, single.classes, 3, None, 0, single.sources_of(loaded.paths))
    assert np.array_equal(plain[0], with_sources[0])


def test_per_source_metrics_agree_with_the_fold_figures(labs):
    result = run(_config(_both(labs)), n_jobs=1)
    for fold in result["folds"]:
        per_source = fold["per_source"]
        assert set(per_source) == {"lab_a", "lab_b"}
        assert sum(s["n_val"] for s in per_source.values()) == fold["n_val"]
        weighted = sum(s["val_acc"] * s["n_val"] for s in per_source.values()) / fold["n_val"]
        assert weighted == pytest.approx(fold["val_acc"])
        for source in per_source.values():
            assert sum(source["per_group_n"].values()) == source["n_val"]
            pooled = sum(source["per_group_recall"][g] * n for g, n in source["per_group_n"].items())
            assert pooled / source["n_val"] == pytest.approx(source["val_acc"])
            assert not any(group.startswith("lab_") for group in source["per_group_recall"])
    summary = result["summary"]["per_source"]
    for name in ("lab_a", "lab_b"):
        values = [f["per_source"][name]["val_acc"] for f in result["folds"]]
        assert summary[name]["val_acc"]["mean"] == pytest.approx(np.mean(values))
        assert summary[name]["folds"] == 3
        pooled = [f["per_source"][name] for f in result["folds"]]
        correct = sum(s["val_acc"] * s["n_val"] for s in pooled)
        assert summary[name]["pooled"]["val_acc"] == pytest.approx(correct / summary[name]["n_val"])
        healthy = sum(s["per_class_recall"]["HEALTHY"] * s["per_class_n"]["HEALTHY"] for s in pooled)
        assert summary[name]["pooled"]["per_class_recall"]["HEALTHY"] == pytest.approx(
            healthy / sum(s["per_class_n"]["HEALTHY"] for s in pooled))
    # Every subject of lab_a validated once: 5 ALL + 5 HEALTHY subjects.
    assert sorted(summary["lab_a"]["per_group_recall"]) == sorted([f"ALL/A{i}" for i in range(5)] + [f"HEALTHY/H{i}" for i in range(5)])


def test_leave_one_dataset_out_has_one_fold_per_source(labs):
    result = run(_config(_both(labs), protocol="lodo", model="svm", augment_factor=1), n_jobs=1)
    held_out = [fold["held_out"] for fold in result["folds"]]
    assert held_out == ["lab_a", "lab_b"]
    for fold in result["folds"]:
        assert list(fold["per_source"]) == [fold["held_out"]]
        assert fold["n_val"] == len(open_dataset(labs[fold["held_out"]]).items) - (fold["held_out"] == "lab_b")
        assert fold["n_train"] + fold["n_val"] == 30 + 25  # lab_b less its copy of a lab_a image
    assert set(result["summary"]["per_source"]) == {"lab_a", "lab_b"}
    # Without augmentation the protocol still changes the folds, so it stays in the run id.
    lodo = _config(_both(labs), protocol="lodo", augment_factor=1)
    assert lodo.canonical()["protocol"] == "lodo" and "folds" not in lodo.canonical()
    assert resolve(lodo).run_id != resolve(lodo.with_changes(protocol="strict")).run_id


def test_bad_combinations_are_refused_with_one_line(labs, capsys):
    with pytest.raises(DatasetError, match="different classes"):
        open_dataset(_both(labs, "lab_a", "lab_c"))
    with pytest.raises(DatasetError, match="named twice"):
        open_dataset(f"{labs['lab_a']},{labs['lab_a']}/")
    with pytest.raises(DatasetError, match="'AML' is not in dataset 'lab_a'"):
        resolve(_config(_both(labs), classes=("ALL", "AML")))
    with pytest.raises(ConfigError, match="needs several datasets"):
        _config(str(labs["lab_a"]), protocol="lodo").validate()
    assert main(["run", _both(labs, "lab_a", "lab_c"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different classes" in err


def test_cli_takes_the_dataset_option_and_shows_each_source(labs, capsys):
    args = ["--model", "knn", "--feature-set", "pixels", "--image-size", "16", "--augment-factor", "2",
            "--folds", "3", "--quiet"]
    assert main(["run", "--dataset", _both(labs), *args]) == 0
    text = capsys.readouterr().out
    assert "lab_a (30 images): val_acc" in text and "lab_b (25 images): val_acc" in text
    assert "per-group recall: ALL/A0" in text
    assert main(["run", _both(labs, "lab_b", "lab_a"), *args, "--json"]) == 0
    import json

    shown = json.loads(capsys.readouterr().out)
    assert shown["cached"] and set(shown["summary"]["per_source"]) == {"lab_a", "lab_b"}
    assert all(set(fold["per_source"]) == {"lab_a", "lab_b"} for fold in shown["folds"])


def test_compare_page_breaks_a_run_down_by_source(labs):
    from streamlit.testing.v1 import AppTest

    result = run(_config(_both(labs)), n_jobs=1)
    single = run(_config(str(labs["lab_a"])), n_jobs=1)
    app = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "streamlit_app.py"), default_timeout=60).run()
    app.switch_page("pages/compare.py").run(timeout=60)
    assert not app.exception, [e.value for e in app.exception]
    table = next(d.value for d in app.dataframe if "Source" in d.value.columns)
    assert list(table["Source"]) == ["lab_a", "lab_b"]  # the single-dataset run adds no row
    expected = result["summary"]["per_source"]["lab_b"]
    row = table[table["Source"] == "lab_b"].iloc[0]
    assert row["Val. accuracy"] == pytest.approx(100 * expected["pooled"]["val_acc"])
    assert row["Recall HEALTHY"] == pytest.approx(100 * expected["pooled"]["per_class_recall"]["HEALTHY"])
    assert row["Fold mean"] == pytest.approx(100 * expected["val_acc"]["mean"])
    assert single["run_id"] in set(next(d.value for d in app.dataframe if "Run id" in d.value.columns)["Run id"])


def test_cli_names_the_held_out_dataset_of_each_lodo_fold(labs, capsys):
    assert main(["run", _both(labs), "--protocol", "lodo", "--model", "nb", "--image-size", "16",
                 "--augment-factor", "1", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "fold 1 validates on lab_a" in text and "fold 2 validates on lab_b" in text
    assert "folds asked" not in text  # lodo makes one fold per dataset, whatever --folds says


def test_balanced_sources_train_each_dataset_as_often_as_the_largest_and_validate_as_pooled(labs):
    from collections import Counter

    from leukdash.engine.fold_planning import fold_inputs
    from leukdash.engine.training import training_rows

    dataset = _both(labs, "lab_a", "lab_small")  # 30 and 12 images
    balanced = _config(dataset, model="nb", augment_factor=1, balance_sources=True)
    inputs = fold_inputs(balanced, open_dataset(dataset))
    result, pooled = run(balanced, n_jobs=1), run(balanced.with_changes(balance_sources=False), n_jobs=1)
    assert result["run_id"] != pooled["run_id"]
    for fold, plain in zip(result["folds"], pooled["folds"]):
        rows = np.flatnonzero(inputs.fold_of != fold["fold"])
        chosen = training_rows(balanced, inputs, rows, fold["fold"])
        per_source = Counter(inputs.sources[chosen])
        largest = max(Counter(inputs.sources[rows]).values())
        assert per_source == {"lab_a": largest, "lab_small": largest}
        # Each image of the smaller source is repeated as often as the others, give or take one; none is left out.
        times = Counter(chosen[inputs.sources[chosen] == "lab_small"]).values()
        assert max(times) - min(times) <= 1 and len(times) == np.sum(inputs.sources[rows] == "lab_small")
        assert set(chosen) == set(rows)
        assert np.array_equal(chosen, training_rows(balanced, inputs, rows, fold["fold"]))  # seeded
        assert fold["n_train_balanced"] == len(chosen) > fold["n_train"] == plain["n_train"] == len(rows)
        # Validation is never resampled: the same images, once each.
        assert fold["oof"]["index"] == plain["oof"]["index"] and fold["n_val"] == plain["n_val"]
    assert "n_train_balanced" not in pooled["folds"][0]
    # A final model trains on every image the same way: the smaller source repeated up to the larger.
    from leukdash.engine.final import refit

    counts = Counter(inputs.sources)
    assert refit(result["run_id"])["n_train_balanced"] == 2 * max(counts.values())
    assert "n_train_balanced" not in refit(pooled["run_id"])


def test_balancing_sources_is_a_setting_of_runs_on_several_datasets(labs, capsys):
    from leukdash.evaluation.labels import run_labels
    from leukdash.reporting.plots.sweeps import sweep_axes

    pooled = _config(_both(labs))
    assert "balance_sources" not in pooled.canonical()  # runs from before the setting keep their ids
    assert pooled.with_changes(balance_sources=True).canonical()["balance_sources"] is True
    with pytest.raises(ConfigError, match="balance_sources evens out the datasets of a run on several datasets"):
        _config(str(labs["lab_a"]), balance_sources=True).validate()
    with pytest.raises(ConfigError, match="balance_sources must be true or false"):
        pooled.with_changes(balance_sources="yes").validate()
    assert sweep_axes([pooled.to_dict(), pooled.with_changes(balance_sources=True).to_dict()]) == ["balance_sources"]

    args = ["--model", "nb", "--image-size", "16", "--augment-factor", "1", "--folds", "3", "--quiet"]
    assert main(["run", _both(labs), *args, "--balance-sources"]) == 0
    assert "sources balanced" in capsys.readouterr().out.splitlines()[0]
    assert main(["run", str(labs["lab_a"]), *args, "--balance-sources"]) == 2
    assert "this run has one" in capsys.readouterr().err
    both = [run(pooled.with_changes(model="nb", augment_factor=1, balance_sources=on), n_jobs=1) for on in (False, True)]
    assert [label.split(" · ")[1] for label in run_labels(both)] == ["sources pooled", "sources balanced"]


def test_a_lodo_run_whose_folds_trained_on_other_images_is_not_resumed(subjects):
    """A lodo run started when a fold left out the copies' whole subjects (37 images trained on
    when tiny is held out), resumed now that it leaves out the copies only (40): refused, one line."""
    from leukdash.engine.store import RunStore
    from leukdash.errors import RunError

    config = _config(subjects, protocol="lodo", model="nb", augment_factor=1, seed=7)
    run_id = run(config, n_jobs=1)["run_id"]
    store = RunStore()
    store.fold_path(run_id, 0).unlink()  # killed before its last fold
    stored = store.read_fold(run_id, 1)
    assert stored["held_out"] == "tiny" and stored["n_train"] == 40
    store.write_fold(run_id, 1, {**stored, "n_train": 37}, store.model_path(run_id, 1, "skops"))
    with pytest.raises(RunError, match=rf"^run {run_id}: its stored fold 2 trained on 37 images, that fold trains on "
                                       r"40 now \(.*\); resuming it would mix two training rules in one run: start it "
                                       r"afresh by deleting its folder \S+$"):
        run(config, n_jobs=1)
