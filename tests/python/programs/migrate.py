"""Migration (self.migrate) with messages in flight. Usage: migrate.py MODE

  storm     every element of an array sends numbered calls to random
            elements and then moves to a random PE, every round, rounds
            overlapping; at the end (quiescence) every call arrived exactly
            once, and the calls one element made in one round (all from one
            PE) arrived in the order made; a sum reduction in every round,
            contributed just before moving, is right; @when holds calls for
            a later round across moves
  state     __getstate__/__setstate__ are used, migrated() runs once on the
            new PE after each move, thisIndex/thisProxy survive, a single
            chare moves too, and calls made after a move go to the new PE
  refuse    a chare that cannot be pickled: migrate() raises a TypeError
            (or, when one of the same shape moved before and only a list's
            contents changed, the departure refuses it: it stays, working)
            naming the class, the index and the attribute, and it stays,
            working; group members refuse to move
  coroutine a chare that asks to move while one of its coroutines is
            suspended moves when that coroutine ends
  early     elements move right after the array is made (no awaitCreation):
            a moved element may reach a PE before the array does, and waits
            there for it
  bcastcoro as bcast, the broadcast method a coroutine (it moves when it
            returns, after the broadcast reached every member of the PE)
  selfcalls elements that moved call themselves (straight to their own PE
            while it never sent calls elsewhere, else through the home) in
            bursts, moving away in the middle of each burst: every call
            arrives once and in order
  chain     a chare that calls migrate() from migrated() hops on at once,
            PE after PE, with a numpy array that stays writable
  direct    every element moves off its home; each PE then calls every
            element in three bursts (quiescence between them): after the
            first, each PE's location cache has the element's PE, the home
            numbers none of the later calls (they go direct), and every
            element got each PE's calls once and in the order made; then
            the elements move again, the calls keep coming, and the caches
            follow them
  sparse    as direct, for a sparse array whose elements were inserted on
            another PE than their home (calls numbered by the home before any
            move), then moved twice
  chareorder a single chare busy on its home while a PE's call A to it waits
            there, then moving to that PE: the PE's next call B (made after
            the arrival) is delivered after A
  sparsebcast elements of sparse arrays inserted away from their home move
            for the first time while every PE broadcasts: each broadcast
            reaches each element once, in each PE's order
  sparsecycle sparse elements inserted away from their homes (with and
            without ckDoneInserting) sent home and called at once, then
            moving between that PE, their home and a third one while every
            PE broadcasts: every call answered, each broadcast once, in order
  badarg    after a PE calls a moved element directly, one call whose
            argument cannot be pickled raises TypeError at the call: the
            PE's later calls still arrive, and quiescence is reached
  unplaced  (6 PEs or more) a PE learns where a moved element is before the
            array's creation reached it (its parent in the broadcast tree
            is busy): its switch and direct calls still reach the element
  nested    a direct call whose argument's __reduce__ makes another direct
            call to the same element: both arrive, each once, in the order
            they were sent (the inner first), and the calls after them too
  bcast     broadcasts sent back to back while every element moves at each
            one (the broadcast itself says where): each element gets every
            broadcast exactly once and in the order sent; a broadcast with
            ret=True right after moves has every element's answer
"""
import collections
import random
import sys
import threading
import time

from charmpy import *

MODE = sys.argv[1]
ROUNDS = 6
SENDS = 8


class Walker(Chare):
    def __init__(self, n):
        self.n = n
        self.round = 0
        self.got = {}          # (sender, round) -> seqs in arrival order
        self.later = []        # calls held by @when for a later round
        self.moves = 0

    def go(self, r, seed, done):
        rng = random.Random(seed)
        me = self.thisIndex[0]
        for seq in range(SENDS):
            t = rng.randrange(self.n)
            self.thisProxy[t].take(me, r, seq)
        self.thisProxy[rng.randrange(self.n)].ahead(me, r + 1)
        self.round = r + 1
        self.contribute(me, Reducer.sum, done)
        self.migrate(rng.randrange(charm.numPes()))

    def take(self, sender, r, seq):
        self.got.setdefault((sender, r), []).append(seq)

    @when("self.round >= r")
    def ahead(self, sender, r):
        self.later.append((sender, r, self.round))

    def migrated(self):
        self.moves += 1

    def report(self, f):
        still_held = [(it[2], self.round) for it in self.__dict__.get("_charmpy_held", [])]
        self.contribute((self.thisIndex[0], self.got, self.later, self.moves, still_held),
                        Reducer.gather, f)


