"""The README's set-up stays true: CI runs exactly its test command."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _setup_commands() -> list[str]:
    section = (ROOT / "README.md").read_text().split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    install_and_start, install_and_test = _setup_commands()
    assert "streamlit run streamlit_app.py" in install_and_start
    assert "pytest" in install_and_test
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert install_and_test in ci_lines


def test_requirements_are_pinned():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert re.match(r"^[A-Za-z0-9_.-]+==[0-9][^ ;]*( ;.*)?$", line), line


BLOCK_CASES = ("results", "audit", "scaling", "external", "speed")


@pytest.mark.parametrize("name", BLOCK_CASES)
def test_readme_blocks_are_the_committed_data_from_this_engine(name):
    # Fails on a hand edit of the block, and on its data being from an older engine or missing;
    # passes once the command that writes its data and `report --readme` have run.
    from leukdash.reporting.report.readme import BLOCKS, load_sources, readme_problems

    assert name in BLOCKS
    problems = readme_problems((ROOT / "README.md").read_text(), load_sources())
    assert [p for p in problems if p.startswith(f"the README's {name} block")] == []
    assert [p for p in problems if not p.startswith("the README's ")] == []


def test_readme_has_every_generated_block_once():
    from leukdash.reporting.report.readme import BLOCKS, markers

    text = (ROOT / "README.md").read_text()
    for name in BLOCKS:
        begin, end = markers(name)
        assert text.count(begin) == 1 and text.count(end) == 1 and text.index(begin) < text.index(end), name


def test_the_blocks_data_is_looked_up_in_the_repository_of_each_call(monkeypatch, tmp_path):
    # A test that stands the package in a bare site-packages (tests/test_hostile_options.py) must
    # not leave the README check of a later test in the same process looking there.
    from leukdash import paths
    from leukdash.reporting.report.readme import load_sources

    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path)
    elsewhere = load_sources()
    assert elsewhere["report"].startswith(f"no report data at {tmp_path / 'docs' / 'report'}")
    assert elsewhere["benchmark"].startswith(f"no benchmark data at {tmp_path / 'docs' / 'benchmarks'}")
    monkeypatch.undo()
    assert all(isinstance(data, dict) for data in load_sources().values())


def test_the_paper_protocol_is_described_as_the_code_runs_it():
    """`--protocol paper` splits the originals first and then augments both parts (training.run_fold), so
    no copy crosses a fold, and its measured figures came out below strict: the README and the report's
    settings (the committed REPORT.md as its generator writes it) say so, and no text says its copies
    leaked across folds or that it shows how much figures are inflated (both did)."""
    from leukdash.reporting.matrix import FULL
    from leukdash.reporting.report.tables import settings_section

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    protocols = readme.split("**Protocols.**", 1)[1].split("\n\n", 1)[0]
    settings = settings_section(FULL)
    for text in (protocols, settings):
        assert "originals are split first (no copy of a validation image reaches training)" in " ".join(text.split())
        assert "measured" in text and "not patients" in text and "inflated" not in text
    assert settings in (ROOT / "docs" / "report" / "REPORT.md").read_text(encoding="utf-8")


def test_the_readme_labels_a_shipped_run_as_the_pages_and_commands_do():
    """A run label in the README that ends in a shipped run's short id is that run's label (`runs` prints it)."""
    from leukdash.engine.store import RunStore
    from leukdash.evaluation.labels import run_labels

    runs, _ = RunStore(ROOT / "artifacts" / "runs").survey()
    shipped = {label.rsplit(" · ", 1)[1]: label for label in run_labels(runs)}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    examples = [label for label in re.findall(r"`([^`\n]+ · [0-9a-f]{6})`", readme)
                if label.rsplit(" · ", 1)[1] in shipped]
    assert examples and all(label == shipped[label.rsplit(" · ", 1)[1]] for label in examples), examples


def test_the_readme_names_each_plots_function_that_returns_no_figure_or_table():
    """README "From Python": leukdash.reporting.plots returns figures or tables, but for the helpers it names."""
    import inspect

    from leukdash.reporting import plots

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    said = readme.split("tables of `leukdash.reporting.plots`", 1)[1].split("The run functions", 1)[0]
    helpers = [name for name in plots.__all__ if inspect.isfunction(getattr(plots, name))
               and inspect.signature(getattr(plots, name)).return_annotation not in ("go.Figure", "pd.DataFrame")]
    assert helpers and [name for name in helpers if f"`{name}`" not in said] == []


def test_the_streamlit_configs_comments_name_functions_that_exist():
    """.streamlit/config.toml explains a setting by the code it is for ('pages/_session.py, kept'):
    the file must hold that function, or the comment sends a reader nowhere."""
    import re

    config = (ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8")
    named = re.findall(r"(pages/\w+\.py), (\w+)\)", config)
    assert named and all(f"def {name}(" in (ROOT / path).read_text(encoding="utf-8") for path, name in named), named


def test_the_readme_names_the_tie_and_collapse_fields_the_commands_give(tiny_dataset):
    """A 2-NN of two classes ties: compare --json's `ties`, `collapse` and `calibration` and oof's `undecided`
    are what README's Command line says they are."""
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run
    from leukdash.evaluation.answer_table import out_of_fold_rows
    from leukdash.evaluation.compare import compare_runs

    made = run(RunConfig(dataset=str(tiny_dataset), model="knn", k=2, image_size=16, augment_factor=1,
                         augment=AugmentConfig.off(), folds=2, classes=("ALL", "HEALTHY")), n_jobs=1)
    compared = compare_runs([made["run_id"]])["runs"][0]
    rows = out_of_fold_rows(made["run_id"])
    assert "out-of-fold answers are ties" in compared["ties"] and "yes" in {row["undecided"] for row in rows}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command_line = readme.split("## Command line", 1)[1]
    oof = command_line.split("`oof` lists the same rows", 1)[1].split("\n\n", 1)[0]
    assert "`undecided` (`yes` where the fold model's top classes tie" in oof
    assert set(compared) >= {"ties", "collapse", "calibration"}
    assert "(and `run --json`) gives them per run as `ties`, `collapse` and `calibration`" in command_line
    assert "`fold_predictions`\nas `null`" in readme


