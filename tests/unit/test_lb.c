/*
 * Unit tests of the load-balancing strategies (src/runtime/lb.c): pure
 * functions from a load table to a placement, tested without PEs. Every
 * strategy keeps pinned objects where they are and places everything on a
 * PE that exists; each one's own promise is checked on tables where the
 * right answer is known, and on random tables against simple bounds.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "charmpy/runtime.h"
#include "unit_test.h"

#define MAXO 4096

static cp_lb_obj objs[MAXO];
static int out[MAXO];

static cp_lb_input table(int npes, size_t n) {
    cp_lb_input in = {.npes = npes, .objs = objs, .nobjs = n, .seed = 7};
    return in;
}

static void fill_random(uint64_t seed, int npes, size_t n, int pinned_every) {
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        objs[i].pe = (int)(ut_rand(&s) % (uint64_t)npes);
        objs[i].load = (double)(ut_rand(&s) % 1000) / 100.0;
        objs[i].migratable = pinned_every ? (i % (size_t)pinned_every) != 0 : 1;
    }
}

/* Invariants of any placement. */
static int check_valid(const cp_lb_input *in, const int *pe, const char *what) {
    for (size_t i = 0; i < in->nobjs; i++) {
        UT_CHECK(pe[i] >= 0 && pe[i] < in->npes, "%s: object %zu on PE %d of %d", what, i,
                 pe[i], in->npes);
        UT_CHECK(in->objs[i].migratable || pe[i] == in->objs[i].pe,
                 "%s: pinned object %zu moved from PE %d to %d", what, i, in->objs[i].pe,
                 pe[i]);
    }
    return 0;
}

static int test_names(void) {
    static const char *names[] = {"DummyLB", "GreedyLB", "GreedyRefineLB", "RefineLB",
                                  "RandCentLB", "RotateLB", "GreedyCommLB"};
    for (int k = 0; k < CP_LB_COUNT_; k++) {
        UT_CHECK(cp_lb_kind_of(names[k]) == k, "%s", names[k]);
        UT_CHECK(strcmp(cp_lb_name(k), names[k]) == 0, "%d", k);
    }
    UT_CHECK(cp_lb_kind_of("NoSuchLB") == CP_EINVAL, "unknown name");
    UT_CHECK(cp_lb_kind_of(NULL) == CP_EINVAL, "NULL name");
    UT_CHECK(cp_lb_name(CP_LB_COUNT_) == NULL && cp_lb_name(-1) == NULL, "bad kind");
    return 0;
}

static int test_bad_input(void) {
    objs[0] = (cp_lb_obj){0, 1, 1.0};
    cp_lb_input in = table(2, 1);
    UT_CHECK(cp_lb_place(CP_LB_COUNT_, &in, out) == CP_EINVAL, "bad kind");
    in.npes = 0;
    UT_CHECK(cp_lb_place(CP_LB_GREEDY, &in, out) == CP_EINVAL, "no PEs");
    in.npes = 2;
    objs[0].pe = 2;
    UT_CHECK(cp_lb_place(CP_LB_GREEDY, &in, out) == CP_EINVAL, "object on PE 2 of 2");
    objs[0] = (cp_lb_obj){0, 1, -1.0};
    UT_CHECK(cp_lb_place(CP_LB_GREEDY, &in, out) == CP_EINVAL, "negative load");
    objs[0].load = NAN;
    UT_CHECK(cp_lb_place(CP_LB_ROTATE, &in, out) == CP_EINVAL, "NaN load");
    in.nobjs = 0;
    UT_CHECK(cp_lb_place(CP_LB_GREEDY, &in, out) == 0, "no objects is fine");
    return 0;
}

static int test_dummy(void) {
    fill_random(1, 5, 100, 0);
    cp_lb_input in = table(5, 100);
    UT_CHECK(cp_lb_place(CP_LB_DUMMY, &in, out) == 0, "place");
    cp_lb_figures f;
    UT_CHECK(cp_lb_figures_of(&in, out, &f) == 0, "figures");
    UT_CHECK(f.moves == 0 && f.max_after == f.max_before, "DummyLB moved %zu", f.moves);
    return check_valid(&in, out, "DummyLB");
}

static int test_rotate(void) {
    fill_random(2, 4, 200, 3);
    cp_lb_input in = table(4, 200);
    UT_CHECK(cp_lb_place(CP_LB_ROTATE, &in, out) == 0, "place");
    for (size_t i = 0; i < 200; i++)
        UT_CHECK(out[i] == (objs[i].migratable ? (objs[i].pe + 1) % 4 : objs[i].pe),
                 "object %zu: PE %d -> %d", i, objs[i].pe, out[i]);
    objs[0] = (cp_lb_obj){0, 1, 1.0};
    in = table(1, 1);
    UT_CHECK(cp_lb_place(CP_LB_ROTATE, &in, out) == 0 && out[0] == 0, "one PE: stays");
    return 0;
}

