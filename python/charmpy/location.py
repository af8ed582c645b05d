"""The Python face of the location service (python/ext/location.c, which
routes, holds and forwards messages): building sparse array elements where
their insertion arrives, and ckDoneInserting.

ckDoneInserting waits for every insertion made before it reached each PE,
whatever path they take: it tells every PE ("D"); each, once the messages
it routes through itself have left (loc_after_routed), tells PE 0 how many
insertions it sent to each PE ("S"); PE 0 tells every PE how many to expect
("E"). A PE where they have all arrived is done: messages held for
elements never inserted fail, and it tells PE 0 how many elements it holds
("C"); PE 0 then tells every PE which PEs hold any ("P"), among which the
array's reductions run."""
from . import _charmpy, readonly, reduction
from .charm import charm


def on_insert(coll, index, args, readonlies):
    """An insertion arrived on the PE where the element will live (the
    insert hook): construct it (once the readonlies its inserter had seen
    are here), then make it reachable."""
    from .chare import construct, new_member
    info = charm._colls[coll]
    info.nlocal += 1
    info.inserted += 1
    obj = new_member(info.cls, info.proxy, index)
    reduction.member_arrived(info, obj)
    readonly.after(readonlies, lambda: construct(
        [obj], args, lambda: _charmpy.loc_add(coll, index, obj),
        lambda: _charmpy.loc_release(coll, index), lambda: None))
    _check_done(coll)


done_called = set()     # the sparse arrays whose ckDoneInserting ran on this PE


def done_inserting(coll):
    """proxy.ckDoneInserting() (the done_inserting hook)."""
    done_called.add(coll)
    for pe in range(charm._npes):
        charm.send_msg(pe, "D", coll)


def _on_done(coll):
    _charmpy.loc_after_routed(coll)


def routed(coll):
    """The routed hook: this PE's insertions before ckDoneInserting left."""
    charm.send_msg(0, "S", coll, charm._pe, _charmpy.loc_sent(coll))


_reports = {}   # on PE 0: coll -> [PEs that reported, insertions sent to each PE]


def _on_sent(coll, pe, sent):
    rec = _reports.setdefault(coll, [0, [0] * charm._npes])
    rec[0] += 1
    rec[1] = [a + b for a, b in zip(rec[1], sent)]
    if rec[0] == charm._npes:
        del _reports[coll]
        for p in range(charm._npes):
            charm.send_msg(p, "E", coll, rec[1][p])


def _on_expect(coll, n):
    charm._colls[coll].expected = n
    _check_done(coll)


def _check_done(coll):
    info = charm._colls[coll]
    if info.done or info.expected is None or info.inserted < info.expected:
        return
    info.done = True
    _charmpy.loc_done(coll)
    charm.send_msg(0, "C", coll, charm._pe, info.nlocal)


_counts = {}   # on PE 0: coll -> {pe: members} after ckDoneInserting


def _on_count(coll, pe, n):
    counts = _counts.setdefault(coll, {})
    counts[pe] = n
    if len(counts) == charm._npes:
        del _counts[coll]
        charm._colls[coll].total = sum(counts.values())
        pes = tuple(p for p in range(charm._npes) if counts[p]) or (0,)
        charm.send_msg(-1, "P", coll, pes)


charm.on_message("D", _on_done, coll=True)
charm.on_message("S", _on_sent)
charm.on_message("E", _on_expect, coll=True)
charm.on_message("C", _on_count, coll=True)
charm.on_message("P", reduction.set_participants, coll=True)
