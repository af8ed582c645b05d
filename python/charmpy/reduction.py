"""Reductions: the reducers (how contributions combine) and the path of a
contribution. The contributions of a PE's members are combined here, then
along the runtime's spanning tree among the PEs that hold members (C);
numbers are combined in C all the way, Python values call back here."""
import functools
import operator
import pickle

from . import _charmpy
from .charm import charm
from . import futures


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
    pairs.sort(key=operator.itemgetter(0))
    return list(map(operator.itemgetter(1), pairs))


# The runtime's element-wise ops (cp_op in include/charmpy/runtime.h).
OP_SUM, OP_PROD, OP_MIN, OP_MAX, OP_LAND, OP_LOR, OP_LXOR = range(7)
_OP_NAMES = ("sum", "product", "min", "max", "logical_and", "logical_or", "logical_xor")


class _Reducers:
    """Reducer: the built-in reducers and addReducer, on one object (as
    charm4py's ReducerContainer) whose attributes the interpreter reads at
    their place in it, faster than a class's."""

    def __init__(self):
        self.sum = _builtin("sum", lambda vals: _elementwise(operator.add, "add", vals),
                            op=OP_SUM)
        self.product = _builtin("product",
                                lambda vals: _elementwise(operator.mul, "multiply", vals),
                                op=OP_PROD)
        self.max = _builtin("max", lambda vals: _elementwise(max, "maximum", vals), op=OP_MAX)
        self.min = _builtin("min", lambda vals: _elementwise(min, "minimum", vals), op=OP_MIN)
        self.logical_and = _builtin("logical_and",
                                    lambda vals: _elementwise(_land, "logical_and", vals),
                                    op=OP_LAND)
        self.logical_or = _builtin("logical_or",
                                   lambda vals: _elementwise(_lor, "logical_or", vals),
                                   op=OP_LOR)
        self.logical_xor = _builtin("logical_xor",
                                    lambda vals: _elementwise(_lxor, "logical_xor", vals),
                                    op=OP_LXOR)
        # gather: a PE's contributions are (index, value) pairs (contrib.c makes
        # them too), its part the list of them; parts travel as such lists,
        # concatenated on the way and ordered by index at the end.
        self.gather = _builtin("gather", lambda vals: [kv for v in vals for kv in v],
                               post=_gather_post)
        self.nop = _builtin("nop", lambda vals: None)

    def addReducer(self, func, pre=None, post=None):
        """Add a reducer: func(list_of_contributions) -> combined value. It is
        then also available as Reducer.<func's name>."""
        name = getattr(func, "__qualname__", None) or repr(func)
        r = _Reducer(name, func, pre=pre, post=post)
        _registry[name] = r
        setattr(self, func.__name__, r)
        return r

    def __repr__(self):
        return "Reducer"


Reducer = _Reducers()


def add_reducer(func, pre=None, post=None):
    """charm.addReducer(func): Reducer.addReducer on this PE."""
    return Reducer.addReducer(func, pre, post)


# ---- contributions and their combination --------------------------------------
# A collection reduces in streams of its own: stream 0 for contribute and
# allreduce, SYNC for AtSync (lb.py), so that the two never mix their
# numbering. Every member numbers its contributions to a stream (its
# `_charmpy_redk`, a RedCounters: stream -> number, stepped in place; it
# travels with the member when it migrates); this PE combines the
# contributions to reduction k of its members once no member here still
# has to make one (a histogram of the members' next numbers says so).
#
# Groups (which never move) then reduce along the runtime's spanning tree
# (cp_reduce_among over the PEs that hold members). Arrays and single
# chares, whose members move, count instead: each PE sends its part with
# the number of contributions in it to the root (PE 0), which is done when
# it has as many as the collection has members; a PE whose members left
# sends nothing, and one that gets a late member sends a second part.
SYNC = 1 << 63
SECT = 1 << 62      # a section's stream: SECT | its id's low bits (counting, to its root)
ROOT = 0


# The reductions of one stream of a collection on this PE: a C type
# (python/ext/contrib.c) holding `section` (a section's stream: the
# Section), `pending` (reduction number -> _Redn: local members so far;
# an entry leaves it through st.take(k), never del: C keeps the last one),
# `targets` (on the tree's root: reduction number -> _Redn), `allfuts`
# (reduction number -> futures of allreduce callers), `parts` (on the
# counting root: number -> [count, parts, reducer, target, ...]) and, in C,
# the histogram of the members' next reduction numbers: st.move(r, delta),
# st.waits(k) (a member here still owes reduction k), st.hist (a dict copy).
_RedState = _charmpy.RedState


