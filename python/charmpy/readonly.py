"""readonlies: attributes set on PE 0 once the program runs (in main) are
sent to every PE, ahead of the chares created after them."""
from . import _charmpy
from .charm import charm


class Readonlies:
    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        if charm.started and charm._pe == 0 and charm._npes > 1:
            try:
                blob = _charmpy.encode(("R", name, value))
            except Exception as e:
                raise TypeError(f"readonlies.{name} cannot be serialized: {e}") from e
            # A broadcast from PE 0, like the creations that follow it, so it
            # reaches every PE before them.
            _charmpy.send_py(-1, blob)


def _on_readonly(name, value):
    if charm._pe != 0:
        object.__setattr__(readonlies, name, value)


readonlies = Readonlies()
charm.on_message("R", _on_readonly)
