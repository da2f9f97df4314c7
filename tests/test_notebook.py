"""The README's Python example (a notebook's cells) runs as written, and gives the runs the CLI gives."""

import json
import re
import subprocess
import sys

import plotly.graph_objects as go

from leukdash.paths import REPO_ROOT


def _python_example() -> str:
    section = (REPO_ROOT / "README.md").read_text().split("## From Python (a notebook)", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return block


def test_the_readme_python_example_runs_and_its_runs_are_the_clis(tmp_path, monkeypatch, capsys, seed_builtin):
    store = seed_builtin(tmp_path / "store")
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(store))
    shown = []
    monkeypatch.setattr(go.Figure, "show", lambda figure, *args, **kwargs: shown.append(figure))
    names = {}
    exec(compile(_python_example(), "README.md", "exec"), names)

    svm, nb, folds = names["svm"], names["nb"], names["folds"]
    assert not svm["cached"] and len(svm["folds"]) == 5 and 0 <= svm["summary"]["val_acc"]["mean"] <= 1
    assert len(folds) == 10 and sorted(set(folds["Fold"])) == [1, 2, 3, 4, 5]
    (figure,) = shown  # a bar per run at its mean (and the paper's figures beside them)
    drawn = {x for trace in figure.data for x in trace.x}
    assert {svm["summary"]["val_acc"]["mean"], nb["summary"]["val_acc"]["mean"]} <= drawn
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(svm["run_id"])
    assert re.fullmatch(r".+ vs .+ McNemar p = 0?\.?[0-9.e-]+", printed[1])
    assert printed[2] in svm["dataset"]["classes"]

    # The CLI, in the same store, answers the notebook's run from the store: same id, same folds.
    cli = subprocess.run([sys.executable, "-m", "leukdash", "run", "synthetic", "--model", "svm", "--image-size", "32",
                          "--augment-factor", "2", "--json", "--quiet"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 0, cli.stderr
    answer = json.loads(cli.stdout)
    assert answer["run_id"] == svm["run_id"] and answer["cached"]
    # (--json leaves out each fold's out-of-fold probabilities; the notebook's result holds them.)
    assert answer["folds"] == [{k: v for k, v in fold.items() if k != "oof"} for fold in svm["folds"]]
