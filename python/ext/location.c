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
    PyObject *locs;     /* dict key -> location entry (see below), NULL: none */
    PyObject *held;     /* dict key -> list of messages (ints) waiting for the
                           element's insertion (NULL: none) */
    PyObject *building; /* set of keys whose constructor is running here */
    PyObject *departed; /* dict key -> PE it left this PE for (NULL: none) */
    PyObject *born;     /* dict key -> bool: sparse elements inserted here, away
                           from their home; True once they left: this PE then
                           copies each broadcast it gets to them (NULL: none) */
    Py_ssize_t nborn_left; /* the True ones of `born` */
    PyObject *order;    /* dict key -> [number it takes next, {number: message}] */
    PyObject *viahome;  /* set of keys here that arrived by migration: they take
                           broadcasts from their home, numbered (NULL: none) */
    PyObject *cache;    /* dict key -> [pe, mig, next]: where this PE heard an
                           element that moved is (as of its mig-th move), and
                           the number of this PE's next direct call to it; never
                           at the element's home (NULL: none) */
    uint64_t remote_sends; /* calls this PE sent through the home of elements
                              not here (or that followed an element away): while
                              0, an element that migrated here takes this PE's
                              calls directly at once (no switch: mod_loc_arrived) */
    int done;           /* sparse: every insertion ckDoneInserting waited for ran here */
    int moved;          /* this PE has location entries for it (migration) */
    int nroute;         /* EM_ROUTE messages of this PE not routed yet */
    uint64_t *sent;     /* sparse: insertions this PE sent to each PE (npes), or NULL */
} cpy_coll;

struct cpy_colls {
    cpy_coll **slot; /* cap entries, NULL when free */
    size_t cap, n;
    cpy_coll *last;  /* the collection of the last lookup */
};

/* The location message: element idx of coll lives on pe, as of its mig-th
 * migration; LOC_AT tells the element's home (after an insertion elsewhere
 * or an arrival), LOC_CACHE a sender (its location cache). */
enum { LOC_AT = 0, LOC_CACHE = 1 };

