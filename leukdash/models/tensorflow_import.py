"""TensorFlow imported without its C++ start-up notes on stderr.

absl logs them at INFO level while TensorFlow is imported, before ``TF_CPP_MIN_LOG_LEVEL`` can
apply: oneDNN is on, which CPU instructions the build uses, a memory tweak. None says anything
about a run, and ``predict`` on a CNN run printed four of them above its answers. A worker's are
dropped by its parent as it relays the worker's stderr (:mod:`leukdash.engine.scheduler.child`);
in the process itself, fd 2 is captured while TensorFlow is imported and every other line is
passed on. ``TF_CPP_MIN_LOG_LEVEL=0`` (TensorFlow's own way to ask for them) shows them all.

One warning of its Python logger is dropped the same way: "N out of the last M calls to <function
...make_predict_function...> triggered tf.function retracing". TensorFlow counts retraces over
all functions together, and a fold ensemble holds one Keras model per fold, each traced once
for a new batch size (Keras traces with ``reduce_retracing``, so the next size reuses it):
``predict`` of 20 images with a 5-fold CNN run printed it, a false alarm about the user's data.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import threading

from leukdash.errors import RunError, interrupt_behind
from leukdash.fd2 import stderr_captured, write_stderr

# The first import, once: a thread that found "tensorflow" in sys.modules while another was still
# importing it got the half-built module (no attribute 'config'), which read as a model that could
# not be loaded. ``_imported`` is set only when the import is complete.
_import_lock = threading.Lock()
_imported = False
# A Ctrl-C during the import leaves half-initialised modules behind, and importing TensorFlow again
# in the same process fails inside it (names registered twice, keras without its attributes).
_interrupted = False
INTERRUPTED_IMPORT = ("TensorFlow's import was interrupted in this Python process, and it cannot be imported "
                      "again there: restart it (the notebook kernel, the command or the dashboard) to use CNNs")

_TENSORFLOW_NOTE = re.compile(rb"I\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+:\d+\] "  # absl's INFO line prefix
                              rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
                              rb"|To enable the following instructions: ")  # cpu_feature_guard's second line


def tensorflow_note(line: bytes) -> bool:
    """Whether a line written to stderr is one of TensorFlow's start-up notes, which are not
    passed on unless ``TF_CPP_MIN_LOG_LEVEL`` is 0."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "0" and _TENSORFLOW_NOTE.match(line) is not None


def import_tensorflow():
    """The ``tensorflow`` module, whole; the first import in this process keeps its notes off stderr,
    and threads asking meanwhile wait for it. After an interrupted import, a RunError that says so."""
    global _imported, _interrupted
    if not _imported:
        with _import_lock:
            if _interrupted:
                raise RunError(INTERRUPTED_IMPORT)
            if not _imported:
                said = {"bytes": b""}
                try:
                    with stderr_captured() as said:
                        importlib.import_module("tensorflow")
                except BaseException as error:
                    _interrupted = interrupt_behind(error) is not None
                    raise
                finally:
                    write_stderr(b"".join(line for line in said["bytes"].splitlines(keepends=True)
                                          if not tensorflow_note(line)))
                logger = logging.getLogger("tensorflow")
                logger.addFilter(_RetracingWarnings())
                _imported = True
    return sys.modules["tensorflow"]


class _RetracingWarnings(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning (see the module docstring),
    unless ``TF_CPP_MIN_LOG_LEVEL`` is 0."""

    def filter(self, record: logging.LogRecord) -> bool:
        return (os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"
                or "triggered tf.function retracing" not in record.getMessage())
