"""ArrayMap placement: Array(C, dims, map=Group(MyMap)) puts each element
on the PE its procNum returns."""
from charmpy import *


class Elem(Chare):
    def __init__(self, tag="none"):
        self.tag = tag

    def info(self):
        return (self.thisIndex, charm.myPe(), self.tag)

    def part(self, fut):
        self.contribute(sum(self.thisIndex), Reducer.sum, fut)


class Reverse(ArrayMap):
    def procNum(self, index):
        return (charm.numPes() - 1 - sum(index)) % charm.numPes()


def main(args):
    P = charm.numPes()
    # ArrayMap: placement given by procNum.
    m = Group(Reverse)
    charm.awaitCreation(m)
    a = Array(Elem, (4, 3), map=m)
    for idx, pe, _ in a.info(ret=True).get():
        assert pe == (P - 1 - sum(idx)) % P, (idx, pe)
    f = Future()
    a.part(f)
    assert f.get() == sum(i + j for i in range(4) for j in range(3))
    # Calls to single elements find them where the map put them.
    for i in range(4):
        for j in range(3):
            idx, pe, _ = a[i, j].info(ret=True).get()
            assert idx == (i, j) and pe == (P - 1 - i - j) % P, (i, j, idx, pe)
    b = Array(Elem, 5, map=m)
    for i in range(5):
        idx, pe, _ = b[i].info(ret=True).get()
        assert idx == (i,) and pe == (P - 1 - i) % P, (i, idx, pe)

    print("OK array_map")
    charm.exit()


charm.start(main)
