"""The External validity section and the External test figure."""

import json

import numpy as np
import pytest

from leukdash.errors import LeukdashError
from leukdash.evaluation.evaluate import evaluate
from leukdash.paths import REPO_ROOT
from leukdash.reporting.external_plan import RECOMMENDED, Plan, external_matrix
from leukdash.reporting.external_report import (END, START, external_data, external_section, within_text,
                                               write_section)
from leukdash.reporting.matrix import Settings
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


def test_write_section_that_cannot_be_written_whole_leaves_the_report_as_it_was(tmp_path):
    from tests.damage import file_size_limit

    report = tmp_path / "REPORT.md"
    report.write_text("# Report\n\n" + "body\n" * 10_000)
    before = report.read_text()
    with file_size_limit(len(before) // 2):
        with pytest.raises(LeukdashError, match=r"REPORT.md: file too large for this process's limit \(ulimit -f\)"):
            write_section(report, f"{START}\nnew\n{END}")
    assert report.read_text() == before and [path.name for path in tmp_path.iterdir()] == ["REPORT.md"]


def test_a_within_interval_is_shown_clipped_to_0_1_and_two_folds_as_their_values():
    row = {"within": {"mean": 0.992, "ci95": [0.979, 1.005], "folds": [1.0, 1.0, 0.96, 1.0, 1.0]}}
    assert within_text(row) == "0.992 [0.979-1.000]"
    row["within"].update(mean=0.02, ci95=[-0.03, 0.07])
    assert within_text(row) == "0.020 [0.000-0.070]"
    row["within"].update(mean=0.734, ci95=[0.2, 1.2], folds=[0.695, 0.773])
    assert within_text(row) == "0.734 (folds 0.695, 0.773)"


def test_the_committed_reports_external_section_is_rendered_from_the_committed_report_data():
    """REPORT.md's External validity section is what the engine renders from report.json (a hand
    edit, or a renderer changed without the report regenerated, fails here)."""
    folder = REPO_ROOT / "docs" / "report"
    text = (folder / "REPORT.md").read_text(encoding="utf-8")
    data = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert text[text.index(START):text.index(END) + len(END)] == external_section(data["external"])


def test_a_zero_width_interval_is_n_a_in_the_summary_sentence_as_in_the_table():
    """The sentence under a table formatted the best model's interval itself: "(95% group bootstrap
    1.000-1.000)" of an evaluation stored before zero-width intervals were None, where the table's cell says
    "1.000 [n/a]". Both now say n/a; the committed report's other intervals are unchanged."""
    data = json.loads((REPO_ROOT / "docs" / "report" / "report.json").read_text(encoding="utf-8"))["external"]
    before = external_section(data)
    for row in data["directions"]:
        if row["status"] == "done":
            share = row["external"]["balanced_accuracy"]
            row["external"]["ci95"] = [share, share]  # as every resample the same was stored before
    section = external_section(data)
    sentences = [line for line in section.splitlines() if "(95% group bootstrap" in line]
    assert sentences and all("(95% group bootstrap n/a)" in line for line in sentences), sentences
    assert "(95% group bootstrap n/a)" not in before and "(95% group bootstrap 0." in before
    for row in data["directions"]:
        if row["status"] == "done":
            assert f"| {row['external']['balanced_accuracy']:.3f} [n/a] |" in section


@pytest.fixture(scope="module")
def tested(tiny_dataset, tmp_path_factory):
    """A tiny run of the plan's naive Bayes cell on the 5-class set (its ALL and HEALTHY images)
    and its external test on a copy with every other image colour-inverted and the rest a little brighter (not the
    training images themselves: answers that differ within a class, so the bootstrap's resamples vary and give an
    interval), in a store of this module."""
    import cv2

    root = tmp_path_factory.mktemp("tested")
    other = root / "other"
    for index, path in enumerate(sorted(tiny_dataset.glob("*/*.png"))):
        (other / path.parent.name).mkdir(parents=True, exist_ok=True)
        image = cv2.imread(str(path))
        cv2.imwrite(str(other / path.parent.name / path.name), 255 - image if index % 2 else cv2.add(image, 8))
    plan = Plan(str(tiny_dataset), str(other), Settings(binary_size=16, augment_factor=1, folds=2),
                models=("nb", "svm"))
    config = next(c.config for c in external_matrix(plan)
                  if (c.train, c.model, c.preprocessing) == (str(tiny_dataset), "nb", "raw"))
    with pytest.MonkeyPatch.context() as patch:  # module scope: the autouse store fixture is per test
        patch.setenv("LEUKDASH_ARTIFACTS", str(root / "artifacts"))
        result = run(config, n_jobs=1)
        evaluation = evaluate(result["run_id"], str(other))
    return {"plan": plan, "result": result, "evaluation": evaluation, "store": root / "artifacts"}


def test_section_rows_show_within_and_external_figures_and_missing_runs(tested, monkeypatch):
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tested["store"]))
    result, evaluation = tested["result"], tested["evaluation"]
    section = external_section(external_data(tested["plan"], compute=False))  # the stored external test only
    assert section.startswith(START) and section.endswith(END)
    table = section.split("(raw)")[1].split("###")[0]  # trained on the tiny set, raw input
    nb_row = next(line for line in table.splitlines() if line.startswith("| naive Bayes"))
    assert f"{result['summary']['balanced_acc']['mean']:.3f}" in nb_row
    low, high = evaluation["intervals"]["balanced_accuracy"]
    assert f"{evaluation['balanced_accuracy']:.3f} [{low:.3f}-{high:.3f}]" in nb_row
    assert f"{evaluation['ood_share']:.0%} / {evaluation['ood_own_share']:.1%}" in nb_row
    flag = evaluation["flags"]["ood"]  # how many flagged, and the error rate among them and among the rest
    rates = ["-" if flag[key] is None else f"{flag[key]:.0%}" for key in ("error_flagged", "error_unflagged")]
    assert nb_row.endswith(f" | {flag['n_flagged']} ({flag['share']:.0%}): {rates[0]} / {rates[1]} |")
    assert "not computed" in next(line for line in table.splitlines() if line.startswith("| SVM"))
    assert "**test figures**" in section and "development figure" in section
    assert "1 of 2 models tested" in table