class _Redn:
    __slots__ = ("reducer", "target", "values", "allfuts")

    def __init__(self, reducer, target):
        self.reducer = reducer
        self.target = target
        self.values = []
        self.allfuts = []


def _counters(obj):
    """The member's RedCounters, or None. Read by object.__getattribute__,
    not through obj.__dict__ (asking for an instance's __dict__ makes one on
    3.11+, which slows every later attribute read on it: cpy.h
    cpy_attr_or_null) nor getattr (a class's own __getattr__ may answer for
    any name)."""
    try:
        return _getattribute(obj, "_charmpy_redk")
    except AttributeError:
        return None


_getattribute = object.__getattribute__


def _counter(obj, stream):
    c = _counters(obj)
    return 0 if c is None else c.get(stream)


def _state(info, stream, section=None):
    st = info.red.get(stream)
    if st is None:
        hist = {}
        for key, obj in (_charmpy.members(info.proxy.coll) or {}).items():
            if section is not None and key not in section:
                continue
            r = _counter(obj, stream)
            hist[r] = hist.get(r, 0) + 1
        st = info.red[stream] = _RedState(hist, section)
    elif section is not None and st.section is None:
        st.section = section    # made by a part that came before any member here contributed
        st.hist = _state_hist(info, stream, section)
    return st


def _state_hist(info, stream, section):
    hist = {}
    for key, obj in (_charmpy.members(info.proxy.coll) or {}).items():
        if key in section:
            r = _counter(obj, stream)
            hist[r] = hist.get(r, 0) + 1
    return hist


def _in(st, obj):
    return st.section is None or _key(obj) in st.section


def _key(obj):
    i = obj.thisIndex
    return i if isinstance(i, (int, tuple)) else tuple(i)


def member_arrived(info, obj):
    """A member came here (insertion or migration): its reductions count here."""
    for stream, st in info.red.items():
        if _in(st, obj):
            st.move(_counter(obj, stream), 1)


def member_left(info, obj):
    """A member left: reductions that waited only for it can go on here."""
    for stream, st in list(info.red.items()):
        if not _in(st, obj):
            continue
        st.move(_counter(obj, stream), -1)
        for k in sorted(st.pending):
            _maybe_reduce(info.proxy.coll, info, stream, k)


def contribute(obj, data, reducer, target, allfut, stream=0, section=None):
    """obj's contribution to its collection's next reduction of `stream`
    (0, or SYNC), or of section `section`; the result goes to target (a
    proxy method or Future), or to every member's allreduce future."""
    proxy = obj.thisProxy
    coll = proxy.coll
    info = charm._colls[coll]
    if section is not None:
        # (Every operation counts here: a section's members contribute often.)
        given = section
        if type(section) is not _Section:
            if type(section) is not _Combined:
                raise TypeError(f"section={section!r} is not a section proxy (make one with "
                                "proxy[slice], charm.split or charm.combine)")
            section = section.part_for(coll)    # this collection's part, or None
        if (section is None or obj.thisIndex not in (section._keyset or section.keyset())
                or section.coll != coll):
            raise ValueError(f"{type(obj).__name__}{_idx(obj)} contributes to {given!r}, "
                             "of which it is not a member")
        stream = section.stream
    if reducer is None:
        if data is not None:
            raise ValueError("contribute(data, None, ...) needs a reducer for the data")
        reducer = Reducer.nop
    elif not isinstance(reducer, _Reducer):
        raise TypeError(f"{reducer!r} is not a reducer: use Reducer.sum, ... or "
                        "Reducer.addReducer(func)")
    st = _state(info, stream, section)
    counters = _counters(obj)
    if counters is None:
        counters = _charmpy.RedCounters()
        object.__setattr__(obj, "_charmpy_redk", counters)
    k = counters.step(stream)
    st.move(k, -1)
    st.move(k + 1, 1)
    rec = st.pending.get(k)
    if rec is None:
        rec = st.pending[k] = _Redn(reducer, target)
        if not _watch["armed"]:
            _arm()
    elif rec.reducer is not reducer:
        raise ValueError(
            f"reduction {k} of {proxy!r}: {type(obj).__name__}{_idx(obj)} contributes "
            f"with {reducer!r} but another member with {rec.reducer!r}; every member "
            "must make the same contribute calls in the same order")
    if reducer.pre is not None:
        data = reducer.pre(data)
    if reducer is Reducer.gather:
        data = ((obj.thisIndex, data) if section is None or section.gno is None
                else ((section.gno, obj.thisIndex), data))  # a Combined's: part by part
    rec.values.append(data)
    if allfut is not None:
        rec.allfuts.append(allfut)
    _maybe_reduce(coll, info, stream, k)


