/*
 * charmrun: start a job of N PEs (one process each) on this host.
 *
 * The launcher creates the job's shared-memory segment, forks the PEs into a process
 * group of their own, and then only waits: it passes on the signals a user sends it,
 * notices the first PE that fails, and makes sure that when it returns no PE is left
 * running and no child is left unreaped.
 *
 * Nothing needs removing from /dev/shm when the job ends, however it ends: the segment
 * is an anonymous memfd (see machine/shm/segment.h), which the kernel frees once the
 * launcher and every PE have closed it or died, even when all of them are killed.
 *
 * Signals are blocked and read from a signalfd, so no work happens in signal context
 * and the wait loop needs no global state; SIGCHLD wakes the loop as soon as a PE ends.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "charmpy/runtime.h"
#include "launcher.h"
#include "machine/shm/segment.h"

#define MAX_PES 4096
#define USAGE "usage: charmrun -n N program [args...]"
#define FAIL_TERM_MS 1000   /* after a failure: SIGTERM, then SIGKILL this late */
#define SIGNAL_KILL_MS 2000 /* after a forwarded signal: SIGKILL */
#define LINGER_MS 10000     /* after the first PE ended a job that asked to exit */
#define EARLY_MS 1000       /* a PE left before the exit, others still in the runtime */

typedef struct launch {
    const char *prog;    /* the program as the user named it, for messages */
    char path[PATH_MAX]; /* the file to exec */
    char **argv;         /* its argv, NULL-terminated */
} launch;

typedef struct job {
    cm_shm_hdr *hdr;
    int npes, nlive;
    pid_t *pids; /* per PE; 0 once reaped */
    pid_t pgid;  /* the job's process group: the pid of PE 0 */
    bool quiet, verbose;
    bool failed; /* the job is ending because of a failure */
    int fail_code;
    int fwd_sig; /* first signal passed on to the PEs, 0 if none */
    bool exit_before_sig;
    int64_t kill_at, linger_until; /* CLOCK_MONOTONIC ms, 0 when unarmed */
    int early_pe;        /* first PE that ended with 0 before any exit request, or -1 */
    int64_t early_at;    /* when to check whether it left the others waiting */
} job;

__attribute__((format(printf, 3, 4))) _Noreturn static void
die(int code, bool usage, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "charmrun: error: %s%s\n", msg, usage ? "; " USAGE : "");
    exit(code);
}

static void print_help(void) {
    printf(USAGE "\n\n"
           "Start N processing elements (PEs) running program on this host. A program\n"
           "ending in .py runs under Python: $CHARMPY_PYTHON if set, else the python\n"
           "beside charmrun (a virtualenv's), else python3 from PATH.\n\n"
           "options (before the program; everything after it is the program's):\n"
           "  -n N, -nN, -np N, --np N, +p N, +pN  number of PEs, 1 to %d (default 1)\n"
           "  ++quiet     print only errors\n"
           "  ++verbose   say what the launcher does\n"
           "  ++local     accepted for Charm++ compatibility; jobs are always local\n"
           "  -h, --help  print this help\n\n"
           "environment:\n"
           "  CHARMPY_HEAP_MB  per-PE message heap in MiB (default %d); address\n"
           "                   space, used only as messages need it\n"
           "  OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS,\n"
           "  NUMEXPR_NUM_THREADS  set for each PE to its share of the cores (at\n"
           "                   least 1) unless already set\n",
           MAX_PES, CM_DEFAULT_HEAP_MB);
}

static int parse_npes(const char *opt, const char *s) {
    if (!s)
        die(2, true, "option '%s' needs a number of PEs", opt);
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || (*s != '-' && (*s < '0' || *s > '9')))
        die(2, true, "'%s' is not a number of PEs (option '%s')", s, opt);
    if (v < 1)
        die(2, true, "the number of PEs must be at least 1, got '%s'", s);
    if (errno == ERANGE || v > MAX_PES)
        die(2, true, "at most %d PEs are supported, got '%s'", MAX_PES, s);
    return (int)v;
}

