"""Reductions: the reducers (how contributions combine) and the path of a
contribution. The contributions of a PE's members are combined here, then
along the runtime's spanning tree among the PEs that hold members (C);
numbers are combined in C all the way, Python values call back here."""
import functools
import operator
import pickle

from . import _charmpy
from .charm import charm
from .futures import Future, _FutureRef


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


def add_reducer(func, pre=None, post=None):
    """charm.addReducer(func): Reducer.addReducer on this PE."""
    return Reducer.addReducer(func, pre, post)


# ---- contributions and their combination --------------------------------------
# A collection reduces in streams of its own (cp_reduce_among): stream coll
# for contribute/allreduce, and coll | SYNC for AtSync (lb.py), so that the
# two never mix their numbering.
SYNC = 1 << 63


class _RedState:
    """The reductions of one stream of a collection on this PE."""
    __slots__ = ("pending", "targets", "allfuts")

    def __init__(self):
        self.pending = {}   # reduction number -> _Redn: local members so far
        self.targets = {}   # on the root: reduction number -> _Redn
        self.allfuts = {}   # reduction number -> futures of allreduce callers


class _Redn:
    __slots__ = ("reducer", "target", "values", "allfuts")

    def __init__(self, reducer, target):
        self.reducer = reducer
        self.target = target
        self.values = []
        self.allfuts = []


def _state(info, stream):
    st = info.red.get(stream)
    if st is None:
        st = info.red[stream] = _RedState()
    return st


def contribute(obj, data, reducer, target, allfut, stream=0):
    """obj's contribution to its collection's next reduction of `stream`
    (0, or SYNC); the result goes to target (a proxy method or Future), or
    to every member's allreduce future."""
    proxy = obj.thisProxy
    info = charm._colls[proxy.coll]
    if reducer is None:
        if data is not None:
            raise ValueError("contribute(data, None, ...) needs a reducer for the data")
        reducer = Reducer.nop
    elif not isinstance(reducer, _Reducer):
        raise TypeError(f"{reducer!r} is not a reducer: use Reducer.sum, ... or "
                        "Reducer.addReducer(func)")
    counters = obj.__dict__.setdefault("_charmpy_redk", {})
    k = counters.get(stream, 0)
    counters[stream] = k + 1
    st = _state(info, stream)
    rec = st.pending.get(k)
    if rec is None:
        rec = st.pending[k] = _Redn(reducer, target)
    elif rec.reducer is not reducer:
        raise ValueError(
            f"reduction {k} of {proxy!r}: {type(obj).__name__}{_idx(obj)} contributes "
            f"with {reducer!r} but another member with {rec.reducer!r}; every member "
            "must make the same contribute calls in the same order")
    if reducer.pre is not None:
        data = reducer.pre(data)
    if reducer is Reducer.gather:
        data = [(obj.thisIndex, data)]
    rec.values.append(data)
    if allfut is not None:
        rec.allfuts.append(allfut)
    _maybe_reduce(proxy.coll, info, stream, k)


def set_participants(coll, pes):
    """A sparse array's PEs with members became known (ckDoneInserting):
    the reductions waiting for them go on."""
    info = charm._colls[coll]
    info.pes = pes
    for stream, st in list(info.red.items()):
        for k in sorted(st.pending):
            _maybe_reduce(coll, info, stream, k)


def _maybe_reduce(coll, info, stream, k):
    """Pass reduction k on to the PE-level tree once every local member
    contributed (and, for sparse arrays, the participants are known)."""
    st = info.red[stream]
    rec = st.pending.get(k)
    if rec is None or info.pes is None or len(rec.values) < info.nlocal:
        return
    del st.pending[k]
    vals = rec.values
    payload = None
    op = rec.reducer.op
    if op is not None:
        # Numbers: encoded and combined in C, here and along the tree.
        parts = [_charmpy.typed_encode(op, v) for v in vals]
        if None not in parts:
            payload = parts[0] if len(parts) == 1 else _charmpy.typed_combine(parts)
    if payload is None:
        value = vals[0] if len(vals) == 1 else rec.reducer.combine(vals)
        payload = pickle.dumps((rec.reducer.name, value), 5)
    if charm._pe not in info.pes:
        raise RuntimeError(
            f"{info.cls.__name__}: this PE (PE {charm._pe}) holds members of the sparse array "
            f"but was not among its PEs {info.pes} when ckDoneInserting counted them: an "
            "element was inserted after ckDoneInserting; insert every element before it")
    if rec.allfuts:
        st.allfuts[k] = rec.allfuts
    if info.pes[0] == charm._pe:
        st.targets[k] = rec
    _charmpy.reduce_among(coll | stream, payload, info.pes)


def _decode_part(payload):
    if payload[:1] == b"\x80":
        return pickle.loads(payload)
    return (None, _charmpy.typed_decode(payload))


def combine(parts):
    """Combine partial results of Python values (the combine hook)."""
    vals = [_decode_part(p) for p in parts]
    named = [n for n, _ in vals if n is not None]
    vals = [(named[0], v) for _, v in vals]
    name = vals[0][0]
    for other, _ in vals[1:]:
        if other != name:
            raise ValueError(f"mismatched reduction: reducer '{name}' on one PE and "
                             f"'{other}' on another")
    return pickle.dumps((name, _reducer_by_name(name).combine([v for _, v in vals])), 5)


def on_reduction(stream_id, seq, payload):
    """A reduction's result at its root (the on_reduction hook)."""
    _, value = _decode_part(payload)
    stream, coll = stream_id & SYNC, stream_id & ~SYNC
    info = charm._colls[coll]
    st = info.red[stream]
    rec = st.targets.pop(seq)
    if stream == SYNC:
        lb.sync_done(info)
        return
    if rec.reducer.post is not None:
        value = rec.reducer.post(value)
    if rec.reducer is Reducer.nop:
        value = None
    if st.allfuts.get(seq) is not None or rec.target is None:
        # allreduce: every participant PE gets the value.
        for pe in info.pes:
            charm.send_msg(pe, "A", coll, seq, value)
        return
    _deliver(rec.target, value, rec.reducer is Reducer.nop)


def _allreduce_done(coll, seq, value):
    st = charm._colls[coll].red[0]
    for f in st.allfuts.pop(seq, ()):
        f._deliver(None, value, None)


def _deliver(target, value, empty):
    if isinstance(target, (Future, _FutureRef)):
        target.send(value)
    elif empty:
        target()
    else:
        target(value)


def _idx(obj):
    i = getattr(obj, "thisIndex", None)
    return "" if i is None else f"[{i}]"


charm.on_message("A", _allreduce_done, coll=True)

from . import lb  # noqa: E402  (it reduces through this module)
