/*
 * Proxies: the values through which a program calls chares. A proxy names a
 * collection (single chare, group or array) and, for an element proxy, one
 * member. `proxy.method` returns an entry-method caller; calling it encodes
 * the arguments and sends the message, all in C.
 */
#include "cpy.h"

#include <stddef.h>
#include <string.h>

#include "structmember.h"

#include "codec.h"

typedef struct {
    PyObject_HEAD
    unsigned long long coll;
    int kind;
    int pe;      /* single chare: its PE; group element: the member's PE; else -1 */
    int ndims;   /* arrays: number of dimensions */
    int elem;    /* 1 for an element proxy */
    int32_t dims[CPY_MAXDIMS]; /* arrays: the shape */
    int32_t idx[CPY_MAXDIMS];  /* array element proxies: the index */
    int sparse;  /* arrays: elements are inserted (ckInsert), dims unused */
    PyObject *cls;     /* the chare class (strong) */
    PyObject *entries; /* cpy_entries() of cls (strong) */
    PyObject *callers; /* dict name -> entry-method caller, made on first use */
    PyObject *map;     /* arrays: the ArrayMap group proxy, or NULL (strong) */
    PyObject *map_obj; /* its member on this PE, once looked up (strong) */
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
    if (!st->runtime) {
        PyErr_SetString(PyExc_RuntimeError, "charmpy is not initialised");
        return NULL;
    }
    ent = PyObject_CallMethod(st->runtime, "_entry_names", "O", cls);
    if (!ent)
        return NULL;
    if (!PyTuple_Check(ent) || PyTuple_GET_SIZE(ent) != 3 ||
        !PyDict_Check(PyTuple_GET_ITEM(ent, 0)) || !PyTuple_Check(PyTuple_GET_ITEM(ent, 1)) ||
        !PyTuple_Check(PyTuple_GET_ITEM(ent, 2))) {
        Py_DECREF(ent);
        PyErr_SetString(PyExc_TypeError, "_entry_names must return (codes, names, flags)");
        return NULL;
    }
    int rc = PyDict_SetItem(st->entries, cls, ent);
    Py_DECREF(ent);
    return rc < 0 ? NULL : ent; /* borrowed from the cache */
}

static PyObject *index_tuple(const ProxyObject *p);

/* Home PE of an array element: the ArrayMap's procNum(index) when the array
 * has a map; else for a dense array the block map (element l of a total T
 * lives on floor(l * npes / T)), for a sparse one a hash of the index.
 * Returns -1 with an exception set on failure. */
