"""charm.pool: the parallel map and tasks. Usage: pool_modes.py MODE [args]

Every expected value is computed here, independently of the pool (a plain
loop over the same items), and every mode prints `OK pool_modes` last.

  order     every entry point gives the results in the order of the items:
            map, map_async(...).get(), map_async(multi_future=True) (each
            future's get()), imap over a generator, imap_unordered (the
            right multiset), with chunksize 1, 7 and 'auto', ncores -1, 1, 2
            (P >= 2) and P, for 0, 1, 5 and 100 items; ncores=k runs on at
            most k PEs (exactly one for 1), ncores=-1 on every PE (PE 0
            too); numpy arrays as items and results; submit(...).get() with
            args and kwargs, submit_async, Task(ret=True).get(),
            Task(awaitable=True), Task without a future (it sends to a
            future of ours), 50 submits at once; two imaps read in step
  funcs     lambdas, closures over local variables, functions of __main__,
            builtins (abs, str, pow through submit and functools.partial),
            partial objects, a method of a module-level class instance, a
            staticmethod; a function that cannot be sent (a closure over a
            threading.Lock, a lambda over a generator) raises TypeError at
            the call of map/map_async/imap/submit, saying why; the pool works
            after it
  jobs      (P >= 2) two and three jobs at once (map_async with ncores 1 and
            P-1; 1, 1 and -1), each right; two ncores=1 jobs of equal
            sleeping work submitted together run on two different PEs
            (pool.py _pes_for picks the PEs this PE loads least, and the
            first job's items count there from its start, before the second
            is made) and at the same time; a map running while an imap is read and
            submits are made; an imap abandoned half way (break) leaves the
            pool working; 40 small jobs at once; a group whose members
            (every PE) run jobs of their own while PE 0 runs one
  nested    recursive fib, a @coro function calling charm.pool.map, for
            fib(10..14); a @coro task that submits two tasks and .get()s
            them (a tree sum); allow_nested=True with a plain function that
            calls charm.pool.map and imap; a ZeroDivisionError in a nested
            job reaches the outer map
  errors    a task raising ZeroDivisionError: map raises it, its __notes__
            name the item's index and repr, its remote traceback names the
            function; imap raises it (after right values); the bad item's
            multi_future future raises it, the futures that have a value
            have the right one; submit(...).get() raises it; the pool stays
            usable; an iterable that raises in the middle: get() (and imap)
            raise its exception; tasks returning a threading.Lock on other
            PEs than PE 0 (whose results come by reference): map and submit
            raise TypeError saying the result cannot be sent back;
            chunksize 0, -1, 'x', 1.5, True and ncores 0, -2 raise ValueError
  memory N  imap over a generator of N items (default 10**6), chunksize
            1000 and then 'auto', read one by one: the sum is right and the
            peak RSS of PE 0 grows by less than 20 MB (30 MB for 'auto'),
            while a list of the N results (what the pool must not build)
            grows it by more than 30 MB
  uneven    sleeping tasks of 0..20 ms after 4P long ones (120 ms) at the
            start, chunksize=1: the wall time is at most 1.25 x (sum/P +
            max) + 50 ms, which a static split in blocks (PE 0 would get the
            long ones) exceeds; the PEs run all the work between them
  bigchunks imap and imap_unordered with chunks bigger than the window of
            64 items per PE still run on every PE
  baditem first|later  with charm.options.local_msg_optim = False (items
            pickled for PE 0 too), an item that cannot be pickled, in the
            first chunk or a later one: map raises TypeError (at the call or
            from get()), the job is gone soon after (repr(charm.pool) counts
            0 jobs), and the pool works after it
  taskfail  Task(f, args) with no future, f raising (on PE 1 when P >= 2):
            the job ends with an error (test_pool.py checks the exit code and
            stderr, which should show f's traceback)
  progress  map(progress=True) of 100 items, map(progress='always') of 77,
            imap(progress=True) of 33, with markers <<A>> <<B>> <<C>> <<D>>
            on stderr between them (test_pool.py checks what was drawn;
            stdout says whether stderr is a terminal)

Modes that show bugs (see test_pool.py):
  charmref  a lambda and a closure of __main__ that use `charm` (charm.myPe()),
            and a lambda calling a function of __main__ that does, can be
            sent to the PEs
  stale     a bound method of an instance, a callable instance and a
            partial over a list see the state the object has at the time of
            each map, not at the time of the first one
  retain    maps of functools.partial(f, a big numpy array), one array after
            another, do not keep the arrays alive on PE 0 (RSS growth)
  spread    P sleeping tasks on P PEs with chunksize=1: each PE runs one, in
            about one task's time; a nested fib(10) runs its leaves on more
            than one PE
  badexc    a task raising an exception whose class cannot be rebuilt by
            unpickling (its __init__ needs two arguments): map and submit
            raise an error naming it, instead of the job aborting
  slowconsumer N  as memory, with a consumer that is slower than the PEs
            (charm.sleep(0.5 ms) every 100 items): the peak RSS of PE 0
            still grows by less than 20 MB, with chunksize 1000 and 'auto'
  ncores    ncores above P runs on every PE (up to ncores PEs); 'x', 2.5
            and True raise ValueError naming ncores
  dropped   an imap iterator dropped before it was read: its job ends (is
            cancelled, or runs to its end) within 3 s
  imapreach imap raises a task's exception only when the iteration reaches
            its item: the values of the items before it come first
  gcscan    tasks that walk gc.get_objects() and copy every list (a memory
            profiler does): the worker's list of results is never seen with
            an empty slot (it crashed the PE)
  keepbig   map of 1 MB numpy results kept by the caller, 300 of them in
            chunks of 4, under CHARMPY_HEAP_MB=64 (test_pool.py): results
            from other PEs are copies, not views that would keep the
            senders' shared memory (the workers' sends ran out of memory)
  hugechunk chunksize=sys.maxsize (one chunk) through imap, imap_unordered
            and map: right results (the window's size overflowed in C)
  singlec   submit of a function every PE has run before (pool.c runs it
            in C there): args and kwargs arrive, a task that raises gives
            its exception (remote traceback naming the function), a result
            that cannot be sent back a TypeError saying so, from every PE,
            several rounds
  jobattrs  a job's attributes that the C side uses cannot be deleted, and
            its iterator cannot be replaced by a non-iterator
"""
import functools
import gc
import resource
import sys
import threading
import time

