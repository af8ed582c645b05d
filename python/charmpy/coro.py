"""Coroutines: entry methods that suspend (@coro, alias @threaded), on
greenlets whose parent is the scheduler's greenlet.

A coroutine knows the chare it runs for. Every time it runs — started by
an entry method, or resumed by a future fulfilled on this PE or another,
a timer, or a condition that became true — and then suspends or ends,
that chare's held messages (@when) and waiting coroutines are re-examined
(when.recheck): its state may have changed. Resuming goes through one
function, resume(), so that no path can skip this."""
import time

from greenlet import getcurrent, greenlet

from . import _charmpy
from .charm import charm


def coro(func):
    """Make an entry method a coroutine: inside it, future.get(),
    self.wait(), charm.wait() and charm.sleep() suspend only this method."""
    func._charmpy_coro = True
    return func


threaded = coro


def coro_ext(event_notify=False):
    """charm4py's coro_ext(): the same as @coro (the event notification it
    offers is for Ray, which charmpy does not emulate)."""
    return coro


class Coroutine(greenlet):
    """A greenlet running an entry method of `chare` (None for main)."""

    def __init__(self, run, chare, method):
        super().__init__(run, parent=charm._sched)
        self.chare = chare
        self.method = method
        self.main = False       # the program's main function (its time: printStats' "main")


def in_coroutine():
    return charm._sched is not None and getcurrent() is not charm._sched


def this(what):
    """The running coroutine, about to wait in `what`; a clear error when
    the caller is not a coroutine."""
    if not in_coroutine():
        raise RuntimeError(f"{what} blocks, so it can only be called in a coroutine: "
                           "decorate the entry method with @coro (main is one)")
    return getcurrent()


def suspend():
    """Give control back to the scheduler until resume(this coroutine)."""
    return charm._sched.switch()


def start(fn, args, kwargs, reply, obj):
    """Run fn(*args, **kwargs) as a coroutine of chare obj (None for main):
    it runs now, until it suspends or ends. reply is the caller's future
    (futures.reply), or None."""
    def body():
        try:
            result = fn(*args, **kwargs)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            charm.exit(code)
            return
        except BaseException as e:
            if reply is not None:
                futures.reply(reply, None, e, obj, where(obj, fn))
                return
            report_error(e, where(obj, fn))
            return
        if reply is not None:
            futures.reply(reply, result, None, obj)
    g = Coroutine(body, obj, getattr(fn, "__name__", None))
    if obj is not None:
        obj.__dict__["_charmpy_ncoro"] = obj.__dict__.get("_charmpy_ncoro", 0) + 1
        g.switch()
    elif charm._profiling:
        g.main = True
        t0 = time.perf_counter()
        g.switch()
        _charmpy.stats_add(None, None, time.perf_counter() - t0)   # main's time
    else:
        g.switch()
    _after_run(g)


def _after_run(g):
    """After coroutine g ran (to a suspension or its end): count it out of
    its chare when it ended, and move the chares that asked to migrate."""
    obj = g.chare
    if obj is not None and g.dead:
        n = obj.__dict__.get("_charmpy_ncoro", 1) - 1
        obj.__dict__["_charmpy_ncoro"] = n
        if n == 0:
            migration.coroutine_ended(obj)
    if migration._pending:
        migration.migrations()


def resume(g, value=None):
    """Continue coroutine g. From the scheduler it runs now; from inside a
    coroutine it is queued (control must come back to the scheduler when g
    suspends again). Then its chare's held messages are re-examined."""
    if getcurrent() is not charm._sched:
        _charmpy.call_soon(resume, (g, value))
        return
    _run_timed(g, value)
    _after_run(g)
    obj = g.chare
    if obj is not None and id(obj) in _charmpy.held:
        when.recheck(obj)


def _run_timed(g, value=None):
    """g runs (from the scheduler) to its next suspension or its end: the
    time counts in its chare's load (when measured) and profile, and the
    calls it makes are its chare's (GreedyCommLB)."""
    obj = g.chare
    prev = _charmpy.lb_enter(obj) if charm._lb_comm and obj is not None else None
    t0 = time.perf_counter()
    try:
        g.switch(value)
    finally:
        dt = time.perf_counter() - t0
        if charm._lb_comm and obj is not None:
            _charmpy.lb_enter(prev)
    if obj is not None:
        _charmpy.lb_add(obj, dt)   # its load, when loads are measured
        if charm._profiling and g.method:
            _charmpy.stats_add(type(obj), g.method, dt)
    elif g.main and charm._profiling:
        _charmpy.stats_add(None, None, dt)     # main's


def resume_waiting(g):
    """when.recheck: coroutine g waiting in self.wait() may go on. As
    resume(), but a migration its end allows waits for the end of the
    recheck (when.recheck runs migration.migrations())."""
    _run_timed(g)
    obj = g.chare
    if obj is not None and g.dead:
        n = obj.__dict__.get("_charmpy_ncoro", 1) - 1
        obj.__dict__["_charmpy_ncoro"] = n
        if n == 0 and "_charmpy_migrate_to" in obj.__dict__ and \
                all(o is not obj for o in migration._pending):
            migration._pending.append(obj)


def sleep(secs):
    """charm.sleep(secs): suspend this coroutine for secs seconds (outside
    a coroutine: time.sleep)."""
    if not in_coroutine():
        time.sleep(secs)
        return
    g = getcurrent()
    _charmpy.call_after(float(secs), resume, (g,))
    suspend()


def schedule_callable_after(callable_, secs, args=()):
    """charm.scheduleCallableAfter(callable, secs, args=[]): call it from
    the scheduler after secs seconds. A chare's bound method counts as code
    of that chare: its held messages are re-examined after it."""
    _charmpy.call_after(float(secs), _call_timer, (callable_, tuple(args)))


def _call_timer(callable_, args):
    callable_(*args)
    if migration._pending:
        migration.migrations()
    obj = getattr(callable_, "__self__", None)
    if obj is not None and id(obj) in _charmpy.held:
        when.recheck(obj)


from . import futures, migration, when  # noqa: E402  (they use this module)
from .errors import report_error, where  # noqa: E402
