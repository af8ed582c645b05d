"""Sections: a subset of a group's or an array's members, through a proxy
of its own: `proxy[0:10]` (steps, N-d slices, ints fixing a dimension),
`charm.split(proxy, n, section_func=..., elems=...)`, `charm.combine(...)`.

A call through a section proxy is one message multicast along a spanning
tree over the members' home PEs, all in C (python/ext/section.c); here:
the descriptor of a section (what it names), its id, its home PEs, and
turning a descriptor into the keys of the members homed on this PE (once
per section and PE). Reductions over a section: reduction.py."""
import functools
import hashlib
import itertools
import pickle

from . import _charmpy
from .charm import charm
from . import futures

GROUP = 1
SECT = 1 << 62      # reduction.py: a section's stream is SECT | its id's low bits


_streams = {}


def _stream(sid):
    """A section's reduction stream, one int object a section however many
    copies of its proxy arrive (each message brings one): the dicts it is a
    key of find it by identity, without comparing (ints past 2**30 have
    three digits to compare)."""
    s = SECT | (sid & (SECT - 1))
    return _streams.setdefault(s, s)


class Section:
    """A section proxy: broadcasts (`sec.method(...)`, ret= and awaitable=
    as for any call) and reduces (`contribute(..., section=sec)`) over its
    members. A value: equal and hashable by collection and members, and
    sent as an argument like any proxy."""

    __slots__ = ("proxy", "coll", "desc", "sid", "_pes", "n", "stream", "_keys", "_keyset",
                 "rn", "gno", "_owner", "_pk", "_rd")
    issec = True

    def __init__(self, proxy, desc, pes, n, keys=None):
        """pes: the members' home PEs, or None to find them when needed (a
        section saved by a run on another number of PEs)."""
        self.proxy = proxy        # the collection's proxy
        self.coll = proxy.coll
        self.desc = desc          # bytes: (coll, kind, what), pickled
        self.sid = int.from_bytes(hashlib.blake2b(desc, digest_size=8).digest(), "little")
        self._pes = pes           # the members' home PEs, ascending (self.pes)
        self.n = n                # members
        self.stream = _stream(self.sid)   # its reductions' (reduction.py)
        self._keys = keys
        self._keyset = None
        # How its reductions count (reduction.py): how many contributions
        # and gather's sort prefix (None: the index alone); a Combined's
        # part has the Combined's count, its number, and the Combined as
        # _owner (whose root and collection there it takes: rroot, rcoll).
        self.rn, self.gno, self._owner = n, None, None
        self._pk = None           # the proxy pickled, once (__reduce__)
        self._rd = None           # what __reduce__ returns, once

    @property
    def pes(self):
        """The members' home PEs, ascending."""
        p = self._pes
        if p is None:
            p = self._pes = _charmpy.section_homes(self.proxy, list(self.keys()))
        return p

    @property
    def rroot(self):
        """The PE where its reductions are done: its lowest home PE."""
        return self.pes[0] if self._owner is None else self._owner.pes[0]

    @property
    def rcoll(self):
        """The collection whose state holds its reductions at rroot."""
        return self.coll if self._owner is None else self._owner.rcoll

    def keyset(self):
        """The members' indices, as a frozenset."""
        if self._keyset is None:
            self._keyset = _known(self)[1]
        return self._keyset

    def keys(self):
        """The members' indices (ints for a group, tuples for an array)."""
        if self._keys is None:
            self._keys = _known(self)[0]
        return self._keys

    def __contains__(self, key):
        if self._keyset is None:
            self._keyset = _known(self)[1]
        return key in self._keyset

    def __len__(self):
        return self.n

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        # Every Section comes here for this name (it is none of the class's
        # attributes): a property of the class from now on, found by the
        # lookup itself (no AttributeError raised and caught on each call).
        if not hasattr(Section, name):  # (an unset slot comes here too: kept)
            setattr(Section, name, property(functools.partial(_Caller, name=name)))
        return _Caller(self, name)

    def __eq__(self, other):
        if not isinstance(other, Section):
            return NotImplemented
        if other.sid == self.sid and other.desc == self.desc:
            return True
        return (other.coll == self.coll and other.n == self.n and other.pes == self.pes
                and other.keys() == self.keys())

    def __hash__(self):
        k = self.keys()    # sorted: equal members, equal hash
        return hash((self.coll, self.n, k[0], k[-1]))

    def __reduce__(self):
        # The proxy goes pickled once (by its class's name: slow to pickle,
        # and to unpickle, which a PE that knows the section does not do).
        if self._pk is None:
            self._pk = pickle.dumps(self.proxy, 5)
        if self._rd is None:    # made once: every argument is fixed for the section
            self._rd = (_received_section, (self._pk, self.desc, self.pes, self.n, charm._npes))
        return self._rd

    def __repr__(self):
        return f"<Section of {self.proxy!r}: {self.n} members on PEs {list(self.pes)}>"


