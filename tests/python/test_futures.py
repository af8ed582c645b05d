"""Futures, coroutines, charm.wait/iwait/sleep/scheduleCallableAfter, and
the error for blocking outside a coroutine."""
from conftest import NONZERO, run_ok, run_program


def test_futures_and_coroutines(npes):
    run_ok("futures", npes)


def test_blocking_outside_coroutine_is_an_error(npes):
    run_ok("outside_coro", npes)


def test_blocking_outside_coroutine_uncaught_ends_job(npes):
    rc, out, err = run_program("outside_coro", npes, "uncaught", timeout=30, expect_rc=NONZERO)
    assert "@coro" in err, err
    assert "Traceback" in err and "get_uncaught" in err, err
    assert "not ended" not in out
