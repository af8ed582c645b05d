"""Checkpoint/restart: charm.checkpoint(path, resume) and +restart PATH.

A checkpoint is a directory:
    PATH/CURRENT              the name of the complete version (replaced
                              atomically, last)
    PATH/v-<n>/manifest.json  format, version, PE count, collections, and
                              the size and CRC-32 of every file
    PATH/v-<n>/meta.pkl       the collections (their proxies, maps, flags,
                              sparse state), readonlies, reducers, resume
    PATH/v-<n>/pe-<k>.dat     the chares PE k held, written by PE k
A version is written under a new name and CURRENT is replaced only once
every file is on disk (fsync), so a crash or a killed PE while writing
leaves the previous checkpoint whole; older versions are removed after.

pe-<k>.dat: MAGIC, then records: an 8-byte length, the CRC-32 of the head
(4 bytes), the head (a pickle of (coll, key, length of the state's pickle,
lengths of its out-of-band buffers, CRC-32 of those bytes)), the state's
pickle (protocol 5), the buffers' bytes, each from an offset that is a
multiple of ALIGN (zeros before it). Big numpy arrays are written from
where they lie; a PE skips the records it does not take without reading
them, maps the file (private, copy on write) and checks the CRC of those it
takes: the arrays it rebuilds are views of the file's pages, read from the
disk once, copied only where written. The manifest also has every file's
size and CRC-32 (of all but the buffers, which the records' CRCs in the
heads cover). (Format 1 had no alignment and is refused.)

The protocol (PE 0 leads):
  checkpoint: "CKs" to PE 0; at quiescence PE 0 tells every PE to write
  ("CKw"); each answers with its file's figures ("CKd"); PE 0 writes the
  manifest and CURRENT, calls resume, and the caller's checkpoint() returns.
  restart: PE 0 checks CURRENT, the manifest and every file's size, then
  tells every PE to load ("CKl"), which checks the CRC of what it reads;
  each rebuilds its chares (arrays placed
  again by their maps for this PE count; a group's member from its saved
  state, or member 0's on a PE the checkpoint did not have; single chares
  on their PE modulo the PE count) and answers ("CKr"); PE 0 then calls
  resume."""
import json
import mmap
import os
import pickle
import shutil
import struct
import sys
import time
import zlib

from . import _charmpy
from .charm import charm

MAGIC = b"charmpy-checkpoint-data 2\n"
FORMAT, VERSION = "charmpy-checkpoint", 2
ALIGN = 64       # out-of-band buffers start at multiples of this in a data file
CHARE, GROUP, ARRAY = 0, 1, 2
_LEN = struct.Struct("<Q")
_CRC = struct.Struct("<I")

_job = {}        # on PE 0: the checkpoint or restart under way
busy = [False]   # on PE 0: a checkpoint or restart is under way (lb.py waits)


# ---- checkpoint ---------------------------------------------------------------
def checkpoint(path, resume=None):
    """charm.checkpoint(path, resume): wait for quiescence, write every chare
    to the directory `path`, then call `resume` (a proxy method, or None).
    In a coroutine (main, or a chare's @coro method)."""
    from .futures import Future
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"charm.checkpoint(path, resume): path is a directory name, not "
                        f"{path!r}")
    if resume is not None and not callable(resume):
        raise TypeError(f"charm.checkpoint(path, resume): resume is a proxy's entry method "
                        f"(e.g. self.thisProxy.resume) or None, not {resume!r}")
    f = Future()
    charm.send_msg(0, "CKs", os.path.abspath(os.fspath(path)), resume, f)
    err = f.get()
    if err is not None:
        raise RuntimeError(f"charm.checkpoint({os.fspath(path)!r}) failed: {err}")


