/*
 * storm: every PE sends K messages (argv[1], default 1000) to every PE,
 * itself included, in batches driven by a message to itself, so sending and
 * receiving interleave. Each message carries (src, dst, seq, checksum) and a
 * payload of varying length; the receiver checks all of it and that each
 * sender's messages arrive in order. When a PE has everything it contributes
 * its totals to a sum reduction that PE 0 compares with the totals it
 * computes on its own.
 */
#include "pe_test.h"

enum { BATCH = 50, MAX_EXTRA = 700 };

typedef struct storm_hdr {
    uint32_t src, dst;
    uint64_t seq;
    uint64_t checksum;
} storm_hdr;

typedef struct state {
    int me, npes;
    long k;
    int h_data, h_pump, h_result;
    long *next_to;   /* next seq to send, per destination */
    long *next_from; /* next seq expected, per source */
    long received;
    int64_t bytes_received;
    int64_t checksum32; /* sum of the low 32 bits of every checksum */
    uint64_t bytes_sent;
} state;

static size_t extra_len(uint32_t src, uint64_t seq) {
    return (size_t)((seq * 37 + src * 11) % MAX_EXTRA);
}

static uint64_t seed_of(uint32_t src, uint32_t dst, uint64_t seq) {
    return ((uint64_t)src << 48) ^ ((uint64_t)dst << 32) ^ seq;
}

static void contribute_totals(cp_ctx *ctx, state *s) {
    cp_counters c;
    cp_get_counters(ctx, &c);
    long sent = s->k * s->npes;
    PT_CHECK(ctx, c.msgs_sent >= (uint64_t)sent,
             "counters: msgs_sent %llu < %ld messages this PE sent",
             (unsigned long long)c.msgs_sent, sent);
    PT_CHECK(ctx, c.msgs_processed >= (uint64_t)s->received,
             "counters: msgs_processed %llu < %ld messages handled",
             (unsigned long long)c.msgs_processed, s->received);
    PT_CHECK(ctx, c.bytes_sent >= s->bytes_sent,
             "counters: bytes_sent %llu < %llu payload bytes sent",
             (unsigned long long)c.bytes_sent, (unsigned long long)s->bytes_sent);
    cp_msg *m = pt_alloc(ctx, 3 * sizeof(int64_t));
    int64_t *v = cp_msg_data(m);
    v[0] = s->received;
    v[1] = s->bytes_received;
    v[2] = s->checksum32;
    int rc = cp_reduce(ctx, m, cp_reducer_builtin(CP_OP_SUM, CP_T_INT64), 0,
                       s->h_result);
    PT_CHECK(ctx, rc == 0, "cp_reduce: %s", cp_strerror(rc));
}

static void on_data(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    PT_CHECK(ctx, m->size >= sizeof(storm_hdr), "message of %llu bytes",
             (unsigned long long)m->size);
    storm_hdr h;
    memcpy(&h, cp_msg_data(m), sizeof h);
    PT_CHECK(ctx, h.src < (uint32_t)s->npes && h.dst == (uint32_t)s->me,
             "message for PE %u from PE %u arrived at PE %d", h.dst, h.src, s->me);
    PT_CHECK(ctx, m->src_pe == h.src, "src_pe field %u, sender wrote %u",
             m->src_pe, h.src);
    PT_CHECK(ctx, m->tag == (((uint64_t)h.src << 32) | h.seq),
             "tag %#llx not carried unchanged (src %u seq %llu)",
             (unsigned long long)m->tag, h.src, (unsigned long long)h.seq);
    PT_CHECK(ctx, (long)h.seq == s->next_from[h.src],
             "from PE %u: seq %llu arrived, expected %ld (%s)", h.src,
             (unsigned long long)h.seq, s->next_from[h.src],
             (long)h.seq < s->next_from[h.src] ? "duplicate or reordered"
                                               : "lost or reordered");
    size_t n = extra_len(h.src, h.seq);
    PT_CHECK(ctx, m->size == sizeof h + n, "from PE %u seq %llu: size %llu, "
             "expected %zu", h.src, (unsigned long long)h.seq,
             (unsigned long long)m->size, sizeof h + n);
    size_t bad = pt_verify((char *)cp_msg_data(m) + sizeof h, n,
                           seed_of(h.src, h.dst, h.seq));
    PT_CHECK(ctx, bad == n, "from PE %u seq %llu: payload differs at byte %zu",
             h.src, (unsigned long long)h.seq, bad);
    s->next_from[h.src]++;
    s->received++;
    s->bytes_received += (int64_t)m->size;
    s->checksum32 += (int64_t)(h.checksum & 0xffffffffu);
    cp_msg_free(ctx, m);
    if (s->received == s->k * s->npes)
        contribute_totals(ctx, s);
}

