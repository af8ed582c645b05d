"""Reductions: every reducer over every kind of data; targets, empty
reductions, nop, gather, custom reducers, allreduce, concurrent reductions."""
import pytest

from conftest import NONZERO, run_ok, run_program


def test_every_reducer_and_data_kind(npes):
    run_ok("reduce_kinds", npes)


def test_targets_gather_custom_allreduce(npes):
    run_ok("reduce_targets", npes)


@pytest.mark.parametrize("mode,pes", [("array", (1, 2, 3, 4, 8)), ("section", (1, 3, 4)),
                                      ("group", (2, 3, 4, 8))])
def test_missing_contribution_is_an_error(mode, pes):
    # A member that never contributes: the job ends with an error naming the
    # reduction and the member (reduction.py's watch), not a hang.
    for p in pes:
        rc, out, err = run_program("red_missing", p, mode, timeout=60, expect_rc=NONZERO)
        assert "a reduction can never complete" in err, err[-3000:]
        assert "not contributed: M[" in err, err[-3000:]


def test_partial_reduction_across_waitqd_is_not_an_error():
    # Quiescence while a reduction is partial, then the program goes on and
    # completes it: the watch must not end it.
    for p in (1, 3):
        run_ok("red_missing", p, "qdwait", timeout=60)


def test_contribute_c_path(npes):
    # contrib.c and its way back to reduction.py: sections given every way,
    # allreduce, ints past int64 exact, numpy int64 wrapping, migration.
    res = run_ok("contrib_paths", npes, timeout=120)  # ends with OK contrib_paths
    assert f"contrib_paths ok on {npes} PEs" in res.stdout, res.stdout


@pytest.mark.parametrize("pes", [1, 2, 8])
def test_contribute_reducer_mismatch_on_a_later_member(pes):
    rc, out, err = run_program("contrib_paths", pes, "mismatch", timeout=60,
                               expect_rc=NONZERO)
    assert "max" in err and "sum" in err and "reduction 1" in err, err[-3000:]


def test_redcounters():
    """A member's next reduction number in each stream (contrib.c's
    RedCounters): stepped in place, grown past its two pairs in place,
    pickled with the member when it migrates."""
    import pickle
    from charmpy import _charmpy
    c = _charmpy.RedCounters()
    assert c.get(0) == 0 and c.step(0) == 0 and c.step(0) == 1 and c.get(0) == 2
    sync, sect = 1 << 63, (1 << 62) | 12345
    streams = [0, sync, sect] + [(1 << 62) | i for i in range(20)]
    for i, s in enumerate(streams):     # past the two pairs held in place
        for _ in range(i):
            c.step(s)
    assert [c.get(s) for s in streams] == [2] + list(range(1, len(streams)))
    d = pickle.loads(pickle.dumps(c, 5))
    assert type(d) is _charmpy.RedCounters and d is not c
    assert [d.get(s) for s in streams] == [c.get(s) for s in streams]
    d.step(sync)
    assert d.get(sync) == c.get(sync) + 1       # a copy: c unchanged
    assert _charmpy.RedCounters([(7, 40)]).get(7) == 40
    assert "RedCounters(((0, 2)," in repr(c)
    for bad in ([(1,)], [1], 5, [("a", 1)], [(1, "b")]):
        with pytest.raises(TypeError):
            _charmpy.RedCounters(bad)
    for bad in (-1, 1 << 64):
        with pytest.raises(OverflowError):
            c.step(bad)
    with pytest.raises(TypeError):
        c.get("0")


def test_redstate_histogram():
    """The C histogram of a stream's members' next reduction numbers
    (contrib.c's RedState): what reduction.py's dict did, entry for entry."""
    from charmpy import _charmpy
    st = _charmpy.RedState({0: 3, 2: 1})
    assert st.hist == {0: 3, 2: 1} and st.section is None
    assert st.pending == {} and st.targets == {} and st.parts == {} and st.allfuts == {}
    assert st.waits(0) and st.waits(5)
    for _ in range(3):          # every member at 0 steps to 1
        st.move(0, -1)
        st.move(1, 1)
    assert st.hist == {1: 3, 2: 1}
    assert not st.waits(0) and st.waits(1)
    st.move(5, 1)               # entries stay sorted wherever they land
    st.move(-1, 2)
    assert sorted(st.hist.items()) == [(-1, 2), (1, 3), (2, 1), (5, 1)]
    assert st.waits(-1) and not st.waits(-2)
    st.move(-1, -2)
    st.move(7, 0)               # no change: no entry
    assert 7 not in st.hist and -1 not in st.hist
    st.move(9, -1)              # kept as given, as the dict was
    assert st.hist[9] == -1
    st.hist = {4: 2}            # replaced
    assert st.hist == {4: 2} and not st.waits(3) and st.waits(4)
    st.hist = {}
    assert st.hist == {} and not st.waits(10 ** 6)
    sec = object()
    assert _charmpy.RedState({}, sec).section is sec
    with pytest.raises(TypeError):
        st.hist = [1, 2]
    with pytest.raises(TypeError):
        st.move("a", 1)
    with pytest.raises(TypeError):
        st.move(1)
    with pytest.raises(OverflowError):
        st.move(1 << 70, 1)
    with pytest.raises(AttributeError):
        del st.hist
    rec = object()
    st.pending[3] = rec         # entries leave pending through take(k)
    assert st.take(3) is rec and st.pending == {}
    with pytest.raises(KeyError):
        st.take(3)
    with pytest.raises(AttributeError):
        st.pending = {}
