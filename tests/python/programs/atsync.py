"""AtSync: an array created with useAtSync=True whose elements iterate and
call self.AtSync() every SYNC_EVERY iterations; the runtime calls
resumeFromSync() on each of them once every element has called AtSync (no
chare moves yet), and they continue. A checker chare records the arrivals:
each element reports (awaitably) before it calls AtSync, and again once
resumed, when every element of that round must have arrived.

Usage: atsync.py [NITERS]
"""
import sys

from charmpy import *

NITERS = int(sys.argv[1]) if len(sys.argv) > 1 else 12
SYNC_EVERY = 3


class Checker(Chare):
    def __init__(self, n):
        self.n = n
        self.arrived = {}      # round -> indices that called AtSync
        self.resumed = {}      # round -> indices resumed
        self.problems = []

    def arrive(self, index, rnd):
        self.arrived.setdefault(rnd, set()).add(index)

    def resume(self, index, rnd):
        got = self.arrived.get(rnd, set())
        if len(got) != self.n:
            self.problems.append(f"element {index} resumed in round {rnd} when only "
                                 f"{sorted(got)} of {self.n} had called AtSync")
        done = self.resumed.setdefault(rnd, [])
        if index in done:
            self.problems.append(f"element {index} resumed twice in round {rnd}")
        done.append(index)

    def report(self):
        return self.problems, {r: len(v) for r, v in self.resumed.items()}


class Worker(Chare):
    def __init__(self, checker):
        self.checker = checker
        self.it = 0
        self.acc = 0
        self.round = 0
        self.resumes = 0
        self.reported = 0
        self.pe_at_sync = None

    @coro
    def step(self, done):
        i = self.thisIndex[0]
        if self.reported < self.resumes:
            self.checker.resume(i, self.round, awaitable=True).get()
            self.reported = self.resumes
        while self.it < NITERS:
            self.it += 1
            self.acc += i * self.it
            # Uneven work: some elements reach the sync point much later.
            if i % 3 == 0:
                charm.sleep(0.002 * (i % 5))
            if self.it % SYNC_EVERY == 0 and self.it < NITERS:
                self.round += 1
                self.checker.arrive(i, self.round, awaitable=True).get()
                self.done = done
                self.pe_at_sync = charm.myPe()
                self.AtSync()
                return          # resumeFromSync continues
        self.contribute([self.acc, self.resumes, 1], Reducer.sum, done)

    def resumeFromSync(self):
        assert charm.myPe() == self.pe_at_sync     # no chare moves yet
        self.resumes += 1
        self.thisProxy[self.thisIndex].step(self.done)


def main(args):
    P = charm.numPes()
    n = 3 * P + 1
    checker = Chare(Checker, args=[n], onPE=P - 1)
    workers = Array(Worker, n, args=[checker], useAtSync=True)
    charm.awaitCreation(checker, workers)
    done = Future()
    workers.step(done)
    acc, resumes, count = done.get()
    rounds = (NITERS - 1) // SYNC_EVERY
    assert count == n
    assert acc == sum(i * it for i in range(n) for it in range(1, NITERS + 1)), acc
    assert resumes == n * rounds, (resumes, n * rounds)
    problems, resumed = checker.report(ret=True).get()
    assert not problems, "\n".join(problems)
    assert resumed == {r: n for r in range(1, rounds + 1)}, resumed
    print("rounds", rounds)
    print("OK atsync")
    charm.exit()


charm.start(main)
