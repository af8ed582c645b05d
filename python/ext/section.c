/*
 * Sections: a subset of a group's or an array's members, named by a
 * descriptor (python/charmpy/sections.py builds it: a slice per dimension,
 * or the sorted list of member indices) and its 64-bit id (a hash of it).
 *
 * A call through a section proxy is one message multicast (cp_mcast) along
 * a spanning tree over the PEs that are home to members, not a message per
 * member. Its layout: em_hdr (EM_BCAST | EM_SECT) | sect_hdr | descriptor
 * (padded to 8 bytes) | the encoded arguments. Each PE runs the method on
 * the members whose home it is (cpy_sect_keys: the descriptor is turned
 * into that list of keys once per section and PE, by the sections.py
 * hook, and kept); a member that moved away gets its copy from its home
 * (EM_BCOPY, as an element call that answers as a member of the
 * broadcast), and a member that moved here gets it from its own home.
 */
#include "cpy.h"

#include <string.h>

typedef struct sect_hdr {
    uint64_t sid;
    uint32_t dlen; /* descriptor bytes */
    uint32_t pad;
} sect_hdr;

static size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

size_t cpy_sect_args_off(const cp_msg *msg) {
    const sect_hdr *s = (const sect_hdr *)((const char *)cp_msg_data((cp_msg *)msg) +
                                           sizeof(em_hdr));
    return sizeof(em_hdr) + sizeof(sect_hdr) + pad8(s->dlen);
}

PyObject *cpy_sect_keys(cpy_state *st, cp_msg *msg) {
    em_hdr *h = cp_msg_data(msg);
    const sect_hdr *s = (const sect_hdr *)(h + 1);
    PyObject *id = PyLong_FromUnsignedLongLong(s->sid);
    if (!id)
        return NULL;
    PyObject *keys = PyDict_GetItemWithError(st->sect_cache, id);
    if (keys || PyErr_Occurred() || !st->sect_local) {
        if (!keys && !PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "charmpy sections are not set up");
        Py_DECREF(id);
        return keys;
    }
    PyObject *desc = PyBytes_FromStringAndSize((const char *)(s + 1), (Py_ssize_t)s->dlen);
    PyObject *coll = PyLong_FromUnsignedLongLong(h->coll);
    keys = desc && coll ? PyObject_CallFunctionObjArgs(st->sect_local, coll, desc, NULL) : NULL;
    Py_XDECREF(desc);
    Py_XDECREF(coll);
    if (keys && !PyList_Check(keys)) {
        Py_CLEAR(keys);
        PyErr_SetString(PyExc_TypeError, "section_keys must return a list");
    }
    int rc = keys ? PyDict_SetItem(st->sect_cache, id, keys) : -1;
    Py_DECREF(id);
    Py_XDECREF(keys);
    return rc < 0 ? NULL : keys; /* borrowed from the cache */
}

PyObject *cpy_sect_objs(cpy_state *st, cp_msg *msg, PyObject *members, PyObject *keys) {
    const sect_hdr *s = (const sect_hdr *)((em_hdr *)cp_msg_data(msg) + 1);
    PyObject *id = PyLong_FromUnsignedLongLong(s->sid);
    if (!id)
        return NULL;
    PyObject *objs = PyDict_GetItemWithError(st->sect_objs, id);
    if (objs || PyErr_Occurred()) {
        Py_DECREF(id);
        return objs;
    }
    /* Looked up once while the members stay (a tuple key's hash and
     * comparison cost more than the rest of a member's delivery). */
    Py_ssize_t n = PyList_GET_SIZE(keys);
    objs = PyList_New(n);
    for (Py_ssize_t i = 0; objs && i < n; i++) {
        PyObject *v = PyDict_GetItemWithError(members, PyList_GET_ITEM(keys, i));
        if (!v && PyErr_Occurred())
            Py_CLEAR(objs);
        else
            PyList_SET_ITEM(objs, i, Py_NewRef(v ? v : Py_None));
    }
    int rc = objs ? PyDict_SetItem(st->sect_objs, id, objs) : -1;
    Py_DECREF(id);
    Py_XDECREF(objs);
    return rc < 0 ? NULL : objs; /* borrowed from the cache */
}

void cpy_sect_forget(cpy_state *st) {
    if (st->sect_objs && PyDict_GET_SIZE(st->sect_objs))
        PyDict_Clear(st->sect_objs);
}

PyObject *cpy_sect_slice(cpy_state *st, PyObject *proxy, PyObject *key) {
    if (!st->sect_slice)
        return PyErr_Format(PyExc_RuntimeError, "charmpy sections are not set up");
    return PyObject_CallFunctionObjArgs(st->sect_slice, proxy, key, NULL);
}

