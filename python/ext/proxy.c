/*
 * Proxies: the values through which a program calls chares. A proxy names a
 * collection (single chare, group or array) and, for an element proxy, one
 * member. `proxy.method` returns an entry-method caller; calling it encodes
 * the arguments and sends the message, all in C. Where the message goes is
 * the location service's answer (location.c).
 */
#include "cpy.h"

#include <stddef.h>
#include <string.h>

#include "structmember.h"

#include "codec.h"

typedef struct {
    PyObject_HEAD
    unsigned long long coll;
    cpy_place place;   /* kind, dimensions, map */
    int pe;            /* single chare: its PE; group element: the member's PE; else -1 */
    int elem;          /* 1 for an element proxy */
    int32_t idx[CPY_MAXDIMS]; /* array element proxies: the index */
    PyObject *cls;     /* the chare class (strong) */
    PyObject *entries; /* cpy_entries() of cls (strong) */
    PyObject *callers; /* dict name -> entry-method caller, made on first use */
    PyObject *map;     /* arrays: the ArrayMap group proxy, or NULL (strong) */
    PyObject *pes;     /* constrained groups: the sorted tuple of member PEs, or NULL */
} ProxyObject;

typedef struct {
    PyObject_HEAD
    ProxyObject *proxy; /* strong */
    PyObject *name;     /* strong, the entry method's name */
    int method;         /* its index in the class's entry methods */
} CallerObject;

PyObject *cpy_entries(cpy_state *st, PyObject *cls) {
    PyObject *ent = PyDict_GetItemWithError(st->entries, cls);
    if (ent || PyErr_Occurred())
        return ent;
    if (!st->hooks[CPY_HOOK_ENTRY_NAMES]) {
        PyErr_SetString(PyExc_RuntimeError, "charmpy is not initialised");
        return NULL;
    }
    PyObject *t = cpy_hook(st, CPY_HOOK_ENTRY_NAMES, &cls, 1);
    if (!t)
        return NULL;
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3 || !PyDict_Check(PyTuple_GET_ITEM(t, 0)) ||
        !PyTuple_Check(PyTuple_GET_ITEM(t, 1)) || !PyTuple_Check(PyTuple_GET_ITEM(t, 2))) {
        Py_DECREF(t);
        PyErr_SetString(PyExc_TypeError, "entry_names must return (codes, names, flags)");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(PyTuple_GET_ITEM(t, 1));
    PyObject *stats = PyByteArray_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(cpy_emstat));
    if (stats)
        memset(PyByteArray_AS_STRING(stats), 0, (size_t)n * sizeof(cpy_emstat));
    ent = stats ? PyTuple_Pack(4, PyTuple_GET_ITEM(t, 0), PyTuple_GET_ITEM(t, 1),
                               PyTuple_GET_ITEM(t, 2), stats)
                : NULL;
    Py_DECREF(t);
    Py_XDECREF(stats);
    if (!ent)
        return NULL;
    int rc = PyDict_SetItem(st->entries, cls, ent);
    Py_DECREF(ent);
    return rc < 0 ? NULL : ent; /* borrowed from the cache */
}

/* Does the codec take `v`? (0, or -1 with its exception set.) */
static int encodable(cpy_state *st, PyObject *v) {
    cpy_enc e;
    cpy_enc_init(&e, st);
    int rc = cpy_enc_add(&e, v);
    cpy_enc_release(&e);
    return rc;
}

/* The arguments could not be encoded: name the argument, for the TypeError
 * at the call site. */
static void explain_unserializable(cpy_state *st, PyObject *name, PyObject *args,
                                   PyObject *kwargs) {
    PyObject *cause = cpy_take_exception();
    PyObject *what = name ? Py_NewRef(name) : PyUnicode_FromString("the constructor");
    for (Py_ssize_t i = 0; what && i < PyTuple_GET_SIZE(args); i++) {
        PyObject *a = PyTuple_GET_ITEM(args, i);
        if (encodable(st, a) == 0)
            continue;
        PyObject *why = cpy_take_exception();
        PyErr_Format(PyExc_TypeError, "argument %zd of %U (of type %s) cannot be serialized: %S",
                     i + 1, what, Py_TYPE(a)->tp_name, why ? why : Py_None);
        Py_XDECREF(why);
        goto done;
    }
    if (what && kwargs) {
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(kwargs, &pos, &k, &v)) {
            if (encodable(st, v) == 0)
                continue;
            PyObject *why = cpy_take_exception();
            PyErr_Format(PyExc_TypeError,
                         "argument '%U' of %U (of type %s) cannot be serialized: %S", k, what,
                         Py_TYPE(v)->tp_name, why ? why : Py_None);
            Py_XDECREF(why);
            goto done;
        }
    }
    if (what)
        PyErr_Format(PyExc_TypeError, "the arguments of %U cannot be serialized: %S", what,
                     cause ? cause : Py_None);
done:
    Py_XDECREF(what);
    Py_XDECREF(cause);
}

/* The bytes a call by reference would take encoded, roughly (GreedyCommLB
 * weighs the calls between chares that share a PE): the buffers among its
 * arguments, 16 bytes for anything else. */