static void send_batch(cp_ctx *ctx, state *s) {
    int more = 0;
    for (int d = 0; d < s->npes; d++) {
        int dst = (s->me + d) % s->npes;
        for (int i = 0; i < BATCH && s->next_to[dst] < s->k; i++) {
            uint64_t seq = (uint64_t)s->next_to[dst]++;
            size_t n = extra_len((uint32_t)s->me, seq);
            cp_msg *m = pt_alloc(ctx, sizeof(storm_hdr) + n);
            storm_hdr h = {(uint32_t)s->me, (uint32_t)dst, seq, 0};
            h.checksum = pt_fill((char *)cp_msg_data(m) + sizeof h, n,
                                 seed_of(h.src, h.dst, seq));
            memcpy(cp_msg_data(m), &h, sizeof h);
            m->tag = ((uint64_t)s->me << 32) | seq;
            s->bytes_sent += sizeof h + n;
            pt_send(ctx, dst, s->h_data, m);
        }
        if (s->next_to[dst] < s->k)
            more = 1;
    }
    if (more)
        pt_send(ctx, s->me, s->h_pump, pt_alloc(ctx, 0));
}

static void on_pump(cp_ctx *ctx, cp_msg *m, void *user) {
    cp_msg_free(ctx, m);
    send_batch(ctx, user);
}

static void on_result(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    PT_CHECK(ctx, m->size == 3 * sizeof(int64_t), "result of %llu bytes",
             (unsigned long long)m->size);
    int64_t got[3];
    memcpy(got, cp_msg_data(m), sizeof got);
    cp_msg_free(ctx, m);
    int64_t want[3] = {0, 0, 0};
    char *scratch = malloc(MAX_EXTRA);
    PT_CHECK(ctx, scratch != NULL, "out of memory");
    for (uint32_t src = 0; src < (uint32_t)s->npes; src++)
        for (uint32_t dst = 0; dst < (uint32_t)s->npes; dst++)
            for (uint64_t seq = 0; seq < (uint64_t)s->k; seq++) {
                size_t n = extra_len(src, seq);
                uint64_t sum = pt_fill(scratch, n, seed_of(src, dst, seq));
                want[0] += 1;
                want[1] += (int64_t)(sizeof(storm_hdr) + n);
                want[2] += (int64_t)(sum & 0xffffffffu);
            }
    free(scratch);
    PT_CHECK(ctx, got[0] == want[0], "%lld messages received in total, "
             "%lld sent", (long long)got[0], (long long)want[0]);
    PT_CHECK(ctx, got[1] == want[1], "%lld bytes received, %lld sent",
             (long long)got[1], (long long)want[1]);
    PT_CHECK(ctx, got[2] == want[2], "checksum total %lld, expected %lld",
             (long long)got[2], (long long)want[2]);
    printf("OK storm P=%d (%lld messages)\n", s->npes, (long long)got[0]);
    fflush(stdout);
    cp_exit(ctx, 0);
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("storm", &argc, &argv);
    state s = {0};
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    s.k = pt_arg(argc, argv, 1, 1000);
    s.next_to = calloc((size_t)s.npes, sizeof(long));
    s.next_from = calloc((size_t)s.npes, sizeof(long));
    PT_CHECK(ctx, s.next_to && s.next_from, "out of memory");
    s.h_data = pt_handler(ctx, on_data, &s);
    s.h_pump = pt_handler(ctx, on_pump, &s);
    s.h_result = pt_handler(ctx, on_result, &s);
    send_batch(ctx, &s);
    int rc = pt_run_and_finalize(ctx, "storm");
    free(s.next_to);
    free(s.next_from);
    return rc;
}
