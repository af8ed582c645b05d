/*
 * charmpy runtime: the public C API.
 *
 * The runtime runs one PE (processing element) per OS process. Every PE of a
 * job runs the same program: it calls cp_init(), registers the same handlers
 * and reducers in the same order, starts work, and drives the scheduler with
 * cp_run() (or cp_run_until()/cp_run_once() when an outer loop, such as the
 * Python layer, owns control). The runtime knows nothing of Python.
 *
 * Conventions:
 *   - Functions that can fail return an int: 0 (or a non-negative value where
 *     documented) on success, a negative CP_E* code on failure. cp_strerror()
 *     names the code. Out of memory is reported, never abort()ed on.
 *   - All state hangs off one cp_ctx; there are no hidden globals, except the
 *     signal-safe bookkeeping the launcher needs.
 *   - A cp_ctx belongs to the thread that created it. No function here may be
 *     called from another thread.
 *
 * Message ownership (the one rule that matters):
 *   - cp_msg_alloc() gives the caller a message it owns.
 *   - cp_send()/cp_bcast()/cp_reduce()/cp_send_after() take ownership when
 *     they return 0. When they return an error the caller still owns the
 *     message and must free or reuse it.
 *   - A handler receives ownership of the message it is called with: it must
 *     cp_msg_free() it, send it on with one of the calls above, or keep it
 *     and free it later. The runtime never touches it after the call.
 *   - A reduction result is delivered to its handler like any other message.
 */
#ifndef CHARMPY_RUNTIME_H
#define CHARMPY_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes (negative returns). */
enum {
    CP_OK = 0,
    CP_ENOMEM = -1,   /* out of memory (process heap or shared segment) */
    CP_EINVAL = -2,   /* an argument is out of range */
    CP_ERANGE = -3,   /* a PE, handler or reducer index does not exist */
    CP_ESYS = -4,     /* a system call failed; errno says which */
    CP_ESTATE = -5,   /* call not valid now (e.g. after exit) */
    CP_ETOOBIG = -6,  /* message larger than the transport can carry */
    CP_ENOTRANSPORT = -7 /* the requested machine layer is not built in */
};

const char *cp_strerror(int rc);

typedef struct cp_ctx cp_ctx;

/*
 * A message: this 48-byte header followed by `size` payload bytes. The
 * payload starts 64-byte aligned. Only `size` and `tag` are for the user;
 * the other fields are written by the runtime when the message is sent.
 */
typedef struct cp_msg {
    uint32_t handler;      /* handler index, checked at dispatch */
    uint32_t src_pe;       /* PE that sent the message */
    uint64_t size;         /* payload bytes */
    uint32_t kind;         /* runtime-internal: plain, broadcast, reduction */
    uint32_t root;         /* broadcast or reduction root PE */
    uint32_t reducer;      /* reduction: reducer index; other kinds: the trace's flow */
    uint32_t red_handler;  /* reduction: handler that receives the result */
    uint64_t seq;          /* reduction: sequence number */
    union {
        uint64_t tag;      /* plain messages: carried unchanged, for the layer above */
        uint64_t stream;   /* reductions: the stream (cp_reduce_among) */
    };
} cp_msg;

static inline void *cp_msg_data(cp_msg *m) { return (void *)(m + 1); }

/* ---- lifecycle ---------------------------------------------------------- */

/*
 * Start this PE. Under the `charmrun` launcher the PE joins the job the
 * launcher created (environment variables CHARMPY_SHM_FD and CHARMPY_PE);
 * started without it, the program runs as a job of 1 PE. argc/argv may be
 * NULL; when given, runtime flags are removed from them and kept for
 * cp_flag(): +pN, +balancer NAME, +LBDebug N, +LBPeriod SECS, +trace FILE,
 * +stats and any ++flag. On success *out owns a context that cp_finalize()
 * releases.
 */
int cp_init(cp_ctx **out, int *argc, char ***argv);

/* The value of runtime flag `name` (e.g. "+balancer") given on the command
 * line, "" for a flag without one, NULL when it was not given (the last one
 * given wins). cp_flag_at returns the name of the i-th flag given (and its
 * value in *value), NULL past the last. The strings live as long as ctx. */
