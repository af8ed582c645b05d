/* Messages: allocation through the machine layer, sending, and the local
 * queue that carries messages a PE sends to itself without the transport. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

cp_msg *cp_msg_alloc(cp_ctx *ctx, size_t size) {
    cp_msg *msg = ctx->ops->msg_alloc(ctx->m, size);
    if (msg)
        ctx->counters.msgs_created++;
    return msg;
}

void cp_msg_free(cp_ctx *ctx, cp_msg *msg) {
    if (msg)
        ctx->ops->msg_free(ctx->m, msg);
}

cp_msg *cpM_copy(cp_ctx *ctx, const cp_msg *msg) {
    cp_msg *c = cp_msg_alloc(ctx, msg->size);
    if (c)
        memcpy(c, msg, sizeof *msg + msg->size);
    return c;
}

static int ring_reserve(cp_ring *r) {
    if (r->count == r->cap) {
        uint32_t ncap = r->cap ? r->cap * 2 : 64;
        cp_msg **nb = malloc((size_t)ncap * sizeof *nb);
        if (!nb)
            return CP_ENOMEM;
        for (uint32_t i = 0; i < r->count; i++)
            nb[i] = r->buf[(r->head + i) & (r->cap - 1)];
        free(r->buf);
        r->buf = nb;
        r->cap = ncap;
        r->head = 0;
    }
    return 0;
}

int cpM_ring_push(cp_ring *r, cp_msg *msg) {
    if (ring_reserve(r))
        return CP_ENOMEM;
    r->buf[(r->head + r->count) & (r->cap - 1)] = msg;
    r->count++;
    return 0;
}

int cpM_ring_unshift(cp_ring *r, cp_msg *msg) {
    if (ring_reserve(r))
        return CP_ENOMEM;
    r->head = (r->head + r->cap - 1) & (r->cap - 1);
    r->buf[r->head] = msg;
    r->count++;
    return 0;
}

cp_msg *cpM_ring_pop(cp_ring *r) {
    if (!r->count)
        return NULL;
    cp_msg *msg = r->buf[r->head];
    r->head = (r->head + 1) & (r->cap - 1);
    r->count--;
    return msg;
}

void cpM_ring_free(cp_ctx *ctx, cp_ring *r) {
    cp_msg *msg;
    while ((msg = cpM_ring_pop(r)))
        cp_msg_free(ctx, msg);
    free(r->buf);
    memset(r, 0, sizeof *r);
}

/* Hand a fully addressed message to its PE: the local queue for this PE,
 * the machine layer for any other. Ownership passes on success. */
static inline int transmit(cp_ctx *ctx, int pe, cp_msg *msg) {
    uint64_t size = msg->size; /* msg is not ours to read once sent */
    uint32_t kind = msg->kind;
    int rc = pe == ctx->my_pe ? cpM_ring_push(&ctx->local, msg)
                              : ctx->ops->send(ctx->m, pe, msg);
    if (rc == 0) {
        ctx->counters.msgs_sent++;
        ctx->counters.bytes_sent += size;
        ctx->qd.created += kind != CP_KIND_QD;
    }
    return rc;
}

/* profiling or tracing: the send timed, the flow started */
static __attribute__((noinline)) int transmit_observed(cp_ctx *ctx, int pe, cp_msg *msg) {
    if (ctx->trace && msg->kind != CP_KIND_TRACE)
        cpT_send(ctx, pe, msg);
    if (!ctx->profiling)
        return transmit(ctx, pe, msg);
    double t0 = cp_wall_time();
    int rc = transmit(ctx, pe, msg);
    ctx->counters.send_secs += cp_wall_time() - t0;
    return rc;
}

int cpM_transmit(cp_ctx *ctx, int pe, cp_msg *msg) {
    msg->src_pe = (uint32_t)ctx->my_pe;
    if (__builtin_expect(ctx->observe, 0))
        return transmit_observed(ctx, pe, msg);
    return transmit(ctx, pe, msg);
}

int cp_send(cp_ctx *ctx, int pe, int handler, cp_msg *msg) {
    if (!msg)
        return CP_EINVAL;
    if (pe < 0 || pe >= ctx->npes || handler < 0 || handler >= ctx->nhandlers)
        return CP_ERANGE;
    msg->handler = (uint32_t)handler;
    msg->kind = CP_KIND_PLAIN;
    return cpM_transmit(ctx, pe, msg);
}

/* The payload size a message with these segments has at its destination
 * (see cp_send_segs); CP_ETOOBIG when it does not fit in 64 bits. */