static size_t byref_estimate(PyObject *args) {
    size_t n = sizeof(em_hdr);
    for (Py_ssize_t i = 0; args && i < PyTuple_GET_SIZE(args); i++) {
        PyObject *a = PyTuple_GET_ITEM(args, i);
        Py_buffer v;
        if (PyObject_CheckBuffer(a) && PyObject_GetBuffer(a, &v, PyBUF_SIMPLE) == 0) {
            n += (size_t)v.len;
            PyBuffer_Release(&v);
        } else {
            PyErr_Clear();
            n += 16;
        }
    }
    return n;
}

int cpy_send_entry(cpy_state *st, int pe, const em_hdr *hdr, PyObject *name, PyObject *args,
                   PyObject *kwargs, PyObject *direct) {
    size_t off = sizeof(em_hdr);
    int byref = pe == cp_my_pe(st->ctx) && st->local_optim;
    cp_msg *msg;
    cpy_argsegs *segs = NULL; /* big buffers sent in place (mpi) */
    if (byref) {
        /* Same PE: the arguments travel by reference (the message owns them). */
        msg = cp_msg_alloc(st->ctx, off + cpy_byref_size());
        if (!msg) {
            PyErr_NoMemory();
            return -1;
        }
        cpy_byref_store((char *)cp_msg_data(msg) + off, args, kwargs);
    } else {
        msg = cpy_encode_args(st, off, args, kwargs, pe >= 0 ? &segs : NULL);
        if (!msg) {
            if (!PyErr_ExceptionMatches(PyExc_MemoryError))
                explain_unserializable(st, name, args, kwargs);
            return -1;
        }
    }
    em_hdr *h = cp_msg_data(msg);
    *h = *hdr;
    h->flags |= (pe < 0 ? EM_BCAST : 0) | (byref ? EM_BYREF : 0);
    msg->tag = direct ? cpy_loc_direct_take(st, direct) : 0; /* no Python from here to the send */
    st->last_bytes = byref && st->lb_comm ? byref_estimate(args) : msg->size;
    int rc = pe < 0 ? cp_bcast(st->ctx, st->h_entry, msg)
                    : cpy_send_args(st, pe, st->h_entry, msg, segs);
    if (rc) {
        cpy_discard(st, msg);
        PyErr_Format(rc == CP_ERANGE ? PyExc_IndexError : PyExc_RuntimeError,
                     "cannot send %s to PE %d: %s", name ? PyUnicode_AsUTF8(name) : "an insertion",
                     pe, cp_strerror(rc));
        return -1;
    }
    return 0;
}

int cpy_forward(cpy_state *st, cp_msg *msg, int pe) {
    return cpy_forward_direct(st, msg, pe, NULL);
}

int cpy_forward_direct(cpy_state *st, cp_msg *msg, int pe, PyObject *direct) {
    em_hdr *h = cp_msg_data(msg);
    if (!(h->flags & EM_BYREF) || pe == cp_my_pe(st->ctx)) {
        if (direct)
            msg->tag = cpy_loc_direct_take(st, direct);
        int rc = cp_send(st->ctx, pe, st->h_entry, msg);
        if (rc)
            PyErr_Format(PyExc_RuntimeError, "cannot forward a message to PE %d: %s", pe,
                         cp_strerror(rc));
        return rc ? -1 : 0;
    }
    /* Held by reference on this PE: the other PE needs the values, in a
     * new message; msg stays the caller's until that one is sent. */
    PyObject *a, *k;
    cpy_byref_take(h + 1, &a, &k);
    cp_msg *m2 = cpy_encode_args(st, sizeof *h, a, k, NULL);
    int rc = 0;
    if (m2) {
        memcpy(cp_msg_data(m2), h, sizeof *h);
        ((em_hdr *)cp_msg_data(m2))->flags &= ~(uint32_t)EM_BYREF;
        m2->tag = direct ? cpy_loc_direct_take(st, direct) : msg->tag;
        if ((rc = cp_send(st->ctx, pe, st->h_entry, m2)) != 0) {
            cp_msg_free(st->ctx, m2);
            m2 = NULL;
            PyErr_Format(PyExc_RuntimeError, "cannot forward a message to PE %d: %s", pe,
                         cp_strerror(rc));
        }
    }
    if (!m2) {
        cpy_byref_store(h + 1, a, k); /* still the message's */
        Py_DECREF(a);
        Py_XDECREF(k);
        return -1;
    }
    Py_DECREF(a);
    Py_XDECREF(k);
    cp_msg_free(st->ctx, msg);
    return 0;
}

/* ---- the caller ----------------------------------------------------------- */

/* Pop a boolean keyword the runtime consumes (ret=, awaitable=). */
static int pop_flag(PyObject *kwargs, const char *key) {
    if (!kwargs)
        return 0;
    PyObject *v = PyDict_GetItemString(kwargs, key); /* borrowed */
    if (!v)
        return 0;
    int truth = PyObject_IsTrue(v);
    if (truth < 0 || PyDict_DelItemString(kwargs, key) < 0)
        return -1;
    return truth;
}

/* A future for the reply of a call (new reference) and its id. */
static PyObject *reply_future(cpy_state *st, long nvals, int ret, int bcast, uint64_t *fid) {
    PyObject *a[3] = {PyLong_FromLong(nvals), ret ? Py_True : Py_False,
                      bcast ? Py_True : Py_False};
    PyObject *fut = a[0] ? cpy_hook(st, CPY_HOOK_NEW_FUTURE, a, 3) : NULL;
    Py_XDECREF(a[0]);
    PyObject *id = fut ? PyObject_GetAttrString(fut, "fid") : NULL;
    *fid = id ? PyLong_AsUnsignedLongLong(id) : 0;
    Py_XDECREF(id);
    if (!id || PyErr_Occurred()) {
        Py_XDECREF(fut);
        return NULL;
    }
    return fut;
}

