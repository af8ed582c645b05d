"""Checkpoint/restart (issue 10): programs/ckpt.py checkpoints at 4 PEs and
restarts at 4, 2, 3, 1 and 6 PEs, each restart printing exactly the lines an
uninterrupted run prints after the checkpoint; a PE killed while a
checkpoint is written leaves the previous one, which restarts; a missing,
partial, corrupt or foreign checkpoint is refused saying which; a chare
that cannot be pickled makes checkpoint() fail naming class, index and
attribute, and the program goes on. test_mpi.py does it under mpirun."""
import glob
import json
import os

import pytest

from conftest import NONZERO, run_ok, run_program

STOP = 4


def lines(res):
    return [ln for ln in res.stdout.splitlines() if ln.startswith(("step ", "result "))]


def after(ls, step):
    return [ln for ln in ls if not ln.startswith("step ") or int(ln.split()[1]) > step]


@pytest.fixture(scope="module")
def reference():
    return lines(run_ok("ckpt", 4, "plain", timeout=90))


@pytest.fixture(scope="module")
def saved(tmp_path_factory, reference):
    d = tmp_path_factory.mktemp("ckpt") / "run"
    res = run_ok("ckpt", 4, "ckpt", d, STOP, timeout=90)
    assert lines(res) == reference, "a checkpoint changed the computation"
    assert f"resumed at step {STOP} on 4 PEs" in res.stdout, res.stdout
    assert (d / "CURRENT").is_file()
    return d


@pytest.mark.parametrize("pes", [4, 2, 3, 1, 6], ids=lambda n: f"P{n}")
def test_restart_any_pes(saved, reference, pes):
    res = run_ok("ckpt", pes, "plain", "+restart", saved, timeout=90)
    assert f"resumed at step {STOP} on {pes} PEs" in res.stdout, res.stdout
    assert lines(res) == after(reference, STOP), res.stdout


def test_restart_dash_dash(saved, reference):
    res = run_ok("ckpt", 2, "plain", "--restart", str(saved), timeout=90)
    assert lines(res) == after(reference, STOP), res.stdout


def test_pe_killed_during_checkpoint(tmp_path, reference):
    d = tmp_path / "c"
    run_ok("ckpt", 3, "ckpt", d, 2, timeout=90)
    first = (d / "CURRENT").read_text()
    # PE 1 dies right after writing its file, before it reports.
    res = run_program("ckpt", 3, "ckpt", d, 6, expect_rc=NONZERO, timeout=90,
                      env={"CHARMPY_TEST_CKPT_DIE": "1"})
    assert "step 6 total" in res.stdout and "result" not in res.stdout, res.stdout
    assert (d / "CURRENT").read_text() == first, "CURRENT changed: the checkpoint half-written"
    res = run_ok("ckpt", 2, "plain", "+restart", d, timeout=90)
    assert "resumed at step 2 on 2 PEs" in res.stdout, res.stdout
    assert lines(res) == after(reference, 2), res.stdout


def _copy(saved, tmp_path):
    import shutil
    d = tmp_path / "copy"
    shutil.copytree(saved, d)
    (v,) = glob.glob(str(d / "v-*"))
    return d, v


def _refused(d, *want):
    res = run_program("ckpt", 2, "plain", "+restart", d, expect_rc=NONZERO, timeout=60)
    for w in want:
        assert w in res.stderr, res.stderr
    assert "step" not in res.stdout, res.stdout


def test_corrupt_refused(saved, tmp_path):
    d, v = _copy(saved, tmp_path)
    with open(os.path.join(v, "pe-1.dat"), "r+b") as fh:
        fh.seek(200)
        b = fh.read(1)
        fh.seek(200)
        fh.write(bytes([b[0] ^ 0xFF]))
    _refused(d, "cannot restart", "pe-1.dat is corrupt")


def test_partial_refused(saved, tmp_path):
    d, v = _copy(saved, tmp_path)
    os.remove(os.path.join(v, "pe-2.dat"))
    _refused(d, "pe-2.dat is missing: the checkpoint is partial")


def test_foreign_refused(tmp_path):
    d = tmp_path / "foreign"
    (d / "v-1").mkdir(parents=True)
    (d / "CURRENT").write_text("v-1\n")
    (d / "v-1" / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    _refused(d, "not a charmpy checkpoint's (foreign)")
    (tmp_path / "plain").mkdir()
    _refused(tmp_path / "plain", "no CURRENT file")
    _refused(tmp_path / "nothing-here", "no such directory")


def test_unpicklable_refused(tmp_path, reference):
    d = tmp_path / "lock"
    res = run_ok("ckpt", 3, "lock", d, timeout=90)
    assert "refused: " in res.stdout and "Cell[(3,)]" in res.stdout \
        and "attribute 'lock'" in res.stdout, res.stdout
    assert lines(res) == reference, "the refused checkpoint changed the computation"
    assert not (d / "CURRENT").exists()


def test_reduction_under_way_refused(tmp_path):
    res = run_ok("ckpt", 3, "halfred", tmp_path / "h", timeout=90)
    assert "refused: " in res.stdout and "a reduction of Cell is under way" in res.stdout, \
        (res.stdout, res.stderr)
    assert not (tmp_path / "h" / "CURRENT").exists()


@pytest.fixture(params=[1, 2, 3, 4, 8], ids=lambda n: f"P{n}")
def qd_pes(request):
    return request.param


def test_user_qd_waiter_told_after_checkpoint(tmp_path, qd_pes):
    # A startQD waiting while a checkpoint is taken is told at the next
    # quiescence: the work it starts is not half in the checkpoint (without
    # that, about half the runs saved some of it). Repeated: it is a race.
    for k in range(3):
        d = str(tmp_path / f"ck{k}")
        res = run_ok("ckpt_qd", qd_pes, d, timeout=60)
        assert "counters [1, 1" in res.stdout, res.stdout
        res = run_ok("ckpt_qd", qd_pes, "+restart", d, timeout=60)
        assert "restarted with counters [0, 0" in res.stdout, res.stdout