static int segs_total(uint64_t head, const cp_seg *segs, int nseg, uint64_t *total) {
    uint64_t n = head;
    for (int i = 0; i < nseg; i++) {
        if (segs[i].len == 0)
            continue;
        uint64_t at = (n + 63) & ~(uint64_t)63;
        if (at < n || at + segs[i].len < at)
            return CP_ETOOBIG;
        n = at + segs[i].len;
    }
    *total = n;
    return 0;
}

/* The message cp_send_segs sends when the segments are copied: msg's
 * header and payload, then the segments with their zero padding. */
static cp_msg *segs_gather(cp_ctx *ctx, const cp_msg *msg, const cp_seg *segs, int nseg,
                           uint64_t total) {
    if (total > SIZE_MAX)
        return NULL;
    cp_msg *full = cp_msg_alloc(ctx, (size_t)total);
    if (!full)
        return NULL;
    memcpy(full, msg, sizeof *msg + msg->size);
    full->size = total;
    char *p = cp_msg_data(full);
    uint64_t n = msg->size;
    for (int i = 0; i < nseg; i++) {
        if (segs[i].len == 0)
            continue;
        uint64_t at = (n + 63) & ~(uint64_t)63;
        memset(p + n, 0, (size_t)(at - n));
        memcpy(p + at, segs[i].base, segs[i].len);
        n = at + segs[i].len;
    }
    return full;
}

int cp_send_segs(cp_ctx *ctx, int pe, int handler, cp_msg *msg, const cp_seg *segs,
                 int nseg, cp_release_fn release, void *arg) {
    if (!msg || nseg < 0 || (nseg > 0 && !segs))
        return CP_EINVAL;
    if (pe < 0 || pe >= ctx->npes || handler < 0 || handler >= ctx->nhandlers)
        return CP_ERANGE;
    uint64_t total;
    int rc = segs_total(msg->size, segs, nseg, &total);
    if (rc)
        return rc;
    int nonempty = 0;
    for (int i = 0; i < nseg; i++)
        nonempty += segs[i].len > 0;
    if (nonempty > 0 && pe != ctx->my_pe && ctx->ops->sendv) {
        /* In place. The transport wants only the segments that carry bytes:
         * compact them into a small array when some are empty. */
        cp_seg one[8], *use = (cp_seg *)segs, *heap = NULL;
        if (nonempty < nseg) {
            use = nonempty <= 8 ? one : (heap = malloc((size_t)nonempty * sizeof *heap));
            if (!use)
                return CP_ENOMEM;
            for (int i = 0, j = 0; i < nseg; i++)
                if (segs[i].len)
                    use[j++] = segs[i];
        }
        msg->handler = (uint32_t)handler;
        msg->kind = CP_KIND_PLAIN;
        msg->src_pe = (uint32_t)ctx->my_pe;
        if (ctx->trace)
            cpT_send(ctx, pe, msg);
        double t0 = ctx->profiling ? cp_wall_time() : 0;
        rc = ctx->ops->sendv(ctx->m, pe, msg, use, nonempty, total, release, arg);
        if (ctx->profiling)
            ctx->counters.send_secs += cp_wall_time() - t0;
        free(heap);
        if (rc == 0) {
            ctx->counters.msgs_sent++;
            ctx->counters.bytes_sent += total;
            ctx->qd.created++;
        }
        return rc;
    }
    cp_msg *full = msg;
    if (nonempty > 0) {
        full = segs_gather(ctx, msg, segs, nseg, total);
        if (!full)
            return CP_ENOMEM;
    }
    rc = cp_send(ctx, pe, handler, full);
    if (rc) {
        if (full != msg)
            cp_msg_free(ctx, full);
        return rc;
    }
    if (full != msg)
        cp_msg_free(ctx, msg);
    if (release)
        release(arg);
    return 0;
}

int cp_sends_in_place(const cp_ctx *ctx) { return ctx->ops->sendv != NULL; }

int cp_local_extract(cp_ctx *ctx, int (*match)(const cp_msg *msg, void *arg),
                     void (*take)(cp_ctx *ctx, cp_msg *msg, void *arg), void *arg) {
    uint32_t n = ctx->local.count;
    int taken = 0;
    for (uint32_t i = 0; i < n; i++) {
        cp_msg *m = cpM_ring_pop(&ctx->local);
        if (m->kind == CP_KIND_PLAIN && match(m, arg)) {
            ctx->qd.processed++; /* it leaves the queue without a dispatch */
            take(ctx, m, arg);
            taken++;
        } else if (cpM_ring_push(&ctx->local, m)) {
            cp_abort(ctx, "out of memory requeueing a message"); /* cannot be: room was freed */
        }
    }
    return taken;
}
