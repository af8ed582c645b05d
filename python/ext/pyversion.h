/*
 * The oldest Python the extension builds for. Headers of an older Python
 * stop the build here with one line that says so, instead of a page of
 * undeclared functions. The same version is requires-python in
 * pyproject.toml and the one "Building and testing" in the README names;
 * tests/python/test_build.py checks that the three agree, and compiles the
 * extension against that Python's headers and the one before when this
 * machine has them.
 *
 * Why 3.10: the extension uses Py_NewRef and Py_XNewRef,
 * PyModule_AddObjectRef and the type flags Py_TPFLAGS_IMMUTABLETYPE and
 * Py_TPFLAGS_DISALLOW_INSTANTIATION, all new in 3.10. Nothing needs 3.11 or
 * later (PyErr_GetRaisedException, 3.12, and PyLong_AsInt, 3.13, are not
 * used; PyUnicode_READY, which 3.12 no longer needs, is behind
 * PY_VERSION_HEX), and the Python side needs only 3.8 (pickle protocol 5).
 *
 * Only patchlevel.h is included (it defines the version macros and nothing
 * else), so that this header can come first: Python.h itself must follow
 * cpy.h's PY_SSIZE_T_CLEAN.
 */
#ifndef CHARMPY_PYVERSION_H
#define CHARMPY_PYVERSION_H

#include <patchlevel.h>

#define CPY_MIN_PYTHON_HEX 0x030A0000 /* 3.10 */

#if PY_VERSION_HEX < CPY_MIN_PYTHON_HEX
#error "charmpy needs Python 3.10 or later (these are an older Python's headers): build it with a newer python3"
#endif

#endif /* CHARMPY_PYVERSION_H */
