"""Ways a job must end with a non-zero exit code and a message on stderr,
promptly (never a hang). Usage: fatal.py MODE, where MODE is one of
  entry        an entry method on the last PE raises, nobody holds a future
  coro         the same in a coroutine entry method, after it suspended
  ctor         a constructor raises (array elements on every PE)
  main         main raises
  main_late    main raises after other chares did work
  abort        charm.abort(message) on the last PE
  exit_code    charm.exit(7) on the last PE: the job exits with 7
  exit_main    charm.exit(5) in main
  sys_exit     sys.exit(3) in main
  mismatch     members contribute to one reduction with different reducers
  mismatch_pes the same in a group (P >= 2): even PEs sum, odd PEs max
  before_start an exception at import time, before charm.start, on every PE
  before_start_last  the same, only on the last PE (CHARMPY_PE/CHARMPY_NPES)
The marker FATAL-MARKER-<MODE> is in every exception message."""
import os
import sys

MODE = sys.argv[1]
MARK = f"FATAL-MARKER-{MODE}"

if MODE == "before_start":
    raise RuntimeError(MARK)
if MODE == "before_start_last":
    if os.environ.get("CHARMPY_PE") == str(int(os.environ.get("CHARMPY_NPES", "1")) - 1):
        raise RuntimeError(MARK)

from charmpy import *  # noqa: E402


class Victim(Chare):
    def __init__(self, fail=False):
        if fail and self.thisIndex == (2,):
            raise ValueError(MARK)

    def raise_now(self):
        raise ValueError(MARK)

    @coro
    def raise_later(self, other):
        other.noop(ret=True).get()
        charm.sleep(0.05)
        raise LookupError(MARK)

    def noop(self):
        pass

    def do_abort(self):
        charm.abort(MARK)

    def do_exit(self, code):
        charm.exit(code)

    def contribute_with(self, fut):
        i = self.thisIndex if isinstance(self.thisIndex, int) else self.thisIndex[0]
        red = Reducer.sum if i % 2 == 0 else Reducer.max
        self.contribute(1, red, fut)


def main(args):
    P = charm.numPes()
    last = Chare(Victim, onPE=P - 1)
    if MODE == "entry":
        last.raise_now()
    elif MODE == "coro":
        last.raise_later(Chare(Victim, onPE=0))
    elif MODE == "ctor":
        Array(Victim, 3 * P, args=[True])
    elif MODE == "main":
        raise TypeError(MARK)
    elif MODE == "main_late":
        a = Array(Victim, 2 * P)
        a.noop(awaitable=True).get()
        raise TypeError(MARK)
    elif MODE == "abort":
        last.do_abort()
    elif MODE == "exit_code":
        last.do_exit(7)
    elif MODE == "exit_main":
        charm.exit(5)
    elif MODE == "sys_exit":
        sys.exit(3)
    elif MODE == "mismatch":
        f = Future()
        Array(Victim, max(2, P) * 2).contribute_with(f)
        print("mismatched reduction result:", f.get())
        charm.exit(0)
        return
    elif MODE == "mismatch_pes":
        f = Future()
        Group(Victim).contribute_with(f)
        print("mismatched reduction result:", f.get())
        charm.exit(0)
        return
    else:
        raise SystemExit(f"unknown mode {MODE}")
    # The job must end without this program's help.
    charm.sleep(30)
    print("still running 30 s later: the error did not end the job")
    charm.exit(0)


charm.start(main)
