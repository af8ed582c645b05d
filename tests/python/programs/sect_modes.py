"""Sections: proxy slices, charm.split, charm.combine, broadcasts and
reductions over them. Usage: sect_modes.py MODE. Every expected value is
computed here from the indices; every mode prints `OK sect_modes` last.

  slices   1-D a[2:9], a[::3], a[-3:], a[5:5] (empty: ValueError), 2-D
           b[1:3, ::2], b[2, :], 3-D c[:, 1, ::2]; each broadcast (awaitable)
           reaches its members exactly once (hit counts over the whole
           array), ret=True gives the members' values in index order
  groups   g[1:], g[::2], g[0:1]; a constrained group's section (only its
           PEs); broadcast reaches exactly the members
  split    charm.split with elems (two sections, members on every PE), with
           section_func (index % 3, a list for two sections, -1 for none),
           of a section (within it); charm.combine of two sections (their
           union, once each) and of the array proxy with a section
  values   section proxies compare equal and hash by members (two slices
           naming the same members), work as dict keys, travel as
           arguments: a chare on the last PE broadcasts and reduces through
           one it was sent
  reduce   over sections: sum of ints, max, product of floats, gather (a
           list in index order), a custom reducer, lists and numpy arrays
           (element-wise), nop (an empty reduction to a future and to an
           entry method), allreduce on a section; 5 rounds of concurrent
           reductions over overlapping sections a[0:6] and a[3:9] and the
           whole array
  spread   a section whose members all live on one PE (the last), and one
           on every PE: broadcast and reduce
  migrate  members of a section migrate (each to another PE, 3 times);
           after each move a broadcast reaches each member exactly once and
           a reduction over the section is right
  errors   a contribution by a non-member (ValueError), section= that is
           not a section (TypeError), slicing an element proxy and a sparse
           array (TypeError), a name that is not an entry method
           (AttributeError at the call), split with both or neither of
           section_func and elems, combine of two collections
           (NotImplementedError)
"""
import sys

import numpy as np

from charmpy import Array, Chare, Future, Group, Reducer, charm, coro


def concat(vals):
    out = []
    for v in vals:
        out.extend(v)
    return sorted(out)


Reducer.addReducer(concat)


class M(Chare):
    def __init__(self):
        self.hits = 0

    def hit(self):
        self.hits += 1

    def count(self):
        return self.hits

    def ident(self):
        return self.thisIndex

    def where(self):
        return charm.myPe()

    def move(self, pe):
        self.migrate(pe)

    def red(self, sec, kind, fut, tag=None):
        i = self.thisIndex
        flat = i if isinstance(i, int) else i[0]
        if kind == "sum":
            self.contribute(flat, Reducer.sum, fut, section=sec)
        elif kind == "max":
            self.contribute(flat * 7 % 11, Reducer.max, fut, section=sec)
        elif kind == "product":
            self.contribute(1.0 + flat / 10, Reducer.product, fut, section=sec)
        elif kind == "gather":
            self.contribute((flat, tag), Reducer.gather, fut, section=sec)
        elif kind == "custom":
            self.contribute([flat], Reducer.concat, fut, section=sec)
        elif kind == "list":
            self.contribute([flat, 1, 2 * flat], Reducer.sum, fut, section=sec)
        elif kind == "numpy":
            self.contribute(np.arange(4, dtype=np.float64) * flat, Reducer.sum, fut, section=sec)
        elif kind == "nop":
            self.contribute(None, None, fut, section=sec)

    @coro
    def allred(self, sec):
        return self.allreduce(self.thisIndex[0], Reducer.sum, section=sec).get()

    def not_member(self, sec, fut):
        try:
            self.contribute(1, Reducer.sum, fut, section=sec)
        except ValueError as e:
            assert "not a member" in str(e), str(e)
            return "raised"
        return "no error"

    def bad_section(self, fut):
        try:
            self.contribute(1, Reducer.sum, fut, section=5)
        except TypeError as e:
            assert "not a section proxy" in str(e), str(e)
            return "raised"
        return "no error"


class Driver(Chare):
    """values: a chare on the last PE uses a section it was sent."""

    @coro
    def use(self, sec, expect_sum):
        sec.hit(awaitable=True).get()
        f = Future()
        sec.red(sec, "sum", f)
        assert f.get() == expect_sum
        return {sec: "ok"}[sec]


class Target(Chare):
    def __init__(self, f):
        self.f = f

    def done(self, *args):
        self.f.send(args)


def flat_counts(arr, n):
    return arr.count(ret=True).get()


def expect_hits(arr, shape, members, before):
    """The hit counts of the whole array: members have one more."""
    got = arr.count(ret=True).get()
    idx = list(np.ndindex(*shape))
    want = [before[k] + (1 if idx[k] in members else 0) for k in range(len(idx))]
    assert got == want, (got, want)
    return got


