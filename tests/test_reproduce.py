"""The paper's experiment matrix, its quick mapping, and a tiny end-to-end reproduce + report."""

import json
import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from leukdash.config import stable_hash
from leukdash.reporting.external_plan import Plan
from leukdash.reporting.reproduce import FULL, QUICK, Settings, experiments, report_path, reproduce
from leukdash.engine.store import RunStore

BINARY, FIVE = "some_allidb_copy", "some_five_class_set"


def _by_id(matrix):
    return {e.id: e for e in matrix}


def test_matrix_covers_every_experiment_under_both_protocols_with_the_papers_settings():
    matrix = experiments(BINARY, FIVE, FULL)
    ids = _by_id(matrix)
    assert len(ids) == len(matrix), "experiment ids are unique"
    for exp in ("2", "3a", "3b", "3c"):
        for protocol in ("paper", "strict"):
            experiment = ids[f"{exp}-cnn-paper-{protocol}"]
            assert experiment.config.protocol == protocol and experiment.config.augment_factor == 8
            assert experiment.paper is not None and experiment.paper.val_acc is not None
    assert ids["2-cnn-leukdash-strict"].config.architecture == "leukdash"
    assert ids["2-cnn-leukdash-paper"].paper is None

    exp1 = ids["1-cnn-paper-none"].config
    assert (exp1.test_fraction, exp1.augment_factor, exp1.classes) == (0.2, 1, ("ALL", "HEALTHY"))
    assert ids["1-cnn-paper-none"].paper.val_acc == 0.8116
    for experiment in matrix:
        config = experiment.config
        assert config.dataset == (BINARY if experiment.task == "binary" else FIVE)
        assert config.classes == (("ALL", "HEALTHY") if experiment.task == "binary" else None)
        assert (config.test_fraction is not None) == (experiment.exp == "1")
        config.validate()
    settings = {exp: (ids[f"{exp}-cnn-paper-strict"].config.optimizer, ids[f"{exp}-cnn-paper-strict"].config.epochs)
                for exp in ("2", "3a", "3b", "3c")}
    assert settings == {"2": ("sgd", 25), "3a": ("sgd", 25), "3b": ("sgd", 100), "3c": ("adam", 25)}
    assert ids["2-cnn-paper-strict"].paper.folds == (0.6516, 0.9632, 0.9066, 0.9847, 0.9066)

    classic = [e for e in matrix if e.exp == "4"]
    combos = [(e.task, e.config.model, e.config.feature_set, e.config.protocol) for e in classic]
    assert sorted(combos) == sorted((t, m, f, p) for t in ("binary", "five") for m in ("nb", "svm", "knn", "dt")
                                    for f in ("pixels", "features") for p in ("paper", "strict"))
    # Exp 4 sees the x8 set of Exp 2 / 3a, so its two protocols are different runs.
    assert all(e.config.augment_factor == 8 and e.config.augment.enabled() for e in classic)
    assert len({stable_hash(e.config.canonical()) for e in classic}) == len(classic)
    assert all(e.config.k == 3 for e in classic if e.config.model == "knn")
    assert ids["4-binary-svm-pixels-paper"].paper.val_acc == 0.5009
    assert ids["4-five-nb-features-strict"].paper.val_acc == 0.5268


def test_quick_settings_are_cheaper_for_every_experiment():
    full, quick = experiments(BINARY, FIVE, FULL), experiments(BINARY, FIVE, QUICK)
    assert [e.id for e in full] == [e.id for e in quick]
    for slow, fast in zip(full, quick):
        a, b = slow.config, fast.config
        assert b.image_size <= a.image_size and b.augment_factor <= a.augment_factor and b.folds <= a.folds
        if a.is_cnn:
            assert b.epochs < a.epochs
        assert (a.model, a.architecture, a.optimizer, a.protocol, a.feature_set, a.test_fraction) == \
               (b.model, b.architecture, b.optimizer, b.protocol, b.feature_set, b.test_fraction)
    assert sum(e.config.epochs for e in quick) * 4 <= sum(e.config.epochs for e in full)