def _on_start(path, resume, fut):
    if busy[0]:
        fut.send("another checkpoint or restart is under way")
        return
    try:
        os.makedirs(path, exist_ok=True)
        name = f"v-{time.time_ns()}"
        vdir = os.path.join(path, name)
        os.mkdir(vdir)
    except OSError as e:
        fut.send(f"cannot create the checkpoint directory: {e}")
        return
    busy[0] = True
    _job.clear()
    _job.update(path=path, name=name, vdir=vdir, resume=resume, fut=fut, files={},
                errors=[], t0=time.perf_counter())
    # Exclusive: a user's startQD/waitQD waiting at the same time is told at
    # the next quiescence, after every PE took its state (what it would send
    # cannot change the state while it is being written).
    _charmpy.qd_start(_quiet, True)


def _quiet():
    charm.send_msg(-1, "CKw", _job["vdir"])


def _records():
    """This PE's chares: (coll, key, state) of every member of every
    collection but the runtime's own (coll 0)."""
    for coll, info in list(charm._colls.items()):
        if coll == 0:
            continue
        for key, obj in (_charmpy.members(coll) or {}).items():
            yield coll, key, obj


def _dump(obj, bufs):
    """The pickle of obj's state: the object (without what @when holds for
    it, which travels as (method name, arguments) items; coroutines waiting
    in self.wait() are not saved), the runtime's attributes beside it."""
    held = obj.__dict__.pop("_charmpy_held", None)
    was = _charmpy.chan_moving(True)   # its channel ends are saved with it
    try:
        items = [(e[1].__name__,) + tuple(e[2:]) for e in held or () if e[0] == "when"]
        internal = {k: v for k, v in obj.__dict__.items()
                    if k.startswith("_charmpy_") or k in ("thisIndex", "migratable")}
        return pickle.dumps((obj, internal, items), 5, buffer_callback=bufs.append)
    finally:
        _charmpy.chan_moving(was)
        if held is not None:
            obj._charmpy_held = held


def _under_way():
    """A reduction (or AtSync barrier) this PE has contributions to and that
    did not finish: its state is not saved, so the checkpoint is refused."""
    for coll, info in charm._colls.items():
        for st in info.red.values():
            if st.pending or st.parts:
                return (f"a reduction of {info.cls.__name__} is under way (some members "
                        "contributed, others not yet): checkpoint when none is")
    return None


def _encoded():
    """This PE's records, ready to write: (head, state's pickle, buffers)
    each (the buffers are views of the chares' memory, not copies)."""
    out = []
    for coll, key, obj in _records():
        bufs = []
        try:
            main = _dump(obj, bufs)
        except Exception as e:
            from .migration import _name, _why
            raise _Refused(f"{_name(obj)} cannot be saved: {_why(obj, e)}") from None
        raws = [b.raw() for b in bufs]
        rcrc = zlib.crc32(main)
        for r in raws:
            rcrc = zlib.crc32(r, rcrc)
        out.append((pickle.dumps((coll, key, len(main), [r.nbytes for r in raws], rcrc), 5),
                    main, raws))
    return out


def _on_write(vdir):
    """Every PE: write pe-<k>.dat. The file's CRC-32 (in the manifest)
    covers all but the buffers, which their records' CRCs (in the heads)
    cover: the big data is checksummed once."""
    fname = f"pe-{charm._pe}.dat"
    nbytes, crc, nrec, err = 0, 0, 0, None
    try:
        under_way = _under_way()
        if under_way:
            raise _Refused(under_way)
        records = _encoded()
        with open(os.path.join(vdir, fname), "wb") as fh:
            _preallocate(fh, records)

            def put(b, check=True):
                nonlocal nbytes, crc
                fh.write(b)
                nbytes += len(b)
                if check:
                    crc = zlib.crc32(b, crc)
            put(MAGIC)
            for head, main, raws in records:
                put(_LEN.pack(len(head)))
                put(_CRC.pack(zlib.crc32(head)))
                put(head)
                put(main)
                for r in raws:
                    if nbytes % ALIGN:
                        put(bytes(ALIGN - nbytes % ALIGN))
                    put(r, False)
                nrec += 1
            fh.flush()
            os.fsync(fh.fileno())
    except _Refused as e:
        err = str(e)
    except OSError as e:
        err = f"PE {charm._pe} cannot write {fname}: {e}"
    if os.environ.get("CHARMPY_TEST_CKPT_DIE") == str(charm._pe):
        os._exit(9)    # the tests' PE killed while a checkpoint is written
    from . import futures
    charm.send_msg(0, "CKd", charm._pe, fname, nbytes, crc, nrec, err, _collections(),
                   futures._last_fid)


