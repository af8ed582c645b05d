#!/usr/bin/env bash
# Installs the peers of the comparison suite into their own virtual
# environment, bench/suite/.venv, never into charmpy's .venv:
#   numpy, mpi4py (built from source against the OS Open MPI), ray,
#   dask[distributed], charm4py 1.1 (the wheel from the package index), matplotlib.
# Each package is installed on its own; a failure is recorded (with the
# reason) in bench/suite/out/peers.json and never stops the others. A package
# that already imports is not installed again (BENCH_REINSTALL=1 forces it).
# multiprocessing and concurrent.futures come with Python.
#
#   bench/suite/setup_peers.sh            install what is missing, write peers.json
#   bench/suite/setup_peers.sh --check    install nothing, only record what imports
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=$HERE/.venv
OUT=$HERE/out
LOGS=$OUT/install
STATUS=$OUT/peers.json
CHECK_ONLY=0
[[ ${1:-} == --check ]] && CHECK_ONLY=1
mkdir -p "$LOGS"
log() { printf 'setup_peers: %s\n' "$*" >&2; }

# The same interpreter charmpy's venv was made from, so that both sides run
# the same Python.
BASE=$("$ROOT/.venv/bin/python" -c 'import sys; print(sys._base_executable)' 2>/dev/null || command -v python3)

# status lines: name<TAB>ok|failed<TAB>version or reason
LINES=$(mktemp)
trap 'rm -f "$LINES"' EXIT
record() { # name state info (the first line of info: charm4py prints more at exit)
    printf '%s\t%s\t%s\n' "$1" "$2" "$(printf '%s' "$3" | tr -d '\r\t' | head -n1)" >>"$LINES"
}
# one line of a log that says why something failed
reason() { # logfile
    local r
    r=$(grep -v -i '^warning\|^\s*$\|notice' "$1" | grep -i -m1 -E 'error[: ]|not found|no matching|could not' || true)
    [[ -n $r ]] || r=$(grep -v '^\s*$' "$1" | tail -n1)
    printf '%s' "$r" | tr '\t' ' ' | cut -c1-300
}

venv_ok=1
if [[ ! -x $VENV/bin/python ]]; then
    if ((CHECK_ONLY)); then
        venv_ok=0
    else
        log "creating $VENV from $BASE"
        if ! "$BASE" -m venv "$VENV" >"$LOGS/venv.log" 2>&1; then
            venv_ok=0
        else
            "$VENV/bin/pip" install -q --disable-pip-version-check -U pip wheel >>"$LOGS/venv.log" 2>&1 || true
        fi
    fi
fi

# name, pip requirement, import statement printing the version
PKGS=(
    "numpy|numpy|import numpy; print(numpy.__version__)"
    "mpi4py|mpi4py|from mpi4py import MPI; import mpi4py; print(mpi4py.__version__, '/', MPI.Get_library_version().replace(chr(0), '').splitlines()[0].strip())"
    "ray|ray|import ray; print(ray.__version__)"
    "dask|dask[distributed]|import dask, distributed; print(dask.__version__)"
    "charm4py|charm4py==1.1|import charm4py, charm4py.charmlib.charmlib_cython; from charm4py._version import version; print(version)"
    "matplotlib|matplotlib|import matplotlib; print(matplotlib.__version__)"
)

for spec in "${PKGS[@]}"; do
    IFS='|' read -r name req probe <<<"$spec"
    if ((!venv_ok)); then
        if ((CHECK_ONLY)); then
            record "$name" failed "not installed: bench/suite/.venv does not exist (run bench/suite/setup_peers.sh)"
        else
            record "$name" failed "could not create the venv: $(reason "$LOGS/venv.log")"
        fi
        continue
    fi
    if [[ ${BENCH_REINSTALL:-0} != 1 ]] && v=$("$VENV/bin/python" -c "$probe" 2>/dev/null); then
        record "$name" ok "$v"
        continue
    fi
    if ((CHECK_ONLY)); then
        record "$name" failed "not installed in bench/suite/.venv (run bench/suite/setup_peers.sh)"
        continue
    fi
    extra=()
    case $name in
    mpi4py)
        if ! command -v mpicc >/dev/null; then
            record "$name" failed "Open MPI's mpicc is not installed (apt-get install libopenmpi-dev openmpi-bin)"
            continue
        fi
        # from source, against the OS Open MPI, never a wheel bundling its own MPI
        extra=(--no-binary mpi4py)
        ;;
    esac
    log "installing $req (log: ${LOGS#$ROOT/}/$name.log)"
    if timeout 1200 "$VENV/bin/pip" install --disable-pip-version-check --progress-bar off \
        "${extra[@]}" "$req" >"$LOGS/$name.log" 2>&1; then
        if v=$("$VENV/bin/python" -c "$probe" 2>>"$LOGS/$name.log"); then
            record "$name" ok "$v"
        else
            record "$name" failed "installed but does not import: $(tail -n1 "$LOGS/$name.log" | cut -c1-300)"
        fi
    else
        rc=$?
        if ((rc == 124)); then
            record "$name" failed "pip install $req timed out after 1200 s"
        else
            record "$name" failed "pip install $req failed: $(reason "$LOGS/$name.log")"
        fi
    fi
done

"${BASE:-python3}" - "$LINES" "$STATUS" "$VENV" <<'PY'
import json, sys, time
lines, status, venv = sys.argv[1:4]
peers = {}
for line in open(lines):
    name, state, info = line.rstrip("\n").split("\t", 2)
    peers[name] = {"ok": state == "ok", ("version" if state == "ok" else "reason"): info}
json.dump({"venv": venv, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "peers": peers},
          open(status, "w"), indent=1)
for name, p in peers.items():
    print(f"  {name:11s} {'ok  ' + p['version'] if p['ok'] else 'FAILED: ' + p['reason']}")
PY
