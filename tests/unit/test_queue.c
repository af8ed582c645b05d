/*
 * Unit tests of the shared-memory MPSC queue (src/machine/shm/queue.h).
 *
 * The queue links nodes by offsets from a region base, so every test lays
 * out its own region: the queue at QUEUE_OFF, nodes from NODE_OFF on. Offset
 * 0 is never a node (it means "none").
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "machine/shm/queue.h"
#include "unit_test.h"

#define QUEUE_OFF 128u
#define NODE_OFF 4096u

/* A test node: the queue link first, then what the producer publishes. */
typedef struct tnode {
    cm_qnode q;
    uint32_t producer;
    uint32_t seq;
} tnode;

_Static_assert(sizeof(tnode) == 16, "tnode is expected to be 16 bytes");

static char *region_new(size_t nodes) {
    size_t bytes = NODE_OFF + nodes * sizeof(tnode);
    bytes = (bytes + 4095) / 4096 * 4096;
    char *base = aligned_alloc(4096, bytes);
    if (base)
        memset(base, 0, bytes);
    return base;
}

static cm_queue *queue_of(char *base) { return (cm_queue *)(base + QUEUE_OFF); }

static uint64_t node_off(size_t i) { return NODE_OFF + i * sizeof(tnode); }

static tnode *node_at(char *base, uint64_t off) { return (tnode *)(base + off); }

static int test_empty(void) {
    char *base = region_new(4);
    UT_CHECK(base, "out of memory");
    cm_queue *q = queue_of(base);
    cm_queue_init(q, base);
    UT_CHECK(cm_queue_maybe_nonempty(q, base) == 0,
             "a fresh queue claims to be non-empty");
    for (int i = 0; i < 5; i++)
        UT_CHECK(cm_queue_pop(q, base) == 0, "pop #%d of an empty queue", i);
    free(base);
    return 0;
}

static int test_fifo(void) {
    enum { N = 10000 };
    char *base = region_new(N);
    UT_CHECK(base, "out of memory");
    cm_queue *q = queue_of(base);
    cm_queue_init(q, base);
    for (uint32_t i = 0; i < N; i++) {
        node_at(base, node_off(i))->seq = i;
        cm_queue_push(q, base, node_off(i));
        UT_CHECK(cm_queue_maybe_nonempty(q, base),
                 "queue empty right after push %u", i);
    }
    for (uint32_t i = 0; i < N; i++) {
        uint64_t off = cm_queue_pop(q, base);
        UT_CHECK(off == node_off(i), "pop %u returned offset %llu, expected %llu",
                 i, (unsigned long long)off, (unsigned long long)node_off(i));
        UT_CHECK(node_at(base, off)->seq == i, "node content changed");
    }
    UT_CHECK(cm_queue_pop(q, base) == 0, "pop after draining returned a node");
    UT_CHECK(cm_queue_pop(q, base) == 0, "second pop after draining");
    UT_CHECK(!cm_queue_maybe_nonempty(q, base), "drained queue claims non-empty");
    free(base);
    return 0;
}

/* One node in, one node out, many times, reusing the same node: the path
 * where the consumer must re-insert the stub to hand out the last node. */
static int test_single_node_cycles(void) {
    char *base = region_new(2);
    UT_CHECK(base, "out of memory");
    cm_queue *q = queue_of(base);
    cm_queue_init(q, base);
    for (int i = 0; i < 1000; i++) {
        uint64_t n = node_off((size_t)(i & 1));
        cm_queue_push(q, base, n);
        uint64_t got = cm_queue_pop(q, base);
        UT_CHECK(got == n, "cycle %d: popped %llu, pushed %llu", i,
                 (unsigned long long)got, (unsigned long long)n);
        UT_CHECK(cm_queue_pop(q, base) == 0, "cycle %d: queue not empty", i);
        UT_CHECK(!cm_queue_maybe_nonempty(q, base),
                 "cycle %d: maybe_nonempty after drain", i);
    }
    free(base);
    return 0;
}

