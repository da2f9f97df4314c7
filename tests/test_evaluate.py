"""External test, out-of-distribution check and known images, on tiny generated sets (and on the
real ALL-IDB2 / C-NMC copies when LEUKDASH_DATA has them)."""

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from leukdash.cli import main
from leukdash.config import AugmentConfig, RunConfig
from leukdash.data.decode import decode_image
from leukdash.errors import DatasetError
from leukdash.evaluation.answer import conflicting_labels
from leukdash.evaluation.evaluate import METHOD_VERSION, evaluate, result_path, stored_evaluations
from leukdash.evaluation.evaluation_text import format_evaluation, groups_text, interval_text, outcome_sentence
from leukdash.evaluation.external_metrics import external_metrics, group_bootstrap
from leukdash.evaluation.ood import TrainingDistribution
from leukdash.evaluation.predict import known_image, predict_images
from leukdash.engine.runner import run
from leukdash.engine.store import RunStore


def tiny_config(dataset: Path, **changes) -> RunConfig:
    return RunConfig(dataset=str(dataset), model="nb", feature_set="features", image_size=32, augment_factor=1,
                     augment=AugmentConfig.off(), folds=2, **changes)


@pytest.fixture(scope="module")
def other_lab(tiny_dataset, tmp_path_factory) -> Path:
    """The tiny set as another lab would see it: colours inverted (dark background), two
    subjects per class, listed in groups.csv."""
    out = tmp_path_factory.mktemp("other") / "other_lab"
    rows = ["file,group"]
    for folder in sorted(p for p in tiny_dataset.iterdir() if p.is_dir()):
        (out / folder.name).mkdir(parents=True)
        for i, path in enumerate(sorted(folder.glob("*.png"))):
            cv2.imwrite(str(out / folder.name / path.name), 255 - cv2.imread(str(path)))
            rows.append(f"{folder.name}/{path.name},{folder.name}-s{i % 2}")
    (out / "groups.csv").write_text("\n".join(rows) + "\n")
    return out


@pytest.fixture
def tiny_run(tiny_dataset) -> dict:
    return run(tiny_config(tiny_dataset), n_jobs=1)


def test_metrics_flag_a_collapsed_model_and_report_each_group():
    y = np.array([0] * 6 + [1] * 6)
    proba = np.tile([0.2, 0.8], (12, 1))          # "class 1" for every image
    groups = np.array(["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["d"] * 3)
    metrics = external_metrics(y, proba, groups, ("ALL", "HEALTHY"), samples=200)
    assert metrics["collapsed"] and metrics["predicted_share"] == {"ALL": 0.0, "HEALTHY": 1.0}
    assert metrics["accuracy"] == 0.5 and metrics["balanced_accuracy"] == 0.5
    assert metrics["per_class_recall"] == {"ALL": 0.0, "HEALTHY": 1.0}
    assert [(g["group"], g["class"], g["recall"]) for g in metrics["per_group"]] == [
        ("a", "ALL", 0.0), ("b", "ALL", 0.0), ("c", "HEALTHY", 1.0), ("d", "HEALTHY", 1.0)]
    # Every bootstrap sample keeps both classes and each group's answers: every resample gives 0.5, so no interval.
    assert metrics["intervals"]["balanced_accuracy"] is None and metrics["intervals"]["accuracy"] is None
    assert metrics["intervals"]["reason"] == "every resample is the same: each class's groups have the same share right"


def test_answers_that_cannot_vary_over_resamples_give_no_interval_and_say_why():
    """Six groups, every image answered right: all 2000 resamples give 1.0, and a 1.0-1.0 interval would read as a
    certainty six groups cannot give. n/a with the reason instead, in the text too; where only the ROC AUC cannot
    vary (perfect ranking, some answers wrong), only it is n/a and the reason names it."""
    y, groups = np.array([0] * 8 + [1] * 4), np.array(["A0", "A0", "A1", "A1", "A2", "A2", "A3", "A3",
                                                         "H0", "H0", "H1", "H1"])
    right = external_metrics(y, np.where(y[:, None] == [0, 1], 0.9, 0.1), groups, ("ALL", "HEALTHY"))
    intervals = right["intervals"]
    assert right["accuracy"] == right["balanced_accuracy"] == right["roc_auc"] == 1.0
    assert intervals["accuracy"] is intervals["balanced_accuracy"] is intervals["roc_auc"] is None
    assert intervals["reason"] == "every resample is the same: all answers right"
    wrong = external_metrics(y, np.where(y[:, None] == [0, 1], 0.1, 0.9), groups, ("ALL", "HEALTHY"))
    assert wrong["intervals"]["reason"].endswith("all answers wrong") and wrong["intervals"]["accuracy"] is None
    ranked = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.45, 0.45, 0.4, 0.4, 0.1, 0.1])  # ALL's score, ALL first
    some = external_metrics(y, np.c_[ranked, 1 - ranked], groups, ("ALL", "HEALTHY"))["intervals"]
    assert some["roc_auc"] is None and some["reason"] == ("every resample is the same for roc auc: the scores "
                                                          "separate the classes alike in each")
    low, high = some["accuracy"]
    assert low < high
    # An evaluation stored before holds the zero-width interval: shown n/a all the same.
    from leukdash.reporting.external_report import interval
    assert interval_text({"accuracy": [1.0, 1.0]}, "accuracy") == "n/a: every resample is the same (1.0000)"
    from leukdash.evaluation.evaluation_text import few_groups
    stored = {"accuracy": [1.0, 1.0], "balanced_accuracy": [1.0, 1.0], "reason": None}
    assert few_groups({"intervals": stored, "per_group": right["per_group"]}) is None  # no interval to rest on groups
    assert interval(0.5, [0.5, 0.5]) == "0.500 [n/a]" and interval(0.5, [0.4, 0.6]) == "0.500 [0.400-0.600]"


def test_a_set_of_one_class_answered_that_class_has_not_collapsed_and_answered_another_has():
    """An external set of one class's images (a lab's leukaemia cells only): every image given its own class is
    the right answer, not a model that gives everything one class; every image given the other class is."""
    y, groups = np.zeros(12, dtype=int), np.arange(12) // 3
    right = external_metrics(y, np.tile([0.9, 0.1], (12, 1)), groups, ("ALL", "HEALTHY"), samples=50)
    assert right["accuracy"] == 1.0 and not right["collapsed"]
    wrong = external_metrics(y, np.tile([0.1, 0.9], (12, 1)), groups, ("ALL", "HEALTHY"), samples=50)
    assert wrong["accuracy"] == 0.0 and wrong["collapsed"]


def test_group_bootstrap_resamples_groups_not_images_and_is_seeded():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    groups = np.repeat(np.arange(8), 10)                 # 4 subjects per class, 10 images each
    right = np.repeat([1, 1, 0, 1, 1, 0, 1, 1], 10).astype(bool)   # whole subjects right or wrong
    predicted = np.where(right, y, 1 - y)
    proba = np.eye(2)[predicted] * 0.8 + 0.1 + rng.uniform(0, 0.01, (80, 2))
    first = group_bootstrap(y, proba, groups, 2, samples=500, seed=3)
    assert first == group_bootstrap(y, proba, groups, 2, samples=500, seed=3)
    low, high = first["accuracy"]
    assert low <= 0.75 <= high
    # With 8 subjects of whole right or wrong answers the interval is wide; resampling 80
    # independent images would make it about three times narrower.
    assert high - low >= 0.25
    assert first["n_groups"] == 8 and first["samples"] == 500


@pytest.mark.parametrize("samples, chunk", [(300, 64), (2000, 256), (7, 64)])
def test_group_draws_come_a_chunk_at_a_time_and_are_those_of_one_draw_per_class(samples, chunk):
    """The bootstrap holds a chunk of resamples at a time; its draws are still exactly those of
    one rng.choice per class over every resample (so the intervals do not depend on the chunk)."""
    from leukdash.evaluation.external_metrics import group_draw_counts

    group_class = np.random.default_rng(5).integers(0, 3, 40)
    rng, expected = np.random.default_rng(11), np.zeros((samples, 40))
    for c in range(3):
        of_class = np.flatnonzero(group_class == c)
        drawn = rng.choice(of_class, size=(samples, len(of_class)), replace=True)
        for row, groups in enumerate(drawn):
            np.add.at(expected[row], groups, 1)
    blocks = list(group_draw_counts(group_class, samples, 11, chunk=chunk))
    assert [rows.start for rows, _ in blocks] == list(range(0, samples, chunk))
    assert max(len(counts) for _, counts in blocks) == min(chunk, samples)
    assert np.array_equal(np.concatenate([counts for _, counts in blocks]), expected)


