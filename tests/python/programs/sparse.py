"""Sparse arrays: Array(C, ndims=n), proxy.ckInsert(index, args, onPE),
proxy.ckDoneInserting(). A message to an element not inserted yet waits for
its insertion. Usage: sparse.py basic|bcast_ret (bcast_ret also uses
ret=True on a broadcast to the sparse array)."""
import sys

from charmpy import *

MODE = sys.argv[1]


class Elem(Chare):
    def __init__(self, tag="none"):
        self.tag = tag

    def info(self):
        return (self.thisIndex, charm.myPe(), self.tag)

    def part(self, fut):
        self.contribute(self.info(), Reducer.gather, fut)


def main(args):
    P = charm.numPes()
    s = Array(Elem, ndims=2)
    early = s[7, 7].info(ret=True)        # before (7, 7) exists
    wanted = [(0, 0), (5, 1), (2, 9), (7, 7)]
    for k, idx in enumerate(wanted):
        if k % 2:
            s.ckInsert(idx, args=[f"t{k}"], onPE=k % P)
        else:
            s.ckInsert(idx, args=[f"t{k}"])
    s.ckDoneInserting()
    assert early.get() == ((7, 7), 3 % P, "t3"), early.get()
    f = Future()
    s.part(f)
    got = f.get()
    assert [g[0] for g in got] == sorted(wanted), got
    for idx, pe, tag in got:
        k = wanted.index(idx)
        assert tag == f"t{k}" and (k % 2 == 0 or pe == k % P), (idx, pe, tag)
    assert s[5, 1].info(ret=True).get() == ((5, 1), 1 % P, "t1")
    if MODE == "bcast_ret":
        assert s.info(ret=True).get() == got
    print(f"OK sparse")
    charm.exit()


charm.start(main)