static int home_pe(ProxyObject *p, int npes) {
    if (p->map) {
        if (!p->map_obj) {
            p->map_obj = PyObject_CallMethod(p->map, "ckLocalBranch", NULL);
            if (!p->map_obj)
                return -1;
        }
        PyObject *idx = index_tuple(p);
        PyObject *r = idx ? PyObject_CallMethod(p->map_obj, "procNum", "(O)", idx) : NULL;
        Py_XDECREF(idx);
        long pe = r ? PyLong_AsLong(r) : -1;
        Py_XDECREF(r);
        if (pe == -1 && PyErr_Occurred())
            return -1;
        if (pe < 0 || pe >= npes) {
            PyErr_Format(PyExc_ValueError, "ArrayMap.procNum returned %ld; a PE from 0 to %d "
                         "was expected", pe, npes - 1);
            return -1;
        }
        return (int)pe;
    }
    if (p->sparse) {
        uint64_t h = 1469598103934665603ull;
        for (int i = 0; i < p->ndims; i++)
            h = (h ^ (uint32_t)p->idx[i]) * 1099511628211ull;
        return (int)(h % (unsigned)npes);
    }
    unsigned __int128 lin = 0, total = 1;
    for (int i = 0; i < p->ndims; i++) {
        lin = lin * (uint32_t)p->dims[i] + (uint32_t)p->idx[i];
        total *= (uint32_t)p->dims[i];
    }
    return (int)(lin * (unsigned)npes / total);
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
    PyObject *cause = NULL, *t, *tb;
    PyErr_Fetch(&t, &cause, &tb);
    PyErr_NormalizeException(&t, &cause, &tb);
    Py_XDECREF(t);
    Py_XDECREF(tb);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args); i++) {
        PyObject *a = PyTuple_GET_ITEM(args, i);
        if (encodable(st, a) == 0)
            continue;
        PyObject *t2, *v2, *tb2;
        PyErr_Fetch(&t2, &v2, &tb2);
        PyErr_Format(PyExc_TypeError, "argument %zd of %U (of type %s) cannot be serialized: %S",
                     i + 1, name, Py_TYPE(a)->tp_name, v2 ? v2 : Py_None);
        Py_XDECREF(t2);
        Py_XDECREF(v2);
        Py_XDECREF(tb2);
        goto done;
    }
    if (kwargs) {
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(kwargs, &pos, &k, &v)) {
            if (encodable(st, v) == 0)
                continue;
            PyObject *t2, *v2, *tb2;
            PyErr_Fetch(&t2, &v2, &tb2);
            PyErr_Format(PyExc_TypeError,
                         "argument '%U' of %U (of type %s) cannot be serialized: %S", k, name,
                         Py_TYPE(v)->tp_name, v2 ? v2 : Py_None);
            Py_XDECREF(t2);
            Py_XDECREF(v2);
            Py_XDECREF(tb2);
            goto done;
        }
    }
    PyErr_Format(PyExc_TypeError, "the arguments of %U cannot be serialized: %S", name,
                 cause ? cause : Py_None);
done:
    Py_XDECREF(cause);
}

int cpy_send_entry(cpy_state *st, int pe, uint64_t coll, int ndims, const int32_t *idx,
                   int method, PyObject *name, PyObject *args, PyObject *kwargs,
                   uint32_t fut_flags, int fut_pe, uint64_t fut_id) {
    if (!st->ctx) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the charmpy runtime is not running: call charm.start(main) first");
        return -1;
    }
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
    memset(h, 0, sizeof *h);
    h->coll = coll;
    h->flags = (pe < 0 ? EM_BCAST : 0) | (byref ? EM_BYREF : 0) | fut_flags;
    h->fut_pe = fut_pe;
    h->fut_id = fut_id;
    h->ndims = (uint16_t)ndims;
    h->method = (uint16_t)method;
    memcpy(h->idx, idx, sizeof h->idx);
    int rc = pe < 0 ? cp_bcast(st->ctx, st->h_entry, msg)
                    : cpy_send_args(st, pe, st->h_entry, msg, segs);
    if (rc) {
        if (byref) {
            PyObject *a, *k;
            cpy_byref_take((char *)cp_msg_data(msg) + off, &a, &k);
            Py_DECREF(a);
            Py_XDECREF(k);
        }
        cp_msg_free(st->ctx, msg);
        PyErr_Format(PyExc_RuntimeError, "cannot send %U to PE %d: %s", name, pe,
                     cp_strerror(rc));
        return -1;
    }
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

