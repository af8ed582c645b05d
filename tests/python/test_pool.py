"""charm.pool, the parallel map and tasks (programs/pool_modes.py says what
each mode checks). The modes run at 1 PE under charmrun and under plain
`python`, at 2, 3 and 4 PEs, and at 8 PEs (on 2 cores: oversubscribed on
purpose); the ones with concurrent jobs and nesting run several times at 3,
4 and 8 PEs to shake out races. The progress bar is checked under a
pseudo-terminal (stderr a tty) and with stderr a pipe, for tqdm's bar and the
plain one (CHARMPY_PLAIN_PROGRESS=1).

The tests named test_bug_* (at the end) show bugs found in pool.py,
errors.py and charm.py; they fail until those are fixed."""
import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time

import pytest

from conftest import (CHARMRUN, NONZERO, PYTHON, REPO, _describe, _kill_job, assert_ok,
                      program_path, run_command, run_ok, run_program)

BASIC = ["order", "funcs", "errors", "nested", "bigchunks"]


def _ok(res):
    assert_ok(res, "pool_modes")
    return res


@pytest.mark.parametrize("mode", BASIC)
def test_basic(mode, npes):
    run_ok("pool_modes", npes, mode, timeout=120)


@pytest.mark.parametrize("mode", BASIC)
def test_basic_plain_python(mode):
    """One PE without the launcher: the pool runs on it."""
    _ok(run_command([PYTHON, program_path("pool_modes"), mode], timeout=120))


@pytest.mark.parametrize("mode", BASIC)
def test_eight_pes(mode):
    run_ok("pool_modes", 8, mode, timeout=180)


@pytest.mark.parametrize("pes", [2, 3, 4, 8], ids=lambda n: f"P{n}")
def test_jobs(pes):
    run_ok("pool_modes", pes, "jobs", timeout=120)


@pytest.mark.parametrize("pes", [3, 4, 8], ids=lambda n: f"P{n}")
@pytest.mark.parametrize("mode", ["jobs", "nested", "order"])
def test_repeated(mode, pes):
    for _ in range(3):
        run_ok("pool_modes", pes, mode, timeout=180)


def test_memory():
    """imap over 10**6 items keeps PE 0's peak RSS flat (about 5 s)."""
    res = run_ok("pool_modes", 2, "memory", str(10 ** 6), timeout=90)
    assert res.stdout.count("peak RSS") == 3, res.stdout


@pytest.mark.parametrize("pes", [2, 4], ids=lambda n: f"P{n}")
def test_uneven(pes):
    run_ok("pool_modes", pes, "uneven", timeout=60)


def test_task_failure_ends_the_job():
    """Task(f, args) with nothing waiting for it: f's exception ends the job,
    printed with where it happened."""
    res = run_program("pool_modes", 2, "taskfail", timeout=60, expect_rc=NONZERO)
    assert "ZeroDivisionError" in res.stderr and "charm.pool task" in res.stderr, res.stderr
    assert "OK pool_modes" not in res.stdout


@pytest.mark.parametrize("where", ["first", "later"])
def test_unpicklable_item(where):
    """An item that cannot be pickled (local_msg_optim off, so PE 0's items
    are pickled too), in the first chunk or a later one: TypeError from
    get(), the job drains and is gone, the pool works."""
    run_ok("pool_modes", 2, "baditem", where, timeout=60)


# ---- the progress bar ------------------------------------------------------------
def run_in_pty(cmd, timeout=60, env=None):
    """Run cmd with its stderr on a pseudo-terminal (stdout a pipe); return
    (exit code, stdout, what was written to the terminal)."""
    full_env = dict(os.environ)
    for k in ("CHARMPY_PE", "CHARMPY_NPES", "CHARMPY_SHM_FD"):
        full_env.pop(k, None)
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})
    cmd = [str(c) for c in cmd]
    master, slave = os.openpty()
    # A terminal of 24 x 120 (a new pty says 0 x 0, where tqdm, asked for
    # dynamic_ncols, draws an empty bar).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            env=full_env, cwd=program_path("pool_modes").parent)
    os.close(slave)
    term, out = b"", b""
    fds = {master: "term", proc.stdout.fileno(): "out"}
    deadline = time.monotonic() + timeout
    try:
        while fds:
            left = deadline - time.monotonic()
            if left <= 0:
                _kill_job(proc)
                pytest.fail(f"timed out after {timeout} s\n" + _describe(
                    cmd, proc.poll(), out.decode(errors="replace"),
                    term.decode(errors="replace")), pytrace=False)
            ready, _, _ = select.select(list(fds), [], [], min(left, 0.5))
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:        # EIO: every writer of the terminal is gone
                    data = b""
                if not data:
                    del fds[fd]
                elif fds[fd] == "term":
                    term += data
                else:
                    out += data
        rc = proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        os.close(master)
        proc.stdout.close()
    return rc, out.decode(errors="replace"), term.decode(errors="replace")


