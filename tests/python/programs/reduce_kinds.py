"""Every built-in reducer (sum, product, max, min, logical_and, logical_or,
logical_xor) over every kind of data (int, float, bool, list, tuple, numpy
arrays of ints, floats and bools, array.array of ints and doubles), on a 1-D
array, a 2-D array and a group; the results are checked against the same
combination computed here. Each member makes all the contributions in one
go, so many reductions of one collection are in flight at once."""
import array
import functools
import math
import operator

import numpy

from charmpy import *


def contribution(kind, i):
    """Member number i's contribution of the given kind (small, exact numbers)."""
    return {
        "int": lambda: i + 1 if i % 3 else -(i + 1),
        "float": lambda: (i + 1) * 0.5,
        "bool": lambda: i % 2 == 0,
        "int0": lambda: i % 4,                 # has zeros: logical ops differ
        "list": lambda: [i, 2 * i + 1, 3, -i],
        "tuple": lambda: (i + 1, 0.25 * i),
        "np_int": lambda: numpy.arange(5, dtype=numpy.int64) - i,
        "np_float": lambda: numpy.linspace(0.0, 1.0, 4) * (i + 1),
        "np_bool": lambda: numpy.array([i % 2 == 0, True, False, i == 0]),
        "np_int32": lambda: numpy.array([i, 1, -i], dtype=numpy.int32),
        "arr_int": lambda: array.array("i", [i, i + 1, -2]),
        "arr_double": lambda: array.array("d", [i * 0.5, 2.0]),
    }[kind]()


KINDS = ["int", "float", "bool", "int0", "list", "tuple", "np_int", "np_float", "np_bool",
         "np_int32", "arr_int", "arr_double"]
REDUCERS = ["sum", "product", "max", "min", "logical_and", "logical_or", "logical_xor"]

SCALAR_OPS = {
    "sum": operator.add, "product": operator.mul, "max": max, "min": min,
    "logical_and": lambda a, b: bool(a) and bool(b),
    "logical_or": lambda a, b: bool(a) or bool(b),
    "logical_xor": lambda a, b: bool(a) != bool(b),
}
NUMPY_OPS = {
    "sum": numpy.add, "product": numpy.multiply, "max": numpy.maximum, "min": numpy.minimum,
    "logical_and": numpy.logical_and, "logical_or": numpy.logical_or,
    "logical_xor": numpy.logical_xor,
}


def expected(kind, red, n):
    vals = [contribution(kind, i) for i in range(n)]
    if isinstance(vals[0], numpy.ndarray):
        if red.startswith("logical"):
            vals = [v.astype(bool) for v in vals]
        return functools.reduce(NUMPY_OPS[red], vals)
    op = SCALAR_OPS[red]
    logical = red.startswith("logical")
    if isinstance(vals[0], (list, tuple, array.array)):
        cols = [[bool(x) for x in col] if logical else col for col in zip(*vals)]
        return [functools.reduce(op, col) for col in cols]
    return functools.reduce(op, [bool(v) for v in vals] if logical else vals)


def check(kind, red, n, got, where):
    exp = expected(kind, red, n)
    sample = contribution(kind, 0)
    what = f"{where}: {red} of {kind} over {n} members: got {got!r}, expected {exp!r}"
    if isinstance(sample, numpy.ndarray):
        assert isinstance(got, numpy.ndarray), what
        assert got.shape == exp.shape, what
        if red.startswith("logical"):
            assert numpy.array_equal(got.astype(bool), exp), what
        else:
            assert numpy.allclose(got, exp), what
            assert got.dtype.kind == exp.dtype.kind, what + f" (dtype {got.dtype})"
        return
    if isinstance(sample, (list, tuple, array.array)):
        assert type(got) is type(sample), what + f" (type {type(got).__name__})"
        got = list(got)
        assert len(got) == len(exp), what
        for g, e in zip(got, exp):
            if red.startswith("logical"):
                assert bool(g) == e, what
            else:
                assert math.isclose(g, e, rel_tol=1e-12), what
        return
    if red.startswith("logical"):
        assert got == exp and isinstance(got, (bool, int, numpy.bool_)), what
    else:
        assert math.isclose(got, exp, rel_tol=1e-12), what
        if kind in ("int", "int0") or (kind == "bool" and red in ("sum", "product")):
            assert isinstance(got, int), what + f" (type {type(got).__name__})"
        if kind == "float":
            assert isinstance(got, float), what + f" (type {type(got).__name__})"


class Member(Chare):
    def run_all(self, futures):
        i = self.linear()
        for (kind, red), fut in futures:
            self.contribute(contribution(kind, i), getattr(Reducer, red), fut)

    def linear(self):
        idx = self.thisIndex
        if isinstance(idx, int):
            return idx
        lin = 0
        for k, d in zip(idx, self.dims):
            lin = lin * d + k
        return lin

    def set_dims(self, dims):
        self.dims = dims


def main(args):
    P = charm.numPes()
    collections = [("1-D array", Array(Member, 11), 11, (11,)),
                   ("2-D array", Array(Member, (3, 2)), 6, (3, 2)),
                   ("group", Group(Member), P, None),
                   ("1-element array", Array(Member, 1), 1, (1,))]
    pending = []
    for name, proxy, n, dims in collections:
        proxy.set_dims(dims, awaitable=True).get()
        futures = [((kind, red), Future()) for kind in KINDS for red in REDUCERS]
        proxy.run_all(futures)
        pending.append((name, n, futures))
    count = 0
    for name, n, futures in pending:
        for (kind, red), fut in futures:
            check(kind, red, n, fut.get(), name)
            count += 1
    assert count == len(collections) * len(KINDS) * len(REDUCERS)
    print("OK reduce_kinds")
    charm.exit()


charm.start(main)
