"""Ranking runs by how they transfer: leave-one-dataset-out where the store has it, stored
external tests otherwise, and ``sweeps --rank-by``."""

import json

import numpy as np
import pytest

from leukdash.cli import main
from leukdash.config import RunConfig
from leukdash.engine.ensemble import create_ensemble
from leukdash.engine.runner import run
from leukdash.engine.sweep import run_sweep
from leukdash.evaluation.evaluate import evaluate
from leukdash.evaluation.transfer import left_out_text, rank_runs, transfer_overview
from tests.test_multisource import _lab


@pytest.fixture(scope="module")
def labs(tmp_path_factory):
    base = tmp_path_factory.mktemp("labs")
    return _lab(base / "lab_a", subjects=4), _lab(base / "lab_b", subjects=4, tint=60)


def _config(dataset: str, **changes) -> RunConfig:
    base = dict(dataset=dataset, image_size=16, augment_factor=1, folds=2, model="knn", feature_set="pixels")
    return RunConfig(**{**base, **changes})


def test_a_sweep_is_ranked_by_its_leave_one_dataset_out_result_where_the_store_has_it(labs, capsys):
    both = f"{labs[0]},{labs[1]}"
    configs = [_config(both, model="knn", k=1), _config(both, model="nb"), _config(both, model="dt")]
    sweep = run_sweep(configs, name="transfer", axes={"model": ["knn", "nb", "dt"]}, n_jobs=1)
    ids = [result["run_id"] for result in sweep["results"]]
    # LODO siblings of the first two only: the third has no transfer figure.
    lodo = [run(config.with_changes(protocol="lodo"), n_jobs=1) for config in configs[:2]]
    expected = [float(np.mean([fold["balanced_acc"] for fold in result["folds"]])) for result in lodo]
    scores = [transfer_overview([run_id])["scores"][run_id] for run_id in ids]
    assert [s["source"] for s in scores[:2]] == ["lodo", "lodo"] and scores[2] is None
    assert [s["balanced_accuracy"] for s in scores[:2]] == pytest.approx(expected)
    assert sorted(scores[0]["datasets"]) == ["lab_a", "lab_b"]

    by_lodo = [row["run_id"] for row in rank_runs(ids, "lodo")]
    assert by_lodo[2] == ids[2]  # no transfer figure: last
    figure = dict(zip(ids, expected))
    assert [figure[run_id] for run_id in by_lodo[:2]] == sorted(expected, reverse=True)
    by_cv = rank_runs(ids, "cv")
    assert [row["cv"] for row in by_cv] == sorted((row["cv"] for row in by_cv), reverse=True)

    assert main(["sweeps", "--rank-by", "lodo"]) == 0
    out = capsys.readouterr().out
    assert f"1. {by_lodo[0]}" in out and "no lodo run or external test" in out
    assert main(["sweeps", "--rank-by", "lodo", "--json"]) == 0
    ranked = json.loads(capsys.readouterr().out)["sweeps"][0]["ranked"]
    assert [row["run_id"] for row in ranked] == by_lodo
    assert main(["sweeps", "--rank-by", "accuracy"]) == 2


