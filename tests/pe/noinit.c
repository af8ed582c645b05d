/*
 * noinit: the last PE (PE 0 itself at P=1) exits before ever calling
 * cp_init, with status 5 (argv[1] "zero": status 0), while the other PEs
 * start normally and wait in cp_run forever. Nothing will ever end this
 * job but the launcher, which must do so, non-zero, on its own.
 */
#include <stdlib.h>

#include "machine/shm/segment.h"
#include "pe_test.h"

int main(int argc, char **argv) {
    const char *pe = getenv(CM_ENV_PE), *npes = getenv(CM_ENV_NPES);
    int me = pe ? atoi(pe) : 0, n = npes ? atoi(npes) : 1;
    int status = argc > 1 && strcmp(argv[1], "zero") == 0 ? 0 : 5;
    if (me == n - 1) {
        fprintf(stderr, "noinit: PE %d exits with %d without cp_init\n", me,
                status);
        return status;
    }
    cp_ctx *ctx = pt_init("noinit", &argc, &argv);
    int rc = pt_run_and_finalize(ctx, "noinit");
    fprintf(stderr, "TESTFAIL noinit: PE %d: cp_run returned (code %d)\n", me,
            rc);
    return 98;
}
