"""A compute-then-exchange ping-pong: two chares on 2 PEs pass a token,
each working W us (a busy loop) before passing it on; prints the time a hop
and its overhead beyond W. Shows the idle PEs' wait policy (shm.c): a PE
that sleeps on its futex between hops pays a kernel wake-up at each.

    charmrun -n 2 bench/py/gap_bench.py [W_US]"""
import sys
import time

from charmpy import Array, Chare, Future, charm

WORK = float(sys.argv[1] if len(sys.argv) > 1 else 100) * 1e-6
N = 2000


class Hop(Chare):
    def start(self, f):
        self.f, self.left = f, N
        self.thisProxy[1].hop()

    def hop(self):
        t = time.perf_counter() + WORK
        while time.perf_counter() < t:
            pass
        if self.thisIndex[0] == 0:
            self.left -= 1
            if self.left == 0:
                self.f.send(1)
                return
        self.thisProxy[1 - self.thisIndex[0]].hop()


def main(args):
    p = Array(Hop, 2)
    charm.awaitCreation(p)
    best = float("inf")
    for _ in range(3):
        f = Future()
        t0 = time.perf_counter()
        p[0].start(f)
        f.get()
        best = min(best, (time.perf_counter() - t0) / (2 * N))
    print(f"work {WORK * 1e6:.0f} us: {best * 1e6:.1f} us a hop, overhead "
          f"{(best - WORK) * 1e6:.1f} us")
    charm.exit()


charm.start(main)
