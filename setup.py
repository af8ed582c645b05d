"""Builds the extension module charmpy._charmpy: the C runtime (src/), the
launcher and the CPython binding (python/ext/) in one shared object.

Two facts come from where the Makefile keeps them, so that pip and make
build alike: the warning flags (the Makefile's WARN line) and MPI's flags
(src/machine/mpi/mpi-flags.sh). tests/python/test_build.py checks both."""
import os
import re
import shlex
import subprocess
import sys
from glob import glob

from setuptools import Extension, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
MPI_FLAGS_SH = os.path.join(ROOT, "src", "machine", "mpi", "mpi-flags.sh")


def warning_flags():
    """The Makefile's WARN flags minus -Werror. Read from the Makefile (one
    line of plain flags, `WARN = ...`) rather than kept in a file of their
    own: the Makefile is where C flags live, and `make extcheck` compiles the
    extension with the whole set, -Werror included, in `make test`. Here a
    warning stays a warning: a user's compiler, newer or other than ours,
    must not fail pip install over a warning we have not seen."""
    with open(os.path.join(ROOT, "Makefile")) as f:
        for line in f:
            m = re.match(r"WARN\s*\??=(.*)$", line)
            if m:
                return [w for w in shlex.split(m.group(1)) if w != "-Werror"]
    raise SystemExit("setup.py: no `WARN = ...` line in the Makefile to take the warning flags from")


def mpi_flags(what):
    """The words `sh src/machine/mpi/mpi-flags.sh cflags|libs` prints (the
    Makefile's probe; it honours $MPICC and $CC, and always exits 0)."""
    try:
        r = subprocess.run(["sh", MPI_FLAGS_SH, what], capture_output=True, text=True,
                           timeout=120, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        print(f"note: {MPI_FLAGS_SH} {what} failed to run: {e}", file=sys.stderr)
        return []
    return shlex.split(r.stdout)


def mpi_extension_args(cflags, libs):
    """The Extension arguments that carry the script's words, each word to
    the argument setuptools turns back into that same word (-I into
    include_dirs, -DNAME[=VALUE] into define_macros, -L into library_dirs,
    -l into libraries, anything else, -pthread and -Wl,-rpath,... among
    them, verbatim), so that the compiler and the linker see what the
    Makefile gives them. The script's own -DCP_HAVE_MPI tells select.c the
    layer exists; its libs carry -ldl, which mpi.c needs."""
    args = {"sources": sorted(glob("src/machine/mpi/*.c")), "include_dirs": [],
            "define_macros": [], "extra_compile_args": [], "library_dirs": [],
            "libraries": [], "extra_link_args": []}
    for w in cflags:
        if w.startswith("-I") and len(w) > 2:
            args["include_dirs"].append(w[2:])
        elif w.startswith("-D") and len(w) > 2:
            name, eq, value = w[2:].partition("=")
            args["define_macros"].append((name, value if eq else None))
        else:
            args["extra_compile_args"].append(w)
    for w in libs:
        if w.startswith("-L") and len(w) > 2:
            args["library_dirs"].append(w[2:])
        elif w.startswith("-l") and len(w) > 2:
            args["libraries"].append(w[2:])
        else:
            args["extra_link_args"].append(w)
    return args


def mpi_build_args():
    """Extension arguments for the mpi machine layer, or {} when the script
    finds no usable MPI (or CHARMPY_NO_MPI is set): then the package builds
    without it."""
    if os.environ.get("CHARMPY_NO_MPI"):
        return {}
    cflags = mpi_flags("cflags")
    if not cflags:
        print("note: no MPI found (mpicc, pkg-config ompi/mpich): building charmpy without "
              "the mpi machine layer (Debian/Ubuntu: apt-get install libopenmpi-dev "
              "openmpi-bin, then rebuild)", file=sys.stderr)
        return {}
    return mpi_extension_args(cflags, mpi_flags("libs"))


def extension():
    mpi = mpi_build_args()
    sources = sorted(
        glob("python/ext/*.c")
        + glob("src/runtime/*.c")
        + glob("src/machine/*.c")
        + glob("src/machine/shm/*.c")
        + ["src/launcher/launcher.c"]
    )
    return Extension(
        "charmpy._charmpy",
        sources=sources + mpi.get("sources", []),
        include_dirs=["include", "src", "python/ext"] + mpi.get("include_dirs", []),
        define_macros=mpi.get("define_macros", []),
        library_dirs=mpi.get("library_dirs", []),
        libraries=mpi.get("libraries", []),
        extra_link_args=mpi.get("extra_link_args", []),
        depends=glob("include/charmpy/*.h") + glob("src/**/*.h", recursive=True)
        + glob("python/ext/*.h"),
        extra_compile_args=["-std=c11", "-D_GNU_SOURCE", "-O2"] + warning_flags()
        + mpi.get("extra_compile_args", []),
    )


# Only when run as the build script (pip's backend runs it as __main__), so
# that the tests can import the functions above.
if __name__ == "__main__":
    setup(ext_modules=[extension()])
