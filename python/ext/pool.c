/*
 * charm.pool's per-task path: a job's chunks and results (python/charmpy/
 * pool.py has the design; this file is its hot part).
 *
 * Owner side, the PoolJob type (pool.py's _Job derives from it): fill()
 * reads the next items from the job's iterator and sends them as a chunk
 * to a worker PE; the results handler stores what comes back (in place for
 * map, by index for imap, in arrival order for imap_unordered, into one
 * future per item for map_async(multi_future=True)), sizes the next chunks
 * (chunksize='auto'), sends that worker its next chunk and ends the job
 * when every chunk came back. Python runs only at the edges: the progress
 * bar, waking the consumer of imap, the end of the job and failures.
 *
 * Worker side, the task handler: the job's function (registered in
 * pool.py's _funcs by the job's first message, pJ) runs on each item of the
 * chunk, here in C, and the list of results goes straight back to the
 * owner. Functions that may suspend (coroutines: nested tasks), a function
 * that failed to unpickle, and a task that raises are handed to pool.py.
 *
 * A chunk and its results are runtime messages of their own handlers
 * (st->h_pool_task, st->h_pool_res): a pool_hdr, then the list of items or
 * results, encoded by the codec as a call's arguments are, or held by
 * reference when the message goes to this PE (charm.options.local_msg_optim,
 * as calls between chares of one PE).
 */
#include "cpy.h"

#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <structmember.h>

/* Shared with pool.py (exported as _charmpy.POOL_*). */
#define POOL_PREFETCH 2         /* chunks in flight per worker and job */
#define POOL_AUTO_TARGET 0.002  /* chunksize='auto': seconds of work a chunk */

/* Job kinds (pool.py: KIND_*). */
enum { KIND_MAP = 0, KIND_IMAP = 1, KIND_UNORDERED = 2, KIND_MULTI = 3 };

typedef struct pool_hdr {
    uint64_t jid;     /* the job's number on its owner */
    int64_t start;    /* the index of the chunk's first item in the job */
    double secs;      /* results: seconds the worker spent on the chunk */
    int32_t pe;       /* chunk: the owner; results: the worker */
    uint32_t byref;   /* the list is a strong reference (to this PE) */
} pool_hdr;

typedef struct PoolJob {
    PyObject_HEAD
    /* Strong references, never NULL once created (None when unused). */
    PyObject *it;      /* the items' iterator */
    PyObject *results; /* map: the results, in order (a list grown as they come) */
    PyObject *ready;   /* imap: dict index -> result; unordered: a deque */
    PyObject *futures; /* multi: a list of one future per item */
    PyObject *exc;     /* what failed the job, or None */
    PyObject *waiter;  /* imap: the consumer's coroutine, waiting, or None */
    PyObject *bar;     /* the progress bar, or None */
    int *inflight;     /* chunks in flight per PE (npes entries) */
    int npes;          /* PEs of the program */
    int njobpes;       /* PEs the job runs on */
    int kind;
    int is_auto;       /* chunksize='auto' */
    int exhausted;     /* the iterator ended */
    int stalled;       /* imap: sending waits for the consumer */
    int ended;
    long long jid, sent, consumed, nflight, measured;
    long long total;   /* items, -1 until known */
    long long window;  /* imap: results sent and not consumed at most, -1: none */
    long long cs;      /* chunk size */
    double busy;       /* auto: seconds of work measured over `measured` items */
} PoolJob;

/* ---- messages ---------------------------------------------------------------- */

/* Send `list` (borrowed) after header h to `handler` on PE pe. 0, or -1 with
 * an exception (a TypeError naming what cannot be encoded). */
static int pool_send(cpy_state *st, int pe, int handler, pool_hdr h, PyObject *list) {
    cp_msg *msg;
    cpy_argsegs *segs = NULL;
    h.byref = pe == cp_my_pe(st->ctx) && st->local_optim;
    if (h.byref) {
        msg = cp_msg_alloc(st->ctx, sizeof h + sizeof list);
        if (!msg) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy((char *)cp_msg_data(msg) + sizeof h, &list, sizeof list);
    } else {
        PyObject *args = PyTuple_Pack(1, list);
        msg = args ? cpy_encode_args(st, sizeof h, args, NULL, &segs) : NULL;
        Py_XDECREF(args);
        if (!msg)
            return -1;
    }
    memcpy(cp_msg_data(msg), &h, sizeof h);
    int rc = cpy_send_args(st, pe, handler, msg, segs);
    if (rc) {
        cp_msg_free(st->ctx, msg);
        PyErr_Format(PyExc_RuntimeError, "charm.pool: cannot send to PE %d: %s", pe,
                     cp_strerror(rc));
        return -1;
    }
    if (h.byref)
        Py_INCREF(list); /* the message's reference */
    return 0;
}

/* The header and list of a pool message (new reference); takes msg. NULL
 * with an exception. `copied`: big arrays in it are copies, not views of
 * the message (results, which the user keeps: a view would keep the whole
 * message, in the sender's part of shared memory, for as long). */
