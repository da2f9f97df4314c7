"""Options and environments at their edges: an empty --classes, a holdout the data cannot give, a
deleted current folder, file names an ASCII locale cannot read, an array larger than the machine,
a sweep grid that repeats runs, and the same image in two datasets of a combined run."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager

import numpy as np
import pytest

from leukdash.cli import main
from leukdash.data.discovery import open_dataset
from leukdash.errors import DatasetError
from test_hostile import REPO, _dataset, _run_args
from test_store import _as_plain_user


def _cli(*args, cwd=REPO, env=None):
    done = subprocess.run([sys.executable, "-m", "leukdash", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=300)
    return done.returncode, done.stdout, done.stderr


def test_an_empty_classes_option_is_refused_not_read_as_every_class(tmp_path, capsys):
    assert main(_run_args(_dataset(tmp_path), "--classes", "")) == 2
    assert capsys.readouterr().err.strip() == ("error: --classes is empty (an unset shell variable?): give class names, "
                                               "e.g. ALL,HEALTHY, or leave the option out for every class")


def test_a_holdout_the_data_cannot_give_says_how_many_images_it_needs(tmp_path, capsys):
    assert main(_run_args(_dataset(tmp_path), "--test-fraction", "0.05")) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "note: --folds 3 has no effect with --test-fraction 0.05: same run and run id as without it",
        "error: class 'ALL' of ds has 6 image(s): a 5% holdout needs at least 20 per class, one for the test part"]


def test_commands_work_from_a_deleted_current_folder(tmp_path):
    dataset = _dataset(tmp_path)
    gone = tmp_path / "gone"
    gone.mkdir()
    # The shell enters the folder, which is then deleted under it, as another terminal might.
    script = f"cd {gone} && rmdir {gone} && exec {sys.executable} -m leukdash datasets --json"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "LEUKDASH_DATA": str(dataset.parent)})
    assert done.returncode == 0, done.stderr
    assert "ds" in [entry["name"] for entry in json.loads(done.stdout)["datasets"]]


@pytest.mark.parametrize("command, store", [("runs", "store"), ("audit ../ds", None)])
def test_a_relative_path_from_a_deleted_current_folder_is_said_in_one_line(tmp_path, command, store):
    _dataset(tmp_path)
    gone = tmp_path / "gone"
    gone.mkdir()
    script = f"cd {gone} && rmdir {gone} && exec {sys.executable} -m leukdash {command}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "LEUKDASH_ARTIFACTS": store or str(tmp_path / "store")}
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert (done.returncode, done.stderr) == (2, f"error: the current folder was deleted, so {store or '../ds'} "
                                                 "(relative to it) cannot be found: cd to an existing folder, or give "
                                                 "an absolute path\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root's override of file permissions (setpriv)")
def test_a_current_folder_this_user_cannot_enter_blocks_no_dataset_given_elsewhere(tmp_path, monkeypatch):
    dataset = _dataset(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0)
    monkeypatch.setenv("LEUKDASH_DATA", str(dataset.parent))
    listed = _as_plain_user("datasets", "--json", cwd=locked)
    assert listed.returncode == 0, listed.stderr
    assert "ds" in [entry["name"] for entry in json.loads(listed.stdout)["datasets"]]
    assert listed.stderr == (f"note: the data folder {locked}/data cannot be read (permission denied): "
                             "nothing found there\n")
    audited = _as_plain_user("audit", str(dataset), cwd=locked)
    assert audited.returncode == 0, audited.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root's override of file permissions (setpriv)")
def test_folders_and_files_this_user_cannot_read_are_named_not_dropped_in_silence(tmp_path):
    """A colleague's umask 077: a class folder, a subject's folder, a file, the top folder. Each is
    named with its reason by audit, evaluate and predict; a class folder is said unreadable, not missing."""
    from leukdash.engine.store import RunStore

    assert main(_run_args(_dataset(tmp_path / "train"))) == 0
    run_id = RunStore().list_runs()[0]["run_id"]
    external = _dataset(tmp_path, first=6)
    (external / "HEALTHY" / "patient1").mkdir()
    for image in sorted((external / "HEALTHY").glob("*.png"))[:2]:
        image.rename(external / "HEALTHY" / "patient1" / image.name)
    shutil.copytree(external / "ALL", external / "AML")
    for locked in (external / "AML", external / "HEALTHY" / "patient1", external / "ALL" / "all6.png"):
        locked.chmod(0)
    unlisted = "folder cannot be read (permission denied): give this user read access to it"
    audited = _as_plain_user("audit", str(external), "--json")
    assert audited.returncode == 0, audited.stderr
    assert json.loads(audited.stdout)["skipped"] == [
        {"path": "AML", "reason": unlisted}, {"path": "ALL/all6.png", "reason": "cannot read file: Permission denied"},
        {"path": "HEALTHY/patient1", "reason": unlisted}]
    evaluated = _as_plain_user("evaluate", run_id, str(external), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["dataset"]["skipped"][-1] == {"path": "HEALTHY/patient1", "reason": unlisted}
    # Every image of a class in subject folders this user cannot list: the class is there, not absent.
    for image in sorted((external / "HEALTHY").glob("*.png")):
        image.chmod(0o644)
        image.rename(external / "HEALTHY" / "patient1" / image.name)
    evaluated = _as_plain_user("evaluate", run_id, str(external))
    assert (evaluated.returncode, evaluated.stderr) == (
        2, f"error: dataset 'ds': folder of class 'HEALTHY' {external}/HEALTHY/patient1: {unlisted}\n")
    (external / "HEALTHY").chmod(0)
    evaluated = _as_plain_user("evaluate", run_id, str(external))
    assert (evaluated.returncode, evaluated.stderr) == (2, f"error: dataset 'ds': class folder {external}/HEALTHY: "
                                                           f"{unlisted}\n")
    predicted = _as_plain_user("predict", run_id, str(external / "HEALTHY"))
    assert predicted.stdout == f"{external}/HEALTHY: cannot read: {unlisted}\n"


def test_n_jobs_is_capped_to_the_cores_this_process_may_use(monkeypatch, capsys):
    from leukdash.cli.run_options import n_jobs_option

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # as under `taskset -c 0`
    assert n_jobs_option(2) == 1
    assert capsys.readouterr().err == "note: --n-jobs 2 capped to 1, the number of cores this process may use\n"


def test_a_name_an_ascii_locale_cannot_read_gets_advice_that_works(tmp_path):
    dataset = _dataset(tmp_path)
    shutil.move(dataset / "HEALTHY", dataset / "ЗДОРОВЫЙ")
    ascii_locale = {"PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "LC_ALL": "C", "LANG": "C"}
    code, out, _ = _cli("audit", str(dataset), "--json", env=ascii_locale)
    skipped = json.loads(out)["skipped"]
    assert code == 0 and [entry["reason"] for entry in skipped] == [
        "class name cannot be read in this locale (file names read as ascii): run with a UTF-8 locale, e.g. "
        "LC_ALL=C.UTF-8 or PYTHONUTF8=1"]
    code, out, _ = _cli("audit", str(dataset), "--json", env={**ascii_locale, "PYTHONUTF8": "1"})
    assert code == 0 and json.loads(out)["skipped"] == [] and "ЗДОРОВЫЙ" in json.loads(out)["classes"]


def test_class_folders_an_ascii_locale_cannot_read_all_of_them_say_why_no_images_were_found(tmp_path):
    dataset = _dataset(tmp_path)
    shutil.move(dataset / "ALL", dataset / "ALLé中文🧪")
    shutil.move(dataset / "HEALTHY", dataset / "HEALTHY_שלום")
    ascii_locale = {"PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "LC_ALL": "C", "LANG": "C"}
    code, _, err = _cli("audit", str(dataset), env=ascii_locale)
    assert code == 2 and err.strip().endswith(
        "ImNNN_L.ext; ALL\\xe9\\u4e2d\\u6587\\U0001f9ea/, HEALTHY_\\u05e9\\u05dc\\u05d5\\u05dd/ refused: "
        "class name cannot be read in this locale (file names read as ascii): run with a UTF-8 locale, "
        "e.g. LC_ALL=C.UTF-8 or PYTHONUTF8=1"), err


def test_memory_for_one_array_beyond_the_machine_says_to_shrink_the_run_not_raise_a_limit():
    from leukdash.engine.machine import machine_memory_mb, out_of_memory

    try:
        np.empty(4 * machine_memory_mb() * 2**20, dtype=np.uint8)  # four times the machine: numpy refuses at once
    except MemoryError as error:
        message = str(out_of_memory(error))
    else:
        pytest.skip("this machine overcommits memory without limit")
    assert f"one array alone needed {4 * machine_memory_mb():,} MB, more than half of this machine's" in message
    assert message.endswith("give a smaller --image-size or --augment-factor")


def test_a_sweep_grid_that_repeats_runs_says_how_many_distinct_runs_it_is(tmp_path, capsys):
    dataset = _dataset(tmp_path)
    assert main(["sweep", str(dataset), "--model", "nb", "--k", "1,3", "--image-size", "16", "--no-augment",
                 "--folds", "3", "--n-jobs", "1", "--quiet"]) == 0
    assert capsys.readouterr().err.strip().splitlines() == [
        "note: --k 1, --k 3 have no effect in the grid's runs with --model nb: same run and run id as without them",
        "note: the grid's 2 settings are 1 distinct run(s): some repeat a run of it (a value given twice, or a "
        "setting the model does not use, such as --k for nb)"]


def test_augmentation_settings_without_augmented_copies_are_named_in_one_note(tmp_path, capsys):
    """Jitters with --augment-factor 1, or the paper protocol without transforms, change nothing: the
    run (and its id) is the plain one, as before, and one note says which settings did nothing and why."""
    dataset = _dataset(tmp_path)
    quick = ["--model", "nb", "--image-size", "16", "--folds", "3", "--n-jobs", "1", "--quiet", "--json"]
    assert main(["run", str(dataset), *quick, "--augment-factor", "1"]) == 0
    plain = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["run", str(dataset), *quick, "--augment-factor", "1", "--stain-jitter", "0.3", "--blur", "2"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["run_id"] == plain
    assert err.strip() == ("note: --stain-jitter 0.3, --blur 2 have no effect with --augment-factor 1 (no augmented "
                           "copies): same run and run id as without them")
    assert main(["run", str(dataset), *quick, "--no-augment", "--protocol", "paper"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["run_id"] == plain
    assert err.strip() == ("note: --protocol paper has no effect with --no-augment (no augmented copies): same run "
                           "and run id as without it")
    assert main(["sweep", str(dataset), *quick, "--augment-factor", "1,2", "--colour-jitter", "0.1"]) == 0
    assert capsys.readouterr().err.strip() == (
        "note: --colour-jitter 0.1 has no effect in the grid's runs with --augment-factor 1 (no augmented copies): "
        "same run and run id as without it")
    assert main(["run", str(dataset), *quick, "--augment-factor", "2", "--colour-jitter", "0.1"]) == 0
    assert not capsys.readouterr().err  # with copies it acts: nothing to say


def test_typed_settings_the_model_or_the_split_does_not_read_are_named_in_one_note(tmp_path, capsys):
    """The CNN's settings and --k given to naive Bayes, --folds beside --test-fraction: named, as the run is the
    one without them; the defaults of the settings not typed are not."""
    dataset = _dataset(tmp_path)
    quick = ["--model", "nb", "--image-size", "16", "--augment-factor", "1", "--n-jobs", "1", "--quiet", "--json"]
    assert main(["run", str(dataset), *quick, "--test-fraction", "0.5"]) == 0
    plain = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["run", str(dataset), *quick, "--test-fraction", "0.5", "--folds", "7", "--learning-rate", "0.1",
                 "--epochs", "3", "--optimizer", "adam", "--k", "5"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["run_id"] == plain
    assert err.strip() == ("note: --optimizer adam, --learning-rate 0.1, --epochs 3, --k 5, --folds 7 have no effect "
                           "with --model nb or --test-fraction 0.5: same run and run id as without them")
    assert main(["run", str(dataset), *quick, "--model", "knn", "--k", "1", "--folds", "2"]) == 0
    assert not capsys.readouterr().err  # k-NN reads --k, k folds read --folds: nothing to say


@pytest.mark.parametrize("options, refusal", [
    (["--protocol", "lodo", "--test-fraction", "0.2"],
     "protocol lodo holds out each dataset in turn: test_fraction does not apply"),
    (["--model", "foo", "--epochs", "3"], "model must be one of"),
    (["--model", "nb", "--learning-rate", "1e-46"], "learning_rate 1e-46 is below"),
])
def test_settings_the_run_refuses_are_refused_in_one_line_not_noted_as_without_effect(tmp_path, capsys, options,
                                                                                       refusal):
    """The note on settings without effect reads the run id's fields: a config it reads before validation crashed
    (lodo and a holdout: KeyError 'folds') or noted settings the next line refused."""
    datasets = f"{_dataset(tmp_path)},{tmp_path / 'other'}"
    assert main(["run", datasets, "--quiet", *options]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {refusal}"), line


def test_a_run_named_twice_in_a_comparison_or_a_ranking_counts_once(tmp_path):
    from leukdash.engine.runner import run
    from leukdash.evaluation.compare import compare_runs
    from leukdash.evaluation.transfer import rank_runs
    from test_hostile import _nb_config

    dataset = _dataset(tmp_path)
    nb, dt = (run(_nb_config(dataset, model=model), n_jobs=1)["run_id"] for model in ("nb", "dt"))
    compared = compare_runs([nb, nb, dt])
    assert [r["run_id"] for r in compared["runs"]] == [nb, dt]
    assert [(t["run_a"], t["run_b"]) for t in compared["mcnemar"]] == [(nb, dt)]
    assert sorted(row["run_id"] for row in rank_runs([dt, nb, dt], "cv")) == sorted([nb, dt])


def test_the_same_image_in_two_datasets_of_a_combined_run_is_left_out_of_the_second(tmp_path):
    first = _dataset(tmp_path / "a").rename(tmp_path / "lab_a")
    second = _dataset(tmp_path / "b", first=50).rename(tmp_path / "lab_b")
    for name in ("ALL/all0.png", "HEALTHY/healthy1.png"):  # two of lab_a's images, copied into lab_b
        shutil.copy(first / name, second / name.replace(".png", "_copy.png"))
    combined = open_dataset(f"{first},{second}")
    assert len(combined.items) == 24 and len(combined.sources[1].items) == 12  # its 12 own images
    assert combined.warnings() == [
        "2 image(s) of lab_b have the same bytes as images of lab_a and are left out, so that no run validates on "
        "an image it trained on (first: 'ALL/all0_copy.png')"]
    plain = open_dataset(f"{first},{_dataset(tmp_path / 'c', first=50).rename(tmp_path / 'lab_c')}")
    assert plain.warnings() == [] and len(plain.items) == 24
    # Leaving one dataset out, lab_b's copies would be validated on by a model trained on lab_a.
    code, out, err = _cli(*_run_args(f"{first},{second}", "--protocol", "lodo", "--json"))
    assert code == 0 and json.loads(out)["dataset"]["n_images"] == 24
    assert "2 image(s) of lab_b have the same bytes as images of lab_a" in err
    shutil.rmtree(second)
    shutil.copytree(first, second)
    with pytest.raises(DatasetError, match="every image of 'lab_b' has the same bytes as an image of 'lab_a'"):
        open_dataset(f"{first},{second}")


@contextmanager
def _tcp_server(reply: bytes):
    """A local TCP server that is no Dask scheduler: it accepts, sends ``reply`` and keeps the line open."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:  # closed
                return
            connection.sendall(reply)
            held.append(connection)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for connection in held:
            connection.close()


