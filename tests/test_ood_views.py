"""The out-of-distribution check in two views (prepared cell and acquisition) and the
likely-wrong flag, and how each warning fares on another lab's images."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leukdash.cli import main
from leukdash.config import AugmentConfig, RunConfig
from leukdash.data.decode import decode_image
from leukdash.engine.runner import load_result, run
from leukdash.evaluation.evaluate import evaluate
from leukdash.evaluation.ood import LIKELY_WRONG_PERCENTILE, training_distribution
from leukdash.evaluation.predict import predict_images


def _config(dataset, **changes) -> RunConfig:
    values = dict(dataset=str(dataset), model="nb", feature_set="features", image_size=32, augment_factor=1,
                  augment=AugmentConfig.off(), folds=2)
    return RunConfig(**{**values, **changes})


def _own_top(run_id: str) -> np.ndarray:
    return np.array([max(p) for fold in load_result(run_id)["folds"] for p in fold["oof"]["proba"]])


def test_a_preprocessed_run_checks_the_acquisition_too_and_reports_each_warnings_errors(tiny_dataset, inverted_lab,
                                                                                         capsys):
    cell = run(_config(tiny_dataset, preprocess="cell-keep-gray"), n_jobs=1)
    raw = run(_config(tiny_dataset), n_jobs=1)
    result = evaluate(cell["run_id"], str(inverted_lab))
    flags = result["flags"]
    assert set(flags) == {"ood_prepared", "ood_acquisition", "ood", "likely_wrong", "unsupported", "either"}
    assert set(evaluate(raw["run_id"], str(inverted_lab))["flags"]) == {"ood_prepared", "ood", "likely_wrong",
                                                                       "unsupported", "either"}
    # Inverted colours: grey cells on black look alike after segmentation, the raw fields do not.
    assert flags["ood_acquisition"]["share"] >= 0.9 and result["ood_share"] == flags["ood"]["share"]
    assert flags["ood"]["share"] >= max(flags["ood_prepared"]["share"], flags["ood_acquisition"]["share"])
    n, error = result["n_images"], 1 - result["accuracy"]
    for flag in flags.values():
        assert flag["n_flagged"] == round(flag["share"] * n)
        # The errors among flagged and unflagged images add up to all the errors.
        parts = [(flag["share"], flag["error_flagged"]), (1 - flag["share"], flag["error_unflagged"])]
        assert sum(share * (rate or 0.0) for share, rate in parts) == pytest.approx(error)
    # The likely-wrong flag: its floor is the 5th percentile of the run's own out-of-fold confidence.
    top = _own_top(cell["run_id"])
    floor = np.percentile(top, LIKELY_WRONG_PERCENTILE)
    assert flags["likely_wrong"]["floor"] == pytest.approx(floor)
    assert flags["likely_wrong"]["own_share"] == pytest.approx(np.mean(top < floor))
    assert flags["likely_wrong"]["own_share"] <= LIKELY_WRONG_PERCENTILE / 100 + 1 / len(top)
    assert main(["evaluate", cell["run_id"], str(inverted_lab)]) == 0
    out = capsys.readouterr().out
    assert "unlike the acquisition" in out and "likely wrong" in out

    image = decode_image(sorted(inverted_lab.glob("ALL/*.png"))[0])
    predicted = predict_images(cell["run_id"], [image])[0]
    assert predicted["ood"]["outside"] and predicted["ood"]["view"] in ("prepared", "acquisition")
    wrong = predicted["likely_wrong"]
    assert wrong["floor"] == pytest.approx(floor, abs=1e-6)
    assert wrong["flag"] == (max(predicted["probabilities"].values()) < floor)


def test_a_known_images_likely_wrong_check_judges_its_out_of_fold_answer(tiny_dataset):
    """One of the run's own images is answered by the fold model that never trained on it; the
    likely-wrong check judges that answer (the floor is drawn from such answers), not the mean of
    models most of which trained on the image."""
    result = run(_config(tiny_dataset, model="knn", k=1), n_jobs=1)
    floor = np.percentile(_own_top(result["run_id"]), LIKELY_WRONG_PERCENTILE)
    images = [decode_image(path) for path in sorted(tiny_dataset.glob("*/*.png"))]
    differing = 0
    for predicted in predict_images(result["run_id"], images):
        known, wrong = predicted["known"], predicted["likely_wrong"]
        top = max(known["probabilities"].values())
        assert wrong["confidence"] == top and wrong["flag"] == (top < floor)
        differing += top != max(predicted["probabilities"].values())
    assert differing  # the ensemble mean is another answer for some image: the test tells them apart


def test_the_command_line_says_which_answer_is_likely_wrong(capsys):
    from leukdash.cli.output import print_checks

    flagged = {"flag": True, "confidence": 0.4, "floor": 0.9}
    answer = {"predicted": "ALL", "probabilities": {"ALL": 0.4, "AML": 0.35}, "fold_predictions": ["ALL", "AML"],
              "n_folds": 2, "likely_wrong": flagged}  # a prediction as predict_images gives it
    known = {"match": "identical", "file": "ALL/a.png", "class": "ALL", "fold": 2, "prediction": "AML",
             "probabilities": {"ALL": 0.4, "AML": 0.6}}
    print_checks({**answer, "known": known})
    assert "likely wrong: the out-of-fold answer's top probability 0.40 is below 0.90" in capsys.readouterr().out
    print_checks({**answer, "known": None})
    assert "likely wrong: its top probability 0.40 is below 0.90" in capsys.readouterr().out


def test_on_the_real_pair_the_acquisition_flags_the_other_lab_and_few_of_its_own(allidb2_path, cnmc_path):
    """allidb2_ufpr -> cnmc_dev with cell preprocessing: the prepared cells alone pass for
    ALL-IDB2 cells, the acquisition gives the other lab away; the run's own images stay unflagged.
    Among the other lab's images, the answers the support check doubts are wrong more often."""
    config = RunConfig(dataset=str(allidb2_path), model="knn", feature_set="features", image_size=32,
                       augment_factor=1, augment=AugmentConfig.off(), preprocess="cell-keep-gray")
    result = evaluate(run(config, n_jobs=1)["run_id"], str(cnmc_path))
    flags = result["flags"]
    assert flags["ood_acquisition"]["share"] >= 0.95 > flags["ood_prepared"]["share"]
    for name in ("ood_prepared", "ood_acquisition", "likely_wrong", "unsupported"):
        assert flags[name]["own_share"] <= 0.05, name
    assert flags["ood"]["own_share"] <= 0.05
    doubted = flags["unsupported"]
    assert doubted["one_lab"] and 0 < doubted["share"] < 0.5
    assert doubted["error_flagged"] > doubted["error_unflagged"] + 0.1


