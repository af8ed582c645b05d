"""Chares and their collections: the Chare base class, Group, Array,
ArrayMap, the main chare, and how a collection is created on every PE.

Creating a collection sends one creation message (to the chare's PE, to
the PEs of a constrained group, or along the broadcast tree to every PE);
each PE builds its members, registers them with the location service
(python/ext/location.c), which delivers what arrived for them early, and
acknowledges to the creator, whose awaitCreation waits for every PE."""
from . import _charmpy, coro, lb, migration, readonly, reduction, when
from ._charmpy import Proxy
from .charm import charm
from .futures import Future, send_future, _futures

CHARE, GROUP, ARRAY = 0, 1, 2   # as in python/ext/cpy.h
MAX_DIMS = 6
ENTRY_CORO, ENTRY_WHEN = when.ENTRY_CORO, when.ENTRY_WHEN
F_MAIN, F_AT_SYNC = 1, 2        # creation flags


class Chare:
    """Base class of chares. `Chare(C, args=[], onPE=-1)` creates a single
    chare of class C and returns its proxy."""

    def __new__(cls, *args, **kwargs):
        if cls is Chare:
            if not args or not (isinstance(args[0], type) and issubclass(args[0], Chare)):
                raise TypeError("Chare(C, args=[], onPE=-1) needs a subclass of Chare "
                                "as its first argument")
            return _create_chare(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    # contribute(data, reducer, target, section=None): `data` to this
    # collection's next reduction, whose result goes to `target` (a proxy
    # method or a Future). In C (python/ext/contrib.c); reduction.py for
    # the rarer cases. A method descriptor, set below (_charmpy.chare_methods).

    def reduce(self, target, data=None, reducer=None, section=None):
        self.contribute(data, reducer, target, section)

    def allreduce(self, data=None, reducer=None, section=None):
        """Contribute, and get a Future with the result on every member."""
        f = Future()
        _charmpy.allreduce_into(self, data, reducer, f, section)
        return f

    def wait(self, condition):
        """In a coroutine: suspend until `condition` (an expression over self)
        is true; re-examined after each entry method of this chare runs."""
        when.wait(self, condition)

    def __flush_wait_queues__(self):
        """charm4py's manual flush (for auto_flush_wait_queues=False): run
        the held @when messages and waiting coroutines that can run now.
        charmpy also does it after every entry method."""
        when.recheck(self)

    def AtSync(self):
        """Array elements created with useAtSync=True: ready for load
        balancing; resumeFromSync() is called once every element is."""
        lb.at_sync(self)

    def migrate(self, toPe):
        """Move this array element or single chare to PE toPe, once the
        entry method returns (and no coroutine of it is suspended)."""
        migration.migrate(self, toPe)

    def migrated(self):
        """Called on a chare after it arrived on a new PE (override it)."""

    def setMigratable(self, migratable):
        """Pin this chare (False) or let the load balancer move it (True)."""
        self.migratable = bool(migratable)

    def setLoad(self, seconds):
        """The load the balancer sees for this chare, instead of the
        measured wall time of its entry methods (None: measure again)."""
        lb.set_load(self, seconds)


_charmpy.chare_methods(Chare)   # contribute, in C


class ArrayMap(Chare):
    """Placement of array elements: subclass it, define procNum(self, index)
    returning a PE, create it with Group(MyMap) and pass it as Array(map=)."""

    def procNum(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define procNum(self, index)")


def Group(cls, args=(), onPEs=None):
    """Create one member of `cls` on every PE (or on the PEs listed in
    onPEs); returns the group's proxy."""
    _check_chare_class(cls, "Group")
    pes = None
    if onPEs is not None:
        try:
            pes = tuple(sorted({int(p) for p in onPEs}))
        except (TypeError, ValueError):
            raise ValueError(f"onPEs={onPEs!r}: give a list of PE numbers") from None
        if not pes or pes[0] < 0 or pes[-1] >= charm._npes:
            raise ValueError(f"onPEs={onPEs!r}: give a non-empty list of PEs from 0 to "
                             f"{charm._npes - 1}")
    return _create(GROUP, cls, args, -1, (), pes=pes)


def Array(cls, dims=None, ndims=-1, args=(), map=None, useAtSync=False):
    """Create an N-dimensional array of `cls`: dense with `dims` (an int or a
    tuple), or sparse with `ndims` (elements inserted with ckInsert).
    Returns its proxy."""
    _check_chare_class(cls, "Array")
    if map is not None and not (isinstance(map, Proxy) and map.kind == GROUP
                                and issubclass(map.cls, ArrayMap)):
        raise TypeError("map= takes the proxy of a Group of an ArrayMap subclass")
    if map is not None and map.pes is not None:
        raise ValueError("map=: the ArrayMap group must have a member on every PE "
                         "(it was created with onPEs)")
    flags = F_AT_SYNC if useAtSync else 0
    if dims is None:
        if not isinstance(ndims, int) or not 1 <= ndims <= MAX_DIMS:
            raise ValueError(f"give the dimensions of a dense array (dims=) or the number "
                             f"of dimensions of a sparse one (ndims=1..{MAX_DIMS})")
        return _create(ARRAY, cls, args, -1, (), ndims, map, flags=flags)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
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
    return _create(ARRAY, cls, args, -1, dims, -1, map, flags=flags)


def register(cls):
    """Class decorator for chare classes defined outside __main__ (charm4py
    compatibility: charmpy finds classes by their module, so this only
    checks that cls is a chare class)."""
    _check_chare_class(cls, "register")
    return cls


def _check_chare_class(cls, what):
    if not (isinstance(cls, type) and issubclass(cls, Chare)):
        raise TypeError(f"{what}() needs a subclass of Chare, got {cls!r}")


def entry_names(cls):
    """The entry methods of cls for the C side: (codes, names, flags) with
    names sorted, so that every PE numbers them alike."""
    base = vars(Chare)
    names, flags = [], []
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


class Collection:
    """This PE's view of a collection: its proxy and class, how many
    members are here, the PEs that hold members (reductions run among
    them; None for a sparse array until ckDoneInserting) and the
    reductions in progress (reduction.py)."""
    __slots__ = ("proxy", "cls", "pes", "nlocal", "sparse", "flags", "red", "inserted",
                 "expected", "done", "total")

    def __init__(self, proxy, pes, nlocal, flags=0):
        self.proxy, self.cls = proxy, proxy.cls
        self.pes, self.nlocal = pes, nlocal
        self.sparse = bool(proxy.sparse)
        self.flags = flags
        self.red = {}
        # sparse arrays (location.py): insertions arrived here, how many
        # ckDoneInserting waits for, and whether it is done here
        self.inserted, self.expected, self.done = 0, None, False
        self.total = None   # on PE 0: the elements of a sparse array, once counted


_charmpy.red_coll_type(Collection)   # contrib.c reads `red` at its slot

# ---- creation ---------------------------------------------------------------
_ncreated = 0
_created = {}     # coll -> Future done when every PE built its members
_waiting = {}     # coll -> functions to call once coll is registered here


def _next_coll():
    global _ncreated
    _ncreated += 1
    return (charm._pe << 40) | _ncreated


def _create_chare(cls, args=(), onPE=-1):
    if not isinstance(onPE, int) or onPE >= charm._npes or onPE < -1:
        raise ValueError(f"onPE={onPE!r}: give a PE from 0 to {charm._npes - 1}, "
                         "or -1 to let the runtime choose")
    pe = onPE if onPE >= 0 else (charm._pe + 1 + _ncreated) % charm._npes
    return _create(CHARE, cls, args, pe, ())


def _create(kind, cls, args, pe, dims, ndims=-1, map=None, pes=None, flags=0):
    if not charm.started:
        raise RuntimeError("the charmpy runtime is not running: create chares after "
                           "charm.start(main), in main or in a chare")
    args = tuple(args)
    coll = _next_coll()
    proxy = Proxy(coll, kind, cls, pe, dims, None, ndims, map, pes)
    nacks = 1 if kind == CHARE else (len(pes) if pes else charm._npes)
    done = Future(nacks)
    try:
        payload = _charmpy.encode((coll, kind, cls, args, pe, dims, ndims, map, pes, flags,
                                   charm._pe, done.fid, readonly.epoch()))
    except Exception as e:
        _futures.pop(done.fid, None)
        raise TypeError(f"the constructor arguments of {cls.__name__} cannot be "
                        f"serialized: {e}") from e
    _created[coll] = done
    if kind == CHARE:
        _charmpy.send_create(pe, payload)
    elif pes is not None:
        for p in pes:
            _charmpy.send_create(p, payload)
    else:
        _charmpy.send_create(-1, payload)
    return proxy


def on_create(payload):
    """A creation message (the on_create hook): build this PE's members."""
    (coll, kind, cls, args, pe, dims, ndims, map, pes, flags, creator,
     done_fid, readonlies) = _charmpy.decode(payload)
    if readonly.epoch() < readonlies:
        # The readonlies set before this creation have not all arrived.
        readonly.after(readonlies, lambda: on_create(payload))
        return
    if map is not None and _charmpy.members(map.coll) is None:
        # The array's ArrayMap has not reached this PE yet (it was created
        # elsewhere): the array waits for it (and the job is not quiescent).
        _charmpy.qd_hold(1)
        _waiting.setdefault(map.coll, []).append(lambda: (_charmpy.qd_release(1),
                                                          on_create(payload)))
        return
    proxy = Proxy(coll, kind, cls, pe, dims, None, ndims, map, pes)
    if kind == CHARE:
        keys, where = [(0, None)], (pe,)
    elif kind == GROUP:
        keys, where = [(charm._pe, charm._pe)], pes or tuple(range(charm._npes))
    elif proxy.sparse:
        keys, where = [], None     # known after ckDoneInserting
    else:
        mine, where = _charmpy.dense_layout(proxy)
        keys = [(i, i) for i in mine]
    charm._colls[coll] = Collection(proxy, where, len(keys), flags)
    _charmpy.loc_create(proxy)
    members = {key: new_member(cls, proxy, index) for key, index in keys}
    construct(members.values(), args, lambda: _charmpy.loc_register(coll, members, False),
              lambda: released(coll),
              lambda: send_future(creator, done_fid, None, None, None),
              main=bool(flags & F_MAIN))


def new_member(cls, proxy, index):
    obj = cls.__new__(cls)
    obj.thisProxy = proxy
    obj.thisIndex = index
    return obj


def construct(objs, args, register, release, then, main=False):
    """Run the constructors of objs; `register` makes them known on this PE
    (ckLocalBranch finds them), `release` delivers what arrived for them
    early, `then` runs once every constructor ended. A constructor that is
    a coroutine (or the main chare's, which may block) runs as a coroutine
    of its own chare, its chare registered first, and what came early is
    delivered once each ran to its first suspension (or its end): as in
    charm4py, messages then run while it is suspended."""
    objs = list(objs)
    cls = type(objs[0]) if objs else None
    if cls is None or not (main or getattr(cls.__init__, "_charmpy_coro", False)):
        for obj in objs:
            obj.__init__(*args)
        register()
        release()
        then()
        return
    register()
    left = [len(objs), False]   # constructors running, early messages delivered

    def build(obj):
        obj.__init__(*args)
        left[0] -= 1
        if left[0] == 0 and left[1]:
            then()
    build.__name__ = "__init__"   # for the errors coro.start reports
    for obj in objs:
        coro.start(build, (obj,), {}, None, obj)
    release()
    left[1] = True
    if left[0] == 0:
        then()


def released(coll):
    """coll's members are here and built (or suspended in their first
    coroutine step): deliver what waited for them."""
    _charmpy.loc_release(coll)
    for fn in _waiting.pop(coll, ()):
        fn()
    charm._flush_early(coll)


def await_creation(*proxies):
    """charm.awaitCreation(*proxies): wait (in a coroutine) until every PE
    built its members of each collection."""
    for p in proxies:
        f = _created.get(p.coll)
        if f is None:
            raise ValueError(f"{p!r} was not created on this PE: awaitCreation waits "
                             "for collections this PE created")
        f.get()


def start_main(entry, args):
    """On PE 0: the program's entry, a function run as a coroutine or the
    main chare (a Chare subclass constructed with args)."""
    if isinstance(entry, type):
        _create(CHARE, entry, (args,), charm._pe, (), flags=F_MAIN)
        return
    coro.start(entry, (args,), {}, None, None)