class Stateful(Chare):
    def __init__(self):
        self.secret = [1, 2, 3]
        self.arrivals = []
        self.cache = "recomputed"

    def __getstate__(self):
        d = dict(self.__dict__)
        d.pop("cache")          # not sent: rebuilt on arrival
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        self.cache = "rebuilt"

    def move(self, pe):
        self.migrate(pe)

    def migrated(self):
        self.arrivals.append(charm.myPe())

    def where(self):
        return (charm.myPe(), self.thisIndex, self.secret, self.arrivals, self.cache,
                self.thisProxy == self.thisProxy)


class Minimal(Chare):
    """__getstate__ returns only its own field: the runtime's attributes
    (thisIndex, thisProxy, reduction counters) must travel anyway."""
    def __init__(self):
        self.x = self.thisIndex[0] + 100

    def __getstate__(self):
        return {"x": self.x}

    def __setstate__(self, d):
        self.x = d["x"]

    def move(self, pe, f):
        self.contribute(self.x, Reducer.sum, f)
        self.migrate(pe)

    def where(self, f):
        self.contribute((self.thisIndex[0], charm.myPe(), self.x), Reducer.gather, f)


class Hopper(Chare):
    def __init__(self):
        self.seen = []

    def hop(self, r, seed):
        self.seen.append(r)
        self.migrate(random.Random(seed * 7919 + self.thisIndex[0]).randrange(charm.numPes()))

    def where(self):
        return (self.thisIndex[0], charm.myPe(), self.seen)


class Bcaster(Chare):
    def send_hops(self, a, trial, k):
        for r in range(k):
            a.hop((charm.myPe(), r), trial * 1000 + r * 31 + charm.myPe())


class HopperCoro(Hopper):
    @coro
    def hop(self, r, seed):
        Hopper.hop(self, r, seed)


class Early(Chare):
    def __init__(self):
        self.moved = 0

    def go(self, pe):
        self.migrate(pe)

    def migrated(self):
        self.moved += 1

    def where(self):
        return (self.thisIndex[0], charm.myPe(), self.moved)


class SelfCaller(Chare):
    def __init__(self):
        self.got = []
        self.sent = 0

    def move(self, pe):
        self.migrate(pe)

    def burst(self, r, n, move):
        me = self.thisProxy[self.thisIndex]
        for _ in range(n):
            me.tick(self.sent)
            self.sent += 1
        if move:
            self.migrate((charm.myPe() + 1 + r) % charm.numPes())   # the ticks follow
        for _ in range(n):
            me.tick(self.sent)
            self.sent += 1

    def where(self):
        return charm.myPe()

    def tick(self, k):
        self.got.append(k)

    def report(self):
        return (self.thisIndex[0], self.got, self.sent)


class Chain(Chare):
    def __init__(self):
        import numpy as np
        self.data = np.arange(1000.0)
        self.path = []

    def start(self, hops, done):
        self.left, self.done = hops, done
        self.migrate((charm.myPe() + 1) % charm.numPes())

    def migrated(self):
        self.path.append(charm.myPe())
        self.data[len(self.path) % 1000] += 1     # writable after the move
        self.left -= 1
        if self.left:
            self.migrate((charm.myPe() + 1) % charm.numPes())
        else:
            self.done.send((self.path, float(self.data.sum())))


class Locked(Chare):
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = 0

    def try_move(self, pe):
        try:
            self.migrate(pe)
        except TypeError as e:
            return str(e)
        return None

    def call(self):
        self.calls += 1
        return (charm.myPe(), self.calls)


