/*
 * dljob: a small job inside a shared library, for dlhost (see there): the
 * way the Python extension runs. A token travels three times around the
 * ring of PEs, then a sum reduction of the PE numbers reaches PE 0, which
 * prints "OK dljob P=<n>" and ends the job.
 */
#include "pe/pe_test.h"

int charmpy_dljob_main(int argc, char **argv);

enum { LAPS = 3 };

typedef struct state {
    int me, npes, h_token, h_sum;
} state;

static void on_sum(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int64_t sum;
    memcpy(&sum, cp_msg_data(m), sizeof sum);
    cp_msg_free(ctx, m);
    PT_CHECK(ctx, sum == (int64_t)s->npes * (s->npes - 1) / 2, "sum %lld",
             (long long)sum);
    printf("OK dljob P=%d\n", s->npes);
    fflush(stdout);
    cp_exit(ctx, 0);
}

static void on_token(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    uint64_t hops;
    memcpy(&hops, cp_msg_data(m), sizeof hops);
    if (hops == (uint64_t)LAPS * (uint64_t)s->npes) {
        cp_msg_free(ctx, m);
        /* PE 0 holds the token at the end: everyone contributes now. */
        cp_msg *one = pt_alloc(ctx, 0);
        pt_bcast(ctx, s->h_sum + 1, one);
        return;
    }
    hops++;
    memcpy(cp_msg_data(m), &hops, sizeof hops);
    pt_send(ctx, (s->me + 1) % s->npes, s->h_token, m);
}

static void on_contribute(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    int64_t mine = s->me;
    cp_msg *c = pt_alloc(ctx, sizeof mine);
    memcpy(cp_msg_data(c), &mine, sizeof mine);
    int rc = cp_reduce(ctx, c, cp_reducer_builtin(CP_OP_SUM, CP_T_INT64), 0, s->h_sum);
    PT_CHECK(ctx, rc == 0, "cp_reduce: %s", cp_strerror(rc));
}

int charmpy_dljob_main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("dljob", &argc, &argv);
    static state s;
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    s.h_token = pt_handler(ctx, on_token, &s);
    s.h_sum = pt_handler(ctx, on_sum, &s);
    int h = pt_handler(ctx, on_contribute, &s);
    PT_CHECK(ctx, h == s.h_sum + 1, "handler numbering");
    PT_CHECK(ctx, strcmp(cp_transport(ctx), "mpi") == 0, "transport is %s",
             cp_transport(ctx));
    if (s.me == 0) {
        cp_msg *m = pt_alloc(ctx, sizeof(uint64_t));
        uint64_t zero = 0;
        memcpy(cp_msg_data(m), &zero, sizeof zero);
        pt_send(ctx, 0, s.h_token, m);
    }
    return pt_run_and_finalize(ctx, "dljob");
}
