#!/usr/bin/env bash
# The C tests under a real MPI launcher (the mpi machine layer).
#
#   tests/run-mpi-tests.sh --install    make sure MPI is installed: as root,
#                                       install Open MPI with apt-get when
#                                       mpirun or the MPI headers are missing
#   tests/run-mpi-tests.sh BUILD_DIR    run the tests of BUILD_DIR (built
#                                       with MPI: `make mpitest` does both)
#   tests/run-mpi-tests.sh --mpich      the same over MPICH, installed beside
#                                       Open MPI as root when missing: builds
#                                       build-mpich with mpicc.mpich and runs
#                                       its tests under mpiexec.mpich
#
# MPIEXEC (default mpirun) and MPICC (default mpicc) name the launcher and
# the compiler wrapper of the MPI to test.
#
# Without mpirun and not root, the tests are skipped (exit 0) with the reason.
# The multi-PE programs of tests/pe and tests/mpi run under
# `mpirun --oversubscribe -np P` for P = 1, 2, 3, 4, once over Open MPI's
# shared-memory transport (--mca btl self,vader) and once over TCP (--mca
# btl self,tcp, the path messages take between hosts); then the faults (an
# abort, a rank killed with SIGKILL, a rank exiting), exit codes, 256 MiB and
# >2 GiB messages, the host queries, loading through dlopen as Python does,
# and the transport selection (including a build without MPI). Every job has
# a timeout. Prints one PASS/FAIL/SKIP line per test and ends with
# "N passed, M failed"; exits non-zero when anything failed.
#
# Every job runs in a session of its own, so processes it leaves behind are
# found (and ended, by pid) precisely.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
FLAGS_SH=$ROOT/src/machine/mpi/mpi-flags.sh

MPIEXEC=${MPIEXEC:-mpirun}

usage() {
    echo "usage: $0 --install | --mpich | BUILD_DIR" >&2
    exit 2
}

have_mpi() {
    command -v "$MPIEXEC" >/dev/null 2>&1 && [ -n "$(sh "$FLAGS_SH" cflags)" ]
}

# MPICH beside Open MPI: Debian's alternatives keep Open MPI the default
# (mpirun, mpicc); MPICH answers to mpiexec.mpich and mpicc.mpich.
mpich() {
    export MPIEXEC=mpiexec.mpich MPICC=mpicc.mpich
    if ! have_mpi; then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
            echo "MPICH tests skipped: MPICH (mpiexec.mpich, mpicc.mpich) is missing" \
                "and only root may install it (Debian/Ubuntu: apt-get install mpich libmpich-dev)"
            exit 0
        fi
        echo "installing MPICH (mpich libmpich-dev) with apt-get"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq mpich libmpich-dev >/dev/null; } || ! have_mpi; then
            echo "MPICH tests skipped: apt-get could not install a usable mpich libmpich-dev"
            exit 0
        fi
    fi
    echo "building build-mpich against MPICH"
    if ! make -C "$ROOT" --no-print-directory -j2 BUILD=build-mpich all mpitest-progs \
        >"${TMPDIR:-/tmp}/charmpy-mpich-build.log" 2>&1; then
        tail -n 20 "${TMPDIR:-/tmp}/charmpy-mpich-build.log"
        echo "FAIL build against MPICH"
        echo "0 passed, 1 failed"
        exit 1
    fi
    exec "$0" "$ROOT/build-mpich"
}

# Installs Open MPI as root with apt-get. Returns non-zero, having said why,
# when MPI is still missing afterwards.
ensure_mpi() {
    have_mpi && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "MPI tests skipped: mpirun or the MPI headers are missing, and only" \
            "root may install them (Debian/Ubuntu: apt-get install" \
            "libopenmpi-dev openmpi-bin)"
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "MPI tests skipped: MPI is missing and there is no apt-get to install" \
            "it with; install Open MPI (or MPICH) with the system's package manager"
        return 1
    fi
    echo "installing Open MPI (libopenmpi-dev openmpi-bin) with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update -qq || ! apt-get install -y -qq libopenmpi-dev openmpi-bin >/dev/null; then
        echo "MPI tests skipped: apt-get could not install libopenmpi-dev openmpi-bin"
        return 1
    fi
    have_mpi || {
        echo "MPI tests skipped: MPI installed, but still not usable (mpirun, mpicc)"
        return 1
    }
}

[ $# -eq 1 ] || usage
if [ "$1" = --install ]; then
    ensure_mpi
    exit 0
fi
[ "$1" = --mpich ] && mpich
BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "$0: no directory $1" >&2; exit 2; }
ensure_mpi || exit 0

