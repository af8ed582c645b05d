/*
 * qdx: exclusive quiescence requests (cp_qd_start_exclusive). Every PE asks
 * for quiescence (plain) at once; the last PE also asks exclusively. At the
 * first quiescence only the exclusive request is answered; its callback
 * starts work: a message to every PE that each PE passes on HOPS times, a
 * timer on every hop. The plain requests are answered at the next
 * quiescence, after all of it: each plain callback finds its PE saw every
 * hop meant for it, and the exclusive callback ran exactly once, before
 * any plain one (PE 0 counts the plain answers, then ends the job).
 */
#include "pe_test.h"

enum { HOPS = 6 };

typedef struct state {
    cp_ctx *ctx;
    int me, npes;
    int h_hop, h_told, h_quiet;
    int hops;          /* hops received here */
    int excl_runs;     /* on the last PE: exclusive callbacks run */
    int plain;         /* plain callbacks run here */
    int told;          /* on PE 0: PEs whose plain callback ran */
} state;

static void on_hop(cp_ctx *ctx, cp_msg *msg, void *user) {
    state *s = user;
    int32_t left;
    memcpy(&left, cp_msg_data(msg), sizeof left);
    s->hops++;
    if (left > 0) {
        left--;
        memcpy(cp_msg_data(msg), &left, sizeof left);
        PT_CHECK(ctx, cp_send_after(ctx, 0.002, s->h_hop, msg) == 0, "cp_send_after");
        return;
    }
    cp_msg_free(ctx, msg);
}

static void exclusive(cp_ctx *ctx, void *arg) {
    state *s = arg;
    s->excl_runs++;
    PT_CHECK(ctx, s->excl_runs == 1, "exclusive request answered %d times", s->excl_runs);
    for (int pe = 0; pe < s->npes; pe++) {
        cp_msg *m = pt_alloc(ctx, sizeof(int32_t));
        int32_t left = HOPS - 1;
        memcpy(cp_msg_data(m), &left, sizeof left);
        pt_send(ctx, pe, s->h_hop, m);
    }
}

static void plain(cp_ctx *ctx, void *arg) {
    state *s = arg;
    s->plain++;
    PT_CHECK(ctx, s->plain == 1, "PE %d: plain request answered %d times", s->me, s->plain);
    PT_CHECK(ctx, s->hops == HOPS,
             "PE %d: plain quiescence answered after %d of the %d hops the exclusive "
             "callback started (it must wait for them)",
             s->me, s->hops, HOPS);
    cp_msg *m = pt_alloc(ctx, 1);
    pt_send(ctx, 0, s->h_told, m);
}

static void on_told(cp_ctx *ctx, cp_msg *msg, void *user) {
    state *s = user;
    cp_msg_free(ctx, msg);
    if (++s->told == s->npes) {
        printf("OK qdx P=%d\n", s->npes);
        cp_exit(ctx, 0);
    }
}

int main(int argc, char **argv) {
    static state s;
    s.ctx = pt_init("qdx", &argc, &argv);
    cp_ctx *ctx = s.ctx;
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    s.h_hop = pt_handler(ctx, on_hop, &s);
    s.h_told = pt_handler(ctx, on_told, &s);
    cp_barrier(ctx);
    PT_CHECK(ctx, cp_qd_start(ctx, plain, &s) == 0, "cp_qd_start");
    if (s.me == s.npes - 1)
        PT_CHECK(ctx, cp_qd_start_exclusive(ctx, exclusive, &s) == 0, "cp_qd_start_exclusive");
    return pt_run_and_finalize(ctx, "qdx");
}
