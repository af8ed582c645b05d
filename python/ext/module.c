/*
 * _charmpy: the module, its state, the runtime binding and the handlers that
 * run Python code when messages arrive.
 *
 * One process is one PE and imports this module once, so the runtime's
 * context is per process: the module state is reached from handlers through
 * the `user` pointer given at registration, and from the proxy types through
 * cpy_get_state(), which returns the state of the single module instance.
 */
#include "cpy.h"

#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "launcher/launcher.h"

static cpy_state *the_state; /* the state of the imported module (borrowed) */

cpy_state *cpy_get_state(void) { return the_state; }

/* The pending exception, normalized, with its traceback attached (new
 * reference), and its inverse: PyErr_GetRaisedException for 3.11. */
static PyObject *take_exception(void) {
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (v && tb)
        PyException_SetTraceback(v, tb);
    Py_XDECREF(t);
    Py_XDECREF(tb);
    return v;
}

static void restore_exception(PyObject *v) {
    if (!v) {
        PyErr_SetString(PyExc_SystemError, "charmpy: an error was lost on its way");
        return;
    }
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(v)), v, PyException_GetTraceback(v));
}

static int need_runtime(cpy_state *st) {
    if (st->ctx)
        return 0;
    PyErr_SetString(PyExc_RuntimeError,
                    "the charmpy runtime is not running: call charm.start(main) first");
    return -1;
}

/* ---- errors in handlers ------------------------------------------------- */

/* An exception escaped Python code run by a handler: let the Python side
 * print it with its context and end the job. Never returns normally when
 * the Python side works as it should. */
static void report_error(cpy_state *st, const char *where) {
    PyObject *exc = take_exception();
    if (!exc) /* a bug of ours: still end the job with what we know */
        exc = PyObject_CallFunction(PyExc_SystemError, "s", "an error was lost on its way");
    if (exc && PyErr_GivenExceptionMatches(exc, PyExc_SystemExit)) {
        /* sys.exit() inside an entry method ends the job like charm.exit(). */
        PyObject *code = PyObject_GetAttrString(exc, "code");
        long c = code && PyLong_Check(code) ? PyLong_AsLong(code) : (code == Py_None ? 0 : 1);
        Py_XDECREF(code);
        Py_DECREF(exc);
        PyErr_Clear();
        cp_exit(st->ctx, (int)c);
        return;
    }
    PyObject *r = st->runtime ? PyObject_CallMethod(st->runtime, "_report_error", "Os", exc,
                                                    where)
                              : NULL;
    if (!r) {
        PyErr_Print();
        restore_exception(exc);
        exc = NULL;
        PyErr_Print();
        cp_abort(st->ctx, "uncaught exception in %s", where);
    }
    Py_XDECREF(r);
    Py_XDECREF(exc);
    cp_abort(st->ctx, "uncaught exception in %s", where);
}

/* ---- entry-method messages ---------------------------------------------- */


static int buffer_message(cpy_state *st, PyObject *key, cp_msg *msg) {
    PyObject *list = PyDict_GetItemWithError(st->pending, key); /* borrowed */
    if (!list) {
        if (PyErr_Occurred())
            return -1;
        list = PyList_New(0);
        if (!list || PyDict_SetItem(st->pending, key, list) < 0) {
            Py_XDECREF(list);
            return -1;
        }
        Py_DECREF(list);
    }
    PyObject *ptr = PyLong_FromVoidPtr(msg);
    if (!ptr)
        return -1;
    int rc = PyList_Append(list, ptr);
    Py_DECREF(ptr);
    return rc;
}

/* The arguments of a message, as new references (kwargs NULL when there
 * are none); takes the message. */
static int take_args(cpy_state *st, cp_msg *msg, PyObject **args, PyObject **kwargs) {
    em_hdr *h = cp_msg_data(msg);
    if (h->flags & EM_BYREF) {
        cpy_byref_take(h + 1, args, kwargs); /* the message's references */
        cp_msg_free(st->ctx, msg);
        return 0;
    }
    return cpy_take_args(st, msg, sizeof *h, args, kwargs);
}

