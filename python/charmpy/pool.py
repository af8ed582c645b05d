"""charm.pool: a parallel map and tasks over every PE, PE 0 included.

A job lives on the PE that submitted it, its owner. The owner reads the
iterable lazily, sends chunks of items straight to the PEs that run them,
PREFETCH chunks in flight for each (demand-driven: a PE gets its next chunk
when it returns one, so uneven tasks balance), and the results come
straight back to it. No PE schedules for the others and no argument or
result passes through a third PE. The owner is a worker too: its own
chunks are runtime messages to itself, so between two of them it handles
results and sends more. The function travels once per job and worker
(pickled by reference when it can be, else by cloudpickle: lambdas,
closures); each chunk carries only its items.

Memory is bounded by the work in flight: the iterable is read only as
chunks are sent, and imap/imap_unordered send nothing more while `window`
results (64 per worker, or twice the items of the chunks in flight when
they are bigger) wait for the consumer. Several jobs run at once: a job with
ncores=k runs on the k PEs this PE loads least (with the items of its jobs
there, as counted when they started).

Runtime messages (charm.send_msg): pJ (a job's function, to a worker), pT
(a chunk), pR (its results), pE (a task raised), pX (the job ended), pS (one
task: submit/Task) and pD (its result)."""
import itertools
import os
import pickle
import sys
import time
import types
from collections import deque

from . import _charmpy, coro, futures
from .charm import charm
from .errors import remote_exception, report_error

PREFETCH = 2              # chunks in flight per worker and job
AUTO_START = 1            # chunksize='auto': the first chunks' size
AUTO_TARGET = 0.002       # ... then chunks of about this many seconds of work
UNKNOWN_LENGTH = 1000     # the items a job over an iterable without len() counts as
WINDOW_PER_WORKER = 64    # imap: items sent and not yet consumed, per worker (at
                          # least; twice the chunks in flight with big chunks)

_jobs = {}                # jid -> _Job owned by this PE
_singles = {}             # tid -> (future or None, pe): submit/Task of this PE
_ids = itertools.count(1)
_load = {}                # pe -> items of this PE's jobs (and single tasks) there
_funcs = {}               # (owner, jid) -> (func, nested): the jobs this PE works for
_by_ref = {}              # plain function -> its pickle (a reference)
_loaded = {}              # a reference's pickle -> func, on workers (bounded)


# ---- sending ---------------------------------------------------------------
def _send(pe, tag, *args):
    """A pool message to PE pe; to this PE, through the scheduler's queue
    without encoding (the values by reference, as calls between chares of
    one PE: charm.options.local_msg_optim)."""
    if pe == charm._pe and charm.options.local_msg_optim:
        _charmpy.call_soon(_HANDLERS[tag], args)
    else:
        charm.send_msg(pe, tag, *args)


# ---- functions -----------------------------------------------------------
def _dump_func(func):
    """(func's pickle, whether it is a reference): by reference when pickle
    can (module-level functions, __main__'s too: every PE runs the
    program), else by value (cloudpickle: lambdas, closures). Only plain
    functions' references are cached, here and on the workers: a bound
    method, a partial or a callable object pickles its state, which may
    change between jobs, and may be big."""
    if not callable(func):
        raise TypeError(f"charm.pool: the function to run must be callable, not {func!r}")
    plain = isinstance(func, (types.FunctionType, types.BuiltinFunctionType))
    cached = _by_ref.get(func) if plain else None
    if cached is not None:
        return cached, True
    try:
        data = pickle.dumps(func, 5)
        if plain:
            if len(_by_ref) >= 1024:
                _by_ref.clear()
            _by_ref[func] = data
        return data, plain
    except Exception as e:
        why = e
    try:
        import cloudpickle
    except ImportError:
        raise TypeError(f"charm.pool: {func!r} cannot be pickled by reference ({why}) and "
                        "cloudpickle, which sends lambdas and closures, is not installed: "
                        "pip install cloudpickle") from None
    try:
        return cloudpickle.dumps(func, 5), False
    except Exception as e:
        raise TypeError(f"charm.pool: {func!r} cannot be sent to the other PEs: "
                        f"{type(e).__name__}: {e}") from None


def _load_func(data, ref):
    func = _loaded.get(data) if ref else None
    if func is None:
        func = pickle.loads(data)
        if ref:
            if len(_loaded) >= 256:
                _loaded.clear()
            _loaded[data] = func
    return func