/* Where a call through proxy p goes: *pe (-1: every PE), the index in h,
 * the location cache entry of a direct call in *direct, the number of
 * replies in *nvals (values, or PEs for a broadcast). 0 or -1. */
static inline int route(cpy_state *st, ProxyObject *p, em_hdr *h, int *pe, PyObject **direct,
                        long *nvals) {
    switch (p->place.kind) {
    case CPY_CHARE:
        *pe = p->pe; /* its home (wrapped after a restart on fewer PEs) ... */
        if (*pe >= cp_num_pes(st->ctx))
            *pe %= cp_num_pes(st->ctx);
        if (*pe != cp_my_pe(st->ctx)) { /* ... or where this PE heard it moved */
            int at = st->ncached ? cpy_loc_cached(st, p->coll, direct) : -1;
            if (at >= 0)
                *pe = at;
            else if (PyErr_Occurred())
                return -1;
            else
                st->chare_remote++; /* through its home (location.c, mod_loc_arrived) */
        }
        break;
    case CPY_GROUP:
        *pe = p->elem ? p->pe : -1;
        h->idx[0] = p->pe;
        if (!p->elem)
            *nvals = p->pes ? (long)PyTuple_GET_SIZE(p->pes) : cp_num_pes(st->ctx);
        break;
    default:
        h->ndims = (uint16_t)p->place.ndims;
        memcpy(h->idx, p->idx, sizeof h->idx);
        if (p->elem &&
            (*pe = cpy_loc_send_pe(st, p->coll, &p->place, p->idx, &h->flags, direct)) == -1)
            return -1;
        if (!p->elem)
            *nvals = cp_num_pes(st->ctx);
        break;
    }
    return 0;
}

int cpy_proxy_is_element(cpy_state *st, PyObject *proxy) {
    if (!PyObject_TypeCheck(proxy, (PyTypeObject *)st->proxy_type))
        return 0;
    ProxyObject *p = (ProxyObject *)proxy;
    return p->elem || p->place.kind == CPY_CHARE;
}

int cpy_proxy_send(cpy_state *st, PyObject *proxy, const em_hdr *hdr, PyObject *name,
                   PyObject *args) {
    if (cpy_proxy_is_element(st, proxy) != 1) {
        PyErr_Format(PyExc_TypeError, "%U: %R is not the proxy of one chare", name, proxy);
        return -1;
    }
    ProxyObject *p = (ProxyObject *)proxy;
    em_hdr h = *hdr;
    h.coll = p->coll;
    int pe = -1;
    PyObject *direct = NULL;
    long nvals = 1;
    if (route(st, p, &h, &pe, &direct, &nvals) < 0 ||
        cpy_send_entry(st, pe, &h, name, args, NULL, direct) < 0)
        return -1;
    if (st->lb_comm && st->lb_cur && p->place.kind == CPY_ARRAY &&
        cpy_lb_comm_add(st, &h, st->last_bytes) < 0)
        PyErr_Clear(); /* it went; its count for the balancer is lost */
    if (h.flags & EM_ROUTE)
        cpy_loc_note_routed(st, p->coll);
    return 0;
}

static PyObject *caller_call(CallerObject *self, PyObject *args, PyObject *kwargs) {
    cpy_state *st = cpy_state_of_type(Py_TYPE(self));
    ProxyObject *p = self->proxy;
    int ret = pop_flag(kwargs, "ret"), awaitable = pop_flag(kwargs, "awaitable");
    if (ret < 0 || awaitable < 0 || cpy_need_runtime(st))
        return NULL;
    if (kwargs && PyDict_GET_SIZE(kwargs) == 0)
        kwargs = NULL;
    em_hdr h = {.coll = p->coll, .method = (uint16_t)self->method};
    int pe = -1;
    PyObject *direct = NULL; /* a direct call's location cache entry (location.c) */
    long nvals = 1; /* replies: values, or PEs for a broadcast */
    if (route(st, p, &h, &pe, &direct, &nvals) < 0)
        return NULL;
    PyObject *fut = NULL;
    if (ret || awaitable) {
        fut = reply_future(st, nvals, ret, pe == -1, &h.fut_id);
        if (!fut)
            return NULL;
        h.flags |= (ret ? EM_RET : 0) | (awaitable ? EM_AWAIT : 0);
        h.fut_pe = cp_my_pe(st->ctx);
    }
    int rc = 0;
    if (pe == -1 && p->pes) {
        /* A constrained group: a message to each member's PE. */
        h.flags |= EM_BCAST;
        for (Py_ssize_t i = 0; rc == 0 && i < PyTuple_GET_SIZE(p->pes); i++)
            rc = cpy_send_entry(st, (int)PyLong_AsLong(PyTuple_GET_ITEM(p->pes, i)), &h,
                                self->name, args, kwargs, NULL);
    } else {
        rc = cpy_send_entry(st, pe, &h, self->name, args, kwargs, direct);
    }
    if (rc < 0) {
        Py_XDECREF(fut);
        return NULL;
    }
    if (st->lb_comm && st->lb_cur && p->elem && p->place.kind != CPY_CHARE &&
        p->place.kind != CPY_GROUP && cpy_lb_comm_add(st, &h, st->last_bytes) < 0)
        PyErr_Clear(); /* the call went; its count for the balancer is lost */
    if (h.flags & EM_ROUTE)
        cpy_loc_note_routed(st, p->coll);
    return fut ? fut : Py_NewRef(Py_None);
}

