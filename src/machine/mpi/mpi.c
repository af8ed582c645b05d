/*
 * mpi: the machine layer over MPI, for jobs that span hosts (started by
 * mpirun, mpiexec or srun). One PE is one MPI rank of MPI_COMM_WORLD.
 *
 * Wire. Every message travels as one MPI message, header and payload
 * together (48 + size bytes), with tag TAG_MSG on a private duplicate of
 * MPI_COMM_WORLD, so that a program that also uses MPI itself (mpi4py) can
 * never match our messages or we its. Messages above MPI's int count limit
 * go as one element of a derived datatype (1 MiB blocks and a remainder)
 * whose type signature is a plain byte sequence: still one message, sent
 * from and received into the message itself, with no copy of ours.
 * A message sent with segments in place (sendv, for cp_send_segs) travels
 * as its head (header and the message's own payload, tag TAG_HEAD) and
 * then one MPI message per segment, straight from the sender's memory, on
 * a second private communicator; the receiver allocates the whole message
 * when the head is in and receives each segment at its place (see
 * match_segments and advance_heads), so the core above sees one ordinary
 * message. An 8 MiB numpy argument copied into the message first moved at
 * a third of mpi4py's Send/Recv bandwidth.
 *
 * Sending. MPI_Isend straight from the message; the transport keeps the
 * message until the request completes (most small sends complete inside
 * MPI_Isend, and are freed at once), and frees it then. MPI's
 * non-overtaking rule keeps the messages of one PE to one PE in order.
 * sendv alone waits, until its segments have left (see mpi_sendv and
 * wait_released), taking what arrives meanwhile.
 *
 * Receiving. A matched probe (MPI_Improbe) takes the next arrived message,
 * its size gives the allocation, and MPI_Imrecv receives into a fresh
 * message. Receives enter a FIFO in match order and leave it from the head
 * as they complete, so a large message still in transfer holds back those
 * matched after it (order is preserved) without blocking the PE. Pre-posting
 * a ring of receives for small messages was measured against this (a raw
 * ping-pong, Open MPI 4.1 over vader and tcp): no difference above the
 * noise, and it would need a second tag for large messages with an
 * announcement to keep the order, so the probe it is.
 *
 * Waiting. MPI has no way to sleep until a message arrives (Open MPI's own
 * blocking calls spin). An idle PE polls briefly, then yields, then sleeps
 * in growing steps up to MAX_SLEEP, so a co-located process (the Python
 * side of another PE, another job) gets the core. While a transfer of its
 * own is under way (a send or a receive not complete) it neither sleeps nor
 * yields, unless its host is oversubscribed (then it yields): MPI moves a
 * large message in steps that each need a progress call on both sides, and
 * a pause between steps multiplies the time (64 KiB over TCP took 25 times
 * longer with sleeps, 1 MiB 2.5 times longer with sched_yield). With a core
 * per PE this spin starves no PE of the job; it is what MPI's own blocking
 * calls do.
 *
 * Exit. The first request must win on every PE, yet two PEs may ask at the
 * same moment with different codes. Rank 0 is the arbiter: a request from
 * rank 0 decides at once; any other rank sends CTL_REQ to rank 0 and waits
 * (polling control messages only) for rank 0's CTL_DECIDE, which rank 0
 * sends to every rank when it decides. So request_exit returns with the
 * job's code known, and every rank returns that code from cp_finalize. Rank 0
 * answers in every call that can wait (poll, wait, barrier, finalize).
 *
 * Finalize. MPI requires every message to be received before MPI_Finalize,
 * and a PE leaving may still have messages in flight to and from PEs that
 * are still running. Each rank counts the messages it sent to each rank;
 * at finalize an MPI_Ialltoall tells every rank how many to expect from each
 * other, and it receives (and drops) messages until it has them all and its
 * own sends have completed. Leaving without an exit requests one (code 0):
 * the others would otherwise wait for this rank forever.
 *
 * Loading. Python loads the extension with RTLD_LOCAL, so libmpi's symbols
 * stay out of the global scope, and Open MPI's plugins (mca_pml_ob1.so ...),
 * which it dlopens itself and which leave those symbols undefined, fail to
 * load. Before MPI_Init the library that defines MPI_Init_thread is reopened
 * with RTLD_GLOBAL (found with dladdr, so no name is hard-wired).
 *
 * Failures. MPI's default error handler (errors are fatal) stays: a failed
 * MPI call, a lost peer, ends the whole job, which is what a job of one
 * program wants. Errors of our own (a message we cannot allocate memory to
 * receive, a malformed message) end it through MPI_Abort with a message.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

/* MPICH defines MPI_STATUSES_IGNORE as (MPI_Status *)1 and gives the status
 * arguments of MPI_Testsome and MPI_Testall access attributes, which GCC 12
 * reads as writing 20 bytes to an empty region. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif

#include "../machine.h"

enum { TAG_MSG = 1, TAG_CTL = 2, TAG_HEAD = 3, TAG_SEG = 4 };
enum { CTL_REQ = 1, CTL_DECIDE = 2 };

/* Bytes in front of the header so that the payload starts 64-byte aligned
 * in a 64-byte aligned block; they hold the block's capacity. Only the
 * message allocator knows of them. */
#define MSG_PREFIX 16
_Static_assert(MSG_PREFIX + sizeof(cp_msg) == 64, "payload must be 64-byte aligned");

/* Freed blocks larger than CACHE_MIN bytes are kept for reuse, in size
 * classes a quarter of a power of two apart (at most 25% unused), up to
 * CACHE_PER_CLASS blocks a class and cache_max bytes in all. Fresh memory
 * from the kernel costs a page fault and a page clearing per 4 KiB, which
 * made an 8 MiB ping-pong 10 times slower than MPI itself; the shm transport
 * avoids the same cost with its long-lived heap. 16 a class: a window of 8
 * big messages in flight each way (4 made half of them fresh memory, at
 * half the bandwidth). */
#define CACHE_MIN ((size_t)64 << 10)
#define CACHE_KMIN 16 /* log2(CACHE_MIN) */
#define CACHE_KMAX 40 /* blocks above 2^CACHE_KMAX bytes are never kept */
#define CACHE_CLASSES ((CACHE_KMAX - CACHE_KMIN + 1) * 4)
#define CACHE_PER_CLASS 16
#define CACHE_MAX_BYTES ((size_t)1 << 30)

