#!/usr/bin/env bash
# Python-level benchmarks of charmpy, beside mpi4py measured in the same run.
#
#   bench/py/run.sh                  everything (~1.5 minutes once set up): prints the
#                                    markdown table, writes it into docs/benchmarks.md
#                                    (between the pybench markers) and bench/py/results.md
#   bench/py/run.sh --smoke          every benchmark with tiny sizes; checks that each
#                                    completes (mpi4py ones only if already installed);
#                                    ends with "smoke: N passed, M failed"
#   bench/py/run.sh latency [ITERS]  one benchmark, charmpy then mpi4py, raw lines
#   bench/py/run.sh rate [N] | rate-same [N] | bw [BYTES [ITERS]] | mem [N]
#
# Environment: BENCH_REPS (5 repetitions a launch), BENCH_TIME (seconds a
# repetition of latency/bw, 0.2), BENCH_LAUNCHES (launches of latency/rate/bw
# whose medians are combined, 3), BENCH_MEM_LAUNCHES (5), BENCH_TIMEOUT
# (seconds a program, 120), BENCH_QUIET_WAIT (seconds in all to wait for an
# idle machine, 60), BENCH_NO_PEERS=1 (charmpy only), BENCH_NO_BUILD=1 (do not
# run `make venv` first), BENCH_RETRIES (re-runs of disturbed launches in
# all, 6).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
PV=$HERE/.peers-venv
RES=$HERE/.out              # raw output of each run (gitignored)
CHARMRUN=$ROOT/.venv/bin/charmrun
CPY=$ROOT/.venv/bin/python
TMO=${BENCH_TIMEOUT:-120}
LAUNCHES=${BENCH_LAUNCHES:-3}
MEM_LAUNCHES=${BENCH_MEM_LAUNCHES:-5}
export BENCH_REPS=${BENCH_REPS:-5}
export BENCH_TIME=${BENCH_TIME:-0.2}
mkdir -p "$RES"

log() { printf 'pybench: %s\n' "$*" >&2; }

SMOKE=0
MODE=all
if [[ ${1:-} == --smoke ]]; then
    SMOKE=1
    shift
elif [[ $# -gt 0 ]]; then
    MODE=$1
    shift
    case $MODE in
    latency | rate | rate-same | bw | mem) ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "usage: $0 [--smoke | latency|rate|rate-same|bw|mem [ARGS...]]" >&2
        exit 2
        ;;
    esac
fi

# ---- charmpy ------------------------------------------------------------------
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
    if ! make --no-print-directory -s venv >"$RES/make.log" 2>&1; then
        if [[ -x $CHARMRUN ]]; then
            log "make venv failed (see $RES/make.log): measuring the package installed before"
        else
            echo "pybench: make venv failed and no charmpy is installed (see $RES/make.log)" >&2
            exit 1
        fi
    fi
fi
[[ -x $CHARMRUN ]] || { echo "pybench: $CHARMRUN missing: run make venv" >&2; exit 1; }

# ---- peers: mpi4py and numpy in their own venv, over the OS Open MPI ------------
PEER_OK=1
PEER_WHY=""
MPI_FLAGS=()
setup_peers() { # install=1|0
    local install=$1
    if [[ ${BENCH_NO_PEERS:-0} == 1 ]]; then
        PEER_OK=0 PEER_WHY="BENCH_NO_PEERS=1 was set"
        return
    fi
    if ! command -v mpicc >/dev/null || ! command -v mpirun >/dev/null; then
        if ((install)) && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
            log "installing Open MPI (libopenmpi-dev openmpi-bin)"
            if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                libopenmpi-dev openmpi-bin; } >"$RES/apt.log" 2>&1; then
                PEER_OK=0 PEER_WHY="apt-get install of Open MPI failed: $(tail -n1 "$RES/apt.log")"
                return
            fi
        else
            PEER_OK=0
            PEER_WHY="Open MPI (mpicc, mpirun) is not installed$( ((install)) && echo " and installing it needs root")"
            return
        fi
    fi
    if ! "$PV/bin/python" -c 'import numpy; from mpi4py import MPI' >/dev/null 2>&1; then
        if ! ((install)); then
            PEER_OK=0 PEER_WHY="mpi4py is not installed in bench/py/.peers-venv (a full run installs it)"
            return
        fi
        local base
        base=$("$CPY" -c 'import sys; print(sys._base_executable)' 2>/dev/null || command -v python3)
        log "creating bench/py/.peers-venv with numpy and mpi4py (built against the OS Open MPI; minutes the first time)"
        if ! "$base" -m venv "$PV" >"$RES/peers-install.log" 2>&1 ||
            ! "$PV/bin/pip" install -q --disable-pip-version-check --no-binary mpi4py \
                numpy mpi4py >>"$RES/peers-install.log" 2>&1; then
            PEER_OK=0
            PEER_WHY="mpi4py could not be installed: $(grep -v '^WARNING' "$RES/peers-install.log" | grep -m1 -i 'error' || tail -n1 "$RES/peers-install.log")"
            return
        fi
        if ! "$PV/bin/python" -c 'import numpy; from mpi4py import MPI' >>"$RES/peers-install.log" 2>&1; then
            PEER_OK=0 PEER_WHY="mpi4py was installed but does not import: $(tail -n1 "$RES/peers-install.log")"
            return
        fi
    fi
    SHM_BTL=vader
    ompi_info 2>/dev/null | grep -q 'MCA btl: vader' || SHM_BTL=sm
    MPI_FLAGS=(-n 2 --oversubscribe --mca pml ob1)
    if [[ $(id -u) == 0 ]]; then
        MPI_FLAGS+=(--allow-run-as-root)
        export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    fi
}

