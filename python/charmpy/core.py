"""The thin Python side of the runtime: start-up, chare creation and error
reports. Proxies, message encoding and dispatch live in the C extension
(python/ext/); nothing here runs per entry-method call."""
import inspect
import pickle
import sys
import time
import traceback

from greenlet import getcurrent, greenlet

from . import _charmpy
from ._charmpy import Proxy
from .reduction import Reducer, _Reducer, _reducer_by_name

CHARE, GROUP, ARRAY = 0, 1, 2
_encode = _charmpy.encode   # the C codec: runtime messages between PEs
MAX_DIMS = 6


class Options:
    """charm.options: settings read at charm.start."""

    _defaults = {
        "profiling": False,
        "quiet": False,
        "local_msg_optim": True,
        "pickle_protocol": 5,
        "remote_exec": False,
        "auto_flush_wait_queues": True,
    }

    def __init__(self):
        for k, v in self._defaults.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, name, value):
        if name not in self._defaults:
            raise AttributeError(
                f"charm.options has no option '{name}'; valid options: "
                + ", ".join(sorted(self._defaults)))
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        raise AttributeError(
            f"charm.options has no option '{name}'; valid options: "
            + ", ".join(sorted(self._defaults)))


ENTRY_CORO, ENTRY_WHEN = 1, 2
EM_BCAST, EM_RET, EM_AWAIT = 1, 4, 8


def coro(func):
    """Make an entry method a coroutine: inside it, future.get(),
    self.wait(), charm.wait() and charm.sleep() suspend only this method."""
    func._charmpy_coro = True
    return func


threaded = coro


def when(condition):
    """Hold a message at the receiver until `condition` (an expression over
    self's attributes and the method's parameters) is true."""
    code = compile(condition, f"<@when {condition!r}>", "eval")

    def decorate(func):
        func._charmpy_when = (condition, code)
        func._charmpy_when_test = _condition_function(func, condition, code)
        return func
    return decorate


# self.wait()'s conditions, compiled once each (a loop waits on the same
# string every iteration).
_wait_codes = {}


class _RemoteTraceback(Exception):
    def __init__(self, text):
        super().__init__(text)
        self.text = text

    def __str__(self):
        return self.text


class Future:
    """A value that arrives later. `get()` (in a coroutine) waits for it;
    `send(value)` or calling the future fulfils it, from any PE."""

    def __init__(self, num_vals=1):
        if num_vals < 1:
            raise ValueError("num_vals must be at least 1")
        charm._last_fid += 1
        self.fid = charm._last_fid
        self.pe = charm._pe
        self.num_vals = num_vals
        self._values = []
        self._nrecv = 0         # values and exceptions received
        self._indexed = False
        self._exc = None
        self._waiter = None
        self._multi = None
        self._awaitable = False
        charm._futures[self.fid] = self

    def ready(self):
        return self._nrecv >= self.num_vals

    def get(self):
        if not self.ready():
            charm._suspend(self, "future.get()")
        if self._exc is not None:
            raise self._exc
        if self._awaitable:
            return None
        if self._indexed:
            self._values.sort(key=lambda kv: kv[0])
            vals = [v for _, v in self._values]
        else:
            vals = self._values
        return vals[0] if self.num_vals == 1 and not self._indexed else vals

    def send(self, value=None):
        charm._send_future(self.pe, self.fid, None, value, None)

    __call__ = send

    def __reduce__(self):
        return (_future_ref, (self.pe, self.fid, self.num_vals))

    def _deliver_many(self, items):
        for index, value, exc in items:
            self._deliver_one(index, value, exc)
        self._check_done()

    def _deliver(self, index, value, exc):
        self._deliver_one(index, value, exc)
        self._check_done()

    def _deliver_one(self, index, value, exc):
        # An exception takes a value's place, so a broadcast's future is done
        # when every member has answered; get() then raises the first one.
        self._nrecv += 1
        if exc is not None:
            if self._exc is None:
                self._exc = exc
        elif index is not None:
            self._indexed = True
            self._values.append((index, value))
        else:
            self._values.append(value)

    def _check_done(self):
        if self.ready():
            charm._futures.pop(self.fid, None)
            for g in (self._waiter, self._multi):
                if g is not None:
                    self._waiter = self._multi = None
                    charm._resume(g, self)


class _FutureRef:
    """A future that lives on another PE: it can only be fulfilled."""
    __slots__ = ("pe", "fid", "num_vals")

    def __init__(self, pe, fid, num_vals):
        self.pe, self.fid, self.num_vals = pe, fid, num_vals

    def send(self, value=None):
        charm._send_future(self.pe, self.fid, None, value, None)

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
        f = charm._futures.get(fid)
        if f is not None:
            return f
    return _FutureRef(pe, fid, num_vals)