/* Blocks of at least HUGE_MIN bytes are aligned to huge pages and asked
 * for them (MADV_HUGEPAGE: most distributions enable transparent huge pages
 * only on request, numpy asks for its arrays of 4 MiB and more). MPI moves
 * a large message between processes of one host with one copy through the
 * kernel (process_vm_readv), which pins every page of both buffers: with
 * 4 KiB pages on our side an 8 MiB ping-pong ran at a third of the speed
 * of the same between two numpy arrays. */
#define HUGE_MIN ((size_t)4 << 20)
#define HUGE_ALIGN ((size_t)2 << 20)

/* Blocks of at most SMALL_MAX bytes (up to where the big cache starts)
 * come in power-of-two classes from SMALL_MIN up and are kept for reuse,
 * up to 256 a class and SMALL_CLASS_BYTES of each: glibc's aligned
 * allocation took a tenth of a small-message ping-pong. */
#define SMALL_MIN ((size_t)128)
#define SMALL_KMIN 7 /* log2(SMALL_MIN) */
#define SMALL_MAX CACHE_MIN
#define SMALL_CLASSES 10
#define SMALL_CLASS_BYTES ((size_t)1 << 20)

typedef struct block_hdr {
    uint64_t capacity;         /* bytes of the block, prefix included */
    struct block_hdr *next;    /* in the cache */
} block_hdr;
_Static_assert(sizeof(block_hdr) <= MSG_PREFIX, "the prefix holds a block_hdr");

/* A message longer than this many bytes (header included) goes as a derived
 * datatype of BIG_BLOCK-byte blocks; CHARMPY_MPI_LARGE_BYTES lowers it so
 * the tests can take that path with small messages. */
#define LARGE_DEFAULT ((MPI_Count)INT_MAX)
#define BIG_BLOCK ((MPI_Count)1 << 20)

/* Matched receives not yet handed to the core. Beyond this many, or this
 * many bytes, the PE stops matching data (control messages still are) until
 * it polls: unmatched, a large message stays with its sender. */
#define MAX_RECVS 1024
#define MAX_RECV_BYTES ((MPI_Count)64 << 20)

/* Idle policy (see Waiting above). Polling MPI costs a few hundred
 * nanoseconds, so spinning needs no pause instruction between polls (which
 * costs as much on recent x86 and tripled the ping-pong latency). The
 * yielding phase is long because a sleeping PE notices a message only when
 * it wakes: the peer of a large transfer (8 MiB over TCP: 2 ms) is idle
 * that long and must still answer at once; yielding gives the core to any
 * other runnable process meanwhile. */
#define SPIN_SECONDS 50e-6
#define YIELD_SECONDS 5e-3
#define FIRST_SLEEP 50e-6
#define MAX_SLEEP 250e-6

typedef struct recv_ent {
    MPI_Request req;
    cp_msg *msg;      /* owned by the transport until poll hands it out */
    MPI_Count bytes;  /* header and payload (the whole payload, segments
                         included, once the head is in) */
    int src;
    int tag;          /* TAG_MSG, or TAG_HEAD: segments follow */
    int stage;        /* 0: receiving req; 1: receiving segments */
    uint64_t off;     /* stage 1: payload bytes matched so far */
    MPI_Request *sreqs; /* stage 1: the segment receives (the array stays
                           with the ring slot for reuse) */
    int nsreq, capsreq;
    int done;
} recv_ent;

/* A message sent with segments in place (sendv): its release is due when
 * all of its MPI sends have completed. */
typedef struct seg_send {
    int left;                /* MPI sends not complete */
    cp_release_fn release;
    void *arg;
    struct seg_send *next;   /* in reap_sends' list of those due */
    int *finished;           /* set when released */
} seg_send;

/* What completing a data send does: free msg, count g down (either may
 * be NULL). */
typedef struct send_ent {
    cp_msg *msg;
    seg_send *g;
} send_ent;

struct cm_machine {
    MPI_Comm comm;         /* our duplicate of MPI_COMM_WORLD */
    MPI_Comm segcomm;      /* another, for the segments of sendv */
    int me, npes;
    int we_initialized;    /* MPI_Init was ours, so MPI_Finalize is too */
    int oversubscribed;
    MPI_Count large;       /* see LARGE_DEFAULT */
    size_t max_alloc;      /* physical memory: no message can be larger */

    block_hdr *cache[CACHE_CLASSES]; /* see CACHE_MIN */
    int ncache[CACHE_CLASSES];
    block_hdr *small[SMALL_CLASSES]; /* see SMALL_MAX */
    int nsmall[SMALL_CLASSES];
    size_t cache_bytes, cache_max;

    /* Data sends not yet complete: when sreq[i] completes, sown[i] says
     * what to free or release. (Control sends are not kept: see
     * send_control.) */
    MPI_Request *sreq;
    send_ent *sown;
    int *sidx;             /* scratch for MPI_Testsome */
    int nsend, capsend;

    recv_ent *rq;          /* ring of MAX_RECVS, FIFO in match order */
    int rhead, rcount;
    MPI_Count rbytes;      /* bytes of the messages in rq */
    int nheads;            /* entries of rq with tag TAG_HEAD not done */
    uint64_t *held;        /* per source: == pass when an earlier head of
                              that source still waits for its segments */
    uint64_t pass;         /* advance_heads' pass number */

    /* Messages (data and control) sent to / received from each rank, and at
     * finalize the number each rank sent us. */
    uint64_t *sent, *recvd, *expect;

    int decided;           /* the job's exit is decided ... */
    int exit_code;         /* ... with this code */
    int requested;         /* rank != 0: our CTL_REQ went to rank 0 */
    int32_t ctl_req[2], ctl_decide[2]; /* control payloads; live as long as
                                          this struct, hence their sends */
    int *pe_host;          /* pe -> host, npes entries */
};

