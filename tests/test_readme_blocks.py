"""The README's generated blocks (leukdash.reporting.report.readme, .blocks): every figure comes from
the data, and a hand edit of any block, missing data or data of another engine is one problem each."""

import json
import re
import sys

import pytest

from leukdash import ENGINE_VERSION
from leukdash.config import RunConfig
from leukdash.paths import REPO_ROOT
from leukdash.reporting.report.readme import (BLOCKS, load_sources, markers, readme_problems, render_blocks,
                                              write_blocks)

MINE = ("results", "audit", "scaling", "speed", "external")

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_engine  # noqa: E402


def fake_tested(train: str, label: str, balanced: float, *, preprocess: str = "cell-keep-gray", collapsed=False,
                ood_share: float = 0.25, own_share: float = 0.012) -> dict:
    """A row of report.json's ``external`` (external_rows.tested_row) with made-up figures."""
    flag = {"share": ood_share, "n_flagged": round(300 * ood_share), "error_flagged": 0.4, "error_unflagged": 0.2,
            "own_share": own_share}
    return {"train": train, "test": "other", "label": label, "preprocess": preprocess, "model": "folds",
            "run_id": "knn-0123456789ab", "status": "done",
            "within": {"mean": 0.654, "ci95": [0.6, 0.7], "folds": [0.61, 0.62, 0.63, 0.64, 0.75]},
            "external": {"n_images": 300, "balanced_accuracy": balanced, "ci95": [balanced - 0.1, balanced + 0.05],
                         "roc_auc": 0.8, "collapsed": collapsed, "ood_share": ood_share, "ood_own_share": own_share,
                         "predicted_share": {"ALL": 0.99, "HEALTHY": 0.01} if collapsed else {"ALL": 0.6, "HEALTHY": 0.4},
                         "ood": flag, "likely_wrong": flag}}


def fake_external() -> dict:
    pair = ["allidb2_ufpr", "cnmc_dev"]
    held = {name: {"balanced_accuracy": value, "ci95": [value - 0.05, value + 0.05]}
            for name, value in zip(pair, (0.551, 0.703))}
    source = {"accuracy": 0.989, "alone": {"run_id": "svm-0123456789ab", "accuracy": 0.996}}
    return {
        "external": {"pair": pair, "missing": [], "sweep": None,
                     "directions": [fake_tested("allidb2_ufpr", "SVM (features)", 0.413, preprocess="raw", collapsed=True,
                                                ood_share=1.0),
                                    fake_tested("cnmc_dev", "SVM (features)", 0.5, preprocess="raw", ood_share=0.99,
                                                own_share=0.023)],
                     "candidates": [fake_tested("allidb2_ufpr", "ensemble 3-NN + SVM", 0.717),
                                    fake_tested("allidb2_ufpr", "ensemble 3-NN + SVM, ensemble", 0.111)],
                     "lodo": [{"label": "ensemble 3-NN + SVM", "run_id": "ensemble-0123456789ab", "status": "done",
                               "held_out": held}]},
        "across": {"pooled": [{"label": "SVM (features), raw", "run_id": "svm-0123456789ab", "status": "done",
                               "sources": {"allidb2_ufpr": source, "cnmc_dev": {"accuracy": 0.627, "alone": None}}}]}}


