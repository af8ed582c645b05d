/*
 * Reductions along the spanning tree of tree.c. Each PE numbers its
 * contributions 0, 1, 2, ...; the k-th contribution of every PE belongs to
 * reduction k. A PE combines its own contribution with the partial results
 * of its children (which may arrive before its own) and sends the result to
 * its parent; the root delivers it to the reduction's handler through its
 * local queue. Contributions are messages, so a partial result travels up
 * the tree with no copy: built-in reducers combine into the PE's own
 * contribution in place.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define NBUILTIN (CP_OP_COUNT_ * CP_T_COUNT_)

static const char *const op_names[CP_OP_COUNT_] = {
    "sum", "product", "min", "max", "logical_and", "logical_or", "logical_xor"};
static const char *const type_names[CP_T_COUNT_] = {"int32", "int64", "float32",
                                                    "float64"};

size_t cp_type_size(cp_type t) {
    switch (t) {
    case CP_T_INT32: case CP_T_FLOAT32: return 4;
    case CP_T_INT64: case CP_T_FLOAT64: return 8;
    default: return 0;
    }
}

int cp_reducer_builtin(cp_op op, cp_type type) {
    if ((unsigned)op >= CP_OP_COUNT_ || (unsigned)type >= CP_T_COUNT_)
        return CP_EINVAL;
    return (int)op * CP_T_COUNT_ + (int)type;
}

static void describe(char *buf, size_t n, uint32_t reducer) {
    if (reducer < NBUILTIN)
        snprintf(buf, n, "%s/%s", op_names[reducer / CP_T_COUNT_],
                 type_names[reducer % CP_T_COUNT_]);
    else
        snprintf(buf, n, "custom #%u", reducer - CP_REDUCER_CUSTOM_BASE);
}

/* Element-wise a[i] = a[i] OP b[i]. */
#define APPLY(T, EXPR)                                                        \
    do {                                                                      \
        T *x = (T *)a;                                                        \
        const T *y = (const T *)b;                                            \
        for (size_t i = 0; i < count; i++) {                                  \
            T p = x[i], q = y[i];                                             \
            x[i] = (EXPR);                                                    \
        }                                                                     \
    } while (0)

#define APPLY_ALL(T)                                                          \
    switch (op) {                                                             \
    case CP_OP_SUM: APPLY(T, p + q); break;                                   \
    case CP_OP_PROD: APPLY(T, p * q); break;                                  \
    case CP_OP_MIN: APPLY(T, q < p ? q : p); break;                           \
    case CP_OP_MAX: APPLY(T, q > p ? q : p); break;                           \
    case CP_OP_LAND: APPLY(T, (T)((p != 0) && (q != 0))); break;              \
    case CP_OP_LOR: APPLY(T, (T)((p != 0) || (q != 0))); break;               \
    case CP_OP_LXOR: APPLY(T, (T)((p != 0) != (q != 0))); break;              \
    default: break;                                                           \
    }

static void apply(cp_op op, cp_type type, void *a, const void *b, size_t count) {
    switch (type) {
    case CP_T_INT32: APPLY_ALL(int32_t); break;
    case CP_T_INT64: APPLY_ALL(int64_t); break;
    case CP_T_FLOAT32: APPLY_ALL(float); break;
    case CP_T_FLOAT64: APPLY_ALL(double); break;
    default: break;
    }
}

/* Integer sums and products wrap like the hardware does, not UB. */
static void apply_int_wrapping(cp_op op, cp_type type, void *a, const void *b,
                               size_t count) {
    if (type == CP_T_INT32 && (op == CP_OP_SUM || op == CP_OP_PROD)) {
        uint32_t *x = a;
        const uint32_t *y = b;
        for (size_t i = 0; i < count; i++)
            x[i] = op == CP_OP_SUM ? x[i] + y[i] : x[i] * y[i];
    } else if (type == CP_T_INT64 && (op == CP_OP_SUM || op == CP_OP_PROD)) {
        uint64_t *x = a;
        const uint64_t *y = b;
        for (size_t i = 0; i < count; i++)
            x[i] = op == CP_OP_SUM ? x[i] + y[i] : x[i] * y[i];
    } else {
        apply(op, type, a, b, count);
    }
}

