"""The `charm` object: start and end of the program, PEs and hosts, options,
and the registry of the Python layer's runtime messages.

A runtime message is a tuple (tag, *args) encoded by the C codec and sent
with `charm.send_msg(pe, tag, *args)`; the module that owns the tag
registers its handler with `charm.on_message(tag, fn, coll=False)`. With
coll=True the first argument is a collection id, and a message that arrives
before that collection exists on this PE waits for it. Every feature
module registers its tags and its public functions here (see the end of
this file), so that a new feature arrives as a new module."""
import sys

from greenlet import getcurrent

from . import _charmpy
from .options import default_options, pending_notes, say_once

_encode = _charmpy.encode


class _Charm:
    def __init__(self):
        self.options = default_options()
        self.started = False
        self.thisProxy = None   # the runtime on every PE, as a group (remote.py)
        self._pe, self._npes = 0, 1
        self._my_host, self._num_hosts, self._pe_host = 0, 1, (0,)
        self._flags = {}        # runtime flags given on the command line
        self._profiling = False # entry methods are timed (options.profiling, +stats)
        self._lb_comm = False   # who calls whom is recorded (GreedyCommLB, lb.py)
        self._sched = None      # the scheduler's greenlet
        self._colls = {}        # coll -> chare.Collection (this PE's view)
        self._handlers = {}     # message tag -> (function, needs its collection)
        self._early = {}        # coll -> runtime messages that came before the creation

    def __reduce__(self):
        # The one `charm` of each PE: a function that uses it (a lambda sent
        # by cloudpickle) finds this PE's on arrival.
        return "charm"

    # ---- runtime messages --------------------------------------------------
    def on_message(self, tag, fn, coll=False):
        if tag in self._handlers:
            raise RuntimeError(f"runtime message tag {tag!r} registered twice")
        self._handlers[tag] = (fn, coll)

    def send_msg(self, pe, tag, *args):
        """Send runtime message (tag, *args) to PE pe (every PE when pe < 0)."""
        _charmpy.send_py(pe, _encode((tag,) + args))

    def _on_py(self, payload):
        msg = _charmpy.decode(payload)
        fn, needs_coll = self._handlers[msg[0]]
        if needs_coll and _charmpy.members(msg[1]) is None:
            # About a collection whose creation has not reached this PE yet.
            self._early.setdefault(msg[1], []).append(payload)
            _charmpy.qd_hold(1)
            return
        fn(*msg[1:])

    def _flush_early(self, coll):
        early = self._early.pop(coll, ())
        if early:
            _charmpy.qd_release(len(early))
        for payload in early:
            self._on_py(payload)

    # ---- start and end -----------------------------------------------------
    def start(self, entry=None, classes=(), modules=(), interactive=False):
        """Start the runtime on every PE; on PE 0 run `entry(args)` as a
        coroutine, or construct the main chare when entry is a Chare
        subclass. Returns only by ending the process."""
        if self.started:
            raise RuntimeError("charm.start() was already called")
        if interactive:
            raise NotImplementedError("charm.start(interactive=True): the interactive console "
                                      "is not available in charmpy yet; run a program")
        _check_entry(entry)
        _register(classes, modules)
        self.started = True
        try:
            sys.stdout.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
        o = self.options
        self._pe, self._npes, argv, self._flags = _charmpy.init(
            _hooks(), list(sys.argv), bool(o.local_msg_optim), bool(o.profiling),
            int(o.pickle_protocol), _trace_path(o.trace))
        sys.argv[:] = argv
        self._profiling = bool(o.profiling) or "+stats" in self._flags
        if "++quiet" in self._flags:
            o.quiet = True
        self._check_balancer()
        lb.start()
        self._my_host, self._num_hosts, self._pe_host = _charmpy.host_table()
        self._sched = getcurrent()
        remote.install()
        restart = checkpoint.restart_path()
        if self._pe == 0:
            for text in pending_notes(o, self._flags):
                say_once(text)
            if restart is not None:
                _charmpy.call_soon(checkpoint.restart_begin, (restart,))
            elif entry is not None:
                _charmpy.call_soon(chare.start_main, (entry, list(sys.argv)))
        code = _charmpy.run()
        sys.stdout.flush()
        sys.stderr.flush()
        sys.exit(code)

    def _check_balancer(self):
        """A load balancer asked for by name (options.balancer, +balancer)
        must exist: else the job ends, naming the ones there are."""
        name = self.options.balancer
        if name is None:
            name = self._flags.get("+balancer")
        if name is not None and name not in _charmpy.lb_strategies() and self._pe == 0:
            self.abort(f"unknown load balancer {name!r}: the strategies are "
                       + ", ".join(_charmpy.lb_strategies()))

    def exit(self, exit_code=0):
        """End the program on every PE; the launcher exits with exit_code."""
        _charmpy.exit(int(exit_code))

    def abort(self, message):
        """End the program with `message` and a non-zero exit code."""
        sys.stdout.flush()
        sys.stderr.write(f"charmpy: PE {self._pe}: charm.abort: {message}\n")
        sys.stderr.flush()
        _charmpy.abort(str(message))

    def note(self, name):
        """Say once for the whole job that `name` is accepted but not acted
        on yet (options.NOT_YET); PE 0 prints it."""
        if self._pe == 0 or not self.started:
            from .options import note_text
            say_once(note_text(name))
        else:
            self.send_msg(0, "N", name)

    # ---- PEs and hosts -----------------------------------------------------
    def myPe(self):
        return self._pe

    def numPes(self):
        return self._npes

    def wallTime(self):
        return _charmpy.wall_time()

    def numHosts(self):
        return self._num_hosts

    def myHost(self):
        return self._my_host

    def getHostPes(self, host):
        self._check_host(host)
        return [pe for pe, h in enumerate(self._pe_host) if h == host]

    def getHostNumPes(self, host):
        return len(self.getHostPes(host))

    def getHostFirstPe(self, host):
        return self.getHostPes(host)[0]

    def getPeHost(self, pe):
        self._check_pe(pe)
        return self._pe_host[pe]

    def getPeHostRank(self, pe):
        return self.getHostPes(self.getPeHost(pe)).index(pe)

    def _check_host(self, host):
        if not isinstance(host, int) or not 0 <= host < self._num_hosts:
            raise ValueError(f"host {host!r} does not exist: hosts are 0 to "
                             f"{self._num_hosts - 1}")

    def _check_pe(self, pe):
        if not isinstance(pe, int) or not 0 <= pe < self._npes:
            raise ValueError(f"PE {pe!r} does not exist: PEs are 0 to {self._npes - 1}")

    def getTopoTreeEdges(self, pe, root_pe, pes=None, bfactor=4):
        """(parent, children) of `pe` in the bfactor-ary spanning tree over
        `pes` (all PEs by default) rooted at root_pe."""
        order = self._tree_order(root_pe, pes)
        pos = order.index(pe)
        parent = None if pos == 0 else order[(pos - 1) // bfactor]
        children = order[pos * bfactor + 1: pos * bfactor + 1 + bfactor]
        return parent, children

    def getTopoSubtrees(self, root_pe, pes, bfactor=4):
        """The PEs of each subtree under root_pe, one list per child."""
        order = self._tree_order(root_pe, pes)
        out = []
        for c in range(1, min(bfactor, len(order) - 1) + 1):
            sub, level = [], [c]
            while level:
                sub.extend(order[i] for i in level)
                level = [j for i in level for j in range(i * bfactor + 1, i * bfactor + 1 + bfactor)
                         if j < len(order)]
            out.append(sub)
        return out

    def _tree_order(self, root_pe, pes):
        pes = list(range(self._npes)) if pes is None else list(pes)
        if root_pe not in pes:
            raise ValueError(f"root PE {root_pe} is not among the PEs given")
        pes.remove(root_pe)
        return [root_pe] + pes


def _trace_path(trace):
    """charm.options.trace: a file name (str or os.PathLike), or None."""
    if trace is None:
        return None
    import os
    try:
        path = os.fspath(trace)
    except TypeError:
        raise TypeError(f"charm.options.trace = {trace!r}: give the file the timeline is "
                        "written to (a str or path), or None") from None
    if not isinstance(path, str) or not path:
        raise ValueError(f"charm.options.trace = {trace!r}: give a file name, such as "
                         "'trace.json'")
    return path


def _check_entry(entry):
    if entry is None or isinstance(entry, type) and issubclass(entry, chare.Chare):
        return
    if not callable(entry):
        raise TypeError(f"charm.start(entry): entry must be a function taking the argument "
                        f"list, or a Chare subclass (the main chare), not {entry!r}")


def _register(classes, modules):
    """Chare classes are found by their module everywhere: this only checks
    and imports what charm.start(classes=, modules=) names."""
    import importlib
    for c in classes:
        chare.register(c)
    for name in modules:
        importlib.import_module(name)


def _hooks():
    """The calls the C extension makes into this layer (python/ext/cpy.h)."""
    return {
        "report_error": errors.report_error,
        "invoke_special": when.invoke_special,
        "recheck": when.recheck,
        "reply": futures.reply,
        "reply_many": futures.reply_many,
        "on_create": chare.on_create,
        "on_py": charm._on_py,
        "insert": location.on_insert,
        "done_inserting": location.done_inserting,
        "arrive": migration.on_arrive,
        "migrations": migration.migrations,
        "routed": location.routed,
        "combine": reduction.combine,
        "on_reduction": reduction.on_reduction,
        "entry_names": chare.entry_names,
        "new_future": futures.call_future,
    }


charm = _Charm()
charm.on_message("N", charm.note)

# The feature modules, which register their runtime messages, and the
# public functions of `charm` they provide.
from . import errors, futures, coro, when, chare, reduction, location, migration  # noqa: E402
from . import remote, stats, lb, qd, checkpoint, pool, channel, sections  # noqa: E402

charm.Future = futures.Future
charm.createFuture = futures.create_future
charm.wait = futures.wait
charm.iwait = futures.iwait
charm.sleep = coro.sleep
charm.scheduleCallableAfter = coro.schedule_callable_after
charm.awaitCreation = chare.await_creation
charm.reducers = reduction.Reducer
charm.addReducer = reduction.add_reducer
charm.printStats = stats.print_stats
charm.LBTurnInstrumentOn = lb.instrument_on
charm.LBTurnInstrumentOff = lb.instrument_off
charm.startQD = qd.startQD
charm.waitQD = qd.waitQD
charm.split = sections.split
charm.combine = sections.combine
charm.checkpoint = checkpoint.checkpoint
charm.lbStats = lb.lb_stats
charm.pool = pool.pool
