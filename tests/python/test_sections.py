"""Sections (issue 12): proxy slices, charm.split, charm.combine, broadcasts
multicast along a tree over the members' home PEs, reductions over
sections. The program (programs/sect_modes.py) says what each mode checks;
every mode runs at 1, 2, 3, 4 and 8 PEs (8 oversubscribes this machine on
purpose), migrations and concurrent reductions twice more."""
import pytest

from conftest import run_ok

MODES = ["slices", "groups", "split", "values", "reduce", "spread", "migrate", "errors",
         "combined", "sparse"]


@pytest.mark.parametrize("npes_", (1, 2, 3, 4, 8), ids=lambda n: f"P{n}")
@pytest.mark.parametrize("mode", MODES)
def test_sections(mode, npes_):
    run_ok("sect_modes", npes_, mode, timeout=120)


@pytest.mark.parametrize("mode", ["migrate", "reduce"])
@pytest.mark.parametrize("npes_", (3, 4), ids=lambda n: f"P{n}")
def test_sections_again(mode, npes_):
    run_ok("sect_modes", npes_, mode, timeout=120)


def test_checkpoint_restart_with_sections(tmp_path):
    # Section proxies (a slice, a split section, a Combined) in a chare's
    # state, restarted on fewer and more PEs: the members' homes are those
    # of the new run (they were the old run's: a multicast to PEs that no
    # longer exist, or members silently missed).
    ck = str(tmp_path / "ck")
    run_ok("sect_ckpt", 3, ck, timeout=60)
    for p in (1, 2, 4, 3):
        run_ok("sect_ckpt", p, ck, "+restart", ck, timeout=60)
