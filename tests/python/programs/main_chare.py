"""The main chare: charm.start(Main) with a Chare subclass, as many charm4py
programs are written.

Main is constructed once, on PE 0, with the argv list (runtime flags
removed; the test passes program arguments that must arrive). It has
self.thisProxy, a single-chare proxy that can be sent to workers, which call
mainProxy.done(x) on it. Its constructor blocks without any decorator
(future.get(), charm.awaitCreation, charm.sleep, a call with ret=True to its
own entry method: as in charm4py, the main chare's other entry methods run
while its constructor is suspended). It also has a @coro entry method.

Usage: main_chare.py ARG... (the program checks they arrive as given)
"""
import sys

from charmpy import *

CONSTRUCTED = []          # Main constructions on this PE


class Worker(Chare):
    def __init__(self, main, base):
        self.main = main
        self.base = base

    def ident(self):
        return (self.thisIndex, charm.myPe())

    def work(self, x):
        # mainProxy.done(...) from a worker: the proxy came as an argument.
        self.main.done(self.thisIndex, self.base + x * self.thisIndex)

    def echo_main(self, main):
        return main == self.main and hash(main) == hash(self.main)


class Main(Chare):
    def __init__(self, args):
        CONSTRUCTED.append(charm.myPe())
        assert charm.myPe() == 0, charm.myPe()
        assert isinstance(args, list), type(args)
        assert args == sys.argv, (args, sys.argv)
        self.args = list(args)
        self.results = {}
        self.expected = None
        self.all_done = None
        self.pings = 0
        P = charm.numPes()
        assert self.thisProxy == self.thisProxy
        assert hash(self.thisProxy) == hash(self.thisProxy)

        # The constructor blocks: charm.sleep, awaitCreation, future.get().
        charm.sleep(0.01)
        workers = Group(Worker, args=[self.thisProxy, 1000])
        charm.awaitCreation(workers)
        assert workers.ident(ret=True).get() == [(pe, pe) for pe in range(P)]
        assert all(workers.echo_main(self.thisProxy, ret=True).get())
        f = Future()
        workers[P - 1].ident(ret=True)   # unrelated traffic
        Chare(Worker, args=[self.thisProxy, 0], onPE=P - 1).ident(ret=True).get()
        f.send(41)
        assert f.get() == 41

        # Main's own entry methods run while its constructor is suspended.
        assert self.thisProxy.ping(5, ret=True).get() == 6
        assert self.pings == 1

        # Workers report to the main chare through mainProxy.done(); the last
        # report fulfils a future the constructor waits on.
        self.expected = P
        self.all_done = Future()
        workers.work(7)
        got = self.all_done.get()
        assert got == {pe: 1000 + 7 * pe for pe in range(P)}, got

        self.workers = workers
        # A second round of reports, handled after the constructor returned:
        # done() then calls the @coro entry method finish().
        self.results = {}
        self.all_done = None
        workers.work(9)

    def ping(self, x):
        self.pings += 1
        return x + 1

    def done(self, index, value):
        assert charm.myPe() == 0
        assert index not in self.results, index
        self.results[index] = value
        if len(self.results) == self.expected:
            if self.all_done is not None:
                self.all_done.send(dict(self.results))
            else:
                self.thisProxy.finish(dict(self.results))

    @coro
    def finish(self, results):
        P = charm.numPes()
        assert results == {pe: 1000 + 9 * pe for pe in range(P)}, results
        # A coroutine entry method of the main chare: it blocks too.
        charm.sleep(0.01)
        assert self.workers[0].ident(ret=True).get() == (0, 0)
        assert self.thisProxy.ping(1, ret=True).get() == 2
        assert CONSTRUCTED == [0], CONSTRUCTED
        print("args", " ".join(self.args[1:]))
        print("OK main_chare")
        charm.exit()


charm.start(Main)
