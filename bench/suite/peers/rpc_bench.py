"""Peers that call methods of remote objects: Ray actors, Dask actors, and
the standard library's concurrent.futures (a process pool: tasks, not
actors, the nearest equivalent). One program, one adapter per system.

    python rpc_bench.py ray|dask|futures latency [sizes=8,64,...]  echo(x) round trips
    python rpc_bench.py ray|dask|futures rate [window=64]          windows of take(1) calls
    python rpc_bench.py ray|dask|futures bw [sizes=...] [window=8] windows of take(array) calls

The driver (this process) calls an actor in another process; latency is
half the round trip of a call that returns its argument. Ray and Dask run a
local cluster of 2 workers on 127.0.0.1 only, without dashboards or usage
statistics, started and shut down here within bounded times. Method and
output: ../common.py; a `startup` figure gives the seconds to bring the
system up.
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402
from common import emit, log, measure, now, one_way_us  # noqa: E402

LAT_SIZES = (8, 64, 512, 4096, 32768, 262144, 2097152, 16777216)
BW_SIZES = (4096, 65536, 1048576, 16777216)
WORKERS = 2
START_TIMEOUT = int(os.environ.get("SUITE_START_TIMEOUT", "120"))


class Echo:
    """The remote object."""

    def __init__(self):
        self.count = 0

    def echo(self, x):
        return x

    def take(self, x):
        self.count += 1


def echo(x):        # concurrent.futures runs functions, not methods
    return x


def take(x):
    return None


class Ray:
    def __init__(self):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        # Ray turns 127.0.0.1 into this host's outward address unless it
        # believes it runs a single-machine session (what it does on macOS
        # and Windows): this keeps every connection on the loopback.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        import ray
        self.ray = ray
        ray.init(num_cpus=WORKERS, include_dashboard=False, _node_ip_address="127.0.0.1",
                 object_store_memory=2 << 30, log_to_driver=False, configure_logging=False)
        self.actor = ray.remote(Echo).remote()
        ray.get(self.actor.echo.remote(0))
        self.version = ray.__version__

    def call(self, method, arg):
        return getattr(self.actor, method).remote(arg)

    def wait(self, futures):
        return self.ray.get(futures)

    def stop(self):
        self.ray.shutdown()


class Dask:
    def __init__(self):
        import dask
        from distributed import Client, LocalCluster
        self.cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                                    host="127.0.0.1", dashboard_address=None,
                                    scheduler_port=0, silence_logs=50)
        self.client = Client(self.cluster)
        self.actor = self.client.submit(Echo, actor=True).result()
        self.actor.echo(0).result()
        self.version = dask.__version__

    def call(self, method, arg):
        return getattr(self.actor, method)(arg)

    def wait(self, futures):
        return [f.result() for f in futures]

    def stop(self):
        self.client.close(timeout=20)
        self.cluster.close(timeout=20)


class Futures:
    def __init__(self):
        from concurrent.futures import ProcessPoolExecutor
        # one worker: the calls of a benchmark go to one other process, as
        # they go to one actor with Ray and Dask
        self.pool = ProcessPoolExecutor(max_workers=1)
        self.pool.submit(echo, 0).result()
        self.fns = {"echo": echo, "take": take}
        self.version = "stdlib"

    def call(self, method, arg):
        return self.pool.submit(self.fns[method], arg)

    def wait(self, futures):
        return [f.result() for f in futures]

    def stop(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


def latency(sysm, opts):
    for size in common.sizes_arg(opts["sizes"], LAT_SIZES):
        msg = common.payload(size)

        def batch(n):
            t0 = now()
            for _ in range(n):
                sysm.wait([sysm.call("echo", msg)])
            return now() - t0
        n, vals = measure(batch, one_way_us)
        emit("latency", vals, "us", size=size, iters=n)


def windows(sysm, arg, w, convert):
    def batch(k):
        t0 = now()
        for _ in range(k):
            sysm.wait([sysm.call("take", arg) for _ in range(w)])
        return now() - t0
    return measure(batch, convert)


def rate(sysm, opts):
    w = int(opts["window"] or common.WINDOW)
    n, vals = windows(sysm, 1, w, lambda k, t: k * w / t)
    emit("rate", vals, "msg/s", size=8, window=w, iters=n * w)


def bw(sysm, opts):
    import numpy as np
    w = int(opts["window"] or common.BW_WINDOW)
    for size in common.sizes_arg(opts["sizes"], BW_SIZES):
        arr = np.arange(max(1, size // 8), dtype=np.float64)
        n, vals = windows(sysm, arr, w, lambda k, t: k * w * arr.nbytes / t / 1e9)
        emit("bw", vals, "GB/s", size=arr.nbytes, window=w, iters=n * w)


def timeout(signum, frame):
    raise TimeoutError(f"did not start within {START_TIMEOUT} s")


def main():
    systems = {"ray": Ray, "dask": Dask, "futures": Futures}
    modes = {"latency": latency, "rate": rate, "bw": bw}
    if len(sys.argv) < 2 or sys.argv[1] not in systems:
        common.fail(f"usage: rpc_bench.py {'|'.join(systems)} MODE [key=value ...]")
    mode, opts = common.parse_args(sys.argv[2:], sizes="", window="")
    if mode not in modes:
        common.fail(f"unknown mode {mode!r} (one of {', '.join(modes)})")
    signal.signal(signal.SIGALRM, timeout)
    signal.alarm(START_TIMEOUT)
    t0 = now()
    try:
        sysm = systems[sys.argv[1]]()
    except Exception as e:
        common.fail(f"{sys.argv[1]} could not start: {type(e).__name__}: {e}")
    signal.alarm(0)
    log(f"{sys.argv[1]} {sysm.version} up in {now() - t0:.2f} s")
    emit("startup", [now() - t0], "s")
    try:
        modes[mode](sysm, opts)
    finally:
        signal.alarm(START_TIMEOUT)     # shutting down is bounded too
        sysm.stop()
        signal.alarm(0)


if __name__ == "__main__":
    main()
