"""What C libraries write straight to the process's stderr (file descriptor 2), captured; the
standard streams of a process started with them closed, opened on nothing."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from contextlib import contextmanager

_lock = threading.Lock()


@contextmanager
def stderr_captured():
    """File descriptor 2 redirected to a temporary file while the body runs; ``["bytes"]`` holds
    what was written there (Python's own ``sys.stderr`` included: it is flushed on both sides),
    ``["text"]`` the same decoded. Serialised by a lock (fd 2 is the process's), so captures in
    concurrent threads (the dashboard's) never restore each other's redirection out of order."""
    said = {"bytes": b"", "text": ""}
    with _lock, tempfile.TemporaryFile() as sink:
        _flush_python_stderr()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield said
        finally:
            _flush_python_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            said["bytes"] = sink.read()
            said["text"] = said["bytes"].decode(errors="replace")


def open_closed_standard_streams() -> None:
    """Open on /dev/null the standard file descriptors (0-2) the process was started without (``>&-``,
    ``2>&-``), before any other file is opened: else the next file opened (a run's ``.lock``) would
    take the free number and receive what C libraries write to it (TensorFlow's log). Python's
    ``sys.stdout``/``sys.stderr`` of a closed stream (None, where ``print`` writes to standard output
    instead) become writers to /dev/null: what is written there is dropped, the command goes on."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one, as those below it are open
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))


def write_stderr(data: bytes) -> None:
    """Write to file descriptor 2 whole; nowhere to write (closed, a full disk) is no error."""
    try:
        while data:
            data = data[os.write(2, data):]
    except OSError:
        pass


def _flush_python_stderr() -> None:
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
    except (OSError, ValueError):  # closed, or a broken pipe: nothing of ours is lost by it
        pass
