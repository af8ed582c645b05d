"""A coroutine loop gated by @when messages (issue 9, section 1: the hang).

An array of 8 chares per PE. Each element's @coro method `run` loops
`for self.step in range(NSTEPS)`: it sends one message to each of its 6
neighbours (index +-1, +-2, +-3 modulo n) to the @when('self.step == step')
method `recv`, then waits until its own 6 messages of that step arrived.
The state that opens the held messages (self.step) changes in the coroutine,
after it resumes, so held messages must be re-examined then.

Usage: when_coro.py VARIANT [NSTEPS]
    future  recv counts to 6 and calls self.gate() (a Future of the element)
    remote  recv forwards the gate to a helper group member on another PE,
            which fulfils it (the coroutine is resumed by a remote message)
    timer   as future, and the loop ends each step with charm.sleep(0), so the
            coroutine that changes self.step was resumed by a timer
    wait    no Future: the coroutine waits with self.wait('self.count == 6')
At the end every element contributes [index, messages received] with Reducer.sum to a Future that main checks.
"""
import sys

from charmpy import *

VARIANT = sys.argv[1]
NSTEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
PER_PE = 8
OFFSETS = (1, -1, 2, -2, 3, -3)
assert VARIANT in ("future", "remote", "timer", "wait"), VARIANT


class Helper(Chare):
    def fire(self, gate, step):
        assert charm.myPe() == self.thisIndex
        gate(step)


class Worker(Chare):
    def __init__(self, n, helpers):
        self.n = n
        self.helpers = helpers
        self.step = -1
        self.count = 0
        self.received = 0
        self.gate = None

    @coro
    def run(self, done):
        me = self.thisIndex[0]
        for self.step in range(NSTEPS):
            if VARIANT != "wait":
                self.gate = Future()
            for d in OFFSETS:
                self.thisProxy[(me + d) % self.n].recv(self.step, me)
            if VARIANT == "wait":
                self.wait("self.count == 6")
                assert self.count == 6, self.count
                self.count = 0
            else:
                got = self.gate.get()
                assert got == self.step, (got, self.step)
            if VARIANT == "timer":
                charm.sleep(0)
        self.contribute([me, self.received], Reducer.sum, done)

    @when("self.step == step")
    def recv(self, step, sender):
        assert step == self.step, (step, self.step)
        assert (self.thisIndex[0] - sender) % self.n in {d % self.n for d in OFFSETS}
        self.count += 1
        self.received += 1
        if VARIANT != "wait" and self.count == 6:
            self.count = 0
            if VARIANT == "remote":
                other = (charm.myPe() + 1) % charm.numPes()
                self.helpers[other].fire(self.gate, step)
            else:
                self.gate(step)


def main(args):
    P = charm.numPes()
    n = PER_PE * P
    helpers = Group(Helper)
    workers = Array(Worker, n, args=[n, helpers])
    charm.awaitCreation(helpers, workers)
    done = Future()
    workers.run(done)
    total_index, received = done.get()
    assert total_index == n * (n - 1) // 2, (total_index, n)
    assert received == 6 * n * NSTEPS, (received, 6 * n * NSTEPS)
    print("OK when_coro")
    charm.exit()


charm.start(main)
