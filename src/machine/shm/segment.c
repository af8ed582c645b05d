#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "charmpy/runtime.h"

/* Heaps start on 2 MiB boundaries so big messages could use huge pages. */
#define HEAP_ALIGN (2u << 20)

static uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

static uint64_t layout(int npes, uint64_t heap_bytes, uint64_t *pe_off,
                       uint64_t *heap0) {
    *pe_off = round_up(sizeof(cm_shm_hdr), 64);
    *heap0 = round_up(*pe_off + (uint64_t)npes * sizeof(cm_shm_pe), HEAP_ALIGN);
    return *heap0 + (uint64_t)npes * heap_bytes;
}

uint64_t cm_shm_heap_bytes_from_env(void) {
    const char *s = getenv(CM_ENV_HEAP_MB);
    if (!s || !*s)
        return (uint64_t)CM_DEFAULT_HEAP_MB << 20;
    char *end;
    errno = 0;
    unsigned long long mb = strtoull(s, &end, 10);
    if (errno || *end || mb == 0 || mb > CM_MAX_HEAP_MB)
        return 0;
    return (uint64_t)mb << 20;
}

int cm_shm_segment_create(int npes, uint64_t heap_bytes, int *fd_out,
                          cm_shm_hdr **hdr_out) {
    if (npes <= 0 || heap_bytes < HEAP_ALIGN)
        return CP_EINVAL;
    heap_bytes = round_up(heap_bytes, HEAP_ALIGN);
    uint64_t pe_off, heap0;
    uint64_t total = layout(npes, heap_bytes, &pe_off, &heap0);
    int fd = memfd_create("charmpy-job", 0);
    if (fd < 0)
        return CP_ESYS;
    if (ftruncate(fd, (off_t)total) != 0) {
        close(fd);
        return CP_ESYS;
    }
    void *p = mmap(NULL, total, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) {
        close(fd);
        return CP_ESYS;
    }
    cm_shm_hdr *h = p;
    h->magic = CM_SHM_MAGIC;
    h->version = CM_SHM_VERSION;
    h->npes = (uint32_t)npes;
    h->heap_bytes = heap_bytes;
    h->total_bytes = total;
    h->pe_off = pe_off;
    atomic_store(&h->exit_flag, 0);
    atomic_store(&h->exit_code, 0);
    atomic_store(&h->abort_pe, -1);
    atomic_store(&h->barrier_count, 0);
    atomic_store(&h->barrier_gen, 0);
    for (int i = 0; i < npes; i++) {
        cm_shm_pe *pe = cm_shm_pe_at(h, i);
        cm_queue_init(&pe->inbox, (char *)h);
        atomic_store(&pe->sleep, CM_AWAKE);
        atomic_store(&pe->pid, 0);
        atomic_store(&pe->state, CM_PE_NONE);
        atomic_store(&pe->remote_free, 0);
        pe->heap_off = heap0 + (uint64_t)i * heap_bytes;
    }
    *fd_out = fd;
    *hdr_out = h;
    return 0;
}

int cm_shm_segment_attach(int fd, cm_shm_hdr **hdr_out) {
    cm_shm_hdr probe;
    if (pread(fd, &probe, sizeof probe, 0) != (ssize_t)sizeof probe)
        return CP_ESYS;
    if (probe.magic != CM_SHM_MAGIC || probe.version != CM_SHM_VERSION)
        return CP_EINVAL;
    void *p = mmap(NULL, probe.total_bytes, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED)
        return CP_ESYS;
    *hdr_out = p;
    return 0;
}

void cm_shm_segment_detach(cm_shm_hdr *h) {
    if (h)
        munmap(h, h->total_bytes);
}