def test_a_run_on_segmented_cells_says_when_an_images_segmentation_failed(tiny_dataset, capsys):
    """Predicting with a cell-level run: an image without a cell is answered, and said to have
    none (the models saw the whole image); a run on whole images has no such check."""
    from streamlit.testing.v1 import AppTest

    from leukdash.cli.output import print_checks
    from leukdash.data.preprocess import cell_failure

    cell = run(_config(tiny_dataset, preprocess="cell-keep-gray"), n_jobs=1)
    blank = np.full((48, 48, 3), 250, np.uint8)
    images = [blank] + [decode_image(path) for path in sorted(tiny_dataset.glob("*/*.png"))[:6]]
    answers = predict_images(cell["run_id"], images)
    assert answers[0]["cell"]["failure"] == "none found" and "whole image" in answers[0]["cell"]["meaning"]
    assert [a["cell"]["failure"] for a in answers[1:]] == [cell_failure(image) for image in images[1:]]
    assert any(a["cell"]["failure"] is None for a in answers[1:])  # most of the set's cells are found
    print_checks(answers[0])
    assert "cell segmentation: none found: no white cell was found" in capsys.readouterr().out
    raw = run(_config(tiny_dataset), n_jobs=1)
    assert "cell" not in predict_images(raw["run_id"], [blank])[0]

    at = AppTest.from_file(str(Path(__file__).parent.parent / "streamlit_app.py"), default_timeout=120).run()
    at.switch_page("pages/predict.py").run()
    at.selectbox(key="predict_run").set_value(cell["run_id"])
    buffer = io.BytesIO()
    Image.fromarray(blank).save(buffer, format="PNG")
    at.file_uploader(key="predict_upload").set_value([("blank.png", buffer.getvalue(), "image/png")])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [w.value for w in at.warning if w.value.startswith("**Cell segmentation: none found**")]


