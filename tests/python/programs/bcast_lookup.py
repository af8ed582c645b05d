"""A broadcast calls what member.method(...) would call on every member
(dispatch.c looks the method up once for the members' class): a member
holding an attribute of the method's name gets that instead, a class whose
method is replaced during the broadcast calls the new one from then on
(members on a PE run in the order they were inserted here: by index),
staticmethods and methods of a base class work, over a whole array, a
section of it and a group."""
from charmpy import *


def new_step(self, at):
    return ("new", self.thisIndex[0], charm.myPe())


class Base(Chare):
    def inherited(self, v):
        return ("base", v)


class Elem(Base):
    def __init__(self):
        if self.thisIndex[0] % 3 == 1:
            # A member's own attribute shadows the class's method.
            self.hello = lambda tag: ("own", tag, self.thisIndex[0])

    def hello(self, tag):
        return ("class", tag, self.thisIndex[0])

    def step(self, at):
        # The class changes during the broadcast: the members after this one
        # on its PE call the new method (as Python would).
        if self.thisIndex[0] == at:
            Elem.step = new_step
        return ("old", self.thisIndex[0], charm.myPe())

    def restore(self):
        Elem.step = Elem._orig

    @staticmethod
    def plain(x):
        return ("static", x)


Elem._orig = Elem.__dict__["step"]


class G(Chare):
    def hello(self, tag):
        return ("group", tag, self.thisIndex)


def expect(i, tag):
    return ("own" if i % 3 == 1 else "class", tag, i)


def main(args):
    n = 24
    a = Array(Elem, n)
    charm.awaitCreation(a)
    got = a.hello("t1", ret=True).get()
    assert got == [expect(i, "t1") for i in range(n)], got
    assert a.inherited(5, ret=True).get() == [("base", 5)] * n
    assert a.plain(7, ret=True).get() == [("static", 7)] * n
    sec = a[0:n:2]
    got = sec.hello("s", ret=True).get()
    assert sorted(got) == sorted(expect(i, "s") for i in range(0, n, 2)), got
    # Replace the class's method from within a broadcast of it.
    for at in (0, n // 2 + 1, n - 1):
        got = a.step(at, ret=True).get()
        pe_at = got[at][2]
        for kind, i, pe in got:
            want = "new" if pe == pe_at and i > at else "old"
            assert kind == want, (at, pe_at, kind, i, pe)
        a.restore(awaitable=True).get()
    g = Group(G)
    charm.awaitCreation(g)
    got = g.hello("g", ret=True).get()
    assert got == [("group", "g", pe) for pe in range(charm.numPes())], got
    print("OK bcast_lookup")
    exit()


charm.start(main)