def test_external_figure_has_a_bar_with_its_interval_and_the_within_figure(tested):
    result, evaluation = tested["result"], tested["evaluation"]
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


def test_external_report_never_replaces_figures_with_not_computed(tested, tmp_path, monkeypatch, capsys):
    from leukdash.cli import main
    from leukdash.engine.store import read_json
    from leukdash.reporting.external_report import update_report

    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tested["store"]))
    report, data_path = tmp_path / "REPORT.md", tmp_path / "report.json"
    sweep = json.loads((REPO_ROOT / "docs" / "report" / "report.json").read_text())["external"]["sweep"]
    data = {"engine": "3", "external": {**external_data(tested["plan"], compute=False), "sweep": sweep}}
    data_path.write_text(json.dumps(data))
    report.write_text("# Report\n\n" + external_section(data["external"]) + "\n")
    before = report.read_text(), data_path.read_text()
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tmp_path / "empty-store"))
    with pytest.raises(LeukdashError, match="1 row\\(s\\) of the External validity section have figures in .* and "
                       "none in this store .*REPORT.md left unchanged"):
        update_report(tmp_path, plan=tested["plan"], compute=False)
    assert (report.read_text(), data_path.read_text()) == before
    # The command, on the project's own report: refused the same way in a store without its runs.
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("REPORT.md", "report.json"):
        (copy / name).write_bytes((REPO_ROOT / "docs" / "report" / name).read_bytes())
    assert main(["external-report", "--no-compute", "--out", str(copy)]) == 2
    assert "left unchanged" in capsys.readouterr().err
    assert all((copy / name).read_bytes() == (REPO_ROOT / "docs" / "report" / name).read_bytes()
               for name in ("REPORT.md", "report.json"))
    # With the store that holds the runs: both files rewritten from it, the sweep's timing kept.
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tested["store"]))
    update_report(tmp_path, plan=tested["plan"], compute=False)
    assert read_json(data_path)["external"] == data["external"] and report.read_text() == before[0]


