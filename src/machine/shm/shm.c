/*
 * shm: the machine layer for all PEs of a job on one host.
 *
 * A message is a block of the sender's heap inside the job's shared segment
 * (segment.h), so the sender writes its payload straight into memory the
 * receiver can read: a send is one push on the receiver's inbound queue, with
 * no copy. The receiver frees the block into the sender's heap (alloc.h).
 *
 * Wake-up protocol. An idle PE first spins on its queue (a wake-up through
 * the kernel costs tens of microseconds on virtual machines, more than most
 * messages take), then announces that it sleeps by storing CM_SLEEPING in its
 * sleep word, looks at its queue once more and blocks on the futex. A
 * producer pushes (a seq_cst exchange on the queue head) and then reads the
 * sleep word (seq_cst). Either the consumer's second look sees the push, or
 * the producer's read sees CM_SLEEPING and wakes it: the seq_cst order rules
 * out both missing each other.
 *
 * With more PEs than cores, spinning steals the core from the very PE that
 * would send the message, so an oversubscribed PE yields a few times and
 * then sleeps at once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../machine.h"
#include "alloc.h"
#include "segment.h"

/* How long an idle PE with a core of its own polls before sleeping: first
 * on the CPU alone, then yielding it between polls, so that a PE that shares
 * its core with another busy process (a loaded machine) lets that process
 * run instead of burning its time slice. A futex wake-up costs about 75 us
 * on the VMs we measure on (bench: a ping-pong with 100-300 us of work a
 * hop paid 74-81 us a hop when the window was 50 us, 4.5-8.8 us with 1 ms),
 * so a PE waits through the gaps of a compute-then-exchange loop awake and
 * sleeps only when nothing came for a millisecond. */
#define SPIN_SECONDS 3e-6
#define YIELD_SECONDS 1e-3
#define OVERSUB_YIELD_SECONDS 1e-3

/* Blocks of another PE's heap freed here wait in a chain and go back in one
 * atomic push once there are this many, when this PE goes idle, or before
 * it sends to their owner: one compare-and-swap on the owner's cache line
 * per batch instead of per message. */
#define FREE_BATCH 32

typedef struct free_chain {
    uint64_t first, last; /* offsets; first == 0 when empty */
    uint32_t count;
    int listed;           /* in cm_machine.dirty */
} free_chain;

struct cm_machine {
    cm_shm_hdr *hdr;
    char *base;
    int fd;
    int my_pe, npes;
    cm_shm_pe *me;
    int oversubscribed;
    uint32_t sends;       /* since the last yield, when oversubscribed */
    cm_heap heap;
    free_chain *frees;    /* [npes]: blocks to return to each PE */
    int *dirty;           /* PEs whose chain is not empty ... */
    int ndirty;           /* ... and how many */
};

static int futex_wait(_Atomic uint32_t *word, uint32_t val, double timeout) {
    struct timespec ts, *pts = NULL;
    if (timeout >= 0) {
        ts.tv_sec = (time_t)timeout;
        ts.tv_nsec = (long)((timeout - (double)ts.tv_sec) * 1e9);
        pts = &ts;
    }
    return (int)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, val, pts,
                        NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word, int n) {
    (void)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int count_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int parse_int_env(const char *name, int *out) {
    const char *s = getenv(name);
    if (!s || !*s)
        return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > INT_MAX)
        return -1;
    *out = (int)v;
    return 1;
}

