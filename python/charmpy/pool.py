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

The per-chunk path is C (python/ext/pool.c): the owner's job is a PoolJob
whose fill() reads the iterator and sends a chunk, and a chunk and its
results are messages of pool.c's own handlers, which run the tasks on the
worker and store the results on the owner; Python runs for a job's start
and end, failures, nested tasks, the progress bar and the imap consumer.
A single task (submit, Task) and its value take the same two handlers.
The other runtime messages (charm.send_msg): pJ (a job's function, to a
worker), pE (a task raised), pX (the job ended) and pD (a single task
raised)."""
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

PREFETCH = _charmpy.POOL_PREFETCH        # chunks in flight per worker and job
AUTO_START = 1            # chunksize='auto': the first chunks' size ...
AUTO_TARGET = _charmpy.POOL_AUTO_TARGET  # ... then about this many seconds of work
KIND_MAP, KIND_IMAP = _charmpy.POOL_KIND_MAP, _charmpy.POOL_KIND_IMAP
KIND_UNORDERED, KIND_MULTI = _charmpy.POOL_KIND_UNORDERED, _charmpy.POOL_KIND_MULTI
SINGLE = _charmpy.POOL_SINGLE             # the `start` of a single task's messages
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
    return _charmpy.pool_order(ncores)


def _chunksize(chunksize):
    if chunksize == "auto":
        return None
    if not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1:
        raise ValueError(f"charm.pool: chunksize must be a positive int or 'auto', not "
                         f"{chunksize!r}")
    return chunksize


# ---- a job (map, map_async, imap, imap_unordered) on its owner ------------
class _Job(_charmpy.PoolJob):
    """A job on its owner. The per-chunk path is C (python/ext/pool.c, the
    PoolJob base): fill() sends chunks, the results handler stores what
    comes back, sizes chunks (chunksize='auto'), sends the next chunk and
    calls check_end(). This class starts the job and handles its edges:
    failures, waking the imap consumer, the end."""

    def __init__(self, func, iterable, chunksize, ncores, kind, nested, progress):
        data, ref = _dump_func(func)
        cs = _chunksize(chunksize)
        self.is_auto = cs is None
        self.cs = AUTO_START if cs is None else cs
        try:
            total = len(iterable)
        except TypeError:
            total = None
        self.total = -1 if total is None else total
        self.it = iter(iterable)
        self.jid = next(_ids)
        self.pes = _pes_for(ncores)
        self.set_pes(charm._npes, self.pes)
        # What it adds to the load of each of its PEs (for the placement of
        # the next jobs): its share of the items, when their number is known.
        self.weight = -(-(total if total is not None else UNKNOWN_LENGTH) // len(self.pes))
        self.kind = kind
        self.fail_at = None             # the index of the item that failed it
        if kind not in (KIND_MAP, KIND_MULTI):
            self.window = WINDOW_PER_WORKER * len(self.pes)
        if kind == KIND_MAP:
            self.results = []
        elif kind == KIND_IMAP:
            self.ready = {}
        elif kind == KIND_UNORDERED:
            self.ready = deque()
        self.future = None              # map: the job's future
        self.bar = _progress_bar(progress, total)
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

    def _fill_error(self, exc, pe, n):
        """fill() could not go on: the iterable raised (pe -1), or the chunk
        of n items for pe cannot be sent."""
        if pe < 0:
            self.fail(remote_exception(exc, "the iterable given to charm.pool"), None)
        else:
            self.fail(TypeError(f"charm.pool: items {self.sent} to {self.sent + n - 1} "
                                f"cannot be sent to PE {pe}: {exc}"), None)

    def fail(self, exc, pe, index=None):
        if pe is not None:
            self.returned(pe)
        if self.exc is None:
            self.exc = exc
            self.fail_at = self.sent if index is None else index
            if self.kind == KIND_MAP:
                self.future._deliver(None, None, exc)
            elif self.kind == KIND_MULTI:
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

    def _end(self):
        """Every chunk sent came back (check_end, in C): after an error too,
        then the remaining results are dropped."""
        self.ended = True
        del _jobs[self.jid]
        for pe in self.pes:
            _load[pe] -= self.weight
            _send(pe, "pX", charm._pe, self.jid)
        if self.bar is not None:
            self.bar.close()
        if self.exc is None and self.kind == KIND_MAP:
            out, self.results = self.results, None
            self.future._deliver(None, out, None)
        self.wake()

    def next_result(self):
        """imap's iterator: the next result (in order for imap, as they come
        for imap_unordered), waiting in the consumer's coroutine."""
        while True:
            if self.kind == KIND_IMAP:
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
        if self.stalled and self.sent - self.consumed <= self.limit // 2:
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
    """A chunk the C task handler (pool.c) does not run itself: the job's
    function may suspend (nested tasks: in a coroutine), or it could not be
    unpickled here."""
    entry = _funcs.get((owner, jid))
    if entry is None:
        return
    func, nested = entry
    if nested and not isinstance(func, BaseException):
        g = coro.Coroutine(lambda: _run_chunk(owner, jid, start, items, func), None,
                           "charm.pool task")
        g.switch()
        coro._after_run(g)
    else:
        _run_chunk(owner, jid, start, items, func)


