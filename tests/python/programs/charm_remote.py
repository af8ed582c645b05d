"""The entry methods of charm.thisProxy (the runtime on every PE, as a group):
myPe, createArray, addReducer, printStats, LBTurnInstrumentOn/Off, and
exec/rexec/eval, which work only when charm.options.remote_exec = True was
set before charm.start and otherwise raise PermissionError at get().

Usage: charm_remote.py on|off   (on: remote_exec enabled)
"""
import sys

from charmpy import *

MODE = sys.argv[1]
assert MODE in ("on", "off"), MODE
if MODE == "on":
    charm.options.remote_exec = True

REMOTE_VALUE = None


class Elem(Chare):
    def __init__(self, tag):
        self.tag = tag

    def info(self):
        return (self.thisIndex, charm.myPe(), self.tag)


class Worker(Chare):
    def red(self, fut):
        # A reducer added through charm.thisProxy.addReducer, used from every PE.
        self.contribute([charm.myPe() * 3, charm.myPe()], Reducer.merge_sorted, fut)

    def remote_value(self):
        return REMOTE_VALUE

    def has_reducer(self):
        return hasattr(Reducer, "merge_sorted")


def merge_sorted(contribs):
    """A custom reducer: contributions are lists; the result is one sorted list."""
    out = []
    for c in contribs:
        out.extend(c)
    return sorted(out)


def main(args):
    P = charm.numPes()
    for pe in range(P):
        assert charm.thisProxy[pe].myPe(ret=True).get() == pe
    assert charm.thisProxy.myPe(ret=True).get() == list(range(P))

    # createArray on another PE returns a working array proxy.
    arr = charm.thisProxy[P - 1].createArray(Elem, 2 * P + 1, args=["made remotely"],
                                             ret=True).get()
    for i in range(2 * P + 1):
        idx, pe, tag = arr[i].info(ret=True).get()
        assert idx == (i,) and tag == "made remotely" and 0 <= pe < P, (i, idx, pe, tag)
    assert [t[0] for t in arr.info(ret=True).get()] == [(i,) for i in range(2 * P + 1)]
    arr2 = charm.thisProxy[0].createArray(Elem, (2, 3), args=["2-D"], ret=True).get()
    assert arr2[1, 2].info(ret=True).get()[0::2] == ((1, 2), "2-D")

    # addReducer on every PE, then the reducer is Reducer.<name> everywhere.
    assert not hasattr(Reducer, "merge_sorted")
    charm.thisProxy.addReducer(merge_sorted, awaitable=True).get()
    assert Reducer.merge_sorted is not None
    workers = Group(Worker)
    assert workers.has_reducer(ret=True).get() == [True] * P
    f = Future()
    workers.red(f)
    assert f.get() == sorted([pe * 3 for pe in range(P)] + list(range(P))), f.get()

    # printStats and the load-balancing instrumentation switches.
    assert charm.thisProxy.printStats(awaitable=True).get() is None
    assert charm.thisProxy[P - 1].printStats(awaitable=True).get() is None
    assert charm.thisProxy.LBTurnInstrumentOff(awaitable=True).get() is None
    assert charm.thisProxy.LBTurnInstrumentOn(awaitable=True).get() is None
    charm.LBTurnInstrumentOff()
    charm.LBTurnInstrumentOn()

    last = P - 1
    if MODE == "on":
        assert charm.thisProxy[last].eval("charm.myPe()", ret=True).get() == last
        assert charm.thisProxy.eval("charm.myPe() * 10", ret=True).get() == \
            [pe * 10 for pe in range(P)]
        charm.thisProxy.exec("REMOTE_VALUE = ('exec', charm.myPe())", awaitable=True).get()
        assert charm.thisProxy.eval("REMOTE_VALUE", ret=True).get() == \
            [("exec", pe) for pe in range(P)]
        charm.thisProxy[last].rexec("REMOTE_VALUE = 'rexec'", awaitable=True).get()
        assert charm.thisProxy[last].eval("REMOTE_VALUE", ret=True).get() == "rexec"
        if last != 0:
            assert REMOTE_VALUE == ("exec", 0)
        # module_name: a module imported on every PE.
        charm.thisProxy[last].exec("VALUE_IN_SYS = 7", "sys", awaitable=True).get()
        assert charm.thisProxy[last].eval("VALUE_IN_SYS", "sys", ret=True).get() == 7
    else:
        calls = [
            ("eval", lambda: charm.thisProxy[last].eval("charm.myPe()", ret=True)),
            ("exec", lambda: charm.thisProxy[last].exec("REMOTE_VALUE = 1", awaitable=True)),
            ("rexec", lambda: charm.thisProxy[last].rexec("REMOTE_VALUE = 2", awaitable=True)),
        ]
        for name, call in calls:
            fut = call()
            try:
                fut.get()
            except PermissionError:
                pass
            else:
                raise AssertionError(f"{name} ran without remote_exec")
        # Nothing ran: ask a chare on that PE what it sees.
        assert workers[last].remote_value(ret=True).get() is None
        assert REMOTE_VALUE is None
    print("OK charm_remote")
    charm.exit()


charm.start(main)
