/*
 * The charmpy extension module (_charmpy): where the C runtime meets the
 * interpreter. Files and their prefixes:
 *   module.c    the module, its state, the runtime binding, timers and the
 *               runtime messages of the Python layer (cpy_)
 *   dispatch.c  entry-method messages: delivery, invocation, replies,
 *               errors in handlers (cpy_)
 *   location.c  where chares are: collections on this PE, home PEs,
 *               messages held or forwarded for an element (cpy_loc_)
 *   proxy.c     the proxy and entry-method caller types, entry tables
 *   args.c      the arguments of a call inside a message
 *   codec.c     the compact encoding of Python values (codec.h)
 *   reducers.c  built-in reducers over typed vectors of numbers
 *   balance.c   the load-balancing strategies (src/runtime/lb.c) for Python
 *   pool.c      charm.pool's per-task path: chunks out, tasks, results in
 *
 * Reference notes: every PyObject * field of a struct here is a strong
 * reference; functions say when they return a borrowed one. All functions
 * need the GIL. The module keeps no state outside its cpy_state: handlers
 * reach it through their `user` pointer, the types through
 * PyType_GetModuleState().
 */
#ifndef CHARMPY_CPY_H
#define CHARMPY_CPY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "charmpy/runtime.h"

#define CPY_MAXDIMS 6

/* obj.name (name an interned str) by the generic lookup (the class, then
 * the instance's attributes; never the class's own __getattr__ or
 * __getattribute__, which may answer for any name): a new reference, or
 * NULL, with an exception only when the lookup failed otherwise than by a
 * missing attribute. It makes no __dict__: on 3.11 and later an instance
 * keeps its attributes in place until something asks for its __dict__,
 * and the interpreter's quick reads and method calls on it (self.thisIndex,
 * self.contribute) work only while it has none, so that the hot paths
 * never ask. */
static inline PyObject *cpy_attr_or_null(PyObject *obj, PyObject *name) {
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *v = PyObject_GenericGetAttr(obj, name);
    if (!v && PyErr_ExceptionMatches(PyExc_AttributeError))
        PyErr_Clear();
    return v;
#else
    return _PyObject_GenericGetAttrWithDict(obj, name, NULL, 1);
#endif
}

/* Collection kinds (also in python/charmpy/chare.py). */
enum { CPY_CHARE = 0, CPY_GROUP = 1, CPY_ARRAY = 2 };

/* Flags of an entry-method message (also in python/charmpy/futures.py).
 * EM_ROUTE: sent by this PE to itself because the target's home PE could
 * not be computed yet (the array's ArrayMap has no member here yet); it is
 * routed once the array exists here (location.c). EM_BCOPY: a broadcast's
 * copy sent by an element's home to the element, which migrated (answered
 * as a member of the broadcast; location.c). */
enum { EM_BCAST = 1, EM_BYREF = 2, EM_RET = 4, EM_AWAIT = 8, EM_ROUTE = 16, EM_BCOPY = 32,
       EM_SECT = 64 };
/* EM_SECT: a call multicast to a section (with EM_BCAST; section.c). */

/* Flags of an entry method (set by the Python side from the decorators). */
enum { ENTRY_CORO = 1, ENTRY_WHEN = 2 };

/* The method number of an insertion into a sparse array (ckInsert): the
 * message carries the constructor's arguments to the element's PE. */
#define CPY_M_INSERT 0xffff
/* A marker a PE sends itself behind its messages to a collection that are
 * still to be routed (EM_ROUTE): when it is reached, they have left, and the
 * routed hook runs (ckDoneInserting's count of insertions waits for it). */
#define CPY_M_ROUTED 0xfffe
/* A migrating chare's state, sent by its old PE to its new one. */
#define CPY_M_ARRIVE 0xfffd
/* The first method number that is not an entry method's. */
#define CPY_M_SPECIAL 0xfffd
/* A sender's switch to direct calls to an element that moved, sent through
 * the element's home behind the sender's calls that take that path (it is
 * numbered and ordered like a call: location.c). */
#define CPY_M_SWITCH 0xfffc
/* Channel messages (channel.c): data, and the open of a channel's end. They
 * are numbered and ordered as calls are (below CPY_M_SPECIAL). */
