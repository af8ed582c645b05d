/*
 * Unit tests of the per-PE message heap (src/machine/shm/alloc.h).
 *
 * Each test maps its own region, shared and anonymous like the real memfd
 * segment (so freed big blocks really give their pages back), and puts the
 * heap at HEAP_OFF: offset 0 is the null offset and must never be a block.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "machine/shm/alloc.h"
#include "unit_test.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define HEAP_OFF 4096u

typedef struct region {
    char *base;
    size_t bytes;
    _Atomic uint64_t remote;
    cm_heap heap;
} region;

static int region_open(region *r, size_t heap_bytes, uint32_t owner) {
    r->bytes = HEAP_OFF + heap_bytes;
    void *p = mmap(NULL, r->bytes, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    r->base = p;
    atomic_init(&r->remote, 0);
    cm_heap_init(&r->heap, r->base, HEAP_OFF, heap_bytes, owner, &r->remote);
    return 0;
}

static void region_close(region *r) { munmap(r->base, r->bytes); }

/* A pattern byte that differs between blocks and along a block. */
static unsigned char pat(uint64_t id, size_t i) {
    return (unsigned char)(id * 131u + i * 7u + (i >> 8) + 1u);
}

static void fill(void *p, size_t n, uint64_t id) {
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        c[i] = pat(id, i);
}

/* Index of the first wrong byte, or n when all are right. */
static size_t verify(const void *p, size_t n, uint64_t id) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != pat(id, i))
            return i;
    return n;
}

/* Big blocks: only the first and last KiB carry the pattern, to keep the
 * tests' memory small; overlap of big blocks is caught by check_disjoint. */
static size_t pattern_span(size_t n) { return n < 64 * KiB ? n : KiB; }

static void fill_ends(void *p, size_t n, uint64_t id) {
    size_t s = pattern_span(n);
    fill(p, s, id);
    if (s < n)
        fill((char *)p + n - s, s, id ^ 0x5555);
}

static int verify_ends(const void *p, size_t n, uint64_t id) {
    size_t s = pattern_span(n);
    if (verify(p, s, id) != s)
        return 0;
    if (s < n && verify((const char *)p + n - s, s, id ^ 0x5555) != s)
        return 0;
    return 1;
}

/* Checks the promises about one fresh block: alignment, capacity, bounds,
 * owner. Returns a static description of what is wrong, or NULL. */
static const char *block_problem(region *r, void *p, size_t asked) {
    cm_heap *h = &r->heap;
    if (((uintptr_t)p & 63u) != 16)
        return "pointer is not 16 bytes past a 64-byte boundary";
    if (cm_block_capacity(p) < asked)
        return "capacity smaller than requested";
    char *lo = h->base + h->start, *hi = h->base + h->end;
    if ((char *)cm_block_of(p) < lo || (char *)p + cm_block_capacity(p) > hi)
        return "block outside the heap region";
    if (cm_block_of(p)->owner != h->owner)
        return "block owner is not the heap owner";
    return NULL;
}

typedef struct live {
    void *p;
    size_t size;
    uint64_t id;
} live;

static int cmp_live(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const live *)a)->p;
    uintptr_t y = (uintptr_t)((const live *)b)->p;
    return x < y ? -1 : x > y;
}

/* No two live blocks (header included) may share a byte. */
static int check_disjoint(live *v, size_t n) {
    live *s = malloc(n * sizeof *s + 1);
    UT_CHECK(s, "out of memory");
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_live);
    for (size_t i = 1; i < n; i++) {
        char *prev_end = (char *)s[i - 1].p + cm_block_capacity(s[i - 1].p);
        char *start = (char *)cm_block_of(s[i].p);
        if (prev_end > start) {
            fprintf(stderr, "blocks %p (capacity %zu) and %p overlap\n",
                    s[i - 1].p, cm_block_capacity(s[i - 1].p), s[i].p);
            free(s);
            return 1;
        }
    }
    free(s);
    return 0;
}

/* ---- sizes, alignment, capacity ----------------------------------------- */