def test_a_scheduler_address_where_something_else_listens_is_one_line_not_a_hang(tmp_path, capsys):
    from leukdash.engine.scheduler.cluster import check_scheduler
    from leukdash.errors import RunError

    with _tcp_server(b"") as silent:  # accepts and says nothing: Client waited for ever
        with pytest.raises(RunError, match=f"^no Dask scheduler answered at {silent} within 2 s"):
            check_scheduler(silent, 2)
    with _tcp_server(b"SSH-2.0-OpenSSH_9.2p1\r\n" * 4) as banner:  # read as a frame length: exabytes asked for
        assert main(_run_args(_dataset(tmp_path), "--scheduler", banner)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {banner} does not answer as a Dask scheduler ("), err
    assert "out of memory" not in err


def test_empty_values_from_unset_shell_variables_are_refused_not_read_as_a_default(tmp_path, capsys):
    from leukdash.engine.ensemble import create_ensemble
    from leukdash.engine.runner import run
    from test_hostile import _nb_config
    from leukdash.errors import RunError

    for argv, line in (
            (["sweep", "--resume", "", "--quiet"], "--resume is empty (an unset shell variable?)"),
            (["sweep", "--resume", "sweep-0123", "--seed", "5"], "--resume launches the stored sweep's grid; --seed "
                                                                  "would be ignored"),
            (["predict", "some-run", ""], "argument images: an image path is empty (an unset shell variable?)"),
            (["ensemble", "a", "b", "--weights", ""], "--weights is empty (an unset shell variable?)"),
            (["report", "--out", ""], "argument --out: the report folder is empty (an unset shell variable?)"),
            (["external-report", "--no-compute", "--out", ""], "argument --out: the report folder is empty"),
            (["report", "--out", str(tmp_path / "none")], f"no report data at {tmp_path / 'none' / 'report.json'}: "
                                                           f"`python -m leukdash reproduce --out {tmp_path / 'none'}`"),
            (["sweep", "--model", "nb", "--max-runs", "-1"], "--max-runs must be at least 1, got -1"),
            (["run", "--classes", "ALL,ALL,HEALTHY"], "classes names ALL more than once: ['ALL', 'ALL', 'HEALTHY']"),
            (["compare", "--", "-x"], "invalid run id '-x': a run id starts with a letter or digit")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and line in err, err
    dataset = _dataset(tmp_path)
    members = [run(_nb_config(dataset, model=model), n_jobs=1)["run_id"] for model in ("nb", "dt")]
    for weights in ([-0.0, 1.0], [0.0, 1.0]):  # a zero weight of either sign is refused alike: it would not vote
        with pytest.raises(RunError, match=r"a member of weight 0 would not vote: leave it out"):
            create_ensemble(members, weights)


def test_a_data_root_that_is_not_a_folder_is_named_when_a_dataset_is_not_found(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LEUKDASH_DATA", str(tmp_path / "a-file"))
    (tmp_path / "a-file").write_text("not a folder")
    assert main(["run", "noise", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"LEUKDASH_DATA names '{tmp_path / 'a-file'}', which is not a folder")
    assert main(["datasets"]) == 0
    assert capsys.readouterr().err.strip() == (f"note: LEUKDASH_DATA names {tmp_path / 'a-file'}, which is not a "
                                               "folder: nothing found there")


@pytest.mark.parametrize("store", ["/proc/self", "/proc/self/leukdash-store"])
def test_a_store_its_file_system_will_not_hold_is_one_line(tmp_path, monkeypatch, capsys, store):
    """/proc exists and answers "no such file" to every mkdir: said as the store's problem, once."""
    import errno

    from leukdash.atomic import explain

    monkeypatch.setenv("LEUKDASH_ARTIFACTS", store)
    assert main(_run_args(_dataset(tmp_path), "--quiet")) == 2
    err = capsys.readouterr().err
    # The store's links are resolved once per process: /proc/self is this process's folder.
    assert err.count("\n") == 1 and err.startswith(f"error: cannot create /proc/{os.getpid()}/") and err.endswith(
        ": its file system does not allow it (set LEUKDASH_ARTIFACTS to a writable folder)\n"), err
    # A run folder deleted under a writer is another error: it passes unexplained.
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tmp_path / "store"))
    (tmp_path / "store" / "runs").mkdir(parents=True)
    gone = OSError(errno.ENOENT, "No such file or directory", str(tmp_path / "store" / "runs" / "gone" / "meta.json"))
    assert explain(gone) is None


def test_a_dataset_folder_hidden_by_one_of_the_same_name_is_named(tmp_path, monkeypatch, capsys):
    """Two data roots with a folder of one name, and a folder named like the built-in set: the
    first is used, as documented, and the listing says which folders are not."""
    first, second = tmp_path / "first", tmp_path / "second"
    for root, name in ((first, "ds"), (second, "ds"), (second, "synthetic")):
        shutil.copytree(_dataset(tmp_path / "made" / root.name / name), root / name)
    monkeypatch.setenv("LEUKDASH_DATA", f"{first}{os.pathsep}{second}")
    builtin = _dataset(tmp_path / "builtin")  # stands in for the built-in set, which takes seconds to draw
    monkeypatch.setattr("leukdash.data.synthetic.ensure_synthetic", lambda: builtin)
    monkeypatch.setattr("leukdash.data.synthetic.cached_synthetic_path", lambda: builtin)
    assert main(["datasets", "--json"]) == 0
    captured = capsys.readouterr()
    listed = {entry["name"]: entry for entry in json.loads(captured.out)["datasets"]}
    assert listed["ds"]["path"] == str(first / "ds") and listed["ds"]["hidden"] == [str(second / "ds")]
    assert listed["synthetic"]["path"] == str(builtin) and listed["synthetic"]["hidden"] == [str(second / "synthetic")]
    assert captured.err.splitlines() == [
        f"note: {second / 'synthetic'} is not used: 'synthetic' names {builtin} (the first of equal names wins; "
        "give a path to use the other)",
        f"note: {second / 'ds'} is not used: 'ds' names {first / 'ds'} (the first of equal names wins; give a path "
        "to use the other)"]


def test_a_data_root_named_twice_hides_nothing(tmp_path, monkeypatch, capsys):
    """``./data`` also named in ``LEUKDASH_DATA`` (by another spelling): its datasets are listed
    once, with no note that each is hidden by itself."""
    shutil.copytree(_dataset(tmp_path / "made" / "ds"), tmp_path / "data" / "ds")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEUKDASH_DATA", f"{tmp_path / 'data'}{os.pathsep}./data/")
    assert main(["datasets", "--json"]) == 0
    captured = capsys.readouterr()
    listed = {entry["name"]: entry for entry in json.loads(captured.out)["datasets"]}
    assert listed["ds"]["path"] == str(tmp_path / "data" / "ds") and listed["ds"]["hidden"] == []
    assert "is not used" not in captured.err


def test_an_option_value_that_starts_with_a_dash_gets_the_form_that_works(capsys):
    for argv, option in ((["ensemble", "a", "b", "--weights", "-1,2"], "--weights"),
                         (["sweep", "noise", "--name", "-x"], "--name")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.endswith(
            f"argument {option}: expected one argument (for a value that starts with '-', write {option}=VALUE)\n"), err
    assert main(["ensemble", "a", "b", "--weights=-1,2"]) == 2  # the form it names gets to the weights' own check
    assert "expected one argument" not in capsys.readouterr().err


def test_an_option_given_no_value_at_all_gets_no_hint_of_dashes(capsys):
    for argv in (["run", "--mod"], ["run", "--model"], ["sweep", "noise", "--name"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.endswith("expected one argument\n"), err


def test_an_installed_package_keeps_runs_in_the_users_data_folder_not_in_site_packages(tmp_path, monkeypatch, capsys):
    """`pip install .` puts the package in site-packages, with no repository around it: the store
    went to site-packages/artifacts (read-only for most users, gone with the environment)."""
    from leukdash import paths
    from leukdash.reporting.reproduce import REPOSITORY_REPORT, full_out

    site_packages, checkout = tmp_path / "site-packages", tmp_path / "checkout"
    site_packages.mkdir()
    checkout.mkdir()
    (checkout / "streamlit_app.py").write_text("")
    monkeypatch.delenv("LEUKDASH_ARTIFACTS")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    monkeypatch.setattr(paths, "REPO_ROOT", site_packages)
    assert paths.artifacts_root() == tmp_path / "data-home" / "leukdash"
    assert full_out() == tmp_path / "data-home" / "leukdash" / "report"  # reproduce's report too
    assert main(["report", "--check"]) == 2  # the README's blocks: a clone's, not an installed package's
    assert capsys.readouterr().err == ("error: report renders the README's generated blocks, which only a clone of the "
                                       "repository has: run it there (reproduce writes the report itself anywhere)\n")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.artifacts_root() == tmp_path / "home" / ".local" / "share" / "leukdash"
    monkeypatch.setattr(paths, "REPO_ROOT", checkout)  # a source checkout: its artifacts/, where the demo runs ship
    assert paths.artifacts_root() == checkout / "artifacts" and full_out() == REPOSITORY_REPORT
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tmp_path / "chosen"))
    assert paths.artifacts_root() == tmp_path / "chosen"


def test_too_few_file_descriptors_for_the_workers_is_one_line_and_the_run_resumes(tiny_dataset, tmp_path):
    """``ulimit -n`` of 14: the pool's worker processes cannot get their pipes; the line says which
    limit and what to do, and the same run without it completes."""
    import resource

    command = [sys.executable, "-m", "leukdash", "run", str(tiny_dataset), "--model", "knn", "--image-size", "16",
               "--folds", "3", "--augment-factor", "1", "--n-jobs", "2", "--quiet"]
    env = {**os.environ, "LEUKDASH_ARTIFACTS": str(tmp_path / "store")}
    limited = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (14, 14)))
    assert limited.returncode == 2 and limited.stderr.splitlines() == [
        "error: too many open files: each process may open 14 files here (ulimit -n); raise that limit, or give "
        "--n-jobs 1 (fewer worker processes)"], limited.stderr
    assert subprocess.run(command, env=env, capture_output=True, text=True, timeout=300).returncode == 0


def test_a_low_process_limit_gives_blas_one_thread_before_numpy_starts_its_threads():
    """``ulimit -u`` below LOW_PROCESS_LIMIT: OpenBLAS would start a thread per core, and one it cannot
    start ends the process with SIGINT and a crash; the command line's entry sets one thread first
    (a user's own setting stands). Root is not held to the limit, but reads it as set."""
    import resource

    probe = ("import os, sys; from leukdash.engine.machine import fit_blas_threads_to_process_limit; "
             "fit_blas_threads_to_process_limit(); print(os.environ.get('OPENBLAS_NUM_THREADS'), 'numpy' in sys.modules)")
    env = {key: value for key, value in os.environ.items() if key != "OPENBLAS_NUM_THREADS"}

    def threads(limit: int | None, **extra) -> str:
        low = (lambda: resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))) if limit else None
        return subprocess.run([sys.executable, "-c", probe], cwd=REPO, env={**env, **extra}, capture_output=True,
                              text=True, timeout=60, preexec_fn=low).stdout.strip()

    assert threads(100) == "1 False" and threads(100, OPENBLAS_NUM_THREADS="2") == "2 False"
    assert threads(None) == f"{'1' if resource.getrlimit(resource.RLIMIT_NPROC)[0] < 1024 else 'None'} False"
    assert "fit_blas_threads_to_process_limit()" in (REPO / "leukdash" / "__main__.py").read_text()