static int caller_traverse(CallerObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->proxy);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int caller_clear(CallerObject *self) {
    Py_CLEAR(self->proxy);
    return 0;
}

static void caller_dealloc(CallerObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_XDECREF(self->proxy);
    Py_XDECREF(self->name);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *caller_repr(CallerObject *self) {
    return PyUnicode_FromFormat("<entry method %U of %R>", self->name, self->proxy);
}

/* An entry method travels as getattr(proxy, name) (a reduction's target
 * goes to the root PE). */
static PyObject *caller_reduce(CallerObject *self, PyObject *noargs) {
    (void)noargs;
    PyObject *builtins = PyEval_GetBuiltins(); /* borrowed */
    PyObject *getattr_fn = builtins ? PyDict_GetItemString(builtins, "getattr") : NULL;
    if (!getattr_fn)
        return PyErr_Format(PyExc_RuntimeError, "no builtin getattr");
    return Py_BuildValue("O(OO)", getattr_fn, (PyObject *)self->proxy, self->name);
}

static PyMethodDef caller_methods[] = {
    {"__reduce__", (PyCFunction)caller_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot caller_slots[] = {
    {Py_tp_call, caller_call},
    {Py_tp_methods, caller_methods},
    {Py_tp_dealloc, caller_dealloc},
    {Py_tp_traverse, caller_traverse},
    {Py_tp_clear, caller_clear},
    {Py_tp_repr, caller_repr},
    {0, NULL},
};

static PyType_Spec caller_spec = {
    .name = "charmpy._charmpy.EntryMethod",
    .basicsize = sizeof(CallerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = caller_slots,
};

/* ---- the proxy ------------------------------------------------------------ */

static ProxyObject *proxy_alloc(PyTypeObject *tp, unsigned long long coll, int kind,
                                PyObject *cls) {
    cpy_state *st = cpy_state_of_type(tp);
    PyObject *entries = cpy_entries(st, cls);
    if (!entries)
        return NULL;
    ProxyObject *p = (ProxyObject *)tp->tp_alloc(tp, 0);
    if (!p)
        return NULL;
    p->coll = coll;
    p->place.kind = kind;
    p->pe = -1;
    p->cls = Py_NewRef(cls);
    p->entries = Py_NewRef(entries);
    return p;
}

int cpy_proxy_place(cpy_state *st, PyObject *proxy, cpy_place *out, uint64_t *coll) {
    if (!st->proxy_type || Py_TYPE(proxy) != (PyTypeObject *)st->proxy_type) {
        PyErr_Format(PyExc_TypeError, "a charmpy proxy was expected, not %s",
                     Py_TYPE(proxy)->tp_name);
        return -1;
    }
    ProxyObject *p = (ProxyObject *)proxy;
    *out = p->place;
    *coll = p->coll;
    return 0;
}

/* The member PEs of a constrained group: 0, 1 when some are beyond this
 * job's PEs (a proxy saved by a job with more PEs, read after a restart:
 * those members are gone), -1 with an exception. */
static int parse_pes(PyObject *pes, int npes) {
    int beyond = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(pes); i++) {
        PyObject *o = PyTuple_GET_ITEM(pes, i);
        long pe = PyLong_Check(o) ? PyLong_AsLong(o) : -1;
        if (pe >= npes) {
            beyond = 1;
            continue;
        }
        if (pe < 0) {
            PyErr_Format(PyExc_ValueError, "bad member PE %R of a constrained group", o);
            return -1;
        }
    }
    return beyond;
}

/* pes without the PEs from npes on ((0,) if none is left: as the restart
 * places such a group). New reference. */
static PyObject *pes_within(PyObject *pes, int npes) {
    PyObject *list = PyList_New(0);
    for (Py_ssize_t i = 0; list && i < PyTuple_GET_SIZE(pes); i++)
        if (PyLong_AsLong(PyTuple_GET_ITEM(pes, i)) < npes &&
            PyList_Append(list, PyTuple_GET_ITEM(pes, i)) < 0)
            Py_CLEAR(list);
    if (list && PyList_GET_SIZE(list) == 0) {
        PyObject *zero = PyLong_FromLong(0);
        if (!zero || PyList_Append(list, zero) < 0)
            Py_CLEAR(list);
        Py_XDECREF(zero);
    }
    PyObject *t = list ? PyList_AsTuple(list) : NULL;
    Py_XDECREF(list);
    return t;
}

/* Proxy(coll, kind, cls, pe=-1, dims=(), index=None, ndims=-1, map=None,
 * pes=None): a sparse array has ndims >= 1 and no dims; pes lists the
 * members of a constrained group. */
static PyObject *proxy_new(PyTypeObject *tp, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"coll", "kind", "cls", "pe",  "dims",
                         "index", "ndims", "map", "pes", NULL};
    unsigned long long coll;
    int kind, pe = -1, ndims = -1;
    PyObject *cls, *dims = NULL, *index = Py_None, *map = Py_None, *pes = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "KiO|iO!OiOO", kw, &coll, &kind, &cls, &pe,
                                     &PyTuple_Type, &dims, &index, &ndims, &map, &pes))
        return NULL;
    if (kind < CPY_CHARE || kind > CPY_ARRAY)
        return PyErr_Format(PyExc_ValueError, "bad collection kind %d", kind);
    cpy_state *st = cpy_state_of_type(tp);
    ProxyObject *p = proxy_alloc(tp, coll, kind, cls);
    if (!p)
        return NULL;
    p->pe = pe;
    p->place.chare_pe = kind == CPY_CHARE ? pe : -1;
    if (dims) {
        Py_ssize_t nd = PyTuple_GET_SIZE(dims);
        if (nd > CPY_MAXDIMS) {
            PyErr_Format(PyExc_ValueError, "arrays have at most %d dimensions", CPY_MAXDIMS);
            goto fail;
        }
        p->place.ndims = (int)nd;
        for (Py_ssize_t i = 0; i < nd; i++)
            p->place.dims[i] = (int32_t)PyLong_AsLong(PyTuple_GET_ITEM(dims, i));
    }
    if (kind == CPY_ARRAY && ndims > 0 && (!dims || PyTuple_GET_SIZE(dims) == 0)) {
        if (ndims > CPY_MAXDIMS) {
            PyErr_Format(PyExc_ValueError, "arrays have at most %d dimensions", CPY_MAXDIMS);
            goto fail;
        }
        p->place.sparse = 1;
        p->place.ndims = ndims;
    }
    if (map != Py_None) {
        if (Py_TYPE(map) != tp || ((ProxyObject *)map)->place.kind != CPY_GROUP) {
            PyErr_SetString(PyExc_TypeError, "map= takes the proxy of a Group of an ArrayMap");
            goto fail;
        }
        p->map = Py_NewRef(map);
        p->place.map_coll = ((ProxyObject *)map)->coll;
        p->place.has_map = 1;
    }
    if (pes != Py_None) {
        int npes = st->ctx ? cp_num_pes(st->ctx) : 1, rc = -1;
        if (kind != CPY_GROUP || !PyTuple_Check(pes) || (rc = parse_pes(pes, npes)) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "pes= is a tuple of PEs, for groups");
            goto fail;
        }
        p->pes = rc ? pes_within(pes, npes) : Py_NewRef(pes);
        if (!p->pes)
            goto fail;
    }
    if (index != Py_None) {
        if (kind != CPY_ARRAY || !PyTuple_Check(index) ||
            PyTuple_GET_SIZE(index) != p->place.ndims) {
            PyErr_Format(PyExc_ValueError, "bad proxy index %R", index);
            goto fail;
        }
        p->elem = 1;
        for (int i = 0; i < p->place.ndims; i++)
            p->idx[i] = (int32_t)PyLong_AsLong(PyTuple_GET_ITEM(index, i));
    } else if (kind == CPY_GROUP && pe >= 0) {
        p->elem = 1;
    }
    if (PyErr_Occurred())
        goto fail;
    return (PyObject *)p;
