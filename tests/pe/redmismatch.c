/*
 * redmismatch: the PEs disagree about a reduction (argv[1]: "reducer",
 * "root" or "handler"): PE 0 contributes one way, the others another. The
 * job must abort with a message about the reduction. At P=1 there is no one
 * to disagree with, so the reduction simply completes.
 */
#include "pe_test.h"

static void on_result(cp_ctx *ctx, cp_msg *m, void *user) {
    (void)user;
    cp_msg_free(ctx, m);
    if (cp_num_pes(ctx) > 1)
        PT_CHECK(ctx, 0, "a reduction whose PEs disagree completed");
    printf("OK redmismatch P=1\n");
    fflush(stdout);
    cp_exit(ctx, 0);
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("redmismatch", &argc, &argv);
    const char *what = argc > 1 ? argv[1] : "reducer";
    int h1 = pt_handler(ctx, on_result, NULL);
    int h2 = pt_handler(ctx, on_result, NULL);
    int me = cp_my_pe(ctx), npes = cp_num_pes(ctx);
    int odd = me != 0;
    int red = cp_reducer_builtin(CP_OP_SUM, CP_T_INT32);
    int root = 0, handler = h1;
    if (odd && strcmp(what, "reducer") == 0)
        red = cp_reducer_builtin(CP_OP_MAX, CP_T_INT32);
    else if (odd && strcmp(what, "root") == 0)
        root = npes - 1;
    else if (odd && strcmp(what, "handler") == 0)
        handler = h2;
    cp_msg *m = pt_alloc(ctx, sizeof(int32_t));
    int32_t v = me;
    memcpy(cp_msg_data(m), &v, sizeof v);
    int rc = cp_reduce(ctx, m, red, root, handler);
    PT_CHECK(ctx, rc == 0, "cp_reduce: %s", cp_strerror(rc));
    rc = pt_run_and_finalize(ctx, "redmismatch");
    if (npes > 1)
        fprintf(stderr, "TESTFAIL redmismatch: PE %d: cp_run returned\n", me);
    return npes > 1 ? 98 : rc;
}
