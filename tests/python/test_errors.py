"""Errors never hang: remote exceptions re-raised at get() with their
traceback; uncaught ones end the job non-zero with the traceback on stderr;
SyntaxError and exceptions before charm.start end it too, quickly."""
import time

import pytest

from conftest import NONZERO, PYTHON, program_path, run_command, run_ok, run_program


def test_remote_exception_at_get(npes):
    run_ok("remote_exc", npes)


def test_broadcast_exception_with_late_replies(npes):
    run_ok("bcast_exc", npes)


# mode -> what stderr must contain besides the marker
FATAL = {
    "entry": ["Traceback", "raise_now", "ValueError"],
    "coro": ["Traceback", "raise_later", "LookupError"],
    "ctor": ["Traceback", "__init__", "ValueError"],
    "main": ["Traceback", "main", "TypeError"],
    "main_late": ["Traceback", "main", "TypeError"],
    "abort": [],
    "before_start": ["Traceback", "RuntimeError"],
    "before_start_last": ["Traceback", "RuntimeError"],
}


@pytest.mark.parametrize("mode", sorted(FATAL))
def test_fatal_error_ends_job(npes, mode):
    t0 = time.monotonic()
    rc, out, err = run_program("fatal", npes, mode, timeout=30, expect_rc=NONZERO)
    assert time.monotonic() - t0 < 20, "the job took too long to end"
    assert f"FATAL-MARKER-{mode}" in err, err
    for needle in FATAL[mode]:
        assert needle in err, f"{needle!r} not in stderr:\n{err}"
    assert "still running" not in out, out


def test_mismatched_reduction_is_reported(npes):
    rc, out, err = run_program("fatal", npes, "mismatch", timeout=30, expect_rc=NONZERO)
    assert "reduc" in err.lower(), err
    assert "mismatched reduction result" not in out, out


@pytest.mark.parametrize("npes_", [2, 3, 4])
def test_mismatched_reduction_across_pes_is_reported(npes_):
    rc, out, err = run_program("fatal", npes_, "mismatch_pes", timeout=30, expect_rc=NONZERO)
    assert "reduc" in err.lower(), err
    assert "mismatched reduction result" not in out, out


def test_syntax_error(npes):
    t0 = time.monotonic()
    rc, out, err = run_program("syntax_error", npes, timeout=20, expect_rc=NONZERO)
    assert time.monotonic() - t0 < 15
    assert "SyntaxError" in err, err


def test_syntax_error_plain_python():
    rc, out, err = run_command([PYTHON, program_path("syntax_error")], timeout=20,
                               expect_rc=NONZERO)
    assert "SyntaxError" in err, err


def test_exception_before_start_plain_python():
    rc, out, err = run_command([PYTHON, program_path("fatal"), "before_start"], timeout=20,
                               expect_rc=NONZERO)
    assert "FATAL-MARKER-before_start" in err, err
