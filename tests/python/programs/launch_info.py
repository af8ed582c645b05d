"""Prints what the program sees of its launch: the number of PEs and its
argv (runtime flags must have been removed); checks that sys.argv and the
args given to main agree, on every PE."""
import sys

from charmpy import *


class Probe(Chare):
    def argv(self):
        return (charm.myPe(), charm.numPes(), list(sys.argv))


def main(args):
    assert args == sys.argv, (args, sys.argv)
    seen = Group(Probe).argv(ret=True).get()
    for pe, (mype, npes, argv) in enumerate(seen):
        assert mype == pe and npes == charm.numPes(), seen
        assert argv == sys.argv, f"PE {pe} has argv {argv}, PE 0 has {sys.argv}"
    print(f"PES {charm.numPes()}")
    print(f"ARGS {sys.argv[1:]!r}")
    print("OK launch_info")
    charm.exit()


charm.start(main)
