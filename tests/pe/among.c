/*
 * among: reductions among subsets of the PEs (cp_reduce_among), in several
 * streams at once, mixed with plain cp_reduce (stream 0). Each PE issues
 * its calls in a different interleaving of the streams: numbering is per
 * stream, so the interleaving must not matter.
 *
 *   stream 1    every PE, listed in reverse order: root is the last PE
 *   stream 2    the even PEs, root 0
 *   stream 3    the odd PEs, root 1
 *   stream 100+p  PE p alone
 *   stream 0    cp_reduce over every PE, root 0
 */
#include "pe_test.h"

enum { R = 20, MAXP = 64 };

typedef struct state {
    int me, npes;
    int h_res[5]; /* stream 1, 2, 3, single, 0 */
    int expected, got;
    unsigned char seen[5][R];
    int h_done, done_from;
    int all[MAXP], evens[MAXP], odds[MAXP];
    int nall, nevens, nodds;
} state;

static void mark(cp_ctx *ctx, state *s, int which, int64_t k) {
    PT_CHECK(ctx, k >= 0 && k < R, "stream slot %d: result names reduction %lld",
             which, (long long)k);
    PT_CHECK(ctx, !s->seen[which][k], "stream slot %d: reduction %lld twice",
             which, (long long)k);
    s->seen[which][k] = 1;
    if (++s->got == s->expected)
        pt_send(ctx, 0, s->h_done, pt_alloc(ctx, 0));
}

/* Results are [k * participants, value] (SUM) or [k, value] (MAX). */
static void result(cp_ctx *ctx, cp_msg *m, state *s, int which) {
    int64_t v[2];
    PT_CHECK(ctx, m->size == sizeof v, "stream slot %d: result of %llu bytes",
             which, (unsigned long long)m->size);
    memcpy(v, cp_msg_data(m), sizeof v);
    cp_msg_free(ctx, m);
    int64_t n = s->npes, k = -1, want = 0;
    switch (which) {
    case 0: /* stream 1, SUM over all */
        PT_CHECK(ctx, s->me == s->npes - 1, "stream 1 result at PE %d", s->me);
        k = v[0] / n;
        want = n * (n + 1) / 2;
        break;
    case 1: /* stream 2, MAX over evens */
        PT_CHECK(ctx, s->me == 0, "stream 2 result at PE %d", s->me);
        k = v[0];
        want = s->evens[s->nevens - 1] * 1000 + k;
        break;
    case 2: /* stream 3, MAX over odds */
        PT_CHECK(ctx, s->me == 1, "stream 3 result at PE %d", s->me);
        k = v[0];
        want = s->odds[s->nodds - 1] * 1000 + k;
        break;
    case 3: /* alone */
        k = v[0];
        want = s->me + 1;
        break;
    default: /* stream 0 */
        PT_CHECK(ctx, s->me == 0, "stream 0 result at PE %d", s->me);
        k = v[0] / n;
        want = n;
        break;
    }
    PT_CHECK(ctx, v[1] == want, "stream slot %d, reduction %lld: %lld, expected %lld",
             which, (long long)k, (long long)v[1], (long long)want);
    mark(ctx, s, which, k);
}

static void on_res0(cp_ctx *ctx, cp_msg *m, void *u) { result(ctx, m, u, 0); }
static void on_res1(cp_ctx *ctx, cp_msg *m, void *u) { result(ctx, m, u, 1); }
static void on_res2(cp_ctx *ctx, cp_msg *m, void *u) { result(ctx, m, u, 2); }
static void on_res3(cp_ctx *ctx, cp_msg *m, void *u) { result(ctx, m, u, 3); }
static void on_res4(cp_ctx *ctx, cp_msg *m, void *u) { result(ctx, m, u, 4); }

static void on_done(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    if (++s->done_from == s->npes) {
        printf("OK among P=%d\n", s->npes);
        fflush(stdout);
        cp_exit(ctx, 0);
    }
}

