"""The pools users know, beside charm.pool (bench/py/pool_run.sh runs them
in the same run): N trivial tasks (20000) at chunksize 1 on 2 workers,
3 repetitions after a warm-up; prints `pool overhead: X us a task`.

    python pool_peers.py futures [N]     concurrent.futures.ProcessPoolExecutor(2)
    python pool_peers.py futures-submit [N]
                                         ProcessPoolExecutor(2).submit, one call a task
                                         (prints `pool submit: X us a task`)
    python pool_peers.py mp [N]          multiprocessing.Pool(2).map
    python pool_peers.py ray [N]         Ray tasks (num_cpus=2)
    python pool_peers.py dask [N]        Dask futures, client.map (2 worker processes)
    mpirun -np 3 python -m mpi4py.futures pool_peers.py mpi4py [N]
                                         mpi4py.futures.MPIPoolExecutor (2 workers)
"""
import os
import statistics
import sys
import time

now = time.perf_counter
REPS = 3


def square(x):
    return x * x


def reps(run):
    vals = [run() for _ in range(REPS)]
    for v in vals:
        print(f"# rep {v:.6g}")
    return statistics.median(vals)


def measure(name, map_fn, n):
    map_fn(range(200))

    def run():
        t0 = now()
        r = map_fn(range(n))
        dt = now() - t0
        assert r[-1] == (n - 1) ** 2
        return dt / n * 1e6
    print(f"pool overhead: {reps(run):.2f} us a task ({n} trivial tasks, chunksize 1, "
          f"2 workers, {name})")


def main():
    which = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    if which == "futures":
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(2) as ex:
            measure("ProcessPoolExecutor", lambda it: list(ex.map(square, it, chunksize=1)), n)
    elif which == "futures-submit":
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(2) as ex:
            def run():
                t0 = now()
                r = [f.result() for f in [ex.submit(square, i) for i in range(n)]]
                dt = now() - t0
                assert r[-1] == (n - 1) ** 2
                return dt / n * 1e6
            [f.result() for f in [ex.submit(square, i) for i in range(200)]]
            print(f"pool submit: {reps(run):.2f} us a task ({n} submit calls, 2 workers, "
                  "ProcessPoolExecutor)")
    elif which == "mp":
        import multiprocessing
        with multiprocessing.Pool(2) as p:
            measure("multiprocessing.Pool", lambda it: p.map(square, it, chunksize=1), n)
    elif which == "ray":
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        import ray
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False, configure_logging=False)
        rsq = ray.remote(square)
        measure(f"Ray {ray.__version__} tasks", lambda it: ray.get([rsq.remote(x) for x in it]), n)
        ray.shutdown()
    elif which == "dask":
        from distributed import Client, LocalCluster
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None, silence_logs=50)
        client = Client(cluster)
        # pure=False: every call is a task (else equal arguments share one)
        measure("Dask futures", lambda it: client.gather(client.map(square, list(it),
                                                                    pure=False)), n)
        client.close()
        cluster.close()
    elif which == "mpi4py":
        from mpi4py.futures import MPIPoolExecutor
        with MPIPoolExecutor() as ex:
            measure("mpi4py.futures", lambda it: list(ex.map(square, it, chunksize=1)), n)
    else:
        raise SystemExit(f"unknown pool {which!r}: futures, futures-submit, mp, ray, dask or mpi4py")


if __name__ == "__main__":
    main()