class Bag(Chare):
    """Its attributes keep their types while a list gets a lock: the check at
    the call (once per shape) lets it by, the departure refuses it."""
    def __init__(self):
        self.items = []
        self.calls = 0

    def move(self, pe, lock):
        if lock:
            self.items.append(threading.Lock())
        return Locked.try_move(self, pe)

    def call(self):
        self.calls += 1
        return (charm.myPe(), self.calls, len(self.items))


class GroupMember(Chare):
    def try_move(self):
        try:
            self.migrate(0)
        except TypeError as e:
            return str(e)
        return None


class Sleeper(Chare):
    def __init__(self):
        self.log = []

    @coro
    def long_work(self, pe):
        self.log.append(("start", charm.myPe()))
        self.migrate(pe)            # waits for this coroutine to end
        charm.sleep(0.1)
        self.log.append(("end", charm.myPe()))

    def where(self):
        return (charm.myPe(), self.log)


def storm(P):
    n = 4 * P
    a = Array(Walker, n, args=[n])
    charm.awaitCreation(a)
    want = n * (n - 1) // 2
    sums = []
    for r in range(ROUNDS):
        done = Future()
        for i in range(n):
            a[i].go(r, r * 1000 + i, done)
        sums.append(done)
    assert [f.get() for f in sums] == [want] * ROUNDS, [f.get() for f in sums]
    charm.waitQD()
    f = Future()
    a.report(f)
    reports = f.get()
    assert [r[0] for r in reports] == list(range(n))
    expected = {}
    for r in range(ROUNDS):
        for i in range(n):
            rng = random.Random(r * 1000 + i)
            for seq in range(SENDS):
                expected.setdefault(rng.randrange(n), {}).setdefault((i, r), []).append(seq)
    wrong = []   # (target, (sender, round), arrived, sent): lost, doubled or out of order
    for idx, got, later, moves, _ in reports:
        exp = expected.get(idx, {})
        wrong += [(idx, k, got.get(k), exp.get(k)) for k in set(got) | set(exp)
                  if got.get(k) != exp.get(k)]
        assert all(cur >= r for _, r, cur in later), later
    assert not wrong, wrong
    held = collections.Counter((s, r) for rep in reports for s, r, _ in rep[2])
    sent = collections.Counter((i, r + 1) for r in range(ROUNDS) for i in range(n))
    assert held == sent, ("@when calls lost", list((sent - held).items()),
                          "still held", [(r[0], r[4]) for r in reports if r[4]],
                          "doubled", list((held - sent).items()))
    assert sum(r[3] for r in reports) <= n * ROUNDS


def state(P):
    a = Array(Stateful, 3)
    s = Chare(Stateful, onPE=0)
    charm.awaitCreation(a, s)
    path = [(k * 2 + 1) % P for k in range(4)]
    for target in (a[2], s):
        moved = 0
        for pe in path:
            prev = target.where(ret=True).get()[0]
            target.move(pe)
            where = target.where(ret=True).get()
            assert where[0] == pe, (where, pe)
            assert where[2] == [1, 2, 3] and where[5], where
            if pe != prev:
                moved += 1
                assert where[3][-1] == pe and where[4] == "rebuilt", where
            assert len(where[3]) == moved, (where, moved)
    assert a[2].where(ret=True).get()[1] == (2,)
    m = Array(Minimal, 2 * P)
    charm.awaitCreation(m)
    for k in range(3):
        f = Future()
        m.move((k + 1) % P, f)
        assert f.get() == sum(i + 100 for i in range(2 * P))
        g = Future()
        m.where(g)
        assert g.get() == [(i, (k + 1) % P, i + 100) for i in range(2 * P)], g.get()