def _contribute_method(obj, data, reducer, target, section=None):
    """Chare.contribute where its C path (python/ext/contrib.c) does not go:
    a member's first contribution, a PE's first to a reduction, sections,
    reducers with `pre`, and every error."""
    contribute(obj, data, reducer, target, None, section=section)


def _allreduce_slow(obj, data, reducer, fut, section):
    """Chare.allreduce's contribution where contrib.c does not take it."""
    contribute(obj, data, reducer, None, fut, section=section)


def set_participants(coll, pes):
    """A sparse array's PEs with members became known (ckDoneInserting)."""
    info = charm._colls[coll]
    info.pes = pes
    for f in sections.members_known.pop(coll, ()):
        f.send(None)    # a slice of the array waited for its members
    for stream, st in list(info.red.items()):
        for k in sorted(st.pending):
            _maybe_reduce(coll, info, stream, k)
        for k in sorted(st.parts):
            _root_check(coll, info, stream, k)


def _counting(info, stream=0):
    # arrays, single chares (1: GROUP) and sections
    return info.proxy.kind != 1 or bool(stream & SECT)


def _local_part(rec):
    """The payload of this PE's contributions to one reduction."""
    vals = rec.values
    op = rec.reducer.op
    if op is not None:
        # Numbers: encoded and combined in C, here and after.
        part = _charmpy.typed_reduce(op, vals)
        if part is not None:
            return part
    if rec.reducer is Reducer.gather:
        value = vals
    else:
        value = vals[0] if len(vals) == 1 else rec.reducer.combine(vals)
    return pickle.dumps((rec.reducer.name, value), 5)


def _maybe_reduce(coll, info, stream, k):
    """Pass reduction k on once no member here still has to contribute to
    it (for groups, and sparse arrays reducing along the tree, once the
    participants are known)."""
    st = info.red[stream]
    rec = st.pending.get(k)
    if rec is None or st.waits(k):
        return
    counting = _counting(info, stream)
    if not counting and info.pes is None:
        return
    st.take(k)
    payload = _local_part(rec)
    if rec.allfuts:
        st.allfuts[k] = rec.allfuts
    if counting:
        sec = st.section    # its root, count and root's collection (a Combined's: its)
        args = (coll if sec is None else sec.rcoll, stream, k, len(rec.values), payload,
                rec.reducer.name, rec.target, charm._pe if rec.allfuts else -1,
                sec.rn if sec is not None else -1)
        root = sec.rroot if sec is not None else _root(info)
        if charm._pe == root:
            _on_part(*args)
        else:
            charm.send_msg(root, "Q", *args)
        return
    if charm._pe not in info.pes:
        raise RuntimeError(
            f"{info.cls.__name__}: this PE (PE {charm._pe}) holds members but is not "
            f"among the PEs {info.pes} the reduction runs over")
    if info.pes[0] == charm._pe:
        st.targets[k] = rec
        if not _watch["armed"]:
            _arm()
    _charmpy.reduce_among(coll | stream, payload, info.pes)


def _root(info):
    """The counting root: PE 0 for arrays (created on every PE), the PE a
    single chare was created on (the one that has its collection)."""
    return info.proxy.pe if info.proxy.kind == 0 else ROOT


def _expected(info):
    """How many contributions a reduction of the collection has: None while
    a sparse array's count is not known (before ckDoneInserting)."""
    if info.proxy.kind == 0:
        return 1
    if info.sparse:
        return None if info.pes is None else info.total
    n = 1
    for d in info.proxy.dims:
        n *= d
    return n


def _on_part(coll, stream, k, count, payload, name, target, allreduce_pe, expected=-1):
    """At the counting root: a PE's part of reduction k (allreduce_pe: that
    PE, when members there wait in allreduce, else -1; expected: a
    section's number of members, else -1)."""
    info = charm._colls[coll]
    st = _state(info, stream)
    acc = st.parts.get(k)
    if acc is None:
        acc = st.parts[k] = [0, [], name, target, set(), expected]
        if not _watch["armed"]:
            _arm()
    if allreduce_pe >= 0:
        acc[4].add(allreduce_pe)
    elif acc[2] != name:
        raise ValueError(f"mismatched reduction {k}: reducer '{acc[2]}' on one PE and "
                         f"'{name}' on another")
    acc[0] += count
    acc[1].append(payload)
    _root_check(coll, info, stream, k)


