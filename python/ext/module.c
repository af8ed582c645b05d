/*
 * _charmpy: the module, its state, the runtime binding, and the handlers
 * of the runtime messages of the Python layer (creations, calls queued on
 * this PE, Python-level runtime messages, reductions, timers).
 *
 * One process is one PE and imports this module once. Its state is
 * reached from handlers through the `user` pointer given at registration,
 * from the module's types through PyType_GetModuleState(), and from module
 * functions through PyModule_GetState(); nothing lives in file-scope
 * variables.
 */
#include "cpy.h"

#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "launcher/launcher.h"

static const char *const hook_names[CPY_NHOOKS] = {
#define CPY_HOOK_NAME(id, name) #name,
    CPY_HOOKS(CPY_HOOK_NAME)
#undef CPY_HOOK_NAME
};

cpy_state *cpy_state_of_type(PyTypeObject *tp) { return PyType_GetModuleState(tp); }

int cpy_runtime_missing(void) {
    PyErr_SetString(PyExc_RuntimeError,
                    "the charmpy runtime is not running: call charm.start(main) first");
    return -1;
}

PyObject *cpy_hook(cpy_state *st, int which, PyObject *const *args, size_t n) {
    PyObject *fn = st->hooks[which];
    if (!fn)
        return PyErr_Format(PyExc_RuntimeError, "charmpy: the Python layer gave no '%s' hook",
                            hook_names[which]);
    return PyObject_Vectorcall(fn, args, n, NULL);
}

int cpy_send_or_bcast(cpy_state *st, int pe, int handler, cp_msg *msg) {
    int rc = pe < 0 ? cp_bcast(st->ctx, handler, msg) : cp_send(st->ctx, pe, handler, msg);
    if (rc) {
        cp_msg_free(st->ctx, msg);
        PyErr_Format(rc == CP_ERANGE ? PyExc_IndexError : PyExc_RuntimeError,
                     "cannot send to PE %d: %s", pe, cp_strerror(rc));
        return -1;
    }
    return 0;
}

/* ---- handlers ------------------------------------------------------------- */

/* Hand a message's bytes to a hook; frees msg. */
static void bytes_to_hook(cpy_state *st, cp_msg *msg, int hook, const char *what) {
    PyObject *b = PyBytes_FromStringAndSize(cp_msg_data(msg), (Py_ssize_t)msg->size);
    cp_msg_free(st->ctx, msg);
    PyObject *r = b ? cpy_hook(st, hook, &b, 1) : NULL;
    Py_XDECREF(b);
    if (!r) {
        cpy_report_error(st, what);
        return;
    }
    Py_DECREF(r);
}

static void on_create(cp_ctx *ctx, cp_msg *msg, void *user) {
    (void)ctx;
    bytes_to_hook(user, msg, CPY_HOOK_ON_CREATE, "creating a chare collection");
}

/* A runtime message of the Python layer (future values, insert counts...). */
static void on_py(cp_ctx *ctx, cp_msg *msg, void *user) {
    (void)ctx;
    bytes_to_hook(user, msg, CPY_HOOK_ON_PY, "handling a runtime message");
}

/* Call pair = (callable, args) (a strong reference, consumed) and report
 * what it raised. */
static void call_pair(cpy_state *st, PyObject *pair, const char *what) {
    PyObject *fn = PyTuple_GET_ITEM(pair, 0);
    PyObject *r = PyObject_CallObject(fn, PyTuple_GET_ITEM(pair, 1));
    if (r) {
        Py_DECREF(r);
        Py_DECREF(pair);
        return;
    }
    PyObject *exc = cpy_take_exception(); /* before anything else runs Python */
    PyObject *qn = PyObject_GetAttrString(fn, "__qualname__");
    PyErr_Clear();
    char where[256];
    snprintf(where, sizeof where, "%s%s on PE %d", what,
             qn && PyUnicode_Check(qn) ? PyUnicode_AsUTF8(qn) : "a function",
             cp_my_pe(st->ctx));
    Py_XDECREF(qn);
    cpy_restore_exception(exc);
    Py_DECREF(pair);
    cpy_report_error(st, where);
}

/* A message carrying (callable, args) by reference, for this PE only. */
static void on_call(cp_ctx *ctx, cp_msg *msg, void *user) {
    (void)ctx;
    PyObject *pair;
    memcpy(&pair, cp_msg_data(msg), sizeof pair);
    cp_msg_free(((cpy_state *)user)->ctx, msg);
    call_pair(user, pair, "");
}

/* A timer's (or a quiescence request's) argument: the state and
 * (callable, args). */
typedef struct timer_arg {
    cpy_state *st;
    PyObject *pair; /* strong */
} timer_arg;

static void on_timer(cp_ctx *ctx, void *arg) {
    (void)ctx;
    timer_arg t = *(timer_arg *)arg;
    PyMem_RawFree(arg);
    call_pair(t.st, t.pair, "a timer callback: ");
}

