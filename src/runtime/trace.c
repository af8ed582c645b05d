/*
 * Tracing: each PE records events into a bounded buffer (no allocation
 * once it is made, nothing written to disk until the end) and writes them
 * as Chrome trace-event JSON objects to its part file, <path>.<pe>.part, at
 * cp_finalize, on the failure path (cp_abort) and on SIGTERM (how the
 * launcher ends the PEs of a job that failed). cp_trace_merge joins the
 * parts into <path>: PE 0 at a normal end, or the launcher.
 *
 * What is recorded: a slice ("X") for every message's handler (the
 * runtime's), and the slices the layer above adds (entry methods), flow
 * events from a message's send ("s", in cpM_transmit) to its dispatch
 * ("f"), instants ("i": migrations, load-balancing steps) and counters
 * ("C": the scheduler's queue length, when it changes). A message's flow
 * number travels in cp_msg.reducer, which only the reduction tree's own
 * messages (CP_KIND_REDN, not traced) read; its id is (sender << 32) | it.
 *
 * Clocks: CLOCK_MONOTONIC (cp_wall_time) is one clock for every process of
 * a host (events read it through the TSC where the kernel does: tnow); across hosts cp_trace_sync measures each PE's offset to PE 0 at
 * start-up (the round trip with the smallest delay of a few), and the
 * events are written in PE 0's time.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#else
#define HAVE_TSC 0
#endif

#define TRACE_DEFAULT_EVENTS 200000
#define TRACE_MAX_STRINGS 4096
#define SYNC_ROUNDS 8
/* a handler this long after its entry method's slice keeps its own slice
 * (cpT_dispatch); CHARMPY_TRACE_AFTER_US changes it (valgrind: 100x) */
#define HANDLER_AFTER_SECS 1e-6

typedef struct cpT_ev {
    double ts;          /* seconds, this PE's clock */
    double val;         /* X: duration; C: the value */
    uint64_t id;        /* s/f: flow id; X: bytes */
    int64_t idx[3];     /* X, i: the chare's index */
    uint32_t name, cat; /* string ids */
    int32_t peer;       /* s: destination PE, f: source PE */
    uint8_t ph, nidx;
} cpT_ev;

struct cp_trace {
    char *path;
    char part[4112], part_tmp[4112]; /* <path>.<pe>.part, and .tmp */
    cpT_ev *ev;
    size_t n, cap;
    uint64_t dropped;
    char *strings[TRACE_MAX_STRINGS]; /* id - 1 */
    uint32_t nstrings;
    uint32_t *handler_names;          /* per handler index, 0: "handler N" */
    int nhandler_names;
    uint32_t s_message, s_msg, s_runtime, s_queue;
    uint64_t next_flow;
    uint64_t cur_bytes;               /* the payload of the message being dispatched */
    /* The message being dispatched: its handler's slice starts at disp_t0;
     * the first slice the layer above records may take that start
     * (cp_trace_begin), and then stands for the handler's own. */
    double disp_t0, disp_end;         /* disp_end: of the slice that took it */
    int disp_state;                   /* DISP_* */
    /* the clock (tnow): the TSC mapped onto cp_wall_time's, or that */
    int tsc;
    double after; /* a handler this long after its entry method's slice keeps its own */
    uint64_t tick0, tick_a, reanchor, bracket;
    double mono0, mono_a, spt, last_now;
    double offset;                    /* add to this PE's clock: PE 0's */
    double last_queue, pending_queue; /* pending: to write at the next dispatch */
    int queue_pending;
    int written;
    /* cp_trace_sync */
    int sync_got;
    double sync_sent, best_rtt;
};

enum { DISP_NONE, DISP_OPEN, DISP_TAKEN, DISP_RECORDED };

static const char *einval_why; /* what the last CP_EINVAL of cp_trace_open was */

static cp_ctx *signal_ctx; /* the PE whose part SIGTERM writes (one ctx a process) */

static int full(const cp_trace *t) { return t->n == t->cap; }

