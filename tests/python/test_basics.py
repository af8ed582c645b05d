"""PEs, options, single chares with onPE, groups, 1-D arrays and the block
map, keyword arguments, awaitCreation, the exported names; arguments to
same-process chares by reference or copied (local_msg_optim)."""
import pytest

from conftest import run_ok


def test_basics(npes):
    run_ok("basics", npes, str(npes))


@pytest.mark.parametrize("mode", ["on", "off"])
def test_local_args(npes, mode):
    run_ok("local_args", npes, mode)
