"""@when ordering under random arrival order, and self.wait."""
from conftest import run_ok


def test_when_ordering(npes):
    run_ok("when_order", npes, timeout=60)
