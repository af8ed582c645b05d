/*
 * The load-balancing strategies (src/runtime/lb.c) for Python:
 * lb_place(strategy, objects, npes, background=None, tolerance=0, seed=0)
 * -> (new PE of each object, figures), where objects is a sequence of
 * (pe, load, migratable) and figures a dict (max_before, max_after, avg,
 * moves); edges (GreedyCommLB) a sequence of (a, b, messages, bytes) between
 * objects a and b (indices), alpha and beta the cost of a message and of a
 * byte between PEs. lb_strategies() -> the strategies' names.
 *
 * And the load database: the dispatch path adds each entry method's wall
 * time to its chare's load while lb_on (cpy_lb_add: the two clock reads
 * are shared with profiling); lb_instrument(on) switches it,
 * lb_take(chare) returns a chare's load since it was last taken and
 * forgets it (a chare that leaves the PE is taken too).
 */
#include "cpy.h"

#include <math.h>
#include <stdlib.h>

static int bad_strategy(PyObject *name) {
    PyObject *names = PyUnicode_FromString("");
    for (int k = 0; names && k < CP_LB_COUNT_; k++)
        Py_SETREF(names, PyUnicode_FromFormat("%U%s%s", names, k ? ", " : "", cp_lb_name(k)));
    if (names)
        PyErr_Format(PyExc_ValueError, "unknown load balancer %R: the strategies are %U", name,
                     names);
    Py_XDECREF(names);
    return -1;
}

/* Read the objects: (pe, load, migratable) each. */
static int read_objs(PyObject *seq, int npes, cp_lb_obj *objs, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(seq, i);
        int pe, mig = 1;
        double load;
        if (!PyArg_ParseTuple(t, "id|p", &pe, &load, &mig))
            return -1;
        if (pe < 0 || pe >= npes || !(load >= 0)) {
            char ls[40];
            snprintf(ls, sizeof ls, "%g", load);
            PyErr_Format(PyExc_ValueError,
                         "object %zd: PE %d of %d, load %s (a PE from 0 to %d and a load >= 0 "
                         "were expected)",
                         i, pe, npes, ls, npes - 1);
            return -1;
        }
        objs[i] = (cp_lb_obj){pe, mig, load};
    }
    return 0;
}

/* Read the edges: (a, b, messages, bytes) each, a and b below n. */
static int read_edges(PyObject *in, Py_ssize_t n, cp_lb_edge **out, Py_ssize_t *ne) {
    PyObject *seq = PySequence_Fast(in, "edges must be a sequence");
    if (!seq)
        return -1;
    *ne = PySequence_Fast_GET_SIZE(seq);
    *out = PyMem_Malloc((size_t)(*ne ? *ne : 1) * sizeof **out);
    int rc = *out ? 0 : (PyErr_NoMemory(), -1);
    for (Py_ssize_t i = 0; rc == 0 && i < *ne; i++) {
        Py_ssize_t a, b;
        double msgs, bytes;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "nndd", &a, &b, &msgs, &bytes)) {
            rc = -1;
        } else if (a < 0 || a >= n || b < 0 || b >= n || !(msgs >= 0) || !(bytes >= 0) ||
                   !isfinite(msgs) || !isfinite(bytes)) {
            PyObject *m = PyFloat_FromDouble(msgs), *by = PyFloat_FromDouble(bytes);
            if (m && by)
                PyErr_Format(PyExc_ValueError,
                             "edge %zd: objects %zd and %zd of %zd, %R messages, %R bytes "
                             "(objects in range and finite counts >= 0 were expected)",
                             i, a, b, n, m, by);
            Py_XDECREF(m);
            Py_XDECREF(by);
            rc = -1;
        } else {
            (*out)[i] = (cp_lb_edge){(size_t)a, (size_t)b, msgs, bytes};
        }
    }
    Py_DECREF(seq);
    if (rc < 0) {
        PyMem_Free(*out);
        *out = NULL;
    }
    return rc;
}

