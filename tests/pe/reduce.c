/*
 * reduce: reductions checked against results computed locally.
 *
 * Phase A, one at a time: every built-in op x type x length (1, 7, 1000,
 * and one empty reduction), rooted at varying PEs. Values are small
 * integers or dyadic fractions so every float sum and product is exact in
 * any order. The root checks the result and broadcasts the start of the
 * next reduction.
 *
 * Phase B, many in flight: every PE issues RB reductions back to back,
 * mixing built-ins and two user reducers (a gather that concatenates, and
 * an in-place bitwise OR that returns one of its parts), each rooted at a
 * different PE; the result names its reduction so each is checked once.
 */
#include "pe_test.h"

static const cp_op ops[] = {CP_OP_SUM,  CP_OP_PROD, CP_OP_MIN, CP_OP_MAX,
                            CP_OP_LAND, CP_OP_LOR,  CP_OP_LXOR};
static const char *const op_names[] = {"SUM",  "PROD", "MIN", "MAX",
                                       "LAND", "LOR",  "LXOR"};
static const cp_type types[] = {CP_T_INT32, CP_T_INT64, CP_T_FLOAT32,
                                CP_T_FLOAT64};
static const char *const type_names[] = {"INT32", "INT64", "FLOAT32",
                                         "FLOAT64"};
static const size_t lens[] = {1, 7, 1000};
enum {
    NOPS = sizeof ops / sizeof ops[0],
    NTYPES = sizeof types / sizeof types[0],
    NLENS = sizeof lens / sizeof lens[0],
    NA = NOPS * NTYPES * NLENS + 1, /* + one empty reduction */
    RB = 64
};

typedef struct pair {
    int64_t k, pe;
} pair;

typedef struct state {
    int me, npes;
    int h_go, h_res_a, h_res_sum, h_res_max, h_res_gather, h_res_or, h_done;
    int r_gather, r_or;
    int a_k; /* phase A: the reduction in progress */
    unsigned char seen_b[RB];
    int roots_b_expected, roots_b_got;
    int64_t gather_order[64][64]; /* per root: PE order of the first gather */
    unsigned char gather_order_set[64];
    int done_from;
    int combines; /* user combine calls on this PE */
} state;

/* ---- phase A: values and expected results ------------------------------ */

static void a_combo(int k, cp_op *op, cp_type *t, size_t *len, int *opi,
                    int *ti) {
    if (k == NA - 1) { /* the empty reduction */
        *opi = 0, *ti = 0, *op = CP_OP_SUM, *t = CP_T_INT32, *len = 0;
        return;
    }
    *opi = k / (NTYPES * NLENS);
    *ti = (k / NLENS) % NTYPES;
    *op = ops[*opi];
    *t = types[*ti];
    *len = lens[k % NLENS];
}

static int a_root(int k, int npes) { return (k * 5 + 1) % npes; }

/* Which (p, i) are zero for the logical ops. */
static int truth(cp_op op, int p, size_t i, int npes) {
    int special = i % 3 == 0 && (size_t)p == (i / 3) % (size_t)npes;
    switch (op) {
    case CP_OP_LAND: return !special;
    case CP_OP_LOR: return special;
    default: return ((size_t)p + 2 * i) % 3 == 0; /* LXOR */
    }
}

static int64_t gen_i(cp_op op, cp_type t, int p, size_t i, int npes) {
    int64_t ii = (int64_t)i;
    static const int64_t factors[] = {1, -1, 2, -2, 3};
    switch (op) {
    case CP_OP_SUM:
        return t == CP_T_INT32 ? (p + 1) * 1000 + ii * 3 - 1500
                               : ((int64_t)(p + 1) << 33) + ii - 7;
    case CP_OP_PROD: {
        int64_t f = factors[(p * 3 + ii) % 5];
        return t == CP_T_INT64 && p == 0 ? f * ((int64_t)1 << 20) : f;
    }
    case CP_OP_MIN:
    case CP_OP_MAX:
        return ((p * 7 + ii * 13) % 17 - 8) *
               (t == CP_T_INT64 ? ((int64_t)1 << 35) : 1000);
    default:
        if (!truth(op, p, i, npes))
            return 0;
        return ((p + ii) % 5 + 1) * ((p + ii) % 2 ? -1 : 1);
    }
}

