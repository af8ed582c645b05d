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
int cpM_transmit(cp_ctx *ctx, int pe, cp_msg *msg) {
    uint64_t size = msg->size; /* msg is not ours to read once sent */
    msg->src_pe = (uint32_t)ctx->my_pe;
    int rc = pe == ctx->my_pe ? cpM_ring_push(&ctx->local, msg)
                              : ctx->ops->send(ctx->m, pe, msg);
    if (rc == 0) {
        ctx->counters.msgs_sent++;
        ctx->counters.bytes_sent += size;
    }
    return rc;
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