def _nested(func, allow_nested):
    return bool(allow_nested) or getattr(func, "_charmpy_coro", False)


def _check_running(what):
    if not charm.started:
        raise RuntimeError(f"charm.pool.{what}() needs the runtime: call it from the main "
                           "function given to charm.start(), or from a coroutine")


def _pes_for(ncores):
    """The PEs of a job of up to ncores PEs (-1: all), least loaded by this
    PE's jobs first (the items of each there, a single task 1), this PE
    first among equals, then the next ones."""
    n = charm._npes
    if ncores is None:
        ncores = -1
    if not isinstance(ncores, int) or isinstance(ncores, bool) or ncores == 0 or ncores < -1:
        raise ValueError(f"charm.pool: ncores must be -1 (every PE) or a number of PEs of "
                         f"at least 1 (up to {n} here: more means every PE), not {ncores!r}")
    me = charm._pe
    order = sorted(range(n), key=lambda pe: (_load.get(pe, 0), (pe - me) % n))
    return order if ncores == -1 else order[:ncores]


def _chunksize(chunksize):
    if chunksize == "auto":
        return None
    if not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1:
        raise ValueError(f"charm.pool: chunksize must be a positive int or 'auto', not "
                         f"{chunksize!r}")
    return chunksize


# ---- a job (map, map_async, imap, imap_unordered) on its owner ------------
class _Job:
    def __init__(self, func, iterable, chunksize, ncores, kind, nested, progress):
        data, ref = _dump_func(func)
        self.cs = _chunksize(chunksize)
        self.auto = self.cs is None
        if self.auto:
            self.cs = AUTO_START
        try:
            self.total = len(iterable)
        except TypeError:
            self.total = None
        self.it = iter(iterable)
        self.jid = next(_ids)
        self.pes = _pes_for(ncores)
        # What it adds to the load of each of its PEs (for the placement of
        # the next jobs): its share of the items, when their number is known.
        self.weight = -(-(self.total if self.total is not None else UNKNOWN_LENGTH)
                        // len(self.pes))
        self.kind = kind                # "map", "imap", "unordered", "multi"
        self.sent = 0                   # items sent
        self.consumed = 0               # imap: results the consumer took
        self.inflight = {pe: 0 for pe in self.pes}
        self.exhausted = False
        self.stalled = False            # imap: sending waits for the consumer
        self.exc = None
        self.fail_at = None             # the index of the item that failed it
        self.ended = False
        self.window = None if kind in ("map", "multi") else WINDOW_PER_WORKER * len(self.pes)
        self.chunks = {}                # map: start -> results
        self.ready = {} if kind == "imap" else deque()
        self.futures = None             # multi: one future per item
        self.future = None              # map: the job's future
        self.waiter = None              # imap: the consumer's coroutine
        self.busy = 0.0                 # auto: seconds of work measured
        self.measured = 0               # ... over this many items
        self.bar = _progress_bar(progress, self.total)
        _jobs[self.jid] = self
        for pe in self.pes:
            _load[pe] = _load.get(pe, 0) + self.weight
            _send(pe, "pJ", charm._pe, self.jid, data, ref, nested)

    def start(self):
        # One chunk to each PE, then the second: a job of P items runs on P PEs.
        for upto in range(1, PREFETCH + 1):
            for pe in self.pes:
                self.fill(pe, upto)
        self.check_end()

    def fill(self, pe, upto=PREFETCH):
        """Send pe chunks until it has `upto` in flight, or nothing is left.
        This PE gets one at a time: its chunks wait in its own queue, where
        the scheduler runs them all before it looks for messages again, so
        two of them would keep the other PEs' results waiting for two tasks
        (and those PEs idle: 1 ms tasks lost 5-8% to it)."""
        if pe == charm._pe:
            upto = 1
        while not self.exhausted and self.exc is None and self.inflight[pe] < upto:
            if self.window is not None and self.sent - self.consumed >= self.limit():
                self.stalled = True
                return
            try:
                chunk = list(itertools.islice(self.it, self.cs))
            except BaseException as e:   # the iterable raised
                self.fail(remote_exception(e, "the iterable given to charm.pool"), None)
                return
            if not chunk:
                self.exhausted = True
                if self.total is None:
                    self.total = self.sent
                return
            try:
                _send(pe, "pT", charm._pe, self.jid, self.sent, chunk)
            except Exception as e:
                self.fail(TypeError(f"charm.pool: items {self.sent} to "
                                    f"{self.sent + len(chunk) - 1} cannot be sent to PE {pe}: "
                                    f"{e}"), None)
                return
            self.inflight[pe] += 1
            self.sent += len(chunk)

    def limit(self):
        return max(self.window, 2 * (PREFETCH + 1) * len(self.pes) * self.cs)

    def results(self, pe, start, values, secs):
        self.inflight[pe] -= 1
        if self.exc is not None and self.kind in ("imap", "unordered"):
            # Failed: what was computed before the failing item is still given.
            self.keep(start, values)
            self.wake()
        elif self.exc is None:
            if self.kind == "map":
                self.chunks[start] = values
            elif self.kind == "multi":
                for i, v in enumerate(values):
                    self.futures[start + i]._deliver(None, v, None)
            else:
                self.keep(start, values)
            if self.auto:
                self.tune(len(values), secs)
            if self.bar is not None:
                self.bar.update(len(values))
            self.fill(pe)
            self.wake()
        self.check_end()

    def keep(self, start, values):
        if self.kind == "imap":
            for i, v in enumerate(values):
                self.ready[start + i] = v
        else:
            self.ready.extend(values)

    def tune(self, n, secs):
        """chunksize='auto': chunks of about AUTO_TARGET seconds, but no
        bigger than a share of what is left (so the end stays balanced)."""
        self.busy += secs
        self.measured += n
        per = self.busy / self.measured
        cs = int(AUTO_TARGET / per) if per > 0 else 1 << 20
        if self.total is not None:
            left = max(1, (self.total - self.sent) // (2 * PREFETCH * len(self.pes)))
            cs = min(cs, left)
        # imap keeps a window of twice the chunks in flight: smaller chunks.
        self.cs = max(1, min(cs, 1 << 16 if self.window is None else 1024))

    def fail(self, exc, pe, index=None):
        if pe is not None:
            self.inflight[pe] -= 1
        if self.exc is None:
            self.exc = exc
            self.fail_at = self.sent if index is None else index
            if self.kind == "map":
                self.future._deliver(None, None, exc)
            elif self.kind == "multi":
                for f in self.futures:
                    if not f.ready():
                        f._deliver(None, None, exc)
            self.wake()
        self.check_end()

    def wake(self):
        g = self.waiter
        if g is not None:
            self.waiter = None
            coro.resume(g)

    def check_end(self):
        """The job ends when every chunk sent came back (after an error too:
        then the remaining results are dropped)."""
        if self.ended or any(self.inflight.values()):
            return
        if self.exc is None and not self.exhausted:
            return
        self.ended = True
        del _jobs[self.jid]
        for pe in self.pes:
            _load[pe] -= self.weight
            _send(pe, "pX", charm._pe, self.jid)
        if self.bar is not None:
            self.bar.close()
        if self.exc is None and self.kind == "map":
            out = []
            for start in sorted(self.chunks):
                out.extend(self.chunks[start])
            self.chunks = None
            self.future._deliver(None, out, None)
        self.wake()

    def next_result(self):
        """imap's iterator: the next result (in order for imap, as they come
        for imap_unordered), waiting in the consumer's coroutine."""
        while True:
            if self.kind == "imap":
                if self.consumed in self.ready:
                    v = self.ready.pop(self.consumed)
                    return self.took(v)
                # The items before the failing one come first, once here.
                if self.exc is not None and (self.consumed >= self.fail_at or self.ended):
                    raise self.exc
            elif self.ready:
                return self.took(self.ready.popleft())
            elif self.exc is not None:
                raise self.exc
            if self.ended or (self.exhausted and self.consumed >= self.sent):
                raise StopIteration
            self.waiter = coro.this("iterating over charm.pool.imap()")
            coro.suspend()

    def took(self, v):
        self.consumed += 1
        # Sending stopped at the window: it goes on once half of it is free.
        if self.stalled and self.sent - self.consumed <= self.limit() // 2:
            self.stalled = False
            if self.exc is None:
                for pe in self.pes:
                    self.fill(pe)
                self.check_end()
        return v


class _Results:
    """What imap and imap_unordered return: an iterator of the job's
    results, read in a coroutine. Closing it, or dropping it, read or not,
    cancels what is left of the job."""

    def __init__(self, job):
        self._job = job

    def __iter__(self):
        return self

    def __next__(self):
        return self._job.next_result()

    def close(self):
        job = self._job
        if not job.ended and job.exc is None:
            job.exc = RuntimeError("the imap iterator was closed")
            job.fail_at = job.consumed
            job.check_end()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# ---- the messages ------------------------------------------------------------
def _on_job(owner, jid, data, ref, nested):
    try:
        func = _load_func(data, ref)
    except BaseException as e:
        func = e
    _funcs[(owner, jid)] = (func, nested)


def _on_tasks(owner, jid, start, items):
    entry = _funcs.get((owner, jid))
    if entry is None:
        return
    func, nested = entry
    if nested:
        g = coro.Coroutine(lambda: _run_chunk(owner, jid, start, items, func), None,
                           "charm.pool task")
        g.switch()
        coro._after_run(g)
    else:
        _run_chunk(owner, jid, start, items, func)


def _run_chunk(owner, jid, start, items, func):
    me = charm._pe
    t0 = time.perf_counter()
    if isinstance(func, BaseException):
        _send_error(owner, jid, start, items[0], func, "unpickling the function")
        return
    out = []
    for i, x in enumerate(items):
        try:
            out.append(func(x))
        except BaseException as e:
            _send_error(owner, jid, start + i, x, e, f"task {start + i}")
            return
    try:
        _send(owner, "pR", jid, me, start, out, time.perf_counter() - t0)
    except Exception as e:
        _send_error(owner, jid, start, items[0], TypeError(
            f"the results of tasks {start} to {start + len(items) - 1} cannot be sent back: "
            f"{e}"), f"task {start}")


def _item_text(item):
    try:
        text = repr(item)
    except Exception:
        text = f"<{type(item).__name__}>"
    return text if len(text) <= 200 else text[:197] + "..."


def _send_error(owner, jid, index, item, exc, what):
    exc = remote_exception(exc, f"charm.pool {what} on PE {charm._pe}")
    note = f"in charm.pool: the task of item {index} ({_item_text(item)}) raised it"
    try:
        exc.__notes__ = list(getattr(exc, "__notes__", ())) + [note]
        exc.pool_index = index
    except Exception:
        pass
    try:
        _send(owner, "pE", jid, charm._pe, index, exc)
    except Exception:
        _send(owner, "pE", jid, charm._pe, index,
                       RuntimeError(f"{type(exc).__name__}: {exc} ({note})"))


def _on_results(jid, pe, start, values, secs):
    job = _jobs.get(jid)
    if job is not None:
        job.results(pe, start, values, secs)


def _on_error(jid, pe, index, exc):
    job = _jobs.get(jid)
    if job is not None:
        job.fail(exc, pe, index)


def _on_end(owner, jid):
    _funcs.pop((owner, jid), None)


# ---- single tasks (submit, Task) ----------------------------------------------
def _submit(func, args, kwargs, want, nested):
    _check_running("submit")
    data, ref = _dump_func(func)
    tid = next(_ids)
    pe = _pes_for(1)[0]
    try:
        _send(pe, "pS", charm._pe, tid, data, ref, tuple(args), kwargs or None, nested)
    except Exception as e:
        raise TypeError(f"charm.pool: the arguments of {func!r} cannot be sent to PE {pe}: "
                        f"{e}") from None
    f = futures.Future() if want else None
    _singles[tid] = (f, pe)
    _load[pe] = _load.get(pe, 0) + 1
    return f


def _on_single(owner, tid, data, ref, args, kwargs, nested):
    def run():
        try:
            func = _load_func(data, ref)
            value = func(*args, **(kwargs or {}))
        except BaseException as e:
            exc = remote_exception(e, f"a charm.pool task on PE {charm._pe}")
            _send(owner, "pD", tid, None, exc)
            return
        try:
            _send(owner, "pD", tid, value, None)
        except Exception as e:
            _send(owner, "pD", tid, None, TypeError(
                f"the result of a charm.pool task cannot be sent back: {e}"))
    if nested:
        g = coro.Coroutine(run, None, "charm.pool task")
        g.switch()
        coro._after_run(g)
    else:
        run()


def _on_single_done(tid, value, exc):
    f, pe = _singles.pop(tid)
    _load[pe] -= 1
    if f is not None:
        f._deliver(None, value, exc)
    elif exc is not None:
        report_error(exc, "a charm.pool task nothing waits for")


# ---- progress ------------------------------------------------------------------
def _progress_bar(progress, total):
    """tqdm's bar when installed, a plain one otherwise; shown when stderr
    is a terminal, or always with progress='always'."""
    if not progress:
        return None
    if progress != "always" and not _isatty(sys.stderr):
        return None
    if os.environ.get("CHARMPY_PLAIN_PROGRESS") != "1":
        try:
            from tqdm import tqdm
            try:   # a terminal that says it has 0 columns (a new pty) gets 80
                wide = os.get_terminal_size(sys.stderr.fileno()).columns > 0
            except (OSError, ValueError, AttributeError):
                wide = False
            return tqdm(total=total, file=sys.stderr, unit="task", dynamic_ncols=wide,
                        ncols=None if wide else 80)
        except ImportError:
            pass
    return _PlainBar(total)


def _isatty(f):
    try:
        return f.isatty()
    except Exception:
        return False


class _PlainBar:
    """A progress line on stderr, redrawn at most 10 times a second."""
    WIDTH = 30

    def __init__(self, total):
        self.total, self.n, self.t0, self.last = total, 0, time.perf_counter(), 0.0
        self.draw()

    def update(self, k):
        self.n += k
        now = time.perf_counter()
        if now - self.last >= 0.1 or self.n == self.total:
            self.draw()

    def draw(self):
        self.last = now = time.perf_counter()
        dt = now - self.t0
        rate = self.n / dt if dt > 0 else 0.0
        if self.total:
            filled = int(self.WIDTH * self.n / self.total)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            text = f"\r[{bar}] {self.n}/{self.total} {100 * self.n // self.total}% " \
                   f"{dt:.1f}s {rate:.0f} tasks/s"
        else:
            text = f"\r{self.n} tasks {dt:.1f}s {rate:.0f} tasks/s"
        sys.stderr.write(text)
        sys.stderr.flush()

    def close(self):
        self.draw()
        sys.stderr.write("\n")
        sys.stderr.flush()


# ---- the public face -------------------------------------------------------------
class Pool:
    """charm.pool (see API.md, "Parallel map and tasks")."""

    def map(self, func, iterable, chunksize=1, ncores=-1, allow_nested=False,
            progress=False):
        """The list of func(item) for every item, in order."""
        return self.map_async(func, iterable, chunksize, ncores, allow_nested=allow_nested,
                              progress=progress).get()

    def map_async(self, func, iterable, chunksize=1, ncores=-1, multi_future=False,
                  allow_nested=False, progress=False):
        """A future of map's list; with multi_future=True, a list of
        futures, one per item."""
        _check_running("map_async")
        if multi_future:
            items = list(iterable)
            job = _Job(func, items, chunksize, ncores, "multi", _nested(func, allow_nested),
                       progress)
            job.futures = [futures.Future() for _ in items]
            job.start()
            return job.futures
        job = _Job(func, iterable, chunksize, ncores, "map", _nested(func, allow_nested),
                   progress)
        job.future = futures.Future()
        f = job.future
        job.start()
        return f

    def imap(self, func, iterable, chunksize=1, ncores=-1, allow_nested=False,
             progress=False):
        """An iterator of func(item), in order, read in a coroutine."""
        return self._imap(func, iterable, chunksize, ncores, "imap", allow_nested, progress)

    def imap_unordered(self, func, iterable, chunksize=1, ncores=-1, allow_nested=False,
                       progress=False):
        """An iterator of func(item) as they finish, read in a coroutine."""
        return self._imap(func, iterable, chunksize, ncores, "unordered", allow_nested,
                          progress)

    def _imap(self, func, iterable, chunksize, ncores, kind, allow_nested, progress):
        _check_running("imap")
        job = _Job(func, iterable, chunksize, ncores, kind, _nested(func, allow_nested),
                   progress)
        job.start()
        return _Results(job)

    def Task(self, func, args, ret=False, awaitable=False):
        """Run func(*args) on some PE; a future of its result when ret or
        awaitable (else an exception in it ends the program)."""
        return _submit(func, args, None, ret or awaitable, _nested(func, False))

    def submit(self, func, *args, **kwargs):
        """A future of func(*args, **kwargs), run on some PE."""
        return _submit(func, args, kwargs, True, _nested(func, False))

    submit_async = submit

    def __repr__(self):
        return f"<charm.pool: {len(_jobs)} jobs of this PE running>"


pool = Pool()

_HANDLERS = {"pJ": _on_job, "pT": _on_tasks, "pR": _on_results, "pE": _on_error,
             "pX": _on_end, "pS": _on_single, "pD": _on_single_done}
for _tag, _fn in _HANDLERS.items():
    charm.on_message(_tag, _fn)
