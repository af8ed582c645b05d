/*
 * Unit tests of the shm job segment (src/machine/shm/segment.h): layout,
 * inheritance of the descriptor, attaching from a second mapping, and the
 * queue and heap working across two mappings of one segment, as two PE
 * processes use them.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "charmpy/runtime.h"
#include "machine/shm/alloc.h"
#include "machine/shm/segment.h"
#include "unit_test.h"

#define MiB ((uint64_t)1 << 20)

static int check_layout(cm_shm_hdr *h, int npes, uint64_t heap_bytes) {
    UT_CHECK(h->magic == CM_SHM_MAGIC && h->version == CM_SHM_VERSION,
             "magic %#llx version %u", (unsigned long long)h->magic, h->version);
    UT_CHECK(h->npes == (uint32_t)npes, "npes %u, asked %d", h->npes, npes);
    UT_CHECK(h->heap_bytes >= heap_bytes, "heap of %llu bytes, asked %llu",
             (unsigned long long)h->heap_bytes, (unsigned long long)heap_bytes);
    UT_CHECK(h->pe_off >= sizeof *h && h->pe_off % 64 == 0,
             "PE array at offset %llu", (unsigned long long)h->pe_off);
    UT_CHECK(atomic_load(&h->exit_flag) == 0 && atomic_load(&h->abort_pe) == -1,
             "fresh segment: exit_flag %d abort_pe %d", atomic_load(&h->exit_flag),
             atomic_load(&h->abort_pe));
    uint64_t pes_end = h->pe_off + (uint64_t)npes * sizeof(cm_shm_pe);
    for (int i = 0; i < npes; i++) {
        cm_shm_pe *pe = cm_shm_pe_at(h, i);
        UT_CHECK((uintptr_t)pe % 64 == 0, "PE %d control block not aligned", i);
        UT_CHECK(pe->heap_off >= pes_end, "PE %d heap overlaps the PE array", i);
        UT_CHECK(pe->heap_off % 64 == 0, "PE %d heap at %llu", i,
                 (unsigned long long)pe->heap_off);
        UT_CHECK(pe->heap_off + h->heap_bytes <= h->total_bytes,
                 "PE %d heap ends past the segment", i);
        if (i > 0)
            UT_CHECK(cm_shm_pe_at(h, i - 1)->heap_off + h->heap_bytes <=
                         pe->heap_off,
                     "heaps of PE %d and %d overlap", i - 1, i);
        UT_CHECK(cm_queue_pop(&pe->inbox, (char *)h) == 0, "PE %d inbox not empty",
                 i);
        UT_CHECK(atomic_load(&pe->sleep) == CM_AWAKE && atomic_load(&pe->pid) == 0 &&
                     atomic_load(&pe->remote_free) == 0,
                 "PE %d control block not initialised", i);
    }
    return 0;
}

static int test_create_layout(void) {
    static const int npes[] = {1, 2, 3, 8, 64};
    for (size_t k = 0; k < sizeof npes / sizeof npes[0]; k++) {
        int fd = -1;
        cm_shm_hdr *h = NULL;
        int rc = cm_shm_segment_create(npes[k], 4096 * MiB, &fd, &h);
        UT_CHECK(rc == 0 && h && fd >= 0, "create(%d PEs, 4 GiB each): %d",
                 npes[k], rc);
        if (check_layout(h, npes[k], 4096 * MiB))
            return 1;
        int flags = fcntl(fd, F_GETFD);
        UT_CHECK(flags >= 0 && !(flags & FD_CLOEXEC),
                 "the segment descriptor is close-on-exec: PEs cannot inherit it");
        cm_shm_segment_detach(h);
        close(fd);
    }
    return 0;
}

static int test_create_rejects(void) {
    int fd = -1;
    cm_shm_hdr *h = NULL;
    UT_CHECK(cm_shm_segment_create(0, 64 * MiB, &fd, &h) == CP_EINVAL,
             "create with 0 PEs");
    UT_CHECK(cm_shm_segment_create(-3, 64 * MiB, &fd, &h) == CP_EINVAL,
             "create with -3 PEs");
    return 0;
}

static int test_attach(void) {
    int fd;
    cm_shm_hdr *a, *b;
    UT_CHECK(cm_shm_segment_create(3, 64 * MiB, &fd, &a) == 0, "create");
    UT_CHECK(cm_shm_segment_attach(fd, &b) == 0, "attach");
    UT_CHECK(a != b, "attach returned the same mapping");
    UT_CHECK(b->total_bytes == a->total_bytes && b->npes == 3, "attached header");
    if (check_layout(b, 3, 64 * MiB))
        return 1;
    atomic_store(&a->exit_code, 42);
    UT_CHECK(atomic_load(&b->exit_code) == 42, "write not visible in the other "
                                               "mapping");

    /* A block of PE 1's heap travels to PE 0's inbox and back to PE 1's
     * remote-free stack, each step done through a different mapping. */
    char *ba = (char *)a, *bb = (char *)b;
    cm_heap h1;
    cm_heap_init(&h1, ba, cm_shm_pe_at(a, 1)->heap_off, a->heap_bytes, 1,
                 &cm_shm_pe_at(a, 1)->remote_free);
    char *p = cm_heap_alloc(&h1, 1000);
    UT_CHECK(p, "alloc in PE 1's heap");
    memset(p, 0x5a, 1000);
    uint64_t off = (uint64_t)((char *)cm_block_of(p) - ba);
    cm_queue_push(&cm_shm_pe_at(a, 0)->inbox, ba, off);
    UT_CHECK(cm_queue_maybe_nonempty(&cm_shm_pe_at(b, 0)->inbox, bb),
             "push not visible in the other mapping");
    uint64_t got = cm_queue_pop(&cm_shm_pe_at(b, 0)->inbox, bb);
    UT_CHECK(got == off, "popped %llu, pushed %llu", (unsigned long long)got,
             (unsigned long long)off);
    char *q = bb + got + CM_BLOCK_HDR;
    for (int i = 0; i < 1000; i++)
        UT_CHECK((unsigned char)q[i] == 0x5a, "payload byte %d via the other "
                                              "mapping", i);
    UT_CHECK(cm_block_of(q)->owner == 1, "owner %u", cm_block_of(q)->owner);
    cm_heap_free_remote(bb, &cm_shm_pe_at(b, 1)->remote_free, q);
    uint64_t before = h1.in_use;
    cm_heap_collect(&h1);
    UT_CHECK(h1.in_use < before, "remote free through the other mapping was "
                                 "not collected");
    UT_CHECK(cm_heap_alloc(&h1, 1000) == p, "freed block not reused");

    cm_shm_segment_detach(b);
    cm_shm_segment_detach(a);
    close(fd);
    return 0;
}

