"""Calls to an element that migrated, from a PE that is neither its home nor
its PE: after the first call through the home, the sender's calls go
straight to the element (python/ext/location.c, senders' location caches).
Round trips (a call with ret=True) to an element moved off its home,
beside one to an element that never moved, on the same PEs.

    charmrun -n 3 bench/py/direct_bench.py [CALLS]

Prints `moved: T us`, `unmoved: T us` (medians of 5 batches) and their ratio."""
import statistics
import sys
import time

from charmpy import Array, Chare, Group, charm, coro

CALLS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000


class Elem(Chare):
    def move(self, pe):
        self.migrate(pe)

    def ping(self, x):
        return x


class Caller(Chare):
    @coro
    def rounds(self, target, n):
        t0 = time.perf_counter()
        for i in range(n):
            target.ping(i, ret=True).get()
        return (time.perf_counter() - t0) / n


def main(args):
    assert charm.numPes() >= 3, "run on 3 PEs or more"
    a = Array(Elem, 2)          # block map on 3 PEs: a[0] on PE 0, a[1] on PE 1
    g = Group(Caller)
    charm.awaitCreation(a, g)
    a[0].move(1)                # home PE 0, lives on PE 1, like a[1]
    charm.waitQD()
    g[2].rounds(a[0], 10, ret=True).get()   # the first call takes the home's path
    moved, unmoved = [], []
    for _ in range(5):
        moved.append(g[2].rounds(a[0], CALLS, ret=True).get())
        unmoved.append(g[2].rounds(a[1], CALLS, ret=True).get())
    m, u = statistics.median(moved), statistics.median(unmoved)
    print(f"moved: {m * 1e6:.1f} us a round trip from PE 2 to an element moved to PE 1")
    print(f"unmoved: {u * 1e6:.1f} us a round trip from PE 2 to an element on PE 1")
    print(f"ratio: {m / u:.2f}")
    charm.exit()


charm.start(main)
