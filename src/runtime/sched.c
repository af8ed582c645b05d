/*
 * The scheduler. One pass has three phases, each bounded so that none
 * starves the others: timers that are due (and a quiescence detection wave,
 * on PE 0, when one is due), then up to CP_POLL_BATCH messages
 * from the machine layer, then the messages this PE sent itself that were
 * queued when the phase began (so a handler that keeps sending to its own PE
 * cannot hold the pass forever). When a pass finds nothing, the PE waits in
 * the machine layer until a message may have arrived or the next timer is
 * due.
 */
#include "internal.h"

void cpS_dispatch(cp_ctx *ctx, cp_msg *msg) {
    if (msg->kind == CP_KIND_QD) {
        cpQ_receive(ctx, msg);
        return;
    }
    ctx->qd.processed++;
    if (msg->kind == CP_KIND_REDN) {
        cpR_receive(ctx, msg);
        return;
    }
    if (msg->kind == CP_KIND_TRACE) {
        cpT_sync_receive(ctx, msg);
        return;
    }
    if (msg->handler >= (uint32_t)ctx->nhandlers)
        cp_abort(ctx, "message from PE %u names handler %u, but this PE has %d "
                 "handlers; every PE must register the same handlers in the "
                 "same order", msg->src_pe, msg->handler, ctx->nhandlers);
    if (msg->kind == CP_KIND_BCAST)
        cpT_forward_bcast(ctx, msg);
    else if (msg->kind == CP_KIND_MCAST)
        cpT_forward_mcast(ctx, msg);
    ctx->counters.msgs_processed++;
    ctx->counters.bytes_processed += msg->size;
    cp_handler_ent *h = &ctx->handlers[msg->handler];
    if (__builtin_expect(ctx->trace != NULL, 0))
        cpT_dispatch(ctx, msg, h);
    else
        h->fn(ctx, msg, h->user);
}

/* A poll, profiled (its time) or traced (the queue's length). */
static __attribute__((noinline)) int poll_observed(cp_ctx *ctx, cp_msg **batch) {
    double t0 = ctx->profiling ? cp_wall_time() : 0;
    int n = ctx->ops->poll(ctx->m, batch, CP_POLL_BATCH);
    if (ctx->profiling)
        ctx->counters.recv_secs += cp_wall_time() - t0;
    if (ctx->trace)
        cpT_queue(ctx, (uint32_t)n);
    return n;
}

/* One pass; stops early when cond holds. Returns the number of messages and
 * timers handled. */
static int pass(cp_ctx *ctx, int (*cond)(void *), void *arg) {
    int done = cpTm_run_due(ctx) + cpQ_run_due(ctx);
    if (cond && done && cond(arg))
        return done;
    cp_msg *batch[CP_POLL_BATCH];
    int n = 0;
    while (n < CP_POLL_BATCH && ctx->held.count)
        batch[n++] = cpM_ring_pop(&ctx->held);
    if (n == 0) {
        if (__builtin_expect(ctx->observe, 0))
            n = poll_observed(ctx, batch);
        else
            n = ctx->ops->poll(ctx->m, batch, CP_POLL_BATCH);
    } else if (ctx->trace) {
        cpT_queue(ctx, (uint32_t)n);
    }
    int outer = ctx->pass_left; /* a pass run from a handler's */
    for (int i = 0; i < n; i++) {
        ctx->pass_left = outer + n - i - 1;
        cpS_dispatch(ctx, batch[i]);
        ctx->pass_left = outer;
        if (ctx->exiting || (cond && cond(arg))) {
            /* Keep the rest, in order, ahead of anything polled later. */
            for (int j = n - 1; j > i; j--)
                if (cpM_ring_unshift(&ctx->held, batch[j]))
                    cp_abort(ctx, "out of memory holding received messages");
            return done + i + 1;
        }
    }
    done += n;
    uint32_t local = ctx->local.count;
    for (uint32_t i = 0; i < local; i++) {
        cp_msg *m = cpM_ring_pop(&ctx->local);
        if (!m)
            break; /* a handler took queued messages out (cp_local_extract) */
        cpS_dispatch(ctx, m);
        done++;
        if (ctx->exiting || (cond && cond(arg)))
            break;
    }
    return done;
}

int cp_poll_for(cp_ctx *ctx, double secs, int (*want)(const cp_msg *, void *), void *arg) {
    if (ctx->info.oversubscribed || ctx->pass_left || ctx->held.count || ctx->local.count ||
        cp_exiting(ctx))
        return 0;
    double t0 = cp_wall_time(), end = t0 + secs;
    double next = cpTm_next_deadline(ctx), wave = cpQ_next_wave(ctx);
    if (wave >= 0 && (next < 0 || wave < next))
        next = wave;
    if (next >= 0 && next < end)
        end = next; /* the scheduler runs it on time */
    for (;;) {
        cp_msg *m;
        if (ctx->ops->poll(ctx->m, &m, 1) == 1) {
            ctx->counters.idle_secs += cp_wall_time() - t0; /* waited, as in cp_run_until */
            if (m->kind == CP_KIND_PLAIN && m->handler < (uint32_t)ctx->nhandlers &&
                want(m, arg)) {
                cpS_dispatch(ctx, m);
                return 1;
            }
            /* held was empty: the scheduler's next message, in order */
            if (cpM_ring_unshift(&ctx->held, m))
                cp_abort(ctx, "out of memory holding a received message");
            return 0;
        }
        double now = cp_wall_time();
        if (ctx->local.count || cp_exiting(ctx) || now >= end) {
            ctx->counters.idle_secs += now - t0;
            return 0;
        }
    }
}

int cp_run_once(cp_ctx *ctx) {
    if (cp_exiting(ctx))
        return 0;
    return pass(ctx, NULL, NULL);
}

int cp_run_until(cp_ctx *ctx, int (*cond)(void *), void *arg) {
    for (;;) {
        if (cond && cond(arg))
            return 0;
        if (cp_exiting(ctx))
            return 1;
        if (pass(ctx, cond, arg) > 0 || ctx->local.count || ctx->held.count)
            continue;
        if (cp_exiting(ctx))
            return 1;
        double next = cpTm_next_deadline(ctx), wave = cpQ_next_wave(ctx);
        if (wave >= 0 && (next < 0 || wave < next))
            next = wave;
        double timeout = -1;
        if (next >= 0) {
            timeout = next - cp_wall_time();
            if (timeout <= 0)
                continue;
        }
        double t0 = cp_wall_time();
        ctx->ops->wait(ctx->m, timeout);
        ctx->counters.idle_secs += cp_wall_time() - t0;
    }
}

int cp_run(cp_ctx *ctx) {
    int rc = cp_run_until(ctx, NULL, NULL);
    return rc < 0 ? rc : 0;
}
