"""Reducers: how contributions to a reduction combine. The combining runs on
each PE over its local members, then along the runtime's spanning tree (C),
which calls back here only for the values of Python objects."""
import functools
import operator


def _is_numpy(v):
    return type(v).__module__ == "numpy"


def _elementwise(op, np_op, vals):
    v0 = vals[0]
    if isinstance(v0, (list, tuple)):
        n = len(v0)
        if any(len(v) != n for v in vals):
            raise ValueError("reduction contributions are sequences of different lengths: "
                             + ", ".join(str(len(v)) for v in vals))
        out = [functools.reduce(op, col) for col in zip(*vals)]
        return out if isinstance(v0, list) else tuple(out)
    if type(v0).__name__ == "array" and type(v0).__module__ == "array":
        import array
        return array.array(v0.typecode, (functools.reduce(op, col) for col in zip(*vals)))
    if np_op is not None and any(_is_numpy(v) for v in vals):
        import numpy
        return functools.reduce(getattr(numpy, np_op), vals)
    return functools.reduce(op, vals)


def _land(a, b):
    return bool(a) and bool(b)


def _lor(a, b):
    return bool(a) or bool(b)


def _lxor(a, b):
    return bool(a) != bool(b)


class _Reducer:
    """A reducer: `combine(list_of_values)` with optional `pre` (applied to
    each contribution) and `post` (applied to the final result)."""

    def __init__(self, name, combine, pre=None, post=None, op=None):
        self.name = name
        self.op = op            # the C kernel (cp_op) for numbers, if any
        self.combine = combine
        self.pre = pre
        self.post = post

    def __repr__(self):
        return f"<Reducer {self.name}>"

    def __reduce__(self):
        return (_reducer_by_name, (self.name,))


_registry = {}


def _reducer_by_name(name):
    try:
        return _registry[name]
    except KeyError:
        raise LookupError(f"reducer '{name}' is not registered on this PE: call "
                          "Reducer.addReducer on every PE (at module level)") from None


def _builtin(name, combine, **kw):
    r = _Reducer(name, combine, **kw)
    _registry[name] = r
    return r


def _gather_post(pairs):
    pairs.sort(key=lambda kv: kv[0])
    return [v for _, v in pairs]


# The runtime's element-wise ops (cp_op in include/charmpy/runtime.h).
OP_SUM, OP_PROD, OP_MIN, OP_MAX, OP_LAND, OP_LOR, OP_LXOR = range(7)


class Reducer:
    sum = _builtin("sum", lambda vals: _elementwise(operator.add, "add", vals), op=OP_SUM)
    product = _builtin("product", lambda vals: _elementwise(operator.mul, "multiply", vals),
                       op=OP_PROD)
    max = _builtin("max", lambda vals: _elementwise(max, "maximum", vals), op=OP_MAX)
    min = _builtin("min", lambda vals: _elementwise(min, "minimum", vals), op=OP_MIN)
    logical_and = _builtin("logical_and",
                           lambda vals: _elementwise(_land, "logical_and", vals), op=OP_LAND)
    logical_or = _builtin("logical_or",
                          lambda vals: _elementwise(_lor, "logical_or", vals), op=OP_LOR)
    logical_xor = _builtin("logical_xor",
                           lambda vals: _elementwise(_lxor, "logical_xor", vals), op=OP_LXOR)
    # gather: contributions travel as [(index, value)] lists, concatenated on
    # the way and ordered by index at the end.
    gather = _builtin("gather", lambda vals: [kv for v in vals for kv in v],
                      post=_gather_post)
    nop = _builtin("nop", lambda vals: None)

    @staticmethod
    def addReducer(func, pre=None, post=None):
        """Add a reducer: func(list_of_contributions) -> combined value. It is
        then also available as Reducer.<func's name>."""
        name = getattr(func, "__qualname__", None) or repr(func)
        r = _Reducer(name, func, pre=pre, post=post)
        _registry[name] = r
        setattr(Reducer, func.__name__, r)
        return r
