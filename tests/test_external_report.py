"""The External validity section and the External test figure."""

import json

import numpy as np
import pytest

from leukdash.config import AugmentConfig, RunConfig
from leukdash.evaluation.evaluate import evaluate
from leukdash.reporting.external_report import END, RECOMMENDED, START, ExternalCell, external_matrix, external_section, write_section
from leukdash.reporting.plots import external_bars, external_frame
from leukdash.engine.runner import run


def test_the_matrix_has_six_models_both_ways_with_the_reports_strict_configs():
    cells = external_matrix()
    assert {(c.train, c.test) for c in cells} == {("allidb2_ufpr", "cnmc_dev"), ("cnmc_dev", "allidb2_ufpr")}
    for train in ("allidb2_ufpr", "cnmc_dev"):
        mine = [c for c in cells if c.train == train and c.preprocessing == "raw"]
        assert sorted(c.model for c in mine) == ["cnn-leukdash", "cnn-paper", "dt", "knn", "nb", "svm"]
        assert all(c.config.protocol == "strict" and c.config.classes == ("ALL", "HEALTHY") for c in mine)
        assert all(c.config.feature_set == "features" for c in mine if not c.config.is_cnn)
    assert {c.config.folds for c in cells if c.train == "allidb2_ufpr"} == {5}
    # Each raw cell has its preprocessed twin, differing in the preprocessing only.
    raw = {(c.train, c.model): c.config for c in cells if c.preprocessing == "raw"}
    for cell in (c for c in cells if c.preprocessing == RECOMMENDED):
        assert cell.config == raw[cell.train, cell.model].with_changes(preprocess=RECOMMENDED)
    assert len(cells) == 2 * len(raw) == 24


def test_write_section_replaces_an_older_section_and_keeps_the_rest(tmp_path):
    report = tmp_path / "REPORT.md"
    report.write_text("# Report\n\nbody\n")
    write_section(report, f"{START}\nold\n{END}")
    write_section(report, f"{START}\nnew\n{END}")
    text = report.read_text()
    assert text.startswith("# Report\n\nbody\n") and "new" in text and "old" not in text
    assert text.count(START) == 1


@pytest.fixture
def tested(tiny_dataset, tmp_path):
    """A tiny run on the 5-class set and its external test on a colour-inverted copy."""
    import cv2

    other = tmp_path / "other"
    for path in sorted(tiny_dataset.glob("*/*.png")):
        (other / path.parent.name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(other / path.parent.name / path.name), 255 - cv2.imread(str(path)))
    config = RunConfig(dataset=str(tiny_dataset), model="nb", feature_set="features", image_size=32,
                       augment_factor=1, augment=AugmentConfig.off(), folds=2)
    result = run(config, n_jobs=1)
    return config, result, evaluate(result["run_id"], str(other)), other


def test_section_rows_show_within_and_external_figures_and_missing_runs(tested, monkeypatch):
    config, result, evaluation, other = tested
    import leukdash.reporting.external_report as module

    monkeypatch.setattr(module, "DIRECTIONS", (("tiny", "other"),))
    monkeypatch.setattr("leukdash.data.discovery.discover_datasets",
                        lambda: {"tiny": config.dataset, "other": other})
    cells = [ExternalCell("tiny", "other", "raw", "nb", config),
             ExternalCell("tiny", "other", "raw", "svm", config.with_changes(model="svm"))]  # never run
    section = external_section(cells, compute=False)  # the stored external test only
    assert section.startswith(START) and section.endswith(END)
    nb_row = next(line for line in section.splitlines() if line.startswith("| naive Bayes"))
    assert f"{result['summary']['balanced_acc']['mean']:.3f}" in nb_row
    low, high = evaluation["intervals"]["balanced_accuracy"]
    assert f"{evaluation['balanced_accuracy']:.3f} [{low:.3f}-{high:.3f}]" in nb_row
    assert f"{evaluation['ood_share']:.0%} / {evaluation['ood_own_share']:.1%}" in nb_row
    assert "not computed" in next(line for line in section.splitlines() if line.startswith("| SVM"))
    assert "**test figures**" in section and "development figure" in section
    assert "1 of 2 models tested" in section


def test_external_figure_has_a_bar_with_its_interval_and_the_within_figure(tested):
    _, result, evaluation, _ = tested
    frame = external_frame([result], [evaluation])
    assert list(frame["Tested on"]) == ["other"] and frame["Within dataset"].iloc[0] == pytest.approx(
        result["summary"]["balanced_acc"]["mean"])
    figure = json.loads(external_bars(frame).to_json())
    bar = next(t for t in figure["data"] if t["type"] == "bar")
    value, (low, high) = evaluation["balanced_accuracy"], evaluation["intervals"]["balanced_accuracy"]
    assert bar["y"][0] == pytest.approx(value)
    assert bar["error_y"]["arrayminus"][0] == pytest.approx(value - low)
    assert bar["error_y"]["array"][0] == pytest.approx(high - value)
    within = next(t for t in figure["data"] if t["type"] == "scatter")
    assert within["y"][0] == pytest.approx(result["summary"]["balanced_acc"]["mean"])
    collapsed = dict(evaluation, collapsed=True)
    hatched = json.loads(external_bars(external_frame([result], [collapsed])).to_json())
    assert next(t for t in hatched["data"] if t["type"] == "bar")["marker"]["pattern"]["shape"] == "/"
    assert np.isfinite(bar["y"][0])