/* Combine partial results of Python values: the combine hook (list of
 * bytes) returns the combined bytes. Numbers never leave C. */
static cp_msg *py_combine(cp_ctx *ctx, cp_msg *const *parts, int n, void *user) {
    cpy_state *st = user;
    int typed = 1;
    for (int i = 0; i < n && typed; i++)
        typed = cpy_typed_check(cp_msg_data(parts[i]), (size_t)parts[i]->size);
    if (typed) {
        int rc = cpy_typed_combine_msgs(parts, n);
        if (rc == 0)
            return parts[0];
        if (rc < 0) {
            cpy_report_error(st, "combining reduction contributions");
            return NULL;
        }
        /* 1: Python ints past int64, combined by the hook below */
    }
    PyObject *list = PyList_New(n);
    for (int i = 0; list && i < n; i++) {
        PyObject *b = PyBytes_FromStringAndSize(cp_msg_data(parts[i]),
                                                (Py_ssize_t)parts[i]->size);
        if (!b) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, b);
    }
    PyObject *r = list ? cpy_hook(st, CPY_HOOK_COMBINE, &list, 1) : NULL;
    Py_XDECREF(list);
    cp_msg *out = NULL;
    if (r && PyBytes_Check(r)) {
        out = cp_msg_alloc(ctx, (size_t)PyBytes_GET_SIZE(r));
        if (out)
            memcpy(cp_msg_data(out), PyBytes_AS_STRING(r), (size_t)PyBytes_GET_SIZE(r));
        else
            PyErr_NoMemory();
    } else if (r) {
        PyErr_SetString(PyExc_TypeError, "the combine hook must return bytes");
    }
    Py_XDECREF(r);
    if (!out) {
        cpy_report_error(st, "combining reduction contributions");
        return NULL;
    }
    return out;
}

/* The result of a reduction, at its root: on_reduction(stream, seq, bytes). */
static void on_redres(cp_ctx *ctx, cp_msg *msg, void *user) {
    (void)ctx;
    cpy_state *st = user;
    PyObject *a[3] = {PyLong_FromUnsignedLongLong(msg->stream),
                      PyLong_FromUnsignedLongLong(msg->seq),
                      PyBytes_FromStringAndSize(cp_msg_data(msg), (Py_ssize_t)msg->size)};
    cp_msg_free(st->ctx, msg);
    PyObject *r = a[0] && a[1] && a[2] ? cpy_hook(st, CPY_HOOK_ON_REDUCTION, a, 3) : NULL;
    for (int i = 0; i < 3; i++)
        Py_XDECREF(a[i]);
    if (!r) {
        cpy_report_error(st, "delivering a reduction result");
        return;
    }
    Py_DECREF(r);
}

/* ---- start and end ---------------------------------------------------------- */

/* numpy-heavy chares allocate and free the same big temporaries every
 * iteration. glibc serves a request at or above its mmap threshold with a
 * fresh mapping, and raises that threshold only to the size of a freed
 * mapping, so a temporary of the same size is mapped again, every page of
 * it faulted in and cleared: a 2-D Jacobi over 512x512 blocks ran 2.7x
 * slower than with the limits below (at most 32 MiB from mappings, glibc's
 * own ceiling for its threshold; the heap trimmed beyond 64 MiB free).
 * Charm++ brings its own allocator for the same reason. A PE is a process
 * the runtime owns, so it sets them at start, unless the user tuned malloc
 * (GLIBC_TUNABLES, MALLOC_*_) or set CHARMPY_MALLOC_TUNE=0. */
static void tune_malloc(void) {
#ifdef __GLIBC__
    const char *off = getenv("CHARMPY_MALLOC_TUNE");
    if ((off && strcmp(off, "0") == 0) || getenv("GLIBC_TUNABLES") ||
        getenv("MALLOC_MMAP_THRESHOLD_") || getenv("MALLOC_TRIM_THRESHOLD_"))
        return;
    (void)mallopt(M_MMAP_THRESHOLD, 32 << 20);
    (void)mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}

/* Take the hooks from dict `hooks` (every name must be there). */
static int set_hooks(cpy_state *st, PyObject *hooks) {
    for (int i = 0; i < CPY_NHOOKS; i++) {
        PyObject *fn = PyDict_GetItemString(hooks, hook_names[i]); /* borrowed */
        if (!fn || !PyCallable_Check(fn)) {
            PyErr_Format(PyExc_TypeError, "init(): hook '%s' is missing or not callable",
                         hook_names[i]);
            return -1;
        }
        Py_XSETREF(st->hooks[i], Py_NewRef(fn));
    }
    return 0;
}

/* The runtime flags given on the command line, as a dict name -> value. */
static PyObject *flags_dict(cp_ctx *ctx) {
    PyObject *d = PyDict_New();
    const char *name, *value;
    for (int i = 0; d && (name = cp_flag_at(ctx, i, &value)) != NULL; i++) {
        PyObject *v = PyUnicode_DecodeFSDefault(value);
        if (!v || PyDict_SetItemString(d, name, v) < 0)
            Py_CLEAR(d);
        Py_XDECREF(v);
    }
    return d;
}