def _markdown_tables(text: str) -> dict[str, list[list[str]]]:
    """Each Markdown table under its '## ' heading, as rows of cells (header first)."""
    tables, heading = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line[3:]
        elif line.startswith("|") and not line.startswith("|---"):
            tables.setdefault(heading, []).append([cell.strip() for cell in line.strip("|").split("|")])
    return tables


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """A whole reproduce, run twice, on one tiny generated set used for both tasks (about a minute)."""
    from leukdash.data.synthetic import CLASSES, generate_synthetic

    root = tmp_path_factory.mktemp("reproduce")
    data = generate_synthetic(root / "tiny", counts={c: 6 for c in CLASSES}, size=32)
    settings = Settings(binary_size=16, five_size=16, augment_factor=2, folds=2, epochs=1, long_epochs=2)
    # A second "lab" for the external runs, its images filed by subject (two per class).
    lab = generate_synthetic(root / "lab_b", seed=2, counts={c: 4 for c in CLASSES}, size=32)
    for path in sorted(lab.glob("*/*.png")):
        subject = path.parent / f"{path.parent.name[0]}{int(path.stem[-4:]) % 2}"
        subject.mkdir(exist_ok=True)
        path.rename(subject / path.name)
    external = Plan(str(data), str(lab), settings, models=("knn", "svm"))
    # Every classic run, and the CNN runs the assertions read (each CNN fold costs seconds).
    cnns = {"1-cnn-paper-none", "2-cnn-paper-paper", "2-cnn-paper-strict", "2-cnn-leukdash-strict",
            "3a-cnn-paper-paper", "3b-cnn-paper-strict"}
    # In this process: worker start-up (and TensorFlow's import in a worker) would cost more than
    # these tiny folds; pools are tested in test_scheduler.py.
    args = dict(binary=str(data), five_class=str(data), settings=settings, out=root / "report",
                select=lambda e: e.exp == "4" or e.id in cnns, n_jobs=1, external=external)
    lines, rerun = [], []
    with pytest.MonkeyPatch.context() as patch:  # module scope: the autouse store fixture is per test
        patch.setenv("LEUKDASH_ARTIFACTS", str(root / "artifacts"))
        # Tiny settings for the external tests too: each bootstrap sample costs a ROC AUC.
        patch.setattr("leukdash.evaluation.evaluate.BOOTSTRAP_SAMPLES", 10)
        path = reproduce(**args, log=lines.append)
        reproduce(**args, log=rerun.append)
    return {"path": path, "lines": lines, "rerun": rerun, "settings": settings, "data": str(data),
            "store": RunStore(root / "artifacts" / "runs"), "external": external, "artifacts": root / "artifacts"}


