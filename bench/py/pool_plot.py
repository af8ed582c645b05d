"""The per-task overhead plot of bench/py/pool_run.sh (matplotlib).

    python pool_plot.py DATA OUT.png      DATA: lines `label|us a task`"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

rows = [line.rstrip("\n").split("|") for line in open(sys.argv[1]) if "|" in line]
rows.sort(key=lambda r: float(r[1]))
fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.4))
vals = [float(r[1]) for r in rows]
ax.barh([r[0] for r in rows], vals,
        color=["tab:orange" if r[0].startswith("charmpy") else "tab:gray" for r in rows])
ax.set_xscale("log")
ax.set_xlim(right=max(vals) * 4)
ax.set_xlabel("µs per task, log scale (20000 trivial tasks, chunksize 1, 2 workers)")
ax.set_title("Per-task overhead of Python pools (one run, one machine)", fontsize=11)
for i, v in enumerate(vals):
    ax.text(v, i, f" {v:.1f}", va="center")
ax.invert_yaxis()
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
print(f"(plot: {sys.argv[2]})")
