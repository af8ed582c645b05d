"""Proxies: calls, equality, hashing, pickling, passing as arguments,
ordering, and the call-site errors (AttributeError, IndexError, TypeError)."""
from conftest import run_ok


def test_proxies(npes):
    run_ok("proxies", npes)