def test_tiny_reproduce_writes_a_report_with_the_computed_and_the_papers_figures(tiny_report):
    from leukdash.engine.runner import load_result, resolve

    path, data = tiny_report["path"], tiny_report["data"]
    text = path.read_text()
    from leukdash import ENGINE_VERSION

    assert f"with engine version {ENGINE_VERSION} by `" in text.split("## ", 1)[0]  # the header names its engine
    tables = _markdown_tables(text)
    matrix = _by_id(experiments(data, data, tiny_report["settings"]))

    result = load_result(resolve(matrix["2-cnn-paper-strict"].config).run_id, tiny_report["store"])
    folds = [f["val_acc"] for f in result["folds"]]
    mean = f"{100 * sum(folds) / len(folds):.2f}%"
    table5 = tables["Table 5 analogue: CNN against the classic models, ALL vs HEALTHY"]
    header = table5[0]
    row = next(r for r in table5 if r[0] == "CNN paper (sgd, 1 ep) · strict")
    assert row[header.index("Mean val. acc.")] == mean
    assert header[header.index("Mean val. acc.") + 1] == "Paper" and row[header.index("Paper")] == "88.25%"
    for protocol in ("paper", "strict"):
        svm = next(r for r in table5 if r[0] == f"SVM on pixels · {protocol}")
        assert svm[header.index("Paper")] == "50.09%"

    table2 = tables["Table 2 analogue: training and validation accuracy and loss per experiment"]
    exp3b = [r for r in table2 if r[0] == "3b" and "paper (sgd" in r[2]]
    assert exp3b and all(r[7] == "66.41%" and r[11] == "2.3665" for r in exp3b)
    table3 = tables["Table 3 analogue: Exp 2 (ALL vs HEALTHY, augmentation) per fold"]
    assert table3[1][2] == "65.16%" and table3[2][2] == "96.32%"  # the paper's folds beside ours
    assert [r[0] for r in table3[1:]] == ["1", "2", "**Mean**", "**SD**", "**Min – max**", "**95% CI**"]
    table4 = tables["Table 4 analogue: Exp 3a (five classes, SGD, 25 epochs) per fold"]
    paper = {r[0]: r[2] for r in table4[1:]}
    assert paper["**Mean**"] == "81.74%"  # the paper's; the mean of its folds as printed is 81.73%
    assert paper["**Min – max**"] == "67.09% – 99.30%"
    assert paper["**SD**"].endswith("% (from its folds)") and paper["**95% CI**"].endswith("% (from its folds)")

    assert "synthetic demo data, not clinical" in text
    assert result["dataset"]["fingerprint"][:16] in text
    for name in ("figure4_binary.svg", "figure4_five.svg"):
        assert f"]({name})" in text and (path.parent / name).read_text().startswith("<svg")
    assert "McNemar" in text and "## Package versions" in text and "## Run times" in text
    assert "- Protocols, classic models (ALL vs HEALTHY): `strict` against `paper` differs by" in text
    assert any("computing" in line for line in tiny_report["lines"])


def test_a_repeated_reproduce_is_answered_from_the_store(tiny_report):
    path = tiny_report["path"]
    progress = [line for line in tiny_report["rerun"] if line.startswith("[")]
    assert progress and all(line.endswith(": cached") for line in progress)
    assert report_path(path.parent) == path


def test_reproduces_runs_store_what_their_checks_need_as_they_finish(tiny_report):
    """reproduce's runs, like those of run and sweep, keep their checks once their folder changes."""
    store = tiny_report["store"]
    trained = [entry["run_id"] for entry in store.list_runs() if entry["meta"]["config"]["model"] != "ensemble"]
    assert trained and all((store.run_dir(run_id) / "trained-on.npz").is_file()
                           and (store.run_dir(run_id) / "reference.npz").is_file() for run_id in trained)


def test_the_matrix_configs_are_pinned():
    # Every published run id hashes these configs: a change here must come with a new ENGINE_VERSION
    # and a regenerated report, never silently.
    for settings, pinned in ((FULL, "7ef741c29caf"), (QUICK, "c05c3c68ae0c")):
        matrix = experiments("allidb2_ufpr", "synthetic", settings)
        assert stable_hash([[e.id, e.config.dataset, e.config.canonical()] for e in matrix]) == pinned


def _external_lines(lines: list[str]) -> list[str]:
    """The progress lines of the second sweep (one per run)."""
    start = next(i for i, line in enumerate(lines) if line.startswith("reproduce (external):"))
    return [line for line in lines[start:] if line.startswith("[")]


