/*
 * The machine-layer contract: what every transport (shm, later mpi) provides
 * to the runtime core. One transport is one folder under src/machine/ that
 * exports one `const cm_ops *cm_<name>_ops(void)` function; the build lists
 * the folders that exist and cm_select() picks one at cp_init() time.
 *
 * A transport moves whole messages (struct cp_msg from runtime.h: header and
 * payload, contiguous) between PEs of one job. It knows nothing of handlers,
 * broadcasts or reductions: those are the core's (src/runtime/).
 *
 * Threading: every call is made from the PE's own thread. No call re-enters
 * the runtime: a transport never calls a handler or any cp_* function.
 *
 * Ownership, stated once for every call below:
 *   - msg_alloc returns a message the caller (the core) owns.
 *   - send: on return 0 the transport owns the message and will, at a later
 *     time, hand it to the destination PE's poll; the sender must not touch
 *     it again. On a negative return the caller still owns it.
 *   - poll: a message it returns is owned by the caller (the receiving core),
 *     which releases it with msg_free on that same PE, or sends it on.
 *   - msg_free accepts any message obtained from msg_alloc or poll on this
 *     PE, whichever PE allocated it.
 */
#ifndef CHARMPY_MACHINE_H
#define CHARMPY_MACHINE_H

#include <stddef.h>
#include <stdint.h>

#include "charmpy/runtime.h"

#define CM_OPS_VERSION 2

typedef struct cm_machine cm_machine; /* a transport's private state */

/* Job-wide status a transport reports to the core. */
typedef struct cm_job_info {
    int my_pe;
    int num_pes;
    int num_cpus;        /* cores this host offers to the job */
    int oversubscribed;  /* more PEs on this host than cores */
    /* The hosts (machines) of the job, numbered 0..num_hosts-1 in the order
     * of their lowest PE. num_hosts 0 means one host holding every PE (what
     * shm leaves, as cp_init zeroes this struct). pe_host, when not NULL, has
     * num_pes entries, the host of each PE; the transport owns the array and
     * keeps it valid until its finalize. */
    int my_host;
    int num_hosts;
    const int *pe_host;
} cm_job_info;

typedef struct cm_ops {
    int version;      /* CM_OPS_VERSION */
    const char *name; /* "shm", "mpi" */

    /* Join the job (or create a job of 1 PE when none was set up by a
     * launcher). On success *out is the transport state and *info is
     * filled. Blocks until this PE can receive messages; it does not wait
     * for the other PEs (use barrier for that). */
    int (*init)(cm_machine **out, cm_job_info *info);

    /* A message with `size` payload bytes, header zeroed except `size`.
     * NULL when the transport's memory is exhausted. Never blocks. */
    cp_msg *(*msg_alloc)(cm_machine *m, size_t size);
    void (*msg_free)(cm_machine *m, cp_msg *msg);

    /* Queue `msg` for PE `pe` (never this PE: the core delivers those
     * itself). Never blocks. Messages from one PE to one PE stay in order. */
    int (*send)(cm_machine *m, int pe, cp_msg *msg);

    /* Optional (NULL: the core copies the segments into one message and
     * calls send). Like send, for a message whose payload goes on in
     * segs[0..nseg-1] (nseg >= 1, each at least 1 byte), laid out as
     * cp_send_segs (runtime.h) says; `total` is the payload size of the
     * message the destination's poll returns. The segments are read in
     * place. On return 0 the transport owns msg and calls release(arg)
     * (when not NULL) exactly once when it no longer reads the segments: before sendv
     * returns or from a later call on this PE (send, sendv, poll, wait,
     * barrier, finalize). On a negative return nothing was sent, the
     * caller owns msg unchanged, and release was not called. segs is read
     * during the call only. Never blocks. */
    int (*sendv)(cm_machine *m, int pe, cp_msg *msg, const cp_seg *segs, int nseg,
                 uint64_t total, cp_release_fn release, void *arg);

    /* Take up to `max` arrived messages into out[]; returns how many (0 when
     * none). Never blocks. */
    int (*poll)(cm_machine *m, cp_msg **out, int max);

    /* Block until a message may have arrived, the job is ending, or
     * `timeout` seconds pass (timeout < 0: no limit). May return early for
     * no reason; the caller polls again. */
    void (*wait)(cm_machine *m, double timeout);

    /* Block until every PE has entered barrier. Handles no messages. */
    int (*barrier)(cm_machine *m);

    /* Job-wide exit: request_exit records `code` for the whole job (the
     * first request wins) and wakes every PE; exit_requested returns
     * non-zero once any PE asked, with the code in *code. Never block. */
    void (*request_exit)(cm_machine *m, int code);
    int (*exit_requested)(cm_machine *m, int *code);

    /* Record `message` for the launcher and end this process with status
     * `code`. Does not return. */
    void (*abort)(cm_machine *m, int code, const char *message);

    /* Leave the job and release this PE's resources; messages still queued
     * are dropped. */
    int (*finalize)(cm_machine *m);
} cm_ops;

/* The transports built into this library. cm_mpi_ops exists only in builds
 * that found MPI (CP_HAVE_MPI, see src/machine/mpi/). */
const cm_ops *cm_shm_ops(void);
const cm_ops *cm_mpi_ops(void);

/* Pick the transport for this process: CHARMPY_TRANSPORT (shm or mpi) if
 * set; else shm for a PE started by charmrun; else mpi when an MPI launcher
 * (mpirun, mpiexec, srun) started the process; else shm. Returns NULL and
 * sets *rc (CP_ENOTRANSPORT) for an unknown or absent transport, after
 * printing which one was asked for, which exist and what to install. */
const cm_ops *cm_select(int *rc);

#endif /* CHARMPY_MACHINE_H */
