"""Large arguments (256 MiB numpy arrays) and many chares (one million
array elements over 2 PEs)."""
import pytest

from conftest import run_ok


def test_256mib_numpy_argument(npes):
    run_ok("big_numpy", npes, timeout=120)


@pytest.mark.slow
def test_million_elements_two_pes():
    res = run_ok("many_chares", 2, "1000000", timeout=240)
    print(res.stdout)


def test_big_arguments_by_value(npes):
    """Several big buffers in one call, from every PE to every other at once,
    changed by the sender right after the call (copied into the message
    under shm; test_mpi runs it where they are sent in place)."""
    run_ok("big_args", npes, timeout=120)