#define CPY_M_CHAN 0xfffb
#define CPY_M_CHANOPEN 0xfffa
/* Entry methods are numbered below this. */
#define CPY_M_ENTRY_LIMIT 0xfffa

/* A direct call to an element that moved (sent where the sender's location
 * cache says it is) carries in the runtime message's tag its sender PE + 1
 * (high 32 bits) and its number among that sender's direct calls to the
 * element (low 32 bits, never 0); tag 0: not a direct call. */
static inline uint64_t cpy_direct_tag(int pe, uint32_t n) {
    return ((uint64_t)(uint32_t)(pe + 1) << 32) | n;
}
static inline int cpy_direct_src(uint64_t tag) { return (int)(tag >> 32) - 1; }
static inline uint32_t cpy_direct_seq(uint64_t tag) { return (uint32_t)tag; }

/* The start of an entry-method message's payload. After it come the
 * arguments: encoded (args, kwargs), or with EM_BYREF the references of
 * cpy_byref_store, which the message owns. */
typedef struct em_hdr {
    uint64_t coll;      /* collection id */
    uint32_t flags;
    uint16_t ndims;     /* index dimensions used by idx */
    uint16_t method;    /* index in the class's sorted entry methods */
    int32_t idx[CPY_MAXDIMS];
    uint64_t fut_id;    /* EM_RET/EM_AWAIT: the future to fulfil ... */
    int32_t fut_pe;     /* ... which lives on this PE */
    union {
        int32_t aux;    /* CPY_M_INSERT: onPE + 1 (0: the home PE);
                           CPY_M_ARRIVE: the PE it left */
        uint32_t seq;   /* a call to an element that moved: its number at the
                           home, 1.. wrapping past 2^32 - 1 to 1 (location.c);
                           0: none */
    };
} em_hdr;
/* With a few bytes of arguments, a call fits one cache line. */
_Static_assert(sizeof(em_hdr) == 56, "em_hdr grew: calls take a second cache line");
/* An insertion carries in fut_id the number of readonlies its sender had
 * set or seen (python/charmpy/readonly.py): the constructor waits for them. */

/*
 * The extension's calls into the Python layer. init() takes a dict from
 * these names to callables; the module keeps strong references to them.
 * Arguments are borrowed; each returns a new reference (None where no
 * value is named) or NULL with an exception set, which the caller reports
 * with cpy_report_error (ending the job) unless it says otherwise.
 *
 *   report_error(exc, where: str)        print the exception with where it
 *                                        happened, then end the job
 *   invoke_special(obj, key, name, args, kwargs|None, reply|None, flags)
 *                                        run a @coro or @when entry method
 *   recheck(obj)                         run what obj holds (@when messages,
 *                                        waiting coroutines) that may run now
 *   reply(reply, value, exc|None, obj|None, where|None)
 *                                        fulfil the caller's future
 *                                        (reply = (fut_pe, fut_id, flags))
 *   reply_many(reply, items, nlater)     one PE's part of a broadcast's
 *                                        future: a list of (index, value,
 *                                        exc|None, where|None), maybe empty,
 *                                        and how many members of this PE
 *                                        answer later through reply
 *   on_create(payload: bytes)            a collection to create here
 *   on_py(payload: bytes)                a runtime message of the Python layer
 *   insert(coll: int, index, args, readonlies: int)
 *                                        construct a sparse array element here
 *                                        (once that many readonlies arrived)
 *   arrive(coll: int, index, state: bytes, expected: int, mig: int, src: int)
 *                                        a chare migrated here from PE src
 *                                        (its mig-th move): rebuild it; it
 *                                        takes its calls from number
 *                                        `expected` on (loc_arrived)
 *   migrations()                         move the chares that asked to (after
 *                                        the entry method that asked)
 *   done_inserting(coll: int)            proxy.ckDoneInserting()
 *   routed(coll: int)                    the messages to coll that this PE
 *                                        routed (EM_ROUTE) before
 *                                        loc_after_routed(coll) have left
 *   combine(parts: list of bytes)        -> bytes: combine reduction parts
 *   on_reduction(stream, seq, payload)   a reduction's result, at its root
 *   entry_names(cls)                     -> (codes: dict name -> number,
 *                                        names: tuple, flags: tuple)
 *   new_future(nvals: int, ret: bool, bcast: bool)
 *                                        -> Future for a call's reply
 *
 * Besides the hooks, the extension calls user code (entry methods, and an
 * ArrayMap's procNum from location.c), pickle.dumps/loads and numpy's
 * frombuffer (codec.c), all with borrowed arguments and new references.
 */
