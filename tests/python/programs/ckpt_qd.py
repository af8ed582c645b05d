"""A user's quiescence waiter while a checkpoint is taken. Usage:
    ckpt_qd.py DIR              a group member on the last PE asks for
                                quiescence (charm.startQD), to bump every
                                element of an array (and a single chare) then;
                                main takes a checkpoint into DIR right after. The
                                checkpoint is taken at quiescence first, the
                                waiter is told at the next one: every counter
                                is 0 in the checkpoint and 1 at the end
    ckpt_qd.py +restart DIR     every element's counter is 0 (none half bumped)
"""
from charmpy import *

N = 24
LIVE = [False]     # this process ran run() (a restart does not)


class Cell(Chare):
    def __init__(self):
        self.n = 0

    def bump(self):
        self.n += 1

    def count(self):
        return self.n


class Waiter(Chare):
    def arm(self, cells, single):
        # Asked before the checkpoint is: first in line at quiescence.
        self.cells, self.single = cells, single
        charm.startQD(self.bump_all)
        return True

    def bump_all(self):
        for i in range(N):
            self.cells[i].bump()
        self.single.bump()


class Main(Chare):
    def __init__(self, args):
        self.dir = [a for a in args[1:] if not a.startswith("+")][-1]
        self.cells = Array(Cell, N)
        self.single = Chare(Cell, onPE=charm.numPes() // 2)
        self.waiters = Group(Waiter)
        charm.awaitCreation(self.cells, self.single, self.waiters)
        self.thisProxy.run()

    @coro
    def run(self):
        LIVE[0] = True
        self.waiters[charm.numPes() - 1].arm(self.cells, self.single, ret=True).get()
        charm.checkpoint(self.dir, self.thisProxy.resume)
        # The waiter is told at the quiescence after the checkpoint (with the
        # first of these), its bumps are done by the next one.
        charm.waitQD()
        charm.waitQD()
        got = self.cells.count(ret=True).get() + [self.single.count(ret=True).get()]
        assert got == [1] * (N + 1), got
        print("counters", got)
        print("OK ckpt_qd")
        charm.exit()

    @coro
    def resume(self):
        if LIVE[0]:
            return
        got = self.cells.count(ret=True).get() + [self.single.count(ret=True).get()]
        print("restarted with counters", got)
        assert got == [0] * (N + 1), ("the checkpoint has work the waiter started", got)
        print("OK ckpt_qd")
        charm.exit()


charm.start(Main)
