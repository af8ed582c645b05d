"""Orders the review of issue 9 found wrong. Usage: ctor_order.py MODE

  coro_ctor     an array with several elements per PE whose @coro
                constructor blocks: a message sent right after the creation
                runs only once its element's constructor ran to its first
                suspension, a @when it holds opens when the constructor
                (resumed later) sets the state, and every element is its own
                coroutine
  ctor_nowait   a group whose @coro constructor never suspends: a @when
                message sent right after the creation runs
  flush         self.__flush_wait_queues__() inside a coroutine: the waiting
                coroutine it releases and the caller both finish
  readonly      a readonly set in main is seen by the constructor of a chare
                created right after it on another PE
  insert_other  a chare on another PE inserts into a sparse array with an
                ArrayMap and calls ckDoneInserting at once; main uses every
                element and reduces over them
  insert_xmap   the same, the array itself created on another PE than its map
  insert_done   a chare on another PE inserts (with an ArrayMap not there yet)
                and returns; then main calls ckDoneInserting: it waits for
                those insertions
  done_procnum  an ArrayMap whose procNum knows only the inserted indices;
                ckDoneInserting right after the insertions
  ro_insert     a readonly set in main is seen by the constructors of sparse
                elements inserted right after it on other PEs, while the PE
                that relays broadcasts is busy
  flush_sync    __flush_wait_queues__() in a coroutine runs the plain @when
                method it opened before it returns
  ctor_lb       a group's @coro constructor finds itself with ckLocalBranch
                before its first suspension
"""
import time
import sys

from charmpy import *
from charmpy import readonlies

MODE = sys.argv[1]


class Blocking(Chare):
    ready = False

    @coro
    def __init__(self, done):
        self.started = True
        self.kicked = Future()
        self.kicked.get()           # until kick()
        self.ready = True
        done(self.thisIndex[0])

    def kick(self):
        self.kicked()

    def ping(self):
        return getattr(self, "started", False)

    @when("self.ready")
    def gated(self):
        return self.thisIndex[0]


class NoWait(Chare):
    ready = False

    @coro
    def __init__(self):
        self.ready = True

    @when("self.ready")
    def gated(self):
        return charm.myPe()


class Flusher(Chare):
    def __init__(self):
        self.x = False

    @coro
    def waiter(self):
        self.wait("self.x")
        return "waiter"

    @coro
    def runner(self):
        self.x = True
        self.__flush_wait_queues__()
        charm.sleep(0.01)
        return "runner"


class Reader(Chare):
    def __init__(self):
        self.seen = getattr(readonlies, "value", None)

    def get(self):
        return self.seen


class Busy(Chare):
    def spin(self, secs):
        t = time.time()
        while time.time() - t < secs:
            pass


class DictMap(ArrayMap):
    def __init__(self, indices):
        self.table = {(i,): i % charm.numPes() for i in indices}

    def procNum(self, index):
        return self.table[index]      # defined only for the inserted elements


class Counter(Chare):
    def __init__(self):
        self.x = False
        self.n = 0

    @when("self.x")
    def gated(self):
        self.n += 1

    @coro
    def run(self):
        charm.sleep(0.05)             # gated() arrived meanwhile and is held
        self.x = True
        self.__flush_wait_queues__()
        return self.n


class SelfFinder(Chare):
    @coro
    def __init__(self):
        self.found = self.thisProxy.ckLocalBranch() is self
        charm.sleep(0.01)

    def get(self):
        return self.found


class Spread(ArrayMap):
    def procNum(self, index):
        return (index[0] * 7 + 1) % charm.numPes()


class Elem(Chare):
    def info(self):
        return (self.thisIndex, charm.myPe())

    def part(self, fut):
        self.contribute(1, Reducer.sum, fut)


class Builder(Chare):
    def fill(self, a, indices):
        for i in indices:
            a.ckInsert(i)
        a.ckDoneInserting()

    def insert_only(self, a, indices):
        for i in indices:
            a.ckInsert(i)
        return True

    def build(self, m, indices):
        a = Array(Elem, ndims=1, map=m)
        self.fill(a, indices)
        return a


