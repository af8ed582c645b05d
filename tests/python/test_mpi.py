"""The Python layer over the mpi machine layer, under a real mpirun (issue 4):
the programs of the CharmPy paper, an exception, a rank killed with SIGKILL,
a 256 MiB numpy argument and the host queries, at 1 to 4 ranks, over Open
MPI's shared memory (vader) and over TCP (the path between hosts).
Skipped, saying why, when there is no mpirun or the extension was built
without MPI."""
import shutil
import subprocess

import numpy
import pytest

from conftest import NONZERO, PYTHON, program_path, run_command, run_ok

MPIRUN = shutil.which("mpirun")
SUM_OUTPUT = str(numpy.arange(20) * 100) + "\n"


def _transport_available():
    if not MPIRUN:
        return "no mpirun on PATH (Debian: apt-get install openmpi-bin libopenmpi-dev)"
    probe = subprocess.run(
        [MPIRUN, "--allow-run-as-root", "-np", "1", str(PYTHON), "-c",
         "from charmpy import *\n"
         "from charmpy import _charmpy\n"
         "def main(a):\n"
         "    print(_charmpy.transport()); charm.exit()\n"
         "charm.start(main)\n"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if probe.returncode != 0 or probe.stdout.strip() != "mpi":
        return ("the charmpy extension has no mpi machine layer (built without MPI?): "
                + (probe.stderr.strip()[-300:] or probe.stdout.strip()))
    return None


WHY_NOT = _transport_available()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=str(WHY_NOT))

BTLS = ("self,vader", "self,tcp")


def mpirun(prog, np, btl, *args, timeout=90, expect_rc=0):
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(np),
           "--mca", "btl", btl, str(PYTHON), str(program_path(prog)), *map(str, args)]
    return run_command(cmd, timeout=timeout, expect_rc=expect_rc)


@pytest.fixture(params=(1, 2, 3, 4), ids=lambda n: f"np{n}")
def ranks(request):
    return request.param


@pytest.fixture(params=BTLS, ids=("vader", "tcp"))
def btl(request):
    return request.param


def test_hello(ranks, btl):
    rc, out, err = mpirun("paper_hello", ranks, btl)
    assert out.endswith("Hello\n"), (out, err)


def test_array_sum(ranks, btl):
    rc, out, err = mpirun("paper_sum", ranks, btl)
    assert SUM_OUTPUT in out, (out, err)


def test_exception_ends_job(ranks, btl):
    rc, out, err = mpirun("fatal", ranks, btl, "entry", expect_rc=NONZERO)
    assert "FATAL-MARKER-entry" in err, err


def test_rank_killed(btl):
    rc, out, err = mpirun("rank_killed", 3, btl, expect_rc=NONZERO, timeout=60)
    assert "kills itself" in out, (out, err)


def test_big_numpy(btl):
    rc, out, err = mpirun("big_numpy", 2, btl, timeout=180)
    assert "OK" in out, (out, err)


@pytest.mark.parametrize("np_", (2, 3), ids=("np2", "np3"))
def test_big_arguments_sent_in_place(np_, btl):
    """Big buffers go from the caller's memory (cp_send_segs), every PE to
    every other at once, and stay passed by value: the sender changes them
    right after the call."""
    rc, out, err = mpirun("big_args", np_, btl, timeout=120)
    assert f"in_place=1 P={np_}\nOK big_args\n" in out, (out, err)


def test_hosts(ranks):
    rc, out, err = mpirun("hosts_info", ranks, "self,vader")
    assert "OK" in out, (out, err)


# Issue 9 under mpirun: the @when/coroutine pattern that hung (several runs,
# 3 and 4 ranks), and the programs that route messages through the location
# service (ArrayMap arrays used at once, sparse arrays, constrained groups,
# the main chare, broadcast futures with exceptions).
@pytest.mark.parametrize("np_", (3, 4), ids=lambda n: f"np{n}")
def test_when_coro_no_hang(np_, btl):
    for _ in range(3):
        rc, out, err = mpirun("when_coro", np_, btl, "future", 100, timeout=60)
        assert "OK when_coro" in out, (out, err)


@pytest.mark.parametrize("prog", ["sparse_map", "constrained_group", "main_chare",
                                  "bcast_partial_exc", "sparse_bcast"])
def test_issue9_programs(prog, btl):
    args = ("alpha", "42") if prog == "main_chare" else ()
    rc, out, err = mpirun(prog, 3, btl, *args, timeout=90)
    assert f"OK {prog}" in out, (out, err)


@pytest.mark.parametrize("mode", ["coro_ctor", "readonly", "insert_other", "insert_xmap",
                                  "insert_done", "done_procnum", "ro_insert"])
def test_ctor_and_insert_order(mode, btl):
    for _ in range(2):
        rc, out, err = mpirun("ctor_order", 6, btl, mode, timeout=90)
        assert "OK ctor_order" in out, (out, err)


@pytest.mark.parametrize("mode", ["burst", "timers", "held", "targets"])
def test_qd(mode, btl):
    rc, out, err = mpirun("qd", 4, btl, mode, timeout=90)
    assert "OK qd" in out, (out, err)


@pytest.mark.parametrize("np", [3, 4, 8], ids=lambda n: f"np{n}")
def test_migration_storm(np, btl):
    for _ in range(3):
        rc, out, err = mpirun("migrate", np, btl, "storm", timeout=120)
        assert "OK migrate" in out, (out, err)