def _sections(text):
    """The stderr text between the markers <<A>> .. <<D>> of the progress mode."""
    m = re.search(r"<<A>>(.*)<<B>>(.*)<<C>>(.*)<<D>>", text, re.S)
    assert m, f"the markers are missing from stderr:\n{text}"
    return m.group(1), m.group(2), m.group(3)


TQDM = re.compile(r"100%\|")                    # tqdm: "100%|█████| 100/100 [..]"
PLAIN = re.compile(r"\[#{30}\] ")               # the plain bar, full: "[####..] 100/100"


@pytest.mark.parametrize("bar", ["tqdm", "plain"])
def test_progress_on_a_terminal(bar):
    """stderr a terminal: map, map_async and imap with progress draw their
    bar (tqdm's, or the plain one with CHARMPY_PLAIN_PROGRESS=1) up to the
    final count."""
    env = {"CHARMPY_PLAIN_PROGRESS": "1"} if bar == "plain" else {}
    cmd = [CHARMRUN, "-n", 2, program_path("pool_modes"), "progress"]
    rc, out, term = run_in_pty(cmd, timeout=60, env=env)
    assert rc == 0, _describe(cmd, rc, out, term)
    assert "TTY True" in out and out.split()[-2:] == ["OK", "pool_modes"], out
    a, b, c = _sections(term)
    for text, total in ((a, 100), (b, 77), (c, 33)):
        assert f"{total}/{total}" in text, (total, text)
        style = TQDM if bar == "tqdm" else PLAIN
        assert style.search(text), (bar, text)
        other = PLAIN if bar == "tqdm" else TQDM
        assert not other.search(text), (bar, text)


@pytest.mark.parametrize("bar", ["tqdm", "plain"])
def test_progress_not_a_terminal(bar):
    """stderr a pipe: progress=True draws nothing, progress='always' does."""
    env = {"CHARMPY_PLAIN_PROGRESS": "1"} if bar == "plain" else {}
    res = _ok(run_program("pool_modes", 2, "progress", timeout=60, env=env))
    assert "TTY False" in res.stdout, res.stdout
    a, b, c = _sections(res.stderr)
    assert a.strip() == "" and c.strip() == "", (a, c)
    assert "77/77" in b, b
    assert (TQDM if bar == "tqdm" else PLAIN).search(b), b


# ---- regressions ----------------------------------------------------------------
# Each of these failed with the first pool.py (a review found them); the
# docstrings say what went wrong.

def test_regression_lambda_using_charm():
    """A lambda or closure of __main__ that uses `charm` cannot be sent:
    cloudpickle pickles the charm object by value (a greenlet inside)."""
    run_ok("pool_modes", 2, "charmref", timeout=60)


def test_regression_stale_bound_method():
    """pool.py _dump_func caches pickles by the callable: a bound method, a
    callable instance or a partial whose state changed runs with the old
    state."""
    run_ok("pool_modes", 2, "stale", timeout=60)


def test_regression_functions_kept_alive():
    """pool.py _by_ref (and _loaded) keep up to 1024 (256) functions and their
    pickles: partials over big arrays stay in memory."""
    run_ok("pool_modes", 2, "retain", timeout=90)


@pytest.mark.parametrize("pes", [2, 4], ids=lambda n: f"P{n}")
def test_regression_first_chunks_spread(pes):
    """_Job.start fills the first PE with PREFETCH chunks before the next
    gets one: P tasks on P PEs run on P/2 PEs, twice as long; nested
    recursion (jobs of 2 items) runs entirely on the PE that started it."""
    run_ok("pool_modes", pes, "spread", timeout=60)