@pytest.mark.parametrize("damage", ["deleted", "no external", "external not figures", "external says none"])
def test_external_report_keeps_the_figures_of_reportmd_whatever_report_json_says(damage, tested, tmp_path,
                                                                                 monkeypatch):
    """REPORT.md's own section counts: report.json deleted, its "external" gone or damaged, or one
    that lists no figures, never turns the section's figures into "not computed"."""
    from leukdash.reporting.external_report import update_report

    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tested["store"]))
    external = {**external_data(tested["plan"], compute=False), "sweep": None}
    report, data_path = tmp_path / "REPORT.md", tmp_path / "report.json"
    report.write_text("# Report\n\n" + external_section(external) + "\n")
    none_done = {**external, **{part: [{**row, "status": "not computed"} for row in external[part]]
                                for part in ("directions", "candidates", "lodo")}}
    damaged = {"no external": {"engine": "3"}, "external not figures": {"engine": "3", "external": "x"},
               "external says none": {"engine": "3", "external": none_done}}
    if damage in damaged:
        data_path.write_text(json.dumps(damaged[damage]))
    before = report.read_text(), data_path.read_text() if data_path.exists() else None
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tmp_path / "empty-store"))
    expected = ("1 row\\(s\\) of the External validity section have figures in .*REPORT.md and none in this store"
                if damage == "external says none" else "report.json has no External validity figures .* while "
                ".*REPORT.md has the section: both left unchanged")
    with pytest.raises(LeukdashError, match=expected):
        update_report(tmp_path, plan=tested["plan"], compute=False)
    assert (report.read_text(), data_path.read_text() if data_path.exists() else None) == before


def test_reproduce_report_only_keeps_the_external_figures_the_store_lacks(tested, tmp_path, monkeypatch):
    """`reproduce --report-only` in a store with the matrix's runs and without the external ones is
    refused before anything is written, as external-report is."""
    from leukdash.reporting.reproduce import reproduce

    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tested["store"]))
    external = {**external_data(tested["plan"], compute=False), "sweep": None}
    (tmp_path / "REPORT.md").write_text("# Report\n\n" + external_section(external) + "\n")
    (tmp_path / "report.json").write_text(json.dumps({"engine": "3", "external": external}))
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tmp_path / "empty-store"))
    with pytest.raises(LeukdashError, match="1 row\\(s\\) of the External validity section have figures"):
        reproduce(binary=tested["plan"].first, five_class=tested["plan"].first, out=tmp_path, compute=False,
                  settings=tested["plan"].settings, select=lambda experiment: False, external=tested["plan"],
                  log=lambda line: None)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_the_candidates_get_the_support_checks_column_once_the_data_holds_its_figures():
    """Rows computed before the support check have no figure for it: no empty column then; once
    one row has it, every candidate row gets the column (a dash where the figure is missing)."""
    data = json.loads((REPO_ROOT / "docs" / "report" / "report.json").read_text(encoding="utf-8"))["external"]
    header = "likely wrong: errors flagged / not | unsupported: errors flagged / not |"
    assert header not in external_section(data)
    done = next(row for row in data["candidates"] if row.get("status") == "done")
    done["external"]["unsupported"] = {"share": 0.1, "n_flagged": 30, "error_flagged": 0.6, "error_unflagged": 0.2,
                                       "own_share": 0.05}
    section = external_section(data)
    assert section.count(header) == 2 and "**unsupported**: a training image of another class" in section
    line = next(line for line in section.splitlines() if f"`{done['run_id']}`" in line and "30 (10%)" in line)
    assert line.endswith("| 30 (10%): 60% / 20% |")
    candidates = section[section.index("### Ensembles"):section.index("Leave one dataset out")].splitlines()
    rows = [line for line in candidates if line.startswith("| ")]
    assert len(rows) == 2 + len(data["candidates"]) and all(line.count("|") == 10 for line in rows)