static size_t size_list(size_t *out, size_t max) {
    size_t n = 0;
    static const size_t small[] = {0, 1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 49,
                                   63, 64, 65, 79, 80, 81, 100, 1000};
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++)
        out[n++] = small[i];
    for (size_t p = 128; p <= max; p *= 2) {
        out[n++] = p - 17;
        out[n++] = p - 16;
        out[n++] = p - 1;
        out[n++] = p;
        if (p < max)
            out[n++] = p + 1;
    }
    return n;
}

static int test_sizes_one_at_a_time(void) {
    region r;
    UT_CHECK(region_open(&r, 80 * MiB, 3) == 0, "mmap failed");
    size_t sizes[256];
    size_t n = size_list(sizes, 64 * MiB);
    for (size_t i = 0; i < n; i++) {
        size_t sz = sizes[i];
        void *p = cm_heap_alloc(&r.heap, sz);
        UT_CHECK(p, "alloc of %zu bytes failed in an empty 80 MiB heap", sz);
        const char *why = block_problem(&r, p, sz);
        UT_CHECK(!why, "alloc(%zu) = %p: %s", sz, p, why);
        UT_CHECK(r.heap.in_use >= sz, "in_use %llu after alloc(%zu)",
                 (unsigned long long)r.heap.in_use, sz);
        fill_ends(p, cm_block_capacity(p), sz);
        UT_CHECK(verify_ends(p, cm_block_capacity(p), sz),
                 "alloc(%zu): capacity not writable", sz);
        cm_heap_free_local(&r.heap, p);
        UT_CHECK(r.heap.in_use == 0, "in_use %llu after freeing alloc(%zu)",
                 (unsigned long long)r.heap.in_use, sz);
    }
    region_close(&r);
    return 0;
}

static int test_sizes_all_live(void) {
    region r;
    UT_CHECK(region_open(&r, 1024 * MiB, 0) == 0, "mmap failed");
    size_t sizes[256];
    size_t n = size_list(sizes, 64 * MiB);
    live v[256];
    for (size_t i = 0; i < n; i++) {
        void *p = cm_heap_alloc(&r.heap, sizes[i]);
        UT_CHECK(p, "alloc(%zu) failed with %zu blocks live", sizes[i], i);
        const char *why = block_problem(&r, p, sizes[i]);
        UT_CHECK(!why, "alloc(%zu): %s", sizes[i], why);
        v[i] = (live){p, sizes[i], i + 1000};
        fill_ends(p, sizes[i], i + 1000);
    }
    UT_CHECK(check_disjoint(v, n) == 0, "live blocks overlap");
    for (size_t i = 0; i < n; i++)
        UT_CHECK(verify_ends(v[i].p, v[i].size, v[i].id),
                 "block %zu (%zu bytes) was overwritten", i, v[i].size);
    for (size_t i = 0; i < n; i++)
        cm_heap_free_local(&r.heap, v[n - 1 - i].p);
    UT_CHECK(r.heap.in_use == 0, "in_use %llu after freeing everything",
             (unsigned long long)r.heap.in_use);
    region_close(&r);
    return 0;
}

/* ---- random traffic: no overlap, contents kept ------------------------- */

static size_t random_size(uint64_t *rng) {
    uint64_t k = ut_rand(rng) % 100;
    if (k < 70)
        return (size_t)(ut_rand(rng) % 513);
    if (k < 92)
        return 513 + (size_t)(ut_rand(rng) % (64 * KiB));
    return 64 * KiB + (size_t)(ut_rand(rng) % (2 * MiB));
}

