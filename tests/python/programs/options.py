"""charm.options accepts charm4py's option names before charm.start; an
unknown name raises AttributeError listing the valid ones. Runtime flags
(+trace FILE, +LBPeriod SECS, +balancer NAME, +LBDebug N) are removed from
sys.argv.

Usage: options.py MODE [ARG...]
    names    set every charm4py option (pickle_protocol = 4,
             local_msg_optim = False, ...), send pickled custom objects
    proto-1  pickle_protocol = -1, send pickled custom objects
    flags    run with runtime flags among ARG (the test passes +balancer
             GreedyLB, +LBDebug 1, +LBPeriod 1 or +trace FILE); check
             they were removed
    atsync   create arrays with useAtSync=True
Every mode prints `args ...` (sys.argv[1:]) and `result N`, a sum computed
by a group of workers.
"""
import sys

from charmpy import *

MODE = sys.argv[1]
assert MODE in ("names", "proto-1", "flags", "atsync"), MODE

if MODE == "names":
    o = charm.options
    o.profiling = False
    o.pickle_protocol = 4
    o.local_msg_optim = False
    o.local_msg_buf_size = 50
    o.auto_flush_wait_queues = True
    o.quiet = False
    o.remote_exec = False
    o.interactive.verbose = 1
    o.interactive.broadcast_imports = True
    assert (o.profiling, o.pickle_protocol, o.local_msg_optim, o.local_msg_buf_size,
            o.auto_flush_wait_queues, o.quiet, o.remote_exec) == (
        False, 4, False, 50, True, False, False)
    assert o.interactive.verbose == 1 and o.interactive.broadcast_imports is True
    for attempt in ("set", "get"):
        try:
            if attempt == "set":
                o.no_such_option = 1
            else:
                o.no_such_option
        except AttributeError as e:
            msg = str(e)
            for valid in ("profiling", "pickle_protocol", "local_msg_optim",
                          "local_msg_buf_size", "auto_flush_wait_queues", "quiet",
                          "remote_exec", "interactive"):
                assert valid in msg, (valid, msg)
        else:
            raise AssertionError(f"an unknown option ({attempt}) did not raise AttributeError")
elif MODE == "proto-1":
    charm.options.pickle_protocol = -1


class Point:
    """A custom class: travels pickled."""

    def __init__(self, x, y, extra=None):
        self.x, self.y, self.extra = x, y, extra

    def __eq__(self, other):
        return (isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)
                and _same(self.extra, other.extra))

    def moved(self, d):
        return Point(self.x + d, self.y - d, self.extra)


def _same(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if type(a).__module__ == "numpy" or type(b).__module__ == "numpy":
        import numpy
        return bool(numpy.array_equal(a, b))
    return a == b


class Worker(Chare):
    def __init__(self):
        self.kept = None

    def square(self, fut):
        self.contribute(self.thisIndex * self.thisIndex, Reducer.sum, fut)

    def move(self, points, d):
        return [p.moved(d) for p in points], charm.myPe()

    def keep(self, data):
        self.kept = data

    def get_kept(self):
        return self.kept


class Synced(Chare):
    def __init__(self):
        self.resumed = 0

    def go(self):
        self.AtSync()

    def resumeFromSync(self):
        self.resumed += 1

    def count(self):
        return self.resumed


def send_custom(P, workers):
    try:
        import numpy
        extra = {"arr": numpy.arange(12.0).reshape(3, 4), "t": (1, "two")}
    except ImportError:
        extra = {"t": (1, "two")}
    pts = [Point(i, 2 * i, extra if i == 1 else None) for i in range(5)]
    moved, pe = workers[P - 1].move(pts, 3, ret=True).get()
    assert pe == P - 1
    assert moved == [p.moved(3) for p in pts], moved
    assert isinstance(moved[1].extra, dict)


def main(args):
    P = charm.numPes()
    assert args == sys.argv
    for flag in ("+balancer", "GreedyLB", "+LBDebug", "+LBPeriod", "+trace"):
        assert flag not in sys.argv, sys.argv
    assert not any(a.endswith("t.json") for a in sys.argv), sys.argv
    workers = Group(Worker)
    charm.awaitCreation(workers)
    if MODE in ("names", "proto-1"):
        send_custom(P, workers)
    if MODE == "names":
        # local_msg_optim = False: a call to a chare on this PE gets a copy.
        data = [1, 2, 3]
        workers[0].keep(data)
        data.append(4)
        assert workers[0].get_kept(ret=True).get() == [1, 2, 3]
    if MODE == "atsync":
        a = Array(Synced, 2 * P, useAtSync=True)
        b = Array(Synced, (2, 2), useAtSync=True)
        charm.awaitCreation(a, b)
        a.go()
        b.go()
        for proxy, n in ((a, 2 * P), (b, 4)):
            for _ in range(500):
                counts = proxy.count(ret=True).get()
                if counts == [1] * n:
                    break
                charm.sleep(0.01)
            assert counts == [1] * n, counts
    f = Future()
    workers.square(f)
    print("args", " ".join(sys.argv[1:]))
    print("result", f.get())
    print("OK options")
    charm.exit()


charm.start(main)