/* The index array of key (an int for a group, a tuple for an array). */
static int key_idx(const cpy_place *pl, PyObject *key, int32_t *idx) {
    memset(idx, 0, sizeof(int32_t) * CPY_MAXDIMS);
    if (pl->kind == CPY_GROUP) {
        long v = PyLong_AsLong(key);
        if (v == -1 && PyErr_Occurred())
            return -1;
        idx[0] = (int32_t)v;
        return 0;
    }
    if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != pl->ndims) {
        PyErr_Format(PyExc_TypeError, "section member %R is not an index of %d dimensions", key,
                     pl->ndims);
        return -1;
    }
    for (int d = 0; d < pl->ndims; d++) {
        long v = PyLong_AsLong(PyTuple_GET_ITEM(key, d));
        if (v == -1 && PyErr_Occurred())
            return -1;
        idx[d] = (int32_t)v;
    }
    return 0;
}

static int home_of(cpy_state *st, const cpy_place *pl, PyObject *key) {
    int32_t idx[CPY_MAXDIMS];
    if (key_idx(pl, key, idx) < 0)
        return -1;
    if (pl->kind == CPY_GROUP)
        return idx[0];
    int pe = cpy_loc_home(st, pl, idx);
    if (pe == CPY_HOME_UNKNOWN) {
        PyErr_SetString(PyExc_RuntimeError,
                        "a section of an array whose ArrayMap is not on this PE yet: make it "
                        "after charm.awaitCreation(the map)");
        return -1;
    }
    return pe;
}

/* section_homes(proxy, keys) -> the sorted tuple of the members' home PEs */
/* The (proxy, keys) arguments of section_homes and section_local. */
static int proxy_keys(cpy_state *st, PyObject *args, cpy_place *pl, PyObject **keys) {
    PyObject *proxy;
    uint64_t coll;
    if (!PyArg_ParseTuple(args, "OO!", &proxy, &PyList_Type, keys) || cpy_need_runtime(st))
        return -1;
    return cpy_proxy_place(st, proxy, pl, &coll);
}

static PyObject *mod_section_homes(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *keys;
    cpy_place pl;
    if (proxy_keys(st, args, &pl, &keys) < 0)
        return NULL;
    int n = cp_num_pes(st->ctx);
    char *seen = PyMem_Calloc((size_t)n, 1);
    if (!seen)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
        int pe = home_of(st, &pl, PyList_GET_ITEM(keys, i));
        if (pe < 0 || pe >= n) {
            PyMem_Free(seen);
            if (pe >= n)
                PyErr_Format(PyExc_ValueError, "section member %R lives on no PE",
                             PyList_GET_ITEM(keys, i));
            return NULL;
        }
        seen[pe] = 1;
    }
    PyObject *out = PyList_New(0);
    for (int pe = 0; out && pe < n; pe++) {
        if (!seen[pe])
            continue;
        PyObject *v = PyLong_FromLong(pe);
        if (!v || PyList_Append(out, v) < 0)
            Py_CLEAR(out);
        Py_XDECREF(v);
    }
    PyMem_Free(seen);
    PyObject *t = out ? PyList_AsTuple(out) : NULL;
    Py_XDECREF(out);
    return t;
}

/* section_local(proxy, keys) -> the keys whose home is this PE */
static PyObject *mod_section_local(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *keys;
    cpy_place pl;
    if (proxy_keys(st, args, &pl, &keys) < 0)
        return NULL;
    int me = cp_my_pe(st->ctx);
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out && i < PyList_GET_SIZE(keys); i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        int pe = home_of(st, &pl, k);
        if (pe < 0 || (pe == me && PyList_Append(out, k) < 0))
            Py_CLEAR(out);
    }
    return out;
}

static int pop_bool(PyObject *kwargs, const char *key) {
    if (!kwargs)
        return 0;
    PyObject *v = PyDict_GetItemString(kwargs, key);
    if (!v)
        return 0;
    int t = PyObject_IsTrue(v);
    return t < 0 || PyDict_DelItemString(kwargs, key) < 0 ? -1 : t;
}

/* section_send(proxy, name, sid, desc, pes, args, kwargs) -> Future or None:
 * proxy.name(*args, **kwargs) on every member of the section (ret= and
 * awaitable= as for any call). */
