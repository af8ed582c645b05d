/*
 * The contribute call in C: Chare.contribute(data, reducer, target) and
 * the local combination of numbers.
 *
 * reduction.py keeps the reductions of a collection's stream on this PE in
 * a RedState, this file's type (pending: reduction number -> _Redn, the
 * contributions of the members here so far; the histogram of the members'
 * next reduction numbers, in C: how many members here are at each, so that
 * a member's step from k to k+1 and "does a member here still owe k?" touch
 * no dict and make no int). A contribution takes this path once its
 * stream has a RedState here (reduction.py makes it at the stream's first
 * contribution on this PE), and does what reduction.contribute does on the
 * same objects: the member's counters (a RedCounters, made at its first
 * contribution), the histogram, the reduction's _Redn (made by the PE's
 * first contribution to it), the value appended, and, once no member here
 * still has to contribute, reduction.py's _maybe_reduce, which sends the
 * PE's part on. Reducers with a `pre` function, keyword arguments, a
 * section whose key set is not made yet, a Combined section and every
 * error go to reduction.py (red_setup's `slow`), which checks and explains.
 *
 * typed_reduce(op, values): the contributions of a PE's members to a C
 * reducer combined into one typed vector (reducers.c) without a bytes
 * object per contribution for plain ints and floats.
 */
#include "cpy.h"
#include <structmember.h>   /* PyMemberDef, T_OBJECT_EX */

typedef struct red_fast {
    PyObject *colls;   /* charm._colls: coll -> Collection */
    PyObject *slow;    /* reduction._contribute_method(self, data, reducer, target, ...) */
    PyObject *maybe;   /* reduction._maybe_reduce(coll, info, stream, k) */
    PyObject *gather;  /* Reducer.gather: contributions travel as (index, value) */
    PyObject *slow_all; /* reduction._allreduce_slow(self, data, reducer, fut, section) */
    PyObject *sect_type; /* sections.Section */
    PyObject *rn_type;  /* reduction._Redn(reducer, target) */
    PyObject *watch, *arm; /* reduction._watch, whose "armed" _arm() sets */
    PyObject *s_armed;
    PyObject *sid_obj;  /* the last section stream contributed to, and as a number */
    uint64_t sid;
    PyObject *s_red, *s_pre, *s_proxy, *s_index, *s_redk, *s_section, *zero;
    PyObject *nopre;   /* the last reducer seen without a `pre` (kept alive) */
    uint64_t last_coll; /* the last collection contributed to, its id as an int and */
    PyObject *last_collo;
    PyObject *last_info; /* its Collection (charm._colls never replaces an entry) */
    PyObject *c_info, *c_stream, *c_st; /* the last stream contributed to: its RedState */
    PyObject *cur_obj;  /* the member a broadcast runs a method of (borrowed: the caller */
    uint64_t cur_coll;  /* holds it), and its collection: cpy_red_current */
} red_fast;

static red_fast R;

/* A __slots__ attribute of one exact class read at its offset: no attribute
 * lookup (Section's __getattr__ hook, the type's MRO) on every contribution.
 * t NULL until set up: the attribute is then looked up by name. */
typedef struct slot {
    PyTypeObject *t;
    Py_ssize_t off;
    PyObject *name;
} slot;

static slot S_sec_keyset, S_sec_coll, S_sec_stream, S_rn_reducer, S_rn_values, S_rn_allfuts,
    S_co_red;

static int slot_init(slot *s, PyObject *type, const char *name) {
    if (!PyType_Check(type))
        return PyErr_Format(PyExc_TypeError, "red_setup: %R is not a class", type), -1;
    if (!s->name && !(s->name = PyUnicode_InternFromString(name)))
        return -1;
    PyObject *d = PyObject_GetAttr(type, s->name);
    if (!d)
        return -1;
    int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
             ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
    if (ok) {
        s->off = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_XSETREF(s->t, (PyTypeObject *)Py_NewRef(type));
    }
    Py_DECREF(d);
    if (!ok)
        PyErr_Format(PyExc_TypeError, "red_setup: %R.%s is not a __slots__ attribute", type,
                     name);
    return ok ? 0 : -1;
}

/* o.name, a new reference; NULL with AttributeError when unset. */
static PyObject *slot_get(const slot *s, PyObject *o) {
    if (s->t && Py_IS_TYPE(o, s->t)) {
        PyObject *v = *(PyObject **)((char *)o + s->off);
        if (v)
            return Py_NewRef(v);
    }
    return PyObject_GetAttr(o, s->name);
}

/* ---- RedCounters: a member's next reduction number in each stream ------------- */

/* A member's _charmpy_redk: stream -> the number of its next contribution
 * to that stream (0 for streams it has not contributed to), a few pairs
 * in place, so that a contribution's step reads no dict and writes none.
 * Python: get(stream), step(stream) -> the number before. Pickled as
 * RedCounters(((stream, k), ...)): it travels with a migrating chare, in
 * its __dict__. */
typedef struct rc_pair {
    uint64_t stream;
    long long k;
} rc_pair;

