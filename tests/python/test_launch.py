"""The ways to launch a program and what it sees: `python app.py` (1 PE),
`charmrun -n N`, `charmrun +pN`, `python -m charmpy.run -n N`; runtime
flags charm4py users pass are removed from argv, program arguments kept;
charm.exit(code) is the launcher's exit code."""
import pytest

from conftest import CHARMRUN, NONZERO, PYTHON, assert_ok, program_path, run_command, run_ok

PROG = program_path("launch_info")


def launched(cmd, pes, args):
    res = run_command(cmd, timeout=30)
    assert_ok(res, "launch_info")
    assert f"PES {pes}\n" in res.stdout, res.stdout
    assert f"ARGS {args!r}\n" in res.stdout, res.stdout
    return res


def test_plain_python_is_one_pe():
    launched([PYTHON, PROG, "a", "-b"], 1, ["a", "-b"])


def test_charmrun_n(npes):
    launched([CHARMRUN, "-n", npes, PROG, "x", "--y=1"], npes, ["x", "--y=1"])


def test_charmrun_plus_p(npes):
    launched([CHARMRUN, f"+p{npes}", PROG, "z"], npes, ["z"])


def test_python_m_charmpy_run():
    launched([PYTHON, "-m", "charmpy.run", "-n", 3, PROG, "-n", "5"], 3, ["-n", "5"])


def test_runtime_flags_removed_from_argv():
    launched([CHARMRUN, "-n", 2, PROG, "++local", "a", "++quiet", "+balancer", "GreedyLB",
              "+LBDebug", "1", "b"], 2, ["a", "b"])


@pytest.mark.parametrize("mode,code", [("exit_code", 7), ("exit_main", 5), ("sys_exit", 3)])
def test_exit_code(npes, mode, code):
    rc, out, err = run_command([CHARMRUN, "-n", npes, program_path("fatal"), mode],
                               timeout=30, expect_rc=code)
    assert "still running" not in out


def test_exit_code_plain_python():
    run_command([PYTHON, program_path("fatal"), "exit_main"], timeout=30, expect_rc=5)


def test_missing_program_fails():
    run_command([CHARMRUN, "-n", 2, program_path("launch_info").parent / "no_such.py"],
                timeout=30, expect_rc=NONZERO)


def test_malloc_tuned_for_numpy_temporaries():
    """charm.start sets glibc's mmap/trim thresholds: a stencil expression's
    2 MiB temporaries reuse memory instead of faulting pages in every round
    (CHARMPY_MALLOC_TUNE=0 shows the difference)."""
    import os
    import re
    counts = {}
    for tune in ("1", "0"):
        env = dict(os.environ, CHARMPY_MALLOC_TUNE=tune)
        env.pop("GLIBC_TUNABLES", None)
        res = run_ok("malloc_tune", 1, env=env)
        counts[tune] = int(re.search(r"faults (\d+)", res.stdout).group(1))
    assert counts["1"] * 10 < counts["0"], counts


@pytest.mark.parametrize("pes", [1, 2, 3])
def test_thread_pools_sized_per_pe(pes):
    """charmrun gives each PE its share of the cores for the numerical
    libraries' thread pools (at least 1), and keeps a value the user set."""
    import os
    cpus = len(os.sched_getaffinity(0))
    want = max(1, cpus // pes)
    env = {v: "" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                           "NUMEXPR_NUM_THREADS")}
    base = {k: v for k, v in os.environ.items() if k not in env}
    for user in (None, "5"):
        full = dict(base)
        if user:
            full["MKL_NUM_THREADS"] = user
        res = run_command([CHARMRUN, "-n", pes, program_path("thread_env")], timeout=30,
                          env_replace=full)
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("PE ")]
        assert len(lines) == pes, res.stdout
        for ln in lines:
            mkl = user or want
            assert f"OMP_NUM_THREADS={want} " in ln and f"OPENBLAS_NUM_THREADS={want} " in ln \
                and f"MKL_NUM_THREADS={mkl} " in ln and ln.endswith(f"NUMEXPR_NUM_THREADS={want}"), \
                (ln, cpus)
