/*
 * Entry-method messages on their way in: find the collection and the
 * member, decode the arguments, call the method, send back what a caller's
 * future waits for. Plain methods are called from here without any Python
 * of ours; coroutines and @when methods go through the invoke_special hook.
 *
 * After any Python code of a chare ran here, the chare's held messages
 * (@when) and waiting coroutines are re-examined (recheck_held), since its
 * state may have changed; the coroutine layer does the same after it
 * resumes a coroutine (python/charmpy/coro.py).
 */
#include "cpy.h"

#include <string.h>

PyObject *cpy_take_exception(void) {
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    if (v && tb)
        PyException_SetTraceback(v, tb);
    Py_XDECREF(t);
    Py_XDECREF(tb);
    return v;
}

void cpy_restore_exception(PyObject *v) {
    if (!v) {
        PyErr_SetString(PyExc_SystemError, "charmpy: an error was lost on its way");
        return;
    }
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(v)), v, PyException_GetTraceback(v));
}

void cpy_set_cause(PyObject *cause) {
    PyObject *v = cpy_take_exception();
    if (v && cause)
        PyException_SetCause(v, cause); /* steals cause */
    else
        Py_XDECREF(cause);
    cpy_restore_exception(v);
}

void cpy_report_error(cpy_state *st, const char *where) {
    PyObject *exc = cpy_take_exception();
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
    PyObject *w = PyUnicode_FromString(where);
    PyObject *args[2] = {exc, w};
    PyObject *r = exc && w && st->hooks[CPY_HOOK_REPORT_ERROR]
                      ? cpy_hook(st, CPY_HOOK_REPORT_ERROR, args, 2)
                      : NULL;
    Py_XDECREF(w);
    if (!r) {
        /* The Python side could not report it: print both errors here. */
        PyErr_Print();
        cpy_restore_exception(exc);
        exc = NULL;
        PyErr_Print();
    }
    Py_XDECREF(r);
    Py_XDECREF(exc);
    cp_abort(st->ctx, "uncaught exception in %s", where);
}

void cpy_discard(cpy_state *st, cp_msg *msg) {
    em_hdr *h = cp_msg_data(msg);
    if (h->flags & EM_BYREF) {
        PyObject *args, *kwargs;
        cpy_byref_take(h + 1, &args, &kwargs);
        Py_DECREF(args);
        Py_XDECREF(kwargs);
    }
    cp_msg_free(st->ctx, msg);
}

static inline int take_args(cpy_state *st, cp_msg *msg, PyObject **args, PyObject **kwargs) {
    em_hdr *h = cp_msg_data(msg);
    if (h->flags & EM_BYREF) {
        cpy_byref_take(h + 1, args, kwargs); /* the message's references */
        cp_msg_free(st->ctx, msg);
        return 0;
    }
    return cpy_take_args(st, msg, sizeof *h, args, kwargs);
}

int cpy_take_msg_args(cpy_state *st, cp_msg *msg, PyObject **args, PyObject **kwargs) {
    return take_args(st, msg, args, kwargs);
}

PyObject *cpy_reply_of(const em_hdr *h) {
    if (!(h->flags & (EM_RET | EM_AWAIT)))
        return Py_NewRef(Py_None);
    long flags = (long)(h->flags & (EM_RET | EM_AWAIT | EM_BCAST));
    if (h->flags & EM_BCOPY)
        flags |= EM_BCAST; /* one member's answer to a broadcast */
    return Py_BuildValue("iKl", h->fut_pe, (unsigned long long)h->fut_id, flags);
}

/* "Class[index].method on PE n", for error reports. */
static void describe_target(char *buf, size_t n, PyObject *obj, PyObject *key,
                            PyObject *name, int pe) {
    PyObject *krepr = key ? PyObject_Repr(key) : NULL;
    const char *ks = krepr ? PyUnicode_AsUTF8(krepr) : NULL;
    const char *ns = name ? PyUnicode_AsUTF8(name) : NULL;
    snprintf(buf, n, "%s%s%s%s.%s on PE %d", Py_TYPE(obj)->tp_name, ks ? "[" : "",
             ks ? ks : "", ks ? "]" : "", ns ? ns : "?", pe);
    Py_XDECREF(krepr);
    PyErr_Clear();
}

