#!/usr/bin/env bash
# charmpy benchmarks, side by side with Open MPI in the same run.
#
#   bench/run.sh                     every benchmark; prints the markdown table
#                                    and writes it to docs/benchmarks.md (between
#                                    the bench markers) and bench/results/latest.md
#   bench/run.sh latency [SIZE...]   one benchmark, both transports, raw lines
#   bench/run.sh rate | bw [SIZE]
#   bench/run.sh storm [TOTAL [NPES]]
#
# Environment: BENCH_TIME (seconds per repetition, 0.1 here, 0.3 when a
# program runs alone), BENCH_REPS (5), BENCH_LAUNCHES (runs of each program
# whose medians are combined, 3),
# BENCH_TIMEOUT (seconds per program run, 120), BENCH_STORM_TOTAL (2000000),
# BENCH_NO_MPI=1 to skip the MPI column, BENCH_QUIET_WAIT (seconds to wait in
# all for other programs to leave the CPUs idle, 90), BENCH_VERIFY=1 (cp_bench
# checks every echo of the ping-pong). `make bench` builds the library and
# the launcher first; run alone, this script builds them with make if needed.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=build/bench
RES=bench/results
CHARMRUN=build/bin/charmrun
RT_LIB=build/lib/libcharmpy_rt.a
TMO=${BENCH_TIMEOUT:-120}
LAUNCHES=${BENCH_LAUNCHES:-3}
# Shorter repetitions than the programs' own default (0.3 s), as each
# program runs LAUNCHES times: the whole run stays near 2 minutes.
USER_TIME=${BENCH_TIME:-}
export BENCH_TIME=${BENCH_TIME:-0.1}
STORM_TOTAL=${BENCH_STORM_TOTAL:-2000000}
mkdir -p "$BIN" "$RES"

log() { printf 'bench: %s\n' "$*" >&2; }

# ---- Open MPI -------------------------------------------------------------
MPI_OK=1
MPI_WHY=""
MPI_NAME="MPI"
MPI_FLAGS=()
MPI_IS_OMPI=0
setup_mpi() {
    if [[ ${BENCH_NO_MPI:-0} == 1 ]]; then
        MPI_OK=0 MPI_WHY="BENCH_NO_MPI=1 was set"
        return
    fi
    if ! command -v mpicc >/dev/null || ! command -v mpirun >/dev/null; then
        if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
            log "installing Open MPI (libopenmpi-dev openmpi-bin)"
            if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                    libopenmpi-dev openmpi-bin; } >"$RES/apt.log" 2>&1; then
                MPI_OK=0 MPI_WHY="apt-get install of Open MPI failed (see $RES/apt.log)"
                return
            fi
        else
            MPI_OK=0
            MPI_WHY="mpicc/mpirun are not installed and this user cannot install them (needs root: apt-get install libopenmpi-dev openmpi-bin)"
            return
        fi
    fi
    local ver
    ver=$(mpirun --version 2>&1 | head -n1 || true)
    if [[ $ver == *"Open MPI"* || $ver == *"OpenRTE"* ]]; then
        # Shared memory only: the ob1 messaging layer over the vader (sm in
        # Open MPI 5) byte transport, so UCX or TCP can never be picked.
        local btl=vader
        if ! ompi_info 2>/dev/null | grep -q 'MCA btl: vader'; then
            btl=sm
        fi
        MPI_NAME="Open MPI ($btl)"
        MPI_IS_OMPI=1
        MPI_FLAGS=(--mca pml ob1 --mca btl "self,$btl")
        if [[ $(id -u) == 0 ]]; then
            MPI_FLAGS+=(--allow-run-as-root)
            export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
        fi
        # Open MPI binds each of 2 ranks to a core by default; keep that (it is
        # what a user gets) unless binding fails on this machine.
        if ! timeout 60 mpirun "${MPI_FLAGS[@]}" -n 2 true >/dev/null 2>&1; then
            MPI_FLAGS+=(--bind-to none)
        fi
    else
        MPI_NAME="MPI ($(echo "$ver" | awk '{print $1, $2}'))"
    fi
    MPI_VERSION=$ver
    if ! mpicc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -o "$BIN/mpi_bench" \
        bench/mpi_bench.c 2>"$RES/mpi_build.log"; then
        MPI_OK=0 MPI_WHY="mpi_bench did not compile (see $RES/mpi_build.log)"
    fi
}