/* Random pushes and pops against a model FIFO; popped nodes are reused. */
static int test_interleaved(void) {
    enum { NODES = 512, OPS = 200000 };
    char *base = region_new(NODES);
    UT_CHECK(base, "out of memory");
    cm_queue *q = queue_of(base);
    cm_queue_init(q, base);
    uint64_t model[NODES];
    size_t mhead = 0, mlen = 0;
    uint64_t free_nodes[NODES];
    size_t nfree = NODES;
    for (size_t i = 0; i < NODES; i++)
        free_nodes[i] = node_off(i);
    uint64_t rng = 42;
    uint32_t seq = 0;
    for (int op = 0; op < OPS; op++) {
        /* Drift between mostly pushing and mostly popping so the queue
         * goes through long and empty stretches. */
        int push_bias = ((op / 5000) & 1) ? 70 : 30;
        int do_push = nfree > 0 && (int)(ut_rand(&rng) % 100) < push_bias;
        if (do_push) {
            uint64_t n = free_nodes[--nfree];
            node_at(base, n)->seq = seq++;
            cm_queue_push(q, base, n);
            model[(mhead + mlen) % NODES] = n;
            mlen++;
        } else {
            uint64_t got = cm_queue_pop(q, base);
            if (mlen == 0) {
                UT_CHECK(got == 0, "op %d: pop of empty queue returned %llu", op,
                         (unsigned long long)got);
                continue;
            }
            uint64_t want = model[mhead];
            UT_CHECK(got == want, "op %d: popped %llu, expected %llu", op,
                     (unsigned long long)got, (unsigned long long)want);
            mhead = (mhead + 1) % NODES;
            mlen--;
            free_nodes[nfree++] = got;
        }
        UT_CHECK((cm_queue_maybe_nonempty(q, base) != 0) == (mlen != 0),
                 "op %d: maybe_nonempty disagrees with %zu queued nodes", op,
                 mlen);
    }
    free(base);
    return 0;
}

/* The queue must work when producer and consumer see the region at
 * different addresses, as two processes mapping one segment do. */
static int test_two_mappings(void) {
    enum { N = 1000 };
    size_t bytes = (NODE_OFF + N * sizeof(tnode) + 4095) / 4096 * 4096;
    int fd = memfd_create("test_queue", 0);
    UT_CHECK(fd >= 0, "memfd_create failed");
    UT_CHECK(ftruncate(fd, (off_t)bytes) == 0, "ftruncate failed");
    char *a = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *b = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    UT_CHECK(a != MAP_FAILED && b != MAP_FAILED && a != b, "mmap failed");
    cm_queue_init(queue_of(a), a);
    for (uint32_t i = 0; i < N; i++) {
        node_at(b, node_off(i))->seq = i * 3;
        cm_queue_push(queue_of(b), b, node_off(i));
    }
    for (uint32_t i = 0; i < N; i++) {
        uint64_t off = cm_queue_pop(queue_of(a), a);
        UT_CHECK(off == node_off(i), "pop %u via the other mapping: %llu", i,
                 (unsigned long long)off);
        UT_CHECK(node_at(a, off)->seq == i * 3, "content via other mapping");
    }
    UT_CHECK(cm_queue_pop(queue_of(a), a) == 0, "not empty at the end");
    munmap(a, bytes);
    munmap(b, bytes);
    return 0;
}

/* ---- many producers, one consumer -------------------------------------- */

enum { MT_PRODUCERS = 4, MT_PER_PRODUCER = 200000 };

typedef struct mt_arg {
    char *base;
    uint32_t id;
    _Atomic int *go;
} mt_arg;

