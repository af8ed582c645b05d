#!/usr/bin/env python3
"""Channels (issue 12's target): a channel ping-pong (two coroutines,
send/recv) against the entry-method ping-pong, both in the same launch with
their repetitions interleaved (bench/suite/chares.py chanlat), on 2 PEs;
charmpy under charmrun, then charm4py 1.1 (from bench/suite/.venv, which
bench/suite/setup_peers.sh installs; skipped, saying so, without it).
Three launches each; the figure is the median of the launches' medians.
Prints a markdown table.   BENCH_LAUNCHES (3), BENCH_TIMEOUT (s, 120)"""
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
TMO = float(os.environ.get("BENCH_TIMEOUT", "120"))


def launch(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TMO, stdin=subprocess.DEVNULL,
                       env={**os.environ, **(env or {})})
    recs = [json.loads(line[7:]) for line in p.stdout.splitlines() if line.startswith("RESULT ")]
    if p.returncode != 0 or len(recs) != 2:
        sys.stderr.write(f"chan bench: {' '.join(cmd)} failed (rc {p.returncode}):\n"
                         f"{p.stderr[-2000:]}\n")
        return None
    return {r["kind"]: r["median"] for r in recs}


def system(name, cmd, env=None):
    runs = [r for r in (launch(cmd, env) for _ in range(LAUNCHES)) if r]
    if not runs:
        return f"| {name} | failed (see stderr) | | |"
    ch = statistics.median(r["channel"] for r in runs)
    em = statistics.median(r["entry"] for r in runs)
    return f"| {name} | {ch:.2f} | {em:.2f} | {ch / em:.2f} |"


def main():
    rows = [system("charmpy", [CHARMRUN, "-n", "2", PROG, "chanlat"])]
    have_c4p = os.path.exists(SPY) and subprocess.run(
        [SPY, "-c", "import charm4py"], capture_output=True).returncode == 0
    if have_c4p:
        rows.append(system("charm4py 1.1", [SPY, "-m", "charmrun.start", "+p2", PROG, "chanlat",
                                            "++local"], {"SUITE_CHARM": "charm4py"}))
    else:
        rows.append("| charm4py 1.1 | not installed (bench/suite/setup_peers.sh) | | |")
    print("| system | channel ping-pong (µs one-way) | entry-method ping-pong (µs one-way) "
          "| channel / entry |")
    print("| --- | ---: | ---: | ---: |")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
