"""PEs, options, and the three kinds of collection: a single chare placed
with onPE, a group (one member per PE, thisIndex = PE) and a 1-D dense array
with the default block map. Usage: basics.py NPES"""
import time

import charmpy
from charmpy import *

# Options are settings read at charm.start: set them before.
charm.options.quiet = False
for bad in ("no_such_option", "profilling"):
    try:
        setattr(charm.options, bad, True)
    except AttributeError as e:
        msg = str(e)
        assert bad in msg, msg
        for valid in ("profiling", "quiet", "local_msg_optim", "pickle_protocol"):
            assert valid in msg, f"valid option {valid!r} not listed in: {msg}"
    else:
        raise AssertionError(f"charm.options.{bad} = True did not raise AttributeError")
try:
    charm.options.not_an_option
except AttributeError as e:
    assert "not_an_option" in str(e) and "local_msg_optim" in str(e), str(e)
else:
    raise AssertionError("reading an unknown option did not raise AttributeError")
assert charm.options.local_msg_optim is True
assert charm.options.profiling is False


class Where(Chare):
    """Used as a single chare, a group and an array (the same class may be)."""

    def __init__(self, tag=None, extra=0):
        self.tag = tag
        self.extra = extra
        self.built_on = charm.myPe()

    def where(self):
        return (charm.myPe(), self.built_on, getattr(self, "thisIndex", None), self.tag,
                self.extra)

    def kw(self, a, b=2, *, c=3):
        return (a, b, c)

    def local_branch_is_me(self):
        return self.thisProxy.ckLocalBranch() is self


def main(args):
    expected_pes = int(args[1])
    assert isinstance(args, list), type(args)
    assert args[0].endswith("basics.py"), args
    assert args[2:] == [], f"runtime flags or extra arguments left in argv: {args}"
    assert charm.myPe() == 0
    assert charm.numPes() == expected_pes, (charm.numPes(), expected_pes)
    P = charm.numPes()

    t0 = charm.wallTime()
    assert isinstance(t0, float), type(t0)
    time.sleep(0.05)
    t1 = charm.wallTime()
    assert 0.04 <= t1 - t0 < 5, (t0, t1)

    # Single chares: onPE places them; onPE=-1 lets the runtime choose.
    for pe in range(P):
        c = Chare(Where, args=["single", pe], onPE=pe)
        here, built_on, _, tag, extra = c.where(ret=True).get()
        assert here == built_on == pe and tag == "single" and extra == pe, (pe, here, built_on)
    anywhere = [Chare(Where, args=["any"], onPE=-1) for _ in range(2 * P)]
    for c in anywhere:
        here, built_on, _, tag, _ = c.where(ret=True).get()
        assert 0 <= here < P and here == built_on and tag == "any"
    for bad in (P, -2):
        try:
            Chare(Where, onPE=bad)
        except (ValueError, IndexError):
            pass
        else:
            raise AssertionError(f"Chare(onPE={bad}) with {P} PEs did not fail")

    # Keyword arguments to entry methods.
    c = Chare(Where, onPE=P - 1)
    assert c.kw(1, ret=True).get() == (1, 2, 3)
    assert c.kw(1, b=5, c=6, ret=True).get() == (1, 5, 6)
    assert c.kw(a=7, ret=True).get() == (7, 2, 3)

    # Group: one member per PE, thisIndex = PE, constructor args everywhere.
    g = Group(Where, args=["group", 42])
    res = g.where(ret=True).get()
    assert isinstance(res, list) and len(res) == P, res
    for pe, (here, built_on, idx, tag, extra) in enumerate(res):
        assert here == built_on == idx == pe and tag == "group" and extra == 42, res
    for pe in range(P):
        assert g[pe].where(ret=True).get()[0] == pe
    mine = g.ckLocalBranch()
    assert isinstance(mine, Where) and mine.thisIndex == 0 and mine.tag == "group", mine
    assert all(g.local_branch_is_me(ret=True).get())

    # 1-D arrays: thisIndex is a 1-tuple, every element exactly once, default
    # block map (contiguous, balanced ranges of indices per PE).
    for n in (1, P, 7 * P + 3, 100):
        a = Array(Where, n, args=["array"])
        res = a.where(ret=True).get()
        assert len(res) == n, (n, len(res))
        assert [r[2] for r in res] == [(i,) for i in range(n)], res
        assert all(r[0] == r[1] and r[3] == "array" for r in res), res
        pes = [r[0] for r in res]
        assert pes == sorted(pes), f"default map is not a block map: {pes}"
        counts = [pes.count(p) for p in range(P)]
        if n >= P:
            assert max(counts) - min(counts) <= 1, f"unbalanced block map: {counts}"
        for i in (0, n - 1, n // 2):
            assert a[i].where(ret=True).get()[2] == (i,)
            assert a[(i,)].where(ret=True).get()[2] == (i,)
    # dims given as a 1-tuple, and an empty array.
    a = Array(Where, (5,))
    assert [r[2] for r in a.where(ret=True).get()] == [(i,) for i in range(5)]

    # Up to 6 dimensions; more, or none, is an error at the call.
    for bad in ((1,) * 7, (), (2, -1)):
        try:
            Array(Where, bad)
        except (ValueError, TypeError):
            pass
        else:
            raise AssertionError(f"Array(C, {bad}) did not fail")

    # Creation is asynchronous; awaitCreation waits for it.
    g2 = Group(Where)
    a2 = Array(Where, (3, 2))
    charm.awaitCreation(g2, a2)
    charm.awaitCreation(Chare(Where, onPE=P - 1))

    # The exported names.
    for name in ("charm", "Chare", "Group", "Array", "ArrayMap", "Reducer", "Future",
                 "when", "coro", "threaded"):
        assert name in charmpy.__all__, (name, charmpy.__all__)
        assert getattr(charmpy, name) is globals()[name]

    print(f"OK basics")
    charm.exit()


charm.start(main)