const char *cp_flag(const cp_ctx *ctx, const char *name);
const char *cp_flag_at(const cp_ctx *ctx, int i, const char **value);

/*
 * Release this PE's resources and return the job's exit code (the code given
 * to cp_exit(), or 0). Messages still queued are dropped. Call it once,
 * after the scheduler has returned.
 */
int cp_finalize(cp_ctx *ctx);

int cp_my_pe(const cp_ctx *ctx);
int cp_num_pes(const cp_ctx *ctx);
/* Name of the machine layer in use ("shm" or "mpi"). */
const char *cp_transport(const cp_ctx *ctx);
/* The hosts (machines) of the job, numbered 0..cp_num_hosts()-1 in the
 * order of their lowest PE; a host's PEs need not be consecutive. A shm job
 * runs on 1 host; under mpi, PEs whose processes report the same processor
 * name share a host. cp_host_of returns CP_ERANGE for a PE that does not
 * exist. */
int cp_num_hosts(const cp_ctx *ctx);
int cp_my_host(const cp_ctx *ctx);
int cp_host_of(const cp_ctx *ctx, int pe);
/* Non-zero when this host runs more of the job's PEs than it offers cores
 * (idle PEs then yield at once, and cp_poll_for does not poll). */
int cp_oversubscribed(const cp_ctx *ctx);
/* Seconds since an arbitrary fixed point (monotonic clock). */
double cp_wall_time(void);

/* ---- handlers ----------------------------------------------------------- */

typedef void (*cp_handler_fn)(cp_ctx *ctx, cp_msg *msg, void *user);

/*
 * Register a handler; returns its index (>= 0) or a negative error. Every PE
 * must register the same handlers in the same order before any message that
 * names them can arrive (typically right after cp_init()).
 */
int cp_handler_register(cp_ctx *ctx, cp_handler_fn fn, void *user);

/* ---- messages ----------------------------------------------------------- */

/* A message with room for `size` payload bytes, owned by the caller; NULL
 * when the transport's memory is exhausted. */
cp_msg *cp_msg_alloc(cp_ctx *ctx, size_t size);

/* Free a message the caller owns (it may have been sent by any PE). */
void cp_msg_free(cp_ctx *ctx, cp_msg *msg);

/* Send `msg` to `handler` on PE `pe` (may be this PE). Messages from one PE
 * to one PE are delivered in the order they were sent. */
int cp_send(cp_ctx *ctx, int pe, int handler, cp_msg *msg);

/* Deliver `msg` to `handler` on every PE, this one included, along a
 * spanning tree rooted at this PE (each PE forwards copies to its children
 * before calling its handler). */
int cp_bcast(cp_ctx *ctx, int handler, cp_msg *msg);

/* Deliver `msg` to `handler` on each of the `npes` PEs listed in `pes`
 * (ascending, no PE twice; this PE may be among them or not), along a
 * spanning tree over the list rooted at its first PE: the first PE gets it
 * from this one, and every PE forwards copies to its children in the list
 * before calling its handler. The list travels with the message (4 bytes a
 * PE, after the payload; the handler sees `size` as given). Takes `msg` on
 * success; CP_EINVAL for an empty or unsorted list, CP_ERANGE for a PE that
 * does not exist (msg stays the caller's). */
int cp_mcast(cp_ctx *ctx, int handler, cp_msg *msg, const int *pes, int npes);

/*
 * Sending memory that stays where it is. A cp_seg names `len` bytes at
 * `base` in the caller's memory.
 *
 * cp_send_segs() sends `msg` to `handler` on PE `pe` with more payload than
 * the message holds: the destination receives one ordinary message whose
 * payload is msg's `size` bytes followed by the segments in order, each
 * starting at the next multiple of 64 bytes of the payload (the bytes in
 * between are zero), and whose `size` is the length of all of it. Segments
 * of 0 bytes are skipped: they take no place and no alignment. So the
 * receiver, like any handler, sees one contiguous message.
 *
 * Over a transport that can (cp_sends_in_place(): mpi), the segments are
 * sent from where they lie, without a copy, and the caller must keep them
 * valid and unchanged until release(arg) is called. Otherwise (shm, or `pe`
 * is this PE) the runtime copies them into the message during the call.
 *
 * release(arg), when not NULL, is called exactly once, when the runtime no
 * longer reads the segments: before cp_send_segs returns, or later on this
 * PE's thread from inside a runtime call (the scheduler, a send, a barrier,
 * cp_finalize at the latest). On success ownership of msg passes as with
 * cp_send. On an error return the caller still owns msg (its payload
 * unchanged), and release has not been called. `segs` is read during the call only.
 */