typedef struct idle_state {
    double start, sleep;
    double t;          /* seconds since start at the last clock reading */
    unsigned polls;
    int oversubscribed;
} idle_state;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void idle_begin(idle_state *s, int oversubscribed) {
    s->start = now();
    s->sleep = FIRST_SLEEP;
    s->t = 0;
    s->polls = 0;
    s->oversubscribed = oversubscribed;
}

/* One step of idling between two polls; `busy`: a transfer is under way.
 * Returns 0 once `timeout` seconds (timeout < 0: never) have passed since
 * idle_begin. */
static int idle_step(idle_state *s, double timeout, int busy) {
    /* Reading the clock costs as much as a poll: while spinning, only every
     * 8th step does (the timeout is then late by a few polls at most). */
    if ((++s->polls & 7) != 0 && !s->oversubscribed && s->t < SPIN_SECONDS)
        return 1;
    double t = s->t = now() - s->start;
    if (timeout >= 0 && t >= timeout)
        return 0;
    if (busy) {
        if (s->oversubscribed)
            sched_yield();
        return 1;
    }
    /* More PEs than cores: yield at once, never spin; but sleep only after
     * the same yielding phase, since a sleeping PE notices a message late
     * (4 PEs on 2 cores, sleeping after 4 yields: a broadcast and a
     * reduction took 0.9 ms instead of a few µs). */
    if (t < YIELD_SECONDS) {
        if (s->oversubscribed || t >= SPIN_SECONDS)
            sched_yield();
        return 1;
    }
    double d = s->sleep;
    if (timeout >= 0 && d > timeout - t)
        d = timeout - t;
    struct timespec ts = {0, (long)(d * 1e9)};
    nanosleep(&ts, NULL);
    s->sleep = s->sleep * 2 < MAX_SLEEP ? s->sleep * 2 : MAX_SLEEP;
    return 1;
}

#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 2, 3)))
#endif
static void fatal(cm_machine *m, const char *fmt, ...) {
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "charmpy: PE %d: mpi: %s\n", m ? m->me : -1, text);
    fflush(stderr);
    struct timespec pause = {0, 200 * 1000 * 1000}; /* see mpi_abort */
    nanosleep(&pause, NULL);
    MPI_Abort(MPI_COMM_WORLD, 1);
    _exit(1); /* MPI_Abort does not return; this is for the compiler */
}

/* ---- messages ------------------------------------------------------------ */

/* The cache class of a block of `bytes` (> CACHE_MIN) and its rounded
 * size; -1 when blocks that large are not kept. */
static int cache_class(size_t bytes, size_t *rounded) {
    int k = 63 - __builtin_clzll((unsigned long long)(bytes - 1)); /* 2^k < bytes <= 2^(k+1) */
    if (k + 1 > CACHE_KMAX)
        return -1;
    size_t q = (size_t)1 << (k - 2), mult = (bytes + q - 1) / q; /* 5..8 */
    *rounded = mult * q;
    return (k - CACHE_KMIN) * 4 + (int)(mult - 5);
}

/* The small class of a block of `bytes` (<= SMALL_MAX): the smallest
 * power of two from SMALL_MIN that holds it. */
static int small_class(size_t bytes) {
    if (bytes <= SMALL_MIN)
        return 0;
    return 64 - __builtin_clzll((unsigned long long)(bytes - 1)) - SMALL_KMIN;
}

static cp_msg *mpi_msg_alloc(cm_machine *m, size_t size) {
    /* Refused here rather than left to malloc, which overcommit lets promise
     * more than exists (and which sanitizers abort on). */
    if (size > m->max_alloc)
        return NULL;
    size_t bytes = MSG_PREFIX + sizeof(cp_msg) + size;
    block_hdr *b = NULL;
    if (bytes <= SMALL_MAX) {
        int c = small_class(bytes);
        bytes = SMALL_MIN << c;
        if ((b = m->small[c]) != NULL) {
            m->small[c] = b->next;
            m->nsmall[c]--;
        }
    } else if (bytes > CACHE_MIN) {
        size_t rounded;
        int c = cache_class(bytes, &rounded);
        if (c >= 0) {
            bytes = rounded;
            if ((b = m->cache[c]) != NULL) {
                m->cache[c] = b->next;
                m->ncache[c]--;
                m->cache_bytes -= bytes;
            }
        }
    }
    if (!b) {
        void *p;
        if (posix_memalign(&p, bytes >= HUGE_MIN ? HUGE_ALIGN : 64, bytes))
            return NULL;
        if (bytes >= HUGE_MIN)
            (void)madvise(p, bytes & ~(HUGE_ALIGN - 1), MADV_HUGEPAGE); /* a hint */
        b = p;
        b->capacity = bytes;
    }
    cp_msg *msg = (cp_msg *)((char *)b + MSG_PREFIX);
    memset(msg, 0, sizeof *msg);
    msg->size = size;
    return msg;
}

static void mpi_msg_free(cm_machine *m, cp_msg *msg) {
    block_hdr *b = (block_hdr *)((char *)msg - MSG_PREFIX);
    size_t bytes = (size_t)b->capacity, rounded;
    if (bytes <= SMALL_MAX) {
        int c = small_class(bytes);
        size_t cap = SMALL_CLASS_BYTES / bytes;
        if (m->nsmall[c] < (cap < 256 ? (int)cap : 256)) {
            b->next = m->small[c];
            m->small[c] = b;
            m->nsmall[c]++;
            return;
        }
    } else if (bytes > CACHE_MIN && m->cache_bytes + bytes <= m->cache_max) {
        int c = cache_class(bytes, &rounded);
        if (c >= 0 && rounded == bytes && m->ncache[c] < CACHE_PER_CLASS) {
            b->next = m->cache[c];
            m->cache[c] = b;
            m->ncache[c]++;
            m->cache_bytes += bytes;
            return;
        }
    }
    free(b);
}

/* How `bytes` bytes travel: `count` elements of *type. The caller frees
 * *type with MPI_Type_free when it is not MPI_BYTE (MPI lets it do so as
 * soon as the operation is posted). */