fail:
    Py_DECREF(p);
    return NULL;
}

static PyObject *index_tuple(const ProxyObject *p) {
    PyObject *t = PyTuple_New(p->place.ndims);
    for (int i = 0; t && i < p->place.ndims; i++)
        PyTuple_SET_ITEM(t, i, PyLong_FromLong(p->idx[i]));
    return t;
}

static PyObject *dims_tuple(const ProxyObject *p) {
    int n = p->place.sparse ? 0 : p->place.ndims;
    PyObject *t = PyTuple_New(n);
    for (int i = 0; t && i < n; i++)
        PyTuple_SET_ITEM(t, i, PyLong_FromLong(p->place.dims[i]));
    return t;
}

/* An index given as an int, a tuple or a list of ints, as a tuple (new
 * reference); NULL with an exception. Slices are sections. */
static int has_slice(PyObject *t) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t); i++)
        if (PySlice_Check(PyTuple_GET_ITEM(t, i)))
            return 1;
    return 0;
}

static PyObject *index_key(PyObject *key) {
    if (PyTuple_Check(key))
        return Py_NewRef(key);
    if (PyList_Check(key))
        return PyList_AsTuple(key);
    return PyTuple_Pack(1, key);
}

/* The ints of index tuple t into out; -1 with an exception. */
static int parse_index(ProxyObject *self, PyObject *key, PyObject *t, int32_t *out) {
    if (PyTuple_GET_SIZE(t) != self->place.ndims) {
        PyErr_Format(PyExc_IndexError, "index %R has %zd dimension%s, the array has %d", key,
                     PyTuple_GET_SIZE(t), PyTuple_GET_SIZE(t) == 1 ? "" : "s",
                     self->place.ndims);
        return -1;
    }
    for (int i = 0; i < self->place.ndims; i++) {
        PyObject *o = PyTuple_GET_ITEM(t, i);
        if (!PyIndex_Check(o)) {
            PyErr_Format(PyExc_TypeError,
                         "proxy indices are integers, or tuples or lists of integers, not %s",
                         Py_TYPE(o)->tp_name);
            return -1;
        }
        PyObject *io = PyNumber_Index(o);
        long v = io ? PyLong_AsLong(io) : -1;
        Py_XDECREF(io);
        if (PyErr_Occurred() || (self->place.sparse ? (v < INT32_MIN || v > INT32_MAX)
                                                    : (v < 0 || v >= self->place.dims[i]))) {
            PyErr_Clear();
            PyObject *shape = dims_tuple(self);
            PyErr_Format(PyExc_IndexError, "index %R is out of bounds for an array of shape %R",
                         key, shape);
            Py_XDECREF(shape);
            return -1;
        }
        out[i] = (int32_t)v;
    }
    return 0;
}