#define CPY_HOOKS(X)                                                                   \
    X(REPORT_ERROR, report_error)                                                      \
    X(INVOKE_SPECIAL, invoke_special)                                                  \
    X(RECHECK, recheck)                                                                \
    X(REPLY, reply)                                                                    \
    X(REPLY_MANY, reply_many)                                                          \
    X(ON_CREATE, on_create)                                                            \
    X(ON_PY, on_py)                                                                    \
    X(INSERT, insert)                                                                  \
    X(DONE_INSERTING, done_inserting)                                                  \
    X(ARRIVE, arrive)                                                                  \
    X(MIGRATIONS, migrations)                                                          \
    X(ROUTED, routed)                                                                  \
    X(COMBINE, combine)                                                                \
    X(ON_REDUCTION, on_reduction)                                                      \
    X(ENTRY_NAMES, entry_names)                                                        \
    X(NEW_FUTURE, new_future)

enum {
#define CPY_HOOK_ENUM(id, name) CPY_HOOK_##id,
    CPY_HOOKS(CPY_HOOK_ENUM)
#undef CPY_HOOK_ENUM
        CPY_NHOOKS
};

/* Statistics of one entry method on this PE (profiling on). */
typedef struct cpy_emstat {
    uint64_t calls;
    double total, max; /* seconds */
    uint32_t trace_name; /* tracing: the id of "Class.method" (0 until its first call) */
} cpy_emstat;

typedef struct cpy_colls cpy_colls; /* location.c: the collections on this PE */

/* Types and functions of modules looked up the first time they are needed
 * (codec.c): numpy is imported only to decode an array, never to encode. */
#define CPY_CODEC_NRED 8
typedef struct cpy_codec_cache {
    PyObject *ndarray;          /* numpy.ndarray */
    PyObject *frombuffer;       /* numpy.frombuffer */
    PyObject *dtypes;           /* dict: dtype string -> numpy.dtype */
    PyObject *array;            /* array.array */
    PyObject *unpickling_error; /* pickle.UnpicklingError */
    PyObject *kw_callback;      /* ("buffer_callback",) */
    PyObject *kw_buffers;       /* ("buffers",) */
    /* codec_reducible(cls, rebuild): instances of these classes (exactly)
     * travel as rebuild's number and the arguments of their __reduce__,
     * encoded natively rather than pickled (futures, sections). Numbered
     * in the order of registration, which is the same on every PE. */
    PyObject *red_types[CPY_CODEC_NRED], *red_funcs[CPY_CODEC_NRED];
    int nred;
    PyObject *s_reduce;         /* "__reduce__" */
} cpy_codec_cache;

/* The load database: seconds of entry methods per chare since the last
 * balancing step (open addressing by the chare's address; backward-shift
 * deletion, so no tombstones). */
typedef struct cpy_load {
    const PyObject *obj; /* identity only: not a reference */
    double secs;
} cpy_load;

typedef struct cpy_loads {
    cpy_load *slots;
    size_t cap, n; /* cap: a power of two, or 0 */
} cpy_loads;

