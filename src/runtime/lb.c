/*
 * Load-balancing strategies: pure functions from a load table to a
 * placement (runtime.h, cp_lb_place). Each works on a copy of the PE loads:
 * background load plus the load of the objects that stay, then places the
 * movable objects. O(n log n) in the objects, O(npes) memory besides.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *const lb_names[CP_LB_COUNT_] = {
    "DummyLB", "GreedyLB", "GreedyRefineLB", "RefineLB", "RandCentLB", "RotateLB",
    "GreedyCommLB",
};

int cp_lb_kind_of(const char *name) {
    for (int i = 0; name && i < CP_LB_COUNT_; i++)
        if (strcmp(name, lb_names[i]) == 0)
            return i;
    return CP_EINVAL;
}

const char *cp_lb_name(int kind) {
    return kind >= 0 && kind < CP_LB_COUNT_ ? lb_names[kind] : NULL;
}

static int check_input(const cp_lb_input *in) {
    if (!in || in->npes < 1 || (in->nobjs && !in->objs))
        return CP_EINVAL;
    for (size_t i = 0; i < in->nobjs; i++)
        if (in->objs[i].pe < 0 || in->objs[i].pe >= in->npes || !(in->objs[i].load >= 0))
            return CP_EINVAL;
    for (int p = 0; in->bg_load && p < in->npes; p++)
        if (!(in->bg_load[p] >= 0))
            return CP_EINVAL;
    if (in->nedges && !in->edges)
        return CP_EINVAL;
    for (size_t e = 0; e < in->nedges; e++)
        if (in->edges[e].a >= in->nobjs || in->edges[e].b >= in->nobjs ||
            !(in->edges[e].msgs >= 0) || !(in->edges[e].bytes >= 0) ||
            !isfinite(in->edges[e].msgs) || !isfinite(in->edges[e].bytes))
            return CP_EINVAL;
    return 0;
}

/* ---- a min-heap of PEs by load --------------------------------------------- */

typedef struct pe_heap {
    int *pe;      /* heap of PE numbers */
    double *load; /* load of each PE (indexed by PE) */
    int n;
} pe_heap;

static int lighter(const pe_heap *h, int a, int b) {
    double la = h->load[h->pe[a]], lb = h->load[h->pe[b]];
    return la < lb || (la == lb && h->pe[a] < h->pe[b]);
}

static void sift_down(pe_heap *h, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && lighter(h, l, m))
            m = l;
        if (r < h->n && lighter(h, r, m))
            m = r;
        if (m == i)
            return;
        int t = h->pe[i];
        h->pe[i] = h->pe[m];
        h->pe[m] = t;
        i = m;
    }
}

static void heap_build(pe_heap *h) {
    for (int i = h->n / 2 - 1; i >= 0; i--)
        sift_down(h, i);
}

/* Add `load` to the lightest PE and return it. */
static int heap_take(pe_heap *h, double load) {
    int pe = h->pe[0];
    h->load[pe] += load;
    sift_down(h, 0);
    return pe;
}

/* ---- helpers ------------------------------------------------------------------- */

/* Loads of the PEs with only the background and the objects that stay. */
static void fixed_loads(const cp_lb_input *in, double *load) {
    for (int p = 0; p < in->npes; p++)
        load[p] = in->bg_load ? in->bg_load[p] : 0;
    for (size_t i = 0; i < in->nobjs; i++)
        if (!in->objs[i].migratable)
            load[in->objs[i].pe] += in->objs[i].load;
}

typedef struct by_load {
    double load;
    size_t i;
} by_load;

/* Heaviest first; ties by index, so the result does not depend on qsort. */
static int heavier_first(const void *a, const void *b) {
    const by_load *x = a, *y = b;
    if (x->load != y->load)
        return x->load > y->load ? -1 : 1;
    return x->i < y->i ? -1 : (x->i > y->i);
}

