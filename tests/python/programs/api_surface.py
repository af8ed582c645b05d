"""The AttributeError sweep: every name of charm4py 1.1's documented API
exists in charmpy, on `charm`, on chares, proxies, futures, Reducer and in
the module's exports. Names whose feature is a later issue exist and raise
NotImplementedError naming the feature when used (sections,
channels, the pool). Problems are collected, so one run lists
all of them."""
import charmpy
from charmpy import *

PROBLEMS = []


def problem(text):
    PROBLEMS.append(text)


def _take(before):
    """The problems found since `before`, removed from this PE's list (an
    entry method returns them to main, which may run on this PE too)."""
    new = PROBLEMS[before:]
    del PROBLEMS[before:]
    return new


# ---- module exports ---------------------------------------------------------
EXPORTS = {"charm", "Chare", "Group", "Array", "ArrayMap", "Reducer", "Future", "Channel",
           "when", "coro", "threaded"}
_ns = {}
exec("from charmpy import *", _ns)
_exported = set(_ns) - {"__builtins__"}
if _exported != EXPORTS:
    problem(f"from charmpy import * gives {sorted(_exported)}; missing "
            f"{sorted(EXPORTS - _exported)}, extra {sorted(_exported - EXPORTS)}")
for _name in ("register", "readonlies", "coro_ext", "Options"):
    try:
        exec(f"from charmpy import {_name}", {})
    except ImportError as e:
        problem(f"from charmpy import {_name}: {e}")
coro_ext = getattr(charmpy, "coro_ext", None)
Options = getattr(charmpy, "Options", None)
if Options is not None and not isinstance(charm.options, Options):
    problem(f"charm.options is a {type(charm.options).__name__}, not a charmpy.Options")

CHARM_FUNCS = ["start", "exit", "abort", "myPe", "numPes", "myHost", "numHosts",
               "getHostPes", "getHostFirstPe", "getHostNumPes", "getPeHost", "getPeHostRank",
               "getTopoTreeEdges", "getTopoSubtrees", "awaitCreation", "sleep",
               "scheduleCallableAfter", "iwait", "wait", "startQD", "waitQD", "combine",
               "split", "printStats", "addReducer", "LBTurnInstrumentOn",
               "LBTurnInstrumentOff", "createFuture"]
CHARE_ATTRS = ["thisProxy", "thisIndex", "wait", "contribute", "reduce", "allreduce",
               "AtSync", "migrate", "migrated", "setMigratable"]
REDUCERS = ["sum", "product", "max", "min", "logical_and", "logical_or", "logical_xor",
            "gather", "nop", "addReducer"]


def check_charm_names(where):
    for name in CHARM_FUNCS:
        f = getattr(charm, name, None)
        if f is None or not callable(f):
            problem(f"{where}: charm.{name} is missing or not callable")
    for name in ("options", "thisProxy", "pool", "reducers", "Future"):
        if not hasattr(charm, name):
            problem(f"{where}: charm.{name} is missing")
    if getattr(charm, "reducers", None) is not Reducer:
        problem(f"{where}: charm.reducers is not Reducer")
    if getattr(charm, "Future", None) is not Future:
        problem(f"{where}: charm.Future is not Future")


def expect_not_implemented(what, word, call):
    """call() raises NotImplementedError whose message names the feature."""
    try:
        call()
    except NotImplementedError as e:
        if word not in str(e).lower():
            problem(f"{what}: NotImplementedError {str(e)!r} does not name the feature "
                    f"({word!r})")
    except Exception as e:
        problem(f"{what}: expected NotImplementedError naming {word!r}, got "
                f"{type(e).__name__}: {e}")
    else:
        problem(f"{what}: expected NotImplementedError naming {word!r}, nothing raised")


for _name in REDUCERS:
    if not hasattr(Reducer, _name):
        problem(f"Reducer.{_name} is missing")


class Elem(Chare):
    def __init__(self):
        self.value = 0

    def attrs(self):
        return [n for n in CHARE_ATTRS if not hasattr(self, n)]

    def lifecycle(self):
        out = []
        try:
            r = self.migrated()
            if r is not None:
                out.append(f"self.migrated() returned {r!r}")
        except Exception as e:
            out.append(f"self.migrated() raised {type(e).__name__}: {e}")
        try:
            self.setMigratable(False)
        except Exception as e:
            out.append(f"self.setMigratable(False) raised {type(e).__name__}: {e}")
        return out

    def try_migrate(self, pe):
        before = len(PROBLEMS)
        try:
            self.setMigratable(True)
            self.migrate(pe)
        except Exception as e:
            problem(f"self.migrate({pe}) raised {type(e).__name__}: {e}")
        return _take(before)

    def try_channel(self, other):
        before = len(PROBLEMS)
        ch = globals().get("Channel")
        if ch is None:
            return ["Channel is not exported by charmpy"]
        try:
            c = ch(self, remote=other)
            for name in ("send", "recv", "ready"):
                if not callable(getattr(c, name, None)):
                    problem(f"a Channel has no method {name}()")
        except Exception as e:
            problem(f"Channel(self, remote=...) raised {type(e).__name__}: {e}")
        return _take(before)

    @coro
    def try_wait_qd(self):
        before = len(PROBLEMS)
        try:
            if charm.waitQD() is not None:
                problem("charm.waitQD() returned a value")
        except Exception as e:
            problem(f"charm.waitQD() in a coroutine raised {type(e).__name__}: {e}")
        return _take(before)

    def names_here(self):
        before = len(PROBLEMS)
        check_charm_names(f"PE {charm.myPe()}")
        return _take(before)

    def value_of(self):
        return self.value

    if coro_ext is not None:
        @coro_ext()
        def blocking_ext(self, other):
            return other.value_of(ret=True).get()


