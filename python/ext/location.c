/*
 * The location service: where the members of every collection are, seen
 * from this PE, and what becomes of a message for a member that is not
 * here. It is the one place that computes an element's home PE (the block
 * map, a hash for sparse arrays, or the ArrayMap's procNum), that keeps
 * messages for collections not created here yet and for elements not
 * inserted yet, and that forwards messages to where an element is. The
 * migration of elements (next) updates the same tables.
 *
 * An element's home PE always knows where it is: a sparse element inserted
 * on another PE is announced to its home by a location message, and until
 * then messages to it wait at the home. Senders send to the home unless
 * they know better.
 *
 * The table is a small open-addressing hash from collection id to a record;
 * records live until the module is freed (collections are never destroyed).
 */
#include "cpy.h"

#include <stdlib.h>
#include <string.h>

typedef struct cpy_coll {
    uint64_t id;
    cpy_place place;   /* valid once `placed` */
    int placed;
    PyObject *members; /* dict key -> chare; NULL until registered here */
    cp_msg **early;    /* arrived before registration, in arrival order */
    int nearly, capearly;
    PyObject *locs;     /* dict key -> PE: elements living elsewhere (NULL: none) */
    PyObject *held;     /* dict key -> list of messages (ints) waiting for the
                           element's insertion (NULL: none) */
    PyObject *building; /* set of keys whose constructor is running here */
    int done;           /* sparse: every insertion ckDoneInserting waited for ran here */
    int nroute;         /* EM_ROUTE messages of this PE not routed yet */
    uint64_t *sent;     /* sparse: insertions this PE sent to each PE (npes), or NULL */
} cpy_coll;

struct cpy_colls {
    cpy_coll **slot; /* cap entries, NULL when free */
    size_t cap, n;
    cpy_coll *last;  /* the collection of the last lookup */
};

/* The location message: element idx of coll lives on pe. */
typedef struct loc_msg {
    uint64_t coll;
    int32_t pe, ndims;
    int32_t idx[CPY_MAXDIMS];
} loc_msg;

static size_t slot_of(uint64_t id, size_t cap) {
    uint64_t h = id * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 17) & (cap - 1);
}

int cpy_loc_init(cpy_state *st) {
    st->colls = PyMem_RawCalloc(1, sizeof *st->colls);
    if (!st->colls)
        return -1;
    st->colls->cap = 64;
    st->colls->slot = PyMem_RawCalloc(st->colls->cap, sizeof(cpy_coll *));
    return st->colls->slot ? 0 : -1;
}

static cpy_coll *find(cpy_state *st, uint64_t id) {
    cpy_colls *t = st->colls;
    if (t->last && t->last->id == id)
        return t->last;
    for (size_t i = slot_of(id, t->cap);; i = (i + 1) & (t->cap - 1)) {
        cpy_coll *c = t->slot[i];
        if (!c || c->id == id) {
            if (c)
                t->last = c;
            return c;
        }
    }
}

static int grow_table(cpy_colls *t) {
    size_t cap = t->cap * 2;
    cpy_coll **slot = PyMem_RawCalloc(cap, sizeof *slot);
    if (!slot)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        cpy_coll *c = t->slot[i];
        if (!c)
            continue;
        size_t j = slot_of(c->id, cap);
        while (slot[j])
            j = (j + 1) & (cap - 1);
        slot[j] = c;
    }
    PyMem_RawFree(t->slot);
    t->slot = slot;
    t->cap = cap;
    return 0;
}

/* The record of collection id, created empty when there is none. NULL
 * with MemoryError. */
static cpy_coll *get(cpy_state *st, uint64_t id) {
    cpy_coll *c = find(st, id);
    if (c)
        return c;
    cpy_colls *t = st->colls;
    if ((t->n + 1) * 2 > t->cap && grow_table(t) < 0)
        return (cpy_coll *)PyErr_NoMemory();
    c = PyMem_RawCalloc(1, sizeof *c);
    if (!c)
        return (cpy_coll *)PyErr_NoMemory();
    c->id = id;
    size_t i = slot_of(id, t->cap);
    while (t->slot[i])
        i = (i + 1) & (t->cap - 1);
    t->slot[i] = c;
    t->n++;
    return c;
}

PyObject *cpy_loc_members(cpy_state *st, uint64_t coll) {
    cpy_coll *c = find(st, coll);
    return c ? c->members : NULL;
}