run_cp() { # name npes args...
    local name=$1 np=$2
    shift 2
    timeout -k 5 "$TMO" "$CHARMRUN" -n "$np" "$HERE/charm_bench.py" "$@" \
        2>"$RES/$name.err" </dev/null
}
# Under mpirun over Open MPI's shared memory (BTL shm) or TCP (tcp, the
# path between hosts): mpi4py, and charmpy itself (its mpi machine layer).
run_mpi() { # name shm|tcp args...
    local name=$1 btl=$2
    shift 2
    timeout -k 5 "$TMO" mpirun "${MPI_FLAGS[@]}" --mca btl "self,$(btl_of "$btl")" \
        "$PV/bin/python" "$HERE/mpi_bench.py" "$@" 2>"$RES/$name.err" </dev/null
}
run_cpm() { # name shm|tcp args...
    local name=$1 btl=$2
    shift 2
    timeout -k 5 "$TMO" mpirun "${MPI_FLAGS[@]}" --mca btl "self,$(btl_of "$btl")" \
        "$CPY" "$HERE/charm_bench.py" "$@" 2>"$RES/$name.err" </dev/null
}
btl_of() { if [[ $1 == shm ]]; then echo "$SHM_BTL"; else echo "$1"; fi; }

# ---- smoke ----------------------------------------------------------------------
if ((SMOKE)); then
    setup_peers 0
    export BENCH_REPS=1 BENCH_TIME=0.01
    pass=0 fail=0
    check() { # label command...
        local label=$1 out rc=0
        shift
        out=$("$@") || rc=$?
        if ((rc == 0)) && grep -q '^[a-z]' <<<"$out"; then
            pass=$((pass + 1))
            echo "ok   $label: $(grep -v '^#' <<<"$out" | tail -n1)"
        else
            fail=$((fail + 1))
            echo "FAIL $label (exit $rc; stderr in bench/py/.out/)"
        fi
    }
    check "charmpy latency" run_cp smoke-cp-latency 2 latency 20
    check "charmpy rate 2 PEs" run_cp smoke-cp-rate 2 rate 1000
    check "charmpy rate same PE" run_cp smoke-cp-rate1 1 rate 1000
    check "charmpy bw" run_cp smoke-cp-bw 2 bw 65536 3
    check "charmpy mem array" run_cp smoke-cp-mem-array 1 mem 2000 array
    check "charmpy mem plain" run_cp smoke-cp-mem-plain 1 mem 2000 plain
    if ((PEER_OK)); then
        check "mpi4py latency" run_mpi smoke-mpi-latency shm latency 20
        check "mpi4py rate" run_mpi smoke-mpi-rate shm rate 1000
        check "mpi4py bw" run_mpi smoke-mpi-bw shm bw 65536 3
        check "charmpy (mpi layer) latency" run_cpm smoke-cpm-latency shm latency 20
        check "charmpy (mpi layer) bw over tcp" run_cpm smoke-cpm-bw tcp bw 65536 3
    else
        echo "skip mpi4py: $PEER_WHY"
    fi
    echo "smoke: $pass passed, $fail failed"
    ((fail == 0))
    exit
fi

