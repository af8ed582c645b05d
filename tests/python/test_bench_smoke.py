"""The benchmarks still run (never their timings: make bench measures).
charmpy's own programs of bench/py and of the peer suite (bench/suite) on
tiny sizes; peers only where they are installed already (make bench
installs them)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def smoke(cmd, timeout):
    env = dict(os.environ, BENCH_NO_BUILD="1")
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL, env=env)
    assert res.returncode == 0 and "smoke: " in res.stdout and ", 0 failed" in res.stdout, (
        f"exit {res.returncode}\n--- stdout ---\n{res.stdout[-3000:]}\n"
        f"--- stderr ---\n{res.stderr[-3000:]}")
    return res.stdout


def test_python_benchmarks_run():
    out = smoke(["bash", "bench/py/run.sh", "--smoke"], timeout=300)
    assert "ok   charmpy latency" in out and "ok   charmpy bw" in out, out


def test_suite_runs_charmpy_benchmarks():
    out = smoke([sys.executable, "bench/suite/run.py", "--smoke", "--no-install",
                 "--systems", "charmpy,charmpy-mpi,python"], timeout=300)
    for bench in ("latency", "rate", "bw", "jacobi", "bcast", "create"):
        assert f"ok   {bench} charmpy " in out, (bench, out)


def test_migration_benchmarks_run():
    # bench/py/lb_run.sh's programs at tiny sizes (their figures: make bench).
    charmrun = str(ROOT / ".venv" / "bin" / "charmrun")
    for n, prog, args in ((3, "direct_bench.py", ["50"]), (2, "mig_bench.py", ["4096", "5"])):
        res = subprocess.run([charmrun, "-n", str(n), f"bench/py/{prog}", *args], cwd=ROOT,
                             capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL)
        assert res.returncode == 0 and "ratio: " in res.stdout, (prog, res.stdout, res.stderr)


def test_gap_benchmark_runs():
    # bench/py/gap_bench.py (the wait policy's figures in docs/benchmarks.md).
    charmrun = str(ROOT / ".venv" / "bin" / "charmrun")
    res = subprocess.run([charmrun, "-n", "2", "bench/py/gap_bench.py", "10"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 0 and "us a hop, overhead" in res.stdout, (res.stdout, res.stderr)


def test_pool_benchmarks_run():
    # bench/py/pool_run.sh's programs at tiny sizes (their figures: make bench).
    import sys
    charmrun = str(ROOT / ".venv" / "bin" / "charmrun")
    for cmd, says in (
            ([charmrun, "-n", "2", "bench/py/pool_bench.py", "overhead", "300"], "overhead"),
            ([charmrun, "-n", "2", "bench/py/pool_bench.py", "submit", "300"], "submit"),
            ([sys.executable, "bench/py/pool_peers.py", "futures", "100"], "overhead"),
            ([sys.executable, "bench/py/pool_peers.py", "futures-submit", "100"], "submit"),
            ([sys.executable, "bench/py/pool_peers.py", "mp", "100"], "overhead")):
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL)
        assert res.returncode == 0 and f"pool {says}: " in res.stdout, (cmd, res.stdout,
                                                                        res.stderr)


def test_channel_and_section_benchmarks_run():
    # bench/py/chansec_run.py's programs (bench/suite/chares.py chanlat and
    # secbcast), briefly.
    charmrun = str(ROOT / ".venv" / "bin" / "charmrun")
    env = dict(os.environ, SUITE_REPS="1", SUITE_TIME="0.01")
    for mode, a, b in (("chanlat", "channel", "entry"), ("secbcast", "whole", "section")):
        res = subprocess.run([charmrun, "-n", "2", "bench/suite/chares.py", mode, "n=100"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL, env=env)
        assert res.returncode == 0, (res.stdout, res.stderr)
        kinds = [line for line in res.stdout.splitlines() if line.startswith("RESULT ")]
        assert len(kinds) == 2 and f'"{a}"' in kinds[0] and f'"{b}"' in kinds[1], res.stdout