PEBIN=$BUILD/tests/pe
MPIBIN=$BUILD/tests/mpi
PS=(1 2 3 4)
FAULT_BOUND=30 # seconds within which a failed job must be over
TMP=$(mktemp -d "${TMPDIR:-/tmp}/charmpy-mpitest.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
PASSED=0
FAILED=0
SKIPPED=0
LIMIT=0
BTL=""

if "$MPIEXEC" --version 2>/dev/null | grep -q "Open MPI"; then
    OPENMPI=1
    BTLS=(self,vader self,tcp)
else
    OPENMPI=0 # MPICH and others: their default transport only
    BTLS=(default)
fi

. "$(dirname "$0")/jobs.sh"

# MPIRUN=(...): the launcher command for P ranks over $BTL, with the
# environment assignments given (NAME=VALUE) passed to every rank.
mpirun_cmd() {
    local p=$1 kv
    shift
    if [ "$OPENMPI" = 1 ]; then
        MPIRUN=(mpirun --allow-run-as-root --oversubscribe -np "$p")
        [ "$BTL" = default ] || [ -z "$BTL" ] || MPIRUN+=(--mca btl "$BTL")
        for kv in "$@"; do MPIRUN+=(-x "$kv"); done
    else
        MPIRUN=("$MPIEXEC" -n "$p")
        for kv in "$@"; do MPIRUN+=(-genv "${kv%%=*}" "${kv#*=}"); done
    fi
}


label_btl() {
    [ "$OPENMPI" = 1 ] || printf ' mpi=%s' "$(basename "$MPIEXEC")"
    [ -n "$BTL" ] && [ "$BTL" != default ] && printf ' btl=%s' "$BTL"
    echo
}

report() {
    local label="$1$(label_btl)"
    if [ -z "$REASONS" ]; then
        echo "PASS $label (${DUR}s)"
        PASSED=$((PASSED + 1))
    else
        echo "FAIL $label: $REASONS"
        if [ -s "$TMP/out" ]; then
            echo "  --- last lines of stdout:"
            tail -n 8 "$TMP/out" | sed 's/^/  | /'
        fi
        if [ -s "$TMP/err" ]; then
            echo "  --- last lines of stderr:"
            grep -v '^-*$' "$TMP/err" | tail -n 12 | sed 's/^/  | /'
        fi
        FAILED=$((FAILED + 1))
    fi
    REASONS=""
}

skip() {
    echo "SKIP $1$(label_btl): $2"
    SKIPPED=$((SKIPPED + 1))
    REASONS=""
}

# Checks every job gets: no timeout, no TESTFAIL (unless INIT_FAILS=1:
# the job is meant to fail in cp_init, which pt_init reports as TESTFAIL),
# nothing left.
common_checks() {
    if [ "$RC" = 124 ] || { [ "$RC" = 137 ] && ! longer "$LIMIT" "$DUR"; }; then
        reason "timed out after ${DUR}s (limit ${LIMIT}s)"
    fi
    [ "${INIT_FAILS:-0}" = 1 ] || { grep -q TESTFAIL "$TMP/out" "$TMP/err" &&
        reason "a PE reported a failure"; }
    leftovers 3 && reason "processes left after the job: $LEFT"
}

# mpi_job P LIMIT [NAME=VALUE...] -- PROGRAM ARGS...
mpi_job() {
    local p=$1 limit=$2 env=()
    shift 2
    while [ "$1" != -- ]; do
        env+=("$1")
        shift
    done
    shift
    mpirun_cmd "$p" ${env[@]+"${env[@]}"}
    run_job "$limit" "${MPIRUN[@]}" "$@"
    common_checks
}

# expect_ok LABEL P OK-LINE [NAME=VALUE...] -- PROGRAM ARGS...
expect_ok() {
    local label=$1 p=$2 okline=$3
    shift 3
    mpi_job "$p" 60 "$@"
    [ "$RC" = 0 ] || reason "exit status $RC, expected 0"
    grep -qF -- "$okline" "$TMP/out" || reason "no \"$okline\" on stdout"
    report "$label P=$p"
}

expect_failure_fast() {
    [ "$RC" != 0 ] || reason "exit status 0, expected non-zero"
    longer "$DUR" "$FAULT_BOUND" && reason "took ${DUR}s to end (bound ${FAULT_BOUND}s)"
}

# tests/pe/pingpong.c insists on the shm transport (it checks cp_transport);
# it runs here with CHARMPY_EXPECT_TRANSPORT=mpi for when it reads that, and
# is reported as skipped while it still refuses mpi.
pingpong() {
    local p=$1
    mpi_job "$p" 60 CHARMPY_EXPECT_TRANSPORT=mpi -- "$PEBIN/pingpong"
    if [ "$RC" != 0 ] && grep -q 'transport is mpi' "$TMP/err"; then
        leftovers 1
        skip "pingpong P=$p" "tests/pe/pingpong.c accepts only the shm transport"
        return
    fi
    [ "$RC" = 0 ] || reason "exit status $RC, expected 0"
    grep -qF "OK pingpong P=$p" "$TMP/out" || reason "no \"OK pingpong P=$p\" on stdout"
    report "pingpong P=$p"
}

exitcode_case() {
    local p=$1 code=$2
    mpi_job "$p" 60 -- "$PEBIN/exitcode" "$code"
    [ "$RC" = "$code" ] || reason "mpirun's exit status $RC, expected $code"
    report "exitcode $code P=$p"
}

# Every PE but 0 asks to exit at once with its own code: all must agree on
# one of those codes.
exitrace() {
    local p=$1 codes n
    mpi_job "$p" 60 -- "$MPIBIN/exitrace"
    [ "$RC" = 0 ] || reason "exit status $RC"
    n=$(grep -c '^PE [0-9]* code ' "$TMP/out")
    [ "$n" = "$p" ] || reason "$n of $p PEs printed their code"
    codes=$(sed -n 's/^PE [0-9]* code \([0-9-]*\)$/\1/p' "$TMP/out" | sort -u | tr '\n' ' ')
    [ "$(echo $codes | wc -w)" = 1 ] || reason "the PEs returned different codes: $codes"
    report "exitrace (PEs call cp_exit at once, different codes) P=$p"
}

# The PE (rank) $1 named in stderr: "PE 1", "rank 1", or Open MPI's process
# name "[[jobid,1],1]".
names_pe() { grep -Eq "(PE|rank)[ #:]*$1([^0-9]|\$)|\],$1\]" "$TMP/err"; }

fault_abort() {
    local p=$1 victim=$2 mode=$3 v
    v=$victim
    [ "$v" -ge "$p" ] && v=$((p - 1))
    mpi_job "$p" 60 -- "$PEBIN/abort" "$victim" "$mode"
    expect_failure_fast
    grep -q "deliberate abort from test" "$TMP/err" || reason "stderr lacks the abort message"
    names_pe "$v" || reason "stderr does not name PE $v"
    report "abort victim=$v $mode P=$p"
}

fault_kill() {
    local p=$1 victim=$2 how=$3 mode=$4 v
    v=$victim
    [ "$v" -ge "$p" ] && v=$((p - 1))
    mpi_job "$p" 60 -- "$PEBIN/kill" "$victim" "$how" "$mode"
    expect_failure_fast
    if [ "$OPENMPI" != 1 ]; then
        # MPICH's launcher (Hydra) reports on stdout, by PID, and the
        # signal it ended the other ranks with: the job ending is the test.
        [ "$how" != signal ] || grep -Eiq "signal 9|killed" "$TMP/out" "$TMP/err" ||
            reason "the launcher does not name the signal (SIGKILL / signal 9)"
        report "kill victim=$v $how $mode P=$p"
        return
    fi
    names_pe "$v" || reason "stderr does not name rank $v"
    if [ "$how" = signal ]; then
        grep -Eiq "SIGKILL|signal 9|killed" "$TMP/err" ||
            reason "stderr does not name the signal (SIGKILL / signal 9)"
    else
        grep -Eq "(status|code)[ :=]*7([^0-9]|\$)" "$TMP/err" ||
            reason "stderr does not give the exit status 7"
    fi
    report "kill victim=$v $how $mode P=$p"
}

# The PE programs over one transport of the launcher.
run_btl() {
    local p
    for p in "${PS[@]}"; do
        expect_ok storm "$p" "OK storm P=$p" -- "$PEBIN/storm"
        expect_ok "segs (cp_send_segs, in place)" "$p" "OK segs P=$p (" -- "$PEBIN/segs"
        expect_ok bcast "$p" "OK bcast P=$p" -- "$PEBIN/bcast"
        expect_ok mcast "$p" "OK mcast P=$p" -- "$PEBIN/mcast"
        expect_ok reduce "$p" "OK reduce P=$p" -- "$PEBIN/reduce"
        expect_ok "bigmsg (256 MiB)" "$p" "OK bigmsg P=$p" -- "$PEBIN/bigmsg"
        expect_ok timers "$p" "OK timers P=$p" -- "$PEBIN/timers"
        expect_ok timers-only "$p" "OK timers-only P=$p" -- "$PEBIN/timers" only
        expect_ok badhandler "$p" "OK badhandler P=$p" -- "$PEBIN/badhandler"
        expect_ok barrier "$p" "OK barrier P=$p" -- "$PEBIN/barrier"
        expect_ok among "$p" "OK among P=$p" -- "$PEBIN/among"
        expect_ok rununtil "$p" "OK rununtil P=$p" -- "$PEBIN/rununtil"
        expect_ok pollfor "$p" "OK pollfor P=$p" -- "$PEBIN/pollfor"
        expect_ok profcount "$p" "OK profcount P=$p" -- "$PEBIN/profcount"
        expect_ok "profcount +stats" "$p" "OK profcount P=$p" -- "$PEBIN/profcount" stats +stats
        expect_ok "qd (quiescence detection)" "$p" "OK qd P=$p" -- "$PEBIN/qd"
        expect_ok qdx "$p" "OK qdx P=$p" -- "$PEBIN/qdx"
        expect_ok extract "$p" "OK extract P=$p" -- "$PEBIN/extract"
        expect_ok bgtimer "$p" "OK bgtimer P=$p" -- "$PEBIN/bgtimer"
        pingpong "$p"
        expect_ok "hosts (one host)" "$p" "OK hosts P=$p hosts=1" -- "$MPIBIN/hosts" 1
        expect_ok "dlopen(RTLD_LOCAL) of a job library" "$p" "OK dljob P=$p" -- \
            "$MPIBIN/dlhost" "$MPIBIN/libdljob.so"
        expect_ok "flood (exit with messages in flight)" "$p" "OK flood P=$p" -- "$MPIBIN/flood"
        exitcode_case "$p" 3
        exitcode_case "$p" 0
        exitrace "$p"
        [ "$p" -ge 2 ] || continue
        fault_abort "$p" 1 idle
        fault_kill "$p" 1 signal idle
    done
    fault_abort 4 0 busy
    fault_kill 4 3 signal busy
    fault_kill 3 1 exit idle
    exitcode_case 2 77
    # Messages beyond MPI's int count (one derived-datatype message), and the
    # derived-datatype path forced onto small and mid-sized messages.
    mpi_job 2 300 -- "$PEBIN/bigmsg" 2100
    [ "$RC" = 0 ] || reason "exit status $RC"
    grep -qF "OK bigmsg P=2 (2100 MiB" "$TMP/out" || reason "no \"OK bigmsg P=2 (2100 MiB\""
    report "bigmsg 2100 MiB (more than INT_MAX bytes) P=2"
    expect_ok "storm, derived datatypes above 200 bytes" 3 "OK storm P=3" \
        CHARMPY_MPI_LARGE_BYTES=200 -- "$PEBIN/storm"
    expect_ok "bigmsg 64 MiB, derived datatypes above 64 KiB" 3 "OK bigmsg P=3" \
        CHARMPY_MPI_LARGE_BYTES=65536 -- "$PEBIN/bigmsg" 64
    expect_ok "segs, segments as derived datatypes above 64 KiB" 3 "OK segs P=3" \
        CHARMPY_MPI_LARGE_BYTES=65536 -- "$PEBIN/segs"
}

# Hosts laid out by CHARMPY_HOSTNAME=h<rank % k>, as a hostfile would.
fake_hosts() {
    local p=$1 k=$2 rankvar=OMPI_COMM_WORLD_RANK
    [ "$OPENMPI" = 1 ] || rankvar=PMI_RANK
    mpi_job "$p" 60 -- sh -c "CHARMPY_HOSTNAME=h\$((\${$rankvar:-0} % $k)) exec \"\$0\" \"\$@\"" \
        "$MPIBIN/hosts" mod "$k"
    [ "$RC" = 0 ] || reason "exit status $RC"
    grep -qF "OK hosts P=$p" "$TMP/out" || reason "no \"OK hosts P=$p\""
    report "hosts: PE p on host p % $k P=$p"
}

# The mpi layer makes libmpi global before MPI_Init loads a plugin.
dlopen_global() {
    local f
    mpi_job 1 60 LD_DEBUG=scopes,files "LD_DEBUG_OUTPUT=$TMP/ld" -- \
        "$MPIBIN/dlhost" "$MPIBIN/libdljob.so"
    [ "$RC" = 0 ] || reason "exit status $RC"
    f=$(grep -l dlhost "$TMP"/ld.* 2>/dev/null | head -n 1)
    if [ -z "$f" ]; then
        reason "no dynamic linker trace"
    else
        local global plugin
        global=$(grep -n 'add .*libmpi[^ ]*\.so[.0-9]* \[[0-9]*\] to global scope' "$f" |
            head -n 1 | cut -d: -f1)
        plugin=$(grep -n 'file=.*/mca_[a-z0-9_]*\.so .*dynamically loaded' "$f" |
            head -n 1 | cut -d: -f1)
        if [ -z "$global" ]; then
            reason "libmpi never entered the global scope"
        elif [ -n "$plugin" ] && [ "$global" -gt "$plugin" ]; then
            reason "an MPI plugin was loaded before libmpi was made global"
        fi
    fi
    rm -f "$TMP"/ld.*
    report "dlopen: libmpi global before the first MPI plugin loads"
}

# Selection: CHARMPY_TRANSPORT, and a build without MPI.
selection() {
    local nompi=$TMP/nompi n
    mpi_job 2 60 CHARMPY_TRANSPORT=shm -- "$PEBIN/storm"
    [ "$RC" = 0 ] || reason "exit status $RC"
    n=$(grep -c "OK storm P=1" "$TMP/out")
    [ "$n" = 2 ] || reason "$n lines \"OK storm P=1\", expected 2 (two jobs of 1 PE)"
    report "CHARMPY_TRANSPORT=shm under mpirun -np 2: two jobs of one PE"

    INIT_FAILS=1 mpi_job 2 60 CHARMPY_TRANSPORT=carrier-pigeon -- "$PEBIN/storm"
    [ "$RC" != 0 ] || reason "exit status 0"
    grep -q "carrier-pigeon.*not a machine layer.*shm, mpi" "$TMP/err" ||
        reason "no error naming the transport and those built"
    report "CHARMPY_TRANSPORT=carrier-pigeon is refused"

    echo "building without MPI (make MPI=no) to test the errors it gives"
    if ! make -C "$ROOT" --no-print-directory -j2 BUILD="$nompi" MPI=no \
        "$nompi/tests/pe/storm" >"$TMP/make.log" 2>&1; then
        DUR=0
        reason "make MPI=no failed: $(tail -n 3 "$TMP/make.log" | tr '\n' ' ')"
        report "build without MPI"
        return
    fi
    if nm "$nompi/lib/libcharmpy_rt.a" 2>/dev/null | grep -q cm_mpi_ops; then
        reason "the MPI=no library has an mpi layer"
    fi
    ldd "$nompi/tests/pe/storm" | grep -q libmpi && reason "the MPI=no program links libmpi"
    run_job 60 "$nompi/tests/pe/storm"
    [ "$RC" = 0 ] || reason "exit status $RC"
    grep -qF "OK storm P=1" "$TMP/out" || reason "no \"OK storm P=1\""
    common_checks
    report "build without MPI runs (1 PE, shm)"

    run_job 60 env CHARMPY_TRANSPORT=mpi "$nompi/tests/pe/storm"
    [ "$RC" != 0 ] || reason "exit status 0"
    grep -q "CHARMPY_TRANSPORT=mpi.*libopenmpi-dev openmpi-bin.*rebuild" "$TMP/err" ||
        reason "the error does not name the packages and the rebuild"
    INIT_FAILS=1 common_checks
    report "build without MPI: CHARMPY_TRANSPORT=mpi says what to install"

    INIT_FAILS=1 mpi_job 2 60 -- "$nompi/tests/pe/storm"
    [ "$RC" != 0 ] || reason "exit status 0"
    grep -q "started by an MPI launcher.*libopenmpi-dev openmpi-bin" "$TMP/err" ||
        reason "the error does not say that an MPI launcher started it"
    report "build without MPI under mpirun -np 2 is refused"
}

if ! nm "$BUILD/lib/libcharmpy_rt.a" 2>/dev/null | grep -q 'T cm_mpi_ops'; then
    DUR=0
    reason "$BUILD was built without the mpi machine layer; rebuild now that MPI is installed (make mpitest does)"
    report "the build has the mpi layer"
    echo "$PASSED passed, $FAILED failed"
    exit 1
fi
for b in "$MPIBIN/hosts" "$MPIBIN/exitrace" "$MPIBIN/flood" "$MPIBIN/dlhost" "$MPIBIN/libdljob.so"; do
    if [ ! -e "$b" ]; then
        DUR=0
        reason "no $b (make mpitest-progs builds it)"
        report "the MPI test programs exist"
        echo "$PASSED passed, $FAILED failed"
        exit 1
    fi
done

for BTL in "${BTLS[@]}"; do
    run_btl
done
BTL=""
fake_hosts 4 2
fake_hosts 4 3
fake_hosts 3 4
dlopen_global
selection

[ "$SKIPPED" = 0 ] || echo "($SKIPPED skipped)"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
