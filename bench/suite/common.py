"""What every program of the comparison suite shares (standard library only).

Method, the same for every system:
- warm-up: batches of growing size until one lasts WARM_TIME (30 ms);
- one more batch sets the count of iterations for a repetition of about
  SUITE_TIME seconds (0.1 by default);
- SUITE_REPS repetitions (5), each reported; the driver takes the median,
  min and max.

A program prints human lines starting with `#` and one machine line per
figure:

    RESULT {"bench": "latency", "size": 8, "unit": "us", "reps": [...], ...}

which the driver (run.py) reads. `system` and `pes` are added by the driver.
"""
import json
import os
import statistics
import sys
import time

REPS = int(os.environ.get("SUITE_REPS", "5"))
REP_TIME = float(os.environ.get("SUITE_TIME", "0.1"))
WARM_TIME = min(0.03, REP_TIME)
WINDOW = int(os.environ.get("SUITE_WINDOW", "64"))        # rate: calls in flight
BW_WINDOW = int(os.environ.get("SUITE_BW_WINDOW", "8"))   # bw: arrays in flight
now = time.perf_counter


def calibrate(batch, start=1, share=None):
    """batch(n) -> seconds. Warm up with growing batches, then return the
    count that lasts about REP_TIME. `share(x)` makes every process of an
    SPMD program take the decision of the first (e.g. an MPI bcast); all of
    them must call calibrate with the same batches."""
    share = share or (lambda x: x)
    n = start
    while True:
        t = batch(n)
        if share(t >= WARM_TIME):
            break
        n *= 2
    t = batch(n)
    return share(max(1, int(n * REP_TIME / max(t, 1e-9))))


def measure(batch, convert, start=1, share=None, iters=None):
    """Calibrate (unless iters is given, then one warm-up batch), run REPS
    repetitions; convert(n, seconds) -> the figure. Returns (n, figures)."""
    if iters is None:
        iters = calibrate(batch, start, share)
    else:
        batch(max(1, iters // 4))
    return iters, [convert(iters, batch(iters)) for _ in range(REPS)]


def emit(bench, values, unit, **keys):
    """One figure: its repetitions and summary, as a RESULT line."""
    rec = {"bench": bench, "unit": unit, **keys,
           "median": statistics.median(values), "min": min(values),
           "max": max(values), "reps": values}
    print("RESULT " + json.dumps(rec), flush=True)
    return rec


def sizes_arg(text, default):
    return [int(s) for s in text.split(",")] if text else list(default)


def rss():
    """Resident set size of this process, bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def payload(size):
    """The latency benchmarks' message: a bytes object of `size` bytes."""
    return b"x" * size


def one_way_us(n, t):
    """Ping-pong of n round trips in t seconds -> one-way latency in µs."""
    return t / n / 2 * 1e6


def parse_args(argv, **defaults):
    """Tiny `key=value` argument parser shared by the programs, so that the
    driver passes the same arguments to every system:
    prog.py MODE sizes=8,64 window=64 ..."""
    if not argv:
        raise SystemExit("usage: prog.py MODE [key=value ...]")
    mode, opts = argv[0], dict(defaults)
    for a in argv[1:]:
        k, _, v = a.partition("=")
        if k not in defaults:
            raise SystemExit(f"unknown option {k!r} (known: {', '.join(defaults)})")
        opts[k] = v
    return mode, opts


def log(*a):
    print("#", *a, flush=True)


def fail(msg):
    print(f"error: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(1)
