"""The pool (`make run`): count the primes below N by trial division, in
chunks of the range spread over every PE with charm.pool.map, checked
against a numpy sieve; prints the count and the time beside one PE's.

    charmrun -n 4 examples/python/primes.py [N] [chunks]
"""
import sys
import time

import numpy as np

from charmpy import charm


def count_primes(lo_hi):
    lo, hi = lo_hi
    n = 0
    for k in range(max(lo, 2), hi):
        if k % 2 == 0:
            n += k == 2
            continue
        d = 3
        while d * d <= k:
            if k % d == 0:
                break
            d += 2
        else:
            n += 1
    return n


def sieve(n):
    s = np.ones(n, dtype=bool)
    s[:2] = False
    for p in range(2, int(n ** 0.5) + 1):
        if s[p]:
            s[p * p::p] = False
    return int(s.sum())


def main(args):
    n = int(args[1]) if len(args) > 1 else 1_000_000
    chunks = int(args[2]) if len(args) > 2 else 400
    step = -(-n // chunks)
    ranges = [(lo, min(lo + step, n)) for lo in range(0, n, step)]
    t0 = time.perf_counter()
    total = sum(charm.pool.map(count_primes, ranges))
    dt = time.perf_counter() - t0
    assert total == sieve(n), (total, sieve(n))
    t1 = time.perf_counter()
    one = sum(charm.pool.map(count_primes, ranges, ncores=1))
    dt1 = time.perf_counter() - t1
    assert one == total
    P = charm.numPes()
    print(f"primes below {n}: {total} (checked with a sieve), {len(ranges)} tasks on "
          f"{P} PEs in {dt:.2f} s; on 1 PE {dt1:.2f} s: {dt1 / dt:.2f}x faster on {P}")
    charm.exit()


charm.start(main)
