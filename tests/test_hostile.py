"""Hostile input: a corpus generated at test time (nothing large is committed), one case a row.

Each case builds its files under a fresh folder, runs the engine or the CLI on them, asserts the
specific outcome (which files are skipped and why, the exit code, the one-line message, that
nothing outside the run store changed and that no temporary file is left), and returns what it
observed in a few words. ``python -m benchmarks.hostile_table`` prints the table of cases:
case | expected | observed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from leukdash.cli import main
from leukdash.cli.output import run_text
from leukdash.config import RunConfig
from leukdash.data.dataset import Dataset
from leukdash.engine.machine import machine_cores
from leukdash.engine.runner import run
from leukdash.engine.store import RunStore
from tests.damage import flip_compressed_bytes

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Case:
    name: str
    expected: str
    check: Callable[[Path], str]  # asserts the outcome in a fresh folder, returns what it observed


def case_registry(cases: list[Case]):
    """The ``@case(name, expected)`` decorator of one hostile test file: it appends to ``cases``."""
    def case(name: str, expected: str):
        def register(check):
            cases.append(Case(name, expected, check))
            return check
        return register
    return case


CASES: list[Case] = []
case = case_registry(CASES)


def run_case(hostile: Case, folder: Path) -> str:
    """Run one case in ``folder`` with its own run store (``folder/artifacts``); the environment
    is restored afterwards."""
    saved = dict(os.environ)
    os.environ["LEUKDASH_ARTIFACTS"] = str(folder / "artifacts")
    try:
        return hostile.check(folder)
    finally:
        os.environ.clear()
        os.environ.update(saved)


# --------------------------------------------------------------------------- helpers

def _png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def _noise(seed: int, size: int = 16, base: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (base + rng.integers(0, 60, (size, size, 3))).astype(np.uint8)


def _dataset(folder: Path, per_class: int = 6, first: int = 0) -> Path:
    """Two classes of small noisy PNGs that differ in brightness: enough for a 3-fold run.
    Images ``first`` to ``first + per_class - 1`` of each class (another ``first``: other images)."""
    root = folder / "ds"
    for label, (name, base) in enumerate((("ALL", 40), ("HEALTHY", 150))):
        (root / name).mkdir(parents=True)
        for i in range(first, first + per_class):
            (root / name / f"{name.lower()}{i}.png").write_bytes(_png(_noise(label * 100 + i, base=base)))
    return root


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(side: int) -> bytes:
    """A valid PNG signature and header claiming side x side RGB pixels, with almost no data."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def _png_scrambled_pixels() -> bytes:
    """A PNG whose chunks are whole, with right CRCs, but whose compressed pixels are damaged: only
    decompressing finds it."""
    rows = b"".join(b"\0" + row.tobytes() for row in _noise(6, 32))
    packed = bytearray(zlib.compress(rows))
    packed[20:40] = bytes(b ^ 0x5A for b in packed[20:40])
    header = struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", bytes(packed))
            + _png_chunk(b"IEND", b""))


def _snapshot(folder: Path, exclude: Path | None = None) -> dict:
    """Every entry under ``folder`` (not following links) with its size and modification time."""
    found = {}
    for current, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(current) / name
            if exclude is None or not path.is_relative_to(exclude):
                info = path.lstat()
                found[path.relative_to(folder).as_posix()] = (info.st_size, info.st_mtime_ns)
    return found


def _leftovers(folder: Path) -> list[str]:
    """Temporary files a crashed or refused write would leave behind."""
    return sorted(p.name for p in folder.rglob("*") if ".partial" in p.name or p.name.endswith(".tmp"))


@contextlib.contextmanager
def _stderr_fd():
    """Capture what is written to file descriptor 2, by Python or by C libraries (libpng)."""
    captured = {}
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured["text"] = sink.read().decode(errors="replace")


