"""Hostile input at the command line: files left out of a run, a class with no readable file,
extreme ensemble weights, malformed scheduler addresses, over-long names, a closed output pipe,
an ASCII-only terminal, options beside ``--config-file``, an empty dataset name, TIFFs that
cannot be read, a fold file deleted from a finished run, a sweep grid far too large, a run's training folder
moved away, JSON nested too deeply, several pictures in one file, model files that run code when loaded.

Cases are registered as in :mod:`test_hostile` (its helpers are reused) and printed by
``python -m benchmarks.hostile_table`` with the others.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from test_hostile import REPO, Case, case_registry, _cli, _dataset, _one_error_line, _run_args, run_case

CASES: list[Case] = []
case = case_registry(CASES)


def _spoil(dataset: Path, names: list[str]) -> None:
    """Replace some files of ``dataset`` with bytes that are no image."""
    for name in names:
        (dataset / name).write_bytes(f"not an image: {name}".encode())  # bytes of its own: no duplicates


def _stored_runs() -> list[str]:
    runs = Path(os.environ["LEUKDASH_ARTIFACTS"]) / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []


def _subprocess_cli(*args: str, env: dict | None = None, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leukdash", *args], cwd=REPO, env={**os.environ, **(env or {})},
                          capture_output=True, timeout=120, **popen)


@case("a third of a dataset's files unreadable", "run and evaluate warn (stderr, --json) with the count and the "
      "first file; the run uses the rest")
def _files_left_out(folder: Path) -> str:
    dataset = _dataset(folder, per_class=6)
    _spoil(dataset, ["ALL/all0.png", "HEALTHY/healthy0.png"])
    (dataset / "ALL" / "notes.txt").write_text("not a picture")
    code, out, err = _cli(*_run_args(dataset, "--json"))
    [warning] = json.loads(out)["dataset"]["warnings"]
    assert code == 0 and err.strip() == f"warning: {warning}"
    assert warning.startswith("3 of 13 file(s) of ds were left out") and "'ALL/notes.txt'" in warning, warning
    assert json.loads(out)["dataset"]["n_images"] == 10
    run_id = json.loads(out)["run_id"]
    other = _dataset(folder / "other", per_class=3, first=50)  # images the run did not train on
    _spoil(other, ["HEALTHY/healthy51.png"])
    code, out, err = _cli("evaluate", run_id, str(other))
    assert code == 0 and err.strip().startswith("warning: 1 of 6 file(s) of ds were left out"), err
    return err.strip()


@case("every file of one class unreadable", "run: exit 2, one line naming the dataset and the left-out files; "
      "evaluate: that class's recall n/a, with a warning")
def _class_unreadable(folder: Path) -> str:
    good = _dataset(folder / "good")
    code, out, _ = _cli(*_run_args(good, "--json"))
    run_id = json.loads(out)["run_id"]
    dataset = _dataset(folder / "bad", first=50)  # images the run did not train on
    _spoil(dataset, [f"ALL/all{i}.png" for i in range(50, 56)])
    code, _, err = _cli(*_run_args(dataset))
    line = _one_error_line(err, "ds has 1 class(es) with images (HEALTHY)", "6 of 12 file(s) of ds were left out",
                           "'ALL/all50.png'")
    assert code == 2
    code, out, err = _cli("evaluate", run_id, str(dataset))
    assert code == 0 and "recall per class   ALL n/a  HEALTHY 1.000" in out, out
    assert "no readable image of class(es) ALL in ds" in err and "UserWarning" not in err, err
    return line


@case("ensemble weights whose sum overflows (1e308 each)", "the same vote as equal weights; never all-zero weights")
def _huge_weights(folder: Path) -> str:
    dataset = _dataset(folder)
    ids = [json.loads(_cli(*_run_args(dataset, "--model", model, "--json"))[1])["run_id"] for model in ("nb", "knn")]
    code, out, err = _cli("ensemble", *ids, "--weights", "1e308,1e308", "--json")
    huge = json.loads(out)
    equal = json.loads(_cli("ensemble", *ids, "--json")[1])
    assert code == 0 and err == ""
    assert [f["val_acc"] for f in huge["folds"]] == [f["val_acc"] for f in equal["folds"]]
    assert huge["config"]["weights"] == [0.5, 0.5]
    return f"weights {huge['config']['weights']}, fold accuracies as with equal weights"


@case("malformed Dask scheduler address (option or environment)", "exit 2, one line naming the setting; "
      "nothing stored, no sweep")
def _bad_scheduler(folder: Path) -> str:
    dataset = _dataset(folder)
    lines = []
    for address in ("garbage", "tcp://host:notaport", "http://127.0.0.1:8786", "tcp://:8786", "tcp://[::1"):
        code, _, err = _cli(*_run_args(dataset, "--scheduler", address))
        lines.append(_one_error_line(err, f"--scheduler {address!r} is not a Dask scheduler address"))
        assert code == 2
    os.environ["LEUKDASH_SCHEDULER"] = "bogus"
    code, _, err = _cli("sweep", str(dataset), "--model", "nb,knn", "--image-size", "16", "--folds", "3", "--quiet")
    _one_error_line(err, "LEUKDASH_SCHEDULER 'bogus' is not a Dask scheduler address")
    assert code == 2 and _stored_runs() == []
    assert not (Path(os.environ["LEUKDASH_ARTIFACTS"]) / "sweeps").exists() or \
        not any((Path(os.environ["LEUKDASH_ARTIFACTS"]) / "sweeps").iterdir())
    return lines[0]


@case("run id or folder name longer than the file system allows", "exit 2, one line each, in every command")
def _long_names(folder: Path) -> str:
    long = "a" * 300
    image = _dataset(folder) / "ALL" / "all0.png"
    lines = []
    for args in (("predict", long, str(image)), ("compare", long, long), ("evaluate", long, str(folder)),
                 ("refit", long), ("audit", str(folder / long)), _run_args(folder / long)):
        code, _, err = _cli(*args)
        lines.append(_one_error_line(err))
        assert code == 2 and ("longer than the file system allows" in err or "is not a finished run" in err), err
    return lines[0][:60] + "..."


@case("output pipe closed early by its reader (e.g. head)", "exit 1, no traceback")
def _closed_pipe(folder: Path) -> str:
    process = subprocess.Popen([sys.executable, "-m", "leukdash", "datasets", "--json"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before anything is written
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1 and b"Traceback" not in err and b"BrokenPipe" not in err, err
    return f"exit {process.returncode}, stderr {err.decode()!r}"


@case("output sent to a full device (/dev/full)", "exit 2, one line naming standard output, not the run store")
def _full_output(folder: Path) -> str:
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "leukdash", "audit", str(_dataset(folder)), "--json"], cwd=REPO,
                              stdout=full, stderr=subprocess.PIPE, timeout=120)
    err = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in err and "Exception ignored" not in err, err
    assert _one_error_line(err) == ("error: cannot write this command's output (standard output): No space left on "
                                    "device; what it stored is kept"), err
    return _one_error_line(err)


@case("a terminal that can only show ASCII", "audit prints non-ASCII file names escaped; exit 0")
def _ascii_terminal(folder: Path) -> str:
    dataset = _dataset(folder)
    (dataset / "ALL" / "blaste ü é.png").write_bytes((dataset / "ALL" / "all0.png").read_bytes())
    done = _subprocess_cli("audit", str(dataset), env={"PYTHONIOENCODING": "ascii", "PYTHONUTF8": "0"})
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr
    [line] = [text for text in done.stdout.decode("ascii").splitlines() if "blaste" in text]
    assert "\\xfc" in line, line
    return line.strip()


@case("run options typed beside --config-file; an empty dataset name", "exit 2, one line naming what would be "
      "ignored; an empty name is refused, not read as the default dataset")
def _config_file_and_options(folder: Path) -> str:
    dataset = _dataset(folder)
    code, out, _ = _cli(*_run_args(dataset, "--json"))
    meta = Path(os.environ["LEUKDASH_ARTIFACTS"]) / "runs" / json.loads(out)["run_id"] / "meta.json"
    code, _, err = _cli("run", "--config-file", str(meta), "--model", "knn", "--folds", "5", "--quiet")
    line = _one_error_line(err, "--model, --folds would be ignored")
    assert code == 2
    code, _, err = _cli("run", str(folder / "elsewhere"), "--config-file", str(meta), "--quiet")
    _one_error_line(err, "DATASET would be ignored")
    code, out, err = _cli("run", "--config-file", str(meta), "--quiet")
    assert code == 0 and "(cached)" in out
    for empty in ("", " "):
        code, _, err = _cli("run", empty, "--model", "nb", "--quiet")
        _one_error_line(err, "the dataset name is empty")
        assert code == 2
    return line


@case("TIFFs that cannot be read: floating-point colour, cut in half", "predict lists each with a reason (no "
      "memory address, no Pillow warning); the good image is predicted")
def _unreadable_tiffs(folder: Path) -> str:
    from PIL import Image

    dataset = _dataset(folder)
    run_id = json.loads(_cli(*_run_args(dataset, "--json"))[1])["run_id"]
    cv2.imwrite(str(folder / "float.tif"), np.random.default_rng(0).random((24, 24, 3)).astype(np.float32))
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        folder / "whole.tif", compression="tiff_lzw")
    whole = (folder / "whole.tif").read_bytes()
    (folder / "cut.tif").write_bytes(whole[:len(whole) // 2])
    (folder / "markers.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    paths = [folder / name for name in ("float.tif", "cut.tif", "markers.jpg")] + [dataset / "ALL" / "all1.png"]
    code, out, err = _cli("predict", run_id, *map(str, paths))
    assert code == 0 and "Warning" not in err and " object at 0x" not in out + err, (out, err)
    assert "float.tif: cannot read: TIFF not readable" in out and "cut.tif: cannot read:" in out, out
    assert "markers.jpg: cannot read: damaged JPEG header" in out and "all1.png: ALL" in out, out
    return [line for line in out.splitlines() if "float.tif" in line][0].replace(str(folder), "TMP")


@case("a finished run's fold file deleted by hand", "runs lists it as partial; compare names the fold and the "
      "command; that command computes that fold only")
def _fold_file_deleted(folder: Path) -> str:
    dataset = _dataset(folder)
    ids = [json.loads(_cli(*_run_args(dataset, "--model", model, "--json"))[1])["run_id"] for model in ("nb", "knn")]
    runs = Path(os.environ["LEUKDASH_ARTIFACTS"]) / "runs"
    (runs / ids[0] / "folds" / "fold_1.json").unlink()
    listed = {entry["run_id"]: entry["status"] for entry in json.loads(_cli("runs", "--json")[1])["runs"]}
    assert listed == {ids[0]: "partial", ids[1]: "complete"}, listed
    code, _, err = _cli("compare", *ids)
    line = _one_error_line(err, "fold(s) 2 missing or damaged", f"run --config-file {runs / ids[0] / 'meta.json'}")
    assert code == 2
    code, out, _ = _cli("run", "--config-file", str(runs / ids[0] / "meta.json"), "--quiet", "--json")
    assert code == 0 and json.loads(out)["computed_folds"] == [1]
    assert _cli("compare", *ids)[0] == 0
    return line.replace(str(folder), "TMP")


@case("a sweep grid far larger than meant (21 seeds x 10 sizes)", "exit 2, one line with the count and how to "
      "go on; nothing stored; --max-runs lets a grid through")
def _huge_grid(folder: Path) -> str:
    dataset = _dataset(folder)
    seeds, sizes = ",".join(map(str, range(21))), ",".join(map(str, range(8, 18)))
    code, _, err = _cli("sweep", str(dataset), "--model", "nb", "--seed", seeds, "--image-size", sizes, "--quiet")
    line = _one_error_line(err, "this grid is 210 runs, more than 200", "--max-runs 210")
    assert code == 2 and not (Path(os.environ["LEUKDASH_ARTIFACTS"]) / "sweeps").exists() and _stored_runs() == []
    small = ["sweep", str(dataset), "--model", "nb,knn", "--seed", "0,1", "--image-size", "16", "--folds", "3",
             "--augment-factor", "1", "--n-jobs", "1", "--quiet", "--json"]
    code, _, err = _cli(*small, "--max-runs", "3")
    _one_error_line(err, "this grid is 4 runs, more than 3")
    code, out, _ = _cli(*small, "--max-runs", "4")
    assert code == 0 and len(json.loads(out)["runs"]) == 4
    return line


@case("the folder a run was trained on moved away", "evaluate answers from what the run stored as it finished; "
      "refit: exit 2, one line saying the run needs its training images and where they were; once the run is "
      "answered for the images' new folder, they are found there")
def _training_folder_gone(folder: Path) -> str:
    dataset = _dataset(folder / "trained")
    run_id = json.loads(_cli(*_run_args(dataset, "--json"))[1])["run_id"]
    dataset.rename(folder / "moved")
    other = str(_dataset(folder / "other", per_class=4, first=50))
    code, out, err = _cli("evaluate", run_id, other)
    assert code == 0 and "balanced" in out, err
    code, _, err = _cli("refit", run_id)
    line = _one_error_line(err, f"run {run_id} needs the images it was trained on", str(dataset), "put that folder back")
    assert code == 2
    again = json.loads(_cli(*_run_args(folder / "moved", "--json"))[1])  # the same images: the same run, cached
    assert again["run_id"] == run_id and again["cached"]
    code, _, err = _cli("refit", run_id)
    assert code == 0, err
    return line.replace(str(folder), "TMP")


@case("JSON nested 100,000 deep: a config file, a run's meta.json, a line of its progress log",
      "config: exit 2, one line; the damaged run is treated as damaged (no RecursionError), the others work")
def _deep_json(folder: Path) -> str:
    deep = "[" * 100_000 + "]" * 100_000
    (folder / "deep.json").write_text(deep)
    code, _, err = _cli("run", "--config-file", str(folder / "deep.json"), "--quiet")
    line = _one_error_line(err, "is not a JSON text file")
    assert code == 2
    dataset = _dataset(folder)
    ids = [json.loads(_cli(*_run_args(dataset, "--model", model, "--json"))[1])["run_id"] for model in ("nb", "knn")]
    runs = Path(os.environ["LEUKDASH_ARTIFACTS"]) / "runs"
    with open(runs / ids[1] / "progress.jsonl", "a") as log:
        log.write(deep + "\n")
    (runs / ids[0] / "meta.json").write_text(deep)
    code, out, err = _cli("runs", "--json")
    assert code == 0 and [entry["run_id"] for entry in json.loads(out)["runs"]] == [ids[1]], (out, err)
    code, _, err = _cli("compare", *ids)
    _one_error_line(err, f"run '{ids[0]}' is not a finished run")
    assert code == 2 and _cli("compare", ids[1])[0] == 0
    return line.replace(str(folder), "TMP")


@case("several pictures in one file: a 3-page TIFF, a 2-frame GIF named .png", "predict answers from the first "
      "picture and says so (stdout, --json); a one-picture file gets no note")
def _several_pictures(folder: Path) -> str:
    from PIL import Image

    dataset = _dataset(folder)
    run_id = json.loads(_cli(*_run_args(dataset, "--json"))[1])["run_id"]
    pictures = [Image.fromarray(np.full((24, 24, 3), 40 * i, np.uint8)) for i in range(3)]
    pictures[0].save(folder / "pages.tif", save_all=True, append_images=pictures[1:])
    pictures[0].save(folder / "gif.png", format="GIF", save_all=True, append_images=pictures[1:2])
    paths = [str(folder / "pages.tif"), str(folder / "gif.png"), str(dataset / "ALL" / "all1.png")]
    code, out, err = _cli("predict", run_id, *paths, "--json")
    notes = [entry.get("note") for entry in json.loads(out)["predictions"]]
    assert code == 0 and notes == ["the file holds 3 pictures (pages or frames): only the first was read",
                                   "the file holds 2 pictures (pages or frames): only the first was read", None], notes
    code, out, _ = _cli("predict", run_id, *paths)
    lines = out.splitlines()
    assert lines[1] == "  note: the file holds 3 pictures (pages or frames): only the first was read", out
    return lines[1].strip()


@case("an external test set holding the run's training images: a run on a,b tested on b, training images "
      "copied under new names", "evaluate leaves them out with a warning that counts them; a set made only of "
      "them: exit 2, one line")
def _training_images_tested(folder: Path) -> str:
    first = _dataset(folder / "a").rename(folder / "lab_a")
    second = _dataset(folder / "b", first=50).rename(folder / "lab_b")
    run_id = json.loads(_cli(*_run_args(f"{first},{second}", "--json"))[1])["run_id"]
    code, _, err = _cli("evaluate", run_id, str(second))
    line = _one_error_line(err, "every image of 'lab_b' is one run", "was trained on")
    assert code == 2
    mixed = _dataset(folder / "mixed", first=70)
    for name in ("ALL/all50.png", "HEALTHY/healthy51.png"):
        (mixed / name.replace("5", "copy5")).write_bytes((second / name).read_bytes())
    code, out, err = _cli("evaluate", run_id, str(mixed), "--json")
    assert code == 0 and json.loads(out)["n_images"] == 12, out
    assert err.strip() == f"warning: 2 of 14 image(s) of ds left out: run {run_id} was trained on them (the same " \
        "bytes), so they would score what it remembers", err
    return line


@case("a received run store whose model files run code when loaded: a forged .skops, a pickled .joblib, "
      "sha256s rewritten", "predict: exit 2, one line naming the run, the file and the type (the pickle: the command "
      "that converts it); nothing runs, nothing is moved aside")
def _forged_models(folder: Path) -> str:
    import pickle

    import skops.io

    from leukdash.engine.store import RunStore
    from test_untrusted_models import MARKER, Forged, _rehashed

    dataset = _dataset(folder)
    run_id = json.loads(_cli(*_run_args(dataset, "--json"))[1])["run_id"]
    models, image = Path(os.environ["LEUKDASH_ARTIFACTS"]) / "runs" / run_id / "models", str(dataset / "ALL/all0.png")
    MARKER.unlink(missing_ok=True)
    genuine = (models / "fold_0.skops").read_bytes()
    skops.io.dump(Forged(), models / "fold_0.skops")
    _rehashed(run_id, 0, models / "fold_0.skops")
    code, _, err = _cli("predict", run_id, image)
    assert code == 2 and not MARKER.exists()
    line = _one_error_line(err, f"run {run_id}: models/fold_0.skops holds ", "Forged")
    (models / "fold_0.skops").write_bytes(genuine)
    _rehashed(run_id, 0, models / "fold_0.skops")
    (models / "fold_1.skops").unlink()
    (models / "fold_1.joblib").write_bytes(pickle.dumps(Forged()))  # named as an earlier version named models
    _rehashed(run_id, 1, models / "fold_1.joblib")
    code, _, err = _cli("predict", run_id, image)
    assert code == 2 and not MARKER.exists()
    _one_error_line(err, "models/fold_1.joblib is a pickle written by an earlier", f"trust-models {run_id}`")
    assert sorted(p.name for p in models.iterdir()) == ["fold_0.skops", "fold_1.joblib", "fold_2.skops"]
    assert all(RunStore().read_fold(run_id, fold) for fold in range(3))  # no fold moved aside
    return line


@pytest.mark.parametrize("hostile", CASES, ids=[c.name for c in CASES])
def test_hostile_cli_case(hostile: Case, tmp_path):
    observed = run_case(hostile, tmp_path)
    assert observed


def test_a_clean_up_that_fails_after_a_stop_still_says_the_command_was_stopped(monkeypatch, capsys):
    """SIGTERM mid-command, then a clean-up that raises while unwinding (a pool that cannot be shut
    down): the exit status and the last line are the stop's, not the clean-up's traceback (exit 1)."""
    import signal

    from leukdash.cli import Stopped, commands, main

    def stopped_then_failing_clean_up(args):
        try:
            raise Stopped(signal.SIGTERM)
        finally:
            raise RuntimeError("the worker pool could not be shut down")

    monkeypatch.setattr(commands, "datasets", stopped_then_failing_clean_up)
    assert main(["datasets"]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "stopped by SIGTERM: what it stores is written whole or not at all; run the same command again")
    monkeypatch.setattr(commands, "datasets", lambda args: 1 / 0)  # no stop behind it: a bug stays a traceback
    with pytest.raises(ZeroDivisionError):
        main(["datasets"])



def _closing(fd: int):
    """A ``preexec_fn`` that starts the command with file descriptor ``fd`` closed (``>&-``, ``2>&-``)."""
    return lambda: os.close(fd)


def test_a_closed_stdout_drops_the_output_and_keeps_the_exit_code_and_what_was_computed(tmp_path):
    dataset = _dataset(tmp_path)
    done = _subprocess_cli(*_run_args(dataset), preexec_fn=_closing(1))
    assert (done.returncode, done.stderr) == (0, b"")
    [run_id] = _stored_runs()
    for args in (["runs"], ["oof", run_id], ["datasets"]):
        done = _subprocess_cli(*args, preexec_fn=_closing(1))
        assert (done.returncode, done.stderr) == (0, b""), (args, done.stderr)
    assert _subprocess_cli("oof", "nope-1", preexec_fn=_closing(1)).returncode == 2


def test_a_closed_stderr_drops_the_messages_never_sending_them_to_stdout(tmp_path):
    dataset = _dataset(tmp_path)
    _spoil(dataset, ["ALL/all0.png"])  # a warning, said on stderr
    shown = [arg for arg in _run_args(dataset, "--json") if arg != "--quiet"]  # with its progress line
    done = _subprocess_cli(*shown, preexec_fn=_closing(2))
    assert done.returncode == 0 and json.loads(done.stdout)["run_id"] in _stored_runs()
    done = _subprocess_cli("oof", "nope-1", "--json", preexec_fn=_closing(2))
    assert (done.returncode, done.stdout) == (2, b"")


def test_a_closed_standard_descriptor_is_opened_on_dev_null_before_any_file(tmp_path):
    """Else the next file opened (a run's .lock) takes number 2 and receives what C libraries log."""
    probe = ("from leukdash.fd2 import open_closed_standard_streams; open_closed_standard_streams(); "
             "import os, sys; print(open(os.devnull).fileno(), os.readlink('/proc/self/fd/2'), sys.stderr.name)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, preexec_fn=_closing(2))
    fileno, fd2, stderr = done.stdout.decode().split()
    assert int(fileno) > 2 and fd2 == stderr == os.devnull


def test_a_ctrl_c_before_the_command_starts_is_one_line(monkeypatch, capsys):
    """Ctrl-C while ``__main__`` imports the CLI (the first tenth of a second): exit 130, one line."""
    import runpy

    from leukdash.engine import machine

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(machine, "fit_blas_threads_to_process_limit", interrupted)
    with pytest.raises((SystemExit, KeyboardInterrupt)) as exited:  # caught: an interrupt would end pytest
        runpy.run_module("leukdash", run_name="__main__")
    assert exited.type is SystemExit and exited.value.code == 130
    assert capsys.readouterr().err == "interrupted before the command started: nothing was changed\n"


def test_predict_with_a_run_that_is_not_there_says_so_before_reading_its_files(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    code, _, err = _cli("predict", "nope-1", str(bad))
    assert code == 2 and _one_error_line(err, "run 'nope-1' is not a finished run in")
