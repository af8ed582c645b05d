#!/usr/bin/env python3
"""What tracing and profiling cost a message, in instructions: a count that
does not move with the machine's moment (bench/py/trace_run.py times the
same on 2 PEs, where a shared VM moves launches by up to 2x). Runs
trace_cost_prog.py on 1 PE under valgrind (callgrind) with N1 and N2
messages, plain, with +stats and with +trace, and prints the instructions
a message costs (the difference of the two runs over N2 - N1 messages,
leaving out opening and writing the trace), and what writing an event of
the trace costs at exit.

    python3 bench/py/trace_cost.py [--charmrun PATH] [--before PATH] [--n1 N] [--n2 N]

Needs valgrind (apt install valgrind); says so and exits 2 without it."""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROG = os.path.join(ROOT, "bench", "py", "trace_cost_prog.py")
LEAVE_OUT = ("cp_trace_open", "cp_trace_flush", "cp_trace_merge")  # once a run, not a message


def count(charmrun, kind, n, extra, tmp):
    """Instructions of the PE's process, and the inclusive counts of LEAVE_OUT."""
    for f in glob.glob(os.path.join(tmp, "cg.*")):
        os.unlink(f)
    # valgrind runs ~100x slower: a handler's 1 µs after its entry method
    # (past which it keeps its own slice) is 100 µs here, for the events
    # written to be those of a run at full speed (3 a message)
    env = dict(os.environ, CHARMPY_TRACE_EVENTS="4000000", CHARMPY_TRACE_AFTER_US="100")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.%p",
           "--trace-children=yes", charmrun, "-n", "1", PROG, kind, str(n), *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    best = None
    for f in glob.glob(os.path.join(tmp, "cg.*")):
        ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", f], capture_output=True,
                             text=True, timeout=300).stdout
        m = re.search(r"^\s*([\d,]+) .*PROGRAM TOTALS", ann, re.M)
        if not m:
            continue
        total = int(m.group(1).replace(",", ""))
        if best and best[0] >= total:
            continue
        once = 0
        for fn in LEAVE_OUT:
            m = re.search(r"^\s*([\d,]+) \([^)]*\)\s+\S*:" + fn + r" \[", ann, re.M)
            if m:
                once += int(m.group(1).replace(",", ""))
        best = (total, once)
    if best is None:
        raise RuntimeError("callgrind wrote no profile of the PE")
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--charmrun", default=os.path.join(ROOT, ".venv", "bin", "charmrun"))
    ap.add_argument("--before", default=None,
                    help="a launcher of another build (e.g. before tracing), counted plain")
    ap.add_argument("--no-fail-without-valgrind", action="store_true",
                    help="without valgrind, say so and exit 0 (make bench)")
    ap.add_argument("--n1", type=int, default=20000)
    ap.add_argument("--n2", type=int, default=100000)
    a = ap.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        print("trace_cost.py needs valgrind: apt install valgrind", file=sys.stderr)
        return 0 if a.no_fail_without_valgrind else 2
    tmp = tempfile.mkdtemp(prefix="charmpy-trace-cost-")
    trace = os.path.join(tmp, "t.json")
    modes = [("plain", a.charmrun, []), ("+stats", a.charmrun, ["+stats"]),
             ("+trace", a.charmrun, ["+trace", trace])]
    if a.before:
        modes.insert(1, ("before (--before)", a.before, []))
    msgs = {"pingpong": lambda n: n, "storm": lambda n: n + n // 64}
    print("| program | mode | instructions a message | vs plain |")
    print("|---|---|---:|---:|")
    write = None
    for kind in ("pingpong", "storm"):
        per = {}
        for m, charmrun, extra in modes:
            t1, o1 = count(charmrun, kind, a.n1, extra, tmp)
            t2, o2 = count(charmrun, kind, a.n2, extra, tmp)
            per[m] = ((t2 - o2) - (t1 - o1)) / (msgs[kind](a.n2) - msgs[kind](a.n1))
            if m == "+trace" and kind == "pingpong":
                with open(trace) as f:
                    events = sum(1 for ln in f if '"ph":"' in ln and '"ph":"M"' not in ln)
                write = (o2, events)
            print(f"| {kind} | {m} | {per[m]:,.0f} | {per[m] / per['plain']:.3f}x |", flush=True)
    if write:
        print(f"\nopening and writing the trace of pingpong {a.n2:,}: {write[0]:,} instructions, "
              f"{write[1]:,} events ({write[0] / write[1]:,.0f} an event, the buffer's "
              "first touch at open included)")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
