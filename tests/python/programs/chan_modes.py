"""Channels: Channel(self, remote=proxy), send(*values), recv() in a
coroutine. Usage: chan_modes.py MODE. Every mode prints `OK chan_modes` last.

  basic    two single chares on the first and last PE: 200 tuples one way,
           an answer the other way, in order; send() of no value gives
           None, of one value that value, of several a tuple
  numpy    arrays of 8 B to 8 MiB (float64, int32, 2-D, Fortran order) and
           mixed values (dict, str, None, bytes) through a channel: equal
           values, arrays received as numpy arrays; from PE 0 to the last PE
           and back, and between two chares of one PE
  ring     an array of 4P+1 elements, each with two channels to each of its
           neighbours (left and right, the second pair made in the other
           order): 30 iterations of halo exchange, each value checked
  late     the receiver makes its end 0.3 s after the sender made its end
           and sent 50 values (kept until the end is made), then the other
           way; many channels between one pair, made in the same order
  iwait    a collector with channels from 2P+1 senders (some on its PE) and
           a future: charm.iwait yields each as it becomes ready, every value
           arrives once, the future too
  migrate  a sender and a receiver array element that both migrate to a
           random PE after every round of 40 values (messages in flight
           while they move): every value in order
  storm    3P senders each send 300 values to one receiver through 3
           channels each, while half of the senders migrate in the middle:
           every channel's values in order, the sum right
  errors   recv() outside a coroutine, remote that is not a chare's proxy,
           local that is not self's, two coroutines in recv() on one
           channel, an end sent as an argument to another PE: each a clear
           error, and the program goes on
"""
import random
import sys

import numpy as np

from charmpy import Array, Chare, Channel, Future, charm, coro


class Pair(Chare):
    def __init__(self):
        pass

    @coro
    def basic(self, other, first):
        ch = Channel(self, remote=other)
        if first:
            for i in range(200):
                ch.send(i, str(i))
            ch.send()
            ch.send([1, 2])
            return ch.recv()
        got = [ch.recv() for _ in range(200)]
        assert got == [(i, str(i)) for i in range(200)], got[:5]
        assert ch.recv() is None
        assert ch.recv() == [1, 2]
        ch.send("done")
        return None

    @coro
    def numpy(self, other, first, values):
        ch = Channel(self, remote=other)
        if first:
            for v in values:
                ch.send(v)
            back = [ch.recv() for _ in values]
            return back
        for _ in values:
            ch.send(ch.recv())
        return None

    @coro
    def late(self, other, first, nch):
        if first:
            chs = [Channel(self, remote=other) for _ in range(nch)]
            for k, ch in enumerate(chs):
                for i in range(50):
                    ch.send(k, i)
            for k, ch in enumerate(chs):
                assert [ch.recv() for _ in range(20)] == [(k, -i) for i in range(20)]
            return "ok"
        charm.sleep(0.3)
        chs = [Channel(self, remote=other) for _ in range(nch)]
        for k, ch in enumerate(chs):
            assert ch.ready()
            got = [ch.recv() for _ in range(50)]
            assert got == [(k, i) for i in range(50)], (k, got[:3])
        for k, ch in enumerate(chs):
            for i in range(20):
                ch.send(k, -i)
        return "ok"


def check_equal(a, b):
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), type(b)
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
        assert np.array_equal(a, b)
    else:
        assert a == b and type(a) is type(b), (a, b)


def numpy_values():
    rng = np.random.default_rng(7)
    return [np.arange(1, dtype=np.float64), rng.random(1000), np.arange(50, dtype=np.int32),
            rng.random((300, 40)), np.asfortranarray(rng.random((64, 33))),
            rng.random(1 << 20), {"a": 1, "b": [2, 3]}, "text", None, b"bytes" * 100,
            (np.int64(5), 2.5)]


