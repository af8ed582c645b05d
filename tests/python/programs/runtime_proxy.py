"""charm.thisProxy (updateGlobals, exit) and the host queries (shared
memory: one host holding every PE)."""
from charmpy import *

SETTING = "unset"


class Reader(Chare):
    def read(self):
        return SETTING


def main(args):
    P = charm.numPes()
    assert charm.numHosts() == 1 and charm.myHost() == 0
    assert charm.getHostPes(0) == list(range(P))
    assert all(charm.getPeHost(pe) == 0 for pe in range(P))
    assert charm.getHostNumPes(0) == P and charm.getHostFirstPe(0) == 0
    assert [charm.getPeHostRank(pe) for pe in range(P)] == list(range(P))
    charm.thisProxy.updateGlobals({"SETTING": "everywhere"}, awaitable=True).get()
    assert Group(Reader).read(ret=True).get() == ["everywhere"] * P
    print("OK runtime_proxy")
    charm.thisProxy[P - 1].exit()


charm.start(main)
