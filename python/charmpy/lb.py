"""Load balancing at AtSync: the loads measured in C (python/ext/balance.c,
the wall time of every entry method of a chare, while a balancer is in
use), a strategy in C (src/runtime/lb.c) choosing the new places, the moves
by migration (migration.py), then resumeFromSync() on every element.

A step, for an array created with useAtSync=True, once all its elements
called AtSync() (a reduction of the SYNC stream, reduction.py):
  1. PE 0 asks every PE for its elements' loads ("LBq"); each answers with
     (index, load, migratable) for its elements ("LBr") and starts over;
  2. PE 0 runs the strategy and tells each PE which of its elements go
     where ("LBm");
  3. each moved element, once it arrived, tells PE 0 ("LBa"; a chare that
     cannot move now, or whose state cannot be pickled, says so instead and
     stays);
  4. once every move is answered PE 0 records the step (charm.lbStats(),
     +LBDebug 1 prints it) and broadcasts resumeFromSync().
With no balancer (+balancer / charm.options.balancer unset) AtSync is a
barrier: resumeFromSync() right away, and nothing is measured.

Periodic balancing (+LBPeriod SECS / charm.options.lb_period): every SECS
PE 0 runs the same steps 1-3 for every array not created with useAtSync,
its elements moving between entry methods (a call in flight follows the
element, migration.py), and no resumeFromSync()."""
import sys
import time

from . import _charmpy
from .charm import charm
from .options import say_once

_instrument = [True]   # LBTurnInstrumentOn/Off: measuring loads (for the balancer)
_stats = []            # on PE 0: one dict per step (charm.lbStats())
_steps = {}            # on PE 0: coll -> the step under way (_Step)


def balancer():
    """The strategy's name, or None when load balancing is off."""
    name = charm.options.balancer
    return name if name is not None else charm._flags.get("+balancer")


COMM_AWARE = ("GreedyCommLB",)   # strategies that read who calls whom


def _comm_aware():
    return balancer() in COMM_AWARE and _instrument[0]


def _set_comm():
    charm._lb_comm = _comm_aware()
    _charmpy.lb_comm(charm._lb_comm)


def period():
    """+LBPeriod secs / charm.options.lb_period, or None."""
    v = charm.options.lb_period
    if v is None:
        v = charm._flags.get("+LBPeriod")
    if v is None:
        return None
    try:
        secs = float(v)
    except (TypeError, ValueError):
        secs = -1.0
    if not secs > 0:
        charm.abort(f"the load-balancing period must be a number of seconds > 0, got {v!r} "
                    "(+LBPeriod SECS or charm.options.lb_period = SECS)")
    return secs


def start():
    """charm.start, on every PE: measure loads when a balancer is in use,
    and on PE 0 start periodic balancing when asked."""
    _charmpy.lb_instrument(balancer() is not None and _instrument[0])
    _set_comm()
    secs = period()
    if secs is None or charm._pe != 0:
        return
    if balancer() is None:
        say_once("charmpy: note: +LBPeriod (charm.options.lb_period) without a balancer "
                 "does nothing: add +balancer NAME (or charm.options.balancer)")
        return
    _charmpy.call_after(secs, _tick, (secs,), True)


def instrument_on():
    _instrument[0] = True
    _charmpy.lb_instrument(balancer() is not None)
    _set_comm()
    _since.clear()   # the time not measured is not background


def instrument_off():
    _instrument[0] = False
    _charmpy.lb_instrument(False)
    _set_comm()
    _since.clear()


def set_load(obj, seconds):
    """self.setLoad(seconds): the balancer uses this load for obj instead of
    the measured one (until set again; None goes back to measuring)."""
    if seconds is not None and not (isinstance(seconds, (int, float)) and seconds >= 0):
        raise ValueError(f"{type(obj).__name__}.setLoad({seconds!r}): give a load in "
                         "seconds, >= 0 (or None to measure it again)")
    obj._charmpy_load = None if seconds is None else float(seconds)


