"""What C libraries write straight to the process's stderr (file descriptor 2), captured."""

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