static int wire_type(cm_machine *m, MPI_Count bytes, MPI_Datatype *type, int *count) {
    if (bytes <= m->large && bytes <= INT_MAX) {
        *type = MPI_BYTE;
        *count = (int)bytes;
        return 0;
    }
    MPI_Count nblocks = bytes / BIG_BLOCK, rest = bytes % BIG_BLOCK;
    if (nblocks > INT_MAX)
        return CP_ETOOBIG;
    MPI_Datatype block;
    if (MPI_Type_contiguous((int)BIG_BLOCK, MPI_BYTE, &block) != MPI_SUCCESS)
        return CP_ESYS;
    int lens[2] = {(int)nblocks, (int)rest};
    MPI_Aint disps[2] = {0, (MPI_Aint)(nblocks * BIG_BLOCK)};
    MPI_Datatype types[2] = {block, MPI_BYTE};
    int rc = MPI_Type_create_struct(rest ? 2 : 1, lens, disps, types, type);
    MPI_Type_free(&block);
    if (rc != MPI_SUCCESS)
        return CP_ESYS;
    if (MPI_Type_commit(type) != MPI_SUCCESS) {
        MPI_Type_free(type);
        return CP_ESYS;
    }
    *count = 1;
    return 0;
}

/* ---- sending ------------------------------------------------------------- */

/* Room for n more data sends. */
static int reserve_send(cm_machine *m, int n) {
    if (m->capsend - m->nsend >= n)
        return 0;
    if (n > INT_MAX / 4 - m->nsend)
        return CP_ENOMEM;
    int cap = m->capsend ? m->capsend : 64;
    while (cap - m->nsend < n)
        cap *= 2;
    MPI_Request *r = realloc(m->sreq, (size_t)cap * sizeof *r);
    if (!r)
        return CP_ENOMEM;
    m->sreq = r;
    send_ent *s = realloc(m->sown, (size_t)cap * sizeof *s);
    if (!s)
        return CP_ENOMEM;
    m->sown = s;
    int *x = realloc(m->sidx, (size_t)cap * sizeof *x);
    if (!x)
        return CP_ENOMEM;
    m->sidx = x;
    m->capsend = cap;
    return 0;
}

/* Frees the messages whose sends completed, and releases the segments of
 * those sent with sendv once all their sends have. The releases come last,
 * with the send table consistent again: a release function may send. */
static void reap_sends(cm_machine *m) {
    if (m->nsend == 0)
        return;
    int n = 0;
    MPI_Testsome(m->nsend, m->sreq, &n, m->sidx, MPI_STATUSES_IGNORE);
    if (n == MPI_UNDEFINED || n == 0)
        return;
    seg_send *due = NULL;
    for (int i = 0; i < n; i++) {
        send_ent *o = &m->sown[m->sidx[i]];
        if (o->msg)
            mpi_msg_free(m, o->msg);
        if (o->g && --o->g->left == 0) {
            o->g->next = due;
            due = o->g;
        }
    }
    int j = 0;
    for (int i = 0; i < m->nsend; i++)
        if (m->sreq[i] != MPI_REQUEST_NULL) {
            m->sreq[j] = m->sreq[i];
            m->sown[j] = m->sown[i];
            j++;
        }
    m->nsend = j;
    while (due) {
        seg_send *g = due;
        due = g->next;
        if (g->finished)
            *g->finished = 1;
        if (g->release)
            g->release(g->arg);
        free(g);
    }
}

/* Posts one data send of `bytes` bytes at buf; what completing it does is
 * `own`. Room must have been reserved. */
static int post_send(cm_machine *m, const void *buf, MPI_Count bytes, int pe, int tag,
                     MPI_Comm comm, send_ent own) {
    MPI_Datatype type;
    int count;
    int rc = wire_type(m, bytes, &type, &count);
    if (rc)
        return rc;
    int err = MPI_Isend(buf, count, type, pe, tag, comm, &m->sreq[m->nsend]);
    if (type != MPI_BYTE)
        MPI_Type_free(&type);
    if (err != MPI_SUCCESS)
        return CP_ESYS;
    m->sown[m->nsend++] = own;
    m->sent[pe]++;
    return 0;
}

static int mpi_send(cm_machine *m, int pe, cp_msg *msg) {
    /* Room first: once MPI_Isend has the message, failing would leave it
     * owned by both MPI and the caller. */
    int rc = reserve_send(m, 1);
    if (rc)
        return rc;
    rc = post_send(m, msg, (MPI_Count)(sizeof(cp_msg) + msg->size), pe, TAG_MSG, m->comm,
                   (send_ent){msg, NULL});
    if (rc)
        return rc;
    /* From here the message is ours (the transport's). Most small sends
     * are complete already: free at once rather than keep the entry. */
    int done = 0;
    MPI_Test(&m->sreq[m->nsend - 1], &done, MPI_STATUS_IGNORE);
    if (done) {
        mpi_msg_free(m, msg);
        m->nsend--;
    }
    return 0;
}

/* The head (header and msg's own payload, with `size` saying the whole
 * length) goes with TAG_HEAD on comm, then each segment as one message of
 * its own with TAG_SEG on segcomm, from the caller's memory: contiguous, so
 * MPI moves it with its own fastest means (a single copy between processes
 * of one host). The receiver learns each segment's length from its probe.
 * Only sizes can make a send fail, and they are checked before anything is
 * posted. */
static void wait_released(cm_machine *m, const int *finished);

static int mpi_sendv(cm_machine *m, int pe, cp_msg *msg, const cp_seg *segs, int nseg,
                     uint64_t total, cp_release_fn release, void *arg) {
    MPI_Count limit = (MPI_Count)INT_MAX * BIG_BLOCK;
    if (nseg < 1 || (MPI_Count)(sizeof(cp_msg) + msg->size) > limit)
        return CP_EINVAL;
    for (int i = 0; i < nseg; i++)
        if (segs[i].len == 0 || (MPI_Count)segs[i].len > limit)
            return segs[i].len ? CP_ETOOBIG : CP_EINVAL;
    int rc = reserve_send(m, 1 + nseg);
    if (rc)
        return rc;
    seg_send *g = malloc(sizeof *g);
    if (!g)
        return CP_ENOMEM;
    *g = (seg_send){1 + nseg, release, arg, NULL, NULL};
    MPI_Count head = (MPI_Count)(sizeof(cp_msg) + msg->size);
    msg->size = total;
    if (post_send(m, msg, head, pe, TAG_HEAD, m->comm, (send_ent){msg, g}))
        fatal(m, "MPI_Isend of a %lld-byte message head to PE %d failed", (long long)head, pe);
    for (int i = 0; i < nseg; i++)
        if (post_send(m, segs[i].base, (MPI_Count)segs[i].len, pe, TAG_SEG, m->segcomm,
                      (send_ent){NULL, g}))
            fatal(m, "MPI_Isend of a %zu-byte segment to PE %d failed", segs[i].len, pe);
    int finished = 0;
    g->finished = &finished;
    wait_released(m, &finished);
    return 0;
}

