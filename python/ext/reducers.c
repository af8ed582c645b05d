/*
 * Built-in reducers in C. A contribution of numbers (an int, float or bool,
 * a list or tuple of them, a C-contiguous numpy array or array.array of
 * int32/int64/float32/float64) to sum, product, min, max or a logical
 * reducer is encoded as a typed vector: a header that says how to rebuild
 * the Python value, then the numbers. Typed vectors are combined by the
 * runtime's element-wise kernels (cp_reduce_apply) on every PE of the tree,
 * and turned back into a Python value only at the root. Anything else goes
 * through the Python reducer (reduction.py) as pickled values.
 */
#include "cpy.h"

#include <string.h>

#define TRED_MAGIC 0x52545043u /* "CPTR"; a pickle starts with 0x80 instead */

enum { PK_BOOL, PK_INT, PK_FLOAT, PK_LIST, PK_TUPLE, PK_NDARRAY, PK_ARRAY };

typedef struct tred_hdr {
    uint32_t magic;
    uint8_t op, type, pykind, ndim;
    uint8_t elbool; /* the scalar, or every list element, is a bool */
    uint8_t pad[7];
    uint64_t count;
    int64_t shape[CPY_MAXDIMS];
    char fmt[16]; /* numpy dtype.str, or the array.array typecode */
} tred_hdr;

static int is_logical(int op) { return op == CP_OP_LAND || op == CP_OP_LOR || op == CP_OP_LXOR; }

int cpy_typed_check(const void *data, size_t len) {
    uint32_t magic;
    if (len < sizeof(tred_hdr))
        return 0;
    memcpy(&magic, data, sizeof magic);
    return magic == TRED_MAGIC;
}

/* A typed vector in a new bytes object: header plus count elements that
 * `fill` writes. */
static PyObject *new_vector(const tred_hdr *h, char **data) {
    size_t esize = cp_type_size((cp_type)h->type);
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(sizeof *h + h->count * esize));
    if (!b)
        return NULL;
    memcpy(PyBytes_AS_STRING(b), h, sizeof *h);
    *data = PyBytes_AS_STRING(b) + sizeof *h;
    return b;
}

/* Numbers of a list or tuple (exact bools, ints and floats only). Returns
 * 1 when encodable, 0 when not (fall back to Python), -1 on error. */
static int encode_seq(PyObject *seq, tred_hdr *h, PyObject **out) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    int any_float = 0, any_int = 0, any_bool = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = items[i];
        if (PyFloat_CheckExact(o))
            any_float = 1;
        else if (PyLong_CheckExact(o))
            any_int = 1;
        else if (PyBool_Check(o))
            any_bool = 1;
        else
            return 0;
    }
    /* Floats mixed with ints or bools keep their types only in Python. */
    if (any_float && (any_int || any_bool))
        return 0;
    int all_bool = any_bool && !any_int;
    h->type = any_float ? CP_T_FLOAT64 : CP_T_INT64;
    h->elbool = (uint8_t)(all_bool && n > 0);
    h->count = (uint64_t)n;
    char *data;
    PyObject *b = new_vector(h, &data);
    if (!b)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = items[i];
        if (any_float) {
            double v = PyFloat_AsDouble(o);
            memcpy(data + 8 * i, &v, 8);
        } else {
            int overflow;
            long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
            if (overflow) {
                Py_DECREF(b);
                return 0;
            }
            memcpy(data + 8 * i, &v, 8);
        }
    }
    if (PyErr_Occurred()) {
        Py_DECREF(b);
        return -1;
    }
    *out = b;
    return 1;
}

static int format_type(const char *f, Py_ssize_t itemsize) {
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
    if (f[1] != '\0')
        return -1;
    switch (*f) {
    case 'i': case 'l': case 'q':
        return itemsize == 4 ? CP_T_INT32 : itemsize == 8 ? CP_T_INT64 : -1;
    case 'f':
        return itemsize == 4 ? CP_T_FLOAT32 : -1;
    case 'd':
        return itemsize == 8 ? CP_T_FLOAT64 : -1;
    default:
        return -1;
    }
}

