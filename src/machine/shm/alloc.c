#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "alloc.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Freed blocks of RELEASE_BYTES or more return their pages to the kernel,
 * so a job that once sent 1 GiB does not keep 1 GiB resident, except while
 * the heap keeps fewer than KEEP_BYTES of such blocks resident: a steady
 * stream of 16-100 MiB messages would otherwise fault every page of every
 * message in again (a 16 MiB ping-pong ran at 0.7 GB/s, 14 MiB at 4.5).
 * Smaller blocks always keep their pages. */
#define RELEASE_BYTES (16u << 20)
#define KEEP_BYTES ((uint64_t)256 << 20)
#define PAGE 4096u

static inline cm_block *blk_at(cm_heap *h, uint64_t off) {
    return (cm_block *)(h->base + off);
}

static inline uint64_t off_of(cm_heap *h, void *p) {
    return (uint64_t)((char *)p - h->base);
}

/* Size classes: 1..4 units exactly, then four classes per power of two. */
static inline unsigned class_of(uint32_t units) {
    if (units <= 4)
        return units - 1;
    uint32_t v = units - 1;
    unsigned p = 31u - (unsigned)__builtin_clz(v);
    unsigned sub = (v >> (p - 2)) & 3u;
    return 4 + (p - 2) * 4 + sub;
}

static inline uint32_t class_units(unsigned cls) {
    if (cls < 4)
        return cls + 1;
    unsigned p = (cls - 4) / 4 + 2, sub = (cls - 4) % 4;
    return (4u + sub + 1u) << (p - 2);
}

void cm_heap_init(cm_heap *h, char *base, uint64_t start, uint64_t size,
                  uint32_t owner, _Atomic uint64_t *remote) {
    memset(h, 0, sizeof *h);
    h->base = base;
    h->start = (start + CM_UNIT - 1) / CM_UNIT * CM_UNIT;
    h->end = (start + size) / CM_UNIT * CM_UNIT;
    h->bump = h->start;
    h->owner = owner;
    h->remote = remote;
}

static void *carve(cm_heap *h, uint64_t units) {
    uint64_t bytes = units * CM_UNIT;
    if (h->end - h->bump < bytes)
        return NULL;
    cm_block *b = blk_at(h, h->bump);
    h->bump += bytes;
    b->units = (uint32_t)units;
    b->owner = h->owner;
    return b;
}

/* A free big block of `bytes` leaves the free list (taken, or given back to
 * the bump pointer). Whether its pages were kept is not recorded: count
 * them off as if they were (the count only bounds what stays resident). */
static void unkeep(cm_heap *h, uint64_t bytes) {
    if (bytes >= RELEASE_BYTES)
        h->kept -= bytes < h->kept ? bytes : h->kept;
}

/* First fit in the address-ordered large list; splits the remainder off. */
static cm_block *take_large(cm_heap *h, uint64_t units) {
    uint64_t *link = &h->large;
    while (*link) {
        cm_block *b = blk_at(h, *link);
        if (b->units >= units) {
            uint64_t rest = b->units - units;
            uint64_t next = atomic_load_explicit(&b->link, memory_order_relaxed);
            if (rest > CM_SMALL_MAX_UNITS) {
                cm_block *r = (cm_block *)((char *)b + units * CM_UNIT);
                r->units = (uint32_t)rest;
                r->owner = h->owner;
                atomic_store_explicit(&r->link, next, memory_order_relaxed);
                *link = off_of(h, r);
                b->units = (uint32_t)units;
            } else {
                *link = next;
            }
            unkeep(h, (uint64_t)b->units * CM_UNIT);
            return b;
        }
        link = (uint64_t *)&b->link;
    }
    return NULL;
}