static int register_handlers(cpy_state *st) {
    st->h_entry = cp_handler_register(st->ctx, cpy_on_entry, st);
    st->h_create = cp_handler_register(st->ctx, on_create, st);
    st->h_call = cp_handler_register(st->ctx, on_call, st);
    st->h_py = cp_handler_register(st->ctx, on_py, st);
    st->h_redres = cp_handler_register(st->ctx, on_redres, st);
    st->h_loc = cp_handler_register(st->ctx, cpy_on_location, st);
    st->h_pool_task = cp_handler_register(st->ctx, cpy_pool_on_task, st);
    st->h_pool_res = cp_handler_register(st->ctx, cpy_pool_on_results, st);
    st->red_py = cp_reducer_register(st->ctx, py_combine, st);
    if (st->h_entry < 0 || st->h_create < 0 || st->h_call < 0 || st->h_py < 0 ||
        st->h_redres < 0 || st->h_loc < 0 || st->h_pool_task < 0 || st->h_pool_res < 0 ||
        st->red_py < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* The names of the runtime's slices for this extension's handlers. */
static void name_handlers(cpy_state *st) {
    cp_ctx *c = st->ctx;
    cp_trace_handler_name(c, st->h_entry, "entry-method message");
    cp_trace_handler_name(c, st->h_create, "creation");
    cp_trace_handler_name(c, st->h_call, "call soon");
    cp_trace_handler_name(c, st->h_py, "runtime message");
    cp_trace_handler_name(c, st->h_redres, "reduction result");
    cp_trace_handler_name(c, st->h_loc, "location");
    cp_trace_handler_name(c, st->h_pool_task, "pool task");
    cp_trace_handler_name(c, st->h_pool_res, "pool results");
    st->tr_entry = cp_trace_string(c, "entry");
    st->tr_event = cp_trace_string(c, "event");
}

/* Tracing from options.trace (the +trace flag opened it in cp_init). */
static int start_trace(cpy_state *st, const char *trace) {
    if (trace && *trace && !cp_tracing(st->ctx)) {
        int rc = cp_trace_open(st->ctx, trace, 0);
        if (rc) {
            PyErr_Format(PyExc_RuntimeError, "charm.options.trace = '%s': %s", trace,
                         cp_trace_open_error(rc));
            return -1;
        }
    }
    st->tracing = cp_tracing(st->ctx);
    if (st->tracing)
        name_handlers(st);
    return 0;
}

int cpy_trace_index(PyObject *key, int64_t idx[3]) {
    if (!key)
        return 0;
    if (PyLong_Check(key)) {
        int overflow;
        idx[0] = PyLong_AsLongLongAndOverflow(key, &overflow);
        if (PyErr_Occurred())
            PyErr_Clear();
        return overflow ? 0 : 1;
    }
    if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) > 3)
        return 0;
    int n = (int)PyTuple_GET_SIZE(key);
    for (int i = 0; i < n; i++) {
        PyObject *v = PyTuple_GET_ITEM(key, i);
        int overflow;
        idx[i] = PyLong_Check(v) ? PyLong_AsLongLongAndOverflow(v, &overflow) : 0;
        if (PyErr_Occurred())
            PyErr_Clear();
    }
    return n;
}

void cpy_trace_instant(cpy_state *st, const char *what, PyObject *key, double value) {
    if (!st->tracing || !st->ctx)
        return;
    int64_t idx[3];
    int n = cpy_trace_index(key, idx);
    cp_trace_instant(st->ctx, cp_trace_string(st->ctx, what), st->tr_event, idx, n, value);
}

/* init(hooks, argv, local_optim, profiling, pickle_protocol, trace) ->
 * (pe, npes, argv without runtime flags, {flag: value}) */
