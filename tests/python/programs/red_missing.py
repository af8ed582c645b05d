"""A reduction one member never contributes to: the job must end with a
clear error, not hang. Usage: red_missing.py MODE
  array    an array of 3P+1 elements, element 2 does not contribute (sum to
           a future main waits on): an error naming reduction 0 of the
           array and M[(2,)]
  section  the same over a section a[0:6:2] (element 2 is in it)
  group    a group, the member on the last PE does not contribute
  qdwait   not an error: members but one contribute, main waits for
           quiescence (charm.waitQD), then the last one contributes: the
           sum arrives and the program ends normally (prints OK red_missing)
"""
import sys

from charmpy import Array, Chare, Future, Group, Reducer, charm


class M(Chare):
    def go(self, skip, fut, sec=None):
        i = self.thisIndex if isinstance(self.thisIndex, int) else self.thisIndex[0]
        if i != skip:
            self.contribute(i, Reducer.sum, fut, section=sec)

    def late(self, fut):
        self.contribute(self.thisIndex[0], Reducer.sum, fut)


def main(args):
    mode = args[1]
    P = charm.numPes()
    f = Future()
    if mode == "array":
        a = Array(M, 3 * P + 1)
        a.go(2, f)
    elif mode == "section":
        a = Array(M, 3 * P + 6)
        sec = a[0:6:2]
        sec.go(2, f, sec)
    elif mode == "group":
        g = Group(M)
        g.go(P - 1, f)
    elif mode == "qdwait":
        n = 3 * P + 1
        a = Array(M, n)
        a.go(n - 1, f)
        charm.waitQD()
        charm.sleep(2.5)     # past the watch's first look
        charm.waitQD()
        a[n - 1].late(f)
        assert f.get() == sum(range(n))
        print("OK red_missing")
        charm.exit()
        return
    f.get()
    print("the reduction completed, which it cannot")
    charm.exit(3)


charm.start(main)
