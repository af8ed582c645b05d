"""Migration and load balancing: self.migrate(pe), migrated(), messages
following a migrated chare, useAtSync / AtSync / resumeFromSync."""
from charmpy import *


class Mover(Chare):
    def __init__(self):
        self.state = list(range(10))
        self.arrived = False

    def go(self, pe):
        self.migrate(pe)

    def migrated(self):
        self.arrived = True

    def where(self):
        return (charm.myPe(), self.state, self.arrived)


class Balanced(Chare):
    def __init__(self, fut):
        self.fut = fut

    def work(self):
        self.AtSync()

    def resumeFromSync(self):
        self.contribute(None, None, self.fut)


def main(args):
    P = charm.numPes()
    a = Array(Mover, 2)
    a[0].go(P - 1)
    pe, state, arrived = a[0].where(ret=True).get()
    assert pe == P - 1 and state == list(range(10)) and (arrived or P == 1)
    f = Future()
    b = Array(Balanced, 8, args=[f], useAtSync=True)
    b.work()
    f.get()
    print("OK migration")
    charm.exit()


charm.start(main)
