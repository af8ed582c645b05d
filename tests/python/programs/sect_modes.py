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
           section_func and elems; slicing a sparse array before
           ckDoneInserting, from its end, with a negative step, with too
           many parts, or selecting no member
  sparse   slices of 1-D and 2-D sparse arrays (the members inserted that
           fall in them): broadcast, ret=True, gather; the whole sparse
           array in a combine beside a dense one
  combined charm.combine over two arrays and a group of another class
           (with repeats): broadcasts reach each member once, ret=True part
           by part in index order, every reducer and gather (part by part),
           allreduce, concurrent with reductions over the array, members
           moving between rounds; equal whatever the order, an argument;
           errors (a method one class lacks: nothing sent; not a member;
           split of it; an int or an element proxy given)
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

    @coro
    def allred_flat(self, sec):
        i = self.thisIndex
        return self.allreduce(i if isinstance(i, int) else i[0], Reducer.sum, section=sec).get()

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


class N(M):
    """combined: a second class among a Combined's members."""

    def ident(self):
        return ("N", self.thisIndex)


class U(Chare):
    """combined: a class without the method called."""

    def other(self):
        pass


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
        for key, exc, text in ((slice(0, 1), ValueError, "ckDoneInserting"),):
            try:
                sp[key]
            except exc as e:
                assert text in str(e), str(e)
            else:
                raise AssertionError(f"slicing a sparse array before its insertions were done "
                                     "did not raise")
        sp.ckDoneInserting()
        for key, exc, text in ((slice(-2, None), IndexError, "from its end"),
                               (slice(0, 5, -1), IndexError, "positive steps"),
                               ((slice(0, 2), 1), IndexError, "1 dimensions"),
                               (slice(1, 5), ValueError, "no inserted member")):
            try:
                sp[key]
            except exc as e:
                assert text in str(e), (key, str(e))
            else:
                raise AssertionError(f"sp[{key!r}] did not raise")
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

    def mode_sparse(self, P):
        # Slices of sparse arrays: the members inserted whose indices fall in
        # them, known once ckDoneInserting is done (the slice waits for it).
        ids = sorted({0, 3, 5, 7, 10, 11, 15, 2 * P + 20})
        sp = Array(M, ndims=1)
        for k, i in enumerate(ids):
            sp.ckInsert(i, onPE=k % P)
        sp.ckDoneInserting()
        hits = {i: 0 for i in ids}
        for key, want in ((slice(0, 10), [i for i in ids if i < 10]),
                          (slice(None, None, 5), [i for i in ids if i % 5 == 0]),
                          (slice(4, None, 3), [i for i in ids if i >= 4 and (i - 4) % 3 == 0])):
            sec = sp[key]
            assert len(sec) == len(want), (key, len(sec), want)
            sec.hit(awaitable=True).get()
            for i in want:
                hits[i] += 1
            assert sec.ident(ret=True).get() == [(i,) for i in want]
            f = Future()
            sec.red(sec, "gather", f, "s")
            assert f.get() == [(i, "s") for i in want]
            assert sp.count(ret=True).get() == [hits[i] for i in ids], (key, hits)
        sp2 = Array(M, ndims=2)
        cells = [(i, j) for i in range(3) for j in range(0, 2 * P + 2, 2)]
        for k, c in enumerate(cells):
            sp2.ckInsert(c, onPE=(k * 7) % P)
        sp2.ckDoneInserting()
        row = sp2[1, :]
        assert row.ident(ret=True).get() == [c for c in cells if c[0] == 1]
        block = sp2[0:2, 2:]
        assert block.ident(ret=True).get() == [c for c in cells if c[0] < 2 and c[1] >= 2]
        # The whole sparse array in a Combined, beside a dense one.
        a = Array(M, 3)
        charm.awaitCreation(a)
        comb = charm.combine(sp, a)
        assert comb.ident(ret=True).get() == [(i,) for i in ids] + [(0,), (1,), (2,)]
        f = Future()
        comb.red(comb, "sum", f)
        assert f.get() == sum(ids) + 3

    def mode_combined(self, P):
        n = 2 * P + 3
        a = Array(M, n)
        g = Group(N)
        b = Array(M, (2, 3))
        other = Group(M)
        for c in (a, g, b, other):
            charm.awaitCreation(c)
        comb = charm.combine(a[0:3], g, b[1, :], a[n - 1:n], a[1:2])
        want_ids = ([(0,), (1,), (2,), (n - 1,)] + [("N", p) for p in range(P)]
                    + [(1, j) for j in range(3)])
        flats = [0, 1, 2, n - 1] + list(range(P)) + [1, 1, 1]
        assert len(comb) == len(want_ids) and len(comb.parts) == 3, (len(comb), comb)
        assert comb.pes == tuple(sorted(set().union(*(q.pes for q in comb.parts))))
        hits_a, hits_b = [0] * n, [0] * 6
        for r in range(3):
            if r:   # members move between rounds: calls and reductions follow them
                for i in (0, 2, n - 1):
                    a[i].move((i + r) % P)
                b[1, 1].move(r % P)
                charm.sleep(0.05)
            comb.hit(awaitable=True).get()
            hits_a = [h + (i in (0, 1, 2, n - 1)) for i, h in enumerate(hits_a)]
            hits_b = [h + (k >= 3) for k, h in enumerate(hits_b)]
            assert a.count(ret=True).get() == hits_a, (r, a.count(ret=True).get(), hits_a)
            assert g.count(ret=True).get() == [r + 1] * P
            assert b.count(ret=True).get() == hits_b
            assert other.count(ret=True).get() == [0] * P
            assert comb.ident(ret=True).get() == want_ids
            f = Future()
            comb.red(comb, "gather", f, r)
            assert f.get() == [(x, r) for x in flats], (r, f.get())
        # Every reducer over members of three collections of two classes.

        def one(kind):
            f = Future()
            comb.red(comb, kind, f)
            return f.get()
        assert one("sum") == sum(flats)
        assert one("max") == max(x * 7 % 11 for x in flats)
        assert one("custom") == sorted(flats)
        assert one("list") == [sum(flats), len(flats), 2 * sum(flats)]
        assert np.array_equal(one("numpy"), np.arange(4, dtype=np.float64) * sum(flats))
        assert one("nop") is None
        tf = Future()
        t = Chare(Target, args=[tf], onPE=P - 1)
        charm.awaitCreation(t)
        comb.red(comb, "sum", t.done)
        assert tf.get() == (sum(flats),)
        assert comb.allred_flat(comb, ret=True).get() == [sum(flats)] * len(flats)
        # Concurrent reductions over it, the array and a section of the array.
        for r in range(3):
            fs = []
            for s, want in ((comb, [(x, r) for x in flats]), (a[:], [(i, r) for i in range(n)]),
                            (a[0:3], [(i, r) for i in range(3)])):
                f = Future()
                s.red(s, "gather", f, r)
                fs.append((f, want))
            for f, want in fs:
                assert f.get() == want, (r, f.get(), want)
        # A value: equal by members whatever the order, a dict key, an argument.
        again = charm.combine(b[1, :], a[0:3], a[n - 1:n], g)
        assert again == comb and hash(again) == hash(comb) and comb != charm.combine(a[0:3], g)
        assert len({comb: 1, again: 2}) == 1
        d = Chare(Driver, onPE=P - 1)
        assert d.use(comb, sum(flats), ret=True).get() == "ok"
        hits_a = [h + (i in (0, 1, 2, n - 1)) for i, h in enumerate(hits_a)]   # use() hit
        assert a.count(ret=True).get() == hits_a
        # Of one collection, combine is a plain section; a Combined flattens.
        assert charm.combine(a[0:2], a[1:3]) == a[0:3]
        assert len(charm.combine(comb, other)) == len(flats) + P
        # Errors: all or nothing, members only, no split of it, no sparse proxy.
        u = Group(U)
        charm.awaitCreation(u)
        try:
            charm.combine(a[0:1], u).hit()
        except AttributeError as e:
            assert "'hit'" in str(e) and "U" in str(e), str(e)
        else:
            raise AssertionError("a call that one collection lacks did not raise")
        assert a.count(ret=True).get() == hits_a   # nothing was sent
        assert a[3].not_member(comb, Future(), ret=True).get() == "raised"
        assert other[0].not_member(comb, Future(), ret=True).get() == "raised"
        try:
            charm.split(comb, 2, elems=[[0], [1]])
        except TypeError as e:
            assert "several collections" in str(e), str(e)
        else:
            raise AssertionError("split of a Combined did not raise")
        for bad in (5, a[0]):
            try:
                charm.combine(a, bad)
            except TypeError as e:
                assert "sections are of groups and arrays" in str(e), str(e)
            else:
                raise AssertionError(f"combine with {bad!r} did not raise")


if len(sys.argv) < 2:
    sys.exit(__doc__)
charm.start(Main)