static int test_random_traffic(void) {
    enum { SLOTS = 600, OPS = 40000 };
    region r;
    UT_CHECK(region_open(&r, 512 * MiB, 1) == 0, "mmap failed");
    live v[SLOTS];
    size_t nlive = 0;
    uint64_t rng = 7, next_id = 1;
    for (int op = 0; op < OPS; op++) {
        int do_alloc = nlive == 0 ||
                       (nlive < SLOTS && ut_rand(&rng) % 100 < 55);
        if (do_alloc) {
            size_t sz = random_size(&rng);
            void *p = cm_heap_alloc(&r.heap, sz);
            UT_CHECK(p, "op %d: alloc(%zu) failed with %zu blocks live", op, sz,
                     nlive);
            const char *why = block_problem(&r, p, sz);
            UT_CHECK(!why, "op %d: alloc(%zu): %s", op, sz, why);
            v[nlive] = (live){p, sz, next_id++};
            fill_ends(p, sz, v[nlive].id);
            nlive++;
        } else {
            size_t i = (size_t)(ut_rand(&rng) % nlive);
            UT_CHECK(verify_ends(v[i].p, v[i].size, v[i].id),
                     "op %d: block id %llu (%zu bytes) corrupted before free", op,
                     (unsigned long long)v[i].id, v[i].size);
            cm_heap_free_local(&r.heap, v[i].p);
            v[i] = v[--nlive];
        }
        if (op % 2000 == 0)
            UT_CHECK(check_disjoint(v, nlive) == 0, "op %d: overlap", op);
    }
    UT_CHECK(check_disjoint(v, nlive) == 0, "overlap at the end");
    for (size_t i = 0; i < nlive; i++) {
        UT_CHECK(verify_ends(v[i].p, v[i].size, v[i].id),
                 "block id %llu corrupted", (unsigned long long)v[i].id);
        cm_heap_free_local(&r.heap, v[i].p);
    }
    UT_CHECK(r.heap.in_use == 0, "in_use %llu after freeing everything",
             (unsigned long long)r.heap.in_use);
    region_close(&r);
    return 0;
}

/* ---- reuse ------------------------------------------------------------- */

static int test_reuse(void) {
    static const size_t sizes[] = {0, 40, 48, 200, 4000, 65000, 70000,
                                   300 * 1024, 3 * 1024 * 1024};
    enum { NS = sizeof sizes / sizeof sizes[0], ROUNDS = 50 };
    region r;
    UT_CHECK(region_open(&r, 64 * MiB, 0) == 0, "mmap failed");
    void *p[NS];
    for (size_t i = 0; i < NS; i++)
        UT_CHECK(p[i] = cm_heap_alloc(&r.heap, sizes[i]), "alloc(%zu)", sizes[i]);
    /* Keeps the blocks above from returning to the never-used space. */
    void *guard = cm_heap_alloc(&r.heap, 100);
    UT_CHECK(guard, "guard alloc");
    uint64_t bump = r.heap.bump;
    for (int round = 0; round < ROUNDS; round++) {
        for (size_t i = 0; i < NS; i++)
            cm_heap_free_local(&r.heap, p[i]);
        for (size_t i = 0; i < NS; i++) {
            size_t k = (i * 5 + (size_t)round) % NS; /* a different order */
            p[k] = cm_heap_alloc(&r.heap, sizes[k]);
            UT_CHECK(p[k], "round %d: alloc(%zu)", round, sizes[k]);
        }
        UT_CHECK(r.heap.bump == bump,
                 "round %d: freed blocks were not reused (bump moved by %llu)",
                 round, (unsigned long long)(r.heap.bump - bump));
    }
    region_close(&r);
    return 0;
}

/* ---- coalescing -------------------------------------------------------- */