/* ---- the clock ----------------------------------------------------------------
 * clock_gettime costs 25-30 ns on a VM, rdtsc 10: with three reads a
 * message, that is a tenth of a message's cost. When the kernel's own
 * clocksource is the TSC (so it found the TSC constant and in step on every
 * CPU), events are stamped with the TSC mapped linearly onto CLOCK_MONOTONIC
 * (cp_wall_time): calibrated over 2 ms at open, then re-anchored on a clock
 * read after an eighth of the run so far (at most every 5 ms), with the
 * tick's length taken over the whole run so far, so the drift between
 * anchors stays within a few ns. Never goes back. CHARMPY_TRACE_CLOCK
 * =monotonic (or tsc) forces the choice. */
#define REANCHOR_SECS 5e-3
#define CALIBRATE_SECS 2e-3

#if HAVE_TSC
/* A reading of both clocks at one moment: the TSC read before and after
 * the CLOCK_MONOTONIC read, tried again when those two are far apart (the
 * PE was descheduled in between: an anchor off by that much would shift
 * every event after it). */
static void both(cp_trace *t, uint64_t *k, double *m) {
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 8; i++) {
        uint64_t a = __rdtsc();
        double mm = cp_wall_time();
        uint64_t b = __rdtsc();
        if (b - a < best) {
            best = b - a;
            *k = a + (b - a) / 2;
            *m = mm;
        }
        if (t->bracket && best <= 2 * t->bracket)
            break;
    }
    if (!t->bracket || best < t->bracket)
        t->bracket = best;
}

/* A new anchor: the tick's length over the run so far; the next anchor
 * after an eighth of the run so far (at most REANCHOR_SECS), so the error
 * the tick's length leaves between anchors stays a few ns. */
static double reanchor(cp_trace *t) {
    uint64_t k;
    double m;
    both(t, &k, &m);
    if (k > t->tick0 && m > t->mono0)
        t->spt = (m - t->mono0) / (double)(k - t->tick0);
    t->tick_a = k;
    t->mono_a = m;
    double next = (m - t->mono0) / 8;
    t->reanchor = (uint64_t)((next < REANCHOR_SECS ? next : REANCHOR_SECS) / t->spt);
    return m;
}
#endif

static double tnow(cp_trace *t) {
#if HAVE_TSC
    if (t->tsc) {
        uint64_t k = __rdtsc();
        double v = k - t->tick_a < t->reanchor ? t->mono_a + (double)(k - t->tick_a) * t->spt
                                                : reanchor(t);
        if (v < t->last_now)
            v = t->last_now;
        t->last_now = v;
        return v;
    }
#endif
    return cp_wall_time();
}

static int kernel_uses_tsc(void) {
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    char buf[32] = "";
    if (!f)
        return 0;
    int ok = fgets(buf, sizeof buf, f) && strncmp(buf, "tsc", 3) == 0 &&
             (buf[3] == '\n' || buf[3] == 0);
    fclose(f);
    return ok;
}

/* 0, or CP_EINVAL for a CHARMPY_TRACE_CLOCK this does not know (or a
 * CHARMPY_TRACE_AFTER_US that is not a number of µs) */
static int clock_init(cp_trace *t) {
    const char *after = getenv("CHARMPY_TRACE_AFTER_US");
    t->after = HANDLER_AFTER_SECS;
    if (after && *after) {
        char *end;
        double us = strtod(after, &end);
        if (*end || !(us >= 0)) {
            einval_why = "CHARMPY_TRACE_AFTER_US must be a number of µs, at least 0";
            return CP_EINVAL;
        }
        t->after = us * 1e-6;
    }
    const char *env = getenv("CHARMPY_TRACE_CLOCK");
    int want; /* 1: tsc, 0: monotonic, -1: as the kernel */
    if (!env || !*env)
        want = -1;
    else if (strcmp(env, "tsc") == 0)
        want = 1;
    else if (strcmp(env, "monotonic") == 0)
        want = 0;
    else {
        einval_why = "CHARMPY_TRACE_CLOCK must be tsc, monotonic or unset";
        return CP_EINVAL;
    }
    t->tsc = HAVE_TSC && (want == 1 || (want == -1 && kernel_uses_tsc()));
#if HAVE_TSC
    if (t->tsc) {
        both(t, &t->tick0, &t->mono0);
        double m;
        uint64_t k;
        do
            both(t, &k, &m);
        while (m - t->mono0 < CALIBRATE_SECS);
        if (k <= t->tick0) {
            t->tsc = 0; /* a TSC that does not move */
            return 0;
        }
        t->spt = (m - t->mono0) / (double)(k - t->tick0);
        (void)reanchor(t);
    }
#endif
    return 0;
}

