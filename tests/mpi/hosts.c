/*
 * hosts: the host queries under mpi.
 *
 *   hosts N        the job must have N hosts
 *   hosts mod K    run with CHARMPY_HOSTNAME=h<rank % K> (the runner's
 *                  wrapper): PE p must be on host p % K
 *
 * Every PE checks its own view (transport "mpi", cp_my_host agrees with
 * cp_host_of, hosts numbered by their lowest PE, CP_ERANGE outside the job)
 * and sends a digest of its PE -> host table to PE 0, which checks that all
 * PEs agree and prints "OK hosts P=<n> hosts=<h>".
 */
#include "pe/pe_test.h"

typedef struct state {
    int me, npes, h_digest, got;
    uint64_t digest;
} state;

static void on_digest(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    uint64_t d;
    memcpy(&d, cp_msg_data(m), sizeof d);
    PT_CHECK(ctx, d == s->digest, "PE %u sees another host table (%#llx, PE 0 %#llx)",
             m->src_pe, (unsigned long long)d, (unsigned long long)s->digest);
    cp_msg_free(ctx, m);
    if (++s->got == s->npes) {
        printf("OK hosts P=%d hosts=%d\n", s->npes, cp_num_hosts(ctx));
        fflush(stdout);
        cp_exit(ctx, 0);
    }
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("hosts", &argc, &argv);
    state s = {0};
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    s.h_digest = pt_handler(ctx, on_digest, &s);
    PT_CHECK(ctx, strcmp(cp_transport(ctx), "mpi") == 0, "transport is %s",
             cp_transport(ctx));
    int nh = cp_num_hosts(ctx);
    PT_CHECK(ctx, nh >= 1 && nh <= s.npes, "%d hosts for %d PEs", nh, s.npes);
    PT_CHECK(ctx, cp_host_of(ctx, s.me) == cp_my_host(ctx), "cp_host_of(me) %d, "
             "cp_my_host %d", cp_host_of(ctx, s.me), cp_my_host(ctx));
    PT_CHECK(ctx, cp_host_of(ctx, -1) == CP_ERANGE, "cp_host_of(-1) is %d",
             cp_host_of(ctx, -1));
    PT_CHECK(ctx, cp_host_of(ctx, s.npes) == CP_ERANGE, "cp_host_of(npes) is %d",
             cp_host_of(ctx, s.npes));
    int next_new = 0; /* hosts appear in the order of their lowest PE */
    uint64_t digest = 0;
    for (int pe = 0; pe < s.npes; pe++) {
        int h = cp_host_of(ctx, pe);
        PT_CHECK(ctx, h >= 0 && h < nh, "PE %d on host %d of %d", pe, h, nh);
        PT_CHECK(ctx, h <= next_new, "PE %d is on host %d before host %d has a PE",
                 pe, h, next_new);
        if (h == next_new)
            next_new++;
        digest = pt_mix(digest ^ (uint64_t)h);
    }
    PT_CHECK(ctx, next_new == nh, "only %d of %d hosts have PEs", next_new, nh);
    if (argc > 2 && strcmp(argv[1], "mod") == 0) {
        int k = (int)pt_arg(argc, argv, 2, 1);
        for (int pe = 0; pe < s.npes; pe++)
            PT_CHECK(ctx, cp_host_of(ctx, pe) == pe % k, "PE %d on host %d, "
                     "expected %d", pe, cp_host_of(ctx, pe), pe % k);
        PT_CHECK(ctx, nh == (s.npes < k ? s.npes : k), "%d hosts", nh);
    } else if (argc > 1) {
        int want = (int)pt_arg(argc, argv, 1, 1);
        PT_CHECK(ctx, nh == want, "%d hosts, expected %d", nh, want);
    }
    s.digest = digest;
    cp_msg *m = pt_alloc(ctx, sizeof digest);
    memcpy(cp_msg_data(m), &digest, sizeof digest);
    pt_send(ctx, 0, s.h_digest, m);
    return pt_run_and_finalize(ctx, "hosts");
}
