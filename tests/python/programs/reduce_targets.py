"""Reduction targets and the other reducers: results delivered to an element
method, a single chare's method, a broadcast method and a Future;
self.reduce; allreduce; empty reductions (data=None, reducer=None: the
target is called with no arguments, a future gets None); Reducer.nop;
gather (a list in index order, for 1-D and 2-D arrays and groups); custom
reducers (Reducer.addReducer with pre and post, then Reducer.<name>);
successive reductions; several collections reducing at the same time."""
from charmpy import *


def merge_dicts(contribs):
    out = {}
    for d in contribs:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def longest(contribs):
    return max(contribs, key=lambda s: (len(s), s))


Reducer.addReducer(merge_dicts)
# pre: applied to each contribution; post: to the final result.
Reducer.addReducer(longest, pre=lambda s: s.upper(), post=lambda s: f"<{s}>")


class Sink(Chare):
    """A single chare receiving results."""

    def __init__(self):
        self.results = {}

    def result(self, key, value):
        self.results.setdefault(key, []).append(value)

    def result_max(self, value):
        self.result("max", value)

    def empty(self):
        self.results.setdefault("empty", []).append("called")

    @when("len(self.results.get(key, ())) >= n")
    def get(self, key, n):
        return self.results[key]


class Member(Chare):
    def __init__(self, sink):
        self.sink = sink
        self.got = {}

    def lin(self):
        i = self.thisIndex
        return i if isinstance(i, int) else i[0] * 10 + (i[1] if len(i) > 1 else 0)

    # -- targets -------------------------------------------------------
    def to_element(self):
        self.contribute(self.lin(), Reducer.sum, self.elem0().got_elem)

    def to_single(self):
        self.contribute(self.lin(), Reducer.max, self.sink.result_max)

    def to_broadcast(self):
        self.contribute([1, self.lin()], Reducer.sum, self.thisProxy.got_bcast)

    def to_future(self, fut):
        self.contribute(self.lin(), Reducer.min, fut)

    def with_reduce(self, fut):
        self.reduce(fut, self.lin(), Reducer.sum)

    def with_reduce_kw(self, fut):
        self.reduce(fut, data=self.lin() + 1, reducer=Reducer.product)

    def elem0(self):
        i = self.thisIndex
        if isinstance(i, int):
            return self.thisProxy[0]
        return self.thisProxy[(0,) * len(i)]

    def got_elem(self, value):
        self.got.setdefault("elem", []).append(value)

    def got_bcast(self, value):
        self.got.setdefault("bcast", []).append(value)

    def got_nothing_elem(self, *args):
        self.got.setdefault("empty_elem", []).append(args)

    def got_nothing_bcast(self, *args):
        self.got.setdefault("empty_bcast", []).append(args)

    @when("len(self.got.get(key, ())) >= n")
    def got_list(self, key, n):
        return self.got[key]

    # -- empty reductions and nop ----------------------------------------
    def empty_to_element(self):
        self.contribute(None, None, self.elem0().got_nothing_elem)

    def empty_to_broadcast(self):
        self.contribute(None, None, self.thisProxy.got_nothing_bcast)

    def empty_to_single(self):
        self.contribute(None, None, self.sink.empty)

    def empty_to_future(self, fut):
        self.contribute(None, None, fut)

    def nop_to_future(self, fut):
        self.contribute(None, Reducer.nop, fut)

    # -- gather and custom ----------------------------------------------
    def gather(self, fut):
        i = self.thisIndex
        value = {"idx": i, "pe": charm.myPe()} if self.lin() % 2 else str(i)
        self.contribute(value, Reducer.gather, fut)

    def custom(self, fut1, fut2, fut3):
        self.contribute({"n": 1, f"k{self.lin() % 3}": self.lin()}, Reducer.merge_dicts, fut1)
        self.contribute("x" * (self.lin() % 5) + "a", Reducer.longest, fut2)
        self.contribute([self.lin()], Reducer.merge_lists, fut3)

    # -- allreduce and successive reductions -----------------------------
    @coro
    def all_reduce(self, rounds):
        out = []
        for r in range(rounds):
            f = self.allreduce(self.lin() + r, Reducer.sum)
            out.append(f.get())
        g = self.allreduce()       # empty allreduce: a barrier
        assert g.get() is None
        return out

    def successive(self, futs):
        for r, fut in enumerate(futs):
            self.contribute(self.lin() * r, Reducer.sum, fut)


def merge_lists(contribs):
    return sorted(x for c in contribs for x in c)