double cp_trace_now(cp_ctx *ctx) { return ctx->trace ? tnow(ctx->trace) : cp_wall_time(); }

const char *cp_trace_open_error(int rc) {
    return rc == CP_ESYS     ? "cannot write there (give a file in a directory that exists "
                               "and can be written)"
           : rc == CP_EINVAL ? (einval_why ? einval_why
                                           : "CHARMPY_TRACE_EVENTS must be a whole number of "
                                             "events, at least 1")
           : rc == CP_ERANGE ? "the path is too long (at most 4000 bytes)"
                             : cp_strerror(rc);
}

static cpT_ev *ev_new(cp_trace *t) {
    if (t->n == t->cap) {
        t->dropped++;
        return NULL;
    }
    cpT_ev *e = &t->ev[t->n++];
    memset(e, 0, sizeof *e);
    return e;
}

uint32_t cp_trace_string(cp_ctx *ctx, const char *s) {
    cp_trace *t = ctx->trace;
    if (!t || !s)
        return 0;
    for (uint32_t i = 0; i < t->nstrings; i++)
        if (strcmp(t->strings[i], s) == 0)
            return i + 1;
    if (t->nstrings == TRACE_MAX_STRINGS)
        return 0;
    char *c = strdup(s);
    if (!c)
        return 0;
    t->strings[t->nstrings++] = c;
    return t->nstrings;
}

static void on_sigterm(int sig) {
    cp_ctx *ctx = signal_ctx;
    if (ctx)
        (void)cp_trace_flush(ctx);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* The part file can be written: made and removed now, so that a path in a
 * directory that does not exist fails at the start, not after the run. */
static int check_writable(const char *path, int pe) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.%d.part.tmp", path, pe);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return CP_ESYS;
    fclose(f);
    unlink(tmp);
    return 0;
}

int cp_trace_open(cp_ctx *ctx, const char *path, size_t max_events) {
    einval_why = NULL;
    if (ctx->trace)
        return CP_EINVAL;
    if (!path || !*path)
        return CP_EINVAL;
    if (strlen(path) > 4000)
        return CP_ERANGE;
    int rc = check_writable(path, ctx->my_pe);
    if (rc)
        return rc;
    if (!max_events) {
        const char *env = getenv("CHARMPY_TRACE_EVENTS");
        char *end;
        long long v = env && *env ? strtoll(env, &end, 10) : 0;
        if (env && *env && (*end || v < 1))
            return CP_EINVAL;
        max_events = (size_t)v;
    }
    cp_trace *t = calloc(1, sizeof *t);
    if (!t)
        return CP_ENOMEM;
    t->cap = max_events ? max_events : TRACE_DEFAULT_EVENTS;
    t->ev = malloc(t->cap * sizeof *t->ev);
    t->path = strdup(path);
    if (!t->ev || !t->path) {
        free(t->ev);
        free(t->path);
        free(t);
        return CP_ENOMEM;
    }
    snprintf(t->part, sizeof t->part, "%s.%d.part", path, ctx->my_pe);
    snprintf(t->part_tmp, sizeof t->part_tmp, "%s.%d.part.tmp", path, ctx->my_pe);
    /* touched now, not at the first event of each page: a page fault in
     * the middle of a run costs more than the events it holds */
    memset(t->ev, 0, t->cap * sizeof *t->ev);
    t->last_queue = -1;
    t->best_rtt = -1;
    if ((rc = clock_init(t)) != 0) {
        free(t->ev);
        free(t->path);
        free(t);
        return rc;
    }
    ctx->trace = t;
    cpX_observe(ctx);
    t->s_message = cp_trace_string(ctx, "message");
    t->s_msg = cp_trace_string(ctx, "msg");
    t->s_runtime = cp_trace_string(ctx, "runtime");
    t->s_queue = cp_trace_string(ctx, "queue length");
    signal_ctx = ctx;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigterm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    return 0;
}

int cp_tracing(const cp_ctx *ctx) { return ctx->trace != NULL; }

const char *cp_trace_path(const cp_ctx *ctx) { return ctx->trace ? ctx->trace->path : NULL; }

