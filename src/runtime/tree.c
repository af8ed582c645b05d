/*
 * Spanning trees and broadcast. The tree rooted at `root` is the k-ary heap
 * over PE ranks relative to the root, r = (pe - root) mod n: the children of
 * r are r*k+1 .. r*k+k, its parent (r-1)/k. Every PE computes it alone, so a
 * broadcast or reduction needs no set-up messages, and any PE can be a root.
 */
#include "internal.h"

#include <string.h>

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

/* ---- multicast over a list of PEs -------------------------------------------- */
/* The list follows the payload at a 4-byte boundary: msg->seq is the
 * payload's size, msg->root the number of PEs. The tree is the k-ary heap
 * over positions in the list, rooted at position 0. */
static size_t mcast_off(uint64_t size) { return (size_t)((size + 3) & ~(uint64_t)3); }

void cpT_forward_mcast(cp_ctx *ctx, cp_msg *msg) {
    int n = (int)msg->root;
    const int32_t *pes = (const int32_t *)((char *)cp_msg_data(msg) + mcast_off(msg->seq));
    int lo = 0, hi = n - 1, me = -1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (pes[mid] == ctx->my_pe) {
            me = mid;
            break;
        }
        if (pes[mid] < ctx->my_pe)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    if (me < 0)
        cp_abort(ctx, "a multicast reached PE %d, which is not in its list", ctx->my_pe);
    for (int i = 1; i <= CP_TREE_BFACTOR; i++) {
        long child = (long)me * CP_TREE_BFACTOR + i;
        if (child >= n)
            break;
        cp_msg *c = cpM_copy(ctx, msg);
        if (!c)
            cp_abort(ctx, "out of memory forwarding a multicast of %llu bytes",
                     (unsigned long long)msg->size);
        if (cpM_transmit(ctx, pes[child], c))
            cp_abort(ctx, "cannot forward a multicast to PE %d", pes[child]);
    }
    msg->size = msg->seq;
}

int cp_mcast(cp_ctx *ctx, int handler, cp_msg *msg, const int *pes, int npes) {
    if (!msg || !pes || npes <= 0)
        return CP_EINVAL;
    if (handler < 0 || handler >= ctx->nhandlers)
        return CP_ERANGE;
    for (int i = 0; i < npes; i++) {
        if (pes[i] < 0 || pes[i] >= ctx->npes)
            return CP_ERANGE;
        if (i && pes[i] <= pes[i - 1])
            return CP_EINVAL;
    }
    size_t off = mcast_off(msg->size), need = off + (size_t)npes * sizeof(int32_t);
    cp_msg *m = cp_msg_alloc(ctx, need);
    if (!m)
        return CP_ENOMEM;
    memcpy(m, msg, sizeof *msg + msg->size);
    int32_t *list = (int32_t *)((char *)cp_msg_data(m) + off);
    for (int i = 0; i < npes; i++)
        list[i] = pes[i];
    m->seq = msg->size;
    m->size = need;
    m->root = (uint32_t)npes;
    m->handler = (uint32_t)handler;
    m->kind = CP_KIND_MCAST;
    int rc = cpM_transmit(ctx, pes[0], m);
    if (rc) {
        cp_msg_free(ctx, m);
        return rc;
    }
    cp_msg_free(ctx, msg);
    return 0;
}