static PyObject *pool_take(cpy_state *st, cp_msg *msg, pool_hdr *h, int copied) {
    if (msg->size < sizeof *h) {
        cp_msg_free(st->ctx, msg);
        PyErr_SetString(PyExc_RuntimeError, "corrupt charm.pool message (too short)");
        return NULL;
    }
    memcpy(h, cp_msg_data(msg), sizeof *h);
    if (h->byref && (msg->src_pe != (uint32_t)cp_my_pe(st->ctx) ||
                     msg->size != sizeof *h + sizeof(PyObject *))) {
        cp_msg_free(st->ctx, msg);
        PyErr_SetString(PyExc_RuntimeError, "corrupt charm.pool message (a reference from "
                                            "another PE)");
        return NULL;
    }
    if (h->byref) {
        PyObject *list;
        memcpy(&list, (char *)cp_msg_data(msg) + sizeof *h, sizeof list);
        cp_msg_free(st->ctx, msg);
        return list;
    }
    PyObject *args, *kwargs;
    if ((copied ? cpy_take_args_copied : cpy_take_args)(st, msg, sizeof *h, &args, &kwargs) < 0)
        return NULL;
    Py_XDECREF(kwargs);
    PyObject *list = NULL;
    if (PyTuple_GET_SIZE(args) == 1 && PyList_Check(PyTuple_GET_ITEM(args, 0)))
        list = Py_NewRef(PyTuple_GET_ITEM(args, 0));
    else
        PyErr_SetString(PyExc_RuntimeError, "corrupt charm.pool message");
    Py_DECREF(args);
    return list;
}

/* pool.py's tables, given to pool_setup (dicts): jobs of this owner (jid ->
 * job), functions of the jobs this PE works for ((owner, jid) -> (func,
 * nested)), single tasks of this owner (tid -> (future or None, pe)),
 * unpickled functions sent by reference (pickle -> func), and the load this
 * PE's jobs and tasks put on each PE (pe -> items). */
enum { T_JOBS = 0, T_FUNCS = 1, T_SINGLES = 2, T_LOADED = 3, T_LOAD = 4, T_N = 5 };
#define TABLE(st, t) PyTuple_GET_ITEM((st)->pool_tables, t)

/* pool.py's function `which` of the tuple given to pool_setup, called with
 * the n arguments (borrowed); 0 or -1 with an exception. */
enum {
    FB_TASKS = 0,           /* _on_tasks(owner, jid, start, items) */
    FB_ERROR = 1,           /* _task_raised(owner, jid, index, item, exc) */
    FB_UNSENDABLE = 2,      /* _unsendable(owner, jid, start, items, exc) */
    FB_SINGLE = 3,          /* _on_single(owner, tid, data, ref, args, kwargs, nested) */
    FB_SINGLE_RAISED = 4,   /* _single_raised(owner, tid, exc) */
    FB_N = 5
};

/* The `start` of a single task's messages (submit, Task): the task's list is
 * [func's pickle, by reference?, args, kwargs or None, nested], its result's
 * [value]. */
#define POOL_SINGLE (-1)

/* A pool message before pool.py gave its tables: the job ends (takes msg). */
static int pool_ready(cpy_state *st, cp_msg *msg) {
    if (st->pool_tables && st->pool_fallbacks)
        return 0;
    pool_hdr h;
    PyObject *list = pool_take(st, msg, &h, 1);
    Py_XDECREF(list);
    PyErr_SetString(PyExc_RuntimeError, "charm.pool: a pool message came before "
                                        "charmpy.pool was set up on this PE");
    cpy_report_error(st, "receiving a charm.pool message");
    return -1;
}