static int test_randcent(void) {
    fill_random(3, 7, 1000, 4);
    cp_lb_input in = table(7, 1000);
    static int again[MAXO];
    UT_CHECK(cp_lb_place(CP_LB_RAND_CENT, &in, out) == 0, "place");
    UT_CHECK(cp_lb_place(CP_LB_RAND_CENT, &in, again) == 0, "place again");
    UT_CHECK(memcmp(out, again, 1000 * sizeof *out) == 0, "same seed, other placement");
    int used[7] = {0};
    for (size_t i = 0; i < 1000; i++)
        used[out[i]]++;
    for (int p = 0; p < 7; p++)
        UT_CHECK(used[p] > 50, "PE %d got only %d of 1000 objects", p, used[p]);
    in.seed = 8;
    UT_CHECK(cp_lb_place(CP_LB_RAND_CENT, &in, again) == 0, "other seed");
    UT_CHECK(memcmp(out, again, 1000 * sizeof *out) != 0, "the seed changes nothing");
    return check_valid(&in, out, "RandCentLB");
}

/* GreedyLB on a table whose best placement is known: 4 3 3 2 2 2 on two
 * PEs -> 8 and 8. */
static int test_greedy_known(void) {
    static const double loads[] = {2, 3, 4, 2, 3, 2};
    for (int i = 0; i < 6; i++)
        objs[i] = (cp_lb_obj){0, 1, loads[i]};
    cp_lb_input in = table(2, 6);
    UT_CHECK(cp_lb_place(CP_LB_GREEDY, &in, out) == 0, "place");
    cp_lb_figures f;
    UT_CHECK(cp_lb_figures_of(&in, out, &f) == 0, "figures");
    UT_CHECK(f.max_before == 16 && f.max_after == 8 && f.avg == 8,
             "max before %.1f after %.1f avg %.1f", f.max_before, f.max_after, f.avg);
    /* Background load counts: PE 0 busy with 6 s of other work. */
    double bg[2] = {6, 0};
    in.bg_load = bg;
    UT_CHECK(cp_lb_place(CP_LB_GREEDY, &in, out) == 0, "place with background");
    UT_CHECK(cp_lb_figures_of(&in, out, &f) == 0, "figures");
    UT_CHECK(f.max_after == 11, "max after %.1f with background 6/0 (expected 11)",
             f.max_after);
    return 0;
}

/* On random tables greedy is within the classic bound: max <= avg + the
 * heaviest movable object (pinned ones included in the loads). */
static int test_greedy_random(void) {
    for (uint64_t seed = 10; seed < 30; seed++) {
        int npes = 2 + (int)(seed % 7);
        fill_random(seed, npes, 500, seed % 2 ? 5 : 0);
        cp_lb_input in = table(npes, 500);
        UT_CHECK(cp_lb_place(CP_LB_GREEDY, &in, out) == 0, "place");
        if (check_valid(&in, out, "GreedyLB"))
            return 1;
        cp_lb_figures f;
        UT_CHECK(cp_lb_figures_of(&in, out, &f) == 0, "figures");
        double heaviest = 0, pinned_max = 0, pinned[16] = {0};
        for (size_t i = 0; i < 500; i++) {
            if (objs[i].migratable && objs[i].load > heaviest)
                heaviest = objs[i].load;
            if (!objs[i].migratable)
                pinned[objs[i].pe] += objs[i].load;
        }
        for (int p = 0; p < npes; p++)
            pinned_max = pinned[p] > pinned_max ? pinned[p] : pinned_max;
        double bound = (f.avg > pinned_max ? f.avg : pinned_max) + heaviest + 1e-9;
        UT_CHECK(f.max_after <= bound, "seed %llu: max %.2f above avg %.2f + heaviest %.2f",
                 (unsigned long long)seed, f.max_after, f.avg, heaviest);
        UT_CHECK(f.max_after <= f.max_before + 1e-9, "seed %llu: greedy made it worse",
                 (unsigned long long)seed);
    }
    return 0;
}

/* GreedyRefineLB: within tolerance x greedy's max, and it moves no object
 * on a table that is already balanced, fewer than greedy on a random one. */