@pytest.mark.parametrize("mode", ["state", "refuse", "coroutine", "bcast", "selfcalls", "direct",
                                  "sparse", "sparsebcast", "sparsecycle", "chareorder",
                                  "badarg", "unplaced",
                                  "nested"])
def test_migration(mode, btl):
    np = 6 if mode == "unplaced" else 4
    rc, out, err = mpirun("migrate", np, btl, mode, timeout=90)
    assert "OK migrate" in out, (out, err)


@pytest.mark.parametrize("mode", ["placed", "rotate", "stays", "comm"])
def test_lb_at_sync(mode, btl):
    for np in (3, 4):
        rc, out, err = mpirun("lb", np, btl, mode, timeout=90)
        assert "OK lb" in out, (out, err)


def test_lb_periodic(btl):
    # Calls a chare made before and after it moved come from two PEs and
    # may swap (exactly once is checked).
    for np in (3, 4):
        rc, out, err = mpirun("lb", np, btl, "periodic", timeout=90)
        assert "OK lb" in out, (out, err)


def test_checkpoint_restart(btl, tmp_path):
    # Checkpoint under mpirun at 3 PEs; restart under mpirun at 2 and 4 and
    # under charmrun at 3, each printing what an uninterrupted run prints.
    ref = mpirun("ckpt", 3, btl, "plain", timeout=90).stdout.splitlines()
    d = tmp_path / "c"
    res = mpirun("ckpt", 3, btl, "ckpt", d, 4, timeout=90)
    assert "OK ckpt" in res.stdout, res
    want = [ln for ln in ref if ln.startswith("result") or
            (ln.startswith("step ") and int(ln.split()[1]) > 4)]
    for np in (2, 4):
        res = mpirun("ckpt", np, btl, "plain", "--restart", d, timeout=90)
        got = [ln for ln in res.stdout.splitlines() if ln.startswith(("step ", "result"))]
        assert got == want, (res.stdout, res.stderr)
    res = run_ok("ckpt", 3, "plain", "+restart", d, timeout=90)
    got = [ln for ln in res.stdout.splitlines() if ln.startswith(("step ", "result"))]
    assert got == want, res.stdout


def test_checkpoint_before_user_qd(btl, tmp_path):
    # A startQD waiting while a checkpoint is taken is told after it.
    for k in range(2):
        d = tmp_path / f"q{k}"
        res = mpirun("ckpt_qd", 4, btl, d, timeout=60)
        assert "OK ckpt_qd" in res.stdout, res
        res = mpirun("ckpt_qd", 4, btl, "--restart", d, timeout=60)
        assert "restarted with counters [0, 0" in res.stdout, res


@pytest.mark.parametrize("mode", ["order", "nested", "errors", "jobs", "singlec"])
def test_pool(mode, btl):
    # charm.pool under mpirun: the same program as under charmrun
    # (test_pool.py says what each mode checks).
    for np in (3, 4):
        rc, out, err = mpirun("pool_modes", np, btl, mode, timeout=120)
        assert "OK pool_modes" in out, (out, err)


@pytest.mark.parametrize("mode", ["basic", "numpy", "ring", "late", "iwait", "migrate", "storm",
                                  "errors"])
def test_channels(mode, btl):
    # Channels under mpirun: the same program as under charmrun
    # (test_channels.py says what each mode checks).
    for np in (2, 3, 4):   # 2: not oversubscribed, recv() polls in place
        rc, out, err = mpirun("chan_modes", np, btl, mode, timeout=120)
        assert "OK chan_modes" in out, (out, err)


@pytest.mark.parametrize("mode", ["slices", "groups", "split", "values", "reduce", "spread",
                                  "migrate", "errors", "combined", "sparse"])
def test_sections(mode, btl):
    # Sections under mpirun (test_sections.py says what each mode checks).
    for np in (3, 4):
        rc, out, err = mpirun("sect_modes", np, btl, mode, timeout=120)
        assert "OK sect_modes" in out, (out, err)


def test_reductions_and_contribute_c_path(btl):
    # Every reducer and data kind, targets, and contrib.c's paths (sections
    # given every way, allreduce, ints past int64, migration) under mpirun.
    for np in (3, 4):
        for prog in ("reduce_kinds", "reduce_targets", "contrib_paths"):
            rc, out, err = mpirun(prog, np, btl, timeout=120)
            assert f"OK {prog}" in out, (prog, np, out, err)
        assert f"contrib_paths ok on {np} PEs" in out, out


def test_broadcast_method_lookup(btl):
    # A broadcast calls what each member would (dispatch.c's bc_cache).
    for np in (3, 4):
        rc, out, err = mpirun("bcast_lookup", np, btl, timeout=120)
        assert "OK bcast_lookup" in out, (np, out, err)


@pytest.mark.parametrize("mode", ["array", "section"])
def test_missing_contribution_is_an_error(mode, btl):
    # A member that never contributes: mpirun ends with the watch's error
    # naming the reduction and the member, not a hang.
    rc, out, err = mpirun("red_missing", 3, btl, mode, timeout=90, expect_rc=NONZERO)
    assert "a reduction can never complete" in err, err[-3000:]
    assert "not contributed: M[" in err, err[-3000:]
