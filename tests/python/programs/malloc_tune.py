"""Big numpy temporaries reuse memory instead of faulting fresh pages in
each time: charm.start sets glibc's mmap and trim thresholds (unless
CHARMPY_MALLOC_TUNE=0 or the user tuned malloc). Prints the minor page
faults of 20 rounds of a stencil-like expression over a 2 MiB array, whose
temporaries are freed together at the end of each round."""
import resource

import numpy as np

from charmpy import *


def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main(args):
    u = np.ones((512, 512))

    def step():
        v = (u[1:-1, :-2] + u[1:-1, 2:]) * (u[:-2, 1:-1] + u[2:, 1:-1]) - u[1:-1, 1:-1]
        return float(v[0, 0])

    for _ in range(3):  # warm-up: the heap grows once
        step()
    before = faults()
    for _ in range(20):
        step()
    print(f"faults {faults() - before}")
    print("OK malloc_tune")
    charm.exit()


charm.start(main)
