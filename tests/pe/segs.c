/*
 * segs: cp_send_segs, messages whose payload goes on in the sender's own
 * memory. PE 0 sends every PE (itself included) ROUNDS rounds of messages,
 * each round a plain message and then messages with segments of many
 * shapes (empty heads, empty segments, lengths around the 64-byte
 * alignment, segments large enough for MPI's rendezvous), all before any
 * is received. Each receiver recomputes the layout cp_send_segs promises
 * and checks the size, every byte of every segment, the zero padding and
 * the order, then acknowledges. PE 0 checks that each release function ran
 * exactly once, only after the send, and never for a send that failed; it
 * overwrites each segment as soon as it is released, so a transport that
 * read a segment after releasing it would deliver wrong bytes. Under mpi
 * the segments must go in place (cp_sends_in_place), under shm copied.
 *
 * First, every PE sends every other PE a plain message and then a big
 * message with segments, all at once: under mpi each PE waits in
 * cp_send_segs for its peer to take the data while its own queue holds
 * the peer's messages, which must not deadlock.
 *
 *   segs [ROUNDS] [BIG_BYTES]   defaults 4 rounds, 3 MiB
 */
#include "pe_test.h"

enum { MAXSEG = 4 };

typedef struct shape {
    size_t head;            /* >= 16: seq and shape index */
    int nseg;
    size_t len[MAXSEG];     /* BIG stands for the big size */
} shape;

#define BIG ((size_t)-1)

static const shape shapes[] = {
    {16, 1, {1}},
    {16, 1, {64}},
    {17, 2, {63, 65}},
    {64, 3, {100, 0, 4096}},
    {16, 2, {0, 0}},                 /* no bytes in segments: a plain send */
    {100, 1, {BIG}},
    {16, 4, {BIG, 7, BIG, 70000}},
    {4000, 2, {200000, 1}},
};
enum { NSHAPES = sizeof shapes / sizeof shapes[0] };

typedef struct state {
    int me, npes;
    long rounds;
    size_t big;
    int h_data, h_ack, h_cross;
    long cross_got;
    /* PE 0 */
    long sends, releases, acks;
    /* receivers */
    long next_seq;
} state;

/* A release record: PE 0 frees it and scribbles over the segments. */
typedef struct pending {
    state *s;
    cp_ctx *ctx;
    int released;
    int nseg;
    unsigned char *buf[MAXSEG];
    size_t len[MAXSEG];
} pending;

static size_t seg_len(const state *s, size_t len) { return len == BIG ? s->big : len; }

static uint64_t seed_of(int dst, long seq, int j) {
    return ((uint64_t)(unsigned)dst << 40) ^ ((uint64_t)seq << 8) ^ (uint64_t)j;
}

/* The payload size the receiver must see, computed as runtime.h says. */
static uint64_t expected_total(const state *s, const shape *sh) {
    uint64_t n = sh->head;
    for (int j = 0; j < sh->nseg; j++) {
        size_t len = seg_len(s, sh->len[j]);
        if (len)
            n = ((n + 63) & ~(uint64_t)63) + len;
    }
    return n;
}

static void on_release(void *arg) {
    pending *p = arg;
    cp_ctx *ctx = p->ctx;
    PT_CHECK(ctx, !p->released, "a release function ran twice");
    p->released = 1;
    for (int j = 0; j < p->nseg; j++) {
        if (p->buf[j])
            memset(p->buf[j], 0xA5, p->len[j]); /* read after release? wrong bytes */
        free(p->buf[j]);
    }
    p->s->releases++;
    free(p);
}

static void never_release(void *arg) {
    (void)arg;
    fprintf(stderr, "TESTFAIL segs: a release ran for a send that failed\n");
    abort();
}

/* Sends `len` bytes of pattern from (src, dst) as the one segment of a
 * message to h_cross. */
