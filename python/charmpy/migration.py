"""Migration: self.migrate(toPe) moves an array element or a single chare to
another PE with its state (pickle, so __getstate__/__setstate__ count),
the messages @when holds for it and its place in reductions in progress;
migrated() runs on arrival. The location service (python/ext/location.c)
does the protocol: the element's home PE knows where it is, numbers the
calls for a moved element and forwards them; the PE it left forwards what
still arrives there, and the PE it lives on delivers in the home's order
(the comment on location entries there and docs/python-layer.md say why
that keeps each sender's order under MPI too).

A chare moves when its entry method returns, and not while one of its
coroutines is suspended: then it moves when its last coroutine ends."""
import pickle
import sys

from . import _charmpy
from .charm import charm

CHARE, GROUP, ARRAY = 0, 1, 2


def migrate(obj, to_pe):
    """self.migrate(toPe)."""
    proxy = getattr(obj, "thisProxy", None)
    if proxy is None or proxy.kind == GROUP:
        raise TypeError(f"{type(obj).__name__}.migrate(): group members do not migrate "
                        "(only array elements and single chares do)")
    if not isinstance(to_pe, int) or not 0 <= to_pe < charm._npes:
        raise ValueError(f"{type(obj).__name__}.migrate({to_pe!r}): give a PE from 0 to "
                         f"{charm._npes - 1}")
    if not obj.__dict__.get("migratable", True):
        raise RuntimeError(f"{_name(obj)}.migrate({to_pe}): it was pinned with "
                           "setMigratable(False)")
    _check_picklable(obj)
    if "_charmpy_migrate_to" not in obj.__dict__:
        _pending.append(obj)
    obj._charmpy_migrate_to = to_pe
    _charmpy.set_migrating()


_pending = []   # chares that asked to migrate, until the entry method returns
_INTERNAL = ("thisProxy", "thisIndex", "migratable")


def migrations():
    """The migrations hook (after the entry method that asked), and after a
    coroutine or a timer callback ran. Not while a broadcast is delivered to
    this PE's members: the dispatcher runs it after the last one."""
    if _charmpy.in_broadcast():
        _charmpy.set_migrating()
        return
    while _pending:
        depart(_pending.pop(0))


def depart(obj):
    """Move obj now, if it still wants to and no coroutine of it is
    suspended (else this runs again when its last coroutine ends). True
    when it left."""
    to = obj.__dict__.get("_charmpy_migrate_to")
    if to is None or obj.__dict__.get("_charmpy_ncoro", 0):
        return False
    del obj._charmpy_migrate_to
    coll = obj.thisProxy.coll
    key = _key(obj)
    members = _charmpy.members(coll)
    if to == charm._pe or members is None or members.get(key) is not obj:
        return False
    held = obj.__dict__.pop("_charmpy_held", [])
    _charmpy.held.pop(id(obj), None)
    items = [(meth.__name__, args, kwargs, reply, flags)
             for _, meth, args, kwargs, reply, flags in held]
    mig = obj.__dict__.get("_charmpy_mig", 0) + 1
    obj._charmpy_mig = mig
    try:
        # What the runtime keeps in the chare travels beside its own state,
        # so that a __getstate__ that returns only the user's fields loses
        # none of it.
        lb_move = obj.__dict__.pop("_charmpy_lb_move", False)
        internal = {k: v for k, v in obj.__dict__.items() if k in _INTERNAL or
                    k.startswith("_charmpy_")}
        state = _Travel((obj, internal, items, lb_move))
        info = charm._colls[coll]
        _charmpy.lb_forget(obj)
        # Encoded by the codec (pickle protocol 5, big buffers out of band);
        # a chare that cannot travel stays whole. Its channel ends go with it.
        was = _charmpy.chan_moving(True)
        try:
            _charmpy.loc_depart(coll, key, to, state, mig)
        finally:
            _charmpy.chan_moving(was)
    except Exception as e:
        return _stay(obj, mig, held, to, _why(obj, e))
    info.nlocal -= 1
    reduction.member_left(info, obj)
    return True


class _Travel:
    """A departing chare's state as one pickle (the codec encodes a tuple's
    items apart), so that objects the chare and the runtime's entries in it
    share (a channel in an attribute and in the chare's channel table)
    arrive shared."""
    __slots__ = ("state",)

    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        return (_Travel, (self.state,))