static double gen_f(cp_op op, int p, size_t i, int npes) {
    static const double factors[] = {1, -1, 2, -0.5, 0.25};
    int ii = (int)i;
    switch (op) {
    case CP_OP_SUM: return ((p * 5 + ii * 3) % 11 - 5) * 0.25 + (p + 1) * 0.5;
    case CP_OP_PROD: return factors[(p * 3 + ii) % 5];
    case CP_OP_MIN:
    case CP_OP_MAX: return ((p * 7 + ii * 13) % 17 - 8) * 0.25;
    default:
        if (!truth(op, p, i, npes))
            return 0.0;
        return ((p + ii) % 5 + 1) * ((p + ii) % 2 ? -0.5 : 0.5);
    }
}

static int is_float(cp_type t) { return t == CP_T_FLOAT32 || t == CP_T_FLOAT64; }

static void put(void *buf, cp_type t, size_t i, int64_t iv, double fv) {
    switch (t) {
    case CP_T_INT32: ((int32_t *)buf)[i] = (int32_t)iv; break;
    case CP_T_INT64: ((int64_t *)buf)[i] = iv; break;
    case CP_T_FLOAT32: ((float *)buf)[i] = (float)fv; break;
    default: ((double *)buf)[i] = fv; break;
    }
}

static void get(const void *buf, cp_type t, size_t i, int64_t *iv, double *fv) {
    switch (t) {
    case CP_T_INT32: *iv = ((const int32_t *)buf)[i]; break;
    case CP_T_INT64: *iv = ((const int64_t *)buf)[i]; break;
    case CP_T_FLOAT32: *fv = ((const float *)buf)[i]; break;
    default: *fv = ((const double *)buf)[i]; break;
    }
}

static void expected(cp_op op, cp_type t, size_t i, int npes, int64_t *iv,
                     double *fv) {
    int64_t ai = 0;
    double af = 0;
    int count_true = 0;
    for (int p = 0; p < npes; p++) {
        int64_t xi = is_float(t) ? 0 : gen_i(op, t, p, i, npes);
        double xf = is_float(t) ? gen_f(op, p, i, npes) : 0;
        int nz = is_float(t) ? xf != 0.0 : xi != 0;
        count_true += nz;
        if (p == 0) {
            ai = xi, af = xf;
            continue;
        }
        switch (op) {
        case CP_OP_SUM: ai += xi, af += xf; break;
        case CP_OP_PROD: ai *= xi, af *= xf; break;
        case CP_OP_MIN: ai = xi < ai ? xi : ai, af = xf < af ? xf : af; break;
        case CP_OP_MAX: ai = xi > ai ? xi : ai, af = xf > af ? xf : af; break;
        default: break;
        }
    }
    switch (op) {
    case CP_OP_LAND: ai = count_true == npes, af = (double)ai; break;
    case CP_OP_LOR: ai = count_true > 0, af = (double)ai; break;
    case CP_OP_LXOR: ai = count_true % 2, af = (double)ai; break;
    default: break;
    }
    if (t == CP_T_FLOAT32)
        af = (float)af;
    *iv = ai;
    *fv = af;
}

static void a_contribute(cp_ctx *ctx, state *s, int k) {
    cp_op op;
    cp_type t;
    size_t len;
    int opi, ti;
    a_combo(k, &op, &t, &len, &opi, &ti);
    PT_CHECK(ctx, cp_type_size(t) == (t == CP_T_INT32 || t == CP_T_FLOAT32 ? 4u : 8u),
             "cp_type_size(%s) = %zu", type_names[ti], cp_type_size(t));
    int red = cp_reducer_builtin(op, t);
    PT_CHECK(ctx, red >= 0, "cp_reducer_builtin(%s, %s): %s", op_names[opi],
             type_names[ti], cp_strerror(red));
    cp_msg *m = pt_alloc(ctx, len * cp_type_size(t));
    for (size_t i = 0; i < len; i++)
        put(cp_msg_data(m), t, i, is_float(t) ? 0 : gen_i(op, t, s->me, i, s->npes),
            is_float(t) ? gen_f(op, s->me, i, s->npes) : 0);
    int rc = cp_reduce(ctx, m, red, a_root(k, s->npes), s->h_res_a);
    PT_CHECK(ctx, rc == 0, "cp_reduce #%d (%s %s len %zu): %s", k,
             op_names[opi], type_names[ti], len, cp_strerror(rc));
}