void cp_trace_handler_name(cp_ctx *ctx, int handler, const char *name) {
    cp_trace *t = ctx->trace;
    if (!t || handler < 0)
        return;
    if (handler >= t->nhandler_names) {
        uint32_t *nb = realloc(t->handler_names, (size_t)(handler + 1) * sizeof *nb);
        if (!nb)
            return;
        memset(nb + t->nhandler_names, 0,
               (size_t)(handler + 1 - t->nhandler_names) * sizeof *nb);
        t->handler_names = nb;
        t->nhandler_names = handler + 1;
    }
    t->handler_names[handler] = cp_trace_string(ctx, name);
}

void cp_trace_slice(cp_ctx *ctx, double t0, double t1, uint32_t name, uint32_t cat,
                    const int64_t *idx, int nidx, uint64_t bytes) {
    cp_trace *t = ctx->trace;
    cpT_ev *e = t ? ev_new(t) : NULL;
    if (!e)
        return;
    if (t->disp_state == DISP_TAKEN && t0 == t->disp_t0) {
        t->disp_state = DISP_RECORDED;
        t->disp_end = t1;
    }
    e->ph = 'X';
    e->ts = t0;
    e->val = t1 > t0 ? t1 - t0 : 0;
    e->name = name;
    e->cat = cat;
    e->id = bytes == CP_TRACE_MSG_BYTES ? t->cur_bytes : bytes;
    e->nidx = (uint8_t)(nidx < 0 ? 0 : nidx > 3 ? 3 : nidx);
    for (int i = 0; i < e->nidx; i++)
        e->idx[i] = idx[i];
}

void cp_trace_instant(cp_ctx *ctx, uint32_t name, uint32_t cat, const int64_t *idx, int nidx,
                      double value) {
    cp_trace *t = ctx->trace;
    cpT_ev *e = t ? ev_new(t) : NULL;
    if (!e)
        return;
    e->ph = 'i';
    e->ts = tnow(t);
    e->val = value;
    e->name = name;
    e->cat = cat;
    e->nidx = (uint8_t)(nidx < 0 ? 0 : nidx > 3 ? 3 : nidx);
    for (int i = 0; i < e->nidx; i++)
        e->idx[i] = idx[i];
}

void cp_trace_counter(cp_ctx *ctx, uint32_t name, double value) {
    cp_trace *t = ctx->trace;
    cpT_ev *e = t ? ev_new(t) : NULL;
    if (!e)
        return;
    e->ph = 'C';
    e->ts = tnow(t);
    e->val = value;
    e->name = name;
}

/* ---- the runtime's own events ---------------------------------------------- */

/* A message leaves (cpM_transmit): its flow id, and the flow's start. */
void cpT_send(cp_ctx *ctx, int pe, cp_msg *msg) {
    cp_trace *t = ctx->trace;
    if (msg->kind == CP_KIND_REDN || msg->kind == CP_KIND_QD)
        return;
    if (full(t)) { /* nothing more is recorded here: no flow to start */
        t->dropped++;
        msg->reducer = 0;
        return;
    }
    if (!(uint32_t)++t->next_flow) /* 0 is "not stamped" */
        ++t->next_flow;
    msg->reducer = (uint32_t)t->next_flow;
    cpT_ev *e = ev_new(t);
    e->ph = 's';
    e->ts = tnow(t);
    e->id = ((uint64_t)ctx->my_pe << 32) | msg->reducer;
    e->peer = pe;
    e->name = t->s_message;
    e->cat = t->s_msg;
}

static uint32_t handler_name(cp_ctx *ctx, uint32_t handler) {
    cp_trace *t = ctx->trace;
    uint32_t name = (int)handler < t->nhandler_names ? t->handler_names[handler] : 0;
    if (!name) {
        char buf[32];
        snprintf(buf, sizeof buf, "handler %u", handler);
        name = cp_trace_string(ctx, buf);
    }
    return name;
}

/* Run handler h on msg, recorded: the flow's end at the handler's start
 * (t0, which the handler's slice holds), then the handler's slice, unless
 * the layer above recorded one from t0 itself (cp_trace_begin: an entry
 * method's slice, whose bytes are the message's) and the handler ended
 * within HANDLER_AFTER_SECS of it: that slice stands for the handler's,
 * one event less a message. (A handler that goes on after its entry method,
 * e.g. resuming a coroutine the method's message woke, keeps its slice
 * around the entry method's.) */
