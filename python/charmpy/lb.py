"""Load balancing, as far as it exists: AtSync()/resumeFromSync() and the
instrumentation switches. No chare moves yet (migration and the
strategies are the next step): AtSync is a barrier of the array's elements
after which each gets resumeFromSync()."""
from .charm import charm

_instrument = [True]   # LBTurnInstrumentOn/Off: measuring loads (for the balancer)


def instrument_on():
    _instrument[0] = True


def instrument_off():
    _instrument[0] = False


def at_sync(obj):
    """self.AtSync(): this element is ready; once every element of the
    array is, each gets resumeFromSync()."""
    from .chare import ARRAY, F_AT_SYNC
    info = charm._colls.get(obj.thisProxy.coll)
    if info is None or obj.thisProxy.kind != ARRAY or not info.flags & F_AT_SYNC:
        raise RuntimeError(f"{type(obj).__name__}.AtSync(): only elements of an array "
                           "created with Array(..., useAtSync=True) call AtSync")
    reduction.contribute(obj, None, None, None, None, stream=reduction.SYNC)


def sync_done(info):
    """At the root of the AtSync barrier: every element is there."""
    if callable(getattr(info.cls, "resumeFromSync", None)):
        info.proxy.resumeFromSync()


from . import reduction  # noqa: E402
