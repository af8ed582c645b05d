"""A broadcast with ret=True (or awaitable=True) where one member raises
quickly and the others reply later: get() raises that member's exception,
and the replies that arrive afterwards must not break the job."""
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
        for kw in ({"ret": True}, {"awaitable": True}):
            try:
                proxy.work(failing, **kw).get()
            except ArithmeticError as e:
                assert f"member {failing} failed" in str(e), str(e)
            else:
                raise AssertionError("the member's exception was not raised by get()")
            charm.sleep(0.5)       # the other members' replies arrive meanwhile
        assert proxy.ok(ret=True).get() == ["ok"] * n
        assert proxy.work(-1, ret=True).get() == ["late reply"] * n
    print("OK bcast_exc")
    charm.exit()


charm.start(main)