typedef struct cp_seg {
    const void *base;
    size_t len;
} cp_seg;
typedef void (*cp_release_fn)(void *arg);

int cp_send_segs(cp_ctx *ctx, int pe, int handler, cp_msg *msg, const cp_seg *segs,
                 int nseg, cp_release_fn release, void *arg);

/* Non-zero when cp_send_segs() sends segments to other PEs without copying
 * them (the transport reads them in place). */
int cp_sends_in_place(const cp_ctx *ctx);

/*
 * Take out of this PE's queue of messages it sent itself (not yet
 * dispatched), in order, the plain ones (cp_send; never the runtime's own
 * broadcasts, reductions or waves) for which match(msg, arg) is non-zero, and
 * hand each to take(ctx, msg, arg), which owns it; the others keep their
 * order. For a layer above whose object leaves the PE: the calls queued for
 * it must follow it, ahead of later ones. take must not send to this PE.
 * For quiescence detection a message taken counts as processed (what take
 * sends on counts as new). Returns how many were taken.
 */
int cp_local_extract(cp_ctx *ctx, int (*match)(const cp_msg *msg, void *arg),
                     void (*take)(cp_ctx *ctx, cp_msg *msg, void *arg), void *arg);

/* ---- reductions --------------------------------------------------------- */

typedef enum cp_op {
    CP_OP_SUM, CP_OP_PROD, CP_OP_MIN, CP_OP_MAX,
    CP_OP_LAND, CP_OP_LOR, CP_OP_LXOR,
    CP_OP_COUNT_
} cp_op;

typedef enum cp_type {
    CP_T_INT32, CP_T_INT64, CP_T_FLOAT32, CP_T_FLOAT64,
    CP_T_COUNT_
} cp_type;

/* Size in bytes of one element of `t` (0 for an invalid type). */
size_t cp_type_size(cp_type t);

/*
 * Index of a built-in reducer: element-wise `op` over vectors of `type`.
 * Logical operations treat non-zero as true and produce 1 or 0 of the same
 * type. All contributions of one reduction must have the same length.
 */
int cp_reducer_builtin(cp_op op, cp_type type);

/*
 * The element-wise kernel of the built-in reducers: acc[i] = acc[i] op in[i]
 * for i < count. Integer sums and products wrap around. Returns CP_EINVAL for
 * an unknown op or type.
 */
int cp_reduce_apply(cp_op op, cp_type type, void *acc, const void *in, size_t count);

/*
 * A user combine function: combine the payloads of `n` >= 2 messages into
 * one. It returns a message it allocated with cp_msg_alloc() (it may also
 * return one of `parts`, which the runtime then does not free), or NULL on
 * failure, which aborts the job. The runtime frees the other parts.
 * Contributions are given in PE order of the subtree (the caller's own
 * first), so an order-sensitive combine (like gather) is deterministic.
 */
typedef cp_msg *(*cp_combine_fn)(cp_ctx *ctx, cp_msg *const *parts, int n,
                                 void *user);

/* Register a user reducer; same-order rule as handlers. Returns its index. */
int cp_reducer_register(cp_ctx *ctx, cp_combine_fn fn, void *user);

/*
 * Contribute `contrib` to the next reduction. Every PE calls cp_reduce() the
 * same number of times, in the same order, with the same reducer, root and
 * handler; the k-th calls on all PEs form one reduction. The result arrives
 * at `handler` on PE `root` as a message. Ownership of `contrib` passes to
 * the runtime on success. A PE that contributes with a different reducer,
 * root or handler than the others aborts the job with a message naming the
 * reduction and both reducers.
 */
int cp_reduce(cp_ctx *ctx, cp_msg *contrib, int reducer, int root,
              int handler);

