"""Plots of a charmpy trace (+trace FILE):

    python -m charmpy.plot FILE [-o out.png] [--bins N]

PE utilisation over time (the share of each time bin a PE spent handling
messages, entry methods included: a heat map, PEs by row, and the mean)
and, when the run balanced load, the load of each PE (its time in entry
methods) between the steps before and after each step. matplotlib is
optional for charmpy and needed here. The figures come from functions a
program can call: utilisation(trace, bins), lb_loads(trace)."""
import argparse
import sys

from . import trace as _trace


def _tracks(tr):
    pes = sorted({e["pid"] for e in tr["traceEvents"] if e.get("ph") == "M"
                  and e.get("name") == "charmpy_pe"})
    return pes or sorted({e["pid"] for e in tr["traceEvents"] if "pid" in e})


def _busy(tr, cats):
    """{pe: [(start, end)]} of the slices of the categories cats, overlaps
    joined (µs)."""
    per = {}
    for e in tr["traceEvents"]:
        if e.get("ph") == "X" and e.get("cat") in cats:
            per.setdefault(e["pid"], []).append((e["ts"], e["ts"] + e.get("dur", 0.0)))
    out = {}
    for pe, iv in per.items():
        iv.sort()
        joined = []
        for a, b in iv:
            if joined and a <= joined[-1][1]:
                joined[-1][1] = max(joined[-1][1], b)
            else:
                joined.append([a, b])
        out[pe] = joined
    return out


def _span(tr):
    ts = [e["ts"] for e in tr["traceEvents"] if "ts" in e]
    te = [e["ts"] + e.get("dur", 0.0) for e in tr["traceEvents"] if "ts" in e]
    if not ts:
        raise ValueError("the trace has no events with a time")
    return min(ts), max(te)


def _overlap(iv, a, b):
    return sum(max(0.0, min(y, b) - max(x, a)) for x, y in iv)


def utilisation(tr, bins=200):
    """(t0 in µs, bin width in µs, pes, rows): rows[i][j] is PE pes[i]'s busy
    share of bin j (0 to 1)."""
    t0, t1 = _span(tr)
    width = max((t1 - t0) / bins, 1e-3)
    # a message's handler: its runtime slice, or the entry method's that
    # stands for it (and the pool's chunks)
    busy = _busy(tr, ("runtime", "entry"))
    pes = _tracks(tr)
    rows = []
    for pe in pes:
        iv = busy.get(pe, [])
        row = [0.0] * bins
        k = 0
        for j in range(bins):
            a, b = t0 + j * width, t0 + (j + 1) * width
            while k < len(iv) and iv[k][1] <= a:
                k += 1
            s, m = 0.0, k
            while m < len(iv) and iv[m][0] < b:
                s += max(0.0, min(iv[m][1], b) - max(iv[m][0], a))
                m += 1
            row[j] = min(1.0, s / width)
        rows.append(row)
    return t0, width, pes, rows


def lb_loads(tr):
    """[(step, {pe: load before (s)}, {pe: load after (s)})]: each PE's time in
    entry methods from the previous step (or the start) to the step, and
    from the step's end to the next step (or the end)."""
    ev = tr["traceEvents"]
    steps = sorted((e["ts"], e.get("args", {}).get("value")) for e in ev
                   if e.get("ph") == "i" and e.get("name") == "load balancing step")
    if not steps:
        return []
    done = sorted(e["ts"] for e in ev if e.get("ph") == "i"
                  and e.get("name") == "load balancing done")
    t0, t1 = _span(tr)
    busy = _busy(tr, ("entry",))
    pes = _tracks(tr)
    out = []
    for i, (ts, n) in enumerate(steps):
        prev = steps[i - 1][0] if i else t0
        end = next((d for d in done if d >= ts), ts)
        nxt = steps[i + 1][0] if i + 1 < len(steps) else t1
        before = {pe: _overlap(busy.get(pe, []), prev, ts) / 1e6 for pe in pes}
        after = {pe: _overlap(busy.get(pe, []), end, nxt) / 1e6 for pe in pes}
        out.append((n if n is not None else i, before, after))
    return out


def plot(tr, out, bins=200, title=None):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("charmpy.plot draws with matplotlib, which is not installed: "
                           "pip install matplotlib") from None
    t0, width, pes, rows = utilisation(tr, bins)
    steps = lb_loads(tr)
    nplots = 2 + (1 if steps else 0)
    fig, axes = plt.subplots(nplots, 1, figsize=(10, 3 + 2.2 * nplots), squeeze=False)
    axes = axes[:, 0]
    secs = width * bins / 1e6
    im = axes[0].imshow(rows, aspect="auto", interpolation="nearest", cmap="viridis",
                        vmin=0, vmax=1, extent=(0, secs, len(pes) - 0.5, -0.5))
    axes[0].set_ylabel("PE")
    axes[0].set_yticks(range(len(pes)) if len(pes) <= 16 else
                       range(0, len(pes), max(1, len(pes) // 8)))
    axes[0].set_title(title or "PE utilisation (share of each time bin handling messages)")
    fig.colorbar(im, ax=axes[0], label="busy")
    xs = [(j + 0.5) * width / 1e6 for j in range(bins)]
    mean = [sum(r[j] for r in rows) / len(rows) for j in range(bins)] if rows else []
    axes[1].plot(xs, mean, lw=1)
    axes[1].set_xlim(0, secs)
    axes[1].set_ylim(0, 1.05)
    axes[1].set_xlabel("time since the first event (s)")
    axes[1].set_ylabel("mean utilisation")
    for e in tr["traceEvents"]:
        if e.get("ph") == "i" and e.get("name") == "load balancing step":
            for ax in axes[:2]:
                ax.axvline((e["ts"] - t0) / 1e6, color="red", lw=0.8, ls="--")
    if steps:
        ax = axes[2]
        shown = steps[:4]
        w = 0.8 / (2 * len(shown))
        for i, (n, before, after) in enumerate(shown):
            ax.bar([p - 0.4 + (2 * i + 0.5) * w for p in range(len(pes))],
                   [before[p] for p in pes], w, label=f"before step {n}")
            ax.bar([p - 0.4 + (2 * i + 1.5) * w for p in range(len(pes))],
                   [after[p] for p in pes], w, label=f"after step {n}")
        ax.set_xticks(range(len(pes)))
        ax.set_xticklabels([str(p) for p in pes])
        ax.set_xlabel("PE")
        ax.set_ylabel("time in entry methods (s)")
        ax.set_title("load per PE between load-balancing steps")
        ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m charmpy.plot",
                                 description="Plot a charmpy trace (+trace FILE): PE "
                                             "utilisation over time, and the load per PE "
                                             "around each load-balancing step.")
    ap.add_argument("file", help="the trace (a Chrome trace-event JSON file)")
    ap.add_argument("-o", "--out", default=None, help="the PNG to write (default FILE.png)")
    ap.add_argument("--bins", type=int, default=200, help="time bins (default 200)")
    ap.add_argument("--title", default=None)
    a = ap.parse_args(argv)
    if a.bins < 1:
        ap.error("--bins must be at least 1")
    out = a.out or (a.file[:-5] if a.file.endswith(".json") else a.file) + ".png"
    try:
        tr = _trace.load(a.file)
        plot(tr, out, a.bins, a.title)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        sys.stderr.write(f"charmpy.plot: {e}\n")
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
