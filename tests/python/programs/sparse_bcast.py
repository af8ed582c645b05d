"""ret=True and awaitable=True on a broadcast to a sparse array: get() is the
list of every inserted element's result in index order (awaitable: None,
once every element ran the method). With elements on some PEs only (others
hold none), spread by onPE and by an ArrayMap, and a 2-D sparse array; the
broadcasts are made right after ckDoneInserting."""
from charmpy import *


class OnlyPe0(ArrayMap):
    def procNum(self, index):
        return 0


class Elem(Chare):
    def __init__(self, tag):
        self.tag = tag
        self.touched = 0

    def info(self):
        return (self.thisIndex, self.tag)

    @coro
    def touch(self, secs):
        charm.sleep(secs)
        self.touched += 1

    def count(self):
        return self.touched


def check(a, inserted):
    """inserted: {index: tag}. Broadcast right after ckDoneInserting."""
    order = sorted(inserted)
    f = a.info(ret=True)
    assert f.get() == [(i, inserted[i]) for i in order], (f.get(), order)
    assert a.touch(0.01, awaitable=True).get() is None
    # awaitable=True was done only when every element had run touch.
    assert a.count(ret=True).get() == [1] * len(order)
    assert a.touch(0.0, ret=True).get() == [None] * len(order)
    assert a.count(ret=True).get() == [2] * len(order)


def main(args):
    P = charm.numPes()
    # 1-D, every element on PE P-1 (the others hold none), inserted out of order.
    a = Array(Elem, ndims=1)
    want = {(i,): f"a{i}" for i in (9, 2, 14, 0, 5)}
    for idx, tag in want.items():
        a.ckInsert(idx, args=[tag], onPE=P - 1)
    a.ckDoneInserting()
    check(a, want)

    # 1-D, placed by an ArrayMap on PE 0 only.
    m = Group(OnlyPe0)
    charm.awaitCreation(m)
    b = Array(Elem, ndims=1, map=m)
    wantb = {(i,): f"b{i}" for i in (3, 1, 4)}
    for idx, tag in wantb.items():
        b.ckInsert(idx[0], args=[tag])
    b.ckDoneInserting()
    check(b, wantb)

    # 2-D, spread over the PEs by onPE and by the default placement.
    c = Array(Elem, ndims=2)
    wantc = {}
    for k, idx in enumerate([(4, 1), (0, 7), (2, 2), (0, 0), (9, 3), (1, 5)]):
        wantc[idx] = f"c{k}"
        if k % 2:
            c.ckInsert(idx, args=[wantc[idx]], onPE=(k * 3) % P)
        else:
            c.ckInsert(idx, args=[wantc[idx]])
    c.ckDoneInserting()
    check(c, wantc)

    # One element only.
    d = Array(Elem, ndims=3)
    d.ckInsert((1, 2, 3), args=["only"], onPE=0)
    d.ckDoneInserting()
    check(d, {(1, 2, 3): "only"})
    print("OK sparse_bcast")
    charm.exit()


charm.start(main)
