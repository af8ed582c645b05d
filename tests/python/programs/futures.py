"""Futures and coroutines: ret=True and awaitable=True (element, single
chare, broadcast: a list in index order), Future(num_vals), send / call /
ready, futures passed to and fulfilled on other PEs, charm.createFuture,
charm.wait, charm.iwait, charm.sleep (suspends only the caller),
charm.scheduleCallableAfter, @coro / @threaded entry methods and
constructors, and nested coroutines calling back into a suspended chare."""
import time

import numpy

from charmpy import *


class Worker(Chare):
    def __init__(self):
        self.flag = False
        self.log = []

    def square(self, x):
        return x * x

    def whoami(self):
        return (getattr(self, "thisIndex", None), charm.myPe())

    def nothing(self):
        pass

    def fulfil(self, fut, value):
        fut.send(value)

    def fulfil_here(self, fut):
        fut.send(("from", charm.myPe()))

    def fulfil_call(self, fut, value):
        fut(value)

    @coro
    def fulfil_later(self, fut, value, delay):
        charm.sleep(delay)
        fut.send(value)

    @coro
    def slow_set(self, delay):
        charm.sleep(delay)
        self.flag = True

    def get_flag(self):
        return self.flag

    @coro
    def nap(self, secs):
        t0 = time.time()
        charm.sleep(secs)
        self.log.append("nap-done")
        return time.time() - t0

    def note(self, what):
        self.log.append(what)

    def get_log(self):
        return self.log

    @threaded
    def ask(self, other, x):
        # A coroutine waiting on another chare, which calls back into us.
        me = self.thisProxy
        if getattr(self, "thisIndex", None) is not None:
            me = me[self.thisIndex]
        return other.callback_to(me, x, ret=True).get() + 1

    @coro
    def callback_to(self, origin, x):
        return origin.square(x, ret=True).get() * 10

    @coro
    def make_and_wait(self, helper):
        f = Future()
        helper.fulfil_here(f)
        return f.get()

    def values(self):
        return {"arr": numpy.arange(5.0), "none": None, "nested": [(1, "a"), {"k": b"b"}]}

    @coro
    def many_waits(self, others):
        futs = [o.square(i, ret=True) for i, o in enumerate(others)]
        charm.wait(futs)
        assert all(f.ready() for f in futs)
        return [f.get() for f in futs]


class SlowStart(Chare):
    @coro
    def __init__(self, helper):
        # A coroutine constructor: waits for another chare before finishing.
        self.value = helper.square(7, ret=True).get()
        charm.sleep(0.05)
        self.ready_flag = True

    def state(self):
        return (self.value, self.ready_flag)