def test_reproduce_trains_the_external_runs_as_a_second_sweep(tiny_report, monkeypatch):
    from leukdash.engine.runner import resolve
    from leukdash.engine.sweep import list_sweeps
    from leukdash.reporting.external_plan import plan_configs

    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tiny_report["artifacts"]))
    ids = {resolve(config).run_id for _, config in plan_configs(tiny_report["external"])}
    sweeps = {s["name"]: s for s in list_sweeps(tiny_report["store"])}
    external = sweeps["reproduce (external)"]
    assert {run["run_id"] for run in external["runs"]} == ids and external["complete"]
    # The raw runs on the first set are the matrix's Exp 4 runs: computed by the first sweep, read by the second.
    shared = ids & {run["run_id"] for run in sweeps["reproduce (custom)"]["runs"]}
    assert len(shared) == 2
    lines = _external_lines(tiny_report["lines"])
    assert len(lines) == len(ids) and sum(line.endswith(": computing") for line in lines) == len(ids) - 2
    assert all(line.endswith(": cached") for line in _external_lines(tiny_report["rerun"]))


def _report_data(tiny_report) -> dict:
    return json.loads((tiny_report["path"].parent / "report.json").read_text())


def _sources(run_id: str, store: RunStore) -> np.ndarray:
    """The source set of every image of a run on both sets, in the run's image order."""
    from leukdash.config import RunConfig
    from leukdash.data.arrays import load_arrays
    from leukdash.engine.run_data import open_run_dataset

    meta = store.read_meta(run_id)
    dataset = open_run_dataset(meta)
    config = RunConfig.from_dict(meta["config"])
    return dataset.sources_of(load_arrays(dataset, config.image_size, config.preprocess).paths)


def test_the_across_page_is_made_from_the_out_of_fold_predictions(tiny_report):
    from leukdash import ENGINE_VERSION
    from leukdash.engine.runner import load_result

    folder, store = tiny_report["path"].parent, tiny_report["store"]
    across = _report_data(tiny_report)["across"]
    text = (folder / "ACROSS_DATASETS.md").read_text()
    assert f"engine version {ENGINE_VERSION}, {across['generated']}" in text
    # The page names the call that wrote the report (reproduce, --quick or --report-only).
    assert across["command"] == _report_data(tiny_report)["command"] and f"Generated by `{across['command']}` (" in text
    from leukdash.reporting.across_report import across_markdown

    rewritten = {**across, "command": "python -m leukdash reproduce --report-only"}
    assert "Generated by `python -m leukdash reproduce --report-only` (" in across_markdown(rewritten)
    plain = [row for row in across["pooled"] if not row["run_id"].startswith("ensemble-")]
    assert len(plain) == 3 and len(across["pooled"]) == 4
    for row in plain:
        result = load_result(row["run_id"], store)
        sources = _sources(row["run_id"], store)
        line = next(line for line in text.splitlines() if f"`{row['run_id']}`" in line)
        for name in ("tiny", "lab_b"):
            per_fold = []
            right, true = [], []
            for fold in result["folds"]:
                oof = fold["oof"]
                mine = sources[np.asarray(oof["index"])] == name
                hits = (np.argmax(oof["proba"], axis=1) == np.asarray(oof["true"]))[mine]
                per_fold.append(hits.mean())
                right += hits.tolist()
                true += np.asarray(oof["true"])[mine].tolist()
            accuracy, (low, high) = np.mean(right), (min(per_fold), max(per_fold))
            recalls = [np.mean(np.asarray(right)[np.asarray(true) == c]) for c in set(true)]
            figures = row["sources"][name]
            assert figures["accuracy"] == pytest.approx(accuracy)
            assert figures["balanced_accuracy"] == pytest.approx(np.mean(recalls))
            assert f"**{accuracy:.3f}** (folds {low:.3f}-{high:.3f}; alone " in line
    lodo = next(line for line in text.splitlines() if line.startswith("| held out") or "held out: lab_b" in line)
    assert "held out: tiny" in lodo