int cp_reduce_apply(cp_op op, cp_type type, void *acc, const void *in, size_t count) {
    if ((unsigned)op >= CP_OP_COUNT_ || (unsigned)type >= CP_T_COUNT_)
        return CP_EINVAL;
    apply_int_wrapping(op, type, acc, in, count);
    return 0;
}

static cp_msg *combine(cp_ctx *ctx, cp_redn *r, cp_msg **parts, int n) {
    if (r->reducer >= NBUILTIN) {
        cp_reducer_ent *e = &ctx->reducers[r->reducer - CP_REDUCER_CUSTOM_BASE];
        cp_msg *res = e->fn(ctx, parts, n, e->user);
        if (!res)
            cp_abort(ctx, "custom reducer #%u failed in reduction %llu",
                     r->reducer - CP_REDUCER_CUSTOM_BASE,
                     (unsigned long long)r->seq);
        for (int i = 0; i < n; i++)
            if (parts[i] != res)
                cp_msg_free(ctx, parts[i]);
        return res;
    }
    cp_op op = (cp_op)(r->reducer / CP_T_COUNT_);
    cp_type type = (cp_type)(r->reducer % CP_T_COUNT_);
    for (int i = 1; i < n; i++) {
        if (parts[i]->size != parts[0]->size)
            cp_abort(ctx, "reduction %llu (%s/%s): contributions have different "
                     "lengths (%llu and %llu bytes); every PE must contribute "
                     "vectors of the same length",
                     (unsigned long long)r->seq, op_names[op], type_names[type],
                     (unsigned long long)parts[0]->size,
                     (unsigned long long)parts[i]->size);
        apply_int_wrapping(op, type, cp_msg_data(parts[0]), cp_msg_data(parts[i]),
                           parts[0]->size / cp_type_size(type));
        cp_msg_free(ctx, parts[i]);
    }
    return parts[0];
}

/* A single contribution is the result: logical ops must still give 1 or 0. */
static void normalize(const cp_redn *r, cp_msg *m) {
    cp_op op = (cp_op)(r->reducer / CP_T_COUNT_);
    if (op != CP_OP_LAND && op != CP_OP_LOR && op != CP_OP_LXOR)
        return;
    /* x lor 0 == (x != 0) for every type. */
    cp_type type = (cp_type)(r->reducer % CP_T_COUNT_);
    size_t count = m->size / cp_type_size(type);
    for (size_t i = 0; i < count; i++) {
        char zero[8] = {0};
        apply(CP_OP_LOR, type, (char *)cp_msg_data(m) + i * cp_type_size(type), zero, 1);
    }
}

static cp_redn *find(cp_ctx *ctx, uint64_t stream, uint64_t seq) {
    for (int i = 0; i < ctx->nredns; i++)
        if (ctx->redns[i].seq == seq && ctx->redns[i].stream == stream)
            return &ctx->redns[i];
    if (cp_grow((void **)&ctx->redns, &ctx->capredns, ctx->nredns + 1,
                sizeof *ctx->redns))
        cp_abort(ctx, "out of memory tracking reduction %llu",
                 (unsigned long long)seq);
    cp_redn *r = &ctx->redns[ctx->nredns++];
    memset(r, 0, sizeof *r);
    r->stream = stream;
    r->seq = seq;
    return r;
}

static uint64_t next_seq(cp_ctx *ctx, uint64_t stream) {
    for (int i = 0; i < ctx->nstreams; i++)
        if (ctx->streams[i].stream == stream)
            return ctx->streams[i].next++;
    if (cp_grow((void **)&ctx->streams, &ctx->capstreams, ctx->nstreams + 1,
                sizeof *ctx->streams))
        cp_abort(ctx, "out of memory tracking reduction stream %llu",
                 (unsigned long long)stream);
    ctx->streams[ctx->nstreams++] = (cp_stream){stream, 1};
    return 0;
}