static void describe_target(char *buf, size_t n, PyObject *obj, PyObject *key,
                            PyObject *name, int pe) {
    PyObject *krepr = key ? PyObject_Repr(key) : NULL;
    const char *ks = krepr ? PyUnicode_AsUTF8(krepr) : NULL;
    snprintf(buf, n, "%s%s%s%s.%s on PE %d", Py_TYPE(obj)->tp_name, ks ? "[" : "",
             ks ? ks : "", ks ? "]" : "", PyUnicode_AsUTF8(name), pe);
    Py_XDECREF(krepr);
    PyErr_Clear();
}

/* After an entry method ran on `obj`: if the chare holds messages (@when) or
 * waiting coroutines, let the Python side re-check their conditions. */
static void recheck_held(cpy_state *st, PyObject *obj) {
    if (PyDict_GET_SIZE(st->held) == 0)
        return;
    PyObject *id = PyLong_FromVoidPtr(obj);
    int held = id ? PyDict_Contains(st->held, id) : -1;
    Py_XDECREF(id);
    PyObject *r = held > 0 ? PyObject_CallMethod(st->runtime, "_recheck", "O", obj)
                           : (held == 0 ? Py_NewRef(Py_None) : NULL);
    if (!r) {
        report_error(st, "re-checking @when conditions");
        return;
    }
    Py_DECREF(r);
}

/* Run entry method number `method` of `obj`. `reply` (borrowed, or NULL)
 * is the future to fulfil: (fut_pe, fut_id, flags). Plain methods are
 * called here; coroutines and @when methods go through the Python side. */
static void invoke(cpy_state *st, PyObject *obj, PyObject *key, int method, PyObject *args,
                   PyObject *kwargs, PyObject *reply, PyObject *collect) {
    PyObject *ent = cpy_entries(st, (PyObject *)Py_TYPE(obj));
    PyObject *name = NULL, *r = NULL;
    long flags = 0;
    if (!ent)
        goto error;
    PyObject *names = PyTuple_GET_ITEM(ent, 1);
    if (method >= PyTuple_GET_SIZE(names)) {
        PyErr_Format(PyExc_RuntimeError,
                     "message for entry method #%d of %s, which has %zd: the PEs disagree "
                     "on the class (is the same program running everywhere?)",
                     method, Py_TYPE(obj)->tp_name, PyTuple_GET_SIZE(names));
        goto error;
    }
    name = PyTuple_GET_ITEM(names, method); /* borrowed */
    flags = PyLong_AsLong(PyTuple_GET_ITEM(PyTuple_GET_ITEM(ent, 2), method));
    if (flags & (ENTRY_CORO | ENTRY_WHEN)) {
        r = PyObject_CallMethod(st->runtime, "_invoke_special", "OOOOOOl", obj, key, name,
                                args, kwargs ? kwargs : Py_None, reply ? reply : Py_None,
                                flags);
        if (!r)
            goto error;
        Py_DECREF(r);
        recheck_held(st, obj);
        return;
    }
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    if (!kwargs && nargs < 8) {
        /* The common case: obj.name(*args) without a bound-method object. */
        PyObject *stack[9];
        stack[0] = obj;
        for (Py_ssize_t i = 0; i < nargs; i++)
            stack[i + 1] = PyTuple_GET_ITEM(args, i);
        r = PyObject_VectorcallMethod(name, stack, (size_t)(nargs + 1), NULL);
    } else {
        PyObject *meth = PyObject_GetAttr(obj, name);
        r = meth ? PyObject_Call(meth, args, kwargs) : NULL;
        Py_XDECREF(meth);
    }
    if (collect) {
        /* A broadcast with a future: this PE sends all its members' results
         * in one message (see deliver_entry). */
        PyObject *exc = r ? NULL : take_exception(), *where_s = NULL;
        if (exc) {
            char where[512];
            describe_target(where, sizeof where, obj, key, name, cp_my_pe(st->ctx));
            where_s = PyUnicode_FromString(where);
        }
        PyObject *item = PyTuple_Pack(4, key, r ? r : Py_None, exc ? exc : Py_None,
                                      where_s ? where_s : Py_None);
        Py_XDECREF(exc);
        Py_XDECREF(where_s);
        Py_XDECREF(r);
        if (!item || PyList_Append(collect, item) < 0) {
            Py_XDECREF(item);
            goto error;
        }
        Py_DECREF(item);
        recheck_held(st, obj);
        return;
    }
    if (reply) {
        /* The caller holds a future: it gets the value or the exception. */
        PyObject *exc = r ? NULL : take_exception(), *where_s = NULL;
        if (exc) {
            char where[512];
            describe_target(where, sizeof where, obj, key, name, cp_my_pe(st->ctx));
            where_s = PyUnicode_FromString(where);
        }
        PyObject *rr = PyObject_CallMethod(st->runtime, "_reply", "OOOOO", reply,
                                           r ? r : Py_None, exc ? exc : Py_None, obj,
                                           where_s ? where_s : Py_None);
        Py_XDECREF(where_s);
        Py_XDECREF(exc);
        Py_XDECREF(r);
        if (!rr)
            goto error;
        Py_DECREF(rr);
        recheck_held(st, obj);
        return;
    }
    if (!r)
        goto error;
    Py_DECREF(r);
    recheck_held(st, obj);
    return;
error: {
    char where[512];
    PyObject *exc = take_exception();
    PyObject *nm = name ? Py_NewRef(name) : PyUnicode_FromFormat("#%d", method);
    describe_target(where, sizeof where, obj, key, nm, cp_my_pe(st->ctx));
    Py_XDECREF(nm);
    restore_exception(exc);
    report_error(st, where);
}
}

