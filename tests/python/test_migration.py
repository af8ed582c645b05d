"""Migration (issue 10): self.migrate(toPe) for array elements and single
chares, with calls in flight. The storm moves every element every round
while calls, @when calls and reductions are under way, and checks at
quiescence that every call arrived exactly once and in each sender's order
(programs/migrate.py says what each mode checks); broadcasts sent while
every element moves reach each exactly once, in order. Races hide at 2 PEs, so
the storm runs several times at 2, 3, 4, 6 and 8 PEs (on 2 cores: 8 PEs is
oversubscribed on purpose); test_mpi.py runs it under mpirun."""
import pytest

from conftest import run_ok

MODES = ["storm", "state", "refuse", "coroutine", "bcast", "bcastcoro", "chain", "early",
         "selfcalls", "direct", "sparse", "sparsebcast", "sparsecycle", "chareorder", "badarg",
         "nested"]


@pytest.mark.parametrize("mode", MODES)
def test_migrate(mode, npes):
    run_ok("migrate", npes, mode, timeout=90)


def test_refused_at_departure():
    """A chare of a shape that moved before, whose list got a lock: the
    departure refuses it, says which attribute on stderr, and it stays."""
    res = run_ok("migrate", 2, "refuse", timeout=90)
    assert "BAG departure" in res.stdout, res.stdout
    assert "Bag[(0,)] cannot migrate to PE 0" in res.stderr and "'items'" in res.stderr, \
        res.stderr


@pytest.mark.parametrize("pes", [2, 3, 4, 6, 8], ids=lambda n: f"P{n}")
def test_storm_repeated(pes):
    for _ in range(6):
        run_ok("migrate", pes, "storm", timeout=120)


@pytest.mark.parametrize("pes", [6, 8], ids=lambda n: f"P{n}")
@pytest.mark.parametrize("mode", ["state", "coroutine", "bcast", "bcastcoro", "early", "direct",
                                  "sparse", "sparsebcast", "sparsecycle", "selfcalls",
                                  "chareorder", "badarg",
                                  "unplaced",
                                  "nested"])
def test_migrate_more_pes(mode, pes):
    for _ in range(3):
        run_ok("migrate", pes, mode, timeout=120)
