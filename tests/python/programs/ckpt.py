"""Checkpoint/restart. Usage:
    ckpt.py plain                  the whole computation, no checkpoint
    ckpt.py ckpt DIR STEP          checkpoint into DIR after step STEP (resume:
                                   the main chare's resume), then go on
    ckpt.py lock DIR               a chare that cannot be pickled: the
                                   checkpoint is refused naming class, index and
                                   attribute, and the program goes on
    ckpt.py ANY +restart DIR       (or --restart DIR) start from DIR instead
Every run prints `step K total T` after each step and a final `result ...`:
a restart prints the lines of the steps after the checkpoint, which must be
those of an uninterrupted run, on any number of PEs.

What is saved: the main chare, a dense array whose elements hold numpy
arrays, an array placed by an ArrayMap, a sparse array (inserted, then
ckDoneInserting), a group, a single chare, a readonly, a custom reducer.
"""
import sys
import threading

import numpy as np

from charmpy import *
from charmpy import readonlies

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
        if MODE == "lock" and i == 3:
            self.lock = threading.Lock()

    def work(self, step, f):
        i = self.thisIndex[0]
        self.data += step
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
        charm.awaitCreation(self.cells, self.mapped, self.acc, self.single)
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
            self.single.note(self.step, total)
            self.step += 1
            print(f"step {self.step} total {total}")
            if MODE == "ckpt" and self.step == self.stop:
                charm.checkpoint(self.dir, self.thisProxy.resume)
            if MODE == "lock" and self.step == 2:
                try:
                    charm.checkpoint(self.dir, self.thisProxy.resume)
                    print("not refused")
                except RuntimeError as e:
                    print("refused:", e)
        f = Future()
        self.cells.peak(f)
        accs = self.acc.get(ret=True).get()
        assert len(set(accs)) == 1, accs       # every member the same
        print("result", round(f.get(), 6), accs[0], self.single.get(ret=True).get())
        print("OK ckpt")
        charm.exit()

    def resume(self):
        print(f"resumed at step {self.step} on {charm.numPes()} PEs")
        if not LIVE_LOOP[0]:        # a restart: the loop starts again here
            self.thisProxy.loop()


charm.start(Main)
