"""Load balancing (issue 10), what exists of it: the strategies, pure C
functions (src/runtime/lb.c, unit-tested in tests/unit/test_lb.c), reached
from Python by _charmpy.lb_place; an unknown strategy's name is refused
with the list of those there are."""
import pytest

from charmpy import _charmpy
from conftest import NONZERO, run_program

STRATEGIES = ("DummyLB", "GreedyLB", "GreedyRefineLB", "RefineLB", "RandCentLB", "RotateLB")


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
