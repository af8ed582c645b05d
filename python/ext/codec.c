/*
 * codec: the binary encoding of entry-method arguments (see codec.h for
 * the contract and the layout).
 *
 * Record formats (after the tag byte; varints are unsigned LEB128):
 *   N T F                 None, True, False
 *   b i q                 int8, int32, int64
 *   L  sign:u8 mag:data   an int beyond 64 bits: magnitude, little-endian
 *   d  f64     j  f64 f64 float, complex
 *   s y a  data           str (utf-8), bytes, bytearray
 *   t l  n:varint items   tuple, list
 *   m  n:varint k v ...   dict
 *   n  dtlen:varint dtype ndim:u8 dims:varint* flags:u8 data
 *                         numpy array (flags: 1 = Fortran order, 2 = read-only)
 *   r  typecode:u8 data   array.array
 *   v  fmt:u8 readonly:u8 ndim:u8 dims:varint* data
 *                         memoryview
 *   p  pickle:data nbuf:varint data*
 *                         a pickle and its out-of-band buffers (none
 *                         below protocol 5)
 *   R  id:u8 args         an instance of a class registered with
 *                         codec_reducible(cls, rebuild) (the id-th): the
 *                         arguments of its __reduce__ (a tuple record);
 *                         decoded as rebuild(*args)
 * where `data` is varint h followed, when h is even, by h/2 inline bytes,
 * and when h is odd by a u64 offset: the h/2 bytes lie that many bytes
 * after the offset field (out of band, past the inline stream).
 *
 * Why self-relative offsets: the receiver can decode an encoding wherever
 * the sender put it in the message, and can decode the values one at a time
 * (cpy_dec_value) without a separate table or a base pointer.
 *
 * Uses only the C API of the oldest Python the extension supports
 * (pyversion.h): no PyLong_AsInt (3.13), and no private long-integer
 * functions (which changed in 3.13).
 */
#include "codec.h"

#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "codec.c writes scalars in native order and assumes a little-endian host"
#endif

enum {
    T_NONE = 'N',
    T_TRUE = 'T',
    T_FALSE = 'F',
    T_I8 = 'b',
    T_I32 = 'i',
    T_I64 = 'q',
    T_BIGINT = 'L',
    T_FLOAT = 'd',
    T_COMPLEX = 'j',
    T_STR = 's',
    T_BYTES = 'y',
    T_BYTEARRAY = 'a',
    T_TUPLE = 't',
    T_LIST = 'l',
    T_DICT = 'm',
    T_NDARRAY = 'n',
    T_ARRAY = 'r',
    T_MVIEW = 'v',
    T_PICKLE = 'p',
    T_REDUCE = 'R',
};

enum { ND_FORTRAN = 1, ND_READONLY = 2 };

/* enc_value's return when a container is nested too deep: no exception is
 * set, and cpy_enc_add pickles the whole value instead. */
#define ENC_DEEP (-2)
/* enc_ndarray/enc_array: not for the fast path, pickle it. */
#define ENC_DECLINE 1

/* Types and functions of modules looked up the first time they are needed
 * live in the module state (cpy_state.codec): numpy is imported only to
 * decode an array, never to encode (an array exists only if numpy was
 * imported). */

/* A keyword-names tuple for vectorcall, made once (borrowed). */
static PyObject *kwnames(PyObject **slot, const char *name) {
    if (!*slot)
        *slot = Py_BuildValue("(s)", name);
    return *slot;
}

struct cpy_enc_oob {
    Py_buffer view; /* holds a strong reference to the exporter (view.obj) */
    size_t pos;     /* offset of the record's u64 offset field in the stream */
    int gather;     /* not contiguous: copy element by element in C order */
};

static size_t align64(size_t n) {
    return (n + 63) & ~(size_t)63;
}

/* ---- the inline stream -------------------------------------------------- */

void cpy_enc_init(cpy_enc *e, cpy_state *st) {
    e->st = st;
    e->buf = e->small;
    e->len = 0;
    e->cap = sizeof e->small;
    e->oob = NULL;
    e->noob = e->capoob = 0;
    e->depth = 0;
}

static int grow(cpy_enc *e, size_t n) {
    size_t need = e->len + n, cap = e->cap * 2;
    if (need < n) { /* overflow */
        PyErr_NoMemory();
        return -1;
    }
    if (cap < need)
        cap = need;
    char *nb;
    if (e->buf == e->small) {
        nb = PyMem_Malloc(cap);
        if (nb)
            memcpy(nb, e->buf, e->len);
    } else {
        nb = PyMem_Realloc(e->buf, cap);
    }
    if (!nb) {
        PyErr_NoMemory();
        return -1;
    }
    e->buf = nb;
    e->cap = cap;
    return 0;
}

/* Room for n more bytes of stream. */
static inline int reserve(cpy_enc *e, size_t n) {
    return e->cap - e->len >= n ? 0 : grow(e, n);
}

/* Write v as a varint at q (at most 10 bytes); returns the bytes written. */
static inline size_t varint_put(char *q, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        q[n++] = (char)(v | 0x80);
        v >>= 7;
    }
    q[n++] = (char)v;
    return n;
}

/* The following put_* need the room reserved by the caller. */
static inline void put_u8(cpy_enc *e, int v) {
    e->buf[e->len++] = (char)v;
}
static inline void put_varint(cpy_enc *e, uint64_t v) {
    e->len += varint_put(e->buf + e->len, v);
}
static inline void put_raw(cpy_enc *e, const void *src, size_t n) {
    memcpy(e->buf + e->len, src, n);
    e->len += n;
}

/* Copy `ndim`-dimensional strided data into dst in C order; returns the end
 * of what was written. Exporters give shapes and strides that fit their
 * memory, so this reads only inside the buffer. */
static char *gather(char *dst, const char *src, int ndim, const Py_ssize_t *shape,
                    const Py_ssize_t *strides, Py_ssize_t itemsize) {
    if (ndim == 0) {
        memcpy(dst, src, (size_t)itemsize);
        return dst + itemsize;
    }
    if (ndim == 1) {
        if (strides[0] == itemsize) {
            memcpy(dst, src, (size_t)(shape[0] * itemsize));
            return dst + shape[0] * itemsize;
        }
        for (Py_ssize_t i = 0; i < shape[0]; i++, dst += itemsize)
            memcpy(dst, src + i * strides[0], (size_t)itemsize);
        return dst;
    }
    for (Py_ssize_t i = 0; i < shape[0]; i++)
        dst = gather(dst, src + i * strides[0], ndim - 1, shape + 1, strides + 1,
                     itemsize);
    return dst;
}

static void copy_view(char *dst, const Py_buffer *v, int gathered) {
    if (gathered)
        gather(dst, v->buf, v->ndim, v->shape, v->strides, v->itemsize);
    else if (v->len)
        memcpy(dst, v->buf, (size_t)v->len);
}