static int fallback(cpy_state *st, int which, const char *fmt, ...) {
    va_list va;
    va_start(va, fmt);
    PyObject *args = Py_VaBuildValue(fmt, va);
    va_end(va);
    PyObject *r = args ? PyObject_CallObject(PyTuple_GET_ITEM(st->pool_fallbacks, which), args)
                       : NULL;
    Py_XDECREF(args);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* The argument formats of the fallbacks: owner, job or task number, first. */
#define FB_IDS "iK"
#define FB_ID_ARGS(h) (int)(h)->pe, (unsigned long long)(h)->jid

/* fut._deliver(None, value, None): a result to its future. */
static int deliver(PyObject *fut, PyObject *value) {
    PyObject *r = PyObject_CallMethod(fut, "_deliver", "OOO", Py_None, value, Py_None);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* ---- the worker: a chunk of tasks ---------------------------------------------- */

/* Run func on every item and send the results to the owner (h->pe). A task
 * that raises, and results that cannot be sent, go to pool.py, which tells
 * the owner. 0 or -1 with an exception (pool.py failed). */
static int run_chunk(cpy_state *st, const pool_hdr *h, PyObject *func, PyObject *items) {
    double t0 = cp_trace_now(st->ctx); /* the trace's clock when tracing */
    /* Grown by appends: a task may see it (gc.get_objects()), so it never
     * holds an empty slot. */
    PyObject *out = PyList_New(0);
    if (!out)
        return -1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *x = Py_NewRef(PyList_GET_ITEM(items, i));
        PyObject *r = PyObject_CallOneArg(func, x);
        if (!r) {
            Py_DECREF(out);
            PyObject *exc = cpy_take_exception();
            int rc = fallback(st, FB_ERROR, "(" FB_IDS "LOO)", FB_ID_ARGS(h),
                              (long long)(h->start + i), x, exc);
            Py_DECREF(exc);
            Py_DECREF(x);
            return rc;
        }
        Py_DECREF(x);
        int rc = PyList_Append(out, r);
        Py_DECREF(r);
        if (rc < 0) {
            Py_DECREF(out);
            return -1;
        }
    }
    double t1 = cp_trace_now(st->ctx);
    if (st->tracing) { /* the chunk's slice: its owner, job and first item */
        int64_t idx[3] = {h->pe, (int64_t)h->jid, h->start};
        cp_trace_slice(st->ctx, t0, t1, cp_trace_string(st->ctx, "charm.pool chunk"),
                       st->tr_entry, idx, 3, CP_TRACE_MSG_BYTES);
    }
    pool_hdr back = {h->jid, h->start, t1 - t0, cp_my_pe(st->ctx), 0};
    int rc = pool_send(st, h->pe, st->h_pool_res, back, out);
    Py_DECREF(out);
    if (rc == 0)
        return 0;
    PyObject *exc = cpy_take_exception();
    rc = fallback(st, FB_UNSENDABLE, "(" FB_IDS "LOO)", FB_ID_ARGS(h), (long long)h->start,
                  items, exc);
    Py_DECREF(exc);
    return rc;
}

/* The job's (func, nested) on this worker (new reference), or NULL: the job
 * ended (no exception) or the lookup failed (an exception). */
static PyObject *worker_entry(cpy_state *st, const pool_hdr *h) {
    PyObject *key = Py_BuildValue("(iK)", (int)h->pe, (unsigned long long)h->jid);
    if (!key)
        return NULL;
    PyObject *entry = PyDict_GetItemWithError(TABLE(st, T_FUNCS), key); /* borrowed */
    Py_DECREF(key);
    if (entry && (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2)) {
        PyErr_SetString(PyExc_RuntimeError, "charm.pool: corrupt job table");
        return NULL;
    }
    return Py_XNewRef(entry);
}

/* A single task (submit, Task): run here unless it may suspend (nested),
 * its function is not in this PE's cache of functions sent by reference, or
 * it raises: then pool.py does. */
static int run_single(cpy_state *st, const pool_hdr *h, PyObject *task) {
    if (PyList_GET_SIZE(task) != 5) {
        PyErr_SetString(PyExc_RuntimeError, "corrupt charm.pool task");
        return -1;
    }
    PyObject **t = ((PyListObject *)task)->ob_item;
    PyObject *data = t[0], *args = t[2], *kwargs = t[3];
    int ref = PyObject_IsTrue(t[1]), nested = PyObject_IsTrue(t[4]);
    if (ref < 0 || nested < 0)
        return -1;
    PyObject *func = ref && !nested ? PyDict_GetItemWithError(TABLE(st, T_LOADED), data) : NULL;
    if (!func && PyErr_Occurred())
        return -1;
    if (!PyTuple_Check(args) || (kwargs != Py_None && !PyDict_Check(kwargs))) {
        PyErr_SetString(PyExc_RuntimeError, "corrupt charm.pool task");
        return -1;
    }
    int rc = -1, ran = 0;
    if (!func) {
        rc = fallback(st, FB_SINGLE, "(" FB_IDS "OOOOO)", FB_ID_ARGS(h), data, t[1], args,
                      kwargs, t[4]);
    } else {
        Py_INCREF(func); /* the call may empty the cache */
        Py_INCREF(task);
        PyObject *value = PyObject_Call(func, args, kwargs == Py_None ? NULL : kwargs);
        Py_DECREF(func);
        PyObject *out = value ? PyList_New(1) : NULL;
        if (out) {
            ran = 1;
            PyList_SET_ITEM(out, 0, value);
            value = NULL;
            pool_hdr back = {h->jid, POOL_SINGLE, 0.0, cp_my_pe(st->ctx), 0};
            rc = pool_send(st, h->pe, st->h_pool_res, back, out);
            Py_DECREF(out);
        }
        Py_XDECREF(value);
        if (rc < 0) { /* it raised, or its result cannot be sent back */
            PyObject *exc = cpy_take_exception();
            rc = fallback(st, FB_SINGLE_RAISED, "(" FB_IDS "OO)", FB_ID_ARGS(h), exc,
                          ran ? Py_True : Py_False);
            Py_DECREF(exc);
        }
        Py_DECREF(task);
    }
    return rc;
}

void cpy_pool_on_task(cp_ctx *ctx, cp_msg *msg, void *user) {
    (void)ctx;
    cpy_state *st = user;
    pool_hdr h;
    if (pool_ready(st, msg) < 0)
        return;
    PyObject *items = pool_take(st, msg, &h, 0);
    if (items && h.start == POOL_SINGLE) {
        if (run_single(st, &h, items) < 0)
            cpy_report_error(st, "running a charm.pool task");
        Py_DECREF(items);
        return;
    }
    PyObject *entry = items ? worker_entry(st, &h) : NULL;
    int rc = entry || !PyErr_Occurred() ? 0 : -1;
    if (entry) {
        PyObject *func = PyTuple_GET_ITEM(entry, 0);
        int nested = PyObject_IsTrue(PyTuple_GET_ITEM(entry, 1));
        if (nested < 0) {
            rc = -1;
        } else if (nested || PyExceptionInstance_Check(func)) {
            rc = fallback(st, FB_TASKS, "(" FB_IDS "LO)", FB_ID_ARGS(&h), (long long)h.start,
                          items);
        } else {
            rc = run_chunk(st, &h, func, items);
        }
        Py_DECREF(entry);
    }
    Py_XDECREF(items);
    if (rc < 0)
        cpy_report_error(st, "running a charm.pool chunk");
}

/* ---- the owner: sending chunks ----------------------------------------------- */

/* The job's objects are there: the setters refuse deletion, so only the
 * garbage collector's clear (job_clear) empties them. */
static int job_ready_to_run(PoolJob *j) {
    if (!j->it || !j->exc || !j->waiter || !j->bar || !j->ready || !j->results ||
        !j->futures) {
        PyErr_SetString(PyExc_RuntimeError, "charm.pool: the job was cleared by the garbage "
                                            "collector while still running");
        return -1;
    }
    return 0;
}

static long long job_limit(const PoolJob *j) {
    long long per = 2LL * (POOL_PREFETCH + 1) * (j->njobpes > 0 ? j->njobpes : 1);
    long long fill = j->cs > LLONG_MAX / per ? LLONG_MAX : per * j->cs;
    return j->window > fill ? j->window : fill;
}

/* A call of pool.py's method `name` of the job without arguments; 0 or -1
 * with an exception. */
static int job_call(PoolJob *j, const char *name) {
    PyObject *r = PyObject_CallMethod((PyObject *)j, name, NULL);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* Sending failed: pool.py's _fill_error(exc, pe, n) fails the job (pe -1:
 * the iterator raised; else chunk of n items for pe could not be sent). */
static int fill_error(PoolJob *j, int pe, Py_ssize_t n) {
    PyObject *exc = cpy_take_exception();
    PyObject *r = PyObject_CallMethod((PyObject *)j, "_fill_error", "Oin", exc, pe, n);
    Py_DECREF(exc);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* The next chunk of items from the iterator (new reference, maybe empty:
 * exhausted), or NULL with the iterator's exception. */
static PyObject *next_chunk(PoolJob *j) {
    PyObject *chunk = PyList_New(0);
    PyObject *it = Py_NewRef(j->it); /* its __next__ may rebind j->it */
    for (long long k = 0; chunk && k < j->cs; k++) {
        PyObject *x = PyIter_Next(it);
        if (!x) {
            if (PyErr_Occurred())
                Py_CLEAR(chunk);
            break;
        }
        if (PyList_Append(chunk, x) < 0)
            Py_CLEAR(chunk);
        Py_DECREF(x);
    }
    Py_DECREF(it);
    return chunk;
}

/* Send pe chunks until it has `upto` in flight, or nothing is left to send.
 * This PE gets one at a time: its chunks wait in its own queue, where the
 * scheduler runs them all before it looks for messages again, so two of
 * them would keep the other PEs' results waiting for two tasks (and those
 * PEs idle: 1 ms tasks lost 5-8% to it). */
static int job_fill(cpy_state *st, PoolJob *j, int pe, int upto) {
    if (pe < 0 || pe >= j->npes || !j->inflight) {
        PyErr_Format(PyExc_ValueError, "charm.pool: PE %d is not one of the job's", pe);
        return -1;
    }
    if (pe == cp_my_pe(st->ctx))
        upto = 1;
    while (!j->exhausted && j->exc == Py_None && j->inflight[pe] < upto) {
        if (j->window >= 0 && j->sent - j->consumed >= job_limit(j)) {
            j->stalled = 1;
            return 0;
        }
        PyObject *chunk = next_chunk(j);
        if (!chunk)
            return fill_error(j, -1, 0);
        Py_ssize_t n = PyList_GET_SIZE(chunk);
        if (n == 0) {
            Py_DECREF(chunk);
            j->exhausted = 1;
            if (j->total < 0)
                j->total = j->sent;
            return 0;
        }
        pool_hdr h = {(uint64_t)j->jid, j->sent, 0.0, cp_my_pe(st->ctx), 0};
        int rc = pool_send(st, pe, st->h_pool_task, h, chunk);
        Py_DECREF(chunk);
        if (rc < 0)
            return fill_error(j, pe, n);
        j->inflight[pe]++;
        j->nflight++;
        j->sent += n;
    }
    return 0;
}

/* ---- the owner: results -------------------------------------------------------- */

/* imap and imap_unordered: keep the results for the consumer. */
static int job_keep(PoolJob *j, long long start, PyObject *values) {
    if (j->kind == KIND_UNORDERED) {
        PyObject *r = PyObject_CallMethod(j->ready, "extend", "O", values);
        Py_XDECREF(r);
        return r ? 0 : -1;
    }
    PyObject *ready = Py_NewRef(j->ready); /* a replaced value's __del__ may rebind it */
    int rc = PyDict_Check(ready) ? 0 : -1;
    if (rc < 0)
        PyErr_SetString(PyExc_TypeError, "charm.pool: an imap job's `ready` must be a dict");
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(values); i++) {
        PyObject *key = PyLong_FromLongLong(start + i);
        rc = key ? PyDict_SetItem(ready, key, PyList_GET_ITEM(values, i)) : -1;
        Py_XDECREF(key);
    }
    Py_DECREF(ready);
    return rc;
}

/* map: the results in place in j->results. */
static int job_store(PoolJob *j, long long start, PyObject *values) {
    Py_ssize_t n = PyList_GET_SIZE(values);
    PyObject *out = Py_NewRef(j->results);
    int rc = PyList_Check(out) ? 0 : -1;
    if (rc < 0)
        PyErr_SetString(PyExc_RuntimeError, "charm.pool: a map job without its result list");
    while (rc == 0 && PyList_GET_SIZE(out) < start + n)
        rc = PyList_Append(out, Py_None);
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++)
        rc = PyList_SetItem(out, start + i, Py_NewRef(PyList_GET_ITEM(values, i)));
    Py_DECREF(out);
    return rc;
}