static int test_coalescing(void) {
    enum { NB = 16 };
    region r;
    UT_CHECK(region_open(&r, 64 * MiB, 0) == 0, "mmap failed");
    void *b[NB];
    for (int i = 0; i < NB; i++) {
        b[i] = cm_heap_alloc(&r.heap, 2 * MiB);
        UT_CHECK(b[i], "alloc of 2 MiB block %d", i);
        fill_ends(b[i], 2 * MiB, (uint64_t)i);
    }
    void *guard = cm_heap_alloc(&r.heap, 100);
    UT_CHECK(guard, "guard alloc");
    fill(guard, 100, 999);
    /* Use up the rest, so only a merged hole can satisfy the big request. */
    void *rest[64];
    int nrest = 0;
    while (nrest < 64 && (rest[nrest] = cm_heap_alloc(&r.heap, MiB)) != NULL)
        nrest++;
    UT_CHECK(nrest < 64, "heap did not run out");
    UT_CHECK(cm_heap_alloc(&r.heap, 30 * MiB) == NULL,
             "30 MiB fit before anything was freed");
    /* Odd ones first (no neighbour free), then even ones from the top down
     * (each merges with both neighbours). */
    for (int i = 1; i < NB; i += 2)
        cm_heap_free_local(&r.heap, b[i]);
    for (int i = NB - 2; i >= 0; i -= 2)
        cm_heap_free_local(&r.heap, b[i]);
    UT_CHECK(verify(guard, 100, 999) == 100, "guard block was overwritten");
    void *big = cm_heap_alloc(&r.heap, 30 * MiB);
    UT_CHECK(big, "30 MiB does not fit in the 32 MiB hole left by 16 freed "
                  "neighbouring 2 MiB blocks: no coalescing");
    UT_CHECK((char *)big >= (char *)b[0] &&
                 (char *)big + 30 * MiB <= (char *)b[NB - 1] + 2 * MiB,
             "the 30 MiB block is not in the freed hole");
    fill_ends(big, 30 * MiB, 77);
    UT_CHECK(verify(guard, 100, 999) == 100, "guard overwritten by big block");
    cm_heap_free_local(&r.heap, big);
    for (int i = 0; i < nrest; i++)
        cm_heap_free_local(&r.heap, rest[i]);
    cm_heap_free_local(&r.heap, guard);
    UT_CHECK(r.heap.in_use == 0, "in_use %llu", (unsigned long long)r.heap.in_use);
    region_close(&r);
    return 0;
}

/* A freed big block gives its pages back; that must not touch the block
 * headers or its neighbours. */
static int test_page_release_keeps_neighbours(void) {
    region r;
    UT_CHECK(region_open(&r, 256 * MiB, 0) == 0, "mmap failed");
    void *a = cm_heap_alloc(&r.heap, 5000);
    void *big = cm_heap_alloc(&r.heap, 40 * MiB);
    void *c = cm_heap_alloc(&r.heap, 5000);
    void *d = cm_heap_alloc(&r.heap, 20 * MiB);
    UT_CHECK(a && big && c && d, "allocs failed");
    fill(a, cm_block_capacity(a), 1);
    fill(c, cm_block_capacity(c), 3);
    fill_ends(big, 40 * MiB, 2);
    fill_ends(d, 20 * MiB, 4);
    cm_heap_free_local(&r.heap, big);
    UT_CHECK(verify(a, cm_block_capacity(a), 1) == cm_block_capacity(a),
             "block before a released 40 MiB block was changed");
    UT_CHECK(verify(c, cm_block_capacity(c), 3) == cm_block_capacity(c),
             "block after a released 40 MiB block was changed");
    UT_CHECK(cm_block_of(c)->units * (size_t)CM_UNIT >= 5000,
             "header of the next block was changed");
    void *again = cm_heap_alloc(&r.heap, 40 * MiB);
    UT_CHECK(again == big, "a freed 40 MiB hole was not reused for 40 MiB");
    fill_ends(again, 40 * MiB, 5);
    UT_CHECK(verify_ends(again, 40 * MiB, 5), "reused block not writable");
    cm_heap_free_local(&r.heap, d);
    UT_CHECK(verify(c, cm_block_capacity(c), 3) == cm_block_capacity(c),
             "block before a released 20 MiB block was changed");
    cm_heap_free_local(&r.heap, again);
    cm_heap_free_local(&r.heap, a);
    cm_heap_free_local(&r.heap, c);
    UT_CHECK(r.heap.in_use == 0, "in_use %llu", (unsigned long long)r.heap.in_use);
    region_close(&r);
    return 0;
}

/* Freed big blocks keep their pages while fewer than 256 MiB of them do
 * (a stream of big messages must not fault every page in again), and give
 * them back beyond that and for a block larger than that. A page given
 * back reads as zeros; a kept one still holds what was written. */