/* Reference the data of *v out of band. Takes over the view: on success
 * the encoder releases it in cpy_enc_release, on failure it is released
 * here. */
static int put_oob(cpy_enc *e, Py_buffer *v, int gathered) {
    struct cpy_enc_oob *rec = NULL;
    if (reserve(e, 18) < 0)
        goto fail;
    if (e->noob == e->capoob) {
        size_t cap = e->capoob ? 2 * e->capoob : 4;
        struct cpy_enc_oob **na = PyMem_Realloc(e->oob, cap * sizeof *na);
        if (!na) {
            PyErr_NoMemory();
            goto fail;
        }
        e->oob = na;
        e->capoob = cap;
    }
    rec = PyMem_Malloc(sizeof *rec);
    if (!rec) {
        PyErr_NoMemory();
        goto fail;
    }
    put_varint(e, ((uint64_t)v->len << 1) | 1);
    rec->view = *v;
    rec->pos = e->len;
    rec->gather = gathered;
    memset(e->buf + e->len, 0, 8); /* the offset, patched by cpy_enc_write */
    e->len += 8;
    e->oob[e->noob++] = rec;
    return 0;
fail:
    PyBuffer_Release(v);
    return -1;
}

/* The `data` of a record from the memory of an immutable object (`obj`,
 * borrowed, keeps ptr valid). */
static int put_data(cpy_enc *e, PyObject *obj, const char *ptr, size_t len) {
    if (len < CPY_OOB_MIN) {
        if (reserve(e, 10 + len) < 0)
            return -1;
        put_varint(e, (uint64_t)len << 1);
        put_raw(e, ptr, len);
        return 0;
    }
    Py_buffer v;
    if (PyBuffer_FillInfo(&v, obj, (void *)ptr, (Py_ssize_t)len, 1, PyBUF_SIMPLE) < 0)
        return -1;
    return put_oob(e, &v, 0);
}

/* The `data` of a record from a buffer view, which this takes over. */
static int put_view(cpy_enc *e, Py_buffer *v, int gathered) {
    size_t len = (size_t)v->len;
    if (len >= CPY_OOB_MIN)
        return put_oob(e, v, gathered);
    if (reserve(e, 10 + len) < 0) {
        PyBuffer_Release(v);
        return -1;
    }
    put_varint(e, (uint64_t)len << 1);
    copy_view(e->buf + e->len, v, gathered);
    e->len += len;
    PyBuffer_Release(v);
    return 0;
}

/* ---- values ------------------------------------------------------------- */

/* Turn the pending exception into "cannot serialize object of type X:
 * <reason>" (a TypeError whose __cause__ is the original), unless it is
 * not an Exception (KeyboardInterrupt) or a MemoryError. */
static void serialize_error(PyObject *obj) {
    if (!PyErr_ExceptionMatches(PyExc_Exception) ||
        PyErr_ExceptionMatches(PyExc_MemoryError))
        return;
    PyObject *v = cpy_take_exception();
    PyErr_Format(PyExc_TypeError, "cannot serialize object of type %s: %S",
                 Py_TYPE(obj)->tp_name, v ? v : Py_None);
    cpy_set_cause(v);
}

/* pickle.dumps's buffer_callback (self: a list, borrowed): small buffers
 * stay in the pickle, big ones are collected to travel out of band. */
static PyObject *collect_buffer(PyObject *list, PyObject *pb) {
    Py_buffer v;
    if (PyObject_GetBuffer(pb, &v, PyBUF_RECORDS_RO) < 0)
        return NULL;
    Py_ssize_t len = v.len;
    PyBuffer_Release(&v);
    if (len < CPY_OOB_MIN)
        Py_RETURN_TRUE; /* in band */
    if (PyList_Append(list, pb) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef collect_buffer_def = {"buffer_callback", collect_buffer, METH_O,
                                         NULL};

static int enc_pickle(cpy_enc *e, PyObject *obj) {
    PyObject *bufs = PyList_New(0), *cb = NULL, *proto = NULL, *pk = NULL;
    PyObject *kw = kwnames(&e->st->codec.kw_callback, "buffer_callback"); /* borrowed */
    int rc = -1;
    /* Below protocol 5 (charm.options.pickle_protocol) buffers stay in the
     * pickle. */
    int oob = e->st->pickle_protocol >= 5;
    if (!bufs || !kw || !(cb = PyCFunction_New(&collect_buffer_def, bufs)) ||
        !(proto = PyLong_FromLong(e->st->pickle_protocol)))
        goto done;
    PyObject *args[3] = {obj, proto, cb};
    pk = PyObject_Vectorcall(e->st->dumps, args, 2, oob ? kw : NULL);
    if (!pk) {
        serialize_error(obj);
        goto done;
    }
    if (!PyBytes_Check(pk)) {
        PyErr_SetString(PyExc_TypeError, "pickle.dumps did not return bytes");
        goto done;
    }
    if (reserve(e, 1) < 0)
        goto done;
    put_u8(e, T_PICKLE);
    if (put_data(e, pk, PyBytes_AS_STRING(pk), (size_t)PyBytes_GET_SIZE(pk)) < 0)
        goto done;
    Py_ssize_t n = PyList_GET_SIZE(bufs);
    if (reserve(e, 10) < 0)
        goto done;
    put_varint(e, (uint64_t)n);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_buffer v;
        if (PyObject_GetBuffer(PyList_GET_ITEM(bufs, i), &v, PyBUF_RECORDS_RO) < 0)
            goto done;
        if (!PyBuffer_IsContiguous(&v, 'A')) { /* pickle refuses those already */
            PyBuffer_Release(&v);
            PyErr_Format(PyExc_TypeError,
                         "cannot serialize object of type %s: a non-contiguous buffer "
                         "went out of band",
                         Py_TYPE(obj)->tp_name);
            goto done;
        }
        /* Contiguous in C or Fortran order: pickle wants the raw memory. */
        if (put_view(e, &v, 0) < 0)
            goto done;
    }
    rc = 0;
done:
    Py_XDECREF(bufs);
    Py_XDECREF(cb);
    Py_XDECREF(proto);
    Py_XDECREF(pk);
    return rc;
}

/* An int beyond 64 bits: sign and magnitude through int.to_bytes, the one
 * public API for that in every supported Python version. Rare enough. */
static int enc_bigint(cpy_enc *e, PyObject *obj) {
    PyObject *zero = PyLong_FromLong(0);
    int neg = zero ? PyObject_RichCompareBool(obj, zero, Py_LT) : -1;
    Py_XDECREF(zero);
    if (neg < 0)
        return -1;
    PyObject *mag = PyNumber_Absolute(obj), *nbits = NULL, *b = NULL;
    int rc = -1;
    if (!mag || !(nbits = PyObject_CallMethod(mag, "bit_length", NULL)))
        goto done;
    Py_ssize_t bits = PyLong_AsSsize_t(nbits);
    if (bits < 0 && PyErr_Occurred())
        goto done;
    b = PyObject_CallMethod(mag, "to_bytes", "ns", (bits + 7) / 8, "little");
    if (!b || reserve(e, 2) < 0)
        goto done;
    put_u8(e, T_BIGINT);
    put_u8(e, neg);
    rc = put_data(e, b, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b));
done:
    Py_XDECREF(mag);
    Py_XDECREF(nbits);
    Py_XDECREF(b);
    return rc;
}

