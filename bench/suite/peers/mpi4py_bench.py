"""mpi4py's side of the suite (run by run.py under mpirun).

    mpirun -np 2 python mpi4py_bench.py latency variant=pickled|buffer [sizes=8,64,...]
    mpirun -np 2 python mpi4py_bench.py rate variant=pickled|buffer [window=64]
    mpirun -np 2 python mpi4py_bench.py bw [sizes=...] [window=8]
    mpirun -np P python mpi4py_bench.py bcast n=1000
    mpirun -np P python mpi4py_bench.py jacobi grid=2048 [check=ITERS]

pickled: the lower-case API (comm.send/recv/isend of Python objects);
buffer: the upper-case API (Send/Recv of numpy buffers, no pickling).
Method and output: ../common.py; rank 0 reports, rank 0 takes every
calibration decision (shared by bcast).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402
from common import emit, log, measure, now, one_way_us  # noqa: E402

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
LAT_SIZES = (8, 64, 512, 4096, 32768, 262144, 2097152, 16777216)
BW_SIZES = (4096, 65536, 1048576, 16777216)


def share(x):
    return comm.bcast(x, root=0)


def report(*a, **k):
    if rank == 0:
        emit(*a, **k)


def two_ranks():
    if size != 2:
        common.fail(f"this benchmark runs on 2 ranks, not {size}")


# ---- latency --------------------------------------------------------------------
def latency(opts):
    two_ranks()
    pickled = opts["variant"] == "pickled"
    for sz in common.sizes_arg(opts["sizes"], LAT_SIZES):
        msg = common.payload(sz)
        arr = np.frombuffer(msg, dtype=np.uint8)
        buf = np.empty_like(arr)

        def batch(n):
            comm.Barrier()
            t0 = now()
            if pickled:
                if rank == 0:
                    for _ in range(n):
                        comm.send(msg, dest=1, tag=1)
                        comm.recv(source=1, tag=1)
                else:
                    for _ in range(n):
                        comm.send(comm.recv(source=0, tag=1), dest=0, tag=1)
            else:
                if rank == 0:
                    for _ in range(n):
                        comm.Send(arr, dest=1, tag=1)
                        comm.Recv(buf, source=1, tag=1)
                else:
                    for _ in range(n):
                        comm.Recv(buf, source=0, tag=1)
                        comm.Send(buf, dest=0, tag=1)
            return now() - t0
        n, vals = measure(batch, one_way_us, share=share)
        report("latency", vals, "us", size=sz, iters=n)


# ---- rate and bw: windows in flight, one acknowledgement a window -----------------
def windows(window, send_window, recv_window, convert):
    def batch(k):
        comm.Barrier()
        t0 = now()
        for _ in range(k):
            if rank == 0:
                send_window()
                comm.recv(source=1, tag=3)
            else:
                recv_window()
                comm.send(None, dest=0, tag=3)
        return now() - t0
    return measure(batch, convert, share=share)


def rate(opts):
    two_ranks()
    w = int(opts["window"] or common.WINDOW)
    if opts["variant"] == "pickled":
        def send_window():
            MPI.Request.waitall([comm.isend(1, dest=1, tag=2) for _ in range(w)])

        def recv_window():
            for _ in range(w):
                comm.recv(source=0, tag=2)
    else:
        one, buf = np.ones(1, dtype=np.int64), np.empty(1, dtype=np.int64)

        def send_window():
            MPI.Request.Waitall([comm.Isend(one, dest=1, tag=2) for _ in range(w)])

        def recv_window():
            for _ in range(w):
                comm.Recv(buf, source=0, tag=2)
    n, vals = windows(w, send_window, recv_window, lambda k, t: k * w / t)
    report("rate", vals, "msg/s", size=8, window=w, iters=n * w)


def bw(opts):
    two_ranks()
    w = int(opts["window"] or common.BW_WINDOW)
    for sz in common.sizes_arg(opts["sizes"], BW_SIZES):
        arr = np.arange(max(1, sz // 8), dtype=np.float64)
        bufs = [np.empty_like(arr) for _ in range(w)]

        def send_window():
            MPI.Request.Waitall([comm.Isend(arr, dest=1, tag=4) for _ in range(w)])

        def recv_window():
            MPI.Request.Waitall([comm.Irecv(b, source=0, tag=4) for b in bufs])
        n, vals = windows(w, send_window, recv_window,
                          lambda k, t: k * w * arr.nbytes / t / 1e9)
        if rank == 1:
            assert bufs[-1][-1] == arr[-1]
        report("bw", vals, "GB/s", size=arr.nbytes, window=w, iters=n * w)


# ---- bcast: the nearest equivalent of a broadcast to n chares and a sum reduction --
class Elem:
    """What a chare of the charm programs holds and does: an index, and a
    method called once a round."""
    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index

    def work(self, v):
        return self.index + v


def bcast(opts):
    n = int(opts["n"])
    lo, hi = n * rank // size, n * (rank + 1) // size
    objs = [Elem(i) for i in range(lo, hi)]
    base = n * (n - 1) // 2
    rounds = [0]

    def batch(k):
        comm.Barrier()
        t0 = now()
        for _ in range(k):
            rounds[0] += 1
            v = comm.bcast(rounds[0] if rank == 0 else None, root=0)
            total = comm.reduce(sum(o.work(v) for o in objs), op=MPI.SUM, root=0)
            if rank == 0:
                assert total == base + n * v, (total, base + n * v)
        return now() - t0
    k, vals = measure(batch, lambda k, t: t / k * 1e6, share=share)
    report("bcast", vals, "us", n=n, iters=k)


# ---- jacobi: the same stencil, one block per rank ------------------------------------
def jacobi(opts):
    grid = int(opts["grid"])
    px, py = MPI.Compute_dims(size, 2)
    if grid % px or grid % py:
        common.fail(f"the grid ({grid}) must divide into {px} x {py} blocks")
    cart = comm.Create_cart((px, py))
    bx, by = cart.Get_coords(cart.Get_rank())
    rows, cols = grid // px, grid // py
    u = np.zeros((rows + 2, cols + 2))
    if bx == 0:
        u[0, :] = 1.0
    up, down = cart.Shift(0, 1)
    left, right = cart.Shift(1, 1)
    # (neighbour, the edge I send it, the halo its edge fills)
    sides = [(nb, edge, halo) for nb, edge, halo in (
        (up, lambda: u[1, 1:-1], (0, slice(1, -1))),
        (down, lambda: u[-2, 1:-1], (-1, slice(1, -1))),
        (left, lambda: u[1:-1, 1], (slice(1, -1), 0)),
        (right, lambda: u[1:-1, -2], (slice(1, -1), -1)),
    ) if nb != MPI.PROC_NULL]
    bufs = [np.empty(cols if isinstance(h[0], int) else rows) for _, _, h in sides]

    def run(iters):
        delta = 0.0
        for _ in range(iters):
            reqs = [cart.Irecv(b, source=nb, tag=7) for b, (nb, _, _) in zip(bufs, sides)]
            reqs += [cart.Isend(edge().copy(), dest=nb, tag=7) for nb, edge, _ in sides]
            MPI.Request.Waitall(reqs)
            for b, (_, _, halo) in zip(bufs, sides):
                u[halo] = b
            new = 0.25 * (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:])
            delta = float(np.abs(new - u[1:-1, 1:-1]).max())
            u[1:-1, 1:-1] = new
        return cart.allreduce(delta, op=MPI.MAX)

    if opts["check"]:
        d = run(int(opts["check"]))
        report("jacobi_check", [d], "max change", grid=grid, iters=int(opts["check"]))
        return

    def batch(k):
        cart.Barrier()
        t0 = now()
        run(k)
        return now() - t0
    k, vals = measure(batch, lambda k, t: t / k * 1e3, start=2, share=share)
    report("jacobi", vals, "ms", grid=grid, blocks=size, iters=k)


def main():
    modes = {"latency": latency, "rate": rate, "bw": bw, "bcast": bcast, "jacobi": jacobi}
    mode, opts = common.parse_args(sys.argv[1:], variant="pickled", sizes="", window="",
                                   n="1000", grid="2048", blocks="", check="")
    if mode not in modes:
        common.fail(f"unknown mode {mode!r} (one of {', '.join(modes)})")
    if rank == 0:
        log(f"mpi4py {mode} {opts['variant']} on {size} ranks, {MPI.Get_library_version().splitlines()[0]}")
    modes[mode](opts)


main()
