/*
 * qd: quiescence detection. Every PE starts CHAINS chains of messages that
 * hop to pseudo-random PEs HOPS times; some hops are delayed by a timer
 * (cp_send_after) or go through a timer callback (cp_call_after), and some
 * are kept aside by a PE for a while, as a layer above would keep a message
 * for an object that does not exist yet (cp_qd_create / cp_qd_process). PE 0
 * and the last PE ask for quiescence at once. When PE 0 is told, every hop
 * must have happened: a sum reduction of the hops each PE saw must give the
 * total. Then round 2: PE 0 starts chains with long timers only, asks again,
 * and checks again; the last PE asks twice in round 2, and each request must
 * be answered exactly once.
 */
#include "pe_test.h"

enum { CHAINS = 40, HOPS = 25 };

typedef struct hop {
    uint64_t seed;
    int32_t left;
    int32_t round;
} hop;

typedef struct state {
    cp_ctx *ctx;
    int me, npes;
    int h_hop, h_report, h_result, red_sum;
    int64_t hops[3];       /* hops seen here, by round */
    int quiet[3];          /* quiescence callbacks here, by round */
    int round;             /* on PE 0: the round being checked */
    cp_msg *kept;          /* a message kept aside, with its delivery timer */
} state;

static void send_hop(state *s, hop h);

static int target(state *s, uint64_t seed) { return (int)(pt_mix(seed) % (uint64_t)s->npes); }

static void on_hop(cp_ctx *ctx, cp_msg *msg, void *user) {
    state *s = user;
    hop h;
    memcpy(&h, cp_msg_data(msg), sizeof h);
    cp_msg_free(ctx, msg);
    s->hops[h.round]++;
    if (h.left > 0) {
        h.left--;
        h.seed = pt_mix(h.seed);
        send_hop(s, h);
    }
}

typedef struct delayed {
    state *s;
    hop h;
} delayed;

static void call_hop(cp_ctx *ctx, void *arg) {
    (void)ctx;
    delayed *d = arg;
    hop h = d->h;
    state *s = d->s;
    free(d);
    send_hop(s, h);
}

/* Give back the message kept aside: deliver it now. */
static void release_kept(cp_ctx *ctx, void *arg) {
    state *s = arg;
    cp_msg *m = s->kept;
    s->kept = NULL;
    cp_qd_process(ctx, 1);
    on_hop(ctx, m, s);
}

static void send_hop(state *s, hop h) {
    cp_ctx *ctx = s->ctx;
    int to = target(s, h.seed);
    uint64_t how = (h.seed >> 40) % 16;
    if (how == 0 && h.round != 2) {
        /* through a timer callback, then sent */
        delayed *d = malloc(sizeof *d);
        PT_CHECK(ctx, d != NULL, "malloc");
        d->s = s;
        d->h = h;
        d->h.seed = pt_mix(h.seed); /* not the same branch again */
        PT_CHECK(ctx, cp_call_after(ctx, 0.001 * (double)(h.seed % 5), call_hop, d) == 0,
                 "cp_call_after");
        return;
    }
    cp_msg *m = pt_alloc(ctx, sizeof h);
    memcpy(cp_msg_data(m), &h, sizeof h);
    if (how == 1 && to == s->me && !s->kept && h.round != 2) {
        /* kept aside for 20 ms, as for an object not built yet */
        s->kept = m;
        cp_qd_create(ctx, 1);
        PT_CHECK(ctx, cp_call_after(ctx, 0.02, release_kept, s) == 0, "cp_call_after");
        return;
    }
    if (h.round == 2 || how == 2) {
        double secs = h.round == 2 ? 0.05 : 0.002;
        PT_CHECK(ctx, cp_send_after(ctx, secs, s->h_hop, m) == 0, "cp_send_after");
        return;
    }
    pt_send(ctx, to, s->h_hop, m);
}

