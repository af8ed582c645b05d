"""Chare.contribute's C path (python/ext/contrib.c) and its way back to
reduction.py: the same results whichever way a contribution goes.

- section given positionally, by keyword, through self.reduce, and None;
- allreduce over the whole array and over a section, on every member;
- Python ints whose sum or product leaves int64 (within one PE's part and
  across PEs) are exact, as Python's are; numpy int64 arrays wrap, as numpy's do;
- a member's counters made by the C path travel when it migrates;
- a class whose __getattr__ answers for any name reduces as any other;
- a reducer that differs on a later member (not the PE's first) is an error
  that names both reducers (mode `mismatch`)."""
import sys

import numpy as np

from charmpy import Array, Chare, Future, Reducer, charm, coro

N = 12
BIG = 2 ** 62


class M(Chare):
    def plain(self, r, f):
        self.contribute(self.thisIndex[0] + r, Reducer.sum, f)

    def positional(self, sec, f):
        self.contribute(self.thisIndex[0], Reducer.sum, f, sec)

    def keyword(self, sec, f):
        self.contribute(self.thisIndex[0], Reducer.max, f, section=sec)

    def none_section(self, f):
        self.contribute(self.thisIndex[0], Reducer.sum, f, section=None)

    def via_reduce(self, sec, f):
        self.reduce(f, self.thisIndex[0], Reducer.sum, section=sec)

    def gather(self, f):
        self.contribute(("v", self.thisIndex[0]), Reducer.gather, f)

    @coro
    def allred(self, sec, f):
        got = self.allreduce(self.thisIndex[0] + 1, Reducer.product, section=sec).get()
        self.contribute(got, Reducer.gather, f, section=sec)

    def big(self, f):
        self.contribute(BIG + self.thisIndex[0], Reducer.sum, f)

    def big_prod(self, f):
        self.contribute(2 ** 20, Reducer.product, f)

    def big_list(self, f):
        self.contribute([BIG, self.thisIndex[0]], Reducer.sum, f)

    def np_wrap(self, f):
        self.contribute(np.array([BIG], dtype=np.int64), Reducer.sum, f)

    def move(self, pe):
        self.migrate(pe)

    def mismatch(self, f):
        self.contribute(1, Reducer.max if self.thisIndex[0] == N - 1 else Reducer.sum, f)


class Answers(Chare):
    """A class whose __getattr__ answers for any name: charmpy's own
    attributes on its members (the reduction counters) must not ask it."""

    def __getattr__(self, name):
        if name.startswith("__"):   # (pickle's protocol is its own)
            raise AttributeError(name)
        return 42

    def plain(self, r, f):
        self.contribute(self.thisIndex[0] + r, Reducer.sum, f)

    def move(self, pe):
        self.migrate(pe)


def run(proxy, method, *args):
    f = Future()
    getattr(proxy, method)(*args, f)
    return f.get()


def main(args):
    P = charm.numPes()
    a = Array(M, N)
    charm.awaitCreation(a)
    if len(args) > 1 and args[1] == "mismatch":
        run(a, "plain", 0)
        run(a, "mismatch")
        return
    sec = a[1:N:2]
    odd = list(range(1, N, 2))
    for r in range(3):      # several rounds: the C path from the second member on
        assert run(a, "plain", r) == sum(range(N)) + N * r
        assert run(sec, "positional", sec) == sum(odd)
        assert run(sec, "keyword", sec) == max(odd)
        assert run(a, "none_section") == sum(range(N))
        assert run(sec, "via_reduce", sec) == sum(odd)
        assert run(a, "gather") == [("v", i) for i in range(N)]
        whole = 1
        for i in range(N):
            whole *= i + 1
        assert run(a, "allred", None) == [whole] * N
        part = 1
        for i in odd:
            part *= i + 1
        f = Future()
        sec.allred(sec, f)
        assert f.get() == [part] * len(odd), "section allreduce"
    # Python ints past int64: exact.
    assert run(a, "big") == N * BIG + sum(range(N)), "sum past int64"
    assert run(a, "big_prod") == 2 ** (20 * N), "product past int64"
    assert run(a, "big_list") == [N * BIG, sum(range(N))], "list sum past int64"
    # numpy int64 wraps, as numpy's own sum does.
    want = np.array([BIG], dtype=np.int64)
    with np.errstate(over="ignore"):
        for _ in range(N - 1):
            want = want + np.array([BIG], dtype=np.int64)
    assert list(run(a, "np_wrap")) == list(want), "numpy int64 wraps"
    # Members move mid-stream: their counters go with them.
    for i in range(N):
        a[i].move((i + 1) % P)
    charm.waitQD()
    for r in range(3):
        assert run(a, "plain", r) == sum(range(N)) + N * r
        assert run(sec, "positional", sec) == sum(odd)
    b = Array(Answers, N)
    charm.awaitCreation(b)
    for r in range(3):
        assert run(b, "plain", r) == sum(range(N)) + N * r, "a class with __getattr__"
    for i in range(N):
        b[i].move((i + 1) % P)
    charm.waitQD()
    assert run(b, "plain", 5) == sum(range(N)) + N * 5, "a class with __getattr__, moved"
    print("contrib_paths ok on", P, "PEs")
    print("OK contrib_paths")


charm.start(lambda args: (main(args), charm.exit()))
