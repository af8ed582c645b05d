#!/usr/bin/env python3
"""Channels and sections (issue 12's targets), on 2 PEs, charmpy under
charmrun and charm4py 1.1 beside it (from bench/suite/.venv, which
bench/suite/setup_peers.sh installs; skipped, saying so, without it):
  - a channel ping-pong (two coroutines, send/recv) against the
    entry-method ping-pong, in one launch with their repetitions
    interleaved (bench/suite/chares.py chanlat);
  - a broadcast + sum reduction over an array of n elements against the
    same over the section a[0:n:2] (half the array, on every PE), per
    member, in one launch (chares.py secbcast), n = 1000, 10000, 100000.
Three launches each; a figure is the median of the launches' medians.
Prints markdown tables.   BENCH_LAUNCHES (3), BENCH_TIMEOUT (s, 300)"""
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROG = os.path.join(ROOT, "bench", "suite", "chares.py")
CHARMRUN = os.path.join(ROOT, ".venv", "bin", "charmrun")
SPY = os.path.join(ROOT, "bench", "suite", ".venv", "bin", "python")
LAUNCHES = int(os.environ.get("BENCH_LAUNCHES", "3"))
TMO = float(os.environ.get("BENCH_TIMEOUT", "300"))
SEC_NS = (1000, 10000, 100000)


def launch(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TMO, stdin=subprocess.DEVNULL,
                       env={**os.environ, **(env or {})})
    recs = [json.loads(line[7:]) for line in p.stdout.splitlines() if line.startswith("RESULT ")]
    if p.returncode != 0 or len(recs) != 2:  # two figures a launch
        sys.stderr.write(f"chan bench: {' '.join(cmd)} failed (rc {p.returncode}):\n"
                         f"{p.stderr[-2000:]}\n")
        return None
    return {r["kind"]: r["median"] for r in recs}


def system(name, cmd, env=None, a="channel", b="entry", fmt="{:.2f}", label=None):
    runs = [r for r in (launch(cmd, env) for _ in range(LAUNCHES)) if r]
    label = label or name
    if not runs:
        return f"| {label} | failed (see stderr) | | |"
    x = statistics.median(r[a] for r in runs)
    y = statistics.median(r[b] for r in runs)
    return f"| {label} | {fmt.format(x)} | {fmt.format(y)} | {x / y:.2f} |"


def systems(mode, *opts, **kw):
    rows = [system("charmpy", [CHARMRUN, "-n", "2", PROG, mode, *opts], **kw)]
    if HAVE_C4P:
        rows.append(system("charm4py 1.1", [SPY, "-m", "charmrun.start", "+p2", PROG, mode,
                                            *opts, "++local"], {"SUITE_CHARM": "charm4py"},
                           **{**kw, "label": kw.get("label", "").replace("charmpy",
                                                                         "charm4py 1.1")
                              or None}))
    else:
        rows.append("| charm4py 1.1 | not installed (bench/suite/setup_peers.sh) | | |")
    return rows


HAVE_C4P = os.path.exists(SPY) and subprocess.run(
    [SPY, "-c", "import charm4py"], capture_output=True).returncode == 0


def main():
    print("| system | channel ping-pong (µs one-way) | entry-method ping-pong (µs one-way) "
          "| channel / entry |")
    print("| --- | ---: | ---: | ---: |")
    for r in systems("chanlat"):
        print(r, flush=True)
    print()
    print("| system, n | section a[0:n:2] (ns a member) | whole array (ns a member) "
          "| section / whole |")
    print("| --- | ---: | ---: | ---: |")
    for n in SEC_NS:
        for r in systems("secbcast", f"n={n}", a="section", b="whole", fmt="{:.0f}",
                         label=f"charmpy, {n}"):
            print(r, flush=True)


if __name__ == "__main__":
    main()
