"""Checkpoint write and read bandwidth (issue 10's target), beside dd.

    charmrun -n 2 bench/py/ckpt_bench.py write DIR [MIB]   checkpoint MIB MiB of
                                                           chare state (1024)
    charmrun -n 2 bench/py/ckpt_bench.py read DIR +restart DIR

`write` prints `checkpoint write: S s, B MB/s`; the restart prints
`checkpoint read: S s, B MB/s` measured from the program's start to resume
(checking the CRC of every file, reading and unpickling every chare).
bench/py/lb_run.sh runs both beside dd's sequential write and read of the
same amount, in the same run."""
import os
import sys
import time

import numpy as np

from charmpy import Array, Chare, charm, coro

T0 = time.time()
MODE = sys.argv[1]
DIR = sys.argv[2]
MIB = int(sys.argv[3]) if MODE == "write" and len(sys.argv) > 3 else 1024
CHUNK = 16


class Holder(Chare):
    def __init__(self):
        self.data = np.full(CHUNK << 17, float(self.thisIndex[0]))  # CHUNK MiB

    def check(self):
        return float(self.data[0]) == self.thisIndex[0] and self.data.nbytes == CHUNK << 20


class Main(Chare):
    def __init__(self, args):
        self.n = MIB // CHUNK
        self.a = Array(Holder, self.n)
        charm.awaitCreation(self.a)
        self.thisProxy.write()

    @coro
    def write(self):
        t = time.perf_counter()
        charm.checkpoint(DIR, self.thisProxy.resume)
        dt = time.perf_counter() - t
        print(f"checkpoint write: {dt:.3f} s, {self.n * CHUNK * 1.048576 / dt:.0f} MB/s")
        charm.exit()

    @coro
    def resume(self):
        if MODE == "read":
            dt = time.time() - T0
            assert all(self.a.check(ret=True).get()), "a chare's state came back wrong"
            print(f"checkpoint read: {dt:.3f} s, {self.n * CHUNK * 1.048576 / dt:.0f} MB/s")
            charm.exit()


charm.start(Main)
