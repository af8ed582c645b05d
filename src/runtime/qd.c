/*
 * Quiescence detection: no message in flight or being processed anywhere,
 * and no timer pending.
 *
 * Every PE counts the messages it creates (hands to the transport or to its
 * own queue, timers set, messages a layer above keeps aside: cp_qd_create)
 * and the ones it processes (dispatches, timers fired, kept messages given
 * back: cp_qd_process). Both counters only grow. PE 0 runs waves down the
 * spanning tree rooted at it: each PE answers its parent once its children
 * did, with the sums of its subtree's counters read at that moment. The job
 * is quiescent when a wave finds created == processed and the wave before
 * found the same two sums: since no counter ever decreases, equal sums mean
 * that no PE created or processed anything between its two answers, and
 * the counts were balanced then, so no message was in flight.
 *
 * The waves' own messages (kind CP_KIND_QD) are not counted. A wave starts
 * only while some PE waits for quiescence; after an unbalanced wave the
 * next one waits a little longer each time (from 50 us up to 5 ms), after a
 * balanced one it starts at once, to confirm.
 *
 * Exclusive requests (cp_qd_start_exclusive) are answered alone: the
 * others wait for the next quiescence, and each exclusive answer counts as
 * a message created on PE 0 and processed once its callback ran, so that
 * the next quiescence cannot be found before the callback (and what it
 * starts) is done.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { QD_REQUEST, QD_PROBE, QD_REPLY, QD_DONE };

#define QD_DELAY_MIN 50e-6
#define QD_DELAY_MAX 5e-3

typedef struct qd_msg {
    uint32_t type;
    uint32_t wave;
    uint64_t created, processed;
    uint64_t id; /* QD_REQUEST / QD_DONE: the request on its PE */
} qd_msg;

static void send_qd(cp_ctx *ctx, int pe, uint32_t type, uint32_t wave, uint64_t c, uint64_t p,
                    uint64_t id) {
    cp_msg *m = cp_msg_alloc(ctx, sizeof(qd_msg));
    if (!m)
        cp_abort(ctx, "out of memory in quiescence detection");
    qd_msg q = {type, wave, c, p, id};
    memcpy(cp_msg_data(m), &q, sizeof q);
    m->kind = CP_KIND_QD;
    m->handler = 0;
    if (cpM_transmit(ctx, pe, m))
        cp_abort(ctx, "cannot send a quiescence detection message to PE %d", pe);
}

void cp_qd_create(cp_ctx *ctx, uint64_t n) { ctx->qd.created += n; }
void cp_qd_process(cp_ctx *ctx, uint64_t n) { ctx->qd.processed += n; }

static int qd_start(cp_ctx *ctx, cp_qd_fn fn, void *arg, int exclusive) {
    if (!fn)
        return CP_EINVAL;
    cp_qd *q = &ctx->qd;
    if (cp_grow((void **)&q->reqs, &q->capreqs, q->nreqs + 1, sizeof *q->reqs))
        return CP_ENOMEM;
    uint64_t id = ++q->last_id;
    q->reqs[q->nreqs++] = (cp_qdreq){id, fn, arg};
    /* The request's wave field says whether it is exclusive. */
    send_qd(ctx, 0, QD_REQUEST, (uint32_t)exclusive, 0, 0, id);
    return 0;
}

int cp_qd_start(cp_ctx *ctx, cp_qd_fn fn, void *arg) { return qd_start(ctx, fn, arg, 0); }

int cp_qd_start_exclusive(cp_ctx *ctx, cp_qd_fn fn, void *arg) {
    return qd_start(ctx, fn, arg, 1);
}

/* PE 0: a request to answer once the job is quiescent. */
static void on_request(cp_ctx *ctx, int pe, uint64_t id, int exclusive) {
    cp_qd *q = &ctx->qd;
    if (cp_grow((void **)&q->waiting, &q->capwaiting, q->nwaiting + 1, sizeof *q->waiting))
        cp_abort(ctx, "out of memory in quiescence detection");
    q->waiting[q->nwaiting++] = (cp_qdwait){pe, exclusive, id};
    if (!q->wave_running && q->next_wave < 0) {
        q->delay = QD_DELAY_MIN;
        q->next_wave = cp_wall_time();
    }
}

/* This PE's part of the wave is complete: answer the parent, or at the root
 * judge the wave. */
