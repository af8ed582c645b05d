"""Load balancing at AtSync. Usage: lb.py MODE [+balancer NAME] [+LBDebug 1]

  placed   loads given by setLoad (so the table is known): after each step
           every element is on the PE the strategy chose for that table
           (the same strategy run here, _charmpy.lb_place), its state and
           calls intact; setMigratable(False) pins; charm.lbStats() has one
           record per step with the strategy's figures (strategy from
           +balancer, default GreedyLB via charm.options.balancer)
  rotate   a 1-D stencil (each element averages with its neighbours every
           step, by messages) with RotateLB at every step: every element
           moves one PE on each step and the result equals the serial one
  measured elements whose entry methods take time growing with the index
           (busy loops) under GreedyLB: the loads are measured, the first
           step finds the block placement imbalanced and moves chares, and
           the next step measures less imbalance than the first
  periodic +LBPeriod 0.02 with RotateLB (charm.options): tokens circle a
           ring of elements (no AtSync) while every element moves one PE on
           every period; each element gets its calls exactly once (not in
           order: a sender that moves between two calls sends them from two
           PEs, and the order guarantee is per sending PE), the steps are in
           charm.lbStats(), elements visited several PEs, and charm.waitQD()
           returns (the period's timer does not hold quiescence back)
  background GreedyLB on equal elements while a group member on PE 1 burns
           time outside them (background load): from the second step (the
           first measures it) PE 1 is given fewer elements than PE 0, and
           lbStats() shows the background of each PE
  coroload  a coroutine entry method's time after its suspension counts in
           its chare's load (it is measured when it resumes)
  comm     GreedyCommLB on an array whose elements talk in pairs (i, i + n/2)
           placed on different PEs: after a step every pair is on one PE
           (at more than 4 PEs on this 2-core machine, 3 in 4 at least: the
           PEs' measured background, inflated by time slicing, can outweigh
           a pair's calls), and lbStats() counts the edges
  whenload GreedyLB on elements whose work runs in a @when method released
           later, or after self.wait() in a coroutine: that time counts in
           their loads (not as PE background), the heavy ones end up spread
           over the PEs, and none is stuck as "could not move now"
  corocomm GreedyCommLB records the calls a coroutine makes after it
           resumed, not only before its suspension
  stays    under RotateLB, an element that cannot be pickled stays (and
           says why on stderr) and one whose coroutine is suspended stays;
           the others move and the program goes on
"""
import os
import sys
import threading
import time

from charmpy import *
from charmpy import _charmpy

MODE = sys.argv[1]
STEPS = 4


class Placed(Chare):
    def __init__(self):
        i = self.thisIndex[0]
        self.value = i * 10
        self.calls = 0
        if i % 5 == 4:
            self.setMigratable(False)

    def step(self, k, done):
        i = self.thisIndex[0]
        self.calls += 1
        self.setLoad(float((i * 7 + k * 3) % 11 + 1))
        self.done = done
        self.AtSync()

    def resumeFromSync(self):
        self.contribute((self.thisIndex[0], charm.myPe(), self.value, self.calls),
                        Reducer.gather, self.done)