def fake_report() -> dict:
    """report.json as `reproduce` writes it, with figures no real report has."""
    return {
        "engine": ENGINE_VERSION, "mode": "full", "command": "python -m leukdash reproduce",
        "generated": "2031-01-02 03:04 UTC", "call_seconds": 2.5, "machines": 1,
        "machine": {"cpu": "Test CPU 9000", "cores": 4, "native_bfloat16": True, "memory_mb": 1024},
        "reproduction": {"first": "2031-01-02 01:00 UTC", "last": "2031-01-02 01:57 UTC", "wall_seconds": 3456.7,
                         "runs_timed": 2, "runs_resumed": 0},
        "fold_seconds": 720.0, "packing_bound_seconds": 180.0, "runs_total": 3, "runs_done": 2,
        "headline": [{"title": "t", "label": "paper CNN (SGD, 25 epochs)", "run_id": "cnn-0123456789ab",
                      "dataset": "allidb2_ufpr", "is_cnn": True, "paper": 0.8825, "val_acc": [0.911, 0.822],
                      "mean": 0.8664, "ci95": [0.3104, 1.0]}],
        "shortcuts": {"binary": {"dataset": "allidb2_ufpr", "histogram_acc": 0.7711, "background_acc": 0.8765,
                                 "chance": 0.5}},
        "runs": [{"exp": "2", "task": "binary", "label": "CNN paper (sgd, 25 ep) · strict", "run_id": "cnn-0123456789ab",
                  "engine": ENGINE_VERSION, "seconds": 660.0, "fold_seconds": [600.0, 60.0], "val_acc": [0.911, 0.822]},
                 {"exp": "4", "task": "five", "label": "SVM on pixels · strict", "run_id": "svm-0123456789ab",
                  "engine": ENGINE_VERSION, "seconds": 60.0, "fold_seconds": [30.0, 30.0], "val_acc": [0.5, 0.6]}],
        **fake_external(),
    }


def fake_benchmark(**settings) -> dict:
    """engine.json as `bench_engine.py --out` writes it (its own code), from made-up measurements."""
    contests = [{"seed": seed, "ours": ours, "literal": literal, "ours_folds": [acc, acc], "literal_folds": [0.5, 0.7],
                 "ours_acc": acc, "literal_acc": 0.6, "paired": {"b": 9, "c": 2, "p_value": p}}
                for seed, ours, literal, acc, p in ((0, 101.2, 222.2, 0.911, 0.01), (1, 123.4, 240.0, 0.823, 0.4))]
    config = RunConfig(dataset="allidb2_ufpr", model="cnn").with_changes(**settings)
    return bench_engine.figures(config, contests, fit_only=88.0, cached=0.321, predict=7.65,
                                command="python -m benchmarks.bench_engine --seeds 0 1")


def fake_sources() -> dict:
    return {"report": fake_report(), "benchmark": fake_benchmark()}


def blank_readme(names=MINE) -> str:
    return "# title\n\n" + "\n\nprose\n\n".join(f"{markers(n)[0]}\nold text 1.0\n{markers(n)[1]}" for n in names) + "\n"


def body(readme: str, name: str) -> str:
    begin, end = markers(name)
    return readme[readme.index(begin) + len(begin):readme.index(end)]


def test_the_result_block_states_the_datas_figures():
    text = render_blocks(fake_sources())[0]["results"]
    for figure in ("0.911 0.822", "**0.866**", "| n/a |", "0.8825 (its own protocol)", "Test CPU 9000, 4 cores",
                   "native bfloat16", "2031-01-02 01:00 UTC to 2031-01-02 01:57 UTC", "57.6 min of wall time",
                   "12.0 min of fold time", "3.0 min", "19.20x the bound", "2 of 3 runs", "Engine version " + ENGINE_VERSION):
        assert figure in text, figure
    assert "0.310-1.000" not in text  # a t(1) interval of two folds, n/a as the run's line says


def test_the_result_blocks_interval_is_n_a_where_the_run_line_says_so():
    """Two folds (above) or folds all alike have no interval in the README either; three that differ keep theirs."""
    from leukdash.intervals import SHARE
    from leukdash.metrics import summarize

    for folds, shown in (([1.0, 1.0, 1.0], "| n/a |"), ([0.8, 0.9, 1.0], "| 0.652-1.000 |")):
        report = fake_report()
        report["headline"][0].update(val_acc=folds, **summarize(folds, bounds=SHARE))
        assert shown in render_blocks({"report": report})[0]["results"], folds