# ---- one benchmark alone --------------------------------------------------------
if [[ $MODE != all ]]; then
    setup_peers 1
    rc=0
    case $MODE in
    latency | rate | bw)
        echo "== charmpy, 2 PEs"
        run_cp one-cp 2 "$MODE" "$@" || { rc=$?; log "charmpy exited $rc (see $RES/one-cp.err)"; }
        if ((PEER_OK)); then
            echo "== mpi4py, 2 ranks"
            run_mpi one-mpi shm "$MODE" "$@" || { rc=$?; log "mpi4py exited $rc (see $RES/one-mpi.err)"; }
            echo "== charmpy over its mpi layer, 2 ranks"
            run_cpm one-cpm shm "$MODE" "$@" || { rc=$?; log "charmpy (mpi) exited $rc (see $RES/one-cpm.err)"; }
        else
            echo "== no mpi4py: $PEER_WHY"
        fi
        ;;
    rate-same)
        echo "== charmpy, 1 PE"
        run_cp one-cp 1 rate "$@" || rc=$?
        ;;
    mem)
        for k in array plain; do
            run_cp one-cp-$k 1 mem "${1:-1000000}" $k || rc=$?
        done
        ;;
    esac
    exit $rc
fi

# ---- the full run -----------------------------------------------------------------
setup_peers 1
((PEER_OK)) || log "no mpi4py column: $PEER_WHY"

# Percent of the CPUs busy over half a second (/proc/stat).
cpu_busy() {
    local a b t=0 i k
    read -r -a a </proc/stat
    sleep 0.5
    read -r -a b </proc/stat
    i=$(((b[4] + b[5]) - (a[4] + a[5])))
    for k in 1 2 3 4 5 6 7 8; do t=$((t + b[k] - a[k])); done
    ((t > 0)) || { echo 0; return; }
    echo $((100 * (t - i) / t))
}
# On 2 cores any other busy program distorts every figure: before each
# program wait (BENCH_QUIET_WAIT seconds in all) until the CPUs are idle.
QUIET_BUDGET=${BENCH_QUIET_WAIT:-60}
MAX_BUSY=0
wait_quiet() {
    [[ -r /proc/stat ]] || return 0
    local busy said=0
    busy=$(cpu_busy)
    while ((busy > 10 && QUIET_BUDGET > 0)); do
        ((said)) || log "CPUs ${busy}% busy with other work: waiting (up to ${QUIET_BUDGET} s in all)"
        said=1
        sleep 1.5
        QUIET_BUDGET=$((QUIET_BUDGET - 2))
        busy=$(cpu_busy)
    done
    ((busy <= MAX_BUSY)) || MAX_BUSY=$busy
}
# CPU ticks of the whole machine and of this script's finished children:
# their difference over a run is what other programs took meanwhile.
machine_ticks() {
    local a t=0 k
    read -r -a a </proc/stat
    for k in 1 2 3 6 7 8; do t=$((t + a[k])); done
    echo "$t"
}
TIMES_F=$(mktemp)
trap 'rm -f "$TIMES_F"' EXIT
children_ticks() { # sets CT; `times` must run in this shell
    local u s
    times >"$TIMES_F"
    { read -r _ && read -r u s; } <"$TIMES_F"
    CT=$(awk -v u="$u" -v s="$s" -v hz="$(getconf CLK_TCK)" '
        function sec(x, m) { m = x; sub(/m.*/, "", m); sub(/^[0-9]+m/, "", x)
                             sub(/s$/, "", x); return m * 60 + x }
        BEGIN { printf "%d", (sec(u) + sec(s)) * hz }')
}

# run_once side name npes args...: sets OUT, RC and OTHER (% of the CPUs
# that other programs used during the run).
run_once() {
    local side=$1 name=$2 np=$3 m0 c0 t0 m1 c1 t1
    shift 3
    wait_quiet
    children_ticks
    m0=$(machine_ticks) c0=$CT t0=$(date +%s%N)
    RC=0
    case $side in
    cp) OUT=$(run_cp "$name" "$np" "$@") || RC=$? ;;
    mpi:*) OUT=$(run_mpi "$name" "${side#mpi:}" "$@") || RC=$? ;;
    cpm:*) OUT=$(run_cpm "$name" "${side#cpm:}" "$@") || RC=$? ;;
    esac
    children_ticks
    m1=$(machine_ticks) c1=$CT t1=$(date +%s%N)
    OTHER=$(awk -v m=$((m1 - m0)) -v c=$((c1 - c0)) -v ns=$((t1 - t0)) \
        -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" \
        'BEGIN { o = (m - c) / (ns / 1e9 * hz * n) * 100; printf "%d", o < 0 ? 0 : o }')
}