/* The movable objects, heaviest first: a new array of their indices. */
static size_t *movable_by_load(const cp_lb_input *in, size_t *n) {
    size_t cap = in->nobjs ? in->nobjs : 1;
    size_t *idx = malloc(cap * sizeof *idx);
    by_load *tmp = malloc(cap * sizeof *tmp);
    if (!idx || !tmp) {
        free(idx);
        free(tmp);
        return NULL;
    }
    *n = 0;
    for (size_t i = 0; i < in->nobjs; i++)
        if (in->objs[i].migratable)
            tmp[(*n)++] = (by_load){in->objs[i].load, i};
    qsort(tmp, *n, sizeof *tmp, heavier_first);
    for (size_t k = 0; k < *n; k++)
        idx[k] = tmp[k].i;
    free(tmp);
    return idx;
}

static double tolerance(const cp_lb_input *in) {
    return in->tolerance > 0 ? in->tolerance : 1.05;
}

/* ---- the strategies ------------------------------------------------------------- */

/* What greedy and greedy_refine work with: the PEs' loads (those of the
 * objects that stay put first), a heap over the PEs, and the movable
 * objects heaviest first. */
typedef struct scratch {
    double *load;
    int *heap;
    size_t *idx, n;
} scratch;

static void scratch_free(scratch *s) {
    free(s->idx);
    free(s->load);
    free(s->heap);
}

static int scratch_init(const cp_lb_input *in, scratch *s) {
    s->load = malloc((size_t)in->npes * sizeof *s->load);
    s->heap = malloc((size_t)in->npes * sizeof *s->heap);
    s->idx = s->load && s->heap ? movable_by_load(in, &s->n) : NULL;
    if (!s->idx) {
        scratch_free(s);
        return CP_ENOMEM;
    }
    fixed_loads(in, s->load);
    return 0;
}

/* The movable objects not `placed` (NULL: none is), heaviest first, each to
 * the least loaded PE. */
static void place_greedily(const cp_lb_input *in, scratch *s, const char *placed,
                           int *new_pe) {
    pe_heap h = {s->heap, s->load, in->npes};
    for (int p = 0; p < in->npes; p++)
        s->heap[p] = p;
    heap_build(&h);
    for (size_t k = 0; k < s->n; k++)
        if (!placed || !placed[k])
            new_pe[s->idx[k]] = heap_take(&h, in->objs[s->idx[k]].load);
}

static int greedy(const cp_lb_input *in, int *new_pe, double *max_out) {
    scratch s;
    if (scratch_init(in, &s))
        return CP_ENOMEM;
    for (size_t i = 0; i < in->nobjs; i++)
        new_pe[i] = in->objs[i].pe;
    place_greedily(in, &s, NULL, new_pe);
    if (max_out) {
        double m = 0;
        for (int p = 0; p < in->npes; p++)
            m = s.load[p] > m ? s.load[p] : m;
        *max_out = m;
    }
    scratch_free(&s);
    return 0;
}

/* Heaviest first: an object stays where it is when its PE stays within
 * tolerance x greedy's maximum, else it goes to the least loaded PE. */
static int greedy_refine(const cp_lb_input *in, int *new_pe) {
    double gmax;
    int rc = greedy(in, new_pe, &gmax);
    if (rc)
        return rc;
    double limit = tolerance(in) * gmax;
    scratch s;
    if (scratch_init(in, &s))
        return CP_ENOMEM;
    /* Stay first: keep every object whose PE stays within the limit
     * (heaviest first), then place the others greedily. */
    char *placed = calloc(s.n ? s.n : 1, 1);
    if (!placed) {
        scratch_free(&s);
        return CP_ENOMEM;
    }
    for (size_t k = 0; k < s.n; k++) {
        const cp_lb_obj *o = &in->objs[s.idx[k]];
        if (s.load[o->pe] + o->load <= limit) {
            s.load[o->pe] += o->load;
            new_pe[s.idx[k]] = o->pe;
            placed[k] = 1;
        }
    }
    place_greedily(in, &s, placed, new_pe);
    free(placed);
    scratch_free(&s);
    return 0;
}

/* From the current placement: while the most loaded PE is above tolerance
 * x the average, move its heaviest object that fits on the least loaded PE
 * without putting that one above the limit. */
