"""Futures: values that arrive later, from any PE.

A Future lives on the PE that created it; copies sent elsewhere are
references that can only fulfil it. The replies of calls made with ret=True
or awaitable=True arrive here: one value for a call to one chare; for a
broadcast, one message from every PE the broadcast reached with the results
of its members (plus, later, one message from each member that answers on
its own: coroutines and @when methods)."""
from . import _charmpy, coro
from .charm import charm
from .errors import remote_exception, where

EM_BCAST, EM_RET, EM_AWAIT = 1, 4, 8   # as in python/ext/cpy.h

_futures = {}       # fid -> Future created on this PE, not done
_last_fid = 0


class Future:
    """A value that arrives later. `get()` (in a coroutine) waits for it;
    `send(value)` or calling the future fulfils it, from any PE."""

    def __init__(self, num_vals=1):
        global _last_fid
        if num_vals < 1:
            raise ValueError("num_vals must be at least 1")
        _last_fid += 1
        self.fid = _last_fid
        self.pe = charm._pe
        self.num_vals = num_vals
        self._values = []       # values; (index, value, exc) for a broadcast
        self._nrecv = 0
        self._exc = None
        self._waiter = None     # the coroutine in get()
        self._multi = None      # the coroutine in charm.iwait()
        self._bcast = None      # broadcast: [PEs still to answer, members later]
        self._ret = True
        self._then = None       # called with the future once it is done (joined())
        _futures[self.fid] = self

    def ready(self):
        if self._bcast is not None:
            return self._bcast[0] == 0 and self._bcast[1] == 0
        return self._nrecv >= self.num_vals

    def get(self):
        """Wait (in a coroutine) and return the value (a list for
        num_vals > 1 and broadcasts); raise what the remote method raised."""
        if not self.ready():
            self._waiter = coro.this("future.get()")
            coro.suspend()
        if self._bcast is not None:
            return self._bcast_result()
        if self._exc is not None:
            raise self._exc
        if not self._ret:
            return None
        return self._values[0] if self.num_vals == 1 else list(self._values)

    def _bcast_result(self):
        items = sorted(self._values, key=lambda t: t[0])
        if not self._ret:
            for _, _, exc in items:
                if exc is not None:
                    raise exc
            return None
        # ret=True: a member that raised has its exception in its place.
        return [exc if exc is not None else value for _, value, exc in items]

    def send(self, value=None):
        send_future(self.pe, self.fid, None, value, None)

    __call__ = send

    def waitReady(self, f=None):
        """charm4py compatibility: iwait() uses this internally."""

    def __reduce__(self):
        return (_future_ref, (self.pe, self.fid, self.num_vals))

    def _deliver(self, index, value, exc):
        if self._bcast is not None:
            # A member that answered on its own.
            self._bcast[1] -= 1
            self._values.append((index, value, exc))
        else:
            self._nrecv += 1
            if exc is not None:
                if self._exc is None:
                    self._exc = exc
            else:
                self._values.append(value)
        self._check_done()

    def _deliver_many(self, items, nlater):
        """One PE's answer to a broadcast."""
        if self._bcast is None:
            raise RuntimeError(f"a broadcast's results arrived for future {self.fid}, which "
                               "does not wait for a broadcast")
        self._bcast[0] -= 1
        self._bcast[1] += nlater
        self._values.extend(items)
        self._check_done()

    def _check_done(self):
        if self.ready():
            _futures.pop(self.fid, None)
            if self._then is not None:
                then, self._then = self._then, None
                then(self)
            for g in (self._waiter, self._multi):
                if g is not None:
                    self._waiter = self._multi = None
                    coro.resume(g, self)


class _FutureRef:
    """A future that lives on another PE: it can only be fulfilled."""
    __slots__ = ("pe", "fid", "num_vals")

    def __init__(self, pe, fid, num_vals):
        self.pe, self.fid, self.num_vals = pe, fid, num_vals

    def send(self, value=None):
        send_future(self.pe, self.fid, None, value, None)

    __call__ = send

    def ready(self):
        raise RuntimeError("ready() is only meaningful on the PE that created the future")

    def get(self):
        raise RuntimeError("get() is only possible on the PE that created the future "
                           f"(PE {self.pe})")

    def __reduce__(self):
        return (_future_ref, (self.pe, self.fid, self.num_vals))


def _future_ref(pe, fid, num_vals):
    if pe == charm._pe:
        f = _futures.get(fid)
        if f is not None:
            return f
    return _FutureRef(pe, fid, num_vals)