/* Fills the job's options; returns the program and its arguments (main's argv). */
static char **parse_args(int argc, char **argv, job *j) {
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' && a[0] != '+')
            break;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            print_help();
            exit(0);
        }
        if (!strcmp(a, "-n") || !strcmp(a, "-np") || !strcmp(a, "--np") ||
            !strcmp(a, "+p"))
            j->npes = parse_npes(a, argv[++i]); /* argv[argc] is NULL */
        else if (strncmp(a, "--np=", 5) == 0)
            j->npes = parse_npes("--np", a + 5);
        else if (strncmp(a, "-np", 3) == 0)
            j->npes = parse_npes("-np", a + 3);
        else if (strncmp(a, "-n", 2) == 0)
            j->npes = parse_npes("-n", a + 2);
        else if (strncmp(a, "+p", 2) == 0)
            j->npes = parse_npes("+p", a + 2);
        else if (strcmp(a, "++quiet") == 0)
            j->quiet = true;
        else if (strcmp(a, "++verbose") == 0)
            j->verbose = true;
        else if (strcmp(a, "++local") != 0)
            die(2, true, "unknown option '%s'", a);
    }
    if (i >= argc)
        die(2, true, "no program given");
    return argv + i;
}

static bool is_exec_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

/* Looks `name` up in PATH as execvp would; the file found is the one executed, so the
 * check made here and the exec cannot disagree. */
static bool search_path(const char *name, char *out, size_t n) {
    const char *p = getenv("PATH");
    if (!p)
        p = "/bin:/usr/bin";
    for (;;) {
        const char *colon = strchrnul(p, ':');
        int len = (int)(colon - p);
        int w = len ? snprintf(out, n, "%.*s/%s", len, p, name)
                    : snprintf(out, n, "%s", name); /* an empty entry is the cwd */
        if (w > 0 && (size_t)w < n && is_exec_file(out))
            return true;
        if (!*colon)
            return false;
        p = colon + 1;
    }
}

static bool python_beside(const char *exe, char *out, size_t n) {
    static const char *const names[] = {"python3", "python"};
    const char *slash = strrchr(exe, '/');
    for (size_t i = 0; slash && i < sizeof names / sizeof names[0]; i++) {
        int w = snprintf(out, n, "%.*s/%s", (int)(slash - exe), exe, names[i]);
        if (w > 0 && (size_t)w < n && is_exec_file(out))
            return true;
    }
    return false;
}

/*
 * The directory charmrun was started from is tried before the one /proc/self/exe
 * names: when `.venv/bin/charmrun` is a symlink into a build tree, only the unresolved
 * path leads to the virtualenv's python. The python path is not resolved either,
 * because Python recognises a virtualenv only through the venv's own `bin/python`.
 */
