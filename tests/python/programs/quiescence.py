"""Quiescence detection: charm.startQD(target), charm.waitQD() (not built yet)."""
from charmpy import *


class Hop(Chare):
    def hop(self, n):
        if n > 0:
            self.thisProxy[(self.thisIndex[0] + 1) % 4].hop(n - 1)


def main(args):
    a = Array(Hop, 4)
    a[0].hop(200)
    f = Future()
    charm.startQD(f)
    f.get()
    a[1].hop(50)
    charm.waitQD()
    print("OK quiescence")
    charm.exit()


charm.start(main)