/* After Python code of `obj` ran: if the chare holds messages (@when) or
 * waiting coroutines, let the Python side re-examine them. */
int cpy_recheck_held(cpy_state *st, PyObject *obj) {
    if (PyDict_GET_SIZE(st->held) == 0)
        return 0;
    PyObject *id = PyLong_FromVoidPtr(obj);
    int held = id ? PyDict_Contains(st->held, id) : -1;
    Py_XDECREF(id);
    PyObject *r = held > 0 ? cpy_hook(st, CPY_HOOK_RECHECK, &obj, 1)
                           : (held == 0 ? Py_NewRef(Py_None) : NULL);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

static void recheck_held(cpy_state *st, PyObject *obj) {
    if (cpy_recheck_held(st, obj) < 0)
        cpy_report_error(st, "re-examining held @when messages");
}

/* A chare asked to migrate (self.migrate): it moves now, once the entry
 * method that asked returned. */
static void run_migrations(cpy_state *st) {
    st->migrating = 0;
    PyObject *r = cpy_hook(st, CPY_HOOK_MIGRATIONS, NULL, 0);
    if (!r) {
        cpy_report_error(st, "migrating chares");
        return;
    }
    Py_DECREF(r);
}

/* What a broadcast's loop looks up once for its members' class rather than
 * once a member: the class's entry table. Strong references, dropped by
 * bc_done. (The method itself is looked up on each member, as obj.name is:
 * the class's function unless the member holds an attribute of that name;
 * a check in the member's __dict__ would make one, which slows every later
 * attribute read on it: cpy.h cpy_attr_or_null.) */
typedef struct bc_cache {
    PyTypeObject *tp;
    PyObject *ent;
} bc_cache;

static void bc_done(bc_cache *bc) {
    Py_CLEAR(bc->tp);
    Py_CLEAR(bc->ent);
}

/* obj.name(*args, **kwargs); new reference or NULL with an exception. */
static PyObject *call_method(PyObject *obj, PyObject *name, PyObject *args, PyObject *kwargs) {
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    if (!kwargs && nargs < 8) {
        /* The common case: no bound-method object. */
        PyObject *stack[9];
        stack[0] = obj;
        for (Py_ssize_t i = 0; i < nargs; i++)
            stack[i + 1] = PyTuple_GET_ITEM(args, i);
        return PyObject_VectorcallMethod(name, stack, (size_t)(nargs + 1), NULL);
    }
    PyObject *meth = PyObject_GetAttr(obj, name);
    PyObject *r = meth ? PyObject_Call(meth, args, kwargs) : NULL;
    Py_XDECREF(meth);
    return r;
}

/* Where a call's outcome goes when a future waits for it: into `collect`
 * (a broadcast: this PE sends all its members' results in one message) or
 * to the reply hook. Takes r (the result, or NULL with the exception set).
 * 0 or -1 with an exception of ours. */
static int answer(cpy_state *st, PyObject *obj, PyObject *key, PyObject *name, PyObject *r,
                  PyObject *reply, PyObject *collect) {
    PyObject *exc = r ? NULL : cpy_take_exception(), *where_s = NULL;
    if (exc) {
        char where[512];
        describe_target(where, sizeof where, obj, key, name, cp_my_pe(st->ctx));
        where_s = PyUnicode_FromString(where);
    }
    int rc;
    if (collect) {
        PyObject *item = PyTuple_Pack(4, key, r ? r : Py_None, exc ? exc : Py_None,
                                      where_s ? where_s : Py_None);
        rc = item ? PyList_Append(collect, item) : -1;
        Py_XDECREF(item);
    } else {
        PyObject *args[5] = {reply, r ? r : Py_None, exc ? exc : Py_None, obj,
                             where_s ? where_s : Py_None};
        PyObject *rr = cpy_hook(st, CPY_HOOK_REPLY, args, 5);
        rc = rr ? 0 : -1;
        Py_XDECREF(rr);
    }
    Py_XDECREF(where_s);
    Py_XDECREF(exc);
    Py_XDECREF(r);
    return rc;
}

static void add_time(PyObject *ent, int method, double secs) {
    cpy_emstat *s = (cpy_emstat *)PyByteArray_AS_STRING(PyTuple_GET_ITEM(ent, 3)) + method;
    s->calls++;
    s->total += secs;
    if (secs > s->max)
        s->max = secs;
}

/* The entry method's slice in the trace: "Class.method", the chare's index. */
static void trace_entry(cpy_state *st, PyObject *obj, PyObject *key, PyObject *ent,
                        PyObject *name, int method, double t0, double t1) {
    cpy_emstat *s = (cpy_emstat *)PyByteArray_AS_STRING(PyTuple_GET_ITEM(ent, 3)) + method;
    if (!s->trace_name) {
        const char *m = PyUnicode_AsUTF8(name);
        char buf[256];
        snprintf(buf, sizeof buf, "%s.%s", _PyType_Name(Py_TYPE(obj)), m ? m : "?");
        if (!m)
            PyErr_Clear();
        s->trace_name = cp_trace_string(st->ctx, buf);
    }
    int64_t idx[3];
    int n = cpy_trace_index(key, idx);
    cp_trace_slice(st->ctx, t0, t1, s->trace_name, st->tr_entry, idx, n, CP_TRACE_MSG_BYTES);
}

static double entry_start(cpy_state *st, int *traced) {
    double t0 = st->tracing ? cp_trace_begin(st->ctx) : -1;
    *traced = t0 >= 0;
    return *traced ? t0 : cp_wall_time();
}

/* An entry method ran from t0: its slice, its time, its load. */
static __attribute__((noinline)) int entry_end(cpy_state *st, PyObject *obj, PyObject *key,
                                               PyObject *ent, PyObject *name, int method,
                                               double t0, int traced) {
    double t1 = traced ? cp_trace_now(st->ctx) : cp_wall_time();
    if (traced)
        trace_entry(st, obj, key, ent, name, method, t0, t1);
    if (st->profiling)
        add_time(ent, method, t1 - t0);
    return st->lb_on ? cpy_lb_add(st, obj, t1 - t0) : 0;
}

/* Run entry method number `method` of `obj`. `reply` (borrowed, or NULL)
 * is the future to fulfil: (fut_pe, fut_id, flags); in a broadcast,
 * `collect` (or NULL) gathers the results of plain methods on this PE and
 * *nlater counts the members that answer on their own. */
static void invoke(cpy_state *st, PyObject *obj, PyObject *key, int method, PyObject *args,
                   PyObject *kwargs, PyObject *reply, PyObject *collect, long *nlater,
                   bc_cache *bc) {
    PyObject *ent;
    if (bc && bc->tp == Py_TYPE(obj)) {
        ent = bc->ent;
    } else {
        ent = cpy_entries(st, (PyObject *)Py_TYPE(obj));
        if (bc && ent) {
            bc_done(bc);
            bc->tp = (PyTypeObject *)Py_NewRef(Py_TYPE(obj));
            bc->ent = Py_NewRef(ent);
        }
    }
    PyObject *name = NULL, *r = NULL;
    /* timed: profiling, load balancing or tracing (its slice from the
     * handler's start, the message's decoding included, which the slice
     * then stands for; traced 0 when the trace is full) */
    int timed = st->profiling | st->lb_on | st->tracing, traced = 0;
    double t0 = timed ? entry_start(st, &traced) : 0;
    int comm = st->lb_comm; /* lb_comm: obj is the caller of what it sends */
    PyObject *was_cur = NULL;
    if (comm) {
        was_cur = st->lb_cur;
        st->lb_cur = obj;
    }
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
    long flags = PyLong_AsLong(PyTuple_GET_ITEM(PyTuple_GET_ITEM(ent, 2), method));
    if (flags & (ENTRY_CORO | ENTRY_WHEN)) {
        /* The Python side answers the future itself, when the method ends
         * (a coroutine may suspend, a @when message may wait): in a
         * broadcast, this PE's reply counts it as answered later. */
        PyObject *hargs[7] = {obj, key, name, args, kwargs ? kwargs : Py_None,
                              reply ? reply : Py_None, NULL};
        if (collect)
            ++*nlater;
        PyObject *fl = PyLong_FromLong(flags);
        hargs[6] = fl;
        r = fl ? cpy_hook(st, CPY_HOOK_INVOKE_SPECIAL, hargs, 7) : NULL;
        Py_XDECREF(fl);
        if (!r)
            goto error;
        Py_CLEAR(r);
    } else {
        r = call_method(obj, name, args, kwargs);
        if (reply) {
            if (answer(st, obj, key, name, r, reply, collect) < 0)
                goto error;
            r = NULL;
        } else if (!r) {
            goto error;
        }
        Py_CLEAR(r);
    }
    if (comm)
        st->lb_cur = was_cur;
    if (timed && entry_end(st, obj, key, ent, name, method, t0, traced) < 0)
        goto error;
    if (st->migrating && !st->in_bcast)
        run_migrations(st);
    recheck_held(st, obj);
    return;
error: {
    if (comm)
        st->lb_cur = was_cur;
    char where[512];
    PyObject *exc = cpy_take_exception();
    PyObject *nm = name ? Py_NewRef(name) : PyUnicode_FromFormat("#%d", method);
    describe_target(where, sizeof where, obj, key, nm, cp_my_pe(st->ctx));
    Py_XDECREF(nm);
    if (traced && ent && name) /* the slice of the method that raised */
        trace_entry(st, obj, key, ent, name, method, t0, cp_trace_now(st->ctx));
    cpy_restore_exception(exc);
    cpy_report_error(st, where);
}
}

/* A broadcast on this PE: every member, then one reply with the results
 * of its plain methods and the number of members that answer on their own
 * (sent even when this PE has no members, so that the caller's future can
 * count the PEs that answered). */
/* A section's member whose home is this PE but which is not here (it moved
 * away, or a sparse element is not inserted yet): its copy goes as an
 * element call through this PE's location service, answering as a member
 * of the broadcast (EM_BCOPY). */
static int section_copy(cpy_state *st, const em_hdr *bh, PyObject *key, PyObject *name,
                        PyObject *args, PyObject *kwargs) {
    /* name: NULL (the copy's arguments came encoded, so they encode) */
    em_hdr h = {.coll = bh->coll, .method = bh->method,
                .flags = EM_BCOPY | (bh->flags & (EM_RET | EM_AWAIT)),
                .fut_id = bh->fut_id, .fut_pe = bh->fut_pe};
    if (PyLong_Check(key)) {
        h.idx[0] = (int32_t)PyLong_AsLong(key);
    } else {
        h.ndims = (uint16_t)PyTuple_GET_SIZE(key);
        for (int d = 0; d < h.ndims && d < CPY_MAXDIMS; d++)
            h.idx[d] = (int32_t)PyLong_AsLong(PyTuple_GET_ITEM(key, d));
    }
    if (PyErr_Occurred())
        return -1;
    return cpy_send_entry(st, cp_my_pe(st->ctx), &h, name, args, kwargs, NULL);
}

static int deliver_bcast(cpy_state *st, uint64_t coll, PyObject *members, int method,
                         PyObject *args, PyObject *kwargs, PyObject *reply, long ncopies,
                         PyObject *keys, PyObject *objs, const em_hdr *bh) {
    PyObject *collect = reply != Py_None ? PyList_New(0) : NULL;
    if (reply != Py_None && !collect)
        return -1;
    /* Handlers never run inside one another (a coroutine that suspends
     * comes back here), and members that ask to migrate leave after the
     * loop, so the members cannot change during it; members inserted by a
     * constructor run from it would be a bug. Members that migrated here
     * take the broadcast from their home (location.c): skipped. */
    PyObject *viahome = st->nmoved ? cpy_loc_viahome(st, coll) : NULL;
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    long nlater = ncopies; /* the home's copies answer on their own */
    bc_cache bc = {0};
    st->in_bcast++;
    if (keys) {
        /* A section: the members whose home this PE is (objs: their
         * chares, None where not here). */
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
            k = PyList_GET_ITEM(keys, i);
            v = PyList_GET_ITEM(objs, i);
            if (v != Py_None) {
                Py_INCREF(v);
                cpy_red_current(v, coll);
                invoke(st, v, k, method, args, kwargs, collect ? reply : NULL, collect, &nlater,
                       &bc);
                cpy_red_current(NULL, 0);
                Py_DECREF(v);
                continue;
            }
            if (section_copy(st, bh, k, NULL, args, kwargs) < 0) {
                bc_done(&bc);
                st->in_bcast--;
                Py_XDECREF(collect);
                return -1;
            }
            if (collect)
                nlater++;
        }
    } else {
        while (PyDict_Next(members, &pos, &k, &v))
            if (!viahome || PySet_Contains(viahome, k) != 1) {
                cpy_red_current(v, coll); /* (members holds v) */
                invoke(st, v, k, method, args, kwargs, collect ? reply : NULL, collect, &nlater,
                       &bc);
                cpy_red_current(NULL, 0);
            }
    }
    bc_done(&bc);
    st->in_bcast--;
    if (st->migrating && !st->in_bcast)
        run_migrations(st);
    if (!collect)
        return 0;
    PyObject *n = PyLong_FromLong(nlater);
    PyObject *hargs[3] = {reply, collect, n};
    PyObject *r = n ? cpy_hook(st, CPY_HOOK_REPLY_MANY, hargs, 3) : NULL;
    Py_XDECREF(n);
    Py_DECREF(collect);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

static void deliver1(cpy_state *st, cp_msg *msg, PyObject *members);

/* A call multicast to a section (section.c): its members whose home this
 * PE is. Takes msg. */
__attribute__((noinline)) static void deliver_section(cpy_state *st, cp_msg *msg,
                                                     PyObject *members) {
    em_hdr h = *(em_hdr *)cp_msg_data(msg);
    PyObject *keys = cpy_sect_keys(st, msg), *objs = NULL, *reply = NULL, *args = NULL,
             *kwargs = NULL;
    if (keys) {
        Py_INCREF(keys);
        objs = Py_XNewRef(cpy_sect_objs(st, msg, members, keys));
    }
    if (!objs || !(reply = cpy_reply_of(&h))) {
        cpy_discard(st, msg);
        goto error;
    }
    if (cpy_take_args(st, msg, cpy_sect_args_off(msg), &args, &kwargs) < 0)
        goto error;
    if (deliver_bcast(st, h.coll, members, h.method, args, kwargs, reply, 0, keys, objs, &h) < 0)
        goto error;
    Py_DECREF(keys);
    Py_DECREF(objs);
    Py_DECREF(reply);
    Py_DECREF(args);
    Py_XDECREF(kwargs);
    return;
error:
    Py_XDECREF(keys);
    Py_XDECREF(objs);
    Py_XDECREF(reply);
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    char where[128];
    snprintf(where, sizeof where, "delivering a section's message on PE %d", cp_my_pe(st->ctx));
    cpy_report_error(st, where);
}

/* A call to an element that moved: after it, the ones that came early and
 * are next now. */
__attribute__((noinline)) static void deliver_in_order(cpy_state *st, cp_msg *msg,
                                                      PyObject *members) {
    em_hdr *h = cp_msg_data(msg);
    uint64_t coll = h->coll;
    PyObject *key = cpy_loc_key(h);
    deliver1(st, msg, members);
    cp_msg *m;
    while (key && (m = cpy_loc_next_in_order(st, coll, key)) != NULL)
        deliver1(st, m, members);
    Py_XDECREF(key);
    PyErr_Clear();
}

void cpy_deliver(cpy_state *st, cp_msg *msg, PyObject *members) {
    em_hdr *h = cp_msg_data(msg);
    if ((!st->nmoved && !h->seq && !msg->tag) || (h->flags & EM_BCAST))
        deliver1(st, msg, members);
    else
        deliver_in_order(st, msg, members);
}

/* A channel's message for member obj (channel.c); takes msg. */
__attribute__((noinline)) static void deliver_chan(cpy_state *st, cp_msg *msg, PyObject *obj) {
    em_hdr *h = cp_msg_data(msg);
    int method = h->method;
    uint64_t id = h->fut_id;
    uint32_t seq = (uint32_t)h->fut_pe;
    PyObject *args, *kwargs;
    if (take_args(st, msg, &args, &kwargs) < 0) {
        cpy_report_error(st, "receiving a channel message");
        return;
    }
    Py_XDECREF(kwargs);
    cpy_chan_deliver(st, obj, method, id, seq, args);
    Py_DECREF(args);
}

static void deliver1(cpy_state *st, cp_msg *msg, PyObject *members) {
    em_hdr *h = cp_msg_data(msg);
    unsigned long long coll = (unsigned long long)h->coll;
    int method = h->method;
    PyObject *key = NULL, *obj = NULL, *reply = NULL, *args = NULL, *kwargs = NULL;
    if (h->flags & EM_ROUTE) {
        cpy_loc_route(st, msg, members);
        return;
    }
    if (h->flags & EM_SECT) {
        deliver_section(st, msg, members);
        return;
    }
    int bcast = h->flags & EM_BCAST;
    if (!bcast) {
        key = cpy_loc_key(h);
        if (!key)
            goto error_msg;
        obj = PyDict_GetItemWithError(members, key); /* borrowed */
        if (obj && (st->nmoved || h->seq || msg->tag) && cpy_loc_in_order(st, msg, key)) {
            Py_DECREF(key);
            return;
        }
        if (!obj || method == CPY_M_INSERT || method == CPY_M_ARRIVE) {
            if (PyErr_Occurred())
                goto error_msg;
            if (obj) {
                PyErr_Format(PyExc_KeyError, "element %R %s", key,
                             method == CPY_M_INSERT ? "of the sparse array was inserted twice"
                                                    : "migrated to a PE where it already is");
                goto error_msg;
            }
            cpy_loc_missing(st, coll, key, msg);
            Py_DECREF(key);
            return;
        }
        if (method == CPY_M_SWITCH) {
            cpy_loc_switch(st, msg, key);
            Py_DECREF(key);
            return;
        }
        Py_INCREF(obj);
    }
    if (!bcast && (method == CPY_M_CHAN || method == CPY_M_CHANOPEN)) {
        deliver_chan(st, msg, obj);
        Py_DECREF(obj);
        Py_DECREF(key);
        return;
    }
    long ncopies = 0;
    if (bcast && st->nmoved && (ncopies = cpy_loc_bcast_copies(st, msg, members)) < 0)
        goto error_msg;
    reply = cpy_reply_of(h);
    if (!reply)
        goto error_msg;
    int rc = take_args(st, msg, &args, &kwargs); /* msg is gone from here on */
    msg = NULL;
    if (rc < 0)
        goto error;
    if (bcast) {
        if (deliver_bcast(st, coll, members, method, args, kwargs, reply, ncopies, NULL, NULL,
                          NULL) < 0)
            goto error;
    } else {
        invoke(st, obj, key, method, args, kwargs, reply == Py_None ? NULL : reply, NULL, NULL,
               NULL);
    }
    Py_XDECREF(obj);
    Py_XDECREF(reply);
    Py_DECREF(args);
    Py_XDECREF(kwargs);
    Py_XDECREF(key);
    return;
error_msg:
    if (msg)
        cpy_discard(st, msg);
error:
    Py_XDECREF(obj);
    Py_XDECREF(reply);
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    Py_XDECREF(key);
    char where[128];
    snprintf(where, sizeof where, "delivering a message to collection %llx on PE %d", coll,
             cp_my_pe(st->ctx));
    cpy_report_error(st, where);
}

void cpy_on_entry(cp_ctx *ctx, cp_msg *msg, void *user) {
    (void)ctx;
    cpy_state *st = user;
    em_hdr *h = cp_msg_data(msg);
    PyObject *members = cpy_loc_members(st, h->coll);
    if (!members && h->method == CPY_M_ARRIVE && h->ndims == 0) {
        /* A single chare migrating to a PE that never had its collection:
         * the arrive hook makes it. (An array element that arrives before
         * its array's creation reached this PE waits for it, below.) */
        PyObject *key = cpy_loc_key(h);
        if (!key) {
            cpy_discard(st, msg);
            cpy_report_error(st, "receiving a chare that migrated here");
            return;
        }
        cpy_loc_missing(st, h->coll, key, msg);
        Py_DECREF(key);
        return;
    }
    if (!members) {
        /* Not created here yet: keep the message until it is. */
        if (cpy_loc_early(st, msg) < 0)
            cpy_report_error(st, "keeping a message for a collection not created here yet");
        return;
    }
    Py_INCREF(members); /* a constructor run from here may register others */
    cpy_deliver(st, msg, members);
    Py_DECREF(members);
}