static int shm_init(cm_machine **out, cm_job_info *info) {
    cm_machine *m = calloc(1, sizeof *m);
    if (!m)
        return CP_ENOMEM;
    int fd = -1, pe = 0, rc;
    int have_fd = parse_int_env(CM_ENV_FD, &fd);
    int have_pe = parse_int_env(CM_ENV_PE, &pe);
    if (have_fd < 0 || have_pe < 0 || (have_fd && !have_pe)) {
        fprintf(stderr, "charmpy: %s/%s are set but not valid ('%s', '%s'); "
                "start the program with charmrun or unset them\n",
                CM_ENV_FD, CM_ENV_PE, getenv(CM_ENV_FD) ? getenv(CM_ENV_FD) : "",
                getenv(CM_ENV_PE) ? getenv(CM_ENV_PE) : "");
        rc = CP_EINVAL;
        goto fail;
    }
    if (have_fd) {
        rc = cm_shm_segment_attach(fd, &m->hdr);
        if (rc) {
            fprintf(stderr, "charmpy: cannot map the job's shared memory "
                    "(descriptor %d): %s\n", fd,
                    rc == CP_ESYS ? strerror(errno) : "not a charmpy segment");
            goto fail;
        }
        if (pe >= (int)m->hdr->npes) {
            fprintf(stderr, "charmpy: %s=%d but the job has %u PEs\n",
                    CM_ENV_PE, pe, m->hdr->npes);
            rc = CP_EINVAL;
            goto fail;
        }
    } else {
        /* Started without the launcher: a job of one PE of our own. */
        uint64_t heap = cm_shm_heap_bytes_from_env();
        if (heap == 0) {
            fprintf(stderr, "charmpy: %s must be a positive number of MiB\n",
                    CM_ENV_HEAP_MB);
            rc = CP_EINVAL;
            goto fail;
        }
        rc = cm_shm_segment_create(1, heap, &fd, &m->hdr);
        if (rc) {
            fprintf(stderr, "charmpy: cannot create shared memory: %s\n",
                    strerror(errno));
            goto fail;
        }
        pe = 0;
    }
    /* The descriptor and rank are this process's alone: a program the PE
     * starts must not believe it is a PE of this job. */
    unsetenv(CM_ENV_FD);
    unsetenv(CM_ENV_PE);
    unsetenv(CM_ENV_NPES);
    m->fd = fd;
    m->base = (char *)m->hdr;
    m->my_pe = pe;
    m->npes = (int)m->hdr->npes;
    m->me = cm_shm_pe_at(m->hdr, pe);
    atomic_store(&m->me->pid, (int32_t)getpid());
    atomic_store(&m->me->state, CM_PE_ATTACHED);
    cm_heap_init(&m->heap, m->base, m->me->heap_off, m->hdr->heap_bytes,
                 (uint32_t)pe, &m->me->remote_free);
    m->frees = calloc((size_t)m->npes, sizeof *m->frees);
    m->dirty = calloc((size_t)m->npes, sizeof *m->dirty);
    if (!m->frees || !m->dirty) {
        rc = CP_ENOMEM;
        goto fail;
    }
    int cpus = count_cpus();
    m->oversubscribed = m->npes > cpus;
    info->my_pe = pe;
    info->num_pes = m->npes;
    info->num_cpus = cpus;
    info->oversubscribed = m->oversubscribed;
    *out = m;
    return 0;
fail:
    if (m->hdr)
        cm_shm_segment_detach(m->hdr);
    free(m->frees);
    free(m->dirty);
    free(m);
    return rc;
}

static cp_msg *shm_msg_alloc(cm_machine *m, size_t size) {
    if (size > SIZE_MAX - sizeof(cp_msg))
        return NULL;
    cp_msg *msg = cm_heap_alloc(&m->heap, sizeof(cp_msg) + size);
    if (!msg)
        return NULL;
    memset(msg, 0, sizeof *msg);
    msg->size = size;
    return msg;
}

static void flush_frees_to(cm_machine *m, int owner) {
    free_chain *c = &m->frees[owner];
    if (!c->first)
        return;
    cm_heap_free_remote_chain(m->base, &cm_shm_pe_at(m->hdr, owner)->remote_free, c->first,
                              c->last);
    c->first = c->last = 0;
    c->count = 0;
}

static void flush_frees(cm_machine *m) {
    for (int i = 0; i < m->ndirty; i++) {
        flush_frees_to(m, m->dirty[i]);
        m->frees[m->dirty[i]].listed = 0;
    }
    m->ndirty = 0;
}

static void shm_msg_free(cm_machine *m, cp_msg *msg) {
    cm_block *b = cm_block_of(msg);
    uint32_t owner = b->owner;
    if (owner == (uint32_t)m->my_pe) {
        cm_heap_free_local(&m->heap, msg);
        return;
    }
    free_chain *c = &m->frees[owner];
    uint64_t off = (uint64_t)((char *)b - m->base);
    if (!c->first)
        c->last = off;
    if (!c->listed) {
        c->listed = 1;
        m->dirty[m->ndirty++] = (int)owner;
    }
    atomic_store_explicit(&b->link, c->first, memory_order_relaxed);
    c->first = off;
    if (++c->count == FREE_BATCH)
        flush_frees_to(m, (int)owner);
}

static void wake(cm_shm_pe *pe) {
    if (atomic_load_explicit(&pe->sleep, memory_order_seq_cst) == CM_SLEEPING &&
        atomic_exchange(&pe->sleep, CM_AWAKE) == CM_SLEEPING)
        futex_wake(&pe->sleep, 1);
}

/* With more PEs than cores, a PE that sends without pause for a whole time
 * slice builds a backlog its receivers, descheduled, cannot drain: the
 * messages go cold and the heaps grow. Yielding every so often lets them
 * run, which is what flow control would achieve here at no cost. */
#define OVERSUB_SENDS_PER_YIELD 64

static int shm_send(cm_machine *m, int pe, cp_msg *msg) {
    cm_shm_pe *dst = cm_shm_pe_at(m->hdr, pe);
    /* Blocks freed here go back before our next message to their owner:
     * a PE told that its memory was freed can count on it. */
    if (m->frees[pe].first)
        flush_frees_to(m, pe);
    cm_queue_push(&dst->inbox, m->base,
                  (uint64_t)((char *)cm_block_of(msg) - m->base));
    wake(dst);
    if (m->oversubscribed && ++m->sends == OVERSUB_SENDS_PER_YIELD) {
        m->sends = 0;
        sched_yield();
    }
    return 0;
}