def _cli(*args: str) -> tuple[int, str, str]:
    """``python -m leukdash ARGS`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _one_error_line(err: str, *fragments: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _run_args(dataset, *extra: str) -> list[str]:
    """``leukdash run`` of a quick naive Bayes on ``dataset`` (3 folds, 16 px, in this process)."""
    return ["run", str(dataset), "--model", "nb", "--image-size", "16", "--no-augment", "--folds", "3",
            "--n-jobs", "1", "--quiet", *extra]


def _nb_config(dataset: Path, **changes) -> RunConfig:
    return RunConfig(**{"dataset": str(dataset), "model": "nb", "image_size": 16, "augment_factor": 1,
                        "folds": 3, **changes})


def _finished_run(folder: Path, **changes) -> tuple[Path, RunConfig, dict]:
    dataset = _dataset(folder)
    config = _nb_config(dataset, **changes)
    return dataset, config, run(config, n_jobs=1)


# --------------------------------------------------------------------------- image files in a dataset

def _one_bad_file(make: Callable[[Path], None], reason: str | None, kept: int = 12):
    """A check: a valid dataset plus one hostile entry made by ``make(class_folder)``; loading
    lists it with ``reason`` (or keeps it when ``reason`` is None), keeps ``kept`` images, prints
    nothing on stderr, and changes nothing on disk."""
    def check(folder: Path) -> str:
        dataset = _dataset(folder)
        outside = folder / "outside"
        outside.mkdir()
        make(dataset / "ALL")
        before = _snapshot(folder, exclude=folder / "artifacts")
        with _stderr_fd() as stderr, warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")  # pytest would otherwise catch them before stderr
            opened = Dataset.from_folder(dataset)
            loaded = opened.load(16)
        skipped = {opened.relative(s.path): s.reason for s in loaded.skipped}
        assert stderr["text"] == "" and warned == [], (stderr["text"], [str(w.message) for w in warned])
        assert len(loaded.labels) == kept and loaded.images.shape == (kept, 16, 16, 3)
        assert loaded.images.dtype == np.uint8
        assert _snapshot(folder, exclude=folder / "artifacts") == before
        if reason is None:
            assert skipped == {}
            return f"loaded ({kept} images), nothing on stderr"
        [(name, why)] = skipped.items()
        assert reason in why, why
        return f"skipped {name}: {why}"
    return check


def _write(name: str, data: bytes):
    return lambda folder: (folder / name).write_bytes(data)


def _truncated_jpeg(folder: Path) -> None:
    ok, data = cv2.imencode(".jpg", _noise(7, 64))
    (folder / "cut.jpg").write_bytes(data.tobytes()[: len(data) // 2])


def _truncated_webp(folder: Path) -> None:
    ok, data = cv2.imencode(".webp", _noise(17, 64))
    (folder / "cut.webp").write_bytes(data.tobytes()[: len(data) * 9 // 10])


def _pillow_only(format_name: str, name: str):
    """A whole image in a format Pillow opens and OpenCV does not decode, under an image's name."""
    def make(folder: Path) -> None:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(_noise(18, 32)).save(buffer, format=format_name)
        (folder / name).write_bytes(buffer.getvalue())
    return make


def _deep_png(folder: Path) -> None:
    assert cv2.imwrite(str(folder / "deep16.png"), (_noise(8).astype(np.uint16) * 257))


def _rgba_png(folder: Path) -> None:
    assert cv2.imwrite(str(folder / "alpha.png"), np.dstack([_noise(9), np.full((16, 16), 128, np.uint8)]))


def _gray_png(folder: Path) -> None:
    assert cv2.imwrite(str(folder / "gray.png"), _noise(10)[:, :, 0])


def _non_utf8_name(folder: Path) -> None:
    (folder / os.fsdecode(b"bad\xff\xfe.png")).write_bytes(_png(_noise(11)))


def _symlink_inside(folder: Path) -> None:
    (folder / "twin.png").symlink_to(folder / "all0.png")


def _symlink_outside(folder: Path) -> None:
    secret = folder.parent.parent / "outside" / "secret.png"
    secret.write_bytes(_png(_noise(12)))
    (folder / "secret.png").symlink_to(secret)


def _symlink_loop(folder: Path) -> None:
    (folder / "loop.png").symlink_to(folder / "loop.png")


def _broken_symlink(folder: Path) -> None:
    (folder / "gone.png").symlink_to(folder / "no_such_file.png")


def _fifo(folder: Path) -> None:
    os.mkfifo(folder / "pipe.jpg")


def _folder_named_like_image(folder: Path) -> None:
    (folder / "cells.png").mkdir()
    (folder / "cells.png" / "inner.png").write_bytes(_png(_noise(13)))


def _symlinked_folder(folder: Path) -> None:
    outside = folder.parent.parent / "outside"
    (outside / "more.png").write_bytes(_png(_noise(14)))
    (folder / "patient7").symlink_to(outside, target_is_directory=True)


