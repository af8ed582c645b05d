"""A program to trace (test_trace.py reads the timeline it leaves).

An array of 4 elements a PE; main broadcasts `work` three times (each
element busy for 0.2 ms, then a sum reduction to a future), and sends
every element a direct call `poke` with a numpy array of 1000 float64;
a group reduces along the runtime's tree (its result a message too).

Usage: trace_prog.py MODE [FILE]   (FILE: set charm.options.trace = FILE)
    ok     then exit normally (PE 0 writes the whole trace)
    crash  then the element on the last PE raises in `boom`: the job ends
           with an error, each PE leaving its part (FILE.<pe>.part)
"""
import sys
import time

import numpy as np

from charmpy import *

MODE = sys.argv[1]
assert MODE in ("ok", "crash"), MODE
if len(sys.argv) > 2:
    charm.options.trace = sys.argv[2]


class Worker(Chare):
    def work(self, r, done):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.0002:
            pass
        self.contribute(self.thisIndex[0] + r, Reducer.sum, done)

    def poke(self, a):
        assert a.shape == (1000,) and a[7] == 7.0
        return float(a.sum())

    def boom(self):
        raise RuntimeError("TRACE-CRASH-MARKER")


class Member(Chare):
    def count(self, done):
        self.contribute(1, Reducer.sum, done)


def main(args):
    P = charm.numPes()
    n = 4 * P
    arr = Array(Worker, n)
    charm.awaitCreation(arr)
    for r in range(3):
        f = Future()
        arr.work(r, f)
        assert f.get() == n * (n - 1) // 2 + n * r
    a = np.arange(1000.0)
    futs = [arr[i].poke(a, ret=True) for i in range(n)]
    assert all(f.get() == a.sum() for f in futs)
    g = Group(Member)
    charm.awaitCreation(g)
    for _ in range(2):
        f = Future()
        g.count(f)
        assert f.get() == P
    if MODE == "crash":
        arr[n - 1].boom()
        charm.sleep(30)     # the job ends before this
    print("OK trace_prog")
    charm.exit()


charm.start(main)