static int test_big_blocks_kept_then_released(void) {
    enum { N = 14 };
    region r;
    UT_CHECK(region_open(&r, 1024 * MiB, 0) == 0, "mmap failed");
    void *big[N], *guard[N];
    for (int i = 0; i < N; i++) {
        big[i] = cm_heap_alloc(&r.heap, 20 * MiB);
        guard[i] = cm_heap_alloc(&r.heap, 100); /* no coalescing */
        UT_CHECK(big[i] && guard[i], "allocs failed");
        fill_ends(big[i], 20 * MiB, (uint64_t)i + 10);
        memset((char *)big[i] + 10 * MiB, 0xAB, 8192);
    }
    for (int i = 0; i < N; i++)
        cm_heap_free_local(&r.heap, big[i]);
    /* 12 x 20 MiB (plus headers and rounding) fit in 256 MiB. */
    for (int i = 0; i < 12; i++)
        UT_CHECK(verify_ends(big[i], 20 * MiB, (uint64_t)i + 10) &&
                     ((unsigned char *)big[i])[10 * MiB + 4096] == 0xAB,
                 "freed 20 MiB block %d lost its pages within the budget", i);
    for (int i = 13; i < N; i++)
        UT_CHECK(((unsigned char *)big[i])[10 * MiB + 4096] == 0,
                 "freed 20 MiB block %d kept its pages beyond the budget", i);
    void *huge = cm_heap_alloc(&r.heap, 300 * MiB);
    UT_CHECK(huge, "300 MiB alloc failed");
    memset((char *)huge + 100 * MiB, 0xCD, 8192);
    cm_heap_free_local(&r.heap, huge);
    UT_CHECK(((unsigned char *)huge)[100 * MiB + 4096] == 0,
             "a freed 300 MiB block kept its pages");
    for (int i = 0; i < N; i++)
        cm_heap_free_local(&r.heap, guard[i]);
    UT_CHECK(r.heap.in_use == 0, "in_use %llu", (unsigned long long)r.heap.in_use);
    region_close(&r);
    return 0;
}

/* ---- exhaustion -------------------------------------------------------- */

static int test_exhaustion(void) {
    region r;
    UT_CHECK(region_open(&r, 64 * MiB, 0) == 0, "mmap failed");
    void *blk[128];
    int n = 0;
    while (n < 128 && (blk[n] = cm_heap_alloc(&r.heap, MiB)) != NULL) {
        fill_ends(blk[n], MiB, (uint64_t)n);
        n++;
    }
    UT_CHECK(n < 128, "a 64 MiB heap gave out more than 128 MiB");
    UT_CHECK(n >= 60, "a 64 MiB heap gave out only %d blocks of 1 MiB", n);
    UT_CHECK(cm_heap_alloc(&r.heap, MiB) == NULL, "alloc succeeded after NULL");
    UT_CHECK(cm_heap_alloc(&r.heap, 64 * MiB) == NULL, "64 MiB from a full heap");
    UT_CHECK(cm_heap_alloc(&r.heap, SIZE_MAX) == NULL, "alloc(SIZE_MAX)");
    UT_CHECK(cm_heap_alloc(&r.heap, SIZE_MAX - 100) == NULL,
             "alloc(SIZE_MAX - 100)");
    UT_CHECK(cm_heap_alloc(&r.heap, (size_t)1 << 40) == NULL, "alloc(1 TiB)");
    /* Small blocks fill whatever is left; they must run out too. */
    void *small[20000];
    int ns = 0;
    while (ns < 20000 && (small[ns] = cm_heap_alloc(&r.heap, 200)) != NULL)
        ns++;
    UT_CHECK(ns < 20000, "small allocations never ran out");
    for (int i = 0; i < n; i++)
        UT_CHECK(verify_ends(blk[i], MiB, (uint64_t)i),
                 "1 MiB block %d corrupted by exhaustion", i);
    /* The heap still works: a freed block is handed out again. */
    cm_heap_free_local(&r.heap, blk[n / 2]);
    blk[n / 2] = cm_heap_alloc(&r.heap, MiB);
    UT_CHECK(blk[n / 2], "no 1 MiB block after freeing one in a full heap");
    cm_heap_free_local(&r.heap, small[ns / 2]);
    small[ns / 2] = cm_heap_alloc(&r.heap, 200);
    UT_CHECK(small[ns / 2], "no 200 B block after freeing one in a full heap");
    for (int i = 0; i < ns; i++)
        cm_heap_free_local(&r.heap, small[i]);
    for (int i = 0; i < n; i++)
        cm_heap_free_local(&r.heap, blk[i]);
    UT_CHECK(r.heap.in_use == 0, "in_use %llu", (unsigned long long)r.heap.in_use);
    void *big = cm_heap_alloc(&r.heap, (size_t)(n - 2) * MiB);
    UT_CHECK(big, "%d MiB does not fit after freeing %d 1 MiB blocks", n - 2, n);
    cm_heap_free_local(&r.heap, big);
    region_close(&r);
    return 0;
}

