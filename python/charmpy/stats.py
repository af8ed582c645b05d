"""charm.printStats(): what each PE did, measured in C (python/ext/module.c
stats(), the runtime's cp_counters): messages and bytes sent and
received and, with profiling on (charm.options.profiling = True or +stats),
where the time went (entry methods by class and method, main, the
scheduler, receiving, idle; sending within them).

From a coroutine (main is one) it gathers every PE's figures and prints
them with a totals row; elsewhere (a plain entry method) it prints this
PE's only, as charm4py's does. Every line starts with `PE <n>: ` or
`all PEs: `."""
import sys

from . import _charmpy, coro
from .charm import charm


def local():
    """This PE's figures as plain values (they travel to the PE that prints)."""
    counters, profiling, rows = _charmpy.stats()
    d = dict(counters)
    d["pe"] = charm._pe
    d["profiling"] = bool(profiling)
    d["methods"] = [(cls.__name__, name, calls, total, mx) for cls, name, calls, total, mx in rows]
    return d


def print_stats():
    every = coro.in_coroutine()
    pes = charm.thisProxy.getStats(ret=True).get() if every else [local()]
    sys.stdout.write(format_stats(pes, every))
    sys.stdout.flush()


_SUMS = ("msgs_sent", "msgs_processed", "bytes_sent", "bytes_processed", "wall_secs",
         "idle_secs", "send_secs", "recv_secs", "main_secs")


def totals(pes):
    """The figures of all PEs together: sums, the largest max of a method."""
    out = {k: sum(d[k] for d in pes) for k in _SUMS}
    out["profiling"] = all(d["profiling"] for d in pes)
    methods = {}
    for d in pes:
        for cls, name, calls, total, mx in d["methods"]:
            m = methods.setdefault((cls, name), [0, 0.0, 0.0])
            m[0] += calls
            m[1] += total
            m[2] = max(m[2], mx)
    out["methods"] = [(cls, name, c, t, mx) for (cls, name), (c, t, mx) in methods.items()]
    return out


def format_stats(pes, every):
    out = []
    if every:
        out.append(f"charmpy statistics: {len(pes)} PE{'s' if len(pes) != 1 else ''}, "
                   "times in seconds since charm.start")
    for d in pes:
        out += _lines(f"PE {d['pe']}", d)
    if every:
        out += _lines("all PEs", totals(pes))
    return "\n".join(out) + "\n"


def _lines(label, d):
    out = [f"{label}: messages sent {d['msgs_sent']}, received {d['msgs_processed']}, "
           f"bytes sent {d['bytes_sent']}, received {d['bytes_processed']}"]
    if not d["profiling"]:
        out.append(f"{label}: entry-method times need profiling: set "
                   "charm.options.profiling = True before charm.start, or pass +stats")
        return out
    rows = sorted(d["methods"], key=lambda r: (-r[3], r[0], r[1]))
    em = sum(r[3] for r in rows)
    wall, main, recv, idle = d["wall_secs"], d["main_secs"], d["recv_secs"], d["idle_secs"]
    sched = max(0.0, wall - em - main - recv - idle)
    pct = (lambda x: 100.0 * x / wall) if wall > 0 else (lambda x: 0.0)
    out.append(f"{label}: time {wall:.6f} s: entry methods {em:.6f} s ({pct(em):.1f}%), "
               f"main {main:.6f} s ({pct(main):.1f}%), scheduler {sched:.6f} s "
               f"({pct(sched):.1f}%), receiving {recv:.6f} s ({pct(recv):.1f}%), "
               f"idle {idle:.6f} s ({pct(idle):.1f}%); sending {d['send_secs']:.6f} s "
               "(within the others)")
    for cls, name, calls, total, mx in rows:
        mean = total / calls if calls else 0.0
        out.append(f"{label}: {cls}.{name} calls {calls} total {total:.6f} s "
                   f"mean {mean * 1e6:.1f} us max {mx * 1e6:.1f} us")
    out.append(f"{label}: entry methods in all: {sum(r[2] for r in rows)} calls, {em:.6f} s")
    return out
