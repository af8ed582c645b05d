/*
 * flood: the job ends while messages are in flight. Every PE keeps sending
 * messages to every other PE, small ones and large ones (1 MiB, which MPI
 * sends by rendezvous, so they need the receiver's help to complete), from a
 * handler that re-sends itself to its own PE (up to ROUNDS times); PE 0
 * calls cp_exit once it has received argv[1] messages (default 2000). The
 * job must then end with status 0, every PE leaving cleanly although
 * messages to it were still on the way.
 */
#include "pe/pe_test.h"

#define BIG ((size_t)1 << 20)
enum { ROUNDS = 3000 };

typedef struct state {
    int me, npes, h_tick, h_data;
    long got, stop_at, rounds;
    uint64_t sent;
} state;

static void on_data(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    PT_CHECK(ctx, pt_verify(cp_msg_data(m), m->size, m->tag) == m->size,
             "message of %llu bytes from PE %u damaged", (unsigned long long)m->size,
             m->src_pe);
    cp_msg_free(ctx, m);
    if (++s->got == s->stop_at && s->me == 0)
        cp_exit(ctx, 0);
}

static void on_tick(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    for (int pe = 0; pe < s->npes; pe++) {
        if (pe == s->me)
            continue;
        size_t n = s->sent % 64 == 0 ? BIG : (size_t)(s->sent % 997);
        cp_msg *d = pt_alloc(ctx, n);
        d->tag = s->sent * 1000003 + (uint64_t)s->me;
        pt_fill(cp_msg_data(d), n, d->tag);
        pt_send(ctx, pe, s->h_data, d);
        s->sent++;
    }
    if (++s->rounds < ROUNDS)
        pt_send(ctx, s->me, s->h_tick, m);
    else
        cp_msg_free(ctx, m);
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("flood", &argc, &argv);
    static state s;
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    s.stop_at = pt_arg(argc, argv, 1, 2000);
    s.h_tick = pt_handler(ctx, on_tick, &s);
    s.h_data = pt_handler(ctx, on_data, &s);
    if (s.npes == 1) {
        printf("OK flood P=1 (nothing to flood)\n");
        return cp_finalize(ctx);
    }
    pt_send(ctx, s.me, s.h_tick, pt_alloc(ctx, 0));
    int code = pt_run_and_finalize(ctx, "flood");
    printf("OK flood P=%d PE %d (sent %llu, received %ld)\n", s.npes, s.me,
           (unsigned long long)s.sent, s.got);
    return code;
}