static int test_greedy_refine(void) {
    for (int i = 0; i < 8; i++)
        objs[i] = (cp_lb_obj){i % 4, 1, 1.0};
    cp_lb_input in = table(4, 8);
    UT_CHECK(cp_lb_place(CP_LB_GREEDY_REFINE, &in, out) == 0, "place");
    cp_lb_figures f;
    UT_CHECK(cp_lb_figures_of(&in, out, &f) == 0, "figures");
    UT_CHECK(f.moves == 0, "balanced table: %zu moves", f.moves);
    static int greedy_pe[MAXO];
    for (uint64_t seed = 40; seed < 50; seed++) {
        fill_random(seed, 6, 600, seed % 2 ? 7 : 0);
        in = table(6, 600);
        in.tolerance = 1.1;
        cp_lb_figures g, r;
        UT_CHECK(cp_lb_place(CP_LB_GREEDY, &in, greedy_pe) == 0, "greedy");
        UT_CHECK(cp_lb_place(CP_LB_GREEDY_REFINE, &in, out) == 0, "refine");
        if (check_valid(&in, out, "GreedyRefineLB"))
            return 1;
        UT_CHECK(cp_lb_figures_of(&in, greedy_pe, &g) == 0 &&
                     cp_lb_figures_of(&in, out, &r) == 0,
                 "figures");
        double heaviest = 0;
        for (size_t i = 0; i < 600; i++)
            heaviest = objs[i].migratable && objs[i].load > heaviest ? objs[i].load : heaviest;
        UT_CHECK(r.max_after <= 1.1 * g.max_after + heaviest + 1e-9,
                 "seed %llu: max %.2f, greedy's %.2f", (unsigned long long)seed, r.max_after,
                 g.max_after);
        UT_CHECK(r.moves < g.moves, "seed %llu: %zu moves, greedy %zu",
                 (unsigned long long)seed, r.moves, g.moves);
    }
    return 0;
}

/* RefineLB: an imbalance fixed by a few moves from the overloaded PE. */
static int test_refine(void) {
    /* PE 0: ten objects of 1; PEs 1-4: one each. avg = 14/5 = 2.8. */
    for (int i = 0; i < 10; i++)
        objs[i] = (cp_lb_obj){0, 1, 1.0};
    for (int i = 10; i < 14; i++)
        objs[i] = (cp_lb_obj){i - 9, 1, 1.0};
    cp_lb_input in = table(5, 14);
    in.tolerance = 1.1; /* limit 3.08 */
    UT_CHECK(cp_lb_place(CP_LB_REFINE, &in, out) == 0, "place");
    cp_lb_figures f;
    UT_CHECK(cp_lb_figures_of(&in, out, &f) == 0, "figures");
    UT_CHECK(f.max_after <= 3.08, "max %.2f above the limit", f.max_after);
    UT_CHECK(f.moves == 7, "%zu moves (7 needed)", f.moves);
    for (int i = 10; i < 14; i++)
        UT_CHECK(out[i] == objs[i].pe, "an object off an underloaded PE moved");
    /* Random tables: never worse, never above the limit when greedy could
     * get below it with one object of slack. */
    for (uint64_t seed = 60; seed < 70; seed++) {
        fill_random(seed, 5, 300, 0);
        in = table(5, 300);
        UT_CHECK(cp_lb_place(CP_LB_REFINE, &in, out) == 0, "place");
        if (check_valid(&in, out, "RefineLB"))
            return 1;
        UT_CHECK(cp_lb_figures_of(&in, out, &f) == 0, "figures");
        UT_CHECK(f.max_after <= f.max_before + 1e-9, "seed %llu: worse",
                 (unsigned long long)seed);
        UT_CHECK(f.max_after <= 1.05 * f.avg + 10.0, "seed %llu: max %.2f avg %.2f",
                 (unsigned long long)seed, f.max_after, f.avg);
    }
    return 0;
}

/* The bytes of `edges` between objects on different PEs of placement pe. */
static double cut(const cp_lb_edge *edges, size_t ne, const int *pe) {
    double c = 0;
    for (size_t e = 0; e < ne; e++)
        c += pe[edges[e].a] != pe[edges[e].b] ? edges[e].bytes : 0;
    return c;
}

/* GreedyCommLB: objects in chatty pairs split across PEs come together,
 * the load stays balanced; with no edges it is GreedyLB. */