typedef struct loc_msg {
    uint64_t coll;
    int32_t pe, ndims;
    int32_t idx[CPY_MAXDIMS];
    uint32_t type;
    int32_t home;      /* LOC_CACHE: the element's home PE (the sender may not
                          know the collection's placement: a single chare) */
    int32_t born;      /* LOC_AT: the PE that copies broadcasts to it (a sparse
                          element inserted away from its home), or -1 */
    uint64_t mig;
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
    Py_CLEAR(c->cache);
    Py_CLEAR(c->building);
    Py_CLEAR(c->departed);
    Py_CLEAR(c->born);
    c->nborn_left = 0;
    Py_CLEAR(c->viahome);
    if (c->order && st->ctx) {
        PyObject *k, *o;
        Py_ssize_t pos = 0;
        while (PyDict_Next(c->order, &pos, &k, &o)) {
            PyObject *n, *m, *src, *s;
            Py_ssize_t p2 = 0, p3 = 0;
            while (PyDict_Next(PyList_GET_ITEM(o, 1), &p2, &n, &m))
                cpy_discard(st, PyLong_AsVoidPtr(m));
            while (PyDict_Next(PyList_GET_ITEM(o, 2), &p3, &src, &s))
                for (p2 = 0; PyDict_Next(PyList_GET_ITEM(s, 2), &p2, &n, &m);)
                    cpy_discard(st, PyLong_AsVoidPtr(m));
        }
    }
    Py_CLEAR(c->order);
    if (c->members)
        PyDict_Clear(c->members); /* chares may refer to their proxies */
    Py_CLEAR(c->members);
    cpy_sect_forget(st);
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
        Py_VISIT(c->departed);
        Py_VISIT(c->born);
        Py_VISIT(c->order);
        Py_VISIT(c->viahome);
        Py_VISIT(c->cache);
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
    if (pl->kind == CPY_CHARE) /* made on a job with more PEs (a restart): wrapped */
        return pl->chare_pe < npes ? pl->chare_pe : pl->chare_pe % npes;
    if (pl->kind == CPY_GROUP)
        return idx[0];
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

/* loc_home(proxy, index) -> the home PE of an element of an array (index a
 * tuple of ints), by its ArrayMap, the block map or the sparse hash. */
static PyObject *mod_loc_home(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *proxy, *index;
    cpy_place pl;
    if (!PyArg_ParseTuple(args, "OO!", &proxy, &PyTuple_Type, &index) ||
        cpy_need_runtime(st) || place_of(st, proxy, &pl) < 0)
        return NULL;
    int32_t idx[CPY_MAXDIMS] = {0};
    if (PyTuple_GET_SIZE(index) != pl.ndims)
        return PyErr_Format(PyExc_ValueError, "index %R has %zd dimensions, the array %d",
                            index, PyTuple_GET_SIZE(index), pl.ndims);
    for (int i = 0; i < pl.ndims; i++) {
        idx[i] = (int32_t)PyLong_AsLong(PyTuple_GET_ITEM(index, i));
        if (PyErr_Occurred())
            return NULL;
    }
    int pe = cpy_loc_home(st, &pl, idx);
    if (pe == CPY_HOME_UNKNOWN)
        return PyErr_Format(PyExc_RuntimeError, "the array's ArrayMap group has no member on "
                                                "this PE yet");
    if (pe < 0)
        return NULL;
    return PyLong_FromLong(pe);
}

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

/* Send a location message about element idx of coll to PE `to`. */
static void send_loc(cpy_state *st, int to, uint32_t type, uint64_t coll, int ndims,
                     const int32_t *idx, int pe, uint64_t mig, int home, int born) {
    cp_msg *m = cp_msg_alloc(st->ctx, sizeof(loc_msg));
    if (!m) {
        PyErr_NoMemory();
        cpy_report_error(st, "telling where an element lives");
        return;
    }
    loc_msg *l = cp_msg_data(m);
    memset(l, 0, sizeof *l);
    l->coll = coll;
    l->pe = pe;
    l->ndims = ndims;
    memcpy(l->idx, idx, sizeof l->idx);
    l->type = type;
    l->home = home;
    l->born = born;
    l->mig = mig;
    if (cpy_send_or_bcast(st, to, st->h_loc, m) < 0)
        cpy_report_error(st, "telling where an element lives");
}

static void send_location(cpy_state *st, uint64_t coll, int ndims, const int32_t *idx,
                          int at, int home) {
    send_loc(st, home, LOC_AT, coll, ndims, idx, at, 0, home, at); /* born there */
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

static int home_of_key(cpy_state *st, cpy_coll *c, PyObject *key);

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
    /* Away from its home, this PE copies it the broadcasts that come once
     * it moved (see "broadcasts" below). */
    int home = home_of_key(st, c, key);
    if ((home < 0 && PyErr_Occurred()) ||
        (home >= 0 && home != cp_my_pe(st->ctx) &&
         ((!c->born && !(c->born = PyDict_New())) ||
          PyDict_SetItem(c->born, key, Py_False) < 0))) {
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

/* A migrating chare's state arrived: the arrive hook rebuilds it (and calls
 * loc_arrived). */
static void run_arrive(cpy_state *st, cpy_coll *c, PyObject *key, cp_msg *msg) {
    em_hdr *h = cp_msg_data(msg);
    uint64_t mig = h->fut_id;
    int src = h->aux;
    unsigned long long size = msg->size; /* the state's bytes (+LBDebug) */
    PyObject *args = NULL, *kwargs = NULL;
    if (cpy_take_msg_args(st, msg, &args, &kwargs) < 0)
        goto error;
    if (PyTuple_GET_SIZE(args) != 2) {
        PyErr_SetString(PyExc_RuntimeError, "corrupt migration message");
        Py_DECREF(args);
        Py_XDECREF(kwargs);
        goto error;
    }
    PyObject *id = PyLong_FromUnsignedLongLong(c->id);
    PyObject *m = PyLong_FromUnsignedLongLong(mig);
    PyObject *from = PyLong_FromLong(src);
    PyObject *nbytes = PyLong_FromUnsignedLongLong(size);
    PyObject *hargs[7] = {id,  key,  PyTuple_GET_ITEM(args, 0), PyTuple_GET_ITEM(args, 1),
                          m,   from, nbytes};
    PyObject *r = id && m && from && nbytes ? cpy_hook(st, CPY_HOOK_ARRIVE, hargs, 7) : NULL;
    Py_XDECREF(id);
    Py_XDECREF(m);
    Py_XDECREF(from);
    Py_XDECREF(nbytes);
    Py_DECREF(args);
    Py_XDECREF(kwargs);
    if (!r)
        goto error;
    Py_DECREF(r);
    return;
error:
    cpy_report_error(st, "rebuilding a chare that migrated here");
}

/* ---- elements that moved: forwarding, and the order of calls --------------
 *
 * Once an element has moved (or was inserted away from its home), every
 * call to it goes to its home first (from its own PE too), and the home
 * numbers the calls in the order they reach it (1, 2, ...) and sends them
 * on to where the element is. The element takes them in that order: one
 * that comes early waits, one that comes twice is dropped. Calls from one
 * PE reach the home in the order made (one FIFO channel), so they reach the
 * element in that order too, whatever paths they took after the home:
 * direct, or through the PEs it left, each of which forwards what comes for
 * it to where it went (c->departed). No transport needs to order messages
 * from different PEs (MPI does not), and no PE ever waits for another to
 * change a path.
 *
 * At the home, c->locs maps a key to [pe, mig, next, told, born]: where the
 * element is as of its mig-th move, the number the next call gets, the
 * set of PEs told where it is (or None), and the PE that copies broadcasts
 * to it once it moved (-1: the home; see "broadcasts" below). Where the
 * element is, c->order maps its key to [expected, {number: message},
 * senders, mig, nearly, born]: the number it takes next, the calls that came
 * early, the state of each sender's direct calls (below), the element's
 * moves so far, how many direct calls wait in senders, and born again. A call made before the element first moved
 * has no number and is taken at once (the home numbers what reaches it from
 * the move on; what was queued for the element where it was follows it in
 * order, numbered at the home).
 *
 * Direct calls: senders' location caches. The home that forwards a call
 * from PE S tells S where the element is (LOC_CACHE, once per S). S keeps
 * it in c->cache and from then on sends its calls to the element straight
 * there, numbered 1, 2, ... among S's direct calls to it (in the message's
 * tag: cpy_direct_tag), none of them through the home. S's calls that took
 * the home's path before may still be on their way, so S first sends the
 * element a switch (CPY_M_SWITCH) through the home: numbered there behind
 * them, it reaches the element after all of them, and the element takes
 * S's direct calls, in S's numbers, only once the switch came (senders: S
 * -> [expected, switched, {number: message}, told]). A direct call that
 * finds the element gone is forwarded like any call (by the PE it left);
 * where it arrives forwarded, the element's PE tells S its new place (once
 * per move: told). Each sender's state moves with the element, and its
 * early direct calls follow the state. So calls from one PE stay in the
 * order made on every path: through the home, in the home's numbers, then
 * direct, in the sender's, the switch between the two. A PE that never
 * sent calls through the home of the collection's elements (remote_sends
 * 0) takes an element that migrated to it as switched at once.
 */

static PyObject *entry_of(cpy_coll *c, PyObject *key) {
    return c->locs ? PyDict_GetItemWithError(c->locs, key) : NULL; /* borrowed */
}

static int entry_pe(PyObject *e) { return (int)PyLong_AsLong(PyList_GET_ITEM(e, 0)); }
static uint64_t entry_mig(PyObject *e) {
    return PyLong_AsUnsignedLongLong(PyList_GET_ITEM(e, 1));
}

static int entry_field(PyObject *e, Py_ssize_t i, PyObject *v) {
    if (!v)
        return -1;
    PyList_SetItem(e, i, v); /* steals v */
    return 0;
}

/* The PE that copies broadcasts to the element of home entry e (-1: the
 * home); learnt from any message that says (born >= 0). */
static int entry_born(PyObject *e) { return (int)PyLong_AsLong(PyList_GET_ITEM(e, 4)); }
static int entry_set_born(PyObject *e, int born) {
    return born < 0 || entry_born(e) == born ? 0 : entry_field(e, 4, PyLong_FromLong(born));
}

static void mark_moved(cpy_state *st, cpy_coll *c) {
    if (!c->moved) {
        c->moved = 1;
        st->nmoved++;
    }
}

/* The home's entry for key, made (pe, mig, next number 1) when missing. */
static PyObject *entry_get(cpy_state *st, cpy_coll *c, PyObject *key, int pe, uint64_t mig) {
    PyObject *e = entry_of(c, key);
    if (e || PyErr_Occurred())
        return e;
    if (!c->locs && !(c->locs = PyDict_New()))
        return NULL;
    e = Py_BuildValue("[iKKOi]", pe, (unsigned long long)mig, 1ull, Py_None, -1);
    int rc = e ? PyDict_SetItem(c->locs, key, e) : -1;
    Py_XDECREF(e);
    mark_moved(st, c);
    return rc < 0 ? NULL : e; /* borrowed from the dict */
}

/* The number after n (32 bits, 0 skipped: it means "none"). */
static uint32_t seq_after(uint64_t n) {
    uint32_t v = (uint32_t)(n + 1);
    return v ? v : 1;
}

/* Give msg the next number of the home's entry e, unless it has one (the
 * runtime's own messages, which use the field as aux, are never numbered). */
static void number(PyObject *e, cp_msg *msg) {
    em_hdr *h = cp_msg_data(msg);
    if (h->seq || h->method >= CPY_M_SPECIAL)
        return;
    uint64_t next = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(e, 2));
    h->seq = (uint32_t)next;
    entry_field(e, 2, PyLong_FromUnsignedLong(seq_after(next)));
}

/* A key's index and dimensions come from the key itself (an int for a
 * group member or single chare, a tuple for an array element): a PE may
 * hold keys of a collection whose placement has not reached it yet. */
static int key_index(cpy_coll *c, PyObject *key, int32_t *idx) {
    (void)c;
    memset(idx, 0, CPY_MAXDIMS * sizeof *idx);
    if (PyLong_Check(key)) {
        idx[0] = (int32_t)PyLong_AsLong(key);
        return PyErr_Occurred() ? -1 : 0;
    }
    for (Py_ssize_t i = 0; i < CPY_MAXDIMS && i < PyTuple_GET_SIZE(key); i++)
        idx[i] = (int32_t)PyLong_AsLong(PyTuple_GET_ITEM(key, i));
    return PyErr_Occurred() ? -1 : 0;
}

static int key_ndims(cpy_coll *c, PyObject *key) {
    (void)c;
    return PyLong_Check(key) ? 0 : (int)PyTuple_GET_SIZE(key);
}

static int home_of_key(cpy_state *st, cpy_coll *c, PyObject *key) {
    int32_t idx[CPY_MAXDIMS];
    if (!c->placed || key_index(c, key, idx) < 0)
        return -1;
    return cpy_loc_home(st, &c->place, idx);
}

/* The PE an element left this PE for (or -1). */
static int departed_to(cpy_coll *c, PyObject *key) {
    PyObject *pe = c->departed ? PyDict_GetItemWithError(c->departed, key) : NULL;
    return pe ? (int)PyLong_AsLong(pe) : -1;
}

static unsigned long long item_u64(PyObject *list, Py_ssize_t i) {
    return PyLong_AsUnsignedLongLong(PyList_GET_ITEM(list, i));
}

static PyObject *key_from(int ndims, const int32_t *idx) {
    em_hdr h = {.ndims = (uint16_t)ndims};
    memcpy(h.idx, idx, sizeof h.idx);
    return cpy_loc_key(&h);
}

/* The element's order entry here (borrowed), made [1, {}, {}, 0, 0, -1]
 * when missing. */
static PyObject *order_entry(cpy_coll *c, PyObject *key) {
    PyObject *o = c->order ? PyDict_GetItemWithError(c->order, key) : NULL;
    if (o || PyErr_Occurred())
        return o;
    if (!c->order && !(c->order = PyDict_New()))
        return NULL;
    o = Py_BuildValue("[KNNKKi]", 1ull, PyDict_New(), PyDict_New(), 0ull, 0ull, -1);
    int rc = o ? PyDict_SetItem(c->order, key, o) : -1;
    Py_XDECREF(o);
    return rc < 0 ? NULL : o;
}

/* The state of PE src's direct calls in order entry o (borrowed), made
 * [1, 0, {}, -1] (not switched, never told) when missing. */
static PyObject *sender_entry(PyObject *o, int src) {
    PyObject *k = PyLong_FromLong(src);
    PyObject *s = k ? PyDict_GetItemWithError(PyList_GET_ITEM(o, 2), k) : NULL;
    if (!s && k && !PyErr_Occurred()) {
        s = Py_BuildValue("[KiNL]", 1ull, 0, PyDict_New(), -1ll);
        if (s && PyDict_SetItem(PyList_GET_ITEM(o, 2), k, s) < 0)
            Py_CLEAR(s);
        Py_XDECREF(s); /* the dict holds it */
    }
    Py_XDECREF(k);
    return s;
}

/* Tell the home's entry e's sender `src` where the element is, once. */
static void tell_sender(cpy_state *st, cpy_coll *c, PyObject *key, PyObject *e, int src) {
    int32_t idx[CPY_MAXDIMS];
    PyObject *told = PyList_GET_ITEM(e, 3);
    if (told == Py_None) {
        if (entry_field(e, 3, PySet_New(NULL)) < 0)
            goto fail;
        told = PyList_GET_ITEM(e, 3);
    }
    PyObject *k = PyLong_FromLong(src);
    int known = k ? PySet_Contains(told, k) : -1;
    if (known == 0)
        known = PySet_Add(told, k);
    Py_XDECREF(k);
    if (known != 0) { /* told already (1), or an error */
        if (known < 0)
            goto fail;
        return;
    }
    if (key_index(c, key, idx) < 0)
        goto fail;
    send_loc(st, src, LOC_CACHE, c->id, key_ndims(c, key), idx, entry_pe(e), entry_mig(e),
             cp_my_pe(st->ctx), -1);
    return;
fail:
    cpy_report_error(st, "telling a sender where an element is");
}

/* A message for key, which is not here: numbered and sent on by the home,
 * forwarded where it went by a PE it left, sent to the home by another PE,
 * held until the element exists, or failed. */
static void send_on(cpy_state *st, cpy_coll *c, PyObject *key, cp_msg *msg) {
    int me = cp_my_pe(st->ctx);
    int home = home_of_key(st, c, key);
    if (home < 0) {
        fail_message(st, msg, cpy_take_exception(), "routing a message");
        return;
    }
    int to = -1, left = 0; /* left: the element left this PE for `to` */
    if (home == me) {
        PyObject *e = entry_of(c, key);
        if (e && !msg->tag) { /* a direct call keeps its sender's number */
            em_hdr *h = cp_msg_data(msg);
            int src = (int)msg->src_pe;
            number(e, msg);
            to = entry_pe(e);
            /* The sender of a call (not the runtime's, not a copy made here)
             * learns where the element is and calls it directly from now on. */
            if (src != me && to != me && h->method < CPY_M_SWITCH && !(h->flags & EM_BCOPY))
                tell_sender(st, c, key, e, src);
        } else if (e) {
            to = entry_pe(e);
        }
    } else {
        to = departed_to(c, key);
        left = to >= 0;
        if (to < 0 && !PyErr_Occurred() && msg->tag) {
            /* A direct call for an element that is not here and never left
             * here: it is on its way (its home sent it here before telling
             * the sender, and the call overtook it); it waits for it. */
            if (hold(st, c, key, msg) < 0)
                fail_message(st, msg, cpy_take_exception(), "holding a message");
            return;
        }
        if (to < 0 && !PyErr_Occurred() && (c->moved || c->locs))
            to = home; /* sent here by an old guess: the home knows */
    }
    if (PyErr_Occurred()) {
        fail_message(st, msg, cpy_take_exception(), "routing a message");
        return;
    }
    int building = c->building ? PySet_Contains(c->building, key) : 0;
    int inserting = c->place.sparse && (!c->done || building > 0);
    /* While insertions may come, a message for an element this PE never
     * had waits here for it (its insertion may be on its way here), but
     * one for an element that left goes where it went, its home too. */
    if (to >= 0 && to != me && (left || !(inserting && home != me && to == home))) {
        if (cpy_forward(st, msg, to) < 0)
            fail_message(st, msg, cpy_take_exception(), "forwarding a message");
        return;
    }
    if (building >= 0 && (inserting || (c->moved && home == me))) {
        /* At its home (on its way), or where its insertion goes. */
        if (hold(st, c, key, msg) < 0)
            fail_message(st, msg, cpy_take_exception(), "holding a message");
        return;
    }
    if (building >= 0) {
        PyObject *id = PyLong_FromUnsignedLongLong(c->id);
        if (c->place.sparse)
            PyErr_Format(PyExc_LookupError,
                         "message for element %R of a sparse array, which was never "
                         "inserted (ckDoneInserting was called)",
                         key);
        else
            PyErr_Format(PyExc_LookupError,
                         "message for member %R of collection %S, which is not on PE %d",
                         key, id, me);
        Py_XDECREF(id);
    }
    fail_message(st, msg, cpy_take_exception(), "delivering a message");
}

static void run_arrive(cpy_state *st, cpy_coll *c, PyObject *key, cp_msg *msg);

void cpy_loc_missing(cpy_state *st, uint64_t coll, PyObject *key, cp_msg *msg) {
    em_hdr *h = cp_msg_data(msg);
    cpy_coll *c = h->method == CPY_M_ARRIVE ? get(st, coll) : find(st, coll);
    if (!c) { /* cannot happen: the caller found the members */
        PyErr_SetString(PyExc_SystemError, "location: no record of a registered collection");
        fail_message(st, msg, cpy_take_exception(), "routing a message");
        return;
    }
    if (h->method == CPY_M_INSERT) {
        run_insert(st, c, key, msg);
        return;
    }
    if (h->method == CPY_M_ARRIVE) {
        cpy_trace_instant(st, "migration in", key, (double)h->aux);
        run_arrive(st, c, key, msg);
        return;
    }
    send_on(st, c, key, msg);
}

/* The held messages of key go on now that this PE knows where it is. */
static void release_held(cpy_state *st, cpy_coll *c, PyObject *key) {
    PyObject *list = take_held(st, c, key);
    for (Py_ssize_t i = 0; list && i < PyList_GET_SIZE(list); i++) {
        cp_msg *m = PyLong_AsVoidPtr(PyList_GET_ITEM(list, i));
        PyObject *obj = c->members ? PyDict_GetItemWithError(c->members, key) : NULL;
        if (obj)
            cpy_deliver(st, m, c->members);
        else
            send_on(st, c, key, m);
    }
    Py_XDECREF(list);
    if (PyErr_Occurred())
        cpy_report_error(st, "sending held messages on");
}

static int cached_pe(cpy_coll *c, int ndims, const int32_t *idx, PyObject **direct);
/* What cache_news does without an entry for the element: nothing
 * (CACHE_UPDATE), make one and send the switch (CACHE_SWITCH), or make one
 * that needs no switch (CACHE_SWITCHED: none of this PE's calls can be on
 * the way through the home). */
enum { CACHE_UPDATE, CACHE_SWITCH, CACHE_SWITCHED };
static int cache_news(cpy_state *st, cpy_coll *c, PyObject *key, int pe, uint64_t mig,
                      int how, int home);

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
    PyObject *direct = NULL;
    if (h->method == CPY_M_INSERT) {
        to = h->aux > 0 ? h->aux - 1 : home;
        count_insert(st, h->coll, to);
        if (to != home)
            send_location(st, h->coll, h->ndims, h->idx, to, home);
    } else if (home != me) {
        int at = cached_pe(c, h->ndims, h->idx, &direct);
        if (at >= 0)
            to = at;
        else if (PyErr_Occurred()) {
            fail_message(st, msg, cpy_take_exception(), "routing a message");
            return;
        }
    }
    if (to == me) {
        if (direct)
            msg->tag = cpy_loc_direct_take(st, direct);
        cpy_deliver(st, msg, members);
        return;
    }
    if (cpy_forward_direct(st, msg, to, direct) < 0)
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

/* News at the home of where key is (after an insertion elsewhere, or an
 * arrival): it forwards there from now on, numbering. */
static int on_news(cpy_state *st, cpy_coll *c, PyObject *key, int pe, uint64_t mig,
                   int born) {
    PyObject *e = entry_get(st, c, key, pe, mig);
    if (!e || entry_set_born(e, born) < 0)
        return -1;
    if (mig >= entry_mig(e) &&
        (entry_field(e, 0, PyLong_FromLong(pe)) < 0 ||
         entry_field(e, 1, PyLong_FromUnsignedLongLong(mig)) < 0))
        return -1;
    release_held(st, c, key);
    return 0;
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
    int rc = !key ? -1
             : l.type == LOC_CACHE ? cache_news(st, c, key, l.pe, l.mig, CACHE_SWITCH, l.home)
                                   : on_news(st, c, key, l.pe, l.mig, l.born);
    Py_XDECREF(key);
    if (rc < 0)
        cpy_report_error(st, "recording where an element lives");
}

/* ---- broadcasts to elements that moved --------------------------------
 *
 * A broadcast reaches every PE once, but an element in flight is on none,
 * and one that left a PE after the broadcast passed there may reach a PE
 * before it: a broadcast could miss it or reach it twice. So an element
 * that migrated takes broadcasts from its home only: the PE it lives on
 * skips it (c->viahome), and the home sends it a copy of each broadcast it
 * gets after the element first left, numbered among its calls like any
 * call (EM_BCOPY: answered as a member of the broadcast). The first move
 * leaves from the home (elements are made there), so the switch from one
 * path to the other happens at one PE, in one handler: each broadcast is
 * delivered exactly once, and in order with the calls the home forwards.
 *
 * A sparse element inserted on another PE than its home, X, makes its first
 * move from X: X makes the copies for it instead (c->born), each sent
 * through the home, which numbers it like any call and forwards it; the
 * home makes none (its entry's born is X; every location message after the
 * first move says so, whichever reaches the home first). The switch happens
 * at X, in one handler, and the copies of X come in X's order through the
 * home's numbers, even once the element is back on X.
 */

PyObject *cpy_loc_viahome(cpy_state *st, uint64_t coll) {
    cpy_coll *c = find(st, coll);
    return c && c->viahome && PySet_GET_SIZE(c->viahome) ? c->viahome : NULL;
}

long cpy_loc_bcast_copies(cpy_state *st, cp_msg *msg, PyObject *members) {
    const em_hdr *h = cp_msg_data(msg);
    cpy_coll *c = find(st, h->coll);
    int locs = c && c->locs && PyDict_GET_SIZE(c->locs);
    int born = c && c->born && c->nborn_left;
    if (!locs && !born)
        return 0;
    /* The keys first: delivering a copy here may change c->locs. Elements
     * born here, away from their home (after them in the list), take their
     * copies through the home. */
    PyObject *keys = PyList_New(0), *k, *e;
    Py_ssize_t pos = 0, nhome = 0;
    while (locs && keys && PyDict_Next(c->locs, &pos, &k, &e))
        if (entry_mig(e) >= 1 && entry_born(e) < 0 && PyList_Append(keys, k) < 0)
            Py_CLEAR(keys);
    nhome = keys ? PyList_GET_SIZE(keys) : 0;
    for (pos = 0; born && keys && PyDict_Next(c->born, &pos, &k, &e);)
        if (e == Py_True && PyList_Append(keys, k) < 0)
            Py_CLEAR(keys);
    if (!keys)
        return -1;
    long n = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        cp_msg *m = cp_msg_alloc(st->ctx, msg->size);
        if (!m) {
            PyErr_NoMemory();
            Py_DECREF(keys);
            return -1;
        }
        memcpy(cp_msg_data(m), cp_msg_data(msg), msg->size);
        em_hdr *mh = cp_msg_data(m);
        mh->flags = (mh->flags & ~(uint32_t)EM_BCAST) | EM_BCOPY;
        mh->ndims = (uint16_t)key_ndims(c, key);
        mh->seq = 0;
        if (key_index(c, key, mh->idx) < 0) {
            cp_msg_free(st->ctx, m);
            Py_DECREF(keys);
            return -1;
        }
        n++;
        if (i >= nhome) { /* born here: through its home */
            int home = home_of_key(st, c, key);
            if (home < 0 || cpy_forward(st, m, home) < 0)
                fail_message(st, m, cpy_take_exception(), "copying a broadcast");
            continue;
        }
        PyObject *obj = PyDict_GetItemWithError(members, key);
        if (obj)
            cpy_deliver(st, m, members); /* here (it came back): numbered in order */
        else if (!PyErr_Occurred())
            send_on(st, c, key, m);
        else
            fail_message(st, m, cpy_take_exception(), "copying a broadcast");
    }
    Py_DECREF(keys);
    return n;
}

/* Keep msg (early) in the dict of early calls `early` under number n. */
static int keep_early(cpy_state *st, PyObject *early, uint32_t n, cp_msg *msg) {
    PyObject *k = PyLong_FromUnsignedLong(n);
    PyObject *ptr = PyLong_FromVoidPtr(msg);
    int rc = k && ptr ? PyDict_SetItem(early, k, ptr) : -1;
    Py_XDECREF(k);
    Py_XDECREF(ptr);
    if (rc == 0)
        cp_qd_create(st->ctx, 1); /* early: the job is not quiescent meanwhile */
    return rc;
}

/* A direct call from PE src (its n-th) to key, here: taken now (0) when
 * src switched and it is next, else kept or dropped (1). */
static int direct_in_order(cpy_state *st, cpy_coll *c, cp_msg *msg, PyObject *key) {
    int src = cpy_direct_src(msg->tag);
    uint32_t n = cpy_direct_seq(msg->tag);
    mark_moved(st, c);
    PyObject *o = order_entry(c, key);
    PyObject *s = o ? sender_entry(o, src) : NULL;
    if (!s)
        goto fail;
    /* It came the long way (forwarded from where the element was): the
     * sender learns where it is now, once per move. */
    long long mig = (long long)item_u64(o, 3);
    if ((int)msg->src_pe != src && PyLong_AsLongLong(PyList_GET_ITEM(s, 3)) < mig) {
        int32_t idx[CPY_MAXDIMS];
        if (entry_field(s, 3, PyLong_FromLongLong(mig)) < 0 || key_index(c, key, idx) < 0)
            goto fail;
        send_loc(st, src, LOC_CACHE, c->id, key_ndims(c, key), idx, cp_my_pe(st->ctx),
                 (uint64_t)mig, home_of_key(st, c, key), -1);
    }
    uint32_t expected = (uint32_t)item_u64(s, 0);
    long switched = PyLong_AsLong(PyList_GET_ITEM(s, 1));
    if (switched && n == expected) {
        if (entry_field(s, 0, PyLong_FromUnsignedLong(seq_after(expected))) < 0)
            goto fail;
        return 0;
    }
    if (switched && (int32_t)(n - expected) < 0) { /* came twice */
        cpy_discard(st, msg);
        return 1;
    }
    if (keep_early(st, PyList_GET_ITEM(s, 2), n, msg) < 0 ||
        entry_field(o, 4, PyLong_FromUnsignedLongLong(item_u64(o, 4) + 1)) < 0)
        goto fail;
    return 1;
fail:
    fail_message(st, msg, cpy_take_exception(), "ordering a direct call");
    return 1;
}

int cpy_loc_in_order(cpy_state *st, cp_msg *msg, PyObject *key) {
    em_hdr *h = cp_msg_data(msg);
    int me = cp_my_pe(st->ctx);
    cpy_coll *c = find(st, h->coll);
    if (c && msg->tag && h->method < CPY_M_SPECIAL)
        return direct_in_order(st, c, msg, key);
    if (!c || h->method >= CPY_M_SPECIAL || (!c->moved && !h->seq))
        return 0;
    if (!h->seq) {
        /* Not numbered: at the home, once the element moved, it gets its
         * number here; else it was made before any move and goes now. */
        PyObject *e = home_of_key(st, c, key) == me ? entry_of(c, key) : NULL;
        if (!e) {
            PyErr_Clear();
            return 0;
        }
        number(e, msg);
    }
    PyObject *o = order_entry(c, key);
    if (!o)
        goto fail;
    uint32_t expected = (uint32_t)PyLong_AsUnsignedLongLong(PyList_GET_ITEM(o, 0));
    if (h->seq == expected) {
        entry_field(o, 0, PyLong_FromUnsignedLong(seq_after(expected)));
        return 0;
    }
    /* Serial-number order: fewer than 2^31 calls are ever in flight. */
    if ((int32_t)(h->seq - expected) < 0) { /* came twice */
        cpy_discard(st, msg);
        return 1;
    }
    if (keep_early(st, PyList_GET_ITEM(o, 1), h->seq, msg) < 0)
        goto fail;
    return 1;
fail:
    fail_message(st, msg, cpy_take_exception(), "ordering a message");
    return 1;
}

cp_msg *cpy_loc_next_in_order(cpy_state *st, uint64_t coll, PyObject *key) {
    cpy_coll *c = find(st, coll);
    PyObject *o = c && c->order ? PyDict_GetItemWithError(c->order, key) : NULL;
    if (!o) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *n = PyList_GET_ITEM(o, 0); /* the number it takes next */
    PyObject *early = PyList_GET_ITEM(o, 1);
    PyObject *ptr = PyDict_GetItemWithError(early, n);
    if (!ptr && !PyErr_Occurred() && item_u64(o, 4) > 0) {
        /* A sender's direct call that is next now (after a switch, or
         * after its predecessor). */
        PyObject *src, *s;
        Py_ssize_t pos = 0;
        while (!ptr && PyDict_Next(PyList_GET_ITEM(o, 2), &pos, &src, &s))
            if (PyLong_AsLong(PyList_GET_ITEM(s, 1)) &&
                (ptr = PyDict_GetItemWithError(PyList_GET_ITEM(s, 2), PyList_GET_ITEM(s, 0)))) {
                early = PyList_GET_ITEM(s, 2);
                n = PyList_GET_ITEM(s, 0);
                entry_field(o, 4, PyLong_FromUnsignedLongLong(item_u64(o, 4) - 1));
            }
    }
    if (!ptr) {
        PyErr_Clear();
        return NULL;
    }
    cp_msg *m = PyLong_AsVoidPtr(ptr);
    PyDict_DelItem(early, n);
    cp_qd_process(st->ctx, 1);
    return m;
}

void cpy_loc_switch(cpy_state *st, cp_msg *msg, PyObject *key) {
    em_hdr *h = cp_msg_data(msg);
    int src = h->fut_pe;
    cpy_coll *c = find(st, h->coll);
    cpy_discard(st, msg);
    PyObject *o = c ? order_entry(c, key) : NULL;
    PyObject *s = o ? sender_entry(o, src) : NULL;
    if (!s || entry_field(s, 1, PyLong_FromLong(1)) < 0)
        cpy_report_error(st, "switching a sender to direct calls");
    else if (c)
        mark_moved(st, c);
}

/* Where this PE's cache says element key of c is, with the tag of the
 * direct call made now; -1 when it has no entry (or with an exception). */
static int cached_pe(cpy_coll *c, int ndims, const int32_t *idx, PyObject **direct) {
    if (!c->cache || !PyDict_GET_SIZE(c->cache))
        return -1;
    PyObject *key = key_from(ndims, idx);
    PyObject *e = key ? PyDict_GetItemWithError(c->cache, key) : NULL;
    Py_XDECREF(key);
    if (!e)
        return -1;
    *direct = e; /* its number is taken when the call is encoded */
    return entry_pe(e);
}

uint64_t cpy_loc_direct_take(cpy_state *st, PyObject *e) {
    uint64_t n = item_u64(e, 2);
    PyObject *next = PyLong_FromUnsignedLong(seq_after(n));
    if (next)
        PyList_SetItem(e, 2, next);
    else /* no memory for a small int: the job cannot go on in order */
        cp_abort(st->ctx, "out of memory numbering a direct call");
    return cpy_direct_tag(cp_my_pe(st->ctx), (uint32_t)n);
}

/* This PE's cache learns that element key, whose home is PE `home`, is on
 * pe as of its mig-th move (LOC_CACHE, or its own arrival or departure);
 * `how` says what happens when this PE has no entry for it yet. */
static int cache_news(cpy_state *st, cpy_coll *c, PyObject *key, int pe, uint64_t mig,
                      int how, int home) {
    if (home < 0 || home == cp_my_pe(st->ctx)) /* the home keeps no cache */
        return 0;
    PyObject *e = c->cache ? PyDict_GetItemWithError(c->cache, key) : NULL;
    if (e) {
        if (mig > entry_mig(e) && (entry_field(e, 0, PyLong_FromLong(pe)) < 0 ||
                                   entry_field(e, 1, PyLong_FromUnsignedLongLong(mig)) < 0))
            return -1;
        return 0;
    }
    if (PyErr_Occurred() || how == CACHE_UPDATE)
        return PyErr_Occurred() ? -1 : 0;
    if (!c->cache && !(c->cache = PyDict_New()))
        return -1;
    e = Py_BuildValue("[iKK]", pe, (unsigned long long)mig, 1ull);
    int rc = e ? PyDict_SetItem(c->cache, key, e) : -1;
    Py_XDECREF(e);
    if (rc < 0)
        return -1;
    st->ncached++;
    if (how == CACHE_SWITCHED)
        return 0;
    em_hdr h = {.coll = c->id, .ndims = (uint16_t)key_ndims(c, key), .method = CPY_M_SWITCH,
                .fut_pe = cp_my_pe(st->ctx)};
    PyObject *none = PyTuple_New(0);
    rc = none && key_index(c, key, h.idx) == 0
             ? cpy_send_entry(st, home, &h, NULL, none, NULL, NULL)
             : -1;
    Py_XDECREF(none);
    return rc;
}

int cpy_loc_cached(cpy_state *st, uint64_t coll, PyObject **direct) {
    static const int32_t zero[CPY_MAXDIMS];
    cpy_coll *c = find(st, coll);
    return c ? cached_pe(c, 0, zero, direct) : -1;
}

int cpy_loc_send_pe(cpy_state *st, uint64_t coll, const cpy_place *pl, const int32_t *idx,
                    uint32_t *flags, PyObject **direct) {
    if (cpy_loc_must_route(st, coll, pl, idx)) {
        cpy_coll *c = get(st, coll);
        if (!c)
            return -1;
        c->remote_sends++; /* it goes to the home once routed */
        *flags |= EM_ROUTE;
        return cp_my_pe(st->ctx);
    }
    int pe = cpy_loc_home(st, pl, idx);
    if (pe == CPY_HOME_UNKNOWN) { /* cannot be: must_route saw the map */
        PyErr_SetString(PyExc_SystemError, "the array's ArrayMap is missing on this PE");
        return -1;
    }
    int me = cp_my_pe(st->ctx);
    if (pe == me)
        return pe; /* the home numbers it, wherever the element is */
    cpy_coll *c = get(st, coll);
    if (!c)
        return -1;
    int at = cached_pe(c, pl->ndims, idx, direct);
    if (at >= 0 || PyErr_Occurred())
        return at;
    c->remote_sends++;
    return pe;
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
    int rc = cpy_send_entry(st, to, &h, NULL, cargs, NULL, NULL);
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
    cpy_sect_forget(st);
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
    cpy_sect_forget(st);
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

/* The messages queued on this PE for a member that leaves (cp_local_extract). */
struct follow {
    cpy_state *st;
    const em_hdr *who; /* its collection and index */
    int to;            /* where calls go: the home, or at the home the element */
    int dest;          /* where the element goes */
    int failed;
    PyObject *entry;   /* at the home: its entry, to number them */
};

static int queued_for(const cp_msg *msg, void *arg) {
    struct follow *f = arg;
    const em_hdr *h = cp_msg_data((cp_msg *)msg);
    return (int)msg->handler == f->st->h_entry && msg->size >= sizeof *h &&
           h->coll == f->who->coll && !(h->flags & (EM_BCAST | EM_ROUTE)) &&
           h->ndims == f->who->ndims &&
           memcmp(h->idx, f->who->idx, sizeof h->idx) == 0;
}

static void follow_it(cp_ctx *ctx, cp_msg *msg, void *arg) {
    (void)ctx;
    struct follow *f = arg;
    if (f->entry && !msg->tag)
        number(f->entry, msg);
    /* A direct call goes straight to the element (its sender's number
     * keeps its order). */
    if (cpy_forward(f->st, msg, msg->tag ? f->dest : f->to) < 0) {
        f->failed = 1;
        fail_message(f->st, msg, cpy_take_exception(), "forwarding a queued message");
    }
}

/* The calls of `early` (number -> message) go to PE to, in their order. */
static void forward_early(cpy_state *st, PyObject *early, int to) {
    PyObject *nums = PyDict_Keys(early);
    if (nums)
        PyList_Sort(nums);
    for (Py_ssize_t i = 0; nums && i < PyList_GET_SIZE(nums); i++) {
        cp_msg *m = PyLong_AsVoidPtr(PyDict_GetItem(early, PyList_GET_ITEM(nums, i)));
        cp_qd_process(st->ctx, 1);
        if (cpy_forward(st, m, to) < 0)
            fail_message(st, m, cpy_take_exception(), "forwarding a message");
    }
    if (!nums)
        cpy_report_error(st, "forwarding the calls that came early");
    Py_XDECREF(nums);
    PyDict_Clear(early);
}

/* loc_depart(coll, index, to_pe, state, mig): the member leaves for to_pe
 * (its mig-th move): it stops being a member here, its state goes to
 * to_pe, and what arrives for it here from now on follows it. */
static PyObject *mod_loc_depart(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *id, *key, *state;
    int to;
    unsigned long long mig;
    if (!PyArg_ParseTuple(args, "OOiOK", &id, &key, &to, &state, &mig))
        return NULL;
    cpy_coll *c = registered(st, id, "loc_depart");
    if (!c)
        return NULL;
    int me = cp_my_pe(st->ctx), home = home_of_key(st, c, key);
    if (to < 0 || to >= cp_num_pes(st->ctx) || to == me)
        return PyErr_Format(PyExc_ValueError, "loc_depart: bad destination PE %d", to);
    if (home < 0)
        return NULL;
    if (!PyDict_GetItemWithError(c->members, key))
        return PyErr_Occurred() ? NULL
                                : PyErr_Format(PyExc_RuntimeError,
                                               "loc_depart: element %R is not on PE %d", key,
                                               me);
    /* Its place in the order of its calls goes with it, and the calls that
     * came early here. */
    PyObject *order = c->order ? PyDict_GetItemWithError(c->order, key) : NULL;
    if (PyErr_Occurred())
        return NULL;
    unsigned long long expected = order ? PyLong_AsUnsignedLongLong(PyList_GET_ITEM(order, 0)) : 1;
    Py_XINCREF(order);
    cpy_trace_instant(st, "migration out", key, to);
    em_hdr h = {.coll = c->id, .ndims = (uint16_t)key_ndims(c, key), .method = CPY_M_ARRIVE,
                .fut_id = mig, .aux = me};
    /* The PE that copies broadcasts to it once it moved: -1 (its home) but
     * for a sparse element inserted here away from its home, which leaves
     * for the first time: this PE from now on. */
    int born = order ? (int)PyLong_AsLong(PyList_GET_ITEM(order, 5)) : -1;
    if (born < 0 && c->born) {
        int here = PyDict_Contains(c->born, key);
        if (here < 0) {
            Py_XDECREF(order);
            return NULL;
        }
        if (here)
            born = me;
    }
    /* What it knows of the order of its calls, and where it comes from:
     * (expected, ((sender, expected, switched, told), ...), this PE, born). */
    PyObject *senders = PyList_New(0);
    if (order && senders) {
        PyObject *src, *sd;
        Py_ssize_t pos = 0;
        while (senders && PyDict_Next(PyList_GET_ITEM(order, 2), &pos, &src, &sd)) {
            PyObject *t = Py_BuildValue("(OOOO)", src, PyList_GET_ITEM(sd, 0),
                                        PyList_GET_ITEM(sd, 1), PyList_GET_ITEM(sd, 3));
            if (!t || PyList_Append(senders, t) < 0)
                Py_CLEAR(senders);
            Py_XDECREF(t);
        }
    }
    PyObject *pack = senders && key_index(c, key, h.idx) == 0
                         ? Py_BuildValue("(O(KNii))", state, expected, PyList_AsTuple(senders), me,
                                         born)
                         : NULL;
    Py_XDECREF(senders);
    /* The state first, then whatever this PE forwards: one FIFO channel. */
    int rc = pack ? cpy_send_entry(st, to, &h, NULL, pack, NULL, NULL) : -1;
    Py_XDECREF(pack);
    /* Nothing changed here until the state left (an encoding error leaves
     * the element where it is, whole). */
    if (rc < 0 || (order && PyDict_DelItem(c->order, key) < 0) ||
        PyDict_DelItem(c->members, key) < 0 ||
        (c->viahome && PySet_Discard(c->viahome, key) < 0)) {
        Py_XDECREF(order);
        return NULL;
    }
    cpy_sect_forget(st);
    mark_moved(st, c);
    if (born == me && PyDict_GetItem(c->born, key) != Py_True) {
        if (PyDict_SetItem(c->born, key, Py_True) < 0) {
            Py_XDECREF(order);
            return NULL;
        }
        c->nborn_left++;
    }
    PyObject *e = NULL;
    if (home == me) {
        e = entry_get(st, c, key, to, mig);
        if (!e || entry_field(e, 0, PyLong_FromLong(to)) < 0 ||
            entry_field(e, 1, PyLong_FromUnsignedLongLong(mig)) < 0) {
            Py_XDECREF(order);
            return NULL;
        }
    } else {
        PyObject *pe = PyLong_FromLong(to);
        if (!pe || (!c->departed && !(c->departed = PyDict_New())) ||
            PyDict_SetItem(c->departed, key, pe) < 0) {
            Py_XDECREF(pe);
            Py_XDECREF(order);
            return NULL;
        }
        Py_DECREF(pe);
    }
    if (order) {
        forward_early(st, PyList_GET_ITEM(order, 1), to);
        PyObject *src, *sd;
        Py_ssize_t pos = 0;
        while (PyDict_Next(PyList_GET_ITEM(order, 2), &pos, &src, &sd))
            forward_early(st, PyList_GET_ITEM(sd, 2), to);
        Py_DECREF(order);
    }
    /* This PE's own direct calls go there from now on. */
    if (c->cache && PyDict_Contains(c->cache, key) == 1 &&
        cache_news(st, c, key, to, mig, CACHE_UPDATE, home) < 0)
        return NULL;
    /* Calls to it still queued here (made while it was here) follow it: by
     * the home, which numbers them (at the home: numbered here). */
    struct follow f = {st, &h, home == me ? to : home, to, 0, e};
    /* Calls of this PE on their way through the home now: see remote_sends. */
    c->remote_sends += (uint64_t)cp_local_extract(st->ctx, queued_for, follow_it, &f);
    if (f.failed || PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* The order entry of an element that arrived, from what its old PE sent:
 * (expected, ((sender, expected, switched, told), ...), old PE, born); *from
 * is the old PE, *born the PE that copies broadcasts to it (or -1). */
static PyObject *order_arrived(PyObject *sent, unsigned long long mig, int *from, int *born) {
    unsigned long long expected;
    PyObject *senders;
    if (!PyArg_ParseTuple(sent, "KO!ii", &expected, &PyTuple_Type, &senders, from, born))
        return NULL;
    PyObject *o =
        Py_BuildValue("[KNNKKi]", expected, PyDict_New(), PyDict_New(), mig, 0ull, *born);
    for (Py_ssize_t i = 0; o && i < PyTuple_GET_SIZE(senders); i++) {
        PyObject *src, *exp, *sw, *told;
        PyObject *s = NULL;
        if (PyArg_ParseTuple(PyTuple_GET_ITEM(senders, i), "OOOO", &src, &exp, &sw, &told))
            s = Py_BuildValue("[OONO]", exp, sw, PyDict_New(), told);
        if (!s || PyDict_SetItem(PyList_GET_ITEM(o, 2), src, s) < 0)
            Py_CLEAR(o);
        Py_XDECREF(s);
    }
    return o;
}

/* loc_arrived(coll, index, chare, mig, order): a chare that migrated here
 * (its mig-th move) is a member now, taking its calls in the order its old
 * PE sent (loc_depart); its home learns where it is, and what was held here
 * for it is delivered. */
static PyObject *mod_loc_arrived(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *id, *key, *obj, *sent;
    unsigned long long mig;
    if (!PyArg_ParseTuple(args, "OOOKO", &id, &key, &obj, &mig, &sent))
        return NULL;
    cpy_coll *c = registered(st, id, "loc_arrived");
    if (!c)
        return NULL;
    int me = cp_my_pe(st->ctx), home = home_of_key(st, c, key);
    if (home < 0 || PyDict_SetItem(c->members, key, obj) < 0)
        return NULL;
    cpy_sect_forget(st);
    mark_moved(st, c);
    if (c->departed && PyDict_Contains(c->departed, key) == 1 &&
        PyDict_DelItem(c->departed, key) < 0)
        return NULL;
    if ((!c->viahome && !(c->viahome = PySet_New(NULL))) || PySet_Add(c->viahome, key) < 0)
        return NULL;
    int from = -1, born = -1;
    PyObject *o = order_arrived(sent, mig, &from, &born);
    if (!o || (!c->order && !(c->order = PyDict_New())) ||
        PyDict_SetItem(c->order, key, o) < 0) {
        Py_XDECREF(o);
        return NULL;
    }
    Py_DECREF(o);
    /* This PE's calls to it: direct from now on. With none of them on the
     * way through the home (remote_sends 0) it takes them at once. */
    if (home != me) {
        int had = c->cache ? PyDict_Contains(c->cache, key) : 0;
        /* (Single chares count their calls through the home together.) */
        int none_via_home =
            c->remote_sends == 0 && (key_ndims(c, key) > 0 || st->chare_remote == 0);
        if (had < 0)
            return NULL;
        if (!had && none_via_home) { /* this PE counts as switched already */
            PyObject *s = sender_entry(o, me);
            if (!s || entry_field(s, 1, PyLong_FromLong(1)) < 0)
                return NULL;
        }
        if (cache_news(st, c, key, me, mig, none_via_home ? CACHE_SWITCHED : CACHE_UPDATE,
                       home) < 0)
            return NULL;
    }
    if (home == me) {
        PyObject *e = entry_get(st, c, key, me, mig);
        if (!e || entry_field(e, 0, PyLong_FromLong(me)) < 0 ||
            entry_field(e, 1, PyLong_FromUnsignedLongLong(mig)) < 0 ||
            entry_set_born(e, born) < 0)
            return NULL;
    } else if (from != home) { /* (leaving, the home recorded where it went) */
        int32_t idx[CPY_MAXDIMS];
        if (key_index(c, key, idx) < 0)
            return NULL;
        send_loc(st, home, LOC_AT, c->id, key_ndims(c, key), idx, me, mig, home, born);
    }
    release_held(st, c, key);
    if (PyErr_Occurred())
        return NULL;
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
    int rc = none ? cpy_send_entry(st, cp_my_pe(st->ctx), &h, NULL, none, NULL, NULL) : -1;
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

/* loc_dump(coll) -> dict of what this PE keeps about coll (for debugging:
 * entries, departure pointers, held message counts). */
static PyObject *mod_loc_dump(PyObject *module, PyObject *id) {
    cpy_state *st = PyModule_GetState(module);
    uint64_t coll;
    if (coll_arg(id, &coll) < 0)
        return NULL;
    cpy_coll *c = find(st, coll);
    if (!c)
        Py_RETURN_NONE;
    PyObject *held = PyDict_New();
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (held && c->held && PyDict_Next(c->held, &pos, &k, &v)) {
        PyObject *n = PyLong_FromSsize_t(PyList_GET_SIZE(v));
        if (!n || PyDict_SetItem(held, k, n) < 0)
            Py_CLEAR(held);
        Py_XDECREF(n);
    }
    if (!held)
        return NULL;
    return Py_BuildValue("{sOsNsOsOsisOsK}", "entries", c->locs ? c->locs : Py_None, "held",
                         held, "departed", c->departed ? c->departed : Py_None, "order",
                         c->order ? c->order : Py_None, "early", c->nearly, "cache",
                         c->cache ? c->cache : Py_None, "remote_sends",
                         (unsigned long long)c->remote_sends);
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
    {"loc_depart", mod_loc_depart, METH_VARARGS,
     "loc_depart(coll, index, to_pe, state, mig): the member leaves"},
    {"loc_arrived", mod_loc_arrived, METH_VARARGS,
     "loc_arrived(coll, index, chare, mig, expected): a chare that migrated here"},
    {"loc_after_routed", mod_loc_after_routed, METH_O,
     "loc_after_routed(coll): the routed hook, once this PE's routed messages left"},
    {"set_readonlies", mod_set_readonlies, METH_O, NULL},
    {"loc_done", mod_loc_done, METH_O, "loc_done(coll): no more insertions"},
    {"members", mod_members, METH_O, "members(coll): dict of this PE's members or None"},
    {"loc_dump", mod_loc_dump, METH_O, "loc_dump(coll): what this PE keeps about coll"},
    {"dense_layout", mod_dense_layout, METH_O,
     "dense_layout(proxy) -> (this PE's indices, PEs with elements)"},
    {"loc_home", mod_loc_home, METH_VARARGS, "loc_home(proxy, index) -> its home PE"},
    {NULL, NULL, 0, NULL},
};
