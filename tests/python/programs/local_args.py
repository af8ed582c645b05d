"""Arguments to a chare in the same process: passed by reference by default;
copied (serialized, so unserializable ones fail at the call site) with
charm.options.local_msg_optim = False. Usage: local_args.py on|off"""
import sys
import threading

from charmpy import *

MODE = sys.argv[1]
charm.options.local_msg_optim = MODE == "on"


class Keeper(Chare):
    def keep(self, obj):
        self.obj = obj

    def same(self, obj):
        return self.obj is obj

    def content(self):
        return list(self.obj)

    def take(self, x):
        pass


def main(args):
    assert args[1:] == [MODE], args
    me = charm.myPe()
    k = Chare(Keeper, onPE=me)
    g = Group(Keeper)
    charm.awaitCreation(k, g)
    data = [1, 2, 3]
    k.keep(data, awaitable=True).get()
    g[me].keep(data, awaitable=True).get()
    if MODE == "on":
        # By reference: the chare holds the caller's object itself.
        assert k.same(data, ret=True).get() is True
        local = g.ckLocalBranch()
        assert local.obj is data
    else:
        data.append(4)      # a copy was sent: the chare does not see this
        assert k.content(ret=True).get() == [1, 2, 3]
        assert g.ckLocalBranch().obj == [1, 2, 3] and g.ckLocalBranch().obj is not data
        for target in (k, g[me], g):
            try:
                target.take(threading.Lock())
            except TypeError as e:
                assert "lock" in str(e), str(e)
            else:
                raise AssertionError("an unserializable argument was accepted although "
                                     "local_msg_optim is off")
    print("OK local_args")
    charm.exit()


charm.start(main)