/* ---- remote frees ------------------------------------------------------ */

static int test_remote_free_single(void) {
    region r;
    UT_CHECK(region_open(&r, 64 * MiB, 5) == 0, "mmap failed");
    void *guard0 = cm_heap_alloc(&r.heap, 100);
    void *x = cm_heap_alloc(&r.heap, 300);
    void *guard1 = cm_heap_alloc(&r.heap, 100);
    UT_CHECK(guard0 && x && guard1, "allocs");
    uint64_t xbytes = (uint64_t)cm_block_of(x)->units * CM_UNIT;
    uint64_t bump = r.heap.bump;
    uint64_t in_use = r.heap.in_use;
    cm_heap_free_remote(r.base, &r.remote, x);
    UT_CHECK(atomic_load(&r.remote) != 0, "remote stack empty after remote free");
    UT_CHECK(r.heap.in_use == in_use, "remote free changed the owner's counts");
    void *y = cm_heap_alloc(&r.heap, 300);
    UT_CHECK(y == x, "alloc did not take back the remotely freed block");
    UT_CHECK(r.heap.bump == bump, "bump moved");
    UT_CHECK(atomic_load(&r.remote) == 0, "remote stack not emptied");
    cm_heap_free_remote(r.base, &r.remote, y);
    cm_heap_collect(&r.heap);
    UT_CHECK(atomic_load(&r.remote) == 0, "collect left the remote stack");
    UT_CHECK(r.heap.in_use == in_use - xbytes,
             "in_use %llu after collecting a remote free, expected %llu",
             (unsigned long long)r.heap.in_use,
             (unsigned long long)(in_use - xbytes));
    region_close(&r);
    return 0;
}

/* Other "PEs" (threads) free blocks of this heap while its owner keeps
 * allocating and freeing; every block must come back exactly once. */
enum { RT_THREADS = 4, RT_PER_THREAD = 20000 };

typedef struct rt_arg {
    region *r;
    live *blocks;
    int n;
    _Atomic int *done;
    int bad; /* blocks whose contents were wrong */
} rt_arg;

static void *rt_freer(void *p) {
    rt_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        live *b = &a->blocks[i];
        if (!verify_ends(b->p, b->size, b->id))
            a->bad++;
        cm_heap_free_remote(a->r->base, &a->r->remote, b->p);
        if ((i & 255) == 0)
            sched_yield();
    }
    atomic_fetch_add(a->done, 1);
    return NULL;
}

