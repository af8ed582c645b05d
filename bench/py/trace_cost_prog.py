"""A fixed number of entry-method calls on one PE, for counting the
instructions a message costs (bench/py/trace_cost.py runs it under
valgrind): `pingpong N` (two chares call each other N times) or `storm N`
(one chare calls another N times, 64 in flight, acknowledged per 64)."""
import sys

from charmpy import Chare, Future, charm


class End(Chare):
    def setup(self, other):
        self.other = other
        self.count = 0

    def ping(self, left, done):
        if left:
            self.other.ping(left - 1, done)
        else:
            done.send(0)

    def storm(self, n, done):
        self.done, self.left = done, n
        self.window()

    def window(self):
        for _ in range(64):
            self.other.take(1)

    def take(self, x):
        self.count += 1
        if self.count == 64:
            self.count = 0
            self.other.ack()

    def ack(self):
        self.left -= 64
        if self.left > 0:
            self.window()
        else:
            self.done.send(0)


def main(args):
    kind, n = args[1], int(args[2])
    a, b = Chare(End, onPE=0), Chare(End, onPE=0)
    charm.awaitCreation(a, b)
    a.setup(b, awaitable=True).get()
    b.setup(a, awaitable=True).get()
    f = Future()
    if kind == "pingpong":
        a.ping(n, f)
    else:
        a.storm(n, f)
    f.get()
    charm.exit()


charm.start(main)