static int member_pe(ProxyObject *self, PyObject *key, int npes) {
    long pe = PyLong_Check(key) ? PyLong_AsLong(key) : -2;
    if (pe == -2 || (pe == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "a group's members are indexed by PE (an int), not %s",
                     Py_TYPE(key)->tp_name);
        return -1;
    }
    if (pe < 0 || pe >= npes) {
        PyErr_Format(PyExc_IndexError, "group index %ld out of range: there are %d PEs", pe,
                     npes);
        return -1;
    }
    if (self->pes) {
        PyObject *o = PyLong_FromLong(pe);
        int in = o ? PySequence_Contains(self->pes, o) : -1;
        Py_XDECREF(o);
        if (in <= 0) {
            if (in == 0)
                PyErr_Format(PyExc_IndexError,
                             "PE %ld has no member of this group: it was created with "
                             "onPEs=%R",
                             pe, self->pes);
            return -1;
        }
    }
    return (int)pe;
}

static PyObject *proxy_getitem(ProxyObject *self, PyObject *key) {
    cpy_state *st = cpy_state_of_type(Py_TYPE(self));
    int npes = st->ctx ? cp_num_pes(st->ctx) : 1;
    if (self->elem || self->place.kind == CPY_CHARE)
        return PyErr_Format(PyExc_TypeError, "%s proxy cannot be indexed",
                            self->elem ? "an element" : "a single-chare");
    if (PySlice_Check(key) || (PyTuple_Check(key) && has_slice(key)))
        return cpy_sect_slice(st, (PyObject *)self, key);
    int32_t idx[CPY_MAXDIMS] = {0};
    int pe = -1;
    if (self->place.kind == CPY_GROUP) {
        if ((pe = member_pe(self, key, npes)) < 0)
            return NULL;
    } else {
        PyObject *t = index_key(key);
        int rc = t ? parse_index(self, key, t, idx) : -1;
        Py_XDECREF(t);
        if (rc < 0)
            return NULL;
    }
    ProxyObject *p = proxy_alloc(Py_TYPE(self), self->coll, self->place.kind, self->cls);
    if (!p)
        return NULL;
    p->place = self->place;
    p->map = Py_XNewRef(self->map);
    p->pes = Py_XNewRef(self->pes);
    p->elem = 1;
    p->pe = pe;
    memcpy(p->idx, idx, sizeof idx);
    return (PyObject *)p;
}

static PyObject *proxy_getattro(ProxyObject *self, PyObject *name) {
    if (self->callers) {
        PyObject *c = PyDict_GetItemWithError(self->callers, name);
        if (c)
            return Py_NewRef(c);
        if (PyErr_Occurred())
            return NULL;
    }
    PyObject *code = PyDict_GetItemWithError(PyTuple_GET_ITEM(self->entries, 0), name);
    if (code) {
        cpy_state *st = cpy_state_of_type(Py_TYPE(self));
        long method = PyLong_AsLong(code);
        if (method < 0 || method >= CPY_M_ENTRY_LIMIT)
            return PyErr_Format(PyExc_ValueError, "%s has too many entry methods",
                                ((PyTypeObject *)self->cls)->tp_name);
        CallerObject *c = PyObject_GC_New(CallerObject, (PyTypeObject *)st->caller_type);
        if (!c)
            return NULL;
        c->proxy = (ProxyObject *)Py_NewRef(self);
        c->name = Py_NewRef(name);
        c->method = (int)method;
        /* Callers are immutable: keep one per name. The cycle proxy ->
         * callers -> caller -> proxy is collected by the GC. */
        if (!self->callers && !(self->callers = PyDict_New())) {
            Py_DECREF(c);
            return NULL;
        }
        PyObject_GC_Track(c);
        if (PyDict_SetItem(self->callers, name, (PyObject *)c) < 0) {
            Py_DECREF(c);
            return NULL;
        }
        return (PyObject *)c;
    }
    if (PyErr_Occurred())
        return NULL;
    PyObject *r = PyObject_GenericGetAttr((PyObject *)self, name);
    if (!r && PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        PyErr_Format(PyExc_AttributeError,
                     "'%s' has no entry method '%U' (entry methods are its public methods)",
                     ((PyTypeObject *)self->cls)->tp_name, name);
    }
    return r;
}

static Py_hash_t proxy_hash(ProxyObject *self) {
    Py_uhash_t h = (Py_uhash_t)self->coll * 1000003u;
    h ^= (Py_uhash_t)self->elem * 7919u + (Py_uhash_t)(self->pe + 1) * 131u;
    for (int i = 0; i < self->place.ndims; i++)
        h = h * 31u + (Py_uhash_t)(uint32_t)self->idx[i];
    return h == (Py_uhash_t)-1 ? -2 : (Py_hash_t)h;
}

