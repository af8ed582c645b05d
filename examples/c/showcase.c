/*
 * The C showcase (`make run`): what the runtime does, on every core of this
 * host, in a few seconds.
 *   1. pi by the midpoint rule over 200 million intervals: PE 0 broadcasts
 *      the problem, each PE integrates its share, a float64 sum reduction
 *      brings the result back;
 *   2. a ping-pong between PE 0 and the last PE: one-way latency;
 *   3. a message storm: every PE sends small messages to every PE; rate.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "charmpy/runtime.h"

#define INTERVALS 200000000LL
#define PINGPONGS 20000
#define STORM_PER_PAIR 20000

typedef struct app {
    int h_pi, h_pi_done, h_ping, h_storm, h_storm_done, h_storm_start;
    int red_sum, red_count;
    double t0;
    int pings;
    long long storm_got;
} app;

static void must(cp_ctx *ctx, int rc, const char *what) {
    if (rc)
        cp_abort(ctx, "%s: %s", what, cp_strerror(rc));
}

static cp_msg *msg_with(cp_ctx *ctx, const void *data, size_t n) {
    cp_msg *m = cp_msg_alloc(ctx, n);
    if (!m)
        cp_abort(ctx, "out of memory");
    memcpy(cp_msg_data(m), data, n);
    return m;
}

static void start_storm(cp_ctx *ctx, app *a);

static void on_pi(cp_ctx *ctx, cp_msg *msg, void *user) {
    app *a = user;
    long long n;
    memcpy(&n, cp_msg_data(msg), sizeof n);
    cp_msg_free(ctx, msg);
    int me = cp_my_pe(ctx), np = cp_num_pes(ctx);
    double h = 1.0 / (double)n, s = 0;
    for (long long i = me; i < n; i += np) {
        double x = h * ((double)i + 0.5);
        s += 4.0 / (1.0 + x * x);
    }
    s *= h;
    must(ctx, cp_reduce(ctx, msg_with(ctx, &s, sizeof s), a->red_sum, 0, a->h_pi_done),
         "reduce");
}

static void on_pi_done(cp_ctx *ctx, cp_msg *msg, void *user) {
    app *a = user;
    double pi;
    memcpy(&pi, cp_msg_data(msg), sizeof pi);
    cp_msg_free(ctx, msg);
    double t = cp_wall_time() - a->t0;
    printf("pi ~= %.12f (error %.1e), %lld intervals on %d PEs in %.3f s "
           "(%.0f M intervals/s)\n", pi, fabs(pi - M_PI), INTERVALS,
           cp_num_pes(ctx), t, (double)INTERVALS / t / 1e6);
    a->t0 = cp_wall_time();
    a->pings = 0;
    must(ctx, cp_send(ctx, cp_num_pes(ctx) - 1, a->h_ping, cp_msg_alloc(ctx, 8)), "send");
}

static void on_ping(cp_ctx *ctx, cp_msg *msg, void *user) {
    app *a = user;
    int last = cp_num_pes(ctx) - 1;
    if (cp_my_pe(ctx) == last && last != 0) {
        must(ctx, cp_send(ctx, 0, a->h_ping, msg), "send");
        return;
    }
    if (++a->pings < PINGPONGS) {
        must(ctx, cp_send(ctx, last, a->h_ping, msg), "send");
        return;
    }
    cp_msg_free(ctx, msg);
    double t = cp_wall_time() - a->t0;
    printf("ping-pong PE 0 <-> PE %d: %.2f us one-way (8-byte messages)\n", last,
           t / PINGPONGS / 2 * 1e6);
    a->t0 = cp_wall_time();
    must(ctx, cp_bcast(ctx, a->h_storm_start, cp_msg_alloc(ctx, 0)), "bcast");
}

static void start_storm(cp_ctx *ctx, app *a) {
    int np = cp_num_pes(ctx), me = cp_my_pe(ctx);
    for (int k = 0; k < STORM_PER_PAIR; k++)
        for (int d = 0; d < np; d++) {
            int to = (me + d) % np;
            cp_msg *m = cp_msg_alloc(ctx, 16);
            if (!m)
                cp_abort(ctx, "out of memory");
            ((long long *)cp_msg_data(m))[0] = k;
            must(ctx, cp_send(ctx, to, a->h_storm, m), "send");
        }
}

static void on_storm_start(cp_ctx *ctx, cp_msg *msg, void *user) {
    cp_msg_free(ctx, msg);
    start_storm(ctx, user);
}

static void on_storm(cp_ctx *ctx, cp_msg *msg, void *user) {
    app *a = user;
    cp_msg_free(ctx, msg);
    if (++a->storm_got == (long long)STORM_PER_PAIR * cp_num_pes(ctx)) {
        long long one = a->storm_got;
        must(ctx, cp_reduce(ctx, msg_with(ctx, &one, sizeof one), a->red_count, 0,
                            a->h_storm_done), "reduce");
    }
}

static void on_storm_done(cp_ctx *ctx, cp_msg *msg, void *user) {
    app *a = user;
    long long total;
    memcpy(&total, cp_msg_data(msg), sizeof total);
    cp_msg_free(ctx, msg);
    double t = cp_wall_time() - a->t0;
    printf("message storm: %lld messages all-to-all in %.3f s (%.2f M messages/s)\n",
           total, t, (double)total / t / 1e6);
    cp_exit(ctx, 0);
}

int main(int argc, char **argv) {
    cp_ctx *ctx;
    int rc = cp_init(&ctx, &argc, &argv);
    if (rc) {
        fprintf(stderr, "showcase: cannot start the runtime: %s\n", cp_strerror(rc));
        return 1;
    }
    app a = {0};
    a.h_pi = cp_handler_register(ctx, on_pi, &a);
    a.h_pi_done = cp_handler_register(ctx, on_pi_done, &a);
    a.h_ping = cp_handler_register(ctx, on_ping, &a);
    a.h_storm = cp_handler_register(ctx, on_storm, &a);
    a.h_storm_done = cp_handler_register(ctx, on_storm_done, &a);
    a.h_storm_start = cp_handler_register(ctx, on_storm_start, &a);
    a.red_sum = cp_reducer_builtin(CP_OP_SUM, CP_T_FLOAT64);
    a.red_count = cp_reducer_builtin(CP_OP_SUM, CP_T_INT64);
    if (cp_my_pe(ctx) == 0) {
        printf("charmpy showcase: %d PEs over %s\n", cp_num_pes(ctx), cp_transport(ctx));
        a.t0 = cp_wall_time();
        long long n = INTERVALS;
        must(ctx, cp_bcast(ctx, a.h_pi, msg_with(ctx, &n, sizeof n)), "bcast");
    }
    rc = cp_run(ctx);
    if (rc)
        fprintf(stderr, "showcase: scheduler: %s\n", cp_strerror(rc));
    return cp_finalize(ctx);
}