/* multi_future: each result to its future. */
static int job_deliver(PoolJob *j, long long start, PyObject *values) {
    int rc = 0;
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(values); i++) {
        PyObject *f = PySequence_GetItem(j->futures, start + i);
        rc = f ? deliver(f, PyList_GET_ITEM(values, i)) : -1;
        Py_XDECREF(f);
    }
    return rc;
}

/* chunksize='auto': chunks of about POOL_AUTO_TARGET seconds of work, but no
 * bigger than a share of what is left (so the end stays balanced); imap
 * keeps a window of twice the chunks in flight: smaller chunks there. */
static void job_tune(PoolJob *j, Py_ssize_t n, double secs) {
    j->busy += secs;
    j->measured += n;
    double per = j->busy / (double)j->measured;
    double q = POOL_AUTO_TARGET / per; /* secs came off the wire: maybe not finite */
    long long cs = per > 0 && q < (double)(1LL << 20) ? (long long)q : 1LL << 20;
    if (j->total >= 0) {
        long long left = (j->total - j->sent) / (2LL * POOL_PREFETCH * j->njobpes);
        if (left < 1)
            left = 1;
        if (cs > left)
            cs = left;
    }
    long long most = j->window < 0 ? 1LL << 16 : 1024;
    j->cs = cs < 1 ? 1 : cs > most ? most : cs;
}

