"""Blocking calls outside a coroutine: future.get(), self.wait(),
charm.wait() and charm.iwait() in an entry method that is not @coro raise a
clear error that says to use @coro. Usage: outside_coro.py [uncaught]
(uncaught: the error is not caught, so the job must end non-zero with it)."""
import sys

from charmpy import *

UNCAUGHT = sys.argv[1:] == ["uncaught"]


class Plain(Chare):
    def __init__(self):
        self.x = 0

    def value(self):
        return 5

    def try_all(self, other):
        results = {}
        f = other.value(ret=True)
        attempts = {
            "future.get": lambda: f.get(),
            "self.wait": lambda: self.wait("self.x == 1"),
            "charm.wait": lambda: charm.wait([other.value(ret=True)]),
            "charm.iwait": lambda: list(charm.iwait([other.value(ret=True)])),
        }
        for name, attempt in attempts.items():
            try:
                attempt()
                results[name] = "no error"
            except Exception as e:
                results[name] = f"{type(e).__name__}: {e}"
        return results

    def get_uncaught(self, other):
        return other.value(ret=True).get()


def main(args):
    P = charm.numPes()
    a = Chare(Plain, onPE=P - 1)
    b = Chare(Plain, onPE=0)
    if UNCAUGHT:
        a.get_uncaught(b)          # no future: the error must end the job
        charm.sleep(30)
        print("the job was not ended by the error")
        charm.exit(0)
        return
    results = a.try_all(b, ret=True).get()
    for name, text in results.items():
        assert text != "no error", f"{name} outside a coroutine did not raise"
        assert "@coro" in text, f"{name} outside a coroutine: error does not say @coro: {text}"
    print("OK outside_coro")
    charm.exit()


charm.start(main)