static void start_chains(state *s, int round, int n) {
    for (int i = 0; i < n; i++) {
        hop h = {pt_mix((uint64_t)(s->me * 1000 + i + round * 77)), HOPS, round};
        send_hop(s, h);
    }
}

static void quiet(cp_ctx *ctx, void *arg) {
    state *s = arg;
    int r = s->round;
    s->quiet[r]++;
    PT_CHECK(ctx, s->quiet[r] <= (r == 2 && s->me != 0 ? 2 : 1),
             "round %d: PE %d told of quiescence %d times", r, s->me, s->quiet[r]);
    if (s->me != 0)
        return;
    /* Every hop of round r has happened: count them. */
    cp_msg *m = pt_alloc(ctx, sizeof(int32_t));
    int32_t rr = r;
    memcpy(cp_msg_data(m), &rr, sizeof rr);
    pt_bcast(ctx, s->h_report, m);
}

static void on_report(cp_ctx *ctx, cp_msg *msg, void *user) {
    state *s = user;
    int32_t r;
    memcpy(&r, cp_msg_data(msg), sizeof r);
    cp_msg_free(ctx, msg);
    s->round = r;
    cp_msg *c = pt_alloc(ctx, sizeof(int64_t));
    memcpy(cp_msg_data(c), &s->hops[r], sizeof(int64_t));
    int rc = cp_reduce(ctx, c, s->red_sum, 0, s->h_result);
    PT_CHECK(ctx, rc == 0, "cp_reduce: %s", cp_strerror(rc));
}

static void on_result(cp_ctx *ctx, cp_msg *msg, void *user) {
    state *s = user;
    int64_t total;
    memcpy(&total, cp_msg_data(msg), sizeof total);
    cp_msg_free(ctx, msg);
    int r = s->round;
    int chains = r == 1 ? CHAINS * s->npes : CHAINS;
    int64_t want = (int64_t)chains * (HOPS + 1);
    PT_CHECK(ctx, total == want, "round %d: quiescence declared after %lld of %lld hops", r,
             (long long)total, (long long)want);
    if (r == 1) {
        s->round = 2;
        start_chains(s, 2, CHAINS);
        PT_CHECK(ctx, cp_qd_start(ctx, quiet, s) == 0, "cp_qd_start");
        /* The last PE asks twice in round 2 (a broadcast tells it). */
        cp_msg *m = pt_alloc(ctx, 1);
        pt_send(ctx, s->npes - 1, s->h_report + 2, m);
        return;
    }
    printf("OK qd P=%d\n", s->npes);
    cp_exit(ctx, 0);
}

static void on_round2(cp_ctx *ctx, cp_msg *msg, void *user) {
    state *s = user;
    cp_msg_free(ctx, msg);
    s->round = 2;
    if (s->me != 0) {
        PT_CHECK(ctx, cp_qd_start(ctx, quiet, s) == 0, "cp_qd_start");
        PT_CHECK(ctx, cp_qd_start(ctx, quiet, s) == 0, "cp_qd_start");
    }
}

int main(int argc, char **argv) {
    static state s;
    s.ctx = pt_init("qd", &argc, &argv);
    cp_ctx *ctx = s.ctx;
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    s.h_hop = pt_handler(ctx, on_hop, &s);
    s.h_report = pt_handler(ctx, on_report, &s);
    s.h_result = pt_handler(ctx, on_result, &s);
    PT_CHECK(ctx, pt_handler(ctx, on_round2, &s) == s.h_report + 2, "handler numbering");
    s.red_sum = cp_reducer_builtin(CP_OP_SUM, CP_T_INT64);
    s.round = 1;
    cp_barrier(ctx);
    start_chains(&s, 1, CHAINS);
    if (s.me == 0 || s.me == s.npes - 1)
        PT_CHECK(ctx, cp_qd_start(ctx, quiet, &s) == 0, "cp_qd_start");
    return pt_run_and_finalize(ctx, "qd");
}