def test_a_single_dataset_run_transfers_by_its_stored_external_tests(labs):
    first = run(_config(str(labs[0])), n_jobs=1)
    assert transfer_overview([first["run_id"]])["scores"][first["run_id"]] is None
    tested = evaluate(first["run_id"], str(labs[1]))
    score = transfer_overview([first["run_id"]])["scores"][first["run_id"]]
    assert score["source"] == "external" and score["datasets"] == ["lab_b"]
    assert score["balanced_accuracy"] == pytest.approx(tested["balanced_accuracy"])
    # An ensemble of lodo runs carries its own leave-one-dataset-out figure.
    both = f"{labs[0]},{labs[1]}"
    members = [run(_config(both, model=m, protocol="lodo"), n_jobs=1)["run_id"] for m in ("knn", "nb")]
    made = create_ensemble(members)
    assert transfer_overview([made["run_id"]])["scores"][made["run_id"]] == {
        "balanced_accuracy": pytest.approx(float(np.mean([f["balanced_acc"] for f in made["folds"]]))),
        "source": "lodo", "run_id": made["run_id"], "datasets": ["lab_a", "lab_b"]}

    # Predict defaults to the run on real images that transfers best, and says how it transfers.
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    untested = run(_config(str(labs[0]), model="nb"), n_jobs=1)["run_id"]  # newest, no transfer figure
    best = transfer_overview([untested, first["run_id"], made["run_id"], *members])["best"]
    figures = {run_id: transfer_overview([run_id])["scores"][run_id]["balanced_accuracy"]
               for run_id in (first["run_id"], made["run_id"], *members)}
    assert best in figures and figures[best] == max(figures.values())
    st.cache_data.clear()
    at = AppTest.from_file("../streamlit_app.py", default_timeout=60).run()
    at.switch_page("pages/predict.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="predict_run").value == best
    assert any("a lab it never saw" in caption.value for caption in at.caption)
    st.cache_data.clear()


def test_runs_are_ranked_on_the_test_sets_they_share_each_test_weighed_by_its_images(labs, tmp_path, capsys):
    """Run A tested on lab_b and on a folder of two images, run B on lab_b only: they are compared on
    lab_b alone (A's small test would weigh as much as lab_b's 24 images in a mean of each run's tests),
    A's other test named; a run tested only elsewhere has no figure beside theirs. One run's own figure
    weighs each of its tests by the images it scored."""
    few = _lab(tmp_path / "few", subjects=1, per_subject=1, tint=-40)
    models = ("knn", "nb", "dt")
    sweep = run_sweep([_config(str(labs[0]), model=model) for model in models], name="shared",
                      axes={"model": list(models)}, n_jobs=1)
    first, second, third = (result["run_id"] for result in sweep["results"])
    on_b, on_few = evaluate(first, str(labs[1])), evaluate(first, str(few))
    others_on_b = evaluate(second, str(labs[1]))
    evaluate(third, str(few))

    assert transfer_overview([first])["scores"][first]["balanced_accuracy"] == pytest.approx(np.average(
        [on_b["balanced_accuracy"], on_few["balanced_accuracy"]], weights=[on_b["n_images"], on_few["n_images"]]))
    overview = transfer_overview([first, second, third])
    scores = overview["scores"]
    assert scores[first] == {"balanced_accuracy": on_b["balanced_accuracy"], "source": "external", "run_id": first,
                             "datasets": ["lab_b"]}
    assert scores[second]["balanced_accuracy"] == others_on_b["balanced_accuracy"] and scores[third] is None
    rows = {row["run_id"]: row for row in rank_runs([first, second, third], "lodo")}
    assert rows[first]["elsewhere"] == ["few"] and rows[second]["elsewhere"] == rows[second]["untested"] == []
    assert rows[third]["transfer"] is None and rows[third]["elsewhere"] == ["few"]
    assert rows[third]["untested"] == ["lab_b"]
    assert list(rows)[-1] == third
    assert main(["sweeps", "--rank-by", "lodo"]) == 0
    lines = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("   ")}
    # each line's "few" is not compared, though the other line's run was tested there: not every run was
    assert lines[first].endswith("transfer: external " f"{on_b['balanced_accuracy']:.4f} (lab_b); "
                                 "not compared (not every run compared was tested there): few")
    assert lines[third].endswith("transfer: not compared (not every run compared was tested there): few; not "
                                 "tested on lab_b, which the others are compared on")
    best = overview["best"]
    assert scores[best]["balanced_accuracy"] == max(on_b["balanced_accuracy"], others_on_b["balanced_accuracy"])

    # Predict opens on the best of them on lab_b, and says why the run tested elsewhere has no figure.
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tests.test_app import open_page, shown

    st.cache_data.clear()
    at = open_page(AppTest.from_file("../streamlit_app.py", default_timeout=60).run(), "predict")
    assert at.selectbox(key="predict_run").value == best
    at.selectbox(key="predict_run").set_value(third).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(shown(c.value).startswith(
        "No transfer figure beside the other runs': not compared (not every run compared was tested there): few; "
        "not tested on lab_b, which the others are compared on. To rank it, evaluate it on the test sets the runs are "
        "compared on (lab_b, as last tested)") for c in at.caption)
    st.cache_data.clear()