def check_sparse(a, indices):
    P = charm.numPes()
    infos = [a[i].info(ret=True).get() for i in indices]
    assert infos == [((i,), (i * 7 + 1) % P) for i in indices], infos
    f = Future()
    a.part(f)
    assert f.get() == len(indices)
    assert [r[0] for r in a.info(ret=True).get()] == [(i,) for i in indices]


def main(args):
    P = charm.numPes()
    if MODE == "coro_ctor":
        n = 4 * P
        done = Future(n)
        a = Array(Blocking, n, args=[done])
        assert all(a[i].ping(ret=True).get() for i in range(n))
        gated = [a[i].gated(ret=True) for i in range(n)]
        assert not any(g.ready() for g in gated)
        for i in range(n):
            a[i].kick()
        assert sorted(done.get()) == list(range(n))
        assert [g.get() for g in gated] == list(range(n))
    elif MODE == "ctor_nowait":
        g = Group(NoWait)
        assert [g[p].gated(ret=True).get() for p in range(P)] == list(range(P))
    elif MODE == "flush":
        c = Chare(Flusher, onPE=P - 1)
        charm.awaitCreation(c)
        w = c.waiter(ret=True)
        r = c.runner(ret=True)
        assert (w.get(), r.get()) == ("waiter", "runner")
    elif MODE == "readonly":
        for k in range(3):
            readonlies.value = k
            c = Chare(Reader, onPE=P - 1)
            assert c.get(ret=True).get() == k
    elif MODE == "insert_other":
        b = Chare(Builder, onPE=P - 1)
        charm.awaitCreation(b)
        a = Array(Elem, ndims=1, map=Group(Spread))
        b.fill(a, list(range(12)), ret=True).get()
        check_sparse(a, list(range(12)))
    elif MODE == "insert_xmap":
        b = Chare(Builder, onPE=P - 1)
        charm.awaitCreation(b)
        a = b.build(Group(Spread), list(range(12)), ret=True).get()
        check_sparse(a, list(range(12)))
    elif MODE == "insert_done":
        b = Chare(Builder, onPE=P - 1)
        charm.awaitCreation(b)
        a = Array(Elem, ndims=1, map=Group(Spread))
        assert b.insert_only(a, list(range(12)), ret=True).get()
        a.ckDoneInserting()
        check_sparse(a, list(range(12)))
    elif MODE == "done_procnum":
        indices = [5, 9, 13]
        a = Array(Elem, ndims=1, map=Group(DictMap, args=[indices]))
        for i in indices:
            a.ckInsert(i)
        a.ckDoneInserting()
        f = Future()
        a.part(f)
        assert f.get() == len(indices)
        assert [r[1] for r in a.info(ret=True).get()] == [i % P for i in indices]
    elif MODE == "ro_insert":
        busy = Chare(Busy, onPE=1 % P)
        a = Array(Reader, ndims=1)
        charm.awaitCreation(busy, a)
        busy.spin(0.5)
        readonlies.value = 42
        pes = list(range(1, P)) or [0]
        for k, pe in enumerate(pes):
            a.ckInsert(k, onPE=pe)
        a.ckDoneInserting()
        assert [a[k].get(ret=True).get() for k in range(len(pes))] == [42] * len(pes)
    elif MODE == "flush_sync":
        c = Chare(Counter, onPE=0)
        charm.awaitCreation(c)
        r = c.run(ret=True)
        c.gated()
        assert r.get() == 1, r.get()
    elif MODE == "ctor_lb":
        g = Group(SelfFinder)
        charm.awaitCreation(g)
        assert g.get(ret=True).get() == [True] * P
    else:
        raise SystemExit(f"unknown mode {MODE}")
    print("OK ctor_order")
    charm.exit()


charm.start(main)