static cp_msg *pair_msg(cp_ctx *ctx, int64_t a, int64_t b) {
    cp_msg *m = pt_alloc(ctx, 2 * sizeof(int64_t));
    int64_t v[2] = {a, b};
    memcpy(cp_msg_data(m), v, sizeof v);
    return m;
}

static void issue(cp_ctx *ctx, state *s, int which, int k) {
    int sum = cp_reducer_builtin(CP_OP_SUM, CP_T_INT64);
    int max = cp_reducer_builtin(CP_OP_MAX, CP_T_INT64);
    int rc = 0;
    switch (which) {
    case 0:
        rc = cp_reduce_among(ctx, pair_msg(ctx, k, s->me + 1), 1, sum, s->h_res[0],
                             s->all, s->nall);
        break;
    case 1:
        if (s->me % 2 == 0)
            rc = cp_reduce_among(ctx, pair_msg(ctx, k, s->me * 1000 + k), 2, max,
                                 s->h_res[1], s->evens, s->nevens);
        break;
    case 2:
        if (s->me % 2 == 1)
            rc = cp_reduce_among(ctx, pair_msg(ctx, k, s->me * 1000 + k), 3, max,
                                 s->h_res[2], s->odds, s->nodds);
        break;
    case 3:
        rc = cp_reduce_among(ctx, pair_msg(ctx, k, s->me + 1),
                             100 + (uint64_t)s->me, sum, s->h_res[3], &s->me, 1);
        break;
    default:
        rc = cp_reduce(ctx, pair_msg(ctx, k, 1), sum, 0, s->h_res[4]);
        break;
    }
    PT_CHECK(ctx, rc == 0, "reduction %d in stream slot %d: %s", k, which,
             cp_strerror(rc));
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("among", &argc, &argv);
    static state s;
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    PT_CHECK(ctx, s.npes <= MAXP, "up to %d PEs", MAXP);
    cp_handler_fn fns[5] = {on_res0, on_res1, on_res2, on_res3, on_res4};
    for (int i = 0; i < 5; i++)
        s.h_res[i] = pt_handler(ctx, fns[i], &s);
    s.h_done = pt_handler(ctx, on_done, &s);
    for (int p = 0; p < s.npes; p++) {
        s.all[p] = s.npes - 1 - p;
        if (p % 2 == 0)
            s.evens[s.nevens++] = p;
        else
            s.odds[s.nodds++] = p;
    }
    s.nall = s.npes;
    s.expected = R; /* alone */
    if (s.me == s.npes - 1)
        s.expected += R;
    if (s.me == 0)
        s.expected += 2 * R; /* evens, stream 0 */
    if (s.me == 1)
        s.expected += R;

    /* Refused calls leave the message with the caller. */
    cp_msg *m = pair_msg(ctx, 0, 0);
    int sum = cp_reducer_builtin(CP_OP_SUM, CP_T_INT64);
    int other = (s.me + 1) % s.npes, bad_pe = s.npes;
    PT_CHECK(ctx, s.npes == 1 || cp_reduce_among(ctx, m, 7, sum, s.h_res[0],
                                                 &other, 1) < 0,
             "cp_reduce_among accepted a list without the caller");
    PT_CHECK(ctx, cp_reduce_among(ctx, m, 7, sum, s.h_res[0], &bad_pe, 1) < 0,
             "cp_reduce_among accepted PE %d", bad_pe);
    PT_CHECK(ctx, cp_reduce_among(ctx, m, 7, sum, s.h_res[0], &s.me, 0) < 0,
             "cp_reduce_among accepted an empty list");
    cp_msg_free(ctx, m);

    /* Even PEs go stream by stream, odd PEs round-robin in reverse. */
    if (s.me % 2 == 0) {
        for (int w = 0; w < 5; w++)
            for (int k = 0; k < R; k++)
                issue(ctx, &s, w, k);
    } else {
        for (int k = 0; k < R; k++)
            for (int w = 4; w >= 0; w--)
                issue(ctx, &s, w, k);
    }
    return pt_run_and_finalize(ctx, "among");
}