static int refine(const cp_lb_input *in, int *new_pe) {
    int np = in->npes;
    double *load = malloc((size_t)np * sizeof *load);
    size_t n;
    size_t *idx = load ? movable_by_load(in, &n) : NULL;
    if (!idx) {
        free(load);
        return CP_ENOMEM;
    }
    fixed_loads(in, load);
    double total = 0;
    for (int p = 0; p < np; p++)
        total += load[p];
    for (size_t k = 0; k < n; k++) {
        load[in->objs[idx[k]].pe] += in->objs[idx[k]].load;
        total += in->objs[idx[k]].load;
    }
    for (size_t i = 0; i < in->nobjs; i++)
        new_pe[i] = in->objs[i].pe;
    double limit = tolerance(in) * total / np;
    for (size_t rounds = 0; rounds <= n; rounds++) {
        int hi = 0, lo = 0;
        for (int p = 1; p < np; p++) {
            if (load[p] > load[hi])
                hi = p;
            if (load[p] < load[lo])
                lo = p;
        }
        if (load[hi] <= limit || hi == lo)
            break;
        size_t pick = n;
        for (size_t k = 0; k < n && pick == n; k++) /* heaviest first */
            if (new_pe[idx[k]] == hi && load[lo] + in->objs[idx[k]].load <= limit)
                pick = k;
        if (pick == n)
            break; /* nothing fits: as good as this strategy gets */
        double l = in->objs[idx[pick]].load;
        new_pe[idx[pick]] = lo;
        load[hi] -= l;
        load[lo] += l;
    }
    free(idx);
    free(load);
    return 0;
}

/* GreedyComm: heaviest first, each movable object to the PE p that
 * minimizes load[p] + its load + the cost of its messages (both ways) to the
 * objects already placed on other PEs (those that stay are placed from the
 * start); p is the least loaded PE or one where a neighbour is. The cost
 * of the cut messages is charged to p. */
static int greedy_comm(const cp_lb_input *in, int *new_pe) {
    double alpha = in->alpha > 0 ? in->alpha : 1e-5, beta = in->beta > 0 ? in->beta : 1e-9;
    size_t n = in->nobjs, ne = in->nedges;
    scratch s;
    if (scratch_init(in, &s))
        return CP_ENOMEM;
    /* Adjacency, both directions: start[i] .. start[i + 1] in nbr / cost. */
    size_t *start = calloc(n + 1, sizeof *start);
    size_t nadj = ne ? 2 * ne : 1;
    size_t *nbr = malloc(nadj * sizeof *nbr);
    double *cost = malloc(nadj * sizeof *cost);
    double *to_pe = calloc((size_t)in->npes, sizeof *to_pe);
    int *cand = malloc((size_t)in->npes * sizeof *cand);
    if (!start || !nbr || !cost || !to_pe || !cand) {
        free(start), free(nbr), free(cost), free(to_pe), free(cand);
        scratch_free(&s);
        return CP_ENOMEM;
    }
    for (size_t e = 0; e < ne; e++) {
        start[in->edges[e].a + 1]++;
        start[in->edges[e].b + 1]++;
    }
    for (size_t i = 0; i < n; i++)
        start[i + 1] += start[i];
    size_t *fill = malloc((n ? n : 1) * sizeof *fill);
    if (!fill) {
        free(start), free(nbr), free(cost), free(to_pe), free(cand);
        scratch_free(&s);
        return CP_ENOMEM;
    }
    memcpy(fill, start, n * sizeof *fill);
    for (size_t e = 0; e < ne; e++) {
        const cp_lb_edge *g = &in->edges[e];
        double c = alpha * g->msgs + beta * g->bytes;
        nbr[fill[g->a]] = g->b, cost[fill[g->a]++] = c;
        nbr[fill[g->b]] = g->a, cost[fill[g->b]++] = c;
    }
    free(fill);
    for (size_t i = 0; i < n; i++)
        new_pe[i] = in->objs[i].migratable ? -1 : in->objs[i].pe;
    for (size_t k = 0; k < s.n; k++) {
        size_t o = s.idx[k];
        /* Candidates: the least loaded PE, and the neighbours' PEs. */
        int nc = 0, least = 0;
        for (int p = 1; p < in->npes; p++)
            least = s.load[p] < s.load[least] ? p : least;
        cand[nc++] = least;
        double total = 0;
        for (size_t j = start[o]; j < start[o + 1]; j++) {
            int p = new_pe[nbr[j]];
            if (p < 0)
                continue;
            if (to_pe[p] == 0) {
                int seen = 0;
                for (int c = 0; c < nc && !seen; c++)
                    seen = cand[c] == p;
                if (!seen)
                    cand[nc++] = p;
            }
            to_pe[p] += cost[j];
            total += cost[j];
        }
        int best = -1;
        double best_t = 0;
        for (int c = 0; c < nc; c++) {
            int p = cand[c];
            double t = s.load[p] + in->objs[o].load + (total - to_pe[p]);
            if (best < 0 || t < best_t || (t == best_t && p < best))
                best = p, best_t = t;
        }
        new_pe[o] = best;
        s.load[best] = best_t;
        for (size_t j = start[o]; j < start[o + 1]; j++)
            if (new_pe[nbr[j]] >= 0)
                to_pe[new_pe[nbr[j]]] = 0;
    }
    free(start), free(nbr), free(cost), free(to_pe), free(cand);
    scratch_free(&s);
    return 0;
}