static void finish(cp_ctx *ctx, cp_redn *r) {
    cp_msg *parts[1 + CP_TREE_BFACTOR];
    int n = 0;
    for (int i = 0; i < 1 + CP_TREE_BFACTOR; i++)
        if (r->parts[i])
            parts[n++] = r->parts[i];
    cp_redn done = *r;
    *r = ctx->redns[--ctx->nredns];
    cp_msg *res = n == 1 ? parts[0] : combine(ctx, &done, parts, n);
    res->kind = CP_KIND_REDN;
    res->stream = done.stream;
    res->seq = done.seq;
    res->reducer = done.reducer;
    res->root = done.root;
    res->red_handler = done.handler;
    int to = done.parent;
    if (to < 0) {
        /* The top of the tree sends the result to the root the callers named
         * (cp_reduce reduces along the tree of PE 0 whatever the root, so
         * that contributions naming different roots meet and are reported). */
        res->kind = CP_KIND_PLAIN;
        res->handler = done.handler;
        to = (int)done.root;
        if (n == 1 && done.reducer < NBUILTIN)
            normalize(&done, res);
    }
    if (cpM_transmit(ctx, to, res))
        cp_abort(ctx, "cannot pass on reduction %llu", (unsigned long long)done.seq);
}

static void check_spec(cp_ctx *ctx, cp_redn *r, const cp_msg *msg, unsigned from) {
    if (!r->have_spec) {
        r->reducer = msg->reducer;
        r->root = msg->root;
        r->handler = msg->red_handler;
        r->have_spec = 1;
        return;
    }
    if (r->reducer == msg->reducer && r->root == msg->root &&
        r->handler == msg->red_handler)
        return;
    char a[64], b[64];
    describe(a, sizeof a, r->reducer);
    describe(b, sizeof b, msg->reducer);
    cp_abort(ctx, "reduction %llu of stream %llu does not match across PEs: reducer "
             "%s, root %u, handler %u on one PE and reducer %s, root %u, handler "
             "%u on PE %u; every PE must make the same contribute calls in the "
             "same order", (unsigned long long)msg->seq,
             (unsigned long long)msg->stream, a, r->root, r->handler, b, msg->root,
             msg->red_handler, from);
}

/* File a child's partial result in the slot of that child. */
static void file_child(cp_ctx *ctx, cp_redn *r, cp_msg *msg) {
    for (int j = 0; j < r->nchildren; j++) {
        if (r->children[j] != (int)msg->src_pe)
            continue;
        if (r->parts[1 + j])
            cp_abort(ctx, "reduction %llu: PE %u sent its part twice",
                     (unsigned long long)msg->seq, msg->src_pe);
        r->parts[1 + j] = msg;
        r->nhave++;
        return;
    }
    cp_abort(ctx, "reduction %llu of stream %llu: a partial result from PE %u, which "
             "is not a child of PE %d in this reduction's tree (do all PEs pass the "
             "same participants?)", (unsigned long long)msg->seq,
             (unsigned long long)msg->stream, msg->src_pe, ctx->my_pe);
}

void cpR_receive(cp_ctx *ctx, cp_msg *msg) {
    cp_redn *r = find(ctx, msg->stream, msg->seq);
    check_spec(ctx, r, msg, msg->src_pe);
    if (!r->have_own) {
        if (r->nearly == CP_TREE_BFACTOR)
            cp_abort(ctx, "reduction %llu: more partial results than a PE has "
                     "children", (unsigned long long)msg->seq);
        r->early[r->nearly++] = msg;
        return;
    }
    file_child(ctx, r, msg);
    if (r->nhave == 1 + r->nchildren)
        finish(ctx, r);
}