static void b_start(cp_ctx *ctx, state *s);

static void on_go(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int k;
    PT_CHECK(ctx, m->size == sizeof k, "go message of %llu bytes",
             (unsigned long long)m->size);
    memcpy(&k, cp_msg_data(m), sizeof k);
    cp_msg_free(ctx, m);
    PT_CHECK(ctx, k == s->a_k + 1, "go for reduction %d after %d", k, s->a_k);
    s->a_k = k;
    if (k < NA)
        a_contribute(ctx, s, k);
    else
        b_start(ctx, s);
}

static void on_result_a(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int k = s->a_k;
    cp_op op;
    cp_type t;
    size_t len;
    int opi, ti;
    a_combo(k, &op, &t, &len, &opi, &ti);
    PT_CHECK(ctx, s->me == a_root(k, s->npes),
             "result of reduction %d arrived at PE %d, root is %d", k, s->me,
             a_root(k, s->npes));
    PT_CHECK(ctx, m->size == len * cp_type_size(t),
             "reduction %d (%s %s len %zu): result of %llu bytes", k,
             op_names[opi], type_names[ti], len, (unsigned long long)m->size);
    for (size_t i = 0; i < len; i++) {
        int64_t gi = 0, wi = 0;
        double gf = 0, wf = 0;
        get(cp_msg_data(m), t, i, &gi, &gf);
        expected(op, t, i, s->npes, &wi, &wf);
        if (is_float(t))
            PT_CHECK(ctx, gf == wf, "%s %s len %zu root %d: element %zu is %.17g,"
                     " expected %.17g", op_names[opi], type_names[ti], len,
                     a_root(k, s->npes), i, gf, wf);
        else
            PT_CHECK(ctx, gi == wi, "%s %s len %zu root %d: element %zu is %lld,"
                     " expected %lld", op_names[opi], type_names[ti], len,
                     a_root(k, s->npes), i, (long long)gi, (long long)wi);
    }
    cp_msg_free(ctx, m);
    cp_msg *go = pt_alloc(ctx, sizeof(int));
    int next = k + 1;
    memcpy(cp_msg_data(go), &next, sizeof next);
    pt_bcast(ctx, s->h_go, go);
}

/* ---- user reducers ------------------------------------------------------ */

static cp_msg *combine_gather(cp_ctx *ctx, cp_msg *const *parts, int n,
                              void *user) {
    state *s = user;
    s->combines++;
    PT_CHECK(ctx, n >= 2, "combine called with %d parts", n);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        PT_CHECK(ctx, parts[i]->size > 0 && parts[i]->size % sizeof(pair) == 0,
                 "gather part %d of %llu bytes", i,
                 (unsigned long long)parts[i]->size);
        total += parts[i]->size;
    }
    pair first;
    memcpy(&first, cp_msg_data(parts[0]), sizeof first);
    PT_CHECK(ctx, first.pe == s->me,
             "combine on PE %d: first part starts with PE %lld's contribution,"
             " expected the caller's own first", s->me, (long long)first.pe);
    cp_msg *out = cp_msg_alloc(ctx, total);
    if (!out)
        return NULL;
    char *w = cp_msg_data(out);
    for (int i = 0; i < n; i++) {
        memcpy(w, cp_msg_data(parts[i]), parts[i]->size);
        w += parts[i]->size;
    }
    return out;
}

/* Element-wise OR into parts[0], which is returned. */
static cp_msg *combine_or(cp_ctx *ctx, cp_msg *const *parts, int n,
                          void *user) {
    state *s = user;
    s->combines++;
    PT_CHECK(ctx, n >= 2, "combine called with %d parts", n);
    uint64_t *acc = cp_msg_data(parts[0]);
    for (int i = 1; i < n; i++) {
        PT_CHECK(ctx, parts[i]->size == parts[0]->size,
                 "or parts of %llu and %llu bytes",
                 (unsigned long long)parts[i]->size,
                 (unsigned long long)parts[0]->size);
        const uint64_t *x = cp_msg_data(parts[i]);
        for (size_t j = 0; j < parts[0]->size / sizeof(uint64_t); j++)
            acc[j] |= x[j];
    }
    return parts[0];
}

/* ---- phase B ------------------------------------------------------------ */