static void send_cross(cp_ctx *ctx, state *s, int dst) {
    cp_msg *m = pt_alloc(ctx, 16);
    uint64_t *h = cp_msg_data(m);
    h[0] = (uint64_t)s->me;
    h[1] = 0;
    pt_send(ctx, dst, s->h_cross, m);
    pending *p = calloc(1, sizeof *p);
    PT_CHECK(ctx, p != NULL, "out of memory");
    p->s = s;
    p->ctx = ctx;
    p->nseg = 1;
    p->len[0] = s->big;
    p->buf[0] = malloc(s->big);
    PT_CHECK(ctx, p->buf[0] != NULL, "out of memory");
    pt_fill(p->buf[0], s->big, seed_of(dst, 1000000 + s->me, 0));
    cp_seg seg = {p->buf[0], s->big};
    m = pt_alloc(ctx, 16);
    h = cp_msg_data(m);
    h[0] = (uint64_t)s->me;
    h[1] = 1;
    int rc = cp_send_segs(ctx, dst, s->h_cross, m, &seg, 1, on_release, p);
    PT_CHECK(ctx, rc == 0, "cp_send_segs to PE %d: %s", dst, cp_strerror(rc));
    s->sends++;
}

static void maybe_ack(cp_ctx *ctx, state *s) {
    if (s->next_seq == s->rounds * (NSHAPES + 1) && s->cross_got == 2 * (s->npes - 1)) {
        s->cross_got++; /* once */
        pt_send(ctx, 0, s->h_ack, pt_alloc(ctx, 0));
    }
}

static void on_cross(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    uint64_t *h = cp_msg_data(m);
    PT_CHECK(ctx, m->size >= 16 && h[0] < (uint64_t)s->npes, "a bad cross message");
    if (h[1] == 1) {
        uint64_t want = ((16 + 63) & ~(uint64_t)63) + s->big;
        PT_CHECK(ctx, m->size == want, "cross message from PE %d: size %llu, expected %llu",
                 (int)h[0], (unsigned long long)m->size, (unsigned long long)want);
        size_t bad = pt_verify((char *)cp_msg_data(m) + 64, s->big,
                               seed_of(s->me, 1000000 + (long)h[0], 0));
        PT_CHECK(ctx, bad == s->big, "cross message from PE %d differs at byte %zu",
                 (int)h[0], bad);
    }
    cp_msg_free(ctx, m);
    s->cross_got++;
    maybe_ack(ctx, s);
}

static void send_round(cp_ctx *ctx, state *s, int dst, long *seq) {
    /* A plain message first: order holds across both kinds. */
    cp_msg *m = pt_alloc(ctx, 16);
    uint64_t *h = cp_msg_data(m);
    h[0] = (uint64_t)(*seq)++;
    h[1] = NSHAPES; /* not a shape: plain */
    pt_send(ctx, dst, s->h_data, m);
    for (int k = 0; k < NSHAPES; k++) {
        const shape *sh = &shapes[k];
        pending *p = calloc(1, sizeof *p);
        PT_CHECK(ctx, p != NULL, "out of memory");
        p->s = s;
        p->ctx = ctx;
        p->nseg = sh->nseg;
        cp_seg segs[MAXSEG];
        for (int j = 0; j < sh->nseg; j++) {
            size_t len = seg_len(s, sh->len[j]);
            p->len[j] = len;
            p->buf[j] = len ? malloc(len) : NULL;
            PT_CHECK(ctx, !len || p->buf[j], "out of memory for %zu bytes", len);
            if (len)
                pt_fill(p->buf[j], len, seed_of(dst, *seq, j));
            segs[j].base = p->buf[j];
            segs[j].len = len;
        }
        m = pt_alloc(ctx, sh->head);
        h = cp_msg_data(m);
        memset(h, 0x11, sh->head); /* the head's own bytes, checked too */
        h[0] = (uint64_t)(*seq)++;
        h[1] = (uint64_t)k;
        int rc = cp_send_segs(ctx, dst, s->h_data, m, segs, sh->nseg, on_release, p);
        PT_CHECK(ctx, rc == 0, "cp_send_segs shape %d to PE %d: %s", k, dst, cp_strerror(rc));
        s->sends++;
    }
}

