"""Hostile and valid zip uploads: each case names its one-line outcome, leaves nothing behind
in the uploads folder and changes nothing outside it.

``python -m tests.test_uploads`` (from the repository root) prints the cases as a table (case | expected | observed).
"""

import errno
import io
import os
import re
import stat
import struct
import sys
import time
import uuid
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leukdash.service import uploads
from leukdash.data.dataset import Dataset
from leukdash.errors import DatasetError
from leukdash.paths import hide_roots
from leukdash.engine.store import RunStore
from leukdash.service.uploads import (MB, SESSION_IDLE_SECONDS, UploadLimits, extract_zip, mark_session_seen,
                                      uploads_root)
from tests.damage import flip_compressed

SMALL = UploadLimits(max_zip_bytes=4 * MB, max_unpacked_bytes=2 * MB, max_members=1000, max_ratio=50.0,
                     quota_bytes=64 * MB)
# Outside every test folder: a zip-slip that worked would write it.
ESCAPE = Path("/tmp") / f"leukdash-escape-{uuid.uuid4().hex}.png"


def png(seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def make_zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def dataset_zip(seed: int = 0, prefix: str = "mine/") -> bytes:
    return make_zip({f"{prefix}{cls}/{i}.png": png(seed * 100 + i + 10 * k)
                     for k, cls in enumerate(("ALL", "HEALTHY")) for i in range(3)})


def damaged_entry_zip(compression) -> bytes:
    """A zip whose first entry, an uncompressed BMP of few grey levels (so its compressed data is a
    coded stream, not stored bytes), has damaged compressed data; the directory and CRCs are whole."""
    levels = (np.random.default_rng(0).integers(0, 4, (64, 64, 3)) * 60).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, format="BMP")
    return flip_compressed(make_zip({"mine/ALL/0.bmp": buffer.getvalue(), "mine/HEALTHY/0.png": png(2)}, compression),
                           at=0.1)


def with_member(extra_name: str, extra: bytes = b"x") -> bytes:
    return make_zip({"mine/ALL/0.png": png(1), "mine/HEALTHY/0.png": png(2), extra_name: extra})


