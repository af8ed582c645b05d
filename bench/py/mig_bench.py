"""Migration cost (issue 10's target): a chare holding a numpy array of
BYTES moves between PE 0 and PE 1 and back, ITERS times, against the same
array sent as an argument to a chare on the other PE and back (the peer,
in the same run).

    charmrun -n 2 bench/py/mig_bench.py [BYTES] [ITERS]

Prints `migrate: T us a move` and `send: T us a send` and their ratio."""
import sys
import time

import numpy as np

from charmpy import Array, Chare, Future, charm

BYTES = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 20
ITERS = int(sys.argv[2]) if len(sys.argv) > 2 else 200


class Mover(Chare):
    def __init__(self):
        self.data = np.ones(BYTES // 8)
        self.left = 0

    def start(self, n, done):
        self.left, self.done = n, done
        self.migrate(1 - charm.myPe())

    def migrated(self):
        self.left -= 1
        if self.left == 0:
            self.done.send(float(self.data[0]))
        else:
            self.migrate(1 - charm.myPe())


class Echo(Chare):
    def __init__(self):
        self.left = 0

    def start(self, n, data, other, done):
        self.left, self.done, self.other = n, done, other
        other.take(data)

    def take(self, data):
        # Both ends count: n sends in all, alternating directions.
        self.thisProxy[1 - self.thisIndex[0]].back(data)

    def back(self, data):
        self.left -= 2
        if self.left <= 0:
            self.done.send(float(data[0]))
        else:
            self.other.take(data)


def main(args):
    assert charm.numPes() == 2, "run on 2 PEs"
    m = Array(Mover, 1)
    e = Array(Echo, 2)
    charm.awaitCreation(m, e)
    data = np.ones(BYTES // 8)
    best_m = best_s = float("inf")
    for _ in range(3):
        f = Future()
        t0 = time.perf_counter()
        m[0].start(ITERS, f)
        f.get()
        best_m = min(best_m, (time.perf_counter() - t0) / ITERS)
        f = Future()
        t0 = time.perf_counter()
        e[0].start(ITERS, data, e[1], f)
        f.get()
        best_s = min(best_s, (time.perf_counter() - t0) / ITERS)
    print(f"migrate: {best_m * 1e6:.1f} us a move of a chare holding {BYTES} bytes")
    print(f"send: {best_s * 1e6:.1f} us a send of the array as an argument")
    print(f"ratio: {best_m / best_s:.2f}")
    charm.exit()


charm.start(main)
