"""Hostile environments and layouts (issue 15 §2, §3, §5): patient folders, damaged ``groups.csv``,
a store that cannot be written, a disk that fills, a writer killed mid-write, sweeps' uploads
under quota pressure, control characters in names, commas in paths.

Cases are registered as in :mod:`test_hostile` (its helpers are reused) and printed by
``python -m benchmarks.hostile_table`` with the others.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from leukdash.data.dataset import Dataset
from leukdash.engine.store import RunStore
from test_hostile import (Case, case_registry, _cli, _dataset, _noise, _one_error_line, _png, _run_args,  # noqa: F401
                          run_case)

import pytest

CASES: list[Case] = []
case = case_registry(CASES)


def _fold_of(dataset: Path, folds: int = 3) -> tuple[Dataset, np.ndarray, list]:
    """The fold of each loaded image of ``dataset`` as a 3-fold run plans it, and their groups."""
    from leukdash.config import RunConfig
    from leukdash.data.arrays import load_arrays
    from leukdash.engine.fold_planning import plan_folds

    opened = Dataset.from_folder(dataset)
    config = RunConfig(dataset=str(dataset), model="nb", image_size=16, augment_factor=1, folds=folds)
    arrays = load_arrays(opened, 16)
    fold_of, _ = plan_folds(config, opened, arrays)
    return opened, fold_of, list(arrays.paths)


# --------------------------------------------------------------------------- §2 patients and groups

def _patient_slides(folder: Path, patients: int = 6, slides: int = 2, per_slide: int = 2) -> Path:
    """``CLASS/patient/slide/*.png``: every patient's images lie in several slide folders."""
    root = folder / "ds"
    for label, (name, base) in enumerate((("ALL", 40), ("HEALTHY", 150))):
        for p in range(patients):
            for s in range(slides):
                slide = root / name / f"p{p}" / f"s{s}"
                slide.mkdir(parents=True)
                for i in range(per_slide):
                    seed = label * 1000 + p * 100 + s * 10 + i
                    (slide / f"c{i}.png").write_bytes(_png(_noise(seed, base=base)))
    return root


@case("CLASS/patient/slide/*.png", "group = first folder under the class: no patient in two folds")
def _patient_slide_layout(folder: Path) -> str:
    opened, fold_of, paths = _fold_of(_patient_slides(folder))
    assert {item.group for item in opened.items} == {f"{c}/p{p}" for c in ("ALL", "HEALTHY") for p in range(6)}
    folds_of_patient: dict[str, set] = {}
    for path, fold in zip(paths, fold_of):
        patient = path.relative_to(opened.root).parts[:2]
        folds_of_patient.setdefault(patient, set()).add(int(fold))
    straddling = [p for p, folds in folds_of_patient.items() if len(folds) > 1]
    assert straddling == [] and len(folds_of_patient) == 12
    return f"12 patients (4 images in 2 slides each), {len(straddling)} in two folds"


def _grouped_dataset(folder: Path, write_table) -> Path:
    """The standard dataset with a groups.csv pairing images 0-1, 2-3, 4-5 of each class."""
    dataset = _dataset(folder)
    rows = [(f"{c}/{c.lower()}{i}.png", f"{c}-{i // 2}") for c in ("ALL", "HEALTHY") for i in range(6)]
    write_table(dataset / "groups.csv", rows)
    return dataset


def _csv(rows, *, file_format=lambda name, root: name, bom: bytes = b"", newline: str = "\n",
         delimiter: str = ",") -> callable:
    def write(path: Path, rows=rows) -> None:
        lines = [f"file{delimiter}group"] + [f"{file_format(f, path.parent)}{delimiter}{g}" for f, g in rows]
        path.write_bytes(bom + newline.join(lines).encode() + newline.encode())
    return write


def _groups_written_as(**style):
    def check(folder: Path) -> str:
        plain = _grouped_dataset(folder / "plain", lambda path, rows: _csv(rows)(path))
        styled = _grouped_dataset(folder / "styled", lambda path, rows: _csv(rows, **style)(path))
        expected = {item.path.relative_to(plain).as_posix(): item.group for item in Dataset.from_folder(plain).items}
        opened = Dataset.from_folder(styled)
        found = {item.path.relative_to(styled).as_posix(): item.group for item in opened.items}
        assert found == expected and set(found.values()) == {f"{c}-{i}" for c in ("ALL", "HEALTHY") for i in range(3)}
        assert opened.notes == () and opened.fingerprint == Dataset.from_folder(plain).fingerprint
        return "every row applied: the same groups and fingerprint as a plain groups.csv"
    return check


case("groups.csv with backslashes (ALL\\x.png)", "rows applied as with '/'")(
    _groups_written_as(file_format=lambda name, root: name.replace("/", "\\")))
case("groups.csv with ./ALL/x.png", "rows applied as without './'")(
    _groups_written_as(file_format=lambda name, root: "./" + name))
case("groups.csv from Excel (UTF-8 BOM, CRLF)", "read; rows applied")(
    _groups_written_as(bom=b"\xef\xbb\xbf", newline="\r\n"))
case("groups.csv from Excel in a ';' locale", "read; rows applied")(
    _groups_written_as(bom=b"\xef\xbb\xbf", newline="\r\n", delimiter=";"))
case("groups.csv with tabs between the columns", "read; rows applied")(_groups_written_as(delimiter="\t"))
case("groups.csv with absolute paths inside the dataset", "rows applied as relative ones")(
    _groups_written_as(file_format=lambda name, root: str(root / name)))


def _groups_refused(content: bytes, *fragments: str):
    def check(folder: Path) -> str:
        dataset = _dataset(folder)
        (dataset / "groups.csv").write_bytes(content)
        code, out, err = _cli(*_run_args(dataset))
        line = _one_error_line(err, "groups.csv", *fragments)
        assert code == 2 and out == ""
        assert _cli("audit", str(dataset))[0] == 2
        return line.replace(str(dataset), "DS")
    return check


case("groups.csv with a short row", "exit 2, one line naming the file and line")(
    _groups_refused(b"file,group\nALL/all0.png,a\nALL/all1.png\n", "line 3"))
case("groups.csv not UTF-8", "exit 2, one line naming the file and line")(
    _groups_refused(b"file,group\nALL/all0.png,a\nALL/all1.png,caf\xe9\n", "line 3", "not UTF-8"))
case("groups.csv without its columns", "exit 2, one line naming the columns")(
    _groups_refused(b"name;patient\nALL/all0.png;a\n", "'file' and 'group'"))
case("groups.csv in UTF-16 (Excel's 'Unicode text')", "exit 2, one line: not UTF-8")(
    _groups_refused("file\tgroup\nALL/all0.png\ta\n".encode("utf-16"), "line 1", "not UTF-8"))


@case("groups.csv is a FIFO", "exit 2, one line; never opened (no hang)")
def _groups_fifo(folder: Path) -> str:
    dataset = _dataset(folder)
    os.mkfifo(dataset / "groups.csv")
    code, out, err = _cli(*_run_args(dataset))
    assert code == 2 and out == ""
    return _one_error_line(err, "groups.csv", "FIFO").replace(str(dataset), "DS")


@case("groups.csv: one file given two groups; a group with a newline",
      "noted (the last row counts); the group stored escaped")
def _groups_conflict(folder: Path) -> str:
    dataset = _dataset(folder)
    (dataset / "groups.csv").write_text('file,group\nALL/all0.png,a\nALL/all0.png,b\nALL/all1.png,"p\nq"\n')
    opened = Dataset.from_folder(dataset)
    groups = {item.path.name: item.group for item in opened.items}
    assert groups["all0.png"] == "b" and groups["all1.png"] == "p\\nq"
    [conflict] = [note for note in opened.notes if "second, different group" in note]
    assert "'ALL/all0.png', lines 2 and 3" in conflict
    return conflict


@case("groups.csv: a row names no image, an image has no row", "both reported by run, audit and the dataset's notes")
def _groups_unmatched(folder: Path) -> str:
    dataset = _dataset(folder)
    (dataset / "groups.csv").write_text("file,group\nALL/all0.png,a\nALL/all1.png,a\nALL/typo.png,b\n")
    notes = Dataset.from_folder(dataset).notes
    assert len(notes) == 2 and "1 row(s) name no image" in notes[0] and "'ALL/typo.png'" in notes[0]
    assert "no group for 10 image(s)" in notes[1]
    code, out, err = _cli(*_run_args(dataset, "--json"))
    assert code == 0 and json.loads(out)["dataset"]["warnings"] == list(notes)
    assert err.splitlines() == [f"warning: {note}" for note in notes]
    code, out, _ = _cli("audit", str(dataset))
    assert code == 0 and all(f"note: {note}" in out for note in notes)
    return f"run and audit: {notes[0]}"


@case("one dataset's groups.csv is damaged", "datasets lists it as unusable with the reason, and the others")
def _datasets_with_one_unusable(folder: Path) -> str:
    data = folder / "data"
    data.mkdir()
    for name in ("bad", "good"):
        _dataset(folder / name).rename(data / name)
    (data / "bad" / "groups.csv").write_bytes(b"file,group\nALL/all0.png\n")
    os.environ["LEUKDASH_DATA"] = str(data)
    code, out, err = _cli("datasets", "--json")
    assert code == 0 and err == ""
    listed = {entry["name"]: entry for entry in json.loads(out)["datasets"]}
    assert listed["good"]["n_images"] == 12 and "unusable" not in listed["good"]
    assert "groups.csv line 2" in listed["bad"]["unusable"]
    code, out, err = _cli("datasets")
    assert code == 0 and "unusable" in out and "line 2" in out
    return [line.strip() for line in out.splitlines() if "unusable" in line][0].replace(str(folder), "TMP")


@case("the same bytes under two classes", "run warns (stderr, --json), as audit does")
def _copies_across_classes(folder: Path) -> str:
    dataset = _dataset(folder)
    (dataset / "HEALTHY" / "copy.png").write_bytes((dataset / "ALL" / "all3.png").read_bytes())
    code, out, err = _cli(*_run_args(dataset, "--json"))
    [warning] = json.loads(out)["dataset"]["warnings"]
    assert code == 0 and err.strip() == f"warning: {warning}"
    assert "'ALL/all3.png' and 'HEALTHY/copy.png'" in warning
    assert "ACROSS CLASSES" in _cli("audit", str(dataset))[1]
    return err.strip()


# --------------------------------------------------------------------------- §3 the store's environment

def _store_files(artifacts: Path) -> dict[str, bytes]:
    return {p.relative_to(artifacts).as_posix(): p.read_bytes() for p in artifacts.rglob("*") if p.is_file()}


@case("LEUKDASH_ARTIFACTS names a file", "run, predict, datasets, runs: exit 2, one line each")
def _artifacts_is_a_file(folder: Path) -> str:
    dataset = _dataset(folder)
    (folder / "artifacts").write_text("not a folder")
    lines = []
    for args in (_run_args(dataset), ["predict", "nb-000000000000", str(dataset / "ALL" / "all0.png")],
                 ["datasets"], ["runs"], ["audit", str(dataset)]):
        code, out, err = _cli(*args)
        lines.append(_one_error_line(err, "LEUKDASH_ARTIFACTS names", "not a folder"))
        assert code == 2 and out == ""
    assert (folder / "artifacts").read_text() == "not a folder"
    return lines[0].replace(str(folder), "TMP")


@case("disk full while a fold's model is written", "exit 2, one line; nothing partial; finished folds intact")
def _disk_full_mid_run(folder: Path) -> str:
    import errno

    from leukdash import atomic

    dataset = _dataset(folder)
    artifacts = folder / "artifacts"
    real_fsync = atomic.os.fsync

    def full_at_fold_2(fd: int) -> None:  # the disk fills as the third fold's model is written
        if "fold_2." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    atomic.os.fsync = full_at_fold_2
    try:
        code, out, err = _cli(*_run_args(dataset, "--json"))
    finally:
        atomic.os.fsync = real_fsync
    line = _one_error_line(err, "fold_2.skops", "no space left on the device")
    assert code == 2 and out == ""
    assert [p.name for p in artifacts.rglob("*") if ".partial" in p.name or p.name.endswith(".tmp")] == []
    [run_dir] = (artifacts / "runs").iterdir()
    assert RunStore().completed_folds(run_dir.name, 3) == [0, 1] and not (run_dir / "models" / "fold_2.skops").exists()
    code, out, err = _cli(*_run_args(dataset, "--json"))
    assert code == 0 and json.loads(out)["computed_folds"] == [2], err
    return line.replace(str(folder), "TMP") + "; the next run computes fold 3 only"


def _namespace(script: str, folder: Path, **env: str):
    """Run ``script`` (sh) in a private mount namespace, where it may mount a tmpfs or a read-only
    bind without touching the host's mounts; skipped where mount namespaces are not allowed."""
    import subprocess
    import sys

    from test_hostile import REPO

    prefix = ["unshare", "--mount", "--propagation", "private"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    probe = subprocess.run(prefix + ["true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here ({probe.stderr.decode().strip()})")
    environment = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO), **env}
    return subprocess.run(prefix + ["sh", "-ec", script], cwd=folder, env=environment, capture_output=True,
                          text=True, timeout=600)


@case("disk full: the store on a full 1 MB tmpfs", "exit 2, one line; nothing partial left")
def _disk_full_tmpfs(folder: Path) -> str:
    dataset = _dataset(folder)
    (folder / "out").mkdir()
    (folder / "artifacts").mkdir()
    done = _namespace(
        'mount -t tmpfs -o size=1m tmpfs "$LEUKDASH_ARTIFACTS"\n'
        'dd if=/dev/zero of="$LEUKDASH_ARTIFACTS/filler" bs=4k 2>/dev/null || true\n'
        'set +e; "$PYTHON" -m leukdash run "$DS" --model nb --image-size 16 --no-augment --folds 3 --n-jobs 1 --quiet'
        ' >out/stdout 2>out/stderr; echo $? >out/code\n'
        'find "$LEUKDASH_ARTIFACTS" -name "*.partial*" >out/partial; df -k "$LEUKDASH_ARTIFACTS" | tail -1 >out/df\n',
        folder, LEUKDASH_ARTIFACTS=str(folder / "artifacts"), DS=str(dataset))
    assert done.returncode == 0, done.stderr
    out = {name: (folder / "out" / name).read_text() for name in ("stdout", "stderr", "code", "partial", "df")}
    line = _one_error_line(out["stderr"], "no space left on the device")
    assert out["code"].strip() == "2" and out["stdout"] == "" and out["partial"] == ""
    return line.replace(str(folder), "TMP")


@case("read-only store (read-only mount)", "runs listed, predict works (caches skipped); a new run: exit 2, one "
      "line; sweeps, datasets and audit work")
def _read_only_store(folder: Path) -> str:
    dataset = _dataset(folder)
    code, out, err = _cli(*_run_args(dataset, "--json"))
    run_id = json.loads(out)["run_id"]
    before = _store_files(folder / "artifacts")
    (folder / "out").mkdir()
    done = _namespace(
        'mount --bind "$LEUKDASH_ARTIFACTS" "$LEUKDASH_ARTIFACTS"\n'
        'mount -o remount,ro,bind "$LEUKDASH_ARTIFACTS"\n'
        'set +e; "$PYTHON" -m leukdash runs --json >out/runs 2>out/runs.err; echo $? >>out/codes\n'
        '"$PYTHON" -m leukdash predict "$RUN" "$DS/ALL/all0.png" --json >out/predict 2>out/predict.err; echo $? >>out/codes\n'
        '"$PYTHON" -m leukdash run "$DS" --model knn --image-size 16 --no-augment --folds 3 --n-jobs 1 --quiet'
        ' >out/run 2>out/run.err; echo $? >>out/codes\n'
        'for command in sweeps datasets; do "$PYTHON" -m leukdash $command --json >/dev/null; echo $? >>out/codes; done\n'
        '"$PYTHON" -m leukdash audit "$DS" --json >/dev/null; echo $? >>out/codes\n',
        folder, LEUKDASH_ARTIFACTS=str(folder / "artifacts"), DS=str(dataset), RUN=run_id)
    assert done.returncode == 0, done.stderr
    read = {name: (folder / "out" / name).read_text() for name in ("runs", "predict", "run.err", "codes")}
    assert read["codes"].split() == ["0", "0", "2", "0", "0", "0"], read
    [listed] = json.loads(read["runs"])["runs"]
    assert listed["run_id"] == run_id and listed["status"] == "complete"
    [prediction] = json.loads(read["predict"])["predictions"]
    assert prediction["predicted"] in ("ALL", "HEALTHY")
    line = _one_error_line(read["run.err"], "the run store is read-only")
    assert _store_files(folder / "artifacts") == before
    return f"runs lists it, predict answers {prediction['predicted']}; new run: " + line.replace(str(folder), "TMP")


_KILLED_WRITER = """
import os, sys, time
import numpy as np
from pathlib import Path
from leukdash.data.arrays import load_arrays
from leukdash.data.dataset import Dataset
from leukdash.engine.runner import _write_model
from leukdash.engine.store import RunStore
from leukdash.engine.training import featurize_cached

def stop_before_rename(*args, **kwargs):  # the temporary file is whole: the moment before the rename
    print("writing", flush=True)
    time.sleep(600)

os.replace = stop_before_rename
kind, dataset = sys.argv[1], Path(sys.argv[2])
if kind == "fold record":
    RunStore().write_fold("nb-1", 0, {"val_acc": 1.0, "oof": list(range(5000))})
elif kind == "model file":
    _write_model(RunStore().model_path("nb-1", 0, "skops"), os.urandom(300_000))
elif kind == "array cache":
    load_arrays(Dataset.from_folder(dataset), 64)
elif kind == "feature cache":
    featurize_cached(np.random.default_rng(0).integers(0, 255, (20, 32, 32, 3), dtype=np.uint8), "features")
elif kind == "final model":  # saved by the trainer itself, straight into the store
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import make_pipeline
    from leukdash.config import RunConfig
    from leukdash.engine.training import _save_model
    model = make_pipeline(GaussianNB()).fit(np.random.default_rng(0).random((500, 40)), np.arange(500) % 2)
    _save_model(RunConfig(model="nb"), model, RunStore().run_dir("nb-1") / "models" / "final.skops")
"""


@case("kill -9 inside each kind of write", "the temporary files of dead writers removed on the next use of the store")
def _killed_writers(folder: Path) -> str:
    import signal
    import subprocess
    import sys

    from leukdash.atomic import temporary_path
    from test_hostile import REPO

    dataset = _dataset(folder)
    artifacts = folder / "artifacts"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    live = temporary_path(artifacts / "runs" / "nb-2" / "meta.json")  # this process's: still writing
    live.parent.mkdir(parents=True)
    live.write_text("{}")
    removed = []
    for kind in ("fold record", "model file", "array cache", "feature cache", "final model"):
        writer = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, kind, str(dataset)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert writer.stdout.readline() == "writing\n", writer.stderr.read()
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()  # reaped: its process id no longer names a live process
        [orphan] = [p for p in artifacts.rglob("*.partial*") if f".{writer.pid}-" in p.name]
        size = orphan.stat().st_size
        assert size > 0
        code = subprocess.run([sys.executable, "-m", "leukdash", "runs", "--json"], env=env, cwd=folder,
                              capture_output=True).returncode
        assert code == 0 and not orphan.exists() and live.exists(), kind
        removed.append(f"{kind} ({size:,} bytes)")
    return f"removed by the next `leukdash runs`: {', '.join(removed)}; a live writer's file kept"


@case("kill -9 while an upload is unpacked", "its staging folder removed by the next upload")
def _killed_unpack(folder: Path) -> str:
    import signal
    import subprocess
    import sys

    from leukdash.service.uploads import extract_zip, uploads_root
    from test_hostile import REPO
    from test_uploads import dataset_zip

    script = ("import os, sys, time\nfrom leukdash.service.uploads import extract_zip\n"
              "from test_uploads import dataset_zip\n"
              "os.replace = lambda *a, **k: (print('writing', flush=True), time.sleep(600))\n"
              "extract_zip(dataset_zip(0), name='a', session='s1')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
           "PYTHONDONTWRITEBYTECODE": "1"}
    writer = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n", writer.stderr.read()
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    [staging] = uploads_root().glob("s1/.partial-*")
    size = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
    assert size > 0
    extract_zip(dataset_zip(1), name="b", session="s2")
    assert not staging.exists()
    return f"the killed unpack's staging folder ({size:,} bytes) removed by the next upload"


# --------------------------------------------------------------------------- §5 uploads, names, paths

@case("a sweep's uploaded dataset under quota pressure", "never evicted (sweep record or queued sweep job)")
def _sweep_upload_kept(folder: Path) -> str:
    import shutil

    from leukdash.config import RunConfig
    from leukdash.engine.store import write_json_atomic
    from leukdash.engine.sweep import create_sweep, sweeps_root
    from leukdash.service.job_queue import CONFIG_FILE
    from leukdash.service.uploads import UploadLimits, extract_zip
    from test_uploads import dataset_zip

    first = extract_zip(dataset_zip(0), name="a", session="s1")
    size = sum(p.stat().st_size for p in first.rglob("*") if p.is_file())
    limits = UploadLimits(quota_bytes=int(1.5 * size))  # room for one upload
    record = create_sweep([RunConfig(dataset=str(first), model=model, folds=2) for model in ("nb", "knn")])
    for protected_by in ("the stored sweep", "its queued job"):
        if protected_by == "its queued job":  # what start_sweep_job stores as the job's input
            shutil.rmtree(sweeps_root())
            write_json_atomic(RunStore().run_dir(record["sweep_id"]) / CONFIG_FILE, record)
        os.utime(first.parent, (1, 1))  # the least recently used
        with pytest.raises(Exception, match="uploads folder is full"):
            extract_zip(dataset_zip(1), name="b", session="s2", limits=limits)
        assert first.is_dir(), protected_by
    return "kept while named by a stored sweep, and by a queued sweep job alone"


@case("newline and escape in a file name", "skipped with the name escaped; no forged output line")
def _control_characters(folder: Path) -> str:
    dataset = _dataset(folder)
    forged = "x.png\nHEALTHY fake.png: \x1b[32mOK"  # a name holds no "/"
    (dataset / "ALL" / f"{forged}.png").write_bytes(_png(_noise(50)))
    code, out, err = _cli("audit", str(dataset))
    assert code == 0 and "\x1b" not in out and "fake.png: \\x1b[32mOK.png: name holds a control character" in out
    assert not any(line.startswith("HEALTHY fake") for line in out.splitlines())
    code, out, err = _cli(*_run_args(dataset, "--json"))
    [skipped] = RunStore().read_meta(json.loads(out)["run_id"])["dataset"]["skipped"]
    assert code == 0 and "\n" not in skipped["path"] and "\\n" in skipped["path"]
    code, out, err = _cli("predict", json.loads(out)["run_id"], str(dataset / "ALL" / f"{forged}.png"))
    assert code == 0 and len([line for line in out.splitlines() if not line.startswith(" ")]) == 1
    assert "\x1b" not in out and "\\n" in out
    return "audit, run and predict print it as 'x.png\\nHEALTHY fake.png: \\x1b[32mOK.png'"


@case("newline in the dataset folder's name", "the run's output names it escaped, on one line")
def _dataset_name_newline(folder: Path) -> str:
    dataset = _dataset(folder).rename(folder / "cells\nrun nb-000 (cached)")
    code, out, err = _cli(*_run_args(dataset)[:-1])  # without --quiet: the text output
    assert code == 0, err
    head = out.splitlines()[0]
    assert "on cells\\nrun nb-000 (cached)," in head and not out.splitlines()[1].startswith("run ")
    return head.split(" on ")[1]


@case("newline in a sweep's --name", "sweep and sweeps print it escaped, on one line")
def _sweep_name_newline(folder: Path) -> str:
    dataset = _dataset(folder)
    code, out, err = _cli("sweep", str(dataset), "--model", "nb", "--image-size", "16", "--no-augment",
                          "--folds", "3", "--n-jobs", "1", "--quiet", "--name", "mine\nsweep-0 done 9/9 runs")
    assert code == 0, err
    code, listed, err = _cli("sweeps")
    assert code == 0 and len(listed.splitlines()) == 1 and "mine\\nsweep-0" in listed, listed
    assert "mine\\nsweep-0" in out.splitlines()[0]
    return listed.split(" · ")[-1].strip()


@case("comma in the dataset folder's path", "one dataset: run exit 0")
def _comma_in_path(folder: Path) -> str:
    dataset = _dataset(folder / "my,data")
    code, out, err = _cli(*_run_args(dataset, "--json"))
    assert code == 0, err
    assert json.loads(out)["dataset"]["n_images"] == 12
    code, out, err = _cli("audit", str(dataset), "--json")
    assert code == 0 and json.loads(out)["n_images"] == 12
    return "run and audit exit 0 on .../my,data/ds (12 images)"


# --------------------------------------------------------------------------- the tests

def test_data_page_shows_group_notes_and_copies_across_classes(tmp_path, monkeypatch):
    """What run and audit report about a dataset's groups and labels, the Data page shows too."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from test_app import APP, TIMEOUT, open_page
    from test_app import shown as as_shown

    dataset = _dataset(tmp_path)
    (dataset / "groups.csv").write_text("file,group\nALL/all0.png,a\nALL/missing.png,b\n")
    (dataset / "HEALTHY" / "copy.png").write_bytes((dataset / "ALL" / "all3.png").read_bytes())
    data = tmp_path / "data"
    data.mkdir()
    dataset.rename(data / "mine")
    monkeypatch.setenv("LEUKDASH_DATA", str(data))
    st.cache_data.clear()
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "data")
    at.sidebar.selectbox(key="dataset").set_value("mine").run(timeout=TIMEOUT)
    shown = [as_shown(warning.value) for warning in at.warning]
    assert any("1 row(s) name no image" in text and "ALL/missing.png" in text for text in shown), shown
    assert any("no group for 12 image(s)" in text for text in shown), shown
    assert any("same bytes as a file of another class" in text for text in shown), shown



@pytest.mark.parametrize("hostile", CASES, ids=[c.name for c in CASES])
def test_hostile_env_case(hostile: Case, tmp_path):
    observed = run_case(hostile, tmp_path)
    assert observed
