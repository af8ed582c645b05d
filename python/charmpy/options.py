"""charm.options: settings read at charm.start, under charm4py's names.

A setting charmpy accepts but does not act on yet, and runtime flags of the
same kind, are reported once for the whole job (by PE 0) with `note`."""
import sys


class Options:
    """A namespace of settings; a name it does not know raises
    AttributeError listing the valid ones."""

    def __init__(self, defaults):
        object.__setattr__(self, "_defaults", dict(defaults))
        for k, v in defaults.items():
            object.__setattr__(self, k, v)

    def _unknown(self, name):
        return AttributeError(f"charm.options has no option '{name}'; valid options: "
                              + ", ".join(sorted(self._defaults)))

    def __setattr__(self, name, value):
        if name not in self._defaults:
            raise self._unknown(name)
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        raise self._unknown(name)

    def __str__(self):
        return "".join(f"{k}: {getattr(self, k)}\n" for k in sorted(self._defaults))


def default_options():
    return Options({
        # charm4py's options
        "profiling": False,          # time entry methods (printStats); also +stats
        "quiet": False,
        "local_msg_optim": True,     # same-PE arguments by reference
        "local_msg_buf_size": 50,    # charm4py's per-chare buffer: charmpy has no limit
        "pickle_protocol": -1,       # -1: the highest (5)
        "remote_exec": False,
        "auto_flush_wait_queues": True,  # @when messages are always re-examined
        "interactive": Options({"verbose": 1, "broadcast_imports": True}),
        # charmpy's own (API.md)
        "balancer": None,
        "lb_period": None,
        "trace": None,
    })


# Settings ("name") and runtime flags ("+name") that are accepted but not
# acted on yet, and why (none at present: the mechanism stays for the next).
NOT_YET = {}


def note_text(name):
    return (f"charmpy: note: {name} is accepted but not acted on yet ({NOT_YET[name]})")


def pending_notes(options, flags):
    """The notes this job's settings and runtime flags call for."""
    out = [note_text(k) for k in NOT_YET
           if not k.startswith("+") and getattr(options, k) is not None]
    out += [note_text(f) for f in NOT_YET if f.startswith("+") and f in flags]
    return out


_said = set()


def say_once(text):
    """Print a note on stderr, once per process (PE 0 prints the job's)."""
    if text not in _said:
        _said.add(text)
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