/* Discard the messages of a list of message pointers. */
static void discard_list(cpy_state *st, PyObject *list) {
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++)
        cpy_discard(st, PyLong_AsVoidPtr(PyList_GET_ITEM(list, i)));
    PyList_SetSlice(list, 0, PyList_GET_SIZE(list), NULL);
}

/* Drop what the record holds. Messages are freed while the runtime runs;
 * after it ended, their memory went with it. */
static void clear_coll(cpy_state *st, cpy_coll *c) {
    for (int i = 0; st->ctx && i < c->nearly; i++)
        cpy_discard(st, c->early[i]);
    c->nearly = 0;
    if (c->held && st->ctx) {
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(c->held, &pos, &k, &v))
            discard_list(st, v);
    }
    Py_CLEAR(c->held);
    Py_CLEAR(c->locs);
    Py_CLEAR(c->building);
    if (c->members)
        PyDict_Clear(c->members); /* chares may refer to their proxies */
    Py_CLEAR(c->members);
}

void cpy_loc_clear(cpy_state *st) {
    if (!st->colls)
        return;
    for (size_t i = 0; i < st->colls->cap; i++)
        if (st->colls->slot[i])
            clear_coll(st, st->colls->slot[i]);
}

void cpy_loc_free(cpy_state *st) {
    cpy_colls *t = st->colls;
    if (!t)
        return;
    for (size_t i = 0; i < t->cap; i++) {
        cpy_coll *c = t->slot[i];
        if (!c)
            continue;
        clear_coll(st, c);
        PyMem_RawFree(c->early);
        PyMem_RawFree(c->sent);
        PyMem_RawFree(c);
    }
    PyMem_RawFree(t->slot);
    PyMem_RawFree(t);
    st->colls = NULL;
}

int cpy_loc_traverse(cpy_state *st, visitproc visit, void *arg) {
    if (!st->colls)
        return 0;
    for (size_t i = 0; i < st->colls->cap; i++) {
        cpy_coll *c = st->colls->slot[i];
        if (!c)
            continue;
        Py_VISIT(c->members);
        Py_VISIT(c->locs);
        Py_VISIT(c->held);
        Py_VISIT(c->building);
    }
    return 0;
}

int cpy_loc_early(cpy_state *st, cp_msg *msg) {
    em_hdr *h = cp_msg_data(msg);
    cpy_coll *c = get(st, h->coll);
    if (c && c->nearly == c->capearly) {
        int cap = c->capearly ? 2 * c->capearly : 8;
        cp_msg **e = PyMem_RawRealloc(c->early, (size_t)cap * sizeof *e);
        if (!e) {
            PyErr_NoMemory();
            c = NULL;
        } else {
            c->early = e;
            c->capearly = cap;
        }
    }
    if (!c) {
        cpy_discard(st, msg);
        return -1;
    }
    c->early[c->nearly++] = msg;
    cp_qd_create(st->ctx, 1); /* not delivered yet: the job is not quiescent */
    return 0;
}