static int test_remote_free_threads(void) {
    region r;
    UT_CHECK(region_open(&r, 512 * MiB, 2) == 0, "mmap failed");
    const int total = RT_THREADS * RT_PER_THREAD;
    live *blocks = malloc((size_t)total * sizeof *blocks);
    UT_CHECK(blocks, "out of memory");
    uint64_t rng = 99;
    for (int i = 0; i < total; i++) {
        size_t sz = (size_t)(ut_rand(&rng) % 2000);
        if (i % 1000 == 0)
            sz = 100 * KiB + (size_t)(ut_rand(&rng) % MiB);
        void *p = cm_heap_alloc(&r.heap, sz);
        UT_CHECK(p, "alloc %d (%zu bytes)", i, sz);
        blocks[i] = (live){p, sz, (uint64_t)i + 1};
        fill_ends(p, sz, (uint64_t)i + 1);
    }
    UT_CHECK(check_disjoint(blocks, (size_t)total) == 0, "overlap");
    _Atomic int done = 0;
    pthread_t th[RT_THREADS];
    rt_arg args[RT_THREADS];
    for (int t = 0; t < RT_THREADS; t++) {
        args[t] = (rt_arg){&r, blocks + t * RT_PER_THREAD, RT_PER_THREAD, &done, 0};
        UT_CHECK(pthread_create(&th[t], NULL, rt_freer, &args[t]) == 0,
                 "pthread_create");
    }
    /* The owner works on meanwhile; its allocations may pick up blocks the
     * threads have just freed, which must then be fully ours. */
    enum { MINE = 64 };
    live mine[MINE];
    int nmine = 0, rounds = 0;
    uint64_t id = 1u << 30;
    while (atomic_load(&done) < RT_THREADS || rounds < 1000) {
        rounds++;
        if (nmine == MINE) {
            for (int i = 0; i < nmine; i++) {
                UT_CHECK(verify_ends(mine[i].p, mine[i].size, mine[i].id),
                         "owner block corrupted (a block handed out twice?)");
                cm_heap_free_local(&r.heap, mine[i].p);
            }
            nmine = 0;
        }
        size_t sz = (size_t)(ut_rand(&rng) % 2000);
        void *p = cm_heap_alloc(&r.heap, sz);
        UT_CHECK(p, "owner alloc(%zu) failed", sz);
        mine[nmine] = (live){p, sz, id++};
        fill_ends(p, sz, mine[nmine].id);
        nmine++;
    }
    for (int t = 0; t < RT_THREADS; t++) {
        pthread_join(th[t], NULL);
        UT_CHECK(args[t].bad == 0, "thread %d saw %d corrupted blocks", t,
                 args[t].bad);
    }
    for (int i = 0; i < nmine; i++) {
        UT_CHECK(verify_ends(mine[i].p, mine[i].size, mine[i].id),
                 "owner block corrupted");
        cm_heap_free_local(&r.heap, mine[i].p);
    }
    cm_heap_collect(&r.heap);
    UT_CHECK(r.heap.in_use == 0,
             "in_use %llu after every block was freed (remote frees lost?)",
             (unsigned long long)r.heap.in_use);
    /* Allocating the same sizes again needs no new space. */
    uint64_t bump_before = r.heap.bump;
    for (int i = 0; i < total; i++) {
        blocks[i].p = cm_heap_alloc(&r.heap, blocks[i].size);
        UT_CHECK(blocks[i].p, "realloc %d", i);
    }
    UT_CHECK(r.heap.bump <= bump_before,
             "remotely freed blocks were not reused: bump grew by %llu bytes",
             (unsigned long long)(r.heap.bump - bump_before));
    UT_CHECK(check_disjoint(blocks, (size_t)total) == 0, "overlap after reuse");
    free(blocks);
    region_close(&r);
    return 0;
}

/* A full heap whose big blocks were all freed by another PE: the next
 * allocation must collect them and merge them. */
typedef struct bulk_arg {
    region *r;
    void **p;
    int n;
} bulk_arg;

static void *bulk_freer(void *p) {
    bulk_arg *a = p;
    for (int i = 0; i < a->n; i++)
        cm_heap_free_remote(a->r->base, &a->r->remote, a->p[i]);
    return NULL;
}

