"""Tracing (issue 13): +trace FILE and charm.options.trace write one Chrome
trace-event JSON (Perfetto and chrome://tracing open it); a run that dies
leaves what each PE recorded; python -m charmpy.plot draws it. Programs:
trace_prog.py (a broadcast with a reduction, direct calls carrying numpy
arrays, and a crash) and lb.py rotate (migrations at every step)."""
import ast
import json
import os
import shutil
import subprocess

import pytest

from conftest import NONZERO, PYTHON, program_path, run_command, run_ok, run_program

MPIRUN = shutil.which("mpirun")


def load(path):
    with open(path) as f:
        return json.load(f)


def check_trace(tr, npes, complete=True):
    """What every trace must hold; returns its events by kind."""
    ev = tr["traceEvents"]
    assert tr["otherData"]["pes"] == npes and tr["otherData"]["missing_pes"] == 0
    meta = {e["pid"]: e["args"] for e in ev if e["ph"] == "M" and e["name"] == "charmpy_pe"}
    names = {e["pid"]: e["args"]["name"] for e in ev
             if e["ph"] == "M" and e["name"] == "process_name"}
    assert sorted(meta) == list(range(npes)), sorted(meta)
    assert names == {pe: f"PE {pe}" for pe in range(npes)}, names    # a named track a PE
    for pe, m in meta.items():
        assert m["complete"] is complete and m["dropped"] == 0, m
        assert m["events"] == sum(1 for e in ev if e["pid"] == pe and e["ph"] != "M"), m
    slices = [e for e in ev if e["ph"] == "X"]
    for e in ev:
        if e["ph"] != "M":
            assert e["tid"] == e["pid"] and isinstance(e["ts"], (int, float)), e
    # No two slices of a track overlap unless one holds the other.
    for pe in range(npes):
        mine = sorted((e for e in slices if e["pid"] == pe), key=lambda e: (e["ts"], -e["dur"]))
        stack = []
        for e in mine:
            end = e["ts"] + e["dur"]
            while stack and stack[-1] <= e["ts"]:
                stack.pop()
            assert not stack or end <= stack[-1] + 0.002, (pe, e, stack[-1])
            stack.append(end)
    # Flows: each start has one end, later (or at the same time) than it.
    starts = {e["id"]: e for e in ev if e["ph"] == "s"}
    ends = {e["id"]: e for e in ev if e["ph"] == "f"}
    assert len(starts) == sum(e["ph"] == "s" for e in ev), "flow ids not unique"
    for i, f in ends.items():
        s = starts.get(i)
        assert s is not None, f
        assert f["ts"] >= s["ts"], (s, f)
        assert s["args"]["to"] == f["pid"] and f["args"]["from"] == s["pid"], (s, f)
        assert f.get("bp") == "e"
    if complete:
        assert set(starts) == set(ends), set(starts) ^ set(ends)
    assert any(e["ph"] == "C" and e["name"] == "queue length" for e in ev)
    return slices