def test_an_address_space_limit_too_low_to_start_is_one_line_and_a_listing_still_works(tiny_dataset, tmp_path):
    """``ulimit -v`` below what numpy, OpenCV, SciPy and scikit-learn need to be mapped: a command that
    imports them hung at 100% CPU deaf to SIGTERM (OpenBLAS retrying its buffer), crashed (SIGSEGV) or
    ended in an ImportError's traceback. It says the limit in one line; `runs` needs none of them."""
    import resource

    from leukdash.engine.machine import START_ADDRESS_SPACE_MB

    limit = (START_ADDRESS_SPACE_MB - 400) * 2**20  # where the imports failed, with a traceback or a crash
    env = {**os.environ, "PYTHONPATH": str(REPO), "LEUKDASH_ARTIFACTS": str(tmp_path / "store")}

    def limited(*args):
        return subprocess.run([sys.executable, "-m", "leukdash", *args], env=env, capture_output=True, text=True,
                              timeout=120, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))

    refused = limited("run", str(tiny_dataset), "--model", "nb", "--image-size", "16", "--folds", "2", "--no-augment")
    assert refused.returncode == 2 and refused.stderr.splitlines() == [
        f"error: each process may map at most {limit // 2**20:,} MB of address space here (ulimit -v), below the "
        f"about {START_ADDRESS_SPACE_MB:,} MB this command needs to start (its numerical libraries): raise or "
        "remove that limit"], refused.stderr
    listed = limited("runs")
    assert listed.returncode == 0 and listed.stderr == ""