static void on_data(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    PT_CHECK(ctx, m->size >= 16, "a message of %llu bytes", (unsigned long long)m->size);
    uint64_t *h = cp_msg_data(m);
    PT_CHECK(ctx, (long)h[0] == s->next_seq, "seq %llu arrived, expected %ld",
             (unsigned long long)h[0], s->next_seq);
    s->next_seq++;
    if (h[1] < NSHAPES) {
        const shape *sh = &shapes[h[1]];
        uint64_t total = expected_total(s, sh);
        PT_CHECK(ctx, m->size == total, "shape %d: size %llu, expected %llu", (int)h[1],
                 (unsigned long long)m->size, (unsigned long long)total);
        const unsigned char *p = cp_msg_data(m);
        for (size_t i = 16; i < sh->head; i++)
            PT_CHECK(ctx, p[i] == 0x11, "shape %d: head byte %zu is %#x", (int)h[1], i, p[i]);
        uint64_t n = sh->head;
        for (int j = 0; j < sh->nseg; j++) {
            size_t len = seg_len(s, sh->len[j]);
            if (!len)
                continue;
            uint64_t at = (n + 63) & ~(uint64_t)63;
            for (uint64_t i = n; i < at; i++)
                PT_CHECK(ctx, p[i] == 0, "shape %d: padding byte %llu before segment %d is %#x",
                         (int)h[1], (unsigned long long)i, j, p[i]);
            size_t bad = pt_verify(p + at, len, seed_of(s->me, (long)h[0], j));
            PT_CHECK(ctx, bad == len, "shape %d seq %llu: segment %d (%zu bytes) differs at byte %zu",
                     (int)h[1], (unsigned long long)h[0], j, len, bad);
            n = at + len;
        }
    }
    cp_msg_free(ctx, m);
    maybe_ack(ctx, s);
}

/* Every message arrived; the releases are due once the transport has
 * noticed its sends completed, which a later poll does. */
static void check_released(cp_ctx *ctx, void *arg) {
    state *s = arg;
    if (s->releases < s->sends) {
        int rc = cp_call_after(ctx, 1e-3, check_released, s);
        PT_CHECK(ctx, rc == 0, "cp_call_after: %s", cp_strerror(rc));
        return;
    }
    PT_CHECK(ctx, s->releases == s->sends, "%ld releases for %ld sends", s->releases,
             s->sends);
    printf("OK segs P=%d (%ld sends, %s)\n", s->npes, s->sends,
           cp_sends_in_place(ctx) ? "in place" : "copied");
    cp_exit(ctx, 0);
}

static void on_ack(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    if (++s->acks == s->npes)
        check_released(ctx, s);
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("segs", &argc, &argv);
    state s = {0};
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    s.rounds = pt_arg(argc, argv, 1, 4);
    s.big = (size_t)pt_arg(argc, argv, 2, 3 << 20);
    s.h_data = pt_handler(ctx, on_data, &s);
    s.h_ack = pt_handler(ctx, on_ack, &s);
    s.h_cross = pt_handler(ctx, on_cross, &s);
    int mpi = strcmp(cp_transport(ctx), "mpi") == 0;
    PT_CHECK(ctx, cp_sends_in_place(ctx) == mpi, "cp_sends_in_place is %d under %s",
             cp_sends_in_place(ctx), cp_transport(ctx));
    int rc = cp_barrier(ctx); /* every PE's handlers are registered */
    PT_CHECK(ctx, rc == 0, "cp_barrier: %s", cp_strerror(rc));
    for (int dst = 0; dst < s.npes; dst++)
        if (dst != s.me)
            send_cross(ctx, &s, dst);
    if (s.me == 0) {
        /* Errors: the caller keeps the message and no release runs. */
        cp_msg *m = pt_alloc(ctx, 16);
        cp_seg seg = {m, 1};
        PT_CHECK(ctx, cp_send_segs(ctx, s.npes, s.h_data, m, &seg, 1, never_release, NULL) ==
                          CP_ERANGE, "a PE that does not exist was accepted");
        PT_CHECK(ctx, cp_send_segs(ctx, 0, 999, m, &seg, 1, never_release, NULL) == CP_ERANGE,
                 "a handler that does not exist was accepted");
        PT_CHECK(ctx, cp_send_segs(ctx, 0, s.h_data, m, &seg, -1, never_release, NULL) ==
                          CP_EINVAL, "nseg -1 was accepted");
        PT_CHECK(ctx, cp_send_segs(ctx, 0, s.h_data, m, NULL, 1, never_release, NULL) ==
                          CP_EINVAL, "segs NULL was accepted");
        PT_CHECK(ctx, m->size == 16, "a failed send changed the message size to %llu",
                 (unsigned long long)m->size);
        cp_msg_free(ctx, m);
        long seq[64] = {0};
        PT_CHECK(ctx, s.npes <= 64, "at most 64 PEs");
        for (long r = 0; r < s.rounds; r++)
            for (int dst = 0; dst < s.npes; dst++)
                send_round(ctx, &s, dst, &seq[dst]);
    }
    return pt_run_and_finalize(ctx, "segs");
}