def test_lodo_rows_score_each_held_out_set_from_its_out_of_fold_predictions(tiny_report, monkeypatch):
    from sklearn.metrics import balanced_accuracy_score

    from leukdash.engine.runner import load_result
    from leukdash.evaluation.external_metrics import external_metrics
    from leukdash.reporting.external_rows import _bootstrap_groups

    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tiny_report["artifacts"]))  # the report's store, for its groups
    rows = _report_data(tiny_report)["external"]["lodo"]
    assert [row["label"] for row in rows] == ["3-NN", "SVM", "ensemble 3-NN + SVM", *(
        f"{name}, stain jitter 0.2 + blur 1" for name in ("3-NN", "SVM", "ensemble 3-NN + SVM"))]
    for row in rows:
        result = load_result(row["run_id"], tiny_report["store"])
        assert sorted(row["held_out"]) == sorted(fold["held_out"] for fold in result["folds"]) == ["lab_b", "tiny"]
        for fold in result["folds"]:
            figures = row["held_out"][fold["held_out"]]
            value = balanced_accuracy_score(fold["oof"]["true"], np.argmax(fold["oof"]["proba"], axis=1))
            assert figures["balanced_accuracy"] == pytest.approx(value)
            if figures["ci95"] is None:  # n/a, never an interval of zero width: the bootstrap says why
                groups = _bootstrap_groups(row["run_id"])[np.asarray(fold["oof"]["index"])]
                again = external_metrics(fold["oof"]["true"], np.asarray(fold["oof"]["proba"]), groups,
                                         result["dataset"]["classes"], auc_interval=False)
                assert again["intervals"]["balanced_accuracy"] is None and again["intervals"]["reason"]
            else:
                assert figures["ci95"][0] <= value <= figures["ci95"][1]


def test_the_external_section_has_ensembles_final_models_robustness_and_the_ood_errors(tiny_report):
    from leukdash.evaluation.evaluate import stored_evaluations
    from leukdash.reporting.report.readme import load_sources, render_blocks

    store, text = tiny_report["store"], tiny_report["path"].read_text()
    data = _report_data(tiny_report)["external"]
    sweep = data["sweep"]
    assert (sweep["runs"], sweep["runs_done"], sweep["runs_in_matrix"], sweep["fold_tasks"]) == (20, 20, 2, 36)
    assert sweep["span"]["runs_timed"] == 18 and 0 < sweep["span"]["wall_seconds"]
    assert ("The section's 20 of 20 runs are `reproduce`'s second sweep; 2 of them are the matrix's own. The other 36 "
            f"fold tasks took {sweep['fold_seconds'] / 60:.1f} min of fold time, computed from {sweep['span']['first']}") in text
    rows = [row for row in data["candidates"] if row["train"] == tiny_report["data"]]
    assert [row["label"] for row in rows] == ["3-NN", "SVM", "ensemble 3-NN + SVM", *(
        f"{name}, final model" for name in ("3-NN", "SVM", "ensemble 3-NN + SVM")), *(
        f"{name}, stain jitter 0.2 + blur 1" for name in ("3-NN", "SVM", "ensemble 3-NN + SVM"))]
    assert [row["model"] for row in rows] == ["folds"] * 3 + ["final"] * 3 + ["folds"] * 3
    assert [row["run_id"] for row in rows[:3]] == [row["run_id"] for row in rows[3:6]]
    assert all(row["status"] == "done" and f"`{row['run_id']}`" in text for row in data["candidates"])
    for row in data["candidates"]:
        stored = next(r for r in stored_evaluations(row["run_id"], store, row["model"])
                      if r["dataset"]["name"] == Path(row["test"]).name)
        ood = row["external"]["ood"]
        assert ood["n_flagged"] == round(ood["share"] * stored["n_images"])
        # The error rates among flagged and unflagged images make up the evaluation's error rate.
        errors = sum(share * rate for share, rate in ((ood["share"], ood["error_flagged"]),
                                                       (1 - ood["share"], ood["error_unflagged"])) if rate is not None)
        assert errors == pytest.approx(1 - stored["accuracy"])
    assert "### Ensembles, final models and robustness training (issue 16)" in text
    assert "**All of these are development figures**" in text
    # The README's block is made from the same figures.
    block = render_blocks(load_sources({"report": tiny_report["path"].parent / "report.json"}))[0]["external"]
    ensemble = next(row for row in rows if row["label"] == "ensemble 3-NN + SVM")["external"]
    assert f"| {ensemble['balanced_accuracy']:.3f} [{ensemble['ci95'][0]:.3f}-{ensemble['ci95'][1]:.3f}] |" in block


