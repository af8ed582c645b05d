/*
 * The arguments of an entry-method call inside a message: how they are
 * written by the sender and read back by the receiver. Today they are a
 * pickle (protocol 5) of (args, kwargs); a call to a chare in the same
 * process keeps references instead (byref_*).
 */
#include "cpy.h"

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

cp_msg *cpy_encode_args(cpy_state *st, size_t off, PyObject *args, PyObject *kwargs) {
    PyObject *pair = PyTuple_Pack(2, args, kwargs ? kwargs : Py_None);
    if (!pair)
        return NULL;
    PyObject *pickled = PyObject_CallFunction(st->dumps, "Oi", pair, 5);
    Py_DECREF(pair);
    if (!pickled)
        return NULL;
    size_t plen = (size_t)PyBytes_GET_SIZE(pickled);
    cp_msg *msg = cp_msg_alloc(st->ctx, off + plen);
    if (msg)
        memcpy((char *)cp_msg_data(msg) + off, PyBytes_AS_STRING(pickled), plen);
    else
        PyErr_Format(PyExc_MemoryError, "no memory for a message of %zu bytes", off + plen);
    Py_DECREF(pickled);
    return msg;
}

int cpy_decode_args(cpy_state *st, cp_msg *msg, size_t off, PyObject **args,
                    PyObject **kwargs) {
    if (msg->size < off) {
        PyErr_SetString(PyExc_RuntimeError, "corrupt entry-method message (too short)");
        return -1;
    }
    PyObject *view = PyMemoryView_FromMemory((char *)cp_msg_data(msg) + off,
                                             (Py_ssize_t)(msg->size - off), PyBUF_READ);
    PyObject *pair = view ? PyObject_CallOneArg(st->loads, view) : NULL;
    Py_XDECREF(view);
    if (!pair)
        return -1;
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
        !PyTuple_Check(PyTuple_GET_ITEM(pair, 0))) {
        Py_DECREF(pair);
        PyErr_SetString(PyExc_RuntimeError, "corrupt entry-method message");
        return -1;
    }
    *args = Py_NewRef(PyTuple_GET_ITEM(pair, 0));
    PyObject *kw = PyTuple_GET_ITEM(pair, 1);
    *kwargs = kw == Py_None ? NULL : Py_NewRef(kw);
    Py_DECREF(pair);
    return 0;
}
