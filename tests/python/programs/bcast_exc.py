"""A broadcast where one member raises quickly and the others reply later:
with awaitable=True get() raises that member's exception, with ret=True it
returns the list of results with the exception in that member's place;
the job goes on."""
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
        res = proxy.work(failing, ret=True).get()
        assert len(res) == n and isinstance(res[0], ArithmeticError), res
        assert f"member {failing} failed" in str(res[0]), str(res[0])
        assert "Traceback" in res[0].remote_traceback
        assert res[1:] == ["late reply"] * (n - 1), res
        try:
            proxy.work(failing, awaitable=True).get()
        except ArithmeticError as e:
            assert f"member {failing} failed" in str(e), str(e)
        else:
            raise AssertionError("the member's exception was not raised by get()")
        assert proxy.ok(ret=True).get() == ["ok"] * n
        assert proxy.work(-1, ret=True).get() == ["late reply"] * n
    print("OK bcast_exc")
    charm.exit()


charm.start(main)
