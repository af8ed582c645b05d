#!/usr/bin/env bash
# Load balancing and migration (issue 10's targets), on 2 PEs, each figure
# the median of BENCH_LAUNCHES launches (3):
#   - bench/py/lb_bench.py: an array whose work grows with the index, AtSync
#     every 5 iterations, under DummyLB, GreedyLB and GreedyRefineLB, beside
#     a perfectly balanced run of the same total work;
#   - bench/py/mig_bench.py: moving a chare that holds a numpy array of
#     1 MiB and 4 MiB, beside sending the array as an argument.
# Prints a markdown table. (charm4py beside it: not installed here yet.)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CHARMRUN=$ROOT/.venv/bin/charmrun
N=${BENCH_LAUNCHES:-3}
TMO=${BENCH_TIMEOUT:-120}
[[ -x $CHARMRUN ]] || { echo "lb bench: $CHARMRUN missing: run make venv" >&2; exit 1; }

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

lb_time() { # mode
    for _ in $(seq "$N"); do
        timeout "$TMO" "$CHARMRUN" -n 2 "$ROOT/bench/py/lb_bench.py" "$1" | awk '/^lb /{print $3}'
    done | median
}

echo "| array, work growing with the index (16 elements, 2 PEs) | s/iteration | vs DummyLB | vs balanced |"
echo "|---|---|---|---|"
dummy=$(lb_time DummyLB)
bal=$(lb_time balanced)
for m in DummyLB GreedyLB GreedyRefineLB balanced; do
    case $m in DummyLB) t=$dummy ;; balanced) t=$bal ;; *) t=$(lb_time "$m") ;; esac
    awk -v m="$m" -v t="$t" -v d="$dummy" -v b="$bal" \
        'BEGIN {printf "| %s | %.4f | %.2fx | %.2fx |\n", m, t, t / d, t / b}'
done
echo
echo "| chare state (2 PEs) | migrate (us) | send as argument (us) | ratio |"
echo "|---|---|---|---|"
for bytes in 1048576 4194304; do
    out=$(for _ in $(seq "$N"); do
        timeout "$TMO" "$CHARMRUN" -n 2 "$ROOT/bench/py/mig_bench.py" "$bytes" 200 |
            awk '/^migrate:/{m=$2} /^send:/{s=$2} END {print m, s}'
    done)
    m=$(awk '{print $1}' <<< "$out" | median)
    s=$(awk '{print $2}' <<< "$out" | median)
    awk -v b="$bytes" -v m="$m" -v s="$s" \
        'BEGIN {printf "| numpy array of %d MiB | %.1f | %.1f | %.2fx |\n", b / 1048576, m, s, m / s}'
done
