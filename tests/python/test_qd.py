"""Quiescence detection (issue 10): charm.startQD / charm.waitQD fire only
once everything sent before was processed: bursts of calls between PEs
(plain, @when, coroutines), work continuing after timers, messages waiting
for a sparse element inserted later or for an ArrayMap not there yet, and
several requests at once with both kinds of target. The runtime's own test
is tests/pe/qd.c."""
import pytest

from conftest import run_ok

MODES = ["burst", "timers", "held", "targets"]


@pytest.mark.parametrize("mode", MODES)
def test_qd(mode, npes):
    run_ok("qd", npes, mode, timeout=90)


@pytest.mark.parametrize("pes", [6, 8], ids=lambda n: f"P{n}")
@pytest.mark.parametrize("mode", MODES)
def test_qd_more_pes(mode, pes):
    for _ in range(2):
        run_ok("qd", pes, mode, timeout=120)
