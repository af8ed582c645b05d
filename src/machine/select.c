/*
 * Which machine layer a process uses (see cm_select in machine.h).
 *
 * The order matters. CHARMPY_TRANSPORT is the user's word and wins. A PE
 * that charmrun started (it hands over the job's segment in CM_ENV_FD) is
 * shm even when charmrun itself runs under an MPI launcher, whose variables
 * the PE inherits. Otherwise the variables MPI launchers set tell that the
 * process is one rank of an MPI job, which only the mpi layer can join.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine.h"
#include "shm/segment.h"

#ifdef CP_HAVE_MPI
#define HAVE_MPI 1
#define BUILT "shm, mpi"
#else
#define HAVE_MPI 0
#define BUILT "shm"
#endif

#define INSTALL_MPI                                                            \
    "install MPI (Debian/Ubuntu: apt-get install libopenmpi-dev openmpi-bin; " \
    "Fedora: dnf install openmpi-devel) and rebuild charmpy"

static const cm_ops *mpi_or_null(void) {
#ifdef CP_HAVE_MPI
    return cm_mpi_ops();
#else
    return NULL;
#endif
}

/* The size of the MPI job that launched this process: > 0 when a launcher
 * says how many ranks there are, -1 when one started it without saying (a
 * PMIx launcher), 0 when no MPI launcher is involved. The variables are
 * those of Open MPI's mpirun (OMPI_*), MPICH/Intel MPI's Hydra (PMI_*,
 * MPI_LOCALNRANKS), PMIx launchers (PMIX_RANK) and Slurm's srun (a job
 * step: SLURM_STEP_ID; a batch script alone has SLURM_PROCID but no step). */
static int mpi_launcher_size(const char **which) {
    static const char *const sized[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE",
                                        "MPI_LOCALNRANKS", NULL};
    for (int i = 0; sized[i]; i++) {
        const char *v = getenv(sized[i]);
        if (v && *v) {
            *which = sized[i];
            int n = atoi(v);
            return n > 0 ? n : -1;
        }
    }
    if (getenv("SLURM_PROCID") && getenv("SLURM_STEP_ID")) {
        const char *v = getenv("SLURM_NTASKS");
        *which = "SLURM_PROCID";
        int n = v ? atoi(v) : 0;
        if (n > 1)
            return n;
        /* A one-task step: an MPI job of 1 only when PMI says so too. */
    }
    static const char *const unsized[] = {"PMIX_RANK", "PMI_RANK", NULL};
    for (int i = 0; unsized[i]; i++)
        if (getenv(unsized[i])) {
            *which = unsized[i];
            return -1;
        }
    return 0;
}

const cm_ops *cm_select(int *rc) {
    const char *want = getenv("CHARMPY_TRANSPORT");
    if (want && *want) {
        if (strcmp(want, "shm") == 0)
            return cm_shm_ops();
        if (strcmp(want, "mpi") == 0) {
            if (HAVE_MPI)
                return mpi_or_null();
            fprintf(stderr, "charmpy: CHARMPY_TRANSPORT=mpi, but this build has "
                    "no mpi machine layer (MPI was not found when it was built); "
                    INSTALL_MPI ", or unset CHARMPY_TRANSPORT to use shm\n");
        } else {
            fprintf(stderr, "charmpy: CHARMPY_TRANSPORT='%s' is not a machine "
                    "layer; this build has: " BUILT "\n", want);
        }
        *rc = CP_ENOTRANSPORT;
        return NULL;
    }
    if (getenv(CM_ENV_FD))
        return cm_shm_ops();
    const char *which = NULL;
    int size = mpi_launcher_size(&which);
    if (size == 0 || (size == 1 && !HAVE_MPI))
        return cm_shm_ops();
    if (HAVE_MPI)
        return mpi_or_null();
    fprintf(stderr, "charmpy: this process was started by an MPI launcher (%s is "
            "set), but this build has no mpi machine layer (MPI was not found when "
            "it was built), so it cannot join the other ranks; " INSTALL_MPI
            ", or set CHARMPY_TRANSPORT=shm to run every process as a job of its "
            "own\n", which);
    *rc = CP_ENOTRANSPORT;
    return NULL;
}