def _root_check(coll, info, stream, k):
    st = info.red[stream]
    acc = st.parts.get(k)
    n = _expected(info) if acc is None or acc[5] < 0 else acc[5]
    if acc is None or n is None or acc[0] < n:
        return
    del st.parts[k]
    parts = acc[1]
    if len(parts) == 1:
        payload = parts[0]
    else:
        payload = None
        if all(p[:1] != b"\x80" for p in parts):
            payload = _charmpy.typed_combine(parts)     # None: ints past int64
        if payload is None:
            payload = combine(parts)
    _finish(coll, info, stream, k, payload, _reducer_by_name(acc[2]), acc[3], sorted(acc[4]))


def _decode_part(payload):
    if payload[:1] == b"\x80":
        return pickle.loads(payload)
    return (None, _charmpy.typed_decode(payload))


def combine(parts):
    """Combine partial results of Python values (the combine hook)."""
    vals = [_decode_part(p) for p in parts]
    # Typed parts carry their op (byte 4 of the header), pickled ones a name.
    named = [n for n, _ in vals if n is not None] or [_OP_NAMES[parts[0][4]]]
    vals = [(named[0], v) for _, v in vals]
    name = vals[0][0]
    for other, _ in vals[1:]:
        if other != name:
            raise ValueError(f"mismatched reduction: reducer '{name}' on one PE and "
                             f"'{other}' on another")
    return pickle.dumps((name, _reducer_by_name(name).combine([v for _, v in vals])), 5)


def on_reduction(stream_id, seq, payload):
    """A tree reduction's result at its root (the on_reduction hook)."""
    stream, coll = stream_id & SYNC, stream_id & ~SYNC
    info = charm._colls[coll]
    rec = info.red[stream].targets.pop(seq)
    _finish(coll, info, stream, seq, payload, rec.reducer, rec.target)


def _finish(coll, info, stream, k, payload, reducer, target, waiting=None):
    """Reduction k is complete: its result to target, or (allreduce) to the
    PEs where members wait (`waiting`; the tree's PEs when None)."""
    if stream == SYNC:
        lb.sync_done(info)
        return
    _, value = _decode_part(payload)
    if reducer.post is not None:
        value = reducer.post(value)
    if reducer is Reducer.nop:
        value = None
    if target is None:
        # allreduce: every PE where a member waits gets the value.
        for pe in info.pes if waiting is None else waiting:
            charm.send_msg(pe, "A", coll, k, value, stream)
        return
    _deliver(target, value, reducer is Reducer.nop)


def _allreduce_done(coll, seq, value, stream=0):
    if stream & SECT:
        # A Combined's members here may be of any of its collections.
        sts = [info.red[stream] for info in charm._colls.values() if stream in info.red]
    else:
        sts = [_state(charm._colls[coll], stream)]
    for st in sts:
        for f in st.allfuts.pop(seq, ()):
            f._deliver(None, value, None)


def _deliver(target, value, empty):
    if isinstance(target, (futures.Future, futures._FutureRef)):
        target.send(value)
    elif empty:
        target()
    else:
        target(value)


def _idx(obj):
    i = getattr(obj, "thisIndex", None)
    return "" if i is None else f"[{i}]"


# ---- reductions that can never complete -----------------------------------------
# A reduction some members contributed to and others never will would wait
# for ever. A PE that holds a partial reduction (contributions of its
# members, or parts at a root) that made no progress for WATCH_SECS tells
# PE 0, which waits for quiescence (nothing in flight or running anywhere,
# no timer: nothing can ever happen again), asks every PE what it holds,
# waits a little and for quiescence once more (a waitQD of the program
# answered at the same quiescence may go on), asks again, and, when
# nothing moved, ends the job with an error naming the reduction, how many
# contributed and which members here did not. Background timers: they do
# not hold quiescence back, and cost nothing while no reduction waits.
WATCH_SECS = 2.0
_watch = {"armed": False, "last": None, "checking": False, "round": 0, "answers": [],
          "first": None}


