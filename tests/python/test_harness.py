"""The harness itself: a job that hangs is killed at the timeout (launcher
and every PE), and the test fails with the output so far."""
import os
import time

import pytest

from conftest import run_program


def _pe_processes(prog_name):
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if prog_name.encode() in f.read():
                        found.append(int(d))
            except OSError:
                pass
    return found


def test_timeout_kills_the_job_and_fails_with_output():
    t0 = time.monotonic()
    with pytest.raises(pytest.fail.Exception) as info:
        run_program("hang", 2, timeout=3)
    assert time.monotonic() - t0 < 20
    text = str(info.value)
    assert "timed out after 3 s" in text and "started" in text, text
    deadline = time.monotonic() + 5
    while _pe_processes("programs/hang.py") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _pe_processes("programs/hang.py") == [], "processes of the hung job survived"


def test_unexpected_exit_code_fails():
    with pytest.raises(pytest.fail.Exception) as info:
        run_program("fatal", 1, "exit_main", timeout=30)   # exits with 5
    assert "expected exit code 0" in str(info.value)