def main(args):
    P = charm.numPes()
    last = P - 1
    single = Chare(Worker, onPE=last)
    local = Chare(Worker, onPE=0)
    arr = Array(Worker, 2 * P + 1)
    grp = Group(Worker)

    # ret=True on every kind of target.
    assert single.square(9, ret=True).get() == 81
    assert arr[2 * P].square(-3, ret=True).get() == 9
    assert grp[last].whoami(ret=True).get() == (last, last)
    res = arr.whoami(ret=True).get()
    assert [r[0] for r in res] == [(i,) for i in range(2 * P + 1)], res
    res = grp.whoami(ret=True).get()
    assert res == [(pe, pe) for pe in range(P)], res
    assert arr.nothing(ret=True).get() == [None] * (2 * P + 1)
    assert single.nothing(ret=True).get() is None
    v = single.values(ret=True).get()
    assert numpy.array_equal(v["arr"], numpy.arange(5.0)) and v["none"] is None
    assert v["nested"] == [(1, "a"), {"k": b"b"}], v

    # Many outstanding futures at once.
    futs = [arr[i % (2 * P + 1)].square(i, ret=True) for i in range(300)]
    assert [f.get() for f in futs] == [i * i for i in range(300)]

    # awaitable=True: done when the method finished (on every member), get() is None.
    f = single.slow_set(0.3, awaitable=True)
    assert not f.ready()
    assert f.get() is None and f.ready()
    assert single.get_flag(ret=True).get() is True
    f = arr.slow_set(0.1, awaitable=True)
    assert f.get() is None
    assert arr.get_flag(ret=True).get() == [True] * (2 * P + 1)
    assert grp.slow_set(0.05, awaitable=True).get() is None
    assert all(grp.get_flag(ret=True).get())

    # Futures created here, fulfilled on other PEs (send and call forms).
    f = Future()
    assert not f.ready()
    single.fulfil(f, "sent")
    assert f.get() == "sent" and f.ready()
    f = charm.createFuture()
    grp[last].fulfil_call(f, {"called": True})
    assert f.get() == {"called": True}
    f = Future(num_vals=P + 1)
    for pe in range(P):
        grp[pe].fulfil(f, pe * 100)
    f.send(-1)
    vals = f.get()
    assert isinstance(vals, list) and sorted(vals) == [-1] + [pe * 100 for pe in range(P)], vals
    f = Future(3)
    f.send(1)
    f(2)
    assert not f.ready()
    arr[0].fulfil(f, 3)
    assert sorted(f.get()) == [1, 2, 3]
    # Fulfilled locally from main itself.
    f = Future()
    f.send(None)
    assert f.get() is None and f.ready()

    # A coroutine on another PE makes a future and waits for a third chare.
    assert single.make_and_wait(local, ret=True).get() == ("from", 0)
    assert local.make_and_wait(single, ret=True).get() == ("from", last)
    assert grp[last].make_and_wait(grp[0], ret=True).get() == ("from", 0)

    # charm.wait and charm.iwait (futures become ready in a known order).
    futs = [Future() for _ in range(3)]
    for i, delay in enumerate((0.6, 0.05, 0.3)):
        grp[i % P].fulfil_later(futs[i], i, delay)
    order = [fut.get() for fut in charm.iwait(futs)]
    assert order == [1, 2, 0], order
    futs = [arr[i].square(i, ret=True) for i in range(2 * P + 1)]
    charm.wait(futs)
    assert all(fu.ready() for fu in futs)
    assert single.many_waits([arr[i] for i in range(2 * P + 1)], ret=True).get() == \
        [i * i for i in range(2 * P + 1)]

    # charm.sleep suspends only the calling coroutine: other messages to the
    # same chare run meanwhile.
    t0 = time.time()
    nap = single.nap(0.5, ret=True)
    single.note("during")
    slept = nap.get()
    assert slept >= 0.45, slept
    assert single.get_log(ret=True).get() == ["during", "nap-done"]
    # In main (a coroutine) too.
    t0 = time.time()
    charm.sleep(0.2)
    assert time.time() - t0 >= 0.19

    # scheduleCallableAfter: called with its args after the delay.
    f = Future()
    t0 = time.time()
    charm.scheduleCallableAfter(lambda a, b: f.send((a, b, time.time() - t0)), 0.3,
                                args=[1, "two"])
    a, b, waited = f.get()
    assert (a, b) == (1, "two") and waited >= 0.29, (a, b, waited)

    # Coroutines calling into a chare that is itself suspended.
    assert single.ask(local, 3, ret=True).get() == 91
    assert arr[0].ask(single, 4, ret=True).get() == 161

    # Coroutine constructors, for a single chare, an array and a group.
    s = Chare(SlowStart, args=[single], onPE=last)
    sa = Array(SlowStart, 3, args=[single])
    sg = Group(SlowStart, args=[arr[0]])
    charm.awaitCreation(s, sa, sg)
    assert s.state(ret=True).get() == (49, True)
    assert sa.state(ret=True).get() == [(49, True)] * 3
    assert sg.state(ret=True).get() == [(49, True)] * P
    print("OK futures")
    charm.exit()


charm.start(main)
