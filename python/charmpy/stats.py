"""charm.printStats(): this PE's message counts and, with profiling on
(charm.options.profiling = True or +stats), the time in each entry method,
measured in C where the method is called."""
import sys

from . import _charmpy
from .charm import charm


def print_stats():
    counters, profiling, rows = _charmpy.stats()
    pe = charm._pe
    out = [f"PE {pe}: messages sent {counters['msgs_sent']}, received "
           f"{counters['msgs_processed']}, bytes sent {counters['bytes_sent']}, received "
           f"{counters['bytes_processed']}"]
    if not profiling:
        out.append(f"PE {pe}: entry-method times need profiling: set "
                   "charm.options.profiling = True before charm.start, or pass +stats")
    else:
        rows = sorted(rows, key=lambda r: (-r[3], r[0].__name__, r[1]))
        for cls, name, calls, total, mx in rows:
            mean = total / calls if calls else 0.0
            out.append(f"PE {pe}: {cls.__name__}.{name} calls {calls} total {total:.6f} s "
                       f"mean {mean * 1e6:.1f} us max {mx * 1e6:.1f} us")
        total = sum(r[3] for r in rows)
        out.append(f"PE {pe}: entry methods in all: {sum(r[2] for r in rows)} calls, "
                   f"{total:.6f} s")
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
