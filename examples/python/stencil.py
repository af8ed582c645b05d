"""A 2-D Jacobi stencil over an array of chares (`make run`).

The grid is cut into blocks, several per PE; each block is a chare holding
a numpy array with a halo. Every iteration a block sends its four edges to
its neighbours, waits for theirs (@when keeps early edges until their
iteration), and relaxes. A max-reduction of the change ends the run.

    charmrun -n 4 examples/python/stencil.py [grid] [blocks-per-side] [iters]
"""
import sys
import time

import numpy as np

from charmpy import Array, Chare, Future, Reducer, charm, coro, when


class Block(Chare):
    def __init__(self, n, nb):
        self.n, self.nb = n, nb
        self.bx, self.by = self.thisIndex
        self.u = np.zeros((n + 2, n + 2))
        if self.bx == 0:
            self.u[0, :] = 1.0          # the hot top edge of the whole grid
        self.iter = 0
        self.got = 0
        self.nbrs = [(self.bx + dx, self.by + dy)
                     for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1))
                     if 0 <= self.bx + dx < nb and 0 <= self.by + dy < nb]

    @coro
    def run(self, iters, done):
        u = self.u
        for _ in range(iters):
            for (x, y) in self.nbrs:
                if x < self.bx:
                    edge, side = u[1, 1:-1], "bottom"
                elif x > self.bx:
                    edge, side = u[-2, 1:-1], "top"
                elif y < self.by:
                    edge, side = u[1:-1, 1], "right"
                else:
                    edge, side = u[1:-1, -2], "left"
                self.thisProxy[x, y].halo(self.iter, side, edge.copy())
            self.wait("self.got == len(self.nbrs)")
            self.got = 0
            new = 0.25 * (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:])
            delta = float(np.abs(new - u[1:-1, 1:-1]).max())
            u[1:-1, 1:-1] = new
            self.iter += 1
        self.contribute(delta, Reducer.max, done)

    @when("self.iter == it")
    def halo(self, it, side, edge):
        u = self.u
        if side == "top":
            u[0, 1:-1] = edge
        elif side == "bottom":
            u[-1, 1:-1] = edge
        elif side == "left":
            u[1:-1, 0] = edge
        else:
            u[1:-1, -1] = edge
        self.got += 1


def main(args):
    grid = int(args[1]) if len(args) > 1 else 2048
    nb = int(args[2]) if len(args) > 2 else 8
    iters = int(args[3]) if len(args) > 3 else 100
    if grid % nb:
        charm.abort(f"the grid ({grid}) must be a multiple of the blocks per side ({nb})")
    blocks = Array(Block, (nb, nb), args=[grid // nb, nb])
    charm.awaitCreation(blocks)
    done = Future()
    t0 = time.perf_counter()
    blocks.run(iters, done)
    delta = done.get()
    t = time.perf_counter() - t0
    print(f"charmpy stencil: {grid}x{grid} grid, {nb * nb} blocks on {charm.numPes()} PEs, "
          f"{iters} iterations in {t:.2f} s = {iters / t:.1f} iterations/s "
          f"({grid * grid * iters / t / 1e6:.0f} M points/s); last max change {delta:.3e}")
    charm.exit()


charm.start(main)
