"""Runs end to end: caching, resuming, damaged folds, protocols, prediction, comparison, CLI errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from leukdash import ENGINE_VERSION
from leukdash.evaluation.compare import compare_runs
from leukdash.config import AugmentConfig, RunConfig
from leukdash.errors import RunError
from leukdash.evaluation.predict import predict_files
from leukdash.engine.progress import read_events
from leukdash.engine.runner import resolve, run
from leukdash.engine.store import RunStore

ROOT = Path(__file__).resolve().parent.parent


# Runs compute in this process (n_jobs=1) unless the pool is what a test is about: worker
# start-up would cost more than these tiny folds, and results do not depend on it
# (test_cnn_folds_in_worker_processes_give_the_in_process_results).
def _config(dataset: Path, **changes) -> RunConfig:
    base = dict(dataset=str(dataset), image_size=16, augment_factor=2, folds=3, epochs=1, batch_size=16)
    return RunConfig(**{**base, **changes})


def _cli(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leukdash", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout)


def _fold_metrics(result: dict) -> list[tuple]:
    return [(f["fold"], f["val_acc"], round(f["val_loss"], 4), f["confusion"]) for f in result["folds"]]


def test_classic_run_summarises_its_folds_and_is_answered_from_the_store(tiny_dataset):
    config = _config(tiny_dataset, model="knn", feature_set="pixels")
    first = run(config, n_jobs=1)
    assert not first["cached"] and first["computed_folds"] == [0, 1, 2]
    accuracies = [f["val_acc"] for f in first["folds"]]
    assert first["summary"]["val_acc"]["mean"] == pytest.approx(np.mean(accuracies))
    assert sum(f["n_val"] for f in first["folds"]) == 40
    for fold in first["folds"]:
        assert np.allclose(np.sum(fold["oof"]["proba"], axis=1), 1.0, atol=1e-4)
        assert np.sum(fold["confusion"]) == fold["n_val"]
    again = run(config, n_jobs=1)
    assert again["cached"] and again["computed_folds"] == []
    assert _fold_metrics(again) == _fold_metrics(first)
    assert first["dataset"]["fingerprint"] and "scikit-learn" in first["versions"]


def test_cached_run_from_the_cli_imports_no_tensorflow(tiny_dataset):
    run(_config(tiny_dataset, model="cnn"), n_jobs=1)
    probe = ("import sys, json; from leukdash.cli import main; main(%r); "
             "print(json.dumps('tensorflow' in sys.modules))")
    args = ["run", str(tiny_dataset), "--model", "cnn", "--image-size", "16", "--augment-factor", "2",
            "--folds", "3", "--epochs", "1", "--batch-size", "16", "--json", "--quiet"]
    out = subprocess.run([sys.executable, "-c", probe % args], capture_output=True, text=True, cwd=ROOT,
                         env=os.environ.copy(), timeout=120)
    payload, tf_imported = out.stdout.rsplit("\n", 2)[0], out.stdout.strip().splitlines()[-1]
    assert json.loads(payload)["cached"] is True
    assert tf_imported == "false"


def test_cnn_folds_in_worker_processes_give_the_in_process_results(tiny_dataset, tmp_path, monkeypatch, capfd):
    config = _config(tiny_dataset, model="cnn", folds=2)
    events = []
    parallel = run(config, n_jobs=2, on_event=events.append)
    # The workers' stderr reaches ours without TensorFlow's start-up notes (a dozen lines per worker).
    said = capfd.readouterr().err
    assert "oneDNN" not in said and "absl::InitializeLog" not in said and "cpu_feature_guard" not in said, said
    # The workers' progress reaches the listener through the progress file.
    assert sorted(e["fold"] for e in events if e["event"] == "fold_done") == [0, 1]
    assert any(e["event"] == "epoch" for e in events)
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tmp_path / "other"))
    sequential = run(config, n_jobs=1)
    assert sequential["run_id"] == parallel["run_id"] and sequential["computed_folds"] == [0, 1]
    for a, b in zip(parallel["folds"], sequential["folds"]):
        assert a["history"] == b["history"] and a["oof"]["proba"] == b["oof"]["proba"]


def test_classic_models_share_cached_engineered_features(tiny_dataset, monkeypatch):
    from leukdash.models import features

    calls = []
    extract = features.extract_features
    monkeypatch.setattr(features, "extract_features", lambda images: calls.append(len(images)) or extract(images))
    first = run(_config(tiny_dataset, model="nb", feature_set="features"), n_jobs=1)
    n_first = len(calls)
    assert n_first == 6  # 3 folds x (augmented training part, validation part)
    second = run(_config(tiny_dataset, model="knn", feature_set="features"), n_jobs=1)
    assert len(calls) == n_first, "the second model reads the first one's features back"
    assert [f["n_val"] for f in second["folds"]] == [f["n_val"] for f in first["folds"]]
    # A different augmentation draws other copies: computed, not confused with the cached ones.
    run(_config(tiny_dataset, model="knn", feature_set="features", augment_factor=3), n_jobs=1)
    assert len(calls) > n_first


def test_damaged_fold_is_detected_and_only_it_is_recomputed(tiny_dataset):
    config = _config(tiny_dataset, model="dt", feature_set="features")
    first = run(config, n_jobs=1)
    fold_file = RunStore().fold_path(first["run_id"], 1)
    fold_file.write_text(fold_file.read_text()[:-40])  # a torn write
    second = run(config, n_jobs=1)
    assert second["computed_folds"] == [1]
    assert _fold_metrics(second) == _fold_metrics(first)


def test_killed_cnn_run_resumes_at_its_first_unfinished_fold(tiny_dataset, tmp_path):
    args = ["run", str(tiny_dataset), "--model", "cnn", "--image-size", "24", "--augment-factor", "2",
            "--folds", "5", "--epochs", "3", "--batch-size", "8", "--json", "--quiet", "--n-jobs", "1"]
    interrupted_store = tmp_path / "interrupted"
    env = {"LEUKDASH_ARTIFACTS": str(interrupted_store)}
    job = subprocess.Popen([sys.executable, "-m", "leukdash", *args], cwd=ROOT, env={**os.environ, **env},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    progress = None
    deadline = time.time() + 240
    while time.time() < deadline and job.poll() is None:
        progress = progress or next(iter(interrupted_store.glob("runs/*/progress.jsonl")), None)
        if progress and sum(e["event"] == "fold_done" for e in read_events(progress)) >= 2:
            os.killpg(job.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    job.wait(timeout=30)
    assert job.returncode == -signal.SIGKILL, "the run should have been killed after its second fold"

    resumed = json.loads(_cli(*args, env=env).stdout)
    assert resumed["computed_folds"] == [2, 3, 4]
    uninterrupted = json.loads(_cli(*args, env={"LEUKDASH_ARTIFACTS": str(tmp_path / "whole")}).stdout)
    assert uninterrupted["computed_folds"] == [0, 1, 2, 3, 4]
    assert resumed["run_id"] == uninterrupted["run_id"]
    for a, b in zip(resumed["folds"], uninterrupted["folds"]):
        assert a["val_acc"] == b["val_acc"] and a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-4)


def test_a_resumed_run_keeps_the_record_of_its_first_attempt(tiny_dataset):
    config = _config(tiny_dataset, model="nb")
    first = run(config, n_jobs=1)
    store, first_machine = RunStore(), {"cpu": "the first CPU", "cores": 1}
    meta = {**store.read_meta(first["run_id"]), "created": 1000.0, "machine": first_machine}
    store.write_meta(first["run_id"], meta)
    store.fold_path(first["run_id"], 2).unlink()  # killed before its last fold
    assert run(config, n_jobs=1)["computed_folds"] == [2]
    resumed = store.read_meta(first["run_id"])
    assert resumed["created"] == 1000.0 and resumed["machine"] == first_machine
    [attempt] = resumed["resumed"]
    assert attempt["folds"] == [2] and attempt["machine"]["cpu"] != "the first CPU" and attempt["time"] > 1000

    # Another scikit-learn since: its folds would mix two setups under one record.
    store.write_meta(first["run_id"], {**resumed, "versions": {**resumed["versions"], "scikit-learn": "0.1"}})
    store.fold_path(first["run_id"], 1).unlink()
    with pytest.raises(RunError, match=r"computed under other versions: scikit-learn 0\.1 \(here .*deleting "
                                       r"its folder"):
        run(config, n_jobs=1)
    assert store.read_fold(first["run_id"], 0) is not None and store.read_fold(first["run_id"], 1) is None
    # A CNN's dtype policy is the CPU's, and neither it nor TensorFlow or Keras changes a classic run's numbers.
    cnn_only = {"cnn_dtype_policy": "other", "tensorflow": "0.1", "keras": "0.1"}
    store.write_meta(first["run_id"], {**resumed, "versions": {**resumed["versions"], **cnn_only}})
    assert run(config, n_jobs=1)["computed_folds"] == [1]


def test_a_run_whose_folds_are_drawn_otherwise_since_is_not_resumed(tiny_dataset, monkeypatch):
    """Folds drawn otherwise than when a run's first folds were stored (another version's merging of
    duplicates, say): resuming would validate some images twice and others never, under one id."""
    from leukdash.engine import fold_planning

    config = _config(tiny_dataset, model="nb")
    run_id = run(config, n_jobs=1)["run_id"]
    store = RunStore()
    store.fold_path(run_id, 2).unlink()  # killed before its last fold
    planned = fold_planning.plan_folds
    monkeypatch.setattr(fold_planning, "plan_folds", lambda *args: (lambda fold_of, ids: ((fold_of + 1) % 3, ids))(
        *planned(*args)))
    with pytest.raises(RunError, match=rf"run {run_id}: its stored fold 1 validated other images than that fold is "
                                       r"drawn with now .* start it afresh by deleting its folder"):
        run(config, n_jobs=1)
    assert store.read_fold(run_id, 0) is not None and store.read_fold(run_id, 2) is None


def test_a_runs_meta_as_config_file_finishes_that_run_from_any_folder(tiny_dataset, tmp_path, monkeypatch, capsys):
    import shutil

    from leukdash.cli import main

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_dataset, tmp_path / "first" / "ds")
    monkeypatch.chdir(tmp_path / "first")
    config = _config("ds", model="nb")  # a relative path, as typed
    run_id = run(config, n_jobs=1)["run_id"]
    meta = RunStore().run_dir(run_id) / "meta.json"
    RunStore().fold_path(run_id, 0).unlink()
    # Elsewhere "ds" names other images (two of them left out), or none: the run's own folder is used.
    shutil.copytree(tiny_dataset, tmp_path / "second" / "ds")
    for image in sorted((tmp_path / "second" / "ds").rglob("*.png"))[:2]:
        image.unlink()
    monkeypatch.chdir(tmp_path / "second")
    assert main(["run", "--config-file", str(meta), "--quiet", "--json"]) == 0
    finished = json.loads(capsys.readouterr().out)
    assert finished["run_id"] == run_id and finished["computed_folds"] == [0]
    assert RunStore().read_meta(run_id)["config"]["dataset"] == "ds"  # the record keeps what was typed

    # The run's own images changed: its settings give another run now, which is refused, not computed.
    RunStore().fold_path(run_id, 1).unlink()
    shutil.rmtree(tmp_path / "first")
    assert main(["run", "--config-file", str(meta), "--quiet"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: cannot finish run {run_id}: its settings give run nb-") and "on the images of ds" \
        in line, line
    assert [entry["run_id"] for entry in RunStore().list_runs()] == [run_id]


def test_a_run_of_another_engine_or_with_settings_kept_otherwise_says_why_it_cannot_be_finished(tiny_dataset, capsys):
    """Engines before settings were kept to 12 significant digits hashed a computed 0.7000000000000001 as
    it was (the Augmentation page's blur 7 × 0.1): finishing such a run blamed changed images."""
    from leukdash.cli import main

    noisy = AugmentConfig(blur=0.7)
    object.__setattr__(noisy, "blur", 0.7000000000000001)  # as an earlier engine kept it
    config = _config(tiny_dataset, model="nb", augment_factor=2)
    object.__setattr__(config, "augment", noisy)
    run_id = run(config, n_jobs=1)["run_id"]
    meta = RunStore().run_dir(run_id) / "meta.json"
    assert json.loads(meta.read_text())["config"]["augment"]["blur"] == 0.7000000000000001
    RunStore().fold_path(run_id, 0).unlink()
    assert main(["run", "--config-file", str(meta), "--quiet"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: cannot finish run {run_id}: it was stored with settings this leukdash keeps "
                           "otherwise (augment.blur 0.7000000000000001: to 12 significant digits, -0.0 as 0), so "
                           "its settings give run nb-"), line
    assert "files added, removed or changed" not in line

    # A run of another engine (its record says which) cannot be finished by this one: said as such.
    record = json.loads(meta.read_text())
    record["config"]["augment"]["blur"] = 0.7
    record["versions"]["engine"] = "2"
    meta.write_text(json.dumps(record))
    assert main(["run", "--config-file", str(meta), "--quiet"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: cannot finish run {run_id}: it was computed by leukdash engine 2, and this is "
                           f"engine {ENGINE_VERSION}, so its settings give run nb-"), line


def test_a_cnn_that_diverges_says_so_in_one_line_and_keeps_its_finished_folds(tiny_dataset):
    # Eight epochs: the loss overflows on every CPU kind (after four it was inf on an AVX-512/AMX Xeon but still
    # 6e30 on an AVX-512 EPYC, the other path, tested below).
    config = _config(tiny_dataset, model="cnn", learning_rate=10, augment_factor=1, folds=2, epochs=8, batch_size=4)
    with pytest.raises(RunError, match=r"^fold \d: the CNN's training diverged \(loss not finite\) at learning rate "
                                       r"10: give a lower --learning-rate; finished folds are kept$"):
        run(config, n_jobs=1)
    run_id = resolve(config).run_id
    lines = RunStore().progress_path(run_id).read_text().splitlines()
    events = [json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in {line}")) for line in lines]
    assert any(event["event"] == "epoch" and None in event["metrics"].values() for event in events)
    assert events[-1]["event"] == "failed" and "diverged" in events[-1]["message"]
    assert RunStore().read_meta(run_id) is not None  # the run stays, partial, with any fold it finished


def test_a_cnn_whose_loss_explodes_but_stays_finite_has_diverged_too(tiny_dataset):
    """At learning rate 10 the loss of fold 2 climbs 196 -> 5e4 -> 5e6 -> 4e6, still finite: every answer one class
    with certainty, which would be scored and shown as a result."""
    config = _config(tiny_dataset, model="cnn", architecture="leukdash", learning_rate=10, optimizer="sgd",
                     augment_factor=1, folds=2, epochs=4, batch_size=4)
    with pytest.raises(RunError, match=r"^fold \d: the CNN's training diverged \(loss rose from \S+ to \S+\) at "
                                       r"learning rate 10: give a lower --learning-rate; finished folds are kept$"):
        run(config, n_jobs=1)
    assert RunStore().read_meta(resolve(config).run_id) is not None  # kept, partial, as when the loss is NaN


def test_a_cnn_whose_loss_is_huge_from_its_first_epoch_has_diverged(tiny_dataset):
    """With --epochs 1 the first epoch is the last: a loss of 1e5 at learning rate 10 (a uniform answer's is
    ln 5 = 1.6) is refused, and said as the loss it is, since it did not rise from an earlier one."""
    config = _config(tiny_dataset, model="cnn", learning_rate=10, augment_factor=1, folds=2, epochs=1, batch_size=4)
    with pytest.raises(RunError, match=r"^fold 1: the CNN's training diverged \(loss \d\S*\) at learning rate 10: "
                                       r"give a lower --learning-rate; finished folds are kept$"):
        run(config, n_jobs=1)


def test_paper_protocol_validates_on_augmented_copies(tiny_dataset):
    strict = run(_config(tiny_dataset, model="nb", protocol="strict", augment_factor=3), n_jobs=1)
    paper = run(_config(tiny_dataset, model="nb", protocol="paper", augment_factor=3), n_jobs=1)
    assert strict["run_id"] != paper["run_id"]
    for s, p in zip(strict["folds"], paper["folds"]):
        assert p["n_val"] == 3 * s["n_val"]
        assert sorted(set(p["oof"]["copy"])) == [0, 1, 2]
        assert sorted(set(p["oof"]["index"])) == sorted(s["oof"]["index"])  # same images, same folds


def test_irrelevant_settings_share_one_run_and_class_subsets_relabel(tiny_dataset):
    assert resolve(_config(tiny_dataset, model="nb", k=7)).run_id == resolve(_config(tiny_dataset, model="nb")).run_id
    no_aug = _config(tiny_dataset, model="nb", augment_factor=1)
    assert resolve(no_aug).run_id == resolve(no_aug.with_changes(augment=AugmentConfig(rotation=10))).run_id
    binary = run(_config(tiny_dataset, model="nb", classes=("ALL", "HEALTHY")), n_jobs=1)
    assert binary["dataset"]["classes"] == ["ALL", "HEALTHY"]
    assert all(len(f["confusion"]) == 2 for f in binary["folds"])
    assert sum(f["n_val"] for f in binary["folds"]) == 16


def test_prediction_averages_the_fold_models(tiny_dataset, tmp_path):
    result = run(_config(tiny_dataset, model="svm", feature_set="features"), n_jobs=1)
    image = next((tiny_dataset / "CLL").glob("*.png"))
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    good, bad = predict_files(result["run_id"], [image, text])
    assert bad["file"] == str(text) and "not an image" in bad["error"]
    assert sum(good["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert good["predicted"] == max(good["probabilities"], key=good["probabilities"].get)
    assert 1 <= good["agreement"] <= good["n_folds"] == 3
    assert good["fold_predictions"].count(good["predicted"]) == good["agreement"]
    with pytest.raises(RunError, match="not a finished run"):
        predict_files("cnn-000000000000", [image])


def test_an_older_stored_interval_beyond_its_range_is_read_clipped(tiny_dataset, capsys):
    from leukdash.cli import main

    first = run(_config(tiny_dataset, model="nb"), n_jobs=1)
    store = RunStore()
    summary = store.read_summary(first["run_id"])
    # As summaries were stored before the clipping: the bare t interval of the fold accuracies.
    store.write_summary(first["run_id"], {**summary, "val_acc": {**summary["val_acc"], "ci95": [0.558, 1.275]},
                                          "val_loss": {**summary["val_loss"], "ci95": [-0.5, 2.0]}})
    again = run(_config(tiny_dataset, model="nb"), n_jobs=1)
    compared = compare_runs([first["run_id"]])["runs"][0]["summary"]
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0
    [listed] = [entry["summary"] for entry in json.loads(capsys.readouterr().out)["runs"]]
    for read in (again["summary"], compared, listed):
        assert read["val_acc"]["ci95"] == [0.558, 1.0] and read["val_loss"]["ci95"] == [0.0, 2.0]


def test_compare_pairs_runs_on_the_same_images(tiny_dataset, capsys):
    a = run(_config(tiny_dataset, model="nb"), n_jobs=1)
    b = run(_config(tiny_dataset, model="knn"), n_jobs=1)
    comparison = compare_runs([a["run_id"], b["run_id"]])
    assert [r["label"] for r in comparison["runs"]] == [f"Naive Bayes on pixels · {a['run_id'][3:9]}",
                                                        f"3-NN on pixels · {b['run_id'][4:10]}"]
    from leukdash.cli import main

    assert main(["runs"]) == 0  # the command line names runs as the pages do
    listed = capsys.readouterr().out
    assert all(r["label"] in listed for r in comparison["runs"])
    (test,) = comparison["mcnemar"]
    assert test["n"] == 40 and 0.0 <= test["p_value"] <= 1.0
    correct_a = np.concatenate([np.argmax(f["oof"]["proba"], 1) == f["oof"]["true"] for f in a["folds"]])
    correct_b = np.concatenate([np.argmax(f["oof"]["proba"], 1) == f["oof"]["true"] for f in b["folds"]])
    # folds hold the same images in the same order in both runs, so the discordant counts are direct
    assert test["b"] + test["c"] == int(np.sum(correct_a != correct_b))
    # A fold record lost: the run is partial, and its old mean is no longer given as its figure; how many of
    # its folds are done is, as for a run still running (its lock held).
    (RunStore().run_dir(b["run_id"]) / "folds" / "fold_1.json").unlink()
    assert main(["runs"]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith(b["run_id"])]
    assert line.split()[1:6] == ["partial", "2/3", "folds", "val_acc", "-"]
    with RunStore().lock(b["run_id"]):
        assert main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1:4] for line in lines if line.startswith(b["run_id"])] == [["running", "2/3", "folds"]]
    assert [line.split()[1:4] for line in lines if line.startswith(a["run_id"])] == [["complete", "3/3", "folds"]]


@pytest.mark.parametrize("args, message", [
    (["synthetic", "--model", "rnn"], "model must be one of"),
    (["no_such_dataset", "--model", "nb"], "unknown dataset 'no_such_dataset'"),
    (["synthetic", "--epochs", "0"], "epochs must be an integer"),
    (["synthetic", "--model", "nb", "--folds", "40"], "fewer than the 40 folds"),
    (["synthetic", "--bogus"], "leukdash run: unrecognized arguments: --bogus"),
])
def test_bad_configs_exit_nonzero_with_one_clear_line(args, message, tiny_dataset, isolated_artifacts):
    args = [str(tiny_dataset) if a == "synthetic" else a for a in args]
    out = _cli("run", *args, "--json")
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    # Refused before any work: no run folder (a lock and a progress log the listing would hide).
    assert list(isolated_artifacts.glob("runs/*")) == []


def test_runs_sizes_its_id_column_to_the_longest_id_and_run_ends_its_line_with_the_mean(tiny_dataset, capsys):
    from leukdash.cli import main
    from leukdash.engine.ensemble import create_ensemble
    from leukdash.engine.progress import format_progress_line, latest_state

    events = []
    a = run(_config(tiny_dataset, model="nb", folds=2, augment_factor=1), n_jobs=1, on_event=events.append)
    b = run(_config(tiny_dataset, model="knn", k=1, folds=2, augment_factor=1), n_jobs=1)
    ensemble = create_ensemble([a["run_id"], b["run_id"]])
    assert main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(ensemble["run_id"]) > 18 and len(lines) == 3
    assert {line.index(" complete ") for line in lines} == {len(ensemble["run_id"])}  # one column, the ids' width
    # the progress line of a run done: its mean, not the last fold's val_acc
    assert f"mean val_acc {a['summary']['val_acc']['mean']:.2f}  in " in format_progress_line(latest_state(events))


def test_runs_sizes_its_folds_column_to_the_longest_entry(tmp_path, capsys):
    from leukdash.cli import main
    from leukdash.data.synthetic import generate_synthetic

    data = generate_synthetic(tmp_path / "ten", seed=1, counts={"ALL": 10, "HEALTHY": 10}, size=16)
    for folds in (2, 10):  # "2/2 folds", "10/10 folds"
        run(_config(data, model="nb", folds=folds, augment_factor=1), n_jobs=1)
    assert main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and len({line.index(" val_acc ") for line in lines}) == 1, lines  # the columns after it


def test_an_unknown_option_is_named_before_the_arguments_missing(capsys):
    from leukdash.cli import main

    assert main(["evaluate", "--bogus"]) == 2  # argparse would say run_id and dataset are missing, not --bogus
    assert capsys.readouterr().err == ("error: leukdash evaluate: unrecognized arguments: --bogus "
                                       "(see leukdash evaluate --help)\n")
    assert main(["evaluate", "--", "--bogus"]) == 2  # after --, a value: what is missing is said
    assert capsys.readouterr().err == "error: leukdash evaluate: the following arguments are required: dataset\n"
    for given in (["--jso"], ["run-1", "--jso"], ["--jso", "-1"]):  # prefixes, as argparse takes them
        assert main(["evaluate", *given]) == 2
        assert "unrecognized" not in capsys.readouterr().err, given
    assert main(["evaluate", "-z"]) == 2
    assert capsys.readouterr().err == ("error: leukdash evaluate: unrecognized arguments: -z "
                                       "(see leukdash evaluate --help)\n")


def test_second_process_waits_for_the_first_and_reads_its_result(tiny_dataset, tmp_path):
    args = ["run", str(tiny_dataset), "--model", "svm", "--feature-set", "features", "--image-size", "16",
            "--augment-factor", "2", "--folds", "3", "--json", "--quiet"]
    env = {**os.environ, "LEUKDASH_ARTIFACTS": str(tmp_path / "shared")}
    procs = [subprocess.Popen([sys.executable, "-m", "leukdash", *args], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    computed = sorted(len(o["computed_folds"]) for o in outputs)
    assert computed == [0, 3]  # one computed everything, the other waited and read it
    assert _fold_metrics(outputs[0]) == _fold_metrics(outputs[1])


def test_gradcam_of_a_cnn_run_covers_the_image(tiny_dataset):
    from leukdash.data.decode import decode_image
    from leukdash.evaluation.gradcam import gradcam

    result = run(_config(tiny_dataset, model="cnn", epochs=2), n_jobs=1)
    image = decode_image(next((tiny_dataset / "ALL").glob("*.png")))
    heatmap = gradcam(result["run_id"], image)
    assert heatmap.shape == image.shape[:2]
    assert np.isfinite(heatmap).all() and 0.0 <= heatmap.min() and heatmap.max() <= 1.0
    with pytest.raises(RunError, match="not a CNN run"):
        gradcam(run(_config(tiny_dataset, model="nb"), n_jobs=1)["run_id"], image)
    # Models adapted to a lab's images explain their own answers, not the models' as trained.
    import cv2

    from leukdash.evaluation.gradcam import gradcam_map, gradcam_probe
    from leukdash.evaluation.predict import adapted_models

    adapted = adapted_models(result["run_id"], sorted(tiny_dataset.glob("*/*.png")))
    explained = gradcam(result["run_id"], image, models=adapted)
    predicted = int(adapted.fold_probabilities([image]).mean(axis=0)[0].argmax())
    raw = np.mean([gradcam_map(gradcam_probe(model), adapted.prepare([image]), predicted) for model in adapted.models],
                  axis=0)
    assert explained.shape == image.shape[:2] and not np.allclose(explained, heatmap, atol=1e-3)
    assert np.argmax(cv2.resize(raw, image.shape[1::-1])) == np.argmax(explained)


def test_repeated_gradcams_of_a_loaded_run_build_its_probes_once(tiny_dataset):
    # Keras never frees a model it built: a probe built on every Grad-CAM grew the dashboard's server
    # by about 25 KB a fold model, each click. The probes are built once, kept with the loaded models.
    from leukdash.data.decode import decode_image
    from leukdash.evaluation.gradcam import gradcam, gradcam_map, gradcam_probe
    from leukdash.evaluation.predict import adapted_models, ensemble

    run_id = run(_config(tiny_dataset, model="cnn", epochs=2), n_jobs=1)["run_id"]
    files = sorted(tiny_dataset.glob("*/*.png"))
    image = decode_image(files[0])
    first = gradcam(run_id, image)
    models = ensemble(run_id)
    kept = models.gradcam_probes
    assert kept[0] is models.models and len(kept[1]) == len(models.models)
    for other in files[1:6]:
        gradcam(run_id, decode_image(other))
    assert models.gradcam_probes is kept
    assert np.array_equal(gradcam(run_id, image), first)
    # A kept probe gives the map a probe built afresh gives (the computation of every call before).
    batch = models.prepare([image])
    for probe, model in zip(kept[1], models.models):
        assert np.array_equal(gradcam_map(probe, batch, 1), gradcam_map(gradcam_probe(model), batch, 1))
    # Models adapted to a lab are other models: their copy builds its own probes, the loaded run's stay.
    adapted = adapted_models(run_id, files)
    gradcam(run_id, image, models=adapted)
    assert adapted.gradcam_probes[0] is adapted.models and models.gradcam_probes is kept


def test_gradcam_of_a_picture_not_square_is_its_padded_squares_map_cropped(tiny_dataset):
    # The models see a tall picture padded to a square with its edges repeated: its heatmap is the
    # padded square's, with the padding cropped off, not that map stretched over the picture.
    import cv2

    from leukdash.data.decode import decode_image
    from leukdash.data.preprocess import prepare
    from leukdash.evaluation.gradcam import gradcam

    run_id = run(_config(tiny_dataset, model="cnn", epochs=2), n_jobs=1)["run_id"]
    image = decode_image(next((tiny_dataset / "ALL").glob("*.png")))
    tall = np.concatenate([image, np.random.default_rng(5).integers(150, 230, (32, 32, 3), np.uint8)])
    padded = cv2.copyMakeBorder(tall, 0, 0, 16, 16, cv2.BORDER_REPLICATE)
    assert np.array_equal(prepare([tall], 16), prepare([padded], 16))
    cropped = gradcam(run_id, padded)[:, 16:48]
    assert cropped.max() > 0
    assert np.allclose(gradcam(run_id, tall), cropped / cropped.max(), atol=1e-3)


@pytest.mark.parametrize("failure", [MemoryError(), ImportError("libfoo.so: failed to map segment from shared object"),
                                     OSError(12, "Cannot allocate memory")], ids=["memory", "unmapped", "enomem"])
def test_a_fold_out_of_memory_is_one_error_that_says_so(tiny_dataset, tmp_path, monkeypatch, failure):
    from leukdash.engine import machine, training

    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tmp_path))
    calls = []

    def second_fold_fails(config, inputs, fold, **kwargs):
        calls.append(fold)
        if len(calls) == 2:
            raise failure
        return real(config, inputs, fold, **kwargs)

    real = training.run_fold
    monkeypatch.setattr(training, "run_fold", second_fold_fails)
    monkeypatch.setattr(machine, "address_space_limit_mb", lambda: 1000)
    config = _config(tiny_dataset, model="nb")
    with pytest.raises(RunError) as raised:
        run(config, n_jobs=1)
    message = str(raised.value)
    assert message.startswith(f"out of memory ({type(failure).__name__}") and "finished folds are kept" in message
    assert "at most 1,000 MB of address space here (ulimit -v)" in message, message
    run_dir = RunStore().run_dir(resolve(config).run_id)
    assert [e["message"] for e in read_events(run_dir / "progress.jsonl") if e["event"] == "failed"] == [message]
    monkeypatch.setattr(training, "run_fold", real)
    assert run(config, n_jobs=1)["computed_folds"] == [1, 2]  # the first fold was kept


def test_any_other_error_of_a_fold_passes_unchanged():
    from leukdash.engine.machine import out_of_memory

    assert out_of_memory(ImportError("No module named 'foo'")) is None
    assert out_of_memory(OSError(2, "No such file or directory")) is None
    assert out_of_memory(ValueError("failed to map segment")) is None  # the words alone are not the error


def test_the_cli_says_memory_ran_out_outside_the_folds_in_one_line(monkeypatch, capsys):
    from leukdash.cli import commands, main

    def loading_fails(args):
        raise MemoryError()

    monkeypatch.setattr(commands, "datasets", loading_fails)
    assert main(["datasets"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: out of memory (MemoryError: no detail)"), err


def test_files_left_out_are_said_of_the_folder_given_even_when_its_images_were_run_elsewhere(tiny_dataset, tmp_path):
    """Folders holding the same images share a fingerprint, so an array cache and a run; what a run
    says was left out, and the dataset's name, are the folder's given now."""
    import shutil

    base = tmp_path / "base"
    for name in ("ALL", "HEALTHY"):
        shutil.copytree(tiny_dataset / name, base / name)
    (base / "ALL" / "broken.png").write_bytes(b"not an image")  # one file of the images that never decodes
    mac, heic = tmp_path / "mac", tmp_path / "heic"
    shutil.copytree(base, mac)
    (mac / "ALL" / "Thumbs.db").write_bytes(b"x")
    shutil.copytree(base, heic)
    (heic / "ALL" / "IMG_1.HEIC").write_bytes(b"x")

    def left_out(folder, model):
        result = run(RunConfig(dataset=str(folder), model=model, folds=2, image_size=16), n_jobs=1)
        assert result["dataset"]["name"] == folder.name
        return [entry["path"] for entry in result["dataset"]["skipped"]], \
            [line for line in result["dataset"]["warnings"] if "left out" in line]

    assert left_out(mac, "nb") == (["ALL/Thumbs.db", "ALL/broken.png"], [
        "2 of 18 file(s) of mac were left out, unreadable or refused (first: 'ALL/Thumbs.db': unsupported file type "
        "'.db'); `python -m leukdash audit` lists them all"])
    said_of_base = (["ALL/broken.png"], [
        "1 of 17 file(s) of base were left out, unreadable or refused (first: 'ALL/broken.png': not an image: the "
        "file's content is not a known image format); `python -m leukdash audit` lists them all"])
    assert left_out(base, "knn") == said_of_base  # computed, from mac's array cache
    assert left_out(base, "nb") == said_of_base  # mac's run, answered from the store
    paths, lines = left_out(heic, "nb")
    assert paths == ["ALL/IMG_1.HEIC", "ALL/broken.png"] and lines[0].startswith("2 of 18 file(s) of heic were left")


def test_a_store_link_repointed_during_a_run_keeps_the_run_in_the_store_it_started_in(tmp_path, monkeypatch):
    from leukdash import paths

    (tmp_path / "blue").mkdir()
    (tmp_path / "green").mkdir()
    (tmp_path / "current").symlink_to("blue")
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tmp_path / "current"))
    assert paths.artifacts_root() == tmp_path / "blue"
    (tmp_path / "current.new").symlink_to("green")
    (tmp_path / "current.new").replace(tmp_path / "current")  # a blue/green deploy: `mv -T current.new current`
    assert paths.artifacts_root() == tmp_path / "blue"


def test_a_fold_record_lost_before_the_run_is_summarised_is_said_in_one_line(tiny_dataset, monkeypatch):
    config = _config(tiny_dataset, model="nb", folds=2, augment_factor=1)
    write_fold = RunStore.write_fold

    def lose_fold_0(store, run_id, fold, result, model=None):
        write_fold(store, run_id, fold, result, model)
        if fold == 1:  # the other fold's record goes, as a store moved under the run would lose it
            store.fold_path(run_id, 0).unlink()

    monkeypatch.setattr(RunStore, "write_fold", lose_fold_0)
    with pytest.raises(RunError, match=r"the saved fold record folds/fold_0\.json is damaged or missing; its fold is "
                                       r"recomputed by `python -m leukdash run --config-file "):
        run(config, n_jobs=1)


def test_a_config_that_is_no_run_config_is_named_before_any_work(tiny_dataset):
    from leukdash.engine.runner import run_many

    with pytest.raises(TypeError, match=r"config: expected a RunConfig, got a dict: make one with RunConfig\(\*\*"):
        run({"dataset": str(tiny_dataset), "model": "nb"})
    with pytest.raises(TypeError, match="config: expected a RunConfig, got a NoneType$"):
        run(None)
    with pytest.raises(TypeError, match="configs takes a list of RunConfigs, got RunConfig"):
        run_many(RunConfig(dataset=str(tiny_dataset), model="nb"))


def test_running_a_stopped_command_again_after_its_images_changed_names_the_partial_run(tiny_dataset, tmp_path,
                                                                                        capsys):
    """"Run the same command again to resume" starts a new run once an image was added meanwhile: the
    command says so, naming the stopped run whose folds it cannot reuse."""
    import shutil

    from leukdash.cli import main

    folder = shutil.copytree(tiny_dataset, tmp_path / "mine")
    command = ["run", str(folder), "--model", "nb", "--image-size", "16", "--folds", "2", "--no-augment", "--n-jobs",
               "1"]
    assert main([*command, "--json", "--quiet"]) == 0
    stopped = json.loads(capsys.readouterr().out)["run_id"]
    RunStore().discard_fold(stopped, 1)  # as a run stopped after its first fold leaves it
    shutil.copy(sorted(folder.glob("ALL/*.png"))[0], folder / "ALL" / "added.png")
    assert main(command) == 0
    told = [line for line in capsys.readouterr().err.splitlines() if stopped in line]
    assert len(told) == 1 and "stopped after 1 of its 2 folds" in told[0] and "cannot be reused" in told[0], told
    assert main(command) == 0  # the new run, answered: nothing more to say
    assert stopped not in capsys.readouterr().err
