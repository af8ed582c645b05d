#!/bin/sh
# The flags to build the mpi machine layer against the MPI installed here:
# the one probe both builds use, the Makefile and setup.py (which turns the
# words into its Extension's arguments).
#
#   mpi-flags.sh cflags   compile flags: -DCP_HAVE_MPI (which tells
#                         src/machine/select.c the layer exists, and keeps
#                         the answer non-empty for an MPI whose headers are
#                         on the default path), then MPI's -I, -D and
#                         -pthread; empty when no usable MPI was found
#   mpi-flags.sh libs     link flags: MPI's -L, -l, -Wl,... and -pthread, an
#                         rpath for each -L directory so a non-system MPI is
#                         found at run time, and -ldl (mpi.c makes libmpi
#                         global with dladdr/dlopen); ask only after
#                         "cflags" answered
#
# Where the flags come from, first hit wins: the wrapper compiler ($MPICC,
# default mpicc) as Open MPI (--showme:compile / --showme:link) or MPICH
# (-compile_info / -link_info) asks, then pkg-config (ompi, mpich, mpi).
# "cflags" prints a candidate only if a program calling MPI compiles and
# links with it and $CC (default cc): an mpicc without its headers, or a
# broken pkg-config file, means no MPI rather than a failed build.
# Always exits 0.

what=${1:-cflags}
MPICC=${MPICC:-mpicc}
CC=${CC:-cc}

# keep_flags compile|link WORDS...: the words that matter for that step
# (the wrappers also print the compiler's name and unrelated options).
keep_flags() {
    mode=$1
    shift
    out=""
    for w in "$@"; do
        case $mode:$w in
        compile:-I* | compile:-D* | *:-pthread) out="$out $w" ;;
        link:-L*) out="$out $w -Wl,-rpath,${w#-L}" ;;
        link:-l* | link:-Wl,*) out="$out $w" ;;
        esac
    done
    echo "$out"
}

# query compile|link: raw flags from the first source that answers.
query() {
    if command -v "$MPICC" >/dev/null 2>&1; then
        if out=$("$MPICC" --showme:"$1" 2>/dev/null) && [ -n "$out" ]; then
            echo "$out"
            return 0
        fi
        opt=-compile_info
        [ "$1" = link ] && opt=-link_info
        if out=$("$MPICC" $opt 2>/dev/null) && [ -n "$out" ]; then
            echo "$out"
            return 0
        fi
    fi
    if command -v pkg-config >/dev/null 2>&1; then
        opt=--cflags
        [ "$1" = link ] && opt=--libs
        for pc in ompi mpich mpi; do
            if out=$(pkg-config $opt $pc 2>/dev/null) && pkg-config --exists $pc; then
                echo "$out"
                return 0
            fi
        done
    fi
    return 1
}

cflags() {
    raw=$(query compile) || return 0
    raw_link=$(query link) || return 0
    c=$(keep_flags compile $raw)
    l=$(keep_flags link $raw_link)
    dir=$(mktemp -d "${TMPDIR:-/tmp}/charmpy-mpi.XXXXXX") || return 0
    cat >"$dir/t.c" <<'EOF'
#include <mpi.h>
int main(void) {
    int flag = 0;
    MPI_Initialized(&flag);
    return flag;
}
EOF
    # shellcheck disable=SC2086
    if $CC $c "$dir/t.c" -o "$dir/t" $l >/dev/null 2>&1; then
        echo "-DCP_HAVE_MPI $c"
    fi
    rm -rf "$dir"
}

case $what in
cflags) cflags ;;
libs)
    raw=$(query link) && echo "$(keep_flags link $raw) -ldl"
    ;;
*)
    echo "usage: $0 cflags|libs" >&2
    ;;
esac
exit 0