def test_own_scores_half_of_them_equal_keep_the_99th_percentile():
    """Quartiles that tie (half a run's own out-of-fold scores equal) give no spread to fence with: the fence was the
    quartile itself, and every own score above it was flagged (3 of 33 here, against about 1%)."""
    from leukdash.evaluation.ood import flag_threshold

    scores = np.array([2.0] * 30 + [2.01, 2.02, 2.5])
    assert flag_threshold(scores) == pytest.approx(np.percentile(scores, 99))
    assert (scores > flag_threshold(scores)).sum() == 1


def test_one_blank_training_image_does_not_switch_the_ood_check_off(tiny_dataset, inverted_lab, tmp_path):
    """A black image among a run's own is far from every other: its out-of-fold score, orders of magnitude above
    theirs, would be the 99th percentile of a few dozen and silence the check. It is left out of the threshold,
    so another lab's images (here inverted colours) are still flagged, and the blank image itself is."""
    import shutil

    data = tmp_path / "with_blank"
    for folder in sorted(folder for folder in tiny_dataset.iterdir() if folder.is_dir())[:2]:
        shutil.copytree(folder, data / folder.name)
    Image.new("RGB", (32, 32)).save(data / folder.name / "blank.png")
    result = run(_config(data), n_jobs=1)
    described = training_distribution(result["run_id"])
    ordinary = np.sort(described.oof_scores)[:-1]
    assert described.oof_scores.max() > 10 * ordinary.max()  # the blank image's, far out
    assert ordinary.max() / 2 < described.threshold <= ordinary.max()  # set by the ordinary images
    others = [decode_image(path) for path in sorted(inverted_lab.glob(f"{folder.name}/*.png"))]
    assert all(predicted["ood"]["outside"] for predicted in predict_images(result["run_id"], others))


def test_a_distance_percentile_never_reads_100_unless_the_image_is_above_every_own_image(capsys):
    # 99.6 rounded to a whole percent read "above 100%" though a few of the run's images score higher: it is
    # rounded down, to one decimal above 99, in the CLI and on the Predict page alike (one function).
    from leukdash.cli.output import print_checks
    from leukdash.evaluation.answer import floored_percentile, shown_percentile
    from leukdash.evaluation.answer_table import answer_row

    assert [shown_percentile(p) for p in (50.7, 99.0, 99.6, 99.99, 100.0)] == ["50%", "99%", "99.6%", "99.9%", "100%"]
    outside = {"outside": True, "view": "prepared", "score": 9.52, "percentile": 99.6, "threshold": 3.1}
    print_checks({"predicted": "ALL", "probabilities": {"ALL": 1.0}, "fold_predictions": ["ALL"], "n_folds": 1,
                  "ood": outside})
    assert "(distance score 9.52, above 99.6% of its own validation images)" in capsys.readouterr().out
    # Nor the stored percentile: of 25,000 own images, above all but one is 99.996, not 100 once rounded.
    assert [floored_percentile(p, 2) for p in (100 * 24_999 / 25_000, 57.3, 100.0)] == [99.99, 57.3, 100.0]
    # Nor the CSV's column (one decimal), where 99.99 rounded read 100.0.
    outside["percentile"] = 99.99
    entry = {"predicted": "ALL", "probabilities": {"ALL": 1.0}, "fold_predictions": ["ALL"], "n_folds": 1,
             "ood": outside, "file": "x.png"}
    assert answer_row(entry)["distance_percentile"] == 99.9