def test_the_result_block_says_which_runs_resumed():
    resumed = fake_report()
    resumed["reproduction"]["runs_resumed"] = 1
    resumed["reproduction"]["runs_timed"] = 1
    assert "1 run(s) resumed" in render_blocks({"report": resumed})[0]["results"]
    assert "1 run(s) without a progress log" in render_blocks({"report": resumed})[0]["results"]


def test_the_audit_block_states_the_shortcut_accuracies():
    text = " ".join(render_blocks(fake_sources())[0]["audit"].split())
    assert "on allidb2_ufpr the background colour alone predicts the class with 0.88 accuracy (chance 0.50; " \
           "colour histograms 0.77; `python -m leukdash audit allidb2_ufpr`)" in text
    unsplittable = fake_report()
    unsplittable["shortcuts"]["binary"]["background_acc"] = None
    (problem,) = render_blocks({"report": unsplittable, "benchmark": fake_benchmark()})[1]
    assert problem.startswith("the README's audit block: cannot be made") and "no background-only" in problem


def test_the_scaling_block_predicts_from_the_per_fold_seconds():
    text = render_blocks(fake_sources())[0]["scaling"]
    # Folds 600, 60, 30, 30 s: 12.0 min on one worker, the 10.0 min fold alone beyond it.
    assert "| predicted wall (min) | 12.0 | 10.0 | 10.0 | 10.0 | 10.0 | 10.0 |" in text
    assert "| speed-up | 1.0x | 1.2x | 1.2x |" in text
    assert "(full settings, 4 fold tasks, 12.0 minutes of fold time on Test CPU 9000" in text
    assert "longest task 10.0 minutes: ALL vs HEALTHY, CNN paper (sgd, 25 ep) · strict" in text


def test_the_external_block_states_the_external_figures():
    text = " ".join(render_blocks(fake_sources())[0]["external"].split())
    for figure in ("(allidb2_ufpr -> cnmc_dev and back): 1 of 2 models collapse", "and 1 give each class to at least",
                   "flags 99%-100% of those images and 1.2%-2.3% of its own",
                   "| allidb2_ufpr | ensemble 3-NN + SVM | 0.654 [0.600-0.700] | 0.717 [0.617-0.767] | no | 75 (25%): 40% / 20% |",
                   "the same ensemble scores 0.551 [0.501-0.601] on allidb2_ufpr and 0.703 [0.653-0.753] on cnmc_dev",
                   "SVM (features), raw: allidb2_ufpr 0.989 (0.996), cnmc_dev 0.627.",
                   f"Engine version {ENGINE_VERSION}, `python -m leukdash reproduce`, report of 2031-01-02 03:04 UTC."):
        assert figure in text, figure
    assert "0.111" not in text  # a row the block does not show
    older = {key: value for key, value in fake_report().items() if key != "external"}
    (problem,) = render_blocks({"report": older, "benchmark": fake_benchmark()})[1]
    assert problem.startswith("the README's external block: cannot be made from the report data (KeyError: 'external')")


def test_the_speed_block_states_what_the_benchmark_measured():
    data = fake_benchmark()
    assert data["engine"] == ENGINE_VERSION and data["full"] and data["machine"]["cores"] >= 1
    text = " ".join(render_blocks(fake_sources())[0]["speed"].split())
    for figure in ("101-123 s over 2 seeds", "2.06x faster than a paper-literal pipeline", "462 s against 225 s",
                   "is met here", "The run of seed 0 takes 1.15x a plain `model.fit`", "0.867 against the baseline's 0.600",
                   "on 1 of 2 seed(s)", "answered in 0.32 s", "in 7.7 ms", "allidb2_ufpr (64 px, x8, 25 epochs)",
                   "`python -m benchmarks.bench_engine --seeds 0 1`", data["machine"]["cpu"]):
        assert figure in text, figure
    assert "float32 `model.fit` with TensorFlow's default threads" in text
    slower = {**data, "speedup": 0.763}
    assert "1.31x slower than" in render_blocks({"benchmark": slower})[0]["speed"].replace("\n", " ")
    assert "is not met here" in " ".join(render_blocks({"benchmark": slower})[0]["speed"].split())