static void *mt_producer(void *p) {
    mt_arg *a = p;
    cm_queue *q = queue_of(a->base);
    while (!atomic_load_explicit(a->go, memory_order_acquire))
        sched_yield();
    for (uint32_t i = 0; i < MT_PER_PRODUCER; i++) {
        uint64_t off = node_off((size_t)a->id * MT_PER_PRODUCER + i);
        tnode *n = node_at(a->base, off);
        /* Plain stores: the push must publish them to the consumer. */
        n->producer = a->id;
        n->seq = i;
        cm_queue_push(q, a->base, off);
        if ((i & 1023) == 0)
            sched_yield();
    }
    return NULL;
}

static int test_mpsc_threads(void) {
    const size_t total = (size_t)MT_PRODUCERS * MT_PER_PRODUCER;
    char *base = region_new(total);
    UT_CHECK(base, "out of memory");
    cm_queue *q = queue_of(base);
    cm_queue_init(q, base);
    _Atomic int go = 0;
    pthread_t th[MT_PRODUCERS];
    mt_arg args[MT_PRODUCERS];
    for (uint32_t t = 0; t < MT_PRODUCERS; t++) {
        args[t] = (mt_arg){base, t, &go};
        UT_CHECK(pthread_create(&th[t], NULL, mt_producer, &args[t]) == 0,
                 "pthread_create");
    }
    atomic_store_explicit(&go, 1, memory_order_release);

    int64_t next_seq[MT_PRODUCERS] = {0};
    size_t got = 0;
    double last_progress = ut_now();
    int failed = 0;
    while (got < total && !failed) {
        uint64_t off = cm_queue_pop(q, base);
        if (off == 0) {
            if (ut_now() - last_progress > 20.0) {
                fprintf(stderr, "no node popped for 20 s after %zu of %zu\n",
                        got, total);
                failed = 1;
            }
            sched_yield();
            continue;
        }
        last_progress = ut_now();
        if (off < NODE_OFF || off >= node_off(total) ||
            (off - NODE_OFF) % sizeof(tnode)) {
            fprintf(stderr, "popped an invalid offset %llu\n",
                    (unsigned long long)off);
            failed = 1;
            break;
        }
        tnode *n = node_at(base, off);
        size_t idx = (off - NODE_OFF) / sizeof(tnode);
        uint32_t owner = (uint32_t)(idx / MT_PER_PRODUCER);
        uint32_t seq = (uint32_t)(idx % MT_PER_PRODUCER);
        if (n->producer != owner || n->seq != seq) {
            fprintf(stderr, "node %zu content not published: producer %u seq %u,"
                    " expected %u %u\n", idx, n->producer, n->seq, owner, seq);
            failed = 1;
            break;
        }
        if ((int64_t)seq != next_seq[owner]) {
            fprintf(stderr, "producer %u: got seq %u, expected %lld (%s)\n", owner,
                    seq, (long long)next_seq[owner],
                    (int64_t)seq < next_seq[owner] ? "duplicate or reordered"
                                                   : "lost or reordered");
            failed = 1;
            break;
        }
        next_seq[owner]++;
        got++;
    }
    for (uint32_t t = 0; t < MT_PRODUCERS; t++)
        pthread_join(th[t], NULL);
    UT_CHECK(!failed, "see above");
    UT_CHECK(cm_queue_pop(q, base) == 0, "extra node after all were received");
    for (uint32_t t = 0; t < MT_PRODUCERS; t++)
        UT_CHECK(next_seq[t] == MT_PER_PRODUCER, "producer %u: %lld received", t,
                 (long long)next_seq[t]);
    free(base);
    return 0;
}

/* ---- nodes cycling between queues ---------------------------------------
 * Each producer owns a small pool of nodes; the consumer sends every node
 * it pops back to its producer through that producer's own return queue, as
 * shm messages travel between PEs and back to the heap that owns them. */

enum { RC_PRODUCERS = 3, RC_POOL = 16, RC_MSGS = 100000 };
#define RC_RETURN_OFF(t) (QUEUE_OFF + 256u * (1u + (t)))

typedef struct rc_arg {
    char *base;
    uint32_t id;
} rc_arg;

