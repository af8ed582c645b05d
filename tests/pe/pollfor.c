/*
 * pollfor: cp_poll_for, a handler waiting for its next message in place.
 * PE 1 answers N pings of PE 0 (PE 0 plays both at P=1); after each answer
 * it waits for the next ping with cp_poll_for from inside its handler.
 * Every tenth round PE 0 sends an "other" message just before the ping:
 * cp_poll_for must hold it (return 0) and the scheduler must dispatch it
 * before that ping. Checked: every ping once, in order, each "other" before
 * its ping; pings taken by cp_poll_for only when the host is not
 * oversubscribed, and some taken then (a partner answers in microseconds,
 * the wait is 50 ms); with a message queued to itself cp_poll_for returns 0
 * at once; a timer due soon ends the wait by its deadline, and the wait
 * counts as idle time.
 */

#include "pe_test.h"

enum { N = 3000, OTHER_EVERY = 10 };

typedef struct state {
    int me, npes, partner;
    int h_ping, h_pong, h_other, h_self, h_timer;
    int next;      /* the ping expected next */
    int polling;   /* in cp_poll_for: a ping that comes is recorded only */
    int taken;     /* pings dispatched by cp_poll_for */
    int others;    /* "other" messages received */
    int other_at;  /* the ping expected when the last "other" came */
    int selfs;
} state;

static void send_int(cp_ctx *ctx, int pe, int h, int v) {
    cp_msg *m = pt_alloc(ctx, sizeof v);
    memcpy(cp_msg_data(m), &v, sizeof v);
    pt_send(ctx, pe, h, m);
}

static int get_int(cp_msg *m) {
    int v;
    memcpy(&v, cp_msg_data(m), sizeof v);
    return v;
}

static int want_ping(const cp_msg *m, void *arg) {
    state *s = arg;
    int v;
    memcpy(&v, cp_msg_data((cp_msg *)m), sizeof v);
    return (int)m->handler == s->h_ping && v >= 0; /* not the end */
}

static void on_ping(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int i = get_int(m);
    cp_msg_free(ctx, m);
    PT_CHECK(ctx, i == s->next, "ping %d arrived when %d was expected", i, s->next);
    if (i % OTHER_EVERY == 0 && i > 0)
        PT_CHECK(ctx, s->others == i / OTHER_EVERY && s->other_at == i,
                 "ping %d dispatched before the message sent just before it (%d others, "
                 "the last when ping %d was expected)",
                 i, s->others, s->other_at);
    s->next++;
    if (s->polling) {
        s->taken++;
        return; /* the loop below answers it */
    }
    for (;;) {
        send_int(ctx, 0, s->h_pong, s->next - 1);
        if (s->next == N || s->npes == 1)
            return; /* (alone, the pings come through the local queue) */
        s->polling = 1;
        int got = cp_poll_for(ctx, 0.05, want_ping, s);
        s->polling = 0;
        if (!got)
            return; /* the scheduler brings the next one */
    }
}

static void on_other(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    s->others++;
    s->other_at = s->next;
}

static void on_self(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    s->selfs++;
}

static void on_timer(cp_ctx *ctx, void *user) {
    (void)ctx;
    (void)user;
}

static void checks_alone(cp_ctx *ctx, state *s) {
    /* A message queued to itself: no polling. */
    send_int(ctx, s->me, s->h_self, 0);
    double t0 = cp_wall_time();
    int got = cp_poll_for(ctx, 1.0, want_ping, s);
    PT_CHECK(ctx, got == 0 && cp_wall_time() - t0 < 0.5,
             "cp_poll_for with a message queued here returned %d after %.3f s", got,
             cp_wall_time() - t0);
    /* A timer due in 20 ms bounds a 2 s wait. */
    int rc = cp_call_after(ctx, 0.02, on_timer, s);
    PT_CHECK(ctx, rc >= 0, "cp_call_after: %s", cp_strerror(rc));
}

static void on_pong(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int i = get_int(m);
    cp_msg_free(ctx, m);
    if (i + 1 < N) {
        if ((i + 1) % OTHER_EVERY == 0)
            send_int(ctx, s->partner, s->h_other, i + 1);
        send_int(ctx, s->partner, s->h_ping, i + 1);
        return;
    }
    send_int(ctx, s->partner, s->h_ping, -1); /* the end: PE 1 reports */
}

static void on_report(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int taken = get_int(m);
    cp_msg_free(ctx, m);
    if (s->npes > 1) {
        if (cp_oversubscribed(ctx))
            PT_CHECK(ctx, taken == 0, "%d pings taken by cp_poll_for on an oversubscribed host",
                     taken);
        else
            PT_CHECK(ctx, taken > 0, "no ping of %d taken by cp_poll_for (%d PEs)", N,
                     s->npes);
    }
    printf("OK pollfor P=%d (%d of %d pings taken in place)\n", s->npes, taken, N);
    fflush(stdout);
    cp_exit(ctx, 0);
}

static int h_report;

static void on_ping_or_end(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    if (get_int(m) == -1) {
        cp_msg_free(ctx, m);
        PT_CHECK(ctx, s->next == N, "%d pings of %d arrived", s->next, N);
        PT_CHECK(ctx, s->others == (N - 1) / OTHER_EVERY, "%d others of %d", s->others,
                 (N - 1) / OTHER_EVERY);
        send_int(ctx, 0, h_report, s->taken);
        return;
    }
    on_ping(ctx, m, user);
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("pollfor", &argc, &argv);
    state s = {0};
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    s.partner = s.npes > 1 ? 1 : 0;
    s.h_ping = pt_handler(ctx, on_ping_or_end, &s);
    s.h_pong = pt_handler(ctx, on_pong, &s);
    s.h_other = pt_handler(ctx, on_other, &s);
    s.h_self = pt_handler(ctx, on_self, &s);
    h_report = pt_handler(ctx, on_report, &s);
    if (s.me == 0) {
        checks_alone(ctx, &s);
        double t0 = cp_wall_time();
        int got = cp_poll_for(ctx, 2.0, want_ping, &s); /* the self message is queued */
        PT_CHECK(ctx, got == 0, "cp_poll_for returned %d", got);
        cp_run_once(ctx); /* it is dispatched now */
        PT_CHECK(ctx, s.selfs == 1, "the message to itself ran %d times", s.selfs);
        cp_counters c0, c1;
        cp_get_counters(ctx, &c0);
        t0 = cp_wall_time();
        got = cp_poll_for(ctx, 2.0, want_ping, &s);
        double waited = cp_wall_time() - t0;
        PT_CHECK(ctx, got == 0 && waited < 1.0,
                 "cp_poll_for past a timer due in 20 ms: %d after %.3f s", got, waited);
        cp_get_counters(ctx, &c1);
        if (!cp_oversubscribed(ctx)) /* (oversubscribed, it does not poll) */
            PT_CHECK(ctx, waited > 0.005 && c1.idle_secs - c0.idle_secs > 0.5 * waited,
                     "cp_poll_for waited %.4f s for a timer due in 20 ms, %.4f s of it idle",
                     waited, c1.idle_secs - c0.idle_secs);
        send_int(ctx, s.partner, s.h_ping, 0);
    }
    return pt_run_and_finalize(ctx, "pollfor");
}