def test_a_benchmark_whose_baseline_ran_on_one_thread_says_so_and_checks_no_target():
    """Benchmarks before 2026-12-05 ran the baseline where leukdash had pinned TensorFlow to one
    thread: their block must not claim TensorFlow's default threads, nor the target met."""
    pinned = {key: value for key, value in fake_benchmark().items() if key != "baseline_tf_threads"}
    text = " ".join(render_blocks({"benchmark": pinned})[0]["speed"].split())
    assert "float32 `model.fit` with one TensorFlow thread, fold after fold" in text
    assert "default threads, fold" not in text and "is met here" not in text
    assert "is not checked by this measurement (it counts against TensorFlow's default threads)." in text


def test_a_shortened_benchmark_is_refused():
    quick = fake_benchmark(epochs=1, folds=2)
    assert not quick["full"]
    (problem,) = render_blocks({"report": fake_report(), "benchmark": quick})[1]
    assert problem.startswith("the README's speed block: cannot be made from the benchmark data (ValueError: "
                              "measured with other settings than the README's (allidb2_ufpr, 1 epochs, 2 folds))")


@pytest.mark.parametrize("name", MINE)
def test_a_hand_edit_of_a_block_is_a_problem_that_names_it(name):
    readme, problems = write_blocks(blank_readme(), fake_sources())
    assert problems == [] and readme_problems(readme, fake_sources()) == []
    inside = body(readme, name)
    digit = re.search(r"\d", inside)
    edited_block = inside[:digit.start()] + str((int(digit.group()) + 1) % 10) + inside[digit.end():]
    edited = readme.replace(inside, edited_block)
    assert readme_problems(edited, fake_sources()) == [
        f"the README's {name} block differs from its data: run `python -m leukdash report --readme` "
        "(the block is generated; rerun what writes its data, never edit it)"]


def test_missing_old_or_incomplete_data_is_one_line_per_block(tmp_path):
    readme = blank_readme()
    missing = load_sources({"report": tmp_path / "none.json", "benchmark": tmp_path / "none.json"})
    assert [p.split(":")[0] for p in readme_problems(readme, missing)] == [f"the README's {name} block" for name in BLOCKS]
    assert all("python -m leukdash reproduce" in p for p in readme_problems(readme, missing) if "no report data at" in p)
    assert "--out docs/benchmarks/engine.json`" in readme_problems(readme, missing)[MINE.index("speed")]
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**fake_report(), "engine": "1"}))
    assert f"is from engine version 1, this engine is {ENGINE_VERSION}" in readme_problems(
        readme, load_sources({"report": old}))[0]
    old.write_text(json.dumps({**fake_report(), "engine": int(ENGINE_VERSION)}))
    assert load_sources({"report": old})["report"] == (
        f"{old}: engine must be a string such as {ENGINE_VERSION!r}, not {int(ENGINE_VERSION)}: "
        "run `python -m leukdash reproduce`")
    lacking = fake_report()
    for run in lacking["runs"]:
        del run["fold_seconds"]  # a report.json of an older leukdash
    del lacking["reproduction"]
    problems = readme_problems(write_blocks(readme, fake_sources())[0], {"report": lacking, "benchmark": fake_benchmark()})
    assert len(problems) == 2 and all("cannot be made from the report data" in p for p in problems)
    assert "'reproduction'" in problems[0] and "'fold_seconds'" in problems[1]
    assert readme_problems("# no markers\n", fake_sources()) == [
        f"the README has no single {markers(name)[0]} ... {markers(name)[1]} block" for name in MINE]


