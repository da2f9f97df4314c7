"""Pairing runs for McNemar's test: why a pair cannot be paired is said right."""

import json

import pytest

from leukdash.evaluation.compare import paired_mcnemar


def result(fingerprint: str, name: str = "allidb2_ufpr", path: str = "/data/allidb2_ufpr") -> dict:
    oof = {"index": [0, 1, 2], "copy": [0, 0, 0], "true": [0, 1, 1], "proba": [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]}
    return {"run_id": f"nb-{fingerprint}", "config": {"seed": 0}, "dataset": {"fingerprint": fingerprint, "name": name,
                                                                           "path": path}, "folds": [{"oof": oof}]}


def test_two_tasks_of_one_dataset_are_not_called_different_datasets():
    subset = result("b")
    subset["dataset"]["classes"] = ["ALL"]
    assert paired_mcnemar(result("a"), subset)["note"] == "different tasks (class subsets) of one dataset"
    other = result("c", name="synthetic", path="/art/datasets/synthetic")
    assert paired_mcnemar(result("a"), other)["note"] == "different datasets"
    same = paired_mcnemar(result("a"), result("a"))
    assert same["p_value"] == 1.0 and same["n"] == 3 and same["note"] == ""


def test_runs_of_one_dataset_with_their_classes_in_other_orders_are_told_how_to_be_compared():
    first, second = result("a"), result("b")
    first["dataset"]["classes"], second["dataset"]["classes"] = ["ALL", "HEALTHY"], ["HEALTHY", "ALL"]
    assert paired_mcnemar(first, second)["note"] == (
        "the same classes in other orders (ALL, HEALTHY vs HEALTHY, ALL), so their images are numbered apart: "
        "give one run's --classes in the other's order to compare them")
    second["dataset"]["classes"] = ["ALL", "AML"]
    assert paired_mcnemar(first, second)["note"] == "different tasks (class subsets) of one dataset"


def test_copies_of_an_image_are_one_pair_its_original():
    # Run A right on every copy of images 0 and 1, B wrong on all of them: 2 images, not 6.
    def paper(right: list[bool]) -> dict:
        proba = [[0.9, 0.1] if ok else [0.1, 0.9] for ok in right]
        oof = {"index": [0, 1, 2] * 3, "copy": [0] * 3 + [1] * 3 + [2] * 3, "true": [0] * 9, "proba": proba}
        return {"config": {"seed": 0}, "dataset": {"fingerprint": "a", "name": "x", "path": "/x"},
                "folds": [{"oof": oof}]}

    a, b = paper([True] * 9), paper([False, False, True] * 3)
    a["run_id"], b["run_id"] = "nb-a", "nb-b"
    test = paired_mcnemar(a, b)
    assert (test["n"], test["b"], test["c"]) == (3, 2, 0) and test["p_value"] == 0.5  # 2 * (1/2)^2
    strict = result("a")  # images 0, 1, 2 validated once each
    assert paired_mcnemar(a, strict)["n"] == 3


def test_a_run_whose_copies_are_answered_otherwise_than_their_originals_is_said_tested_on_originals(tiny_dataset):
    """Under --protocol paper a copy can be answered otherwise than its original: the accuracy shown counts every
    row, McNemar the originals; the note says so, with each run's right answers on the originals it judges."""
    from leukdash.config import RunConfig
    from leukdash.engine.runner import run_many
    from leukdash.evaluation.compare import compare_runs, format_comparison

    configs = [RunConfig(dataset=str(tiny_dataset), model="nb", feature_set="features", image_size=16, folds=2,
                         augment_factor=factor, protocol=protocol)
               for factor, protocol in ((2, "paper"), (1, "strict"))]
    paper, strict = run_many(configs, n_jobs=1)
    comparison = compare_runs([paper["run_id"], strict["run_id"]])
    test = comparison["mcnemar"][0]

    def right_on_originals(result):
        return sum(f["oof"]["true"][i] == max(range(5), key=f["oof"]["proba"][i].__getitem__)
                   for f in result["folds"] for i, c in enumerate(f["oof"]["copy"]) if c == 0)

    assert test["note"] == (f"on the originals only (their accuracy shown counts the augmented validation copies "
                            f"too): {paper['run_id']} right on {right_on_originals(paper)}/40, {strict['run_id']} on "
                            f"{right_on_originals(strict)}/40")
    assert format_comparison(comparison).splitlines()[-1].endswith(test["note"])
    assert compare_runs([strict["run_id"], strict["run_id"]])["mcnemar"] == []  # one run: no pair, no note