/* Free a message that will not be delivered (it may own its arguments). */
static void discard_message(cpy_state *st, cp_msg *msg) {
    em_hdr *h = cp_msg_data(msg);
    if (h->flags & EM_BYREF) {
        PyObject *args, *kwargs;
        cpy_byref_take(h + 1, &args, &kwargs);
        Py_DECREF(args);
        Py_XDECREF(kwargs);
    }
    cp_msg_free(st->ctx, msg);
}

/* The member index a message names: an int (group PE, 0 for a single chare)
 * or a tuple (array). New reference. */
static PyObject *message_key(const em_hdr *h) {
    if (h->ndims == 0)
        return PyLong_FromLong(h->idx[0]);
    PyObject *key = PyTuple_New(h->ndims);
    for (int i = 0; key && i < h->ndims; i++) {
        PyObject *v = PyLong_FromLong(h->idx[i]);
        if (!v) {
            Py_CLEAR(key);
            break;
        }
        PyTuple_SET_ITEM(key, i, v);
    }
    return key;
}

/* Deliver an entry-method message to the members of its collection on this
 * PE (all of them for a broadcast). A message for a member that is not here
 * goes to the Python side, which forwards it, keeps it until the member is
 * inserted, or reports the error. Consumes msg. */
static void deliver_entry(cpy_state *st, cp_msg *msg, PyObject *members) {
    em_hdr *h = cp_msg_data(msg);
    int bcast = h->flags & EM_BCAST;
    unsigned long long coll = (unsigned long long)h->coll;
    int method = h->method;
    PyObject *key = NULL, *obj = NULL, *reply = NULL, *args = NULL, *kwargs = NULL;
    if (!bcast) {
        key = message_key(h);
        if (!key)
            goto error_msg;
        obj = PyDict_GetItemWithError(members, key); /* borrowed */
        if (!obj) {
            if (PyErr_Occurred())
                goto error_msg;
            PyObject *ptr = PyLong_FromVoidPtr(msg);
            PyObject *rep = (h->flags & (EM_RET | EM_AWAIT))
                                ? Py_BuildValue("iKl", h->fut_pe,
                                                (unsigned long long)h->fut_id,
                                                (long)(h->flags & (EM_RET | EM_AWAIT)))
                                : Py_NewRef(Py_None);
            PyObject *r = ptr && rep ? PyObject_CallMethod(st->runtime, "_missing", "KOOO",
                                                           coll, key, ptr, rep)
                                     : NULL;
            Py_XDECREF(ptr);
            Py_XDECREF(rep);
            if (!r)
                goto error_msg; /* not taken: still ours */
            Py_DECREF(r);
            Py_DECREF(key);
            return;
        }
        Py_INCREF(obj);
    }
    if (h->flags & (EM_RET | EM_AWAIT)) {
        reply = Py_BuildValue("iKl", h->fut_pe, (unsigned long long)h->fut_id,
                              (long)(h->flags & (EM_RET | EM_AWAIT | EM_BCAST)));
        if (!reply)
            goto error_msg;
    }
    int rc = take_args(st, msg, &args, &kwargs); /* msg is gone from here on */
    msg = NULL;
    if (rc < 0)
        goto error;
    if (bcast) {
        /* Handlers never run inside one another (a coroutine that suspends
         * comes back here), so the members cannot change during the loop. */
        PyObject *collect = reply ? PyList_New(0) : NULL;
        if (reply && !collect)
            goto error;
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(members, &pos, &k, &v))
            invoke(st, v, k, method, args, kwargs, reply, collect);
        if (collect) {
            PyObject *r = PyList_GET_SIZE(collect)
                              ? PyObject_CallMethod(st->runtime, "_reply_many", "OO", reply,
                                                    collect)
                              : Py_NewRef(Py_None);
            Py_DECREF(collect);
            if (!r)
                goto error;
            Py_DECREF(r);
        }
    } else {
        invoke(st, obj, key, method, args, kwargs, reply, NULL);
    }
    Py_XDECREF(obj);
    Py_XDECREF(reply);
    Py_DECREF(args);
    Py_XDECREF(kwargs);
    Py_XDECREF(key);
    return;
