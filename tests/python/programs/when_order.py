"""@when ordering under random arrival order: senders on every PE send
messages numbered 0..N-1 to each receiver, each sender in its own shuffled
order (seeded: deterministic), with small pauses in between; the receivers,
an array spread over the PEs, must process them strictly in order. Also:
conditions over several parameters and attributes, a message held until
another entry method opens the gate, and self.wait in a coroutine."""
import random

from charmpy import *

N = 200          # messages per receiver
NRECV = 5        # receivers (array elements)


class Receiver(Chare):
    def __init__(self):
        self.iter = 0
        self.processed = []
        self.opened = False
        self.gate_log = []
        self.phase = 0
        self.phase_log = []

    @when("self.iter == it")
    def step(self, it, sender, payload):
        assert it == self.iter, (it, self.iter)
        assert payload == it * 3 + sum(self.thisIndex), (it, payload)
        self.processed.append((it, sender))
        self.iter += 1

    @coro
    def wait_all(self):
        self.wait("self.iter == %d" % N)
        its = [it for it, _ in self.processed]
        assert its == list(range(N)), its[:20]
        return len({s for _, s in self.processed})

    @when("self.opened")
    def through_gate(self, x):
        self.gate_log.append(x)

    def open_gate(self):
        self.gate_log.append("open")
        self.opened = True

    def gate(self):
        return self.gate_log

    # Condition over two parameters and two attributes.
    @when("self.phase == phase and len(self.phase_log) == pos")
    def in_phase(self, phase, pos, tag):
        self.phase_log.append((phase, pos, tag))

    def next_phase(self):
        self.phase += 1

    @when("len(self.phase_log) == n")
    def phase_log_when(self, n):
        return self.phase_log


class Sender(Chare):
    @coro
    def send_all(self, receivers, seed):
        rng = random.Random(seed)
        me = f"{type(self).__name__}{self.thisIndex}"
        mine = [it for it in range(N) if it % self.nsenders == self.rank]
        for r in range(NRECV):
            order = list(mine)
            rng.shuffle(order)
            for k, it in enumerate(order):
                receivers[r].step(it, me, it * 3 + r)
                if rng.random() < 0.02:
                    charm.sleep(0.001)

    def setup(self, rank, nsenders):
        self.rank, self.nsenders = rank, nsenders


def main(args):
    P = charm.numPes()
    recv = Array(Receiver, NRECV)
    group = Group(Sender)
    arr = Array(Sender, 3)
    # Senders: one group member per PE, 3 array elements, and main itself.
    senders = [group[pe] for pe in range(P)] + [arr[i] for i in range(3)]
    nsenders = len(senders) + 1
    for rank, s in enumerate(senders):
        s.setup(rank, nsenders, awaitable=True).get()
    waits = [recv[r].wait_all(ret=True) for r in range(NRECV)]
    futs = [s.send_all(recv, 1000 + rank, awaitable=True) for rank, s in enumerate(senders)]
    # main sends its share last, in reverse order: every receiver holds them.
    rank = nsenders - 1
    for it in reversed(range(N)):
        if it % nsenders == rank:
            for r in range(NRECV):
                recv[r].step(it, "main", it * 3 + r)
    charm.wait(futs)
    for w in waits:
        assert w.get() == nsenders, "not every sender's messages were processed"

    # A message held until another entry method opens the gate.
    for i in range(3):
        recv[1].through_gate(i)
    assert recv[1].gate(ret=True).get() == []
    recv[1].open_gate()
    recv[1].through_gate(3)
    assert recv[1].gate(ret=True).get() == ["open", 0, 1, 2, 3]

    # Sent in reverse order; applied in order of (phase, pos).
    r = recv[NRECV - 1]
    plan = [(0, 0, "a"), (0, 1, "b"), (1, 2, "c"), (1, 3, "d"), (2, 4, "e")]
    for phase, pos, tag in reversed(plan):
        r.in_phase(phase, pos, tag)
    assert r.phase_log_when(2, ret=True).get() == plan[:2]
    r.next_phase()
    assert r.phase_log_when(4, ret=True).get() == plan[:4]
    r.next_phase()
    assert r.phase_log_when(5, ret=True).get() == plan
    print("OK when_order")
    charm.exit()


charm.start(main)
