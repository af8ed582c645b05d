"""Checkpoint/restart of a chare holding section proxies (a slice, a split
section, a Combined): restarted on another number of PEs, a broadcast
through each reaches its members once and a reduction over it is whole
(the members' home PEs are those of the new run).
  sect_ckpt.py DIR            run, checkpoint into DIR, go on
  sect_ckpt.py DIR +restart DIR
"""
from charmpy import Array, Chare, Future, Reducer, charm, coro

N = 23


class M(Chare):
    def __init__(self):
        self.hits = 0

    def hit(self):
        self.hits += 1

    def count(self):
        return self.hits

    def red(self, sec, fut):
        self.contribute(self.thisIndex[0], Reducer.sum, fut, section=sec)


class Main(Chare):
    def __init__(self, args):
        self.path = args[1]
        self.run()

    @coro
    def run(self):
        self.a = Array(M, N)
        self.b = Array(M, 5)
        charm.awaitCreation(self.a, self.b)
        self.secs = [(self.a[0:N:2], list(range(0, N, 2)), []),
                     (charm.split(self.a, 1, elems=[[1, 5, N - 1]])[0], [1, 5, N - 1], []),
                     (charm.combine(self.a[N - 3:], self.b[1:3]), list(range(N - 3, N)), [1, 2])]
        self.check()
        charm.checkpoint(self.path, self.thisProxy.resume)

    def check(self):
        hits_a, hits_b = self.a.count(ret=True).get(), self.b.count(ret=True).get()
        for sec, in_a, in_b in self.secs:
            sec.hit(awaitable=True).get()
            for i in in_a:
                hits_a[i] += 1
            for i in in_b:
                hits_b[i] += 1
            assert self.a.count(ret=True).get() == hits_a, (sec, hits_a)
            assert self.b.count(ret=True).get() == hits_b, (sec, hits_b)
            f = Future()
            sec.red(sec, f)
            assert f.get() == sum(in_a) + sum(in_b), (sec, f.get())

    @coro
    def resume(self):
        self.check()
        print(f"restarted on {charm.numPes()} PEs")
        print("OK sect_ckpt")
        charm.exit()


charm.start(Main)