error_msg:
    if (msg)
        discard_message(st, msg);
error:
    Py_XDECREF(obj);
    Py_XDECREF(reply);
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    Py_XDECREF(key);
    char where[128];
    snprintf(where, sizeof where, "delivering a message to collection %llx on PE %d", coll,
             cp_my_pe(st->ctx));
    report_error(st, where);
}

static void on_entry(cp_ctx *ctx, cp_msg *msg, void *user) {
    (void)ctx;
    cpy_state *st = user;
    em_hdr *h = cp_msg_data(msg);
    PyObject *members;
    if (st->last_members && st->last_coll == h->coll) {
        members = Py_NewRef(st->last_members);
    } else {
        PyObject *key = PyLong_FromUnsignedLongLong(h->coll);
        members = key ? PyDict_GetItemWithError(st->colls, key) : NULL;
        if (!members) {
            /* Not created here yet: keep the message until it is. */
            if (key && !PyErr_Occurred() && buffer_message(st, key, msg) == 0) {
                Py_DECREF(key);
                return;
            }
            Py_XDECREF(key);
            discard_message(st, msg);
            report_error(st, "queueing a message for a collection not created yet");
            return;
        }
        Py_DECREF(key);
        Py_INCREF(members);
        st->last_coll = h->coll;
        Py_XSETREF(st->last_members, Py_NewRef(members));
    }
    deliver_entry(st, msg, members);
    Py_DECREF(members);
}

/* ---- creation and calls ------------------------------------------------- */

/* Hand a message's bytes to a method of the Python runtime; frees msg. */
static void bytes_to_runtime(cpy_state *st, cp_msg *msg, const char *method,
                             const char *what) {
    PyObject *b = PyBytes_FromStringAndSize(cp_msg_data(msg), (Py_ssize_t)msg->size);
    cp_msg_free(st->ctx, msg);
    PyObject *r = b ? PyObject_CallMethod(st->runtime, method, "O", b) : NULL;
    Py_XDECREF(b);
    if (!r) {
        report_error(st, what);
        return;
    }
    Py_DECREF(r);
}

static void on_create(cp_ctx *ctx, cp_msg *msg, void *user) {
    (void)ctx;
    bytes_to_runtime(user, msg, "_on_create", "creating a chare collection");
}