/* A control message: 8 bytes from a buffer in *m, so the request can be
 * released at once (the finalize count guarantees it was received). */
static void send_control(cm_machine *m, int pe, int32_t *payload) {
    MPI_Request req;
    MPI_Isend(payload, 2, MPI_INT32_T, pe, TAG_CTL, m->comm, &req);
    MPI_Request_free(&req);
    m->sent[pe]++;
}

/* ---- exit protocol ------------------------------------------------------- */

/* Rank 0 only: the job's exit code is `code`; tell every rank. */
static void decide(cm_machine *m, int code) {
    if (m->decided)
        return;
    m->decided = 1;
    m->exit_code = code;
    m->ctl_decide[0] = CTL_DECIDE;
    m->ctl_decide[1] = code;
    for (int pe = 1; pe < m->npes; pe++)
        send_control(m, pe, m->ctl_decide);
}

static void recv_control(cm_machine *m, MPI_Message *mh, int src) {
    int32_t c[2];
    MPI_Mrecv(c, 2, MPI_INT32_T, mh, MPI_STATUS_IGNORE);
    if (c[0] == CTL_REQ && m->me == 0) {
        decide(m, c[1]); /* a later request finds the job decided: it lost */
    } else if (c[0] == CTL_DECIDE && src == 0) {
        if (!m->decided) {
            m->decided = 1;
            m->exit_code = c[1];
        }
    } else {
        fatal(m, "control message %d from PE %d makes no sense here", (int)c[0], src);
    }
}

static void take_data(cm_machine *m);

static void mpi_request_exit(cm_machine *m, int code) {
    if (m->decided)
        return;
    if (m->me == 0) {
        decide(m, code);
        return;
    }
    if (!m->requested) {
        m->requested = 1;
        m->ctl_req[0] = CTL_REQ;
        m->ctl_req[1] = code;
        send_control(m, 0, m->ctl_req);
    }
    /* Wait for the arbiter, taking data meanwhile (a peer may wait in
     * sendv for this PE). */
    idle_state idle;
    idle_begin(&idle, m->oversubscribed);
    for (;;) {
        take_data(m);
        if (m->decided)
            return;
        reap_sends(m);
        idle_step(&idle, -1, m->nsend > 0);
    }
}

static int mpi_exit_requested(cm_machine *m, int *code) {
    if (!m->decided)
        return 0;
    *code = m->exit_code;
    return 1;
}

/* ---- receiving ----------------------------------------------------------- */

static void match_message(cm_machine *m, MPI_Message *mh, MPI_Status *st) {
    int src = st->MPI_SOURCE;
    MPI_Count bytes = 0;
    MPI_Get_elements_x(st, MPI_BYTE, &bytes);
    if (bytes == MPI_UNDEFINED || bytes < (MPI_Count)sizeof(cp_msg))
        fatal(m, "a message of %lld bytes from PE %d is shorter than a header",
              (long long)bytes, src);
    cp_msg *msg = mpi_msg_alloc(m, (size_t)(bytes - (MPI_Count)sizeof(cp_msg)));
    /* The message is matched and must be received; with no memory for it
     * the job cannot go on correctly (dropping it would break delivery). */
    if (!msg)
        fatal(m, "out of memory for a %lld-byte message from PE %d",
              (long long)bytes, src);
    MPI_Datatype type;
    int count;
    if (wire_type(m, bytes, &type, &count))
        fatal(m, "a %lld-byte message from PE %d is too large for MPI",
              (long long)bytes, src);
    recv_ent *e = &m->rq[(m->rhead + m->rcount) % MAX_RECVS];
    MPI_Imrecv(msg, count, type, mh, &e->req);
    if (type != MPI_BYTE)
        MPI_Type_free(&type);
    e->msg = msg;
    e->bytes = bytes;
    e->src = src;
    e->tag = st->MPI_TAG;
    e->stage = 0;
    e->nsreq = 0;
    e->done = 0;
    m->rcount++;
    m->rbytes += bytes;
}

/* Matches the messages that have arrived: control messages are handled,
 * data messages enter the receive FIFO (see MAX_RECVS). `just_one`: stop
 * after the first data message (wait needs no more, and one more probe
 * that finds nothing costs as much as the message). `eager`: match data
 * beyond MAX_RECV_BYTES too (a PE waiting in sendv must not leave a peer
 * that waits on it in turn without its data). */
static void progress(cm_machine *m, int just_one, int eager) {
    for (;;) {
        int flag = 0;
        MPI_Message mh;
        MPI_Status st;
        int room = m->rcount == 0 ||
                   (m->rcount < MAX_RECVS && (eager || m->rbytes < MAX_RECV_BYTES));
        int tag = room ? MPI_ANY_TAG : TAG_CTL;
        MPI_Improbe(MPI_ANY_SOURCE, tag, m->comm, &flag, &mh, &st);
        if (!flag)
            return;
        m->recvd[st.MPI_SOURCE]++;
        if (st.MPI_TAG == TAG_MSG || st.MPI_TAG == TAG_HEAD) {
            m->nheads += st.MPI_TAG == TAG_HEAD;
            match_message(m, &mh, &st);
            if (just_one)
                return;
        } else if (st.MPI_TAG == TAG_CTL)
            recv_control(m, &mh, st.MPI_SOURCE);
        else
            fatal(m, "message with unknown tag %d from PE %d", st.MPI_TAG,
                  st.MPI_SOURCE);
    }
}

/* The head of a sendv message has arrived in e: move it into a message
 * of the whole size, whose segments are received next. */