def _preallocate(fh, records):
    """Reserve the file's blocks before writing: with every PE writing at
    once, ext4's delayed allocation made the writes 2-4x slower here. Best
    effort (a file system without fallocate just writes)."""
    size = len(MAGIC)
    for head, main, raws in records:
        size = _places(size + _LEN.size + _CRC.size + len(head) + len(main),
                       [r.nbytes for r in raws])[-1]
    try:
        os.posix_fallocate(fh.fileno(), 0, size)
    except (OSError, AttributeError):
        pass


class _Refused(Exception):
    pass


def _collections():
    """This PE's collections (a single chare or a constrained group is known
    only where it has members), in the order they were made here."""
    out = []
    for coll, info in charm._colls.items():
        if coll == 0:
            continue
        p = info.proxy
        out.append({"coll": coll, "kind": p.kind, "cls": info.cls, "pe": p.pe,
                    "dims": p.dims, "ndims": p.ndims, "map": p.map, "pes": p.pes,
                    "flags": info.flags, "sparse": info.sparse, "done": info.done})
    return out


def _on_written(pe, fname, nbytes, crc, nrec, err, colls, last_fid):
    """PE 0: one PE's file is written; once all are, the manifest and CURRENT."""
    j = _job
    j["files"][fname] = {"bytes": nbytes, "crc32": crc, "records": nrec}
    j.setdefault("colls", {})[pe] = colls
    j["last_fid"] = max(j.get("last_fid", 0), last_fid)
    if err:
        j["errors"].append(err)
    if len(j["files"]) < charm._npes:
        return
    fut = j["fut"]
    try:
        if j["errors"]:
            raise _Refused("; ".join(sorted(j["errors"])))
        _write_meta(j)
        _publish(j["path"], j["name"])
    except (_Refused, OSError) as e:
        shutil.rmtree(j["vdir"], ignore_errors=True)
        busy[0] = False
        fut.send(str(e))
        return
    busy[0] = False
    if _debug():
        total = sum(f["bytes"] for f in j["files"].values())
        sys.stderr.write(f"charmpy: checkpoint {j['path']} ({j['name']}): {total} bytes from "
                         f"{charm._npes} PEs in {time.perf_counter() - j['t0']:.3f} s\n")
    if j["resume"] is not None:
        j["resume"]()
    fut.send(None)


def _debug():
    return bool(os.environ.get("CHARMPY_CKPT_DEBUG"))


def _write_meta(j):
    from . import chare, reduction
    from .readonly import readonlies
    # PE 0's order first (an ArrayMap group comes before its arrays), then
    # what only other PEs had.
    colls, seen = [], set()
    for pe in sorted(j["colls"]):
        for c in j["colls"][pe]:
            if c["coll"] not in seen:
                seen.add(c["coll"])
                colls.append(c)
    meta = {"colls": colls, "readonlies": dict(vars(readonlies)),
            "reducers": sorted(reduction._registry), "resume": j["resume"],
            "ncreated": chare._ncreated, "last_fid": j["last_fid"]}
    try:
        blob = pickle.dumps(meta, 5)
    except Exception as e:
        raise _Refused(f"the checkpoint's description cannot be pickled (readonlies, "
                       f"resume): {e}") from None
    _write_file(os.path.join(j["vdir"], "meta.pkl"), blob)
    manifest = {
        "format": FORMAT, "version": VERSION, "npes": charm._npes,
        "program": os.path.basename(sys.argv[0]) if sys.argv else "",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "collections": [{"id": c["coll"], "kind": ("chare", "group", "array")[c["kind"]],
                         "class": f"{c['cls'].__module__}.{c['cls'].__qualname__}"}
                        for c in colls],
        "files": dict(j["files"], **{"meta.pkl": {"bytes": len(blob),
                                                  "crc32": zlib.crc32(blob)}}),
    }
    _write_file(os.path.join(j["vdir"], "manifest.json"),
                json.dumps(manifest, indent=1, sort_keys=True).encode())