static int job_wake(PoolJob *j) {
    return j->waiter == Py_None ? 0 : job_call(j, "wake");
}

/* The job ends (pool.py's _end) when every chunk sent came back, after an
 * error too: then the remaining results are dropped. */
static int job_check_end(PoolJob *j) {
    if (j->ended || j->nflight > 0 || (j->exc == Py_None && !j->exhausted))
        return 0;
    return job_call(j, "_end");
}

/* A chunk came back from pe with `values` (borrowed). */
static int job_results(cpy_state *st, PoolJob *j, int pe, long long start, PyObject *values,
                       double secs) {
    if (pe < 0 || pe >= j->npes || !j->inflight || j->inflight[pe] <= 0) {
        PyErr_Format(PyExc_RuntimeError, "charm.pool: results from PE %d, which has no chunk "
                                         "of job %lld",
                     pe, j->jid);
        return -1;
    }
    if (job_ready_to_run(j) < 0)
        return -1;
    j->inflight[pe]--;
    j->nflight--;
    Py_ssize_t n = PyList_GET_SIZE(values);
    if (j->exc != Py_None) {
        /* Failed: imap still gives what was computed before the failing item. */
        if ((j->kind == KIND_IMAP || j->kind == KIND_UNORDERED) &&
            (job_keep(j, start, values) < 0 || job_wake(j) < 0))
            return -1;
        return job_check_end(j);
    }
    int rc = j->kind == KIND_MAP     ? job_store(j, start, values)
             : j->kind == KIND_MULTI ? job_deliver(j, start, values)
                                     : job_keep(j, start, values);
    if (rc < 0)
        return -1;
    if (j->is_auto)
        job_tune(j, n, secs);
    if (j->bar != Py_None) {
        PyObject *r = PyObject_CallMethod(j->bar, "update", "n", n);
        if (!r)
            return -1;
        Py_DECREF(r);
    }
    if (job_fill(st, j, pe, POOL_PREFETCH) < 0 || job_wake(j) < 0)
        return -1;
    return job_check_end(j);
}

/* (load[pe] += d) in pool.py's load table. */
static int load_add(cpy_state *st, PyObject *pe, long d) {
    PyObject *load = TABLE(st, T_LOAD);
    PyObject *v = PyDict_GetItemWithError(load, pe); /* borrowed */
    if (!v && PyErr_Occurred())
        return -1;
    long n = v ? PyLong_AsLong(v) : 0;
    if (n == -1 && PyErr_Occurred())
        return -1;
    PyObject *nv = PyLong_FromLong(n + d);
    int rc = nv ? PyDict_SetItem(load, pe, nv) : -1;
    Py_XDECREF(nv);
    return rc;
}

/* A single task's value came back: to its future (tid's entry in the
 * singles table; none for a Task without a future). */
static int single_done(cpy_state *st, const pool_hdr *h, PyObject *values) {
    PyObject *singles = TABLE(st, T_SINGLES);
    PyObject *tid = PyLong_FromUnsignedLongLong(h->jid);
    PyObject *entry = tid ? Py_XNewRef(PyDict_GetItemWithError(singles, tid)) : NULL;
    int rc = -1;
    if (!entry) {
        if (tid && !PyErr_Occurred())
            PyErr_Format(PyExc_RuntimeError, "charm.pool: a result for task %llu, which "
                                             "this PE did not submit",
                         (unsigned long long)h->jid);
    } else if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2 ||
               PyList_GET_SIZE(values) != 1) {
        PyErr_SetString(PyExc_RuntimeError, "charm.pool: corrupt task table");
    } else if (PyDict_DelItem(singles, tid) == 0 &&
               load_add(st, PyTuple_GET_ITEM(entry, 1), -1) == 0) {
        PyObject *f = PyTuple_GET_ITEM(entry, 0);
        rc = 0;
        if (f != Py_None)
            rc = deliver(f, PyList_GET_ITEM(values, 0));
    }
    Py_XDECREF(entry);
    Py_XDECREF(tid);
    return rc;
}