static PyObject *mod_lb_place(PyObject *module, PyObject *args, PyObject *kwargs) {
    (void)module;
    static char *kw[] = {"strategy", "objects", "npes", "background", "tolerance", "seed",
                         "edges", "alpha", "beta", NULL};
    PyObject *name, *objs_in, *bg_in = Py_None, *edges_in = Py_None;
    int npes;
    double tol = 0, alpha = 0, beta = 0;
    unsigned long long seed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "UOi|OdKOdd", kw, &name, &objs_in, &npes,
                                     &bg_in, &tol, &seed, &edges_in, &alpha, &beta))
        return NULL;
    int kind = cp_lb_kind_of(PyUnicode_AsUTF8(name));
    if (kind < 0)
        return bad_strategy(name), NULL;
    if (npes < 1)
        return PyErr_Format(PyExc_ValueError, "npes must be at least 1, got %d", npes);
    PyObject *seq = PySequence_Fast(objs_in, "objects must be a sequence");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    cp_lb_obj *objs = PyMem_Malloc((size_t)(n ? n : 1) * sizeof *objs);
    int *out = PyMem_Malloc((size_t)(n ? n : 1) * sizeof *out);
    double *bg = bg_in != Py_None ? PyMem_Malloc((size_t)npes * sizeof *bg) : NULL;
    PyObject *res = NULL;
    if (!objs || !out || (bg_in != Py_None && !bg)) {
        PyErr_NoMemory();
        goto done;
    }
    if (read_objs(seq, npes, objs, n) < 0)
        goto done;
    for (int p = 0; bg && p < npes; p++) {
        PyObject *v = PySequence_GetItem(bg_in, p);
        bg[p] = v ? PyFloat_AsDouble(v) : -1;
        Py_XDECREF(v);
        if (PyErr_Occurred())
            goto done;
    }
    cp_lb_edge *edges = NULL;
    Py_ssize_t ne = 0;
    if (edges_in != Py_None && read_edges(edges_in, n, &edges, &ne) < 0)
        goto done;
    cp_lb_input in = {.npes = npes, .bg_load = bg, .objs = objs, .nobjs = (size_t)n,
                      .tolerance = tol, .seed = seed, .edges = edges, .nedges = (size_t)ne,
                      .alpha = alpha, .beta = beta};
    cp_lb_figures f;
    int rc = cp_lb_place(kind, &in, out);
    if (!rc)
        rc = cp_lb_figures_of(&in, out, &f);
    PyMem_Free(edges);
    if (rc) {
        PyErr_Format(rc == CP_ENOMEM ? PyExc_MemoryError : PyExc_ValueError,
                     "load balancing with %U: %s", name, cp_strerror(rc));
        goto done;
    }
    PyObject *pes = PyList_New(n);
    for (Py_ssize_t i = 0; pes && i < n; i++)
        PyList_SET_ITEM(pes, i, PyLong_FromLong(out[i]));
    if (pes)
        res = Py_BuildValue("N{sdsdsdsn}", pes, "max_before", f.max_before, "max_after",
                            f.max_after, "avg", f.avg, "moves", (Py_ssize_t)f.moves);
done:
    Py_DECREF(seq);
    PyMem_Free(objs);
    PyMem_Free(out);
    PyMem_Free(bg);
    return res;
}

/* ---- the load database ------------------------------------------------- */

static size_t slot_of(const cpy_loads *t, const PyObject *obj) {
    uint64_t h = (uint64_t)(uintptr_t)obj >> 4;
    h *= 0x9e3779b97f4a7c15ULL;
    return (size_t)(h >> 32) & (t->cap - 1);
}

static int loads_grow(cpy_loads *t) {
    size_t cap = t->cap ? t->cap * 2 : 64;
    cpy_load *slots = PyMem_Calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    cpy_loads nt = {slots, cap, 0};
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slots[i].obj)
            continue;
        size_t j = slot_of(&nt, t->slots[i].obj);
        while (slots[j].obj)
            j = (j + 1) & (cap - 1);
        slots[j] = t->slots[i];
        nt.n++;
    }
    PyMem_Free(t->slots);
    *t = nt;
    return 0;
}