static void find_python(const char *argv0, char *out, size_t n) {
    const char *env = getenv("CHARMPY_PYTHON");
    if (env && *env) {
        if (strchr(env, '/') ? is_exec_file(env) && snprintf(out, n, "%s", env) < (int)n
                             : search_path(env, out, n))
            return;
        die(2, false, "CHARMPY_PYTHON='%s' is not an executable file", env);
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[len > 0 ? len : 0] = '\0';
    if (python_beside(argv0, out, n) || python_beside(exe, out, n) ||
        search_path("python3", out, n))
        return;
    die(2, false, "no python3 in PATH to run Python programs; set CHARMPY_PYTHON to "
                  "the interpreter to use");
}

static void resolve_program(char **prog, const char *argv0, launch *l) {
    const char *p = prog[0];
    size_t len = strlen(p);
    bool py = len >= 3 && strcmp(p + len - 3, ".py") == 0;
    struct stat st;
    l->prog = p;
    l->argv = prog;
    if (len == 0)
        die(2, true, "the program name is empty");
    if (!py && !strchr(p, '/')) {
        if (!search_path(p, l->path, sizeof l->path))
            die(2, true, "program '%s' not found in PATH", p);
        return;
    }
    if (stat(p, &st) != 0)
        die(2, true, errno == ENOENT ? "program '%s' not found%.0s"
                                     : "cannot look at program '%s': %s",
            p, strerror(errno));
    if (S_ISDIR(st.st_mode))
        die(2, true, "program '%s' is a directory", p);
    if (access(p, py ? R_OK : X_OK) != 0)
        die(2, true, "program '%s' is not %s", p, py ? "readable" : "executable");
    if (!py) {
        snprintf(l->path, sizeof l->path, "%s", p);
        return;
    }
    find_python(argv0, l->path, sizeof l->path);
    int nargs = 0;
    while (prog[nargs])
        nargs++;
    l->argv = calloc((size_t)nargs + 2, sizeof *l->argv);
    if (!l->argv)
        die(1, false, "out of memory");
    l->argv[0] = l->path;
    memcpy(l->argv + 1, prog, (size_t)nargs * sizeof *l->argv);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void arm_kill(job *j, int64_t delay_ms) {
    int64_t t = now_ms() + delay_ms;
    if (!j->kill_at || t < j->kill_at)
        j->kill_at = t;
}

/*
 * Only called while some PE is unreaped (a zombie counts): a process group keeps its
 * id while it has a member, so the id cannot have been handed to someone else's group.
 * A PE that left the group (setsid) is signalled on its own; its pid is equally safe.
 */
static void signal_job(const job *j, int sig) {
    if (j->pgid <= 0)
        return; /* PE 0 never started: killpg(0) would hit the launcher's own group */
    (void)killpg(j->pgid, sig);
    for (int i = 0; i < j->npes; i++)
        if (j->pids[i] > 0 && getpgid(j->pids[i]) != j->pgid)
            (void)kill(j->pids[i], sig);
}

static void begin_failure(job *j, int code) {
    j->failed = true;
    j->fail_code = code ? code : 1;
    j->linger_until = 0;
    signal_job(j, SIGTERM);
    signal_job(j, SIGCONT); /* a stopped PE would not act on SIGTERM */
    arm_kill(j, FAIL_TERM_MS);
}

static void on_pe_end(job *j, int pe, const siginfo_t *si) {
    bool exited = si->si_code == CLD_EXITED;
    int status = si->si_status, pid = (int)si->si_pid;
    bool asked = atomic_load(&j->hdr->exit_flag) != 0;
    int want = asked ? (atomic_load(&j->hdr->exit_code) & 0xff) : 0;
    j->pids[pe] = 0;
    j->nlive--;
    if (exited && status == want) {
        if (j->verbose)
            fprintf(stderr, "charmrun: PE %d (pid %d) exited with code %d\n", pe, pid,
                    status);
        /* The others are finishing on their own; give them time to. */
        if (asked && !j->linger_until && !j->failed && !j->fwd_sig)
            j->linger_until = now_ms() + LINGER_MS;
        if (!asked && j->early_pe < 0 && j->nlive > 0) {
            j->early_pe = pe;
            j->early_at = now_ms() + EARLY_MS;
        }
        return;
    }
    /* Once the job is being ended, PEs dying of it are no news. */
    if (j->failed || j->fwd_sig)
        return;
    char others[64] = "";
    if (j->nlive > 0)
        snprintf(others, sizeof others, "; ending the other %d PE%s", j->nlive,
                 j->nlive == 1 ? "" : "s");
    if (exited && asked)
        fprintf(stderr,
                "charmrun: PE %d (pid %d) exited with code %d after the job asked to "
                "exit with code %d%s\n",
                pe, pid, status, want, others);
    else if (exited)
        fprintf(stderr, "charmrun: PE %d (pid %d) exited with code %d%s\n", pe, pid,
                status, others);
    else
        fprintf(stderr, "charmrun: PE %d (pid %d) was killed by signal %d (%s)%s%s\n",
                pe, pid, status, strsignal(status),
                si->si_code == CLD_DUMPED ? ", core dumped" : "", others);
    int abort_pe = atomic_load(&j->hdr->abort_pe);
    if (abort_pe >= 0) {
        const char *m = j->hdr->abort_msg;
        int n = (int)strnlen(m, CM_SHM_ABORT_MSG);
        while (n > 0 && m[n - 1] == '\n')
            n--;
        fprintf(stderr, "charmrun: PE %d aborted: %.*s\n", abort_pe, n, m);
    }
    begin_failure(j, exited ? status : 128 + status);
}

/*
 * Each ended child is looked at with WNOWAIT before it is reaped. While it is a
 * zombie the group id stays the job's, so when the last PE of a job that is being
 * ended goes, whatever it left in the group (a shell's `sleep`) can still be killed
 * safely. Children that are not PEs (started before charmrun was exec'd in their
 * parent's place) are reaped and otherwise ignored.
 */
static void reap(job *j) {
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0)
            return;
        for (int pe = 0; pe < j->npes; pe++) {
            if (j->pids[pe] != si.si_pid)
                continue;
            on_pe_end(j, pe, &si);
            if (j->nlive == 0 && (j->failed || j->fwd_sig) &&
                getpgid(si.si_pid) == j->pgid)
                (void)killpg(j->pgid, SIGKILL);
            break;
        }
        while (waitpid(si.si_pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
}

static void forward_signal(job *j, int sig) {
    if (!j->fwd_sig) {
        j->fwd_sig = sig;
        j->exit_before_sig = atomic_load(&j->hdr->exit_flag) != 0;
        if (!j->quiet)
            fprintf(stderr, "charmrun: got signal %d (%s); passing it on to the %d "
                            "running PE%s\n",
                    sig, strsignal(sig), j->nlive, j->nlive == 1 ? "" : "s");
    }
    j->linger_until = 0;
    signal_job(j, sig);
    arm_kill(j, SIGNAL_KILL_MS);
}

static void check_deadlines(job *j, int64_t now) {
    if (j->kill_at && now >= j->kill_at) {
        j->kill_at = 0;
        if (!j->quiet && !j->failed)
            fprintf(stderr, "charmrun: %d PE%s still running %d s after the signal; "
                            "killing %s\n",
                    j->nlive, j->nlive == 1 ? "" : "s", SIGNAL_KILL_MS / 1000,
                    j->nlive == 1 ? "it" : "them");
        signal_job(j, SIGKILL);
    }
    if (j->linger_until && now >= j->linger_until) {
        j->linger_until = 0;
        for (int i = 0; i < j->npes; i++)
            if (j->pids[i] > 0)
                fprintf(stderr, "charmrun: PE %d did not exit %d s after the job "
                                "ended; killing it\n",
                        i, LINGER_MS / 1000);
        j->failed = true;
        j->fail_code = 1;
        signal_job(j, SIGKILL);
    }
}

/* Some PE ended with code 0 although nobody asked the job to exit: fine for a
 * program that does not use the runtime (`charmrun -n 2 hostname`), but PEs
 * still running in the runtime a moment later would wait for it forever. */
static void check_early_exit(job *j, int64_t now) {
    if (j->early_pe < 0 || now < j->early_at || j->failed || j->fwd_sig)
        return;
    int pe = j->early_pe;
    j->early_pe = -1;
    if (atomic_load(&j->hdr->exit_flag))
        return;
    int waiting = 0;
    for (int i = 0; i < j->npes; i++)
        if (j->pids[i] > 0 &&
            atomic_load(&cm_shm_pe_at(j->hdr, i)->state) == CM_PE_ATTACHED)
            waiting++;
    if (!waiting)
        return;
    fprintf(stderr, "charmrun: PE %d exited with code 0 before the job ended (no PE "
                    "called exit), leaving %d PE%s waiting in the runtime; ending the "
                    "other %d PE%s\n",
            pe, waiting, waiting == 1 ? "" : "s", j->nlive, j->nlive == 1 ? "" : "s");
    begin_failure(j, 1);
}

static int poll_timeout(const job *j, int64_t now) {
    int64_t next = j->kill_at;
    if (j->early_pe >= 0 && (!next || j->early_at < next))
        next = j->early_at;
    if (j->linger_until && (!next || j->linger_until < next))
        next = j->linger_until;
    if (!next)
        return -1;
    return next <= now ? 0 : (int)(next - now);
}

static void run_job(job *j, int sfd) {
    for (reap(j); j->nlive > 0; reap(j)) {
        int64_t now = now_ms();
        check_deadlines(j, now);
        check_early_exit(j, now);
        struct pollfd p = {.fd = sfd, .events = POLLIN};
        /* poll on one descriptor fails only for want of kernel memory: retry soon. */
        if (poll(&p, 1, poll_timeout(j, now)) < 0 && errno != EINTR)
            usleep(10000);
        struct signalfd_siginfo ssi;
        while (read(sfd, &ssi, sizeof ssi) == (ssize_t)sizeof ssi)
            if (ssi.ssi_signo != SIGCHLD)
                forward_signal(j, (int)ssi.ssi_signo);
    }
}

/*
 * The signals passed on are blocked and read from a signalfd, and their dispositions
 * reset to the default for the PEs to inherit. That includes SIGINT and SIGQUIT when a
 * shell started charmrun with them ignored (`charmrun ... &` in a script): a signal
 * sent to charmrun on purpose must work, and the PEs, in a process group of their own,
 * are out of the terminal's reach anyway. Only an ignored SIGHUP stays ignored, for
 * the launcher and the PEs, since that is what nohup asks for. SIGCHLD must not be
 * ignored, or the kernel would reap the PEs itself. SIGPIPE is ignored so that a
 * closed stderr cannot kill the launcher and, through PR_SET_PDEATHSIG, the job.
 */
static int setup_signals(void) {
    static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) {
        struct sigaction old;
        if (forwarded[i] == SIGHUP && sigaction(SIGHUP, NULL, &old) == 0 &&
            old.sa_handler == SIG_IGN)
            continue;
        signal(forwarded[i], SIG_DFL);
        sigaddset(&mask, forwarded[i]);
    }
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0)
        return -1;
    return signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* The thread pools of numerical libraries (OpenBLAS, MKL, OpenMP, numexpr)
 * start one thread per core in every process: N PEs on C cores would run
 * N x C threads, which spin between calls and take the cores from the PEs
 * (4% of a migration benchmark's samples were OpenBLAS's idle spinning).
 * Each PE gets its share of the cores, at least 1, unless the user set the
 * variable, as Ray and Dask do for their workers. */
static const char *const THREAD_VARS[] = {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                          "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"};

static int threads_per_pe(int npes) {
    cpu_set_t set;
    int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                            : (int)sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > npes ? cpus / npes : 1;
}

/* Runs in the child between fork and exec; the launcher has a single thread, so
 * setenv and stdio are safe to use here. */
_Noreturn static void run_pe(const job *j, const launch *l, int pe, int fd,
                             pid_t launcher) {
    char num[24];
    sigset_t none;
    (void)setpgid(0, j->pgid); /* PE 0 sees pgid 0, which makes a group of its own */
    /* The launcher may have died before PR_SET_PDEATHSIG took effect. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != launcher)
        _exit(127);
    signal(SIGPIPE, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Outside the terminal's foreground group, reading the terminal would stop the PE
     * (SIGTTIN) and hang the job; it reads end-of-file instead. */
    if (tcgetpgrp(STDIN_FILENO) >= 0) {
        int nul = open("/dev/null", O_RDONLY);
        if (nul > STDIN_FILENO) {
            dup2(nul, STDIN_FILENO);
            close(nul);
        }
    }
    (void)fcntl(fd, F_SETFD, 0);
    snprintf(num, sizeof num, "%d", fd);
    setenv(CM_ENV_FD, num, 1);
    snprintf(num, sizeof num, "%d", pe);
    setenv(CM_ENV_PE, num, 1);
    snprintf(num, sizeof num, "%d", j->npes);
    setenv(CM_ENV_NPES, num, 1);
    snprintf(num, sizeof num, "%d", threads_per_pe(j->npes));
    for (size_t i = 0; i < sizeof THREAD_VARS / sizeof *THREAD_VARS; i++)
        setenv(THREAD_VARS[i], num, 0);
    execv(l->path, l->argv);
    dprintf(2, "charmrun: error: cannot run '%s': %s\n", l->prog, strerror(errno));
    _exit(127);
}

static void start_pes(job *j, const launch *l, int fd) {
    pid_t launcher = getpid();
    for (int i = 0; i < j->npes; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "charmrun: error: cannot start PE %d: %s\n", i,
                    strerror(errno));
            j->failed = true;
            j->fail_code = 1;
            signal_job(j, SIGKILL);
            return;
        }
        if (pid == 0)
            run_pe(j, l, i, fd, launcher);
        /* Done on both sides of the fork, so that each PE is in the group before the
         * launcher can signal it, whichever side runs first. */
        if (i == 0)
            j->pgid = pid;
        (void)setpgid(pid, j->pgid);
        j->pids[i] = pid;
        j->nlive++;
        atomic_store(&cm_shm_pe_at(j->hdr, i)->pid, (int32_t)pid);
    }
}