static void release_pages(cm_block *b) {
    uintptr_t lo = ((uintptr_t)b + CM_UNIT + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
    uintptr_t hi = ((uintptr_t)b + (uintptr_t)b->units * CM_UNIT) &
                   ~(uintptr_t)(PAGE - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_REMOVE);
}

static void put_large(cm_heap *h, cm_block *b) {
    uint64_t off = off_of(h, b), bytes = (uint64_t)b->units * CM_UNIT;
    if (bytes >= RELEASE_BYTES) {
        if (h->kept + bytes <= KEEP_BYTES)
            h->kept += bytes;
        else
            release_pages(b);
    }
    /* Find the neighbours in address order. */
    uint64_t *link = &h->large;
    cm_block *prev = NULL;
    while (*link && *link < off) {
        prev = blk_at(h, *link);
        link = (uint64_t *)&prev->link;
    }
    uint64_t next = *link;
    atomic_store_explicit(&b->link, next, memory_order_relaxed);
    *link = off;
    if (next && off + (uint64_t)b->units * CM_UNIT == next) {
        cm_block *n = blk_at(h, next);
        b->units += n->units;
        atomic_store_explicit(&b->link,
                              atomic_load_explicit(&n->link, memory_order_relaxed),
                              memory_order_relaxed);
    }
    if (prev && off_of(h, prev) + (uint64_t)prev->units * CM_UNIT == off) {
        prev->units += b->units;
        atomic_store_explicit(&prev->link,
                              atomic_load_explicit(&b->link, memory_order_relaxed),
                              memory_order_relaxed);
        b = prev;
    }
    /* A free block that ends at the bump pointer goes back to it. */
    uint64_t boff = off_of(h, b);
    if (boff + (uint64_t)b->units * CM_UNIT == h->bump) {
        uint64_t *l = &h->large;
        while (*l != boff)
            l = (uint64_t *)&blk_at(h, *l)->link;
        *l = atomic_load_explicit(&b->link, memory_order_relaxed);
        h->bump = boff;
        unkeep(h, (uint64_t)b->units * CM_UNIT);
    }
}

static void free_block(cm_heap *h, cm_block *b) {
    h->in_use -= (uint64_t)b->units * CM_UNIT;
    if (b->units <= CM_SMALL_MAX_UNITS) {
        unsigned cls = class_of(b->units);
        atomic_store_explicit(&b->link, h->small[cls], memory_order_relaxed);
        h->small[cls] = off_of(h, b);
    } else {
        put_large(h, b);
    }
}

void cm_heap_collect(cm_heap *h) {
    if (atomic_load_explicit(h->remote, memory_order_relaxed) == 0)
        return;
    uint64_t off = atomic_exchange_explicit(h->remote, 0, memory_order_acquire);
    while (off) {
        cm_block *b = blk_at(h, off);
        off = atomic_load_explicit(&b->link, memory_order_relaxed);
        free_block(h, b);
    }
}

void *cm_heap_alloc(cm_heap *h, size_t bytes) {
    if (bytes > (size_t)UINT32_MAX * CM_UNIT - CM_BLOCK_HDR)
        return NULL;
    uint64_t units = ((uint64_t)bytes + CM_BLOCK_HDR + CM_UNIT - 1) / CM_UNIT;
    cm_block *b = NULL;
    if (units <= CM_SMALL_MAX_UNITS) {
        unsigned cls = class_of((uint32_t)units);
        units = class_units(cls);
        if (!h->small[cls])
            cm_heap_collect(h);
        if (h->small[cls]) {
            b = blk_at(h, h->small[cls]);
            h->small[cls] = atomic_load_explicit(&b->link, memory_order_relaxed);
        } else {
            b = carve(h, units);
        }
    } else {
        units = (units + PAGE / CM_UNIT - 1) / (PAGE / CM_UNIT) * (PAGE / CM_UNIT);
        b = take_large(h, units);
        if (!b) {
            cm_heap_collect(h);
            b = take_large(h, units);
        }
        if (!b)
            b = carve(h, units);
    }
    if (!b)
        return NULL;
    b->owner = h->owner;
    h->in_use += (uint64_t)b->units * CM_UNIT;
    return (char *)b + CM_BLOCK_HDR;
}

void cm_heap_free_local(cm_heap *h, void *p) {
    free_block(h, cm_block_of(p));
}

void cm_heap_free_remote_chain(char *base, _Atomic uint64_t *remote, uint64_t first,
                               uint64_t last) {
    cm_block *tail = (cm_block *)(base + last);
    uint64_t head = atomic_load_explicit(remote, memory_order_relaxed);
    do {
        atomic_store_explicit(&tail->link, head, memory_order_relaxed);
    } while (!atomic_compare_exchange_weak_explicit(
        remote, &head, first, memory_order_release, memory_order_relaxed));
}

void cm_heap_free_remote(char *base, _Atomic uint64_t *remote, void *p) {
    uint64_t off = (uint64_t)((char *)cm_block_of(p) - base);
    cm_heap_free_remote_chain(base, remote, off, off);
}
