"""A stop asked for by a signal, remembered where the engine can read it without importing the command line.

Python raises a signal handler's exception wherever the main thread happens to be; inside a weakref
callback or a ``__del__`` (frequent while TensorFlow trains in this process) it is printed as
"Exception ignored" and lost, and the command would compute to its end. The command line's handlers
therefore also :func:`remember` the stop, and computing in this process calls :func:`check` at safe
points (between folds, at each CNN batch and epoch), which raises it again; :func:`quiet_unraisable`
keeps the swallowed one's traceback off stderr.
"""

from __future__ import annotations

import signal


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so the worker pools are stopped on the way out."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_asked: int | None = None  # the signal number of the stop asked for, if any


def interrupt(signum: int) -> KeyboardInterrupt:
    """The interrupt a signal unwinds with: KeyboardInterrupt for SIGINT, :class:`Stopped` for the others."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Stopped(signum)


def remember(signum: int) -> None:
    global _asked
    _asked = signum


def stop(signum: int, frame) -> None:
    """A signal handler: remember the stop (see the module's docstring) and raise it."""
    remember(signum)
    raise interrupt(signum)


def quiet_unraisable(hook):
    """``hook`` (``sys.unraisablehook``) silent on a stop Python swallowed where it landed: :func:`check`
    raises it again, so its "Exception ignored" traceback is noise before the stop's own message."""
    def unraisable(info):
        if not isinstance(info.exc_value, KeyboardInterrupt):
            hook(info)

    return unraisable


def forget() -> None:
    global _asked
    _asked = None


def check() -> None:
    """Raise the stop asked for, if any: its first raise may have been swallowed where it landed."""
    if _asked is not None:
        raise interrupt(_asked)
