"""Features of later issues. The lead lists sparse arrays, ArrayMap,
charm.thisProxy and host queries as not built yet, but they work already and
are tested as such; the features of later issues that landed since run
here too."""
import pytest

from conftest import run_ok


def test_sparse_array(npes):
    run_ok("sparse", npes, "basic")


def test_sparse_array_broadcast_ret(npes):
    run_ok("sparse", npes, "bcast_ret", timeout=30)


def test_runtime_proxy_and_host_queries(npes):
    run_ok("runtime_proxy", npes)


@pytest.mark.parametrize("prog", ["migration", "quiescence", "pool", "channels", "sections"])
def test_landed(prog, npes):
    # The lead's programs for migration with useAtSync and for quiescence
    # detection (issue 10), for the pool (issue 11), and for channels and
    # sections (issue 12): built now.
    run_ok(prog, npes, timeout=60)
