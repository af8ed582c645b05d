/*
 * exitrace: every PE but PE 0 (the arbiter, which would win at once) asks
 * for the job's end at the same moment, each with its own code (10 + PE);
 * PE 0 at P=1. One request wins and every PE must return the same code from
 * cp_finalize. Each prints "PE <p> code <c>" and exits with status 0 (a
 * non-zero status would make mpirun kill the PEs that have not printed
 * yet); the runner checks that the codes agree.
 */
#include "pe/pe_test.h"

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("exitrace", &argc, &argv);
    int me = cp_my_pe(ctx), npes = cp_num_pes(ctx);
    PT_CHECK(ctx, cp_barrier(ctx) == 0, "barrier");
    if (me != 0 || npes == 1) {
        cp_exit(ctx, 10 + me);
        PT_CHECK(ctx, cp_exiting(ctx), "not exiting right after cp_exit");
    }
    int rc = cp_run(ctx);
    PT_CHECK(ctx, rc == 0, "cp_run: %s", cp_strerror(rc));
    int code = cp_finalize(ctx);
    printf("PE %d code %d\n", me, code);
    fflush(stdout);
    PT_CHECK(NULL, npes == 1 || (code >= 11 && code < 10 + npes),
             "code %d is none of the requested ones", code);
    return 0;
}