static int enc_int(cpy_enc *e, PyObject *obj) {
    int ovf;
    long long v = PyLong_AsLongLongAndOverflow(obj, &ovf);
    if (ovf)
        return enc_bigint(e, obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (reserve(e, 9) < 0)
        return -1;
    if (v >= INT8_MIN && v <= INT8_MAX) {
        put_u8(e, T_I8);
        put_u8(e, (int)(int8_t)v);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        int32_t w = (int32_t)v;
        put_u8(e, T_I32);
        put_raw(e, &w, 4);
    } else {
        int64_t w = (int64_t)v;
        put_u8(e, T_I64);
        put_raw(e, &w, 8);
    }
    return 0;
}

static int enc_str(cpy_enc *e, PyObject *obj) {
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(obj) < 0)
        return -1;
#endif
    if (PyUnicode_IS_ASCII(obj)) {
        size_t n = (size_t)PyUnicode_GET_LENGTH(obj);
        if (reserve(e, 1) < 0)
            return -1;
        put_u8(e, T_STR);
        return put_data(e, obj, PyUnicode_DATA(obj), n);
    }
    /* A temporary utf-8 copy rather than PyUnicode_AsUTF8AndSize, which
     * would keep one inside the caller's string for as long as it lives. */
    PyObject *u = PyUnicode_AsUTF8String(obj);
    if (!u) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            return -1;
        PyErr_Clear(); /* lone surrogates: pickle keeps them */
        return enc_pickle(e, obj);
    }
    int rc = reserve(e, 1);
    if (rc == 0) {
        put_u8(e, T_STR);
        rc = put_data(e, u, PyBytes_AS_STRING(u), (size_t)PyBytes_GET_SIZE(u));
    }
    Py_DECREF(u);
    return rc;
}

static int enc_value(cpy_enc *e, PyObject *obj);

/* Items are held while they are encoded: pickling one may run code that
 * changes the container. */
static int enc_seq(cpy_enc *e, PyObject *obj, int is_list) {
    Py_ssize_t n = Py_SIZE(obj);
    if (e->depth >= CPY_ENC_MAXDEPTH)
        return ENC_DEEP;
    if (reserve(e, 11) < 0)
        return -1;
    put_u8(e, is_list ? T_LIST : T_TUPLE);
    put_varint(e, (uint64_t)n);
    e->depth++;
    for (Py_ssize_t i = 0; i < n; i++) {
        int rc;
        if (is_list) {
            if (i >= PyList_GET_SIZE(obj))
                break;
            PyObject *item = PyList_GET_ITEM(obj, i);
            Py_INCREF(item);
            rc = enc_value(e, item);
            Py_DECREF(item);
        } else {
            rc = enc_value(e, PyTuple_GET_ITEM(obj, i));
        }
        if (rc != 0) {
            e->depth--;
            return rc;
        }
    }
    e->depth--;
    if (Py_SIZE(obj) != n) {
        PyErr_SetString(PyExc_RuntimeError, "list changed size during serialization");
        return -1;
    }
    return 0;
}

static int enc_dict(cpy_enc *e, PyObject *obj) {
    Py_ssize_t n = PyDict_GET_SIZE(obj), pos = 0, i = 0;
    PyObject *k, *v;
    if (e->depth >= CPY_ENC_MAXDEPTH)
        return ENC_DEEP;
    if (reserve(e, 11) < 0)
        return -1;
    put_u8(e, T_DICT);
    put_varint(e, (uint64_t)n);
    e->depth++;
    while (i < n && PyDict_Next(obj, &pos, &k, &v)) {
        Py_INCREF(k);
        Py_INCREF(v);
        int rc = enc_value(e, k);
        if (rc == 0)
            rc = enc_value(e, v);
        Py_DECREF(k);
        Py_DECREF(v);
        if (rc != 0) {
            e->depth--;
            return rc;
        }
        i++;
    }
    e->depth--;
    if (i != n || PyDict_GET_SIZE(obj) != n) {
        PyErr_SetString(PyExc_RuntimeError,
                        "dictionary changed size during serialization");
        return -1;
    }
    return 0;
}

static int enc_bytearray(cpy_enc *e, PyObject *obj) {
    if (reserve(e, 1) < 0)
        return -1;
    put_u8(e, T_BYTEARRAY);
    size_t n = (size_t)PyByteArray_GET_SIZE(obj);
    if (n < CPY_OOB_MIN)
        return put_data(e, obj, PyByteArray_AS_STRING(obj), n); /* copied now */
    /* Out of band: a real export, which stops the bytearray from being
     * resized until the encoder is released. */
    Py_buffer v;
    if (PyObject_GetBuffer(obj, &v, PyBUF_SIMPLE) < 0)
        return -1;
    return put_oob(e, &v, 0);
}

/* The formats memoryview.cast accepts, which the receiver uses to rebuild
 * the view. */
static const char mview_formats[] = "cbB?hHiIlLqQnNfdP";

static int enc_mview(cpy_enc *e, PyObject *obj) {
    Py_buffer v;
    if (PyObject_GetBuffer(obj, &v, PyBUF_FULL_RO) < 0) { /* e.g. released */
        serialize_error(obj);
        return -1;
    }
    const char *fmt = v.format ? v.format : "B";
    if (fmt[0] == '@')
        fmt++;
    if (!fmt[0] || fmt[1] || !strchr(mview_formats, fmt[0]) || v.ndim > 255 ||
        v.suboffsets) {
        PyErr_Format(PyExc_TypeError,
                     "cannot serialize object of type memoryview: format '%s' is not "
                     "one of the native single-item formats '%s'",
                     v.format ? v.format : "B", mview_formats);
        PyBuffer_Release(&v);
        return -1;
    }
    if (reserve(e, 4 + 10 * (size_t)v.ndim) < 0) {
        PyBuffer_Release(&v);
        return -1;
    }
    put_u8(e, T_MVIEW);
    put_u8(e, fmt[0]);
    put_u8(e, v.readonly ? 1 : 0);
    put_u8(e, v.ndim);
    for (int i = 0; i < v.ndim; i++)
        put_varint(e, (uint64_t)v.shape[i]);
    return put_view(e, &v, !PyBuffer_IsContiguous(&v, 'C'));
}

/* Non-zero when tp is the type `attr` of the imported module `mod`, whose
 * tp_name is `tpname`; remembers the type in *slot the first time. Never
 * imports anything: an instance exists only once its module is loaded. */