def test_a_low_address_space_gives_blas_one_thread_before_numpy_starts_its_threads():
    """OpenBLAS maps a buffer per thread as it starts and retries one it cannot map forever: under an
    address-space limit below a CNN's, the command line's entry sets one thread first."""
    import resource

    probe = ("import os; from leukdash.engine.machine import fit_blas_threads_to_process_limit; "
             "fit_blas_threads_to_process_limit(); print(os.environ.get('OPENBLAS_NUM_THREADS'))")
    env = {key: value for key, value in os.environ.items() if key != "OPENBLAS_NUM_THREADS"}
    low = 2000 * 2**20
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (low, low)))
    assert done.stdout.strip() == "1", done.stderr


def test_memory_that_runs_out_while_its_error_is_explained_is_still_one_line(monkeypatch, capsys):
    """Under ulimit -v the handler of a MemoryError read the machine's memory and ran out in turn:
    the command ended in a traceback of its own handler. A library that cannot be mapped (an
    ImportError) raised inside a command is the same one line."""
    from leukdash.cli import commands
    from leukdash.engine import machine

    def unmapped(args):
        raise ImportError("libgfortran-83c28eba.so.5.0.0: failed to map segment from shared object")

    def short(args):
        raise MemoryError()

    def no_memory_to_read_it():
        raise MemoryError()

    monkeypatch.setattr(machine, "machine_memory_mb", no_memory_to_read_it)
    for failure in (short, unmapped):
        monkeypatch.setattr(commands, "runs", failure)
        assert main(["runs"]) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith("error: out of memory (") and "ulimit -v" in line


def test_a_worker_that_cannot_start_its_parent_watch_answers_its_task_with_that_error():
    """A worker process out of threads (``ulimit -u``) as it starts: its first task is answered
    with the error, which the command line says in one line, not as the worker's death."""
    import pickle

    from leukdash.engine.machine import out_of_processes

    child = ("import os, pickle, sys, threading, time\n"
             "def refused(self): raise RuntimeError(\"can't start new thread\")\n"
             "threading.Thread.start = refused\n"
             "from leukdash.engine.scheduler.child import serve\n"
             "serve(os.getppid(), False, time.time())\n")
    done = subprocess.run([sys.executable, "-c", child], cwd=REPO, input=pickle.dumps("task") + pickle.dumps("inputs"),
                          capture_output=True, timeout=120)
    kind, error = pickle.loads(done.stdout)
    assert done.returncode == 0 and kind == "error" and b"Traceback" not in done.stderr, done.stderr
    assert out_of_processes(error).startswith("cannot start another process or thread: this user's process limit")