def placed(P):
    n = 4 * P + 3
    a = Array(Placed, n, useAtSync=True)
    charm.awaitCreation(a)
    where = [i * P // n for i in range(n)]    # the block map
    for k in range(STEPS):
        loads = [float((i * 7 + k * 3) % 11 + 1) for i in range(n)]
        table = [(where[i], loads[i], i % 5 != 4) for i in range(n)]
        want, _ = _charmpy.lb_place(charm.options.balancer or charm_flag(), table, P, seed=k + 1)
        done = Future()
        a.step(k, done)
        got = done.get()
        assert [g[0] for g in got] == list(range(n)), got
        assert [g[1] for g in got] == want, (k, [g[1] for g in got], want)
        assert all(g[2] == g[0] * 10 and g[3] == k + 1 for g in got), got
        assert all(got[i][1] == where[i] for i in range(n) if i % 5 == 4), "a pinned chare moved"
        where = want
    stats = charm.lbStats()
    assert len(stats) == STEPS, stats
    for s in stats:
        assert s["chares"] == n and s["moves"] >= 0 and s["stayed"] == 0, s
        if s["strategy"] not in ("RandCentLB", "RotateLB"):   # they do not balance
            assert s["max_after"] <= s["max_before"] + 1e-9, s
    print("moves", [s["moves"] for s in stats])


def charm_flag():
    return charm._flags.get("+balancer")


class Cell(Chare):
    def __init__(self, n):
        self.n = n
        self.v = float(self.thisIndex[0] ** 2)
        self.pes = []
        self.got = {}

    def start(self, k, done):
        self.done = done
        i = self.thisIndex[0]
        self.pes.append(charm.myPe())
        for j in (i - 1, i + 1):
            if 0 <= j < self.n:
                self.thisProxy[j].halo(k, self.v)
        self.try_update(k)

    def halo(self, k, v):
        self.got.setdefault(k, []).append(v)
        self.try_update(k)

    def try_update(self, k):
        i = self.thisIndex[0]
        need = (i > 0) + (i < self.n - 1)
        if len(self.got.get(k, ())) == need and len(self.pes) == k + 1:
            vals = self.got.pop(k)
            self.v = (self.v + sum(vals)) / (1 + need)
            self.AtSync()

    def resumeFromSync(self):
        self.contribute((self.thisIndex[0], self.v, self.pes), Reducer.gather, self.done)


def rotate(P):
    n = 3 * P + 2
    a = Array(Cell, n, args=[n], useAtSync=True)
    charm.awaitCreation(a)
    ref = [float(i ** 2) for i in range(n)]
    for k in range(STEPS):
        done = Future()
        a.start(k, done)
        got = done.get()
        ref = [(ref[i] + sum(ref[j] for j in (i - 1, i + 1) if 0 <= j < n)) /
               (1 + (i > 0) + (i < n - 1)) for i in range(n)]
        assert [g[1] for g in got] == ref, (k, got, ref)
    first = [i * P // n for i in range(n)]
    for i, _, pes in got:
        assert pes == [(first[i] + k) % P for k in range(STEPS)], (i, pes, first[i])
    stats = charm.lbStats()
    assert [s["moves"] for s in stats] == [n if P > 1 else 0] * STEPS, stats


class Busy(Chare):
    def work(self, k, done):
        i = self.thisIndex[0]
        end = time.perf_counter() + 0.002 * (i + 1)
        while time.perf_counter() < end:
            pass
        self.done = done
        self.AtSync()

    def resumeFromSync(self):
        self.contribute(None, Reducer.nop, self.done)


def measured(P):
    n = 4 * P
    a = Array(Busy, n, useAtSync=True)
    charm.awaitCreation(a)
    for k in range(2):
        done = Future()
        a.work(k, done)
        done.get()
    s1, s2 = charm.lbStats()
    r1, r2 = s1["max_before"] / s1["avg"], s2["max_before"] / s2["avg"]
    print(f"max/avg measured: step 1 {r1:.3f}, step 2 {r2:.3f}; moves {s1['moves']}")
    if P > 1:
        assert r1 > 1.3 and s1["moves"] > 0, s1
        assert r2 < r1, (s1, s2)


class Even(Chare):
    def work(self, done):
        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:
            pass
        self.done = done
        self.AtSync()

    def resumeFromSync(self):
        self.contribute(charm.myPe(), Reducer.gather, self.done)


class Burner(Chare):
    def burn(self, secs):
        if charm.myPe() == 1:
            end = time.perf_counter() + secs
            while time.perf_counter() < end:
                pass


def background(P):
    n = 8
    a = Array(Even, n, useAtSync=True)
    g = Group(Burner)
    charm.awaitCreation(a, g)
    for k in range(3):
        g.burn(0.024)
        done = Future()
        a.work(done)
        pes = done.get()
    stats = charm.lbStats()
    bg = [s["background"] for s in stats]
    print("background per step", bg, "elements per PE", [pes.count(p) for p in range(P)])
    assert bg[0] is None, bg   # the first step measures it
    assert all(b is not None and len(b) == P for b in bg[1:]), bg
    assert bg[1][1] > 0.015 and bg[1][1] > 2 * bg[1][0], bg
    # PE 1 had 24 ms of background per step and the elements 2 ms each:
    # GreedyLB leaves it fewer of them than PE 0.
    assert pes.count(1) < pes.count(0), pes


class CoroBusy(Chare):
    @coro
    def work(self, f):
        f.get()                      # suspends until main sends
        end = time.perf_counter() + 0.03
        while time.perf_counter() < end:
            pass
        return True

    def load(self):
        return _charmpy.lb_take(self)


def coroload(P):
    a = Array(CoroBusy, 1)
    charm.awaitCreation(a)
    f = Future()
    r = a[0].work(f, ret=True)
    a[0].load(ret=True).get()        # what ran before the suspension: taken
    f.send(None)
    assert r.get()
    load = a[0].load(ret=True).get()
    print(f"coroutine load after its suspension: {load * 1e3:.1f} ms")
    assert load >= 0.03, load


class Talker(Chare):
    def __init__(self, n):
        self.n = n
        self.got = 0

    def talk(self, done):
        partner = (self.thisIndex[0] + self.n // 2) % self.n
        blob = bytes(10000)
        for _ in range(200):   # talk costs more than the (noisy) load differences
            self.thisProxy[partner].hear(blob)
        self.done = done
        self.AtSync()

    def hear(self, blob):
        self.got += len(blob)

    def resumeFromSync(self):
        self.contribute((self.thisIndex[0], charm.myPe()), Reducer.gather, self.done)


def comm(P):
    n = 4 * P
    a = Array(Talker, n, args=[n], useAtSync=True)
    charm.awaitCreation(a)
    for k in range(2):
        done = Future()
        a.talk(done)
        where = dict(done.get())
    pairs = [(where[i], where[i + n // 2]) for i in range(n // 2)]
    print("pairs on PEs", pairs, "edges", [s["edges"] for s in charm.lbStats()])
    assert all(s["edges"] == n for s in charm.lbStats()), charm.lbStats()
    together = sum(p == q for p, q in pairs)
    cores = os.cpu_count() or 1
    if P <= cores:
        assert together == len(pairs), pairs
    else:   # oversubscribed: a preempted element's measured time is noise of the
        # order of a pair's calls (8 PEs on 2 cores: 11 of 16 together once in 30
        # runs; 4 ranks under mpirun over tcp: 4 of 8 once); placement blind to
        # communication puts a pair together 1 time in P
        assert together >= len(pairs) // 2, pairs


def _burn(secs):
    end = time.perf_counter() + secs
    while time.perf_counter() < end:
        pass


class WhenWork(Chare):
    def __init__(self):
        self.k = -1

    def go(self, k):
        self.k = k

    @when("self.k == k")
    def work(self, k, done):
        _burn(0.010 if self.thisIndex[0] >= 4 else 0.001)
        self.done = done
        self.AtSync()

    def resumeFromSync(self):
        self.contribute((self.thisIndex[0], charm.myPe()), Reducer.gather, self.done)


class WaitWork(WhenWork):
    @coro
    def work(self, k, done):
        self.wait("self.k == %d" % k)
        _burn(0.010 if self.thisIndex[0] >= 4 else 0.001)
        self.done = done
        self.AtSync()


def whenload(P):
    for cls in (WhenWork, WaitWork):
        a = Array(cls, 8, useAtSync=True)
        charm.awaitCreation(a)
        first = len(charm.lbStats())
        for k in range(3):
            done = Future()
            a.work(k, done)
            time.sleep(0.01)
            a.go(k)
            where = dict(done.get())
        stats = charm.lbStats()[first:]
        heavy = [where[i] for i in range(4, 8)]
        print(cls.__name__, "heavy elements on PEs", heavy,
              "stayed", [s["stayed"] for s in stats])
        assert all(s["stayed"] == 0 for s in stats), stats
        if P > 1:   # 4 heavy elements: balanced, 2 a PE (at 2 PEs)
            assert max(heavy.count(p) for p in range(P)) <= 4 // P + 1, heavy


class CoroTalker(Chare):
    @coro
    def go(self, f):
        self.thisProxy[2].hear(b"x" * 1000)     # before the suspension
        f.get()
        self.thisProxy[3].hear(b"x" * 1000)     # after it
        return sorted(k for _, k in _charmpy.lb_take_comm(self))

    def hear(self, b):
        pass


def corocomm(P):
    a = Array(CoroTalker, 4)
    charm.awaitCreation(a)
    f = Future()
    r = a[0].go(f, ret=True)
    charm.sleep(0.05)
    f.send(None)
    got = r.get()
    assert got == [(2,), (3,)], got


class Odd(Chare):
    def __init__(self):
        if self.thisIndex[0] == 1:
            self.lock = threading.Lock()
        self.sleeping = None

    @coro
    def nap(self, f):
        self.sleeping = Future()
        f.send(charm.myPe())
        self.sleeping.get()

    def wake(self):
        self.sleeping.send(None)

    def step(self, done):
        self.done = done
        self.AtSync()

    def resumeFromSync(self):
        self.contribute((self.thisIndex[0], charm.myPe()), Reducer.gather, self.done)


def stays(P):
    n = 2 * P + 2
    a = Array(Odd, n, useAtSync=True)
    charm.awaitCreation(a)
    first = [i * P // n for i in range(n)]
    f = Future()
    a[2].nap(f)
    assert f.get() == first[2]
    done = Future()
    a.step(done)
    got = dict(done.get())
    a[2].wake()
    stay = {1, 2}
    for i in range(n):
        want = first[i] if i in stay else (first[i] + 1) % P
        assert got[i] == want, (i, got[i], want)
    s = charm.lbStats()[0]
    assert s["stayed"] == (2 if P > 1 else 0) and s["moves"] == (n - 2 if P > 1 else 0), s


class Ring(Chare):
    def __init__(self, n):
        self.n = n
        self.next_from = 0       # calls from the left neighbour so far
        self.sent = 0
        self.got = []            # their numbers, in arrival order
        self.pes = {charm.myPe()}

    def token(self, seq, hops, done):
        self.got.append(seq)
        self.next_from += 1
        self.pes.add(charm.myPe())
        end = time.perf_counter() + 0.0002
        while time.perf_counter() < end:
            pass
        if hops == 0:
            done.send(None)
            return
        self.thisProxy[(self.thisIndex[0] + 1) % self.n].token(self.sent, hops - 1, done)
        self.sent += 1

    def kick(self, hops, done):
        self.thisProxy[(self.thisIndex[0] + 1) % self.n].token(self.sent, hops, done)
        self.sent += 1

    def report(self):
        return (self.thisIndex[0], self.got, self.next_from, self.sent, sorted(self.pes))


def periodic(P):
    n, tokens, hops = 2 * P + 1, 3, 600
    a = Array(Ring, n, args=[n])
    charm.awaitCreation(a)
    # Each token starts at a different element; numbers are per sender, so
    # the tokens share each element's counter (a token's first call is
    # sent by main, numbered by the element before it).
    done = [Future() for _ in range(tokens)]
    t0 = time.perf_counter()
    for k in range(tokens):
        a[(k - 1) % n].kick(hops, done[k])
    for f in done:
        f.get()
    charm.waitQD()
    reps = a.report(ret=True).get()
    # Exactly once: each element got the numbers its left neighbour sent.
    assert all(sorted(r[1]) == list(range(reps[(r[0] - 1) % n][3])) for r in reps), reps
    assert sum(r[2] for r in reps) == tokens * (hops + 1), (sum(r[2] for r in reps), reps)
    assert [r[2] for r in reps] == [reps[(i - 1) % n][3] for i in range(n)], reps
    stats = [s for s in charm.lbStats() if s["periodic"]]
    took = time.perf_counter() - t0
    print(f"{len(stats)} periodic steps in {took:.2f} s; PEs visited",
          [len(r[4]) for r in reps])
    if P > 1:
        assert len(stats) >= 2, (stats, took)
        assert all(s["moves"] == n for s in stats), stats
        assert max(len(r[4]) for r in reps) >= 2, reps


def main(args):
    P = charm.numPes()
    {"placed": placed, "rotate": rotate, "measured": measured, "stays": stays,
     "background": background, "coroload": coroload, "comm": comm,
     "whenload": whenload, "corocomm": corocomm,
     "periodic": periodic}[MODE](P)
    print("OK lb")
    charm.exit()


if MODE == "placed" and "+balancer" not in sys.argv:
    charm.options.balancer = "GreedyLB"
if MODE in ("rotate", "stays", "periodic"):
    charm.options.balancer = "RotateLB"
if MODE == "periodic":
    charm.options.lb_period = 0.02
if MODE in ("measured", "background", "coroload", "whenload"):
    charm.options.balancer = "GreedyLB"
if MODE in ("comm", "corocomm"):
    charm.options.balancer = "GreedyCommLB"
charm.start(main)