static PyObject *proxy_richcompare(ProxyObject *a, PyObject *bo, int op) {
    if ((op != Py_EQ && op != Py_NE) || Py_TYPE(bo) != Py_TYPE(a))
        Py_RETURN_NOTIMPLEMENTED;
    ProxyObject *b = (ProxyObject *)bo;
    int eq = a->coll == b->coll && a->place.kind == b->place.kind && a->elem == b->elem &&
             a->pe == b->pe && memcmp(a->idx, b->idx, sizeof a->idx) == 0;
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

static PyObject *proxy_repr(ProxyObject *self) {
    static const char *kinds[] = {"Chare", "Group", "Array"};
    PyObject *where;
    if (self->place.kind == CPY_ARRAY && self->elem)
        where = index_tuple(self);
    else if (self->pe >= 0)
        where = PyLong_FromLong(self->pe);
    else
        where = Py_NewRef(Py_None);
    if (!where)
        return NULL;
    char id[32];
    snprintf(id, sizeof id, "%llx", self->coll);
    const char *kind = kinds[self->place.kind];
    const char *cls = ((PyTypeObject *)self->cls)->tp_name;
    PyObject *r = where == Py_None
                      ? PyUnicode_FromFormat("<%s proxy of %s %s>", kind, cls, id)
                      : PyUnicode_FromFormat("<%s proxy of %s %s at %R>", kind, cls, id, where);
    Py_DECREF(where);
    return r;
}

static PyObject *proxy_reduce(ProxyObject *self, PyObject *noargs) {
    (void)noargs;
    PyObject *dims = dims_tuple(self);
    PyObject *index = self->place.kind == CPY_ARRAY && self->elem ? index_tuple(self)
                                                                  : Py_NewRef(Py_None);
    if (!dims || !index) {
        Py_XDECREF(dims);
        Py_XDECREF(index);
        return NULL;
    }
    return Py_BuildValue("O(KiOiNNiOO)", (PyObject *)Py_TYPE(self), self->coll,
                         self->place.kind, self->cls, self->pe, dims, index,
                         self->place.sparse ? self->place.ndims : -1,
                         self->map ? self->map : Py_None, self->pes ? self->pes : Py_None);
}

static PyObject *proxy_get_index(ProxyObject *self, void *c) {
    (void)c;
    if (!self->elem)
        Py_RETURN_NONE;
    if (self->place.kind == CPY_GROUP)
        return PyLong_FromLong(self->pe);
    return index_tuple(self);
}

/* charm4py's elemIdx: the member (-1 for a whole group, () for a whole
 * array, the index of an element). */
static PyObject *proxy_get_elemidx(ProxyObject *self, void *c) {
    (void)c;
    if (self->place.kind == CPY_GROUP)
        return PyLong_FromLong(self->elem ? self->pe : -1);
    if (self->place.kind == CPY_ARRAY)
        return self->elem ? index_tuple(self) : PyTuple_New(0);
    return PyLong_FromLong(self->pe);
}

static PyObject *proxy_get_dims(ProxyObject *self, void *c) {
    (void)c;
    return dims_tuple(self);
}

static PyObject *proxy_get_kind(ProxyObject *self, void *c) {
    (void)c;
    return PyLong_FromLong(self->place.kind);
}

static PyObject *proxy_get_ndims(ProxyObject *self, void *c) {
    (void)c;
    return PyLong_FromLong(self->place.ndims);
}

static PyObject *proxy_get_sparse(ProxyObject *self, void *c) {
    (void)c;
    return PyBool_FromLong(self->place.sparse);
}

static PyObject *proxy_get_false(ProxyObject *self, void *c) {
    (void)self;
    (void)c;
    Py_RETURN_FALSE;
}

static PyMemberDef proxy_members[] = {
    {"coll", T_ULONGLONG, offsetof(ProxyObject, coll), READONLY, "collection id"},
    {"pe", T_INT, offsetof(ProxyObject, pe), READONLY, "PE of a chare or group member"},
    {"map", T_OBJECT, offsetof(ProxyObject, map), READONLY, "the ArrayMap group, or None"},
    {"pes", T_OBJECT, offsetof(ProxyObject, pes), READONLY,
     "the member PEs of a constrained group, or None"},
    {"cls", T_OBJECT, offsetof(ProxyObject, cls), READONLY, "the chare class"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef proxy_getset[] = {
    {"index", (getter)proxy_get_index, NULL, "element index, or None", NULL},
    {"elemIdx", (getter)proxy_get_elemidx, NULL, "charm4py's member index", NULL},
    {"dims", (getter)proxy_get_dims, NULL, "array shape", NULL},
    {"kind", (getter)proxy_get_kind, NULL, "0 chare, 1 group, 2 array", NULL},
    {"ndims", (getter)proxy_get_ndims, NULL, "array dimensions", NULL},
    {"sparse", (getter)proxy_get_sparse, NULL, "True for a sparse array", NULL},
    {"issec", (getter)proxy_get_false, NULL,
     "False: a collection's proxy (section proxies are sections.Section)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyObject *proxy_local_branch(ProxyObject *self, PyObject *noargs) {
    (void)noargs;
    cpy_state *st = cpy_state_of_type(Py_TYPE(self));
    if (self->place.kind != CPY_GROUP || cpy_need_runtime(st))
        return st->ctx ? PyErr_Format(PyExc_TypeError, "ckLocalBranch() is for group proxies")
                       : NULL;
    PyObject *me = PyLong_FromLong(cp_my_pe(st->ctx));
    if (!me)
        return NULL;
    int member = self->pes ? PySequence_Contains(self->pes, me) : 1;
    PyObject *members = member > 0 ? cpy_loc_members(st, self->coll) : NULL;
    PyObject *m = members ? PyDict_GetItemWithError(members, me) : NULL;
    Py_XDECREF(me);
    if (m)
        return Py_NewRef(m);
    if (PyErr_Occurred() || member < 0)
        return NULL;
    if (member == 0)
        return PyErr_Format(PyExc_RuntimeError,
                            "PE %d has no member of this group: it was created with onPEs=%R",
                            cp_my_pe(st->ctx), self->pes);
    return PyErr_Format(PyExc_RuntimeError, "the group is not created on this PE yet (use "
                                            "charm.awaitCreation)");
}

static PyObject *proxy_home_pe(ProxyObject *self, PyObject *noargs) {
    (void)noargs;
    cpy_state *st = cpy_state_of_type(Py_TYPE(self));
    if (self->place.kind != CPY_ARRAY || !self->elem)
        return PyErr_Format(PyExc_TypeError, "_home_pe() is for array element proxies");
    if (cpy_need_runtime(st))
        return NULL;
    int pe = cpy_loc_home(st, &self->place, self->idx);
    if (pe == CPY_HOME_UNKNOWN)
        Py_RETURN_NONE;
    return pe < 0 ? NULL : PyLong_FromLong(pe);
}

static PyObject *proxy_insert(ProxyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"index", "args", "onPE", "useAtSync", NULL};
    PyObject *index, *cargs = NULL, *sync = NULL;
    int on_pe = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|OiO", kw, &index, &cargs, &on_pe, &sync))
        return NULL;
    cpy_state *st = cpy_state_of_type(Py_TYPE(self));
    if (self->place.kind != CPY_ARRAY || !self->place.sparse || self->elem)
        return PyErr_Format(PyExc_TypeError,
                            "ckInsert() is for sparse arrays, created with Array(C, ndims=n)");
    if (cpy_need_runtime(st))
        return NULL;
    int32_t idx[CPY_MAXDIMS] = {0};
    PyObject *t = index_key(index);
    int rc = t ? parse_index(self, index, t, idx) : -1;
    Py_XDECREF(t);
    if (rc < 0)
        return NULL;
    PyObject *empty = cargs && cargs != Py_None ? NULL : PyTuple_New(0);
    rc = cpy_loc_insert(st, self->coll, &self->place, idx, empty ? empty : cargs, on_pe);
    Py_XDECREF(empty);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *proxy_done_inserting(ProxyObject *self, PyObject *noargs) {
    (void)noargs;
    cpy_state *st = cpy_state_of_type(Py_TYPE(self));
    if (self->place.kind != CPY_ARRAY || !self->place.sparse || self->elem)
        return PyErr_Format(PyExc_TypeError, "ckDoneInserting() is for sparse arrays");
    PyObject *id = cpy_need_runtime(st) ? NULL : PyLong_FromUnsignedLongLong(self->coll);
    PyObject *r = id ? cpy_hook(st, CPY_HOOK_DONE_INSERTING, &id, 1) : NULL;
    Py_XDECREF(id);
    return r;
}

static PyMethodDef proxy_methods[] = {
    {"ckDoneInserting", (PyCFunction)proxy_done_inserting, METH_NOARGS,
     "no more insertions: messages to missing elements become errors"},
    {"_home_pe", (PyCFunction)proxy_home_pe, METH_NOARGS,
     "home PE of an array element (None while its ArrayMap is not here)"},
    {"ckInsert", (PyCFunction)(void (*)(void))proxy_insert, METH_VARARGS | METH_KEYWORDS,
     "ckInsert(index, args=[], onPE=-1): insert an element into a sparse array"},
    {"__reduce__", (PyCFunction)proxy_reduce, METH_NOARGS, NULL},
    {"ckLocalBranch", (PyCFunction)proxy_local_branch, METH_NOARGS,
     "the member of this group on this PE"},
    {NULL, NULL, 0, NULL},
};

static int proxy_traverse(ProxyObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->cls);
    Py_VISIT(self->entries);
    Py_VISIT(self->callers);
    Py_VISIT(self->map);
    Py_VISIT(self->pes);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int proxy_clear(ProxyObject *self) {
    Py_CLEAR(self->cls);
    Py_CLEAR(self->entries);
    Py_CLEAR(self->callers);
    Py_CLEAR(self->map);
    Py_CLEAR(self->pes);
    return 0;
}

static void proxy_dealloc(ProxyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    proxy_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot proxy_slots[] = {
    {Py_tp_new, proxy_new},
    {Py_tp_dealloc, proxy_dealloc},
    {Py_tp_traverse, proxy_traverse},
    {Py_tp_clear, proxy_clear},
    {Py_tp_getattro, proxy_getattro},
    {Py_tp_hash, proxy_hash},
    {Py_tp_richcompare, proxy_richcompare},
    {Py_tp_repr, proxy_repr},
    {Py_tp_members, proxy_members},
    {Py_tp_getset, proxy_getset},
    {Py_tp_methods, proxy_methods},
    {Py_mp_subscript, proxy_getitem},
    {0, NULL},
};

static PyType_Spec proxy_spec = {
    .name = "charmpy._charmpy.Proxy",
    .basicsize = sizeof(ProxyObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = proxy_slots,
};

int cpy_proxy_types_init(PyObject *module, cpy_state *st) {
    st->proxy_type = PyType_FromModuleAndSpec(module, &proxy_spec, NULL);
    st->caller_type = PyType_FromModuleAndSpec(module, &caller_spec, NULL);
    if (!st->proxy_type || !st->caller_type)
        return -1;
    if (PyModule_AddObjectRef(module, "Proxy", st->proxy_type) < 0)
        return -1;
    return 0;
}