def at_sync(obj):
    """self.AtSync(): this element is ready; once every element of the
    array is, the balancer runs and each gets resumeFromSync()."""
    from .chare import ARRAY, F_AT_SYNC
    info = charm._colls.get(obj.thisProxy.coll)
    if info is None or obj.thisProxy.kind != ARRAY or not info.flags & F_AT_SYNC:
        raise RuntimeError(f"{type(obj).__name__}.AtSync(): only elements of an array "
                           "created with Array(..., useAtSync=True) call AtSync")
    reduction.contribute(obj, None, None, None, None, stream=reduction.SYNC)


def _resume(info):
    if callable(getattr(info.cls, "resumeFromSync", None)):
        info.proxy.resumeFromSync()


class _Step:
    __slots__ = ("n", "t0", "replies", "objs", "bg", "edges", "moves", "waiting", "bytes",
                 "stayed", "figures", "periodic")

    def __init__(self, n, periodic=False):
        self.n, self.t0, self.periodic = n, time.perf_counter(), periodic
        self.replies, self.objs = 0, []
        self.bg = [None] * charm._npes
        self.edges = 0
        self.moves = self.waiting = self.bytes = self.stayed = 0
        self.figures = None


_nsteps = [0]


def sync_done(info):
    """At the root of the AtSync barrier (PE 0): every element is there."""
    name = balancer()
    if name is None:
        _resume(info)
        return
    coll = info.proxy.coll
    _nsteps[0] += 1
    _steps[coll] = _Step(_nsteps[0])
    charm.send_msg(-1, "LBq", coll)


_ticking = [0, None]   # on PE 0: periodic steps under way, the period


def _tick(secs):
    """Periodic balancing (PE 0, a background timer: it does not hold
    quiescence back): a step for every array not balanced at AtSync, its
    elements moving between their entry methods; the next tick is set once
    they all ended."""
    from .chare import ARRAY, F_AT_SYNC
    _ticking[1] = secs
    if checkpoint.busy[0]:     # no chare moves while a checkpoint is written
        _charmpy.call_after(secs, _tick, (secs,), True)
        return
    for coll, info in list(charm._colls.items()):
        if info.proxy.kind != ARRAY or info.flags & F_AT_SYNC or coll in _steps:
            continue
        _nsteps[0] += 1
        _steps[coll] = _Step(_nsteps[0], periodic=True)
        _ticking[0] += 1
        charm.send_msg(-1, "LBq", coll)
    if not _ticking[0]:
        _charmpy.call_after(secs, _tick, (secs,), True)


_since = {}   # coll -> lb_times() when this PE last answered for it


def _on_query(coll):
    """Step 1 on every PE: this PE's elements of coll and their loads, and
    its background load since its last answer: the wall time neither idle
    nor spent in these elements (other chares, the runtime, Python's own
    work). None the first time, or where loads are set (setLoad) or not
    measured: then the strategy places by the elements' loads alone."""
    members = _charmpy.members(coll) or {}
    items = []
    ours, user_set = 0.0, False
    comm = _comm_aware()
    for key, obj in members.items():
        measured = _charmpy.lb_take(obj)
        set_to = obj.__dict__.get("_charmpy_load")
        ours += measured
        user_set = user_set or set_to is not None
        # GreedyCommLB: the calls it made to elements of the same array.
        sent = [(k, m, b) for (c, k), (m, b) in _charmpy.lb_take_comm(obj).items()
                if c == coll] if comm else ()
        items.append((key, measured if set_to is None else set_to,
                      bool(obj.__dict__.get("migratable", True)), sent))
    now = _charmpy.lb_times()
    last, _since[coll] = _since.get(coll), now
    bg = None
    if last is not None and _instrument[0] and not user_set:
        bg = max(0.0, (now[0] - last[0]) - (now[1] - last[1]) - ours)
    charm.send_msg(0, "LBr", coll, charm._pe, items, bg)