void cpy_pool_on_results(cp_ctx *ctx, cp_msg *msg, void *user) {
    (void)ctx;
    cpy_state *st = user;
    pool_hdr h;
    if (pool_ready(st, msg) < 0)
        return;
    PyObject *values = pool_take(st, msg, &h, 1);
    if (values && h.start == POOL_SINGLE) {
        if (single_done(st, &h, values) < 0)
            cpy_report_error(st, "handling a charm.pool task's result");
        Py_DECREF(values);
        return;
    }
    PyObject *key = values ? PyLong_FromUnsignedLongLong(h.jid) : NULL;
    PyObject *job = key ? Py_XNewRef(PyDict_GetItemWithError(TABLE(st, T_JOBS), key)) : NULL;
    int rc = job || (key && !PyErr_Occurred()) ? 0 : -1; /* no job: it ended, drop */
    if (job) {
        if (!PyObject_TypeCheck(job, (PyTypeObject *)st->pool_job_type)) {
            PyErr_SetString(PyExc_RuntimeError, "charm.pool: corrupt job table");
            rc = -1;
        } else {
            rc = job_results(st, (PoolJob *)job, h.pe, h.start, values, h.secs);
        }
        Py_DECREF(job);
    }
    Py_XDECREF(key);
    Py_XDECREF(values);
    if (rc < 0)
        cpy_report_error(st, "handling charm.pool results");
}

/* ---- the PoolJob type ------------------------------------------------------------ */

static PyObject *job_new(PyTypeObject *tp, PyObject *args, PyObject *kwargs) {
    (void)args;
    (void)kwargs;
    PoolJob *j = (PoolJob *)tp->tp_alloc(tp, 0);
    if (!j)
        return NULL;
    PyObject **objs[] = {&j->it, &j->results, &j->ready, &j->futures,
                         &j->exc, &j->waiter, &j->bar};
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++)
        *objs[i] = Py_NewRef(Py_None);
    j->total = j->window = -1;
    j->cs = 1;
    return (PyObject *)j;
}

static int job_traverse(PoolJob *j, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(j));
    Py_VISIT(j->it);
    Py_VISIT(j->results);
    Py_VISIT(j->ready);
    Py_VISIT(j->futures);
    Py_VISIT(j->exc);
    Py_VISIT(j->waiter);
    Py_VISIT(j->bar);
    return 0;
}

static int job_clear(PoolJob *j) {
    Py_CLEAR(j->it);
    Py_CLEAR(j->results);
    Py_CLEAR(j->ready);
    Py_CLEAR(j->futures);
    Py_CLEAR(j->exc);
    Py_CLEAR(j->waiter);
    Py_CLEAR(j->bar);
    return 0;
}

static void job_dealloc(PoolJob *j) {
    PyTypeObject *tp = Py_TYPE(j);
    PyObject_GC_UnTrack(j);
    job_clear(j);
    PyMem_Free(j->inflight);
    tp->tp_free(j);
    Py_DECREF(tp);
}

/* set_pes(npes, pes): the program's PEs and the job's. */
static PyObject *job_set_pes(PoolJob *j, PyObject *args) {
    int npes;
    PyObject *pes;
    if (!PyArg_ParseTuple(args, "iO!", &npes, &PyList_Type, &pes))
        return NULL;
    if (npes < 1 || PyList_GET_SIZE(pes) < 1 || PyList_GET_SIZE(pes) > npes)
        return PyErr_Format(PyExc_ValueError, "charm.pool: bad PEs for a job");
    int *inflight = PyMem_Calloc((size_t)npes, sizeof *inflight);
    if (!inflight)
        return PyErr_NoMemory();
    PyMem_Free(j->inflight);
    j->inflight = inflight;
    j->npes = npes;
    j->njobpes = (int)PyList_GET_SIZE(pes);
    Py_RETURN_NONE;
}

