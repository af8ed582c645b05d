"""charmpy: distributed, migratable Python objects (chares) with asynchronous
remote method invocation, on a runtime written in C.

The API is charm4py 1.1's (see README.md for what this version provides).
The package is thin: charm.py (start, PEs, runtime messages), chare.py,
futures.py, coro.py, when.py, reduction.py, location.py, remote.py,
stats.py, lb.py; the weight is in the C extension _charmpy."""
import sys

if sys.version_info < (3, 10):
    raise ImportError("charmpy needs Python 3.10 or newer (this is "
                      f"{sys.version.split()[0]})")

from .charm import charm  # noqa: E402  (first: the feature modules register with it)
from .chare import Chare, Group, Array, ArrayMap, register  # noqa: E402
from .coro import coro, threaded, coro_ext  # noqa: E402
from .futures import Future  # noqa: E402
from .options import Options  # noqa: E402
from .readonly import readonlies  # noqa: E402
from .reduction import Reducer  # noqa: E402
from .channel import Channel  # noqa: E402
from .when import when  # noqa: E402

__all__ = ["charm", "Chare", "Group", "Array", "ArrayMap", "Reducer", "Future", "Channel",
           "when", "coro", "threaded"]
__version__ = "0.1.0"