def check_program(tr, npes):
    slices = check_trace(tr, npes)
    n = 4 * npes
    work = [e for e in slices if e["name"] == "Worker.work"]
    assert len(work) == 3 * n, len(work)
    for pe in range(npes):      # the broadcast ran on every PE
        mine = [e for e in work if e["pid"] == pe]
        assert len(mine) == 12, (pe, len(mine))
        assert all(e["dur"] >= 190 for e in mine), [e["dur"] for e in mine]  # 0.2 ms busy
    assert sorted(e["args"]["index"] for e in work) == sorted(list(range(n)) * 3)
    poke = [e for e in slices if e["name"] == "Worker.poke"]
    assert len(poke) == n and all(e["cat"] == "entry" for e in poke)
    # a poke's message to another PE carries the 8,000 bytes of its array
    # (on PE 0 main's calls pass it by reference). The poke's slice is its
    # message's handler's: it starts at the message's dispatch, where the
    # flow from PE 0 ends, and carries the message's bytes; a runtime slice
    # of the handler is written only when the handler went on after it
    # (then it holds the poke's).
    ev = tr["traceEvents"]
    ends = {(f["pid"], f["ts"]): f for f in ev if f["ph"] == "f"}
    runtime = [e for e in slices if e["cat"] == "runtime"]
    starts = {(r["pid"], r["ts"]): r for r in runtime}
    for e in (e for e in poke if e["pid"] != 0):
        assert e["args"]["bytes"] >= 8000, e
        f = ends.get((e["pid"], e["ts"]))
        assert f is not None and f["args"]["from"] == 0, (e, f)
        r = starts.get((e["pid"], e["ts"]))
        assert r is None or r["dur"] > e["dur"], (e, r)
    assert runtime, "no handler slice of the runtime's own (replies, reductions)"
    # charmpy.plot's utilisation counts the entry methods' slices as busy
    from charmpy import plot
    t0, width, pes, rows = plot.utilisation(tr, bins=100)
    for pe, row in zip(pes, rows):
        busy = sum(row) * width
        mine = sum(e["dur"] for e in work if e["pid"] == pe)
        assert busy >= 0.99 * mine, (pe, busy, mine)
    assert all(e["args"]["bytes"] > 0 for e in work), work[:3]


@pytest.mark.parametrize("npes", [1, 3, 8], ids=lambda n: f"P{n}")
def test_trace_flag(npes, tmp_path):
    out = tmp_path / "run.json"
    run_ok("trace_prog", npes, "ok", "+trace", str(out), timeout=120)
    assert not list(tmp_path.glob("*.part")), list(tmp_path.iterdir())
    check_program(load(out), npes)


def test_trace_option(tmp_path):
    out = tmp_path / "opt.json"
    run_ok("trace_prog", 2, "ok", str(out), timeout=60)
    check_program(load(out), 2)


def test_trace_crash(tmp_path):
    out = tmp_path / "crash.json"
    res = run_program("trace_prog", 3, "crash", "+trace", str(out), timeout=60,
                      expect_rc=NONZERO)
    assert "TRACE-CRASH-MARKER" in res.stderr, res.stderr
    assert "joined what its PEs recorded" in res.stderr, res.stderr
    tr = load(out)
    slices = check_trace(tr, 3, complete=False)
    assert len([e for e in slices if e["name"] == "Worker.work"]) == 36
    boom = [e for e in slices if e["name"] == "Worker.boom"]
    assert len(boom) == 1 and boom[0]["pid"] == 2, boom


def test_trace_crash_option_parts_joined_later(tmp_path):
    # charm.options.trace: the launcher does not know the file; the parts
    # stay, and python -m charmpy.trace joins them.
    out = tmp_path / "later.json"
    res = run_program("trace_prog", 3, "crash", str(out), timeout=60, expect_rc=NONZERO)
    assert "python -m charmpy.trace" in res.stderr, res.stderr
    parts = sorted(p.name for p in tmp_path.glob("later.json.*.part"))
    assert parts == [f"later.json.{pe}.part" for pe in range(3)], parts
    r = run_command([PYTHON, "-m", "charmpy.trace", out], timeout=60)
    assert f"wrote {out}" in r.stdout, r
    check_trace(load(out), 3, complete=False)
    r = run_command([PYTHON, "-m", "charmpy.trace", out], timeout=60, expect_rc=2)
    assert "no part files" in r.stderr, r


