"""A broadcast with awaitable=True (or ret=True) where one member raises
quickly and the others reply later: with awaitable=True get() raises that
member's exception, and the replies that arrive afterwards must not break
the job; with ret=True get() returns every member's result, the exception
object in the failing member's place."""
from charmpy import *


class Member(Chare):
    @coro
    def work(self, failing):
        if self.thisIndex == failing:
            raise ArithmeticError(f"member {failing} failed")
        charm.sleep(0.2)
        return "late reply"

    def ok(self):
        return "ok"


def main(args):
    P = charm.numPes()
    for proxy, failing, n in ((Group(Member), 0, P), (Array(Member, 2 * P), (0,), 2 * P)):
        # awaitable=True: get() raises the member's exception.
        try:
            proxy.work(failing, awaitable=True).get()
        except ArithmeticError as e:
            assert f"member {failing} failed" in str(e), str(e)
        else:
            raise AssertionError("the member's exception was not raised by get()")
        charm.sleep(0.5)       # the other members' replies arrive meanwhile
        # ret=True: get() waits for every member; the failing member's
        # exception object is in its place in the list (index order).
        results = proxy.work(failing, ret=True).get()
        assert len(results) == n, results
        k = failing if isinstance(failing, int) else failing[0]
        assert isinstance(results[k], ArithmeticError), results
        assert f"member {failing} failed" in str(results[k]), str(results[k])
        assert results[:k] + results[k + 1:] == ["late reply"] * (n - 1), results
        assert proxy.ok(ret=True).get() == ["ok"] * n
        assert proxy.work(-1, ret=True).get() == ["late reply"] * n
    print("OK bcast_exc")
    charm.exit()


charm.start(main)
