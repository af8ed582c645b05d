/*
 * bcast: every PE broadcasts messages of several sizes at the same time.
 * Every PE must receive each broadcast exactly once with its size, tag and
 * payload intact. Receivers scribble over the payload before freeing it: a
 * copy still to be forwarded would show the damage. When a PE has all of
 * them it tells PE 0; PE 0 then broadcasts a final check, so a duplicate
 * that arrives late is still caught.
 */
#include "pe_test.h"

static const size_t sizes[] = {0, 1, 100, 5000, 70000, 1u << 20};
enum { NB = sizeof sizes / sizeof sizes[0] };

typedef struct state {
    int me, npes;
    int h_data, h_done, h_check, h_checked;
    unsigned char *count; /* [root * NB + idx] */
    long received;
    int done_from, checked_from;
    unsigned char *done_seen;
} state;

static uint64_t seed_of(int root, int idx) {
    return ((uint64_t)root << 16) ^ (uint64_t)idx ^ 0xb0b0;
}

static void on_data(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int root = (int)(m->tag >> 32), idx = (int)(m->tag & 0xffffffffu);
    PT_CHECK(ctx, root >= 0 && root < s->npes && idx >= 0 && idx < NB,
             "broadcast with tag %#llx: not one that was sent",
             (unsigned long long)m->tag);
    PT_CHECK(ctx, m->size == sizes[idx],
             "broadcast %d from root %d: size %llu, expected %zu", idx, root,
             (unsigned long long)m->size, sizes[idx]);
    size_t bad = pt_verify(cp_msg_data(m), sizes[idx], seed_of(root, idx));
    PT_CHECK(ctx, bad == sizes[idx],
             "broadcast %d from root %d (%zu bytes): payload differs at byte %zu",
             idx, root, sizes[idx], bad);
    unsigned char *c = &s->count[root * NB + idx];
    PT_CHECK(ctx, *c == 0, "broadcast %d from root %d delivered twice to PE %d",
             idx, root, s->me);
    (*c)++;
    memset(cp_msg_data(m), 0xee, sizes[idx]);
    cp_msg_free(ctx, m);
    if (++s->received == (long)s->npes * NB) {
        cp_msg *d = pt_alloc(ctx, sizeof(int));
        memcpy(cp_msg_data(d), &s->me, sizeof(int));
        pt_send(ctx, 0, s->h_done, d);
    }
}

static void on_done(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int from;
    memcpy(&from, cp_msg_data(m), sizeof from);
    cp_msg_free(ctx, m);
    PT_CHECK(ctx, from >= 0 && from < s->npes && !s->done_seen[from],
             "done message from PE %d (twice or invalid)", from);
    s->done_seen[from] = 1;
    if (++s->done_from == s->npes) {
        cp_msg *c = pt_alloc(ctx, 0);
        c->tag = 0xc4ec;
        pt_bcast(ctx, s->h_check, c);
    }
}

static void on_check(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    PT_CHECK(ctx, m->tag == 0xc4ec && m->size == 0, "check broadcast mangled");
    cp_msg_free(ctx, m);
    for (int r = 0; r < s->npes; r++)
        for (int i = 0; i < NB; i++)
            PT_CHECK(ctx, s->count[r * NB + i] == 1,
                     "PE %d got broadcast %d from root %d %d times", s->me, i,
                     r, s->count[r * NB + i]);
    pt_send(ctx, 0, s->h_checked, pt_alloc(ctx, 0));
}

static void on_checked(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    if (++s->checked_from == s->npes) {
        printf("OK bcast P=%d\n", s->npes);
        fflush(stdout);
        cp_exit(ctx, 0);
    }
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("bcast", &argc, &argv);
    state s = {0};
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    s.count = calloc((size_t)s.npes * NB, 1);
    s.done_seen = calloc((size_t)s.npes, 1);
    PT_CHECK(ctx, s.count && s.done_seen, "out of memory");
    s.h_data = pt_handler(ctx, on_data, &s);
    s.h_done = pt_handler(ctx, on_done, &s);
    s.h_check = pt_handler(ctx, on_check, &s);
    s.h_checked = pt_handler(ctx, on_checked, &s);
    for (int i = 0; i < NB; i++) {
        cp_msg *m = pt_alloc(ctx, sizes[i]);
        pt_fill(cp_msg_data(m), sizes[i], seed_of(s.me, i));
        m->tag = ((uint64_t)s.me << 32) | (uint64_t)i;
        pt_bcast(ctx, s.h_data, m);
    }
    int rc = pt_run_and_finalize(ctx, "bcast");
    free(s.count);
    free(s.done_seen);
    return rc;
}
