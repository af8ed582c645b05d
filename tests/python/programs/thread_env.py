"""Prints, for every PE, the thread-pool variables charmrun set for it:
`PE p OMP_NUM_THREADS=v OPENBLAS_NUM_THREADS=v MKL_NUM_THREADS=v NUMEXPR_NUM_THREADS=v`."""
import os

from charmpy import Chare, Group, charm

VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class Env(Chare):
    def get(self):
        return " ".join(f"{v}={os.environ.get(v)}" for v in VARS)


def main(args):
    g = Group(Env)
    for pe, line in enumerate(g.get(ret=True).get()):
        print(f"PE {pe} {line}")
    charm.exit()


charm.start(main)