def _device(folder: Path) -> None:
    import stat

    try:
        os.mknod(folder / "zero.png", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # what /dev/zero is
    except PermissionError:
        pytest.skip("creating a device node needs root (CAP_MKNOD)")


def _damaged_tiff(compression: str):
    """A TIFF of few grey levels, compressed, with 24 bytes inside its strip altered."""
    def make(folder: Path) -> None:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray((np.random.default_rng(15).integers(0, 4, (64, 64, 3)) * 60).astype(np.uint8)).save(
            buffer, format="TIFF", compression=compression)
        data = bytearray(buffer.getvalue())
        start = int(len(data) * 0.3)
        data[start:start + 24] = bytes(b ^ 0x5A for b in data[start:start + 24])
        (folder / f"damaged_{compression}.tif").write_bytes(bytes(data))
    return make


def _deep_tiff(folder: Path) -> None:
    assert cv2.imwrite(str(folder / "deep16.tif"), (_noise(16).astype(np.uint16) * 257))  # LZW, as OpenCV writes


def _sparse_huge(folder: Path) -> None:
    with open(folder / "huge.png", "wb") as handle:
        handle.truncate(400 * 2**20)  # sparse: no disk space used


IMAGE_CASES = [
    ("empty file", "skipped: empty file", _write("empty.png", b""), "empty file", 12),
    ("text as image", "skipped: not an image", _write("notes.jpg", b"these are my notes\n" * 20), "not an image", 12),
    ("truncated JPEG", "skipped: truncated JPEG", _truncated_jpeg, "truncated JPEG", 12),
    ("truncated PNG", "skipped: truncated PNG, no libpng line on stderr",
     _write("cut.png", _png(_noise(5, 64))[:300]), "truncated or damaged PNG", 12),
    ("PNG with whole chunks, damaged compressed pixels", "skipped: damaged PNG, no libpng line on stderr",
     _write("scrambled.png", _png_scrambled_pixels()), "truncated or damaged PNG", 12),
    ("truncated WebP", "skipped: truncated WebP (not 'not an image')", _truncated_webp, "truncated or damaged WebP",
     12),
    ("Windows icon named .png", "skipped: a format not read here, named (not 'corrupt image data')",
     _pillow_only("ICO", "icon.png"), "not a format this tool reads: Windows Icon (ICO)", 12),
    ("Targa image named .tif", "skipped: a format not read here, named (not 'corrupt image data')",
     _pillow_only("TGA", "targa.tif"), "not a format this tool reads: Targa (TGA)", 12),
    ("random bytes", "skipped: not an image",
     _write("noise.png", np.random.default_rng(3).bytes(2048)), "not an image", 12),
    ("TIFF with a damaged deflate strip", "skipped: damaged TIFF, no libtiff line on stderr",
     _damaged_tiff("tiff_adobe_deflate"), "damaged TIFF data (tiff_adobe_deflate): ZIPDecode: Decoding error", 12),
    ("TIFF with a damaged LZW strip", "skipped: damaged TIFF, no libtiff line on stderr", _damaged_tiff("tiff_lzw"),
     "damaged TIFF data (tiff_lzw): ", 12),
    ("16-bit PNG", "loaded as 8-bit RGB", _deep_png, None, 13),
    ("16-bit LZW TIFF", "loaded as 8-bit RGB", _deep_tiff, None, 13),
    ("RGBA PNG", "loaded as RGB over white", _rgba_png, None, 13),
    ("grayscale PNG", "loaded as RGB", _gray_png, None, 13),
    ("1x1 image", "loaded (padded and resized)", _write("dot.png", _png(np.full((1, 1, 3), 99, np.uint8))), None, 13),
    ("bomb header 20000x20000", "skipped before decoding: too large", _write("bomb.png", _png_header_only(20000)),
     "image too large", 12),
    ("bomb header 10000x10000", "skipped: too large, no DecompressionBombWarning on stderr",
     _write("bomb.png", _png_header_only(10000)), "image too large", 12),
    ("header 1000x1000, no pixel data", "skipped: damaged PNG, no libpng line on stderr",
     _write("hollow.png", _png_header_only(1000)), "truncated or damaged PNG", 12),
    ("file over the size limit (sparse 400 MiB)", "skipped from its size, not read", _sparse_huge,
     "file too large", 12),
    ("non-UTF-8 file name", "skipped and listed (name escaped), load goes on", _non_utf8_name, "not valid UTF-8", 12),
    ("symlink inside the dataset", "followed", _symlink_inside, None, 13),
    ("symlink to a file outside", "refused and listed", _symlink_outside, "outside the dataset folder", 12),
    ("symlink loop", "listed: symbolic link loop", _symlink_loop, "symbolic link loop", 12),
    ("broken symlink", "listed: broken symbolic link", _broken_symlink, "broken symbolic link", 12),
    ("FIFO named like an image", "listed, never opened (no hang)", _fifo, "FIFO", 12),
    ("device named like an image", "listed, never opened", _device, "is a device", 12),
    ("folder named like an image", "listed, not entered", _folder_named_like_image, "folder named like an image", 12),
    ("symlink to an outside folder", "listed, not followed", _symlinked_folder, "symbolic link to a folder", 12),
]
for _name, _expected, _make, _reason, _kept in IMAGE_CASES:
    case(_name, _expected)(_one_bad_file(_make, _reason, _kept))


@case("non-UTF-8 name: audit and run", "exit 0, the file listed as skipped")
def _non_utf8_audit_and_run(folder: Path) -> str:
    dataset = _dataset(folder)
    _non_utf8_name(dataset / "ALL")
    code, out, err = _cli("audit", str(dataset))
    assert code == 0 and "ALL/bad\\xff\\xfe.png: name is not valid UTF-8" in out, err
    code, out, err = _cli("run", str(dataset), "--model", "nb", "--image-size", "16", "--no-augment",
                          "--folds", "3", "--n-jobs", "1", "--json", "--quiet")
    assert code == 0, err
    [skipped] = RunStore().read_meta(json.loads(out)["run_id"])["dataset"]["skipped"]
    assert skipped["path"] == "ALL/bad\\xff\\xfe.png"
    return "audit and run exit 0; listed as ALL/bad\\xff\\xfe.png"


@case("class folder with a non-UTF-8 name", "the class listed as skipped, the other classes load")
def _non_utf8_class(folder: Path) -> str:
    dataset = _dataset(folder)
    bad_class = dataset / os.fsdecode(b"CL\xffL")
    bad_class.mkdir()
    (bad_class / "c0.png").write_bytes(_png(_noise(30)))
    opened = Dataset.from_folder(dataset)
    assert opened.classes == ("ALL", "HEALTHY") and len(opened.items) == 12
    [(name, why)] = [(opened.relative(s.path), s.reason) for s in opened.ignored]
    assert name == "CL\\xffL" and "not valid UTF-8" in why, (name, why)
    return f"skipped {name}: {why}; ALL and HEALTHY load"


@case("class folders that are a broken and a looping symbolic link", "both listed as left out with the reason")
def _dead_class_links(folder: Path) -> str:
    dataset = _dataset(folder)
    (dataset / "CLL").symlink_to(folder / "unmounted" / "CLL", target_is_directory=True)
    (dataset / "LOOPY").symlink_to("LOOPY")
    opened = Dataset.from_folder(dataset)
    assert opened.classes == ("ALL", "HEALTHY") and len(opened.items) == 12
    listed = [(opened.relative(s.path), s.reason) for s in opened.ignored]
    assert listed == [("CLL", "broken symbolic link: not read as a class folder"),
                      ("LOOPY", "symbolic link loop: not read as a class folder")]
    code, out, err = _cli("audit", str(dataset))
    assert code == 0 and "CLL: broken symbolic link" in out and "LOOPY: symbolic link loop" in out, err
    # Every class folder a dead link (the whole drive unmounted): the error that no images were found says why.
    only_links = folder / "only_links"
    only_links.mkdir()
    (only_links / "ALL").symlink_to(folder / "unmounted" / "ALL", target_is_directory=True)
    code, _, err = _cli("audit", str(only_links))
    assert code == 2 and "no images found" in err and "ALL/ refused: broken symbolic link" in err, err
    return "; ".join(f"{name}: {why}" for name, why in listed)


@case("every image the same picture: run", "exit 2, one line: nothing tells the classes apart (no NaN)")
def _identical_images(folder: Path) -> str:
    root = folder / "same"
    for label, name in enumerate(("ALL", "HEALTHY")):  # one flat colour, each file its own size (other bytes)
        (root / name).mkdir(parents=True)
        for i in range(6):
            (root / name / f"{i}.png").write_bytes(_png(np.full((20 + 6 * label + i, 24, 3), 120, np.uint8)))
    for model in ("nb", "knn", "cnn"):  # the CNN refused as the classic models are, before its first epoch
        code, _, err = _cli("run", str(root), "--model", model, "--image-size", "16", "--folds", "2",
                            "--n-jobs", "1", "--quiet", *(("--epochs", "1") if model == "cnn" else ()))
        line = _one_error_line(err, "training inputs of a fold", "are all the same for this model",
                               "nothing tells the classes apart")
        assert code == 2, err
    return f"exit 2; {line}"


@case("an SVM with too few images per class for its calibration folds: run", "5 a class calibrates on fewer folds; "
      "3 a class: exit 2, one line naming the class, not advising fewer folds than the fewest (2)")
def _svm_few_images(folder: Path) -> str:
    said = []
    for n in (5, 3):
        root = folder / f"few{n}"
        for label, name in enumerate(("ALL", "HEALTHY")):
            (root / name).mkdir(parents=True)
            for i in range(n):
                (root / name / f"{i}.png").write_bytes(_png(_noise(100 * label + 10 * n + i, 24, 40 + 80 * label)))
        code, _, err = _cli("run", str(root), "--model", "svm", "--feature-set", "pixels", "--image-size", "16",
                            "--augment-factor", "1", "--no-augment", "--folds", "2", "--n-jobs", "1", "--quiet")
        said.append((code, err))
    assert said[0][0] == 0, said[0][1]  # 2 or 3 training images a class: as many calibration folds
    line = _one_error_line(said[1][1], "holds 1 input of class", "needs at least 2 of each class",
                           "add images or augmentation copies (--augment-factor)")
    assert "fewer folds" not in line, line  # 2 folds is the fewest
    assert said[1][0] == 2 and ("class ALL" in line or "class HEALTHY" in line), said[1][1]
    return f"5 a class: exit 0; 3 a class: exit 2; {line}"



@case("pure-noise images in both classes: SVM run", "exit 0; a warning naming the folds whose probability calibration "
      "reverses the SVM's decisions (training accuracy 0)")
def _svm_reversed_calibration(folder: Path) -> str:
    root = folder / "noise"
    for label, name in enumerate(("ALL", "HEALTHY")):  # the same noise in both: nothing to learn
        (root / name).mkdir(parents=True)
        for i in range(10):
            (root / name / f"{i}.png").write_bytes(_png(_noise(100 * label + i, 32)))
    code, out, err = _cli("run", str(root), "--model", "svm", "--feature-set", "pixels", "--image-size", "32",
                          "--no-augment", "--folds", "2", "--n-jobs", "1")
    assert code == 0, err
    trained = [float(line.split()[3]) for line in out.splitlines() if line.split()[:1] in (["1"], ["2"])]
    assert trained == [0.0, 0.0], out  # every training image answered the other class
    warned = [line for line in out.splitlines() if "calibration reverses" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: fold 1 and fold 2: "), out
    run_id = out.split()[1]
    code, compared, err = _cli("compare", run_id)  # said from the stored folds, as Compare says it
    assert code == 0 and f"warning: {run_id}: {warned[0].removeprefix('warning: ')}" in compared.splitlines(), err
    return f"exit 0; {warned[0]}"


# --------------------------------------------------------------------------- predict

def _predict_refuses(make: Callable[[Path], Path], reason: str):
    def check(folder: Path) -> str:
        _, _, result = _finished_run(folder)
        target = make(folder)
        before = _snapshot(folder)
        code, out, err = _cli("predict", result["run_id"], str(target))
        _one_error_line(err, "none of the 1 image(s) could be read")
        assert code == 2 and f"cannot read: {reason}" in out, out
        assert _snapshot(folder) == before
        return f"exit 2; {out.strip().split(': ', 1)[1]}"
    return check


def _make_fifo(folder: Path) -> Path:
    os.mkfifo(folder / "x.jpg")
    return folder / "x.jpg"


def _make_huge(folder: Path) -> Path:
    with open(folder / "big.png", "wb") as handle:
        handle.truncate(2**30)
    return folder / "big.png"


case("predict: FIFO named x.jpg", "exit 2, 'is a FIFO', no hang")(_predict_refuses(_make_fifo, "is a FIFO"))
case("predict: /dev/zero", "exit 2, 'is a device', no MemoryError")(
    _predict_refuses(lambda folder: Path("/dev/zero"), "is a device"))
case("predict: 1 GiB file", "exit 2, refused from its size")(_predict_refuses(_make_huge, "file too large"))
# A folder stands for the images under it (tests/test_answer_table.py); one without any is refused.
case("predict: folder without images", "exit 2, 'a folder without image files'")(
    _predict_refuses(lambda folder: _empty_folder(folder / "nothing_here"), "a folder without image files"))


def _empty_folder(path: Path) -> Path:
    path.mkdir()
    (path / "notes.txt").write_text("not an image")
    return path


@case("predict: one good, one bad image", "exit 0, the bad one reported")
def _predict_mixed(folder: Path) -> str:
    dataset, _, result = _finished_run(folder)
    code, out, err = _cli("predict", result["run_id"], str(dataset / "ALL" / "all0.png"), str(folder / "missing.png"))
    assert code == 0 and err == ""
    # One line per file; indented lines below a prediction add checks (known image, out of distribution).
    good, bad = [line for line in out.strip().splitlines() if not line.startswith(" ")]
    assert "all0.png: ALL (out-of-fold: " in good and bad.endswith("cannot read: file not found")  # a training image
    return "exit 0; 1 predicted, 1 'file not found'"


@case("run id with a trailing newline", "exit 2, invalid run id")
def _run_id_newline(folder: Path) -> str:
    dataset, _, result = _finished_run(folder)
    code, _, err = _cli("predict", result["run_id"] + "\n", str(dataset / "ALL" / "all0.png"))
    assert code == 2
    return _one_error_line(err, "invalid run id")


# --------------------------------------------------------------------------- damaged store files

def _damage_then_rerun(name: str, damage: Callable[[Path], None], recomputed: list[int]):
    """A check: finish a run, damage one of its files, run again; the damaged part (and only it)
    is recomputed to the same result, nothing outside the store changes, nothing is left behind."""
    def check(folder: Path) -> str:
        _, config, first = _finished_run(folder)
        artifacts = folder / "artifacts"
        damage(artifacts / "runs" / first["run_id"] / name)
        before = _snapshot(folder, exclude=artifacts)
        again = run(config, n_jobs=1)
        assert again["computed_folds"] == recomputed
        assert [f["val_acc"] for f in again["folds"]] == [f["val_acc"] for f in first["folds"]]
        assert [f["oof"] for f in again["folds"]] == [f["oof"] for f in first["folds"]]
        assert _snapshot(folder, exclude=artifacts) == before
        assert _leftovers(artifacts) == []
        assert run(config, n_jobs=1)["cached"]
        return f"rerun recomputed folds {recomputed or 'none'}; same results; nothing left behind"
    return check


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(max(64, path.stat().st_size)))


def _delete(path: Path) -> None:
    path.unlink()


RUN_FILE_CASES = [
    ("fold JSON truncated", "folds/fold_1.json", _truncate, [1]),
    ("fold JSON garbage bytes", "folds/fold_2.json", _garbage, [2]),
    ("meta.json truncated", "meta.json", _truncate, []),
    ("summary.json garbage bytes", "summary.json", _garbage, []),
    ("model .skops truncated", "models/fold_0.skops", _truncate, [0]),
    ("model .skops garbage bytes", "models/fold_2.skops", _garbage, [2]),
    ("model .skops deleted", "models/fold_1.skops", _delete, [1]),
]
for _name, _file_name, _damage, _recomputed in RUN_FILE_CASES:
    _what = f"fold {_recomputed[0]} recomputed" if _recomputed else "rewritten, no fold recomputed"
    case(_name, f"{_what}; same results")(_damage_then_rerun(_file_name, _damage, _recomputed))


@case("meta.json truncated: runs", "the run named on stderr as not listed, and why")
def _unlisted_run_is_named(folder: Path) -> str:
    _, _, result = _finished_run(folder)
    _truncate(RunStore().run_dir(result["run_id"]) / "meta.json")
    code, out, err = _cli("runs")
    assert code == 0 and result["run_id"] not in out, out
    assert err.startswith(f"note: {result['run_id']} is not listed: its meta.json is missing or damaged"), err
    code, out, _ = _cli("runs", "--json")
    assert json.loads(out)["unreadable"] == [result["run_id"]]
    return err.strip()


def _cache_damage(pattern: str, damage: Callable[[Path], None], **changes):
    """A check: damaged cache files make the next run that reads them (another classic model on
    the same folds) rebuild them instead of failing."""
    def check(folder: Path) -> str:
        _, config, _ = _finished_run(folder, **changes)
        artifacts = folder / "artifacts"
        paths = sorted(artifacts.glob(f"cache/{pattern}"))
        assert paths
        for path in paths:
            damage(path)
        damaged = [path.read_bytes() for path in paths]
        result = run(config.with_changes(model="knn"), n_jobs=1)
        assert result["computed_folds"] == [0, 1, 2]
        assert all(path.read_bytes() != before for path, before in zip(paths, damaged)), "not rebuilt"
        assert _leftovers(artifacts) == []
        return f"next run succeeds; {len(paths)} cache file(s) rebuilt; nothing left behind"
    return check


CACHE_CASES = [
    ("array cache truncated", "arrays/*_16.npz", _truncate, {}),
    ("array cache garbage bytes", "arrays/*_16.npz", _garbage, {}),
    ("array cache altered inside a whole archive (CRC wrong)", "arrays/*_16.npz", flip_compressed_bytes, {}),
    ("duplicates cache garbage bytes", "arrays/*_duplicates*.json", _garbage, {}),
    ("duplicates cache wrong structure", "arrays/*_duplicates*.json", lambda p: p.write_text('[["a", 1]]'), {}),
    ("feature cache truncated", "features/*.npy", _truncate, {"feature_set": "features"}),
]
for _name, _pattern, _damage, _changes in CACHE_CASES:
    case(_name, "rebuilt on the next run, which succeeds")(_cache_damage(_pattern, _damage, **_changes))


@case("predict with a truncated .skops", "exit 2, one line naming the model and the command; fold moved aside")
def _predict_damaged_skops(folder: Path) -> str:
    dataset, config, first = _finished_run(folder)
    model = folder / "artifacts" / "runs" / first["run_id"] / "models" / "fold_1.skops"
    _truncate(model)
    code, out, err = _cli("predict", first["run_id"], str(dataset / "ALL" / "all0.png"))
    line = _one_error_line(err, "models/fold_1.skops is damaged or missing", "python -m leukdash run --config-file")
    assert code == 2 and out == ""
    # Asked again, with the fold's whole record now moved aside: still the model, not the record.
    again = _cli("predict", first["run_id"], str(dataset / "ALL" / "all0.png"))
    assert again[0] == 2 and _one_error_line(again[2], "models/fold_1.skops is damaged", "--config-file") == line
    # The command the message gives recomputes exactly that fold, and prediction works again.
    command = line.split("`")[1].split()[3:]
    code, out, err = _cli(*command, "--n-jobs", "1", "--json", "--quiet")
    assert code == 0 and json.loads(out)["computed_folds"] == [1], err
    assert _cli("predict", first["run_id"], str(dataset / "ALL" / "all0.png"))[0] == 0
    return "exit 2 with the command; that command recomputes fold 1; predict works again"


@case("predict with a truncated .keras (shipped CNN demo run)", "exit 2, one line naming the model; fold moved aside")
def _predict_damaged_keras(folder: Path) -> str:
    shipped = sorted((REPO / "artifacts" / "runs").glob("cnn-*"))
    if not shipped:
        pytest.skip("no shipped CNN demo run in artifacts/runs")
    import shutil

    runs = folder / "artifacts" / "runs"
    copy = shutil.copytree(shipped[0], runs / shipped[0].name)
    [first_fold] = [json.loads((copy / "meta.json").read_text())["fold_ids"][0]]
    _truncate(copy / "models" / f"fold_{first_fold}.keras")
    image = folder / "cell.png"
    image.write_bytes(_png(_noise(20, 32)))
    code, out, err = _cli("predict", copy.name, str(image))
    _one_error_line(err, f"models/fold_{first_fold}.keras is damaged or missing", "--config-file")
    assert code == 2
    assert not (copy / "folds" / f"fold_{first_fold}.json").exists()
    assert RunStore().completed_folds(copy.name, 5) == [f for f in range(5) if f != first_fold]
    return f"exit 2; fold_{first_fold}.json moved aside, so the next run recomputes it"


@case("fold record with an altered model sha256", "the fold counts as damaged and is recomputed")
def _altered_model_hash(folder: Path) -> str:
    dataset, config, first = _finished_run(folder)
    path = folder / "artifacts" / "runs" / first["run_id"] / "folds" / "fold_0.json"
    record = json.loads(path.read_text())
    record["model"]["sha256"] = "0" * 64
    path.write_text(json.dumps(record))
    assert run(config, n_jobs=1)["computed_folds"] == [0]
    return "fold 0 recomputed"


# --------------------------------------------------------------------------- CLI settings

@case("--k larger than the training set", "exit 2, one line, before training; no run listed")
def _k_too_large(folder: Path) -> str:
    dataset = _dataset(folder)
    code, out, err = _cli(*_run_args(dataset, "--model", "knn", "--k", "50", "--json"))
    line = _one_error_line(err, "k must be at most 8")
    assert code == 2 and out == ""
    assert RunStore().list_runs() == []
    assert not list((folder / "artifacts").glob("runs/*/meta.json"))
    return line


@case("--n-jobs 1000", "capped to the cores, with a note; the run completes")
def _n_jobs_capped(folder: Path) -> str:
    dataset, _, _ = _finished_run(folder)
    code, out, err = _cli(*_run_args(dataset, "--n-jobs", "1000", "--json", "--quiet"))
    assert code == 0 and json.loads(out)["cached"]
    [note] = err.strip().splitlines()
    assert note == f"note: --n-jobs 1000 capped to {machine_cores()}, the number of cores this process may use"
    return note


def _config_file_refused(content: Callable[[Path], Path], *fragments: str):
    def check(folder: Path) -> str:
        path = content(folder)
        code, out, err = _cli("run", "--config-file", str(path), "--json")
        assert code == 2 and out == ""
        assert not (folder / "artifacts").exists(), "work started before the config was refused"
        return _one_error_line(err, *fragments).replace(str(path), "FILE")
    return check


def _file(name: str, data: bytes):
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name
    return make


case("--config-file binary", "exit 2, one line, no traceback")(
    _config_file_refused(_file("c.json", np.random.default_rng(1).bytes(512)), "is not a JSON text file"))
case("--config-file JSON list", "exit 2, one line")(
    _config_file_refused(_file("c.json", b"[1, 2]"), "must hold a JSON object"))
case("--config-file wrongly typed classes", "exit 2, one line naming the field")(
    _config_file_refused(_file("c.json", b'{"classes": 5}'), "classes must be a list of class names"))
case("--config-file wrongly typed augment", "exit 2, one line naming the field")(
    _config_file_refused(_file("c.json", b'{"augment": {"zoom": "big"}}'), "augment.zoom must be a number"))
case("--config-file FIFO", "exit 2, never opened (no hang)")(
    _config_file_refused(_make_fifo, "is a FIFO"))


@case("95% CI above 1", "printed clipped to 1.0000")
def _ci_clipped(folder: Path) -> str:
    fold = {"fold": 0, "val_acc": 1.0, "val_loss": 0.1, "train_acc": 1.0, "balanced_acc": 1.0, "macro_f1": 1.0,
            "seconds": 1.0}
    result = {"run_id": "x", "cached": True, "config": {"model": "nb", "protocol": "strict", "folds": 3},
              "dataset": {"name": "d"}, "folds": [{**fold, "fold": i} for i in range(3)],
              "summary": {"val_acc": {"mean": 0.8333, "std": 0.29, "min": 0.5, "max": 1.0, "ci95": [0.4749, 1.1918]}}}
    last = run_text(result).splitlines()[-1]
    assert last.endswith("95% CI 0.4749-1.0000)"), last
    return last[last.index("95% CI"):].rstrip(")")


@case("1 or 2 folds (a holdout split, a 2-fold run)", "no interval, no spread of one fold: n/a, said why")
def _too_few_folds_for_an_interval(folder: Path) -> str:
    from leukdash.evaluation.compare import format_comparison
    from leukdash.metrics import summarize_folds

    lines, rows = [], []
    for values in ([0.4033], [0.5, 0.9]):
        folds = [{"fold": i, "val_acc": v, "val_loss": 0.1, "train_acc": 1.0, "balanced_acc": v, "macro_f1": v,
                  "seconds": 1.0} for i, v in enumerate(values)]
        result = {"run_id": "x", "cached": True, "config": {"model": "nb", "protocol": "strict", "folds": len(values)},
                  "dataset": {"name": "d"}, "folds": folds, "summary": summarize_folds(folds)}
        lines.append(run_text(result).splitlines()[-1])
        rows.append({"run_id": f"run-{len(values)}", "label": "nb", "summary": result["summary"],
                     "val_acc_per_fold": values})
    assert lines[0] == "mean val_acc 0.4033 (std n/a, min 0.4033, max 0.4033, 95% CI n/a: 1 fold is too few for one)"
    assert lines[1] == ("mean val_acc 0.7000 (std 0.2828, min 0.5000, max 0.9000, 95% CI n/a: 2 folds are too few "
                        "for one)")
    # compare's table says the same of each run's spread.
    table = format_comparison({"runs": rows, "mcnemar": []}).splitlines()
    assert [line.split()[3] for line in table] == ["std", "n/a", "0.2828"]
    return lines[0][lines[0].index("95% CI"):].rstrip(")")


def test_folds_that_all_scored_the_same_give_no_interval_and_say_why():
    """Three folds all right (an SVM on a small easy set): summarize stores 1.0-1.0, but the line says n/a and why,
    not a "95% CI 1.0000-1.0000" read as a certainty; folds that differ keep their interval."""
    from leukdash.metrics import summarize_folds

    def last_line(values):
        folds = [{"fold": i, "val_acc": v, "val_loss": 0.1, "train_acc": 1.0, "balanced_acc": v, "macro_f1": v,
                  "seconds": 1.0} for i, v in enumerate(values)]
        result = {"run_id": "x", "cached": True, "config": {"model": "svm", "protocol": "strict", "folds": 3},
                  "dataset": {"name": "d"}, "folds": folds, "summary": summarize_folds(folds)}
        return run_text(result).splitlines()[-1]

    assert last_line([1.0, 1.0, 1.0]) == ("mean val_acc 1.0000 (std 0.0000, min 1.0000, max 1.0000, 95% CI n/a: "
                                          "every fold scored 1.0000, and a zero-width interval would read as a "
                                          "certainty)")
    assert last_line([0.8, 0.9, 1.0]).endswith("95% CI 0.6516-1.0000)")


def outcome(experiment, values):
    """A report matrix outcome of ``experiment`` whose folds scored ``values`` (the report's tables read these)."""
    from leukdash.metrics import summarize_folds
    from leukdash.reporting.matrix import Outcome

    folds = [{"fold": i, "val_acc": v, "val_loss": 0.1, "train_acc": 1.0, "balanced_acc": v, "macro_f1": v,
              "seconds": 1.0} for i, v in enumerate(values)]
    return Outcome(experiment, {"run_id": experiment.id, "cached": True, "config": experiment.config.to_dict(),
                                "dataset": {"name": "d"}, "folds": folds, "summary": summarize_folds(folds)})


def test_the_reports_interval_cells_say_n_a_where_the_run_line_does():
    """The report's tables gave "100.00% – 100.00%" for folds all alike and a t(1) interval for two folds, where the
    run's line says "95% CI n/a"; now the one rule (metrics.no_ci_reason) gives n/a in both; folds that differ keep
    their interval, the same in both."""
    from leukdash.reporting.matrix import experiments
    from leukdash.reporting.report.format import interval
    from leukdash.reporting.report.tables import comparison_table, fold_table

    cnns = [e for e in experiments() if e.exp == "2" and e.config.is_cnn]
    for values in ([1.0, 1.0, 1.0], [0.8, 1.0], [0.8, 0.9, 1.0]):
        done = [outcome(experiment, values) for experiment in cnns]
        summary, line = done[0].result["summary"]["val_acc"], run_text(done[0].result).splitlines()[-1]
        cell = interval(summary, len(values))
        assert (cell == "n/a") == ("95% CI n/a: " in line), (cell, line)
        ci_rows = [row for row in fold_table(done, "2", "t").splitlines() if row.startswith("| **95% CI**")]
        assert ci_rows[0].split(" | ")[1] == cell
        assert f"| {cell} |" in comparison_table(done, "binary", "t")
    assert cell == "65.16% – 100.00%"  # the line's 0.6516-1.0000


def test_the_reports_sd_cells_say_n_a_for_one_fold_as_the_run_line_does():
    """The report's tables gave an SD of 0.00% for a one-fold run, whose CI cell and run line say n/a (one fold has
    no spread to estimate: summarize stores 0); now the one rule (metrics.has_std) gives n/a in both, and runs of
    several folds keep their SD."""
    from leukdash.reporting.matrix import experiments
    from leukdash.reporting.report.tables import comparison_table, fold_table

    cnns = [e for e in experiments() if e.exp == "2" and e.config.is_cnn]
    for values, sd in (([0.8], "n/a"), ([0.8, 1.0], "14.14%")):
        done = [outcome(experiment, values) for experiment in cnns]
        line = run_text(done[0].result).splitlines()[-1]
        assert ("(std n/a," in line) == (sd == "n/a"), line
        sd_rows = [row for row in fold_table(done, "2", "t").splitlines() if row.startswith("| **SD**")]
        assert sd_rows[0].split(" | ")[1] == sd
        table = comparison_table(done, "binary", "t").splitlines()[-1].split(" | ")
        assert table[3] == sd, table


@case("dashboard message naming a server path", "the path shown relative to the data root")
def _server_paths_hidden(folder: Path) -> str:
    from leukdash.data.discovery import open_dataset
    from leukdash.errors import DatasetError
    from leukdash.paths import hide_roots

    (folder / "data" / "empty_set" / "ALL").mkdir(parents=True)
    os.environ["LEUKDASH_DATA"] = str(folder / "data")
    with pytest.raises(DatasetError) as raised:
        open_dataset(str(folder / "data" / "empty_set"))
    shown = hide_roots(str(raised.value))
    assert str(folder) in str(raised.value) and str(folder) not in shown
    assert shown.startswith("no images found in empty_set:"), shown
    return shown


# --------------------------------------------------------------------------- the test

@pytest.mark.parametrize("hostile", CASES, ids=[c.name for c in CASES])
def test_hostile_case(hostile: Case, tmp_path):
    observed = run_case(hostile, tmp_path)
    assert observed
