/*
 * The charmpy extension module (_charmpy): where the C runtime meets the
 * interpreter. module.c holds the module state, the runtime binding and the
 * message handlers; proxy.c the proxy and entry-method caller types.
 *
 * Reference notes: every PyObject * field of a struct here is a strong
 * reference; functions say when they return a borrowed one.
 */
#ifndef CHARMPY_CPY_H
#define CHARMPY_CPY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "charmpy/runtime.h"

#define CPY_MAXDIMS 6

/* Collection kinds (also in python/charmpy/chare.py). */
enum { CPY_CHARE = 0, CPY_GROUP = 1, CPY_ARRAY = 2 };

/* Flags of an entry-method message. */
enum { EM_BCAST = 1, EM_BYREF = 2, EM_RET = 4, EM_AWAIT = 8 };

/* Flags of an entry method (values of the per-class entries dict; the
 * Python side sets them from the decorators). */
enum { ENTRY_CORO = 1, ENTRY_WHEN = 2 };

/* The start of an entry-method message's payload. After it come the
 * arguments: pickled (args, kwargs) bytes, or with EM_BYREF a PyObject * to
 * that tuple that the message owns (a strong reference). */
typedef struct em_hdr {
    uint64_t coll;      /* collection id */
    uint32_t flags;
    uint16_t ndims;     /* index dimensions used by idx */
    uint16_t method;    /* index in the class's sorted entry methods */
    int32_t idx[CPY_MAXDIMS];
    uint64_t fut_id;    /* EM_RET/EM_AWAIT: the future to fulfil ... */
    int32_t fut_pe;     /* ... which lives on this PE */
    uint32_t reserved;
} em_hdr;

typedef struct cpy_state {
    cp_ctx *ctx;             /* NULL until init() */
    int h_entry, h_create, h_call, h_py, h_redres;
    int red_py;              /* the reducer that combines Python values */
    PyObject *colls;         /* dict: coll id -> dict index -> chare */
    PyObject *pending;       /* dict: coll id -> list of capsules (cp_msg *)
                                for messages that arrived before the
                                collection was created here */
    PyObject *runtime;       /* the Python-side runtime object */
    PyObject *dumps, *loads; /* pickle.dumps / pickle.loads */
    PyObject *proxy_type, *caller_type;
    PyObject *entries;       /* dict: class -> (codes, names, flags): see
                                cpy_entries() */
    unsigned long long last_coll; /* the collection of the last message ... */
    PyObject *last_members;  /* ... and its members (or NULL) */
    PyObject *held;          /* dict: id(chare) -> chare, for chares holding
                                messages (@when) or waiting coroutines */
    int local_optim;         /* same-PE arguments by reference (the default) */
} cpy_state;

/* The state of the one imported _charmpy module (borrowed). */
cpy_state *cpy_get_state(void);

/* proxy.c */
int cpy_proxy_types_init(PyObject *module, cpy_state *st);
/* The entry methods of `cls` (borrowed, cached), as the Python side lists
 * them: a tuple (codes, names, flags) where names is the sorted tuple of
 * entry-method names (every PE numbers them alike), codes a dict name ->
 * index and flags a tuple of ENTRY_* per index. NULL with an exception. */
PyObject *cpy_entries(cpy_state *st, PyObject *cls);
/* Send an entry-method call; `args` (tuple) and `kwargs` (dict or NULL) are
 * borrowed. pe < 0 broadcasts to every PE. Returns 0 or -1 with an
 * exception set. */
int cpy_send_entry(cpy_state *st, int pe, uint64_t coll, int ndims,
                   const int32_t *idx, int method, PyObject *name, PyObject *args,
                   PyObject *kwargs, uint32_t fut_flags, int fut_pe,
                   uint64_t fut_id);

/* args.c: the arguments of a call inside a message, after `off` bytes.
 * Encoded: cpy_encode_args allocates the message (NULL with an exception);
 * cpy_take_args decodes them (new references, kwargs NULL when none) and
 * takes the message: it frees it, or leaves it to the arrays that view it.
 * By reference (same PE): cpy_byref_size bytes holding strong references. */
int cpy_args_init(PyObject *module);
/* When `segs` is not NULL and the transport sends memory in place
 * (cp_sends_in_place), big contiguous buffers are left out of the message
 * and *segs receives them (else NULL); the message must then go with
 * cpy_send_args, which sends it (cp_send, or cp_send_segs with *segs) and
 * takes *segs in every case. Returns 0 or a CP_E* code, like cp_send. */
typedef struct cpy_argsegs cpy_argsegs;
cp_msg *cpy_encode_args(cpy_state *st, size_t off, PyObject *args, PyObject *kwargs,
                        cpy_argsegs **segs);
int cpy_send_args(cpy_state *st, int pe, int handler, cp_msg *msg, cpy_argsegs *segs);
int cpy_take_args(cpy_state *st, cp_msg *msg, size_t off, PyObject **args,
                  PyObject **kwargs);
size_t cpy_byref_size(void);
void cpy_byref_store(void *dst, PyObject *args, PyObject *kwargs);
void cpy_byref_take(const void *src, PyObject **args, PyObject **kwargs);

/* codec.c: encode/decode/decode_zerocopy for Python (C API in codec.h) */
extern PyMethodDef cpy_codec_methods[];

/* reducers.c: built-in reducers over typed vectors of numbers */
extern PyMethodDef cpy_reducer_methods[];
/* Non-zero when `data` holds a typed vector (not a pickle). */
int cpy_typed_check(const void *data, size_t len);
/* Combine typed parts[1..n-1] into parts[0]; -1 with an exception when
 * they do not match. */
int cpy_typed_combine_msgs(cp_msg *const *parts, int n);

#endif /* CHARMPY_CPY_H */
