/*
 * The runtime core's private state: one cp_ctx per PE process.
 * Files and their prefixes:
 *   ctx.c    cp_init/cp_finalize, handlers, exit/abort, counters
 *   msg.c    message allocation, send, the local queue
 *   sched.c  the scheduler loop and dispatch
 *   tree.c   spanning trees and broadcast
 *   reduce.c reductions and the built-in reducers
 *   timer.c  the timer heap
 *   qd.c     quiescence detection
 *   trace.c  the trace buffer, its part file, merging the parts
 */
#ifndef CHARMPY_RUNTIME_INTERNAL_H
#define CHARMPY_RUNTIME_INTERNAL_H

#include <stdint.h>

#include "charmpy/runtime.h"
#include "machine/machine.h"

/* cp_msg.kind; quiescence detection's own messages are not counted by it */
enum { CP_KIND_PLAIN = 0, CP_KIND_BCAST = 1, CP_KIND_REDN = 2, CP_KIND_QD = 3,
       CP_KIND_MCAST = 4, CP_KIND_TRACE = 5 /* trace.c's clock questions */ };

typedef struct cp_trace cp_trace;

#define CP_REDUCER_CUSTOM_BASE 32
#define CP_TREE_BFACTOR 4
#define CP_POLL_BATCH 64

typedef struct cp_handler_ent {
    cp_handler_fn fn;
    void *user;
} cp_handler_ent;

typedef struct cp_reducer_ent {
    cp_combine_fn fn;
    void *user;
} cp_reducer_ent;

/* Messages to this PE: a growable ring, FIFO. */
typedef struct cp_ring {
    cp_msg **buf;
    uint32_t cap, head, count; /* cap is a power of two */
} cp_ring;

typedef struct cp_timer {
    double when;
    uint64_t seq;        /* ties on `when` fire in the order they were set */
    cp_timer_fn fn;      /* either fn(arg) ... */
    void *arg;
    cp_msg *msg;         /* ... or msg to its handler (owned by the timer) */
    int background;      /* not counted by quiescence detection */
} cp_timer;

/* One reduction this PE takes part in that has not finished here. Children
 * may send their partial results before this PE contributes; until then the
 * tree position is unknown and their parts wait in `early`. */
typedef struct cp_redn {
    uint64_t stream, seq;
    uint32_t reducer, root, handler; /* root: the PE that gets the result */
    int have_spec;       /* reducer/root/handler set (by any part) */
    int have_own;        /* this PE's contribution arrived: the fields below
                            are valid */
    int parent;          /* -1 at the root */
    int nchildren;
    int children[CP_TREE_BFACTOR];
    int nhave;           /* parts filed, own included */
    cp_msg *parts[1 + CP_TREE_BFACTOR]; /* [0] own, [1+j] child j */
    int nearly;
    cp_msg *early[CP_TREE_BFACTOR];
} cp_redn;

/* Quiescence detection (qd.c). */
typedef struct cp_qdreq {
    uint64_t id;
    cp_qd_fn fn;
    void *arg;
} cp_qdreq;

typedef struct cp_qdwait {
    int pe;
    int exclusive;               /* cp_qd_start_exclusive */
    uint64_t id;
} cp_qdwait;

typedef struct cp_qd {
    uint64_t created, processed; /* this PE's counters; they only grow */
    cp_qdreq *reqs;              /* requests made on this PE, not answered */
    int nreqs, capreqs;
    uint64_t last_id;
    /* this PE's part of the current wave */
    uint32_t wave;
    int in_wave, replies_wanted;
    uint64_t sum_created, sum_processed; /* of the children's subtrees */
    /* PE 0, which runs the waves */
    cp_qdwait *waiting;          /* requests to answer at quiescence */
    int nwaiting, capwaiting;
    int wave_running;
    double next_wave;            /* when the next wave starts; < 0: none */
    double delay;                /* after an unbalanced wave */
    int have_last;
    uint64_t last_created, last_processed; /* the previous wave's sums */
} cp_qd;

/* A runtime flag of the command line (cp_flag). */
typedef struct cp_flagval {
    char *name, *value;
} cp_flagval;