static int test_remote_free_coalesce(void) {
    region r;
    UT_CHECK(region_open(&r, 64 * MiB, 1) == 0, "mmap failed");
    void *blk[128];
    int n = 0;
    while (n < 128 && (blk[n] = cm_heap_alloc(&r.heap, MiB)) != NULL)
        n++;
    UT_CHECK(n >= 60 && n < 128, "%d blocks of 1 MiB in 64 MiB", n);
    bulk_arg a = {&r, blk, n};
    pthread_t th;
    UT_CHECK(pthread_create(&th, NULL, bulk_freer, &a) == 0, "pthread_create");
    pthread_join(th, NULL);
    void *big = cm_heap_alloc(&r.heap, 32 * MiB);
    UT_CHECK(big, "32 MiB after another thread freed all 1 MiB blocks: the "
                  "alloc did not collect and merge remote frees");
    fill_ends(big, 32 * MiB, 5);
    cm_heap_free_local(&r.heap, big);
    UT_CHECK(r.heap.in_use == 0, "in_use %llu", (unsigned long long)r.heap.in_use);
    region_close(&r);
    return 0;
}

/* Two heaps side by side in one region, as two PEs have: a block freed
 * remotely goes back to the heap that owns it, not the freeing one. */
static int test_two_heaps(void) {
    region r;
    UT_CHECK(region_open(&r, 128 * MiB, 0) == 0, "mmap failed");
    cm_heap h1;
    _Atomic uint64_t remote1;
    atomic_init(&remote1, 0);
    cm_heap_init(&r.heap, r.base, HEAP_OFF, 64 * MiB, 0, &r.remote);
    cm_heap_init(&h1, r.base, HEAP_OFF + 64 * MiB, 64 * MiB, 1, &remote1);
    void *p0 = cm_heap_alloc(&r.heap, 1000);
    void *p1 = cm_heap_alloc(&h1, 1000);
    UT_CHECK(p0 && p1, "allocs");
    UT_CHECK(cm_block_of(p0)->owner == 0 && cm_block_of(p1)->owner == 1,
             "owners %u %u", cm_block_of(p0)->owner, cm_block_of(p1)->owner);
    UT_CHECK((char *)p1 >= r.base + HEAP_OFF + 64 * MiB, "heap 1 block in heap 0");
    /* Heap 1's owner frees heap 0's block: it goes to heap 0's stack. */
    cm_heap_free_remote(r.base, &r.remote, p0);
    UT_CHECK(atomic_load(&remote1) == 0, "block landed on the wrong heap");
    cm_heap_collect(&h1);
    UT_CHECK(h1.in_use == cm_block_capacity(p1) + CM_BLOCK_HDR,
             "heap 1 counts changed by heap 0's free");
    cm_heap_collect(&r.heap);
    UT_CHECK(r.heap.in_use == 0, "heap 0 in_use %llu",
             (unsigned long long)r.heap.in_use);
    cm_heap_free_local(&h1, p1);
    UT_CHECK(h1.in_use == 0, "heap 1 in_use %llu", (unsigned long long)h1.in_use);
    region_close(&r);
    return 0;
}

int main(void) {
    int failed = 0;
    failed += ut_run("alloc_sizes_one_at_a_time", test_sizes_one_at_a_time);
    failed += ut_run("alloc_sizes_all_live", test_sizes_all_live);
    failed += ut_run("alloc_random_traffic", test_random_traffic);
    failed += ut_run("alloc_reuse", test_reuse);
    failed += ut_run("alloc_coalescing", test_coalescing);
    failed += ut_run("alloc_page_release_keeps_neighbours",
                     test_page_release_keeps_neighbours);
    failed += ut_run("alloc_big_blocks_kept_then_released",
                     test_big_blocks_kept_then_released);
    failed += ut_run("alloc_exhaustion", test_exhaustion);
    failed += ut_run("alloc_remote_free_single", test_remote_free_single);
    failed += ut_run("alloc_remote_free_threads", test_remote_free_threads);
    failed += ut_run("alloc_remote_free_coalesce", test_remote_free_coalesce);
    failed += ut_run("alloc_two_heaps", test_two_heaps);
    printf("test_alloc: %d failed\n", failed);
    return failed ? 1 : 0;
}
