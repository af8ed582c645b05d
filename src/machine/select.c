#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine.h"

const cm_ops *cm_select(int *rc) {
    const char *want = getenv("CHARMPY_TRANSPORT");
    if (!want || !*want || strcmp(want, "shm") == 0)
        return cm_shm_ops();
    if (strcmp(want, "mpi") == 0)
        fprintf(stderr, "charmpy: CHARMPY_TRANSPORT=mpi, but this build has no "
                "mpi machine layer; install Open MPI (Debian: apt-get install "
                "libopenmpi-dev openmpi-bin) and rebuild, or unset "
                "CHARMPY_TRANSPORT to use shm\n");
    else
        fprintf(stderr, "charmpy: CHARMPY_TRANSPORT='%s' is not a machine "
                "layer; this build has: shm\n", want);
    *rc = CP_ENOTRANSPORT;
    return NULL;
}
