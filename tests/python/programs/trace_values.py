"""Instants whose values and names test the trace writer's formatting (it
formats numbers itself, for the SIGTERM path): VALUES on every PE, under a
name with characters JSON escapes. Args: the trace file (charm.options.trace)."""
import sys

from charmpy import Chare, Group, charm
import charmpy._charmpy as C

VALUES = (0.0, 0.5, -3.0, 1.25e-7, 1e-12, -4.5e-300, 0.00099, 123456789.123,
          1e20, -2.5e30, 7e15, 4.611686018427388e18, 0.3333333333333333,
          -0.6666666666666666, 999.9999999996)
NAME = 'quote " back \\ tab \t nl \n bell \x07 é'


def main(args):
    Group(Recorder).record(awaitable=True).get()
    print("OK trace_values", flush=True)
    charm.exit()


class Recorder(Chare):
    def record(self):
        for v in VALUES:
            C.trace_instant(NAME, v)


charm.options.trace = sys.argv[1]
charm.start(main)