_received = {}      # desc -> the Section its copies that arrive here become (_KNOWN_MAX)


def _received_section(proxy, desc, pes, n, npes=None):
    """A section proxy that arrived in a message: one object a section on
    this PE (no hashing of its descriptor, no enumeration, a copy a call).
    proxy: the collection's proxy, pickled (or itself); npes: the number of
    PEs of the run that pickled it (another: a restart, where the members'
    homes are found again)."""
    if npes is not None and npes != charm._npes:
        return _section_of(proxy, desc, None, n)
    got = _received.get(desc)
    if got is None or got._pes != pes or got.n != n:
        got = _section_of(proxy, desc, pes, n)
        if len(_received) >= _KNOWN_MAX:
            _received.pop(next(iter(_received)))
        _received[desc] = got
    return got


def _section_of(proxy, desc, pes, n):
    pk = proxy if isinstance(proxy, bytes) else None
    got = Section(pickle.loads(proxy) if pk is not None else proxy, desc, pes, n)
    got._pk = pk
    return got


class _Caller:
    __slots__ = ("sec", "name")

    def __init__(self, sec, name):
        self.sec, self.name = sec, name

    def __call__(self, *args, **kwargs):
        s = self.sec
        return _charmpy.section_send(s.proxy, self.name, s.sid, s.desc, s.pes, args,
                                     kwargs or None)


class Combined:
    """A section over members of several collections (charm.combine of
    sections or proxies of different groups and arrays): `parts` holds one
    Section a collection, in the order the collections were first given.
    A call reaches every member once (one multicast a collection, each
    along its tree); ret=True gives the members' values part by part, each
    in index order; a reduction (`contribute(..., section=comb)`,
    `allreduce`) takes one contribution from every member and is done at
    the lowest PE that is home to members (gather: part by part, each in
    index order). A value, like Section: equal and hashable by members,
    sent as an argument."""

    __slots__ = ("parts", "desc", "sid", "_pes", "n", "stream", "_bycoll", "_rcoll")
    issec = True

    def __init__(self, parts):
        parts = tuple(parts)
        self.desc = pickle.dumps(("combined", tuple(p.desc for p in parts)), 5)
        self.sid = int.from_bytes(hashlib.blake2b(self.desc, digest_size=8).digest(), "little")
        self._pes = self._rcoll = None   # found when needed (pes, rcoll)
        self.n = sum(p.n for p in parts)
        self.stream = _stream(self.sid)
        own = []
        for i, p in enumerate(parts):
            q = Section(p.proxy, p.desc, p._pes, p.n, p._keys)
            q._pk = p._pk
            q.stream, q.rn, q.gno, q._owner = self.stream, self.n, i, self
            own.append(q)
        self.parts = tuple(own)
        self._bycoll = {q.coll: q for q in own}

    @property
    def pes(self):
        """Its members' home PEs, ascending."""
        if self._pes is None:
            self._pes = tuple(sorted(set().union(*(q.pes for q in self.parts))))
        return self._pes

    @property
    def rcoll(self):
        """A collection with a member homed at the root (so known there)."""
        if self._rcoll is None:
            root = self.pes[0]
            self._rcoll = next(q.coll for q in self.parts if root in q.pes)
        return self._rcoll

    def part_for(self, coll):
        """The part of collection coll (None: no members of it)."""
        return self._bycoll.get(coll)

    def __len__(self):
        return self.n

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return _CombinedCaller(self, name)

    def __eq__(self, other):
        if not isinstance(other, Combined):
            return NotImplemented
        return other.desc == self.desc or set(other.parts) == set(self.parts)

    def __hash__(self):
        return hash(frozenset(self.parts))

    def __reduce__(self):
        # The parts travel as plain sections; __init__ makes them parts again.
        return (Combined, (tuple(_received_section(q.proxy, q.desc, q.pes, q.n)
                                 for q in self.parts),))

    def __repr__(self):
        return (f"<Section combining {len(self.parts)} collections "
                f"({', '.join(repr(q.proxy) for q in self.parts)}): {self.n} members on PEs "
                f"{list(self.pes)}>")


