/*
 * timers: cp_call_after and cp_send_after on every PE. Each must fire not
 * before its time (measured with cp_wall_time), not absurdly late, in
 * deadline order, once, with its argument or message intact.
 *
 *   timers        timers and messages; PEs report to PE 0, which ends the job
 *   timers only   no messages at all: every PE waits for its own timers with
 *                 cp_run_until, PE 0 ends the job from a timer
 */
#include "pe_test.h"

#define LATE_LIMIT 3.0 /* seconds; generous for 8 PEs on 2 cores */

static const double delays[] = {0.30, 0.05, 0.20, 0.0, 0.10, 0.25, 0.15, 0.12,
                                0.22, 0.02, 0.07};
/* Which of the above are messages (cp_send_after) rather than calls. */
static const int is_msg[] = {0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1};
enum { NT = sizeof delays / sizeof delays[0], CHAIN = 10 };
#define CHAIN_STEP 0.01

typedef struct state {
    cp_ctx *ctx;
    int me, npes, only;
    int h_timer_msg, h_done;
    double start;
    int fired[NT];
    int nfired;
    double last_delay; /* delay of the timer that fired last */
    int chain;         /* periodic timer: times fired */
    double chain_last;
    int done_from;
    int reported;
} state;

typedef struct targ {
    state *s;
    int idx;
    uint64_t magic;
} targ;

static targ targs[NT];

static void maybe_report(cp_ctx *ctx, state *s);

static void fired(cp_ctx *ctx, state *s, int idx) {
    double now = cp_wall_time();
    PT_CHECK(ctx, idx >= 0 && idx < NT, "timer index %d", idx);
    double due = s->start + delays[idx];
    PT_CHECK(ctx, !s->fired[idx], "timer %d (%.2fs) fired twice", idx,
             delays[idx]);
    PT_CHECK(ctx, now >= due, "timer %d (%.2fs) fired %.6fs early", idx,
             delays[idx], due - now);
    PT_CHECK(ctx, now <= due + LATE_LIMIT, "timer %d (%.2fs) fired %.3fs late",
             idx, delays[idx], now - due);
    PT_CHECK(ctx, delays[idx] >= s->last_delay,
             "timer of %.2fs fired after the one of %.2fs: not in deadline "
             "order", delays[idx], s->last_delay);
    s->last_delay = delays[idx];
    s->fired[idx] = 1;
    s->nfired++;
    maybe_report(ctx, s);
}

static void on_call(cp_ctx *ctx, void *arg) {
    targ *a = arg;
    PT_CHECK(ctx, a->magic == 0x7133e5u + (uint64_t)a->idx,
             "timer argument mangled");
    fired(ctx, a->s, a->idx);
}

static void on_timer_msg(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    int idx;
    PT_CHECK(ctx, m->size == 64, "timed message of %llu bytes",
             (unsigned long long)m->size);
    memcpy(&idx, cp_msg_data(m), sizeof idx);
    PT_CHECK(ctx, idx >= 0 && idx < NT && is_msg[idx], "timed message %d", idx);
    PT_CHECK(ctx, m->tag == 0x5e2dull + (uint64_t)idx, "timed message tag %#llx",
             (unsigned long long)m->tag);
    size_t bad = pt_verify((char *)cp_msg_data(m) + sizeof idx, 64 - sizeof idx,
                           (uint64_t)idx);
    PT_CHECK(ctx, bad == 64 - sizeof idx, "timed message %d differs at %zu", idx,
             bad);
    cp_msg_free(ctx, m);
    fired(ctx, s, idx);
}

static void on_chain(cp_ctx *ctx, void *arg) {
    state *s = arg;
    double now = cp_wall_time();
    PT_CHECK(ctx, now >= s->chain_last + CHAIN_STEP,
             "periodic timer %d fired %.6fs after the previous one, asked %.3f",
             s->chain, now - s->chain_last, CHAIN_STEP);
    s->chain_last = now;
    if (++s->chain < CHAIN) {
        int rc = cp_call_after(ctx, CHAIN_STEP, on_chain, s);
        PT_CHECK(ctx, rc == 0, "cp_call_after from a timer: %s", cp_strerror(rc));
    }
    maybe_report(ctx, s);
}