static int shm_poll(cm_machine *m, cp_msg **out, int max) {
    int n = 0;
    while (n < max) {
        uint64_t off = cm_queue_pop(&m->me->inbox, m->base);
        if (!off)
            break;
        out[n++] = (cp_msg *)(m->base + off + CM_BLOCK_HDR);
    }
    return n;
}

static int has_work(cm_machine *m) {
    return cm_queue_maybe_nonempty(&m->me->inbox, m->base) ||
           atomic_load_explicit(&m->hdr->exit_flag, memory_order_relaxed);
}

static void shm_wait(cm_machine *m, double timeout) {
    flush_frees(m);
    if (timeout == 0)
        return;
    double start = now();
    if (m->oversubscribed) {
        /* Yield for a while: the PEs that share our core run meanwhile, and a
         * message from one of them needs no wake-up through the kernel. */
        double limit = timeout >= 0 && timeout < OVERSUB_YIELD_SECONDS ? timeout
                                                                       : OVERSUB_YIELD_SECONDS;
        for (double t = 0; t < limit; t = now() - start) {
            if (has_work(m))
                return;
            sched_yield();
        }
    } else {
        double limit = timeout >= 0 && timeout < YIELD_SECONDS ? timeout : YIELD_SECONDS;
        for (double t = 0; t < limit; t = now() - start) {
            for (int i = 0; i < 64; i++) {
                if (has_work(m))
                    return;
                cpu_relax();
            }
            if (t >= SPIN_SECONDS)
                sched_yield();
        }
    }
    if (timeout >= 0) {
        timeout -= now() - start;
        if (timeout <= 0)
            return;
    }
    atomic_store_explicit(&m->me->sleep, CM_SLEEPING, memory_order_seq_cst);
    if (!has_work(m))
        futex_wait(&m->me->sleep, CM_SLEEPING, timeout);
    atomic_store_explicit(&m->me->sleep, CM_AWAKE, memory_order_relaxed);
}

static int shm_barrier(cm_machine *m) {
    cm_shm_hdr *h = m->hdr;
    uint32_t gen = atomic_load(&h->barrier_gen);
    if (atomic_fetch_add(&h->barrier_count, 1) + 1 == (uint32_t)m->npes) {
        atomic_store(&h->barrier_count, 0);
        atomic_fetch_add(&h->barrier_gen, 1);
        futex_wake(&h->barrier_gen, INT_MAX);
        return 0;
    }
    while (atomic_load(&h->barrier_gen) == gen)
        futex_wait(&h->barrier_gen, gen, 0.1);
    return 0;
}

static void shm_request_exit(cm_machine *m, int code) {
    cm_shm_hdr *h = m->hdr;
    int32_t expect = 0;
    /* 2 = being written: the code is stored before the flag says 1. */
    if (atomic_compare_exchange_strong(&h->exit_flag, &expect, 2)) {
        atomic_store(&h->exit_code, code);
        atomic_store(&h->exit_flag, 1);
    }
    for (int i = 0; i < m->npes; i++)
        wake(cm_shm_pe_at(h, i));
}

static int shm_exit_requested(cm_machine *m, int *code) {
    if (atomic_load_explicit(&m->hdr->exit_flag, memory_order_acquire) != 1)
        return 0;
    *code = atomic_load(&m->hdr->exit_code);
    return 1;
}

static void shm_abort(cm_machine *m, int code, const char *message) {
    cm_shm_hdr *h = m->hdr;
    int32_t expect = -1;
    if (atomic_compare_exchange_strong(&h->abort_pe, &expect, m->my_pe)) {
        snprintf(h->abort_msg, sizeof h->abort_msg, "%s", message);
    }
    fflush(stdout);
    fflush(stderr);
    _exit(code);
}

static int shm_finalize(cm_machine *m) {
    flush_frees(m);
    free(m->frees);
    free(m->dirty);
    atomic_store(&m->me->state, CM_PE_DONE);
    atomic_store(&m->me->pid, 0);
    cm_shm_segment_detach(m->hdr);
    close(m->fd);
    free(m);
    return 0;
}

static const cm_ops shm_ops = {
    .version = CM_OPS_VERSION,
    .name = "shm",
    .init = shm_init,
    .msg_alloc = shm_msg_alloc,
    .msg_free = shm_msg_free,
    .send = shm_send,
    .poll = shm_poll,
    .wait = shm_wait,
    .barrier = shm_barrier,
    .request_exit = shm_request_exit,
    .exit_requested = shm_exit_requested,
    .abort = shm_abort,
    .finalize = shm_finalize,
};

const cm_ops *cm_shm_ops(void) { return &shm_ops; }
