"""Ways to damage a stored file that the tests of damaged stores, caches and uploads share."""

import contextlib
import io
import zipfile
from pathlib import Path


def flip_compressed(data: bytes, at: float = 0.0) -> bytes:
    """A zip (an .npz) with 32 bytes altered inside its first member's data (compressed or
    stored), from ``at`` (a fraction of that data) on; the archive's structure is left whole, so
    only reading the member finds the damage. At the start of a deflate stream (its block header
    and code tables) zlib itself refuses it; further in, or in stored data, only the CRC tells."""
    damaged = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        member = archive.infolist()[0]
    # The member's data follows its 30-byte local header, name and extra field (their lengths
    # read from the local header itself: they may differ from the central directory's).
    header = member.header_offset
    start = header + 30 + int.from_bytes(data[header + 26:header + 28], "little") + \
        int.from_bytes(data[header + 28:header + 30], "little")
    first = start + int(member.compress_size * at)
    for offset in range(first, min(first + 32, start + member.compress_size)):
        damaged[offset] ^= 0x5A
    return bytes(damaged)


def flip_compressed_bytes(path: Path) -> None:
    """:func:`flip_compressed` on a file, in place."""
    path.write_bytes(flip_compressed(path.read_bytes()))


@contextlib.contextmanager
def file_size_limit(size: int):
    """This process may write no file beyond ``size`` bytes (``ulimit -f``) within it: a write past it fails
    as on a full disk, with its own error (EFBIG)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
