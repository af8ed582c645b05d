"""The last PE kills itself with SIGKILL after the job started working;
the others wait in the runtime. The job must end (non-zero), not hang."""
import os
import signal

from charmpy import *


class Victim(Chare):
    def die(self):
        print("PE", charm.myPe(), "kills itself", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


def main(args):
    v = Chare(Victim, onPE=charm.numPes() - 1)
    v.die()
    Future().get()  # never fulfilled: only the job's end stops this


charm.start(main)
