"""The suite's chare programs: one source for charmpy and charm4py.

charmpy's API is charm4py's, so the very same program measures both:
SUITE_CHARM=charm4py imports charm4py, anything else charmpy.

    charmrun -n 2 chares.py latency [sizes=8,64,...]       ping-pong, one-way µs per size
    charmrun -n 2 chares.py chanlat [sizes=8,...]           a channel ping-pong (coroutines,
                                                            send/recv) and the entry-method
                                                            ping-pong, repetitions interleaved
    charmrun -n 2 chares.py rate [window=64]                calls/s, windows of calls in flight
    charmrun -n 2 chares.py bw [sizes=...] [window=8]       GB/s of numpy float64 arguments
    charmrun -n P chares.py bcast n=1000                    µs per broadcast + sum reduction
    charmrun -n P chares.py secbcast n=1000                 ns a member: broadcast + sum over
                                                            the array, then over a[0:n:2]
    charmrun -n P chares.py jacobi grid=2048 blocks=4       ms per iteration, blocks x blocks chares
                                           [check=ITERS]   only: the max change after ITERS iterations
    charmrun -n P chares.py create n=1000000                s to create, bytes per element
    SUITE_CHARM=charm4py python -m charmrun.start +p2 chares.py latency ++local

Two-party benchmarks run between PE 0 and PE 1 (both on PE 0 with 1 PE).
Method and output: common.py. SUITE_PROFILE=1 prints a cProfile of PE 0's
Python work to stderr.
"""
import gc
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import emit, log, measure, now, one_way_us  # noqa: E402

LIB = os.environ.get("SUITE_CHARM", "charmpy")
if LIB == "charm4py":
    from charm4py import (Array, ArrayMap, Channel, Chare, Future, Group, Reducer, charm, coro,
                          when)
else:
    from charmpy import (Array, ArrayMap, Channel, Chare, Future, Group, Reducer, charm, coro,
                         when)

import numpy as np  # noqa: E402

LAT_SIZES = (8, 64, 512, 4096, 32768, 262144, 2097152, 16777216)
BW_SIZES = (4096, 65536, 1048576, 16777216)


def other_pe():
    return 1 % charm.numPes()


def pair(cls_a, cls_b):
    """A chare of cls_a on PE 0 and one of cls_b on the other PE, each
    knowing the other."""
    a = Chare(cls_a, onPE=0)
    b = Chare(cls_b, onPE=other_pe())
    charm.awaitCreation(a, b)
    a.setup(b, awaitable=True).get()
    b.setup(a, awaitable=True).get()
    return a, b


# ---- latency: ping-pong of a bytes object --------------------------------------
class Pinger(Chare):
    def setup(self, other):
        self.other = other

    def run(self, iters, msg, done):
        self.left, self.done = iters, done
        self.t0 = now()
        self.other.ping(msg)

    def pong(self, msg):
        self.left -= 1
        if self.left:
            self.other.ping(msg)
        else:
            self.done.send(now() - self.t0)


class Ponger(Chare):
    def setup(self, other):
        self.other = other

    def ping(self, msg):
        self.other.pong(msg)


def latency(opts):
    a, _ = pair(Pinger, Ponger)
    for size in common.sizes_arg(opts["sizes"], LAT_SIZES):
        msg = common.payload(size)

        def batch(n):
            f = Future()
            a.run(n, msg, f)
            return f.get()
        n, vals = measure(batch, one_way_us)
        emit("latency", vals, "us", size=size, iters=n)


# ---- chanlat: ping-pong over a channel, beside the entry-method one --------------
class ChanEnd(Chare):
    def setup(self, other):
        self.other = other

    @coro
    def open(self):
        self.ch = Channel(self, remote=self.other)

    @coro
    def run(self, iters, msg, first, done):
        ch = self.ch
        t0 = now()
        if first:
            for _ in range(iters):
                ch.send(msg)
                msg = ch.recv()
            done.send(now() - t0)
        else:
            for _ in range(iters):
                ch.send(ch.recv())


def chanlat(opts):
    a, b = pair(ChanEnd, ChanEnd)
    fa, fb = a.open(awaitable=True), b.open(awaitable=True)
    fa.get()
    fb.get()
    p, _ = pair(Pinger, Ponger)
    for size in common.sizes_arg(opts["sizes"], (8,)):
        msg = common.payload(size)

        def ch_batch(n):
            f = Future()
            b.run(n, None, False, None)
            a.run(n, msg, True, f)
            return f.get()

        def em_batch(n):
            f = Future()
            p.run(n, msg, f)
            return f.get()
        n = common.calibrate(ch_batch)
        m = common.calibrate(em_batch)
        ch_vals, em_vals = [], []
        for _ in range(common.REPS):
            ch_vals.append(one_way_us(n, ch_batch(n)))
            em_vals.append(one_way_us(m, em_batch(m)))
        emit("chanlat", ch_vals, "us", size=size, iters=n, kind="channel")
        emit("chanlat", em_vals, "us", size=size, iters=m, kind="entry")


