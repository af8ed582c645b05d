"""Channels: a direct, ordered stream between two chares (not built yet)."""
from charmpy import *


class End(Chare):
    def __init__(self):
        pass

    @coro
    def run(self, other, first):
        ch = Channel(self, remote=other)
        if first:
            for i in range(100):
                ch.send(i, str(i))
            return ch.recv()
        got = [ch.recv() for _ in range(100)]
        assert got == [(i, str(i)) for i in range(100)], got[:5]
        ch.send("done")
        return None


def main(args):
    a = Chare(End, onPE=0)
    b = Chare(End, onPE=charm.numPes() - 1)
    fa = a.run(b, True, ret=True)
    fb = b.run(a, False, ret=True)
    assert fb.get() is None and fa.get() == "done"
    import charmpy
    assert set(charmpy.__all__) == {"charm", "Chare", "Group", "Array", "ArrayMap", "Reducer",
                                    "Future", "Channel", "when", "coro", "threaded"}
    print("OK channels")
    charm.exit()


charm.start(main)