class Ring(Chare):
    def __init__(self, n):
        self.n = n
        self.val = float(self.thisIndex[0])

    @coro
    def run(self, iters, done):
        i, n = self.thisIndex[0], self.n
        left, right = self.thisProxy[(i - 1) % n], self.thisProxy[(i + 1) % n]
        if n == 1:
            done.send(True)
            return
        # Two channels to each neighbour; the second pair is made in the
        # other order on the two sides (pairing is by order per peer).
        if i % 2 == 0:
            l1, r1 = Channel(self, remote=left), Channel(self, remote=right)
        else:
            r1, l1 = Channel(self, remote=right), Channel(self, remote=left)
        l2, r2 = Channel(self, remote=left), Channel(self, remote=right)
        if n == 2:
            # left is right: the k-th channel to the peer pairs with its k-th.
            l1, r1, l2, r2 = (l1, r1, l2, r2) if i == 0 else (r1, l1, r2, l2)
        for it in range(iters):
            l1.send(it, self.val)
            r1.send(it, self.val)
            l2.send(("second", it))
            r2.send(("second", it))
            itl, vl = l1.recv()
            itr, vr = r1.recv()
            assert itl == it and itr == it, (i, it, itl, itr)
            exp_l, exp_r = expected(n, (i - 1) % n, it), expected(n, (i + 1) % n, it)
            assert (vl, vr) == (exp_l, exp_r), (i, it, vl, vr, exp_l, exp_r)
            assert l2.recv() == ("second", it) and r2.recv() == ("second", it)
            self.val = (vl + vr + self.val) / 3
        assert self.val == expected(n, i, iters), (i, self.val)
        done.send(True)


def expected(n, i, it):
    """The value element i holds after `it` iterations, computed directly."""
    vals = [float(k) for k in range(n)]
    for _ in range(it):
        vals = [(vals[(k - 1) % n] + vals[(k + 1) % n] + vals[k]) / 3 for k in range(n)]
    return vals[i]


class Collector(Chare):
    def __init__(self):
        pass

    def fulfil(self, f, v):
        f.send(v)

    @coro
    def collect(self, senders, per, fut_value):
        chans = [Channel(self, remote=s) for s in senders]
        f = Future()
        self.thisProxy.fulfil(f, fut_value)  # an entry method of ours, while we wait
        got = {}
        seen_future = 0
        pending = list(chans) + [f]
        while pending:
            for obj in charm.iwait(pending):
                if obj is f:
                    assert f.get() == fut_value
                    seen_future += 1
                    pending.remove(f)
                    break
                k, j = obj.recv()
                got.setdefault(k, []).append(j)
                if len(got[k]) == per:
                    pending.remove(obj)
                break
        assert seen_future == 1
        assert sorted(got) == list(range(len(senders))), sorted(got)
        for k, js in got.items():
            assert js == list(range(per)), (k, js[:5])
        return len(senders)


class Sender(Chare):
    def __init__(self):
        pass

    @coro
    def send_all(self, collector, k, per, delay):
        ch = Channel(self, remote=collector)
        for j in range(per):
            if delay and j == per // 2:
                charm.sleep(delay)
            ch.send(k, j)


class Mover(Chare):
    """migrate: element 0 sends, element 1 receives; both move every round."""

    def __init__(self):
        self.ch = None
        self.next = 0

    @coro
    def round(self, r, per, seed):
        peer = self.thisProxy[1 - self.thisIndex[0]]
        if self.ch is None:
            self.ch = Channel(self, remote=peer)
        if self.thisIndex[0] == 0:
            for j in range(per):
                self.ch.send(r, j, self.next)
                self.next += 1
        else:
            for j in range(per):
                got = self.ch.recv()
                assert got == (r, j, self.next), (got, (r, j, self.next))
                self.next += 1
        self.migrate(random.Random(seed * 1000 + r * 2 + self.thisIndex[0]).randrange(
            charm.numPes()))
        return charm.myPe()


class StormRecv(Chare):
    def __init__(self):
        pass

    @coro
    def take(self, senders, nch, per):
        chans = [(k, c, Channel(self, remote=s)) for k, s in enumerate(senders)
                 for c in range(nch)]
        total = 0
        for k, c, ch in chans:
            for j in range(per):
                kk, cc, jj = ch.recv()
                assert (kk, cc, jj) == (k, c, j), ((kk, cc, jj), (k, c, j))
                total += jj
        return total


class StormSend(Chare):
    def __init__(self):
        self.chans = None
        self.sent = 0

    def part(self, recv, nch, upto, move_to):
        if self.chans is None:
            self.chans = [Channel(self, remote=recv) for _ in range(nch)]
        k = self.thisIndex[0]
        while self.sent < upto:
            for c, ch in enumerate(self.chans):
                ch.send(k, c, self.sent)
            self.sent += 1
        if move_to is not None:
            self.migrate(move_to)


