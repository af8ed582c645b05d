"""Channels (issue 12): Channel(self, remote=proxy), send(*values), recv()
in a coroutine, charm.iwait over channels and futures. The program
(programs/chan_modes.py) says what each mode checks; every mode runs at 1,
2, 3, 4 and 8 PEs (8 oversubscribes this machine on purpose), the storms
and the migrations twice."""
import pytest

from conftest import run_ok

MODES = ["basic", "numpy", "ring", "late", "iwait", "migrate", "storm", "errors"]


@pytest.mark.parametrize("npes_", (1, 2, 3, 4, 8), ids=lambda n: f"P{n}")
@pytest.mark.parametrize("mode", MODES)
def test_channels(mode, npes_):
    run_ok("chan_modes", npes_, mode, timeout=120)


@pytest.mark.parametrize("mode", ["migrate", "storm"])
@pytest.mark.parametrize("npes_", (3, 4), ids=lambda n: f"P{n}")
def test_channels_again(mode, npes_):
    # Races hide: the messages in flight while chares move, once more.
    run_ok("chan_modes", npes_, mode, timeout=120)


def test_lead_program():
    # The lead's program for channels (was xfail while they were missing).
    for p in (1, 2, 3):
        run_ok("channels", p, timeout=60)