/* fill(pe, upto=POOL_PREFETCH) */
static PyObject *job_fill_py(PoolJob *j, PyTypeObject *cls, PyObject *const *args,
                             Py_ssize_t nargs, PyObject *kwnames) {
    cpy_state *st = PyType_GetModuleState(cls);
    long pe, upto = POOL_PREFETCH;
    if (kwnames || nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "fill(pe, upto=PREFETCH)");
        return NULL;
    }
    if ((pe = PyLong_AsLong(args[0])) == -1 && PyErr_Occurred())
        return NULL;
    if (nargs == 2 && (upto = PyLong_AsLong(args[1])) == -1 && PyErr_Occurred())
        return NULL;
    if (pe < 0 || pe >= j->npes || upto < 0 || upto > 1024)
        return PyErr_Format(PyExc_ValueError, "charm.pool: fill(%ld, %ld): no such PE or "
                                              "too many chunks",
                            pe, upto);
    if (cpy_need_runtime(st) || job_ready_to_run(j) < 0 ||
        job_fill(st, j, (int)pe, (int)upto) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* check_end() */
static PyObject *job_check_end_py(PoolJob *j, PyObject *noargs) {
    (void)noargs;
    if (job_ready_to_run(j) < 0 || job_check_end(j) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* returned(pe): a chunk of pe's came back without results (a task raised). */
static PyObject *job_returned(PoolJob *j, PyObject *arg) {
    long pe = PyLong_AsLong(arg);
    if (pe == -1 && PyErr_Occurred())
        return NULL;
    if (pe < 0 || pe >= j->npes || !j->inflight || j->inflight[pe] <= 0)
        return PyErr_Format(PyExc_RuntimeError, "charm.pool: PE %ld has no chunk of job %lld "
                                                "in flight",
                            pe, j->jid);
    j->inflight[pe]--;
    j->nflight--;
    Py_RETURN_NONE;
}

static PyMethodDef job_methods[] = {
    {"set_pes", (PyCFunction)job_set_pes, METH_VARARGS, NULL},
    {"fill", (PyCFunction)(void (*)(void))job_fill_py, METH_METHOD | METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"check_end", (PyCFunction)job_check_end_py, METH_NOARGS, NULL},
    {"returned", (PyCFunction)job_returned, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

#define LL(name, doc) {#name, T_LONGLONG, offsetof(PoolJob, name), 0, doc}
#define INT(name, doc) {#name, T_INT, offsetof(PoolJob, name), 0, doc}
static PyMemberDef job_members[] = {
    INT(kind, "KIND_MAP, KIND_IMAP, KIND_UNORDERED or KIND_MULTI"),
    INT(is_auto, "chunksize='auto'"),
    INT(exhausted, "the iterator ended"),
    INT(stalled, "imap: sending waits for the consumer"),
    INT(ended, "the job ended"),
    LL(jid, "the job's number on this PE"),
    LL(sent, "items sent"),
    LL(consumed, "imap: results the consumer took"),
    LL(nflight, "chunks in flight"),
    LL(total, "the number of items, -1 until known"),
    LL(window, "imap: items sent and not consumed at most, -1: no limit"),
    LL(cs, "the chunk size"),
    {"npes_job", T_INT, offsetof(PoolJob, njobpes), READONLY, "the PEs the job runs on"},
    {NULL, 0, 0, 0, NULL},
};
#undef LL
#undef INT

static PyObject *job_limit_get(PoolJob *j, void *closure) {
    (void)closure;
    return PyLong_FromLongLong(job_limit(j));
}

/* The job's objects: never deleted (the C side uses them without checking),
 * `it` an iterator. */
static PyObject *job_obj_get(PoolJob *j, void *off) {
    return Py_NewRef(*(PyObject **)((char *)j + (size_t)off));
}

static int job_obj_set(PoolJob *j, PyObject *v, void *off) {
    if (!v) {
        PyErr_SetString(PyExc_AttributeError, "charm.pool: a job's attributes cannot be "
                                              "deleted");
        return -1;
    }
    if ((size_t)off == offsetof(PoolJob, it) && !PyIter_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "charm.pool: a job's `it` must be an iterator");
        return -1;
    }
    Py_SETREF(*(PyObject **)((char *)j + (size_t)off), Py_NewRef(v));
    return 0;
}

#define OBJ(name, doc)                                                                      \
    {#name, (getter)job_obj_get, (setter)job_obj_set, doc, (void *)offsetof(PoolJob, name)}
static PyGetSetDef job_getset[] = {
    {"limit", (getter)job_limit_get, NULL, "imap: the window of items sent ahead", NULL},
    OBJ(it, "the items' iterator"),
    OBJ(results, "map: the results in order"),
    OBJ(ready, "imap: dict index -> result; imap_unordered: a deque"),
    OBJ(futures, "map_async(multi_future=True): a future per item"),
    OBJ(exc, "what failed the job, or None"),
    OBJ(waiter, "imap: the consumer's waiting coroutine, or None"),
    OBJ(bar, "the progress bar, or None"),
    {NULL, NULL, NULL, NULL, NULL},
};
#undef OBJ

static PyType_Slot job_slots[] = {
    {Py_tp_new, job_new},
    {Py_tp_dealloc, job_dealloc},
    {Py_tp_traverse, job_traverse},
    {Py_tp_clear, job_clear},
    {Py_tp_methods, job_methods},
    {Py_tp_members, job_members},
    {Py_tp_getset, job_getset},
    {Py_tp_doc, "charm.pool's job on its owner: chunks out, results in (pool.c)."},
    {0, NULL},
};

static PyType_Spec job_spec = {
    .name = "charmpy._charmpy.PoolJob",
    .basicsize = sizeof(PoolJob),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = job_slots,
};

/* ---- module functions ------------------------------------------------------------- */

/* pool_setup(tables, fallbacks): pool.py's tables (T_*, dicts) and the
 * functions it handles the rare cases with (FB_*). */
static PyObject *mod_pool_setup(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *tables, *fbs;
    if (!PyArg_ParseTuple(args, "O!O!", &PyTuple_Type, &tables, &PyTuple_Type, &fbs))
        return NULL;
    if (PyTuple_GET_SIZE(tables) != T_N || PyTuple_GET_SIZE(fbs) != FB_N)
        return PyErr_Format(PyExc_TypeError, "pool_setup: %d tables and %d functions expected",
                            T_N, FB_N);
    for (int i = 0; i < T_N; i++)
        if (!PyDict_Check(PyTuple_GET_ITEM(tables, i)))
            return PyErr_Format(PyExc_TypeError, "pool_setup: table %d is not a dict", i);
    Py_XSETREF(st->pool_tables, Py_NewRef(tables));
    Py_XSETREF(st->pool_fallbacks, Py_NewRef(fbs));
    Py_RETURN_NONE;
}

/* pool_submit(pe, tid, data, ref, args, kwargs, nested): send a single task
 * to PE pe (submit, Task; pool.py keeps its future in the singles table). */
static PyObject *mod_pool_submit(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    cpy_state *st = PyModule_GetState(module);
    if (nargs != 7 || !PyLong_Check(args[0]) || !PyLong_Check(args[1]) ||
        !PyTuple_Check(args[4]))
        return PyErr_Format(PyExc_TypeError, "pool_submit(pe, tid, data, ref, args: tuple, "
                                             "kwargs, nested)");
    if (cpy_need_runtime(st))
        return NULL;
    long pe = PyLong_AsLong(args[0]);
    unsigned long long tid = PyLong_AsUnsignedLongLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (pe < 0 || pe >= cp_num_pes(st->ctx))
        return PyErr_Format(PyExc_ValueError, "charm.pool: no PE %ld", pe);
    PyObject *task = PyList_New(5);
    if (!task)
        return NULL;
    for (int i = 0; i < 5; i++)
        PyList_SET_ITEM(task, i, Py_NewRef(args[i + 2]));
    pool_hdr h = {tid, POOL_SINGLE, 0.0, cp_my_pe(st->ctx), 0};
    int rc = pool_send(st, (int)pe, st->h_pool_task, h, task);
    Py_DECREF(task);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* The order in which a job of this PE takes PEs. */
typedef struct pe_load {
    long load;
    int dist; /* (pe - this PE) mod npes */
    int pe;
} pe_load;

static int pe_load_cmp(const void *a, const void *b) {
    const pe_load *x = a, *y = b;
    if (x->load != y->load)
        return x->load < y->load ? -1 : 1;
    return (x->dist > y->dist) - (x->dist < y->dist);
}

/* pool_order(k): the k PEs (every PE when k is -1 or more than there are)
 * that this PE's jobs and tasks load least (pool.py's load table), this PE
 * first among equals, then the next ones. */
static PyObject *mod_pool_order(PyObject *module, PyObject *arg) {
    cpy_state *st = PyModule_GetState(module);
    long k = PyLong_AsLong(arg);
    if (k == -1 && PyErr_Occurred())
        return NULL;
    if (cpy_need_runtime(st))
        return NULL;
    if (!st->pool_tables)
        return PyErr_Format(PyExc_RuntimeError, "charm.pool is not set up");
    int n = cp_num_pes(st->ctx), me = cp_my_pe(st->ctx);
    if (k < 0 || k > n)
        k = n;
    pe_load *v = PyMem_Malloc((size_t)n * sizeof *v);
    if (!v)
        return PyErr_NoMemory();
    PyObject *load = TABLE(st, T_LOAD);
    for (int pe = 0; pe < n; pe++) {
        PyObject *key = PyLong_FromLong(pe);
        PyObject *val = key ? PyDict_GetItemWithError(load, key) : NULL;
        Py_XDECREF(key);
        long l = val ? PyLong_AsLong(val) : 0;
        if (PyErr_Occurred()) {
            PyMem_Free(v);
            return NULL;
        }
        v[pe] = (pe_load){l, ((pe - me) % n + n) % n, pe};
    }
    if (k == 1) { /* a single task: the least loaded, without sorting */
        int best = 0;
        for (int i = 1; i < n; i++)
            if (pe_load_cmp(&v[i], &v[best]) < 0)
                best = i;
        v[0] = v[best];
    } else {
        qsort(v, (size_t)n, sizeof *v, pe_load_cmp);
    }
    PyObject *out = PyList_New(k);
    for (long i = 0; out && i < k; i++) {
        PyObject *pe = PyLong_FromLong(v[i].pe);
        if (!pe)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, i, pe);
    }
    PyMem_Free(v);
    return out;
}

/* pool_send_results(owner, jid, start, values, secs): a chunk's results, from
 * pool.py (nested tasks run in a coroutine there). */
static PyObject *mod_pool_send_results(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    int owner;
    unsigned long long jid;
    long long start;
    PyObject *values;
    double secs;
    if (!PyArg_ParseTuple(args, "iKLO!d", &owner, &jid, &start, &PyList_Type, &values, &secs) ||
        cpy_need_runtime(st))
        return NULL;
    pool_hdr h = {jid, start, secs, cp_my_pe(st->ctx), 0};
    if (pool_send(st, owner, st->h_pool_res, h, values) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef pool_methods[] = {
    {"pool_setup", mod_pool_setup, METH_VARARGS, NULL},
    {"pool_submit", (PyCFunction)(void (*)(void))mod_pool_submit, METH_FASTCALL, NULL},
    {"pool_order", mod_pool_order, METH_O, NULL},
    {"pool_send_results", mod_pool_send_results, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

int cpy_pool_init(PyObject *module, cpy_state *st) {
    st->pool_job_type = PyType_FromModuleAndSpec(module, &job_spec, NULL);
    if (!st->pool_job_type || PyModule_AddObjectRef(module, "PoolJob", st->pool_job_type) < 0 ||
        PyModule_AddFunctions(module, pool_methods) < 0 ||
        PyModule_AddIntConstant(module, "POOL_PREFETCH", POOL_PREFETCH) < 0 ||
        PyModule_AddIntConstant(module, "POOL_SINGLE", POOL_SINGLE) < 0 ||
        PyModule_AddObject(module, "POOL_AUTO_TARGET", PyFloat_FromDouble(POOL_AUTO_TARGET)) <
            0 ||
        PyModule_AddIntConstant(module, "POOL_KIND_MAP", KIND_MAP) < 0 ||
        PyModule_AddIntConstant(module, "POOL_KIND_IMAP", KIND_IMAP) < 0 ||
        PyModule_AddIntConstant(module, "POOL_KIND_UNORDERED", KIND_UNORDERED) < 0 ||
        PyModule_AddIntConstant(module, "POOL_KIND_MULTI", KIND_MULTI) < 0)
        return -1;
    return 0;
}

int cpy_pool_traverse(cpy_state *st, visitproc visit, void *arg) {
    Py_VISIT(st->pool_job_type);
    Py_VISIT(st->pool_tables);
    Py_VISIT(st->pool_fallbacks);
    return 0;
}

void cpy_pool_clear(cpy_state *st) {
    Py_CLEAR(st->pool_job_type);
    Py_CLEAR(st->pool_tables);
    Py_CLEAR(st->pool_fallbacks);
}