def test_tests_of_other_combinations_of_folders_under_one_parent_are_other_test_sets(labs, tmp_path):
    """A test of combined folders is stored with their common parent as its path: two runs tested on other
    combinations under one parent were taken for tests of one folder, each calling the other's "earlier", and
    a run's two combinations one result. Each combination is a test set of its own."""
    from leukdash.evaluation.evaluate import stored_evaluations

    parts = [_lab(tmp_path / name, subjects=2, tint=tint) for name, tint in (("p", -30), ("q", 30), ("r", 50))]
    first, second = (run(_config(str(labs[0]), model=model), n_jobs=1)["run_id"] for model in ("nb", "dt"))
    evaluate(first, f"{parts[0]},{parts[1]}")
    evaluate(second, f"{parts[0]},{parts[2]}")
    evaluate(first, f"{parts[0]},{parts[1]}")  # evaluated again, as a stale test is told to be
    rows = {row["run_id"]: row for row in rank_runs([first, second], "lodo")}
    assert rows[first]["earlier"] == rows[second]["earlier"] == []
    assert rows[first]["transfer"]["datasets"] == ["p,q"] and rows[first]["elsewhere"] == []
    assert rows[second]["transfer"] is None and rows[second]["elsewhere"] == ["p,r"]
    assert rows[second]["untested"] == ["p,q"]
    evaluate(first, f"{parts[1]},{parts[2]}")
    assert [test["dataset"]["name"] for test in stored_evaluations(first)] == ["p,q", "q,r"]


def test_a_ranking_reads_each_run_s_result_and_external_results_once(labs, tmp_path, monkeypatch):
    """The ranking and Predict's transfer figures read every run's result and external results once (they were
    read two and three times: once for each folder's state, for each run's tests, for its earlier ones)."""
    from collections import Counter

    import leukdash.engine.runner as runner
    import leukdash.evaluation.evaluate as evaluation
    from leukdash.engine.store import RunStore
    from leukdash.evaluation import transfer

    few = _lab(tmp_path / "few", subjects=1, tint=-40)
    ids = [run(_config(str(labs[0]), model=model), n_jobs=1)["run_id"] for model in ("nb", "dt")]
    for run_id in ids:
        evaluate(run_id, str(labs[1]))
    evaluate(ids[0], str(few))
    files = sorted(str(path) for run_id in ids for path in (RunStore().run_dir(run_id) / "external").glob("*"))
    results, externals = Counter(), Counter()
    load_result, stored = runner.load_result, evaluation._stored
    monkeypatch.setattr(runner, "load_result", lambda run_id, *a, **k: (results.update([run_id]),
                                                                          load_result(run_id, *a, **k))[1])
    monkeypatch.setattr(evaluation, "_stored", lambda path: (externals.update([str(path)]), stored(path))[1])
    for ranked in (lambda: rank_runs(ids, "lodo"), lambda: transfer.transfer_overview(ids)):
        results.clear(), externals.clear()
        ranked()
        assert results == Counter(ids) and sorted(externals) == files and set(externals.values()) == {1}


def test_a_run_whose_every_test_is_on_an_earlier_state_is_named_untested_where_the_others_are_compared(labs,
                                                                                                      tmp_path):
    """A run tested only on a folder that changed since had no ``untested``: the ranking said only "evaluate
    again", and after it the run still had no figure, not tested on the other folder the runs are compared on."""
    import cv2

    changing = _lab(tmp_path / "changing", subjects=1, tint=-40)
    stale, current = (run(_config(str(labs[0]), model=model), n_jobs=1)["run_id"] for model in ("nb", "dt"))
    evaluate(stale, str(changing))
    cv2.imwrite(str(changing / "ALL" / "A0" / "added.png"), np.full((16, 16, 3), 90, np.uint8))
    evaluate(current, str(changing))
    evaluate(current, str(labs[1]))
    rows = {row["run_id"]: row for row in rank_runs([stale, current], "lodo")}
    assert rows[current]["transfer"]["datasets"] == ["changing", "lab_b"]
    assert rows[stale]["transfer"] is None and rows[stale]["earlier"] == ["changing"]
    assert rows[stale]["untested"] == ["lab_b"]  # its test on "changing" is named earlier, to be evaluated again
    assert left_out_text(rows[stale]) == ("on an earlier state of changing: evaluate again; not tested on lab_b, "
                                          "which the others are compared on")


def _alike(root, per_class=3):
    """A test folder whose every image looks like ALL (dark), HEALTHY's too: each model answers ALL to all of
    them, a balanced accuracy of exactly 0.5, so that runs tie in transfer."""
    import cv2

    rng = np.random.default_rng(0)
    for name in ("ALL", "HEALTHY"):
        (root / name).mkdir(parents=True)
        for image in range(per_class):
            pixels = np.clip(70 + rng.normal(0, 12, (16, 16, 3)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / name / f"{image}.png"), pixels)
    return root