void cpT_dispatch(cp_ctx *ctx, cp_msg *msg, cp_handler_ent *h) {
    cp_trace *t = ctx->trace;
    if (full(t) && !t->queue_pending) {
        t->dropped += 2;
        h->fn(ctx, msg, h->user);
        return;
    }
    uint32_t handler = msg->handler;
    uint64_t bytes = msg->size;
    double t0 = tnow(t);
    if (t->queue_pending) { /* the length polled just now (cpT_queue) */
        t->queue_pending = 0;
        cpT_ev *e = ev_new(t);
        if (e) {
            e->ph = 'C';
            e->ts = t0;
            e->val = t->pending_queue;
            e->name = t->s_queue;
        }
    }
    if (msg->reducer) { /* stamped by a tracing sender */
        cpT_ev *e = ev_new(t);
        if (e) {
            e->ph = 'f';
            e->ts = t0;
            e->id = ((uint64_t)msg->src_pe << 32) | msg->reducer;
            e->peer = (int32_t)msg->src_pe;
            e->name = t->s_message;
            e->cat = t->s_msg;
        }
    }
    /* a handler may run the scheduler (and so this) again: keep ours */
    uint64_t was_bytes = t->cur_bytes;
    double was_t0 = t->disp_t0;
    int was_state = t->disp_state;
    t->cur_bytes = bytes;
    t->disp_t0 = t0;
    t->disp_state = DISP_OPEN;
    h->fn(ctx, msg, h->user); /* msg is the handler's */
    double t1 = tnow(t);
    if (t->disp_state != DISP_RECORDED || t1 - t->disp_end > t->after)
        cp_trace_slice(ctx, t0, t1, handler_name(ctx, handler), t->s_runtime, NULL, 0, bytes);
    t->cur_bytes = was_bytes;
    t->disp_t0 = was_t0;
    t->disp_state = was_state;
}

double cp_trace_begin(cp_ctx *ctx) {
    cp_trace *t = ctx->trace;
    if (!t || full(t))
        return -1;
    if (t->disp_state == DISP_OPEN) {
        t->disp_state = DISP_TAKEN;
        return t->disp_t0;
    }
    return tnow(t);
}

/* The scheduler polled n messages: the queue length, when it changed; at
 * the next dispatch's start when one follows (no clock read of its own). */
void cpT_queue(cp_ctx *ctx, uint32_t n) {
    cp_trace *t = ctx->trace;
    double q = (double)n + ctx->held.count + ctx->local.count;
    if (q == t->last_queue)
        return;
    t->last_queue = q;
    if (n) {
        t->queue_pending = 1;
        t->pending_queue = q;
    } else {
        cp_trace_counter(ctx, t->s_queue, q);
    }
}

/* ---- clocks across hosts ----------------------------------------------------- */

static int send_sync(cp_ctx *ctx, int pe, double a, double b) {
    cp_msg *m = cp_msg_alloc(ctx, 2 * sizeof(double));
    if (!m)
        return CP_ENOMEM;
    double v[2] = {a, b};
    memcpy(cp_msg_data(m), v, sizeof v);
    m->kind = CP_KIND_TRACE;
    m->handler = 0;
    int rc = cpM_transmit(ctx, pe, m);
    if (rc)
        cp_msg_free(ctx, m);
    return rc;
}

/* A clock message: at PE 0 a question (answered with PE 0's time), at any
 * other PE the answer to its question. */
void cpT_sync_receive(cp_ctx *ctx, cp_msg *msg) {
    double v[2];
    memcpy(v, cp_msg_data(msg), sizeof v);
    int from = (int)msg->src_pe;
    cp_msg_free(ctx, msg);
    if (ctx->my_pe == 0) {
        if (send_sync(ctx, from, v[0], cp_wall_time()))
            cp_abort(ctx, "cannot answer PE %d's clock question", from);
        return;
    }
    cp_trace *t = ctx->trace;
    if (!t)
        return;
    double now = cp_wall_time(), rtt = now - v[0];
    if (t->best_rtt < 0 || rtt < t->best_rtt) {
        t->best_rtt = rtt;
        t->offset = v[1] - (v[0] + now) / 2;
    }
    t->sync_got++;
}

