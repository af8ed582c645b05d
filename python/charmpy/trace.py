"""Timelines (+trace FILE, charm.options.trace): each PE records into a
bounded buffer in C (src/runtime/trace.c) and writes FILE.<pe>.part when it
ends, fails or is terminated; PE 0 joins the parts into FILE, a Chrome
trace-event JSON that Perfetto (ui.perfetto.dev) and chrome://tracing open.

    python -m charmpy.trace FILE      join the parts a run that died left

`load(FILE)` reads a trace (charmpy.plot uses it)."""
import argparse
import glob
import json
import os
import re
import sys

from . import _charmpy


def parts(path):
    """The part files of trace `path`: [(pe, file)] in PE order."""
    out = []
    rx = re.compile(re.escape(os.path.basename(path)) + r"\.(\d+)\.part$")
    for f in glob.glob(glob.escape(path) + ".*.part"):
        m = rx.search(os.path.basename(f))
        if m:
            out.append((int(m.group(1)), f))
    return sorted(out)


def merge(path):
    """Join the parts of `path` into it; returns the PEs that had none
    (among 0 .. the highest PE with a part)."""
    found = parts(path)
    if not found:
        raise FileNotFoundError(f"no part files {path}.<pe>.part to join (they are written "
                                "by a run started with +trace FILE or "
                                "charm.options.trace = FILE)")
    npes = max(pe for pe, _ in found) + 1
    have = {pe for pe, _ in found}
    _charmpy.trace_merge(path, npes, 0.0)
    return [pe for pe in range(npes) if pe not in have]


def load(path):
    """The trace at `path` as a dict ({"traceEvents": [...], ...})."""
    if not os.path.exists(path) and parts(path):
        raise FileNotFoundError(f"{path} was not written, but its parts are there (the run "
                                f"ended early): python -m charmpy.trace {path} joins them")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not a trace-event JSON file: {e}") from None


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m charmpy.trace",
                                 description="Join the part files (FILE.<pe>.part) of a "
                                             "charmpy trace into FILE.")
    ap.add_argument("file", help="the trace file the run was asked to write")
    a = ap.parse_args(argv)
    try:
        missing = merge(a.file)
    except (OSError, ValueError) as e:
        sys.stderr.write(f"charmpy.trace: {e}\n")
        return 2
    events = len(load(a.file)["traceEvents"])
    note = f" (no part from PE {', '.join(map(str, missing))})" if missing else ""
    print(f"wrote {a.file}: {events} events{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
