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


@pytest.mark.parametrize("mode", ["migrate", "storm", "ring", "iwait"])
@pytest.mark.parametrize("npes_", (2, 3, 4), ids=lambda n: f"P{n}")
def test_channels_again(mode, npes_):
    # Races hide: the messages in flight while chares move, once more. At 2
    # PEs (not oversubscribed here) recv() polls for its value in place
    # (cp_poll_for), which 3 and more on 2 cores never do.
    run_ok("chan_modes", npes_, mode, timeout=120)


def test_lead_program():
    # The lead's program for channels (was xfail while they were missing).
    for p in (1, 2, 3):
        run_ok("channels", p, timeout=60)


@pytest.mark.parametrize("prog", ["chan_race", "chan_race2"])
def test_open_overtaken(prog):
    # A sender that migrates right after making its end: its data (direct)
    # overtakes its open (through the receiver's busy home), or its second
    # open overtakes its first; found by a review. Twice: races.
    for _ in range(2):
        run_ok(prog, 4, timeout=60)   # (written for 4 PEs)


def test_checkpoint_restart_with_channels(tmp_path):
    # Buffered values, an unclaimed end and a channel to itself saved in a
    # checkpoint, restarted on fewer and more PEs.
    ck = str(tmp_path / "ck")
    run_ok("chan_ckpt", 2, ck, timeout=60)
    for p in (1, 3):
        run_ok("chan_ckpt", p, ck, "+restart", ck, timeout=60)