static int job_result(const job *j) {
    if (j->failed)
        return j->fail_code;
    if (j->fwd_sig && !j->exit_before_sig)
        return 128 + j->fwd_sig;
    if (atomic_load(&j->hdr->abort_pe) >= 0)
        return 1; /* an abort is a failure even if every PE then exited as asked */
    if (atomic_load(&j->hdr->exit_flag))
        return atomic_load(&j->hdr->exit_code) & 0xff;
    return 0;
}

/* A job that ended early leaves its trace in parts (FILE.<pe>.part): joined
 * here when the command line asked for one (+trace FILE; PE 0 joins them
 * itself at a normal end, and a trace asked for by charm.options.trace is
 * joined by python -m charmpy.trace). */
static void join_trace(const job *j, char **prog) {
    const char *path = NULL;
    for (int i = 1; prog[i]; i++) {
        if (strcmp(prog[i], "--") == 0)
            break;
        if (strcmp(prog[i], "+trace") == 0 && prog[i + 1])
            path = prog[i + 1];
        else if (strncmp(prog[i], "+trace", 6) == 0 && prog[i][6])
            path = prog[i] + 6;
    }
    if (!path)
        return;
    char part[4096];
    int any = 0;
    for (int pe = 0; pe < j->npes && !any; pe++) {
        snprintf(part, sizeof part, "%s.%d.part", path, pe);
        any = access(part, F_OK) == 0;
    }
    if (!any)
        return;
    int missing = 0;
    if (cp_trace_merge(path, j->npes, 0.0, &missing) != 0) {
        fprintf(stderr, "charmrun: cannot join the trace's parts into %s: %s\n", path,
                strerror(errno));
        return;
    }
    if (!j->quiet)
        fprintf(stderr, "charmrun: the job ended early: joined what its PEs recorded into %s%s\n",
                path, missing ? " (some PEs left no part)" : "");
}

