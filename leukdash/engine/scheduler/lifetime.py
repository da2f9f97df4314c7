"""Child processes that end with the process that started them, even when it is killed (SIGKILL).

Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``) is tied to the *thread* that started
the child, not to its process: a child started from a thread that later ends would be killed
with it. So every child is started from one launcher thread that lives as long as this process
(:func:`launch`), and sets the signal itself once started (:func:`die_with_parent`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

_launcher: ThreadPoolExecutor | None = None
_launcher_lock = threading.Lock()


def launch(argv: list[str], **popen_options) -> subprocess.Popen:
    """``subprocess.Popen(argv, **popen_options)``, started from this process's launcher thread."""
    global _launcher
    with _launcher_lock:
        if _launcher is None:  # its one thread waits for work until the interpreter exits
            _launcher = ThreadPoolExecutor(1, thread_name_prefix="leukdash-launcher")
    return _launcher.submit(subprocess.Popen, argv, **popen_options).result()


def die_with_parent(parent: int) -> None:
    """End this process when ``parent``, the process that started it, is gone."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:  # the kernel sends SIGKILL when the launching thread ends (PR_SET_PDEATHSIG = 1)
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)

    def watch() -> None:  # other platforms (and belt and braces)
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="leukdash-parent-watch", daemon=True).start()