PyObject *cpy_loc_key_tuple(const em_hdr *h) {
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

static PyObject *index_tuple(int ndims, const int32_t *idx) {
    PyObject *t = PyTuple_New(ndims);
    for (int i = 0; t && i < ndims; i++) {
        PyObject *v = PyLong_FromLong(idx[i]);
        if (!v) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

/* ---- home PEs -------------------------------------------------------------- */

/* The ArrayMap's procNum(index) for idx. */
static int mapped_home(cpy_state *st, const cpy_place *pl, const int32_t *idx) {
    int npes = cp_num_pes(st->ctx);
    PyObject *members = cpy_loc_members(st, pl->map_coll);
    PyObject *me = members ? PyLong_FromLong(cp_my_pe(st->ctx)) : NULL;
    PyObject *map = me ? PyDict_GetItemWithError(members, me) : NULL; /* borrowed */
    Py_XDECREF(me);
    if (!map)
        return PyErr_Occurred() ? -1 : CPY_HOME_UNKNOWN;
    PyObject *index = index_tuple(pl->ndims, idx);
    PyObject *args[2] = {map, index};
    PyObject *r = index ? PyObject_VectorcallMethod(st->str_procNum, args, 2, NULL) : NULL;
    Py_XDECREF(index);
    long pe = r ? PyLong_AsLong(r) : -1;
    if (r && pe == -1 && PyErr_Occurred() && PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "ArrayMap.procNum returned %R; a PE number was expected",
                     r);
    }
    Py_XDECREF(r);
    if (pe == -1 && PyErr_Occurred())
        return -1;
    if (pe < 0 || pe >= npes) {
        PyErr_Format(PyExc_ValueError,
                     "ArrayMap.procNum returned %ld; a PE from 0 to %d was expected", pe,
                     npes - 1);
        return -1;
    }
    return (int)pe;
}

/* Element l of a block-mapped array of `total` elements lives on
 * floor(l * npes / total). */
static int block_home(const cpy_place *pl, const int32_t *idx, int npes) {
    unsigned __int128 lin = 0, total = 1;
    for (int i = 0; i < pl->ndims; i++) {
        lin = lin * (uint32_t)pl->dims[i] + (uint32_t)idx[i];
        total *= (uint32_t)pl->dims[i];
    }
    return (int)(lin * (unsigned)npes / total);
}

int cpy_loc_home(cpy_state *st, const cpy_place *pl, const int32_t *idx) {
    int npes = cp_num_pes(st->ctx);
    if (pl->has_map)
        return mapped_home(st, pl, idx);
    if (pl->sparse) {
        uint64_t h = 1469598103934665603ull;
        for (int i = 0; i < pl->ndims; i++)
            h = (h ^ (uint32_t)idx[i]) * 1099511628211ull;
        return (int)(h % (unsigned)npes);
    }
    return block_home(pl, idx, npes);
}

int cpy_loc_must_route(cpy_state *st, uint64_t coll, const cpy_place *pl,
                       const int32_t *idx) {
    (void)idx;
    if (!pl->has_map)
        return 0;
    cpy_coll *c = find(st, coll);
    if (c && c->nroute > 0)
        return 1; /* keep this PE's messages to the array in order */
    return cpy_loc_members(st, pl->map_coll) == NULL;
}

void cpy_loc_note_routed(cpy_state *st, uint64_t coll) {
    cpy_coll *c = get(st, coll);
    if (c)
        c->nroute++;
    else
        PyErr_Clear(); /* only ordering bookkeeping: must_route still sees the map missing */
}

/* dense_layout(proxy) -> (indices of this PE's elements in index order,
 * tuple of the PEs that hold elements) for a dense array. */
static int place_of(cpy_state *st, PyObject *proxy, cpy_place *out);

static PyObject *mod_dense_layout(PyObject *module, PyObject *proxy) {
    cpy_state *st = PyModule_GetState(module);
    cpy_place pl;
    if (cpy_need_runtime(st) || place_of(st, proxy, &pl) < 0)
        return NULL;
    uint64_t total = 1;
    for (int i = 0; i < pl.ndims; i++)
        total *= (uint64_t)pl.dims[i];
    int npes = cp_num_pes(st->ctx), me = cp_my_pe(st->ctx);
    char *used = PyMem_Calloc((size_t)npes, 1);
    PyObject *mine = PyList_New(0), *pes = NULL;
    if (!used || !mine)
        goto fail;
    int32_t idx[CPY_MAXDIMS] = {0};
    for (uint64_t l = 0; l < total; l++) {
        uint64_t rest = l;
        for (int i = pl.ndims - 1; i >= 0; i--) {
            idx[i] = (int32_t)(rest % (uint64_t)pl.dims[i]);
            rest /= (uint64_t)pl.dims[i];
        }
        int pe = cpy_loc_home(st, &pl, idx);
        if (pe == CPY_HOME_UNKNOWN) {
            PyErr_SetString(PyExc_RuntimeError, "the array's ArrayMap group has no member on "
                                                "this PE yet");
            goto fail;
        }
        if (pe < 0)
            goto fail;
        used[pe] = 1;
        if (pe != me)
            continue;
        PyObject *t = index_tuple(pl.ndims, idx);
        int rc = t ? PyList_Append(mine, t) : -1;
        Py_XDECREF(t);
        if (rc < 0)
            goto fail;
    }
    int n = 0;
    for (int p = 0; p < npes; p++)
        n += used[p];
    pes = PyTuple_New(n);
    for (int p = 0, k = 0; pes && p < npes; p++)
        if (used[p])
            PyTuple_SET_ITEM(pes, k++, PyLong_FromLong(p));
    if (!pes)
        goto fail;
    PyMem_Free(used);
    return Py_BuildValue("NN", mine, pes);
fail:
    PyMem_Free(used);
    Py_XDECREF(mine);
    return NULL;
}

/* ---- messages for members that are not here ------------------------------ */

static int hold(cpy_state *st, cpy_coll *c, PyObject *key, cp_msg *msg) {
    if (!c->held && !(c->held = PyDict_New()))
        return -1;
    PyObject *list = PyDict_GetItemWithError(c->held, key); /* borrowed */
    if (!list) {
        if (PyErr_Occurred() || !(list = PyList_New(0)))
            return -1;
        int rc = PyDict_SetItem(c->held, key, list);
        Py_DECREF(list);
        if (rc < 0)
            return -1;
    }
    PyObject *ptr = PyLong_FromVoidPtr(msg);
    int rc = ptr ? PyList_Append(list, ptr) : -1;
    Py_XDECREF(ptr);
    if (rc == 0)
        cp_qd_create(st->ctx, 1); /* kept for an element not here yet */
    return rc;
}

/* Take the list of messages held for key (new reference, NULL when none):
 * they are the caller's to deliver, forward or fail. */
static PyObject *take_held(cpy_state *st, cpy_coll *c, PyObject *key) {
    if (!c->held)
        return NULL;
    PyObject *list = PyDict_GetItemWithError(c->held, key);
    if (!list)
        return NULL;
    Py_INCREF(list);
    if (PyDict_DelItem(c->held, key) < 0) {
        Py_DECREF(list);
        return NULL;
    }
    cp_qd_process(st->ctx, (uint64_t)PyList_GET_SIZE(list));
    return list;
}

/* A message that cannot be delivered: its future gets `exc`, or, with no
 * future waiting, the job ends with it. Takes msg and exc. */
static void fail_message(cpy_state *st, cp_msg *msg, PyObject *exc, const char *where) {
    PyObject *reply = cpy_reply_of(cp_msg_data(msg));
    cpy_discard(st, msg);
    if (reply && reply != Py_None && exc) {
        PyObject *at = PyUnicode_FromFormat("%s on PE %d", where, cp_my_pe(st->ctx));
        PyObject *args[5] = {reply, Py_None, exc, Py_None, at};
        PyObject *r = at ? cpy_hook(st, CPY_HOOK_REPLY, args, 5) : NULL;
        Py_XDECREF(at);
        Py_DECREF(reply);
        Py_DECREF(exc);
        if (!r)
            cpy_report_error(st, where);
        Py_XDECREF(r);
        return;
    }
    Py_XDECREF(reply);
    if (exc)
        cpy_restore_exception(exc);
    cpy_report_error(st, where);
}

static void send_location(cpy_state *st, uint64_t coll, int ndims, const int32_t *idx,
                          int at, int home) {
    cp_msg *m = cp_msg_alloc(st->ctx, sizeof(loc_msg));
    if (!m) {
        PyErr_NoMemory();
        cpy_report_error(st, "announcing where a sparse array element was inserted");
        return;
    }
    loc_msg *l = cp_msg_data(m);
    memset(l, 0, sizeof *l);
    l->coll = coll;
    l->pe = at;
    l->ndims = ndims;
    memcpy(l->idx, idx, sizeof l->idx);
    if (cpy_send_or_bcast(st, home, st->h_loc, m) < 0)
        cpy_report_error(st, "announcing where a sparse array element was inserted");
}

/* One more insertion sent from this PE to PE `to` (ckDoneInserting's count). */
static void count_insert(cpy_state *st, uint64_t coll, int to) {
    cpy_coll *c = get(st, coll);
    if (c && !c->sent)
        c->sent = PyMem_RawCalloc((size_t)cp_num_pes(st->ctx), sizeof *c->sent);
    if (!c || !c->sent) {
        PyErr_NoMemory();
        cpy_report_error(st, "counting insertions into a sparse array");
        return;
    }
    c->sent[to]++;
}

/* An insertion arrived where the element will live: run its constructor
 * through the insert hook (which registers it with loc_add). */
static void run_insert(cpy_state *st, cpy_coll *c, PyObject *key, cp_msg *msg) {
    PyObject *args = NULL, *kwargs = NULL;
    if (c->done) {
        PyErr_Format(PyExc_RuntimeError,
                     "element %R of a sparse array was inserted after ckDoneInserting "
                     "reached PE %d: insert every element before calling ckDoneInserting "
                     "(from the PE that inserts them)",
                     key, cp_my_pe(st->ctx));
        fail_message(st, msg, cpy_take_exception(), "inserting an element");
        return;
    }
    if (!c->building && !(c->building = PySet_New(NULL))) {
        cpy_discard(st, msg);
        goto error;
    }
    if (PySet_Add(c->building, key) < 0) {
        cpy_discard(st, msg);
        goto error;
    }
    em_hdr *h = cp_msg_data(msg);
    PyObject *ro = PyLong_FromUnsignedLongLong(h->fut_id);
    if (cpy_take_msg_args(st, msg, &args, &kwargs) < 0) {
        Py_XDECREF(ro);
        goto error;
    }
    PyObject *id = PyLong_FromUnsignedLongLong(c->id);
    PyObject *hargs[4] = {id, key, args, ro};
    PyObject *r = id && ro ? cpy_hook(st, CPY_HOOK_INSERT, hargs, 4) : NULL;
    Py_XDECREF(id);
    Py_XDECREF(ro);
    Py_DECREF(args);
    Py_XDECREF(kwargs);
    if (!r)
        goto error;
    Py_DECREF(r);
    return;
error:
    cpy_report_error(st, "inserting an element into a sparse array");
}

void cpy_loc_missing(cpy_state *st, uint64_t coll, PyObject *key, cp_msg *msg) {
    em_hdr *h = cp_msg_data(msg);
    cpy_coll *c = find(st, coll);
    if (!c) { /* cannot happen: the caller found the members */
        PyErr_SetString(PyExc_SystemError, "location: no record of a registered collection");
        fail_message(st, msg, cpy_take_exception(), "routing a message");
        return;
    }
    if (h->method == CPY_M_INSERT) {
        run_insert(st, c, key, msg);
        return;
    }
    PyObject *pe = c->locs ? PyDict_GetItemWithError(c->locs, key) : NULL;
    if (!pe && PyErr_Occurred()) {
        fail_message(st, msg, cpy_take_exception(), "routing a message");
        return;
    }
    if (pe) {
        if (cpy_forward(st, msg, (int)PyLong_AsLong(pe)) < 0)
            fail_message(st, msg, cpy_take_exception(), "forwarding a message");
        return;
    }
    int building = c->building ? PySet_Contains(c->building, key) : 0;
    if (building >= 0 && c->place.sparse && (!c->done || building > 0)) {
        if (hold(st, c, key, msg) < 0)
            fail_message(st, msg, cpy_take_exception(), "holding a message");
        return;
    }
    if (building >= 0) {
        if (c->place.sparse)
            PyErr_Format(PyExc_LookupError,
                         "message for element %R of a sparse array, which was never "
                         "inserted (ckDoneInserting was called)",
                         key);
        else
            PyErr_Format(PyExc_LookupError,
                         "message for member %R of collection %llx, which is not on PE %d",
                         key, (unsigned long long)coll, cp_my_pe(st->ctx));
    }
    fail_message(st, msg, cpy_take_exception(), "delivering a message");
}

void cpy_loc_route(cpy_state *st, cp_msg *msg, PyObject *members) {
    em_hdr *h = cp_msg_data(msg);
    cpy_coll *c = find(st, h->coll);
    if (c && c->nroute > 0)
        c->nroute--;
    h->flags &= ~(uint32_t)EM_ROUTE;
    if (h->method == CPY_M_ROUTED) {
        /* Everything this PE routed to the collection before it has left. */
        PyObject *id = PyLong_FromUnsignedLongLong(h->coll);
        cpy_discard(st, msg);
        PyObject *r = id ? cpy_hook(st, CPY_HOOK_ROUTED, &id, 1) : NULL;
        Py_XDECREF(id);
        if (!r)
            cpy_report_error(st, "ckDoneInserting");
        Py_XDECREF(r);
        return;
    }
    int home = c && c->placed ? cpy_loc_home(st, &c->place, h->idx) : -1;
    if (home == CPY_HOME_UNKNOWN)
        PyErr_SetString(PyExc_RuntimeError,
                        "the array's ArrayMap group has no member on this PE");
    else if (home < 0 && !PyErr_Occurred())
        PyErr_SetString(PyExc_SystemError, "location: routing for a collection not placed");
    if (home < 0) {
        fail_message(st, msg, cpy_take_exception(), "routing a message");
        return;
    }
    int me = cp_my_pe(st->ctx), to = home;
    if (h->method == CPY_M_INSERT) {
        to = h->aux > 0 ? h->aux - 1 : home;
        count_insert(st, h->coll, to);
        if (to != home)
            send_location(st, h->coll, h->ndims, h->idx, to, home);
    }
    if (to == me) {
        cpy_deliver(st, msg, members);
        return;
    }
    if (cpy_forward(st, msg, to) < 0)
        fail_message(st, msg, cpy_take_exception(), "routing a message");
}

/* Send the messages of `list` on to PE pe, in order (or deliver them here
 * when pe is this PE). */
static void release_list(cpy_state *st, PyObject *list, int pe, PyObject *members) {
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        cp_msg *m = PyLong_AsVoidPtr(PyList_GET_ITEM(list, i));
        if (pe == cp_my_pe(st->ctx))
            cpy_deliver(st, m, members);
        else if (cpy_forward(st, m, pe) < 0)
            fail_message(st, m, cpy_take_exception(), "forwarding a held message");
    }
}

void cpy_on_location(cp_ctx *ctx, cp_msg *msg, void *user) {
    (void)ctx;
    cpy_state *st = user;
    loc_msg l;
    memcpy(&l, cp_msg_data(msg), sizeof l);
    cp_msg_free(st->ctx, msg);
    em_hdr h = {.ndims = (uint16_t)l.ndims};
    memcpy(h.idx, l.idx, sizeof h.idx);
    cpy_coll *c = get(st, l.coll);
    PyObject *key = c ? cpy_loc_key(&h) : NULL;
    PyObject *pe = key ? PyLong_FromLong(l.pe) : NULL;
    if (pe && !c->locs)
        c->locs = PyDict_New();
    if (!pe || !c->locs || PyDict_SetItem(c->locs, key, pe) < 0)
        goto error;
    PyObject *list = take_held(st, c, key);
    if (list) {
        release_list(st, list, l.pe, c->members);
        Py_DECREF(list);
    } else if (PyErr_Occurred()) {
        goto error;
    }
    Py_DECREF(key);
    Py_DECREF(pe);
    return;
error:
    Py_XDECREF(key);
    Py_XDECREF(pe);
    cpy_report_error(st, "recording where a sparse array element lives");
}

int cpy_loc_insert(cpy_state *st, uint64_t coll, const cpy_place *pl, const int32_t *idx,
                   PyObject *args, int on_pe) {
    int npes = cp_num_pes(st->ctx), me = cp_my_pe(st->ctx);
    if (on_pe < -1 || on_pe >= npes) {
        PyErr_Format(PyExc_ValueError, "onPE=%d: give a PE from 0 to %d, or -1 for the home PE",
                     on_pe, npes - 1);
        return -1;
    }
    int home = cpy_loc_home(st, pl, idx);
    if (home == -1)
        return -1;
    uint32_t flags = 0;
    int to = on_pe >= 0 ? on_pe : home;
    if (home == CPY_HOME_UNKNOWN || cpy_loc_must_route(st, coll, pl, idx)) {
        to = me;
        flags = EM_ROUTE;
    }
    PyObject *cargs = PySequence_Tuple(args);
    if (!cargs)
        return -1;
    /* The insertion is an entry message of method CPY_M_INSERT whose
     * arguments are the constructor's. */
    em_hdr h = {.coll = coll, .flags = flags, .ndims = (uint16_t)pl->ndims,
                .method = CPY_M_INSERT, .fut_id = st->readonlies, .fut_pe = me,
                .aux = on_pe + 1};
    memcpy(h.idx, idx, sizeof h.idx);
    int rc = cpy_send_entry(st, to, &h, NULL, cargs, NULL);
    Py_DECREF(cargs);
    if (rc < 0)
        return -1;
    if (flags & EM_ROUTE) {
        cpy_loc_note_routed(st, coll);
        return 0;
    }
    count_insert(st, coll, to);
    if (to != home)
        send_location(st, coll, pl->ndims, idx, to, home);
    return 0;
}

/* ---- the Python face ---------------------------------------------------- */

static int coll_arg(PyObject *o, uint64_t *out) {
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static int place_of(cpy_state *st, PyObject *proxy, cpy_place *out) {
    uint64_t coll;
    return cpy_proxy_place(st, proxy, out, &coll);
}

/* loc_create(proxy): this PE learns how the collection of `proxy` is
 * placed (before its members are built). */
static PyObject *mod_loc_create(PyObject *module, PyObject *proxy) {
    cpy_state *st = PyModule_GetState(module);
    cpy_place pl;
    uint64_t coll;
    if (cpy_proxy_place(st, proxy, &pl, &coll) < 0)
        return NULL;
    cpy_coll *c = get(st, coll);
    if (!c)
        return NULL;
    c->place = pl;
    c->placed = 1;
    Py_RETURN_NONE;
}

/* Deliver, in arrival order, what arrived for coll before its registration. */
static void release_early(cpy_state *st, cpy_coll *c) {
    /* Delivering may queue more early messages of other collections, and
     * run Python code that looks this one up: take the list first. */
    cp_msg **early = c->early;
    int n = c->nearly;
    c->early = NULL;
    c->nearly = c->capearly = 0;
    cp_qd_process(st->ctx, (uint64_t)n);
    PyObject *members = Py_NewRef(c->members);
    for (int i = 0; i < n; i++)
        cpy_deliver(st, early[i], members);
    Py_DECREF(members);
    PyMem_RawFree(early);
}

/* loc_register(coll, members, release=True): members (a dict index ->
 * chare, kept) are coll's on this PE from now on; what arrived early is
 * delivered now, in arrival order, or with release=False at
 * loc_release(coll) (constructors that are coroutines run first). */
static PyObject *mod_loc_register(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *id, *members;
    int release = 1;
    uint64_t coll;
    if (!PyArg_ParseTuple(args, "OO!|p", &id, &PyDict_Type, &members, &release) ||
        coll_arg(id, &coll) < 0)
        return NULL;
    cpy_coll *c = get(st, coll);
    if (!c)
        return NULL;
    if (c->members)
        return PyErr_Format(PyExc_RuntimeError, "collection %llx registered twice on PE %d",
                            (unsigned long long)coll, st->ctx ? cp_my_pe(st->ctx) : 0);
    c->members = Py_NewRef(members);
    if (release)
        release_early(st, c);
    Py_RETURN_NONE;
}

/* The messages held for element key (inserted here) go to it now. */
static PyObject *release_element(cpy_state *st, cpy_coll *c, PyObject *key) {
    if (c->building && PySet_Discard(c->building, key) < 0)
        return NULL;
    PyObject *list = take_held(st, c, key);
    if (!list)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    release_list(st, list, cp_my_pe(st->ctx), c->members);
    Py_DECREF(list);
    Py_RETURN_NONE;
}

static cpy_coll *registered(cpy_state *st, PyObject *id, const char *what) {
    uint64_t coll;
    if (coll_arg(id, &coll) < 0 || cpy_need_runtime(st))
        return NULL;
    cpy_coll *c = find(st, coll);
    if (!c || !c->members)
        PyErr_Format(PyExc_RuntimeError, "%s: collection %llx is not registered", what,
                     (unsigned long long)coll);
    return c && c->members ? c : NULL;
}

/* loc_add(coll, index, chare): a sparse element was built here (its
 * messages wait for loc_release(coll, index)). */
static PyObject *mod_loc_add(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *id, *key, *obj;
    if (!PyArg_ParseTuple(args, "OOO", &id, &key, &obj))
        return NULL;
    cpy_coll *c = registered(st, id, "loc_add");
    if (!c || PyDict_SetItem(c->members, key, obj) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* loc_release(coll[, index]): deliver, in arrival order, what loc_register
 * (or, for index, loc_add) kept back. */
static PyObject *mod_loc_release(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *id, *key = NULL;
    if (!PyArg_ParseTuple(args, "O|O", &id, &key))
        return NULL;
    cpy_coll *c = registered(st, id, "loc_release");
    if (!c)
        return NULL;
    if (key)
        return release_element(st, c, key);
    release_early(st, c);
    Py_RETURN_NONE;
}

/* loc_sent(coll) -> tuple: the insertions this PE sent to each PE. */
static PyObject *mod_loc_sent(PyObject *module, PyObject *id) {
    cpy_state *st = PyModule_GetState(module);
    uint64_t coll;
    if (coll_arg(id, &coll) < 0 || cpy_need_runtime(st))
        return NULL;
    cpy_coll *c = find(st, coll);
    int n = cp_num_pes(st->ctx);
    PyObject *t = PyTuple_New(n);
    for (int i = 0; t && i < n; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(c && c->sent ? c->sent[i] : 0);
        if (!v) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

/* loc_after_routed(coll): call the routed hook once the messages this PE
 * routes to coll (EM_ROUTE) have left: now when there are none, else
 * behind them. */
static PyObject *mod_loc_after_routed(PyObject *module, PyObject *id) {
    cpy_state *st = PyModule_GetState(module);
    uint64_t coll;
    if (coll_arg(id, &coll) < 0 || cpy_need_runtime(st))
        return NULL;
    cpy_coll *c = find(st, coll);
    if (!c || c->nroute == 0)
        return cpy_hook(st, CPY_HOOK_ROUTED, &id, 1);
    PyObject *none = PyTuple_New(0);
    em_hdr h = {.coll = coll, .flags = EM_ROUTE, .method = CPY_M_ROUTED,
                .fut_pe = cp_my_pe(st->ctx)};
    int rc = none ? cpy_send_entry(st, cp_my_pe(st->ctx), &h, NULL, none, NULL) : -1;
    Py_XDECREF(none);
    if (rc < 0)
        return NULL;
    cpy_loc_note_routed(st, coll);
    Py_RETURN_NONE;
}

/* set_readonlies(n): how many readonlies this PE has set or received (the
 * count its insertions carry). */
static PyObject *mod_set_readonlies(PyObject *module, PyObject *n) {
    cpy_state *st = PyModule_GetState(module);
    unsigned long long v = PyLong_AsUnsignedLongLong(n);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    st->readonlies = v;
    Py_RETURN_NONE;
}

/* loc_done(coll): every insertion into the sparse array coll that
 * ckDoneInserting waited for ran here; messages waiting for an element that
 * was never inserted fail, and so will later insertions. */
static PyObject *mod_loc_done(PyObject *module, PyObject *id) {
    cpy_state *st = PyModule_GetState(module);
    uint64_t coll;
    if (coll_arg(id, &coll) < 0 || cpy_need_runtime(st))
        return NULL;
    cpy_coll *c = get(st, coll);
    if (!c)
        return NULL;
    c->done = 1;
    if (!c->held)
        Py_RETURN_NONE;
    PyObject *keys = PyDict_Keys(c->held);
    for (Py_ssize_t i = 0; keys && i < PyList_GET_SIZE(keys); i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        int building = c->building ? PySet_Contains(c->building, key) : 0;
        if (building)
            continue; /* its constructor is running: it will come */
        PyObject *list = take_held(st, c, key);
        for (Py_ssize_t j = 0; list && j < PyList_GET_SIZE(list); j++) {
            PyErr_Format(PyExc_LookupError,
                         "message for element %R of a sparse array, which was never "
                         "inserted (ckDoneInserting was called)",
                         key);
            fail_message(st, PyLong_AsVoidPtr(PyList_GET_ITEM(list, j)),
                         cpy_take_exception(), "delivering a message");
        }
        Py_XDECREF(list);
    }
    Py_XDECREF(keys);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* members(coll): this PE's members of coll (a dict), or None. */
static PyObject *mod_members(PyObject *module, PyObject *id) {
    cpy_state *st = PyModule_GetState(module);
    uint64_t coll;
    if (coll_arg(id, &coll) < 0)
        return NULL;
    PyObject *m = cpy_loc_members(st, coll);
    return Py_NewRef(m ? m : Py_None);
}

PyMethodDef cpy_location_methods[] = {
    {"loc_create", mod_loc_create, METH_O, "loc_create(proxy): how coll is placed"},
    {"loc_register", mod_loc_register, METH_VARARGS,
     "loc_register(coll, members, release=True): the members of coll on this PE"},
    {"loc_add", mod_loc_add, METH_VARARGS, "loc_add(coll, index, chare): inserted here"},
    {"loc_release", mod_loc_release, METH_VARARGS,
     "loc_release(coll[, index]): deliver what was kept back"},
    {"loc_sent", mod_loc_sent, METH_O, "loc_sent(coll): insertions sent to each PE"},
    {"loc_after_routed", mod_loc_after_routed, METH_O,
     "loc_after_routed(coll): the routed hook, once this PE's routed messages left"},
    {"set_readonlies", mod_set_readonlies, METH_O, NULL},
    {"loc_done", mod_loc_done, METH_O, "loc_done(coll): no more insertions"},
    {"members", mod_members, METH_O, "members(coll): dict of this PE's members or None"},
    {"dense_layout", mod_dense_layout, METH_O,
     "dense_layout(proxy) -> (this PE's indices, PEs with elements)"},
    {NULL, NULL, 0, NULL},
};
