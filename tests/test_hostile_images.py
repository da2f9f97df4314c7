"""Hostile images (issue 15 §1): shapes that would cost memory in proportion to their longer
side squared, extreme aspect ratios, data the decoders can only partly read (a JPEG header that
lies, an all-NaN float TIFF), oversized PNG metadata chunks; in a dataset, in run, audit and
predict, and on the Predict page in viewer mode.

Cases are registered as in :mod:`test_hostile` (its helpers are reused) and printed by
``python -m benchmarks.hostile_table`` with the others.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from leukdash.engine.store import RunStore
from test_hostile import (Case, case_registry, _cli, _dataset, _noise, _one_bad_file, _png, _png_chunk, _stderr_fd,  # noqa: F401
                          _write, run_case)

CASES: list[Case] = []
case = case_registry(CASES)


def _strip_png(width: int, height: int) -> bytes:
    """A valid PNG of width x height black pixels: a few KB whatever its size."""
    return _png(np.zeros((height, width, 3), np.uint8))


def _jpeg_header_lies(folder: Path) -> None:
    """A 257x257 JPEG whose frame header claims 7000x7000: libjpeg runs out of data and fills grey."""
    ok, data = cv2.imencode(".jpg", _noise(15, 257))
    data = bytearray(data.tobytes())
    frame = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, frame + 5, 7000, 7000)
    (folder / "liar.jpg").write_bytes(bytes(data))


def _nan_tiff(folder: Path) -> None:
    assert cv2.imwrite(str(folder / "nan.tif"), np.full((16, 16), np.nan, np.float32))


def _png_with_chunk(kind: bytes, payload: bytes) -> bytes:
    """A valid 16x16 PNG with one extra ancillary chunk after its header."""
    png = _png(_noise(16))
    return png[:33] + _png_chunk(kind, payload) + png[33:]  # signature (8) + IHDR (25)


_BIG_TEXT = zlib.compress(b"x" * (4 * 2**20))  # 4 MiB of text in 4 KB

SHAPE_CASES = [
    ("PNG of 50000x1 pixels (150 KB decoded)", "skipped: extreme aspect ratio (bound 20:1), no 7.5 GB square",
     _write("strip.png", _strip_png(50000, 1)), "extreme aspect ratio", 12),
    ("PNG of 1,000,000x1 pixels (3 KB)", "skipped: extreme aspect ratio, no cv2.error",
     _write("line.png", _strip_png(1_000_000, 1)), "more than 20:1", 12),
    ("PNG of 1x30000 pixels", "skipped: extreme aspect ratio", _write("tall.png", _strip_png(1, 30000)),
     "extreme aspect ratio", 12),
    ("PNG of 2000x100 pixels (20:1, the bound)", "loaded (padded and resized)",
     _write("band.png", _strip_png(2000, 100)), None, 13),
    ("PNG of 6000x400 pixels (longer side above 2048)", "loaded, resized before padding",
     _write("wide.png", _strip_png(6000, 400)), None, 13),
    ("JPEG header 7000x7000 over a 257x257 stream", "skipped: corrupt image data, libjpeg's line not on stderr",
     _jpeg_header_lies, "Corrupt JPEG data", 12),
    ("all-NaN float TIFF", "skipped: no pixel values, no RuntimeWarning", _nan_tiff, "NaN", 12),
    ("PNG with a 4 MiB zTXt chunk", "skipped: the chunk named, not 'not a known image format'",
     _write("text.png", _png_with_chunk(b"zTXt", b"Comment\0\0" + _BIG_TEXT)), "text or colour-profile chunk", 12),
    ("PNG with a 4 MiB iCCP chunk", "skipped: the chunk named, not 'not a known image format'",
     _write("profile.png", _png_with_chunk(b"iCCP", b"icc\0\0" + _BIG_TEXT)), "text or colour-profile chunk", 12),
]
for _name, _expected, _make, _reason, _kept in SHAPE_CASES:
    case(_name, _expected)(_one_bad_file(_make, _reason, _kept))


@case("1,000,000x1 PNG and a corrupt JPEG: run, audit and predict", "exit 0 each; both listed with reasons, "
      "the good image predicted, nothing on stderr but the run's lines")
def _hostile_shapes_everywhere(folder: Path) -> str:
    dataset = _dataset(folder)
    (dataset / "ALL" / "line.png").write_bytes(_strip_png(1_000_000, 1))
    _jpeg_header_lies(dataset / "HEALTHY")
    with _stderr_fd() as stderr:
        code, out, err = _cli("audit", str(dataset), "--json")
        assert code == 0, err
        audited = {entry["path"]: entry["reason"] for entry in json.loads(out)["skipped"]}
        code, out, err = _cli("run", str(dataset), "--model", "nb", "--image-size", "16", "--no-augment",
                              "--folds", "3", "--n-jobs", "1", "--json", "--quiet")
        assert code == 0, err
        run_id = json.loads(out)["run_id"]
        code, out, err = _cli("predict", run_id, str(dataset / "ALL" / "line.png"), str(dataset / "ALL" / "all0.png"),
                              str(dataset / "HEALTHY" / "liar.jpg"))
        assert code == 0 and err == "", err
    assert stderr["text"] == "", stderr["text"]
    ran = {entry["path"]: entry["reason"] for entry in RunStore().read_meta(run_id)["dataset"]["skipped"]}
    assert set(audited) == set(ran) == {"ALL/line.png", "HEALTHY/liar.jpg"}, (audited, ran)
    assert "aspect ratio" in ran["ALL/line.png"] and "Corrupt JPEG data" in ran["HEALTHY/liar.jpg"]
    bad, good, corrupt = [line for line in out.strip().splitlines() if not line.startswith(" ")]
    assert "aspect ratio" in bad and "all0.png: ALL (out-of-fold: " in good and "Corrupt JPEG data" in corrupt, out
    return "audit, run and predict exit 0; both refused with their reasons; the good image predicted"


def test_preparing_a_long_image_costs_its_pixels_not_its_side_squared():
    """An 8000x400 image (9.6 MB decoded) prepared at 64 px: padded first, it would need an
    8000x8000 square (192 MB); resized first, a few MB beyond the image."""
    import tracemalloc

    from leukdash.data.preprocess import prepare_one

    image = np.zeros((400, 8000, 3), np.uint8)
    image[:, ::2] = 200
    tracemalloc.start()
    try:
        for mode in ("raw", "cell-keep-asis"):
            tracemalloc.reset_peak()
            prepared = prepare_one(image, 64, mode)
            assert prepared.shape == (64, 64, 3), mode
            assert tracemalloc.get_traced_memory()[1] < 3 * image.nbytes, mode
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("hostile", CASES, ids=[c.name for c in CASES])
def test_hostile_image_case(hostile: Case, tmp_path):
    observed = run_case(hostile, tmp_path)
    assert observed


def test_predict_page_in_viewer_mode_refuses_hostile_uploads_and_answers_the_good_one(monkeypatch, isolated_artifacts):
    """Any visitor of a public (viewer) deployment: a 3 KB 1,000,000x1 PNG and a JPEG whose header
    lies get one error each with the reason; the good image in the same upload is predicted."""
    import shutil

    import streamlit as st
    from streamlit.testing.v1 import AppTest
    from test_app import APP, TIMEOUT, open_page, shown

    shipped = next((Path(__file__).resolve().parent.parent / "artifacts" / "runs").glob("nb-*"))
    shutil.copytree(shipped, isolated_artifacts / "runs" / shipped.name)
    monkeypatch.setenv("LEUKDASH_MODE", "viewer")
    st.cache_data.clear()
    liar = Path(isolated_artifacts) / "upload"
    liar.mkdir()
    _jpeg_header_lies(liar)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    open_page(at, "predict")
    at.file_uploader(key="predict_upload").set_value([
        ("line.png", _strip_png(1_000_000, 1), "image/png"),
        ("liar.jpg", (liar / "liar.jpg").read_bytes(), "image/jpeg"),
        ("cell.png", _png(_noise(3, 32)), "image/png")])
    at.run(timeout=120)
    st.cache_data.clear()
    assert not at.exception, [e.value for e in at.exception]
    errors = [shown(e.value) for e in at.error]
    assert any("line.png" in e and "extreme aspect ratio" in e for e in errors), errors
    assert any("liar.jpg" in e and "Corrupt JPEG data" in e for e in errors), errors
    assert len(errors) == 2, errors
    assert any(m.value.startswith("Predicted:") for m in at.markdown)


def test_predict_names_an_image_that_cannot_be_prepared_and_answers_the_others(tmp_path, monkeypatch):
    """A preparation (resize) error of one image in a predict call is that file's error, not the call's."""
    from leukdash.errors import ImageDecodeError
    from leukdash.evaluation import predict
    from test_hostile import _finished_run

    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tmp_path / "artifacts"))
    dataset, _, result = _finished_run(tmp_path)
    odd = tmp_path / "odd.png"
    odd.write_bytes(_png(_noise(4, 24)))  # 24 px: the only upload of that size
    prepare = predict.FoldEnsemble.prepare

    def failing(self, images):
        if any(np.asarray(image).shape[0] == 24 for image in images):
            raise ImageDecodeError("cannot resize 24x24 image: test")
        return prepare(self, images)

    monkeypatch.setattr(predict.FoldEnsemble, "prepare", failing)
    good, bad = predict.predict_files(result["run_id"], [dataset / "ALL" / "all0.png", odd])
    assert good["predicted"] in ("ALL", "HEALTHY") and "error" not in good
    assert bad["error"] == "cannot resize 24x24 image: test" and "predicted" not in bad


def test_image_types_opencv_reads_are_read_and_a_folder_of_other_types_is_named(tmp_path, capsys):
    """WebP and JPEG 2000 class folders are read; a class folder of HEIC files (no type read) was
    dropped in silence: it is listed, file by file, and named in the refusal it causes."""
    from leukdash.cli import main
    from leukdash.data.discovery import open_dataset

    dataset = _dataset(tmp_path)
    for index, path in enumerate(sorted((dataset / "ALL").glob("*.png"))):
        cv2.imwrite(str(path.with_suffix(".webp" if index % 2 else ".jp2")), cv2.imread(str(path)))
        path.unlink()
    opened = open_dataset(dataset)
    assert opened.counts() == {"ALL": 6, "HEALTHY": 6} and not opened.ignored
    for path in sorted((dataset / "ALL").iterdir()):
        path.rename(path.with_suffix(".heic"))
    assert main(["run", str(dataset), "--model", "nb", "--image-size", "16", "--folds", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "error: ds has 1 class(es) with images (HEALTHY); at least 2 are needed; 6 of 12 file(s) of ds were left "
        "out, unreadable or refused (first: 'ALL/all0.heic': unsupported file type '.heic': no file of its folder "
        "is an image this tool reads, so the folder is not a class (the image types read are .jpg, .jpeg, .png, "
        ".bmp, .tif, .tiff, .webp, .jp2))"), err
    (dataset / "HEALTHY").rename(tmp_path / "away")
    assert main(["audit", str(dataset)]) == 2
    assert capsys.readouterr().err.endswith("expected one folder per class, or ALL-IDB files ImNNN_L.ext (ALL/ holds 6 "
                                            ".heic file(s); the image types read are .jpg, .jpeg, .png, .bmp, "
                                            ".tif, .tiff, .webp, .jp2)\n")


@pytest.mark.parametrize("kind", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_a_picture_with_an_exif_orientation_is_read_upright_everywhere(kind, tmp_path):
    """A phone stores the pixels as the sensor read them and an EXIF tag says how to turn them: the
    tool reads what every viewer shows (Pillow's exif_transpose), in its size too. OpenCV turns a
    TIFF's pixels itself and leaves the others as stored."""
    import io

    from PIL import Image, ImageOps

    from leukdash.data.audit import audit_dataset
    from leukdash.data.dataset import Dataset
    from leukdash.data.decode import decode_image

    stored = np.random.default_rng(7).integers(0, 256, (30, 60, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        buffer = io.BytesIO()
        Image.fromarray(stored).save(buffer, kind, exif=exif.tobytes(), **({"quality": 95} if kind != "TIFF" else {}))
        shown = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue()))).convert("RGB"))
        decoded = decode_image(buffer.getvalue())
        assert decoded.shape == shown.shape == ((60, 30, 3) if orientation >= 5 else (30, 60, 3)), orientation
        assert np.abs(decoded.astype(int) - shown).max() <= 2, orientation  # two JPEG decoders may round apart
        for cls in ("ALL", "HEALTHY"):
            (tmp_path / "ds" / cls).mkdir(parents=True, exist_ok=True)
            (tmp_path / "ds" / cls / f"{orientation}.{kind.lower()}").write_bytes(buffer.getvalue())
    sizes = audit_dataset(Dataset.from_folder(tmp_path / "ds"))["sizes"]
    assert sizes == {"60x30": 8, "30x60": 8}


def test_reading_the_orientation_decodes_no_pixel_before_the_size_is_checked(monkeypatch):
    """The EXIF orientation comes from the header: looking for it must not decode a PNG (Pillow's
    getexif() would, to search the chunks after the pixels), or a picture over the pixel limit
    would be decoded whole before being refused for its size."""
    from PIL import PngImagePlugin

    from leukdash.data.decode import decode_image
    from leukdash.errors import ImageDecodeError

    loads = []
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: loads.append(self.size))
    with pytest.raises(ImageDecodeError, match="image too large: 8000x8000 pixels"):
        decode_image(_strip_png(8000, 8000))
    assert loads == []