/*
 * A reduction among some PEs, in a stream of its own. pes[0..npes-1] are the
 * participants (each once, the caller among them); pes[0] is the root, where
 * the result arrives at `handler`. Reductions of one stream are numbered by
 * the order of the calls on each PE, independently of other streams, so
 * collections can reduce concurrently without agreeing on an order between
 * them. Every participant must pass the same list, reducer and handler for
 * the same stream. Stream 0 is the one cp_reduce() uses. The list is read
 * during the call only.
 */
int cp_reduce_among(cp_ctx *ctx, cp_msg *contrib, uint64_t stream, int reducer,
                    int handler, const int *pes, int npes);

/* ---- timers ------------------------------------------------------------- */

typedef void (*cp_timer_fn)(cp_ctx *ctx, void *arg);

/* Call fn(ctx, arg) on this PE from the scheduler after `secs` seconds. */
int cp_call_after(cp_ctx *ctx, double secs, cp_timer_fn fn, void *arg);

/* The same, for housekeeping that repeats while the job runs (periodic load
 * balancing): the pending timer does not keep the job from being quiescent.
 * What the callback sends counts as usual. */
int cp_call_background(cp_ctx *ctx, double secs, cp_timer_fn fn, void *arg);

/* Deliver `msg` to `handler` on this PE after `secs` seconds. */
int cp_send_after(cp_ctx *ctx, double secs, int handler, cp_msg *msg);

/* ---- quiescence detection ----------------------------------------------- */

/*
 * The job is quiescent when no message is in flight or being processed on
 * any PE and no timer is pending. cp_qd_start() asks for fn(ctx, arg) to be
 * called on this PE once it is (any PE may ask, any number of times; each
 * request is answered once, from the scheduler). Detection runs in waves
 * from PE 0 while some request waits, and costs nothing otherwise.
 *
 * The runtime counts what it sends and dispatches. A layer above that keeps
 * a received message aside to deliver it later (e.g. until the object it is
 * for exists) calls cp_qd_create(ctx, 1) when it keeps it and
 * cp_qd_process(ctx, 1) when it delivers or drops it, so that the job is
 * not quiescent meanwhile.
 */
typedef void (*cp_qd_fn)(cp_ctx *ctx, void *arg);
int cp_qd_start(cp_ctx *ctx, cp_qd_fn fn, void *arg);
/* The same, answered alone: when the job is quiescent and exclusive
 * requests wait, they are answered and the others wait for the next
 * quiescence (after whatever the exclusive callbacks start has ended). A
 * layer above that must act at quiescence before anyone else sends (e.g.
 * a checkpoint taking every PE's state) uses it. */
int cp_qd_start_exclusive(cp_ctx *ctx, cp_qd_fn fn, void *arg);
void cp_qd_create(cp_ctx *ctx, uint64_t n);
void cp_qd_process(cp_ctx *ctx, uint64_t n);

/* ---- load-balancing strategies ------------------------------------------ */

/*
 * A strategy is a pure function from a load table to a placement: it reads
 * the objects (their PE, measured load, whether they may move) and the PEs'
 * background load, and writes a new PE for every object. It sends nothing
 * and keeps nothing; the layer above migrates what moved.
 */
typedef enum cp_lb_kind {
    CP_LB_DUMMY,         /* measure, move nothing */
    CP_LB_GREEDY,        /* heaviest first, each to the least loaded PE */
    CP_LB_GREEDY_REFINE, /* greedy's result, keeping objects where they are
                            unless that exceeds tolerance x greedy's max */
    CP_LB_REFINE,        /* from the current placement, move objects off PEs
                            above tolerance x the average, few moves */
    CP_LB_RAND_CENT,     /* every movable object to a random PE */
    CP_LB_ROTATE,        /* every movable object one PE on (a stress test) */
    CP_LB_GREEDY_COMM,   /* greedy, each object to the PE where its load plus
                            the cost of its messages to objects placed on
                            other PEs is least (the edges below) */
    CP_LB_COUNT_
} cp_lb_kind;

typedef struct cp_lb_obj {
    int pe;         /* where it is, 0 <= pe < npes */
    int migratable; /* 0: it stays */
    double load;    /* seconds, >= 0 */
} cp_lb_obj;

