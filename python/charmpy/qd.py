"""Quiescence detection: charm.startQD(target) and charm.waitQD().

The runtime detects it (src/runtime/qd.c: counts of messages created and
processed, compared over two waves from PE 0); the Python layer tells it
about the messages it keeps aside until something exists (qd_hold /
qd_release), so that the job is not quiescent while they wait. Messages
that @when holds and coroutines waiting for futures are not in flight:
a job where only those remain is quiescent."""
from . import _charmpy
from .futures import Future, _FutureRef


def startQD(target):
    """Notify `target` once no message is in flight or being processed on
    any PE: a Future (fulfilled with None) or a proxy's entry method (called
    with no arguments, e.g. self.thisProxy.done)."""
    if isinstance(target, (Future, _FutureRef)):
        _charmpy.qd_start(target.send)
    elif callable(target):
        _charmpy.qd_start(target)
    else:
        raise TypeError(f"charm.startQD(target): target is a Future or a proxy's entry "
                        f"method (e.g. self.thisProxy.done), not {target!r}")


def waitQD():
    """In a coroutine: wait until the job is quiescent."""
    f = Future()
    startQD(f)
    f.get()