static void grow_to_total(cm_machine *m, recv_ent *e) {
    uint64_t head = (uint64_t)e->bytes - sizeof(cp_msg), total = e->msg->size;
    if (total <= head || total > m->max_alloc)
        fatal(m, "message from PE %d: its header says %llu payload bytes, its head "
              "has %llu and segments must follow", e->src, (unsigned long long)total,
              (unsigned long long)head);
    cp_msg *full = mpi_msg_alloc(m, (size_t)total);
    if (!full)
        fatal(m, "out of memory for a %llu-byte message from PE %d",
              (unsigned long long)total, e->src);
    memcpy(full, e->msg, sizeof(cp_msg) + (size_t)head);
    mpi_msg_free(m, e->msg);
    e->msg = full;
    e->off = head;
    e->stage = 1;
    m->rbytes += (MPI_Count)(total - head);
    e->bytes += (MPI_Count)(total - head);
}

/* Matches the segments of e's sender that have arrived, each at the next
 * multiple of 64 bytes of e's payload (zeroing the gap). The caller makes
 * sure that every earlier head of that sender has all its segments matched:
 * a sender's segments arrive in the order it sent them, so the next ones
 * are e's. */
static void match_segments(cm_machine *m, recv_ent *e) {
    char *p = cp_msg_data(e->msg);
    while (e->off < e->msg->size) {
        int flag = 0;
        MPI_Message mh;
        MPI_Status st;
        MPI_Improbe(e->src, TAG_SEG, m->segcomm, &flag, &mh, &st);
        if (!flag)
            return;
        m->recvd[e->src]++;
        MPI_Count len = 0;
        MPI_Get_elements_x(&st, MPI_BYTE, &len);
        uint64_t at = (e->off + 63) & ~(uint64_t)63;
        if (len == MPI_UNDEFINED || len <= 0 || at + (uint64_t)len > e->msg->size)
            fatal(m, "a %lld-byte segment from PE %d does not fit its %llu-byte message "
                  "at offset %llu", (long long)len, e->src,
                  (unsigned long long)e->msg->size, (unsigned long long)at);
        if (e->nsreq == e->capsreq) {
            int cap = e->capsreq ? 2 * e->capsreq : 4;
            MPI_Request *r = realloc(e->sreqs, (size_t)cap * sizeof *r);
            if (!r)
                fatal(m, "out of memory for the segments of a message from PE %d", e->src);
            e->sreqs = r;
            e->capsreq = cap;
        }
        MPI_Datatype type;
        int count;
        if (wire_type(m, len, &type, &count))
            fatal(m, "a %lld-byte segment from PE %d is too large for MPI", (long long)len,
                  e->src);
        memset(p + e->off, 0, (size_t)(at - e->off));
        MPI_Imrecv(p + at, count, type, &mh, &e->sreqs[e->nsreq++]);
        if (type != MPI_BYTE)
            MPI_Type_free(&type);
        e->off = at + (uint64_t)len;
    }
}

/* Moves every sendv message in the FIFO along, wherever it stands: heads
 * received, segments matched in each sender's order, completion tested.
 * Not only the FIFO's head: a PE waiting in sendv takes the data of a peer
 * that waits in sendv too, whatever else its FIFO holds. */
static void advance_heads(cm_machine *m) {
    if (m->nheads == 0)
        return;
    m->pass++;
    for (int i = 0; i < m->rcount; i++) {
        recv_ent *e = &m->rq[(m->rhead + i) % MAX_RECVS];
        if (e->tag != TAG_HEAD || e->done || m->held[e->src] == m->pass)
            continue;
        if (e->stage == 0) {
            int flag = 0;
            MPI_Test(&e->req, &flag, MPI_STATUS_IGNORE);
            if (!flag) {
                m->held[e->src] = m->pass; /* its segments come first */
                continue;
            }
            grow_to_total(m, e);
        }
        match_segments(m, e);
        if (e->off < e->msg->size) {
            m->held[e->src] = m->pass;
            continue;
        }
        int all = 0;
        MPI_Testall(e->nsreq, e->sreqs, &all, MPI_STATUSES_IGNORE);
        if (all) {
            e->nsreq = 0;
            e->done = 1;
            m->nheads--;
        }
    }
}

static int head_ready(cm_machine *m) {
    if (m->rcount == 0)
        return 0;
    recv_ent *e = &m->rq[m->rhead];
    if (e->tag == TAG_HEAD) {
        if (!e->done)
            advance_heads(m);
        return e->done;
    }
    if (!e->done) {
        MPI_Test(&e->req, &e->done, MPI_STATUS_IGNORE);
        if (e->done && e->msg->size != (uint64_t)(e->bytes - (MPI_Count)sizeof(cp_msg)))
            fatal(m, "message from PE %d: %lld bytes arrived, its header says "
                  "%llu payload bytes", e->src, (long long)e->bytes,
                  (unsigned long long)e->msg->size);
    }
    return e->done;
}

/* The head of the FIFO, which must be ready; the caller owns it. */
static cp_msg *pop_head(cm_machine *m) {
    cp_msg *msg = m->rq[m->rhead].msg;
    m->rbytes -= m->rq[m->rhead].bytes;
    m->rhead = (m->rhead + 1) % MAX_RECVS;
    m->rcount--;
    return msg;
}

/* Matches every data message that has arrived and moves sendv messages
 * along, without handing anything out: what a PE does while it waits in
 * the transport, so that a peer waiting for it to take its data is not
 * stuck. */
static void take_data(cm_machine *m) {
    progress(m, 0, 1);
    advance_heads(m);
}

/* sendv's wait: until its sends have completed (see Sending in place). */
static void wait_released(cm_machine *m, const int *finished) {
    idle_state idle;
    idle_begin(&idle, m->oversubscribed);
    for (;;) {
        reap_sends(m);
        if (*finished)
            return;
        take_data(m);
        idle_step(&idle, -1, 1);
    }
}

/* Hands out what the FIFO has ready; only when that is nothing does it
 * match more (the scheduler polls again at once after handling a batch, so
 * nothing waits long, and a ping-pong saves a probe per message). */