static int b_root(int k, int npes) { return (k * 3) % npes; }

static void b_mark(cp_ctx *ctx, state *s, int64_t k, const char *what) {
    PT_CHECK(ctx, k >= 0 && k < RB, "%s result names reduction %lld", what,
             (long long)k);
    PT_CHECK(ctx, b_root((int)k, s->npes) == s->me,
             "%s result of reduction %lld at PE %d, root is %d", what,
             (long long)k, s->me, b_root((int)k, s->npes));
    PT_CHECK(ctx, !s->seen_b[k], "%s result of reduction %lld delivered twice",
             what, (long long)k);
    s->seen_b[k] = 1;
    if (++s->roots_b_got == s->roots_b_expected)
        pt_send(ctx, 0, s->h_done, pt_alloc(ctx, 0));
}

static void b_start(cp_ctx *ctx, state *s) {
    for (int k = 0; k < RB; k++)
        if (b_root(k, s->npes) == s->me)
            s->roots_b_expected++;
    for (int k = 0; k < RB; k++) {
        int root = b_root(k, s->npes), rc;
        cp_msg *m;
        switch (k % 4) {
        case 0: {
            m = pt_alloc(ctx, 2 * sizeof(int64_t));
            int64_t v[2] = {k, s->me + 1};
            memcpy(cp_msg_data(m), v, sizeof v);
            rc = cp_reduce(ctx, m, cp_reducer_builtin(CP_OP_SUM, CP_T_INT64),
                           root, s->h_res_sum);
            break;
        }
        case 1: {
            m = pt_alloc(ctx, 2 * sizeof(int32_t));
            int32_t v[2] = {k, s->me * (k + 1)};
            memcpy(cp_msg_data(m), v, sizeof v);
            rc = cp_reduce(ctx, m, cp_reducer_builtin(CP_OP_MAX, CP_T_INT32),
                           root, s->h_res_max);
            break;
        }
        case 2: {
            m = pt_alloc(ctx, sizeof(pair));
            pair v = {k, s->me};
            memcpy(cp_msg_data(m), &v, sizeof v);
            rc = cp_reduce(ctx, m, s->r_gather, root, s->h_res_gather);
            break;
        }
        default: {
            m = pt_alloc(ctx, 2 * sizeof(uint64_t));
            uint64_t v[2] = {(uint64_t)k, (uint64_t)1 << s->me};
            memcpy(cp_msg_data(m), v, sizeof v);
            rc = cp_reduce(ctx, m, s->r_or, root, s->h_res_or);
            break;
        }
        }
        PT_CHECK(ctx, rc == 0, "phase B cp_reduce #%d: %s", k, cp_strerror(rc));
    }
    if (s->roots_b_expected == 0)
        pt_send(ctx, 0, s->h_done, pt_alloc(ctx, 0));
}

static void on_res_sum(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int64_t v[2];
    PT_CHECK(ctx, m->size == sizeof v, "sum result of %llu bytes",
             (unsigned long long)m->size);
    memcpy(v, cp_msg_data(m), sizeof v);
    cp_msg_free(ctx, m);
    PT_CHECK(ctx, v[0] % s->npes == 0, "sum result [%lld, %lld]", (long long)v[0],
             (long long)v[1]);
    PT_CHECK(ctx, v[1] == (int64_t)s->npes * (s->npes + 1) / 2,
             "sum of reduction %lld: %lld, expected %d", (long long)(v[0] / s->npes),
             (long long)v[1], s->npes * (s->npes + 1) / 2);
    b_mark(ctx, s, v[0] / s->npes, "sum");
}

static void on_res_max(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int32_t v[2];
    PT_CHECK(ctx, m->size == sizeof v, "max result of %llu bytes",
             (unsigned long long)m->size);
    memcpy(v, cp_msg_data(m), sizeof v);
    cp_msg_free(ctx, m);
    PT_CHECK(ctx, v[1] == (s->npes - 1) * (v[0] + 1),
             "max of reduction %d: %d, expected %d", v[0], v[1],
             (s->npes - 1) * (v[0] + 1));
    b_mark(ctx, s, v[0], "max");
}

