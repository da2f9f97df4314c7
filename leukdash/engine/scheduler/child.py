"""A worker process of our own: computes fold tasks one at a time and relays their progress.

Started with :mod:`subprocess` (not :mod:`multiprocessing`, which forbids a daemonic process,
such as a Dask worker under its nanny, to start children), it runs ``python -c BOOTSTRAP``,
takes this process's ``sys.path``, imports what a fold of its kind (CNN or classic) needs, and
then, for each task, reads two pickles on its stdin (the
:class:`~leukdash.engine.scheduler.task.FoldTask` and the run's inputs) and answers with
pickled ``(kind, value)`` messages on its stdout: any number of ``("event", event)``, then
``("done", outcome)`` or ``("error", exception)``. A child whose output ends without an answer
died (killed, or out of memory): its parent reads that as ``("died", exit status)``.

What a child writes to stderr reaches this process's stderr through the parent, less
TensorFlow's start-up notes (:func:`~leukdash.models.tensorflow_import.tensorflow_note`).

A child's temporary files (``TMPDIR``) go to a folder of its own, which its parent removes when the
child ends: a child is ended by SIGKILL, idle or mid-fold, so neither TensorFlow's ``atexit`` removal
of its autograph files nor a fold's own scratch folder would ever clean up after it.
"""

from __future__ import annotations

import os
import pickle
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from leukdash.engine.scheduler.lifetime import die_with_parent, launch
from leukdash.fd2 import write_stderr
from leukdash.models.tensorflow_import import tensorflow_note

BOOTSTRAP = ("import pickle, sys; sys.path[:] = pickle.load(sys.stdin.buffer); "
             "from leukdash.engine.scheduler.child import serve; "
             "serve(int(sys.argv[1]), sys.argv[2] == 'cnn', float(sys.argv[3]))")


class ChildProcess:
    """The parent's handle on one child; its messages go to ``inbox`` as ``(child, kind, value)``
    (another queue may take its place between tasks).

    ``cnn`` says which tasks it serves: a child that trained a CNN holds TensorFlow's memory.
    """

    def __init__(self, inbox: queue.Queue, cnn: bool = False):
        self.inbox, self.cnn = inbox, cnn
        self.temporary = tempfile.mkdtemp(prefix="leukdash-worker-")
        # A fold computes with one BLAS thread (task.py's threadpool_limits(1)); OpenBLAS would still start
        # a thread per core on import, which a low process limit (ulimit -u) turns into noise and crashes.
        try:
            self.process = launch([sys.executable, "-c", BOOTSTRAP, str(os.getpid()), "cnn" if cnn else "classic",
                                   repr(time.time())],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "TMPDIR": self.temporary})
        except BaseException:  # no process (or thread) to spare: the caller says so; nothing of it may stay
            shutil.rmtree(self.temporary, ignore_errors=True)
            raise
        self._write([pickle.dumps(sys.path)])  # a few KB: fits the pipe, does not block
        threading.Thread(target=self._read, name="leukdash-child-reader", daemon=True).start()
        threading.Thread(target=_relay, args=(self.process.stderr,), name="leukdash-child-stderr",
                         daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, task: bytes, inputs: bytes) -> None:
        """Hand over one task (both already pickled), without waiting for the child to read it."""
        threading.Thread(target=self._write, args=([task, inputs],), name="leukdash-child-writer",
                         daemon=True).start()

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self._ended()

    def _ended(self) -> None:
        """Wait for the child's end and remove its temporary folder (from either thread: twice is harmless)."""
        self.process.wait()
        shutil.rmtree(self.temporary, ignore_errors=True)

    def _write(self, frames: list[bytes]) -> None:
        try:
            for frame in frames:
                self.process.stdin.write(frame)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # it died: the reader reports it

    def _read(self) -> None:
        try:
            while True:
                kind, value = pickle.load(self.process.stdout)
                self.inbox.put((self, kind, value))
        except (EOFError, OSError, ValueError, pickle.UnpicklingError):
            self._ended()
            self.inbox.put((self, "died", self.process.returncode))


def _relay(stderr) -> None:
    """Copy a child's stderr, line by line, to this process's file descriptor 2 (where the child's
    went before: a terminal, a log), without TensorFlow's start-up notes; until the child ends."""
    for line in stderr:
        if not tensorflow_note(line):
            write_stderr(line)  # nowhere to write: keep reading, or the child would block on a full pipe


def serve(parent: int, cnn: bool, launched: float) -> None:
    """The child's loop (see the module's docstring); ``cnn``: the kind of fold it is started for,
    ``launched``: when its parent launched it (epoch seconds)."""
    from leukdash.engine.scheduler.task import compute_fold

    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what libraries print goes to stderr, never into the replies
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends us
    try:
        die_with_parent(parent)
        start_failure = None
    except RuntimeError as error:  # no thread to spare (ulimit -u): the task is answered with it, not a death
        start_failure = error
    try:
        _import_for_folds(cnn)
    except Exception:
        pass  # the first fold imports them again, and reports what fails as its error

    # From launch to ready (interpreter, imports): a fixed cost of a run that its first event tells, for
    # the estimates of later runs (leukdash.engine.timing.start_up).
    start_up = {"worker_seconds": round(time.time() - launched, 3), "worker_cnn": cnn}

    def reply(kind: str, value) -> None:
        pickle.dump((kind, value), replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()

    def report(event: dict) -> None:
        nonlocal start_up
        reply("event", {**event, **start_up})
        start_up = {}

    def compute(task, inputs):
        if start_failure is not None:
            raise start_failure
        return compute_fold(task, inputs, report)

    requests = sys.stdin.buffer
    while True:
        try:
            task, inputs = pickle.load(requests), pickle.load(requests)
        except EOFError:
            return
        try:
            outcome = compute(task, inputs)
        except Exception as error:  # the parent raises it as its own
            reply("error", _picklable(error))
        else:
            reply("done", outcome)


def _import_for_folds(cnn: bool) -> None:
    """Import what a fold of the kind needs before its task arrives: seconds of start-up (on a
    2-core AVX2 EPYC, scikit-learn ~2 s, TensorFlow ~7 s) that then overlap the parent's own
    start-up and image loading. The same modules the first fold would import; a classic child
    still never imports TensorFlow."""
    import importlib

    for module in ("leukdash.engine.augment", "leukdash.metrics"):  # the latter: scikit-learn, scipy
        importlib.import_module(module)
    if cnn:
        from leukdash.models.cnn import _keras

        _keras()  # Keras as a fold's training loads it: TensorFlow's threads fixed first
    else:
        importlib.import_module("leukdash.models.classic")


def _picklable(error: Exception) -> Exception:
    import traceback

    error.add_note("".join(traceback.format_exception(error)))  # where it happened, in the child
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