import numpy as np

from charmpy import *
from charmpy import coro

MODE = sys.argv[1] if len(sys.argv) > 1 else "order"
if MODE == "baditem":
    charm.options.local_msg_optim = False


# ---- functions of __main__ (sent by reference) -----------------------------
def sq1(x):
    return x * x + 1


def tagged(x):
    """(x*x+1, the PE that ran it)."""
    return (x * x + 1, charm.myPe())


def double_arr(a):
    return a * 2


def add3(a, b=0, c=0):
    return a + 10 * b + 100 * c


def pe_after(secs):
    time.sleep(secs)
    return charm.myPe()


def sleep_tag(x):
    """Sleep x[1] seconds, return (x[0], PE)."""
    time.sleep(x[1])
    return (x[0], charm.myPe())


def send_to(fut, value):
    fut.send(value * 3)


def boom(x):
    if x == "it7" or x == 7:
        return 1 / 0
    return x


def slow_then_boom(x):
    if x == 7:
        return 1 / 0
    time.sleep(0.1)
    return x * 10


def give_lock(x):
    return threading.Lock() if x == 3 else x


def locks(x):
    return threading.Lock()


def mul(a, x):
    return a * x


def dot_first(a, x):
    return float(a[x])


class Adder:
    def __init__(self, k):
        self.k = k

    def add(self, x):
        return x + self.k

    @staticmethod
    def neg(x):
        return -x


class Scale:
    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return x * self.k


class BadExc(Exception):
    """Picklable, but unpickling calls BadExc(message), which fails."""

    def __init__(self, a, b):
        super().__init__(f"BadExc {a} {b}")


def raise_bad(x):
    if x == 2:
        raise BadExc(x, "two")
    return x


@coro
def fib(n):
    if n < 2:
        return n
    return sum(charm.pool.map(fib, [n - 1, n - 2]))


@coro
def tree_sum(lo, hi):
    if hi - lo <= 4:
        return sum(range(lo, hi))
    mid = (lo + hi) // 2
    a = charm.pool.submit(tree_sum, lo, mid)
    b = charm.pool.submit(tree_sum, mid, hi)
    return a.get() + b.get()


def plain_outer(n):
    """A plain function that runs jobs of its own (needs allow_nested)."""
    a = sum(charm.pool.map(sq1, range(n)))
    b = list(charm.pool.imap(sq1, (i for i in range(n)), chunksize=2))
    return a, b


@coro
def fib_leaves(n):
    """fib as fib(), returning the PEs that ran its leaves."""
    if n < 2:
        time.sleep(0.002)
        return [charm.myPe()]
    out = []
    for r in charm.pool.map(fib_leaves, [n - 1, n - 2]):
        out += r
    return out


@coro
def inner_boom(n):
    """A task running a job of its own, in which item 7 raises."""
    return sum(charm.pool.map(boom, range(n)))


class PoolUser(Chare):
    """A group whose members run jobs of their own (owners on every PE)."""

    @coro
    def work(self, k):
        me = charm.myPe()
        a = charm.pool.map(sq1, range(me, me + k), chunksize=3)
        b = list(charm.pool.imap(sq1, (x for x in range(k))))
        c = charm.pool.submit(add3, me, 1).get()
        return me, a, b, c


