/* The PE's context: start and end, handlers, reducers, exit and abort. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

const char *cp_strerror(int rc) {
    switch (rc) {
    case CP_OK: return "success";
    case CP_ENOMEM: return "out of memory";
    case CP_EINVAL: return "invalid argument";
    case CP_ERANGE: return "no such PE, handler or reducer";
    case CP_ESYS: return "system call failed";
    case CP_ESTATE: return "not possible in the current state";
    case CP_ETOOBIG: return "message too large";
    case CP_ENOTRANSPORT: return "machine layer not available";
    default: return "unknown error";
    }
}

int cp_grow(void **buf, int *cap, int need, size_t size) {
    if (need <= *cap)
        return 0;
    int ncap = *cap ? *cap : 8;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*buf, (size_t)ncap * size);
    if (!p)
        return CP_ENOMEM;
    *buf = p;
    *cap = ncap;
    return 0;
}

double cp_wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runtime flags charm users pass: removed from argv and kept in ctx->flags.
 * The ones that take a value take the next argument unless it is glued on
 * (+p4); every ++flag takes none. */
static int runtime_flag(const char *a, size_t *namelen) {
    static const char *const with_value[] = {"+p",     "+balancer", "+LBDebug", "+LBPeriod",
                                             "+trace", "+restart",  NULL};
    static const char *const without[] = {"+stats", NULL};
    *namelen = strlen(a);
    if (strncmp(a, "++", 2) == 0)
        return 1;
    for (int i = 0; without[i]; i++)
        if (strcmp(a, without[i]) == 0)
            return 1;
    for (int i = 0; with_value[i]; i++) {
        size_t n = strlen(with_value[i]);
        if (strncmp(a, with_value[i], n) != 0)
            continue;
        *namelen = n;
        if (a[n] == '\0')
            return 2;
        /* Only +p takes its value glued on, and only a number (+p4): a
         * program's own +plot stays the program's. */
        if (strcmp(with_value[i], "+p") != 0 || strspn(a + n, "0123456789") != strlen(a + n))
            return 0;
        return 1;
    }
    return 0;
}

static int keep_flag(cp_ctx *ctx, const char *name, size_t namelen, const char *value) {
    if (cp_grow((void **)&ctx->flags, &ctx->capflags, ctx->nflags + 1, sizeof *ctx->flags))
        return CP_ENOMEM;
    cp_flagval *f = &ctx->flags[ctx->nflags];
    f->name = strndup(name, namelen);
    f->value = strdup(value);
    if (!f->name || !f->value) {
        free(f->name);
        free(f->value);
        return CP_ENOMEM;
    }
    ctx->nflags++;
    return 0;
}

static int strip_runtime_flags(cp_ctx *ctx, int *argc, char **argv) {
    int out = 0, rc = 0;
    for (int i = 0; i < *argc; i++) {
        size_t namelen;
        int f = i == 0 ? 0 : runtime_flag(argv[i], &namelen);
        if (f == 0) {
            argv[out++] = argv[i];
            continue;
        }
        const char *value = f == 2 ? (i + 1 < *argc ? argv[i + 1] : "") : argv[i] + namelen;
        if (!rc)
            rc = keep_flag(ctx, argv[i], namelen, value);
        if (f == 2 && i + 1 < *argc)
            i++;
    }
    argv[out] = NULL;
    *argc = out;
    return rc;
}

const char *cp_flag(const cp_ctx *ctx, const char *name) {
    for (int i = ctx->nflags - 1; i >= 0; i--)
        if (strcmp(ctx->flags[i].name, name) == 0)
            return ctx->flags[i].value;
    return NULL;
}

const char *cp_flag_at(const cp_ctx *ctx, int i, const char **value) {
    if (i < 0 || i >= ctx->nflags)
        return NULL;
    if (value)
        *value = ctx->flags[i].value;
    return ctx->flags[i].name;
}

static void free_flags(cp_ctx *ctx) {
    for (int i = 0; i < ctx->nflags; i++) {
        free(ctx->flags[i].name);
        free(ctx->flags[i].value);
    }
    free(ctx->flags);
}

