/*
 * heapfull: run with a small heap (CHARMPY_HEAP_MB=64). Each PE allocates
 * 1 MiB messages until cp_msg_alloc returns NULL (it must not end the
 * process), frees them, and gets one nearly heap-sized message (the freed
 * space merged). Then it fills its heap again and sends every message to
 * the next PE, which frees them into the sender's heap from its own
 * process; once told they are all freed, the sender must be able to
 * allocate as many as the first time.
 */
#include "pe_test.h"

#define MSG_BYTES ((size_t)1 << 20)
enum { MAX_MSGS = 8192 };

typedef struct state {
    int me, npes, next, prev;
    int h_sink, h_ack, h_done;
    int first_count;
    int sunk;
    cp_msg *ack, *done; /* set aside before the heap fills */
    int done_from;
    cp_msg **held;
} state;

static int fill(cp_ctx *ctx, cp_msg **out) {
    int n = 0;
    while (n < MAX_MSGS && (out[n] = cp_msg_alloc(ctx, MSG_BYTES)) != NULL) {
        PT_CHECK(ctx, out[n]->size == MSG_BYTES, "size field %llu",
                 (unsigned long long)out[n]->size);
        n++;
    }
    PT_CHECK(ctx, n < MAX_MSGS, "allocated %d MiB without running out", n);
    return n;
}

static void on_sink(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int32_t v[2]; /* index, total */
    memcpy(v, cp_msg_data(m), sizeof v);
    PT_CHECK(ctx, v[0] == s->sunk, "from PE %d: message %d arrived as number %d",
             s->prev, v[0], s->sunk);
    cp_msg_free(ctx, m);
    if (++s->sunk == v[1]) {
        pt_send(ctx, s->prev, s->h_ack, s->ack);
        s->ack = NULL;
    }
}

static void on_ack(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    int n = fill(ctx, s->held);
    PT_CHECK(ctx, n >= s->first_count - 1,
             "after PE %d freed all %d of this PE's messages, only %d fit again",
             s->next, s->first_count, n);
    for (int i = 0; i < n; i++)
        cp_msg_free(ctx, s->held[i]);
    pt_send(ctx, 0, s->h_done, s->done);
    s->done = NULL;
}

static void on_done(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    if (++s->done_from == s->npes) {
        printf("OK heapfull P=%d (%d MiB messages per heap)\n", s->npes,
               s->first_count);
        fflush(stdout);
        cp_exit(ctx, 0);
    }
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("heapfull", &argc, &argv);
    static state s;
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    s.next = (s.me + 1) % s.npes;
    s.prev = (s.me + s.npes - 1) % s.npes;
    s.h_sink = pt_handler(ctx, on_sink, &s);
    s.h_ack = pt_handler(ctx, on_ack, &s);
    s.h_done = pt_handler(ctx, on_done, &s);
    const char *mb = getenv("CHARMPY_HEAP_MB");
    size_t heap = (size_t)(mb ? atol(mb) : 4096) << 20;
    s.held = calloc(MAX_MSGS, sizeof *s.held);
    PT_CHECK(ctx, s.held != NULL, "out of memory");
    s.ack = pt_alloc(ctx, 0);
    s.done = pt_alloc(ctx, 0);

    int n = fill(ctx, s.held);
    s.first_count = n;
    PT_CHECK(ctx, (size_t)n * MSG_BYTES >= heap / 10 * 9,
             "only %d MiB messages fit in a %zu MiB heap", n, heap >> 20);
    PT_CHECK(ctx, cp_msg_alloc(ctx, MSG_BYTES) == NULL,
             "an allocation succeeded after one returned NULL");
    PT_CHECK(ctx, cp_msg_alloc(ctx, 2 * heap) == NULL,
             "a message twice the heap size was allocated");
    for (int i = 0; i < n; i++)
        cp_msg_free(ctx, s.held[i]);
    cp_msg *big = cp_msg_alloc(ctx, heap - 4 * MSG_BYTES);
    PT_CHECK(ctx, big != NULL, "no %zu MiB message after freeing the %d MiB of "
             "a full heap", (heap >> 20) - 4, n);
    cp_msg_free(ctx, big);

    n = fill(ctx, s.held);
    PT_CHECK(ctx, n >= s.first_count - 1, "second fill: %d MiB, first %d", n,
             s.first_count);
    for (int i = 0; i < n; i++) {
        int32_t v[2] = {i, n};
        memcpy(cp_msg_data(s.held[i]), v, sizeof v);
        pt_send(ctx, s.next, s.h_sink, s.held[i]);
    }
    int rc = pt_run_and_finalize(ctx, "heapfull");
    free(s.held);
    return rc;
}
