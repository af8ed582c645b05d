/*
 * A multi-producer single-consumer intrusive queue in shared memory
 * (D. Vyukov's design) whose links are offsets from a common base, so it
 * works although every process maps the segment at its own address.
 *
 * Producers are wait-free: one atomic exchange and one store. The consumer
 * (only the PE that owns the queue) never blocks; while a producer is
 * between its two steps, messages pushed after its own are not yet visible
 * to the consumer, which then sees the queue as empty and tries again later.
 * The producer wakes the consumer only after its second step, so no wake-up
 * is lost.
 *
 * A node is the first 8 bytes of any object in the segment (the link field
 * of a heap block). A pushed node belongs to the queue until pop returns it;
 * after that nothing in the queue refers to it any more.
 */
#ifndef CHARMPY_SHM_QUEUE_H
#define CHARMPY_SHM_QUEUE_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct cm_qnode {
    _Atomic uint64_t next; /* offset of the next node, 0 for none */
} cm_qnode;

typedef struct cm_queue {
    _Alignas(64) _Atomic uint64_t head; /* last node pushed (producers) */
    _Alignas(64) uint64_t tail;         /* next node to pop (consumer) */
    cm_qnode stub;
} cm_queue;

/* Initialise an empty queue that lives inside the region at `base`. */
void cm_queue_init(cm_queue *q, char *base);

/* Push the node at offset `node` (any thread or process). */
void cm_queue_push(cm_queue *q, char *base, uint64_t node);

/* Pop the oldest node; returns its offset or 0 when none is visible. Only
 * the owning consumer may call it. */
uint64_t cm_queue_pop(cm_queue *q, char *base);

/* Non-zero when a pop may return something (consumer only; cheap). */
int cm_queue_maybe_nonempty(cm_queue *q, char *base);

#endif /* CHARMPY_SHM_QUEUE_H */