@pytest.mark.parametrize("npes", [1, 3])
def test_trace_values(npes, tmp_path):
    # The part writer formats numbers and escapes strings itself: values
    # from 1e-300 to 1e30 come back within 1e-9 (relative, or absolute
    # below 1), names with quotes, backslashes and control characters exact.
    out = tmp_path / "v.json"
    run_ok("trace_values", npes, str(out), timeout=60)
    with open(program_path("trace_values")) as f:
        consts = {t.id: ast.literal_eval(a.value) for a in ast.parse(f.read()).body
                  if isinstance(a, ast.Assign) for t in a.targets if isinstance(t, ast.Name)}
    values, name = consts["VALUES"], consts["NAME"]
    tr = load(out)
    check_trace(tr, npes)
    for pe in range(npes):
        got = [e for e in tr["traceEvents"] if e["ph"] == "i" and e["pid"] == pe
               and e["name"] == name]
        assert len(got) == len(values), (pe, len(got))
        for e, v in zip(got, values):
            g = e["args"]["value"]
            assert abs(g - v) <= 1e-9 * max(1.0, abs(v)) or (v and abs(g / v - 1) < 1e-9), (g, v)


@pytest.mark.parametrize("npes", [1, 2, 3])
def test_trace_coroutine_resumed_is_busy(npes, tmp_path):
    # the part of a coroutine after a resume runs in the handler of the
    # message that woke it, after that message's own entry method: the
    # handler's slice holds it, and the utilisation counts it
    out = tmp_path / "c.json"
    run_ok("trace_coro", npes, str(out), timeout=60)
    tr = load(out)
    check_trace(tr, npes)
    from charmpy import plot
    t0, width, pes, rows = plot.utilisation(tr, bins=100)
    busy = sum(rows[pes.index(npes - 1)]) * width
    assert busy >= 5 * 3000 * 0.95, busy      # 5 x 3 ms after the resumes


def test_trace_bounded(tmp_path):
    out = tmp_path / "small.json"
    run_ok("trace_prog", 2, "ok", "+trace", str(out), timeout=60,
           env={"CHARMPY_TRACE_EVENTS": "40"})
    tr = load(out)
    meta = [e["args"] for e in tr["traceEvents"] if e.get("name") == "charmpy_pe"]
    assert all(m["events"] == 40 and m["dropped"] > 0 for m in meta), meta


@pytest.mark.parametrize("value", ["0", "many"])
def test_trace_bad_capacity(tmp_path, value):
    res = run_program("trace_prog", 1, "ok", "+trace", str(tmp_path / "x.json"), timeout=60,
                      expect_rc=NONZERO, env={"CHARMPY_TRACE_EVENTS": value})
    assert "CHARMPY_TRACE_EVENTS must be a whole number" in res.stderr, res.stderr


@pytest.mark.parametrize("var,value,says", [
    ("CHARMPY_TRACE_CLOCK", "sundial", "CHARMPY_TRACE_CLOCK must be tsc, monotonic or unset"),
    ("CHARMPY_TRACE_AFTER_US", "soon", "CHARMPY_TRACE_AFTER_US must be a number of µs"),
    ("CHARMPY_TRACE_AFTER_US", "-1", "CHARMPY_TRACE_AFTER_US must be a number of µs")])
def test_trace_bad_environment(tmp_path, var, value, says):
    res = run_program("trace_prog", 2, "ok", "+trace", str(tmp_path / "x.json"), timeout=60,
                      expect_rc=NONZERO, env={var: value})
    assert says in res.stderr, res.stderr


@pytest.mark.parametrize("clock", ["monotonic", "tsc"])
def test_trace_clock_choice(clock, tmp_path):
    # events stamped with CLOCK_MONOTONIC itself, or through the TSC mapped
    # onto it (the default where the kernel's clocksource is the TSC): the
    # same trace either way, flows never back in time across PEs
    if clock == "tsc" and os.uname().machine not in ("x86_64", "i686", "i386"):
        pytest.skip("no TSC on " + os.uname().machine)
    out = tmp_path / "c.json"
    run_ok("trace_prog", 3, "ok", "+trace", str(out), timeout=120,
           env={"CHARMPY_TRACE_CLOCK": clock})
    check_program(load(out), 3)


