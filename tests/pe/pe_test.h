/*
 * Helpers shared by the multi-PE test programs. Every failure message
 * contains "TESTFAIL" so the runner can also catch a failure that a PE
 * reports after the job was already ending. Helpers are static inline so
 * that a program that does not use one still compiles under -Werror.
 */
#ifndef CHARMPY_TESTS_PE_TEST_H
#define CHARMPY_TESTS_PE_TEST_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "charmpy/runtime.h"

/* Ends the whole job with a message naming the check that failed. */
#define PT_CHECK(ctx, cond, ...)                                              \
    do {                                                                      \
        if (!(cond))                                                          \
            pt_fail_at((ctx), __FILE__, __LINE__, #cond, __VA_ARGS__);        \
    } while (0)

#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 5, 6)))
#endif
static inline void pt_fail_at(cp_ctx *ctx, const char *file, int line,
                              const char *cond, const char *fmt, ...) {
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fflush(stdout);
    cp_abort(ctx, "TESTFAIL %s:%d: (%s) %s", file, line, cond, why);
}

/* cp_init or exit: before a context exists nothing else can report. */
static inline cp_ctx *pt_init(const char *name, int *argc, char ***argv) {
    cp_ctx *ctx = NULL;
    int rc = cp_init(&ctx, argc, argv);
    if (rc != 0 || !ctx) {
        fprintf(stderr, "TESTFAIL %s: cp_init failed: %s (%d)\n", name,
                cp_strerror(rc), rc);
        exit(3);
    }
    return ctx;
}

static inline int pt_handler(cp_ctx *ctx, cp_handler_fn fn, void *user) {
    int h = cp_handler_register(ctx, fn, user);
    PT_CHECK(ctx, h >= 0, "cp_handler_register: %s", cp_strerror(h));
    return h;
}

static inline cp_msg *pt_alloc(cp_ctx *ctx, size_t size) {
    cp_msg *m = cp_msg_alloc(ctx, size);
    PT_CHECK(ctx, m != NULL, "cp_msg_alloc(%zu) returned NULL", size);
    PT_CHECK(ctx, m->size == size, "cp_msg_alloc(%zu): size field is %llu",
             size, (unsigned long long)m->size);
    PT_CHECK(ctx, ((uintptr_t)cp_msg_data(m) & 63u) == 0,
             "payload of a %zu-byte message is not 64-byte aligned (%p)", size,
             cp_msg_data(m));
    return m;
}

static inline void pt_send(cp_ctx *ctx, int pe, int handler, cp_msg *m) {
    int rc = cp_send(ctx, pe, handler, m);
    PT_CHECK(ctx, rc == 0, "cp_send to PE %d handler %d: %s", pe, handler,
             cp_strerror(rc));
}

static inline void pt_bcast(cp_ctx *ctx, int handler, cp_msg *m) {
    int rc = cp_bcast(ctx, handler, m);
    PT_CHECK(ctx, rc == 0, "cp_bcast handler %d: %s", handler, cp_strerror(rc));
}

/* Drives the scheduler until the job exits and returns the process exit
 * status: the job's code from cp_finalize. */
static inline int pt_run_and_finalize(cp_ctx *ctx, const char *name) {
    int rc = cp_run(ctx);
    if (rc < 0) {
        fprintf(stderr, "TESTFAIL %s: PE %d: cp_run: %s (%d)\n", name,
                cp_my_pe(ctx), cp_strerror(rc), rc);
        cp_finalize(ctx);
        return 4;
    }
    return cp_finalize(ctx);
}

/* splitmix64: deterministic, so every PE can recompute another's data. */
static inline uint64_t pt_mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Fills `n` bytes from a seed; returns a checksum of what it wrote. */
static inline uint64_t pt_fill(void *p, size_t n, uint64_t seed) {
    unsigned char *c = p;
    uint64_t sum = 0, x = pt_mix(seed);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        memcpy(c + i, &x, 8);
        sum = sum * 31 + x;
    }
    for (; i < n; i++) {
        c[i] = (unsigned char)(seed + i);
        sum = sum * 31 + c[i];
    }
    return sum;
}

/* Offset of the first byte that differs from pt_fill(seed), or n. */
static inline size_t pt_verify(const void *p, size_t n, uint64_t seed) {
    const unsigned char *c = p;
    uint64_t x = pt_mix(seed);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t got;
        memcpy(&got, c + i, 8);
        if (got != x) {
            for (size_t k = 0; k < 8; k++)
                if (c[i + k] != ((const unsigned char *)&x)[k])
                    return i + k;
        }
    }
    for (; i < n; i++)
        if (c[i] != (unsigned char)(seed + i))
            return i;
    return n;
}

/* Integer argument argv[i], or `dflt` when absent. */
static inline long pt_arg(int argc, char **argv, int i, long dflt) {
    if (argc <= i)
        return dflt;
    char *end;
    long v = strtol(argv[i], &end, 10);
    return *end == '\0' && end != argv[i] ? v : dflt;
}

#endif /* CHARMPY_TESTS_PE_TEST_H */
