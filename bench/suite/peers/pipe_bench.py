"""The standard library's multiprocessing Pipe as a peer, and plain Python
objects as the baseline of the creation benchmark (run by run.py).

    python pipe_bench.py latency [sizes=8,64,...]   conn.send/recv (pickled) ping-pong, parent <-> child
    python pipe_bench.py rate [window=64]           windows of conn.send(1), one ack a window
    python pipe_bench.py bw [sizes=...] [window=8]  send_bytes of numpy arrays / recv_bytes_into
    python pipe_bench.py create n=1000000           n plain objects (index tuple each) in a list

Method and output: ../common.py.
"""
import gc
import multiprocessing as mp
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402
from common import emit, measure, now, one_way_us  # noqa: E402

LAT_SIZES = (8, 64, 512, 4096, 32768, 262144, 2097152, 16777216)
BW_SIZES = (4096, 65536, 1048576, 16777216)


def child(conn, kind, window, nbytes):
    """The other process: echo, count-and-acknowledge, or receive arrays."""
    if kind == "echo":
        while (x := conn.recv()) is not None:
            conn.send(x)
    elif kind == "rate":
        count = 0
        while conn.recv() is not None:
            count += 1
            if count == window:
                count = 0
                conn.send(True)
    else:
        import numpy as np
        buf = np.empty(nbytes, dtype=np.uint8)
        count = 0
        while conn.recv_bytes_into(buf) == nbytes:
            count += 1
            if count == window:
                count = 0
                conn.send(True)


class Peer:
    def __init__(self, kind, window=0, nbytes=0):
        self.conn, theirs = mp.Pipe()
        self.proc = mp.Process(target=child, args=(theirs, kind, window, nbytes), daemon=True)
        self.proc.start()

    def close(self, stop):
        stop(self.conn)
        self.proc.join(10)


def latency(opts):
    p = Peer("echo")
    conn = p.conn
    for size in common.sizes_arg(opts["sizes"], LAT_SIZES):
        msg = common.payload(size)

        def batch(n):
            t0 = now()
            for _ in range(n):
                conn.send(msg)
                conn.recv()
            return now() - t0
        n, vals = measure(batch, one_way_us)
        emit("latency", vals, "us", size=size, iters=n)
    p.close(lambda c: c.send(None))


def rate(opts):
    w = int(opts["window"] or common.WINDOW)
    p = Peer("rate", w)
    conn = p.conn

    def batch(k):
        t0 = now()
        for _ in range(k):
            for _ in range(w):
                conn.send(1)
            conn.recv()
        return now() - t0
    n, vals = measure(batch, lambda k, t: k * w / t)
    emit("rate", vals, "msg/s", size=8, window=w, iters=n * w)
    p.close(lambda c: c.send(None))


def bw(opts):
    import numpy as np
    w = int(opts["window"] or common.BW_WINDOW)
    for size in common.sizes_arg(opts["sizes"], BW_SIZES):
        arr = np.arange(max(1, size // 8), dtype=np.float64)
        p = Peer("bw", w, arr.nbytes)
        conn, view = p.conn, memoryview(arr).cast("B")

        def batch(k):
            t0 = now()
            for _ in range(k):
                for _ in range(w):
                    conn.send_bytes(view)
                conn.recv()
            return now() - t0
        n, vals = measure(batch, lambda k, t: k * w * arr.nbytes / t / 1e9)
        emit("bw", vals, "GB/s", size=arr.nbytes, window=w, iters=n * w)
        p.close(lambda c: c.send_bytes(b"end"))


class Plain:
    pass


def create(opts):
    """The baseline for 'create': what n plain Python objects, each with the
    attribute an array element has (its index tuple), cost in one process."""
    n = int(opts["n"])
    gc.collect()
    r0 = common.rss()
    t0 = now()
    objs = []
    for i in range(n):
        o = Plain()
        o.thisIndex = (i,)
        objs.append(o)
    t = now() - t0
    gc.collect()
    r1 = common.rss()
    emit("create", [t], "s", n=n)
    emit("create_mem", [(r1 - r0) / n], "B", n=n)


def main():
    modes = {"latency": latency, "rate": rate, "bw": bw, "create": create}
    mode, opts = common.parse_args(sys.argv[1:], sizes="", window="", n="1000")
    if mode not in modes:
        common.fail(f"unknown mode {mode!r} (one of {', '.join(modes)})")
    modes[mode](opts)


if __name__ == "__main__":
    main()