static PyObject *caller_call(CallerObject *self, PyObject *args, PyObject *kwargs) {
    cpy_state *st = cpy_get_state();
    ProxyObject *p = self->proxy;
    int ret = pop_flag(kwargs, "ret"), awaitable = pop_flag(kwargs, "awaitable");
    if (ret < 0 || awaitable < 0)
        return NULL;
    if (kwargs && PyDict_GET_SIZE(kwargs) == 0)
        kwargs = NULL;
    int pe, ndims = 0;
    long nvals = 1;
    int32_t idx[CPY_MAXDIMS] = {0};
    switch (p->kind) {
    case CPY_CHARE:
        pe = p->pe;
        break;
    case CPY_GROUP:
        pe = p->elem ? p->pe : -1;
        idx[0] = p->pe;
        if (!p->elem)
            nvals = st->ctx ? cp_num_pes(st->ctx) : 1;
        break;
    default:
        ndims = p->ndims;
        memcpy(idx, p->idx, sizeof idx);
        pe = p->elem && st->ctx ? home_pe(p, cp_num_pes(st->ctx)) : -1;
        if (p->elem && pe < 0)
            return NULL;
        if (!p->elem && p->sparse && (ret || awaitable)) {
            PyErr_SetString(PyExc_NotImplementedError,
                            "ret=True/awaitable=True on a broadcast to a sparse array: the "
                            "number of elements is not known to the caller");
            return NULL;
        }
        if (!p->elem) {
            nvals = 1;
            for (int i = 0; i < p->ndims; i++)
                nvals *= p->dims[i];
        }
        break;
    }
    PyObject *fut = NULL;
    uint64_t fut_id = 0;
    if (ret || awaitable) {
        fut = PyObject_CallMethod(st->runtime, "_call_future", "li", nvals, ret);
        PyObject *fid = fut ? PyObject_GetAttrString(fut, "fid") : NULL;
        fut_id = fid ? PyLong_AsUnsignedLongLong(fid) : 0;
        Py_XDECREF(fid);
        if (!fid || PyErr_Occurred()) {
            Py_XDECREF(fut);
            return NULL;
        }
    }
    if (cpy_send_entry(st, pe, p->coll, ndims, idx, self->method, self->name, args, kwargs,
                       (ret ? EM_RET : 0) | (awaitable ? EM_AWAIT : 0),
                       st->ctx ? cp_my_pe(st->ctx) : 0, fut_id) < 0) {
        Py_XDECREF(fut);
        return NULL;
    }
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

static PyType_Slot caller_slots[] = {
    {Py_tp_call, caller_call},
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
    cpy_state *st = cpy_get_state();
    PyObject *entries = cpy_entries(st, cls);
    if (!entries)
        return NULL;
    ProxyObject *p = (ProxyObject *)tp->tp_alloc(tp, 0);
    if (!p)
        return NULL;
    p->coll = coll;
    p->kind = kind;
    p->pe = -1;
    p->cls = Py_NewRef(cls);
    p->entries = Py_NewRef(entries);
    return p;
}

/* Proxy(coll, kind, cls, pe=-1, dims=(), index=None, ndims=-1, map=None):
 * a sparse array has ndims >= 1 and no dims. */
static PyObject *proxy_new(PyTypeObject *tp, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"coll", "kind", "cls", "pe", "dims", "index", "ndims", "map", NULL};
    unsigned long long coll;
    int kind, pe = -1, ndims = -1;
    PyObject *cls, *dims = NULL, *index = Py_None, *map = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "KiO|iO!OiO", kw, &coll, &kind, &cls, &pe,
                                     &PyTuple_Type, &dims, &index, &ndims, &map))
        return NULL;
    if (kind < CPY_CHARE || kind > CPY_ARRAY)
        return PyErr_Format(PyExc_ValueError, "bad collection kind %d", kind);
    ProxyObject *p = proxy_alloc(tp, coll, kind, cls);
    if (!p)
        return NULL;
    p->pe = pe;
    if (dims) {
        Py_ssize_t nd = PyTuple_GET_SIZE(dims);
        if (nd > CPY_MAXDIMS) {
            Py_DECREF(p);
            return PyErr_Format(PyExc_ValueError, "arrays have at most %d dimensions",
                                CPY_MAXDIMS);
        }
        p->ndims = (int)nd;
        for (Py_ssize_t i = 0; i < nd; i++)
            p->dims[i] = (int32_t)PyLong_AsLong(PyTuple_GET_ITEM(dims, i));
    }
    if (kind == CPY_ARRAY && ndims > 0 && (!dims || PyTuple_GET_SIZE(dims) == 0)) {
        if (ndims > CPY_MAXDIMS) {
            Py_DECREF(p);
            return PyErr_Format(PyExc_ValueError, "arrays have at most %d dimensions",
                                CPY_MAXDIMS);
        }
        p->sparse = 1;
        p->ndims = ndims;
    }
    if (map != Py_None)
        p->map = Py_NewRef(map);
    if (index != Py_None) {
        if (kind != CPY_ARRAY || !PyTuple_Check(index) ||
            PyTuple_GET_SIZE(index) != p->ndims) {
            Py_DECREF(p);
            return PyErr_Format(PyExc_ValueError, "bad proxy index %R", index);
        }
        p->elem = 1;
        for (int i = 0; i < p->ndims; i++)
            p->idx[i] = (int32_t)PyLong_AsLong(PyTuple_GET_ITEM(index, i));
    } else if (kind == CPY_GROUP && pe >= 0) {
        p->elem = 1;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(p);
        return NULL;
    }
    return (PyObject *)p;
}