_entry_cache = {}


def _has_entry(cls, name):
    names = _entry_cache.get(cls)
    if names is None:
        from .chare import entry_names
        names = _entry_cache[cls] = entry_names(cls)[0]
    return name in names


class _CombinedCaller:
    __slots__ = ("sec", "name")

    def __init__(self, sec, name):
        self.sec, self.name = sec, name

    def __call__(self, *args, **kwargs):
        parts = self.sec.parts
        for q in parts:
            # All or nothing: no part sent when one collection lacks the method.
            if not _has_entry(q.proxy.cls, self.name):
                raise AttributeError(f"{q.proxy.cls.__name__} (members of {self.sec!r}) has no "
                                     f"entry method '{self.name}' (entry methods are its public "
                                     "methods)")
        ret, aw = bool(kwargs.pop("ret", False)), bool(kwargs.pop("awaitable", False))
        futs = []
        for q in parts:
            kw = dict(kwargs)
            if ret or aw:
                kw["ret" if ret else "awaitable"] = True
            futs.append(_charmpy.section_send(q.proxy, self.name, q.sid, q.desc, q.pes, args,
                                              kw or None))
        return futures.joined(futs, ret) if ret or aw else None


# The members of the sections this PE saw (a copy of a section proxy that
# arrives in every broadcast must not enumerate them again): desc ->
# (keys, frozenset of keys), the last _KNOWN_MAX.
_known_sets = {}
_KNOWN_MAX = 64


def _known(sec):
    got = _known_sets.get(sec.desc)
    if got is None:
        keys = sec._keys if sec._keys is not None else _keys_of(sec.desc)
        got = (keys, frozenset(keys))
        if len(_known_sets) >= _KNOWN_MAX:
            _known_sets.pop(next(iter(_known_sets)))
        _known_sets[sec.desc] = got
    return got


def _keys_of(desc):
    coll, kind, what = pickle.loads(desc)
    if kind == "ranges":
        return [t for t in itertools.product(*(range(*r) for r in what))]
    return list(what)


def _make(proxy, keys, kind, what):
    if not keys:
        raise ValueError(f"a section of {proxy!r} with no members (an empty selection): give "
                         "indices or slices that select at least one member")
    desc = pickle.dumps((proxy.coll, kind, what), 5)
    return Section(proxy, desc, _charmpy.section_homes(proxy, keys), len(keys), keys)


def _base(proxy):
    if isinstance(proxy, Section):
        return proxy.proxy
    if isinstance(proxy, Combined):
        raise TypeError(f"{proxy!r} spans several collections: split or slice each of its "
                        "parts (its .parts, a section of one collection each)")
    if getattr(proxy, "kind", None) not in (GROUP, 2) or proxy.index is not None:
        raise TypeError(f"{proxy!r}: sections are of groups and arrays (a collection's proxy "
                        "or a section)")
    return proxy


def _group_pes(proxy):
    info = charm._colls.get(proxy.coll)
    if info is not None and info.pes is not None:
        return list(info.pes)
    return list(range(charm._npes))


def _normalize(proxy, idx):
    """An index as its key: an int for a group, a tuple for an array."""
    if proxy.kind == GROUP:
        if isinstance(idx, (tuple, list)) and len(idx) == 1:
            idx = idx[0]
        return int(idx)
    if isinstance(idx, int):
        return (idx,)
    return tuple(int(i) for i in idx)


