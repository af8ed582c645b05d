"""Data from a sender that migrated overtakes the sender's CHANOPEN
(the open goes through the receiver's busy home, the data goes direct)."""
import time
from charmpy import Array, Chare, Group, Channel, charm, coro


class R(Chare):
    def __init__(self):
        pass

    def move(self, pe):
        self.migrate(pe)

    def where(self):
        return charm.myPe()

    @coro
    def take(self, s):
        ch = Channel(self, remote=s)
        return ch.recv()


class Busy(Chare):
    def __init__(self):
        pass

    def spin(self, secs):
        t = time.time()
        while time.time() - t < secs:
            pass


class T(Chare):
    def __init__(self):
        pass

    def warm(self, r):
        # calls to R[0] through its home: this PE learns where R[0] is
        for _ in range(3):
            r.where(ret=True)

    @coro
    def warm_c(self, r):
        for _ in range(5):
            r.where(ret=True).get()
        return charm.myPe()


class S(Chare):
    def __init__(self):
        self.ch = None

    def go(self, r, to):
        self.ch = Channel(self, remote=r)
        self.migrate(to)

    def migrated(self):
        self.ch.send("hello from PE %d" % charm.myPe())


class Driver(Chare):
    def __init__(self):
        pass

    @coro
    def drive(self, busy, s, r):
        busy[0].spin(1.0)             # PE 0 (R's home) busy for 1 s
        charm.sleep(0.05)
        s.go(r, 2)


class Main(Chare):
    def __init__(self, args):
        self.run()

    @coro
    def run(self):
        rs = Array(R, 1)              # home PE 0
        rs[0].move(1, awaitable=True).get()
        charm.sleep(0.2)
        assert rs[0].where(ret=True).get() == 1
        ts = Array(T, 4)              # T[2] on PE 2
        assert ts[2].warm_c(rs[0], ret=True).get() == 2
        ss = Array(S, 4)              # S[3] on PE 3
        fr = rs[0].take(ss[3], ret=True)
        charm.sleep(0.2)
        busy = Group(Busy)
        charm.sleep(0.1)
        d = Chare(Driver, onPE=3)
        d.drive(busy, ss[3], rs[0], awaitable=True).get()
        print("got", fr.get())
        print("OK chan_race")
        charm.exit()


charm.start(Main)
