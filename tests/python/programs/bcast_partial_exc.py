"""A broadcast with ret=True where some members raise: get() returns the list
of every member's result in index order, in which each member that raised
has its exception object in its place (the others their values). With
awaitable=True, get() raises (one of the members' exceptions). For a group
and for an array (1-D and 2-D)."""
from charmpy import *


class Member(Chare):
    @coro
    def maybe(self, failing, delay):
        i = self.thisIndex
        if i in failing:
            raise ValueError(i, "failing")
        charm.sleep(delay)     # the failing members answer first
        return ("value", i, charm.myPe())

    def ok(self):
        return self.thisIndex


def check(proxy, indices, failing):
    res = proxy.maybe(failing, 0.02, ret=True).get()
    assert isinstance(res, list) and len(res) == len(indices), res
    for i, r in zip(indices, res):
        if i in failing:
            assert isinstance(r, ValueError), (i, r)
            assert r.args == (i, "failing"), (i, r.args)
        else:
            assert isinstance(r, tuple) and r[:2] == ("value", i), (i, r)
    if failing:
        try:
            proxy.maybe(failing, 0.02, awaitable=True).get()
        except ValueError as e:
            assert e.args[1] == "failing" and e.args[0] in failing, e.args
        else:
            raise AssertionError("awaitable=True: get() did not raise")
        charm.sleep(0.1)        # the late replies arrive meanwhile
    else:
        assert proxy.maybe(failing, 0.0, awaitable=True).get() is None
    # The collection still works afterwards.
    assert proxy.ok(ret=True).get() == indices


def main(args):
    P = charm.numPes()
    g = Group(Member)
    pes = list(range(P))
    check(g, pes, [pe for pe in pes if pe % 2 == 1])
    check(g, pes, [0])
    check(g, pes, pes)
    check(g, pes, [])
    a = Array(Member, 2 * P + 1)
    idx = [(i,) for i in range(2 * P + 1)]
    check(a, idx, [(i,) for i in range(2 * P + 1) if i % 2 == 1])
    check(a, idx, [(2 * P,)])
    b = Array(Member, (2, P + 1))
    idx = [(i, j) for i in range(2) for j in range(P + 1)]
    check(b, idx, [ij for ij in idx if (ij[0] + ij[1]) % 2 == 0])
    print("OK bcast_partial_exc")
    charm.exit()


charm.start(main)