static int sync_answered(void *arg) {
    cp_trace *t = arg;
    return t->sync_got > 0;
}

int cp_trace_sync(cp_ctx *ctx) {
    cp_trace *t = ctx->trace;
    if (!t || ctx->my_pe == 0)
        return 0;
    for (int r = 0; r < SYNC_ROUNDS; r++) {
        t->sync_got = 0;
        int rc = send_sync(ctx, 0, cp_wall_time(), 0);
        if (rc)
            return rc;
        rc = cp_run_until(ctx, sync_answered, t);
        if (rc)
            return rc < 0 ? rc : 0; /* the job is ending */
    }
    return 0;
}

double cp_trace_offset(const cp_ctx *ctx) { return ctx->trace ? ctx->trace->offset : 0; }

/* ---- writing ------------------------------------------------------------------ */

/* The part file is written with write(2) from a buffer, and numbers are
 * formatted here, not by stdio: this runs in the SIGTERM handler too (only
 * async-signal-safe calls: open, write, close, rename, unlink), and it is
 * what a traced run's exit waits for (printf took ~7,000 instructions an
 * event; this takes a few hundred). */
typedef struct obuf {
    int fd, err;
    size_t n;
    char buf[1 << 16];
} obuf;

static void o_flush(obuf *o) {
    size_t off = 0;
    while (off < o->n && !o->err) {
        ssize_t w = write(o->fd, o->buf + off, o->n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            o->err = 1;
        else
            off += (size_t)w;
    }
    o->n = 0;
}

static void o_put(obuf *o, const char *s, size_t len) {
    while (len) {
        if (o->n == sizeof o->buf)
            o_flush(o);
        size_t k = sizeof o->buf - o->n;
        if (k > len)
            k = len;
        memcpy(o->buf + o->n, s, k);
        o->n += k;
        s += k;
        len -= k;
    }
}

#define O_LIT(o, lit) o_put((o), (lit), sizeof(lit) - 1)

static void o_char(obuf *o, char c) { o_put(o, &c, 1); }

static void o_u64(obuf *o, uint64_t v) {
    char d[24];
    int i = sizeof d;
    do
        d[--i] = (char)('0' + v % 10);
    while (v /= 10);
    o_put(o, d + i, sizeof d - (size_t)i);
}

static void o_i64(obuf *o, int64_t v) {
    if (v < 0) {
        o_char(o, '-');
        o_u64(o, (uint64_t)0 - (uint64_t)v);
    } else {
        o_u64(o, (uint64_t)v);
    }
}

/* v with `places` decimals (at most 9), rounded; trailing zeros kept when
 * keep, else cut (and the point with them) */
static void o_fixed(obuf *o, double v, int places, int keep) {
    static const double scale[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
    if (v != v) { /* NaN: not JSON */
        O_LIT(o, "null");
        return;
    }
    if (v < 0) {
        o_char(o, '-');
        v = -v;
    }
    double r = v * scale[places] + 0.5;
    uint64_t u = (uint64_t)r, sc = (uint64_t)scale[places];
    o_u64(o, u / sc);
    uint64_t frac = u % sc;
    if (!places || (!keep && !frac))
        return;
    char d[10];
    for (int i = places - 1; i >= 0; i--, frac /= 10)
        d[i] = (char)('0' + frac % 10);
    int len = places;
    while (!keep && d[len - 1] == '0')
        len--;
    o_char(o, '.');
    o_put(o, d, (size_t)len);
}

/* a counter's or an instant's value: integers exactly, others to 9
 * decimals, magnitudes below 1e-3 or too large for that in exponent form */
static void o_value(obuf *o, double v) {
    if (v != v || v - v != 0) { /* NaN, inf */
        O_LIT(o, "null");
        return;
    }
    double a = v < 0 ? -v : v;
    if (a == 0 || (a >= 1e-3 && a < 1e9)) {
        o_fixed(o, v, 9, 0);
        return;
    }
    if (a < 9e18 && (double)(int64_t)v == v) {
        o_i64(o, (int64_t)v);
        return;
    }
    int ex = 0;
    while (a >= 10) {
        a /= 10;
        ex++;
    }
    while (a < 1) {
        a *= 10;
        ex--;
    }
    o_fixed(o, v < 0 ? -a : a, 9, 0);
    o_char(o, 'e');
    o_i64(o, ex);
}

static void o_str(obuf *o, const char *s) {
    static const char hex[] = "0123456789abcdef";
    o_char(o, '"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            o_put(o, e, 2);
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            o_put(o, e, 6);
        } else {
            o_char(o, (char)c);
        }
    }
    o_char(o, '"');
}

static const char *str_of(const cp_trace *t, uint32_t id) {
    return id && id <= t->nstrings ? t->strings[id - 1] : "?";
}

static void o_index(obuf *o, const cpT_ev *e) {
    if (!e->nidx)
        return;
    O_LIT(o, ",\"index\":");
    if (e->nidx == 1) {
        o_i64(o, e->idx[0]);
        return;
    }
    o_char(o, '[');
    for (int i = 0; i < e->nidx; i++) {
        if (i)
            o_char(o, ',');
        o_i64(o, e->idx[i]);
    }
    o_char(o, ']');
}

/* ,"name":"...","cat":"..." */
static void o_names(obuf *o, const cp_trace *t, const cpT_ev *e, int cat) {
    O_LIT(o, ",\"name\":");
    o_str(o, str_of(t, e->name));
    if (cat) {
        O_LIT(o, ",\"cat\":");
        o_str(o, str_of(t, e->cat));
    }
}

static void put_event(obuf *o, const cp_trace *t, int pe, const cpT_ev *e) {
    O_LIT(o, ",\n{\"ph\":\"");
    o_char(o, (char)e->ph);
    O_LIT(o, "\",\"pid\":");
    o_i64(o, pe);
    O_LIT(o, ",\"tid\":");
    o_i64(o, pe);
    O_LIT(o, ",\"ts\":");
    o_fixed(o, (e->ts + t->offset) * 1e6, 3, 1);
    switch (e->ph) {
    case 'X':
        O_LIT(o, ",\"dur\":");
        o_fixed(o, e->val * 1e6, 3, 1);
        o_names(o, t, e, 1);
        O_LIT(o, ",\"args\":{\"pe\":");
        o_i64(o, pe);
        O_LIT(o, ",\"bytes\":");
        o_u64(o, e->id);
        o_index(o, e);
        O_LIT(o, "}}");
        break;
    case 's':
    case 'f':
        if (e->ph == 'f')
            O_LIT(o, ",\"bp\":\"e\"");
        O_LIT(o, ",\"id\":");
        o_u64(o, e->id);
        if (e->ph == 's')
            O_LIT(o, ",\"name\":\"message\",\"cat\":\"msg\",\"args\":{\"to\":");
        else
            O_LIT(o, ",\"name\":\"message\",\"cat\":\"msg\",\"args\":{\"from\":");
        o_i64(o, e->peer);
        O_LIT(o, "}}");
        break;
    case 'i':
        O_LIT(o, ",\"s\":\"t\"");
        o_names(o, t, e, 1);
        O_LIT(o, ",\"args\":{\"value\":");
        o_value(o, e->val);
        o_index(o, e);
        O_LIT(o, "}}");
        break;
    default: /* 'C' */
        o_names(o, t, e, 0);
        O_LIT(o, ",\"args\":{\"value\":");
        o_value(o, e->val);
        O_LIT(o, "}}");
        break;
    }
}

/* {"ph":"M","pid":pe,"tid":pe,"name":"<name>","args":{ */
static void put_meta(obuf *o, int pe, const char *name) {
    O_LIT(o, "{\"ph\":\"M\",\"pid\":");
    o_i64(o, pe);
    O_LIT(o, ",\"tid\":");
    o_i64(o, pe);
    O_LIT(o, ",\"name\":");
    o_str(o, name);
    O_LIT(o, ",\"args\":{");
}

static void part_path(char *out, size_t n, const char *path, int pe, const char *suffix) {
    snprintf(out, n, "%s.%d.part%s", path, pe, suffix);
}

int cp_trace_flush(cp_ctx *ctx) {
    cp_trace *t = ctx->trace;
    if (!t || t->written)
        return 0;
    t->written = 1;
    /* the paths are made at open (no snprintf here: a signal handler's) */
    const char *tmp = t->part_tmp, *fin = t->part;
    static obuf o; /* 64 KiB: not on a signal handler's stack */
    o.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    o.err = 0;
    o.n = 0;
    if (o.fd < 0)
        return CP_ESYS;
    int pe = ctx->my_pe;
    put_meta(&o, pe, "process_name");
    O_LIT(&o, "\"name\":\"PE ");
    o_i64(&o, pe);
    O_LIT(&o, "\"}},\n");
    put_meta(&o, pe, "process_sort_index");
    O_LIT(&o, "\"sort_index\":");
    o_i64(&o, pe);
    O_LIT(&o, "}},\n");
    put_meta(&o, pe, "thread_name");
    O_LIT(&o, "\"name\":\"PE ");
    o_i64(&o, pe);
    O_LIT(&o, "\"}},\n");
    put_meta(&o, pe, "charmpy_pe");
    O_LIT(&o, "\"pe\":");
    o_i64(&o, pe);
    O_LIT(&o, ",\"npes\":");
    o_i64(&o, ctx->npes);
    O_LIT(&o, ",\"events\":");
    o_u64(&o, t->n);
    O_LIT(&o, ",\"dropped\":");
    o_u64(&o, t->dropped);
    O_LIT(&o, ",\"capacity\":");
    o_u64(&o, t->cap);
    O_LIT(&o, ",\"clock_offset_us\":");
    o_fixed(&o, t->offset * 1e6, 3, 1);
    if (ctx->exiting)
        O_LIT(&o, ",\"complete\":true}}");
    else
        O_LIT(&o, ",\"complete\":false}}");
    for (size_t i = 0; i < t->n; i++)
        put_event(&o, t, pe, &t->ev[i]);
    o_char(&o, '\n');
    o_flush(&o);
    int bad = o.err;
    if (close(o.fd) != 0 || bad || rename(tmp, fin) != 0) {
        unlink(tmp);
        return CP_ESYS;
    }
    return 0;
}

void cpT_free(cp_ctx *ctx) {
    cp_trace *t = ctx->trace;
    if (!t)
        return;
    if (signal_ctx == ctx) {
        signal(SIGTERM, SIG_DFL);
        signal_ctx = NULL;
    }
    for (uint32_t i = 0; i < t->nstrings; i++)
        free(t->strings[i]);
    free(t->handler_names);
    free(t->ev);
    free(t->path);
    free(t);
    ctx->trace = NULL;
    cpX_observe(ctx);
}

/* ---- merging ------------------------------------------------------------------ */

static int copy_file(FILE *out, const char *from) {
    FILE *in = fopen(from, "r");
    if (!in)
        return -1;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) {
            fclose(in);
            return -1;
        }
    fclose(in);
    return 0;
}

