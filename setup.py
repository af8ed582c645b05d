"""Builds the extension module charmpy._charmpy: the C runtime (src/), the
launcher and the CPython binding (python/ext/) in one shared object."""
import os
import shlex
import subprocess
import sys
import tempfile
from glob import glob

from setuptools import Extension, setup


def mpi_build_args():
    """Extension arguments for the mpi machine layer, or {} when no usable MPI
    is found (or CHARMPY_NO_MPI is set): then the package builds without it.
    The flags come from the wrapper compiler ($MPICC, default mpicc) as Open
    MPI (--showme) or MPICH (-compile_info) gives them, else from pkg-config;
    a test program must compile and link with them. Same rules as
    src/machine/mpi/mpi-flags.sh, which the Makefile uses."""
    if os.environ.get("CHARMPY_NO_MPI"):
        return {}

    def words(*cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
        return shlex.split(r.stdout) if r.returncode == 0 and r.stdout.strip() else None

    mpicc = os.environ.get("MPICC", "mpicc")
    queries = [((mpicc, "--showme:compile"), (mpicc, "--showme:link")),
               ((mpicc, "-compile_info"), (mpicc, "-link_info"))]
    queries += [(("pkg-config", "--cflags", pc), ("pkg-config", "--libs", pc))
                for pc in ("ompi", "mpich", "mpi")]
    for cq, lq in queries:
        cflags, lflags = words(*cq), words(*lq)
        if lflags is None or (cflags is None and cq[0] != "pkg-config"):
            continue
        cflags = [w for w in cflags or [] if w.startswith(("-I", "-D")) or w == "-pthread"]
        lflags = [w for w in lflags if w.startswith(("-L", "-l", "-Wl,")) or w == "-pthread"]
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "t.c"), "w") as f:
                f.write("#include <mpi.h>\nint main(void) { int f; MPI_Initialized(&f); return f; }\n")
            cc = shlex.split(os.environ.get("CC", "cc"))
            if subprocess.run(cc + cflags + [os.path.join(tmp, "t.c"), "-o", os.path.join(tmp, "t")]
                              + lflags, capture_output=True).returncode != 0:
                continue
        libdirs = [w[2:] for w in lflags if w.startswith("-L")]
        return {
            "sources": sorted(glob("src/machine/mpi/*.c")),
            "define_macros": [("CP_HAVE_MPI", "1")],
            "include_dirs": [w[2:] for w in cflags if w.startswith("-I")],
            "extra_compile_args": [w for w in cflags if not w.startswith("-I")],
            "library_dirs": libdirs,
            "runtime_library_dirs": libdirs,  # a non-system MPI is found at run time
            "libraries": [w[2:] for w in lflags if w.startswith("-l")] + ["dl"],
            "extra_link_args": [w for w in lflags if not w.startswith(("-L", "-l"))],
        }
    print("note: no MPI found (mpicc, pkg-config ompi/mpich): building charmpy without "
          "the mpi machine layer (Debian/Ubuntu: apt-get install libopenmpi-dev "
          "openmpi-bin, then rebuild)", file=sys.stderr)
    return {}


mpi = mpi_build_args()

sources = sorted(
    glob("python/ext/*.c")
    + glob("src/runtime/*.c")
    + glob("src/machine/*.c")
    + glob("src/machine/shm/*.c")
    + ["src/launcher/launcher.c"]
)

setup(
    ext_modules=[
        Extension(
            "charmpy._charmpy",
            sources=sources + mpi.get("sources", []),
            include_dirs=["include", "src", "python/ext"] + mpi.get("include_dirs", []),
            define_macros=mpi.get("define_macros", []),
            library_dirs=mpi.get("library_dirs", []),
            runtime_library_dirs=mpi.get("runtime_library_dirs", []),
            libraries=mpi.get("libraries", []),
            extra_link_args=mpi.get("extra_link_args", []),
            depends=glob("include/charmpy/*.h") + glob("src/**/*.h", recursive=True)
            + glob("python/ext/*.h"),
            extra_compile_args=["-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra",
                                "-Wno-unused-parameter", "-Wno-missing-field-initializers",
                                "-Wno-cast-function-type"] + mpi.get("extra_compile_args", []),
        )
    ],
)