def _run_chunk(owner, jid, start, items, func):
    t0 = time.perf_counter()
    if isinstance(func, BaseException):
        _send_error(owner, jid, start, items[0], func, "unpickling the function")
        return
    out = []
    for i, x in enumerate(items):
        try:
            out.append(func(x))
        except BaseException as e:
            _task_raised(owner, jid, start + i, x, e)
            return
    try:
        _charmpy.pool_send_results(owner, jid, start, out, time.perf_counter() - t0)
    except Exception as e:
        _unsendable(owner, jid, start, items, e)


def _task_raised(owner, jid, index, item, exc):
    _send_error(owner, jid, index, item, exc, f"task {index}")


def _unsendable(owner, jid, start, items, exc):
    _send_error(owner, jid, start, items[0], TypeError(
        f"the results of tasks {start} to {start + len(items) - 1} cannot be sent back: "
        f"{exc}"), f"task {start}")


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
    pe = _charmpy.pool_order(1)[0]
    try:
        _charmpy.pool_submit(pe, tid, data, ref, tuple(args), kwargs or None, nested)
    except Exception as e:
        raise TypeError(f"charm.pool: the arguments of {func!r} cannot be sent to PE {pe}: "
                        f"{e}") from None
    f = futures.Future() if want else None
    _singles[tid] = (f, pe)
    _load[pe] = _load.get(pe, 0) + 1
    return f


def _on_single(owner, tid, data, ref, args, kwargs, nested):
    """A single task the C task handler (pool.c) does not run itself: it
    may suspend (nested: in a coroutine), or its function is not among the
    ones unpickled here."""
    def run():
        try:
            func = _load_func(data, ref)
            value = func(*args, **(kwargs or {}))
        except BaseException as e:
            _single_raised(owner, tid, e, False)
            return
        try:
            _charmpy.pool_send_results(owner, tid, SINGLE, [value], 0.0)
        except Exception as e:
            _single_raised(owner, tid, e, True)
    if nested:
        g = coro.Coroutine(run, None, "charm.pool task")
        g.switch()
        coro._after_run(g)
    else:
        run()


def _single_raised(owner, tid, exc, ran):
    """Tell the owner: the task raised exc, or (ran) its result cannot be
    sent back."""
    if ran:
        exc = TypeError(f"the result of a charm.pool task cannot be sent back: {exc}")
    else:
        exc = remote_exception(exc, f"a charm.pool task on PE {charm._pe}")
    _send(owner, "pD", tid, None, exc)


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
            job = _Job(func, items, chunksize, ncores, KIND_MULTI, _nested(func, allow_nested),
                       progress)
            job.futures = [futures.Future() for _ in items]
            job.start()
            return job.futures
        job = _Job(func, iterable, chunksize, ncores, KIND_MAP, _nested(func, allow_nested),
                   progress)
        job.future = futures.Future()
        f = job.future
        job.start()
        return f

    def imap(self, func, iterable, chunksize=1, ncores=-1, allow_nested=False,
             progress=False):
        """An iterator of func(item), in order, read in a coroutine."""
        return self._imap(func, iterable, chunksize, ncores, KIND_IMAP, allow_nested, progress)

    def imap_unordered(self, func, iterable, chunksize=1, ncores=-1, allow_nested=False,
                       progress=False):
        """An iterator of func(item) as they finish, read in a coroutine."""
        return self._imap(func, iterable, chunksize, ncores, KIND_UNORDERED, allow_nested,
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

_HANDLERS = {"pJ": _on_job, "pE": _on_error, "pX": _on_end, "pD": _on_single_done}
for _tag, _fn in _HANDLERS.items():
    charm.on_message(_tag, _fn)
# Chunks and results travel through pool.c's own handlers.
_charmpy.pool_setup((_jobs, _funcs, _singles, _loaded, _load),
                    (_on_tasks, _task_raised, _unsendable, _on_single, _single_raised))
