"""Sections: slices of arrays and groups, broadcast and reduce over them
(not built yet)."""
from charmpy import *


class M(Chare):
    def __init__(self):
        self.hits = 0

    def hit(self):
        self.hits += 1

    def count(self):
        return self.hits

    def red(self, sec, fut):
        self.contribute(self.thisIndex[0], Reducer.sum, fut, section=sec)


def main(args):
    a = Array(M, 10)
    sec = a[2:6]
    sec.hit(awaitable=True).get()
    assert a.count(ret=True).get() == [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    f = Future()
    sec.red(sec, f)
    assert f.get() == 2 + 3 + 4 + 5
    parts = charm.split(a, 2, elems=[[(0,), (1,)], [(8,), (9,)]])
    assert len(parts) == 2
    print("OK sections")
    charm.exit()


charm.start(main)