def test_runs_on_other_fold_splits_are_said_to_differ_in_their_folds(tiny_dataset):
    """Two seeds draw other folds: pairing by image still holds, but the note says the folds differ and how; the
    same seed has the same folds, and no note. A holdout run's split is its test fraction, not the fold count it
    ignores; an ensemble's is its members'."""
    from leukdash.config import RunConfig
    from leukdash.engine.ensemble import create_ensemble
    from leukdash.engine.runner import run_many
    from leukdash.evaluation.compare import compare_runs

    settings = (("nb", 0, 2, None), ("nb", 1, 2, None), ("dt", 0, 2, None), ("nb", 0, 5, 0.5), ("nb", 0, 3, None))
    configs = [RunConfig(dataset=str(tiny_dataset), model=model, feature_set="features", image_size=16, folds=folds,
                         augment_factor=1, seed=seed, test_fraction=fraction)
               for model, seed, folds, fraction in settings]
    seed0, seed1, tree, holdout, three = (r["run_id"] for r in run_many(configs, n_jobs=1))
    both = create_ensemble([seed0, tree])["run_id"]
    tests = {(t["run_a"], t["run_b"]): t for t in compare_runs([seed0, seed1, tree, holdout, three, both])["mcnemar"]}
    mixes = ": the difference mixes the fold split's variance with the models'"
    assert tests[seed0, seed1]["note"] == "different folds (seed 0 vs 1)" + mixes
    assert tests[seed0, tree]["note"] == "" and tests[seed0, seed1]["n"] == 40
    assert tests[holdout, three]["note"] == "different folds (test fraction 0.5 vs none (3 folds))" + mixes
    assert tests[seed1, both]["note"] == "different folds (seed 1 vs 0)" + mixes


def test_several_pairs_are_one_family_adjusted_by_holm(tiny_dataset):
    from leukdash.config import RunConfig
    from leukdash.engine.runner import run_many
    from leukdash.evaluation.compare import compare_runs, format_comparison
    from leukdash.metrics import holm, mcnemar

    configs = [RunConfig(dataset=str(tiny_dataset), model=model, feature_set="features", image_size=16, folds=2,
                         augment_factor=2, protocol="paper") for model in ("nb", "knn", "dt")]
    results = {r["run_id"]: r for r in run_many(configs, n_jobs=1)}
    comparison = compare_runs(list(results))
    tests = comparison["mcnemar"]
    assert len(tests) == 3 and [t["p_holm"] for t in tests] == holm([t["p_value"] for t in tests])
    for test in tests:  # one pair per image (40 of them), as the originals alone give it
        originals = [[f["oof"]["true"][i] == max(range(5), key=f["oof"]["proba"][i].__getitem__)
                      for f in results[run_id]["folds"] for i, c in enumerate(f["oof"]["copy"]) if c == 0]
                     for run_id in (test["run_a"], test["run_b"])]
        assert test["n"] == 40 and {k: test[k] for k in ("b", "c", "p_value")} == mcnemar(*originals)
    text = format_comparison(comparison)
    assert f"Holm-adjusted p = {tests[0]['p_holm']:.4g} (n = 40 images)" in text
    # Each run's out-of-fold ROC AUC (5 classes: micro-averaged one vs rest), on the rows its val_acc counts:
    # under the paper protocol the validated copies too (was the originals alone, beside an accuracy of all rows).
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import label_binarize

    for run in comparison["runs"]:
        folds = results[run["run_id"]]["folds"]
        true = [t for f in folds for t in f["oof"]["true"]]
        proba = [p for f in folds for p in f["oof"]["proba"]]
        assert len(true) == 80  # 40 images and a copy of each
        assert run["roc_auc"] == pytest.approx(roc_auc_score(label_binarize(true, classes=range(5)), proba,
                                                             average="micro"))
        assert f"{run['roc_auc']:.4f}" in next(line for line in text.splitlines() if line.startswith(run["run_id"]))
        assert run["roc_auc_kind"] == "micro-average of 5 classes, one vs rest"  # which AUC it is, said
    assert ("roc_auc: pooled out-of-fold on the rows val_acc counts (under the paper protocol its augmented validation "
            "copies too), micro-average of 5 classes, one vs rest (of two classes the first") in text