def fib_ref(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def expect_raise(exc_type, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise AssertionError(f"{getattr(fn, '__name__', fn)}{args} {kwargs} raised no "
                         f"{exc_type.__name__}")


def maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


# ---- modes -------------------------------------------------------------------
def mode_order(P):
    pool = charm.pool
    ncs = [-1, 1, P] + ([2] if P >= 2 else [])
    for n in (0, 1, 5, 100):
        items = list(range(n))
        want = [x * x + 1 for x in items]
        for cs in (1, 7, "auto"):
            for nc in ncs:
                what = f"n={n} chunksize={cs} ncores={nc}"
                res = pool.map(tagged, items, chunksize=cs, ncores=nc)
                assert [v for v, _ in res] == want, (what, res)
                pes = {pe for _, pe in res}
                limit = P if nc == -1 else nc
                assert len(pes) <= limit and pes <= set(range(P)), (what, pes)
                if nc == 1 and n:
                    assert len(pes) == 1, (what, pes)
                if nc == -1 and cs == 1 and n == 100:
                    # 100 >= 2 chunks for each PE: every PE got some.
                    assert pes == set(range(P)), (what, pes)
                got = pool.map_async(sq1, items, chunksize=cs, ncores=nc).get()
                assert got == want, (what, got)
                fs = pool.map_async(sq1, items, chunksize=cs, ncores=nc, multi_future=True)
                assert len(fs) == n, (what, len(fs))
                assert [f.get() for f in fs] == want, what
                got = list(pool.imap(sq1, (x for x in items), chunksize=cs, ncores=nc))
                assert got == want, (what, got)
                got = list(pool.imap(sq1, items, chunksize=cs, ncores=nc))
                assert got == want, (what, got)
                got = list(pool.imap_unordered(sq1, (x for x in items), chunksize=cs,
                                               ncores=nc))
                assert sorted(got) == sorted(want), (what, got)
    # Larger: a generator of unknown length, 'auto' chunks growing.
    n = 5000
    assert pool.map(sq1, (x for x in range(n)), chunksize="auto") == \
        [x * x + 1 for x in range(n)]
    assert list(pool.imap(sq1, range(n), chunksize="auto")) == [x * x + 1 for x in range(n)]
    # numpy arrays as items (rows of a 2-D array, and a list of arrays) and results.
    m = np.arange(60, dtype=np.float64).reshape(12, 5)
    for cs in (1, 7, "auto"):
        res = pool.map(double_arr, m, chunksize=cs)
        assert len(res) == 12 and all(isinstance(r, np.ndarray) for r in res), res
        assert all(np.array_equal(r, row * 2) and r.dtype == np.float64
                   for r, row in zip(res, m)), res
        arrs = [np.full((3, 4), i, dtype=np.int32) for i in range(9)]
        res = list(pool.imap(double_arr, arrs, chunksize=cs))
        assert all(np.array_equal(r, a * 2) and r.dtype == np.int32
                   for r, a in zip(res, arrs)), res
    big = [np.arange(200000, dtype=np.int64) + i for i in range(4)]
    res = pool.map(double_arr, big)
    assert all(np.array_equal(r, b * 2) for r, b in zip(res, big))
    # Single tasks.
    assert pool.submit(sq1, 6).get() == 37
    assert pool.submit(add3, 1, 2, c=3).get() == 321
    assert pool.submit(add3, 4, c=5).get() == 504
    assert pool.submit_async(add3, 7, b=1).get() == 17
    assert pool.Task(add3, [1, 1, 1], ret=True).get() == 111
    f = pool.Task(add3, (2, 0, 0), awaitable=True)
    f.get()                               # completes (its value is not specified)
    fut = charm.Future()
    assert pool.Task(send_to, [fut, 14]) is None
    assert fut.get() == 42
    futs = [pool.submit(tagged, i) for i in range(50)]
    res = [f.get() for f in futs]
    assert [v for v, _ in res] == [i * i + 1 for i in range(50)], res
    if P >= 2:
        assert len({pe for _, pe in res}) >= 2, res
    # Two ordered iterators read in step.
    a = pool.imap(sq1, (x for x in range(300)))
    b = pool.imap(double_arr, (x for x in range(300)), chunksize=3)
    assert list(zip(a, b)) == [(x * x + 1, 2 * x) for x in range(300)]


def mode_funcs(P):
    pool = charm.pool
    xs = list(range(-10, 30))
    assert pool.map(lambda x: x * 3 - 1, xs) == [x * 3 - 1 for x in xs]
    k, offs = 5, [100, 200]

    def closure(x):
        return x + k + offs[x % 2]
    assert pool.map(closure, xs, chunksize=4) == [x + k + offs[x % 2] for x in xs]
    assert list(pool.imap(closure, xs)) == [x + k + offs[x % 2] for x in xs]
    assert pool.submit(closure, 3).get() == 3 + 5 + 200
    assert pool.map(sq1, xs) == [x * x + 1 for x in xs]
    assert pool.map(abs, xs) == [abs(x) for x in xs]
    assert pool.map(str, xs) == [str(x) for x in xs]
    assert pool.submit(pow, 2, 10).get() == 1024
    assert pool.submit(pow, 3, 4, 5).get() == pow(3, 4, 5)
    assert pool.map(functools.partial(pow, 2), range(12)) == [2 ** i for i in range(12)]
    assert pool.map(functools.partial(mul, 7), xs) == [7 * x for x in xs]
    assert pool.map(functools.partial(add3, b=2), xs) == [x + 20 for x in xs]
    adder = Adder(1000)
    assert pool.map(adder.add, xs) == [x + 1000 for x in xs]
    assert pool.map(Adder.neg, xs) == [-x for x in xs]
    assert pool.map(Scale(4), xs) == [4 * x for x in xs]
    # Lambdas and closures nested in one another.
    make = lambda m: (lambda x: x * m)
    assert pool.map(make(9), xs) == [9 * x for x in xs]
    # Functions that cannot be sent: TypeError at the call, saying why.
    lock = threading.Lock()

    def locked(x):
        with lock:
            return x
    gen = (i for i in range(3))
    with_gen = lambda x: next(gen) + x
    for bad, why in ((locked, "lock"), (with_gen, "generator")):
        for call in (lambda: pool.map(bad, xs), lambda: pool.map_async(bad, xs),
                     lambda: pool.map_async(bad, xs, multi_future=True),
                     lambda: pool.imap(bad, xs), lambda: pool.imap_unordered(bad, xs),
                     lambda: pool.submit(bad, 1), lambda: pool.Task(bad, [1], ret=True)):
            e = expect_raise(TypeError, call)
            assert why in str(e).lower() and "charm.pool" in str(e), str(e)
    e = expect_raise(TypeError, pool.map, 42, xs)
    assert "callable" in str(e), str(e)
    # The pool works after them.
    assert pool.map(lambda x: -x, xs, chunksize=3) == [-x for x in xs]
    assert pool.submit(closure, 4).get() == 4 + 5 + 100


def mode_jobs(P):
    assert P >= 2, "jobs needs 2 PEs or more"
    pool = charm.pool
    xs = list(range(200))
    want = [x * x + 1 for x in xs]
    # Two jobs: ncores 1 and P-1.
    fa = pool.map_async(tagged, xs, ncores=1)
    fb = pool.map_async(tagged, xs, chunksize=3, ncores=P - 1)
    ra, rb = fa.get(), fb.get()
    assert [v for v, _ in ra] == want and [v for v, _ in rb] == want
    pa, pb = {pe for _, pe in ra}, {pe for _, pe in rb}
    assert len(pa) == 1 and len(pb) <= P - 1 and not pa & pb, (pa, pb)
    # Three jobs: 1, 1, -1.
    fs = [pool.map_async(tagged, xs, ncores=1), pool.map_async(tagged, xs, ncores=1),
          pool.map_async(tagged, xs, chunksize="auto", ncores=-1)]
    rs = [f.get() for f in fs]
    for r in rs:
        assert [v for v, _ in r] == want
    p1, p2 = {pe for _, pe in rs[0]}, {pe for _, pe in rs[1]}
    assert len(p1) == 1 and len(p2) == 1 and p1 != p2, (p1, p2)
    # Two ncores=1 jobs of equal sleeping work: different PEs, at the same time.
    work = [0.02] * 15                      # 0.3 s each
    t0 = time.perf_counter()
    fa = pool.map_async(pe_after, work, ncores=1)
    fb = pool.map_async(pe_after, work, ncores=1)
    pa, pb = set(fa.get()), set(fb.get())
    dt = time.perf_counter() - t0
    assert len(pa) == 1 and len(pb) == 1 and not pa & pb, (pa, pb)
    assert dt < 0.55, f"two 0.3 s jobs on two PEs took {dt:.2f} s"
    # Kinds mixed at once: a map_async running while an imap is read and
    # single tasks are submitted.
    fm = pool.map_async(sq1, range(3000), chunksize=5)
    singles = []
    out = []
    for i, v in enumerate(pool.imap(tagged, (x for x in range(500)), ncores=max(1, P // 2))):
        out.append(v[0])
        if i % 50 == 0:
            singles.append((i, pool.submit(add3, i, 1)))
    assert out == [x * x + 1 for x in range(500)]
    assert [f.get() for _, f in singles] == [i + 10 for i, _ in singles]
    assert fm.get() == [x * x + 1 for x in range(3000)]
    # An imap abandoned half way; another imap_unordered abandoned.
    it = pool.imap(sq1, (x for x in range(10000)))
    for i, v in enumerate(it):
        assert v == i * i + 1
        if i == 100:
            break
    it.close()
    it = pool.imap_unordered(sq1, range(10000), chunksize=7)
    assert next(it) in {x * x + 1 for x in range(10000)}
    it.close()
    assert pool.map(sq1, xs, chunksize=2) == want
    assert sorted(pool.imap_unordered(sq1, xs)) == sorted(want)
    # Many small jobs at once.
    fs = [pool.map_async(sq1, range(i, i + 10), ncores=(i % P) + 1) for i in range(40)]
    for i, f in enumerate(fs):
        assert f.get() == [x * x + 1 for x in range(i, i + 10)], i
    # Every PE owns jobs at the same time (a group's coroutines), while PE 0
    # runs one too.
    g = Group(PoolUser)
    k = 60
    f = g.work(k, ret=True)
    assert pool.map(sq1, range(500), chunksize=4) == [x * x + 1 for x in range(500)]
    res = f.get()
    assert sorted(r[0] for r in res) == list(range(P)), res
    for me, a, b, c in res:
        assert a == [x * x + 1 for x in range(me, me + k)], (me, a)
        assert b == [x * x + 1 for x in range(k)] and c == me + 10, (me, b, c)


def mode_nested(P):
    pool = charm.pool
    for n in range(10, 15):
        got = fib(n)                      # main calls it: it runs charm.pool.map
        assert got == fib_ref(n), (n, got)
    assert pool.map(fib, [10, 11, 12]) == [fib_ref(n) for n in (10, 11, 12)]
    assert pool.submit(fib, 13).get() == fib_ref(13)
    assert pool.submit(tree_sum, 0, 200).get() == sum(range(200))
    res = pool.map(plain_outer, range(6), allow_nested=True)
    for n, (a, b) in zip(range(6), res):
        assert a == sum(x * x + 1 for x in range(n)), (n, a)
        assert b == [x * x + 1 for x in range(n)], (n, b)
    res = list(pool.imap(plain_outer, range(4), allow_nested=True))
    assert [a for a, _ in res] == [sum(x * x + 1 for x in range(n)) for n in range(4)]
    # An exception in a nested job reaches the outer job's get().
    e = expect_raise(ZeroDivisionError, pool.map, inner_boom, [3, 20, 4])
    assert any("item 7" in n for n in e.__notes__), e.__notes__
    assert pool.map(fib, [6, 7]) == [fib_ref(6), fib_ref(7)]
    # A plain function calling the pool without allow_nested: a clear error.
    e = expect_raise(RuntimeError, pool.map, plain_outer, [3])
    assert "coroutine" in str(e), str(e)


def mode_errors(P):
    pool = charm.pool
    items = [f"it{i}" for i in range(20)]
    for cs in (1, 3, "auto"):
        e = expect_raise(ZeroDivisionError, pool.map, boom, items, chunksize=cs)
        notes = " ".join(getattr(e, "__notes__", []))
        assert "item 7" in notes and repr("it7") in notes, notes
        tb = getattr(e, "remote_traceback", "") or str(e.__cause__ or "")
        assert "boom" in tb and "ZeroDivisionError" in tb, tb
        assert pool.map(sq1, range(30), chunksize=cs) == [x * x + 1 for x in range(30)]
    # imap: right values, then the exception.
    got = []
    try:
        for v in pool.imap(boom, items):
            got.append(v)
        raise AssertionError("imap raised nothing")
    except ZeroDivisionError as e:
        assert "item 7" in " ".join(e.__notes__), e.__notes__
    assert got == items[:len(got)] and len(got) <= 7, got
    got = []
    try:
        for v in pool.imap_unordered(boom, (x for x in items)):
            got.append(v)
        raise AssertionError("imap_unordered raised nothing")
    except ZeroDivisionError:
        pass
    assert set(got) <= set(items) - {"it7"}, got
    # multi_future: the bad item's future raises; the ones with a value are right.
    fs = pool.map_async(boom, items, multi_future=True)
    e = expect_raise(ZeroDivisionError, fs[7].get)
    assert "item 7" in " ".join(e.__notes__)
    for i, f in enumerate(fs):
        try:
            assert f.get() == items[i], (i, f.get())
        except ZeroDivisionError:
            pass
    # submit and Task.
    e = expect_raise(ZeroDivisionError, pool.submit(boom, 7).get)
    assert "boom" in (getattr(e, "remote_traceback", "") or str(e.__cause__)), e
    expect_raise(ZeroDivisionError, pool.Task(boom, [7], ret=True).get)
    assert pool.map(sq1, range(50)) == [x * x + 1 for x in range(50)]

    # The iterable raising in the middle.
    def broken(n):
        for i in range(n):
            yield i
        raise KeyError("the generator broke")
    e = expect_raise(KeyError, pool.map_async(sq1, broken(25), chunksize=2).get)
    assert "the generator broke" in str(e), e
    got = []
    try:
        for v in pool.imap(sq1, broken(25)):
            got.append(v)
        raise AssertionError("imap over a broken generator raised nothing")
    except KeyError:
        pass
    assert got == [x * x + 1 for x in range(len(got))] and len(got) <= 25, got
    try:   # multi_future reads the iterable at the call, or get() raises
        fs = pool.map_async(sq1, broken(5), multi_future=True)
        expect_raise(KeyError, fs[-1].get)
    except KeyError:
        pass
    # A result that cannot be sent back. Results of tasks run on PE 0 come by
    # reference (charm.options.local_msg_optim), so every item gives a lock:
    # some run on other PEs (P >= 2); on 1 PE the locks come back.
    for cs in (1, 4):
        if P >= 2:
            e = expect_raise(TypeError, pool.map, locks, range(12), chunksize=cs)
            assert "cannot be sent back" in str(e) and "lock" in str(e), str(e)
        else:
            got = pool.map(locks, range(12), chunksize=cs)
            assert all(type(v) is type(threading.Lock()) for v in got), got
    # Two single tasks at once go to two different PEs (the least loaded):
    # at least one is not PE 0.
    fs = [pool.submit(give_lock, 3), pool.submit(give_lock, 3)]
    errs = []
    for f in fs:
        try:
            f.get()
        except TypeError as e:
            errs.append(str(e))
    assert (1 <= len(errs) <= 2) if P >= 2 else not errs, errs
    assert all("cannot be sent back" in e and "lock" in e for e in errs), errs
    # Bad arguments.
    for cs in (0, -1, "x", 1.5, True, None):
        for call in (pool.map, pool.map_async, pool.imap, pool.imap_unordered):
            e = expect_raise(ValueError, call, sq1, range(5), chunksize=cs)
            assert "chunksize" in str(e), str(e)
    for nc in (0, -2):
        for call in (pool.map, pool.map_async, pool.imap, pool.imap_unordered):
            e = expect_raise(ValueError, call, sq1, range(5), ncores=nc)
            assert "ncores" in str(e), str(e)
    assert pool.map(sq1, range(50), chunksize=7) == [x * x + 1 for x in range(50)]
    assert list(pool.imap(sq1, range(50))) == [x * x + 1 for x in range(50)]


def mode_memory(P, n):
    pool = charm.pool
    pool.map(sq1, range(2000))          # warm up (imports, buffers)
    want = sum(x * x + 1 for x in range(n))
    # 'auto' chunks grow to 65536 items, and imap's window with them (6 chunks
    # per PE): a looser bound (slowconsumer shows what that window allows).
    for cs, bound in ((1000, 20), ("auto", 30)):
        gc.collect()
        before = maxrss_mb()
        t0 = time.perf_counter()
        total = count = 0
        for v in pool.imap(sq1, (x for x in range(n)), chunksize=cs):
            total += v
            count += 1
        dt = time.perf_counter() - t0
        growth = maxrss_mb() - before
        print(f"imap chunksize={cs}: {n} items in {dt:.2f} s, peak RSS +{growth:.1f} MB")
        assert count == n and total == want, (count, total, want)
        assert growth < bound, f"imap of {n} items grew the peak RSS by {growth:.1f} MB"
    # The bounds mean something: the list of the results grows the peak by more.
    gc.collect()
    before = maxrss_mb()
    lst = [x * x + 1 for x in range(n)]
    growth = maxrss_mb() - before
    print(f"a list of {n} results: peak RSS +{growth:.1f} MB")
    assert n < 10 ** 6 or growth > 30, growth
    del lst


def mode_slowconsumer(P, n):
    pool = charm.pool
    pool.map(sq1, range(2000))
    want = sum(x * x + 1 for x in range(n))
    for cs in (1000, "auto"):
        gc.collect()
        before = maxrss_mb()
        t0 = time.perf_counter()
        total = 0
        for i, v in enumerate(pool.imap(sq1, (x for x in range(n)), chunksize=cs)):
            total += v
            if i % 100 == 0:
                charm.sleep(0.0005)
        dt = time.perf_counter() - t0
        growth = maxrss_mb() - before
        print(f"slow consumer, chunksize={cs}: {n} items in {dt:.2f} s, "
              f"peak RSS +{growth:.1f} MB")
        assert total == want, (total, want)
        assert growth < 20, (f"imap(chunksize={cs!r}) with a slow consumer grew the peak RSS "
                             f"by {growth:.1f} MB: it buffers the results")


def mode_uneven(P):
    L = 0.12
    durs = [L] * (4 * P) + [((i * 7) % 21) / 1000 for i in range(12 * P)]
    total, mx = sum(durs), max(durs)
    bound = 1.25 * (total / P + mx) + 0.05
    block = -(-len(durs) // P)
    static = max(sum(durs[i:i + block]) for i in range(0, len(durs), block))
    assert static > bound, (static, bound)         # the design shows something
    charm.pool.map(pe_after, [0.0] * (4 * P))      # warm up
    t0 = time.perf_counter()
    res = charm.pool.map(sleep_tag, list(enumerate(durs)), chunksize=1)
    dt = time.perf_counter() - t0
    assert [i for i, _ in res] == list(range(len(durs)))
    busy = {}
    for (i, pe), d in zip(res, durs):
        busy[pe] = busy.get(pe, 0.0) + d
    print(f"uneven: {len(durs)} tasks, sum {total:.2f} s on {P} PEs in {dt:.2f} s "
          f"(bound {bound:.2f} s, a static block split {static:.2f} s); "
          f"work per PE {sorted(busy.items())}")
    assert dt <= bound, f"took {dt:.2f} s, more than {bound:.2f} s"
    if P >= 2:
        assert len(busy) == P, busy


def mode_progress(P):
    pool = charm.pool
    print(f"TTY {sys.stderr.isatty()}")
    sys.stderr.write("<<A>>\n")
    sys.stderr.flush()
    assert pool.map(sq1, range(100), progress=True) == [x * x + 1 for x in range(100)]
    sys.stderr.write("<<B>>\n")
    sys.stderr.flush()
    assert pool.map_async(sq1, range(77), chunksize=3, progress="always").get() == \
        [x * x + 1 for x in range(77)]
    sys.stderr.write("<<C>>\n")
    sys.stderr.flush()
    assert list(pool.imap(sq1, list(range(33)), progress=True)) == \
        [x * x + 1 for x in range(33)]
    sys.stderr.write("<<D>>\n")
    sys.stderr.flush()


def mode_charmref(P):
    base = 7

    def where(x):
        return x + base, charm.myPe()
    cases = [("a lambda using charm", lambda x: (x, charm.myPe())),
             ("a closure using charm", where),
             ("a lambda calling a __main__ function that uses charm",
              lambda x: tagged(x))]
    failed = []
    for name, f in cases:
        try:
            res = charm.pool.map(f, range(4 * P))
            assert {pe for _, pe in res} <= set(range(P)), (name, res)
        except TypeError as e:
            failed.append(f"{name}: {e}")
    assert not failed, "cannot be sent:\n" + "\n".join(failed)


def mode_stale(P):
    failed = []
    a = Adder(1)
    assert charm.pool.map(a.add, range(4)) == [1, 2, 3, 4]
    a.k = 10
    got = charm.pool.map(a.add, range(4))
    if got != [10, 11, 12, 13]:
        failed.append(f"the bound method ran with the old state: {got}")
    s = Scale(2)
    assert charm.pool.map(s, range(4)) == [0, 2, 4, 6]
    s.k = 3
    got = charm.pool.map(s, range(4))
    if got != [0, 3, 6, 9]:
        failed.append(f"the callable instance ran with the old state: {got}")
    lst = [1]
    p = functools.partial(mul, lst)
    assert charm.pool.map(p, [1, 2]) == [[1], [1, 1]]
    lst.append(2)
    got = charm.pool.map(p, [1, 2])
    if got != [[1, 2], [1, 2, 1, 2]]:
        failed.append(f"the partial ran with the old list: {got}")
    assert not failed, "\n".join(failed)


def mode_retain(P):
    # Live memory as tracemalloc counts it (numpy's buffers included), not
    # RSS: freed heap memory below charm.start's trim threshold (64 MiB)
    # stays resident, and would look like a leak.
    import tracemalloc
    charm.pool.map(functools.partial(dot_first, np.zeros(10)), range(2))   # warm up
    gc.collect()
    tracemalloc.start()
    m0 = tracemalloc.get_traced_memory()[0]
    for i in range(10):
        arr = np.full(10 ** 6, float(i))          # 8 MB each
        assert charm.pool.map(functools.partial(dot_first, arr), range(3)) == [float(i)] * 3
        del arr
    charm.sleep(0.05)      # the jobs' end messages (pX) reach this PE's worker
    gc.collect()
    growth = (tracemalloc.get_traced_memory()[0] - m0) / 1e6
    tracemalloc.stop()
    print(f"retain: live memory of PE 0 grew by {growth:.1f} MB after 10 jobs over 8 MB arrays")
    assert growth < 10, f"the pool keeps the jobs' functions alive: +{growth:.0f} MB"


def mode_spread(P):
    charm.pool.map(pe_after, [0.0] * (4 * P))     # warm up
    t0 = time.perf_counter()
    pes = charm.pool.map(pe_after, [0.3] * P, chunksize=1)
    dt = time.perf_counter() - t0
    assert sorted(pes) == list(range(P)), f"{P} tasks on {P} PEs ran on PEs {pes}"
    assert dt < 0.5, f"{P} tasks of 0.3 s on {P} PEs took {dt:.2f} s"
    leaves = fib_leaves(10)
    assert len(leaves) == fib_ref(11) and (len(set(leaves)) > 1 or P == 1), \
        f"nested fib(10) ran all its {len(leaves)} leaves on PEs {sorted(set(leaves))} of {P}"


def mode_bigchunks(P):
    cs = 600                       # above the window of 64 items per PE (P <= 9)
    pes = list(charm.pool.imap(pe_after, [0.0] * (4 * cs * P), chunksize=cs))
    assert set(pes) == set(range(P)), \
        f"imap with chunksize={cs} ran on PEs {sorted(set(pes))} only, of {P}"
    pes = list(charm.pool.imap_unordered(pe_after, [0.0] * (4 * cs * P), chunksize=cs))
    assert set(pes) == set(range(P)), \
        f"imap_unordered with chunksize={cs} ran on PEs {sorted(set(pes))} only, of {P}"


def mode_badexc(P):
    try:
        charm.pool.map(raise_bad, range(5))
        raise AssertionError("map raised nothing")
    except AssertionError:
        raise
    except Exception as e:
        assert "BadExc" in f"{type(e).__name__} {e}", repr(e)
    try:
        charm.pool.submit(raise_bad, 2).get()
        raise AssertionError("submit raised nothing")
    except AssertionError:
        raise
    except Exception as e:
        assert "BadExc" in f"{type(e).__name__} {e}", repr(e)
    assert charm.pool.map(sq1, range(5)) == [1, 2, 5, 10, 17]


def ident_or_zero(x):
    return x if isinstance(x, int) else 0


def mode_baditem(P, where="first"):
    """(Run with charm.options.local_msg_optim = False: every item is
    pickled, PE 0's too.)"""
    at = {"first": 0, "later": 50}[where]
    items = list(range(60))
    items[at] = threading.Lock()
    e = expect_raise(TypeError, lambda: charm.pool.map_async(ident_or_zero, items).get())
    assert "lock" in str(e), str(e)
    # The chunks already sent still come back (their results dropped); then
    # the job is gone.
    no_jobs_left(2, f"after an unpicklable item at {at}")
    assert charm.pool.map(sq1, range(5)) == [1, 2, 5, 10, 17]


def no_jobs_left(secs, what):
    """Within secs seconds, this PE runs no pool job any more."""
    idle = "<charm.pool: 0 jobs of this PE running>"
    for _ in range(int(secs * 100)):
        if repr(charm.pool) == idle:
            return
        charm.sleep(0.01)
    assert repr(charm.pool) == idle, f"{secs} s {what}: {charm.pool!r}"


def mode_ncores(P):
    # More PEs than there are: every PE ("up to ncores PEs", API.md).
    pes = set(charm.pool.map(lambda x: charm.myPe(), range(8 * P), ncores=P + 5))
    assert pes == set(range(P)), pes
    failed = []
    for nc in ("x", 2.5, True):
        try:
            charm.pool.map(sq1, range(5), ncores=nc)
            failed.append(f"ncores={nc!r}: no error")
        except ValueError as e:
            assert "ncores" in str(e), str(e)
        except Exception as e:
            failed.append(f"ncores={nc!r}: {type(e).__name__}: {e}")
    assert not failed, "\n".join(failed)


def mode_dropped(P):
    it = charm.pool.imap(sq1, range(2000))
    del it
    gc.collect()
    no_jobs_left(3, "after an imap iterator was dropped unread")


def mode_imapreach(P):
    got = []
    try:
        for v in charm.pool.imap(slow_then_boom, range(12)):
            got.append(v)
        raise AssertionError("imap raised nothing")
    except ZeroDivisionError:
        pass
    assert got == [x * 10 for x in range(7)], \
        f"imap raised before reaching item 7: it gave only {got}"


def scan_lists(x):
    n = 0
    for o in gc.get_objects():
        if type(o) is list:
            n += len(list(o))
    return x


def mode_gcscan(P):
    assert charm.pool.map(scan_lists, range(3 * P), chunksize=3) == list(range(3 * P))


def big_result(x):
    return np.full(2 ** 17, x, dtype=np.float64)


def mode_keepbig(P):
    out = charm.pool.map(big_result, range(300), chunksize=4)
    assert len(out) == 300 and all(a[0] == i and a.shape == (2 ** 17,)
                                   for i, a in enumerate(out))


def mode_hugechunk(P):
    n = 500
    want = [sq1(x) for x in range(n)]
    assert list(charm.pool.imap(sq1, range(n), chunksize=sys.maxsize)) == want
    assert sorted(charm.pool.imap_unordered(sq1, range(n), chunksize=sys.maxsize)) == want
    assert charm.pool.map(sq1, range(n), chunksize=sys.maxsize) == want
    it = charm.pool.imap(sq1, iter(range(n)), chunksize=sys.maxsize)
    assert it._job.limit >= sys.maxsize, it._job.limit
    assert list(it) == want


def picky(x, k=0, lock=False):
    if x % 5 == 3:
        raise ValueError(f"picky {x}")
    return threading.Lock() if lock else (x, k, charm.myPe())


def mode_singlec(P):
    # Warm up: every PE unpickles picky once (the first call is pool.py's).
    fs = [charm.pool.submit(picky, 1) for _ in range(4 * P)]
    assert all(f.get()[:2] == (1, 0) for f in fs)
    for _ in range(3):
        n = 14 * P
        fs = [(x, charm.pool.submit(picky, x, k=x + 1, lock=(x % 7 == 6))) for x in range(n)]
        pes, unsendable = set(), 0
        for x, f in fs:
            try:
                v = f.get()
            except ValueError as e:
                assert x % 5 == 3 and str(e) == f"picky {x}", (x, e)
                assert "picky" in getattr(e, "remote_traceback", ""), e
                continue
            except TypeError as e:
                assert x % 7 == 6 and "cannot be sent back" in str(e), (x, e)
                unsendable += 1
                continue
            assert x % 5 != 3, (x, v)
            if x % 7 == 6:   # a Lock: it ran on PE 0, whose results come by reference
                assert isinstance(v, type(threading.Lock())), (x, v)
            else:
                assert v[:2] == (x, x + 1), (x, v)
                pes.add(v[2])
        assert len(pes) == P, pes
        # The Locks made on the other PEs could not come back.
        assert unsendable > 0 or P == 1, unsendable


def mode_jobattrs(P):
    it = charm.pool.imap(sq1, range(2000))
    job = it._job
    for name in ("it", "results", "ready", "futures", "exc", "waiter", "bar"):
        try:
            delattr(job, name)
        except AttributeError as e:
            assert "cannot be deleted" in str(e), e
        else:
            raise AssertionError(f"job.{name} could be deleted")
    try:
        job.it = [1, 2]
    except TypeError as e:
        assert "iterator" in str(e), e
    else:
        raise AssertionError("job.it took a list")
    assert sum(it) == sum(x * x + 1 for x in range(2000))


def mode_taskfail(P):
    # A first task holds PE 0 (the least loaded, this PE first), so that the
    # failing one runs on PE 1 and its exception travels (P >= 2).
    charm.pool.submit(pe_after, 0.3)
    charm.pool.Task(boom, [7])
    charm.sleep(5)
    raise AssertionError("the failed task did not end the job")


def main(args):
    P = charm.numPes()
    mode = args[1] if len(args) > 1 else MODE
    if mode in ("memory", "slowconsumer"):
        globals()[f"mode_{mode}"](P, int(args[2]) if len(args) > 2 else 10 ** 6)
    elif mode == "baditem":
        mode_baditem(P, *args[2:3])
    else:
        globals()[f"mode_{mode}"](P)
    print("OK pool_modes")
    charm.exit()


charm.start(main)