Reducer.addReducer(merge_lists)


def main(args):
    P = charm.numPes()
    sink = Chare(Sink, onPE=P - 1)
    colls = {
        "1-D": (Array(Member, 9, args=[sink]), [(i,) for i in range(9)]),
        "2-D": (Array(Member, (3, 4), args=[sink]), [(i, j) for i in range(3) for j in range(4)]),
        "group": (Group(Member, args=[sink]), list(range(P))),
    }
    for name, (proxy, indices) in colls.items():
        n = len(indices)
        lins = [i if isinstance(i, int) else i[0] * 10 + (i[1] if len(i) > 1 else 0)
                for i in indices]
        first = proxy[indices[0]]

        # Element target.
        proxy.to_element()
        assert first.got_list("elem", 1, ret=True).get() == [sum(lins)], name
        # Broadcast target: every member gets [n, sum].
        proxy.to_broadcast()
        got = proxy.got_list("bcast", 1, ret=True).get()
        assert got == [[[n, sum(lins)]]] * n, (name, got)
        # Single-chare targets (checked at the end).
        proxy.to_single()
        proxy.empty_to_single()
        # Future target, self.reduce.
        f = Future()
        proxy.to_future(f)
        assert f.get() == min(lins), name
        f = Future()
        proxy.with_reduce(f)
        assert f.get() == sum(lins), name
        f = Future()
        proxy.with_reduce_kw(f)
        prod = 1
        for v in lins:
            prod *= v + 1
        assert f.get() == prod, name

        # Empty reductions: targets called with no arguments, a future gets None.
        proxy.empty_to_element()
        got = first.got_list("empty_elem", 1, ret=True).get()
        assert got == [()], (name, got)
        proxy.empty_to_broadcast()
        got = proxy.got_list("empty_bcast", 1, ret=True).get()
        assert got == [[()]] * n, (name, got)
        f = Future()
        proxy.empty_to_future(f)
        assert f.get() is None
        f = Future()
        proxy.nop_to_future(f)
        assert f.get() is None

        # Gather: a list in index order, any Python values.
        f = Future()
        proxy.gather(f)
        got = f.get()
        assert isinstance(got, list) and len(got) == n, (name, got)
        for i, lin, value in zip(indices, lins, got):
            exp = {"idx": i, "pe": value["pe"]} if lin % 2 else str(i)
            assert value == exp, (name, got)

        # Custom reducers.
        f1, f2, f3 = Future(), Future(), Future()
        proxy.custom(f1, f2, f3)
        exp = {"n": n}
        for lin in lins:
            exp[f"k{lin % 3}"] = exp.get(f"k{lin % 3}", 0) + lin
        assert f1.get() == exp, (name, f1.get(), exp)
        longest_exp = max((("x" * (lin % 5) + "a").upper() for lin in lins),
                          key=lambda s: (len(s), s))
        assert f2.get() == f"<{longest_exp}>", (name, f2.get())
        assert f3.get() == sorted(lins), (name, f3.get())

        # allreduce: every member gets every result.
        got = proxy.all_reduce(4, ret=True).get()
        exp = [sum(lins) + r * n for r in range(4)]
        assert got == [exp] * n, (name, got, exp)

        # Successive reductions of one collection, all in flight at once.
        futs = [Future() for _ in range(25)]
        proxy.successive(futs)
        assert [f.get() for f in futs] == [sum(lins) * r for r in range(25)], name

    # The single-chare targets (several collections sent to it meanwhile).
    assert sink.get("empty", 3, ret=True).get() == ["called"] * 3
    maxes = sink.get("max", 3, ret=True).get()
    assert sorted(maxes) == sorted([80, 23, P - 1]), maxes

    # Several collections reducing at the same time, to every kind of target.
    arrays = [Array(Member, 5 + k, args=[sink]) for k in range(4)] + [Group(Member, args=[sink])]
    futs = []
    for a in arrays:
        fs = [Future() for _ in range(10)]
        a.successive(fs)
        futs.append(fs)
    sizes = [5, 6, 7, 8]
    for k, fs in enumerate(futs):
        n = sizes[k] if k < 4 else P
        total = sum(range(n)) * (10 if k < 4 else 1)   # array element (i,) has lin 10*i
        assert [f.get() for f in fs] == [total * r for r in range(10)], k
    for a in arrays:
        a.empty_to_single()
    assert sink.get("empty", 3 + len(arrays), ret=True).get() == ["called"] * (3 + len(arrays))
    print("OK reduce_targets")
    charm.exit()


charm.start(main)
