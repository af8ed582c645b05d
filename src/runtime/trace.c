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
 * a host; across hosts cp_trace_sync measures each PE's offset to PE 0 at
 * start-up (the round trip with the smallest delay of a few), and the
 * events are written in PE 0's time.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define TRACE_DEFAULT_EVENTS 200000
#define TRACE_MAX_STRINGS 4096
#define SYNC_ROUNDS 8

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
    double offset;                    /* add to this PE's clock: PE 0's */
    double last_queue;
    int written;
    /* cp_trace_sync */
    int sync_got;
    double sync_sent, best_rtt;
};

static cp_ctx *signal_ctx; /* the PE whose part SIGTERM writes (one ctx a process) */

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
    t->last_queue = -1;
    t->best_rtt = -1;
    ctx->trace = t;
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
    e->ts = cp_wall_time();
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
    e->ts = cp_wall_time();
    e->val = value;
    e->name = name;
}

/* ---- the runtime's own events ---------------------------------------------- */

/* A message leaves (cpM_transmit): its flow id, and the flow's start. */
void cpT_send(cp_ctx *ctx, int pe, cp_msg *msg) {
    cp_trace *t = ctx->trace;
    if (msg->kind == CP_KIND_REDN || msg->kind == CP_KIND_QD)
        return;
    if (!(uint32_t)++t->next_flow) /* 0 is "not stamped" */
        ++t->next_flow;
    msg->reducer = (uint32_t)t->next_flow;
    cpT_ev *e = ev_new(t);
    if (!e)
        return;
    e->ph = 's';
    e->ts = cp_wall_time();
    e->id = ((uint64_t)ctx->my_pe << 32) | msg->reducer;
    e->peer = pe;
    e->name = t->s_message;
    e->cat = t->s_msg;
}

/* A message is dispatched: the flow's end (at t0, the start of the
 * handler's slice, which it binds to). */
void cpT_arrive(cp_ctx *ctx, const cp_msg *msg, double t0) {
    cp_trace *t = ctx->trace;
    t->cur_bytes = msg->size;
    if (!msg->reducer)
        return; /* not stamped by a tracing sender */
    cpT_ev *e = ev_new(t);
    if (!e)
        return;
    e->ph = 'f';
    e->ts = t0;
    e->id = ((uint64_t)msg->src_pe << 32) | msg->reducer;
    e->peer = (int32_t)msg->src_pe;
    e->name = t->s_message;
    e->cat = t->s_msg;
}

void cpT_handled(cp_ctx *ctx, uint32_t handler, uint64_t bytes, double t0) {
    cp_trace *t = ctx->trace;
    uint32_t name = (int)handler < t->nhandler_names ? t->handler_names[handler] : 0;
    if (!name) {
        char buf[32];
        snprintf(buf, sizeof buf, "handler %u", handler);
        name = cp_trace_string(ctx, buf);
    }
    cp_trace_slice(ctx, t0, cp_wall_time(), name, t->s_runtime, NULL, 0, bytes);
}

void cpT_queue(cp_ctx *ctx, uint32_t n) {
    cp_trace *t = ctx->trace;
    double q = (double)n + ctx->held.count + ctx->local.count;
    if (q != t->last_queue) {
        t->last_queue = q;
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

static void put_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static const char *str_of(const cp_trace *t, uint32_t id) {
    return id && id <= t->nstrings ? t->strings[id - 1] : "?";
}

static void put_index(FILE *f, const cpT_ev *e) {
    if (!e->nidx)
        return;
    fprintf(f, ",\"index\":");
    if (e->nidx == 1) {
        fprintf(f, "%lld", (long long)e->idx[0]);
        return;
    }
    fputc('[', f);
    for (int i = 0; i < e->nidx; i++)
        fprintf(f, "%s%lld", i ? "," : "", (long long)e->idx[i]);
    fputc(']', f);
}

static void put_event(FILE *f, const cp_trace *t, int pe, const cpT_ev *e) {
    double ts = (e->ts + t->offset) * 1e6;
    fprintf(f, ",\n{\"ph\":\"%c\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f", e->ph, pe, pe, ts);
    switch (e->ph) {
    case 'X':
        fprintf(f, ",\"dur\":%.3f,\"name\":", e->val * 1e6);
        put_str(f, str_of(t, e->name));
        fprintf(f, ",\"cat\":");
        put_str(f, str_of(t, e->cat));
        fprintf(f, ",\"args\":{\"pe\":%d,\"bytes\":%llu", pe, (unsigned long long)e->id);
        put_index(f, e);
        fprintf(f, "}}");
        break;
    case 's':
    case 'f':
        fprintf(f, "%s,\"id\":%llu,\"name\":\"message\",\"cat\":\"msg\",\"args\":{\"%s\":%d}}",
                e->ph == 'f' ? ",\"bp\":\"e\"" : "", (unsigned long long)e->id,
                e->ph == 's' ? "to" : "from", e->peer);
        break;
    case 'i':
        fprintf(f, ",\"s\":\"t\",\"name\":");
        put_str(f, str_of(t, e->name));
        fprintf(f, ",\"cat\":");
        put_str(f, str_of(t, e->cat));
        fprintf(f, ",\"args\":{\"value\":%.9g", e->val);
        put_index(f, e);
        fprintf(f, "}}");
        break;
    default: /* 'C' */
        fprintf(f, ",\"name\":");
        put_str(f, str_of(t, e->name));
        fprintf(f, ",\"args\":{\"value\":%.9g}}", e->val);
        break;
    }
}

static void part_path(char *out, size_t n, const char *path, int pe, const char *suffix) {
    snprintf(out, n, "%s.%d.part%s", path, pe, suffix);
}

int cp_trace_flush(cp_ctx *ctx) {
    cp_trace *t = ctx->trace;
    if (!t || t->written)
        return 0;
    t->written = 1;
    char tmp[4096], fin[4096];
    part_path(tmp, sizeof tmp, t->path, ctx->my_pe, ".tmp");
    part_path(fin, sizeof fin, t->path, ctx->my_pe, "");
    FILE *f = fopen(tmp, "w");
    if (!f)
        return CP_ESYS;
    int pe = ctx->my_pe;
    fprintf(f, "{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"process_name\","
               "\"args\":{\"name\":\"PE %d\"}},\n"
               "{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"process_sort_index\","
               "\"args\":{\"sort_index\":%d}},\n"
               "{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"thread_name\","
               "\"args\":{\"name\":\"PE %d\"}},\n"
               "{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"charmpy_pe\","
               "\"args\":{\"pe\":%d,\"npes\":%d,\"events\":%zu,\"dropped\":%llu,"
               "\"capacity\":%zu,\"clock_offset_us\":%.3f,\"complete\":%s}}",
            pe, pe, pe, pe, pe, pe, pe, pe, pe, pe, pe, pe, ctx->npes, t->n,
            (unsigned long long)t->dropped, t->cap, t->offset * 1e6,
            ctx->exiting ? "true" : "false");
    for (size_t i = 0; i < t->n; i++)
        put_event(f, t, pe, &t->ev[i]);
    fputc('\n', f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, fin) != 0) {
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
