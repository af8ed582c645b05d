#!/usr/bin/env bash
# The C tests of one build directory.
#
#   tests/run-c-tests.sh BUILD_DIR [unit|pe|all]
#
# unit: every program in BUILD_DIR/tests/unit (each under `timeout 120`).
# pe:   the multi-PE programs of BUILD_DIR/tests/pe through the launcher at
#       P = 1, 2, 3 and 8 (each under `timeout 60`), the fault tests (a PE
#       aborts, is killed, exits, the PEs disagree, the launcher is killed),
#       and the launcher's argument errors.
# Prints one PASS/FAIL line per test and ends with "N passed, M failed";
# exits non-zero when anything failed.
#
# Every job runs in a session of its own, so processes it leaves behind are
# found (and ended, by pid) precisely, whatever they are called.
set -u

usage() {
    echo "usage: $0 BUILD_DIR [unit|pe|all]" >&2
    exit 2
}
[ $# -ge 1 ] || usage
BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "$0: no directory $1" >&2; exit 2; }
WHAT=${2:-all}
case $WHAT in unit | pe | all) ;; *) usage ;; esac

CHARMRUN=$BUILD/bin/charmrun
PEBIN=$BUILD/tests/pe
PS=(1 2 3 8)
FAULT_BOUND=10 # seconds within which a failed job must be over
TMP=$(mktemp -d "${TMPDIR:-/tmp}/charmpy-ctest.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PASSED=0
FAILED=0
MARK_N=0
LIMIT=0

. "$(dirname "$0")/jobs.sh"

# A string no other process on this host has in its command line.
marker() {
    MARK_N=$((MARK_N + 1))
    MARK="ctest-$$-$MARK_N-$RANDOM"
}

# /dev/shm entries, less those of MPI libraries that other jobs on this host
# (the MPI benchmarks) may create meanwhile.
shm_snapshot() {
    ls -A /dev/shm 2>/dev/null |
        grep -Ev '^(vader_segment|sm_segment|psm|ompi|mpich|MPI_|sem\.mpi|shm-col|osu)' |
        sort
}


# report LABEL: PASS or FAIL with the reasons collected since the last one.
report() {
    if [ -z "$REASONS" ]; then
        echo "PASS $1 (${DUR}s)"
        PASSED=$((PASSED + 1))
    else
        echo "FAIL $1: $REASONS"
        if [ -s "$TMP/out" ]; then
            echo "  --- last lines of stdout:"
            tail -n 8 "$TMP/out" | sed 's/^/  | /'
        fi
        if [ -s "$TMP/err" ]; then
            echo "  --- last lines of stderr:"
            tail -n 12 "$TMP/err" | sed 's/^/  | /'
        fi
        FAILED=$((FAILED + 1))
    fi
    REASONS=""
}

# Checks every job gets: no timeout, no test failure reported, nothing left.
common_checks() {
    if [ "$RC" = 124 ] || { [ "$RC" = 137 ] && ! longer "$LIMIT" "$DUR"; }; then
        reason "timed out after ${DUR}s (limit ${LIMIT}s)"
    fi
    grep -q TESTFAIL "$TMP/out" "$TMP/err" && reason "a PE reported a failure"
    leftovers 2 && reason "processes left after the job: $LEFT"
    local new_shm
    new_shm=$(comm -13 <(echo "$SHM_BEFORE") <(shm_snapshot) | tr '\n' ' ')
    [ -z "${new_shm// /}" ] || reason "new in /dev/shm: $new_shm"
}

# pe_job P LIMIT PROG ARGS...: one multi-PE run through the launcher.
pe_job() {
    local p=$1 limit=$2 prog=$3
    shift 3
    SHM_BEFORE=$(shm_snapshot)
    local env=()
    [ "$prog" = heapfull ] && env=(env CHARMPY_HEAP_MB=64)
    run_job "$limit" ${env[@]+"${env[@]}"} "$CHARMRUN" -n "$p" "$PEBIN/$prog" "$@"
    common_checks
}

# A job traced with +trace FILE: FILE is one Chrome trace-event JSON with a
# named track a PE, a slice on every PE, every flow's end after its start
# and no part files left.
trace_case() {
    local p=$1 prog=$2 okline=$3
    rm -f "$TMP"/trace.json*
    pe_job "$p" 60 "$prog" +trace "$TMP/trace.json"
    [ "$RC" = 0 ] || reason "exit status $RC, expected 0"
    grep -qF -- "$okline" "$TMP/out" || reason "no \"$okline\" on stdout"
    ls "$TMP"/trace.json.*.part >/dev/null 2>&1 && reason "part files left"
    local why
    why=$(python3 - "$TMP/trace.json" "$p" <<'PY' 2>&1
import json, sys
tr = json.load(open(sys.argv[1]))
p = int(sys.argv[2])
ev = tr["traceEvents"]
names = {e["pid"]: e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "process_name"}
assert names == {pe: f"PE {pe}" for pe in range(p)}, names
assert {e["pid"] for e in ev if e["ph"] == "X"} == set(range(p)), "a PE without slices"
s = {e["id"]: e["ts"] for e in ev if e["ph"] == "s"}
f = {e["id"]: e["ts"] for e in ev if e["ph"] == "f"}
assert s and set(s) == set(f), "unmatched flows"
assert all(f[i] >= s[i] for i in f), "a flow ends before it starts"
PY
    ) || reason "trace: ${why##*$'\n'}"
    report "trace ($prog +trace) P=$p"
}

# ---- unit tests -------------------------------------------------------------

run_unit() {
    local t n=0
    for t in "$BUILD"/tests/unit/*; do
        [ -f "$t" ] && [ -x "$t" ] || continue
        n=$((n + 1))
        SHM_BEFORE=$(shm_snapshot)
        run_job 120 "$t"
        [ "$RC" = 0 ] || reason "exit status $RC"
        common_checks
        report "unit/$(basename "$t")"
    done
    if [ "$n" = 0 ]; then
        DUR=0
        reason "no unit test programs in $BUILD/tests/unit"
        report "unit tests exist"
    fi
}

# ---- multi-PE programs ------------------------------------------------------

# expect_ok LABEL P OK-LINE PROG ARGS...
expect_ok() {
    local label=$1 p=$2 okline=$3
    shift 3
    pe_job "$p" 60 "$@"
    [ "$RC" = 0 ] || reason "exit status $RC, expected 0"
    grep -qF -- "$okline" "$TMP/out" || reason "no \"$okline\" on stdout"
    report "$label P=$p"
}

# A job that must fail: non-zero, quickly.
expect_failure_fast() {
    [ "$RC" != 0 ] || reason "exit status 0, expected non-zero"
    longer "$DUR" "$FAULT_BOUND" && reason "took ${DUR}s to end (bound ${FAULT_BOUND}s)"
}

# The PE number named in stderr as "PE <n>".
names_pe() { grep -Eq "PE[ #:]*$1([^0-9]|\$)" "$TMP/err"; }

# No process of the program is left, found by its command line.
no_program_left() {
    local prog=$1 t0 pids q
    t0=$(now)
    while pids=$(pgrep -f -- "$PEBIN/$prog .*$MARK" | tr '\n' ' ') && [ -n "$pids" ]; do
        if longer "$(secs_since "$t0")" 2; then
            reason "processes of $prog still running: $pids"
            for q in $pids; do kill -9 "$q" 2>/dev/null; done
            return
        fi
        sleep 0.1
    done
}

fault_abort() {
    local p=$1 victim=$2 mode=$3
    local v=$victim
    [ "$v" -ge "$p" ] && v=$((p - 1))
    marker
    pe_job "$p" 60 abort "$victim" "$mode" "$MARK"
    expect_failure_fast
    grep -q "deliberate abort from test" "$TMP/err" ||
        reason "stderr lacks the abort message"
    names_pe "$v" || reason "stderr does not name PE $v"
    no_program_left abort
    report "abort victim=$v $mode P=$p"
}

fault_kill() {
    local p=$1 victim=$2 how=$3 mode=$4
    local v=$victim
    [ "$v" -ge "$p" ] && v=$((p - 1))
    marker
    pe_job "$p" 60 kill "$victim" "$how" "$mode" "$MARK"
    expect_failure_fast
    names_pe "$v" || reason "stderr does not name PE $v"
    if [ "$how" = signal ]; then
        grep -Eiq "SIGKILL|signal 9|killed" "$TMP/err" ||
            reason "stderr does not name the signal (SIGKILL / signal 9)"
    else
        grep -Eq "(status|code)[ :=]*7([^0-9]|\$)|exit(ed)?( with)?[ :=]*7([^0-9]|\$)" "$TMP/err" ||
            reason "stderr does not give the exit status 7"
    fi
    no_program_left kill
    report "kill victim=$v $how $mode P=$p"
}

# A PE exits (status 5, or 0 for "zero") before cp_init while the others
# wait: the job must still end, non-zero. At P=1 the only PE's status is the
# job's.
fault_noinit() {
    local p=$1 how=${2:-five}
    marker
    pe_job "$p" 15 noinit "$how" "$MARK"
    if [ "$p" = 1 ] && [ "$how" = zero ]; then
        [ "$RC" = 0 ] || reason "exit status $RC, expected 0 (the only PE's)"
    else
        expect_failure_fast
    fi
    no_program_left noinit
    report "noinit (a PE exits $how before cp_init) P=$p"
}

fault_redmismatch() {
    local p=$1 what=$2
    pe_job "$p" 20 redmismatch "$what"
    if [ "$p" = 1 ]; then
        [ "$RC" = 0 ] || reason "exit status $RC at P=1"
    else
        expect_failure_fast
        grep -qi "reduc" "$TMP/err" || reason "stderr does not mention the reduction"
    fi
    report "redmismatch $what P=$p"
}

exitcode_case() {
    local p=$1 code=$2
    pe_job "$p" 60 exitcode "$code"
    [ "$RC" = "$code" ] || reason "exit status $RC, expected $code"
    report "exitcode $code P=$p"
}

# The launcher is SIGKILLed; its PEs must be gone within 2 s.
launcher_killed() {
    local p=$1 mode=$2 t0 pids n kpid q
    marker
    SHM_BEFORE=$(shm_snapshot)
    DUR=0
    setsid "$CHARMRUN" -n "$p" "$PEBIN/kill" none signal "$mode" "$MARK" \
        >"$TMP/out" 2>"$TMP/err" </dev/null &
    SID=$!
    kpid=$SID
    t0=$(now)
    n=0
    while :; do
        n=$(pgrep -f -- "$PEBIN/kill none .*$MARK" | grep -vx "$kpid" | wc -l)
        [ "$n" -ge "$p" ] && break
        if longer "$(secs_since "$t0")" 10; then
            reason "only $n of $p PEs started within 10 s"
            break
        fi
        sleep 0.1
    done
    sleep 0.5 # let them reach cp_run
    kill -9 "$kpid"
    { wait "$kpid"; } 2>/dev/null
    t0=$(now)
    while pids=$(pgrep -f -- "$PEBIN/kill none .*$MARK" | tr '\n' ' ') && [ -n "$pids" ]; do
        if longer "$(secs_since "$t0")" 2; then
            reason "PEs still running 2 s after the launcher was killed: $pids"
            for q in $pids; do kill -9 "$q" 2>/dev/null; done
            break
        fi
        sleep 0.05
    done
    DUR=$(secs_since "$t0")
    leftovers 1 && reason "processes left in the job's session: $LEFT"
    report "launcher killed ($mode PEs) P=$p"
}

# Ctrl-C (or SIGTERM) to the launcher ends the job: the launcher exits
# non-zero and no PE is left.
launcher_signal() {
    local p=$1 sig=$2 t0 n kpid pids
    marker
    SHM_BEFORE=$(shm_snapshot)
    setsid "$CHARMRUN" -n "$p" "$PEBIN/kill" none signal idle "$MARK" \
        >"$TMP/out" 2>"$TMP/err" </dev/null &
    SID=$!
    kpid=$SID
    t0=$(now)
    while n=$(pgrep -f -- "$PEBIN/kill none .*$MARK" | grep -vx "$kpid" | wc -l) &&
        [ "$n" -lt "$p" ]; do
        if longer "$(secs_since "$t0")" 10; then
            reason "only $n of $p PEs started within 10 s"
            break
        fi
        sleep 0.1
    done
    sleep 0.5
    kill -s "$sig" "$kpid"
    t0=$(now)
    while kill -0 "$kpid" 2>/dev/null &&
        [ "$(ps -o stat= -p "$kpid" | cut -c1)" != Z ]; do
        if longer "$(secs_since "$t0")" 5; then
            reason "launcher still running 5 s after SIG$sig"
            kill -9 "$kpid"
            break
        fi
        sleep 0.05
    done
    wait "$kpid"
    RC=$?
    DUR=$(secs_since "$t0")
    [ "$RC" != 0 ] || reason "exit status 0 after SIG$sig"
    pids=$(pgrep -f -- "$PEBIN/kill none .*$MARK" | tr '\n' ' ')
    [ -z "$pids" ] || reason "PEs still running after the launcher exited: $pids"
    leftovers 1 && reason "processes left in the job's session: $LEFT"
    report "launcher gets SIG$sig P=$p"
}

# charmrun ARGS must exit 2 with one line "charmrun: error: ..." on stderr.
launcher_usage_error() {
    local label=$1
    shift
    SHM_BEFORE=$(shm_snapshot)
    run_job 20 "$CHARMRUN" "$@"
    [ "$RC" = 2 ] || reason "exit status $RC, expected 2"
    local lines
    lines=$(wc -l <"$TMP/err")
    [ "$lines" = 1 ] || reason "$lines lines on stderr, expected 1"
    head -n 1 "$TMP/err" | grep -q '^charmrun: error:' ||
        reason "stderr does not start with 'charmrun: error:'"
    common_checks
    report "charmrun $label"
}

run_pe() {
    if [ ! -x "$CHARMRUN" ]; then
        DUR=0
        reason "no launcher at $CHARMRUN"
        report "charmrun exists"
        return
    fi
    local p
    for p in "${PS[@]}"; do
        expect_ok pingpong "$p" "OK pingpong P=$p" pingpong
        expect_ok storm "$p" "OK storm P=$p" storm
        expect_ok "segs (cp_send_segs, copied)" "$p" "OK segs P=$p" segs
        expect_ok bcast "$p" "OK bcast P=$p" bcast
        expect_ok mcast "$p" "OK mcast P=$p" mcast
        expect_ok reduce "$p" "OK reduce P=$p" reduce
        expect_ok bigmsg "$p" "OK bigmsg P=$p" bigmsg
        expect_ok timers "$p" "OK timers P=$p" timers
        expect_ok timers-only "$p" "OK timers-only P=$p" timers only
        expect_ok badhandler "$p" "OK badhandler P=$p" badhandler
        expect_ok barrier "$p" "OK barrier P=$p" barrier
        expect_ok among "$p" "OK among P=$p" among
        expect_ok "heapfull (64 MiB heaps)" "$p" "OK heapfull P=$p" heapfull
        expect_ok rununtil "$p" "OK rununtil P=$p" rununtil
        expect_ok "pollfor (a handler waiting for its next message in place)" "$p" \
            "OK pollfor P=$p" pollfor
        expect_ok "profcount (send and receive times, exact message counts)" "$p" \
            "OK profcount P=$p" profcount
        expect_ok "profcount +stats (profiling from the start)" "$p" "OK profcount P=$p" \
            profcount stats +stats
        trace_case "$p" bcast "OK bcast P=$p"
        expect_ok "qd (quiescence detection)" "$p" "OK qd P=$p" qd
        expect_ok "qdx (exclusive quiescence requests)" "$p" "OK qdx P=$p" qdx
        expect_ok "extract (calls taken out of a PE's own queue)" "$p" "OK extract P=$p" extract
        expect_ok "bgtimer (background timers and quiescence)" "$p" "OK bgtimer P=$p" bgtimer
        expect_ok "flags (runtime flags kept, removed from argv)" "$p" "OK flags P=$p" flags \
            a +balancer GreedyLB b +LBDebug 1 +stats ++quiet +trace "$TMP/t.json" +p3x c +LBPeriod
        exitcode_case "$p" 3
        exitcode_case "$p" 0
        fault_abort "$p" 1 idle
        fault_kill "$p" 1 signal idle
        fault_kill "$p" 1 exit idle
        fault_noinit "$p"
        fault_noinit "$p" zero
        fault_redmismatch "$p" reducer
    done
    exitcode_case 2 77
    fault_abort 8 5 busy
    fault_abort 3 0 idle
    fault_kill 8 7 signal busy
    fault_kill 3 0 signal idle
    fault_redmismatch 3 root
    fault_redmismatch 3 handler
    launcher_killed 4 idle
    launcher_killed 4 busy
    launcher_signal 3 INT
    launcher_signal 8 TERM

    # Launcher forms and errors.
    SHM_BEFORE=$(shm_snapshot)
    run_job 60 "$CHARMRUN" +p3 "$PEBIN/pingpong"
    [ "$RC" = 0 ] || reason "exit status $RC"
    grep -qF "OK pingpong P=3" "$TMP/out" || reason "no \"OK pingpong P=3\""
    common_checks
    report "charmrun +p3 form"

    SHM_BEFORE=$(shm_snapshot)
    run_job 60 "$CHARMRUN" -n 2 "$PEBIN/exitcode" ++quiet 5
    [ "$RC" = 5 ] || reason "exit status $RC, expected 5 (was ++quiet left in argv?)"
    common_checks
    report "runtime flag ++quiet removed from argv P=2"

    SHM_BEFORE=$(shm_snapshot)
    run_job 60 "$PEBIN/pingpong"
    [ "$RC" = 0 ] || reason "exit status $RC"
    grep -qF "OK pingpong P=1" "$TMP/out" || reason "no \"OK pingpong P=1\""
    common_checks
    report "pingpong without the launcher runs as 1 PE"

    SHM_BEFORE=$(shm_snapshot)
    run_job 60 "$PEBIN/exitcode" 4
    [ "$RC" = 4 ] || reason "exit status $RC, expected 4"
    common_checks
    report "exitcode 4 without the launcher"

    SHM_BEFORE=$(shm_snapshot)
    run_job 60 "$PEBIN/reduce"
    [ "$RC" = 0 ] || reason "exit status $RC"
    grep -qF "OK reduce P=1" "$TMP/out" || reason "no \"OK reduce P=1\""
    common_checks
    report "reduce without the launcher runs as 1 PE"

    launcher_usage_error "-n 0" -n 0 "$PEBIN/pingpong"
    launcher_usage_error "-n abc" -n abc "$PEBIN/pingpong"
    launcher_usage_error "-n -2" -n -2 "$PEBIN/pingpong"
    launcher_usage_error "+p0" +p0 "$PEBIN/pingpong"
    launcher_usage_error "-n without a value" -n
    launcher_usage_error "no program" -n 2
    launcher_usage_error "no arguments"

    SHM_BEFORE=$(shm_snapshot)
    run_job 20 "$CHARMRUN" -n 2 "$TMP/no-such-program"
    expect_failure_fast
    grep -q "no-such-program" "$TMP/err" || reason "stderr does not name the program"
    common_checks
    report "charmrun with a program that does not exist"

    SHM_BEFORE=$(shm_snapshot)
    run_job 20 "$CHARMRUN" -n 3 /bin/false
    expect_failure_fast
    common_checks
    report "charmrun -n 3 /bin/false"
}

case $WHAT in
unit) run_unit ;;
pe) run_pe ;;
all)
    run_unit
    run_pe
    ;;
esac

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
