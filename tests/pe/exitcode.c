/*
 * exitcode: the last PE (PE 0 at P=1) ends the job with cp_exit(N), N from
 * argv[1]; the launcher must exit with N. It then asks for N+1, and PE 0,
 * on a message sent after the exit, for N+2: the first code must win.
 * Every PE checks that cp_finalize returns N.
 */
#include "pe_test.h"

typedef struct state {
    int code;
    int h_hello, h_late;
} state;

static void on_hello(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    PT_CHECK(ctx, !cp_exiting(ctx), "job exiting before anyone asked");
    cp_exit(ctx, s->code);
    PT_CHECK(ctx, cp_exiting(ctx), "cp_exiting is 0 right after cp_exit");
    cp_exit(ctx, s->code + 1);
    /* Sent after the exit: PE 0 may or may not handle it, and the send may
     * be refused now that the job is ending. */
    cp_msg *late = pt_alloc(ctx, 0);
    if (cp_send(ctx, 0, s->h_late, late) != 0)
        cp_msg_free(ctx, late);
}

static void on_late(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    cp_exit(ctx, s->code + 2);
}

static int never(void *arg) {
    (void)arg;
    return 0;
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("exitcode", &argc, &argv);
    state s;
    s.code = (int)pt_arg(argc, argv, 1, 3);
    s.h_hello = pt_handler(ctx, on_hello, &s);
    s.h_late = pt_handler(ctx, on_late, &s);
    int me = cp_my_pe(ctx), last = cp_num_pes(ctx) - 1;
    if (me == 0)
        pt_send(ctx, last, s.h_hello, pt_alloc(ctx, 0));
    int rc = cp_run(ctx);
    int bad = 0;
    if (rc != 0) {
        fprintf(stderr, "TESTFAIL exitcode: PE %d: cp_run returned %d (%s)\n", me,
                rc, cp_strerror(rc));
        bad = 1;
    }
    if (!cp_exiting(ctx)) {
        fprintf(stderr, "TESTFAIL exitcode: PE %d: cp_run returned but "
                "cp_exiting is 0\n", me);
        bad = 1;
    }
    int again = cp_run_until(ctx, never, NULL);
    if (again != 1) {
        fprintf(stderr, "TESTFAIL exitcode: PE %d: cp_run_until after the exit "
                "returned %d, expected 1\n", me, again);
        bad = 1;
    }
    int code = cp_finalize(ctx);
    if (code != s.code) {
        fprintf(stderr, "TESTFAIL exitcode: PE %d: cp_finalize returned %d, "
                "expected %d (the first code given)\n", me, code, s.code);
        bad = 1;
    }
    return bad ? 99 : code;
}
