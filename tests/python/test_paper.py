"""The two programs of the CharmPy paper (issue 3), exactly as written there,
on 1 to 4 PEs through the launcher and on 1 PE with plain python."""
import numpy

from conftest import PYTHON, program_path, run_command, run_program

SUM_OUTPUT = str(numpy.arange(20) * 100) + "\n"


def test_hello(npes):
    rc, out, err = run_program("paper_hello", npes, timeout=30)
    assert out == "Hello\n", (out, err)


def test_array_sum(npes):
    rc, out, err = run_program("paper_sum", npes, timeout=30)
    assert out == SUM_OUTPUT, (out, err)


def test_hello_plain_python():
    rc, out, err = run_command([PYTHON, program_path("paper_hello")], timeout=30)
    assert out == "Hello\n", (out, err)


def test_array_sum_plain_python():
    rc, out, err = run_command([PYTHON, program_path("paper_sum")], timeout=30)
    assert out == SUM_OUTPUT, (out, err)
