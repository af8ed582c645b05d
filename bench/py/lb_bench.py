"""Load balancing (issue 10's target): an array whose work grows with the
index, AtSync every SYNC iterations, under a balancer.

    charmrun -n 2 bench/py/lb_bench.py STRATEGY [N_ELEMENTS] [ITERS]
    charmrun -n 2 bench/py/lb_bench.py balanced [N_ELEMENTS] [ITERS]
    SUITE_CHARM=charm4py python -m charmrun.start +p2 bench/py/lb_bench.py \
        STRATEGY +balancer STRATEGY ++local          (charm4py, for comparison)

Element i busy-loops (i + 1) * UNIT seconds an iteration; `balanced` gives
every element the mean work instead (the same total: the ideal). The block
map puts the light half on PE 0 and the heavy half on PE 1, so with
DummyLB an iteration takes the heavy half's time (~0.75 of the total on 2
PEs) and a perfect balance half of it. Prints `lb STRATEGY: S s/iter` for
the iterations after the first step (the first SYNC iterations measure the
loads) and the figures of each step."""
import os
import sys
import time

if os.environ.get("SUITE_CHARM") == "charm4py":   # the same program on charm4py
    from charm4py import Array, Chare, Future, Reducer, charm
    CHARM4PY = True
else:
    from charmpy import Array, Chare, Future, Reducer, charm
    CHARM4PY = False

# (Charm++'s runtime flags are still in sys.argv here under charm4py.)
_pos = [a for a in sys.argv[1:] if a.isdigit() or not a.startswith("+")]
MODE = _pos[0] if _pos else "GreedyLB"
_nums = [int(a) for a in _pos[1:] if a.isdigit()]
N = _nums[0] if _nums else 16
ITERS = _nums[1] if len(_nums) > 1 else 30
SYNC = 5
UNIT = 0.0002


class Worker(Chare):
    def __init__(self, done, marks):
        i = self.thisIndex[0]
        self.marks = marks
        self.secs = UNIT * ((N + 1) / 2 if MODE == "balanced" else i + 1)
        self.it = 0
        self.done = done

    def step(self):
        end = time.perf_counter() + self.secs
        while time.perf_counter() < end:
            pass
        self.it += 1
        if self.it == ITERS:
            self.contribute(None, Reducer.nop, self.done)
        elif self.it % SYNC == 0:
            self.contribute(time.perf_counter(), Reducer.max, self.marks.mark)
            self.AtSync()
        else:
            self.thisProxy[self.thisIndex].step()

    def resumeFromSync(self):
        self.thisProxy[self.thisIndex].step()


class Marks(Chare):
    def __init__(self):
        self.t = []

    def mark(self, t):
        self.t.append(t)

    def get(self):
        return self.t


def main(args):
    done = Future()
    marks = Chare(Marks, onPE=0)
    a = Array(Worker, N, args=[done, marks], useAtSync=True)
    charm.awaitCreation(a, marks)
    a.step()
    done.get()
    t_end = time.perf_counter()
    t = marks.get(ret=True).get()
    per = (t_end - t[0]) / (ITERS - SYNC)   # after the first step: placed by the balancer
    print(f"lb {MODE}: {per:.6f} s/iter ({N} elements, {charm.numPes()} PEs, "
          f"AtSync every {SYNC})")
    for s in ([] if CHARM4PY else charm.lbStats()):
        print(f"  step {s['step']}: max/avg {s['max_before'] / s['avg']:.3f} -> "
              f"{s['max_after'] / s['avg']:.3f} predicted, {s['moves']} moves, "
              f"{s['time'] * 1e3:.2f} ms")
    charm.exit()


if not CHARM4PY:     # charm4py takes the balancer as a runtime flag: +balancer NAME
    charm.options.balancer = "DummyLB" if MODE == "balanced" else MODE
charm.start(main)