static int is_type(PyTypeObject *tp, PyObject **slot, const char *tpname,
                   const char *mod, const char *attr) {
    if (*slot)
        return (PyObject *)tp == *slot;
    if (strcmp(tp->tp_name, tpname) != 0)
        return 0;
    PyObject *name = PyUnicode_FromString(mod);
    PyObject *m = name ? PyImport_GetModule(name) : NULL;
    PyObject *t = m ? PyObject_GetAttrString(m, attr) : NULL;
    Py_XDECREF(name);
    Py_XDECREF(m);
    PyErr_Clear();
    if (t == (PyObject *)tp) {
        *slot = t; /* kept */
        return 1;
    }
    Py_XDECREF(t);
    return 0;
}

/* An exact numpy.ndarray of a plain dtype; ENC_DECLINE for the others
 * (objects, records, datetimes, empty items), which pickle handles. */
static int enc_ndarray(cpy_enc *e, PyObject *obj) {
    PyObject *dtype = PyObject_GetAttrString(obj, "dtype");
    PyObject *kind = dtype ? PyObject_GetAttrString(dtype, "kind") : NULL;
    PyObject *dstr = kind ? PyObject_GetAttrString(dtype, "str") : NULL;
    Py_XDECREF(dtype);
    int rc = ENC_DECLINE;
    Py_buffer v;
    const char *k = kind && PyUnicode_Check(kind) ? PyUnicode_AsUTF8(kind) : NULL;
    Py_ssize_t dlen = 0;
    const char *ds =
        dstr && PyUnicode_Check(dstr) ? PyUnicode_AsUTF8AndSize(dstr, &dlen) : NULL;
    if (!k || !ds || strlen(k) != 1 || !strchr("biufcSU", k[0]) || dlen > 255) {
        PyErr_Clear();
        goto done;
    }
    if (PyObject_GetBuffer(obj, &v, PyBUF_RECORDS_RO) < 0) {
        PyErr_Clear();
        goto done;
    }
    if (v.itemsize <= 0 || v.ndim > 255) {
        PyBuffer_Release(&v);
        goto done;
    }
    int flags = v.readonly ? ND_READONLY : 0, gathered = 0;
    if (v.ndim > 1 && !PyBuffer_IsContiguous(&v, 'C')) {
        if (PyBuffer_IsContiguous(&v, 'F'))
            flags |= ND_FORTRAN;
        else
            gathered = 1;
    } else if (v.ndim == 1 && v.strides[0] != v.itemsize && v.shape[0] > 1) {
        gathered = 1;
    }
    rc = -1;
    if (reserve(e, 13 + (size_t)dlen + 10 * (size_t)v.ndim) < 0) {
        PyBuffer_Release(&v);
        goto done;
    }
    put_u8(e, T_NDARRAY);
    put_varint(e, (uint64_t)dlen);
    put_raw(e, ds, (size_t)dlen);
    put_u8(e, v.ndim);
    for (int i = 0; i < v.ndim; i++)
        put_varint(e, (uint64_t)v.shape[i]);
    put_u8(e, flags);
    rc = put_view(e, &v, gathered);
done:
    Py_XDECREF(kind);
    Py_XDECREF(dstr);
    return rc;
}