static void on_res_gather(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    PT_CHECK(ctx, m->size == (size_t)s->npes * sizeof(pair),
             "gather result of %llu bytes, expected %zu",
             (unsigned long long)m->size, (size_t)s->npes * sizeof(pair));
    const pair *v = cp_msg_data(m);
    unsigned char seen[64] = {0};
    for (int i = 0; i < s->npes; i++) {
        PT_CHECK(ctx, v[i].k == v[0].k, "gather mixes reductions %lld and %lld",
                 (long long)v[0].k, (long long)v[i].k);
        PT_CHECK(ctx, v[i].pe >= 0 && v[i].pe < s->npes && !seen[v[i].pe],
                 "gather of reduction %lld: PE %lld missing, twice or invalid",
                 (long long)v[0].k, (long long)v[i].pe);
        seen[v[i].pe] = 1;
    }
    /* Same root, same tree: the order must be the same every time. */
    int root = s->me;
    if (!s->gather_order_set[root]) {
        for (int i = 0; i < s->npes; i++)
            s->gather_order[root][i] = v[i].pe;
        s->gather_order_set[root] = 1;
    } else {
        for (int i = 0; i < s->npes; i++)
            PT_CHECK(ctx, s->gather_order[root][i] == v[i].pe,
                     "gather to root %d: position %d holds PE %lld, an earlier "
                     "gather had PE %lld: order not deterministic", root, i,
                     (long long)v[i].pe, (long long)s->gather_order[root][i]);
    }
    int64_t k = v[0].k;
    cp_msg_free(ctx, m);
    b_mark(ctx, s, k, "gather");
}

static void on_res_or(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    uint64_t v[2];
    PT_CHECK(ctx, m->size == sizeof v, "or result of %llu bytes",
             (unsigned long long)m->size);
    memcpy(v, cp_msg_data(m), sizeof v);
    cp_msg_free(ctx, m);
    uint64_t all = s->npes == 64 ? ~(uint64_t)0 : ((uint64_t)1 << s->npes) - 1;
    PT_CHECK(ctx, v[1] == all, "or of reduction %llu: %#llx, expected %#llx",
             (unsigned long long)v[0], (unsigned long long)v[1],
             (unsigned long long)all);
    b_mark(ctx, s, (int64_t)v[0], "or");
}

static void on_done(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    if (++s->done_from == s->npes) {
        printf("OK reduce P=%d (%d one at a time, %d in flight)\n", s->npes, NA,
               RB);
        fflush(stdout);
        cp_exit(ctx, 0);
    }
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("reduce", &argc, &argv);
    static state s;
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    PT_CHECK(ctx, s.npes <= 64, "this test handles up to 64 PEs");
    s.h_go = pt_handler(ctx, on_go, &s);
    s.h_res_a = pt_handler(ctx, on_result_a, &s);
    s.h_res_sum = pt_handler(ctx, on_res_sum, &s);
    s.h_res_max = pt_handler(ctx, on_res_max, &s);
    s.h_res_gather = pt_handler(ctx, on_res_gather, &s);
    s.h_res_or = pt_handler(ctx, on_res_or, &s);
    s.h_done = pt_handler(ctx, on_done, &s);
    s.r_gather = cp_reducer_register(ctx, combine_gather, &s);
    s.r_or = cp_reducer_register(ctx, combine_or, &s);
    PT_CHECK(ctx, s.r_gather >= 0 && s.r_or >= 0 && s.r_gather != s.r_or,
             "cp_reducer_register returned %d and %d", s.r_gather, s.r_or);
    for (int o = 0; o < NOPS; o++)
        for (int t = 0; t < NTYPES; t++) {
            int r = cp_reducer_builtin(ops[o], types[t]);
            PT_CHECK(ctx, r >= 0 && r != s.r_gather && r != s.r_or,
                     "builtin reducer %s %s has index %d, same as a user one",
                     op_names[o], type_names[t], r);
        }
    PT_CHECK(ctx, cp_reducer_builtin(CP_OP_COUNT_, CP_T_INT32) < 0 &&
                      cp_reducer_builtin(CP_OP_SUM, CP_T_COUNT_) < 0,
             "cp_reducer_builtin accepts an invalid op or type");
    PT_CHECK(ctx, cp_type_size(CP_T_COUNT_) == 0, "cp_type_size of an invalid type");
    s.a_k = 0;
    a_contribute(ctx, &s, 0);
    return pt_run_and_finalize(ctx, "reduce");
}