def _write_file(fname, data):
    with open(fname, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _publish(path, name):
    """CURRENT names the new version (atomically); older versions go."""
    tmp = os.path.join(path, "CURRENT.tmp")
    _write_file(tmp, (name + "\n").encode())
    os.replace(tmp, os.path.join(path, "CURRENT"))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for other in os.listdir(path):
        if other.startswith("v-") and other != name:
            shutil.rmtree(os.path.join(path, other), ignore_errors=True)


# ---- restart ------------------------------------------------------------------
def restart_path():
    """+restart PATH or --restart PATH (removed from sys.argv), or None."""
    path = charm._flags.get("+restart")
    argv = sys.argv
    for i, a in enumerate(argv):
        if a == "--restart" and i + 1 < len(argv):
            path = argv[i + 1]
            del argv[i:i + 2]
            break
        if a.startswith("--restart="):
            path = a.split("=", 1)[1]
            del argv[i]
            break
    return path


def _refuse(path, why):
    charm.abort(f"cannot restart from {path!r}: {why}")


def restart_begin(path):
    """PE 0, instead of the program's entry: check the checkpoint, then
    every PE loads its chares."""
    busy[0] = True
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        return _refuse(path, "no such directory (a checkpoint is the directory given to "
                             "charm.checkpoint)")
    try:
        with open(os.path.join(path, "CURRENT")) as fh:
            name = fh.read().strip()
    except OSError:
        return _refuse(path, "no CURRENT file: not a charmpy checkpoint, or one whose "
                             "first write did not finish")
    vdir = os.path.join(path, name)
    try:
        with open(os.path.join(vdir, "manifest.json")) as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as e:
        return _refuse(path, f"its manifest is missing or unreadable ({e}): the checkpoint "
                             "is partial or corrupt")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return _refuse(path, "its manifest is not a charmpy checkpoint's (foreign)")
    if manifest.get("version") != VERSION:
        return _refuse(path, f"format version {manifest.get('version')!r}, this charmpy "
                             f"reads version {VERSION}")
    files = manifest.get("files")
    if (not isinstance(files, dict) or not isinstance(manifest.get("npes"), int)
            or "meta.pkl" not in files or not all(isinstance(f, dict) for f in files.values())):
        return _refuse(path, "its manifest lacks the PE count or the list of files: "
                             "partial or corrupt")
    for fname, want in sorted(files.items()):
        # Sizes here; the bytes are checked as they are read (the CRC of every
        # record, and of meta.pkl).
        try:
            n = os.path.getsize(os.path.join(vdir, fname))
        except OSError:
            return _refuse(path, f"{fname} is missing: the checkpoint is partial")
        if n != want.get("bytes"):
            return _refuse(path, f"{fname} is corrupt ({n} bytes; the manifest says "
                                 f"{want.get('bytes')}): the checkpoint is partial or "
                                 "damaged")
    for k in range(manifest.get("npes", 0)):
        if f"pe-{k}.dat" not in files:
            return _refuse(path, f"the manifest lists no pe-{k}.dat: partial")
    _job.clear()
    _job.update(path=path, loaded=0, t0=time.perf_counter(),
                bytes=sum(f.get("bytes", 0) for f in files.values()))
    charm.send_msg(-1, "CKl", vdir, int(manifest["npes"]), files["meta.pkl"]["crc32"])


def _corrupt(fname, what):
    charm.abort(f"cannot restart: {os.path.basename(fname)} is corrupt ({what}): the "
                "checkpoint is damaged")


def _on_load(vdir, old_npes, meta_crc):
    """Every PE: rebuild its chares from the checkpoint (any failure ends
    the job saying why)."""
    try:
        _load_all(vdir, old_npes, meta_crc)
    except Exception as e:
        charm.abort(f"cannot restart from {os.path.dirname(vdir)!r}: rebuilding the chares "
                    f"on PE {charm._pe} failed ({type(e).__name__}: {e}); is it the same "
                    "program, with the same classes, as the one that wrote the checkpoint?")


def _load_all(vdir, old_npes, meta_crc):
    from . import chare, reduction
    from .chare import Collection
    from .readonly import readonlies
    with open(os.path.join(vdir, "meta.pkl"), "rb") as fh:
        blob = fh.read()
    if zlib.crc32(blob) != meta_crc:
        return _corrupt("meta.pkl", "its CRC-32 is not the manifest's")
    meta = pickle.loads(blob)
    missing = [r for r in meta["reducers"] if r not in reduction._registry]
    if missing:
        charm.abort(f"cannot restart: the checkpoint's reducers {missing} are not registered "
                    "(call Reducer.addReducer at module level, on every PE)")
    for name, value in meta["readonlies"].items():
        object.__setattr__(readonlies, name, value)
    from . import futures
    futures._last_fid = max(futures._last_fid, meta["last_fid"])
    chare._ncreated = max(chare._ncreated, meta["ncreated"],
                          max([c["coll"] & ((1 << 40) - 1) for c in meta["colls"]] or [0]))
    index = _read_index(vdir, old_npes)
    npes, me = charm._npes, charm._pe
    maps = {}
    for c in meta["colls"]:
        coll, kind = c["coll"], c["kind"]
        pes = c["pes"]
        if pes is not None:
            pes = tuple(p for p in pes if p < npes) or (0,)
        pe = c["pe"] % npes if kind == CHARE else c["pe"]
        proxy = _charmpy.Proxy(coll, kind, c["cls"], pe, c["dims"], None, c["ndims"],
                               c["map"], pes)
        recs = index.get(coll, {})
        if kind == CHARE:
            where = (pe,)
            take = {0: recs[0]} if pe == me and 0 in recs else {}
        elif kind == GROUP:
            where = pes or tuple(range(npes))
            take = {}
            if me in where:
                src = recs.get(me) or recs.get(0) or next(iter(recs.values()), None)
                if src is not None:
                    take[me] = src
        else:
            _charmpy.loc_create(proxy)
            homes = {key: _charmpy.loc_home(proxy, key) for key in recs}
            where = tuple(sorted(set(homes.values()))) or (0,)
            if not c["sparse"]:
                where = _charmpy.dense_layout(proxy)[1]
            take = {key: r for key, r in recs.items() if homes[key] == me}
        info = charm._colls[coll] = Collection(proxy, where if not c["sparse"] or c["done"]
                                               else None, len(take), c["flags"])
        if kind != ARRAY:
            _charmpy.loc_create(proxy)
        members = {}
        for key, rec in take.items():
            obj = _load(maps, rec)
            obj.thisProxy = proxy
            if kind == GROUP:
                obj.thisIndex = me
            members[me if kind == GROUP else key] = obj
        _charmpy.loc_register(coll, members, False)
        if c["sparse"] and c["done"]:
            info.done = True
            _charmpy.loc_done(coll)
            if me == 0:
                info.total = len(recs)
        for obj in members.values():
            reduction.member_arrived(info, obj)
        chare.released(coll)
    charm.send_msg(0, "CKr", me)


def _read_index(vdir, old_npes):
    """coll -> key -> (file, offset of the state, its length, buffer lengths)."""
    index = {}
    for k in range(old_npes):
        fname = os.path.join(vdir, f"pe-{k}.dat")
        with open(fname, "rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                charm.abort(f"cannot restart: {fname} is not a charmpy checkpoint file")
            while True:
                b = fh.read(_LEN.size + _CRC.size)
                if not b:
                    break
                if len(b) < _LEN.size + _CRC.size:
                    _corrupt(fname, "it ends inside a record")
                (hl,), (hcrc,) = _LEN.unpack(b[:_LEN.size]), _CRC.unpack(b[_LEN.size:])
                head = fh.read(hl) if hl < 1 << 20 else b""
                if len(head) != hl or zlib.crc32(head) != hcrc:
                    _corrupt(fname, f"a record's head at byte {fh.tell() - len(head)}")
                coll, key, ml, bls, rcrc = pickle.loads(head)
                off = fh.tell()
                index.setdefault(coll, {})[key] = (fname, off, ml, bls, rcrc)
                fh.seek(_places(off + ml, bls)[-1], os.SEEK_SET)
    return index


def _places(at, bls):
    """The offsets of buffers of lengths bls written from offset `at` on
    (each aligned), and the offset after the last."""
    out = []
    for n in bls:
        at += -at % ALIGN
        out.append(at)
        at += n
    return out + [at]


def _mapped(maps, fname):
    """The data file, mapped once per restart (private: writing to an array
    copies its page). A restored chare's buffers are views of these pages:
    reading them into fresh memory instead took a page fault per 4 KiB on
    top of the page cache's own pages (half of dd's bandwidth here). A
    mapping lives as long as a view of it (a version removed later stays
    on disk until then)."""
    m = maps.get(fname)
    if m is None:
        with open(fname, "rb") as fh:
            m = maps[fname] = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    return m


def _load(maps, rec):
    fname, off, ml, bls, rcrc = rec
    places = _places(off + ml, bls)
    m = _mapped(maps, fname)
    if len(m) < places[-1]:
        _corrupt(fname, f"the record of a chare at byte {off} is cut short")
    main = m[off:off + ml]
    crc = zlib.crc32(main)
    whole = memoryview(m)
    bufs = []
    for at, n in zip(places, bls):
        b = whole[at:at + n]
        crc = zlib.crc32(b, crc)
        bufs.append(b)
    if crc != rcrc:
        _corrupt(fname, f"the record of a chare at byte {off} does not match its CRC-32")
    obj, internal, items = pickle.loads(main, buffers=bufs)
    obj.__dict__.update(internal)
    # Coroutines, moves and reductions under way are not saved: a restored
    # chare starts with none (its reduction counters from 0, as everywhere).
    for k in ("_charmpy_ncoro", "_charmpy_migrate_to", "_charmpy_lb_move", "_charmpy_held",
              "_charmpy_redk"):
        obj.__dict__.pop(k, None)
    if items:
        held = obj.__dict__.setdefault("_charmpy_held", [])
        for name, args, kwargs, reply, flags in items:
            held.append(("when", getattr(obj, name), args, kwargs, reply, flags))
        _charmpy.held[id(obj)] = obj
    return obj


def _on_loaded(pe):
    _job["loaded"] += 1
    if _job["loaded"] < charm._npes:
        return
    busy[0] = False
    if _debug():
        dt = time.perf_counter() - _job["t0"]
        sys.stderr.write(f"charmpy: restart from {_job['path']}: {_job['bytes']} bytes on "
                         f"{charm._npes} PEs in {dt:.3f} s\n")
    with open(os.path.join(_job["path"], "CURRENT")) as fh:
        name = fh.read().strip()
    with open(os.path.join(_job["path"], name, "meta.pkl"), "rb") as fh:
        resume = pickle.load(fh)["resume"]
    if resume is not None:
        resume()


charm.on_message("CKs", _on_start)
charm.on_message("CKw", _on_write)
charm.on_message("CKd", _on_written)
charm.on_message("CKl", _on_load)
charm.on_message("CKr", _on_loaded)
