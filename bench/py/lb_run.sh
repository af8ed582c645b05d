#!/usr/bin/env bash
# Load balancing and migration (issue 10's targets), on 2 PEs, each figure
# the median of BENCH_LAUNCHES launches (3):
#   - bench/py/lb_bench.py: an array whose work grows with the index, AtSync
#     every 5 iterations, under DummyLB, GreedyLB and GreedyRefineLB, beside
#     a perfectly balanced run of the same total work;
#   - bench/py/mig_bench.py: moving a chare that holds a numpy array of
#     1 MiB and 4 MiB, beside sending the array as an argument;
#   - bench/py/direct_bench.py: calls to an element that moved, beside calls
#     to one that never did (3 PEs);
# Prints markdown tables (charm4py 1.1 beside the load-balancing program).
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

# charm4py 1.1 beside it: the peers' venv of bench/suite (setup_peers.sh,
# which `make bench` runs first through bench/suite/run.py).
C4P=${CHARM4PY_PYTHON:-$ROOT/bench/suite/.venv/bin/python}
c4p_time() { # mode [+balancer NAME]
    for _ in $(seq "$N"); do
        (cd "$ROOT/bench/py" && SUITE_CHARM=charm4py timeout "$TMO" "$C4P" -m charmrun.start +p2 \
            lb_bench.py "$@" ++local 2>/dev/null | awk '/^lb /{print $3}')
    done | median
}

echo "| array, work growing with the index (16 elements, 2 PEs) | s/iteration | vs DummyLB | vs balanced |"
echo "|---|---|---|---|"
row() { awk -v m="$1" -v t="$2" -v d="$3" -v b="$4" \
        'BEGIN {if (t == "") print "| " m " | failed | | |"; else printf "| %s | %.4f | %.2fx | %.2fx |\n", m, t, t / d, t / b}'; }
dummy=$(lb_time DummyLB)
bal=$(lb_time balanced)
for m in DummyLB GreedyLB GreedyRefineLB balanced; do
    case $m in DummyLB) t=$dummy ;; balanced) t=$bal ;; *) t=$(lb_time "$m") ;; esac
    row "charmpy $m" "$t" "$dummy" "$bal"
done
if [[ -x $C4P ]] && "$C4P" -c 'import charm4py' >/dev/null 2>&1; then
    cd=$(c4p_time DummyLB +balancer DummyLB)
    cb=$(c4p_time balanced)
    for m in DummyLB GreedyLB GreedyRefineLB balanced; do
        case $m in DummyLB) t=$cd ;; balanced) t=$cb ;; *) t=$(c4p_time "$m" +balancer "$m") ;; esac
        row "charm4py $m" "$t" "$cd" "$cb"
    done
else
    echo "| charm4py | not installed: bench/suite/setup_peers.sh installs it | | |"
fi
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

# Calls to a moved element from a third PE (direct after the first, through
# the senders' location caches) beside calls to an element that never moved.
out=$(for _ in $(seq "$N"); do
    timeout "$TMO" "$CHARMRUN" -n 3 "$ROOT/bench/py/direct_bench.py" 2000 |
        awk '/^moved:/{m=$2} /^unmoved:/{u=$2} END {print m, u}'
done)
m=$(awk '{print $1}' <<< "$out" | median)
u=$(awk '{print $2}' <<< "$out" | median)
echo
echo "| round trip from PE 2 to an element on PE 1 (3 PEs) | us | ratio |"
echo "|---|---|---|"
awk -v m="$m" -v u="$u" 'BEGIN {printf "| moved there from its home (PE 0) | %.1f | %.2fx |\n| never moved | %.1f | 1.00x |\n", m, m / u, u}'

# Checkpoint write and read of 1 GiB of chare state, beside dd's sequential
# write (fsync) and read of 1 GiB in the same directory (page cache dropped
# before each read when root; else the reads come from the cache: said).
D=$(mktemp -d "${TMPDIR:-/tmp}/charmpy-ckpt-bench.XXXXXX")
trap 'rm -rf "$D"' EXIT
drop() { sync; if [[ $(id -u) == 0 ]]; then echo 3 > /proc/sys/vm/drop_caches; return 0; fi; return 1; }
cold=yes
w=$(timeout "$TMO" "$CHARMRUN" -n 2 "$ROOT/bench/py/ckpt_bench.py" write "$D/c" 1024 | awk '/^checkpoint write:/{print $3}')
drop || cold=no
r=$(CHARMPY_CKPT_DEBUG=1 timeout "$TMO" "$CHARMRUN" -n 2 "$ROOT/bench/py/ckpt_bench.py" read "$D/c" +restart "$D/c" 2>&1 |
    awk '/restart from/{print $(NF-1)}')
ddw=$(dd if=/dev/zero of="$D/dd.bin" bs=16M count=64 conv=fsync 2>&1 | awk '/copied/{print $(NF-3)}')
drop || true
ddr=$(dd if="$D/dd.bin" of=/dev/null bs=16M 2>&1 | awk '/copied/{print $(NF-3)}')
echo
echo "| 1 GiB of chare state, 2 PEs (cold cache: $cold) | checkpoint (s) | dd (s) | checkpoint / dd bandwidth |"
echo "|---|---|---|---|"
awk -v a="$w" -v b="$ddw" 'BEGIN {printf "| write (fsync) | %.3f | %.3f | %.2f |\n", a, b, b / a}'
awk -v a="$r" -v b="$ddr" 'BEGIN {printf "| read (restart to resume) | %.3f | %.3f | %.2f |\n", a, b, b / a}'