/* The next sequence number of each reduction stream. */
typedef struct cp_stream {
    uint64_t stream, next;
} cp_stream;

struct cp_ctx {
    const cm_ops *ops;
    cm_machine *m;
    int my_pe, npes;
    cm_job_info info;

    cp_handler_ent *handlers;
    int nhandlers, caphandlers;
    cp_reducer_ent *reducers;
    int nreducers, capreducers;

    cp_ring local;       /* messages this PE sent itself */
    cp_ring held;        /* received, not yet dispatched (run_until stopped
                            mid-batch); they go before anything polled later */
    int pass_left;       /* messages of the scheduler's batch after the one
                            being dispatched (cp_poll_for waits for them) */

    cp_timer *timers;    /* binary min-heap */
    int ntimers, captimers;
    uint64_t timer_seq;

    cp_redn *redns;      /* unordered; few are in flight at once */
    int nredns, capredns;
    cp_stream *streams;  /* unordered; one per stream this PE reduced in */
    int nstreams, capstreams;

    cp_qd qd;

    cp_flagval *flags;   /* runtime flags removed from argv, in order */
    int nflags, capflags;

    int exiting;
    int exit_code;
    cp_counters counters;
    int profiling;               /* cp_set_profiling: time sends and polls */
    int observe;                 /* profiling or trace: the hot path's one test */
    cp_trace *trace;             /* tracing: trace.c; NULL when off */
};

/* msg.c */
int cpM_ring_push(cp_ring *r, cp_msg *msg);
cp_msg *cpM_ring_pop(cp_ring *r);
int cpM_ring_unshift(cp_ring *r, cp_msg *msg); /* push at the front */
cp_msg *cpM_copy(cp_ctx *ctx, const cp_msg *msg);
int cpM_transmit(cp_ctx *ctx, int pe, cp_msg *msg);
void cpM_ring_free(cp_ctx *ctx, cp_ring *r); /* frees queued messages */

/* profiling or tracing changed: the hot path's flag */
static inline void cpX_observe(cp_ctx *ctx) { ctx->observe = ctx->profiling || ctx->trace; }

/* sched.c */
void cpS_dispatch(cp_ctx *ctx, cp_msg *msg);

/* trace.c (called only while ctx->trace) */
void cpT_send(cp_ctx *ctx, int pe, cp_msg *msg);
void cpT_dispatch(cp_ctx *ctx, cp_msg *msg, cp_handler_ent *h);
void cpT_queue(cp_ctx *ctx, uint32_t polled);
void cpT_sync_receive(cp_ctx *ctx, cp_msg *msg);
void cpT_free(cp_ctx *ctx);

/* tree.c: the k-ary spanning tree rooted at `root` over PEs 0..n-1 */
int cpT_parent(int pe, int root, int n);
int cpT_children(int pe, int root, int n, int *out); /* returns count */
void cpT_forward_bcast(cp_ctx *ctx, cp_msg *msg);
/* A multicast reached this PE: copies to its children in the tree over the
 * message's PE list, then the trailer is cut off (msg->size shrinks back
 * to what the sender gave). */
void cpT_forward_mcast(cp_ctx *ctx, cp_msg *msg);

/* reduce.c */
void cpR_receive(cp_ctx *ctx, cp_msg *msg);
void cpR_free_all(cp_ctx *ctx);

/* qd.c */
void cpQ_receive(cp_ctx *ctx, cp_msg *msg);
double cpQ_next_wave(const cp_ctx *ctx); /* < 0 when none is due */
int cpQ_run_due(cp_ctx *ctx);            /* starts a wave that is due */
void cpQ_free_all(cp_ctx *ctx);

/* timer.c */
double cpTm_next_deadline(cp_ctx *ctx); /* < 0 when none */
int cpTm_run_due(cp_ctx *ctx);
void cpTm_free_all(cp_ctx *ctx);

/* Grow *buf (elements of `size` bytes) to hold at least `need`. */
int cp_grow(void **buf, int *cap, int need, size_t size);

#endif /* CHARMPY_RUNTIME_INTERNAL_H */