def test_each_resamples_roc_auc_is_sklearns_on_the_resampled_images():
    """The bootstrap's AUCs, from weighted counts per score, against roc_auc_score on each
    resample built image by image: tied scores, groups of both classes, resamples without a class."""
    from sklearn.metrics import roc_auc_score

    from leukdash.evaluation.external_metrics import _resampled_auc

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 120)
    score = np.round(rng.uniform(size=120), 1)                  # 11 distinct scores: many ties
    members = np.array_split(rng.permutation(120), 12)
    y[members[0]] = 0
    weights = rng.integers(0, 3, (40, 12)).astype(float)
    weights[0] = 0
    weights[0, 0] = 1                                            # one group, of one class: no AUC
    expected = []
    for row in weights:
        index = np.concatenate([np.repeat(m, int(w)) for m, w in zip(members, row)])
        if len(set(y[index].tolist())) == 2:
            expected.append(roc_auc_score(y[index], score[index]))
    assert len(expected) == 39
    assert _resampled_auc(members, y, score)(weights) == pytest.approx(expected, abs=1e-12)


def test_a_confident_answer_on_an_image_unlike_the_training_data_is_flagged():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(300, 6))
    fold_of = np.arange(300) % 5
    described = TrainingDistribution.fit(features, fold_of, list(range(5)))
    own = np.mean(described.oof_scores > described.threshold)
    assert own <= 0.02
    near = described.assess(rng.normal(size=(50, 6)))
    far = described.assess(rng.normal(size=(50, 6)) + 6.0)
    assert np.mean([a["outside"] for a in near]) <= 0.1
    assert all(a["outside"] and a["percentile"] == 100.0 for a in far)
    assert min(a["score"] for a in far) > max(a["score"] for a in near)


def test_evaluate_scores_another_dataset_and_stores_the_result_beside_the_run(tiny_run, other_lab, monkeypatch):
    result = evaluate(tiny_run["run_id"], str(other_lab))
    assert result["n_images"] == 40 and result["dataset"]["name"] == "other_lab"
    assert result["intervals"]["n_groups"] == 10
    assert sum(result["predicted_share"].values()) == pytest.approx(1.0)
    assert len(result["confusion"]) == 5 and result["roc_auc"] is None
    assert result["run"]["fingerprint"] == tiny_run["dataset"]["fingerprint"]
    assert "numpy" in result["versions"] and result["key"]["method"]
    # Inverted colours do not look like the training images.
    assert result["ood_share"] >= 0.9
    path = result_path(tiny_run["run_id"], result["dataset"]["fingerprint"])
    assert json.loads(path.read_text())["accuracy"] == result["accuracy"]
    assert [r["dataset"]["name"] for r in stored_evaluations(tiny_run["run_id"])] == ["other_lab"]

    import leukdash.evaluation.evaluate as module

    monkeypatch.setattr(module, "_compute", lambda *args: pytest.fail("a stored result was computed again"))
    assert evaluate(tiny_run["run_id"], str(other_lab)) == result


@pytest.mark.parametrize("damage", ["truncated", "a list", "no result"])
def test_a_damaged_stored_external_result_is_computed_again(tiny_run, other_lab, damage):
    result = evaluate(tiny_run["run_id"], str(other_lab))
    path = result_path(tiny_run["run_id"], result["dataset"]["fingerprint"])
    text = path.read_text()
    path.write_text({"truncated": text[:100], "a list": "[]", "no result": json.dumps({"key": result["key"]})}[damage])
    assert stored_evaluations(tiny_run["run_id"]) == []  # what the transfer figures and rankings read
    assert evaluate(tiny_run["run_id"], str(other_lab))["accuracy"] == result["accuracy"]
    assert json.loads(path.read_text())["accuracy"] == result["accuracy"]  # replaced whole