static int enc_array(cpy_enc *e, PyObject *obj) {
    PyObject *tc = PyObject_GetAttrString(obj, "typecode");
    const char *s = tc && PyUnicode_Check(tc) ? PyUnicode_AsUTF8(tc) : NULL;
    int c = s && s[0] && !s[1] ? (unsigned char)s[0] : 0;
    Py_XDECREF(tc);
    Py_buffer v;
    if (!c || PyObject_GetBuffer(obj, &v, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return ENC_DECLINE;
    }
    if (reserve(e, 2) < 0) {
        PyBuffer_Release(&v);
        return -1;
    }
    put_u8(e, T_ARRAY);
    put_u8(e, c);
    return put_view(e, &v, 0);
}

static int enc_value(cpy_enc *e, PyObject *obj);

/* An instance of the id-th codec_reducible class: its __reduce__'s
 * arguments, when it returns (rebuild, args) as registered; else pickled. */
static int enc_reduce(cpy_enc *e, PyObject *obj, int id) {
    cpy_codec_cache *c = &e->st->codec;
    if (!c->s_reduce && !(c->s_reduce = PyUnicode_InternFromString("__reduce__")))
        return -1;
    PyObject *r = PyObject_CallMethodNoArgs(obj, c->s_reduce);
    if (!r)
        return -1;
    int rc;
    if (PyTuple_CheckExact(r) && PyTuple_GET_SIZE(r) == 2 &&
        PyTuple_GET_ITEM(r, 0) == c->red_funcs[id] && PyTuple_CheckExact(PyTuple_GET_ITEM(r, 1))) {
        rc = reserve(e, 2);
        if (rc == 0) {
            put_u8(e, T_REDUCE);
            put_u8(e, id);
            rc = enc_value(e, PyTuple_GET_ITEM(r, 1));
        }
    } else {
        rc = enc_pickle(e, obj);
    }
    Py_DECREF(r);
    return rc;
}

/* Returns 0, -1 with an exception, or ENC_DEEP. */
static int enc_value(cpy_enc *e, PyObject *obj) {
    PyTypeObject *tp = Py_TYPE(obj);
    if (tp == &PyLong_Type)
        return enc_int(e, obj);
    if (tp == &PyUnicode_Type)
        return enc_str(e, obj);
    if (tp == &PyFloat_Type) {
        double d = PyFloat_AS_DOUBLE(obj);
        if (reserve(e, 9) < 0)
            return -1;
        put_u8(e, T_FLOAT);
        put_raw(e, &d, 8);
        return 0;
    }
    if (tp == &PyTuple_Type)
        return enc_seq(e, obj, 0);
    if (obj == Py_None || obj == Py_True || obj == Py_False) {
        if (reserve(e, 1) < 0)
            return -1;
        put_u8(e, obj == Py_None ? T_NONE : obj == Py_True ? T_TRUE : T_FALSE);
        return 0;
    }
    if (tp == &PyList_Type)
        return enc_seq(e, obj, 1);
    if (tp == &PyDict_Type)
        return enc_dict(e, obj);
    if (tp == &PyBytes_Type) {
        if (reserve(e, 1) < 0)
            return -1;
        put_u8(e, T_BYTES);
        return put_data(e, obj, PyBytes_AS_STRING(obj), (size_t)PyBytes_GET_SIZE(obj));
    }
    if (tp == &PyByteArray_Type)
        return enc_bytearray(e, obj);
    if (tp == &PyComplex_Type) {
        double d[2] = {PyComplex_RealAsDouble(obj), PyComplex_ImagAsDouble(obj)};
        if (reserve(e, 17) < 0)
            return -1;
        put_u8(e, T_COMPLEX);
        put_raw(e, d, 16);
        return 0;
    }
    if (tp == &PyMemoryView_Type)
        return enc_mview(e, obj);
    for (int i = 0; i < e->st->codec.nred; i++)
        if ((PyObject *)tp == e->st->codec.red_types[i])
            return enc_reduce(e, obj, i);
    int rc = ENC_DECLINE;
    if (is_type(tp, &e->st->codec.ndarray, "numpy.ndarray", "numpy", "ndarray"))
        rc = enc_ndarray(e, obj);
    else if (is_type(tp, &e->st->codec.array, "array.array", "array", "array"))
        rc = enc_array(e, obj);
    return rc == ENC_DECLINE ? enc_pickle(e, obj) : rc;
}

/* Drop what was added after the stream had `len` bytes and `noob` buffers. */
static void rollback(cpy_enc *e, size_t len, size_t noob) {
    while (e->noob > noob) {
        struct cpy_enc_oob *rec = e->oob[--e->noob];
        PyBuffer_Release(&rec->view);
        PyMem_Free(rec);
    }
    e->len = len;
}

int cpy_enc_add(cpy_enc *e, PyObject *obj) {
    size_t len = e->len, noob = e->noob;
    e->depth = 0;
    int rc = enc_value(e, obj);
    if (rc == ENC_DEEP) {
        /* Too deep for the fast path, or a cycle: pickle knows both. */
        rollback(e, len, noob);
        rc = enc_pickle(e, obj);
    }
    return rc;
}

size_t cpy_enc_size(const cpy_enc *e) {
    size_t n = e->len;
    for (size_t i = 0; i < e->noob; i++)
        n = align64(n) + (size_t)e->oob[i]->view.len;
    return n;
}

void cpy_enc_write_inline(const cpy_enc *e, char *dst) {
    memcpy(dst, e->buf, e->len);
    size_t n = e->len;
    for (size_t i = 0; i < e->noob; i++) {
        const struct cpy_enc_oob *rec = e->oob[i];
        size_t at = align64(n);
        uint64_t rel = (uint64_t)(at - rec->pos);
        memcpy(dst + rec->pos, &rel, 8);
        n = at + (size_t)rec->view.len;
    }
}

void cpy_enc_write(const cpy_enc *e, char *dst) {
    cpy_enc_write_inline(e, dst);
    size_t n = e->len;
    for (size_t i = 0; i < e->noob; i++) {
        const struct cpy_enc_oob *rec = e->oob[i];
        size_t at = align64(n);
        memset(dst + n, 0, at - n);
        copy_view(dst + at, &rec->view, rec->gather);
        n = at + (size_t)rec->view.len;
    }
}

size_t cpy_enc_inline_size(const cpy_enc *e) { return e->len; }

Py_ssize_t cpy_enc_contiguous_oob(const cpy_enc *e) {
    for (size_t i = 0; i < e->noob; i++)
        if (e->oob[i]->gather)
            return -1;
    return (Py_ssize_t)e->noob;
}

void cpy_enc_take_oob(cpy_enc *e, Py_buffer *views) {
    for (size_t i = 0; i < e->noob; i++) {
        views[i] = e->oob[i]->view;
        PyMem_Free(e->oob[i]);
    }
    e->noob = 0;
}

void cpy_enc_release(cpy_enc *e) {
    rollback(e, 0, 0);
    PyMem_Free(e->oob);
    e->oob = NULL;
    e->capoob = 0;
    if (e->buf != e->small)
        PyMem_Free(e->buf);
    e->buf = e->small;
    e->cap = sizeof e->small;
}

/* ---- decoding ----------------------------------------------------------- */

typedef struct dec {
    cpy_state *st;
    const char *p, *end;
    PyObject *owner;  /* borrowed, or NULL */
    PyObject *mv;     /* strong: a byte memoryview of owner, made on first use */
    const char *mbuf; /* ... and the memory it shows */
    size_t mlen;
} dec;

/* Data of a record: where it lies, and whether it is out of band. */
typedef struct dref {
    const char *ptr;
    size_t len;
    int oob;
} dref;

static PyObject *corrupt(const char *why) {
    PyErr_Format(PyExc_ValueError, "corrupt message: %s", why);
    return NULL;
}

/* Replace the pending exception, raised while rebuilding a value from
 * malformed data, by "corrupt message" (keeping it as the cause). */
static PyObject *corrupt_from(const char *why) {
    if (PyErr_ExceptionMatches(PyExc_MemoryError))
        return NULL;
    PyObject *v = cpy_take_exception();
    PyErr_Format(PyExc_ValueError, "corrupt message: %s (%S)", why, v ? v : Py_None);
    cpy_set_cause(v);
    return NULL;
}

static inline size_t left(const dec *d) {
    return (size_t)(d->end - d->p);
}

static int get_varint(dec *d, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (d->p >= d->end) {
            corrupt("truncated");
            return -1;
        }
        unsigned char c = (unsigned char)*d->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    corrupt("bad varint");
    return -1;
}

/* A count of items that each take at least `unit` bytes of what is left. */
static int get_count(dec *d, size_t unit, Py_ssize_t *out) {
    uint64_t n;
    if (get_varint(d, &n) < 0)
        return -1;
    if (n > left(d) / unit) {
        corrupt("truncated");
        return -1;
    }
    *out = (Py_ssize_t)n;
    return 0;
}

static int get_u8(dec *d, int *out) {
    if (d->p >= d->end) {
        corrupt("truncated");
        return -1;
    }
    *out = (unsigned char)*d->p++;
    return 0;
}

static int get_dref(dec *d, dref *r) {
    uint64_t h;
    if (get_varint(d, &h) < 0)
        return -1;
    r->len = (size_t)(h >> 1);
    r->oob = (int)(h & 1);
    if (!r->oob) {
        if (r->len > left(d)) {
            corrupt("truncated");
            return -1;
        }
        r->ptr = d->p;
        d->p += r->len;
        return 0;
    }
    if (left(d) < 8) {
        corrupt("truncated");
        return -1;
    }
    const char *field = d->p;
    uint64_t rel;
    memcpy(&rel, field, 8);
    d->p += 8;
    size_t room = (size_t)(d->end - field);
    if (rel < 8 || rel > room || r->len > room - rel) {
        corrupt("out-of-band data out of bounds");
        return -1;
    }
    r->ptr = field + rel;
    return 0;
}

/* A zero-copy view of [ptr, ptr+len) inside the owner's memory. */
static PyObject *owner_slice(dec *d, const char *ptr, size_t len) {
    if (!d->mv) {
        PyObject *mv = PyMemoryView_FromObject(d->owner);
        if (!mv)
            return NULL;
        Py_buffer *b = PyMemoryView_GET_BUFFER(mv);
        if (b->itemsize != 1 || b->ndim != 1 || (b->format && strcmp(b->format, "B"))) {
            PyObject *cast = PyObject_CallMethod(mv, "cast", "s", "B");
            Py_DECREF(mv);
            if (!cast)
                return NULL;
            mv = cast;
            b = PyMemoryView_GET_BUFFER(mv);
        }
        d->mv = mv;
        d->mbuf = b->buf;
        d->mlen = (size_t)b->len;
    }
    if (ptr < d->mbuf || (size_t)(ptr - d->mbuf) > d->mlen ||
        len > d->mlen - (size_t)(ptr - d->mbuf)) {
        PyErr_SetString(
            PyExc_ValueError,
            "decoding with an owner whose buffer does not hold the message");
        return NULL;
    }
    Py_ssize_t a = ptr - d->mbuf;
    return PySequence_GetSlice(d->mv, a, a + (Py_ssize_t)len);
}

/* A writable buffer object with the data: a view of the owner's memory
 * (out-of-band data, when there is an owner) or a bytearray copy. */
static PyObject *data_object(dec *d, const dref *r) {
    if (r->oob && d->owner)
        return owner_slice(d, r->ptr, r->len);
    return PyByteArray_FromStringAndSize(r->ptr, (Py_ssize_t)r->len);
}

/* A temporary read-only memoryview of decoded memory, for a call that
 * copies from it; release_temp() makes sure no one keeps it. */
static PyObject *temp_view(const dref *r) {
    return PyMemoryView_FromMemory((char *)r->ptr, (Py_ssize_t)r->len, PyBUF_READ);
}

static void release_temp(PyObject *mv) {
    if (!mv)
        return;
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyObject *r = PyObject_CallMethod(mv, "release", NULL);
    Py_XDECREF(r);
    PyErr_Clear(); /* only if the callee kept an export of it */
    PyErr_Restore(t, v, tb);
    Py_DECREF(mv);
}

static PyObject *dec_value(dec *d, int depth);

static PyObject *dec_bigint(dec *d) {
    int neg = 0; /* set by get_u8 on success; GCC -O3 cannot tell */
    dref r;
    if (get_u8(d, &neg) < 0 || get_dref(d, &r) < 0)
        return NULL;
    PyObject *mv = temp_view(&r);
    PyObject *mag = mv ? PyObject_CallMethod((PyObject *)&PyLong_Type, "from_bytes",
                                             "Os", mv, "little")
                       : NULL;
    release_temp(mv);
    if (!mag || !neg)
        return mag;
    PyObject *v = PyNumber_Negative(mag);
    Py_DECREF(mag);
    return v;
}

static PyObject *dec_seq(dec *d, int depth, int is_list) {
    Py_ssize_t n;
    if (get_count(d, 1, &n) < 0)
        return NULL;
    PyObject *seq = is_list ? PyList_New(n) : PyTuple_New(n);
    if (!seq)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = dec_value(d, depth + 1);
        if (!item) {
            Py_DECREF(seq); /* the items not set yet are NULL */
            return NULL;
        }
        if (is_list)
            PyList_SET_ITEM(seq, i, item);
        else
            PyTuple_SET_ITEM(seq, i, item);
    }
    return seq;
}