/* Messages from object a to object b (indices in objs) since the last step. */
typedef struct cp_lb_edge {
    size_t a, b;
    double msgs, bytes;
} cp_lb_edge;

typedef struct cp_lb_input {
    int npes;
    const double *bg_load; /* npes background loads (seconds), or NULL */
    const cp_lb_obj *objs;
    size_t nobjs;
    double tolerance;      /* GreedyRefine and Refine; <= 0 means 1.05 */
    uint64_t seed;         /* RandCent */
    const cp_lb_edge *edges; /* GreedyComm: who talks to whom (may be NULL) */
    size_t nedges;
    double alpha, beta;    /* GreedyComm: seconds a message and a byte cost
                              between PEs; <= 0 means 1e-5 and 1e-9 */
} cp_lb_input;

/* The strategy named `name` (e.g. "GreedyLB"), or CP_EINVAL; cp_lb_name is
 * the inverse (NULL for a bad kind). */
int cp_lb_kind_of(const char *name);
const char *cp_lb_name(int kind);

/* Write a PE for every object into new_pe (nobjs entries). CP_EINVAL for a
 * bad kind or input (npes < 1, an object on a PE that does not exist, a
 * negative load), CP_ENOMEM when out of memory (new_pe then unchanged). */
int cp_lb_place(int kind, const cp_lb_input *in, int *new_pe);

/* Figures of a placement: the max and average PE load before (objects at
 * `pe`) and after (at new_pe), and how many objects move. */
typedef struct cp_lb_figures {
    double max_before, max_after, avg;
    size_t moves;
} cp_lb_figures;

int cp_lb_figures_of(const cp_lb_input *in, const int *new_pe, cp_lb_figures *out);

/* ---- scheduler ---------------------------------------------------------- */

/* Run until the job exits. Returns 0 then, or a negative error. */
int cp_run(cp_ctx *ctx);

/*
 * Run until cond(arg) returns non-zero (checked after every message and
 * timer) or the job exits. Returns 0 when the condition held, 1 when the job
 * is exiting, or a negative error. cond may be NULL (run until exit).
 */
int cp_run_until(cp_ctx *ctx, int (*cond)(void *arg), void *arg);

/* One pass: due timers, then the messages already queued (bounded batch);
 * never blocks. Returns the number of messages and timers handled. */
int cp_run_once(cp_ctx *ctx);

/*
 * From a handler that waits for one message (a coroutine a handler runs,
 * say): poll the machine layer for up to `secs` seconds, while nothing
 * else waits on this PE (no message held, queued to itself or left in the
 * scheduler's batch, no timer or quiescence wave due by then, the job not
 * exiting) and its host is not oversubscribed. The first message that
 * arrives is dispatched now, from here, when want(msg, arg) is non-zero
 * (returns 1); any other is held, to be the scheduler's next (returns 0).
 * Returns 0 too when it did not poll or nothing came in time. Only plain
 * messages (cp_send) are offered to want. The time it polls counts as idle
 * (cp_counters.idle_secs), as the scheduler's waits do.
 */
int cp_poll_for(cp_ctx *ctx, double secs, int (*want)(const cp_msg *msg, void *arg),
                void *arg);

/* ---- ending the job ----------------------------------------------------- */

/*
 * Ask the whole job to end with `code`. Returns at once; every PE's
 * scheduler returns at its next pass (cp_run returns 0), and the launcher
 * exits with `code`. The first code given wins.
 */
void cp_exit(cp_ctx *ctx, int code);

/* Non-zero once the job is ending (cp_exit() was called on any PE). */
int cp_exiting(cp_ctx *ctx);

/*
 * End the whole job now: print "charmpy: PE n: abort: <message>" on stderr,
 * record the message for the launcher and exit the process with status 1.
 * The launcher then ends every other PE and exits non-zero.
 */
#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 2, 3)))
#endif
void cp_abort(cp_ctx *ctx, const char *fmt, ...);

/* Block until every PE has called cp_barrier() (no messages are handled
 * while waiting). */
int cp_barrier(cp_ctx *ctx);

/* ---- counters ----------------------------------------------------------- */

