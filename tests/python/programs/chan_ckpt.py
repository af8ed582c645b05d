"""Checkpoint/restart of chares holding channels: buffered values, an
unclaimed end, a self channel.
  ckpt_chan.py DIR            run, checkpoint into DIR in the middle, go on
  ckpt_chan.py DIR +restart DIR
"""
import sys
from charmpy import Array, Chare, Channel, charm, coro


class E(Chare):
    def __init__(self):
        self.ch = None
        self.ch2 = None
        self.me = None

    def phase1(self):
        i = self.thisIndex[0]
        peer = self.thisProxy[1 - i]
        self.ch = Channel(self, remote=peer)
        self.me = Channel(self, remote=self.thisProxy[i])
        self.me.send("self", 0)
        if i == 0:
            for k in range(5):
                self.ch.send("a", k)
            self.ch2 = Channel(self, remote=peer)   # peer's 2nd end not made yet
            for k in range(3):
                self.ch2.send("b", k)

    @coro
    def phase2(self):
        i = self.thisIndex[0]
        peer = self.thisProxy[1 - i]
        assert self.me.recv() == ("self", 0)
        if i == 1:
            got = [self.ch.recv() for _ in range(5)]
            assert got == [("a", k) for k in range(5)], got
            self.ch2 = Channel(self, remote=peer)   # claims the unclaimed end
            got = [self.ch2.recv() for _ in range(3)]
            assert got == [("b", k) for k in range(3)], got
            self.ch.send("back")
            self.ch2.send("back2")
        else:
            assert self.ch.recv() == "back"
            assert self.ch2.recv() == "back2"
        self.me.send("self", 1)
        assert self.me.recv() == ("self", 1)
        return "ok"


class Main(Chare):
    def __init__(self, args):
        self.path = args[1]
        self.run()

    @coro
    def run(self):
        self.arr = Array(E, 2)
        for i in (0, 1):
            self.arr[i].phase1(awaitable=True).get()
        charm.checkpoint(self.path, self.thisProxy.resume)

    @coro
    def resume(self):
        fs = [self.arr[i].phase2(ret=True) for i in (0, 1)]
        print([f.get() for f in fs])
        print("OK chan_ckpt")
        charm.exit()


charm.start(Main)
