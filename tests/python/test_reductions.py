"""Reductions: every reducer over every kind of data; targets, empty
reductions, nop, gather, custom reducers, allreduce, concurrent reductions."""
import pytest

from conftest import NONZERO, run_ok, run_program


def test_every_reducer_and_data_kind(npes):
    run_ok("reduce_kinds", npes)


def test_targets_gather_custom_allreduce(npes):
    run_ok("reduce_targets", npes)


@pytest.mark.parametrize("mode,pes", [("array", (1, 2, 3, 4, 8)), ("section", (1, 3, 4)),
                                      ("group", (2, 3, 4, 8))])
def test_missing_contribution_is_an_error(mode, pes):
    # A member that never contributes: the job ends with an error naming the
    # reduction and the member (reduction.py's watch), not a hang.
    for p in pes:
        rc, out, err = run_program("red_missing", p, mode, timeout=60, expect_rc=NONZERO)
        assert "a reduction can never complete" in err, err[-3000:]
        assert "not contributed: M[" in err, err[-3000:]


def test_partial_reduction_across_waitqd_is_not_an_error():
    # Quiescence while a reduction is partial, then the program goes on and
    # completes it: the watch must not end it.
    for p in (1, 3):
        run_ok("red_missing", p, "qdwait", timeout=60)


def test_contribute_c_path(npes):
    # contrib.c and its way back to reduction.py: sections given every way,
    # allreduce, ints past int64 exact, numpy int64 wrapping, migration.
    res = run_ok("contrib_paths", npes, timeout=120)  # ends with OK contrib_paths
    assert f"contrib_paths ok on {npes} PEs" in res.stdout, res.stdout


@pytest.mark.parametrize("pes", [1, 2, 8])
def test_contribute_reducer_mismatch_on_a_later_member(pes):
    rc, out, err = run_program("contrib_paths", pes, "mismatch", timeout=60,
                               expect_rc=NONZERO)
    assert "max" in err and "sum" in err and "reduction 1" in err, err[-3000:]
