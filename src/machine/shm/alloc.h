/*
 * The message heap of one PE: a region of the shared segment from which only
 * its owner allocates, and into which any PE may free.
 *
 * Every block starts with a 16-byte header (cm_block) and is 64-byte aligned,
 * so the caller's memory starts 16 bytes into a cache line and a cp_msg
 * placed there (48 bytes) puts the payload on a 64-byte boundary.
 *
 * Small blocks (up to 64 KiB) come from segregated free lists, larger ones
 * from an address-ordered first-fit list that coalesces neighbours. A block
 * freed by another PE is pushed on the owner's `remote` stack (one atomic
 * compare-and-swap) and returned to the lists by the owner during its next
 * allocation that finds its lists empty. Freed blocks of 16 MiB or more give
 * their pages back to the kernel, but for up to 256 MiB of them (see
 * alloc.c).
 */
#ifndef CHARMPY_SHM_ALLOC_H
#define CHARMPY_SHM_ALLOC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define CM_UNIT 64                 /* block granularity and alignment */
#define CM_BLOCK_HDR 16
#define CM_SMALL_CLASSES 36        /* classes of 1 .. 1024 units */
#define CM_SMALL_MAX_UNITS 1024

typedef struct cm_block {
    _Atomic uint64_t link; /* queue or free-list link (an offset) */
    uint32_t units;        /* block size in CM_UNITs, header included */
    uint32_t owner;        /* PE whose heap holds the block */
} cm_block;

typedef struct cm_heap {
    char *base;                 /* segment base in this process */
    uint64_t start, end;        /* this heap's region [start, end) */
    uint64_t bump;              /* first never-used offset */
    uint64_t small[CM_SMALL_CLASSES]; /* free-list heads */
    uint64_t large;             /* address-ordered free list of big blocks */
    _Atomic uint64_t *remote;   /* shared stack of blocks freed elsewhere */
    uint32_t owner;
    uint64_t in_use;            /* bytes handed out and not yet freed */
    uint64_t kept;              /* bytes of freed big blocks that kept their
                                   pages (an estimate, see alloc.c) */
} cm_heap;

/* Set up an empty heap over [start, start+size) of the region at `base`.
 * `remote` is the shared remote-free stack head of this heap. */
void cm_heap_init(cm_heap *h, char *base, uint64_t start, uint64_t size,
                  uint32_t owner, _Atomic uint64_t *remote);

/* Memory for `bytes` caller bytes, 16 bytes past a 64-byte boundary; NULL
 * when the region is exhausted. Owner only. */
void *cm_heap_alloc(cm_heap *h, size_t bytes);

/* Free memory from cm_heap_alloc of *this* heap (owner only). */
void cm_heap_free_local(cm_heap *h, void *p);

/* Free memory from another PE's heap: push it on that heap's remote stack
 * (any thread or process). */
void cm_heap_free_remote(char *base, _Atomic uint64_t *remote, void *p);

/* Push a chain of blocks of one heap, linked through their link fields from
 * `first` to `last` (offsets), on that heap's remote stack with one atomic
 * operation. */
void cm_heap_free_remote_chain(char *base, _Atomic uint64_t *remote, uint64_t first,
                               uint64_t last);

/* Owner PE and header of a block from its caller pointer. */
static inline cm_block *cm_block_of(void *p) {
    return (cm_block *)((char *)p - CM_BLOCK_HDR);
}

/* Usable bytes of the block holding `p`. */
static inline size_t cm_block_capacity(void *p) {
    return (size_t)cm_block_of(p)->units * CM_UNIT - CM_BLOCK_HDR;
}

/* Return remote frees to the lists now (also done inside alloc). */
void cm_heap_collect(cm_heap *h);

#endif /* CHARMPY_SHM_ALLOC_H */
