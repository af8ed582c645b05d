/*
 * bgtimer: a background timer (cp_call_background) fires like any timer
 * but does not hold quiescence back: with one pending for a minute on every
 * PE, quiescence is declared at once; one due in 10 ms has fired 100 ms
 * after quiescence, from the scheduler.
 */
#include "pe_test.h"

typedef struct state {
    int h_done, ndone, fired;
    double t0;
} state;

static void on_short(cp_ctx *ctx, void *arg) {
    (void)ctx;
    ((state *)arg)->fired++;
}

static void on_long(cp_ctx *ctx, void *arg) {
    (void)arg;
    PT_CHECK(ctx, 0, "the one-minute background timer fired");
}

static void on_done(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    if (++s->ndone == cp_num_pes(ctx)) {
        printf("OK bgtimer P=%d\n", cp_num_pes(ctx));
        fflush(stdout);
        cp_exit(ctx, 0);
    }
}

static void after_quiet(cp_ctx *ctx, void *arg) {
    state *s = arg;
    PT_CHECK(ctx, s->fired == 1, "the 10 ms background timer fired %d times", s->fired);
    pt_send(ctx, 0, s->h_done, pt_alloc(ctx, 1));
}

static void on_quiet(cp_ctx *ctx, void *arg) {
    state *s = arg;
    double dt = cp_wall_time() - s->t0;
    PT_CHECK(ctx, dt < 30, "quiescence took %.1f s: the background timer held it back", dt);
    PT_CHECK(ctx, cp_call_after(ctx, 0.1, after_quiet, s) == 0, "cp_call_after");
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("bgtimer", &argc, &argv);
    static state s;
    s.h_done = pt_handler(ctx, on_done, &s);
    cp_barrier(ctx);
    s.t0 = cp_wall_time();
    PT_CHECK(ctx, cp_call_background(ctx, 60, on_long, &s) == 0, "cp_call_background");
    PT_CHECK(ctx, cp_call_background(ctx, 0.01, on_short, &s) == 0, "cp_call_background");
    PT_CHECK(ctx, cp_call_background(ctx, 1, NULL, &s) == CP_EINVAL, "a NULL callback");
    PT_CHECK(ctx, cp_qd_start(ctx, on_quiet, &s) == 0, "cp_qd_start");
    return pt_run_and_finalize(ctx, "bgtimer");
}