/* A message carrying (callable, args) by reference, for this PE only. */
static void on_call(cp_ctx *ctx, cp_msg *msg, void *user) {
    (void)ctx;
    cpy_state *st = user;
    PyObject *pair;
    memcpy(&pair, cp_msg_data(msg), sizeof pair);
    cp_msg_free(st->ctx, msg);
    PyObject *r = PyObject_CallObject(PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1));
    if (!r) {
        PyObject *fn = PyTuple_GET_ITEM(pair, 0);
        PyObject *exc = take_exception(); /* before anything else runs Python */
        PyObject *qn = PyObject_GetAttrString(fn, "__qualname__");
        PyErr_Clear();
        char where[256];
        snprintf(where, sizeof where, "%s on PE %d",
                 qn && PyUnicode_Check(qn) ? PyUnicode_AsUTF8(qn) : "a function",
                 cp_my_pe(st->ctx));
        Py_XDECREF(qn);
        restore_exception(exc);
        Py_DECREF(pair);
        report_error(st, where);
        return;
    }
    Py_DECREF(r);
    Py_DECREF(pair);
}

/* A runtime message for the Python side (future values, acknowledgements):
 * bytes handed to runtime._on_py. */
static void on_py(cp_ctx *ctx, cp_msg *msg, void *user) {
    (void)ctx;
    bytes_to_runtime(user, msg, "_on_py", "handling a runtime message");
}

/* Combine partial results of Python values: runtime._combine(list of bytes)
 * returns the combined bytes. */
static cp_msg *py_combine(cp_ctx *ctx, cp_msg *const *parts, int n, void *user) {
    cpy_state *st = user;
    int typed = 1;
    for (int i = 0; i < n && typed; i++)
        typed = cpy_typed_check(cp_msg_data(parts[i]), (size_t)parts[i]->size);
    if (typed) {
        /* Numbers all the way: combine in place, no Python. */
        if (cpy_typed_combine_msgs(parts, n) == 0)
            return parts[0];
        report_error(st, "combining reduction contributions");
        return NULL;
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
    PyObject *r = list ? PyObject_CallMethod(st->runtime, "_combine", "O", list) : NULL;
    Py_XDECREF(list);
    cp_msg *out = NULL;
    if (r && PyBytes_Check(r)) {
        out = cp_msg_alloc(ctx, (size_t)PyBytes_GET_SIZE(r));
        if (out)
            memcpy(cp_msg_data(out), PyBytes_AS_STRING(r), (size_t)PyBytes_GET_SIZE(r));
    }
    if (!r || !out) {
        Py_XDECREF(r);
        report_error(st, "combining reduction contributions");
        return NULL;
    }
    Py_DECREF(r);
    return out;
}

/* The result of a reduction, at its root: runtime._on_reduction(stream, seq,
 * bytes). */
static void on_redres(cp_ctx *ctx, cp_msg *msg, void *user) {
    (void)ctx;
    cpy_state *st = user;
    PyObject *b = PyBytes_FromStringAndSize(cp_msg_data(msg), (Py_ssize_t)msg->size);
    unsigned long long stream = msg->stream, seq = msg->seq;
    cp_msg_free(st->ctx, msg);
    PyObject *r = b ? PyObject_CallMethod(st->runtime, "_on_reduction", "KKO", stream, seq, b)
                    : NULL;
    Py_XDECREF(b);
    if (!r) {
        report_error(st, "delivering a reduction result");
        return;
    }
    Py_DECREF(r);
}

/* Timer callback: arg is a strong reference to (callable, args). */
static void on_timer(cp_ctx *ctx, void *arg) {
    (void)ctx;
    cpy_state *st = the_state;
    PyObject *pair = arg;
    PyObject *r = PyObject_CallObject(PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1));
    Py_DECREF(pair);
    if (!r) {
        report_error(st, "a timer callback");
        return;
    }
    Py_DECREF(r);
}

/* ---- module functions --------------------------------------------------- */

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

static PyObject *mod_init(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *runtime, *argv;
    int local_optim = 1;
    if (!PyArg_ParseTuple(args, "OO!|p", &runtime, &PyList_Type, &argv, &local_optim))
        return NULL;
    st->local_optim = local_optim;
    if (st->ctx) {
        PyErr_SetString(PyExc_RuntimeError, "charm.start() was already called in this process");
        return NULL;
    }
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
        return PyErr_Format(PyExc_RuntimeError, "cannot start the charmpy runtime: %s",
                            cp_strerror(rc));
    }
    PyObject *kept = PyList_New(cargc);
    for (int i = 0; kept && i < cargc; i++)
        PyList_SET_ITEM(kept, i, PyUnicode_FromString(pargv[i]));
    PyMem_Free(cargv);
    if (!kept)
        return NULL;
    st->h_entry = cp_handler_register(st->ctx, on_entry, st);
    st->h_create = cp_handler_register(st->ctx, on_create, st);
    st->h_call = cp_handler_register(st->ctx, on_call, st);
    st->h_py = cp_handler_register(st->ctx, on_py, st);
    st->h_redres = cp_handler_register(st->ctx, on_redres, st);
    st->red_py = cp_reducer_register(st->ctx, py_combine, st);
    Py_INCREF(runtime);
    Py_XSETREF(st->runtime, runtime);
    return Py_BuildValue("iiN", cp_my_pe(st->ctx), cp_num_pes(st->ctx), kept);
}

