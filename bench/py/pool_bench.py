"""charm.pool (issue 11's targets), one source for charmpy and charm4py
(POOL_LIB=charm4py imports charm4py).

    charmrun -n 2 bench/py/pool_bench.py overhead [N]   N trivial tasks (20000) at
                                                        chunksize 1: us a task
    charmrun -n 2 bench/py/pool_bench.py efficiency     1 ms tasks on every PE: the
                                                        ideal time over the measured
    charmrun -n 2 bench/py/pool_bench.py submit [N]     N submit(square, i) at once,
                                                        then every .get(): us a task
    charmrun -n 2 bench/py/pool_bench.py jobs           concurrent jobs of different
                                                        sizes and ncores (the CharmPy
                                                        paper's experiment) against
                                                        the ideal packing

Each mode runs 3 repetitions after a warm-up and prints its figures on a
line `pool MODE: ...` (the median) and `# rep ...` lines."""
import os
import statistics
import sys
import time

if os.environ.get("POOL_LIB") == "charm4py":
    from charm4py import charm
else:
    from charmpy import charm

now = time.perf_counter
REPS = 3


def square(x):
    return x * x


def busy(secs):
    """A task of `secs` seconds of CPU."""
    end = now() + secs
    while now() < end:
        pass
    return secs


def reps(run):
    vals = [run() for _ in range(REPS)]
    for v in vals:
        print(f"# rep {v:.6g}")
    return statistics.median(vals)


def overhead(n):
    charm.pool.map(square, range(200))      # warm-up (charm4py starts its pool here)

    def run():
        t0 = now()
        r = charm.pool.map(square, range(n), chunksize=1)
        dt = now() - t0
        assert r[-1] == (n - 1) ** 2
        return dt / n * 1e6
    print(f"pool overhead: {reps(run):.2f} us a task ({n} trivial tasks, chunksize 1, "
          f"{charm.numPes()} PEs)")


def submit(n):
    """One call a task: what submit/Task cost (ProcessPoolExecutor.submit in
    pool_peers.py is its peer)."""
    [f.get() for f in [charm.pool.submit(square, i) for i in range(200)]]

    def run():
        t0 = now()
        fs = [charm.pool.submit(square, i) for i in range(n)]
        r = [f.get() for f in fs]
        dt = now() - t0
        assert r[-1] == (n - 1) ** 2
        return dt / n * 1e6
    print(f"pool submit: {reps(run):.2f} us a task ({n} submit calls, {charm.numPes()} PEs)")


def efficiency():
    d, n = 0.001, 500 * charm.numPes()
    charm.pool.map(busy, [d] * 20)

    def run():
        t0 = now()
        charm.pool.map(busy, [d] * n, chunksize=1)
        return n * d / charm.numPes() / (now() - t0)
    print(f"pool efficiency: {100 * reps(run):.1f}% ({n} tasks of 1 ms, chunksize 1, "
          f"{charm.numPes()} PEs)")


def jobs():
    """Jobs of 1 ms tasks submitted together: (ncores, tasks) each. The
    ideal packing's time is the larger of the total work over the PEs and
    the longest job's work over its ncores."""
    P = charm.numPes()
    spec = [(1, 400 * P // 2), (1, 200 * P // 2), (P, 400 * P // 2), (max(1, P // 2), 300)]
    d = 0.001
    ideal = max(sum(k for _, k in spec) * d / P, max(k * d / c for c, k in spec))
    charm.pool.map(busy, [d] * 20)

    def run():
        t0 = now()
        fs = [charm.pool.map_async(busy, [d] * k, chunksize=1, ncores=c) for c, k in spec]
        for f in fs:
            f.get()
        return (now() - t0) / ideal
    print(f"pool jobs: {reps(run):.3f}x the ideal packing ({ideal:.3f} s; jobs of "
          f"(ncores, 1 ms tasks) {spec}, {P} PEs)")


def main(args):
    mode = args[1] if len(args) > 1 else "overhead"
    if mode == "overhead":
        overhead(int(args[2]) if len(args) > 2 else 20000)
    elif mode == "submit":
        submit(int(args[2]) if len(args) > 2 else 20000)
    elif mode == "efficiency":
        efficiency()
    elif mode == "jobs":
        jobs()
    else:
        print(f"unknown mode {mode!r}: overhead, submit, efficiency or jobs", file=sys.stderr)
        charm.exit(2)
    charm.exit()


charm.start(main)
