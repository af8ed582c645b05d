/*
 * rununtil: the scheduler driven from an outer loop, as the Python layer
 * does. Every PE sends N numbered messages to every PE (itself included);
 * each receiver steps with cp_run_until(cond) where cond turns true after
 * every single message (so most batches stop part-way), and with
 * cp_run_once, alternately. No message may be lost, repeated or reordered
 * across those stops. A timer must also end a cp_run_until wait by itself.
 */
#include "pe_test.h"

enum { N = 2000 };

typedef struct state {
    int me, npes;
    int h_data, h_done;
    long *next_from;
    long received, target;
    int timer_fired;
    int done_from;
} state;

static void on_data(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int64_t v[2];
    memcpy(v, cp_msg_data(m), sizeof v);
    cp_msg_free(ctx, m);
    PT_CHECK(ctx, v[0] >= 0 && v[0] < s->npes, "sender %lld", (long long)v[0]);
    PT_CHECK(ctx, v[1] == s->next_from[v[0]],
             "from PE %lld: message %lld, expected %ld (lost, repeated or "
             "reordered across cp_run_until stops)", (long long)v[0],
             (long long)v[1], s->next_from[v[0]]);
    s->next_from[v[0]]++;
    s->received++;
}

static int reached(void *arg) {
    state *s = arg;
    return s->received >= s->target;
}

static void on_timer(cp_ctx *ctx, void *arg) {
    (void)ctx;
    ((state *)arg)->timer_fired = 1;
}

static int timer_fired(void *arg) { return ((state *)arg)->timer_fired; }

static void on_done(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    if (++s->done_from == s->npes) {
        printf("OK rununtil P=%d\n", s->npes);
        fflush(stdout);
        cp_exit(ctx, 0);
    }
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("rununtil", &argc, &argv);
    static state s;
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    s.next_from = calloc((size_t)s.npes, sizeof(long));
    PT_CHECK(ctx, s.next_from != NULL, "out of memory");
    s.h_data = pt_handler(ctx, on_data, &s);
    s.h_done = pt_handler(ctx, on_done, &s);

    /* Nothing queued: a timer alone must end the wait, not too early. */
    double t0 = cp_wall_time();
    int rc = cp_call_after(ctx, 0.05, on_timer, &s);
    PT_CHECK(ctx, rc == 0, "cp_call_after: %s", cp_strerror(rc));
    rc = cp_run_until(ctx, timer_fired, &s);
    PT_CHECK(ctx, rc == 0 && s.timer_fired, "cp_run_until(timer) returned %d, "
             "timer fired %d", rc, s.timer_fired);
    PT_CHECK(ctx, cp_wall_time() - t0 >= 0.05, "timer fired after %.4fs",
             cp_wall_time() - t0);

    for (int i = 0; i < N; i++)
        for (int d = 0; d < s.npes; d++) {
            cp_msg *m = pt_alloc(ctx, 2 * sizeof(int64_t));
            int64_t v[2] = {s.me, i};
            memcpy(cp_msg_data(m), v, sizeof v);
            pt_send(ctx, (s.me + d) % s.npes, s.h_data, m);
        }
    long total = (long)N * s.npes;
    int steps = 0;
    while (s.received < total) {
        if (steps++ % 2 == 0) {
            s.target = s.received + 1;
            rc = cp_run_until(ctx, reached, &s);
            PT_CHECK(ctx, rc == 0, "cp_run_until returned %d with %ld of %ld "
                     "messages", rc, s.received, total);
            PT_CHECK(ctx, s.received == s.target,
                     "cp_run_until went past its condition: %ld messages, "
                     "condition held at %ld", s.received, s.target);
        } else {
            long before = s.received;
            rc = cp_run_once(ctx);
            PT_CHECK(ctx, rc >= 0, "cp_run_once: %s", cp_strerror(rc));
            PT_CHECK(ctx, s.received - before <= rc,
                     "cp_run_once handled %ld messages but returned %d",
                     s.received - before, rc);
        }
    }
    pt_send(ctx, 0, s.h_done, pt_alloc(ctx, 0));
    rc = cp_run_until(ctx, NULL, NULL);
    if (rc != 1)
        fprintf(stderr, "TESTFAIL rununtil: PE %d: cp_run_until(NULL) returned "
                "%d at the end of the job, expected 1\n", s.me, rc);
    free(s.next_from);
    int code = cp_finalize(ctx);
    return rc == 1 ? code : 97;
}
