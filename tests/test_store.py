"""The run store: atomic writes, checksummed folds, locks and the run list."""

import errno
import json
import os
import subprocess
import sys
import time

import pytest

from leukdash import paths
from leukdash.errors import RunError
from leukdash.engine.store import RunStore, write_json_atomic

RESULT = {"val_acc": 0.8125, "confusion": [[3, 1], [0, 4]], "per_class_recall": {"ALL": 0.75, "HEALTHY": 1.0}}


def _try_lock_in_subprocess(store: RunStore, run_id: str) -> str:
    code = (
        "import sys; from leukdash.engine.store import RunStore; from leukdash.errors import RunError\n"
        "try:\n"
        "    with RunStore(sys.argv[1]).lock(sys.argv[2], timeout=0.2): print('acquired')\n"
        "except RunError: print('busy')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(store.root), run_id],
        cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=30, check=True,
    )
    return out.stdout.strip()


def test_default_root_follows_environment(isolated_artifacts, tmp_path, monkeypatch):
    store = RunStore()
    assert store.root == isolated_artifacts / "runs"
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tmp_path))
    assert store.root == tmp_path / "runs"


def test_write_json_atomic_round_trips_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "x.json"
    write_json_atomic(path, {"a": [1, 2.5, None], "b": "é"})
    write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert os.listdir(path.parent) == ["x.json"]


