/*
 * Spanning trees and broadcast. The tree rooted at `root` is the k-ary heap
 * over PE ranks relative to the root, r = (pe - root) mod n: the children of
 * r are r*k+1 .. r*k+k, its parent (r-1)/k. Every PE computes it alone, so a
 * broadcast or reduction needs no set-up messages, and any PE can be a root.
 */
#include "internal.h"

static inline int rel(int pe, int root, int n) { return (pe - root + n) % n; }
static inline int abs_pe(int r, int root, int n) { return (r + root) % n; }

int cpT_parent(int pe, int root, int n) {
    int r = rel(pe, root, n);
    return r == 0 ? -1 : abs_pe((r - 1) / CP_TREE_BFACTOR, root, n);
}

int cpT_children(int pe, int root, int n, int *out) {
    int r = rel(pe, root, n), c = 0;
    for (int i = 1; i <= CP_TREE_BFACTOR; i++) {
        long child = (long)r * CP_TREE_BFACTOR + i;
        if (child >= n)
            break;
        out[c++] = abs_pe((int)child, root, n);
    }
    return c;
}

/* Called when a broadcast message reaches this PE, before its handler: each
 * child gets its own copy, since every receiver owns what it receives. */
void cpT_forward_bcast(cp_ctx *ctx, cp_msg *msg) {
    int kids[CP_TREE_BFACTOR];
    int nk = cpT_children(ctx->my_pe, (int)msg->root, ctx->npes, kids);
    for (int i = 0; i < nk; i++) {
        cp_msg *c = cpM_copy(ctx, msg);
        if (!c)
            cp_abort(ctx, "out of memory forwarding a broadcast of %llu bytes",
                     (unsigned long long)msg->size);
        if (cpM_transmit(ctx, kids[i], c))
            cp_abort(ctx, "cannot forward a broadcast to PE %d", kids[i]);
    }
}

int cp_bcast(cp_ctx *ctx, int handler, cp_msg *msg) {
    if (!msg)
        return CP_EINVAL;
    if (handler < 0 || handler >= ctx->nhandlers)
        return CP_ERANGE;
    msg->handler = (uint32_t)handler;
    msg->kind = CP_KIND_BCAST;
    msg->root = (uint32_t)ctx->my_pe;
    /* The root's own delivery goes through the scheduler like everyone
     * else's, so the handler never runs inside the caller. */
    return cpM_transmit(ctx, ctx->my_pe, msg);
}