class Main(Chare):
    def __init__(self, args):
        self.run(args)

    @coro
    def run(self, args):
        mode = args[1]
        P = charm.numPes()
        getattr(self, "mode_" + mode)(P)
        print("OK sect_modes")
        charm.exit()

    def mode_slices(self, P):
        n = 4 * P + 3
        a = Array(M, n)
        charm.awaitCreation(a)
        hits = [0] * n
        for sl in (slice(2, 9), slice(None, None, 3), slice(-3, None)):
            sec = a[sl]
            members = {(i,) for i in range(n)[sl]}
            assert len(sec) == len(members)
            sec.hit(awaitable=True).get()
            hits = expect_hits(a, (n,), members, hits)
            assert sec.ident(ret=True).get() == sorted(members)
        try:
            a[5:5]
        except ValueError as e:
            assert "no members" in str(e), str(e)
        else:
            raise AssertionError("an empty section did not raise")
        b = Array(M, (4, 5))
        charm.awaitCreation(b)
        hits = [0] * 20
        for key, members in (((slice(1, 3), slice(None, None, 2)),
                              {(i, j) for i in (1, 2) for j in (0, 2, 4)}),
                             ((2, slice(None)), {(2, j) for j in range(5)})):
            sec = b[key]
            sec.hit(awaitable=True).get()
            hits = expect_hits(b, (4, 5), members, hits)
            assert sec.ident(ret=True).get() == sorted(members)
        c = Array(M, (3, 3, 4))
        charm.awaitCreation(c)
        sec = c[:, 1, ::2]
        sec.hit(awaitable=True).get()
        expect_hits(c, (3, 3, 4), {(i, 1, k) for i in range(3) for k in (0, 2)}, [0] * 36)

    def mode_groups(self, P):
        g = Group(M)
        charm.awaitCreation(g)
        hits = [0] * P
        for sl in (slice(1, None), slice(None, None, 2), slice(0, 1)):
            members = set(range(P)[sl])
            if not members:
                continue
            sec = g[sl]
            sec.hit(awaitable=True).get()
            got = g.count(ret=True).get()
            hits = [hits[p] + (p in members) for p in range(P)]
            assert got == hits, (got, hits)
            assert sec.where(ret=True).get() == sorted(members)
        if P >= 3:
            cg = Group(M, onPEs=[0, P - 1])
            charm.awaitCreation(cg)
            sec = cg[1:]
            sec.hit(awaitable=True).get()
            assert sec.where(ret=True).get() == [P - 1]
            assert cg.count(ret=True).get() == [0, 1]

    def mode_split(self, P):
        n = 3 * P + 2
        a = Array(M, n)
        charm.awaitCreation(a)
        s0, s1 = charm.split(a, 2, elems=[[0, 1, n - 1], [(2,), [3]]])
        assert len(s0) == 3 and len(s1) == 2
        s0.hit(awaitable=True).get()
        s1.hit(awaitable=True).get()
        hits = [1 if i in (0, 1, n - 1, 2, 3) else 0 for i in range(n)]
        assert a.count(ret=True).get() == hits
        t0, t1, t2 = charm.split(a, 3, section_func=lambda obj: obj.thisIndex[0] % 3)
        for k, t in enumerate((t0, t1, t2)):
            assert t.ident(ret=True).get() == [(i,) for i in range(n) if i % 3 == k]

        def two(obj):
            i = obj.thisIndex[0]
            return [0, 1] if i < 2 else (-1 if i == 2 else 1)
        u0, u1 = charm.split(a, 2, section_func=two)
        assert u0.ident(ret=True).get() == [(0,), (1,)]
        assert u1.ident(ret=True).get() == [(i,) for i in range(n) if i != 2]
        inner = charm.split(u1, 1, section_func=lambda obj: 0 if obj.thisIndex[0] < 4 else -1)[0]
        assert inner.ident(ret=True).get() == [(0,), (1,), (3,)]
        both = charm.combine(s0, s1, s0)
        assert both.ident(ret=True).get() == [(0,), (1,), (2,), (3,), (n - 1,)]
        whole = charm.combine(a, s0)
        assert len(whole) == n

    def mode_values(self, P):
        n = 2 * P + 1
        a = Array(M, n)
        charm.awaitCreation(a)
        x, y = a[0:n:2], charm.split(a, 1, elems=[list(range(0, n, 2))])[0]
        assert x == y and hash(x) == hash(y) and x != a[1:n:2]
        assert len({x: 1, y: 2}) == 1
        d = Chare(Driver, onPE=P - 1)
        assert d.use(x, sum(range(0, n, 2)), ret=True).get() == "ok"
        assert a.count(ret=True).get() == [1 if i % 2 == 0 else 0 for i in range(n)]

    def mode_reduce(self, P):
        n = 3 * P + 3
        a = Array(M, n)
        charm.awaitCreation(a)
        sec = a[1:n:2]
        idx = list(range(1, n, 2))

        def one(kind, tag=None):
            f = Future()
            sec.red(sec, kind, f, tag)
            return f.get()
        assert one("sum") == sum(idx)
        assert one("max") == max(i * 7 % 11 for i in idx)
        prod = 1.0
        for i in idx:
            prod *= 1.0 + i / 10
        assert abs(one("product") - prod) < 1e-9 * prod
        assert one("gather", "t") == [(i, "t") for i in idx]
        assert one("custom") == idx
        assert one("list") == [sum(idx), len(idx), 2 * sum(idx)]
        assert np.array_equal(one("numpy"), np.arange(4, dtype=np.float64) * sum(idx))
        assert one("nop") is None
        tf = Future()
        t = Chare(Target, args=[tf], onPE=P - 1)
        charm.awaitCreation(t)
        sec.red(sec, "nop", t.done)
        assert tf.get() == ()
        assert sec.allred(sec, ret=True).get() == [sum(idx)] * len(idx)
        # Concurrent reductions over overlapping sections and the array.
        s1, s2 = a[0:6], a[3:9]
        for r in range(5):
            fs = []
            for s, members in ((s1, range(n)[0:6]), (s2, range(n)[3:9]), (a[:], range(n))):
                f = Future()
                s.red(s, "gather", f, r)
                fs.append((f, members))
            for f, members in fs:
                assert f.get() == [(i, r) for i in members], (r, f.get())

    def mode_spread(self, P):
        n = 4 * P
        a = Array(M, n)
        charm.awaitCreation(a)
        homes = a.where(ret=True).get()
        last = [i for i in range(n) if homes[i] == P - 1]
        one_pe = charm.split(a, 1, elems=[last])[0]
        assert one_pe.pes == (P - 1,), one_pe.pes
        one_pe.hit(awaitable=True).get()
        every = charm.split(a, 1, elems=[[i for i in range(n) if i % 4 == 1]])[0]
        assert len(every.pes) == P
        every.hit(awaitable=True).get()
        assert a.count(ret=True).get() == [(i in last) + (i % 4 == 1) for i in range(n)]
        for s, members in ((one_pe, last), (every, [i for i in range(n) if i % 4 == 1])):
            f = Future()
            s.red(s, "sum", f)
            assert f.get() == sum(members)

    def mode_migrate(self, P):
        n = 3 * P + 1
        a = Array(M, n)
        charm.awaitCreation(a)
        sec = a[1::2]
        members = list(range(1, n, 2))
        hits = [0] * n
        for r in range(3):
            for i in members:
                a[i].move((i + r + 1) % P)
            charm.sleep(0.05)
            sec.hit(awaitable=True).get()
            hits = [h + (i in members) for i, h in enumerate(hits)]
            assert a.count(ret=True).get() == hits, (r, a.count(ret=True).get(), hits)
            f = Future()
            sec.red(sec, "gather", f, r)
            assert f.get() == [(i, r) for i in members]
            assert sec.ident(ret=True).get() == [(i,) for i in members]

    def mode_errors(self, P):
        a = Array(M, 2 * P + 2)
        charm.awaitCreation(a)
        sec = a[0:2]
        assert a[3].not_member(sec, Future(), ret=True).get() == "raised"
        assert a[0].bad_section(Future(), ret=True).get() == "raised"
        for what, call in (("element", lambda: a[0][0:1]),):
            try:
                call()
            except TypeError as e:
                assert "cannot be indexed" in str(e), str(e)
            else:
                raise AssertionError(f"slicing an {what} proxy did not raise")
        sp = Array(M, ndims=1)
        sp.ckInsert(0)
        sp.ckDoneInserting()
        try:
            sp[0:1]
        except TypeError as e:
            assert "sparse" in str(e), str(e)
        else:
            raise AssertionError("slicing a sparse array did not raise")
        try:
            sec.nosuch()
        except AttributeError as e:
            assert "nosuch" in str(e), str(e)
        else:
            raise AssertionError("a section call to a missing method did not raise")
        for kw in ({}, {"elems": [[0]], "section_func": lambda o: 0}):
            try:
                charm.split(a, 1, **kw)
            except TypeError as e:
                assert "either section_func or elems" in str(e), str(e)
            else:
                raise AssertionError(f"split with {kw} did not raise")
        b = Array(M, 3)
        try:
            charm.combine(sec, b[0:1])
        except NotImplementedError as e:
            assert "different collections" in str(e), str(e)
        else:
            raise AssertionError("combine of two collections did not raise")


if len(sys.argv) < 2:
    sys.exit(__doc__)
charm.start(Main)
