"""The paper's experiment matrix, its quick mapping, and a tiny end-to-end reproduce + report."""

import re
from dataclasses import fields

import pytest

from leukdash.config import stable_hash
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
    # Every classic run, and the CNN runs the assertions read (each CNN fold costs seconds).
    cnns = {"1-cnn-paper-none", "2-cnn-paper-paper", "2-cnn-paper-strict", "2-cnn-leukdash-strict",
            "3a-cnn-paper-paper", "3b-cnn-paper-strict"}
    # In this process: worker start-up (and TensorFlow's import in a worker) would cost more than
    # these tiny folds; pools are tested in test_scheduler.py.
    args = dict(binary=str(data), five_class=str(data), settings=settings, out=root / "report",
                select=lambda e: e.exp == "4" or e.id in cnns, n_jobs=1)
    lines, rerun = [], []
    with pytest.MonkeyPatch.context() as patch:  # module scope: the autouse store fixture is per test
        patch.setenv("LEUKDASH_ARTIFACTS", str(root / "artifacts"))
        path = reproduce(**args, log=lines.append)
        reproduce(**args, log=rerun.append)
    return {"path": path, "lines": lines, "rerun": rerun, "settings": settings, "data": str(data),
            "store": RunStore(root / "artifacts" / "runs")}


def test_tiny_reproduce_writes_a_report_with_the_computed_and_the_papers_figures(tiny_report):
    from leukdash.engine.runner import load_result, resolve

    path, data = tiny_report["path"], tiny_report["data"]
    text = path.read_text()
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
    assert re.search(r"- Exp 2, ALL vs HEALTHY: CNN paper \(sgd, 3 ep\) · strict", text)


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