int cp_lb_place(int kind, const cp_lb_input *in, int *new_pe) {
    int rc = check_input(in);
    if (rc || kind < 0 || kind >= CP_LB_COUNT_ || (in->nobjs && !new_pe))
        return rc ? rc : CP_EINVAL;
    uint64_t x = in->seed;
    switch (kind) {
    case CP_LB_GREEDY:
        return greedy(in, new_pe, NULL);
    case CP_LB_GREEDY_REFINE:
        return greedy_refine(in, new_pe);
    case CP_LB_REFINE:
        return refine(in, new_pe);
    case CP_LB_GREEDY_COMM:
        return greedy_comm(in, new_pe);
    default:
        break;
    }
    for (size_t i = 0; i < in->nobjs; i++) {
        const cp_lb_obj *o = &in->objs[i];
        new_pe[i] = o->pe;
        if (!o->migratable)
            continue;
        if (kind == CP_LB_ROTATE) {
            new_pe[i] = (o->pe + 1) % in->npes;
        } else if (kind == CP_LB_RAND_CENT) {
            x += 0x9e3779b97f4a7c15ull; /* splitmix64 */
            uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            new_pe[i] = (int)((z ^ (z >> 31)) % (uint64_t)in->npes);
        }
    }
    return 0;
}

int cp_lb_figures_of(const cp_lb_input *in, const int *new_pe, cp_lb_figures *out) {
    int rc = check_input(in);
    if (rc || !out || (in->nobjs && !new_pe))
        return rc ? rc : CP_EINVAL;
    double *before = calloc((size_t)in->npes, sizeof *before);
    double *after = calloc((size_t)in->npes, sizeof *after);
    if (!before || !after) {
        free(before);
        free(after);
        return CP_ENOMEM;
    }
    double total = 0;
    memset(out, 0, sizeof *out);
    for (int p = 0; p < in->npes; p++) {
        double b = in->bg_load ? in->bg_load[p] : 0;
        before[p] = after[p] = b;
        total += b;
    }
    for (size_t i = 0; i < in->nobjs; i++) {
        if (new_pe[i] < 0 || new_pe[i] >= in->npes) {
            free(before);
            free(after);
            return CP_EINVAL;
        }
        before[in->objs[i].pe] += in->objs[i].load;
        after[new_pe[i]] += in->objs[i].load;
        total += in->objs[i].load;
        out->moves += new_pe[i] != in->objs[i].pe;
    }
    for (int p = 0; p < in->npes; p++) {
        out->max_before = before[p] > out->max_before ? before[p] : out->max_before;
        out->max_after = after[p] > out->max_after ? after[p] : out->max_after;
    }
    out->avg = total / in->npes;
    free(before);
    free(after);
    return 0;
}
