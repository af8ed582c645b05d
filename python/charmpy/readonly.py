"""readonlies: attributes set on PE 0 once the program runs (in main) are
sent to every PE. Every creation carries how many of them its creator had
sent or received (insertions into sparse arrays too), and waits on each PE
until as many arrived there, so the constructors of chares created after a
readonly was set see it whatever path the messages took."""
from . import _charmpy
from .charm import charm

_count = [0]     # PE 0: readonly messages sent; other PEs: received
_waiting = []    # (count needed, function) on PEs where they have not arrived


class Readonlies:
    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        if charm.started and charm._pe == 0 and charm._npes > 1:
            try:
                blob = _charmpy.encode(("R", name, value))
            except Exception as e:
                raise TypeError(f"readonlies.{name} cannot be serialized: {e}") from e
            _charmpy.send_py(-1, blob)
            _count[0] += 1
            _charmpy.set_readonlies(_count[0])


def epoch():
    """How many readonly messages this PE has sent (PE 0) or received."""
    return _count[0]


def after(needed, fn):
    """Call fn once `needed` readonly messages have arrived on this PE (the
    job is not quiescent while it waits)."""
    if _count[0] >= needed:
        fn()
    else:
        _charmpy.qd_hold(1)
        _waiting.append((needed, fn))


def _on_readonly(name, value):
    if charm._pe == 0:
        return
    object.__setattr__(readonlies, name, value)
    _count[0] += 1
    _charmpy.set_readonlies(_count[0])
    ready = [w for w in _waiting if w[0] <= _count[0]]
    _waiting[:] = [w for w in _waiting if w[0] > _count[0]]
    if ready:
        _charmpy.qd_release(len(ready))
    for _, fn in ready:
        fn()


readonlies = Readonlies()
charm.on_message("R", _on_readonly)