# ---- rate and bw: windows of calls in flight, one acknowledgement a window ------
class Sender(Chare):
    def setup(self, other):
        self.other = other

    def run(self, windows, window, arg, done):
        self.left, self.window, self.arg, self.done = windows, window, arg, done
        self.t0 = now()
        self._send()

    def _send(self):
        take, arg = self.other.take, self.arg
        for _ in range(self.window):
            take(arg)

    def ack(self):
        self.left -= 1
        if self.left:
            self._send()
        else:
            self.done.send(now() - self.t0)


class Receiver(Chare):
    def setup(self, other):
        self.other = other
        self.count = 0

    def start(self, window):
        self.window = window
        self.count = 0

    def take(self, arg):
        self.count += 1
        if self.count == self.window:
            self.count = 0
            self.other.ack()


def windows(arg, window, convert):
    a, b = pair(Sender, Receiver)
    b.start(window, awaitable=True).get()

    def batch(k):
        f = Future()
        a.run(k, window, arg, f)
        return f.get()
    return measure(batch, convert)


def rate(opts):
    w = int(opts["window"] or common.WINDOW)
    n, vals = windows(1, w, lambda k, t: k * w / t)
    emit("rate", vals, "msg/s", size=8, window=w, iters=n * w)


def bw(opts):
    w = int(opts["window"] or common.BW_WINDOW)
    for size in common.sizes_arg(opts["sizes"], BW_SIZES):
        arr = np.arange(max(1, size // 8), dtype=np.float64)
        n, vals = windows(arr, w, lambda k, t: k * w * arr.nbytes / t / 1e9)
        emit("bw", vals, "GB/s", size=arr.nbytes, window=w, iters=n * w)


# ---- bcast: broadcast a value to n elements, sum-reduce their contributions ------
class Elem(Chare):
    def work(self, v, done):
        self.contribute(self.thisIndex[0] + v, Reducer.sum, done)


def bcast(opts):
    n = int(opts["n"])
    t0 = now()
    arr = Array(Elem, n)
    charm.awaitCreation(arr)
    log(f"created {n} elements in {now() - t0:.3f} s")
    base = n * (n - 1) // 2
    rounds = [0]

    def batch(k):
        t0 = now()
        for _ in range(k):
            r = rounds[0] = rounds[0] + 1
            f = Future()
            arr.work(r, f)
            got = f.get()
            assert got == base + n * r, (got, base + n * r)
        return now() - t0
    k, vals = measure(batch, lambda k, t: t / k * 1e6)
    emit("bcast", vals, "us", n=n, iters=k)


# ---- secbcast: the same over a section of half the array, per member ------------
class SecElem(Chare):
    def work(self, v, done):
        self.contribute(self.thisIndex[0] + v, Reducer.sum, done)

    def work_sec(self, v, sec, done):
        self.contribute(self.thisIndex[0] + v, Reducer.sum, done, section=sec)


def secbcast(opts):
    n = int(opts["n"])
    arr = Array(SecElem, n)
    charm.awaitCreation(arr)
    sec = arr[0:n:2]                    # every other element: on every PE
    half = list(range(0, n, 2))
    base_w, base_s, nh = n * (n - 1) // 2, sum(half), len(half)   # the sums without r
    rounds = [0]

    def whole(k):
        t0 = now()
        for _ in range(k):
            r = rounds[0] = rounds[0] + 1
            f = Future()
            arr.work(r, f)
            assert f.get() == base_w + n * r
        return now() - t0

    def section(k):
        t0 = now()
        for _ in range(k):
            r = rounds[0] = rounds[0] + 1
            f = Future()
            sec.work_sec(r, sec, f)
            assert f.get() == base_s + nh * r
        return now() - t0
    kw = common.calibrate(whole)
    ks = common.calibrate(section)
    wv, sv = [], []
    for _ in range(common.REPS):
        wv.append(whole(kw) / kw / n * 1e9)
        sv.append(section(ks) / ks / len(half) * 1e9)
    emit("secbcast", wv, "ns per member", n=n, iters=kw, kind="whole")
    emit("secbcast", sv, "ns per member", n=n, iters=ks, kind="section")


# ---- jacobi: 2-D 5-point stencil over numpy blocks, halo exchange with 4 neighbours
class RowMap(ArrayMap):
    """Blocks in row-major order, cut into numPes contiguous runs: the same
    placement for charmpy and charm4py, and a short boundary between PEs."""

    def __init__(self, nb):
        self.nb = nb

    def procNum(self, index):
        bx, by = index
        return (bx * self.nb + by) * charm.numPes() // (self.nb * self.nb)


class Block(Chare):
    def __init__(self, rows, cols, nb):
        self.bx, self.by = self.thisIndex
        self.u = np.zeros((rows + 2, cols + 2))
        if self.bx == 0:
            self.u[0, :] = 1.0          # the hot top edge of the whole grid
        self.iter = 0
        self.got = 0
        self.nbrs = [(self.bx + dx, self.by + dy)
                     for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1))
                     if 0 <= self.bx + dx < nb and 0 <= self.by + dy < nb]

    @coro
    def run(self, iters, done):
        u = self.u
        delta = 0.0
        for _ in range(iters):
            for (x, y) in self.nbrs:
                if x < self.bx:
                    edge, side = u[1, 1:-1], 0          # my top row is its bottom halo
                elif x > self.bx:
                    edge, side = u[-2, 1:-1], 1
                elif y < self.by:
                    edge, side = u[1:-1, 1], 2
                else:
                    edge, side = u[1:-1, -2], 3
                self.thisProxy[x, y].halo(self.iter, side, edge.copy())
            self.wait("self.got == len(self.nbrs)")
            self.got = 0
            new = 0.25 * (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:])
            delta = float(np.abs(new - u[1:-1, 1:-1]).max())
            u[1:-1, 1:-1] = new
            self.iter += 1
        self.contribute(delta, Reducer.max, done)

    @when("self.iter == it")
    def halo(self, it, side, edge):
        u = self.u
        if side == 0:
            u[-1, 1:-1] = edge
        elif side == 1:
            u[0, 1:-1] = edge
        elif side == 2:
            u[1:-1, -1] = edge
        else:
            u[1:-1, 0] = edge
        self.got += 1