def test_the_readme_says_file_names_and_not_unicode_forms_are_part_of_a_run_id(tiny_dataset, tmp_path):
    """A file renamed (``.png`` to ``.PNG``) is another fingerprint, so another run; a name in the
    other Unicode form is not: "Your own data" says both, as the engine does them."""
    import shutil
    import unicodedata

    from leukdash.data.dataset import Dataset

    prints = []
    forms = (("blasté", ".png"), (unicodedata.normalize("NFD", "blasté"), ".png"), ("blasté", ".PNG"))
    for name, extension in forms:
        root = tmp_path / f"{len(prints)}"
        shutil.copytree(tiny_dataset / "HEALTHY", root / "HEALTHY")
        shutil.copytree(tiny_dataset / "ALL", root / name)
        first = sorted((root / name).iterdir())[0]
        first.rename(first.with_suffix(extension))
        prints.append(Dataset.from_folder(root).fingerprint)
    assert prints[0] == prints[1] != prints[2]
    section = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split("## Your own data", 1)[1]
                       .split("\n## ", 1)[0].split())
    assert "`x.PNG` renamed `x.png` is another run" in section
    assert "A name in either Unicode form ('é' typed, 'e' and an accent written by macOS) is one name" in section


def test_the_readme_says_where_each_run_option_lives_in_a_run_config():
    # A notebook user builds a RunConfig from this passage: every run option is a field under its name, or the
    # passage names the option with its place, and its example builds (a new option cannot go unnamed).
    import argparse
    from dataclasses import fields

    from leukdash.cli.run_options import add_run_options
    from leukdash.config import AugmentConfig, RunConfig

    readme = (ROOT / "README.md").read_text()
    passage = readme.split("A `RunConfig` holds the `run` command's options", 1)[1].split("\n`run` returns", 1)[0]
    parser = argparse.ArgumentParser()
    add_run_options(parser)
    places = {"no_augment": "`AugmentConfig.off()`"}
    places.update({f.name: "`augment` field, an `AugmentConfig`" for f in fields(AugmentConfig)})
    for action in parser._actions[1:]:
        if action.dest not in {f.name for f in fields(RunConfig)}:
            assert f"`{action.option_strings[0]}`" in passage and places[action.dest] in passage, action.dest
    example = re.search(r"`(RunConfig\(augment=.*?\))`", passage.replace("\n", " ")).group(1)
    assert eval(example).augment == AugmentConfig(stain_jitter=0.2, blur=1.0)


def test_every_option_of_every_command_is_in_the_readme():
    # evaluate --recompute, external-report --no-compute and reproduce --binary/--five-class were in --help only.
    import argparse

    from leukdash.cli import build_parser

    readme = (ROOT / "README.md").read_text()
    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    unsaid = [f"{name} {option}" for name, parser in commands.choices.items() for action in parser._actions
              for option in action.option_strings
              if option.startswith("--") and option != "--help" and not re.search(rf"{option}(?![a-z-])", readme)]
    assert unsaid == []


def test_the_readme_points_at_no_folder_beside_its_clone():
    # "the only two labs in `../shared/data`" named a folder of the development machine: a clone has none.
    assert not re.search(r"(?<![.])\.\./", (ROOT / "README.md").read_text())