def symlink_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mine/ALL/0.png", png(1))
        link = zipfile.ZipInfo("mine/HEALTHY/0.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return buffer.getvalue()


def lying_header_zip() -> bytes:
    """A member whose directory entry declares 1,000 bytes for 3 MB of content."""
    data = bytearray(make_zip({"mine/ALL/0.bmp": b"\0" * (3 * MB)}))
    central = data.rfind(b"PK\x01\x02")
    data[central + 24:central + 28] = struct.pack("<I", 1000)  # uncompressed size
    return bytes(data)


def duplicate_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name: that is the point
        for seed in (1, 2):
            archive.writestr("mine/ALL/0.png", png(seed))
    return buffer.getvalue()


def many_members(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i in range(count):
            archive.writestr(f"mine/ALL/{i}.png", b"")
    return buffer.getvalue()


# case: (what it is, how it is built, the limits, the outcome expected: a message pattern or "accepted")
CASES = {
    "valid class-folder zip": (lambda: dataset_zip(), SMALL, "accepted"),
    "zip-slip, relative (../)": (lambda: with_member(f"mine/../../../../../..{ESCAPE}"), SMALL,
                                 r"unsafe path in zip: mine/\.\./"),
    "zip-slip, absolute (/tmp/...)": (lambda: with_member(str(ESCAPE)), SMALL, r"unsafe path in zip: /tmp/"),
    "zip-slip, Windows drive (C:\\)": (lambda: with_member("C:\\evil.png"), SMALL, r"unsafe path in zip: C:"),
    "symbolic link member": (symlink_zip, SMALL, r"symbolic link in zip: mine/HEALTHY/0\.png"),
    "zip bomb by ratio (8 MB of zeros)": (lambda: with_member("mine/ALL/z.bmp", b"\0" * (8 * MB)),
                                          UploadLimits(max_unpacked_bytes=64 * MB, max_ratio=50.0),
                                          r"zip entry mine/ALL/z\.bmp is compressed more than 50:1"),
    "zip bomb by total size (3 MB, limit 2 MB)": (lambda: with_member("mine/ALL/r.bmp", os.urandom(3 * MB)), SMALL,
                                                  r"the zip unpacks to more than 2 MB \(the limit\)"),
    "100,000 tiny members": (lambda: many_members(100_000), UploadLimits(),
                             r"the zip holds 100,000 entries, more than the 50,000 allowed"),
    "directory declares less than its content": (lying_header_zip, SMALL,
                                                 r"damaged or unsupported zip entry mine/ALL/0\.bmp: Bad CRC-32"),
    "zip larger than the upload limit": (lambda: with_member("mine/ALL/r.bmp", os.urandom(5 * MB)), SMALL,
                                         r"the zip is 5\.0 MB, more than the 4 MB allowed"),
    "member name too long for the file system": (
        lambda: with_member("mine/ALL/" + "x" * 300 + ".png", png(3)), SMALL,
        r"cannot unpack zip entry mine/ALL/x{41}…x{16}\.png: File name too long"),
    "zip-slip with a newline in the name": (lambda: with_member("../evil\nALL/0.png"), SMALL,
                                            r"unsafe path in zip: \.\./evil\\nALL/0\.png"),
    "two members with one name": (duplicate_zip, SMALL,
                                  r"duplicate entry in zip: mine/ALL/0\.png"),
    "damaged deflate data in an entry": (lambda: damaged_entry_zip(zipfile.ZIP_DEFLATED), SMALL,
                                         r"damaged or unsupported zip entry mine/ALL/0\.bmp: Error -3 while decompressing"),
    "damaged bzip2 data in an entry": (lambda: damaged_entry_zip(zipfile.ZIP_BZIP2), SMALL,
                                       r"damaged or unsupported zip entry mine/ALL/0\.bmp: Invalid data stream"),
    "damaged LZMA data in an entry": (lambda: damaged_entry_zip(zipfile.ZIP_LZMA), SMALL,
                                      r"damaged or unsupported zip entry mine/ALL/0\.bmp: Corrupt input data"),
    "not a zip": (lambda: b"plain text, not a zip", SMALL, r"the uploaded file is not a zip archive"),
    "empty file": (lambda: b"", SMALL, r"the uploaded file is not a zip archive"),
}


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folders`` (uploads left out) with its size and modification time."""
    skip = uploads_root()
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for folder in folders for p in folder.rglob("*")
            if p.is_file() and not p.is_relative_to(skip)}


def left_in_uploads() -> list[str]:
    root = uploads_root()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name != ".lock") if root.is_dir() else []


def observe(name: str) -> str:
    build, limits, _ = CASES[name]
    try:
        folder = extract_zip(build(), name="mine", session="s1", limits=limits)
    except DatasetError as error:
        return str(error)
    return f"accepted: {', '.join(Dataset.from_folder(folder).classes)}"


@pytest.fixture
def existing(tmp_path, isolated_artifacts):
    """A store run and a data file that no upload may touch."""
    (tmp_path / "data.txt").write_text("keep")
    RunStore().write_meta("r1", {"config": {"dataset": "synthetic"}})
    return [tmp_path, isolated_artifacts]


@pytest.mark.parametrize("name", list(CASES))
def test_upload_case(name, existing):
    before = snapshot(*existing)
    expected = CASES[name][2]
    observed = observe(name)
    assert "\n" not in observed
    if expected == "accepted":
        assert observed == "accepted: ALL, HEALTHY"
        [upload] = [p for p in (uploads_root() / "s1").iterdir()]
        assert upload.name.startswith("mine-") and sorted(p.name for p in upload.iterdir()) == ["mine"]
    else:
        assert re.fullmatch(expected + ".*", observed), observed
        assert left_in_uploads() == []
    assert snapshot(*existing) == before
    assert not ESCAPE.exists()


def test_the_stream_stops_at_the_limit_even_if_the_directory_passed(monkeypatch):
    """Declared sizes are not trusted alone: with the directory check bypassed, writing stops at
    the limit (within one chunk) and the partial upload is deleted."""
    monkeypatch.setattr(uploads, "_checked_members", lambda archive, limits: archive.infolist())
    written = []
    real_open = open

    def watched_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if "x" in mode:
            written.append(Path(path))
        return handle

    monkeypatch.setattr("builtins.open", watched_open)
    data = make_zip({f"mine/ALL/{i}.bmp": os.urandom(MB) for i in range(4)})
    limits = UploadLimits(max_unpacked_bytes=2 * MB)
    with pytest.raises(DatasetError, match=r"^the zip unpacks to more than 2 MB \(the limit\)$"):
        extract_zip(data, name="mine", session="s1", limits=limits)
    assert len(written) == 3  # the third member crossed the limit; the fourth never opened
    assert left_in_uploads() == []


def test_same_zip_is_reused_in_a_session_and_separate_between_sessions():
    data = dataset_zip()
    first = extract_zip(data, name="mine", session="s1", limits=SMALL)
    assert extract_zip(data, name="mine", session="s1", limits=SMALL) == first
    other = extract_zip(data, name="mine", session="s2", limits=SMALL)
    assert other != first and other.is_relative_to(uploads_root() / "s2")
    # What a page shows of an upload's folder: neither the server's folders nor the session token.
    token = "0123456789abcdef01234567"
    shown = hide_roots(f"Cannot open {extract_zip(data, name='mine', session=token, limits=SMALL) / 'ALL'}")
    assert shown.startswith("Cannot open mine-") and shown.endswith("/ALL") and token not in shown
    with pytest.raises(DatasetError, match="^invalid upload name or session token$"):
        extract_zip(data, name="mine", session="../s1", limits=SMALL)


@pytest.mark.parametrize("store", ["read-only", "a file where the uploads folder goes"])
def test_an_upload_to_a_store_that_cannot_take_it_is_one_line(isolated_artifacts, monkeypatch, store):
    from leukdash.errors import LeukdashError

    if store == "read-only":  # as a read-only mount answers (the tests run as root: chmod would not do)
        def read_only(path, *args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        monkeypatch.setattr(os, "mkdir", read_only)
    else:
        (isolated_artifacts / "uploads").write_text("not a folder")
    with pytest.raises(LeukdashError) as refused:
        extract_zip(dataset_zip(), name="mine", session="s1", limits=SMALL)
    shown = hide_roots(str(refused.value))
    assert "\n" not in shown and shown.startswith("cannot write uploads"), shown
    assert ("read-only" if store == "read-only" else "a file stands where a folder is needed") in shown, shown


def test_a_removed_uploads_session_token_is_hidden_too():
    token = "0123456789abcdef01234567"
    folder = extract_zip(dataset_zip(), name="mine", session=token, limits=SMALL)
    uploads.remove_upload(folder)  # as when evicted to make room: the session's folder goes with it
    assert not (uploads_root() / token).exists()
    relative = folder.relative_to(uploads_root().parent)  # how a session's dataset names it
    shown = hide_roots(f"Cannot open dataset '{relative}': unknown dataset '{folder}'")
    inside = folder.relative_to(uploads_root() / token)  # the upload's own folders, e.g. mine-<hash>/mine
    assert token not in shown and shown == f"Cannot open dataset '{inside}': unknown dataset '{inside}'", shown


def test_quota_evicts_the_least_recently_used_upload_but_never_one_a_run_uses():
    a = extract_zip(dataset_zip(0), name="a", session="s1", limits=SMALL)
    size = sum(p.stat().st_size for p in a.rglob("*") if p.is_file())
    limits = UploadLimits(quota_bytes=int(2.5 * size))  # room for two uploads (all have the same size)
    b = extract_zip(dataset_zip(1), name="b", session="s2", limits=limits)
    os.utime(a.parent, (1, 1))  # a is the least recently used
    RunStore().write_meta("r1", {"config": {"dataset": str(a)}, "dataset": {"path": str(a)}})
    c = extract_zip(dataset_zip(2), name="c", session="s1", limits=limits)
    assert a.is_dir() and not b.exists() and c.is_dir()  # b evicted: a is a stored run's dataset
    assert not (uploads_root() / "s2").exists()
    # A queued or running job names its dataset in job_config.json: c is kept as well.
    RunStore().run_dir("r2").mkdir(parents=True)
    (RunStore().run_dir("r2") / "job_config.json").write_text(f'{{"dataset": "{c}"}}')
    with pytest.raises(DatasetError, match=r"^the uploads folder is full \(.*, taken by uploads that stored runs or "
                                           r"jobs use, which are kept\): try a smaller zip; room comes back only "
                                           r"when such runs are deleted or the server's LEUKDASH_UPLOADS_MB is raised$"):
        extract_zip(dataset_zip(3), name="d", session="s3", limits=limits)
    assert a.is_dir() and c.is_dir() and not (uploads_root() / "s3").exists()


def test_an_upload_larger_than_the_quota_is_refused_and_removed():
    data = dataset_zip()
    with pytest.raises(DatasetError, match="uploads folder is full"):
        extract_zip(data, name="mine", session="s1", limits=UploadLimits(quota_bytes=100))
    assert left_in_uploads() == []


UNESCAPE = re.compile(r"\\(.)")  # a pattern's escapes, for reading it as text


def table() -> tuple[str, int]:
    """The cases as a Markdown table (as benchmarks/hostile_table.py prints its own), each run once
    in a temporary artifacts folder; and how many did not go as expected."""
    import tempfile

    rows, failed = ["| # | case | expected | observed |", "|---|---|---|---|"], 0
    with tempfile.TemporaryDirectory() as folder:
        os.environ["LEUKDASH_ARTIFACTS"] = folder
        for number, (name, (_, _, expected)) in enumerate(CASES.items(), 1):
            observed = observe(name)
            if expected == "accepted":
                ok = observed.startswith("accepted")
                for upload in list((uploads_root() / "s1").iterdir()):
                    uploads.remove_upload(upload)
            else:
                ok = bool(re.fullmatch(expected + ".*", observed)) and not left_in_uploads()
                observed += "; nothing left" if not left_in_uploads() else f"; LEFT: {left_in_uploads()}"
            failed += not ok
            shown = expected if expected == "accepted" else "refused: " + UNESCAPE.sub(r"\1", expected)
            rows.append(f"| {number} | {name} | {shown} | {observed if ok else 'FAILED: ' + observed} |")
    return "\n".join(rows), failed


if __name__ == "__main__":
    text, failed = table()
    print(text)
    print(f"\n{len(CASES)} cases, {len(CASES) - failed} as expected, {failed} not", file=sys.stderr)
    sys.exit(1 if failed else 0)


def test_an_ended_sessions_uploads_that_only_finished_runs_name_make_room():
    """A reload starts a new session: the old one's uploads, and its finished runs, are seen by no one.
    Once it has been idle a day, its uploads that only finished runs name are evicted to make room
    (their runs stay); a live session's, and any a queued or running run names, are kept."""
    a = extract_zip(dataset_zip(0), name="a", session="s1", limits=SMALL)
    size = sum(p.stat().st_size for p in a.rglob("*") if p.is_file())
    limits = UploadLimits(quota_bytes=int(2.5 * size))  # room for two uploads
    b = extract_zip(dataset_zip(1), name="b", session="s2", limits=limits)
    for run_id, upload in (("r1", a), ("r2", b)):  # finished runs: a summary beside their meta
        RunStore().write_meta(run_id, {"config": {"dataset": str(upload)}, "dataset": {"path": str(upload)}})
        (RunStore().run_dir(run_id) / "summary.json").write_text("{}")
    os.utime(a.parent, (1, 1))  # a's upload (the zip's folder, above its wrapper) is the least recently used...
    mark_session_seen("s1")  # ...of a session still alive: kept, and b too (its session seen just now)
    with pytest.raises(DatasetError, match="the uploads folder is full"):
        extract_zip(dataset_zip(2), name="c", session="s3", limits=limits)
    ended = time.time() - SESSION_IDLE_SECONDS - 60
    os.utime(uploads_root() / "s1", (ended, ended))  # s1 not seen for a day: its upload makes room, its run stays
    c = extract_zip(dataset_zip(2), name="c", session="s3", limits=limits)
    assert not a.exists() and b.is_dir() and c.is_dir() and (RunStore().run_dir("r1") / "meta.json").is_file()
    (RunStore().run_dir("r2") / "summary.json").unlink()  # b's run is computing again: kept, however idle
    os.utime(uploads_root() / "s2", (ended, ended))
    d = extract_zip(dataset_zip(3), name="d", session="s4", limits=limits)
    assert b.is_dir() and not c.exists() and d.is_dir()  # c, named by no run, made room