def _stay(obj, mig, held, to, why):
    """obj could not leave: it stays, whole, and says why."""
    obj._charmpy_mig = mig - 1
    _restore_held(obj, held)
    sys.stderr.write(f"charmpy: PE {charm._pe}: {_name(obj)} cannot migrate to PE {to} "
                     f"({why}); it stays on PE {charm._pe}\n")
    sys.stderr.flush()
    return False


def on_arrive(coll, key, state, expected, mig, src, nbytes):
    """The arrive hook: a chare migrated here from PE src."""
    obj, internal, items, lb_move = state.state
    obj.__dict__.update(internal)
    info = charm._colls.get(coll)
    if info is None:
        # A single chare on a PE that never had its collection.
        from .chare import Collection
        info = charm._colls[coll] = Collection(obj.thisProxy, (obj.thisProxy.pe,), 0)
        _charmpy.loc_create(obj.thisProxy)
        _charmpy.loc_register(coll, {})
    info.nlocal += 1
    reduction.member_arrived(info, obj)
    if items:
        held = obj.__dict__.setdefault("_charmpy_held", [])
        for name, args, kwargs, reply, flags in items:
            held.append(("when", getattr(obj, name), args, kwargs, reply, flags))
        _charmpy.held[id(obj)] = obj
    obj.migrated()
    _charmpy.loc_arrived(coll, key, obj, mig, expected)
    if lb_move:
        lb.arrived(obj, nbytes)
    if id(obj) in _charmpy.held:
        when.recheck(obj)
    migrations()   # migrate() called from migrated() (not an entry method)


def coroutine_ended(obj):
    """coro.py: obj's last suspended coroutine ended (control is back in the
    scheduler); a migration it asked for meanwhile happens now."""
    if "_charmpy_migrate_to" in obj.__dict__:
        if _charmpy.in_broadcast():
            if all(o is not obj for o in _pending):
                _pending.append(obj)
            _charmpy.set_migrating()
        else:
            depart(obj)


def _key(obj):
    if obj.thisProxy.kind == CHARE:
        return 0
    return obj.thisIndex


def _name(obj):
    idx = getattr(obj, "thisIndex", None)
    return f"{type(obj).__name__}{'' if idx is None else [idx]}"


def _restore_held(obj, held):
    if held:
        obj._charmpy_held = held
        _charmpy.held[id(obj)] = obj


def _why(obj, exc):
    """What cannot be pickled: the attribute, when one is to blame."""
    try:
        state = obj.__getstate__() if hasattr(type(obj), "__getstate__") else obj.__dict__
    except Exception as e:
        return f"its __getstate__ raised {type(e).__name__}: {e}"
    if isinstance(state, dict):
        for name, value in state.items():
            if name == "_charmpy_held":
                continue
            try:
                pickle.dumps(value, 5)
            except Exception as e:
                return f"attribute '{name}' (of type {type(value).__name__}) cannot be " \
                       f"pickled: {e}"
    return f"its state cannot be pickled: {type(exc).__name__}: {exc}"


def _out_of_band(buf):
    return False


# The shapes of chares that pickled (class, attribute names and their types):
# one of the same shape is not pickled twice per move (the check cost as much
# as the move's own encoding). A value whose contents changed (a lock put in
# a list) then fails at the departure instead: the chare stays, whole, and
# says why on stderr (_stay).
_shapes = set()
_SHAPES_MAX = 4096


def _shape(obj):
    cls = type(obj)
    if cls.__getstate__ is not object.__getstate__ or "__reduce_ex__" in cls.__dict__ or \
            "__reduce__" in cls.__dict__:
        return None   # the class decides what travels: check every time
    return (cls,) + tuple((k, type(v)) for k, v in obj.__dict__.items()
                          if k != "_charmpy_held")


def _check_picklable(obj):
    """Refuse at the call a chare whose state cannot travel."""
    shape = _shape(obj)
    if shape is not None and shape in _shapes:
        return
    held = obj.__dict__.pop("_charmpy_held", None)
    was = _charmpy.chan_moving(True)
    try:
        pickle.dumps(obj, 5, buffer_callback=_out_of_band)   # big buffers not copied
    except Exception as e:
        raise TypeError(f"{_name(obj)} cannot migrate: {_why(obj, e)}") from None
    finally:
        _charmpy.chan_moving(was)
        if held is not None:
            obj._charmpy_held = held
    if shape is not None:
        if len(_shapes) >= _SHAPES_MAX:
            _shapes.clear()
        _shapes.add(shape)


from . import lb, reduction, when  # noqa: E402
