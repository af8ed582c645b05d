"""Arrays placed by an ArrayMap, used right after creation: the map group
and the array are created and the elements inserted (ckInsert) and called
at once, with no awaitCreation in between, so the inserts and calls may
reach a PE before the map group exists there. Elements live on
procNum(index). Also a dense Array(C, 10, map=m) called right away, and the
same done by a chare on another PE (not main)."""
from charmpy import *


def place(index):
    return (index[0] * 7 + 1) % charm.numPes()


class Spread(ArrayMap):
    def procNum(self, index):
        return place(index)


class LastPe(ArrayMap):
    def procNum(self, index):
        return charm.numPes() - 1


class Elem(Chare):
    def __init__(self, tag="dense"):
        self.tag = tag

    def info(self):
        return (self.thisIndex, charm.myPe(), self.tag)

    def part(self, fut):
        self.contribute([(self.thisIndex, charm.myPe())], Reducer.gather, fut)


def build_sparse(indices, mapcls):
    """Create a map group and a sparse array with it, insert and call at once;
    returns the array and the futures of the calls made right after insert."""
    m = Group(mapcls)
    a = Array(Elem, ndims=1, map=m)
    futs = []
    for i in indices:
        a.ckInsert(i, args=[f"t{i}"])
        futs.append(a[i].info(ret=True))
    a.ckDoneInserting()
    return a, futs


def check_sparse(a, indices, futs, where):
    for i, f in zip(indices, futs):
        assert f.get() == ((i,), where((i,)), f"t{i}"), (i, f.get())
    for i in indices:
        assert a[i].info(ret=True).get() == ((i,), where((i,)), f"t{i}")
    g = Future()
    a.part(g)
    got = g.get()
    assert got == [[((i,), where((i,)))] for i in sorted(indices)], got


def check_dense(P, mapcls, where):
    m = Group(mapcls)
    d = Array(Elem, 10, map=m)
    futs = [d[i].info(ret=True) for i in range(10)]
    for i, f in enumerate(futs):
        assert f.get() == ((i,), where((i,)), "dense"), (i, f.get())
    assert [t[:2] for t in d.info(ret=True).get()] == [((i,), where((i,))) for i in range(10)]


class Builder(Chare):
    @coro
    def build_and_check(self, indices):
        a, futs = build_sparse(indices, Spread)
        check_sparse(a, indices, futs, place)
        check_dense(charm.numPes(), Spread, place)
        return charm.myPe()

    def build(self, indices):
        # Not a coroutine: insert and return the proxy at once.
        m = Group(LastPe)
        a = Array(Elem, ndims=1, map=m)
        for i in indices:
            a.ckInsert(i, args=[f"t{i}"])
        a.ckDoneInserting()
        return a


def main(args):
    P = charm.numPes()
    last = lambda index: P - 1    # noqa: E731
    indices = [5, 0, 3, 11, 2, 8]
    a, futs = build_sparse(indices, Spread)
    check_sparse(a, indices, futs, place)
    a2, futs2 = build_sparse(indices, LastPe)
    check_sparse(a2, indices, futs2, last)
    check_dense(P, Spread, place)
    check_dense(P, LastPe, last)

    # The same from a chare on another PE.
    b = Chare(Builder, onPE=P - 1)
    assert b.build_and_check([4, 1, 9], ret=True).get() == P - 1
    a3 = b.build([7, 2, 6], ret=True).get()
    check_sparse(a3, [7, 2, 6], [a3[i].info(ret=True) for i in (7, 2, 6)], last)
    print("OK sparse_map")
    charm.exit()


charm.start(main)