def test_regression_exception_that_cannot_be_unpickled():
    """A task's exception that pickles but does not unpickle aborts the job
    (errors.remote_exception only checks that it pickles)."""
    run_ok("pool_modes", 2, "badexc", timeout=60)


def test_regression_ncores_range():
    """ncores above P means every PE ("up to ncores"); 2.5, True and 'x'
    raise ValueError (2.5 was taken as every PE, 'x' raised TypeError)."""
    run_ok("pool_modes", 2, "ncores", timeout=60)


@pytest.mark.parametrize("pes", [4], ids=lambda n: f"P{n}")
def test_regression_imap_raises_before_reaching_the_item(pes):
    """imap raises a task's exception as soon as it arrives, dropping the
    values of the items before it."""
    run_ok("pool_modes", pes, "imapreach", timeout=60)


def test_regression_imap_auto_buffers_with_slow_consumer():
    """imap(chunksize='auto') with a consumer slower than the PEs buffers
    most of the iterable's results on PE 0 (the window grows with the
    chunks, up to 6 * P * 65536 items)."""
    run_ok("pool_modes", 2, "slowconsumer", str(10 ** 6), timeout=120)


def test_regression_imap_dropped_unread():
    """An imap iterator that is never read: its job stalls at the window for
    good (the iterator's generator never started, so its `finally` never
    cancels the job), holding its load on the PEs."""
    run_ok("pool_modes", 2, "dropped", timeout=60)


def test_regression_task_failure_traceback():
    """Task(f, args) with nothing waiting, f raising on PE 1: the job ends,
    but stderr shows only 'ZeroDivisionError: division by zero', without the
    task's traceback (pool.py _on_single_done -> errors.report_error prints
    the unpickled exception, whose __traceback__ and __cause__ did not
    travel; its remote_traceback text is not printed). On PE 0 itself the
    exception comes by reference and the traceback is printed."""
    res = run_program("pool_modes", 2, "taskfail", timeout=60, expect_rc=NONZERO)
    assert "boom" in res.stderr and "1 / 0" in res.stderr, res.stderr


@pytest.mark.parametrize("pes", [1, 3])
def test_primes_example(pes):
    """examples/python/primes.py (`make run`): its count is checked against a
    sieve inside; here, against the known count below 10^5 (9592)."""
    example = REPO / "examples" / "python" / "primes.py"
    res = run_command([CHARMRUN, "-n", pes, example, "100000", "37"], timeout=120)
    assert "primes below 100000: 9592 (checked with a sieve), 37 tasks" in res.stdout, res.stdout


# ---- found by a review of the per-chunk path in C (pool.c) ---------------------
def test_regression_results_list_seen_by_gc():
    """Tasks that walk gc.get_objects() and copy every list: the worker's
    list of results had empty slots while the tasks ran (a crash)."""
    run_ok("pool_modes", 2, "gcscan", timeout=60)


def test_regression_kept_results_are_copies():
    """1 MB numpy results kept by the caller, 300 of them, with 64 MiB of
    message heap per PE: results from other PEs were views of their
    messages, which kept the senders' heaps full until their sends failed."""
    run_ok("pool_modes", 3, "keepbig", timeout=120, env={"CHARMPY_HEAP_MB": "64"})


@pytest.mark.parametrize("pes", [1, 2, 3])
def test_regression_huge_chunksize(pes):
    """chunksize=sys.maxsize: the imap window's size overflowed in C."""
    run_ok("pool_modes", pes, "hugechunk", timeout=60)


def test_job_attributes_guarded():
    """What the C side of a job uses cannot be deleted or made a non-iterator."""
    run_ok("pool_modes", 2, "jobattrs", timeout=60)


@pytest.mark.parametrize("pes", [1, 2, 3, 8], ids=lambda n: f"P{n}")
def test_submit_in_c(pes):
    """submit of a function each PE ran before (pool.c runs it there in C):
    arguments, a task that raises and a result that cannot be sent back."""
    run_ok("pool_modes", pes, "singlec", timeout=90)