/* Our contribution, with our place in the tree. */
static void contribute(cp_ctx *ctx, cp_msg *contrib, uint64_t stream, int parent,
                       const int *children, int nchildren) {
    contrib->src_pe = (uint32_t)ctx->my_pe;
    cp_redn *r = find(ctx, stream, contrib->seq);
    check_spec(ctx, r, contrib, (unsigned)ctx->my_pe);
    if (r->have_own)
        cp_abort(ctx, "reduction %llu of stream %llu: this PE contributed twice",
                 (unsigned long long)contrib->seq, (unsigned long long)stream);
    r->have_own = 1;
    r->parent = parent;
    r->nchildren = nchildren;
    memcpy(r->children, children, (size_t)nchildren * sizeof *children);
    r->parts[0] = contrib;
    r->nhave = 1;
    for (int i = 0; i < r->nearly; i++)
        file_child(ctx, r, r->early[i]);
    r->nearly = 0;
    if (r->nhave == 1 + r->nchildren)
        finish(ctx, r);
}

static int check_args(cp_ctx *ctx, cp_msg *contrib, int reducer, int handler) {
    if (!contrib)
        return CP_EINVAL;
    int custom_end = CP_REDUCER_CUSTOM_BASE + ctx->nreducers;
    if (reducer < 0 || (reducer >= NBUILTIN && reducer < CP_REDUCER_CUSTOM_BASE) ||
        reducer >= custom_end || handler < 0 || handler >= ctx->nhandlers)
        return CP_ERANGE;
    if (reducer < NBUILTIN &&
        contrib->size % cp_type_size((cp_type)(reducer % CP_T_COUNT_)))
        return CP_EINVAL;
    return 0;
}

static void stamp(cp_msg *m, uint64_t stream, uint64_t seq, int reducer, int root,
                  int handler) {
    m->kind = CP_KIND_REDN;
    m->stream = stream;
    m->seq = seq;
    m->reducer = (uint32_t)reducer;
    m->root = (uint32_t)root;
    m->red_handler = (uint32_t)handler;
}

int cp_reduce(cp_ctx *ctx, cp_msg *contrib, int reducer, int root, int handler) {
    int rc = check_args(ctx, contrib, reducer, handler);
    if (rc)
        return rc;
    if (root < 0 || root >= ctx->npes)
        return CP_ERANGE;
    int kids[CP_TREE_BFACTOR];
    int nk = cpT_children(ctx->my_pe, 0, ctx->npes, kids);
    stamp(contrib, 0, next_seq(ctx, 0), reducer, root, handler);
    contribute(ctx, contrib, 0, cpT_parent(ctx->my_pe, 0, ctx->npes), kids, nk);
    return 0;
}

int cp_reduce_among(cp_ctx *ctx, cp_msg *contrib, uint64_t stream, int reducer,
                    int handler, const int *pes, int npes) {
    int rc = check_args(ctx, contrib, reducer, handler);
    if (rc)
        return rc;
    if (!pes || npes <= 0)
        return CP_EINVAL;
    int pos = -1;
    for (int i = 0; i < npes; i++) {
        if (pes[i] < 0 || pes[i] >= ctx->npes)
            return CP_ERANGE;
        if (pes[i] == ctx->my_pe)
            pos = i;
    }
    if (pos < 0)
        return CP_EINVAL;
    int kids[CP_TREE_BFACTOR], nk = 0;
    for (int i = 1; i <= CP_TREE_BFACTOR; i++) {
        long c = (long)pos * CP_TREE_BFACTOR + i;
        if (c >= npes)
            break;
        kids[nk++] = pes[c];
    }
    int parent = pos == 0 ? -1 : pes[(pos - 1) / CP_TREE_BFACTOR];
    stamp(contrib, stream, next_seq(ctx, stream), reducer, pes[0], handler);
    contribute(ctx, contrib, stream, parent, kids, nk);
    return 0;
}

void cpR_free_all(cp_ctx *ctx) {
    for (int i = 0; i < ctx->nredns; i++) {
        for (int j = 0; j < 1 + CP_TREE_BFACTOR; j++)
            cp_msg_free(ctx, ctx->redns[i].parts[j]);
        for (int j = 0; j < ctx->redns[i].nearly; j++)
            cp_msg_free(ctx, ctx->redns[i].early[j]);
    }
    free(ctx->redns);
    free(ctx->streams);
    ctx->redns = NULL;
    ctx->streams = NULL;
    ctx->nredns = ctx->capredns = ctx->nstreams = ctx->capstreams = 0;
}