static PyObject *dec_dict(dec *d, int depth) {
    Py_ssize_t n;
    if (get_count(d, 2, &n) < 0)
        return NULL;
    PyObject *dict = PyDict_New();
    if (!dict)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *k = dec_value(d, depth + 1);
        PyObject *v = k ? dec_value(d, depth + 1) : NULL;
        int rc = v ? PyDict_SetItem(dict, k, v) : -1;
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (rc < 0) {
            Py_DECREF(dict);
            if (v && PyErr_ExceptionMatches(PyExc_TypeError))
                return corrupt_from("a dictionary key is not hashable");
            return NULL;
        }
    }
    return dict;
}

static PyObject *get_numpy(cpy_codec_cache *cache) {
    if (!cache->frombuffer) {
        PyObject *np = PyImport_ImportModule("numpy");
        if (!np)
            return NULL;
        cache->frombuffer = PyObject_GetAttrString(np, "frombuffer");
        Py_DECREF(np);
        if (!cache->frombuffer)
            return NULL;
    }
    if (!cache->dtypes && !(cache->dtypes = PyDict_New()))
        return NULL;
    return cache->frombuffer;
}

/* The shape of an array record: a tuple of ints. */
static PyObject *get_shape(dec *d, int ndim) {
    PyObject *shape = PyTuple_New(ndim);
    for (int i = 0; shape && i < ndim; i++) {
        uint64_t n;
        PyObject *v = NULL;
        if (get_varint(d, &n) == 0) {
            if (n > (uint64_t)PY_SSIZE_T_MAX)
                corrupt("bad shape");
            else
                v = PyLong_FromUnsignedLongLong(n);
        }
        if (!v) {
            Py_CLEAR(shape);
            break;
        }
        PyTuple_SET_ITEM(shape, i, v);
    }
    return shape;
}

static PyObject *dec_ndarray(dec *d) {
    Py_ssize_t dlen;
    int ndim, flags;
    if (get_count(d, 1, &dlen) < 0)
        return NULL;
    const char *ds = d->p;
    d->p += dlen;
    if (get_u8(d, &ndim) < 0)
        return NULL;
    PyObject *shape = get_shape(d, ndim), *buf = NULL, *arr = NULL, *dtype = NULL;
    dref r;
    if (!shape || get_u8(d, &flags) < 0 || get_dref(d, &r) < 0)
        goto done;
    PyObject *frombuffer = get_numpy(&d->st->codec);
    if (!frombuffer)
        goto done;
    PyObject *key = PyUnicode_DecodeASCII(ds, dlen, NULL);
    if (!key) {
        corrupt_from("bad dtype");
        goto done;
    }
    dtype = PyDict_GetItemWithError(d->st->codec.dtypes, key); /* borrowed */
    if (dtype) {
        Py_INCREF(dtype);
        Py_DECREF(key);
    } else if (PyErr_Occurred()) {
        Py_DECREF(key);
        goto done;
    } else {
        /* The key (not yet a dtype) is enough for frombuffer; the dtype it
         * makes is remembered below. Only well-formed strings are cached
         * (frombuffer fails on the others), and at most a few hundred. */
        dtype = key;
    }
    if (!(buf = data_object(d, &r)))
        goto done;
    PyObject *args[2] = {buf, dtype};
    arr = PyObject_Vectorcall(frombuffer, args, 2, NULL);
    if (!arr) {
        corrupt_from("bad array");
        goto done;
    }
    if (PyUnicode_Check(dtype) && PyDict_GET_SIZE(d->st->codec.dtypes) < 256) {
        PyObject *dt = PyObject_GetAttrString(arr, "dtype");
        if (!dt || PyDict_SetItem(d->st->codec.dtypes, dtype, dt) < 0)
            PyErr_Clear();
        Py_XDECREF(dt);
    }
    if (ndim != 1 || (flags & ND_FORTRAN)) {
        PyObject *res;
        if (flags & ND_FORTRAN) {
            /* Fortran order: the C-order array of the reversed shape,
             * transposed, without copying. */
            PyObject *rev = PyTuple_New(ndim);
            for (int i = 0; rev && i < ndim; i++) {
                PyObject *dim = PyTuple_GET_ITEM(shape, ndim - 1 - i);
                Py_INCREF(dim);
                PyTuple_SET_ITEM(rev, i, dim);
            }
            PyObject *t = rev ? PyObject_CallMethod(arr, "reshape", "(O)", rev) : NULL;
            Py_XDECREF(rev);
            res = t ? PyObject_GetAttrString(t, "T") : NULL;
            Py_XDECREF(t);
        } else {
            res = PyObject_CallMethod(arr, "reshape", "(O)", shape);
        }
        Py_SETREF(arr, res);
        if (!arr) {
            corrupt_from("bad array shape");
            goto done;
        }
    }
    if (flags & ND_READONLY) {
        PyObject *fl = PyObject_GetAttrString(arr, "flags");
        int rc = fl ? PyObject_SetAttrString(fl, "writeable", Py_False) : -1;
        Py_XDECREF(fl);
        if (rc < 0)
            Py_CLEAR(arr);
    }
done:
    Py_XDECREF(shape);
    Py_XDECREF(buf);
    Py_XDECREF(dtype);
    return arr;
}