def jacobi(opts):
    grid, nb = int(opts["grid"]), int(opts["blocks"])
    if grid % nb:
        common.fail(f"the grid ({grid}) must be a multiple of the blocks per side ({nb})")
    blocks = Array(Block, (nb, nb), args=[grid // nb, grid // nb, nb],
                   map=Group(RowMap, args=[nb]))
    charm.awaitCreation(blocks)
    if opts["check"]:
        # exactly `check` iterations from the start: the max change must be
        # the same for every system (the driver compares them in --smoke)
        f = Future()
        blocks.run(int(opts["check"]), f)
        emit("jacobi_check", [f.get()], "max change", grid=grid, iters=int(opts["check"]))
        return
    deltas = []

    def batch(k):
        f = Future()
        t0 = now()
        blocks.run(k, f)
        deltas.append(f.get())
        return now() - t0
    k, vals = measure(batch, lambda k, t: t / k * 1e3, start=2)
    log(f"last max change {deltas[-1]:.6e} after {sum(1 for _ in deltas)} runs")
    emit("jacobi", vals, "ms", grid=grid, blocks=nb * nb, iters=k)


# ---- create: cost and memory of n array elements -----------------------------------
class Empty(Chare):
    pass


class Probe(Chare):
    def rss(self):
        gc.collect()
        return common.rss()


def create(opts):
    n = int(opts["n"])
    probes = Group(Probe)
    charm.awaitCreation(probes)
    small = Array(Empty, 1000)                  # warm-up of the creation path
    charm.awaitCreation(small)
    r0 = sum(probes.rss(ret=True).get())
    t0 = now()
    arr = Array(Empty, n)
    charm.awaitCreation(arr)
    t = now() - t0
    r1 = sum(probes.rss(ret=True).get())
    # one launch is one figure: created once, measured once
    emit("create", [t], "s", n=n)
    emit("create_mem", [(r1 - r0) / n], "B", n=n)
    del arr


def main(args):
    modes = {"latency": latency, "chanlat": chanlat, "rate": rate, "bw": bw, "bcast": bcast,
             "secbcast": secbcast,
             "jacobi": jacobi, "create": create}
    mode, opts = common.parse_args(args[1:], sizes="", window="", n="1000",
                                   grid="2048", blocks="4", check="")
    if mode not in modes:
        common.fail(f"unknown mode {mode!r} (one of {', '.join(modes)})")
    log(f"{LIB} {mode} on {charm.numPes()} PEs")
    if os.environ.get("SUITE_PROFILE"):
        # cProfile of PE 0's Python work (entry methods included), to stderr
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.runcall(modes[mode], opts)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    else:
        modes[mode](opts)
    charm.exit(0)


charm.start(main)
