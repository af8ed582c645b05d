/*
 * charmpy runtime benchmarks over the C API (include/charmpy/runtime.h),
 * the peer of mpi_bench.c. Started by the launcher:
 *   build/bin/charmrun -n 2 build/bench/cp_bench [latency [SIZE...] | rate |
 *                                               bw [SIZE]]
 *   build/bin/charmrun -n 8 build/bench/cp_bench storm [TOTAL]
 *   build/bin/charmrun -n 4 build/bench/cp_bench coll [SIZE...]
 * See bench_common.h for the output lines. BENCH_VERIFY=1 makes PE 0 check
 * that every echo of the ping-pong carries the payload it sent (slower);
 * BENCH_PIN=1 binds each PE to one CPU (see pin_to_cpu).
 *
 * Fairness with MPI: MPI sends from and receives into user buffers. A
 * charmpy sender instead allocates a message in shared memory and fills it,
 * so every send here copies a user buffer into the payload (the one copy a
 * charmpy send costs), and the ping-pong's echo copies the received payload
 * into its reply. A handler owns the message it receives: it frees it (or
 * sends it on) itself, and that cost is inside the timings too.
 *
 * PE 0 drives every two-PE benchmark from ordinary C code: it starts a
 * batch, then runs the scheduler with cp_run_until() until the batch's
 * condition holds. PE 1 only reacts, in handlers, so it needs no control
 * messages. The storm uses every PE.
 */
#include <sched.h>

#include <charmpy/runtime.h>

#include "bench_common.h"

typedef struct bench {
    cp_ctx *ctx;
    int me, np;
    int h_ping, h_pong, h_win, h_ack, h_storm, h_done, h_coll, h_coll_done;
    char *ubuf;         /* user buffer every send copies from */
    size_t size;        /* payload of the current batch */
    int window;         /* messages per window (rate, bw) */
    long remaining;     /* PE 0: round trips or windows still to do */
    int win_count;      /* PE 1: messages of the current window so far */
    long got, expect;   /* storm: messages received / to receive */
    int done;           /* storm, PE 0: PEs that finished */
    int verify;         /* BENCH_VERIFY=1: PE 0 checks every echo */
} bench;

static cp_msg *alloc_or_die(bench *b, size_t size) {
    cp_msg *m = cp_msg_alloc(b->ctx, size);
    if (!m)
        cp_abort(b->ctx, "cp_bench: cp_msg_alloc(%zu) failed", size);
    return m;
}

static void send_or_die(bench *b, int pe, int handler, cp_msg *m) {
    int rc = cp_send(b->ctx, pe, handler, m);
    if (rc != 0)
        cp_abort(b->ctx, "cp_bench: cp_send to PE %d: %s", pe, cp_strerror(rc));
}

/* One send as a user would write it: a message of the size, filled from the
 * user's buffer. */
static void send_copy(bench *b, int pe, int handler, size_t size, uint64_t tag) {
    cp_msg *m = alloc_or_die(b, size);
    memcpy(cp_msg_data(m), b->ubuf, size);
    m->tag = tag;
    send_or_die(b, pe, handler, m);
}

/* ---- handlers ----------------------------------------------------------- */

/* PE 1: echo the ping into a fresh message (allocate, copy, send), then
 * free the one received. */
static void on_ping(cp_ctx *ctx, cp_msg *msg, void *user) {
    bench *b = user;
    size_t size = (size_t)msg->size;
    cp_msg *r = alloc_or_die(b, size);
    memcpy(cp_msg_data(r), cp_msg_data(msg), size);
    send_or_die(b, (int)msg->src_pe, b->h_pong, r);
    cp_msg_free(ctx, msg);
}

/* PE 0: the reply closes one round trip; start the next one. */
static void on_pong(cp_ctx *ctx, cp_msg *msg, void *user) {
    bench *b = user;
    if (b->verify && (msg->src_pe != 1 || msg->size != b->size ||
                      memcmp(cp_msg_data(msg), b->ubuf, b->size) != 0))
        cp_abort(ctx, "cp_bench: the echo of %zu bytes came back wrong",
                 b->size);
    cp_msg_free(ctx, msg);
    if (--b->remaining > 0)
        send_copy(b, 1, b->h_ping, b->size, 0);
}

static void send_window(bench *b) {
    for (int k = 0; k < b->window; k++)
        send_copy(b, 1, b->h_win, b->size, (uint64_t)b->window);
}

/* PE 1: read the payload, count the window (its length is in the tag) and
 * acknowledge it whole. */
static void on_win(cp_ctx *ctx, cp_msg *msg, void *user) {
    bench *b = user;
    int w = (int)msg->tag, src = (int)msg->src_pe;
    bench_consume(cp_msg_data(msg), (size_t)msg->size);
    cp_msg_free(ctx, msg);
    if (++b->win_count == w) {
        b->win_count = 0;
        send_copy(b, src, b->h_ack, 8, 0);
    }
}