static int encode_buffer(PyObject *v, tred_hdr *h, PyObject **out) {
    const char *tname = Py_TYPE(v)->tp_name;
    int numpy = strcmp(tname, "numpy.ndarray") == 0;
    int array = strcmp(tname, "array.array") == 0;
    if (!numpy && !array)
        return 0;
    Py_buffer view;
    if (PyObject_GetBuffer(v, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear(); /* not contiguous: Python reduces it */
        return 0;
    }
    int type = view.format ? format_type(view.format, view.itemsize) : -1;
    if (type < 0 || view.ndim > CPY_MAXDIMS) {
        PyBuffer_Release(&view);
        return 0;
    }
    h->type = (uint8_t)type;
    h->pykind = numpy ? PK_NDARRAY : PK_ARRAY;
    h->count = (uint64_t)(view.len / view.itemsize);
    h->ndim = (uint8_t)view.ndim;
    for (int i = 0; i < view.ndim; i++)
        h->shape[i] = view.shape ? view.shape[i] : (int64_t)h->count;
    PyObject *fmt = numpy ? PyObject_GetAttrString(v, "dtype") : NULL;
    PyObject *fs = numpy ? (fmt ? PyObject_GetAttrString(fmt, "str") : NULL)
                         : PyObject_GetAttrString(v, "typecode");
    Py_XDECREF(fmt);
    const char *f = fs ? PyUnicode_AsUTF8(fs) : NULL;
    if (!f || strlen(f) >= sizeof h->fmt) {
        Py_XDECREF(fs);
        PyBuffer_Release(&view);
        return f ? 0 : -1;
    }
    strcpy(h->fmt, f);
    Py_DECREF(fs);
    char *data;
    PyObject *b = new_vector(h, &data);
    if (b)
        memcpy(data, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (!b)
        return -1;
    *out = b;
    return 1;
}

/* The typed vector of value for op: new bytes, Py_None (new reference) when
 * the value is not numbers the C reducers handle, NULL with an exception. */
PyObject *cpy_typed_encode(int op, PyObject *v) {
    if (op < 0 || op >= CP_OP_COUNT_)
        return PyErr_Format(PyExc_ValueError, "bad reduction op %d", op);
    PyObject *out = NULL;
    tred_hdr h;
    memset(&h, 0, sizeof h);
    h.magic = TRED_MAGIC;
    h.op = (uint8_t)op;
    int rc = 0;
    if (PyBool_Check(v) || PyLong_CheckExact(v) || PyFloat_CheckExact(v)) {
        h.pykind = PyBool_Check(v) ? PK_BOOL : PyLong_CheckExact(v) ? PK_INT : PK_FLOAT;
        PyObject *t = PyTuple_Pack(1, v);
        if (!t)
            return NULL;
        rc = encode_seq(t, &h, &out);
        Py_DECREF(t);
        h.pykind = PyBool_Check(v) ? PK_BOOL : PyLong_CheckExact(v) ? PK_INT : PK_FLOAT;
        if (rc == 1)
            ((tred_hdr *)PyBytes_AS_STRING(out))->pykind = h.pykind;
    } else if (PyList_CheckExact(v) || PyTuple_CheckExact(v)) {
        h.pykind = PyList_CheckExact(v) ? PK_LIST : PK_TUPLE;
        rc = encode_seq(v, &h, &out);
    } else {
        rc = encode_buffer(v, &h, &out);
    }
    if (rc < 0)
        return NULL;
    return rc ? out : Py_NewRef(Py_None);
}

/* typed_encode(op, value) -> bytes, or None when the value is not numbers
 * the C reducers handle. */
static PyObject *mod_typed_encode(PyObject *module, PyObject *args) {
    (void)module;
    int op;
    PyObject *v;
    if (!PyArg_ParseTuple(args, "iO", &op, &v))
        return NULL;
    return cpy_typed_encode(op, v);
}

/* Combine typed vector `in` into `acc` (both headers included). 0; 1 when
 * Python ints would leave int64 (acc untouched); -1 with a ValueError
 * naming the difference. */
static int combine_into(char *acc, const char *in, size_t in_len) {
    tred_hdr a, b;
    memcpy(&a, acc, sizeof a);
    if (in_len < sizeof b) {
        PyErr_SetString(PyExc_ValueError, "corrupt reduction contribution");
        return -1;
    }
    memcpy(&b, in, sizeof b);
    if (b.magic != TRED_MAGIC || a.op != b.op || a.type != b.type || a.count != b.count) {
        static const char *const ops[] = {"sum", "product", "min", "max", "logical_and",
                                          "logical_or", "logical_xor", "?"};
        static const char *const types[] = {"int32", "int64", "float32", "float64", "?"};
        PyErr_Format(PyExc_ValueError,
                     "reduction contributions do not match: %llu %s numbers for %s and "
                     "%llu %s numbers for %s (every member must contribute the same kind "
                     "and length of data with the same reducer)",
                     (unsigned long long)a.count, types[a.type < 4 ? a.type : 4],
                     ops[a.op < 7 ? a.op : 7], (unsigned long long)b.count,
                     types[b.type < 4 ? b.type : 4], ops[b.op < 7 ? b.op : 7]);
        return -1;
    }
    if (a.type == CP_T_INT64 && (a.op == CP_OP_SUM || a.op == CP_OP_PROD) &&
        a.pykind != PK_NDARRAY && a.pykind != PK_ARRAY) {
        /* Python ints do not wrap (numpy's and array.array's do): past
         * int64, the caller combines them in Python. */
        const char *x = acc + sizeof a, *y = in + sizeof b;
        for (uint64_t i = 0; i < a.count; i++) {
            int64_t p, q, r;
            memcpy(&p, x + 8 * i, 8);
            memcpy(&q, y + 8 * i, 8);
            if (a.op == CP_OP_SUM ? __builtin_add_overflow(p, q, &r)
                                  : __builtin_mul_overflow(p, q, &r))
                return 1;
        }
    }
    cp_reduce_apply((cp_op)a.op, (cp_type)a.type, acc + sizeof a, in + sizeof b, a.count);
    return 0;
}

/* Combine typed bytes b into acc, a bytes object of the caller's own (one
 * reference): 0, or -1 with an exception. */
int cpy_typed_combine_into(PyObject *acc, PyObject *b) {
    return combine_into(PyBytes_AS_STRING(acc), PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
}

/* Combine the plain int or float v into acc (as above) when acc is one
 * number of v's kind: 1 done, 0 not that case (encode v), 2 when an int
 * sum or product would not fit in int64, -1 error. */
int cpy_typed_scalar_into(PyObject *acc, PyObject *v) {
    tred_hdr h;
    memcpy(&h, PyBytes_AS_STRING(acc), sizeof h);
    if (h.count != 1)
        return 0;
    char *data = PyBytes_AS_STRING(acc) + sizeof h;
    if (PyLong_CheckExact(v) && h.type == CP_T_INT64 && (h.pykind == PK_INT || h.pykind == PK_BOOL)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow)
            return 0;
        if (x == -1 && PyErr_Occurred())
            return -1;
        int64_t acc_v, in = x;
        memcpy(&acc_v, data, 8);
        if (h.op == CP_OP_SUM || h.op == CP_OP_PROD) {
            /* Python's ints do not wrap: past int64, Python combines. */
            int64_t r;
            if (h.op == CP_OP_SUM ? __builtin_add_overflow(acc_v, in, &r)
                                  : __builtin_mul_overflow(acc_v, in, &r))
                return 2;
            memcpy(data, &r, 8);
            return 1;
        }
        cp_reduce_apply((cp_op)h.op, CP_T_INT64, data, &in, 1);
        return 1;
    }
    if (PyFloat_CheckExact(v) && h.type == CP_T_FLOAT64 && h.pykind == PK_FLOAT) {
        double in = PyFloat_AS_DOUBLE(v);
        cp_reduce_apply((cp_op)h.op, CP_T_FLOAT64, data, &in, 1);
        return 1;
    }
    return 0;
}

Py_ssize_t cpy_typed_scalar_run(PyObject *acc, PyObject *values, Py_ssize_t from) {
    tred_hdr h;
    memcpy(&h, PyBytes_AS_STRING(acc), sizeof h);
    char *data = PyBytes_AS_STRING(acc) + sizeof h;
    Py_ssize_t i = from, n = PyList_GET_SIZE(values);
    if (h.count != 1)
        return i;
    if (h.type == CP_T_INT64 && (h.pykind == PK_INT || h.pykind == PK_BOOL) &&
        (h.op == CP_OP_SUM || h.op == CP_OP_MIN || h.op == CP_OP_MAX)) {
        int64_t a;
        memcpy(&a, data, 8);
        for (; i < n; i++) {
            PyObject *v = PyList_GET_ITEM(values, i);
            int overflow;
            long long x;
            if (!PyLong_CheckExact(v) ||
                ((x = PyLong_AsLongLongAndOverflow(v, &overflow)) == -1 && overflow))
                break;
            int64_t in = x;
            int64_t r;
            if (h.op == CP_OP_SUM) {
                if (__builtin_add_overflow(a, in, &r))
                    break;  /* a as it was: the caller's path says what to do */
                a = r;
            } else if (h.op == CP_OP_MIN ? in < a : in > a) {
                a = in;
            }
        }
        memcpy(data, &a, 8);
    } else if (h.type == CP_T_FLOAT64 && h.pykind == PK_FLOAT && h.op == CP_OP_SUM) {
        double a;
        memcpy(&a, data, 8);
        for (; i < n && PyFloat_CheckExact(PyList_GET_ITEM(values, i)); i++)
            a += PyFloat_AS_DOUBLE(PyList_GET_ITEM(values, i));
        memcpy(data, &a, 8);
    }
    return i;
}

int cpy_typed_combine_msgs(cp_msg *const *parts, int n) {
    /* Into a copy: Python ints that would overflow leave parts[0] as it
     * was, for Python to combine them all. */
    size_t len = (size_t)parts[0]->size;
    char *acc = PyMem_RawMalloc(len ? len : 1);
    if (!acc) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(acc, cp_msg_data(parts[0]), len);
    int rc = 0;
    for (int i = 1; i < n && rc == 0; i++)
        rc = combine_into(acc, cp_msg_data(parts[i]), (size_t)parts[i]->size);
    if (rc == 0)
        memcpy(cp_msg_data(parts[0]), acc, len);
    PyMem_RawFree(acc);
    return rc;
}

/* typed_combine(list of typed bytes) -> typed bytes, or None when Python
 * ints would leave int64 */
static PyObject *mod_typed_combine(PyObject *module, PyObject *list) {
    (void)module;
    if (!PyList_Check(list) || PyList_GET_SIZE(list) == 0 ||
        !PyBytes_Check(PyList_GET_ITEM(list, 0)))
        return PyErr_Format(PyExc_TypeError, "typed_combine takes a list of bytes");
    PyObject *first = PyList_GET_ITEM(list, 0);
    PyObject *acc = PyBytes_FromStringAndSize(PyBytes_AS_STRING(first), PyBytes_GET_SIZE(first));
    for (Py_ssize_t i = 1; acc && i < PyList_GET_SIZE(list); i++) {
        PyObject *b = PyList_GET_ITEM(list, i);
        int rc = PyBytes_Check(b) ? combine_into(PyBytes_AS_STRING(acc), PyBytes_AS_STRING(b),
                                                 (size_t)PyBytes_GET_SIZE(b)) : -1;
        if (rc == 1) {  /* beyond int64: reduction.py combines in Python */
            Py_DECREF(acc);
            Py_RETURN_NONE;
        }
        if (rc < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "typed_combine takes a list of bytes");
            Py_CLEAR(acc);
        }
    }
    return acc;
}

static PyObject *number(const tred_hdr *h, const char *data, uint64_t i) {
    int as_bool = is_logical(h->op) || (h->elbool && (h->op == CP_OP_MIN || h->op == CP_OP_MAX));
    switch (h->type) {
    case CP_T_INT32: {
        int32_t v;
        memcpy(&v, data + 4 * i, 4);
        return as_bool ? PyBool_FromLong(v != 0) : PyLong_FromLong(v);
    }
    case CP_T_INT64: {
        int64_t v;
        memcpy(&v, data + 8 * i, 8);
        return as_bool ? PyBool_FromLong(v != 0) : PyLong_FromLongLong(v);
    }
    case CP_T_FLOAT32: {
        float v;
        memcpy(&v, data + 4 * i, 4);
        return as_bool ? PyBool_FromLong(v != 0) : PyFloat_FromDouble(v);
    }
    default: {
        double v;
        memcpy(&v, data + 8 * i, 8);
        return as_bool ? PyBool_FromLong(v != 0) : PyFloat_FromDouble(v);
    }
    }
}

/* typed_decode(bytes) -> the Python value the typed vector stands for */
static PyObject *mod_typed_decode(PyObject *module, PyObject *arg) {
    (void)module;
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *r = NULL;
    tred_hdr h;
    if (!cpy_typed_check(b.buf, (size_t)b.len))
        goto corrupt;
    memcpy(&h, b.buf, sizeof h);
    size_t esize = cp_type_size((cp_type)h.type);
    if (esize == 0 || (size_t)b.len != sizeof h + h.count * esize)
        goto corrupt;
    const char *data = (const char *)b.buf + sizeof h;
    switch (h.pykind) {
    case PK_BOOL: case PK_INT: case PK_FLOAT:
        if (h.count != 1)
            goto corrupt;
        r = number(&h, data, 0);
        break;
    case PK_LIST: case PK_TUPLE:
        r = h.pykind == PK_LIST ? PyList_New((Py_ssize_t)h.count)
                                : PyTuple_New((Py_ssize_t)h.count);
        for (uint64_t i = 0; r && i < h.count; i++) {
            PyObject *x = number(&h, data, i);
            if (!x) {
                Py_CLEAR(r);
                break;
            }
            if (h.pykind == PK_LIST)
                PyList_SET_ITEM(r, (Py_ssize_t)i, x);
            else
                PyTuple_SET_ITEM(r, (Py_ssize_t)i, x);
        }
        break;
    case PK_NDARRAY: {
        PyObject *np = PyImport_ImportModule("numpy");
        PyObject *raw = np ? PyByteArray_FromStringAndSize(data, (Py_ssize_t)(h.count * esize))
                           : NULL;
        PyObject *flat = raw ? PyObject_CallMethod(np, "frombuffer", "Os", raw, h.fmt) : NULL;
        PyObject *shape = PyTuple_New(h.ndim);
        for (int i = 0; shape && i < h.ndim; i++)
            PyTuple_SET_ITEM(shape, i, PyLong_FromLongLong(h.shape[i]));
        r = flat && shape ? PyObject_CallMethod(flat, "reshape", "O", shape) : NULL;
        if (r && is_logical(h.op))
            Py_SETREF(r, PyObject_CallMethod(r, "astype", "s", "bool"));
        Py_XDECREF(np);
        Py_XDECREF(raw);
        Py_XDECREF(flat);
        Py_XDECREF(shape);
        break;
    }
    case PK_ARRAY: {
        PyObject *am = PyImport_ImportModule("array");
        PyObject *raw = am ? PyBytes_FromStringAndSize(data, (Py_ssize_t)(h.count * esize))
                           : NULL;
        r = raw ? PyObject_CallMethod(am, "array", "sO", h.fmt, raw) : NULL;
        Py_XDECREF(am);
        Py_XDECREF(raw);
        break;
    }
    default:
        goto corrupt;
    }
    PyBuffer_Release(&b);
    return r;
corrupt:
    PyBuffer_Release(&b);
    PyErr_SetString(PyExc_ValueError, "corrupt typed reduction result");
    return NULL;
}

PyMethodDef cpy_reducer_methods[] = {
    {"typed_encode", mod_typed_encode, METH_VARARGS,
     "typed_encode(op, value) -> bytes, or None if the C reducers cannot take value"},
    {"typed_combine", mod_typed_combine, METH_O, "combine typed contributions"},
    {"typed_decode", mod_typed_decode, METH_O, "the Python value of a typed result"},
    {NULL, NULL, 0, NULL},
};