static PyObject *index_tuple(const ProxyObject *p) {
    PyObject *t = PyTuple_New(p->ndims);
    for (int i = 0; t && i < p->ndims; i++)
        PyTuple_SET_ITEM(t, i, PyLong_FromLong(p->idx[i]));
    return t;
}

static PyObject *dims_tuple(const ProxyObject *p) {
    PyObject *t = PyTuple_New(p->ndims);
    for (int i = 0; t && i < p->ndims; i++)
        PyTuple_SET_ITEM(t, i, PyLong_FromLong(p->dims[i]));
    return t;
}

static PyObject *proxy_getitem(ProxyObject *self, PyObject *key) {
    cpy_state *st = cpy_get_state();
    int npes = st->ctx ? cp_num_pes(st->ctx) : 1;
    if (self->elem || self->kind == CPY_CHARE)
        return PyErr_Format(PyExc_TypeError, "%s proxy cannot be indexed",
                            self->elem ? "an element" : "a single-chare");
    ProxyObject *p = proxy_alloc(Py_TYPE(self), self->coll, self->kind, self->cls);
    if (!p)
        return NULL;
    p->ndims = self->ndims;
    p->sparse = self->sparse;
    memcpy(p->dims, self->dims, sizeof p->dims);
    p->map = Py_XNewRef(self->map);
    p->map_obj = Py_XNewRef(self->map_obj);
    p->elem = 1;
    if (self->kind == CPY_GROUP) {
        long pe = PyLong_Check(key) ? PyLong_AsLong(key) : -2;
        if (pe == -2 || (pe == -1 && PyErr_Occurred()))
            goto bad_type;
        if (pe < 0 || pe >= npes) {
            PyErr_Format(PyExc_IndexError, "group index %ld out of range: there are %d PEs",
                         pe, npes);
            goto fail;
        }
        p->pe = (int)pe;
        return (PyObject *)p;
    }
    PyObject *t = PyTuple_Check(key) ? Py_NewRef(key) : PyTuple_Pack(1, key);
    if (!t)
        goto fail;
    if (PyTuple_GET_SIZE(t) != self->ndims) {
        PyErr_Format(PyExc_IndexError, "index %R has %zd dimension%s, the array has %d", key,
                     PyTuple_GET_SIZE(t), PyTuple_GET_SIZE(t) == 1 ? "" : "s", self->ndims);
        Py_DECREF(t);
        goto fail;
    }
    for (int i = 0; i < self->ndims; i++) {
        PyObject *o = PyTuple_GET_ITEM(t, i);
        long v = PyLong_Check(o) ? PyLong_AsLong(o) : -1;
        if (!PyLong_Check(o) && !PyIndex_Check(o)) {
            Py_DECREF(t);
            goto bad_type;
        }
        if (!PyLong_Check(o)) {
            PyObject *io = PyNumber_Index(o);
            v = io ? PyLong_AsLong(io) : -1;
            Py_XDECREF(io);
        }
        if (PyErr_Occurred() || (self->sparse ? (v < INT32_MIN || v > INT32_MAX)
                                              : (v < 0 || v >= self->dims[i]))) {
            PyErr_Clear();
            PyObject *shape = dims_tuple(self);
            PyErr_Format(PyExc_IndexError, "index %R is out of bounds for an array of shape %R",
                         key, shape);
            Py_XDECREF(shape);
            Py_DECREF(t);
            goto fail;
        }
        p->idx[i] = (int32_t)v;
    }
    Py_DECREF(t);
    return (PyObject *)p;
bad_type:
    PyErr_Format(PyExc_TypeError, "proxy indices are integers or tuples of integers, not %s",
                 Py_TYPE(key)->tp_name);
fail:
    Py_DECREF(p);
    return NULL;
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
        cpy_state *st = cpy_get_state();
        long method = PyLong_AsLong(code);
        if (method < 0 || method > 0xffff)
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
    for (int i = 0; i < self->ndims; i++)
        h = h * 31u + (Py_uhash_t)(uint32_t)self->idx[i];
    return h == (Py_uhash_t)-1 ? -2 : (Py_hash_t)h;
}

