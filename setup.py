"""Builds the extension module charmpy._charmpy: the C runtime (src/), the
launcher and the CPython binding (python/ext/) in one shared object."""
from glob import glob

from setuptools import Extension, setup

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
            sources=sources,
            include_dirs=["include", "src", "python/ext"],
            depends=glob("include/charmpy/*.h") + glob("src/**/*.h", recursive=True)
            + glob("python/ext/*.h"),
            extra_compile_args=["-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra",
                                "-Wno-unused-parameter", "-Wno-missing-field-initializers",
                                "-Wno-cast-function-type"],
        )
    ],
)