def joined(futs, ret):
    """One future for the broadcasts' futures futs (a Combined section's
    call, one broadcast a part): done when all are; with ret, their values
    one after the other, else None (the first exception raised)."""
    out = Future(1)
    left = [len(futs)]

    def done(_):
        left[0] -= 1
        if left[0]:
            return
        vals, exc = [], None
        for f in futs:
            try:
                got = f.get()           # done: returns at once
            except Exception as e:
                if exc is None:
                    exc = e
                continue
            if ret:
                vals.extend(got)
        out._deliver(None, vals if ret else None, exc)

    for f in futs:
        if f.ready():
            done(f)
        else:
            f._then = done
    return out


def create_future(num_vals=1):
    """charm.createFuture(): the same as Future(num_vals)."""
    return Future(num_vals)


def call_future(nvals, ret, bcast):
    """The future of a call made with ret=True or awaitable=True (the C
    proxy asks for it): for a broadcast, nvals is the number of PEs it
    reaches."""
    f = Future(1)
    f._ret = bool(ret)
    if bcast:
        f._bcast = [nvals, 0]
    return f


# ---- sending values ---------------------------------------------------------
def send_future(pe, fid, index, value, exc):
    if pe == charm._pe:
        # Through the scheduler, so a coroutine sending to a local future
        # does not run the waiting coroutine inside itself.
        _charmpy.call_soon(on_future, (fid, index, value, exc))
        return
    try:
        payload = _charmpy.encode(("F", fid, index, value, exc))
    except Exception as e:
        payload = _charmpy.encode(("F", fid, index, None, TypeError(
            f"the value for the future cannot be serialized: {e}")))
    _charmpy.send_py(pe, payload)


def on_future(fid, index, value, exc):
    f = _futures.get(fid)
    if f is None:
        raise RuntimeError(f"a value arrived for future {fid} of PE {charm._pe}, which "
                           "is already done (more values than num_vals?), or is from "
                           "before a restart (futures are not saved in checkpoints)")
    f._deliver(index, value, exc)


def on_many(fid, items, nlater):
    f = _futures.get(fid)
    if f is None:
        raise RuntimeError(f"values arrived for future {fid} of PE {charm._pe}, which "
                           "is already done")
    f._deliver_many(items, nlater)


def reply(reply, result, exc, obj, at=None):
    """Fulfil the future of a call that ran on obj (reply = (fut_pe, fid,
    flags)); exc is what it raised, or None."""
    fut_pe, fid, flags = reply
    if exc is not None:
        exc = remote_exception(exc, at or where(obj, None))
    index = obj.thisIndex if flags & EM_BCAST else None
    send_future(fut_pe, fid, index, result if flags & EM_RET else None, exc)


def reply_many(reply, results, nlater):
    """This PE's answer to a broadcast: results is a list of (index, value,
    exception, where it was raised); nlater members answer on their own."""
    fut_pe, fid, flags = reply
    items = [(index, value if flags & EM_RET else None,
              None if exc is None else remote_exception(exc, at))
             for index, value, exc, at in results]
    if fut_pe == charm._pe:
        _charmpy.call_soon(on_many, (fid, items, nlater))
        return
    try:
        payload = _charmpy.encode(("M", fid, items, nlater))
    except Exception as e:
        payload = _charmpy.encode(("M", fid, [(i, None, TypeError(
            f"a broadcast's return value cannot be serialized: {e}")) for i, _, _ in items],
            nlater))
    _charmpy.send_py(fut_pe, payload)


# ---- waiting -----------------------------------------------------------------
def wait(objs):
    """charm.wait(futures): wait (in a coroutine) until all are ready."""
    for f in objs:
        f.get()


def iwait(objs):
    """charm.iwait(objs): yield each future or channel as it becomes ready
    (a channel is ready when recv() would not wait)."""
    pending = list(objs)
    while pending:
        ready = [f for f in pending if f.ready()]
        if not ready:
            g = coro.this("charm.iwait()")
            for f in pending:
                f._multi = g
            coro.suspend()
            for f in pending:
                f._multi = None
            continue
        for f in ready:
            pending.remove(f)
            yield f


charm.on_message("F", on_future)
charm.on_message("M", on_many)
# A future that goes as an argument (the common way to ask for a reply) is
# encoded natively (codec.c T_REDUCE): (pe, fid, num_vals), not a pickle.
_charmpy.codec_reducible(Future, _future_ref)
_charmpy.codec_reducible(_FutureRef, _future_ref)