def refuse(P):
    a = Array(Locked, 2)
    charm.awaitCreation(a)
    msg = a[1].try_move(0, ret=True).get()
    assert msg and "Locked[(1,)]" in msg and "'lock'" in msg, msg
    home = a[1].call(ret=True).get()
    assert home[1] == 1, home
    g = Group(GroupMember)
    charm.awaitCreation(g)
    for m in g.try_move(ret=True).get():
        assert m and "group members do not migrate" in m, m
    if P > 1:
        b = Array(Bag, 2)
        charm.awaitCreation(b)
        assert b[0].move(1, False, ret=True).get() is None
        charm.waitQD()
        assert b[0].call(ret=True).get() == (1, 1, 0)
        for pe in (0, 1, 0):   # one of the same shape (moved before too) leaves PE 1
            b[1].move(pe, False, ret=True).get()
            charm.waitQD()
        # Same shape, but the list holds a lock now: refused at the call or at
        # the departure (which says so on stderr); either way it stays, working.
        msg = b[0].move(0, True, ret=True).get()
        charm.waitQD()
        assert msg is None or "'items'" in msg, msg
        assert b[0].call(ret=True).get() == (1, 2, 1)
        print("BAG", "call" if msg else "departure")


def coroutine(P):
    s = Chare(Sleeper, onPE=0)
    charm.awaitCreation(s)
    s.long_work(P - 1)
    charm.sleep(0.02)
    pe, log = s.where(ret=True).get()
    assert pe == 0 and log == [("start", 0)], (pe, log)   # still suspended: not moved
    charm.sleep(0.3)
    pe, log = s.where(ret=True).get()
    assert pe == P - 1 and log == [("start", 0), ("end", 0)], (pe, log)


