#include "queue.h"

#include <stddef.h>

static inline cm_qnode *node_at(char *base, uint64_t off) {
    return (cm_qnode *)(base + off);
}

void cm_queue_init(cm_queue *q, char *base) {
    uint64_t stub = (uint64_t)((char *)&q->stub - base);
    atomic_store_explicit(&q->stub.next, 0, memory_order_relaxed);
    atomic_store_explicit(&q->head, stub, memory_order_relaxed);
    q->tail = stub;
}

void cm_queue_push(cm_queue *q, char *base, uint64_t node) {
    atomic_store_explicit(&node_at(base, node)->next, 0, memory_order_relaxed);
    /* The exchange orders this node after every node pushed before it; the
     * release store below publishes the node's contents to the consumer. It
     * is seq_cst so that a producer's later read of the consumer's sleep
     * word cannot be ordered before it (see shm.c, wake-up protocol). */
    uint64_t prev = atomic_exchange_explicit(&q->head, node,
                                             memory_order_seq_cst);
    atomic_store_explicit(&node_at(base, prev)->next, node,
                          memory_order_release);
}

uint64_t cm_queue_pop(cm_queue *q, char *base) {
    uint64_t stub = (uint64_t)((char *)&q->stub - base);
    uint64_t tail = q->tail;
    uint64_t next = atomic_load_explicit(&node_at(base, tail)->next,
                                         memory_order_acquire);
    if (tail == stub) {
        if (next == 0)
            return 0;
        q->tail = tail = next;
        next = atomic_load_explicit(&node_at(base, next)->next,
                                    memory_order_acquire);
    }
    if (next != 0) {
        q->tail = next;
        return tail;
    }
    /* `tail` is the last node we can see. If it is not the head, a producer
     * is between its exchange and its link store: come back later. */
    if (tail != atomic_load_explicit(&q->head, memory_order_acquire))
        return 0;
    /* Re-insert the stub behind `tail` so `tail` can be handed out. */
    cm_queue_push(q, base, stub);
    next = atomic_load_explicit(&node_at(base, tail)->next,
                                memory_order_acquire);
    if (next != 0) {
        q->tail = next;
        return tail;
    }
    return 0;
}

int cm_queue_maybe_nonempty(cm_queue *q, char *base) {
    uint64_t stub = (uint64_t)((char *)&q->stub - base);
    if (q->tail != stub)
        return 1;
    /* With the stub at the tail, the queue is empty exactly when nothing
     * was pushed since: the head is still the stub. Reading the head (and
     * not the stub's link) pairs with the producers' seq_cst exchange, so a
     * consumer that announced it is going to sleep and then finds the head
     * unchanged is certain that the next producer will see that announce-
     * ment (shm.c, wake-up protocol). */
    return atomic_load_explicit(&q->head, memory_order_seq_cst) != stub;
}
