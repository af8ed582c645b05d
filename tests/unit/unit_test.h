/*
 * A minimal harness for the C unit tests: each test is an `int fn(void)`
 * returning 0 on success; UT_CHECK prints where and why it failed and
 * returns 1 from the test. Helpers are static inline so that a test file
 * that does not use one of them still compiles under -Werror.
 */
#ifndef CHARMPY_TESTS_UNIT_TEST_H
#define CHARMPY_TESTS_UNIT_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define UT_CHECK(cond, ...)                                                   \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__,  \
                    #cond);                                                   \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            return 1;                                                         \
        }                                                                     \
    } while (0)

static inline double ut_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs one test, prints its outcome; returns 1 when it failed. */
static inline int ut_run(const char *name, int (*fn)(void)) {
    double t0 = ut_now();
    int rc = fn();
    printf("%s %s (%.2fs)\n", rc ? "FAIL" : "ok  ", name, ut_now() - t0);
    fflush(stdout);
    return rc ? 1 : 0;
}

/* splitmix64: a deterministic generator, so a failure reproduces. */
static inline uint64_t ut_rand(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#endif /* CHARMPY_TESTS_UNIT_TEST_H */
