/*
 * bigmsg: a 256 MiB message (argv[1] MiB) from PE 0 to the last PE and
 * back (to itself at P=1), twice: the first time the receiver sends the
 * received message back, the second time it frees it and replies with a
 * new one. Every 8-byte word is checked at both ends; the first word of
 * each 4 KiB page names the page and the leg, so a misplaced page is
 * reported by number.
 */
#include "pe_test.h"

#define PAGE 4096u

typedef struct state {
    int me, npes, last;
    int h_there, h_back;
    size_t bytes;
    int round;
} state;

static uint64_t word_at(size_t idx, uint64_t leg) {
    if (idx % (PAGE / 8) == 0)
        return 0xfeed000000000000ULL | ((uint64_t)(idx / (PAGE / 8)) << 8) | leg;
    return (idx * 0x9e3779b97f4a7c15ULL) ^ (leg * 0x5bd1e995ULL) ^ 0xabcdefULL;
}

static void big_fill(void *p, size_t bytes, uint64_t leg) {
    uint64_t *w = p;
    for (size_t i = 0; i < bytes / 8; i++)
        w[i] = word_at(i, leg);
}

static void big_check(cp_ctx *ctx, cp_msg *m, size_t bytes, uint64_t leg) {
    PT_CHECK(ctx, m->size == bytes, "leg %llu: size %llu, expected %zu",
             (unsigned long long)leg, (unsigned long long)m->size, bytes);
    const uint64_t *w = cp_msg_data(m);
    for (size_t pg = 0; pg < bytes / PAGE; pg++)
        PT_CHECK(ctx, w[pg * (PAGE / 8)] == word_at(pg * (PAGE / 8), leg),
                 "leg %llu: page %zu starts with %#llx, expected %#llx",
                 (unsigned long long)leg, pg,
                 (unsigned long long)w[pg * (PAGE / 8)],
                 (unsigned long long)word_at(pg * (PAGE / 8), leg));
    for (size_t i = 0; i < bytes / 8; i++)
        PT_CHECK(ctx, w[i] == word_at(i, leg),
                 "leg %llu: word %zu (byte %zu) is %#llx, expected %#llx",
                 (unsigned long long)leg, i, i * 8, (unsigned long long)w[i],
                 (unsigned long long)word_at(i, leg));
}

static void send_there(cp_ctx *ctx, state *s) {
    cp_msg *m = cp_msg_alloc(ctx, s->bytes);
    PT_CHECK(ctx, m != NULL, "cp_msg_alloc(%zu MiB) returned NULL",
             s->bytes >> 20);
    big_fill(cp_msg_data(m), s->bytes, (uint64_t)s->round * 2);
    m->tag = (uint64_t)s->round;
    pt_send(ctx, s->last, s->h_there, m);
}

static void on_there(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int round = (int)m->tag;
    PT_CHECK(ctx, round == 0 || round == 1, "tag %llu", (unsigned long long)m->tag);
    big_check(ctx, m, s->bytes, (uint64_t)round * 2);
    cp_msg *reply = m;
    if (round == 1) {
        cp_msg_free(ctx, m);
        reply = cp_msg_alloc(ctx, s->bytes);
        PT_CHECK(ctx, reply != NULL, "PE %d: cp_msg_alloc(%zu MiB) for the reply",
                 s->me, s->bytes >> 20);
        reply->tag = (uint64_t)round;
    }
    big_fill(cp_msg_data(reply), s->bytes, (uint64_t)round * 2 + 1);
    pt_send(ctx, 0, s->h_back, reply);
}

static void on_back(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    PT_CHECK(ctx, m->tag == (uint64_t)s->round, "reply tag %llu in round %d",
             (unsigned long long)m->tag, s->round);
    big_check(ctx, m, s->bytes, (uint64_t)s->round * 2 + 1);
    cp_msg_free(ctx, m);
    if (++s->round < 2) {
        send_there(ctx, s);
        return;
    }
    printf("OK bigmsg P=%d (%zu MiB, PE 0 <-> PE %d)\n", s->npes, s->bytes >> 20,
           s->last);
    fflush(stdout);
    cp_exit(ctx, 0);
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("bigmsg", &argc, &argv);
    state s = {0};
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    s.last = s.npes - 1;
    s.bytes = (size_t)pt_arg(argc, argv, 1, 256) << 20;
    s.h_there = pt_handler(ctx, on_there, &s);
    s.h_back = pt_handler(ctx, on_back, &s);
    if (s.me == 0)
        send_there(ctx, &s);
    return pt_run_and_finalize(ctx, "bigmsg");
}
