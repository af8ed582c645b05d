from charmpy import *

def main(args)
    charm.exit()

charm.start(main)