static PyObject *mod_init(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *hooks, *argv;
    int local_optim = 1, profiling = 0, protocol = 5;
    const char *trace = NULL;
    if (!PyArg_ParseTuple(args, "O!O!|ppiz", &PyDict_Type, &hooks, &PyList_Type, &argv,
                          &local_optim, &profiling, &protocol, &trace))
        return NULL;
    if (st->ctx)
        return PyErr_Format(PyExc_RuntimeError, "charm.start() was already called in this "
                                                "process");
    if (set_hooks(st, hooks) < 0)
        return NULL;
    st->local_optim = local_optim;
    st->pickle_protocol = protocol < 0 || protocol > 5 ? 5 : protocol;
    /* cp_init removes runtime flags (+p4, ++quiet...) from a C argv. */
    Py_ssize_t n = PyList_GET_SIZE(argv);
    char **cargv = PyMem_Calloc((size_t)n + 1, sizeof *cargv);
    if (!cargv)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        cargv[i] = (char *)PyUnicode_AsUTF8(PyList_GET_ITEM(argv, i));
        if (!cargv[i]) {
            PyMem_Free(cargv);
            return NULL;
        }
    }
    int cargc = (int)n;
    char **pargv = cargv;
    tune_malloc();
    int rc = cp_init(&st->ctx, &cargc, &pargv);
    if (rc) {
        PyMem_Free(cargv);
        st->ctx = NULL;
        return PyErr_Format(PyExc_RuntimeError, "cannot start the charmpy runtime: %s",
                            cp_strerror(rc));
    }
    PyObject *kept = PyList_New(cargc);
    for (int i = 0; kept && i < cargc; i++)
        PyList_SET_ITEM(kept, i, PyUnicode_FromString(pargv[i]));
    PyMem_Free(cargv);
    PyObject *flags = kept ? flags_dict(st->ctx) : NULL;
    if (!flags || register_handlers(st) < 0) {
        Py_XDECREF(kept);
        Py_XDECREF(flags);
        return NULL;
    }
    st->profiling = profiling || cp_flag(st->ctx, "+stats") != NULL;
    cp_set_profiling(st->ctx, st->profiling); /* the runtime times sends and receives */
    st->t_start = cp_wall_time();
    st->main_secs = 0;
    if (start_trace(st, trace) < 0) {
        Py_XDECREF(kept);
        Py_XDECREF(flags);
        return NULL;
    }
    return Py_BuildValue("iiNN", cp_my_pe(st->ctx), cp_num_pes(st->ctx), kept, flags);
}

static void flush_std(const char *name) {
    PyObject *f = PySys_GetObject(name); /* borrowed */
    PyObject *r = f ? PyObject_CallMethod(f, "flush", NULL) : NULL;
    Py_XDECREF(r);
    PyErr_Clear();
}

static PyObject *mod_run(PyObject *module, PyObject *noargs) {
    (void)noargs;
    cpy_state *st = PyModule_GetState(module);
    if (cpy_need_runtime(st))
        return NULL;
    int rc = 0;
    /* One clock on a host; across hosts, each PE's offset to PE 0
     * (CHARMPY_TRACE_SYNC=1 measures it on one host too). */
    const char *sync = getenv("CHARMPY_TRACE_SYNC");
    if (st->tracing && (cp_num_hosts(st->ctx) > 1 || (sync && strcmp(sync, "1") == 0)))
        rc = cp_trace_sync(st->ctx);
    if (rc == 0 && !PyErr_Occurred())
        rc = cp_run(st->ctx);
    if (PyErr_Occurred())
        return NULL;
    cpy_loc_clear(st);
    /* Python's buffered output first: under mpirun, a non-zero exit of one
     * rank gets the others killed as soon as it leaves. */
    flush_std("stdout");
    flush_std("stderr");
    int code = cp_finalize(st->ctx);
    st->ctx = NULL;
    if (rc < 0)
        return PyErr_Format(PyExc_RuntimeError, "scheduler failed: %s", cp_strerror(rc));
    return PyLong_FromLong(code);
}

static PyObject *mod_exit(PyObject *module, PyObject *arg) {
    cpy_state *st = PyModule_GetState(module);
    long code = PyLong_AsLong(arg);
    if ((code == -1 && PyErr_Occurred()) || cpy_need_runtime(st))
        return NULL;
    cp_exit(st->ctx, (int)code);
    Py_RETURN_NONE;
}

static PyObject *mod_abort(PyObject *module, PyObject *arg) {
    cpy_state *st = PyModule_GetState(module);
    const char *text = PyUnicode_AsUTF8(arg);
    if (!text)
        return NULL;
    flush_std("stdout");
    if (!st->ctx) {
        fprintf(stderr, "charmpy: abort: %s\n", text);
        exit(1);
    }
    cp_abort(st->ctx, "%s", text);
}

/* ---- queries ---------------------------------------------------------------- */

static PyObject *mod_my_pe(PyObject *module, PyObject *noargs) {
    (void)noargs;
    cpy_state *st = PyModule_GetState(module);
    return PyLong_FromLong(st->ctx ? cp_my_pe(st->ctx) : 0);
}

static PyObject *mod_num_pes(PyObject *module, PyObject *noargs) {
    (void)noargs;
    cpy_state *st = PyModule_GetState(module);
    return PyLong_FromLong(st->ctx ? cp_num_pes(st->ctx) : 1);
}

static PyObject *mod_transport(PyObject *module, PyObject *noargs) {
    (void)noargs;
    cpy_state *st = PyModule_GetState(module);
    if (cpy_need_runtime(st))
        return NULL;
    return PyUnicode_FromString(cp_transport(st->ctx));
}

/* host_table() -> (my_host, num_hosts, tuple of each PE's host) */
static PyObject *mod_host_table(PyObject *module, PyObject *noargs) {
    (void)noargs;
    cpy_state *st = PyModule_GetState(module);
    if (cpy_need_runtime(st))
        return NULL;
    int n = cp_num_pes(st->ctx);
    PyObject *t = PyTuple_New(n);
    for (int pe = 0; t && pe < n; pe++) {
        PyObject *h = PyLong_FromLong(cp_host_of(st->ctx, pe));
        if (!h) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, pe, h);
    }
    if (!t)
        return NULL;
    return Py_BuildValue("iiN", cp_my_host(st->ctx), cp_num_hosts(st->ctx), t);
}

