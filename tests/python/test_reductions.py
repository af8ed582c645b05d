"""Reductions: every reducer over every kind of data; targets, empty
reductions, nop, gather, custom reducers, allreduce, concurrent reductions."""
from conftest import run_ok


def test_every_reducer_and_data_kind(npes):
    run_ok("reduce_kinds", npes)


def test_targets_gather_custom_allreduce(npes):
    run_ok("reduce_targets", npes)