def _on_reply(coll, pe, items, bg):
    """Step 2 on PE 0: once every PE answered, place and send the moves."""
    st = _steps[coll]
    st.objs += [(pe, key, load, mig, sent) for key, load, mig, sent in items]
    st.bg[pe] = bg
    st.replies += 1
    if st.replies < charm._npes:
        return
    st.objs.sort(key=lambda o: o[1])   # index order: the same table on every run
    table = [(pe, load, mig) for pe, _, load, mig, _ in st.objs]
    if any(b is None for b in st.bg):
        st.bg = None
    at = {o[1]: i for i, o in enumerate(st.objs)}
    edges = [(i, at[k], m, b) for i, o in enumerate(st.objs) for k, m, b in o[4] if k in at]
    st.edges = len(edges)
    _charmpy.trace_instant("load balancing step", st.n)
    places, st.figures = _charmpy.lb_place(balancer(), table, charm._npes, st.bg, seed=st.n,
                                           edges=edges or None)
    moves = {}
    for (pe, key, _, _, _), to in zip(st.objs, places):
        if to != pe:
            moves.setdefault(pe, []).append((key, to))
    st.moves = st.waiting = sum(len(m) for m in moves.values())
    for pe, m in moves.items():
        charm.send_msg(pe, "LBm", coll, m)
    if not st.waiting:
        _finish(coll)


def _on_moves(coll, moves):
    """Step 3 on a PE: its elements leave."""
    members = _charmpy.members(coll) or {}
    for key, to in moves:
        obj = members.get(key)
        if obj is None:
            charm.send_msg(0, "LBa", coll, 0, "gone")
        elif not obj.__dict__.get("migratable", True):
            charm.send_msg(0, "LBa", coll, 0, "it was pinned (setMigratable(False))")
        elif obj.__dict__.get("_charmpy_ncoro", 0):
            # A suspended coroutine: it stays (moving would wait for the
            # coroutine, which may wait for resumeFromSync).
            charm.send_msg(0, "LBa", coll, 0, "a coroutine of it is suspended")
        else:
            obj._charmpy_lb_move = True
            obj._charmpy_migrate_to = to
            if not migration.depart(obj):   # its state cannot be pickled (said why)
                obj.__dict__.pop("_charmpy_lb_move", None)
                charm.send_msg(0, "LBa", coll, 0, "it cannot migrate")


def arrived(obj, nbytes):
    """migration.on_arrive: a move of the balancer is done."""
    charm.send_msg(0, "LBa", obj.thisProxy.coll, nbytes, None)


def _on_ack(coll, nbytes, stayed_why):
    st = _steps[coll]
    st.bytes += nbytes
    st.stayed += stayed_why is not None
    st.waiting -= 1
    if not st.waiting:
        _finish(coll)


def _finish(coll):
    """Step 4 on PE 0: record the step, then resumeFromSync()."""
    st = _steps.pop(coll)
    info = charm._colls[coll]
    f = st.figures
    rec = {"step": st.n, "strategy": balancer(), "array": info.cls.__name__,
           "chares": len(st.objs), "max_before": f["max_before"], "avg": f["avg"],
           "max_after": f["max_after"], "moves": st.moves - st.stayed, "stayed": st.stayed,
           "bytes": st.bytes, "time": time.perf_counter() - st.t0,
           "background": st.bg, "edges": st.edges}
    rec["periodic"] = st.periodic
    _stats.append(rec)
    _charmpy.trace_instant("load balancing done", st.n)
    if _debug():
        avg = rec["avg"] or 1.0
        sys.stdout.flush()
        sys.stderr.write(
            f"charmpy: LB step {rec['step']} ({rec['strategy']}, {rec['array']}, "
            f"{rec['chares']} chares): max/avg load {rec['max_before'] / avg:.3f} before, "
            f"{rec['max_after'] / avg:.3f} predicted after; {rec['moves']} chares moved "
            f"({rec['bytes']} bytes){_stayed(rec)} in {rec['time'] * 1e3:.2f} ms\n")
        sys.stderr.flush()
    if not st.periodic:
        _resume(info)
        return
    _ticking[0] -= 1
    if not _ticking[0]:
        _charmpy.call_after(_ticking[1], _tick, (_ticking[1],), True)


def _stayed(rec):
    return f", {rec['stayed']} could not move now" if rec["stayed"] else ""


def _debug():
    v = charm._flags.get("+LBDebug")
    return v is not None and v not in ("0", "")


def lb_stats():
    """charm.lbStats(): one dict per balancing step so far (on PE 0: the
    steps are run there; other PEs get an empty list)."""
    return [dict(r) for r in _stats]


charm.on_message("LBq", _on_query, coll=True)
charm.on_message("LBr", _on_reply)
charm.on_message("LBm", _on_moves, coll=True)
charm.on_message("LBa", _on_ack)

from . import checkpoint, migration, reduction  # noqa: E402