static void wave_part_done(cp_ctx *ctx) {
    cp_qd *q = &ctx->qd;
    uint64_t c = q->sum_created + q->created, p = q->sum_processed + q->processed;
    q->in_wave = 0;
    if (ctx->my_pe != 0) {
        send_qd(ctx, cpT_parent(ctx->my_pe, 0, ctx->npes), QD_REPLY, q->wave, c, p, 0);
        return;
    }
    q->wave_running = 0;
    int quiet = c == p && q->have_last && q->last_created == c && q->last_processed == p;
    q->have_last = 1;
    q->last_created = c;
    q->last_processed = p;
    if (quiet) {
        /* The exclusive requests alone when there are some (in the order
         * made); the others wait for the next quiescence. */
        int excl = 0, kept = 0;
        for (int i = 0; i < q->nwaiting; i++)
            excl |= q->waiting[i].exclusive;
        for (int i = 0; i < q->nwaiting; i++) {
            if (excl && !q->waiting[i].exclusive) {
                q->waiting[kept++] = q->waiting[i];
            } else {
                /* An exclusive answer counts as a message until its callback
                 * ran: the next quiescence comes after it. */
                if (excl)
                    q->created++;
                send_qd(ctx, q->waiting[i].pe, QD_DONE, (uint32_t)excl, 0, 0,
                        q->waiting[i].id);
            }
        }
        q->nwaiting = kept;
        q->have_last = 0;
        q->delay = QD_DELAY_MIN;
        q->next_wave = kept ? cp_wall_time() + q->delay : -1;
        return;
    }
    if (q->nwaiting == 0) {
        q->next_wave = -1;
        return;
    }
    if (c == p) {
        q->next_wave = cp_wall_time(); /* balanced once: confirm at once */
    } else {
        q->next_wave = cp_wall_time() + q->delay;
        q->delay = q->delay * 2 > QD_DELAY_MAX ? QD_DELAY_MAX : q->delay * 2;
    }
}

/* A probe of wave w reached this PE (or the root starts it): pass it on to
 * the children and wait for their answers. */
static void on_probe(cp_ctx *ctx, uint32_t w) {
    cp_qd *q = &ctx->qd;
    int kids[CP_TREE_BFACTOR];
    int nk = cpT_children(ctx->my_pe, 0, ctx->npes, kids);
    q->wave = w;
    q->in_wave = 1;
    q->replies_wanted = nk;
    q->sum_created = q->sum_processed = 0;
    for (int i = 0; i < nk; i++)
        send_qd(ctx, kids[i], QD_PROBE, w, 0, 0, 0);
    if (nk == 0)
        wave_part_done(ctx);
}

static void on_reply(cp_ctx *ctx, uint32_t w, uint64_t c, uint64_t p) {
    cp_qd *q = &ctx->qd;
    if (!q->in_wave || w != q->wave)
        cp_abort(ctx, "quiescence detection: an answer to wave %u arrived during wave %u", w,
                 q->wave);
    q->sum_created += c;
    q->sum_processed += p;
    if (--q->replies_wanted == 0)
        wave_part_done(ctx);
}

static void on_done(cp_ctx *ctx, uint64_t id, int exclusive) {
    cp_qd *q = &ctx->qd;
    for (int i = 0; i < q->nreqs; i++) {
        if (q->reqs[i].id != id)
            continue;
        cp_qdreq r = q->reqs[i];
        q->reqs[i] = q->reqs[--q->nreqs];
        r.fn(ctx, r.arg);
        if (exclusive)
            q->processed++; /* PE 0 counted the answer as created */
        return;
    }
    cp_abort(ctx, "quiescence detection: PE 0 answered a request (%llu) this PE did not make",
             (unsigned long long)id);
}

void cpQ_receive(cp_ctx *ctx, cp_msg *msg) {
    qd_msg m;
    memcpy(&m, cp_msg_data(msg), sizeof m);
    int src = (int)msg->src_pe;
    cp_msg_free(ctx, msg);
    switch (m.type) {
    case QD_REQUEST:
        on_request(ctx, src, m.id, m.wave != 0);
        break;
    case QD_PROBE:
        on_probe(ctx, m.wave);
        break;
    case QD_REPLY:
        on_reply(ctx, m.wave, m.created, m.processed);
        break;
    case QD_DONE:
        on_done(ctx, m.id, m.wave != 0);
        break;
    default:
        cp_abort(ctx, "quiescence detection: message of unknown type %u from PE %d", m.type,
                 src);
    }
}

double cpQ_next_wave(const cp_ctx *ctx) {
    return ctx->my_pe == 0 && !ctx->qd.wave_running ? ctx->qd.next_wave : -1.0;
}

int cpQ_run_due(cp_ctx *ctx) {
    cp_qd *q = &ctx->qd;
    if (ctx->my_pe != 0 || q->wave_running || q->next_wave < 0 ||
        cp_wall_time() < q->next_wave)
        return 0;
    q->wave_running = 1;
    q->next_wave = -1;
    on_probe(ctx, q->wave + 1);
    return 1;
}

void cpQ_free_all(cp_ctx *ctx) {
    free(ctx->qd.reqs);
    free(ctx->qd.waiting);
    memset(&ctx->qd, 0, sizeof ctx->qd);
}
