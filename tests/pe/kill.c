/*
 * kill: a PE dies without telling anyone, in the middle of a run, while the
 * others wait in cp_run forever. The launcher must notice, end the job
 * non-zero within seconds, and say which PE died and how.
 *
 *   kill [VICTIM|none] [signal|exit] [idle|busy] [marker...]
 *
 * VICTIM (default 1; the last PE when there are fewer) dies when a token
 * that travels around the ring of PEs reaches it the HOPS-th time:
 * "signal" raises SIGKILL, "exit" calls _exit(7). "none": nobody dies and
 * the job runs until it is killed (used to kill the launcher itself).
 * "busy": the survivors keep handling messages instead of sleeping.
 * Extra arguments are ignored; the runner adds one to find its processes.
 */
#include <signal.h>
#include <unistd.h>

#include "pe_test.h"

enum { HOPS = 30 };

typedef struct state {
    int me, npes, victim, use_exit;
    int h_token, h_spin;
    int hops;
} state;

static void on_token(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    uint64_t hops;
    memcpy(&hops, cp_msg_data(m), sizeof hops);
    if (s->me == s->victim && hops >= HOPS) {
        fflush(stdout);
        fflush(stderr);
        if (s->use_exit)
            _exit(7);
        raise(SIGKILL);
    }
    if (s->victim < 0 && hops >= 10 * HOPS) {
        cp_msg_free(ctx, m); /* the token stops; everyone idles */
        return;
    }
    hops++;
    memcpy(cp_msg_data(m), &hops, sizeof hops);
    pt_send(ctx, (s->me + 1) % s->npes, s->h_token, m);
}

static void on_spin(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    pt_send(ctx, s->me, s->h_spin, m);
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("kill", &argc, &argv);
    state s = {0};
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    if (argc > 1 && strcmp(argv[1], "none") == 0) {
        s.victim = -1;
    } else {
        s.victim = (int)pt_arg(argc, argv, 1, 1);
        if (s.victim >= s.npes || s.victim < 0)
            s.victim = s.npes - 1;
    }
    s.use_exit = argc > 2 && strcmp(argv[2], "exit") == 0;
    int busy = argc > 3 && strcmp(argv[3], "busy") == 0;
    s.h_token = pt_handler(ctx, on_token, &s);
    s.h_spin = pt_handler(ctx, on_spin, &s);
    if (s.me == 0) {
        cp_msg *m = pt_alloc(ctx, sizeof(uint64_t));
        uint64_t zero = 0;
        memcpy(cp_msg_data(m), &zero, sizeof zero);
        pt_send(ctx, 0, s.h_token, m);
    }
    if (busy && s.me != s.victim)
        pt_send(ctx, s.me, s.h_spin, pt_alloc(ctx, 0));
    int rc = pt_run_and_finalize(ctx, "kill");
    fprintf(stderr, "TESTFAIL kill: PE %d: cp_run returned (code %d); nothing "
            "should end this job but the launcher\n", s.me, rc);
    return 98;
}
