/*
 * The MPI peer of cp_bench.c: the same benchmarks with MPI_Send/MPI_Recv/
 * MPI_Isend between user buffers. bench/run.sh runs it under Open MPI with
 * the shared-memory transport only (--mca pml ob1 --mca btl self,vader).
 * See bench_common.h for the command line and the output lines.
 *
 * Rank 0 drives every two-rank benchmark: before each timed batch it tells
 * rank 1 what to serve (a control message outside the timed region), so
 * both ranks always agree on the iteration count. The storm uses all ranks.
 */
#include <mpi.h>

#include "bench_common.h"

enum { TAG_CTL = 1, TAG_DATA = 2, TAG_ACK = 3 };
enum { CMD_QUIT, CMD_LAT, CMD_WIN };

static char *g_sbuf;  /* send buffer, max size */
static char *g_rbuf;  /* receive buffers: window * size */
static size_t g_rcap;

static void ctl(long cmd, long size, long count, long window) {
    long c[4] = {cmd, size, count, window};
    MPI_Send(c, 4, MPI_LONG, 1, TAG_CTL, MPI_COMM_WORLD);
}

static void ensure_rbuf(size_t n) {
    if (n <= g_rcap)
        return;
    free(g_rbuf);
    g_rbuf = bench_buffer(n);
    g_rcap = n;
    if (!g_rbuf) {
        fprintf(stderr, "mpi_bench: out of memory (%zu bytes)\n", n);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

/* Rank 1: serve batches until told to quit. */
static void serve(void) {
    MPI_Request req[RATE_WINDOW];
    for (;;) {
        long c[4];
        MPI_Recv(c, 4, MPI_LONG, 0, TAG_CTL, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (c[0] == CMD_QUIT)
            return;
        int size = (int)c[1], w = (int)c[3];
        long n = c[2];
        if (c[0] == CMD_LAT) {
            ensure_rbuf((size_t)size);
            for (long i = 0; i < n; i++) {
                MPI_Recv(g_rbuf, size, MPI_BYTE, 0, TAG_DATA, MPI_COMM_WORLD,
                         MPI_STATUS_IGNORE);
                MPI_Send(g_rbuf, size, MPI_BYTE, 0, TAG_DATA, MPI_COMM_WORLD);
            }
        } else {
            ensure_rbuf((size_t)size * (size_t)w);
            long ack = 0;
            for (long i = 0; i < n; i++) {
                for (int k = 0; k < w; k++)
                    MPI_Irecv(g_rbuf + (size_t)k * (size_t)size, size, MPI_BYTE,
                              0, TAG_DATA, MPI_COMM_WORLD, &req[k]);
                MPI_Waitall(w, req, MPI_STATUSES_IGNORE);
                for (int k = 0; k < w; k++)
                    bench_consume(g_rbuf + (size_t)k * (size_t)size,
                                  (size_t)size);
                MPI_Send(&ack, 1, MPI_LONG, 0, TAG_ACK, MPI_COMM_WORLD);
            }
        }
    }
}

/* Rank 0: n round trips of `size` bytes; returns the seconds taken. */
static double lat_batch(int size, long n) {
    ensure_rbuf((size_t)size);
    ctl(CMD_LAT, size, n, 0);
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        MPI_Send(g_sbuf, size, MPI_BYTE, 1, TAG_DATA, MPI_COMM_WORLD);
        MPI_Recv(g_rbuf, size, MPI_BYTE, 1, TAG_DATA, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
    }
    return bench_now() - t0;
}

/* Rank 0: n windows of w messages of `size` bytes, one ack per window. */
static double win_batch(int size, int w, long n) {
    MPI_Request req[RATE_WINDOW];
    long ack;
    ctl(CMD_WIN, size, n, w);
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        for (int k = 0; k < w; k++)
            MPI_Isend(g_sbuf, size, MPI_BYTE, 1, TAG_DATA, MPI_COMM_WORLD,
                      &req[k]);
        MPI_Waitall(w, req, MPI_STATUSES_IGNORE);
        MPI_Recv(&ack, 1, MPI_LONG, 1, TAG_ACK, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
    }
    return bench_now() - t0;
}

/* Warm up with growing batches until one takes WARMUP_SECONDS; returns the
 * iteration count for a repetition of rep_time seconds. */
static long calibrate(int lat, int size, int w, double rep_time) {
    long n = 1;
    for (;;) {
        double s = lat ? lat_batch(size, n) : win_batch(size, w, n);
        if (s >= WARMUP_SECONDS || n >= (1L << 30))
            break;
        n *= 2;
    }
    /* The first batches pay one-time costs (page faults, connection set-up):
     * estimate from a batch run after them. */
    double s = lat ? lat_batch(size, n) : win_batch(size, w, n);
    return bench_iters(n, s, rep_time);
}

static void run_latency(const bench_args *a) {
    const size_t *sizes = a->nsizes ? a->sizes : bench_lat_sizes;
    int ns = a->nsizes ? a->nsizes : (int)N_LAT_SIZES;
    for (int i = 0; i < ns; i++) {
        int size = (int)sizes[i];
        long n = calibrate(1, size, 0, a->rep_time);
        double v[MAX_REPS];
        for (int r = 0; r < a->reps; r++)
            v[r] = lat_batch(size, n) / (double)n / 2.0 * 1e6;
        char what[64];
        snprintf(what, sizeof what, "latency %d us (%ld iters)", size, n);
        bench_print_reps(what, v, a->reps);
        printf("latency %d %.3f\n", size, bench_median(v, a->reps));
        fflush(stdout);
    }
}

static void run_window(const bench_args *a, int bw) {
    int size = bw ? (int)(a->nsizes ? a->sizes[0] : BW_SIZE) : RATE_SIZE;
    int w = bw ? BW_WINDOW : RATE_WINDOW;
    long n = calibrate(0, size, w, a->rep_time);
    double v[MAX_REPS];
    for (int r = 0; r < a->reps; r++) {
        double s = win_batch(size, w, n);
        double msgs = (double)n * (double)w;
        v[r] = bw ? msgs * (double)size / s / 1e9 : msgs / s;
    }
    char what[64];
    snprintf(what, sizeof what, "%s (%ld windows)", bw ? "bw GB/s" : "rate msg/s",
             n);
    bench_print_reps(what, v, a->reps);
    if (bw)
        printf("bw %d %.3f\n", size, bench_median(v, a->reps));
    else
        printf("rate %.0f\n", bench_median(v, a->reps));
    fflush(stdout);
}

/*
 * Storm: every rank sends its share of `total` 64-byte messages round-robin
 * to the other ranks, draining what has arrived between bursts, then
 * receives the rest. Timed on rank 0 from a barrier to a barrier.
 */
static double storm_once(long total, int me, int np) {
    long mine = total / np + (me < total % np);
    long expect = 0;
    for (int s = 0; s < np; s++) {
        if (s == me)
            continue;
        long ns = total / np + (s < total % np);
        int k = (me - s - 1 + np) % np;
        expect += ns / (np - 1) + (k < ns % (np - 1));
    }
    char rbuf[STORM_SIZE];
    MPI_Request req[RATE_WINDOW];
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = bench_now();
    long sent = 0, got = 0;
    while (sent < mine) {
        int k = 0;
        for (; k < RATE_WINDOW && sent < mine; k++, sent++) {
            int dst = (int)((me + 1 + sent % (np - 1)) % np);
            MPI_Isend(g_sbuf, STORM_SIZE, MPI_BYTE, dst, TAG_DATA,
                      MPI_COMM_WORLD, &req[k]);
        }
        MPI_Waitall(k, req, MPI_STATUSES_IGNORE);
        int flag = 1;
        while (got < expect) {
            MPI_Iprobe(MPI_ANY_SOURCE, TAG_DATA, MPI_COMM_WORLD, &flag,
                       MPI_STATUS_IGNORE);
            if (!flag)
                break;
            MPI_Recv(rbuf, STORM_SIZE, MPI_BYTE, MPI_ANY_SOURCE, TAG_DATA,
                     MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            got++;
        }
    }
    for (; got < expect; got++)
        MPI_Recv(rbuf, STORM_SIZE, MPI_BYTE, MPI_ANY_SOURCE, TAG_DATA,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    MPI_Barrier(MPI_COMM_WORLD);
    return bench_now() - t0;
}

/* One warm-up storm, then the repetitions; rank 0 prints the median. */
static void run_storm(const bench_args *a, int me, int np) {
    if (np < 2) {
        if (me == 0)
            fprintf(stderr, "mpi_bench: storm needs at least 2 ranks\n");
        return;
    }
    double v[MAX_REPS];
    storm_once(a->total, me, np);
    for (int r = 0; r < a->reps; r++)
        v[r] = storm_once(a->total, me, np);
    if (me != 0)
        return;
    char what[64];
    snprintf(what, sizeof what, "storm %d ranks s", np);
    bench_print_reps(what, v, a->reps);
    double t = bench_median(v, a->reps);
    printf("# storm %d ranks: %.3g messages/s\n", np, (double)a->total / t);
    printf("storm %d %ld %.4f\n", np, a->total, t);
    fflush(stdout);
}

/* coll: every rank runs the same batches; rank 0 decides their length. */
static double coll_batch(size_t size, long n) {
    double one = 1.0, sum = 0;
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        MPI_Bcast(g_sbuf, (int)size, MPI_BYTE, 0, MPI_COMM_WORLD);
        bench_consume(g_sbuf, size);
        MPI_Reduce(&one, &sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    }
    return bench_now() - t0;
}

static void run_coll(const bench_args *a, int me, int np) {
    const size_t *sizes = a->nsizes ? a->sizes : bench_coll_sizes;
    int ns = a->nsizes ? a->nsizes : (int)N_COLL_SIZES;
    for (int i = 0; i < ns; i++) {
        long n = 1;
        int more = 1;
        while (more) {
            more = coll_batch(sizes[i], n) < WARMUP_SECONDS && n < (1L << 30);
            MPI_Bcast(&more, 1, MPI_INT, 0, MPI_COMM_WORLD);
            n = more ? 2 * n : n;
        }
        n = bench_iters(n, coll_batch(sizes[i], n), a->rep_time);
        MPI_Bcast(&n, 1, MPI_LONG, 0, MPI_COMM_WORLD);
        double v[MAX_REPS];
        for (int r = 0; r < a->reps; r++)
            v[r] = coll_batch(sizes[i], n) / (double)n * 1e6;
        if (me != 0)
            continue;
        char what[64];
        snprintf(what, sizeof what, "coll %d ranks %zu B us (%ld iters)", np, sizes[i], n);
        bench_print_reps(what, v, a->reps);
        printf("coll %d %zu %.3f\n", np, sizes[i], bench_median(v, a->reps));
        fflush(stdout);
    }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int me, np;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &np);
    bench_args a;
    if (bench_parse(&a, argc, argv, me == 0) != 0) {
        MPI_Finalize();
        return 2;
    }
    size_t smax = BW_SIZE;
    for (int i = 0; i < a.nsizes; i++)
        if (a.sizes[i] > smax)
            smax = a.sizes[i];
    g_sbuf = bench_buffer(smax);
    if (!g_sbuf) {
        fprintf(stderr, "mpi_bench: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (a.mode == B_STORM) {
        run_storm(&a, me, np);
    } else if (a.mode == B_COLL) {
        run_coll(&a, me, np);
    } else if (np < 2) {
        if (me == 0)
            fprintf(stderr, "mpi_bench: needs 2 ranks (mpirun -n 2)\n");
    } else if (me == 0) {
        if (a.mode == B_ALL || a.mode == B_LATENCY)
            run_latency(&a);
        if (a.mode == B_ALL || a.mode == B_RATE)
            run_window(&a, 0);
        if (a.mode == B_ALL || a.mode == B_BW)
            run_window(&a, 1);
        ctl(CMD_QUIT, 0, 0, 0);
    } else if (me == 1) {
        serve();
    }
    free(g_sbuf);
    free(g_rbuf);
    MPI_Finalize();
    return 0;
}
