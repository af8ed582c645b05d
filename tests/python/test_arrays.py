"""N-D dense arrays (2-D to 6-D), ArrayMap placement, many elements."""
from conftest import run_ok


def test_nd_arrays(npes):
    run_ok("arrays_nd", npes)


def test_array_map(npes):
    run_ok("array_map", npes)


def test_many_elements_small(npes):
    run_ok("many_chares", npes, "20000")


def test_broadcast_calls_what_each_member_would(npes):
    run_ok("bcast_lookup", npes)
