/*
 * mcast: every PE multicasts (cp_mcast) messages of several sizes to
 * several lists of PEs at the same time: every PE, the odd ones, the last
 * one only, every PE but the sender, the sender alone, and every third PE
 * from 1. A PE must receive each multicast exactly once when it is in the
 * list and never when it is not, with size, tag and payload intact (the
 * list after the payload must not show). Receivers scribble over the
 * payload before freeing it, so a copy still to be forwarded would show
 * the damage. Bad lists are refused (empty, unsorted, a PE twice, a PE out
 * of range). When a PE has all it must get it tells PE 0, which then
 * broadcasts a final check.
 */
#include "pe_test.h"

static const size_t sizes[] = {0, 1, 3, 100, 5000, 70001};
enum { NB = sizeof sizes / sizeof sizes[0], NL = 6 };

typedef struct state {
    int me, npes;
    int h_data, h_done, h_check, h_checked;
    unsigned char *count; /* [(root * NL + list) * NB + idx] */
    long received, expected;
    int done_from, checked_from;
} state;

/* Whether pe is in list l of sender root; fills out[] when given. */
static int in_list(int l, int root, int npes, int pe) {
    switch (l) {
    case 0: return 1;
    case 1: return pe % 2 == 1;
    case 2: return pe == npes - 1;
    case 3: return pe != root;
    case 4: return pe == root;
    default: return pe % 3 == 1;
    }
}

static int make_list(int l, int root, int npes, int *out) {
    int n = 0;
    for (int pe = 0; pe < npes; pe++)
        if (in_list(l, root, npes, pe))
            out[n++] = pe;
    return n;
}

static uint64_t seed_of(int root, int l, int idx) {
    return ((uint64_t)root << 20) ^ ((uint64_t)l << 8) ^ (uint64_t)idx ^ 0x3c3c;
}

static void on_data(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int root = (int)(m->tag >> 32), l = (int)((m->tag >> 16) & 0xffff),
        idx = (int)(m->tag & 0xffff);
    PT_CHECK(ctx, root >= 0 && root < s->npes && l < NL && idx < NB,
             "multicast with tag %#llx: not one that was sent", (unsigned long long)m->tag);
    PT_CHECK(ctx, in_list(l, root, s->npes, s->me),
             "multicast %d/%d from PE %d reached PE %d, which is not in its list", l, idx, root,
             s->me);
    PT_CHECK(ctx, m->size == sizes[idx], "multicast %d/%d from PE %d: size %llu, expected %zu",
             l, idx, root, (unsigned long long)m->size, sizes[idx]);
    size_t bad = pt_verify(cp_msg_data(m), sizes[idx], seed_of(root, l, idx));
    PT_CHECK(ctx, bad == sizes[idx], "multicast %d/%d from PE %d: payload differs at byte %zu",
             l, idx, root, bad);
    unsigned char *c = &s->count[(root * NL + l) * NB + idx];
    PT_CHECK(ctx, *c == 0, "multicast %d/%d from PE %d delivered twice to PE %d", l, idx, root,
             s->me);
    (*c)++;
    memset(cp_msg_data(m), 0xee, sizes[idx]);
    cp_msg_free(ctx, m);
    if (++s->received == s->expected)
        pt_send(ctx, 0, s->h_done, pt_alloc(ctx, 0));
}

static void on_done(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    if (++s->done_from == s->npes)
        pt_bcast(ctx, s->h_check, pt_alloc(ctx, 0));
}

static void on_check(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    for (int r = 0; r < s->npes; r++)
        for (int l = 0; l < NL; l++)
            for (int i = 0; i < NB; i++) {
                int want = in_list(l, r, s->npes, s->me);
                PT_CHECK(ctx, s->count[(r * NL + l) * NB + i] == want,
                         "PE %d got multicast %d/%d from PE %d %d times, expected %d", s->me, l,
                         i, r, s->count[(r * NL + l) * NB + i], want);
            }
    pt_send(ctx, 0, s->h_checked, pt_alloc(ctx, 0));
}

static void on_checked(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    if (++s->checked_from == s->npes) {
        printf("OK mcast P=%d\n", s->npes);
        fflush(stdout);
        cp_exit(ctx, 0);
    }
}

static void refused(cp_ctx *ctx, int h, const int *pes, int n, int want, const char *what) {
    cp_msg *m = pt_alloc(ctx, 8);
    int rc = cp_mcast(ctx, h, m, pes, n);
    PT_CHECK(ctx, rc == want, "cp_mcast with %s returned %d, expected %d", what, rc, want);
    cp_msg_free(ctx, m);
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("mcast", &argc, &argv);
    state s = {0};
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    s.count = calloc((size_t)s.npes * NL * NB, 1);
    int *list = calloc((size_t)s.npes + 1, sizeof *list);
    PT_CHECK(ctx, s.count && list, "out of memory");
    s.h_data = pt_handler(ctx, on_data, &s);
    s.h_done = pt_handler(ctx, on_done, &s);
    s.h_check = pt_handler(ctx, on_check, &s);
    s.h_checked = pt_handler(ctx, on_checked, &s);
    for (int r = 0; r < s.npes; r++)
        for (int l = 0; l < NL; l++)
            if (make_list(l, r, s.npes, list) > 0 && in_list(l, r, s.npes, s.me))
                s.expected += NB;
    int two[2] = {0, 0}, bad[1] = {s.npes};
    refused(ctx, s.h_data, list, 0, CP_EINVAL, "an empty list");
    refused(ctx, s.h_data, two, 2, CP_EINVAL, "a PE twice");
    refused(ctx, s.h_data, bad, 1, CP_ERANGE, "a PE out of range");
    refused(ctx, 999, two, 1, CP_ERANGE, "an unregistered handler");
    if (s.npes > 1) {
        int down[2] = {1, 0};
        refused(ctx, s.h_data, down, 2, CP_EINVAL, "an unsorted list");
    }
    if (s.expected == 0)
        pt_send(ctx, 0, s.h_done, pt_alloc(ctx, 0));
    for (int l = 0; l < NL; l++) {
        int n = make_list(l, s.me, s.npes, list);
        if (n == 0)
            continue;
        for (int i = 0; i < NB; i++) {
            cp_msg *m = pt_alloc(ctx, sizes[i]);
            pt_fill(cp_msg_data(m), sizes[i], seed_of(s.me, l, i));
            m->tag = ((uint64_t)s.me << 32) | ((uint64_t)l << 16) | (uint64_t)i;
            int rc = cp_mcast(ctx, s.h_data, m, list, n);
            PT_CHECK(ctx, rc == 0, "cp_mcast: %s", cp_strerror(rc));
        }
    }
    int rc = pt_run_and_finalize(ctx, "mcast");
    free(s.count);
    free(list);
    return rc;
}