def test_settings_fields_all_change_some_config():
    # Every knob of Settings must reach the matrix, or it is a knob that does nothing.
    base = experiments(BINARY, FIVE, FULL)
    changes = {"binary_size": 32, "five_size": 48, "augment_factor": 4, "folds": 3, "epochs": 10,
               "long_epochs": 50, "leukdash_five": ("3a",)}
    assert set(changes) == {f.name for f in fields(Settings)}
    for name, value in changes.items():
        changed = experiments(BINARY, FIVE, Settings(**{name: value}))
        assert [e.config for e in changed] != [e.config for e in base], name


def test_cli_reproduce_report_only_lists_missing_runs(tiny_dataset, tmp_path):
    from leukdash.cli import main

    assert main(["reproduce", "--quick", "--binary", str(tiny_dataset), "--five-class", str(tiny_dataset),
                 "--out", str(tmp_path), "--report-only"]) == 0
    text = (tmp_path / "REPORT.md").read_text()
    assert "0 of " in text and "## Runs not computed" in text
    assert "by `python -m leukdash reproduce --quick --report-only`" in text  # the header names the call
    assert re.search(r"- Exp 2, ALL vs HEALTHY: CNN paper \(sgd, 3 ep\) · strict", text)


def test_cli_reproduce_refuses_an_out_that_is_a_file_before_computing(tmp_path, monkeypatch, capsys):
    from leukdash.cli import main

    def computed(*args, **kwargs):
        raise AssertionError("runs computed before --out was checked")

    monkeypatch.setattr("leukdash.reporting.reproduce.run_experiments", computed)
    (tmp_path / "file").write_text("mine")
    for out in (tmp_path / "file", tmp_path / "file" / "report"):
        assert main(["reproduce", "--quick", "--out", str(out)]) == 2
        assert capsys.readouterr().err == f"error: --out must be a folder: {tmp_path / 'file'} is a file\n"
    assert (tmp_path / "file").read_text() == "mine"


