"""An exception in an entry method called with a future is raised again by
get() on the caller: same type and message, with `remote_traceback` naming
the PE, the class, the index and the method. The job goes on afterwards."""
from charmpy import *


class Custom(Exception):
    pass


class Faulty(Chare):
    def fail_value(self, x):
        raise ValueError(f"bad value {x}")

    def fail_custom(self):
        raise Custom("custom failure")

    @coro
    def fail_in_coro(self, other):
        other.ok(ret=True).get()
        raise KeyError("missing-key")

    @coro
    def fail_on(self, index):
        # The failing member fails last, so every other reply is in by then
        # (bcast_exc.py covers replies arriving after the exception).
        if self.thisIndex == index:
            charm.sleep(0.2)
            raise ZeroDivisionError(f"member {index} divides by zero")
        return "fine"

    def ok(self):
        return "ok"


PROBLEMS = []


class _Raiser:
    """get() raises the exception a broadcast's result list holds."""

    def __init__(self, exc):
        self.exc = exc

    def get(self):
        if isinstance(self.exc, BaseException):
            raise self.exc
        return self.exc


def check(fut, exc_type, message, pe, cls, index, method):
    """get() raises exc_type(message...); remote_traceback has a line naming
    the PE, the class, the index and the method, and the original traceback.
    Problems are collected so that one run reports all of them."""
    what = f"{cls}{'' if index is None else [index]}.{method} on PE {pe}"
    try:
        fut.get()
    except exc_type as e:
        if message not in str(e):
            PROBLEMS.append(f"{what}: message {str(e)!r} lacks {message!r}")
        tb = getattr(e, "remote_traceback", None)
        if not isinstance(tb, str) or message not in tb:
            PROBLEMS.append(f"{what}: remote_traceback {tb!r} lacks the exception")
            return
        header = [ln for ln in tb.splitlines() if f"PE {pe}" in ln]
        needles = [cls, method] + ([] if index is None else [str(index)])
        if not any(all(n in ln for n in needles) for ln in header):
            PROBLEMS.append(f"{what}: no line of remote_traceback names PE {pe}, class, "
                            f"index and method {needles}:\n{tb}")
        return
    except Exception as e:
        PROBLEMS.append(f"{what}: expected {exc_type.__name__}, got {type(e).__name__}: {e}")
        return
    PROBLEMS.append(f"{what}: expected {exc_type.__name__}: nothing was raised")


def main(args):
    P = charm.numPes()
    last = P - 1
    single = Chare(Faulty, onPE=last)
    arr = Array(Faulty, (2, 3))
    grp = Group(Faulty)
    charm.awaitCreation(single, arr, grp)
    where12 = arr[1, 2].ok(ret=True)  # elements of a 2x3 array are block-mapped
    where12.get()

    check(single.fail_value(3, ret=True), ValueError, "bad value 3", last, "Faulty", None,
          "fail_value")
    check(single.fail_custom(awaitable=True), Custom, "custom failure", last, "Faulty", None,
          "fail_custom")
    pe12 = (5 * P) // 6   # block map: element 5 of 6 lives on PE floor(5 * P / 6)
    check(arr[1, 2].fail_value(7, ret=True), ValueError, "bad value 7", pe12, "Faulty",
          (1, 2), "fail_value")
    check(grp[last].fail_custom(ret=True), Custom, "custom failure", last, "Faulty", last,
          "fail_custom")
    check(single.fail_in_coro(arr[0, 0], ret=True), KeyError, "missing-key", last, "Faulty",
          None, "fail_in_coro")
    # A broadcast where one member fails: with awaitable=True get() raises
    # that member's exception; with ret=True the list holds it in its place.
    check(grp.fail_on(last, awaitable=True), ZeroDivisionError,
          f"member {last} divides by zero", last, "Faulty", last, "fail_on")
    results = grp.fail_on(last, ret=True).get()
    assert results[:last] == ["fine"] * last, results
    check(_Raiser(results[last]), ZeroDivisionError, f"member {last} divides by zero",
          last, "Faulty", last, "fail_on")
    check(arr.fail_on((0, 1), awaitable=True), ZeroDivisionError,
          "member (0, 1) divides by zero", (1 * P) // 6, "Faulty", (0, 1), "fail_on")

    # The job goes on, and the chares still work.
    assert single.ok(ret=True).get() == "ok"
    assert grp.fail_on(-1, ret=True).get() == ["fine"] * P
    assert not PROBLEMS, "\n".join(PROBLEMS)
    print("OK remote_exc")
    charm.exit()


charm.start(main)
