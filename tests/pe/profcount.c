/*
 * profcount: the profiling counters (cp_set_profiling, +stats). PE 0 and
 * PE 1 (PE 0 and itself at P=1) play N round trips with profiling off,
 * then N with it on. Checked on both: with profiling off, send_secs and
 * recv_secs stay 0 (unless the job was started with +stats: argv[1]
 * "stats", on from the start); each phase adds exactly N messages sent and
 * N processed, N * SIZE payload bytes each way; with profiling on, the
 * sends took time (send_secs > 0) and, with a partner on another PE, so
 * did the receives (recv_secs > 0), and neither exceeds the wall time.
 */
#include "pe_test.h"

enum { N = 2000, SIZE = 24 };

typedef struct state {
    int partner, h_ping, h_pong, h_phase;
    int stats;     /* started with +stats: on from the start */
    int round, phase;
    cp_counters c0;
    double t0;
} state;

static void ping(cp_ctx *ctx, int h, int pe) {
    cp_msg *m = pt_alloc(ctx, SIZE);
    memset(cp_msg_data(m), 7, SIZE);
    pt_send(ctx, pe, h, m);
}

/* The counters of this PE over one phase: exactly as sent. */
static void check_phase(cp_ctx *ctx, state *s, int sent, int processed) {
    cp_counters c;
    cp_get_counters(ctx, &c);
    int on = s->phase == 1 || s->stats;
    PT_CHECK(ctx, c.msgs_sent - s->c0.msgs_sent == (uint64_t)sent,
             "phase %d: %llu messages sent, expected %d", s->phase,
             (unsigned long long)(c.msgs_sent - s->c0.msgs_sent), sent);
    PT_CHECK(ctx, c.msgs_processed - s->c0.msgs_processed == (uint64_t)processed,
             "phase %d: %llu messages processed, expected %d", s->phase,
             (unsigned long long)(c.msgs_processed - s->c0.msgs_processed), processed);
    PT_CHECK(ctx, c.bytes_sent - s->c0.bytes_sent == (uint64_t)sent * SIZE,
             "phase %d: %llu bytes sent, expected %d", s->phase,
             (unsigned long long)(c.bytes_sent - s->c0.bytes_sent), sent * SIZE);
    double ds = c.send_secs - s->c0.send_secs, dr = c.recv_secs - s->c0.recv_secs;
    double wall = cp_wall_time() - s->t0;
    if (!on) {
        PT_CHECK(ctx, c.send_secs == 0 && c.recv_secs == 0,
                 "profiling off, yet send_secs %g recv_secs %g", c.send_secs, c.recv_secs);
    } else {
        PT_CHECK(ctx, ds > 0 && ds <= wall, "profiling on: send_secs grew by %g in %g s", ds,
                 wall);
        PT_CHECK(ctx, dr >= 0 && dr <= wall, "profiling on: recv_secs grew by %g in %g s", dr,
                 wall);
        if (cp_num_pes(ctx) > 1)
            PT_CHECK(ctx, dr > 0, "profiling on, a partner on another PE: no receive time");
    }
}

static void start_phase(cp_ctx *ctx, state *s) {
    cp_get_counters(ctx, &s->c0);
    s->t0 = cp_wall_time();
    if (s->phase == 1)
        cp_set_profiling(ctx, 1);
}

/* PE 0 ends a phase on the partner with h_phase (not counted: the partner
 * checks before it processes anything more). */
static void on_phase(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    if (cp_my_pe(ctx) != 0) {
        /* Processed: N pings and this message; sent: N pongs and, after
         * the first phase, the answer that began this one. */
        check_phase(ctx, s, N + (s->phase > 0), N + 1);
        s->phase++;
        start_phase(ctx, s);
        ping(ctx, s->h_phase, 0);
        return;
    }
    /* PE 0: the partner's answer to its end of phase. */
    s->phase++;
    if (s->phase == 2) {
        printf("OK profcount P=%d\n", cp_num_pes(ctx));
        fflush(stdout);
        cp_exit(ctx, 0);
        return;
    }
    start_phase(ctx, s);
    s->round = 0;
    ping(ctx, s->h_ping, s->partner);
}

static void on_ping(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    ping(ctx, s->h_pong, 0);
}

static void on_pong(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    if (++s->round < N) {
        ping(ctx, s->h_ping, s->partner);
        return;
    }
    /* Sent: N pings; processed: N pongs (the partner's answer that began
     * the phase was counted before its handler took the snapshot); at P=1
     * this PE played the partner too. */
    int k = s->partner != 0 ? N : 2 * N;
    check_phase(ctx, s, k, k);
    ping(ctx, s->h_phase, s->partner);
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("profcount", &argc, &argv);
    state s = {0};
    s.stats = argc > 1 && strcmp(argv[1], "stats") == 0;
    s.partner = cp_num_pes(ctx) > 1 ? 1 : 0;
    s.h_ping = pt_handler(ctx, on_ping, &s);
    s.h_pong = pt_handler(ctx, on_pong, &s);
    s.h_phase = pt_handler(ctx, on_phase, &s);
    cp_counters c;
    cp_get_counters(ctx, &c);
    PT_CHECK(ctx, s.stats || (c.send_secs == 0 && c.recv_secs == 0),
             "profiling off at the start, yet send_secs %g", c.send_secs);
    start_phase(ctx, &s);
    if (cp_my_pe(ctx) == 0)
        ping(ctx, s.h_ping, s.partner);
    return pt_run_and_finalize(ctx, "profcount");
}
