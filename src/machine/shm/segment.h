/*
 * The shared-memory segment of one shm job: its layout, its creation by the
 * launcher and its attachment by each PE.
 *
 * The segment is an anonymous memory file (memfd): it has no name in any
 * file system, so no other user can open it and nothing is left behind when
 * the job ends, whatever way it ends: the kernel frees it when the last
 * process that maps it or holds its descriptor exits. The launcher creates
 * it, lays it out, and passes the descriptor to the PEs it starts
 * (environment variable CHARMPY_SHM_FD, descriptor inherited across exec).
 *
 * Layout (all offsets from the segment base; offset 0 is the header, so 0
 * also serves as the null offset):
 *   cm_shm_hdr        job-wide state
 *   cm_shm_pe[npes]   per-PE control: inbound queue, sleep word, remote frees
 *   heaps[npes]       per-PE message heaps, heap_bytes each, sparse until used
 */
#ifndef CHARMPY_SHM_SEGMENT_H
#define CHARMPY_SHM_SEGMENT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "queue.h"

#define CM_SHM_MAGIC 0x31306d6873706863ULL /* "chpshm01" */
#define CM_SHM_VERSION 1
#define CM_SHM_ABORT_MSG 1024

/* Environment variables the launcher sets for every PE. */
#define CM_ENV_FD "CHARMPY_SHM_FD"
#define CM_ENV_PE "CHARMPY_PE"
#define CM_ENV_NPES "CHARMPY_NPES"
#define CM_ENV_HEAP_MB "CHARMPY_HEAP_MB" /* per-PE heap size for the launcher */
#define CM_DEFAULT_HEAP_MB 4096
#define CM_MAX_HEAP_MB (1ull << 24)  /* 16 TiB of address space per PE */

/* Sleep states of a PE (cm_shm_pe.sleep). */
enum { CM_AWAKE = 0, CM_SLEEPING = 1 };

/* Life of a PE (cm_shm_pe.state), for the launcher: a job whose PEs use the
 * runtime must end with cp_exit; a PE that leaves before, while others wait
 * in the runtime, would leave them waiting forever. */
enum { CM_PE_NONE = 0, CM_PE_ATTACHED = 1, CM_PE_DONE = 2 };

typedef struct cm_shm_pe {
    cm_queue inbox;                        /* messages to this PE (MPSC) */
    _Alignas(64) _Atomic uint32_t sleep;   /* futex word: CM_AWAKE/SLEEPING */
    _Atomic int32_t pid;                   /* process of this PE, 0 = none */
    _Atomic int32_t state;                 /* CM_PE_* */
    _Alignas(64) _Atomic uint64_t remote_free; /* blocks of this heap freed
                                                  elsewhere (Treiber stack) */
    uint64_t heap_off;                     /* this PE's heap region */
} cm_shm_pe;

typedef struct cm_shm_hdr {
    uint64_t magic;
    uint32_t version;
    uint32_t npes;
    uint64_t heap_bytes;     /* per PE */
    uint64_t total_bytes;    /* whole segment */
    uint64_t pe_off;         /* offset of cm_shm_pe[0] */
    _Atomic int32_t exit_flag;   /* 1 once any PE asked the job to exit */
    _Atomic int32_t exit_code;
    _Atomic int32_t abort_pe;    /* -1, or the first PE that aborted */
    _Atomic uint32_t barrier_count;
    _Atomic uint32_t barrier_gen;    /* futex word for barrier waiters */
    char abort_msg[CM_SHM_ABORT_MSG];
} cm_shm_hdr;

static inline cm_shm_pe *cm_shm_pe_at(cm_shm_hdr *h, int pe) {
    return (cm_shm_pe *)((char *)h + h->pe_off) + pe;
}

/*
 * Create and lay out a segment for `npes` PEs with `heap_bytes` of message
 * heap each (address space only: memory is used as messages need it). On
 * success *fd is the memfd (without close-on-exec, for the PEs to inherit)
 * and *hdr the mapping in this process. Returns 0 or a negative CP_E* code.
 */
int cm_shm_segment_create(int npes, uint64_t heap_bytes, int *fd,
                          cm_shm_hdr **hdr);

/* Map an existing segment from its descriptor; checks magic and version. */
int cm_shm_segment_attach(int fd, cm_shm_hdr **hdr);

/* Unmap (the descriptor is the caller's to close). */
void cm_shm_segment_detach(cm_shm_hdr *hdr);

/* Per-PE heap size from CHARMPY_HEAP_MB or the default; 0 when the variable
 * holds something that is not a positive number of MiB. */
uint64_t cm_shm_heap_bytes_from_env(void);

#endif /* CHARMPY_SHM_SEGMENT_H */