static PyObject *dec_array(dec *d) {
    int tc = 0; /* as in dec_bigint */
    dref r;
    if (get_u8(d, &tc) < 0 || get_dref(d, &r) < 0)
        return NULL;
    if (!d->st->codec.array) {
        PyObject *m = PyImport_ImportModule("array");
        d->st->codec.array = m ? PyObject_GetAttrString(m, "array") : NULL;
        Py_XDECREF(m);
        if (!d->st->codec.array)
            return NULL;
    }
    char c = (char)tc;
    PyObject *code = PyUnicode_DecodeLatin1(&c, 1, NULL);
    PyObject *arr = code ? PyObject_CallOneArg(d->st->codec.array, code) : NULL;
    Py_XDECREF(code);
    if (!arr)
        return corrupt_from("bad array typecode");
    PyObject *mv = temp_view(&r);
    PyObject *res = mv ? PyObject_CallMethod(arr, "frombytes", "(O)", mv) : NULL;
    release_temp(mv);
    if (!res) {
        Py_DECREF(arr);
        return corrupt_from("bad array data");
    }
    Py_DECREF(res);
    return arr;
}

static PyObject *dec_mview(dec *d) {
    int fmt = 0, ro = 0, ndim = 0; /* as in dec_bigint */
    if (get_u8(d, &fmt) < 0 || get_u8(d, &ro) < 0 || get_u8(d, &ndim) < 0)
        return NULL;
    PyObject *shape = get_shape(d, ndim), *mv = NULL;
    dref r;
    if (!shape || get_dref(d, &r) < 0)
        goto done;
    if (!fmt || !strchr(mview_formats, fmt)) {
        corrupt("bad memoryview format");
        goto done;
    }
    PyObject *buf = data_object(d, &r);
    if (!buf)
        goto done;
    mv = PyMemoryView_FromObject(buf);
    Py_DECREF(buf);
    if (mv && (fmt != 'B' || ndim != 1)) {
        char f[2] = {(char)fmt, 0};
        Py_SETREF(mv, PyObject_CallMethod(mv, "cast", "sO", f, shape));
        if (!mv) {
            corrupt_from("bad memoryview shape");
            goto done;
        }
    }
    if (mv && ro)
        Py_SETREF(mv, PyObject_CallMethod(mv, "toreadonly", NULL));
done:
    Py_XDECREF(shape);
    return mv;
}

/* Whether the pending exception is a pickle.UnpicklingError: a malformed
 * pickle, as opposed to what unpickling good data may raise (a class that
 * does not exist here, an error in __setstate__). */
static int unpickling_error(cpy_codec_cache *cache) {
    if (!cache->unpickling_error) {
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        PyObject *m = PyImport_ImportModule("pickle");
        cache->unpickling_error =
            m ? PyObject_GetAttrString(m, "UnpicklingError") : NULL;
        Py_XDECREF(m);
        PyErr_Clear();
        PyErr_Restore(t, v, tb);
        if (!cache->unpickling_error)
            return 0;
    }
    return PyErr_ExceptionMatches(cache->unpickling_error);
}

static PyObject *dec_pickle(dec *d) {
    dref pk;
    Py_ssize_t n;
    if (get_dref(d, &pk) < 0 || get_count(d, 1, &n) < 0)
        return NULL;
    PyObject *bufs = n ? PyList_New(n) : NULL, *res = NULL, *data = NULL;
    if (n && !bufs)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        dref r;
        PyObject *b = get_dref(d, &r) == 0 ? data_object(d, &r) : NULL;
        if (!b)
            goto done;
        PyList_SET_ITEM(bufs, i, b);
    }
    /* A small pickle is cheaper to copy than to view (and release). */
    data =
        pk.oob ? temp_view(&pk) : PyBytes_FromStringAndSize(pk.ptr, (Py_ssize_t)pk.len);
    if (!data)
        goto done;
    if (n) {
        PyObject *kw = kwnames(&d->st->codec.kw_buffers, "buffers"); /* borrowed */
        PyObject *args[2] = {data, bufs};
        res = kw ? PyObject_Vectorcall(d->st->loads, args, 1, kw) : NULL;
    } else {
        res = PyObject_CallOneArg(d->st->loads, data);
    }
    if (!res && (PyErr_ExceptionMatches(PyExc_EOFError) || unpickling_error(&d->st->codec)))
        corrupt_from("bad pickle");
done:
    if (pk.oob)
        release_temp(data);
    else
        Py_XDECREF(data);
    Py_XDECREF(bufs);
    return res;
}

static PyObject *dec_reduce(dec *d, int depth) {
    int id = 0;
    if (get_u8(d, &id) < 0)
        return NULL;
    if (id >= d->st->codec.nred)
        return corrupt("unknown reducible class (does every PE run the same program?)");
    PyObject *args = dec_value(d, depth + 1);
    if (!args)
        return NULL;
    PyObject *r = PyTuple_CheckExact(args) ? PyObject_Call(d->st->codec.red_funcs[id], args, NULL)
                                           : corrupt("a reducible's arguments are not a tuple");
    Py_DECREF(args);
    return r;
}

