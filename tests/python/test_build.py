"""One build truth (issue 9): pip (setup.py) and make build the extension
from the same facts.

- The minimum Python: pyproject.toml's requires-python, the README and the
  compile-time check in python/ext/pyversion.h name one version; this
  interpreter satisfies it; and, where this machine has those Pythons, the
  extension compiles against that version's headers under -Werror and stops
  with the check's message against the version before.
- MPI: setup.py's Extension arguments are exactly the words
  src/machine/mpi/mpi-flags.sh prints, which the Makefile links with too.
- Warnings: setup.py compiles with the Makefile's WARN minus -Werror, and
  `make test` runs `make extcheck` (every python/ext/*.c under WARN with
  -Werror) right after installing MPI.
"""
import glob
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

EXT = REPO / "python" / "ext"
MPI_FLAGS_SH = REPO / "src" / "machine" / "mpi" / "mpi-flags.sh"


def _min_from_pyproject():
    text = (REPO / "pyproject.toml").read_text()
    m = re.search(r'^requires-python\s*=\s*">=\s*(\d+)\.(\d+)"\s*$', text, re.M)
    assert m, "pyproject.toml: no requires-python = \">=X.Y\""
    return int(m.group(1)), int(m.group(2))


def _min_from_readme():
    text = (REPO / "README.md").read_text()
    section = text.split("## Building and testing", 1)[1].split("\n## ", 1)[0]
    found = set(re.findall(r"Python (\d+)\.(\d+)\+", section))
    assert len(found) == 1, f"README's Building and testing names {found or 'no'} Python X.Y+"
    (major, minor), = found
    return int(major), int(minor)


def _min_from_c_check():
    text = (EXT / "pyversion.h").read_text()
    m = re.search(r"#define CPY_MIN_PYTHON_HEX 0x([0-9A-Fa-f]{2})([0-9A-Fa-f]{2})0000\b", text)
    assert m, "pyversion.h: no #define CPY_MIN_PYTHON_HEX 0xMMmm0000"
    hex_version = int(m.group(1), 16), int(m.group(2), 16)
    assert "#if PY_VERSION_HEX < CPY_MIN_PYTHON_HEX" in text
    msg = re.search(r'#error "charmpy needs Python (\d+)\.(\d+) or later', text)
    assert msg, "pyversion.h: no #error naming the version"
    assert (int(msg.group(1)), int(msg.group(2))) == hex_version, "the #error and the hex disagree"
    return hex_version


def test_minimum_python_is_one_version():
    pyproject, readme, c_check = _min_from_pyproject(), _min_from_readme(), _min_from_c_check()
    assert pyproject == readme == c_check, (
        f"requires-python {pyproject}, README {readme}, pyversion.h {c_check}")
    assert sys.version_info[:2] >= pyproject


def test_the_version_check_is_compiled_first():
    """args.c includes pyversion.h before anything else and is the first
    extension file compiled (setup.py and make take them sorted), so that an
    older Python's build fails on the check's message first."""
    assert sorted(glob.glob(str(EXT / "*.c")))[0] == str(EXT / "args.c")
    includes = re.findall(r'^#include [<"]([^>"]+)[>"]', (EXT / "args.c").read_text(), re.M)
    assert includes[0] == "pyversion.h", includes


def _make_env():
    """The environment for a make of our own: without the jobserver of a
    make that may be running pytest."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


def _find_python(major, minor):
    """An interpreter of that version with its C headers on this machine,
    or None."""
    name = f"python{major}.{minor}"
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = [shutil.which(name), f"/usr/bin/{name}", f"/usr/local/bin/{name}"]
    candidates += sorted(glob.glob(f"{pyenv}/versions/{major}.{minor}.*/bin/{name}"))
    probe = ("import os, sys, sysconfig; inc = sysconfig.get_paths()['include']; "
             "print(*sys.version_info[:2], os.path.exists(os.path.join(inc, 'Python.h')))")
    for c in candidates:
        if not c or not os.access(c, os.X_OK):
            continue
        try:
            r = subprocess.run([c, "-c", probe], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if r.returncode == 0 and r.stdout.split() == [str(major), str(minor), "True"]:
            return c
    return None


def _extcheck_with(python, tmp_path):
    """`make extcheck` against another interpreter's headers, into tmp_path
    (without optimization: it is the API that is checked here)."""
    return subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(REPO), "-j2", "extcheck",
         f"PY={python}", f"BUILD={tmp_path}", "OPT=-O0"],
        capture_output=True, text=True, timeout=300, env=_make_env())


def test_extension_compiles_against_the_minimum_python(tmp_path):
    """Nothing in the extension needs a Python newer than the minimum: an
    API it lacks is an implicit declaration, an error under -Werror."""
    major, minor = _min_from_c_check()
    python = _find_python(major, minor)
    if not python:
        pytest.skip(f"no Python {major}.{minor} with its headers on this machine")
    r = _extcheck_with(python, tmp_path)
    assert r.returncode == 0, f"against Python {major}.{minor}'s headers:\n{r.stdout}{r.stderr}"


def test_extension_refuses_the_python_before(tmp_path):
    major, minor = _min_from_c_check()
    python = _find_python(major, minor - 1) if minor > 0 else None
    if not python:
        pytest.skip(f"no Python {major}.{minor - 1} with its headers on this machine")
    r = _extcheck_with(python, tmp_path)
    assert r.returncode != 0
    first_error = next(line for line in r.stderr.splitlines() if "error" in line)
    assert "pyversion.h" in first_error and f"needs Python {major}.{minor} or later" in first_error, \
        r.stderr


@pytest.fixture
def setup_py(monkeypatch):
    """setup.py as a module (it calls setup() only as __main__), run from
    the repository as pip runs it."""
    monkeypatch.chdir(REPO)
    spec = importlib.util.spec_from_file_location("charmpy_setup_py", REPO / "setup.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _script(what):
    r = subprocess.run(["sh", str(MPI_FLAGS_SH), what], capture_output=True, text=True,
                       timeout=120, check=True)
    return shlex.split(r.stdout)


def _words_of(args):
    """The compile and link words an Extension's MPI arguments stand for."""
    cflags = ["-I" + d for d in args["include_dirs"]]
    cflags += ["-D" + n + ("" if v is None else "=" + v) for n, v in args["define_macros"]]
    cflags += args["extra_compile_args"]
    libs = ["-L" + d for d in args["library_dirs"]] + ["-l" + n for n in args["libraries"]]
    libs += args["extra_link_args"]
    return sorted(cflags), sorted(libs)