def test_write_json_atomic_crash_before_replace_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"version": 1})

    def crash(*args):
        raise OSError("killed mid-write")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="mid-write"):
        write_json_atomic(path, {"version": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"version": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_write_json_atomic_unserialisable_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "x.json", {"a": object()})
    assert os.listdir(tmp_path) == []


def test_fold_round_trip_with_checksum():
    store = RunStore()
    store.write_fold("r1", 0, {**RESULT, "pair": (1, 2), 3: "int key"})
    stored = json.loads(store.fold_path("r1", 0).read_text())
    assert len(stored["checksum"]) == 64
    # What comes back is the JSON form: tuples as lists, keys as strings.
    assert store.read_fold("r1", 0) == {**RESULT, "pair": [1, 2], "3": "int key"}


@pytest.mark.parametrize("damage", ["truncate", "alter", "unwrapped"])
def test_damaged_fold_is_moved_aside(damage):
    store = RunStore()
    store.write_fold("r1", 1, RESULT)
    path = store.fold_path("r1", 1)
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "alter":
        path.write_text(text.replace("0.8125", "0.9125"))
    else:
        path.write_text(json.dumps(RESULT))
    assert store.read_fold("r1", 1) is None
    assert not path.exists()
    [aside] = os.listdir(path.parent)
    assert aside.startswith("fold_1.json.damaged-")
    # Recomputed and written again, the fold is back.
    store.write_fold("r1", 1, RESULT)
    assert store.read_fold("r1", 1) == RESULT


def test_completed_folds_skips_missing_and_damaged():
    store = RunStore()
    for fold in (0, 2, 3):
        store.write_fold("r1", fold, {**RESULT, "fold": fold})
    store.fold_path("r1", 3).write_text("{")
    assert store.completed_folds("r1", 5) == [0, 2]
    assert store.completed_folds("missing", 5) == []


def _meta(run_id: str, fold_ids=(0, 1), **extra) -> dict:
    """A run's meta with what its readers use (see record_shapes.is_meta)."""
    return {"run_id": run_id, "config": {"model": "nb", "dataset": "x"}, "fold_ids": list(fold_ids), "versions": {},
            "dataset": {"name": "x", "fingerprint": "f", "path": "/x", "classes": ["ALL", "HEALTHY"]}, **extra}


def test_meta_summary_and_model_path():
    store = RunStore()
    assert store.read_meta("r1") is None and store.read_summary("r1") is None
    before = time.time()
    store.write_meta("r1", _meta("r1"))
    meta = store.read_meta("r1")
    assert meta["config"] == {"model": "nb", "dataset": "x"} and before <= meta["created"] <= time.time()
    store.write_summary("r1", {"val_acc": {"mean": 0.9}})
    assert store.read_summary("r1") == {"val_acc": {"mean": 0.9}}
    path = store.model_path("r1", 2, ".keras")
    # Only a name: a reader asking where a model lives makes no folder (a page's warm-up thread
    # made runs/<id>/models/ appear in a store it never ran in).
    assert path == store.run_dir("r1") / "models" / "fold_2.keras" and not path.parent.exists()
    assert store.model_path("r9", 0, "skops").name == "fold_0.skops" and not store.run_dir("r9").exists()
    assert store.model_path("r1", 2, "skops").name == "fold_2.skops"


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", ".hidden"])
def test_run_id_must_be_a_plain_name(bad):
    with pytest.raises(RunError, match="invalid run id"):
        RunStore().run_dir(bad)


def test_lock_excludes_a_second_process():
    store = RunStore()
    with store.lock("r1"):
        assert store.is_locked("r1")
        assert _try_lock_in_subprocess(store, "r1") == "busy"
    assert not store.is_locked("r1")
    assert _try_lock_in_subprocess(store, "r1") == "acquired"


def test_list_runs_status_and_order():
    store = RunStore()
    store.write_meta("old", _meta("old", created=100.0))
    store.write_fold("old", 0, RESULT)
    store.write_fold("old", 1, RESULT)
    store.write_summary("old", {"val_acc": {"mean": 0.8125}})  # what its two folds say
    store.write_meta("mid", _meta("mid", created=200.0))  # fold 1 never computed
    store.write_fold("mid", 0, RESULT)
    store.write_meta("new", _meta("new", created=300.0))
    (store.root / "nometa").mkdir()
    (store.root / "broken").mkdir()
    (store.root / "broken" / "meta.json").write_text("{not json")
    with store.lock("new"):
        runs = store.list_runs()
    assert [(r["run_id"], r["status"], r["n_folds_done"]) for r in runs] == [
        ("new", "running", 0), ("mid", "partial", 1), ("old", "complete", 2),
    ]
    assert runs[2]["summary"] == {"val_acc": {"mean": 0.8125}} and runs[1]["summary"] is None
    assert runs[0]["meta"]["created"] == 300.0


def test_delete_run_refused_while_locked():
    store = RunStore()
    store.write_meta("r1", {})
    with store.lock("r1"), pytest.raises(RunError, match="another process"):
        store.delete_run("r1")
    store.delete_run("r1")
    assert not store.run_dir("r1").exists()
    assert store.list_runs() == []


def test_store_imports_only_the_standard_library():
    code = (
        "import sys, leukdash.engine.store, leukdash.engine.progress\n"
        "print(sorted(m for m in ('numpy', 'pandas', 'tensorflow', 'filelock') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=paths.REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_run_folder_of_the_users_own_left_unwritable_by_a_umask_is_named_with_the_remedy(monkeypatch):
    """Under ``umask 277`` a run's folder is created without the owner's write, and every later
    run of those settings fails: the line names that folder and the remedy, not a read-only store."""
    import errno
    from pathlib import Path

    from leukdash import atomic

    folder = RunStore().run_dir("knn-0123456789ab")
    folder.mkdir(parents=True)
    folder.chmod(0o500)
    try:
        monkeypatch.setattr(atomic.os, "access", lambda path, mode: Path(path) != folder)  # root may write anywhere
        said = str(atomic.explain(PermissionError(errno.EACCES, "Permission denied", str(folder / ".lock"))))
    finally:
        folder.chmod(0o700)
    assert said == (f"cannot write {folder / '.lock'}: permission denied: {folder} is this user's but not writable "
                    "(dr-x------; a umask such as 277 takes the owner's write away): `chmod u+w` it, then run again")
    # A folder that is not this user's keeps the store's line.
    monkeypatch.setattr(atomic.os, "geteuid", lambda: folder.stat().st_uid + 1)
    assert "the run store is read-only for this user" in str(
        atomic.explain(PermissionError(errno.EACCES, "Permission denied", str(folder / ".lock"))))


def test_a_file_over_the_processs_size_limit_is_one_line_that_names_ulimit():
    """EFBIG (``ulimit -f``) is said the same in the store and elsewhere: a StoreError there."""
    import errno

    from leukdash import atomic
    from leukdash.errors import StoreError

    too_large = OSError(errno.EFBIG, "File too large")
    inside = atomic.explain(too_large, RunStore().run_dir("knn-0123456789ab") / "fold_0.json")
    outside = atomic.explain(too_large, "/elsewhere/README.md")
    assert isinstance(inside, StoreError) and str(inside).endswith(
        "fold_0.json: file too large for this process's limit (ulimit -f): raise the limit, then run again")
    assert str(outside) == ("cannot use /elsewhere/README.md: file too large for this process's limit (ulimit -f): "
                            "raise the limit, then run again")


def test_a_job_folder_and_a_run_loading_its_images_are_not_reported_as_damaged_runs():
    """A sweep job's folder (its job files only) and a run that holds its lock while it loads its images
    are no runs with a damaged meta.json; a run folder with records but no meta.json is one."""
    store = RunStore()
    sweep = store.run_dir("sweep-7b0a5790d172")
    sweep.mkdir(parents=True)
    for name in ("job.json", "job.log", "job_config.json"):
        (sweep / name).write_text("{}")
    lost = store.run_dir("nb-0123456789ab")
    (lost / "folds").mkdir(parents=True)
    with store.lock("knn-0123456789ab"):
        store.progress_path("knn-0123456789ab").write_text('{"event": "loading"}\n')
        assert list(store.unreadable_runs()) == ["nb-0123456789ab"]
    assert store.unreadable_runs()["nb-0123456789ab"].startswith("its meta.json is missing or damaged")


def _as_plain_user(*args: str, cwd=paths.REPO_ROOT) -> subprocess.CompletedProcess:
    """The CLI without root's override of file permissions (as any other user runs it), in ``cwd``
    (entered as root, so it may be a folder this user cannot enter)."""
    caps = "-dac_override,-dac_read_search"
    return subprocess.run(["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", sys.executable, "-m", "leukdash",
                           *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(paths.REPO_ROOT)})


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root's override of file permissions (setpriv)")
@pytest.mark.parametrize("record", ["meta.json", "summary.json"])
def test_a_record_this_user_may_not_read_is_said_as_such_and_every_other_run_is_listed(record):
    import shutil

    shipped = paths.REPO_ROOT / "artifacts" / "runs"
    store = RunStore()
    kept, locked = (next(shipped.glob(f"{model}-*")).name for model in ("nb", "knn"))
    for run_id in (kept, locked):
        shutil.copytree(shipped / run_id, store.run_dir(run_id))
    (store.run_dir(locked) / record).chmod(0)
    listed = _as_plain_user("runs")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [kept]
    why = f"its {record} cannot be read (permission denied): give this user read access to it and to its folder"
    assert listed.stderr == f"note: {locked} is not listed: {why}\n"
    as_json = json.loads(_as_plain_user("runs", "--json").stdout)
    assert (as_json["unreadable"], as_json["unreadable_why"]) == ([locked], {locked: why})
    compared = _as_plain_user("compare", kept, locked)
    assert (compared.returncode, compared.stderr) == (2, f"error: run {locked}: {why}\n")


def test_a_full_temporary_folder_is_named_as_such_with_the_folds_kept(tiny_dataset, tmp_path, monkeypatch):
    """A fold's model goes through the temporary folder: when that is full (not the store), the
    line says TMPDIR, not the path of a file the user never chose."""
    import errno

    from leukdash.config import RunConfig
    from leukdash.engine.runner import run
    from leukdash.errors import LeukdashError
    from leukdash.models import classic

    def no_space(model, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(classic, "save", no_space)
    with pytest.raises(LeukdashError) as raised:
        run(RunConfig(dataset=str(tiny_dataset), model="nb", folds=2, image_size=16, augment_factor=1), n_jobs=1)
    assert str(raised.value) == ("the temporary folder (TMPDIR) is full: free some space there or set TMPDIR to a "
                                 "folder with room, then run again (finished folds are kept)")


def test_a_whole_path_too_long_is_told_from_a_name_too_long():
    """ENAMETOOLONG comes of one name over 255 bytes or of a whole path over PATH_MAX: each is said as it is."""
    import errno

    from leukdash import atomic

    too_long = OSError(errno.ENAMETOOLONG, "File name too long")
    deep = "/" + "/".join(["a" * 240] * 17)
    assert str(atomic.explain(too_long, deep)).endswith(
        ": the whole path is longer than the system allows (4,096 bytes, PATH_MAX): set a shorter "
        "LEUKDASH_ARTIFACTS, or use a folder with a shorter path")
    assert str(atomic.explain(too_long, "/store/" + "a" * 256)).endswith(
        ": a name in this path is longer than the file system allows (usually 255 characters)")


def test_a_quoted_tilde_in_the_store_path_means_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", "~/leukstore")  # as `LEUKDASH_ARTIFACTS='~/leukstore'` gives it
    monkeypatch.chdir(tmp_path)
    assert paths.artifacts_root() == tmp_path / "home" / "leukstore"


def test_a_store_path_that_is_a_symbolic_link_loop_is_one_line(tmp_path):
    """LEUKDASH_ARTIFACTS through a link loop: one line from the first command that uses the store (`run`
    ended in a RuntimeError traceback from the uploads folder's resolve; `runs` listed nothing)."""
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    for command in (["runs"], ["run", "synthetic", "--model", "nb"]):
        said = subprocess.run([sys.executable, "-m", "leukdash", *command], capture_output=True, text=True,
                              cwd=paths.REPO_ROOT, env={**os.environ, "LEUKDASH_ARTIFACTS": str(tmp_path / "loop_a")})
        assert (said.returncode, said.stdout) == (2, ""), said.stderr
        assert said.stderr == f"error: LEUKDASH_ARTIFACTS {tmp_path / 'loop_a'} is a symbolic link loop: point it " \
                              "at a folder\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root's override of file permissions (setpriv)")
@pytest.mark.parametrize("record", ["folds/fold_0.json", "models/fold_0.*"])
def test_a_fold_record_or_model_this_user_may_not_read_moves_nothing_and_is_said_as_such(record, tiny_dataset):
    """Another user who may not read a run's fold record or model file is told so by `runs`, `compare` and
    `predict` alike, and nothing is moved aside: the owner's run stays whole."""
    import shutil

    shipped = paths.REPO_ROOT / "artifacts" / "runs"
    store = RunStore()
    kept, locked = (next(shipped.glob(f"{model}-*")).name for model in ("nb", "knn"))
    for run_id in (kept, locked):
        shutil.copytree(shipped / run_id, store.run_dir(run_id))
    unreadable = next(store.run_dir(locked).glob(record))
    unreadable.chmod(0)
    why = (f"its {unreadable.parent.name}/{unreadable.name} cannot be read (permission denied): give this user "
           "read access to it and to its folder")
    listed = _as_plain_user("runs")
    assert (listed.returncode, listed.stderr) == (0, f"note: {locked} is not listed: {why}\n")
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [kept]
    for command in (["compare", locked], ["predict", locked, str(next(tiny_dataset.glob("ALL/*.png")))]):
        said = _as_plain_user(*command)
        assert (said.returncode, said.stderr) == (2, f"error: run {locked}: {why}\n"), command
    assert not list(store.root.rglob("*.damaged-*"))
    unreadable.chmod(0o600)
    assert [entry["status"] for entry in store.list_runs()] == ["complete", "complete"]


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root's override of file permissions (setpriv)")
def test_a_run_folder_another_user_keeps_private_blocks_no_new_run_of_its_model(tiny_dataset):
    """A shared store holding another user's run folder (umask 077): a new run of the same model is
    computed (it was refused, naming that run's .lock as a store this user may not write)."""
    import shutil

    store = RunStore()
    private = next((paths.REPO_ROOT / "artifacts" / "runs").glob("nb-*")).name
    shutil.copytree(paths.REPO_ROOT / "artifacts" / "runs" / private, store.run_dir(private))
    store.run_dir(private).chmod(0)  # as another user's folder is to this one: setpriv drops root's override
    done = _as_plain_user("run", str(tiny_dataset), "--model", "nb", "--image-size", "16", "--no-augment",
                          "--folds", "2", "--n-jobs", "1", "--json")
    assert done.returncode == 0, done.stderr
    new_run = json.loads(done.stdout)["run_id"]
    assert new_run != private and store.read_meta(new_run) is not None


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root's override of file permissions (setpriv)")
@pytest.mark.parametrize("runs_folder", ["a file", "unreadable"])
def test_a_runs_folder_that_cannot_be_read_is_said_by_runs_and_run_not_blamed_on_a_run(runs_folder, tiny_dataset):
    """`runs` listed nothing (a file) or called the store read-only; a new run blamed the meta.json of
    itself, a run not yet computed."""
    root = RunStore().root
    if runs_folder == "a file":
        root.parent.mkdir(parents=True, exist_ok=True)
        root.write_text("")
        why = (f"a file stands where the run store's runs folder should be ({root}): move it away, or set "
               "LEUKDASH_ARTIFACTS to another folder")
    else:
        root.mkdir(parents=True, mode=0)
        why = (f"the run store's runs folder {root} cannot be read (permission denied): give this user read access "
               "to it, or set LEUKDASH_ARTIFACTS to another folder")
    for command in (["runs"], ["run", str(tiny_dataset), "--model", "nb", "--image-size", "16", "--no-augment",
                               "--folds", "2", "--quiet"]):
        said = _as_plain_user(*command)
        assert (said.returncode, said.stdout, said.stderr.splitlines()[-1:]) == (2, "", [f"error: {why}"]), command


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root's override of file permissions (setpriv)")
def test_a_damaged_meta_that_cannot_be_moved_aside_is_not_said_to_be_kept_beside_it():
    """A damaged meta.json this user cannot move (its folder not writable to it, as under `chattr +i`):
    `runs` said it was kept beside it as meta.json.damaged-*, which was not so."""
    import shutil

    store = RunStore()
    damaged = next((paths.REPO_ROOT / "artifacts" / "runs").glob("nb-*")).name
    shutil.copytree(paths.REPO_ROOT / "artifacts" / "runs" / damaged, store.run_dir(damaged))
    (store.run_dir(damaged) / "meta.json").write_text("{not json")
    store.run_dir(damaged).chmod(0o555)
    listed = _as_plain_user("runs")
    assert listed.stderr == (f"note: {damaged} is not listed: its meta.json is damaged and could not be moved aside "
                             "(the file or its folder cannot be changed by this user: immutable, or not writable): "
                             "move it away, then launching its settings again computes the run anew\n")
    assert (store.run_dir(damaged) / "meta.json").read_text() == "{not json"


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES])
def test_an_optional_write_is_skipped_silently_only_on_a_read_only_store(isolated_artifacts, number):
    """A cache or stored result the store could not keep for a full disk, a quota or a file size limit
    was skipped as on a read-only store, without a word: the file was then missing where the README
    promises it. Only a read-only store skips it silently now; any other reason warns, in one line."""
    import warnings

    from leukdash.atomic import unkept_lines, write_atomic, write_bytes_atomic
    from leukdash.errors import StoreWarning

    target = isolated_artifacts / "runs" / "r" / "found-at.json"

    def refused(tmp):
        raise OSError(number, os.strerror(number), str(tmp))

    with warnings.catch_warnings(record=True) as said, unkept_lines() as collected:
        warnings.simplefilter("always")
        assert write_atomic(target, refused, optional=True) is False
    assert not target.exists() and write_bytes_atomic(target, b"[]", optional=True)
    lines = [str(warning.message) for warning in said if warning.category is StoreWarning]
    assert collected == lines  # what the dashboard shows (it cannot catch warnings: its sessions are threads)
    if number in (errno.EROFS, errno.EACCES):
        assert lines == []
    else:
        assert len(lines) == 1 and lines[0].startswith(f"not stored: cannot write {target}: ") and "\n" not in lines[0]


