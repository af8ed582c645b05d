"""Quiescence detection from Python: charm.startQD(target), charm.waitQD().
When it fires, everything sent before must have been processed. Usage:
qd.py MODE

  burst    chains of calls hopping between array elements on every PE
           (some with @when held for a moment, some through coroutines)
  timers   work that continues after charm.sleep and scheduleCallableAfter
  held     messages to a sparse element that is inserted only 0.3 s later
           (from a timer), and to an array whose ArrayMap is not there yet
  targets  startQD with an entry method and with a future, from several
           chares at once on every PE; each is answered once
"""
import random
import sys

from charmpy import *

MODE = sys.argv[1]
HOPS = 30


class Hopper(Chare):
    def __init__(self, n):
        self.n = n
        self.seen = 0
        self.gate = 0

    def hop(self, left, seed):
        self.seen += 1
        if left:
            rng = random.Random(seed)
            to = rng.randrange(self.n)
            if rng.random() < 0.2:
                self.thisProxy[to].gated_hop(left - 1, rng.random(), 0)
            elif rng.random() < 0.2:
                self.thisProxy[to].coro_hop(left - 1, rng.random())
            else:
                self.thisProxy[to].hop(left - 1, rng.random())

    @when("self.gate >= g")
    def gated_hop(self, left, seed, g):
        self.hop(left, seed)

    @coro
    def coro_hop(self, left, seed):
        charm.sleep(0)
        self.hop(left, seed)

    @coro
    def sleepy(self, secs, left):
        charm.sleep(secs)
        self.hop(left, self.thisIndex[0])

    def later(self, secs, left):
        charm.scheduleCallableAfter(self.hop, secs, args=[left, secs])

    def count(self, f):
        self.contribute(self.seen, Reducer.sum, f)


class Late(Chare):
    def __init__(self):
        self.got = []

    def take(self, x):
        self.got.append(x)

    def count(self, f):
        self.contribute(len(self.got), Reducer.sum, f)


class Mapped(ArrayMap):
    def procNum(self, index):
        return (index[0] + 1) % charm.numPes()


class Notified(Chare):
    def __init__(self):
        self.notes = 0

    def quiet(self):
        self.notes += 1

    @coro
    def ask(self, n, done):
        futs = [Future() for _ in range(n)]
        for f in futs:
            charm.startQD(f)
        charm.startQD(self.thisProxy[self.thisIndex].quiet)
        charm.wait(futs)
        done(self.thisIndex)

    def notes_seen(self):
        return self.notes


def total(arr):
    f = Future()
    arr.count(f)
    return f.get()


def main(args):
    P = charm.numPes()
    n = 4 * P
    if MODE == "burst":
        a = Array(Hopper, n, args=[n])
        charm.awaitCreation(a)
        for round_ in range(3):
            starts = 2 * n
            for i in range(starts):
                a[i % n].hop(HOPS, i * 7919 + round_)
            charm.waitQD()
            assert total(a) == (round_ + 1) * starts * (HOPS + 1), total(a)
    elif MODE == "timers":
        a = Array(Hopper, n, args=[n])
        charm.awaitCreation(a)
        for i in range(n):
            a[i].sleepy(0.05 + 0.01 * (i % 5), 5)
            a[i].later(0.1, 5)
        charm.waitQD()
        assert total(a) == 2 * n * 6, total(a)
    elif MODE == "held":
        s = Array(Late, ndims=1)
        for k in range(10):
            s[3].take(k)                      # element 3 does not exist yet
        charm.scheduleCallableAfter(lambda: s.ckInsert(3, onPE=P - 1), 0.3)
        m = Group(Mapped)
        b = Array(Late, ndims=1, map=m)       # the map is not here yet
        b.ckInsert(0)
        for k in range(5):
            b[0].take(k)
        charm.waitQD()
        s.ckDoneInserting()
        b.ckDoneInserting()
        charm.waitQD()
        assert total(s) == 10, total(s)
        assert total(b) == 5, total(b)
    elif MODE == "targets":
        g = Group(Notified)
        charm.awaitCreation(g)
        done = Future(P)
        g.ask(3, done)
        got = done.get()
        assert sorted(got if P > 1 else [got]) == list(range(P)), got
        charm.waitQD()
        assert g.notes_seen(ret=True).get() == [1] * P, g.notes_seen(ret=True).get()
    else:
        raise SystemExit(f"unknown mode {MODE}")
    print("OK qd")
    charm.exit()


charm.start(main)