# ---- charmpy ----------------------------------------------------------------
CP_OK=1
CP_WHY=""
setup_cp() {
    # Up to date under `make bench`; run alone, this brings them up to date.
    if ! make --no-print-directory -j2 "$RT_LIB" "$CHARMRUN" >"$RES/make.log" 2>&1; then
        if [[ -f $RT_LIB && -x $CHARMRUN ]]; then
            log "make failed (see $RES/make.log): measuring the library built before"
        else
            CP_OK=0 CP_WHY="the runtime library or charmrun did not build (see $RES/make.log)"
            return
        fi
    fi
    # The library's link flags (MPI's too, when it has the mpi layer).
    if ! ${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Iinclude \
        bench/cp_bench.c "$RT_LIB" $(make -s --no-print-directory print-ldlibs) \
        -o "$BIN/cp_bench" 2>"$RES/cp_build.log"; then
        CP_OK=0 CP_WHY="cp_bench did not compile or link (see $RES/cp_build.log)"
    fi
}

# Run one program; its stdout goes to stdout, stderr to the log named $1.
run_cp() { # logname npes args...
    local name=$1 np=$2
    shift 2
    timeout -k 5 "$TMO" "$CHARMRUN" -n "$np" "$BIN/cp_bench" "$@" 2>"$RES/$name.err"
}
# A program under mpirun: mpi_bench, or cp_bench (the runtime over its mpi
# machine layer) with the same flags.
run_under_mpirun() { # program logname npes args...
    local prog=$1 name=$2 np=$3
    shift 3
    local more=()
    # More ranks than cores: Open MPI refuses unless told.
    if ((MPI_IS_OMPI && np > $(nproc))); then more=(--oversubscribe); fi
    timeout -k 5 "$TMO" mpirun "${MPI_FLAGS[@]}" "${more[@]}" -n "$np" "$BIN/$prog" "$@" \
        2>"$RES/$name.err" </dev/null
}
run_mpi() { run_under_mpirun mpi_bench "$@"; }
run_cpm() { run_under_mpirun cp_bench "$@"; }

# Percent of all CPUs busy over half a second (from /proc/stat).
cpu_busy() {
    local a b
    read -r -a a </proc/stat
    sleep 0.5
    read -r -a b </proc/stat
    local t=0 i=$(( (b[4] + b[5]) - (a[4] + a[5]) )) k
    for k in 1 2 3 4 5 6 7 8; do t=$((t + b[k] - a[k])); done
    ((t > 0)) || { echo 0; return; }
    echo $(( 100 * (t - i) / t ))
}
# Timings on a 2-core machine mean nothing while another program keeps a core
# busy: wait (BENCH_QUIET_WAIT seconds in all, 90) for the machine to be idle.
BUSY=0 MAX_BUSY=0 QUIET_BUDGET=${BENCH_QUIET_WAIT:-90}
wait_quiet() {
    [[ -r /proc/stat ]] || return 0
    BUSY=$(cpu_busy)
    local said=0
    while ((BUSY > 10 && QUIET_BUDGET > 0)); do
        ((said)) || log "the machine is ${BUSY}% busy with other work; waiting (up to ${QUIET_BUDGET} s in all) for it to be idle"
        said=1
        sleep 2
        QUIET_BUDGET=$((QUIET_BUDGET - 3))
        BUSY=$(cpu_busy)
    done
    ((BUSY <= 10)) || log "still ${BUSY}% busy: measuring anyway (figures will be noisy)"
    ((BUSY <= MAX_BUSY)) || MAX_BUSY=$BUSY
}

# CPU time (in clock ticks) used on the machine as a whole, and by this
# script's finished children: the difference over one benchmark program is
# what other programs took from it.
machine_ticks() {
    local a t=0 k
    read -r -a a </proc/stat
    for k in 1 2 3 6 7 8; do t=$((t + a[k])); done
    echo "$t"
}
# Sets CT. `times` must run in this shell (not in a $(...) subshell).
TIMES_F=$(mktemp)
trap 'rm -f "$TIMES_F"' EXIT
children_ticks() {
    local u s
    times >"$TIMES_F"
    { read -r _ && read -r u s; } <"$TIMES_F" # children's user and system time
    CT=$(awk -v u="$u" -v s="$s" -v hz="$(getconf CLK_TCK)" '
        function sec(x, m) { m = x; sub(/m.*/, "", m); sub(/^[0-9]+m/, "", x)
                             sub(/s$/, "", x); return m * 60 + x }
        BEGIN { printf "%d", (sec(u) + sec(s)) * hz }')
}

setup_mpi
setup_cp
[[ $MPI_OK == 1 ]] || log "no MPI column: $MPI_WHY"
[[ $CP_OK == 1 ]] || log "no charmpy column: $CP_WHY"

# ---- one benchmark alone ----------------------------------------------------
if [[ $# -gt 0 ]]; then
    mode=$1
    shift
    export BENCH_TIME=${USER_TIME:-0.3}
    np=2
    if [[ $mode == storm ]]; then
        total=${1:-$STORM_TOTAL}
        np=${2:-2}
        set -- "$total"
    fi
    rc=0
    if [[ $CP_OK == 1 ]]; then
        echo "== charmpy shm, $np PEs"
        run_cp one-cp "$np" "$mode" "$@" || { rc=$?; log "charmpy exited $rc (see $RES/one-cp.err)"; }
    fi
    if [[ $MPI_OK == 1 ]]; then
        echo "== $MPI_NAME, $np ranks"
        run_mpi one-mpi "$np" "$mode" "$@" || { rc=$?; log "mpi exited $rc (see $RES/one-mpi.err)"; }
    fi
    exit $rc
fi

# ---- the full run -------------------------------------------------------------
declare -A CP=() MPI=() CPM=()
# parse LINES into the array named $1 (latency_SIZE, rate, bw, storm_NPES)
parse() {
    local -n arr=$1
    local k a b c
    while read -r k a b c; do
        case $k in
        latency) arr[latency_$a]=$b ;;
        rate) arr[rate]=$a ;;
        bw) arr[bw]=$b ;;
        storm) arr[storm_$a]=$c ;;
        coll) arr[coll_${a}_$b]=$c ;;
        esac
    done
}