int cp_init(cp_ctx **out, int *argc, char ***argv) {
    int rc = 0;
    const cm_ops *ops = cm_select(&rc);
    if (!ops)
        return rc;
    cp_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return CP_ENOMEM;
    ctx->ops = ops;
    rc = ops->init(&ctx->m, &ctx->info);
    if (rc) {
        free(ctx);
        return rc;
    }
    ctx->my_pe = ctx->info.my_pe;
    ctx->npes = ctx->info.num_pes;
    ctx->qd.next_wave = -1;
    if (argc && argv && *argv && (rc = strip_runtime_flags(ctx, argc, *argv)) != 0) {
        ctx->ops->finalize(ctx->m);
        free_flags(ctx);
        free(ctx);
        return rc;
    }
    ctx->profiling = cp_flag(ctx, "+stats") != NULL;
    cpX_observe(ctx);
    const char *trace = cp_flag(ctx, "+trace");
    if (trace && (rc = cp_trace_open(ctx, trace, 0)) != 0) {
        fprintf(stderr, "charmpy: PE %d: +trace %s: %s\n", ctx->my_pe, trace,
                cp_trace_open_error(rc));
        ctx->ops->finalize(ctx->m);
        free_flags(ctx);
        free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

/* This PE's part of the trace, and on PE 0 the whole (the other PEs write
 * theirs as they end: a PE that died left its part, or none). */
static void finish_trace(cp_ctx *ctx) {
    if (!ctx->trace)
        return;
    char path[4096];
    snprintf(path, sizeof path, "%s", cp_trace_path(ctx));
    if (cp_trace_flush(ctx) != 0)
        fprintf(stderr, "charmpy: PE %d: cannot write the trace's part %s.%d.part: %s\n",
                ctx->my_pe, path, ctx->my_pe, strerror(errno));
    cpT_free(ctx);
    if (ctx->my_pe != 0)
        return;
    int missing = 0;
    if (cp_trace_merge(path, ctx->npes, 20.0, &missing) != 0)
        fprintf(stderr, "charmpy: trace: cannot write %s: %s\n", path, strerror(errno));
    else if (missing)
        fprintf(stderr, "charmpy: trace: %s lacks %d PE%s' events (no part file came in "
                "20 s)\n", path, missing, missing == 1 ? "" : "s");
}

int cp_finalize(cp_ctx *ctx) {
    if (!ctx)
        return 0;
    int code = cp_exiting(ctx) ? ctx->exit_code : 0;
    finish_trace(ctx);
    cpM_ring_free(ctx, &ctx->held);
    cpM_ring_free(ctx, &ctx->local);
    cp_msg *batch[CP_POLL_BATCH];
    int n;
    while ((n = ctx->ops->poll(ctx->m, batch, CP_POLL_BATCH)) > 0)
        for (int i = 0; i < n; i++)
            cp_msg_free(ctx, batch[i]);
    cpTm_free_all(ctx);
    cpR_free_all(ctx);
    cpQ_free_all(ctx);
    ctx->ops->finalize(ctx->m);
    free(ctx->handlers);
    free(ctx->reducers);
    free_flags(ctx);
    free(ctx);
    return code;
}

int cp_my_pe(const cp_ctx *ctx) { return ctx->my_pe; }
int cp_num_pes(const cp_ctx *ctx) { return ctx->npes; }
const char *cp_transport(const cp_ctx *ctx) { return ctx->ops->name; }

/* A transport that leaves the host fields zero (shm) runs on one host. */
int cp_num_hosts(const cp_ctx *ctx) {
    return ctx->info.num_hosts > 0 ? ctx->info.num_hosts : 1;
}

int cp_my_host(const cp_ctx *ctx) { return ctx->info.my_host; }

int cp_oversubscribed(const cp_ctx *ctx) { return ctx->info.oversubscribed; }

int cp_host_of(const cp_ctx *ctx, int pe) {
    if (pe < 0 || pe >= ctx->npes)
        return CP_ERANGE;
    return ctx->info.pe_host ? ctx->info.pe_host[pe] : 0;
}

int cp_handler_register(cp_ctx *ctx, cp_handler_fn fn, void *user) {
    if (!fn)
        return CP_EINVAL;
    if (cp_grow((void **)&ctx->handlers, &ctx->caphandlers, ctx->nhandlers + 1,
                sizeof *ctx->handlers))
        return CP_ENOMEM;
    ctx->handlers[ctx->nhandlers] = (cp_handler_ent){fn, user};
    return ctx->nhandlers++;
}

int cp_reducer_register(cp_ctx *ctx, cp_combine_fn fn, void *user) {
    if (!fn)
        return CP_EINVAL;
    if (cp_grow((void **)&ctx->reducers, &ctx->capreducers, ctx->nreducers + 1,
                sizeof *ctx->reducers))
        return CP_ENOMEM;
    ctx->reducers[ctx->nreducers] = (cp_reducer_ent){fn, user};
    return CP_REDUCER_CUSTOM_BASE + ctx->nreducers++;
}

void cp_exit(cp_ctx *ctx, int code) {
    ctx->ops->request_exit(ctx->m, code);
    (void)cp_exiting(ctx);
}

int cp_exiting(cp_ctx *ctx) {
    if (!ctx->exiting) {
        int code;
        if (ctx->ops->exit_requested(ctx->m, &code)) {
            ctx->exiting = 1;
            ctx->exit_code = code;
        }
    }
    return ctx->exiting;
}

void cp_abort(cp_ctx *ctx, const char *fmt, ...) {
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "charmpy: PE %d: abort: %s\n", ctx ? ctx->my_pe : -1, text);
    if (ctx && ctx->trace && cp_trace_flush(ctx) == 0)
        fprintf(stderr, "charmpy: PE %d: trace: what this PE recorded is in %s.%d.part "
                "(python -m charmpy.trace %s joins the parts)\n", ctx->my_pe,
                cp_trace_path(ctx), ctx->my_pe, cp_trace_path(ctx));
    fflush(stderr);
    if (ctx)
        ctx->ops->abort(ctx->m, 1, text);
    exit(1);
}

int cp_barrier(cp_ctx *ctx) { return ctx->ops->barrier(ctx->m); }

void cp_get_counters(const cp_ctx *ctx, cp_counters *out) { *out = ctx->counters; }

void cp_set_profiling(cp_ctx *ctx, int on) {
    ctx->profiling = on != 0;
    cpX_observe(ctx);
}