def _partial(detail=False):
    """This PE's partial reductions, [(coll, stream, k, contributions, expected
    or -1)] (-2 contributions: in the runtime's tree, at its root), and with
    detail, [(coll, stream, PE, [(counter, member key)])]: the members here
    that contributed least to each stream (the 8 lowest counters)."""
    out, lag = [], []
    for coll, info in charm._colls.items():
        for stream, st in info.red.items():
            for k, rec in st.pending.items():
                out.append((coll, stream, k, len(rec.values), -1))
            for k, acc in st.parts.items():
                n = acc[5] if acc[5] >= 0 else _expected(info)
                out.append((coll, stream, k, acc[0], -1 if n is None else n))
            for k in st.targets:
                out.append((coll, stream, k, -2, -1))
        if detail:
            # A member that never contributed may be on a PE without any
            # state for the stream: stream 0 always counts.
            members = _charmpy.members(coll) or {}
            for stream in set(info.red) | {0}:
                st = info.red.get(stream)
                low = sorted((_counter(obj, stream), key) for key, obj in members.items()
                             if st is None or _in(st, obj))[:8]
                if low:
                    lag.append((coll, stream, charm._pe, low))
    out.sort(key=lambda t: (t[0], t[1], t[2]))
    return (out, lag) if detail else out


def _arm():
    if not _watch["armed"]:
        _watch["armed"] = True
        _charmpy.call_after(WATCH_SECS, _watch_tick, (), True)


def _watch_tick():
    now = _partial()
    if not now:
        _watch["armed"], _watch["last"] = False, None
        return
    if now == _watch["last"]:
        charm.send_msg(0, "W", "suspect")
    _watch["last"] = now
    _charmpy.call_after(WATCH_SECS, _watch_tick, (), True)


def _on_watch(what, *args):
    if what == "suspect":
        if charm._pe == 0 and not _watch["checking"]:
            _watch["checking"] = True
            _watch["first"] = None
            _charmpy.qd_start(_quiet)
    elif what == "ask":
        charm.send_msg(0, "W", "answer", args[0], charm._pe, _partial(True))
    elif what == "answer" and args[0] == _watch["round"]:
        _watch["answers"].append((args[1], args[2]))
        if len(_watch["answers"]) == charm._npes:
            _answered()


def _quiet():
    _watch["round"] += 1
    _watch["answers"] = []
    charm.send_msg(-1, "W", "ask", _watch["round"])


def _answered():
    got = sorted((pe, tuple(map(tuple, part[0])), tuple(part[1]))
                 for pe, part in _watch["answers"])
    if not any(part for _, part, _ in got):
        _watch["checking"] = False
        return
    if _watch["first"] is None or _watch["first"] != got:
        # Once more after a while: whatever this quiescence woke may go on.
        _watch["first"] = got
        _charmpy.call_after(0.5, _charmpy.qd_start, (_quiet,), True)
        return
    raise RuntimeError(_stuck_text(got))


def _stuck_text(got):
    lines = ["a reduction can never complete: the job is quiescent (no message in flight or "
             "running, no timer), so no member can contribute any more"]
    lags = [lag for _, _, lags in got for lag in lags]
    seen = set()
    for pe, part, _ in got:
        for coll, stream, k, count, n in part:
            info = charm._colls.get(coll)
            what = repr(info.proxy) if info is not None else f"collection {coll:#x}"
            kind = ("AtSync" if stream == SYNC else "section reduction" if stream & SECT
                    else "reduction")
            if count == -2:
                lines.append(f"  {kind} {k} of {what}: waiting in the spanning tree at PE {pe}")
            elif n >= 0:
                lines.append(f"  {kind} {k} of {what}: {count} of {n} contributions reached "
                             f"its root (PE {pe})")
            else:
                lines.append(f"  {kind} {k} of {what}: {count} member(s) on PE {pe} "
                             "contributed")
            if (coll, stream, k) in seen:
                continue
            seen.add((coll, stream, k))
            name = info.cls.__name__ if info is not None else "?"
            missing = [f"{name}[{key!r}] on PE {mpe}" for lc, ls, mpe, low in lags
                       if (lc, ls) == (coll, stream) for c, key in low if c <= k]
            if missing:
                lines.append(f"    not contributed: {', '.join(missing[:8])}"
                             + (" ..." if len(missing) > 8 else ""))
    lines.append("every member must make the same contribute (or AtSync) calls in the same "
                 "order")
    return "\n".join(lines)


charm.on_message("A", _allreduce_done, coll=True)
charm.on_message("Q", _on_part, coll=True)
charm.on_message("W", _on_watch)

from . import lb, sections  # noqa: E402  (lb reduces through this module)

_Section = sections.Section
_Combined = sections.Combined
_charmpy.red_setup(charm._colls, _contribute_method, _maybe_reduce, Reducer.gather,
                   _allreduce_slow, _Section, _Redn, _watch, _arm)
