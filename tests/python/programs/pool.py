"""charm.pool: parallel map and tasks (the lead's program)."""
from charmpy import *


def square(x):
    return x * x


def main(args):
    assert charm.pool.map(square, range(20)) == [x * x for x in range(20)]
    assert charm.pool.map(lambda x: x + 1, range(5), chunksize=2) == [1, 2, 3, 4, 5]
    f = charm.pool.map_async(square, [3, 4])
    assert f.get() == [9, 16]
    print("OK pool")
    charm.exit()


charm.start(main)