typedef struct RedCounters {
    PyObject_HEAD
    rc_pair *p;
    Py_ssize_t n, cap;
    rc_pair small[2];   /* p while n <= 2 (streams 0 and SYNC, or a section) */
} RedCounters;

static PyTypeObject *RedCounters_T;

static rc_pair *rc_find(RedCounters *c, uint64_t stream) {
    for (Py_ssize_t i = 0; i < c->n; i++)
        if (c->p[i].stream == stream)
            return &c->p[i];
    return NULL;
}

/* The pair of stream, made (k 0) if missing; NULL with MemoryError. */
static rc_pair *rc_pair_of(RedCounters *c, uint64_t stream) {
    rc_pair *found = rc_find(c, stream);
    if (found)
        return found;
    if (c->n == c->cap) {
        Py_ssize_t cap = c->cap * 2;
        rc_pair *p = c->p == c->small ? PyMem_Malloc((size_t)cap * sizeof *p)
                                      : PyMem_Realloc(c->p, (size_t)cap * sizeof *p);
        if (!p)
            return PyErr_NoMemory(), NULL;
        if (c->p == c->small)
            memcpy(p, c->small, sizeof c->small);
        c->p = p;
        c->cap = cap;
    }
    c->p[c->n] = (rc_pair){stream, 0};
    return &c->p[c->n++];
}

static long long rc_get(RedCounters *c, uint64_t stream) {
    rc_pair *p = rc_find(c, stream);
    return p ? p->k : 0;
}

