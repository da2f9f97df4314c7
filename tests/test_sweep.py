"""Sweeps: grids of configs, stored with their progress; re-launching computes only missing folds."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from leukdash.config import AugmentConfig, RunConfig
from leukdash.errors import ConfigError, RunError
from leukdash.engine.store import RunStore
from leukdash.engine.sweep import (MAX_SWEEP_RUNS, expand_grid, list_sweeps, load_sweep, resume_sweep, run_sweep,
                                   sweep_status)

ROOT = Path(__file__).resolve().parent.parent


def _base(dataset: Path) -> RunConfig:
    return RunConfig(dataset=str(dataset), image_size=16, augment=AugmentConfig.off(), augment_factor=1, folds=2)


def test_grid_is_the_product_of_its_axes_in_order(tiny_dataset):
    configs = expand_grid(_base(tiny_dataset), {"model": ["cnn", "svm"], "optimizer": ["sgd", "adam"],
                                                "augment.rotation": [0, 10]})
    assert len(configs) == 8
    assert [(c.model, c.optimizer, c.augment.rotation) for c in configs[:3]] == [
        ("cnn", "sgd", 0), ("cnn", "sgd", 10), ("cnn", "adam", 0)]
    explicit = expand_grid(_base(tiny_dataset), [{"model": "nb"}, {"model": "knn", "k": 1}])
    assert [(c.model, c.k) for c in explicit] == [("nb", 3), ("knn", 1)]


@pytest.mark.parametrize("axes, message", [
    ({"colour": ["red"]}, "unknown sweep setting 'colour'"),
    ({"model": []}, "needs a non-empty list"),
    ({"epochs": [10, 0]}, "epochs must be an integer"),
])
def test_bad_grids_are_refused_with_one_clear_message(tiny_dataset, axes, message):
    with pytest.raises(ConfigError, match=message):
        expand_grid(_base(tiny_dataset), axes)


def test_sweep_is_stored_and_relaunching_computes_only_missing_folds(tiny_dataset):
    configs = expand_grid(_base(tiny_dataset), {"model": ["nb", "knn"], "k": [1, 3]})  # nb ignores k: 3 runs
    first = run_sweep(configs, name="grid", n_jobs=1)
    run_ids = [r["run_id"] for r in first["results"]]
    assert len(set(run_ids)) == 3 and run_ids[0] == run_ids[1]
    status = sweep_status(first["sweep_id"])
    assert status["name"] == "grid" and status["complete"] and status["state"] == "done"
    assert (status["done_folds"], status["total_folds"]) == (6, 6)  # folds of distinct runs: the nb run once
    assert [s["sweep_id"] for s in list_sweeps()] == [first["sweep_id"]]

    store = RunStore()
    (store.run_dir(run_ids[2]) / "folds" / "fold_1.json").unlink()
    (store.run_dir(run_ids[2]) / "summary.json").unlink()
    partial = sweep_status(first["sweep_id"])
    assert [(r["done"], r["total"], r["status"]) for r in partial["runs"]][2] == (1, 2, "partial")

    again = resume_sweep(first["sweep_id"], n_jobs=1)
    assert again["sweep_id"] == first["sweep_id"] and again["name"] == "grid"
    assert [r["computed_folds"] for r in again["results"]] == [[], [], [1], []]
    assert again["results"][2]["folds"] == first["results"][2]["folds"][:1] + [again["results"][2]["folds"][1]]
    assert again["results"][2]["folds"][1]["val_acc"] == first["results"][2]["folds"][1]["val_acc"]
    # A launch that found folds done (its start event counts them) is read back by the next one.
    assert all(r["computed_folds"] == [] for r in resume_sweep(first["sweep_id"], n_jobs=1)["results"])
    assert sweep_status(first["sweep_id"])["state"] == "done"



def test_a_k_beyond_a_folds_training_set_refuses_the_sweep_before_any_run_is_stored(tiny_dataset):
    """k is checked against the fold plan, which needs the images: one value too large refuses the
    whole grid before a run is stored, so no run is left half done and no folder without its
    meta.json is listed as damaged (and a single run refused so leaves nothing either)."""
    from leukdash.engine.runner import run

    configs = expand_grid(_base(tiny_dataset), {"model": ["knn"], "k": [1, 3, 50]})
    with pytest.raises(ConfigError, match=r"k must be at most \d+, the smallest training set of this run's folds, "
                                          r"got 50"):
        run_sweep(configs, n_jobs=1)
    store = RunStore()
    assert store.list_runs() == [] and store.unreadable_runs() == {}
    assert not store.root.exists() or list(store.root.iterdir()) == []
    with pytest.raises(ConfigError, match="got 50"):
        run(configs[2], n_jobs=1)
    assert not store.root.exists() or list(store.root.iterdir()) == []
    assert [r["run_id"] for r in run_sweep(configs[:2], n_jobs=1)["results"]] == [
        r["run_id"] for r in map(lambda c: run(c, n_jobs=1), configs[:2])]

def test_same_grid_is_the_same_sweep_and_unknown_ids_are_refused(tiny_dataset):
    configs = expand_grid(_base(tiny_dataset), {"model": ["nb", "dt"]})
    first = run_sweep(configs, n_jobs=1)
    assert run_sweep(list(reversed(configs)), n_jobs=1)["sweep_id"] == first["sweep_id"]
    assert load_sweep("sweep-000000000000") is None
    with pytest.raises(RunError, match="no sweep"):
        sweep_status("sweep-000000000000")
    with pytest.raises(RunError, match="invalid sweep id"):
        sweep_status("../x")


def test_a_sweep_that_lost_runs_changed_images_or_its_record_says_so(tiny_dataset, tmp_path, capsys):
    import shutil

    from leukdash.cli import main
    from leukdash.engine.sweep import sweep_dir

    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    configs = expand_grid(_base(data), {"model": ["nb", "dt"]})
    first = run_sweep(configs, n_jobs=1)
    shutil.rmtree(RunStore().run_dir(first["results"][1]["run_id"]))
    status = sweep_status(first["sweep_id"])
    assert status["state"] == "incomplete" and [r["status"] for r in status["runs"]] == ["complete", "pending"]
    # The images change: resuming computes other runs, and says so.
    next(data.glob("ALL/*.png")).unlink()
    again = resume_sweep(first["sweep_id"], n_jobs=1)
    [warning] = again["warnings"]
    assert warning.startswith(f"2 of the sweep's 2 runs are new runs (first: {first['results'][0]['run_id']} is now ")
    assert f"the images of {data} (or the engine version) changed" in warning
    assert sweep_status(first["sweep_id"])["state"] == "done"
    # A damaged record: listed and said, not dropped.
    (sweep_dir(first["sweep_id"]) / "sweep.json").write_text("{not json")
    [entry] = list_sweeps()
    assert entry["state"] == "damaged" and "launch the same grid again" in entry["message"]
    with pytest.raises(RunError, match="sweep.json\\) is damaged"):
        resume_sweep(first["sweep_id"])
    assert main(["sweeps"]) == 0
    assert f"{first['sweep_id']:<18} damaged  sweep {first['sweep_id']}'s record" in capsys.readouterr().out


def test_cli_sweep_and_sweeps(tiny_dataset, isolated_artifacts):
    env = {**os.environ, "LEUKDASH_ARTIFACTS": str(isolated_artifacts)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "leukdash", *args], capture_output=True, text=True,
                              cwd=ROOT, env=env, timeout=300)

    out = cli("sweep", str(tiny_dataset), "--model", "nb,dt", "--seed", "0,1", "--image-size", "16",
              "--folds", "2", "--augment-factor", "1", "--name", "seeds", "--json", "--quiet")
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert [(r["config"]["model"], r["config"]["seed"]) for r in payload["runs"]] == [
        ("nb", 0), ("nb", 1), ("dt", 0), ("dt", 1)]
    assert payload["axes"] == {"model": ["nb", "dt"], "seed": [0, 1]}
    listed = json.loads(cli("sweeps", "--json").stdout)["sweeps"]
    assert [(s["sweep_id"], s["name"], s["done_folds"]) for s in listed] == [(payload["sweep_id"], "seeds", 8)]
    assert "4/4 runs  8/8 folds  model × seed · seeds" in cli("sweeps").stdout  # named by what it varies
    again = json.loads(cli("sweep", "--resume", payload["sweep_id"], "--json", "--quiet").stdout)
    assert [r["cached"] for r in again["runs"]] == [True] * 4 and again["sweep_id"] == payload["sweep_id"]
    bad = cli("sweep", str(tiny_dataset), "--epochs", "10,x")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: leukdash sweep: argument --epochs: invalid comma list of int value: '10,x'"]


def test_a_setting_the_model_ignores_is_shown_unused_and_its_repeated_run_counted_once(tiny_dataset, capsys):
    from leukdash.cli import main

    assert main(["sweep", str(tiny_dataset), "--model", "nb,knn", "--k", "1,5", "--image-size", "16", "--folds", "2",
                 "--augment-factor", "1", "--quiet"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split()[2:4] for row in rows] == [["model=nb", "k=unused"], ["model=nb", "k=unused"],
                                                  ["model=knn", "k=1"], ["model=knn", "k=5"]]
    assert len({row.split()[0] for row in rows}) == 3
    assert main(["sweeps"]) == 0
    assert " 3/3 runs  6/6 folds  model × k · " in capsys.readouterr().out


def test_a_robustness_augmentation_takes_a_comma_list_in_a_sweep_and_reads_as_its_name(tiny_dataset, capsys):
    # Picking robustness settings by how they transfer is what a sweep is for: --blur 0,1 is the axis augment.blur
    # (a single value applies to every run), and the sweep's rows, listing and ranking name it.
    from leukdash.cli import main

    assert main(["sweep", str(tiny_dataset), "--model", "nb", "--blur", "0,1", "--stain-jitter", "0.1", "--image-size",
                 "16", "--folds", "2", "--augment-factor", "2", "--quiet"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split()[2] for row in rows] == ["blur=0", "blur=1"]
    sweep, = list_sweeps()
    assert sweep["axes"] == {"augment.blur": [0.0, 1.0]}
    assert [(run["config"]["augment"]["blur"], run["config"]["augment"]["stain_jitter"]) for run in sweep["runs"]] == [
        (0.0, 0.1), (1.0, 0.1)]
    assert main(["sweeps", "--rank-by", "cv"]) == 0
    listing = capsys.readouterr().out
    assert " 2/2 runs  4/4 folds  blur · " in listing
    assert sorted(line.split()[2] for line in listing.splitlines()[1:]) == ["blur=0", "blur=1"]


def test_a_sweep_checks_its_runs_not_the_default_model_with_its_single_values():
    # --image-size 8 is refused by the paper CNN (the default model) but taken by nb and k-NN, the only models swept.
    from leukdash.cli import build_parser
    from leukdash.cli.run_options import sweep_from_args

    args = build_parser().parse_args(["sweep", "--model", "nb,knn", "--image-size", "8", "--blur", "1", "--folds", "2"])
    configs, axes = sweep_from_args(args)
    settings = [(c.model, c.image_size, c.augment.blur, c.folds) for c in configs]
    assert settings == [("nb", 8, 1.0, 2), ("knn", 8, 1.0, 2)]
    assert axes == {"model": ["nb", "knn"]}


def test_the_sweep_summary_and_the_readme_name_exactly_the_run_options_that_take_one_value():
    import argparse
    import re

    from leukdash.cli import build_parser
    from leukdash.cli.run_options import add_run_options

    options = argparse.ArgumentParser()
    add_run_options(options, lists=True)
    single = {action.option_strings[0] for action in options._actions[1:] if not (action.help or "").endswith("list")}
    assert single == {"--no-augment", "--classes", "--balance-sources"}
    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    summary = next(choice.help for choice in commands._choices_actions if choice.dest == "sweep")
    assert set(re.findall(r"--[a-z-]+", summary.split(" but ", 1)[1])) == single
    readme = (ROOT / "README.md").read_text().replace("\n", " ")
    said = readme.split("`sweep` takes the same options but", 1)[1].split(": the grid", 1)[0]
    assert set(re.findall(r"`(--[a-z-]+)`", said.split(" each as a comma list but ", 1)[1].split(" (", 1)[0])) == single


def test_sweep_takes_dataset_as_run_does_and_names_itself_for_an_option_it_lacks(tiny_dataset, capsys):
    from leukdash.cli import main

    assert main(["sweep", str(tiny_dataset), "--final-model"]) == 2
    assert capsys.readouterr().err == ("error: leukdash sweep: unrecognized arguments: --final-model "
                                       "(see leukdash sweep --help)\n")
    assert main(["sweep", "--dataset", str(tiny_dataset), "--model", "nb", "--seed", "0,1", "--image-size", "16",
                 "--folds", "2", "--augment-factor", "1", "--quiet"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split()[2] for row in rows] == ["seed=0", "seed=1"]


def test_launching_a_stored_grid_again_on_other_images_warns_and_keeps_the_earlier_runs(tiny_dataset, tmp_path,
                                                                                         capsys):
    """The sweep id hashes the settings only, so the same grid on changed images (or by another engine) is the
    same sweep with other runs: the launch says so as --resume does, and the record keeps the runs it held."""
    import shutil

    from leukdash.cli import main
    from leukdash.engine.store import read_json, write_json_atomic
    from leukdash.engine.sweep import sweep_dir

    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    configs = expand_grid(_base(data), {"model": ["nb", "dt"]})
    first = run_sweep(configs, n_jobs=1)
    assert first["warnings"] == [] and run_sweep(configs, n_jobs=1)["warnings"] == []
    old = first["run_ids"]
    next(data.glob("ALL/*.png")).unlink()
    again = run_sweep(configs, n_jobs=1)
    assert again["sweep_id"] == first["sweep_id"] and set(again["run_ids"]).isdisjoint(old)
    assert again["warnings"] == [
        f"2 of the sweep's 2 runs are new runs (first: {old[0]} is now {again['run_ids'][0]}): the images of {data} "
        "(or the engine version) changed since the sweep was stored; the old runs stay in the store, listed as "
        "the sweep's earlier runs by `sweeps`"]
    assert sweep_status(first["sweep_id"])["earlier_run_ids"] == old
    assert main(["sweeps"]) == 0
    assert f"  earlier runs (other images or engine): {old[0]} {old[1]}\n" in capsys.readouterr().out
    assert main(["sweeps", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sweeps"][0]["earlier_run_ids"] == old
    # A record of an older engine (its configs lack settings added since) is paired by its settings all the same.
    path = sweep_dir(first["sweep_id"]) / "sweep.json"
    record = read_json(path)
    for config in record["configs"]:
        del config["balance_sources"]
    write_json_atomic(path, {**record, "run_ids": ["nb-0123456789ab", "dt-0123456789ab"]})
    assert run_sweep(list(reversed(configs)), n_jobs=1)["warnings"][0].startswith(
        f"2 of the sweep's 2 runs are new runs (first: dt-0123456789ab is now {again['run_ids'][1]}): ")
    assert sweep_status(first["sweep_id"])["earlier_run_ids"] == [*old, "nb-0123456789ab", "dt-0123456789ab"]
    # Earlier runs written by hand as anything but a list of ids are none, not a traceback or letters;
    # many are kept to a whole grid's worth, the newest, and `sweeps` shows the first few and their count.
    for damaged in (None, "nb-0123456789ab", {"a": 1}):
        write_json_atomic(path, {**read_json(path), "earlier_run_ids": damaged})
        assert sweep_status(first["sweep_id"])["earlier_run_ids"] == []
        assert run_sweep(configs, n_jobs=1)["earlier_run_ids"] == []
    # An id beside a wrong entry is kept; ids are shown as text, never as a line break or a colour code.
    write_json_atomic(path, {**read_json(path), "earlier_run_ids": ["nb-dead00000000", 5, "nb-x\nFAKE \x1b[31m"]})
    assert run_sweep(configs, n_jobs=1)["earlier_run_ids"] == ["nb-dead00000000", "nb-x\nFAKE \x1b[31m"]
    capsys.readouterr()
    assert main(["sweeps"]) == 0
    listed = capsys.readouterr().out
    assert "nb-dead00000000" in listed and "FAKE" in listed and "\nFAKE" not in listed and "\x1b" not in listed
    many = [f"nb-{i:012d}" for i in range(MAX_SWEEP_RUNS + 5)]
    write_json_atomic(path, {**read_json(path), "earlier_run_ids": many})
    assert run_sweep(configs, n_jobs=1)["earlier_run_ids"] == many[-MAX_SWEEP_RUNS:]
    capsys.readouterr()
    assert main(["sweeps"]) == 0
    shown = f"{' '.join(many[5:10])} … ({MAX_SWEEP_RUNS} in all; `sweeps --json` lists them)"
    assert shown in capsys.readouterr().out


@pytest.mark.parametrize("n_jobs", ["1", "2"])  # in this process, and worker processes
def test_a_run_that_fails_on_its_own_is_named_and_the_sweeps_other_runs_are_computed(three_a_class, capsys, n_jobs):
    from leukdash.cli import main

    args = ["sweep", str(three_a_class), "--model", "nb,svm,knn", "--k", "1", "--feature-set", "pixels",
            "--image-size", "16", "--folds", "2", "--augment-factor", "1", "--no-augment", "--n-jobs", n_jobs,
            "--quiet"]
    for launch in (args, ["sweep", "--resume", None, "--n-jobs", n_jobs, "--quiet"]):  # the first; resumed
        if launch[2] is None:
            launch[2] = list_sweeps()[0]["sweep_id"]
        assert main(launch) == 2
        lines = capsys.readouterr().err.splitlines()[-2:]
        status = list_sweeps()[0]
        failed = [run for run in status["runs"] if run["config"]["model"] == "svm"][0]
        assert lines[0] == (f"error: sweep {status['sweep_id']}: 1 of 3 runs failed (the others are complete and "
                            "stored); the same settings fail again: change those of each run below as its reason says:")
        assert lines[1].startswith(f"error: run {failed['run_id']} (model svm): a fold's training part holds 1 input")
        assert [run["status"] for run in status["runs"]] == ["complete", "failed", "complete"]
        assert "holds 1 input of class" in failed["message"] and status["state"] == "failed"
    assert main(["sweeps"]) == 0
    assert f"  failed: {failed['run_id']} model=svm: a fold's training part" in capsys.readouterr().out


def test_a_failed_run_is_failed_at_once_and_its_reason_kept_where_the_sweep_and_runs_list_it(three_a_class):
    """Its lock goes with its failure (it read as running until the sweep ended, then as partial 0/2 folds); the
    error maps each failed run to its own, crosses processes whole, and says "the others" only where there are."""
    import pickle

    from leukdash.errors import RunsFailed

    failed_ids, seen = [], []

    def look(event):  # any event after a run's failure: the sweep and the store already tell it failed
        for run_id in failed_ids:
            sweep = {r["run_id"]: r["status"] for r in sweep_status(list_sweeps()[0]["sweep_id"])["runs"]}
            seen.append((sweep[run_id], {r["run_id"]: r["status"] for r in RunStore().list_runs()}[run_id]))
        if event.get("event") == "failed":
            failed_ids.append(event["run_id"])

    base = RunConfig(dataset=str(three_a_class), image_size=16, augment=AugmentConfig.off(), augment_factor=1, folds=2)
    configs = expand_grid(base, [{"model": "nb"}, {"model": "svm", "seed": 1}, {"model": "svm", "seed": 2}])
    with pytest.raises(RunsFailed) as failed:
        run_sweep(configs, n_jobs=1, on_event=look)
    assert seen and set(seen) == {("failed", "failed")}
    entries = [r for r in RunStore().list_runs() if r["status"] == "failed"]
    assert len(entries) == 2 and all("holds 1 input of class" in entry["message"] for entry in entries)
    again = pickle.loads(pickle.dumps(failed.value))
    assert again.lines == failed.value.lines and set(again.errors) == {entry["run_id"] for entry in entries}
    assert all("holds 1 input of class" in str(error) for error in again.errors.values())
    with pytest.raises(RunsFailed) as both:
        run_sweep(configs[1:], n_jobs=1)
    assert "2 of 2 runs failed; the same settings fail again" in both.value.lines[0]


def test_a_fold_error_of_the_machine_still_stops_every_run_of_a_sweep(tiny_dataset, monkeypatch):
    """Only a refusal of a run's settings is its own: TensorFlow's import interrupted earlier in this process
    fails every CNN alike, so it is said as itself at once, not as one run that failed on its own."""
    import re

    from leukdash.errors import RunsFailed
    from leukdash.models import tensorflow_import

    monkeypatch.setattr(tensorflow_import, "_imported", False)
    monkeypatch.setattr(tensorflow_import, "_interrupted", True)  # as a Ctrl-C during the import leaves it
    configs = expand_grid(_base(tiny_dataset).with_changes(epochs=1), {"model": ["cnn", "nb"]})
    with pytest.raises(RunError, match=f"^{re.escape(tensorflow_import.INTERRUPTED_IMPORT)}$") as stopped:
        run_sweep(configs, n_jobs=1)
    assert not isinstance(stopped.value, RunsFailed)
    assert sweep_status(list_sweeps()[0]["sweep_id"])["state"] == "failed"


def test_runs_a_machine_error_stopped_read_unfinished_not_failed_for_their_settings(tiny_dataset, monkeypatch):
    """The error's failed event goes to every run it left unfinished; only a refusal of a run's own settings makes
    it failed (a run read as failed says: change its settings), so these read partial or pending as they are."""
    from leukdash.models import tensorflow_import

    monkeypatch.setattr(tensorflow_import, "_imported", False)
    monkeypatch.setattr(tensorflow_import, "_interrupted", True)  # as a Ctrl-C during the import leaves it
    configs = expand_grid(_base(tiny_dataset).with_changes(epochs=1), {"model": ["cnn", "nb"]})
    with pytest.raises(RunError):
        run_sweep(configs, n_jobs=1)
    runs = sweep_status(list_sweeps()[0]["sweep_id"])["runs"]
    stopped = [run["run_id"] for run in runs if run["status"] != "complete"]
    assert stopped and {run["status"] for run in runs if run["run_id"] in stopped} <= {"partial", "pending"}
    assert {run["run_id"]: (run["status"], run["message"]) for run in RunStore().list_runs()
            if run["run_id"] in stopped} == {run_id: ("partial", "") for run_id in stopped}


def test_a_command_given_a_refused_run_says_it_was_refused_and_that_other_settings_are_the_remedy(three_a_class,
                                                                                                  capsys):
    """Computing its missing folds again (`run --config-file`, as said of a stopped run) fails alike."""
    from leukdash.cli import main

    base = RunConfig(dataset=str(three_a_class), image_size=16, augment=AugmentConfig.off(), augment_factor=1, folds=2)
    with pytest.raises(RunError):
        run_sweep(expand_grid(base, {"model": ["nb", "svm"]}), n_jobs=1)
    (refused,) = [run["run_id"] for run in RunStore().list_runs() if run["status"] == "failed"]
    capsys.readouterr()
    for command in (["oof", refused], ["compare", refused]):
        assert main(command) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert f"{refused}' is not a finished run in " in line and "run --config-file" not in line
        assert line.endswith("launching it again fails alike: change its settings or images as the reason says")
        assert ": it was refused for its settings: a fold's training part holds 1 input of class" in line


def test_a_grid_that_repeats_a_refused_run_counts_its_settings_and_distinct_runs_with_it(three_a_class, capsys):
    """The note counted the computed runs' settings only: 'the grid's 2 settings are 1 distinct run(s)'."""
    from leukdash.cli import main

    assert main(["sweep", str(three_a_class), "--model", "nb,svm", "--k", "1,3", "--image-size", "16", "--folds",
                 "2", "--augment-factor", "1", "--no-augment", "--n-jobs", "1", "--quiet"]) == 2
    out, err = capsys.readouterr()
    assert "): 2 of 4 run(s) (2 refused, below) in " in out.splitlines()[0]
    assert "note: the grid's 4 settings are 2 distinct run(s): some repeat a run" in err


def test_a_refused_run_relaunched_and_stopped_while_loading_its_images_still_reads_refused(three_a_class, capsys):
    """Its last progress event is the relaunch's loading line: it read partial, and run --config-file was advised."""
    import json

    from leukdash.cli import main

    base = RunConfig(dataset=str(three_a_class), image_size=16, augment=AugmentConfig.off(), augment_factor=1, folds=2)
    with pytest.raises(RunError):
        run_sweep(expand_grid(base, {"model": ["nb", "svm"]}), n_jobs=1)
    store = RunStore()
    (refused,) = [run["run_id"] for run in store.list_runs() if run["status"] == "failed"]
    with store.progress_path(refused).open("a", encoding="utf-8") as progress:  # the relaunch, stopped
        progress.write(json.dumps({"event": "loading", "message": "loading images"}) + "\n")
    assert "a fold's training part holds 1 input of class" in store.failure(refused)
    capsys.readouterr()
    assert main(["oof", refused]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert ": it was refused for its settings: " in line and "run --config-file" not in line


def test_a_sweep_with_a_refused_run_still_prints_its_computed_runs_and_names_the_refused_one(three_a_class, capsys):
    """It printed nothing on stdout, not even with --json, though its other runs were computed."""
    from leukdash.cli import main

    args = ["sweep", str(three_a_class), "--model", "nb,svm", "--image-size", "16", "--folds", "2",
            "--augment-factor", "1", "--no-augment", "--n-jobs", "1", "--quiet"]
    assert main([*args, "--json"]) == 2
    out, err = capsys.readouterr()
    printed = json.loads(out)
    (refused,) = [run["run_id"] for run in RunStore().list_runs() if run["status"] == "failed"]
    assert [run["config"]["model"] for run in printed["runs"]] == ["nb"] and list(printed["failed"]) == [refused]
    assert "a fold's training part holds 1 input of class" in printed["failed"][refused]
    assert err.splitlines()[0].startswith(f"error: sweep {printed['sweep_id']}: 1 of 2 runs failed")
    assert main(args) == 2  # the table, its nb run cached now
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith(f"sweep {printed['sweep_id']} (") and \
        "): 1 of 2 run(s) (1 refused, below) in " in out.splitlines()[0]  # it said "1 run(s)" of a 2-run grid
    assert out.splitlines()[1].split()[:2] == [printed["runs"][0]["run_id"], "cached"]
    assert err.splitlines()[1].startswith(f"error: run {refused} (model svm): a fold's training part")


def test_a_default_setting_a_run_id_leaves_out_is_shown_by_its_value_not_unused(tiny_dataset):
    # The raw preprocessing and pooled sources are left out of the canonical config only so that older run ids hold:
    # a raw run used its preprocessing, while naive Bayes never reads k.
    from leukdash.cli.output import sweep_settings

    config = _base(tiny_dataset).with_changes(model="nb").to_dict()
    assert (sweep_settings(config, {"preprocess": [], "balance_sources": [], "k": []})
            == "preprocess=raw balance_sources=False k=unused")
