"""mpi4py peer of charm_bench.py (bench/py/run.sh runs it on 2 ranks).

    mpirun -n 2 python bench/py/mpi_bench.py latency [ITERS]     comm.send/recv ping-pong of an int
    mpirun -n 2 python bench/py/mpi_bench.py rate [N]            comm.isend of an int, rank 0 -> 1,
                                                                  waitall every 256
    mpirun -n 2 python bench/py/mpi_bench.py bw [BYTES] [ITERS]  Send/Recv of a float64 array

Same repetitions and output as charm_bench.py: `# rep` lines, then
`MODE MEDIAN`, printed by rank 0.
"""
import os
import statistics
import sys
import time

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
REPS = int(os.environ.get("BENCH_REPS", "5"))
REP_TIME = float(os.environ.get("BENCH_TIME", "0.2"))
WINDOW = 256
now = time.perf_counter


def calibrate(run_batch, start=64):
    """Rank 0 decides; both ranks run the same batches."""
    n = start
    while True:
        t = run_batch(n)
        if comm.bcast(t >= 0.03 if rank == 0 else None, root=0):
            break
        n *= 2
    t = run_batch(n)
    return comm.bcast(max(1, int(n * REP_TIME / max(t, 1e-9))) if rank == 0 else None,
                      root=0)


def report(mode, values, unit, fmt="{:.3f}"):
    if rank != 0:
        return
    for i, v in enumerate(values):
        print(f"# rep {i} {fmt.format(v)} {unit}")
    print(f"{mode} {fmt.format(statistics.median(values))}", flush=True)


def latency(args):
    def batch(n):
        comm.Barrier()
        t0 = now()
        if rank == 0:
            for i in range(n):
                comm.send(i, dest=1, tag=1)
                i = comm.recv(source=1, tag=1)
        else:
            for _ in range(n):
                x = comm.recv(source=0, tag=1)
                comm.send(x, dest=0, tag=1)
        return now() - t0
    iters = int(args[0]) if args else calibrate(batch)
    if args:
        batch(max(1, iters // 10))
    vals = [batch(iters) / iters / 2 * 1e6 for _ in range(REPS)]
    if rank == 0:
        print(f"# iters {iters}")
    report("latency", vals, "us")


def rate(args):
    n = int(args[0]) if args else 200000

    def batch(k):
        comm.Barrier()
        t0 = now()
        if rank == 0:
            # In windows: Open MPI slows down quadratically with tens of
            # thousands of isends outstanding (10k calls/s at 40000).
            for start in range(0, k, WINDOW):
                reqs = [comm.isend(i, dest=1, tag=2)
                        for i in range(start, min(k, start + WINDOW))]
                MPI.Request.waitall(reqs)
            got = comm.recv(source=1, tag=3)
            assert got == k, (got, k)
        else:
            count = 0
            for _ in range(k):
                comm.recv(source=0, tag=2)
                count += 1
            comm.send(count, dest=0, tag=3)
        return now() - t0
    batch(max(1, n // 4))
    batch(max(1, n // 4))
    vals = [n / batch(n) for _ in range(REPS)]
    if rank == 0:
        print(f"# calls {n}")
    report("rate", vals, "calls/s", "{:.0f}")


def bw(args):
    size = int(args[0]) if args else 8 << 20
    arr = np.arange(max(1, size // 8), dtype=np.float64)
    buf = np.empty_like(arr)

    def batch(n):
        comm.Barrier()
        t0 = now()
        if rank == 0:
            for _ in range(n):
                comm.Send(arr, dest=1, tag=4)
                comm.Recv(buf, source=1, tag=4)
            assert buf[-1] == arr[-1]
        else:
            for _ in range(n):
                comm.Recv(buf, source=0, tag=4)
                comm.Send(buf, dest=0, tag=4)
        return now() - t0
    iters = int(args[1]) if len(args) > 1 else calibrate(batch, start=4)
    if len(args) > 1:
        batch(max(1, iters // 4))
    vals = [2 * iters * arr.nbytes / batch(iters) / 1e9 for _ in range(REPS)]
    if rank == 0:
        print(f"# bytes {arr.nbytes} iters {iters}")
    report("bw", vals, "GB/s")


def main():
    modes = {"latency": latency, "rate": rate, "bw": bw}
    args = sys.argv[1:]
    if not args or args[0] not in modes or comm.Get_size() != 2:
        if rank == 0:
            print(__doc__, file=sys.stderr)
        sys.exit(2)
    modes[args[0]](args[1:])


main()