# The benchmarks run in groups, charmpy then MPI, so both see the machine in
# the same state; before each program the machine must be idle (see above).
FAILS=() DISTURBED=()
# run_step side name npes args...: one program; sets OUT, RC and OTHER (the
# percent of the machine's CPU time that other programs used meanwhile).
run_step() {
    local side=$1 name=$2 np=$3
    shift 3
    wait_quiet
    log "$side: $name ($np PEs)"
    local m0 c0 t0 m1 c1 t1
    children_ticks
    m0=$(machine_ticks) c0=$CT t0=$(date +%s%N)
    RC=0
    case $side in
    cp) OUT=$(run_cp "cp-$name" "$np" "$@") || RC=$? ;;
    cpm) OUT=$(run_cpm "cpm-$name" "$np" "$@") || RC=$? ;;
    *) OUT=$(run_mpi "mpi-$name" "$np" "$@") || RC=$? ;;
    esac
    children_ticks
    m1=$(machine_ticks) c1=$CT t1=$(date +%s%N)
    OTHER=$(awk -v m=$((m1 - m0)) -v c=$((c1 - c0)) -v ns=$((t1 - t0)) \
        -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" \
        'BEGIN { o = (m - c) / (ns / 1e9 * hz * n) * 100; printf "%d", o < 0 ? 0 : o }')
}
# Medians over launches: lines "KEY... VALUE" with the same KEY fields
# become one line with the median VALUE, in the order first seen.
median_lines() {
    awk '!/^#/ && NF >= 2 {
            k = $1; for (i = 2; i < NF; i++) k = k " " $i
            if (!(k in n)) order[++nk] = k
            v[k, ++n[k]] = $NF
        }
        END {
            for (j = 1; j <= nk; j++) {
                k = order[j]; m = n[k]
                for (a = 1; a <= m; a++) x[a] = v[k, a] + 0
                for (a = 2; a <= m; a++) for (b = a; b > 1 && x[b-1] > x[b]; b--) {
                    t = x[b]; x[b] = x[b-1]; x[b-1] = t }
                med = m % 2 ? x[(m + 1) / 2] : (x[m / 2] + x[m / 2 + 1]) / 2
                print k, med
            }
        }'
}
# step side name npes args...: LAUNCHES runs of the program (each run once
# more if other programs took more than 10% of the CPUs meanwhile), then the
# median over the runs is recorded. On this kind of VM a whole run can sit in
# a slow or fast mode (placement of the vCPUs), which the repetitions inside
# one run cannot see.
step() {
    local side=$1 name=$2 np=$3 all="" worst=0 l
    for ((l = 1; l <= LAUNCHES; l++)); do
        run_step "$@"
        if ((RC == 0 && OTHER > 10)); then
            log "$side $name: other programs used ${OTHER}% of the CPUs meanwhile; once more"
            local out1=$OUT other1=$OTHER
            run_step "$@"
            if ((OTHER > other1)); then OUT=$out1 OTHER=$other1; fi
        fi
        all+="# launch $l"$'\n'"$OUT"$'\n'
        ((OTHER <= worst)) || worst=$OTHER
        if ((RC != 0)); then
            local why="exit $RC"
            ((RC == 124 || RC == 137)) && why="timed out after $TMO s"
            FAILS+=("$side $name on $np PEs: $why (see \`$RES/$side-$name.err\`)")
            log "$side $name failed: $why"
            break
        fi
    done
    printf '%s' "$all" >"$RES/$side-$name.out"
    local med
    med=$(median_lines <<<"$all")
    case $side in
    cp) parse CP <<<"$med" ;;
    cpm) parse CPM <<<"$med" ;;
    *) parse MPI <<<"$med" ;;
    esac
    ((worst <= 10)) || DISTURBED+=("$side $name (${worst}%)")
}
t_start=$(date +%s)
for group in "latency 2 latency" "rate 2 rate" "bw 2 bw" \
    "storm2 2 storm $STORM_TOTAL" "storm8 8 storm $STORM_TOTAL"; do
    read -r -a g <<<"$group"
    [[ $CP_OK == 1 ]] && step cp "${g[@]}"
    [[ $MPI_OK == 1 ]] && step mpi "${g[@]}"