static int mpi_poll(cm_machine *m, cp_msg **out, int max) {
    reap_sends(m);
    int n = 0;
    while (n < max && head_ready(m))
        out[n++] = pop_head(m);
    if (n > 0)
        return n;
    progress(m, 0, 0);
    while (n < max && head_ready(m))
        out[n++] = pop_head(m);
    return n;
}

static void mpi_wait(cm_machine *m, double timeout) {
    if (timeout == 0)
        return;
    idle_state idle;
    idle_begin(&idle, m->oversubscribed);
    do {
        reap_sends(m);
        progress(m, 1, 0);
        if (head_ready(m) || m->decided)
            return;
    } while (idle_step(&idle, timeout, m->nsend > 0 || m->rcount > 0));
}

static int mpi_barrier(cm_machine *m) {
    MPI_Request req;
    if (MPI_Ibarrier(m->comm, &req) != MPI_SUCCESS)
        return CP_ESYS;
    /* Not MPI_Barrier: Open MPI spins in it, starving co-located processes,
     * and rank 0 must keep answering exit requests (a rank waiting for the
     * decision cannot reach the barrier). */
    idle_state idle;
    idle_begin(&idle, m->oversubscribed);
    for (;;) {
        int done = 0;
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (done)
            return 0;
        take_data(m);
        idle_step(&idle, -1, m->nsend > 0 || m->rcount > 0);
    }
}

static void mpi_abort(cm_machine *m, int code, const char *message) {
    /* cp_abort printed the message; mpirun names the rank and ends the rest
     * of the job. */
    (void)m;
    (void)message;
    fflush(stdout);
    fflush(stderr);
    /* MPICH's launcher may end the job before it forwarded what this rank
     * wrote last (the message saying why): give it a moment to read it. */
    struct timespec pause = {0, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    MPI_Abort(MPI_COMM_WORLD, code);
    _exit(code);
}

/* ---- start and end ------------------------------------------------------- */

/* See "Loading" above. The handle is never closed: libmpi stays global for
 * the life of the process. */
static void make_mpi_global(void) {
    Dl_info info;
    if (!dladdr((const void *)&MPI_Init_thread, &info) || !info.dli_fname)
        return;
    if (!dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD))
        (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL);
}

static int count_cpus(cpu_set_t *set) {
    if (sched_getaffinity(0, sizeof *set, set) == 0)
        return CPU_COUNT(set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    CPU_ZERO(set);
    for (long i = 0; i < n && i < CPU_SETSIZE; i++)
        CPU_SET((int)i, set);
    return n > 0 ? (int)n : 1;
}

/* Groups the ranks into hosts by processor name (CHARMPY_HOSTNAME
 * overrides it, to lay out several hosts on one machine in tests), numbers
 * the hosts by their lowest rank, and counts the cores each host offers the
 * job: the union of its ranks' affinity masks (mpirun binds each rank to a
 * core or socket, so one rank's own mask says little). */
static int find_hosts(cm_machine *m, cm_job_info *info) {
    char name[MPI_MAX_PROCESSOR_NAME + 1] = {0};
    const char *fake = getenv("CHARMPY_HOSTNAME");
    if (fake && *fake) {
        snprintf(name, sizeof name, "%s", fake);
    } else {
        int len = 0;
        MPI_Get_processor_name(name, &len);
        name[len < 0 ? 0 : len] = '\0';
    }
    int mylen = (int)strlen(name) + 1, maxlen = 0;
    MPI_Allreduce(&mylen, &maxlen, 1, MPI_INT, MPI_MAX, m->comm);
    char *all = calloc((size_t)m->npes, (size_t)maxlen);
    char *mine = calloc(1, (size_t)maxlen);
    m->pe_host = malloc((size_t)m->npes * sizeof *m->pe_host);
    int *first = malloc((size_t)m->npes * sizeof *first); /* host -> lowest rank */
    if (!all || !mine || !m->pe_host || !first) {
        free(all);
        free(mine);
        free(first);
        return CP_ENOMEM;
    }
    memcpy(mine, name, (size_t)mylen);
    MPI_Allgather(mine, maxlen, MPI_CHAR, all, maxlen, MPI_CHAR, m->comm);
    /* Quadratic in the number of hosts, once: fine for the host counts MPI
     * jobs have. */
    int nhosts = 0;
    for (int pe = 0; pe < m->npes; pe++) {
        const char *n = all + (size_t)pe * (size_t)maxlen;
        int h = 0;
        while (h < nhosts && strcmp(all + (size_t)first[h] * (size_t)maxlen, n) != 0)
            h++;
        if (h == nhosts)
            first[nhosts++] = pe;
        m->pe_host[pe] = h;
    }
    free(all);
    free(mine);
    free(first);
    info->num_hosts = nhosts;
    info->my_host = m->pe_host[m->me];
    info->pe_host = m->pe_host;

    MPI_Comm local;
    if (MPI_Comm_split(m->comm, info->my_host, m->me, &local) != MPI_SUCCESS)
        return CP_ESYS;
    int nlocal = 1;
    MPI_Comm_size(local, &nlocal);
    cpu_set_t set, uni;
    count_cpus(&set);
    MPI_Allreduce(&set, &uni, (int)(sizeof set / sizeof(unsigned long)),
                  MPI_UNSIGNED_LONG, MPI_BOR, local);
    MPI_Comm_free(&local);
    int cpus = CPU_COUNT(&uni);
    info->num_cpus = cpus > 0 ? cpus : 1;
    m->oversubscribed = nlocal > info->num_cpus;
    info->oversubscribed = m->oversubscribed;
    return 0;
}

static MPI_Count large_from_env(void) {
    const char *s = getenv("CHARMPY_MPI_LARGE_BYTES");
    if (!s || !*s)
        return LARGE_DEFAULT;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < (long long)sizeof(cp_msg) || v > INT_MAX) {
        fprintf(stderr, "charmpy: CHARMPY_MPI_LARGE_BYTES='%s' is not a byte "
                "count between %zu and %d; using %d\n", s, sizeof(cp_msg),
                INT_MAX, INT_MAX);
        return LARGE_DEFAULT;
    }
    return (MPI_Count)v;
}