static int parts_present(const char *path, int npes) {
    int have = 0;
    char p[4096];
    for (int pe = 0; pe < npes; pe++) {
        part_path(p, sizeof p, path, pe, "");
        have += access(p, R_OK) == 0;
    }
    return have;
}

int cp_trace_merge(const char *path, int npes, double wait_secs, int *missing) {
    double end = cp_wall_time() + wait_secs;
    while (parts_present(path, npes) < npes && cp_wall_time() < end)
        usleep(10000);
    char tmp[4096], p[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *out = fopen(tmp, "w");
    if (!out)
        return CP_ESYS;
    fprintf(out, "{\"traceEvents\":[\n");
    int first = 1, miss = 0;
    for (int pe = 0; pe < npes; pe++) {
        part_path(p, sizeof p, path, pe, "");
        if (access(p, R_OK) != 0) {
            miss++;
            continue;
        }
        if (!first)
            fprintf(out, ",\n");
        first = 0;
        if (copy_file(out, p) < 0) {
            fclose(out);
            unlink(tmp);
            return CP_ESYS;
        }
    }
    fprintf(out, "],\n\"displayTimeUnit\":\"ms\",\n\"otherData\":{\"producer\":\"charmpy\","
                 "\"pes\":%d,\"missing_pes\":%d}}\n", npes, miss);
    int bad = ferror(out);
    if (fclose(out) != 0 || bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return CP_ESYS;
    }
    for (int pe = 0; pe < npes; pe++) {
        part_path(p, sizeof p, path, pe, "");
        unlink(p);
    }
    if (missing)
        *missing = miss;
    return 0;
}
