"""Host queries agree with each other on every PE (under MPI they come from
the processor names of the ranks; on one machine there is one host)."""
from charmpy import *


class Probe(Chare):
    def view(self):
        return (charm.myPe(), charm.myHost(), charm.numHosts(),
                [charm.getHostPes(h) for h in range(charm.numHosts())])


def main(args):
    views = Group(Probe).view(ret=True).get()
    n = charm.numHosts()
    assert n >= 1
    pes = sorted(pe for h in range(n) for pe in charm.getHostPes(h))
    assert pes == list(range(charm.numPes())), pes
    for pe, host, nh, table in views:
        assert nh == n and host == charm.getPeHost(pe), (pe, host, nh)
        assert table == [charm.getHostPes(h) for h in range(n)], table
        assert pe in charm.getHostPes(host)
        assert charm.getHostFirstPe(host) == min(charm.getHostPes(host))
    print("HOSTS", n)
    print("OK hosts_info")
    charm.exit()


charm.start(main)
