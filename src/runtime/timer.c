/* Timers: a binary min-heap ordered by deadline, then by creation order. */
#include <stdlib.h>

#include "internal.h"

static int before(const cp_timer *a, const cp_timer *b) {
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void swap(cp_timer *a, cp_timer *b) {
    cp_timer t = *a;
    *a = *b;
    *b = t;
}

static int add(cp_ctx *ctx, double secs, cp_timer_fn fn, void *arg, cp_msg *msg, int bg) {
    if (!(secs >= 0))
        return CP_EINVAL;
    if (cp_grow((void **)&ctx->timers, &ctx->captimers, ctx->ntimers + 1,
                sizeof *ctx->timers))
        return CP_ENOMEM;
    int i = ctx->ntimers++;
    ctx->timers[i] = (cp_timer){cp_wall_time() + secs, ctx->timer_seq++, fn, arg, msg, bg};
    if (!bg)
        ctx->qd.created++; /* a pending timer keeps the job from being quiescent */
    while (i > 0 && before(&ctx->timers[i], &ctx->timers[(i - 1) / 2])) {
        swap(&ctx->timers[i], &ctx->timers[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    return 0;
}

static cp_timer pop(cp_ctx *ctx) {
    cp_timer *h = ctx->timers;
    cp_timer top = h[0];
    h[0] = h[--ctx->ntimers];
    int i = 0, n = ctx->ntimers;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && before(&h[l], &h[m]))
            m = l;
        if (r < n && before(&h[r], &h[m]))
            m = r;
        if (m == i)
            break;
        swap(&h[i], &h[m]);
        i = m;
    }
    return top;
}

int cp_call_after(cp_ctx *ctx, double secs, cp_timer_fn fn, void *arg) {
    if (!fn)
        return CP_EINVAL;
    return add(ctx, secs, fn, arg, NULL, 0);
}

int cp_call_background(cp_ctx *ctx, double secs, cp_timer_fn fn, void *arg) {
    if (!fn)
        return CP_EINVAL;
    return add(ctx, secs, fn, arg, NULL, 1);
}

int cp_send_after(cp_ctx *ctx, double secs, int handler, cp_msg *msg) {
    if (!msg)
        return CP_EINVAL;
    if (handler < 0 || handler >= ctx->nhandlers)
        return CP_ERANGE;
    msg->handler = (uint32_t)handler;
    msg->kind = CP_KIND_PLAIN;
    msg->src_pe = (uint32_t)ctx->my_pe;
    return add(ctx, secs, NULL, NULL, msg, 0);
}

double cpTm_next_deadline(cp_ctx *ctx) {
    return ctx->ntimers ? ctx->timers[0].when : -1.0;
}

/* Fire the timers due now. A timer set by a callback for "now" waits for
 * the next pass, so a timer that re-arms itself cannot starve messages. */
int cpTm_run_due(cp_ctx *ctx) {
    if (!ctx->ntimers)
        return 0;
    double t = cp_wall_time();
    uint64_t limit = ctx->timer_seq;
    int fired = 0;
    while (ctx->ntimers && ctx->timers[0].when <= t && ctx->timers[0].seq < limit) {
        cp_timer tm = pop(ctx);
        if (!tm.background)
            ctx->qd.processed++;
        if (tm.msg) {
            ctx->qd.created++; /* its delivery counts like any message's */
            cpS_dispatch(ctx, tm.msg);
        } else {
            tm.fn(ctx, tm.arg);
        }
        fired++;
    }
    return fired;
}

void cpTm_free_all(cp_ctx *ctx) {
    for (int i = 0; i < ctx->ntimers; i++)
        cp_msg_free(ctx, ctx->timers[i].msg);
    free(ctx->timers);
    ctx->timers = NULL;
    ctx->ntimers = ctx->captimers = 0;
}