static void free_pending(cpy_state *st) {
    PyObject *key, *list;
    Py_ssize_t pos = 0;
    while (PyDict_Next(st->pending, &pos, &key, &list))
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++)
            discard_message(st, PyLong_AsVoidPtr(PyList_GET_ITEM(list, i)));
    PyDict_Clear(st->pending);
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
    if (need_runtime(st))
        return NULL;
    int rc = cp_run(st->ctx);
    if (PyErr_Occurred())
        return NULL;
    free_pending(st);
    Py_CLEAR(st->last_members);
    PyDict_Clear(st->colls);
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
    if (code == -1 && PyErr_Occurred())
        return NULL;
    if (need_runtime(st))
        return NULL;
    cp_exit(st->ctx, (int)code);
    Py_RETURN_NONE;
}

static PyObject *mod_abort(PyObject *module, PyObject *arg) {
    cpy_state *st = PyModule_GetState(module);
    const char *text = PyUnicode_AsUTF8(arg);
    if (!text)
        return NULL;
    PyObject *r = PyObject_CallMethod(PySys_GetObject("stdout"), "flush", NULL);
    Py_XDECREF(r);
    PyErr_Clear();
    cp_abort(st->ctx, "%s", text);
}

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
    if (need_runtime(st))
        return NULL;
    return PyUnicode_FromString(cp_transport(st->ctx));
}