/* PE 0: a window was received whole; send the next. */
static void on_ack(cp_ctx *ctx, cp_msg *msg, void *user) {
    bench *b = user;
    cp_msg_free(ctx, msg);
    if (--b->remaining > 0)
        send_window(b);
}

static void on_storm(cp_ctx *ctx, cp_msg *msg, void *user) {
    bench *b = user;
    cp_msg_free(ctx, msg);
    b->got++;
}

static void on_done(cp_ctx *ctx, cp_msg *msg, void *user) {
    bench *b = user;
    cp_msg_free(ctx, msg);
    b->done++;
}

/* PE 0: one broadcast of b->size bytes from the user's buffer. */
static void coll_send(bench *b) {
    cp_msg *m = alloc_or_die(b, b->size);
    memcpy(cp_msg_data(m), b->ubuf, b->size);
    int rc = cp_bcast(b->ctx, b->h_coll, m);
    if (rc != 0)
        cp_abort(b->ctx, "cp_bench: cp_bcast: %s", cp_strerror(rc));
}

/* Every PE: the broadcast arrived; contribute 1.0 to the sum at PE 0. */
static void on_coll(cp_ctx *ctx, cp_msg *msg, void *user) {
    bench *b = user;
    bench_consume(cp_msg_data(msg), (size_t)msg->size);
    cp_msg_free(ctx, msg);
    cp_msg *c = alloc_or_die(b, sizeof(double));
    *(double *)cp_msg_data(c) = 1.0;
    int rc = cp_reduce(ctx, c, cp_reducer_builtin(CP_OP_SUM, CP_T_FLOAT64), 0, b->h_coll_done);
    if (rc != 0)
        cp_abort(ctx, "cp_bench: cp_reduce: %s", cp_strerror(rc));
}

/* PE 0: the sum is in; broadcast again. */
static void on_coll_done(cp_ctx *ctx, cp_msg *msg, void *user) {
    bench *b = user;
    if (*(double *)cp_msg_data(msg) != (double)b->np)
        cp_abort(ctx, "cp_bench: the sum of %d contributions of 1.0 is %g", b->np,
                 *(double *)cp_msg_data(msg));
    cp_msg_free(ctx, msg);
    if (--b->remaining > 0)
        coll_send(b);
}

/* ---- drivers (PE 0) ----------------------------------------------------- */

static int batch_over(void *arg) { return ((bench *)arg)->remaining == 0; }
static int storm_received(void *arg) {
    bench *b = arg;
    return b->got >= b->expect;
}
static int storm_done(void *arg) {
    bench *b = arg;
    return b->done >= b->np;
}

static void run_until(bench *b, int (*cond)(void *), void *arg) {
    if (cond(arg))
        return;
    int rc = cp_run_until(b->ctx, cond, arg);
    if (rc < 0)
        cp_abort(b->ctx, "cp_bench: cp_run_until: %s", cp_strerror(rc));
    if (rc == 1 && !cond(arg))
        cp_abort(b->ctx, "cp_bench: job ended in the middle of a batch");
}

/* n round trips of `size` bytes; returns the seconds taken. */
static double lat_batch(bench *b, size_t size, long n) {
    b->size = size;
    b->remaining = n;
    double t0 = bench_now();
    send_copy(b, 1, b->h_ping, size, 0);
    run_until(b, batch_over, b);
    return bench_now() - t0;
}

/* n windows of `w` messages of `size` bytes, one acknowledgement each. */
static double win_batch(bench *b, size_t size, int w, long n) {
    b->size = size;
    b->window = w;
    b->remaining = n;
    double t0 = bench_now();
    send_window(b);
    run_until(b, batch_over, b);
    return bench_now() - t0;
}

/* n broadcasts of `size` bytes, each followed by its reduction. */
static double coll_batch(bench *b, size_t size, long n) {
    b->size = size;
    b->remaining = n;
    double t0 = bench_now();
    coll_send(b);
    run_until(b, batch_over, b);
    return bench_now() - t0;
}

static void run_coll(bench *b, const bench_args *a) {
    const size_t *sizes = a->nsizes ? a->sizes : bench_coll_sizes;
    int ns = a->nsizes ? a->nsizes : (int)N_COLL_SIZES;
    for (int i = 0; i < ns; i++) {
        long n = 1;
        while (coll_batch(b, sizes[i], n) < WARMUP_SECONDS && n < (1L << 30))
            n *= 2;
        n = bench_iters(n, coll_batch(b, sizes[i], n), a->rep_time);
        double v[MAX_REPS];
        for (int r = 0; r < a->reps; r++)
            v[r] = coll_batch(b, sizes[i], n) / (double)n * 1e6;
        char what[64];
        snprintf(what, sizeof what, "coll %d PEs %zu B us (%ld iters)", b->np, sizes[i], n);
        bench_print_reps(what, v, a->reps);
        printf("coll %d %zu %.3f\n", b->np, sizes[i], bench_median(v, a->reps));
        fflush(stdout);
    }
}

