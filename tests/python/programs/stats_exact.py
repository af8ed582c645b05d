"""printStats' figures against what the program did.

Group member P-1 prints its PE's statistics (a plain entry method: this
PE's only) before and after main sends it K ticks, each line tagged
`before ` or `after `; then main prints every PE's (a coroutine: every PE
and the totals). The test reads the lines: between the two, PE P-1
processed exactly the K ticks and the second `show` (and, at 1 PE, the
messages main's calls make to its own PE), and sent exactly the answer to
the first `show`; the time line's parts add up to its total; the totals
row sums the PEs' rows.

Usage: stats_exact.py K [plain]   (plain: profiling left off)
"""
import contextlib
import io
import sys
import time

from charmpy import *

K = int(sys.argv[1])
if "plain" not in sys.argv[2:]:
    charm.options.profiling = True


class Probe(Chare):
    def __init__(self):
        self.n = 0

    def tick(self, x):
        self.n += 1
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.0005:
            pass

    def show(self, tag):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            charm.printStats()
        print("\n".join(f"{tag} {ln}" for ln in buf.getvalue().splitlines()), flush=True)
        return self.n


def main(args):
    P = charm.numPes()
    g = Group(Probe)
    charm.awaitCreation(g)
    t = P - 1
    assert g[t].show("before", ret=True).get() == 0
    for i in range(K):
        g[t].tick(i)
    assert g[t].show("after", ret=True).get() == K
    charm.printStats()
    print("OK stats_exact")
    charm.exit()


charm.start(main)