static int rc_stream(PyObject *o, uint64_t *stream) {
    *stream = PyLong_AsUnsignedLongLong(o);
    return *stream == (uint64_t)-1 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *rc_new(PyTypeObject *tp, PyObject *args, PyObject *kw) {
    PyObject *pairs = NULL;
    static char *kws[] = {"pairs", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:RedCounters", kws, &pairs))
        return NULL;
    RedCounters *c = (RedCounters *)tp->tp_alloc(tp, 0);
    if (!c)
        return NULL;
    c->p = c->small;
    c->cap = 2;
    PyObject *seq = pairs ? PySequence_Fast(pairs, "RedCounters(pairs): pairs is a sequence of "
                                                   "(stream, k)") : NULL;
    if (pairs && !seq)
        goto fail;
    for (Py_ssize_t i = 0; seq && i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *it = PySequence_Fast_GET_ITEM(seq, i);
        uint64_t stream;
        long long k;
        rc_pair *pr;
        if (!PyTuple_Check(it) || PyTuple_GET_SIZE(it) != 2) {
            PyErr_Format(PyExc_TypeError, "RedCounters(pairs): %R is not a (stream, k) pair", it);
            goto fail;
        }
        if (rc_stream(PyTuple_GET_ITEM(it, 0), &stream) < 0 ||
            ((k = PyLong_AsLongLong(PyTuple_GET_ITEM(it, 1))) == -1 && PyErr_Occurred()) ||
            !(pr = rc_pair_of(c, stream)))
            goto fail;
        pr->k = k;
    }
    Py_XDECREF(seq);
    return (PyObject *)c;
fail:
    Py_XDECREF(seq);
    Py_DECREF(c);
    return NULL;
}

static void rc_dealloc(RedCounters *c) {
    PyTypeObject *tp = Py_TYPE(c);
    if (c->p != c->small)
        PyMem_Free(c->p);
    tp->tp_free(c);
    Py_DECREF(tp);
}

static PyObject *rc_pairs(RedCounters *c) {
    PyObject *t = PyTuple_New(c->n);
    for (Py_ssize_t i = 0; t && i < c->n; i++) {
        PyObject *pr = Py_BuildValue("(KL)", (unsigned long long)c->p[i].stream, c->p[i].k);
        if (!pr) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, i, pr);
    }
    return t;
}

static PyObject *rc_reduce(RedCounters *c, PyObject *unused) {
    (void)unused;
    PyObject *pairs = rc_pairs(c);
    return pairs ? Py_BuildValue("O(N)", (PyObject *)Py_TYPE(c), pairs) : NULL;
}

static PyObject *rc_repr(RedCounters *c) {
    PyObject *pairs = rc_pairs(c);
    PyObject *r = pairs ? PyUnicode_FromFormat("RedCounters(%R)", pairs) : NULL;
    Py_XDECREF(pairs);
    return r;
}

static PyObject *rc_get_m(RedCounters *c, PyObject *o) {
    uint64_t stream;
    return rc_stream(o, &stream) < 0 ? NULL : PyLong_FromLongLong(rc_get(c, stream));
}

static PyObject *rc_step_m(RedCounters *c, PyObject *o) {
    uint64_t stream;
    rc_pair *pr;
    if (rc_stream(o, &stream) < 0 || !(pr = rc_pair_of(c, stream)))
        return NULL;
    return PyLong_FromLongLong(pr->k++);
}

static PyMethodDef rc_methods[] = {
    {"__reduce__", (PyCFunction)rc_reduce, METH_NOARGS, NULL},
    {"get", (PyCFunction)rc_get_m, METH_O, "get(stream): the number of the next contribution"},
    {"step", (PyCFunction)rc_step_m, METH_O,
     "step(stream): the number of this contribution (the next one's is one more)"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot rc_slots[] = {
    {Py_tp_new, rc_new},
    {Py_tp_dealloc, rc_dealloc},
    {Py_tp_repr, rc_repr},
    {Py_tp_methods, rc_methods},
    {Py_tp_doc, "RedCounters(pairs=()): a member's next reduction number in each stream."},
    {0, NULL},
};

static PyType_Spec rc_spec = {
    .name = "charmpy._charmpy.RedCounters",
    .basicsize = sizeof(RedCounters),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = rc_slots,
};

/* ---- RedState: one stream's reductions on this PE ------------------------------ */

/* The histogram's entries, sorted by r, counts != 0 (reduction.py's _move
 * keeps what it is given, as the dict it replaces did). robj: r as an int,
 * the object a member's counter holds once it reaches r (made once). */
typedef struct hent {
    long long r;
    Py_ssize_t n;
    PyObject *robj;
} hent;

typedef struct RedState {
    PyObject_HEAD
    PyObject *section, *pending, *targets, *allfuts, *parts;
    hent *h;
    Py_ssize_t hn, hcap;
    PyObject *crec; /* pending[ck], the reduction contributed to last, or NULL
                       (entries leave pending through take(k), which clears it) */
    long long ck;
} RedState;

static PyTypeObject *RedState_T;

/* The index of r in the histogram, or -(where it would go) - 1. */
static Py_ssize_t h_find(const RedState *s, long long r) {
    Py_ssize_t lo = 0, hi = s->hn;
    if (hi && s->h[0].r == r) /* the common case: the lowest */
        return 0;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (s->h[mid].r < r)
            lo = mid + 1;
        else if (s->h[mid].r > r)
            hi = mid;
        else
            return mid;
    }
    return -lo - 1;
}

/* hist[r] += delta (robj: r as an int, or NULL); r as an int in *out (a new
 * reference: the entry's) when out is not NULL. 0, or -1 with an exception. */
static int h_move(RedState *s, long long r, PyObject *robj, Py_ssize_t delta, PyObject **out) {
    Py_ssize_t i = h_find(s, r);
    if (i >= 0) {
        if (out)
            *out = Py_NewRef(s->h[i].robj);
        if ((s->h[i].n += delta) == 0) {
            Py_DECREF(s->h[i].robj);
            memmove(&s->h[i], &s->h[i + 1], (size_t)(s->hn - i - 1) * sizeof(hent));
            s->hn--;
        }
        return 0;
    }
    if (delta == 0) {
        if (out && !(*out = robj ? Py_NewRef(robj) : PyLong_FromLongLong(r)))
            return -1;
        return 0;
    }
    i = -i - 1;
    if (s->hn == s->hcap) {
        Py_ssize_t cap = s->hcap ? s->hcap * 2 : 4;
        hent *h = PyMem_Realloc(s->h, (size_t)cap * sizeof(hent));
        if (!h)
            return PyErr_NoMemory(), -1;
        s->h = h;
        s->hcap = cap;
    }
    PyObject *o = robj ? Py_NewRef(robj) : PyLong_FromLongLong(r);
    if (!o)
        return -1;
    memmove(&s->h[i + 1], &s->h[i], (size_t)(s->hn - i) * sizeof(hent));
    s->h[i] = (hent){r, delta, o};
    s->hn++;
    if (out)
        *out = Py_NewRef(o);
    return 0;
}

/* A member's step from k to k + 1: hist[k] -= 1, hist[k + 1] += 1. In a
 * round, after its first member, both entries are there and the first
 * stays: two counts change in place. */
static int h_step(RedState *s, long long k) {
    if (s->hn > 1 && s->h[0].r == k && s->h[0].n > 1 && s->h[1].r == k + 1) {
        s->h[0].n--;
        s->h[1].n++;
        return 0;
    }
    return h_move(s, k, NULL, -1, NULL) < 0 || h_move(s, k + 1, NULL, 1, NULL) < 0 ? -1 : 0;
}

static void h_clear(RedState *s) {
    for (Py_ssize_t i = 0; i < s->hn; i++)
        Py_DECREF(s->h[i].robj);
    s->hn = 0;
}

/* The histogram set from a dict {r: count}. */
static int h_set(RedState *s, PyObject *hist) {
    if (!PyDict_Check(hist))
        return PyErr_Format(PyExc_TypeError, "RedState's histogram is a dict, not %R", hist),
               -1;
    h_clear(s);
    Py_ssize_t pos = 0;
    PyObject *key, *val;
    while (PyDict_Next(hist, &pos, &key, &val)) {
        long long r = PyLong_AsLongLong(key);
        Py_ssize_t n = PyLong_AsSsize_t(val);
        if (((r == -1 || n == -1) && PyErr_Occurred()) ||
            h_move(s, r, PyLong_CheckExact(key) ? key : NULL, n, NULL) < 0)
            return -1;
    }
    return 0;
}

static PyObject *rs_new(PyTypeObject *tp, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"hist", "section", NULL};
    PyObject *hist, *section = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:RedState", kwlist, &hist, &section))
        return NULL;
    RedState *s = (RedState *)tp->tp_alloc(tp, 0);
    if (!s)
        return NULL;
    s->section = Py_NewRef(section);
    if (!(s->pending = PyDict_New()) || !(s->targets = PyDict_New()) ||
        !(s->allfuts = PyDict_New()) || !(s->parts = PyDict_New()) || h_set(s, hist) < 0) {
        Py_DECREF(s);
        return NULL;
    }
    return (PyObject *)s;
}

static int rs_traverse(RedState *s, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(s));
    Py_VISIT(s->section);
    Py_VISIT(s->pending);
    Py_VISIT(s->targets);
    Py_VISIT(s->allfuts);
    Py_VISIT(s->parts);
    Py_VISIT(s->crec);
    return 0;
}

