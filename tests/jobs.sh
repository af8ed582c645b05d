# Shared by tests/run-c-tests.sh and tests/run-mpi-tests.sh (sourced): timing,
# running one job in a session of its own under a timeout, and finding what
# it left behind. The caller sets TMP (a scratch directory).

now() { date +%s.%N; }
secs_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# longer A B: true when A > B (seconds, decimals allowed).
longer() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }

# run_job SECONDS CMD...: runs CMD in a new session under a timeout.
# Sets RC, DUR, SID, LIMIT; stdout in $TMP/out, stderr in $TMP/err.
run_job() {
    local limit=$1 t0
    shift
    LIMIT=$limit
    t0=$(now)
    setsid timeout -k 5 "$limit" "$@" >"$TMP/out" 2>"$TMP/err" </dev/null &
    SID=$!
    wait "$SID"
    RC=$?
    DUR=$(secs_since "$t0")
}

# Live processes of session $1 (zombies waiting for init to reap them are
# already dead).
session_pids() {
    ps -o pid=,stat= -s "$1" 2>/dev/null | awk '$2 !~ /^Z/ { printf "%s ", $1 }'
}

# Processes of the last job still alive after up to $1 seconds; ends them
# (their pids in LEFT). True when there were any.
leftovers() {
    local limit=${1:-2} t0 pids q
    t0=$(now)
    while :; do
        pids=$(session_pids "$SID")
        [ -z "$pids" ] && return 1
        longer "$(secs_since "$t0")" "$limit" && break
        sleep 0.1
    done
    LEFT="$pids"
    for q in $pids; do kill -9 "$q" 2>/dev/null; done
    return 0
}

REASONS=""
reason() { REASONS="${REASONS:+$REASONS; }$*"; }