def slice_hook(proxy, key):
    """proxy[key] where key holds slices: a section."""
    if proxy.kind == GROUP:
        if not isinstance(key, slice):
            raise TypeError(f"a group's section is one slice over PEs, not {key!r}")
        members = set(_group_pes(proxy))
        keys = [pe for pe in range(charm._npes)[key] if pe in members]
        return _make(proxy, sorted(keys), "keys", tuple(sorted(keys)))
    if proxy.sparse:
        return _sparse_slice(proxy, key)
    dims = proxy.dims
    parts = key if isinstance(key, tuple) else (key,)
    if len(parts) != len(dims):
        raise IndexError(f"{proxy!r} has {len(dims)} dimensions: a slice needs one part for "
                         f"each, got {len(parts)} ({key!r})")
    ranges = []
    for p, d in zip(parts, dims):
        if isinstance(p, slice):
            r = range(d)[p]
            ranges.append(r[::-1] if r.step < 0 else r)   # ascending: keys sorted
        else:
            i = int(p)
            if not 0 <= i < d:
                raise IndexError(f"index {i} out of range for a dimension of size {d}")
            ranges.append(range(i, i + 1))
    what = tuple((r.start, r.stop, r.step) for r in ranges)
    keys = list(itertools.product(*ranges))
    return _make(proxy, keys, "ranges", what)


# ---- sparse arrays: a slice is of the members inserted ------------------------
members_known = {}  # coll -> futures of slices waiting for ckDoneInserting to finish


class _InSlices:
    """section_func of a sparse array's slice: 0 for a member whose index
    falls in every (start, stop or None, step) part, else -1."""

    def __init__(self, parts):
        self.parts = parts

    def __call__(self, obj):
        idx = obj.thisIndex
        for i, (start, stop, step) in zip(idx, self.parts):
            if i < start or (stop is not None and i >= stop) or (i - start) % step:
                return -1
        return 0


def _sparse_parts(proxy, key):
    parts = key if isinstance(key, tuple) else (key,)
    nd = proxy.ndims
    if len(parts) != nd:
        raise IndexError(f"{proxy!r} has {nd} dimensions: a slice needs one part for each, "
                         f"got {len(parts)} ({key!r})")
    out = []
    for p in parts:
        if isinstance(p, slice):
            start = 0 if p.start is None else int(p.start)
            stop = None if p.stop is None else int(p.stop)
            step = 1 if p.step is None else int(p.step)
        else:
            start, stop, step = int(p), int(p) + 1, 1
        if start < 0 or (stop is not None and stop < 0) or step < 1:
            raise IndexError(f"{proxy!r}[{key!r}]: a sparse array has no size to count from "
                             "its end: give starts and stops of 0 or more and positive steps")
        out.append((start, stop, step))
    return tuple(out)


def _sparse_slice(proxy, key):
    """proxy[slices] of a sparse array: a section of the members inserted
    whose indices fall in the slices. It waits (in a coroutine) until the
    array's insertions are done (ckDoneInserting), then asks every PE."""
    parts = _sparse_parts(proxy, key)
    info = charm._colls.get(proxy.coll)    # None: not made here yet
    if info is None or info.pes is None:
        from .location import done_called
        if proxy.coll not in done_called:
            raise ValueError(f"{proxy!r}[{key!r}]: a sparse array is sliced among its members, "
                             "known once its insertions are done: call ckDoneInserting() "
                             "first (or use charm.split(proxy, n, elems=[[index, ...]]))")
        f = futures.Future()
        members_known.setdefault(proxy.coll, []).append(f)
        f.get()
    try:
        return split(proxy, 1, section_func=_InSlices(parts))[0]
    except ValueError as e:
        if "no members" in str(e):
            raise ValueError(f"{proxy!r}[{key!r}] selects no inserted member: a section "
                             "needs at least one") from None
        raise


def local_keys_hook(coll, desc):
    """The keys of the section's members whose home is this PE."""
    info = charm._colls[coll]
    return _charmpy.section_local(info.proxy, _keys_of(desc))


