"""N-dimensional dense arrays (2-D to 6-D): thisIndex is the right tuple on
every element, every index exists exactly once (checked three ways: a
broadcast with ret, a gather reduction, and constructor-time reports to a
single collector chare), and element proxies proxy[i, j, ...] reach exactly
that element."""
import itertools

from charmpy import *

SHAPES = [(4, 5), (1, 7), (3, 1, 2), (2, 2, 2, 3), (2, 1, 3, 1, 2), (2, 3, 1, 2, 2, 2),
          (1, 1, 1, 1, 1, 1)]


class Collector(Chare):
    def __init__(self):
        self.seen = {}

    def report(self, shape, index, pe):
        self.seen.setdefault(shape, []).append((index, pe))

    # Reports travel from other PEs: wait until all n of them arrived.
    @when("len(self.seen.get(shape, ())) >= n")
    def get(self, shape, n):
        return self.seen[shape]


class Cell(Chare):
    def __init__(self, shape, collector):
        assert isinstance(self.thisIndex, tuple), self.thisIndex
        assert len(self.thisIndex) == len(shape), (self.thisIndex, shape)
        assert all(0 <= i < d for i, d in zip(self.thisIndex, shape)), (self.thisIndex, shape)
        self.shape = shape
        collector.report(shape, self.thisIndex, charm.myPe())

    def index(self):
        return self.thisIndex

    def echo(self, expected):
        assert self.thisIndex == expected, (self.thisIndex, expected)
        return (self.thisIndex, charm.myPe())

    def gather(self, fut):
        self.contribute((self.thisIndex, charm.myPe()), Reducer.gather, fut)


def main(args):
    collector = Chare(Collector, onPE=charm.numPes() - 1)
    for shape in SHAPES:
        everything = list(itertools.product(*[range(d) for d in shape]))  # row-major
        a = Array(Cell, shape, args=[shape, collector])

        # Broadcast with ret: a list in index order.
        got = a.index(ret=True).get()
        assert got == everything, (shape, got)

        # Gather: a list in index order too, each element once.
        f = Future()
        a.gather(f)
        gathered = f.get()
        assert [g[0] for g in gathered] == everything, (shape, gathered)

        # Each element was built once, on the PE it reports from.
        reported = collector.get(shape, len(everything), ret=True).get()
        assert sorted(i for i, _ in reported) == everything, (shape, reported)
        where = dict(reported)
        assert where == dict(gathered), (shape, where, gathered)

        # Element proxies: proxy[i, j, ...] and proxy[(i, j, ...)] both reach it.
        futs = []
        for idx in everything:
            futs.append((idx, a[idx].echo(idx, ret=True)))
            if len(shape) == 2:
                futs.append((idx, a[idx[0], idx[1]].echo(idx, ret=True)))
            if len(shape) == 6:
                i, j, k, l, m, n = idx
                futs.append((idx, a[i, j, k, l, m, n].echo(idx, ret=True)))
        for idx, fut in futs:
            got_idx, pe = fut.get()
            assert got_idx == idx and pe == where[idx], (shape, idx, got_idx, pe, where[idx])
    print("OK arrays_nd")
    charm.exit()


charm.start(main)