typedef struct cpy_state {
    cp_ctx *ctx;             /* NULL until init() and after run() */
    int h_entry, h_create, h_call, h_py, h_redres, h_loc;
    int h_pool_task, h_pool_res; /* charm.pool's chunks and results (pool.c) */
    int nmoved;              /* collections with location entries on this PE */
    int migrating;           /* a chare asked to migrate: the migrations hook runs
                                after the entry method */
    int red_py;              /* the reducer that combines Python values */
    PyObject *hooks[CPY_NHOOKS];
    cpy_colls *colls;        /* the location service's table */
    PyObject *dumps, *loads; /* pickle.dumps / pickle.loads */
    PyObject *proxy_type, *caller_type, *owner_type;
    PyObject *entries;       /* dict: class -> (codes, names, flags, stats)
                                (see cpy_entries) */
    PyObject *held;          /* dict: id(chare) -> chare, for chares holding
                                messages (@when) or waiting coroutines */
    PyObject *str_procNum;   /* "procNum" */
    PyObject *str_mig;       /* "_charmpy_mig" */
    int local_optim;         /* same-PE arguments by reference (the default) */
    int profiling;           /* time entry methods (options.profiling, +stats) */
    double t_start;          /* cp_wall_time() at init: printStats' time is since then */
    int tracing;             /* cp_tracing: entry methods, migrations add to the trace */
    uint32_t tr_entry, tr_event; /* trace categories "entry", "event" */
    double main_secs;        /* profiling: the time main (the program's coroutine) ran */
    int in_bcast;            /* delivering a broadcast: migrations wait until after */
    int lb_on;               /* measure chares' loads (a balancer is in use) */
    double lb_chare_secs;    /* the loads measured on this PE, every chare's */
    int lb_comm;             /* record who calls whom (a comm-aware balancer) */
    PyObject *lb_cur;        /* lb_comm: the chare whose entry method runs (borrowed) */
    PyObject *lb_commtab;    /* lb_comm: {id(chare): {(coll, index): [msgs, bytes]}} */
    size_t last_bytes;       /* the payload size of the last call sent */
    size_t ncached;          /* location cache entries on this PE (location.c) */
    uint64_t chare_remote;   /* calls to single chares sent through their home
                                (their remote_sends, for all of them at once) */
    cpy_loads loaddb;        /* the load database (balance.c) */
    int pickle_protocol;     /* for values the codec pickles */
    uint64_t readonlies;     /* readonlies set (PE 0) or received here */
    cpy_codec_cache codec;
    PyObject *pool_job_type;  /* pool.c: the PoolJob type */
    PyObject *pool_tables;    /* pool.py's dicts (pool.c: T_*), or NULL */
    PyObject *pool_fallbacks; /* pool.py's functions for the rare cases, or NULL */
    PyObject *chan_type;      /* channel.c: the Channel type */
    PyObject *chan_rebuild;   /* _charmpy._chan_rebuild (a pickled Channel) */
    PyObject *chan_getcurrent, *chan_coro_type; /* greenlet.getcurrent, coro.Coroutine */
    PyObject *chan_resume, *chan_after_run;     /* coro.resume, coro._after_run */
    PyObject *str_switch, *str_dead, *str_parent, *str_chans, *str_chanq;
    PyObject *str_chan_send, *str_chan_open, *str_chank, *str_chanearly;
    int chan_moving;          /* chares are pickled to move or be saved (chan_moving) */
    uint64_t chan_next;       /* the next channel end's id (low bits) */
    PyObject *sect_cache;     /* section.c: section id -> keys of its members homed here */
    PyObject *sect_objs;      /* section.c: section id -> those members' chares (None:
                                 not here), emptied whenever members change on this PE */
    PyObject *sect_slice, *sect_local; /* sections.py: proxy[slice], a section's local keys */
} cpy_state;

/* Tracing (module.c): an instant named `what` for the chare of index key
 * (or NULL), e.g. a migration; nothing when not tracing. */
void cpy_trace_instant(cpy_state *st, const char *what, PyObject *key, double value);
/* A chare's index as at most 3 numbers for the trace; returns how many. */
int cpy_trace_index(PyObject *key, int64_t idx[3]);

/* ---- module.c ------------------------------------------------------------- */

/* The state of the module a type of this module belongs to (borrowed). */
cpy_state *cpy_state_of_type(PyTypeObject *tp);
/* 0, or -1 with RuntimeError when the runtime is not running. */
int cpy_runtime_missing(void);
static inline int cpy_need_runtime(cpy_state *st) { return st->ctx ? 0 : cpy_runtime_missing(); }
/* Call hook `which` with n borrowed arguments; new reference or NULL with
 * an exception. */
