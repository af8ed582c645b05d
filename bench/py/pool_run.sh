#!/usr/bin/env bash
# charm.pool (issue 11's targets) beside the pools users know, in one run,
# on 2 PEs / 2 workers (bench/py/pool_bench.py, bench/py/pool_peers.py):
#   - per-task overhead of 20000 trivial tasks at chunksize 1: charmpy,
#     charm4py 1.1, concurrent.futures.ProcessPoolExecutor, multiprocessing.Pool,
#     Ray tasks, Dask futures, mpi4py.futures (the peers from bench/suite/.venv,
#     which bench/suite/setup_peers.sh installs; the standard library's with
#     python3 when that venv is missing);
#   - one call a task: charm.pool.submit beside ProcessPoolExecutor.submit;
#   - charmpy's parallel efficiency with 1 ms tasks, and concurrent jobs of
#     different sizes and ncores against the ideal packing.
# Prints markdown tables and draws docs/img/pool-overhead.png (matplotlib
# from the suite's venv; skipped, saying so, without it).
#   BENCH_POOL_TASKS (20000), BENCH_TIMEOUT (seconds a program, 300)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CHARMRUN=$ROOT/.venv/bin/charmrun
N=${BENCH_POOL_TASKS:-20000}
TMO=${BENCH_TIMEOUT:-300}
SPY=$ROOT/bench/suite/.venv/bin/python
[[ -x $SPY ]] || SPY=python3
[[ -x $CHARMRUN ]] || { echo "pool bench: $CHARMRUN missing: run make venv" >&2; exit 1; }
OUT=$(mktemp -d "${TMPDIR:-/tmp}/charmpy-pool-bench.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

fig() { awk '/^pool overhead:/{print $3}'; }
row() { # label figure
    if [[ -z $2 ]]; then echo "| $1 | failed or not installed | |" >>"$OUT/rows"
    else echo "$1|$2" >>"$OUT/data"; fi
}

cpy=$(timeout "$TMO" "$CHARMRUN" -n 2 "$ROOT/bench/py/pool_bench.py" overhead "$N" | fig)
row "charmpy charm.pool" "$cpy"
if "$SPY" -c 'import charm4py' >/dev/null 2>&1; then
    c4p=$(cd "$ROOT/bench/py" && POOL_LIB=charm4py timeout "$TMO" "$SPY" -m charmrun.start +p2 \
          pool_bench.py overhead "$N" ++local 2>/dev/null | fig)
    row "charm4py 1.1 pool" "$c4p"
fi
row "concurrent.futures ProcessPoolExecutor" \
    "$(timeout "$TMO" "$SPY" "$ROOT/bench/py/pool_peers.py" futures "$N" | fig)"
row "multiprocessing.Pool" "$(timeout "$TMO" "$SPY" "$ROOT/bench/py/pool_peers.py" mp "$N" | fig)"
if "$SPY" -c 'import ray' >/dev/null 2>&1; then
    row "Ray tasks" "$(timeout "$TMO" "$SPY" "$ROOT/bench/py/pool_peers.py" ray "$N" 2>/dev/null | fig)"
fi
if "$SPY" -c 'import distributed' >/dev/null 2>&1; then
    row "Dask futures" "$(timeout "$TMO" "$SPY" "$ROOT/bench/py/pool_peers.py" dask "$N" 2>/dev/null | fig)"
fi
if command -v mpirun >/dev/null && "$SPY" -c 'import mpi4py' >/dev/null 2>&1; then
    ROOTFLAG=(); [[ $(id -u) == 0 ]] && ROOTFLAG=(--allow-run-as-root)
    row "mpi4py.futures" "$(timeout "$TMO" mpirun "${ROOTFLAG[@]}" --oversubscribe -np 3 \
        --mca btl self,vader "$SPY" -m mpi4py.futures "$ROOT/bench/py/pool_peers.py" mpi4py "$N" \
        2>/dev/null | fig)"
fi

echo "| $N trivial tasks, chunksize 1, 2 PEs / workers | us a task | charmpy / it |"
echo "|---|---|---|"
awk -F'|' -v c="$cpy" '{printf "| %s | %.2f | %s |\n", $1, $2, (c == "" ? "" : sprintf("%.3fx", c / $2))}' "$OUT/data"
[[ -f $OUT/rows ]] && cat "$OUT/rows"

eff=$(timeout "$TMO" "$CHARMRUN" -n 2 "$ROOT/bench/py/pool_bench.py" efficiency | grep '^pool efficiency')
jobs=$(timeout "$TMO" "$CHARMRUN" -n 2 "$ROOT/bench/py/pool_bench.py" jobs | grep '^pool jobs')
sub=$(timeout "$TMO" "$CHARMRUN" -n 2 "$ROOT/bench/py/pool_bench.py" submit "$N" |
      awk '/^pool submit:/{print $3}')
psub=$(timeout "$TMO" "$SPY" "$ROOT/bench/py/pool_peers.py" futures-submit "$N" |
       awk '/^pool submit:/{print $3}')
echo
if [[ -n $sub && -n $psub ]]; then
    echo "- submit, one call a task ($N at once, then every result): charmpy $sub us," \
         "ProcessPoolExecutor.submit $psub us ($(awk -v a="$sub" -v b="$psub" \
         'BEGIN{printf "%.3fx", a / b}'))"
else
    echo "- submit: failed (charmpy '${sub}', ProcessPoolExecutor '${psub}')"
fi
echo "- ${eff:-pool efficiency: failed}"
echo "- ${jobs:-pool jobs: failed}"

"$SPY" "$ROOT/bench/py/pool_plot.py" "$OUT/data" "$ROOT/docs/img/pool-overhead.png" ||
    echo "(no plot: matplotlib is missing from $SPY)"