static void *rc_producer(void *p) {
    rc_arg *a = p;
    cm_queue *q = queue_of(a->base);
    cm_queue *ret = (cm_queue *)(a->base + RC_RETURN_OFF(a->id));
    uint64_t pool[RC_POOL];
    int npool = RC_POOL;
    for (int i = 0; i < RC_POOL; i++)
        pool[i] = node_off((size_t)a->id * RC_POOL + (size_t)i);
    for (uint32_t sent = 0; sent < RC_MSGS;) {
        uint64_t off;
        while (npool < RC_POOL && (off = cm_queue_pop(ret, a->base)) != 0)
            pool[npool++] = off;
        if (npool == 0) {
            sched_yield();
            continue;
        }
        off = pool[--npool];
        tnode *n = node_at(a->base, off);
        n->producer = a->id;
        n->seq = sent++;
        cm_queue_push(q, a->base, off);
    }
    return NULL;
}

static int test_recycling_threads(void) {
    char *base = region_new((size_t)RC_PRODUCERS * RC_POOL);
    UT_CHECK(base, "out of memory");
    UT_CHECK(RC_RETURN_OFF(RC_PRODUCERS) + sizeof(cm_queue) <= NODE_OFF,
             "layout: return queues overlap nodes");
    cm_queue *q = queue_of(base);
    cm_queue_init(q, base);
    for (uint32_t t = 0; t < RC_PRODUCERS; t++)
        cm_queue_init((cm_queue *)(base + RC_RETURN_OFF(t)), base);
    pthread_t th[RC_PRODUCERS];
    rc_arg args[RC_PRODUCERS];
    for (uint32_t t = 0; t < RC_PRODUCERS; t++) {
        args[t] = (rc_arg){base, t};
        UT_CHECK(pthread_create(&th[t], NULL, rc_producer, &args[t]) == 0,
                 "pthread_create");
    }
    uint32_t next_seq[RC_PRODUCERS] = {0};
    size_t got = 0, total = (size_t)RC_PRODUCERS * RC_MSGS;
    double last_progress = ut_now();
    int failed = 0;
    while (got < total) {
        uint64_t off = cm_queue_pop(q, base);
        if (off == 0) {
            if (ut_now() - last_progress > 20.0) {
                fprintf(stderr, "stalled after %zu of %zu nodes\n", got, total);
                failed = 1;
                break;
            }
            sched_yield();
            continue;
        }
        last_progress = ut_now();
        size_t idx = (off - NODE_OFF) / sizeof(tnode);
        uint32_t owner = (uint32_t)(idx / RC_POOL);
        tnode *n = node_at(base, off);
        if (off < NODE_OFF || owner >= RC_PRODUCERS || n->producer != owner ||
            n->seq != next_seq[owner]) {
            fprintf(stderr, "bad node at %llu: producer %u seq %u (owner %u, "
                    "expected seq %u)\n", (unsigned long long)off, n->producer,
                    n->seq, owner, owner < RC_PRODUCERS ? next_seq[owner] : 0);
            failed = 1;
            break;
        }
        next_seq[owner]++;
        got++;
        cm_queue_push((cm_queue *)(base + RC_RETURN_OFF(owner)), base, off);
    }
    if (failed) {
        /* The producers may wait forever for nodes; the process exit ends
         * them. */
        UT_CHECK(0, "see above");
    }
    for (uint32_t t = 0; t < RC_PRODUCERS; t++)
        pthread_join(th[t], NULL);
    free(base);
    return 0;
}

int main(void) {
    int failed = 0;
    failed += ut_run("queue_empty", test_empty);
    failed += ut_run("queue_fifo", test_fifo);
    failed += ut_run("queue_single_node_cycles", test_single_node_cycles);
    failed += ut_run("queue_interleaved", test_interleaved);
    failed += ut_run("queue_two_mappings", test_two_mappings);
    failed += ut_run("queue_mpsc_threads", test_mpsc_threads);
    failed += ut_run("queue_recycling_threads", test_recycling_threads);
    printf("test_queue: %d failed\n", failed);
    return failed ? 1 : 0;
}