int cp_launcher_main(int argc, char **argv) {
    job j = {.npes = 1, .early_pe = -1};
    launch l;
    int fd = -1, sfd = -1, rc, result = 1;
    char **prog = parse_args(argc, argv, &j);
    resolve_program(prog, argv[0], &l);

    uint64_t heap = cm_shm_heap_bytes_from_env();
    if (!heap)
        die(2, false, "%s='%s' is not valid: give the per-PE heap size as a whole "
                      "number of MiB from 1 to %llu",
            CM_ENV_HEAP_MB, getenv(CM_ENV_HEAP_MB), CM_MAX_HEAP_MB);
    rc = cm_shm_segment_create(j.npes, heap, &fd, &j.hdr);
    if (rc != 0)
        die(1, false, "cannot create the shared-memory segment for %d PEs (%llu MiB "
                      "of heap each): %s",
            j.npes, (unsigned long long)(heap >> 20),
            rc == CP_ESYS ? strerror(errno) : cp_strerror(rc));
    /* Started with a standard descriptor closed, the memfd could take its number, and
     * a PE would then write its output into the segment. */
    if (fd < 3) {
        int nfd = fcntl(fd, F_DUPFD, 3);
        if (nfd >= 0) {
            close(fd);
            fd = nfd;
        }
    }

    j.verbose = j.verbose && !j.quiet;
    j.pids = calloc((size_t)j.npes, sizeof *j.pids);
    if (!j.pids) {
        fprintf(stderr, "charmrun: error: out of memory\n");
        goto cleanup;
    }
    sfd = setup_signals();
    if (sfd < 0) {
        fprintf(stderr, "charmrun: error: cannot set up signal handling: %s\n",
                strerror(errno));
        goto cleanup;
    }
    if (j.verbose)
        fprintf(stderr, "charmrun: starting %d PE%s of '%s' (%s), %llu MiB heap each\n",
                j.npes, j.npes == 1 ? "" : "s", l.prog, l.path,
                (unsigned long long)(heap >> 20));
    start_pes(&j, &l, fd);
    run_job(&j, sfd);
    result = job_result(&j);
    join_trace(&j, prog);

cleanup:
    if (sfd >= 0)
        close(sfd);
    cm_shm_segment_detach(j.hdr);
    close(fd);
    free(j.pids);
    if (l.argv != prog)
        free(l.argv);
    return result;
}