PyObject *cpy_hook(cpy_state *st, int which, PyObject *const *args, size_t n);
/* Send msg to `handler` on PE pe (every PE when pe < 0); on failure frees
 * msg and sets an exception naming the PE. 0 or -1. */
int cpy_send_or_bcast(cpy_state *st, int pe, int handler, cp_msg *msg);

/* ---- dispatch.c ----------------------------------------------------------- */

/* The handler of entry-method messages (registered by init). */
void cpy_on_entry(cp_ctx *ctx, cp_msg *msg, void *user);
/* Deliver an entry-method message to `members` (a dict key -> chare) of its
 * collection on this PE; takes msg. */
void cpy_deliver(cpy_state *st, cp_msg *msg, PyObject *members);
/* After Python code of chare obj ran: re-examine what it holds (@when
 * messages, waiting coroutines). 0, or -1 with an exception. */
int cpy_recheck_held(cpy_state *st, PyObject *obj);
/* Free a message that will not be delivered (it may own references). */
void cpy_discard(cpy_state *st, cp_msg *msg);
/* The arguments of an entry message (new references; kwargs NULL when
 * none); takes msg. 0 or -1 with an exception. */
int cpy_take_msg_args(cpy_state *st, cp_msg *msg, PyObject **args, PyObject **kwargs);
/* The reply tuple (fut_pe, fut_id, flags) of a message with a future, or
 * None (new reference; NULL with an exception). */
PyObject *cpy_reply_of(const em_hdr *h);
/* An exception escaped Python code run by a handler: hand it to the
 * report_error hook, which ends the job; `where` says what was running. */
void cpy_report_error(cpy_state *st, const char *where);
/* The pending exception, normalized, with its traceback (new reference). */
PyObject *cpy_take_exception(void);
void cpy_restore_exception(PyObject *exc); /* steals exc */
/* Make `cause` (stolen, may be NULL) the __cause__ of the pending exception. */
void cpy_set_cause(PyObject *cause);

/* ---- location.c ----------------------------------------------------------- */

/* How a collection's elements are placed: enough to compute any element's
 * home PE on any PE. Embedded in proxies and in the collection table. */
typedef struct cpy_place {
    int kind;
    int ndims;
    int sparse;                /* arrays: elements are inserted (ckInsert) */
    int32_t dims[CPY_MAXDIMS]; /* dense arrays: the shape */
    uint64_t map_coll;         /* the ArrayMap group's collection ... */
    int has_map;               /* ... when there is one */
    int chare_pe;              /* a single chare: the PE it was created on */
} cpy_place;

/* Where a call to element idx goes from this PE: its home, or where this
 * PE's location cache says it is (after it moved: *direct is set to the
 * cache entry, for cpy_send_entry), or this PE itself with EM_ROUTE added
 * to *flags (an ArrayMap not here yet). -1 with an exception. */
int cpy_loc_send_pe(cpy_state *st, uint64_t coll, const cpy_place *pl, const int32_t *idx,
                    uint32_t *flags, PyObject **direct);
/* A direct call: the tag (cpy_direct_tag) of the next number of `direct`,
 * an entry of this PE's location cache (borrowed; entries are never
 * removed), which goes to the next call. Taken when the call is encoded,
 * right before it is sent: no Python code runs in between (a call made
 * from an argument's __reduce__ takes its own number first). */
uint64_t cpy_loc_direct_take(cpy_state *st, PyObject *direct);
/* Where this PE's location cache says the single chare of collection coll
 * is, with *tag set for the direct call made now; -1 when it has no entry
 * (or with an exception). */
int cpy_loc_cached(cpy_state *st, uint64_t coll, PyObject **direct);
/* A message for member key here: 1 when location.c took it (it came early
 * in the order of the element's calls, or twice), 0 when it goes now. */
int cpy_loc_in_order(cpy_state *st, cp_msg *msg, PyObject *key);
/* After a delivery to key: the message that came early and is next now, or
 * NULL. */
cp_msg *cpy_loc_next_in_order(cpy_state *st, uint64_t coll, PyObject *key);
/* A sender's switch (CPY_M_SWITCH) reached element key, in order: its
 * direct calls go from now on. Takes msg. */