static PyObject *proxy_richcompare(ProxyObject *a, PyObject *bo, int op) {
    if ((op != Py_EQ && op != Py_NE) || Py_TYPE(bo) != Py_TYPE(a))
        Py_RETURN_NOTIMPLEMENTED;
    ProxyObject *b = (ProxyObject *)bo;
    int eq = a->coll == b->coll && a->kind == b->kind && a->elem == b->elem &&
             a->pe == b->pe && memcmp(a->idx, b->idx, sizeof a->idx) == 0;
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

static PyObject *proxy_repr(ProxyObject *self) {
    static const char *kinds[] = {"Chare", "Group", "Array"};
    PyObject *where;
    if (self->kind == CPY_ARRAY && self->elem)
        where = index_tuple(self);
    else if (self->pe >= 0)
        where = PyLong_FromLong(self->pe);
    else
        where = Py_NewRef(Py_None);
    if (!where)
        return NULL;
    char id[32];
    snprintf(id, sizeof id, "%llx", self->coll);
    PyObject *r = where == Py_None
                      ? PyUnicode_FromFormat("<%s proxy of %s %s>", kinds[self->kind],
                                             ((PyTypeObject *)self->cls)->tp_name, id)
                      : PyUnicode_FromFormat("<%s proxy of %s %s at %R>", kinds[self->kind],
                                             ((PyTypeObject *)self->cls)->tp_name, id, where);
    Py_DECREF(where);
    return r;
}

static PyObject *proxy_reduce(ProxyObject *self, PyObject *noargs) {
    (void)noargs;
    PyObject *dims = dims_tuple(self);
    PyObject *index = self->kind == CPY_ARRAY && self->elem ? index_tuple(self)
                                                            : Py_NewRef(Py_None);
    if (!dims || !index) {
        Py_XDECREF(dims);
        Py_XDECREF(index);
        return NULL;
    }
    return Py_BuildValue("O(KiOiNNiO)", (PyObject *)Py_TYPE(self), self->coll, self->kind,
                         self->cls, self->pe, dims, index, self->sparse ? self->ndims : -1,
                         self->map ? self->map : Py_None);
}

static PyObject *proxy_get_index(ProxyObject *self, void *c) {
    (void)c;
    if (!self->elem)
        Py_RETURN_NONE;
    if (self->kind == CPY_GROUP)
        return PyLong_FromLong(self->pe);
    return index_tuple(self);
}

static PyObject *proxy_get_dims(ProxyObject *self, void *c) {
    (void)c;
    return dims_tuple(self);
}

static PyMemberDef proxy_members[] = {
    {"coll", T_ULONGLONG, offsetof(ProxyObject, coll), READONLY, "collection id"},
    {"kind", T_INT, offsetof(ProxyObject, kind), READONLY, "0 chare, 1 group, 2 array"},
    {"pe", T_INT, offsetof(ProxyObject, pe), READONLY, "PE of a chare or group member"},
    {"ndims", T_INT, offsetof(ProxyObject, ndims), READONLY, "array dimensions"},
    {"sparse", T_INT, offsetof(ProxyObject, sparse), READONLY, "1 for a sparse array"},
    {"map", T_OBJECT, offsetof(ProxyObject, map), READONLY, "the ArrayMap group, or None"},
    {"cls", T_OBJECT, offsetof(ProxyObject, cls), READONLY, "the chare class"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef proxy_getset[] = {
    {"index", (getter)proxy_get_index, NULL, "element index, or None", NULL},
    {"dims", (getter)proxy_get_dims, NULL, "array shape", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyObject *proxy_local_branch(ProxyObject *self, PyObject *noargs) {
    (void)noargs;
    cpy_state *st = cpy_get_state();
    if (self->kind != CPY_GROUP || !st->ctx)
        return PyErr_Format(PyExc_TypeError, "ckLocalBranch() is for group proxies");
    PyObject *key = PyLong_FromUnsignedLongLong(self->coll);
    PyObject *members = key ? PyDict_GetItemWithError(st->colls, key) : NULL;
    Py_XDECREF(key);
    PyObject *pe = members ? PyLong_FromLong(cp_my_pe(st->ctx)) : NULL;
    PyObject *m = pe ? PyDict_GetItemWithError(members, pe) : NULL;
    Py_XDECREF(pe);
    if (!m) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError,
                            "the group is not created on this PE yet (use "
                            "charm.awaitCreation)");
        return NULL;
    }
    return Py_NewRef(m);
}

static PyObject *proxy_home_pe(ProxyObject *self, PyObject *noargs) {
    (void)noargs;
    cpy_state *st = cpy_get_state();
    if (self->kind != CPY_ARRAY || !self->elem)
        return PyErr_Format(PyExc_TypeError, "_home_pe() is for array element proxies");
    int pe = home_pe(self, st->ctx ? cp_num_pes(st->ctx) : 1);
    return pe < 0 ? NULL : PyLong_FromLong(pe);
}

static PyObject *proxy_insert(ProxyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"index", "args", "onPE", NULL};
    PyObject *index, *cargs = NULL;
    int on_pe = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|Oi", kw, &index, &cargs, &on_pe))
        return NULL;
    if (self->kind != CPY_ARRAY || !self->sparse || self->elem)
        return PyErr_Format(PyExc_TypeError,
                            "ckInsert() is for sparse arrays, created with Array(C, ndims=n)");
    return PyObject_CallMethod(cpy_get_state()->runtime, "_insert", "OOOi", self, index,
                               cargs ? cargs : Py_None, on_pe);
}

static PyObject *proxy_done_inserting(ProxyObject *self, PyObject *noargs) {
    (void)noargs;
    if (self->kind != CPY_ARRAY || !self->sparse || self->elem)
        return PyErr_Format(PyExc_TypeError, "ckDoneInserting() is for sparse arrays");
    return PyObject_CallMethod(cpy_get_state()->runtime, "_done_inserting", "O", self);
}

static PyMethodDef proxy_methods[] = {
    {"_home_pe", (PyCFunction)proxy_home_pe, METH_NOARGS, "home PE of an array element"},
    {"ckInsert", (PyCFunction)(void (*)(void))proxy_insert, METH_VARARGS | METH_KEYWORDS,
     "ckInsert(index, args=[], onPE=-1): insert an element into a sparse array"},
    {"ckDoneInserting", (PyCFunction)proxy_done_inserting, METH_NOARGS,
     "no more insertions: messages to missing elements become errors"},
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
    Py_VISIT(self->map_obj);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int proxy_clear(ProxyObject *self) {
    Py_CLEAR(self->cls);
    Py_CLEAR(self->entries);
    Py_CLEAR(self->callers);
    Py_CLEAR(self->map);
    Py_CLEAR(self->map_obj);
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
