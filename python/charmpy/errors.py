"""Errors that cross PEs: an exception raised by an entry method travels to
the caller's future with its remote traceback; one that nothing waits for
ends the job, printed with where it happened."""
import pickle
import sys
import traceback

from . import _charmpy
from .charm import charm


class RemoteTraceback(Exception):
    """The traceback of an exception raised on another PE (the __cause__ of
    the exception that get() raises)."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text

    def __str__(self):
        return self.text


def where(obj, fn):
    """'Class[index].method on PE n' (or 'function on PE n')."""
    if obj is None:
        return f"{getattr(fn, '__qualname__', 'main')} on PE {charm._pe}"
    idx = getattr(obj, "thisIndex", None)
    meth = getattr(fn, "__name__", "?")
    return f"{type(obj).__name__}{'' if idx is None else [idx]}.{meth} on PE {charm._pe}"


def remote_exception(exc, at):
    """exc, ready to travel: picklable, its traceback text in
    `remote_traceback` and as its __cause__."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    tb = RemoteTraceback(f"\n\nTraceback from {at}:\n{text}")
    try:
        pickle.loads(pickle.dumps(exc, 5))   # an __init__ with other arguments
        e = exc                              # pickles but does not unpickle
    except Exception:
        e = RuntimeError(f"{type(exc).__name__}: {exc}")
    e.__cause__ = tb
    e.remote_traceback = tb.text
    return e


def report_error(exc, at):
    """An exception nothing waits for: print it and end the job (with the
    traceback from where it was raised, when it came from another PE)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    remote = getattr(exc, "remote_traceback", None)
    if isinstance(remote, str) and remote.strip() not in text:
        text = remote.lstrip("\n") + "\n" + text
    try:
        sys.stdout.flush()
    except Exception:
        pass
    sys.stderr.write(f"charmpy: PE {charm._pe}: uncaught exception in {at}:\n{text}")
    sys.stderr.flush()
    _charmpy.abort(f"uncaught exception in {at}: {type(exc).__name__}: {exc}")
