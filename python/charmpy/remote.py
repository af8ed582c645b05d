"""charm.thisProxy: the runtime on every PE as a group (collection 0),
built on every PE at start without messages."""
import sys

from . import _charmpy
from .chare import GROUP, Array, Chare, Collection, new_member, released
from .charm import charm


class CharmRemote(Chare):
    """The runtime on every PE, as a group: charm.thisProxy."""

    def exit(self, exit_code=0):
        charm.exit(exit_code)

    def myPe(self):
        return charm._pe

    def updateGlobals(self, global_dict, module_name="__main__"):
        sys.modules[module_name].__dict__.update(global_dict)

    def createArray(self, cls, dims=None, ndims=-1, args=(), map=None, useAtSync=False,
                    cb=None):
        proxy = Array(cls, dims, ndims, args, map, useAtSync)
        if cb is not None:
            cb(proxy)
        return proxy

    def addReducer(self, func):
        charm.addReducer(func)

    def printStats(self):
        charm.printStats()

    def getStats(self):
        """This PE's figures of printStats, as a dict (stats.local)."""
        from . import stats
        return stats.local()

    def LBTurnInstrumentOn(self):
        charm.LBTurnInstrumentOn()

    def LBTurnInstrumentOff(self):
        charm.LBTurnInstrumentOff()

    def exec(self, code, module_name="__main__"):
        _check_remote_exec()
        exec(code, sys.modules[module_name].__dict__)

    def rexec(self, code, module_name="__main__"):
        self.exec(code, module_name)

    def eval(self, expression, module_name="__main__"):
        _check_remote_exec()
        return eval(expression, sys.modules[module_name].__dict__)


def _check_remote_exec():
    if not charm.options.remote_exec:
        raise PermissionError("remote code execution is off: set "
                              "charm.options.remote_exec = True before charm.start")


def install():
    proxy = _charmpy.Proxy(0, GROUP, CharmRemote)
    charm.thisProxy = proxy
    charm._colls[0] = Collection(proxy, tuple(range(charm._npes)), 1)
    _charmpy.loc_create(proxy)
    _charmpy.loc_register(0, {charm._pe: new_member(CharmRemote, proxy, charm._pe)})
    released(0)