static void free_machine(cm_machine *m) {
    for (int c = 0; c < CACHE_CLASSES; c++)
        while (m->cache[c]) {
            block_hdr *b = m->cache[c];
            m->cache[c] = b->next;
            free(b);
        }
    for (int c = 0; c < SMALL_CLASSES; c++)
        while (m->small[c]) {
            block_hdr *b = m->small[c];
            m->small[c] = b->next;
            free(b);
        }
    free(m->sreq);
    free(m->sown);
    for (int i = 0; m->rq && i < MAX_RECVS; i++)
        free(m->rq[i].sreqs);
    free(m->held);
    free(m->sidx);
    free(m->rq);
    free(m->sent);
    free(m->recvd);
    free(m->expect);
    free(m->pe_host);
    free(m);
}

static int mpi_init(cm_machine **out, cm_job_info *info) {
    int finalized = 0, initialized = 0;
    MPI_Finalized(&finalized);
    if (finalized) {
        fprintf(stderr, "charmpy: MPI was already finalized in this process and "
                "cannot start again: under mpi a process runs one job\n");
        return CP_ESTATE;
    }
    cm_machine *m = calloc(1, sizeof *m);
    if (!m)
        return CP_ENOMEM;
    MPI_Initialized(&initialized);
    if (!initialized) {
        make_mpi_global();
        /* FUNNELED: only the PE's thread calls MPI, but the program may have
         * other threads (Python's). */
        int provided = 0;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            fprintf(stderr, "charmpy: MPI_Init_thread failed\n");
            free(m);
            return CP_ESYS;
        }
        m->we_initialized = 1;
    }
    int rc = CP_ENOMEM;
    if (MPI_Comm_dup(MPI_COMM_WORLD, &m->comm) != MPI_SUCCESS) {
        rc = CP_ESYS;
        goto fail_nocomm;
    }
    if (MPI_Comm_dup(MPI_COMM_WORLD, &m->segcomm) != MPI_SUCCESS) {
        MPI_Comm_free(&m->comm);
        rc = CP_ESYS;
        goto fail_nocomm;
    }
    MPI_Comm_rank(m->comm, &m->me);
    MPI_Comm_size(m->comm, &m->npes);
    m->large = large_from_env();
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    m->max_alloc = pages > 0 && page > 0 && (uint64_t)pages <= SIZE_MAX / (uint64_t)page
                       ? (size_t)pages * (size_t)page : SIZE_MAX - 64;
    if (m->max_alloc > SIZE_MAX - 64)
        m->max_alloc = SIZE_MAX - 64;
    m->cache_max = m->max_alloc / 16 < CACHE_MAX_BYTES ? m->max_alloc / 16 : CACHE_MAX_BYTES;
    m->rq = calloc(MAX_RECVS, sizeof *m->rq);
    m->sent = calloc((size_t)m->npes, sizeof *m->sent);
    m->recvd = calloc((size_t)m->npes, sizeof *m->recvd);
    m->expect = calloc((size_t)m->npes, sizeof *m->expect);
    m->held = calloc((size_t)m->npes, sizeof *m->held);
    if (!m->rq || !m->sent || !m->recvd || !m->expect || !m->held || reserve_send(m, 1))
        goto fail;
    rc = find_hosts(m, info);
    if (rc)
        goto fail;
    info->my_pe = m->me;
    info->num_pes = m->npes;
    *out = m;
    return 0;
fail:
    MPI_Comm_free(&m->comm);
    MPI_Comm_free(&m->segcomm);
fail_nocomm:
    fprintf(stderr, "charmpy: PE %d: cannot start the mpi machine layer: %s\n",
            m->me, rc == CP_ENOMEM ? "out of memory" : "an MPI call failed");
    if (m->we_initialized)
        MPI_Abort(MPI_COMM_WORLD, 1); /* the other ranks wait in collectives */
    free_machine(m);
    return rc;
}

/* Takes whatever arrives and drops it (see Finalize above). */
static void drain(cm_machine *m) {
    reap_sends(m);
    progress(m, 0, 0);
    while (head_ready(m))
        mpi_msg_free(m, pop_head(m));
}

static int all_received(cm_machine *m) {
    for (int pe = 0; pe < m->npes; pe++)
        if (m->recvd[pe] < m->expect[pe])
            return 0;
    return 1;
}

static int mpi_finalize(cm_machine *m) {
    if (!m->decided)
        mpi_request_exit(m, 0);
    /* When the job's code is not 0, mpirun kills every rank still running
     * as soon as the first one exits: what this PE printed must be out
     * before the collectives below let any rank go. */
    fflush(stdout);
    fflush(stderr);
    MPI_Request req;
    MPI_Ialltoall(m->sent, 1, MPI_UINT64_T, m->expect, 1, MPI_UINT64_T, m->comm, &req);
    idle_state idle;
    idle_begin(&idle, m->oversubscribed);
    for (;;) {
        int done = 0;
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (done)
            break;
        drain(m);
        idle_step(&idle, -1, m->nsend > 0 || m->rcount > 0);
    }
    idle_begin(&idle, m->oversubscribed);
    for (;;) {
        drain(m);
        if (m->nsend == 0 && m->rcount == 0 && all_received(m))
            break;
        idle_step(&idle, -1, m->nsend > 0 || m->rcount > 0);
    }
    MPI_Comm_free(&m->comm);
    MPI_Comm_free(&m->segcomm);
    int rc = 0;
    if (m->we_initialized && MPI_Finalize() != MPI_SUCCESS)
        rc = CP_ESYS;
    free_machine(m);
    return rc;
}

static const cm_ops mpi_ops = {
    .version = CM_OPS_VERSION,
    .name = "mpi",
    .init = mpi_init,
    .msg_alloc = mpi_msg_alloc,
    .msg_free = mpi_msg_free,
    .send = mpi_send,
    .sendv = mpi_sendv,
    .poll = mpi_poll,
    .wait = mpi_wait,
    .barrier = mpi_barrier,
    .request_exit = mpi_request_exit,
    .exit_requested = mpi_exit_requested,
    .abort = mpi_abort,
    .finalize = mpi_finalize,
};

const cm_ops *cm_mpi_ops(void) { return &mpi_ops; }