static int test_greedy_comm(void) {
    static cp_lb_edge edges[64];
    /* 16 objects of 1 ms on 4 PEs, object i on PE i % 4; pairs (2k, 2k + 1),
     * split, exchange 1 MB in 100 messages (2 ms at the default costs):
     * greedy keeps them split, GreedyComm brings each pair together. */
    for (int i = 0; i < 16; i++)
        objs[i] = (cp_lb_obj){i % 4, 1, 1e-3};
    size_t ne = 0;
    for (int i = 0; i < 16; i += 2)
        edges[ne++] = (cp_lb_edge){(size_t)i, (size_t)i + 1, 100, 1e6};
    cp_lb_input in = table(4, 16);
    in.edges = edges;
    in.nedges = ne;
    UT_CHECK(cp_lb_place(CP_LB_GREEDY, &in, out) == 0, "greedy");
    double greedy_cut = cut(edges, ne, out);
    UT_CHECK(cp_lb_place(CP_LB_GREEDY_COMM, &in, out) == 0, "place");
    if (check_valid(&in, out, "GreedyCommLB"))
        return 1;
    UT_CHECK(cut(edges, ne, out) == 0, "cut %.0f bytes after GreedyCommLB (greedy: %.0f)",
             cut(edges, ne, out), greedy_cut);
    cp_lb_figures f;
    UT_CHECK(cp_lb_figures_of(&in, out, &f) == 0, "figures");
    UT_CHECK(fabs(f.max_after - 4e-3) < 1e-12, "max load %.4f, 0.004 expected", f.max_after);
    UT_CHECK(greedy_cut > 0, "greedy kept every pair together: the test shows nothing");
    /* Costly messages weigh against balance: with alpha large, the two
     * halves of a chain stay together even on fewer PEs. */
    for (int i = 0; i < 4; i++)
        objs[i] = (cp_lb_obj){0, 1, 1.0};
    ne = 0;
    for (int i = 0; i < 3; i++)
        edges[ne++] = (cp_lb_edge){(size_t)i, (size_t)i + 1, 1, 0};
    in = table(2, 4);
    in.edges = edges;
    in.nedges = ne;
    in.alpha = 10.0; /* a message costs more than all the work */
    UT_CHECK(cp_lb_place(CP_LB_GREEDY_COMM, &in, out) == 0, "place");
    UT_CHECK(cut(edges, ne, out) == 0 && out[0] == out[3], "chain split: %d %d %d %d", out[0],
             out[1], out[2], out[3]);
    in.alpha = 1e-9; /* almost free: balanced like greedy */
    UT_CHECK(cp_lb_place(CP_LB_GREEDY_COMM, &in, out) == 0, "place");
    UT_CHECK(cp_lb_figures_of(&in, out, &f) == 0 && f.max_after == 2.0, "max %.2f",
             f.max_after);
    /* No edges: the same placement as GreedyLB on random tables. */
    static int g[MAXO];
    for (uint64_t seed = 80; seed < 85; seed++) {
        fill_random(seed, 6, 500, 7);
        in = table(6, 500);
        UT_CHECK(cp_lb_place(CP_LB_GREEDY, &in, g) == 0, "greedy");
        UT_CHECK(cp_lb_place(CP_LB_GREEDY_COMM, &in, out) == 0, "place");
        if (check_valid(&in, out, "GreedyCommLB"))
            return 1;
        cp_lb_figures fg, fc;
        UT_CHECK(cp_lb_figures_of(&in, g, &fg) == 0 && cp_lb_figures_of(&in, out, &fc) == 0,
                 "figures");
        UT_CHECK(fabs(fc.max_after - fg.max_after) < 1e-9, "seed %llu: %.3f vs greedy %.3f",
                 (unsigned long long)seed, fc.max_after, fg.max_after);
    }
    /* Bad edges are refused. */
    edges[0] = (cp_lb_edge){0, 500, 1, 1};
    in = table(6, 500);
    in.edges = edges;
    in.nedges = 1;
    UT_CHECK(cp_lb_place(CP_LB_GREEDY_COMM, &in, out) == CP_EINVAL, "edge to object 500 of 500");
    return 0;
}

static int test_pinned_everywhere(void) {
    for (int k = 0; k < CP_LB_COUNT_; k++) {
        fill_random(90 + (uint64_t)k, 3, 50, 1); /* every object pinned */
        cp_lb_input in = table(3, 50);
        UT_CHECK(cp_lb_place(k, &in, out) == 0, "%s", cp_lb_name(k));
        cp_lb_figures f;
        UT_CHECK(cp_lb_figures_of(&in, out, &f) == 0 && f.moves == 0, "%s moved a pinned object",
                 cp_lb_name(k));
    }
    return 0;
}

int main(void) {
    int failed = 0;
    failed += ut_run("lb_names", test_names);
    failed += ut_run("lb_bad_input", test_bad_input);
    failed += ut_run("lb_dummy", test_dummy);
    failed += ut_run("lb_rotate", test_rotate);
    failed += ut_run("lb_randcent", test_randcent);
    failed += ut_run("lb_greedy_known", test_greedy_known);
    failed += ut_run("lb_greedy_random", test_greedy_random);
    failed += ut_run("lb_greedy_refine", test_greedy_refine);
    failed += ut_run("lb_refine", test_refine);
    failed += ut_run("lb_greedy_comm", test_greedy_comm);
    failed += ut_run("lb_pinned_everywhere", test_pinned_everywhere);
    printf("test_lb: %d failed\n", failed);
    return failed ? 1 : 0;
}
