"""@when ordering under random arrival order, and self.wait; a @coro loop
gated by @when that must not hang."""
import pytest

from conftest import run_ok


def test_when_ordering(npes):
    run_ok("when_order", npes, timeout=60)


# Issue 9, section 1: a @coro loop whose state change (self.step) opens the
# messages @when holds. The held messages must be re-examined after the
# coroutine resumes and runs to its next suspension, however it was resumed:
# by a local future (future), a future fulfilled on another PE (remote), a
# timer (timer), or self.wait (wait). One run takes about a second even at 8
# PEs (which oversubscribes 2 cores on purpose); a hang is caught by the
# per-run timeout, and the first failing run ends the test.
WHEN_CORO_RUNS = 10
WHEN_CORO_STEPS = {"future": 200, "remote": 100, "timer": 100, "wait": 100}


@pytest.mark.slow
@pytest.mark.parametrize("pes", [2, 3, 4, 8], ids=lambda n: f"P{n}")
@pytest.mark.parametrize("variant", list(WHEN_CORO_STEPS))
def test_when_coro_no_hang(variant, pes):
    for run in range(WHEN_CORO_RUNS):
        run_ok("when_coro", pes, variant, str(WHEN_CORO_STEPS[variant]), timeout=30)