/* trace_instant(what, value=0.0): an instant event on this PE's track
 * (load-balancing steps); nothing when not tracing. */
static PyObject *mod_trace_instant(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    const char *what;
    double value = 0;
    if (!PyArg_ParseTuple(args, "s|d", &what, &value))
        return NULL;
    cpy_trace_instant(st, what, NULL, value);
    Py_RETURN_NONE;
}

/* trace_merge(path, npes, wait_secs) -> how many PEs had no part: join
 * <path>.<pe>.part into <path> (python -m charmpy.trace). */
static PyObject *mod_trace_merge(PyObject *module, PyObject *args) {
    (void)module;
    const char *path;
    int npes;
    double wait = 0;
    if (!PyArg_ParseTuple(args, "si|d", &path, &npes, &wait))
        return NULL;
    if (npes < 1)
        return PyErr_Format(PyExc_ValueError, "trace_merge: npes must be at least 1");
    int missing = 0, rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cp_trace_merge(path, npes, wait, &missing);
    Py_END_ALLOW_THREADS
    if (rc)
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
    return PyLong_FromLong(missing);
}

/* tracing() -> the trace's path, or None */
static PyObject *mod_tracing(PyObject *module, PyObject *noargs) {
    (void)noargs;
    cpy_state *st = PyModule_GetState(module);
    const char *p = st->ctx ? cp_trace_path(st->ctx) : NULL;
    if (!p)
        Py_RETURN_NONE;
    return PyUnicode_FromString(p);
}

static PyObject *mod_wall_time(PyObject *module, PyObject *noargs) {
    (void)module;
    (void)noargs;
    return PyFloat_FromDouble(cp_wall_time());
}

/* stats() -> (counters dict, profiling, [(class, method, calls, total, max)])
 * for this PE; the list holds the entry methods that ran (profiling on).
 * The dict: cp_counters' message counts and times (send_secs and recv_secs
 * 0 with profiling off), wall_secs since init and main_secs. */
static PyObject *mod_stats(PyObject *module, PyObject *noargs) {
    (void)noargs;
    cpy_state *st = PyModule_GetState(module);
    if (cpy_need_runtime(st))
        return NULL;
    cp_counters c;
    cp_get_counters(st->ctx, &c);
    PyObject *list = PyList_New(0);
    PyObject *cls, *ent;
    Py_ssize_t pos = 0;
    while (list && PyDict_Next(st->entries, &pos, &cls, &ent)) {
        PyObject *names = PyTuple_GET_ITEM(ent, 1);
        const cpy_emstat *s = (const cpy_emstat *)PyByteArray_AS_STRING(PyTuple_GET_ITEM(ent, 3));
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
            if (!s[i].calls)
                continue;
            PyObject *row = Py_BuildValue("OOKdd", cls, PyTuple_GET_ITEM(names, i),
                                          (unsigned long long)s[i].calls, s[i].total, s[i].max);
            if (!row || PyList_Append(list, row) < 0)
                Py_CLEAR(list);
            Py_XDECREF(row);
            if (!list)
                break;
        }
    }
    if (!list)
        return NULL;
    return Py_BuildValue("{sKsKsKsKsKsdsdsdsdsd}O N", "msgs_created",
                         (unsigned long long)c.msgs_created, "msgs_sent",
                         (unsigned long long)c.msgs_sent, "msgs_processed",
                         (unsigned long long)c.msgs_processed, "bytes_sent",
                         (unsigned long long)c.bytes_sent, "bytes_processed",
                         (unsigned long long)c.bytes_processed, "wall_secs",
                         cp_wall_time() - st->t_start, "idle_secs", c.idle_secs, "send_secs",
                         c.send_secs, "recv_secs", c.recv_secs, "main_secs", st->main_secs,
                         st->profiling ? Py_True : Py_False, list);
}

/* stats_add(cls, method_name, seconds): time a coroutine spent running
 * after it resumed (profiling on); cls None: main's. */
static PyObject *mod_stats_add(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *cls, *name;
    double secs;
    if (!PyArg_ParseTuple(args, "OOd", &cls, &name, &secs))
        return NULL;
    if (cls == Py_None) {   /* main's */
        st->main_secs += secs;
        Py_RETURN_NONE;
    }
    PyObject *ent = cpy_entries(st, cls);
    PyObject *code = ent ? PyDict_GetItemWithError(PyTuple_GET_ITEM(ent, 0), name) : NULL;
    if (!code)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    cpy_emstat *s = (cpy_emstat *)PyByteArray_AS_STRING(PyTuple_GET_ITEM(ent, 3)) +
                    PyLong_AsLong(code);
    s->total += secs;
    if (secs > s->max)
        s->max = secs;
    Py_RETURN_NONE;
}

/* ---- quiescence detection ------------------------------------------------------ */

