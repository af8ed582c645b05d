/*
 * pingpong: PE 0 and PE 1 (PE 0 and itself at P=1) exchange messages of
 * sizes from 0 B to 1 MiB; every payload, size and tag is checked at both
 * ends. Half of the replies are new messages, half are the received message
 * sent back (a handler owns what it receives and may send it on).
 */
#include "pe_test.h"

static const size_t sizes[] = {0,    1,     8,     47,    48,    49,
                               63,   64,    65,    1000,  4095,  4096,
                               4097, 65535, 65536, 65537, (1u << 20) - 1,
                               1u << 20};
enum { NSIZES = sizeof sizes / sizeof sizes[0], LATENCY_ROUNDS = 2000 };

typedef struct state {
    int partner;
    int h_ping, h_pong;
    int size_idx; /* NSIZES: the small-message latency phase */
    int round;
    int rounds_done;
} state;

static int rounds_for(int size_idx) {
    if (size_idx == NSIZES)
        return LATENCY_ROUNDS;
    return sizes[size_idx] <= 4097 ? 40 : 8;
}

static size_t size_for(int size_idx) {
    return size_idx == NSIZES ? 8 : sizes[size_idx];
}

static uint64_t seed_for(int size_idx, int round, int dir) {
    return ((uint64_t)size_idx << 40) ^ ((uint64_t)round << 8) ^ (uint64_t)dir;
}

static uint64_t tag_for(int size_idx, int round) {
    return ((uint64_t)size_idx << 32) | (uint64_t)round;
}

static void check_msg(cp_ctx *ctx, cp_msg *m, state *s, int dir) {
    size_t want = size_for(s->size_idx);
    PT_CHECK(ctx, m->size == want, "%s size %llu, expected %zu (round %d)",
             dir ? "pong" : "ping", (unsigned long long)m->size, want, s->round);
    PT_CHECK(ctx, m->tag == tag_for(s->size_idx, s->round),
             "%s tag %#llx, expected %#llx: tag not carried unchanged or "
             "messages out of order", dir ? "pong" : "ping",
             (unsigned long long)m->tag,
             (unsigned long long)tag_for(s->size_idx, s->round));
    PT_CHECK(ctx, ((uintptr_t)cp_msg_data(m) & 63u) == 0,
             "received payload not 64-byte aligned");
    size_t bad = pt_verify(cp_msg_data(m), want,
                           seed_for(s->size_idx, s->round, dir));
    PT_CHECK(ctx, bad == want,
             "%s of %zu bytes (round %d): payload differs at byte %zu",
             dir ? "pong" : "ping", want, s->round, bad);
}

static void send_ping(cp_ctx *ctx, state *s) {
    size_t n = size_for(s->size_idx);
    cp_msg *m = pt_alloc(ctx, n);
    pt_fill(cp_msg_data(m), n, seed_for(s->size_idx, s->round, 0));
    m->tag = tag_for(s->size_idx, s->round);
    pt_send(ctx, s->partner, s->h_ping, m);
}

static void on_ping(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    /* The partner tracks the expected round itself: pings arrive in order. */
    check_msg(ctx, m, s, 0);
    size_t n = size_for(s->size_idx);
    cp_msg *reply = m;
    if (s->round % 2 == 0) {
        reply = pt_alloc(ctx, n);
        reply->tag = m->tag;
        cp_msg_free(ctx, m);
    }
    pt_fill(cp_msg_data(reply), n, seed_for(s->size_idx, s->round, 1));
    pt_send(ctx, 0, s->h_pong, reply);
    if (cp_my_pe(ctx) != 0) {
        if (++s->round == rounds_for(s->size_idx)) {
            s->round = 0;
            s->size_idx++;
        }
    }
}

static void on_pong(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    check_msg(ctx, m, s, 1);
    cp_msg_free(ctx, m);
    s->rounds_done++;
    if (++s->round == rounds_for(s->size_idx)) {
        s->round = 0;
        s->size_idx++;
    }
    if (s->size_idx > NSIZES) {
        int expect = 0;
        for (int i = 0; i <= NSIZES; i++)
            expect += rounds_for(i);
        PT_CHECK(ctx, s->rounds_done == expect, "%d round trips, expected %d",
                 s->rounds_done, expect);
        printf("OK pingpong P=%d\n", cp_num_pes(ctx));
        fflush(stdout);
        cp_exit(ctx, 0);
        return;
    }
    send_ping(ctx, s);
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("pingpong", &argc, &argv);
    state s = {0};
    s.partner = cp_num_pes(ctx) > 1 ? 1 : 0;
    s.h_ping = pt_handler(ctx, on_ping, &s);
    s.h_pong = pt_handler(ctx, on_pong, &s);
    PT_CHECK(ctx, s.h_ping != s.h_pong, "two handlers got index %d", s.h_ping);
    /* The launcher gives shm; tests/run-mpi-tests.sh says which it expects. */
    const char *want = getenv("CHARMPY_EXPECT_TRANSPORT");
    want = want && *want ? want : "shm";
    PT_CHECK(ctx, cp_transport(ctx) && strcmp(cp_transport(ctx), want) == 0,
             "transport is %s, expected %s", cp_transport(ctx) ? cp_transport(ctx) : "NULL",
             want);
    if (cp_my_pe(ctx) == 0)
        send_ping(ctx, &s);
    return pt_run_and_finalize(ctx, "pingpong");
}