median() { awk NF | sort -g | awk '{v[NR] = $1} END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A VAL=() WHY=()
# Re-runs of disturbed launches, in all: under a lasting load they would
# only double the time.
RETRIES=${BENCH_RETRIES:-6}
FAILS=() DISTURBED=()
# step key side name npes launches args...: runs the program `launches`
# times (once more when other programs took > 10% of the CPUs, keeping the
# quieter run); VAL[key] = median over launches of the program's last line
# value (its median of BENCH_REPS repetitions). mem: VAL[key] = "rss secs".
step() {
    local key=$1 side=$2 name=$3 np=$4 n=$5 l worst=0 vals="" secs=""
    shift 5
    : >"$RES/$name.out"
    for ((l = 1; l <= n; l++)); do
        log "$side $name ($l/$n)"
        run_once "$side" "$name" "$np" "$@"
        if ((RC == 0 && OTHER > 10 && RETRIES > 0)); then
            RETRIES=$((RETRIES - 1))
            log "$name: other programs took ${OTHER}% of the CPUs meanwhile; once more"
            local out1=$OUT other1=$OTHER
            run_once "$side" "$name" "$np" "$@"
            if ((RC != 0 || OTHER > other1)); then OUT=$out1 OTHER=$other1 RC=0; fi
        fi
        printf '# launch %d (others %d%%)\n%s\n' "$l" "$OTHER" "$OUT" >>"$RES/$name.out"
        ((OTHER <= worst)) || worst=$OTHER
        if ((RC != 0)); then
            local why="exit $RC"
            ((RC == 124 || RC == 137)) && why="timed out after $TMO s"
            FAILS+=("$name: $why (see \`bench/py/.out/$name.err\`)")
            WHY[$key]="failed: $why"
            log "$name failed: $why"
            return
        fi
        local last
        last=$(grep -v '^#' <<<"$OUT" | tail -n1)
        if [[ $last == mem* ]]; then
            vals+="$(awk '{print $4}' <<<"$last")"$'\n'
            secs+="$(awk '{print $5}' <<<"$last")"$'\n'
        else
            vals+="$(awk '{print $2}' <<<"$last")"$'\n'
        fi
    done
    if [[ -n $secs ]]; then
        VAL[$key]="$(median <<<"$vals") $(median <<<"$secs")"
    else
        VAL[$key]=$(median <<<"$vals")
    fi
    ((worst <= 10)) || DISTURBED+=("$name (${worst}%)")
}

MEM_N=1000000
t_start=$(date +%s)
step cp_lat cp cp-latency 2 "$LAUNCHES" latency
((PEER_OK)) && step mpi_lat mpi:shm mpi-latency 2 "$LAUNCHES" latency
step cp_rate cp cp-rate 2 "$LAUNCHES" rate 200000
((PEER_OK)) && step mpi_rate mpi:shm mpi-rate 2 "$LAUNCHES" rate 200000
step cp_rate1 cp cp-rate-same 1 "$LAUNCHES" rate 200000
step cp_bw cp cp-bw 2 "$LAUNCHES" bw $((8 << 20))
((PEER_OK)) && step mpi_bw mpi:shm mpi-bw 2 "$LAUNCHES" bw $((8 << 20))
# charmpy over its mpi machine layer, beside mpi4py under the same mpirun
# flags: shared memory, then TCP (what crosses between hosts).
if ((PEER_OK)); then
    step cpm_lat cpm:shm cpm-latency 2 "$LAUNCHES" latency
    step cpm_bw cpm:shm cpm-bw 2 "$LAUNCHES" bw $((8 << 20))
    step cpm_lat_tcp cpm:tcp cpm-latency-tcp 2 "$LAUNCHES" latency
    step mpi_lat_tcp mpi:tcp mpi-latency-tcp 2 "$LAUNCHES" latency
    step cpm_bw_tcp cpm:tcp cpm-bw-tcp 2 "$LAUNCHES" bw $((8 << 20))
    step mpi_bw_tcp mpi:tcp mpi-bw-tcp 2 "$LAUNCHES" bw $((8 << 20))
fi
step cp_mem cp cp-mem-array 1 "$MEM_LAUNCHES" mem $MEM_N array
step plain_mem cp cp-mem-plain 1 "$MEM_LAUNCHES" mem $MEM_N plain
elapsed=$(($(date +%s) - t_start))

# ---- the table ----------------------------------------------------------------------
isnum() { [[ ${1:-} =~ ^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; }
cp_cell() { # key [awk expression over v]
    local v=${VAL[$1]:-}
    if [[ -z $v ]]; then echo "${WHY[$1]:-—}"; else echo "$v"; fi
}
peer_cell() { # key [full]: without mpi4py, the reason (in full once)
    if ((!PEER_OK)); then
        if [[ ${2:-} == full ]]; then echo "mpi4py unavailable: $PEER_WHY"; else echo "mpi4py unavailable (see above)"; fi
    else cp_cell "$1"; fi
}
ratio() {
    if isnum "${1:-}" && isnum "${2:-}" && awk -v b="$2" 'BEGIN{exit !(b>0)}'; then
        awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'
    else echo "—"; fi
}
met() { # value ge|lt limit
    if isnum "${1:-}"; then
        awk -v r="$1" -v l="$3" -v op="$2" 'BEGIN{ok = (op=="ge") ? r>=l : r<l; print ok ? "yes" : "**no**"}'
    else echo "—"; fi
}
fmt_rate() { if isnum "${1:-}"; then awk -v v="$1" 'BEGIN{printf "%.0f", v}'; else echo "$1"; fi; }

lat_c=$(cp_cell cp_lat) lat_p=$(peer_cell mpi_lat full)
rate_c=$(fmt_rate "$(cp_cell cp_rate)") rate_p=$(fmt_rate "$(peer_cell mpi_rate)")
rate1_c=$(fmt_rate "$(cp_cell cp_rate1)")
bw_c=$(cp_cell cp_bw) bw_p=$(peer_cell mpi_bw)
bw_r=$(ratio "$bw_c" "$bw_p")
mem_b="—" plain_b="—" mem_t="—" plain_t="—" per_elem="—"
if [[ -n ${VAL[cp_mem]:-} && -n ${VAL[plain_mem]:-} ]]; then
    read -r ma mt <<<"${VAL[cp_mem]}"
    read -r pa pt <<<"${VAL[plain_mem]}"
    per_elem=$(awk -v a="$ma" -v p="$pa" -v n=$MEM_N 'BEGIN{printf "%.1f", (a - p) / n}')
    mem_b=$(awk -v a="$ma" -v n=$MEM_N 'BEGIN{printf "%.1f", a / n}')
    plain_b=$(awk -v a="$pa" -v n=$MEM_N 'BEGIN{printf "%.1f", a / n}')
    mem_t=$(printf "%.2f" "$mt") plain_t=$(printf "%.2f" "$pt")
else
    per_elem="${WHY[cp_mem]:-${WHY[plain_mem]:-—}}"
fi

TABLE=$(mktemp)
GEN=$(mktemp)
trap 'rm -f "$TIMES_F" "$TABLE" "$GEN"' EXIT
{
    echo "| benchmark | charmpy | peer | ratio charmpy/peer | target | met? |"
    echo "| --- | ---: | ---: | ---: | --- | --- |"
    echo "| (a) latency of a small call, 2 PEs (µs, one-way); peer: mpi4py \`comm.send\`/\`recv\` of an int | $lat_c | $lat_p | $(ratio "$lat_c" "$lat_p") | — (reported) | — |"
    echo "| (b) fire-and-forget calls, PE 0 → PE 1 (calls/s); peer: mpi4py \`comm.isend\` of an int, windows of 256 | $rate_c | $rate_p | $(ratio "$rate_c" "$rate_p") | ≥ 1000000 | $(met "$rate_c" ge 1000000) |"
    echo "| (b) fire-and-forget calls, same PE (calls/s) | $rate1_c | — | — | ≥ 2000000 | $(met "$rate1_c" ge 2000000) |"
    echo "| (c) bandwidth, 8 MiB float64 numpy argument, ping-pong (GB/s); peer: mpi4py \`Send\`/\`Recv\` | $bw_c | $bw_p | $bw_r | ≥ 0.80 × mpi4py | $(met "$bw_r" ge 0.8) |"
    echo "| (d) runtime bookkeeping per array element, 1,000,000 elements, 1 PE (B) | $per_elem | — | — | < 200 | $(met "$per_elem" lt 200) |"
    echo "| (d) RSS growth per element: array element vs plain instance (B) | $mem_b | $plain_b | $(ratio "$mem_b" "$plain_b") | — (reported) | — |"
    echo "| (d) creating 1,000,000 elements: \`Array\` + \`awaitCreation\` vs a loop making plain instances (s) | $mem_t | $plain_t | $(ratio "$mem_t" "$plain_t") | — (reported) | — |"
    for t in "shm:shared memory (\`--mca btl self,$SHM_BTL\`)" "tcp:TCP (\`--mca btl self,tcp\`)"; do
        k=${t%%:*} label=${t#*:} sfx=""
        [[ $k == tcp ]] && sfx=_tcp
        a=$(cp_cell "cpm_lat$sfx") b=$(peer_cell "mpi_lat$sfx") r=$(ratio "$a" "$b")
        echo "| (e) mpi layer, $label: latency of a small call (µs, one-way); peer: mpi4py \`comm.send\`/\`recv\` | $a | $b | $r | ≤ 1.2 × mpi4py | $(met "$r" lt 1.2000001) |"
        a=$(cp_cell "cpm_bw$sfx") b=$(peer_cell "mpi_bw$sfx") r=$(ratio "$a" "$b")
        echo "| (e) mpi layer, $label: bandwidth, 8 MiB float64 numpy argument (GB/s); peer: mpi4py \`Send\`/\`Recv\` | $a | $b | $r | ≥ 0.90 × mpi4py | $(met "$r" ge 0.9) |"
    done
} >"$TABLE"

cpu=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
pyver=$("$CPY" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo "?")
npver=$("$CPY" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || echo "not installed")
rev=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
git diff --quiet HEAD -- python src include setup.py 2>/dev/null || rev="$rev + uncommitted changes"
{
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/py/run.sh\` (${elapsed} s), charmpy at $rev."
    echo
    echo "- machine: $(nproc) cores, ${cpu:-unknown CPU}, Linux $(uname -r)"
    echo "- Python $pyver, numpy $npver (charmpy venv)"
    if ((PEER_OK)); then
        shown=()
        for f in "${MPI_FLAGS[@]}"; do [[ $f == --allow-run-as-root ]] || shown+=("$f"); done
        echo "- peers: mpi4py $("$PV/bin/python" -c 'import mpi4py; print(mpi4py.__version__)'), numpy $("$PV/bin/python" -c 'import numpy; print(numpy.__version__)') (bench/py/.peers-venv), $(mpirun --version 2>&1 | head -n1), \`mpirun ${shown[*]} --mca btl self,$SHM_BTL\` (or \`self,tcp\` where the row says TCP)"
    else
        echo "- peers: **mpi4py unavailable**: $PEER_WHY"
    fi
    echo "- figures: (a)–(c) median over $LAUNCHES launches of each program's median of $BENCH_REPS repetitions (after a warm-up); (d) median over $MEM_LAUNCHES launches, each a fresh process; raw lines in \`bench/py/.out/*.out\`"
    if ((MAX_BUSY > 10)); then
        echo "- **warning**: other programs kept up to ${MAX_BUSY}% of the CPUs busy before some runs (figures unreliable)"
    fi
    if ((${#DISTURBED[@]})); then
        echo "- **warning**: other programs took CPU time during: ${DISTURBED[*]}; those figures are unreliable"
    fi
    for f in "${FAILS[@]}"; do echo "- failed: $f"; done
    echo
    cat "$TABLE"
} >"$GEN"

echo
cat "$GEN"
{
    echo "# charmpy Python-level benchmarks: latest run"
    echo
    cat "$GEN"
} >"$HERE/results.md"

# ---- docs/benchmarks.md: only the section between the pybench markers ----------------
DOC=docs/benchmarks.md
BEGIN='<!-- pybench:begin -->'
END='<!-- pybench:end -->'
SECTION=$(mktemp)
trap 'rm -f "$TIMES_F" "$TABLE" "$GEN" "$SECTION"' EXIT
{
    echo "$BEGIN"
    awk -v gen="$GEN" '
        $0 == "@RESULTS@" { while ((getline l < gen) > 0) print l; next }
        { print }' "$HERE/section.md"
    echo "$END"
} >"$SECTION"
touch "$DOC"
if grep -qF "$BEGIN" "$DOC" && grep -qF "$END" "$DOC"; then
    awk -v b="$BEGIN" -v e="$END" -v sec="$SECTION" '
        $0 == b { while ((getline l < sec) > 0) print l; skip = 1; next }
        $0 == e { skip = 0; next }
        !skip { print }' "$DOC" >"$DOC.tmp"
    mv "$DOC.tmp" "$DOC"
else
    { [[ -s $DOC ]] && echo; cat "$SECTION"; } >>"$DOC"
fi
log "wrote $DOC (pybench section) and bench/py/results.md"
