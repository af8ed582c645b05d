/*
 * What the two benchmark programs (cp_bench.c, mpi_bench.c) share: the
 * parameters of every benchmark, the command line, the clock and the
 * statistics. Both programs measure exactly the same patterns; only the
 * transport calls differ. Header-only so each program stays one file.
 *
 * Command line (both programs, after the launcher's own arguments):
 *   PROG                     every two-PE benchmark (latency, rate, bw)
 *   PROG latency [SIZE...]   ping-pong one-way latency (default sizes below)
 *   PROG rate                8-byte message rate, windows of RATE_WINDOW
 *   PROG bw [SIZE]           bandwidth, windows of BW_WINDOW (default 4 MiB)
 *   PROG storm [TOTAL]       all-to-all storm of TOTAL 64-byte messages
 *   PROG coll [SIZE...]      PE 0 broadcasts SIZE bytes to every PE, each
 *                            contributes a float64 to a sum at PE 0; repeat
 * Environment: BENCH_TIME seconds per repetition (default 0.3), BENCH_REPS
 * repetitions (default 5, the median is reported).
 *
 * Output: one machine-readable line per figure, parsed by bench/run.sh:
 *   latency SIZE MICROSECONDS      (half the round trip, median)
 *   rate MESSAGES_PER_SECOND       (median)
 *   bw SIZE GB_PER_SECOND          (10^9 payload bytes per second, median)
 *   storm NPES TOTAL SECONDS       (median, after one warm-up storm)
 *   coll NPES SIZE MICROSECONDS    (one broadcast + reduction, median)
 * and '#' lines with every repetition, for a reader judging the noise.
 */
#ifndef CHARMPY_BENCH_COMMON_H
#define CHARMPY_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REPS 31
#define RATE_WINDOW 64
#define RATE_SIZE 8
#define BW_WINDOW 8
#define BW_SIZE (4u << 20)
#define STORM_SIZE 64
#define STORM_TOTAL 2000000L
#define WARMUP_SECONDS 0.03

static const size_t bench_coll_sizes[] = {8, 65536};
#define N_COLL_SIZES (sizeof bench_coll_sizes / sizeof bench_coll_sizes[0])

static const size_t bench_lat_sizes[] = {8,     64,     512,        4096,
                                         32768, 262144, 1u << 20, 4u << 20};
#define N_LAT_SIZES (sizeof bench_lat_sizes / sizeof bench_lat_sizes[0])

enum bench_mode { B_ALL, B_LATENCY, B_RATE, B_BW, B_STORM, B_COLL };

typedef struct bench_args {
    enum bench_mode mode;
    size_t sizes[16]; /* latency sizes, or the bw size in sizes[0] */
    int nsizes;
    long total;       /* storm */
    double rep_time;  /* seconds per repetition */
    int reps;
} bench_args;

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline void bench_usage(const char *prog) {
    fprintf(stderr,
            "usage: %s [latency [SIZE...] | rate | bw [SIZE] | storm [TOTAL] |"
            " coll [SIZE...]]\n"
            "  env BENCH_TIME=seconds per repetition (0.3), "
            "BENCH_REPS=repetitions (5)\n",
            prog);
}

/* Parses argv; returns 0, or -1 after printing the usage (when `loud`). */
static inline int bench_parse(bench_args *a, int argc, char **argv, int loud) {
    memset(a, 0, sizeof *a);
    a->mode = B_ALL;
    a->total = STORM_TOTAL;
    a->rep_time = 0.3;
    a->reps = 5;
    const char *t = getenv("BENCH_TIME"), *r = getenv("BENCH_REPS");
    if (t && atof(t) > 0)
        a->rep_time = atof(t);
    if (r && atoi(r) > 0)
        a->reps = atoi(r) > MAX_REPS ? MAX_REPS : atoi(r);
    if (argc < 2)
        return 0;
    const char *m = argv[1];
    if (!strcmp(m, "latency"))
        a->mode = B_LATENCY;
    else if (!strcmp(m, "rate"))
        a->mode = B_RATE;
    else if (!strcmp(m, "bw"))
        a->mode = B_BW;
    else if (!strcmp(m, "storm"))
        a->mode = B_STORM;
    else if (!strcmp(m, "coll"))
        a->mode = B_COLL;
    else if (!strcmp(m, "all"))
        a->mode = B_ALL;
    else {
        if (loud)
            bench_usage(argv[0]);
        return -1;
    }
    for (int i = 2; i < argc; i++) {
        char *end;
        long v = strtol(argv[i], &end, 0);
        if (*end || v <= 0 || a->nsizes == 16) {
            if (loud)
                bench_usage(argv[0]);
            return -1;
        }
        if (a->mode == B_STORM)
            a->total = v;
        else
            a->sizes[a->nsizes++] = (size_t)v;
    }
    return 0;
}

static inline int bench_cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static inline double bench_median(const double *v, int n) {
    double s[MAX_REPS];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, bench_cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static inline void bench_print_reps(const char *what, const double *v, int n) {
    printf("# %s reps:", what);
    for (int i = 0; i < n; i++)
        printf(" %.4g", v[i]);
    printf("\n");
}

/* Iterations for one repetition of `rep_time` seconds, from a warm-up run of
 * `n` iterations that took `secs`. */
static inline long bench_iters(long n, double secs, double rep_time) {
    double per = secs / (double)n;
    long it = per > 0 ? (long)(rep_time / per) : n;
    return it < 1 ? 1 : it;
}

/* The receiver of the rate and bandwidth benchmarks reads every cache line
 * of what it received, as a program using the data would: a charmpy payload
 * is read in place from shared memory (possibly from the sender's cache),
 * while MPI has already copied it into the receiver's buffer. */
static volatile uint64_t bench_sink;
static inline void bench_consume(const void *p, size_t n) {
    const unsigned char *c = p;
    uint64_t s = 0;
    for (size_t i = 0; i < n; i += 64)
        s += c[i];
    if (n)
        s += c[n - 1];
    bench_sink += s;
}

/* A user buffer filled with a pattern, so no page is shared with the zero
 * page and the copies really move data. */
static inline char *bench_buffer(size_t n) {
    char *b = malloc(n ? n : 1);
    if (b)
        for (size_t i = 0; i < n; i++)
            b[i] = (char)(i * 131u + 7u);
    return b;
}

#endif /* CHARMPY_BENCH_COMMON_H */