int cpy_lb_add(cpy_state *st, const PyObject *obj, double secs) {
    cpy_loads *t = &st->loaddb;
    st->lb_chare_secs += secs;
    if (2 * (t->n + 1) > t->cap && loads_grow(t) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    size_t j = slot_of(t, obj);
    while (t->slots[j].obj && t->slots[j].obj != obj)
        j = (j + 1) & (t->cap - 1);
    if (!t->slots[j].obj) {
        t->slots[j].obj = obj;
        t->slots[j].secs = 0;
        t->n++;
    }
    t->slots[j].secs += secs;
    return 0;
}

/* Remove obj's entry (backward shift keeps every probe chain whole). */
static double loads_take(cpy_loads *t, const PyObject *obj) {
    if (!t->cap)
        return 0;
    size_t mask = t->cap - 1, j = slot_of(t, obj);
    while (t->slots[j].obj && t->slots[j].obj != obj)
        j = (j + 1) & mask;
    if (!t->slots[j].obj)
        return 0;
    double secs = t->slots[j].secs;
    t->n--;
    for (size_t k = (j + 1) & mask;; k = (k + 1) & mask) {
        if (!t->slots[k].obj)
            break;
        size_t home = slot_of(t, t->slots[k].obj);
        /* Move k back to j when its home is not in (j, k] cyclically. */
        if (((k - home) & mask) >= ((k - j) & mask)) {
            t->slots[j] = t->slots[k];
            j = k;
        }
    }
    t->slots[j].obj = NULL;
    return secs;
}

void cpy_lb_free(cpy_state *st) {
    PyMem_Free(st->loaddb.slots);
    st->loaddb = (cpy_loads){0};
    Py_CLEAR(st->lb_commtab);
}

/* ---- who calls whom (GreedyCommLB) --------------------------------------- */

int cpy_lb_comm_add(cpy_state *st, const em_hdr *h, size_t bytes) {
    if (!st->lb_commtab && !(st->lb_commtab = PyDict_New()))
        return -1;
    PyObject *who = PyLong_FromVoidPtr(st->lb_cur);
    PyObject *row = who ? PyDict_GetItemWithError(st->lb_commtab, who) : NULL;
    if (!row && who && !PyErr_Occurred()) {
        row = PyDict_New();
        if (row && PyDict_SetItem(st->lb_commtab, who, row) < 0)
            Py_CLEAR(row);
        Py_XDECREF(row); /* the table holds it */
    }
    Py_XDECREF(who);
    if (!row)
        return -1;
    PyObject *idx = cpy_loc_key_tuple(h);
    PyObject *key = idx ? Py_BuildValue("(KN)", (unsigned long long)h->coll, idx) : NULL;
    PyObject *e = key ? PyDict_GetItemWithError(row, key) : NULL;
    int rc = -1;
    if (e) {
        double m = PyFloat_AsDouble(PyList_GET_ITEM(e, 0)) + 1;
        double b = PyFloat_AsDouble(PyList_GET_ITEM(e, 1)) + (double)bytes;
        PyObject *mv = PyFloat_FromDouble(m), *bv = PyFloat_FromDouble(b);
        if (mv && bv) {
            PyList_SetItem(e, 0, mv);
            PyList_SetItem(e, 1, bv);
            rc = 0;
        } else {
            Py_XDECREF(mv);
            Py_XDECREF(bv);
        }
    } else if (key && !PyErr_Occurred()) {
        e = Py_BuildValue("[dd]", 1.0, (double)bytes);
        rc = e ? PyDict_SetItem(row, key, e) : -1;
        Py_XDECREF(e);
    }
    Py_XDECREF(key);
    return rc;
}

/* The calls chare obj sent since last taken, forgotten here: a dict
 * {(coll, index): [messages, bytes]} (new reference), or NULL (none, or an
 * exception). */
static PyObject *comm_take(cpy_state *st, PyObject *obj) {
    if (!st->lb_commtab)
        return NULL;
    PyObject *who = PyLong_FromVoidPtr(obj);
    PyObject *row = who ? PyDict_GetItemWithError(st->lb_commtab, who) : NULL;
    Py_XINCREF(row);
    if (row && PyDict_DelItem(st->lb_commtab, who) < 0)
        Py_CLEAR(row);
    Py_XDECREF(who);
    return row;
}

/* lb_enter(chare or None) -> the chare before: the calls made from now on
 * are chare's (GreedyCommLB), until lb_enter(what it returned). The caller
 * keeps chare alive meanwhile. */
static PyObject *mod_lb_enter(PyObject *module, PyObject *obj) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *was = st->lb_cur ? st->lb_cur : Py_None;
    Py_INCREF(was);
    st->lb_cur = obj == Py_None ? NULL : obj;
    return was;
}

/* Set *flag to the truth of `on`; the value it had (a bool), or NULL. */
static PyObject *set_flag(int *flag, PyObject *on) {
    int was = *flag, v = PyObject_IsTrue(on);
    if (v < 0)
        return NULL;
    *flag = v;
    return PyBool_FromLong(was);
}