void cpy_loc_switch(cpy_state *st, cp_msg *msg, PyObject *key);
/* The members of coll here that take broadcasts from their home (borrowed
 * set), or NULL when none. */
PyObject *cpy_loc_viahome(cpy_state *st, uint64_t coll);
/* At the home of elements that migrated: a copy of broadcast msg to each
 * (EM_BCOPY, numbered); how many, or -1 with an exception. */
long cpy_loc_bcast_copies(cpy_state *st, cp_msg *msg, PyObject *members);

/* cpy_loc_home's answer when the ArrayMap group has no member on this PE
 * yet: the message must wait for it (EM_ROUTE). */
#define CPY_HOME_UNKNOWN (-2)

int cpy_loc_init(cpy_state *st);
void cpy_loc_clear(cpy_state *st);    /* drops held messages, keeps the table */
void cpy_loc_free(cpy_state *st);
int cpy_loc_traverse(cpy_state *st, visitproc visit, void *arg);
/* The members (dict key -> chare, borrowed) of collection coll on this PE,
 * or NULL when it is not registered here (no exception). */
PyObject *cpy_loc_members(cpy_state *st, uint64_t coll);
/* A message for a collection not registered here yet: keep it until
 * cpy_loc_register. Takes msg; -1 with an exception (msg discarded). */
int cpy_loc_early(cpy_state *st, cp_msg *msg);
/* The home PE of element idx of a collection placed as `pl`: >= 0, or
 * CPY_HOME_UNKNOWN, or -1 with an exception (procNum failed or returned
 * a bad PE). */
int cpy_loc_home(cpy_state *st, const cpy_place *pl, const int32_t *idx);
/* Non-zero when a send to element idx must be routed through this PE
 * (EM_ROUTE): its home is unknown here, or earlier messages from this PE
 * to the collection are still waiting to be routed. */
int cpy_loc_must_route(cpy_state *st, uint64_t coll, const cpy_place *pl,
                       const int32_t *idx);
void cpy_loc_note_routed(cpy_state *st, uint64_t coll); /* one more EM_ROUTE */

/* A message for element `key` (borrowed), which is not among the members
 * here: an insertion to run, or a message to forward to where the element
 * is, to hold until it is inserted, or to fail. Takes msg. */
void cpy_loc_missing(cpy_state *st, uint64_t coll, PyObject *key, cp_msg *msg);
/* An EM_ROUTE message whose collection now exists here: send it to the
 * element's home (or deliver it here). Takes msg. */
void cpy_loc_route(cpy_state *st, cp_msg *msg, PyObject *members);
/* The member index a message names: an int (group PE, 0 for a single
 * chare) or a tuple (array). New reference. */
PyObject *cpy_loc_key_tuple(const em_hdr *h);
static inline PyObject *cpy_loc_key(const em_hdr *h) {
    return h->ndims == 0 ? PyLong_FromLong(h->idx[0]) : cpy_loc_key_tuple(h);
}
/* The handler of location messages (element coll/idx lives on a PE). */
void cpy_on_location(cp_ctx *ctx, cp_msg *msg, void *user);
/* Send an insertion (CPY_M_INSERT) of element idx of `coll` with `args`;
 * 0 or -1 with an exception. */
int cpy_loc_insert(cpy_state *st, uint64_t coll, const cpy_place *pl, const int32_t *idx,
                   PyObject *args, int on_pe);
extern PyMethodDef cpy_location_methods[];

/* ---- proxy.c -------------------------------------------------------------- */

int cpy_proxy_types_init(PyObject *module, cpy_state *st);
/* The entry methods of `cls` (borrowed, cached): a tuple (codes, names,
 * flags, stats) where names is the sorted tuple of entry-method names
 * (every PE numbers them alike), codes a dict name -> index, flags a tuple
 * of ENTRY_* per index and stats a bytearray of one cpy_emstat per index.
 * NULL with an exception. */
