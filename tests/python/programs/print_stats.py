"""charm.printStats(): never raises; prints this PE's statistics to stdout in
lines that start with `PE <n>: `, among them
    PE <n>: messages sent <a>, received <b>, bytes sent <c>, received <d>
and, with profiling on (charm.options.profiling = True before charm.start,
or +stats on the command line), one line per entry method that ran there:
    PE <n>: <Class>.<method> calls <k> total <seconds> s

The worker method Worker.tick runs exactly BASE + pe times on PE pe (each
call busy for about 1 ms); the test reads the printed lines and checks them.

Usage: print_stats.py profiling|plain BASE
    profiling: set charm.options.profiling = True before charm.start
    plain:     leave it (the test may pass +stats instead)
"""
import sys
import time

from charmpy import *

MODE = sys.argv[1]
BASE = int(sys.argv[2])
assert MODE in ("profiling", "plain"), MODE
if MODE == "profiling":
    charm.options.profiling = True


class Worker(Chare):
    def __init__(self):
        self.ticks = 0

    def tick(self, k):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.001:
            pass
        self.ticks += 1

    def ticks_done(self):
        return self.ticks


def main(args):
    P = charm.numPes()
    w = Group(Worker)
    charm.awaitCreation(w)
    for pe in range(P):
        for k in range(BASE + pe):
            w[pe].tick(k)
    assert w.ticks_done(ret=True).get() == [BASE + pe for pe in range(P)]
    # On every PE, through the runtime's group, then directly here.
    assert charm.thisProxy.printStats(awaitable=True).get() is None
    charm.printStats()
    print(f"ticks {' '.join(str(BASE + pe) for pe in range(P))}")
    print("OK print_stats")
    charm.exit()


charm.start(main)
