/*
 * The arguments of an entry-method call inside a message: how they are
 * written by the sender and read back by the receiver. They are encoded by
 * codec.c (args tuple, then kwargs dict or None); a call to a chare in the
 * same process keeps references instead (byref_*).
 */
/* First, so that an older Python's headers fail the build with one clear
 * line (args.c is the first file setup.py and `make extcheck` compile). */
#include "pyversion.h"

#include "cpy.h"

#include "codec.h"

#include <string.h>

typedef struct byref_args {
    PyObject *args;   /* strong */
    PyObject *kwargs; /* strong, or NULL */
} byref_args;

size_t cpy_byref_size(void) { return sizeof(byref_args); }

void cpy_byref_store(void *dst, PyObject *args, PyObject *kwargs) {
    byref_args b = {Py_NewRef(args), Py_XNewRef(kwargs)};
    memcpy(dst, &b, sizeof b);
}

void cpy_byref_take(const void *src, PyObject **args, PyObject **kwargs) {
    byref_args b;
    memcpy(&b, src, sizeof b);
    *args = b.args;
    *kwargs = b.kwargs;
}

/* Where the encoding starts after `off` header bytes: 64-byte aligned, so
 * that out-of-band buffers inside it are aligned in memory. */
static size_t args_at(size_t off) { return (off + 63) & ~(size_t)63; }

/* The out-of-band buffers of a call's arguments while they are sent from
 * where they lie: their views keep the objects alive (and bytearrays from
 * resizing) until the runtime releases them. Raw memory: the release may
 * come from any runtime call, and takes the GIL itself. */
struct cpy_argsegs {
    Py_ssize_t n;
    cp_seg *segs;        /* n entries, after the views */
    Py_buffer views[];
};

static void argsegs_release(void *arg) {
    cpy_argsegs *a = arg;
    PyGILState_STATE g = PyGILState_Ensure();
    for (Py_ssize_t i = 0; i < a->n; i++)
        PyBuffer_Release(&a->views[i]);
    PyGILState_Release(g);
    PyMem_RawFree(a);
}

/* The encoding's out-of-band buffers as segments: NULL (no exception)
 * when there are none or one must be gathered, or NULL with MemoryError. */
static cpy_argsegs *take_segs(cpy_enc *e) {
    Py_ssize_t n = cpy_enc_contiguous_oob(e);
    if (n <= 0)
        return NULL;
    size_t views = (size_t)n * sizeof(Py_buffer);
    cpy_argsegs *a = PyMem_RawMalloc(sizeof *a + views + (size_t)n * sizeof(cp_seg));
    if (!a) {
        PyErr_NoMemory();
        return NULL;
    }
    a->n = n;
    a->segs = (cp_seg *)((char *)a->views + views);
    cpy_enc_take_oob(e, a->views);
    for (Py_ssize_t i = 0; i < n; i++) {
        a->segs[i].base = a->views[i].buf;
        a->segs[i].len = (size_t)a->views[i].len;
    }
    return a;
}

cp_msg *cpy_encode_args(cpy_state *st, size_t off, PyObject *args, PyObject *kwargs,
                        cpy_argsegs **segs) {
    cpy_enc e;
    cpy_enc_init(&e, st);
    if (segs)
        *segs = NULL;
    if (cpy_enc_add(&e, args) < 0 || cpy_enc_add(&e, kwargs ? kwargs : Py_None) < 0) {
        cpy_enc_release(&e);
        return NULL;
    }
    size_t at = args_at(off);
    /* Big buffers go in place when the transport reads them there; else
     * they are copied into the message, once. */
    int in_place = segs && cp_sends_in_place(st->ctx) && cpy_enc_contiguous_oob(&e) > 0;
    size_t n = in_place ? cpy_enc_inline_size(&e) : cpy_enc_size(&e);
    cp_msg *msg = cp_msg_alloc(st->ctx, at + n);
    if (!msg) {
        PyErr_Format(PyExc_MemoryError, "no memory for a message of %zu bytes", at + n);
    } else if (!in_place) {
        cpy_enc_write(&e, (char *)cp_msg_data(msg) + at);
    } else {
        cpy_enc_write_inline(&e, (char *)cp_msg_data(msg) + at);
        if (!(*segs = take_segs(&e))) {
            cp_msg_free(st->ctx, msg);
            msg = NULL;
        }
    }
    cpy_enc_release(&e);
    return msg;
}