class Chare:
    """Base class of chares. `Chare(C, args=[], onPE=-1)` creates a single
    chare of class C and returns its proxy."""

    def __new__(cls, *args, **kwargs):
        if cls is Chare:
            if not args or not (isinstance(args[0], type) and issubclass(args[0], Chare)):
                raise TypeError("Chare(C, args=[], onPE=-1) needs a subclass of Chare "
                                "as its first argument")
            return charm._create_chare(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def contribute(self, data, reducer, target, section=None):
        """Contribute `data` to this collection's next reduction; the result
        goes to `target` (a proxy method or a Future)."""
        if section is not None:
            raise NotImplementedError("sections are not available in this version")
        charm._contribute(self, data, reducer, target, None)

    def reduce(self, target, data=None, reducer=None, section=None):
        self.contribute(data, reducer, target, section)

    def allreduce(self, data=None, reducer=None, section=None):
        """Contribute, and get a Future with the result on every member."""
        if section is not None:
            raise NotImplementedError("sections are not available in this version")
        f = Future()
        charm._contribute(self, data, reducer, None, f)
        return f

    def wait(self, condition):
        """In a coroutine: suspend until `condition` (an expression over self)
        is true; re-checked after each entry method of this chare runs."""
        code = _wait_codes.get(condition)
        if code is None:
            code = _wait_codes[condition] = compile(condition, f"<wait {condition!r}>", "eval")
        if eval(code, sys.modules[type(self).__module__].__dict__, {"self": self}):
            return
        g = getcurrent()
        if g.parent is None:
            raise RuntimeError("self.wait() blocks, so it can only be called in a "
                               "coroutine: decorate the entry method with @coro")
        charm._hold(self).append(("wait", code, g))
        charm._sched.switch()


def Group(cls, args=()):
    """Create one member of `cls` on every PE; returns the group's proxy."""
    _check_chare_class(cls, "Group")
    return charm._create(GROUP, cls, args, -1, ())


def Array(cls, dims=None, ndims=-1, args=(), map=None, useAtSync=False):
    """Create an N-dimensional array of `cls`: dense with `dims` (an int or a
    tuple), or sparse with `ndims` (elements inserted with ckInsert).
    Returns its proxy."""
    _check_chare_class(cls, "Array")
    if map is not None and not (isinstance(map, Proxy) and map.kind == GROUP
                                and issubclass(map.cls, ArrayMap)):
        raise TypeError("map= takes the proxy of a Group of an ArrayMap subclass")
    if dims is None:
        if not isinstance(ndims, int) or not 1 <= ndims <= MAX_DIMS:
            raise ValueError(f"give the dimensions of a dense array (dims=) or the number "
                             f"of dimensions of a sparse one (ndims=1..{MAX_DIMS})")
        return charm._create(ARRAY, cls, args, -1, (), ndims, map)
    if isinstance(dims, int):
        dims = (dims,)
    dims = tuple(dims)
    if not 1 <= len(dims) <= MAX_DIMS or not all(isinstance(d, int) and d >= 0 for d in dims):
        raise ValueError(f"array dimensions must be 1 to {MAX_DIMS} non-negative "
                         f"integers, got {dims!r}")
    if ndims not in (-1, len(dims)):
        raise ValueError(f"ndims={ndims} does not match dims={dims}")
    total = 1
    for d in dims:
        total *= d
    if total >= 1 << 62 or any(d >= 1 << 31 for d in dims):
        raise ValueError(f"array of shape {dims} is too large")
    return charm._create(ARRAY, cls, args, -1, dims, -1, map)


class ArrayMap(Chare):
    """Placement of array elements: subclass it, define procNum(self, index)
    returning a PE, create it with Group(MyMap) and pass it as Array(map=)."""

    def procNum(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define procNum(self, index)")


def register(cls):
    """Class decorator for chare classes defined outside __main__ (charm4py
    compatibility: charmpy finds classes by their module, so this only
    checks that cls is a chare class)."""
    _check_chare_class(cls, "register")
    return cls


class _Readonlies:
    """readonlies: attributes set on PE 0 once the program runs (in main)
    are sent to every PE, ahead of the chares created after them."""

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        if charm._started and charm._pe == 0 and charm._npes > 1:
            try:
                blob = _encode(("R", name, value))
            except Exception as e:
                raise TypeError(f"readonlies.{name} cannot be serialized: {e}") from e
            # A broadcast from PE 0, like the creations that follow it, so it
            # reaches every PE before them.
            _charmpy.send_py(-1, blob)


readonlies = _Readonlies()


def _check_chare_class(cls, what):
    if not (isinstance(cls, type) and issubclass(cls, Chare)):
        raise TypeError(f"{what}() needs a subclass of Chare, got {cls!r}")


def _local_range(total, pe, npes):
    """Linear indices of a block-mapped array held by `pe` (matches the C
    home_pe: element l lives on floor(l * npes / total))."""
    return range(-(-pe * total // npes), -(-(pe + 1) * total // npes))


def _unravel(lin, dims):
    idx = []
    for d in reversed(dims):
        idx.append(lin % d)
        lin //= d
    return tuple(reversed(idx))


class _Charm:
    def __init__(self):
        self.options = Options()
        self._started = False
        self._pe = 0
        self._npes = 1
        self._my_host, self._num_hosts, self._pe_host = 0, 1, (0,)
        self._ncreated = 0
        self._last_fid = 0
        self._futures = {}      # fid -> Future created on this PE, not done
        self._created = {}      # coll -> Future done when every PE built it
        self._sched = None      # the scheduler's greenlet
        self._colls = {}        # coll -> _Coll (this PE's view of a collection)
        self._counts = {}       # on PE 0: coll -> {pe: members} after ckDoneInserting
        self._early = {}        # coll -> runtime messages that came before the creation

    # ---- program start and end ---------------------------------------------
    def start(self, entry=None, classes=(), modules=(), interactive=False):
        if self._started:
            raise RuntimeError("charm.start() was already called")
        self._started = True
        try:
            sys.stdout.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
        self._pe, self._npes, argv = _charmpy.init(self, list(sys.argv),
                                                   bool(self.options.local_msg_optim))
        sys.argv[:] = argv
        self._my_host, self._num_hosts, self._pe_host = _charmpy.host_table()
        self._sched = getcurrent()
        # charm.thisProxy: collection 0, built on every PE without messages.
        self.thisProxy = Proxy(0, GROUP, _CharmRemote)
        info = _Coll()
        info.pes, info.nlocal, info.cls = tuple(range(self._npes)), 1, _CharmRemote
        self._colls[0] = info
        _charmpy.register_collection(0, {self._pe: self._new_member(_CharmRemote,
                                                                  self.thisProxy, self._pe)})
        if self._pe == 0 and entry is not None:
            _charmpy.call_soon(self._start_coro, (entry, (list(sys.argv),), {}, None, None))
        code = _charmpy.run()
        sys.stdout.flush()
        sys.stderr.flush()
        sys.exit(code)

    def exit(self, exit_code=0):
        _charmpy.exit(int(exit_code))

    def abort(self, message):
        sys.stdout.flush()
        sys.stderr.write(f"charmpy: PE {self._pe}: charm.abort: {message}\n")
        sys.stderr.flush()
        _charmpy.abort(str(message))

    def myPe(self):
        return self._pe

    def numPes(self):
        return self._npes

    def wallTime(self):
        return _charmpy.wall_time()

    # ---- hosts and trees --------------------------------------------------------
    def numHosts(self):
        return self._num_hosts

    def myHost(self):
        return self._my_host

    def getHostPes(self, host):
        self._check_host(host)
        return [pe for pe, h in enumerate(self._pe_host) if h == host]

    def getPeHost(self, pe):
        self._check_pe(pe)
        return self._pe_host[pe]

    def getHostNumPes(self, host):
        return len(self.getHostPes(host))

    def getHostFirstPe(self, host):
        return self.getHostPes(host)[0]

    def getPeHostRank(self, pe):
        return self.getHostPes(self.getPeHost(pe)).index(pe)

    def _check_host(self, host):
        if not isinstance(host, int) or not 0 <= host < self._num_hosts:
            raise ValueError(f"host {host!r} does not exist: this job runs on "
                             f"{self._num_hosts} host(s), 0 to {self._num_hosts - 1}")

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

    # ---- coroutines ----------------------------------------------------------
    def _in_coroutine(self):
        return getcurrent() is not self._sched and self._sched is not None

    def _suspend(self, fut, what):
        if not self._in_coroutine():
            raise RuntimeError(f"{what} blocks, so it can only be called in a coroutine: "
                               "decorate the entry method with @coro (main is one)")
        fut._waiter = getcurrent()
        self._sched.switch()

    def _resume(self, g, value=None):
        """Continue coroutine g from the scheduler (never from a coroutine:
        control must come back to the scheduler when g suspends again)."""
        if getcurrent() is self._sched:
            g.switch(value)
        else:
            _charmpy.call_soon(g.switch, (value,))

    def _start_coro(self, fn, args, kwargs, reply, obj):
        def body():
            try:
                result = fn(*args, **kwargs)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                self.exit(code)
                return
            except BaseException as e:
                if reply is not None:
                    self._reply(reply, None, e, obj, _where(obj, fn))
                    return
                self._report_error(e, _where(obj, fn))
                return
            if reply is not None:
                self._reply(reply, result, None, obj)
        greenlet(body, parent=self._sched).switch()

    def wait(self, futures):
        for f in futures:
            f.get()

    def iwait(self, futures):
        pending = list(futures)
        while pending:
            ready = [f for f in pending if f.ready()]
            if not ready:
                g = getcurrent()
                if not self._in_coroutine():
                    raise RuntimeError("charm.iwait() blocks, so it can only be called in "
                                       "a coroutine: decorate the entry method with @coro")
                for f in pending:
                    f._multi = g
                self._sched.switch()
                for f in pending:
                    f._multi = None
                continue
            for f in ready:
                pending.remove(f)
                yield f

    def sleep(self, secs):
        if not self._in_coroutine():
            time.sleep(secs)
            return
        g = getcurrent()
        _charmpy.call_after(float(secs), g.switch, ())
        self._sched.switch()

    def scheduleCallableAfter(self, callable_, secs, args=()):
        _charmpy.call_after(float(secs), callable_, tuple(args))

    def createFuture(self, num_vals=1):
        return Future(num_vals)

    def awaitCreation(self, *proxies):
        for p in proxies:
            f = self._created.get(p.coll)
            if f is None:
                raise ValueError(f"{p!r} was not created on this PE: awaitCreation waits "
                                 "for collections this PE created")
            f.get()

    # ---- futures across PEs --------------------------------------------------
    def _call_future(self, nvals, ret):
        f = Future(nvals)
        f._awaitable = not ret
        return f

    def _send_future(self, pe, fid, index, value, exc):
        if pe == self._pe:
            # Through the scheduler, so a coroutine sending to a local future
            # does not run the waiting coroutine inside itself.
            _charmpy.call_soon(self._deliver_future, (fid, index, value, exc))
            return
        try:
            payload = _encode(("F", fid, index, value, exc))
        except Exception as e:
            payload = _encode(("F", fid, index, None, TypeError(
                f"the value for the future cannot be serialized: {e}")))
        _charmpy.send_py(pe, payload)

    def _deliver_future(self, fid, index, value, exc):
        f = self._futures.get(fid)
        if f is None:
            raise RuntimeError(f"a value arrived for future {fid} of PE {self._pe}, which "
                               "is already done (more values than num_vals?)")
        f._deliver(index, value, exc)

    def _on_py(self, payload):
        msg = _charmpy.decode(payload)
        if msg[0] == "F":
            self._deliver_future(*msg[1:])
        elif msg[0] == "R":
            if self._pe != 0:
                object.__setattr__(readonlies, msg[1], msg[2])
        elif msg[0] == "M":
            self._deliver_many(*msg[1:])
        elif _charmpy.members(msg[1]) is None:
            # About a collection whose creation (which travels the broadcast
            # tree) has not reached this PE yet.
            self._early.setdefault(msg[1], []).append(payload)
        elif msg[0] == "A":
            self._allreduce_done(*msg[1:])
        elif msg[0] == "I":
            self._on_insert(*msg[1:])
        elif msg[0] == "L":
            self._on_location(*msg[1:])
        elif msg[0] == "D":
            self._on_done(*msg[1:])
        elif msg[0] == "C":
            self._on_count(*msg[1:])
        elif msg[0] == "P":
            self._on_participants(*msg[1:])

    def _reply_many(self, reply, results):
        """The results of a broadcast's members on this PE, in one message:
        results is a list of (index, value, exception, where the exception
        was raised)."""
        fut_pe, fid, flags = reply
        items = [(index, value if flags & EM_RET else None,
                  None if exc is None else _remote_exception(exc, where))
                 for index, value, exc, where in results]
        if fut_pe == self._pe:
            _charmpy.call_soon(self._deliver_many, (fid, items))
            return
        try:
            payload = _encode(("M", fid, items))
        except Exception as e:
            payload = _encode(("M", fid, [(i, None, TypeError(
                f"a broadcast's return value cannot be serialized: {e}")) for i, _, _ in items]))
        _charmpy.send_py(fut_pe, payload)

    def _deliver_many(self, fid, items):
        f = self._futures.get(fid)
        if f is None:
            raise RuntimeError(f"values arrived for future {fid} of PE {self._pe}, which "
                               "is already done")
        f._deliver_many(items)

    def _reply(self, reply, result, exc, obj, where=None):
        fut_pe, fid, flags = reply
        index = None
        if exc is not None:
            exc = _remote_exception(exc, where or _where(obj, None))
        if flags & EM_BCAST:
            index = obj.thisIndex
        self._send_future(fut_pe, fid, index, result if flags & EM_RET else None, exc)

    # ---- @when and self.wait ---------------------------------------------------
    def _hold(self, obj):
        held = obj.__dict__.setdefault("_charmpy_held", [])
        _charmpy.held[id(obj)] = obj
        return held

    def _invoke_special(self, obj, key, name, args, kwargs, reply, flags):
        kwargs = kwargs or {}
        meth = getattr(obj, name)
        if flags & ENTRY_WHEN and not _when_true(obj, meth, args, kwargs):
            self._hold(obj).append(("when", meth, args, kwargs, reply, flags))
            return
        self._run_entry(obj, meth, args, kwargs, reply, flags)

    def _run_entry(self, obj, meth, args, kwargs, reply, flags):
        if flags & ENTRY_CORO:
            self._start_coro(meth, args, kwargs, reply, obj)
            return
        try:
            result = meth(*args, **kwargs)
        except Exception as e:
            if reply is None:
                raise
            self._reply(reply, None, e, obj, _where(obj, meth))
            return
        if reply is not None:
            self._reply(reply, result, None, obj)

    def _recheck(self, obj):
        """Run held messages and waiting coroutines of obj whose condition
        became true, in arrival order, until none is runnable."""
        held = obj.__dict__.get("_charmpy_held", [])
        progress = True
        while progress and held:
            progress = False
            for i, item in enumerate(held):
                if item[0] == "when":
                    _, meth, args, kwargs, reply, flags = item
                    if _when_true(obj, meth, args, kwargs):
                        del held[i]
                        self._run_entry(obj, meth, args, kwargs, reply, flags)
                        progress = True
                        break
                else:
                    _, code, g = item
                    if eval(code, sys.modules[type(obj).__module__].__dict__, {"self": obj}):
                        del held[i]
                        g.switch()
                        progress = True
                        break
        if not held:
            _charmpy.held.pop(id(obj), None)

    # ---- creation ------------------------------------------------------------
    def _next_coll(self):
        self._ncreated += 1
        return (self._pe << 40) | self._ncreated

    def _create_chare(self, cls, args=(), onPE=-1):
        if not isinstance(onPE, int) or onPE >= self._npes or onPE < -1:
            raise ValueError(f"onPE={onPE!r}: give a PE from 0 to {self._npes - 1}, "
                             "or -1 to let the runtime choose")
        pe = onPE if onPE >= 0 else (self._pe + 1 + self._ncreated) % self._npes
        return self._create(CHARE, cls, args, pe, ())

    def _create(self, kind, cls, args, pe, dims, ndims=-1, map=None):
        args = tuple(args)
        coll = self._next_coll()
        proxy = Proxy(coll, kind, cls, pe, dims, None, ndims, map)
        done = Future(1 if kind == CHARE else self._npes)
        try:
            payload = _encode((coll, kind, cls, args, pe, dims, ndims, map, self._pe,
                               done.fid))
        except Exception as e:
            self._futures.pop(done.fid, None)
            raise TypeError(f"the constructor arguments of {cls.__name__} cannot be "
                            f"serialized: {e}") from e
        self._created[coll] = done
        _charmpy.send_create(pe if kind == CHARE else -1, payload)
        return proxy

    def _on_create(self, payload):
        coll, kind, cls, args, pe, dims, ndims, map, creator, done_fid = _charmpy.decode(payload)
        proxy = Proxy(coll, kind, cls, pe, dims, None, ndims, map)
        info = _Coll()
        if kind == CHARE:
            keys = [(0, None)]
            info.pes = (pe,)
        elif kind == GROUP:
            keys = [(self._pe, self._pe)]
            info.pes = tuple(range(self._npes))
        elif proxy.sparse:
            keys = []
            info.sparse = True
            info.pes = None     # known after ckDoneInserting
        else:
            keys, info.pes = self._dense_layout(proxy, dims)
        info.nlocal = len(keys)
        info.cls, info.map = cls, map
        self._colls[coll] = info
        members = {}
        for key, index in keys:
            members[key] = self._new_member(cls, proxy, index)
        def built():
            for early in self._early.pop(coll, ()):
                self._on_py(early)
            self._send_future(creator, done_fid, None, None, None)
        self._construct(members, args, coll, built)

    def _dense_layout(self, proxy, dims):
        """This PE's elements of a dense array, and the PEs that have any."""
        total = 1
        for d in dims:
            total *= d
        if proxy.map is None:
            mine = [_unravel(l, dims) for l in _local_range(total, self._pe, self._npes)]
            pes = tuple(p for p in range(self._npes)
                        if len(_local_range(total, p, self._npes)))
        else:
            mapper = proxy.map.ckLocalBranch()
            used = set()
            mine = []
            for l in range(total):
                idx = _unravel(l, dims)
                p = mapper.procNum(idx)
                used.add(p)
                if p == self._pe:
                    mine.append(idx)
            pes = tuple(sorted(used))
        return [(i, i) for i in mine], pes

    def _new_member(self, cls, proxy, index):
        obj = cls.__new__(cls)
        obj.thisProxy = proxy
        obj.thisIndex = index
        return obj

    def _construct(self, members, args, coll, then):
        """Run the constructors (as a coroutine when __init__ is one), then
        make the members reachable and call `then`."""
        cls = type(next(iter(members.values()))) if members else None

        def build():
            for obj in members.values():
                obj.__init__(*args)
            if coll is not None:
                _charmpy.register_collection(coll, members)
            then()
        if cls is not None and getattr(cls.__init__, "_charmpy_coro", False):
            self._start_coro(build, (), {}, None, None)
        else:
            build()

    # ---- sparse arrays ---------------------------------------------------------
    def _insert(self, proxy, index, args, onPE):
        index = index if isinstance(index, tuple) else (index,)
        elem = proxy[index]            # checks the number of dimensions
        home = elem._home_pe()
        pe = home if onPE == -1 else onPE
        if not isinstance(pe, int) or not 0 <= pe < self._npes:
            raise ValueError(f"onPE={onPE!r}: give a PE from 0 to {self._npes - 1} or -1")
        try:
            blob = _encode(("I", proxy.coll, index, tuple(args or ()), home))
        except Exception as e:
            raise TypeError(f"the constructor arguments of {proxy.cls.__name__} cannot "
                            f"be serialized: {e}") from e
        _charmpy.send_py(pe, blob)
        if pe != home:
            _charmpy.send_py(home, _encode(("L", proxy.coll, index, pe)))

    def _on_insert(self, coll, index, args, home):
        members = _charmpy.members(coll)
        info = self._colls[coll]
        if index in members:
            raise KeyError(f"element {index} of the sparse array was inserted twice")
        proxy = Proxy(coll, ARRAY, info.cls, -1, (), None, len(index), info.map)
        obj = self._new_member(info.cls, proxy, index)
        info.nlocal += 1

        def inserted():
            members[index] = obj
            for ptr in info.held.pop(index, ()):
                _charmpy.redeliver(ptr)
        self._construct({index: obj}, args, None, inserted)

    def _on_location(self, coll, index, pe):
        info = self._colls[coll]
        info.locs[index] = pe
        for ptr in info.held.pop(index, ()):
            _charmpy.forward(ptr, pe)

    def _missing(self, coll, key, ptr, reply):
        """A message for a member not on this PE (the C side calls this and
        hands over the message; `reply` is its future, or None)."""
        info = self._colls.get(coll)
        if info is None or not info.sparse:
            err = LookupError(f"message for element {key} of collection {coll:x}, which "
                              f"is not on PE {self._pe}")
        elif key in info.locs:
            _charmpy.forward(ptr, info.locs[key])
            return
        elif not info.done:
            info.held.setdefault(key, []).append(ptr)
            return
        else:
            err = LookupError(f"message for element {key} of a sparse array, which was "
                              "never inserted (ckDoneInserting was called)")
        if reply is None:
            raise err
        _charmpy.discard(ptr)
        self._reply(reply, None, err, None)

    def _done_inserting(self, proxy):
        blob = _encode(("D", proxy.coll))
        for pe in range(self._npes):
            _charmpy.send_py(pe, blob)

    def _on_done(self, coll):
        info = self._colls[coll]
        info.done = True
        for key in list(info.held):
            for ptr in info.held.pop(key):
                _charmpy.discard(ptr)
            raise LookupError(f"message for element {key} of a sparse array, which was "
                              "never inserted (ckDoneInserting was called)")
        _charmpy.send_py(0, _encode(("C", coll, self._pe, info.nlocal)))

    def _on_count(self, coll, pe, n):
        counts = self._counts.setdefault(coll, {})
        counts[pe] = n
        if len(counts) == self._npes:
            del self._counts[coll]
            pes = tuple(p for p in range(self._npes) if counts[p]) or (0,)
            blob = _encode(("P", coll, pes))
            for p in range(self._npes):
                _charmpy.send_py(p, blob)

    def _on_participants(self, coll, pes):
        info = self._colls[coll]
        info.pes = pes
        for k in sorted(info.pending):
            self._maybe_reduce(coll, info, k)

    # ---- reductions ----------------------------------------------------------
    def _contribute(self, obj, data, reducer, target, allfut):
        proxy = obj.thisProxy
        info = self._colls[proxy.coll]
        if reducer is None:
            if data is not None:
                raise ValueError("contribute(data, None, ...) needs a reducer for the data")
            reducer = Reducer.nop
        elif not isinstance(reducer, _Reducer):
            raise TypeError(f"{reducer!r} is not a reducer: use Reducer.sum, ... or "
                            "Reducer.addReducer(func)")
        k = obj.__dict__.get("_charmpy_redk", 0)
        obj._charmpy_redk = k + 1
        rec = info.pending.get(k)
        if rec is None:
            rec = info.pending[k] = _Redn(reducer, target)
        elif rec.reducer is not reducer:
            raise ValueError(
                f"reduction {k} of {proxy!r}: {type(obj).__name__}{_idx(obj)} contributes "
                f"with {reducer!r} but another member with {rec.reducer!r}; every member "
                "must make the same contribute calls in the same order")
        if reducer.pre is not None:
            data = reducer.pre(data)
        if reducer is Reducer.gather:
            data = [(obj.thisIndex, data)]
        rec.values.append(data)
        if allfut is not None:
            rec.allfuts.append(allfut)
        self._maybe_reduce(proxy.coll, info, k)

    def _maybe_reduce(self, coll, info, k):
        """Pass reduction k on to the PE-level tree once every local member
        contributed (and, for sparse arrays, the participants are known)."""
        rec = info.pending.get(k)
        if rec is None or info.pes is None or len(rec.values) < info.nlocal:
            return
        del info.pending[k]
        vals = rec.values
        payload = None
        op = rec.reducer.op
        if op is not None:
            # Numbers: encoded and combined in C, here and along the tree.
            parts = [_charmpy.typed_encode(op, v) for v in vals]
            if None not in parts:
                payload = parts[0] if len(parts) == 1 else _charmpy.typed_combine(parts)
        if payload is None:
            value = vals[0] if len(vals) == 1 else rec.reducer.combine(vals)
            payload = pickle.dumps((rec.reducer.name, value), 5)
        if rec.allfuts:
            info.allfuts[k] = rec.allfuts
        if info.pes[0] == self._pe:
            info.targets[k] = rec
        _charmpy.reduce_among(coll, payload, info.pes)

    def _decode_part(self, payload):
        if payload[:1] == b"\x80":
            return pickle.loads(payload)
        return (None, _charmpy.typed_decode(payload))

    def _combine(self, parts):
        vals = [self._decode_part(p) for p in parts]
        named = [n for n, _ in vals if n is not None]
        vals = [(named[0], v) for _, v in vals]
        name = vals[0][0]
        for other, _ in vals[1:]:
            if other != name:
                raise ValueError(f"mismatched reduction: reducer '{name}' on one PE and "
                                 f"'{other}' on another")
        return pickle.dumps((name, _reducer_by_name(name).combine([v for _, v in vals])), 5)

    def _on_reduction(self, coll, seq, payload):
        _, value = self._decode_part(payload)
        info = self._colls[coll]
        rec = info.targets.pop(seq)
        if rec.reducer.post is not None:
            value = rec.reducer.post(value)
        if rec.reducer is Reducer.nop:
            value = None
        if info.allfuts.get(seq) is not None or rec.target is None:
            # allreduce: every participant PE gets the value.
            blob = _encode(("A", coll, seq, value))
            for pe in info.pes:
                _charmpy.send_py(pe, blob)
            return
        _deliver(rec.target, value, rec.reducer is Reducer.nop)

    def _allreduce_done(self, coll, seq, value):
        for f in self._colls[coll].allfuts.pop(seq, ()):
            f._deliver(None, value, None)

    def _entry_names(self, cls):
        """The entry methods of cls for the C side: (codes, names, flags)
        with names sorted, so that every PE numbers them alike."""
        base = vars(Chare)
        names = []
        flags = []
        for n in sorted(dir(cls)):
            if n.startswith("_"):
                continue
            f = getattr(cls, n, None)
            if not callable(f) or (n in base and f is base[n]):
                continue
            names.append(n)
            flags.append((ENTRY_CORO if getattr(f, "_charmpy_coro", False) else 0)
                         | (ENTRY_WHEN if hasattr(f, "_charmpy_when") else 0))
        return ({n: i for i, n in enumerate(names)}, tuple(names), tuple(flags))

    # ---- errors --------------------------------------------------------------
    def _report_error(self, exc, where):
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            sys.stdout.flush()
        except Exception:
            pass
        sys.stderr.write(f"charmpy: PE {self._pe}: uncaught exception in {where}:\n{text}")
        sys.stderr.flush()
        _charmpy.abort(f"uncaught exception in {where}: {type(exc).__name__}: {exc}")


class _CharmRemote(Chare):
    """The runtime on every PE, as a group: charm.thisProxy."""

    def exit(self, exit_code=0):
        charm.exit(exit_code)

    def updateGlobals(self, global_dict, module_name="__main__"):
        sys.modules[module_name].__dict__.update(global_dict)

    def _check_remote_exec(self):
        if not charm.options.remote_exec:
            raise PermissionError("remote code execution is off: set "
                                  "charm.options.remote_exec = True before charm.start")

    def exec(self, code, module_name="__main__"):
        self._check_remote_exec()
        exec(code, sys.modules[module_name].__dict__)

    def rexec(self, code, module_name="__main__"):
        self.exec(code, module_name)

    def eval(self, expression, module_name="__main__"):
        self._check_remote_exec()
        return eval(expression, sys.modules[module_name].__dict__)


class _Coll:
    """This PE's view of a collection: the PEs that hold members (reductions
    run among them; the first is the root), how many are here, and the
    reductions in progress; for sparse arrays, where elements are and the
    messages waiting for them."""
    __slots__ = ("pes", "nlocal", "pending", "targets", "allfuts", "sparse", "done",
                 "locs", "held", "cls", "map")

    def __init__(self):
        self.pes = ()
        self.nlocal = 0
        self.pending = {}   # reduction number -> _Redn, local members so far
        self.targets = {}   # on the root: reduction number -> _Redn
        self.allfuts = {}   # reduction number -> futures of allreduce callers
        self.sparse = False
        self.done = False
        self.locs = {}      # on a home PE: index -> PE of an element placed elsewhere
        self.held = {}      # index -> messages waiting for that element
        self.cls = None
        self.map = None


class _Redn:
    __slots__ = ("reducer", "target", "values", "allfuts")

    def __init__(self, reducer, target):
        self.reducer = reducer
        self.target = target
        self.values = []
        self.allfuts = []


def _deliver(target, value, empty):
    if isinstance(target, (Future, _FutureRef)):
        target.send(value)
    elif empty:
        target()
    else:
        target(value)


def _idx(obj):
    i = getattr(obj, "thisIndex", None)
    return "" if i is None else f"[{i}]"


def _where(obj, fn):
    if obj is None:
        name = getattr(fn, "__qualname__", "main")
        return f"{name} on PE {charm._pe}"
    idx = getattr(obj, "thisIndex", None)
    meth = getattr(fn, "__name__", "?")
    return (f"{type(obj).__name__}{'' if idx is None else [idx]}.{meth} "
            f"on PE {charm._pe}")


def _remote_exception(exc, where):
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    tb = _RemoteTraceback(f"\n\nTraceback from {where}:\n{text}")
    try:
        pickle.dumps(exc, 5)
        e = exc
    except Exception:
        e = RuntimeError(f"{type(exc).__name__}: {exc}")
    e.__cause__ = tb
    e.remote_traceback = tb.text
    return e


def _when_true(obj, meth, args, kwargs):
    return meth.__func__._charmpy_when_test(obj, *args, **kwargs)


def _condition_function(func, condition, code):
    """A function with func's parameters that evaluates `condition`, so that
    Python binds the arguments (no inspect on the message path)."""
    sig = inspect.signature(func)
    params, env = [], {"__code": code, "__globals": func.__globals__}
    for i, p in enumerate(sig.parameters.values()):
        text = p.name
        if p.kind is p.VAR_POSITIONAL:
            text = "*" + p.name
        elif p.kind is p.VAR_KEYWORD:
            text = "**" + p.name
        elif p.kind is p.KEYWORD_ONLY and not any(
                q.kind is q.VAR_POSITIONAL for q in sig.parameters.values()):
            if "*" not in params:
                params.append("*")
        if p.default is not p.empty:
            env[f"__d{i}"] = p.default
            text += f"=__d{i}"
        params.append(text)
    names = [p.name for p in sig.parameters.values()]
    src = (f"def __test({', '.join(params)}):\n"
           f"    return eval(__code, __globals, {{{', '.join(repr(n) + ': ' + n for n in names)}}})\n")
    exec(src, env)
    return env["__test"]


charm = _Charm()
