/*
 * abort: PE argv[1] (default 1, the last PE when there are fewer) calls
 * cp_abort after a few messages, while the others wait in cp_run (argv[2]
 * "busy": keep handling messages). The job must end non-zero at once, and
 * stderr must carry "deliberate abort from test" and the PE number.
 */
#include "pe_test.h"

enum { PINGS = 10 };

typedef struct state {
    int me, victim;
    int h_ping, h_spin;
    int pings;
} state;

static void on_ping(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    if (s->me == s->victim && ++s->pings == PINGS) {
        fflush(stdout);
        cp_abort(ctx, "deliberate abort from test (PE %d after %d messages)",
                 s->me, s->pings);
    }
    int to = s->me == s->victim ? 0 : s->victim;
    pt_send(ctx, to, s->h_ping, pt_alloc(ctx, 16));
}

static void on_spin(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    pt_send(ctx, s->me, s->h_spin, m);
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("abort", &argc, &argv);
    state s = {0};
    int npes = cp_num_pes(ctx);
    s.me = cp_my_pe(ctx);
    s.victim = (int)pt_arg(argc, argv, 1, 1);
    if (s.victim >= npes || s.victim < 0)
        s.victim = npes - 1;
    int busy = argc > 2 && strcmp(argv[2], "busy") == 0;
    s.h_ping = pt_handler(ctx, on_ping, &s);
    s.h_spin = pt_handler(ctx, on_spin, &s);
    if (s.me == 0)
        pt_send(ctx, s.victim, s.h_ping, pt_alloc(ctx, 16));
    if (busy && s.me != s.victim)
        pt_send(ctx, s.me, s.h_spin, pt_alloc(ctx, 0));
    int rc = pt_run_and_finalize(ctx, "abort");
    fprintf(stderr, "TESTFAIL abort: PE %d: cp_run returned; the job should "
            "have been ended by the abort of PE %d\n", s.me, s.victim);
    return rc ? rc : 98;
}