done
# The runtime over its mpi machine layer (when the library has it), beside
# the same MPI: ping-pong, and a broadcast plus a sum reduction against
# MPI_Bcast + MPI_Reduce (and the shm layer).
CPM_OK=0
if [[ $CP_OK == 1 && $MPI_OK == 1 ]] && nm "$RT_LIB" 2>/dev/null | grep -q 'T cm_mpi_ops'; then
    CPM_OK=1
    step cpm latency 2 latency 8 4096 262144 4194304
    for np in 2 4; do
        for side in cp cpm mpi; do step "$side" "coll$np" "$np" coll; done
    done
fi
elapsed=$(($(date +%s) - t_start))

# ---- the table --------------------------------------------------------------
isnum() { [[ ${1:-} =~ ^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; }
cell() { # array key
    local -n arr=$1
    local v=${arr[$2]:-}
    if [[ -z $v ]]; then echo "—"; else echo "$v"; fi
}
# ratio A B: A/B with 2 decimals, or — when either is missing
ratio() {
    if isnum "${1:-}" && isnum "${2:-}" && awk -v b="$2" 'BEGIN{exit !(b>0)}'; then
        awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'
    else echo "—"; fi
}
# met RATIO OP LIMIT: yes/no, or — without a ratio
met() {
    if isnum "$1"; then
        awk -v r="$1" -v l="$3" -v op="$2" 'BEGIN{ok = (op=="le") ? r<=l : r>=l; print ok ? "yes" : "**no**"}'
    else echo "—"; fi
}
human_size() {
    local s=$1
    if ((s >= 1048576)); then echo "$((s / 1048576)) MiB"
    elif ((s >= 1024)); then echo "$((s / 1024)) KiB"
    else echo "$s B"; fi
}

TABLE=$(mktemp)
trap 'rm -f "$TABLE" "$TIMES_F"' EXIT
{
    echo "| benchmark | charmpy shm | $MPI_NAME | ratio charmpy/MPI | target | met? |"
    echo "| --- | ---: | ---: | ---: | --- | --- |"
    for s in 8 64 512 4096 32768 262144 1048576 4194304; do
        c=$(cell CP "latency_$s") m=$(cell MPI "latency_$s") r=$(ratio "$c" "$m")
        if ((s <= 4096)); then
            echo "| latency $(human_size "$s") (µs, one-way) | $c | $m | $r | ≤ 1.00 (at or below MPI) | $(met "$r" le 1) |"
        else
            echo "| latency $(human_size "$s") (µs, one-way) | $c | $m | $r | — (reported) | — |"
        fi
    done
    c=$(cell CP rate) m=$(cell MPI rate) r=$(ratio "$c" "$m")
    echo "| message rate, 8 B, window 64 (msg/s) | $c | $m | $r | ≥ 1.00 | $(met "$r" ge 1) |"
    c=$(cell CP bw) m=$(cell MPI bw) r=$(ratio "$c" "$m")
    echo "| bandwidth, 4 MiB, window 8 (GB/s) | $c | $m | $r | ≥ 0.80 | $(met "$r" ge 0.8) |"
    for np in 2 8; do
        c=$(cell CP "storm_$np") m=$(cell MPI "storm_$np") r=$(ratio "$c" "$m")
        echo "| storm, $STORM_TOTAL × 64 B all-to-all, $np PEs (s) | $c | $m | $r | — | — |"
    done
    c=$(ratio "${CP[storm_8]:-}" "${CP[storm_2]:-}") m=$(ratio "${MPI[storm_8]:-}" "${MPI[storm_2]:-}")
    echo "| storm time 8 PEs / 2 PEs (2 cores) | $c | $m | — | charmpy ≤ 5.00 | $(met "$c" le 5) |"
    if ((CPM_OK)); then
        echo
        echo "The runtime over its mpi machine layer (\`cp_bench\` under \`mpirun\`, same flags), beside the shm layer and $MPI_NAME:"
        echo
        echo "| benchmark | charmpy mpi layer | charmpy shm | $MPI_NAME | ratio mpi layer/MPI |"
        echo "| --- | ---: | ---: | ---: | ---: |"
        for sz in 8 4096 262144 4194304; do
            a=$(cell CPM "latency_$sz") c=$(cell CP "latency_$sz") m=$(cell MPI "latency_$sz")
            echo "| latency $(human_size "$sz") (µs, one-way) | $a | $c | $m | $(ratio "$a" "$m") |"
        done
        for np in 2 4; do
            for sz in 8 65536; do
                a=$(cell CPM "coll_${np}_$sz") c=$(cell CP "coll_${np}_$sz") m=$(cell MPI "coll_${np}_$sz")
                echo "| broadcast $(human_size "$sz") from PE 0 + sum reduction of a float64 to PE 0, $np PEs (µs); MPI: \`MPI_Bcast\` + \`MPI_Reduce\` | $a | $c | $m | $(ratio "$a" "$m") |"
            done
        done
    fi
} >"$TABLE"

cpu=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown)
GEN=$(mktemp)
trap 'rm -f "$TABLE" "$GEN" "$TIMES_F"' EXIT
{
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/run.sh\` (${elapsed} s)."
    echo
    echo "- machine: $(nproc) cores, ${cpu:-unknown CPU}, Linux $(uname -r)"
    shown=()
    for f in "${MPI_FLAGS[@]}"; do [[ $f == --allow-run-as-root ]] || shown+=("$f"); done
    if [[ $MPI_OK == 1 ]]; then
        echo "- MPI: ${MPI_VERSION:-unknown}, \`mpirun ${shown[*]} -n N\`"
    fi
    echo "- compiler: $(${CC:-cc} --version 2>/dev/null | head -n1)"
    if ((MAX_BUSY > 10)); then
        echo "- **warning**: other programs kept up to ${MAX_BUSY}% of the CPUs busy before some runs; with 2 cores the figures are then unreliable"
    fi
    if ((${#DISTURBED[@]})); then
        echo "- **warning**: other programs took CPU time during: ${DISTURBED[*]}; those figures are unreliable"
    fi
    echo "- figures: median over $LAUNCHES launches of each program of the median of ${BENCH_REPS:-5} repetitions of ~$BENCH_TIME s (storm: of ${BENCH_REPS:-5} storms after a warm-up one); every repetition is in \`$RES/*.out\`"
    [[ $MPI_OK == 1 ]] || echo "- no MPI column: $MPI_WHY"
    [[ $CP_OK == 1 ]] || echo "- no charmpy column: $CP_WHY"
    for f in "${FAILS[@]}"; do echo "- failed: $f"; done
    echo
    cat "$TABLE"
} >"$GEN"

echo
cat "$GEN"

{
    echo "# charmpy benchmarks: latest run"
    echo
    cat "$GEN"
} >"$RES/latest.md"

# Replace the generated section of docs/benchmarks.md; keep the rest.
DOC=docs/benchmarks.md
BEGIN='<!-- bench:begin -->'
END='<!-- bench:end -->'
mkdir -p docs
if [[ -f $DOC ]] && grep -qF "$BEGIN" "$DOC" && grep -qF "$END" "$DOC"; then
    awk -v b="$BEGIN" -v e="$END" -v f="$GEN" '
        $0 == b { print; while ((getline l < f) > 0) print l; skip = 1; next }
        $0 == e { skip = 0 }
        !skip { print }' "$DOC" >"$DOC.tmp" && mv "$DOC.tmp" "$DOC"
else
    { [[ -f $DOC ]] && cat "$DOC" && echo; echo "$BEGIN"; cat "$GEN"; echo "$END"; } >"$DOC.tmp"
    mv "$DOC.tmp" "$DOC"
fi
log "wrote $DOC and $RES/latest.md"