def test_an_external_set_lacking_a_run_class_is_scored_and_one_with_none_is_refused(tiny_dataset, tmp_path, capsys):
    """A set without a folder for one of the run's classes (one lab's leukaemia images) was refused,
    while the same set with an unreadable file in that folder was scored: both are scored now, the
    class's recall n/a; a set holding none of the run's classes is refused in one line."""
    result = run(tiny_config(tiny_dataset, classes=("ALL", "CLL")), n_jobs=1)
    lacking, unreadable, foreign = tmp_path / "lacking", tmp_path / "unreadable", tmp_path / "foreign"
    for folder, names in ((lacking, ("ALL", "AML")), (unreadable, ("ALL", "AML")), (foreign, ("AML",))):
        for name in names:
            (folder / name).mkdir(parents=True)
            for path in sorted((tiny_dataset / name).glob("*.png"))[:3]:  # inverted: images the run never saw
                cv2.imwrite(str(folder / name / path.name), 255 - cv2.imread(str(path)))
    (unreadable / "CLL").mkdir()
    (unreadable / "CLL" / "x.png").write_bytes(b"junk")
    scored, planted = evaluate(result["run_id"], str(lacking)), evaluate(result["run_id"], str(unreadable))
    assert scored["per_class_recall"]["CLL"] is None and scored["dataset"]["absent_classes"] == ["CLL"]
    assert scored["n_images"] == planted["n_images"] == 3  # AML is no class of the run: left out
    assert (scored["accuracy"], scored["per_class_recall"]) == (planted["accuracy"], planted["per_class_recall"])
    assert any("no readable image of class(es) CLL in lacking" in line for line in scored["dataset"]["warnings"])
    assert main(["evaluate", result["run_id"], str(lacking)]) == 0
    assert "CLL n/a" in capsys.readouterr().out
    with pytest.raises(DatasetError, match="is the dataset run .* was trained on"):
        evaluate(result["run_id"], str(tiny_dataset))
    assert main(["evaluate", result["run_id"], str(foreign)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: dataset 'foreign' has no class 'ALL', 'CLL' of the run") and "\n" not in err


def test_evaluate_leaves_out_images_the_run_was_trained_on_and_says_so(tiny_dataset, tiny_run, other_lab, tmp_path):
    mixed = tmp_path / "mixed"
    for path in sorted(other_lab.glob("*/*.png")):
        (mixed / path.parent.name).mkdir(parents=True, exist_ok=True)
        (mixed / path.parent.name / path.name).write_bytes(path.read_bytes())
    copied = sorted(tiny_dataset.glob("ALL/*.png"))[:3]  # three training images, renamed
    for i, path in enumerate(copied):
        (mixed / "ALL" / f"copy{i}.png").write_bytes(path.read_bytes())
    result = evaluate(tiny_run["run_id"], str(mixed))
    assert result["n_images"] == 40 and result["dataset"]["n_used"] == 40
    assert any(line.startswith("3 of 43 image(s) of mixed left out: run ") for line in result["dataset"]["warnings"])
    assert result["key"]["left_out"] == {"trained_on": 3}
    # The run's image hashes are kept beside it: evaluate needs its images no more than before.
    assert (RunStore().run_dir(tiny_run["run_id"]) / "trained-on.npz").is_file()


def _copies(folder: Path, paths: list[Path]) -> Path:
    """``paths`` copied into ``folder`` by class, under new names, as other picture files would
    hold them: the same pixels re-encoded (another PNG, with a note), or resized to 64 px; every
    other pair of them mirrored or turned a quarter, as pre-augmented datasets hold them."""
    from PIL import Image, PngImagePlugin

    note = PngImagePlugin.PngInfo()
    note.add_text("comment", "re-saved")
    for i, path in enumerate(paths):
        (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
        picture = Image.open(path).convert("RGB")
        if i % 4 > 1:
            picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT if i % 2 else Image.Transpose.ROTATE_90)
        if i % 2:
            picture.resize((64, 64)).save(folder / path.parent.name / f"copy{i}.png")
        else:
            picture.save(folder / path.parent.name / f"copy{i}.png", pnginfo=note)
    return folder


def test_evaluate_leaves_out_transformed_copies_of_training_images(tiny_dataset, tiny_run, other_lab, tmp_path):
    """Not the same bytes, yet the run's own pictures: Predict's known-image check finds them, and
    evaluate leaves them out too, counted (a folder of re-encoded copies of the training set was
    scored as another lab's, at 1.000)."""
    run_id = tiny_run["run_id"]
    mixed = _copies(tmp_path / "mixed", sorted(tiny_dataset.glob("ALL/*.png"))[:2]
                    + sorted(tiny_dataset.glob("CML/*.png"))[:2])
    for path in sorted(other_lab.glob("*/*.png")):
        (mixed / path.parent.name).mkdir(exist_ok=True)
        shutil.copy(path, mixed / path.parent.name / path.name)
    result = evaluate(run_id, str(mixed))
    assert result["n_images"] == 40 and result["key"]["left_out"] == {"copies": 4}
    assert f"4 of 44 image(s) of mixed left out: copies of images run {run_id} was trained on (re-encoded, " \
        "resized, mirrored or rotated, as Predict's known-image check finds them), so they would score what it " \
        "remembers" in \
        result["dataset"]["warnings"]
    assert not any(row["file"].startswith(("ALL/copy", "CML/copy")) for row in result["images"])
    only = _copies(tmp_path / "only", sorted(tiny_dataset.glob("*/*.png")))
    with pytest.raises(DatasetError, match=r"every image of 'only' is one run .* was trained on \(the same bytes, "
                                           r"or the same picture re-encoded, resized, mirrored or rotated\)"):
        evaluate(run_id, str(only))


def test_left_out_training_images_do_not_shift_the_duplicates_of_the_others(tiny_dataset, tiny_run, other_lab,
                                                                            tmp_path):
    """Duplicate pairs index the whole folder; with training images left out before them, the pairs
    must follow the images kept (they crashed evaluate, or joined the wrong groups, before)."""
    def folder(name: str, with_training_copies: bool) -> Path:
        for path in sorted(other_lab.glob("*/*.png")):
            (tmp_path / name / path.parent.name).mkdir(parents=True, exist_ok=True)
            (tmp_path / name / path.parent.name / path.name).write_bytes(path.read_bytes())
        for cls in ("ALL", "HEALTHY"):  # the same cell twice, under a name sorted last in its class
            first = sorted(other_lab.glob(f"{cls}/*.png"))[0]
            (tmp_path / name / cls / "zz_again.png").write_bytes(first.read_bytes())
        if with_training_copies:  # sorted first: every index after them moves
            for cls in ("ALL", "CML"):
                for i, path in enumerate(sorted(tiny_dataset.glob(f"{cls}/*.png"))[:3]):
                    (tmp_path / name / cls / f"0_seen{i}.png").write_bytes(path.read_bytes())
        return tmp_path / name

    mixed = evaluate(tiny_run["run_id"], str(folder("mixed", True)))
    clean = evaluate(tiny_run["run_id"], str(folder("clean", False)))
    assert mixed["key"]["left_out"] == {"trained_on": 6}
    assert mixed["intervals"] == clean["intervals"] and mixed["intervals"]["n_groups"] == 40  # 42 images, two pairs
    assert mixed["balanced_accuracy"] == clean["balanced_accuracy"]


def test_a_folder_tested_again_after_its_images_changed_counts_once_as_it_is_now(tiny_run, other_lab, tmp_path):
    from leukdash.evaluation.transfer import rank_runs, transfer_overview

    folder = tmp_path / "lab"
    shutil.copytree(other_lab, folder)
    before = evaluate(tiny_run["run_id"], str(folder))
    for path in sorted(folder.glob("ALL/*.png"))[:4]:  # four cells of the folder replaced by others' pictures
        path.write_bytes(sorted(other_lab.glob("HEALTHY/*.png"))[0].read_bytes())
    after = evaluate(tiny_run["run_id"], str(folder))
    assert after["dataset"]["fingerprint"] != before["dataset"]["fingerprint"]
    assert result_path(tiny_run["run_id"], before["dataset"]["fingerprint"]).is_file()  # kept on disk
    [listed] = stored_evaluations(tiny_run["run_id"])
    assert listed["dataset"]["fingerprint"] == after["dataset"]["fingerprint"]
    scores = transfer_overview([tiny_run["run_id"]])["scores"]
    assert scores[tiny_run["run_id"]]["balanced_accuracy"] == after["balanced_accuracy"]
    [ranked] = rank_runs([tiny_run["run_id"], tiny_run["run_id"]], "lodo")
    assert ranked["transfer"]["balanced_accuracy"] == after["balanced_accuracy"]
    # Back to the first content: its stored result is answered, and is the folder's again.
    shutil.rmtree(folder)
    shutil.copytree(other_lab, folder)
    assert evaluate(tiny_run["run_id"], str(folder)) == before
    [listed] = stored_evaluations(tiny_run["run_id"])
    assert listed["dataset"]["fingerprint"] == before["dataset"]["fingerprint"]
    # Renamed, the same images find their result, listed under the name they have now.
    renamed = folder.rename(tmp_path / "lab_renamed")
    assert evaluate(tiny_run["run_id"], str(renamed))["dataset"]["name"] == "lab_renamed"
    listed = {r["dataset"]["name"]: r["dataset"] for r in stored_evaluations(tiny_run["run_id"])}
    assert (listed["lab_renamed"]["path"], listed["lab_renamed"]["fingerprint"]) == (
        str(renamed), before["dataset"]["fingerprint"])


def test_evaluate_refuses_a_dataset_made_only_of_training_images(tiny_dataset, other_lab, capsys):
    both = run(tiny_config(Path(f"{tiny_dataset},{other_lab}")), n_jobs=1)
    with pytest.raises(DatasetError, match="every image of 'other_lab' is one run .* was trained on"):
        evaluate(both["run_id"], str(other_lab))
    assert main(["evaluate", both["run_id"], str(other_lab)]) == 2
    assert "trained on" in capsys.readouterr().err


def test_a_stored_result_of_images_the_run_was_trained_on_is_no_transfer_figure(tiny_dataset, other_lab, tiny_run):
    from leukdash.evaluation.transfer import rank_runs, transfer_overview

    # An earlier evaluate stored a run on tiny,other_lab tested on other_lab (images it trained on),
    # with no image left out; evaluate refuses it now, and the figure must not rank the run either.
    both = run(tiny_config(Path(f"{tiny_dataset},{other_lab}")), n_jobs=1)
    tested = evaluate(tiny_run["run_id"], str(other_lab))
    old = {**tested, "run_id": both["run_id"], "balanced_accuracy": 1.0,
           "key": {"method": "external-3", "samples": 2000, "seed": 0}}
    path = result_path(both["run_id"], tested["dataset"]["fingerprint"])
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(old))
    assert stored_evaluations(both["run_id"]) == []
    assert transfer_overview([both["run_id"]])["scores"][both["run_id"]] is None
    assert rank_runs([both["run_id"], tiny_run["run_id"]], "lodo")[0]["run_id"] == tiny_run["run_id"]
    with pytest.raises(DatasetError, match="every image of 'other_lab' is one run .* was trained on"):
        evaluate(both["run_id"], str(other_lab))
    # Today's evaluate leaves trained-on images out and says so: a result of its method with none left out
    # scored new images, even at a source's path (the folder reused for another lab's images), and stands.
    path.write_text(json.dumps({**tested, "run_id": both["run_id"]}))
    assert tested["key"]["method"] == METHOD_VERSION and "left_out" not in tested["key"]
    assert [r["dataset"]["path"] for r in stored_evaluations(both["run_id"])] == [str(other_lab)]
    for key in ("x", [1], 3):  # damaged by hand: a cache like any damaged result, not a crash of its readers
        path.write_text(json.dumps({**tested, "run_id": both["run_id"], "key": key}))
        assert stored_evaluations(both["run_id"]) == []
        assert transfer_overview([both["run_id"]])["scores"][both["run_id"]] is None
    # The same for a result of the run's own dataset, wherever it was read from.
    own = result_path(tiny_run["run_id"], tiny_run["dataset"]["fingerprint"])
    own.write_text(json.dumps({**tested, "dataset": {**tested["dataset"], "path": "/moved",
                                                       "fingerprint": tiny_run["dataset"]["fingerprint"]}}))
    assert [r["dataset"]["fingerprint"] for r in stored_evaluations(tiny_run["run_id"])] == [
        tested["dataset"]["fingerprint"]]


def test_evaluate_says_which_images_of_classes_the_run_does_not_know_it_left_out(tiny_dataset, other_lab):
    result = run(tiny_config(tiny_dataset, classes=("ALL", "CLL")), n_jobs=1)
    external = evaluate(result["run_id"], str(other_lab))
    assert external["n_images"] == 16
    line = [w for w in external["dataset"]["warnings"] if "of class(es) the run does not know" in w]
    assert line == ["24 image(s) of other_lab left out, of class(es) the run does not know: "
                    "AML (8), CML (8), HEALTHY (8)"]


def test_evaluate_command_prints_the_figures(tiny_run, other_lab, capsys):
    assert main(["evaluate", tiny_run["run_id"], str(other_lab), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["run_id"] == tiny_run["run_id"] and 0 <= printed["balanced_accuracy"] <= 1
    assert main(["evaluate", tiny_run["run_id"], str(other_lab)]) == 0
    text = capsys.readouterr().out
    assert "balanced accuracy" in text and "out-of-distribution" in text


def test_an_evaluation_stored_with_a_zero_width_interval_is_read_as_n_a_with_its_reason(tiny_run, other_lab, capsys):
    """An evaluation stored before zero-width intervals were n/a (under the same method version) is served again:
    its accuracy "[0.5, 0.5]" with reason null reached evaluate --json, while the text said n/a. Read, that interval
    is None and the reason says why, as the bootstrap gives it now, on disk too; an interval that varies is kept."""
    run_id = tiny_run["run_id"]
    tested = evaluate(run_id, str(other_lab))
    path = result_path(run_id, tested["dataset"]["fingerprint"])
    stored = json.loads(path.read_text())
    accuracy = stored["accuracy"]
    stored["intervals"].update(accuracy=[accuracy, accuracy], balanced_accuracy=[0.25, 0.75], reason=None)
    path.write_text(json.dumps(stored))
    assert main(["evaluate", run_id, str(other_lab), "--json"]) == 0
    for intervals in (json.loads(capsys.readouterr().out)["intervals"], stored_evaluations(run_id)[0]["intervals"],
                      json.loads(path.read_text())["intervals"]):
        assert intervals["accuracy"] is None and intervals["balanced_accuracy"] == [0.25, 0.75]
        assert intervals["reason"].startswith("every resample is the same for accuracy: "), intervals["reason"]
    assert main(["evaluate", run_id, str(other_lab)]) == 0
    assert "n/a: every resample is the same for accuracy: " in capsys.readouterr().out


def test_a_known_image_is_answered_by_the_fold_model_that_did_not_train_on_it(tiny_run, tiny_dataset):
    store = RunStore()
    path = sorted((tiny_dataset / "AML").glob("*.png"))[2]
    image = decode_image(path)
    found = known_image(tiny_run["run_id"], image)
    assert found["file"] == f"AML/{path.name}" and found["match"] == "identical" and found["class"] == "AML"
    # The fold model that validated it gave the run's stored out-of-fold answer for it.
    meta = store.read_meta(tiny_run["run_id"])
    fold = tiny_run["folds"][meta["fold_ids"].index(found["fold"] - 1)]
    stored = dict(zip(fold["oof"]["index"], fold["oof"]["proba"]))
    index = _dataset_index(tiny_dataset, path)
    assert index in stored
    assert list(found["probabilities"].values()) == pytest.approx(stored[index], abs=1e-5)

    # A slightly altered copy (pixel noise of +-2) is still recognised; another image is not.
    noise = np.random.default_rng(0).integers(-2, 3, image.shape)
    near = known_image(tiny_run["run_id"], np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8))
    assert near["match"] == "near-identical" and near["file"] == found["file"]
    assert known_image(tiny_run["run_id"], 255 - image) is None
    # Mirrored or turned (an augmented copy), it is the same picture.
    for turned in (np.fliplr(image), np.rot90(image), image.transpose(1, 0, 2)):
        copy = known_image(tiny_run["run_id"], np.ascontiguousarray(turned))
        assert copy["match"] == "near-identical" and copy["file"] == found["file"]


def test_a_known_image_filed_under_two_classes_names_every_copy_and_the_conflict(tiny_dataset, tmp_path, capsys):
    """One picture held under two labels: the known-image note named one copy only, so the file
    filed under the other class was said to be the first class's image."""
    from PIL import Image

    folder = shutil.copytree(tiny_dataset, tmp_path / "conflict")
    original = sorted((folder / "ALL").glob("*.png"))[0]
    Image.open(original).convert("RGB").rotate(90).save(folder / "CML" / "turned.png")
    run_id = run(tiny_config(folder), n_jobs=1)["run_id"]
    found = known_image(run_id, decode_image(original))
    assert found["file"] == f"ALL/{original.name}" and found["also"] == [{"file": "CML/turned.png", "class": "CML"}]
    assert conflicting_labels(found) == ["ALL", "CML"]
    assert main(["predict", run_id, str(original)]) == 0
    assert (f"  known image: identical to ALL/{original.name} (ALL), also CML/turned.png (CML): filed under ALL and "
            "CML in this run, the labels conflict; fold ") in capsys.readouterr().out


def test_prediction_carries_both_checks_and_survives_a_missing_dataset(tiny_run, tiny_dataset, other_lab,
                                                                          tmp_path, monkeypatch):
    inside, outside = decode_image(sorted((tiny_dataset / "CML").glob("*.png"))[0]), \
        decode_image(sorted((other_lab / "CML").glob("*.png"))[0])
    results = predict_images(tiny_run["run_id"], [inside, outside])
    assert results[0]["known"]["class"] == "CML" and results[1]["known"] is None
    assert not results[0]["ood"]["outside"] and results[1]["ood"]["outside"]
    assert results[1]["ood"]["percentile"] > 95

    import leukdash.evaluation.ood as ood
    import leukdash.evaluation.predict as predict
    from leukdash.evaluation.reference import references_stored

    # Both checks' references are stored beside the run: without its dataset, and without
    # anything loaded in this process, the checks still answer the same.
    folder = RunStore().run_dir(tiny_run["run_id"])
    assert references_stored(tiny_run["run_id"])
    moved = tmp_path / "moved"
    os.replace(tiny_dataset, moved)
    monkeypatch.setattr(predict, "_references", {})
    try:
        stored = predict_images(tiny_run["run_id"], [inside, outside])
        (folder / "ood.json").unlink()
        (folder / "reference.json").unlink()
        monkeypatch.setattr(predict, "_references", {})
        again = predict_images(tiny_run["run_id"], [outside])[0]
    finally:
        os.replace(moved, tiny_dataset)
    assert [r["known"] for r in stored] == [r["known"] for r in results]
    assert [r["ood"] for r in stored] == [r["ood"] for r in results]
    # With the references gone too, the checks say why they cannot be made; the prediction stands.
    assert again["predicted"] == results[1]["predicted"]
    assert "unavailable" in again["ood"]["error"] and "unavailable" in again["known"]["error"]
    assert ood.training_distribution(tiny_run["run_id"]).threshold > 0


def _dataset_index(root: Path, path: Path) -> int:
    from leukdash.data.dataset import Dataset

    return [item.path for item in Dataset.from_folder(root).items].index(path.resolve())


@pytest.fixture(scope="module")
def cnmc_path() -> Path:
    for root in os.environ.get("LEUKDASH_DATA", "").split(os.pathsep):
        if root and (Path(root) / "cnmc_dev").is_dir():
            return Path(root) / "cnmc_dev"
    pytest.skip("LEUKDASH_DATA does not hold cnmc_dev")


def test_allidb2_models_collapse_on_cnmc_and_the_ood_check_flags_it(allidb2_path, cnmc_path):
    result = run(RunConfig(dataset=str(allidb2_path), model="nb", feature_set="features", image_size=32,
                           augment_factor=1, augment=AugmentConfig.off()), n_jobs=1)
    external = evaluate(result["run_id"], str(cnmc_path))
    assert external["collapsed"] and external["n_images"] == 300 and external["intervals"]["n_groups"] == 9
    # cnmc_dev's healthy cells come from 2 subjects: its intervals say so.
    assert ("NOTE: the intervals rest on few groups (2 of HEALTHY): the bootstrap can only redraw these"
            in format_evaluation(external))
    assert external["ood_share"] >= 0.95
    from leukdash.evaluation.ood import training_distribution

    described = training_distribution(result["run_id"])
    assert np.mean(described.oof_scores > described.threshold) <= 0.05


def test_predict_command_warns_and_names_a_known_image(tiny_run, tiny_dataset, other_lab, capsys):
    own, other = sorted((tiny_dataset / "ALL").glob("*.png"))[0], sorted((other_lab / "ALL").glob("*.png"))[0]
    assert main(["predict", tiny_run["run_id"], str(own), str(other)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(f"  known image: identical to ALL/{own.name}")
    assert lines[2].startswith(f"{other}: ")
    assert any(line.startswith("  WARNING: unlike the run's training images") for line in lines[3:])


def test_a_class_with_fewer_than_three_groups_is_named_and_others_are_not():
    from leukdash.evaluation.evaluation_text import few_groups

    def result(classes):
        return {"per_group": [{"group": f"g{i}", "class": c} for i, c in enumerate(classes)]}

    assert few_groups(result(["ALL"] * 3 + ["HEALTHY"] * 3)) is None
    assert few_groups(result(["ALL"] * 7 + ["HEALTHY"] * 2 + ["AML"])).startswith(
        "the intervals rest on few groups (2 of HEALTHY, 1 of AML):")


def test_the_per_group_line_lists_few_groups_the_worst_of_many_and_no_single_images():
    from leukdash.evaluation.evaluation_text import LOWEST_GROUPS_LISTED, MAX_GROUPS_LISTED, groups_text

    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 40)
    proba = rng.dirichlet([1, 1], size=len(y))

    def per_group(groups):
        return external_metrics(y, proba, np.asarray(groups), ("ALL", "HEALTHY"), samples=10)["per_group"]

    many = per_group([f"s{i // 2:02d}" for i in range(len(y))])  # 40 subjects of 2 images
    assert len(many) > MAX_GROUPS_LISTED
    line = groups_text(many)
    assert line.startswith(f"{len(many)} groups (--json lists each); the lowest recall: ")
    listed = [float(part.rsplit(" ", 1)[1]) for part in line.split(": ", 1)[1].split("  ")]
    assert listed == sorted(g["recall"] for g in many)[:LOWEST_GROUPS_LISTED]
    few = per_group([f"s{i // 8}" for i in range(len(y))])  # 10 subjects of 8 images: each listed
    assert groups_text(few).count(" (") == 10 and "s9 (HEALTHY, 8)" in groups_text(few)
    assert groups_text(per_group([f"img{i}" for i in range(len(y))])).startswith("each image is its own group")


def test_each_external_image_is_a_row_whose_answers_make_the_figures(tiny_run, other_lab, capsys):
    """`evaluate --csv`: one row per external image (true and predicted class, probabilities, both
    flags); the rows give back the result's accuracy, recalls and flag shares."""
    import csv
    import io

    result = evaluate(tiny_run["run_id"], str(other_lab))
    assert main(["evaluate", tiny_run["run_id"], str(other_lab), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == result["n_images"] and [r["file"] for r in rows] == [i["file"] for i in result["images"]]
    assert np.mean([r["correct"] == "yes" for r in rows]) == pytest.approx(result["accuracy"])
    for name, recall in result["per_class_recall"].items():
        mine = [r["correct"] == "yes" for r in rows if r["true"] == name]
        assert np.mean(mine) == pytest.approx(recall)
    assert np.mean([r["outside_training"] == "yes" for r in rows]) == pytest.approx(result["ood_share"])
    assert np.mean([r["likely_wrong"] == "yes" for r in rows]) == pytest.approx(result["flags"]["likely_wrong"]["share"])
    for row, image in zip(rows, result["images"]):
        assert row["predicted"] == max(image["probabilities"], key=image["probabilities"].get)
        assert all(float(row[f"p_{c}"]) == pytest.approx(p, abs=5e-5) for c, p in image["probabilities"].items())


def test_tied_answers_are_counted_apart_and_a_model_that_gives_one_class_or_a_tie_has_collapsed():
    """A tie (p 0.5 each) is counted as the first class, as before, in every figure; the result
    counts the ties and what they were counted as, and the collapse check leaves them out."""
    y = np.array([0] * 12 + [1] * 12)
    proba = np.array([[0.5, 0.5]] * 11 + [[0.2, 0.8]] * 13)  # no image gets ALL above 0.5
    metrics = external_metrics(y, proba, np.arange(24) // 3, ("ALL", "HEALTHY"), samples=50)
    assert metrics["predicted_share"]["ALL"] == pytest.approx(11 / 24) and metrics["accuracy"] == pytest.approx(23 / 24)
    assert metrics["undecided"] == {"n": 11, "counted_as": {"ALL": 11}}
    assert metrics["collapsed"]  # HEALTHY for every answer that is not a tie
    spread = external_metrics(y, np.eye(2)[y] * 0.8 + 0.1, np.arange(24) // 3, ("ALL", "HEALTHY"), samples=50)
    assert spread["undecided"] == {"n": 0, "counted_as": {}} and not spread["collapsed"]


def test_evaluate_says_how_many_answers_are_ties_and_marks_them(tiny_dataset, other_lab, monkeypatch, capsys):
    """Two fold models sure of opposite classes: the ensemble's p 0.50/0.50 is counted as ALL, the
    first class, in the figures; the text, --json and --csv say so instead of passing it for an ALL."""
    import csv
    import io

    from leukdash.evaluation.predict import FoldEnsemble

    trained = run(tiny_config(tiny_dataset, classes=("ALL", "HEALTHY")), n_jobs=1)["run_id"]

    def split_votes(self, batch):  # the first 7 images: one fold sure of ALL, the other of HEALTHY
        votes = np.tile([[0.1, 0.9]], (2, len(batch), 1))
        votes[0, :7], votes[1, :7] = [1.0, 0.0], [0.0, 1.0]
        return votes

    monkeypatch.setattr(FoldEnsemble, "batch_probabilities", split_votes)
    assert main(["evaluate", trained, str(other_lab), "--json"]) == 0
    printed, err = json.loads((captured := capsys.readouterr()).out), captured.err
    warning = ("7 of 16 answers are ties between the top classes (p 0.50 each), counted as the first tied class in "
               "the run's order (ALL): undecided answers (marked in the per-image CSV)")
    assert warning in printed["dataset"]["warnings"] and f"warning: {warning}" in err.splitlines()
    assert printed["undecided"] == {"n": 7, "counted_as": {"ALL": 7}} and printed["collapsed"]
    assert printed["per_class_recall"]["ALL"] == pytest.approx(7 / 8)  # the figures count them as before
    assert main(["evaluate", trained, str(other_lab)]) == 0
    assert "ALL 43.8%  HEALTHY 56.2%  (7 ties among them, undecided)  COLLAPSED" in capsys.readouterr().out
    assert main(["evaluate", trained, str(other_lab), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["undecided"] for row in rows] == ["yes"] * 7 + ["no"] * 9
    assert "collapsed: it gives HEALTHY to 100% of the images whose answer is not a tie (7 are)" in \
        outcome_sentence(printed)


def test_a_fold_model_that_ties_votes_for_no_class(tiny_dataset, other_lab, monkeypatch, capsys):
    """Every fold model gives 0.50/0.50 to the first image: argmax counted each as a vote for ALL, the first
    class, so predict said "folds agreeing 2/2" and the page "votes: ALL 2"; tied folds are now counted apart."""
    from leukdash.evaluation.answer import headline
    from leukdash.evaluation.answer_table import answer_row
    from leukdash.evaluation.predict import FoldEnsemble

    trained = run(tiny_config(tiny_dataset, classes=("ALL", "HEALTHY")), n_jobs=1)["run_id"]

    def tied_folds(self, batch):  # the first image: both folds tie; the second: one ties, one is sure of HEALTHY
        votes = np.tile([[0.1, 0.9]], (2, len(batch), 1))
        votes[:, 0], votes[0, 1] = [0.5, 0.5], [0.5, 0.5]
        return votes

    monkeypatch.setattr(FoldEnsemble, "batch_probabilities", tied_folds)
    files = sorted(other_lab.glob("*/*.png"))[:2]
    assert main(["predict", trained, *map(str, files)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"{files[0]}: ALL (folds agreeing 0/2, 2 tied)  ALL 0.500  HEALTHY 0.500" in lines
    assert f"{files[1]}: HEALTHY (folds agreeing 1/2, 1 tied)  ALL 0.300  HEALTHY 0.700" in lines
    both, one = predict_images(trained, [decode_image(f) for f in files])
    assert both["fold_predictions"] == [None, None] and one["fold_predictions"] == [None, "HEALTHY"]
    assert headline(both)["detail"].endswith("votes: 2 tied") and headline(one)["detail"].endswith("HEALTHY 1, 1 tied")
    assert answer_row({**one, "file": "x.png"})["votes"] == "HEALTHY 1; 1 tied"


def test_a_result_stored_without_its_images_is_computed_again_for_them(tiny_run, other_lab):
    result = evaluate(tiny_run["run_id"], str(other_lab))
    path = result_path(tiny_run["run_id"], result["dataset"]["fingerprint"])
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in stored.items() if k != "images"}))  # as stored before
    assert "images" not in evaluate(tiny_run["run_id"], str(other_lab))  # the figures alone: no work
    assert evaluate(tiny_run["run_id"], str(other_lab), per_image=True)["images"] == stored["images"]


def _adapted_vote(run_id: str, dataset: Path, size: int) -> np.ndarray:
    """The fold models' mean vote on ``dataset`` with its features standardised on themselves."""
    from sklearn.preprocessing import StandardScaler

    from leukdash.data.arrays import load_arrays
    from leukdash.data.discovery import open_dataset
    from leukdash.evaluation.predict import FoldEnsemble
    from leukdash.models import classic

    models = FoldEnsemble(run_id)
    features = classic.featurize(load_arrays(open_dataset(str(dataset)), size).images, models.config.feature_set)
    scaled = StandardScaler().fit_transform(features)
    return np.mean([classic.predict_all_classes(model.named_steps["classify"], scaled, len(models.classes))
                    for model in models.models], axis=0)


def test_adapting_standardises_the_inputs_on_the_other_lab_itself_and_is_stored_apart(tiny_run, other_lab, capsys):
    run_id = tiny_run["run_id"]
    plain, adapted = evaluate(run_id, str(other_lab)), evaluate(run_id, str(other_lab), adapt=True)
    assert adapted["adapted"] is True and adapted["key"]["adapt"] == 2  # 1: CNNs answered as they were
    assert "adapted" not in plain and "adapt" not in plain["key"]  # results stored before keep their key
    vote = _adapted_vote(run_id, other_lab, 32)
    shown = np.array([list(row["probabilities"].values()) for row in adapted["images"]])
    assert np.allclose(shown, vote, atol=1e-6)
    labels = [row["true"] for row in adapted["images"]]
    assert adapted["accuracy"] == pytest.approx(np.mean([tiny_run["dataset"]["classes"][p] == t
                                                         for p, t in zip(vote.argmax(1), labels)]))
    before = np.array([list(row["probabilities"].values()) for row in plain["images"]])
    assert not np.allclose(before, shown, atol=1e-3)  # inverted colours: the training scaler sees them off-centre
    assert adapted["dataset"]["warnings"][-1].startswith("adapted: the classic models standardised their inputs")
    # Stored apart: neither answers for the other, and what pages list (a single upload is never
    # adapted) is the plain result.
    fingerprint = plain["dataset"]["fingerprint"]
    assert result_path(run_id, fingerprint).is_file() and result_path(run_id, fingerprint, adapt=True).is_file()
    assert [bool(r.get("adapted")) for r in stored_evaluations(run_id)] == [False]
    assert [r["accuracy"] for r in stored_evaluations(run_id, adapted=True)] == [adapted["accuracy"]]
    assert evaluate(run_id, str(other_lab)) == plain and evaluate(run_id, str(other_lab), adapt=True) == adapted
    assert main(["evaluate", run_id, str(other_lab), "--adapt"]) == 0
    out, err = capsys.readouterr()
    assert "fold ensemble, adapted to these images" in out and "warning: adapted:" in err
    # Statistics of a handful of images are theirs, not a lab's: refused in one line.
    few = other_lab.parent / "few"
    for path in sorted(other_lab.glob("*/*.png"))[::3]:  # 14 of the 40
        (few / path.parent.name).mkdir(parents=True, exist_ok=True)
        (few / path.parent.name / path.name).write_bytes(path.read_bytes())
    assert main(["evaluate", run_id, str(few), "--adapt"]) == 2
    assert "has 14 usable image(s): adapting needs at least 20 different images of one lab" in capsys.readouterr().err
    assert main(["evaluate", run_id, str(few)]) == 0
    # Copies of one image per class have no spread to estimate: every input would be the training mean.
    copies = other_lab.parent / "copies"
    classes = sorted(folder.name for folder in other_lab.iterdir() if folder.is_dir())
    for cls in classes:
        (copies / cls).mkdir(parents=True)
        source = sorted(other_lab.glob(f"{cls}/*.png"))[0].read_bytes()
        for i in range(5):
            (copies / cls / f"{i}.png").write_bytes(source)
    assert main(["evaluate", run_id, str(copies), "--adapt"]) == 2
    assert (f"has {5 * len(classes)} usable images, {len(classes)} of them different: adapting needs at least 20 "
            "different") in capsys.readouterr().err


def test_a_folder_predicted_adapted_is_answered_as_its_adapted_external_test(tiny_run, other_lab, tmp_path, capsys):
    """`predict RUN FOLDER --adapt`: the models adapted to the folder's readable images answer each
    of them as `evaluate --adapt` does; an unreadable file is answered with its reason; fewer than
    20 usable images are refused in one line."""
    import shutil

    from leukdash.evaluation.predict import predict_files

    run_id = tiny_run["run_id"]
    expected = {row["file"]: row["probabilities"] for row in evaluate(run_id, str(other_lab), adapt=True)["images"]}
    folder = tmp_path / "lab"
    shutil.copytree(other_lab, folder)
    (folder / "ALL" / "broken.png").write_bytes(b"not an image")
    answers = {Path(a["file"]).relative_to(folder).as_posix(): a for a in predict_files(run_id, [folder], adapt=True)}
    assert "error" in answers.pop("ALL/broken.png") and set(answers) == set(expected)
    for file, probabilities in expected.items():
        assert answers[file]["probabilities"] == pytest.approx(probabilities, abs=1e-5)
    plain = {Path(a["file"]).relative_to(folder).as_posix(): a["probabilities"]
             for a in predict_files(run_id, [folder]) if "error" not in a}
    assert not all(plain[file] == pytest.approx(expected[file], abs=1e-3) for file in expected)
    assert main(["predict", run_id, str(folder), "--adapt", "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["adapted"] is True
    assert said["warnings"][0].startswith("adapted: the classic models standardised their inputs with these images")
    few = tmp_path / "few"
    for path in sorted(other_lab.glob("*/*.png"))[::3]:  # 14 of the 40
        (few / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, few / path.parent.name / path.name)
    assert main(["predict", run_id, str(few), "--adapt"]) == 2
    out, err = capsys.readouterr()
    assert "14 usable image(s) (of 14 given): adapting needs at least 20 different images of one lab" in err and not out
    assert "so none was answered; without adapting (no --adapt" in err
    assert main(["predict", run_id, str(few)]) == 0
    same = tmp_path / "same"
    same.mkdir()
    for i in range(20):  # one picture twenty times: no spread, so no lab's statistics
        shutil.copy(sorted(other_lab.glob("HEALTHY/*.png"))[0], same / f"{i}.png")
    assert main(["predict", run_id, str(same), "--adapt"]) == 2
    assert "20 usable images, 1 of them different (of 20 given)" in capsys.readouterr().err


def test_a_cnn_adapts_its_batch_normalisation_to_the_other_lab_alone_and_in_an_ensemble(tiny_dataset, other_lab):
    """AdaBN: each fold CNN, copied, normalises the other lab's activations with their own mean and
    variance (every batch-norm layer then gives them mean beta and spread gamma), the stored model
    untouched; an ensemble votes with its adapted CNN and its adapted classic member."""
    from leukdash.data.arrays import load_arrays
    from leukdash.data.discovery import open_dataset
    from leukdash.engine.ensemble import create_ensemble
    from leukdash.evaluation.predict import FoldEnsemble
    from leukdash.models import cnn

    trained = run(tiny_config(tiny_dataset).with_changes(model="cnn", image_size=16, epochs=1, batch_size=16), n_jobs=1)
    nb = run(tiny_config(tiny_dataset), n_jobs=1)
    import keras  # after leukdash set TensorFlow's threads
    import ml_dtypes  # Keras's own dependency: bfloat16's precision

    images = load_arrays(open_dataset(str(other_lab)), 16).images
    folds = FoldEnsemble(trained["run_id"])
    stored = [w.copy() for w in folds.models[0].get_weights()]
    models = [cnn.adapted(model, images) for model in folds.models]
    assert all(np.array_equal(a, b) for a, b in zip(stored, folds.models[0].get_weights()))
    for model in models:
        norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        assert norms
        for layer in norms:
            given = keras.Model(model.inputs, layer.output).predict_on_batch(images)
            # Mixed bfloat16 (CPUs with AVX-512 BF16 or AMX) rounds each output to 8 significant
            # bits: the mean and spread may then differ by that rounding, and by no more.
            rounding = float(ml_dtypes.finfo(given.dtype).eps) / 2
            out = np.asarray(given, dtype=np.float64).reshape(-1, given.shape[-1])
            gamma, beta = (np.asarray(v, dtype=np.float64) for v in (layer.gamma, layer.beta))
            var = np.asarray(layer.moving_variance, dtype=np.float64)
            assert np.allclose(out.mean(axis=0), beta, atol=1e-4 + rounding * np.abs(out).mean(axis=0))
            assert np.allclose(out.var(axis=0), gamma ** 2 * var / (var + layer.epsilon), rtol=1e-3,
                               atol=1e-6 + 3 * rounding * (out ** 2).mean(axis=0))
    vote = np.mean([cnn.predict_proba(model, images) for model in models], axis=0)
    adapted = evaluate(trained["run_id"], str(other_lab), adapt=True)
    shown = np.array([list(row["probabilities"].values()) for row in adapted["images"]])
    assert np.allclose(shown, vote, atol=1e-5)
    plain = np.array([list(row["probabilities"].values()) for row in evaluate(trained["run_id"], str(other_lab))["images"]])
    assert not np.allclose(plain, shown, atol=1e-3)
    assert adapted["dataset"]["warnings"][-1].startswith("adapted: the CNNs re-estimated their batch-normalisation")
    both = create_ensemble([trained["run_id"], nb["run_id"]])
    adapted = evaluate(both["run_id"], str(other_lab), adapt=True)
    assert "classic models standardised their inputs" in adapted["dataset"]["warnings"][-1]
    assert "and the CNNs re-estimated" in adapted["dataset"]["warnings"][-1]
    vote = (vote + _adapted_vote(nb["run_id"], other_lab, 32)) / 2  # each member at its own size
    shown = np.array([list(row["probabilities"].values()) for row in adapted["images"]])
    assert np.allclose(shown, vote, atol=1e-5)


def test_distinct_cells_on_black_are_not_known_images_and_copies_of_one_still_are(cnmc_path, tmp_path):
    """C-NMC's cells lie on a black surround that makes most of each image: two distinct cells
    differ little on average (274 of its 300 images lie within the known-image difference of
    another cell), so their fine detail decides, and a copy of a training image is still known."""
    from PIL import Image

    train, other = tmp_path / "train", []
    for name in ("ALL", "HEALTHY"):
        files = sorted((cnmc_path / name).glob("*.png"))
        (train / name).mkdir(parents=True)
        for path in files[:12]:
            shutil.copy(path, train / name / path.name)
        other += files[-8:]
    run_id = run(RunConfig(dataset=str(train), model="knn", image_size=24, augment_factor=1, folds=3), n_jobs=1)["run_id"]
    assert [known_image(run_id, decode_image(path)) for path in other] == [None] * len(other)
    original = sorted((train / "HEALTHY").glob("*.png"))[3]
    half = tmp_path / "half.jpg"
    Image.open(original).convert("RGB").reduce(2).save(half, quality=75)
    found = known_image(run_id, decode_image(half))
    assert found["file"] == f"HEALTHY/{original.name}" and found["match"] == "near-identical"


def test_groups_that_cannot_vary_give_no_interval_and_say_why(tiny_dataset, other_lab, tmp_path, capsys):
    """One group holding both classes, or one image per class: every resample of the group
    bootstrap is the same, so the intervals are n/a with the reason (text and --json), not a
    zero-width interval; a group of several classes is told by its images of each. Two subjects
    per class are no reason of the groups' (an interval that varies is in
    test_answers_that_cannot_vary_over_resamples_give_no_interval_and_say_why)."""
    result = run(tiny_config(tiny_dataset, classes=("ALL", "HEALTHY")), n_jobs=1)
    run_id = result["run_id"]

    def folder(name, per_class, group=None):
        out, rows = tmp_path / name, ["file,group"]
        for cls in ("ALL", "HEALTHY"):
            (out / cls).mkdir(parents=True)
            for path in sorted((other_lab / cls).glob("*.png"))[:per_class]:
                (out / cls / path.name).write_bytes(path.read_bytes())
                rows.append(f"{cls}/{path.name},{group}")
        if group:
            (out / "groups.csv").write_text("\n".join(rows) + "\n")
        return out

    for out, reason in ((folder("one_group", 4, "P1"), "one group holds every image"),
                        (folder("one_each", 1), "a class has fewer than 2 groups")):
        external = evaluate(run_id, str(out))
        intervals = external["intervals"]
        assert intervals["accuracy"] is None and intervals["balanced_accuracy"] is None, intervals
        assert intervals["reason"].startswith(reason)
        assert main(["evaluate", run_id, str(out), "--json"]) == 0
        printed = json.loads(capsys.readouterr().out)["intervals"]
        assert printed["accuracy"] is None and printed["reason"].startswith(reason)
        assert main(["evaluate", run_id, str(out)]) == 0
        text = capsys.readouterr().out
        assert f"(95% group bootstrap n/a: {reason}" in text and "group bootstrap 0." not in text
        assert "NOTE: the intervals rest on few groups" not in text
        assert "n/a: " + reason in outcome_sentence(external)
    mixed = evaluate(run_id, str(tmp_path / "one_group"))["per_group"]
    assert [(g["group"], g["classes"]) for g in mixed] == [("P1", {"ALL": 4, "HEALTHY": 4})]
    assert groups_text(mixed) == f"P1 (ALL 4 + HEALTHY 4) {mixed[0]['recall']:.2f}"

    adequate = evaluate(run_id, str(other_lab))  # two subjects of each class: the groups can vary
    reason = adequate["intervals"]["reason"]  # the answers may not (this tiny model's are alike in each group)
    assert reason is None or reason.startswith("every resample is the same"), reason
    for name in ("accuracy", "balanced_accuracy"):
        if adequate["intervals"][name] is not None:
            low, high = adequate["intervals"][name]
            assert low <= adequate[name] <= high


def test_class_names_that_differ_only_in_unicode_form_are_one_class(tiny_dataset, other_lab, tmp_path, capsys):
    """macOS writes a folder 'Célula' as 'Ce' + a combining accent (NFD), a keyboard types one
    'é' (NFC): typed in --classes, or as another set's folder, the two are one class."""
    import unicodedata

    decomposed, composed = (unicodedata.normalize(form, "Célula") for form in ("NFD", "NFC"))
    assert decomposed != composed
    for source, root, blast in ((tiny_dataset, tmp_path / "mac", decomposed), (other_lab, tmp_path / "other", composed)):
        shutil.copytree(source / "ALL", root / blast)
        shutil.copytree(source / "HEALTHY", root / "HEALTHY")
    assert main(["run", str(tmp_path / "mac"), "--classes", f"{composed},HEALTHY", "--model", "nb", "--image-size",
                 "16", "--folds", "2", "--augment-factor", "1", "--json", "--quiet"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    result = evaluate(run_id, str(tmp_path / "other"))
    assert len(result["images"]) == len(list((other_lab / "ALL").iterdir())) + len(list((other_lab / "HEALTHY").iterdir()))


def test_the_latest_test_of_a_folder_is_listed_whatever_its_files_times(tiny_run, other_lab, tmp_path):
    """A folder tested, then changed and tested again: its later result is listed even when the
    earlier one's file time lies in the future (a clock set wrong, a copy that reset the times);
    changed back, its first result is answered again and listed."""
    folder = tmp_path / "lab"
    shutil.copytree(other_lab, folder)
    first = evaluate(tiny_run["run_id"], str(folder))
    removed = {path: path.read_bytes() for path in sorted(folder.glob("HEALTHY/*.png"))[:3]}
    for path in removed:
        path.unlink()
    second = evaluate(tiny_run["run_id"], str(folder))
    assert second["n_images"] == first["n_images"] - 3
    stored = result_path(tiny_run["run_id"], first["dataset"]["fingerprint"])
    os.utime(stored, (stored.stat().st_atime, stored.stat().st_mtime + 86400))
    [listed] = stored_evaluations(tiny_run["run_id"])
    assert listed["n_images"] == second["n_images"]
    for path, content in removed.items():
        path.write_bytes(content)
    assert evaluate(tiny_run["run_id"], str(folder))["n_images"] == first["n_images"]
    [listed] = stored_evaluations(tiny_run["run_id"])
    assert listed["n_images"] == first["n_images"]


def test_a_cnn_is_not_loaded_under_an_address_space_limit_too_small_for_tensorflow(tiny_dataset, other_lab,
                                                                                    monkeypatch, capsys):
    """Under ``ulimit -v`` of 1.6-2.0 GB TensorFlow hung (deaf to SIGTERM) or aborted with a C++
    stack while loading a CNN: predict and evaluate say it in one line first, and keep the run."""
    from leukdash.engine import machine

    trained = run(tiny_config(tiny_dataset).with_changes(model="cnn", image_size=16, epochs=1, batch_size=16), n_jobs=1)
    folds = sorted((RunStore().run_dir(trained["run_id"]) / "folds").iterdir())
    monkeypatch.setattr(machine, "address_space_limit_mb", lambda: 1600)
    image = str(sorted((other_lab / "ALL").glob("*.png"))[0])
    for command in (["predict", trained["run_id"], image], ["evaluate", trained["run_id"], str(other_lab)]):
        assert main(command) == 2
        out, err = capsys.readouterr()
        assert err == (f"error: run {trained['run_id']}'s CNN needs about 3,000 MB of address space for TensorFlow, "
                       "and each process may map at most 1,600 MB here (ulimit -v): raise or remove that limit\n")
    assert sorted((RunStore().run_dir(trained["run_id"]) / "folds").iterdir()) == folds
    monkeypatch.setattr(machine, "address_space_limit_mb", lambda: 3000)
    assert main(["predict", trained["run_id"], image]) == 0


def test_a_run_keeps_its_checks_and_external_tests_once_its_folder_changes(tiny_dataset, other_lab, tmp_path,
                                                                          capsys):
    """What predict, evaluate and oof need of a run's images is stored as the run finishes: an image
    added to its folder afterwards takes none of it away, used before the change or not."""
    from leukdash.evaluation.answer_table import out_of_fold_rows

    folder = shutil.copytree(tiny_dataset, tmp_path / "mine")
    assert main(["run", str(folder), "--model", "nb", "--image-size", "16", "--no-augment", "--folds", "2",
                 "--quiet", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    shutil.copy(sorted(other_lab.glob("ALL/*.png"))[0], folder / "ALL" / "added.png")
    assert main(["predict", run_id, str(sorted(folder.glob("ALL/*.png"))[0])]) == 0
    assert "unavailable" not in capsys.readouterr().err
    assert evaluate(run_id, str(other_lab))["n_images"] == 40
    assert not any(row["file"].startswith("#") for row in out_of_fold_rows(run_id))


def test_runs_tested_on_two_states_of_a_folder_are_not_ranked_against_each_other(tiny_run, tiny_dataset, other_lab,
                                                                                  tmp_path):
    """Run X tested on a folder, four of its images removed, run Y tested on it: X's figure is on
    images no longer there, so it is left out of the ranking and named to be evaluated again."""
    from leukdash.evaluation import transfer

    folder = shutil.copytree(other_lab, tmp_path / "ext")
    other = run(tiny_config(tiny_dataset, seed=1), n_jobs=1)["run_id"]
    evaluate(tiny_run["run_id"], str(folder))
    for path in sorted(folder.glob("ALL/*.png"))[:4]:
        path.unlink()
    later = evaluate(other, str(folder))
    ranked = {row["run_id"]: row for row in transfer.rank_runs([tiny_run["run_id"], other], "lodo")}
    assert ranked[tiny_run["run_id"]]["transfer"] is None and ranked[tiny_run["run_id"]]["earlier"] == ["ext"]
    assert ranked[other]["transfer"]["balanced_accuracy"] == later["balanced_accuracy"]
    assert ranked[other]["earlier"] == []
    assert transfer.transfer_overview([tiny_run["run_id"], other])["scores"][tiny_run["run_id"]] is None
    assert list(ranked) == [other, tiny_run["run_id"]]


def test_runs_of_another_class_order_or_fewer_classes_tested_on_one_folder_tested_one_state_of_it(
        tiny_run, tiny_dataset, other_lab):
    """A run of the same classes in another order, or of two of them, tested on a folder after another
    run was: the folder did not change, so the first run's test stays in its figure (the folder's state is
    its images, not the fingerprint of the set a run scores, which has the run's class order)."""
    from leukdash.evaluation import transfer

    classes = RunStore().read_meta(tiny_run["run_id"])["dataset"]["classes"]
    reordered = run(tiny_config(tiny_dataset, classes=tuple(reversed(classes))), n_jobs=1)["run_id"]
    fewer = run(tiny_config(tiny_dataset, classes=tuple(classes[:2])), n_jobs=1)["run_id"]
    ids = [tiny_run["run_id"], reordered, fewer]
    tests = [evaluate(run_id, str(other_lab)) for run_id in ids]
    assert tests[0]["dataset"]["fingerprint"] != tests[1]["dataset"]["fingerprint"]
    scores = transfer.transfer_overview(ids)["scores"]
    assert [scores[run_id]["balanced_accuracy"] for run_id in ids] == [test["balanced_accuracy"] for test in tests]
    assert all(row["earlier"] == [] for row in transfer.rank_runs(ids, "lodo"))


def test_storing_a_runs_checks_decodes_each_image_once_and_imports_no_scikit_learn(tiny_dataset):
    """What a run's checks need of its images is stored as it finishes, in the process that computed no
    fold: each image is decoded once (its small copy and its pixel digest from one decoding), and the
    descriptors do not wait on importing scikit-learn."""
    import subprocess
    import sys

    config = RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, folds=2)
    run_id = run(config, n_jobs=1)["run_id"]
    folder = RunStore().run_dir(run_id)
    for name in ("reference.npz", "ood.npz", "trained-on.npz"):
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(Path(os.environ["LEUKDASH_ARTIFACTS"]) / "cache" / "features", ignore_errors=True)
    code = ("import sys\nfrom leukdash.data import dataset, decode\nfrom leukdash.config import RunConfig\n"
            "from leukdash.engine.runner import resolve\nfrom leukdash.engine.store import RunStore\n"
            "from leukdash.evaluation.reference import store_references\n"
            "decoded, real = [], decode.decode_image\n"
            "def counted(path):\n    decoded.append(path)\n    return real(path)\n"
            "dataset.decode_image = decode.decode_image = counted\n"
            f"r = resolve(RunConfig.from_dict({config.to_dict()!r}))\n"
            "store_references(r.run_id, r.dataset, RunStore())\n"
            "print(len(decoded), len(r.dataset.items), 'sklearn' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert done.stdout.split() == ["40", "40", "False"]
    assert (folder / "reference.npz").is_file() and (folder / "ood.npz").is_file()


def test_a_run_on_engineered_features_describes_its_images_with_the_features_its_folds_computed(tiny_dataset,
                                                                                               monkeypatch):
    """The out-of-distribution description of a run on engineered features reads its images'
    descriptors back from what its folds computed, and is the description of all its images at once."""
    from leukdash.data.arrays import load_arrays
    from leukdash.data.discovery import open_dataset
    from leukdash.evaluation.ood import describe_images, training_distribution
    from leukdash.models import features

    run_id = run(tiny_config(tiny_dataset).with_changes(image_size=16), n_jobs=1)["run_id"]
    (RunStore().run_dir(run_id) / "ood.npz").unlink(missing_ok=True)
    calls = []
    extract = features.extract_features
    monkeypatch.setattr(features, "extract_features", lambda images: calls.append(len(images)) or extract(images))
    described = training_distribution(run_id)
    assert calls == []
    whole = describe_images(load_arrays(open_dataset(str(tiny_dataset)), 16).images)
    assert calls == [40] and np.array_equal(described.features, whole)


@pytest.mark.parametrize("quiet", [[], ["--quiet"]], ids=["progress", "quiet"])
def test_a_runs_checks_not_stored_for_a_full_disk_are_said_and_the_run_stands(tiny_dataset, monkeypatch, capsys,
                                                                              quiet):
    """A full disk as a run finishes dropped reference.npz without a word (the cache write was skipped
    as on a read-only store): the run's checks were lost once its folder changed. It is said now, once, and under
    --quiet too (it was a progress message, which --quiet silenced)."""
    import errno

    from leukdash.data import arrays

    def no_space(path, **members):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(arrays, "save_npz", no_space)
    status = main(["run", str(tiny_dataset), "--model", "nb", "--feature-set", "features", "--image-size", "32",
                   "--no-augment", "--folds", "2", "--seed", "41", *quiet])
    said = capsys.readouterr().err
    assert status == 0 and said.count("what its checks need of its images was not stored") == 1, said
    assert "reference.npz: no space left on the device" in said and "the first predict or evaluate" in said


def test_a_runs_checks_not_stored_in_a_store_the_python_api_names_fail_the_step_too(tiny_dataset, tmp_path,
                                                                                    monkeypatch):
    """A store outside LEUKDASH_ARTIFACTS (``RunStore(root=...)``) words a failed write "cannot use": the step still
    fails, as in the store the CLI uses, and is said to the caller, who passes no ``on_event`` (the README's
    notebook): as a StoreWarning, where it was a progress event nobody received."""
    import errno

    from leukdash.data import arrays
    from leukdash.engine.store import RunStore
    from leukdash.errors import StoreWarning
    from leukdash.evaluation.runs import run as run_with_checks

    def no_space(path, **members):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(arrays, "save_npz", no_space)
    store = RunStore(root=tmp_path / "elsewhere" / "runs")
    with pytest.warns(StoreWarning) as said:
        result = run_with_checks(tiny_config(tiny_dataset, seed=43), n_jobs=1, store=store)
    assert result["run_id"] and not (store.run_dir(result["run_id"]) / "reference.npz").exists()
    lines = [str(warning.message) for warning in said]
    assert any(line.startswith(f"run {result['run_id']} is finished, but what its checks need of its images was "
                               "not stored") for line in lines), lines


def test_an_external_result_not_stored_for_a_file_size_limit_is_said(tiny_run, other_lab, capsys):
    """Under `ulimit -f`, evaluate printed its figures and stored nothing under external/ without a word."""
    from tests.damage import file_size_limit

    with file_size_limit(2000):
        status = main(["evaluate", tiny_run["run_id"], str(other_lab), "--recompute"])
    out, said = capsys.readouterr()
    assert status == 0 and "accuracy" in out
    assert [line for line in said.splitlines() if "external" in line and line.startswith("warning: not stored: ")
            and "file too large for this process's limit (ulimit -f)" in line]


def test_evaluate_reads_each_image_file_of_the_external_folder_once(tiny_run, other_lab, tmp_path, monkeypatch):
    """The folder's state (every class) and the run's classes of it were fingerprinted apart, each hashing every
    file: an evaluate, even one answered from the store, read the folder twice. Combined folders too."""
    import hashlib
    from collections import Counter

    mirrored = tmp_path / "mirrored"
    shutil.copytree(other_lab, mirrored)
    for path in mirrored.rglob("*.png"):
        cv2.imwrite(str(path), cv2.flip(cv2.imread(str(path)), 1))
    read, digest = Counter(), hashlib.file_digest
    monkeypatch.setattr(hashlib, "file_digest", lambda handle, name: (read.update([handle.name]),
                                                                      digest(handle, name))[1])
    for folders in (str(other_lab), f"{other_lab},{mirrored}"):
        for _ in range(2):  # computed, then answered from the store
            read.clear()
            evaluate(tiny_run["run_id"], folders)
            images = {str(path) for folder in folders.split(",") for path in Path(folder).rglob("*.png")}
            external = {path: times for path, times in read.items() if path in images}  # not the run's own
            assert set(external) == images and set(external.values()) == {1}