def test_trace_unwritable(tmp_path):
    bad = tmp_path / "no" / "such" / "dir" / "t.json"
    res = run_program("trace_prog", 2, "ok", "+trace", str(bad), timeout=60, expect_rc=NONZERO)
    assert "cannot write there" in res.stderr, res.stderr
    res = run_program("trace_prog", 1, "ok", str(bad), timeout=60, expect_rc=NONZERO)
    assert "charm.options.trace" in res.stderr and "cannot write there" in res.stderr


def test_trace_clock_sync(tmp_path):
    # Across hosts each PE measures its clock's offset to PE 0 at start-up;
    # CHARMPY_TRACE_SYNC=1 takes that path on one host, where the offset is
    # the round trip's asymmetry (small).
    out = tmp_path / "sync.json"
    run_ok("trace_prog", 3, "ok", "+trace", str(out), timeout=60,
           env={"CHARMPY_TRACE_SYNC": "1"})
    tr = load(out)
    meta = {e["pid"]: e["args"] for e in tr["traceEvents"] if e.get("name") == "charmpy_pe"}
    assert meta[0]["clock_offset_us"] == 0.0
    assert all(abs(meta[pe]["clock_offset_us"]) < 20000 for pe in (1, 2)), meta


def test_trace_lb_and_plot(tmp_path):
    out = tmp_path / "lb.json"
    run_ok("lb", 3, "rotate", "+trace", str(out), timeout=120)
    tr = load(out)
    check_trace(tr, 3)
    ev = tr["traceEvents"]
    steps = [e for e in ev if e["ph"] == "i" and e["name"] == "load balancing step"]
    assert steps and all(e["pid"] == 0 for e in steps), len(steps)
    outs = [e for e in ev if e["ph"] == "i" and e["name"] == "migration out"]
    ins = [e for e in ev if e["ph"] == "i" and e["name"] == "migration in"]
    assert outs and len(outs) == len(ins), (len(outs), len(ins))
    assert all("index" in e["args"] for e in outs + ins)
    png = tmp_path / "lb.png"
    r = run_command([PYTHON, "-m", "charmpy.plot", out, "-o", png], timeout=120)
    assert f"wrote {png}" in r.stdout, r
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from charmpy import plot
    loads = plot.lb_loads(tr)
    assert len(loads) == len(steps)
    assert all(sorted(before) == [0, 1, 2] for _, before, _ in loads)
    t0, width, pes, rows = plot.utilisation(tr, bins=50)
    assert pes == [0, 1, 2] and all(len(r) == 50 for r in rows)
    assert all(0.0 <= x <= 1.0 for r in rows for x in r) and any(x > 0 for r in rows for x in r)


def test_plot_without_matplotlib(tmp_path):
    out = tmp_path / "p.json"
    run_ok("trace_prog", 1, "ok", "+trace", str(out), timeout=60)
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from charmpy import plot\n"
            f"sys.exit(plot.main([{str(out)!r}, '-o', {str(tmp_path / 'p.png')!r}]))\n")
    r = run_command([PYTHON, "-c", code], timeout=60, expect_rc=2)
    assert "pip install matplotlib" in r.stderr, r
    assert not (tmp_path / "p.png").exists()


def test_plot_bad_input(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = run_command([PYTHON, "-m", "charmpy.plot", bad], timeout=60, expect_rc=2)
    assert "not a trace-event JSON file" in r.stderr, r
    r = run_command([PYTHON, "-m", "charmpy.plot", tmp_path / "none.json"], timeout=60,
                    expect_rc=2)
    assert "none.json" in r.stderr, r


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun on PATH (apt-get install openmpi-bin)")
@pytest.mark.parametrize("np", [1, 3, 8])
def test_trace_mpirun(np, tmp_path):
    out = tmp_path / "mpi.json"
    cmd = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "-np", str(np), "--mca", "btl",
           "self,vader", str(PYTHON), str(program_path("trace_prog")), "ok", "+trace", str(out)]
    rc, stdout, err = run_command(cmd, timeout=120)
    assert "OK trace_prog" in stdout, stdout + err
    check_program(load(out), np)
