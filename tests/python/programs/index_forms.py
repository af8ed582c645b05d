"""charm.Future is Future, charm.createFuture(), and element indices given
as lists: arr[[1, 2]] reaches the same element as arr[1, 2], arr[[3]] the
same as arr[3] on a 1-D array, ckInsert([3, 4]) on a 2-D sparse array.
Proxies compare equal and hash the same whichever form was used, also after
travelling to another PE."""
from charmpy import *


class Elem(Chare):
    def __init__(self, tag="dense"):
        self.tag = tag
        self.hits = 0

    def info(self):
        self.hits += 1
        return (self.thisIndex, charm.myPe(), self.tag, self.hits)


class Checker(Chare):
    def same(self, p, q):
        return (p == q, hash(p) == hash(q), not (p != q))

    def fulfil(self, f, value):
        f.send(value)

    @coro
    def call_get(self, p):
        return p.info(ret=True).get()


def main(args):
    P = charm.numPes()
    assert charm.Future is Future
    f = charm.createFuture()
    assert isinstance(f, Future)
    checker = Chare(Checker, onPE=P - 1)
    checker.fulfil(f, "from PE %d" % (P - 1))
    assert f.get() == "from PE %d" % (P - 1)
    f2 = charm.Future(2)
    checker.fulfil(f2, 1)
    checker.fulfil(f2, 2)
    assert sorted(f2.get()) == [1, 2]

    # 2-D dense: list and tuple forms reach the same element.
    a = Array(Elem, (3, 4))
    charm.awaitCreation(a)
    idx1, pe1, _, h1 = a[1, 2].info(ret=True).get()
    idx2, pe2, _, h2 = a[[1, 2]].info(ret=True).get()
    idx3, pe3, _, h3 = a[(1, 2)].info(ret=True).get()
    assert idx1 == idx2 == idx3 == (1, 2), (idx1, idx2, idx3)
    assert pe1 == pe2 == pe3
    assert (h1, h2, h3) == (1, 2, 3), (h1, h2, h3)    # one element, three calls
    assert a[[1, 2]] == a[1, 2] and hash(a[[1, 2]]) == hash(a[1, 2])
    assert a[[1, 2]] != a[2, 1]
    assert {a[[1, 2]]: "x"}[a[1, 2]] == "x"
    assert len({a[1, 2], a[[1, 2]], a[(1, 2)]}) == 1
    assert checker.same(a[[1, 2]], a[1, 2], ret=True).get() == (True, True, True)
    assert checker.same(a[[0, 3]], a[0, 2], ret=True).get()[0] is False
    assert checker.call_get(a[[2, 3]], ret=True).get()[0] == (2, 3)

    # 1-D dense: arr[[3]] is arr[3].
    b = Array(Elem, 6)
    assert b[[3]].info(ret=True).get()[:2] == b[3].info(ret=True).get()[:2]
    assert b[[3]].info(ret=True).get()[0] == (3,)
    assert b[3].info(ret=True).get()[3] == 4
    assert b[[3]] == b[3] == b[(3,)] and hash(b[[3]]) == hash(b[3]) == hash(b[(3,)])
    assert checker.same(b[[3]], b[3], ret=True).get() == (True, True, True)

    # 2-D sparse: ckInsert with a list index.
    s = Array(Elem, ndims=2)
    s.ckInsert([3, 4], args=["listed"])
    s.ckInsert((1, 0), args=["tupled"])
    s.ckInsert([0, 5], args=["placed"], onPE=P - 1)
    s.ckDoneInserting()
    assert s[3, 4].info(ret=True).get()[0::2] == ((3, 4), "listed")
    assert s[[3, 4]].info(ret=True).get()[0::2] == ((3, 4), "listed")
    assert s[[1, 0]].info(ret=True).get()[0::2] == ((1, 0), "tupled")
    idx, pe, tag, _ = s[[0, 5]].info(ret=True).get()
    assert (idx, pe, tag) == ((0, 5), P - 1, "placed"), (idx, pe, tag)
    assert s[[3, 4]] == s[3, 4] and hash(s[[3, 4]]) == hash(s[3, 4])
    assert checker.same(s[[3, 4]], s[3, 4], ret=True).get() == (True, True, True)
    print("OK index_forms")
    charm.exit()


charm.start(main)