def main(args):
    P = charm.numPes()
    check_charm_names("main")

    g = Group(Elem)
    a = Array(Elem, 2 * P)
    a2 = Array(Elem, (2, 2))
    s = Array(Elem, ndims=1)
    single = Chare(Elem, onPE=P - 1)
    charm.awaitCreation(g, a, a2, single)

    # Chare instances.
    for proxy, what in ((g[P - 1], "group member"), (a[0], "array element"),
                        (a2[1, 1], "2-D array element"), (single, "single chare")):
        missing = proxy.attrs(ret=True).get()
        if missing:
            problem(f"{what}: missing {missing}")
    for text in a[2 * P - 1].lifecycle(ret=True).get():
        problem(f"array element: {text}")
    for text in g[0].names_here(ret=True).get() + g[P - 1].names_here(ret=True).get():
        problem(text)

    # Proxies.
    if not hasattr(g, "ckLocalBranch") or not isinstance(g.ckLocalBranch(), Elem):
        problem("group proxy: ckLocalBranch() missing or not the local member")
    for name in ("ckInsert", "ckDoneInserting"):
        if not hasattr(s, name):
            problem(f"sparse array proxy: {name} missing")
    for proxy, what in ((g, "group"), (g[0], "group element"), (a, "array"), (a[1], "array "
                        "element"), (a2[0, 1], "2-D array element"), (single, "single chare"),
                        (s, "sparse array")):
        for name in ("attrs", "value_of", "lifecycle"):
            if not callable(getattr(proxy, name, None)):
                problem(f"{what} proxy: entry method {name} missing")
    s.ckInsert(3)
    s.ckDoneInserting()
    assert s[3].value_of(ret=True).get() == 0

    # Futures.
    f = Future()
    for name in ("get", "send", "__call__", "ready"):
        if not callable(getattr(f, name, None)):
            problem(f"Future.{name} missing")
    f(5)
    assert f.get() == 5 and f.ready()
    if callable(getattr(charm, "createFuture", None)):
        f2 = charm.createFuture()
        single.value_of(ret=True)
        f2.send("x")
        assert f2.get() == "x"

    # coro_ext works like coro.
    if coro_ext is not None:
        try:
            got = a[0].blocking_ext(single, ret=True).get()
            if got != 0:
                problem(f"@coro_ext() entry method returned {got!r}")
        except Exception as e:
            problem(f"@coro_ext() entry method raised {type(e).__name__}: {e}")

    # Later features: the names exist and say which feature they need.
    qd = Future()
    charm.startQD(qd)
    if qd.get() is not None:
        problem("charm.startQD(future): the future got a value")
    for text in single.try_wait_qd(ret=True).get():
        problem(text)
    # Sections: the names work (sect_modes.py tests what they do).
    for what, call in (("charm.split(array, 2, elems=...)",
                        lambda: charm.split(a, 2, elems=[[0], [1]])),
                       ("charm.combine(array)", lambda: charm.combine(a)),
                       ("array[0:2]", lambda: a[0:2]), ("group[0:1]", lambda: g[0:1])):
        try:
            r = call()
            secs = r if isinstance(r, list) else [r]
            if not secs or not all(getattr(x, "issec", False) for x in secs):
                problem(f"{what} returned {r!r}, not section proxies")
        except Exception as e:
            problem(f"{what} raised {type(e).__name__}: {e}")
    for text in a[0].try_migrate(P - 1, ret=True).get():
        problem(f"array element: {text}")
    for text in a[0].try_channel(a[1], ret=True).get():
        problem(text)
    pool = getattr(charm, "pool", None)
    if pool is None:
        problem("charm.pool is missing")
    else:
        for name in ("map", "map_async", "imap", "imap_unordered", "Task", "submit",
                     "submit_async"):
            if not callable(getattr(pool, name, None)):
                problem(f"charm.pool.{name} is missing")
        if pool.map(abs, [-1, 2]) != [1, 2]:
            problem("charm.pool.map(abs, [-1, 2]) is not [1, 2]")

    assert not PROBLEMS, "\n" + "\n".join(PROBLEMS)
    print("OK api_surface")
    charm.exit()


charm.start(main)