PyObject *cpy_entries(cpy_state *st, PyObject *cls);
/* Send an entry-method call to PE pe (every PE when pe < 0): `hdr` is the
 * message's header as the caller fills it (coll, method, index, future,
 * aux; the EM_BCAST and EM_BYREF flags are added here); `args` (tuple) and
 * `kwargs` (dict or NULL) are borrowed; `name` (borrowed, NULL for an
 * insertion) names the method in errors. The runtime must be running.
 * Returns 0 or -1 with an exception set (a TypeError naming the argument
 * that cannot be serialized). `direct` (or NULL): the location cache entry
 * of a direct call, whose number the message's tag takes once encoded. */
int cpy_send_entry(cpy_state *st, int pe, const em_hdr *hdr, PyObject *name, PyObject *args,
                   PyObject *kwargs, PyObject *direct);
/* The placement and collection of a proxy of this module; 0, or -1 with
 * TypeError when `proxy` is not one. */
int cpy_proxy_place(cpy_state *st, PyObject *proxy, cpy_place *out, uint64_t *coll);
/* Send an encoded entry message on to PE pe; arguments held by reference
 * are encoded when pe is another PE. Takes msg on success; -1 with an
 * exception (msg still the caller's). */
int cpy_forward(cpy_state *st, cp_msg *msg, int pe);
/* The same for a direct call: the message (or its re-encoded copy) takes
 * the next number of `direct` right before it is sent. */
int cpy_forward_direct(cpy_state *st, cp_msg *msg, int pe, PyObject *direct);

/* Send a message of the runtime's own (hdr->method, fut_id, fut_pe as the
 * caller sets them) to the chare named by `proxy`, an element proxy, as a
 * call to it would go. 0 or -1 with an exception. */
int cpy_proxy_send(cpy_state *st, PyObject *proxy, const em_hdr *hdr, PyObject *name,
                   PyObject *args);
/* 1 when `proxy` names one chare (an element proxy or a single chare's),
 * 0 when it is another proxy or not a proxy, -1 with an exception. */
int cpy_proxy_is_element(cpy_state *st, PyObject *proxy);

/* ---- channel.c ------------------------------------------------------------ */

int cpy_chan_init(PyObject *module, cpy_state *st);
int cpy_chan_traverse(cpy_state *st, visitproc visit, void *arg);
void cpy_chan_clear(cpy_state *st);
/* A channel message (CPY_M_CHAN or CPY_M_CHANOPEN) for chare obj, with the
 * sender's end id, the message's number and its decoded arguments
 * (borrowed); errors are reported (they end the job). */
void cpy_chan_deliver(cpy_state *st, PyObject *obj, int method, uint64_t id, uint32_t seq,
                      PyObject *args);

/* ---- contrib.c ------------------------------------------------------------ */

/* A broadcast is about to run a method of member obj of collection coll
 * (NULL after it): contribute finds the collection without looking up the
 * chare's proxy. obj stays alive meanwhile (the caller holds it). */
void cpy_red_current(PyObject *obj, uint64_t coll);

/* ---- section.c ------------------------------------------------------------ */

int cpy_sect_init(PyObject *module, cpy_state *st);
int cpy_sect_traverse(cpy_state *st, visitproc visit, void *arg);
void cpy_sect_clear(cpy_state *st);
/* The keys of the members of msg's section whose home is this PE (a
 * borrowed list, cached per section), or NULL with an exception. */
PyObject *cpy_sect_keys(cpy_state *st, cp_msg *msg);
/* The chares of those keys in members (None for a key not here), a
 * borrowed list cached per section until members change on this PE (see
 * cpy_sect_forget), or NULL with an exception. */
PyObject *cpy_sect_objs(cpy_state *st, cp_msg *msg, PyObject *members, PyObject *keys);
/* Members were added to or removed from a collection on this PE: the
 * sections' cached chares are forgotten. */
void cpy_sect_forget(cpy_state *st);
/* Where the arguments of a section's message start. */
size_t cpy_sect_args_off(const cp_msg *msg);
/* proxy[key] with slices in key: a section (sections.py). New reference. */
PyObject *cpy_sect_slice(cpy_state *st, PyObject *proxy, PyObject *key);

/* ---- args.c --------------------------------------------------------------- */

