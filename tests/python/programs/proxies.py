"""Proxies: broadcast and element calls, equality and hashing by target,
pickling, passing proxies as arguments to chares on other PEs (which call
back through them), per-sender ordering, and the errors raised at the call
site: AttributeError for a name that is not an entry method, IndexError for
a bad index, TypeError naming an unserializable argument."""
import pickle
import threading

from charmpy import *


class Node(Chare):
    def __init__(self):
        self.got = []
        self.seq = []

    def ping(self, x):
        return ("pong", x, getattr(self, "thisIndex", None))

    def hit(self, tag):
        self.got.append(tag)

    def hits(self):
        return self.got

    def add(self, i):
        self.seq.append(i)

    def seq_ok(self, n):
        return self.seq == list(range(n))

    def relay(self, proxy, x):
        # A proxy received as an argument works on this PE.
        return proxy.ping(x, ret=True).get()

    relay = coro(relay)

    @coro
    def relay_bcast(self, proxy, tag):
        proxy.hit(tag, awaitable=True).get()

    def same(self, a, b):
        return a == b and hash(a) == hash(b)

    def echo(self, obj):
        return obj

    def take(self, x, other=None):
        pass

    def _private(self):
        return "private"

    def helper_not_called(self):
        pass


def expect(exc_type, fn, *needles):
    try:
        fn()
    except exc_type as e:
        msg = str(e)
        for n in needles:
            assert n in msg, f"{exc_type.__name__} message {msg!r} does not mention {n!r}"
        return msg
    except Exception as e:
        raise AssertionError(f"expected {exc_type.__name__}, got {type(e).__name__}: {e}")
    raise AssertionError(f"expected {exc_type.__name__}, nothing was raised")


def main(args):
    P = charm.numPes()
    last = P - 1
    a = Array(Node, 6)
    b = Array(Node, 6)
    m = Array(Node, (3, 4))
    g = Group(Node)
    c = Chare(Node, onPE=last)
    charm.awaitCreation(a, b, m, g, c)

    # Equality and hashing by target.
    assert a == a and a != b and a[1] == a[1] and a[1] != a[2] and a[1] != b[1]
    assert a[1] == a[(1,)] and m[1, 2] == m[(1, 2)] and m[1, 2] != m[2, 1]
    assert g[0] == g[0] and g[0] != g and g != a and c == c and c != a[0]
    assert hash(a[3]) == hash(a[(3,)]) and hash(m[2, 3]) == hash(m[(2, 3)])
    table = {a: "a", b: "b", a[1]: "a1", m[1, 2]: "m12", g: "g", g[0]: "g0", c: "c"}
    assert table[a] == "a" and table[a[(1,)]] == "a1" and table[m[(1, 2)]] == "m12"
    assert table[g] == "g" and table[g[0]] == "g0" and table[c] == "c" and len(table) == 7
    assert len({a[i] for i in range(6)} | {a[i] for i in range(6)}) == 6

    # Pickling: the copy is the same target.
    for p in (a, a[4], m, m[2, 3], g, g[last], c):
        q = pickle.loads(pickle.dumps(p, 5))
        assert q == p and hash(q) == hash(p), (p, q)
    assert pickle.loads(pickle.dumps(a[4])).ping(1, ret=True).get() == ("pong", 1, (4,))
    assert pickle.loads(pickle.dumps(c)).ping(2, ret=True).get() == ("pong", 2, None)

    # Proxies as arguments, used on the receiving PE; still equal there.
    assert c.relay(a[5], "x", ret=True).get() == ("pong", "x", (5,))
    assert c.relay(m[2, 1], "y", ret=True).get() == ("pong", "y", (2, 1))
    assert c.relay(g[0], "z", ret=True).get() == ("pong", "z", 0)
    assert c.relay(c, "self", ret=True).get() == ("pong", "self", None)
    assert c.same(a[3], a[3], ret=True).get() is True
    assert c.same(a[3], a[4], ret=True).get() is False
    assert c.echo(m[1, 1], ret=True).get() == m[1, 1]
    assert c.echo([a, {"g": g}], ret=True).get() == [a, {"g": g}]
    c.relay_bcast(b, "via-c", awaitable=True).get()
    assert b.hits(ret=True).get() == [["via-c"]] * 6

    # Element calls reach only their target; broadcasts reach everyone.
    a[2].hit("one")
    a.hit("all")
    g[last].hit("g-last")
    g.hit("g-all")
    a.hits(awaitable=True).get()
    got = a.hits(ret=True).get()
    assert got == [["all"], ["all"], ["one", "all"], ["all"], ["all"], ["all"]], got
    got = g.hits(ret=True).get()
    assert got[last] == ["g-last", "g-all"] and all(x == ["g-all"] for x in got[:last]), got

    # Messages from one sender to one target arrive in order.
    n = 2000
    for i in range(n):
        c.add(i)
        a[5].add(i)
    assert c.seq_ok(n, ret=True).get() and a[5].seq_ok(n, ret=True).get()

    # Call-site errors: a name that is not an entry method.
    for p in (a, a[0], m[1, 1], g, g[0], c):
        expect(AttributeError, lambda: p.no_such_method(1), "no_such_method")
        expect(AttributeError, lambda: p._private(), "_private")
    # Bad indices.
    expect(IndexError, lambda: a[6])
    expect(IndexError, lambda: a[-1])
    expect(IndexError, lambda: a[0, 0])
    expect(IndexError, lambda: m[3, 0])
    expect(IndexError, lambda: m[0, 4])
    expect(IndexError, lambda: m[1])
    expect(IndexError, lambda: m[1, 1, 1])
    expect(IndexError, lambda: g[P])
    expect(IndexError, lambda: g[-1])
    # An argument that cannot be serialized (to a chare on another PE, where
    # arguments must be serialized): a TypeError naming the argument and type.
    if P > 1:
        msg = expect(TypeError, lambda: c.take(threading.Lock()), "lock")
        assert "take" in msg or "argument" in msg, msg
        msg = expect(TypeError, lambda: c.take(1, other=threading.Lock()), "other", "lock")
        msg = expect(TypeError, lambda: g.take(threading.Lock()), "lock")
        msg = expect(TypeError, lambda: a[5].take(lambda: 0), "function")
    # Nothing was sent by the failed calls: the targets still work.
    assert c.ping(3, ret=True).get() == ("pong", 3, None)
    assert a[5].ping(4, ret=True).get() == ("pong", 4, (5,))
    print("OK proxies")
    charm.exit()


charm.start(main)
