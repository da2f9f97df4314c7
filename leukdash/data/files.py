"""Reading a file a user names without trusting it to be one: regular files only, size checked first.

A FIFO named ``x.jpg`` would block a reader forever, ``/dev/zero`` never ends, and a 1 GB file
would be held in memory before being refused: each is refused from its metadata, before a byte
is read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from leukdash.errors import FileRefused

_KINDS = ((stat.S_ISDIR, "is a folder, not a file"), (stat.S_ISFIFO, "is a FIFO (named pipe), not a file"),
          (stat.S_ISCHR, "is a device, not a file"), (stat.S_ISBLK, "is a device, not a file"),
          (stat.S_ISSOCK, "is a socket, not a file"))


def kind_problem(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is not read, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((reason for test, reason in _KINDS if test(mode)), "is not a regular file")


def stat_problem(path: str | Path) -> str | None:
    """Why ``path`` (symbolic links followed) is not a readable regular file, or None."""
    try:
        return kind_problem(os.stat(path).st_mode)
    except OSError as error:
        return _os_reason(error)


def read_regular_file(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``.

    Raises
    ------
    FileRefused
        With a one-line reason, for a missing file, a folder, FIFO, device, socket or symbolic
        link loop, or a file larger than ``max_bytes``.
    """
    problem = stat_problem(path)
    if problem:
        raise FileRefused(problem)
    try:
        # Non-blocking and no controlling terminal: harmless if the path was swapped for a FIFO
        # or a device since the check above, which fstat then catches.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        raise FileRefused(_os_reason(error)) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        problem = kind_problem(info.st_mode)
        if problem:
            raise FileRefused(problem)
        if info.st_size > max_bytes:
            raise FileRefused(too_large(info.st_size, max_bytes))
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while being read
        raise FileRefused(too_large(len(data), max_bytes))
    return data


def too_large(size: int, max_bytes: int) -> str:
    return f"file too large: {size / 2**20:,.1f} MiB exceeds the limit of {max_bytes / 2**20:,.0f} MiB"


def _os_reason(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if error.errno == errno.ELOOP:
        return "symbolic link loop"
    return f"cannot read file: {error.strerror or error}"
