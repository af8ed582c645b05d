"""A program that asks for a load balancer by name: with +balancer NAME on
the command line, or --option-balancer NAME (then it sets
charm.options.balancer). Prints OK balancer_name when the job runs."""
import sys

from charmpy import *

if "--option-balancer" in sys.argv:
    charm.options.balancer = sys.argv[sys.argv.index("--option-balancer") + 1]


def main(args):
    print("OK balancer_name")
    charm.exit()


charm.start(main)