static PyObject *mod_section_send(PyObject *module, PyObject *a) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *proxy, *name, *desc, *pes, *args, *kwargs;
    unsigned long long sid;
    if (!PyArg_ParseTuple(a, "OUKO!O!O!O", &proxy, &name, &sid, &PyBytes_Type, &desc,
                          &PyTuple_Type, &pes, &PyTuple_Type, &args, &kwargs) ||
        cpy_need_runtime(st))
        return NULL;
    if (kwargs == Py_None)
        kwargs = NULL;
    else if (!PyDict_Check(kwargs))
        return PyErr_Format(PyExc_TypeError, "section_send: kwargs must be a dict");
    int ret = pop_bool(kwargs, "ret"), awaitable = pop_bool(kwargs, "awaitable");
    if (ret < 0 || awaitable < 0)
        return NULL;
    if (kwargs && PyDict_GET_SIZE(kwargs) == 0)
        kwargs = NULL;
    cpy_place pl;
    uint64_t coll;
    if (cpy_proxy_place(st, proxy, &pl, &coll) < 0)
        return NULL;
    PyObject *cls = PyObject_GetAttrString(proxy, "cls");
    PyObject *ent = cls ? cpy_entries(st, cls) : NULL;
    Py_XDECREF(cls);
    if (!ent)
        return NULL;
    PyObject *code = PyDict_GetItemWithError(PyTuple_GET_ITEM(ent, 0), name);
    if (!code)
        return PyErr_Occurred() ? NULL
                                : PyErr_Format(PyExc_AttributeError,
                                               "section has no entry method '%U' (entry "
                                               "methods are its public methods)",
                                               name);
    Py_ssize_t npes = PyTuple_GET_SIZE(pes);
    if (npes == 0)
        return PyErr_Format(PyExc_ValueError, "a section without members");
    int *list = PyMem_Malloc((size_t)npes * sizeof *list);
    if (!list)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < npes; i++)
        list[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(pes, i));
    if (PyErr_Occurred()) {
        PyMem_Free(list);
        return NULL;
    }
    em_hdr h = {.coll = coll, .method = (uint16_t)PyLong_AsLong(code),
                .flags = EM_BCAST | EM_SECT};
    PyObject *fut = NULL;
    if (ret || awaitable) {
        PyObject *fa[3] = {PyLong_FromSsize_t(npes), ret ? Py_True : Py_False, Py_True};
        fut = fa[0] ? cpy_hook(st, CPY_HOOK_NEW_FUTURE, fa, 3) : NULL;
        Py_XDECREF(fa[0]);
        PyObject *fid = fut ? PyObject_GetAttrString(fut, "fid") : NULL;
        h.fut_id = fid ? PyLong_AsUnsignedLongLong(fid) : 0;
        Py_XDECREF(fid);
        if (!fid || PyErr_Occurred()) {
            Py_XDECREF(fut);
            PyMem_Free(list);
            return NULL;
        }
        h.flags |= (ret ? EM_RET : 0) | (awaitable ? EM_AWAIT : 0);
        h.fut_pe = cp_my_pe(st->ctx);
    }
    size_t dlen = (size_t)PyBytes_GET_SIZE(desc);
    size_t off = sizeof(em_hdr) + sizeof(sect_hdr) + pad8(dlen);
    cp_msg *msg = cpy_encode_args(st, off, args, kwargs, NULL);
    if (!msg) {
        Py_XDECREF(fut);
        PyMem_Free(list);
        return NULL;
    }
    char *p = cp_msg_data(msg);
    memcpy(p, &h, sizeof h);
    sect_hdr s = {.sid = sid, .dlen = (uint32_t)dlen};
    memcpy(p + sizeof h, &s, sizeof s);
    memcpy(p + sizeof h + sizeof s, PyBytes_AS_STRING(desc), dlen);
    msg->tag = 0;
    int rc = cp_mcast(st->ctx, st->h_entry, msg, list, (int)npes);
    PyMem_Free(list);
    if (rc) {
        cp_msg_free(st->ctx, msg);
        Py_XDECREF(fut);
        return PyErr_Format(PyExc_RuntimeError, "cannot multicast %U to a section: %s", name,
                            cp_strerror(rc));
    }
    return fut ? fut : Py_NewRef(Py_None);
}

/* sect_setup(slice, local_keys): sections.py's functions. */
static PyObject *mod_sect_setup(PyObject *module, PyObject *args) {
    cpy_state *st = PyModule_GetState(module);
    PyObject *sl, *lk;
    if (!PyArg_ParseTuple(args, "OO", &sl, &lk))
        return NULL;
    Py_XSETREF(st->sect_slice, Py_NewRef(sl));
    Py_XSETREF(st->sect_local, Py_NewRef(lk));
    Py_RETURN_NONE;
}

static PyMethodDef sect_methods[] = {
    {"sect_setup", mod_sect_setup, METH_VARARGS, NULL},
    {"section_send", mod_section_send, METH_VARARGS, NULL},
    {"section_homes", mod_section_homes, METH_VARARGS, NULL},
    {"section_local", mod_section_local, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

int cpy_sect_init(PyObject *module, cpy_state *st) {
    st->sect_cache = PyDict_New();
    st->sect_objs = PyDict_New();
    if (!st->sect_cache || !st->sect_objs || PyModule_AddFunctions(module, sect_methods) < 0)
        return -1;
    return 0;
}

int cpy_sect_traverse(cpy_state *st, visitproc visit, void *arg) {
    Py_VISIT(st->sect_cache);
    Py_VISIT(st->sect_objs);
    Py_VISIT(st->sect_slice);
    Py_VISIT(st->sect_local);
    return 0;
}

void cpy_sect_clear(cpy_state *st) {
    Py_CLEAR(st->sect_cache);
    Py_CLEAR(st->sect_objs);
    Py_CLEAR(st->sect_slice);
    Py_CLEAR(st->sect_local);
}