@pytest.mark.parametrize("damage", [{"shortcuts": None}, {"runs": "text"}, {"headline": [None]}, {"external": []}])
def test_report_data_of_the_wrong_shape_is_one_line_and_the_readme_is_left_as_it_was(damage, tmp_path, monkeypatch,
                                                                                       capsys):
    from leukdash.cli import main

    data = {**json.loads((REPO_ROOT / "docs" / "report" / "report.json").read_text()), **damage}
    (tmp_path / "report.json").write_text(json.dumps(data))
    readme = tmp_path / "README.md"
    readme.write_text((REPO_ROOT / "README.md").read_text())
    (tmp_path / "streamlit_app.py").write_text("")  # a checkout, as the command requires
    monkeypatch.setattr("leukdash.paths.REPO_ROOT", tmp_path)  # where `report --readme` writes
    assert main(["report", "--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "cannot be made from the report data" in err and "Traceback" not in err
    # --readme writes every block or none: never a README made partly from other data.
    assert main(["report", "--readme", "--out", str(tmp_path)]) == 1
    assert readme.read_text() == (REPO_ROOT / "README.md").read_text()
    assert "left unchanged" in capsys.readouterr().err


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A copy of the repository's README and the data of its blocks, where `report` reads and writes."""
    for path in ("README.md", "docs/report/report.json", "docs/benchmarks/engine.json"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes((REPO_ROOT / path).read_bytes())
    (tmp_path / "streamlit_app.py").write_text("")  # a checkout, as the command requires
    monkeypatch.setattr("leukdash.paths.REPO_ROOT", tmp_path)
    return tmp_path


def test_report_readme_that_cannot_be_written_whole_leaves_the_readme_as_it_was(checkout, capsys):
    """A write cut short (here by `ulimit -f`) is one line, and the README is the old one, whole."""
    import resource

    from leukdash.cli import main

    readme = checkout / "README.md"
    stale = readme.read_text().replace(body(readme.read_text(), "results"), "\nstale\n")
    readme.write_text(stale)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(stale) // 2, hard))
    try:
        code = main(["report", "--readme"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    err = capsys.readouterr().err
    assert code == 2 and readme.read_text() == stale
    assert err == f"error: cannot use {readme}: file too large for this process's limit (ulimit -f): raise the " \
                  "limit, then run again\n"
    assert [path.name for path in checkout.iterdir() if "partial" in path.name] == []


@pytest.mark.parametrize("label", ["CNN\n<!-- report:results:end -->\nX", "CNN <!-- report:audit:begin -->", "two\rlines"])
def test_report_data_with_marker_text_or_a_line_break_is_refused_before_the_readme_is_written(label, checkout, capsys):
    from leukdash.cli import main

    data_path = checkout / "docs" / "report" / "report.json"
    data = json.loads(data_path.read_text())
    data["headline"][0]["label"] = label
    data_path.write_text(json.dumps(data))
    readme = (checkout / "README.md").read_text()
    assert main(["report", "--readme"]) == 1
    assert (checkout / "README.md").read_text() == readme
    err = capsys.readouterr().err
    assert f"report.json: headline[0].label is {label!r}: a line break or <!-- --> in a text field would break the " \
           "README: run `python -m leukdash reproduce`" in err
    assert main(["report", "--check"]) == 1 and "headline[0].label" in capsys.readouterr().err


def test_report_readme_never_writes_a_readme_it_could_not_read_back(checkout, monkeypatch, capsys):
    """Whatever the data check misses, the README written is read back before it is written."""
    from leukdash.cli import main

    monkeypatch.setattr("leukdash.reporting.report.readme.data_problem", lambda data: None)
    data_path = checkout / "docs" / "report" / "report.json"
    data = json.loads(data_path.read_text())
    data["headline"][0]["label"] = "CNN <!-- report:results:end -->"
    data_path.write_text(json.dumps(data))
    readme = (checkout / "README.md").read_text()
    assert main(["report", "--readme"]) == 1
    assert (checkout / "README.md").read_text() == readme
    assert "the README has no single <!-- report:results:begin --> ... <!-- report:results:end --> block" in \
        capsys.readouterr().err


def _damaged(change) -> dict:
    data = fake_report()
    change(data)
    return data


@pytest.mark.parametrize("change, said", [
    (lambda d: d["headline"][0].update(mean=float("nan")), "headline[0].mean is nan: not a finite number"),
    (lambda d: d["headline"][0].update(mean=float("inf")), "headline[0].mean is inf: not a finite number"),
    (lambda d: d["headline"][0].update(mean=1e308),
     "headline[0].mean is 1e+308: not an accuracy or share from 0 to 1"),
    (lambda d: d["headline"][0].update(val_acc=[]),
     "headline[0].val_acc is []: an empty list where at least one entry is needed"),
    (lambda d: d.update(headline=[]), "headline is []: an empty list where at least one entry is needed"),
    (lambda d: d.update(runs_done=1000000), "runs_done is 1000000, more than runs_total (3)"),
    (lambda d: d.update(runs_done=1.5), "runs_done is 1.5: not a count (a whole number, 0 or more)"),
    (lambda d: d["machine"].update(cores=0), "machine.cores is 0: not a number of cores (a whole number, 1 or more)"),
    (lambda d: d["reproduction"].update(wall_seconds=float("nan")), "reproduction.wall_seconds is nan: not a finite"),
    (lambda d: d["runs"][1]["fold_seconds"].append(-1.0),
     "runs[1].fold_seconds[2] is -1.0: not a time in seconds (0 or more)"),
    (lambda d: d["shortcuts"]["binary"].update(background_acc=1e300),
     "shortcuts.binary.background_acc is 1e+300: not an accuracy or share from 0 to 1"),
    (lambda d: d["external"]["directions"][0]["external"].update(balanced_accuracy=-0.1),
     "external.directions[0].external.balanced_accuracy is -0.1: not an accuracy or share from 0 to 1"),
    (lambda d: d["external"]["directions"][0]["within"].update(ci95=[float("nan"), 0.7]),
     "external.directions[0].within.ci95[0] is nan: not a finite number"),
])
def test_impossible_figures_in_the_report_data_are_refused_naming_the_field_and_value(change, said, tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(_damaged(change)))  # NaN and Infinity as Python's json writes them
    (problem,) = {line.split(": ", 1)[1] for line in render_blocks(load_sources({"report": path}))[1]
                  if "report.json" in line}
    assert problem.startswith(f"{path}: {said}") and problem.endswith(": run `python -m leukdash reproduce`")
    assert "\n" not in problem


def test_the_data_check_passes_the_committed_data_and_every_real_figure():
    from leukdash.reporting.report.readme import clipped_within
    from leukdash.reporting.report.validate import data_problem

    assert data_problem(fake_report()) is None and data_problem(fake_benchmark()) is None
    for name in ("docs/report/report.json", "docs/benchmarks/engine.json"):  # as load_sources reads them
        assert data_problem(clipped_within(json.loads((REPO_ROOT / name).read_text()))) is None, name


def test_a_runs_own_interval_is_read_clipped_to_0_1_and_checked_as_a_share(tmp_path):
    """A report written before the engine clipped t intervals holds a run's own one (within.ci95) bare,
    up to 1.2: it is read clipped, as the engine stores it now, and then checked like every share."""
    from leukdash.reporting.report.validate import fields

    data = fake_report()
    data["external"]["directions"][0]["within"]["ci95"] = [0.3, 1.2]
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data))
    assert load_sources({"report": path})["report"]["external"]["directions"][0]["within"]["ci95"] == [0.3, 1.0]
    committed = [value for field, value in fields(load_sources()["report"]) if ".within.ci95[" in field]
    assert committed and all(0 <= value <= 1 for value in committed)