/* host_table() -> (my_host, num_hosts, tuple of each PE's host) */
static PyObject *mod_host_table(PyObject *module, PyObject *noargs) {
    (void)noargs;
    cpy_state *st = PyModule_GetState(module);
    if (need_runtime(st))
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

static PyObject *mod_wall_time(PyObject *module, PyObject *noargs) {
    (void)module;
    (void)noargs;
    return PyFloat_FromDouble(cp_wall_time());
}

static int send_or_bcast(cpy_state *st, int pe, int handler, cp_msg *msg) {
    int rc = pe < 0 ? cp_bcast(st->ctx, handler, msg) : cp_send(st->ctx, pe, handler, msg);
    if (rc) {
        cp_msg_free(st->ctx, msg);
        PyErr_Format(rc == CP_ERANGE ? PyExc_IndexError : PyExc_RuntimeError,
                     "cannot send to PE %d: %s", pe, cp_strerror(rc));
        return -1;
    }
    return 0;
}

/* call_soon(callable, args): run callable(*args) on this PE from the
 * scheduler, after the messages already queued. */
static PyObject *mod_call_soon(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *fn, *fargs;
    if (!PyArg_ParseTuple(args, "OO!", &fn, &PyTuple_Type, &fargs) || need_runtime(st))
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
    if (send_or_bcast(st, cp_my_pe(st->ctx), st->h_call, msg) < 0) {
        Py_DECREF(pair);
        return NULL;
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
    if (need_runtime(st)) {
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
    if (send_or_bcast(st, pe, handler, msg) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* send_create(pe, payload): a creation request for runtime._on_create. */
static PyObject *mod_send_create(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    return send_bytes(st, args, st->h_create);
}

/* send_py(pe, payload): a runtime message for runtime._on_py. */
static PyObject *mod_send_py(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    return send_bytes(st, args, st->h_py);
}

/* reduce_among(stream, payload, pes): contribute payload (bytes of a Python
 * value) to the next reduction of `stream` among the PEs in the tuple pes;
 * the result reaches runtime._on_reduction on pes[0]. */
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
    if (!list || need_runtime(st))
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

/* call_after(secs, callable, args): run callable(*args) on this PE from the
 * scheduler once `secs` seconds have passed. */
static PyObject *mod_call_after(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    double secs;
    PyObject *fn, *fargs;
    if (!PyArg_ParseTuple(args, "dOO!", &secs, &fn, &PyTuple_Type, &fargs) ||
        need_runtime(st))
        return NULL;
    if (!(secs >= 0))
        return PyErr_Format(PyExc_ValueError, "the delay must be >= 0 seconds, got %R",
                            PyTuple_GET_ITEM(args, 0));
    PyObject *pair = PyTuple_Pack(2, fn, fargs);
    if (!pair)
        return NULL;
    int rc = cp_call_after(st->ctx, secs, on_timer, pair);
    if (rc) {
        Py_DECREF(pair);
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

/* register_collection(coll, members): members (a dict index -> chare) now
 * receive messages for coll on this PE; those that arrived early are
 * delivered now, in arrival order. */
static PyObject *mod_register_collection(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *key, *members;
    if (!PyArg_ParseTuple(args, "O!O!", &PyLong_Type, &key, &PyDict_Type, &members))
        return NULL;
    if (PyDict_SetItem(st->colls, key, members) < 0)
        return NULL;
    PyObject *list = PyDict_GetItemWithError(st->pending, key);
    if (!list)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    Py_INCREF(list);
    if (PyDict_DelItem(st->pending, key) < 0) {
        Py_DECREF(list);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++)
        deliver_entry(st, PyLong_AsVoidPtr(PyList_GET_ITEM(list, i)), members);
    Py_DECREF(list);
    Py_RETURN_NONE;
}

static PyObject *mod_members(PyObject *module, PyObject *arg) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *m = PyDict_GetItemWithError(st->colls, arg);
    if (!m)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    return Py_NewRef(m);
}

/* The message behind an integer from _missing (the Python side holds it). */
static cp_msg *message_arg(PyObject *ptr) {
    void *p = PyLong_AsVoidPtr(ptr);
    return p || PyErr_Occurred() ? p : NULL;
}

/* forward(msg, pe): send a held entry-method message on to PE pe. Arguments
 * passed by reference are pickled first when pe is another PE. */
static PyObject *mod_forward(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *ptr;
    int pe;
    if (!PyArg_ParseTuple(args, "Oi", &ptr, &pe) || need_runtime(st))
        return NULL;
    cp_msg *msg = message_arg(ptr);
    if (!msg)
        return NULL;
    em_hdr *h = cp_msg_data(msg);
    if ((h->flags & EM_BYREF) && pe != cp_my_pe(st->ctx)) {
        PyObject *a, *k;
        cpy_byref_take(h + 1, &a, &k);
        cp_msg *m2 = cpy_encode_args(st, sizeof *h, a, k, NULL);
        if (!m2) {
            cpy_byref_store(h + 1, a, k); /* still the held message's */
            Py_DECREF(a);
            Py_XDECREF(k);
            return NULL;
        }
        memcpy(cp_msg_data(m2), h, sizeof *h);
        ((em_hdr *)cp_msg_data(m2))->flags &= ~(uint32_t)EM_BYREF;
        Py_DECREF(a);
        Py_XDECREF(k);
        cp_msg_free(st->ctx, msg);
        msg = m2;
    }
    if (send_or_bcast(st, pe, st->h_entry, msg) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* redeliver(msg): deliver a held message again, as if it had just arrived. */
static PyObject *mod_redeliver(PyObject *module, PyObject *ptr) {
    cpy_state *st = PyModule_GetState(module);
    cp_msg *msg = need_runtime(st) ? NULL : message_arg(ptr);
    if (!msg)
        return NULL;
    on_entry(st->ctx, msg, st);
    Py_RETURN_NONE;
}

/* discard(msg): drop a held message. */
static PyObject *mod_discard(PyObject *module, PyObject *ptr) {
    cpy_state *st = PyModule_GetState(module);
    cp_msg *msg = need_runtime(st) ? NULL : message_arg(ptr);
    if (!msg)
        return NULL;
    discard_message(st, msg);
    Py_RETURN_NONE;
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
    PyObject *r = PyObject_CallMethod(PySys_GetObject("stdout"), "flush", NULL);
    Py_XDECREF(r);
    PyErr_Clear();
    int code = cp_launcher_main((int)n, argv);
    PyMem_Free(argv);
    return PyLong_FromLong(code);
}

static PyMethodDef mod_methods[] = {
    {"init", mod_init, METH_VARARGS, "init(runtime, argv) -> (pe, npes, argv)"},
    {"run", mod_run, METH_NOARGS, "run the scheduler until the job exits; exit code"},
    {"exit", mod_exit, METH_O, "exit(code): end the whole job"},
    {"abort", mod_abort, METH_O, "abort(message): end the job with an error"},
    {"my_pe", mod_my_pe, METH_NOARGS, NULL},
    {"num_pes", mod_num_pes, METH_NOARGS, NULL},
    {"wall_time", mod_wall_time, METH_NOARGS, NULL},
    {"host_table", mod_host_table, METH_NOARGS, "(my_host, num_hosts, host of each PE)"},
    {"transport", mod_transport, METH_NOARGS, "the machine layer in use: shm or mpi"},
    {"call_soon", mod_call_soon, METH_VARARGS, NULL},
    {"send_create", mod_send_create, METH_VARARGS, NULL},
    {"register_collection", mod_register_collection, METH_VARARGS, NULL},
    {"send_py", mod_send_py, METH_VARARGS, NULL},
    {"call_after", mod_call_after, METH_VARARGS, NULL},
    {"reduce_among", mod_reduce_among, METH_VARARGS, NULL},
    {"members", mod_members, METH_O, "members(coll): dict of this PE's members or None"},
    {"launch", mod_launch, METH_O, NULL},
    {"forward", mod_forward, METH_VARARGS, NULL},
    {"redeliver", mod_redeliver, METH_O, NULL},
    {"discard", mod_discard, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static int mod_exec(PyObject *module) {
    cpy_state *st = PyModule_GetState(module);
    memset(st, 0, sizeof *st);
    PyObject *pickle = PyImport_ImportModule("pickle");
    if (!pickle)
        return -1;
    st->dumps = PyObject_GetAttrString(pickle, "dumps");
    st->loads = PyObject_GetAttrString(pickle, "loads");
    Py_DECREF(pickle);
    st->colls = PyDict_New();
    st->pending = PyDict_New();
    st->entries = PyDict_New();
    st->held = PyDict_New();
    if (!st->dumps || !st->loads || !st->colls || !st->pending || !st->entries || !st->held)
        return -1;
    if (PyModule_AddObjectRef(module, "held", st->held) < 0)
        return -1;
    if (cpy_proxy_types_init(module, st) < 0)
        return -1;
    if (PyModule_AddFunctions(module, cpy_reducer_methods) < 0 ||
        PyModule_AddFunctions(module, cpy_codec_methods) < 0 || cpy_args_init(module) < 0)
        return -1;
    the_state = st;
    return 0;
}

static int mod_traverse(PyObject *module, visitproc visit, void *arg) {
    cpy_state *st = PyModule_GetState(module);
    Py_VISIT(st->colls);
    Py_VISIT(st->pending);
    Py_VISIT(st->runtime);
    Py_VISIT(st->dumps);
    Py_VISIT(st->loads);
    Py_VISIT(st->proxy_type);
    Py_VISIT(st->caller_type);
    Py_VISIT(st->entries);
    Py_VISIT(st->held);
    Py_VISIT(st->last_members);
    return 0;
}

static int mod_clear(PyObject *module) {
    cpy_state *st = PyModule_GetState(module);
    Py_CLEAR(st->colls);
    Py_CLEAR(st->pending);
    Py_CLEAR(st->runtime);
    Py_CLEAR(st->dumps);
    Py_CLEAR(st->loads);
    Py_CLEAR(st->proxy_type);
    Py_CLEAR(st->caller_type);
    Py_CLEAR(st->entries);
    Py_CLEAR(st->held);
    Py_CLEAR(st->last_members);
    return 0;
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
};

PyMODINIT_FUNC PyInit__charmpy(void);
PyMODINIT_FUNC PyInit__charmpy(void) { return PyModuleDef_Init(&mod_def); }