def test_cli_reproduce_report_only_never_writes_a_report_from_fewer_runs_than_it_has(tiny_dataset, tmp_path,
                                                                                    capsys):
    """A store without the report's runs (an empty or wrong LEUKDASH_ARTIFACTS) is refused before
    anything is written: the report is not turned into "0 of 48 runs available"."""
    from leukdash.cli import main

    (tmp_path / "REPORT.md").write_text("# Report\n\nGenerated ... (quick settings): 47 of 48 runs available, ...\n")
    (tmp_path / "report.json").write_text(json.dumps({"engine": "3", "runs_done": 48, "runs_total": 48}))
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    args = ["reproduce", "--quick", "--binary", str(tiny_dataset), "--five-class", str(tiny_dataset),
            "--out", str(tmp_path), "--report-only"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert re.search(r"error: the report in .* has figures of 48 runs and this store \(.*\) holds 0 runs in all: "
                     "REPORT.md left unchanged; point LEUKDASH_ARTIFACTS at the store", err) and err.count("\n") == 1
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
    # A store with as many runs, none of the report's: counted once the matrix's runs are looked up.
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run

    run(RunConfig(dataset=str(tiny_dataset), model="nb", feature_set="pixels", image_size=16, augment_factor=1,
                  augment=AugmentConfig.off(), folds=2), n_jobs=1)
    (tmp_path / "REPORT.md").unlink()
    (tmp_path / "report.json").write_text(json.dumps({"engine": "3", "runs_done": 1, "runs_total": 48}))
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert main(args) == 2
    assert re.search(r"holds 0 of its \d+: REPORT.md left unchanged", capsys.readouterr().err)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_cli_reproduce_report_only_refuses_an_empty_store_before_drawing_the_builtin_dataset(tmp_path, capsys,
                                                                                           isolated_artifacts):
    from leukdash.cli import main

    (tmp_path / "report.json").write_text(json.dumps({"engine": "3", "runs_done": 48, "runs_total": 48}))
    assert main(["reproduce", "--quick", "--binary", "synthetic", "--five-class", "synthetic", "--out", str(tmp_path),
                 "--report-only"]) == 2
    assert "holds 0 runs in all" in capsys.readouterr().err
    assert [path for path in isolated_artifacts.rglob("*") if path.is_file()] == []  # nothing drawn, nothing cached


def test_the_readme_block_is_made_from_the_report_data_and_catches_hand_edits(tiny_report, capsys):
    import json

    from leukdash import ENGINE_VERSION
    from leukdash.cli import main
    from leukdash.engine.runner import load_result, resolve
    from leukdash.reporting.report.readme import (load_sources, markers, readme_problems, render_blocks,
                                                  write_blocks)

    folder = tiny_report["path"].parent
    sources = load_sources({"report": folder / "report.json"})
    data = sources["report"]
    assert data["engine"] == ENGINE_VERSION and data["machine"]["cores"] >= 1 and data["runs_done"] > 0
    assert data["machine"]["cpu"] in tiny_report["path"].read_text()  # the report names its machine
    paper_cnn = load_result(resolve(_by_id(experiments(tiny_report["data"], tiny_report["data"],
                                                       tiny_report["settings"]))["2-cnn-paper-strict"].config).run_id,
                            tiny_report["store"])
    block = render_blocks(sources)[0]["results"]
    assert " ".join(f"{f['val_acc']:.3f}" for f in paper_cnn["folds"]) in block  # computed, not typed
    # The wall time is the store's (the first to the last progress event of the matrix's runs), not
    # the cached second call's: with n_jobs=1 the folds ran one after another inside that span.
    span = data["reproduction"]
    assert span["runs_timed"] == data["runs_done"] and span["runs_resumed"] == 0
    assert span["wall_seconds"] >= data["fold_seconds"] - 0.2 and f"{span['wall_seconds'] / 60:.1f} min" in block
    stored = next(run for run in data["runs"] if run["run_id"] == paper_cnn["run_id"])
    assert stored["fold_seconds"] == [round(f["seconds"], 1) for f in paper_cnn["folds"]]
    begin, end = markers("results")
    readme, problems = write_blocks(f"# title\n\n{begin}\nold table\n{end}\n\nmore\n", sources)
    assert readme.startswith("# title\n\n") and readme.endswith("\n\nmore\n") and block in readme
    assert not [p for p in problems + readme_problems(readme, sources) if p.startswith("the README's results")]
    edited = readme.replace(f"**{data['headline'][0]['mean']:.3f}**", "**0.999**")
    assert edited != readme and "the README's results block differs" in "".join(readme_problems(edited, sources))
    old = folder.parent / "old" / "report.json"
    old.parent.mkdir(exist_ok=True)
    old.write_text(json.dumps({**data, "engine": "0"}))
    assert any("engine version 0" in p for p in readme_problems(readme, load_sources({"report": old})))

    main(["report", "--out", str(folder)])  # exit 1 where blocks of other sources have no data here
    assert block in capsys.readouterr().out
    assert main(["report", "--out", str(folder / "nothing"), "--check"]) == 1
    assert "no report data" in capsys.readouterr().err
    # The audit's shortcut accuracies in the data are the audit's own computation on the binary task's dataset.
    from leukdash.reporting.reproduce import shortcut_scores

    binary = next(e for e in experiments(tiny_report["data"], tiny_report["data"], tiny_report["settings"])
                  if e.task == "binary")
    assert data["shortcuts"]["binary"] == {"dataset": paper_cnn["dataset"]["name"], **shortcut_scores(binary.config)}