/* Warm up with growing batches until one takes WARMUP_SECONDS, then
 * estimate from one more batch (the first ones pay page faults). */
static long calibrate(bench *b, int lat, size_t size, int w, double rep_time) {
    long n = 1;
    for (;;) {
        double s = lat ? lat_batch(b, size, n) : win_batch(b, size, w, n);
        if (s >= WARMUP_SECONDS || n >= (1L << 30))
            break;
        n *= 2;
    }
    double s = lat ? lat_batch(b, size, n) : win_batch(b, size, w, n);
    return bench_iters(n, s, rep_time);
}

static void run_latency(bench *b, const bench_args *a) {
    const size_t *sizes = a->nsizes ? a->sizes : bench_lat_sizes;
    int ns = a->nsizes ? a->nsizes : (int)N_LAT_SIZES;
    for (int i = 0; i < ns; i++) {
        size_t size = sizes[i];
        long n = calibrate(b, 1, size, 0, a->rep_time);
        double v[MAX_REPS];
        for (int r = 0; r < a->reps; r++)
            v[r] = lat_batch(b, size, n) / (double)n / 2.0 * 1e6;
        char what[64];
        snprintf(what, sizeof what, "latency %zu us (%ld iters)", size, n);
        bench_print_reps(what, v, a->reps);
        printf("latency %zu %.3f\n", size, bench_median(v, a->reps));
        fflush(stdout);
    }
}

static void run_window(bench *b, const bench_args *a, int bw) {
    size_t size = bw ? (a->nsizes ? a->sizes[0] : BW_SIZE) : RATE_SIZE;
    int w = bw ? BW_WINDOW : RATE_WINDOW;
    long n = calibrate(b, 0, size, w, a->rep_time);
    double v[MAX_REPS];
    for (int r = 0; r < a->reps; r++) {
        double s = win_batch(b, size, w, n);
        double msgs = (double)n * (double)w;
        v[r] = bw ? msgs * (double)size / s / 1e9 : msgs / s;
    }
    char what[64];
    snprintf(what, sizeof what, "%s (%ld windows)",
             bw ? "bw GB/s" : "rate msg/s", n);
    bench_print_reps(what, v, a->reps);
    if (bw)
        printf("bw %zu %.3f\n", size, bench_median(v, a->reps));
    else
        printf("rate %.0f\n", bench_median(v, a->reps));
    fflush(stdout);
}

/*
 * Storm: every PE sends its share of `total` 64-byte messages round-robin
 * to the other PEs, in bursts with a scheduler pass between them (so what
 * has arrived is handled while sending, as a real program would), then runs
 * until it has received its share and tells PE 0. PE 0 times from the
 * barrier to the last PE's report. Returns the seconds on PE 0.
 */
static double storm_once(bench *b, long total) {
    int me = b->me, np = b->np;
    long mine = total / np + (me < total % np);
    b->got = 0;
    b->done = 0;
    b->expect = 0;
    for (int s = 0; s < np; s++) {
        if (s == me)
            continue;
        long ns = total / np + (s < total % np);
        int k = (me - s - 1 + np) % np;
        b->expect += ns / (np - 1) + (k < ns % (np - 1));
    }
    int rc = cp_barrier(b->ctx);
    if (rc != 0)
        cp_abort(b->ctx, "cp_bench: cp_barrier: %s", cp_strerror(rc));
    double t0 = bench_now();
    long sent = 0;
    while (sent < mine) {
        for (int k = 0; k < RATE_WINDOW && sent < mine; k++, sent++)
            send_copy(b, (int)((me + 1 + sent % (np - 1)) % np), b->h_storm,
                      STORM_SIZE, 0);
        rc = cp_run_once(b->ctx);
        if (rc < 0)
            cp_abort(b->ctx, "cp_bench: cp_run_once: %s", cp_strerror(rc));
    }
    run_until(b, storm_received, b);
    if (me != 0) {
        send_copy(b, 0, b->h_done, 8, 0);
        return 0;
    }
    b->done++;
    run_until(b, storm_done, b);
    return bench_now() - t0;
}

/* One warm-up storm (it pays the first touch of the heaps), then the
 * repetitions; PE 0 prints the median. */