typedef struct cp_counters {
    uint64_t msgs_created;    /* cp_msg_alloc() calls, internal copies too */
    uint64_t msgs_sent;       /* messages handed to the transport or local queue */
    uint64_t msgs_processed;  /* messages whose handler was called */
    uint64_t bytes_sent;      /* payload bytes sent */
    uint64_t bytes_processed; /* payload bytes of the messages processed */
    double idle_secs;         /* wall time spent waiting for work in
                                 cp_run_until (the machine layer's wait) */
    /* With profiling on (cp_set_profiling, or the +stats flag); 0 otherwise: */
    double send_secs;         /* in the machine layer's send calls */
    double recv_secs;         /* taking messages off the machine layer (its poll) */
} cp_counters;

void cp_get_counters(const cp_ctx *ctx, cp_counters *out);

/* Time sends and receives into cp_counters (send_secs, recv_secs): two
 * clock reads a message while on, one branch while off. On from the start
 * when the job's flags hold +stats. */
void cp_set_profiling(cp_ctx *ctx, int on);

/* ---- tracing ------------------------------------------------------------- */
/*
 * A timeline of the job in the Chrome trace-event format (Perfetto and
 * chrome://tracing open it). Each PE records into a buffer of at most
 * max_events events (0: 200,000; later events are counted as dropped) and
 * writes it to <path>.<pe>.part at cp_finalize, cp_abort and SIGTERM; PE 0
 * then joins the parts into <path> (cp_trace_merge). The +trace FILE flag
 * opens it at cp_init. The runtime records a slice for every message's
 * handler, a flow from each send to its dispatch, and the queue length;
 * the layer above adds slices (cp_trace_slice) and instants.
 */
int cp_trace_open(cp_ctx *ctx, const char *path, size_t max_events);
int cp_tracing(const cp_ctx *ctx);
const char *cp_trace_path(const cp_ctx *ctx);   /* NULL when not tracing */
/* An id for the string s in this PE's trace (0: none, or not tracing). */
uint32_t cp_trace_string(cp_ctx *ctx, const char *s);
/* The name of handler h's slices (default "handler N"). */
void cp_trace_handler_name(cp_ctx *ctx, int handler, const char *name);
/* A slice from t0 to t1 (cp_wall_time) with name and category ids, the
 * index of what ran (nidx <= 3 numbers) and the bytes it received
 * (CP_TRACE_MSG_BYTES: the payload of the message being dispatched). */
#define CP_TRACE_MSG_BYTES UINT64_MAX
void cp_trace_slice(cp_ctx *ctx, double t0, double t1, uint32_t name, uint32_t cat,
                    const int64_t *idx, int nidx, uint64_t bytes);
/* The start of a slice about to run (cp_wall_time's clock), or -1 when the
 * buffer is full (nothing more is recorded). Inside a handler, the first
 * call returns the handler's own start, and the slice recorded from it
 * stands for the handler's (which then is not written): one clock read
 * less, and one event less, a message. */
double cp_trace_begin(cp_ctx *ctx);
/* The trace's clock (cp_wall_time's, read through the TSC where the kernel
 * trusts it: cheaper); cp_wall_time when not tracing. A slice started with
 * cp_trace_begin ends with this. */
double cp_trace_now(cp_ctx *ctx);
/* What a cp_trace_open error means, for a user (the path, the environment). */
const char *cp_trace_open_error(int rc);
void cp_trace_instant(cp_ctx *ctx, uint32_t name, uint32_t cat, const int64_t *idx, int nidx,
                      double value);
void cp_trace_counter(cp_ctx *ctx, uint32_t name, double value);
/* Measure this PE's clock offset to PE 0 (a few round trips, running the
 * scheduler meanwhile); needed only across hosts. */
int cp_trace_sync(cp_ctx *ctx);
double cp_trace_offset(const cp_ctx *ctx);
/* Write this PE's part now (once; later calls do nothing). */
int cp_trace_flush(cp_ctx *ctx);
/* Join <path>.<pe>.part for pe < npes into <path>, waiting up to wait_secs
 * for parts to appear, and remove them; *missing: the PEs without one. */
int cp_trace_merge(const char *path, int npes, double wait_secs, int *missing);

#ifdef __cplusplus
}
#endif
#endif /* CHARMPY_RUNTIME_H */
