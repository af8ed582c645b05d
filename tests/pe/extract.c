/*
 * extract: cp_local_extract takes out of a PE's own queue the messages a
 * predicate picks, in order, and leaves the others in order. Each PE sends
 * itself N numbered messages; the handler of message 0 takes the multiples
 * of 3 out (as a chare leaving the PE takes the calls queued for it); the
 * scheduler then dispatches the others in order and stops short of none
 * (the ring shrank under it). Then quiescence must still be seen: a taken
 * message counts as processed.
 */
#include "pe_test.h"

enum { N = 300 };

typedef struct state state;
struct state {
    int h_num, h_done, ndone;
    long next;          /* the next number dispatched */
    long taken_next;    /* the next number taken out */
    long dispatched, taken;
};

static int is_mult3(const cp_msg *m, void *arg) {
    state *s = arg;
    if ((int)m->handler != s->h_num)
        return 0;
    int64_t v;
    memcpy(&v, cp_msg_data((cp_msg *)m), sizeof v);
    return v % 3 == 0;
}

static void take(cp_ctx *ctx, cp_msg *m, void *arg) {
    state *s = arg;
    int64_t v;
    memcpy(&v, cp_msg_data(m), sizeof v);
    cp_msg_free(ctx, m);
    PT_CHECK(ctx, v == s->taken_next, "took message %lld, expected %ld", (long long)v,
             s->taken_next);
    s->taken_next += 3;
    s->taken++;
}

static void on_num(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int64_t v;
    memcpy(&v, cp_msg_data(m), sizeof v);
    cp_msg_free(ctx, m);
    PT_CHECK(ctx, v == s->next, "dispatched message %lld, expected %ld (lost or reordered)",
             (long long)v, s->next);
    s->dispatched++;
    if (v == 0) {
        s->taken_next = 3;
        int n = cp_local_extract(ctx, is_mult3, take, s);
        PT_CHECK(ctx, n == (N - 1) / 3, "cp_local_extract took %d, expected %d", n, (N - 1) / 3);
    }
    s->next = v + 1;
    while (s->next % 3 == 0 && s->next > 0)
        s->next++;
}

static void on_done(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    if (++s->ndone == cp_num_pes(ctx)) {
        printf("OK extract P=%d\n", cp_num_pes(ctx));
        fflush(stdout);
        cp_exit(ctx, 0);
    }
}

/* Quiescence: seen only because the taken messages counted as processed. */
static void on_quiet(cp_ctx *ctx, void *arg) {
    state *s = arg;
    long want_taken = (N - 1) / 3;
    PT_CHECK(ctx, s->taken == want_taken && s->dispatched == N - want_taken,
             "at quiescence: %ld taken, %ld dispatched (expected %ld and %ld)", s->taken,
             s->dispatched, want_taken, N - want_taken);
    pt_send(ctx, 0, s->h_done, pt_alloc(ctx, 1));
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("extract", &argc, &argv);
    static state s;
    s.h_num = pt_handler(ctx, on_num, &s);
    s.h_done = pt_handler(ctx, on_done, &s);
    cp_barrier(ctx);
    for (int64_t i = 0; i < N; i++) {
        cp_msg *m = pt_alloc(ctx, sizeof i);
        memcpy(cp_msg_data(m), &i, sizeof i);
        pt_send(ctx, cp_my_pe(ctx), s.h_num, m);
    }
    PT_CHECK(ctx, cp_qd_start(ctx, on_quiet, &s) == 0, "cp_qd_start");
    return pt_run_and_finalize(ctx, "extract");
}
