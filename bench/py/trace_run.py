#!/usr/bin/env python3
"""What tracing and profiling cost (issue 13's targets): the entry-method
ping-pong latency (`chares.py latency sizes=8`) and call rate (`chares.py
rate`) on 2 PEs, plain, with +stats and with +trace FILE, launches
interleaved (BENCH_LAUNCHES rounds, default 3), each figure the median of
its launches' medians. Prints a markdown table with the ratios to plain.
Repetitions last SUITE_TIME (0.03 s here) in every mode, and the traced
runs get a buffer (CHARMPY_TRACE_EVENTS, 6,000,000) that holds all they
record: what is measured is recording, not a full buffer's dropping (each
traced launch's dropped events are checked to be 0).

    python3 bench/py/trace_run.py [--before CHARMRUN] [--no-figure]

(--before: another build's launcher, e.g. a checkout before tracing, whose
plain figures are measured beside this one's.) Then it traces a Jacobi run
and draws docs/img/jacobi-trace.png with charmpy.plot."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHARES = os.path.join(ROOT, "bench", "suite", "chares.py")
BENCHES = (("latency", ["sizes=8"], "latency", "us one-way"),
           ("rate", [], "rate", "calls/s"))


def run(charmrun, bench, args, extra, tmo):
    cmd = [charmrun, "-n", "2", CHARES, bench, *args, *extra]
    env = dict(os.environ, SUITE_TIME=os.environ.get("SUITE_TIME", "0.03"),
               CHARMPY_TRACE_EVENTS=os.environ.get("CHARMPY_TRACE_EVENTS", "6000000"))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=tmo,
                       stdin=subprocess.DEVNULL, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    vals = [json.loads(ln[7:])["median"] for ln in r.stdout.splitlines()
            if ln.startswith("RESULT ")]
    if not vals:
        raise RuntimeError(f"{' '.join(cmd)} printed no RESULT line:\n{r.stdout[-2000:]}")
    if "+trace" in extra:
        check_complete(extra[extra.index("+trace") + 1])
    return vals[0]


def check_complete(path):
    """The trace at path dropped nothing (its charmpy_pe records, one a line)."""
    with open(path) as f:
        for ln in f:
            if '"charmpy_pe"' in ln:
                meta = json.loads(ln.rstrip().rstrip(","))["args"]
                if meta["dropped"]:
                    raise RuntimeError(f"{path}: PE {meta['pe']} dropped {meta['dropped']} "
                                       "events: raise CHARMPY_TRACE_EVENTS")
    os.unlink(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--charmrun", default=os.path.join(ROOT, ".venv", "bin", "charmrun"))
    ap.add_argument("--before", default=None,
                    help="a launcher of another build, measured plain beside this one")
    ap.add_argument("--no-figure", action="store_true",
                    help="skip docs/img/jacobi-trace.png (a traced Jacobi run, plotted)")
    a = ap.parse_args()
    n = int(os.environ.get("BENCH_LAUNCHES", "3"))
    tmo = float(os.environ.get("BENCH_TIMEOUT", "180"))
    # traces in memory when there is a tmpfs: the disk's writeback of one
    # launch's trace would slow the next launch
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    tmp = tempfile.mkdtemp(prefix="charmpy-trace-bench-", dir=shm)
    modes = [("plain", a.charmrun, [])]
    if a.before:
        modes.insert(0, ("before (--before)", a.before, []))
    modes += [("+stats", a.charmrun, ["+stats"]),
              ("+trace", a.charmrun, ["+trace", os.path.join(tmp, "t.json")])]
    got = {(m, b): [] for m, _, _ in modes for b, _, _, _ in BENCHES}
    for k in range(n):
        for bench, args, _, _ in BENCHES:
            order = modes[k % len(modes):] + modes[:k % len(modes)]  # no mode always first
            for m, cr, extra in order:
                got[(m, bench)].append(run(cr, bench, args, extra, tmo))
    # A launch's figure moves with the machine's moment (on a shared VM by up
    # to 2x between minutes); the launches of one round are next to each
    # other, so the median of the rounds' ratios to plain is the cost.
    print("| mode | latency (µs one-way) | vs plain (median of rounds) "
          "| rate (calls/s) | vs plain (median of rounds) |")
    print("|---|---:|---:|---:|---:|")
    for m, _, _ in modes:
        row = [m]
        for b, _, _, _ in BENCHES:
            ratios = [x / y for x, y in zip(got[(m, b)], got[("plain", b)])]
            fmt = "{:.3f}" if b == "latency" else "{:,.0f}"
            row += [fmt.format(statistics.median(got[(m, b)])),
                    f"{statistics.median(ratios):.3f}x ({min(ratios):.2f}-{max(ratios):.2f})"]
        print("| " + " | ".join(row) + " |")
    print(f"\n({n} rounds, each launching every mode once per benchmark; a latency "
          "ratio above 1 and a rate ratio below 1 are the cost)")
    if not a.no_figure:
        figure(a.charmrun, tmp, tmo)


def figure(charmrun, tmp, tmo):
    """docs/img/jacobi-trace.png: charmpy.plot of a traced Jacobi run (2 PEs,
    a 2048^2 grid in 4 x 4 blocks, 100 iterations)."""
    tr = os.path.join(tmp, "jacobi.json")
    cmd = [charmrun, "-n", "2", CHARES, "jacobi", "grid=2048", "blocks=4", "check=100",
           "+trace", tr]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=tmo,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    out = os.path.join(ROOT, "docs", "img", "jacobi-trace.png")
    py = os.path.join(os.path.dirname(charmrun), "python")
    subprocess.run([py, "-m", "charmpy.plot", tr, "-o", out, "--title",
                    "Jacobi 2048^2, 4 x 4 blocks, 2 PEs, 100 iterations: PE utilisation"],
                   check=True, timeout=tmo)


if __name__ == "__main__":
    sys.exit(main())