def early(P):
    n = 2 * P
    for _ in range(3):
        a = Array(Early, n)
        for i in range(n):
            a[i].go(P - 1 - i % P)
        charm.waitQD()
        got = a.where(ret=True).get()
        assert [g[0] for g in got] == list(range(n)), got
        for i, pe, moved in got:
            assert pe == P - 1 - i % P, (i, pe)
            assert moved == (1 if pe != i * P // n else 0), (i, pe, moved)


def bcast(P, cls=Hopper):
    n = 3 * P + 1
    a = Array(cls, n)
    charm.awaitCreation(a)
    sent = []
    for r in range(30):
        a.hop(r, r)
        sent.append(r)
        if r % 10 == 9:
            got = a.where(ret=True).get()
            assert sorted(g[0] for g in got) == list(range(n)), got
            bad = [g for g in got if g[2] != sent]
            assert not bad, ("lost, doubled or out of order", bad[:3], sent)
    charm.waitQD()
    got = a.where(ret=True).get()
    assert all(g[2] == sent for g in got), got


def sparsebcast(P):
    """Elements of sparse arrays inserted on another PE than their home move
    for the first time while broadcasts come from every PE: each broadcast
    reaches each element once, each PE's in the order sent."""
    n = 4 * P + 1
    g = Group(Bcaster)
    charm.awaitCreation(g)
    for trial in range(6):
        a = Array(Hopper, ndims=1)
        for i in range(n):
            a.ckInsert(i, onPE=(_charmpy_home(a, i) + 1 + trial % max(1, P - 1)) % P)
        a.ckDoneInserting()
        charm.awaitCreation(a)
        # Every PE broadcasts 8 (every element moves at each); the first
        # ones race the first moves, made away from the home.
        g.send_hops(a, trial, 8, ret=True).get()
        charm.waitQD()
        got = a.where(ret=True).get()
        assert sorted(x[0] for x in got) == list(range(n)), got
        for i, pe, seen in got:
            assert sorted(seen) == sorted((p, r) for p in range(P) for r in range(8)), \
                ("lost or doubled", trial, i, seen)
            for p in range(P):
                mine = [r for q, r in seen if q == p]
                assert mine == sorted(mine), ("out of order", trial, i, p, seen)


class Cycler(Chare):
    """A sparse element inserted on x, away from its home h, that moves
    between x, h and a third PE at every broadcast."""
    def __init__(self, x, h):
        self.seen, self.x, self.h = [], x, h

    def hop(self, r, k):
        self.seen.append(r)
        P = charm.numPes()
        to = [self.x, self.h, (self.x + 1 + k) % P][(r[1] + self.thisIndex[0] + k) % 3]
        if to != charm.myPe():
            self.migrate(to)

    def go(self, pe):
        self.migrate(pe)

    def ping(self, v):
        return (self.thisIndex[0], v, charm.myPe())

    def where(self):
        return (self.thisIndex[0], charm.myPe(), self.seen)


class Inserter(Chare):
    def insert(self, a, n, k):
        P = charm.numPes()
        for i in range(charm.myPe(), n, P):
            h = _charmpy_home(a, i)
            x = (h + 1 + k % max(1, P - 1)) % P
            a.ckInsert(i, args=[x, h], onPE=x)

    def send_hops(self, a, k, m):
        for r in range(m):
            a.hop((charm.myPe(), r), k)
            if r % 3 == 2:
                a.ping(r, ret=True)


def sparsecycle(P):
    """Sparse elements inserted from every PE away from their homes, with and
    without ckDoneInserting, move between the PE they were inserted on,
    their home and a third PE while every PE broadcasts: each broadcast
    once, in each PE's order; an element sent home and called at once
    answers (the call that followed it to the PE it left was held there
    forever while insertions could still come)."""
    n = 3 * P + 2
    g = Group(Inserter)
    charm.awaitCreation(g)
    for trial in range(4):
        a = Array(Cycler, ndims=1)
        g.insert(a, n, trial, ret=True).get()
        if trial % 2:
            a.ckDoneInserting()
        charm.waitQD()
        for i in range(n):
            h = _charmpy_home(a, i)
            a[i].go(h)
            assert a[i].ping(trial, ret=True).get() == (i, trial, h)
        g.send_hops(a, trial, 9, ret=True).get()
        charm.waitQD()
        for i, pe, seen in (a[i].where(ret=True).get() for i in range(n)):
            assert sorted(seen) == sorted((p, r) for p in range(P) for r in range(9)), \
                ("lost or doubled", trial, i, sorted(seen))
            for p in range(P):
                mine = [r for q, r in seen if q == p]
                assert mine == sorted(mine), ("out of order", trial, i, p, seen)


def selfcalls(P):
    n = 2 * P + 1
    a = Array(SelfCaller, n)
    charm.awaitCreation(a)
    # Moves with no calls queued: each PE then sends its elements' calls to
    # themselves straight (it never sent any elsewhere)...
    for i in range(n):
        a[i].move((i * P // n + 1) % P)
    charm.waitQD()
    assert a.where(ret=True).get() == [(i * P // n + 1) % P for i in range(n)]
    for r in range(3):
        a.burst(r, 30, False)
    charm.waitQD()
    # ... then calls queued when they move follow them through the home.
    for r in range(4):
        a.burst(r, 20, True)
        charm.waitQD()
    got = a.report(ret=True).get()
    for i, g, sent in got:
        assert g == list(range(sent)), (i, sent, [x for x in g[:40]])


class Target(Chare):
    def __init__(self):
        self.got = collections.defaultdict(list)   # sender PE -> seqs

    def move(self, pe):
        self.migrate(pe)

    def take(self, src, seq):
        self.got[src].append(seq)

    def report(self):
        return self.thisIndex[0], charm.myPe(), dict(self.got)


class ChareTarget(Target):
    def report(self):
        return 0, charm.myPe(), dict(self.got)


class Caller(Chare):
    def __init__(self):
        self.seq = collections.Counter()

    def burst(self, a, n, k, c=None):
        me = charm.myPe()
        for _ in range(k):
            for i in range(n):
                a[i].take(me, self.seq[i])
                self.seq[i] += 1
            if c is not None:
                c.take(me, self.seq["chare"])
                self.seq["chare"] += 1

    def dump(self, a, c=None):
        import charmpy._charmpy as C
        d = C.loc_dump(a.coll)
        entries = {k[0]: (e[0], e[2]) for k, e in (d["entries"] or {}).items()}
        cache = {k[0]: e[0] for k, e in (d["cache"] or {}).items()}
        if c is not None:   # the single chare: key 0 of its own collection
            d = C.loc_dump(c.coll) or {}
            cache["chare"] = (d.get("cache") or {}).get(0, [None])[0]
        return charm.myPe(), entries, cache


def direct(P, sparse=False):
    n, k = 2 * P + 1, 20
    g = Group(Caller)
    if sparse:
        a = Array(Target, ndims=1)
        for i in range(n):
            a.ckInsert(i, onPE=(i + 1) % P)
        a.ckDoneInserting()
    else:
        a = Array(Target, n)
    c = None if sparse else Chare(ChareTarget, onPE=0)
    charm.awaitCreation(a, g)
    homes = [_charmpy_home(a, i) for i in range(n)]
    sent = 0
    if sparse:   # calls before any move, numbered by the home
        g.burst(a, n, k)
        sent += k
        charm.waitQD()
    for step in range(2):
        dest = [(h + 1 + step) % P for h in homes]
        for i in range(n):
            a[i].move(dest[i])
        cdest = (1 + step) % P
        if c is not None:
            c.move(cdest)
        charm.waitQD()
        for b in range(3):
            g.burst(a, n, k, c)
            sent += k
            charm.waitQD()
            if b == 0:
                numbered = {i: e[1] for pe, es, _ in g.dump(a, ret=True).get()
                            for i, e in es.items()}
        got = a.report(ret=True).get()
        assert [r[1] for r in got] == dest, (dest, got)
        if c is not None:
            got.append(c.report(ret=True).get())
            assert got[-1][1] == cdest, got[-1]
        for i, pe, calls in got:
            assert calls == {s: list(range(sent)) for s in range(P)}, (i, pe, calls)
        for pe, entries, cache in g.dump(a, c, ret=True).get():
            if P == 1:
                break
            for i in range(n):
                if homes[i] == pe:
                    # The home numbered the others' first burst (and their
                    # switches), then only its own calls and the broadcast
                    # (report) it copied to the element.
                    assert entries[i][0] == dest[i], (pe, i, entries[i])
                    if step == 0 and not sparse:
                        assert numbered[i] - 1 <= k + (P - 1) * (k + 1), numbered[i]
                        assert entries[i][1] == numbered[i] + 2 * k + 1, (
                            pe, i, entries[i], numbered[i])
                else:
                    assert cache.get(i) == dest[i], (pe, i, cache, dest)
            if c is not None and pe != 0:   # the chare's home: PE 0
                assert cache["chare"] == cdest, (pe, cache["chare"], cdest)


class Busy(Chare):
    def __init__(self):
        self.got = []

    def work(self, to, secs):
        time.sleep(secs)
        self.migrate(to)

    def move(self, pe):
        self.migrate(pe)

    def take(self, src, seq):
        self.got.append((src, seq))

    def report(self):
        return charm.myPe(), self.got


class Prober(Chare):
    def noop(self):
        pass

    def busy(self, secs):
        time.sleep(secs)

    @coro
    def a_then_b(self, c, g, ndummy):
        import charmpy._charmpy as C
        me = charm.myPe()
        for _ in range(ndummy):
            g[0].noop()                  # ahead of A in the home's queue
        c.take(me, 0)                    # A: through the home
        while 0 not in (C.members(c.coll) or {}):
            charm.sleep(0.0005)
        c.take(me, 1)                    # B: after the chare arrived here

    def send(self, a, i, seq):
        a[i].take(charm.myPe(), seq)

    def sneaky(self, a, i):
        a[i].take(charm.myPe(), Sneaky(a, i))   # made here: pickled by this call

    def bad(self, a, i):
        try:
            a[i].take(charm.myPe(), threading.Lock())
        except TypeError:
            return "TypeError"
        return "sent"

    @coro
    def early_direct(self, a, i):
        import charmpy._charmpy as C
        me = charm.myPe()
        a[i].take(me, 0)                 # through the home
        for _ in range(500):             # until the home's LOC_CACHE came
            d = C.loc_dump(a.coll)
            if d and d["cache"]:
                break
            charm.sleep(0.002)
        placed = C.members(a.coll) is not None
        a[i].take(me, 1)                 # direct
        return placed


class Sneaky:
    """An argument whose pickling calls the element (user code run while
    the outer call is encoded)."""
    def __init__(self, a, i):
        self.a, self.i = a, i

    def __reduce__(self):
        self.a[self.i].take(charm.myPe(), "inner")
        return (str, ("outer",))


def _direct_from_third_pe(P):
    """a[1] moved off its home to PE 2 % P; PE s (neither) called it twice,
    through the home, then directly."""
    a = Array(Busy, P)
    g = Group(Prober)
    charm.awaitCreation(a, g)
    home = _charmpy_home(a, 1)
    s = max(pe for pe in range(P) if pe not in (home, 2 % P))   # not main's PE at 4+
    a[1].move(2 % P)
    charm.waitQD()
    for seq in range(2):                 # the first through the home, then direct
        g[s].send(a, 1, seq)
        charm.waitQD()
    return a, g, s


def nested(P):
    if P < 3:
        return
    a, g, s = _direct_from_third_pe(P)
    g[s].sneaky(a, 1)
    charm.waitQD()
    g[s].send(a, 1, 3)
    charm.waitQD()
    got = a[1].report(ret=True).get()
    assert got == (2 % P, [(s, 0), (s, 1), (s, "inner"), (s, "outer"), (s, 3)]), got


def chareorder(P):
    if P < 2:
        return
    to = P - 1
    for trial in range(4):
        c = Chare(Busy, onPE=0)
        g = Group(Prober)
        charm.awaitCreation(c, g)
        c.work(to, 0.15)
        time.sleep(0.03)
        g[to].a_then_b(c, g, 2000, ret=True).get()
        charm.waitQD()
        pe, got = c.report(ret=True).get()
        assert pe == to and got == [(to, 0), (to, 1)], (trial, pe, got)


def badarg(P):
    if P < 3:
        return
    a, g, s = _direct_from_third_pe(P)
    assert g[s].bad(a, 1, ret=True).get() == "TypeError"
    g[s].send(a, 1, 2)
    charm.waitQD()
    assert a[1].report(ret=True).get() == (2 % P, [(s, 0), (s, 1), (s, 2)])


def unplaced(P):
    if P < 6:
        return
    g = Group(Prober)
    charm.awaitCreation(g)
    g[1].busy(1.0)                       # PE 5's parent in the broadcast tree
    a = Array(Busy, P)
    a[2].move(3)
    charm.sleep(0.2)
    placed = g[5].early_direct(a, 2, ret=True).get()
    charm.waitQD()
    got = a[2].report(ret=True).get()
    print("array placed on PE 5 when its cache filled:", placed)
    assert got == (3, [(5, 0), (5, 1)]), got


def _charmpy_home(a, i):
    import charmpy._charmpy as C
    return C.loc_home(a, (i,))


def chain(P):
    a = Array(Chain, 1)
    charm.awaitCreation(a)
    if P == 1:
        return
    done = Future()
    a[0].start(3 * P, done)
    path, total = done.get()
    assert path == [(k + 1) % P for k in range(3 * P)], path
    assert total == sum(range(1000)) + 3 * P, total


def main(args):
    P = charm.numPes()
    {"storm": storm, "state": state, "refuse": refuse, "coroutine": coroutine,
     "bcast": bcast, "chain": chain, "direct": direct, "nested": nested, "chareorder": chareorder, "badarg": badarg,
     "unplaced": unplaced, "sparsebcast": sparsebcast, "sparsecycle": sparsecycle,
     "sparse": lambda P: direct(P, sparse=True), "early": early, "selfcalls": selfcalls,
     "bcastcoro": lambda P: bcast(P, HopperCoro)}[MODE](P)
    print("OK migrate")
    charm.exit()


charm.start(main)
