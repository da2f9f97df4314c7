"""Predictions as a table: the rows say what the page says (headline and every check's verdict), an
unreadable file keeps its row, a file name stays text in a spreadsheet, and the command line's
``--csv`` is that table alone on stdout."""

import csv
import json
import io
import shutil

import numpy as np
import pytest
from PIL import Image

from leukdash.config import AugmentConfig, RunConfig
from leukdash.data.dataset import SYNTHETIC_RUN_NOTE
from leukdash.engine.runner import run
from leukdash.evaluation.answer import headline
from leukdash.evaluation.answer_table import answers_csv
from leukdash.evaluation.predict import predict_files

CLASSES = ("ALL", "AML", "CLL", "CML", "HEALTHY")


def _run(dataset) -> str:
    config = RunConfig(dataset=str(dataset), model="nb", feature_set="pixels", image_size=16, augment_factor=1,
                       augment=AugmentConfig.off(), folds=2)
    return run(config, n_jobs=1)["run_id"]


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_each_row_holds_the_headline_and_every_verdict_in_the_files_order(tiny_dataset, tmp_path, monkeypatch, capsys):
    run_id = _run(tiny_dataset)
    monkeypatch.chdir(tmp_path)
    original = sorted(tiny_dataset.glob("CLL/*.png"))[0]
    own = shutil.copy(original, tmp_path / "own.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save("=1+2.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    entries = predict_files(run_id, ["=1+2.png", "broken.png", own])
    rows = _rows(answers_csv(entries))

    assert list(rows[0]) == ["file", "predicted", "probability", "answer_from", "votes",
                             *[f"p_{c}" for c in CLASSES], "outside_training", "outside_view", "distance_percentile",
                             "likely_wrong", "unsupported", "cell_segmentation", "known_image", "note", "error"]
    noise, broken, known = rows
    # A spreadsheet would run "=1+2.png" as a formula: the cell stays the file's name, as text.
    assert noise["file"] == "'=1+2.png" and broken["file"] == "broken.png"
    assert broken["error"] == entries[1]["error"] and broken["predicted"] == "" and broken["p_ALL"] == ""
    for row, entry in ((noise, entries[0]), (known, entries[2])):
        answer = headline(entry)
        assert row["predicted"] == answer["predicted"] and row["answer_from"] == answer["source"]
        assert float(row["probability"]) == pytest.approx(answer["probability"], abs=1e-4)
        assert sum(float(row[f"p_{c}"]) for c in CLASSES) == pytest.approx(1.0, abs=1e-3)
        assert row["outside_training"] == ("yes" if entry["ood"]["outside"] else "no")
        assert row["outside_view"] == (entry["ood"].get("view", "prepared") if entry["ood"]["outside"] else "")
        assert float(row["distance_percentile"]) == pytest.approx(entry["ood"]["percentile"], abs=0.05)
        assert row["likely_wrong"] == ("yes" if entry["likely_wrong"]["flag"] else "no")
        assert row["cell_segmentation"] == "" and row["error"] == ""  # a run on whole images segments nothing
    # The run's own image: its out-of-fold model's answer, as the page headlines it, and the file it is.
    assert known["answer_from"] == "out-of-fold" and known["known_image"] == f"CLL/{original.name}"
    # Support: judged for a new image; a known one is among the training images itself, so not judged.
    assert noise["unsupported"] == ("yes" if entries[0]["unsupported"]["flag"] else "no") and known["unsupported"] == ""
    assert noise["known_image"] == "" and noise["outside_training"] == "yes"  # noise is like no cell
    # The command line headlines the same answer in its text and its JSON, not the whole ensemble's.
    from leukdash.cli import main

    answer = headline(entries[2])
    assert main(["predict", run_id, str(own), "--json"]) == 0
    said = json.loads(capsys.readouterr().out)["predictions"][0]["answer"]
    assert said == {"predicted": answer["predicted"], "probability": pytest.approx(answer["probability"], abs=5e-4),
                    "answer_from": "out-of-fold"}
    assert main(["predict", run_id, str(own)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{own}: {answer['predicted']} (out-of-fold: fold {entries[2]['known']['fold']}'s model")


def test_predict_csv_is_the_table_alone_and_says_which_checks_it_could_not_make(tiny_dataset, tmp_path, capsys):
    from leukdash.cli import main

    copy = shutil.copytree(tiny_dataset, tmp_path / "moved")
    run_id = _run(copy)
    images = sorted(str(path) for path in tiny_dataset.glob("AML/*.png"))[:2]
    shutil.rmtree(copy)  # the checks need the training images: unavailable now
    assert main(["predict", run_id, "--csv", *images]) == 0
    out, err = capsys.readouterr()
    rows = _rows(out)
    assert [row["file"] for row in rows] == images and all(row["predicted"] in CLASSES for row in rows)
    assert {(row["outside_training"], row["known_image"]) for row in rows} == {("unavailable", "unavailable")}
    note, warning = err.splitlines()  # the note: the run's images are the synthetic demo set
    assert note == f"note: {SYNTHETIC_RUN_NOTE}" and warning.startswith("warning: ood, known and support checks ")
    assert main(["predict", run_id, "--csv", "--json", images[0]]) == 2  # one format or the other
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_folder_stands_for_the_images_under_it(tiny_dataset, tmp_path, capsys):
    """`predict RUN_ID FOLDER`: every image under it, sorted, nested folders too; notes and hidden
    files passed over; an unreadable image keeps its row; a folder without images is one error."""
    from leukdash.cli import main

    run_id = _run(tiny_dataset)
    folder = tmp_path / "to_classify"
    (folder / "slide2").mkdir(parents=True)
    cells = sorted(tiny_dataset.glob("AML/*.png"))
    shutil.copy(cells[0], folder / "b.png")
    shutil.copy(cells[1], folder / "slide2" / "a.png")
    shutil.copy(cells[2], folder / ".hidden.png")
    (folder / "notes.txt").write_text("slide 2 was stained late")
    (folder / "c.png").write_bytes(b"not an image")
    (tmp_path / "empty").mkdir()
    entries = predict_files(run_id, [folder, tmp_path / "empty"])
    assert [entry["file"] for entry in entries] == [str(folder / "b.png"), str(folder / "c.png"),
                                                   str(folder / "slide2" / "a.png"), str(tmp_path / "empty")]
    assert [("error" in entry) for entry in entries] == [False, True, False, True]
    assert entries[3]["error"].startswith("a folder without image files (the image types read are .jpg, ")
    (tmp_path / "empty" / "scan.heic").write_bytes(b"")
    [notes_only] = predict_files(run_id, [tmp_path / "empty"])
    assert notes_only["error"].startswith("a folder without image files (1 .heic file(s); the image types ")
    assert entries[2]["predicted"] == predict_files(run_id, [cells[1]])[0]["predicted"]
    capsys.readouterr()
    assert main(["predict", run_id, str(folder), "--csv"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert [row["file"] for row in rows] == [entry["file"] for entry in entries[:3]]
    assert rows[1]["error"] == entries[1]["error"] and rows[2]["predicted"] == headline(entries[2])["predicted"]


@pytest.mark.parametrize("protocol", ["strict", "paper"])
def test_oof_lists_every_validated_row_with_the_answer_of_its_fold(tiny_dataset, protocol, capsys):
    """`oof RUN_ID`: the run's own out-of-fold answers for error analysis, one row per validated row
    in the dataset's order, with its copy number: under the paper protocol each image's augmented
    copies after it (they were left out, so the rows gave another accuracy than the run's); its rows
    give back each fold's accuracy, and every file is the image of its class."""
    from leukdash.cli import main

    config = RunConfig(dataset=str(tiny_dataset), model="knn", feature_set="pixels", image_size=16, augment_factor=2,
                       augment=AugmentConfig(), folds=2, protocol=protocol)
    result = run(config, n_jobs=1)
    assert main(["oof", result["run_id"]]) == 0
    rows = _rows(capsys.readouterr().out)
    files = sorted(str(p.relative_to(tiny_dataset)) for p in tiny_dataset.glob("*/*.png"))
    copies = 2 if protocol == "paper" else 1
    assert [(row["file"], row["copy"]) for row in rows] == [(f, str(c)) for f in files for c in range(copies)]
    assert all(row["file"].startswith(row["true"] + "/") for row in rows)
    for fold in result["folds"]:
        mine = [row["correct"] == "yes" for row in rows if int(row["fold"]) == fold["fold"] + 1]
        assert np.mean(mine) == pytest.approx(fold["val_acc"]) and len(mine) == fold["n_val"]
    assert all(float(row[f"p_{row['predicted']}"]) == max(float(row[f"p_{c}"]) for c in CLASSES) for row in rows)


def test_exported_probabilities_are_rows_that_sum_to_one(tiny_dataset, tmp_path, capsys):
    """A 3-NN's thirds rounded class by class sum to 0.9999 (GaussianNB's stored rows sum to 1 +- 2e-4):
    `oof`, `predict` and their tables give rows that sum to 1 within 1e-6, which scikit-learn takes
    as probabilities."""
    from sklearn.metrics import roc_auc_score

    from leukdash.cli import main
    from leukdash.evaluation.answer_table import exported_probabilities

    assert exported_probabilities({"ALL": 0.8272, "HEALTHY": 0.17257}) == {"ALL": 0.82739, "HEALTHY": 0.17261}
    run_id = run(RunConfig(dataset=str(tiny_dataset), model="knn", k=3, feature_set="pixels", image_size=16,
                           augment_factor=1, folds=2), n_jobs=1)["run_id"]
    assert main(["oof", run_id]) == 0
    rows = _rows(capsys.readouterr().out)
    assert main(["oof", run_id, "--json"]) == 0
    images = json.loads(capsys.readouterr().out)["images"]
    for table in (rows, images):
        scores = np.array([[float(row[f"p_{c}"]) for c in CLASSES] for row in table])
        assert np.abs(scores.sum(axis=1) - 1).max() <= 1e-6
        assert 0 <= roc_auc_score([row["true"] for row in table], scores, multi_class="ovr", labels=CLASSES) <= 1
    own = sorted((tiny_dataset / "ALL").glob("*.png"))[:2]
    assert main(["predict", run_id, *map(str, own), "--csv"]) == 0
    assert all(abs(sum(float(row[f"p_{c}"]) for c in CLASSES) - 1) <= 1e-6 for row in _rows(capsys.readouterr().out))
    assert main(["predict", run_id, *map(str, own), "--json"]) == 0
    for said in json.loads(capsys.readouterr().out)["predictions"]:
        assert abs(sum(said["probabilities"].values()) - 1) <= 1e-6
        assert abs(sum(said["known"]["probabilities"].values()) - 1) <= 1e-6


def test_oof_names_images_by_index_when_the_runs_dataset_is_gone_and_says_why(tiny_dataset, tmp_path, capsys):
    import json

    from leukdash.cli import main
    from leukdash.evaluation.answer_table import out_of_fold_rows

    copy = shutil.copytree(tiny_dataset, tmp_path / "moved")
    run_id = _run(copy)
    shutil.rmtree(copy)
    rows = out_of_fold_rows(run_id)
    assert len(rows) == 40 and [row["file"] for row in rows] == [f"#{i}" for i in range(40)]
    assert main(["oof", run_id]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1].startswith("#")
    assert err.startswith("warning: file names unavailable (run ") and "which are gone" in err
    assert err.rstrip().endswith("each image is named by its place in the order the run loaded them (#0, #1, ...)")
    assert main(["oof", run_id, "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["warnings"] == [err.strip().removeprefix("warning: ")] and len(said["images"]) == 40


def test_one_answer_given_bare_is_refused_by_name():
    from leukdash.evaluation.answer_table import answers_csv

    with pytest.raises(TypeError, match="entries takes a list of answers .*got a single dict: give it in a list"):
        answers_csv({"file": "cell.png", "predicted": "ALL"})


def test_tied_out_of_fold_answers_are_counted_and_said_with_the_runs_figures(tiny_dataset, capsys):
    """A 2-NN of two classes ties wherever its two neighbours disagree: argmax counts each tie as the
    first class of --classes, so the run's figures depend on the class order. The ties are said with
    the run's figures (run, compare) and `oof` marks them, in either order."""
    from leukdash.cli import main

    said = []
    for classes in (("ALL", "HEALTHY"), ("HEALTHY", "ALL")):
        config = RunConfig(dataset=str(tiny_dataset), model="knn", k=2, feature_set="pixels", image_size=16,
                           augment_factor=1, folds=2, classes=classes)
        run_id = run(config, n_jobs=1)["run_id"]
        assert main(["oof", run_id]) == 0
        rows = _rows(capsys.readouterr().out)
        tied = [row for row in rows if row["undecided"] == "yes"]
        assert tied and all(row[f"p_{classes[0]}"] == row[f"p_{classes[1]}"] == "0.5" for row in tied)
        assert {row["predicted"] for row in tied} == {classes[0]}  # what the figures counted them as
        note = (f"{len(tied)} of {len(rows)} out-of-fold answers are ties between the top classes, counted as the "
                f"first tied class in the run's order ({classes[0]}): the figures depend on the class order; an odd k "
                "avoids ties between two classes")
        assert main(["run", "--dataset", str(tiny_dataset), "--model", "knn", "--k", "2", "--image-size", "16",
                     "--augment-factor", "1", "--folds", "2", "--classes", ",".join(classes), "--quiet"]) == 0
        assert f"warning: {note}" in capsys.readouterr().out.splitlines()
        assert main(["compare", run_id]) == 0
        assert f"warning: {run_id}: {note}" in capsys.readouterr().out.splitlines()
        said.append(len(tied))
    assert said[0] == said[1]  # the same images tie in either order