int cpy_send_args(cpy_state *st, int pe, int handler, cp_msg *msg, cpy_argsegs *segs) {
    if (!segs)
        return cp_send(st->ctx, pe, handler, msg);
    int rc = cp_send_segs(st->ctx, pe, handler, msg, segs->segs, (int)segs->n,
                          argsegs_release, segs);
    if (rc)
        argsegs_release(segs); /* not called on failure: ours to release */
    return rc;
}

/* ---- the owner of a received message's memory ----------------------------
 * Big arrays in a message are handed to the method as views of the message
 * itself (no copy); this object owns the message while any view lives and
 * frees it with the last one. */

typedef struct {
    PyObject_HEAD
    cp_msg *msg;
    Py_ssize_t exports;
} MsgOwner;

static int owner_getbuffer(MsgOwner *self, Py_buffer *view, int flags) {
    if (PyBuffer_FillInfo(view, (PyObject *)self, cp_msg_data(self->msg),
                          (Py_ssize_t)self->msg->size, 0, flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void owner_releasebuffer(MsgOwner *self, Py_buffer *view) {
    (void)view;
    self->exports--;
}

static void owner_dealloc(MsgOwner *self) {
    PyTypeObject *tp = Py_TYPE(self);
    cpy_state *st = cpy_state_of_type(tp);
    /* After the runtime ended, its memory went with it. */
    if (st && st->ctx)
        cp_msg_free(st->ctx, self->msg);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot owner_slots[] = {
    {Py_bf_getbuffer, owner_getbuffer},
    {Py_bf_releasebuffer, owner_releasebuffer},
    {Py_tp_dealloc, owner_dealloc},
    {0, NULL},
};

static PyType_Spec owner_spec = {
    .name = "charmpy._charmpy.MessageMemory",
    .basicsize = sizeof(MsgOwner),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = owner_slots,
};

int cpy_args_init(PyObject *module, cpy_state *st) {
    st->owner_type = PyType_FromModuleAndSpec(module, &owner_spec, NULL);
    return st->owner_type ? 0 : -1;
}

static int take_args(cpy_state *st, cp_msg *msg, size_t off, PyObject **args,
                     PyObject **kwargs, int views) {
    size_t at = args_at(off);
    if (msg->size < at) {
        cp_msg_free(st->ctx, msg);
        PyErr_SetString(PyExc_RuntimeError, "corrupt entry-method message (too short)");
        return -1;
    }
    const char *p = (const char *)cp_msg_data(msg) + at, *end = (const char *)cp_msg_data(msg) +
                                                                msg->size;
    /* Only a message big enough to carry out-of-band data gets an owner:
     * then its arrays are views, and the owner frees it. */
    MsgOwner *owner = NULL;
    if (views && msg->size - at >= CPY_OOB_MIN) {
        owner = PyObject_New(MsgOwner, (PyTypeObject *)st->owner_type);
        if (!owner) {
            cp_msg_free(st->ctx, msg);
            return -1;
        }
        owner->msg = msg;
        owner->exports = 0;
    }
    *args = cpy_dec_value(st, &p, end, (PyObject *)owner);
    PyObject *kw = *args ? cpy_dec_value(st, &p, end, (PyObject *)owner) : NULL;
    if (owner)
        Py_DECREF(owner); /* frees msg unless views of it live on */
    else
        cp_msg_free(st->ctx, msg);
    if (!kw || !PyTuple_Check(*args) || (kw != Py_None && !PyDict_Check(kw))) {
        if (kw)
            PyErr_SetString(PyExc_RuntimeError, "corrupt entry-method message");
        Py_XDECREF(*args);
        Py_XDECREF(kw);
        *args = NULL;
        return -1;
    }
    if (kw == Py_None) {
        Py_DECREF(kw);
        kw = NULL;
    }
    *kwargs = kw;
    return 0;
}

int cpy_take_args(cpy_state *st, cp_msg *msg, size_t off, PyObject **args,
                  PyObject **kwargs) {
    return take_args(st, msg, off, args, kwargs, 1);
}

int cpy_take_args_copied(cpy_state *st, cp_msg *msg, size_t off, PyObject **args,
                         PyObject **kwargs) {
    return take_args(st, msg, off, args, kwargs, 0);
}
