"""@when and self.wait(): messages and coroutines held at a chare until a
condition over its state is true.

What a chare holds is kept in its `_charmpy_held` list, in arrival order,
and the chare is listed in _charmpy.held while the list is not empty. The
list is re-examined (recheck) whenever code of that chare may have changed
its state: after each of its entry methods (the C dispatcher calls the
recheck hook), after each run of one of its coroutines (coro.resume), and
after a timer callback that is one of its methods."""
import inspect
import sys
import time

from . import _charmpy, coro, futures
from .charm import charm
from .errors import where

ENTRY_CORO, ENTRY_WHEN = 1, 2   # as in python/ext/cpy.h

_wait_codes = {}   # self.wait()'s conditions, compiled once each


def when(condition):
    """Hold a message at the receiver until `condition` (an expression over
    self's attributes and the method's parameters) is true."""
    code = compile(condition, f"<@when {condition!r}>", "eval")

    def decorate(func):
        func._charmpy_when = (condition, code)
        func._charmpy_when_test = _condition_function(func, code)
        return func
    return decorate


def _condition_function(func, code):
    """A function with func's parameters that evaluates the condition, so
    that Python binds the arguments (no inspect on the message path)."""
    sig = inspect.signature(func)
    params, env = [], {"__code": code, "__globals": func.__globals__}
    for i, p in enumerate(sig.parameters.values()):
        text = p.name
        if p.kind is p.VAR_POSITIONAL:
            text = "*" + p.name
        elif p.kind is p.VAR_KEYWORD:
            text = "**" + p.name
        elif p.kind is p.KEYWORD_ONLY and not any(
                q.kind is q.VAR_POSITIONAL for q in sig.parameters.values()):
            if "*" not in params:
                params.append("*")
        if p.default is not p.empty:
            env[f"__d{i}"] = p.default
            text += f"=__d{i}"
        params.append(text)
    names = [p.name for p in sig.parameters.values()]
    src = (f"def __test({', '.join(params)}):\n"
           f"    return eval(__code, __globals, {{{', '.join(repr(n) + ': ' + n for n in names)}}})\n")
    exec(src, env)
    return env["__test"]


def _true(obj, meth, args, kwargs):
    return meth.__func__._charmpy_when_test(obj, *args, **kwargs)


def _held(obj):
    held = obj.__dict__.setdefault("_charmpy_held", [])
    _charmpy.held[id(obj)] = obj
    return held


def wait(obj, condition):
    """self.wait(condition), in a coroutine: suspend until condition (an
    expression over self) is true."""
    code = _wait_codes.get(condition)
    if code is None:
        code = _wait_codes[condition] = compile(condition, f"<wait {condition!r}>", "eval")
    if eval(code, sys.modules[type(obj).__module__].__dict__, {"self": obj}):
        return
    g = coro.this("self.wait()")
    _held(obj).append(("wait", code, g))
    coro.suspend()


def invoke_special(obj, key, name, args, kwargs, reply, flags):
    """Run a @coro or @when entry method (the C dispatcher's hook); reply
    is the caller's future, or None."""
    kwargs = kwargs or {}
    meth = getattr(obj, name)
    if flags & ENTRY_WHEN and not _true(obj, meth, args, kwargs):
        _held(obj).append(("when", meth, args, kwargs, reply, flags))
        return
    _run(obj, meth, args, kwargs, reply, flags)


def _run(obj, meth, args, kwargs, reply, flags):
    if flags & ENTRY_CORO:
        coro.start(meth, args, kwargs, reply, obj)
        return
    try:
        result = meth(*args, **kwargs)
    except Exception as e:
        if reply is None:
            raise
        futures.reply(reply, None, e, obj, where(obj, meth))
        return
    if reply is not None:
        futures.reply(reply, result, None, obj)


def recheck(obj):
    """Run obj's held messages and waiting coroutines whose condition became
    true, in arrival order, until none can run. From inside a coroutine
    (self.__flush_wait_queues__()) it is queued: what it runs may suspend,
    and must give control back to the scheduler, not to the caller."""
    held = obj.__dict__.get("_charmpy_held", [])
    if coro.in_coroutine():
        _recheck_in_coroutine(obj, held)
        return
    progress = True
    while progress and held:
        progress = False
        for i, item in enumerate(held):
            if item[0] == "when":
                _, meth, args, kwargs, reply, flags = item
                if _true(obj, meth, args, kwargs):
                    del held[i]
                    _run_timed(obj, meth, args, kwargs, reply, flags)
                    progress = True
                    break
            else:
                _, code, g = item
                if eval(code, sys.modules[type(obj).__module__].__dict__, {"self": obj}):
                    del held[i]
                    coro.resume_waiting(g)
                    progress = True
                    break
    if not held:
        _charmpy.held.pop(id(obj), None)
    if migration._pending:
        migration.migrations()


def _run_timed(obj, meth, args, kwargs, reply, flags):
    """A held @when method runs: timed into obj's load (when measured), its
    calls obj's (GreedyCommLB)."""
    prev = _charmpy.lb_enter(obj) if charm._lb_comm else None
    t0 = time.perf_counter()
    try:
        _run(obj, meth, args, kwargs, reply, flags)
    finally:
        if charm._lb_comm:
            _charmpy.lb_enter(prev)
        _charmpy.lb_add(obj, time.perf_counter() - t0)


def _recheck_in_coroutine(obj, held):
    """recheck from inside a coroutine (self.__flush_wait_queues__()): the
    plain @when methods that can run run now, in order; from the first
    coroutine that could run on, the rest is queued, since it may suspend
    and must give control back to the scheduler, not to the caller."""
    i = 0
    while i < len(held):
        item = held[i]
        if item[0] == "when" and not item[5] & ENTRY_CORO:
            _, meth, args, kwargs, reply, flags = item
            if _true(obj, meth, args, kwargs):
                del held[i]
                _run(obj, meth, args, kwargs, reply, flags)
                i = 0       # its state changed: from the start again
                continue
        elif _ready(obj, item):
            _charmpy.call_soon(recheck, (obj,))
            return
        i += 1
    if not held:
        _charmpy.held.pop(id(obj), None)


def _ready(obj, item):
    if item[0] == "when":
        return _true(obj, item[1], item[2], item[3])
    return eval(item[1], sys.modules[type(obj).__module__].__dict__, {"self": obj})


from . import migration  # noqa: E402  (it uses this module)
