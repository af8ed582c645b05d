"""charmpy: distributed, migratable Python objects (chares) with asynchronous
remote method invocation, on a runtime written in C.

The API is charm4py 1.1's; see README.md for what this version provides.
"""
from .core import (charm, Chare, Group, Array, ArrayMap, Future, coro, threaded, when,
                   register, readonlies)
from .reduction import Reducer

__all__ = ["charm", "Chare", "Group", "Array", "ArrayMap", "Reducer", "Future", "coro", "threaded",
           "when"]
__version__ = "0.1.0"