class Err(Chare):
    def __init__(self):
        self.ch = None

    def make(self, other):
        self.ch = Channel(self, remote=other)

    def plain_recv(self):
        try:
            self.ch.recv()
        except RuntimeError as e:
            assert "coroutine" in str(e) and "@coro" in str(e), str(e)
            return "raised"
        return "no error"

    @coro
    def two_waiters(self):
        self.thisProxy.second_waiter()
        return self.ch.recv()

    @coro
    def second_waiter(self):
        try:
            self.ch.recv()
        except RuntimeError as e:
            assert "another coroutine" in str(e), str(e)
            return
        raise AssertionError("a second recv() on one channel did not raise")

    def bad_remote(self, what):
        try:
            Channel(self, remote=what)
        except TypeError as e:
            assert "remote must be the proxy of one chare" in str(e), str(e)
            return "raised"
        return "no error"

    def bad_local(self, other):
        try:
            Channel(self, remote=other, local=other)
        except ValueError as e:
            assert "local must be the proxy of self" in str(e), str(e)
            return "raised"
        return "no error"

    def send_to(self, v):
        self.ch.send(v)

    def pass_end(self, other):
        try:
            other.send_to(self.ch)
        except TypeError as e:
            assert "channel end cannot be sent" in str(e), str(e)
            return "raised"
        return "no error"


class Main(Chare):
    def __init__(self, args):
        self.run(args)

    @coro
    def run(self, args):
        mode = args[1]
        P = charm.numPes()
        getattr(self, "mode_" + mode)(P)
        print("OK chan_modes")
        charm.exit()

    def mode_basic(self, P):
        a = Chare(Pair, onPE=0)
        b = Chare(Pair, onPE=P - 1)
        fa = a.basic(b, True, ret=True)
        fb = b.basic(a, False, ret=True)
        assert fb.get() is None and fa.get() == "done"

    def mode_numpy(self, P):
        values = numpy_values()
        for pe_a, pe_b in ((0, P - 1), (P - 1, P - 1)):
            a = Chare(Pair, onPE=pe_a)
            b = Chare(Pair, onPE=pe_b)
            fa = a.numpy(b, True, values, ret=True)
            fb = b.numpy(a, False, values, ret=True)
            back = fa.get()
            assert fb.get() is None
            assert len(back) == len(values)
            for x, y in zip(values, back):
                check_equal(x, y)

    def mode_ring(self, P):
        n = 4 * P + 1
        arr = Array(Ring, n, args=[n])
        f = Future(n)
        arr.run(30, f)
        assert f.get() == [True] * n

    def mode_late(self, P):
        for nch in (1, 4):
            a = Chare(Pair, onPE=0)
            b = Chare(Pair, onPE=P - 1)
            fa = a.late(b, True, nch, ret=True)
            fb = b.late(a, False, nch, ret=True)
            assert fa.get() == "ok" and fb.get() == "ok"

    def mode_iwait(self, P):
        n = 2 * P + 1
        coll = Chare(Collector, onPE=P - 1)
        senders = [Chare(Sender, onPE=k % P) for k in range(n)]
        per = 40
        fc = coll.collect(senders, per, "fut", ret=True)
        for k, s in enumerate(senders):
            s.send_all(coll, k, per, 0.05 if k % 3 == 0 else 0)
        assert fc.get() == n

    def mode_migrate(self, P):
        arr = Array(Mover, 2)
        for r in range(25):
            fs = [arr[i].round(r, 40, 11, ret=True) for i in (0, 1)]
            for f in fs:
                assert 0 <= f.get() < P

    def mode_storm(self, P):
        n, nch, per = 3 * P, 3, 300
        recv = Chare(StormRecv, onPE=P - 1)
        senders = Array(StormSend, n)
        ft = recv.take([senders[k] for k in range(n)], nch, per, ret=True)
        for k in range(n):
            senders[k].part(recv, nch, per // 2, (k * 7 + 1) % P if k % 2 == 0 else None)
        for k in range(n):
            senders[k].part(recv, nch, per, None)
        assert ft.get() == n * nch * (per * (per - 1) // 2)

    def mode_errors(self, P):
        a = Chare(Err, onPE=0)
        b = Chare(Err, onPE=P - 1)
        a.make(b, awaitable=True).get()
        b.make(a, awaitable=True).get()
        assert a.plain_recv(ret=True).get() == "raised"
        f = a.two_waiters(ret=True)
        charm.sleep(0.1)
        b.send_to("value", awaitable=True).get()
        assert f.get() == "value"
        arr = Array(Err, 3)
        for bad in (arr, 5, None):
            assert a.bad_remote(bad, ret=True).get() == "raised"
        assert a.bad_local(b, ret=True).get() == "raised"
        if P > 1:
            # An end sent to another PE would be a second sender of its numbers.
            assert a.pass_end(b, ret=True).get() == "raised"
        try:
            Channel(5, remote=b)
        except TypeError as e:
            assert "the chare that owns this end" in str(e), str(e)
        else:
            raise AssertionError("Channel(5, ...) did not raise")


if len(sys.argv) < 2:
    sys.exit(__doc__)
charm.start(Main)
