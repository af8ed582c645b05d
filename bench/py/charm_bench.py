"""charmpy side of the Python-level benchmarks (bench/py/run.sh runs it).

    charmrun -n 2 bench/py/charm_bench.py latency [ITERS]     one-way µs of a small call
    charmrun -n 2 bench/py/charm_bench.py rate [N]            calls/s, PE 0 -> PE 1
    charmrun -n 1 bench/py/charm_bench.py rate [N]            calls/s, both chares on PE 0
    charmrun -n 2 bench/py/charm_bench.py bw [BYTES] [ITERS]  GB/s, numpy float64 ping-pong
    charmrun -n 1 bench/py/charm_bench.py mem [N] array|plain bytes and seconds for N chares

Every mode warms up, then runs BENCH_REPS (5) repetitions and prints one
`# rep ...` line per repetition and a last line `MODE MEDIAN` (mem prints
`mem array|plain N RSS_DELTA_BYTES SECONDS`). ITERS/N left out: latency and
bw pick a count that lasts about BENCH_TIME (0.2 s) per repetition, rate
sends 200000 calls per repetition. BENCH_PROFILE=1 prints a cProfile of
PE 0's Python work to stderr (whole programs with -n 1: rate, mem).
"""
import gc
import os
import statistics
import sys
import time

from charmpy import Array, Chare, Future, charm

REPS = int(os.environ.get("BENCH_REPS", "5"))
REP_TIME = float(os.environ.get("BENCH_TIME", "0.2"))
now = time.perf_counter


def calibrate(run_batch, start=64):
    """Warm up with growing batches until one lasts 30 ms; return the count
    that lasts about REP_TIME. run_batch(n) -> seconds."""
    n = start
    while True:
        t = run_batch(n)
        if t >= 0.03:
            break
        n *= 2
    t = run_batch(n)
    return max(1, int(n * REP_TIME / max(t, 1e-9)))


def report(mode, values, unit, fmt="{:.3f}"):
    for i, v in enumerate(values):
        print(f"# rep {i} {fmt.format(v)} {unit}")
    print(f"{mode} {fmt.format(statistics.median(values))}")


# ---- a: ping-pong latency of a small entry-method call ----------------------
class Pinger(Chare):
    def setup(self, other):
        self.other = other

    def run(self, iters, done):
        self.left = iters
        self.done = done
        self.t0 = now()
        self.other.ping(0)

    def pong(self, x):
        self.left -= 1
        if self.left:
            self.other.ping(x + 1)
        else:
            self.done.send(now() - self.t0)


class Ponger(Chare):
    def setup(self, other):
        self.other = other

    def ping(self, x):
        self.other.pong(x)


def latency(args):
    a = Chare(Pinger, onPE=0)
    b = Chare(Ponger, onPE=1 % charm.numPes())
    charm.awaitCreation(a, b)
    a.setup(b, awaitable=True).get()
    b.setup(a, awaitable=True).get()

    def batch(n):
        f = Future()
        a.run(n, f)
        return f.get()
    iters = int(args[0]) if args else calibrate(batch)
    if args:
        batch(max(1, iters // 10))     # warm-up
    # one-way latency = round trip / 2, in µs
    vals = [batch(iters) / iters / 2 * 1e6 for _ in range(REPS)]
    print(f"# iters {iters}")
    report("latency", vals, "us")


# ---- b: fire-and-forget small calls ----------------------------------------
class Sender(Chare):
    def run(self, n, target, done):
        for i in range(n):
            target.recv(i)
        target.finish(done)


class Receiver(Chare):
    def __init__(self):
        self.count = 0

    def recv(self, i):
        self.count += 1

    def finish(self, done):
        done.send(self.count)
        self.count = 0


def rate(args):
    n = int(args[0]) if args else 200000
    s = Chare(Sender, onPE=0)
    r = Chare(Receiver, onPE=1 % charm.numPes())
    charm.awaitCreation(s, r)

    def batch(k):
        f = Future()
        t0 = now()
        s.run(k, r, f)
        got = f.get()
        t = now() - t0
        assert got == k, (got, k)
        return t
    batch(max(1, n // 4))      # warm-up
    batch(max(1, n // 4))
    vals = [n / batch(n) for _ in range(REPS)]
    print(f"# calls {n} pes {charm.numPes()}")
    report("rate", vals, "calls/s", "{:.0f}")


# ---- c: bandwidth of a numpy float64 argument --------------------------------
class BwA(Chare):
    def setup(self, other):
        self.other = other

    def run(self, arr, iters, done):
        self.left = iters
        self.done = done
        self.t0 = now()
        self.other.take(arr)

    def take(self, arr):
        self.left -= 1
        if self.left:
            self.other.take(arr)
        else:
            self.done.send((now() - self.t0, float(arr[-1])))


class BwB(Chare):
    def setup(self, other):
        self.other = other

    def take(self, arr):
        self.other.take(arr)


def bw(args):
    import numpy as np
    size = int(args[0]) if args else 8 << 20
    arr = np.arange(max(1, size // 8), dtype=np.float64)
    nbytes = arr.nbytes
    a = Chare(BwA, onPE=0)
    b = Chare(BwB, onPE=1 % charm.numPes())
    charm.awaitCreation(a, b)
    a.setup(b, awaitable=True).get()
    b.setup(a, awaitable=True).get()

    def batch(n):
        f = Future()
        a.run(arr, n, f)
        t, last = f.get()
        assert last == arr[-1], (last, arr[-1])
        return t
    iters = int(args[1]) if len(args) > 1 else calibrate(batch, start=4)
    if len(args) > 1:
        batch(max(1, iters // 4))
    # a round trip moves the array twice
    vals = [2 * iters * nbytes / batch(iters) / 1e9 for _ in range(REPS)]
    print(f"# bytes {nbytes} iters {iters}")
    report("bw", vals, "GB/s")


# ---- d: memory per array element ----------------------------------------------
class Empty(Chare):
    pass


def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def mem(args):
    n = int(args[0]) if args else 1000000
    what = args[1] if len(args) > 1 else "array"
    # Warm-up: the code paths of creation, and a proxy for the plain objects.
    small = Array(Empty, 1000)
    charm.awaitCreation(small)
    gc.collect()
    if what == "array":
        r0 = rss()
        t0 = now()
        p = Array(Empty, n)
        charm.awaitCreation(p)
        t = now() - t0
        gc.collect()
        r1 = rss()
    elif what == "plain":
        # The same objects as the array's members hold: an instance of the
        # class with thisProxy (one shared proxy) and thisIndex (a 1-tuple),
        # kept in a list (8 B a pointer, which is charged to the plain side).
        r0 = rss()
        t0 = now()
        objs = []
        for i in range(n):
            o = Empty.__new__(Empty)
            o.thisProxy = small
            o.thisIndex = (i,)
            o.__init__()
            objs.append(o)
        t = now() - t0
        gc.collect()
        r1 = rss()
    else:
        raise SystemExit(f"mem: unknown kind {what!r} (array or plain)")
    print(f"mem {what} {n} {r1 - r0} {t:.4f}")


def main(args):
    modes = {"latency": latency, "rate": rate, "bw": bw, "mem": mem}
    if len(args) < 2 or args[1] not in modes:
        print(__doc__, file=sys.stderr)
        charm.exit(2)
        return
    prof = None
    if os.environ.get("BENCH_PROFILE"):
        # cProfile over PE 0's Python work (entry methods included), printed
        # to stderr: whole programs with -n 1 (rate, mem).
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    modes[args[1]](args[2:])
    if prof is not None:
        import pstats
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    charm.exit(0)


charm.start(main)
