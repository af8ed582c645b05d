"""Shared helpers for the charmpy Python test suite.

Every test runs a program from tests/python/programs/ through the launcher
installed beside the interpreter running pytest (`.venv/bin/charmrun`), as a
real job of N PEs. The programs check their own results (a failed assert
ends the job with a traceback and a non-zero exit) and print `OK <name>` as
their last line when everything held.

    run_program(name_or_path, npes, *args, timeout=60, expect_rc=0)
        -> Result(rc, stdout, stderr)       (a namedtuple; unpacks as a tuple)
    run_ok(name, npes, *args, ...)          run_program + rc 0 + final `OK name`
    npes                                    fixture over 1, 2, 3 and 4 PEs
"""
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PROGRAMS = HERE / "programs"
REPO = HERE.parents[1]
BIN = Path(sys.executable).parent
CHARMRUN = BIN / "charmrun"
PYTHON = Path(sys.executable)

# 4 oversubscribes a 2-core machine on purpose.
NPES = (1, 2, 3, 4)

# expect_rc=NONZERO: any exit code but 0.
NONZERO = "nonzero"

Result = collections.namedtuple("Result", "rc stdout stderr")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long-running program (still run by default)")


def pytest_sessionstart(session):
    if not CHARMRUN.exists():
        pytest.exit(f"no launcher at {CHARMRUN}: install charmpy into the venv that runs "
                    f"pytest (cd {REPO} && .venv/bin/pip install -q .)", returncode=4)


@pytest.fixture(params=NPES, ids=lambda n: f"P{n}")
def npes(request):
    return request.param


def program_path(name_or_path):
    """`name` -> tests/python/programs/name.py; a path is used as given."""
    p = Path(name_or_path)
    if p.suffix != ".py" and os.sep not in str(name_or_path):
        p = PROGRAMS / f"{name_or_path}.py"
    elif not p.is_absolute() and not p.exists():
        p = PROGRAMS / p
    if not p.exists():
        raise FileNotFoundError(f"no test program {p}")
    return p


def _tail(text, n=6000):
    return text if len(text) <= n else "[... cut ...]\n" + text[-n:]


def _describe(cmd, rc, out, err):
    return (f"command: {' '.join(map(str, cmd))}\nexit code: {rc}\n"
            f"--- stdout ---\n{_tail(out)}\n--- stderr ---\n{_tail(err)}")


def _children(pid):
    """Direct children of pid (from /proc), so that PEs that run in a process
    group of their own can be killed too."""
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            kids.append(int(d))
    return kids


def _kill_job(proc):
    """End a job that ran out of time: SIGTERM to the launcher (which passes it
    on to its PEs), then SIGKILL to the launcher's process group and to the
    groups of its children."""
    groups = {proc.pid}
    for kid in _children(proc.pid):
        try:
            groups.add(os.getpgid(kid))
        except ProcessLookupError:
            pass
    groups.discard(os.getpgrp())
    for g in groups:
        try:
            os.killpg(g, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 3
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    for g in groups:
        try:
            os.killpg(g, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_command(cmd, timeout=60, expect_rc=0, env=None, cwd=None, env_replace=None):
    """Run cmd (a list) in a new session with a timeout; check its exit code
    (an int, NONZERO, or None for no check); return Result(rc, stdout, stderr).
    env adds to this process's environment; env_replace replaces it."""
    full_env = dict(os.environ if env_replace is None else env_replace)
    full_env.pop("CHARMPY_PE", None)
    full_env.pop("CHARMPY_NPES", None)
    full_env.pop("CHARMPY_SHM_FD", None)
    full_env["PYTHONUNBUFFERED"] = "1"
    if env:
        full_env.update(env)
    cmd = [str(c) for c in cmd]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            env=full_env, cwd=cwd or PROGRAMS, text=True, errors="replace")
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_job(proc)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out, err = "(output unavailable: pipes still open)", ""
        pytest.fail(f"timed out after {timeout} s\n" + _describe(cmd, proc.returncode, out, err),
                    pytrace=False)
    elapsed = time.monotonic() - start
    rc = proc.returncode
    if expect_rc == NONZERO:
        if rc == 0:
            pytest.fail("expected a non-zero exit code\n" + _describe(cmd, rc, out, err),
                        pytrace=False)
    elif expect_rc is not None and rc != expect_rc:
        pytest.fail(f"expected exit code {expect_rc} (took {elapsed:.1f} s)\n"
                    + _describe(cmd, rc, out, err), pytrace=False)
    return Result(rc, out, err)


def run_program(name_or_path, npes, *args, timeout=60, expect_rc=0, env=None):
    """Run programs/<name>.py (or a path) with `charmrun -n npes` and the given
    program arguments."""
    prog = program_path(name_or_path)
    return run_command([CHARMRUN, "-n", npes, prog, *args], timeout=timeout,
                       expect_rc=expect_rc, env=env)


def assert_ok(result, name):
    """The program's last line of output is `OK name`."""
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    assert lines and lines[-1].strip() == f"OK {name}", (
        f"the program did not print 'OK {name}' last\n"
        f"--- stdout ---\n{_tail(result.stdout)}\n--- stderr ---\n{_tail(result.stderr)}")


def run_ok(name, npes, *args, timeout=60, env=None):
    """Run a self-checking program and require exit code 0 and `OK name`."""
    res = run_program(name, npes, *args, timeout=timeout, expect_rc=0, env=env)
    assert_ok(res, Path(name).stem)
    return res
