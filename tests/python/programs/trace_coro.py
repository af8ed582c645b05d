"""A coroutine entry method that works after each resume (5 x 3 ms), woken
by another entry method of its chare (self.wait on what the call sets),
called from another PE: the trace must count that time as busy (the
resumed part runs in the handler of the message that woke it, after that
message's entry method). Args: the trace file (charm.options.trace)."""
import sys
import time

from charmpy import Chare, charm, coro

ROUNDS, BUSY = 5, 0.003


def spin(secs):
    end = time.perf_counter() + secs
    while time.perf_counter() < end:
        pass


class Answerer(Chare):
    def answer(self, worker, k):
        worker.poke(k)


class Worker(Chare):
    def __init__(self):
        self.got = 0

    def poke(self, k):
        self.got = k + 1

    @coro
    def run(self, other):
        for k in range(ROUNDS):
            other.answer(self.thisProxy, k)
            self.wait("self.got > %d" % k)
            spin(BUSY)
        return ROUNDS


def main(args):
    last = charm.numPes() - 1
    w = Chare(Worker, onPE=last)
    a = Chare(Answerer, onPE=0)
    charm.awaitCreation(w, a)
    assert w.run(a, ret=True).get() == ROUNDS
    print("OK trace_coro", flush=True)
    charm.exit()


charm.options.trace = sys.argv[1]
charm.start(main)