static int rs_clear(RedState *s) {
    Py_CLEAR(s->crec);
    Py_CLEAR(s->section);
    Py_CLEAR(s->pending);
    Py_CLEAR(s->targets);
    Py_CLEAR(s->allfuts);
    Py_CLEAR(s->parts);
    return 0;
}

static void rs_dealloc(RedState *s) {
    PyTypeObject *tp = Py_TYPE(s);
    PyObject_GC_UnTrack(s);
    rs_clear(s);
    h_clear(s);
    PyMem_Free(s->h);
    tp->tp_free((PyObject *)s);
    Py_DECREF(tp);
}

/* move(r, delta): delta more members here at reduction number r. */
static PyObject *rs_move(RedState *s, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2)
        return PyErr_Format(PyExc_TypeError, "move(r, delta) takes 2 arguments");
    long long r = PyLong_AsLongLong(args[0]);
    Py_ssize_t d = PyLong_AsSsize_t(args[1]);
    if ((r == -1 || d == -1) && PyErr_Occurred())
        return NULL;
    if (h_move(s, r, PyLong_CheckExact(args[0]) ? args[0] : NULL, d, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* take(k): pending.pop(k) (KeyError when missing). */
static PyObject *rs_take(RedState *s, PyObject *arg) {
    long long k = PyLong_AsLongLong(arg);
    if (k == -1 && PyErr_Occurred())
        return NULL;
    if (s->crec && s->ck == k)
        Py_CLEAR(s->crec);
    PyObject *rec = PyDict_GetItemWithError(s->pending, arg);
    if (!rec)
        return PyErr_Occurred() ? NULL : (PyErr_SetObject(PyExc_KeyError, arg), NULL);
    Py_INCREF(rec);
    if (PyDict_DelItem(s->pending, arg) < 0)
        Py_CLEAR(rec);
    return rec;
}

/* waits(k): some member here is still at a reduction number <= k. */
static PyObject *rs_waits(RedState *s, PyObject *arg) {
    long long k = PyLong_AsLongLong(arg);
    if (k == -1 && PyErr_Occurred())
        return NULL;
    return PyBool_FromLong(s->hn && s->h[0].r <= k);
}

static PyObject *rs_get_hist(RedState *s, void *c) {
    (void)c;
    PyObject *d = PyDict_New();
    for (Py_ssize_t i = 0; d && i < s->hn; i++) {
        PyObject *n = PyLong_FromSsize_t(s->h[i].n);
        if (!n || PyDict_SetItem(d, s->h[i].robj, n) < 0)
            Py_CLEAR(d);
        Py_XDECREF(n);
    }
    return d;
}

static int rs_set_hist(RedState *s, PyObject *v, void *c) {
    (void)c;
    if (!v)
        return PyErr_SetString(PyExc_AttributeError, "RedState.hist cannot be deleted"), -1;
    return h_set(s, v);
}

static PyMethodDef rs_methods[] = {
    {"move", (PyCFunction)(void (*)(void))rs_move, METH_FASTCALL,
     "move(r, delta): delta more members here whose next reduction is r"},
    {"take", (PyCFunction)rs_take, METH_O,
     "take(k): pending.pop(k), the only way an entry leaves pending"},
    {"waits", (PyCFunction)rs_waits, METH_O,
     "waits(k): a member here has not contributed to reduction k yet"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef rs_getset[] = {
    {"hist", (getter)rs_get_hist, (setter)rs_set_hist,
     "next reduction number -> members here at it (a copy)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef rs_members[] = {
    {"section", T_OBJECT_EX, offsetof(RedState, section), 0, "a section's stream: the Section"},
    {"pending", T_OBJECT_EX, offsetof(RedState, pending), READONLY,
     "reduction number -> _Redn: the members here so far (leaving through take(k))"},
    {"targets", T_OBJECT_EX, offsetof(RedState, targets), 0,
     "on the tree's root: reduction number -> _Redn"},
    {"allfuts", T_OBJECT_EX, offsetof(RedState, allfuts), 0,
     "reduction number -> futures of allreduce callers"},
    {"parts", T_OBJECT_EX, offsetof(RedState, parts), 0,
     "on the counting root: number -> [count, parts, reducer, target, ...]"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot rs_slots[] = {
    {Py_tp_new, rs_new},
    {Py_tp_dealloc, rs_dealloc},
    {Py_tp_traverse, rs_traverse},
    {Py_tp_clear, rs_clear},
    {Py_tp_methods, rs_methods},
    {Py_tp_getset, rs_getset},
    {Py_tp_members, rs_members},
    {Py_tp_doc, "RedState(hist, section=None): the reductions of one stream of a collection "
                "on this PE (reduction.py)."},
    {0, NULL},
};

static PyType_Spec rs_spec = {
    .name = "charmpy._charmpy.RedState",
    .basicsize = sizeof(RedState),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = rs_slots,
};

/* red_setup(colls, slow, maybe_reduce, gather, slow_all, Section, _Redn, _watch, _arm) */
static PyObject *mod_red_setup(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *colls, *slow, *maybe, *gather, *slow_all, *sect_type, *rn_type, *watch, *arm;
    if (!PyArg_ParseTuple(args, "O!OOOOOOO!O", &PyDict_Type, &colls, &slow, &maybe, &gather,
                          &slow_all, &sect_type, &rn_type, &PyDict_Type, &watch, &arm))
        return NULL;
    if (slot_init(&S_sec_keyset, sect_type, "_keyset") < 0 ||
        slot_init(&S_sec_coll, sect_type, "coll") < 0 ||
        slot_init(&S_sec_stream, sect_type, "stream") < 0 ||
        slot_init(&S_rn_reducer, rn_type, "reducer") < 0 ||
        slot_init(&S_rn_values, rn_type, "values") < 0 ||
        slot_init(&S_rn_allfuts, rn_type, "allfuts") < 0)
        return NULL;
    Py_XSETREF(R.slow_all, Py_NewRef(slow_all));
    Py_XSETREF(R.rn_type, Py_NewRef(rn_type));
    Py_XSETREF(R.watch, Py_NewRef(watch));
    Py_XSETREF(R.arm, Py_NewRef(arm));
    Py_XSETREF(R.sect_type, Py_NewRef(sect_type));
    Py_XSETREF(R.colls, Py_NewRef(colls));
    Py_XSETREF(R.slow, Py_NewRef(slow));
    Py_XSETREF(R.maybe, Py_NewRef(maybe));
    Py_XSETREF(R.gather, Py_NewRef(gather));
#define INTERN(f, s)                                                                        \
    if (!R.f && !(R.f = PyUnicode_InternFromString(s)))                                     \
        return NULL;
    INTERN(s_red, "red")
    INTERN(s_pre, "pre")
    INTERN(s_proxy, "thisProxy")
    INTERN(s_index, "thisIndex")
    INTERN(s_redk, "_charmpy_redk")
    INTERN(s_section, "section")
    INTERN(s_armed, "armed")
#undef INTERN
    if (!S_co_red.name)
        S_co_red.name = Py_NewRef(R.s_red);
    if (!R.zero && !(R.zero = PyLong_FromLong(0)))
        return NULL;
    Py_RETURN_NONE;
}

/* red_coll_type(Collection): chare.Collection, whose `red` is read at its slot */
static PyObject *mod_red_coll_type(PyObject *module, PyObject *type) {
    (void)module;
    if (slot_init(&S_co_red, type, "red") < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* The fast path of reduction.contribute(self, data, reducer, target, allfut,
 * section=section) (allfut, section: NULL when None); 1 done, 0 not taken
 * (nothing changed but what reduction.py would do the same way first: the
 * reduction's _Redn made), -1 error. */
static int fast(PyObject *self, PyObject *data, PyObject *reducer, PyObject *target,
                PyObject *allfut, PyObject *section) {
    int rc = 0;
    PyObject *info = NULL, *red = NULL, *st = NULL, *rec = NULL, *rreducer = NULL,
             *values = NULL, *pre = NULL, *collo = NULL, *kobj = NULL, *val = NULL,
             *stream = NULL, *allfuts = NULL, *idx = NULL;
    uint64_t sid = 0;   /* the stream as a number */
    /* The member's counters (made below if missing), read without making
     * its __dict__ (cpy_attr_or_null). */
    PyObject *counters = cpy_attr_or_null(self, R.s_redk);
    if ((counters && !Py_IS_TYPE(counters, RedCounters_T)) || !R.colls || PyErr_Occurred())
        goto out;
    uint64_t coll;
    if (self == R.cur_obj) {
        coll = R.cur_coll; /* a broadcast's member: dispatch.c said which collection */
    } else {
        PyObject *proxy = cpy_attr_or_null(self, R.s_proxy);
        if (!proxy)
            goto check;
        cpy_state *cs = cpy_state_of_type(Py_TYPE(proxy));
        cpy_place place;
        int bad = !cs || cpy_proxy_place(cs, proxy, &place, &coll) < 0;
        Py_DECREF(proxy);
        if (bad) {
            PyErr_Clear();
            goto out;
        }
    }
    if (coll == R.last_coll && R.last_collo) {  /* the collection's id as an int, made once */
        collo = Py_NewRef(R.last_collo);
    } else {
        if (!(collo = PyLong_FromUnsignedLongLong(coll)))
            goto fail;
        Py_XSETREF(R.last_collo, Py_NewRef(collo));
        Py_CLEAR(R.last_info);
        R.last_coll = coll;
    }
    if (R.last_info) {
        info = Py_NewRef(R.last_info);
    } else {
        info = Py_XNewRef(PyDict_GetItemWithError(R.colls, collo));
        if (!info)
            goto check;
        R.last_info = Py_NewRef(info);
    }
    PyObject *zero = R.zero;
    if (section) {
        if ((PyObject *)Py_TYPE(section) != R.sect_type)
            goto out;
        if (!(stream = slot_get(&S_sec_stream, section)))
            goto fail;
        /* A member that contributed to this stream before was checked then
         * (the stream names the section's members and collection). */
        if (stream == R.sid_obj) {  /* the stream contributed to last (a big int: slow to read) */
            sid = R.sid;
        } else {
            if (rc_stream(stream, &sid) < 0)
                goto fail;
            Py_XSETREF(R.sid_obj, Py_NewRef(stream));
            R.sid = sid;
        }
        if (!counters || !rc_get((RedCounters *)counters, sid)) {
            /* A member of the section, of this collection. */
            if (PyErr_Occurred())
                goto fail;
            PyObject *ks = slot_get(&S_sec_keyset, section);
            int in = ks && PyFrozenSet_CheckExact(ks) && (idx = cpy_attr_or_null(self, R.s_index))
                         ? PySet_Contains(ks, idx) : 0;
            Py_XDECREF(ks);
            if (in <= 0)
                goto check;
            PyObject *sc = slot_get(&S_sec_coll, section);
            int same = sc ? PyObject_RichCompareBool(sc, collo, Py_EQ) : -1;
            Py_XDECREF(sc);
            if (same <= 0)
                goto check;
        }
    } else {
        stream = Py_NewRef(zero);
    }
    rc_pair *pr = counters ? rc_find((RedCounters *)counters, sid) : NULL;
    long long k = pr ? pr->k : 0;
    if (info == R.c_info && stream == R.c_stream) {
        /* The stream contributed to last (a collection's streams are never
         * replaced: reduction._state makes each once). */
        st = Py_NewRef(R.c_st);
    } else {
        if (!(red = slot_get(&S_co_red, info)))
            goto fail;
        if (!PyDict_CheckExact(red) ||
            !(st = Py_XNewRef(PyDict_GetItemWithError(red, stream))))
            goto check;
        if (!Py_IS_TYPE(st, RedState_T))
            goto out;
        Py_XSETREF(R.c_info, Py_NewRef(info));
        Py_XSETREF(R.c_stream, Py_NewRef(stream));
        Py_XSETREF(R.c_st, Py_NewRef(st));
    }
    RedState *rs = (RedState *)st;
    if ((rs->section == Py_None) != (section == NULL) || !PyDict_CheckExact(rs->pending))
        goto out;
    if (rs->crec && rs->ck == k) {  /* the reduction contributed to last */
        rec = Py_NewRef(rs->crec);
    } else {
        if (!(kobj = PyLong_FromLongLong(k)))
            goto fail;
        if (!(rec = Py_XNewRef(PyDict_GetItemWithError(rs->pending, kobj)))) {
            /* This PE's first contribution to reduction k: its _Redn, made
             * as reduction.py makes it, the reducer being one (of the class
             * of Reducer.gather; reduction.py checks and explains others). */
            if (PyErr_Occurred() || !Py_IS_TYPE(reducer, Py_TYPE(R.gather)))
                goto check;
            PyObject *a[2] = {reducer, target}, *armed;
            if (!(rec = PyObject_Vectorcall(R.rn_type, a, 2, NULL)) ||
                PyDict_SetItem(rs->pending, kobj, rec) < 0)
                goto fail;
            /* the watch over reductions that never complete */
            int on = (armed = PyDict_GetItemWithError(R.watch, R.s_armed)) ? PyObject_IsTrue(armed)
                     : PyErr_Occurred() ? -1 : 0;
            PyObject *r = on ? NULL : PyObject_CallNoArgs(R.arm);
            if (on < 0 || (!on && !r))
                goto fail;
            Py_XDECREF(r);
        }
        Py_XSETREF(rs->crec, Py_NewRef(rec));
        rs->ck = k;
    }
    if (!(rreducer = slot_get(&S_rn_reducer, rec)))
        goto fail;
    if (rreducer != reducer)
        goto out;   /* reduction.py says what is wrong */
    if (reducer != R.nopre) {
        if (!(pre = PyObject_GetAttr(reducer, R.s_pre)))
            goto fail;
        if (pre != Py_None)
            goto out;
        Py_XSETREF(R.nopre, Py_NewRef(reducer));
    }
    if (!(values = slot_get(&S_rn_values, rec)))
        goto fail;
    if (!PyList_CheckExact(values))
        goto out;
    if (allfut && (!(allfuts = slot_get(&S_rn_allfuts, rec)) || !PyList_CheckExact(allfuts)))
        goto check;
    if (reducer == R.gather) {
        if (!idx && !(idx = cpy_attr_or_null(self, R.s_index)))
            goto check;
        if (!(val = PyTuple_Pack(2, idx, data)))
            goto fail;
    } else {
        val = Py_NewRef(data);
    }
    /* Every check passed: the contribution counts. */
    rc = 1;
    if (!counters &&    /* the member's first contribution: its counters */
        (!(counters = PyObject_CallNoArgs((PyObject *)RedCounters_T)) ||
         PyObject_GenericSetAttr(self, R.s_redk, counters) < 0))
        goto fail;
    if (!pr)            /* its first to this stream (nothing ran since rc_find that adds one) */
        pr = rc_pair_of((RedCounters *)counters, sid);
    if (!pr || h_step(rs, k) < 0 || PyList_Append(values, val) < 0 ||
        (allfut && PyList_Append(allfuts, allfut) < 0))
        goto fail;
    pr->k = k + 1;
    if (!(rs->hn && rs->h[0].r <= k)) { /* no member here still owes reduction k */
        if (!kobj && !(kobj = PyLong_FromLongLong(k)))
            goto fail;
        PyObject *a[4] = {collo, info, stream, kobj};
        PyObject *r = PyObject_Vectorcall(R.maybe, a, 4, NULL);
        if (!r)
            goto fail;
        Py_DECREF(r);
    }
    goto out;
check:
    if (PyErr_Occurred())
        goto fail;
    goto out;
fail:
    rc = -1;
out:
    Py_XDECREF(counters);
    Py_XDECREF(idx);
    Py_XDECREF(info);
    Py_XDECREF(red);
    Py_XDECREF(st);
    Py_XDECREF(rec);
    Py_XDECREF(rreducer);
    Py_XDECREF(values);
    Py_XDECREF(pre);
    Py_XDECREF(collo);
    Py_XDECREF(kobj);
    Py_XDECREF(val);
    Py_XDECREF(stream);
    Py_XDECREF(allfuts);
    return rc;
}

void cpy_red_current(PyObject *obj, uint64_t coll) {
    R.cur_obj = obj;
    R.cur_coll = coll;
}

/* contribute(self, data, reducer, target, section=None) */
static PyObject *mod_contribute(PyObject *module, PyObject *const *args, Py_ssize_t nargsf,
                                PyObject *kwnames) {
    (void)module;
    if (!R.slow)
        return PyErr_Format(PyExc_RuntimeError, "charmpy is not initialised");
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *section = NULL;
    int plain = nargs + nkw == 4 && nkw == 0;
    if (nargs + nkw == 5 && nargs >= 4) {
        PyObject *kw = nkw ? PyTuple_GET_ITEM(kwnames, 0) : NULL;
        plain = !kw || kw == R.s_section /* interned, as the compiler's names are */ ||
                PyUnicode_CompareWithASCIIString(kw, "section") == 0;
        section = args[4] == Py_None ? NULL : args[4];
    }
    if (plain) {
        int rc = fast(args[0], args[1], args[2], args[3], NULL, section);
        if (rc < 0)
            return NULL;
        if (rc)
            Py_RETURN_NONE;
    }
    return PyObject_Vectorcall(R.slow, args, nargsf, kwnames);
}

/* Chare.contribute as a method descriptor (chare_methods): self apart. The
 * interpreter calls it without making a bound method (as it does list.append):
 * an instancemethod of mod_contribute would make one on every call. */
static PyObject *meth_contribute(PyObject *self, PyObject *const *args, Py_ssize_t nargsf,
                                 PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    /* The common calls, straight to fast(): (data, reducer, target) and
     * the same with section= or a fourth argument. */
    if (R.slow && nargs >= 3 && nargs + nkw <= 4 &&
        (!nkw || PyTuple_GET_ITEM(kwnames, 0) == R.s_section /* interned, as the compiler's
                                                                names are */)) {
        PyObject *section = nargs + nkw == 4 && args[3] != Py_None ? args[3] : NULL;
        int rc = fast(self, args[0], args[1], args[2], NULL, section);
        if (rc)
            return rc < 0 ? NULL : Py_NewRef(Py_None);
    }
    Py_ssize_t n = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *small[8], **stack = n < 8 ? small : PyMem_Malloc((size_t)(n + 1) * sizeof *stack);
    if (!stack)
        return PyErr_NoMemory();
    stack[0] = self;
    memcpy(stack + 1, args, (size_t)n * sizeof *stack);
    PyObject *r = mod_contribute(NULL, stack, nargs + 1, kwnames);
    if (stack != small)
        PyMem_Free(stack);
    return r;
}

static PyMethodDef chare_defs[] = {
    {"contribute", (PyCFunction)(void (*)(void))meth_contribute, METH_FASTCALL | METH_KEYWORDS,
     "contribute(data, reducer, target, section=None): data to this collection's next "
     "reduction (or the section's), whose result goes to target (a proxy method or a "
     "Future)."},
    {NULL, NULL, 0, NULL},
};

/* chare_methods(Chare): Chare's methods in C set on the class. */
static PyObject *mod_chare_methods(PyObject *module, PyObject *cls) {
    (void)module;
    if (!PyType_Check(cls))
        return PyErr_Format(PyExc_TypeError, "chare_methods(%R): not a class", cls);
    for (PyMethodDef *m = chare_defs; m->ml_name; m++) {
        PyObject *d = PyDescr_NewMethod((PyTypeObject *)cls, m);
        int rc = d ? PyObject_SetAttrString(cls, m->ml_name, d) : -1;
        Py_XDECREF(d);
        if (rc < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

/* allreduce_into(self, data, reducer, fut, section): self's contribution to
 * an allreduce whose result goes to fut. */
static PyObject *mod_allreduce_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (!R.slow_all)
        return PyErr_Format(PyExc_RuntimeError, "charmpy is not initialised");
    if (nargs != 5)
        return PyErr_Format(PyExc_TypeError, "allreduce_into takes 5 arguments");
    int rc = fast(args[0], args[1], args[2], Py_None, args[3],
                  args[4] == Py_None ? NULL : args[4]);
    if (rc < 0)
        return NULL;
    if (rc)
        Py_RETURN_NONE;
    return PyObject_Vectorcall(R.slow_all, args, 5, NULL);
}

/* ---- typed_reduce ------------------------------------------------------------- */

/* typed_reduce(op, values) -> typed bytes, or None when one of the values is
 * not numbers the C reducers take (reduction.py then combines in Python). */
static PyObject *mod_typed_reduce(PyObject *module, PyObject *args) {
    (void)module;
    int op;
    PyObject *values;
    if (!PyArg_ParseTuple(args, "iO!", &op, &PyList_Type, &values))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(values);
    if (n == 0)
        return PyErr_Format(PyExc_ValueError, "typed_reduce of no values");
    PyObject *acc = cpy_typed_encode(op, PyList_GET_ITEM(values, 0));
    if (!acc || acc == Py_None)
        return acc;
    if (n > 1 && Py_REFCNT(acc) != 1) {   /* combined in place: a private copy */
        Py_SETREF(acc, PyBytes_FromStringAndSize(PyBytes_AS_STRING(acc),
                                                 PyBytes_GET_SIZE(acc)));
        if (!acc)
            return NULL;
    }
    for (Py_ssize_t i = 1; i < n; i++) {
        if ((i = cpy_typed_scalar_run(acc, values, i)) == n)
            break;
        PyObject *v = PyList_GET_ITEM(values, i);
        int rc = cpy_typed_scalar_into(acc, v);
        if (rc == 2) {  /* beyond int64: Python's exact ints */
            Py_DECREF(acc);
            Py_RETURN_NONE;
        }
        if (rc == 0) {
            PyObject *b = cpy_typed_encode(op, v);
            if (b == Py_None) {
                Py_DECREF(b);
                Py_DECREF(acc);
                Py_RETURN_NONE;
            }
            rc = b ? cpy_typed_combine_into(acc, b) : -1;
            Py_XDECREF(b);
            if (rc == 1) {
                Py_DECREF(acc);
                Py_RETURN_NONE;
            }
        }
        if (rc < 0) {
            Py_DECREF(acc);
            return NULL;
        }
    }
    return acc;
}

static PyMethodDef contrib_methods[] = {
    {"chare_methods", mod_chare_methods, METH_O,
     "chare_methods(Chare): set Chare's methods written in C (contribute)"},
    {"red_coll_type", mod_red_coll_type, METH_O,
     "red_coll_type(Collection): the class of charm._colls' values"},
    {"red_setup", mod_red_setup, METH_VARARGS,
     "red_setup(colls, slow, maybe_reduce, gather, slow_all, Section, _Redn, _watch, _arm): "
     "reduction.py's"},
    {"allreduce_into", (PyCFunction)(void (*)(void))mod_allreduce_into, METH_FASTCALL,
     "allreduce_into(self, data, reducer, fut, section): Chare.allreduce's contribution"},
    {"contribute", (PyCFunction)(void (*)(void))mod_contribute, METH_FASTCALL | METH_KEYWORDS,
     "contribute(self, data, reducer, target, section=None): Chare.contribute"},
    {"typed_reduce", mod_typed_reduce, METH_VARARGS,
     "typed_reduce(op, values) -> the typed combination of values, or None"},
    {NULL, NULL, 0, NULL},
};

int cpy_contrib_init(PyObject *module) {
    if (PyModule_AddFunctions(module, contrib_methods) < 0)
        return -1;
    if (!RedState_T &&
        !(RedState_T = (PyTypeObject *)PyType_FromModuleAndSpec(module, &rs_spec, NULL)))
        return -1;
    if (PyModule_AddObjectRef(module, "RedState", (PyObject *)RedState_T) < 0)
        return -1;
    if (!RedCounters_T &&
        !(RedCounters_T = (PyTypeObject *)PyType_FromModuleAndSpec(module, &rc_spec, NULL)))
        return -1;
    if (PyModule_AddObjectRef(module, "RedCounters", (PyObject *)RedCounters_T) < 0)
        return -1;
    return 0;
}
