"""Checkpoint/restart. Usage:
    ckpt.py plain                  the whole computation, no checkpoint
    ckpt.py ckpt DIR STEP          checkpoint into DIR after step STEP (resume:
                                   the main chare's resume), then go on
    ckpt.py lock DIR               a chare that cannot be pickled: the
                                   checkpoint is refused naming class, index and
                                   attribute, and the program goes on
    ckpt.py halfred DIR            a reduction only some members contributed to
                                   is under way: the checkpoint is refused saying so
    ckpt.py ANY +restart DIR       (or --restart DIR) start from DIR instead
Every run prints `step K total T` after each step and a final `result ...`:
a restart prints the lines of the steps after the checkpoint, which must be
those of an uninterrupted run, on any number of PEs.

What is saved: the main chare, a dense array whose elements hold numpy
arrays (some of 2 MiB, written to after the restart), an array placed by an ArrayMap, a sparse array (inserted, then
ckDoneInserting), a group, a group constrained to the first and last PEs,
a single chare, a call @when holds until a later step, a chare whose
coroutine waits in self.wait() (the coroutine is not saved: the chare is),
a readonly, a custom reducer.
"""
import sys
import threading

import numpy as np

from charmpy import *
from charmpy import readonlies, when

STEPS = 8
N = 10
MODE = sys.argv[1] if len(sys.argv) > 1 else "plain"
LIVE_LOOP = [False]     # this process runs the loop (not saved: restarts start it)


def biggest(vals):
    return max(vals)


Reducer.addReducer(biggest)


class RoundRobin(ArrayMap):
    def procNum(self, index):
        return (index[0] * 7) % charm.numPes()


class Cell(Chare):
    def __init__(self):
        i = self.thisIndex[0]
        self.v = float(i)
        self.data = np.arange(1000, dtype=np.float64) * i
        # Big enough to be read back into memory mapped for it (>= 1 MiB),
        # and written to after the restart.
        self.big = np.full(1 << 18, float(i)) if i % 4 == 0 else None
        if MODE == "lock" and i == 3:
            self.lock = threading.Lock()

    def work(self, step, f):
        i = self.thisIndex[0]
        self.data += step
        if self.big is not None:
            self.big[step::7] += step
            self.data[0] += float(self.big.sum()) * 1e-9
        self.v = self.v * 0.5 + i + step * readonlies.scale + float(self.data[i]) * 1e-3
        self.contribute((i, self.v), Reducer.gather, f)

    def peak(self, f):
        self.contribute(self.v, Reducer.biggest, f)


class Sparse(Chare):
    def __init__(self, start):
        self.n = start

    def work(self, step, f):
        self.n = self.n * 3 + step
        self.contribute((self.thisIndex[0], self.n), Reducer.gather, f)


class Acc(Chare):
    def __init__(self):
        self.totals = []

    def add(self, t):
        self.totals.append(t)

    def get(self):
        return (len(self.totals), round(sum(self.totals), 6))


class Single(Chare):
    def __init__(self):
        self.hist = []

    def note(self, step, t):
        self.hist.append((step, t))

    def get(self):
        return len(self.hist), round(sum(t for _, t in self.hist), 6)


class Gate(Chare):
    def __init__(self):
        self.ready = False
        self.value = 1

    @when("self.ready")
    def held_call(self, k):
        self.value = self.value * 10 + k

    def open(self):
        self.ready = True

    def get(self):
        return self.value


class Waiter(Chare):
    def __init__(self):
        self.go = False

    @coro
    def sleep_on(self):
        self.wait("self.go")

    def ping(self):
        return "alive"


class Main(Chare):
    def __init__(self, args):
        readonlies.scale = 3
        self.dir = args[2] if len(args) > 2 else None
        self.stop = int(args[3]) if len(args) > 3 else -1
        self.cells = Array(Cell, N)
        self.mapped = Array(Cell, N, map=Group(RoundRobin))
        self.sparse = Array(Sparse, ndims=1)
        for k in (3, 7, 11, 100):
            self.sparse.ckInsert(k, args=[k], onPE=k % charm.numPes())
        self.sparse.ckDoneInserting()
        self.acc = Group(Acc)
        self.single = Chare(Single, onPE=charm.numPes() - 1)
        self.edge = Group(Acc, onPEs=sorted({0, charm.numPes() - 1}))
        self.gate = Chare(Gate, onPE=charm.numPes() // 2)
        self.waiter = Chare(Waiter, onPE=0)
        charm.awaitCreation(self.cells, self.mapped, self.acc, self.single, self.edge,
                            self.gate, self.waiter)
        self.gate.held_call(7)
        self.waiter.sleep_on()
        self.step = 0
        self.thisProxy.loop()

    @coro
    def loop(self):
        LIVE_LOOP[0] = True
        while self.step < STEPS:
            futs = [Future() for _ in range(3)]
            self.cells.work(self.step, futs[0])
            self.mapped.work(self.step, futs[1])
            self.sparse.work(self.step, futs[2])
            a, b, c = (f.get() for f in futs)
            total = round(sum(v for _, v in a) + sum(v for _, v in b) + sum(n for _, n in c), 6)
            self.acc.add(total)
            self.edge.add(total)
            if self.step == 5:
                self.gate.open()
            self.single.note(self.step, total)
            self.step += 1
            print(f"step {self.step} total {total}")
            if MODE == "ckpt" and self.step == self.stop:
                charm.checkpoint(self.dir, self.thisProxy.resume)
            if MODE == "halfred" and self.step == 2:
                self.cells[0].peak(Future())     # the others never contribute
            if MODE in ("lock", "halfred") and self.step == 2:
                try:
                    charm.checkpoint(self.dir, self.thisProxy.resume)
                    print("not refused")
                except RuntimeError as e:
                    print("refused:", e)
                if MODE == "halfred":     # its reductions are out of step now: stop
                    print("OK ckpt")
                    charm.exit()
                    return
        f = Future()
        self.cells.peak(f)
        accs = self.acc.get(ret=True).get()
        assert len(set(accs)) == 1, accs       # every member the same
        edges = self.edge.get(ret=True).get()
        assert len(set(edges)) == 1 and edges[0] == accs[0], (edges, accs)
        assert self.waiter.ping(ret=True).get() == "alive"
        print("result", round(f.get(), 6), accs[0], self.single.get(ret=True).get(),
              self.gate.get(ret=True).get())
        print("OK ckpt")
        charm.exit()

    def resume(self):
        print(f"resumed at step {self.step} on {charm.numPes()} PEs")
        if not LIVE_LOOP[0]:        # a restart: the loop starts again here
            self.thisProxy.loop()


charm.start(Main)