def split(proxy, numsections, section_func=None, elems=None, **kwargs):
    """charm.split(proxy, n, section_func=None, elems=None): n sections of a
    collection (or section). elems: n lists of member indices.
    section_func(obj) -> the section number (0..n-1) of member obj, a list
    of them, or -1 or None for none; it runs on every member (so split
    waits: call it from a coroutine)."""
    if kwargs:
        raise TypeError(f"charm.split: unknown argument(s) {', '.join(kwargs)}")
    base = _base(proxy)
    n = int(numsections)
    if n < 1:
        raise ValueError("charm.split: numsections must be at least 1")
    if (section_func is None) == (elems is None):
        raise TypeError("charm.split: give either section_func or elems")
    within = proxy if isinstance(proxy, Section) else None
    if elems is not None:
        elems = list(elems)
        if len(elems) != n:
            raise ValueError(f"charm.split: elems has {len(elems)} lists for {n} sections")
        out = []
        for lst in elems:
            keys = sorted({_normalize(base, i) for i in lst})
            if within is not None:
                bad = [k for k in keys if k not in within]
                if bad:
                    raise ValueError(f"charm.split: {bad[:5]} are not members of {within!r}")
            out.append(_make(base, keys, "keys", tuple(keys)))
        return out
    # Every PE that may hold members (they move): a group's, or all.
    pes = _group_pes(base) if base.kind == GROUP else list(range(charm._npes))
    f = futures.Future(len(pes))
    for pe in pes:
        charm.send_msg(pe, "Z", base.coll, _dumps_func(section_func), f)
    found = [[] for _ in range(n)]
    for part in (f.get() if len(pes) > 1 else [f.get()]):
        for key, which in part:
            if within is not None and key not in within:
                continue
            for s in _which(which, n, key):
                found[s].append(key)
    return [_make(base, sorted(keys), "keys", tuple(sorted(keys))) for keys in found]


def _which(which, n, key):
    if which is None:
        return ()
    ws = which if isinstance(which, (list, tuple, set)) else (which,)
    out = []
    for w in ws:
        w = int(w)
        if w == -1:
            continue
        if not 0 <= w < n:
            raise ValueError(f"charm.split: section_func gave {w} for member {key!r}, not a "
                             f"section from 0 to {n - 1} (or -1 for none)")
        out.append(w)
    return out


def _dumps_func(f):
    try:
        return pickle.dumps(f, 5)
    except Exception:
        import cloudpickle
        return cloudpickle.dumps(f, 5)


def _on_split(coll, func, fut):
    """On a PE: section_func over the members homed here (elements that
    moved here answer from here; the keys are what counts)."""
    fn = pickle.loads(func)
    members = _charmpy.members(coll) or {}
    fut.send([(k, fn(obj)) for k, obj in members.items()])


def combine(*proxies):
    """charm.combine(*proxies): one section with the members of all, once
    each: sections, or collections' own proxies (every member). Of one
    collection: a Section; of several: a Combined, whose parts keep the
    order in which their collections came first."""
    if not proxies:
        raise TypeError("charm.combine needs at least one proxy")
    flat = []
    for p in proxies:
        flat.extend(p.parts if isinstance(p, Combined) else (p,))
    order, keys = [], {}
    for p in flat:
        base = _base(p)
        if base.coll not in keys:
            order.append(base)
            keys[base.coll] = set()
        if isinstance(p, Section):
            keys[base.coll].update(p.keys())
        elif base.kind == GROUP:
            keys[base.coll].update(_group_pes(base))
        elif base.sparse:
            keys[base.coll].update(_sparse_slice(base, (slice(None),) * base.ndims).keys())
        else:
            keys[base.coll].update(slice_hook(base, tuple(slice(None) for _ in base.dims)).keys())
    parts = []
    for base in order:
        ks = sorted(keys[base.coll])
        parts.append(_make(base, ks, "keys", tuple(ks)))
    return parts[0] if len(parts) == 1 else Combined(parts)


_charmpy.sect_setup(slice_hook, local_keys_hook)
charm.on_message("Z", _on_split, coll=True)
# A section that goes as an argument is encoded natively (codec.c T_REDUCE):
# its __reduce__'s arguments, not a pickle.
_charmpy.codec_reducible(Section, _received_section)