def test_setup_py_translates_every_word(setup_py):
    cflags = ["-DCP_HAVE_MPI", "-I/opt/mpi/include", "-DX=1", "-pthread"]
    libs = ["-L/opt/mpi/lib", "-Wl,-rpath,/opt/mpi/lib", "-lmpi", "-pthread", "-ldl"]
    args = setup_py.mpi_extension_args(cflags, libs)
    assert args["include_dirs"] == ["/opt/mpi/include"]
    assert args["define_macros"] == [("CP_HAVE_MPI", None), ("X", "1")]
    assert args["library_dirs"] == ["/opt/mpi/lib"]
    assert args["libraries"] == ["mpi", "dl"]
    assert args["extra_link_args"] == ["-Wl,-rpath,/opt/mpi/lib", "-pthread"]
    assert _words_of(args) == (sorted(cflags), sorted(libs))


def test_setup_py_and_make_take_the_same_mpi_flags(setup_py, monkeypatch):
    monkeypatch.delenv("CHARMPY_NO_MPI", raising=False)
    cflags = _script("cflags")
    args = setup_py.mpi_build_args()
    if not cflags:
        assert args == {}
        pytest.skip("no MPI on this machine: both builds go without it")
    libs = _script("libs")
    assert "-DCP_HAVE_MPI" in cflags and "-ldl" in libs
    assert _words_of(args) == (sorted(cflags), sorted(libs))
    assert args["sources"] == sorted(glob.glob("src/machine/mpi/*.c")) and args["sources"]
    # The Makefile links everything with the same words (print-ldlibs is
    # LDLIBS_ALL: -lm -lpthread, then MPI's).
    r = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(REPO), "print-ldlibs"],
                       capture_output=True, text=True, timeout=120, env=_make_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["-lm", "-lpthread"] + libs


def test_no_mpi_escape_hatch(setup_py, monkeypatch):
    monkeypatch.setenv("CHARMPY_NO_MPI", "1")
    assert setup_py.mpi_build_args() == {}


def _makefile_warn():
    text = (REPO / "Makefile").read_text()
    m = re.search(r"^WARN\s*=(.*)$", text, re.M)
    assert m, "Makefile: no WARN line"
    return m.group(1).split()


def test_setup_py_warns_like_the_makefile_without_werror(setup_py, monkeypatch):
    warn = _makefile_warn()
    assert "-Werror" in warn
    assert setup_py.warning_flags() == [w for w in warn if w != "-Werror"]
    monkeypatch.setenv("CHARMPY_NO_MPI", "1")
    args = setup_py.extension().extra_compile_args
    assert [w for w in args if w.startswith("-W")] == setup_py.warning_flags()


def test_make_test_runs_extcheck_right_after_installing_mpi(tmp_path):
    text = (REPO / "Makefile").read_text()
    recipe = re.search(r"^test:\n((?:\t.*\n)+)", text, re.M)
    assert recipe, "Makefile: no test target"
    steps = [line.strip() for line in recipe.group(1).splitlines()]
    assert steps[0] == "tests/run-mpi-tests.sh --install", steps
    assert re.fullmatch(r"\$\(MAKE\) (--no-print-directory )?extcheck", steps[1]), steps
    # extcheck compiles every python/ext/*.c with WARN, -Werror included,
    # and the interpreter's headers.
    r = subprocess.run(["make", "-n", "-B", "--no-print-directory", "-C", str(REPO), "extcheck",
                        f"BUILD={tmp_path}"],
                       capture_output=True, text=True, timeout=120, env=_make_env())
    assert r.returncode == 0, r.stderr
    compiled = {}
    for line in r.stdout.splitlines():
        m = re.search(r"-c (python/ext/\w+\.c) ", line)
        if m:
            compiled[m.group(1)] = line.split()
    expected = sorted(os.path.relpath(p, REPO) for p in glob.glob(str(EXT / "*.c")))
    assert sorted(compiled) == expected
    for words in compiled.values():
        assert all(w in words for w in _makefile_warn()), words
        assert "-Ipython/ext" in words