static int test_attach_rejects(void) {
    cm_shm_hdr *h = NULL;
    int fd = memfd_create("not-a-segment", 0);
    UT_CHECK(fd >= 0, "memfd_create");
    UT_CHECK(ftruncate(fd, 1 << 16) == 0, "ftruncate");
    UT_CHECK(cm_shm_segment_attach(fd, &h) < 0, "attached a file of zeros");
    close(fd);
    UT_CHECK(cm_shm_segment_attach(-1, &h) < 0, "attached descriptor -1");
    return 0;
}

static int test_heap_env(void) {
    struct {
        const char *val;
        uint64_t want;
    } cases[] = {
        {"64", 64 * MiB},      {"4096", 4096 * MiB}, {"1", MiB},  {"0", 0},
        {"abc", 0},            {"12abc", 0},         {"-5", 0},   {"", 4096 * MiB},
        {"99999999999999999999", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv(CM_ENV_HEAP_MB, cases[i].val, 1);
        uint64_t got = cm_shm_heap_bytes_from_env();
        UT_CHECK(got == cases[i].want, "%s=\"%s\": %llu bytes, expected %llu",
                 CM_ENV_HEAP_MB, cases[i].val, (unsigned long long)got,
                 (unsigned long long)cases[i].want);
    }
    unsetenv(CM_ENV_HEAP_MB);
    UT_CHECK(cm_shm_heap_bytes_from_env() == (uint64_t)CM_DEFAULT_HEAP_MB * MiB,
             "unset: %llu", (unsigned long long)cm_shm_heap_bytes_from_env());
    return 0;
}

int main(void) {
    int failed = 0;
    failed += ut_run("segment_create_layout", test_create_layout);
    failed += ut_run("segment_create_rejects", test_create_rejects);
    failed += ut_run("segment_attach", test_attach);
    failed += ut_run("segment_attach_rejects", test_attach_rejects);
    failed += ut_run("segment_heap_env", test_heap_env);
    printf("test_segment: %d failed\n", failed);
    return failed ? 1 : 0;
}
