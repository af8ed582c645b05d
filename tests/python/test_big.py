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