def test_a_store_whose_cache_is_deleted_answers_the_same_and_rebuilds_it(tiny_dataset, isolated_artifacts):
    """What the README says of reclaiming space: cache/ may be deleted, runs/<run_id>/ holds all of a run."""
    import shutil

    from leukdash.config import RunConfig
    from leukdash.engine.runner import run
    from leukdash.evaluation.compare import compare_runs
    from leukdash.evaluation.predict import predict_files

    config = RunConfig(dataset=str(tiny_dataset), model="svm", feature_set="features", image_size=16, folds=2,
                       augment_factor=1)
    runs = [run(config, n_jobs=1), run(config.with_changes(model="nb"), n_jobs=1)]
    ids = [result["run_id"] for result in runs]
    image = next((tiny_dataset / "CLL").glob("*.png"))
    predicted, compared = predict_files(ids[0], [image]), compare_runs(ids)
    cache = isolated_artifacts / "cache"
    assert {folder.name for folder in cache.iterdir()} == {"arrays", "features"}
    shutil.rmtree(cache)
    again = [run(config, n_jobs=1), run(config.with_changes(model="nb"), n_jobs=1)]
    assert [result["cached"] for result in again] == [True, True]
    assert [result["folds"] for result in again] == [result["folds"] for result in runs]
    assert predict_files(ids[0], [image]) == predicted and compare_runs(ids) == compared
    run(config.with_changes(seed=7), n_jobs=1)  # a new run rebuilds what it needs
    assert {folder.name for folder in cache.iterdir()} == {"arrays", "features"}
