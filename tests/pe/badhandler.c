/*
 * badhandler: calls with an index that does not exist (handler, PE,
 * reducer) must fail at the call with CP_ERANGE and leave the message with
 * the caller, who then sends it properly; invalid allocations return NULL
 * instead of ending the process. Afterwards normal messages and a reduction
 * must still work on every PE.
 */
#include "pe_test.h"

typedef struct state {
    int me, npes;
    int h_ok, h_result;
    int received;
} state;

static void expect_erange(cp_ctx *ctx, int rc, const char *what) {
    PT_CHECK(ctx, rc == CP_ERANGE, "%s returned %d (%s), expected CP_ERANGE", what,
             rc, cp_strerror(rc));
}

static void on_ok(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    PT_CHECK(ctx, m->size == 32, "size %llu", (unsigned long long)m->size);
    size_t bad = pt_verify(cp_msg_data(m), 32, m->tag);
    PT_CHECK(ctx, bad == 32, "message reused after a refused call differs at %zu",
             bad);
    cp_msg_free(ctx, m);
    if (++s->received == s->npes) {
        cp_msg *c = pt_alloc(ctx, sizeof(int32_t));
        int32_t one = 1;
        memcpy(cp_msg_data(c), &one, sizeof one);
        int rc = cp_reduce(ctx, c, cp_reducer_builtin(CP_OP_SUM, CP_T_INT32), 0,
                           s->h_result);
        PT_CHECK(ctx, rc == 0, "cp_reduce after refused calls: %s",
                 cp_strerror(rc));
    }
}

static void on_result(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int32_t sum;
    memcpy(&sum, cp_msg_data(m), sizeof sum);
    cp_msg_free(ctx, m);
    PT_CHECK(ctx, sum == s->npes, "reduction after refused calls: %d, expected %d",
             sum, s->npes);
    printf("OK badhandler P=%d\n", s->npes);
    fflush(stdout);
    cp_exit(ctx, 0);
}

static void on_never(cp_ctx *ctx, void *arg) {
    (void)arg;
    PT_CHECK(ctx, 0, "a timer refused with CP_EINVAL ran");
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("badhandler", &argc, &argv);
    state s = {0};
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    s.h_ok = pt_handler(ctx, on_ok, &s);
    s.h_result = pt_handler(ctx, on_result, &s);
    int unregistered = (s.h_ok > s.h_result ? s.h_ok : s.h_result) + 1;
    int sum = cp_reducer_builtin(CP_OP_SUM, CP_T_INT32);

    const int codes[] = {CP_OK,    CP_ENOMEM, CP_EINVAL,      CP_ERANGE,
                         CP_ESYS, CP_ESTATE, CP_ETOOBIG, CP_ENOTRANSPORT};
    enum { NCODES = sizeof codes / sizeof codes[0] };
    for (int i = 0; i < NCODES; i++) {
        const char *a = cp_strerror(codes[i]);
        PT_CHECK(ctx, a && *a, "cp_strerror(%d) is empty", codes[i]);
        for (int j = 0; j < i; j++)
            PT_CHECK(ctx, strcmp(a, cp_strerror(codes[j])) != 0,
                     "cp_strerror(%d) and cp_strerror(%d) are both \"%s\"",
                     codes[i], codes[j], a);
    }
    PT_CHECK(ctx, cp_strerror(-12345) != NULL, "cp_strerror(-12345) is NULL");

    cp_msg *m = pt_alloc(ctx, 32);
    expect_erange(ctx, cp_send(ctx, s.me, unregistered, m),
                  "cp_send to an unregistered handler");
    expect_erange(ctx, cp_send(ctx, s.me, 1000000, m),
                  "cp_send to handler 1000000");
    expect_erange(ctx, cp_send(ctx, s.me, -1, m), "cp_send to handler -1");
    expect_erange(ctx, cp_send(ctx, s.npes, s.h_ok, m), "cp_send to PE npes");
    expect_erange(ctx, cp_send(ctx, -1, s.h_ok, m), "cp_send to PE -1");
    expect_erange(ctx, cp_bcast(ctx, unregistered, m),
                  "cp_bcast to an unregistered handler");
    expect_erange(ctx, cp_send_after(ctx, 0.01, unregistered, m),
                  "cp_send_after to an unregistered handler");
    expect_erange(ctx, cp_reduce(ctx, m, 1000000, 0, s.h_result),
                  "cp_reduce with reducer 1000000");
    expect_erange(ctx, cp_reduce(ctx, m, -1, 0, s.h_result),
                  "cp_reduce with reducer -1");
    expect_erange(ctx, cp_reduce(ctx, m, sum, s.npes, s.h_result),
                  "cp_reduce to root npes");
    expect_erange(ctx, cp_reduce(ctx, m, sum, 0, unregistered),
                  "cp_reduce to an unregistered handler");

    /* Invalid values (not indices) are CP_EINVAL; the message stays ours. */
    PT_CHECK(ctx, cp_send_after(ctx, -1.0, s.h_ok, m) == CP_EINVAL,
             "cp_send_after(-1 s) did not return CP_EINVAL");
    PT_CHECK(ctx, cp_send_after(ctx, 0.0 / 0.0, s.h_ok, m) == CP_EINVAL,
             "cp_send_after(NaN) did not return CP_EINVAL");
    cp_msg *odd = pt_alloc(ctx, 6);
    PT_CHECK(ctx, cp_reduce(ctx, odd, sum, 0, s.h_result) == CP_EINVAL,
             "cp_reduce of 6 bytes with an int32 reducer did not return "
             "CP_EINVAL");
    cp_msg_free(ctx, odd);
    PT_CHECK(ctx, cp_send(ctx, s.me, s.h_ok, NULL) == CP_EINVAL,
             "cp_send(NULL) did not return CP_EINVAL");

    int rc = cp_handler_register(ctx, NULL, NULL);
    PT_CHECK(ctx, rc < 0, "cp_handler_register(NULL) returned %d", rc);
    rc = cp_call_after(ctx, 0.01, NULL, NULL);
    PT_CHECK(ctx, rc < 0, "cp_call_after(NULL function) returned %d", rc);
    rc = cp_call_after(ctx, -0.5, on_never, NULL);
    PT_CHECK(ctx, rc == CP_EINVAL, "cp_call_after(-0.5 s) returned %d", rc);
    rc = cp_reducer_register(ctx, NULL, NULL);
    PT_CHECK(ctx, rc < 0, "cp_reducer_register(NULL) returned %d", rc);

    cp_msg *huge = cp_msg_alloc(ctx, SIZE_MAX);
    PT_CHECK(ctx, huge == NULL, "cp_msg_alloc(SIZE_MAX) did not return NULL");
    huge = cp_msg_alloc(ctx, (size_t)1 << 50);
    PT_CHECK(ctx, huge == NULL, "cp_msg_alloc(1 PiB) did not return NULL");

    /* The message refused above is still ours: fill and send it. */
    m->tag = 0xaa00u + (uint64_t)s.me;
    pt_fill(cp_msg_data(m), 32, m->tag);
    pt_send(ctx, (s.me + 1) % s.npes, s.h_ok, m);
    for (int pe = 0; pe < s.npes; pe++) {
        if (pe == (s.me + 1) % s.npes)
            continue;
        cp_msg *x = pt_alloc(ctx, 32);
        x->tag = 0xbb00u + (uint64_t)pe;
        pt_fill(cp_msg_data(x), 32, x->tag);
        pt_send(ctx, pe, s.h_ok, x);
    }
    return pt_run_and_finalize(ctx, "badhandler");
}