static int all_fired(void *arg) {
    state *s = arg;
    return s->nfired == NT && s->chain == CHAIN;
}

static void maybe_report(cp_ctx *ctx, state *s) {
    if (s->only || s->reported || !all_fired(s))
        return;
    s->reported = 1;
    pt_send(ctx, 0, s->h_done, pt_alloc(ctx, 0));
}

static void on_done(cp_ctx *ctx, cp_msg *m, void *user) {
    state *s = user;
    cp_msg_free(ctx, m);
    if (++s->done_from == s->npes) {
        printf("OK timers P=%d\n", s->npes);
        fflush(stdout);
        cp_exit(ctx, 0);
    }
}

static void on_exit_timer(cp_ctx *ctx, void *arg) {
    state *s = arg;
    PT_CHECK(ctx, all_fired(s), "PE 0: exit timer before the others");
    printf("OK timers-only P=%d\n", s->npes);
    fflush(stdout);
    cp_exit(ctx, 0);
}

static void arm(cp_ctx *ctx, state *s) {
    s->start = cp_wall_time();
    s->chain_last = s->start;
    for (int i = 0; i < NT; i++) {
        int rc;
        if (is_msg[i]) {
            cp_msg *m = pt_alloc(ctx, 64);
            memcpy(cp_msg_data(m), &i, sizeof i);
            pt_fill((char *)cp_msg_data(m) + sizeof i, 64 - sizeof i,
                    (uint64_t)i);
            m->tag = 0x5e2dull + (uint64_t)i;
            rc = cp_send_after(ctx, delays[i], s->h_timer_msg, m);
        } else {
            targs[i] = (targ){s, i, 0x7133e5u + (uint64_t)i};
            rc = cp_call_after(ctx, delays[i], on_call, &targs[i]);
        }
        PT_CHECK(ctx, rc == 0, "arming timer %d: %s", i, cp_strerror(rc));
    }
    int rc = cp_call_after(ctx, CHAIN_STEP, on_chain, s);
    PT_CHECK(ctx, rc == 0, "cp_call_after: %s", cp_strerror(rc));
}

static int never(void *arg) {
    (void)arg;
    return 0;
}

int main(int argc, char **argv) {
    cp_ctx *ctx = pt_init("timers", &argc, &argv);
    static state s;
    s.ctx = ctx;
    s.me = cp_my_pe(ctx);
    s.npes = cp_num_pes(ctx);
    s.only = argc > 1 && strcmp(argv[1], "only") == 0;
    s.h_timer_msg = pt_handler(ctx, on_timer_msg, &s);
    s.h_done = pt_handler(ctx, on_done, &s);
    s.last_delay = -1;

    double t0 = cp_wall_time();
    int n = cp_run_once(ctx);
    PT_CHECK(ctx, n >= 0, "cp_run_once: %s", cp_strerror(n));
    PT_CHECK(ctx, cp_wall_time() - t0 < 0.5, "cp_run_once blocked for %.2fs",
             cp_wall_time() - t0);

    arm(ctx, &s);
    if (!s.only)
        return pt_run_and_finalize(ctx, "timers");

    int rc = cp_run_until(ctx, all_fired, &s);
    if (rc != 0 || !all_fired(&s)) {
        fprintf(stderr, "TESTFAIL timers only: PE %d: cp_run_until returned %d "
                "with %d of %d timers and %d of %d periodic ticks fired\n",
                s.me, rc, s.nfired, NT, s.chain, CHAIN);
        cp_finalize(ctx);
        return 1;
    }
    if (s.me == 0) {
        rc = cp_call_after(ctx, 1.0, on_exit_timer, &s);
        PT_CHECK(ctx, rc == 0, "cp_call_after: %s", cp_strerror(rc));
    }
    rc = cp_run(ctx);
    if (rc != 0 || !cp_exiting(ctx) || cp_run_until(ctx, never, NULL) != 1) {
        fprintf(stderr, "TESTFAIL timers only: PE %d: cp_run returned %d, "
                "cp_exiting %d: the job should be ending\n", s.me, rc,
                cp_exiting(ctx));
        cp_finalize(ctx);
        return 1;
    }
    return cp_finalize(ctx);
}
