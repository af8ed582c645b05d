"""Plots of the suite's results (run.py runs it with bench/suite/.venv's python).

    python plot.py RESULTS.json OUTDIR

Writes suite-latency.png (log-log), suite-bandwidth.png, suite-rate.png
(bars), suite-bcast.png and suite-jacobi.png (bars) into OUTDIR.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

# one colour and marker per system, the same in every plot
STYLE = {
    "charmpy": ("#d62728", "o"), "charmpy-mpi": ("#ff9896", "o"),
    "mpi4py": ("#1f77b4", "s"), "mpi4py-buf": ("#aec7e8", "s"),
    "charm4py": ("#2ca02c", "^"), "pipe": ("#9467bd", "v"), "futures": ("#c5b0d5", "v"),
    "ray": ("#ff7f0e", "D"), "dask": ("#8c564b", "P"), "python": ("#7f7f7f", "x"),
}
ORDER = list(STYLE)


def size_label(n, _pos=None):
    for u, s in (("M", 1 << 20), ("K", 1 << 10)):
        if n >= s:
            return f"{n / s:g}{u}"
    return f"{n:g}"


def series(res, bench, key):
    """system -> (label, sorted [(x, median, min, max)])."""
    out = {}
    for r in res:
        if r["bench"] == bench and r.get(key) is not None:
            out.setdefault(r["system"], (r["label"], []))[1].append(
                (r[key], r["median"], r["min"], r["max"]))
    rank = {k: i for i, k in enumerate(ORDER)}
    return {k: (out[k][0], sorted(out[k][1])) for k in sorted(out, key=lambda k: rank.get(k, 99))}


def lines(res, bench, key, ylabel, title, path, logy=True, xfmt=size_label, note=""):
    s = series(res, bench, key)
    if not s:
        return False
    fig, ax = plt.subplots(figsize=(8, 5.2))
    for sysk, (label, pts) in s.items():
        c, m = STYLE.get(sysk, ("black", "."))
        xs = [p[0] for p in pts]
        ax.plot(xs, [p[1] for p in pts], marker=m, color=c, label=label, lw=1.6, ms=5)
        ax.fill_between(xs, [p[2] for p in pts], [p[3] for p in pts], color=c, alpha=0.15, lw=0)
    ax.set_xscale("log", base=2 if key == "size" else 10)
    if logy:
        ax.set_yscale("log")
    if xfmt:
        ax.xaxis.set_major_formatter(FuncFormatter(xfmt))
    ax.set_xlabel({"size": "message size (bytes)", "n": "array elements"}.get(key, key))
    ax.set_ylabel(ylabel)
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def bars(labels, groups, ylabel, title, path, logy=False, colors=None):
    """groups: list of (group name, [values per label])."""
    import numpy as np
    fig, ax = plt.subplots(figsize=(8, 5))
    x = np.arange(len(labels))
    w = 0.8 / max(1, len(groups))
    for i, (gname, vals) in enumerate(groups):
        pos = x + (i - (len(groups) - 1) / 2) * w
        b = ax.bar(pos, [v or 0 for v in vals], w, label=gname,
                   color=colors if len(groups) == 1 and colors else None)
        for rect, v in zip(b, vals):
            if v:
                ax.annotate(f"{v:.3g}", (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                            ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=9)
    if logy:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    if len(groups) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    data = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    res = data["results"]
    m = data["machine"]
    where = f"{m['cores']} cores, {m['cpu_model']}, {data['date']}"
    made = []
    if lines(res, "latency", "size", "one-way latency (µs)", "Ping-pong latency, 2 processes",
             os.path.join(out, "suite-latency.png"), note=where):
        made.append("suite-latency.png")
    if lines(res, "bw", "size", "GB/s", "Bandwidth of numpy float64 arrays (window of 8)",
             os.path.join(out, "suite-bandwidth.png"), logy=True, note=where):
        made.append("suite-bandwidth.png")
    if lines(res, "bcast", "n", "µs per broadcast + sum reduction",
             "Broadcast + reduction over n elements, 2 PEs",
             os.path.join(out, "suite-bcast.png"), xfmt=None, note=where):
        made.append("suite-bcast.png")
    rate = sorted((r for r in res if r["bench"] == "rate"),
                  key=lambda r: ORDER.index(r["system"]) if r["system"] in ORDER else 99)
    if rate:
        bars([r["label"] for r in rate], [("msg/s", [r["median"] for r in rate])],
             "messages per second (log)", f"Small-message rate, window of 64\n{where}",
             os.path.join(out, "suite-rate.png"), logy=True,
             colors=[STYLE.get(r["system"], ("gray",))[0] for r in rate])
        made.append("suite-rate.png")
    jac = [r for r in res if r["bench"] == "jacobi"]
    if jac:
        systems = [s for s in ORDER if any(r["system"] == s for r in jac)]
        labels = [next(r["label"] for r in jac if r["system"] == s) for s in systems]
        pes = sorted({r["pes"] for r in jac})
        groups = []
        for p in pes:
            vals = []
            for s in systems:
                r = next((r for r in jac if r["system"] == s and r["pes"] == p), None)
                vals.append(r["median"] if r else None)
            groups.append((f"{p} PE{'s' if p > 1 else ''}", vals))
        grid = jac[0].get("grid")
        bars(labels, groups, "ms per iteration (lower is better)",
             f"2-D Jacobi, {grid}x{grid} grid\n{where}", os.path.join(out, "suite-jacobi.png"))
        made.append("suite-jacobi.png")
    print("wrote " + ", ".join(made))


main()
