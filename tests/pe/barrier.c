/*
 * barrier: no PE may leave cp_barrier before the last one has entered it.
 * PE 0 broadcasts a common start instant (CLOCK_MONOTONIC is one clock for
 * every process on the host); in round r each PE enters the barrier at a
 * staggered instant, a different PE last each round, and checks on leaving
 * that the latest entry instant has passed. Then a burst of back-to-back
 * barriers, where a generation mix-up would deadlock or let a PE through.
 */
#include <time.h>

#include "pe_test.h"

enum { ROUNDS = 4, BURST = 300 };
#define STAGGER 0.015
#define ROUND_GAP 0.25

typedef struct state {
    int me, npes;
    int h_start, h_done;
    int done_from;
} state;

static void sleep_until(double t) {
    double now;
    while ((now = cp_wall_time()) < t) {
        double d = t - now;
        struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static void on_start(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    double t0;
    PT_CHECK(ctx, m->size == sizeof t0, "start message of %llu bytes",
             (unsigned long long)m->size);
    memcpy(&t0, cp_msg_data(m), sizeof t0);
    cp_msg_free(ctx, m);
    for (int r = 0; r < ROUNDS; r++) {
        double base = t0 + r * ROUND_GAP;
        sleep_until(base + ((s->me + r) % s->npes) * STAGGER);
        int rc = cp_barrier(ctx);
        double now = cp_wall_time();
        PT_CHECK(ctx, rc == 0, "cp_barrier: %s", cp_strerror(rc));
        double last_in = base + (s->npes - 1) * STAGGER;
        PT_CHECK(ctx, now >= last_in,
                 "round %d: PE %d left the barrier %.4fs before the last PE "
                 "entered it", r, s->me, last_in - now);
    }
    for (int i = 0; i < BURST; i++) {
        int rc = cp_barrier(ctx);
        PT_CHECK(ctx, rc == 0, "burst barrier %d: %s", i, cp_strerror(rc));
    }
    pt_send(ctx, 0, s->h_done, pt_alloc(ctx, 0));
}

static void on_done(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    if (++s->done_from == s->npes) {
        printf("OK barrier P=%d\n", s->npes);
        fflush(stdout);
        cp_exit(ctx, 0);
    }
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("barrier", &argc, &argv);
    state s = {0};
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    s.h_start = pt_handler(ctx, on_start, &s);
    s.h_done = pt_handler(ctx, on_done, &s);
    /* Everyone registered before any message flows. */
    int rc = cp_barrier(ctx);
    PT_CHECK(ctx, rc == 0, "first cp_barrier: %s", cp_strerror(rc));
    if (s.me == 0) {
        cp_msg *m = pt_alloc(ctx, sizeof(double));
        double t0 = cp_wall_time() + 0.1;
        memcpy(cp_msg_data(m), &t0, sizeof t0);
        pt_bcast(ctx, s.h_start, m);
    }
    return pt_run_and_finalize(ctx, "barrier");
}
