"""Constrained groups: Group(C, args, onPEs=[...]) has members only on the
listed PEs (thisIndex = the PE; a PE listed twice holds one member).
Broadcasts (ret=True: the members' results in PE order; awaitable=True),
element calls, reductions (sum, gather, allreduce) run over just those
members. g[pe] for a PE without a member raises IndexError at the call site,
g.ckLocalBranch() there raises RuntimeError, and onPEs=[] or a PE out of
range raise ValueError when the group is created."""
from charmpy import *

BUILT = []        # (tag, PE) of every Member constructed on this PE


class Member(Chare):
    def __init__(self, tag):
        assert self.thisIndex == charm.myPe(), (self.thisIndex, charm.myPe())
        self.tag = tag
        self.flag = False
        BUILT.append((tag, charm.myPe()))

    def where(self):
        return (self.thisIndex, charm.myPe(), self.tag)

    @coro
    def slow(self, secs):
        charm.sleep(secs)
        self.flag = True

    def get_flag(self):
        return self.flag

    def reduce_all(self, f_sum, f_gather, f_max):
        self.contribute(self.thisIndex + 1, Reducer.sum, f_sum)
        self.contribute((self.thisIndex, self.tag), Reducer.gather, f_gather)
        self.contribute([self.thisIndex, -self.thisIndex], Reducer.max, f_max)

    def reduce_to_member(self, first):
        self.contribute(10 * self.thisIndex, Reducer.sum, self.thisProxy[first].collect)

    def collect(self, total):
        self.collected = total

    def get_collected(self):
        return getattr(self, "collected", None)

    @coro
    def all_sum(self):
        return self.allreduce(self.thisIndex, Reducer.sum).get()

    def local_is_me(self):
        return self.thisProxy.ckLocalBranch() is self


class Probe(Chare):
    """A full group, to look at every PE."""

    def local_branch(self, g):
        try:
            obj = g.ckLocalBranch()
        except RuntimeError:
            return "RuntimeError"
        return ("member", obj.thisIndex)

    def built(self):
        return list(BUILT)


def check(P, probe, onPEs, tag):
    members = sorted(set(onPEs))
    g = Group(Member, args=[tag], onPEs=onPEs)
    charm.awaitCreation(g)
    where = g.where(ret=True).get()
    assert where == [(pe, pe, tag) for pe in members], (onPEs, where)
    assert g.slow(0.01, awaitable=True).get() is None
    assert g.get_flag(ret=True).get() == [True] * len(members)
    for pe in members:
        assert g[pe].where(ret=True).get() == (pe, pe, tag)
        assert g[pe].local_is_me(ret=True).get() is True
    f_sum, f_gather, f_max = Future(), Future(), Future()
    g.reduce_all(f_sum, f_gather, f_max)
    assert f_sum.get() == sum(pe + 1 for pe in members), (onPEs, f_sum.get())
    assert f_gather.get() == [(pe, tag) for pe in members], (onPEs, f_gather.get())
    assert list(f_max.get()) == [max(members), -min(members)], (onPEs, f_max.get())
    g.reduce_to_member(members[0])
    # The reduction's result reaches members[0] before this call (both come
    # after it); poll without assuming when.
    for _ in range(200):
        got = g[members[0]].get_collected(ret=True).get()
        if got is not None:
            break
        charm.sleep(0.01)
    assert got == 10 * sum(members), (onPEs, got)
    assert g.all_sum(ret=True).get() == [sum(members)] * len(members)
    # Members only there; the other PEs have none.
    for pe in range(P):
        lb = probe[pe].local_branch(g, ret=True).get()
        if pe in members:
            assert lb == ("member", pe), (onPEs, pe, lb)
        else:
            assert lb == "RuntimeError", (onPEs, pe, lb)
            try:
                g[pe].where(ret=True)
            except IndexError:
                pass
            else:
                raise AssertionError(f"g[{pe}] of a group on {onPEs} did not raise IndexError")
    if 0 not in members:
        try:
            g.ckLocalBranch()
        except RuntimeError:
            pass
        else:
            raise AssertionError(f"ckLocalBranch() on PE 0 for a group on {onPEs}")
    else:
        assert g.ckLocalBranch().thisIndex == 0
    return g


def main(args):
    P = charm.numPes()
    probe = Group(Probe)
    charm.awaitCreation(probe)
    cases = [[0], [P - 1], list(range(0, P, 2)), [P - 1, 0], [0, 0, P - 1, P - 1]]
    if P >= 3:
        cases.append([2, 1])
    expect_built = {pe: [] for pe in range(P)}
    for k, onPEs in enumerate(cases):
        tag = f"g{k}"
        check(P, probe, onPEs, tag)
        for pe in sorted(set(onPEs)):
            expect_built[pe].append((tag, pe))
    # Constructors ran exactly on the listed PEs, once each.
    for pe in range(P):
        built = probe[pe].built(ret=True).get()
        assert built == expect_built[pe], (pe, built, expect_built[pe])

    # Errors at the call.
    for bad in ([], [P], [-1], [0, P + 3]):
        try:
            Group(Member, args=["bad"], onPEs=bad)
        except ValueError:
            pass
        else:
            raise AssertionError(f"Group(onPEs={bad}) did not raise ValueError")
    charm.sleep(0.05)
    for pe in range(P):
        assert all(tag != "bad" for tag, _ in probe[pe].built(ret=True).get())
    print("OK constrained_group")
    charm.exit()


charm.start(main)