/* lb_comm(on) -> was on: record who calls whom (for GreedyCommLB). */
static PyObject *mod_lb_comm(PyObject *module, PyObject *on) {
    return set_flag(&((cpy_state *)PyModule_GetState(module))->lb_comm, on);
}

/* lb_take_comm(chare) -> {(coll, index): [messages, bytes]} it sent since
 * last taken (forgotten here). */
static PyObject *mod_lb_take_comm(PyObject *module, PyObject *obj) {
    PyObject *row = comm_take(PyModule_GetState(module), obj);
    return row ? row : PyErr_Occurred() ? NULL : PyDict_New();
}

static PyObject *mod_lb_instrument(PyObject *module, PyObject *on) {
    return set_flag(&((cpy_state *)PyModule_GetState(module))->lb_on, on);
}

static PyObject *mod_lb_take(PyObject *module, PyObject *obj) {
    cpy_state *st = PyModule_GetState(module);
    return PyFloat_FromDouble(loads_take(&st->loaddb, obj));
}

/* lb_forget(chare): drop what is recorded of chare (it leaves the PE). */
static PyObject *mod_lb_forget(PyObject *module, PyObject *obj) {
    cpy_state *st = PyModule_GetState(module);
    loads_take(&st->loaddb, obj);
    PyObject *row = comm_take(st, obj);
    if (!row && PyErr_Occurred())
        return NULL;
    Py_XDECREF(row);
    Py_RETURN_NONE;
}

/* lb_add(chare, secs): a coroutine of chare ran secs after a suspension
 * (while loads are measured). */
static PyObject *mod_lb_add(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *obj;
    double secs;
    if (!PyArg_ParseTuple(args, "Od", &obj, &secs))
        return NULL;
    if (st->lb_on && secs > 0 && cpy_lb_add(st, obj, secs) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* lb_times() -> (wall, idle, chares): this PE's wall clock, its time idle
 * waiting for work, and the chare time measured so far (seconds); the
 * background load between two readings is what is neither. */
static PyObject *mod_lb_times(PyObject *module, PyObject *noargs) {
    (void)noargs;
    cpy_state *st = PyModule_GetState(module);
    if (cpy_need_runtime(st))
        return NULL;
    cp_counters c;
    cp_get_counters(st->ctx, &c);
    return Py_BuildValue("ddd", cp_wall_time(), c.idle_secs, st->lb_chare_secs);
}

static PyObject *mod_lb_strategies(PyObject *module, PyObject *noargs) {
    (void)module;
    (void)noargs;
    PyObject *t = PyTuple_New(CP_LB_COUNT_);
    for (int k = 0; t && k < CP_LB_COUNT_; k++)
        PyTuple_SET_ITEM(t, k, PyUnicode_FromString(cp_lb_name(k)));
    return t;
}

PyMethodDef cpy_balance_methods[] = {
    {"lb_place", (PyCFunction)(void (*)(void))mod_lb_place, METH_VARARGS | METH_KEYWORDS,
     "lb_place(strategy, objects, npes, background=None, tolerance=0, seed=0)"},
    {"lb_strategies", mod_lb_strategies, METH_NOARGS, "the load balancers' names"},
    {"lb_instrument", mod_lb_instrument, METH_O,
     "lb_instrument(on) -> was on: measure chares' loads in the dispatch path"},
    {"lb_take", mod_lb_take, METH_O, "lb_take(chare) -> its load (s) since last taken"},
    {"lb_add", mod_lb_add, METH_VARARGS, "lb_add(chare, secs): add to its load (if measuring)"},
    {"lb_forget", mod_lb_forget, METH_O, "lb_forget(chare): drop its load and calls"},
    {"lb_comm", mod_lb_comm, METH_O, "lb_comm(on) -> was on: record who calls whom"},
    {"lb_enter", mod_lb_enter, METH_O, "lb_enter(chare|None) -> previous: calls are chare's"},
    {"lb_take_comm", mod_lb_take_comm, METH_O,
     "lb_take_comm(chare) -> {(coll, index): [messages, bytes]} it sent since last taken"},
    {"lb_times", mod_lb_times, METH_NOARGS,
     "lb_times() -> (wall, idle, chare time measured) of this PE (s)"},
    {NULL, NULL, 0, NULL},
};
