"""Never ends (for the harness test): prints a line, then every PE spins."""
import time

from charmpy import *


class Spinner(Chare):
    def spin(self):
        while True:
            time.sleep(0.01)


def main(args):
    print("started", flush=True)
    Group(Spinner).spin()


charm.start(main)