def test_predict_s_default_breaks_a_tie_in_transfer_by_cv_as_the_ranking_does(labs, tmp_path):
    """Two runs transfer alike: the ranking put the better cross-validated first, Predict's default
    (transfer_overview's best) the one whose run id sorts last."""
    import shutil

    noisy = _lab(tmp_path / "noisy", subjects=4)
    for subject in ("0", "1"):  # two ALL images filed as HEALTHY: a cv below the clean lab's
        shutil.move(noisy / "ALL" / f"A{subject}" / "0.png", noisy / "HEALTHY" / f"H{subject}" / "moved.png")
    better = run(_config(str(labs[0]), model="dt"), n_jobs=1)["run_id"]  # "dt-" sorts before "knn-"
    worse = run(_config(str(noisy), model="knn"), n_jobs=1)["run_id"]
    alike = _alike(tmp_path / "alike")
    assert evaluate(better, str(alike))["balanced_accuracy"] == evaluate(worse, str(alike))["balanced_accuracy"]
    ranked = rank_runs([worse, better], "lodo")
    assert [row["run_id"] for row in ranked] == [better, worse] and ranked[0]["cv"] > ranked[1]["cv"]
    assert transfer_overview([worse, better])["best"] == transfer_overview([better, worse])["best"] == better


def test_synthetic_demo_runs_tests_do_not_choose_the_folders_the_real_runs_are_compared_on(labs, tmp_path):
    """Demo runs (trained on synthetic data) tested on a demo folder, more of them than the real runs tested on
    their lab: the demo folder was the one every run was compared on, so no real run had a figure, and Predict
    said none had, telling each real run to be evaluated on the demo folder."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from leukdash.data.dataset import SYNTHETIC_LABEL
    from leukdash.evaluation.transfer import comparison
    from tests.test_app import open_page, shown

    demo = _lab(tmp_path / "demo", subjects=2, tint=20)
    (demo / "SOURCE.md").write_text(SYNTHETIC_LABEL)
    demo_folder = _lab(tmp_path / "demo_test", subjects=1, tint=20)
    real = [run(_config(str(labs[0]), model=model), n_jobs=1)["run_id"] for model in ("nb", "dt")]
    synthetic = [run(_config(str(demo), model=model), n_jobs=1)["run_id"] for model in ("nb", "dt", "knn")]
    on_b = {run_id: evaluate(run_id, str(labs[1]))["balanced_accuracy"] for run_id in real}
    for run_id in synthetic:
        evaluate(run_id, str(demo_folder))
    compared = comparison(real + synthetic)
    assert compared.compared_on == ["lab_b"]
    assert {run_id: compared.standings[run_id]["transfer"]["balanced_accuracy"] for run_id in real} == on_b
    assert all(compared.standings[run_id]["transfer"] is None and compared.standings[run_id]["untested"] == ["lab_b"]
               and compared.standings[run_id]["elsewhere"] == ["demo_test"] for run_id in synthetic)
    best = transfer_overview(real + synthetic)["best"]
    assert best in real and on_b[best] == max(on_b.values())

    st.cache_data.clear()
    at = open_page(AppTest.from_file("../streamlit_app.py", default_timeout=60).run(), "predict")
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="predict_run").value == best
    captions = [shown(caption.value) for caption in at.caption]
    assert any(caption.startswith("The page opens on the run trained on real images that transfers best")
               for caption in captions)
    assert not any("No run on real images has a transfer figure" in caption for caption in captions)
    st.cache_data.clear()


def test_a_folder_moved_after_a_run_was_tested_on_it_is_one_test_set_with_its_images(labs, tmp_path):
    """A folder moved (renamed, copied) between two runs' tests of the same images (the same ``state``) was two
    test sets: the run tested at the new path was named untested on the set and tested elsewhere, and had no
    figure. A folder changed since a run's test still leaves that test on an earlier state."""
    import cv2

    before, after = _lab(tmp_path / "before" / "big", subjects=1, tint=-40), tmp_path / "after" / "big"
    moved, stayed, changed = (run(_config(str(labs[0]), model=model), n_jobs=1)["run_id"]
                              for model in ("nb", "dt", "knn"))
    on_before = evaluate(moved, str(before))
    evaluate(stayed, str(labs[1]))
    after.parent.mkdir()
    before.rename(after)
    on_after = evaluate(stayed, str(after))
    assert on_after["dataset"]["state"] == on_before["dataset"]["state"]
    rows = {row["run_id"]: row for row in rank_runs([moved, stayed], "lodo")}
    assert rows[moved]["transfer"]["datasets"] == rows[stayed]["transfer"]["datasets"] == ["big"]
    assert rows[moved]["transfer"]["balanced_accuracy"] == on_before["balanced_accuracy"]
    assert rows[stayed]["transfer"]["balanced_accuracy"] == on_after["balanced_accuracy"]
    assert rows[stayed]["untested"] == rows[stayed]["earlier"] == [] and rows[stayed]["elsewhere"] == ["lab_b"]

    cv2.imwrite(str(after / "ALL" / "A0" / "added.png"), np.full((16, 16, 3), 90, np.uint8))
    evaluate(changed, str(after))
    rows = {row["run_id"]: row for row in rank_runs([moved, stayed, changed], "lodo")}
    assert rows[stayed]["earlier"] == ["big"] and rows[changed]["earlier"] == []


