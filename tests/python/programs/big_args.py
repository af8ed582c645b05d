"""Big arguments between PEs (issue 4): under mpi they are sent from the
caller's own memory (cp_send_segs), yet arguments stay passed by value.
Every PE sends every other PE, all at once, a call with several big
buffers (numpy arrays of several dtypes and shapes, bytes, bytearray, an
array inside a pickled object) among small values and keyword arguments,
and a call whose big array is a non-contiguous slice (gathered by a copy),
then overwrites its arrays at once: each receiver checks every value
against what was sent.
Prints "in_place=<0|1> P=<n>", then "OK big_args"."""
import numpy as np

from charmpy import *
from charmpy import _charmpy

N = 3 << 17  # 384 Ki elements: 3 MiB of float64


class Box:
    def __init__(self, arr):
        self.arr = arr


def payload(src, dst):
    """What src sends dst."""
    seed = src * 1000 + dst
    a = np.arange(N, dtype=np.float64) + seed
    b = (np.arange(2 * N, dtype=np.int32) * 7 + seed).reshape(2, N)
    c = np.arange(N, dtype=np.float32) + seed
    d = bytes((seed + i) % 256 for i in range(70000))
    e = bytearray(d[::-1])
    f = np.full(100, seed, dtype=np.int64)  # small: inline
    box = Box(np.arange(N, dtype=np.int64) * 3 + seed)
    return (a, b, c, d, e, f, box)


def strided(src, dst):
    return (np.arange(4 * N, dtype=np.float64) + src * 1000 + dst)[::4]


class Peer(Chare):
    def __init__(self):
        self.got = 0

    def start(self, done):
        self.done = done
        me = charm.myPe()
        for dst in range(charm.numPes()):
            if dst == me:
                continue
            args = payload(me, dst)
            self.thisProxy[dst].take(me, *args[:5], small=args[5], box=args[6], tag="x" * 10)
            # By value: changing the arrays now must not change what dst gets.
            for arr in (args[0], args[1], args[6].arr):
                arr[...] = -1
            args[4][:] = bytes(len(args[4]))
            s = strided(me, dst)
            self.thisProxy[dst].take_strided(me, s)
            s[...] = -1
        self.maybe_done()

    def take_strided(self, src, s):
        assert np.array_equal(s, strided(src, charm.myPe())), f"strided from PE {src} differs"
        self.got += 1
        self.maybe_done()

    def take(self, src, a, b, c, d, e, small, box, tag):
        want = payload(src, charm.myPe())
        got = (a, b, c, d, e, small, box)
        for i, (g, w) in enumerate(zip(got, want)):
            if isinstance(w, Box):
                g, w = g.arr, w.arr
            if isinstance(w, np.ndarray):
                assert g.dtype == w.dtype and g.shape == w.shape, (i, g.dtype, g.shape)
                assert np.array_equal(g, w), f"argument {i} from PE {src} differs"
            else:
                assert type(g) is type(w) and g == w, f"argument {i} from PE {src} differs"
        assert tag == "x" * 10
        self.got += 1
        self.maybe_done()

    def maybe_done(self):
        if self.got == 2 * (charm.numPes() - 1) and hasattr(self, "done"):
            self.contribute(None, None, self.done)
            del self.done


def main(args):
    g = Group(Peer)
    f = Future()
    g.start(f)
    f.get()
    in_place = int(_charmpy.transport() == "mpi")
    print(f"in_place={in_place} P={charm.numPes()}")
    print("OK big_args")
    charm.exit()


charm.start(main)