static void run_storm(bench *b, const bench_args *a) {
    double v[MAX_REPS];
    storm_once(b, a->total);
    for (int r = 0; r < a->reps; r++)
        v[r] = storm_once(b, a->total);
    if (b->me != 0)
        return;
    char what[64];
    snprintf(what, sizeof what, "storm %d PEs s", b->np);
    bench_print_reps(what, v, a->reps);
    double t = bench_median(v, a->reps);
    printf("# storm %d PEs: %.3g messages/s\n", b->np, (double)a->total / t);
    printf("storm %d %ld %.4f\n", b->np, a->total, t);
    fflush(stdout);
}

/* BENCH_PIN=1: bind PE i to the i-th CPU it may run on (modulo their
 * number), as Open MPI binds its ranks by default; for comparing the two
 * under the same placement. The launcher itself does not pin. */
static void pin_to_cpu(int pe) {
    cpu_set_t set, one;
    if (sched_getaffinity(0, sizeof set, &set) != 0 || CPU_COUNT(&set) == 0)
        return;
    int k = pe % CPU_COUNT(&set);
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &set))
            continue;
        if (k-- == 0) {
            CPU_ZERO(&one);
            CPU_SET(c, &one);
            (void)sched_setaffinity(0, sizeof one, &one);
            return;
        }
    }
}

int main(int argc, char **argv) {
    bench b;
    memset(&b, 0, sizeof b);
    int rc = cp_init(&b.ctx, &argc, &argv);
    if (rc != 0) {
        fprintf(stderr, "cp_bench: cp_init: %s\n", cp_strerror(rc));
        return 1;
    }
    b.me = cp_my_pe(b.ctx);
    b.np = cp_num_pes(b.ctx);
    b.verify = getenv("BENCH_VERIFY") && atoi(getenv("BENCH_VERIFY")) > 0;
    if (getenv("BENCH_PIN") && atoi(getenv("BENCH_PIN")) > 0)
        pin_to_cpu(b.me);
    b.h_ping = cp_handler_register(b.ctx, on_ping, &b);
    b.h_pong = cp_handler_register(b.ctx, on_pong, &b);
    b.h_win = cp_handler_register(b.ctx, on_win, &b);
    b.h_ack = cp_handler_register(b.ctx, on_ack, &b);
    b.h_storm = cp_handler_register(b.ctx, on_storm, &b);
    b.h_done = cp_handler_register(b.ctx, on_done, &b);
    b.h_coll = cp_handler_register(b.ctx, on_coll, &b);
    b.h_coll_done = cp_handler_register(b.ctx, on_coll_done, &b);
    if (b.h_ping < 0 || b.h_pong < 0 || b.h_win < 0 || b.h_ack < 0 ||
        b.h_storm < 0 || b.h_done < 0 || b.h_coll < 0 || b.h_coll_done < 0)
        cp_abort(b.ctx, "cp_bench: cp_handler_register failed");

    bench_args a;
    if (bench_parse(&a, argc, argv, b.me == 0) != 0) {
        if (b.me == 0)
            cp_exit(b.ctx, 2);
        cp_finalize(b.ctx);
        return 2;
    }
    size_t smax = BW_SIZE;
    for (int i = 0; i < a.nsizes; i++)
        if (a.sizes[i] > smax)
            smax = a.sizes[i];
    b.ubuf = bench_buffer(smax);
    if (!b.ubuf)
        cp_abort(b.ctx, "cp_bench: out of memory for the user buffer");

    if (a.mode == B_STORM) {
        if (b.np < 2) {
            fprintf(stderr, "cp_bench: storm needs at least 2 PEs\n");
            cp_exit(b.ctx, 2);
        } else {
            run_storm(&b, &a);
            if (b.me == 0)
                cp_exit(b.ctx, 0);
        }
    } else if (a.mode == B_COLL) {
        if (b.me == 0) {
            run_coll(&b, &a);
            cp_exit(b.ctx, 0);
        }
    } else if (b.np < 2) {
        fprintf(stderr, "cp_bench: needs 2 PEs (charmrun -n 2)\n");
        cp_exit(b.ctx, 2);
    } else if (b.me == 0) {
        if (a.mode == B_ALL || a.mode == B_LATENCY)
            run_latency(&b, &a);
        if (a.mode == B_ALL || a.mode == B_RATE)
            run_window(&b, &a, 0);
        if (a.mode == B_ALL || a.mode == B_BW)
            run_window(&b, &a, 1);
        cp_exit(b.ctx, 0);
    }
    if (b.me != 0) {
        rc = cp_run(b.ctx);
        if (rc < 0)
            fprintf(stderr, "cp_bench: PE %d: cp_run: %s\n", b.me,
                    cp_strerror(rc));
    }
    free(b.ubuf);
    return cp_finalize(b.ctx);
}