def test_combined_folders_one_of_them_moved_are_one_test_set_with_their_images(labs, tmp_path):
    """A combined test's state was made of its images' paths relative to the folders' common parent: one folder
    moved to another parent between two runs' tests of the same images made them two test sets, the first run's
    test on an "earlier state" of a folder that had not changed. Folders with other images still hold another."""
    import cv2

    first, second = (run(_config(str(labs[0]), model=model), n_jobs=1)["run_id"] for model in ("nb", "dt"))
    p, q = (_lab(tmp_path / "side" / name, subjects=1, tint=tint) for name, tint in (("p", -30), ("q", 30)))
    on_before = evaluate(first, f"{p},{q}")
    moved = q.rename(tmp_path / "q")
    on_after = evaluate(second, f"{p},{moved}")
    assert on_after["dataset"]["path"] != on_before["dataset"]["path"]
    assert on_after["dataset"]["state"] == on_before["dataset"]["state"]
    rows = {row["run_id"]: row for row in rank_runs([first, second], "lodo")}
    assert rows[first]["transfer"]["datasets"] == rows[second]["transfer"]["datasets"] == ["p,q"]
    assert rows[first]["earlier"] == rows[second]["earlier"] == rows[first]["elsewhere"] == []
    # the same folders with one image more hold other images: another state
    cv2.imwrite(str(moved / "ALL" / "A0" / "added.png"), np.full((16, 16, 3), 90, np.uint8))
    assert evaluate(second, f"{p},{moved}")["dataset"]["state"] != on_after["dataset"]["state"]


def test_predict_names_no_empty_list_of_test_sets_for_a_run_to_evaluate_again(labs, tmp_path):
    """A run tested on a folder changed since, where the only other test of it is a leave-one-dataset-out run's
    (which never chooses the test sets runs are compared on): none is compared on, and Predict told the run to be
    evaluated on "the test sets the runs are compared on (, as last tested)"; it now says only what to do."""
    import cv2
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from tests.test_app import open_page, shown

    folder = _lab(tmp_path / "x", subjects=1, tint=-40)
    plain = run(_config(str(labs[0]), model="nb"), n_jobs=1)["run_id"]
    lodo = run(_config(f"{labs[0]},{labs[1]}", model="nb", protocol="lodo"), n_jobs=1)["run_id"]
    evaluate(plain, str(folder))
    cv2.imwrite(str(folder / "ALL" / "A0" / "added.png"), np.full((16, 16, 3), 90, np.uint8))
    evaluate(lodo, str(folder))
    overview = transfer_overview([plain, lodo])
    assert overview["compared_on"] == [] and overview["standings"][plain]["earlier"] == ["x"]

    st.cache_data.clear()
    at = open_page(AppTest.from_file("../streamlit_app.py", default_timeout=60).run(), "predict")
    at.selectbox(key="predict_run").set_value(plain).run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [shown(caption.value) for caption in at.caption]
    assert "No transfer figure beside the other runs': on an earlier state of x: evaluate again " \
           "(`python -m leukdash evaluate RUN_ID DATASET`)." in captions, captions
    assert not any("compared on (" in caption for caption in captions)
    st.cache_data.clear()