/* The arguments of a call inside a message, after `off` bytes.
 * Encoded: cpy_encode_args allocates the message (NULL with an exception);
 * cpy_take_args decodes them (new references, kwargs NULL when none) and
 * takes the message: it frees it, or leaves it to the arrays that view it.
 * By reference (same PE): cpy_byref_size bytes holding strong references. */
int cpy_args_init(PyObject *module, cpy_state *st);
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
/* As cpy_take_args, but big buffers are copied out of the message, which
 * is freed at once (values kept long after: a pool's results). */
int cpy_take_args_copied(cpy_state *st, cp_msg *msg, size_t off, PyObject **args,
                         PyObject **kwargs);
size_t cpy_byref_size(void);
void cpy_byref_store(void *dst, PyObject *args, PyObject *kwargs);
void cpy_byref_take(const void *src, PyObject **args, PyObject **kwargs);

/* ---- codec.c: encode/decode/decode_zerocopy for Python (C API in codec.h) */
extern PyMethodDef cpy_codec_methods[];
void cpy_codec_clear(cpy_codec_cache *c);
int cpy_codec_traverse(cpy_codec_cache *c, visitproc visit, void *arg);

/* ---- balance.c: the load-balancing strategies for Python ----------------- */
extern PyMethodDef cpy_balance_methods[];
/* Add secs to obj's load (the dispatch path, lb_on), and to this PE's
 * total of chare time (st->lb_chare_secs); -1 on no memory. */
int cpy_lb_add(cpy_state *st, const PyObject *obj, double secs);
void cpy_lb_free(cpy_state *st);
/* lb_comm: the running chare (st->lb_cur) sent `bytes` to element h->idx of
 * h->coll; -1 with an exception. */
int cpy_lb_comm_add(cpy_state *st, const em_hdr *h, size_t bytes);

/* ---- pool.c: charm.pool's chunks and results ------------------------------ */
int cpy_pool_init(PyObject *module, cpy_state *st);
int cpy_pool_traverse(cpy_state *st, visitproc visit, void *arg);
void cpy_pool_clear(cpy_state *st);
/* The handlers of a chunk of tasks (on a worker) and of its results (on the
 * job's owner). */
void cpy_pool_on_task(cp_ctx *ctx, cp_msg *msg, void *user);
void cpy_pool_on_results(cp_ctx *ctx, cp_msg *msg, void *user);

/* ---- reducers.c: built-in reducers over typed vectors of numbers --------- */
extern PyMethodDef cpy_reducer_methods[];
/* Non-zero when `data` holds a typed vector (not a pickle). */
int cpy_typed_check(const void *data, size_t len);
/* Combine typed parts[1..n-1] into parts[0]: 0; 1 when Python ints would
 * leave int64 (parts[0] unchanged: combine them in Python); -1 with an
 * exception when they do not match. */
int cpy_typed_combine_msgs(cp_msg *const *parts, int n);
/* The typed vector of v for op: new bytes, or Py_None (new reference) when
 * v is not numbers the C reducers take; NULL with an exception. */
PyObject *cpy_typed_encode(int op, PyObject *v);
/* Combine typed bytes b into acc (a bytes object with one reference, the
 * caller's): 0; 1 when Python ints would leave int64 (acc unchanged); -1
 * with an exception. */
int cpy_typed_combine_into(PyObject *acc, PyObject *b);
/* Combine a plain int or float into acc when acc is one number of its kind:
 * 1 done, 0 not that case, 2 when an int sum or product leaves int64, -1
 * with an exception. */
int cpy_typed_scalar_into(PyObject *acc, PyObject *v);
/* Folds values[from:] (a list) into acc while the run is of what a scalar
 * int64 sum, min or max, or a float64 sum, takes in place: one check of
 * acc's header for the run. The index of the first value not taken (it
 * goes through cpy_typed_scalar_into, which says why). */
Py_ssize_t cpy_typed_scalar_run(PyObject *acc, PyObject *values, Py_ssize_t from);

/* ---- contrib.c: Chare.contribute in C (the common case) ------------------ */
int cpy_contrib_init(PyObject *module);

#endif /* CHARMPY_CPY_H */
