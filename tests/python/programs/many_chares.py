"""Many chares: a 1-D array of N elements (default one million): create it,
broadcast to every element, and reduce over all of them (sum, max and an
empty reduction), twice. Usage: many_chares.py [N]"""
import sys
import time

from charmpy import *

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000


class Cell(Chare):
    def __init__(self, base):
        self.value = base + self.thisIndex[0]

    def bump(self, k, sums, maxes, done):
        self.value += k
        i = self.thisIndex[0]
        self.contribute(self.value, Reducer.sum, sums)
        self.contribute(i % 1000 + k, Reducer.max, maxes)
        self.contribute(None, None, done)


def main(args):
    t0 = time.time()
    a = Array(Cell, N, args=[5])
    charm.awaitCreation(a)
    t1 = time.time()
    expected = sum(range(N)) + 5 * N
    times = [t1 - t0]
    for k in (1, 2):
        sums, maxes, done = Future(), Future(), Future()
        t = time.time()
        a.bump(k, sums, maxes, done)
        expected += k * N
        assert sums.get() == expected, (sums.get(), expected)
        assert maxes.get() == min(N, 1000) - 1 + k, maxes.get()
        assert done.get() is None
        times.append(time.time() - t)
    print(f"{N} elements on {charm.numPes()} PEs: create {times[0]:.1f} s, "
          f"broadcast+reduce {times[1]:.1f} s, {times[2]:.1f} s")
    print("OK many_chares")
    charm.exit()


charm.start(main)
