"""`charmrun -n N app.py` and `python -m charmpy.run -n N app.py`: start N PEs
on this host (the launcher is the C one, compiled into the extension)."""
import os
import sys


def main():
    from . import _charmpy
    # The PEs of a .py program run under this interpreter.
    os.environ.setdefault("CHARMPY_PYTHON", sys.executable)
    sys.exit(_charmpy.launch(["charmrun"] + sys.argv[1:]))


if __name__ == "__main__":
    main()