static void on_quiescence(cp_ctx *ctx, void *arg) {
    (void)ctx;
    timer_arg t = *(timer_arg *)arg;
    PyMem_RawFree(arg);
    call_pair(t.st, t.pair, "the quiescence callback ");
}

/* qd_start(callable, exclusive=False): call callable() from the scheduler
 * once the job is quiescent (cp_qd_start; cp_qd_start_exclusive: answered
 * alone, the other requests waiting for the next quiescence). */
static PyObject *mod_qd_start(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *fn;
    int exclusive = 0;
    if (!PyArg_ParseTuple(args, "O|p", &fn, &exclusive) || cpy_need_runtime(st))
        return NULL;
    timer_arg *t = PyMem_RawMalloc(sizeof *t);
    if (!t)
        return PyErr_NoMemory();
    t->st = st;
    t->pair = Py_BuildValue("(O())", fn);
    if (!t->pair) {
        PyMem_RawFree(t);
        return NULL;
    }
    if ((exclusive ? cp_qd_start_exclusive : cp_qd_start)(st->ctx, on_quiescence, t)) {
        Py_DECREF(t->pair);
        PyMem_RawFree(t);
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

/* qd_hold(n) / qd_release(n): n messages kept aside by the Python layer (the
 * job is not quiescent while they wait), then delivered or dropped. */
static PyObject *qd_count(PyObject *module, PyObject *arg, int hold) {
    cpy_state *st = PyModule_GetState(module);
    unsigned long long n = PyLong_AsUnsignedLongLong(arg);
    if ((n == (unsigned long long)-1 && PyErr_Occurred()) || cpy_need_runtime(st))
        return NULL;
    if (hold)
        cp_qd_create(st->ctx, n);
    else
        cp_qd_process(st->ctx, n);
    Py_RETURN_NONE;
}

static PyObject *mod_qd_hold(PyObject *module, PyObject *arg) { return qd_count(module, arg, 1); }

static PyObject *mod_qd_release(PyObject *module, PyObject *arg) {
    return qd_count(module, arg, 0);
}

/* in_broadcast() -> whether a broadcast is being delivered to this PE's
 * members (migrations wait until it was delivered to all of them). */
static PyObject *mod_in_broadcast(PyObject *module, PyObject *noargs) {
    (void)noargs;
    return PyBool_FromLong(((cpy_state *)PyModule_GetState(module))->in_bcast > 0);
}

/* set_migrating(): a chare asked to migrate; the migrations hook runs after
 * the current entry method. */
static PyObject *mod_set_migrating(PyObject *module, PyObject *noargs) {
    (void)noargs;
    ((cpy_state *)PyModule_GetState(module))->migrating = 1;
    Py_RETURN_NONE;
}

/* ---- sending ------------------------------------------------------------------ */

/* call_soon(callable, args): run callable(*args) on this PE from the
 * scheduler, after the messages already queued. */
static PyObject *mod_call_soon(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *fn, *fargs;
    if (!PyArg_ParseTuple(args, "OO!", &fn, &PyTuple_Type, &fargs) || cpy_need_runtime(st))
        return NULL;
    PyObject *pair = PyTuple_Pack(2, fn, fargs);
    if (!pair)
        return NULL;
    cp_msg *msg = cp_msg_alloc(st->ctx, sizeof pair);
    if (!msg) {
        Py_DECREF(pair);
        return PyErr_NoMemory();
    }
    memcpy(cp_msg_data(msg), &pair, sizeof pair);
    if (cpy_send_or_bcast(st, cp_my_pe(st->ctx), st->h_call, msg) < 0) {
        Py_DECREF(pair);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* call_after(secs, callable, args, background=False): run callable(*args)
 * on this PE from the scheduler once `secs` seconds have passed (background:
 * the pending timer does not hold quiescence back). */
static PyObject *mod_call_after(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    double secs;
    PyObject *fn, *fargs;
    int background = 0;
    if (!PyArg_ParseTuple(args, "dOO!|p", &secs, &fn, &PyTuple_Type, &fargs, &background) ||
        cpy_need_runtime(st))
        return NULL;
    if (!(secs >= 0))
        return PyErr_Format(PyExc_ValueError, "the delay must be >= 0 seconds, got %R",
                            PyTuple_GET_ITEM(args, 0));
    timer_arg *t = PyMem_RawMalloc(sizeof *t);
    if (!t)
        return PyErr_NoMemory();
    t->st = st;
    t->pair = PyTuple_Pack(2, fn, fargs);
    if (!t->pair) {
        PyMem_RawFree(t);
        return NULL;
    }
    if ((background ? cp_call_background : cp_call_after)(st->ctx, secs, on_timer, t)) {
        Py_DECREF(t->pair);
        PyMem_RawFree(t);
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

/* The bytes of args[1] in a message to `handler` on PE args[0] (every PE
 * when it is negative). */
static PyObject *send_bytes(cpy_state *st, PyObject *args, int handler) {
    int pe;
    Py_buffer b;
    if (!PyArg_ParseTuple(args, "iy*", &pe, &b))
        return NULL;
    if (cpy_need_runtime(st)) {
        PyBuffer_Release(&b);
        return NULL;
    }
    cp_msg *msg = cp_msg_alloc(st->ctx, (size_t)b.len);
    if (!msg) {
        PyBuffer_Release(&b);
        return PyErr_NoMemory();
    }
    memcpy(cp_msg_data(msg), b.buf, (size_t)b.len);
    PyBuffer_Release(&b);
    if (cpy_send_or_bcast(st, pe, handler, msg) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* send_create(pe, payload): a creation request for the on_create hook. */
static PyObject *mod_send_create(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    return send_bytes(st, args, st->h_create);
}

/* send_py(pe, payload): a runtime message for the on_py hook. */
static PyObject *mod_send_py(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    return send_bytes(st, args, st->h_py);
}

/* reduce_among(stream, payload, pes): contribute payload (bytes of a Python
 * value) to the next reduction of `stream` among the PEs in the tuple pes;
 * the result reaches the on_reduction hook on pes[0]. */
static PyObject *mod_reduce_among(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    unsigned long long stream;
    Py_buffer b;
    PyObject *pes;
    if (!PyArg_ParseTuple(args, "Ky*O!", &stream, &b, &PyTuple_Type, &pes))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(pes);
    int *list = PyMem_Malloc((size_t)(n ? n : 1) * sizeof *list);
    cp_msg *msg = NULL;
    if (!list || cpy_need_runtime(st))
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        list[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(pes, i));
        if (PyErr_Occurred())
            goto fail;
    }
    msg = cp_msg_alloc(st->ctx, (size_t)b.len);
    if (!msg) {
        PyErr_NoMemory();
        goto fail;
    }
    memcpy(cp_msg_data(msg), b.buf, (size_t)b.len);
    int rc = cp_reduce_among(st->ctx, msg, stream, st->red_py, st->h_redres, list, (int)n);
    if (rc) {
        cp_msg_free(st->ctx, msg);
        PyErr_Format(PyExc_RuntimeError, "cannot contribute to the reduction: %s",
                     cp_strerror(rc));
        goto fail;
    }
    PyMem_Free(list);
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
fail:
    PyMem_Free(list);
    PyBuffer_Release(&b);
    return NULL;
}

/* launch(argv): run charmrun's launcher in this process; returns the exit
 * code. */
static PyObject *mod_launch(PyObject *module, PyObject *arg) {
    (void)module;
    if (!PyList_Check(arg))
        return PyErr_Format(PyExc_TypeError, "launch() takes the argument list");
    Py_ssize_t n = PyList_GET_SIZE(arg);
    char **argv = PyMem_Calloc((size_t)n + 1, sizeof *argv);
    if (!argv)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++)
        if (!(argv[i] = (char *)PyUnicode_AsUTF8(PyList_GET_ITEM(arg, i)))) {
            PyMem_Free(argv);
            return NULL;
        }
    flush_std("stdout");
    int code = cp_launcher_main((int)n, argv);
    PyMem_Free(argv);
    return PyLong_FromLong(code);
}

static PyMethodDef mod_methods[] = {
    {"init", mod_init, METH_VARARGS,
     "init(hooks, argv, local_optim, profiling, pickle_protocol) -> (pe, npes, argv, flags)"},
    {"run", mod_run, METH_NOARGS, "run the scheduler until the job exits; exit code"},
    {"exit", mod_exit, METH_O, "exit(code): end the whole job"},
    {"abort", mod_abort, METH_O, "abort(message): end the job with an error"},
    {"my_pe", mod_my_pe, METH_NOARGS, NULL},
    {"num_pes", mod_num_pes, METH_NOARGS, NULL},
    {"wall_time", mod_wall_time, METH_NOARGS, NULL},
    {"trace_instant", mod_trace_instant, METH_VARARGS,
     "trace_instant(what, value=0.0): an instant event in this PE's trace"},
    {"trace_merge", mod_trace_merge, METH_VARARGS,
     "trace_merge(path, npes, wait_secs=0) -> PEs without a part: join the parts"},
    {"tracing", mod_tracing, METH_NOARGS, "tracing() -> the trace's path, or None"},
    {"host_table", mod_host_table, METH_NOARGS, "(my_host, num_hosts, host of each PE)"},
    {"transport", mod_transport, METH_NOARGS, "the machine layer in use: shm or mpi"},
    {"stats", mod_stats, METH_NOARGS, "(counters, profiling, per-method rows) of this PE"},
    {"stats_add", mod_stats_add, METH_VARARGS, NULL},
    {"qd_start", mod_qd_start, METH_VARARGS,
     "qd_start(callable, exclusive=False): call it at quiescence"},
    {"set_migrating", mod_set_migrating, METH_NOARGS, NULL},
    {"in_broadcast", mod_in_broadcast, METH_NOARGS, NULL},
    {"qd_hold", mod_qd_hold, METH_O, "qd_hold(n): n messages kept aside"},
    {"qd_release", mod_qd_release, METH_O, "qd_release(n): n kept messages delivered"},
    {"call_soon", mod_call_soon, METH_VARARGS, NULL},
    {"call_after", mod_call_after, METH_VARARGS, NULL},
    {"send_create", mod_send_create, METH_VARARGS, NULL},
    {"send_py", mod_send_py, METH_VARARGS, NULL},
    {"reduce_among", mod_reduce_among, METH_VARARGS, NULL},
    {"launch", mod_launch, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

/* ---- the module --------------------------------------------------------------- */

static int mod_exec(PyObject *module) {
    cpy_state *st = PyModule_GetState(module);
    memset(st, 0, sizeof *st);
    st->pickle_protocol = 5;
    PyObject *pickle = PyImport_ImportModule("pickle");
    if (!pickle)
        return -1;
    st->dumps = PyObject_GetAttrString(pickle, "dumps");
    st->loads = PyObject_GetAttrString(pickle, "loads");
    Py_DECREF(pickle);
    st->entries = PyDict_New();
    st->held = PyDict_New();
    st->str_procNum = PyUnicode_InternFromString("procNum");
    st->str_mig = PyUnicode_InternFromString("_charmpy_mig");
    if (!st->dumps || !st->loads || !st->entries || !st->held || !st->str_procNum ||
        !st->str_mig)
        return -1;
    if (cpy_loc_init(st) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    if (PyModule_AddObjectRef(module, "held", st->held) < 0)
        return -1;
    if (cpy_proxy_types_init(module, st) < 0 || cpy_args_init(module, st) < 0 ||
        cpy_pool_init(module, st) < 0 || cpy_chan_init(module, st) < 0 ||
        cpy_sect_init(module, st) < 0 || cpy_contrib_init(module) < 0)
        return -1;
    if (PyModule_AddFunctions(module, cpy_reducer_methods) < 0 ||
        PyModule_AddFunctions(module, cpy_codec_methods) < 0 ||
        PyModule_AddFunctions(module, cpy_location_methods) < 0 ||
        PyModule_AddFunctions(module, cpy_balance_methods) < 0)
        return -1;
    return 0;
}

static int mod_traverse(PyObject *module, visitproc visit, void *arg) {
    cpy_state *st = PyModule_GetState(module);
    if (!st)
        return 0;
    for (int i = 0; i < CPY_NHOOKS; i++)
        Py_VISIT(st->hooks[i]);
    Py_VISIT(st->dumps);
    Py_VISIT(st->loads);
    Py_VISIT(st->proxy_type);
    Py_VISIT(st->caller_type);
    Py_VISIT(st->owner_type);
    Py_VISIT(st->entries);
    Py_VISIT(st->held);
    Py_VISIT(st->str_procNum);
    Py_VISIT(st->str_mig);
    int rc = cpy_codec_traverse(&st->codec, visit, arg);
    if (!rc)
        rc = cpy_pool_traverse(st, visit, arg);
    if (!rc)
        rc = cpy_chan_traverse(st, visit, arg);
    if (!rc)
        rc = cpy_sect_traverse(st, visit, arg);
    return rc ? rc : cpy_loc_traverse(st, visit, arg);
}

static int mod_clear(PyObject *module) {
    cpy_state *st = PyModule_GetState(module);
    if (!st)
        return 0;
    for (int i = 0; i < CPY_NHOOKS; i++)
        Py_CLEAR(st->hooks[i]);
    Py_CLEAR(st->dumps);
    Py_CLEAR(st->loads);
    Py_CLEAR(st->proxy_type);
    Py_CLEAR(st->caller_type);
    Py_CLEAR(st->owner_type);
    Py_CLEAR(st->entries);
    Py_CLEAR(st->held);
    Py_CLEAR(st->str_procNum);
    Py_CLEAR(st->str_mig);
    cpy_codec_clear(&st->codec);
    cpy_pool_clear(st);
    cpy_chan_clear(st);
    cpy_sect_clear(st);
    cpy_loc_clear(st);
    return 0;
}

static void mod_free(void *module) {
    cpy_state *st = PyModule_GetState(module);
    if (!st)
        return;
    mod_clear(module);
    cpy_loc_free(st);
    cpy_lb_free(st);
}

static PyModuleDef_Slot mod_slots[] = {
    {Py_mod_exec, mod_exec},
    {0, NULL},
};

static struct PyModuleDef mod_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "charmpy._charmpy",
    .m_doc = "charmpy's C core: the runtime binding, proxies and dispatch.",
    .m_size = sizeof(cpy_state),
    .m_methods = mod_methods,
    .m_slots = mod_slots,
    .m_traverse = mod_traverse,
    .m_clear = mod_clear,
    .m_free = mod_free,
};

PyMODINIT_FUNC PyInit__charmpy(void);
PyMODINIT_FUNC PyInit__charmpy(void) { return PyModuleDef_Init(&mod_def); }