def test_holm_adjustment_on_a_known_family():
    from leukdash.metrics import holm

    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> made non-decreasing.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == []


def test_one_bare_run_id_is_that_run_and_a_run_id_is_no_result(tiny_dataset):
    from leukdash.config import RunConfig
    from leukdash.engine.ensemble import ensemble_id
    from leukdash.engine.runner import run
    from leukdash.evaluation.compare import compare_runs, distinct_runs, out_of_fold_roc
    from leukdash.evaluation.transfer import rank_runs

    result = run(RunConfig(dataset=str(tiny_dataset), model="nb", image_size=16, folds=2), n_jobs=1)
    run_id = result["run_id"]
    assert [r["run_id"] for r in compare_runs(run_id)["runs"]] == [run_id]  # not read letter by letter
    assert distinct_runs(run_id) == [run_id] and [r["run_id"] for r in rank_runs(run_id, "cv")] == [run_id]
    assert ensemble_id(run_id) == ensemble_id([run_id])
    with pytest.raises(TypeError, match="run_ids: a run's result was given where run ids are expected"):
        compare_runs(result)
    with pytest.raises(TypeError, match=f"a run id was given .* finished_result\\('{run_id}'\\)"):
        out_of_fold_roc(run_id)


def test_a_run_that_answers_one_class_for_every_image_says_so_beside_its_figures(allidb2_path, tmp_path, capsys):
    """20 ALL and 3 HEALTHY: naive Bayes answers ALL for every out-of-fold image, a mean accuracy of 0.87 that is
    the share of ALL; ``run`` and ``compare`` say so from the stored answers, as evaluate calls it collapsed."""
    import shutil

    from leukdash.cli import main
    from leukdash.engine.store import RunStore

    for name, n in (("ALL", 20), ("HEALTHY", 3)):
        (tmp_path / "imb" / name).mkdir(parents=True)
        for path in sorted((allidb2_path / name).iterdir())[:n]:
            shutil.copy(path, tmp_path / "imb" / name / path.name)
    quick = ["run", str(tmp_path / "imb"), "--image-size", "16", "--folds", "3", "--augment-factor", "1",
             "--n-jobs", "1", "--quiet"]
    note = ("note: the model answers ALL for 100% of the images it validates on: its accuracy reflects the class "
            "shares (balanced accuracy 0.50)")
    assert main([*quick, "--model", "nb"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("mean val_acc 0.8690 ") and lines[-1] == note
    assert main([*quick, "--model", "nb", "--json"]) == 0  # as compare --json gives them
    shown = json.loads(capsys.readouterr().out)
    assert shown["collapse"] == note.removeprefix("note: ") and shown["ties"] is None
    assert main([*quick, "--model", "knn"]) == 0
    assert "note:" not in capsys.readouterr().out  # k-NN tells the classes apart here: nothing to say
    run_ids = [entry["run_id"] for entry in RunStore().list_runs()]
    assert main(["compare", *run_ids]) == 0
    nb = next(run_id for run_id in run_ids if run_id.startswith("nb-"))
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")] == [
        f"note: {nb}: {note.removeprefix('note: ')}"]


def answered(classes: list[str], *folds: tuple[list[int], list[int | list[float]]], model: str = "nb") -> dict:
    """A result of ``folds``, each ``(true classes, answers)``: an answer a class index (answered with certainty) or
    the probabilities of each class."""
    stored = []
    for number, (true, answers) in enumerate(folds):
        proba = [answer if isinstance(answer, list) else [float(c == answer) for c in range(len(classes))]
                 for answer in answers]
        stored.append({"fold": number, "oof": {"index": list(range(len(true))), "copy": [0] * len(true),
                                               "true": true, "proba": proba}})
    return {"dataset": {"classes": classes}, "config": {"model": model}, "folds": stored}


def test_fold_models_that_collapse_to_different_classes_are_said_fold_by_fold():
    """Fold 1 answers HEALTHY, fold 2 ALL, for every image: pooled, half and half, no collapse; each fold's model
    collapsed though, and its accuracy is the class share."""
    from leukdash.evaluation.compare import collapse_of

    true = [0] * 10 + [1] * 10
    run = answered(["ALL", "HEALTHY"], (true, [1] * 19 + [0]), (true, [0] * 20))
    assert collapse_of(run) == ("fold 1 answers HEALTHY for 95% and fold 2 answers ALL for 100% of the images they "
                                "validate on: their accuracy reflects the class shares (balanced accuracy 0.45 and "
                                "0.50)")
    run = answered(["ALL", "HEALTHY"], (true, true), (true, [0] * 20))
    assert collapse_of(run) == ("fold 2 answers ALL for 100% of the images it validates on: its accuracy reflects "
                                "the class shares (balanced accuracy 0.50)")


def test_a_fold_is_judged_only_on_two_classes_and_enough_answers():
    """A fold of one class has a chance of 1, which every answer is within 0.1 of; a fold of a few answers gives one
    class to all of them without a collapse; a share that leaves ties out says it is of the answers that do not."""
    from leukdash.evaluation.compare import collapse_of

    true = [0] * 10 + [1] * 10
    assert collapse_of(answered(["ALL", "HEALTHY"], (true, true), ([0] * 10, [0] * 10))) is None  # fold 2: ALL only
    assert collapse_of(answered(["ALL", "HEALTHY"], (true, true), (true[1:], [0] * 19))) is None
    assert collapse_of(answered(["ALL", "HEALTHY"], (true, true), (true + [0, 1], [[0.5, 0.5]] * 2 + [0] * 20))) == (
        "fold 2 answers ALL for 100% of the 20 answers that do not tie (2 of its 22 tie): its accuracy reflects the "
        "class shares (balanced accuracy 0.50)")


def test_answers_that_tie_count_among_those_a_collapse_is_judged_on():
    """29 ties and one ALL collapsed as much as 30 ties, which were noted: the answers were judged only where 20
    of them decide, so the more ties, the less a collapse was said. Where too few do not tie to judge, the note
    leads with the ties: it said the model answers ALL for 100% of the 1 answer that does not tie, never that 29 tie."""
    from leukdash.evaluation.compare import collapse_of

    true, tie = [0] * 15 + [1] * 15, [0.5, 0.5]
    assert collapse_of(answered(["ALL", "HEALTHY"], (true, [tie] * 29 + [0]))) == (
        "29 of the model's 30 answers tie; the 1 other answers ALL for 100%: its accuracy reflects the class shares "
        "(balanced accuracy 0.50)")
    assert collapse_of(answered(["ALL", "HEALTHY"], (true, [tie] * 25 + [0] * 5))).startswith(
        "25 of the model's 30 answers tie; the 5 others answer ALL for 100%: ")


def test_a_good_model_of_skewed_data_has_not_collapsed():
    """97 ALL and 3 HEALTHY answered right: ALL for 97% of the images, but the classes told apart (balanced accuracy
    1.00); only the model answering ALL everywhere scores the class share."""
    from leukdash.evaluation.compare import collapse_of

    true = [0] * 97 + [1] * 3
    assert collapse_of(answered(["ALL", "HEALTHY"], (true, true))) is None
    assert collapse_of(answered(["ALL", "HEALTHY"], (true, [0] * 100))) == (
        "the model answers ALL for 100% of the images it validates on: its accuracy reflects the class shares "
        "(balanced accuracy 0.50)")


def test_ties_of_later_classes_are_said_counted_as_the_first_tied_class_not_the_first_class():
    from leukdash.evaluation.compare import ties_note

    tie = [0.2, 0.4, 0.4]  # AML and CLL tie: argmax counts it as AML; ALL, the first class, is no part of it
    run = answered(["ALL", "AML", "CLL"], ([1, 2, 0], [tie, tie, 0]))
    assert ties_note(run) == ("2 of 3 out-of-fold answers are ties between the top classes, counted as the first tied "
                              "class in the run's order (AML): the figures depend on the class order")


def test_runs_without_stored_answers_have_no_notes_and_notes_come_collapse_then_ties():
    from leukdash.evaluation.compare import collapse_of, format_comparison, ties_note

    for run in (answered(["ALL", "HEALTHY"], ([], [])), {**answered(["ALL", "HEALTHY"]), "folds": [{"fold": 0}]}):
        assert collapse_of(run) is None and ties_note(run) is None  # no answers: nothing to tell, no AxisError
    summary = {"val_acc": {"mean": 0.5, "min": 0.5, "max": 0.5, "std": 0.0}}
    runs = [{"run_id": "nb-1", "label": "NB", "summary": summary, "val_acc_per_fold": [0.5], "roc_auc": None,
             "roc_auc_kind": "", "collapse": "it collapsed", "ties": "it tied"}]
    notes = format_comparison({"runs": runs, "mcnemar": []}).splitlines()[2:]  # below the header and the run
    assert notes == ["note: nb-1: it collapsed", "warning: nb-1: it tied"]


def test_runs_on_two_states_of_one_folder_are_said_to_differ_by_their_images():
    first, second = result("a"), result("b")
    for record, n_images in ((first, 32), (second, 36)):
        record["dataset"].update(classes=["ALL", "HEALTHY"], n_images=n_images)
    assert paired_mcnemar(first, second)["note"] == "the images of allidb2_ufpr changed between these runs (32 vs 36 " \
                                                    "images)"


def test_json_gives_no_spread_or_interval_where_the_text_says_n_a(tiny_dataset, capsys):
    """A holdout run (one fold) and a 2-fold run: compare --json and run --json give std null for one fold and ci95
    null below 3 folds, as the text's "std n/a" and "95% CI n/a" say; the stored summary keeps its figures."""
    from leukdash.cli import main
    from leukdash.config import RunConfig
    from leukdash.engine.runner import run_many

    base = dict(dataset=str(tiny_dataset), model="nb", image_size=16, augment_factor=1)
    holdout, two = run_many([RunConfig(**base, test_fraction=0.25), RunConfig(**base, folds=2)], n_jobs=1)
    assert main(["compare", holdout["run_id"], two["run_id"], "--json"]) == 0
    shown = [run["summary"]["val_acc"] for run in json.loads(capsys.readouterr().out)["runs"]]
    assert shown[0]["std"] is None and shown[0]["ci95"] is None
    assert shown[0]["mean"] == holdout["summary"]["val_acc"]["mean"]
    assert shown[1]["std"] == two["summary"]["val_acc"]["std"] and shown[1]["ci95"] is None
    assert holdout["summary"]["val_acc"]["std"] == 0.0  # stored as before
    assert main(["run", str(tiny_dataset), "--model", "nb", "--image-size", "16", "--augment-factor", "1",
                 "--test-fraction", "0.25", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["balanced_acc"]["std"] is None