static PyObject *dec_value(dec *d, int depth) {
    if (d->p >= d->end)
        return corrupt("truncated");
    int tag = (unsigned char)*d->p++;
    switch (tag) {
    case T_NONE: Py_RETURN_NONE;
    case T_TRUE: Py_RETURN_TRUE;
    case T_FALSE: Py_RETURN_FALSE;
    case T_I8:
        if (left(d) < 1)
            return corrupt("truncated");
        return PyLong_FromLong((int8_t)*d->p++);
    case T_I32: {
        int32_t v;
        if (left(d) < 4)
            return corrupt("truncated");
        memcpy(&v, d->p, 4);
        d->p += 4;
        return PyLong_FromLong(v);
    }
    case T_I64: {
        int64_t v;
        if (left(d) < 8)
            return corrupt("truncated");
        memcpy(&v, d->p, 8);
        d->p += 8;
        return PyLong_FromLongLong(v);
    }
    case T_BIGINT: return dec_bigint(d);
    case T_FLOAT: {
        double v;
        if (left(d) < 8)
            return corrupt("truncated");
        memcpy(&v, d->p, 8);
        d->p += 8;
        return PyFloat_FromDouble(v);
    }
    case T_COMPLEX: {
        double v[2];
        if (left(d) < 16)
            return corrupt("truncated");
        memcpy(v, d->p, 16);
        d->p += 16;
        return PyComplex_FromDoubles(v[0], v[1]);
    }
    case T_STR: {
        dref r;
        if (get_dref(d, &r) < 0)
            return NULL;
        PyObject *s = PyUnicode_DecodeUTF8(r.ptr, (Py_ssize_t)r.len, NULL);
        return s ? s : corrupt_from("bad utf-8");
    }
    case T_BYTES:
    case T_BYTEARRAY: {
        dref r;
        if (get_dref(d, &r) < 0)
            return NULL;
        return tag == T_BYTES ? PyBytes_FromStringAndSize(r.ptr, (Py_ssize_t)r.len)
                              : PyByteArray_FromStringAndSize(r.ptr, (Py_ssize_t)r.len);
    }
    case T_TUPLE:
    case T_LIST:
    case T_DICT:
        if (depth >= CPY_ENC_MAXDEPTH)
            return corrupt("nested too deep");
        return tag == T_DICT ? dec_dict(d, depth) : dec_seq(d, depth, tag == T_LIST);
    case T_NDARRAY: return dec_ndarray(d);
    case T_ARRAY: return dec_array(d);
    case T_MVIEW: return dec_mview(d);
    case T_PICKLE: return dec_pickle(d);
    case T_REDUCE: return dec_reduce(d, depth);
    default: return corrupt("unknown tag");
    }
}

PyObject *cpy_dec_value(cpy_state *st, const char **p, const char *end,
                        PyObject *owner) {
    dec d = {st, *p, end, owner, NULL, NULL, 0};
    PyObject *v = dec_value(&d, 0);
    Py_XDECREF(d.mv);
    if (v)
        *p = d.p;
    return v;
}

/* ---- for Python and the tests ------------------------------------------- */

static PyObject *codec_encode(PyObject *module, PyObject *obj) {
    cpy_enc e;
    cpy_enc_init(&e, PyModule_GetState(module));
    PyObject *b = NULL;
    if (cpy_enc_add(&e, obj) == 0) {
        size_t n = cpy_enc_size(&e);
        b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
        if (b)
            cpy_enc_write(&e, PyBytes_AS_STRING(b));
    }
    cpy_enc_release(&e);
    return b;
}

static PyObject *decode(PyObject *module, PyObject *buf, int zerocopy) {
    Py_buffer v;
    if (PyObject_GetBuffer(buf, &v, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *p = v.buf;
    PyObject *r =
        cpy_dec_value(PyModule_GetState(module), &p, p + v.len, zerocopy ? buf : NULL);
    PyBuffer_Release(&v);
    return r;
}

/* codec_reducible(cls, rebuild) */
static PyObject *codec_reducible(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyType_Check(args[0]) || !PyCallable_Check(args[1]))
        return PyErr_Format(PyExc_TypeError, "codec_reducible(cls, rebuild) takes a class and "
                                             "the callable its __reduce__ returns");
    cpy_codec_cache *c = &((cpy_state *)PyModule_GetState(module))->codec;
    for (int i = 0; i < c->nred; i++)
        if (c->red_types[i] == args[0]) {
            if (c->red_funcs[i] != args[1])
                return PyErr_Format(PyExc_ValueError, "codec_reducible: %R is registered with "
                                                      "another rebuild function", args[0]);
            Py_RETURN_NONE;
        }
    if (c->nred == CPY_CODEC_NRED)
        return PyErr_Format(PyExc_ValueError,
                            "codec_reducible: at most %d classes travel by their __reduce__ "
                            "in the codec (%R is one too many): leave %R to pickle, or raise "
                            "CPY_CODEC_NRED in python/ext/codec.h",
                            CPY_CODEC_NRED, args[0], args[0]);
    c->red_types[c->nred] = Py_NewRef(args[0]);
    c->red_funcs[c->nred++] = Py_NewRef(args[1]);
    Py_RETURN_NONE;
}

static PyObject *codec_decode(PyObject *module, PyObject *buf) {
    return decode(module, buf, 0);
}

static PyObject *codec_decode_zerocopy(PyObject *module, PyObject *buf) {
    return decode(module, buf, 1);
}

PyMethodDef cpy_codec_methods[] = {
    {"encode", codec_encode, METH_O,
     "encode(obj) -> bytes: obj in the encoding of entry-method arguments"},
    {"decode", codec_decode, METH_O,
     "decode(bytes_like) -> obj: the value encode() wrote, big buffers copied"},
    {"decode_zerocopy", codec_decode_zerocopy, METH_O,
     "decode_zerocopy(bytes_like) -> obj: like decode(), but numpy arrays, memoryviews "
     "and pickle buffers sent out of band are views onto bytes_like"},
    {"codec_reducible", (PyCFunction)(void (*)(void))codec_reducible, METH_FASTCALL,
     "codec_reducible(cls, rebuild): instances of cls (exactly) travel as the arguments of "
     "their __reduce__, which returns (rebuild, args), encoded natively (not pickled); "
     "register in the same order on every PE"},
    {NULL, NULL, 0, NULL},
};

void cpy_codec_clear(cpy_codec_cache *c) {
    Py_CLEAR(c->ndarray);
    Py_CLEAR(c->frombuffer);
    Py_CLEAR(c->dtypes);
    Py_CLEAR(c->array);
    Py_CLEAR(c->unpickling_error);
    Py_CLEAR(c->kw_callback);
    Py_CLEAR(c->kw_buffers);
    for (int i = 0; i < c->nred; i++) {
        Py_CLEAR(c->red_types[i]);
        Py_CLEAR(c->red_funcs[i]);
    }
    c->nred = 0;
    Py_CLEAR(c->s_reduce);
}

int cpy_codec_traverse(cpy_codec_cache *c, visitproc visit, void *arg) {
    Py_VISIT(c->ndarray);
    Py_VISIT(c->frombuffer);
    Py_VISIT(c->dtypes);
    Py_VISIT(c->array);
    Py_VISIT(c->unpickling_error);
    Py_VISIT(c->kw_callback);
    Py_VISIT(c->kw_buffers);
    for (int i = 0; i < c->nred; i++) {
        Py_VISIT(c->red_types[i]);
        Py_VISIT(c->red_funcs[i]);
    }
    return 0;
}
