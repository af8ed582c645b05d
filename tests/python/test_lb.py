"""Load balancing (issue 10): the strategies, pure C functions
(src/runtime/lb.c, unit-tested in tests/unit/test_lb.c), reached from
Python by _charmpy.lb_place; an unknown strategy's name is refused with the
list of those there are. Then balancing at AtSync in real jobs
(programs/lb.py says what each mode checks): elements end where the
strategy chose, a stencil stays right with RotateLB moving every element
every step, measured loads get balanced, chares that cannot move stay,
and periodic balancing moves every element while calls circle a ring."""
import pytest

from charmpy import _charmpy
from conftest import NONZERO, run_ok, run_program

STRATEGIES = ("DummyLB", "GreedyLB", "GreedyRefineLB", "RefineLB", "RandCentLB", "RotateLB",
              "GreedyCommLB")


def test_strategies_listed():
    assert _charmpy.lb_strategies() == STRATEGIES


def test_greedy_balances():
    # Load grows with the index, all on PE 0 of 2: greedy splits it evenly.
    objs = [(0, float(i + 1)) for i in range(10)]
    pes, f = _charmpy.lb_place("GreedyLB", objs, 2)
    loads = [sum(l for (_, l), p in zip(objs, pes) if p == q) for q in range(2)]
    assert sorted(loads) == [27.5, 27.5] or max(loads) - min(loads) <= 1, loads
    assert f["max_before"] == 55 and f["max_after"] == max(loads) and f["avg"] == 27.5
    assert f["moves"] == pes.count(1)


def test_pinned_and_background():
    objs = [(0, 5.0, False), (1, 1.0), (1, 1.0), (1, 1.0)]
    pes, f = _charmpy.lb_place("GreedyLB", objs, 2, background=[0.0, 4.0])
    assert pes[0] == 0, "a pinned object moved"
    assert f["max_after"] <= 7.0, f


def test_rotate_and_dummy():
    objs = [(p % 3, 1.0) for p in range(9)]
    pes, _ = _charmpy.lb_place("RotateLB", objs, 3)
    assert pes == [(p % 3 + 1) % 3 for p in range(9)]
    pes, f = _charmpy.lb_place("DummyLB", objs, 3)
    assert pes == [p % 3 for p in range(9)] and f["moves"] == 0


def test_bad_input():
    with pytest.raises(ValueError, match="GreedyLB, GreedyRefineLB"):
        _charmpy.lb_place("NoSuchLB", [], 2)
    with pytest.raises(ValueError, match="PE 3 of 2"):
        _charmpy.lb_place("GreedyLB", [(3, 1.0)], 2)
    with pytest.raises(ValueError, match="load -1"):
        _charmpy.lb_place("GreedyLB", [(0, -1.0)], 2)


@pytest.mark.parametrize("how", ["flag", "option"])
def test_unknown_balancer_ends_the_job(how):
    args = ["+balancer", "NoSuchLB"] if how == "flag" else ["--option-balancer", "NoSuchLB"]
    res = run_program("balancer_name", 2, *args, expect_rc=NONZERO, timeout=30)
    assert "unknown load balancer 'NoSuchLB'" in res.stderr, res.stderr
    assert "GreedyLB" in res.stderr and "RotateLB" in res.stderr, res.stderr


@pytest.mark.parametrize("mode", ["placed", "rotate", "stays", "periodic"])
def test_lb_at_sync(mode, npes):
    run_ok("lb", npes, mode, timeout=90)


def test_lb_measured_loads():
    # Wall-time loads: at 2 PEs on this 2-core machine (more PEs than cores
    # would measure time slicing, not work).
    res = run_ok("lb", 2, "measured", timeout=90)
    assert "max/avg measured" in res.stdout, res.stdout


def test_lb_background_load():
    # A PE busy outside the balanced elements gets fewer of them (2 PEs, as
    # above: wall-time loads).
    res = run_ok("lb", 2, "background", timeout=90)
    assert "background per step" in res.stdout, res.stdout


def test_lb_comm_aware(npes):
    # GreedyCommLB: elements that call each other end up on one PE.
    for _ in range(2):
        res = run_ok("lb", npes, "comm", timeout=90)
        assert "pairs on PEs" in res.stdout, res.stdout


def test_lb_place_edges():
    # Pairs split over 2 PEs, each pair exchanging much: together after.
    objs = [(i % 2, 1e-3) for i in range(8)]
    edges = [(i, i + 1, 100.0, 1e6) for i in range(0, 8, 2)]
    pes, f = _charmpy.lb_place("GreedyCommLB", objs, 2, edges=edges)
    assert all(pes[i] == pes[i + 1] for i in range(0, 8, 2)), pes
    assert f["max_after"] == pytest.approx(4e-3), f
    with pytest.raises(ValueError, match="edge 0: objects 0 and 8 of 8, 1.0 messages"):
        _charmpy.lb_place("GreedyCommLB", objs, 2, edges=[(0, 8, 1.0, 1.0)])
    with pytest.raises(ValueError, match="inf bytes"):
        _charmpy.lb_place("GreedyCommLB", objs, 2, edges=[(0, 1, 1.0, float("inf"))])


def test_lb_held_work_counts():
    # Work in a @when method released later, or after self.wait(): in the
    # element's load, not the PE's background (2 PEs: wall-time loads).
    res = run_ok("lb", 2, "whenload", timeout=90)
    assert "WaitWork heavy elements on PEs" in res.stdout, res.stdout


def test_lb_comm_after_resume(npes):
    run_ok("lb", npes, "corocomm", timeout=60)


def test_lb_coroutine_load(npes):
    res = run_ok("lb", npes, "coroload", timeout=90)
    assert "coroutine load after its suspension" in res.stdout, res.stdout


@pytest.mark.parametrize("pes", [6, 8], ids=lambda n: f"P{n}")
@pytest.mark.parametrize("mode", ["placed", "rotate", "stays", "periodic", "comm", "corocomm"])
def test_lb_more_pes(mode, pes):
    for _ in range(3):
        run_ok("lb", pes, mode, timeout=120)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_lb_every_strategy(strategy):
    run_ok("lb", 3, "placed", "+balancer", strategy, timeout=90)


def test_lb_debug_lines():
    res = run_ok("lb", 3, "rotate", "+LBDebug", "1", timeout=90)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("charmpy: LB step")]
    assert len(lines) == 4, res.stderr
    assert all("RotateLB, Cell, 11 chares" in ln and "11 chares moved" in ln
               for ln in lines), lines
    quiet = run_ok("lb", 3, "rotate", timeout=90)
    assert "LB step" not in quiet.stderr, quiet.stderr
