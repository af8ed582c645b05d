"""The Python face of the location service (python/ext/location.c, which
routes, holds and forwards messages): building sparse array elements where
their insertion arrives, and ckDoneInserting.

ckDoneInserting tells every PE ("D"); each tells PE 0 how many elements it
holds ("C"), and PE 0 tells every PE which PEs hold any ("P"): the sparse
array's reductions run among those."""
from . import _charmpy, reduction
from .charm import charm


def on_insert(coll, index, args):
    """An insertion arrived on the PE where the element will live (the
    insert hook): construct it, then make it reachable."""
    from .chare import construct, new_member
    info = charm._colls[coll]
    obj = new_member(info.cls, info.proxy, index)
    info.nlocal += 1
    construct([obj], args, lambda: _charmpy.loc_add(coll, index, obj), lambda: None)


def done_inserting(coll):
    """ckDoneInserting of sparse array coll (the done_inserting hook, run
    once this PE's insertions have left): each PE is told directly, so that
    the message follows this PE's insertions to it."""
    for pe in range(charm._npes):
        charm.send_msg(pe, "D", coll)


def _on_done(coll):
    _charmpy.loc_done(coll)
    charm.send_msg(0, "C", coll, charm._pe, charm._colls[coll].nlocal)


_counts = {}   # on PE 0: coll -> {pe: members} after ckDoneInserting


def _on_count(coll, pe, n):
    counts = _counts.setdefault(coll, {})
    counts[pe] = n
    if len(counts) == charm._npes:
        del _counts[coll]
        pes = tuple(p for p in range(charm._npes) if counts[p]) or (0,)
        charm.send_msg(-1, "P", coll, pes)


charm.on_message("D", _on_done, coll=True)
charm.on_message("C", _on_count, coll=True)
charm.on_message("P", reduction.set_participants, coll=True)
